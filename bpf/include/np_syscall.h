/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Syscall registers, read with CO-RE. Include after vmlinux.h and bpf_core_read.h. */
#pragma once

/* The syscall number at `raw_syscalls:sys_exit` (tp_btf gets the registers, not the number):
 * the one the entry saved in them; -1 on an architecture not handled here. */
static __always_inline long np_syscall_nr(struct pt_regs *regs)
{
#if defined(__TARGET_ARCH_x86)
	return BPF_CORE_READ(regs, orig_ax);
#elif defined(__TARGET_ARCH_arm64)
	return BPF_CORE_READ(regs, syscallno);
#else
	return -1;
#endif
}
