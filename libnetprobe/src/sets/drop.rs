//! Drop probe set: `kfree_skb` drops (never normal frees), counted in the kernel by
//! (reason, location, device, flow) for summaries, or reported one by one for details.
use crate::clock::WallClock;
use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::kernel::netns::IfNames;
use crate::kernel::{DropReasons, KernelEnv};
use crate::kit::{
    self, BpfStats, EventRing, KitConfig, LoadSpec, LoadedSet, ProbeSet, StackMode, StackPolicy,
};
use crate::probe::{Candidate, Plan, ProbeKind, ProbePoint};
use crate::run::{EventSource, IntervalSource};
use crate::sets::flow::{cstr, tcp_flags, FlowView};
use crate::skel::drop::{types, DropSkel, DropSkelBuilder};
use crate::symbol::{kallsyms_range, kallsyms_ranges};
use clap::ValueEnum;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

// SAFETY: these are plain C structs generated from bpf/include/drop.h; any bytes are valid.
unsafe impl plain::Plain for types::drop_key {}
unsafe impl plain::Plain for types::drop_value {}
unsafe impl plain::Plain for types::drop_stack_key {}
unsafe impl plain::Plain for types::drop_event {}
unsafe impl plain::Plain for types::drop_pending {}
unsafe impl plain::Plain for types::np_kit_config {}

/// The drop probe set.
pub struct DropSet;

impl ProbeSet for DropSet {
    const NAME: &'static str = "drop";
    const ABOUT: &'static str = "packet drops (kfree_skb) with reason, location, device and flow";

    fn probe_points() -> Vec<ProbePoint> {
        probe_points()
    }
}

/// The drop probe point: tp_btf first, classic tracepoint as fallback.
pub fn probe_points() -> Vec<ProbePoint> {
    vec![ProbePoint {
        name: "packet drop (kfree_skb)",
        candidates: vec![
            Candidate {
                kind: ProbeKind::TpBtf,
                target: "kfree_skb",
                program: "drop_tp_btf",
            },
            Candidate {
                kind: ProbeKind::Tracepoint,
                target: "skb/kfree_skb",
                program: "drop_tracepoint",
            },
        ],
        required: true,
        ..ProbePoint::default()
    }]
}

/// Summary counts in the kernel; details submits one event per matching drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Aggregate in BPF maps, read every interval.
    Summary,
    /// One ring-buffer event per drop that passes the filters.
    Details,
}

impl Mode {
    fn bpf(self) -> types::drop_mode {
        match self {
            Mode::Summary => types::drop_mode::DROP_MODE_SUMMARY,
            Mode::Details => types::drop_mode::DROP_MODE_DETAILS,
        }
    }
}

/// EtherType classes (`eth_drop --type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
#[value(rename_all = "snake_case")]
pub enum EthType {
    /// Every frame.
    #[default]
    All,
    /// ARP.
    Arp,
    /// Reverse ARP.
    Rarp,
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
    /// LLDP.
    Lldp,
    /// 802.3x flow control (pause frames, EtherType 0x8808).
    FlowControl,
    /// Spanning tree BPDUs (802.2 LLC, DSAP 0x42).
    Stp,
    /// Anything else.
    Other,
}

impl EthType {
    fn bpf(self) -> types::drop_eth_class {
        use types::drop_eth_class as C;
        match self {
            EthType::All => C::DROP_ETH_ALL,
            EthType::Arp => C::DROP_ETH_ARP,
            EthType::Rarp => C::DROP_ETH_RARP,
            EthType::Ipv4 => C::DROP_ETH_IPV4,
            EthType::Ipv6 => C::DROP_ETH_IPV6,
            EthType::Lldp => C::DROP_ETH_LLDP,
            EthType::FlowControl => C::DROP_ETH_FLOW_CONTROL,
            EthType::Stp => C::DROP_ETH_STP,
            EthType::Other => C::DROP_ETH_OTHER,
        }
    }

    /// Can a frame of this class carry IP (and so match an address, port or protocol filter)?
    pub fn carries_ip(self) -> bool {
        matches!(self, EthType::All | EthType::Ipv4 | EthType::Ipv6)
    }
}

