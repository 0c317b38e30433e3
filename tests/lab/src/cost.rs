//! What a tool costs while it runs, sampled at the edges of a benchmark window: the run time
//! of the BPF programs it holds (`bpf_prog_info`, counted while BPF stats are enabled) and the
//! CPU time of its process.
use serde::Serialize;
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

const BPF_STATS_SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// Keeps BPF run-time statistics on while it lives: sets `kernel.bpf_stats_enabled=1` (so
/// the tools report `bpf_run_ns`) and holds a `BPF_ENABLE_STATS` descriptor (so the counters
/// keep running even if someone else resets the sysctl). Dropping it restores the sysctl.
pub struct BpfStatsEnabled {
    previous: String,
    _stats_fd: Option<OwnedFd>,
}

impl BpfStatsEnabled {
    /// Turns the statistics on (needs root).
    pub fn enable() -> Result<Self, String> {
        let previous = fs::read_to_string(BPF_STATS_SYSCTL)
            .map_err(|e| format!("read {BPF_STATS_SYSCTL}: {e}"))?
            .trim()
            .to_owned();
        fs::write(BPF_STATS_SYSCTL, "1").map_err(|e| format!("write {BPF_STATS_SYSCTL}: {e}"))?;
        // SAFETY: plain bpf(BPF_ENABLE_STATS) call; a non-negative result is a new descriptor.
        let fd = unsafe {
            libbpf_rs::libbpf_sys::bpf_enable_stats(libbpf_rs::libbpf_sys::BPF_STATS_RUN_TIME)
        };
        // SAFETY: `fd` was just returned by the kernel and nothing else owns it.
        let stats_fd = (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) });
        Ok(Self {
            previous,
            _stats_fd: stats_fd,
        })
    }

    /// The sysctl value found (and restored on drop).
    pub fn previous(&self) -> &str {
        &self.previous
    }
}

impl Drop for BpfStatsEnabled {
    fn drop(&mut self) {
        if let Err(e) = fs::write(BPF_STATS_SYSCTL, &self.previous) {
            eprintln!(
                "could not restore {BPF_STATS_SYSCTL} to {}: {e}",
                self.previous
            );
        }
    }
}

/// Run time and run count of a set of BPF programs, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ProgStats {
    /// Time the programs ran, ns.
    pub run_ns: u64,
    /// Runs of the programs.
    pub runs: u64,
    /// Runs skipped because one was already running on that CPU.
    pub recursion_misses: u64,
}

impl ProgStats {
    /// Counters since `earlier`.
    pub fn since(self, earlier: ProgStats) -> ProgStats {
        ProgStats {
            run_ns: self.run_ns.saturating_sub(earlier.run_ns),
            runs: self.runs.saturating_sub(earlier.runs),
            recursion_misses: self
                .recursion_misses
                .saturating_sub(earlier.recursion_misses),
        }
    }
}

/// A field (`key:\tvalue`) of an fdinfo file.
fn fdinfo_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
}

/// BPF programs held open by this process, so their counters can be read at any time (even
/// after their owner closed them).
pub struct Progs {
    progs: Vec<(u32, OwnedFd)>,
}

