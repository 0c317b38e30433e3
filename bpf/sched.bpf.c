// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * sched probe set: where the time of followed threads goes — on CPU, waiting on a run queue
 * (from wakeup or preemption to switch-in), sleeping (S), blocked (D) — and the hard and soft
 * IRQ time that ran on their CPU while they were current, like OVS's kernel_delay script.
 * Cumulative per thread; user space reports the differences. Threads are followed by thread
 * group (`targets`, filled from process names or pids) or all of them.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "np_common.h"
#include "np_task.h"
#include "sched.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile struct sched_config sched_cfg = {};

NP_EXPORT_ENUM(sched_sizes);
NP_EXPORT_ENUM(sched_where);

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} targets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct sched_thread);
} threads SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct sched_delay);
} delays SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sched_irq);
} irq_now SEC(".maps");

static __always_inline int sched_wanted(__u32 tgid, __u32 tid)
{
	if (!tid)
		return 0;
	return sched_cfg.all || bpf_map_lookup_elem(&targets, &tgid);
}

/* A new thread's counters start from this (too big for the BPF stack). */
const volatile struct sched_delay sched_zero = {};

static __always_inline struct sched_delay *sched_delay_of(__u32 tid, __u32 tgid)
{
	struct sched_delay *d = bpf_map_lookup_elem(&delays, &tid);

	if (d)
		return d;
	if (bpf_map_update_elem(&delays, &tid, (void *)&sched_zero, BPF_NOEXIST) &&
	    !bpf_map_lookup_elem(&delays, &tid)) {
		np_map_full(np_stats());
		return 0;
	}
	d = bpf_map_lookup_elem(&delays, &tid);
	if (d)
		d->tgid = tgid;
	return d;
}

/* Adds the time since `t` got where it is to that place, and moves it to `where`. */
static __always_inline void sched_move(__u32 tid, __u32 tgid, __u8 where, __u64 now,
				       const char *comm, int wakeup)
{
	struct sched_thread *t = bpf_map_lookup_elem(&threads, &tid);
	struct sched_thread fresh = { .since_ns = now, .where = where };
	struct sched_delay *d;
	__u64 spent;

	if (!t) {
		/* First sight: where it is from now on; its counters exist from here, so time
		 * spent there shows in user space's reads before it moves again. */
		if (bpf_map_update_elem(&threads, &tid, &fresh, BPF_ANY))
			np_map_full(np_stats());
		d = sched_delay_of(tid, tgid);
		if (d && comm)
			bpf_probe_read_kernel_str(d->comm, sizeof(d->comm), comm);
		return;
	}
	/* A wakeup of a thread already runnable (or running) changes nothing; a preemption
	 * (on CPU → run queue) comes from the switch, never from here. */
	if (wakeup && (t->where == SCHED_RUNQ || t->where == SCHED_ON_CPU))
		return;
	d = sched_delay_of(tid, tgid);
	spent = now - t->since_ns;
	if (d) {
		switch (t->where) {
		case SCHED_ON_CPU:
			d->on_cpu_ns += spent;
			break;
		case SCHED_RUNQ:
			if (where == SCHED_ON_CPU) {
				d->runq_ns += spent;
				d->runq_waits++;
				if (spent > d->runq_max_ns)
					d->runq_max_ns = spent;
				d->runq_slots[np_log2_slot(spent) & (SCHED_SLOTS - 1)]++;
			}
			break;
		case SCHED_SLEEP:
			d->sleep_ns += spent;
			break;
		case SCHED_BLOCKED:
			d->blocked_ns += spent;
			break;
		}
		if (comm)
			bpf_probe_read_kernel_str(d->comm, sizeof(d->comm), comm);
	}
	t->since_ns = now;
	t->where = where;
}

static __always_inline void sched_wakeup(struct task_struct *p)
{
	__u32 tgid = BPF_CORE_READ(p, tgid), tid = BPF_CORE_READ(p, pid);

	if (sched_wanted(tgid, tid))
		sched_move(tid, tgid, SCHED_RUNQ, bpf_ktime_get_ns(), 0, 1);
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(sched_wakeup_btf, struct task_struct *p)
{
	sched_wakeup(p);
	return 0;
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(sched_wakeup_new_btf, struct task_struct *p)
{
	sched_wakeup(p);
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(sched_switch_btf, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	__u32 ptgid = BPF_CORE_READ(prev, tgid), ptid = BPF_CORE_READ(prev, pid);
	__u32 ntgid = BPF_CORE_READ(next, tgid), ntid = BPF_CORE_READ(next, pid);
	__u64 now = bpf_ktime_get_ns();

	if (sched_wanted(ptgid, ptid)) {
		__u32 state = preempt ? 0 : np_task_state(prev);
		__u8 where = !state ? SCHED_RUNQ : (state & 1) ? SCHED_SLEEP : SCHED_BLOCKED;

		sched_move(ptid, ptgid, where, now, prev->comm, 0);
		/* Its last switch (TASK_DEAD): the thread is gone, nothing more to count. */
		if (state & NP_TASK_DEAD)
			bpf_map_delete_elem(&threads, &ptid);
	}
	if (sched_wanted(ntgid, ntid))
		sched_move(ntid, ntgid, SCHED_ON_CPU, now, next->comm, 0);
	return 0;
}

/* The IRQ time of the thread that is current (on this CPU) while a handler runs. */
static __always_inline void sched_irq(int soft, int entry)
{
	__u64 id = bpf_get_current_pid_tgid(), now = bpf_ktime_get_ns(), *start;
	__u32 zero = 0, tid = (__u32)id, tgid = id >> 32;
	struct sched_irq *irq;
	struct sched_delay *d;

	if (!sched_wanted(tgid, tid))
		return;
	irq = bpf_map_lookup_elem(&irq_now, &zero);
	if (!irq)
		return;
	start = soft ? &irq->softirq_start : &irq->hardirq_start;
	if (entry) {
		*start = now;
		return;
	}
	if (!*start)
		return;
	d = sched_delay_of(tid, tgid);
	if (d) {
		if (soft)
			d->softirq_ns += now - *start;
		else
			d->hardirq_ns += now - *start;
	}
	*start = 0;
}

SEC("tp_btf/irq_handler_entry")
int BPF_PROG(sched_hardirq_entry_btf)
{
	sched_irq(0, 1);
	return 0;
}

SEC("tp_btf/irq_handler_exit")
int BPF_PROG(sched_hardirq_exit_btf)
{
	sched_irq(0, 0);
	return 0;
}

SEC("tp_btf/softirq_entry")
int BPF_PROG(sched_softirq_entry_btf)
{
	sched_irq(1, 1);
	return 0;
}

SEC("tp_btf/softirq_exit")
int BPF_PROG(sched_softirq_exit_btf)
{
	sched_irq(1, 0);
	return 0;
}
