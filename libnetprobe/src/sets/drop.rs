//! Drop probe set: `kfree_skb` drops (never normal frees), counted in the kernel by
//! (reason, location, device, flow) for summaries, or reported one by one for details.
use crate::error::{Context, Error, Result};
use crate::filter::Filter;
use crate::kernel::netns::IfNames;
use crate::kernel::{DropReasons, KernelEnv};
use crate::output::WallClock;
use crate::probe::{Candidate, Plan, ProbeKind, ProbePoint};
use crate::sets::flow::FlowView;
use crate::skel::drop::{types, DropSkel, DropSkelBuilder};
use crate::symbol::{base_name, kallsyms_range, strip_tracing_frames, Frame, KernelSymbolizer};
use clap::ValueEnum;
use crossbeam_channel::{Receiver, Sender};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags, RingBuffer, RingBufferBuilder};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::mem::MaybeUninit;
use std::time::Duration;

// SAFETY: these are plain C structs generated from bpf/include/drop.h; any bytes are valid.
unsafe impl plain::Plain for types::drop_key {}
unsafe impl plain::Plain for types::drop_value {}
unsafe impl plain::Plain for types::drop_stack_key {}
unsafe impl plain::Plain for types::drop_event {}
unsafe impl plain::Plain for types::np_stats {}

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

/// EtherType classes (`eth_drop --type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
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
    /// Spanning tree BPDUs (802.2 LLC, DSAP 0x42).
    Stp,
    /// Anything else.
    Other,
}

impl EthType {
    fn code(self) -> u8 {
        match self {
            EthType::All => 0,
            EthType::Arp => 1,
            EthType::Rarp => 2,
            EthType::Ipv4 => 3,
            EthType::Ipv6 => 4,
            EthType::Lldp => 5,
            EthType::Stp => 6,
            EthType::Other => 7,
        }
    }
}

/// What a summary counts drops by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyBy {
    /// The drop location (the caller of kfree_skb).
    pub location: bool,
    /// The full flow (addresses, ports); otherwise only the EtherType.
    pub flow: bool,
    /// The whole stack: every drop walks its stack (costly; `trace_net_drop --bt`).
    pub stack: bool,
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
            stack: false,
        }
    }
}

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
    /// All drops except those located in this kernel function.
    pub skip_func: Option<String>,
    /// EtherType class.
    pub eth_type: EthType,
    /// Only frames with this VLAN id.
    pub vlan_id: Option<u16>,
    /// Walk kernel stacks at all.
    pub stacks: bool,
    /// Summary: besides the first drop of each key, walk the stack on 1 in N drops (0 = never).
    pub stack_sample: u32,
    /// Summary: at most this many sampled walks per interval.
    pub stack_budget: u32,
    /// Summary key.
    pub key: KeyBy,
    /// Summary map size (distinct keys per interval).
    pub max_entries: u32,
}

impl DropOptions {
    /// Defaults for a summary: key by location and flow, stacks sampled 1 in 1000, 1000/interval.
    pub fn summary(filter: Filter) -> Self {
        Self {
            mode: Mode::Summary,
            filter,
            reason: None,
            match_func: None,
            skip_func: None,
            eth_type: EthType::All,
            vlan_id: None,
            stacks: true,
            stack_sample: 1000,
            stack_budget: 1000,
            key: KeyBy {
                location: true,
                flow: true,
                stack: false,
            },
            max_entries: 10240,
        }
    }

    /// Applies a `--group-by` choice: its key, and no stacks when locations are merged.
    pub fn group_by(&mut self, g: GroupBy) {
        self.key = g.key();
        self.stacks = g != GroupBy::Fivetuple;
    }

    /// One line saying how stacks are collected, for report headers and JSON.
    pub fn stack_note(&self) -> String {
        if !self.stacks {
            "stacks: off; counts exact".to_string()
        } else if self.key.stack {
            "stacks: walked for every drop (keyed by stack); counts exact".to_string()
        } else {
            format!(
                "stacks: first drop of each entry, then 1 in {} (max {} walks/interval); counts exact",
                self.stack_sample, self.stack_budget
            )
        }
    }

    /// Defaults for details: one event per drop with its stack.
    pub fn details(filter: Filter) -> Self {
        Self {
            mode: Mode::Details,
            ..Self::summary(filter)
        }
    }
}

/// Counters of things that went wrong in BPF.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DropStats {
    /// Events that did not fit in the ring buffer.
    pub lost_events: u64,
    /// Keys that did not fit in a full map.
    pub map_full: u64,
    /// Failed stack walks (e.g. stack map full or hash collision).
    pub stack_errors: u64,
    /// Sampled walks skipped because the interval's budget was used up.
    pub stacks_skipped: u64,
    /// Drops that passed the filters.
    pub seen: u64,
}

