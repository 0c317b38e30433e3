//! The vhost probe set: what vhost-net workers do for each virtqueue, per interval — buffers
//! marked used and the calls that did it, signals of the guest's call eventfd, the worker's
//! runs for the queue, its reads and writes of the tap queue behind it — and the queue's state
//! at the last call: vhost's indices, EVENT_IDX, and the guest's notification suppression
//! (`avail->flags`, `used_event`) read from the VMM's memory.
//!
//! None of it has tracepoints: fentry, else kprobes, on `vhost_add_used_and_signal_n`,
//! `eventfd_signal_mask` (`eventfd_signal` before 6.0), `handle_rx`/`handle_tx` and
//! `tun_recvmsg`/`tun_sendmsg`. The vhost structs are in the vhost and vhost_net modules' BTF
//! only; the BPF side declares the fields it reads and libbpf relocates them against that BTF.
//!
//! A virtqueue is joined to its tap queue by its backend socket (`vq->private_data` is
//! `&tfile->socket`), and to its VM by the worker: a vhost task in the VMM's thread group
//! (6.4+), else a `vhost-<VMM pid>` kthread.
pub mod events;
mod report;

pub use report::{BufPeeks, IrqfdView, Role, VhostReport, VirtqueueEntry, VqHists, VqState};

use crate::error::{Error, Result};
use crate::kernel::process::thread_group;
use crate::kernel::KernelEnv;
use crate::kit::{self, KitConfig, LoadSpec, LoadedSet, ProbeSet};
use crate::probe::{Plan, ProbeKind, ProbePoint, SelfTest};
use crate::run::IntervalSource;
use crate::sets::flow::cstr;
use crate::skel::vhost::{types, VhostSkel, VhostSkelBuilder};
use libbpf_rs::MapCore;
use std::collections::HashMap;
use std::path::Path;

// SAFETY: plain C structs generated from bpf/include/vhost.h and np_types.h; any bytes are valid.
unsafe impl plain::Plain for types::vhost_vq_stats {}
// SAFETY: as above.
unsafe impl plain::Plain for types::vhost_vq_info {}
// SAFETY: as above.
unsafe impl plain::Plain for types::vhost_sock_stats {}
// SAFETY: as above.
unsafe impl plain::Plain for types::vhost_hist_key {}
// SAFETY: as above.
unsafe impl plain::Plain for types::vhost_hist {}
// SAFETY: as above.
unsafe impl plain::Plain for types::np_kit_config {}

/// Probe point: the used buffers and the signal decision of a virtqueue.
pub const POINT_SIGNAL_N: &str = "used and signal";
/// Probe point: an eventfd signalled (counted for the call eventfds of virtqueues).
pub const POINT_EVENTFD: &str = "eventfd signal";
/// Probe point: the worker serving an RX virtqueue.
pub const POINT_HANDLE_RX: &str = "handle rx";
/// Probe point: the worker serving a TX virtqueue.
pub const POINT_HANDLE_TX: &str = "handle tx";
/// Probe point: the worker reading a tap queue.
pub const POINT_RECVMSG: &str = "tap read";
/// Probe point: the worker writing to a tap queue.
pub const POINT_SENDMSG: &str = "tap write";
/// Probe point: KVM's irqfd woken by a call eventfd (the guest's interrupt on its way).
pub const POINT_IRQFD: &str = "irqfd wakeup";
/// Probe point: KVM setting a GSI's level, the self-test twin of [`POINT_IRQFD`].
pub const POINT_IRQFD_TWIN: &str = "irqfd twin: kvm_set_irq";
/// Probe point: the RX worker looking at the next packet of its batch (`vhost_net_buf_peek`).
pub const POINT_BUF_PEEK: &str = "buf peek";

/// Signals an irqfd of a throw-away VM once: the irqfd point's self-test.
fn irqfd_trigger() -> Result<Box<dyn std::any::Any>> {
    Ok(Box::new(crate::kernel::kvm_irqfd::signal_once()?))
}

/// The set as plans and `netprobe_check` see it.
pub struct VhostSet;

