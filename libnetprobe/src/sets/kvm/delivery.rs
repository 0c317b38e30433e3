//! Delivery to the vCPUs: which vectors a VM's LAPICs accepted (`kvm:kvm_apic_accept_irq`,
//! in the injecting context), which KVM entered a vCPU with (`kvm:kvm_inj_virq`, in the vCPU
//! thread; backends that inject without it, such as PVM, count none), and how often a halted
//! vCPU woke up and after how long (`kvm:kvm_vcpu_wakeup`). Tracepoints only: the plan says
//! when a kernel has none of them.
use crate::skel::kvm::types;
use serde::Serialize;
use std::collections::BTreeMap;

// SAFETY: plain C structs generated from bpf/include/kvm.h; any bytes are valid.
unsafe impl plain::Plain for types::kvm_delivery_key {}
// SAFETY: as above.
unsafe impl plain::Plain for types::kvm_delivery {}

/// The plan's names of the delivery points.
pub(super) const POINTS: [&str; 3] = ["apic accept", "inject", "vcpu wakeup"];

/// One vector's delivery to one VM over an interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryEntry {
    /// The VM: the VMM's pid (0: unknown).
    pub pid: u32,
    /// The VMM's command name.
    pub comm: String,
    /// The vector.
    pub vector: u8,
    /// Times a LAPIC of the VM accepted it (set it in its IRR).
    pub accepted: u64,
    /// Times KVM entered a vCPU with it (0 where the backend does not trace injection).
    pub injected: u64,
    /// Times it entered a vCPU with it again, after an exit cut the delivery short (a page
    /// fault on the guest's IDT or stack, say). Kernels before 6.3 do not tell them apart:
    /// there they are in `injected`.
    pub reinjected: u64,
}

/// One VM's vCPU wakeups over an interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WakeupEntry {
    /// The VM: the VMM's pid.
    pub pid: u32,
    /// The VMM's command name.
    pub comm: String,
    /// Halted vCPUs woken up.
    pub wakeups: u64,
    /// Of those, the ones that had gone to sleep (the others ended while halt-polling).
    pub waited: u64,
    /// Their mean halted time, microseconds.
    pub mean_wait_us: f64,
    /// Their longest halted time, microseconds.
    pub max_wait_us: f64,
}

/// Delivery counters as BPF keeps them, merged by VM. `resolve` maps a context's (pid, comm)
/// to its VM's pid and command name.
pub(super) fn merge(
    raw: Vec<(types::kvm_delivery_key, types::kvm_delivery)>,
    mut resolve: impl FnMut(u32, &str) -> (u32, String),
    keep: impl Fn(u32) -> bool,
) -> (Vec<DeliveryEntry>, Vec<WakeupEntry>) {
    let mut vectors: BTreeMap<(u32, u8), (String, u64, u64, u64)> = BTreeMap::new();
    let mut wakeups: BTreeMap<u32, (String, types::kvm_delivery)> = BTreeMap::new();
    for (k, d) in raw {
        let (pid, comm) = resolve(k.vm_pid, &crate::sets::flow::cstr(&k.comm));
        if !keep(pid) {
            continue;
        }
        match u8::try_from(k.vector) {
            Ok(vector) => {
                let e = vectors.entry((pid, vector)).or_insert((comm, 0, 0, 0));
                e.1 += d.accepted;
                e.2 += d.injected;
                e.3 += d.reinjected;
            }
            Err(_) => {
                let e = wakeups.entry(pid).or_insert((comm, Default::default()));
                e.1.wakeups += d.wakeups;
                e.1.waited += d.waited;
                e.1.wait_ns += d.wait_ns;
                e.1.wait_max_ns = e.1.wait_max_ns.max(d.wait_max_ns);
            }
        }
    }
    let deliveries = vectors
        .into_iter()
        .map(
            |((pid, vector), (comm, accepted, injected, reinjected))| DeliveryEntry {
                pid,
                comm,
                vector,
                accepted,
                injected,
                reinjected,
            },
        )
        .collect();
    let us = |ns: u64| (ns as f64 / 100.0).round() / 10.0;
    let wakeups = wakeups
        .into_iter()
        .filter(|(_, (_, w))| w.wakeups > 0)
        .map(|(pid, (comm, w))| WakeupEntry {
            pid,
            comm,
            wakeups: w.wakeups,
            waited: w.waited,
            mean_wait_us: w.wait_ns.checked_div(w.waited).map_or(0.0, us),
            max_wait_us: us(w.wait_max_ns),
        })
        .collect();
    (deliveries, wakeups)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(pid: u32, vector: i32, comm: &str) -> types::kvm_delivery_key {
        let mut k = types::kvm_delivery_key {
            vm_pid: pid,
            vector,
            ..Default::default()
        };
        for (d, s) in k.comm.iter_mut().zip(comm.bytes()) {
            *d = s as _;
        }
        k
    }

    #[test]
    fn contexts_of_one_vm_merge_and_wakeups_stand_apart() {
        let d = |accepted, injected| types::kvm_delivery {
            accepted,
            injected,
            ..Default::default()
        };
        let wake = types::kvm_delivery {
            wakeups: 3,
            waited: 2,
            wait_ns: 3_000_000,
            wait_max_ns: 2_000_000,
            ..Default::default()
        };
        let raw = vec![
            (key(100, 0x30, "qemu"), d(2, 0)),
            (key(101, 0x30, "CPU 0/KVM"), d(0, 2)),
            (key(7, 0x30, "vhost-100"), d(5, 0)),
            (key(101, -1, "CPU 0/KVM"), wake),
            (key(200, 0x31, "other"), d(1, 1)),
        ];
        let resolve = |pid: u32, comm: &str| {
            let vm = comm.strip_prefix("vhost-").and_then(|p| p.parse().ok());
            let pid = vm.unwrap_or(if pid == 101 { 100 } else { pid });
            (pid, format!("vm{pid}"))
        };
        let (del, wakeups) = merge(raw, resolve, |pid| pid == 100);
        assert_eq!(
            del,
            vec![DeliveryEntry {
                pid: 100,
                comm: "vm100".into(),
                vector: 0x30,
                accepted: 7,
                injected: 2,
                reinjected: 0,
            }]
        );
        assert_eq!(wakeups.len(), 1);
        assert_eq!((wakeups[0].wakeups, wakeups[0].waited), (3, 2));
        assert_eq!(wakeups[0].mean_wait_us, 1500.0);
        assert_eq!(wakeups[0].max_wait_us, 2000.0);
    }
}
