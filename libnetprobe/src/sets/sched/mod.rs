//! The sched probe set: where the time of chosen processes' threads goes, from the scheduler's
//! tracepoints — on CPU, waiting on a run queue (wakeup or preemption → switch-in, with a
//! log2 histogram), sleeping (S), blocked (D) — and the hard and soft IRQ time that ran while
//! they were on CPU (OVS's kernel_delay, for ovs-vswitchd handlers and vhost workers).
//! Processes are given by pid or command name; processes of that name started later are
//! followed from the next interval on.
use crate::error::{Error, Result};
use crate::hist::{HistSummary, Log2Hist};
use crate::kernel::process::ProcessSpec;
use crate::kernel::KernelEnv;
use crate::kit::{self, BpfStats, KitConfig, LoadSpec, LoadedSet, ProbeSet, StackPolicy};
use crate::probe::{Plan, ProbeKind, ProbePoint};
use crate::run::IntervalSource;
use crate::sets::flow::cstr;
use crate::skel::sched::{types, SchedSkel, SchedSkelBuilder};
use libbpf_rs::{MapCore, MapFlags};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

// SAFETY: plain C structs generated from bpf/include/sched.h; any bytes are valid.
unsafe impl plain::Plain for types::sched_delay {}
// SAFETY: as above.
unsafe impl plain::Plain for types::np_kit_config {}
// SAFETY: as above.
unsafe impl plain::Plain for types::sched_thread {}

/// The set as plans and `netprobe_check` see it.
pub struct SchedSet;

impl ProbeSet for SchedSet {
    const NAME: &'static str = "sched";
    const ABOUT: &'static str =
        "per-thread time on CPU, on the run queue, asleep, blocked, and IRQ time stolen";

    fn probe_points() -> Vec<ProbePoint> {
        let tp = |name, target, prog| ProbePoint::named(name).or(ProbeKind::TpBtf, target, prog);
        vec![
            tp("wakeup", "sched_wakeup", "sched_wakeup_btf").required(),
            tp(
                "new task wakeup",
                "sched_wakeup_new",
                "sched_wakeup_new_btf",
            ),
            tp("context switch", "sched_switch", "sched_switch_btf").required(),
            tp(
                "hard irq entry",
                "irq_handler_entry",
                "sched_hardirq_entry_btf",
            ),
            tp(
                "hard irq exit",
                "irq_handler_exit",
                "sched_hardirq_exit_btf",
            ),
            tp("soft irq entry", "softirq_entry", "sched_softirq_entry_btf"),
            tp("soft irq exit", "softirq_exit", "sched_softirq_exit_btf"),
        ]
    }
}

/// What to follow.
#[derive(Debug, Clone, Default)]
pub struct SchedOptions {
    /// These processes (`None`: every task).
    pub process: Option<ProcessSpec>,
    /// The kit's switches.
    pub kit: KitConfig,
}

/// One thread's interval.
#[derive(Debug, Clone, Serialize)]
pub struct ThreadDelay {
    /// Process (thread group) id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Thread name.
    pub comm: String,
    /// On CPU, µs (including the IRQ time below).
    pub on_cpu_us: u64,
    /// Runnable and waiting for a CPU, µs.
    pub runq_us: u64,
    /// Asleep (interruptible: waiting for an event, a lock, a timer), µs.
    pub sleep_us: u64,
    /// Blocked uninterruptibly (I/O, some kernel locks), µs.
    pub blocked_us: u64,
    /// Hard IRQ handlers that ran while it was on CPU, µs.
    pub hardirq_us: u64,
    /// Softirqs that ran while it was on CPU, µs.
    pub softirq_us: u64,
    /// Times it waited for a CPU.
    pub runq_waits: u64,
    /// Its longest run-queue wait, µs (over the whole run).
    pub runq_max_us: u64,
    /// Its run-queue waits, ns.
    pub runq: HistSummary,
}