impl DropStats {
    fn minus(self, o: DropStats) -> DropStats {
        DropStats {
            lost_events: self.lost_events.saturating_sub(o.lost_events),
            map_full: self.map_full.saturating_sub(o.map_full),
            stack_errors: self.stack_errors.saturating_sub(o.stack_errors),
            stacks_skipped: self.stacks_skipped.saturating_sub(o.stacks_skipped),
            seen: self.seen.saturating_sub(o.seen),
        }
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
    /// Ring-buffer reserve failures this interval.
    pub lost_events: u64,
    /// Map-full updates this interval.
    pub map_full: u64,
    /// Failed stack walks this interval.
    pub stack_errors: u64,
    /// Sampled walks skipped for the budget this interval.
    pub stacks_skipped: u64,
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
    /// Local wall-clock time.
    pub time: String,
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
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn tcp_flags(f: u8) -> String {
    const NAMES: [(u8, char); 8] = [
        (0x01, 'F'),
        (0x02, 'S'),
        (0x04, 'R'),
        (0x08, 'P'),
        (0x10, 'A'),
        (0x20, 'U'),
        (0x40, 'E'),
        (0x80, 'C'),
    ];
    NAMES
        .iter()
        .filter(|(bit, _)| f & bit != 0)
        .map(|(_, c)| *c)
        .collect()
}

fn cstr(bytes: &[i8]) -> String {
    let b: Vec<u8> = bytes
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&b).into_owned()
}

fn flow_view(f: &types::np_flow) -> FlowView {
    FlowView::decode(
        &f.saddr,
        &f.daddr,
        f.sport,
        f.dport,
        f.ethertype,
        f.l3,
        f.l4proto,
    )
}

/// A loaded and attached drop probe set.
pub struct DropProbe {
    skel: DropSkel<'static>,
    _links: Vec<Link>,
    plan: Plan,
    opts: DropOptions,
    reasons: DropReasons,
    symbolizer: KernelSymbolizer,
    ifnames: IfNames,
    clock: WallClock,
    stats_prev: DropStats,
    stacks: HashMap<i32, Vec<String>>,
    ring: Option<RingBuffer<'static>>,
    rx: Option<Receiver<types::drop_event>>,
}

fn func_range(flag: &str, func: &Option<String>) -> Result<(u64, u64)> {
    match func {
        None => Ok((0, 0)),
        Some(f) => kallsyms_range(f).map_err(|e| match e {
            Error::Usage(m) => Error::usage(format!("{flag} {f}: {m}")),
            other => other,
        }),
    }
}

impl DropProbe {
    /// Resolves names, chooses the plan, writes the config, loads and attaches.
    pub fn open(opts: DropOptions, env: &KernelEnv) -> Result<Self> {
        let plan = Self::plan(env);
        plan.require()?;
        let reason = match &opts.reason {
            None => None,
            Some(name) => {
                if !env.reasons.available {
                    return Err(Error::usage(format!(
                        "--reason {name}: this kernel reports no drop reasons (needs 5.17+)"
                    )));
                }
                Some(env.reasons.value(name).ok_or_else(|| {
                    let names: Vec<&str> = env.reasons.names().take(12).collect();
                    Error::usage(format!(
                        "--reason {name}: unknown drop reason on this kernel (e.g. {}, ...)",
                        names.join(", ")
                    ))
                })?)
            }
        };
        let matched = func_range("--match", &opts.match_func)?;
        let skipped = func_range("--filter", &opts.skip_func)?;

        let storage = Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open = DropSkelBuilder::default()
            .open(storage)
            .context(|| "open drop BPF object".into())?;
        plan.apply(open.open_object_mut());
        let ro = open
            .maps
            .rodata_data
            .as_deref_mut()
            .ok_or_else(|| Error::env("drop BPF object has no .rodata"))?;
        crate::write_np_filter!(ro.np_filter, &opts.filter);
        let cfg = &mut ro.drop_cfg;
        cfg.mode = if opts.mode == Mode::Details { 1 } else { 0 };
        if let Some(r) = reason {
            cfg.has_reason_filter = 1;
            cfg.reason = r;
        }
        (cfg.loc_match_start, cfg.loc_match_end) = matched;
        (cfg.loc_skip_start, cfg.loc_skip_end) = skipped;
        cfg.eth_class = opts.eth_type.code();
        if let Some(v) = opts.vlan_id {
            cfg.has_vlan_filter = 1;
            cfg.vlan_id = v;
        }
        cfg.stacks = u8::from(opts.stacks);
        cfg.stack_sample = opts.stack_sample;
        cfg.stack_budget = opts.stack_budget;
        cfg.key_location = u8::from(opts.key.location);
        cfg.key_flow = u8::from(opts.key.flow);
        cfg.key_stack = u8::from(opts.key.stack);
        let entries = opts.max_entries.max(1);
        if opts.mode == Mode::Summary {
            open.maps
                .drop_counts
                .set_max_entries(entries)
                .context(|| "size drop_counts".into())?;
            open.maps
                .drop_stacks
                .set_max_entries(entries)
                .context(|| "size drop_stacks".into())?;
            open.maps
                .events
                .set_max_entries(4096)
                .context(|| "size events".into())?;
        } else {
            open.maps
                .drop_counts
                .set_max_entries(1)
                .context(|| "size drop_counts".into())?;
            open.maps
                .drop_stacks
                .set_max_entries(1)
                .context(|| "size drop_stacks".into())?;
        }
        if !opts.stacks {
            open.maps
                .stack_traces
                .set_max_entries(1)
                .context(|| "size stack_traces".into())?;
        }
        crate::bpf_log::clear();
        let skel = open.load().map_err(|e| {
            Error::env(format!(
                "loading the drop programs ({}) failed: {e}; {}",
                plan.summary(),
                crate::bpf_log::explain()
            ))
        })?;
        let links = plan.attach(skel.object())?;

        let mut probe = Self {
            skel,
            _links: links,
            plan,
            ifnames: IfNames::new(opts.filter.netns.as_ref()),
            opts,
            reasons: env.reasons.clone(),
            symbolizer: KernelSymbolizer::new(),
            clock: WallClock::new(),
            stats_prev: DropStats::default(),
            stacks: HashMap::new(),
            ring: None,
            rx: None,
        };
        if probe.opts.mode == Mode::Details {
            probe.start_ring()?;
        }
        Ok(probe)
    }

