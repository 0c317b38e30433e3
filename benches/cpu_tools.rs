//! What the cpu and uprobe tools cost the programs they watch (issue 12's targets), in one
//! run, on the `cpu_burn` test target (`tests/targets/cpu_burn.rs`, built by the lab):
//!
//! - **profile at 99 Hz** while two `cpu_burn hits` processes keep both CPUs busy calling a
//!   function: the tool's whole cost — BPF run time of its programs plus its own CPU time —
//!   as a share of the CPU time of the window (target ≤ 1 %), and the change of the workers'
//!   ns per call against the neighbouring no-tool windows;
//! - **offcputime_ts filtered to one process** (`-p`) on a pipe ping-pong storm of that
//!   process (`cpu_burn pingpong`, both threads on one CPU: every pass a context switch, each
//!   one counted): its round
//!   trips per second against the no-tool neighbours (target: ≤ 10 % fewer); and the same
//!   tool following another process (`-p` of an idle one: what the filter costs a switch it
//!   rejects) and following every task (no filter: the cost the filter avoids);
//! - **uprobe_trace on one function** (`cpu_burn::counted_call`, 2 M calls): ns per call
//!   with the tool minus without, the cost of one hit, beside bpftrace's on the same
//!   function when `bpftrace` is on PATH (`apt-get install bpftrace`).
//!
//! DESIGN.md ("Benchmarks"): `no tool, A, no tool, B, …`, order shuffled per repetition,
//! min/median/max over the repetitions. `kernel.bpf_stats_enabled` is 1 for the run and
//! restored. Run as root:
//!
//! ```text
//! cargo bench --bench cpu_tools               # 3 repetitions, about 2 minutes
//! cargo bench --bench cpu_tools -- --quick    # 1 repetition (or NETPROBE_BENCH_QUICK=1)
//! NETPROBE_BENCH_ONLY=off-CPU cargo bench --bench cpu_tools   # one workload (profile,
//!                                                              # off-CPU, uprobe)
//! ```
use netprobe_lab::bench::{
    quick_requested, schedule, spread_header, table, vs_neighbours, Row, Step, XorShift,
};
use netprobe_lab::cost::{process_cpu_ns, BpfStatsEnabled, Progs};
use netprobe_lab::targets::{cpu_burn, Target};
use netprobe_lab::{ToolRun, READY_MARKER};
use nix::sys::signal::Signal;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PROFILE: &str = env!("CARGO_BIN_EXE_profile");
const OFFCPU: &str = env!("CARGO_BIN_EXE_offcputime_ts");
const UPROBE: &str = env!("CARGO_BIN_EXE_uprobe_trace");
const REPS: usize = 3;
/// Calls of counted_call per profile worker (about 1 s at 3 ns a call).
const BURN_CALLS: &str = "300000000";
/// Calls of counted_call under a uprobe (about 2 s at 1 µs a hit).
const HIT_CALLS: u64 = 2_000_000;
const STORM_SECS: &str = "2";

/// A tool to run during a window, with `{pid}` standing for the workload's pid.
struct Config {
    name: &'static str,
    cmd: Vec<String>,
    /// The marker it prints once attached.
    ready: &'static str,
}

fn config(name: &'static str, bin: &str, args: &[&str]) -> Config {
    let mut cmd = vec![bin.to_string()];
    cmd.extend(args.iter().map(|a| a.to_string()));
    Config {
        name,
        cmd,
        ready: READY_MARKER,
    }
}

/// A `name value` line of a target's output.
fn field(out: &str, name: &str) -> Result<f64, String> {
    out.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .ok_or_else(|| format!("no '{name}' in the target's output: {out}"))
}

/// What one window measured.
struct Window {
    /// The workload's figure (ns per call, round trips per second).
    value: f64,
    /// The tool's BPF run time plus CPU time, ns (0 without a tool).
    tool_ns: f64,
    wall: Duration,
}

