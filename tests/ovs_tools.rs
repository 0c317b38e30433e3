//! Integration tests of ovs_upcall_latency_summary against the lab's OVS kernel datapath
//! (`netprobe_lab::ovs`: two namespaces whose veths are ports of one datapath, and a reactive
//! upcall handler that installs a megaflow per miss, as ovs-vswitchd does). The tool's
//! upcalls, installs, latencies and flows must match what the handler saw.
//!
//! Where the tests run decides what they assert, never silently:
//! - VM tier (`NETPROBE_TEST_TIER=vm`, openvswitch loaded): with the module's BTF (5.11+) the
//!   counts are asserted; without it (5.10) the tool must say so in one line.
//! - The development host (no openvswitch module): the tool's one line naming the module.
//!
//! Needs root (CI runs as root): without it every test fails, none is skipped.
use netprobe_lab::latency::ping;
use netprobe_lab::ovs::{kernel_has_ovs, FlowMatch, OvsLab, UpcallMode};
use netprobe_lab::*;
use nix::sys::signal::Signal;
use std::collections::BTreeSet;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

const TOOL: &str = env!("CARGO_BIN_EXE_ovs_upcall_latency_summary");

/// Where the OVS datapath cannot be watched here, asserts the tool's one-line reason and
/// returns false.
fn ovs_watchable() -> bool {
    let present = kernel_has_ovs();
    let vm = std::env::var("NETPROBE_TEST_TIER").as_deref() == Ok("vm");
    assert!(present || !vm, "the VM tier loads openvswitch");
    let reason = if !present {
        "openvswitch is not loaded"
    } else if !std::path::Path::new("/sys/kernel/btf/openvswitch").exists() {
        "the openvswitch module has no BTF"
    } else {
        return true;
    };
    let out = run_tool(TOOL, &["--duration", "0.2"]);
    assert_eq!(out.status.code(), Some(1), "{:?}", out.stderr);
    assert_eq!(out.stderr.len(), 1, "one line: {:?}", out.stderr);
    assert!(out.stderr[0].contains(reason), "{:?}", out.stderr);
    false
}

#[test]
fn each_miss_upcalls_once_and_each_megaflow_install_answers_one() {
    require_root();
    if !ovs_watchable() {
        return;
    }
    let lab = OvsLab::new("otl").unwrap_or_else(|e| panic!("OVS lab: {e}"));
    let (a, b) = (lab.a_port, lab.b_port);
    lab.dp.set_upcall_mode(UpcallMode::Reactive {
        pairs: vec![(a, b)],
    });
    let tool = ToolRun::start(TOOL, &["--json", "-i", "0.5"]);
    let text = ToolRun::start(TOOL, &["-i", "60"]);
    let replies = quiet(|| ping(&lab.a, lab.b_ip, 5, 200));
    assert_eq!(
        replies.iter().filter(|r| !r.duplicate).count(),
        5,
        "{replies:?}"
    );
    let up = lab.dp.upcall_stats();
    let out = tool.stop(Signal::SIGINT);
    assert!(out.status.success(), "{:?}", out.stderr);
    let text = text.stop(Signal::SIGINT);
    assert!(text.status.success(), "{:?}", text.stderr);
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "{}", text.stdout.join("\n"));
    assert!(up.errors.is_empty(), "{up:?}");

    let (mut upcalls, mut misses, mut installs, mut answered, mut unanswered) = (0, 0, 0, 0, 0);
    let mut flows: BTreeSet<(u64, u64)> = BTreeSet::new();
    for v in out.json().iter().filter(|v| v["type"] == "interval") {
        let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k}: {v:#}"));
        upcalls += n("upcalls");
        misses += n("misses");
        installs += n("installs");
        unanswered += n("unanswered");
        answered += v["latency"]["count"].as_u64().unwrap();
        assert_eq!(
            v["errors"],
            serde_json::json!([]),
            "no upcall failed: {v:#}"
        );
        for f in v["flows"].as_array().unwrap() {
            flows.insert((
                f["in_port"].as_u64().unwrap(),
                f["eth_type"].as_u64().unwrap(),
            ));
        }
    }
    // ARP request a->b, ARP reply b->a, the first echo and its reply: one miss each, one
    // megaflow each; the later echoes hit the megaflows.
    assert_eq!(upcalls, up.upcalls, "{:#?}", out.stdout);
    assert_eq!(misses, up.upcalls, "{:#?}", out.stdout);
    assert_eq!(
        installs,
        up.flows_installed.len() as u64,
        "{:#?}",
        out.stdout
    );
    assert_eq!(
        answered, installs,
        "each install answered a miss: {:#?}",
        out.stdout
    );
    assert_eq!(unanswered, 0, "{:#?}", out.stdout);
    let expect: BTreeSet<(u64, u64)> = up
        .flows_installed
        .iter()
        .map(|f: &FlowMatch| (u64::from(f.in_port), u64::from(f.eth_type.unwrap())))
        .collect();
    assert_eq!(flows, expect, "{up:?}");
    assert_eq!(expect.len(), 4, "{up:?}");
}

