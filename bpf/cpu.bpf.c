// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * cpu probe set: on-CPU samples (perf_event cpu-clock, every CPU) and off-CPU time
 * (sched_switch: a thread's block starts when it is switched out and ends when it is switched
 * back in), both counted per (process, thread, user stack, kernel stack) in the kernel. The
 * task filter runs before any stack is walked: a stack walk costs ~1 µs, a filtered-out switch
 * ~130 ns. The first time a process is counted its tgid goes to user space, which records the
 * process's mappings so that its stacks are named even after it exits.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "np_common.h"
#include "np_announce.h"
#include "np_task.h"
#include "cpu.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile struct cpu_config cpu_cfg = {};

NP_EXPORT_ENUM(cpu_sizes);
NP_EXPORT_ENUM(cpu_threads);

/* A classic sched_switch record says "preempted" with this bit (TASK_REPORT_MAX). */
#define NP_TASK_REPORT_MAX 0x100

/* Samples (profile) or nanoseconds (off-CPU) per stack; sized by user space. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct cpu_stack_key);
	__type(value, __u64);
} counts SEC(".maps");

/* Threads off CPU right now, by tid. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct cpu_block);
} blocked SEC(".maps");

/* Is the task (`flags`, ids) one the user asked about? Cheap: no map access. */
static __always_inline int cpu_wanted(__u32 tgid, __u32 tid, __u32 flags)
{
	if (cpu_cfg.tgid && tgid != cpu_cfg.tgid)
		return 0;
	if (cpu_cfg.tid && tid != cpu_cfg.tid)
		return 0;
	if (cpu_cfg.threads == CPU_THREADS_USER && (flags & NP_PF_KTHREAD))
		return 0;
	if (cpu_cfg.threads == CPU_THREADS_KERNEL && !(flags & NP_PF_KTHREAD))
		return 0;
	if (cpu_cfg.cgroup_id && bpf_get_current_cgroup_id() != cpu_cfg.cgroup_id)
		return 0;
	return 1;
}

#define NP_EFAULT 14

/* One stack walk into stack_traces; -1 where there is no such stack (a sample taken in user
 * mode has no kernel stack: EFAULT), another negative errno when the walk failed (counted). */
static __always_inline __s32 cpu_stackid(void *ctx, __u64 flags, struct np_stats *st)
{
	long id = bpf_get_stackid(ctx, &stack_traces, flags);

	if (id == -NP_EFAULT)
		return -1;
	if (id < 0 && st)
		st->stack_errors++;
	return id;
}

/* Walks the current task's stacks (the ones the configuration asks for) into `k`. */
static __always_inline void cpu_walk(void *ctx, struct cpu_stack_key *k, __u32 flags,
				     struct np_stats *st)
{
	k->user_stack = -1;
	k->kernel_stack = -1;
	if (cpu_cfg.user_stacks && !(flags & NP_PF_KTHREAD))
		k->user_stack = cpu_stackid(ctx, BPF_F_USER_STACK, st);
	if (cpu_cfg.kernel_stacks)
		k->kernel_stack = cpu_stackid(ctx, 0, st);
}

static __always_inline void cpu_add(struct cpu_stack_key *k, __u64 v, struct np_stats *st)
{
	__u64 *c = bpf_map_lookup_elem(&counts, k);

	if (c) {
		__sync_fetch_and_add(c, v);
		return;
	}
	if (bpf_map_update_elem(&counts, k, &v, BPF_NOEXIST)) {
		c = bpf_map_lookup_elem(&counts, k);
		if (c)
			__sync_fetch_and_add(c, v);
		else
			np_map_full(st);
	}
}

/* Stacks walked per block site (off-CPU, with task storage): a thread that moves between
 * sites finds each one's stacks here; walked afresh every stack_refresh-th lookup. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct cpu_site_key);
	__type(value, struct cpu_site);
} sites SEC(".maps");

/* Per-task off-CPU state; created only where cpu_has_task_storage() (user space turns the map
 * off elsewhere, and the code that uses it is then dead). */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct cpu_task);
} tasks SEC(".maps");

