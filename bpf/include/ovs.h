/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* ovs probe set: structs and enums that cross the BPF/Rust boundary. */
#pragma once

#include "np_types.h"

enum ovs_event_kind {
	OVS_EV_UPCALL = 1,  /* ovs_dp_upcall: a packet sent to user space (a miss, an action) */
	OVS_EV_INSTALL = 2, /* ovs_flow_cmd_new: user space installing a megaflow */
};

enum ovs_sizes {
	OVS_ERRNOS = 16,       /* distinct upcall errors counted */
	OVS_KEY_BYTES = 512,   /* of a new flow's OVS_FLOW_ATTR_KEY / _MASK payload, copied */
	OVS_ACT_BYTES = 256,   /* of its OVS_FLOW_ATTR_ACTIONS payload */
	OVS_UFID_BYTES = 16,   /* OVS_FLOW_ATTR_UFID */
};

/* Which parts of the set run (.rodata). */
struct ovs_config {
	__u8 flow_msgs; /* copy each new flow's key, mask and actions (ovs_userspace_megaflow) */
};

/* An upcall's packet as the datapath keyed it (sw_flow_key), or a flow install. */
struct ovs_event {
	__u64 ts_ns;
	__u32 kind;      /* enum ovs_event_kind */
	__u32 cpu;
	__u32 tid;
	__u32 portid;    /* the upcall's netlink port (a handler's socket) */
	__u32 in_port;   /* datapath port the packet came in on */
	__u32 src;       /* IPv4 source (network order), 0 for others */
	__u32 dst;
	__u16 eth_type;  /* host order */
	__u16 sport;     /* host order */
	__u16 dport;
	__u8 cmd;        /* OVS_PACKET_CMD_MISS = 1, _ACTION = 2 */
	__u8 ip_proto;
	__u8 eth_src[6];
	__u8 eth_dst[6];
};

/*
 * An OVS_FLOW_CMD_NEW request as ovs_flow_cmd_new got it: the netlink attributes' payloads
 * (nested OVS_KEY_ATTR_* for key and mask, OVS_ACTION_ATTR_* for actions), each cut at its
 * buffer; a *_len larger than the buffer says the copy is truncated, 0 that it is absent.
 */
struct ovs_flow_msg {
	__u64 ts_ns;
	__u32 cpu;
	__u32 tid;
	__u32 pid;
	__u32 key_len;
	__u32 mask_len;
	__u32 actions_len;
	__u32 ufid_len;
	__u8 comm[16];
	__u8 key[OVS_KEY_BYTES];
	__u8 mask[OVS_KEY_BYTES];
	__u8 actions[OVS_ACT_BYTES];
	__u8 ufid[OVS_UFID_BYTES];
};

/* Upcall return codes: errno (positive) and how often. */
struct ovs_errno_count {
	__s32 err;
	__u32 pad;
	__u64 count;
};