/// What a summary counts drops by, besides reason and device. With
/// [`StackMode::EveryEvent`] stacks the stack is part of the key too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyBy {
    /// The drop location (the caller of kfree_skb).
    pub location: bool,
    /// The full flow (addresses, ports); otherwise only the EtherType.
    pub flow: bool,
}

/// What a summary's entries are keyed by (`--group-by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum GroupBy {
    /// Location, reason, device and 5-tuple
    #[default]
    All,
    /// Location, reason and device (flows merged)
    Stack,
    /// Reason, device and 5-tuple (locations merged, no stacks)
    Fivetuple,
}

impl GroupBy {
    /// The summary key of this grouping.
    pub fn key(self) -> KeyBy {
        KeyBy {
            location: self != GroupBy::Fivetuple,
            flow: self != GroupBy::Stack,
        }
    }
}

/// Kernel functions whose kfree_skb is a normal free, not a drop, on kernels without drop
/// reasons (the seed tool's "normal free" filter, done in BPF here).
pub const NORMAL_FREE_CALLERS: [&str; 7] = [
    "icmp_rcv",
    "tcp_v4_rcv",
    "tcp_v4_do_rcv",
    "skb_release_data",
    "__kfree_skb",
    "tcp_recvmsg",
    "sk_stream_kill_queues",
];

/// How to configure the drop set.
#[derive(Debug, Clone)]
pub struct DropOptions {
    /// Summary or details.
    pub mode: Mode,
    /// Packet filter.
    pub filter: Filter,
    /// Only this drop reason (a name of the running kernel's enum).
    pub reason: Option<String>,
    /// Only drops located in this kernel function.
    pub match_func: Option<String>,
    /// Only drops located in this loaded module's code (`openvswitch`).
    pub match_module: Option<String>,
    /// All drops except those located in this kernel function.
    pub skip_func: Option<String>,
    /// EtherType class.
    pub eth_type: EthType,
    /// Only frames with this VLAN id.
    pub vlan_id: Option<u16>,
    /// Leave out normal frees (SKB_CONSUMED; the known callers on kernels without reasons).
    pub normal_filter: bool,
    /// How stacks are walked (summary: sampled by default; [`StackMode::EveryEvent`] keys
    /// entries by stack).
    pub stacks: StackPolicy,
    /// Summary key.
    pub key: KeyBy,
    /// Summary map size (distinct keys per interval).
    pub max_entries: u32,
    /// Rate limit and ring wakeups (details).
    pub kit: KitConfig,
}

impl DropOptions {
    /// Defaults for a summary: key by location and flow, stacks sampled 1 in 1000, 1000/interval.
    pub fn summary(filter: Filter) -> Self {
        Self {
            mode: Mode::Summary,
            filter,
            reason: None,
            match_func: None,
            match_module: None,
            skip_func: None,
            eth_type: EthType::All,
            vlan_id: None,
            normal_filter: true,
            stacks: StackPolicy::sampled(1000, 1000),
            key: KeyBy {
                location: true,
                flow: true,
            },
            max_entries: 10240,
            kit: KitConfig::default(),
        }
    }

    /// Defaults for details: one event per drop with its stack, at most
    /// [`kit::DEFAULT_MAX_EVENTS_PER_SEC`] events per second.
    pub fn details(filter: Filter) -> Self {
        Self {
            mode: Mode::Details,
            stacks: StackPolicy::every_event(),
            ..Self::summary(filter)
        }
    }

    /// Applies a `--group-by` choice: its key, and no stacks when locations are merged.
    pub fn group_by(&mut self, g: GroupBy) {
        self.key = g.key();
        if g == GroupBy::Fivetuple {
            self.stacks = StackPolicy::off();
        }
    }

    /// One line saying how stacks are collected, for report headers and JSON.
    pub fn stack_note(&self) -> String {
        match (self.mode, self.stacks.mode()) {
            (Mode::Summary, StackMode::EveryEvent) => {
                "stacks: walked for every drop (keyed by stack); counts exact".into()
            }
            (Mode::Summary, StackMode::Sampled { every, budget }) => format!(
                "stacks: first drop of each entry, then 1 in {every} (max {budget} walks/interval); counts exact"
            ),
            (Mode::Details, StackMode::Off) => "stacks: off".into(),
            (Mode::Details, _) => "stacks: walked for every reported drop".into(),
            _ => self.stacks.describe(),
        }
    }

