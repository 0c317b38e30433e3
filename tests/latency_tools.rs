//! Integration tests of the latency tools: real BPF in the running kernel, namespace labs with a
//! delay of known length induced in one stage (a tbf shaper, a stopped tap reader), asserted
//! through `--json`. Needs root (CI runs as root): without it every test fails, none is skipped.
use netprobe_lab::latency::{ping, ping_with, Tbf, TbfQueue, VmLab};
use netprobe_lab::stamped::{send_numbered, StampedReceiver};
use netprobe_lab::*;
use nix::sys::signal::Signal;
use serde_json::Value;
use std::net::SocketAddrV4;
use std::time::Duration;

const SYS_SUMMARY: &str = env!("CARGO_BIN_EXE_system_network_latency_summary");
const SYS_DETAILS: &str = env!("CARGO_BIN_EXE_system_network_latency_details");
const SYS_METRICS: &str = env!("CARGO_BIN_EXE_system_network_performance_metrics");
const VM_SUMMARY: &str = env!("CARGO_BIN_EXE_vm_network_latency_summary");
const VM_DETAILS: &str = env!("CARGO_BIN_EXE_vm_network_latency_details");
const VM_METRICS: &str = env!("CARGO_BIN_EXE_vm_network_performance_metrics");
const ICMP_RTT: &str = env!("CARGO_BIN_EXE_kernel_icmp_rtt");
const QDISC: &str = env!("CARGO_BIN_EXE_qdisc_latency_details");
const WAIT: Duration = Duration::from_secs(10);

/// Details events (`type: latency`) of a run.
fn events(out: &ToolOutput) -> Vec<Value> {
    out.json()
        .into_iter()
        .filter(|v| v["type"] == "latency")
        .collect()
}

/// The last interval report of a summary run (the one printed at exit).
fn last_report(out: &ToolOutput) -> Value {
    out.json()
        .into_iter()
        .rfind(|v| v["type"] == "interval" && v["final"] == true)
        .unwrap_or_else(|| panic!("no final report in {:?}", out.stdout))
}

/// A histogram of a report: `from` is a stage or `total`.
fn hist<'a>(report: &'a Value, path: &str, from: &str, to: &str) -> &'a Value {
    report["histograms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["path"] == path && h["from"] == from && (from == "total" || h["to"] == to))
        .unwrap_or_else(|| panic!("no {path} {from}->{to} histogram in {report:#}"))
}

fn stage<'a>(ev: &'a Value, name: &str) -> Option<&'a Value> {
    ev["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
}

