//! What measuring transmit latency costs, per packet (the issue's metric): the BPF run time of
//! a tool's programs plus the tool's own CPU time, divided by the packets, for the Summary tool
//! (total path, and with `--stage-latency`), the Details tool with a filter matching 1 % of the
//! packets, and bpftrace doing the same two-stage measurement, in one run.
//!
//! The lab ([`Lab`], removed whatever happens) is two namespaces A and B joined by a veth pair.
//! A thread in A ([`MarkedFlooder`]) sends 16-byte UDP datagrams (`sendmmsg` x64) to a socket
//! in B that a thread drains ([`UdpSink`]), so every packet crosses `va`'s transmit path
//! (`net_dev_queue` > `net_dev_start_xmit` > `net_dev_xmit`; a veth has no qdisc) and is
//! delivered. 1 datagram in 100 leaves from a second source port: the Details tool filters on
//! it. Veth delivery runs B's receive softirq in the sender's context, so everything the
//! kernel does for a packet, BPF programs included, runs on the sending thread.
//!
//! Per configuration and repetition, over the 3 s window only (counters are sampled in a quiet
//! gap right before and after it; packets = growth of `va`'s `tx_packets`):
//! - **BPF ns/pkt**: growth of `run_time_ns` of the programs the process holds (every
//!   `prog_id` in `/proc/<pid>/fdinfo`, opened by id, so bpftrace is measured the same way);
//!   `kernel.bpf_stats_enabled` is 1 for the run and restored at the end, also on error/Ctrl-C;
//! - **user ns/pkt**: CPU time of the tool process (`/proc/<pid>/task/*/schedstat`);
//! - **total** = BPF + user, also as a multiple of bpftrace's total in the same repetition;
//! - **sender cost**: packets per CPU-second of the sending thread (`CLOCK_THREAD_CPUTIME_ID`)
//!   against the mean of the two neighbouring no-tool windows, as % and as extra ns per packet
//!   (`1e9/pps_tool - 1e9/pps_baseline`). It includes what run time misses (the classic
//!   tracepoint's record for bpftrace, the stats' own clock reads);
//! - **measured**: what the configuration says it measured over its whole run (Summary: the
//!   `completed` packets of its intervals; Details: its event lines; bpftrace: the counts of
//!   its histogram) against what it should have (every datagram; the marked ones for Details).
//!
//! DESIGN.md ("Benchmarks"): `no tool, A, no tool, B, …`, order shuffled per repetition,
//! min/median/max over the repetitions. Configurations (the tools filter on `--netns A
//! --phy-interface va --direction tx --protocol udp`):
//! - `system_network_latency_summary … -i 1 --json` (total path: queue, start_xmit, xmit);
//! - the same with `--stage-latency` (adds `qdisc_dequeue`, never hit on a veth);
//! - `system_network_latency_details … --src-port <marked> --json` at its default rate limit;
//!   stdout goes to a temporary file, read back for the event count;
//! - the floor: [`TimingFloor`], bpftrace's measurement as two bare `tp_btf` programs (a
//!   timestamp in a per-CPU slot at `net_dev_queue`, a log2 histogram at `net_dev_xmit`, no
//!   device, flow or namespace match): what the measurement itself costs on this kernel;
//! - if `bpftrace` is on `PATH` (optional: `apt-get install bpftrace`): `@s[args->skbaddr] =
//!   nsecs` on `tracepoint:net:net_dev_queue`, `hist()` and `delete()` on `net_dev_xmit`, on
//!   every device (the cheapest bpftrace: the verdict's anchor) and filtered on
//!   `str(args->name) == "va"` at the queue stage.
//!
//! Tools start from the `target/` profile this bench is built in (`CARGO_BIN_EXE_*`), are
//! measured once ready (`netprobe: ready`; `Attaching` for bpftrace) and stop on SIGINT.
//! Output: a table, the verdict for the issue's target (total-path Summary total ≤ bpftrace
//! total / 3, with the floor against the same limit) and one JSON line per configuration. Run as root:
//!
//! ```text
//! cargo bench --bench latency_flood               # 3 repetitions, about 2 minutes
//! cargo bench --bench latency_flood -- --quick    # 1 repetition (or NETPROBE_BENCH_QUICK=1)
//! ```
//!
//! `NETPROBE_BENCH_SEED=<u64>` replays an order. Every loop is bounded in time and count.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use netprobe_lab::bench::{schedule, table, vs_neighbours, Row, Step, XorShift};
use netprobe_lab::cost::{process_cpu_ns, reported_counters, tail_lines};
use netprobe_lab::cost::{BpfStatsEnabled, ProgStats, Progs};
use netprobe_lab::delivery::{MarkedFlood, MarkedFlooder, UdpSink};
use netprobe_lab::flood::{BATCH, PAYLOAD};
use netprobe_lab::testkit::TimingFloor;
use netprobe_lab::{ns_exec_ok, Lab, ToolRun, READY_MARKER};
use nix::sys::signal::{self, SigHandler, Signal};

