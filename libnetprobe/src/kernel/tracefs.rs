//! tracefs: found where it is mounted, mounted if it is not.
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

const CANDIDATES: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// Returns the tracefs mount point, mounting it on `/sys/kernel/tracing` if needed.
pub fn ensure_mounted() -> Result<PathBuf> {
    if let Some(p) = find() {
        return Ok(p);
    }
    let target = Path::new(CANDIDATES[0]);
    nix::mount::mount(
        Some("tracefs"),
        target,
        Some("tracefs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| {
        Error::missing(format!(
            "tracefs is not mounted and mounting it failed ({e}): run 'mount -t tracefs tracefs /sys/kernel/tracing'"
        ))
    })?;
    find().ok_or_else(|| Error::missing("tracefs mounted but has no events/ directory"))
}

/// The tracefs mount point, if one is mounted.
pub fn find() -> Option<PathBuf> {
    CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("events").is_dir())
}

/// Does tracepoint `category/name` exist?
pub fn has_tracepoint(tracefs: &Path, category: &str, name: &str) -> bool {
    tracefs.join("events").join(category).join(name).is_dir()
}
