//! Text rendering of KVM injection summaries.
use crate::output::Table;
use crate::run::IntervalInfo;
use crate::sets::kvm::KvmReport;
use std::fmt::Write as _;

/// Text of one interval: a row per VM, thread, GSI, vector and path.
pub fn report_text(tool: &str, info: &IntervalInfo, r: &KvmReport) -> String {
    let mut out = crate::output::interval_header(tool, info.elapsed, info.now);
    let mut t = Table::new(&[
        "VM PID",
        "VM COMM",
        "SOURCE",
        "CATEGORY",
        "GSI",
        "VECTOR",
        "PATH",
        "COUNT (irqs)",
        "RATE (irqs/s)",
    ]);
    let dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    for e in &r.entries {
        t.row(vec![
            e.pid.to_string(),
            e.comm.clone(),
            format!("{} ({})", e.source_comm, e.source_tid),
            format!("{:?}", e.category).to_lowercase(),
            dash(e.gsi.map(|g| g.to_string())),
            dash(e.vector.map(|v| format!("0x{v:02x}"))),
            serde_json::to_value(e.path)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            e.count.to_string(),
            format!("{:.1}", e.rate_per_s),
        ]);
    }
    if t.is_empty() {
        let _ = writeln!(out, "(no interrupts injected)");
    } else {
        out.push_str(&t.render());
    }
    let _ = writeln!(
        out,
        "total {} injections (irqs); {}",
        r.total,
        r.stats.line()
    );
    delivery_text(&mut out, r);
    out
}

/// The vectors delivered to the vCPUs and the vCPU wakeups, or why they are not known.
fn delivery_text(out: &mut String, r: &KvmReport) {
    if !r.delivery_observed {
        let _ = writeln!(
            out,
            "delivery to vCPUs: not observed (needs the kvm_apic_accept_irq, kvm_inj_virq or kvm_vcpu_wakeup tracepoint)"
        );
        return;
    }
    let mut t = Table::new(&[
        "VM PID",
        "VM COMM",
        "VECTOR",
        "ACCEPTED (irqs)",
        "INJECTED (irqs)",
        "REINJECTED (irqs)",
    ]);
    for d in &r.deliveries {
        t.row(vec![
            d.pid.to_string(),
            d.comm.clone(),
            format!("0x{:02x}", d.vector),
            d.accepted.to_string(),
            d.injected.to_string(),
            d.reinjected.to_string(),
        ]);
    }
    if t.is_empty() {
        let _ = writeln!(out, "delivery to vCPUs: (none)");
    } else {
        let _ = writeln!(out, "delivery to vCPUs:");
        out.push_str(&t.render());
    }
    let mut t = Table::new(&[
        "VM PID",
        "VM COMM",
        "WAKEUPS",
        "AFTER SLEEP",
        "MEAN HALTED (us)",
        "MAX HALTED (us)",
    ]);
    for w in &r.wakeups {
        t.row(vec![
            w.pid.to_string(),
            w.comm.clone(),
            w.wakeups.to_string(),
            w.waited.to_string(),
            format!("{:.1}", w.mean_wait_us),
            format!("{:.1}", w.max_wait_us),
        ]);
    }
    if !t.is_empty() {
        let _ = writeln!(out, "halted vCPUs woken:");
        out.push_str(&t.render());
    }
}
