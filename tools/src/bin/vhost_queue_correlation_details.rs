//! Every event of one tap queue's vhost-net virtqueues, with the full vring state: used+signal
//! calls, call-eventfd signals, worker runs, tap reads and writes.
use clap::Parser;
use libnetprobe::cli::{parse_args, run_main, OutputArgs, VhostEventArgs};
use libnetprobe::kit::set::SetInfo;
use libnetprobe::output::vhost::event_text;
use libnetprobe::sets::vhost::events::{EventKind, VhostEvents};
use libnetprobe::sets::vhost::{VhostProbe, VhostSet};
use libnetprobe::Result;

const TOOL: &str = "vhost_queue_correlation_details";

/// The probe sets this tool uses.
const USES: &[SetInfo] = &[SetInfo::of::<VhostSet>()];

/// Reports each event of the virtqueues behind one tap (and queue), filtered in the kernel:
/// `vhost_add_used_and_signal_n` (buffers used, with the queue's indices, EVENT_IDX state and
/// the guest's avail flags and used_event read from the VMM's memory), each signal of the call
/// eventfd (a guest notification), each `handle_rx`/`handle_tx` run with the state it found,
/// and each `tun_recvmsg`/`tun_sendmsg` of the tap queue. Needs vhost_net and fentry or kprobes.
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
    let probe = VhostProbe::open(args.events.options(&EventKind::ALL), &env)?;
    let mut events = VhostEvents::new(probe)?;
    libnetprobe::run::run_events(
        TOOL,
        &mut events,
        args.events.duration,
        args.output.json,
        event_text,
    )
}
