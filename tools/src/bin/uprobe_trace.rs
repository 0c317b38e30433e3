//! Calls of user-space functions by name or glob — demangled Rust paths, C++ and C names, Go's
//! `main.func` — counted, timed or counted per calling stack, like `perf probe -x BIN 'f*'`
//! plus a record, working on Rust and Go.
use clap::Parser;
use libnetprobe::cli::{parse_args, run_main, IntervalArgs, OutputArgs};
use libnetprobe::kit::set::SetInfo;
use libnetprobe::output::uprobe::report_text;
use libnetprobe::sets::uprobe::{Mode, Target, UprobeOptions, UprobeProbe, UprobeSet};
use libnetprobe::{Error, Result};
use std::path::PathBuf;

const TOOL: &str = "uprobe_trace";

/// The probe sets this tool uses.
const USES: &[SetInfo] = &[SetInfo::of::<UprobeSet>()];

/// Counts (default), times (--latency) or counts per calling stack (--stacks) the calls of
/// functions of a binary (-x) or of a process's binary and libraries (-p). Each call costs a
/// trap (microseconds): a function called 100,000 times a second costs a CPU.
#[derive(Debug, Parser)]
#[command(name = TOOL, version)]
struct Args {
    /// The binary or library the functions are in
    #[arg(
        short = 'x',
        long,
        value_name = "BINARY",
        required_unless_present = "pid"
    )]
    binary: Option<PathBuf>,
    /// Only calls by this process (without -x: its binary and every library it maps)
    #[arg(short = 'p', long, value_name = "PID")]
    pid: Option<u32>,
    /// Only calls by tasks in this cgroup v2 directory
    #[arg(long, value_name = "DIR")]
    cgroup: Option<PathBuf>,
    /// Function names or globs: mycrate::module::func, 'mycrate::*', main.work, pthread_mutex_lock
    #[arg(value_name = "FUNCTION", required = true)]
    functions: Vec<String>,
    /// Histograms of call duration (Go: probes on each RET, never uretprobes)
    #[arg(long)]
    latency: bool,
    /// Count calls per calling user stack (with --latency: and their time, walked at the return)
    #[arg(long)]
    stacks: bool,
    #[command(flatten)]
    intervals: IntervalArgs,
    #[command(flatten)]
    output: OutputArgs,
}

fn main() {
    let args: Args = parse_args(TOOL);
    run_main(TOOL, || run(args));
}

fn run(args: Args) -> Result<()> {
    let target = match (&args.binary, args.pid) {
        (Some(path), pid) => Target::Binary {
            path: path.clone(),
            pid,
        },
        (None, Some(pid)) => Target::Process(pid),
        (None, None) => return Err(Error::usage("give -x BINARY or -p PID")),
    };
    let mode = match (args.latency, args.stacks) {
        (true, true) => Mode::LatencyStacks {
            min: Default::default(),
        },
        (true, false) => Mode::Latency,
        (false, true) => Mode::Stacks,
        (false, false) => Mode::Count,
    };
    let opts = UprobeOptions {
        target,
        patterns: args.functions.clone(),
        mode,
        cgroup: args.cgroup.clone(),
        kit: Default::default(),
    };
    let Some(env) = libnetprobe::run::start(args.output.list_probes, USES)? else {
        return Ok(());
    };
    let mut probe = UprobeProbe::open(&opts, &env)?;
    let go = probe.functions().iter().filter(|f| f.go).count();
    let go_note = if go > 0 && args.latency {
        format!(" ({go} Go: return probes on their RET instructions, never uretprobes)")
    } else {
        String::new()
    };
    eprintln!(
        "{TOOL}: {} functions{go_note}, {} uprobes",
        probe.functions().len(),
        probe.probes()
    );
    libnetprobe::run::run_intervals(
        TOOL,
        &mut probe,
        &args.intervals,
        args.output.json,
        |r, info| report_text(TOOL, info, r),
    )
}
