//! A tap's queues next to the vhost-net virtqueues behind them, every interval: the ring
//! toward the VM (xmits, full, fill, drops) and the RX virtqueue that empties it (buffers used,
//! guest notifications, the avail entries the guest posted), plus the TX virtqueue's buffers.
use clap::Parser;
use libnetprobe::cli::{parse_args, run_main, OutputArgs, TapQueueArgs};
use libnetprobe::kit::set::SetInfo;
use libnetprobe::output::vhost::tap_vhost_text;
use libnetprobe::sets::tap_vhost::TapVhostProbe;
use libnetprobe::sets::tun::TunSet;
use libnetprobe::sets::vhost::VhostSet;
use libnetprobe::Result;

const TOOL: &str = "tun_to_vhost_queue_status_simple_summary";

/// The probe sets this tool uses.
const USES: &[SetInfo] = &[SetInfo::of::<TunSet>(), SetInfo::of::<VhostSet>()];

/// Per queue of a tap: its tx ring toward the VM (the tun set, from tp_btf/net_dev_start_xmit)
/// and the vhost-net virtqueues joined to it by the worker's reads and writes (the vhost set,
/// fentry or kprobes). A full ring with RX USED 0 is a vhost worker that stopped; EMPTY CALLS
/// and AVAIL PENDING 0, a guest out of buffers; RX SIGNALS below RX CALLS, a guest that asked
/// for no interrupts. Needs vhost_net.
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
    let opts = args.tap.options()?;
    let Some(env) = libnetprobe::run::start(args.output.list_probes, USES)? else {
        return Ok(());
    };
    let mut probe = TapVhostProbe::open(opts, &env)?;
    libnetprobe::run::run_intervals(
        TOOL,
        &mut probe,
        &args.tap.intervals(),
        args.output.json,
        |r, info| tap_vhost_text(TOOL, info, r),
    )
}
