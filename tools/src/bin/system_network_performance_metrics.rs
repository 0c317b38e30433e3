//! Per-packet stage metadata on the host path: for every packet at or above --latency-us, each
//! stage's time, CPU, device, queue, skb hash, length and qdisc length (CPU and queue moves).
use clap::Parser;
use libnetprobe::cli::{parse_args, run_main, OutputArgs};
use libnetprobe::output::latency::EventStyle;
use libnetprobe::sets::latency::args::{
    interfaces, run_details, DetailsArgs, EngineArgs, LatencyFilterArgs, OvsArgs,
};
use libnetprobe::sets::latency::{Direction, LatencyOptions, Path};
use libnetprobe::Result;

const TOOL: &str = "system_network_performance_metrics";

/// Shows, per packet, where it ran and how it was queued at each stage of the host path:
/// CPU, device, TX queue, skb hash, length, qdisc length, and the time between stages.
#[derive(Debug, Parser)]
#[command(name = TOOL, version, after_help = "Stages (tx): [internal_queue > internal_xmit >] phy_queue > phy_qdisc_dequeue > phy_start_xmit > phy_xmit.\nStages (rx): phy_rx > phy_receive [> internal_receive] > sock_read | consumed.")]
struct Args {
    /// Physical interface(s), comma separated (bond members)
    #[arg(long, value_name = "IFNAME[,IFNAME]")]
    phy_interface: String,
    /// Host-stack side device: an OVS internal port or a bridge
    #[arg(long, value_name = "IFNAME")]
    internal_interface: Option<String>,
    /// Direction of the host stack's packets
    #[arg(long, value_enum, default_value_t = Direction::Both)]
    direction: Direction,
    #[command(flatten)]
    details: DetailsArgs,
    #[command(flatten)]
    filter: LatencyFilterArgs,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    ovs: OvsArgs,
    #[command(flatten)]
    output: OutputArgs,
}

fn main() {
    let args: Args = parse_args(TOOL);
    run_main(TOOL, || run(args));
}

fn run(args: Args) -> Result<()> {
    let filter = args.filter.resolve()?;
    let ifaces = interfaces(
        &filter,
        Some(&args.phy_interface),
        args.internal_interface.as_deref(),
        None,
    )?;
    let internal = !ifaces.internal.is_empty();
    let paths = args
        .direction
        .each()
        .into_iter()
        .map(|d| Path::system(d, internal))
        .collect();
    let paths = args.ovs.apply(paths)?;
    let mut opts = LatencyOptions::details(paths, filter, ifaces, args.details.threshold());
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
