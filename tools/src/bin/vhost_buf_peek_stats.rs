//! What vhost-net's RX workers find when they look at the next packet of their batch
//! (`vhost_net_buf_peek`), per virtqueue and interval: calls, empty batches, mean length.
use clap::Parser;
use libnetprobe::cli::{parse_args, run_main, OutputArgs, VhostArgs};
use libnetprobe::kit::set::SetInfo;
use libnetprobe::output::vhost::peek_text;
use libnetprobe::sets::vhost::{VhostProbe, VhostSet};
use libnetprobe::Result;

const TOOL: &str = "vhost_buf_peek_stats";

/// The probe sets this tool uses.
const USES: &[SetInfo] = &[SetInfo::of::<VhostSet>()];

/// Counts, per vhost-net RX virtqueue, the returns of `vhost_net_buf_peek` (fexit, else a
/// kretprobe): the worker looking at the next packet of the batch it took from the tap's ring.
/// EMPTY (a return of 0) is a batch used up: vhost takes the next one from the ring, or finds
/// none. MEAN LEN is the packets' length without the vnet header. Needs vhost_net.
#[derive(Debug, Parser)]
#[command(name = TOOL, version)]
struct Args {
    #[command(flatten)]
    vhost: VhostArgs,
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
    let mut probe = VhostProbe::open(args.vhost.options(), &env)?;
    libnetprobe::run::run_intervals(
        TOOL,
        &mut probe,
        &args.vhost.intervals(),
        args.output.json,
        |r, info| peek_text(TOOL, info, r),
    )
}