impl ProbeSet for VhostSet {
    const NAME: &'static str = "vhost";
    const ABOUT: &'static str =
        "vhost-net virtqueues: used buffers, guest notifications, worker runs, tap reads";

    fn probe_points() -> Vec<ProbePoint> {
        let func = |name, target, fe, kp| {
            ProbePoint::named(name)
                .or(ProbeKind::Fentry, target, fe)
                .or(ProbeKind::Kprobe, target, kp)
        };
        vec![
            func(
                POINT_SIGNAL_N,
                "vhost_add_used_and_signal_n",
                "vhost_signal_n_fe",
                "vhost_signal_n_kp",
            )
            .required(),
            func(
                POINT_EVENTFD,
                "eventfd_signal_mask",
                "vhost_eventfd_mask_fe",
                "vhost_eventfd_mask_kp",
            )
            .or(ProbeKind::Fentry, "eventfd_signal", "vhost_eventfd_fe")
            .or(ProbeKind::Kprobe, "eventfd_signal", "vhost_eventfd_kp"),
            func(
                POINT_HANDLE_RX,
                "handle_rx",
                "vhost_handle_rx_fe",
                "vhost_handle_rx_kp",
            ),
            func(
                POINT_HANDLE_TX,
                "handle_tx",
                "vhost_handle_tx_fe",
                "vhost_handle_tx_kp",
            ),
            func(
                POINT_RECVMSG,
                "tun_recvmsg",
                "vhost_tun_recvmsg_fe",
                "vhost_tun_recvmsg_kp",
            ),
            func(
                POINT_SENDMSG,
                "tun_sendmsg",
                "vhost_tun_sendmsg_fe",
                "vhost_tun_sendmsg_kp",
            ),
            // fentry on irqfd_wakeup attaches but never runs on Debian's 6.12: proven after
            // attach with a throw-away VM's irqfd, the kprobe in reserve.
            ProbePoint::named(POINT_IRQFD)
                .or(ProbeKind::Fentry, "irqfd_wakeup", "vhost_irqfd_fe")
                .or(ProbeKind::Kprobe, "irqfd_wakeup", "vhost_irqfd_kp")
                .self_tested(SelfTest {
                    twins: &[POINT_IRQFD_TWIN],
                    trigger: irqfd_trigger,
                }),
            ProbePoint::tracepoint(
                POINT_IRQFD_TWIN,
                "vhost_twin_set_irq_btf",
                "kvm/kvm_set_irq",
                "vhost_twin_set_irq_tp",
            )
            .twin_only(),
            // Its return value; a kretprobe finds the queue from the thread's handle_rx.
            ProbePoint::named(POINT_BUF_PEEK)
                .or(ProbeKind::Fexit, "vhost_net_buf_peek", "vhost_peek_fx")
                .or(ProbeKind::Kretprobe, "vhost_net_buf_peek", "vhost_peek_krp"),
        ]
    }
}

/// Which virtqueues to report.
#[derive(Debug, Clone, Default)]
pub struct VhostOptions {
    /// Only this VM (the VMM's pid).
    pub vmm_pid: Option<u32>,
    /// Only virtqueues whose tap is this device.
    pub device: Option<String>,
    /// Only this tap queue.
    pub queue: Option<u16>,
    /// Report these events one by one ([`events::VhostEvents`]); the device and queue
    /// filters then run in the kernel.
    pub events: Vec<events::EventKind>,
    /// Log2 histograms of each virtqueue's depths and of the tap ring at each read.
    pub hists: bool,
    /// Kit switches.
    pub kit: KitConfig,
}

/// A tap queue as the worker's reads and writes showed it.
#[derive(Debug, Clone)]
struct TapQueue {
    ifname: String,
    queue: u16,
}

/// One clear line where this kernel cannot show vhost-net virtqueues.
fn check_vhost_present() -> Result<()> {
    if !Path::new("/sys/module/vhost_net").exists() {
        return Err(Error::missing(
            "vhost_net is not loaded: no vhost-net virtqueues to watch (modprobe vhost_net; the VMM opens /dev/vhost-net)",
        ));
    }
    if !Path::new("/sys/kernel/btf/vhost").exists() {
        return Err(Error::missing(
            "the vhost module has no BTF (/sys/kernel/btf/vhost: kernel before 5.11 or CONFIG_DEBUG_INFO_BTF_MODULES off): its virtqueues cannot be read",
        ));
    }
    Ok(())
}

