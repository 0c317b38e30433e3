//! Per-event reports of one tap queue's virtqueues (`vhost_queue_correlation_*`): each
//! used+signal call with the queue's state before it, each call-eventfd signal (a guest
//! notification), each worker run with the state it found, each read and write of the tap
//! queue. The tap and queue filters run in the kernel, before any event is reserved.
use super::report::{Role, VqState};
use super::VhostProbe;
use crate::error::Result;
use crate::kernel::process::thread_group;
use crate::kit::{BpfStats, EventRing};
use crate::probe::Plan;
use crate::run::EventSource;
use crate::sets::flow::cstr;
use crate::skel::vhost::types;
use serde::Serialize;
use std::time::Duration;

// SAFETY: plain C struct generated from bpf/include/vhost.h; any bytes are valid.
unsafe impl plain::Plain for types::vhost_event {}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// `vhost_add_used_and_signal_n`: buffers marked used (the state before).
    Signal,
    /// The call eventfd signalled: a guest notification.
    Eventfd,
    /// `handle_rx` / `handle_tx`: the worker serves the queue (the state it found).
    Handle,
    /// `tun_recvmsg`: the worker takes a packet from the tap's ring.
    TapRead,
    /// `tun_sendmsg`: the worker hands the guest's packets to the tap.
    TapWrite,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 5] = [
        EventKind::Signal,
        EventKind::Eventfd,
        EventKind::Handle,
        EventKind::TapRead,
        EventKind::TapWrite,
    ];

    fn bpf(self) -> u32 {
        use types::vhost_event_kind as k;
        match self {
            EventKind::Signal => k::VHOST_EV_SIGNAL.0,
            EventKind::Eventfd => k::VHOST_EV_EVENTFD.0,
            EventKind::Handle => k::VHOST_EV_HANDLE.0,
            EventKind::TapRead => k::VHOST_EV_TAP_READ.0,
            EventKind::TapWrite => k::VHOST_EV_TAP_WRITE.0,
        }
    }

    fn of(v: u32) -> Option<EventKind> {
        Self::ALL.into_iter().find(|k| k.bpf() == v)
    }

    /// The kinds as the set's `.rodata` mask.
    pub(super) fn mask(kinds: &[EventKind]) -> u32 {
        kinds.iter().fold(0, |m, k| m | 1 << k.bpf())
    }

    /// Its name in text output.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Signal => "used+signal",
            EventKind::Eventfd => "eventfd",
            EventKind::Handle => "handle",
            EventKind::TapRead => "tap read",
            EventKind::TapWrite => "tap write",
        }
    }
}

/// One event.
#[derive(Debug, Clone, Serialize)]
pub struct VhostEvent {
    /// Monotonic time, ns.
    pub ts_ns: u64,
    /// What happened.
    pub kind: EventKind,
    /// CPU.
    pub cpu: u32,
    /// The worker thread.
    pub tid: u32,
    /// Its name.
    pub comm: String,
    /// The VM (the VMM's pid).
    pub vmm_pid: u32,
    /// The tap.
    pub device: String,
    /// The tap queue.
    pub queue: u16,
    /// The virtqueue (its address), for all but tap reads and writes.
    pub vq: Option<String>,
    /// RX (toward the guest) or TX, where a virtqueue is involved.
    pub role: Option<Role>,
    /// Signal: the buffers marked used.
    pub count: Option<u32>,
    /// Signal and handle: the virtqueue's state (before the buffers are added).
    pub state: Option<VqState>,
}

/// An [`EventSource`] of a vhost set opened with [`super::VhostOptions::events`].
pub struct VhostEvents {
    probe: VhostProbe,
    ring: EventRing<types::vhost_event>,
}

impl VhostEvents {
    /// Wraps `probe`; it must have been opened with event kinds.
    pub fn new(probe: VhostProbe) -> Result<Self> {
        let ring = EventRing::new(&probe.set.skel.maps.events)?;
        Ok(Self { probe, ring })
    }

    fn decode(&self, e: &types::vhost_event) -> Option<VhostEvent> {
        let kind = EventKind::of(e.kind)?;
        let comm = cstr(&e.comm);
        let vmm_pid = crate::sets::kvm::vhost_owner(&comm)
            .map(|tid| thread_group(tid).unwrap_or(tid))
            .unwrap_or(e.tgid);
        if self.probe.opts.vmm_pid.is_some_and(|p| p != vmm_pid) {
            return None;
        }
        let has_vq = e.vq != 0;
        Some(VhostEvent {
            ts_ns: e.ts_ns,
            kind,
            cpu: e.cpu,
            tid: e.tid,
            comm,
            vmm_pid,
            device: cstr(&e.ifname),
            queue: e.queue,
            vq: has_vq.then(|| format!("{:#x}", e.vq)),
            role: has_vq.then(|| Role::of(e.role)),
            count: (kind == EventKind::Signal).then_some(e.count),
            state: (e.has_state != 0).then(|| VqState::of(&e.state)),
        })
    }
}

impl EventSource for VhostEvents {
    type Event = VhostEvent;
    const KIND: &'static str = "vhost";

    fn poll(&mut self, timeout: Duration) -> Result<Vec<VhostEvent>> {
        let mut raw = self.ring.poll(timeout)?;
        raw.sort_by_key(|e| e.ts_ns);
        Ok(raw.iter().filter_map(|e| self.decode(e)).collect())
    }

    fn stats(&mut self) -> BpfStats {
        self.probe.set.stats.delta()
    }

    fn plan(&self) -> &Plan {
        self.probe.chosen_plan()
    }
}
