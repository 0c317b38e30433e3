//! pthread mutex and rwlock wait times of a process, with the stacks that waited: uprobes on
//! the lock functions of the C library the process maps.
use clap::{Parser, ValueEnum};
use libnetprobe::cli::{parse_args, run_main, IntervalArgs, OutputArgs};
use libnetprobe::kit::set::SetInfo;
use libnetprobe::output::uprobe::report_text;
use libnetprobe::sets::uprobe::locks::{lock_options, LockKind};
use libnetprobe::sets::uprobe::{UprobeProbe, UprobeSet};
use libnetprobe::Result;
use std::time::Duration;

const TOOL: &str = "lock_wait";

/// The probe sets this tool uses.
const USES: &[SetInfo] = &[SetInfo::of::<UprobeSet>()];

/// Which locks.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Locks {
    /// Mutexes and rwlocks
    All,
    /// pthread_mutex_*lock
    Mutex,
    /// pthread_rwlock_*lock
    Rwlock,
}

/// Times the pthread mutex and rwlock lock calls of a process (uprobes on the lock functions
/// of the C library it maps: found in /proc/PID/maps, not at a fixed path) and counts the
/// waits per waiting stack with their time. Every lock call is a trap (microseconds): an
/// uncontended lock taken 100,000 times a second costs a CPU.
#[derive(Debug, Parser)]
#[command(name = TOOL, version)]
struct Args {
    /// The process
    #[arg(short = 'p', long, value_name = "PID")]
    pid: u32,
    /// Which locks
    #[arg(long, value_enum, default_value_t = Locks::All)]
    locks: Locks,
    /// Only waits this long are counted per stack (all are in the histograms)
    #[arg(short = 'm', long, default_value_t = 0, value_name = "US")]
    min_wait_us: u64,
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
    let kinds: &[LockKind] = match args.locks {
        Locks::All => &[LockKind::Mutex, LockKind::Rwlock],
        Locks::Mutex => &[LockKind::Mutex],
        Locks::Rwlock => &[LockKind::Rwlock],
    };
    let opts = lock_options(args.pid, kinds, Duration::from_micros(args.min_wait_us))?;
    let Some(env) = libnetprobe::run::start(args.output.list_probes, USES)? else {
        return Ok(());
    };
    let mut probe = UprobeProbe::open(&opts, &env)?;
    eprintln!(
        "{TOOL}: {} lock functions in {}",
        probe.functions().len(),
        probe.functions().first().map_or("?", |f| f.binary.as_str())
    );
    libnetprobe::run::run_intervals(
        TOOL,
        &mut probe,
        &args.intervals,
        args.output.json,
        |r, info| report_text(TOOL, info, r),
    )
}
