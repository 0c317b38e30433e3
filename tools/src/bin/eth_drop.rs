//! Per-drop details: every dropped frame that passes the in-kernel filters, decoded from L2 to L4.
use clap::Parser;
use libnetprobe::cli::{parse_args, parse_duration, run_main, OutputArgs};
use libnetprobe::filter::{Filter, FilterArgs};
use libnetprobe::kit::set::SetInfo;
use libnetprobe::kit::StackPolicy;
use libnetprobe::sets::drop::{DropOptions, DropSet, EthType};
use libnetprobe::Result;
use std::time::Duration;

const TOOL: &str = "eth_drop";

/// The probe sets this tool uses.
const USES: &[SetInfo] = &[SetInfo::of::<DropSet>()];

/// Reports each dropped packet (filtered in the kernel) with reason, location, device,
/// Ethernet/VLAN/LLC, ARP/IPv4/IPv6 and L4 headers, and its kernel stack.
#[derive(Debug, Parser)]
#[command(name = TOOL, version)]
struct Args {
    /// Frame type
    #[arg(long = "type", value_enum, default_value_t = EthType::All)]
    eth_type: EthType,
    #[command(flatten)]
    filter: FilterArgs,
    /// Only frames with this VLAN id (0-4095)
    #[arg(long, value_parser = clap::value_parser!(u16).range(0..=4095))]
    vlan_id: Option<u16>,
    /// Only this drop reason (name from this kernel)
    #[arg(long, value_name = "NAME")]
    reason: Option<String>,
    /// Print every decoded header field
    #[arg(short, long)]
    verbose: bool,
    /// Do not walk kernel stacks
    #[arg(long)]
    no_stack_trace: bool,
    /// Also report normal frees (SKB_CONSUMED; on kernels without drop reasons, frees from
    /// the known normal-free callers)
    #[arg(long)]
    disable_normal_filter: bool,
    /// At most this many events per second; drops above it are counted in the kernel and
    /// reported as rate-limited (0: no limit)
    #[arg(long, default_value_t = libnetprobe::kit::DEFAULT_MAX_EVENTS_PER_SEC, value_name = "N")]
    max_events_per_sec: u64,
    /// Stop after this many seconds (default: run until Ctrl-C)
    #[arg(short = 'd', long, value_parser = parse_duration, value_name = "SECS")]
    duration: Option<Duration>,
    #[command(flatten)]
    output: OutputArgs,
}

fn main() {
    let args: Args = parse_args(TOOL);
    run_main(TOOL, || run(args));
}

fn run(args: Args) -> Result<()> {
    let filter = Filter::resolve(&args.filter)?;
    let mut opts = DropOptions::details(filter);
    opts.eth_type = args.eth_type;
    opts.vlan_id = args.vlan_id;
    opts.reason = args.reason.clone();
    opts.normal_filter = !args.disable_normal_filter;
    opts.kit.max_events_per_sec = args.max_events_per_sec;
    if args.no_stack_trace {
        opts.stacks = StackPolicy::off();
    }
    opts.validate()?;
    let Some(env) = libnetprobe::run::start(args.output.list_probes, USES)? else {
        return Ok(());
    };
    libnetprobe::sets::drop::run_details(
        TOOL,
        opts,
        &env,
        args.duration,
        args.output.json,
        args.verbose,
    )
}
