//! Integration tests of tun_ring_monitor: a single- and a multi-queue tap in a namespace,
//! owned by a test reader standing in for a VM, which the test pauses so that the rings fill
//! up; a steering program sends each UDP destination port to a known queue. Asserted through
//! `--json`: ring size = txqueuelen (also after a resize), fill up to the size, FULL_RING drops
//! = sent − size per queue (= the tap's tx_dropped), reads = size once the reader resumes.
//! Needs root (CI runs as root): without it every test fails, none is skipped.
use netprobe_lab::drops::Expect;
use netprobe_lab::latency::{TapVm, VM_MAC};
use netprobe_lab::testkit::steer_tun_by_udp_dport;
use netprobe_lab::*;
use nix::sys::signal::Signal;
use serde_json::Value;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

const TOOL: &str = env!("CARGO_BIN_EXE_tun_ring_monitor");
const TAP: &str = "tq0";
const WAIT: Duration = Duration::from_secs(10);
/// The steering program maps a UDP destination port to queue `port % queues`.
const BASE_PORT: u16 = 7000;

/// A namespace with a tap (`TAP`, address .1/24) whose reader is the test; the VM's address
/// (.99) has a permanent neighbour entry, so the host can send to it without ARP.
struct TunLab {
    vm: TapVm,
    lab: Lab,
    vm_ip: Ipv4Addr,
}

impl TunLab {
    fn new(tag: &str, queues: usize, txqueuelen: u32) -> TunLab {
        let lab = Lab::new(tag);
        let [a, b, c, _] = lab.a_ip.octets();
        let (host_ip, vm_ip) = (
            Ipv4Addr::new(a, b, c ^ 0x80, 1),
            Ipv4Addr::new(a, b, c ^ 0x80, 99),
        );
        let vm = TapVm::create_queues(&lab.a, TAP, VM_MAC, vm_ip, queues);
        if queues > 1 {
            let fd = vm.queue_fd(0).expect("queue 0");
            steer_tun_by_udp_dport(fd).unwrap_or_else(|e| panic!("{e}"));
        }
        let ns = lab.a.as_str();
        let qlen = txqueuelen.to_string();
        ns_exec(ns, &["ip", "link", "set", TAP, "txqueuelen", &qlen]);
        ns_exec(
            ns,
            &["ip", "addr", "add", &format!("{host_ip}/24"), "dev", TAP],
        );
        ns_exec(ns, &["ip", "link", "set", TAP, "up"]);
        let mac = latency::mac_string(VM_MAC);
        let vm_addr = vm_ip.to_string();
        ns_exec(
            ns,
            &[
                "ip",
                "neigh",
                "add",
                &vm_addr,
                "lladdr",
                &mac,
                "dev",
                TAP,
                "nud",
                "permanent",
            ],
        );
        TunLab { vm, lab, vm_ip }
    }

    fn ns(&self) -> &str {
        &self.lab.a
    }

    /// `count` datagrams from the host to the VM's UDP port `port`.
    fn send(&self, port: u16, count: usize) {
        send_udp(
            self.ns(),
            None,
            SocketAddrV4::new(self.vm_ip, port),
            count,
            64,
        );
    }

    fn tx_dropped(&self) -> u64 {
        read_stat(self.ns(), TAP, "tx_dropped")
    }
}

/// Can the tool read the rings here: tun built in (its structs in vmlinux BTF), or a tun
/// module with BTF of its own (5.11+)? Asked once a tap exists (the module is loaded then).
fn ring_readable() -> bool {
    use std::path::Path;
    Path::new("/sys/kernel/btf/tun").exists() || !Path::new("/sys/module/tun/initstate").exists()
}

fn start(lab: &TunLab, extra: &[&str]) -> ToolRun {
    let mut args = vec!["-d", TAP, "--netns", lab.ns(), "--json"];
    args.extend_from_slice(extra);
    ToolRun::start(TOOL, &args)
}

