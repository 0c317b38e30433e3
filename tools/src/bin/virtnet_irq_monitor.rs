//! A virtio-net device's virtqueue interrupts: count, CPU spread, IRQ_NONE vs IRQ_HANDLED,
//! handler time and inter-arrival histograms, per IRQ and interval.
use clap::Parser;
use libnetprobe::cli::{parse_args, run_main, DeviceIntervalArgs, OutputArgs};
use libnetprobe::kit::set::SetInfo;
use libnetprobe::output::virtio::irqs_text;
use libnetprobe::sets::virtio::{VirtioOptions, VirtioProbe, VirtioSet};
use libnetprobe::Result;
use std::time::Duration;

const TOOL: &str = "virtnet_irq_monitor";

/// The probe sets this tool uses.
const USES: &[SetInfo] = &[SetInfo::of::<VirtioSet>()];

/// Watches the interrupts of a virtio-net device (run it inside the guest): per IRQ, how many,
/// on which CPUs, how many found nothing to do (IRQ_NONE: vring_interrupt saw no used buffer,
/// e.g. because busy polling took it first), the handler's run time and the time between
/// interrupts. The device's IRQs are found in /proc/interrupts (virtioN-input.Q,
/// virtioN-output.Q, virtioN-config); --irqs gives them by number instead.
#[derive(Debug, Parser)]
#[command(name = TOOL, version)]
struct Args {
    #[command(flatten)]
    dev: DeviceIntervalArgs,
    /// Only these IRQ numbers (comma separated; default: every IRQ of the device)
    #[arg(long, value_name = "IRQ,...", value_delimiter = ',', value_parser = parse_irq)]
    irqs: Vec<u32>,
    /// Leave out the per-IRQ histograms of handler time and inter-arrival time
    #[arg(long)]
    no_hist: bool,
    #[command(flatten)]
    output: OutputArgs,
}

fn parse_irq(s: &str) -> std::result::Result<u32, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("{} is not an IRQ number", libnetprobe::cli::quote(s)))
}

fn main() {
    let args: Args = parse_args(TOOL);
    run_main(TOOL, || run(args));
}

fn run(args: Args) -> Result<()> {
    let mut opts = VirtioOptions::irqs(&args.dev.device);
    opts.netns = args.dev.netns()?;
    opts.irqs = Some(args.irqs);
    opts.validate()?;
    let Some(env) = libnetprobe::run::start(args.output.list_probes, USES)? else {
        return Ok(());
    };
    let mut probe = VirtioProbe::open(opts, &env)?;
    let hists = !args.no_hist;
    libnetprobe::run::run_intervals(
        TOOL,
        &mut probe,
        &args.dev.intervals(Duration::from_secs(5)),
        args.output.json,
        |r, info| irqs_text(TOOL, info, r, hists),
    )
}
