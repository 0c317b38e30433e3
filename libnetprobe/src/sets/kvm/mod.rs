//! The kvm probe set: interrupts KVM injects into its VMs, per VM, GSI, vector and path, from
//! KVM's tracepoints; where they are unavailable (or turned off with `NETPROBE_DISABLE`),
//! fentry then kprobe on the functions they sit in (`kvm_set_irq`, `kvm_set_msi_irq`,
//! `kvm_ioapic_set_irq`, `kvm_pic_set_irq`, `process_one_work`), which count the same.
//!
//! - `kvm:kvm_msi_set_irq` without a GSI assert before it: an MSI irqfd's fast path
//!   (`irqfd_wakeup` in the eventfd writer: a vhost worker, the VMM) or `KVM_SIGNAL_MSI`;
//! - `kvm:kvm_set_irq` level 1: a GSI assert (the `irqfd_inject` kworker of an INTx/IOAPIC
//!   irqfd, or `KVM_IRQ_LINE`), completed by the irqchip tracepoint that follows it
//!   (`kvm_ioapic_set_irq`, `kvm_pic_set_irq`, `kvm_msi_set_irq`) with its vector. A
//!   level-triggered signal (assert, deassert) is one injection.
//!
//! The path comes from a short kernel stack against the kallsyms ranges of `irqfd_wakeup`,
//! `irqfd_inject` and `kvm_vm_ioctl`. The VM is the VMM's pid: the writer's thread group (vhost
//! tasks are in the VMM's since 6.4; a legacy `vhost-<pid>` kthread names it in its comm), and
//! in the kworker the irqfd's own VM (`workqueue_execute_start` gives the work item; its
//! `kvm_kernel_irqfd` gives `kvm->userspace_pid`).
//!
//! Delivery to the vCPUs (accepted and injected vectors, vCPU wakeups) is in [`delivery`].
mod delivery;

pub use delivery::{DeliveryEntry, WakeupEntry};

use crate::error::{Error, Result};
use crate::kernel::KernelEnv;
use crate::kit::{self, BpfStats, KitConfig, LoadSpec, LoadedSet, ProbeSet};
use crate::probe::{Plan, ProbeKind, ProbePoint};
use crate::run::IntervalSource;
use crate::sets::flow::cstr;
use crate::skel::kvm::{types, KvmSkel, KvmSkelBuilder};
use clap::ValueEnum;
use serde::Serialize;
use std::collections::HashMap;

// SAFETY: plain C structs generated from bpf/include/kvm.h and np_types.h; any bytes are valid.
unsafe impl plain::Plain for types::kvm_irq_key {}
// SAFETY: as above.
unsafe impl plain::Plain for types::np_kit_config {}

/// The set as plans and `netprobe_check` see it.
pub struct KvmSet;

impl ProbeSet for KvmSet {
    const NAME: &'static str = "kvm";
    const ABOUT: &'static str = "interrupts injected into VMs: per VM, GSI, vector and path";

