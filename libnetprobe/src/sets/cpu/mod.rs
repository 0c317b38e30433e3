//! The cpu probe set: where threads spend CPU time (their stacks sampled on every CPU by the
//! `cpu-clock` perf event, [`profile`]) and where they wait off CPU (`sched_switch`, from
//! switch-out to switch-in, [`offcpu`]), counted per (process, thread, user stack, kernel
//! stack) in the kernel. The task filter (process, thread, cgroup, user or kernel threads)
//! runs before any stack is walked. User stacks are named with [`UserSymbolizer`]: a process
//! is recorded the first time it is counted, so its stacks are named after it exits.
//!
//! User stacks are walked by frame pointers: binaries built without them (`-C
//! force-frame-pointers=yes` for Rust, `-fno-omit-frame-pointer` for C) give one or two frames.
pub mod args;
pub mod offcpu;
pub mod profile;

pub use offcpu::{OffCpuEntry, OffCpuOptions, OffCpuProbe, OffCpuReport, DEFAULT_STACK_REFRESH};
pub use profile::{ProfileEntry, ProfileOptions, ProfileProbe, ProfileReport};

use crate::error::{Error, Result};
use crate::kernel::KernelEnv;
use crate::kit::{self, KitConfig, LoadSpec, LoadedSet, ProbeSet, StackPolicy};
use crate::probe::{ProbeKind, ProbePoint};
use crate::sets::flow::cstr;
use crate::skel::cpu::{types, CpuSkel, CpuSkelBuilder};
use crate::symbol::{leaf, strip_tracing_frames, UserSymbolizer};
use libbpf_rs::MapCore;
use serde::Serialize;
use std::num::NonZeroU32;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

// SAFETY: plain C structs generated from bpf/include/cpu.h; any bytes are valid.
unsafe impl plain::Plain for types::cpu_stack_key {}
// SAFETY: as above.
unsafe impl plain::Plain for types::cpu_leaf_key {}
// SAFETY: as above.
unsafe impl plain::Plain for types::cpu_leaf {}
// SAFETY: as above.
unsafe impl plain::Plain for types::np_kit_config {}

/// Probe point: a cpu-clock sample on some CPU.
pub const POINT_SAMPLE: &str = "cpu sample";
/// Probe point: a context switch.
pub const POINT_SWITCH: &str = "context switch";

/// Stack map entries unless a tool asks otherwise (bcc's `--stack-storage-size`).
pub const DEFAULT_STACK_STORAGE: u32 = 16384;

/// The set as plans and `netprobe_check` see it.
pub struct CpuSet;

impl ProbeSet for CpuSet {
    const NAME: &'static str = "cpu";
    const ABOUT: &'static str = "on-CPU stack samples and off-CPU time per process and stack";

    fn probe_points() -> Vec<ProbePoint> {
        vec![
            ProbePoint::named(POINT_SAMPLE).or(ProbeKind::PerfEvent, "cpu-clock", "cpu_sample"),
            ProbePoint::tracepoint(
                POINT_SWITCH,
                "cpu_switch_btf",
                "sched/sched_switch",
                "cpu_switch_tp",
            ),
        ]
    }
}

/// Which threads are counted (bcc's `-u` / `-k`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Threads {
    /// Every thread.
    #[default]
    All,
    /// User threads only.
    User,
    /// Kernel threads only.
    Kernel,
}

/// Which tasks are counted; checked in BPF before any stack is walked.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    /// Only this process (thread group id).
    pub pid: Option<u32>,
    /// Only this thread.
    pub tid: Option<u32>,
    /// Only tasks in this cgroup v2 directory.
    pub cgroup: Option<std::path::PathBuf>,
    /// User or kernel threads only.
    pub threads: Threads,
}

/// Which stacks are walked (bcc's `-U` / `-K`: user or kernel stacks only), and how
/// frames are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackChoice {
    /// Walk user stacks.
    pub user: bool,
    /// Walk kernel stacks.
    pub kernel: bool,
    /// Name frames `function+0xoffset` (bcc's `-s`).
    pub offsets: bool,
}

impl Default for StackChoice {
    fn default() -> Self {
        Self {
            user: true,
            kernel: true,
            offsets: false,
        }
    }
}

/// The cgroup id BPF compares with (`bpf_get_current_cgroup_id`): the inode of the cgroup v2
/// directory.
pub fn cgroup_id(dir: &Path) -> Result<u64> {
    let meta = std::fs::metadata(dir).map_err(|e| {
        Error::usage(format!(
            "--cgroup {}: {e} (give a cgroup v2 directory, e.g. /sys/fs/cgroup/system.slice/foo.service)",
            dir.display()
        ))
    })?;
    let v2 = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .iter()
        .any(|root| {
            nix::sys::statfs::statfs(*root)
                .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        });
    if !meta.is_dir() || !v2 {
        return Err(Error::usage(format!(
            "--cgroup {}: not a cgroup v2 directory (cgroup v2 is mounted at /sys/fs/cgroup or /sys/fs/cgroup/unified)",
            dir.display()
        )));
    }
    Ok(meta.ino())
}

