//! The Open vSwitch datapath's slow path, every interval: upcalls (misses, userspace actions)
//! by flow, megaflow installs, the miss → install latency with percentiles, failed upcalls.
use clap::Parser;
use libnetprobe::cli::{parse_args, run_main, IntervalArgs, OutputArgs};
use libnetprobe::kit::set::SetInfo;
use libnetprobe::kit::KitConfig;
use libnetprobe::output::ovs::report_text;
use libnetprobe::sets::ovs::{OvsProbe, OvsSet};
use libnetprobe::Result;

const TOOL: &str = "ovs_upcall_latency_summary";

/// The probe sets this tool uses.
const USES: &[SetInfo] = &[SetInfo::of::<OvsSet>()];

/// Counts the OVS kernel datapath's upcalls (`openvswitch:ovs_dp_upcall`, else fentry or a
/// kprobe on `ovs_dp_upcall`) by the flow key the packet missed with, the megaflow installs
/// (`ovs_flow_cmd_new`), and times each install against the oldest miss waiting for one (as
/// ovs-vswitchd's handlers answer them in order): a log2 histogram with percentiles. Failed
/// upcalls are counted by errno (ENOTCONN: no handler listening; ENOSPC/ENOBUFS: the
/// handler's socket is full). Needs the openvswitch module.
#[derive(Debug, Parser)]
#[command(name = TOOL, version)]
struct Args {
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
    let Some(env) = libnetprobe::run::start(args.output.list_probes, USES)? else {
        return Ok(());
    };
    let mut probe = OvsProbe::open(KitConfig::default(), &env)?;
    libnetprobe::run::run_intervals(
        TOOL,
        &mut probe,
        &args.intervals,
        args.output.json,
        |r, info| report_text(TOOL, info, r),
    )
}
