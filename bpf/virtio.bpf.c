// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * virtio probe set: a virtio-net device's NAPI polls and its virtqueue interrupts, without
 * kprobes.
 *
 * napi_poll: the device is napi->dev (np_filter: namespace and ifindex); napi->poll tells rx
 * (virtnet_poll) from tx (virtnet_poll_tx); the queue is the virtqueue's index / 2, reached with
 * container_of on the napi in struct receive_queue / send_queue (CO-RE, where virtio_net has
 * BTF). Who polled comes from a short stack against kallsyms ranges (softirq on IRQ exit,
 * ksoftirqd, local_bh_enable, busy poll, threaded NAPI). Counts are per CPU in two interval
 * generations (virtio_gen), the kit's take_percpu reads the old one.
 *
 * irq_handler_entry/exit: only the IRQs user space put in irq_info (the device's vectors);
 * handler time from a per-CPU entry slot, inter-arrival from the IRQ's previous entry (the
 * IRQ core never runs one IRQ's handler on two CPUs at once), IRQ_NONE vs IRQ_HANDLED. With
 * tp_btf the action also gives the handler (vring_interrupt) and its virtqueue (dev_id).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "np_common.h"
#include "np_packet.h"
#include "virtio.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile struct virtio_config virtio_cfg = {};

NP_EXPORT_ENUM(virtio_sizes);
NP_EXPORT_ENUM(virtio_kind);
NP_EXPORT_ENUM(virtio_caller);

__u64 virtio_gen = 0;

/* Two generations of VIRTIO_MAX_QUEUES + 1 queues (the last: unknown) of VIRTIO_KINDS kinds. */
#define VIRTIO_POLL_SLOTS ((VIRTIO_MAX_QUEUES + 1) * VIRTIO_KINDS)
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2 * VIRTIO_POLL_SLOTS);
	__type(key, __u32);
	__type(value, struct virtio_poll_stats);
} polls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VIRTIO_MAX_QUEUES);
	__type(key, __u32);
	__type(value, struct virtio_rq_state);
} rq_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct virtio_stack_key);
	__type(value, __u64);
} poll_stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VIRTIO_MAX_IRQS);
	__type(key, __u32);
	__type(value, struct virtio_irq_info);
} irq_info SEC(".maps");

/* Two generations of VIRTIO_MAX_IRQS slots. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2 * VIRTIO_MAX_IRQS);
	__type(key, __u32);
	__type(value, struct virtio_irq_stats);
} irq_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VIRTIO_MAX_IRQS);
	__type(key, __u32);
	__type(value, __u64);
} irq_last SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct virtio_irq_entry);
} irq_entry SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64[VIRTIO_STACK_DEPTH]);
} stack_buf SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct virtio_softirq);
} softirq SEC(".maps");

/* Is the current task a kernel thread whose name starts with @prefix (@len bytes)? */
static __always_inline int virtio_kthread_named(const char *prefix, int len)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	char comm[16];

	if (!(BPF_CORE_READ(t, flags) & 0x00200000 /* PF_KTHREAD */))
		return 0;
	bpf_get_current_comm(comm, sizeof(comm));
#pragma unroll
	for (int i = 0; i < 16; i++) {
		if (i >= len)
			break;
		if (comm[i] != prefix[i])
			return 0;
	}
	return 1;
}

/* NET_RX_SOFTIRQ: the kernel's softirq vectors are an anonymous enum, fixed since 2.6. */
#define VIRTIO_NET_RX_SOFTIRQ 3

/* A NET_RX softirq begins on this CPU (softirqs do not nest): who runs it, where the context
 * says so for certain (ksoftirqd; an IRQ's exit when it interrupted the idle task). */
static __always_inline void virtio_softirq_entry(unsigned int vec)
{
	__u32 zero = 0;
	struct virtio_softirq *s;

	if (vec != VIRTIO_NET_RX_SOFTIRQ || !(s = bpf_map_lookup_elem(&softirq, &zero)))
		return;
	s->active = 1;
	if (virtio_kthread_named("ksoftirqd/", 10))
		s->by = VIRTIO_BY_KSOFTIRQD;
	else if ((__u32)bpf_get_current_pid_tgid() == 0)
		s->by = VIRTIO_BY_IRQ;
	else
		s->by = VIRTIO_CALLERS;
}

static __always_inline void virtio_softirq_exit(unsigned int vec)
{
	__u32 zero = 0;
	struct virtio_softirq *s;

	if (vec == VIRTIO_NET_RX_SOFTIRQ && (s = bpf_map_lookup_elem(&softirq, &zero)))
		s->active = 0;
}

