//! What the virtio-net tools cost per event: the BPF time of each program run (a NAPI poll,
//! an IRQ's entry or exit) of `virtnet_poll_monitor`, `virtnet_irq_monitor` and
//! `virtnet_poll_stack_stats`, from `kernel.bpf_stats_enabled` (on for the run, restored).
//!
//! It needs this machine's own virtio-net NIC (the default route's device) and traffic on it:
//! a `ping -f` flood of the default gateway, so every reply is an rx interrupt and poll and
//! every request a tx completion. Each window of 3 s runs one tool; the table gives program
//! runs per second and BPF ns per run, min / median / max over the repetitions. There is no
//! floor to compare with: a poll or an IRQ is far rarer than a packet, and the number to
//! watch is the cost of one. Run as root:
//!
//! ```text
//! cargo bench --bench virtio_events               # 3 repetitions, about half a minute
//! cargo bench --bench virtio_events -- --quick    # 1 repetition (or NETPROBE_BENCH_QUICK=1)
//! ```
use netprobe_lab::bench::{quick_requested, spread_header, table, Row, XorShift};
use netprobe_lab::cost::{BpfStatsEnabled, ProgStats, Progs};
use netprobe_lab::ToolRun;
use nix::sys::signal::Signal;
use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const WINDOW: Duration = Duration::from_secs(3);
const SETTLE: Duration = Duration::from_millis(100);
const REPS: usize = 3;
const TOOLS: [(&str, &str); 3] = [
    (
        "virtnet_poll_monitor",
        env!("CARGO_BIN_EXE_virtnet_poll_monitor"),
    ),
    (
        "virtnet_irq_monitor",
        env!("CARGO_BIN_EXE_virtnet_irq_monitor"),
    ),
    (
        "virtnet_poll_stack_stats",
        env!("CARGO_BIN_EXE_virtnet_poll_stack_stats"),
    ),
];

/// The default route's device and gateway (`/proc/net/route`).
fn default_route() -> Result<(String, Ipv4Addr), String> {
    let text =
        fs::read_to_string("/proc/net/route").map_err(|e| format!("/proc/net/route: {e}"))?;
    text.lines()
        .skip(1)
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let gw = u32::from_str_radix(f.get(2)?, 16).ok()?;
            (f.get(1) == Some(&"00000000") && gw != 0)
                .then(|| (f[0].to_string(), Ipv4Addr::from(gw.swap_bytes())))
        })
        .ok_or_else(|| "no default route with a gateway: the bench floods the gateway".into())
}

