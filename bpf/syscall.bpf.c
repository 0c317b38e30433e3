// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * syscall probe set, from the raw syscall tracepoints (tp_btf, or the classic tracepoints
 * before 5.5): syscalls counted per syscall, per (process, syscall) or per (cgroup, syscall),
 * failures and, when timed, their durations; or futex waits (FUTEX_WAIT*, LOCK_PI*) timed
 * per (process, futex word, user stack) with a log2 histogram. Tasks are filtered by process
 * and cgroup before anything else.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "np_common.h"
#include "np_syscall.h"
#include "np_announce.h"
#include "syscall.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile struct sc_config sc_cfg = {};

NP_EXPORT_ENUM(sc_sizes);
NP_EXPORT_ENUM(sc_by);

#define SC_ETIMEDOUT 110

/* futex(2) commands that wait (include/uapi/linux/futex.h, FUTEX_CMD_MASK = 127). */
#define SC_FUTEX_WAIT 0
#define SC_FUTEX_LOCK_PI 6
#define SC_FUTEX_WAIT_BITSET 9
#define SC_FUTEX_LOCK_PI2 13
#define SC_FUTEX_WAIT_REQUEUE_PI 11

/* Calls in flight per thread; LRU: exit(2) and a thread killed in a wait never return. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct sc_start);
} starts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct sc_count_key);
	__type(value, struct sc_count);
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct sc_futex_key);
	__type(value, struct sc_futex);
} futex_waits SEC(".maps");

/* A new entry starts from this (the futex value is too big for the BPF stack). */
const volatile struct sc_futex sc_futex_zero = {};

static __always_inline int sc_wanted(__u32 tgid)
{
	if (sc_cfg.tgid && tgid != sc_cfg.tgid)
		return 0;
	if (sc_cfg.cgroup_id && bpf_get_current_cgroup_id() != sc_cfg.cgroup_id)
		return 0;
	return 1;
}

static __always_inline int sc_futex_waits(__u32 op)
{
	__u32 cmd = op & 127;

	return cmd == SC_FUTEX_WAIT || cmd == SC_FUTEX_WAIT_BITSET || cmd == SC_FUTEX_LOCK_PI ||
	       cmd == SC_FUTEX_LOCK_PI2 || cmd == SC_FUTEX_WAIT_REQUEUE_PI;
}

static __always_inline int sc_enter(long nr, __u64 uaddr, __u32 op)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct sc_start s = { .nr = nr };

	if (nr < 0 || !sc_wanted(id >> 32))
		return 0;
	if (sc_cfg.futex) {
		if (nr != sc_cfg.futex_nr || !sc_futex_waits(op))
			return 0;
		s.uaddr = uaddr;
		s.futex_op = op;
	} else if (sc_cfg.only_nr >= 0 && nr != sc_cfg.only_nr) {
		return 0;
	}
	s.ts = bpf_ktime_get_ns();
	if (bpf_map_update_elem(&starts, &tid, &s, BPF_ANY))
		np_map_full(np_stats());
	return 0;
}

static __always_inline void sc_count_exit(long nr, long ret, __u32 tgid, __u32 tid)
{
	struct sc_count_key k = { .nr = nr };
	struct sc_count *v, zero = {};
	struct sc_start *s;
	__u64 d = 0;

	if (sc_cfg.only_nr >= 0 && nr != sc_cfg.only_nr)
		return;
	if (sc_cfg.timed) {
		s = bpf_map_lookup_elem(&starts, &tid);
		if (!s)
			return; /* entered before the tool attached */
		d = bpf_ktime_get_ns() - s->ts;
		bpf_map_delete_elem(&starts, &tid);
	}
	if (sc_cfg.failures && ret >= 0)
		return;
	if (sc_cfg.errno_only && ret != -sc_cfg.errno_only)
		return;
	switch (sc_cfg.by) {
	case SC_BY_PROCESS:
		k.owner = tgid;
		break;
	case SC_BY_CGROUP:
		k.owner = bpf_get_current_cgroup_id();
		break;
	default:
		k.cpu = bpf_get_smp_processor_id();
	}
	v = bpf_map_lookup_elem(&counts, &k);
	if (!v) {
		bpf_get_current_comm(zero.comm, sizeof(zero.comm));
		bpf_map_update_elem(&counts, &k, &zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&counts, &k);
		if (!v) {
			np_map_full(np_stats());
			return;
		}
	}
	__sync_fetch_and_add(&v->count, 1);
	if (ret < 0)
		__sync_fetch_and_add(&v->errors, 1);
	if (d) {
		__sync_fetch_and_add(&v->total_ns, d);
		if (d > v->max_ns)
			v->max_ns = d;
	}
}

