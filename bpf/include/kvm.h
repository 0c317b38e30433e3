/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* kvm probe set: structs and enums that cross the BPF/Rust boundary. */
#pragma once

#include "np_types.h"

/* How an interrupt reached KVM's injection code. */
enum kvm_path {
	KVM_PATH_OTHER = 0,
	KVM_PATH_IRQFD = 1,        /* irqfd fast path: irqfd_wakeup in the eventfd writer (MSI) */
	KVM_PATH_IRQFD_INJECT = 2, /* irqfd deferred to the irqfd_inject kworker (INTx, IOAPIC) */
	KVM_PATH_IOCTL = 3,        /* KVM_IRQ_LINE / KVM_SIGNAL_MSI from the VMM */
};

/* Kernel functions whose presence in the stack tells the path, [start, end) from kallsyms. */
enum kvm_fn {
	KVM_FN_IRQFD_WAKEUP = 0,
	KVM_FN_IRQFD_INJECT = 1,
	KVM_FN_VM_IOCTL = 2,
	KVM_FNS = 4,
};

enum kvm_sizes {
	KVM_STACK_DEPTH = 12, /* frames walked to classify an injection */
};

struct kvm_range {
	__u64 start;
	__u64 end;
};

/* Where a classic tracepoint's field is in its record (from tracefs' format file: the kvm
 * module's records have no BTF before 5.11). size 0: unknown. */
struct kvm_field {
	__u16 offset;
	__u16 size;
};

struct kvm_tp_fields {
	struct kvm_field set_irq_gsi;
	struct kvm_field set_irq_level;
	struct kvm_field msi_data;
	struct kvm_field ioapic_e;
	struct kvm_field accept_vec;
	struct kvm_field inj_vector; /* "vector" since 6.3, "irq" before */
	struct kvm_field inj_reinjected; /* since 6.3 */
	struct kvm_field wakeup_ns;
	struct kvm_field wakeup_waited;
};

struct kvm_config {
	struct kvm_range funcs[KVM_FNS];
	struct kvm_tp_fields tp;
	__u32 src_tid;     /* with has_src_tid: only injections by this thread (--vhost-pid) */
	__u8 has_src_tid;
	__u8 pad[3];
};

/* What an injection is counted by. gsi/vector -1: the path does not tell. */
struct kvm_irq_key {
	__u32 vm_pid;      /* the VMM's pid: writer's tgid, the irqfd's kvm->userspace_pid, ... */
	__u32 src_tid;     /* the injecting thread */
	char src_comm[16];
	__s32 gsi;
	__s32 vector;
	__u32 path;        /* enum kvm_path */
	__u32 pad;
};

/* A kvm_set_irq assert waiting for the irqchip tracepoint that gives its vector (per thread). */
struct kvm_pending {
	struct kvm_irq_key key;
};

/* The irqfd whose inject work this kworker runs (per thread, workqueue start to end). */
struct kvm_worker {
	__u64 work;
	__u32 vm_pid;
	__s32 gsi;
};

/* Delivery to a VM's vCPUs, per VM and vector (-1: the VM's vCPU wakeups). */
struct kvm_delivery_key {
	__u32 vm_pid;      /* the thread group (or, in the irqfd kworker, the irqfd's VM) */
	__s32 vector;
	char comm[16];     /* the context's command name (a legacy vhost-<pid> kthread's names its VM) */
};

struct kvm_delivery {
	__u64 accepted;    /* kvm_apic_accept_irq: a LAPIC took the vector (IRR set) */
	__u64 injected;    /* kvm_inj_virq: KVM entered the vCPU with it */
	__u64 reinjected;  /* ... again, after an exit cut its delivery short (6.3+ tell) */
	__u64 wakeups;     /* kvm_vcpu_wakeup: a halted vCPU woke up */
	__u64 waited;      /* ... after sleeping (the others ended while halt-polling) */
	__u64 wait_ns;     /* their halted time, summed */
	__u64 wait_max_ns;
};
