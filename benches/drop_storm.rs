//! What watching a drop storm costs, per drop (the issue's metric): the BPF run time of a
//! tool's programs plus the tool's own CPU time, divided by the drops, beside a bare in-kernel
//! counter on the same hook (the floor) and bpftrace, in one run.
//!
//! The lab ([`Lab`], removed whatever happens) is two namespaces A and B joined by a veth pair.
//! A thread in A ([`Flooder`]) sends 16-byte UDP datagrams (`sendmmsg` x64) at a closed port in
//! B, so the kernel drops every one as `NO_SOCKET` (~250k drops/s). Veth delivery runs B's
//! receive softirq in the sender's context, so the drop path and any BPF program on
//! `kfree_skb` run on the sending thread.
//!
//! Per configuration and repetition, over the 3 s window only (counters are sampled in a quiet
//! gap right before and after it; drops = growth of B's `Udp: NoPorts`):
//! - **BPF ns/drop**: growth of `run_time_ns` of the programs the process holds (every
//!   `prog_id` in `/proc/<pid>/fdinfo`, opened by id, so bpftrace is measured the same way);
//!   `kernel.bpf_stats_enabled` is 1 for the run and restored at the end, also on error/Ctrl-C;
//! - **user ns/drop**: CPU time of the tool process (`/proc/<pid>/task/*/schedstat`);
//! - **total** = BPF + user, also as a multiple of the floor of the same repetition;
//! - **sender cost**: drops per CPU-second of the sending thread (`CLOCK_THREAD_CPUTIME_ID`)
//!   against the mean of the two neighbouring no-tool windows, as % and as extra ns per drop
//!   (`1e9/pps_tool - 1e9/pps_baseline`). It includes what run time misses (the classic
//!   tracepoint's record for bpftrace, the stats' own clock reads).
//!
//! DESIGN.md ("Benchmarks"): `no tool, A, no tool, B, …`, order shuffled per repetition,
//! min/median/max over the repetitions. Configurations:
//! - the floor: [`DropCounter`], a `tp_btf/kfree_skb` program bumping a per-CPU counter
//!   (loaded by this process, so user ns = 0);
//! - `kernel_drop_stack_stats_summary --netns B -i 600 --json` and `trace_net_drop` (same flags);
//! - `eth_drop --netns B --json --no-stack-trace` at the default rate limit (10000 events/s) and
//!   with `--max-events-per-sec 0`; stdout goes to a temporary file, read back for the summary;
//! - if `bpftrace` is on `PATH` (optional: `apt-get install bpftrace`), on
//!   `tracepoint:skb:kfree_skb`: `@[args->reason] = count()` and `@ = count()`.
//!
//! Tools start from `target/release/`, are measured once ready (`netprobe: ready`; `Attaching`
//! for bpftrace) and stop on SIGINT; their lost/rate-limited counts come from their final JSON.
//! Output: a table, verdicts for the issue's targets (summary total ≤ 2× floor; eth_drop default
//! total ≤ bpftrace by reason) and one JSON line per configuration. Run as root:
//!
//! ```text
//! cargo build --release
//! cargo bench --bench drop_storm               # 3 repetitions, about 3 minutes
//! cargo bench --bench drop_storm -- --quick    # 1 repetition (or NETPROBE_BENCH_QUICK=1)
//! ```
//!
//! `NETPROBE_BENCH_SEED=<u64>` replays an order. Every loop is bounded in time and count.

use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use netprobe_lab::bench::{schedule, table, vs_neighbours, Row, Step, XorShift};
use netprobe_lab::cost::{process_cpu_ns, reported_counters, tail_lines};
use netprobe_lab::cost::{BpfStatsEnabled, ProgStats, Progs};
use netprobe_lab::flood::{Flood, Flooder, BATCH, PAYLOAD};
use netprobe_lab::testkit::DropCounter;
use netprobe_lab::{snmp_udp_noports, Lab, ToolRun, READY_MARKER};
use nix::sys::signal::{self, SigHandler, Signal};