/// One process's run-queue waits in an interval.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessRunq {
    /// Process id.
    pub pid: u32,
    /// Its name (its first thread's).
    pub comm: String,
    /// Its threads' waits, ns.
    pub runq: HistSummary,
}

/// One interval.
#[derive(Debug, Clone, Serialize)]
pub struct SchedReport {
    /// Per thread, most run-queue time first.
    pub threads: Vec<ThreadDelay>,
    /// Per process.
    pub processes: Vec<ProcessRunq>,
    /// All followed threads' waits, ns.
    pub runq: HistSummary,
    /// BPF-side counters (flattened).
    #[serde(flatten)]
    pub stats: BpfStats,
}

/// A loaded sched set.
pub struct SchedProbe {
    set: LoadedSet<SchedSkel<'static>>,
    process: Option<ProcessSpec>,
    followed: HashSet<u32>,
    last: HashMap<u32, types::sched_delay>,
}

impl SchedProbe {
    /// Loads and attaches the set; one clear error when no process matches.
    pub fn open(opts: &SchedOptions, env: &KernelEnv) -> Result<Self> {
        if let Some(p) = &opts.process {
            if p.tgids().is_empty() {
                return Err(Error::usage(format!("no process {p} is running")));
            }
        }
        let spec = LoadSpec {
            set: SchedSet::NAME,
            plan: SchedSet::plan(env),
            stacks: StackPolicy::off(),
            kit: &opts.kit,
        };
        let all = opts.process.is_none();
        let set = kit::load(SchedSkelBuilder::default(), spec, |open, kit_cfg| {
            let ro = crate::kit_rodata!(open, kit_cfg);
            ro.sched_cfg.all = all as u8;
            Ok(())
        })?;
        let mut probe = Self {
            set,
            process: opts.process.clone(),
            followed: HashSet::new(),
            last: HashMap::new(),
        };
        probe.follow_new()?;
        Ok(probe)
    }

    /// Adds the processes of the name that started since.
    fn follow_new(&mut self) -> Result<()> {
        let Some(p) = &self.process else {
            return Ok(());
        };
        for tgid in p.tgids() {
            if self.followed.insert(tgid) {
                self.set
                    .skel
                    .maps
                    .targets
                    .update(&tgid.to_ne_bytes(), &[1], MapFlags::ANY)
                    .map_err(|e| Error::Bpf {
                        context: format!("follow process {tgid}"),
                        source: e,
                    })?;
            }
        }
        Ok(())
    }

    /// Every thread's counters, with the time since it got where it is now counted in
    /// (BPF adds it only when the thread moves: a thread on CPU for the whole interval would
    /// otherwise show none of it).
    fn read_all(&self) -> Vec<(u32, types::sched_delay)> {
        let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
            .unwrap_or(0);
        let read = |map: &dyn MapCore, k: &[u8]| map.lookup(k, MapFlags::ANY).ok().flatten();
        let delays = &self.set.skel.maps.delays;
        delays
            .keys()
            .filter_map(|k| {
                let tid = u32::from_ne_bytes(k.as_slice().try_into().ok()?);
                let mut v = types::sched_delay::default();
                plain::copy_from_bytes(&mut v, &read(delays, &k)?).ok()?;
                let mut t = types::sched_thread::default();
                let alive = std::path::Path::new(&format!("/proc/{tid}")).exists();
                if let Some(bytes) = read(&self.set.skel.maps.threads, &k).filter(|_| alive) {
                    if plain::copy_from_bytes(&mut t, &bytes).is_ok() {
                        let pending = now.saturating_sub(t.since_ns);
                        match types::sched_where(t.r#where as u32) {
                            types::sched_where::SCHED_ON_CPU => v.on_cpu_ns += pending,
                            types::sched_where::SCHED_RUNQ => v.runq_ns += pending,
                            types::sched_where::SCHED_SLEEP => v.sleep_ns += pending,
                            types::sched_where::SCHED_BLOCKED => v.blocked_ns += pending,
                            _ => {}
                        }
                    }
                }
                Some((tid, v))
            })
            .collect()
    }
}

