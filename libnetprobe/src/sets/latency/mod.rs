//! Latency probe set: per-stage packet latency along a path (host stack, VM tap, qdisc, ICMP
//! round trips), from tracepoints. The BPF stage engine keys every packet by its header fields
//! at each stage; summaries are log2 histograms and per-flow totals aggregated in the kernel,
//! details one event per packet whose total reaches a threshold.
pub mod args;
pub mod path;
pub mod report;

use crate::clock::WallClock;
use crate::error::{Context, Error, Result};
use crate::filter::Filter;
use crate::hist::Log2Hist;
use crate::kernel::netns::IfNames;
use crate::kernel::KernelEnv;
use crate::kit::{
    self, BpfStats, EventRing, KitConfig, LoadSpec, LoadedSet, ProbeSet, StackPolicy,
};
use crate::probe::{Plan, ProbePoint};
use crate::run::{EventSource, IntervalSource};
use crate::skel::latency::{types, LatencySkel, LatencySkelBuilder};
use libbpf_rs::{MapCore, MapFlags};
pub use path::{Direction, EchoSide, Hook, Path, Role, Stage};
pub use report::{FlowLatency, HistView, LatencyEvent, LatencySummary, PacketCounts, StageView};
use std::time::Duration;

// SAFETY: plain C structs generated from bpf/include/latency.h; any bytes are valid.
unsafe impl plain::Plain for types::lat_event {}
unsafe impl plain::Plain for types::lat_hist {}
unsafe impl plain::Plain for types::lat_flow_key {}
unsafe impl plain::Plain for types::lat_flow_value {}
unsafe impl plain::Plain for types::lat_counters {}
unsafe impl plain::Plain for types::lat_key {}
unsafe impl plain::Plain for types::lat_state {}
unsafe impl plain::Plain for types::lat_flow_acc {}
unsafe impl plain::Plain for types::np_kit_config {}

/// Stage positions per path.
pub const MAX_STAGES: usize = types::lat_sizes::LAT_SIZE_STAGES.0 as usize;
/// Paths per load.
pub const MAX_PATHS: usize = types::lat_sizes::LAT_SIZE_PATHS.0 as usize;
/// Devices per role.
pub const ROLE_DEVS: usize = types::lat_sizes::LAT_SIZE_ROLE_DEVS.0 as usize;

/// Where a histogram lives in the `hists` map (as `lat_cfg.nstages`/`hist_pairs`/`hist_cells`
/// tell the programs): per generation, per path, the pair (from, to) at `from * n + to` and
/// the total at `n * n`. Without stage histograms `n` is 0: one cell per path, the total.
#[derive(Debug, Clone, Copy)]
struct HistLayout {
    n: usize,
    pairs: usize,
    cells: usize,
}

impl HistLayout {
    fn new(paths: &[Path], stage_hists: bool) -> Self {
        let n = if stage_hists {
            paths.iter().map(|p| p.stages.len()).max().unwrap_or(0)
        } else {
            0
        };
        let pairs = n * n + 1;
        Self {
            n,
            pairs,
            cells: paths.len().max(1) * pairs,
        }
    }

    fn total(&self) -> usize {
        self.n * self.n
    }

    fn pair(&self, from: usize, to: usize) -> usize {
        from * self.n + to
    }
}

/// The latency probe set.
pub struct LatencySet;

impl ProbeSet for LatencySet {
    const NAME: &'static str = "latency";
    const ABOUT: &'static str =
        "per-stage packet latency along host, VM, qdisc and ICMP paths (stage engine)";

    fn probe_points() -> Vec<ProbePoint> {
        path::all_points()
    }
}

/// Summary (histograms in the kernel) or details (one event per slow packet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Histograms and per-flow totals, read every interval.
    Summary,
    /// One event per packet whose total reaches the threshold.
    Details,
}

