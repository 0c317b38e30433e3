//! Per-CPU array maps read once per interval. BPF counts into one of two generations of
//! entries, chosen by a generation counter in `.bss`; user space flips the counter, waits out
//! the programs still counting into the old generation ([`super::grace_period`]), then takes
//! the old entries with [`take_percpu`]: no count falls between a read and its reset.
use crate::error::{Context, Result};
use libbpf_rs::{MapCore, MapFlags};
use std::ops::Range;

/// Flips the `.bss` generation counter `counter` (the programs count into entries of
/// generation `counter & 1`), waits out the programs still counting into the old generation,
/// and returns the old one: its entries can then be taken with [`take_percpu`].
pub fn flip_generation(counter: &mut u64) -> u64 {
    // SAFETY: `counter` is a valid, aligned u64 (in the object's mmapped .bss); volatile
    // accesses keep the store from being merged or moved past the grace period.
    let old = unsafe { std::ptr::read_volatile(counter) };
    // SAFETY: as above.
    unsafe { std::ptr::write_volatile(counter, old.wrapping_add(1)) };
    super::grace_period();
    old
}

/// Reads and zeroes entries `keys` of per-CPU array `map`: for each entry that was not all
/// zero on every CPU, its key and its value on each possible CPU (decoded as `T`).
pub fn take_percpu<T: plain::Plain + Default>(
    map: &dyn MapCore,
    keys: Range<u32>,
) -> Result<Vec<(u32, Vec<T>)>> {
    let cpus = libbpf_rs::num_possible_cpus().context(|| "count CPUs".into())?;
    let zeroes = vec![vec![0u8; map.value_size() as usize]; cpus];
    let mut out = Vec::new();
    for key in keys {
        let k = key.to_ne_bytes();
        let per_cpu = map
            .lookup_percpu(&k, MapFlags::ANY)
            .context(|| format!("read {} entry {key}", map.name().to_string_lossy()))?
            .unwrap_or_default();
        if per_cpu.iter().all(|v| v.iter().all(|&b| b == 0)) {
            continue;
        }
        map.update_percpu(&k, &zeroes, MapFlags::ANY)
            .context(|| format!("reset {} entry {key}", map.name().to_string_lossy()))?;
        let values = per_cpu
            .iter()
            .map(|bytes| {
                let mut v = T::default();
                let _ = plain::copy_from_bytes(&mut v, bytes);
                v
            })
            .collect();
        out.push((key, values));
    }
    Ok(out)
}
