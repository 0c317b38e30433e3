// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * kvm probe set: interrupts KVM injects into VMs, counted per VM, GSI, vector and path, from
 * KVM's tracepoints. The path comes from a short kernel stack against kallsyms ranges
 * (irqfd_wakeup: the MSI fast path in the eventfd writer; irqfd_inject: the kworker; the VM
 * ioctl). A GSI assert (kvm_set_irq level 1) is one injection: it waits per thread for the
 * irqchip tracepoint that follows it synchronously (IOAPIC, PIC, MSI) to learn its vector; the
 * deassert that follows a level-triggered signal is not counted.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "np_common.h"
#include "kvm.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile struct kvm_config kvm_cfg = {};

NP_EXPORT_ENUM(kvm_path);
NP_EXPORT_ENUM(kvm_fn);
NP_EXPORT_ENUM(kvm_sizes);

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct kvm_irq_key);
	__type(value, __u64);
} injections SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct kvm_pending);
} pending SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct kvm_worker);
} workers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64[KVM_STACK_DEPTH]);
} stack_buf SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct kvm_delivery_key);
	__type(value, struct kvm_delivery);
} deliveries SEC(".maps");

static __always_inline void kvm_count(const struct kvm_irq_key *k)
{
	__u64 one = 1, *v = bpf_map_lookup_elem(&injections, k);

	if (v) {
		__sync_fetch_and_add(v, 1);
		return;
	}
	if (bpf_map_update_elem(&injections, k, &one, BPF_NOEXIST)) {
		v = bpf_map_lookup_elem(&injections, k);
		if (v)
			__sync_fetch_and_add(v, 1);
		else
			np_map_full(np_stats());
	}
}

static __always_inline int kvm_in(__u64 ip, int fn)
{
	return kvm_cfg.funcs[fn].end && ip >= kvm_cfg.funcs[fn].start && ip < kvm_cfg.funcs[fn].end;
}

/* The path of the injection in progress, from this context's kernel stack. */
static __always_inline __u32 kvm_path_of(void *ctx)
{
	__u32 zero = 0, path = KVM_PATH_OTHER;
	__u64 *ips = bpf_map_lookup_elem(&stack_buf, &zero);
	long n;

	if (!ips)
		return path;
	n = bpf_get_stack(ctx, ips, KVM_STACK_DEPTH * sizeof(__u64), 0);
	if (n <= 0) {
		struct np_stats *st = np_stats();

		if (st)
			st->stack_errors++;
		return path;
	}
#pragma unroll
	for (int i = 0; i < KVM_STACK_DEPTH; i++) {
		__u64 ip = ips[i];

		if (i * (int)sizeof(__u64) >= n)
			break;
		if (kvm_in(ip, KVM_FN_IRQFD_INJECT))
			return KVM_PATH_IRQFD_INJECT;
		if (kvm_in(ip, KVM_FN_IRQFD_WAKEUP))
			return KVM_PATH_IRQFD;
		if (kvm_in(ip, KVM_FN_VM_IOCTL))
			path = KVM_PATH_IOCTL;
	}
	return path;
}

/* A new key for an injection by the current thread; 0 if the --vhost-pid filter leaves it out. */
static __always_inline int kvm_key(void *ctx, struct kvm_irq_key *k, __s32 gsi, __s32 vector)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct kvm_worker *w;

	if (kvm_cfg.has_src_tid && tid != kvm_cfg.src_tid)
		return 0;
	__builtin_memset(k, 0, sizeof(*k));
	k->src_tid = tid;
	k->vm_pid = id >> 32;
	bpf_get_current_comm(k->src_comm, sizeof(k->src_comm));
	k->gsi = gsi;
	k->vector = vector;
	k->path = kvm_path_of(ctx);
	if (k->path == KVM_PATH_IRQFD_INJECT) {
		/* A kworker: the VM is the irqfd's, not the worker's. */
		w = bpf_map_lookup_elem(&workers, &tid);
		k->vm_pid = w ? w->vm_pid : 0;
	}
	return 1;
}

/* An assert still waiting for its vector: counted without one. */
static __always_inline void kvm_flush(__u32 tid)
{
	struct kvm_pending *p = bpf_map_lookup_elem(&pending, &tid);

	if (!p)
		return;
	kvm_count(&p->key);
	bpf_map_delete_elem(&pending, &tid);
}

static __always_inline void kvm_set_irq(void *ctx, __u32 gsi, int level)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct kvm_pending p;

	kvm_flush(tid);
	if (!level)
		return;
	if (!kvm_key(ctx, &p.key, gsi, -1))
		return;
	bpf_map_update_elem(&pending, &tid, &p, BPF_ANY);
}