/// The devices of each role: (ifindex, name), resolved in the filter's namespace.
#[derive(Debug, Clone, Default)]
pub struct Interfaces {
    /// `--phy-interface` (up to [`ROLE_DEVS`], e.g. bond members).
    pub phy: Vec<(u32, String)>,
    /// `--internal-interface`.
    pub internal: Vec<(u32, String)>,
    /// `--vm-interface`.
    pub vm: Vec<(u32, String)>,
}

impl Interfaces {
    fn of(&self, role: Role) -> &[(u32, String)] {
        match role {
            Role::Phy => &self.phy,
            Role::Internal => &self.internal,
            Role::Vm => &self.vm,
            Role::Any => &[],
        }
    }
}

/// How to configure the latency set.
#[derive(Debug, Clone)]
pub struct LatencyOptions {
    /// Summary or details.
    pub mode: Mode,
    /// Paths tracked at once (at most [`MAX_PATHS`]).
    pub paths: Vec<Path>,
    /// Flow filter, applied at each path's first stage; its namespace is where the
    /// interfaces live.
    pub filter: Filter,
    /// Devices by role.
    pub interfaces: Interfaces,
    /// Summary: adjacent-stage histograms too (attaches every stage, not only the ends).
    pub stage_latency: bool,
    /// Summary: per-flow totals.
    pub flows: bool,
    /// Track 1 packet in N (1: all).
    pub sample: u32,
    /// Details: report packets whose total is at least this.
    pub threshold: Duration,
    /// Details: per-stage CPU, device, queue, hash, length.
    pub meta: bool,
    /// Echo request and reply share a key (kernel_icmp_rtt).
    pub icmp_rtt: bool,
    /// Packets in flight the engine can track (LRU size).
    pub max_packets: u32,
    /// Distinct flows per interval.
    pub max_flows: u32,
    /// A packet not seen for this long is given up as evicted.
    pub packet_timeout: Duration,
    /// Rate limit and ring wakeups (details).
    pub kit: KitConfig,
}

impl LatencyOptions {
    /// Summary defaults: totals and top flows, every packet, 10240 in flight.
    pub fn summary(paths: Vec<Path>, filter: Filter, interfaces: Interfaces) -> Self {
        Self {
            mode: Mode::Summary,
            paths,
            filter,
            interfaces,
            stage_latency: false,
            flows: true,
            sample: 1,
            threshold: Duration::ZERO,
            meta: false,
            icmp_rtt: false,
            max_packets: 10240,
            max_flows: 10240,
            packet_timeout: Duration::from_secs(2),
            kit: KitConfig::default(),
        }
    }

    /// Details defaults: every stage attached, per-stage metadata, events at or above
    /// `threshold`.
    pub fn details(
        paths: Vec<Path>,
        filter: Filter,
        interfaces: Interfaces,
        threshold: Duration,
    ) -> Self {
        Self {
            mode: Mode::Details,
            flows: false,
            threshold,
            meta: true,
            ..Self::summary(paths, filter, interfaces)
        }
    }

    /// The paths as the engine runs them on `env`: without the function stages the kernel
    /// cannot hook, and for total-only summaries only the opening and last stages.
    pub fn effective_paths(&self, env: &KernelEnv) -> Vec<Path> {
        let all = choose(&points_of(&self.paths), env);
        let hooked = |h: Hook| hook_chosen(&all, h);
        self.paths
            .iter()
            .map(|p| {
                let p = p.on_kernel(hooked);
                if self.mode == Mode::Summary && !self.stage_latency {
                    p.ends()
                } else {
                    p
                }
            })
            .collect()
    }