const WINDOW: Duration = Duration::from_secs(3);
/// Unmeasured traffic before every window (caches, first map entries).
const WARMUP: Duration = Duration::from_millis(200);
/// Quiet time after a window, so the last drops and events are processed before sampling.
const SETTLE: Duration = Duration::from_millis(50);
/// bpftrace prints `Attaching` just before it attaches: give it this long.
const ANCHOR_SETTLE: Duration = Duration::from_millis(250);
const REPS: usize = 3;
/// Destination port in B; nothing listens there.
const DST_PORT: u16 = 9;
/// The summary tool's target, as a multiple of the floor.
const SUMMARY_MAX_X_FLOOR: f64 = 2.0;
/// Index of the floor among the configurations.
const FLOOR: usize = 0;
const TOOLS: [&str; 3] = [
    "kernel_drop_stack_stats_summary",
    "trace_net_drop",
    "eth_drop",
];

/// Set by SIGINT/SIGTERM: stop after the current window and clean up.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Where a tool's stdout goes.
#[derive(Clone, Copy, PartialEq)]
enum Stdout {
    /// Captured by [`ToolRun`].
    Pipe,
    /// A temporary file (an event stream is too much to keep in memory).
    File,
    /// Onto stderr: bpftrace says `Attaching` on stdout, [`ToolRun`] waits on stderr.
    Stderr,
}

/// One configuration: the floor (empty `cmd`) or a process.
struct Config {
    name: &'static str,
    cmd: Vec<String>,
    stdout: Stdout,
}

impl Config {
    fn describe(&self) -> String {
        let Some((prog, args)) = self.cmd.split_first() else {
            return "tp_btf/kfree_skb program incrementing a per-CPU counter, in-process".into();
        };
        let prog = Path::new(prog).file_name().unwrap_or_default();
        let quote = |a: &String| {
            if a.contains(' ') {
                format!("'{a}'")
            } else {
                a.clone()
            }
        };
        let args: Vec<String> = args.iter().map(quote).collect();
        format!("{} {}", prog.to_string_lossy(), args.join(" "))
    }