    /// Every active filter, one line, for report headers.
    pub fn describe_filters(&self) -> String {
        let mut parts = vec![self.filter.describe()];
        if parts[0] == "none" {
            parts.clear();
        }
        if let Some(r) = &self.reason {
            parts.push(format!("reason={r}"));
        }
        if let Some(f) = &self.match_func {
            parts.push(format!("location in {f}"));
        }
        if let Some(m) = &self.match_module {
            parts.push(format!("location in module {m}"));
        }
        if let Some(f) = &self.skip_func {
            parts.push(format!("location not in {f}"));
        }
        if self.eth_type != EthType::All {
            if let Some(v) = self.eth_type.to_possible_value() {
                parts.push(format!("type={}", v.get_name()));
            }
        }
        if let Some(v) = self.vlan_id {
            parts.push(format!("vlan={v}"));
        }
        if !self.normal_filter {
            parts.push("normal frees included".into());
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(" ")
        }
    }

    /// Rejects option combinations no packet can satisfy.
    pub fn validate(&self) -> Result<()> {
        let f = &self.filter;
        let ip_filter = f.src.is_some()
            || f.dst.is_some()
            || f.src_port.is_some()
            || f.dst_port.is_some()
            || f.l4 != crate::filter::L4Protocol::All;
        if ip_filter && !self.eth_type.carries_ip() {
            return Err(Error::usage(format!(
                "--type {} conflicts with IP address/port/protocol filters: such frames carry no IP",
                self.eth_type
                    .to_possible_value()
                    .map(|v| v.get_name().to_string())
                    .unwrap_or_default()
            )));
        }
        let family = |net: &Option<crate::filter::IpNet>| net.map(|n| n.addr.is_ipv4());
        for fam in [family(&f.src), family(&f.dst)].into_iter().flatten() {
            if (self.eth_type == EthType::Ipv4 && !fam) || (self.eth_type == EthType::Ipv6 && fam) {
                return Err(Error::usage(
                    "--type and the --src-ip/--dst-ip address family conflict: no frame can match",
                ));
            }
        }
        if self.match_func.is_some() && self.match_module.is_some() {
            return Err(Error::usage(
                "--match and a module filter both set the drop location: give one",
            ));
        }
        for (flag, func) in [("--match", &self.match_func), ("--filter", &self.skip_func)] {
            if func.as_deref().is_some_and(|f| f.trim().is_empty()) {
                return Err(Error::usage(format!("{flag}: empty function name")));
            }
        }
        Ok(())
    }
}

/// A stack seen for a summary entry, with how many sampled walks hit it.
#[derive(Debug, Clone, Serialize)]
pub struct StackSample {
    /// Sampled walks that found this stack.
    pub hits: u64,
    /// Symbolized frames, dropping function first.
    pub frames: Vec<String>,
}

/// One row of a drop summary.
#[derive(Debug, Clone, Serialize)]
pub struct DropEntry {
    /// Drops counted (exact).
    pub count: u64,
    /// Reason name from the running kernel's BTF.
    pub reason: String,
    /// Raw reason value.
    pub reason_code: u32,
    /// Where kfree_skb was called: `func+0xoff`.
    pub location: String,
    /// The function part of the location.
    pub location_func: String,
    /// Device name (`-` when the skb had none).
    pub ifname: String,
    /// Device index in its namespace.
    pub ifindex: u32,
    /// Namespace inode.
    pub netns: u32,
    /// Decoded flow (flattened).
    #[serde(flatten)]
    pub flow: FlowView,
    /// Most-sampled stack, dropping function first.
    pub stack: Vec<String>,
    /// All stacks sampled for this entry in the interval.
    pub stacks: Vec<StackSample>,
}

/// One interval of a drop summary.
#[derive(Debug, Clone, Serialize)]
pub struct DropSummary {
    /// Entries, largest count first.
    pub entries: Vec<DropEntry>,
    /// Sum of all counts.
    pub total: u64,
    /// How stacks were collected.
    pub stack_sampling: String,
    /// What went wrong in BPF this interval, and what the programs cost.
    #[serde(flatten)]
    pub stats: BpfStats,
}

/// LLC header of an 802.3 frame.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Llc {
    /// Destination SAP.
    pub dsap: u8,
    /// Source SAP.
    pub ssap: u8,
    /// Control.
    pub ctrl: u8,
}

