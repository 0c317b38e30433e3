//! Integration tests of the virtio tools: virtnet_poll_monitor, virtnet_irq_monitor and
//! virtnet_poll_stack_stats.
//!
//! Where the tests run decides what they assert, never silently:
//! - VM tier (`NETPROBE_TEST_TIER=vm`): the guest has two virtio-net NICs on a QEMU hub
//!   (tests/vm/run.sh), each moved into its own namespace. Known UDP traffic from one to the
//!   other is asserted exactly: the receiver's rx work = the datagrams = its driver's
//!   rx_packets; its rx IRQ count = the /proc/interrupts delta; a socket with SO_BUSY_POLL
//!   shows up as busy-poll polls and a `napi_busy_loop` stack.
//! - Elsewhere the hub must be absent (no NIC has its MACs), and the tests assert what holds
//!   without sending a packet out of a real NIC: refusals of non-virtio devices, and on a
//!   machine whose own NIC is virtio-net (the development VM's eth0), attach-only runs whose
//!   IRQ discovery and plan are checked against /proc/interrupts and the kernel.
//!
//! Needs root (CI runs as root): without it every test fails, none is skipped.
use netprobe_lab::virtio::{find_hub_nics, irq_count, send_paced, UdpReceiver, VirtioHub};
use netprobe_lab::*;
use nix::sys::signal::Signal;
use serde_json::Value;
use std::net::SocketAddrV4;
use std::time::Duration;

const POLL: &str = env!("CARGO_BIN_EXE_virtnet_poll_monitor");
const IRQ: &str = env!("CARGO_BIN_EXE_virtnet_irq_monitor");
const STACKS: &str = env!("CARGO_BIN_EXE_virtnet_poll_stack_stats");
const PORT_A: u16 = 7100;
const PORT_B: u16 = 7200;

fn vm_tier() -> bool {
    std::env::var("NETPROBE_TEST_TIER").as_deref() == Ok("vm")
}

/// The hub in the VM tier (it must be there); `None` elsewhere, after checking it is absent.
fn hub(tag: &str) -> Option<VirtioHub> {
    require_root();
    if vm_tier() {
        return Some(VirtioHub::new(tag).unwrap_or_else(|e| panic!("VM tier: {e}")));
    }
    assert!(
        find_hub_nics().is_err(),
        "the hub's NICs exist outside the VM tier: set NETPROBE_TEST_TIER=vm"
    );
    None
}

/// A virtio-net NIC of the root namespace (not the hub's), if the machine has one.
fn own_virtio_nic() -> Option<(String, String)> {
    let dir = std::fs::read_dir("/sys/class/net").ok()?;
    dir.flatten().find_map(|e| {
        let driver = std::fs::read_link(e.path().join("device/driver")).ok()?;
        if driver.file_name()? != "virtio_net" {
            return None;
        }
        let virtio = std::fs::read_link(e.path().join("device")).ok()?;
        Some((
            e.file_name().to_string_lossy().into_owned(),
            virtio.file_name()?.to_string_lossy().into_owned(),
        ))
    })
}

fn start_in(hub: &VirtioHub, tool: &str, args: &[&str]) -> ToolRun {
    let mut all = vec![
        "-d",
        hub.nic_b.ifname.as_str(),
        "--netns",
        hub.b.as_str(),
        "--json",
    ];
    all.extend_from_slice(args);
    ToolRun::start(tool, &all)
}

/// The final interval of a stopped tool.
fn final_report(out: &ToolOutput) -> Value {
    assert!(out.status.success(), "{:?}", out.stderr);
    out.json()
        .into_iter()
        .rev()
        .find(|v| v["type"] == "interval" && v["final"] == true)
        .unwrap_or_else(|| panic!("no final interval: {:?}", out.stdout))
}

/// Does the kernel have BTF for virtio_net (built in, or a module with its own: 5.11+)? Without
/// it the set cannot reach the queue structs, and polls count under an unknown queue.
fn virtio_net_btf() -> bool {
    std::path::Path::new("/sys/kernel/btf/virtio_net").exists()
        || !std::path::Path::new("/sys/module/virtio_net/initstate").exists()
}

