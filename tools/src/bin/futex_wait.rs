//! Futex wait time per process, futex word and waiting user stack, with µs histograms, from
//! the raw syscall tracepoints.
use clap::Parser;
use libnetprobe::cli::{parse_args, run_main, IntervalArgs, OutputArgs};
use libnetprobe::kit::set::SetInfo;
use libnetprobe::output::syscall::futex_text;
use libnetprobe::sets::syscall::{FutexOptions, FutexProbe, SyscallFilter, SyscallSet};
use libnetprobe::Result;
use std::path::PathBuf;

const TOOL: &str = "futex_wait";

/// The probe sets this tool uses.
const USES: &[SetInfo] = &[SetInfo::of::<SyscallSet>()];

/// Times every futex wait (FUTEX_WAIT, WAIT_BITSET, LOCK_PI, WAIT_REQUEUE_PI) from the call
/// to its return and sums it per process, futex word and waiting user stack, in the kernel.
/// The word says which lock; a libc without frame pointers ends the stack in its futex
/// wrapper: lock_wait names the callers of pthread locks.
#[derive(Debug, Parser)]
#[command(name = TOOL, version)]
struct Args {
    /// Only this process
    #[arg(short = 'p', long, value_name = "PID")]
    pid: Option<u32>,
    /// Only tasks in this cgroup v2 directory
    #[arg(long, value_name = "DIR")]
    cgroup: Option<PathBuf>,
    /// Do not walk the waiting user stacks
    #[arg(long)]
    no_stacks: bool,
    /// Stack map entries
    #[arg(long, default_value_t = libnetprobe::sets::cpu::DEFAULT_STACK_STORAGE, value_name = "N")]
    stack_storage_size: u32,
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
    let opts = FutexOptions {
        filter: SyscallFilter {
            pid: args.pid,
            cgroup: args.cgroup.clone(),
        },
        stacks: !args.no_stacks,
        stack_storage: args.stack_storage_size,
        ..FutexOptions::default()
    };
    let Some(env) = libnetprobe::run::start(args.output.list_probes, USES)? else {
        return Ok(());
    };
    let mut probe = FutexProbe::open(&opts, &env)?;
    libnetprobe::run::run_intervals(
        TOOL,
        &mut probe,
        &args.intervals,
        args.output.json,
        |r, info| futex_text(TOOL, info, r),
    )
}