/// Per-queue totals over every interval of a summary run: queue -> (field -> value), with
/// `size` and `max_pending` as the maximum and the counters summed.
fn queue_totals(out: &ToolOutput) -> std::collections::BTreeMap<u64, Value> {
    let mut totals = std::collections::BTreeMap::new();
    for v in out.json().iter().filter(|v| v["type"] == "interval") {
        for q in v["queues"].as_array().expect("queues") {
            let idx = q["queue"].as_u64().expect("queue index");
            let t = totals
                .entry(idx)
                .or_insert_with(|| serde_json::json!({"size": 0, "max_pending": 0, "xmit": 0, "full": 0, "drops": 0, "read": 0, "full_ring": 0, "unknown_ring": 0, "ring_status": "ok"}));
            if q["ring_status"] != "ok" {
                t["ring_status"] = q["ring_status"].clone();
            }
            for k in ["size", "max_pending"] {
                t[k] = t[k].as_u64().max(q[k].as_u64()).into();
            }
            for k in ["xmit", "full", "drops", "read", "unknown_ring"] {
                t[k] = (t[k].as_u64().unwrap() + q[k].as_u64().unwrap()).into();
            }
            for r in q["drop_reasons"].as_array().expect("drop_reasons") {
                if r["reason"] == Expect::of_this_kernel().reason("FULL_RING") {
                    t["full_ring"] =
                        (t["full_ring"].as_u64().unwrap() + r["count"].as_u64().unwrap()).into();
                }
            }
        }
    }
    totals
}

/// Fills each queue's ring with the reader paused (`sent[q]` datagrams to queue `q`), then
/// lets the reader drain them.
fn fill_and_drain(lab: &TunLab, sent: &[usize], size: u32) {
    lab.vm.pause();
    let read_before: Vec<u64> = (0..sent.len()).map(|q| lab.vm.frames_read_on(q)).collect();
    quiet(|| {
        for (q, &n) in sent.iter().enumerate() {
            lab.send(BASE_PORT + q as u16, n);
        }
        lab.vm.resume();
        for (q, &n) in sent.iter().enumerate() {
            let want = read_before[q] + n.min(size as usize) as u64;
            wait_until(&format!("the reader to read queue {q}"), WAIT, || {
                lab.vm.frames_read_on(q) >= want
            });
        }
    });
}

fn assert_queue(totals: &std::collections::BTreeMap<u64, Value>, q: u64, sent: u64, size: u64) {
    assert_ring(totals, q, sent, size, ring_readable(), "no_btf");
}

/// [`assert_queue`] for a ring the tool can read (`readable`) or not.
fn assert_ring(
    totals: &std::collections::BTreeMap<u64, Value>,
    q: u64,
    sent: u64,
    size: u64,
    readable: bool,
    unreadable_status: &str,
) {
    let t = totals
        .get(&q)
        .unwrap_or_else(|| panic!("no queue {q} in {totals:?}"));
    let over = sent.saturating_sub(size);
    assert_eq!(t["xmit"], sent, "queue {q} xmits: {t}");
    if readable {
        assert_eq!(t["size"], size, "queue {q} ring size: {t}");
        assert_eq!(
            t["max_pending"],
            size.min(sent),
            "queue {q} highest fill: {t}"
        );
        assert_eq!(
            t["full"], over,
            "queue {q} xmits that found the ring full: {t}"
        );
    } else {
        assert_eq!(t["size"], 0, "queue {q}: no ring without tun's BTF: {t}");
        assert_eq!(t["unknown_ring"], sent, "queue {q}: every xmit unread: {t}");
        assert_eq!(t["ring_status"], unreadable_status, "queue {q}: {t}");
    }
    assert_eq!(t["drops"], over, "queue {q} drops: {t}");
    assert_eq!(t["full_ring"], over, "queue {q} FULL_RING drops: {t}");
    assert_eq!(t["read"], size.min(sent), "queue {q} packets read: {t}");
}

