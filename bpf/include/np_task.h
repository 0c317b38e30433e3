/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Task fields whose names changed between kernels, read with CO-RE. Include after vmlinux.h. */
#pragma once

#include <bpf/bpf_core_read.h>

/* PF_KTHREAD: a kernel thread (include/linux/sched.h, unchanged since 2.6). */
#define NP_PF_KTHREAD 0x00200000

/* TASK_DEAD: a task's state at its last switch (0x80 in 4.14 and later). */
#define NP_TASK_DEAD 0x80

struct task_struct___pre514 {
	long state;
} __attribute__((preserve_access_index));

/* A task's state: `__state` since 5.14, `state` before. */
static __always_inline __u32 np_task_state(struct task_struct *t)
{
	if (bpf_core_field_exists(t->__state))
		return BPF_CORE_READ(t, __state);
	return BPF_CORE_READ((struct task_struct___pre514 *)t, state);
}
