//! The virtio probe set: a virtio-net device's NAPI polls (per queue: work, budget, who
//! polled, counted stacks) and its virtqueue interrupts (count, CPUs, IRQ_NONE vs handled,
//! handler time, inter-arrival), from tracepoints (no kprobes).
//!
//! - `napi_poll`: `napi->poll` is `virtnet_poll` (rx) or `virtnet_poll_tx` (tx); the queue is
//!   the virtqueue's index / 2, reached with `container_of` from the napi into
//!   `struct receive_queue`/`send_queue` (CO-RE, where virtio_net has BTF: its module has it
//!   from 5.11); rx polls also read the queue's own counters and `calls`. Who polled is the
//!   first frame of a short stack inside a kallsyms range: softirq on IRQ exit, ksoftirqd,
//!   `local_bh_enable`, busy poll, threaded NAPI.
//! - `irq_handler_entry`/`exit`: only the device's vectors, found in `/proc/interrupts` by the
//!   virtio device behind the interface (its PCI address from `ethtool -i`, then the
//!   `virtioN` under it in sysfs) or given by number. With `tp_btf` the action's handler and
//!   `dev_id` also name the virtqueue (`vring_interrupt`'s).
mod report;

use report::{irq_report, round1};
pub use report::{Caller, IrqReport, PollKind, PollStack, QueuePolls, RqCounters, VirtioReport};

use crate::error::{Error, Result};
use crate::kernel::interrupts::{self, VectorRole, VirtioVector};
use crate::kernel::netns::Netns;
use crate::kernel::KernelEnv;
use crate::kit::{self, KitConfig, LoadSpec, LoadedSet, ProbeSet, StackPolicy};
use crate::probe::{Plan, ProbePoint};
use crate::run::IntervalSource;
use crate::skel::virtio::{types, VirtioSkel, VirtioSkelBuilder};
use libbpf_rs::MapCore;
use std::collections::BTreeMap;
use std::num::NonZeroU32;

// SAFETY: plain C structs generated from bpf/include/virtio.h and np_types.h; any bytes are
// valid.
unsafe impl plain::Plain for types::virtio_poll_stats {}
// SAFETY: as above.
unsafe impl plain::Plain for types::virtio_rq_state {}
// SAFETY: as above.
unsafe impl plain::Plain for types::virtio_irq_stats {}
// SAFETY: as above.
unsafe impl plain::Plain for types::virtio_stack_key {}
// SAFETY: as above.
unsafe impl plain::Plain for types::np_kit_config {}

/// Queue pairs counted per device.
pub const MAX_QUEUES: u32 = types::virtio_sizes::VIRTIO_MAX_QUEUES.0;
/// IRQs watched at once.
pub const MAX_IRQS: u32 = types::virtio_sizes::VIRTIO_MAX_IRQS.0;
const KINDS: u32 = types::virtio_kind::VIRTIO_KINDS.0;
/// Poll slots per generation: every queue and one for polls of an unknown queue.
const POLL_SLOTS: u32 = (MAX_QUEUES + 1) * KINDS;
const NO_QUEUE: u16 = types::virtio_sizes::VIRTIO_NO_QUEUE.0 as u16;
/// Stack frames kept per poll stack by default: enough to reach the interrupt entry
/// (`__napi_poll`, `net_rx_action`, `handle_softirqs`, `__irq_exit_rcu`, `common_interrupt`,
/// `asm_common_interrupt`), few enough that what the interrupt hit does not split the counts.
pub const DEFAULT_STACK_DEPTH: u32 = 6;
/// Frames walked beyond `--depth` for the tracing machinery on top (the program,
/// `bpf_trace_run`, a classic tracepoint's `perf_trace_*`), which symbolization removes.
const TRACING_FRAMES: u32 = 4;

/// Frames the BPF side walks to tell who polled; a stack keeps at least these.
const CALLER_FRAMES: u32 = types::virtio_sizes::VIRTIO_STACK_DEPTH.0;

