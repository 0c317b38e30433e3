//! Per-CPU array maps read once per interval. BPF counts into one of two generations of
//! entries, chosen by a generation counter in `.bss`; user space flips the counter, waits out
//! the programs still counting into the old generation ([`super::grace_period`]), then takes
//! the old entries with [`take_percpu`]: no count falls between a read and its reset.
use crate::error::{Context, Result};
use libbpf_rs::{MapCore, MapFlags};
use std::ops::Range;

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
