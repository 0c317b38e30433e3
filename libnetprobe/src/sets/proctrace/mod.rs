//! The proctrace probe set: what one process — and the processes it forks — or one cgroup
//! does on the network, as events in time order: its syscalls (arguments, return value,
//! duration) and the net tracepoints that fire in its context (`net_dev_queue`,
//! `net_dev_xmit`, `netif_receive_skb`, `netif_rx`, `kfree_skb`) with device and flow:
//! `perf trace --event 'net:*' cmd` with decoded packets. The task filter runs first in BPF.
use crate::error::{Error, Result};
use crate::kernel::KernelEnv;
use crate::kit::{
    self, BpfStats, EventRing, KitConfig, LoadSpec, LoadedSet, ProbeSet, StackPolicy,
};
use crate::probe::{Plan, ProbeKind, ProbePoint};
use crate::run::EventSource;
use crate::sets::cpu::cgroup_id;
use crate::sets::flow::{cstr, FlowView};
use crate::sets::syscall::syscall_name;
use crate::skel::proctrace::{types, ProctraceSkel, ProctraceSkelBuilder};
use libbpf_rs::{MapCore, MapFlags};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

// SAFETY: plain C structs generated from bpf/include/proctrace.h; any bytes are valid.
unsafe impl plain::Plain for types::pt_event {}
// SAFETY: as above.
unsafe impl plain::Plain for types::np_kit_config {}

/// Probe point: a syscall begins.
pub const POINT_ENTER: &str = "syscall entry";
/// Probe point: a syscall returns.
pub const POINT_EXIT: &str = "syscall exit";
/// Probe point: a followed process forks.
pub const POINT_FORK: &str = "fork";
/// Probe points of the packet events, in the task's context.
pub const POINTS_NET: [&str; 5] = ["dev queue", "dev xmit", "receive", "backlog rx", "drop"];

/// The set as plans and `netprobe_check` see it.
pub struct ProctraceSet;

impl ProbeSet for ProctraceSet {
    const NAME: &'static str = "proctrace";
    const ABOUT: &'static str =
        "a process's syscalls and the packets queued, sent, received and dropped in its context";

    fn probe_points() -> Vec<ProbePoint> {
        let tp = |name, target, prog| ProbePoint::named(name).or(ProbeKind::TpBtf, target, prog);
        vec![
            ProbePoint::tracepoint(
                POINT_ENTER,
                "pt_enter_btf",
                "raw_syscalls/sys_enter",
                "pt_enter_tp",
            ),
            ProbePoint::tracepoint(
                POINT_EXIT,
                "pt_exit_btf",
                "raw_syscalls/sys_exit",
                "pt_exit_tp",
            ),
            tp(POINT_FORK, "sched_process_fork", "pt_fork_btf"),
            tp(POINTS_NET[0], "net_dev_queue", "pt_dev_queue"),
            tp(POINTS_NET[1], "net_dev_xmit", "pt_dev_xmit"),
            tp(POINTS_NET[2], "netif_receive_skb", "pt_receive"),
            tp(POINTS_NET[3], "netif_rx", "pt_rx"),
            tp(POINTS_NET[4], "kfree_skb", "pt_drop"),
        ]
    }
}

/// Whose events.
#[derive(Debug, Clone)]
pub enum Who {
    /// These processes (and, with `follow_forks`, the processes they fork).
    Processes(Vec<u32>),
    /// The tasks of this cgroup v2 directory.
    Cgroup(PathBuf),
}

/// What to trace.
#[derive(Debug, Clone)]
pub struct ProctraceOptions {
    /// Whose events.
    pub who: Who,
    /// Report syscalls.
    pub syscalls: bool,
    /// Report the packet tracepoints.
    pub net: bool,
    /// Follow the processes the followed ones fork.
    pub follow_forks: bool,
    /// The kit's switches.
    pub kit: KitConfig,
}

/// One event.
#[derive(Debug, Clone, Serialize)]
pub struct ProcEvent {
    /// When it happened (a syscall: when it began), CLOCK_MONOTONIC ns.
    pub time_ns: u64,
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Thread name.
    pub comm: String,
    /// `syscall`, or the tracepoint (`net_dev_queue`, `net_dev_xmit`, `netif_receive_skb`,
    /// `netif_rx`, `kfree_skb`).
    pub event: &'static str,
    /// Syscalls: the name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syscall: Option<String>,
    /// Syscalls: the six argument registers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<[u64; 6]>,
    /// Syscalls: the return value; net_dev_xmit: the driver's return code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ret: Option<i64>,
    /// Syscalls that failed: the errno's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno: Option<&'static str>,
    /// Syscalls: how long, ns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ns: Option<u64>,
    /// Packets: the device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dev: Option<String>,
    /// Packets: the device's network namespace inode (0: unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<u32>,
    /// Packets: bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub len: Option<u32>,
    /// Packets: the flow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow: Option<FlowView>,
    /// ICMP packets: type, id and sequence number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp: Option<[u16; 3]>,
    /// Drops: where (kernel function).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// A loaded proctrace set.
pub struct ProctraceProbe {
    set: LoadedSet<ProctraceSkel<'static>>,
    ring: EventRing<types::pt_event>,
    /// A process whose events are not reported before its first successful execve.
    until_exec: Option<u32>,
}

impl ProctraceProbe {
    /// Loads and attaches the set; the processes are followed from the first event on.
    pub fn open(opts: &ProctraceOptions, env: &KernelEnv) -> Result<Self> {
        if !opts.syscalls && !opts.net {
            return Err(Error::usage(
                "nothing to trace: syscalls and packets are both off",
            ));
        }
        let cgroup = match &opts.who {
            Who::Cgroup(dir) => Some(cgroup_id(dir)?),
            Who::Processes(pids) => {
                for p in pids {
                    crate::sets::cpu::check_task("process", *p)?;
                }
                None
            }
        };
        let mut points = Vec::new();
        if opts.syscalls {
            points.extend([POINT_ENTER, POINT_EXIT]);
        }
        if opts.follow_forks && cgroup.is_none() {
            points.push(POINT_FORK);
        }
        if opts.net {
            points.extend(POINTS_NET);
        }
        let spec = LoadSpec {
            set: ProctraceSet::NAME,
            plan: ProctraceSet::plan(env).only(&points),
            stacks: StackPolicy::off(),
            kit: &opts.kit,
        };
        let o = opts.clone();
        let set = kit::load(ProctraceSkelBuilder::default(), spec, |open, kit_cfg| {
            let ro = crate::kit_rodata!(open, kit_cfg);
            ro.pt_cfg.cgroup_id = cgroup.unwrap_or(0);
            ro.pt_cfg.syscalls = o.syscalls as u8;
            ro.pt_cfg.net = o.net as u8;
            ro.pt_cfg.follow_forks = o.follow_forks as u8;
            Ok(())
        })?;
        let ring = EventRing::new(&set.skel.maps.events)?;
        let probe = Self {
            set,
            ring,
            until_exec: None,
        };
        if let Who::Processes(pids) = &opts.who {
            for p in pids {
                probe.follow(*p)?;
            }
        }
        Ok(probe)
    }