const SUMMARY: &str = env!("CARGO_BIN_EXE_system_network_latency_summary");
const DETAILS: &str = env!("CARGO_BIN_EXE_system_network_latency_details");

const WINDOW: Duration = Duration::from_secs(3);
/// Unmeasured traffic before every window (caches, first map entries).
const WARMUP: Duration = Duration::from_millis(200);
/// Quiet time after a window, so the last packets and events are processed before sampling.
const SETTLE: Duration = Duration::from_millis(50);
/// bpftrace prints `Attaching` just before it attaches: give it this long.
const ANCHOR_SETTLE: Duration = Duration::from_millis(250);
const REPS: usize = 3;
/// Destination port in B, where the sink listens.
const DST_PORT: u16 = 5001;
/// 1 datagram in this many leaves from the marked source port (the Details tool's filter).
const ONE_IN: u64 = 100;
/// The target: the total-path Summary costs at most bpftrace's total divided by this.
const BPFTRACE_DIVISOR: f64 = 3.0;
/// The configuration the target is about.
const SUMMARY_TOTAL: &str = "summary (total path)";
/// The anchor of the target: the cheapest bpftrace (no device filter).
const BPFTRACE: &str = "bpftrace";
/// The measurement alone (an empty `cmd`).
const FLOOR: &str = "floor (timestamps only)";

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

/// What a configuration should measure over its run.
#[derive(Clone, Copy, PartialEq)]
enum Expect {
    /// Every datagram of the flood.
    All,
    /// The datagrams from the marked port.
    Marked,
}

/// One configuration: a process, or the in-process floor (empty `cmd`).
struct Config {
    name: &'static str,
    cmd: Vec<String>,
    stdout: Stdout,
    expect: Expect,
}

