//! Text rendering of the syscall set: bcc-style syscount tables and futex wait histograms.
use crate::hist::human_ns;
use crate::output::Table;
use crate::run::IntervalInfo;
use crate::sets::syscall::{FutexReport, SyscountReport};
use std::fmt::Write as _;

/// How syscount prints.
#[derive(Debug, Clone, Copy)]
pub struct SyscountStyle {
    /// Rows shown (bcc's `-T`, 0: all).
    pub top: usize,
    /// Times in ms instead of µs (bcc's `-m`).
    pub milliseconds: bool,
}

/// syscount's interval.
pub fn syscount_text(
    tool: &str,
    info: &IntervalInfo,
    r: &SyscountReport,
    style: SyscountStyle,
) -> String {
    let mut out = crate::output::interval_header(tool, info.elapsed, info.now);
    let per_process = r.syscalls.iter().any(|s| s.pid.is_some());
    let per_cgroup = r.syscalls.iter().any(|s| s.cgroup.is_some());
    let unit = if style.milliseconds { "ms" } else { "us" };
    let (time_h, avg_h, max_h) = (
        format!("TIME ({unit})"),
        format!("AVG ({unit})"),
        format!("MAX ({unit})"),
    );
    let mut head: Vec<&str> = Vec::new();
    if per_process {
        head.extend(["PID", "COMM"]);
    }
    if per_cgroup {
        head.push("CGROUP");
    }
    head.extend(["SYSCALL", "COUNT", "ERRORS"]);
    if r.timed {
        head.extend([time_h.as_str(), avg_h.as_str(), max_h.as_str()]);
    }
    let mut t = Table::new(&head);
    let scale = |ns: u64| {
        if style.milliseconds {
            format!("{:.3}", ns as f64 / 1e6)
        } else {
            format!("{:.1}", ns as f64 / 1e3)
        }
    };
    let shown = if style.top == 0 {
        r.syscalls.len()
    } else {
        style.top
    };
    for s in r.syscalls.iter().take(shown) {
        let mut row = Vec::new();
        if per_process {
            row.push(s.pid.map(|p| p.to_string()).unwrap_or_default());
            row.push(s.comm.clone());
        }
        if per_cgroup {
            row.push(s.cgroup.clone().unwrap_or_default());
        }
        row.extend([s.syscall.clone(), s.count.to_string(), s.errors.to_string()]);
        if r.timed {
            row.push(scale(s.total_ns));
            row.push(scale(s.total_ns.checked_div(s.count).unwrap_or(0)));
            row.push(scale(s.max_ns));
        }
        t.row(row);
    }
    if t.is_empty() {
        let _ = writeln!(out, "(no syscalls counted)");
    } else {
        out.push_str(&t.render());
    }
    let hidden = r.syscalls.len().saturating_sub(shown);
    let _ = writeln!(
        out,
        "{} calls{}; {}",
        r.total,
        if hidden > 0 {
            format!(" ({hidden} more rows: -T 0 shows all)")
        } else {
            String::new()
        },
        r.stats.line()
    );
    out
}

/// futex_wait's interval: per (process, futex word, stack) the waits and their histogram.
pub fn futex_text(tool: &str, info: &IntervalInfo, r: &FutexReport) -> String {
    let mut out = crate::output::interval_header(tool, info.elapsed, info.now);
    for w in &r.waits {
        let _ = writeln!(
            out,
            "\npid {} ({}) futex {}: {} waits, {} in total, max {}, {} timed out",
            w.pid,
            w.comm,
            w.uaddr,
            w.count,
            human_ns(w.total_us * 1000),
            human_ns(w.max_us * 1000),
            w.timeouts
        );
        for f in &w.stack {
            let _ = writeln!(out, "    {f}");
        }
        out.push_str(&w.wait.hist().render("usecs"));
    }
    if r.waits.is_empty() {
        let _ = writeln!(out, "(no futex waits)");
    }
    let _ = writeln!(
        out,
        "\n{} futex words, {} waited; {}",
        r.waits.len(),
        human_ns(r.total_us * 1000),
        r.stats.line()
    );
    out
}
