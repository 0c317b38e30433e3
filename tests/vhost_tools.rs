//! Integration tests of vhost_eventfd_count and vhost_queue_status: a vhost-net device driven
//! from user space (`netprobe_lab::vhost::VhostNet`: a tap as its backend, the virtqueues in
//! this process's memory) moves a known number of frames each way; the tools' counts per
//! virtqueue must match — buffers used, the worker's tap reads, and the guest notifications,
//! which the call eventfds count themselves.
//!
//! Where the tests run decides what they assert, never silently:
//! - VM tier (`NETPROBE_TEST_TIER=vm`, vhost_net loaded): vhost-net must be there; with the
//!   vhost module's BTF (5.11+) the counts are asserted under the fentry and the kprobe plans,
//!   every chosen probe must have fired; without it (5.10) the tool must say so in one line.
//! - The development host (no vhost_net): the tool must fail with the one line naming it.
//!
//! Needs root (CI runs as root): without it every test fails, none is skipped.
use netprobe_lab::vhost::VhostNet;
use netprobe_lab::*;
use nix::sys::signal::Signal;
use serde_json::Value;
use std::time::Duration;

const COUNT: &str = env!("CARGO_BIN_EXE_vhost_eventfd_count");
const WAIT: Duration = Duration::from_secs(10);

/// The tools see every vhost-net device of the machine: one test at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn vm_tier() -> bool {
    std::env::var("NETPROBE_TEST_TIER").as_deref() == Ok("vm")
}

/// Where vhost-net cannot be watched here, asserts the tool's one-line reason and returns
/// false; true where the tests can run.
fn vhost_watchable(tool: &str, args: &[&str]) -> bool {
    let present = VhostNet::available();
    assert!(
        present || !vm_tier(),
        "the VM tier loads vhost_net: /dev/vhost-net must exist"
    );
    let reason = if !present {
        "vhost_net is not loaded"
    } else if !std::path::Path::new("/sys/kernel/btf/vhost").exists() {
        "the vhost module has no BTF"
    } else {
        return true;
    };
    let out = run_tool(tool, &[args, &["--duration", "0.2"][..]].concat());
    assert_eq!(out.status.code(), Some(1), "{:?}", out.stderr);
    assert_eq!(out.stderr.len(), 1, "one line: {:?}", out.stderr);
    assert!(out.stderr[0].contains(reason), "{:?}", out.stderr);
    false
}

/// The tool's rows for tap `tap`, summed over every interval, by role.
#[derive(Debug, Default)]
struct Sums {
    signal_calls: u64,
    used: u64,
    signals: u64,
    handle_runs: u64,
    tap_reads: u64,
    tap_writes: u64,
    no_interrupt_calls: u64,
    rows: Vec<Value>,
}

fn sums(out: &ToolOutput, tap: &str, role: &str) -> Sums {
    let mut s = Sums::default();
    for v in out.json().iter().filter(|v| v["type"] == "interval") {
        for q in v["queues"].as_array().expect("queues") {
            if q["device"] != tap || q["role"] != role {
                continue;
            }
            let n = |k: &str| q[k].as_u64().unwrap_or_else(|| panic!("{k} in {q:#}"));
            s.signal_calls += n("signal_calls");
            s.used += n("used");
            s.signals += n("signals");
            s.handle_runs += n("handle_runs");
            // Reads are an RX queue's, writes a TX queue's; the other is null.
            let (own, other) = if role == "rx" {
                ("tap_reads", "tap_writes")
            } else {
                ("tap_writes", "tap_reads")
            };
            assert!(q[other].is_null(), "{other} in {q:#}");
            *if role == "rx" {
                &mut s.tap_reads
            } else {
                &mut s.tap_writes
            } += n(own);
            s.no_interrupt_calls += n("no_interrupt_calls");
            s.rows.push(q.clone());
        }
    }
    s
}

