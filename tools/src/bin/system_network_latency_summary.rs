//! Host-stack packet latency, per stage, aggregated in the kernel: log2 histograms of the whole
//! path (and of adjacent stages with --stage-latency), per-flow totals, every interval.
use clap::Parser;
use libnetprobe::cli::{parse_args, run_main, IntervalArgs, OutputArgs};
use libnetprobe::output::latency::{SortBy, SummaryStyle};
use libnetprobe::sets::latency::args::{
    interfaces, run_summary, EngineArgs, LatencyFilterArgs, OvsArgs,
};
use libnetprobe::sets::latency::{Direction, LatencyOptions, Path};
use libnetprobe::Result;

const TOOL: &str = "system_network_latency_summary";

/// Measures how long packets take between the host stack and the physical interface, stage by
/// stage (tracepoints; no per-packet events), and prints histograms with percentiles.
#[derive(Debug, Parser)]
#[command(name = TOOL, version, after_help = "Stages (tx): [internal_queue > internal_xmit >] phy_queue > phy_qdisc_dequeue > phy_start_xmit > phy_xmit.\nStages (rx): phy_rx > phy_receive [> internal_receive] > sock_read | consumed.\nWithout --stage-latency only the stages that open and close packets are attached, and net_dev_start_xmit where the path ends at net_dev_xmit (it names the packet there): lowest cost.")]
struct Args {
    #[command(flatten)]
    intervals: IntervalArgs,
    /// Physical interface(s), comma separated (bond members)
    #[arg(long, value_name = "IFNAME[,IFNAME]")]
    phy_interface: String,
    /// Host-stack side device: an OVS internal port or a bridge
    #[arg(long, value_name = "IFNAME")]
    internal_interface: Option<String>,
    /// Direction of the host stack's packets
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
