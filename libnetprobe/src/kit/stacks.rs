//! Kernel stacks: how a set walks them (a [`StackPolicy`]: the stack map's size follows from
//! it) and a [`StackStore`] that symbolizes stack ids without ever serving a stale one.
use crate::skel::kit::types::np_stack_mode;
use crate::symbol::{strip_tracing_frames, Frame, KernelSymbolizer};
use libbpf_rs::{MapCore, MapFlags, MapHandle};
use std::collections::HashMap;
use std::num::NonZeroU32;

/// Stack map entries when a policy walks stacks and no size is given.
pub const DEFAULT_STACK_ENTRIES: u32 = 8192;

/// When stacks are walked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StackMode {
    /// Never.
    Off,
    /// The first event of each key in an interval, then 1 in `every` (0: no more), at most
    /// `budget` sampled walks per interval.
    Sampled {
        /// Walk 1 in this many events of a known key (0: first event only).
        every: u32,
        /// Sampled walks per interval.
        budget: u32,
    },
    /// Every event (a summary then keys by stack).
    EveryEvent,
}

/// How a set walks stacks, and how big its stack map is. The map is sized by the policy, so
/// "walk stacks into a map sized for none" cannot be expressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackPolicy {
    mode: StackMode,
    entries: NonZeroU32,
}

impl StackPolicy {
    /// No stacks.
    pub fn off() -> Self {
        Self {
            mode: StackMode::Off,
            entries: NonZeroU32::MIN,
        }
    }

    /// Sampled stacks (see [`StackMode::Sampled`]).
    pub fn sampled(every: u32, budget: u32) -> Self {
        Self::walking(StackMode::Sampled { every, budget })
    }

    /// A stack for every event.
    pub fn every_event() -> Self {
        Self::walking(StackMode::EveryEvent)
    }

    fn walking(mode: StackMode) -> Self {
        Self {
            mode,
            entries: NonZeroU32::new(DEFAULT_STACK_ENTRIES).unwrap_or(NonZeroU32::MIN),
        }
    }

    /// The same policy with a stack map of `entries` (ignored when stacks are off).
    pub fn with_entries(self, entries: NonZeroU32) -> Self {
        match self.mode {
            StackMode::Off => self,
            _ => Self { entries, ..self },
        }
    }

    /// When stacks are walked.
    pub fn mode(&self) -> StackMode {
        self.mode
    }

    /// Does this policy walk stacks at all?
    pub fn walks(&self) -> bool {
        self.mode != StackMode::Off
    }

    /// Stack map entries to create.
    pub fn map_entries(&self) -> u32 {
        self.entries.get()
    }

    /// The mode as BPF's `enum np_stack_mode`.
    pub fn bpf_mode(&self) -> np_stack_mode {
        match self.mode {
            StackMode::Off => np_stack_mode::NP_STACKS_OFF,
            StackMode::Sampled { .. } => np_stack_mode::NP_STACKS_SAMPLED,
            StackMode::EveryEvent => np_stack_mode::NP_STACKS_EVERY_EVENT,
        }
    }

    /// One line for report headers and JSON.
    pub fn describe(&self) -> String {
        match self.mode {
            StackMode::Off => "stacks: off; counts exact".into(),
            StackMode::EveryEvent => "stacks: walked for every event; counts exact".into(),
            StackMode::Sampled { every, budget } => format!(
                "stacks: first event of each entry, then 1 in {every} (max {budget} walks/interval); counts exact"
            ),
        }
    }
}

/// Symbolized frames of a kernel stack, the tracing machinery at the top removed.
pub fn symbolize(sym: &mut KernelSymbolizer, ips: &[u64]) -> Vec<String> {
    let ips: Vec<u64> = ips.iter().copied().take_while(|a| *a != 0).collect();
    let mut frames = sym.frames(&ips);
    strip_tracing_frames(&mut frames);
    frames.iter().map(Frame::to_string).collect()
}

/// The frames of a stack carried in an event (`struct np_stack`: `ips`, `depth`).
pub fn event_stack(sym: &mut KernelSymbolizer, ips: &[u64], depth: u32) -> Vec<String> {
    let n = (depth as usize).min(ips.len());
    symbolize(sym, &ips[..n])
}

/// Symbolized stacks of a set's `stack_traces` map (summaries; details carry their stack in
/// the event, `np_stack_into`, so no id can outlive its stack there).
///
/// Summaries ask for an interval's ids with [`StackStore::frames`] (cached: a stack map never
/// moves a stored stack) and then call [`StackStore::end_interval`], which empties map and
/// cache together only after the interval's stacks were resolved and only if walks failed.
pub struct StackStore {
    map: MapHandle,
    cache: HashMap<i32, Vec<String>>,
}

impl StackStore {
    /// Store over the stack map `map` (see [`crate::kit::map_handle`]).
    pub fn new(map: MapHandle) -> Self {
        Self {
            map,
            cache: HashMap::new(),
        }
    }

    /// The raw addresses of stack `id` (user stacks too), leaf first; empty when unknown.
    pub fn addrs(&self, id: i32) -> Vec<u64> {
        if id < 0 {
            return Vec::new();
        }
        match self.map.lookup(&id.to_ne_bytes(), MapFlags::ANY) {
            Ok(Some(bytes)) => bytes
                .chunks_exact(8)
                .map(|c| u64::from_ne_bytes(c.try_into().unwrap_or_default()))
                .take_while(|a| *a != 0)
                .collect(),
            _ => Vec::new(),
        }
    }

    fn read(&self, sym: &mut KernelSymbolizer, id: i32) -> Vec<String> {
        let addrs = self.addrs(id);
        if addrs.is_empty() {
            return Vec::new();
        }
        symbolize(sym, &addrs)
    }

    /// Frames of stack `id` (empty for a failed walk, id < 0), cached.
    pub fn frames(&mut self, sym: &mut KernelSymbolizer, id: i32) -> Vec<String> {
        if id < 0 {
            return Vec::new();
        }
        if let Some(f) = self.cache.get(&id) {
            return f.clone();
        }
        let f = self.read(sym, id);
        if !f.is_empty() {
            self.cache.insert(id, f.clone());
        }
        f
    }

    /// Ends a summary interval: if walks failed (`stack_errors` > 0) the map is full or
    /// colliding, so map and cache are emptied together for the next interval.
    pub fn end_interval(&mut self, stack_errors: u64) {
        if stack_errors == 0 {
            return;
        }
        let ids: Vec<Vec<u8>> = self.map.keys().collect();
        for id in ids {
            let _ = self.map.delete(&id);
        }
        self.cache.clear();
    }
}
