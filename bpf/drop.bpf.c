// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Drop probe set: every kfree_skb that is a drop, counted (summary) or reported (details). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_tracing.h>
#include "np_packet.h"
#include "np_common.h"
#include "drop.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile struct drop_config drop_cfg = {};

NP_EXPORT_ENUM(drop_mode);
NP_EXPORT_ENUM(drop_eth_class);
NP_EXPORT_ENUM(np_stack_mode);
NP_EXPORT_ENUM(np_l3);

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, struct drop_key);
	__type(value, struct drop_value);
} drop_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, struct drop_stack_key);
	__type(value, __u64);
} drop_stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct drop_pending);
} pending SEC(".maps");

/* Interval generation (summary); user space increments it before each drain. */
__u64 drop_gen = 0;

/* Sampled stack walks done this interval; user space resets it. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} stack_budget_used SEC(".maps");

/* Per-CPU scratch space: the BPF stack is too small for these. */
struct drop_scratch {
	__u8 buf[NP_L3_READ];
	struct np_pkt pkt;
	struct drop_key key;
	struct drop_stack_key stack_key;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct drop_scratch);
} scratch SEC(".maps");

static __always_inline int in_range(__u64 addr, const volatile struct drop_range *r)
{
	return addr >= r->start && addr < r->end;
}

static __always_inline int eth_class_match(const struct np_pkt *p)
{
	__u16 t = p->flow.ethertype;

	switch (drop_cfg.eth_class) {
	case DROP_ETH_ALL:
		return 1;
	case DROP_ETH_ARP:
		return t == NP_ETH_P_ARP;
	case DROP_ETH_RARP:
		return t == NP_ETH_P_RARP;
	case DROP_ETH_IPV4:
		return t == NP_ETH_P_IP;
	case DROP_ETH_IPV6:
		return t == NP_ETH_P_IPV6;
	case DROP_ETH_LLDP:
		return t == 0x88cc;
	case DROP_ETH_FLOW_CONTROL:
		return t == 0x8808;
	case DROP_ETH_STP:
		return p->has_llc && p->llc_dsap == 0x42;
	default:
		return t != NP_ETH_P_ARP && t != NP_ETH_P_RARP && t != NP_ETH_P_IP &&
		       t != NP_ETH_P_IPV6 && t != 0x88cc && t != 0x8808 &&
		       !(p->has_llc && p->llc_dsap == 0x42);
	}
}

static __always_inline void sample_stack(void *ctx, struct drop_scratch *s, struct np_stats *st,
					 __s32 known_id)
{
	struct drop_stack_key *sk = &s->stack_key;
	__u64 one = 1, *hits, *used;
	__u32 zero = 0;

	if (known_id < 0) {
		/* 1 in N: a per-CPU tick, no division or random number on the hot path. */
		if (!drop_cfg.stack_sample || !st || ++st->sample_tick < drop_cfg.stack_sample)
			return;
		st->sample_tick = 0;
		used = bpf_map_lookup_elem(&stack_budget_used, &zero);
		if (!used)
			return;
		if (*used >= drop_cfg.stack_budget) {
			if (st)
				st->stacks_skipped++;
			return;
		}
		__sync_fetch_and_add(used, 1);
		known_id = np_walk_stack(ctx, st);
		if (known_id < 0)
			return;
	}
	__builtin_memcpy(&sk->key, &s->key, sizeof(sk->key));
	sk->stack_id = known_id;
	sk->pad = 0;
	hits = bpf_map_lookup_elem(&drop_stacks, sk);
	if (hits) {
		__sync_fetch_and_add(hits, 1);
	} else if (bpf_map_update_elem(&drop_stacks, sk, &one, BPF_NOEXIST)) {
		hits = bpf_map_lookup_elem(&drop_stacks, sk);
		if (hits)
			__sync_fetch_and_add(hits, 1);
		else
			np_map_full(st);
	}
}

static __always_inline int same_key(const struct drop_key *a, const struct drop_key *b)
{
	const __u64 *x = (const void *)a, *y = (const void *)b;

#pragma unroll
	for (int i = 0; i < sizeof(*a) / sizeof(__u64); i++)
		if (x[i] != y[i])
			return 0;
	return 1;
}

/* Adds @n drops of @key to drop_counts (a pending slot's flush; no stack is walked). */
static __always_inline void add_count(struct drop_key *key, __u64 n, struct np_stats *st)
{
	struct drop_value nv = { .count = n, .stack_id = -1 };
	struct drop_value *v = bpf_map_lookup_elem(&drop_counts, key);

	if (v) {
		__sync_fetch_and_add(&v->count, n);
		return;
	}
	if (bpf_map_update_elem(&drop_counts, key, &nv, BPF_NOEXIST)) {
		v = bpf_map_lookup_elem(&drop_counts, key);
		if (v)
			__sync_fetch_and_add(&v->count, n);
		else
			np_map_full(st);
	}
}

