/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Processes announced to user space the first time a set counts them (their tgid, a __u32,
 * through `new_processes`), so user space records their mappings while they live and names
 * their user stacks after they exit (libnetprobe::kit::Announcements). Include after
 * np_common.h.
 */
#pragma once

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, __u8);
} known SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} new_processes SEC(".maps");

static __always_inline void np_announce(__u32 tgid, struct np_stats *st)
{
	__u32 *e;
	__u8 one = 1;

	if (!tgid || bpf_map_lookup_elem(&known, &tgid))
		return;
	if (bpf_map_update_elem(&known, &tgid, &one, BPF_NOEXIST))
		return;
	e = bpf_ringbuf_reserve(&new_processes, sizeof(*e), 0);
	if (!e) {
		np_lost_event(st);
		return;
	}
	*e = tgid;
	bpf_ringbuf_submit(e, 0);
}
