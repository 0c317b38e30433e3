// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Tiny programs whose trial load and attach tell which program types this kernel offers. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

__u64 hits = 0;

SEC("fentry/bpf_fentry_test1")
int BPF_PROG(feature_fentry, int a)
{
	__sync_fetch_and_add(&hits, 1);
	return 0;
}

SEC("kprobe")
int feature_kprobe(struct pt_regs *ctx)
{
	__sync_fetch_and_add(&hits, 1);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(feature_tp_btf)
{
	__sync_fetch_and_add(&hits, 1);
	return 0;
}

SEC("tracepoint/sched/sched_process_fork")
int feature_tracepoint(void *ctx)
{
	__sync_fetch_and_add(&hits, 1);
	return 0;
}