    /// Rejects options no engine can run.
    pub fn validate(&self) -> Result<()> {
        if self.paths.is_empty() || self.paths.len() > MAX_PATHS {
            return Err(Error::usage(format!(
                "between 1 and {MAX_PATHS} paths can be tracked at once"
            )));
        }
        if self.sample == 0 {
            return Err(Error::usage("--sample must be at least 1"));
        }
        if self.max_packets == 0 {
            return Err(Error::usage("--max-packets must be at least 1"));
        }
        for p in &self.paths {
            for s in &p.stages {
                if s.role != Role::Any && self.interfaces.of(s.role).is_empty() {
                    return Err(Error::usage(format!(
                        "stage {} of {} needs {}",
                        s.name,
                        p.name,
                        match s.role {
                            Role::Phy => "--phy-interface",
                            Role::Internal => "--internal-interface",
                            _ => "--vm-interface",
                        }
                    )));
                }
            }
        }
        let all: Vec<&(u32, String)> = [Role::Phy, Role::Internal, Role::Vm]
            .iter()
            .flat_map(|r| self.interfaces.of(*r))
            .collect();
        for (i, d) in all.iter().enumerate() {
            if all[..i].iter().any(|e| e.0 == d.0) {
                return Err(Error::usage(format!(
                    "interface {} is given twice (one device has one role: phy, internal or vm)",
                    d.1
                )));
            }
        }
        for role in [Role::Phy, Role::Internal, Role::Vm] {
            if self.interfaces.of(role).len() > ROLE_DEVS {
                return Err(Error::usage(format!(
                    "at most {ROLE_DEVS} interfaces per role (got {})",
                    self.interfaces.of(role).len()
                )));
            }
        }
        Ok(())
    }

    /// The plan for these options on `env`, and the paths it runs.
    pub fn plan(&self, env: &KernelEnv) -> (Plan, Vec<Path>) {
        let paths = self.effective_paths(env);
        (choose(&points_of(&paths), env), paths)
    }

    /// `--list-probes` text: each stage and what hooks it on this kernel, then the plan.
    pub fn render_plan(&self, env: &KernelEnv) -> String {
        let (plan, paths) = self.plan(env);
        let mut out = String::new();
        for (p, asked) in paths.iter().zip(&self.paths) {
            out.push_str(&format!("path {}:\n", p.name));
            for s in &p.stages {
                let hooked: Vec<String> = s
                    .hook
                    .points()
                    .iter()
                    .filter_map(|pt| plan.chosen_for(pt.name).map(|c| c.label()))
                    .collect();
                let devs: Vec<&str> = self
                    .interfaces
                    .of(s.role)
                    .iter()
                    .map(|(_, n)| n.as_str())
                    .collect();
                out.push_str(&format!(
                    "  {:<22} {:<10} {:<14} {}{}\n",
                    s.name,
                    format!("{:?}", s.role).to_lowercase(),
                    if devs.is_empty() {
                        "-".to_string()
                    } else {
                        devs.join(",")
                    },
                    if hooked.is_empty() {
                        "NOT AVAILABLE".to_string()
                    } else {
                        hooked.join(" | ")
                    },
                    if s.last { "  (last)" } else { "" }
                ));
            }
            let missing: Vec<&str> = asked
                .stages
                .iter()
                .filter(|s| s.hook.optional() && !p.stages.iter().any(|t| t.name == s.name))
                .filter(|s| s.hook.is_ovs() || self.mode == Mode::Details || self.stage_latency)
                .map(|s| s.name)
                .collect();
            if !missing.is_empty() {
                out.push_str(&format!(
                    "(stages of {} not on this kernel: no fentry/kprobe, or the module is not loaded: {})\n",
                    p.name,
                    missing.join(", ")
                ));
            }
        }
        out.push_str(&plan.render());
        out
    }
}

/// A loaded and attached latency set.
pub struct LatencyProbe {
    set: LoadedSet<LatencySkel<'static>>,
    opts: LatencyOptions,
    paths: Vec<Path>,
    ifnames: IfNames,
    clock: WallClock,
    ring: Option<EventRing<types::lat_event>>,
    counters: types::lat_counters,
    evicted_reported: u64,
    hists: HistLayout,
}

/// Can net_dev_xmit know its packets by skb, from net_dev_queue, without a start_xmit program?
/// So when no path has a start_xmit stage and each net_dev_xmit stage follows a net_dev_queue
/// stage on its device's role (the total-path summary of a transmit path).
fn xmit_by_skb(paths: &[Path]) -> bool {
    paths.iter().all(|p| {
        !p.stages.iter().any(|s| s.hook == Hook::StartXmit)
            && p.stages
                .iter()
                .filter(|s| s.hook == Hook::DevXmit)
                .all(|x| {
                    p.stages
                        .iter()
                        .any(|q| q.hook == Hook::DevQueue && q.role == x.role)
                })
    })
}