/// ICMP fields.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Icmp {
    /// Type.
    #[serde(rename = "type")]
    pub kind: u8,
    /// Code.
    pub code: u8,
    /// Echo identifier.
    pub id: u16,
    /// Echo sequence.
    pub seq: u16,
}

/// One dropped packet (details mode).
#[derive(Debug, Clone, Serialize)]
pub struct DropEvent {
    /// Wall-clock time of the drop.
    #[serde(serialize_with = "crate::output::serialize_local_time")]
    pub time: SystemTime,
    /// CLOCK_MONOTONIC timestamp, ns.
    pub timestamp_ns: u64,
    /// CPU that dropped it.
    pub cpu: u32,
    /// Process (tgid) running at the time.
    pub pid: u32,
    /// Thread.
    pub tid: u32,
    /// Command name.
    pub comm: String,
    /// Namespace inode.
    pub netns: u32,
    /// Device index.
    pub ifindex: u32,
    /// Device name.
    pub ifname: String,
    /// Reason name.
    pub reason: String,
    /// Raw reason value.
    pub reason_code: u32,
    /// `func+0xoff`.
    pub location: String,
    /// Function part of the location.
    pub location_func: String,
    /// Decoded flow (flattened).
    #[serde(flatten)]
    pub flow: FlowView,
    /// Source MAC.
    pub src_mac: Option<String>,
    /// Destination MAC.
    pub dst_mac: Option<String>,
    /// VLAN id.
    pub vlan_id: Option<u16>,
    /// LLC header of 802.3 frames (STP is DSAP 0x42).
    pub llc: Option<Llc>,
    /// IPv4 identification.
    pub ip_id: Option<u16>,
    /// TTL / hop limit.
    pub ttl: Option<u8>,
    /// TCP flags as letters (`S`, `A`, `F`, `R`, `P`, `U`).
    pub tcp_flags: Option<String>,
    /// ICMP fields.
    pub icmp: Option<Icmp>,
    /// ARP operation.
    pub arp_op: Option<u16>,
    /// skb->len, bytes.
    pub len: u32,
    /// skb->pkt_type (0 host, 1 broadcast, 2 multicast, 3 otherhost, 4 outgoing).
    pub pkt_type: u8,
    /// Kernel stack, dropping function first (empty with --no-stack-trace).
    pub stack: Vec<String>,
}

fn mac(m: &[u8; 6]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(17);
    for (i, b) in m.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 0xf)] as char);
    }
    s
}

fn flow_view(f: &types::np_flow) -> FlowView {
    crate::flow_view!(f)
}

/// A loaded and attached drop probe set.
pub struct DropProbe {
    set: LoadedSet<DropSkel<'static>>,
    opts: DropOptions,
    reasons: DropReasons,
    ifnames: IfNames,
    clock: WallClock,
    ring: Option<EventRing<types::drop_event>>,
}

fn func_range(flag: &str, func: &Option<String>) -> Result<types::drop_range> {
    match func {
        None => Ok(types::drop_range::default()),
        Some(f) => kallsyms_range(f)
            .map(|(start, end)| types::drop_range { start, end })
            .map_err(|e| match e {
                Error::Usage(m) => Error::usage(format!("{flag} {f}: {m}")),
                other => other,
            }),
    }
}

fn module_range(module: &str) -> Result<types::drop_range> {
    crate::symbol::kallsyms_module_range(module)?
        .map(|(start, end)| types::drop_range { start, end })
        .ok_or_else(|| {
            Error::missing(format!(
                "{module} is not loaded: no {module} code in /proc/kallsyms to match drops against (modprobe {module})"
            ))
        })
}

/// A details tool's whole run: opens the set with `opts`, prints the probe and filter header
/// (text), then one block per drop until stopped ([`crate::run::run_events`]).
pub fn run_details(
    tool: &str,
    opts: DropOptions,
    env: &KernelEnv,
    duration: Option<std::time::Duration>,
    json: bool,
    verbose: bool,
) -> Result<()> {
    let header = format!(
        "filter: {}  {}  max {} events/s (0: no limit)\n",
        opts.describe_filters(),
        opts.stack_note(),
        opts.kit.max_events_per_sec
    );
    let mut probe = DropProbe::open(opts, env)?;
    if !json {
        crate::output::text(&format!(
            "probe: {}  {header}",
            probe.chosen_plan().summary()
        ))?;
    }
    crate::run::run_events(tool, &mut probe, duration, json, |e| {
        crate::output::drop::event_text(e, verbose)
    })
}

