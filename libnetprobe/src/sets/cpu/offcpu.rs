//! Off-CPU time: a wanted thread's block starts when `sched_switch` takes it off its CPU
//! (its stacks are walked then, in its own context) and ends when it is switched back in;
//! the time is added to its (process, thread, stacks, state) in the kernel.
use super::{load, Common, Namer, Stack, StackChoice, TaskFilter, POINT_SWITCH};
use crate::error::Result;
use crate::kernel::KernelEnv;
use crate::kit::{self, BpfStats, KitConfig, LoadedSet};
use crate::probe::Plan;
use crate::run::IntervalSource;
use crate::skel::cpu::{types, CpuSkel};
use serde::Serialize;
use std::time::Duration;

/// What to measure.
#[derive(Debug, Clone)]
pub struct OffCpuOptions {
    /// Which tasks are followed.
    pub filter: TaskFilter,
    /// Which stacks are walked.
    pub stacks: StackChoice,
    /// Only blocks that began in this task state (`TASK_INTERRUPTIBLE` 1,
    /// `TASK_UNINTERRUPTIBLE` 2, 0 for preempted), as bcc's `--state`.
    pub state: Option<u32>,
    /// Shorter blocks are not counted (bcc's `-m`, default 1 µs).
    pub min_block: Duration,
    /// Longer blocks are not counted (bcc's `-M`).
    pub max_block: Option<Duration>,
    /// Stack map entries.
    pub stack_storage: u32,
    /// A thread that blocks again where it blocked before (same syscall, same user registers)
    /// reuses the stacks walked there, and walks them afresh every `stack_refresh`-th time:
    /// times and counts stay exact, while a switch storm walks a stack once in this many blocks.
    /// 1 walks at every block (bcc's way). Preempted threads, kernel threads and kernels
    /// without `bpf_task_pt_regs` (before 5.15) are walked at every block.
    pub stack_refresh: u32,
    /// The kit's switches.
    pub kit: KitConfig,
}

impl Default for OffCpuOptions {
    fn default() -> Self {
        Self {
            filter: TaskFilter::default(),
            stacks: StackChoice::default(),
            state: None,
            min_block: Duration::from_micros(1),
            max_block: None,
            stack_storage: super::DEFAULT_STACK_STORAGE,
            stack_refresh: DEFAULT_STACK_REFRESH,
            kit: KitConfig::default(),
        }
    }
}

/// Blocks at one site per stack walk, by default (see [`OffCpuOptions::stack_refresh`]).
pub const DEFAULT_STACK_REFRESH: u32 = 64;

/// The letter `ps` shows for a task state a block began in.
pub fn state_letter(state: u32) -> &'static str {
    match state {
        0 => "R",
        s if s & 1 != 0 => "S",
        s if s & 2 != 0 => "D",
        s if s & 4 != 0 => "T",
        s if s & 8 != 0 => "t",
        _ => "?",
    }
}

/// One blocked stack and its time off CPU.
#[derive(Debug, Clone, Serialize)]
pub struct OffCpuEntry {
    /// Whose stack, and its frames.
    #[serde(flatten)]
    pub stack: Stack,
    /// The task state the blocks began in (`R`: preempted, `S`, `D`, …).
    pub state: &'static str,
    /// Time off CPU, microseconds.
    pub us: u64,
}

/// One interval of off-CPU time.
#[derive(Debug, Clone, Serialize)]
pub struct OffCpuReport {
    /// Total off-CPU time of the interval's stacks, microseconds.
    pub total_us: u64,
    /// Stacks, most time first.
    pub stacks: Vec<OffCpuEntry>,
    /// BPF-side counters (flattened).
    #[serde(flatten)]
    pub stats: BpfStats,
}

/// A loaded off-CPU probe.
pub struct OffCpuProbe {
    set: LoadedSet<CpuSkel<'static>>,
    namer: Namer,
    task_storage: bool,
    stack_refresh: u32,
}

