/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* tun probe set: structs and enums that cross the BPF/Rust boundary. */
#pragma once

#include "np_types.h"

enum tun_sizes {
	TUN_MAX_QUEUES = 256,  /* MAX_TAP_QUEUES: tun_struct.tfiles[] */
	TUN_READ_RANGES = 4,   /* kernel functions whose consume_skb is a reader's read */
	TUN_MACVLAN_WALK = 16, /* macvlans of one lower device searched for the macvtap */
	TUN_DROP_REASONS = 8,  /* distinct drop reasons counted per queue and interval */
	TUN_FILL_SAMPLE = 8,   /* an xmit in this many per CPU reads the fill (a power of 2) */
	TUN_HIST_SLOTS = 20,   /* log2 slots of the fill histogram (rings hold at most 2^16+) */
};

/* What the ring read found; TUN_RING_OK means the indices are valid. */
enum tun_ring_status {
	TUN_RING_OK = 0,
	TUN_RING_NOT_TUN = 1,   /* netdev_priv(dev)->dev != dev: not a tun/tap device */
	TUN_RING_NO_QUEUE = 2,  /* no tun_file at tfiles[queue] (no reader attached) */
	TUN_RING_NO_BTF = 3,    /* the kernel's BTF has no struct tun_struct (a module without BTF) */
	TUN_RING_BAD = 4,       /* ring size 0 or the queue pointer unreadable */
	TUN_RING_QUEUE_UNKNOWN = 5, /* multi-queue macvtap, no hash or rx queue to pick one by */
};

struct tun_range {
	__u64 start;
	__u64 end;
};

struct tun_config {
	struct tun_range read_fn[TUN_READ_RANGES]; /* [start, end) of tun_do_read & co. */
	__u32 queue;      /* with has_queue: only this queue */
	__u8 has_queue;
	__u8 events;      /* report xmits as events (else only count them) */
	__u8 all;         /* events for every xmit, not only those that find the ring full */
	__u8 vmlinux_tun; /* struct tun_struct is in vmlinux BTF: bpf_rdonly_cast can take it */
	__u8 macvtap;     /* the device is a macvtap: tap_dev.taps[queue]->ring */
	__u8 pad[3];
	__u64 macvlan_rx_handler; /* macvlan_handle_frame: a lower device of macvlans has it */
};

/* A ptr_ring snapshot. pending: produced, not yet consumed; unavailable: slots the producer
 * cannot use yet (the consumer zeroes consumed slots lazily, a batch at a time). */
struct tun_ring {
	__u32 producer;
	__u32 consumer_head;
	__u32 consumer_tail;
	__u32 size;
	__u32 batch;
	__u32 pending;
	__u32 unavailable;
	__u8 full;         /* queue[producer] != NULL: ptr_ring_produce() fails now */
	__u8 status;       /* enum tun_ring_status */
	__u16 numqueues;
	__u8 filled;       /* the consumer indices, pending and unavailable were read */
	__u8 pad[3];
};

/* Per queue and CPU, one interval. */
struct tun_queue_stats {
	__u64 xmit;            /* packets the stack handed to the tap on this queue */
	__u64 full;            /* of those, found the ring full */
	__u64 read;            /* packets a reader took (consume_skb; kernels without tun's BTF) */
	__u64 drops;           /* kfree_skb of the tap's packets on this queue (any reason) */
	__u64 sum_pending;     /* sum over the xmits that read the fill, for the mean fill ... */
	__u64 fill_samples;    /* ... and how many did */
	__u64 unknown_ring;    /* xmits whose ring could not be read (status != OK) */
	__u32 max_pending;
	__u32 max_unavailable;
	__u32 size;            /* ring size at the last xmit or read */
	__u32 batch;
	__u32 drop_reason[TUN_DROP_REASONS]; /* reason values seen ... */
	__u32 drop_count[TUN_DROP_REASONS];  /* ... and how often */
	__u32 last_status;     /* enum tun_ring_status of the last failed read */
	__u32 first_pending;   /* the fill found by this CPU's first xmit of the interval ... */
	__u64 first_ts;        /* ... and when (0: none) */
	__u32 pending_hist[TUN_HIST_SLOTS]; /* log2 histogram of the fills read (np_log2_slot) */
};

/* A queue's ring at the end of an interval (the tun_sample program, run by user space). */
struct tun_sample {
	struct tun_ring ring;
	__u8 valid;
	__u8 pad[3];
};

/* One xmit into the tap (details). */
struct tun_event {
	__u64 ts_ns;
	struct np_flow flow;
	struct tun_ring ring;
	__u32 queue;
	__u32 cpu;
	__u32 len;
	__u32 pid;
	char comm[16];
};