impl Config {
    fn describe(&self) -> String {
        let Some((prog, args)) = self.cmd.split_first() else {
            return "tp_btf net_dev_queue: per-CPU timestamp; net_dev_xmit: log2 histogram".into();
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

fn configs(ns_a: &str, marked_port: u16, bpftrace: Option<&Path>) -> Vec<Config> {
    let cfg = |name, program: &str, args: &[&str], stdout, expect| {
        let mut cmd: Vec<String> = args.iter().map(|a| (*a).to_string()).collect();
        if !program.is_empty() {
            cmd.insert(0, program.to_owned());
        }
        Config {
            name,
            cmd,
            stdout,
            expect,
        }
    };
    let path = [
        "--netns",
        ns_a,
        "--phy-interface",
        Lab::A_IF,
        "--direction",
        "tx",
        "--protocol",
        "udp",
        "--json",
    ];
    let summary = [&path[..], &["-i", "1"]].concat();
    let stages = [&summary[..], &["--stage-latency"]].concat();
    let port = marked_port.to_string();
    let details = [&path[..], &["--src-port", &port]].concat();
    let mut v = vec![
        cfg(FLOOR, "", &[], Stdout::Pipe, Expect::All),
        cfg(SUMMARY_TOTAL, SUMMARY, &summary, Stdout::Pipe, Expect::All),
        cfg(
            "summary --stage-latency",
            SUMMARY,
            &stages,
            Stdout::Pipe,
            Expect::All,
        ),
        cfg(
            "details (1% match)",
            DETAILS,
            &details,
            Stdout::File,
            Expect::Marked,
        ),
    ];
    let dev = format!(r#"/str(args->name) == "{}"/ "#, Lab::A_IF);
    for (name, filter) in [(BPFTRACE, ""), ("bpftrace (dev va)", dev.as_str())] {
        let script = format!(
            "tracepoint:net:net_dev_queue {filter}{{ @s[args->skbaddr] = nsecs; }} \
             tracepoint:net:net_dev_xmit /@s[args->skbaddr]/ \
             {{ @h = hist(nsecs - @s[args->skbaddr]); delete(@s[args->skbaddr]); }}"
        );
        if let Some(bt) = bpftrace {
            let bt = bt.to_string_lossy();
            v.push(cfg(
                name,
                &bt,
                &["-e", &script],
                Stdout::Stderr,
                Expect::All,
            ));
        }
    }
    v
}

/// The lab's moving parts.
struct Rig<'a> {
    lab: &'a Lab,
    flooder: &'a MarkedFlooder,
    sink: &'a UdpSink,
}

impl Rig<'_> {
    /// `va`'s `tx_packets`, read inside namespace A.
    fn tx_packets(&self) -> Result<u64, String> {
        let path = format!("/sys/class/net/{}/statistics/tx_packets", Lab::A_IF);
        let text = ns_exec_ok(&self.lab.a, &["cat", &path])?;
        text.trim()
            .parse()
            .map_err(|e| format!("{path} in {}: {e}: {text:?}", self.lab.a))
    }
}

/// What one window measured.
struct Sample {
    sender: MarkedFlood,
    /// Growth of `va`'s `tx_packets` over the window.
    packets: u64,
    /// Datagrams the sink received over the window.
    delivered: u64,
    bpf: ProgStats,
    /// CPU time of the tool process over the window (0 for baselines).
    user_ns: u64,
    /// What the tool reported about its whole run: `measured`, `expected` (see the module
    /// docs) and its own counters (lost, rate-limited, evicted, …).
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

/// The Summary tool's `completed` packets and the counters it reports about itself, summed
/// over its interval lines.
fn summary_counters(lines: &[String]) -> BTreeMap<&'static str, u64> {
    let mut out = reported_counters(lines);
    for line in lines.iter().filter(|l| l.contains(r#""type":"interval""#)) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
        for (key, field) in [
            ("measured", "completed"),
            ("evicted", "evicted"),
            ("dropped", "dropped"),
            ("unmatched_xmit", "unmatched_xmit"),
        ] {
            *out.entry(key).or_default() += v[field].as_u64().unwrap_or(0);
        }
    }
    out
}

/// The Details tool's event lines in `path` (`measured`) and its closing counters.
fn details_counters(path: &Path) -> BTreeMap<&'static str, u64> {
    let mut out = reported_counters(tail_lines(path, 65_536));
    if let Some(n) = out.remove("tool_drops") {
        out.insert("tool_events", n);
    }
    let events = std::fs::File::open(path).map_or(0, |f| {
        BufReader::new(f)
            .lines()
            .map_while(Result::ok)
            .filter(|l| l.contains(r#""type":"latency""#))
            .count()
    });
    out.insert("measured", events as u64);
    out
}

/// The counts of a bpftrace `hist()` printout (`[lo, hi)   N |@@@|` or `[N]   N |@|` lines).
fn bpftrace_hist_count(lines: &[String]) -> u64 {
    let count = |l: &str| -> Option<u64> {
        let rest = l.trim().strip_prefix('[')?;
        let end = rest.find([')', ']'])?;
        let (n, bar) = rest[end + 1..].trim().split_once(' ')?;
        bar.trim_start().starts_with('|').then(|| n.parse().ok())?
    };
    lines.iter().filter_map(|l| count(l)).sum()
}

/// Runs window `k`: with `cfg` attached, or a baseline (`None`).
fn window(cfg: Option<&Config>, rig: &Rig, k: usize) -> Result<Sample, Failed> {
    let name = format!("netprobe-latency-flood-{}-{k}.jsonl", std::process::id());
    let out = TempFile(std::env::temp_dir().join(name));
    let (mut floor, mut tool) = (None, None);
    if cfg.is_some_and(|c| c.cmd.is_empty()) {
        floor = Some(TimingFloor::attach()?);
    } else if let Some(c) = cfg {
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
    let warm = rig.flooder.run(WARMUP).map_err(Failed::Flood)?;
    let pid = tool.as_ref().map(ToolRun::pid);
    let progs = match (&floor, pid) {
        (Some(f), _) => Some(Progs::of_fds(f.prog_fds())?),
        (_, Some(pid)) => Some(Progs::of_process(pid)?),
        _ => None,
    };
    let edge = || -> Result<(u64, u64, ProgStats, u64), Failed> {
        let bpf = progs
            .as_ref()
            .map_or(Ok(ProgStats::default()), Progs::stats)?;
        let user = pid.map_or(Ok(0), process_cpu_ns)?;
        let tx = rig.tx_packets().map_err(Failed::Flood)?;
        Ok((tx, rig.sink.received(), bpf, user))
    };
    // Sampled in quiet gaps right before and after the measured flood.
    thread::sleep(SETTLE);
    let (t0, d0, b0, u0) = edge()?;
    let sender = rig.flooder.run(WINDOW).map_err(Failed::Flood)?;
    thread::sleep(SETTLE);
    let (t1, d1, b1, u1) = edge()?;
    let mut s = Sample {
        sender,
        packets: t1.saturating_sub(t0),
        delivered: d1.saturating_sub(d0),
        bpf: b1.since(b0),
        user_ns: u1.saturating_sub(u0),
        reported: BTreeMap::new(),
    };
    let expected = |c: &Config| match c.expect {
        Expect::All => warm.flood.packets + sender.flood.packets,
        Expect::Marked => warm.marked + sender.marked,
    };
    if let (Some(f), Some(c)) = (&floor, cfg) {
        s.reported = BTreeMap::from([("measured", f.count()?), ("expected", expected(c))]);
        return Ok(s);
    }
    let (Some(tool), Some(c)) = (tool, cfg) else {
        return Ok(s);
    };
    let exit = tool.try_stop(Signal::SIGINT)?;
    if !exit.status.success() {
        let last = exit.stderr.last().map_or("", String::as_str);
        return Err(format!("exited with {} after SIGINT: {last}", exit.status).into());
    }
    s.reported = match c.stdout {
        Stdout::Pipe => summary_counters(&exit.stdout),
        Stdout::File => details_counters(&out.0),
        Stdout::Stderr => BTreeMap::from([("measured", bpftrace_hist_count(&exit.stderr))]),
    };
    s.reported.insert("expected", expected(c));
    Ok(s)
}

fn per_pkt(ns: u64, packets: u64) -> f64 {
    ns as f64 / packets as f64 // NaN (no sample) without packets
}

/// What is odd about a window.
fn oddities(s: &Sample) -> Vec<String> {
    let (packets, sent) = (s.packets, s.sender.flood.packets);
    let mut odd = Vec::new();
    // A few ARP packets also leave through va.
    if packets < sent || packets > sent + sent / 1000 {
        odd.push(format!(
            "{} tx_packets grew by {packets} for {sent} datagrams sent",
            Lab::A_IF
        ));
    }
    if s.delivered + packets / 100 < packets {
        odd.push(format!(
            "the sink received {} of {packets} datagrams",
            s.delivered
        ));
    }
    if s.sender.flood.errors > 0 {
        odd.push(format!(
            "{} sendmmsg calls failed transiently",
            s.sender.flood.errors
        ));
    }
    let (measured, expected) = (s.reported.get("measured"), s.reported.get("expected"));
    if let (Some(&m), Some(&e)) = (measured, expected) {
        // bpftrace has no protocol filter: it also times ARP (and other devices' packets).
        if m < e || m > e + e / 1000 {
            odd.push(format!(
                "measured {m} packets over its run, expected {e} ({:+.2}%)",
                (m as f64 / e as f64 - 1.0) * 100.0
            ));
        }
    }
    odd
}

/// A window's progress line.
fn progress(s: &Sample) -> String {
    let bpf = per_pkt(s.bpf.run_ns, s.packets);
    let user = per_pkt(s.user_ns, s.packets);
    let (cpu, wall) = (s.sender.flood.pps_cpu(), s.sender.flood.pps_wall());
    let runs = per_pkt(s.bpf.runs, s.packets);
    format!(
        "{cpu:>7.0} pkts/CPU-s {wall:>7.0} pkts/s  BPF {bpf:>6.1} ({runs:.2} runs) + user \
         {user:>6.1} ns/pkt"
    )
}

/// Runs every step: (repetition, sample); a failed window is `None` (and noted).
fn measure(
    steps: &[Step],
    configs: &[Config],
    rig: &Rig,
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
        let sample = match window(cfg, rig, k) {
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
        eprintln!("[{:>2}/{}] {name:<24} {line}", k + 1, steps.len());
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
        row.count("packets", s.packets);
        row.count("delivered", s.delivered);
        let Step::Config(c) = *step else {
            row.sample("sender_pkts_per_cpu_s", s.sender.flood.pps_cpu());
            continue;
        };
        let bpf = per_pkt(s.bpf.run_ns, s.packets);
        let user = per_pkt(s.user_ns, s.packets);
        row.sample("bpf_ns_per_pkt", bpf);
        row.sample("user_ns_per_pkt", user);
        row.sample("total_ns_per_pkt", bpf + user);
        row.sample("bpf_runs_per_pkt", per_pkt(s.bpf.runs, s.packets));
        row.sample("bpf_ns_per_run", per_pkt(s.bpf.run_ns, s.bpf.runs));
        row.count("bpf_recursion_misses", s.bpf.recursion_misses);
        s.reported.iter().for_each(|(k, n)| row.count(k, *n));
        totals.insert((c, *rep), bpf + user);
    }
    if let Some(bt) = configs.iter().position(|c| c.name == BPFTRACE) {
        for ((c, rep), total) in &totals {
            if let Some(anchor) = totals.get(&(bt, *rep)) {
                rows[*c].sample("x_bpftrace", total / anchor);
            }
        }
    }
    let pps: Vec<f64> = samples
        .iter()
        .map(|(_, s)| s.as_ref().map_or(f64::NAN, |s| s.sender.flood.pps_cpu()))
        .collect();
    let cost = vs_neighbours(steps, &pps, configs.len(), |t, b| (1.0 - t / b) * 100.0);
    let extra = vs_neighbours(steps, &pps, configs.len(), |t, b| 1e9 / t - 1e9 / b);
    for (row, (cost, extra)) in rows.iter_mut().zip(cost.into_iter().zip(extra)) {
        row.extend("sender_cost_pct", cost);
        row.extend("sender_extra_ns_per_pkt", extra);
    }
    (baseline, rows)
}

/// `part / whole` in % with two decimals, or `-`.
fn pct(part: Option<u64>, whole: Option<u64>) -> String {
    match (part, whole) {
        (Some(p), Some(w)) if w > 0 => format!("{:.2}", p as f64 * 100.0 / w as f64),
        _ => "-".into(),
    }
}

fn print_report(baseline: &Row, rows: &[Row], bpftrace: bool) {
    let spread = |r: &Row, m: &str| r.spread(m).map_or("n/a".into(), |s| s.show());
    let median = |r: &Row, m: &str| r.median(m).map_or("n/a".into(), |v| format!("{v:.2}"));
    let count = |r: &Row, k: &str| r.counted(k).map_or("-".into(), |n| n.to_string());
    let mmm = "min / median / max";
    let head = "configuration|runs|BPF ns/pkt|user ns/pkt|total ns/pkt|x bpftrace|BPF runs/pkt\
                |sender cost %|sender extra ns/pkt|measured %|lost|rate-limited";
    let unit = format!("||{mmm}|{mmm}|{mmm}|median|median|median|{mmm}|of expected||");
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
            spread(r, "bpf_ns_per_pkt"),
            spread(r, "user_ns_per_pkt"),
            spread(r, "total_ns_per_pkt"),
            median(r, "x_bpftrace"),
            median(r, "bpf_runs_per_pkt"),
            r.median("sender_cost_pct")
                .map_or("n/a".into(), |v| format!("{v:.1}")),
            spread(r, "sender_extra_ns_per_pkt"),
            pct(r.counted("measured"), r.counted("expected")),
            count(r, "lost_events"),
            count(r, "rate_limited"),
        ]);
    }
    println!(
        "\nno tool: {} windows, sender {} pkts/CPU-s ({mmm}), {}% delivered\n",
        baseline.runs,
        spread(baseline, "sender_pkts_per_cpu_s"),
        pct(baseline.counted("delivered"), baseline.counted("packets"))
    );
    print!("{}", table(&lines));
    for l in [
        "BPF: run_time_ns of the programs, user: CPU time of the tool, per packet through va in",
        "the window; x bpftrace: total / bpftrace's total in the same repetition; sender: cost",
        "to the sending thread against the neighbouring no-tool windows (includes what run time",
        "misses); measured: what the tool measured over its run (details: events, expected 1 %",
        "of the packets); lost/rate-limited: the tools' own final counts (whole runs).\n",
    ] {
        println!("{l}");
    }

    let row = |name: &str| rows.iter().find(|r| r.config == name);
    let med = |name: &str, m: &str| row(name)?.median(m);
    let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
    let limit = 1.0 / BPFTRACE_DIVISOR;
    let target = format!("{SUMMARY_TOTAL} total <= {BPFTRACE} total / {BPFTRACE_DIVISOR}");
    let total = |name| med(name, "total_ns_per_pkt");
    let extra = |name| med(name, "sender_extra_ns_per_pkt").unwrap_or(f64::NAN);
    match (
        total(SUMMARY_TOTAL),
        total(BPFTRACE),
        med(SUMMARY_TOTAL, "x_bpftrace"),
    ) {
        _ if !bpftrace => {
            println!("verdict: {target}: NOT RUN (bpftrace not on PATH; apt-get install bpftrace)")
        }
        (Some(s), Some(b), Some(x)) => {
            println!(
                "verdict: {target}: {} (summary {s:.1}, bpftrace {b:.1} ns/pkt: {x:.2}x, limit \
                 {limit:.2}x; medians; sender extra {:.0} vs {:.0} ns/pkt)",
                verdict(x <= limit),
                extra(SUMMARY_TOTAL),
                extra(BPFTRACE)
            );
            if let (Some(f), Some(fx)) = (total(FLOOR), med(FLOOR, "x_bpftrace")) {
                println!(
                    "         the floor (the measurement alone) costs {f:.1} ns/pkt: {fx:.2}x \
                     bpftrace; the summary adds {:.1} ns/pkt to it",
                    s - f
                );
            }
        }
        _ => println!("verdict: {target}: NO DATA"),
    }
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
            other => eprintln!("latency_flood: ignoring argument {other:?} (only --quick)"),
        }
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "latency_flood: needs root (namespaces, BPF): sudo -E cargo bench --bench latency_flood"
        );
        return 1;
    }
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        if let Err(e) = unsafe { signal::signal(sig, SigHandler::Handler(on_signal)) } {
            eprintln!("latency_flood: cannot install a {sig} handler: {e}");
        }
    }
    match bench(quick) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("latency_flood: error: {e}");
            if INTERRUPTED.load(Ordering::Relaxed) {
                130
            } else {
                1
            }
        }
    }
}

