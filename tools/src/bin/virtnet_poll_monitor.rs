//! How a virtio-net device's NAPI polls go, per queue: polls, work against budget, polls that
//! found nothing, and who ran them (softirq after an IRQ, ksoftirqd, bh-enable, busy poll).
use clap::Parser;
use libnetprobe::cli::{parse_args, run_main, DeviceIntervalArgs, OutputArgs};
use libnetprobe::kit::set::SetInfo;
use libnetprobe::output::virtio::polls_text;
use libnetprobe::sets::virtio::{VirtioOptions, VirtioProbe, VirtioSet};
use libnetprobe::Result;
use std::time::Duration;

const TOOL: &str = "virtnet_poll_monitor";

/// The probe sets this tool uses.
const USES: &[SetInfo] = &[SetInfo::of::<VirtioSet>()];

/// Counts the NAPI polls of a virtio-net device (run it inside the guest), per queue and kind
/// (rx: virtnet_poll, tx: virtnet_poll_tx): polls, packets processed, work per poll, budget
/// used, zero-work and full-budget polls, and who ran each poll, told from a short kernel
/// stack: irq (the NET_RX softirq on IRQ exit), ksoftirqd, bh_enable, busy_poll
/// (SO_BUSY_POLL, epoll busy poll), threaded (threaded NAPI).
#[derive(Debug, Parser)]
#[command(
    name = TOOL,
    version,
    after_help = "Receive queues also show their own counters, read from the driver's \
receive_queue at each poll (packets, drops, kicks: refills that notified the device; +calls: rx \
callbacks, i.e. interrupts, counted for DIM). Many zero-work polls by busy_poll with IRQ_NONE \
in virtnet_irq_monitor: busy polling is stealing the device's interrupts."
)]
struct Args {
    #[command(flatten)]
    dev: DeviceIntervalArgs,
    /// Only this queue pair
    #[arg(short = 'q', long, value_name = "N")]
    queue: Option<u32>,
    /// Also show each receive queue's own counters (packets, drops, kicks, callbacks)
    #[arg(short, long)]
    verbose: bool,
    #[command(flatten)]
    output: OutputArgs,
}

fn main() {
    let args: Args = parse_args(TOOL);
    run_main(TOOL, || run(args));
}

fn run(args: Args) -> Result<()> {
    let mut opts = VirtioOptions::polls(&args.dev.device);
    opts.netns = args.dev.netns()?;
    opts.queue = args.queue;
    opts.validate()?;
    let Some(env) = libnetprobe::run::start(args.output.list_probes, USES)? else {
        return Ok(());
    };
    let mut probe = VirtioProbe::open(opts, &env)?;
    let verbose = args.verbose;
    libnetprobe::run::run_intervals(
        TOOL,
        &mut probe,
        &args.dev.intervals(Duration::from_secs(10)),
        args.output.json,
        |r, info| polls_text(TOOL, info, r, verbose),
    )
}