    fn probe_points() -> Vec<ProbePoint> {
        let tp = ProbePoint::tracepoint;
        // Each point's last resort: fentry, then kprobe, on the function its tracepoint is in.
        let fn_fallback =
            |p: ProbePoint, func: &'static str, fe: &'static str, kp: &'static str| {
                p.or(ProbeKind::Fentry, func, fe)
                    .or(ProbeKind::Kprobe, func, kp)
            };
        vec![
            fn_fallback(
                tp(
                    "gsi assert",
                    "kvm_set_irq_btf",
                    "kvm/kvm_set_irq",
                    "kvm_set_irq_tp",
                ),
                "kvm_set_irq",
                "kvm_set_irq_fe",
                "kvm_set_irq_kp",
            )
            .required(),
            fn_fallback(
                tp("msi", "kvm_msi_btf", "kvm/kvm_msi_set_irq", "kvm_msi_tp"),
                "kvm_set_msi_irq",
                "kvm_msi_fe",
                "kvm_msi_kp",
            )
            .required(),
            fn_fallback(
                tp(
                    "ioapic",
                    "kvm_ioapic_btf",
                    "kvm/kvm_ioapic_set_irq",
                    "kvm_ioapic_tp",
                ),
                "kvm_ioapic_set_irq",
                "kvm_ioapic_fe",
                "kvm_ioapic_kp",
            ),
            fn_fallback(
                tp("pic", "kvm_pic_btf", "kvm/kvm_pic_set_irq", "kvm_pic_tp"),
                "kvm_pic_set_irq",
                "kvm_pic_fe",
                "kvm_pic_kp",
            ),
            fn_fallback(
                tp(
                    "work start",
                    "kvm_work_start_btf",
                    "workqueue/workqueue_execute_start",
                    "kvm_work_start_tp",
                ),
                "process_one_work",
                "kvm_work_start_fe",
                "kvm_work_start_kp",
            ),
            // Only tidies up: every work start overwrites its thread's slot.
            tp(
                "work end",
                "kvm_work_end_btf",
                "workqueue/workqueue_execute_end",
                "kvm_work_end_tp",
            ),
            tp(
                delivery::POINTS[0],
                "kvm_accept_btf",
                "kvm/kvm_apic_accept_irq",
                "kvm_accept_tp",
            ),
            tp(
                delivery::POINTS[1],
                "kvm_inj_btf",
                "kvm/kvm_inj_virq",
                "kvm_inj_tp",
            ),
            tp(
                delivery::POINTS[2],
                "kvm_wakeup_btf",
                "kvm/kvm_vcpu_wakeup",
                "kvm_wakeup_tp",
            ),
        ]
    }
}

/// How an interrupt reached KVM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IrqPath {
    /// The MSI irqfd fast path, in the eventfd writer (`irqfd_wakeup`).
    Irqfd,
    /// An irqfd deferred to the `irqfd_inject` kworker (INTx, IOAPIC routes).
    IrqfdInject,
    /// `KVM_IRQ_LINE` or `KVM_SIGNAL_MSI` from the VMM.
    Ioctl,
    /// None of these in the stack.
    Other,
}

impl IrqPath {
    fn of(raw: u32) -> Self {
        use types::kvm_path as P;
        match types::kvm_path(raw) {
            P::KVM_PATH_IRQFD => IrqPath::Irqfd,
            P::KVM_PATH_IRQFD_INJECT => IrqPath::IrqfdInject,
            P::KVM_PATH_IOCTL => IrqPath::Ioctl,
            _ => IrqPath::Other,
        }
    }
}

/// Who injected: the datapath (a vhost worker) or the VMM's own threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// vhost workers (`vhost-<pid>`): packets for the guest.
    Data,
    /// Everything else: the VMM's threads, its ioctls.
    Control,
}

/// What to count.
#[derive(Debug, Clone, Default)]
pub struct KvmOptions {
    /// Only this VM (the VMM's pid).
    pub vm_pid: Option<u32>,
    /// Only injections by this thread (a vhost worker's pid).
    pub vhost_pid: Option<u32>,
    /// Only this category.
    pub category: Option<Category>,
    /// Kit switches.
    pub kit: KitConfig,
}

impl KvmOptions {
    /// Checks the options: a VM pid must be a running process.
    pub fn validate(&self) -> Result<()> {
        if let Some(pid) = self.vm_pid {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                return Err(Error::usage(format!(
                    "no process {pid}: give the VMM's (QEMU's) pid (pgrep qemu)"
                )));
            }
        }
        Ok(())
    }
}

/// One VM / GSI / vector / path over an interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IrqEntry {
    /// The VM: the VMM's pid (0: unknown).
    pub pid: u32,
    /// The VMM's command name (from /proc; `(exited)` when it is gone).
    pub comm: String,
    /// The injecting thread.
    pub source_tid: u32,
    /// Its command name.
    pub source_comm: String,
    /// `data` (a vhost worker) or `control`.
    pub category: Category,
    /// The GSI, where the path knows it.
    pub gsi: Option<u32>,
    /// The vector, where the path knows it.
    pub vector: Option<u8>,
    /// How the interrupt reached KVM.
    pub path: IrqPath,
    /// Injections.
    pub count: u64,
    /// Injections per second over the interval.
    pub rate_per_s: f64,
}