/// Runs `workers` copies of `cpu_burn args` held, starts `cfg` on the first one's pid (if
/// any), lets them go, and reads `metric` (averaged over the workers).
fn window(
    cfg: Option<&Config>,
    workers: usize,
    args: &[&str],
    metric: &str,
) -> Result<Window, String> {
    let mut targets: Vec<Target> = (0..workers)
        .map(|_| Target::spawn(cpu_burn(), args))
        .collect();
    let pid = targets[0].pid().to_string();
    let tool = match cfg {
        Some(c) => {
            let cmd: Vec<String> = c.cmd.iter().map(|a| a.replace("{pid}", &pid)).collect();
            let mut command = std::process::Command::new(&cmd[0]);
            command.args(&cmd[1..]);
            let run = ToolRun::try_start_command(command, c.ready)?;
            if c.ready != READY_MARKER {
                // `Attaching` comes just before the attach.
                std::thread::sleep(Duration::from_millis(250));
            }
            Some(run)
        }
        None => None,
    };
    let before = match &tool {
        Some(t) => Some((Progs::of_process(t.pid())?, process_cpu_ns(t.pid())?)),
        None => None,
    };
    let b0 = match &before {
        Some((p, _)) => p.stats()?.run_ns,
        None => 0,
    };
    let started = Instant::now();
    for t in &mut targets {
        t.go();
    }
    let outs: Vec<String> = targets.into_iter().map(Target::finish).collect();
    let wall = started.elapsed();
    let mut tool_ns = 0.0;
    if let (Some(t), Some((progs, cpu0))) = (tool, before) {
        let bpf = progs.stats()?.run_ns.saturating_sub(b0);
        let cpu = process_cpu_ns(t.pid())?.saturating_sub(cpu0);
        tool_ns = (bpf + cpu) as f64;
        let out = t.try_stop(Signal::SIGINT)?;
        if !out.status.success() {
            return Err(format!(
                "{:?} exited with {}",
                cfg.map(|c| c.name),
                out.status
            ));
        }
    }
    let mut sum = 0.0;
    for o in &outs {
        sum += field(o, metric)?;
    }
    Ok(Window {
        value: sum / outs.len() as f64,
        tool_ns,
        wall,
    })
}

/// A workload: `workers` copies of `cpu_burn args`, whose figure is the `metric` line, compared
/// with the no-tool neighbours as `compare.0 = compare.1(value, baseline)`.
struct Workload<'a> {
    title: &'a str,
    workers: usize,
    args: &'a [&'a str],
    metric: &'a str,
    compare: (&'static str, fn(f64, f64) -> f64),
}

/// One workload's schedule over its configurations: rows with the workload's figure against
/// the no-tool neighbours and the tool's share of the window's CPU time.
fn measure(
    w: &Workload<'_>,
    configs: &[Config],
    reps: usize,
    rng: &mut XorShift,
) -> Result<Vec<Row>, String> {
    if std::env::var("NETPROBE_BENCH_ONLY").is_ok_and(|o| !o.split(',').any(|t| t == w.title)) {
        return Ok(Vec::new());
    }
    let steps = schedule(configs.len(), reps, rng);
    let mut values = Vec::new();
    let mut rows: Vec<Row> = configs.iter().map(|c| Row::new(c.name)).collect();
    let cpus = libnetprobe::kernel::perf::online_cpus()
        .map_err(|e| format!("online CPUs: {e}"))?
        .len() as f64;
    for step in &steps {
        let cfg = match step {
            Step::Baseline => None,
            Step::Config(i) => Some(&configs[*i]),
        };
        let win = window(cfg, w.workers, w.args, w.metric)?;
        eprintln!(
            "[{}] {:<36} {} {:>10.1}  tool {:>8.2} ms in {:.2?}",
            w.title,
            cfg.map_or("(no tool)", |c| c.name),
            w.metric,
            win.value,
            win.tool_ns / 1e6,
            win.wall
        );
        if let Step::Config(i) = step {
            rows[*i].runs += 1;
            rows[*i].sample(
                "tool_cpu_share_pct",
                win.tool_ns / (win.wall.as_nanos() as f64 * cpus) * 100.0,
            );
        }
        values.push(win.value);
    }
    for (i, v) in vs_neighbours(&steps, &values, configs.len(), w.compare.1)
        .into_iter()
        .enumerate()
    {
        rows[i].extend(w.compare.0, v);
    }
    Ok(rows)
}

fn slowdown_pct(v: f64, base: f64) -> f64 {
    (v / base - 1.0) * 100.0
}

fn fewer_pct(v: f64, base: f64) -> f64 {
    (1.0 - v / base) * 100.0
}

fn extra_ns(v: f64, base: f64) -> f64 {
    v - base
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("cpu_tools: needs root (BPF): sudo -E cargo bench --bench cpu_tools");
        std::process::exit(1);
    }
    if let Err(e) = bench(if quick_requested() { 1 } else { REPS }) {
        eprintln!("cpu_tools: error: {e}");
        std::process::exit(1);
    }
}

