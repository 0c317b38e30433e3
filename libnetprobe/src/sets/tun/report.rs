//! What the tun set reports: ring snapshots, xmit events, per-queue interval summaries.
use crate::kit::BpfStats;
use crate::sets::flow::FlowView;
use crate::skel::tun::types;
use serde::Serialize;
use std::time::SystemTime;

/// A ring snapshot as the set read it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RingView {
    /// Next slot the producer (the xmit) writes.
    pub producer: u32,
    /// Next slot the consumer (the reader) reads.
    pub consumer_head: u32,
    /// First consumed slot not yet zeroed (the consumer zeroes `batch` slots at a time).
    pub consumer_tail: u32,
    /// Ring size, slots (the device's `txqueuelen`).
    pub size: u32,
    /// Consumer zeroing batch, slots.
    pub batch: u32,
    /// Packets in the ring, not yet read.
    pub pending: u32,
    /// Slots the producer cannot use yet: pending plus read but not yet zeroed.
    pub unavailable: u32,
    /// `queue[producer]` is taken: this xmit is dropped (`FULL_RING`).
    pub full: bool,
    /// Queues attached to the device.
    pub numqueues: u16,
}

/// One xmit into the device.
#[derive(Debug, Clone, Serialize)]
pub struct TunEvent {
    /// Wall-clock time.
    #[serde(serialize_with = "crate::output::serialize_local_time")]
    pub time: SystemTime,
    /// CLOCK_MONOTONIC timestamp, ns.
    pub timestamp_ns: u64,
    /// The device.
    pub ifname: String,
    /// Tx queue (`skb->queue_mapping`): the tun file whose ring it is.
    pub queue: u32,
    /// The ring before this packet's produce (flattened).
    #[serde(flatten)]
    pub ring: RingView,
    /// `pending / size`, percent.
    pub utilisation_pct: f64,
    /// `ok`, or why the ring could not be read.
    pub ring_status: &'static str,
    /// CPU of the xmit.
    pub cpu: u32,
    /// Process (tgid) running at the time.
    pub pid: u32,
    /// Its command name.
    pub comm: String,
    /// Packet length, bytes.
    pub len: u32,
    /// Decoded flow (flattened).
    #[serde(flatten)]
    pub flow: FlowView,
}

/// Drops of one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReasonCount {
    /// The kernel's name (`FULL_RING`), from its BTF.
    pub reason: String,
    /// Drops.
    pub count: u64,
}

/// One queue over one interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QueueReport {
    /// Queue index.
    pub queue: u32,
    /// Ring size, slots (at the last xmit or read of the interval).
    pub size: u32,
    /// Packets the stack handed to the queue.
    pub xmit: u64,
    /// Of those, found the ring full.
    pub full: u64,
    /// Packets of the device dropped on this queue (any reason; see `drop_reasons`).
    pub drops: u64,
    /// Drops by reason.
    pub drop_reasons: Vec<ReasonCount>,
    /// Packets a reader took from the ring.
    pub read: u64,
    /// Highest fill seen at an xmit, packets. The fill is read at every full xmit and at a
    /// sample of the others (the first of the interval, then 1 in
    /// [`FILL_SAMPLE`](super::FILL_SAMPLE) per CPU).
    pub max_pending: u32,
    /// Mean fill at the sampled xmits, packets.
    pub mean_pending: f64,
    /// Log2 histogram of the fills read at those xmits, packets (`None`: none read).
    pub pending_hist: Option<crate::hist::HistSummary>,
    /// Highest number of slots the producer could not use (sampled as `max_pending`).
    pub max_unavailable: u32,
    /// `max_pending / size`, percent.
    pub max_fill_pct: f64,
    /// Xmits whose ring could not be read.
    pub unknown_ring: u64,
    /// Why, for the last of them (`ok` when there were none).
    pub ring_status: &'static str,
}

/// One interval of a device's queues.
#[derive(Debug, Clone, Serialize)]
pub struct TunReport {
    /// The device.
    pub ifname: String,
    /// Queues with activity, by index.
    pub queues: Vec<QueueReport>,
    /// BPF-side counters (flattened).
    #[serde(flatten)]
    pub stats: BpfStats,
}

pub(super) fn status_name(status: u8) -> &'static str {
    use types::tun_ring_status as S;
    match types::tun_ring_status(u32::from(status)) {
        S::TUN_RING_OK => "ok",
        S::TUN_RING_NOT_TUN => "not_tun",
        S::TUN_RING_NO_QUEUE => "no_queue",
        S::TUN_RING_NO_BTF => "no_btf",
        S::TUN_RING_QUEUE_UNKNOWN => "queue_unknown",
        _ => "unreadable",
    }
}

pub(super) fn pct(part: f64, whole: u32) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part * 1000.0 / f64::from(whole)).round() / 10.0
    }
}
