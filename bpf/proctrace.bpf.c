// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * proctrace probe set: what one process (and the children it forks) or one cgroup does on
 * the network: its syscalls (entry → exit, arguments, return value, duration) and the net
 * tracepoints that fire in its context — a packet queued to a device, handed to the driver,
 * received, queued to the backlog, dropped — with the packet's device and flow. Everything
 * is filtered by the current task before any read; one ring-buffer event per occurrence.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_tracing.h>
#include "np_packet.h"
#include "np_common.h"
#include "np_syscall.h"
#include "proctrace.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile struct pt_config pt_cfg = {};

NP_EXPORT_ENUM(pt_sizes);
NP_EXPORT_ENUM(pt_kind);

/* Exported so the skeleton generates the event type user space decodes. */
struct pt_event pt_event_type = {};

/* Followed processes (tgid → 1), written by user space and by the fork hook. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} targets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct pt_start);
} starts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1024 * 1024);
} events SEC(".maps");

/* Packet header scratch space (too big for the BPF stack next to an event). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u8[NP_L3_READ]);
} scratch SEC(".maps");

static __always_inline int pt_wanted(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;

	if (pt_cfg.cgroup_id)
		return bpf_get_current_cgroup_id() == pt_cfg.cgroup_id;
	return bpf_map_lookup_elem(&targets, &tgid) != NULL;
}

static __always_inline struct pt_event *pt_reserve(__u32 kind, struct np_stats *st)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct pt_event *e;

	if (!np_rate_ok(st))
		return NULL;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		np_lost_event(st);
		return NULL;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_ns();
	e->kind = kind;
	e->tgid = id >> 32;
	e->tid = (__u32)id;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	return e;
}

/* ---- syscalls ---- */

static __always_inline int pt_enter(__u64 a0, __u64 a1, __u64 a2, __u64 a3, __u64 a4, __u64 a5)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct pt_start s = { .args = { a0, a1, a2, a3, a4, a5 } };

	if (!pt_cfg.syscalls || !pt_wanted())
		return 0;
	s.ts = bpf_ktime_get_ns();
	if (bpf_map_update_elem(&starts, &tid, &s, BPF_ANY))
		np_map_full(np_stats());
	return 0;
}

static __always_inline int pt_exit(long nr, long ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct np_stats *st;
	struct pt_start *s;
	struct pt_event *e;

	if (!pt_cfg.syscalls || nr < 0)
		return 0;
	s = bpf_map_lookup_elem(&starts, &tid);
	if (!s)
		return 0;
	st = np_stats();
	e = pt_reserve(PT_SYSCALL, st);
	if (!e) {
		bpf_map_delete_elem(&starts, &tid);
		return 0;
	}
	e->nr = nr;
	e->ret = ret;
	e->dur_ns = e->ts_ns - s->ts;
	e->ts_ns = s->ts;
	__builtin_memcpy(e->args, s->args, sizeof(e->args));
	bpf_map_delete_elem(&starts, &tid);
	np_submit(&events, e);
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(pt_enter_btf, struct pt_regs *regs, long nr)
{
	if (!pt_cfg.syscalls || !pt_wanted())
		return 0;
	return pt_enter(PT_REGS_PARM1_CORE_SYSCALL(regs), PT_REGS_PARM2_CORE_SYSCALL(regs),
			PT_REGS_PARM3_CORE_SYSCALL(regs), PT_REGS_PARM4_CORE_SYSCALL(regs),
			PT_REGS_PARM5_CORE_SYSCALL(regs), PT_REGS_PARM6_CORE_SYSCALL(regs));
}

SEC("tracepoint/raw_syscalls/sys_enter")
int pt_enter_tp(struct trace_event_raw_sys_enter *ctx)
{
	return pt_enter(ctx->args[0], ctx->args[1], ctx->args[2], ctx->args[3], ctx->args[4],
			ctx->args[5]);
}

SEC("tp_btf/sys_exit")
int BPF_PROG(pt_exit_btf, struct pt_regs *regs, long ret)
{
	return pt_exit(np_syscall_nr(regs), ret);
}

SEC("tracepoint/raw_syscalls/sys_exit")
int pt_exit_tp(struct trace_event_raw_sys_exit *ctx)
{
	return pt_exit(ctx->id, ctx->ret);
}

/* ---- children ---- */

SEC("tp_btf/sched_process_fork")
int BPF_PROG(pt_fork_btf, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = parent->tgid, ctgid = child->tgid;
	__u8 one = 1;

	if (!pt_cfg.follow_forks || ptgid == ctgid || !bpf_map_lookup_elem(&targets, &ptgid))
		return 0;
	if (bpf_map_update_elem(&targets, &ctgid, &one, BPF_ANY))
		np_map_full(np_stats());
	return 0;
}

/* ---- packets in the task's context ---- */

static __always_inline void pt_packet(__u32 kind, struct sk_buff *skb, struct net_device *dev,
				      __s64 ret, __u64 location)
{
	struct np_stats *st;
	struct pt_event *e;
	__u32 zero = 0;
	__u8 *buf;

	if (!pt_cfg.net || !pt_wanted())
		return;
	st = np_stats();
	e = pt_reserve(kind, st);
	if (!e)
		return;
	e->ret = ret;
	e->location = location;
	if (!dev)
		dev = skb->dev;
	if (dev) {
		e->ifindex = dev->ifindex;
		bpf_probe_read_kernel_str(e->ifname, sizeof(e->ifname), dev->name);
	}
	e->netns = np_net_inum(np_skb_net(skb, dev, 1), 1);
	buf = bpf_map_lookup_elem(&scratch, &zero);
	if (buf)
		np_parse_skb(skb, &e->pkt, buf, 0, 1, 1);
	np_submit(&events, e);
}

SEC("tp_btf/net_dev_queue")
int BPF_PROG(pt_dev_queue, struct sk_buff *skb)
{
	pt_packet(PT_NET_QUEUE, skb, NULL, 0, 0);
	return 0;
}

SEC("tp_btf/net_dev_xmit")
int BPF_PROG(pt_dev_xmit, struct sk_buff *skb, int rc, struct net_device *dev)
{
	pt_packet(PT_NET_XMIT, skb, dev, rc, 0);
	return 0;
}

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(pt_receive, struct sk_buff *skb)
{
	pt_packet(PT_NET_RECEIVE, skb, NULL, 0, 0);
	return 0;
}

SEC("tp_btf/netif_rx")
int BPF_PROG(pt_rx, struct sk_buff *skb)
{
	pt_packet(PT_NET_RX, skb, NULL, 0, 0);
	return 0;
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(pt_drop, struct sk_buff *skb, void *location)
{
	pt_packet(PT_DROP, skb, NULL, 0, (__u64)location);
	return 0;
}
