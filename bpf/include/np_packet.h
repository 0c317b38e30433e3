/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Packet decoding from an sk_buff and the filter every probe set shares. */
#pragma once

#include "np_types.h"

#define NP_ETH_P_8021Q 0x8100
#define NP_ETH_P_8021AD 0x88A8
#define NP_ETH_P_IP 0x0800
#define NP_ETH_P_IPV6 0x86DD
#define NP_ETH_P_ARP 0x0806
#define NP_ETH_P_RARP 0x8035
#define NP_ETH_P_802_2 0x0004
#define NP_ETH_P_802_3 0x0001
#define NP_ETH_HLEN 14
#define NP_IPPROTO_ICMP 1
#define NP_IPPROTO_TCP 6
#define NP_IPPROTO_UDP 17
#define NP_IPPROTO_ICMPV6 58
#define NP_NO_HEADER 0xffff

const volatile struct np_filter np_filter = {};

/*
 * Every reader takes `direct`, a literal constant after inlining: 1 in tp_btf programs, whose
 * skb is a BTF pointer that can be dereferenced with plain (CO-RE relocated) loads, 0 in classic
 * tracepoint programs, which must use bpf_probe_read_kernel. Clang drops the other branch, and
 * a direct load costs a fraction of a helper call: this is most of a summary tool's per-drop cost.
 */
#define NP_RD(direct, expr, ...) ((direct) ? (expr) : BPF_CORE_READ(__VA_ARGS__))

/* Network namespace of a packet: its device's, else its socket's (NULL if neither). */
static __always_inline struct net *np_skb_net(struct sk_buff *skb, struct net_device *dev,
					      const int direct)
{
	struct sock *sk;

	if (dev)
		return NP_RD(direct, dev->nd_net.net, dev, nd_net.net);
	sk = NP_RD(direct, skb->sk, skb, sk);
	if (sk)
		return NP_RD(direct, sk->__sk_common.skc_net.net, sk, __sk_common.skc_net.net);
	return NULL;
}

/* Inode number of a namespace (what `ip netns identify`/lsns show), 0 for none. */
static __always_inline __u32 np_net_inum(struct net *net, const int direct)
{
	if (!net)
		return 0;
	return NP_RD(direct, net->ns.inum, net, ns.inum);
}

/* Cookie of a namespace (5.7+: never reused, unlike an inode), 0 where there is none. */
static __always_inline __u64 np_net_cookie(struct net *net)
{
	__u64 cookie = 0;

	if (net && bpf_core_field_exists(net->net_cookie))
		bpf_core_read(&cookie, sizeof(cookie), &net->net_cookie);
	return cookie;
}

static __always_inline __u32 np_skb_ifindex(struct sk_buff *skb, struct net_device *dev,
					    const int direct)
{
	if (dev)
		return NP_RD(direct, dev->ifindex, dev, ifindex);
	return NP_RD(direct, skb->skb_iif, skb, skb_iif);
}

/* sk_buff of kernels 4.20 - 6.2, which had a vlan_present bit instead of vlan_all. */
struct sk_buff___vlan_present {
	__u8 vlan_present: 1;
} __attribute__((preserve_access_index));

/*
 * Hardware-accelerated VLAN tag. Present when: vlan_all != 0 (6.3+), the vlan_present bit is set
 * (4.20 - 6.2), or VLAN_TAG_PRESENT (0x1000) is set in vlan_tci (before 4.20).
 */
static __always_inline void np_skb_hw_vlan(struct sk_buff *skb, struct np_pkt *p, const int direct)
{
	__u16 tci = NP_RD(direct, skb->vlan_tci, skb, vlan_tci);
	struct sk_buff___vlan_present *old = (void *)skb;
	int present;

	if (bpf_core_field_exists(skb->vlan_all))
		present = NP_RD(direct, skb->vlan_all, skb, vlan_all) != 0;
	else if (bpf_core_field_exists(old->vlan_present))
		present = BPF_CORE_READ_BITFIELD_PROBED(old, vlan_present);
	else
		present = (tci & 0x1000) != 0;
	if (present) {
		p->has_vlan = 1;
		p->vlan_id = tci & 0x0fff;
		p->vlan_proto = bpf_ntohs(NP_RD(direct, skb->vlan_proto, skb, vlan_proto));
	}
}

