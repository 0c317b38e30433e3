/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* sched probe set: structs that cross the BPF/Rust boundary. */
#pragma once

#include "np_types.h"

enum sched_sizes {
	SCHED_SLOTS = 64, /* log2 slots of a run-queue latency histogram, ns */
	SCHED_COMM_LEN = 16,
};

/* Where a followed thread is now. */
enum sched_where {
	SCHED_UNKNOWN = 0,
	SCHED_ON_CPU = 1,
	SCHED_RUNQ = 2,     /* runnable, waiting for a CPU (woken, or preempted) */
	SCHED_SLEEP = 3,    /* blocked interruptibly (S) */
	SCHED_BLOCKED = 4,  /* blocked uninterruptibly (D), or any other state */
};

struct sched_config {
	__u8 all;     /* every task; else those whose tgid is in `targets` */
	__u8 pad[7];
};

struct sched_thread {
	__u64 since_ns; /* when it got where it is */
	__u8 where;     /* enum sched_where */
	__u8 pad[7];
};

/* Per thread, cumulative: where its time went. */
struct sched_delay {
	__u64 on_cpu_ns;
	__u64 runq_ns;
	__u64 sleep_ns;
	__u64 blocked_ns;
	__u64 hardirq_ns;  /* IRQ handlers that ran while it was on CPU (part of on_cpu_ns) */
	__u64 softirq_ns;  /* softirqs that ran while it was on CPU (part of on_cpu_ns) */
	__u64 runq_waits;  /* times it waited for a CPU */
	__u64 runq_max_ns;
	__u64 runq_slots[SCHED_SLOTS];
	__u32 tgid;
	__u32 pad;
	char comm[SCHED_COMM_LEN];
};

/* Per CPU: when the IRQ handler / softirq now running began (0: none). */
struct sched_irq {
	__u64 hardirq_start;
	__u64 softirq_start;
};
