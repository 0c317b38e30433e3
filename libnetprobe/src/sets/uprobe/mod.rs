//! The uprobe probe set: calls of user-space functions chosen by name or glob, in a binary
//! (`-x`) or in what a process maps (`-p`): counted, timed (log2 histograms of call duration),
//! or counted per calling stack. Go functions get uprobes on each RET instead of uretprobes
//! (uretprobes crash Go programs: the trampoline's return address breaks the runtime's stack
//! walk), keyed by goroutine. Binaries of a process are attached through
//! `/proc/PID/map_files/…`, so a target in a container is found by its own files.
pub mod locks;
pub mod resolve;
pub mod rets;

pub use resolve::Function;

use crate::error::{Context, Error, Result};
use crate::hist::{HistSummary, Log2Hist};
use crate::kernel::KernelEnv;
use crate::kit::{self, BpfStats, KitConfig, LoadSpec, LoadedSet, ProbeSet, StackPolicy};
use crate::probe::{Plan, ProbeKind, ProbePoint};
use crate::run::IntervalSource;
use crate::skel::uprobe::{types, UprobeSkel, UprobeSkelBuilder};
use crate::symbol::user::parse_maps_line;
use crate::symbol::UserSymbolizer;
use libbpf_rs::{Link, UprobeOpts};
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;

// SAFETY: plain C structs generated from bpf/include/uprobe.h; any bytes are valid.
unsafe impl plain::Plain for types::up_func_stats {}
// SAFETY: as above.
unsafe impl plain::Plain for types::up_stack_key {}
// SAFETY: as above.
unsafe impl plain::Plain for types::up_stack_val {}
// SAFETY: as above.
unsafe impl plain::Plain for types::np_kit_config {}

/// Functions one run can probe.
pub const MAX_FUNCTIONS: usize = types::up_sizes::UP_MAX_FUNCS.0 as usize;

/// Probe point: a function's entry.
pub const POINT_ENTRY: &str = "function entry";
/// Probe point: a function's return.
pub const POINT_RETURN: &str = "function return";
/// Probe point: a Go function's entry, keyed by goroutine.
pub const POINT_GO_ENTRY: &str = "go function entry";
/// Probe point: a Go function's RET instructions (never a uretprobe on Go).
pub const POINT_GO_RETURN: &str = "go function return";

/// The set as plans and `netprobe_check` see it.
pub struct UprobeSet;

impl ProbeSet for UprobeSet {
    const NAME: &'static str = "uprobe";
    const ABOUT: &'static str = "calls of user-space functions: counts, durations, calling stacks";

    fn probe_points() -> Vec<ProbePoint> {
        vec![
            ProbePoint::named(POINT_ENTRY).or(ProbeKind::Uprobe, "function", "up_entry"),
            ProbePoint::named(POINT_RETURN).or(ProbeKind::Uretprobe, "function", "up_return"),
            ProbePoint::named(POINT_GO_ENTRY).or(ProbeKind::Uprobe, "go function", "up_go_entry"),
            ProbePoint::named(POINT_GO_RETURN).or(
                ProbeKind::Uprobe,
                "go function RET instructions",
                "up_go_return",
            ),
        ]
    }
}

/// What is measured per function.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    /// Calls.
    #[default]
    Count,
    /// Calls and their duration (entry to return).
    Latency,
    /// Calls per calling user stack.
    Stacks,
    /// Calls timed, and the calls at least `min` long counted with their time per calling
    /// user stack (walked at the return, only for those).
    LatencyStacks {
        /// Shorter calls are left out of the stacks (not of the histogram).
        min: std::time::Duration,
    },
}

impl Mode {
    /// Calls are timed.
    pub fn timed(self) -> bool {
        matches!(self, Mode::Latency | Mode::LatencyStacks { .. })
    }

    /// Calls are counted per stack.
    pub fn stacks(self) -> bool {
        matches!(self, Mode::Stacks | Mode::LatencyStacks { .. })
    }
}

/// Where the functions are.
#[derive(Debug, Clone)]
pub enum Target {
    /// A binary or library, in every process that maps it (with `pid`: only that one).
    Binary {
        /// Its path.
        path: PathBuf,
        /// Only calls by this process.
        pid: Option<u32>,
    },
    /// Every executable file a process maps (its binary and libraries).
    Process(u32),
    /// One file a process maps, reached through `/proc/PID/map_files/…` ([`process_binaries`]).
    Mapped {
        /// The process; only its calls are counted.
        pid: u32,
        /// The file's path in the process's maps (for display).
        path: String,
        /// A path to the same file from here.
        via: PathBuf,
    },
}