/* Bumped by user space before each drain: accumulations older than it are flushed. */
__u32 cpu_drain_gen = 0;

/* bpf_task_pt_regs (5.15) implies task storage in tracing programs (5.13). */
static __always_inline int cpu_has_task_storage(void)
{
	return bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_task_pt_regs);
}

/* Where `task` (current, a user thread entering a block in `state`) blocks: its syscall, user
 * registers and the return address above its frame pointer. 0 when it has no user context
 * (a user worker such as a vhost or io_uring thread has zero user registers). */
static __always_inline int cpu_site_of(struct task_struct *task, __u32 state,
				       struct cpu_site_key *sk)
{
#if defined(__TARGET_ARCH_x86)
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);

	sk->tid = 0;
	sk->state = state;
	/* A BTF pointer (tp_btf): plain loads. */
	sk->nr = regs->orig_ax;
	sk->ip = regs->ip;
	sk->sp = regs->sp;
	sk->bp = regs->bp;
	if (!sk->ip || !sk->sp)
		return 0;
	/* Preempted outside a syscall (an interrupt in user mode; orig_ax is then negative): the
	 * user ip differs at every preemption, so there is nothing to reuse. Preempted inside a
	 * syscall (a wakeup preempting the waker) it is a site like a sleep. */
	if (!state && (__s64)sk->nr < 0)
		return 0;
	if (bpf_probe_read_user(&sk->ret, sizeof(sk->ret), (void *)(sk->bp + 8)))
		sk->ret = 0;
	return 1;
#else
	return 0;
#endif
}

/* Keys of one thread: the same stacks, state and command name. */
static __always_inline int cpu_same_key(const struct cpu_stack_key *a,
					const struct cpu_stack_key *b)
{
	/* comm is 4-byte aligned in the key */
	const __u32 *ca = (const __u32 *)a->comm, *cb = (const __u32 *)b->comm;

	return a->user_stack == b->user_stack && a->kernel_stack == b->kernel_stack &&
	       a->state == b->state && ca[0] == cb[0] && ca[1] == cb[1] && ca[2] == cb[2] &&
	       ca[3] == cb[3];
}

static __always_inline int cpu_same_site(const struct cpu_site_key *a,
					 const struct cpu_site_key *b)
{
	return a->state == b->state && a->nr == b->nr && a->ip == b->ip && a->sp == b->sp &&
	       a->bp == b->bp && a->ret == b->ret;
}

/* Adds the task's accumulated blocked time to `counts`. */
static __always_inline void cpu_flush(struct cpu_task *t)
{
	if (!t->acc_blocks)
		return;
	cpu_add(&t->key, t->acc_ns, np_stats());
	t->acc_ns = 0;
	t->acc_blocks = 0;
}

/*
 * `prev` (current) blocks in `state`, with task storage: at the site it blocked at last time
 * its key is reused as is (no map access, no stack walk); elsewhere the stacks come from the
 * site cache or a walk, and the time accumulated under the old key is counted first.
 */
