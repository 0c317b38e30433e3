/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* cpu probe set: structs that cross the BPF/Rust boundary. */
#pragma once

#include "np_types.h"

enum cpu_sizes {
	CPU_COMM_LEN = 16,
	CPU_LEAF_WORDS = 8, /* words copied from the user stack pointer for the leaf fix-up */
};

/* Which task a program looks at; the filter runs before any stack is walked. */
struct cpu_config {
	__u64 cgroup_id;    /* 0: any cgroup; else the cgroup v2 id (inode) the task must be in */
	__u64 min_block_ns; /* off-CPU: shorter blocks are not counted */
	__u64 max_block_ns; /* off-CPU: longer blocks are not counted (0: no limit) */
	__u32 tgid;         /* 0: any process */
	__u32 tid;          /* 0: any thread */
	__u32 state;        /* off-CPU with has_state: only blocks that began in this state */
	__u8 has_state;
	__u8 user_stacks;   /* walk the user stack */
	__u8 kernel_stacks; /* walk the kernel stack */
	__u8 include_idle;  /* profile: count samples of the idle task */
	__u8 threads;       /* CPU_THREADS_* */
	__u8 pad[3];
	/* off-CPU: a thread blocking again at the same user call site reuses the stacks walked
	 * there, walking them afresh every stack_refresh-th time (0 or 1: at every block) */
	__u32 stack_refresh;
};

enum cpu_threads {
	CPU_THREADS_ALL = 0,
	CPU_THREADS_USER = 1,   /* user threads only (-u) */
	CPU_THREADS_KERNEL = 2, /* kernel threads only (-k) */
};

/* One counted stack: samples (profile) or nanoseconds off CPU (off-CPU). Stack ids < 0: not
 * walked (-1, or a kernel thread's user stack) or the walk failed (other negative errno). */
struct cpu_stack_key {
	__u32 tgid;
	__u32 tid;
	__s32 user_stack;
	__s32 kernel_stack;
	__u32 state; /* off-CPU: the state the block began in (0: preempted, runnable) */
	char comm[CPU_COMM_LEN];
	__u32 pad;
};

/* A thread switched out and not yet back: when, and where it blocked. */
struct cpu_block {
	__u64 start_ns;
	struct cpu_stack_key key;
};

/* Where a user thread blocked: its syscall, its user registers at kernel entry and the return
 * address of the frame rbp points to (two callers of one function at the same depth differ
 * there). The same site almost always means the same stacks; a walk every stack_refresh-th
 * block keeps the split between sites that share all of these statistically right. */
struct cpu_site_key {
	__u32 tid;
	__u32 state;
	__u64 nr; /* syscall number (orig_ax), or -1 */
	__u64 ip;
	__u64 sp;
	__u64 bp;
	__u64 ret; /* the word at bp + 8 (0 if unreadable) */
};

/* The stacks walked at a site, and how often they were reused since. */
struct cpu_site {
	__s32 user_stack;
	__s32 kernel_stack;
	__u32 uses;
	__u32 pad;
};

/* Off-CPU state of one task (task storage): its block in progress and the blocked time of
 * its current key not yet added to `counts` (added once it reaches CPU_FLUSH_NS or
 * CPU_FLUSH_BLOCKS, when the key changes, or at the first block after a drain). */
struct cpu_task {
	__u64 start_ns; /* switched out at; 0: not in a counted block */
	__u64 acc_ns;
	__u32 acc_blocks;
	__u32 acc_gen;   /* cpu_drain_gen when the accumulation began */
	__u32 site_uses; /* blocks at `site` since its stacks were walked or looked up */
	__u8 has_site;   /* `site` is valid (a user thread that blocked, not preempted) */
	__u8 pad[3];
	struct cpu_site_key site;
	struct cpu_stack_key key;
};

enum cpu_flush {
	CPU_FLUSH_NS = 1000000, /* a thread's accumulated blocked time is counted by 1 ms */
	CPU_FLUSH_BLOCKS = 32,  /* ... or by 32 blocks */
};

/* A user stack seen by the profile, and the top of the user stack at its first sample. */
struct cpu_leaf_key {
	__u32 tgid;
	__s32 user_stack;
};

/* A frameless leaf (gcc, Go) has not pushed rbp: the frame-pointer walk skips its caller,
 * whose return address is in these words (user space finds which by decoding the leaf). */
struct cpu_leaf {
	__u64 words[CPU_LEAF_WORDS];
};