/// Checks that a process or thread exists now.
pub(crate) fn check_task(kind: &str, id: u32) -> Result<()> {
    if Path::new(&format!("/proc/{id}")).exists() {
        Ok(())
    } else {
        Err(Error::usage(format!("{kind} {id}: no such process")))
    }
}

/// The parts of the BPF configuration both tools share.
struct Common<'a> {
    filter: &'a TaskFilter,
    stacks: StackChoice,
    stack_storage: u32,
    /// Entries of the off-CPU site cache (0 for the profile, which has none).
    sites: u32,
}

/// Does the off-CPU program keep its state in task storage here? It does where the kernel has
/// `bpf_task_pt_regs` (5.15; task storage in tracing programs came in 5.13), the condition the
/// BPF side checks by CO-RE; elsewhere it keeps a hash of blocked threads and walks the stacks
/// at every block.
pub fn has_task_storage(env: &KernelEnv) -> bool {
    env.btf
        .enum_members("bpf_func_id")
        .is_some_and(|m| m.iter().any(|(n, _)| n == "BPF_FUNC_task_pt_regs"))
}

/// Loads the set with only `point` attached.
fn load(
    env: &KernelEnv,
    point: &'static str,
    common: Common<'_>,
    kit_cfg: &KitConfig,
    configure: impl FnOnce(&mut types::cpu_config),
) -> Result<LoadedSet<CpuSkel<'static>>> {
    if let Some(p) = common.filter.pid {
        check_task("process", p)?;
    }
    if let Some(t) = common.filter.tid {
        check_task("thread", t)?;
    }
    let cgroup = common.filter.cgroup.as_deref().map(cgroup_id).transpose()?;
    let plan = CpuSet::plan(env).only(&[point]);
    let entries = NonZeroU32::new(common.stack_storage)
        .ok_or_else(|| Error::usage("--stack-storage-size must be at least 1"))?;
    let walks = common.stacks.user || common.stacks.kernel;
    let stacks = if walks {
        StackPolicy::every_event().with_entries(entries)
    } else {
        StackPolicy::off()
    };
    let spec = LoadSpec {
        set: CpuSet::NAME,
        plan,
        stacks,
        kit: kit_cfg,
    };
    let filter = common.filter.clone();
    let task_storage = has_task_storage(env);
    kit::load(CpuSkelBuilder::default(), spec, |open, kit_cfg| {
        use crate::error::Context;
        open.maps
            .sites
            .set_max_entries(common.sites.max(1))
            .context(|| "size sites".into())?;
        if !task_storage {
            // The programs' task-storage path is dead code on this kernel (the same check, by
            // CO-RE): a map type the kernel may not know is not created.
            open.maps
                .tasks
                .set_autocreate(false)
                .context(|| "turn off the tasks map".into())?;
        }
        let ro = crate::kit_rodata!(open, kit_cfg);
        let c = &mut ro.cpu_cfg;
        c.tgid = filter.pid.unwrap_or(0);
        c.tid = filter.tid.unwrap_or(0);
        c.cgroup_id = cgroup.unwrap_or(0);
        c.threads = match filter.threads {
            Threads::All => types::cpu_threads::CPU_THREADS_ALL,
            Threads::User => types::cpu_threads::CPU_THREADS_USER,
            Threads::Kernel => types::cpu_threads::CPU_THREADS_KERNEL,
        }
        .0 as u8;
        c.user_stacks = common.stacks.user as u8;
        c.kernel_stacks = common.stacks.kernel as u8;
        configure(c);
        Ok(())
    })
}

/// One counted stack: whose it is and its frames, leaf first.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Stack {
    /// Process (thread group) id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// The thread's command name.
    pub comm: String,
    /// User frames, leaf first (inlined functions expanded); empty when not walked.
    pub user: Vec<String>,
    /// Kernel frames, leaf first; empty when not walked.
    pub kernel: Vec<String>,
}

/// A frame that stands for a stack whose walk failed (bcc's wording).
pub const MISSED_USER: &str = "[Missed User Stack]";
/// See [`MISSED_USER`].
pub const MISSED_KERNEL: &str = "[Missed Kernel Stack]";

