//! Text rendering of drop summaries and drop events (JSON comes from serde on the domain
//! types, inside the envelopes of [`crate::output`]).
use crate::run::IntervalInfo;
use crate::sets::drop::{DropEvent, DropSummary};
use std::fmt::Write as _;

/// What the text summary shows.
#[derive(Debug, Clone, Copy)]
pub struct SummaryStyle {
    /// Entries to show.
    pub top: usize,
    /// Show the flow column.
    pub flow: bool,
    /// Stack frames to show under each entry (0 = none).
    pub frames: usize,
}

/// Text of one summary interval.
pub fn summary_text(
    tool: &str,
    info: &IntervalInfo,
    header_note: &str,
    s: &DropSummary,
    style: SummaryStyle,
) -> String {
    let mut out = crate::output::interval_header(tool, info.elapsed, info.now);
    let _ = writeln!(out, "{header_note}");
    let shown = s.entries.len().min(style.top);
    let _ = writeln!(
        out,
        "total drops: {} (pkts) in {} entries, top {shown} shown",
        s.total,
        s.entries.len()
    );
    for (i, e) in s.entries.iter().take(style.top).enumerate() {
        let mut line = format!(
            "#{:<2} {:>8} pkts  reason {}  at {}  dev {}",
            i + 1,
            e.count,
            e.reason,
            e.location,
            e.ifname
        );
        if style.flow {
            let _ = write!(line, "  {}", e.flow.describe());
        }
        let _ = writeln!(out, "{line}");
        if style.frames > 0 {
            for f in e.stack.iter().take(style.frames) {
                let _ = writeln!(out, "        {f}");
            }
            if e.stacks.len() > 1 {
                let _ = writeln!(
                    out,
                    "        (+{} other sampled stacks)",
                    e.stacks.len() - 1
                );
            }
        }
    }
    let _ = writeln!(out, "{}", lost_line(s));
    out
}

/// The "nothing silent" line.
pub fn lost_line(s: &DropSummary) -> String {
    s.stats.line()
}

/// dropwatch-style text: counts per location (or per stack with `by_stack`).
pub fn locations_text(
    tool: &str,
    info: &IntervalInfo,
    header_note: &str,
    s: &DropSummary,
    by_stack: bool,
) -> String {
    let mut out = crate::output::interval_header(tool, info.elapsed, info.now);
    let _ = writeln!(out, "{header_note}");
    if s.entries.is_empty() {
        let _ = writeln!(out, "no drops");
    } else if by_stack {
        for e in &s.entries {
            let _ = writeln!(out, "{} packets dropped ({}) at stack:", e.count, e.reason);
            for f in &e.stack {
                let _ = writeln!(out, "    {f}");
            }
        }
    } else {
        let mut t = crate::output::Table::new(&["COUNT (pkts)", "REASON", "LOCATION"]);
        for e in &s.entries {
            t.row(vec![
                e.count.to_string(),
                e.reason.clone(),
                e.location.clone(),
            ]);
        }
        out.push_str(&t.render());
    }
    let _ = writeln!(out, "total: {} pkts; {}", s.total, lost_line(s));
    out
}

/// Text block of one dropped packet.
pub fn event_text(e: &DropEvent, verbose: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "[{}] DROP reason={} at {}  dev={} (ifindex {}, netns {})  cpu={} pid={} comm={}",
        crate::output::local_time(e.time),
        e.reason,
        e.location,
        e.ifname,
        e.ifindex,
        e.netns,
        e.cpu,
        e.pid,
        e.comm
    );
    let mut l2 = String::from("  ");
    if let (Some(s), Some(d)) = (&e.src_mac, &e.dst_mac) {
        let _ = write!(l2, "eth {s} -> {d}  ");
    }
    if let Some(v) = e.vlan_id {
        let _ = write!(l2, "vlan {v}  ");
    }
    let _ = write!(l2, "{}  len {} bytes", e.flow.describe(), e.len);
    if let Some(llc) = e.llc {
        let stp = if llc.dsap == 0x42 { " (STP BPDU)" } else { "" };
        let _ = write!(
            l2,
            "  llc dsap 0x{:02x} ssap 0x{:02x} ctrl 0x{:02x}{stp}",
            llc.dsap, llc.ssap, llc.ctrl
        );
    }
    let _ = writeln!(out, "{l2}");
    if verbose {
        let mut l3 = String::from("  ");
        if let Some(id) = e.ip_id {
            let _ = write!(l3, "ip id 0x{id:04x}  ");
        }
        if let Some(t) = e.ttl {
            let _ = write!(l3, "ttl {t}  ");
        }
        if let Some(f) = &e.tcp_flags {
            let _ = write!(l3, "tcp flags [{f}]  ");
        }
        if let Some(i) = e.icmp {
            let _ = write!(
                l3,
                "icmp type {} code {} id {} seq {}  ",
                i.kind, i.code, i.id, i.seq
            );
        }
        if let Some(op) = e.arp_op {
            let _ = write!(l3, "arp op {op}  ");
        }
        let _ = write!(l3, "pkt_type {}  mono {} ns", e.pkt_type, e.timestamp_ns);
        let _ = writeln!(out, "{l3}");
    }
    if !e.stack.is_empty() {
        let _ = writeln!(out, "  stack:");
        for f in &e.stack {
            let _ = writeln!(out, "    {f}");
        }
    }
    out
}
