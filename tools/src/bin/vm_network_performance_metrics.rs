//! Per-packet stage metadata on the VM path: for every packet at or above --latency-us, each
//! stage's time, CPU, device, queue, skb hash, length and qdisc length.
use clap::Parser;
use libnetprobe::cli::{parse_args, run_main, OutputArgs};
use libnetprobe::output::latency::EventStyle;
use libnetprobe::sets::latency::args::{
    interfaces, run_details, vm_ip_filter, DetailsArgs, EngineArgs, LatencyFilterArgs, OvsArgs,
};
use libnetprobe::sets::latency::{Direction, LatencyOptions, Path};
use libnetprobe::Result;

const TOOL: &str = "vm_network_performance_metrics";

/// Shows, per VM packet, where it ran and how it was queued at each stage between the tap and
/// the physical interface: CPU, device, TX queue, skb hash, length, qdisc length.
#[derive(Debug, Parser)]
#[command(name = TOOL, version, after_help = "Directions are the VM's view.\nStages (tx, from the VM): vm_write > vm_receive > phy_queue > phy_qdisc_dequeue > phy_start_xmit > phy_xmit.\nStages (rx, to the VM): phy_rx > phy_receive > tap_queue > tap_qdisc_dequeue > tap_xmit > vm_read.")]
struct Args {
    /// Physical interface(s), comma separated (bond members)
    #[arg(long, value_name = "IFNAME[,IFNAME]")]
    phy_interface: String,
    /// The VM's tap (vnetN), comma separated for several
    #[arg(long, value_name = "IFNAME[,IFNAME]")]
    vm_interface: String,
    /// The VM's IP address: the source of tx packets, the destination of rx packets
    #[arg(long, value_name = "IP")]
    vm_ip: Option<libnetprobe::filter::IpNet>,
    /// Direction, as the VM sees it
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

fn run(mut args: Args) -> Result<()> {
    vm_ip_filter(&mut args.filter, args.vm_ip, args.direction)?;
    let filter = args.filter.resolve()?;
    let ifaces = interfaces(
        &filter,
        Some(&args.phy_interface),
        None,
        Some(&args.vm_interface),
    )?;
    let paths = args
        .ovs
        .apply(args.direction.each().into_iter().map(Path::vm).collect())?;
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