fn rx_packets(dev: &str) -> u64 {
    fs::read_to_string(format!("/sys/class/net/{dev}/statistics/rx_packets"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// What one window measured: each program's counters, by name, and the packets received.
struct Window {
    programs: Vec<(String, ProgStats)>,
    rx: u64,
}

/// One window of tool `t` on `dev` while `ping -f` floods `gw`.
fn window(t: usize, dev: &str, gw: Ipv4Addr) -> Result<Window, String> {
    let args = ["-d", dev, "-i", "1", "--json"];
    let tool = ToolRun::try_start(TOOLS[t].1, &args, netprobe_lab::READY_MARKER)?;
    let progs = Progs::of_process(tool.pid())?;
    thread::sleep(SETTLE);
    let (b0, rx0) = (progs.by_name(), rx_packets(dev));
    let secs = WINDOW.as_secs().to_string();
    let ping = Command::new("ping")
        .args(["-f", "-q", "-s", "16", "-w", &secs, &gw.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("ping: {e} (the bench needs iputils ping)"))?;
    let (b1, rx1) = (progs.by_name(), rx_packets(dev));
    let out = tool.try_stop(Signal::SIGINT)?;
    if !out.status.success() {
        return Err(format!("{} exited with {}", TOOLS[t].0, out.status));
    }
    if !ping.success() && rx1 == rx0 {
        return Err(format!(
            "ping -f {gw} got no reply ({ping}): no traffic to measure"
        ));
    }
    let programs = b1
        .into_iter()
        .map(|(name, now)| {
            let before = b0.iter().find(|(n, _)| *n == name).map(|(_, s)| *s);
            (name, now.since(before.unwrap_or_default()))
        })
        .collect();
    Ok(Window {
        programs,
        rx: rx1.saturating_sub(rx0),
    })
}

fn main() {
    let quick = quick_requested();
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "virtio_events: needs root (BPF, ping -f): sudo -E cargo bench --bench virtio_events"
        );
        std::process::exit(1);
    }
    if let Err(e) = bench(if quick { 1 } else { REPS }) {
        eprintln!("virtio_events: error: {e}");
        std::process::exit(1);
    }
}

fn bench(reps: usize) -> Result<(), String> {
    let started = Instant::now();
    let (dev, gw) = default_route()?;
    let driver = libnetprobe::kernel::netns::Netns::current()
        .and_then(|ns| ns.driver(&dev))
        .map_err(|e| format!("{dev}: {e}"))?
        .unwrap_or_default();
    if driver != "virtio_net" {
        return Err(format!(
            "{dev} (the default route's device) is driven by '{driver}', not virtio_net: run the bench in a VM with a virtio-net NIC"
        ));
    }
    let stats = BpfStatsEnabled::enable()?;
    println!(
        "netprobe virtio_events: BPF ns per program run on {dev}, ping -f {gw} ({reps} rep(s), {WINDOW:?} windows, kernel.bpf_stats_enabled was {})",
        stats.previous()
    );
    // One row per tool and program (BPF names are cut at 15 characters), and the tool's total.
    let mut rows: BTreeMap<(usize, String), Row> = BTreeMap::new();
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let mut rng = XorShift::new(seed);
    for rep in 0..reps {
        let mut order: Vec<usize> = (0..TOOLS.len()).collect();
        rng.shuffle(&mut order);
        for t in order {
            let w = window(t, &dev, gw)?;
            let total = w
                .programs
                .iter()
                .fold(ProgStats::default(), |a, (_, s)| ProgStats {
                    run_ns: a.run_ns + s.run_ns,
                    runs: a.runs + s.runs,
                    recursion_misses: a.recursion_misses + s.recursion_misses,
                });
            let mut lines: Vec<(String, ProgStats)> = w.programs;
            lines.push(("(all, per second of CPU)".into(), total));
            for (program, st) in lines {
                let per_run = st.run_ns as f64 / st.runs.max(1) as f64;
                let per_s = st.runs as f64 / WINDOW.as_secs_f64();
                eprintln!(
                    "[rep {}] {:<26} {program:<26} {:>7} runs ({per_s:>7.0}/s) {per_run:>7.1} ns/run  rx {}",
                    rep + 1,
                    TOOLS[t].0,
                    st.runs,
                    w.rx
                );
                let row = rows
                    .entry((t, program.clone()))
                    .or_insert_with(|| Row::new(format!("{} {program}", TOOLS[t].0)));
                row.runs += 1;
                row.count("program_runs", st.runs);
                row.count("rx_packets", w.rx);
                row.sample("runs_per_s", per_s);
                row.sample("bpf_ns_per_run", per_run);
                row.sample(
                    "bpf_ms_per_s",
                    st.run_ns as f64 / 1e6 / WINDOW.as_secs_f64(),
                );
            }
        }
    }
    let spread = |r: &Row, m: &str| r.spread(m).map_or("n/a".into(), |s| s.show());
    let mut lines = spread_header(
        &[
            "tool and program",
            "runs",
            "program runs/s",
            "BPF ns/run",
            "BPF ms per s",
        ],
        2,
    );
    for r in rows.values() {
        lines.push(vec![
            r.config.clone(),
            r.runs.to_string(),
            spread(r, "runs_per_s"),
            spread(r, "bpf_ns_per_run"),
            spread(r, "bpf_ms_per_s"),
        ]);
    }
    print!("\n{}", table(&lines));
    for r in rows.values() {
        println!(
            "{}",
            serde_json::to_string(r).map_err(|e| format!("JSON: {e}"))?
        );
    }
    println!("virtio_events took {:.0?}", started.elapsed());
    Ok(())
}