/* Bytes read at the network header: IPv6 (40) + TCP up to its flags (14), with room to spare. */
#define NP_L3_READ 64

static __always_inline void np_parse_l4(const __u8 *l4, struct np_pkt *p)
{
	if (p->flow.l4proto == NP_IPPROTO_UDP || p->flow.l4proto == NP_IPPROTO_TCP) {
		p->flow.sport = (l4[0] << 8) | l4[1];
		p->flow.dport = (l4[2] << 8) | l4[3];
		if (p->flow.l4proto == NP_IPPROTO_TCP)
			p->tcp_flags = l4[13];
	} else if (p->flow.l4proto == NP_IPPROTO_ICMP || p->flow.l4proto == NP_IPPROTO_ICMPV6) {
		p->icmp_type = l4[0];
		p->icmp_code = l4[1];
		p->icmp_id = (l4[4] << 8) | l4[5];
		p->icmp_seq = (l4[6] << 8) | l4[7];
	}
}

/* Bytes of the network header a flow needs: IPv4 + ports (and ARP), IPv6 + ports. */
#define NP_FLOW_READ_V4 28 /* ARP: sender and target addresses end at 28 */
#define NP_FLOW_READ_V6 44

/*
 * Decodes L2-L4 headers of @skb into @p with two reads of packet memory (one at the MAC header,
 * only if @with_l2, one at the network header). Never fails: what cannot be read stays zero.
 * Without @with_meta only the flow is decoded (a summary key): no length, packet type, VLAN
 * or TCP flags, and only the header bytes the flow needs are read.
 * @buf: NP_L3_READ bytes of scratch space (the BPF stack is too small for everything).
 */
