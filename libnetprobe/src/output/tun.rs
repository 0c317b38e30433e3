//! Text rendering of tun ring reports and xmit events.
use crate::output::Table;
use crate::run::IntervalInfo;
use crate::sets::tun::{QueueReport, TunEvent, TunReport};
use std::fmt::Write as _;

fn reasons(q: &QueueReport) -> String {
    if q.drop_reasons.is_empty() {
        return "-".into();
    }
    let parts: Vec<String> = q
        .drop_reasons
        .iter()
        .map(|r| format!("{} {}", r.reason, r.count))
        .collect();
    parts.join(", ")
}

/// Text of one interval: a row per queue.
pub fn report_text(tool: &str, info: &IntervalInfo, r: &TunReport) -> String {
    let mut out = crate::output::interval_header(tool, info.elapsed, info.now);
    let _ = writeln!(
        out,
        "device {}: {} active queue(s)",
        r.ifname,
        r.queues.len()
    );
    let mut t = Table::new(&[
        "QUEUE",
        "SIZE (slots)",
        "XMIT (pkts)",
        "FULL (pkts)",
        "READ (pkts)",
        "MAX FILL (pkts)",
        "MAX FILL %",
        "MEAN FILL (pkts)",
        "MAX UNAVAIL (slots)",
        "DROPS (pkts)",
        "DROP REASONS",
    ]);
    for q in &r.queues {
        t.row(vec![
            q.queue.to_string(),
            q.size.to_string(),
            q.xmit.to_string(),
            q.full.to_string(),
            q.read.to_string(),
            q.max_pending.to_string(),
            format!("{:.1}", q.max_fill_pct),
            format!("{:.1}", q.mean_pending),
            q.max_unavailable.to_string(),
            q.drops.to_string(),
            reasons(q),
        ]);
    }
    if t.is_empty() {
        let _ = writeln!(out, "(no packets to or from the device's rings)");
    } else {
        out.push_str(&t.render());
    }
    for q in r.queues.iter().filter(|q| q.unknown_ring > 0) {
        let _ = writeln!(
            out,
            "queue {}: ring not readable at {} xmit(s): {}",
            q.queue, q.unknown_ring, q.ring_status
        );
    }
    let _ = writeln!(out, "{}", r.stats.line());
    out
}

/// Text of one xmit: one line, and with `verbose` the process and the raw indices.
pub fn event_text(e: &TunEvent, verbose: bool) -> String {
    let ring = &e.ring;
    let state = if ring.full { "FULL" } else { "ok" };
    let mut line = format!(
        "{} {} q{} {state:<4} fill {}/{} ({:.1}%) unavail {}  prod {} head {} tail {}  {}  {} B",
        crate::output::local_time(e.time),
        e.ifname,
        e.queue,
        ring.pending,
        ring.size,
        e.utilisation_pct,
        ring.unavailable,
        ring.producer,
        ring.consumer_head,
        ring.consumer_tail,
        e.flow.describe(),
        e.len,
    );
    if e.ring_status != "ok" {
        let _ = write!(line, "  ring {}", e.ring_status);
    }
    if verbose {
        let _ = write!(
            line,
            "  batch {} queues {}  cpu {} pid {} ({})",
            ring.batch, ring.numqueues, e.cpu, e.pid, e.comm
        );
    }
    line.push('\n');
    line
}
