//! Syscall counts, failures and time per syscall, per process or per cgroup, counted in the
//! kernel on the raw syscall tracepoints (bcc's syscount; `perf stat -e 'syscalls:*' -G`).
use clap::Parser;
use libnetprobe::cli::{parse_args, run_main, IntervalArgs, OutputArgs};
use libnetprobe::kit::set::SetInfo;
use libnetprobe::output::syscall::{syscount_text, SyscountStyle};
use libnetprobe::sets::syscall::{
    errno_number, syscall_number, By, SyscallFilter, SyscallSet, SyscountOptions, SyscountProbe,
};
use libnetprobe::Result;
use std::path::PathBuf;

const TOOL: &str = "syscount";

/// The probe sets this tool uses.
const USES: &[SetInfo] = &[SetInfo::of::<SyscallSet>()];

/// Counts syscalls in the kernel — per syscall, per process (-P) or per cgroup
/// (--per-cgroup) — with failures, and with -L the time spent in them. Nothing is sent per
/// call: the counts are read once per interval.
#[derive(Debug, Parser)]
#[command(name = TOOL, version)]
struct Args {
    /// Only this process
    #[arg(short = 'p', long, value_name = "PID")]
    pid: Option<u32>,
    /// Only tasks in this cgroup v2 directory
    #[arg(long, value_name = "DIR")]
    cgroup: Option<PathBuf>,
    /// Count per process
    #[arg(short = 'P', long, conflicts_with = "per_cgroup")]
    process: bool,
    /// Count per cgroup (v2)
    #[arg(long)]
    per_cgroup: bool,
    /// Time the calls (entry to return): total, average, maximum
    #[arg(short = 'L', long)]
    latency: bool,
    /// Times in milliseconds (default: microseconds)
    #[arg(short = 'm', long, requires = "latency")]
    milliseconds: bool,
    /// Rows shown per interval (0: all)
    #[arg(short = 'T', long, default_value_t = 10, value_name = "N")]
    top: usize,
    /// Count failed calls only
    #[arg(short = 'x', long)]
    failures: bool,
    /// Count only calls that failed with this errno (ENOENT, or a number)
    #[arg(short = 'e', long, value_name = "ERRNO")]
    errno: Option<String>,
    /// Only this syscall (a name, or a number)
    #[arg(long, value_name = "NAME")]
    syscall: Option<String>,
    /// List the syscalls this architecture's table names, and exit
    #[arg(short = 'l', long)]
    list: bool,
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
    if args.list {
        for nr in 0..1024 {
            let name = libnetprobe::sets::syscall::syscall_name(nr);
            if !name.starts_with("syscall_") {
                println!("{nr:>4} {name}");
            }
        }
        return Ok(());
    }
    let opts = SyscountOptions {
        filter: SyscallFilter {
            pid: args.pid,
            cgroup: args.cgroup.clone(),
        },
        by: match (args.process, args.per_cgroup) {
            (true, _) => By::Process,
            (_, true) => By::Cgroup,
            _ => By::Syscall,
        },
        syscall: args.syscall.as_deref().map(syscall_number).transpose()?,
        timed: args.latency,
        failures: args.failures,
        errno: args.errno.as_deref().map(errno_number).transpose()?,
        ..SyscountOptions::default()
    };
    let Some(env) = libnetprobe::run::start(args.output.list_probes, USES)? else {
        return Ok(());
    };
    let mut probe = SyscountProbe::open(&opts, &env)?;
    let style = SyscountStyle {
        top: args.top,
        milliseconds: args.milliseconds,
    };
    libnetprobe::run::run_intervals(
        TOOL,
        &mut probe,
        &args.intervals,
        args.output.json,
        |r, info| syscount_text(TOOL, info, r, style),
    )
}
