//! The tun probe set: the tx rings of a tun/tap device's queues (toward its reader: a VMM,
//! vhost-net), read at every xmit through CO-RE, without kprobes.
//!
//! At `net_dev_start_xmit` on the device (else `tun_net_xmit` by fentry or kprobe) the set
//! reads `netdev_priv(dev)` as a `tun_struct`, checks `tun->dev == dev`, and reads
//! `tfiles[skb->queue_mapping]->tx_ring`: producer, consumer head and tail, size, batch, and
//! whether `queue[producer]` is taken (the ring is full: `tun_net_xmit` drops the packet
//! with `FULL_RING`). At the end of each interval a program run by user space reads every
//! queue's ring once more: the packets read are the fill before, plus those produced, minus the
//! fill now, with no program per read. Where the kernel has no BTF for tun (its module before
//! 5.11) there is no ring to read: reads are then `consume_skb` in the tun read functions.
//! Drops are `kfree_skb` of the device's packets, by reason (names from the kernel's BTF).
//!
//! A macvtap's rings (`tap_dev.taps[queue]->ring`) fill in its rx handler, which no tracepoint
//! sees: the set reads them at `netif_receive_skb` on the lower device for frames to the
//! macvtap's MAC (the lower device's `macvlan_port` leads to the macvtap), else by fentry or
//! kprobe on `tap_handle_frame`.
mod report;

pub use report::{QueueReport, ReasonCount, RingView, TunEvent, TunReport};

use report::{pct, status_name};

use crate::clock::WallClock;
use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::kernel::netns::Netns;
use crate::kernel::{DropReasons, KernelEnv};
use crate::kit::{self, BpfStats, EventRing, KitConfig, LoadSpec, LoadedSet, ProbeSet};
use crate::probe::{Candidate, Plan, ProbeKind, ProbePoint};
use crate::run::{EventSource, IntervalSource};
use crate::sets::flow::cstr;
use crate::skel::tun::{types, TunSkel, TunSkelBuilder};
use libbpf_rs::MapCore;
use std::collections::BTreeMap;
use std::time::Duration;

// SAFETY: plain C structs generated from bpf/include/tun.h and np_types.h; any bytes are valid.
unsafe impl plain::Plain for types::tun_event {}
// SAFETY: as above.
unsafe impl plain::Plain for types::tun_queue_stats {}
// SAFETY: as above.
unsafe impl plain::Plain for types::np_kit_config {}
// SAFETY: as above.
unsafe impl plain::Plain for types::tun_sample {}

/// Queues a tun device can have (`MAX_TAP_QUEUES`).
pub const MAX_QUEUES: u32 = types::tun_sizes::TUN_MAX_QUEUES.0;
/// Without events, an xmit in this many per CPU reads the ring's fill (its consumer indices,
/// on the reader's cache line); every xmit reads whether the ring is full.
pub const FILL_SAMPLE: u32 = types::tun_sizes::TUN_FILL_SAMPLE.0;
/// Packets read between two ring samples: the fill `before`, plus the packets `produced`,
/// minus the fill `now` and what earlier intervals came out below zero by (`owed`). Returns
/// the reads and what is still owed.
fn reads_between(before: u32, produced: u64, now: u32, owed: u64) -> (u64, u64) {
    let gained = u64::from(before) + produced;
    let lost = u64::from(now) + owed;
    (gained.saturating_sub(lost), lost.saturating_sub(gained))
}

/// Kernel functions whose `consume_skb` is a reader's read (the first found ones are used).
const READ_FUNCTIONS: [&str; 4] = [
    "tun_do_read",
    "tap_do_read",
    "tun_recvmsg",
    "tun_chr_read_iter",
];

/// The plan's point for packets into a macvtap (in place of `tap xmit`).
const MACVTAP_POINT: &str = "macvtap receive";

/// What kind of device the rings belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeviceKind {
    /// A tun/tap device: `tun_struct.tfiles[queue]->tx_ring`, filled at its xmit.
    Tun,
    /// A macvtap: `tap_dev.taps[queue]->ring`, filled by its rx handler.
    Macvtap,
}