fn start(tool: &str, disable: Option<&str>, args: &[&str]) -> ToolRun {
    match disable {
        Some(d) => {
            let env = format!("NETPROBE_DISABLE={d}");
            let mut v = vec![env.as_str(), tool];
            v.extend_from_slice(args);
            ToolRun::start("env", &v)
        }
        None => ToolRun::start(tool, args),
    }
}

/// Moves 10 frames to the "guest" and 20 from it under the plan `disable` leaves, and asserts
/// the counts of both virtqueues against the driver's own.
fn counts_match(disable: Option<&str>, kind: &str, tag: &str) {
    let _serial = serial();
    let ns = format!("np-vh{tag}-{}", std::process::id());
    let tap = format!("npvh{tag}");
    let mut dev = VhostNet::create(&ns, &tap).unwrap_or_else(|e| panic!("{e}"));
    let tool = start(COUNT, disable, &["--json", "-i", "0.5", "-d", &tap]);
    let ready = tool.stderr_so_far().join("\n");
    assert!(
        ready.contains(&format!("{kind}/vhost_add_used_and_signal_n")),
        "{ready}"
    );
    quiet(|| {
        dev.deliver(10, WAIT).unwrap_or_else(|e| panic!("{e}"));
        dev.transmit(20, WAIT).unwrap_or_else(|e| panic!("{e}"));
    });
    let (rx_calls, tx_calls) = (dev.take_rx_calls(), dev.take_tx_calls());
    let out = tool.stop(Signal::SIGINT);
    assert!(out.status.success(), "{:?}", out.stderr);
    let me = u64::from(std::process::id());

    let rx = sums(&out, &tap, "rx");
    assert_eq!(rx.used, 10, "{rx:#?}");
    assert_eq!(rx.tap_reads, 10, "one tun_recvmsg per frame: {rx:#?}");
    assert_eq!(rx.signals, rx_calls, "the RX call eventfd's count: {rx:#?}");
    assert!(rx.signals >= 1 && rx.signals <= rx.signal_calls, "{rx:#?}");
    assert!(rx.handle_runs >= 1, "handle_rx fired: {rx:#?}");
    assert_eq!(rx.no_interrupt_calls, 0, "{rx:#?}");
    let tx = sums(&out, &tap, "tx");
    assert_eq!(tx.used, 20, "{tx:#?}");
    assert!(tx.tap_writes >= 1, "tun_sendmsg fired: {tx:#?}");
    assert_eq!(tx.signals, tx_calls, "the TX call eventfd's count: {tx:#?}");
    assert!(tx.signals >= 1 && tx.signals <= tx.signal_calls, "{tx:#?}");
    assert!(tx.handle_runs >= 1, "handle_tx fired: {tx:#?}");
    for q in rx.rows.iter().chain(&tx.rows) {
        assert_eq!(q["vmm_pid"], me, "the VMM is this process: {q:#}");
        assert_eq!(q["queue"], 0, "{q:#}");
        assert_eq!(q["last"]["num"], 256, "{q:#}");
        assert_eq!(q["last"]["event_idx"], false, "{q:#}");
        assert_eq!(q["last"]["avail_flags"], 0, "read from this process: {q:#}");
    }
    // Each queue has its own call eventfd, stable over the run.
    let ctx = |s: &Sums| s.rows[0]["eventfd"].as_str().unwrap().to_string();
    assert_ne!(ctx(&rx), ctx(&tx));
    assert!(rx.rows.iter().all(|q| q["eventfd"] == ctx(&rx).as_str()));
}

#[test]
fn counts_match_a_user_space_vring_driver_under_fentry_and_kprobes() {
    require_root();
    if !vhost_watchable(COUNT, &[]) {
        return;
    }
    counts_match(None, "fentry", "f");
    counts_match(Some("fentry"), "kprobe", "k");
}

