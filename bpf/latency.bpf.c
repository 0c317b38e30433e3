// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Latency probe set: the stage engine. A path is an ordered list of stages (user space writes
 * the table); each stage is a hook on a device of some role. A packet is known by its header
 * fields at every stage; the first stage opens its state in an LRU hash, later stages advance
 * it, the last closes it into histograms, per-flow totals or one details event.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_tracing.h>
#include "np_packet.h"
#include "np_common.h"
#include "latency.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile struct lat_config lat_cfg = {};

NP_EXPORT_ENUM(lat_hook);
NP_EXPORT_ENUM(lat_role);
NP_EXPORT_ENUM(lat_stage_flags);
NP_EXPORT_ENUM(lat_sizes);
NP_EXPORT_ENUM(np_l3);

/* Packets in flight, first stage to last. Sized by user space (--max-packets). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 10240);
	__type(key, struct lat_key);
	__type(value, struct lat_state);
} packets SEC(".maps");

/* Histograms, two interval generations of lat_cfg.hist_cells cells each (sized by user space). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct lat_hist);
} hists SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, struct lat_flow_key);
	__type(value, struct lat_flow_value);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lat_counters);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} events SEC(".maps");

/* Per CPU, per generation parity: the flow of the last packets closed on this CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct lat_flow_acc);
} flow_acc SEC(".maps");

/* Packets through a qdisc, by skb, for net_dev_xmit (when start_xmit is not attached). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 10240);
	__type(key, __u64);
	__type(value, struct lat_xmit_id);
} xmit_ids SEC(".maps");

/* Per reader thread: its oldest read not yet followed by an interrupt to the VM. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct lat_unsignalled);
} unsignalled SEC(".maps");

/* Interval generation of the histograms; user space increments it before each read. */
__u64 lat_gen = 0;

struct lat_scratch {
	struct lat_key key;
	struct lat_state state;
	__u8 buf[96];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lat_scratch);
} scratch SEC(".maps");

/* Transmits in progress on this CPU (net_dev_xmit may run after its skb is gone). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lat_sync);
} sync SEC(".maps");

static __always_inline struct lat_counters *lat_counters(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&counters, &zero);
}

static __always_inline void lat_hist_add(__u32 path, __u32 pair, __u64 ns)
{
	__u32 idx = (__u32)(lat_gen & 1) * lat_cfg.hist_cells + path * lat_cfg.hist_pairs + pair;
	struct lat_hist *h;
	__u32 slot;
	h = bpf_map_lookup_elem(&hists, &idx);
	if (!h)
		return;
	slot = np_log2_slot(ns);
	if (slot >= LAT_SLOTS)
		slot = LAT_SLOTS - 1;
	barrier_var(slot);
	h->slots[slot & (LAT_SLOTS - 1)]++;
	h->sum_ns += ns;
	if (ns > h->max_ns)
		h->max_ns = ns;
}

/* Adds a CPU's run of one flow into the shared per-flow totals. */
static __always_inline void lat_flow_flush(struct lat_flow_acc *a, struct np_stats *st)
{
	struct lat_flow_value *v = bpf_map_lookup_elem(&flows, &a->key);

	if (!v) {
		if (!bpf_map_update_elem(&flows, &a->key, &a->v, BPF_NOEXIST))
			return;
		v = bpf_map_lookup_elem(&flows, &a->key);
		if (!v) {
			np_map_full(st);
			return;
		}
	}
	__sync_fetch_and_add(&v->count, a->v.count);
	__sync_fetch_and_add(&v->sum_ns, a->v.sum_ns);
#pragma unroll
	for (int i = 0; i < LAT_FLOW_SLOTS; i++)
		if (a->v.slots[i])
			__sync_fetch_and_add(&v->slots[i], a->v.slots[i]);
	if (a->v.min_ns < v->min_ns)
		v->min_ns = a->v.min_ns;
	if (a->v.max_ns > v->max_ns)
		v->max_ns = a->v.max_ns;
}

static __always_inline int lat_flow_key_eq(const struct lat_flow_key *a,
					   const struct lat_flow_key *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;

#pragma unroll
	for (int i = 0; i < sizeof(*a) / 4; i++)
		if (x[i] != y[i])
			return 0;
	return 1;
}

/*
 * A closed packet into its flow's totals: counted in this CPU's accumulator while the flow
 * repeats (no shared map, no atomics), flushed to `flows` when another flow comes.
 */
static __always_inline void lat_flow_add(const struct lat_key *k, __u32 path, __u64 ns,
					 struct np_stats *st)
{
	__u32 idx = (__u32)(lat_gen & 1), slot = np_log2_slot(ns);
	struct lat_flow_key fk;
	struct lat_flow_acc *a;

	__builtin_memset(&fk, 0, sizeof(fk));
	fk.flow = k->flow;
	if (fk.flow.l4proto == NP_IPPROTO_ICMP || fk.flow.l4proto == NP_IPPROTO_ICMPV6)
		fk.flow.sport = k->id >> 16;
	fk.path = path;
	a = bpf_map_lookup_elem(&flow_acc, &idx);
	if (!a)
		return;
	if (!a->valid || !lat_flow_key_eq(&a->key, &fk)) {
		if (a->valid)
			lat_flow_flush(a, st);
		a->key = fk;
		a->valid = 1;
		__builtin_memset(&a->v, 0, sizeof(a->v));
		a->v.min_ns = ns;
	}
	if (slot >= LAT_FLOW_SLOTS)
		slot = LAT_FLOW_SLOTS - 1;
	a->v.count++;
	a->v.sum_ns += ns;
	barrier_var(slot);
	a->v.slots[slot & (LAT_FLOW_SLOTS - 1)]++;
	if (ns < a->v.min_ns)
		a->v.min_ns = ns;
	if (ns > a->v.max_ns)
		a->v.max_ns = ns;
}

/*
 * The identity of the packet in @skb. At @from_data stages the skb has just come in at L2 and
 * skb->data is its network header (after eth_type_trans; a VLAN tag not taken by the hardware
 * is skipped); elsewhere the network header is set. Returns 0 for what the engine cannot key.
 */