/* An irqchip tracepoint: completes the current thread's assert with its vector. */
static __always_inline int kvm_complete(__s32 vector)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct kvm_pending *p = bpf_map_lookup_elem(&pending, &tid);

	if (!p)
		return 0;
	p->key.vector = vector;
	kvm_count(&p->key);
	bpf_map_delete_elem(&pending, &tid);
	return 1;
}

static __always_inline void kvm_msi(void *ctx, __s32 vector)
{
	struct kvm_irq_key k;

	if (kvm_complete(vector))
		return;
	/* An MSI without a GSI assert before it: the irqfd fast path or KVM_SIGNAL_MSI. */
	if (kvm_key(ctx, &k, -1, vector))
		kvm_count(&k);
}

/* The irqfd behind an irqfd_inject work item: its VM and GSI. */
static __always_inline void kvm_work_start(struct work_struct *work, __u64 func)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct kvm_worker w = { .work = (__u64)work, .gsi = -1 };

	if (!kvm_cfg.funcs[KVM_FN_IRQFD_INJECT].start || func != kvm_cfg.funcs[KVM_FN_IRQFD_INJECT].start)
		return;
	if (bpf_core_type_exists(struct kvm_kernel_irqfd)) {
		struct kvm_kernel_irqfd *irqfd =
			(void *)work - bpf_core_field_offset(struct kvm_kernel_irqfd, inject);
		struct kvm *kvm = BPF_CORE_READ(irqfd, kvm);

		w.gsi = BPF_CORE_READ(irqfd, gsi);
		if (bpf_core_field_exists(kvm->userspace_pid))
			w.vm_pid = BPF_CORE_READ(kvm, userspace_pid);
	}
	bpf_map_update_elem(&workers, &tid, &w, BPF_ANY);
}

static __always_inline void kvm_work_end(struct work_struct *work)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct kvm_worker *w = bpf_map_lookup_elem(&workers, &tid);

	if (w && w->work == (__u64)work)
		bpf_map_delete_elem(&workers, &tid);
}

/* This context's delivery counters for `vector`: the VM is the thread group's, or in the irqfd
 * kworker the irqfd's (0 where that is unknown). */
static __always_inline struct kvm_delivery *kvm_delivery_of(__s32 vector)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct kvm_delivery_key k = { .vm_pid = id >> 32, .vector = vector };
	struct kvm_delivery zero = {}, *d;
	struct kvm_worker *w = bpf_map_lookup_elem(&workers, &tid);

	if (w)
		k.vm_pid = w->vm_pid;
	bpf_get_current_comm(k.comm, sizeof(k.comm));
	d = bpf_map_lookup_elem(&deliveries, &k);
	if (d)
		return d;
	/* Another CPU may have added it meanwhile: then the update fails and the lookup finds it. */
	bpf_map_update_elem(&deliveries, &k, &zero, BPF_NOEXIST);
	d = bpf_map_lookup_elem(&deliveries, &k);
	if (!d)
		np_map_full(np_stats());
	return d;
}

static __always_inline void kvm_accepted(__s32 vector)
{
	struct kvm_delivery *d = kvm_delivery_of(vector);

	if (d)
		__sync_fetch_and_add(&d->accepted, 1);
}

static __always_inline void kvm_injected(__s32 vector, int reinjected)
{
	struct kvm_delivery *d = kvm_delivery_of(vector);

	if (!d)
		return;
	if (reinjected)
		__sync_fetch_and_add(&d->reinjected, 1);
	else
		__sync_fetch_and_add(&d->injected, 1);
}

static __always_inline void kvm_woke(__u64 ns, int waited)
{
	struct kvm_delivery *d = kvm_delivery_of(-1);

	if (!d)
		return;
	__sync_fetch_and_add(&d->wakeups, 1);
	if (!waited)
		return;
	__sync_fetch_and_add(&d->waited, 1);
	__sync_fetch_and_add(&d->wait_ns, ns);
	if (ns > d->wait_max_ns)
		d->wait_max_ns = ns; /* racy by design: a maximum, not a sum */
}

/* ---- tp_btf ---- */

SEC("tp_btf/kvm_set_irq")
int BPF_PROG(kvm_set_irq_btf, unsigned int gsi, int level, int irq_source_id)
{
	kvm_set_irq(ctx, gsi, level);
	return 0;
}

