//! ICMP echo round trips through this host's kernel, split by stage: the request and its reply
//! are one packet to the engine (same key), from the first request stage to the last reply stage.
use clap::Parser;
use libnetprobe::cli::{parse_args, parse_duration, run_main, OutputArgs};
use libnetprobe::filter::{IpNet, L4Protocol};
use libnetprobe::output::latency::EventStyle;
use libnetprobe::sets::latency::args::{interfaces, run_details, EngineArgs, LatencyFilterArgs};
use libnetprobe::sets::latency::{Direction, LatencyOptions, Path};
use libnetprobe::{Error, Result};
use std::time::Duration;

const TOOL: &str = "kernel_icmp_rtt";

/// Times ICMP echo round trips in this host's kernel stage by stage: as the pinger
/// (--direction tx: request out, reply in) or as the responder (--direction rx: request in,
/// reply out). Run it on both hosts to split a ping's RTT between them and the wire.
#[derive(Debug, Parser)]
#[command(name = TOOL, version, after_help = "Stages (tx): req_phy_queue > req_phy_qdisc_dequeue > req_phy_start_xmit > req_phy_xmit > rep_phy_rx > rep_phy_receive > rep_sock_read.\nStages (rx): req_phy_rx > req_phy_receive > rep_phy_queue > rep_phy_qdisc_dequeue > rep_phy_start_xmit > rep_phy_xmit.")]
struct Args {
    /// Interface(s) the echoes use, comma separated
    #[arg(long, visible_alias = "interface", value_name = "IFNAME[,IFNAME]")]
    phy_interface: String,
    /// tx: this host sends the requests; rx: this host answers them
    #[arg(long, value_enum, default_value_t = Direction::Tx)]
    direction: Direction,
    /// The request's source address (the pinger)
    #[arg(long, value_name = "IP[/LEN]")]
    src_ip: Option<IpNet>,
    /// The request's destination address (the responder)
    #[arg(long, value_name = "IP[/LEN]")]
    dst_ip: Option<IpNet>,
    /// Report round trips of at least this many milliseconds
    #[arg(long, value_name = "MS", conflicts_with = "latency_us")]
    latency_ms: Option<f64>,
    /// Report round trips of at least this many microseconds (default: every one)
    #[arg(long, value_name = "US")]
    latency_us: Option<u64>,
    /// Network namespace the interface lives in: a name from 'ip netns list' or a PID
    #[arg(long, value_name = "NAME|PID")]
    netns: Option<String>,
    /// Stop after this many seconds (default: run until Ctrl-C)
    #[arg(short = 'd', long, value_parser = parse_duration, value_name = "SECS")]
    duration: Option<Duration>,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    output: OutputArgs,
}

fn main() {
    let args: Args = parse_args(TOOL);
    run_main(TOOL, || run(args));
}

fn run(args: Args) -> Result<()> {
    if args.direction == Direction::Both {
        return Err(Error::usage(
            "--direction both: a host is either the pinger (tx) or the responder (rx) of an echo; run one tool for each",
        ));
    }
    let threshold = match (args.latency_ms, args.latency_us) {
        (Some(ms), _) if !(ms.is_finite() && ms >= 0.0) => {
            return Err(Error::usage("--latency-ms must be a number of at least 0"))
        }
        (Some(ms), _) => Duration::from_secs_f64(ms / 1000.0),
        (None, Some(us)) => Duration::from_micros(us),
        (None, None) => Duration::ZERO,
    };
    let filter = LatencyFilterArgs {
        src_ip: args.src_ip,
        dst_ip: args.dst_ip,
        src_port: None,
        dst_port: None,
        protocol: L4Protocol::Icmp,
        netns: args.netns.clone(),
    }
    .resolve()?;
    let ifaces = interfaces(&filter, Some(&args.phy_interface), None, None)?;
    let mut opts = LatencyOptions::details(
        vec![Path::icmp_rtt(args.direction)],
        filter,
        ifaces,
        threshold,
    );
    opts.icmp_rtt = true;
    args.engine.apply(&mut opts);
    run_details(
        TOOL,
        opts,
        args.duration,
        args.output.json,
        args.output.list_probes,
        EventStyle::Latency,
    )
}
