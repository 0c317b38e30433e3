//! The vhost set's domain types: a virtqueue's counts, state, irqfd and buffer peeks over an
//! interval, decoded from what BPF keeps.
use crate::hist::HistSummary;
use crate::kernel::process::thread_group;
use crate::kit::BpfStats;
use crate::skel::vhost::types;
use serde::Serialize;

/// Which queue of a vhost-net device a virtqueue is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Toward the guest: tap packets into guest buffers.
    Rx,
    /// From the guest: guest buffers out through the tap.
    Tx,
    /// Its `handle_kick` is neither of vhost-net's.
    Unknown,
}

impl Role {
    pub(super) fn of(raw: u32) -> Self {
        use types::vhost_role as R;
        match types::vhost_role(raw) {
            R::VHOST_ROLE_RX => Role::Rx,
            R::VHOST_ROLE_TX => Role::Tx,
            _ => Role::Unknown,
        }
    }
}

/// A virtqueue's state at the last `vhost_add_used_and_signal_n` of the interval (before the
/// buffers were added).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VqState {
    /// Ring size (entries).
    pub num: u32,
    /// Next avail entry vhost takes.
    pub last_avail_idx: u16,
    /// The guest's `avail->idx` as vhost last read it.
    pub avail_idx: u16,
    /// Next used entry vhost writes.
    pub last_used_idx: u16,
    /// Avail entries the guest posted that vhost has not taken (`avail_idx - last_avail_idx`).
    pub pending: u16,
    /// Used index at the last signal (with EVENT_IDX), if valid.
    pub signalled_used: Option<u16>,
    /// `VIRTIO_RING_F_EVENT_IDX` negotiated: the guest's `used_event` decides signals.
    pub event_idx: bool,
    /// The guest's `avail->flags` (bit 0: `VRING_AVAIL_F_NO_INTERRUPT`), if it could be read.
    pub avail_flags: Option<u16>,
    /// The guest's `used_event` (`avail->ring[num]`), if it could be read.
    pub used_event: Option<u16>,
}

impl VqState {
    pub(super) fn of(s: &types::vhost_vq_state) -> Self {
        let guest = s.guest_read != 0;
        Self {
            num: s.num,
            last_avail_idx: s.last_avail_idx,
            avail_idx: s.avail_idx,
            last_used_idx: s.last_used_idx,
            pending: s.avail_idx.wrapping_sub(s.last_avail_idx),
            signalled_used: (s.signalled_used_valid != 0).then_some(s.signalled_used),
            event_idx: s.event_idx != 0,
            avail_flags: guest.then_some(s.avail_flags),
            used_event: guest.then_some(s.used_event),
        }
    }
}

/// The KVM irqfd a virtqueue's call eventfd wakes: the guest interrupt its signals become.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IrqfdView {
    /// irqfd wakeups (EPOLLIN) by the call eventfd: one per signal that reached KVM.
    pub wakeups: u64,
    /// The irqfd's GSI, once one woke.
    pub gsi: Option<u32>,
    /// The vector its MSI route sends, where the route is an MSI.
    pub vector: Option<u8>,
    /// The irqfd's VM: the VMM's pid (the process of the thread that created the VM,
    /// `kvm->userspace_pid`), once one woke.
    pub vm_pid: Option<u32>,
}

impl IrqfdView {
    pub(super) fn of(s: &types::vhost_vq_stats) -> Self {
        let seen = s.irqfd_seen != 0;
        Self {
            wakeups: s.irqfd_wakeups,
            gsi: seen.then_some(s.irqfd_gsi),
            vector: (seen && s.irqfd_msi != 0).then_some(s.irqfd_vector as u8),
            vm_pid: seen.then(|| thread_group(s.vm_pid).unwrap_or(s.vm_pid)),
        }
    }
}

/// What `vhost_net_buf_peek` returned for an RX virtqueue: the worker looking at the next
/// packet of the batch it took from the tap's ring.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BufPeeks {
    /// Calls.
    pub peeks: u64,
    /// Calls that found the batch empty (0: vhost takes the next batch from the ring, or
    /// there is nothing to take).
    pub empty: u64,
    /// Mean length the others returned, bytes (the packet, without the vnet header).
    pub mean_len_bytes: f64,
}