static __always_inline void np_parse_skb(struct sk_buff *skb, struct np_pkt *p, __u8 *buf,
					 const int with_l2, const int with_meta, const int direct)
{
	unsigned char *head = NP_RD(direct, skb->head, skb, head);
	__u16 mac = with_l2 ? NP_RD(direct, skb->mac_header, skb, mac_header) : 0;
	__u16 net = NP_RD(direct, skb->network_header, skb, network_header);
	__u16 proto = bpf_ntohs(NP_RD(direct, skb->protocol, skb, protocol));
	long err;

	if (with_meta) {
		p->len = NP_RD(direct, skb->len, skb, len);
		if (direct)
			p->pkt_type = BPF_CORE_READ_BITFIELD(skb, pkt_type);
		else
			p->pkt_type = BPF_CORE_READ_BITFIELD_PROBED(skb, pkt_type);
		np_skb_hw_vlan(skb, p, direct);
	}

	if (with_l2 && mac != NP_NO_HEADER) {
		__u8 eth[NP_ETH_HLEN + 4] = {};
		__u16 type;

		bpf_probe_read_kernel(eth, sizeof(eth), head + mac);
		p->has_mac = 1;
		__builtin_memcpy(p->dmac, eth, 6);
		__builtin_memcpy(p->smac, eth + 6, 6);
		type = (eth[12] << 8) | eth[13];
		if ((type == NP_ETH_P_8021Q || type == NP_ETH_P_8021AD) && !p->has_vlan) {
			p->has_vlan = 1;
			p->vlan_proto = type;
			p->vlan_id = ((eth[14] << 8) | eth[15]) & 0x0fff;
		}
		if (proto == NP_ETH_P_802_2 || proto == NP_ETH_P_802_3 || type < 0x0600) {
			p->llc_dsap = eth[14];
			p->llc_ssap = eth[15];
			p->llc_ctrl = eth[16];
			p->has_llc = 1;
		}
	}
	p->flow.ethertype = proto;
	if (proto != NP_ETH_P_IP && proto != NP_ETH_P_IPV6 && proto != NP_ETH_P_ARP &&
	    proto != NP_ETH_P_RARP)
		return;
	if (with_meta)
		err = bpf_probe_read_kernel(buf, NP_L3_READ, head + net);
	else if (proto == NP_ETH_P_IPV6)
		err = bpf_probe_read_kernel(buf, NP_FLOW_READ_V6, head + net);
	else
		err = bpf_probe_read_kernel(buf, NP_FLOW_READ_V4, head + net);
	if (err)
		return;

	if (proto == NP_ETH_P_IP) {
		__u8 ihl = buf[0] & 0x0f;

		if ((buf[0] >> 4) != 4)
			return;
		p->flow.l3 = NP_L3_IPV4;
		p->ip_id = (buf[4] << 8) | buf[5];
		p->ttl = buf[8];
		p->flow.l4proto = buf[9];
		__builtin_memcpy(p->flow.saddr, buf + 12, 4);
		__builtin_memcpy(p->flow.daddr, buf + 16, 4);
		/* Fragments after the first carry no L4 header. */
		if ((((buf[6] << 8) | buf[7]) & 0x1fff) != 0)
			return;
		if (ihl == 5) {
			np_parse_l4(buf + 20, p);
		} else if (ihl > 5) {
			/* IP options: one more read for the L4 header. */
			__u8 l4[14] = {};

			bpf_probe_read_kernel(l4, sizeof(l4), head + net + ihl * 4);
			np_parse_l4(l4, p);
		}
	} else if (proto == NP_ETH_P_IPV6) {
		if ((buf[0] >> 4) != 6)
			return;
		p->flow.l3 = NP_L3_IPV6;
		p->flow.l4proto = buf[6];
		p->ttl = buf[7];
		__builtin_memcpy(p->flow.saddr, buf + 8, 16);
		__builtin_memcpy(p->flow.daddr, buf + 24, 16);
		np_parse_l4(buf + 40, p);
	} else {
		p->flow.l3 = NP_L3_ARP;
		p->arp_op = (buf[6] << 8) | buf[7];
		__builtin_memcpy(p->flow.saddr, buf + 14, 4);
		__builtin_memcpy(p->flow.daddr, buf + 24, 4);
	}
}

/* 6.2+: an untrusted BTF pointer from an address; loads through it need no helper call. */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;

/* An IPv6 header's addresses into @f, with plain loads (@ip6 from bpf_rdonly_cast). */
static __always_inline void np_ipv6_addrs_btf(const struct ipv6hdr *ip6, struct np_flow *f)
{
	__u32 *s = (__u32 *)f->saddr, *d = (__u32 *)f->daddr;

#pragma unroll
	for (int i = 0; i < 4; i++) {
		s[i] = ip6->saddr.in6_u.u6_addr32[i];
		d[i] = ip6->daddr.in6_u.u6_addr32[i];
	}
}

/*
 * The flow of an IPv4/IPv6 packet with plain (fault-safe) loads through bpf_rdonly_cast, for
 * tp_btf programs on kernels that have it: a summary key without a bpf_probe_read_kernel call.
 * Returns 0 when it cannot (another protocol, no kfunc): the caller uses np_parse_skb.
 */
