//! What the latency set reports: histograms, per-flow totals, packet counts, slow packets.
use super::path::Path;
use crate::clock::WallClock;
pub use crate::hist::Bucket;
use crate::hist::{HistSummary, Log2Hist};
use crate::kernel::netns::IfNames;
use crate::kit::BpfStats;
use crate::sets::flow::{cstr, tcp_flags, FlowView};
use crate::skel::latency::types;
use serde::Serialize;
use std::time::SystemTime;

/// A latency histogram between two stages of a path, or of the whole path (`from: "total"`).
#[derive(Debug, Clone, Serialize)]
pub struct HistView {
    /// Path name.
    pub path: &'static str,
    /// Earlier stage, or `total` for the whole path.
    pub from: &'static str,
    /// Later stage (the path's name for the total).
    pub to: &'static str,
    /// The histogram in ns: count, exact mean, percentiles, buckets.
    #[serde(flatten)]
    pub summary: HistSummary,
}

impl HistView {
    /// Builds the view of a histogram whose samples sum to `sum`.
    pub fn new(
        path: &'static str,
        from: &'static str,
        to: &'static str,
        hist: &Log2Hist,
        sum: u64,
    ) -> Self {
        Self {
            path,
            from,
            to,
            summary: HistSummary::new("ns", hist, sum),
        }
    }

    /// The histogram itself (for rendering).
    pub fn hist(&self) -> &Log2Hist {
        self.summary.hist()
    }
}

/// The whole-path latency of one flow in an interval.
#[derive(Debug, Clone, Serialize)]
pub struct FlowLatency {
    /// Path name.
    pub path: &'static str,
    /// The flow (ICMP: the echo id is the source port slot, `icmp_id`).
    #[serde(flatten)]
    pub flow: FlowView,
    /// ICMP echo identifier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_id: Option<u16>,
    /// Packets completed.
    pub count: u64,
    /// Mean, ns.
    pub avg_ns: u64,
    /// Smallest, ns.
    pub min_ns: u64,
    /// Largest, ns.
    pub max_ns: u64,
    /// 50th percentile (bucket upper bound), ns.
    pub p50_ns: u64,
    /// 90th percentile, ns.
    pub p90_ns: u64,
    /// 99th percentile, ns.
    pub p99_ns: u64,
}

impl FlowLatency {
    /// Decodes a per-flow entry.
    pub fn decode(path: &'static str, k: &types::lat_flow_key, v: &types::lat_flow_value) -> Self {
        let f = &k.flow;
        let icmp = matches!(f.l4proto, 1 | 58);
        let h = Log2Hist::from_slots(&v.slots);
        let cap = |x: u64| x.min(v.max_ns).max(v.min_ns);
        Self {
            path,
            flow: FlowView::decode(
                &f.saddr,
                &f.daddr,
                f.sport,
                f.dport,
                f.ethertype,
                f.l3,
                f.l4proto,
            ),
            icmp_id: icmp.then_some(f.sport),
            count: v.count,
            avg_ns: v.sum_ns.checked_div(v.count).unwrap_or(0),
            min_ns: v.min_ns,
            max_ns: v.max_ns,
            p50_ns: cap(h.percentile(50.0)),
            p90_ns: cap(h.percentile(90.0)),
            p99_ns: cap(h.percentile(99.0)),
        }
    }
}

/// Packets the engine opened and closed in an interval.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct PacketCounts {
    /// Opened at a first stage.
    pub started: u64,
    /// Closed at a last stage.
    pub completed: u64,
    /// Dropped by the driver at net_dev_xmit (e.g. a full tap ring).
    pub dropped: u64,
    /// Given up: not seen for the packet timeout, reopened (a retransmit), or pushed out of a
    /// full map.
    pub evicted: u64,
    /// Still in flight at the end of the interval.
    pub active: u64,
    /// `evicted` as a percentage of `started` (0 when nothing started).
    pub incomplete_pct: f64,
    /// start_xmit calls whose net_dev_xmit never came on the same CPU (packets the last
    /// stage could not match).
    pub unmatched_xmit: u64,
}

impl PacketCounts {
    /// Counts with the incomplete percentage computed.
    pub fn new(
        started: u64,
        completed: u64,
        dropped: u64,
        evicted: u64,
        active: u64,
        unmatched_xmit: u64,
    ) -> Self {
        Self {
            started,
            completed,
            dropped,
            evicted,
            active,
            incomplete_pct: if started == 0 {
                0.0
            } else {
                (evicted as f64 * 100.0 / started as f64 * 100.0).round() / 100.0
            },
            unmatched_xmit,
        }
    }
}