/// A macvtap on the lab's `vb` with a paused reader: unicast frames to its MAC from the other
/// end of the veth go through macvlan into its ring (no xmit: the lower device's receive, which
/// the tool follows to the macvtap), fill it, and overflow as FULL_RING drops, counted in the
/// macvtap's rx_dropped. A second run reports the xmits that found the ring full as events.
#[test]
fn a_macvtap_ring_fills_and_overflows_like_a_taps() {
    require_root();
    const MACVTAP: &str = "mvt0";
    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x4e, 0x50, 0x77];
    let (size, sent) = (20_u32, 50_usize);
    let lab = Lab::new("mvt");
    let vm_ip = Ipv4Addr::new(198, 51, 100, 77);
    let vm = TapVm::create_macvtap(&lab.b, MACVTAP, Lab::B_IF, MAC, vm_ip, size);
    // The macvtap module's BTF (or macvtap built in) gives the ring; macvlan's leads from the
    // lower device to the macvtap (else the tool hooks the rx handler: kprobe, fentry).
    let has_btf = |module: &str| {
        use std::path::Path;
        Path::new(&format!("/sys/kernel/btf/{module}")).exists()
            || !Path::new(&format!("/sys/module/{module}/initstate")).exists()
    };
    let readable = has_btf("macvtap");
    let hook = if has_btf("macvlan") {
        "netif_receive_skb"
    } else {
        "kprobe/tap_handle_frame"
    };
    let args = |extra: &[&'static str]| {
        let mut v = vec!["-d", MACVTAP, "--netns", lab.b.as_str(), "--json"];
        v.extend_from_slice(extra);
        v
    };
    let summary = ToolRun::start(TOOL, &args(&["-i", "0.3"]));
    let events = readable.then(|| ToolRun::start(TOOL, &args(&["--dst-port", "7077"])));
    let frame = udp_ipv4_frame(MAC, lab.a_mac, lab.a_ip, vm_ip, 40000, 7077, &[0x42; 64]);
    vm.pause();
    quiet(|| {
        send_raw_frames(&lab.a, Lab::A_IF, &frame, sent);
        vm.resume();
        wait_until("the reader to drain the macvtap", WAIT, || {
            vm.frames_read() >= u64::from(size)
        });
    });
    // One more interval: the fill after the reads.
    std::thread::sleep(Duration::from_millis(700));
    let out = summary.stop(Signal::SIGINT);
    assert!(out.status.success(), "{:?}", out.stderr);
    let plan = out.json()[0]["probe"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(plan.contains(hook), "plan {plan}");
    let totals = queue_totals(&out);
    assert_ring(&totals, 0, sent as u64, u64::from(size), readable, "no_btf");
    let over = (sent - size as usize) as u64;
    assert_eq!(
        read_stat(&lab.b, MACVTAP, "rx_dropped"),
        over,
        "the macvtap's rx_dropped"
    );
    assert_eq!(vm.frames_read(), u64::from(size), "frames the reader got");
    if let Some(events) = events {
        let out = events.stop(Signal::SIGINT);
        assert!(out.status.success(), "{:?}", out.stderr);
        let evs: Vec<Value> = out
            .json()
            .into_iter()
            .filter(|v| v["type"] == "tun_xmit")
            .collect();
        assert_eq!(evs.len() as u64, over, "ring-full events: {:?}", out.stdout);
        for e in &evs {
            assert_eq!(e["queue"], 0, "{e}");
            assert_eq!(e["full"], true, "{e}");
            assert_eq!(e["pending"], u64::from(size), "{e}");
            assert_eq!(e["dst_port"], 7077, "{e}");
            assert_eq!(e["ifname"], MACVTAP, "{e}");
        }
    }
}

#[test]
fn a_stopped_reader_fills_the_ring_and_the_overflow_is_full_ring_drops() {
    fill_one_ring(None);
}