SEC("tp_btf/kvm_msi_set_irq")
int BPF_PROG(kvm_msi_btf, __u64 address, __u64 data)
{
	kvm_msi(ctx, data & 0xff);
	return 0;
}

SEC("tp_btf/kvm_ioapic_set_irq")
int BPF_PROG(kvm_ioapic_btf, __u64 e, int pin, bool coalesced)
{
	kvm_complete(e & 0xff);
	return 0;
}

SEC("tp_btf/kvm_pic_set_irq")
int BPF_PROG(kvm_pic_btf)
{
	kvm_complete(-1);
	return 0;
}

SEC("tp_btf/workqueue_execute_start")
int BPF_PROG(kvm_work_start_btf, struct work_struct *work)
{
	kvm_work_start(work, (__u64)work->func);
	return 0;
}

SEC("tp_btf/workqueue_execute_end")
int BPF_PROG(kvm_work_end_btf, struct work_struct *work)
{
	kvm_work_end(work);
	return 0;
}

SEC("tp_btf/kvm_apic_accept_irq")
int BPF_PROG(kvm_accept_btf, __u32 apicid, __u16 dm, __u16 tm, __u8 vec)
{
	kvm_accepted(vec);
	return 0;
}

SEC("tp_btf/kvm_inj_virq")
int BPF_PROG(kvm_inj_btf, unsigned int vector)
{
	/* The soft and reinjected arguments came with 6.3. */
	int reinjected = bpf_core_field_exists(struct trace_event_raw_kvm_inj_virq, reinjected) ?
				 (int)(ctx[2] & 0xff) : 0;

	kvm_injected(vector & 0xff, reinjected);
	return 0;
}

SEC("tp_btf/kvm_vcpu_wakeup")
int BPF_PROG(kvm_wakeup_btf, __u64 ns, bool waited)
{
	kvm_woke(ns, waited);
	return 0;
}

/* ---- classic tracepoints: kvm's records at the offsets tracefs gives ---- */

/* A field of a classic tracepoint's record at the place tracefs gives (0 when unknown). */
#define KVM_TP_FIELD(args, field)                                                      \
	({                                                                             \
		__u64 __v = 0;                                                         \
		__u32 __size = kvm_cfg.tp.field.size, __off = kvm_cfg.tp.field.offset; \
		if (__size && __size <= sizeof(__v))                                   \
			bpf_probe_read_kernel(&__v, __size & 0xf,                      \
					      (void *)((__u64)(args) + __off));        \
		__v; /* x86 and arm64 are little-endian: the low bytes took the field */ \
	})

SEC("tracepoint/kvm/kvm_set_irq")
int kvm_set_irq_tp(void *args)
{
	kvm_set_irq(args, (__u32)KVM_TP_FIELD(args, set_irq_gsi),
		    (int)KVM_TP_FIELD(args, set_irq_level));
	return 0;
}

SEC("tracepoint/kvm/kvm_msi_set_irq")
int kvm_msi_tp(void *args)
{
	kvm_msi(args, KVM_TP_FIELD(args, msi_data) & 0xff);
	return 0;
}

SEC("tracepoint/kvm/kvm_ioapic_set_irq")
int kvm_ioapic_tp(void *args)
{
	kvm_complete(KVM_TP_FIELD(args, ioapic_e) & 0xff);
	return 0;
}

SEC("tracepoint/kvm/kvm_pic_set_irq")
int kvm_pic_tp(void *args)
{
	kvm_complete(-1);
	return 0;
}

SEC("tracepoint/workqueue/workqueue_execute_start")
int kvm_work_start_tp(struct trace_event_raw_workqueue_execute_start *args)
{
	kvm_work_start((struct work_struct *)args->work, (__u64)args->function);
	return 0;
}

SEC("tracepoint/workqueue/workqueue_execute_end")
int kvm_work_end_tp(struct trace_event_raw_workqueue_execute_end *args)
{
	kvm_work_end((struct work_struct *)args->work);
	return 0;
}

SEC("tracepoint/kvm/kvm_apic_accept_irq")
int kvm_accept_tp(void *args)
{
	kvm_accepted(KVM_TP_FIELD(args, accept_vec) & 0xff);
	return 0;
}

SEC("tracepoint/kvm/kvm_inj_virq")
int kvm_inj_tp(void *args)
{
	kvm_injected(KVM_TP_FIELD(args, inj_vector) & 0xff,
		     KVM_TP_FIELD(args, inj_reinjected) & 0xff);
	return 0;
}