/// Receive queue 0's polls (the unknown queue's where the kernel cannot tell queues apart).
fn rx_queue0(report: &Value) -> Value {
    let want = if virtio_net_btf() {
        Value::from(0)
    } else {
        Value::Null
    };
    report["queues"]
        .as_array()
        .and_then(|q| {
            q.iter()
                .find(|q| q["kind"] == "rx" && q["queue"] == want)
                .cloned()
        })
        .unwrap_or_else(|| panic!("no rx queue {want}: {report}"))
}

fn by(q: &Value, caller: &str) -> u64 {
    q["by"][caller].as_u64().unwrap_or(0)
}

#[test]
fn polls_and_irqs_count_the_datagrams_received() {
    let Some(hub) = hub("count") else {
        return;
    };
    const N: u64 = 120;
    let irq = hub.b_irq("input.0").expect("the receiver's input.0 vector");
    let polls = start_in(&hub, POLL, &["-i", "600"]);
    let irqs = start_in(&hub, IRQ, &["-i", "600"]);
    let (rx_before, irq_before) = (hub.b_rx_packets(), irq_count(irq));
    let local = SocketAddrV4::new(hub.b_ip, PORT_B);
    let peer = SocketAddrV4::new(hub.a_ip, PORT_A);
    let got = quiet(|| {
        let rx = UdpReceiver::start(&hub.b, local, peer, N, None, Duration::from_secs(30));
        send_paced(&hub.a, peer, local, N, 200, Duration::from_millis(3));
        rx.join()
    });
    // Each datagram's IRQ came before its delivery: all are counted by now.
    assert_eq!(got, N, "datagrams received");
    let (rx_after, irq_after) = (hub.b_rx_packets(), irq_count(irq));
    let polls = final_report(&polls.stop(Signal::SIGINT));
    let irqs = final_report(&irqs.stop(Signal::SIGINT));
    assert_eq!(
        rx_after - rx_before,
        N,
        "nothing but the datagrams reached the receiver"
    );

    let q = rx_queue0(&polls);
    assert_eq!(q["work"], N, "rx work = datagrams: {q}");
    let npolls = q["polls"].as_u64().unwrap_or(0);
    assert!((1..=2 * N).contains(&npolls), "{q}");
    assert_eq!(by(&q, "busy_poll"), 0, "no socket busy-polls: {q}");
    let softirq: u64 = ["irq", "ksoftirqd", "bh_enable", "softirq"]
        .iter()
        .map(|c| by(&q, c))
        .sum();
    assert_eq!(softirq, npolls, "every poll is the NET_RX softirq's: {q}");
    if !q["rq"].is_null() {
        assert_eq!(q["rq"]["packets"], rx_after, "the queue's own count: {q}");
        assert_eq!(q["rq"]["vq_index"], 0, "{q}");
    }

    let vectors = irqs["irqs"].as_array().expect("irqs");
    let input = vectors
        .iter()
        .find(|v| v["irq"] == irq)
        .unwrap_or_else(|| panic!("IRQ {irq} not watched: {irqs}"));
    assert_eq!(input["role"], "rx");
    assert_eq!(input["queue"], 0);
    let count = input["count"].as_u64().unwrap_or(0);
    assert_eq!(count, irq_after - irq_before, "= /proc/interrupts: {input}");
    assert!((1..=N).contains(&count), "{input}");
    assert_eq!(
        input["handled"].as_u64().unwrap_or(0) + input["none"].as_u64().unwrap_or(0),
        count,
        "{input}"
    );
    assert_eq!(
        input["handler"]["count"], count,
        "a handler time per IRQ: {input}"
    );
    let cpus: u64 = input["cpus"]
        .as_object()
        .map(|m| m.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0);
    assert_eq!(cpus, count, "the CPU spread adds up: {input}");
    if irqs["probe"].as_str().is_some_and(|p| p.contains("tp_btf")) {
        assert_eq!(input["vring_interrupt"], true, "{input}");
    }
}