#[test]
fn a_guest_that_suppresses_interrupts_gets_no_signal() {
    require_root();
    if !vhost_watchable(COUNT, &[]) {
        return;
    }
    let _serial = serial();
    let ns = format!("np-vhn-{}", std::process::id());
    let tap = "npvhn";
    let mut dev = VhostNet::create(&ns, tap).unwrap_or_else(|e| panic!("{e}"));
    dev.set_rx_no_interrupt(true);
    let tool = ToolRun::start(COUNT, &["--json", "-i", "0.5", "-d", tap]);
    quiet(|| dev.deliver(12, WAIT).unwrap_or_else(|e| panic!("{e}")));
    let rx_calls = dev.take_rx_calls();
    let out = tool.stop(Signal::SIGINT);
    assert!(out.status.success(), "{:?}", out.stderr);
    let rx = sums(&out, tap, "rx");
    assert_eq!(rx_calls, 0, "vhost signalled a guest with NO_INTERRUPT set");
    assert_eq!(rx.used, 12, "{rx:#?}");
    assert_eq!(rx.signals, 0, "{rx:#?}");
    assert!(rx.signal_calls >= 1, "{rx:#?}");
    assert_eq!(rx.no_interrupt_calls, rx.signal_calls, "{rx:#?}");
    assert!(
        rx.rows.iter().all(|q| q["last"]["avail_flags"] == 1),
        "{rx:#?}"
    );
}

#[test]
fn the_text_report_has_a_row_per_virtqueue_with_units() {
    require_root();
    if !vhost_watchable(COUNT, &[]) {
        return;
    }
    let _serial = serial();
    let ns = format!("np-vht-{}", std::process::id());
    let tap = "npvht";
    let mut dev = VhostNet::create(&ns, tap).unwrap_or_else(|e| panic!("{e}"));
    let tool = ToolRun::start(COUNT, &["-i", "60", "-d", tap]);
    quiet(|| {
        dev.deliver(6, WAIT).unwrap_or_else(|e| panic!("{e}"));
        dev.transmit(4, WAIT).unwrap_or_else(|e| panic!("{e}"));
    });
    let out = tool.stop(Signal::SIGINT);
    assert!(out.status.success(), "{:?}", out.stderr);
    // Uncaptured, so the VM log shows a real sample for the README.
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "{}", out.stdout.join("\n"));
    let header = out
        .stdout
        .iter()
        .find(|l| l.starts_with("VMM PID"))
        .unwrap_or_else(|| panic!("{:#?}", out.stdout));
    for col in ["USED (bufs)", "SIGNALS (irqs)", "TAP READS (pkts)"] {
        assert!(header.contains(col), "{header}");
    }
    for role in ["rx 0x", "tx 0x"] {
        assert!(
            out.stdout
                .iter()
                .any(|l| l.contains(tap) && l.contains(role)),
            "{role}: {:#?}",
            out.stdout
        );
    }
    assert!(
        out.stdout
            .iter()
            .any(|l| l.starts_with("total 10 buffers used")),
        "{:#?}",
        out.stdout
    );
}

const TAP_VHOST: &str = env!("CARGO_BIN_EXE_tun_to_vhost_queue_status_simple_summary");

/// The tap queue's rows summed over every interval: (xmit, full, drops) of its ring, (used,
/// calls, signals, empty calls) of its RX virtqueue, used of its TX virtqueue; and the last
/// RX virtqueue entry.
#[derive(Debug, Default)]
struct QueueSums {
    xmit: u64,
    full: u64,
    drops: u64,
    rx_used: u64,
    rx_calls: u64,
    rx_signals: u64,
    rx_empty_calls: u64,
    tx_used: u64,
    last_rx: Value,
}

