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
use netprobe_lab::ovs_switch::{self, OvsSwitch};
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

const MEGAFLOW: &str = env!("CARGO_BIN_EXE_ovs_userspace_megaflow");

#[test]
fn each_new_megaflow_is_decoded_and_paired_with_its_miss() {
    require_root();
    if !ovs_watchable() {
        let out = run_tool(MEGAFLOW, &["--duration", "0.2"]);
        assert_eq!(out.status.code(), Some(1), "{:?}", out.stderr);
        assert_eq!(out.stderr.len(), 1, "one line: {:?}", out.stderr);
        return;
    }
    let lab = OvsLab::new("omf").unwrap_or_else(|e| panic!("OVS lab: {e}"));
    let (a, b) = (lab.a_port, lab.b_port);
    lab.dp.set_upcall_mode(UpcallMode::Reactive {
        pairs: vec![(a, b)],
    });
    let tool = ToolRun::start(MEGAFLOW, &["--json"]);
    let arp_only = ToolRun::start(MEGAFLOW, &["--json", "--eth-type", "0x0806"]);
    let text = ToolRun::start(MEGAFLOW, &[]);
    let replies = quiet(|| ping(&lab.a, lab.b_ip, 3, 200));
    assert_eq!(
        replies.iter().filter(|r| !r.duplicate).count(),
        3,
        "{replies:?}"
    );
    let up = lab.dp.upcall_stats();
    let out = tool.stop(Signal::SIGINT);
    assert!(out.status.success(), "{:?}", out.stderr);
    let arp_only = arp_only.stop(Signal::SIGINT);
    assert!(arp_only.status.success(), "{:?}", arp_only.stderr);
    let text = text.stop(Signal::SIGINT);
    assert!(text.status.success(), "{:?}", text.stderr);
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "{}", text.stdout.join("\n"));
    assert!(up.errors.is_empty(), "{up:?}");

    let flows: Vec<serde_json::Value> = out
        .json()
        .into_iter()
        .filter(|v| v["type"] == "megaflow")
        .collect();
    // The handler installs in_port + EtherType -> output:peer, the MACs wildcarded: the
    // match says exactly that, and each flow answers the miss of its own port and type.
    let mut seen = BTreeSet::new();
    for f in &flows {
        let in_port = f["upcall"]["in_port"]
            .as_u64()
            .unwrap_or_else(|| panic!("{f:#}"));
        let eth_type = f["upcall"]["eth_type"].as_u64().unwrap();
        assert_eq!(
            f["match"],
            format!("in_port({in_port}),eth_type({eth_type:#06x})"),
            "{f:#}"
        );
        let peer = if in_port == u64::from(a) { b } else { a };
        assert_eq!(f["actions"], peer.to_string(), "{f:#}");
        assert_eq!(
            f["pid"],
            std::process::id(),
            "installed by this test's handler: {f:#}"
        );
        assert_eq!(f["truncated"], false, "{f:#}");
        assert!(f["upcall"]["latency_us"].as_f64().unwrap() >= 0.0, "{f:#}");
        assert!(
            seen.insert((in_port, eth_type)),
            "one flow each: {flows:#?}"
        );
    }
    let expect: BTreeSet<(u64, u64)> = up
        .flows_installed
        .iter()
        .map(|f: &FlowMatch| (u64::from(f.in_port), u64::from(f.eth_type.unwrap())))
        .collect();
    assert_eq!(seen, expect, "{flows:#?}");
    assert_eq!(flows.len(), 4, "ARP and IPv4 each way: {flows:#?}");
    let arp: Vec<_> = arp_only
        .json()
        .into_iter()
        .filter(|v| v["type"] == "megaflow")
        .collect();
    assert_eq!(arp.len(), 2, "{arp:#?}");
    assert!(arp
        .iter()
        .all(|f| f["match"].as_str().unwrap().ends_with("eth_type(0x0806)")));
    assert!(
        text.stdout.iter().any(|l| l.contains("megaflow: in_port(")),
        "{:#?}",
        text.stdout
    );
}