/// A loaded and attached vhost probe set.
pub struct VhostProbe {
    set: LoadedSet<VhostSkel<'static>>,
    opts: VhostOptions,
    taps: HashMap<u64, TapQueue>,
}

impl VhostProbe {
    /// Loads and attaches the set; one clear error where vhost-net is absent.
    pub fn open(opts: VhostOptions, env: &KernelEnv) -> Result<Self> {
        check_vhost_present()?;
        let plan = VhostSet::plan(env);
        plan.require()?;
        let kicks = crate::symbol::kallsyms_ranges(&["handle_rx_kick", "handle_tx_kick"])?;
        let count_arg = env
            .btf
            .func_param_index("vhost_add_used_and_signal_n", "count")
            .unwrap_or(3) as u32;
        let spec = LoadSpec {
            set: VhostSet::NAME,
            plan,
            stacks: kit::StackPolicy::off(),
            kit: &opts.kit,
        };
        let set = kit::load(VhostSkelBuilder::default(), spec, |open, kit_cfg| {
            let ro = crate::kit_rodata!(open, kit_cfg);
            ro.vhost_cfg.rx_kick = kicks[0].map_or(0, |r| r.0);
            ro.vhost_cfg.tx_kick = kicks[1].map_or(0, |r| r.0);
            ro.vhost_cfg.count_arg = count_arg;
            ro.vhost_cfg.event_kinds = events::EventKind::mask(&opts.events);
            if let Some(d) = &opts.device {
                for (dst, src) in ro.vhost_cfg.ifname.iter_mut().zip(d.bytes().take(15)) {
                    *dst = src as _;
                }
            }
            ro.vhost_cfg.hists = u8::from(opts.hists);
            if let Some(q) = opts.queue {
                ro.vhost_cfg.has_queue = 1;
                ro.vhost_cfg.queue = q;
            }
            Ok(())
        })?;
        Ok(Self {
            set,
            opts,
            taps: HashMap::new(),
        })
    }

    /// The plan in use.
    pub fn chosen_plan(&self) -> &Plan {
        &self.set.plan
    }

    fn info_of(&self, vq: u64) -> Option<types::vhost_vq_info> {
        let bytes = self
            .set
            .skel
            .maps
            .vq_info
            .lookup(&vq.to_ne_bytes(), libbpf_rs::MapFlags::ANY)
            .ok()??;
        plain::from_bytes::<types::vhost_vq_info>(&bytes)
            .ok()
            .copied()
    }