/*
 * Who runs this poll, from the CPU's context where that is certain (a stack walk costs
 * microseconds): outside the NET_RX softirq, a threaded-NAPI kthread or else a busy poll;
 * inside it, what its entry found. VIRTIO_CALLERS: the stack must tell (a softirq in a task:
 * an IRQ's exit or local_bh_enable).
 */
static __always_inline __u32 virtio_caller_by_context(void)
{
	__u32 zero = 0;
	struct virtio_softirq *s;

	if (!virtio_cfg.softirq_seen || !(s = bpf_map_lookup_elem(&softirq, &zero)))
		return VIRTIO_CALLERS;
	if (s->active)
		return s->by;
	return virtio_kthread_named("napi/", 5) ? VIRTIO_BY_THREADED : VIRTIO_BY_BUSY_POLL;
}

/* Who runs this poll: its context, else the first frame of the stack inside a caller range. */
static __always_inline __u32 virtio_caller_of(void *ctx, struct np_stats *st)
{
	__u32 zero = 0, by = virtio_caller_by_context();
	__u64 *ips;
	long n;

	if (by != VIRTIO_CALLERS)
		return by;
	by = VIRTIO_BY_OTHER;
	ips = bpf_map_lookup_elem(&stack_buf, &zero);

	if (!ips)
		return by;
	n = bpf_get_stack(ctx, ips, VIRTIO_STACK_DEPTH * sizeof(__u64), 0);
	if (n <= 0) {
		if (st)
			st->stack_errors++;
		return by;
	}
#pragma unroll
	for (int i = 0; i < VIRTIO_STACK_DEPTH; i++) {
		__u64 ip = ips[i];

		if (i * (int)sizeof(__u64) >= n)
			break;
#pragma unroll
		for (int r = 0; r < VIRTIO_CALLER_RANGES; r++) {
			const volatile struct virtio_range *c = &virtio_cfg.callers[r];

			if (!c->end)
				break;
			if (ip < c->start || ip >= c->end)
				continue;
			if (c->caller != VIRTIO_BY_SOFTIRQ)
				return c->caller;
			/* net_rx_action: its own caller, deeper down, says what ran the softirq. */
			by = VIRTIO_BY_SOFTIRQ;
		}
	}
	return by;
}

/* virtio_net's rq stats before u64_stats_t (6.1 and older): plain u64 counters. CO-RE matches a
 * field only with a compatible type, so each layout needs its own flavor. */
struct virtnet_rq_stats___u64 {
	u64 packets;
	u64 bytes;
	u64 drops;
	u64 kicks;
} __attribute__((preserve_access_index));

struct receive_queue___u64 {
	struct virtnet_rq_stats___u64 stats;
} __attribute__((preserve_access_index));

/* A receive queue's counters, from the napi inside it. */
static __always_inline void virtio_rq_snapshot(struct receive_queue *rq, __u32 queue)
{
	struct virtio_rq_state s = { .valid = 1 };
	struct virtqueue *vq = BPF_CORE_READ(rq, vq);

	s.vq_index = BPF_CORE_READ(vq, index);
	if (bpf_core_field_exists(rq->stats.kicks)) {
		/* u64_stats_t: one 64-bit word on 64-bit kernels. */
		s.has_stats = 1;
		bpf_core_read(&s.packets, sizeof(s.packets), &rq->stats.packets);
		bpf_core_read(&s.bytes, sizeof(s.bytes), &rq->stats.bytes);
		bpf_core_read(&s.drops, sizeof(s.drops), &rq->stats.drops);
		bpf_core_read(&s.kicks, sizeof(s.kicks), &rq->stats.kicks);
	} else {
		struct receive_queue___u64 *old = (void *)rq;

		if (bpf_core_field_exists(old->stats.kicks)) {
			s.has_stats = 1;
			s.packets = BPF_CORE_READ(old, stats.packets);
			s.bytes = BPF_CORE_READ(old, stats.bytes);
			s.drops = BPF_CORE_READ(old, stats.drops);
			s.kicks = BPF_CORE_READ(old, stats.kicks);
		}
	}
	if (bpf_core_field_exists(rq->calls) && bpf_core_field_exists(rq->packets_in_napi)) {
		s.has_calls = 1;
		s.calls = BPF_CORE_READ(rq, calls);
		s.packets_in_napi = BPF_CORE_READ(rq, packets_in_napi);
		if (bpf_core_field_exists(rq->dim_enabled))
			s.dim_enabled = BPF_CORE_READ(rq, dim_enabled);
	}
	bpf_map_update_elem(&rq_state, &queue, &s, BPF_ANY);
}

