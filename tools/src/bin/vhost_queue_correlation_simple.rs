//! One line per notification decision of one tap queue's vhost-net virtqueues: each
//! used+signal call and each call-eventfd signal it led to.
use clap::Parser;
use libnetprobe::cli::{parse_args, run_main, OutputArgs, VhostEventArgs};
use libnetprobe::kit::set::SetInfo;
use libnetprobe::output::vhost::event_line;
use libnetprobe::sets::vhost::events::{EventKind, VhostEvents};
use libnetprobe::sets::vhost::{VhostProbe, VhostSet};
use libnetprobe::Result;

const TOOL: &str = "vhost_queue_correlation_simple";

/// The probe sets this tool uses.
const USES: &[SetInfo] = &[SetInfo::of::<VhostSet>()];

/// One line per `vhost_add_used_and_signal_n` of the virtqueues behind one tap (and queue),
/// filtered in the kernel, with the buffers used, pending avail entries, the used index
/// against the last signalled one and the guest's NO_INTERRUPT flag, and one line per signal
/// of the call eventfd: a used+signal line with no eventfd line after it was suppressed.
/// Needs vhost_net and fentry or kprobes.
#[derive(Debug, Parser)]
#[command(name = TOOL, version)]
struct Args {
    #[command(flatten)]
    events: VhostEventArgs,
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
    let probe = VhostProbe::open(
        args.events
            .options(&[EventKind::Signal, EventKind::Eventfd]),
        &env,
    )?;
    let mut events = VhostEvents::new(probe)?;
    libnetprobe::run::run_events(
        TOOL,
        &mut events,
        args.events.duration,
        args.output.json,
        event_line,
    )
}
