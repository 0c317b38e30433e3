//! Why OVS upcalls fail, every interval: the results of `queue_userspace_packet` (the upcall's
//! netlink message to a handler) and the failures of `ovs_dp_upcall`, by errno.
use clap::Parser;
use libnetprobe::cli::{parse_args, run_main, IntervalArgs, OutputArgs};
use libnetprobe::kit::set::SetInfo;
use libnetprobe::kit::KitConfig;
use libnetprobe::output::ovs::queue_text;
use libnetprobe::sets::ovs::{OvsProbe, OvsSet};
use libnetprobe::Result;

const TOOL: &str = "queue_userspace_packet_retval";

/// The probe sets this tool uses.
const USES: &[SetInfo] = &[SetInfo::of::<OvsSet>()];

/// Counts the results of `queue_userspace_packet` (fexit, else a kretprobe), which sends an
/// upcall to its handler's netlink socket: ok, ECONNREFUSED (no socket at the port: the
/// handler is gone), EAGAIN/ENOBUFS (its socket is full), ENOMEM; and the failures of
/// `ovs_dp_upcall` around it (ENOTCONN: the port has no handler at all, as with OVS 3.1.0 in
/// its first 10 s). Needs the openvswitch module.
#[derive(Debug, Parser)]
#[command(name = TOOL, version)]
struct Args {
    /// Only failed upcalls
    #[arg(long)]
    filter_error: bool,
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
    let errors_only = args.filter_error;
    libnetprobe::run::run_intervals(
        TOOL,
        &mut probe,
        &args.intervals,
        args.output.json,
        |r, info| queue_text(TOOL, info, r, errors_only),
    )
}