/// The hooks `paths` need (a net_dev_xmit stage needs start_xmit for its packets' identity,
/// unless net_dev_queue leaves it by skb).
fn hooks_of(paths: &[Path]) -> Vec<Hook> {
    let by_skb = xmit_by_skb(paths);
    let mut hooks: Vec<Hook> = Vec::new();
    for p in paths {
        for s in &p.stages {
            let h = if s.hook == Hook::Consumed {
                Hook::TunRead
            } else {
                s.hook
            };
            if !hooks.contains(&h) {
                hooks.push(h);
            }
            if s.hook == Hook::DevXmit && !by_skb && !hooks.contains(&Hook::StartXmit) {
                hooks.push(Hook::StartXmit);
            }
            // start_xmit without a net_dev_xmit stage: net_dev_xmit still sees the drops.
            if s.hook == Hook::StartXmit && !hooks.contains(&Hook::DevXmit) {
                hooks.push(Hook::DevXmit);
            }
        }
    }
    hooks
}

/// The probe points of the hooks `paths` use.
fn points_of(paths: &[Path]) -> Vec<ProbePoint> {
    hooks_of(paths).into_iter().flat_map(Hook::points).collect()
}

fn choose(points: &[ProbePoint], env: &KernelEnv) -> Plan {
    Plan::choose(points, &env.features, &env.btf, env.tracefs.as_deref())
}

/// Did the plan choose a candidate for any point of `hook`?
fn hook_chosen(plan: &Plan, hook: Hook) -> bool {
    hook.points()
        .iter()
        .any(|pt| plan.chosen_for(pt.name).is_some())
}

fn flow_key_eq(a: &types::lat_flow_key, b: &types::lat_flow_key) -> bool {
    let (x, y) = (&a.flow, &b.flow);
    a.path == b.path
        && x.saddr == y.saddr
        && x.daddr == y.daddr
        && x.sport == y.sport
        && x.dport == y.dport
        && x.ethertype == y.ethertype
        && x.l3 == y.l3
        && x.l4proto == y.l4proto
}

fn add_flow_value(into: &mut types::lat_flow_value, v: &types::lat_flow_value) {
    if into.count == 0 || v.min_ns < into.min_ns {
        into.min_ns = v.min_ns;
    }
    into.max_ns = into.max_ns.max(v.max_ns);
    into.count += v.count;
    into.sum_ns += v.sum_ns;
    for (a, b) in into.slots.iter_mut().zip(v.slots) {
        *a += b;
    }
}

fn sum_counters(per_cpu: &[Vec<u8>]) -> types::lat_counters {
    let mut t = types::lat_counters::default();
    for bytes in per_cpu {
        let mut c = types::lat_counters::default();
        if plain::copy_from_bytes(&mut c, bytes).is_ok() {
            t.started += c.started;
            t.completed += c.completed;
            t.dropped += c.dropped;
            t.stale_hint += c.stale_hint;
        }
    }
    t
}