static __always_inline void sc_futex_exit(void *ctx, long nr, long ret, __u32 tgid, __u32 tid)
{
	struct sc_futex_key k = { .tgid = tgid };
	struct np_stats *st = np_stats();
	struct sc_futex *v;
	struct sc_start *s;
	__u64 d;

	if (nr != sc_cfg.futex_nr)
		return;
	s = bpf_map_lookup_elem(&starts, &tid);
	if (!s)
		return;
	d = bpf_ktime_get_ns() - s->ts;
	k.uaddr = s->uaddr;
	bpf_map_delete_elem(&starts, &tid);
	/* The user registers are those of the call: this is the waiting stack. */
	k.user_stack = bpf_get_stackid(ctx, &stack_traces, BPF_F_USER_STACK);
	if (k.user_stack < 0 && st)
		st->stack_errors++;
	np_announce(tgid, st);
	v = bpf_map_lookup_elem(&futex_waits, &k);
	if (!v) {
		bpf_map_update_elem(&futex_waits, &k, (void *)&sc_futex_zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&futex_waits, &k);
		if (!v) {
			np_map_full(st);
			return;
		}
		bpf_get_current_comm(v->comm, sizeof(v->comm));
	}
	__sync_fetch_and_add(&v->count, 1);
	__sync_fetch_and_add(&v->total_ns, d);
	__sync_fetch_and_add(&v->slots[np_log2_slot(d / 1000) & (SC_SLOTS - 1)], 1);
	if (ret == -SC_ETIMEDOUT)
		__sync_fetch_and_add(&v->timeouts, 1);
	if (d > v->max_ns)
		v->max_ns = d;
}

static __always_inline int sc_exit(void *ctx, long nr, long ret)
{
	__u64 id = bpf_get_current_pid_tgid();

	if (nr < 0 || !sc_wanted(id >> 32))
		return 0;
	if (sc_cfg.futex)
		sc_futex_exit(ctx, nr, ret, id >> 32, (__u32)id);
	else
		sc_count_exit(nr, ret, id >> 32, (__u32)id);
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(sc_enter_btf, struct pt_regs *regs, long nr)
{
	if (!sc_cfg.futex)
		return sc_enter(nr, 0, 0);
	if (nr != sc_cfg.futex_nr)
		return 0;
	return sc_enter(nr, PT_REGS_PARM1_CORE_SYSCALL(regs), PT_REGS_PARM2_CORE_SYSCALL(regs));
}

SEC("tracepoint/raw_syscalls/sys_enter")
int sc_enter_tp(struct trace_event_raw_sys_enter *ctx)
{
	return sc_enter(ctx->id, ctx->args[0], ctx->args[1]);
}

SEC("tp_btf/sys_exit")
int BPF_PROG(sc_exit_btf, struct pt_regs *regs, long ret)
{
	return sc_exit(ctx, np_syscall_nr(regs), ret);
}

SEC("tracepoint/raw_syscalls/sys_exit")
int sc_exit_tp(struct trace_event_raw_sys_exit *ctx)
{
	return sc_exit(ctx, ctx->id, ctx->ret);
}
