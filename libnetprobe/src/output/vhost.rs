//! Text rendering of vhost virtqueue summaries.
use crate::output::Table;
use crate::run::IntervalInfo;
use crate::sets::irq_chain::ChainReport;
use crate::sets::tap_vhost::TapVhostReport;
use crate::sets::vhost::{Role, VhostReport};
use std::fmt::Write as _;

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), |n| n.to_string())
}

fn role(r: Role) -> &'static str {
    match r {
        Role::Rx => "rx",
        Role::Tx => "tx",
        Role::Unknown => "?",
    }
}

/// Text of one interval: a row per virtqueue with its tap queue, counts and notifications.
pub fn report_text(tool: &str, info: &IntervalInfo, r: &VhostReport) -> String {
    let mut out = crate::output::interval_header(tool, info.elapsed, info.now);
    let mut t = Table::new(&[
        "VMM PID",
        "WORKER",
        "TAP",
        "QUEUE",
        "VQ",
        "EVENTFD",
        "CALLS",
        "USED (bufs)",
        "SIGNALS (irqs)",
        "RUNS",
        "TAP READS (pkts)",
        "TAP WRITES (calls)",
    ]);
    for q in &r.queues {
        t.row(vec![
            q.vmm_pid.to_string(),
            format!("{} ({})", q.worker_comm, q.worker_tid),
            q.device.clone().unwrap_or_else(|| "-".into()),
            q.queue.map_or_else(|| "-".into(), |n| n.to_string()),
            format!("{} {}", role(q.role), q.vq),
            q.eventfd.clone(),
            q.signal_calls.to_string(),
            q.used.to_string(),
            q.signals.to_string(),
            opt(q.handle_runs),
            opt(q.tap_reads),
            opt(q.tap_writes),
        ]);
    }
    if t.is_empty() {
        let _ = writeln!(out, "(no virtqueue completed a buffer)");
    } else {
        out.push_str(&t.render());
    }
    let _ = writeln!(
        out,
        "total {} buffers used, {} guest notifications; {}",
        r.total_used,
        r.total_signals,
        r.stats.line()
    );
    out
}

/// Text of one interval: each virtqueue's state at its last call (indices in entries).
pub fn state_text(tool: &str, info: &IntervalInfo, r: &VhostReport) -> String {
    let mut out = crate::output::interval_header(tool, info.elapsed, info.now);
    let mut t = Table::new(&[
        "VMM PID",
        "TAP",
        "QUEUE",
        "VQ",
        "RING (entries)",
        "AVAIL",
        "LAST AVAIL",
        "LAST USED",
        "PENDING (entries)",
        "MAX PENDING (entries)",
        "EMPTY CALLS",
        "EVENT_IDX",
        "GUEST FLAGS",
        "USED EVENT",
        "NO_INTERRUPT CALLS",
    ]);
    let dash16 = |v: Option<u16>| v.map_or_else(|| "-".into(), |n| n.to_string());
    for q in &r.queues {
        let s = &q.last;
        t.row(vec![
            q.vmm_pid.to_string(),
            q.device.clone().unwrap_or_else(|| "-".into()),
            q.queue.map_or_else(|| "-".into(), |n| n.to_string()),
            format!("{} {}", role(q.role), q.vq),
            s.num.to_string(),
            s.avail_idx.to_string(),
            s.last_avail_idx.to_string(),
            s.last_used_idx.to_string(),
            s.pending.to_string(),
            q.max_pending.to_string(),
            q.empty_calls.to_string(),
            if s.event_idx { "yes" } else { "no" }.into(),
            s.avail_flags
                .map_or_else(|| "-".into(), |f| format!("{f:#x}")),
            dash16(s.used_event),
            q.no_interrupt_calls.to_string(),
        ]);
    }
    if t.is_empty() {
        let _ = writeln!(out, "(no virtqueue completed a buffer)");
    } else {
        out.push_str(&t.render());
    }
    let _ = writeln!(out, "{}", r.stats.line());
    out
}

