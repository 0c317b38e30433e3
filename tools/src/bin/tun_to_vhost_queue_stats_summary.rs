//! A tap's queues next to the vhost-net virtqueues behind them, every interval, with log2
//! histograms of the depths: the ring's fill at xmit and at vhost's reads, the RX virtqueue's
//! pending and in-flight entries at each used+signal.
use clap::Parser;
use libnetprobe::cli::{parse_args, run_main, OutputArgs, TapQueueArgs};
use libnetprobe::kit::set::SetInfo;
use libnetprobe::output::vhost::queue_stats_text;
use libnetprobe::sets::tap_vhost::TapVhostProbe;
use libnetprobe::sets::tun::TunSet;
use libnetprobe::sets::vhost::VhostSet;
use libnetprobe::Result;

const TOOL: &str = "tun_to_vhost_queue_stats_summary";

/// The probe sets this tool uses.
const USES: &[SetInfo] = &[SetInfo::of::<TunSet>(), SetInfo::of::<VhostSet>()];

/// Per queue of a tap: its tx ring toward the VM (the tun set, from tp_btf/net_dev_start_xmit)
/// and the vhost-net virtqueues joined to it by the worker's reads and writes (the vhost set,
/// fentry or kprobes). A full ring with RX USED 0 is a vhost worker that stopped; EMPTY CALLS
/// and AVAIL PENDING 0, a guest out of buffers; RX SIGNALS below RX CALLS, a guest that asked
/// for no interrupts. Beneath the table, per queue, log2 histograms with percentiles: the
/// ring's fill at a sample of the xmits (1 in 8 per CPU, every full one), the ring's depth at
/// each of the vhost worker's reads (`tun_recvmsg`), and at each `vhost_add_used_and_signal_n`
/// the avail entries the guest posted that vhost had not taken and those taken but not yet
/// used. Needs vhost_net.
#[derive(Debug, Parser)]
#[command(name = TOOL, version)]
struct Args {
    #[command(flatten)]
    tap: TapQueueArgs,
    #[command(flatten)]
    output: OutputArgs,
}

fn main() {
    let args: Args = parse_args(TOOL);
    run_main(TOOL, || run(args));
}

fn run(args: Args) -> Result<()> {
    let mut opts = args.tap.options()?;
    opts.hists = true;
    let Some(env) = libnetprobe::run::start(args.output.list_probes, USES)? else {
        return Ok(());
    };
    let mut probe = TapVhostProbe::open(opts, &env)?;
    libnetprobe::run::run_intervals(
        TOOL,
        &mut probe,
        &args.tap.intervals(),
        args.output.json,
        |r, info| queue_stats_text(TOOL, info, r),
    )
}
