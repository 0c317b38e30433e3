//! What vhost-net's RX workers find when they look at the next packet of their batch
//! (`vhost_net_buf_peek`), per virtqueue and interval: calls, empty batches, mean length.
use clap::Parser;
use libnetprobe::cli::{
    parse_args, parse_duration, parse_interval, run_main, IntervalArgs, OutputArgs,
};
use libnetprobe::kit::set::SetInfo;
use libnetprobe::output::vhost::peek_text;
use libnetprobe::sets::vhost::{VhostOptions, VhostProbe, VhostSet};
use libnetprobe::Result;
use std::time::Duration;

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
    /// Only this VM: the VMM's (QEMU's) pid
    #[arg(short = 'p', long, value_name = "PID")]
    pid: Option<u32>,
    /// Only virtqueues whose tap is this device (vnet0)
    #[arg(short = 'd', long, value_name = "IFNAME")]
    device: Option<String>,
    /// Only this tap queue
    #[arg(short = 'q', long, value_name = "N")]
    queue: Option<u16>,
    /// Seconds between reports
    #[arg(short = 'i', long, default_value = "1", value_parser = parse_interval, value_name = "SECS")]
    interval: Duration,
    /// Stop after this many seconds (default: run until Ctrl-C)
    #[arg(long, value_parser = parse_duration, value_name = "SECS")]
    duration: Option<Duration>,
    #[command(flatten)]
    output: OutputArgs,
}

fn main() {
    let args: Args = parse_args(TOOL);
    run_main(TOOL, || run(args));
}

fn run(args: Args) -> Result<()> {
    let opts = VhostOptions {
        vmm_pid: args.pid,
        device: args.device,
        queue: args.queue,
        ..VhostOptions::default()
    };
    let Some(env) = libnetprobe::run::start(args.output.list_probes, USES)? else {
        return Ok(());
    };
    let mut probe = VhostProbe::open(opts, &env)?;
    libnetprobe::run::run_intervals(
        TOOL,
        &mut probe,
        &IntervalArgs {
            interval: args.interval,
            duration: args.duration,
        },
        args.output.json,
        |r, info| peek_text(TOOL, info, r),
    )
}
