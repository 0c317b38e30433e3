//! Interrupts KVM injects into VMs, per VM, GSI, vector and path (irqfd fast path, irqfd
//! kworker, ioctl), every interval, from KVM's tracepoints.
use clap::Parser;
use libnetprobe::cli::{parse_args, run_main, IntervalArgs, OutputArgs};
use libnetprobe::kit::set::SetInfo;
use libnetprobe::output::kvm::report_text;
use libnetprobe::sets::kvm::{Category, KvmOptions, KvmProbe, KvmSet};
use libnetprobe::Result;

const TOOL: &str = "kvm_irqfd_stats_summary";

/// The probe sets this tool uses.
const USES: &[SetInfo] = &[SetInfo::of::<KvmSet>()];

/// Counts the interrupts KVM injects, per VM (the VMM's pid), injecting thread, GSI, vector
/// and path: `irqfd` (an MSI irqfd's fast path in the eventfd writer: vhost, the VMM),
/// `irqfd_inject` (an INTx/IOAPIC irqfd in KVM's kworker), `ioctl` (KVM_IRQ_LINE,
/// KVM_SIGNAL_MSI). A level-triggered irqfd signal (assert and deassert) counts once.
#[derive(Debug, Parser)]
#[command(name = TOOL, version)]
struct Args {
    /// Only this VM: the VMM's (QEMU's) pid
    #[arg(value_name = "QEMU_PID", conflicts_with = "pid")]
    qemu_pid: Option<u32>,
    /// Only this VM: the VMM's (QEMU's) pid
    #[arg(short = 'p', long, value_name = "PID")]
    pid: Option<u32>,
    /// Only data-path interrupts (from vhost workers) or control ones (the VMM's threads)
    #[arg(long, value_enum)]
    category: Option<Category>,
    /// Only interrupts injected by this thread (a vhost worker's pid)
    #[arg(long, value_name = "PID")]
    vhost_pid: Option<u32>,
    #[command(flatten)]
    intervals: IntervalArgs,
    #[command(flatten)]
    output: OutputArgs,
}

fn main() {
    let args: Args = parse_args(TOOL);
    run_main(TOOL, || run(args));
}

fn run(args: Args) -> Result<()> {
    let opts = KvmOptions {
        vm_pid: args.pid.or(args.qemu_pid),
        vhost_pid: args.vhost_pid,
        category: args.category,
        ..KvmOptions::default()
    };
    opts.validate()?;
    let Some(env) = libnetprobe::run::start(args.output.list_probes, USES)? else {
        return Ok(());
    };
    let mut probe = KvmProbe::open(opts, &env)?;
    libnetprobe::run::run_intervals(
        TOOL,
        &mut probe,
        &args.intervals,
        args.output.json,
        |r, info| report_text(TOOL, info, r),
    )
}