impl BufPeeks {
    pub(super) fn of(s: &types::vhost_vq_stats) -> Self {
        let full = s.peeks.saturating_sub(s.empty_peeks);
        Self {
            peeks: s.peeks,
            empty: s.empty_peeks,
            mean_len_bytes: if full == 0 {
                0.0
            } else {
                (s.peek_bytes as f64 / full as f64 * 10.0).round() / 10.0
            },
        }
    }
}

/// One virtqueue over an interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VirtqueueEntry {
    /// The VM: the VMM's pid (the worker's thread group on 6.4+, else from `vhost-<pid>`).
    pub vmm_pid: u32,
    /// The worker thread.
    pub worker_tid: u32,
    /// Its command name.
    pub worker_comm: String,
    /// RX or TX.
    pub role: Role,
    /// The virtqueue's kernel address (stable while the device lives).
    pub vq: String,
    /// The call eventfd's context address (KVM's irqfd, when the VMM registered one).
    pub eventfd: String,
    /// The tap behind it, once the worker read or wrote it.
    pub device: Option<String>,
    /// The tap queue.
    pub queue: Option<u16>,
    /// `vhost_add_used_and_signal_n` calls.
    pub signal_calls: u64,
    /// Buffers they marked used (packets).
    pub used: u64,
    /// Signals of the call eventfd (guest notifications).
    pub signals: u64,
    /// Worker runs for this queue (`handle_rx`/`handle_tx`); `None` where not hooked.
    pub handle_runs: Option<u64>,
    /// Packets the worker read from the tap queue (`tun_recvmsg`): RX queues only.
    pub tap_reads: Option<u64>,
    /// Writes (batches) the worker made to the tap queue (`tun_sendmsg`): TX queues only.
    pub tap_writes: Option<u64>,
    /// Most avail entries not yet taken at a call.
    pub max_pending: u32,
    /// Calls that found no avail entry left (the guest is out of buffers or about to be).
    pub empty_calls: u32,
    /// Calls that found the guest's `VRING_AVAIL_F_NO_INTERRUPT` set.
    pub no_interrupt_calls: u32,
    /// The KVM irqfd of its call eventfd; `None` where `irqfd_wakeup` is not hooked.
    pub irqfd: Option<IrqfdView>,
    /// `vhost_net_buf_peek` returns: RX queues where it is hooked.
    pub buf_peeks: Option<BufPeeks>,
    /// Log2 histograms of the queue's depths ([`super::VhostOptions::hists`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hists: Option<VqHists>,
    /// The state at the last call.
    pub last: VqState,
}

/// A virtqueue's depths over an interval, each a log2 histogram.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VqHists {
    /// At each used+signal: avail entries the guest posted that vhost had not taken
    /// (`avail_idx - last_avail_idx`), entries.
    pub avail_pending: Option<HistSummary>,
    /// At each used+signal: entries vhost had taken but not yet used
    /// (`last_avail_idx - last_used_idx`), entries.
    pub in_flight: Option<HistSummary>,
    /// RX queues: packets in the tap's ring at each of the worker's reads, packets.
    pub ring_depth_at_read: Option<HistSummary>,
}

/// One interval.
#[derive(Debug, Clone, Serialize)]
pub struct VhostReport {
    /// By VMM pid, then role and address.
    pub queues: Vec<VirtqueueEntry>,
    /// Signals of call eventfds in the interval.
    pub total_signals: u64,
    /// Buffers marked used in the interval.
    pub total_used: u64,
    /// BPF-side counters (flattened).
    #[serde(flatten)]
    pub stats: BpfStats,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_wraps_around_the_16_bit_indices() {
        let raw = types::vhost_vq_state {
            num: 256,
            last_avail_idx: 65530,
            avail_idx: 4,
            last_used_idx: 65530,
            signalled_used: 7,
            signalled_used_valid: 0,
            event_idx: 1,
            guest_read: 1,
            avail_flags: 1,
            used_event: 9,
            ..Default::default()
        };
        let s = VqState::of(&raw);
        assert_eq!(s.pending, 10);
        assert_eq!(s.signalled_used, None);
        assert_eq!(s.avail_flags, Some(1));
        assert!(s.event_idx);
    }
}