/// With a real ovs-vswitchd (Debian's OVS in the VM image): the first packet of each new flow
/// upcalls and ovs-vswitchd installs a megaflow; the tools must agree with the datapath's own
/// `ovs-dpctl show` lookups and `dump-flows`.
#[test]
fn a_real_ovs_vswitchd_upcalls_and_installs_each_new_flow() {
    require_root();
    if !ovs_watchable() {
        return;
    }
    let vm = std::env::var("NETPROBE_TEST_TIER").as_deref() == Ok("vm");
    assert!(
        ovs_switch::available() || !vm,
        "the VM image carries ovsdb-server, ovs-vswitchd, ovs-vsctl, ovs-dpctl and the schema"
    );
    if !ovs_switch::available() {
        eprintln!("no Open vSwitch user space here (apt-get install openvswitch-switch)");
        return;
    }
    let sw = OvsSwitch::start("ovr").unwrap_or_else(|e| panic!("Open vSwitch: {e}"));
    // The bridge's flows need ARP both ways first: warm nothing up, every flow is new.
    let summary = ToolRun::start(TOOL, &["--json", "-i", "0.5"]);
    let mega = ToolRun::start(MEGAFLOW, &["--json"]);
    let text = ToolRun::start(MEGAFLOW, &[]);
    let (_, missed0, lost0) = sw.lookups().unwrap_or_else(|e| panic!("{e}"));
    let replies = quiet(|| ping(&sw.a, sw.b_ip, 3, 200));
    assert_eq!(
        replies.iter().filter(|r| !r.duplicate).count(),
        3,
        "{replies:?}"
    );
    let (_, missed, lost) = sw.lookups().unwrap_or_else(|e| panic!("{e}"));
    let flows = sw.dump_flows().unwrap_or_else(|e| panic!("{e}"));
    let summary = summary.stop(Signal::SIGINT);
    assert!(summary.status.success(), "{:?}", summary.stderr);
    let mega = mega.stop(Signal::SIGINT);
    assert!(mega.status.success(), "{:?}", mega.stderr);
    let text = text.stop(Signal::SIGINT);
    assert!(text.status.success(), "{:?}", text.stderr);
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr().lock(),
        "{}\novs-dpctl dump-flows:\n{}",
        text.stdout.join("\n"),
        flows.join("\n")
    );
    assert_eq!(
        sw.lookups().unwrap_or_else(|e| panic!("{e}")).1,
        missed,
        "no miss after the tools stopped"
    );
    assert_eq!(lost, lost0, "ovs-vswitchd lost no upcall");
    let (mut misses, mut installs, mut answered) = (0, 0, 0);
    for v in summary.json().iter().filter(|v| v["type"] == "interval") {
        misses += v["misses"].as_u64().unwrap();
        installs += v["installs"].as_u64().unwrap();
        answered += v["latency"]["count"].as_u64().unwrap();
    }
    assert_eq!(
        misses,
        missed - missed0,
        "misses = the datapath's missed lookups"
    );
    // ARP request, ARP reply, echo request, echo reply: each a new megaflow.
    assert!(flows.len() >= 4, "{flows:#?}");
    assert_eq!(
        installs,
        flows.len() as u64,
        "installs = dump-flows: {flows:#?}"
    );
    assert_eq!(answered, installs, "every install answered a miss");
    let ours: BTreeSet<String> = mega
        .json()
        .iter()
        .filter(|v| v["type"] == "megaflow")
        .map(|v| {
            assert!(v["upcall"].is_object(), "each flow answers a miss: {v:#}");
            assert_eq!(
                v["comm"].as_str().map(|c| c.starts_with("handler")),
                Some(true),
                "{v:#}"
            );
            format!(
                "{}, actions:{}",
                v["match"].as_str().unwrap(),
                v["actions"].as_str().unwrap()
            )
        })
        .collect();
    // dump-flows: "<match>, packets:N, bytes:N, used:T, actions:A".
    let theirs: BTreeSet<String> = flows
        .iter()
        .map(|l| {
            let (m, rest) = l.split_once(", packets:").unwrap_or_else(|| panic!("{l}"));
            let actions = rest.rsplit_once("actions:").map_or("", |(_, a)| a);
            format!("{m}, actions:{actions}")
        })
        .collect();
    assert_eq!(ours, theirs, "our megaflows are dump-flows' own");
}

