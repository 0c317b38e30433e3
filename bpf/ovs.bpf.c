// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * ovs probe set: the Open vSwitch kernel datapath's slow path. Each upcall (a packet the
 * datapath sends to ovs-vswitchd: a megaflow miss, a userspace action) and each megaflow
 * install (OVS_FLOW_CMD_NEW) is an event: upcalls are the slow path, and user space pairs each
 * install with the oldest upcall waiting for one, as ovs-vswitchd answers them in order.
 * Failed upcalls (ovs_dp_upcall's return) are counted by errno.
 *
 * The openvswitch structs are in the module's BTF only: declared here with
 * preserve_access_index, relocated at load against it.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "np_common.h"
#include "ovs.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

NP_EXPORT_ENUM(ovs_event_kind);
NP_EXPORT_ENUM(ovs_sizes);

struct sw_flow_key {
	struct {
		u32 priority;
		u32 skb_mark;
		u16 in_port;
	} __attribute__((packed)) phy;
	struct {
		u8 src[6];
		u8 dst[6];
		__be16 type;
	} eth;
	struct {
		u8 proto;
	} ip;
	struct {
		__be16 src;
		__be16 dst;
	} tp;
	union {
		struct {
			struct {
				__be32 src;
				__be32 dst;
			} addr;
		} ipv4;
	};
} __attribute__((preserve_access_index));

struct dp_upcall_info {
	u32 portid;
	u8 cmd;
} __attribute__((preserve_access_index));

const volatile struct ovs_config ovs_cfg = {};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

/* New flows' netlink requests (ovs_cfg.flow_msgs). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 18);
} flows SEC(".maps");

/* errno -> upcalls that failed with it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, OVS_ERRNOS);
	__type(key, __s32);
	__type(value, __u64);
} upcall_errors SEC(".maps");

/* queue_userspace_packet's result (0 or errno) -> calls. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, OVS_ERRNOS);
	__type(key, __s32);
	__type(value, __u64);
} queue_results SEC(".maps");

static __always_inline void ovs_count(void *map, __s32 key)
{
	__u64 one = 1, *n = bpf_map_lookup_elem(map, &key);

	if (n)
		__sync_fetch_and_add(n, 1);
	else if (bpf_map_update_elem(map, &key, &one, BPF_NOEXIST))
		np_map_full(np_stats());
}

static __always_inline struct ovs_event *ovs_reserve(__u32 kind)
{
	struct ovs_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	__u64 id = bpf_get_current_pid_tgid();

	if (!e) {
		np_lost_event(np_stats());
		return 0;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_ns();
	e->kind = kind;
	e->cpu = bpf_get_smp_processor_id();
	e->tid = (__u32)id;
	return e;
}

#define ETH_P_IP_BE 0x0008 /* htons(0x0800) */

static __always_inline int on_upcall(const struct sw_flow_key *key, const struct dp_upcall_info *info)
{
	struct ovs_event *e = ovs_reserve(OVS_EV_UPCALL);
	__be16 type;

	if (!e)
		return 0;
	if (info) {
		e->portid = BPF_CORE_READ(info, portid);
		e->cmd = BPF_CORE_READ(info, cmd);
	}
	if (key) {
		e->in_port = BPF_CORE_READ(key, phy.in_port);
		bpf_probe_read_kernel(e->eth_src, sizeof(e->eth_src), &key->eth.src);
		bpf_probe_read_kernel(e->eth_dst, sizeof(e->eth_dst), &key->eth.dst);
		type = BPF_CORE_READ(key, eth.type);
		e->eth_type = bpf_ntohs(type);
		if (type == ETH_P_IP_BE) {
			e->ip_proto = BPF_CORE_READ(key, ip.proto);
			e->src = BPF_CORE_READ(key, ipv4.addr.src);
			e->dst = BPF_CORE_READ(key, ipv4.addr.dst);
			e->sport = bpf_ntohs(BPF_CORE_READ(key, tp.src));
			e->dport = bpf_ntohs(BPF_CORE_READ(key, tp.dst));
		}
	}
	np_submit(&events, e);
	return 0;
}

/* enum ovs_flow_attr (UAPI) */
#define OVS_FLOW_ATTR_KEY 1
#define OVS_FLOW_ATTR_ACTIONS 2
#define OVS_FLOW_ATTR_MASK 7
#define OVS_FLOW_ATTR_UFID 9

/* Copies attribute @type's payload (at most @cap bytes) to @dst; its full length, 0 if absent. */
static __always_inline __u32 ovs_copy_attr(struct nlattr **attrs, int type, __u8 *dst, __u32 cap)
{
	struct nlattr *a = 0;
	__u16 len = 0;
	__u32 n;

	if (bpf_probe_read_kernel(&a, sizeof(a), &attrs[type]) || !a)
		return 0;
	if (bpf_probe_read_kernel(&len, sizeof(len), &a->nla_len) || len < sizeof(*a))
		return 0;
	len -= sizeof(*a);
	n = len < cap ? len : cap;
	barrier_var(n);
	if (n > cap)
		return 0;
	if (n && bpf_probe_read_kernel(dst, n, (void *)a + sizeof(*a)))
		return 0;
	return len;
}

/* The request's key, mask, actions and UFID into the flows ring. */
static __always_inline void ovs_flow_msg(struct genl_info *info)
{
	struct ovs_flow_msg *m;
	struct nlattr **attrs;

	if (!info)
		return;
	attrs = BPF_CORE_READ(info, attrs);
	if (!attrs)
		return;
	m = bpf_ringbuf_reserve(&flows, sizeof(*m), 0);
	if (!m) {
		np_lost_event(np_stats());
		return;
	}
	m->ts_ns = bpf_ktime_get_ns();
	m->cpu = bpf_get_smp_processor_id();
	m->tid = (__u32)bpf_get_current_pid_tgid();
	m->pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(m->comm, sizeof(m->comm));
	m->key_len = ovs_copy_attr(attrs, OVS_FLOW_ATTR_KEY, m->key, OVS_KEY_BYTES);
	m->mask_len = ovs_copy_attr(attrs, OVS_FLOW_ATTR_MASK, m->mask, OVS_KEY_BYTES);
	m->actions_len = ovs_copy_attr(attrs, OVS_FLOW_ATTR_ACTIONS, m->actions, OVS_ACT_BYTES);
	m->ufid_len = ovs_copy_attr(attrs, OVS_FLOW_ATTR_UFID, m->ufid, OVS_UFID_BYTES);
	np_submit(&flows, m);
}

static __always_inline int on_install(struct genl_info *info)
{
	struct ovs_event *e = ovs_reserve(OVS_EV_INSTALL);

	if (e)
		np_submit(&events, e);
	if (ovs_cfg.flow_msgs)
		ovs_flow_msg(info);
	return 0;
}

static __always_inline int on_upcall_ret(int ret)
{
	if (ret < 0)
		ovs_count(&upcall_errors, -ret);
	return 0;
}

static __always_inline int on_queue_ret(int ret)
{
	ovs_count(&queue_results, ret < 0 ? -ret : 0);
	return 0;
}

/* TP_PROTO(struct datapath *dp, struct sk_buff *skb, const struct sw_flow_key *key,
 *          const struct dp_upcall_info *upcall_info) */
SEC("tp_btf/ovs_dp_upcall")
int BPF_PROG(ovs_upcall_btf, void *dp, struct sk_buff *skb, const struct sw_flow_key *key,
	     const struct dp_upcall_info *info)
{
	return on_upcall(key, info);
}

SEC("fentry/ovs_dp_upcall")
int BPF_PROG(ovs_upcall_fe, void *dp, struct sk_buff *skb, const struct sw_flow_key *key,
	     const struct dp_upcall_info *info)
{
	return on_upcall(key, info);
}

SEC("kprobe/ovs_dp_upcall")
int BPF_KPROBE(ovs_upcall_kp, void *dp, struct sk_buff *skb, const struct sw_flow_key *key,
	       const struct dp_upcall_info *info)
{
	return on_upcall(key, info);
}

SEC("fexit/ovs_dp_upcall")
int BPF_PROG(ovs_upcall_ret_fx, void *dp, struct sk_buff *skb, const struct sw_flow_key *key,
	     const struct dp_upcall_info *info, u32 cutlen, int ret)
{
	return on_upcall_ret(ret);
}

SEC("kretprobe/ovs_dp_upcall")
int BPF_KRETPROBE(ovs_upcall_ret_krp, int ret)
{
	return on_upcall_ret(ret);
}

/* queue_userspace_packet(dp, skb, key, upcall_info, cutlen): the upcall's netlink message. */
SEC("fexit/queue_userspace_packet")
int BPF_PROG(ovs_queue_ret_fx, void *dp, struct sk_buff *skb, const struct sw_flow_key *key,
	     const struct dp_upcall_info *info, u32 cutlen, int ret)
{
	return on_queue_ret(ret);
}

SEC("kretprobe/queue_userspace_packet")
int BPF_KRETPROBE(ovs_queue_ret_krp, int ret)
{
	return on_queue_ret(ret);
}

/* ovs_flow_cmd_new(struct sk_buff *skb, struct genl_info *info) */
SEC("fentry/ovs_flow_cmd_new")
int BPF_PROG(ovs_install_fe, struct sk_buff *skb, struct genl_info *info)
{
	return on_install(info);
}

SEC("kprobe/ovs_flow_cmd_new")
int BPF_KPROBE(ovs_install_kp, struct sk_buff *skb, struct genl_info *info)
{
	return on_install(info);
}

struct ovs_event ovs_event_type = {};
struct ovs_errno_count ovs_errno_count_type = {};
struct ovs_flow_msg ovs_flow_msg_type = {};
