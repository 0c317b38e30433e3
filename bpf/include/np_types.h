/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Structs shared by every probe set; Rust reads them through the skeleton's generated types. */
#pragma once

enum np_l3 {
	NP_L3_NONE = 0,
	NP_L3_IPV4 = 4,
	NP_L3_IPV6 = 6,
	NP_L3_ARP = 8,
};

#define NP_MAX_STACK_DEPTH 127

/* A kernel stack carried inside an event (details): no stack id to outlive or reuse. */
struct np_stack {
	__u64 ips[NP_MAX_STACK_DEPTH];
	__u32 depth; /* frames in ips; 0 when not walked or the walk failed */
	__u32 pad;
};

/* How a set walks stacks (kit::StackPolicy). */
enum np_stack_mode {
	NP_STACKS_OFF = 0,
	NP_STACKS_SAMPLED = 1,     /* first event of a key, then 1 in N within a budget */
	NP_STACKS_EVERY_EVENT = 2, /* every event (summaries: the stack is part of the key) */
};

/* A flow as header fields: addresses in network order, ports and EtherType in host order. */
struct np_flow {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u16 ethertype;
	__u8 l3;
	__u8 l4proto;
};

/* Everything decoded from one packet. */
struct np_pkt {
	struct np_flow flow;
	__u8 smac[6];
	__u8 dmac[6];
	__u32 len;
	__u16 vlan_id;
	__u16 vlan_proto;
	__u16 ip_id;
	__u16 icmp_id;
	__u16 icmp_seq;
	__u16 arp_op;
	__u8 has_vlan;
	__u8 has_mac;
	__u8 has_llc;
	__u8 llc_dsap;
	__u8 llc_ssap;
	__u8 llc_ctrl;
	__u8 tcp_flags;
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 ttl;
	__u8 pkt_type;
	__u8 pad;
};

/* The packet filter, written into .rodata before load. Zero means "any". */
struct np_filter {
	__u64 netns_cookie; /* 0: match the namespace by inode (netns) */
	__u8 src_addr[16];
	__u8 src_mask[16];
	__u8 dst_addr[16];
	__u8 dst_mask[16];
	__u32 netns;
	__u32 ifindex;
	__u16 src_port;
	__u16 dst_port;
	__u8 src_l3;
	__u8 dst_l3;
	__u8 has_src_port;
	__u8 has_dst_port;
	__u8 l4proto;
	__u8 pad[3];
};

/* Things that went wrong in BPF, per CPU; printed at every interval and at exit. */
struct np_stats {
	__u64 lost_events;    /* ring buffer full */
	__u64 map_full;       /* a new key did not fit */
	__u64 stack_errors;   /* failed stack walks */
	__u64 stacks_skipped; /* sampled walks skipped for the interval's budget */
	__u64 rate_limited;   /* events counted, not submitted, above the rate limit */
	__u64 seen;           /* events that passed the filters (details) */
	__u64 sample_tick;    /* events since the last sampled stack walk on this CPU */
	__u64 window_start_ns; /* rate limit: start of this CPU's current second */
	__u64 window_events;  /* rate limit: events submitted in it */
	__u64 netns_match;    /* the struct net * that last matched the netns cookie filter */
};

/* The kit's own switches, written into .rodata before load. */
struct np_kit_config {
	__u64 events_per_cpu_sec; /* rate limit per CPU (0 = none) */
	__u64 wakeup_bytes;       /* wake the reader once this much is waiting */
};

/* Emits the boundary enums into BTF, so the skeleton generates them for Rust. */
#define NP_EXPORT_ENUM(e) enum e __np_export_##e = (enum e)0