/* __ip_queue_xmit: the TCP header is built, the IP header not yet; the socket has the addresses. */
static __always_inline int lat_key_of_tcp_sock(struct sk_buff *skb, struct lat_scratch *s,
					       const int direct)
{
	struct lat_key *k = &s->key;
	struct sock *sk = NP_RD(direct, skb->sk, skb, sk);
	unsigned char *head = NP_RD(direct, skb->head, skb, head);
	__u16 th = NP_RD(direct, skb->transport_header, skb, transport_header);
	__u32 saddr, daddr;
	__u8 *l4 = s->buf;

	__builtin_memset(k, 0, sizeof(*k));
	if (!sk || th == NP_NO_HEADER)
		return 0;
	saddr = NP_RD(direct, sk->__sk_common.skc_rcv_saddr, sk, __sk_common.skc_rcv_saddr);
	daddr = NP_RD(direct, sk->__sk_common.skc_daddr, sk, __sk_common.skc_daddr);
	if (bpf_probe_read_kernel(l4, 20, head + th))
		return 0;
	k->flow.ethertype = NP_ETH_P_IP;
	k->flow.l3 = NP_L3_IPV4;
	k->flow.l4proto = NP_IPPROTO_TCP;
	__builtin_memcpy(k->flow.saddr, &saddr, 4);
	__builtin_memcpy(k->flow.daddr, &daddr, 4);
	k->flow.sport = (l4[0] << 8) | l4[1];
	k->flow.dport = (l4[2] << 8) | l4[3];
	k->id = ((__u32)l4[4] << 24) | (l4[5] << 16) | (l4[6] << 8) | l4[7];
	k->id2 = ((__u32)l4[8] << 24) | (l4[9] << 16) | (l4[10] << 8) | l4[11];
	s->state.tcp_flags = l4[13];
	return 1;
}

/*
 * An ICMP packet's identity: @id_seq, its echo id and sequence. For kernel_icmp_rtt a request
 * and its reply share a key (the reply's addresses are swapped back), and anything but an
 * echo is not keyed (0).
 */
static __always_inline int lat_icmp_key(struct lat_scratch *s, __u8 type, __u32 id_seq)
{
	struct lat_key *k = &s->key;
	__u8 tmp[16];

	s->state.icmp_type = type;
	k->id = id_seq;
	if (!lat_cfg.icmp_rtt)
		return 1;
	if (type == 8 || type == 128)
		return 1;
	if (type != 0 && type != 129)
		return 0;
	__builtin_memcpy(tmp, k->flow.saddr, 16);
	__builtin_memcpy(k->flow.saddr, k->flow.daddr, 16);
	__builtin_memcpy(k->flow.daddr, tmp, 16);
	return 1;
}

/* The L4 part of a packet's identity from plain loads at @l4 (see lat_key_of). */
static __always_inline int lat_key_l4_btf(struct lat_scratch *s, unsigned char *l4, __u8 l4proto,
					  __u16 proto)
{
	struct lat_key *k = &s->key;

	if (l4proto == NP_IPPROTO_TCP) {
		struct tcphdr *th = bpf_rdonly_cast(l4, bpf_core_type_id_kernel(struct tcphdr));

		k->flow.sport = bpf_ntohs(th->source);
		k->flow.dport = bpf_ntohs(th->dest);
		k->id = bpf_ntohl(th->seq);
		k->id2 = bpf_ntohl(th->ack_seq);
		s->state.tcp_flags = ((__u8 *)th)[13];
	} else if (l4proto == NP_IPPROTO_UDP) {
		struct udphdr *uh = bpf_rdonly_cast(l4, bpf_core_type_id_kernel(struct udphdr));

		k->flow.sport = bpf_ntohs(uh->source);
		k->flow.dport = bpf_ntohs(uh->dest);
		if (proto == NP_ETH_P_IPV6)
			k->id = ((__u32)bpf_ntohs(uh->len) << 16) | bpf_ntohs(uh->check);
	} else if (l4proto == NP_IPPROTO_ICMP || l4proto == NP_IPPROTO_ICMPV6) {
		struct icmphdr *ih = bpf_rdonly_cast(l4, bpf_core_type_id_kernel(struct icmphdr));

		return lat_icmp_key(s, ih->type,
				    ((__u32)bpf_ntohs(ih->un.echo.id) << 16) |
					    bpf_ntohs(ih->un.echo.sequence));
	}
	return 1;
}

/*
 * lat_key_of with plain fault-safe loads through bpf_rdonly_cast (6.2+; BTF pointers only):
 * no bpf_probe_read_kernel call. -1: the kernel has no bpf_rdonly_cast, use lat_key_of.
 */
static __always_inline int lat_key_of_btf(struct sk_buff *skb, struct lat_scratch *s,
					  const int from_data, const int ipv4)
{
	struct lat_key *k = &s->key;
	__u16 proto = ipv4 ? NP_ETH_P_IP : bpf_ntohs(skb->protocol);
	unsigned char *base;
	__u8 l4proto;

	if (!bpf_ksym_exists(bpf_rdonly_cast))
		return -1;
	__builtin_memset(k, 0, sizeof(*k));
	if (from_data == 2) {
		struct ethhdr *eth = bpf_rdonly_cast(skb->data, bpf_core_type_id_kernel(struct ethhdr));

		proto = bpf_ntohs(eth->h_proto);
		base = skb->data + NP_ETH_HLEN;
	} else if (from_data) {
		base = skb->data;
	} else {
		base = skb->head + skb->network_header;
	}
	if (from_data && (proto == NP_ETH_P_8021Q || proto == NP_ETH_P_8021AD)) {
		struct vlan_hdr *vh = bpf_rdonly_cast(base, bpf_core_type_id_kernel(struct vlan_hdr));

		proto = bpf_ntohs(vh->h_vlan_encapsulated_proto);
		base += 4;
	}
	k->flow.ethertype = proto;
	if (proto == NP_ETH_P_IP) {
		struct iphdr *ip = bpf_rdonly_cast(base, bpf_core_type_id_kernel(struct iphdr));
		__u8 vihl = *(__u8 *)ip;
		__u16 frag = bpf_ntohs(ip->frag_off) & 0x3fff;
		__u32 saddr = ip->saddr, daddr = ip->daddr;

		if ((vihl >> 4) != 4 || (vihl & 0x0f) < 5)
			return 0;
		l4proto = ip->protocol;
		k->flow.l3 = NP_L3_IPV4;
		k->flow.l4proto = l4proto;
		__builtin_memcpy(k->flow.saddr, &saddr, 4);
		__builtin_memcpy(k->flow.daddr, &daddr, 4);
		k->id = ((__u32)bpf_ntohs(ip->id) << 16) | frag;
		/* Fragments after the first: the IP id and offset are the identity. */
		if (frag & 0x1fff)
			return 1;
		return lat_key_l4_btf(s, base + (vihl & 0x0f) * 4, l4proto, proto);
	}
	if (proto == NP_ETH_P_IPV6) {
		struct ipv6hdr *ip6 = bpf_rdonly_cast(base, bpf_core_type_id_kernel(struct ipv6hdr));

		if ((*(__u8 *)ip6 >> 4) != 6)
			return 0;
		l4proto = ip6->nexthdr;
		k->flow.l3 = NP_L3_IPV6;
		k->flow.l4proto = l4proto;
		np_ipv6_addrs_btf(ip6, &k->flow);
		return lat_key_l4_btf(s, base + 40, l4proto, proto);
	}
	return 0;
}