fn stage_names(ev: &Value) -> Vec<String> {
    ev["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

fn f64_of(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Stage deltas add up to the total (each is rounded to ns).
fn assert_stages_sum_to_total(ev: &Value) {
    let sum: f64 = ev["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| f64_of(&s["delta_us"]))
        .sum();
    let total = f64_of(&ev["total_us"]);
    assert!(
        (sum - total).abs() < 0.01,
        "stages {sum} != total {total}: {ev:#}"
    );
}

/// Where a burst of `k` frames of `len` bytes leaves a tbf of `rate` bit/s and `burst` bytes
/// (see `Tbf`): seconds after the first.
fn tbf_departures(k: usize, len: f64, rate: f64, burst: f64) -> Vec<f64> {
    (0..k)
        .map(|i| (((i + 1) as f64 * len - burst) * 8.0 / rate).max(0.0))
        .collect()
}

#[test]
fn tbf_queueing_delay_lands_in_the_qdisc_stage() {
    require_root();
    let lab = Lab::new("lqd");
    // Resolve the neighbour first, so no packet of the burst waits for ARP.
    lab.resolve_neighbour();
    // Slow enough that the shaper's delay (4.2 ms per packet) dwarfs timer and softirq
    // latency, also in the TCG-emulated VMs.
    const RATE: u64 = 2_000_000;
    const BURST: u32 = 1600;
    const K: usize = 21;
    const PAYLOAD: usize = 1000;
    let _tbf = Tbf::install(&lab.a, Lab::A_IF, RATE, BURST, TbfQueue::Bytes(200_000));
    let port = "7301";
    let common = [
        "--netns",
        lab.a.as_str(),
        "--protocol",
        "udp",
        "--dst-port",
        port,
        "--json",
    ];
    let start = |bin: &str, extra: &[&str]| {
        let mut v: Vec<&str> = common.to_vec();
        v.extend_from_slice(extra);
        ToolRun::start(bin, &v)
    };
    let tx = ["--phy-interface", "va", "--direction", "tx"];
    let details = start(SYS_DETAILS, &tx);
    let summary = start(
        SYS_SUMMARY,
        &[&tx[..], &["--stage-latency", "-i", "600"]].concat(),
    );
    // The total alone: net_dev_xmit knows the queued packets by skb (no start_xmit program).
    let total_only = start(SYS_SUMMARY, &[&tx[..], &["-i", "600"]].concat());
    let qdisc = start(QDISC, &["--dev", "va"]);
    let metrics = start(SYS_METRICS, &tx);
    let frame_len = (14 + 20 + 8 + PAYLOAD) as f64;
    let expect = tbf_departures(K, frame_len, RATE as f64, f64::from(BURST));
    let last_departure = expect[K - 1];
    let dst = SocketAddrV4::new(lab.b_ip, 7301);
    let receiver = StampedReceiver::start(&lab.b, dst, K, Duration::from_secs(10));
    let sent = quiet(|| {
        let sent = send_numbered(&lab.a, dst, K as u32, PAYLOAD);
        std::thread::sleep(Duration::from_secs_f64(last_departure + 0.3));
        sent
    });
    let mut arrivals = receiver.join();
    assert_eq!(arrivals.len(), K, "datagrams received: {arrivals:?}");
    arrivals.sort_by_key(|a| a.seq);

    let out = details.stop(Signal::SIGINT);
    assert!(out.status.success(), "{:?}", out.stderr);
    let mut evs = events(&out);
    assert_eq!(
        evs.len(),
        K,
        "one event per packet sent: {:#?} {:?}",
        out.stdout,
        out.stderr
    );
    evs.sort_by_key(|e| e["ip_id"].as_u64().unwrap());
    let (mut sojourns, mut totals, mut enqueued) = (Vec::new(), Vec::new(), Vec::new());
    for e in &evs {
        assert_eq!(e["path"], "system_tx");
        assert_eq!(e["l4_protocol"], "udp");
        assert_eq!(e["dst_port"], 7301);
        // Where the kernel has fentry/kprobes the path starts at the socket layer.
        let names = stage_names(e);
        let tail = [
            "phy_queue",
            "phy_qdisc_dequeue",
            "phy_start_xmit",
            "phy_xmit",
        ];
        assert!(
            names.ends_with(&tail.map(String::from)),
            "stages {names:?}: {e:#}"
        );
        let head = &names[..names.len() - tail.len()];
        assert!(
            head.iter().all(|n| n == "ip_send_skb" || n == "ip_output"),
            "stages {names:?}: {e:#}"
        );
        assert_stages_sum_to_total(e);
        sojourns.push(f64_of(&stage(e, "phy_qdisc_dequeue").unwrap()["delta_us"]) / 1e6);
        totals.push(f64_of(&e["total_us"]) / 1e6);
        enqueued.push(stage(e, "phy_queue").unwrap()["ts_ns"].as_u64().unwrap());
    }
    // The shaper's delay is in the qdisc stage, packet by packet, against the ground truth
    // at both ends: packet i was enqueued during its sendto() (sent[i]) and left the qdisc
    // shortly before the receiving veth stamped it (arrivals[i]). So the tool's enqueue time
    // lies within the sendto() and its dequeue time just before the stamp; the slack is the
    // path from the dequeue to the peer's receive (microseconds; more in the TCG guests of
    // the VM tier). This holds however late the shaper's timer fires: in TCG guests of a
    // loaded host it fired 5-15 ms late per packet, which no shaper model predicts.
    // A single packet's path can stall far longer in a TCG guest whose vCPU thread the host
    // preempted (14 ms seen in CI), so that bound is loose there and the median is tight.
    let (slack, median_slack) = if vm_tier() {
        (60_000_000, 5_000_000)
    } else {
        (2_000_000, 1_000_000)
    };
    let mut paths = Vec::new();
    for (i, (e, (s, a))) in evs.iter().zip(sent.iter().zip(&arrivals)).enumerate() {
        assert_eq!(a.seq, i as u32, "datagram {i} lost: {arrivals:?}");
        let queued = stage(e, "phy_queue").unwrap()["ts_ns"].as_u64().unwrap();
        let dequeued = stage(e, "phy_qdisc_dequeue").unwrap()["ts_ns"]
            .as_u64()
            .unwrap();
        assert!(
            (s.before_ns..=s.after_ns).contains(&queued),
            "packet {i}: enqueued at {queued} ns, outside its sendto() {s:?}"
        );
        assert!(
            dequeued <= a.kernel_ns && a.kernel_ns - dequeued < slack,
            "packet {i}: dequeued at {dequeued} ns, received at {} ns",
            a.kernel_ns
        );
        paths.push(a.kernel_ns - dequeued);
    }
    paths.sort_unstable();
    assert!(
        paths[K / 2] < median_slack,
        "from the dequeue to the peer's receive (ns, sorted): {paths:?}"
    );
    // And the shaper did hold them: it starts with a full bucket when packet 0 arrives, and
    // packet i cannot leave before its computed departure (less 2 ms for timer slack); a
    // late shaper only adds.
    let expect: Vec<f64> = expect
        .iter()
        .zip(&enqueued)
        .map(|(d, &t)| (d - (t - enqueued[0]) as f64 / 1e9).max(0.0))
        .collect();
    let expected_sum: f64 = expect.iter().sum();
    let sum: f64 = sojourns.iter().sum();
    assert!(
        sum > 0.9 * expected_sum,
        "qdisc sojourns sum {sum:.4} s, expected at least {expected_sum:.4} s: {sojourns:?}"
    );
    for (i, (got, want)) in sojourns.iter().zip(&expect).enumerate() {
        assert!(
            *got > want - 0.002,
            "packet {i}: sojourn {got:.5} s, expected at least {want:.5} s"
        );
        // Where the shaper held a packet for long, that is most of its whole path (less a
        // stall of the rest of it).
        if *want > 0.02 {
            assert!(
                got / totals[i] > 0.8 || totals[i] - got < slack as f64 / 1e9,
                "packet {i}: {got} s of {} s",
                totals[i]
            );
        }
    }

    let out = summary.stop(Signal::SIGINT);
    assert!(out.status.success(), "{:?}", out.stderr);
    let r = last_report(&out);
    assert_eq!(r["started"], K as u64, "{r:#}");
    assert_eq!(r["completed"], K as u64, "{r:#}");
    assert_eq!(r["evicted"], 0, "{r:#}");
    let total = hist(&r, "system_tx", "total", "");
    assert_eq!(total["count"], K as u64);
    assert_eq!(total["unit"], "ns");
    let q = hist(&r, "system_tx", "phy_queue", "phy_qdisc_dequeue");
    assert_eq!(q["count"], K as u64);
    // The max is the longest sojourn itself (not its log2 bucket's bound): the details' longest,
    // as the other tool's programs timed it (in a TCG guest each program run takes a while).
    let max_ns = q["max"].as_u64().unwrap() as f64;
    let longest = sojourns.iter().cloned().fold(0.0, f64::max) * 1e9;
    assert!(
        (max_ns - longest).abs() < 0.02 * longest,
        "{q:#} vs {longest}"
    );
    assert!(q["p999"].as_u64().unwrap() as f64 <= max_ns, "{q:#}");
    let bucket_sum: u64 = q["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    assert_eq!(bucket_sum, K as u64);
    let flows = r["flows"].as_array().unwrap();
    assert_eq!(flows.len(), 1, "{flows:#?}");
    assert_eq!(flows[0]["count"], K as u64);
    assert_eq!(flows[0]["dst_port"], 7301);

    let out = total_only.stop(Signal::SIGINT);
    assert!(out.status.success(), "{:?}", out.stderr);
    let r = last_report(&out);
    assert_eq!(r["started"], K as u64, "{r:#}");
    assert_eq!(r["completed"], K as u64, "{r:#}");
    assert_eq!(r["evicted"], 0, "{r:#}");
    let total = hist(&r, "system_tx", "total", "");
    assert_eq!(total["count"], K as u64, "{total:#}");
    let longest = totals.iter().cloned().fold(0.0, f64::max) * 1e9;
    let max_ns = total["max"].as_u64().unwrap() as f64;
    assert!(
        (max_ns - longest).abs() < 0.02 * longest,
        "{total:#} vs {longest}"
    );
    let flows = r["flows"].as_array().unwrap();
    assert_eq!(flows.len(), 1, "{flows:#?}");
    assert_eq!(flows[0]["count"], K as u64);

    let out = qdisc.stop(Signal::SIGINT);
    assert!(out.status.success(), "{:?}", out.stderr);
    let mut qe = events(&out);
    assert_eq!(qe.len(), K, "{:#?}", out.stdout);
    // In the order they left the qdisc: the qlen each dequeue leaves is the kernel's count
    // then. IP ids give the send order, which need not be the dequeue order (seen once in
    // CI, by ip_id: `.., 6, 5, 5, 4, .., 1`).
    qe.sort_by_key(|e| {
        stage(e, "qdisc_dequeue").unwrap()["ts_ns"]
            .as_u64()
            .unwrap()
    });
    let qlens: Vec<u64> = qe
        .iter()
        .map(|e| stage(e, "qdisc_dequeue").unwrap()["qlen"].as_u64().unwrap())
        .collect();
    assert_eq!(
        *qlens.last().unwrap(),
        0,
        "the last packet leaves an empty qdisc: {qlens:?}"
    );
    // Each qlen against the queue the other tool's times give: the packets enqueued before
    // that dequeue and not yet dequeued. How long it grows depends on the sender's speed
    // against the shaper's (a sender preempted mid-burst lets it shrink and grow again). One
    // packet may be between net_dev_queue (the enqueue time taken) and the qdisc.
    let by_id = |e: &Value| e["ip_id"].as_u64().unwrap();
    let mut times: Vec<(u64, u64, u64)> = evs
        .iter()
        .map(|e| {
            let ts = |name| stage(e, name).unwrap()["ts_ns"].as_u64().unwrap();
            (ts("phy_qdisc_dequeue"), ts("phy_queue"), by_id(e))
        })
        .collect();
    times.sort_unstable();
    let queue: Vec<u64> = times
        .iter()
        .enumerate()
        .map(|(i, &(dequeued, _, _))| {
            let before = times.iter().filter(|t| t.1 < dequeued).count();
            (before - (i + 1)) as u64
        })
        .collect();
    let order: Vec<u64> = qe.iter().map(by_id).collect();
    let expected_order: Vec<u64> = times.iter().map(|t| t.2).collect();
    assert_eq!(
        order, expected_order,
        "both tools saw the same dequeue order"
    );
    assert!(
        qlens.iter().zip(&queue).all(|(&q, &t)| q.abs_diff(t) <= 1),
        "qlens {qlens:?}, the queue from the enqueue and dequeue times {queue:?}"
    );
    assert!(
        queue.iter().max().unwrap() >= &(K as u64 / 4),
        "the burst queued: {queue:?}"
    );

    let out = metrics.stop(Signal::SIGINT);
    assert!(out.status.success(), "{:?}", out.stderr);
    let me = events(&out);
    assert_eq!(me.len(), K);
    for e in &me {
        let s = stage(e, "phy_queue").unwrap();
        assert_eq!(s["ifname"], "va", "{e:#}");
        assert!(s["len"].as_u64().unwrap() >= frame_len as u64, "{e:#}");
        assert!(stage(e, "phy_qdisc_dequeue").unwrap()["qlen"].is_u64());
    }
}

#[test]
fn a_stopped_tap_reader_is_the_ring_stage_and_the_threshold_takes_only_slow_packets() {
    require_root();
    let vl = VmLab::new("lring");
    let port: u16 = 7302;
    let port_s = port.to_string();
    let args = |threshold: Option<&str>, summary: bool| -> Vec<String> {
        let mut v: Vec<String> = [
            "--netns",
            vl.lab.b.as_str(),
            "--phy-interface",
            Lab::B_IF,
            "--vm-interface",
            vl.tap,
            "--direction",
            "rx",
            "--protocol",
            "udp",
            "--dst-port",
            &port_s,
            "--json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(t) = threshold {
            v.extend(["--latency-us".to_string(), t.to_string()]);
        }
        if summary {
            v.extend(["--stage-latency", "-i", "600"].map(String::from));
        }
        v
    };
    let run = |bin: &str, a: Vec<String>| {
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        ToolRun::start(bin, &refs)
    };
    let slow = run(VM_DETAILS, args(Some("100000"), false));
    let all = run(VM_METRICS, args(None, false));
    let summary = run(VM_SUMMARY, args(None, true));
    let dst = SocketAddrV4::new(vl.vm_ip, port);
    const FAST: usize = 10;
    const SLOW: usize = 7;
    const STOPPED: Duration = Duration::from_millis(400);
    quiet(|| {
        send_udp(&vl.lab.a, None, dst, FAST, 200);
        wait_until("the fast packets read", WAIT, || {
            vl.vm.udp_frames_to(port) == FAST as u64
        });
        vl.vm.pause();
        send_udp(&vl.lab.a, None, dst, SLOW, 200);
        std::thread::sleep(STOPPED);
        vl.vm.resume();
        wait_until("the slow packets read", WAIT, || {
            vl.vm.udp_frames_to(port) == (FAST + SLOW) as u64
        });
        std::thread::sleep(Duration::from_millis(100));
    });

    let out = slow.stop(Signal::SIGINT);
    assert!(out.status.success(), "{:?}", out.stderr);
    let evs = events(&out);
    assert_eq!(
        evs.len(),
        SLOW,
        "exactly the packets that waited for the stopped reader: {:#?}",
        out.stdout
    );
    for e in &evs {
        assert_eq!(e["path"], "vm_rx");
        let names = stage_names(e);
        assert_eq!(names.first().map(String::as_str), Some("phy_rx"), "{e:#}");
        assert!(
            names.ends_with(&["tap_xmit".into(), "vm_read".into()]),
            "{e:#}"
        );
        assert!(names.contains(&"tap_queue".to_string()), "{e:#}");
        let ring = f64_of(&stage(e, "vm_read").unwrap()["delta_us"]);
        let stopped_us = STOPPED.as_secs_f64() * 1e6;
        assert!(ring >= stopped_us * 0.9, "ring stage {ring} us: {e:#}");
        assert!(
            ring <= stopped_us + 300_000.0,
            "ring stage {ring} us: {e:#}"
        );
        // The other stages take microseconds, or tens of milliseconds where the host
        // preempted a TCG guest's vCPU (17 ms between tap_queue and tap_xmit seen on 6.1).
        let rest = f64_of(&e["total_us"]) - ring;
        let rest_bound = if vm_tier() { 60_000.0 } else { 5_000.0 };
        assert!(rest < rest_bound, "{rest} us outside the ring stage: {e:#}");
        assert_eq!(stage(e, "tap_xmit").unwrap()["ifname"], vl.tap);
        assert_stages_sum_to_total(e);
    }

    let out = all.stop(Signal::SIGINT);
    assert!(out.status.success(), "{:?}", out.stderr);
    let evs = events(&out);
    assert_eq!(evs.len(), FAST + SLOW, "{:#?}", out.stdout);
    let fast = evs
        .iter()
        .filter(|e| f64_of(&e["total_us"]) < 100_000.0)
        .count();
    assert_eq!(fast, FAST);
    for e in &evs {
        assert_eq!(stage(e, "phy_rx").unwrap()["ifname"], Lab::B_IF, "{e:#}");
    }

    let out = summary.stop(Signal::SIGINT);
    assert!(out.status.success(), "{:?}", out.stderr);
    let r = last_report(&out);
    assert_eq!(r["started"], (FAST + SLOW) as u64, "{r:#}");
    assert_eq!(r["completed"], (FAST + SLOW) as u64, "{r:#}");
    let ring = hist(&r, "vm_rx", "tap_xmit", "vm_read");
    assert_eq!(ring["count"], (FAST + SLOW) as u64, "{ring:#}");
    assert!(ring["max"].as_u64().unwrap() as f64 >= STOPPED.as_secs_f64() * 1e9 * 0.9);
    let slow_buckets: u64 = ring["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["low"].as_u64().unwrap() >= 100_000_000)
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    assert_eq!(slow_buckets, SLOW as u64, "{ring:#}");
    assert_eq!(
        hist(&r, "vm_rx", "total", "")["count"],
        (FAST + SLOW) as u64
    );
}

#[test]
fn a_full_tap_ring_counts_as_dropped() {
    require_root();
    let vl = VmLab::new("lfull");
    let tool = ToolRun::start(
        VM_SUMMARY,
        &[
            "--netns",
            &vl.lab.b,
            "--phy-interface",
            Lab::B_IF,
            "--vm-interface",
            vl.tap,
            "--direction",
            "rx",
            "--protocol",
            "udp",
            "--dst-port",
            "7307",
            "--json",
            "-i",
            "600",
        ],
    );
    let ring = u64::from(netprobe_lab::latency::TAP_TXQUEUELEN);
    const EXTRA: u64 = 100;
    let (read, sent) = quiet(|| {
        vl.vm.pause();
        // In batches: the veth's backlog (netdev_max_backlog) must not drop any on the way.
        for _ in 0..(ring + EXTRA) / 50 {
            send_udp(&vl.lab.a, None, SocketAddrV4::new(vl.vm_ip, 7307), 50, 64);
            std::thread::sleep(Duration::from_millis(2));
        }
        wait_until("the tap's ring full and dropping", WAIT, || {
            read_stat(&vl.lab.b, vl.tap, "tx_dropped") >= EXTRA
        });
        vl.vm.resume();
        let t0 = std::time::Instant::now();
        while vl.vm.udp_frames_to(7307) < ring && t0.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(20));
        }
        // The ring may hold a frame or two that are not ours (an ARP from the bridge).
        let read = vl.vm.udp_frames_to(7307);
        let sent = ring + EXTRA;
        assert!(read <= ring && read + 5 >= ring, "read {read}");
        std::thread::sleep(Duration::from_millis(100));
        (read, sent)
    });
    let out = tool.stop(Signal::SIGINT);
    assert!(out.status.success(), "{:?}", out.stderr);
    let r = last_report(&out);
    assert_eq!(r["started"], sent, "{r:#}");
    assert_eq!(r["completed"], read, "{r:#}");
    assert_eq!(r["dropped"], sent - read, "{r:#}");
    assert!(read_stat(&vl.lab.b, vl.tap, "tx_dropped") >= sent - read);
    assert_eq!(r["evicted"], 0, "{r:#}");
    assert_eq!(r["active"], 0, "{r:#}");
}

#[test]
fn the_vm_interrupt_after_a_tap_read_is_the_vm_notified_stage() {
    require_root();
    let vl = VmLab::new("lnotify");
    vl.vm
        .enable_irqfd_notify()
        .expect("KVM irqfd for the tap reader");
    let tool = ToolRun::start(
        VM_SUMMARY,
        &[
            "--netns",
            &vl.lab.b,
            "--phy-interface",
            Lab::B_IF,
            "--vm-interface",
            vl.tap,
            "--direction",
            "rx",
            "--protocol",
            "udp",
            "--dst-port",
            "7308",
            "--stage-latency",
            "--json",
            "-i",
            "600",
        ],
    );
    let dst = SocketAddrV4::new(vl.vm_ip, 7308);
    let (before, signals) = quiet(|| {
        send_udp(&vl.lab.a, None, dst, 10, 64);
        wait_until("read", WAIT, || vl.vm.udp_frames_to(7308) == 10);
        // 20 more wait for the stopped reader, which then reads them in one batch and signals
        // the VM once.
        vl.vm.pause();
        let before = vl.vm.notifications();
        send_udp(&vl.lab.a, None, dst, 20, 64);
        std::thread::sleep(Duration::from_millis(100));
        vl.vm.resume();
        wait_until("read", WAIT, || vl.vm.udp_frames_to(7308) == 30);
        std::thread::sleep(Duration::from_millis(100));
        (before, vl.vm.notifications())
    });
    assert_eq!(signals - before, 1, "one batch, one interrupt");
    let out = tool.stop(Signal::SIGINT);
    assert!(out.status.success(), "{:?}", out.stderr);
    let r = last_report(&out);
    assert_eq!(r["completed"], 30, "{r:#}");
    let n = hist(&r, "vm_rx", "vm_read", "vm_notified");
    let count = n["count"].as_u64().unwrap();
    // Every interrupt that followed a read of ours, no more (a batch of other frames, an
    // ARP, may be signalled too).
    assert!(
        count >= 2 && count <= signals,
        "{count} of {signals}: {n:#}"
    );
    assert!(n["max"].as_u64().unwrap() < 100_000_000, "{n:#}");
}

#[test]
fn vm_writes_are_timed_to_the_physical_interface() {
    require_root();
    let vl = VmLab::new("lvmtx");
    let port: u16 = 7303;
    let port_s = port.to_string();
    let tool = ToolRun::start(
        VM_DETAILS,
        &[
            "--netns",
            &vl.lab.b,
            "--phy-interface",
            Lab::B_IF,
            "--vm-interface",
            vl.tap,
            "--direction",
            "tx",
            "--vm-ip",
            &vl.vm_ip.to_string(),
            "--protocol",
            "udp",
            "--dst-port",
            &port_s,
            "--json",
        ],
    );
    let summary = ToolRun::start(
        VM_SUMMARY,
        &[
            "--netns",
            &vl.lab.b,
            "--phy-interface",
            Lab::B_IF,
            "--vm-interface",
            vl.tap,
            "--protocol",
            "udp",
            "--dst-port",
            &port_s,
            "--json",
            "-i",
            "600",
        ],
    );
    const N: usize = 9;
    let ids = vl
        .vm
        .send_udp_from_vm(vl.lab.a_mac, vl.lab.a_ip, port, 4000, N, 100);
    wait_until("the VM's packets on va", WAIT, || {
        read_stat(&vl.lab.a, Lab::A_IF, "rx_packets") >= N as u64
    });
    std::thread::sleep(Duration::from_millis(200));
    let out = tool.stop(Signal::SIGINT);
    assert!(out.status.success(), "{:?}", out.stderr);
    let evs = events(&out);
    assert_eq!(evs.len(), N, "{:#?}", out.stdout);
    let mut seen: Vec<u64> = evs.iter().map(|e| e["ip_id"].as_u64().unwrap()).collect();
    seen.sort_unstable();
    let mut want: Vec<u64> = ids.iter().map(|&i| u64::from(i)).collect();
    want.sort_unstable();
    assert_eq!(seen, want, "the VM's own IP ids");
    for e in &evs {
        assert_eq!(e["path"], "vm_tx");
        assert_eq!(e["src_ip"], vl.vm_ip.to_string());
        let names = stage_names(e);
        assert_eq!(names.first().map(String::as_str), Some("vm_write"), "{e:#}");
        assert_eq!(names.last().map(String::as_str), Some("phy_xmit"), "{e:#}");
        for s in ["vm_receive", "phy_queue", "phy_start_xmit"] {
            assert!(names.iter().any(|n| n == s), "{s} missing: {e:#}");
        }
        assert_eq!(stage(e, "vm_write").unwrap()["ifname"], vl.tap);
        assert_eq!(stage(e, "phy_xmit").unwrap()["ifname"], Lab::B_IF);
        assert_stages_sum_to_total(e);
    }
    let out = summary.stop(Signal::SIGINT);
    let r = last_report(&out);
    assert_eq!(hist(&r, "vm_tx", "total", "")["count"], N as u64, "{r:#}");
    assert_eq!(hist(&r, "vm_rx", "total", "")["count"], 0, "{r:#}");
    assert_eq!(r["completed"], N as u64, "{r:#}");
}

#[test]
fn icmp_rtt_on_both_hosts_fits_inside_the_ping_rtt() {
    require_root();
    let lab = Lab::new("lrtt");
    lab.resolve_neighbour();
    let pinger = ToolRun::start(
        ICMP_RTT,
        &[
            "--netns",
            &lab.a,
            "--phy-interface",
            Lab::A_IF,
            "--direction",
            "tx",
            "--dst-ip",
            &lab.b_ip.to_string(),
            "--json",
        ],
    );
    let responder = ToolRun::start(
        ICMP_RTT,
        &[
            "--netns",
            &lab.b,
            "--interface",
            Lab::B_IF,
            "--direction",
            "rx",
            "--json",
        ],
    );
    const N: u32 = 10;
    // -U: ping's RTT from before its sendto() to after its recvmsg(), which contains every
    // kernel stage of the echo.
    let replies = ping_with(&lab.a, lab.b_ip, N, 50, &["-U"]);
    assert_eq!(replies.len(), N as usize, "{replies:?}");
    std::thread::sleep(Duration::from_millis(100));
    let a = events(&pinger.stop(Signal::SIGINT));
    let b = events(&responder.stop(Signal::SIGINT));
    assert_eq!(a.len(), N as usize, "{a:#?}");
    assert_eq!(b.len(), N as usize, "{b:#?}");
    let ts = |e: &Value, s: &str| stage(e, s).unwrap()["ts_ns"].as_u64().unwrap();
    for r in &replies {
        let find = |evs: &[Value]| -> Value {
            evs.iter()
                .find(|e| e["seq"] == r.seq && Some(e["id"].as_u64().unwrap() as u16) == r.ident)
                .cloned()
                .unwrap_or_else(|| panic!("seq {} ident {:?} missing", r.seq, r.ident))
        };
        let (ea, eb) = (find(&a), find(&b));
        assert_eq!(
            stage_names(&ea),
            [
                "req_phy_queue",
                "req_phy_start_xmit",
                "req_phy_xmit",
                "rep_phy_rx",
                "rep_phy_receive",
                "rep_sock_read"
            ]
        );
        assert_eq!(stage_names(&eb)[0], "req_phy_rx");
        assert_eq!(stage_names(&eb).last().unwrap(), "rep_phy_xmit");
        assert_stages_sum_to_total(&ea);
        assert_stages_sum_to_total(&eb);
        let (rtt_a, rtt_b) = (f64_of(&ea["rtt_us"]), f64_of(&eb["rtt_us"]));
        assert!(
            rtt_a <= r.rtt_us + 1.0,
            "seq {}: kernel RTT {rtt_a} us > ping's user-to-user {} us",
            r.seq,
            r.rtt_us
        );
        assert!(
            rtt_b < rtt_a,
            "seq {}: responder {rtt_b} >= pinger {rtt_a}",
            r.seq
        );
        // The responder's part lies inside the pinger's: same clock, one machine.
        assert!(ts(&ea, "req_phy_start_xmit") <= ts(&eb, "req_phy_rx"));
        assert!(ts(&eb, "rep_phy_start_xmit") <= ts(&ea, "rep_phy_rx"));
        assert_eq!(ea["src_ip"], lab.a_ip.to_string());
        assert_eq!(eb["src_ip"], lab.a_ip.to_string(), "keyed as the request");
    }
}

/// The stage names `--list-probes` prints for a tool's paths.
fn listed_stages(bin: &str, args: &[&str]) -> Vec<String> {
    let mut a = args.to_vec();
    a.push("--list-probes");
    let out = run_tool(bin, &a);
    assert!(out.status.success(), "{:?}", out.stderr);
    // Stage lines are indented under their "path NAME:" line, before the plan's lines.
    let mut in_path = false;
    let mut names = Vec::new();
    for l in &out.stdout {
        if l.starts_with("path ") {
            in_path = true;
        } else if !l.starts_with("  ") {
            in_path = false;
        } else if in_path {
            names.extend(l.split_whitespace().next().map(str::to_string));
        }
    }
    names
}

/// Reads `n` UDP datagrams on `port` in namespace `ns`, in a thread.
fn udp_reader(ns: &str, port: u16, n: usize) -> std::thread::JoinHandle<usize> {
    let ns = ns.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        in_netns(&ns, move || {
            let sock = std::net::UdpSocket::bind(("0.0.0.0", port)).unwrap();
            sock.set_read_timeout(Some(WAIT)).unwrap();
            tx.send(()).unwrap();
            let mut buf = [0u8; 2048];
            (0..n).take_while(|_| sock.recv(&mut buf).is_ok()).count()
        })
    });
    rx.recv_timeout(WAIT).expect("UDP reader bound");
    h
}

/// Sends `bytes` over a TCP connection from `a` to `b` (accepted and read in `b`).
fn tcp_exchange(a: &str, b: &str, dst: SocketAddrV4, bytes: usize) {
    use std::io::{Read, Write};
    let (tx, rx) = std::sync::mpsc::channel();
    let b = b.to_string();
    let server = std::thread::spawn(move || {
        in_netns(&b, move || {
            let l = std::net::TcpListener::bind(("0.0.0.0", dst.port())).unwrap();
            tx.send(()).unwrap();
            let (mut c, _) = l.accept().unwrap();
            let mut got = Vec::new();
            c.read_to_end(&mut got).unwrap();
            got.len()
        })
    });
    rx.recv_timeout(WAIT).expect("TCP listener bound");
    in_netns(a, move || {
        let mut c = std::net::TcpStream::connect_timeout(&dst.into(), WAIT).unwrap();
        c.write_all(&vec![7u8; bytes]).unwrap();
    });
    assert_eq!(server.join().unwrap(), bytes);
}

#[test]
fn every_stage_of_the_plan_fires() {
    require_root();
    let lab = Lab::new("lall");
    // A qdisc on va, so that its dequeue stage has something to see (veths have none).
    let _q = Tbf::install(
        &lab.a,
        Lab::A_IF,
        1_000_000_000,
        100_000,
        TbfQueue::Bytes(1_000_000),
    );
    let tx_args = [
        "--netns",
        lab.a.as_str(),
        "--phy-interface",
        Lab::A_IF,
        "--direction",
        "tx",
        "--json",
    ];
    let rx_args = [
        "--netns",
        lab.b.as_str(),
        "--phy-interface",
        Lab::B_IF,
        "--direction",
        "rx",
        "--json",
    ];
    let want_tx = listed_stages(SYS_DETAILS, &tx_args);
    let want_rx = listed_stages(SYS_DETAILS, &rx_args);
    assert!(
        want_tx.len() >= 4 && want_rx.len() >= 4,
        "{want_tx:?} {want_rx:?}"
    );
    let tx = ToolRun::start(SYS_DETAILS, &tx_args);
    let rx = ToolRun::start(SYS_DETAILS, &rx_args);
    let reader = udp_reader(&lab.b, 7305, 5);
    send_udp(&lab.a, None, SocketAddrV4::new(lab.b_ip, 7305), 5, 100);
    assert_eq!(reader.join().unwrap(), 5);
    tcp_exchange(&lab.a, &lab.b, SocketAddrV4::new(lab.b_ip, 7306), 3000);
    assert_eq!(ping(&lab.a, lab.b_ip, 2, 50).len(), 2);
    std::thread::sleep(Duration::from_millis(200));
    for (tool, want) in [(tx, want_tx), (rx, want_rx)] {
        let out = tool.stop(Signal::SIGINT);
        assert!(out.status.success(), "{:?}", out.stderr);
        let evs = events(&out);
        let seen: std::collections::BTreeSet<String> = evs.iter().flat_map(stage_names).collect();
        for s in &want {
            assert!(
                seen.contains(s),
                "stage {s} of the plan never fired (seen: {seen:?}) in {} events",
                evs.len()
            );
        }
    }
}

/// Per-flow totals of every interval of a summary run, by destination port.
fn flow_counts_by_dst_port(out: &ToolOutput) -> std::collections::BTreeMap<u64, u64> {
    let mut by_port = std::collections::BTreeMap::new();
    for r in out.json().into_iter().filter(|v| v["type"] == "interval") {
        for f in r["flows"].as_array().unwrap() {
            *by_port.entry(f["dst_port"].as_u64().unwrap()).or_default() +=
                f["count"].as_u64().unwrap();
        }
    }
    by_port
}

#[test]
fn per_flow_totals_are_exact_across_flows_and_intervals() {
    require_root();
    let lab = Lab::new("lflw");
    lab.resolve_neighbour();
    // va has no qdisc: each packet's state stays in its CPU's transmit slot, and its flow's
    // totals in the CPU's run of that flow until another flow (or the interval) ends it.
    let tool = ToolRun::start(
        SYS_SUMMARY,
        &[
            "--netns",
            &lab.a,
            "--phy-interface",
            Lab::A_IF,
            "--direction",
            "tx",
            "--protocol",
            "udp",
            "--json",
            "--top",
            "10",
            "-i",
            "1",
        ],
    );
    let to = |port| SocketAddrV4::new(lab.b_ip, port);
    quiet(|| {
        send_udp(&lab.a, None, to(7310), 300, 32);
        // Across at least one interval boundary: the first report, with the first flow in it.
        wait_until("the first interval report", WAIT, || {
            tool.stdout_so_far()
                .iter()
                .any(|l| l.contains("\"type\":\"interval\""))
        });
        send_udp(&lab.a, None, to(7311), 200, 32);
        send_udp(&lab.a, None, to(7312), 100, 32);
        send_udp(&lab.a, None, to(7311), 50, 32);
        std::thread::sleep(Duration::from_millis(200));
    });
    let out = tool.stop(Signal::SIGINT);
    assert!(out.status.success(), "{:?}", out.stderr);
    let reports: Vec<Value> = out
        .json()
        .into_iter()
        .filter(|v| v["type"] == "interval")
        .collect();
    assert!(reports.len() >= 2, "{:?}", out.stdout);
    let sum = |field: &str| -> u64 { reports.iter().map(|r| r[field].as_u64().unwrap()).sum() };
    assert_eq!(sum("started"), 650);
    assert_eq!(sum("completed"), 650);
    assert_eq!(sum("evicted"), 0);
    let by_port = flow_counts_by_dst_port(&out);
    assert_eq!(
        by_port,
        std::collections::BTreeMap::from([(7310, 300), (7311, 250), (7312, 100)]),
        "{:?}",
        out.stdout
    );
}

#[test]
fn sampling_tracks_one_packet_in_n() {
    require_root();
    let lab = Lab::new("lsmp");
    lab.resolve_neighbour();
    let tool = ToolRun::start(
        SYS_SUMMARY,
        &[
            "--netns",
            &lab.a,
            "--phy-interface",
            Lab::A_IF,
            "--direction",
            "tx",
            "--protocol",
            "udp",
            "--dst-port",
            "7304",
            "--sample",
            "4",
            "--json",
            "-i",
            "600",
        ],
    );
    const N: usize = 2000;
    quiet(|| {
        send_udp(&lab.a, None, SocketAddrV4::new(lab.b_ip, 7304), N, 32);
        std::thread::sleep(Duration::from_millis(200));
    });
    let out = tool.stop(Signal::SIGTERM);
    assert!(out.status.success(), "{:?}", out.stderr);
    let r = last_report(&out);
    let started = r["started"].as_u64().unwrap();
    // Binomial(2000, 1/4): mean 500, sigma 19.4; 6 sigma either way.
    assert!((384..=616).contains(&started), "{r:#}");
    assert_eq!(r["completed"], started, "{r:#}");
}

#[test]
fn list_probes_shows_each_stage_and_its_hook() {
    require_root();
    let lab = VmLab::new("llist");
    let out = run_tool(
        VM_SUMMARY,
        &[
            "--netns",
            &lab.lab.b,
            "--phy-interface",
            Lab::B_IF,
            "--vm-interface",
            lab.tap,
            "--stage-latency",
            "--list-probes",
        ],
    );
    assert!(out.status.success(), "{:?}", out.stderr);
    let text = out.stdout.join("\n");
    for s in [
        "vm_write",
        "vm_receive",
        "phy_queue",
        "phy_xmit",
        "phy_rx",
        "tap_xmit",
        "vm_read",
    ] {
        let line = out
            .stdout
            .iter()
            .find(|l| l.split_whitespace().next() == Some(s))
            .unwrap_or_else(|| panic!("stage {s} not listed:\n{text}"));
        assert!(
            line.contains("tp_btf/") || line.contains("tracepoint/"),
            "{line}"
        );
    }
    assert!(
        text.contains("path vm_tx:") && text.contains("path vm_rx:"),
        "{text}"
    );
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    require_root();
    let cases: &[(&str, &[&str])] = &[
        (SYS_SUMMARY, &["--phy-interface", "nosuchif0"]),
        (SYS_SUMMARY, &[]),
        (
            SYS_SUMMARY,
            &["--phy-interface", "lo", "--src-ip", "10.0.0.300"],
        ),
        (
            SYS_SUMMARY,
            &["--phy-interface", "lo", "--dst-port", "70000"],
        ),
        (SYS_SUMMARY, &["--phy-interface", "lo", "--sample", "0"]),
        (SYS_SUMMARY, &["--phy-interface", "lo", "--sort-by", "p42"]),
        (
            SYS_DETAILS,
            &["--phy-interface", "lo", "--latency-us", "-5"],
        ),
        (SYS_DETAILS, &["--phy-interface", "lo,nosuchif1"]),
        (
            VM_SUMMARY,
            &[
                "--phy-interface",
                "lo",
                "--vm-interface",
                "lo",
                "--vm-ip",
                "10.0.0.1",
            ],
        ),
        (VM_DETAILS, &["--phy-interface", "lo"]),
        (
            VM_DETAILS,
            &["--phy-interface", "lo", "--vm-interface", "lo"],
        ),
        (ICMP_RTT, &["--phy-interface", "lo", "--direction", "both"]),
        (ICMP_RTT, &["--phy-interface", "lo", "--latency-ms", "-1"]),
        (QDISC, &["--dev", "nosuchif2"]),
        (QDISC, &["--dev", "lo", "--netns", "np-no-such-netns"]),
    ];
    for (bin, args) in cases {
        let out = run_tool(bin, args);
        let name = bin.rsplit('/').next().unwrap();
        let lines: Vec<&String> = out.stderr.iter().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{name} {args:?}: {:?}",
            out.stderr
        );
        assert_eq!(lines.len(), 1, "{name} {args:?}: {:?}", out.stderr);
        assert!(
            lines[0].starts_with(&format!("{name}: error: ")),
            "{}",
            lines[0]
        );
        assert!(!lines[0].contains("panicked"), "{}", lines[0]);
        assert!(out.stdout.is_empty(), "{name} {args:?}: {:?}", out.stdout);
    }
}

#[test]
fn signals_leave_no_latency_program_behind() {
    require_root();
    let lab = Lab::new("lsig");
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        let tool = ToolRun::start(
            SYS_SUMMARY,
            &["--netns", &lab.a, "--phy-interface", Lab::A_IF, "-i", "600"],
        );
        let ids = netprobe_lab::cost::Progs::of_process(tool.pid())
            .unwrap()
            .ids();
        assert!(ids.len() >= 3, "the tool holds its programs: {ids:?}");
        let out = tool.stop(sig);
        assert!(out.status.success(), "{sig:?}: {:?}", out.stderr);
        assert!(
            out.stdout.iter().any(|l| l.contains("total latency")),
            "a last report at exit: {:?}",
            out.stdout
        );
        wait_until("the tool's programs unloaded", WAIT, || {
            let loaded = loaded_prog_ids();
            ids.iter().all(|id| !loaded.contains(id))
        });
    }
}