/// The same with the classic tracepoints (`NETPROBE_DISABLE=tp_btf`: probe reads).
#[test]
fn the_classic_tracepoint_plan_reads_the_same_ring() {
    fill_one_ring(Some("tp_btf"));
}

fn fill_one_ring(disable: Option<&str>) {
    require_root();
    let size = 64;
    let lab = TunLab::new("tun1", 1, size);
    let tool = match disable {
        None => start(&lab, &["-i", "0.3"]),
        Some(d) => {
            let env = format!("NETPROBE_DISABLE={d}");
            let args = [
                &env,
                TOOL,
                "-d",
                TAP,
                "--netns",
                lab.ns(),
                "--json",
                "-i",
                "0.3",
            ];
            ToolRun::start("env", &args)
        }
    };
    fill_and_drain(&lab, &[100], size);
    let out = tool.stop(Signal::SIGINT);
    assert!(out.status.success(), "{:?}", out.stderr);
    let plan = out.json()[0]["probe"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let want = match disable {
        None => "tp_btf/net_dev_start_xmit",
        Some(_) => "tracepoint/net/net_dev_start_xmit",
    };
    assert!(plan.contains(want), "plan {plan}");
    let totals = queue_totals(&out);
    assert_queue(&totals, 0, 100, u64::from(size));
    assert_eq!(lab.tx_dropped(), 36, "the tap's own tx_dropped");
}

#[test]
fn every_queue_of_a_multi_queue_tap_has_its_own_ring_and_a_resize_follows() {
    require_root();
    let (size, resized) = (40, 24);
    let lab = TunLab::new("tun2", 2, size);
    let tool = start(&lab, &["-i", "0.3"]);
    fill_and_drain(&lab, &[70, 50], size);
    let first = tool.stop(Signal::SIGINT);
    assert!(first.status.success(), "{:?}", first.stderr);
    let totals = queue_totals(&first);
    assert_queue(&totals, 0, 70, u64::from(size));
    assert_queue(&totals, 1, 50, u64::from(size));
    assert_eq!(lab.tx_dropped(), 30 + 10, "the tap's own tx_dropped");

    ns_exec(
        lab.ns(),
        &["ip", "link", "set", TAP, "txqueuelen", &resized.to_string()],
    );
    let tool = start(&lab, &["-i", "0.3", "-q", "1"]);
    fill_and_drain(&lab, &[30, 30], resized);
    let out = tool.stop(Signal::SIGINT);
    assert!(out.status.success(), "{:?}", out.stderr);
    let totals = queue_totals(&out);
    assert!(!totals.contains_key(&0), "-q 1 shows queue 0: {totals:?}");
    assert_queue(&totals, 1, 30, u64::from(resized));
}

#[test]
fn events_are_the_xmits_that_find_the_ring_full_or_every_xmit_with_all() {
    require_root();
    let size = 16;
    let lab = TunLab::new("tun3", 2, size);
    let events = |out: &ToolOutput| -> Vec<Value> {
        out.json()
            .into_iter()
            .filter(|v| v["type"] == "tun_xmit")
            .collect()
    };
    let dport = (BASE_PORT + 1).to_string();
    if !ring_readable() {
        let out = run_tool(TOOL, &["-d", TAP, "--netns", lab.ns()]);
        assert_eq!(out.status.code(), Some(1), "{:?}", out.stderr);
        assert!(out.stderr[0].contains("no BTF for tun"), "{:?}", out.stderr);
        let every = start(&lab, &["--all", "--dst-port", &dport]);
        fill_and_drain(&lab, &[20, 25], size);
        let every = every.stop(Signal::SIGINT);
        assert!(every.status.success(), "{:?}", every.stderr);
        let all = events(&every);
        assert_eq!(all.len(), 25, "--all --dst-port: every xmit to that port");
        assert!(all.iter().all(|e| e["ring_status"] == "no_btf"), "{all:?}");
        return;
    }
    let full_only = start(&lab, &[]);
    let every = start(&lab, &["--all", "--dst-port", &dport]);
    fill_and_drain(&lab, &[20, 25], size);
    let full_only = full_only.stop(Signal::SIGINT);
    let every = every.stop(Signal::SIGINT);
    for out in [&full_only, &every] {
        assert!(out.status.success(), "{:?}", out.stderr);
    }
    let full = events(&full_only);
    let per_queue = |evs: &[Value], q: u64| evs.iter().filter(|e| e["queue"] == q).count();
    assert_eq!(per_queue(&full, 0), 4, "ring-full events of queue 0");
    assert_eq!(per_queue(&full, 1), 9, "ring-full events of queue 1");
    for e in &full {
        assert_eq!(e["full"], true, "{e}");
        assert_eq!(e["size"], size, "{e}");
        assert_eq!(e["pending"], size, "{e}");
        assert_eq!(e["ring_status"], "ok", "{e}");
        assert_eq!(e["l4_protocol"], "udp", "{e}");
        assert_eq!(e["dst_ip"], lab.vm_ip.to_string(), "{e}");
        assert_eq!(
            e["dst_port"],
            BASE_PORT + e["queue"].as_u64().unwrap() as u16,
            "{e}"
        );
        for k in ["producer", "consumer_head", "consumer_tail", "unavailable"] {
            assert!(e[k].is_u64(), "{k} in {e}");
        }
    }
    let all = events(&every);
    assert_eq!(all.len(), 25, "--all --dst-port: every xmit to that port");
    let fills: Vec<u64> = all.iter().map(|e| e["pending"].as_u64().unwrap()).collect();
    let expected: Vec<u64> = (0..25).map(|i| i.min(u64::from(size))).collect();
    assert_eq!(
        fills, expected,
        "the fill rises by one per xmit up to the size"
    );
    let summary = every
        .json()
        .into_iter()
        .find(|v| v["type"] == "summary")
        .expect("summary line");
    assert_eq!(summary["events"], 25);
}

#[test]
fn bad_devices_and_arguments_are_one_line_errors() {
    require_root();
    let lab = TunLab::new("tun4", 1, 8);
    let ns = lab.ns().to_string();
    let cases: [(&[&str], &str); 5] = [
        (&["-d", "nosuch0", "--netns", &ns], "no such interface"),
        (
            &["-d", Lab::A_IF, "--netns", &ns],
            "not a tun/tap or macvtap device",
        ),
        (
            &["-d", TAP, "--netns", "np-no-such-ns"],
            "no such network namespace",
        ),
        (&["-d", TAP, "--dst-port", "70000"], "out of range"),
        (
            &["-d", TAP, "--netns", &ns, "-i", "1", "--all"],
            "choose events",
        ),
    ];
    for (args, want) in cases {
        let out = run_tool(TOOL, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {:?}", out.stderr);
        assert_eq!(out.stderr.len(), 1, "{args:?}: one line: {:?}", out.stderr);
        assert!(out.stderr[0].contains(want), "{args:?}: {:?}", out.stderr);
    }
}

#[test]
fn a_signal_leaves_no_tun_program_behind() {
    require_root();
    let lab = TunLab::new("tun5", 1, 8);
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        let tool = start(&lab, &["-i", "600"]);
        let ids = netprobe_lab::cost::Progs::of_process(tool.pid())
            .unwrap()
            .ids();
        assert!(ids.len() >= 3, "the tool holds its programs: {ids:?}");
        let out = tool.stop(sig);
        assert!(out.status.success(), "{sig}: {:?}", out.stderr);
        assert!(
            out.json()
                .iter()
                .any(|v| v["type"] == "interval" && v["final"] == true),
            "a last report at exit: {:?}",
            out.stdout
        );
        wait_until("the tool's programs unloaded", WAIT, || {
            let loaded = loaded_prog_ids();
            ids.iter().all(|id| !loaded.contains(id))
        });
    }
}
