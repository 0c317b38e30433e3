//! Run-queue latency — from a wakeup (or a preemption) to running on a CPU — as log2
//! histograms per interval, of every task or of named processes.
use clap::Parser;
use libnetprobe::cli::{parse_args, run_main, IntervalArgs, OutputArgs};
use libnetprobe::kernel::process::ProcessSpec;
use libnetprobe::kit::set::SetInfo;
use libnetprobe::output::sched::runqlat_text;
use libnetprobe::sets::sched::{SchedOptions, SchedProbe, SchedSet};
use libnetprobe::Result;

const TOOL: &str = "runqlat_monitor";

/// The probe sets this tool uses.
const USES: &[SetInfo] = &[SetInfo::of::<SchedSet>()];

/// How long runnable threads wait for a CPU, from the scheduler's tracepoints, every
/// interval: one histogram of every task, or of the processes given with -p.
#[derive(Debug, Parser)]
#[command(name = TOOL, version)]
struct Args {
    /// Only these processes: a pid, or a command name (glob: 'vhost-*', handler threads'
    /// process 'ovs-vswitchd')
    #[arg(short = 'p', long, value_name = "NAME|PID")]
    process: Option<String>,
    /// One histogram per process
    #[arg(short = 'P', long)]
    per_process: bool,
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
    let opts = SchedOptions {
        process: args.process.as_deref().map(ProcessSpec::parse),
        ..SchedOptions::default()
    };
    let Some(env) = libnetprobe::run::start(args.output.list_probes, USES)? else {
        return Ok(());
    };
    let mut probe = SchedProbe::open(&opts, &env)?;
    let per_process = args.per_process;
    libnetprobe::run::run_intervals(
        TOOL,
        &mut probe,
        &args.intervals,
        args.output.json,
        |r, info| runqlat_text(TOOL, info, r, per_process),
    )
}