#[test]
fn a_busy_polling_socket_shows_as_busy_poll_polls_and_stacks() {
    let Some(hub) = hub("busy") else {
        return;
    };
    const N: u64 = 60;
    let polls = start_in(&hub, POLL, &["-i", "600"]);
    let stacks = start_in(&hub, STACKS, &["-i", "600", "--top", "50"]);
    let local = SocketAddrV4::new(hub.b_ip, PORT_B + 1);
    let peer = SocketAddrV4::new(hub.a_ip, PORT_A + 1);
    let rx_before = hub.b_rx_packets();
    let got = quiet(|| {
        let rx = UdpReceiver::start(
            &hub.b,
            local,
            peer,
            N,
            Some(20_000),
            Duration::from_secs(30),
        );
        send_paced(&hub.a, peer, local, N, 100, Duration::from_millis(10));
        rx.join()
    });
    assert_eq!(
        got,
        N,
        "datagrams received (the NIC received {})",
        hub.b_rx_packets() - rx_before
    );
    let polls = final_report(&polls.stop(Signal::SIGINT));
    let stacks = final_report(&stacks.stop(Signal::SIGINT));
    let q = rx_queue0(&polls);
    assert!(by(&q, "busy_poll") > 0, "busy-poll polls: {q}");
    assert_eq!(q["work"], N, "rx work = datagrams: {q}");
    let list = stacks["stacks"].as_array().expect("stacks");
    let busy: Vec<&Value> = list.iter().filter(|s| s["caller"] == "busy_poll").collect();
    assert!(!busy.is_empty(), "busy-poll stacks: {stacks}");
    let without: Vec<&&Value> = busy
        .iter()
        .filter(|s| {
            !s["frames"].as_array().is_some_and(|f| {
                f.iter()
                    .any(|f| f.as_str().is_some_and(|f| f.contains("busy_loop")))
            })
        })
        .collect();
    assert!(
        without.is_empty(),
        "each busy-poll stack passes napi_busy_loop; these do not: {without:?}"
    );
    // Who polled is mostly told by the CPU's context, not by the stack: every stack still
    // shows the function that names its caller.
    let named_by: &[(&str, &[&str])] = &[
        ("irq", &["irq_exit"]),
        ("ksoftirqd", &["run_ksoftirqd"]),
        ("bh_enable", &["__local_bh_enable_ip", "do_softirq"]),
        ("busy_poll", &["busy_loop", "busy_poll_stop"]),
        ("threaded", &["napi_threaded_poll"]),
    ];
    let wrong: Vec<&Value> = list
        .iter()
        .filter(|s| {
            named_by.iter().any(|(caller, functions)| {
                s["caller"] == *caller
                    && !s["frames"].as_array().is_some_and(|f| {
                        f.iter().any(|f| {
                            f.as_str()
                                .is_some_and(|f| functions.iter().any(|n| f.contains(n)))
                        })
                    })
            })
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "stacks whose frames do not show their caller: {wrong:?}"
    );
    let total: u64 = list
        .iter()
        .filter(|s| s["kind"] == "rx")
        .filter_map(|s| s["count"].as_u64())
        .sum();
    assert!(total >= 1, "{stacks}");
}

#[test]
fn non_virtio_devices_and_bad_arguments_are_one_line_errors() {
    require_root();
    let lab = Lab::new("virt");
    let cases: [(&str, &[&str], &str); 5] = [
        (
            POLL,
            &["-d", "nosuch0", "--netns", &lab.a],
            "no such interface",
        ),
        (
            IRQ,
            &["-d", Lab::A_IF, "--netns", &lab.a],
            "not a virtio-net interface",
        ),
        (
            STACKS,
            &["-d", Lab::A_IF, "--netns", &lab.a],
            "not a virtio-net interface",
        ),
        (STACKS, &["-d", Lab::A_IF, "--depth", "1"], "--depth"),
        (IRQ, &["-d", Lab::A_IF, "--irqs", "x"], "not an IRQ number"),
    ];
    let many: Vec<String> = (0..=128).map(|i| i.to_string()).collect();
    let many = many.join(",");
    let out = run_tool(IRQ, &["-d", Lab::A_IF, "--irqs", &many]);
    assert_eq!(out.status.code(), Some(2), "{:?}", out.stderr);
    assert_eq!(out.stderr.len(), 1, "one line: {:?}", out.stderr);
    assert!(out.stderr[0].contains("at most 128"), "{:?}", out.stderr);
    for (tool, args, want) in cases {
        let out = run_tool(tool, args);
        assert_ne!(out.status.code(), Some(0), "{args:?}: {:?}", out.stderr);
        assert_eq!(out.stderr.len(), 1, "{args:?}: one line: {:?}", out.stderr);
        assert!(out.stderr[0].contains(want), "{args:?}: {:?}", out.stderr);
    }
}

/// The plan and the IRQ discovery on a NIC that carries no test traffic (the hub's receiver
/// in the VM tier, else this machine's own virtio-net NIC, if any): nothing is sent.
#[test]
fn vectors_are_found_from_the_device_and_the_plan_follows_the_kernel() {
    let hub = hub("plan");
    let (dev, virtio, netns) = match &hub {
        Some(h) => (
            h.nic_b.ifname.clone(),
            h.nic_b.virtio.clone(),
            Some(h.b.clone()),
        ),
        None => match own_virtio_nic() {
            Some((dev, virtio)) => (dev, virtio, None),
            None => {
                let out = run_tool(IRQ, &["-d", "lo", "--duration", "0.2"]);
                assert!(!out.status.success());
                assert!(
                    out.stderr[0].contains("not a virtio-net interface"),
                    "{:?}",
                    out.stderr
                );
                return;
            }
        },
    };
    let want: Vec<(u64, String)> = netprobe_lab::virtio::irq_counts()
        .into_iter()
        .filter(|(_, n, _)| {
            n.strip_prefix(&virtio).is_some_and(|r| {
                r.starts_with("-input.") || r.starts_with("-output.") || r == "-config"
            })
        })
        .map(|(irq, n, _)| (u64::from(irq), n))
        .collect();
    assert!(!want.is_empty(), "{virtio} has vectors in /proc/interrupts");
    for disable in [None, Some("tp_btf")] {
        let mut args = vec![
            "-d".to_string(),
            dev.clone(),
            "--duration".into(),
            "0.5".into(),
            "--json".into(),
        ];
        if let Some(ns) = &netns {
            args.extend(["--netns".to_string(), ns.clone()]);
        }
        let mut env_args = vec![];
        if let Some(d) = disable {
            env_args.push(format!("NETPROBE_DISABLE={d}"));
        }
        env_args.push(IRQ.to_string());
        env_args.extend(args.iter().cloned());
        let refs: Vec<&str> = env_args.iter().map(String::as_str).collect();
        let run = ToolRun::start("env", &refs);
        let report = final_report(&run.wait(Duration::from_secs(30)));
        let got: Vec<(u64, String)> = report["irqs"]
            .as_array()
            .expect("irqs")
            .iter()
            .map(|v| {
                (
                    v["irq"].as_u64().unwrap_or(0),
                    v["name"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        assert_eq!(got, want, "the device's vectors, by IRQ");
        let probe = report["probe"].as_str().unwrap_or("");
        match disable {
            None => assert!(probe.starts_with("tp_btf/irq_handler_entry"), "{probe}"),
            Some(_) => assert!(
                probe.starts_with("tracepoint/irq/irq_handler_entry"),
                "{probe}"
            ),
        }
    }
    // The poll monitor attaches too, and by the same rule.
    let mut args = vec!["-d", dev.as_str(), "--duration", "0.5", "--json"];
    if let Some(ns) = &netns {
        args.extend(["--netns", ns.as_str()]);
    }
    let report = final_report(&ToolRun::start(POLL, &args).wait(Duration::from_secs(30)));
    assert!(
        report["probe"]
            .as_str()
            .is_some_and(|p| p == "tp_btf/napi_poll, tp_btf/softirq_entry, tp_btf/softirq_exit"),
        "{report}"
    );
    drop(hub);
}
