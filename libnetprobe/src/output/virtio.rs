//! Text rendering of virtio-net poll, IRQ and poll-stack reports.
use crate::hist::human_ns;
use crate::output::Table;
use crate::run::IntervalInfo;
use crate::sets::virtio::{Caller, VirtioReport};
use std::fmt::Write as _;

fn dash<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

fn device_line(out: &mut String, r: &VirtioReport) {
    let _ = writeln!(out, "device {} ({})", r.ifname, r.virtio);
}

/// Text of one interval of polls: a row per queue and kind, then (`verbose`) the receive
/// queues' own counters.
pub fn polls_text(tool: &str, info: &IntervalInfo, r: &VirtioReport, verbose: bool) -> String {
    let mut out = crate::output::interval_header(tool, info.elapsed, info.now);
    device_line(&mut out, r);
    let mut head = vec![
        "QUEUE",
        "KIND",
        "POLLS",
        "WORK (pkts)",
        "WORK/POLL (pkts)",
        "BUDGET USED (%)",
        "ZERO-WORK (polls)",
        "FULL-BUDGET (polls)",
    ];
    let callers: Vec<String> = Caller::ALL
        .iter()
        .map(|c| format!("BY {} (polls)", c.as_str().to_uppercase()))
        .collect();
    head.extend(callers.iter().map(String::as_str));
    let mut t = Table::new(&head);
    let queues = r.queues.as_deref().unwrap_or_default();
    for q in queues {
        let mut row = vec![
            dash(q.queue),
            q.kind.as_str().to_string(),
            q.polls.to_string(),
            q.work.to_string(),
            format!("{:.1}", q.work_per_poll),
            format!("{:.1}", q.efficiency_pct),
            q.zero_work.to_string(),
            q.full_budget.to_string(),
        ];
        row.extend(Caller::ALL.iter().map(|c| q.by(*c).to_string()));
        t.row(row);
    }
    if t.is_empty() {
        let _ = writeln!(out, "(no NAPI polls of the device)");
    } else {
        out.push_str(&t.render());
    }
    let mut rq = Table::new(&[
        "RX QUEUE",
        "VQ",
        "PACKETS (pkts, total)",
        "+PACKETS (pkts)",
        "DROPS (pkts, total)",
        "KICKS (total)",
        "+CALLS (callbacks)",
        "DIM",
    ]);
    for q in queues {
        if let (Some(queue), Some(c)) = (q.queue, q.rq) {
            rq.row(vec![
                queue.to_string(),
                c.vq_index.to_string(),
                c.packets.to_string(),
                dash(c.packets_delta),
                c.drops.to_string(),
                c.kicks.to_string(),
                dash(c.calls_delta),
                if c.dim_enabled { "on" } else { "off" }.into(),
            ]);
        }
    }
    if verbose && !rq.is_empty() {
        out.push_str(&rq.render());
    }
    let _ = writeln!(out, "{}", r.stats.line());
    out
}

/// Text of one interval of IRQs: a row per vector, then each active vector's histograms.
pub fn irqs_text(tool: &str, info: &IntervalInfo, r: &VirtioReport, hists: bool) -> String {
    let mut out = crate::output::interval_header(tool, info.elapsed, info.now);
    device_line(&mut out, r);
    let mut t = Table::new(&[
        "IRQ",
        "NAME",
        "ROLE",
        "QUEUE",
        "COUNT (irqs)",
        "HANDLED (irqs)",
        "IRQ_NONE (irqs)",
        "CPUS (cpu:irqs)",
        "HANDLER AVG",
        "HANDLER P99",
        "GAP P50",
        "GAP P99",
    ]);
    let irqs = r.irqs.as_deref().unwrap_or_default();
    for i in irqs {
        let cpus: Vec<String> = i.cpus.iter().map(|(c, n)| format!("{c}:{n}")).collect();
        let quiet = i.count == 0;
        let ns = |v: u64| if quiet { "-".into() } else { human_ns(v) };
        t.row(vec![
            i.irq.to_string(),
            i.name.clone(),
            serde_json::to_value(i.role)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            dash(i.queue),
            i.count.to_string(),
            i.handled.to_string(),
            i.none.to_string(),
            if cpus.is_empty() {
                "-".into()
            } else {
                cpus.join(" ")
            },
            ns(i.handler.avg),
            ns(i.handler.p99),
            if i.inter_arrival.count == 0 {
                "-".into()
            } else {
                human_ns(i.inter_arrival.p50)
            },
            if i.inter_arrival.count == 0 {
                "-".into()
            } else {
                human_ns(i.inter_arrival.p99)
            },
        ]);
    }
    out.push_str(&t.render());
    if hists {
        for i in irqs.iter().filter(|i| i.count > 0) {
            let _ = writeln!(out, "\nIRQ {} {}: handler time", i.irq, i.name);
            out.push_str(&i.handler.hist().render_ns(i.handler.avg));
            if i.inter_arrival.count > 0 {
                let _ = writeln!(out, "IRQ {} {}: time since the previous IRQ", i.irq, i.name);
                out.push_str(&i.inter_arrival.hist().render_ns(i.inter_arrival.avg));
            }
        }
    }
    let _ = writeln!(out, "{}", r.stats.line());
    out
}

/// Text of one interval of poll stacks: most polls first, `top` stacks at most.
pub fn stacks_text(tool: &str, info: &IntervalInfo, r: &VirtioReport, top: usize) -> String {
    let mut out = crate::output::interval_header(tool, info.elapsed, info.now);
    device_line(&mut out, r);
    let stacks = r.stacks.as_deref().unwrap_or_default();
    if stacks.is_empty() {
        let _ = writeln!(out, "(no NAPI polls of the device)");
    }
    for s in stacks.iter().take(top) {
        let _ = writeln!(
            out,
            "{} polls  queue {} {}  polled by {}",
            s.count,
            dash(s.queue),
            s.kind.as_str(),
            s.caller.as_str()
        );
        if s.frames.is_empty() {
            let _ = writeln!(out, "    (stack walk failed)");
        }
        for f in &s.frames {
            let _ = writeln!(out, "    {f}");
        }
    }
    if stacks.len() > top {
        let rest: u64 = stacks[top..].iter().map(|s| s.count).sum();
        let _ = writeln!(
            out,
            "... {} more stacks ({rest} polls); raise --top",
            stacks.len() - top
        );
    }
    let _ = writeln!(out, "{}", r.stats.line());
    out
}