const RETVAL: &str = env!("CARGO_BIN_EXE_queue_userspace_packet_retval");

#[test]
fn upcalls_to_no_handler_fail_with_their_errno() {
    require_root();
    if !ovs_watchable() {
        return;
    }
    let lab = OvsLab::new("oqr").unwrap_or_else(|e| panic!("OVS lab: {e}"));
    // a's misses go to no port at all, b's to a port no socket has.
    lab.dp
        .set_port_upcall_pid(lab.a_port, 0)
        .unwrap_or_else(|e| panic!("{e}"));
    lab.dp
        .set_port_upcall_pid(lab.b_port, 0x7fff_fff0)
        .unwrap_or_else(|e| panic!("{e}"));
    let tool = ToolRun::start(RETVAL, &["--json", "-i", "0.5"]);
    let text = ToolRun::start(RETVAL, &["-i", "60", "--filter-error"]);
    let frame = eth_frame([0xff; 6], [2, 0, 0, 0, 0, 7], 0x88b5, b"netprobe upcall");
    quiet(|| {
        send_raw_frames(&lab.a, OvsLab::NS_IF, &frame, 5);
        send_raw_frames(&lab.b, OvsLab::NS_IF, &frame, 3);
    });
    wait_until("the datapath counted 8 lost upcalls", WAIT, || {
        lab.dp.stats().is_ok_and(|s| s.lost >= 8)
    });
    let out = tool.stop(Signal::SIGINT);
    assert!(out.status.success(), "{:?}", out.stderr);
    let text = text.stop(Signal::SIGINT);
    assert!(text.status.success(), "{:?}", text.stderr);
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "{}", text.stdout.join("\n"));
    let sum = |field: &str| {
        let mut m: std::collections::BTreeMap<String, u64> = Default::default();
        for v in out.json().iter().filter(|v| v["type"] == "interval") {
            for e in v[field]
                .as_array()
                .unwrap_or_else(|| panic!("{field}: {v:#}"))
            {
                *m.entry(e["error"].as_str().unwrap().to_string())
                    .or_default() += e["count"].as_u64().unwrap();
            }
        }
        m
    };
    let up = sum("errors");
    let queue = sum("queue_results");
    assert_eq!(up.get("ENOTCONN"), Some(&5), "{up:?}");
    assert_eq!(up.get("ECONNREFUSED"), Some(&3), "{up:?}");
    assert_eq!(up.len(), 2, "{up:?}");
    // ENOTCONN is ovs_dp_upcall's own: those never reached queue_userspace_packet.
    assert_eq!(queue.get("ECONNREFUSED"), Some(&3), "{queue:?}");
    assert_eq!(queue.len(), 1, "{queue:?}");
    assert_eq!(lab.dp.stats().unwrap().lost, 8);
    assert!(
        text.stdout
            .iter()
            .any(|l| l.contains("queue_userspace_packet") && l.contains("ECONNREFUSED")),
        "{:#?}",
        text.stdout
    );
}