SEC("tracepoint/kvm/kvm_vcpu_wakeup")
int kvm_wakeup_tp(void *args)
{
	kvm_woke(KVM_TP_FIELD(args, wakeup_ns), KVM_TP_FIELD(args, wakeup_waited) & 0xff);
	return 0;
}

/* ---- fentry, then kprobe: the functions the tracepoints sit in (a kernel whose tracepoints
 * are unavailable or turned off). Each fires where its tracepoint does, with the same
 * arguments, so the same code counts: kvm_set_irq (kvm_set_irq's), kvm_set_msi_irq
 * (kvm_msi_set_irq's: every MSI, the irqfd fast path's through kvm_arch_set_irq_inatomic and
 * the others' through kvm_set_msi), kvm_ioapic_set_irq and kvm_pic_set_irq (the irqchips'),
 * process_one_work (workqueue_execute_start's). No end of work is needed: an injection is
 * only read as the kworker's while its irqfd_inject runs, and each start overwrites the slot. */

/* The MSI vector of a routing entry; -1 without the kvm module's BTF (a kprobe before 5.11). */
static __always_inline __s32 kvm_route_vector(struct kvm_kernel_irq_routing_entry *e)
{
	if (!bpf_core_type_exists(struct kvm_kernel_irq_routing_entry))
		return -1;
	return BPF_CORE_READ(e, msi.data) & 0xff;
}

/* The vector programmed for IOAPIC pin `pin`; -1 without the kvm module's BTF. */
static __always_inline __s32 kvm_ioapic_vector(struct kvm_ioapic *ioapic, int pin)
{
	__u64 bits = 0;

	if (!bpf_core_type_exists(struct kvm_ioapic) || pin < 0 || pin >= 64)
		return -1;
	bpf_probe_read_kernel(&bits, sizeof(bits),
			      (void *)ioapic + bpf_core_field_offset(struct kvm_ioapic, redirtbl) +
				      pin * bpf_core_type_size(union kvm_ioapic_redirect_entry));
	return bits & 0xff;
}

SEC("fentry/kvm_set_irq")
int BPF_PROG(kvm_set_irq_fe, struct kvm *kvm, int irq_source_id, u32 irq, int level)
{
	kvm_set_irq(ctx, irq, level);
	return 0;
}

SEC("kprobe/kvm_set_irq")
int BPF_KPROBE(kvm_set_irq_kp, struct kvm *kvm, int irq_source_id, u32 irq, int level)
{
	kvm_set_irq(ctx, irq, level);
	return 0;
}

SEC("fentry/kvm_set_msi_irq")
int BPF_PROG(kvm_msi_fe, struct kvm *kvm, struct kvm_kernel_irq_routing_entry *e)
{
	kvm_msi(ctx, kvm_route_vector(e));
	return 0;
}

SEC("kprobe/kvm_set_msi_irq")
int BPF_KPROBE(kvm_msi_kp, struct kvm *kvm, struct kvm_kernel_irq_routing_entry *e)
{
	kvm_msi(ctx, kvm_route_vector(e));
	return 0;
}

SEC("fentry/kvm_ioapic_set_irq")
int BPF_PROG(kvm_ioapic_fe, struct kvm_ioapic *ioapic, int irq)
{
	kvm_complete(kvm_ioapic_vector(ioapic, irq));
	return 0;
}

SEC("kprobe/kvm_ioapic_set_irq")
int BPF_KPROBE(kvm_ioapic_kp, struct kvm_ioapic *ioapic, int irq)
{
	kvm_complete(kvm_ioapic_vector(ioapic, irq));
	return 0;
}

SEC("fentry/kvm_pic_set_irq")
int BPF_PROG(kvm_pic_fe)
{
	kvm_complete(-1);
	return 0;
}

SEC("kprobe/kvm_pic_set_irq")
int BPF_KPROBE(kvm_pic_kp)
{
	kvm_complete(-1);
	return 0;
}

SEC("fentry/process_one_work")
int BPF_PROG(kvm_work_start_fe, struct worker *worker, struct work_struct *work)
{
	kvm_work_start(work, (__u64)work->func);
	return 0;
}

SEC("kprobe/process_one_work")
int BPF_KPROBE(kvm_work_start_kp, struct worker *worker, struct work_struct *work)
{
	kvm_work_start(work, (__u64)BPF_CORE_READ(work, func));
	return 0;
}

struct kvm_irq_key kvm_irq_key_type = {};
struct kvm_pending kvm_pending_type = {};
struct kvm_delivery_key kvm_delivery_key_type = {};
struct kvm_delivery kvm_delivery_type = {};