impl DeviceKind {
    /// The kind of `device` from its driver; a macvlan that is no macvtap, or any other
    /// driver, is refused. `sysfs`: the device's sysfs directory, where the tool's own
    /// namespace shows it (a macvtap has `macvtap/`).
    fn of(device: &str, driver: Option<&str>, sysfs: Option<&std::path::Path>) -> Result<Self> {
        match driver {
            Some("tun") => Ok(DeviceKind::Tun),
            Some("macvlan") if sysfs.is_none_or(|d| d.join("macvtap").exists()) => {
                Ok(DeviceKind::Macvtap)
            }
            Some("macvlan") => Err(Error::usage(format!(
                "--device {device}: a macvlan, not a macvtap: it has no ring toward a reader"
            ))),
            other => Err(Error::usage(format!(
                "--device {device}: not a tun/tap or macvtap device (driver {}); give the tap of a VM (e.g. vnet0, macvtap0)",
                other.unwrap_or("unknown")
            ))),
        }
    }

    /// The struct whose BTF the ring read needs, and a function of its module.
    fn btf_struct(self) -> (&'static str, &'static str) {
        match self {
            DeviceKind::Tun => ("tun_struct", "tun_net_xmit"),
            DeviceKind::Macvtap => ("macvtap_dev", "macvtap_newlink"),
        }
    }
}

/// The set as plans and `netprobe_check` see it.
pub struct TunSet;

impl ProbeSet for TunSet {
    const NAME: &'static str = "tun";
    const ABOUT: &'static str = "tx rings of tun/tap queues: fill, full, reads, drops";

    fn probe_points() -> Vec<ProbePoint> {
        let c = |kind, target, program| Candidate {
            kind,
            target,
            program,
        };
        vec![
            ProbePoint {
                name: "tap xmit",
                required: true,
                candidates: vec![
                    c(ProbeKind::TpBtf, "net_dev_start_xmit", "tun_xmit_btf"),
                    c(
                        ProbeKind::Tracepoint,
                        "net/net_dev_start_xmit",
                        "tun_xmit_tp",
                    ),
                    c(ProbeKind::Fentry, "tun_net_xmit", "tun_xmit_fe"),
                    c(ProbeKind::Kprobe, "tun_net_xmit", "tun_xmit_kp"),
                ],
                ..ProbePoint::default()
            },
            ProbePoint {
                name: MACVTAP_POINT,
                required: false,
                candidates: vec![
                    c(ProbeKind::TpBtf, "netif_receive_skb", "tun_rx_btf"),
                    c(ProbeKind::Tracepoint, "net/netif_receive_skb", "tun_rx_tp"),
                    c(ProbeKind::Fentry, "tap_handle_frame", "tun_tap_fe"),
                    c(ProbeKind::Kprobe, "tap_handle_frame", "tun_tap_kp"),
                ],
                ..ProbePoint::default()
            },
            ProbePoint {
                name: "reader read",
                required: false,
                candidates: vec![
                    c(ProbeKind::TpBtf, "consume_skb", "tun_consume_btf"),
                    c(ProbeKind::Tracepoint, "skb/consume_skb", "tun_consume_tp"),
                ],
                ..ProbePoint::default()
            },
            ProbePoint {
                name: "drop",
                required: false,
                candidates: vec![
                    c(ProbeKind::TpBtf, "kfree_skb", "tun_drop_btf"),
                    c(ProbeKind::Tracepoint, "skb/kfree_skb", "tun_drop_tp"),
                ],
                ..ProbePoint::default()
            },
        ]
    }
}

/// What to watch and how to report it.
#[derive(Debug, Clone)]
pub struct TunOptions {
    /// The tun/tap device (name, as given).
    pub device: String,
    /// The namespace the device is in (`None`: the tool's).
    pub netns: Option<Netns>,
    /// Flow filters for events (the ring counts are the queue's, whatever the packets).
    pub filter: Filter,
    /// Only this queue.
    pub queue: Option<u32>,
    /// Report xmits as events (else only per-queue interval counts).
    pub events: bool,
    /// Events for every xmit, not only those that find the ring full.
    pub all: bool,
    /// Kit switches (event rate limit).
    pub kit: KitConfig,
}