/// One interval of a latency summary.
#[derive(Debug, Clone, Serialize)]
pub struct LatencySummary {
    /// Whole-path histograms (`from: "total"`) and, with `--stage-latency`, adjacent stages.
    pub histograms: Vec<HistView>,
    /// Per-flow totals, most packets first.
    pub flows: Vec<FlowLatency>,
    /// Engine counters.
    #[serde(flatten)]
    pub packets: PacketCounts,
    /// What went wrong in BPF this interval, and what the programs cost.
    #[serde(flatten)]
    pub stats: BpfStats,
}

/// What one stage saw of a reported packet.
#[derive(Debug, Clone, Serialize)]
pub struct StageView {
    /// Stage name.
    pub name: &'static str,
    /// CLOCK_MONOTONIC timestamp, ns.
    pub ts_ns: u64,
    /// Since the previous stage the packet passed, µs.
    pub delta_us: f64,
    /// CPU.
    pub cpu: u16,
    /// Device name (`-` for stages without one).
    pub ifname: String,
    /// Device index.
    pub ifindex: u32,
    /// skb->queue_mapping.
    pub queue: u16,
    /// skb->hash.
    pub hash: u32,
    /// skb->len, bytes.
    pub len: u32,
    /// Qdisc length at dequeue (0 elsewhere).
    pub qlen: u32,
}

/// One packet whose whole path took at least the threshold.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyEvent {
    /// Wall-clock time of the first stage.
    #[serde(serialize_with = "crate::output::serialize_local_time")]
    pub time: SystemTime,
    /// Path name.
    pub path: &'static str,
    /// First stage to last, µs.
    pub total_us: f64,
    /// Round-trip time (ICMP echo paths: request's first stage to reply's last), µs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_us: Option<f64>,
    /// The flow.
    #[serde(flatten)]
    pub flow: FlowView,
    /// IPv4 identification (UDP and other non-TCP IPv4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_id: Option<u16>,
    /// IPv4 fragment offset, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frag_offset: Option<u16>,
    /// TCP sequence number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_seq: Option<u32>,
    /// TCP acknowledgment number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_ack: Option<u32>,
    /// TCP flags at the first stage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_flags: Option<String>,
    /// ICMP echo identifier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<u16>,
    /// ICMP echo sequence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u16>,
    /// Process running at the first stage.
    pub pid: u32,
    /// Its command name.
    pub comm: String,
    /// Namespace inode of the first stage's device.
    pub netns: u32,
    /// The stages the packet passed, in path order.
    pub stages: Vec<StageView>,
}

/// Decodes a details event of `path`.
pub fn decode_event(
    e: &types::lat_event,
    path: &Path,
    clock: &WallClock,
    ifnames: &mut IfNames,
) -> LatencyEvent {
    let f = &e.key.flow;
    let (tcp, icmp) = (f.l4proto == 6, matches!(f.l4proto, 1 | 58));
    let ipv4 = f.l3 == 4;
    let mut stages = Vec::new();
    let mut prev = e.s.first_ns;
    for (i, st) in e.s.st.iter().enumerate().take(path.stages.len()) {
        if st.ts_ns == 0 {
            continue;
        }
        stages.push(StageView {
            name: path.stages[i].name,
            ts_ns: st.ts_ns,
            delta_us: st.ts_ns.saturating_sub(prev) as f64 / 1000.0,
            cpu: st.cpu,
            ifname: ifnames.name(e.s.netns, st.ifindex),
            ifindex: st.ifindex,
            queue: st.queue,
            hash: st.hash,
            len: st.len,
            qlen: st.qlen,
        });
        prev = st.ts_ns;
    }
    let total_us = e.total_ns as f64 / 1000.0;
    let echo_path = path.stages.iter().any(|s| s.echo.is_some());
    LatencyEvent {
        time: clock.wall(e.s.first_ns),
        path: path.name,
        total_us,
        rtt_us: echo_path.then_some(total_us),
        flow: FlowView::decode(
            &f.saddr,
            &f.daddr,
            f.sport,
            f.dport,
            f.ethertype,
            f.l3,
            f.l4proto,
        ),
        ip_id: (ipv4 && !tcp && !icmp).then_some((e.key.id >> 16) as u16),
        frag_offset: (ipv4 && !tcp && !icmp).then_some(((e.key.id & 0x1fff) * 8) as u16),
        tcp_seq: tcp.then_some(e.key.id),
        tcp_ack: tcp.then_some(e.key.id2),
        tcp_flags: tcp.then(|| tcp_flags(e.s.tcp_flags)),
        id: icmp.then_some((e.key.id >> 16) as u16),
        seq: icmp.then_some((e.key.id & 0xffff) as u16),
        pid: e.s.pid,
        comm: cstr(&e.s.comm),
        netns: e.s.netns,
        stages,
    }
}
