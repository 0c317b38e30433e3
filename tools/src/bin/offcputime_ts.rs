//! Off-CPU time by stack as a time series: from sched_switch, a blocked thread's user and
//! kernel stacks and the microseconds until it runs again, summed in the kernel per interval.
use clap::Parser;
use libnetprobe::cli::{parse_args, parse_interval, run_main, OutputArgs};
use libnetprobe::kit::set::SetInfo;
use libnetprobe::output::cpu::offcpu_text;
use libnetprobe::sets::cpu::args::{RunLength, StackArgs};
use libnetprobe::sets::cpu::{
    CpuSet, OffCpuOptions, OffCpuProbe, TaskFilter, Threads, DEFAULT_STACK_REFRESH,
};
use libnetprobe::Result;
use std::path::PathBuf;
use std::time::Duration;

const TOOL: &str = "offcputime_ts";

/// The probe sets this tool uses.
const USES: &[SetInfo] = &[SetInfo::of::<CpuSet>()];

/// Summarizes off-CPU time by stack: where threads blocked (or were preempted) and for how
/// long, in microseconds, optionally as one timestamped block per interval (-I). The filter
/// runs in the kernel before any stack is walked.
#[derive(Debug, Parser)]
#[command(name = TOOL, version)]
struct Args {
    /// Only this process
    #[arg(short = 'p', long, value_name = "PID", conflicts_with = "tid")]
    pid: Option<u32>,
    /// Only this thread
    #[arg(short = 't', long, value_name = "TID")]
    tid: Option<u32>,
    /// Only tasks in this cgroup v2 directory
    #[arg(long, value_name = "DIR")]
    cgroup: Option<PathBuf>,
    /// User threads only (no kernel threads)
    #[arg(
        short = 'u',
        long = "user-threads-only",
        conflicts_with = "kernel_threads_only"
    )]
    user_threads_only: bool,
    /// Kernel threads only (no user threads)
    #[arg(short = 'k', long = "kernel-threads-only")]
    kernel_threads_only: bool,
    /// Only blocks shorter than this are not counted, microseconds
    #[arg(
        short = 'm',
        long = "min-block-time",
        default_value_t = 1,
        value_name = "US"
    )]
    min_block_time: u64,
    /// Only blocks longer than this are not counted, microseconds
    #[arg(short = 'M', long = "max-block-time", value_name = "US")]
    max_block_time: Option<u64>,
    /// Only blocks that began in this task state (0 preempted, 1 interruptible sleep, 2 uninterruptible)
    #[arg(long, value_name = "STATE")]
    state: Option<u32>,
    /// Walk a thread's stacks once in N blocks at the same call site (same syscall, same user
    /// registers) and reuse them in between; times stay exact. 1: walk at every block
    #[arg(long, default_value_t = DEFAULT_STACK_REFRESH, value_name = "N")]
    stack_refresh: u32,
    /// Print one timestamped block every this many seconds
    #[arg(short = 'I', long, value_parser = parse_interval, value_name = "SECS")]
    interval: Option<Duration>,
    #[command(flatten)]
    stacks: StackArgs,
    #[command(flatten)]
    run: RunLength,
    #[command(flatten)]
    output: OutputArgs,
}

fn main() {
    let args: Args = parse_args(TOOL);
    run_main(TOOL, || run(args));
}

fn run(args: Args) -> Result<()> {
    let intervals = args.run.intervals(args.interval)?;
    let threads = match (args.user_threads_only, args.kernel_threads_only) {
        (true, _) => Threads::User,
        (_, true) => Threads::Kernel,
        _ => Threads::All,
    };
    let opts = OffCpuOptions {
        filter: TaskFilter {
            pid: args.pid,
            tid: args.tid,
            cgroup: args.cgroup.clone(),
            threads,
        },
        stacks: args.stacks.choice(),
        state: args.state,
        min_block: Duration::from_micros(args.min_block_time),
        max_block: args.max_block_time.map(Duration::from_micros),
        stack_storage: args.stacks.stack_storage_size,
        stack_refresh: args.stack_refresh,
        ..OffCpuOptions::default()
    };
    let Some(env) = libnetprobe::run::start(args.output.list_probes, USES)? else {
        return Ok(());
    };
    let mut probe = OffCpuProbe::open(&opts, &env)?;
    let style = args.stacks.style();
    libnetprobe::run::run_intervals(TOOL, &mut probe, &intervals, args.output.json, |r, info| {
        offcpu_text(TOOL, info, r, style)
    })
}
