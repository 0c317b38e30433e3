//! Guest notifications per vhost-net virtqueue and call eventfd, every interval: the calls
//! that completed buffers, the buffers, and the eventfd signals that reached the guest.
use clap::Parser;
use libnetprobe::cli::{parse_args, run_main, OutputArgs, VhostArgs};
use libnetprobe::kit::set::SetInfo;
use libnetprobe::output::vhost::report_text;
use libnetprobe::sets::vhost::{VhostProbe, VhostSet};
use libnetprobe::Result;

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
    #[command(flatten)]
    vhost: VhostArgs,
    #[command(flatten)]
    output: OutputArgs,
}

fn main() {
    let args: Args = parse_args(TOOL);
    run_main(TOOL, || run(args));
}

fn run(args: Args) -> Result<()> {
    let Some(env) = libnetprobe::run::start(args.output.list_probes, USES)? else {
        return Ok(());
    };
    let mut probe = VhostProbe::open(args.vhost.options(), &env)?;
    libnetprobe::run::run_intervals(
        TOOL,
        &mut probe,
        &args.vhost.intervals(),
        args.output.json,
        |r, info| report_text(TOOL, info, r),
    )
}