    /// The command, stdout redirected by `sh`, which `exec`s (so the pid is the tool's).
    fn command(&self, out: &Path) -> Command {
        let redirect = match self.stdout {
            Stdout::Pipe => "",
            Stdout::File => r#">"$NETPROBE_BENCH_OUT""#,
            Stdout::Stderr => "1>&2",
        };
        let mut c = Command::new("sh");
        c.args(["-c", &format!(r#"exec "$0" "$@" {redirect}"#)]);
        c.args(&self.cmd).env("NETPROBE_BENCH_OUT", out);
        c
    }
}

fn configs(bin: &Path, ns_b: &str, bpftrace: Option<&Path>) -> Vec<Config> {
    let cfg = |name, program: &Path, args: &[&str], stdout| {
        let mut cmd = vec![program.display().to_string()];
        cmd.extend(args.iter().map(|a| (*a).to_string()));
        Config { name, cmd, stdout }
    };
    let [summary, trace, eth] = TOOLS.map(|t| bin.join(t));
    let interval = ["--netns", ns_b, "-i", "600", "--json"];
    let events = ["--netns", ns_b, "--json", "--no-stack-trace"];
    let unlimited = [&events[..], &["--max-events-per-sec", "0"]].concat();
    let mut v = vec![
        Config {
            name: "floor (counter)",
            cmd: Vec::new(),
            stdout: Stdout::Pipe,
        },
        cfg("summary", &summary, &interval, Stdout::Pipe),
        cfg("trace_net_drop", &trace, &interval, Stdout::Pipe),
        cfg("eth_drop (default)", &eth, &events, Stdout::File),
        cfg("eth_drop (unlimited)", &eth, &unlimited, Stdout::File),
    ];
    for (name, map) in [
        ("bpftrace by reason", "@[args->reason]"),
        ("bpftrace count", "@"),
    ] {
        let script = format!("tracepoint:skb:kfree_skb {{ {map} = count(); }}");
        if let Some(bt) = bpftrace {
            v.push(cfg(name, bt, &["-e", &script], Stdout::Stderr));
        }
    }
    v
}

/// What one window measured.
struct Sample {
    sender: Flood,
    /// Growth of B's `Udp: NoPorts` over the window.
    drops: u64,
    bpf: ProgStats,
    /// CPU time of the tool process over the window (0 for the floor and baselines).
    user_ns: u64,
    /// Counters of the tool's final JSON (whole run); `tool_drops` is what it counted.
    reported: BTreeMap<&'static str, u64>,
}

/// Why a window failed: its configuration (noted; the run goes on) or the flood (fatal).
enum Failed {
    Config(String),
    Flood(String),
}

impl From<String> for Failed {
    fn from(e: String) -> Self {
        Failed::Config(e)
    }
}

/// Removes the file on drop.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs window `k`: with `cfg` attached, or a baseline (`None`).
fn window(cfg: Option<&Config>, flooder: &Flooder, ns_b: &str, k: usize) -> Result<Sample, Failed> {
    let name = format!("netprobe-drop-storm-{}-{k}.jsonl", std::process::id());
    let out = TempFile(std::env::temp_dir().join(name));
    let (mut floor, mut tool) = (None, None);
    match cfg {
        None => {}
        Some(c) if c.cmd.is_empty() => floor = Some(DropCounter::attach()?),
        Some(c) => {
            let marker = if c.stdout == Stdout::Stderr {
                "Attaching"
            } else {
                READY_MARKER
            };
            tool = Some(ToolRun::try_start_command(c.command(&out.0), marker)?);
            if c.stdout == Stdout::Stderr {
                thread::sleep(ANCHOR_SETTLE);
            }
        }
    }
    let warm = flooder.run(WARMUP).map_err(Failed::Flood)?;
    let pid = tool.as_ref().map(ToolRun::pid);
    let progs = match (&floor, pid) {
        (Some(f), _) => Some(Progs::of_fd(f.prog_fd())?),
        (_, Some(pid)) => Some(Progs::of_process(pid)?),
        _ => None,
    };
    let edge = || -> Result<(u64, ProgStats, u64), Failed> {
        let bpf = progs
            .as_ref()
            .map_or(Ok(ProgStats::default()), Progs::stats)?;
        let user = pid.map_or(Ok(0), process_cpu_ns)?;
        Ok((snmp_udp_noports(ns_b), bpf, user))
    };
    // Sampled in quiet gaps right before and after the measured flood.
    let (n0, b0, u0) = edge()?;
    let sender = flooder.run(WINDOW).map_err(Failed::Flood)?;
    thread::sleep(SETTLE);
    let (n1, b1, u1) = edge()?;
    let mut s = Sample {
        sender,
        drops: n1.saturating_sub(n0),
        bpf: b1.since(b0),
        user_ns: u1.saturating_sub(u0),
        reported: BTreeMap::new(),
    };
    let (Some(tool), Some(c)) = (tool, cfg) else {
        return Ok(s);
    };
    let exit = tool.try_stop(Signal::SIGINT)?;
    if !exit.status.success() {
        let last = exit.stderr.last().map_or("", String::as_str);
        return Err(format!("exited with {} after SIGINT: {last}", exit.status).into());
    }
    s.reported = match c.stdout {
        Stdout::Pipe => reported_counters(exit.stdout),
        Stdout::File => reported_counters(tail_lines(&out.0, 65_536)),
        Stdout::Stderr => return Ok(s),
    };
    let counted = ["tool_drops", "rate_limited", "lost_events"].map(|k| s.reported.get(k));
    let accounted: u64 = counted.into_iter().flatten().sum();
    let sent = warm.packets + sender.packets;
    if accounted != sent {
        s.reported.insert("unaccounted", sent.abs_diff(accounted));
    }
    Ok(s)
}

fn per_drop(ns: u64, drops: u64) -> f64 {
    ns as f64 / drops as f64 // NaN (no sample) without drops
}

/// What is odd about a window.
fn oddities(s: &Sample) -> Vec<String> {
    let (drops, sent, runs) = (s.drops, s.sender.packets, s.bpf.runs);
    let mut odd = Vec::new();
    if drops != sent {
        odd.push(format!("NoPorts grew by {drops} for {sent} datagrams sent"));
    }
    if runs > drops + drops / 100 {
        let (r, ns) = (per_drop(runs, drops), per_drop(s.bpf.run_ns, runs));
        odd.push(format!(
            "BPF ran {r:.2}x per drop (other drops?), {ns:.1} ns/run"
        ));
    }
    if let Some(n) = s.reported.get("unaccounted") {
        odd.push(format!(
            "its final counts are {n} off the datagrams sent meanwhile"
        ));
    }
    odd
}

/// A window's progress line.
fn progress(s: &Sample) -> String {
    let bpf = per_drop(s.bpf.run_ns, s.drops);
    let user = per_drop(s.user_ns, s.drops);
    let (cpu, wall) = (s.sender.pps_cpu(), s.sender.pps_wall());
    format!("{cpu:>7.0} drops/CPU-s {wall:>7.0} drops/s  BPF {bpf:>6.1} + user {user:>6.1} ns/drop")
}

/// Runs every step: (repetition, sample); a failed window is `None` (and noted).
fn measure(
    steps: &[Step],
    configs: &[Config],
    flooder: &Flooder,
    ns_b: &str,
    notes: &mut Vec<String>,
) -> Result<Vec<(usize, Option<Sample>)>, String> {
    let mut done = vec![0; configs.len()];
    let mut out = Vec::with_capacity(steps.len());
    for (k, step) in steps.iter().enumerate() {
        if INTERRUPTED.load(Ordering::Relaxed) {
            return Err("interrupted; lab removed, kernel.bpf_stats_enabled restored".into());
        }
        let (cfg, rep) = match *step {
            Step::Baseline => (None, 0),
            Step::Config(c) => {
                done[c] += 1;
                (Some(&configs[c]), done[c])
            }
        };
        let name = cfg.map_or("no tool", |c| c.name);
        let sample = match window(cfg, flooder, ns_b, k) {
            Ok(s) => Some(s),
            Err(Failed::Flood(e)) => return Err(e),
            Err(Failed::Config(e)) => {
                notes.push(format!("{name} (window {}): {e}", k + 1));
                None
            }
        };
        let line = sample
            .as_ref()
            .map_or("failed (see notes)".into(), progress);
        for what in sample.iter().flat_map(oddities) {
            notes.push(format!("{name} (window {}): {what}", k + 1));
        }
        eprintln!("[{:>2}/{}] {name:<22} {line}", k + 1, steps.len());
        out.push((rep, sample));
    }
    Ok(out)
}

/// The baseline row and one row per configuration.
fn rows(
    steps: &[Step],
    configs: &[Config],
    samples: &[(usize, Option<Sample>)],
) -> (Row, Vec<Row>) {
    let mut rows: Vec<Row> = configs.iter().map(|c| Row::new(c.name)).collect();
    let mut baseline = Row::new("no tool");
    let mut totals = BTreeMap::new();
    for (step, (rep, sample)) in steps.iter().zip(samples) {
        let row = match *step {
            Step::Baseline => &mut baseline,
            Step::Config(c) => &mut rows[c],
        };
        let Some(s) = sample else {
            row.failed += 1;
            continue;
        };
        row.runs += 1;
        let Step::Config(c) = *step else {
            row.sample("sender_drops_per_cpu_s", s.sender.pps_cpu());
            continue;
        };
        let bpf = per_drop(s.bpf.run_ns, s.drops);
        let user = per_drop(s.user_ns, s.drops);
        row.sample("bpf_ns_per_drop", bpf);
        row.sample("user_ns_per_drop", user);
        row.sample("total_ns_per_drop", bpf + user);
        row.sample("bpf_runs_per_drop", per_drop(s.bpf.runs, s.drops));
        row.sample("bpf_ns_per_run", per_drop(s.bpf.run_ns, s.bpf.runs));
        row.count("drops", s.drops);
        row.count("bpf_recursion_misses", s.bpf.recursion_misses);
        s.reported.iter().for_each(|(k, n)| row.count(k, *n));
        totals.insert((c, *rep), bpf + user);
    }
    for ((c, rep), total) in &totals {
        if let Some(floor) = totals.get(&(FLOOR, *rep)) {
            rows[*c].sample("x_floor", total / floor);
        }
    }
    let pps: Vec<f64> = samples
        .iter()
        .map(|(_, s)| s.as_ref().map_or(f64::NAN, |s| s.sender.pps_cpu()))
        .collect();
    let cost = vs_neighbours(steps, &pps, configs.len(), |t, b| (1.0 - t / b) * 100.0);
    let extra = vs_neighbours(steps, &pps, configs.len(), |t, b| 1e9 / t - 1e9 / b);
    for (row, (cost, extra)) in rows.iter_mut().zip(cost.into_iter().zip(extra)) {
        row.extend("sender_cost_pct", cost);
        row.extend("sender_extra_ns_per_drop", extra);
    }
    (baseline, rows)
}

fn print_report(baseline: &Row, rows: &[Row], bpftrace: bool) {
    let spread = |r: &Row, m: &str| r.spread(m).map_or("n/a".into(), |s| s.show());
    let median = |r: &Row, m: &str| r.median(m).map_or("n/a".into(), |v| format!("{v:.2}"));
    let count = |r: &Row, k: &str| r.counted(k).map_or("-".into(), |n| n.to_string());
    let mmm = "min / median / max";
    let head = "configuration|runs|BPF ns/drop|user ns/drop|total ns/drop|x floor|sender cost %\
                |sender extra ns/drop|lost|rate-limited";
    let unit = format!("||{mmm}|{mmm}|{mmm}|median|median|{mmm}||");
    let split = |l: &str| l.split('|').map(str::to_owned).collect();
    let mut lines: Vec<Vec<String>> = vec![split(head), split(&unit)];
    for r in rows {
        let runs = match r.failed {
            0 => r.runs.to_string(),
            f => format!("{} ({f} failed)", r.runs),
        };
        lines.push(vec![
            r.config.clone(),
            runs,
            spread(r, "bpf_ns_per_drop"),
            spread(r, "user_ns_per_drop"),
            spread(r, "total_ns_per_drop"),
            median(r, "x_floor"),
            r.median("sender_cost_pct")
                .map_or("n/a".into(), |v| format!("{v:.1}")),
            spread(r, "sender_extra_ns_per_drop"),
            count(r, "lost_events"),
            count(r, "rate_limited"),
        ]);
    }
    println!(
        "\nno tool: {} windows, sender {} drops/CPU-s ({mmm})\n",
        baseline.runs,
        spread(baseline, "sender_drops_per_cpu_s")
    );
    print!("{}", table(&lines));
    for l in [
        "BPF: run_time_ns of the programs, user: CPU time of the tool, per drop in the window;",
        "sender: cost to the dropping thread against the neighbouring no-tool windows (includes",
        "what run time misses); lost/rate-limited: the tools' own final counts (whole runs).\n",
    ] {
        println!("{l}");
    }

    let row = |name: &str| rows.iter().find(|r| r.config == name);
    let med = |name: &str, m: &str| row(name)?.median(m);
    let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
    let target = format!("summary total <= {SUMMARY_MAX_X_FLOOR}x floor");
    let floor = rows[FLOOR].median("total_ns_per_drop");
    match (
        med("summary", "total_ns_per_drop"),
        floor,
        med("summary", "x_floor"),
    ) {
        (Some(s), Some(f), Some(x)) => println!(
            "verdict: {target}: {} (summary {s:.1}, floor {f:.1} ns/drop: {x:.2}x; medians)",
            verdict(x <= SUMMARY_MAX_X_FLOOR)
        ),
        _ => println!("verdict: {target}: NO DATA"),
    }
    let target = "eth_drop (default) total <= bpftrace count-by-reason total";
    let (eth, bt) = ("eth_drop (default)", "bpftrace by reason");
    let extra = |name| med(name, "sender_extra_ns_per_drop").unwrap_or(f64::NAN);
    match (med(eth, "total_ns_per_drop"), med(bt, "total_ns_per_drop")) {
        _ if !bpftrace => {
            println!("verdict: {target}: NOT RUN (bpftrace not on PATH; apt-get install bpftrace)")
        }
        (Some(e), Some(b)) => println!(
            "verdict: {target}: {} (eth_drop {e:.1} ns/drop, bpftrace {b:.1} ns/drop; medians; \
             sender extra {:.0} vs {:.0} ns/drop)",
            verdict(e <= b),
            extra(eth),
            extra(bt)
        ),
        _ => println!("verdict: {target}: NO DATA"),
    }
    println!("DESIGN.md: counter 60-80 ns/drop, bpftrace by reason ~300-400 ns, stacks 1.8-4 us");
}

fn main() {
    std::process::exit(run());
}

/// Everything that owns kernel state lives in here, so it is dropped before `exit`.
fn run() -> i32 {
    let mut quick = std::env::var("NETPROBE_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--quick" => quick = true,
            "--bench" => {} // added by `cargo bench`
            other => eprintln!("drop_storm: ignoring argument {other:?} (only --quick)"),
        }
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "drop_storm: needs root (namespaces, BPF): sudo -E cargo bench --bench drop_storm"
        );
        return 1;
    }
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        if let Err(e) = unsafe { signal::signal(sig, SigHandler::Handler(on_signal)) } {
            eprintln!("drop_storm: cannot install a {sig} handler: {e}");
        }
    }
    match bench(quick) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("drop_storm: error: {e}");
            if INTERRUPTED.load(Ordering::Relaxed) {
                130
            } else {
                1
            }
        }
    }
}

