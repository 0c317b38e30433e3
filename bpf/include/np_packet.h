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

/* Network namespace inode of a packet: its device's, else its socket's. */
static __always_inline __u32 np_skb_netns(struct sk_buff *skb)
{
	struct net_device *dev = BPF_CORE_READ(skb, dev);
	struct sock *sk;

	if (dev)
		return BPF_CORE_READ(dev, nd_net.net, ns.inum);
	sk = BPF_CORE_READ(skb, sk);
	if (sk)
		return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	return 0;
}

static __always_inline __u32 np_skb_ifindex(struct sk_buff *skb)
{
	struct net_device *dev = BPF_CORE_READ(skb, dev);

	if (dev)
		return BPF_CORE_READ(dev, ifindex);
	return BPF_CORE_READ(skb, skb_iif);
}

/* Hardware-accelerated VLAN tag: vlan_all on >= 4.20, VLAN_TAG_PRESENT (0x1000) before. */
static __always_inline void np_skb_hw_vlan(struct sk_buff *skb, struct np_pkt *p)
{
	__u16 tci = BPF_CORE_READ(skb, vlan_tci);
	__u16 proto = bpf_ntohs(BPF_CORE_READ(skb, vlan_proto));
	int present;

	if (bpf_core_field_exists(skb->vlan_all))
		present = BPF_CORE_READ(skb, vlan_all) != 0;
	else
		present = (tci & 0x1000) != 0;
	if (present) {
		p->has_vlan = 1;
		p->vlan_id = tci & 0x0fff;
		p->vlan_proto = proto;
	}
}

static __always_inline void np_parse_l4(unsigned char *l4, struct np_pkt *p)
{
	__u8 hdr[14] = {};

	if (p->flow.l4proto == NP_IPPROTO_UDP) {
		bpf_probe_read_kernel(hdr, 4, l4);
	} else if (p->flow.l4proto == NP_IPPROTO_TCP) {
		bpf_probe_read_kernel(hdr, 14, l4);
		p->tcp_flags = hdr[13];
	} else if (p->flow.l4proto == NP_IPPROTO_ICMP || p->flow.l4proto == NP_IPPROTO_ICMPV6) {
		bpf_probe_read_kernel(hdr, 8, l4);
		p->icmp_type = hdr[0];
		p->icmp_code = hdr[1];
		p->icmp_id = (hdr[4] << 8) | hdr[5];
		p->icmp_seq = (hdr[6] << 8) | hdr[7];
		return;
	} else {
		return;
	}
	p->flow.sport = (hdr[0] << 8) | hdr[1];
	p->flow.dport = (hdr[2] << 8) | hdr[3];
}

/* Decodes L2-L4 headers of @skb into @p. Never fails: what cannot be read stays zero. */
static __always_inline void np_parse_skb(struct sk_buff *skb, struct np_pkt *p)
{
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u16 mac = BPF_CORE_READ(skb, mac_header);
	__u16 net = BPF_CORE_READ(skb, network_header);
	__u16 proto = bpf_ntohs(BPF_CORE_READ(skb, protocol));
	unsigned char *l3;

	p->len = BPF_CORE_READ(skb, len);
	p->pkt_type = BPF_CORE_READ_BITFIELD_PROBED(skb, pkt_type);
	np_skb_hw_vlan(skb, p);

	if (mac != NP_NO_HEADER) {
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
			__u8 llc[3] = {};

			bpf_probe_read_kernel(llc, sizeof(llc), head + mac + NP_ETH_HLEN);
			p->llc_dsap = llc[0];
			p->llc_ssap = llc[1];
			p->llc_ctrl = llc[2];
			p->has_llc = 1;
		}
	}
	p->flow.ethertype = proto;
	l3 = head + net;

	if (proto == NP_ETH_P_IP) {
		__u8 ip[20] = {};

		bpf_probe_read_kernel(ip, sizeof(ip), l3);
		if ((ip[0] >> 4) != 4)
			return;
		p->flow.l3 = NP_L3_IPV4;
		p->ip_id = (ip[4] << 8) | ip[5];
		p->ttl = ip[8];
		p->flow.l4proto = ip[9];
		__builtin_memcpy(p->flow.saddr, ip + 12, 4);
		__builtin_memcpy(p->flow.daddr, ip + 16, 4);
		/* Fragments after the first carry no L4 header. */
		if ((((ip[6] << 8) | ip[7]) & 0x1fff) == 0)
			np_parse_l4(l3 + (ip[0] & 0x0f) * 4, p);
	} else if (proto == NP_ETH_P_IPV6) {
		__u8 ip6[40] = {};

		bpf_probe_read_kernel(ip6, sizeof(ip6), l3);
		if ((ip6[0] >> 4) != 6)
			return;
		p->flow.l3 = NP_L3_IPV6;
		p->flow.l4proto = ip6[6];
		p->ttl = ip6[7];
		__builtin_memcpy(p->flow.saddr, ip6 + 8, 16);
		__builtin_memcpy(p->flow.daddr, ip6 + 24, 16);
		np_parse_l4(l3 + 40, p);
	} else if (proto == NP_ETH_P_ARP || proto == NP_ETH_P_RARP) {
		__u8 arp[28] = {};

		bpf_probe_read_kernel(arp, sizeof(arp), l3);
		p->flow.l3 = NP_L3_ARP;
		p->arp_op = (arp[6] << 8) | arp[7];
		__builtin_memcpy(p->flow.saddr, arp + 14, 4);
		__builtin_memcpy(p->flow.daddr, arp + 24, 4);
	}
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

/* Where the packet is: netns and (netns, ifindex). Cheap, runs before decoding. */
static __always_inline int np_match_place(__u32 netns, __u32 ifindex)
{
	if (np_filter.netns && np_filter.netns != netns)
		return 0;
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
