//! A tap's rings and the vhost-net virtqueues behind them, per tap queue and interval: the
//! tun set's view of each tx ring (xmits, full, fill, drops, reads) next to the vhost set's
//! view of the RX virtqueue that empties it (buffers used, guest notifications, avail entries
//! the guest posted, NO_INTERRUPT) and of the TX virtqueue that writes to it. Where a ring
//! fills, this tells whether vhost stopped reading (no used buffers), the guest stopped posting
//! buffers (`empty_calls`, `pending` 0) or the guest was not told (signals below calls).
//!
//! Not a probe set of its own: it composes [`TunProbe`] and [`VhostProbe`], joined by the tap
//! queue that the vhost set learns from the worker's reads and writes of the tap.
use crate::error::Result;
use crate::kernel::netns::Netns;
use crate::kernel::KernelEnv;
use crate::kit::BpfStats;
use crate::probe::Plan;
use crate::run::IntervalSource;
use crate::sets::tun::{QueueReport, TunOptions, TunProbe};
use crate::sets::vhost::{Role, VhostOptions, VhostProbe, VirtqueueEntry};
use serde::Serialize;
use std::collections::BTreeSet;

/// One tap queue over an interval.
#[derive(Debug, Clone, Serialize)]
pub struct TapVhostQueue {
    /// The tap queue.
    pub queue: u32,
    /// Its tx ring toward the VM (absent: nothing was sent to it).
    pub ring: Option<QueueReport>,
    /// The vhost RX virtqueue that reads this ring (absent: no buffer completed).
    pub rx: Option<VirtqueueEntry>,
    /// The vhost TX virtqueue that writes to this queue (absent: no buffer completed).
    pub tx: Option<VirtqueueEntry>,
}

/// One interval of a tap.
#[derive(Debug, Clone, Serialize)]
pub struct TapVhostReport {
    /// The tap.
    pub ifname: String,
    /// Queues with activity on either side, by index.
    pub queues: Vec<TapVhostQueue>,
    /// BPF-side counters of both sets (flattened).
    #[serde(flatten)]
    pub stats: BpfStats,
}

/// Which tap to watch.
#[derive(Debug, Clone)]
pub struct TapVhostOptions {
    /// The tap (vnet0).
    pub device: String,
    /// Its namespace, if not this one.
    pub netns: Option<Netns>,
    /// Only this queue.
    pub queue: Option<u32>,
    /// Log2 histograms of the ring fill and the virtqueues' depths.
    pub hists: bool,
}

/// The tun and vhost sets, loaded and attached for one tap.
pub struct TapVhostProbe {
    tun: TunProbe,
    vhost: VhostProbe,
    plan: Plan,
}

impl TapVhostProbe {
    /// Loads both sets; the vhost set's clear error where vhost-net is absent.
    pub fn open(opts: TapVhostOptions, env: &KernelEnv) -> Result<Self> {
        let vhost = VhostProbe::open(
            VhostOptions {
                device: Some(opts.device.clone()),
                queue: opts.queue.and_then(|q| u16::try_from(q).ok()),
                hists: opts.hists,
                ..VhostOptions::default()
            },
            env,
        )?;
        let mut tun_opts = TunOptions::summary(&opts.device, opts.netns);
        tun_opts.queue = opts.queue;
        let tun = TunProbe::open(tun_opts, env)?;
        let mut plan = tun.chosen_plan().clone();
        plan.choices
            .extend(vhost.chosen_plan().choices.iter().cloned());
        Ok(Self { tun, vhost, plan })
    }
}

/// Joins the two reports by tap queue.
fn join(ring: Vec<QueueReport>, vqs: Vec<VirtqueueEntry>) -> Vec<TapVhostQueue> {
    let queues: BTreeSet<u32> = ring
        .iter()
        .map(|q| q.queue)
        .chain(vqs.iter().filter_map(|v| v.queue.map(u32::from)))
        .collect();
    let vq = |q: u32, role: Role| {
        vqs.iter()
            .find(|v| v.queue.map(u32::from) == Some(q) && v.role == role)
            .cloned()
    };
    queues
        .into_iter()
        .map(|q| TapVhostQueue {
            queue: q,
            ring: ring.iter().find(|r| r.queue == q).cloned(),
            rx: vq(q, Role::Rx),
            tx: vq(q, Role::Tx),
        })
        .collect()
}

impl IntervalSource for TapVhostProbe {
    type Report = TapVhostReport;

    fn drain(&mut self) -> Result<TapVhostReport> {
        let ring = self.tun.drain_queues()?;
        let vqs = self.vhost.drain_queues()?;
        let mut stats = ring.stats;
        stats.add(vqs.stats);
        Ok(TapVhostReport {
            ifname: ring.ifname,
            queues: join(ring.queues, vqs.queues),
            stats,
        })
    }

    fn plan(&self) -> &Plan {
        &self.plan
    }

    fn netns(&self) -> Option<&Netns> {
        self.tun.options().netns.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sets::vhost::VqState;

    fn vq(queue: u16, role: Role, used: u64) -> VirtqueueEntry {
        VirtqueueEntry {
            vmm_pid: 1,
            worker_tid: 2,
            worker_comm: "vhost-1".into(),
            role,
            vq: format!("{used:#x}"),
            eventfd: "0x1".into(),
            device: Some("vnet0".into()),
            queue: Some(queue),
            signal_calls: 1,
            used,
            signals: 1,
            handle_runs: None,
            tap_reads: None,
            tap_writes: None,
            max_pending: 0,
            empty_calls: 0,
            no_interrupt_calls: 0,
            irqfd: None,
            buf_peeks: None,
            hists: None,
            last: VqState {
                num: 256,
                last_avail_idx: 0,
                avail_idx: 0,
                last_used_idx: 0,
                pending: 0,
                signalled_used: None,
                event_idx: false,
                avail_flags: None,
                used_event: None,
            },
        }
    }

    #[test]
    fn rings_and_virtqueues_meet_by_tap_queue() {
        let ring = |queue| QueueReport {
            queue,
            xmit: 5,
            ..QueueReport::default()
        };
        let rows = join(
            vec![ring(0), ring(2)],
            vec![vq(0, Role::Rx, 5), vq(0, Role::Tx, 3), vq(1, Role::Rx, 7)],
        );
        let got: Vec<(u32, bool, Option<u64>, Option<u64>)> = rows
            .iter()
            .map(|r| {
                (
                    r.queue,
                    r.ring.is_some(),
                    r.rx.as_ref().map(|v| v.used),
                    r.tx.as_ref().map(|v| v.used),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (0, true, Some(5), Some(3)),
                (1, false, Some(7), None),
                (2, true, None, None)
            ]
        );
    }
}
