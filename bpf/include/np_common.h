/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The probe-set kit, BPF side: the stats map every set reports through, the stack map and its
 * walk, ring-buffer reserve-and-count, the per-CPU event rate limit and batched wakeups.
 * User space (libnetprobe::kit) reads `stats`, sizes `stack_traces` and writes `np_kit`.
 */
#pragma once

#include "np_types.h"

/* Written by the kit before load (kit::KitConfig). */
const volatile struct np_kit_config np_kit = {};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct np_stats);
} stats SEC(".maps");

/* Sized by the kit from the set's stack policy (1 entry when stacks are off). */
struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, NP_MAX_STACK_DEPTH * sizeof(__u64));
} stack_traces SEC(".maps");

/* This CPU's counters; NULL only if the map lookup fails, which it cannot for index 0. */
static __always_inline struct np_stats *np_stats(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&stats, &zero);
}

/* Walks the kernel stack into stack_traces; a failed walk is counted and returns < 0. */
static __always_inline __s32 np_walk_stack(void *ctx, struct np_stats *st)
{
	long id = bpf_get_stackid(ctx, &stack_traces, 0);

	if (id < 0 && st)
		st->stack_errors++;
	return id;
}

/* Walks the kernel stack into an event; a failed walk is counted and leaves depth 0. */
static __always_inline void np_stack_into(void *ctx, struct np_stack *s, struct np_stats *st)
{
	long n = bpf_get_stack(ctx, s->ips, sizeof(s->ips), 0);

	if (n < 0) {
		s->depth = 0;
		if (st)
			st->stack_errors++;
		return;
	}
	s->depth = n / sizeof(__u64);
}

/*
 * May this CPU submit one more event? Above np_kit.events_per_cpu_sec events in the current
 * second the event is counted as rate-limited instead (0 = no limit).
 */
static __always_inline int np_rate_ok(struct np_stats *st)
{
	__u64 now;

	if (!np_kit.events_per_cpu_sec || !st)
		return 1;
	now = bpf_ktime_get_ns();
	if (now - st->window_start_ns >= 1000000000ULL) {
		st->window_start_ns = now;
		st->window_events = 0;
	}
	if (st->window_events >= np_kit.events_per_cpu_sec) {
		st->rate_limited++;
		return 0;
	}
	st->window_events++;
	return 1;
}

/*
 * A ring-buffer reserve failed (the ring is full): count it as a lost event. Use it as
 *	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
 *	if (!e) { np_lost_event(st); return; }
 * with the one NULL check: verifiers before 6.x do not know that a reservation already
 * checked is not NULL, and a second check looks to them like a path that leaks it.
 */
static __always_inline void np_lost_event(struct np_stats *st)
{
	if (st)
		st->lost_events++;
}

/*
 * Submits without waking the reader until np_kit.wakeup_bytes are waiting; the reader also
 * polls on a timeout, so nothing stays in the ring longer than that.
 */
#define np_submit(ring, e)                                                                 \
	bpf_ringbuf_submit(e, bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA) >= np_kit.wakeup_bytes \
				      ? BPF_RB_FORCE_WAKEUP                                \
				      : BPF_RB_NO_WAKEUP)

/* A map update that could not insert: counted as map-full. */
static __always_inline void np_map_full(struct np_stats *st)
{
	if (st)
		st->map_full++;
}

/* floor(log2 v) + 1, 0 for 0: the slot of a log2 histogram, the same function as Rust's
 * hist::slot_of. */
static __always_inline __u32 np_log2_slot(__u64 v)
{
	__u32 r = 0;

	if (v >> 32) { v >>= 32; r += 32; }
	if (v >> 16) { v >>= 16; r += 16; }
	if (v >> 8) { v >>= 8; r += 8; }
	if (v >> 4) { v >>= 4; r += 4; }
	if (v >> 2) { v >>= 2; r += 2; }
	if (v >> 1) { v >>= 1; r += 1; }
	return v ? r + 1 : 0;
}