    /// Ends the interval: what each virtqueue did since the previous call.
    pub fn drain_queues(&mut self) -> Result<VhostReport> {
        let socks: Vec<(u64, types::vhost_sock_stats)> =
            kit::drain(&self.set.skel.maps.sock_stats)?;
        let raw: Vec<(u64, types::vhost_vq_stats)> = kit::drain(&self.set.skel.maps.vq_stats)?;
        let mut hists: HashMap<(u64, u32), crate::hist::HistSummary> = HashMap::new();
        if self.opts.hists {
            let raw: Vec<(types::vhost_hist_key, types::vhost_hist)> =
                kit::drain(&self.set.skel.maps.vq_hists)?;
            for (k, h) in raw {
                let hist = crate::hist::Log2Hist::from_slots(&h.slots).with_max(h.max);
                let unit = if k.kind == types::vhost_hist_kind::VHOST_H_RING_DEPTH.0 {
                    "packets"
                } else {
                    "entries"
                };
                hists.insert(
                    (k.obj, k.kind),
                    crate::hist::HistSummary::new(unit, &hist, h.sum),
                );
            }
        }
        let mut io: HashMap<u64, (u64, u64)> = HashMap::new();
        for (sock, s) in socks {
            if self.taps.len() < 4096 || self.taps.contains_key(&sock) {
                self.taps.insert(
                    sock,
                    TapQueue {
                        ifname: cstr(&s.ifname),
                        queue: s.queue,
                    },
                );
            }
            io.insert(sock, (s.recvmsg, s.sendmsg));
        }
        let plan = &self.set.plan;
        let hooked = |p: &str| plan.chosen_for(p).is_some();
        let (handles, reads, writes, irqfds) = (
            hooked(POINT_HANDLE_RX) && hooked(POINT_HANDLE_TX),
            hooked(POINT_RECVMSG),
            hooked(POINT_SENDMSG),
            hooked(POINT_IRQFD),
        );
        // A kretprobe learns its queue from handle_rx.
        let peeks = match plan.chosen_for(POINT_BUF_PEEK) {
            Some(c) => c.kind == ProbeKind::Fexit || hooked(POINT_HANDLE_RX),
            None => false,
        };
        let mut queues = Vec::new();
        for (vq, s) in raw {
            // A queue the worker ran for but never completed a buffer on has no info yet.
            let Some(info) = self.info_of(vq) else {
                continue;
            };
            let comm = cstr(&info.comm);
            // A legacy kthread names the thread that took ownership: its process is the VMM.
            let vmm_pid = crate::sets::kvm::vhost_owner(&comm)
                .map(|tid| thread_group(tid).unwrap_or(tid))
                .unwrap_or(info.tgid);
            let tap = self.taps.get(&info.sock);
            let role = Role::of(info.role);
            let (r, w) = io.get(&info.sock).copied().unwrap_or_default();
            let entry = VirtqueueEntry {
                vmm_pid,
                worker_tid: info.tid,
                worker_comm: comm,
                role,
                vq: format!("{vq:#x}"),
                eventfd: format!("{:#x}", info.call_ctx),
                device: tap.map(|t| t.ifname.clone()),
                queue: tap.map(|t| t.queue),
                signal_calls: s.signal_calls,
                used: s.used,
                signals: s.signals,
                handle_runs: handles.then_some(s.handle),
                tap_reads: (reads && role == Role::Rx).then_some(r),
                tap_writes: (writes && role == Role::Tx).then_some(w),
                max_pending: s.max_pending,
                empty_calls: s.empty_calls,
                no_interrupt_calls: s.no_interrupt,
                irqfd: irqfds.then(|| IrqfdView::of(&s)),
                buf_peeks: (peeks && role == Role::Rx).then(|| BufPeeks::of(&s)),
                hists: self.opts.hists.then(|| {
                    use types::vhost_hist_kind as H;
                    let mut take = |obj: u64, kind: H| hists.remove(&(obj, kind.0));
                    VqHists {
                        avail_pending: take(vq, H::VHOST_H_AVAIL_PENDING),
                        in_flight: take(vq, H::VHOST_H_IN_FLIGHT),
                        ring_depth_at_read: if role == Role::Rx {
                            take(info.sock, H::VHOST_H_RING_DEPTH)
                        } else {
                            None
                        },
                    }
                }),
                last: VqState::of(&info.last),
            };
            if self.wanted(&entry) {
                queues.push(entry);
            }
        }
        queues.sort_by(|a, b| {
            (a.vmm_pid, a.device.as_deref(), a.queue, a.role as u8, &a.vq).cmp(&(
                b.vmm_pid,
                b.device.as_deref(),
                b.queue,
                b.role as u8,
                &b.vq,
            ))
        });
        Ok(VhostReport {
            total_signals: queues.iter().map(|q| q.signals).sum(),
            total_used: queues.iter().map(|q| q.used).sum(),
            queues,
            stats: self.set.stats.delta(),
        })
    }

    fn wanted(&self, e: &VirtqueueEntry) -> bool {
        let o = &self.opts;
        o.vmm_pid.is_none_or(|p| p == e.vmm_pid)
            && o.device
                .as_deref()
                .is_none_or(|d| e.device.as_deref() == Some(d))
            && o.queue.is_none_or(|q| e.queue == Some(q))
    }
}

impl IntervalSource for VhostProbe {
    type Report = VhostReport;

    fn drain(&mut self) -> Result<VhostReport> {
        self.drain_queues()
    }

    fn plan(&self) -> &Plan {
        self.chosen_plan()
    }
}
