//! Checks before loading anything: privileges, BTF, kptr_restrict. One clear line each.
use crate::error::{Error, Result};
use std::path::Path;

const CAP_SYS_ADMIN: u32 = 21;
const CAP_SYSLOG: u32 = 34;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

fn has(caps: u64, cap: u32) -> bool {
    caps & (1 << cap) != 0
}

/// Fails unless the process may load tracing BPF programs and the kernel has BTF.
pub fn check() -> Result<()> {
    let caps = effective_caps();
    let admin = has(caps, CAP_SYS_ADMIN);
    if !(admin || (has(caps, CAP_BPF) && has(caps, CAP_PERFMON))) {
        return Err(Error::privilege(
            "run as root (or with CAP_BPF and CAP_PERFMON)",
        ));
    }
    if !Path::new(crate::kernel::btf::VMLINUX_BTF).exists() {
        return Err(Error::missing(
            "kernel BTF missing: /sys/kernel/btf/vmlinux does not exist (needs CONFIG_DEBUG_INFO_BTF=y)",
        ));
    }
    let kptr = std::fs::read_to_string("/proc/sys/kernel/kptr_restrict")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(0);
    if kptr >= 2 || (kptr == 1 && !has(caps, CAP_SYSLOG)) {
        return Err(Error::missing(format!(
            "kernel symbols hidden (kernel.kptr_restrict={kptr}): run 'sysctl kernel.kptr_restrict=0' or as root with CAP_SYSLOG"
        )));
    }
    Ok(())
}