static __always_inline void cpu_block_task(void *ctx, struct task_struct *prev, __u32 tgid,
					   __u32 tid, __u32 state, __u32 flags, __u64 now)
{
	struct cpu_task *t = bpf_task_storage_get(&tasks, prev, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	struct cpu_site_key sk = {};
	int cacheable = !(flags & NP_PF_KTHREAD) && cpu_cfg.stack_refresh > 1;
	struct cpu_stack_key k = {};
	struct cpu_site *site = 0;
	struct np_stats *st;

	if (!t) {
		np_map_full(np_stats());
		return;
	}
	/* Its last block never ended here: the lookup at its switch-in failed (task storage is
	 * busy on a CPU while a task's storage is being freed). That block is lost: counted. */
	if (t->start_ns)
		np_lost_event(np_stats());
	if (cacheable)
		cacheable = cpu_site_of(prev, state, &sk);
	if (cacheable) {
		int same = t->has_site && cpu_same_site(&sk, &t->site);

		if (same && t->site_uses + 1 < cpu_cfg.stack_refresh) {
			t->site_uses++;
			t->start_ns = now;
			return;
		}
		sk.tid = tid;
		/* Back at the site of its last block after stack_refresh uses: walked afresh. */
		if (!same)
			site = bpf_map_lookup_elem(&sites, &sk);
	}
	st = np_stats();
	k.tgid = tgid;
	k.tid = tid;
	k.state = state;
	bpf_get_current_comm(k.comm, sizeof(k.comm));
	if (site && ++site->uses < cpu_cfg.stack_refresh) {
		k.user_stack = site->user_stack;
		k.kernel_stack = site->kernel_stack;
	} else {
		cpu_walk(ctx, &k, flags, st);
		/* A failed walk (counted) is not reused. */
		if (k.user_stack < -1 || k.kernel_stack < -1)
			cacheable = 0;
		if (site && cacheable) {
			site->user_stack = k.user_stack;
			site->kernel_stack = k.kernel_stack;
			site->uses = 0;
		} else if (site) {
			bpf_map_delete_elem(&sites, &sk);
		} else if (cacheable) {
			struct cpu_site fresh = { .user_stack = k.user_stack,
						  .kernel_stack = k.kernel_stack };

			bpf_map_update_elem(&sites, &sk, &fresh, BPF_ANY);
		}
	}
	if (t->acc_blocks && !cpu_same_key(&k, &t->key))
		cpu_flush(t);
	t->key = k;
	t->has_site = cacheable;
	t->site = sk;
	t->site_uses = 0;
	t->start_ns = now;
	np_announce(tgid, st);
}

/* `next` runs again: its block (if one was counted) ends now. */
static __always_inline void cpu_wake_task(struct task_struct *next, __u64 now)
{
	struct cpu_task *t = bpf_task_storage_get(&tasks, next, 0, 0);
	__u64 d;

	if (!t || !t->start_ns)
		return;
	d = now - t->start_ns;
	t->start_ns = 0;
	if (d < cpu_cfg.min_block_ns || (cpu_cfg.max_block_ns && d > cpu_cfg.max_block_ns))
		return;
	if (!t->acc_blocks)
		t->acc_gen = cpu_drain_gen;
	t->acc_ns += d;
	t->acc_blocks++;
	if (t->acc_ns >= CPU_FLUSH_NS || t->acc_blocks >= CPU_FLUSH_BLOCKS ||
	    t->acc_gen != cpu_drain_gen)
		cpu_flush(t);
}

/* The top of the user stack of the first sample of each user stack (the leaf fix-up). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct cpu_leaf_key);
	__type(value, struct cpu_leaf);
} leaf_words SEC(".maps");

/* A sample taken in user mode (its ip in the lower, user half): its registers are the user's. */
static __always_inline void cpu_leaf_words(struct bpf_perf_event_data *ctx, __u32 tgid,
					   __s32 user_stack)
{
#if defined(__TARGET_ARCH_x86)
	struct cpu_leaf_key lk = { .tgid = tgid, .user_stack = user_stack };
	struct cpu_leaf w = {};

	if (user_stack < 0 || ctx->regs.ip >= 0x800000000000ULL ||
	    bpf_map_lookup_elem(&leaf_words, &lk))
		return;
	if (bpf_probe_read_user(w.words, sizeof(w.words), (void *)ctx->regs.sp))
		return;
	bpf_map_update_elem(&leaf_words, &lk, &w, BPF_NOEXIST);
#endif
}

SEC("perf_event")
int cpu_sample(struct bpf_perf_event_data *ctx)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, tid = (__u32)id, flags;
	struct cpu_stack_key k = {};
	struct np_stats *st;

	if (!tid && !cpu_cfg.include_idle)
		return 0;
	flags = BPF_CORE_READ(task, flags);
	if (!cpu_wanted(tgid, tid, flags))
		return 0;
	st = np_stats();
	k.tgid = tgid;
	k.tid = tid;
	bpf_get_current_comm(k.comm, sizeof(k.comm));
	cpu_walk(ctx, &k, flags, st);
	cpu_add(&k, 1, st);
	cpu_leaf_words(ctx, tgid, k.user_stack);
	np_announce(tgid, st);
	return 0;
}

