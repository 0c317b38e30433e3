/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* syscall probe set: structs that cross the BPF/Rust boundary. */
#pragma once

#include "np_types.h"

enum sc_sizes {
	SC_SLOTS = 64, /* log2 slots of a futex wait histogram, µs */
	SC_COMM_LEN = 16,
};

/* Who a syscall count belongs to. */
enum sc_by {
	SC_BY_SYSCALL = 0, /* the whole system (or the filtered tasks) per syscall */
	SC_BY_PROCESS = 1, /* per (process, syscall) */
	SC_BY_CGROUP = 2,  /* per (cgroup v2 id, syscall) */
};

struct sc_config {
	__u64 cgroup_id; /* 0: any cgroup; else only tasks in this cgroup v2 (its inode) */
	__u32 tgid;      /* 0: any process */
	__u32 futex_nr;  /* __NR_futex of this architecture */
	__s32 only_nr;   /* -1: every syscall; else only this one */
	__u8 by;         /* enum sc_by */
	__u8 timed;      /* syscount: time each syscall (enter → exit) */
	__u8 failures;   /* syscount: count failed calls only */
	__u8 futex;      /* futex waits instead of syscall counts */
	__s32 errno_only; /* syscount: 0, or count only calls that failed with this errno */
	__u32 pad2;
};

/* A call in flight, per thread. */
struct sc_start {
	__u64 ts;
	__u64 uaddr; /* futex waits: the futex word */
	__u32 nr;
	__u32 futex_op;
};

struct sc_count_key {
	__u64 owner; /* 0, the tgid or the cgroup id (enum sc_by) */
	__u32 nr;
	__u32 cpu;   /* SC_BY_SYSCALL: the counting CPU (no shared counter between CPUs); else 0 */
};

struct sc_count {
	__u64 count;
	__u64 errors;
	__u64 total_ns; /* timed only */
	__u64 max_ns;
	char comm[SC_COMM_LEN]; /* the last caller's (SC_BY_PROCESS: the process's) */
};

/* One futex word a process waited on, from one user stack. */
struct sc_futex_key {
	__u64 uaddr;
	__u32 tgid;
	__s32 user_stack; /* < 0: not walked or the walk failed */
};

struct sc_futex {
	__u64 count;
	__u64 total_ns;
	__u64 max_ns;
	__u64 timeouts; /* the wait ended with -ETIMEDOUT */
	__u64 slots[SC_SLOTS]; /* log2 of the wait in µs */
	char comm[SC_COMM_LEN];
};