fn delta(now: &types::sched_delay, before: Option<&types::sched_delay>) -> types::sched_delay {
    let zero = types::sched_delay::default();
    let b = before.unwrap_or(&zero);
    let mut d = *now;
    d.on_cpu_ns = now.on_cpu_ns.saturating_sub(b.on_cpu_ns);
    d.runq_ns = now.runq_ns.saturating_sub(b.runq_ns);
    d.sleep_ns = now.sleep_ns.saturating_sub(b.sleep_ns);
    d.blocked_ns = now.blocked_ns.saturating_sub(b.blocked_ns);
    d.hardirq_ns = now.hardirq_ns.saturating_sub(b.hardirq_ns);
    d.softirq_ns = now.softirq_ns.saturating_sub(b.softirq_ns);
    d.runq_waits = now.runq_waits.saturating_sub(b.runq_waits);
    for (s, o) in d.runq_slots.iter_mut().zip(b.runq_slots.iter()) {
        *s = s.saturating_sub(*o);
    }
    d
}

impl IntervalSource for SchedProbe {
    type Report = SchedReport;

    fn drain(&mut self) -> Result<SchedReport> {
        let all = self.read_all();
        let mut threads = Vec::new();
        let mut per_process: BTreeMap<u32, (String, Vec<u64>)> = BTreeMap::new();
        let mut total = vec![0u64; types::sched_sizes::SCHED_SLOTS.0 as usize];
        let mut gone = Vec::new();
        for (tid, now) in &all {
            let d = delta(now, self.last.get(tid));
            self.last.insert(*tid, *now);
            if !std::path::Path::new(&format!("/proc/{tid}")).exists() {
                gone.push(*tid);
            }
            let busy = d.on_cpu_ns + d.runq_ns + d.sleep_ns + d.blocked_ns;
            if busy == 0 && d.runq_waits == 0 {
                continue;
            }
            let hist = Log2Hist::from_slots(&d.runq_slots);
            let e = per_process
                .entry(d.tgid)
                .or_insert_with(|| (cstr(&d.comm), vec![0; total.len()]));
            for (i, c) in d.runq_slots.iter().enumerate() {
                e.1[i] += c;
                total[i] += c;
            }
            threads.push(ThreadDelay {
                pid: d.tgid,
                tid: *tid,
                comm: cstr(&d.comm),
                on_cpu_us: d.on_cpu_ns / 1000,
                runq_us: d.runq_ns / 1000,
                sleep_us: d.sleep_ns / 1000,
                blocked_us: d.blocked_ns / 1000,
                hardirq_us: d.hardirq_ns / 1000,
                softirq_us: d.softirq_ns / 1000,
                runq_waits: d.runq_waits,
                runq_max_us: d.runq_max_ns / 1000,
                runq: HistSummary::new("ns", &hist, d.runq_ns),
            });
        }
        // Threads that exited are reported one last time, then forgotten.
        for tid in gone {
            let _ = self.set.skel.maps.delays.delete(&tid.to_ne_bytes());
            let _ = self.set.skel.maps.threads.delete(&tid.to_ne_bytes());
            self.last.remove(&tid);
        }
        threads.sort_by(|a, b| b.runq_us.cmp(&a.runq_us).then(a.tid.cmp(&b.tid)));
        let processes = per_process
            .into_iter()
            .map(|(pid, (comm, slots))| ProcessRunq {
                pid,
                comm,
                runq: HistSummary::new("ns", &Log2Hist::from_slots(&slots), 0),
            })
            .collect();
        self.follow_new()?;
        Ok(SchedReport {
            runq: HistSummary::new("ns", &Log2Hist::from_slots(&total), 0),
            threads,
            processes,
            stats: self.set.stats.delta(),
        })
    }

    fn plan(&self) -> &Plan {
        &self.set.plan
    }
}