fn queue_sums(out: &ToolOutput, queue: u64) -> QueueSums {
    let mut s = QueueSums::default();
    for v in out.json().iter().filter(|v| v["type"] == "interval") {
        for q in v["queues"].as_array().expect("queues") {
            if q["queue"] != queue {
                continue;
            }
            let n = |x: &Value, k: &str| x[k].as_u64().unwrap_or(0);
            s.xmit += n(&q["ring"], "xmit");
            s.full += n(&q["ring"], "full");
            s.drops += n(&q["ring"], "drops");
            s.rx_used += n(&q["rx"], "used");
            s.rx_calls += n(&q["rx"], "signal_calls");
            s.rx_signals += n(&q["rx"], "signals");
            s.rx_empty_calls += n(&q["rx"], "empty_calls");
            s.tx_used += n(&q["tx"], "used");
            if !q["rx"].is_null() {
                s.last_rx = q["rx"].clone();
            }
        }
    }
    s
}

#[test]
fn the_tap_ring_and_its_virtqueues_line_up_per_queue() {
    require_root();
    if !vhost_watchable(TAP_VHOST, &["-d", "lo"]) {
        return;
    }
    let _serial = serial();
    let ns = format!("np-vhq-{}", std::process::id());
    let tap = "npvhq";
    let mut dev = VhostNet::create(&ns, tap).unwrap_or_else(|e| panic!("{e}"));
    let tool = ToolRun::start(
        TAP_VHOST,
        &["-d", tap, "--netns", &ns, "-i", "0.5", "--json"],
    );
    quiet(|| {
        dev.deliver(10, WAIT).unwrap_or_else(|e| panic!("{e}"));
        dev.transmit(5, WAIT).unwrap_or_else(|e| panic!("{e}"));
    });
    let rx_calls = dev.take_rx_calls();
    let out = tool.stop(Signal::SIGINT);
    assert!(out.status.success(), "{:?}", out.stderr);
    let s = queue_sums(&out, 0);
    assert_eq!((s.xmit, s.full, s.drops), (10, 0, 0), "{s:#?}");
    assert_eq!(s.rx_used, 10, "{s:#?}");
    assert_eq!(s.rx_signals, rx_calls, "{s:#?}");
    assert_eq!(s.tx_used, 5, "{s:#?}");
    assert_eq!(s.last_rx["device"], tap, "{s:#?}");
}

#[test]
fn a_guest_out_of_buffers_fills_the_tap_ring() {
    require_root();
    if !vhost_watchable(TAP_VHOST, &["-d", "lo"]) {
        return;
    }
    let _serial = serial();
    let ns = format!("np-vhs-{}", std::process::id());
    let tap = "npvhs";
    let dev = VhostNet::create(&ns, tap).unwrap_or_else(|e| panic!("{e}"));
    dev.set_txqueuelen(64);
    let tool = ToolRun::start(
        TAP_VHOST,
        &["-d", tap, "--netns", &ns, "-i", "0.5", "--json"],
    );
    let text = ToolRun::start(TAP_VHOST, &["-d", tap, "--netns", &ns, "-i", "60"]);
    // Twice what the posted buffers, the tap's ring and vhost's own batch can hold.
    const SENT: usize = 600;
    quiet(|| dev.flood(SENT));
    // The counts are taken as each call starts, before it publishes the used index.
    wait_until("vhost filled every posted buffer", WAIT, || {
        dev.rx_used() == VhostNet::RX_BUFFERS
    });
    let out = tool.stop(Signal::SIGINT);
    assert!(out.status.success(), "{:?}", out.stderr);
    let text = text.stop(Signal::SIGINT);
    assert!(text.status.success(), "{:?}", text.stderr);
    // Uncaptured, so the VM log shows a real sample for the README.
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "{}", text.stdout.join("\n"));
    // The irqfd point is self-tested (fentry attaches and never runs on Debian's 6.12): a
    // fallback says so, and the candidate in use is in the JSON plan.
    let self_tests: Vec<&String> = out
        .stderr
        .iter()
        .filter(|l| l.contains("self-test"))
        .collect();
    let _ = writeln!(std::io::stderr().lock(), "self-test lines: {self_tests:?}");
    for l in &self_tests {
        assert!(
            l.contains("using kprobe/irqfd_wakeup (it runs)"),
            "a fallback that runs: {l}"
        );
    }
    let irqfd_plan = if self_tests.is_empty() {
        "fentry/irqfd_wakeup"
    } else {
        "kprobe/irqfd_wakeup"
    };
    let first = out
        .json()
        .into_iter()
        .find(|v| v["type"] == "interval")
        .expect("an interval");
    assert!(
        first["probe"]
            .as_str()
            .is_some_and(|p| p.contains(irqfd_plan)),
        "plan {} should use {irqfd_plan}",
        first["probe"]
    );
    assert!(
        text.stdout.iter().any(|l| l.starts_with("QUEUE")
            && l.contains("RX USED (bufs)")
            && l.contains("FULL (pkts)")),
        "{:#?}",
        text.stdout
    );
    assert_eq!(
        dev.rx_used(),
        VhostNet::RX_BUFFERS,
        "no buffer past those posted"
    );
    let s = queue_sums(&out, 0);
    assert_eq!(s.xmit, SENT as u64, "{s:#?}");
    assert_eq!(s.rx_used, u64::from(VhostNet::RX_BUFFERS), "{s:#?}");
    assert!(s.full > 0 && s.full < SENT as u64, "{s:#?}");
    // A full xmit is a FULL_RING drop, but for a race at the edge: the ring is read just
    // before tun_net_xmit produces, and vhost may free a slot in between (seen: 409 full, 408
    // dropped).
    assert!(
        s.drops <= s.full && s.full - s.drops <= 2,
        "each full xmit is a FULL_RING drop: {s:#?}"
    );
    // The diagnosis: the guest posted nothing more.
    assert!(s.rx_empty_calls >= 1, "{s:#?}");
    assert_eq!(s.last_rx["last"]["pending"], 0, "{s:#?}");
}

