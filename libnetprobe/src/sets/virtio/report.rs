//! What the virtio set reports: poll kinds and callers, per-queue polls, per-IRQ counts and
//! histograms, counted stacks, and one interval of all of them.
use crate::hist::{HistSummary, Log2Hist};
use crate::kernel::interrupts::{VectorRole, VirtioVector};
use crate::kit::BpfStats;
use crate::skel::virtio::types;
use serde::Serialize;
use std::collections::BTreeMap;

/// Which NAPI of the device polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PollKind {
    /// `virtnet_poll`: a receive queue.
    Rx,
    /// `virtnet_poll_tx`: a send queue's completions.
    Tx,
}

impl PollKind {
    pub(super) fn of(raw: u32) -> Self {
        if raw == types::virtio_kind::VIRTIO_TX.0 {
            PollKind::Tx
        } else {
            PollKind::Rx
        }
    }

    /// `rx` or `tx`.
    pub fn as_str(self) -> &'static str {
        match self {
            PollKind::Rx => "rx",
            PollKind::Tx => "tx",
        }
    }
}

/// Who ran a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Caller {
    /// The NET_RX softirq on hard-IRQ exit.
    Irq,
    /// The NET_RX softirq in ksoftirqd.
    Ksoftirqd,
    /// The NET_RX softirq run by `local_bh_enable`.
    BhEnable,
    /// A socket's busy poll (`SO_BUSY_POLL`, epoll busy poll).
    BusyPoll,
    /// A threaded-NAPI kthread.
    Threaded,
    /// `net_rx_action`, its trigger deeper than the stack walk.
    Softirq,
    /// None of these in the stack.
    Other,
}

impl Caller {
    /// Every caller, in report order.
    pub const ALL: [Caller; 7] = [
        Caller::Irq,
        Caller::Ksoftirqd,
        Caller::BhEnable,
        Caller::BusyPoll,
        Caller::Threaded,
        Caller::Softirq,
        Caller::Other,
    ];

    pub(super) fn of(raw: u32) -> Self {
        use types::virtio_caller as C;
        match C(raw) {
            C::VIRTIO_BY_IRQ => Caller::Irq,
            C::VIRTIO_BY_KSOFTIRQD => Caller::Ksoftirqd,
            C::VIRTIO_BY_BH_ENABLE => Caller::BhEnable,
            C::VIRTIO_BY_BUSY_POLL => Caller::BusyPoll,
            C::VIRTIO_BY_THREADED => Caller::Threaded,
            C::VIRTIO_BY_SOFTIRQ => Caller::Softirq,
            _ => Caller::Other,
        }
    }

    pub(super) fn raw(self) -> u32 {
        use types::virtio_caller as C;
        match self {
            Caller::Irq => C::VIRTIO_BY_IRQ.0,
            Caller::Ksoftirqd => C::VIRTIO_BY_KSOFTIRQD.0,
            Caller::BhEnable => C::VIRTIO_BY_BH_ENABLE.0,
            Caller::BusyPoll => C::VIRTIO_BY_BUSY_POLL.0,
            Caller::Threaded => C::VIRTIO_BY_THREADED.0,
            Caller::Softirq => C::VIRTIO_BY_SOFTIRQ.0,
            Caller::Other => C::VIRTIO_BY_OTHER.0,
        }
    }

    /// Its JSON name (`busy_poll`).
    pub fn as_str(self) -> &'static str {
        match self {
            Caller::Irq => "irq",
            Caller::Ksoftirqd => "ksoftirqd",
            Caller::BhEnable => "bh_enable",
            Caller::BusyPoll => "busy_poll",
            Caller::Threaded => "threaded",
            Caller::Softirq => "softirq",
            Caller::Other => "other",
        }
    }

    /// The index of the first frame (`function+0xoff`) that names this caller.
    pub(super) fn named_at(self, frames: &[String]) -> Option<usize> {
        frames.iter().position(|frame| {
            let function = frame.split(['+', ' ']).next().unwrap_or_default();
            self.functions().contains(&function)
        })
    }

    /// Kernel functions whose presence in a poll's stack names this caller.
    pub(super) fn functions(self) -> &'static [&'static str] {
        match self {
            Caller::Irq => &["__irq_exit_rcu", "irq_exit_rcu", "irq_exit"],
            Caller::Ksoftirqd => &["run_ksoftirqd"],
            Caller::BhEnable => &["__local_bh_enable_ip", "do_softirq"],
            Caller::BusyPoll => &[
                "napi_busy_loop",
                "__napi_busy_loop",
                "napi_busy_loop_rcu",
                "busy_poll_stop",
            ],
            Caller::Threaded => &["napi_threaded_poll", "napi_threaded_poll_loop"],
            Caller::Softirq => &["net_rx_action"],
            Caller::Other => &[],
        }
    }
}

/// A receive queue's own counters at its last poll in the interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RqCounters {
    /// The virtqueue's index.
    pub vq_index: u32,
    /// `rq->stats.packets` (device lifetime).
    pub packets: u64,
    /// `rq->stats.bytes`.
    pub bytes: u64,
    /// `rq->stats.drops`.
    pub drops: u64,
    /// `rq->stats.kicks`: refills that notified the device.
    pub kicks: u64,
    /// Packets since the previous interval's last poll (`None` in the first interval).
    pub packets_delta: Option<u64>,
    /// `rq->calls` (rx callbacks, u16 wrapping) since the previous interval's last poll.
    pub calls_delta: Option<u64>,
    /// DIM (adaptive interrupt moderation) is on.
    pub dim_enabled: bool,
}