    /// Follows process `pid` from now on.
    pub fn follow(&self, pid: u32) -> Result<()> {
        self.set
            .skel
            .maps
            .targets
            .update(&pid.to_ne_bytes(), &[1], MapFlags::ANY)
            .map_err(|e| Error::Bpf {
                context: format!("follow process {pid}"),
                source: e,
            })
    }

    fn decode(&mut self, e: &types::pt_event) -> ProcEvent {
        let kind = types::pt_kind(e.kind);
        let mut ev = ProcEvent {
            time_ns: e.ts_ns,
            pid: e.tgid,
            tid: e.tid,
            comm: cstr(&e.comm),
            event: match kind {
                types::pt_kind::PT_SYSCALL => "syscall",
                types::pt_kind::PT_NET_QUEUE => "net_dev_queue",
                types::pt_kind::PT_NET_XMIT => "net_dev_xmit",
                types::pt_kind::PT_NET_RECEIVE => "netif_receive_skb",
                types::pt_kind::PT_NET_RX => "netif_rx",
                types::pt_kind::PT_DROP => "kfree_skb",
                _ => "unknown",
            },
            syscall: None,
            args: None,
            ret: None,
            errno: None,
            duration_ns: None,
            dev: None,
            netns: None,
            len: None,
            flow: None,
            icmp: None,
            location: None,
        };
        if kind == types::pt_kind::PT_SYSCALL {
            ev.syscall = Some(syscall_name(e.nr));
            ev.args = Some(e.args);
            ev.ret = Some(e.ret);
            ev.duration_ns = Some(e.dur_ns);
            if (-4095..0).contains(&e.ret) {
                ev.errno = syscalls::Errno::new(-e.ret as i32).name();
            }
            return ev;
        }
        let name = cstr(&e.ifname);
        ev.dev = (!name.is_empty()).then_some(name);
        ev.netns = Some(e.netns);
        ev.len = Some(e.pkt.len);
        let flow = crate::flow_view!(e.pkt.flow);
        if flow.l4_protocol.starts_with("icmp") {
            ev.icmp = Some([u16::from(e.pkt.icmp_type), e.pkt.icmp_id, e.pkt.icmp_seq]);
        }
        ev.flow = Some(flow);
        if kind == types::pt_kind::PT_NET_XMIT {
            ev.ret = Some(e.ret);
        }
        if kind == types::pt_kind::PT_DROP {
            let f = self.set.symbols.frame(e.location);
            ev.location = Some(if f.func.is_empty() {
                format!("0x{:x}", e.location)
            } else {
                f.func
            });
        }
        ev
    }

    /// Reports process `pid`'s events only from its first successful execve on (a command
    /// started through a shell, [`crate::kernel::process::HeldCommand`]: the shell's own calls
    /// are not the command's).
    pub fn from_exec_of(&mut self, pid: u32) {
        self.until_exec = Some(pid);
    }

    fn before_exec(&mut self, e: &ProcEvent) -> bool {
        if self.until_exec != Some(e.pid) {
            return false;
        }
        if e.syscall.as_deref() == Some("execve") && e.ret == Some(0) {
            self.until_exec = None;
            return false;
        }
        true
    }

    /// Processes followed now (the given ones and their children so far).
    pub fn followed(&self) -> Vec<u32> {
        let map: &dyn MapCore = &self.set.skel.maps.targets;
        map.keys()
            .filter_map(|k| Some(u32::from_ne_bytes(k.as_slice().try_into().ok()?)))
            .collect()
    }
}

impl EventSource for ProctraceProbe {
    type Event = ProcEvent;
    const KIND: &'static str = "event";

    fn poll(&mut self, timeout: Duration) -> Result<Vec<ProcEvent>> {
        let raw = self.ring.poll(timeout)?;
        let mut all: Vec<ProcEvent> = raw.iter().map(|e| self.decode(e)).collect();
        // A syscall is reported when it returns, stamped when it began.
        all.sort_by_key(|e| e.time_ns);
        let mut out = Vec::with_capacity(all.len());
        for e in all {
            if !self.before_exec(&e) {
                out.push(e);
            }
        }
        Ok(out)
    }

    fn stats(&mut self) -> BpfStats {
        self.set.stats.delta()
    }

    fn plan(&self) -> &Plan {
        &self.set.plan
    }
}