    /// The attach plan this kernel gets, without loading anything.
    pub fn plan(env: &KernelEnv) -> Plan {
        Plan::choose(
            &probe_points(),
            &env.features,
            &env.btf,
            env.tracefs.as_deref(),
        )
    }

    /// The plan in use.
    pub fn chosen_plan(&self) -> &Plan {
        &self.plan
    }

    fn start_ring(&mut self) -> Result<()> {
        let (tx, rx): (Sender<types::drop_event>, _) = crossbeam_channel::unbounded();
        let mut builder = RingBufferBuilder::new();
        builder
            .add(&self.skel.maps.events, move |data: &[u8]| {
                let mut ev = types::drop_event::default();
                if plain::copy_from_bytes(&mut ev, data).is_ok() {
                    let _ = tx.send(ev);
                }
                0
            })
            .context(|| "ring buffer".into())?;
        self.ring = Some(builder.build().context(|| "ring buffer".into())?);
        self.rx = Some(rx);
        Ok(())
    }

    /// Waits up to `timeout` for details events and returns them decoded.
    pub fn poll_events(&mut self, timeout: Duration) -> Result<Vec<DropEvent>> {
        if let Some(ring) = &self.ring {
            if let Err(e) = ring.poll(timeout) {
                if e.kind() != libbpf_rs::ErrorKind::Interrupted {
                    return Err(Error::Bpf {
                        context: "poll ring buffer".into(),
                        source: e,
                    });
                }
            }
        } else {
            std::thread::sleep(timeout);
        }
        let raw: Vec<types::drop_event> = match &self.rx {
            Some(rx) => rx.try_iter().collect(),
            None => Vec::new(),
        };
        Ok(raw.iter().map(|e| self.decode_event(e)).collect())
    }

    /// Symbolized stack of a stack id. Ids are stable (a stack map never moves a stack), so
    /// they are cached; the map is only emptied when it overflows (see `maintain_stacks`).
    fn stack(&mut self, id: i32) -> Vec<String> {
        if id < 0 {
            return Vec::new();
        }
        if let Some(s) = self.stacks.get(&id) {
            return s.clone();
        }
        let addrs: Vec<u64> = match self
            .skel
            .maps
            .stack_traces
            .lookup(&id.to_ne_bytes(), MapFlags::ANY)
        {
            Ok(Some(bytes)) => bytes
                .chunks_exact(8)
                .map(|c| u64::from_ne_bytes(c.try_into().unwrap_or_default()))
                .take_while(|a| *a != 0)
                .collect(),
            _ => return Vec::new(),
        };
        let mut frames = self.symbolizer.frames(&addrs);
        strip_tracing_frames(&mut frames);
        let out: Vec<String> = frames.iter().map(Frame::to_string).collect();
        self.stacks.insert(id, out.clone());
        out
    }

    /// Empties the stack map (and the cache) after walks failed, so new stacks fit again.
    fn maintain_stacks(&mut self, errors: u64) {
        if errors == 0 {
            return;
        }
        let ids: Vec<Vec<u8>> = self.skel.maps.stack_traces.keys().collect();
        for id in ids {
            let _ = self.skel.maps.stack_traces.delete(&id);
        }
        self.stacks.clear();
    }

