//! Guest notifications per vhost-net virtqueue and call eventfd, every interval: the calls
//! that completed buffers, the buffers, and the eventfd signals that reached the guest.
use clap::Parser;
use libnetprobe::cli::{
    parse_args, parse_duration, parse_interval, run_main, IntervalArgs, OutputArgs,
};
use libnetprobe::kit::set::SetInfo;
use libnetprobe::output::vhost::report_text;
use libnetprobe::sets::vhost::{VhostOptions, VhostProbe, VhostSet};
use libnetprobe::Result;
use std::time::Duration;

const TOOL: &str = "vhost_eventfd_count";

/// The probe sets this tool uses.
const USES: &[SetInfo] = &[SetInfo::of::<VhostSet>()];

/// Counts, per vhost-net virtqueue and its call eventfd: `vhost_add_used_and_signal_n` calls,
/// the buffers they marked used, the signals of the call eventfd (each one a guest
/// notification, an interrupt once KVM's irqfd takes it), the worker's runs for the queue and
/// its reads and writes of the tap queue behind it. Needs vhost_net and fentry or kprobes.
#[derive(Debug, Parser)]
#[command(name = TOOL, version)]
struct Args {
    /// Only this VM: the VMM's (QEMU's) pid
    #[arg(short = 'p', long, value_name = "PID")]
    pid: Option<u32>,
    /// Only virtqueues whose tap is this device (vnet0)
    #[arg(short = 'd', long, value_name = "IFNAME")]
    device: Option<String>,
    /// Only this tap queue
    #[arg(short = 'q', long, value_name = "N")]
    queue: Option<u16>,
    /// Seconds between reports
    #[arg(short = 'i', long, default_value = "1", value_parser = parse_interval, value_name = "SECS")]
    interval: Duration,
    /// Stop after this many seconds (default: run until Ctrl-C)
    #[arg(long, value_parser = parse_duration, value_name = "SECS")]
    duration: Option<Duration>,
    #[command(flatten)]
    output: OutputArgs,
}

fn main() {
    let args: Args = parse_args(TOOL);
    run_main(TOOL, || run(args));
}

fn run(args: Args) -> Result<()> {
    let opts = VhostOptions {
        vmm_pid: args.pid,
        device: args.device,
        queue: args.queue,
        ..VhostOptions::default()
    };
    let Some(env) = libnetprobe::run::start(args.output.list_probes, USES)? else {
        return Ok(());
    };
    let mut probe = VhostProbe::open(opts, &env)?;
    libnetprobe::run::run_intervals(
        TOOL,
        &mut probe,
        &IntervalArgs {
            interval: args.interval,
            duration: args.duration,
        },
        args.output.json,
        |r, info| report_text(TOOL, info, r),
    )
}
