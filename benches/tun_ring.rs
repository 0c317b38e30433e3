//! What watching a tap's rings costs per packet: `tun_ring_monitor -i 1` (a ring read at every
//! xmit, counted per queue and CPU) against the floor, a bare `tp_btf/net_dev_start_xmit`
//! program that only bumps a per-CPU counter, and no tool, in one run.
//!
//! The lab ([`Lab`] namespace A, removed whatever happens) holds a tap read by a thread of this
//! process ([`TapVm`], the "VM"); a thread in A floods 16-byte UDP datagrams (`sendmmsg`) at the
//! VM's address, so every packet is an xmit into the tap (read, or dropped when the reader is
//! behind: both are xmits). Per window of 3 s, after a warm-up: BPF ns/pkt (growth of the
//! programs' `run_time_ns`, `kernel.bpf_stats_enabled` on for the run and restored), user
//! ns/pkt (the tool's CPU time), packets = the tap's `tx_packets + tx_dropped` growth; the
//! schedule interleaves no-tool windows (DESIGN.md "Benchmarks"). Target: the tool's total at
//! most twice the floor's. Run as root:
//!
//! ```text
//! cargo bench --bench tun_ring               # 3 repetitions, about a minute
//! cargo bench --bench tun_ring -- --quick    # 1 repetition (or NETPROBE_BENCH_QUICK=1)
//! ```
use netprobe_lab::bench::{quick_requested, schedule, spread_header, table, Row, Step, XorShift};
use netprobe_lab::cost::{process_cpu_ns, BpfStatsEnabled, ProgStats, Progs};
use netprobe_lab::flood::Flooder;
use netprobe_lab::latency::{mac_string, TapVm, VM_MAC};
use netprobe_lab::testkit::DropCounter;
use netprobe_lab::{ns_exec, read_stat, Lab, ToolRun};
use nix::sys::signal::Signal;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const TOOL: &str = env!("CARGO_BIN_EXE_tun_ring_monitor");
const TAP: &str = "tq0";
const WINDOW: Duration = Duration::from_secs(3);
const WARMUP: Duration = Duration::from_millis(200);
const SETTLE: Duration = Duration::from_millis(50);
const REPS: usize = 3;
/// The tool's target, as a multiple of the floor.
const MAX_X_FLOOR: f64 = 2.0;
const CONFIGS: [&str; 2] = ["floor (counter)", "tun_ring_monitor -i 1"];

/// What one window cost, per packet.
struct Sample {
    packets: u64,
    bpf: ProgStats,
    user_ns: u64,
}

fn xmits(ns: &str) -> u64 {
    read_stat(ns, TAP, "tx_packets") + read_stat(ns, TAP, "tx_dropped")
}

/// One window: config `c` attached (`None`: no tool).
fn window(c: Option<usize>, ns: &str, flooder: &Flooder) -> Result<Sample, String> {
    let (mut floor, mut tool) = (None, None);
    match c {
        Some(0) => floor = Some(DropCounter::attach_xmit()?),
        Some(_) => {
            let args = ["-d", TAP, "--netns", ns, "-i", "1", "--json"];
            tool = Some(ToolRun::try_start(TOOL, &args, netprobe_lab::READY_MARKER)?);
        }
        None => {}
    }
    flooder.run(WARMUP)?;
    let pid = tool.as_ref().map(ToolRun::pid);
    let progs = match (&floor, pid) {
        (Some(f), _) => Some(Progs::of_fd(f.prog_fd())?),
        (_, Some(pid)) => Some(Progs::of_process(pid)?),
        _ => None,
    };
    let edge = || -> Result<(u64, ProgStats, u64), String> {
        let bpf = progs
            .as_ref()
            .map_or(Ok(ProgStats::default()), Progs::stats)?;
        Ok((xmits(ns), bpf, pid.map_or(Ok(0), process_cpu_ns)?))
    };
    thread::sleep(SETTLE);
    let (p0, b0, u0) = edge()?;
    flooder.run(WINDOW)?;
    thread::sleep(SETTLE);
    let (p1, b1, u1) = edge()?;
    if let Some(t) = tool {
        let out = t.try_stop(Signal::SIGINT)?;
        if !out.status.success() {
            return Err(format!("tool exited with {}: {:?}", out.status, out.stderr));
        }
    }
    Ok(Sample {
        packets: p1.saturating_sub(p0),
        bpf: b1.since(b0),
        user_ns: u1.saturating_sub(u0),
    })
}

fn main() {
    let quick = quick_requested();
    if !nix::unistd::geteuid().is_root() {
        eprintln!("tun_ring: needs root (namespaces, BPF): sudo -E cargo bench --bench tun_ring");
        std::process::exit(1);
    }
    match bench(if quick { 1 } else { REPS }) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("tun_ring: error: {e}");
            std::process::exit(1);
        }
    }
}

