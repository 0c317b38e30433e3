/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* proctrace probe set: structs that cross the BPF/Rust boundary. */
#pragma once

#include "np_types.h"

enum pt_sizes {
	PT_COMM_LEN = 16,
	PT_IFNAME_LEN = 16,
	PT_ARGS = 6,
};

/* What an event is. */
enum pt_kind {
	PT_SYSCALL = 1,     /* a syscall that returned (entry → exit) */
	PT_NET_QUEUE = 2,   /* net:net_dev_queue: a packet handed to a device's queue */
	PT_NET_XMIT = 3,    /* net:net_dev_xmit: the driver took it (rc) */
	PT_NET_RECEIVE = 4, /* net:netif_receive_skb: a packet entered the stack */
	PT_NET_RX = 5,      /* net:netif_rx: a packet queued to the backlog (loopback, veth) */
	PT_DROP = 6,        /* skb:kfree_skb: a packet dropped */
};

struct pt_config {
	__u64 cgroup_id;  /* 0: by process (`targets`); else the tasks of this cgroup v2 */
	__u8 syscalls;    /* report syscalls */
	__u8 net;         /* report the net tracepoints */
	__u8 follow_forks; /* children of followed processes are followed */
	__u8 pad[5];
};

/* A syscall in flight. */
struct pt_start {
	__u64 ts;
	__u64 args[PT_ARGS];
};

struct pt_event {
	__u64 ts_ns;    /* CLOCK_MONOTONIC */
	__u64 dur_ns;   /* syscalls */
	__u64 args[PT_ARGS];
	__s64 ret;      /* syscalls: return value; net_dev_xmit: rc */
	__u64 location; /* drops: where */
	__u32 kind;     /* enum pt_kind */
	__u32 nr;       /* syscalls: the number */
	__u32 tgid;
	__u32 tid;
	__u32 ifindex;
	__u32 netns;    /* the device's (or socket's) network namespace inode */
	char comm[PT_COMM_LEN];
	char ifname[PT_IFNAME_LEN];
	struct np_pkt pkt;
};