/// A VM's path through Open vSwitch's kernel datapath: the lab's namespace `a` stands for the
/// VM (its veth peer is the "tap", an OVS port), the other port is the "physical" side. With
/// flows installed up front every echo request passes receive, lookup and send; with a
/// reactive upcall handler only the first one goes up to userspace and comes back.
/// Where there is no openvswitch module (the development host), `--ovs` is one clear error.
#[test]
fn ovs_datapath_stages_fire_per_packet() {
    use netprobe_lab::ovs::{kernel_has_ovs, OvsLab, UpcallMode};
    if !kernel_has_ovs() {
        let out = run_tool(
            VM_DETAILS,
            &["--phy-interface", "lo", "--vm-interface", "lo", "--ovs"],
        );
        assert!(!out.status.success());
        let out = run_tool(SYS_SUMMARY, &["--phy-interface", "lo", "--ovs"]);
        assert_eq!(out.status.code(), Some(2), "{:?}", out.stderr);
        assert!(
            out.stderr
                .iter()
                .any(|l| l.contains("--internal-interface")),
            "{:?}",
            out.stderr
        );
        let lab = Lab::new("lovx");
        let out = run_tool(
            VM_DETAILS,
            &[
                "--netns",
                &lab.a,
                "--phy-interface",
                Lab::A_IF,
                "--vm-interface",
                "lo",
                "--ovs",
            ],
        );
        assert_eq!(out.status.code(), Some(1), "{:?}", out.stderr);
        assert_eq!(out.stderr.len(), 1, "{:?}", out.stderr);
        assert!(
            out.stderr[0].contains("modprobe openvswitch"),
            "{:?}",
            out.stderr
        );
        return;
    }
    const N: u32 = 5;
    for reactive in [false, true] {
        let lab = OvsLab::new(if reactive { "lor" } else { "lop" })
            .unwrap_or_else(|e| panic!("OVS lab: {e}"));
        let (a, b) = (lab.a_port, lab.b_port);
        if reactive {
            lab.dp.set_upcall_mode(UpcallMode::Reactive {
                pairs: vec![(a, b), (b, a)],
            });
        } else {
            lab.dp.forward_between(a, b).unwrap();
        }
        let [vm_if, phy_if] = &lab.host_ifs;
        let args = [
            "--vm-interface",
            vm_if,
            "--phy-interface",
            phy_if,
            "--direction",
            "tx",
            "--protocol",
            "icmp",
            "--ovs",
        ];
        // What this kernel offers, shown if the test fails.
        let plan = run_tool(VM_DETAILS, &[&args[..], &["--list-probes"]].concat());
        eprintln!("{}\n{}", plan.stdout.join("\n"), plan.stderr.join("\n"));
        let tool = ToolRun::start(VM_DETAILS, &[&args[..], &["--json"]].concat());
        let replies = quiet(|| {
            let r = ping(&lab.a, lab.b_ip, N, 200);
            std::thread::sleep(Duration::from_millis(200));
            r
        });
        assert_eq!(replies.len(), N as usize, "{replies:?}");
        let out = tool.stop(Signal::SIGINT);
        assert!(out.status.success(), "{:?}", out.stderr);
        let mut evs = events(&out);
        assert_eq!(evs.len(), N as usize, "{:#?}", out.stdout);
        evs.sort_by_key(|e| e["stages"][0]["ts_ns"].as_u64().unwrap());
        for (i, e) in evs.iter().enumerate() {
            assert_eq!(e["path"], "vm_tx", "{e:#}");
            let names = stage_names(e);
            let upcalled = reactive && i == 0;
            let mut want = vec!["vm_write", "vm_receive", "ovs_receive", "ovs_process"];
            if upcalled {
                want.extend(["ovs_upcall", "ovs_execute"]);
            }
            want.extend(["ovs_send", "phy_queue", "phy_start_xmit", "phy_xmit"]);
            assert_eq!(names, want, "packet {i} (reactive: {reactive}): {e:#}");
            assert_stages_sum_to_total(e);
        }
        if reactive {
            // The upcall is the slow path: slower than every megaflow hit after it.
            let total = |e: &Value| f64_of(&e["total_us"]);
            assert!(
                evs[1..].iter().all(|e| total(e) < total(&evs[0])),
                "{:#?}",
                evs.iter().map(total).collect::<Vec<_>>()
            );
        }
    }
}