/* The queue pair a virtio-net napi belongs to (VIRTIO_NO_QUEUE without the module's BTF). */
static __always_inline __u32 virtio_queue_of(struct napi_struct *napi, __u32 kind)
{
	struct virtqueue *vq;

	if (kind == VIRTIO_RX) {
		if (!bpf_core_type_exists(struct receive_queue))
			return VIRTIO_NO_QUEUE;
		vq = BPF_CORE_READ((struct receive_queue *)((void *)napi -
				   bpf_core_field_offset(struct receive_queue, napi)), vq);
	} else {
		if (!bpf_core_type_exists(struct send_queue))
			return VIRTIO_NO_QUEUE;
		vq = BPF_CORE_READ((struct send_queue *)((void *)napi -
				   bpf_core_field_offset(struct send_queue, napi)), vq);
	}
	if (!vq || !bpf_core_type_exists(struct virtqueue))
		return VIRTIO_NO_QUEUE;
	return BPF_CORE_READ(vq, index) / 2;
}

static __always_inline void virtio_napi_poll(void *ctx, struct napi_struct *napi, int work,
					     int budget)
{
	struct np_stats *st = np_stats();
	struct net_device *dev = BPF_CORE_READ(napi, dev);
	__u64 poll = (__u64)BPF_CORE_READ(napi, poll);
	struct virtio_stack_key sk = {};
	struct virtio_poll_stats *ps;
	__u32 kind, queue, idx, by;
	struct net *net;

	if (poll == virtio_cfg.poll_rx && poll)
		kind = VIRTIO_RX;
	else if (poll == virtio_cfg.poll_tx && poll)
		kind = VIRTIO_TX;
	else
		return;
	if (!dev)
		return;
	net = BPF_CORE_READ(dev, nd_net.net);
	if (!np_match_place(net, np_net_inum(net, 0), BPF_CORE_READ(dev, ifindex), st))
		return;
	queue = virtio_queue_of(napi, kind);
	if (virtio_cfg.has_queue && queue != virtio_cfg.queue)
		return;
	by = virtio_caller_of(ctx, st);
	if (virtio_cfg.polls) {
		idx = (__u32)(virtio_gen & 1) * VIRTIO_POLL_SLOTS +
		      (queue < VIRTIO_MAX_QUEUES ? queue : VIRTIO_MAX_QUEUES) * VIRTIO_KINDS + kind;
		ps = bpf_map_lookup_elem(&polls, &idx);
		if (ps) {
			ps->by[by & (VIRTIO_CALLERS - 1)]++;
			ps->work += work > 0 ? work : 0;
			ps->budget += budget > 0 ? budget : 0;
			if (work <= 0)
				ps->zero_work++;
			else if (work >= budget)
				ps->full_budget++;
		}
		if (kind == VIRTIO_RX && queue < VIRTIO_MAX_QUEUES)
			virtio_rq_snapshot((struct receive_queue *)((void *)napi -
					   bpf_core_field_offset(struct receive_queue, napi)),
					   queue);
	}
	if (virtio_cfg.stacks) {
		__u64 one = 1, *n;

		sk.stack_id = np_walk_stack(ctx, st);
		sk.queue = queue;
		sk.kind = kind;
		sk.caller = by;
		n = bpf_map_lookup_elem(&poll_stacks, &sk);
		if (n)
			__sync_fetch_and_add(n, 1);
		else if (bpf_map_update_elem(&poll_stacks, &sk, &one, BPF_NOEXIST)) {
			n = bpf_map_lookup_elem(&poll_stacks, &sk);
			if (n)
				__sync_fetch_and_add(n, 1);
			else
				np_map_full(st);
		}
	}
}

static __always_inline struct virtio_irq_stats *virtio_irq_slot(__u32 slot)
{
	__u32 idx = (__u32)(virtio_gen & 1) * VIRTIO_MAX_IRQS + (slot & (VIRTIO_MAX_IRQS - 1));

	return bpf_map_lookup_elem(&irq_stats, &idx);
}

static __always_inline void virtio_hist_add(__u64 *hist, __u64 ns)
{
	__u32 s = np_log2_slot(ns);

	if (s >= VIRTIO_HIST_SLOTS)
		s = VIRTIO_HIST_SLOTS - 1;
	barrier_var(s);
	hist[s & (VIRTIO_HIST_SLOTS - 1)]++;
}