static __always_inline int lat_key_of(struct sk_buff *skb, struct lat_scratch *s,
				      const int from_data, const int ipv4, const int direct)
{
	struct lat_key *k = &s->key;
	__u16 proto = ipv4 ? NP_ETH_P_IP : bpf_ntohs(NP_RD(direct, skb->protocol, skb, protocol));
	unsigned char *base;
	__u8 *b = s->buf, *l4;
	__u8 ihl, l4proto;

	if (direct) {
		int r = lat_key_of_btf(skb, s, from_data, ipv4);

		if (r >= 0)
			return r;
	}
	__builtin_memset(k, 0, sizeof(*k));
	if (from_data == 2) {
		__be16 outer = 0;

		base = NP_RD(direct, skb->data, skb, data);
		bpf_probe_read_kernel(&outer, sizeof(outer), base + 12);
		proto = bpf_ntohs(outer);
		base += NP_ETH_HLEN;
	} else if (from_data) {
		base = NP_RD(direct, skb->data, skb, data);
	} else {
		unsigned char *head = NP_RD(direct, skb->head, skb, head);
		__u16 nh = NP_RD(direct, skb->network_header, skb, network_header);

		base = head + nh;
	}
	if (from_data && (proto == NP_ETH_P_8021Q || proto == NP_ETH_P_8021AD)) {
		__be16 inner = 0;

		bpf_probe_read_kernel(&inner, sizeof(inner), base + 2);
		proto = bpf_ntohs(inner);
		base += 4;
	}
	if (proto != NP_ETH_P_IP && proto != NP_ETH_P_IPV6)
		return 0;
	if (bpf_probe_read_kernel(b, 64, base))
		return 0;
	k->flow.ethertype = proto;
	if (proto == NP_ETH_P_IP) {
		__u16 frag = ((b[6] << 8) | b[7]) & 0x3fff;

		if ((b[0] >> 4) != 4)
			return 0;
		ihl = b[0] & 0x0f;
		l4proto = b[9];
		k->flow.l3 = NP_L3_IPV4;
		__builtin_memcpy(k->flow.saddr, b + 12, 4);
		__builtin_memcpy(k->flow.daddr, b + 16, 4);
		k->id = ((__u32)((b[4] << 8) | b[5]) << 16) | frag;
		k->flow.l4proto = l4proto;
		/* Fragments after the first: the IP id and offset are the identity. */
		if (frag & 0x1fff)
			return 1;
		if (ihl == 5) {
			l4 = b + 20;
		} else {
			if (ihl < 5 || bpf_probe_read_kernel(b + 64, 20, base + ihl * 4))
				return 1;
			l4 = b + 64;
		}
	} else {
		if ((b[0] >> 4) != 6)
			return 0;
		l4proto = b[6];
		k->flow.l3 = NP_L3_IPV6;
		k->flow.l4proto = l4proto;
		__builtin_memcpy(k->flow.saddr, b + 8, 16);
		__builtin_memcpy(k->flow.daddr, b + 24, 16);
		l4 = b + 40;
	}
	if (l4proto == NP_IPPROTO_TCP) {
		k->flow.sport = (l4[0] << 8) | l4[1];
		k->flow.dport = (l4[2] << 8) | l4[3];
		k->id = ((__u32)l4[4] << 24) | (l4[5] << 16) | (l4[6] << 8) | l4[7];
		k->id2 = ((__u32)l4[8] << 24) | (l4[9] << 16) | (l4[10] << 8) | l4[11];
		s->state.tcp_flags = l4[13];
	} else if (l4proto == NP_IPPROTO_UDP) {
		k->flow.sport = (l4[0] << 8) | l4[1];
		k->flow.dport = (l4[2] << 8) | l4[3];
		/* IPv6 has no IP id: the UDP length and checksum stand in. */
		if (proto == NP_ETH_P_IPV6)
			k->id = ((__u32)((l4[4] << 8) | l4[5]) << 16) | (l4[6] << 8) | l4[7];
	} else if (l4proto == NP_IPPROTO_ICMP || l4proto == NP_IPPROTO_ICMPV6) {
		return lat_icmp_key(s, l4[0],
				    ((__u32)((l4[4] << 8) | l4[5]) << 16) | (l4[6] << 8) | l4[7]);
	}
	return 1;
}

static __always_inline int lat_role_of(struct net_device *dev, const int direct)
{
	__u32 idx;

	if (!dev)
		return LAT_ROLE_ANY;
	idx = NP_RD(direct, dev->ifindex, dev, ifindex);
#pragma unroll
	for (int r = 1; r < LAT_ROLES; r++)
#pragma unroll
		for (int i = 0; i < LAT_ROLE_DEVS; i++)
			if (lat_cfg.role_ifindex[r][i] && lat_cfg.role_ifindex[r][i] == idx)
				return r;
	return LAT_ROLE_ANY;
}

/* @skb NULL: it must not be read (net_dev_xmit); @xmit_len is its length then. */
static __always_inline void lat_record(struct lat_stage_rec *r, struct sk_buff *skb,
				       struct net_device *dev, __u64 now, __u32 qlen,
				       __u32 xmit_len, const int direct)
{
	r->ts_ns = now;
	r->cpu = bpf_get_smp_processor_id();
	r->qlen = qlen;
	if (!lat_cfg.meta)
		return;
	r->ifindex = dev ? NP_RD(direct, dev->ifindex, dev, ifindex) : 0;
	if (!skb) {
		r->len = xmit_len;
		return;
	}
	r->hash = NP_RD(direct, skb->hash, skb, hash);
	r->len = NP_RD(direct, skb->len, skb, len);
	r->queue = NP_RD(direct, skb->queue_mapping, skb, queue_mapping);
}

