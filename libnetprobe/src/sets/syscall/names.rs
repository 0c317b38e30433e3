//! Names of syscall numbers, errnos and cgroup ids.
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The name of syscall `nr` on this architecture (`syscall_N` when the table has none).
pub fn syscall_name(nr: u32) -> String {
    syscalls::Sysno::new(nr as usize)
        .map(|s| s.name().to_string())
        .unwrap_or_else(|| format!("syscall_{nr}"))
}

/// A syscall given by name (`futex`) or number.
pub fn syscall_number(s: &str) -> Result<u32> {
    if let Ok(n) = s.parse::<u32>() {
        return Ok(n);
    }
    s.parse::<syscalls::Sysno>()
        .map(|n| n.id() as u32)
        .map_err(|_| {
            Error::usage(format!(
                "--syscall {s}: no such syscall on this architecture (a name as in 'syscount -l', or a number)"
            ))
        })
}

/// An errno given by name (`ETIMEDOUT`) or number.
pub fn errno_number(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if n > 0 {
            return Ok(n);
        }
    }
    let want = s.to_ascii_uppercase();
    (1..4096)
        .find(|n| syscalls::Errno::new(*n).name() == Some(want.as_str()))
        .ok_or_else(|| {
            Error::usage(format!(
                "--errno {s}: not an errno (a name such as ENOENT, or a positive number)"
            ))
        })
}

/// The cgroup v2 root: `/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on hybrid hosts.
fn cgroup_root() -> Option<PathBuf> {
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .iter()
        .map(PathBuf::from)
        .find(|p| {
            nix::sys::statfs::statfs(p.as_path())
                .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        })
}

/// The path under the cgroup v2 root of the cgroup whose id is `id` (its directory's inode),
/// `None` when no directory has it (the cgroup was removed).
pub fn cgroup_path(id: u64) -> Option<String> {
    let root = cgroup_root()?;
    find_inode(&root, id, 0).map(|p| {
        let rel = p
            .strip_prefix(&root)
            .unwrap_or(&p)
            .to_string_lossy()
            .into_owned();
        format!("/{rel}")
    })
}

fn find_inode(dir: &Path, id: u64, depth: u32) -> Option<PathBuf> {
    if std::fs::metadata(dir).ok()?.ino() == id {
        return Some(dir.to_path_buf());
    }
    if depth > 16 {
        return None;
    }
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .find_map(|e| find_inode(&e.path(), id, depth + 1))
}

/// Cgroup ids named once each.
#[derive(Debug, Default)]
pub(super) struct CgroupNames {
    known: HashMap<u64, String>,
}

impl CgroupNames {
    /// The cgroup's path, or `cgroup <id>` once it is gone.
    pub(super) fn path(&mut self, id: u64) -> String {
        self.known
            .entry(id)
            .or_insert_with(|| cgroup_path(id).unwrap_or_else(|| format!("cgroup {id}")))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscalls_and_errnos_by_name_or_number() {
        let futex = syscall_number("futex").unwrap();
        assert_eq!(futex as i64, libc::SYS_futex);
        assert_eq!(syscall_name(futex), "futex");
        assert_eq!(syscall_number("7").unwrap(), 7);
        assert!(syscall_number("no_such_call").is_err());
        assert_eq!(syscall_name(100_000), "syscall_100000");
        assert_eq!(errno_number("ETIMEDOUT").unwrap(), libc::ETIMEDOUT);
        assert_eq!(errno_number("enoent").unwrap(), libc::ENOENT);
        assert_eq!(errno_number("2").unwrap(), 2);
        assert!(errno_number("EWHAT").is_err());
    }
}
