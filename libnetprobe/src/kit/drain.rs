//! Reading and clearing a set's hash maps once per interval: batched where the kernel can
//! (`BPF_MAP_LOOKUP_AND_DELETE_BATCH`, 5.6+), key by key where it cannot.
use crate::error::{Context, Result};
use libbpf_rs::libbpf_sys;
use libbpf_rs::{MapCore, MapFlags};
use std::os::fd::AsRawFd;

/// Entries per batch call.
const BATCH: u32 = 1024;

/// Removes every entry of the hash map `map` and returns them decoded. Entries that change
/// while this runs are read either now or in the next interval, never twice.
pub fn drain<K, V>(map: &dyn MapCore) -> Result<Vec<(K, V)>>
where
    K: plain::Plain + Default,
    V: plain::Plain + Default,
{
    let raw = match drain_batched(map) {
        Some(entries) => entries,
        None => drain_per_key(map),
    };
    Ok(raw
        .into_iter()
        .filter_map(|(k, v)| {
            let (mut key, mut value) = (K::default(), V::default());
            (plain::copy_from_bytes(&mut key, &k).is_ok()
                && plain::copy_from_bytes(&mut value, &v).is_ok())
            .then_some((key, value))
        })
        .collect())
}

type RawEntries = Vec<(Vec<u8>, Vec<u8>)>;

/// `None` when the kernel has no batch operations for this map type.
fn drain_batched(map: &dyn MapCore) -> Option<RawEntries> {
    let (ks, vs) = (map.key_size() as usize, map.value_size() as usize);
    let fd = map.as_fd().as_raw_fd();
    let mut keys = vec![0u8; ks * BATCH as usize];
    let mut values = vec![0u8; vs * BATCH as usize];
    // The batch cursor: the kernel wants room for one key (at least 4 bytes for hash maps).
    let mut in_batch = vec![0u8; ks.max(4)];
    let mut out_batch = vec![0u8; ks.max(4)];
    let mut first = true;
    let mut out = Vec::new();
    loop {
        let mut count = BATCH;
        // Padding fields differ between platforms, hence the struct update.
        #[allow(clippy::needless_update)]
        let opts = libbpf_sys::bpf_map_batch_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_map_batch_opts>() as _,
            elem_flags: 0,
            flags: 0,
            ..Default::default()
        };
        // SAFETY: every buffer holds BATCH keys/values (or one cursor key) of the map's sizes.
        let rc = unsafe {
            libbpf_sys::bpf_map_lookup_and_delete_batch(
                fd,
                if first {
                    std::ptr::null_mut()
                } else {
                    in_batch.as_mut_ptr().cast()
                },
                out_batch.as_mut_ptr().cast(),
                keys.as_mut_ptr().cast(),
                values.as_mut_ptr().cast(),
                &mut count,
                &opts,
            )
        };
        let err = if rc < 0 {
            std::io::Error::last_os_error().raw_os_error()
        } else {
            None
        };
        match err {
            Some(libc::EINVAL) | Some(libc::ENOTSUP) | Some(libc::EOPNOTSUPP) if first => {
                return None
            }
            Some(libc::EINTR) => continue,
            _ => {}
        }
        for i in 0..count as usize {
            out.push((
                keys[i * ks..(i + 1) * ks].to_vec(),
                values[i * vs..(i + 1) * vs].to_vec(),
            ));
        }
        // ENOENT: that was the last batch. Any other error ends the interval's read too; what
        // is left is read next time.
        if err.is_some() {
            return Some(out);
        }
        std::mem::swap(&mut in_batch, &mut out_batch);
        first = false;
    }
}

fn drain_per_key(map: &dyn MapCore) -> RawEntries {
    let keys: Vec<Vec<u8>> = map.keys().collect();
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        let v = match map.lookup_and_delete(&k) {
            Ok(v) => v,
            // Before 5.14 hash maps have no lookup_and_delete.
            Err(_) => {
                let v = map.lookup(&k, MapFlags::ANY).ok().flatten();
                let _ = map.delete(&k);
                v
            }
        };
        if let Some(v) = v {
            out.push((k, v));
        }
    }
    out
}

/// Sets element 0 of an array map to zero (e.g. a per-interval budget).
pub fn reset_u64(map: &dyn MapCore) -> Result<()> {
    map.update(&0u32.to_ne_bytes(), &0u64.to_ne_bytes(), MapFlags::ANY)
        .context(|| format!("reset {}", map.name().to_string_lossy()))
}