/// The set as plans and `netprobe_check` see it.
pub struct VirtioSet;

const POINT_POLL: &str = "napi poll";
const POINT_IRQ_ENTRY: &str = "irq entry";
const POINT_IRQ_EXIT: &str = "irq exit";
const POINT_SOFTIRQ_ENTRY: &str = "softirq entry";
const POINT_SOFTIRQ_EXIT: &str = "softirq exit";
/// Points that tell who polled without a stack walk.
const SOFTIRQ_POINTS: [&str; 2] = [POINT_SOFTIRQ_ENTRY, POINT_SOFTIRQ_EXIT];

impl ProbeSet for VirtioSet {
    const NAME: &'static str = "virtio";
    const ABOUT: &'static str =
        "virtio-net NAPI polls and virtqueue IRQs: work, who polled, IRQ_NONE, handler time";

    fn probe_points() -> Vec<ProbePoint> {
        let tp = |name, btf, tracepoint, classic| {
            ProbePoint::tracepoint(name, btf, tracepoint, classic).required()
        };
        vec![
            tp(
                POINT_POLL,
                "virtio_napi_btf",
                "napi/napi_poll",
                "virtio_napi_tp",
            ),
            tp(
                POINT_IRQ_ENTRY,
                "virtio_irq_entry_btf",
                "irq/irq_handler_entry",
                "virtio_irq_entry_tp",
            ),
            tp(
                POINT_IRQ_EXIT,
                "virtio_irq_exit_btf",
                "irq/irq_handler_exit",
                "virtio_irq_exit_tp",
            ),
            ProbePoint::tracepoint(
                POINT_SOFTIRQ_ENTRY,
                "virtio_si_entry_btf",
                "irq/softirq_entry",
                "virtio_si_entry_tp",
            ),
            ProbePoint::tracepoint(
                POINT_SOFTIRQ_EXIT,
                "virtio_si_exit_btf",
                "irq/softirq_exit",
                "virtio_si_exit_tp",
            ),
        ]
    }
}

/// Which parts of the set to run.
#[derive(Debug, Clone, Default)]
pub struct VirtioOptions {
    /// The virtio-net interface.
    pub device: String,
    /// The namespace it is in (`None`: the tool's).
    pub netns: Option<Netns>,
    /// Only this queue pair.
    pub queue: Option<u32>,
    /// Count polls per queue, kind and caller.
    pub polls: bool,
    /// Count polls per stack of this many frames (`None`: no stacks).
    pub stack_depth: Option<u32>,
    /// Watch IRQs: `Some(empty)` finds the device's vectors, `Some(list)` watches these IRQs.
    pub irqs: Option<Vec<u32>>,
    /// Kit switches.
    pub kit: KitConfig,
}

impl VirtioOptions {
    /// Poll counts of `device`.
    pub fn polls(device: &str) -> Self {
        Self {
            device: device.into(),
            polls: true,
            ..Self::default()
        }
    }

    /// Interrupt counts of `device`'s vectors (found from the device).
    pub fn irqs(device: &str) -> Self {
        Self {
            device: device.into(),
            irqs: Some(Vec::new()),
            ..Self::default()
        }
    }

    /// Poll stacks of `device`, `depth` frames each.
    pub fn stacks(device: &str, depth: u32) -> Self {
        Self {
            device: device.into(),
            stack_depth: Some(depth),
            ..Self::default()
        }
    }
}

impl VirtioOptions {
    /// Checks the values that need no kernel: queue, stack depth, number of IRQs.
    pub fn validate(&self) -> Result<()> {
        if let Some(q) = self.queue.filter(|&q| q >= MAX_QUEUES) {
            return Err(Error::usage(format!(
                "--queue {q}: at most {MAX_QUEUES} queue pairs are counted"
            )));
        }
        if self.stack_depth.is_some_and(|d| !(3..=64).contains(&d)) {
            return Err(Error::usage("--depth: give 3 to 64 frames"));
        }
        if let Some(irqs) = self.irqs.as_ref().filter(|i| i.len() > MAX_IRQS as usize) {
            return Err(Error::usage(format!(
                "--irqs: {} IRQs, at most {MAX_IRQS} are watched at once",
                irqs.len()
            )));
        }
        Ok(())
    }
}

