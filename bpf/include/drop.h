/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Drop probe set: structs and enums that cross the BPF/Rust boundary. */
#pragma once

#include "np_types.h"

enum drop_mode {
	DROP_MODE_SUMMARY = 0,
	DROP_MODE_DETAILS = 1,
};

/* EtherType classes for eth_drop --type. */
enum drop_eth_class {
	DROP_ETH_ALL = 0,
	DROP_ETH_ARP,
	DROP_ETH_RARP,
	DROP_ETH_IPV4,
	DROP_ETH_IPV6,
	DROP_ETH_LLDP,
	DROP_ETH_FLOW_CONTROL, /* 802.3x pause frames, EtherType 0x8808 */
	DROP_ETH_STP,
	DROP_ETH_OTHER,
};

/* Callers whose kfree_skb is a normal free on kernels without drop reasons (seed's filter). */
#define DROP_NORMAL_RANGES 8

struct drop_range {
	__u64 start;
	__u64 end;
};

struct drop_config {
	struct drop_range loc_match; /* count only drops located in [start, end) */
	struct drop_range loc_skip;  /* count all drops except those in [start, end) */
	struct drop_range normal[DROP_NORMAL_RANGES]; /* no-reason kernels: normal-free callers */
	enum drop_mode mode;
	enum drop_eth_class eth_class;
	enum np_stack_mode stacks;
	__u32 reason;        /* with has_reason_filter: only this reason value */
	__u32 stack_sample;  /* sampled stacks: walk 1 in N drops of a known key (0 = never) */
	__u32 stack_budget;  /* sampled stacks: at most this many sampled walks per interval */
	__u16 vlan_id;
	__u8 has_reason_filter;
	__u8 has_vlan_filter;
	__u8 normal_filter;  /* leave out normal frees (SKB_CONSUMED, or the callers above) */
	__u8 key_location;
	__u8 key_flow;
	__u8 pad;
};

/* Summary key: what a drop is counted by. Unused parts stay zero. */
struct drop_key {
	struct np_flow flow;
	__u64 location;
	__u32 reason;
	__u32 netns;
	__u32 ifindex;
	__s32 stack_id; /* with every-event stacks only */
};

struct drop_value {
	__u64 count;
	__s32 stack_id; /* stack of the first drop of this key in the interval */
	__u32 pad;
};

/*
 * Summary fast path: this CPU's last key and the drops counted for it that are not in
 * drop_counts yet. Two slots, by the parity of the interval generation: user space bumps the
 * generation, waits a grace period, and then reads the old slots, which no program touches
 * again until the generation after next.
 */
struct drop_pending {
	struct drop_key key;
	__u64 count;
	__u64 gen; /* generation + 1 the slot belongs to (0: never used) */
};

/* A sampled stack of one summary key. */
struct drop_stack_key {
	struct drop_key key;
	__s32 stack_id;
	__u32 pad;
};

/* Details: one event per matching drop. */
struct drop_event {
	__u64 ts_ns;
	__u64 location;
	struct np_pkt pkt;
	__u32 reason;
	__u32 netns;
	__u32 ifindex;
	__u32 pid;
	__u32 tid;
	__u32 cpu;
	char comm[16];
	char ifname[16];
	struct np_stack stack;
};