const CHAIN: &str = env!("CARGO_BIN_EXE_tun_tx_to_kvm_irq");

#[test]
fn the_chain_from_the_tap_to_the_guests_interrupt_counts_each_link() {
    use netprobe_lab::kvm::{KvmIrqLab, MSI_GSI, MSI_VECTOR};
    require_root();
    if !vhost_watchable(CHAIN, &["-d", "lo"]) {
        return;
    }
    let _serial = serial();
    let mut kvm = KvmIrqLab::create().unwrap_or_else(|e| panic!("{e}"));
    kvm.run_guest().unwrap_or_else(|e| panic!("{e}"));
    let ns = format!("np-vhc-{}", std::process::id());
    let tap = "npvhc";
    let call = kvm.msi_irqfd_eventfd().unwrap_or_else(|e| panic!("{e}"));
    let mut dev = VhostNet::create_with_rx_call(&ns, tap, call).unwrap_or_else(|e| panic!("{e}"));
    let tool = ToolRun::start(CHAIN, &["-d", tap, "--netns", &ns, "-i", "0.5", "--json"]);
    let text = ToolRun::start(CHAIN, &["-d", tap, "--netns", &ns, "-i", "60"]);
    quiet(|| dev.deliver(10, WAIT).unwrap_or_else(|e| panic!("{e}")));
    let guest = kvm.guest().expect("the guest runs");
    guest
        .wait_taken(MSI_VECTOR, 1, WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    let out = tool.stop(Signal::SIGINT);
    assert!(out.status.success(), "{:?}", out.stderr);
    let text = text.stop(Signal::SIGINT);
    assert!(text.status.success(), "{:?}", text.stderr);
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "{}", text.stdout.join("\n"));

    let (mut xmit, mut used, mut signals, mut wakeups, mut accepted) = (0, 0, 0, 0, 0);
    let mut last = Value::Null;
    for v in out.json().iter().filter(|v| v["type"] == "interval") {
        for q in v["queues"].as_array().expect("queues") {
            assert_eq!(q["queue"], 0, "{q:#}");
            let n = |k: &str| q[k].as_u64().unwrap_or(0);
            xmit += n("xmit");
            used += n("used");
            signals += n("signals");
            wakeups += n("irqfd_wakeups");
            accepted += n("accepted");
            if !q["gsi"].is_null() {
                last = q.clone();
            }
        }
    }
    assert_eq!((xmit, used), (10, 10), "{:#?}", out.stdout);
    assert!(signals >= 1, "{:#?}", out.stdout);
    assert_eq!(
        wakeups, signals,
        "each signal woke the irqfd: {:#?}",
        out.stdout
    );
    assert_eq!(
        accepted, wakeups,
        "each wakeup was accepted: {:#?}",
        out.stdout
    );
    assert_eq!(last["gsi"], MSI_GSI, "{last:#}");
    assert_eq!(last["vector"], MSI_VECTOR, "{last:#}");
    assert_eq!(last["vm_pid"], u64::from(std::process::id()), "{last:#}");
    drop(dev);
    kvm.stop_guest().unwrap_or_else(|e| panic!("{e}"));
}