/// The virtio device (`virtio2`) behind PCI (or other bus) address `bus_info`.
fn virtio_device_of(bus_info: &str) -> Option<String> {
    if bus_info.starts_with("virtio") {
        return Some(bus_info.to_string());
    }
    let dir = std::fs::read_dir(format!("/sys/bus/pci/devices/{bus_info}")).ok()?;
    dir.filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| {
            n.strip_prefix("virtio")
                .is_some_and(|r| r.parse::<u32>().is_ok())
        })
}

/// The vectors to watch: `given` IRQs (named from /proc/interrupts where they are the
/// device's), else every vector of `virtio` there.
fn watched_vectors(virtio: &str, given: &[u32]) -> Result<Vec<VirtioVector>> {
    let lines = interrupts::read()?;
    let found = interrupts::virtio_vectors(&lines, virtio);
    if given.is_empty() {
        if found.is_empty() {
            return Err(Error::missing(format!(
                "no IRQ of {virtio} in /proc/interrupts; give them with --irqs"
            )));
        }
        return Ok(found);
    }
    given
        .iter()
        .map(|&irq| {
            if let Some(v) = found.iter().find(|v| v.irq == irq) {
                return Ok(v.clone());
            }
            let line = lines.iter().find(|l| l.irq == irq).ok_or_else(|| {
                Error::usage(format!("--irqs {irq}: no such IRQ in /proc/interrupts"))
            })?;
            Ok(VirtioVector {
                irq,
                name: line.name.clone(),
                role: VectorRole::Other,
                queue: None,
            })
        })
        .collect()
}

/// `[start, end)` of each named kernel function that kallsyms has, read once.
fn kallsyms_ranges(names: &[&str]) -> Result<Vec<(String, u64, u64)>> {
    Ok(crate::symbol::kallsyms_ranges(names)?
        .into_iter()
        .zip(names)
        .filter_map(|(r, n)| r.map(|(s, e)| (n.to_string(), s, e)))
        .collect())
}

/// A loaded and attached virtio probe set.
pub struct VirtioProbe {
    set: LoadedSet<VirtioSkel<'static>>,
    opts: VirtioOptions,
    virtio: String,
    vectors: Vec<VirtioVector>,
    rq_last: BTreeMap<u32, (u64, u32)>,
}