fn bench(reps: usize) -> Result<(), String> {
    let started = Instant::now();
    let stats = BpfStatsEnabled::enable()?;
    let seed = std::env::var("NETPROBE_BENCH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    let mut rng = XorShift::new(seed);
    println!(
        "netprobe cpu_tools: {reps} rep(s), seed {seed}, kernel.bpf_stats_enabled was {}",
        stats.previous()
    );
    let bin = cpu_burn().to_string_lossy().into_owned();
    // An idle process for the filtered-out configuration.
    let idle = Target::spawn(cpu_burn(), &["sleep", "1", "1"]);
    let idle_pid = idle.pid().to_string();

    let profile = [config("profile -F 99 (all CPUs)", PROFILE, &["--json"])];
    let burn = Workload {
        title: "profile",
        workers: 2,
        args: &["hits", BURN_CALLS],
        metric: "ns_per_call",
        compare: ("workload_slowdown_pct", slowdown_pct),
    };
    let mut rows = measure(&burn, &profile, reps, &mut rng)?;

    let offcpu = [
        config(
            "offcputime_ts -p (the storm)",
            OFFCPU,
            &["-p", "{pid}", "--json"],
        ),
        config(
            "offcputime_ts -p --stack-refresh 1 (the storm)",
            OFFCPU,
            &["-p", "{pid}", "--stack-refresh", "1", "--json"],
        ),
        config(
            "offcputime_ts -p (another process)",
            OFFCPU,
            &["-p", &idle_pid, "--json"],
        ),
        config("offcputime_ts (every task)", OFFCPU, &["--json"]),
    ];
    let storm = Workload {
        title: "off-CPU",
        workers: 1,
        // Both threads on CPU 1: every pass a switch on one CPU (3.7 µs a round trip here).
        // Across CPUs a pass waits for an idle vCPU to wake, and that latency (tens of µs,
        // varying twofold between windows) drowns what the tool costs.
        args: &["pingpong", STORM_SECS, "1"],
        metric: "round_trips",
        compare: ("round_trips_fewer_pct", fewer_pct),
    };
    rows.extend(measure(&storm, &offcpu, reps, &mut rng)?);

    let calls = HIT_CALLS.to_string();
    let mut uprobes = vec![config(
        "uprobe_trace counted_call",
        UPROBE,
        &["-x", &bin, "cpu_burn::counted_call", "--json"],
    )];
    let bpftrace = std::process::Command::new("bpftrace")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if bpftrace {
        // bpftrace says `Attaching` on stdout; ToolRun waits on stderr.
        let probe = format!("uprobe:{bin}:*counted_call* {{ @calls = count(); }}");
        uprobes.push(Config {
            name: "bpftrace counted_call",
            cmd: [
                "sh",
                "-c",
                r#"exec "$0" "$@" 1>&2"#,
                "bpftrace",
                "-e",
                &probe,
            ]
            .map(String::from)
            .to_vec(),
            ready: "Attaching",
        });
    }
    let hits = Workload {
        title: "uprobe",
        workers: 1,
        args: &["hits", &calls],
        metric: "ns_per_call",
        compare: ("ns_per_hit", extra_ns),
    };
    rows.extend(measure(&hits, &uprobes, reps, &mut rng)?);
    drop(idle);

    let spread = |r: &Row, m: &str| r.spread(m).map_or("n/a".into(), |s| s.show());
    let mut lines = spread_header(
        &[
            "configuration",
            "runs",
            "tool CPU share %",
            "workload slower %",
            "round trips fewer %",
            "ns per uprobe hit",
        ],
        2,
    );
    for r in &rows {
        lines.push(vec![
            r.config.clone(),
            r.runs.to_string(),
            spread(r, "tool_cpu_share_pct"),
            spread(r, "workload_slowdown_pct"),
            spread(r, "round_trips_fewer_pct"),
            spread(r, "ns_per_hit"),
        ]);
    }
    print!("\n{}", table(&lines));
    let median = |name: &str, m: &str| {
        rows.iter()
            .find(|r| r.config == name)
            .and_then(|r| r.median(m))
    };
    let verdict = |what: &str, v: Option<f64>, limit: f64| match v {
        Some(v) => println!(
            "{what}: {v:.2} % (target ≤ {limit} %): {}",
            if v <= limit { "met" } else { "NOT met" }
        ),
        None => println!("{what}: not measured"),
    };
    verdict(
        "profile at 99 Hz, tool CPU share",
        median("profile -F 99 (all CPUs)", "tool_cpu_share_pct"),
        1.0,
    );
    verdict(
        "off-CPU filtered to the storm, round trips lost",
        median("offcputime_ts -p (the storm)", "round_trips_fewer_pct"),
        10.0,
    );
    if !bpftrace {
        println!(
            "bpftrace: not on PATH (apt-get install bpftrace) — its cost per hit not measured"
        );
    }
    for r in &rows {
        println!(
            "{}",
            serde_json::to_string(r).map_err(|e| format!("JSON: {e}"))?
        );
    }
    println!("cpu_tools took {:.0?}", started.elapsed());
    Ok(())
}