impl DropProbe {
    /// Resolves names, chooses the plan, writes the config, loads and attaches.
    pub fn open(opts: DropOptions, env: &KernelEnv) -> Result<Self> {
        opts.validate()?;
        let plan = Self::plan(env);
        plan.require()?;
        let reason = match &opts.reason {
            None => None,
            Some(name) => {
                if !env.reasons.available {
                    return Err(Error::usage(format!(
                        "--reason {}: this kernel reports no drop reasons (needs 5.17+)",
                        crate::cli::quote(name)
                    )));
                }
                Some(env.reasons.value(name).ok_or_else(|| {
                    let names: Vec<&str> = env.reasons.names().take(12).collect();
                    Error::usage(format!(
                        "--reason {}: unknown drop reason on this kernel (e.g. {}, ...)",
                        crate::cli::quote(name),
                        names.join(", ")
                    ))
                })?)
            }
        };
        let matched = match &opts.match_module {
            Some(m) => module_range(m)?,
            None => func_range("--match", &opts.match_func)?,
        };
        let skipped = func_range("--filter", &opts.skip_func)?;
        let mut normal = [types::drop_range::default(); 8];
        if !env.reasons.available {
            let found = kallsyms_ranges(&NORMAL_FREE_CALLERS)?.into_iter().flatten();
            for (slot, (start, end)) in normal.iter_mut().zip(found) {
                *slot = types::drop_range { start, end };
            }
        }
        let summary = opts.mode == Mode::Summary;
        let entries = if summary { opts.max_entries.max(1) } else { 1 };
        let spec = LoadSpec {
            set: DropSet::NAME,
            plan,
            // Details carry their stacks in the events; only summaries use the stack map.
            stacks: if summary {
                opts.stacks
            } else {
                StackPolicy::off()
            },
            kit: &opts.kit,
        };
        let set = kit::load(DropSkelBuilder::default(), spec, |open, kit_cfg| {
            let ro = crate::kit_rodata!(open, kit_cfg);
            crate::write_np_filter!(ro.np_filter, &opts.filter);
            let cfg = &mut ro.drop_cfg;
            cfg.mode = opts.mode.bpf();
            if let Some(r) = reason {
                cfg.has_reason_filter = 1;
                cfg.reason = r;
            }
            cfg.loc_match = matched;
            cfg.loc_skip = skipped;
            cfg.normal = normal;
            cfg.normal_filter = u8::from(opts.normal_filter);
            cfg.eth_class = opts.eth_type.bpf();
            if let Some(v) = opts.vlan_id {
                cfg.has_vlan_filter = 1;
                cfg.vlan_id = v;
            }
            cfg.stacks = types::np_stack_mode(opts.stacks.bpf_mode().0);
            if let StackMode::Sampled { every, budget } = opts.stacks.mode() {
                cfg.stack_sample = every;
                cfg.stack_budget = budget;
            }
            cfg.key_location = u8::from(opts.key.location);
            cfg.key_flow = u8::from(opts.key.flow);
            use crate::error::Context;
            open.maps
                .drop_counts
                .set_max_entries(entries)
                .context(|| "size drop_counts".into())?;
            open.maps
                .drop_stacks
                .set_max_entries(entries)
                .context(|| "size drop_stacks".into())?;
            if summary {
                open.maps
                    .events
                    .set_max_entries(4096)
                    .context(|| "size events".into())?;
            }
            Ok(())
        })?;
        let ring = if summary {
            None
        } else {
            Some(EventRing::new(&set.skel.maps.events)?)
        };
        Ok(Self {
            set,
            ifnames: IfNames::new(opts.filter.netns.as_ref()),
            opts,
            reasons: env.reasons.clone(),
            clock: WallClock::new(),
            ring,
        })
    }

    /// The attach plan this kernel gets, without loading anything.
    pub fn plan(env: &KernelEnv) -> Plan {
        DropSet::plan(env)
    }

    /// The plan in use.
    pub fn chosen_plan(&self) -> &Plan {
        &self.set.plan
    }