impl Progs {
    /// The programs process `pid` holds: every `prog_id:` in `/proc/<pid>/fdinfo/*` (program
    /// and link descriptors alike), each opened here by id.
    pub fn of_process(pid: u32) -> Result<Progs, String> {
        let dir = format!("/proc/{pid}/fdinfo");
        let mut ids: Vec<u32> = fs::read_dir(&dir)
            .map_err(|e| format!("{dir}: {e}"))?
            .filter_map(Result::ok)
            .filter_map(|e| fs::read_to_string(e.path()).ok())
            .filter_map(|t| fdinfo_field(&t, "prog_id").and_then(|id| u32::try_from(id).ok()))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let progs = ids
            .into_iter()
            .map(|id| {
                libbpf_rs::Program::fd_from_id(id)
                    .map(|fd| (id, fd))
                    .map_err(|e| format!("open BPF program {id} of pid {pid}: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Progs { progs })
    }

    /// The program behind `fd` (a program descriptor of this process).
    pub fn of_fd(fd: &OwnedFd) -> Result<Progs, String> {
        Self::of_fds(std::slice::from_ref(fd))
    }

    /// The programs behind `fds` (program descriptors of this process).
    pub fn of_fds(fds: &[OwnedFd]) -> Result<Progs, String> {
        let progs = fds
            .iter()
            .map(|fd| {
                let own = fd
                    .try_clone()
                    .map_err(|e| format!("dup BPF program fd: {e}"))?;
                let id = read_fdinfo(&own).and_then(|t| {
                    fdinfo_field(&t, "prog_id")
                        .and_then(|id| u32::try_from(id).ok())
                        .ok_or_else(|| format!("fd {} is not a BPF program", own.as_raw_fd()))
                })?;
                Ok((id, own))
            })
            .collect::<Result<_, String>>()?;
        Ok(Progs { progs })
    }

    /// Ids of the programs.
    pub fn ids(&self) -> Vec<u32> {
        self.progs.iter().map(|(id, _)| *id).collect()
    }

    /// Current counters, summed over the programs (`run_time_ns` stays 0 while BPF stats
    /// are off; see [`BpfStatsEnabled`]).
    pub fn stats(&self) -> Result<ProgStats, String> {
        let mut sum = ProgStats::default();
        for (_, fd) in &self.progs {
            let text = read_fdinfo(fd)?;
            sum.run_ns += fdinfo_field(&text, "run_time_ns").unwrap_or(0);
            sum.runs += fdinfo_field(&text, "run_cnt").unwrap_or(0);
            sum.recursion_misses += fdinfo_field(&text, "recursion_misses").unwrap_or(0);
        }
        Ok(sum)
    }
}

impl Progs {
    /// Current counters of each program, by its name (programs of one name summed), sorted by
    /// name.
    pub fn by_name(&self) -> Vec<(String, ProgStats)> {
        let mut out: std::collections::BTreeMap<String, ProgStats> = Default::default();
        for info in libbpf_rs::query::ProgInfoIter::default() {
            if !self.progs.iter().any(|(id, _)| *id == info.id) {
                continue;
            }
            let s = out
                .entry(info.name.to_string_lossy().into_owned())
                .or_default();
            s.run_ns += info.run_time_ns;
            s.runs += info.run_cnt;
            s.recursion_misses += info.recursion_misses;
        }
        out.into_iter().collect()
    }
}

fn read_fdinfo(fd: &OwnedFd) -> Result<String, String> {
    let path = format!("/proc/self/fdinfo/{}", fd.as_raw_fd());
    fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))
}

/// CPU time (user and system) process `pid` has used so far, ns: the sum of the first field
/// of `/proc/<pid>/task/*/schedstat` (ns on CPU, per thread), or `utime + stime` of
/// `/proc/<pid>/stat` in clock ticks where schedstat is missing.
pub fn process_cpu_ns(pid: u32) -> Result<u64, String> {
    let dir = format!("/proc/{pid}/task");
    let tasks: Vec<_> = fs::read_dir(&dir)
        .map_err(|e| format!("{dir}: {e}"))?
        .filter_map(Result::ok)
        .collect();
    let on_cpu: Option<u64> = tasks
        .iter()
        .map(|t| {
            let text = fs::read_to_string(t.path().join("schedstat")).ok()?;
            text.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum();
    if let Some(ns) = on_cpu {
        return Ok(ns);
    }
    let path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    // Fields after the parenthesised comm; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    let [utime, stime] = f[..] else {
        return Err(format!("{path}: unexpected format: {stat}"));
    };
    // SAFETY: sysconf has no preconditions.
    let tick = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100);
    Ok((utime + stime) * 1_000_000_000 / tick.max(1))
}

/// The counters a netprobe tool reports about itself in its JSON output.
pub const REPORTED: [&str; 8] = [
    "lost_events",
    "rate_limited",
    "map_full",
    "stack_errors",
    "stacks_skipped",
    "recursion_misses",
    "bpf_run_ns",
    "bpf_runs",
];

/// The [`REPORTED`] counters of a tool's JSON `lines`, summed over its `"type":"interval"`
/// lines and its closing `"type":"summary"` line, plus `tool_drops`: the drops it counted
/// (`total` of the interval lines, `events` of the summary line).
pub fn reported_counters<S: AsRef<str>>(
    lines: impl IntoIterator<Item = S>,
) -> BTreeMap<&'static str, u64> {
    let mut fields: Vec<(&str, &str)> = REPORTED.iter().map(|k| (*k, *k)).collect();
    fields.extend([("tool_drops", "total"), ("tool_drops", "events")]);
    let mut out = BTreeMap::new();
    for line in lines {
        let line = line.as_ref();
        if !line.contains(r#""type":"interval""#) && !line.contains(r#""type":"summary""#) {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
        for (key, field) in &fields {
            if let Some(n) = v[field].as_u64() {
                *out.entry(*key).or_default() += n;
            }
        }
    }
    out
}

/// The complete lines among the last `max_bytes` of the file at `path` (empty if unreadable):
/// a long event stream's closing report without reading the stream.
pub fn tail_lines(path: &Path, max_bytes: u64) -> Vec<String> {
    let mut buf = String::new();
    if let Ok(mut f) = fs::File::open(path) {
        let start = f
            .metadata()
            .map_or(0, |m| m.len())
            .saturating_sub(max_bytes);
        let _ = f
            .seek(SeekFrom::Start(start))
            .and_then(|_| f.read_to_string(&mut buf));
        if start > 0 {
            buf.drain(..buf.find('\n').map_or(buf.len(), |i| i + 1));
        }
    }
    buf.lines().map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo_fields_parse() {
        let t = "pos:\t0\nprog_id:\t882\nrun_time_ns:\t12\nrun_cnt:\t3\n";
        assert_eq!(fdinfo_field(t, "prog_id"), Some(882));
        assert_eq!(fdinfo_field(t, "run_cnt"), Some(3));
        assert_eq!(fdinfo_field(t, "run"), None);
    }

    #[test]
    fn reported_counters_sum_intervals_and_summary() {
        let lines = [
            r#"{"type":"interval","total":5,"lost_events":1,"bpf_run_ns":10}"#,
            r#"{"type":"drop","total":100}"#,
            r#"{"type":"interval","total":7,"lost_events":0}"#,
            r#"{"type":"summary","events":3,"rate_limited":9}"#,
        ];
        let c = reported_counters(lines);
        assert_eq!(c["tool_drops"], 15);
        assert_eq!(
            (c["lost_events"], c["rate_limited"], c["bpf_run_ns"]),
            (1, 9, 10)
        );
    }

    #[test]
    fn own_cpu_time_grows() {
        let a = process_cpu_ns(std::process::id()).unwrap();
        let mut x = 0_u64;
        for i in 0..5_000_000_u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        assert!(process_cpu_ns(std::process::id()).unwrap() > a, "{x}");
    }
}
