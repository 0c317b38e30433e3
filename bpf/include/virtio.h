/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* virtio probe set: structs and enums that cross the BPF/Rust boundary. */
#pragma once

#include "np_types.h"

enum virtio_sizes {
	VIRTIO_MAX_QUEUES = 64,     /* queue pairs counted per device (virtio-net allows 256) */
	VIRTIO_MAX_IRQS = 128,      /* IRQ slots: a vector per virtqueue plus config */
	VIRTIO_CALLER_RANGES = 16,  /* kernel functions that tell who polled */
	VIRTIO_STACK_DEPTH = 16,    /* frames walked to tell who polled */
	VIRTIO_HIST_SLOTS = 32,     /* log2 slots of the IRQ histograms (2^31 ns = 2.1 s) */
	VIRTIO_NO_QUEUE = 0xffff,   /* queue unknown: no BTF for virtio_net's queue structs */
};

/* Which NAPI of the device polled. */
enum virtio_kind {
	VIRTIO_RX = 0, /* virtnet_poll: a receive queue */
	VIRTIO_TX = 1, /* virtnet_poll_tx: a send queue's completions */
	VIRTIO_KINDS = 2,
};

/* Who ran the poll, from the stack. */
enum virtio_caller {
	VIRTIO_BY_OTHER = 0,
	VIRTIO_BY_IRQ = 1,       /* NET_RX softirq on hard-IRQ exit */
	VIRTIO_BY_KSOFTIRQD = 2, /* NET_RX softirq in ksoftirqd */
	VIRTIO_BY_BH_ENABLE = 3, /* NET_RX softirq run by local_bh_enable */
	VIRTIO_BY_BUSY_POLL = 4, /* a socket's busy poll (SO_BUSY_POLL, epoll busy poll) */
	VIRTIO_BY_THREADED = 5,  /* a threaded-NAPI kthread */
	VIRTIO_BY_SOFTIRQ = 6,   /* net_rx_action whose trigger lies deeper than the walk */
	VIRTIO_CALLERS = 8,
};

/* A kernel function [start, end) from kallsyms and who polled when it is in the stack. */
struct virtio_range {
	__u64 start;
	__u64 end;
	__u32 caller; /* enum virtio_caller */
	__u32 pad;
};

struct virtio_config {
	struct virtio_range callers[VIRTIO_CALLER_RANGES];
	__u64 poll_rx;         /* virtnet_poll */
	__u64 poll_tx;         /* virtnet_poll_tx */
	__u64 vring_interrupt; /* the per-virtqueue MSI-X handler */
	__u64 skb_recv_done;   /* the rx virtqueues' callback */
	__u32 queue;           /* with has_queue: only this queue pair */
	__u8 has_queue;
	__u8 polls;            /* count polls per queue, kind and caller */
	__u8 stacks;           /* count polls per stack */
	__u8 softirq_seen;     /* softirq entry/exit are attached: virtio_softirq is kept */
};

/* This CPU's NET_RX softirq, per CPU. */
struct virtio_softirq {
	__u8 active; /* between softirq_entry and softirq_exit of NET_RX */
	__u8 by;     /* enum virtio_caller, VIRTIO_CALLERS: the stack must tell */
};

/* Polls of one queue and kind, per CPU, one interval. */
struct virtio_poll_stats {
	__u64 by[VIRTIO_CALLERS]; /* polls, by enum virtio_caller */
	__u64 work;               /* packets (rx) or completions (tx) the polls processed */
	__u64 budget;             /* sum of the budgets they were given */
	__u64 zero_work;          /* polls that found nothing */
	__u64 full_budget;        /* polls that used their whole budget (more work was left) */
};

/* A receive queue's own counters, read at its last poll (the device's, not per interval). */
struct virtio_rq_state {
	__u64 packets;
	__u64 bytes;
	__u64 drops;
	__u64 kicks;
	__u32 calls;           /* rq->calls: rx callbacks (IRQs) seen by DIM (u16 in the kernel) */
	__u32 packets_in_napi; /* rq->packets_in_napi (DIM) */
	__u32 vq_index;
	__u8 dim_enabled;
	__u8 valid;
	__u8 has_calls;        /* the kernel has rq->calls and rq->packets_in_napi */
	__u8 has_stats;        /* the kernel has rq->stats (packets, bytes, drops, kicks) */
};

/* What user space knows of one IRQ, by IRQ number (from /proc/interrupts or --irqs). */
struct virtio_irq_info {
	__u32 slot; /* index into irq_stats and irq_last */
};

/* One IRQ's handler runs, per CPU, one interval. */
struct virtio_irq_stats {
	__u64 count;
	__u64 handled;   /* IRQ_HANDLED (or IRQ_WAKE_THREAD) */
	__u64 none;      /* IRQ_NONE: vring_interrupt found no used buffer */
	__u64 handler_ns;
	__u64 gap_ns;    /* sum of the times since the previous entry (gap_hist's samples) */
	__u64 handler_hist[VIRTIO_HIST_SLOTS]; /* log2 ns, entry to exit */
	__u64 gap_hist[VIRTIO_HIST_SLOTS];     /* log2 ns since the IRQ's previous entry */
	__u32 vq_index;  /* action->dev_id as a virtqueue (tp_btf with vring_interrupt) */
	__u8 has_vq;
	__u8 is_vring;   /* the handler is vring_interrupt */
	__u8 rx;         /* the vq's callback is skb_recv_done */
	__u8 pad;
};

/* The IRQ whose handler runs on this CPU (hard IRQ handlers do not nest). */
struct virtio_irq_entry {
	__u64 ts;
	__u32 irq;
	__u32 slot;
};

/* Polls counted by stack. */
struct virtio_stack_key {
	__s32 stack_id;
	__u16 queue;
	__u8 kind;
	__u8 caller;
};
