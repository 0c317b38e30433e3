/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Drop probe set: structs that cross the BPF/Rust boundary. */
#pragma once

#include "np_types.h"

#define DROP_MAX_STACK_DEPTH 127

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
	DROP_ETH_STP,
	DROP_ETH_OTHER,
};

struct drop_config {
	__u64 loc_match_start; /* count only drops located in [start, end) */
	__u64 loc_match_end;
	__u64 loc_skip_start; /* count all drops except those in [start, end) */
	__u64 loc_skip_end;
	__u32 mode;
	__u32 reason;        /* with has_reason_filter: only this reason value */
	__u32 stack_sample;  /* summary: walk the stack on 1 in N drops of a known key (0 = never) */
	__u32 stack_budget;  /* summary: at most this many sampled walks per interval */
	__u16 vlan_id;
	__u8 has_reason_filter;
	__u8 has_vlan_filter;
	__u8 eth_class;
	__u8 stacks;          /* walk stacks at all */
	__u8 key_location;
	__u8 key_flow;
	__u8 key_stack;       /* summary: the stack id is part of the key (every drop walks) */
	__u8 pad[3];
};

/* Summary key: what a drop is counted by. Unused parts stay zero. */
struct drop_key {
	struct np_flow flow;
	__u64 location;
	__u32 reason;
	__u32 netns;
	__u32 ifindex;
	__s32 stack_id;
};

struct drop_value {
	__u64 count;
	__s32 stack_id; /* stack of the first drop of this key in the interval */
	__u32 pad;
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
	__s32 stack_id;
	__u32 cpu;
	__u32 pad;
	char comm[16];
	char ifname[16];
};