static __always_inline void count_drop(void *ctx, struct drop_scratch *s, __u64 location,
				       __u32 reason, __u32 netns, __u32 ifindex, struct np_stats *st)
{
	struct drop_key *key = &s->key;
	struct np_pkt *p = &s->pkt;
	struct drop_value nv = { .count = 1, .stack_id = -1 };
	struct drop_value *v;
	struct drop_pending *c = NULL;
	__u64 gen = 0;
	__u32 slot;

	__builtin_memset(key, 0, sizeof(*key));
	key->reason = reason;
	key->netns = netns;
	key->ifindex = ifindex;
	key->stack_id = -1;
	if (drop_cfg.key_location)
		key->location = location;
	if (drop_cfg.key_flow)
		__builtin_memcpy(&key->flow, &p->flow, sizeof(key->flow));
	else
		key->flow.ethertype = p->flow.ethertype;
	if (drop_cfg.stacks == NP_STACKS_EVERY_EVENT) {
		key->stack_id = np_walk_stack(ctx, st);
	} else {
		/* A storm repeats one key: count it on this CPU without touching the hash map. */
		gen = *(volatile __u64 *)&drop_gen;
		slot = gen & 1;
		c = bpf_map_lookup_elem(&pending, &slot);
		/* A slot belongs to generation gen when it holds gen + 1 (0: never used). */
		if (c && c->gen == gen + 1) {
			if (same_key(&c->key, key)) {
				c->count++;
				if (drop_cfg.stacks == NP_STACKS_SAMPLED)
					sample_stack(ctx, s, st, -1);
				return;
			}
			if (c->count)
				add_count(&c->key, c->count, st);
		}
		if (c) {
			__builtin_memcpy(&c->key, key, sizeof(*key));
			c->count = 0;
			c->gen = gen + 1;
		}
	}

	v = bpf_map_lookup_elem(&drop_counts, key);
	if (v) {
		__sync_fetch_and_add(&v->count, 1);
		if (drop_cfg.stacks == NP_STACKS_SAMPLED)
			sample_stack(ctx, s, st, -1);
		return;
	}
	/* A key new in this interval: its first stack is always walked. */
	if (drop_cfg.stacks == NP_STACKS_SAMPLED)
		nv.stack_id = np_walk_stack(ctx, st);
	if (bpf_map_update_elem(&drop_counts, key, &nv, BPF_NOEXIST)) {
		v = bpf_map_lookup_elem(&drop_counts, key);
		if (v)
			__sync_fetch_and_add(&v->count, 1);
		else
			np_map_full(st);
		return;
	}
	if (nv.stack_id >= 0)
		sample_stack(ctx, s, st, nv.stack_id);
}

static __always_inline void report_drop(void *ctx, struct sk_buff *skb, struct np_pkt *p,
					__u64 location, __u32 reason, __u32 netns, __u32 ifindex,
					struct np_stats *st)
{
	struct drop_event *e;
	struct net_device *dev;
	__u64 id = bpf_get_current_pid_tgid();

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		np_lost_event(st);
		return;
	}
	if (drop_cfg.stacks != NP_STACKS_OFF)
		np_stack_into(ctx, &e->stack, st);
	else
		e->stack.depth = 0;
	e->ts_ns = bpf_ktime_get_ns();
	e->location = location;
	__builtin_memcpy(&e->pkt, p, sizeof(*p));
	e->reason = reason;
	e->netns = netns;
	e->ifindex = ifindex;
	e->pid = id >> 32;
	e->tid = (__u32)id;
	e->cpu = bpf_get_smp_processor_id();
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	dev = BPF_CORE_READ(skb, dev);
	if (dev)
		BPF_CORE_READ_STR_INTO(&e->ifname, dev, name);
	else
		e->ifname[0] = 0;
	np_submit(&events, e);
}

/* Are Ethernet/VLAN/LLC headers used? */
static __always_inline int needs_l2(void)
{
	return drop_cfg.mode == DROP_MODE_DETAILS || drop_cfg.eth_class || drop_cfg.has_vlan_filter;
}

/* Are length, packet type and the offloaded VLAN tag used? */
static __always_inline int needs_meta(void)
{
	return drop_cfg.mode == DROP_MODE_DETAILS || drop_cfg.has_vlan_filter;
}

/* Do filters look at packet contents? */
static __always_inline int packet_filters(void)
{
	return drop_cfg.eth_class || drop_cfg.has_vlan_filter || np_filter_needs_packet();
}