/// What to trace.
#[derive(Debug, Clone)]
pub struct UprobeOptions {
    /// Where the functions are.
    pub target: Target,
    /// Names or globs (demangled Rust paths, C++ or C names, `main.func` for Go).
    pub patterns: Vec<String>,
    /// What is measured.
    pub mode: Mode,
    /// Only calls by tasks in this cgroup v2 directory.
    pub cgroup: Option<PathBuf>,
    /// The kit's switches.
    pub kit: KitConfig,
}

/// One function's interval.
#[derive(Debug, Clone, Serialize)]
pub struct FunctionEntry {
    /// The function, as matched (demangled).
    pub function: String,
    /// The binary it is in.
    pub binary: String,
    /// Calls.
    pub count: u64,
    /// With `--latency`: the durations of the calls that returned, ns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<HistSummary>,
    /// With `--stacks`: calls per calling stack, most first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stacks: Vec<CallStack>,
}

/// Calls from one user stack.
#[derive(Debug, Clone, Serialize)]
pub struct CallStack {
    /// The calling process.
    pub pid: u32,
    /// Calls.
    pub count: u64,
    /// Timed stacks: the time of those calls, ns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_ns: Option<u64>,
    /// Frames, the caller first (the probed function itself is not repeated).
    pub frames: Vec<String>,
}

/// One interval.
#[derive(Debug, Clone, Serialize)]
pub struct UprobeReport {
    /// Per function, in the order they were resolved.
    pub functions: Vec<FunctionEntry>,
    /// BPF-side counters (flattened).
    #[serde(flatten)]
    pub stats: BpfStats,
}

/// The executable files process `pid` maps, each once: (path in the maps file, a path to the
/// same file from here: `/proc/PID/map_files/START-END`).
pub fn process_binaries(pid: u32) -> Result<Vec<(String, PathBuf)>> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map_err(|e| Error::usage(format!("process {pid}: {e}")))?;
    let mut seen = HashMap::new();
    let mut out = Vec::new();
    for m in maps.lines().filter_map(parse_maps_line) {
        if !m.executable || !m.path.starts_with('/') || seen.contains_key(&m.path) {
            continue;
        }
        seen.insert(m.path.clone(), ());
        let via = PathBuf::from(format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end));
        out.push((m.path, via));
    }
    Ok(out)
}

fn resolve_target(opts: &UprobeOptions) -> Result<(Vec<Function>, Option<u32>)> {
    if opts.patterns.is_empty() {
        return Err(Error::usage("give one or more function names or globs"));
    }
    match &opts.target {
        Target::Binary { path, pid } => {
            if !path.exists() {
                return Err(Error::usage(format!("-x {}: no such file", path.display())));
            }
            let shown = path.display().to_string();
            Ok((resolve::resolve(&shown, path, &opts.patterns)?, *pid))
        }
        Target::Mapped { pid, path, via } => {
            Ok((resolve::resolve(path, via, &opts.patterns)?, Some(*pid)))
        }
        Target::Process(pid) => {
            let mut all = Vec::new();
            let mut missing = Vec::new();
            let bins = process_binaries(*pid)?;
            for p in &opts.patterns {
                let mut found = false;
                for (shown, via) in &bins {
                    if let Ok(f) = resolve::resolve(shown, via, std::slice::from_ref(p)) {
                        found = true;
                        all.extend(f);
                    }
                }
                if !found {
                    missing.push(p.clone());
                }
            }
            if let Some(p) = missing.first() {
                return Err(Error::usage(format!(
                    "no function matches {p:?} in process {pid}'s binary or libraries"
                )));
            }
            all.sort_by(|a, b| (&a.binary, a.file_offset).cmp(&(&b.binary, b.file_offset)));
            all.dedup_by(|a, b| a.binary == b.binary && a.file_offset == b.file_offset);
            Ok((all, Some(*pid)))
        }
    }
}

/// A loaded uprobe set.
pub struct UprobeProbe {
    set: LoadedSet<UprobeSkel<'static>>,
    functions: Vec<Function>,
    mode: Mode,
    /// Cumulative per-function counters at the last report (the maps are never reset).
    last: Vec<types::up_func_stats>,
    users: UserSymbolizer,
    announcements: kit::Announcements,
    /// Return probes first: dropped before the entries, so no return outlives its entry.
    links: Vec<Link>,
}