fn bench(reps: usize) -> Result<(), String> {
    let started = Instant::now();
    let stats = BpfStatsEnabled::enable()?;
    let lab = Lab::new("tunbench");
    let ns = lab.a.clone();
    let vm_ip = Ipv4Addr::new(192, 0, 2, 99);
    let vm = TapVm::create(&ns, TAP, VM_MAC, vm_ip);
    for cmd in [
        &["ip", "link", "set", TAP, "txqueuelen", "1000"][..],
        &["ip", "addr", "add", "192.0.2.1/24", "dev", TAP],
        &["ip", "link", "set", TAP, "up"],
        &[
            "ip",
            "neigh",
            "add",
            "192.0.2.99",
            "lladdr",
            &mac_string(VM_MAC),
            "dev",
            TAP,
            "nud",
            "permanent",
        ],
    ] {
        ns_exec(&ns, cmd);
    }
    let flooder = Flooder::start(
        &ns,
        Ipv4Addr::new(192, 0, 2, 1),
        SocketAddrV4::new(vm_ip, 5001),
    )?;
    flooder.run(Duration::from_millis(300))?;
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let steps = schedule(CONFIGS.len(), reps, &mut XorShift::new(seed));
    println!("netprobe tun_ring: cost per xmit into a tap read by this process ({reps} rep(s), {WINDOW:?} windows, kernel.bpf_stats_enabled was {})", stats.previous());
    let mut rows: Vec<Row> = CONFIGS.iter().map(|c| Row::new(*c)).collect();
    let mut totals = vec![Vec::new(); CONFIGS.len()];
    // Wall time per xmit of the flood (the sender is CPU-bound): no-tool windows, and each
    // configuration's windows.
    let mut bare_wall: Vec<f64> = Vec::new();
    let mut walls = vec![Vec::new(); CONFIGS.len()];
    for (k, step) in steps.iter().enumerate() {
        let c = match step {
            Step::Baseline => None,
            Step::Config(c) => Some(*c),
        };
        let s = window(c, &ns, &flooder)?;
        let per = |ns: u64| ns as f64 / s.packets.max(1) as f64;
        let name = c.map_or("no tool", |c| CONFIGS[c]);
        let wall = WINDOW.as_nanos() as f64 / s.packets.max(1) as f64;
        match c {
            Some(c) => walls[c].push(wall),
            None => bare_wall.push(wall),
        }
        eprintln!(
            "[{:>2}/{}] {name:<22} {:>8} xmits ({wall:>6.1} ns each)  BPF {:>6.1} + user {:>5.1} ns/pkt",
            k + 1,
            steps.len(),
            s.packets,
            per(s.bpf.run_ns),
            per(s.user_ns)
        );
        if let Some(c) = c {
            let row = &mut rows[c];
            row.runs += 1;
            row.count("packets", s.packets);
            row.sample("bpf_ns_per_pkt", per(s.bpf.run_ns));
            row.sample("user_ns_per_pkt", per(s.user_ns));
            row.sample("total_ns_per_pkt", per(s.bpf.run_ns) + per(s.user_ns));
            totals[c].push(per(s.bpf.run_ns) + per(s.user_ns));
        }
    }
    drop(vm);
    // What a configuration adds to the xmit's wall time, against the no-tool windows' median:
    // it counts the cache misses the kernel's own xmit would take anyway after the program.
    if let Some(bare) = netprobe_lab::bench::Spread::of(&bare_wall).map(|s| s.median) {
        for (row, w) in rows.iter_mut().zip(&walls) {
            for x in w {
                row.sample("added_wall_ns_per_pkt", x - bare);
            }
        }
    }
    let spread = |r: &Row, m: &str| r.spread(m).map_or("n/a".into(), |s| s.show());
    let mut lines = spread_header(
        &[
            "configuration",
            "runs",
            "BPF ns/pkt",
            "user ns/pkt",
            "total ns/pkt",
            "added wall ns/pkt",
        ],
        2,
    );
    for r in &rows {
        lines.push(vec![
            r.config.clone(),
            r.runs.to_string(),
            spread(r, "bpf_ns_per_pkt"),
            spread(r, "user_ns_per_pkt"),
            spread(r, "total_ns_per_pkt"),
            spread(r, "added_wall_ns_per_pkt"),
        ]);
    }
    print!("\n{}", table(&lines));
    match (rows[0].median("total_ns_per_pkt"), rows[1].median("total_ns_per_pkt")) {
        (Some(f), Some(t)) => println!(
            "verdict: tun_ring_monitor -i 1 total <= {MAX_X_FLOOR}x floor: {} ({t:.1} vs {f:.1} ns/pkt: {:.2}x; medians)",
            if t <= MAX_X_FLOOR * f { "PASS" } else { "FAIL" },
            t / f
        ),
        _ => println!("verdict: NO DATA"),
    }
    match (
        rows[0].median("added_wall_ns_per_pkt"),
        rows[1].median("added_wall_ns_per_pkt"),
    ) {
        (Some(f), Some(t)) => println!(
            "throughput: tun_ring_monitor -i 1 adds {t:.1} ns of wall time per xmit, the floor {f:.1} (medians against no tool; informational, the verdict is on BPF + user time)"
        ),
        _ => println!("throughput: NO DATA"),
    }
    for r in &rows {
        println!(
            "{}",
            serde_json::to_string(r).map_err(|e| format!("JSON: {e}"))?
        );
    }
    println!("tun_ring took {:.0?}", started.elapsed());
    Ok(())
}