fn bench(quick: bool) -> Result<i32, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let Some(bin) = exe
        .ancestors()
        .skip(1)
        .find(|d| TOOLS.iter().all(|t| d.join(t).is_file()))
    else {
        return Err(format!(
            "no {} next to {}: run `cargo build --release` first",
            TOOLS.join(", "),
            exe.display()
        ));
    };
    let seed = std::env::var("NETPROBE_BENCH_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let seed = seed.unwrap_or_else(|| {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        t ^ u64::from(std::process::id()).rotate_left(32)
    });
    let path = std::env::var_os("PATH").unwrap_or_default();
    let bpftrace = std::env::split_paths(&path)
        .map(|d| d.join("bpftrace"))
        .find(|p| p.is_file());
    // Dropped in reverse: the flooder, the lab, then the BPF stats sysctl is restored.
    let stats = BpfStatsEnabled::enable()?;
    let lab = Lab::new("storm");
    let configs = configs(bin, &lab.b, bpftrace.as_deref());
    let flooder = Flooder::start(&lab.a, lab.a_ip, SocketAddrV4::new(lab.b_ip, DST_PORT))?;
    flooder.run(Duration::from_millis(500))?; // ARP, first packets
    let reps = if quick { 1 } else { REPS };
    let steps = schedule(configs.len(), reps, &mut XorShift::new(seed));

    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let release = release.trim();
    let cpus = thread::available_parallelism().map_or(0, |n| n.get());
    println!("netprobe drop_storm: cost per drop of watching a NO_SOCKET drop storm");
    let (a, b) = (&lab.a, &lab.b);
    println!(
        "  lab     {a} ({}) -> {b} ({}) udp/{DST_PORT} closed",
        lab.a_ip, lab.b_ip
    );
    println!("  flood   {PAYLOAD}-byte datagrams, sendmmsg x{BATCH}, one thread");
    let n = configs.len();
    println!("  plan    {reps} rep(s) x {n} configs, {WINDOW:?} windows between no-tool windows");
    println!("          shuffled with NETPROBE_BENCH_SEED={seed}");
    println!(
        "  kernel  {release}, {cpus} CPU(s); kernel.bpf_stats_enabled=1 for the run (was {})",
        stats.previous()
    );
    let config = std::fs::read_to_string(format!("/boot/config-{release}")).unwrap_or_default();
    if config.contains("\nCONFIG_IRQ_TIME_ACCOUNTING=y") {
        println!("  WARNING CONFIG_IRQ_TIME_ACCOUNTING=y: softirq time not charged to the sender");
    }
    if bpftrace.is_none() {
        println!("  bpftrace not on PATH: its anchors are skipped (apt-get install bpftrace)");
    }
    for c in &configs {
        println!("  {:<22} {}", c.name, c.describe());
    }
    println!();

    let mut notes = Vec::new();
    let samples = measure(&steps, &configs, &flooder, &lab.b, &mut notes)?;
    let (baseline, rows) = rows(&steps, &configs, &samples);
    print_report(&baseline, &rows, bpftrace.is_some());
    if !notes.is_empty() {
        println!("notes:");
        notes.iter().for_each(|n| println!("  - {n}"));
    }
    println!();
    for row in std::iter::once(&baseline).chain(&rows) {
        println!(
            "{}",
            serde_json::to_string(row).map_err(|e| format!("JSON: {e}"))?
        );
    }
    Ok(i32::from(rows.iter().any(|r| r.failed > 0)))
}
