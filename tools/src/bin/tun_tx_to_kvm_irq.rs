//! The chain from a tap queue to the VM's interrupt, every interval: packets into the tap's
//! ring → buffers vhost used → guest notifications (call eventfd signals) → KVM irqfd wakeups,
//! with the irqfd's GSI and MSI vector → the vector accepted by the VM's LAPIC.
use clap::Parser;
use libnetprobe::cli::{parse_args, run_main, OutputArgs, TapQueueArgs};
use libnetprobe::kit::set::SetInfo;
use libnetprobe::output::vhost::chain_text;
use libnetprobe::sets::irq_chain::IrqChainProbe;
use libnetprobe::sets::kvm::KvmSet;
use libnetprobe::sets::tun::TunSet;
use libnetprobe::sets::vhost::VhostSet;
use libnetprobe::Result;

const TOOL: &str = "tun_tx_to_kvm_irq";

/// The probe sets this tool uses.
const USES: &[SetInfo] = &[
    SetInfo::of::<TunSet>(),
    SetInfo::of::<VhostSet>(),
    SetInfo::of::<KvmSet>(),
];

/// Per queue of a tap, each link from the host to the guest's interrupt: XMIT into the ring
/// (tun set), USED buffers and the CALLS that completed them, SIGNALS of the call eventfd
/// (vhost set), IRQFD wakeups of KVM's irqfd on that eventfd with its GSI, vector and VM, and
/// ACCEPTED: the VM's LAPIC accepting that vector (kvm set). Where a count drops from one link
/// to the next, the chain broke there. Needs vhost_net and KVM.
#[derive(Debug, Parser)]
#[command(name = TOOL, version)]
struct Args {
    #[command(flatten)]
    tap: TapQueueArgs,
    #[command(flatten)]
    output: OutputArgs,
}

fn main() {
    let args: Args = parse_args(TOOL);
    run_main(TOOL, || run(args));
}

fn run(args: Args) -> Result<()> {
    let opts = args.tap.options()?;
    let Some(env) = libnetprobe::run::start(args.output.list_probes, USES)? else {
        return Ok(());
    };
    let mut probe = IrqChainProbe::open(opts, &env)?;
    libnetprobe::run::run_intervals(
        TOOL,
        &mut probe,
        &args.tap.intervals(),
        args.output.json,
        |r, info| chain_text(TOOL, info, r),
    )
}
