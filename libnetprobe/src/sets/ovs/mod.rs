//! The ovs probe set: the Open vSwitch kernel datapath's slow path. Every upcall (a packet the
//! datapath hands to ovs-vswitchd: a megaflow miss, a userspace action) with the flow key it
//! was looked up by, every megaflow install (`OVS_FLOW_CMD_NEW`), and the upcalls that failed,
//! by errno (`ENOTCONN`: no handler listens; `ENOSPC`/`ENOBUFS`: its socket is full).
//!
//! The upcall → install latency pairs each install with the oldest miss still waiting for one,
//! as ovs-vswitchd's handlers answer misses in order; a miss that no install answers within
//! [`UNANSWERED_AFTER`] is counted as unanswered (its packet was executed or dropped by user
//! space without a new flow, or an install raced it).
//!
//! Points: the `openvswitch:ovs_dp_upcall` tracepoint (tp_btf where the module has BTF), else
//! fentry, else kprobe; `ovs_flow_cmd_new` and `ovs_dp_upcall`'s return by fentry/fexit or
//! kprobe/kretprobe. The flow key's fields are relocated against the module's BTF.
pub mod megaflow;

use crate::error::{Error, Result};
use crate::hist::{HistSummary, Log2Hist};
use crate::kernel::KernelEnv;
use crate::kit::{self, BpfStats, EventRing, KitConfig, LoadSpec, LoadedSet, ProbeSet};
use crate::probe::{Plan, ProbeKind, ProbePoint};
use crate::run::IntervalSource;
use crate::skel::ovs::{types, OvsSkel, OvsSkelBuilder};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

// SAFETY: plain C structs generated from bpf/include/ovs.h and np_types.h; any bytes are valid.
unsafe impl plain::Plain for types::ovs_event {}
// SAFETY: as above.
unsafe impl plain::Plain for types::np_kit_config {}
// SAFETY: as above.
unsafe impl plain::Plain for types::ovs_flow_msg {}

/// A miss older than this with no install is counted as unanswered.
pub const UNANSWERED_AFTER: Duration = Duration::from_secs(5);
/// Flows listed per interval, most upcalls first.
pub const TOP_FLOWS: usize = 20;

/// Probe point: an upcall.
pub const POINT_UPCALL: &str = "upcall";
/// Probe point: a megaflow install.
pub const POINT_INSTALL: &str = "flow install";
/// Probe point: an upcall's return code.
pub const POINT_UPCALL_RET: &str = "upcall return";
/// Probe point: `queue_userspace_packet`'s return code (the upcall's netlink message).
pub const POINT_QUEUE_RET: &str = "queue return";

/// `OVS_PACKET_CMD_MISS`.
const CMD_MISS: u8 = 1;

/// The set as plans and `netprobe_check` see it.
pub struct OvsSet;

impl ProbeSet for OvsSet {
    const NAME: &'static str = "ovs";
    const ABOUT: &'static str =
        "Open vSwitch datapath slow path: upcalls by flow, megaflow installs, upcall latency";

    fn probe_points() -> Vec<ProbePoint> {
        let func = |name| ProbePoint::named(name);
        // The classic tracepoint is left out: its record has no flow key before 5.11's BTF,
        // and a kprobe reads the key from the arguments there.
        vec![
            func(POINT_UPCALL)
                .or(ProbeKind::TpBtf, "ovs_dp_upcall", "ovs_upcall_btf")
                .or(ProbeKind::Fentry, "ovs_dp_upcall", "ovs_upcall_fe")
                .or(ProbeKind::Kprobe, "ovs_dp_upcall", "ovs_upcall_kp")
                .required(),
            func(POINT_INSTALL)
                .or(ProbeKind::Fentry, "ovs_flow_cmd_new", "ovs_install_fe")
                .or(ProbeKind::Kprobe, "ovs_flow_cmd_new", "ovs_install_kp"),
            func(POINT_UPCALL_RET)
                .or(ProbeKind::Fexit, "ovs_dp_upcall", "ovs_upcall_ret_fx")
                .or(ProbeKind::Kretprobe, "ovs_dp_upcall", "ovs_upcall_ret_krp"),
            func(POINT_QUEUE_RET)
                .or(
                    ProbeKind::Fexit,
                    "queue_userspace_packet",
                    "ovs_queue_ret_fx",
                )
                .or(
                    ProbeKind::Kretprobe,
                    "queue_userspace_packet",
                    "ovs_queue_ret_krp",
                ),
        ]
    }
}