/* A handler of one of the device's IRQs starts; action is NULL for the classic tracepoint. */
static __always_inline void virtio_irq_entry(__u32 irq, struct irqaction *action)
{
	struct virtio_irq_info *info = bpf_map_lookup_elem(&irq_info, &irq);
	struct virtio_irq_entry *e;
	struct virtio_irq_stats *s;
	__u32 zero = 0, slot;
	__u64 now, *last;

	if (!info)
		return;
	slot = info->slot & (VIRTIO_MAX_IRQS - 1);
	s = virtio_irq_slot(slot);
	e = bpf_map_lookup_elem(&irq_entry, &zero);
	if (!s || !e)
		return;
	now = bpf_ktime_get_ns();
	s->count++;
	last = bpf_map_lookup_elem(&irq_last, &slot);
	if (last) {
		if (*last && now > *last) {
			s->gap_ns += now - *last;
			virtio_hist_add(s->gap_hist, now - *last);
		}
		*last = now;
	}
	if (action) {
		__u64 handler = (__u64)action->handler;

		s->is_vring = handler && handler == virtio_cfg.vring_interrupt;
		if (s->is_vring && bpf_core_type_exists(struct virtqueue)) {
			struct virtqueue *vq = action->dev_id;

			s->has_vq = 1;
			s->vq_index = BPF_CORE_READ(vq, index);
			s->rx = (__u64)BPF_CORE_READ(vq, callback) == virtio_cfg.skb_recv_done;
		}
	}
	e->irq = irq;
	e->slot = slot;
	e->ts = now;
}

static __always_inline void virtio_irq_exit(__u32 irq, int ret)
{
	struct virtio_irq_entry *e;
	struct virtio_irq_stats *s;
	__u32 zero = 0;
	__u64 now;

	e = bpf_map_lookup_elem(&irq_entry, &zero);
	if (!e || !e->ts || e->irq != irq)
		return;
	now = bpf_ktime_get_ns();
	s = virtio_irq_slot(e->slot);
	if (s) {
		if (ret == 0)
			s->none++;
		else
			s->handled++;
		if (now > e->ts) {
			s->handler_ns += now - e->ts;
			virtio_hist_add(s->handler_hist, now - e->ts);
		}
	}
	e->ts = 0;
}

/* ---- tp_btf ---- */

SEC("tp_btf/napi_poll")
int BPF_PROG(virtio_napi_btf, struct napi_struct *napi, int work, int budget)
{
	virtio_napi_poll(ctx, napi, work, budget);
	return 0;
}

SEC("tp_btf/irq_handler_entry")
int BPF_PROG(virtio_irq_entry_btf, int irq, struct irqaction *action)
{
	virtio_irq_entry(irq, action);
	return 0;
}

SEC("tp_btf/irq_handler_exit")
int BPF_PROG(virtio_irq_exit_btf, int irq, struct irqaction *action, int ret)
{
	virtio_irq_exit(irq, ret);
	return 0;
}

SEC("tp_btf/softirq_entry")
int BPF_PROG(virtio_si_entry_btf, unsigned int vec)
{
	virtio_softirq_entry(vec);
	return 0;
}

SEC("tp_btf/softirq_exit")
int BPF_PROG(virtio_si_exit_btf, unsigned int vec)
{
	virtio_softirq_exit(vec);
	return 0;
}

/* ---- classic tracepoints ---- */

SEC("tracepoint/napi/napi_poll")
int virtio_napi_tp(struct trace_event_raw_napi_poll *args)
{
	virtio_napi_poll(args, args->napi, args->work, args->budget);
	return 0;
}

SEC("tracepoint/irq/irq_handler_entry")
int virtio_irq_entry_tp(struct trace_event_raw_irq_handler_entry *args)
{
	virtio_irq_entry(args->irq, NULL);
	return 0;
}

SEC("tracepoint/irq/irq_handler_exit")
int virtio_irq_exit_tp(struct trace_event_raw_irq_handler_exit *args)
{
	virtio_irq_exit(args->irq, args->ret);
	return 0;
}

SEC("tracepoint/irq/softirq_entry")
int virtio_si_entry_tp(struct trace_event_raw_softirq *args)
{
	virtio_softirq_entry(args->vec);
	return 0;
}

SEC("tracepoint/irq/softirq_exit")
int virtio_si_exit_tp(struct trace_event_raw_softirq *args)
{
	virtio_softirq_exit(args->vec);
	return 0;
}

struct virtio_stack_key virtio_stack_key_type = {};
struct virtio_irq_info virtio_irq_info_type = {};
struct virtio_rq_state virtio_rq_state_type = {};
