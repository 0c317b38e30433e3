/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* vhost probe set: structs and enums that cross the BPF/Rust boundary. */
#pragma once

#include "np_types.h"

/* Which queue of a vhost-net device a virtqueue is (from its handle_kick). */
enum vhost_role {
	VHOST_ROLE_UNKNOWN = 0,
	VHOST_ROLE_RX = 1, /* toward the guest: the tap's packets into guest buffers */
	VHOST_ROLE_TX = 2, /* from the guest: guest buffers out through the tap */
};

/* Per-event reports (vhost_queue_correlation_*), each of one tap queue's virtqueues. */
enum vhost_event_kind {
	VHOST_EV_SIGNAL = 1,    /* vhost_add_used_and_signal_n: buffers used; the state before */
	VHOST_EV_EVENTFD = 2,   /* the virtqueue's call eventfd signalled: a guest notification */
	VHOST_EV_HANDLE = 3,    /* handle_rx / handle_tx: the worker serves the queue; its state */
	VHOST_EV_TAP_READ = 4,  /* tun_recvmsg: the worker takes a packet from the tap's ring */
	VHOST_EV_TAP_WRITE = 5, /* tun_sendmsg: the worker hands the guest's packets to the tap */
};

/* Log2 histograms per virtqueue or backend socket (tun_to_vhost_queue_stats_summary). */
enum vhost_hist_kind {
	VHOST_H_AVAIL_PENDING = 0, /* at used+signal: avail entries not yet taken (avail_idx - last_avail_idx) */
	VHOST_H_IN_FLIGHT = 1,     /* at used+signal: taken, not yet used (last_avail_idx - last_used_idx) */
	VHOST_H_RING_DEPTH = 2,    /* at tun_recvmsg: packets in the tap's ring (keyed by the socket) */
	VHOST_HIST_SLOTS = 20,
};

struct vhost_hist_key {
	__u64 obj;  /* the virtqueue, or the backend socket for RING_DEPTH */
	__u32 kind; /* enum vhost_hist_kind */
	__u32 pad;
};

struct vhost_hist {
	__u64 slots[VHOST_HIST_SLOTS]; /* np_log2_slot of the value */
	__u64 sum;
	__u64 max;
};

struct vhost_config {
	__u64 rx_kick;  /* handle_rx_kick: vq->handle_kick of an RX virtqueue (kallsyms) */
	__u64 tx_kick;  /* handle_tx_kick */
	__u32 count_arg; /* vhost_add_used_and_signal_n's count: argument 3, or 4 after nheads (newer kernels, 7.2) */
	__u32 event_kinds; /* bit (1 << kind): report these events (0: none, counters only) */
	char ifname[16]; /* events of this tap only (empty: any) */
	__u16 queue;     /* with has_queue: of this tap queue only */
	__u8 has_queue;
	__u8 hists;      /* fill vq_hists */
	__u8 pad[4];
};

/* A virtqueue's state as vhost_add_used_and_signal_n found it (before it adds the used
 * buffers), and the guest's side of its notification suppression. */
struct vhost_vq_state {
	__u32 num;               /* ring size */
	__u16 last_avail_idx;    /* next avail entry vhost takes */
	__u16 avail_idx;         /* the guest's avail->idx as vhost last read it */
	__u16 last_used_idx;     /* next used entry vhost writes */
	__u16 signalled_used;    /* used index at the last signal (EVENT_IDX) */
	__u8 signalled_used_valid;
	__u8 event_idx;          /* VIRTIO_RING_F_EVENT_IDX negotiated */
	__u8 guest_read;         /* avail_flags and used_event were read from the VMM's memory */
	__u8 pad;
	__u16 avail_flags;       /* guest avail->flags (VRING_AVAIL_F_NO_INTERRUPT = 1) */
	__u16 used_event;        /* guest avail->ring[num]: signal when used passes it */
};

/* Per virtqueue, one interval (drained). */
struct vhost_vq_stats {
	__u64 signal_calls;      /* vhost_add_used_and_signal_n calls */
	__u64 used;              /* buffers they marked used (sum of count) */
	__u64 signals;           /* of the call eventfd: eventfd_signal(_mask) with its context */
	__u64 handle;            /* handle_rx / handle_tx runs (the worker served the queue) */
	__u32 max_pending;       /* most avail entries not yet taken (avail_idx - last_avail_idx) */
	__u32 empty_calls;       /* calls that found no avail entry left (avail_idx == last_avail_idx) */
	__u32 no_interrupt;      /* calls that found the guest's VRING_AVAIL_F_NO_INTERRUPT set */
	__u32 pad;
	__u64 irqfd_wakeups;     /* KVM irqfd wakeups (EPOLLIN) on the call eventfd */
	__u32 irqfd_gsi;         /* with irqfd_seen: the irqfd's GSI */
	__u32 irqfd_vector;      /* with irqfd_msi: the vector of its MSI route */
	__u32 vm_pid;            /* with irqfd_seen: the irqfd's VM (kvm->userspace_pid) */
	__u8 irqfd_seen;
	__u8 irqfd_msi;          /* the GSI routes to an MSI */
	__u8 pad2[2];
	__u64 peeks;             /* vhost_net_buf_peek: the RX worker looking at its next packet */
	__u64 empty_peeks;       /* ... that found vhost's batch empty (returned 0) */
	__u64 peek_bytes;        /* sum of the lengths the others returned */
};

/* What a virtqueue is and its last state (kept across intervals). */
struct vhost_vq_info {
	__u64 call_ctx;          /* the call eventfd's eventfd_ctx */
	__u64 sock;              /* the backend socket (vq->private_data) */
	__u64 dev;               /* the vhost_dev */
	__u32 tgid;              /* the worker's thread group: the VMM on 6.4+, else the kthread */
	__u32 tid;               /* the worker thread */
	char comm[16];           /* the worker's comm (vhost-<VMM pid>) */
	__u32 role;              /* enum vhost_role */
	__u32 pad;
	struct vhost_vq_state last;
};

/* One event of a watched tap queue's virtqueue. */
struct vhost_event {
	__u64 ts_ns;
	__u64 vq;                /* the virtqueue (its address: an id) */
	__u32 kind;              /* enum vhost_event_kind */
	__u32 cpu;
	__u32 tid;
	__u32 tgid;
	__u32 count;             /* SIGNAL: buffers marked used */
	__u32 role;              /* enum vhost_role (SIGNAL, HANDLE, EVENTFD) */
	__u32 ifindex;           /* the tap */
	__u16 queue;             /* the tap queue */
	__u8 has_state;          /* state holds the virtqueue's (SIGNAL, HANDLE) */
	__u8 pad;
	char comm[16];
	char ifname[16];
	struct vhost_vq_state state;
};

/* Per backend socket (a tap queue), one interval: the worker's reads and writes. */
struct vhost_sock_stats {
	__u64 recvmsg;           /* tun_recvmsg: packets vhost took from the tap's ring */
	__u64 sendmsg;           /* tun_sendmsg: batches vhost handed to the tap */
	__u32 ifindex;           /* the tap */
	__u32 netns;             /* its namespace's inode number */
	__u16 queue;             /* the tap queue (tun_file.queue_index) */
	__u16 pad[3];
	char ifname[16];
};