impl VirtioProbe {
    /// Checks that the device is a virtio-net interface, loads and attaches the set.
    pub fn open(opts: VirtioOptions, env: &KernelEnv) -> Result<Self> {
        opts.validate()?;
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
        let info = ns.driver_info(&opts.device)?;
        let info = match info {
            Some(i) if i.driver == "virtio_net" => i,
            other => {
                return Err(Error::usage(format!(
                    "--device {}: not a virtio-net interface (driver {}); give a VM's NIC as \
                     the guest sees it (e.g. eth0 inside the guest)",
                    opts.device,
                    other.map_or_else(|| "unknown".to_string(), |i| i.driver)
                )))
            }
        };
        let virtio = virtio_device_of(&info.bus_info).ok_or_else(|| {
            Error::missing(format!(
                "--device {}: no virtio device found behind bus address '{}'",
                opts.device, info.bus_info
            ))
        })?;
        let vectors = match &opts.irqs {
            Some(given) => watched_vectors(&virtio, given)?,
            None => Vec::new(),
        };
        if vectors.len() > MAX_IRQS as usize {
            return Err(Error::usage(format!(
                "{} IRQs: at most {MAX_IRQS} are watched at once; give fewer with --irqs",
                vectors.len()
            )));
        }
        let wants_polls = opts.polls || opts.stack_depth.is_some();
        let points: Vec<ProbePoint> = VirtioSet::probe_points()
            .into_iter()
            .filter(|p| {
                if p.name == POINT_POLL || SOFTIRQ_POINTS.contains(&p.name) {
                    wants_polls
                } else {
                    opts.irqs.is_some()
                }
            })
            .collect();
        let plan = Plan::choose(&points, &env.features, &env.btf, env.tracefs.as_deref());
        let softirq_seen = SOFTIRQ_POINTS.iter().all(|p| plan.chosen_for(p).is_some());
        let fns: Vec<&str> = Caller::ALL
            .iter()
            .flat_map(|c| c.functions().iter().copied())
            .chain([
                "virtnet_poll",
                "virtnet_poll_tx",
                "vring_interrupt",
                "skb_recv_done",
            ])
            .collect();
        let ranges = kallsyms_ranges(&fns)?;
        let addr = |name: &str| {
            ranges
                .iter()
                .find(|(n, _, _)| n == name)
                .map_or(0, |(_, s, _)| *s)
        };
        if wants_polls && addr("virtnet_poll") == 0 {
            return Err(Error::missing(
                "virtnet_poll is not in /proc/kallsyms: is the virtio_net driver loaded?",
            ));
        }
        let filter = crate::filter::Filter {
            netns: Some(ns),
            interface: Some((ifindex, opts.device.clone())),
            ..Default::default()
        };
        let stacks = match opts.stack_depth {
            Some(_) => StackPolicy::every_event()
                .with_entries(NonZeroU32::new(4096).unwrap_or(NonZeroU32::MIN)),
            None => StackPolicy::off(),
        };
        let spec = LoadSpec {
            set: VirtioSet::NAME,
            plan,
            stacks,
            kit: &opts.kit,
        };
        let set = kit::load(VirtioSkelBuilder::default(), spec, |open, kit_cfg| {
            if let Some(depth) = opts.stack_depth {
                open.maps
                    .stack_traces
                    .set_value_size((depth.max(CALLER_FRAMES) + TRACING_FRAMES) * 8)
                    .map_err(|source| Error::Bpf {
                        context: "size stack_traces".into(),
                        source,
                    })?;
            }
            let ro = crate::kit_rodata!(open, kit_cfg);
            crate::write_np_filter!(ro.np_filter, &filter);
            let cfg = &mut ro.virtio_cfg;
            let callers = Caller::ALL.iter().flat_map(|c| {
                c.functions().iter().filter_map(|f| {
                    ranges
                        .iter()
                        .find(|(n, _, _)| n == f)
                        .map(|(_, s, e)| (*s, *e, c.raw()))
                })
            });
            for (slot, (start, end, caller)) in cfg.callers.iter_mut().zip(callers) {
                slot.start = start;
                slot.end = end;
                slot.caller = caller;
            }
            cfg.poll_rx = addr("virtnet_poll");
            cfg.poll_tx = addr("virtnet_poll_tx");
            cfg.vring_interrupt = addr("vring_interrupt");
            cfg.skb_recv_done = addr("skb_recv_done");
            if let Some(q) = opts.queue {
                cfg.has_queue = 1;
                cfg.queue = q;
            }
            cfg.polls = u8::from(opts.polls);
            cfg.stacks = u8::from(opts.stack_depth.is_some());
            cfg.softirq_seen = u8::from(softirq_seen);
            Ok(())
        })?;
        for (slot, v) in vectors.iter().enumerate() {
            let info = types::virtio_irq_info { slot: slot as u32 };
            // SAFETY: virtio_irq_info is a plain C struct.
            let value = unsafe { plain::as_bytes(&info) };
            set.skel
                .maps
                .irq_info
                .update(&v.irq.to_ne_bytes(), value, libbpf_rs::MapFlags::ANY)
                .map_err(|source| Error::Bpf {
                    context: format!("watch IRQ {}", v.irq),
                    source,
                })?;
        }
        Ok(Self {
            set,
            opts,
            virtio,
            vectors,
            rq_last: BTreeMap::new(),
        })
    }

