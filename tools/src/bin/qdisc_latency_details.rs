//! Per-packet qdisc sojourn on one device: enqueue (net_dev_queue) to dequeue, with the qdisc
//! length at dequeue, for packets that waited at least --latency-us.
use clap::Parser;
use libnetprobe::cli::{parse_args, parse_duration, run_main, OutputArgs};
use libnetprobe::output::latency::EventStyle;
use libnetprobe::sets::latency::args::{interfaces, run_details, EngineArgs, LatencyFilterArgs};
use libnetprobe::sets::latency::{LatencyOptions, Path};
use libnetprobe::Result;
use std::time::Duration;

const TOOL: &str = "qdisc_latency_details";

/// Reports packets that waited in a device's qdisc at least --latency-us: the time from
/// enqueue to dequeue, the qdisc length then, CPU, queue and length.
#[derive(Debug, Parser)]
#[command(name = TOOL, version, after_help = "Stages: qdisc_enqueue > qdisc_dequeue. Devices without a qdisc (noqueue) never dequeue.")]
struct Args {
    /// The device whose qdisc is timed
    #[arg(long, visible_alias = "phy-interface", value_name = "IFNAME")]
    dev: String,
    /// Report packets that waited at least this many microseconds
    #[arg(long, default_value_t = 0, value_name = "US")]
    latency_us: u64,
    /// Stop after this many seconds (default: run until Ctrl-C)
    #[arg(short = 'd', long, value_parser = parse_duration, value_name = "SECS")]
    duration: Option<Duration>,
    /// At most this many events per second (0: no limit); more are counted as rate-limited
    #[arg(long, default_value_t = libnetprobe::kit::DEFAULT_MAX_EVENTS_PER_SEC, value_name = "N")]
    max_events_per_sec: u64,
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
    let threshold = Duration::from_micros(args.latency_us);
    let mut opts = LatencyOptions::details(vec![Path::qdisc()], filter, ifaces, threshold);
    opts.kit.max_events_per_sec = args.max_events_per_sec;
    args.engine.apply(&mut opts);
    run_details(
        TOOL,
        opts,
        args.duration,
        args.output.json,
        args.output.list_probes,
        EventStyle::Metrics,
    )
}