impl UprobeProbe {
    /// Resolves the functions, loads the set and attaches a uprobe (and a return probe) to
    /// each.
    pub fn open(opts: &UprobeOptions, env: &KernelEnv) -> Result<Self> {
        let (functions, pid) = resolve_target(opts)?;
        if functions.len() > MAX_FUNCTIONS {
            return Err(Error::usage(format!(
                "{} functions match; at most {MAX_FUNCTIONS} can be probed at once: narrow the globs",
                functions.len()
            )));
        }
        // Go functions are counted at their RETs (their entry fires twice when the prologue
        // calls morestack) and timed there: never with uretprobes.
        let go_rets = opts.mode != Mode::Stacks && functions.iter().any(|f| f.go);
        if go_rets && !cfg!(target_arch = "x86_64") {
            return Err(Error::usage(
                "Go functions need x86_64 here (their RET instructions are found by an x86 decoder)",
            ));
        }
        let plain = |go: bool| !go || !go_rets;
        let mut points = Vec::new();
        if functions.iter().any(|f| plain(f.go)) {
            points.push(POINT_ENTRY);
        }
        if opts.mode.timed() && functions.iter().any(|f| plain(f.go)) {
            points.push(POINT_RETURN);
        }
        if go_rets {
            points.extend([POINT_GO_ENTRY, POINT_GO_RETURN]);
        }
        let plan = UprobeSet::plan(env).only(&points);
        let stacks = if opts.mode.stacks() {
            StackPolicy::every_event()
        } else {
            StackPolicy::off()
        };
        let spec = LoadSpec {
            set: UprobeSet::NAME,
            plan,
            stacks,
            kit: &opts.kit,
        };
        let mode = opts.mode;
        let cgroup = opts
            .cgroup
            .as_deref()
            .map(crate::sets::cpu::cgroup_id)
            .transpose()?;
        let set = kit::load(UprobeSkelBuilder::default(), spec, |open, kit_cfg| {
            let ro = crate::kit_rodata!(open, kit_cfg);
            ro.up_cfg.tgid = pid.unwrap_or(0);
            ro.up_cfg.cgroup_id = cgroup.unwrap_or(0);
            ro.up_cfg.latency = mode.timed() as u8;
            ro.up_cfg.stacks = mode.stacks() as u8;
            if let Mode::LatencyStacks { min } = mode {
                ro.up_cfg.stack_min_ns = min.as_nanos() as u64;
            }
            Ok(())
        })
        .map_err(explain_cookie)?;
        let links = attach_all(&set, &functions, pid, mode)?;
        let mut users = UserSymbolizer::new();
        if let Some(p) = pid {
            users.remember(p);
        }
        Ok(Self {
            announcements: kit::Announcements::new(&set.skel.maps.new_processes)?,
            last: vec![types::up_func_stats::default(); functions.len()],
            set,
            functions,
            mode,
            users,
            links,
        })
    }

    /// The functions probed.
    pub fn functions(&self) -> &[Function] {
        &self.functions
    }

    /// Uprobes attached (entries, returns and RET sites).
    pub fn probes(&self) -> usize {
        self.links.len()
    }
}

/// Kernels before 5.15 have no BPF cookie for uprobes, which tells the programs the function.
fn explain_cookie(e: Error) -> Error {
    let text = e.to_string();
    let no_cookie = ["get_attach_cookie", "unknown func", "invalid func"]
        .iter()
        .any(|w| text.contains(w));
    if no_cookie {
        Error::missing(
            "this kernel has no BPF attach cookies for uprobes (bpf_get_attach_cookie, Linux 5.15): the uprobe tools (uprobe_trace, lock_wait) need them",
        )
    } else {
        e
    }
}

fn attach_all(
    set: &LoadedSet<UprobeSkel<'static>>,
    functions: &[Function],
    pid: Option<u32>,
    mode: Mode,
) -> Result<Vec<Link>> {
    let pid = pid.map_or(-1, |p| p as i32);
    let (mut entries, mut returns) = (Vec::new(), Vec::new());
    let progs = &set.skel.progs;
    for (i, f) in functions.iter().enumerate() {
        let opts = |retprobe| UprobeOpts {
            cookie: i as u64,
            retprobe,
            ..UprobeOpts::default()
        };
        let at = |prog: &libbpf_rs::ProgramMut<'_>, offset: u64, retprobe: bool| {
            prog.attach_uprobe_with_opts(pid, &f.attach_path, offset as usize, opts(retprobe))
                .context(|| format!("uprobe on {} in {} (+0x{offset:x})", f.name, f.binary))
        };
        let go_rets = mode != Mode::Stacks && f.go;
        let entry = if go_rets {
            &progs.up_go_entry
        } else {
            &progs.up_entry
        };
        entries.push(at(entry, f.file_offset, false)?);
        if go_rets {
            let code = rets::read_code(&f.attach_path, f.file_offset, f.size)?;
            let sites = rets::ret_offsets(&code);
            if sites.is_empty() {
                return Err(Error::usage(format!(
                    "{}: no RET instruction found in its {} bytes: cannot count its returns",
                    f.name, f.size
                )));
            }
            for r in sites {
                returns.push(at(&progs.up_go_return, f.file_offset + r, false)?);
            }
        } else if mode.timed() {
            returns.push(at(&progs.up_return, f.file_offset, true)?);
        }
    }
    returns.extend(entries);
    Ok(returns)
}

