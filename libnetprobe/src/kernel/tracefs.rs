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

/// Offset and size, bytes, of field `field` in the records of tracepoint `category/name`, from
/// its `format` file (the kernel's own layout: for classic tracepoints of modules without BTF).
pub fn field_layout(tracefs: &Path, category: &str, name: &str, field: &str) -> Option<(u32, u32)> {
    let path = tracefs
        .join("events")
        .join(category)
        .join(name)
        .join("format");
    parse_field(&std::fs::read_to_string(path).ok()?, field)
}

/// `field:unsigned int gsi;\toffset:8;\tsize:4;\tsigned:0;` -> (8, 4) for `gsi`.
fn parse_field(format: &str, field: &str) -> Option<(u32, u32)> {
    format.lines().find_map(|line| {
        let mut parts = line.trim().split(';').map(str::trim);
        let decl = parts.next()?.strip_prefix("field:")?;
        let decl_name = decl.rsplit([' ', '*']).next()?;
        if decl_name != field {
            return None;
        }
        let (mut offset, mut size) = (None, None);
        for p in parts {
            if let Some(v) = p.strip_prefix("offset:") {
                offset = v.parse().ok();
            } else if let Some(v) = p.strip_prefix("size:") {
                size = v.parse().ok();
            }
        }
        Some((offset?, size?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_format_file_gives_field_offsets() {
        let format = "name: kvm_set_irq\nID: 40\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\n\tfield:unsigned int gsi;\toffset:8;\tsize:4;\tsigned:0;\n\tfield:int level;\toffset:12;\tsize:4;\tsigned:1;\n\tfield:void * work;\toffset:16;\tsize:8;\tsigned:0;\n";
        assert_eq!(parse_field(format, "gsi"), Some((8, 4)));
        assert_eq!(parse_field(format, "level"), Some((12, 4)));
        assert_eq!(parse_field(format, "work"), Some((16, 8)));
        assert_eq!(parse_field(format, "pin"), None);
    }
}
