//! Text rendering of the sched set: run-queue latency histograms (runqlat_monitor) and the
//! per-thread delay table (thread_delay).
use crate::hist::human_ns;
use crate::output::Table;
use crate::run::IntervalInfo;
use crate::sets::sched::SchedReport;
use std::fmt::Write as _;

/// runqlat_monitor's interval: one histogram of every followed thread's waits, or one per
/// process with `per_process`.
pub fn runqlat_text(tool: &str, info: &IntervalInfo, r: &SchedReport, per_process: bool) -> String {
    let mut out = crate::output::interval_header(tool, info.elapsed, info.now);
    if per_process {
        for p in &r.processes {
            let _ = writeln!(out, "\nrun-queue latency of pid {} ({}):", p.pid, p.comm);
            out.push_str(&p.runq.hist().render_ns(p.runq.avg));
        }
        if r.processes.is_empty() {
            let _ = writeln!(out, "(no run-queue waits)");
        }
    } else {
        let _ = writeln!(out, "run-queue latency (wakeup or preemption → on CPU):");
        out.push_str(&r.runq.hist().render_ns(r.runq.avg));
    }
    let _ = writeln!(out, "{}", r.stats.line());
    out
}

/// thread_delay's interval: where each thread's time went.
pub fn delay_text(tool: &str, info: &IntervalInfo, r: &SchedReport) -> String {
    let mut out = crate::output::interval_header(tool, info.elapsed, info.now);
    let mut t = Table::new(&[
        "PID",
        "TID",
        "COMM",
        "ON-CPU (us)",
        "RUNQ (us)",
        "SLEEP (us)",
        "BLOCKED (us)",
        "HARDIRQ (us)",
        "SOFTIRQ (us)",
        "WAITS",
        "P99 WAIT",
        "MAX WAIT",
    ]);
    for th in &r.threads {
        t.row(vec![
            th.pid.to_string(),
            th.tid.to_string(),
            th.comm.clone(),
            th.on_cpu_us.to_string(),
            th.runq_us.to_string(),
            th.sleep_us.to_string(),
            th.blocked_us.to_string(),
            th.hardirq_us.to_string(),
            th.softirq_us.to_string(),
            th.runq_waits.to_string(),
            human_ns(th.runq.p99),
            human_ns(th.runq_max_us * 1000),
        ]);
    }
    if t.is_empty() {
        let _ = writeln!(out, "(no thread of the process ran or waited)");
    } else {
        out.push_str(&t.render());
    }
    let _ = writeln!(
        out,
        "ON-CPU includes HARDIRQ and SOFTIRQ (interrupt work done on the thread's time); MAX WAIT over the whole run; {}",
        r.stats.line()
    );
    out
}
