//! pthread lock waits: uprobes on the lock functions of the C library a process really maps
//! (found in its `/proc/PID/maps`: glibc's libc.so.6 since 2.34, libpthread.so.0 before, musl's
//! libc), timed to their return, with the waiting stacks walked at the return — so the
//! callers are named even when the library has no frame pointers.
use super::{process_binaries, resolve, Mode, Target, UprobeOptions};
use crate::error::{Error, Result};
use std::time::Duration;

/// A kind of lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// `pthread_mutex_t`.
    Mutex,
    /// `pthread_rwlock_t` (read and write).
    Rwlock,
}

impl LockKind {
    /// The functions that wait for a lock of this kind (those the library has are probed).
    pub fn functions(self) -> &'static [&'static str] {
        match self {
            LockKind::Mutex => &[
                "pthread_mutex_lock",
                "pthread_mutex_timedlock",
                "pthread_mutex_clocklock",
            ],
            LockKind::Rwlock => &[
                "pthread_rwlock_rdlock",
                "pthread_rwlock_wrlock",
                "pthread_rwlock_timedrdlock",
                "pthread_rwlock_timedwrlock",
                "pthread_rwlock_clockrdlock",
                "pthread_rwlock_clockwrlock",
            ],
        }
    }
}

/// The uprobe options that time the `kinds` of locks of process `pid`, counting the waits of
/// at least `min` per waiting stack. One clear error when the process maps no pthread library
/// (a static or Go binary).
pub fn lock_options(pid: u32, kinds: &[LockKind], min: Duration) -> Result<UprobeOptions> {
    let bins = process_binaries(pid)?;
    let has =
        |path: &str, via, name: &str| resolve::resolve(path, via, &[name.to_string()]).is_ok();
    let (path, via) = bins
        .iter()
        .find(|(path, via)| has(path, via, "pthread_mutex_lock"))
        .ok_or_else(|| {
            Error::usage(format!(
                "process {pid} maps no library with pthread_mutex_lock (a static or Go binary?): lock_wait follows C pthread locks; try futex_wait -p {pid}"
            ))
        })?;
    let patterns: Vec<String> = kinds
        .iter()
        .flat_map(|k| k.functions())
        .filter(|f| has(path, via, f))
        .map(|f| f.to_string())
        .collect();
    Ok(UprobeOptions {
        target: Target::Mapped {
            pid,
            path: path.clone(),
            via: via.clone(),
        },
        patterns,
        mode: Mode::LatencyStacks { min },
        cgroup: None,
        kit: Default::default(),
    })
}
