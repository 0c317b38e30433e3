//! The probe-set kit: everything a set shares with the others, so that a new set is its
//! `.bpf.c`, its header, a small `sets/<set>.rs` and thin tools.
//!
//! - [`load()`]: open → configure `.rodata` → load (failures explained) → attach the plan.
//! - [`StatsReader`] / [`BpfStats`]: the `stats` map of `bpf/include/np_common.h` plus the
//!   programs' recursion misses and run time, as one type every report flattens in.
//! - [`drain()`]: batched read-and-clear of hash maps, with the per-key fallback.
//! - [`take_percpu()`]: read-and-zero of a per-CPU array's old interval generation.
//! - [`EventRing`]: a ring buffer of a skeleton-generated event type.
//! - [`StackPolicy`] / [`StackStore`]: how stacks are walked, and their symbolized frames.
//! - [`ProbeSet`]: a set's name and probe points, for plans and `netprobe_check`.
//! - [`Announcements`]: processes BPF saw first, recorded so their stacks stay named.
//! - [`selftest`]: points whose candidate may attach and never run are proven after attach.
//! - [`crate::run`]: the interval and event loops tools run a set with.
//!
//! See the crate documentation ("Adding a probe set") for a walk-through.
pub mod announce;
pub mod drain;
pub mod load;
pub mod percpu;
pub mod ring;
pub mod selftest;
pub mod set;
pub mod stacks;
pub mod stats;

pub use announce::Announcements;
pub use drain::{drain, reset_u64};
pub use load::{load, LoadSpec, LoadedSet};
pub use percpu::{flip_generation, take_percpu};
pub use ring::EventRing;
pub use set::ProbeSet;
pub use stacks::{StackMode, StackPolicy, StackStore};
pub use stats::{BpfStats, StatsReader};

use crate::error::{Context, Error, Result};
use libbpf_rs::{MapCore, MapHandle, Object};

/// Default event rate limit of a details set, events per second.
pub const DEFAULT_MAX_EVENTS_PER_SEC: u64 = 10_000;

/// The kit's switches in every set's `.rodata` (`struct np_kit_config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KitConfig {
    /// Events per second a details set may submit (0: no limit); above it events are counted
    /// as rate-limited. Split evenly over the online CPUs.
    pub max_events_per_sec: u64,
    /// Wake the reader once this many bytes are waiting in the ring.
    pub wakeup_bytes: u64,
}

impl Default for KitConfig {
    fn default() -> Self {
        Self {
            max_events_per_sec: DEFAULT_MAX_EVENTS_PER_SEC,
            wakeup_bytes: 256 * 1024,
        }
    }
}

type RawKitConfig = crate::skel::kit::types::np_kit_config;
// SAFETY: a plain C struct generated from bpf/include/np_types.h; any bytes are valid.
unsafe impl plain::Plain for RawKitConfig {}

impl KitConfig {
    /// Writes these switches into a set's generated `np_kit` (same header, same layout).
    pub fn write<T: plain::Plain>(&self, dst: &mut T) {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get() as u64)
            .unwrap_or(1);
        let raw = RawKitConfig {
            events_per_cpu_sec: self.max_events_per_sec.div_ceil(cpus),
            wakeup_bytes: self.wakeup_bytes,
        };
        copy_same_layout(dst, &raw);
    }
}

/// Copies a skeleton-generated struct into another skeleton's type of the same C struct.
pub fn copy_same_layout<D: plain::Plain, S: plain::Plain>(dst: &mut D, src: &S) {
    // Checked when the program is built: two structs of different sizes do not compile.
    const {
        assert!(
            std::mem::size_of::<D>() == std::mem::size_of::<S>(),
            "the same C struct from the same header"
        )
    };
    // SAFETY: both are plain C structs; any bytes are valid for D.
    let bytes = unsafe { plain::as_bytes(src) };
    // SAFETY: as above.
    let out = unsafe { plain::as_mut_bytes(dst) };
    out.copy_from_slice(bytes);
}

/// Waits until every BPF program that was running when this was called has finished (an RCU
/// grace period: tracing programs run under `rcu_read_lock`), via `membarrier(GLOBAL)`; where
/// that is refused (nohz_full), a 20 ms pause, far longer than any program runs.
pub fn grace_period() {
    const MEMBARRIER_CMD_GLOBAL: libc::c_long = 1;
    // SAFETY: membarrier takes no pointers; it only waits.
    let rc = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) };
    let single_cpu = std::thread::available_parallelism().map_or(true, |n| n.get() == 1);
    if rc != 0 || single_cpu {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// An owned handle of `object`'s map `name`.
pub fn map_handle(object: &Object, name: &str) -> Result<MapHandle> {
    let map = object
        .maps()
        .find(|m| m.name() == name)
        .ok_or_else(|| Error::MissingMap(name.to_string()))?;
    MapHandle::try_from(&map).context(|| format!("handle of map {name}"))
}