impl TunOptions {
    /// Per-queue interval summaries of `device`.
    pub fn summary(device: &str, netns: Option<Netns>) -> Self {
        Self {
            device: device.into(),
            netns,
            filter: Filter::default(),
            queue: None,
            events: false,
            all: false,
            kit: KitConfig::default(),
        }
    }

    /// Events for the xmits into `device` that find the ring full (`all`: every xmit).
    pub fn events(device: &str, netns: Option<Netns>, filter: Filter, all: bool) -> Self {
        Self {
            filter,
            events: true,
            all,
            ..Self::summary(device, netns)
        }
    }
}

/// A loaded and attached tun probe set.
pub struct TunProbe {
    set: LoadedSet<TunSkel<'static>>,
    opts: TunOptions,
    ring: Option<EventRing<types::tun_event>>,
    reasons: DropReasons,
    clock: WallClock,
    /// Reads come from ring samples (else from consume_skb).
    ring_readable: bool,
    /// Each queue's fill (and ring size) at the last sample.
    fill: BTreeMap<u32, (u32, u32)>,
    /// Per queue, reads an interval came out below zero by (a packet produced between the
    /// ring sample and the flip counts in one interval's xmits and the next one's fill): the
    /// next intervals pay it back, so the reads add up over a run.
    owed: BTreeMap<u32, u64>,
}

impl TunProbe {
    /// Checks that the device is a tun/tap device, loads and attaches the set.
    pub fn open(opts: TunOptions, env: &KernelEnv) -> Result<Self> {
        let ns = match &opts.netns {
            Some(ns) => ns.clone(),
            None => Netns::current()?,
        };
        let ifindex = ns.find_ifindex(&opts.device)?.ok_or_else(|| {
            Error::usage(format!(
                "--device {}: no such interface in network namespace {} (see 'ip link')",
                opts.device, ns.label
            ))
        })?;
        let own_ns = opts.netns.is_none();
        let sysfs = std::path::Path::new("/sys/class/net").join(&opts.device);
        let kind = DeviceKind::of(
            &opts.device,
            ns.driver(&opts.device)?.as_deref(),
            own_ns.then_some(sysfs.as_path()),
        )?;
        if let Some(q) = opts.queue.filter(|&q| q >= MAX_QUEUES) {
            return Err(Error::usage(format!(
                "--queue {q}: a tun device has at most {MAX_QUEUES} queues"
            )));
        }
        let (ring_struct, module_fn) = kind.btf_struct();
        let ring_readable = env.btf.has_struct(ring_struct, module_fn);
        if opts.events && !opts.all && !ring_readable {
            return Err(Error::missing(format!(
                "this kernel has no BTF for {ring_struct} (a module has its own only from 5.11): \
                 the ring cannot be read, so no packet can be seen finding it full; use -i for \
                 the per-queue counts and FULL_RING drops, or --all for every packet"
            )));
        }
        let mut filter = opts.filter.clone();
        filter.netns = Some(ns);
        filter.interface = Some((ifindex, opts.device.clone()));
        let vmlinux_tun = kind == DeviceKind::Tun && env.btf.vmlinux_has_struct("tun_struct");
        let points: Vec<ProbePoint> = TunSet::probe_points()
            .into_iter()
            .filter(|p| !(ring_readable && p.name == "reader read"))
            .filter_map(|mut p| match (kind, p.name) {
                (DeviceKind::Macvtap, "tap xmit") | (DeviceKind::Tun, MACVTAP_POINT) => None,
                (DeviceKind::Macvtap, MACVTAP_POINT) => {
                    p.required = true;
                    // Without macvlan's BTF (its module before 5.11) the lower device's
                    // receive cannot lead to the macvtap: only its rx handler can.
                    if !env.btf.has_struct("macvlan_port", "macvlan_handle_frame") {
                        p.candidates
                            .retain(|c| matches!(c.kind, ProbeKind::Fentry | ProbeKind::Kprobe));
                    }
                    Some(p)
                }
                _ => Some(p),
            })
            .collect();
        let macvlan_rx_handler = match kind {
            DeviceKind::Macvtap => crate::symbol::kallsyms_ranges(&["macvlan_handle_frame"])?
                .into_iter()
                .flatten()
                .map(|(start, _)| start)
                .next()
                .unwrap_or(0),
            DeviceKind::Tun => 0,
        };
        let plan = Plan::choose(&points, &env.features, &env.btf, env.tracefs.as_deref());
        let read_fns: Vec<(u64, u64)> = crate::symbol::kallsyms_ranges(&READ_FUNCTIONS)?
            .into_iter()
            .flatten()
            .collect();
        let spec = LoadSpec {
            set: TunSet::NAME,
            plan,
            stacks: kit::StackPolicy::off(),
            kit: &opts.kit,
        };
        let set = kit::load(TunSkelBuilder::default(), spec, |open, kit_cfg| {
            let ro = crate::kit_rodata!(open, kit_cfg);
            crate::write_np_filter!(ro.np_filter, &filter);
            let cfg = &mut ro.tun_cfg;
            for (slot, (start, end)) in cfg.read_fn.iter_mut().zip(&read_fns) {
                slot.start = *start;
                slot.end = *end;
            }
            if let Some(q) = opts.queue {
                cfg.has_queue = 1;
                cfg.queue = q;
            }
            cfg.events = u8::from(opts.events);
            cfg.all = u8::from(opts.all);
            cfg.vmlinux_tun = u8::from(vmlinux_tun);
            cfg.macvtap = u8::from(kind == DeviceKind::Macvtap);
            cfg.macvlan_rx_handler = macvlan_rx_handler;
            // Not an attach point: run at the end of each interval.
            open.progs.tun_sample.set_autoload(ring_readable);
            Ok(())
        })?;
        let ring = opts
            .events
            .then(|| EventRing::new(&set.skel.maps.events))
            .transpose()?;
        Ok(Self {
            set,
            opts,
            ring,
            reasons: env.reasons.clone(),
            clock: WallClock::new(),
            ring_readable,
            fill: BTreeMap::new(),
            owed: BTreeMap::new(),
        })
    }

