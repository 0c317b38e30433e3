/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Latency probe set: the stage engine's structs and enums that cross the BPF/Rust boundary. */
#pragma once

#include "np_types.h"

/* Stage positions per path (user space defines the paths). */
#define LAT_MAX_STAGES 16
/* Per-stage records: a power of two, so that a masked index is bounded for every verifier. */
#define LAT_STAGE_SLOTS 16
/* Paths one load can track at once (e.g. tx and rx). */
#define LAT_MAX_PATHS 2
/* Devices per role (bond members). */
#define LAT_ROLE_DEVS 4
/* log2 slots of a nanosecond histogram. */
#define LAT_SLOTS 64
/* log2 slots of a per-flow histogram (up to 2^31 ns = 2.1 s; longer lands in the last). */
#define LAT_FLOW_SLOTS 32

/* The sizes above, exported so Rust sizes its reads from the same numbers. */
enum lat_sizes {
	LAT_SIZE_STAGES = LAT_MAX_STAGES,
	LAT_SIZE_PATHS = LAT_MAX_PATHS,
	LAT_SIZE_ROLE_DEVS = LAT_ROLE_DEVS,
};

/* Where a stage hooks the kernel: one BPF program (or several, for the rx entry) per hook. */
enum lat_hook {
	LAT_HOOK_DEV_QUEUE = 0,     /* net:net_dev_queue */
	LAT_HOOK_QDISC_DEQUEUE = 1, /* qdisc:qdisc_dequeue */
	LAT_HOOK_START_XMIT = 2,    /* net:net_dev_start_xmit */
	LAT_HOOK_DEV_XMIT = 3,      /* net:net_dev_xmit (identity from start_xmit on this CPU) */
	LAT_HOOK_RX_ENTRY = 4,      /* napi_gro_receive_entry, netif_receive_skb(_list)_entry, netif_rx, napi_gro_frags_entry */
	LAT_HOOK_RECEIVE = 5,       /* net:netif_receive_skb (__netif_receive_skb_core) */
	LAT_HOOK_SOCK_READ = 6,     /* skb:skb_copy_datagram_iovec (a process reads the packet) */
	LAT_HOOK_TUN_READ = 7,      /* skb:consume_skb located in tun_do_read (a tap reader pulled it) */
	LAT_HOOK_CONSUMED = 8,      /* skb:consume_skb elsewhere (freed after use, e.g. an echo request) */
	/* Functions (fentry, else kprobe) where the kernel offers them. */
	LAT_HOOK_IP_QUEUE_XMIT = 9,     /* __ip_queue_xmit: TCP, before the IP header exists */
	LAT_HOOK_IP_SEND_SKB = 10,      /* ip_send_skb: UDP, ICMP, raw */
	LAT_HOOK_IP_OUTPUT = 11,        /* ip_output */
	LAT_HOOK_IP_RCV = 12,           /* ip_rcv */
	LAT_HOOK_IP_LOCAL_DELIVER = 13, /* ip_local_deliver */
	LAT_HOOK_L4_RCV = 14,           /* tcp_v4_rcv, __udp4_lib_rcv (or udp_rcv), icmp_rcv */
	LAT_HOOK_VM_NOTIFY = 15,        /* kvm:kvm_msi_set_irq in the thread that read from the tap */
	/* Open vSwitch's kernel datapath (the openvswitch module; fentry, else kprobe). */
	LAT_HOOK_OVS_RECEIVE = 16,  /* ovs_vport_receive: a port hands the packet to the datapath */
	LAT_HOOK_OVS_PROCESS = 17,  /* ovs_dp_process_packet: flow table lookup */
	LAT_HOOK_OVS_UPCALL = 18,   /* ovs_dp_upcall (tracepoint openvswitch:ovs_dp_upcall): a miss */
	LAT_HOOK_OVS_EXEC = 19,     /* ovs_flow_key_extract_userspace: the packet back from userspace */
	LAT_HOOK_OVS_SEND = 20,     /* ovs_vport_send: the datapath outputs the packet to a port */
	LAT_HOOKS = 21,
};

/* What a device is to the path; ANY for hooks without a device of their own. */
enum lat_role {
	LAT_ROLE_ANY = 0,
	LAT_ROLE_PHY = 1,
	LAT_ROLE_INTERNAL = 2,
	LAT_ROLE_VM = 3,
	LAT_ROLES = 4,
};

enum lat_stage_flags {
	LAT_FIRST = 1,      /* opens the packet's state */
	LAT_LAST = 2,       /* closes it: totals, histograms, the details event */
	LAT_FROM_DATA = 4,  /* parse at skb->data (L3 after eth_type_trans), not network_header */
	LAT_ICMP_REQ = 8,   /* only ICMP echo requests (kernel_icmp_rtt) */
	LAT_ICMP_REP = 16,  /* only ICMP echo replies */
	LAT_FROM_SOCK = 32, /* TCP before IP: addresses from the socket, TCP header at transport_header */
	LAT_DROP_ONLY = 64, /* not a stage: a net_dev_xmit error here drops the packet (a full tap ring) */
	LAT_IPV4 = 128,     /* an IPv4 function: skb->protocol may not be set yet (ip_send_skb, ip_output) */
	LAT_OPEN_IF_NEW = 256, /* opens a packet no earlier stage opened (a function stage that missed it) */
	/*
	 * A net_dev_queue opener whose later stages all run in the same transmit call on this CPU
	 * (start_xmit, net_dev_xmit of the same single device): on a device without a queueing
	 * discipline the packet's state stays in a per-CPU slot, keyed by skb and device, and no
	 * shared map is touched.
	 */
	LAT_SYNC_TX = 512,
	LAT_FROM_L2 = 1024, /* parse from skb->data at the Ethernet header (a packet built from userspace) */
};

