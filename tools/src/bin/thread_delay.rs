//! Where the threads of named processes spend their time, per interval: on CPU, waiting for a
//! CPU, asleep, blocked, and the IRQ work done on their time (OVS's kernel_delay).
use clap::Parser;
use libnetprobe::cli::{parse_args, run_main, IntervalArgs, OutputArgs};
use libnetprobe::kernel::process::ProcessSpec;
use libnetprobe::kit::set::SetInfo;
use libnetprobe::output::sched::delay_text;
use libnetprobe::sets::sched::{SchedOptions, SchedProbe, SchedSet};
use libnetprobe::Result;

const TOOL: &str = "thread_delay";

/// The probe sets this tool uses.
const USES: &[SetInfo] = &[SetInfo::of::<SchedSet>()];

/// Splits each thread's time of the processes given with -p (ovs-vswitchd's handlers, a VM's
/// vhost workers) into on CPU, run-queue wait, sleep, blocked, hard and soft IRQ time, every
/// interval, from the scheduler's and the IRQ tracepoints.
#[derive(Debug, Parser)]
#[command(name = TOOL, version)]
struct Args {
    /// The processes: a pid, or a command name (glob: 'vhost-*')
    #[arg(short = 'p', long, value_name = "NAME|PID")]
    process: String,
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
        process: Some(ProcessSpec::parse(&args.process)),
        ..SchedOptions::default()
    };
    let Some(env) = libnetprobe::run::start(args.output.list_probes, USES)? else {
        return Ok(());
    };
    let mut probe = SchedProbe::open(&opts, &env)?;
    libnetprobe::run::run_intervals(
        TOOL,
        &mut probe,
        &args.intervals,
        args.output.json,
        |r, info| delay_text(TOOL, info, r),
    )
}