impl UprobeProbe {
    fn stacks_of(&mut self) -> Result<HashMap<u32, Vec<CallStack>>> {
        let raw: Vec<(types::up_stack_key, types::up_stack_val)> =
            kit::drain(&self.set.skel.maps.stack_counts)?;
        let timed = self.mode.timed();
        let mut out: HashMap<u32, Vec<CallStack>> = HashMap::new();
        for (k, v) in raw {
            let walked = self.set.stacks.addrs(k.user_stack);
            let addrs = if k.caller == 0 {
                // Walked at a uretprobe: it begins in the caller.
                walked
            } else {
                // Walked in the probed function; its caller's frame is `caller`, which a
                // frame-pointer walk there skips: splice it in when it is missing.
                let mut a = vec![k.caller];
                a.extend(walked.into_iter().skip(1).filter(|x| *x != k.caller));
                a
            };
            let frames = self.users.return_frames(k.tgid, &addrs);
            out.entry(k.func).or_default().push(CallStack {
                pid: k.tgid,
                count: v.count,
                total_ns: timed.then_some(v.total_ns),
                frames,
            });
        }
        for v in out.values_mut() {
            v.sort_by_key(|b| std::cmp::Reverse((b.total_ns, b.count)));
        }
        Ok(out)
    }
}

impl IntervalSource for UprobeProbe {
    type Report = UprobeReport;

    fn wait(&mut self, t: std::time::Duration) -> Result<()> {
        self.announcements.take(t, &mut self.users)
    }

    fn drain(&mut self) -> Result<UprobeReport> {
        self.announcements
            .take(std::time::Duration::ZERO, &mut self.users)?;
        let now = read_totals(&self.set.skel.maps.funcs, self.functions.len())?;
        let mut stacks = if self.mode.stacks() {
            self.stacks_of()?
        } else {
            HashMap::new()
        };
        let mut functions = Vec::new();
        for (i, f) in self.functions.iter().enumerate() {
            let total = now.get(i).cloned().unwrap_or_default();
            let prev = std::mem::replace(&mut self.last[i], total);
            let slots: Vec<u64> = total
                .slots
                .iter()
                .zip(prev.slots.iter())
                .map(|(a, b)| a.saturating_sub(*b))
                .collect();
            let latency = self.mode.timed().then(|| {
                HistSummary::new(
                    "ns",
                    &Log2Hist::from_slots(&slots),
                    total.total_ns.saturating_sub(prev.total_ns),
                )
            });
            functions.push(FunctionEntry {
                function: f.name.clone(),
                binary: f.binary.clone(),
                // A Go function's calls are its returns (see `open`).
                count: if f.go && self.mode != Mode::Stacks {
                    total.returns.saturating_sub(prev.returns)
                } else {
                    total.calls.saturating_sub(prev.calls)
                },
                latency,
                stacks: stacks.remove(&(i as u32)).unwrap_or_default(),
            });
        }
        let stats = self.set.stats.delta();
        self.set.stacks.end_interval(stats.stack_errors);
        Ok(UprobeReport { functions, stats })
    }

    fn plan(&self) -> &Plan {
        &self.set.plan
    }
}

/// The cumulative counters of the first `n` functions, summed over CPUs.
fn read_totals(map: &dyn libbpf_rs::MapCore, n: usize) -> Result<Vec<types::up_func_stats>> {
    (0..n as u32)
        .map(|key| {
            let per_cpu = map
                .lookup_percpu(&key.to_ne_bytes(), libbpf_rs::MapFlags::ANY)
                .context(|| format!("read function {key}'s counters"))?
                .unwrap_or_default();
            let mut s = types::up_func_stats::default();
            for bytes in per_cpu {
                let mut v = types::up_func_stats::default();
                let _ = plain::copy_from_bytes(&mut v, &bytes);
                s.calls += v.calls;
                s.returns += v.returns;
                s.total_ns += v.total_ns;
                for (a, b) in s.slots.iter_mut().zip(v.slots.iter()) {
                    *a += b;
                }
            }
            Ok(s)
        })
        .collect()
}