/* Must the packet be decoded? Only when a key, filter or event uses its contents. */
static __always_inline int needs_packet(void)
{
	return drop_cfg.mode == DROP_MODE_DETAILS || drop_cfg.key_flow || drop_cfg.eth_class ||
	       drop_cfg.has_vlan_filter || np_filter_needs_packet();
}

/*
 * Normal frees are not drops: SKB_CONSUMED where the kernel has reasons; without reasons
 * (before 5.17), a kfree_skb called from one of the callers user space listed (the seed
 * tool's filter, moved into the kernel).
 */
static __always_inline int is_normal_free(__u64 location, __u32 reason)
{
	if (bpf_core_enum_value_exists(enum skb_drop_reason, SKB_CONSUMED))
		return reason == bpf_core_enum_value(enum skb_drop_reason, SKB_CONSUMED);
#pragma unroll
	for (int i = 0; i < DROP_NORMAL_RANGES; i++)
		if (drop_cfg.normal[i].end && in_range(location, &drop_cfg.normal[i]))
			return 1;
	return 0;
}

static __always_inline int handle_drop(void *ctx, struct sk_buff *skb, __u64 location,
				       __u32 reason, const int direct)
{
	struct drop_scratch *s;
	struct net_device *dev;
	struct np_stats *st;
	struct net *net;
	__u32 netns, ifindex, zero = 0;

	if (drop_cfg.normal_filter && is_normal_free(location, reason))
		return 0;
	if (drop_cfg.has_reason_filter && reason != drop_cfg.reason)
		return 0;
	if (drop_cfg.loc_match.end && !in_range(location, &drop_cfg.loc_match))
		return 0;
	if (drop_cfg.loc_skip.end && in_range(location, &drop_cfg.loc_skip))
		return 0;

	dev = NP_RD(direct, skb->dev, skb, dev);
	net = np_skb_net(skb, dev, direct);
	netns = np_net_inum(net, direct);
	ifindex = np_skb_ifindex(skb, dev, direct);
	st = np_stats();
	if (!np_match_place(net, netns, ifindex, st))
		return 0;
	/*
	 * Details above the rate limit: counted, never decoded. Without packet filters this is
	 * decided before the packet is read, so a storm costs little more than a counter.
	 */
	if (drop_cfg.mode == DROP_MODE_DETAILS && !packet_filters() && !np_rate_ok(st))
		return 0;
	s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return 0;
	if (needs_l2() || needs_meta())
		__builtin_memset(&s->pkt, 0, sizeof(s->pkt));
	else
		__builtin_memset(&s->pkt.flow, 0, sizeof(s->pkt.flow));
	if (needs_packet()) {
		if (!(direct && !needs_l2() && !needs_meta() && np_parse_flow_btf(skb, &s->pkt)))
			np_parse_skb(skb, &s->pkt, s->buf, needs_l2(), needs_meta(), direct);
		if (!np_match_flow(&s->pkt.flow) || !eth_class_match(&s->pkt))
			return 0;
		if (drop_cfg.has_vlan_filter &&
		    (!s->pkt.has_vlan || s->pkt.vlan_id != drop_cfg.vlan_id))
			return 0;
	} else {
		s->pkt.flow.ethertype = bpf_ntohs(NP_RD(direct, skb->protocol, skb, protocol));
	}

	if (drop_cfg.mode == DROP_MODE_DETAILS && packet_filters() && !np_rate_ok(st))
		return 0;
	if (drop_cfg.mode == DROP_MODE_DETAILS && st)
		st->seen++;
	if (drop_cfg.mode == DROP_MODE_DETAILS)
		report_drop(ctx, skb, &s->pkt, location, reason, netns, ifindex, st);
	else
		count_drop(ctx, s, location, reason, netns, ifindex, st);
	return 0;
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(drop_tp_btf, struct sk_buff *skb, void *location)
{
	__u32 reason = 0;

	/* The tracepoint gained its reason argument together with this field (5.17). */
	if (bpf_core_field_exists(struct trace_event_raw_kfree_skb, reason))
		reason = (__u32)ctx[2];
	return handle_drop(ctx, skb, (__u64)location, reason, 1);
}

SEC("tracepoint/skb/kfree_skb")
int drop_tracepoint(struct trace_event_raw_kfree_skb *args)
{
	__u32 reason = 0;

	if (bpf_core_field_exists(args->reason))
		reason = args->reason;
	return handle_drop(args, (struct sk_buff *)args->skbaddr, (__u64)args->location, reason, 0);
}

/* Emits the event type into BTF so the skeleton generates it for Rust. */
struct drop_event drop_event_type = {};