/* Is `prev` (current, blocking in `state`) a task the user asked about? Sets its flags. */
static __always_inline int cpu_switch_wanted(__u32 tgid, __u32 prev_tid, __u32 state,
					     __u32 *flags)
{
	struct task_struct *task = (void *)bpf_get_current_task();

	if (!prev_tid || (cpu_cfg.has_state && state != cpu_cfg.state))
		return 0;
	*flags = BPF_CORE_READ(task, flags);
	return cpu_wanted(tgid, prev_tid, *flags);
}

/*
 * One context switch, in the context of `prev` (still current: its stacks and cgroup are the
 * ones walked), without task storage: the block in progress per thread in `blocked`.
 * `state` is prev's state, 0 when it was preempted.
 */
static __always_inline void cpu_switch(void *ctx, __u32 prev_tid, __u32 state, __u32 next_tid)
{
	__u64 id = bpf_get_current_pid_tgid(), now = bpf_ktime_get_ns(), d;
	__u32 tgid = id >> 32, flags = 0;
	struct np_stats *st = 0;
	struct cpu_block *b;

	if (cpu_switch_wanted(tgid, prev_tid, state, &flags)) {
		struct cpu_block blk = { .start_ns = now };

		st = np_stats();
		blk.key.tgid = tgid;
		blk.key.tid = prev_tid;
		blk.key.state = state;
		bpf_get_current_comm(blk.key.comm, sizeof(blk.key.comm));
		cpu_walk(ctx, &blk.key, flags, st);
		if (bpf_map_update_elem(&blocked, &prev_tid, &blk, BPF_ANY))
			np_map_full(st);
		np_announce(tgid, st);
	}
	b = bpf_map_lookup_elem(&blocked, &next_tid);
	if (!b)
		return;
	d = now - b->start_ns;
	if (d >= cpu_cfg.min_block_ns && (!cpu_cfg.max_block_ns || d <= cpu_cfg.max_block_ns)) {
		struct cpu_stack_key k = b->key;

		if (!st)
			st = np_stats();
		cpu_add(&k, d, st);
	}
	bpf_map_delete_elem(&blocked, &next_tid);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(cpu_switch_btf, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	if (cpu_has_task_storage()) {
		/* 5.15+: prev and next are BTF pointers, read with plain loads (no helper calls). */
		__u32 prev_tid = prev->pid, next_tid = next->pid, tgid = prev->tgid;
		__u32 flags = prev->flags, state = 0;
		__u64 now = bpf_ktime_get_ns();

		if (!preempt)
			state = (bpf_core_field_exists(prev->__state) ? prev->__state
								      : np_task_state(prev)) &
				0xff;
		if (prev_tid && (!cpu_cfg.has_state || state == cpu_cfg.state) &&
		    cpu_wanted(tgid, prev_tid, flags))
			cpu_block_task(ctx, prev, tgid, prev_tid, state, flags, now);
		if (next_tid)
			cpu_wake_task(next, now);
		return 0;
	}
	cpu_switch(ctx, BPF_CORE_READ(prev, pid), preempt ? 0 : np_task_state(prev) & 0xff,
		   BPF_CORE_READ(next, pid));
	return 0;
}

SEC("tracepoint/sched/sched_switch")
int cpu_switch_tp(struct trace_event_raw_sched_switch *args)
{
	__u32 state = args->prev_state & NP_TASK_REPORT_MAX ? 0 : args->prev_state & 0xff;

	cpu_switch(args, args->prev_pid, state, args->next_pid);
	return 0;
}