    /// The plan in use.
    pub fn chosen_plan(&self) -> &Plan {
        &self.set.plan
    }

    /// Ends the interval: the per-queue counts since the previous call.
    pub fn drain_queues(&mut self) -> Result<TunReport> {
        // The rings first, then the flip: a packet produced between the two counts in this
        // interval's xmits and not in its fill, and the next interval makes up for it. The
        // other order left the grace period in between, and a burst in it was counted in the
        // next interval's xmits and in this fill, twice where this interval had none.
        let now = if self.ring_readable {
            self.sample_rings()?
        } else {
            BTreeMap::new()
        };
        let bss = self
            .set
            .skel
            .maps
            .bss_data
            .as_deref_mut()
            .ok_or_else(|| Error::MissingMap(".bss".into()))?;
        let gen = kit::flip_generation(&mut bss.tun_gen);
        let base = (gen & 1) as u32 * MAX_QUEUES;
        let raw: Vec<(u32, Vec<types::tun_queue_stats>)> =
            kit::take_percpu(&self.set.skel.maps.queues, base..base + MAX_QUEUES)?;
        let mut stats: BTreeMap<u32, Vec<types::tun_queue_stats>> =
            raw.into_iter().map(|(k, v)| (k - base, v)).collect();
        // A queue only read from in this interval has no counts but a changed fill.
        for (q, (fill, _)) in &now {
            let before = self.fill.get(q).map(|f| f.0);
            if !stats.contains_key(q) && before.is_some_and(|b| b != *fill) {
                stats.insert(*q, Vec::new());
            }
        }
        let mut queues = Vec::with_capacity(stats.len());
        for (&q, per_cpu) in &stats {
            let mut r = self.queue_report(q, per_cpu);
            if self.ring_readable {
                self.reads_from_fill(&mut r, per_cpu, now.get(&q).copied());
            }
            queues.push(r);
        }
        for (q, f) in now {
            self.fill.insert(q, f);
        }
        Ok(TunReport {
            ifname: self.opts.device.clone(),
            queues,
            stats: self.set.stats.delta(),
        })
    }