    /// The options the set was opened with.
    pub fn options(&self) -> &DropOptions {
        &self.opts
    }

    /// Waits up to `timeout` for details events and returns them decoded.
    pub fn poll_events(&mut self, timeout: Duration) -> Result<Vec<DropEvent>> {
        let raw = match &mut self.ring {
            Some(ring) => ring.poll(timeout)?,
            None => {
                std::thread::sleep(timeout);
                Vec::new()
            }
        };
        Ok(raw.iter().map(|e| self.decode_event(e)).collect())
    }

    fn decode_event(&mut self, e: &types::drop_event) -> DropEvent {
        let p = &e.pkt;
        let (location, location_func) = self.set.location(e.location);
        let flow = flow_view(&p.flow);
        let stack = kit::stacks::event_stack(&mut self.set.symbols, &e.stack.ips, e.stack.depth);
        let ifname = {
            let n = cstr(&e.ifname);
            if n.is_empty() {
                self.ifnames.name(e.netns, e.ifindex)
            } else {
                n
            }
        };
        let l3 = p.flow.l3 as u32;
        let ip = l3 == types::np_l3::NP_L3_IPV4.0 || l3 == types::np_l3::NP_L3_IPV6.0;
        DropEvent {
            time: self.clock.wall(e.ts_ns),
            timestamp_ns: e.ts_ns,
            cpu: e.cpu,
            pid: e.pid,
            tid: e.tid,
            comm: cstr(&e.comm),
            netns: e.netns,
            ifindex: e.ifindex,
            ifname,
            reason: self.reasons.name(e.reason),
            reason_code: e.reason,
            location,
            location_func,
            src_mac: (p.has_mac != 0).then(|| mac(&p.smac)),
            dst_mac: (p.has_mac != 0).then(|| mac(&p.dmac)),
            vlan_id: (p.has_vlan != 0).then_some(p.vlan_id),
            llc: (p.has_llc != 0).then_some(Llc {
                dsap: p.llc_dsap,
                ssap: p.llc_ssap,
                ctrl: p.llc_ctrl,
            }),
            ip_id: (l3 == types::np_l3::NP_L3_IPV4.0).then_some(p.ip_id),
            ttl: ip.then_some(p.ttl),
            tcp_flags: (ip && p.flow.l4proto == 6).then(|| tcp_flags(p.tcp_flags)),
            icmp: (ip && matches!(p.flow.l4proto, 1 | 58)).then_some(Icmp {
                kind: p.icmp_type,
                code: p.icmp_code,
                id: p.icmp_id,
                seq: p.icmp_seq,
            }),
            arp_op: (l3 == types::np_l3::NP_L3_ARP.0).then_some(p.arp_op),
            len: p.len,
            pkt_type: p.pkt_type,
            flow,
            stack,
        }
    }

    /// BPF-side counters since the previous call.
    pub fn stats_delta(&mut self) -> BpfStats {
        self.set.stats.delta()
    }

    /// Ends the interval for the per-CPU pending slots: bumps the generation, waits until no
    /// program still uses the old one, and returns the old slots' counts.
    fn harvest_pending(&mut self) -> Result<Vec<(types::drop_key, u64)>> {
        let Some(bss) = self.set.skel.maps.bss_data.as_deref_mut() else {
            return Ok(Vec::new());
        };
        let gen = bss.drop_gen;
        // SAFETY: bss is the mmapped .bss of the loaded object; a volatile store makes the
        // new generation visible to the programs before the grace period starts.
        unsafe { std::ptr::write_volatile(&mut bss.drop_gen, gen.wrapping_add(1)) };
        kit::grace_period();
        use libbpf_rs::MapCore;
        let slot = ((gen & 1) as u32).to_ne_bytes();
        let per_cpu = self
            .set
            .skel
            .maps
            .pending
            .lookup_percpu(&slot, libbpf_rs::MapFlags::ANY)
            .map_err(|source| Error::Bpf {
                context: "read pending slots".into(),
                source,
            })?
            .unwrap_or_default();
        Ok(per_cpu
            .iter()
            .filter_map(|bytes| {
                let mut p = types::drop_pending::default();
                plain::copy_from_bytes(&mut p, bytes).ok()?;
                (p.gen == gen.wrapping_add(1) && p.count > 0).then_some((p.key, p.count))
            })
            .collect())
    }