/*
 * A hash of the packet's identity: sampling decides the same for a packet at every stage that
 * may open it (an opener and the fallback after it).
 */
static __always_inline __u32 lat_key_hash(const struct lat_key *k)
{
	const __u32 *a = (const __u32 *)k->flow.saddr, *b = (const __u32 *)k->flow.daddr;
	__u64 h = ((__u64)k->id << 32 | k->id2) ^ ((__u64)k->flow.sport << 16 | k->flow.dport);

#pragma unroll
	for (int i = 0; i < 4; i++)
		h ^= ((__u64)a[i] << 32 | b[i]) * (i + 1);
	/* murmur3's finalizer: every input bit reaches the low bits the modulo uses. */
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return (__u32)h;
}

/* Does the first stage track this packet (the flow filter, sampling)? */
static __always_inline int lat_wants(struct lat_scratch *s, struct lat_stage_ref ref)
{
	if (ref.pos1 - 1 >= LAT_MAX_STAGES || !np_match_flow(&s->key.flow))
		return 0;
	return lat_cfg.sample <= 1 || lat_key_hash(&s->key) % lat_cfg.sample == 0;
}

/* A new packet's state in @ns (the scratch copy for the shared map, or a transmit slot's). */
static __always_inline void lat_fill(struct lat_scratch *s, struct lat_state *ns,
				     struct lat_stage_ref ref, struct sk_buff *skb,
				     struct net_device *dev, __u32 netns, __u64 now, __u32 qlen,
				     const int direct)
{
	__u8 tcp_flags = s->state.tcp_flags, icmp_type = s->state.icmp_type;
	__u32 pos = ref.pos1 - 1;

	if (lat_cfg.meta)
		__builtin_memset(ns, 0, sizeof(*ns));
	ns->first_ns = now;
	ns->last_ns = now;
	ns->path = ref.path;
	ns->last_pos = pos;
	ns->netns = netns;
	ns->tcp_flags = tcp_flags;
	ns->icmp_type = icmp_type;
	if (lat_cfg.meta) {
		ns->pid = bpf_get_current_pid_tgid() >> 32;
		bpf_get_current_comm(ns->comm, sizeof(ns->comm));
		barrier_var(pos); /* keeps the mask: older verifiers lose the range check's bound */
		lat_record(&ns->st[pos & (LAT_STAGE_SLOTS - 1)], skb, dev, now, qlen, 0, direct);
	}
}

static __always_inline void lat_started(void)
{
	struct lat_counters *c = lat_counters();

	if (c)
		c->started++;
}

static __always_inline int lat_open(struct lat_scratch *s, struct lat_stage_ref ref,
				    struct sk_buff *skb, struct net_device *dev, __u32 netns,
				    __u64 now, __u32 qlen, struct np_stats *st, const int direct)
{
	if (!lat_wants(s, ref))
		return 0;
	lat_fill(s, &s->state, ref, skb, dev, netns, now, qlen, direct);
	/* A packet already open (a retransmit, a loop) is reopened: the old copy never closed. */
	if (bpf_map_update_elem(&packets, &s->key, &s->state, BPF_ANY)) {
		np_map_full(st);
		return 0;
	}
	lat_started();
	return 1;
}

/* net_dev_queue of a packet in the shared map: net_dev_xmit will know it by its skb. */
static __always_inline void lat_xmit_id_put(struct sk_buff *skb, const struct lat_key *k, int role)
{
	struct lat_xmit_id id = { .key = *k, .role = role };
	__u64 addr = (__u64)skb;

	bpf_map_update_elem(&xmit_ids, &addr, &id, BPF_ANY);
}

static __always_inline struct lat_sync *lat_sync_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&sync, &zero);
}

/*
 * The transmit of @skb on @dev in progress on this CPU, newest first (a bridge transmits the
 * same skb on its port inside its own transmit). @dev 0: any device (a classic net_dev_xmit
 * tracepoint has none).
 */
static __always_inline struct lat_sync_slot *lat_sync_find(struct lat_sync *sy,
							  struct sk_buff *skb,
							  struct net_device *dev)
{
	__u32 next = sy->next;

#pragma unroll
	for (int i = 1; i <= LAT_SYNC_SLOTS; i++) {
		__u32 idx = (next - i) & (LAT_SYNC_SLOTS - 1);
		struct lat_sync_slot *sl;

		barrier_var(idx);
		sl = &sy->slot[idx & (LAT_SYNC_SLOTS - 1)];
		if (sl->skb == (__u64)skb && (!dev || sl->dev == (__u64)dev))
			return sl;
	}
	return 0;
}

/* A slot for a new transmit; one still taken never saw its net_dev_xmit. */
static __always_inline struct lat_sync_slot *lat_sync_take(struct lat_sync *sy,
							  struct sk_buff *skb,
							  struct net_device *dev,
							  const struct lat_key *k, __u32 role,
							  __u8 in_map)
{
	__u32 idx = sy->next & (LAT_SYNC_SLOTS - 1);
	struct lat_sync_slot *sl;

	sy->next++;
	barrier_var(idx);
	sl = &sy->slot[idx & (LAT_SYNC_SLOTS - 1)];
	if (sl->skb) {
		struct lat_counters *c = lat_counters();

		if (c)
			c->stale_hint++;
	}
	sl->skb = (__u64)skb;
	sl->dev = (__u64)dev;
	sl->key = *k;
	sl->role = role;
	sl->in_map = in_map;
	return sl;
}

/* Opens a packet that completes in this transmit call: its state stays in a per-CPU slot. */
static __always_inline void lat_open_sync(struct lat_scratch *s, struct lat_sync *sy,
					  struct lat_stage_ref ref, struct sk_buff *skb,
					  struct net_device *dev, int role, __u32 netns, __u64 now,
					  const int direct)
{
	struct lat_sync_slot *sl;

	if (!lat_wants(s, ref))
		return;
	sl = lat_sync_take(sy, skb, dev, &s->key, role, 0);
	lat_fill(s, &sl->state, ref, skb, dev, netns, now, 0, direct);
	lat_started();
}