impl OffCpuProbe {
    /// Loads and attaches the set.
    pub fn open(opts: &OffCpuOptions, env: &KernelEnv) -> Result<Self> {
        if opts.max_block.is_some_and(|m| m < opts.min_block) {
            return Err(crate::Error::usage(
                "-M/--max-block-time is below -m/--min-block-time: no block can be counted",
            ));
        }
        let common = Common {
            filter: &opts.filter,
            stacks: opts.stacks,
            stack_storage: opts.stack_storage,
            sites: opts.stack_storage,
        };
        if opts.stack_refresh == 0 {
            return Err(crate::Error::usage(
                "--stack-refresh must be at least 1 (1: walk the stacks at every block)",
            ));
        }
        let (state, min, max, refresh) = (
            opts.state,
            opts.min_block,
            opts.max_block,
            opts.stack_refresh,
        );
        let set = load(env, POINT_SWITCH, common, &opts.kit, |c| {
            if let Some(s) = state {
                c.has_state = 1;
                c.state = s;
            }
            c.min_block_ns = min.as_nanos() as u64;
            c.max_block_ns = max.map_or(0, |m| m.as_nanos() as u64);
            c.stack_refresh = refresh;
        })?;
        let namer = Namer::new(&set, opts.stacks)?;
        let task_storage = super::has_task_storage(env);
        Ok(Self {
            set,
            namer,
            task_storage,
            stack_refresh: opts.stack_refresh,
        })
    }
}

impl IntervalSource for OffCpuProbe {
    type Report = OffCpuReport;

    fn wait(&mut self, t: Duration) -> Result<()> {
        self.namer.take_announcements(t)
    }

    fn drain(&mut self) -> Result<OffCpuReport> {
        self.namer.take_announcements(Duration::ZERO)?;
        if let Some(bss) = self.set.skel.maps.bss_data.as_deref_mut() {
            // Threads add what they accumulated before this drain at their next block's end.
            // SAFETY: a valid, aligned u32 in the object's mmapped .bss.
            unsafe {
                let gen = std::ptr::read_volatile(&bss.cpu_drain_gen);
                std::ptr::write_volatile(&mut bss.cpu_drain_gen, gen.wrapping_add(1));
            }
        }
        let raw: Vec<(types::cpu_stack_key, u64)> = kit::drain(&self.set.skel.maps.counts)?;
        let mut stacks: Vec<OffCpuEntry> = raw
            .iter()
            .map(|(k, ns)| OffCpuEntry {
                stack: self.namer.stack(&mut self.set, k),
                state: state_letter(k.state),
                us: ns / 1000,
            })
            .collect();
        stacks.sort_by(|a, b| b.us.cmp(&a.us).then_with(|| a.stack.cmp(&b.stack)));
        // The stack map is not emptied between intervals: threads blocked now hold ids in it.
        let stats = self.set.stats.delta();
        Ok(OffCpuReport {
            total_us: stacks.iter().map(|e| e.us).sum(),
            stacks,
            stats,
        })
    }

    fn plan(&self) -> &Plan {
        &self.set.plan
    }

    fn how(&self) -> String {
        let tp_btf = self
            .set
            .plan
            .chosen()
            .any(|c| c.kind == crate::probe::ProbeKind::TpBtf);
        let state = if self.task_storage && tp_btf && self.stack_refresh > 1 {
            format!(
                "blocks in task storage, stacks walked once in {} blocks per call site",
                self.stack_refresh
            )
        } else if self.task_storage && tp_btf {
            "blocks in task storage, stacks walked at every block".to_string()
        } else {
            "blocks in a hash, stacks walked at every block".to_string()
        };
        format!("{} ({state})", self.set.plan.summary())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_like_ps() {
        assert_eq!(state_letter(0), "R");
        assert_eq!(state_letter(1), "S");
        assert_eq!(state_letter(2), "D");
        assert_eq!(state_letter(0x402), "D");
    }
}