const PEEK: &str = env!("CARGO_BIN_EXE_vhost_buf_peek_stats");

#[test]
fn buf_peeks_see_each_packet_once_under_fexit_and_kretprobes() {
    require_root();
    if !vhost_watchable(PEEK, &[]) {
        return;
    }
    for (disable, kind, tag) in [(None, "fexit", "x"), (Some("fentry"), "kretprobe", "r")] {
        let _serial = serial();
        let ns = format!("np-vhp{tag}-{}", std::process::id());
        let tap = format!("npvhp{tag}");
        let mut dev = VhostNet::create(&ns, &tap).unwrap_or_else(|e| panic!("{e}"));
        let tool = start(PEEK, disable, &["--json", "-i", "0.5", "-d", &tap]);
        let ready = tool.stderr_so_far().join("\n");
        assert!(
            ready.contains(&format!("{kind}/vhost_net_buf_peek")),
            "{ready}"
        );
        let text = start(PEEK, disable, &["-i", "60", "-d", &tap]);
        quiet(|| dev.deliver(10, WAIT).unwrap_or_else(|e| panic!("{e}")));
        let out = tool.stop(Signal::SIGINT);
        assert!(out.status.success(), "{:?}", out.stderr);
        let text = text.stop(Signal::SIGINT);
        assert!(text.status.success(), "{:?}", text.stderr);
        // Uncaptured, so the VM log shows a real sample for the README.
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), "{}", text.stdout.join("\n"));
        assert!(
            text.stdout
                .iter()
                .any(|l| l.starts_with("VMM PID") && l.contains("MEAN LEN (bytes)")),
            "{:#?}",
            text.stdout
        );
        let (mut peeks, mut empty, mut bytes) = (0, 0, 0.0);
        for v in out.json().iter().filter(|v| v["type"] == "interval") {
            for q in v["queues"].as_array().expect("queues") {
                if q["device"] != tap.as_str() || q["role"] != "rx" {
                    assert!(q["buf_peeks"].is_null(), "{q:#}");
                    continue;
                }
                let p = &q["buf_peeks"];
                let n = p["peeks"].as_u64().unwrap() - p["empty"].as_u64().unwrap();
                peeks += n;
                empty += p["empty"].as_u64().unwrap();
                bytes += n as f64 * p["mean_len_bytes"].as_f64().unwrap();
            }
        }
        // One peek per packet in handle_rx's loop; an empty one where a batch ran out.
        assert_eq!(peeks, 10, "{kind}: {:#?}", out.stdout);
        assert!(empty >= 1, "{kind}: {:#?}", out.stdout);
        assert_eq!(bytes / peeks as f64, 60.0, "{kind}: the frames' length");
    }
}

const DETAILS: &str = env!("CARGO_BIN_EXE_vhost_queue_correlation_details");
const SIMPLE: &str = env!("CARGO_BIN_EXE_vhost_queue_correlation_simple");

