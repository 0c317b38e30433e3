//! Is the tx ring of a tun/tap queue (toward the VM) full? Events for the xmits that find it
//! full (or every xmit with --all), or per-queue interval summaries with -i.
use clap::Parser;
use libnetprobe::cli::{parse_args, parse_duration, parse_interval, run_main, OutputArgs};
use libnetprobe::filter::{Filter, FilterArgs, IpNet, L4Protocol};
use libnetprobe::kit::set::SetInfo;
use libnetprobe::output::tun::{event_text, report_text};
use libnetprobe::sets::tun::{TunOptions, TunProbe, TunSet};
use libnetprobe::Result;
use std::time::Duration;

const TOOL: &str = "tun_ring_monitor";

/// The probe sets this tool uses.
const USES: &[SetInfo] = &[SetInfo::of::<TunSet>()];

/// Watches the tx rings of a tun/tap device (the packets waiting for the VM's reader, vhost
/// or the VMM), or a macvtap's queue rings: by default one line per xmit that finds its
/// queue's ring full (the packet is then dropped, FULL_RING); with -i, per-queue summaries
/// instead.
#[derive(Debug, Parser)]
#[command(
    name = TOOL,
    version,
    after_help = "The ring is read at each xmit through the kernel's BTF (tun_struct, tun_file, ptr_ring): \
fill = produced and not yet read; unavail = slots the producer cannot use yet (the reader zeroes \
read slots a batch at a time). The flow filters choose the events; the summary counts every \
packet of the queue."
)]
struct Args {
    /// The tun/tap or macvtap device (e.g. vnet0, macvtap0)
    #[arg(short = 'd', long, value_name = "IFNAME")]
    device: String,
    /// Only this queue (multi-queue taps)
    #[arg(short = 'q', long, value_name = "N")]
    queue: Option<u32>,
    /// The network namespace the device is in: a name from 'ip netns list' or a PID
    #[arg(long, value_name = "NAME|PID")]
    netns: Option<String>,
    /// Source IP address or CIDR
    #[arg(long, value_name = "IP[/LEN]")]
    src_ip: Option<IpNet>,
    /// Destination IP address or CIDR
    #[arg(long, value_name = "IP[/LEN]")]
    dst_ip: Option<IpNet>,
    /// Source port (TCP/UDP)
    #[arg(long, value_name = "PORT", value_parser = libnetprobe::filter::parse_port)]
    src_port: Option<u16>,
    /// Destination port (TCP/UDP)
    #[arg(long, value_name = "PORT", value_parser = libnetprobe::filter::parse_port)]
    dst_port: Option<u16>,
    /// L4 protocol
    #[arg(long, value_enum, default_value_t = L4Protocol::All, value_name = "PROTO")]
    protocol: L4Protocol,
    /// Report every xmit, not only those that find the ring full
    #[arg(long)]
    all: bool,
    /// Also print the reader batch, queue count, CPU and process of each xmit
    #[arg(short, long)]
    verbose: bool,
    /// Per-queue summaries every SECS seconds instead of events (max and mean fill, full,
    /// drops by reason, packets read)
    #[arg(short = 'i', long, value_parser = parse_interval, value_name = "SECS")]
    interval: Option<Duration>,
    /// At most this many events per second; more are counted as rate-limited (0: no limit)
    #[arg(long, default_value_t = libnetprobe::kit::DEFAULT_MAX_EVENTS_PER_SEC, value_name = "N")]
    max_events_per_sec: u64,
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
    let filter = Filter::resolve(&FilterArgs {
        src_ip: args.src_ip,
        dst_ip: args.dst_ip,
        src_port: args.src_port,
        dst_port: args.dst_port,
        l4_protocol: args.protocol,
        interface: None,
        netns: args.netns.clone(),
    })?;
    if args.interval.is_some() {
        let filtered = args.src_ip.is_some()
            || args.dst_ip.is_some()
            || args.src_port.is_some()
            || args.dst_port.is_some()
            || args.protocol != L4Protocol::All;
        if filtered || args.all {
            return Err(libnetprobe::cli::conflict(
                "-i/--interval counts every packet of a queue: the flow filters and --all choose events (leave out -i)",
            ));
        }
    }
    let netns = filter.netns.clone();
    let mut opts = match args.interval {
        Some(_) => TunOptions::summary(&args.device, netns),
        None => TunOptions::events(&args.device, netns, filter, args.all),
    };
    opts.queue = args.queue;
    opts.kit.max_events_per_sec = args.max_events_per_sec;
    let Some(env) = libnetprobe::run::start(args.output.list_probes, USES)? else {
        return Ok(());
    };
    let mut probe = TunProbe::open(opts, &env)?;
    match args.interval {
        Some(interval) => {
            let intervals = libnetprobe::cli::IntervalArgs {
                interval,
                duration: args.duration,
            };
            libnetprobe::run::run_intervals(
                TOOL,
                &mut probe,
                &intervals,
                args.output.json,
                |r, info| report_text(TOOL, info, r),
            )
        }
        None => {
            let verbose = args.verbose;
            libnetprobe::run::run_events(TOOL, &mut probe, args.duration, args.output.json, |e| {
                event_text(e, verbose)
            })
        }
    }
}