/// Polls of one queue and kind in one interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueuePolls {
    /// Queue pair (`None`: unknown, virtio_net has no BTF on this kernel).
    pub queue: Option<u32>,
    /// rx or tx.
    pub kind: PollKind,
    /// Polls.
    pub polls: u64,
    /// Packets (rx) or completions (tx) processed.
    pub work: u64,
    /// Sum of the budgets given.
    pub budget: u64,
    /// Polls that found nothing.
    pub zero_work: u64,
    /// Polls that used their whole budget.
    pub full_budget: u64,
    /// work / polls.
    pub work_per_poll: f64,
    /// work / budget, percent.
    pub efficiency_pct: f64,
    /// Polls by who ran them (`irq`, `ksoftirqd`, `bh_enable`, `busy_poll`, ...).
    pub by: BTreeMap<&'static str, u64>,
    /// The receive queue's own counters (rx, where virtio_net has BTF).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rq: Option<RqCounters>,
}

impl QueuePolls {
    /// Polls run by `caller`.
    pub fn by(&self, caller: Caller) -> u64 {
        self.by.get(caller.as_str()).copied().unwrap_or(0)
    }
}

/// One IRQ in one interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IrqReport {
    /// IRQ number.
    pub irq: u32,
    /// Its `/proc/interrupts` name.
    pub name: String,
    /// What it serves.
    pub role: VectorRole,
    /// Queue pair of an rx/tx vector.
    pub queue: Option<u32>,
    /// Handler runs.
    pub count: u64,
    /// Of those, IRQ_HANDLED (or IRQ_WAKE_THREAD).
    pub handled: u64,
    /// Of those, IRQ_NONE (`vring_interrupt` found no used buffer).
    pub none: u64,
    /// Runs per CPU (CPUs with none left out).
    pub cpus: BTreeMap<u32, u64>,
    /// Handler time, entry to exit, ns.
    pub handler: HistSummary,
    /// Time since the IRQ's previous run, ns.
    pub inter_arrival: HistSummary,
    /// The handler is `vring_interrupt` (`None`: the classic tracepoint cannot tell).
    pub vring_interrupt: Option<bool>,
    /// The virtqueue index of `dev_id` (tp_btf with `vring_interrupt`).
    pub vq_index: Option<u32>,
}

/// Polls counted by stack.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PollStack {
    /// Queue pair (`None`: unknown).
    pub queue: Option<u32>,
    /// rx or tx.
    pub kind: PollKind,
    /// Who ran the polls.
    pub caller: Caller,
    /// Polls with this stack.
    pub count: u64,
    /// Frames, innermost first (`__napi_poll+0x2c`, ...); empty when the walk failed.
    pub frames: Vec<String>,
}

/// One interval of the device.
#[derive(Debug, Clone, Serialize)]
pub struct VirtioReport {
    /// The interface.
    pub ifname: String,
    /// The virtio device behind it (`virtio2`).
    pub virtio: String,
    /// Per queue and kind (when polls are counted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queues: Option<Vec<QueuePolls>>,
    /// Per IRQ (when IRQs are watched).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub irqs: Option<Vec<IrqReport>>,
    /// Counted stacks, most polls first (when stacks are counted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stacks: Option<Vec<PollStack>>,
    /// BPF-side counters (flattened).
    #[serde(flatten)]
    pub stats: BpfStats,
}

pub(super) fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// One IRQ's interval from its per-CPU counts.
pub(super) fn irq_report(
    v: &VirtioVector,
    per_cpu: &[types::virtio_irq_stats],
    btf: bool,
) -> IrqReport {
    let mut handler = [0u64; types::virtio_sizes::VIRTIO_HIST_SLOTS.0 as usize];
    let mut gap = handler;
    let (mut count, mut handled, mut none, mut handler_ns, mut gap_ns) = (0, 0, 0, 0, 0);
    let mut cpus = BTreeMap::new();
    let (mut vring, mut vq_index) = (None, None);
    for (cpu, s) in per_cpu.iter().enumerate() {
        if s.count > 0 {
            cpus.insert(cpu as u32, s.count);
        }
        count += s.count;
        handled += s.handled;
        none += s.none;
        handler_ns += s.handler_ns;
        gap_ns += s.gap_ns;
        for i in 0..handler.len() {
            handler[i] += s.handler_hist[i];
            gap[i] += s.gap_hist[i];
        }
        if s.count > 0 && btf {
            vring = Some(vring.unwrap_or(false) || s.is_vring != 0);
            if s.has_vq != 0 {
                vq_index = Some(s.vq_index);
            }
        }
    }
    IrqReport {
        irq: v.irq,
        name: v.name.clone(),
        role: v.role,
        queue: v.queue,
        count,
        handled,
        none,
        cpus,
        handler: HistSummary::new("ns", &Log2Hist::from_slots(&handler), handler_ns),
        inter_arrival: HistSummary::new("ns", &Log2Hist::from_slots(&gap), gap_ns),
        vring_interrupt: vring,
        vq_index,
    }
}