/* The stage a hook on a device of some role is: 0 in `pos1` when it is none. */
struct lat_stage_ref {
	__u8 path;   /* path index */
	__u8 pos1;   /* position in the path + 1 */
	__u16 flags; /* enum lat_stage_flags */
};

struct lat_config {
	struct lat_stage_ref stage[LAT_HOOKS][LAT_ROLES];
	__u32 role_ifindex[LAT_ROLES][LAT_ROLE_DEVS]; /* 0 = unused */
	__u64 threshold_ns;   /* details: report packets whose total is at least this */
	__u64 tun_read_start; /* tun_do_read's address range (0: tell by the device alone) */
	__u64 tun_read_end;
	__u32 sample;         /* track 1 packet in N at the first stage (0, 1: all) */
	/* Histogram cells: pair (from, to) = from * nstages + to, the total nstages^2; per path
	 * hist_pairs = nstages^2 + 1 cells; per generation hist_cells = paths * hist_pairs. */
	__u32 nstages;
	__u32 hist_pairs;
	__u32 hist_cells;
	__u8 hists;           /* summary: total histograms */
	__u8 stage_hists;     /* summary: adjacent-stage histograms */
	__u8 flows;           /* summary: per-flow totals */
	__u8 events;          /* details: one event per slow packet */
	__u8 meta;            /* record per-stage metadata (details) */
	__u8 icmp_rtt;        /* echo request and reply share a key (kernel_icmp_rtt) */
	__u8 xmit_by_skb;     /* no start_xmit program: net_dev_queue leaves the identity by skb */
	__u8 pad;
};

/*
 * A packet's identity, from its headers: the flow, plus TCP seq/ack, IPv4 id and fragment
 * offset, ICMP id/seq, or (IPv6 UDP, no id) length and checksum.
 */
struct lat_key {
	struct np_flow flow;
	__u32 id;
	__u32 id2;
};

/* What one stage saw. */
struct lat_stage_rec {
	__u64 ts_ns;   /* 0: the packet did not pass this stage */
	__u32 ifindex;
	__u32 hash;    /* skb->hash */
	__u32 len;     /* skb->len */
	__u32 qlen;    /* qdisc length at dequeue */
	__u16 cpu;
	__u16 queue;   /* skb->queue_mapping */
	__u32 pad;
};

/* Per-packet state, first stage to last. */
struct lat_state {
	__u64 first_ns;
	__u64 last_ns;
	__u32 netns;
	__u32 pid;
	__u8 path;
	__u8 last_pos;
	__u8 tcp_flags;
	__u8 icmp_type;
	__u32 pad;
	char comm[16];
	struct lat_stage_rec st[LAT_STAGE_SLOTS];
};

/* One slow packet (details), sent at its last stage. */
struct lat_event {
	struct lat_key key;
	struct lat_state s;
	__u64 total_ns;
};

struct lat_hist {
	__u64 slots[LAT_SLOTS];
	__u64 sum_ns;
	__u64 max_ns;
};

struct lat_flow_key {
	struct np_flow flow; /* ICMP: echo id in sport */
	__u32 path;
};

struct lat_flow_value {
	__u64 count;
	__u64 sum_ns;
	__u64 min_ns;
	__u64 max_ns;
	__u64 slots[LAT_FLOW_SLOTS];
};

/*
 * The flow this CPU closed packets of last, counted here until another flow comes (then added
 * to `flows`). One per interval generation: user space reads the old one after the flip.
 */
struct lat_flow_acc {
	struct lat_flow_key key;
	__u32 valid;
	struct lat_flow_value v;
};

/* The packet a net_dev_xmit will see, by its skb (when start_xmit is not attached). */
struct lat_xmit_id {
	struct lat_key key;
	__u32 role;
	__u32 pad;
};

/* The oldest packet a thread read from a tap that no VM interrupt has followed yet. */
struct lat_unsignalled {
	__u64 read_ns;
	__u32 path;
	__u32 pos;
};

/* Transmits in progress on one CPU (nested: a bridge's transmit holds its port's). */
#define LAT_SYNC_SLOTS 4

/*
 * A packet between net_dev_queue / start_xmit and net_dev_xmit on this CPU: its state (a
 * packet on a device without a qdisc), or only its identity, for net_dev_xmit, whose skb may
 * already be gone (its state is then in the shared map).
 */
struct lat_sync_slot {
	__u64 skb;    /* 0: free */
	__u64 dev;
	struct lat_key key;
	__u32 role;
	__u8 in_map;  /* the state is in `packets` */
	__u8 pad[3];
	struct lat_state state;
};

struct lat_sync {
	__u32 next;
	__u32 pad;
	struct lat_sync_slot slot[LAT_SYNC_SLOTS];
};

/* Packet counters of the engine, per CPU. */
struct lat_counters {
	__u64 started;   /* first stage opened a packet */
	__u64 completed; /* last stage closed one */
	__u64 dropped;   /* closed by net_dev_xmit with an error */
	__u64 stale_hint; /* a transmit slot reused before its net_dev_xmit came on its CPU */
};