    /// Every queue's ring now (the `tun_sample` program): queue -> (fill, size).
    fn sample_rings(&mut self) -> Result<BTreeMap<u32, (u32, u32)>> {
        self.set
            .skel
            .progs
            .tun_sample
            .test_run(libbpf_rs::ProgramInput::default())
            .map_err(|source| Error::Bpf {
                context: "run tun_sample".into(),
                source,
            })?;
        let map = &self.set.skel.maps.samples;
        let mut out = BTreeMap::new();
        let mut queues = MAX_QUEUES;
        for q in 0..MAX_QUEUES {
            if q >= queues {
                break;
            }
            let key = q.to_ne_bytes();
            let Some(bytes) = map
                .lookup(&key, libbpf_rs::MapFlags::ANY)
                .map_err(|source| Error::Bpf {
                    context: "read tun samples".into(),
                    source,
                })?
            else {
                continue;
            };
            let mut sample = types::tun_sample::default();
            if plain::copy_from_bytes(&mut sample, &bytes).is_err() {
                continue;
            }
            if q == 0 && sample.ring.numqueues > 0 {
                // Entries past the device's queues are left over from when it had more.
                queues = u32::from(sample.ring.numqueues);
            }
            if sample.valid == 0 || self.opts.queue.is_some_and(|only| only != q) {
                continue;
            }
            out.insert(q, (sample.ring.pending, sample.ring.size));
        }
        Ok(out)
    }

    /// Packets read in the interval: the fill before (the last sample, else what the first
    /// xmit found), plus the packets produced (xmits that did not find the ring full), minus the
    /// fill now.
    fn reads_from_fill(
        &mut self,
        r: &mut QueueReport,
        per_cpu: &[types::tun_queue_stats],
        now: Option<(u32, u32)>,
    ) {
        let Some((fill_now, size)) = now else {
            return;
        };
        if r.size == 0 {
            r.size = size;
        }
        let first = per_cpu
            .iter()
            .filter(|s| s.first_ts != 0)
            .min_by_key(|s| s.first_ts)
            .map(|s| s.first_pending);
        let Some(before) = self.fill.get(&r.queue).map(|f| f.0).or(first) else {
            return;
        };
        let produced = (r.xmit - r.unknown_ring).saturating_sub(r.full);
        let owed = self.owed.remove(&r.queue).unwrap_or(0);
        let (read, still_owed) = reads_between(before, produced, fill_now, owed);
        r.read = read;
        if still_owed > 0 {
            self.owed.insert(r.queue, still_owed);
        }
    }

    fn queue_report(&self, queue: u32, per_cpu: &[types::tun_queue_stats]) -> QueueReport {
        let mut r = QueueReport {
            queue,
            ring_status: "ok",
            ..QueueReport::default()
        };
        let (mut sum_pending, mut fill_samples) = (0u64, 0u64);
        let mut slots = [0u64; types::tun_sizes::TUN_HIST_SLOTS.0 as usize];
        let mut reasons: BTreeMap<u32, u64> = BTreeMap::new();
        for s in per_cpu {
            for (acc, &n) in slots.iter_mut().zip(&s.pending_hist) {
                *acc += u64::from(n);
            }
            r.xmit += s.xmit;
            r.full += s.full;
            r.read += s.read;
            r.drops += s.drops;
            r.unknown_ring += s.unknown_ring;
            sum_pending += s.sum_pending;
            fill_samples += s.fill_samples;
            r.max_pending = r.max_pending.max(s.max_pending);
            r.max_unavailable = r.max_unavailable.max(s.max_unavailable);
            r.size = r.size.max(s.size);
            if s.unknown_ring > 0 {
                r.ring_status = status_name(s.last_status as u8);
            }
            for (&reason, &n) in s.drop_reason.iter().zip(&s.drop_count) {
                if n > 0 {
                    *reasons.entry(reason).or_default() += u64::from(n);
                }
            }
        }
        r.mean_pending = if fill_samples > 0 {
            (sum_pending as f64 / fill_samples as f64 * 10.0).round() / 10.0
        } else {
            0.0
        };
        r.max_fill_pct = pct(f64::from(r.max_pending), r.size);
        r.pending_hist = (fill_samples > 0).then(|| {
            let hist = crate::hist::Log2Hist::from_slots(&slots).with_max(u64::from(r.max_pending));
            crate::hist::HistSummary::new("packets", &hist, sum_pending)
        });
        let named: u64 = reasons.values().sum();
        r.drop_reasons = reasons
            .into_iter()
            .map(|(reason, count)| ReasonCount {
                reason: self.reasons.name(reason),
                count,
            })
            .collect();
        if named < r.drops {
            r.drop_reasons.push(ReasonCount {
                reason: "other".into(),
                count: r.drops - named,
            });
        }
        r
    }

