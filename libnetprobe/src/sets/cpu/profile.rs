//! On-CPU profile: the `cpu-clock` perf event on every online CPU at a fixed frequency; each
//! sample of a wanted task counts its (process, thread, user stack, kernel stack).
use super::{load, Common, Namer, Stack, StackChoice, TaskFilter, POINT_SAMPLE};
use crate::error::{Context, Result};
use crate::kernel::perf;
use crate::kernel::KernelEnv;
use crate::kit::{self, BpfStats, KitConfig, LoadedSet};
use crate::probe::Plan;
use crate::run::IntervalSource;
use crate::skel::cpu::{types, CpuSkel};
use serde::Serialize;
use std::os::fd::IntoRawFd;
use std::time::Duration;

/// Default sampling frequency (bcc's `profile -F 99`: off the kernel's 100/250/1000 Hz ticks).
pub const DEFAULT_FREQUENCY: u64 = 99;

/// What to profile.
#[derive(Debug, Clone)]
pub struct ProfileOptions {
    /// Which tasks are sampled.
    pub filter: TaskFilter,
    /// Which stacks are walked.
    pub stacks: StackChoice,
    /// Samples per second per CPU.
    pub frequency: u64,
    /// Count samples of the idle task too.
    pub include_idle: bool,
    /// Stack map entries.
    pub stack_storage: u32,
    /// The kit's switches.
    pub kit: KitConfig,
}

impl Default for ProfileOptions {
    fn default() -> Self {
        Self {
            filter: TaskFilter::default(),
            stacks: StackChoice::default(),
            frequency: DEFAULT_FREQUENCY,
            include_idle: false,
            stack_storage: super::DEFAULT_STACK_STORAGE,
            kit: KitConfig::default(),
        }
    }
}

/// One sampled stack and how many samples it got.
#[derive(Debug, Clone, Serialize)]
pub struct ProfileEntry {
    /// Whose stack, and its frames.
    #[serde(flatten)]
    pub stack: Stack,
    /// Samples.
    pub count: u64,
}

/// One interval of samples.
#[derive(Debug, Clone, Serialize)]
pub struct ProfileReport {
    /// Samples per second per CPU.
    pub frequency_hz: u64,
    /// CPUs sampled.
    pub cpus: usize,
    /// Samples counted (of wanted tasks).
    pub samples: u64,
    /// Stacks, most samples first.
    pub stacks: Vec<ProfileEntry>,
    /// BPF-side counters (flattened).
    #[serde(flatten)]
    pub stats: BpfStats,
}

/// A loaded profile: samples counted in the kernel, read once per interval.
pub struct ProfileProbe {
    set: LoadedSet<CpuSkel<'static>>,
    namer: Namer,
    frequency: u64,
    cpus: usize,
}

impl ProfileProbe {
    /// Loads the set and starts sampling every online CPU.
    pub fn open(opts: &ProfileOptions, env: &KernelEnv) -> Result<Self> {
        if opts.frequency == 0 {
            return Err(crate::Error::usage("-F/--frequency must be at least 1 Hz"));
        }
        let common = Common {
            filter: &opts.filter,
            stacks: opts.stacks,
            stack_storage: opts.stack_storage,
            sites: 0,
        };
        let include_idle = opts.include_idle;
        let mut set = load(env, POINT_SAMPLE, common, &opts.kit, |c| {
            c.include_idle = include_idle as u8;
        })?;
        let cpus = perf::online_cpus()?;
        for cpu in &cpus {
            let fd = perf::cpu_clock(*cpu, opts.frequency)?;
            let link = set
                .skel
                .progs
                .cpu_sample
                .attach_perf_event(std::os::fd::AsRawFd::as_raw_fd(&fd))
                .context(|| format!("attach cpu_sample to cpu-clock on CPU {cpu}"))?;
            // The link owns the event now: destroying it disables and closes it.
            let _ = fd.into_raw_fd();
            set.keep(POINT_SAMPLE, link);
        }
        let namer = Namer::new(&set, opts.stacks)?;
        Ok(Self {
            set,
            namer,
            frequency: opts.frequency,
            cpus: cpus.len(),
        })
    }
}

impl IntervalSource for ProfileProbe {
    type Report = ProfileReport;

    fn wait(&mut self, t: Duration) -> Result<()> {
        self.namer.take_announcements(t)
    }

    fn drain(&mut self) -> Result<ProfileReport> {
        self.namer.take_announcements(Duration::ZERO)?;
        let raw: Vec<(types::cpu_stack_key, u64)> = kit::drain(&self.set.skel.maps.counts)?;
        // Samples at different instructions of one function are one named stack.
        let mut merged: std::collections::HashMap<super::Stack, u64> = Default::default();
        for (k, count) in &raw {
            *merged
                .entry(self.namer.stack(&mut self.set, k))
                .or_default() += count;
        }
        let mut stacks: Vec<ProfileEntry> = merged
            .into_iter()
            .map(|(stack, count)| ProfileEntry { stack, count })
            .collect();
        stacks.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.stack.cmp(&b.stack)));
        let stats = self.set.stats.delta();
        if stats.stack_errors > 0 {
            // The stack map is emptied below: its ids will name other stacks.
            let map = &self.set.skel.maps.leaf_words;
            let keys: Vec<Vec<u8>> = libbpf_rs::MapCore::keys(map).collect();
            for k in keys {
                let _ = libbpf_rs::MapCore::delete(map, &k);
            }
        }
        self.set.stacks.end_interval(stats.stack_errors);
        Ok(ProfileReport {
            frequency_hz: self.frequency,
            cpus: self.cpus,
            samples: stacks.iter().map(|e| e.count).sum(),
            stacks,
            stats,
        })
    }

    fn plan(&self) -> &Plan {
        &self.set.plan
    }
}
