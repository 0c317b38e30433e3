//! Packets the Open vSwitch kernel module drops: every drop located in openvswitch's code,
//! with reason (the module's `ovs_drop_reason` names where the kernel has them), flow, device
//! and kernel stack.
use clap::Parser;
use libnetprobe::cli::{parse_args, parse_duration, run_main, OutputArgs};
use libnetprobe::filter::{Filter, FilterArgs};
use libnetprobe::kit::set::SetInfo;
use libnetprobe::kit::StackPolicy;
use libnetprobe::sets::drop::{DropOptions, DropSet};
use libnetprobe::Result;
use std::time::Duration;

const TOOL: &str = "ovs_kernel_module_drop_monitor";

/// The probe sets this tool uses.
const USES: &[SetInfo] = &[SetInfo::of::<DropSet>()];

/// Reports each packet the OVS kernel datapath drops (`skb:kfree_skb` located in the
/// openvswitch module's code: a flow whose actions end without output, an upcall no handler
/// takes, a failed action), filtered in the kernel, with the drop reason (OVS_DROP_* from the
/// module's BTF on 6.4+), location, device, flow and kernel stack. Needs the openvswitch
/// module.
#[derive(Debug, Parser)]
#[command(name = TOOL, version)]
struct Args {
    #[command(flatten)]
    filter: FilterArgs,
    /// Print every decoded header field
    #[arg(short, long)]
    verbose: bool,
    /// Do not walk kernel stacks
    #[arg(long)]
    no_stack_trace: bool,
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
    opts.match_module = Some("openvswitch".into());
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