impl LatencyProbe {
    /// Chooses the plan, writes the stage table and filters, loads and attaches.
    pub fn open(opts: LatencyOptions, env: &KernelEnv) -> Result<Self> {
        opts.validate()?;
        let (plan, paths) = opts.plan(env);
        let has_ovs = |ps: &[Path]| ps.iter().any(|p| p.stages.iter().any(|s| s.hook.is_ovs()));
        if has_ovs(&opts.paths) && !has_ovs(&paths) {
            return Err(Error::missing(
                "--ovs: no Open vSwitch datapath function to hook (load the module: modprobe openvswitch; the stages need fentry or kprobes)",
            ));
        }
        for p in &paths {
            for s in &p.stages {
                if !hook_chosen(&plan, s.hook) {
                    let points = s.hook.points();
                    return Err(Error::missing(format!(
                        "this kernel offers no tracepoint for stage {} of {} ({}); run with --list-probes for details",
                        s.name,
                        p.name,
                        points.iter().map(|pt| pt.name).collect::<Vec<_>>().join(", ")
                    )));
                }
            }
        }
        let tun_read = if paths
            .iter()
            .any(|p| p.stages.iter().any(|s| s.hook == Hook::TunRead))
        {
            crate::symbol::kallsyms_range("tun_do_read").ok()
        } else {
            None
        };
        let details = opts.mode == Mode::Details;
        let hists = HistLayout::new(&paths, !details && opts.stage_latency);
        let spec = LoadSpec {
            set: LatencySet::NAME,
            plan,
            stacks: StackPolicy::off(),
            kit: &opts.kit,
        };
        let set = kit::load(LatencySkelBuilder::default(), spec, |open, kit_cfg| {
            let ro = crate::kit_rodata!(open, kit_cfg);
            crate::write_np_filter!(ro.np_filter, &opts.filter);
            ro.np_filter.ifindex = 0;
            let cfg = &mut ro.lat_cfg;
            write_stage_table(cfg, &paths, &opts.interfaces)?;
            for role in [Role::Phy, Role::Internal, Role::Vm] {
                for (slot, (idx, _)) in cfg.role_ifindex[role.bpf()]
                    .iter_mut()
                    .zip(opts.interfaces.of(role))
                {
                    *slot = *idx;
                }
            }
            if let Some((start, end)) = tun_read {
                cfg.tun_read_start = start;
                cfg.tun_read_end = end;
            }
            cfg.threshold_ns = u64::try_from(opts.threshold.as_nanos()).unwrap_or(u64::MAX);
            cfg.sample = opts.sample;
            cfg.hists = u8::from(!details);
            cfg.stage_hists = u8::from(!details && opts.stage_latency);
            cfg.flows = u8::from(!details && opts.flows);
            cfg.events = u8::from(details);
            cfg.meta = u8::from(opts.meta);
            cfg.icmp_rtt = u8::from(opts.icmp_rtt);
            cfg.xmit_by_skb = u8::from(xmit_by_skb(&paths));
            cfg.nstages = hists.n as u32;
            cfg.hist_pairs = hists.pairs as u32;
            cfg.hist_cells = hists.cells as u32;
            open.maps
                .hists
                .set_max_entries(2 * hists.cells as u32)
                .context(|| "size hists".into())?;
            open.maps
                .xmit_ids
                .set_max_entries(if cfg.xmit_by_skb != 0 {
                    opts.max_packets
                } else {
                    1
                })
                .context(|| "size xmit_ids".into())?;
            open.maps
                .packets
                .set_max_entries(opts.max_packets)
                .context(|| "size packets".into())?;
            open.maps
                .flows
                .set_max_entries(if cfg.flows != 0 {
                    opts.max_flows.max(1)
                } else {
                    1
                })
                .context(|| "size flows".into())?;
            if !details {
                open.maps
                    .events
                    .set_max_entries(4096)
                    .context(|| "size events".into())?;
            }
            Ok(())
        })?;
        let ring = if details {
            Some(EventRing::new(&set.skel.maps.events)?)
        } else {
            None
        };
        Ok(Self {
            set,
            ifnames: IfNames::new(opts.filter.netns.as_ref()),
            opts,
            paths,
            clock: WallClock::new(),
            ring,
            counters: types::lat_counters::default(),
            evicted_reported: 0,
            hists,
        })
    }

    /// The plan in use.
    pub fn chosen_plan(&self) -> &Plan {
        &self.set.plan
    }

    /// The paths as the engine runs them.
    pub fn paths(&self) -> &[Path] {
        &self.paths
    }

    /// The options the set was opened with.
    pub fn options(&self) -> &LatencyOptions {
        &self.opts
    }