    /// The plan in use.
    pub fn chosen_plan(&self) -> &Plan {
        &self.set.plan
    }

    /// The virtio device behind the interface (`virtio2`).
    pub fn virtio_device(&self) -> &str {
        &self.virtio
    }

    /// The IRQs watched.
    pub fn vectors(&self) -> &[VirtioVector] {
        &self.vectors
    }

    /// Ends the interval: what was counted since the previous call.
    pub fn drain_report(&mut self) -> Result<VirtioReport> {
        let bss = self
            .set
            .skel
            .maps
            .bss_data
            .as_deref_mut()
            .ok_or_else(|| Error::MissingMap(".bss".into()))?;
        let gen = (kit::flip_generation(&mut bss.virtio_gen) & 1) as u32;
        let queues = if self.opts.polls {
            Some(self.take_polls(gen)?)
        } else {
            None
        };
        let irqs = if self.opts.irqs.is_some() {
            Some(self.take_irqs(gen)?)
        } else {
            None
        };
        let stats = self.set.stats.delta();
        let stacks = if self.opts.stack_depth.is_some() {
            Some(self.take_stacks(stats.stack_errors)?)
        } else {
            None
        };
        Ok(VirtioReport {
            ifname: self.opts.device.clone(),
            virtio: self.virtio.clone(),
            queues,
            irqs,
            stacks,
            stats,
        })
    }

    fn take_polls(&mut self, gen: u32) -> Result<Vec<QueuePolls>> {
        let base = gen * POLL_SLOTS;
        let raw: Vec<(u32, Vec<types::virtio_poll_stats>)> =
            kit::take_percpu(&self.set.skel.maps.polls, base..base + POLL_SLOTS)?;
        let mut out = Vec::new();
        for (idx, per_cpu) in raw {
            let slot = idx - base;
            let (queue, kind) = (slot / KINDS, PollKind::of(slot % KINDS));
            let mut q = QueuePolls {
                // The slot past the last queue holds the polls of unknown queues (no BTF).
                queue: (queue < MAX_QUEUES).then_some(queue),
                kind,
                polls: 0,
                work: 0,
                budget: 0,
                zero_work: 0,
                full_budget: 0,
                work_per_poll: 0.0,
                efficiency_pct: 0.0,
                by: BTreeMap::new(),
                rq: None,
            };
            for s in &per_cpu {
                for c in Caller::ALL {
                    let n = s.by[c.raw() as usize];
                    if n > 0 {
                        *q.by.entry(c.as_str()).or_default() += n;
                    }
                }
                q.work += s.work;
                q.budget += s.budget;
                q.zero_work += s.zero_work;
                q.full_budget += s.full_budget;
            }
            q.polls = q.by.values().sum();
            if q.polls > 0 {
                q.work_per_poll = round1(q.work as f64 / q.polls as f64);
            }
            if q.budget > 0 {
                q.efficiency_pct = round1(q.work as f64 * 100.0 / q.budget as f64);
            }
            if kind == PollKind::Rx && q.queue.is_some() {
                q.rq = self.rq_counters(queue)?;
            }
            out.push(q);
        }
        Ok(out)
    }