/* A device without a queueing discipline transmits in the caller's context (noqueue). */
static __always_inline int lat_no_qdisc(struct net_device *dev, const int direct)
{
	struct netdev_queue *txq;
	struct Qdisc *q;

	if (!dev)
		return 0;
	txq = NP_RD(direct, dev->_tx, dev, _tx);
	if (!txq)
		return 0;
	q = NP_RD(direct, txq->qdisc, txq, qdisc);
	if (!q)
		return 0;
	return NP_RD(direct, q->enqueue, q, enqueue) == 0;
}

static __always_inline void lat_close(const struct lat_key *k, struct lat_state *ps, __u64 now,
				      struct np_stats *st, const int in_map)
{
	struct lat_counters *c = lat_counters();
	__u64 total = now - ps->first_ns;
	__u32 path = ps->path;

	if (lat_cfg.hists)
		lat_hist_add(path, lat_cfg.nstages * lat_cfg.nstages, total);
	if (lat_cfg.flows)
		lat_flow_add(k, path, total, st);
	if (lat_cfg.events && total >= lat_cfg.threshold_ns && np_rate_ok(st)) {
		struct lat_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

		if (!e) {
			np_lost_event(st);
		} else {
			e->key = *k;
			bpf_probe_read_kernel(&e->s, sizeof(e->s), ps);
			e->total_ns = total;
			np_submit(&events, e);
		}
	}
	if (in_map)
		bpf_map_delete_elem(&packets, k);
	if (c)
		c->completed++;
}

static __always_inline void lat_dropped(void)
{
	struct lat_counters *c = lat_counters();

	if (c)
		c->dropped++;
}

static __always_inline struct lat_stage_ref lat_ref(const int hook, int role)
{
	struct lat_stage_ref ref = lat_cfg.stage[hook][role & (LAT_ROLES - 1)];

	if (!ref.pos1 && role)
		ref = lat_cfg.stage[hook][LAT_ROLE_ANY];
	return ref;
}

/* A later stage of a packet whose state is in its transmit slot on this CPU. */
static __always_inline void lat_sync_stage(struct lat_sync_slot *sl, struct sk_buff *skb,
					   struct net_device *dev, const int hook, int rc,
					   __u32 xmit_len, const int direct)
{
	struct lat_stage_ref ref = lat_ref(hook, sl->role);
	struct lat_state *ps = &sl->state;
	__u32 pos;
	__u64 now;

	if (hook == LAT_HOOK_DEV_XMIT)
		sl->skb = 0; /* the transmit is over */
	if (!ref.pos1 || ref.path != ps->path)
		return;
	if (ref.flags & LAT_DROP_ONLY) {
		if (rc == 1) /* NET_XMIT_DROP */
			lat_dropped();
		return;
	}
	pos = ref.pos1 - 1;
	if (pos <= ps->last_pos || pos >= LAT_MAX_STAGES)
		return;
	if (hook == LAT_HOOK_DEV_XMIT && rc) {
		/* Without a qdisc nothing requeues: busy (0x10) and NET_XMIT_DROP both drop. */
		if (rc == 1 || rc == 0x10) {
			lat_dropped();
			return;
		}
	}
	now = bpf_ktime_get_ns();
	if (lat_cfg.stage_hists)
		lat_hist_add(ps->path, ps->last_pos * lat_cfg.nstages + pos, now - ps->last_ns);
	barrier_var(pos);
	if (lat_cfg.meta)
		lat_record(&ps->st[pos & (LAT_STAGE_SLOTS - 1)], hook == LAT_HOOK_DEV_XMIT ? 0 : skb,
			   dev, now, 0, xmit_len, direct);
	ps->last_ns = now;
	ps->last_pos = pos;
	if (!(ref.flags & LAT_LAST))
		return;
	sl->skb = 0;
	lat_close(&sl->key, ps, now, np_stats(), 0);
}

/*
 * One stage event: @hook is a constant; @rc and @xmit_len are net_dev_xmit's return code and
 * skb length (else 0).
 * net_dev_xmit must not read its skb (a veth has already handed it to the peer): the packet
 * comes from its transmit slot on this CPU, which net_dev_queue (a packet kept in the slot) or
 * start_xmit (only its identity) filled.
 */
