//! The whole path of a packet batch toward a VM, per tap queue and interval: xmits into the
//! tap's ring (tun set) → buffers vhost used and the guest notifications it sent (vhost set) →
//! KVM's irqfd woken by the call eventfd, its GSI and MSI vector (vhost set) → the vector
//! accepted by the VM's LAPIC (kvm set). Each link's count next to the previous one shows where
//! the chain broke: packets not read, notifications suppressed, an eventfd with no irqfd, an
//! interrupt not accepted.
//!
//! Not a probe set of its own: it composes [`TapVhostProbe`] and [`KvmProbe`], joined by the
//! irqfd's VM and vector.
use crate::error::Result;
use crate::kernel::netns::Netns;
use crate::kernel::KernelEnv;
use crate::kit::BpfStats;
use crate::probe::Plan;
use crate::run::IntervalSource;
use crate::sets::kvm::{DeliveryEntry, KvmOptions, KvmProbe};
use crate::sets::tap_vhost::{TapVhostOptions, TapVhostProbe, TapVhostQueue};
use serde::Serialize;

/// One tap queue's chain over an interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChainRow {
    /// The tap queue.
    pub queue: u32,
    /// Packets the stack handed to the tap queue.
    pub xmit: u64,
    /// Of those, dropped (a full ring, mostly).
    pub drops: u64,
    /// Buffers vhost filled with them (the RX virtqueue's used buffers).
    pub used: u64,
    /// vhost's `vhost_add_used_and_signal_n` calls for them.
    pub signal_calls: u64,
    /// Signals of the call eventfd (guest notifications).
    pub signals: u64,
    /// KVM irqfd wakeups by that eventfd; `None` where not observed.
    pub irqfd_wakeups: Option<u64>,
    /// The irqfd's GSI.
    pub gsi: Option<u32>,
    /// The vector its MSI route sends.
    pub vector: Option<u8>,
    /// The VM (the VMM's pid).
    pub vm_pid: Option<u32>,
    /// Times the VM's LAPIC accepted that vector (from every source in the interval, not only
    /// this queue's); `None` where not observed or no vector is known.
    pub accepted: Option<u64>,
}

/// One interval of a tap's chains.
#[derive(Debug, Clone, Serialize)]
pub struct ChainReport {
    /// The tap.
    pub ifname: String,
    /// By queue.
    pub queues: Vec<ChainRow>,
    /// BPF-side counters of the three sets (flattened).
    #[serde(flatten)]
    pub stats: BpfStats,
}

/// The tun, vhost and kvm sets for one tap.
pub struct IrqChainProbe {
    tap: TapVhostProbe,
    kvm: KvmProbe,
    plan: Plan,
}

impl IrqChainProbe {
    /// Loads the three sets; the vhost set's clear error where vhost-net is absent, the kvm
    /// set's where KVM is.
    pub fn open(opts: TapVhostOptions, env: &KernelEnv) -> Result<Self> {
        let tap = TapVhostProbe::open(opts, env)?;
        let kvm = KvmProbe::open(KvmOptions::default(), env)?;
        let mut plan = tap.plan().clone();
        plan.choices
            .extend(kvm.chosen_plan().choices.iter().cloned());
        Ok(Self { tap, kvm, plan })
    }
}

/// One row per queue with an RX virtqueue or a ring; `accepted` from the VM's deliveries of
/// the irqfd's vector (`None` without delivery tracepoints).
fn rows(queues: Vec<TapVhostQueue>, deliveries: Option<&[DeliveryEntry]>) -> Vec<ChainRow> {
    queues
        .into_iter()
        .map(|q| {
            let irqfd = q.rx.as_ref().and_then(|v| v.irqfd.clone());
            let (gsi, vector, vm_pid) = irqfd
                .as_ref()
                .map_or((None, None, None), |i| (i.gsi, i.vector, i.vm_pid));
            let accepted = match (deliveries, vector, vm_pid) {
                (Some(d), Some(vec), Some(pid)) => Some(
                    d.iter()
                        .filter(|e| e.pid == pid && e.vector == vec)
                        .map(|e| e.accepted)
                        .sum(),
                ),
                _ => None,
            };
            ChainRow {
                queue: q.queue,
                xmit: q.ring.as_ref().map_or(0, |r| r.xmit),
                drops: q.ring.as_ref().map_or(0, |r| r.drops),
                used: q.rx.as_ref().map_or(0, |v| v.used),
                signal_calls: q.rx.as_ref().map_or(0, |v| v.signal_calls),
                signals: q.rx.as_ref().map_or(0, |v| v.signals),
                irqfd_wakeups: irqfd.as_ref().map(|i| i.wakeups),
                gsi,
                vector,
                vm_pid,
                accepted,
            }
        })
        .collect()
}

impl IntervalSource for IrqChainProbe {
    type Report = ChainReport;

    fn drain(&mut self) -> Result<ChainReport> {
        let tap = self.tap.drain()?;
        let kvm = self.kvm.drain_injections()?;
        let mut stats = tap.stats;
        stats.add(kvm.stats);
        let deliveries = kvm.delivery_observed.then_some(kvm.deliveries.as_slice());
        Ok(ChainReport {
            ifname: tap.ifname,
            queues: rows(tap.queues, deliveries),
            stats,
        })
    }

    fn plan(&self) -> &Plan {
        &self.plan
    }

    fn netns(&self) -> Option<&Netns> {
        self.tap.netns()
    }
}