/// The flow an upcall's packet was keyed by (IPv4 fields zero for other packets).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct UpcallFlow {
    /// Datapath port the packet came in on.
    pub in_port: u32,
    /// EtherType.
    pub eth_type: u16,
    /// IP protocol (IPv4).
    pub ip_proto: u8,
    /// Source address (IPv4).
    pub src: Ipv4Addr,
    /// Destination address (IPv4).
    pub dst: Ipv4Addr,
    /// Source port (TCP, UDP, SCTP; the ICMP type for ICMP, as OVS keys it).
    pub sport: u16,
    /// Destination port (the ICMP code for ICMP).
    pub dport: u16,
}

/// One flow's upcalls over an interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlowUpcalls {
    /// The flow.
    #[serde(flatten)]
    pub flow: UpcallFlow,
    /// Its misses.
    pub misses: u64,
    /// Its other upcalls (userspace actions).
    pub actions: u64,
}

/// Upcalls that ended with one result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpcallError {
    /// The errno's name (`ENOTCONN`), or `ok`.
    pub error: String,
    /// Upcalls.
    pub count: u64,
}

/// One interval.
#[derive(Debug, Clone, Serialize)]
pub struct OvsReport {
    /// Upcalls (misses and userspace actions).
    pub upcalls: u64,
    /// Of those, misses (`OVS_PACKET_CMD_MISS`).
    pub misses: u64,
    /// Megaflow installs.
    pub installs: u64,
    /// Miss → install latency of the installs that answered one, ns.
    pub latency: HistSummary,
    /// Misses no install answered within [`UNANSWERED_AFTER`].
    pub unanswered: u64,
    /// Misses still waiting at the end of the interval.
    pub waiting: u64,
    /// Failed upcalls, by errno; `None` where the return is not observed.
    pub errors: Option<Vec<UpcallError>>,
    /// `queue_userspace_packet` results, by errno (`ok` for success); `None` where not
    /// observed.
    pub queue_results: Option<Vec<UpcallError>>,
    /// The flows with the most upcalls, at most [`TOP_FLOWS`].
    pub flows: Vec<FlowUpcalls>,
    /// BPF-side counters (flattened).
    #[serde(flatten)]
    pub stats: BpfStats,
}

/// One clear line where this kernel cannot show the OVS datapath.
fn check_ovs_present() -> Result<()> {
    if !Path::new("/sys/module/openvswitch").exists() {
        return Err(Error::missing(
            "openvswitch is not loaded: no OVS kernel datapath to watch (modprobe openvswitch; ovs-vswitchd loads it)",
        ));
    }
    if !Path::new("/sys/kernel/btf/openvswitch").exists() {
        return Err(Error::missing(
            "the openvswitch module has no BTF (/sys/kernel/btf/openvswitch: kernel before 5.11 or CONFIG_DEBUG_INFO_BTF_MODULES off): its flow keys cannot be read",
        ));
    }
    Ok(())
}

/// What the set copies besides its upcall and install events.
#[derive(Debug, Clone, Copy, Default)]
pub struct OvsOptions {
    /// Each new flow's netlink request (key, mask, actions), for [`megaflow::MegaflowWatch`].
    pub flow_msgs: bool,
}

/// A loaded and attached ovs probe set.
pub struct OvsProbe {
    set: LoadedSet<OvsSkel<'static>>,
    ring: EventRing<types::ovs_event>,
    flow_ring: Option<EventRing<types::ovs_flow_msg>>,
    waiting: VecDeque<u64>,
}

impl OvsProbe {
    /// Loads and attaches the set; one clear error where the OVS module is absent.
    pub fn open(kit_cfg: KitConfig, env: &KernelEnv) -> Result<Self> {
        Self::open_with(kit_cfg, env, OvsOptions::default())
    }

