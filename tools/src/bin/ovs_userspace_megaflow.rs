//! Every new megaflow the OVS kernel datapath gets from user space (`OVS_FLOW_CMD_NEW`), with
//! its match and actions decoded from the request and the upcall it answers.
use clap::Parser;
use libnetprobe::cli::{
    parse_args, parse_duration, parse_eth_type, parse_mac, run_main, OutputArgs,
};
use libnetprobe::filter::L4Protocol;
use libnetprobe::kit::set::SetInfo;
use libnetprobe::kit::KitConfig;
use libnetprobe::output::ovs::megaflow_text;
use libnetprobe::sets::ovs::megaflow::{MegaflowFilter, MegaflowWatch};
use libnetprobe::sets::ovs::{OvsOptions, OvsProbe, OvsSet};
use libnetprobe::Result;
use std::net::Ipv4Addr;
use std::time::Duration;

const TOOL: &str = "ovs_userspace_megaflow";

/// The probe sets this tool uses.
const USES: &[SetInfo] = &[SetInfo::of::<OvsSet>()];

/// Shows each megaflow ovs-vswitchd installs in the kernel datapath (fentry or a kprobe on
/// `ovs_flow_cmd_new`): its match (key under mask) and actions decoded from the netlink
/// request and written like `ovs-dpctl dump-flows`, the installing thread, and the upcall it
/// answers: the oldest waiting miss (`ovs_dp_upcall`) whose packet the flow matches, with the
/// miss → install time. Filters apply to the new flow's key (the packet that missed), in user
/// space: installs are rare. Needs the openvswitch module.
#[derive(Debug, Parser)]
#[command(name = TOOL, version)]
struct Args {
    /// Only flows whose key has this Ethernet source
    #[arg(long, value_parser = parse_mac, value_name = "MAC")]
    eth_src: Option<[u8; 6]>,
    /// Only flows whose key has this Ethernet destination
    #[arg(long, value_parser = parse_mac, value_name = "MAC")]
    eth_dst: Option<[u8; 6]>,
    /// Only flows of this EtherType (0x0800, 2054)
    #[arg(long, value_parser = parse_eth_type, value_name = "TYPE")]
    eth_type: Option<u16>,
    /// Only flows whose key has this IPv4 source
    #[arg(long, visible_alias = "ip-src", value_name = "IP")]
    src_ip: Option<Ipv4Addr>,
    /// Only flows whose key has this IPv4 destination
    #[arg(long, visible_alias = "ip-dst", value_name = "IP")]
    dst_ip: Option<Ipv4Addr>,
    /// Only flows of this IP protocol number
    #[arg(long, value_name = "N", conflicts_with = "protocol")]
    ip_proto: Option<u8>,
    /// Only flows of this IP protocol
    #[arg(long, value_enum, default_value_t = L4Protocol::All)]
    protocol: L4Protocol,
    /// Only flows whose key has this TCP/UDP/SCTP source port
    #[arg(long, value_name = "PORT")]
    l4_src_port: Option<u16>,
    /// Only flows whose key has this TCP/UDP/SCTP destination port
    #[arg(long, value_name = "PORT")]
    l4_dst_port: Option<u16>,
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
    let filter = MegaflowFilter {
        eth_src: args.eth_src,
        eth_dst: args.eth_dst,
        eth_type: args.eth_type,
        src_ip: args.src_ip,
        dst_ip: args.dst_ip,
        ip_proto: args
            .ip_proto
            .or((args.protocol != L4Protocol::All).then(|| args.protocol.number())),
        l4_src_port: args.l4_src_port,
        l4_dst_port: args.l4_dst_port,
    };
    let Some(env) = libnetprobe::run::start(args.output.list_probes, USES)? else {
        return Ok(());
    };
    let opts = OvsOptions { flow_msgs: true };
    let probe = OvsProbe::open_with(KitConfig::default(), &env, opts)?;
    let mut watch = MegaflowWatch::new(probe, filter);
    libnetprobe::run::run_events(
        TOOL,
        &mut watch,
        args.duration,
        args.output.json,
        megaflow_text,
    )
}