    /// Ends the interval for the histograms: flips the generation, waits out programs still
    /// writing the old one, reads and zeroes its cells.
    fn harvest_hists(&mut self) -> Result<Vec<HistView>> {
        let Some(bss) = self.set.skel.maps.bss_data.as_deref_mut() else {
            return Ok(Vec::new());
        };
        let gen = bss.lat_gen;
        // SAFETY: bss is the mmapped .bss of the loaded object; a volatile store makes the
        // new generation visible to the programs before the grace period starts.
        unsafe { std::ptr::write_volatile(&mut bss.lat_gen, gen.wrapping_add(1)) };
        kit::grace_period();
        let layout = self.hists;
        let base = (gen & 1) as usize * layout.cells;
        let map = &self.set.skel.maps.hists;
        let cpus = libbpf_rs::num_possible_cpus().context(|| "count CPUs".into())?;
        let zeroes = vec![vec![0u8; map.value_size() as usize]; cpus];
        let mut out = Vec::new();
        for (pi, p) in self.paths.iter().enumerate() {
            let mut cells = vec![(layout.total(), "total", p.name)];
            if layout.n > 0 {
                for a in 0..p.stages.len() {
                    for b in a + 1..p.stages.len() {
                        cells.push((layout.pair(a, b), p.stages[a].name, p.stages[b].name));
                    }
                }
            }
            for (pair, from, to) in cells {
                let idx = u32::try_from(base + pi * layout.pairs + pair).unwrap_or(0);
                let key = idx.to_ne_bytes();
                let per_cpu = map
                    .lookup_percpu(&key, MapFlags::ANY)
                    .context(|| "read latency histogram".into())?
                    .unwrap_or_default();
                let mut slots = [0u64; 64];
                let (mut sum, mut max) = (0u64, 0u64);
                for bytes in &per_cpu {
                    let mut h = types::lat_hist::default();
                    if plain::copy_from_bytes(&mut h, bytes).is_ok() {
                        for (s, v) in slots.iter_mut().zip(h.slots) {
                            *s += v;
                        }
                        sum += h.sum_ns;
                        max = max.max(h.max_ns);
                    }
                }
                let hist = Log2Hist::from_slots(&slots).with_max(max);
                if hist.count() == 0 {
                    if from == "total" {
                        out.push(HistView::new(p.name, from, to, &hist, sum));
                    }
                    continue;
                }
                map.update_percpu(&key, &zeroes, MapFlags::ANY)
                    .context(|| "reset latency histogram".into())?;
                out.push(HistView::new(p.name, from, to, &hist, sum));
            }
        }
        Ok(out)
    }

    /// Removes packets not seen for the packet timeout; returns how many are still in flight.
    fn sweep(&mut self) -> u64 {
        let map = &self.set.skel.maps.packets;
        let now = crate::clock::monotonic_ns();
        let timeout = u64::try_from(self.opts.packet_timeout.as_nanos()).unwrap_or(u64::MAX);
        let mut active = 0;
        let keys: Vec<Vec<u8>> = map.keys().collect();
        for k in keys {
            let Ok(Some(v)) = map.lookup(&k, MapFlags::ANY) else {
                continue;
            };
            let mut s = types::lat_state::default();
            if plain::copy_from_bytes(&mut s, &v).is_err() {
                continue;
            }
            if now.saturating_sub(s.last_ns) > timeout {
                let _ = map.delete(&k);
            } else {
                active += 1;
            }
        }
        active
    }

    fn read_counters(&self) -> Result<types::lat_counters> {
        let zero = 0u32.to_ne_bytes();
        let per_cpu = self
            .set
            .skel
            .maps
            .counters
            .lookup_percpu(&zero, MapFlags::ANY)
            .context(|| "read latency counters".into())?
            .unwrap_or_default();
        Ok(sum_counters(&per_cpu))
    }

