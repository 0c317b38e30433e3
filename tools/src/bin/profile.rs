//! On-CPU profile: stacks sampled on every CPU by the cpu-clock perf event, counted in the
//! kernel per process, thread, user and kernel stack; folded lines and SVG flame graphs.
use clap::Parser;
use libnetprobe::cli::{parse_args, run_main, OutputArgs};
use libnetprobe::kit::set::SetInfo;
use libnetprobe::output::cpu::{profile_text, write_flame_graph};
use libnetprobe::sets::cpu::args::{RunLength, StackArgs};
use libnetprobe::sets::cpu::{CpuSet, ProfileOptions, ProfileProbe, TaskFilter};
use libnetprobe::Result;
use std::cell::RefCell;
use std::path::PathBuf;

const TOOL: &str = "profile";

/// The probe sets this tool uses.
const USES: &[SetInfo] = &[SetInfo::of::<CpuSet>()];

/// Samples the stacks of running threads on every CPU at a fixed frequency (the cpu-clock
/// perf event: works without a hardware PMU) and counts them in the kernel. User stacks need
/// frame pointers (Rust: -C force-frame-pointers=yes; C: -fno-omit-frame-pointer).
#[derive(Debug, Parser)]
#[command(name = TOOL, version)]
struct Args {
    /// Only this process
    #[arg(short = 'p', long, value_name = "PID")]
    pid: Option<u32>,
    /// Only this thread
    #[arg(short = 'L', long, value_name = "TID")]
    tid: Option<u32>,
    /// Only tasks in this cgroup v2 directory
    #[arg(long, value_name = "DIR")]
    cgroup: Option<PathBuf>,
    /// Samples per second on each CPU
    #[arg(short = 'F', long, default_value_t = libnetprobe::sets::cpu::profile::DEFAULT_FREQUENCY, value_name = "HZ")]
    frequency: u64,
    /// Count samples of idle CPUs too
    #[arg(short = 'I', long)]
    include_idle: bool,
    /// Also write the whole run as an SVG flame graph
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    #[command(flatten)]
    stacks: StackArgs,
    #[command(flatten)]
    run: RunLength,
    #[command(flatten)]
    output: OutputArgs,
}

fn main() {
    let args: Args = parse_args(TOOL);
    run_main(TOOL, || run(args));
}

fn run(args: Args) -> Result<()> {
    let intervals = args.run.intervals(None)?;
    let opts = ProfileOptions {
        filter: TaskFilter {
            pid: args.pid,
            tid: args.tid,
            cgroup: args.cgroup.clone(),
            ..TaskFilter::default()
        },
        stacks: args.stacks.choice(),
        frequency: args.frequency,
        include_idle: args.include_idle,
        stack_storage: args.stacks.stack_storage_size,
        ..ProfileOptions::default()
    };
    let Some(env) = libnetprobe::run::start(args.output.list_probes, USES)? else {
        return Ok(());
    };
    let mut probe = ProfileProbe::open(&opts, &env)?;
    let folded = RefCell::new(Vec::new());
    let style = args.stacks.style();
    libnetprobe::run::run_intervals_with(
        TOOL,
        &mut probe,
        &intervals,
        args.output.json,
        |r, info| profile_text(TOOL, info, r, style),
        |r| {
            let mut f = folded.borrow_mut();
            f.extend(r.stacks.iter().map(|e| e.stack.folded(false, e.count)));
        },
    )?;
    if let Some(path) = &args.svg {
        write_flame_graph(path, "On-CPU profile", "samples", &folded.borrow())?;
        eprintln!("{TOOL}: flame graph written to {}", path.display());
    }
    Ok(())
}