    fn location(&mut self, addr: u64) -> (String, String) {
        if addr == 0 {
            return ("-".into(), "-".into());
        }
        let f = self.symbolizer.frame(addr);
        let func = if f.func.is_empty() {
            f.to_string()
        } else {
            base_name(&f.func).to_string()
        };
        (f.to_string(), func)
    }

    fn decode_event(&mut self, e: &types::drop_event) -> DropEvent {
        let p = &e.pkt;
        let (location, location_func) = self.location(e.location);
        let flow = flow_view(&p.flow);
        let stack = self.stack(e.stack_id);
        if e.stack_id >= 0 {
            let _ = self
                .skel
                .maps
                .stack_traces
                .delete(&e.stack_id.to_ne_bytes());
        }
        let ifname = {
            let n = cstr(&e.ifname);
            if n.is_empty() {
                self.ifnames.name(e.netns, e.ifindex)
            } else {
                n
            }
        };
        let ip = matches!(p.flow.l3, 4 | 6);
        DropEvent {
            time: crate::output::local_time(self.clock.wall(e.ts_ns)),
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
            ip_id: (p.flow.l3 == 4).then_some(p.ip_id),
            ttl: ip.then_some(p.ttl),
            tcp_flags: (ip && p.flow.l4proto == 6).then(|| tcp_flags(p.tcp_flags)),
            icmp: (ip && matches!(p.flow.l4proto, 1 | 58)).then_some(Icmp {
                kind: p.icmp_type,
                code: p.icmp_code,
                id: p.icmp_id,
                seq: p.icmp_seq,
            }),
            arp_op: (p.flow.l3 == 8).then_some(p.arp_op),
            len: p.len,
            pkt_type: p.pkt_type,
            flow,
            stack,
        }
    }

    /// Cumulative BPF-side counters, summed over CPUs.
    pub fn stats(&self) -> DropStats {
        let mut s = DropStats::default();
        if let Ok(Some(per_cpu)) = self
            .skel
            .maps
            .stats
            .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)
        {
            for bytes in per_cpu {
                let mut v = types::np_stats::default();
                if plain::copy_from_bytes(&mut v, &bytes).is_ok() {
                    s.lost_events += v.lost_events;
                    s.map_full += v.map_full;
                    s.stack_errors += v.stack_errors;
                    s.stacks_skipped += v.stacks_skipped;
                    s.seen += v.seen;
                }
            }
        }
        s
    }

    /// Counters since the previous call.
    pub fn stats_delta(&mut self) -> DropStats {
        let now = self.stats();
        let d = now.minus(self.stats_prev);
        self.stats_prev = now;
        self.maintain_stacks(d.stack_errors);
        d
    }

    fn drain_map<K: plain::Plain + Default, V: plain::Plain + Default>(
        map: &libbpf_rs::MapMut<'_>,
    ) -> Vec<(K, V)> {
        let keys: Vec<Vec<u8>> = map.keys().collect();
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            let val = match map.lookup_and_delete(&k) {
                Ok(Some(v)) => Some(v),
                // Kernels before 5.14 cannot lookup_and_delete on hash maps.
                Ok(None) => None,
                Err(_) => {
                    let v = map.lookup(&k, MapFlags::ANY).ok().flatten();
                    let _ = map.delete(&k);
                    v
                }
            };
            let Some(v) = val else { continue };
            let (mut key, mut value) = (K::default(), V::default());
            if plain::copy_from_bytes(&mut key, &k).is_ok()
                && plain::copy_from_bytes(&mut value, &v).is_ok()
            {
                out.push((key, value));
            }
        }
        out
    }

    /// Reads and clears this interval's counts; symbolizes locations and stacks.
    pub fn drain_summary(&mut self) -> Result<DropSummary> {
        let counts: Vec<(types::drop_key, types::drop_value)> =
            Self::drain_map(&self.skel.maps.drop_counts);
        let samples: Vec<(types::drop_stack_key, u64)> =
            Self::drain_map(&self.skel.maps.drop_stacks);
        let _ = self.skel.maps.stack_budget_used.update(
            &0u32.to_ne_bytes(),
            &0u64.to_ne_bytes(),
            MapFlags::ANY,
        );
        let stats = self.stats_delta();

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
                let frames = self.stack(id);
                if !frames.is_empty() {
                    stacks.push(StackSample { hits, frames });
                }
            }
            let (location, location_func) = self.location(k.location);
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
        entries.sort_by(|a, b| b.count.cmp(&a.count).then(a.location.cmp(&b.location)));
        Ok(DropSummary {
            total: entries.iter().map(|e| e.count).sum(),
            entries,
            lost_events: stats.lost_events,
            map_full: stats.map_full,
            stack_errors: stats.stack_errors,
            stacks_skipped: stats.stacks_skipped,
        })
    }
}