static __always_inline int np_parse_flow_btf(struct sk_buff *skb, struct np_pkt *p)
{
	unsigned char *head;
	__u16 proto, net;
	__u8 l4, ihl;

	if (!bpf_ksym_exists(bpf_rdonly_cast))
		return 0;
	proto = bpf_ntohs(skb->protocol);
	head = skb->head;
	net = skb->network_header;
	if (proto == NP_ETH_P_IP) {
		struct iphdr *ip = bpf_rdonly_cast(head + net, bpf_core_type_id_kernel(struct iphdr));
		__u32 saddr = ip->saddr, daddr = ip->daddr;

		ihl = *(__u8 *)ip & 0x0f;
		if ((*(__u8 *)ip >> 4) != 4)
			return 0;
		l4 = ip->protocol;
		p->flow.l3 = NP_L3_IPV4;
		p->flow.l4proto = l4;
		__builtin_memcpy(p->flow.saddr, &saddr, 4);
		__builtin_memcpy(p->flow.daddr, &daddr, 4);
		if (bpf_ntohs(ip->frag_off) & 0x1fff)
			goto done;
		net += ihl * 4;
	} else if (proto == NP_ETH_P_IPV6) {
		struct ipv6hdr *ip6 =
			bpf_rdonly_cast(head + net, bpf_core_type_id_kernel(struct ipv6hdr));

		l4 = ip6->nexthdr;
		p->flow.l3 = NP_L3_IPV6;
		p->flow.l4proto = l4;
		np_ipv6_addrs_btf(ip6, &p->flow);
		net += 40;
	} else {
		return 0;
	}
	if (l4 == NP_IPPROTO_UDP || l4 == NP_IPPROTO_TCP) {
		struct udphdr *uh = bpf_rdonly_cast(head + net, bpf_core_type_id_kernel(struct udphdr));

		p->flow.sport = bpf_ntohs(uh->source);
		p->flow.dport = bpf_ntohs(uh->dest);
	}
done:
	p->flow.ethertype = proto;
	return 1;
}

/* Does the filter look at packet contents (so the packet must be decoded)? */
static __always_inline int np_filter_needs_packet(void)
{
	return np_filter.l4proto || np_filter.src_l3 || np_filter.dst_l3 ||
	       np_filter.has_src_port || np_filter.has_dst_port;
}

static __always_inline int np_addr_match(const __u8 *addr, const volatile __u8 *want,
					 const volatile __u8 *mask)
{
#pragma unroll
	for (int i = 0; i < 16; i++)
		if ((addr[i] ^ want[i]) & mask[i])
			return 0;
	return 1;
}

/*
 * Where the packet is: netns and (netns, ifindex). Cheap, runs before decoding. The namespace
 * is matched by cookie where both the kernel and user space have one, else by inode.
 */
static __always_inline int np_match_place(struct net *net, __u32 netns, __u32 ifindex,
					  struct np_stats *st)
{
	if (np_filter.netns && np_filter.netns != netns)
		return 0;
	/*
	 * The inode matched; the cookie makes sure it is the same namespace. The namespace is
	 * pinned by the tool, so the struct net that matched once stays that namespace: remember
	 * it per CPU and read the cookie only for another one.
	 */
	if (np_filter.netns_cookie && bpf_core_field_exists(net->net_cookie) &&
	    (!st || st->netns_match != (__u64)net)) {
		if (np_net_cookie(net) != np_filter.netns_cookie)
			return 0;
		if (st)
			st->netns_match = (__u64)net;
	}
	if (np_filter.ifindex && np_filter.ifindex != ifindex)
		return 0;
	return 1;
}

/* What the packet is: protocol, addresses (with masks), ports. */
static __always_inline int np_match_flow(const struct np_flow *f)
{
	if (np_filter.l4proto) {
		if (np_filter.l4proto == NP_IPPROTO_ICMP) {
			if (f->l4proto != NP_IPPROTO_ICMP && f->l4proto != NP_IPPROTO_ICMPV6)
				return 0;
		} else if (np_filter.l4proto != f->l4proto) {
			return 0;
		}
	}
	if (np_filter.src_l3) {
		if (np_filter.src_l3 != f->l3 ||
		    !np_addr_match(f->saddr, np_filter.src_addr, np_filter.src_mask))
			return 0;
	}
	if (np_filter.dst_l3) {
		if (np_filter.dst_l3 != f->l3 ||
		    !np_addr_match(f->daddr, np_filter.dst_addr, np_filter.dst_mask))
			return 0;
	}
	if (np_filter.has_src_port && np_filter.src_port != f->sport)
		return 0;
	if (np_filter.has_dst_port && np_filter.dst_port != f->dport)
		return 0;
	return 1;
}
