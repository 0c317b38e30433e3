//! Text rendering of OVS upcall summaries.
use crate::hist::human_ns;
use crate::output::Table;
use crate::run::IntervalInfo;
use crate::sets::ovs::OvsReport;
use std::fmt::Write as _;

/// Text of one interval: the counts, the miss → install latency and the flows that upcalled.
pub fn report_text(tool: &str, info: &IntervalInfo, r: &OvsReport) -> String {
    let mut out = crate::output::interval_header(tool, info.elapsed, info.now);
    let _ = writeln!(
        out,
        "upcalls {} (misses {}), megaflow installs {}, unanswered misses {}, waiting {}",
        r.upcalls, r.misses, r.installs, r.unanswered, r.waiting
    );
    let l = &r.latency;
    if l.count == 0 {
        let _ = writeln!(out, "miss -> install latency: (no install answered a miss)");
    } else {
        let _ = writeln!(
            out,
            "miss -> install latency (n={}): avg {}  p50 {}  p90 {}  p99 {}  max {}",
            l.count,
            human_ns(l.avg),
            human_ns(l.p50),
            human_ns(l.p90),
            human_ns(l.p99),
            human_ns(l.max)
        );
        out.push_str(&l.hist().render_ns(l.avg));
    }
    match &r.errors {
        None => {
            let _ = writeln!(
                out,
                "failed upcalls: not observed (needs fexit or kretprobes)"
            );
        }
        Some(e) if e.is_empty() => {
            let _ = writeln!(out, "failed upcalls: none");
        }
        Some(e) => {
            let v: Vec<String> = e
                .iter()
                .map(|x| format!("{} {}", x.error, x.count))
                .collect();
            let _ = writeln!(out, "failed upcalls: {}", v.join(", "));
        }
    }
    let mut t = Table::new(&[
        "IN PORT",
        "ETH TYPE",
        "PROTO",
        "SRC",
        "DST",
        "MISSES (upcalls)",
        "ACTIONS (upcalls)",
    ]);
    for f in &r.flows {
        let ip = f.flow.eth_type == 0x0800;
        // The key's transport fields are ports for TCP, UDP and SCTP only (ICMP: type, code).
        let ports = matches!(f.flow.ip_proto, 6 | 17 | 132);
        let ep = |a: std::net::Ipv4Addr, p: u16| {
            if !ip {
                "-".to_string()
            } else if ports {
                format!("{a}:{p}")
            } else {
                a.to_string()
            }
        };
        t.row(vec![
            f.flow.in_port.to_string(),
            format!("0x{:04x}", f.flow.eth_type),
            if ip {
                f.flow.ip_proto.to_string()
            } else {
                "-".into()
            },
            ep(f.flow.src, f.flow.sport),
            ep(f.flow.dst, f.flow.dport),
            f.misses.to_string(),
            f.actions.to_string(),
        ]);
    }
    if !t.is_empty() {
        out.push_str(&t.render());
    }
    let _ = writeln!(out, "{}", r.stats.line());
    out
}

/// Text of one interval of upcall results: `queue_userspace_packet`'s (the netlink message to
/// the handler) and `ovs_dp_upcall`'s failures; `errors_only` leaves out the successes.
pub fn queue_text(tool: &str, info: &IntervalInfo, r: &OvsReport, errors_only: bool) -> String {
    let mut out = crate::output::interval_header(tool, info.elapsed, info.now);
    let mut t = Table::new(&["FUNCTION", "RESULT", "COUNT (upcalls)"]);
    let rows = [
        ("queue_userspace_packet", r.queue_results.as_deref()),
        ("ovs_dp_upcall", r.errors.as_deref()),
    ];
    for (func, results) in rows {
        let Some(results) = results else {
            let _ = writeln!(out, "{func}: not observed (needs fexit or kretprobes)");
            continue;
        };
        for e in results.iter().filter(|e| !errors_only || e.error != "ok") {
            t.row(vec![func.to_string(), e.error.clone(), e.count.to_string()]);
        }
    }
    if t.is_empty() {
        let _ = writeln!(out, "(no upcall results)");
    } else {
        out.push_str(&t.render());
    }
    let _ = writeln!(
        out,
        "upcalls {} (misses {}); {}",
        r.upcalls,
        r.misses,
        r.stats.line()
    );
    out
}

/// Text of one new megaflow: when, who installed it, the match and actions as dpctl writes
/// them, and the upcall it answered.
pub fn megaflow_text(m: &crate::sets::ovs::megaflow::Megaflow) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:.6} cpu {} {} (pid {} tid {}){}",
        m.ts_ns as f64 / 1e9,
        m.cpu,
        m.comm,
        m.pid,
        m.tid,
        m.ufid
            .as_ref()
            .map(|u| format!(" ufid:{u}"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "  megaflow: {}, actions:{}{}",
        if m.flow.is_empty() {
            "(match all)"
        } else {
            &m.flow
        },
        m.actions,
        if m.truncated {
            " (request longer than its copy: decoded in part)"
        } else {
            ""
        }
    );
    match &m.upcall {
        Some(u) => {
            let f = &u.flow;
            let mut pkt = format!(
                "in_port {} {} > {} eth_type {:#06x}",
                f.in_port, u.eth_src, u.eth_dst, f.eth_type
            );
            if f.eth_type == 0x0800 {
                let _ = write!(
                    pkt,
                    " {} > {} proto {} ports {} > {}",
                    f.src, f.dst, f.ip_proto, f.sport, f.dport
                );
            }
            let _ = writeln!(
                out,
                "  answers the miss of {} µs before (handler port {}): {pkt}",
                format_args!("{:.1}", u.latency_us),
                u.portid
            );
        }
        None => {
            let _ = writeln!(
                out,
                "  answers no miss seen (installed up front, or the miss came before the tool)"
            );
        }
    }
    out
}