const DROPS: &str = env!("CARGO_BIN_EXE_ovs_kernel_module_drop_monitor");

/// Upcalls no handler takes are dropped in the datapath (`ovs_dp_process_packet`): each one is
/// reported with its location in the module, a reason name this kernel knows, and its device;
/// drops elsewhere are not.
#[test]
fn drops_in_the_ovs_module_are_reported_with_location_and_reason() {
    require_root();
    if !kernel_has_ovs() {
        let out = run_tool(DROPS, &["--duration", "0.2"]);
        assert_eq!(out.status.code(), Some(1), "{:?}", out.stderr);
        assert_eq!(out.stderr.len(), 1, "one line: {:?}", out.stderr);
        assert!(
            out.stderr[0].contains("openvswitch is not loaded"),
            "{:?}",
            out.stderr
        );
        return;
    }
    let lab = OvsLab::new("odm").unwrap_or_else(|e| panic!("OVS lab: {e}"));
    lab.dp
        .set_port_upcall_pid(lab.a_port, 0)
        .unwrap_or_else(|e| panic!("{e}"));
    // Where the module names its own reasons (6.4+), a flow without actions drops with
    // OVS_DROP_LAST_ACTION: b's frames hit one.
    let btf = libnetprobe::kernel::btf::KernelBtf::load().expect("kernel BTF");
    let last_action = btf
        .module_enum_members("openvswitch", "ovs_drop_reason")
        .unwrap_or_default()
        .iter()
        .any(|(n, _)| n == "OVS_DROP_LAST_ACTION");
    if last_action {
        lab.dp
            .add_drop_flow(&FlowMatch::in_port(lab.b_port))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let tool = ToolRun::start(DROPS, &["--json"]);
    let text = ToolRun::start(DROPS, &[]);
    let frame = eth_frame([0xff; 6], [2, 0, 0, 0, 0, 7], 0x88b5, b"netprobe ovs drop");
    quiet(|| {
        send_raw_frames(&lab.a, OvsLab::NS_IF, &frame, 5);
        if last_action {
            send_raw_frames(&lab.b, OvsLab::NS_IF, &frame, 3);
        }
    });
    wait_until("the datapath counted 5 lost upcalls", WAIT, || {
        lab.dp.stats().is_ok_and(|s| s.lost >= 5)
    });
    let out = tool.stop(Signal::SIGINT);
    assert!(out.status.success(), "{:?}", out.stderr);
    let text = text.stop(Signal::SIGINT);
    assert!(text.status.success(), "{:?}", text.stderr);
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "{}", text.stdout.join("\n"));
    let drops: Vec<serde_json::Value> = out
        .json()
        .into_iter()
        .filter(|v| v["type"] == "drop")
        .collect();
    let (lost, flowed): (Vec<_>, Vec<_>) = drops
        .iter()
        .partition(|d| d["ifname"] == lab.host_ifs[0].as_str());
    assert_eq!(lost.len(), 5, "one drop per lost upcall: {drops:#?}");
    for d in &lost {
        assert_eq!(d["location_func"], "ovs_dp_process_packet", "{d:#}");
        let reason = d["reason"].as_str().unwrap();
        assert!(!reason.starts_with("UNKNOWN"), "a named reason: {d:#}");
    }
    let expect_flowed = if last_action { 3 } else { 0 };
    assert_eq!(flowed.len(), expect_flowed, "{drops:#?}");
    for d in &flowed {
        assert_eq!(d["ifname"], lab.host_ifs[1].as_str(), "{d:#}");
        assert_eq!(
            d["reason"], "OVS_DROP_LAST_ACTION",
            "the module's own name: {d:#}"
        );
    }
}