/// One interval.
#[derive(Debug, Clone, Serialize)]
pub struct KvmReport {
    /// By VM, then count (highest first).
    pub entries: Vec<IrqEntry>,
    /// Injections in the interval.
    pub total: u64,
    /// Whether the plan observes delivery to the vCPUs (tracepoints only).
    pub delivery_observed: bool,
    /// Vectors delivered to the VMs' vCPUs, by VM and vector.
    pub deliveries: Vec<DeliveryEntry>,
    /// Halted vCPUs woken up, by VM.
    pub wakeups: Vec<WakeupEntry>,
    /// BPF-side counters (flattened).
    #[serde(flatten)]
    pub stats: BpfStats,
}

/// An entry's identity: VM pid, source tid, source comm, GSI, vector, path.
type EntryKey = (u32, u32, String, Option<u32>, Option<u8>, IrqPath);

/// The VM a legacy vhost kthread works for: `vhost-<pid>`.
pub(crate) fn vhost_owner(comm: &str) -> Option<u32> {
    comm.strip_prefix("vhost-")?.parse().ok()
}

/// A loaded and attached kvm probe set.
pub struct KvmProbe {
    set: LoadedSet<KvmSkel<'static>>,
    opts: KvmOptions,
    last: std::time::Instant,
    vms: HashMap<u32, (u32, String)>,
}

impl KvmProbe {
    /// Loads and attaches the set; one clear error where the kernel has no KVM.
    pub fn open(opts: KvmOptions, env: &KernelEnv) -> Result<Self> {
        let plan = KvmSet::plan(env);
        let kvm_present = std::path::Path::new("/sys/module/kvm").exists()
            || env.btf.has_btf_tracepoint("kvm_set_irq");
        if !kvm_present {
            return Err(Error::missing(
                "no kvm on this kernel: KVM is not loaded (modprobe kvm_intel or kvm_amd) or not built",
            ));
        }
        plan.require()?;
        let fns: Vec<Option<(u64, u64)>> =
            crate::symbol::kallsyms_ranges(&["irqfd_wakeup", "irqfd_inject", "kvm_vm_ioctl"])?;
        let tracefs = env.tracefs.clone();
        let spec = LoadSpec {
            set: KvmSet::NAME,
            plan,
            stacks: kit::StackPolicy::off(),
            kit: &opts.kit,
        };
        let set = kit::load(KvmSkelBuilder::default(), spec, |open, kit_cfg| {
            let ro = crate::kit_rodata!(open, kit_cfg);
            for (slot, range) in ro.kvm_cfg.funcs.iter_mut().zip(&fns) {
                if let Some((start, end)) = range {
                    slot.start = *start;
                    slot.end = *end;
                }
            }
            if let Some(tracefs) = tracefs.as_deref() {
                let field = |name: &str, field: &str| {
                    let (offset, size) =
                        crate::kernel::tracefs::field_layout(tracefs, "kvm", name, field)
                            .unwrap_or((0, 0));
                    types::kvm_field {
                        offset: offset as u16,
                        size: size as u16,
                    }
                };
                let tp = &mut ro.kvm_cfg.tp;
                tp.set_irq_gsi = field("kvm_set_irq", "gsi");
                tp.set_irq_level = field("kvm_set_irq", "level");
                tp.msi_data = field("kvm_msi_set_irq", "data");
                tp.ioapic_e = field("kvm_ioapic_set_irq", "e");
                tp.accept_vec = field("kvm_apic_accept_irq", "vec");
                tp.inj_vector = match field("kvm_inj_virq", "vector") {
                    f if f.size == 0 => field("kvm_inj_virq", "irq"),
                    f => f,
                };
                tp.inj_reinjected = field("kvm_inj_virq", "reinjected");
                tp.wakeup_ns = field("kvm_vcpu_wakeup", "ns");
                tp.wakeup_waited = field("kvm_vcpu_wakeup", "waited");
            }
            if let Some(tid) = opts.vhost_pid {
                ro.kvm_cfg.has_src_tid = 1;
                ro.kvm_cfg.src_tid = tid;
            }
            Ok(())
        })?;
        Ok(Self {
            set,
            opts,
            last: std::time::Instant::now(),
            vms: HashMap::new(),
        })
    }

    /// The plan in use.
    pub fn chosen_plan(&self) -> &Plan {
        &self.set.plan
    }

