//! The syscall probe set, on the raw syscall tracepoints: syscalls counted in the kernel per
//! syscall, per (process, syscall) or per (cgroup, syscall), with failures and, on request,
//! their time ([`SyscountProbe`], `perf stat -e 'syscalls:*'` / bcc's syscount); and futex
//! waits timed per (process, futex word, waiting user stack) ([`FutexProbe`]).
//!
//! Syscall numbers are named with the architecture's syscall table (the `syscalls` crate,
//! generated from the kernel's tables: numbers are ABI and never change meaning). Numbers a
//! kernel newer than the table added show as `syscall_N`.
mod futex;
mod names;

pub use futex::{FutexEntry, FutexOptions, FutexProbe, FutexReport};
pub use names::{cgroup_path, errno_number, syscall_name, syscall_number};

use crate::error::Result;
use crate::kernel::KernelEnv;
use crate::kit::{self, BpfStats, KitConfig, LoadSpec, LoadedSet, ProbeSet, StackPolicy};
use crate::probe::{Plan, ProbePoint};
use crate::run::IntervalSource;
use crate::sets::cpu::cgroup_id;
use crate::sets::flow::cstr;
use crate::skel::syscall::{types, SyscallSkel, SyscallSkelBuilder};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

// SAFETY: plain C structs generated from bpf/include/syscall.h; any bytes are valid.
unsafe impl plain::Plain for types::sc_count_key {}
// SAFETY: as above.
unsafe impl plain::Plain for types::sc_count {}
// SAFETY: as above.
unsafe impl plain::Plain for types::sc_futex_key {}
// SAFETY: as above.
unsafe impl plain::Plain for types::sc_futex {}
// SAFETY: as above.
unsafe impl plain::Plain for types::np_kit_config {}

/// Probe point: a syscall begins.
pub const POINT_ENTER: &str = "syscall entry";
/// Probe point: a syscall returns.
pub const POINT_EXIT: &str = "syscall exit";

/// The set as plans and `netprobe_check` see it.
pub struct SyscallSet;

impl ProbeSet for SyscallSet {
    const NAME: &'static str = "syscall";
    const ABOUT: &'static str =
        "syscall counts, failures and time per process or cgroup; futex waits";

    fn probe_points() -> Vec<ProbePoint> {
        vec![
            ProbePoint::tracepoint(
                POINT_ENTER,
                "sc_enter_btf",
                "raw_syscalls/sys_enter",
                "sc_enter_tp",
            ),
            ProbePoint::tracepoint(
                POINT_EXIT,
                "sc_exit_btf",
                "raw_syscalls/sys_exit",
                "sc_exit_tp",
            )
            .required(),
        ]
    }
}

/// Which tasks are counted; checked in BPF first.
#[derive(Debug, Clone, Default)]
pub struct SyscallFilter {
    /// Only this process.
    pub pid: Option<u32>,
    /// Only tasks in this cgroup v2 directory.
    pub cgroup: Option<PathBuf>,
}

/// What a count belongs to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum By {
    /// Per syscall (of every counted task together).
    #[default]
    Syscall,
    /// Per process and syscall (bcc's `-P`).
    Process,
    /// Per cgroup and syscall.
    Cgroup,
}

/// What syscount counts.
#[derive(Debug, Clone, Default)]
pub struct SyscountOptions {
    /// Which tasks.
    pub filter: SyscallFilter,
    /// Per what.
    pub by: By,
    /// Only this syscall (its number).
    pub syscall: Option<u32>,
    /// Time each call, entry to return (bcc's `-L`).
    pub timed: bool,
    /// Failed calls only (bcc's `-x`).
    pub failures: bool,
    /// Only calls that failed with this errno (bcc's `-e`).
    pub errno: Option<i32>,
    /// The kit's switches.
    pub kit: KitConfig,
}

/// One syscall's interval (of one process or cgroup with [`By`]).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SyscallEntry {
    /// Syscall name (`read`, or `syscall_N` for a number the table does not know).
    pub syscall: String,
    /// Its number on this architecture.
    pub nr: u32,
    /// With [`By::Process`]: the process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// With [`By::Process`]: its command name; otherwise a caller's.
    pub comm: String,
    /// With [`By::Cgroup`]: the cgroup's path under the cgroup v2 root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// Calls that returned.
    pub count: u64,
    /// Of those, calls that returned an error.
    pub errors: u64,
    /// Time in the calls, ns (timed only, else 0).
    pub total_ns: u64,
    /// Longest call, ns (timed only).
    pub max_ns: u64,
}

/// One interval of syscall counts.
#[derive(Debug, Clone, Serialize)]
pub struct SyscountReport {
    /// Most calls first.
    pub syscalls: Vec<SyscallEntry>,
    /// Calls in the interval.
    pub total: u64,
    /// Whether calls were timed.
    pub timed: bool,
    /// BPF-side counters (flattened).
    #[serde(flatten)]
    pub stats: BpfStats,
}

