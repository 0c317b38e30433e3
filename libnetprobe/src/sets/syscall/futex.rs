//! Futex waits: each `futex(2)` call that waits (FUTEX_WAIT, WAIT_BITSET, LOCK_PI, LOCK_PI2,
//! WAIT_REQUEUE_PI) is timed from entry to return and counted per (process, futex word,
//! user stack) with a log2 histogram in µs. The word tells which lock; the stack who waits —
//! as far as frame pointers go: a libc built without them (Debian's) ends the stack in its
//! futex wrapper, where `lock_wait`'s uprobes on the lock functions see the callers.
use super::{load, SyscallFilter, POINT_ENTER, POINT_EXIT};
use crate::error::Result;
use crate::hist::{HistSummary, Log2Hist};
use crate::kernel::KernelEnv;
use crate::kit::{self, BpfStats, KitConfig, LoadedSet, StackPolicy};
use crate::probe::Plan;
use crate::run::IntervalSource;
use crate::sets::cpu::MISSED_USER;
use crate::sets::flow::cstr;
use crate::skel::syscall::{types, SyscallSkel};
use crate::symbol::UserSymbolizer;
use serde::Serialize;
use std::num::NonZeroU32;
use std::time::Duration;

/// What to follow.
#[derive(Debug, Clone)]
pub struct FutexOptions {
    /// Which tasks.
    pub filter: SyscallFilter,
    /// Walk the waiting user stacks.
    pub stacks: bool,
    /// Stack map entries.
    pub stack_storage: u32,
    /// The kit's switches.
    pub kit: KitConfig,
}

impl Default for FutexOptions {
    fn default() -> Self {
        Self {
            filter: SyscallFilter::default(),
            stacks: true,
            stack_storage: crate::sets::cpu::DEFAULT_STACK_STORAGE,
            kit: KitConfig::default(),
        }
    }
}

/// The waits of one process on one futex word from one stack, in an interval.
#[derive(Debug, Clone, Serialize)]
pub struct FutexEntry {
    /// Process id.
    pub pid: u32,
    /// A waiting thread's command name.
    pub comm: String,
    /// The futex word's address in the process, hex.
    pub uaddr: String,
    /// Waits that ended.
    pub count: u64,
    /// Time waited, µs.
    pub total_us: u64,
    /// Longest wait, µs.
    pub max_us: u64,
    /// Waits that ended with ETIMEDOUT.
    pub timeouts: u64,
    /// The waits, µs.
    pub wait: HistSummary,
    /// The waiting user stack, leaf first (empty when stacks are off).
    pub stack: Vec<String>,
}

/// One interval of futex waits.
#[derive(Debug, Clone, Serialize)]
pub struct FutexReport {
    /// Most time first.
    pub waits: Vec<FutexEntry>,
    /// Time waited in the interval, µs.
    pub total_us: u64,
    /// BPF-side counters (flattened).
    #[serde(flatten)]
    pub stats: BpfStats,
}

/// A loaded futex-wait probe.
pub struct FutexProbe {
    set: LoadedSet<SyscallSkel<'static>>,
    users: UserSymbolizer,
    announcements: kit::Announcements,
    stacks: bool,
}

impl FutexProbe {
    /// Loads and attaches the set.
    pub fn open(opts: &FutexOptions, env: &KernelEnv) -> Result<Self> {
        let entries = NonZeroU32::new(opts.stack_storage)
            .ok_or_else(|| crate::Error::usage("--stack-storage-size must be at least 1"))?;
        let stacks = if opts.stacks {
            StackPolicy::every_event().with_entries(entries)
        } else {
            StackPolicy::off()
        };
        let set = load(
            env,
            &[POINT_ENTER, POINT_EXIT],
            &opts.filter,
            stacks,
            &opts.kit,
            |c| c.futex = 1,
        )?;
        let announcements = kit::Announcements::new(&set.skel.maps.new_processes)?;
        Ok(Self {
            set,
            users: UserSymbolizer::new(),
            announcements,
            stacks: opts.stacks,
        })
    }

    fn stack(&mut self, k: &types::sc_futex_key) -> Vec<String> {
        match k.user_stack {
            _ if !self.stacks => Vec::new(),
            -1 => Vec::new(),
            id if id < 0 => vec![MISSED_USER.to_string()],
            id => {
                let addrs = self.set.stacks.addrs(id);
                self.users.frames(k.tgid, &addrs)
            }
        }
    }
}

impl IntervalSource for FutexProbe {
    type Report = FutexReport;

    fn wait(&mut self, t: Duration) -> Result<()> {
        self.announcements.take(t, &mut self.users)
    }

    fn drain(&mut self) -> Result<FutexReport> {
        self.announcements.take(Duration::ZERO, &mut self.users)?;
        let raw: Vec<(types::sc_futex_key, types::sc_futex)> =
            kit::drain(&self.set.skel.maps.futex_waits)?;
        let mut waits: Vec<FutexEntry> = raw
            .iter()
            .map(|(k, v)| FutexEntry {
                pid: k.tgid,
                comm: cstr(&v.comm),
                uaddr: format!("0x{:x}", k.uaddr),
                count: v.count,
                total_us: v.total_ns / 1000,
                max_us: v.max_ns / 1000,
                timeouts: v.timeouts,
                wait: HistSummary::new(
                    "us",
                    &Log2Hist::from_slots(&v.slots).with_max(v.max_ns / 1000),
                    v.total_ns / 1000,
                ),
                stack: self.stack(k),
            })
            .collect();
        waits.sort_by(|a, b| {
            b.total_us
                .cmp(&a.total_us)
                .then_with(|| a.pid.cmp(&b.pid))
                .then_with(|| a.uaddr.cmp(&b.uaddr))
        });
        Ok(FutexReport {
            total_us: waits.iter().map(|w| w.total_us).sum(),
            waits,
            stats: self.set.stats.delta(),
        })
    }

    fn plan(&self) -> &Plan {
        &self.set.plan
    }
}