    /// Reads and clears this interval's counts; symbolizes locations and stacks.
    pub fn drain_summary(&mut self) -> Result<DropSummary> {
        let pending = self.harvest_pending()?;
        let mut counts: Vec<(types::drop_key, types::drop_value)> =
            kit::drain(&self.set.skel.maps.drop_counts)?;
        for (key, n) in pending {
            // SAFETY: drop_key is a plain C struct.
            let kb = unsafe { plain::as_bytes(&key) };
            // SAFETY: as above.
            match counts
                .iter_mut()
                .find(|(k, _)| unsafe { plain::as_bytes(k) } == kb)
            {
                Some((_, v)) => v.count += n,
                None => counts.push((
                    key,
                    types::drop_value {
                        count: n,
                        stack_id: -1,
                        ..Default::default()
                    },
                )),
            }
        }
        let samples: Vec<(types::drop_stack_key, u64)> =
            kit::drain(&self.set.skel.maps.drop_stacks)?;
        kit::reset_u64(&self.set.skel.maps.stack_budget_used)?;
        let stats = self.set.stats.delta();

        let key_bytes = |k: &types::drop_key| -> Vec<u8> {
            // SAFETY: drop_key is a plain C struct.
            unsafe { plain::as_bytes(k) }.to_vec()
        };
        let mut by_key: HashMap<Vec<u8>, BTreeMap<i32, u64>> = HashMap::new();
        for (sk, hits) in &samples {
            *by_key
                .entry(key_bytes(&sk.key))
                .or_default()
                .entry(sk.stack_id)
                .or_default() += hits;
        }
        let mut entries = Vec::with_capacity(counts.len());
        for (k, v) in &counts {
            let mut sampled: Vec<(i32, u64)> = by_key
                .remove(&key_bytes(k))
                .map(|m| m.into_iter().collect())
                .unwrap_or_default();
            if k.stack_id >= 0 {
                sampled = vec![(k.stack_id, v.count)];
            } else if sampled.is_empty() && v.stack_id >= 0 {
                sampled = vec![(v.stack_id, 1)];
            }
            sampled.sort_by_key(|s| std::cmp::Reverse(s.1));
            let mut stacks = Vec::new();
            for (id, hits) in sampled {
                let frames = self.set.stacks.frames(&mut self.set.symbols, id);
                if !frames.is_empty() {
                    stacks.push(StackSample { hits, frames });
                }
            }
            let (location, location_func) = self.set.location(k.location);
            entries.push(DropEntry {
                count: v.count,
                reason: self.reasons.name(k.reason),
                reason_code: k.reason,
                location,
                location_func,
                ifname: self.ifnames.name(k.netns, k.ifindex),
                ifindex: k.ifindex,
                netns: k.netns,
                flow: flow_view(&k.flow),
                stack: stacks.first().map(|s| s.frames.clone()).unwrap_or_default(),
                stacks,
            });
        }
        // Only now, with this interval's stacks resolved, may a full stack map be emptied.
        self.set.stacks.end_interval(stats.stack_errors);
        entries.sort_by(|a, b| b.count.cmp(&a.count).then(a.location.cmp(&b.location)));
        Ok(DropSummary {
            total: entries.iter().map(|e| e.count).sum(),
            entries,
            stack_sampling: self.opts.stack_note(),
            stats,
        })
    }
}

impl IntervalSource for DropProbe {
    type Report = DropSummary;

    fn drain(&mut self) -> Result<DropSummary> {
        self.drain_summary()
    }

    fn plan(&self) -> &Plan {
        self.chosen_plan()
    }

    fn netns(&self) -> Option<&crate::kernel::netns::Netns> {
        self.opts.filter.netns.as_ref()
    }
}

impl EventSource for DropProbe {
    type Event = DropEvent;
    const KIND: &'static str = "drop";

    fn poll(&mut self, timeout: Duration) -> Result<Vec<DropEvent>> {
        self.poll_events(timeout)
    }

    fn stats(&mut self) -> BpfStats {
        self.stats_delta()
    }

    fn plan(&self) -> &Plan {
        self.chosen_plan()
    }

    fn netns(&self) -> Option<&crate::kernel::netns::Netns> {
        self.opts.filter.netns.as_ref()
    }
}