    /// The interval's packet counts. Evicted packets are what left the map without closing
    /// (timed out, reopened, pushed out by the LRU): started - completed - dropped - in flight,
    /// cumulative. `started` is read before the map is counted and the rest after, so the
    /// estimate can only lag behind the truth, never exceed it; the lag shows up next interval.
    fn packet_counts(&mut self) -> Result<PacketCounts> {
        let before = self.read_counters()?;
        let active = self.sweep();
        let now = self.read_counters()?;
        let prev = std::mem::replace(&mut self.counters, now);
        let d = |a: u64, b: u64| a.saturating_sub(b);
        let evicted_total = before
            .started
            .saturating_sub(now.completed + now.dropped + active);
        let evicted = d(evicted_total, self.evicted_reported);
        self.evicted_reported = self.evicted_reported.max(evicted_total);
        Ok(PacketCounts::new(
            d(now.started, prev.started),
            d(now.completed, prev.completed),
            d(now.dropped, prev.dropped),
            evicted,
            active,
            d(now.stale_hint, prev.stale_hint),
        ))
    }

    /// Adds the runs of one flow the CPUs were still counting on their own in the interval
    /// that just ended (its generation was flipped by the histogram harvest), and clears them.
    fn take_flow_runs(
        &mut self,
        into: &mut Vec<(types::lat_flow_key, types::lat_flow_value)>,
    ) -> Result<()> {
        let Some(bss) = self.set.skel.maps.bss_data.as_deref() else {
            return Ok(());
        };
        let old = (bss.lat_gen.wrapping_sub(1) & 1) as u32;
        let map = &self.set.skel.maps.flow_acc;
        let key = old.to_ne_bytes();
        let per_cpu = map
            .lookup_percpu(&key, MapFlags::ANY)
            .context(|| "read per-CPU flow runs".into())?
            .unwrap_or_default();
        let mut any = false;
        for bytes in &per_cpu {
            let mut a = types::lat_flow_acc::default();
            if plain::copy_from_bytes(&mut a, bytes).is_err() || a.valid == 0 {
                continue;
            }
            any = true;
            match into.iter_mut().find(|(k, _)| flow_key_eq(k, &a.key)) {
                Some((_, v)) => add_flow_value(v, &a.v),
                None => into.push((a.key, a.v)),
            }
        }
        if any {
            let zeroes = vec![vec![0u8; map.value_size() as usize]; per_cpu.len()];
            map.update_percpu(&key, &zeroes, MapFlags::ANY)
                .context(|| "clear per-CPU flow runs".into())?;
        }
        Ok(())
    }

    /// Reads and clears this interval's histograms and flows.
    pub fn drain_summary(&mut self) -> Result<LatencySummary> {
        let histograms = self.harvest_hists()?;
        let mut raw: Vec<(types::lat_flow_key, types::lat_flow_value)> =
            kit::drain(&self.set.skel.maps.flows)?;
        self.take_flow_runs(&mut raw)?;
        let mut flows: Vec<FlowLatency> = raw
            .iter()
            .filter(|(_, v)| v.count > 0)
            .map(|(k, v)| {
                let path = self
                    .paths
                    .get(k.path as usize)
                    .map(|p| p.name)
                    .unwrap_or("?");
                FlowLatency::decode(path, k, v)
            })
            .collect();
        flows.sort_by_key(|f| std::cmp::Reverse(f.count));
        let packets = self.packet_counts()?;
        Ok(LatencySummary {
            histograms,
            flows,
            packets,
            stats: self.set.stats.delta(),
        })
    }

    /// Waits up to `timeout` for details events and returns them decoded.
    pub fn poll_events(&mut self, timeout: Duration) -> Result<Vec<LatencyEvent>> {
        let raw = match &mut self.ring {
            Some(ring) => ring.poll(timeout)?,
            None => {
                std::thread::sleep(timeout);
                Vec::new()
            }
        };
        Ok(raw
            .iter()
            .map(|e| {
                let path = &self.paths[(e.s.path as usize).min(self.paths.len() - 1)];
                report::decode_event(e, path, &self.clock, &mut self.ifnames)
            })
            .collect())
    }

