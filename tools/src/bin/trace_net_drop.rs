//! dropwatch-style drop counts per kernel location (or per stack with --bt) every interval.
use clap::Parser;
use libnetprobe::cli::{
    parse_args, parse_duration, parse_interval, run_main, IntervalArgs, OutputArgs,
};
use libnetprobe::filter::{Filter, FilterArgs};
use libnetprobe::kit::set::SetInfo;
use libnetprobe::kit::StackPolicy;
use libnetprobe::output::drop::locations_text;
use libnetprobe::sets::drop::{DropOptions, DropProbe, DropSet, KeyBy};
use libnetprobe::{Error, Result};
use std::time::Duration;

const TOOL: &str = "trace_net_drop";

/// The probe sets this tool uses.
const USES: &[SetInfo] = &[SetInfo::of::<DropSet>()];

/// Counts packet drops per kernel location, like dropwatch, filtered in the kernel by
/// protocol, address, port, interface, namespace and location function.
#[derive(Debug, Parser)]
#[command(name = TOOL, version)]
struct Args {
    /// Seconds between reports
    #[arg(short = 'i', long, default_value = "1", value_parser = parse_interval, value_name = "SECS")]
    interval: Duration,
    /// Stop after this many seconds (default: run until Ctrl-C)
    #[arg(short = 'd', long, value_parser = parse_duration, value_name = "SECS")]
    duration: Option<Duration>,
    #[command(flatten)]
    filter: FilterArgs,
    /// Count only drops located in this kernel function (e.g. nf_hook_slow)
    #[arg(long, value_name = "FUNC")]
    r#match: Option<String>,
    /// Count every drop except those located in this kernel function
    #[arg(long = "filter", value_name = "FUNC")]
    filter_func: Option<String>,
    /// Aggregate by full kernel stack instead of location (walks a stack per drop: costly)
    #[arg(long)]
    bt: bool,
    #[command(flatten)]
    output: OutputArgs,
}

fn main() {
    let args: Args = parse_args(TOOL);
    run_main(TOOL, || run(args));
}

fn run(args: Args) -> Result<()> {
    if args.r#match.is_some() && args.filter_func.is_some() {
        return Err(Error::usage("--match and --filter cannot be used together"));
    }
    let filter = Filter::resolve(&args.filter)?;
    let mut opts = DropOptions::summary(filter);
    opts.match_func = args.r#match.clone();
    opts.skip_func = args.filter_func.clone();
    opts.key = KeyBy {
        location: true,
        flow: false,
    };
    opts.stacks = if args.bt {
        StackPolicy::every_event()
    } else {
        StackPolicy::off()
    };
    opts.validate()?;
    let Some(env) = libnetprobe::run::start(args.output.list_probes, USES)? else {
        return Ok(());
    };
    let filters = opts.describe_filters();
    let mut probe = DropProbe::open(opts, &env)?;
    let intervals = IntervalArgs {
        interval: args.interval,
        duration: args.duration,
    };
    let by_stack = args.bt;
    libnetprobe::run::run_intervals(TOOL, &mut probe, &intervals, args.output.json, |s, i| {
        locations_text(TOOL, i, &format!("filter: {filters}"), s, by_stack)
    })
}
