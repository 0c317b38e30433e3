//! Drop hot spots: in-kernel counts by stack location, reason, device and flow, every interval.
use clap::Parser;
use libnetprobe::cli::{parse_args, run_main, IntervalArgs, OutputArgs};
use libnetprobe::filter::{Filter, FilterArgs};
use libnetprobe::kit::set::SetInfo;
use libnetprobe::kit::StackPolicy;
use libnetprobe::output::drop::{summary_text, SummaryStyle};
use libnetprobe::sets::drop::{DropOptions, DropProbe, DropSet, GroupBy};
use libnetprobe::Result;

const TOOL: &str = "kernel_drop_stack_stats_summary";

/// The probe sets this tool uses.
const USES: &[SetInfo] = &[SetInfo::of::<DropSet>()];

/// Counts every packet drop in the kernel (no per-packet events) and prints the top drop
/// locations with reason, device, flow and a symbolized kernel stack every interval.
#[derive(Debug, Parser)]
#[command(name = TOOL, version, after_help = "Stacks: the first drop of every key in an interval is walked, then 1 in N (--stack-sample) up to --stack-budget walks per interval; counts are always exact.")]
struct Args {
    #[command(flatten)]
    intervals: IntervalArgs,
    /// Entries shown per interval
    #[arg(short = 't', long, default_value_t = 5)]
    top: usize,
    #[command(flatten)]
    filter: FilterArgs,
    /// Only this drop reason (name from this kernel, e.g. NO_SOCKET, NETFILTER_DROP)
    #[arg(long, value_name = "NAME")]
    reason: Option<String>,
    /// What entries are keyed by
    #[arg(long, value_enum, default_value_t = GroupBy::All)]
    group_by: GroupBy,
    /// Distinct entries kept per interval (BPF map size)
    #[arg(long, default_value_t = 10240, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_entries: u32,
    /// Walk the stack of 1 in N drops of an already-seen entry (0: first drop per entry only)
    #[arg(long, default_value_t = 1000, value_name = "N")]
    stack_sample: u32,
    /// At most this many sampled stack walks per interval
    #[arg(long, default_value_t = 1000, value_name = "N")]
    stack_budget: u32,
    /// Stack frames printed per entry
    #[arg(long, default_value_t = 5, value_name = "N")]
    frames: usize,
    #[command(flatten)]
    output: OutputArgs,
}

fn main() {
    let args: Args = parse_args(TOOL);
    run_main(TOOL, || run(args));
}

fn run(args: Args) -> Result<()> {
    if args.top == 0 {
        return Err(libnetprobe::Error::usage("--top must be at least 1"));
    }
    let filter = Filter::resolve(&args.filter)?;
    let mut opts = DropOptions::summary(filter.clone());
    opts.reason = args.reason.clone();
    opts.max_entries = args.max_entries;
    opts.stacks = StackPolicy::sampled(args.stack_sample, args.stack_budget);
    opts.group_by(args.group_by);
    opts.validate()?;
    let Some(env) = libnetprobe::run::start(args.output.list_probes, USES)? else {
        return Ok(());
    };
    let note = opts.stack_note();
    let filters = opts.describe_filters();
    let mut probe = DropProbe::open(opts, &env)?;
    let header = format!(
        "filter: {filters}  probe: {}  {note}",
        probe.chosen_plan().summary()
    );
    let style = SummaryStyle {
        top: args.top,
        flow: args.group_by != GroupBy::Stack,
        frames: if args.group_by == GroupBy::Fivetuple {
            0
        } else {
            args.frames
        },
    };
    libnetprobe::run::run_intervals(
        TOOL,
        &mut probe,
        &args.intervals,
        args.output.json,
        |s, i| summary_text(TOOL, i, &header, s, style),
    )
}
