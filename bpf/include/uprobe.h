/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* uprobe probe set: structs that cross the BPF/Rust boundary. */
#pragma once

#include "np_types.h"

enum up_sizes {
	UP_MAX_FUNCS = 256, /* functions one run can probe (the attach cookie indexes them) */
	UP_SLOTS = 64,      /* log2 slots of a call-duration histogram, ns */
};

struct up_config {
	__u64 cgroup_id; /* 0: any cgroup; else only tasks in this cgroup v2 (its inode) */
	__u32 tgid;    /* 0: every process that maps the binary */
	__u8 latency;  /* time calls (entry → return) */
	__u8 stacks;   /* count calls per user stack (with latency: at the return, with the time) */
	__u8 pad[2];
	__u64 stack_min_ns; /* latency + stacks: only calls this long are counted per stack */
};

/* Per function and CPU: calls, and with latency the returns timed and their sum. */
struct up_func_stats {
	__u64 calls;
	__u64 returns;
	__u64 total_ns;
	__u64 slots[UP_SLOTS];
};

/* A call in flight: keyed by thread (or goroutine, for Go) and function. */
struct up_call_key {
	__u64 owner; /* tid, or the goroutine pointer (r14) for Go */
	__u32 func;
	__u32 pad;
};

struct up_stack_key {
	__u32 func;
	__u32 tgid;
	__s32 user_stack;
	__u32 pad;
	__u64 caller; /* the return address at [sp] (entry, Go RET): a frame-pointer walk skips
		       * it; 0 when the walk began in the caller (at a uretprobe) */
};

/* Calls from one stack, and with latency their time. */
struct up_stack_val {
	__u64 count;
	__u64 total_ns;
};
