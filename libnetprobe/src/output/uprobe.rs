//! Text rendering of uprobe_trace intervals: a row per function, then its duration histogram
//! (`--latency`) or its calling stacks (`--stacks`).
use crate::hist::human_ns;
use crate::output::Table;
use crate::run::IntervalInfo;
use crate::sets::uprobe::UprobeReport;
use std::fmt::Write as _;

/// Text of one interval.
pub fn report_text(tool: &str, info: &IntervalInfo, r: &UprobeReport) -> String {
    let mut out = crate::output::interval_header(tool, info.elapsed, info.now);
    let secs = info.elapsed.as_secs_f64().max(1e-9);
    let timed = r.functions.iter().any(|f| f.latency.is_some());
    let mut head = vec!["FUNCTION", "BINARY", "CALLS", "RATE (calls/s)"];
    if timed {
        head.extend(["AVG", "P50", "P99", "MAX"]);
    }
    let mut t = Table::new(&head);
    for f in &r.functions {
        let mut row = vec![
            f.function.clone(),
            f.binary.clone(),
            f.count.to_string(),
            format!("{:.1}", f.count as f64 / secs),
        ];
        if let Some(l) = &f.latency {
            row.extend([l.avg, l.p50, l.p99, l.max].map(human_ns));
        }
        t.row(row);
    }
    out.push_str(&t.render());
    for f in &r.functions {
        if let Some(l) = f.latency.as_ref().filter(|l| l.count > 0) {
            let _ = writeln!(out, "\n{} (call duration):", f.function);
            out.push_str(&l.hist().render_ns(l.avg));
        }
        for s in &f.stacks {
            let time = s
                .total_ns
                .map(|ns| format!(", {} in total", human_ns(ns)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "\n{} called {} times{time} by pid {} from:",
                f.function, s.count, s.pid
            );
            for fr in &s.frames {
                let _ = writeln!(out, "    {fr}");
            }
        }
    }
    let _ = writeln!(out, "{}", r.stats.line());
    out
}