    fn rq_counters(&mut self, queue: u32) -> Result<Option<RqCounters>> {
        let Some(bytes) = self
            .set
            .skel
            .maps
            .rq_state
            .lookup(&queue.to_ne_bytes(), libbpf_rs::MapFlags::ANY)
            .map_err(|source| Error::Bpf {
                context: "read rq_state".into(),
                source,
            })?
        else {
            return Ok(None);
        };
        let mut s = types::virtio_rq_state::default();
        if plain::copy_from_bytes(&mut s, &bytes).is_err() || s.valid == 0 || s.has_stats == 0 {
            return Ok(None);
        }
        let before = self.rq_last.insert(queue, (s.packets, s.calls));
        Ok(Some(RqCounters {
            vq_index: s.vq_index,
            packets: s.packets,
            bytes: s.bytes,
            drops: s.drops,
            kicks: s.kicks,
            packets_delta: before.map(|(p, _)| s.packets.wrapping_sub(p)),
            calls_delta: before
                .filter(|_| s.has_calls != 0)
                .map(|(_, c)| u64::from((s.calls as u16).wrapping_sub(c as u16))),
            dim_enabled: s.dim_enabled != 0,
        }))
    }

    fn take_irqs(&mut self, gen: u32) -> Result<Vec<IrqReport>> {
        let base = gen * MAX_IRQS;
        let n = self.vectors.len() as u32;
        let raw: Vec<(u32, Vec<types::virtio_irq_stats>)> =
            kit::take_percpu(&self.set.skel.maps.irq_stats, base..base + n)?;
        let mut by_slot: BTreeMap<u32, Vec<types::virtio_irq_stats>> =
            raw.into_iter().map(|(k, v)| (k - base, v)).collect();
        let btf = self
            .set
            .plan
            .chosen()
            .any(|c| c.program == "virtio_irq_entry_btf");
        Ok(self
            .vectors
            .iter()
            .enumerate()
            .map(|(slot, v)| {
                let per_cpu = by_slot.remove(&(slot as u32)).unwrap_or_default();
                irq_report(v, &per_cpu, btf)
            })
            .collect())
    }

    fn take_stacks(&mut self, stack_errors: u64) -> Result<Vec<PollStack>> {
        let raw: Vec<(types::virtio_stack_key, u64)> = kit::drain(&self.set.skel.maps.poll_stacks)?;
        let mut merged: BTreeMap<(Option<u32>, PollKind, Caller, Vec<String>), u64> =
            BTreeMap::new();
        let depth = self.opts.stack_depth.unwrap_or(DEFAULT_STACK_DEPTH) as usize;
        let set = &mut self.set;
        for (k, count) in raw {
            let mut frames = set.stacks.frames(&mut set.symbols, k.stack_id);
            let caller = Caller::of(u32::from(k.caller));
            // A stack shows at least the frame that named its caller.
            let named = caller.named_at(&frames).map_or(0, |i| i + 1);
            frames.truncate(depth.max(named));
            let queue = (k.queue != NO_QUEUE).then_some(u32::from(k.queue));
            *merged
                .entry((queue, PollKind::of(u32::from(k.kind)), caller, frames))
                .or_default() += count;
        }
        set.stacks.end_interval(stack_errors);
        let mut out: Vec<PollStack> = merged
            .into_iter()
            .map(|((queue, kind, caller, frames), count)| PollStack {
                queue,
                kind,
                caller,
                count,
                frames,
            })
            .collect();
        out.sort_by(|a, b| b.count.cmp(&a.count).then(a.kind.cmp(&b.kind)));
        Ok(out)
    }
}

impl IntervalSource for VirtioProbe {
    type Report = VirtioReport;

    fn drain(&mut self) -> Result<VirtioReport> {
        self.drain_report()
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
    use super::*;

    #[test]
    fn every_caller_round_trips_through_its_bpf_value() {
        for c in Caller::ALL {
            assert_eq!(Caller::of(c.raw()), c);
        }
        assert!(Caller::ALL.len() as u32 <= types::virtio_caller::VIRTIO_CALLERS.0);
    }

    #[test]
    fn caller_ranges_fit_the_bpf_table() {
        let n: usize = Caller::ALL.iter().map(|c| c.functions().len()).sum();
        assert!(n <= types::virtio_sizes::VIRTIO_CALLER_RANGES.0 as usize);
    }
}