    /// The process (thread group) of thread or process `pid` and its command name, from
    /// /proc: `kvm->userspace_pid` is the thread that created the VM.
    fn vm_of(&mut self, pid: u32) -> Option<(u32, String)> {
        if let Some(v) = self.vms.get(&pid) {
            return Some(v.clone());
        }
        let tgid = crate::kernel::process::thread_group(pid)?;
        let comm = std::fs::read_to_string(format!("/proc/{tgid}/comm")).ok()?;
        let v = (tgid, comm.trim().to_string());
        if self.vms.len() < 4096 {
            self.vms.insert(pid, v.clone());
        }
        Some(v)
    }

    /// The VM of a context: a legacy `vhost-<pid>` kthread's (when `vhost` allows it), else
    /// the thread group of `pid` (0 stays unknown); with its command name.
    fn resolve_vm(&mut self, pid: u32, comm: &str, vhost: bool) -> (u32, String) {
        let pid = vhost_owner(comm).filter(|_| vhost).unwrap_or(pid);
        if pid == 0 {
            return (0, String::new());
        }
        self.vm_of(pid)
            .unwrap_or_else(|| (pid, "(exited)".to_string()))
    }

    /// Ends the interval: the injections and deliveries counted since the previous call.
    pub fn drain_injections(&mut self) -> Result<KvmReport> {
        let raw: Vec<(types::kvm_irq_key, u64)> = kit::drain(&self.set.skel.maps.injections)?;
        let raw_deliveries: Vec<(types::kvm_delivery_key, types::kvm_delivery)> =
            kit::drain(&self.set.skel.maps.deliveries)?;
        // Pids are reused: look each one up again every interval.
        self.vms.clear();
        let secs = self.last.elapsed().as_secs_f64().max(1e-3);
        self.last = std::time::Instant::now();
        let mut merged: HashMap<EntryKey, u64> = HashMap::new();
        for (k, n) in raw {
            let source_comm = cstr(&k.src_comm);
            let path = IrqPath::of(k.path);
            let (pid, _) = self.resolve_vm(k.vm_pid, &source_comm, path == IrqPath::Irqfd);
            let gsi = u32::try_from(k.gsi).ok();
            let vector = u8::try_from(k.vector).ok();
            *merged
                .entry((pid, k.src_tid, source_comm, gsi, vector, path))
                .or_default() += n;
        }
        let mut entries: Vec<IrqEntry> = Vec::new();
        for ((pid, source_tid, source_comm, gsi, vector, path), count) in merged {
            if self.opts.vm_pid.is_some_and(|p| p != pid) {
                continue;
            }
            let category = if source_comm.starts_with("vhost-") {
                Category::Data
            } else {
                Category::Control
            };
            if self.opts.category.is_some_and(|c| c != category) {
                continue;
            }
            let (_, comm) = self.resolve_vm(pid, "", false);
            entries.push(IrqEntry {
                pid,
                comm,
                source_tid,
                source_comm,
                category,
                gsi,
                vector,
                path,
                count,
                rate_per_s: (count as f64 / secs * 10.0).round() / 10.0,
            });
        }
        entries.sort_by(|a, b| a.pid.cmp(&b.pid).then(b.count.cmp(&a.count)));
        let vm_filter = self.opts.vm_pid;
        let (deliveries, wakeups) = delivery::merge(
            raw_deliveries,
            |pid, comm| self.resolve_vm(pid, comm, true),
            |pid| vm_filter.is_none_or(|p| p == pid),
        );
        let plan = &self.set.plan;
        Ok(KvmReport {
            total: entries.iter().map(|e| e.count).sum(),
            entries,
            delivery_observed: delivery::POINTS
                .iter()
                .any(|p| plan.chosen_for(p).is_some()),
            deliveries,
            wakeups,
            stats: self.set.stats.delta(),
        })
    }
}

impl IntervalSource for KvmProbe {
    type Report = KvmReport;

    fn drain(&mut self) -> Result<KvmReport> {
        self.drain_injections()
    }

    fn plan(&self) -> &Plan {
        self.chosen_plan()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_legacy_vhost_thread_names_its_vm() {
        assert_eq!(vhost_owner("vhost-1234"), Some(1234));
        assert_eq!(vhost_owner("vhost-12ab"), None);
        assert_eq!(vhost_owner("qemu-system-x86"), None);
    }
}