impl Stack {
    /// The folded line's frames (root first: comm, user frames, then kernel frames), as
    /// `FlameGraph` and inferno read them; `delimited` puts `-` between user and kernel.
    pub fn folded_frames(&self, delimited: bool) -> Vec<String> {
        let mut v = vec![self.comm.clone()];
        v.extend(self.user.iter().rev().cloned());
        if delimited && !self.user.is_empty() && !self.kernel.is_empty() {
            v.push("-".into());
        }
        v.extend(self.kernel.iter().rev().cloned());
        v
    }

    /// The folded line `comm;root;…;leaf value`; `;` inside a name becomes `:`.
    pub fn folded(&self, delimited: bool, value: u64) -> String {
        let frames: Vec<String> = self
            .folded_frames(delimited)
            .into_iter()
            .map(|f| f.replace(';', ":"))
            .collect();
        format!("{} {value}", frames.join(";"))
    }
}

/// Turns BPF stack keys into named [`Stack`]s: kernel names from kallsyms, user names from
/// each process's binaries, recorded when BPF announced the process.
struct Namer {
    users: UserSymbolizer,
    announcements: kit::Announcements,
    offsets: bool,
}

impl Namer {
    fn new(set: &LoadedSet<CpuSkel<'static>>, stacks: StackChoice) -> Result<Self> {
        Ok(Self {
            users: UserSymbolizer::new().with_offsets(stacks.offsets),
            offsets: stacks.offsets,
            announcements: kit::Announcements::new(&set.skel.maps.new_processes)?,
        })
    }

    /// Records the processes BPF saw for the first time, waiting up to `timeout` for one.
    fn take_announcements(&mut self, timeout: Duration) -> Result<()> {
        self.announcements.take(timeout, &mut self.users)
    }

    /// The caller a frame-pointer walk skipped under a frameless leaf ([`leaf::return_slot`]),
    /// from the words BPF copied at the stack's first sample; `None` when nothing was
    /// skipped or it cannot be told.
    fn leaf_caller(
        &mut self,
        set: &LoadedSet<CpuSkel<'static>>,
        tgid: u32,
        stack: i32,
        addrs: &[u64],
    ) -> Option<u64> {
        let leaf = *addrs.first()?;
        let key = types::cpu_leaf_key {
            tgid,
            user_stack: stack,
        };
        // SAFETY: a plain C struct of two 32-bit integers: its bytes are the key.
        let key_bytes = unsafe { plain::as_bytes(&key) };
        let raw = set
            .skel
            .maps
            .leaf_words
            .lookup(key_bytes, libbpf_rs::MapFlags::ANY)
            .ok()??;
        let mut words = types::cpu_leaf::default();
        plain::copy_from_bytes(&mut words, &raw).ok()?;
        let code = self.users.code_before(tgid, leaf)?;
        let caller = *words.words.get(leaf::return_slot(&code)?)?;
        (addrs.get(1) != Some(&caller) && self.users.is_code(tgid, caller)).then_some(caller)
    }

    fn stack(&mut self, set: &mut LoadedSet<CpuSkel<'static>>, k: &types::cpu_stack_key) -> Stack {
        let user = match k.user_stack {
            -1 => Vec::new(),
            id if id < 0 => vec![MISSED_USER.to_string()],
            id => {
                let mut addrs = set.stacks.addrs(id);
                if let Some(caller) = self.leaf_caller(set, k.tgid, id, &addrs) {
                    addrs.insert(1, caller);
                }
                self.users.frames(k.tgid, &addrs)
            }
        };
        let kernel = match k.kernel_stack {
            -1 => Vec::new(),
            id if id < 0 => vec![MISSED_KERNEL.to_string()],
            id => {
                let addrs = set.stacks.addrs(id);
                let mut frames = set.symbols.frames(&addrs);
                strip_tracing_frames(&mut frames);
                frames
                    .into_iter()
                    .map(|f| match (f.func.is_empty(), self.offsets) {
                        (true, _) => format!("0x{:x}", f.addr),
                        (false, true) => format!("{}+0x{:x}", f.func, f.offset),
                        (false, false) => f.func,
                    })
                    .collect()
            }
        };
        Stack {
            pid: k.tgid,
            tid: k.tid,
            comm: cstr(&k.comm),
            user,
            kernel,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_lines_are_root_first_with_the_comm_in_front() {
        let s = Stack {
            pid: 1,
            tid: 1,
            comm: "app".into(),
            user: vec!["leaf".into(), "main".into()],
            kernel: vec!["schedule".into(), "do_nanosleep".into()],
        };
        assert_eq!(s.folded(false, 7), "app;main;leaf;do_nanosleep;schedule 7");
        assert_eq!(s.folded(true, 7), "app;main;leaf;-;do_nanosleep;schedule 7");
    }
}