static __always_inline void lat_stage(void *ctx, struct sk_buff *skb, struct net_device *dev,
				      const int hook, __u32 qlen, int rc, __u32 xmit_len,
				      const int direct)
{
	struct lat_sync_slot *sl = 0;
	struct lat_xmit_id *xid = 0;
	struct lat_sync *sy = 0;
	__u64 addr = (__u64)skb;
	struct lat_stage_ref ref;
	struct lat_scratch *s;
	struct lat_state *ps;
	struct np_stats *st;
	__u32 zero = 0, netns = 0, pos;
	int role, want_hint = 0;
	__u64 now;

	if (!skb)
		return;
	if (hook == LAT_HOOK_START_XMIT || hook == LAT_HOOK_DEV_XMIT ||
	    (hook == LAT_HOOK_DEV_QUEUE && (lat_cfg.stage[hook][LAT_ROLE_ANY].flags |
					    lat_cfg.stage[hook][LAT_ROLE_PHY].flags |
					    lat_cfg.stage[hook][LAT_ROLE_INTERNAL].flags |
					    lat_cfg.stage[hook][LAT_ROLE_VM].flags) & LAT_SYNC_TX)) {
		sy = lat_sync_get();
		if (!sy)
			return;
	}
	if (hook == LAT_HOOK_START_XMIT || hook == LAT_HOOK_DEV_XMIT) {
		sl = lat_sync_find(sy, skb, dev);
		if (sl && !sl->in_map) {
			lat_sync_stage(sl, skb, dev, hook, rc, xmit_len, direct);
			return;
		}
	}
	if (hook == LAT_HOOK_DEV_XMIT) {
		/* The device was matched (and its namespace checked) at start_xmit / net_dev_queue. */
		if (sl) {
			role = sl->role;
		} else {
			if (!lat_cfg.xmit_by_skb)
				return;
			xid = bpf_map_lookup_elem(&xmit_ids, &addr);
			if (!xid)
				return;
			/* The same skb on another device (a bridge's port) is not this stage. */
			role = dev ? lat_role_of(dev, direct) : xid->role;
		}
	} else {
		role = lat_role_of(dev, direct);
	}
	ref = lat_ref(hook, role);
	if (hook == LAT_HOOK_START_XMIT)
		want_hint = lat_ref(LAT_HOOK_DEV_XMIT, role).pos1 != 0;
	if (!ref.pos1 && !want_hint)
		return;
	st = np_stats();
	if (hook != LAT_HOOK_DEV_XMIT && (role != LAT_ROLE_ANY || (ref.flags & LAT_FIRST))) {
		struct net *net = np_skb_net(skb, dev, direct);

		netns = np_net_inum(net, direct);
		if (!np_match_place(net, netns, 0, st))
			return;
	}
	s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return;
	if (hook == LAT_HOOK_DEV_XMIT) {
		if (sl) {
			sl->skb = 0;
			s->key = sl->key;
		} else {
			s->key = xid->key;
			bpf_map_delete_elem(&xmit_ids, &addr);
		}
	} else {
		s->state.tcp_flags = 0;
		s->state.icmp_type = 0;
		if (ref.flags & LAT_FROM_SOCK) {
			if (!lat_key_of_tcp_sock(skb, s, direct))
				return;
		} else if (!lat_key_of(skb, s,
				       (ref.flags & LAT_FROM_DATA) ? 1 : (ref.flags & LAT_FROM_L2) ? 2 : 0,
				       (ref.flags & LAT_IPV4) != 0, direct)) {
			return;
		}
		if (ref.flags & (LAT_ICMP_REQ | LAT_ICMP_REP)) {
			__u8 t = s->state.icmp_type;
			int req = t == 8 || t == 128;

			if (((ref.flags & LAT_ICMP_REQ) && !req) || ((ref.flags & LAT_ICMP_REP) && req))
				return;
		}
	}
	/* A packet the filter or the sampling left out was never opened: no slot for it. */
	if (want_hint && sy && np_match_flow(&s->key.flow) &&
	    (lat_cfg.sample <= 1 || lat_key_hash(&s->key) % lat_cfg.sample == 0))
		lat_sync_take(sy, skb, dev, &s->key, role, 1);
	if (!ref.pos1)
		return;
	now = bpf_ktime_get_ns();
	if (ref.flags & LAT_FIRST) {
		if ((ref.flags & LAT_SYNC_TX) && sy && lat_no_qdisc(dev, direct))
			lat_open_sync(s, sy, ref, skb, dev, role, netns, now, direct);
		else if (lat_open(s, ref, skb, dev, netns, now, qlen, st, direct) &&
			 hook == LAT_HOOK_DEV_QUEUE && lat_cfg.xmit_by_skb)
			lat_xmit_id_put(skb, &s->key, role);
		return;
	}
	ps = bpf_map_lookup_elem(&packets, &s->key);
	if (!ps && (ref.flags & LAT_OPEN_IF_NEW)) {
		if (lat_open(s, ref, skb, dev, netns, now, qlen, st, direct) &&
		    hook == LAT_HOOK_DEV_QUEUE && lat_cfg.xmit_by_skb)
			lat_xmit_id_put(skb, &s->key, role);
		return;
	}
	if (!ps || ps->path != ref.path)
		return;
	if (ref.flags & LAT_DROP_ONLY) {
		if (rc == 1) { /* NET_XMIT_DROP */
			bpf_map_delete_elem(&packets, &s->key);
			lat_dropped();
		}
		return;
	}
	pos = ref.pos1 - 1;
	if (pos <= ps->last_pos || pos >= LAT_MAX_STAGES)
		return;
	if (hook == LAT_HOOK_DEV_XMIT && rc == 0x10) /* NETDEV_TX_BUSY: requeued, sent later */
		return;
	if (lat_cfg.stage_hists)
		lat_hist_add(ps->path, ps->last_pos * lat_cfg.nstages + pos, now - ps->last_ns);
	barrier_var(pos);
	if (lat_cfg.meta)
		lat_record(&ps->st[pos & (LAT_STAGE_SLOTS - 1)], hook == LAT_HOOK_DEV_XMIT ? 0 : skb,
			   dev, now, qlen, xmit_len, direct);
	ps->last_ns = now;
	ps->last_pos = pos;
	if (hook == LAT_HOOK_DEV_QUEUE && lat_cfg.xmit_by_skb)
		lat_xmit_id_put(skb, &s->key, role);
	if (hook == LAT_HOOK_DEV_XMIT && rc == 1) { /* NET_XMIT_DROP */
		bpf_map_delete_elem(&packets, &s->key);
		lat_dropped();
		return;
	}
	if (ref.flags & LAT_LAST) {
		__u32 path = ps->path;

		lat_close(&s->key, ps, now, st, 1);
		if (hook == LAT_HOOK_TUN_READ && lat_cfg.stage[LAT_HOOK_VM_NOTIFY][LAT_ROLE_ANY].pos1) {
			struct lat_unsignalled u = { .read_ns = now, .path = path, .pos = pos };
			__u32 tid = (__u32)bpf_get_current_pid_tgid();

			bpf_map_update_elem(&unsignalled, &tid, &u, BPF_NOEXIST);
		}
	}
}

/*
 * An MSI injected by KVM in the context of a thread that read packets from a tap (the irqfd
 * fast path runs in the eventfd writer: vhost, or the VMM): vm_read -> vm_notified.
 */
static __always_inline void lat_vm_notify(void)
{
	struct lat_stage_ref ref = lat_cfg.stage[LAT_HOOK_VM_NOTIFY][LAT_ROLE_ANY];
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct lat_unsignalled *u;
	__u32 to = ref.pos1 - 1;

	if (!ref.pos1)
		return;
	u = bpf_map_lookup_elem(&unsignalled, &tid);
	if (!u)
		return;
	if (lat_cfg.stage_hists && u->pos < to && to < LAT_MAX_STAGES)
		lat_hist_add(u->path, u->pos * lat_cfg.nstages + to, bpf_ktime_get_ns() - u->read_ns);
	bpf_map_delete_elem(&unsignalled, &tid);
}

SEC("tp_btf/kvm_msi_set_irq")
int BPF_PROG(lat_notify_btf)
{
	lat_vm_notify();
	return 0;
}

