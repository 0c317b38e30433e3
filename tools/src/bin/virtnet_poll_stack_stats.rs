//! Who calls a virtio-net device's NAPI poll: its polls counted by kernel stack, per queue,
//! kind and caller (softirq after an IRQ, ksoftirqd, bh-enable, busy poll).
use clap::Parser;
use libnetprobe::cli::{parse_args, run_main, DeviceIntervalArgs, OutputArgs};
use libnetprobe::kit::set::SetInfo;
use libnetprobe::output::virtio::stacks_text;
use libnetprobe::sets::virtio::{VirtioOptions, VirtioProbe, VirtioSet, DEFAULT_STACK_DEPTH};
use libnetprobe::Result;
use std::time::Duration;

const TOOL: &str = "virtnet_poll_stack_stats";

/// The probe sets this tool uses.
const USES: &[SetInfo] = &[SetInfo::of::<VirtioSet>()];

/// Counts the NAPI polls of a virtio-net device (run it inside the guest) by kernel stack:
/// which code path polls the device, e.g. net_rx_action after an interrupt or napi_busy_loop
/// from a socket with SO_BUSY_POLL. Stacks are cut after --depth frames, so polls from the
/// same path count together whatever they interrupted; a stack whose caller was named by a
/// deeper frame keeps the frames down to that one.
#[derive(Debug, Parser)]
#[command(name = TOOL, version)]
struct Args {
    #[command(flatten)]
    dev: DeviceIntervalArgs,
    /// Only this queue pair
    #[arg(short = 'q', long, value_name = "N")]
    queue: Option<u32>,
    /// Frames kept per stack, below the tracing frames (3 to 64)
    #[arg(long, default_value_t = DEFAULT_STACK_DEPTH, value_name = "N")]
    depth: u32,
    /// Stacks shown per interval, most polls first
    #[arg(short = 't', long, default_value_t = 10, value_name = "N")]
    top: usize,
    #[command(flatten)]
    output: OutputArgs,
}

fn main() {
    let args: Args = parse_args(TOOL);
    run_main(TOOL, || run(args));
}

fn run(args: Args) -> Result<()> {
    let mut opts = VirtioOptions::stacks(&args.dev.device, args.depth);
    opts.netns = args.dev.netns()?;
    opts.queue = args.queue;
    opts.validate()?;
    let Some(env) = libnetprobe::run::start(args.output.list_probes, USES)? else {
        return Ok(());
    };
    let mut probe = VirtioProbe::open(opts, &env)?;
    let top = args.top;
    libnetprobe::run::run_intervals(
        TOOL,
        &mut probe,
        &args.dev.intervals(Duration::from_secs(10)),
        args.output.json,
        |r, info| stacks_text(TOOL, info, r, top),
    )
}