/// Events of one kind (and role) in a run's JSON.
fn events_of<'a>(evs: &'a [Value], kind: &str, role: Option<&str>) -> Vec<&'a Value> {
    evs.iter()
        .filter(|e| e["kind"] == kind && role.is_none_or(|r| e["role"] == r))
        .collect()
}

/// Two vhost-net devices move frames; the per-event tools follow one tap: every event is
/// its, in the numbers the driver counts (buffers used, tap reads, call-eventfd signals), with
/// the vring's state read at each used+signal and worker run.
#[test]
fn each_event_of_one_tap_queue_is_reported_with_its_vring_state() {
    require_root();
    if !vhost_watchable(DETAILS, &["-d", "npvhe"]) {
        return;
    }
    let _serial = serial();
    let ns = format!("np-vhe-{}", std::process::id());
    let other_ns = format!("np-vho-{}", std::process::id());
    let (tap, other_tap) = ("npvhe", "npvho");
    let mut dev = VhostNet::create(&ns, tap).unwrap_or_else(|e| panic!("{e}"));
    let mut other = VhostNet::create(&other_ns, other_tap).unwrap_or_else(|e| panic!("{e}"));
    let details = ToolRun::start(DETAILS, &["--json", "-d", tap]);
    let simple = ToolRun::start(SIMPLE, &["--json", "-d", tap, "-q", "0"]);
    let text = ToolRun::start(DETAILS, &["-d", tap]);
    quiet(|| {
        dev.deliver(10, WAIT).unwrap_or_else(|e| panic!("{e}"));
        other.deliver(7, WAIT).unwrap_or_else(|e| panic!("{e}"));
        dev.transmit(20, WAIT).unwrap_or_else(|e| panic!("{e}"));
    });
    let (rx_calls, tx_calls) = (dev.take_rx_calls(), dev.take_tx_calls());
    let details = details.stop(Signal::SIGINT);
    assert!(details.status.success(), "{:?}", details.stderr);
    let simple = simple.stop(Signal::SIGINT);
    assert!(simple.status.success(), "{:?}", simple.stderr);
    let text = text.stop(Signal::SIGINT);
    assert!(text.status.success(), "{:?}", text.stderr);
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "{}", text.stdout.join("\n"));

    let me = u64::from(std::process::id());
    let evs: Vec<Value> = details
        .json()
        .into_iter()
        .filter(|v| v["type"] == "vhost")
        .collect();
    for e in &evs {
        assert_eq!(e["device"], tap, "only the followed tap: {e:#}");
        assert_eq!(e["queue"], 0, "{e:#}");
        assert_eq!(e["vmm_pid"], me, "{e:#}");
    }
    let used = |role| -> u64 {
        events_of(&evs, "signal", Some(role))
            .iter()
            .map(|e| e["count"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(used("rx"), 10, "{evs:#?}");
    assert_eq!(used("tx"), 20, "{evs:#?}");
    assert_eq!(
        events_of(&evs, "tap_read", None).len(),
        10,
        "one tun_recvmsg per frame"
    );
    assert!(!events_of(&evs, "tap_write", None).is_empty(), "{evs:#?}");
    assert_eq!(
        events_of(&evs, "eventfd", Some("rx")).len() as u64,
        rx_calls
    );
    assert_eq!(
        events_of(&evs, "eventfd", Some("tx")).len() as u64,
        tx_calls
    );
    assert!(rx_calls >= 1 && tx_calls >= 1);
    assert!(
        !events_of(&evs, "handle", Some("rx")).is_empty(),
        "{evs:#?}"
    );
    assert!(
        !events_of(&evs, "handle", Some("tx")).is_empty(),
        "{evs:#?}"
    );
    for e in events_of(&evs, "signal", None)
        .into_iter()
        .chain(events_of(&evs, "handle", None))
    {
        assert_eq!(e["state"]["num"], 256, "{e:#}");
        assert_eq!(
            e["state"]["avail_flags"], 0,
            "read from this process: {e:#}"
        );
    }
    // The simple tool: the same signals and eventfd signals, nothing else.
    let simple: Vec<Value> = simple
        .json()
        .into_iter()
        .filter(|v| v["type"] == "vhost")
        .collect();
    assert!(simple
        .iter()
        .all(|e| e["kind"] == "signal" || e["kind"] == "eventfd"));
    assert_eq!(
        events_of(&simple, "signal", None).len(),
        events_of(&evs, "signal", None).len()
    );
    assert_eq!(
        events_of(&simple, "eventfd", None).len() as u64,
        rx_calls + tx_calls
    );
    assert!(
        text.stdout
            .iter()
            .any(|l| l.contains("used+signal") && l.contains(tap)),
        "{:#?}",
        text.stdout
    );
}

const STATS: &str = env!("CARGO_BIN_EXE_tun_to_vhost_queue_stats_summary");

/// The depth histograms count what they sample: one ring depth per worker read (a frame
/// each), one avail-pending and one in-flight value per used+signal call, a fill per sampled
/// xmit. vhost takes the ring in batches before it reads (vhost_net_buf), so the depth at a
/// read is what the batch left: at most what was sent. 128 buffers posted, 10 taken: 118
/// pending at the one call.
#[test]
fn the_depth_histograms_count_each_read_and_each_used_signal() {
    require_root();
    if !vhost_watchable(STATS, &["-d", "lo"]) {
        return;
    }
    let _serial = serial();
    let ns = format!("np-vhh-{}", std::process::id());
    let tap = "npvhh";
    let mut dev = VhostNet::create(&ns, tap).unwrap_or_else(|e| panic!("{e}"));
    let tool = ToolRun::start(STATS, &["-d", tap, "--netns", &ns, "-i", "60", "--json"]);
    let text = ToolRun::start(STATS, &["-d", tap, "--netns", &ns, "-i", "60"]);
    quiet(|| dev.deliver(10, WAIT).unwrap_or_else(|e| panic!("{e}")));
    let out = tool.stop(Signal::SIGINT);
    assert!(out.status.success(), "{:?}", out.stderr);
    let text = text.stop(Signal::SIGINT);
    assert!(text.status.success(), "{:?}", text.stderr);
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "{}", text.stdout.join("\n"));
    let s = queue_sums(&out, 0);
    assert_eq!((s.xmit, s.rx_used), (10, 10), "{s:#?}");
    let h = &s.last_rx["hists"];
    let count = |k: &str| {
        h[k]["count"]
            .as_u64()
            .unwrap_or_else(|| panic!("{k}: {h:#}"))
    };
    let max = |k: &str| h[k]["max"].as_u64().unwrap();
    assert_eq!(
        count("ring_depth_at_read"),
        10,
        "one per tun_recvmsg: {h:#}"
    );
    assert!(max("ring_depth_at_read") <= 10, "{h:#}");
    assert_eq!(count("avail_pending"), s.rx_calls, "{h:#}");
    assert_eq!(count("in_flight"), s.rx_calls, "{h:#}");
    let posted = VhostNet::RX_BUFFERS as u64;
    assert!(max("avail_pending") <= posted, "{h:#}");
    assert!(max("avail_pending") >= posted - 10, "{h:#}");
    assert!(max("in_flight") <= posted, "{h:#}");
    let ring = out
        .json()
        .iter()
        .filter(|v| v["type"] == "interval")
        .flat_map(|v| v["queues"].as_array().cloned().unwrap_or_default())
        .find(|q| q["queue"] == 0 && !q["ring"].is_null())
        .expect("queue 0's ring");
    let fill = &ring["ring"]["pending_hist"];
    assert!(fill["count"].as_u64().unwrap() >= 1, "{ring:#}");
    assert!(fill["max"].as_u64().unwrap() <= 10, "{ring:#}");
    assert!(
        text.stdout
            .iter()
            .any(|l| l.contains("tap ring depth at vhost's reads (n=10)")),
        "{:#?}",
        text.stdout
    );
}