SEC("tracepoint/kvm/kvm_msi_set_irq")
int lat_notify_tp(void *args)
{
	lat_vm_notify();
	return 0;
}

/* ---- tp_btf programs (skb is a BTF pointer: direct loads) ---- */

SEC("tp_btf/net_dev_queue")
int BPF_PROG(lat_queue_btf, struct sk_buff *skb)
{
	lat_stage(ctx, skb, skb->dev, LAT_HOOK_DEV_QUEUE, 0, 0, 0, 1);
	return 0;
}

SEC("tp_btf/qdisc_dequeue")
int BPF_PROG(lat_deq_btf, struct Qdisc *q, const struct netdev_queue *txq, int packets,
	     struct sk_buff *skb)
{
	if (skb)
		lat_stage(ctx, skb, txq->dev, LAT_HOOK_QDISC_DEQUEUE, q->q.qlen, 0, 0, 1);
	return 0;
}

SEC("tp_btf/net_dev_start_xmit")
int BPF_PROG(lat_sxmit_btf, struct sk_buff *skb, struct net_device *dev)
{
	lat_stage(ctx, skb, dev, LAT_HOOK_START_XMIT, 0, 0, 0, 1);
	return 0;
}

SEC("tp_btf/net_dev_xmit")
int BPF_PROG(lat_xmit_btf, struct sk_buff *skb, int rc, struct net_device *dev,
	     unsigned int skb_len)
{
	lat_stage(ctx, skb, dev, LAT_HOOK_DEV_XMIT, 0, rc, skb_len, 1);
	return 0;
}