    /// [`OvsProbe::open`] with options.
    pub fn open_with(kit_cfg: KitConfig, env: &KernelEnv, opts: OvsOptions) -> Result<Self> {
        check_ovs_present()?;
        let plan = OvsSet::plan(env);
        plan.require()?;
        let spec = LoadSpec {
            set: OvsSet::NAME,
            plan,
            stacks: kit::StackPolicy::off(),
            kit: &kit_cfg,
        };
        let set = kit::load(OvsSkelBuilder::default(), spec, |open, kit_cfg| {
            let ro = crate::kit_rodata!(open, kit_cfg);
            ro.ovs_cfg.flow_msgs = u8::from(opts.flow_msgs);
            Ok(())
        })?;
        if opts.flow_msgs && set.plan.chosen_for(POINT_INSTALL).is_none() {
            return Err(Error::missing(
                "no probe on ovs_flow_cmd_new (neither fentry nor kprobe attaches here): new megaflows cannot be seen",
            ));
        }
        let ring = EventRing::new(&set.skel.maps.events)?;
        let flow_ring = if opts.flow_msgs {
            Some(EventRing::new(&set.skel.maps.flows)?)
        } else {
            None
        };
        Ok(Self {
            set,
            ring,
            flow_ring,
            waiting: VecDeque::new(),
        })
    }

    /// The plan in use.
    pub fn chosen_plan(&self) -> &Plan {
        &self.set.plan
    }

    /// Upcalls and installs that arrived, oldest first, and the new flows' requests (with
    /// [`OvsOptions::flow_msgs`]), waiting up to `timeout` for the latter.
    fn take(
        &mut self,
        timeout: Duration,
    ) -> Result<(Vec<types::ovs_event>, Vec<types::ovs_flow_msg>)> {
        let msgs = match &mut self.flow_ring {
            Some(r) => r.poll(timeout)?,
            None => Vec::new(),
        };
        let mut events = self.ring.poll(Duration::ZERO)?;
        events.sort_by_key(|e| e.ts_ns);
        Ok((events, msgs))
    }

    /// BPF counters since the previous call.
    fn stats_delta(&mut self) -> BpfStats {
        self.set.stats.delta()
    }

    /// Ends the interval: the upcalls and installs since the previous call.
    pub fn drain_upcalls(&mut self) -> Result<OvsReport> {
        let (events, _) = self.take(Duration::ZERO)?;
        let now = crate::clock::monotonic_ns();
        let mut pairing = Pairing {
            waiting: std::mem::take(&mut self.waiting),
            ..Pairing::default()
        };
        let mut flows: HashMap<UpcallFlow, (u64, u64)> = HashMap::new();
        let (mut upcalls, mut misses, mut installs) = (0, 0, 0);
        for e in &events {
            if e.kind == types::ovs_event_kind::OVS_EV_UPCALL.0 {
                upcalls += 1;
                let counts = flows.entry(flow_of(e)).or_default();
                if e.cmd == CMD_MISS {
                    misses += 1;
                    counts.0 += 1;
                    pairing.miss(e.ts_ns);
                } else {
                    counts.1 += 1;
                }
            } else if e.kind == types::ovs_event_kind::OVS_EV_INSTALL.0 {
                installs += 1;
                pairing.install(e.ts_ns);
            }
        }
        let unanswered = pairing.expire(now, UNANSWERED_AFTER.as_nanos() as u64);
        let mut flows: Vec<FlowUpcalls> = flows
            .into_iter()
            .map(|(flow, (misses, actions))| FlowUpcalls {
                flow,
                misses,
                actions,
            })
            .collect();
        flows.sort_by(|a, b| {
            (b.misses + b.actions)
                .cmp(&(a.misses + a.actions))
                .then_with(|| a.flow.cmp(&b.flow))
        });
        flows.truncate(TOP_FLOWS);
        let hooked = |p: &str| self.set.plan.chosen_for(p).is_some();
        let errors = hooked(POINT_UPCALL_RET)
            .then(|| drain_errnos(&self.set.skel.maps.upcall_errors))
            .transpose()?;
        let queue_results = hooked(POINT_QUEUE_RET)
            .then(|| drain_errnos(&self.set.skel.maps.queue_results))
            .transpose()?;
        let latency = HistSummary::new("ns", &pairing.hist, pairing.sum);
        self.waiting = pairing.waiting;
        Ok(OvsReport {
            upcalls,
            misses,
            installs,
            latency,
            unanswered,
            waiting: self.waiting.len() as u64,
            errors,
            queue_results,
            flows,
            stats: self.set.stats.delta(),
        })
    }
}