/// Loads the set with only `points` attached; `configure` fills the rest of `sc_cfg`.
fn load(
    env: &KernelEnv,
    points: &[&'static str],
    filter: &SyscallFilter,
    stacks: StackPolicy,
    kit_cfg: &KitConfig,
    configure: impl FnOnce(&mut types::sc_config),
) -> Result<LoadedSet<SyscallSkel<'static>>> {
    if let Some(p) = filter.pid {
        crate::sets::cpu::check_task("process", p)?;
    }
    let cgroup = filter.cgroup.as_deref().map(cgroup_id).transpose()?;
    let spec = LoadSpec {
        set: SyscallSet::NAME,
        plan: SyscallSet::plan(env).only(points),
        stacks,
        kit: kit_cfg,
    };
    let pid = filter.pid;
    kit::load(SyscallSkelBuilder::default(), spec, |open, kit_cfg| {
        let ro = crate::kit_rodata!(open, kit_cfg);
        let c = &mut ro.sc_cfg;
        c.tgid = pid.unwrap_or(0);
        c.cgroup_id = cgroup.unwrap_or(0);
        c.only_nr = -1;
        c.futex_nr = libc::SYS_futex as u32;
        configure(c);
        Ok(())
    })
}

/// A loaded syscall counter.
pub struct SyscountProbe {
    set: LoadedSet<SyscallSkel<'static>>,
    by: By,
    timed: bool,
    cgroups: names::CgroupNames,
}

impl SyscountProbe {
    /// Loads and attaches the set (the entry point only when calls are timed).
    pub fn open(opts: &SyscountOptions, env: &KernelEnv) -> Result<Self> {
        let points: &[&'static str] = if opts.timed {
            &[POINT_ENTER, POINT_EXIT]
        } else {
            &[POINT_EXIT]
        };
        let o = opts.clone();
        let set = load(
            env,
            points,
            &opts.filter,
            StackPolicy::off(),
            &opts.kit,
            |c| {
                c.by = match o.by {
                    By::Syscall => types::sc_by::SC_BY_SYSCALL,
                    By::Process => types::sc_by::SC_BY_PROCESS,
                    By::Cgroup => types::sc_by::SC_BY_CGROUP,
                }
                .0 as u8;
                c.timed = o.timed as u8;
                c.failures = o.failures as u8;
                c.errno_only = o.errno.unwrap_or(0);
                c.only_nr = o.syscall.map_or(-1, |n| n as i32);
            },
        )?;
        Ok(Self {
            set,
            by: opts.by,
            timed: opts.timed,
            cgroups: names::CgroupNames::default(),
        })
    }
}

/// Sums the per-CPU (and per-caller) rows of one (owner, syscall).
fn merge(
    rows: Vec<(types::sc_count_key, types::sc_count)>,
) -> BTreeMap<(u64, u32), types::sc_count> {
    let mut out: BTreeMap<(u64, u32), types::sc_count> = BTreeMap::new();
    for (k, v) in rows {
        let e = out
            .entry((k.owner, k.nr))
            .or_insert_with(|| types::sc_count {
                comm: v.comm,
                ..Default::default()
            });
        e.count += v.count;
        e.errors += v.errors;
        e.total_ns += v.total_ns;
        e.max_ns = e.max_ns.max(v.max_ns);
    }
    out
}

impl IntervalSource for SyscountProbe {
    type Report = SyscountReport;

    fn drain(&mut self) -> Result<SyscountReport> {
        let rows = kit::drain(&self.set.skel.maps.counts)?;
        let mut syscalls: Vec<SyscallEntry> = merge(rows)
            .into_iter()
            .map(|((owner, nr), v)| SyscallEntry {
                syscall: syscall_name(nr),
                nr,
                pid: (self.by == By::Process).then_some(owner as u32),
                comm: cstr(&v.comm),
                cgroup: (self.by == By::Cgroup).then(|| self.cgroups.path(owner)),
                count: v.count,
                errors: v.errors,
                total_ns: v.total_ns,
                max_ns: v.max_ns,
            })
            .collect();
        syscalls.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.pid.cmp(&b.pid))
                .then_with(|| a.nr.cmp(&b.nr))
        });
        Ok(SyscountReport {
            total: syscalls.iter().map(|s| s.count).sum(),
            syscalls,
            timed: self.timed,
            stats: self.set.stats.delta(),
        })
    }

    fn plan(&self) -> &Plan {
        &self.set.plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_cpu_rows_of_one_syscall_are_summed() {
        let row = |cpu, count, max_ns| {
            (
                types::sc_count_key {
                    owner: 0,
                    nr: 1,
                    cpu,
                },
                types::sc_count {
                    count,
                    errors: 1,
                    total_ns: 10,
                    max_ns,
                    ..Default::default()
                },
            )
        };
        let m = merge(vec![row(0, 3, 7), row(1, 4, 9)]);
        let v = &m[&(0, 1)];
        assert_eq!((v.count, v.errors, v.total_ns, v.max_ns), (7, 2, 20, 9));
    }
}
