//! Per-packet qdisc sojourn on one device: enqueue (net_dev_queue) to dequeue, with the qdisc
//! length at dequeue, for packets that waited at least --latency-us.
use clap::Parser;
use libnetprobe::cli::{parse_args, run_main, OutputArgs};
use libnetprobe::output::latency::EventStyle;
use libnetprobe::sets::latency::args::{
    interfaces, run_details, DetailsArgs, EngineArgs, LatencyFilterArgs,
};
use libnetprobe::sets::latency::{LatencyOptions, Path};
use libnetprobe::Result;

const TOOL: &str = "qdisc_latency_details";

/// Reports packets that waited in a device's qdisc at least --latency-us: the time from
/// enqueue to dequeue, the qdisc length then, CPU, queue and length.
#[derive(Debug, Parser)]
#[command(name = TOOL, version, after_help = "Stages: qdisc_enqueue > qdisc_dequeue. Devices without a qdisc (noqueue) never dequeue.")]
struct Args {
    /// The device whose qdisc is timed
    #[arg(long, visible_alias = "phy-interface", value_name = "IFNAME")]
    dev: String,
    #[command(flatten)]
    details: DetailsArgs,
    #[command(flatten)]
    filter: LatencyFilterArgs,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    output: OutputArgs,
}

fn main() {
    let args: Args = parse_args(TOOL);
    run_main(TOOL, || run(args));
}

fn run(args: Args) -> Result<()> {
    let filter = args.filter.resolve()?;
    let ifaces = interfaces(&filter, Some(&args.dev), None, None)?;
    let mut opts = LatencyOptions::details(
        vec![Path::qdisc()],
        filter,
        ifaces,
        args.details.threshold(),
    );
    args.details.apply(&mut opts);
    args.engine.apply(&mut opts);
    run_details(
        TOOL,
        opts,
        args.details.duration,
        args.output.json,
        args.output.list_probes,
        EventStyle::Metrics,
    )
}