fn bench(quick: bool) -> Result<i32, String> {
    let started = Instant::now();
    for bin in [SUMMARY, DETAILS] {
        if !Path::new(bin).is_file() {
            return Err(format!("no {bin}: build the tools first"));
        }
    }
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
    // Dropped in reverse: the flooder, the sink, the lab, then the BPF stats sysctl.
    let stats = BpfStatsEnabled::enable()?;
    let lab = Lab::new("latbench");
    let sink = UdpSink::start(&lab.b, SocketAddrV4::new(lab.b_ip, DST_PORT))?;
    let flooder = MarkedFlooder::start(&lab.a, lab.a_ip, sink.addr, ONE_IN)?;
    flooder.run(Duration::from_millis(500))?; // ARP, first packets
    let rig = Rig {
        lab: &lab,
        flooder: &flooder,
        sink: &sink,
    };
    let configs = configs(&lab.a, flooder.marked_port, bpftrace.as_deref());
    let reps = if quick { 1 } else { REPS };
    let steps = schedule(configs.len(), reps, &mut XorShift::new(seed));

    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let release = release.trim();
    let cpus = thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "netprobe latency_flood: cost per packet of measuring a delivered UDP flood's tx path"
    );
    let (a, b, va) = (&lab.a, &lab.b, Lab::A_IF);
    println!(
        "  lab     {a} ({}) {va} -> {b} ({}) udp/{DST_PORT}, drained by a socket",
        lab.a_ip, lab.b_ip
    );
    println!(
        "  flood   {PAYLOAD}-byte datagrams, sendmmsg x{BATCH}, one thread; from udp/{} and \
         1 in {ONE_IN} from udp/{} (the details filter)",
        flooder.port, flooder.marked_port
    );
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
        println!("  {:<24} {}", c.name, c.describe());
    }
    println!();

    let mut notes = Vec::new();
    let samples = measure(&steps, &configs, &rig, &mut notes)?;
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
    println!("\nlatency_flood took {:.0?}", started.elapsed());
    Ok(i32::from(rows.iter().any(|r| r.failed > 0)))
}