/// Text of one interval of a tap and its virtqueues: a row per tap queue, the ring toward the
/// VM next to the RX virtqueue that empties it and the TX one that writes to it.
pub fn tap_vhost_text(tool: &str, info: &IntervalInfo, r: &TapVhostReport) -> String {
    let mut out = crate::output::interval_header(tool, info.elapsed, info.now);
    let _ = writeln!(
        out,
        "device {}: {} active queue(s)",
        r.ifname,
        r.queues.len()
    );
    let mut t = Table::new(&[
        "QUEUE",
        "XMIT (pkts)",
        "FULL (pkts)",
        "MAX FILL (pkts)",
        "DROPS (pkts)",
        "RX USED (bufs)",
        "RX CALLS",
        "RX SIGNALS (irqs)",
        "AVAIL PENDING (entries)",
        "EMPTY CALLS",
        "NO_INTERRUPT CALLS",
        "TX USED (bufs)",
        "TX SIGNALS (irqs)",
    ]);
    let dash = || "-".to_string();
    for q in &r.queues {
        let ring = q.ring.as_ref();
        let rx = q.rx.as_ref();
        let tx = q.tx.as_ref();
        t.row(vec![
            q.queue.to_string(),
            ring.map_or_else(dash, |g| g.xmit.to_string()),
            ring.map_or_else(dash, |g| g.full.to_string()),
            ring.map_or_else(dash, |g| g.max_pending.to_string()),
            ring.map_or_else(dash, |g| g.drops.to_string()),
            rx.map_or_else(dash, |v| v.used.to_string()),
            rx.map_or_else(dash, |v| v.signal_calls.to_string()),
            rx.map_or_else(dash, |v| v.signals.to_string()),
            rx.map_or_else(dash, |v| v.last.pending.to_string()),
            rx.map_or_else(dash, |v| v.empty_calls.to_string()),
            rx.map_or_else(dash, |v| v.no_interrupt_calls.to_string()),
            tx.map_or_else(dash, |v| v.used.to_string()),
            tx.map_or_else(dash, |v| v.signals.to_string()),
        ]);
    }
    if t.is_empty() {
        let _ = writeln!(out, "(no packets on the tap's queues)");
    } else {
        out.push_str(&t.render());
    }
    let _ = writeln!(out, "{}", r.stats.line());
    out
}

/// Text of one interval of a tap's chains toward the VM: a row per queue, each link's count.
pub fn chain_text(tool: &str, info: &IntervalInfo, r: &ChainReport) -> String {
    let mut out = crate::output::interval_header(tool, info.elapsed, info.now);
    let _ = writeln!(
        out,
        "device {}: {} active queue(s)",
        r.ifname,
        r.queues.len()
    );
    let mut t = Table::new(&[
        "QUEUE",
        "XMIT (pkts)",
        "DROPS (pkts)",
        "USED (bufs)",
        "CALLS",
        "SIGNALS (irqs)",
        "IRQFD (irqs)",
        "GSI",
        "VECTOR",
        "VM PID",
        "ACCEPTED (irqs)",
    ]);
    let dash = || "-".to_string();
    for q in &r.queues {
        t.row(vec![
            q.queue.to_string(),
            q.xmit.to_string(),
            q.drops.to_string(),
            q.used.to_string(),
            q.signal_calls.to_string(),
            q.signals.to_string(),
            q.irqfd_wakeups.map_or_else(dash, |n| n.to_string()),
            q.gsi.map_or_else(dash, |n| n.to_string()),
            q.vector.map_or_else(dash, |v| format!("0x{v:02x}")),
            q.vm_pid.map_or_else(dash, |n| n.to_string()),
            q.accepted.map_or_else(dash, |n| n.to_string()),
        ]);
    }
    if t.is_empty() {
        let _ = writeln!(out, "(no packets on the tap's queues)");
    } else {
        out.push_str(&t.render());
    }
    let _ = writeln!(
        out,
        "ACCEPTED counts the VM's acceptances of the vector from every source; {}",
        r.stats.line()
    );
    out
}

/// Text of one interval of `vhost_net_buf_peek` returns: a row per RX virtqueue.
pub fn peek_text(tool: &str, info: &IntervalInfo, r: &VhostReport) -> String {
    let mut out = crate::output::interval_header(tool, info.elapsed, info.now);
    let mut t = Table::new(&[
        "VMM PID",
        "WORKER",
        "TAP",
        "QUEUE",
        "VQ",
        "PEEKS",
        "EMPTY (ret 0)",
        "MEAN LEN (bytes)",
        "USED (bufs)",
    ]);
    for q in r.queues.iter().filter(|q| q.role == Role::Rx) {
        let Some(p) = &q.buf_peeks else {
            continue;
        };
        t.row(vec![
            q.vmm_pid.to_string(),
            format!("{} ({})", q.worker_comm, q.worker_tid),
            q.device.clone().unwrap_or_else(|| "-".into()),
            q.queue.map_or_else(|| "-".into(), |n| n.to_string()),
            q.vq.clone(),
            p.peeks.to_string(),
            p.empty.to_string(),
            format!("{:.1}", p.mean_len_bytes),
            q.used.to_string(),
        ]);
    }
    if t.is_empty() {
        let _ = writeln!(out, "(no RX virtqueue peeked at a packet)");
    } else {
        out.push_str(&t.render());
    }
    let _ = writeln!(out, "{}", r.stats.line());
    out
}

