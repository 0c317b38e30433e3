// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Test support: conditions that this kernel cannot make otherwise (no 8021q, no act_vlan). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile __u16 vlan_id = 100;

/* Egress: put an offloaded (skb->vlan_*) 802.1Q tag on every packet. */
SEC("tc")
int push_vlan(struct __sk_buff *skb)
{
	bpf_skb_vlan_push(skb, bpf_htons(0x8100), vlan_id);
	return 0; /* TC_ACT_OK */
}

/* The benchmarks' floor: a bare counter on the drop hook (kfree_skb), nothing else. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} drop_count SEC(".maps");

SEC("tp_btf/kfree_skb")
int count_drop(void *ctx)
{
	__u32 key = 0;
	__u64 *n = bpf_map_lookup_elem(&drop_count, &key);

	if (n)
		(*n)++;
	return 0;
}

/* The tun benchmark's floor: the same bare counter on the xmit hook (net_dev_start_xmit). */
SEC("tp_btf/net_dev_start_xmit")
int count_xmit(void *ctx)
{
	__u32 key = 0;
	__u64 *n = bpf_map_lookup_elem(&drop_count, &key);

	if (n)
		(*n)++;
	return 0;
}

/*
 * The latency benchmark's floor: bpftrace's two-stage measurement (a timestamp at
 * net_dev_queue, a log2 histogram of the time to net_dev_xmit) with nothing else — no device,
 * flow or namespace match, no packet identity beyond the skb. A device without a qdisc
 * transmits synchronously, so one slot per CPU holds the packet in flight.
 */
struct floor_slot {
	__u64 skb;
	__u64 ts;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct floor_slot);
} floor_slot SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} floor_hist SEC(".maps");

SEC("tp_btf/net_dev_queue")
int floor_queue(__u64 *ctx)
{
	__u32 key = 0;
	struct floor_slot *s = bpf_map_lookup_elem(&floor_slot, &key);

	if (s) {
		s->skb = ctx[0];
		s->ts = bpf_ktime_get_ns();
	}
	return 0;
}

SEC("tp_btf/net_dev_xmit")
int floor_xmit(__u64 *ctx)
{
	__u32 key = 0, slot = 0;
	struct floor_slot *s = bpf_map_lookup_elem(&floor_slot, &key);
	__u64 *n, v;

	if (!s || s->skb != ctx[0])
		return 0;
	s->skb = 0;
	v = bpf_ktime_get_ns() - s->ts;
	if (v >> 32) { v >>= 32; slot += 32; }
	if (v >> 16) { v >>= 16; slot += 16; }
	if (v >> 8) { v >>= 8; slot += 8; }
	if (v >> 4) { v >>= 4; slot += 4; }
	if (v >> 2) { v >>= 2; slot += 2; }
	if (v >> 1) slot += 1;
	n = bpf_map_lookup_elem(&floor_hist, &slot);
	if (n)
		(*n)++;
	return 0;
}

/*
 * A tun steering program (TUNSETSTEERINGEBPF): the queue of an IPv4 UDP packet is its
 * destination port (tun takes it modulo the queue count); anything else goes to queue 0.
 * It runs at the device's queue selection, where skb->data is the Ethernet header.
 */
SEC("socket")
int steer_by_dport(struct __sk_buff *skb)
{
	__u16 eth_proto = 0, port = 0;
	__u8 vihl = 0, proto = 0;

	if (bpf_skb_load_bytes(skb, 12, &eth_proto, 2) || eth_proto != bpf_htons(0x0800))
		return 0;
	if (bpf_skb_load_bytes(skb, 14, &vihl, 1) || bpf_skb_load_bytes(skb, 23, &proto, 1) ||
	    proto != 17)
		return 0;
	if (bpf_skb_load_bytes(skb, 14 + (vihl & 0x0f) * 4 + 2, &port, 2))
		return 0;
	return bpf_ntohs(port);
}