    /// Waits up to `timeout` and decodes the events that arrived.
    pub fn poll_events(&mut self, timeout: Duration) -> Result<Vec<TunEvent>> {
        let raw = match &mut self.ring {
            Some(ring) => ring.poll(timeout)?,
            None => {
                std::thread::sleep(timeout);
                Vec::new()
            }
        };
        Ok(raw.iter().map(|e| self.decode_event(e)).collect())
    }

    fn decode_event(&self, e: &types::tun_event) -> TunEvent {
        let r = &e.ring;
        let ring = RingView {
            producer: r.producer,
            consumer_head: r.consumer_head,
            consumer_tail: r.consumer_tail,
            size: r.size,
            batch: r.batch,
            pending: r.pending,
            unavailable: r.unavailable,
            full: r.full != 0,
            numqueues: r.numqueues,
        };
        TunEvent {
            time: self.clock.wall(e.ts_ns),
            timestamp_ns: e.ts_ns,
            ifname: self.opts.device.clone(),
            queue: e.queue,
            ring,
            utilisation_pct: pct(f64::from(r.pending), r.size),
            ring_status: status_name(r.status),
            cpu: e.cpu,
            pid: e.pid,
            comm: cstr(&e.comm),
            len: e.len,
            flow: crate::flow_view!(e.flow),
        }
    }

    /// The options the set was opened with.
    pub fn options(&self) -> &TunOptions {
        &self.opts
    }
}

impl IntervalSource for TunProbe {
    type Report = TunReport;

    fn drain(&mut self) -> Result<TunReport> {
        self.drain_queues()
    }

    fn plan(&self) -> &Plan {
        self.chosen_plan()
    }

    fn netns(&self) -> Option<&Netns> {
        self.opts.netns.as_ref()
    }
}

impl EventSource for TunProbe {
    type Event = TunEvent;
    const KIND: &'static str = "tun_xmit";

    fn poll(&mut self, timeout: Duration) -> Result<Vec<TunEvent>> {
        self.poll_events(timeout)
    }

    fn stats(&mut self) -> BpfStats {
        self.set.stats.delta()
    }

    fn plan(&self) -> &Plan {
        self.chosen_plan()
    }

    fn netns(&self) -> Option<&Netns> {
        self.opts.netns.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::reads_between;

    #[test]
    fn reads_add_up_when_a_burst_straddles_the_sample_and_the_flip() {
        // 5 packets produced after the sample, counted in the ending interval's xmits:
        // it reports 5 reads too many, the next one 5 too few (owed), the third pays back.
        assert_eq!(reads_between(0, 5, 0, 0), (5, 0));
        assert_eq!(reads_between(0, 10, 15, 0), (0, 5));
        assert_eq!(reads_between(15, 0, 0, 5), (10, 0));
        // Nothing owed: the plain difference.
        assert_eq!(reads_between(3, 7, 4, 0), (6, 0));
        // A debt larger than one interval's reads carries on.
        assert_eq!(reads_between(2, 1, 0, 5), (0, 2));
    }
}
