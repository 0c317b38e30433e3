//! Flags every latency tool shares (seed names), and the runners the tools call.
use super::{Interfaces, LatencyOptions, LatencyProbe, LatencySet, Mode};
use crate::cli::IntervalArgs;
use crate::error::{Error, Result};
use crate::filter::{parse_port, Filter, FilterArgs, IpNet, L4Protocol};
use crate::kernel::netns::Netns;
use crate::kit::set::SetInfo;
use crate::output::latency::{event_text, summary_text, EventStyle, SummaryStyle};
use clap::Args;
use std::time::Duration;

/// Packet filters of the latency tools, applied where a path starts.
#[derive(Debug, Clone, Args)]
pub struct LatencyFilterArgs {
    /// Source IP address or CIDR
    #[arg(long, value_name = "IP[/LEN]")]
    pub src_ip: Option<IpNet>,
    /// Destination IP address or CIDR
    #[arg(long, value_name = "IP[/LEN]")]
    pub dst_ip: Option<IpNet>,
    /// Source port (TCP/UDP)
    #[arg(long, value_name = "PORT", value_parser = parse_port)]
    pub src_port: Option<u16>,
    /// Destination port (TCP/UDP)
    #[arg(long, value_name = "PORT", value_parser = parse_port)]
    pub dst_port: Option<u16>,
    /// L4 protocol
    #[arg(long, visible_alias = "proto", value_enum, default_value_t = L4Protocol::All)]
    pub protocol: L4Protocol,
    /// Network namespace the interfaces live in: a name from 'ip netns list' or a PID
    /// (default: the tool's own)
    #[arg(long, value_name = "NAME|PID")]
    pub netns: Option<String>,
}

impl LatencyFilterArgs {
    /// The validated filter; its namespace is always set (the interfaces' namespace).
    pub fn resolve(&self) -> Result<Filter> {
        let mut f = Filter::resolve(&FilterArgs {
            src_ip: self.src_ip,
            dst_ip: self.dst_ip,
            src_port: self.src_port,
            dst_port: self.dst_port,
            l4_protocol: self.protocol,
            interface: None,
            netns: self.netns.clone(),
        })?;
        if f.netns.is_none() {
            f.netns = Some(Netns::current()?);
        }
        Ok(f)
    }
}

/// How the engine tracks packets.
#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    /// Track 1 packet in N (default: every packet)
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub sample: u32,
    /// Packets in flight the engine can track at once (LRU map size)
    #[arg(long, default_value_t = 10240, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4_000_000))]
    pub max_packets: u32,
    /// Give a packet up as evicted when no stage saw it for this long
    #[arg(long, default_value = "2", value_parser = crate::cli::parse_seconds, value_name = "SECS")]
    pub packet_timeout: Duration,
}

impl EngineArgs {
    /// Writes these into options.
    pub fn apply(&self, o: &mut LatencyOptions) {
        o.sample = self.sample;
        o.max_packets = self.max_packets;
        o.packet_timeout = self.packet_timeout;
    }
}

/// `--ovs`: the paths through Open vSwitch's kernel datapath.
#[derive(Debug, Clone, Args)]
pub struct OvsArgs {
    /// Also time Open vSwitch's kernel datapath between the devices: vport receive, flow
    /// lookup, upcall, execute from userspace, vport send (openvswitch module; fentry or kprobes)
    #[arg(long)]
    pub ovs: bool,
}

impl OvsArgs {
    /// The paths, through OVS when asked. The host stack's packets enter OVS from an internal
    /// port: a system tx path through OVS needs `--internal-interface`.
    pub fn apply(&self, paths: Vec<super::Path>) -> Result<Vec<super::Path>> {
        if !self.ovs {
            return Ok(paths);
        }
        if paths
            .iter()
            .any(|p| p.name == "system_tx" && !p.stages.iter().any(|s| s.name == "internal_xmit"))
        {
            return Err(Error::usage(
                "--ovs on the transmit path needs --internal-interface (the OVS internal port the host stack sends through)",
            ));
        }
        Ok(paths.into_iter().map(super::Path::through_ovs).collect())
    }
}

/// `--vm-ip`: the source of the VM's tx packets, the destination of its rx packets; with
/// both directions at once it cannot be one address filter, so it needs `--direction`.
pub fn vm_ip_filter(
    f: &mut LatencyFilterArgs,
    vm_ip: Option<IpNet>,
    dir: super::Direction,
) -> Result<()> {
    let Some(ip) = vm_ip else { return Ok(()) };
    let slot = match dir {
        super::Direction::Tx => &mut f.src_ip,
        super::Direction::Rx => &mut f.dst_ip,
        super::Direction::Both => {
            return Err(Error::usage(
                "--vm-ip needs --direction tx or rx (it is the source of one, the destination of the other)",
            ))
        }
    };
    if slot.is_some() {
        return Err(Error::usage(
            "--vm-ip conflicts with --src-ip/--dst-ip for this direction: give one of them",
        ));
    }
    *slot = Some(ip);
    Ok(())
}