    /// BPF-side counters since the previous call.
    pub fn stats_delta(&mut self) -> BpfStats {
        self.set.stats.delta()
    }
}

/// Is the stage at `pos` a net_dev_queue opener whose later stages all run inside the same
/// transmit call, on one device? Its packets then never leave a per-CPU slot (when the device
/// has no qdisc; the engine checks that per packet).
fn sync_tx_opener(p: &Path, pos: usize, interfaces: &Interfaces) -> bool {
    let s = &p.stages[pos];
    s.hook == Hook::DevQueue
        && s.role != Role::Any
        && interfaces.of(s.role).len() == 1
        && p.stages[pos + 1..].iter().all(|t| {
            t.role == s.role
                && matches!(t.hook, Hook::QdiscDequeue | Hook::StartXmit | Hook::DevXmit)
        })
}

fn write_stage_table(
    cfg: &mut types::lat_config,
    paths: &[Path],
    interfaces: &Interfaces,
) -> Result<()> {
    use types::lat_stage_flags as F;
    for (pi, p) in paths.iter().enumerate() {
        if p.stages.len() > MAX_STAGES {
            return Err(Error::usage(format!(
                "path {} has more than {MAX_STAGES} stages",
                p.name
            )));
        }
        let openers = p.openers();
        let fallback = p.fallback_opener();
        for (pos, s) in p.stages.iter().enumerate() {
            let r = &mut cfg.stage[s.hook.bpf()][s.role.bpf()];
            if r.pos1 != 0 {
                return Err(Error::usage(format!(
                    "stage {} of {}: another stage already hooks {:?} on the {:?} device",
                    s.name, p.name, s.hook, s.role
                )));
            }
            let mut flags = 0u32;
            if openers[pos] {
                flags |= F::LAT_FIRST.0;
                if sync_tx_opener(p, pos, interfaces) {
                    flags |= F::LAT_SYNC_TX.0;
                }
            }
            if s.from_sock() {
                flags |= F::LAT_FROM_SOCK.0;
            }
            if s.ipv4() {
                flags |= F::LAT_IPV4.0;
            }
            if fallback == Some(pos) {
                flags |= F::LAT_OPEN_IF_NEW.0;
            }
            if s.last {
                flags |= F::LAT_LAST.0;
            }
            if s.from_data() {
                flags |= F::LAT_FROM_DATA.0;
            }
            if s.from_l2() {
                flags |= F::LAT_FROM_L2.0;
            }
            match s.echo {
                Some(EchoSide::Request) => flags |= F::LAT_ICMP_REQ.0,
                Some(EchoSide::Reply) => flags |= F::LAT_ICMP_REP.0,
                None => {}
            }
            r.path = pi as u8;
            r.pos1 = (pos + 1) as u8;
            r.flags = flags as u16;
        }
        // A device the path transmits on without a net_dev_xmit stage (the VM's tap):
        // its xmit errors still end the packet, as dropped.
        for s in &p.stages {
            if s.hook != Hook::StartXmit
                || p.stages
                    .iter()
                    .any(|t| t.hook == Hook::DevXmit && t.role == s.role)
            {
                continue;
            }
            let r = &mut cfg.stage[Hook::DevXmit.bpf()][s.role.bpf()];
            if r.pos1 == 0 {
                r.path = pi as u8;
                r.pos1 = u8::MAX;
                r.flags = F::LAT_DROP_ONLY.0 as u16;
            }
        }
    }
    Ok(())
}

impl IntervalSource for LatencyProbe {
    type Report = LatencySummary;

    fn drain(&mut self) -> Result<LatencySummary> {
        self.drain_summary()
    }

    fn plan(&self) -> &Plan {
        self.chosen_plan()
    }

    fn netns(&self) -> Option<&crate::kernel::netns::Netns> {
        self.opts.filter.netns.as_ref()
    }
}

impl EventSource for LatencyProbe {
    type Event = LatencyEvent;
    const KIND: &'static str = "latency";

    fn poll(&mut self, timeout: Duration) -> Result<Vec<LatencyEvent>> {
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