#define LAT_RX_ENTRY_BTF(prog, tp)                                          \
	SEC("tp_btf/" #tp)                                                  \
	int BPF_PROG(prog, struct sk_buff *skb)                             \
	{                                                                   \
		lat_stage(ctx, skb, skb->dev, LAT_HOOK_RX_ENTRY, 0, 0, 0, 1);  \
		return 0;                                                   \
	}

LAT_RX_ENTRY_BTF(lat_gro_btf, napi_gro_receive_entry)
LAT_RX_ENTRY_BTF(lat_frags_btf, napi_gro_frags_entry)
LAT_RX_ENTRY_BTF(lat_rxskb_btf, netif_receive_skb_entry)
LAT_RX_ENTRY_BTF(lat_rxlist_btf, netif_receive_skb_list_entry)
LAT_RX_ENTRY_BTF(lat_nrx_btf, netif_rx)

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(lat_recv_btf, struct sk_buff *skb)
{
	lat_stage(ctx, skb, skb->dev, LAT_HOOK_RECEIVE, 0, 0, 0, 1);
	return 0;
}

/* skb->dev is not the device here: UDP reuses it as dev_scratch. */
SEC("tp_btf/skb_copy_datagram_iovec")
int BPF_PROG(lat_read_btf, struct sk_buff *skb)
{
	lat_stage(ctx, skb, 0, LAT_HOOK_SOCK_READ, 0, 0, 0, 1);
	return 0;
}

/*
 * A tap reader pulled the packet: consume_skb located in tun_do_read, or, where the kernel
 * gives no location (before 6.3) or has no tun_do_read symbol, consumed on the VM's tap.
 */
static __always_inline int lat_is_tun_read(__u64 loc, struct net_device *dev, const int direct)
{
	if (loc && lat_cfg.tun_read_end)
		return loc >= lat_cfg.tun_read_start && loc < lat_cfg.tun_read_end;
	return lat_role_of(dev, direct) == LAT_ROLE_VM;
}

SEC("tp_btf/consume_skb")
int BPF_PROG(lat_consume_btf, struct sk_buff *skb)
{
	/* The location argument came with 6.3; before it, the device tells tun reads apart. */
	__u64 loc = bpf_core_field_exists(struct trace_event_raw_consume_skb, location) ? ctx[1] : 0;

	if (lat_is_tun_read(loc, skb->dev, 1))
		lat_stage(ctx, skb, skb->dev, LAT_HOOK_TUN_READ, 0, 0, 0, 1);
	else
		lat_stage(ctx, skb, 0, LAT_HOOK_CONSUMED, 0, 0, 0, 1);
	return 0;
}

/* ---- kernel functions: fentry (BTF pointers) or kprobe (probe reads) ---- */

#define LAT_FUNC(func, hook, fprog, kprog, ...)                                     \
	SEC("fentry/" #func)                                                        \
	int BPF_PROG(fprog, __VA_ARGS__)                                            \
	{                                                                           \
		lat_stage(ctx, skb, 0, hook, 0, 0, 0, 1);                              \
		return 0;                                                           \
	}                                                                           \
	SEC("kprobe/" #func)                                                        \
	int BPF_KPROBE(kprog, __VA_ARGS__)                                          \
	{                                                                           \
		lat_stage(ctx, skb, 0, hook, 0, 0, 0, 0);                              \
		return 0;                                                           \
	}

LAT_FUNC(__ip_queue_xmit, LAT_HOOK_IP_QUEUE_XMIT, lat_qxmit_fe, lat_qxmit_kp, struct sock *sk,
	 struct sk_buff *skb)
LAT_FUNC(ip_send_skb, LAT_HOOK_IP_SEND_SKB, lat_sendskb_fe, lat_sendskb_kp, struct net *net,
	 struct sk_buff *skb)
LAT_FUNC(ip_output, LAT_HOOK_IP_OUTPUT, lat_ipout_fe, lat_ipout_kp, struct net *net,
	 struct sock *sk, struct sk_buff *skb)
LAT_FUNC(ip_rcv, LAT_HOOK_IP_RCV, lat_iprcv_fe, lat_iprcv_kp, struct sk_buff *skb)
LAT_FUNC(ip_local_deliver, LAT_HOOK_IP_LOCAL_DELIVER, lat_ipld_fe, lat_ipld_kp,
	 struct sk_buff *skb)
LAT_FUNC(tcp_v4_rcv, LAT_HOOK_L4_RCV, lat_tcprcv_fe, lat_tcprcv_kp, struct sk_buff *skb)
LAT_FUNC(__udp4_lib_rcv, LAT_HOOK_L4_RCV, lat_udprcv_fe, lat_udprcv_kp, struct sk_buff *skb)
LAT_FUNC(udp_rcv, LAT_HOOK_L4_RCV, lat_udprcv2_fe, lat_udprcv2_kp, struct sk_buff *skb)
LAT_FUNC(icmp_rcv, LAT_HOOK_L4_RCV, lat_icmprcv_fe, lat_icmprcv_kp, struct sk_buff *skb)

/*
 * Open vSwitch's datapath, in the openvswitch module (its struct types live in the module's
 * BTF: untyped here, only the skb is read). The upcall is also a tracepoint there.
 */
LAT_FUNC(ovs_vport_receive, LAT_HOOK_OVS_RECEIVE, lat_ovsrcv_fe, lat_ovsrcv_kp, void *vport,
	 struct sk_buff *skb)
LAT_FUNC(ovs_dp_process_packet, LAT_HOOK_OVS_PROCESS, lat_ovsproc_fe, lat_ovsproc_kp,
	 struct sk_buff *skb)
LAT_FUNC(ovs_dp_upcall, LAT_HOOK_OVS_UPCALL, lat_ovsupc_fe, lat_ovsupc_kp, void *dp,
	 struct sk_buff *skb)
LAT_FUNC(ovs_flow_key_extract_userspace, LAT_HOOK_OVS_EXEC, lat_ovsexec_fe, lat_ovsexec_kp,
	 struct net *net, const void *attr, struct sk_buff *skb)
LAT_FUNC(ovs_vport_send, LAT_HOOK_OVS_SEND, lat_ovssend_fe, lat_ovssend_kp, void *vport,
	 struct sk_buff *skb)

SEC("tp_btf/ovs_dp_upcall")
int BPF_PROG(lat_ovsupc_btf, void *dp, struct sk_buff *skb)
{
	lat_stage(ctx, skb, 0, LAT_HOOK_OVS_UPCALL, 0, 0, 0, 1);
	return 0;
}

/* ---- classic tracepoints (older kernels): everything through bpf_probe_read_kernel ---- */

static __always_inline struct net_device *lat_skb_dev(struct sk_buff *skb)
{
	return BPF_CORE_READ(skb, dev);
}

SEC("tracepoint/net/net_dev_queue")
int lat_queue_tp(struct trace_event_raw_net_dev_template *args)
{
	struct sk_buff *skb = args->skbaddr;

	lat_stage(args, skb, lat_skb_dev(skb), LAT_HOOK_DEV_QUEUE, 0, 0, 0, 0);
	return 0;
}

SEC("tracepoint/qdisc/qdisc_dequeue")
int lat_deq_tp(struct trace_event_raw_qdisc_dequeue *args)
{
	struct sk_buff *skb = args->skbaddr;

	if (skb)
		lat_stage(args, skb, BPF_CORE_READ(args->txq, dev), LAT_HOOK_QDISC_DEQUEUE,
			  BPF_CORE_READ(args->qdisc, q.qlen), 0, 0, 0);
	return 0;
}

SEC("tracepoint/net/net_dev_start_xmit")
int lat_sxmit_tp(struct trace_event_raw_net_dev_start_xmit *args)
{
	struct sk_buff *skb = (struct sk_buff *)args->skbaddr;

	lat_stage(args, skb, lat_skb_dev(skb), LAT_HOOK_START_XMIT, 0, 0, 0, 0);
	return 0;
}

SEC("tracepoint/net/net_dev_xmit")
int lat_xmit_tp(struct trace_event_raw_net_dev_xmit *args)
{
	/* The skb may be gone: its identity and device role come from its transmit slot. */
	lat_stage(args, args->skbaddr, 0, LAT_HOOK_DEV_XMIT, 0, args->rc, args->len, 0);
	return 0;
}

#define LAT_RX_ENTRY_TP(prog, tp, type)                                               \
	SEC("tracepoint/net/" #tp)                                                    \
	int prog(struct type *args)                                                   \
	{                                                                             \
		struct sk_buff *skb = (struct sk_buff *)args->skbaddr;                \
		lat_stage(args, skb, lat_skb_dev(skb), LAT_HOOK_RX_ENTRY, 0, 0, 0, 0);   \
		return 0;                                                             \
	}

LAT_RX_ENTRY_TP(lat_gro_tp, napi_gro_receive_entry, trace_event_raw_net_dev_rx_verbose_template)
LAT_RX_ENTRY_TP(lat_rxskb_tp, netif_receive_skb_entry, trace_event_raw_net_dev_rx_verbose_template)
LAT_RX_ENTRY_TP(lat_nrx_tp, netif_rx, trace_event_raw_net_dev_template)

SEC("tracepoint/net/netif_receive_skb")
int lat_recv_tp(struct trace_event_raw_net_dev_template *args)
{
	struct sk_buff *skb = args->skbaddr;

	lat_stage(args, skb, lat_skb_dev(skb), LAT_HOOK_RECEIVE, 0, 0, 0, 0);
	return 0;
}

SEC("tracepoint/skb/skb_copy_datagram_iovec")
int lat_read_tp(struct trace_event_raw_skb_copy_datagram_iovec *args)
{
	lat_stage(args, (struct sk_buff *)args->skbaddr, 0, LAT_HOOK_SOCK_READ, 0, 0, 0, 0);
	return 0;
}

SEC("tracepoint/skb/consume_skb")
int lat_consume_tp(struct trace_event_raw_consume_skb *args)
{
	struct sk_buff *skb = args->skbaddr;
	struct net_device *dev = lat_skb_dev(skb);
	__u64 loc = 0;

	if (bpf_core_field_exists(args->location))
		loc = (__u64)BPF_CORE_READ(args, location);
	if (lat_is_tun_read(loc, dev, 0))
		lat_stage(args, skb, dev, LAT_HOOK_TUN_READ, 0, 0, 0, 0);
	else
		lat_stage(args, skb, 0, LAT_HOOK_CONSUMED, 0, 0, 0, 0);
	return 0;
}

/* Emits the event and value types into BTF so the skeleton generates them for Rust. */
struct lat_event lat_event_type = {};
struct lat_flow_key lat_flow_key_type = {};
struct lat_flow_value lat_flow_value_type = {};
struct lat_hist lat_hist_type = {};
struct lat_counters lat_counters_type = {};
struct lat_state lat_state_type = {};
struct lat_flow_acc lat_flow_acc_type = {};
