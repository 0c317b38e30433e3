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
