//! One BPF stats type for every set: what went wrong in BPF (from the `stats` map of
//! `np_common.h`) and what the programs cost (from `bpf_prog_info`).
use crate::error::{Context, Result};
use crate::probe::Plan;
use libbpf_rs::libbpf_sys;
use libbpf_rs::{MapCore, MapFlags, MapHandle, Object};
use serde::Serialize;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// Counters of one interval (or of a whole run). Reports flatten it into their JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BpfStats {
    /// Events that did not fit in the ring buffer.
    pub lost_events: u64,
    /// Keys that did not fit in a full map.
    pub map_full: u64,
    /// Failed stack walks (stack map full or hash collision).
    pub stack_errors: u64,
    /// Sampled stack walks skipped because the interval's budget was used up.
    pub stacks_skipped: u64,
    /// Events counted but not submitted, above the event rate limit.
    pub rate_limited: u64,
    /// Runs of the set's programs the kernel skipped because one was already running on that
    /// CPU (`bpf_prog_info.recursion_misses`).
    pub recursion_misses: u64,
    /// Time the set's programs ran, ns (only with `kernel.bpf_stats_enabled=1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bpf_run_ns: Option<u64>,
    /// Runs of the set's programs (only with `kernel.bpf_stats_enabled=1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bpf_runs: Option<u64>,
}

impl BpfStats {
    /// Counters since `earlier`.
    pub fn since(self, earlier: BpfStats) -> BpfStats {
        let d = |a: u64, b: u64| a.saturating_sub(b);
        let opt = |a: Option<u64>, b: Option<u64>| a.map(|a| d(a, b.unwrap_or(0)));
        BpfStats {
            lost_events: d(self.lost_events, earlier.lost_events),
            map_full: d(self.map_full, earlier.map_full),
            stack_errors: d(self.stack_errors, earlier.stack_errors),
            stacks_skipped: d(self.stacks_skipped, earlier.stacks_skipped),
            rate_limited: d(self.rate_limited, earlier.rate_limited),
            recursion_misses: d(self.recursion_misses, earlier.recursion_misses),
            bpf_run_ns: opt(self.bpf_run_ns, earlier.bpf_run_ns),
            bpf_runs: opt(self.bpf_runs, earlier.bpf_runs),
        }
    }

    /// Adds `other` to these counters.
    pub fn add(&mut self, other: BpfStats) {
        self.lost_events += other.lost_events;
        self.map_full += other.map_full;
        self.stack_errors += other.stack_errors;
        self.stacks_skipped += other.stacks_skipped;
        self.rate_limited += other.rate_limited;
        self.recursion_misses += other.recursion_misses;
        let sum = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        };
        self.bpf_run_ns = sum(self.bpf_run_ns, other.bpf_run_ns);
        self.bpf_runs = sum(self.bpf_runs, other.bpf_runs);
    }

    /// The "nothing silent" line printed under every report.
    pub fn line(&self) -> String {
        let mut s = format!(
            "lost events: {}  map full: {}  stack errors: {}  sampled stack walks skipped: {}  rate-limited: {}",
            self.lost_events, self.map_full, self.stack_errors, self.stacks_skipped, self.rate_limited
        );
        if self.recursion_misses > 0 {
            s.push_str(&format!("  recursion misses: {}", self.recursion_misses));
        }
        s
    }
}

type RawStats = crate::skel::kit::types::np_stats;
// SAFETY: a plain C struct generated from bpf/include/np_types.h; any bytes are valid.
unsafe impl plain::Plain for RawStats {}

/// Reads a loaded set's counters: its `stats` map and its chosen programs' info.
pub struct StatsReader {
    map: MapHandle,
    progs: Vec<OwnedFd>,
    last: BpfStats,
}

impl StatsReader {
    /// Reader for `object`'s `stats` map and the programs `plan` chose or keeps in reserve.
    pub fn new(object: &Object, plan: &Plan) -> Result<Self> {
        let map = super::map_handle(object, "stats")?;
        let wanted: Vec<&str> = plan
            .chosen()
            .chain(plan.reserves())
            .map(|c| c.program)
            .collect();
        let mut progs = Vec::new();
        for p in object.progs() {
            if wanted.iter().any(|w| p.name() == *w) {
                progs.push(
                    p.as_fd()
                        .try_clone_to_owned()
                        .context(|| "dup program fd".into())?,
                );
            }
        }
        Ok(Self {
            map,
            progs,
            last: BpfStats::default(),
        })
    }

    /// Cumulative counters since load, summed over CPUs.
    pub fn total(&self) -> BpfStats {
        let mut s = BpfStats::default();
        if let Ok(Some(per_cpu)) = self.map.lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY) {
            for bytes in per_cpu {
                let mut v = RawStats::default();
                if plain::copy_from_bytes(&mut v, &bytes).is_ok() {
                    s.lost_events += v.lost_events;
                    s.map_full += v.map_full;
                    s.stack_errors += v.stack_errors;
                    s.stacks_skipped += v.stacks_skipped;
                    s.rate_limited += v.rate_limited;
                }
            }
        }
        for fd in &self.progs {
            if let Some(info) = prog_info(fd) {
                s.recursion_misses += info.recursion_misses;
                if info.run_cnt > 0 || info.run_time_ns > 0 {
                    *s.bpf_run_ns.get_or_insert(0) += info.run_time_ns;
                    *s.bpf_runs.get_or_insert(0) += info.run_cnt;
                }
            }
        }
        s
    }

    /// Counters since the previous call (since load on the first).
    pub fn delta(&mut self) -> BpfStats {
        let now = self.total();
        let d = now.since(self.last);
        self.last = now;
        d
    }
}

pub(crate) fn prog_info(fd: &OwnedFd) -> Option<libbpf_sys::bpf_prog_info> {
    // SAFETY: bpf_prog_info is plain data; all-zeroes is valid and asks for no arrays.
    let mut info: libbpf_sys::bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: info/len describe a valid buffer; the kernel writes at most len bytes.
    let rc =
        unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd.as_fd().as_raw_fd(), &mut info, &mut len) };
    (rc == 0).then_some(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_and_sums() {
        let a = BpfStats {
            lost_events: 5,
            bpf_run_ns: Some(100),
            ..Default::default()
        };
        let b = BpfStats {
            lost_events: 7,
            bpf_run_ns: Some(150),
            ..Default::default()
        };
        let d = b.since(a);
        assert_eq!(d.lost_events, 2);
        assert_eq!(d.bpf_run_ns, Some(50));
        let mut t = BpfStats::default();
        t.add(d);
        t.add(d);
        assert_eq!(t.lost_events, 4);
        assert_eq!(t.bpf_run_ns, Some(100));
        assert!(t.line().contains("lost events: 4"));
    }
}
