//! VM packet latency between the VM's tap and the physical interface, per stage, aggregated in
//! the kernel: log2 histograms of the whole path (and of adjacent stages with --stage-latency).
use clap::Parser;
use libnetprobe::cli::{parse_args, run_main, IntervalArgs, OutputArgs};
use libnetprobe::output::latency::{SortBy, SummaryStyle};
use libnetprobe::sets::latency::args::{
    interfaces, run_summary, vm_ip_filter, EngineArgs, LatencyFilterArgs, OvsArgs,
};
use libnetprobe::sets::latency::{Direction, LatencyOptions, Path};
use libnetprobe::Result;

const TOOL: &str = "vm_network_latency_summary";

/// Measures how long a VM's packets take between its tap (--vm-interface) and the physical
/// interface, stage by stage (tracepoints; no kprobes), and prints histograms with percentiles.
#[derive(Debug, Parser)]
#[command(name = TOOL, version, after_help = "Directions are the VM's view.\nStages (tx, from the VM): vm_write > vm_receive > phy_queue > phy_qdisc_dequeue > phy_start_xmit > phy_xmit.\nStages (rx, to the VM): phy_rx > phy_receive > tap_queue > tap_qdisc_dequeue > tap_xmit > vm_read (the tap's reader, vhost or the VMM, pulled it from the ring).\nWithout --stage-latency only the stages that open and close packets are attached, and net_dev_start_xmit where the path ends at net_dev_xmit (it names the packet there): lowest cost.")]
struct Args {
    #[command(flatten)]
    intervals: IntervalArgs,
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
    /// Also histograms between adjacent stages (attaches every stage)
    #[arg(long)]
    stage_latency: bool,
    /// Flows shown per interval
    #[arg(short = 't', long, default_value_t = 5)]
    top: usize,
    /// Order of the flow table
    #[arg(long, value_enum, default_value_t = SortBy::Count)]
    sort_by: SortBy,
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
    let mut opts = LatencyOptions::summary(paths, filter, ifaces);
    opts.stage_latency = args.stage_latency;
    args.engine.apply(&mut opts);
    let style = SummaryStyle {
        top: args.top,
        sort_by: args.sort_by,
    };
    run_summary(
        TOOL,
        opts,
        &args.intervals,
        args.output.json,
        args.output.list_probes,
        style,
    )
}