/// An errno-keyed count map's interval, most frequent first (0 is `ok`).
fn drain_errnos(map: &dyn libbpf_rs::MapCore) -> Result<Vec<UpcallError>> {
    let raw: Vec<(i32, u64)> = kit::drain(map)?;
    let mut v: Vec<UpcallError> = raw
        .into_iter()
        .map(|(err, count)| UpcallError {
            error: if err == 0 {
                "ok".to_string()
            } else {
                errno_name(err)
            },
            count,
        })
        .collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.error.cmp(&b.error)));
    Ok(v)
}

/// The name of errno `err` (`ENOTCONN`), or its number.
fn errno_name(err: i32) -> String {
    let name = format!("{:?}", nix::errno::Errno::from_raw(err));
    if name == "UnknownErrno" {
        format!("errno {err}")
    } else {
        name
    }
}

/// `OVS_PACKET_CMD_MISS` upcalls.
fn is_miss(e: &types::ovs_event) -> bool {
    e.kind == types::ovs_event_kind::OVS_EV_UPCALL.0 && e.cmd == CMD_MISS
}

fn flow_of(e: &types::ovs_event) -> UpcallFlow {
    UpcallFlow {
        in_port: e.in_port,
        eth_type: e.eth_type,
        ip_proto: e.ip_proto,
        src: Ipv4Addr::from(u32::from_be(e.src)),
        dst: Ipv4Addr::from(u32::from_be(e.dst)),
        sport: e.sport,
        dport: e.dport,
    }
}

/// Misses waiting for an install, oldest first, and the latencies of those answered.
#[derive(Debug, Default)]
struct Pairing {
    waiting: VecDeque<u64>,
    hist: Log2Hist,
    sum: u64,
}

impl Pairing {
    fn miss(&mut self, ts: u64) {
        // A storm of misses no handler answers must not grow without bound.
        if self.waiting.len() >= 65536 {
            self.waiting.pop_front();
        }
        self.waiting.push_back(ts);
    }

    /// An install answers the oldest waiting miss (none waiting: a flow installed up front).
    fn install(&mut self, ts: u64) {
        if let Some(miss) = self.waiting.pop_front() {
            let d = ts.saturating_sub(miss);
            self.hist.record(d);
            self.sum += d;
        }
    }

    /// Drops the misses older than `max_age` at `now`; returns how many.
    fn expire(&mut self, now: u64, max_age: u64) -> u64 {
        let before = self.waiting.len();
        while self
            .waiting
            .front()
            .is_some_and(|&t| now.saturating_sub(t) > max_age)
        {
            self.waiting.pop_front();
        }
        (before - self.waiting.len()) as u64
    }
}

impl IntervalSource for OvsProbe {
    type Report = OvsReport;

    fn drain(&mut self) -> Result<OvsReport> {
        self.drain_upcalls()
    }

    fn plan(&self) -> &Plan {
        self.chosen_plan()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_answer_the_oldest_waiting_miss() {
        let mut p = Pairing::default();
        p.miss(100);
        p.miss(150);
        p.install(400);
        p.install(1_000);
        p.install(2_000);
        assert_eq!(p.hist.count(), 2, "the third install answered no miss");
        assert_eq!(p.sum, 300 + 850);
        p.miss(5_000);
        p.miss(9_000);
        assert_eq!(p.expire(10_000, 2_000), 1);
        assert_eq!(p.waiting, VecDeque::from([9_000]));
    }

    #[test]
    fn errnos_have_their_names() {
        assert_eq!(errno_name(libc::ENOTCONN), "ENOTCONN");
        assert_eq!(errno_name(100_000), "errno 100000");
    }
}