/// The flags of every details tool: threshold, run time, event rate.
#[derive(Debug, Clone, Args)]
pub struct DetailsArgs {
    /// Report packets whose whole path took at least this many microseconds
    #[arg(long, default_value_t = 0, value_name = "US")]
    pub latency_us: u64,
    /// Stop after this many seconds (default: run until Ctrl-C)
    #[arg(short = 'd', long, value_parser = crate::cli::parse_duration, value_name = "SECS")]
    pub duration: Option<Duration>,
    /// At most this many events per second (0: no limit); more are counted as rate-limited
    #[arg(long, default_value_t = crate::kit::DEFAULT_MAX_EVENTS_PER_SEC, value_name = "N")]
    pub max_events_per_sec: u64,
}

impl DetailsArgs {
    /// The `--latency-us` threshold.
    pub fn threshold(&self) -> Duration {
        Duration::from_micros(self.latency_us)
    }

    /// Writes the event rate into options.
    pub fn apply(&self, o: &mut LatencyOptions) {
        o.kit.max_events_per_sec = self.max_events_per_sec;
    }
}

/// Splits `eth0,eth1` and resolves each name in `ns`.
pub fn resolve_devices(flag: &str, list: Option<&str>, ns: &Netns) -> Result<Vec<(u32, String)>> {
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if name.len() > 15 {
            return Err(Error::usage(format!(
                "{flag} {}: not a valid interface name",
                crate::cli::quote(name)
            )));
        }
        let idx = ns.ifindex(name).map_err(|e| match e {
            Error::Usage(m) => Error::usage(format!("{flag}: {m}")),
            other => other,
        })?;
        out.push((idx, name.to_string()));
    }
    if out.is_empty() {
        return Err(Error::usage(format!("{flag}: no interface name given")));
    }
    Ok(out)
}

/// Resolves the role devices in the filter's namespace.
pub fn interfaces(
    filter: &Filter,
    phy: Option<&str>,
    internal: Option<&str>,
    vm: Option<&str>,
) -> Result<Interfaces> {
    let ns = match &filter.netns {
        Some(ns) => ns.clone(),
        None => Netns::current()?,
    };
    Ok(Interfaces {
        phy: resolve_devices("--phy-interface", phy, &ns)?,
        internal: resolve_devices("--internal-interface", internal, &ns)?,
        vm: resolve_devices("--vm-interface", vm, &ns)?,
    })
}

const USES: &[SetInfo] = &[SetInfo::of::<LatencySet>()];

/// Preflight and `--list-probes` for a latency tool: `None` when the stages were printed.
fn start(opts: &LatencyOptions, list_probes: bool) -> Result<Option<crate::kernel::KernelEnv>> {
    opts.validate()?;
    let Some(env) = crate::run::start(false, USES)? else {
        return Ok(None);
    };
    if list_probes {
        crate::output::text(&opts.render_plan(&env))?;
        return Ok(None);
    }
    Ok(Some(env))
}

fn header(opts: &LatencyOptions, probe: &LatencyProbe) -> String {
    let paths: Vec<String> = probe
        .paths()
        .iter()
        .map(|p| {
            let names: Vec<&str> = p.stages.iter().map(|s| s.name).collect();
            format!("{}: {}", p.name, names.join(" > "))
        })
        .collect();
    let mut h = format!(
        "filter: {}  paths: {}",
        opts.filter.describe(),
        paths.join("; ")
    );
    if opts.sample > 1 {
        h.push_str(&format!("  sampling 1 in {}", opts.sample));
    }
    h
}

/// Runs a summary tool: histograms every interval until stopped.
pub fn run_summary(
    tool: &str,
    mut opts: LatencyOptions,
    intervals: &IntervalArgs,
    json: bool,
    list_probes: bool,
    style: SummaryStyle,
) -> Result<()> {
    opts.mode = Mode::Summary;
    let Some(env) = start(&opts, list_probes)? else {
        return Ok(());
    };
    let mut probe = LatencyProbe::open(opts.clone(), &env)?;
    let note = header(&opts, &probe);
    crate::run::run_intervals(tool, &mut probe, intervals, json, |s, i| {
        summary_text(tool, i, &note, s, style)
    })
}

/// Runs a details tool: one event per packet at or above the threshold until stopped.
pub fn run_details(
    tool: &str,
    mut opts: LatencyOptions,
    duration: Option<Duration>,
    json: bool,
    list_probes: bool,
    style: EventStyle,
) -> Result<()> {
    opts.mode = Mode::Details;
    let Some(env) = start(&opts, list_probes)? else {
        return Ok(());
    };
    let mut probe = LatencyProbe::open(opts.clone(), &env)?;
    if !json {
        crate::output::text(&format!(
            "{}  threshold {} us\n",
            header(&opts, &probe),
            opts.threshold.as_secs_f64() * 1e6
        ))?;
    }
    crate::run::run_events(tool, &mut probe, duration, json, |e| event_text(e, style))
}