/// One line of a virtqueue's state: indices, pending entries, EVENT_IDX and the guest's side.
fn vq_state_line(s: &crate::sets::vhost::VqState) -> String {
    let guest = match (s.avail_flags, s.used_event) {
        (Some(f), Some(u)) => format!(
            "guest avail_flags {f:#x}{} used_event {u}",
            if f & 1 != 0 { " (NO_INTERRUPT)" } else { "" }
        ),
        _ => "guest side not readable".into(),
    };
    format!(
        "num {} avail_idx {} last_avail_idx {} (pending {}) last_used_idx {} signalled_used {} event_idx {} {guest}",
        s.num,
        s.avail_idx,
        s.last_avail_idx,
        s.pending,
        s.last_used_idx,
        s.signalled_used.map_or_else(|| "-".into(), |v| v.to_string()),
        if s.event_idx { "on" } else { "off" },
    )
}

/// The head of an event: time, kind, queue, virtqueue, worker.
fn event_head(e: &crate::sets::vhost::events::VhostEvent) -> String {
    let mut out = format!(
        "{:.6} {:<11} {}:{} {}",
        e.ts_ns as f64 / 1e9,
        e.kind.name(),
        e.device,
        e.queue,
        e.role.map_or("", role),
    );
    if let Some(vq) = &e.vq {
        let _ = write!(out, " vq {vq}");
    }
    if let Some(c) = e.count {
        let _ = write!(out, " used {c}");
    }
    let _ = write!(
        out,
        " {} (tid {}, VM {}) cpu {}",
        e.comm, e.tid, e.vmm_pid, e.cpu
    );
    out
}

/// Text of one event: its head line and, where it has one, the virtqueue's state beneath.
pub fn event_text(e: &crate::sets::vhost::events::VhostEvent) -> String {
    let mut out = event_head(e);
    out.push('\n');
    if let Some(s) = &e.state {
        let _ = writeln!(out, "    {}", vq_state_line(s));
    }
    out
}

/// One line per event, the state folded to what decides a notification.
pub fn event_line(e: &crate::sets::vhost::events::VhostEvent) -> String {
    let mut out = event_head(e);
    if let Some(s) = &e.state {
        let _ = write!(
            out,
            " pending {} used {}->{}",
            s.pending,
            s.last_used_idx,
            s.signalled_used
                .map_or_else(|| "-".into(), |v| v.to_string())
        );
        if s.avail_flags.is_some_and(|f| f & 1 != 0) {
            out.push_str(" NO_INTERRUPT");
        }
    }
    out.push('\n');
    out
}

/// Text of one interval of a tap's queues with the depth histograms: per queue, the ring's
/// fill at xmit, the ring's depth at the vhost worker's reads, and the RX virtqueue's avail
/// entries pending and in flight at each used+signal.
pub fn queue_stats_text(tool: &str, info: &IntervalInfo, r: &TapVhostReport) -> String {
    let mut out = tap_vhost_text(tool, info, r);
    let tail = out.rfind(&r.stats.line()).unwrap_or(out.len());
    let stats = out.split_off(tail);
    for q in &r.queues {
        let hists = q.rx.as_ref().and_then(|v| v.hists.as_ref());
        let parts = [
            (
                "tap ring fill at xmit (sampled)",
                q.ring.as_ref().and_then(|g| g.pending_hist.as_ref()),
            ),
            (
                "tap ring depth at vhost's reads",
                hists.and_then(|h| h.ring_depth_at_read.as_ref()),
            ),
            (
                "RX avail entries pending at used+signal",
                hists.and_then(|h| h.avail_pending.as_ref()),
            ),
            (
                "RX entries in flight at used+signal",
                hists.and_then(|h| h.in_flight.as_ref()),
            ),
        ];
        for (title, h) in parts {
            let Some(h) = h else { continue };
            let _ = writeln!(
                out,
                "queue {} {title} (n={}): p50 {}  p90 {}  p99 {}  max {} {}",
                q.queue, h.count, h.p50, h.p90, h.p99, h.max, h.unit
            );
            out.push_str(&h.hist().render(h.unit));
        }
    }
    out.push_str(&stats);
    out
}
