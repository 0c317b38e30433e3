// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * uprobe probe set: calls of user-space functions, counted per function (the attach cookie
 * is the function's index), timed from entry to return, or counted per calling stack. Return
 * probes are uretprobes, except for Go, whose stacks uretprobes corrupt: there a uprobe sits
 * on each RET instruction and calls are keyed by goroutine (r14, Go's ABIInternal) instead of
 * thread, since goroutines move between threads.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "np_common.h"
#include "np_announce.h"
#include "uprobe.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile struct up_config up_cfg = {};

NP_EXPORT_ENUM(up_sizes);

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, UP_MAX_FUNCS);
	__type(key, __u32);
	__type(value, struct up_func_stats);
} funcs SEC(".maps");

/* Calls in flight; LRU: a call that never returns (a panic, runtime.Goexit) ages out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct up_call_key);
	__type(value, __u64);
} calls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct up_stack_key);
	__type(value, struct up_stack_val);
} stack_counts SEC(".maps");

static __always_inline int up_wanted(void)
{
	if (up_cfg.tgid && (bpf_get_current_pid_tgid() >> 32) != up_cfg.tgid)
		return 0;
	return !up_cfg.cgroup_id || bpf_get_current_cgroup_id() == up_cfg.cgroup_id;
}

/*
 * Counts one call (of `ns`, 0 when untimed) on the current user stack. `at_caller`: the walk
 * begins in the caller (a uretprobe); else in the probed function, whose return address is
 * at [sp] where a frame-pointer walk does not look.
 */
static __always_inline void up_count_stack(struct pt_regs *ctx, __u32 func, int at_caller, __u64 ns)
{
	struct up_stack_key k = { .func = func, .tgid = bpf_get_current_pid_tgid() >> 32 };
	struct up_stack_val one = { .count = 1, .total_ns = ns }, *v;
	struct np_stats *st = np_stats();

	k.user_stack = bpf_get_stackid(ctx, &stack_traces, BPF_F_USER_STACK);
	if (k.user_stack < 0 && st)
		st->stack_errors++;
	if (!at_caller)
		bpf_probe_read_user(&k.caller, sizeof(k.caller), (void *)PT_REGS_SP(ctx));
	np_announce(k.tgid, st);
	v = bpf_map_lookup_elem(&stack_counts, &k);
	if (v) {
		__sync_fetch_and_add(&v->count, 1);
		/* Not for a constant 0: clang makes that an atomic OR, which kernels before 5.12
		 * refuse ("BPF_STX uses reserved fields"). */
		if (ns)
			__sync_fetch_and_add(&v->total_ns, ns);
	} else if (bpf_map_update_elem(&stack_counts, &k, &one, BPF_NOEXIST)) {
		np_map_full(st);
	}
}

static __always_inline int up_enter(struct pt_regs *ctx, __u64 owner)
{
	__u32 func = bpf_get_attach_cookie(ctx);
	struct up_func_stats *s;

	if (!up_wanted())
		return 0;
	s = bpf_map_lookup_elem(&funcs, &func);
	if (!s)
		return 0;
	s->calls++;
	if (up_cfg.latency) {
		struct up_call_key k = { .owner = owner, .func = func };
		__u64 now = bpf_ktime_get_ns();

		bpf_map_update_elem(&calls, &k, &now, BPF_ANY);
	}
	if (up_cfg.stacks && !up_cfg.latency)
		up_count_stack(ctx, func, 0, 0);
	return 0;
}

static __always_inline int up_leave(struct pt_regs *ctx, __u64 owner, int at_caller)
{
	struct up_call_key k = { .owner = owner, .func = bpf_get_attach_cookie(ctx) };
	struct up_func_stats *s;
	__u64 *start, d;

	if (!up_wanted())
		return 0;
	if (!up_cfg.latency) {
		/* Counting returns only (a Go function's RETs: its entry probe fires twice when
		 * the prologue grows the stack through morestack, a return once per call). */
		s = bpf_map_lookup_elem(&funcs, &k.func);
		if (s)
			s->returns++;
		return 0;
	}
	start = bpf_map_lookup_elem(&calls, &k);
	if (!start)
		return 0;
	d = bpf_ktime_get_ns() - *start;
	bpf_map_delete_elem(&calls, &k);
	s = bpf_map_lookup_elem(&funcs, &k.func);
	if (!s)
		return 0;
	s->returns++;
	s->total_ns += d;
	s->slots[np_log2_slot(d) & (UP_SLOTS - 1)]++;
	if (up_cfg.stacks && d >= up_cfg.stack_min_ns)
		up_count_stack(ctx, k.func, at_caller, d);
	return 0;
}

SEC("uprobe")
int up_entry(struct pt_regs *ctx)
{
	return up_enter(ctx, (__u32)bpf_get_current_pid_tgid());
}

SEC("uretprobe")
int up_return(struct pt_regs *ctx)
{
	return up_leave(ctx, (__u32)bpf_get_current_pid_tgid(), 1);
}

SEC("uprobe")
int up_go_entry(struct pt_regs *ctx)
{
	return up_enter(ctx, ctx->r14);
}

/* On a RET instruction of a Go function: the goroutine is still in r14. */
SEC("uprobe")
int up_go_return(struct pt_regs *ctx)
{
	return up_leave(ctx, ctx->r14, 0);
}
