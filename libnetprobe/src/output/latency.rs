//! Text rendering of latency summaries and slow-packet events.
use crate::hist::human_ns;
use crate::output::Table;
use crate::run::IntervalInfo;
use crate::sets::latency::{FlowLatency, LatencyEvent, LatencySummary};
use clap::ValueEnum;
use std::fmt::Write as _;

/// Order of the per-flow table (`--sort-by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum SortBy {
    /// Most packets first
    #[default]
    Count,
    /// Highest mean first
    Avg,
    /// Highest median first
    P50,
    /// Highest 90th percentile first
    P90,
    /// Highest 99th percentile first
    P99,
}

impl SortBy {
    fn key(self, f: &FlowLatency) -> u64 {
        match self {
            SortBy::Count => f.count,
            SortBy::Avg => f.avg_ns,
            SortBy::P50 => f.p50_ns,
            SortBy::P90 => f.p90_ns,
            SortBy::P99 => f.p99_ns,
        }
    }

    /// Sorts flows in this order, largest first.
    pub fn sort(self, flows: &mut [FlowLatency]) {
        flows.sort_by(|a, b| self.key(b).cmp(&self.key(a)).then(b.count.cmp(&a.count)));
    }
}

/// What the text summary shows.
#[derive(Debug, Clone, Copy)]
pub struct SummaryStyle {
    /// Flows shown.
    pub top: usize,
    /// Their order.
    pub sort_by: SortBy,
}

/// Text of one summary interval: counters, histograms with percentiles, top flows.
pub fn summary_text(
    tool: &str,
    info: &IntervalInfo,
    header_note: &str,
    s: &LatencySummary,
    style: SummaryStyle,
) -> String {
    let mut out = crate::output::interval_header(tool, info.elapsed, info.now);
    let _ = writeln!(out, "{header_note}");
    let p = &s.packets;
    let _ = writeln!(
        out,
        "packets: started {}  completed {}  dropped {}  evicted {} ({:.2}% incomplete)  in flight {}",
        p.started, p.completed, p.dropped, p.evicted, p.incomplete_pct, p.active
    );
    for h in &s.histograms {
        if h.from == "total" {
            let _ = writeln!(out, "\n[{}] total latency:", h.path);
        } else {
            let _ = writeln!(out, "\n[{}] {} -> {}:", h.path, h.from, h.to);
        }
        if h.summary.count == 0 {
            let _ = writeln!(out, "  no packets completed");
            continue;
        }
        out.push_str(&h.hist().render_ns(h.summary.avg));
    }
    if style.top > 0 && !s.flows.is_empty() {
        let mut flows = s.flows.clone();
        style.sort_by.sort(&mut flows);
        let _ = writeln!(
            out,
            "\ntop {} of {} flows (whole path, by {}):",
            style.top.min(flows.len()),
            flows.len(),
            style
                .sort_by
                .to_possible_value()
                .map(|v| v.get_name().to_string())
                .unwrap_or_default()
        );
        let mut t = Table::new(&[
            "PATH",
            "FLOW",
            "COUNT (pkts)",
            "AVG",
            "P50~",
            "P90~",
            "P99~",
            "MIN",
            "MAX",
        ]);
        for f in flows.iter().take(style.top) {
            let mut flow = f.flow.describe();
            if let Some(id) = f.icmp_id {
                let _ = write!(flow, " id {id}");
            }
            t.row(vec![
                f.path.to_string(),
                flow,
                f.count.to_string(),
                human_ns(f.avg_ns),
                human_ns(f.p50_ns),
                human_ns(f.p90_ns),
                human_ns(f.p99_ns),
                human_ns(f.min_ns),
                human_ns(f.max_ns),
            ]);
        }
        out.push_str(&t.render());
    }
    let _ = writeln!(out, "{}", s.stats.line());
    out
}

/// What a details event shows per stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventStyle {
    /// Stage, time since the previous stage, CPU, device.
    Latency,
    /// Also queue, skb hash, length and qdisc length (performance_metrics).
    Metrics,
}

/// Text of one slow packet.
pub fn event_text(e: &LatencyEvent, style: EventStyle) -> String {
    let mut out = String::new();
    let mut id = String::new();
    if let (Some(i), Some(s)) = (e.id, e.seq) {
        let _ = write!(id, " id {i} seq {s}");
    }
    if let Some(i) = e.ip_id {
        let _ = write!(id, " ip_id {i}");
    }
    if let Some(s) = e.tcp_seq {
        let _ = write!(id, " seq {s}");
        if let Some(f) = &e.tcp_flags {
            let _ = write!(id, " [{f}]");
        }
    }
    let what = if e.rtt_us.is_some() { "RTT" } else { "total" };
    let _ = writeln!(
        out,
        "{} {} {}{}  {what} {:.3} us  (pid {} {})",
        crate::output::local_time(e.time),
        e.path,
        e.flow.describe(),
        id,
        e.total_us,
        e.pid,
        e.comm
    );
    let mut t = match style {
        EventStyle::Latency => Table::new(&["  STAGE", "+DELTA (us)", "CPU", "DEV"]),
        EventStyle::Metrics => Table::new(&[
            "  STAGE",
            "+DELTA (us)",
            "CPU",
            "DEV",
            "QUEUE",
            "HASH",
            "LEN (bytes)",
            "QLEN (pkts)",
        ]),
    };
    for s in &e.stages {
        let mut row = vec![
            format!("  {}", s.name),
            format!("{:.3}", s.delta_us),
            s.cpu.to_string(),
            s.ifname.clone(),
        ];
        if style == EventStyle::Metrics {
            row.extend([
                s.queue.to_string(),
                format!("0x{:08x}", s.hash),
                s.len.to_string(),
                s.qlen.to_string(),
            ]);
        }
        t.row(row);
    }
    out.push_str(&t.render());
    out
}
