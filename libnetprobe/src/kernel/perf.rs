//! Software perf events: the per-CPU `cpu-clock` the profile samples with (this kernel may have
//! no hardware PMU; cpu-clock exists everywhere).
use crate::error::{Error, Result};
use std::os::fd::{FromRawFd, OwnedFd};

const PERF_TYPE_SOFTWARE: u32 = 1;
const PERF_COUNT_SW_CPU_CLOCK: u64 = 0;
/// `perf_event_attr.size` of the layout below (`PERF_ATTR_SIZE_VER3`, Linux 3.7).
const ATTR_SIZE: u32 = 96;
const FLAG_DISABLED: u64 = 1;
const FLAG_FREQ: u64 = 1 << 10;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;

/// `struct perf_event_attr` up to `clockid`.
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_freq: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
    config2: u64,
    branch_sample_type: u64,
    sample_regs_user: u64,
    sample_stack_user: u32,
    clockid: i32,
}

const _: () = assert!(std::mem::size_of::<PerfEventAttr>() == ATTR_SIZE as usize);

/// Opens a disabled `cpu-clock` event on `cpu` sampling at `hz` (libbpf enables it when a
/// program is attached to it).
pub fn cpu_clock(cpu: u32, hz: u64) -> Result<OwnedFd> {
    let attr = PerfEventAttr {
        kind: PERF_TYPE_SOFTWARE,
        size: ATTR_SIZE,
        config: PERF_COUNT_SW_CPU_CLOCK,
        sample_freq: hz,
        flags: FLAG_DISABLED | FLAG_FREQ,
        ..Default::default()
    };
    // SAFETY: attr is a valid perf_event_attr of the size it declares; no other pointers.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfEventAttr,
            -1 as libc::pid_t,
            cpu as libc::c_int,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return Err(Error::missing(format!(
            "perf_event_open(cpu-clock, cpu {cpu}, {hz} Hz): {e}{}",
            match e.raw_os_error() {
                Some(libc::EACCES) | Some(libc::EPERM) =>
                    " (root needed, or lower kernel.perf_event_paranoid)",
                Some(libc::EINVAL) =>
                    " (the frequency may exceed kernel.perf_event_max_sample_rate)",
                Some(libc::ENODEV) | Some(libc::ENOENT) => " (this CPU is offline)",
                _ => "",
            }
        )));
    }
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The online CPUs, from `/sys/devices/system/cpu/online` (`0-1,4`).
pub fn online_cpus() -> Result<Vec<u32>> {
    let path = "/sys/devices/system/cpu/online";
    let text =
        std::fs::read_to_string(path).map_err(|e| Error::io(format!("cannot read {path}"), e))?;
    parse_cpu_list(text.trim())
        .ok_or_else(|| Error::missing(format!("{path}: cannot parse {text:?}")))
}

/// Parses a kernel CPU list (`0-3,8,10-11`).
pub fn parse_cpu_list(s: &str) -> Option<Vec<u32>> {
    let mut cpus = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                if a > b {
                    return None;
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().ok()?),
        }
    }
    Some(cpus)
}

/// Can this process sample `cpu-clock`? (One event opened on the first online CPU and closed.)
pub fn cpu_clock_support() -> crate::kernel::Support {
    let cpu = online_cpus()
        .ok()
        .and_then(|c| c.first().copied())
        .unwrap_or(0);
    match cpu_clock(cpu, 99) {
        Ok(_) => crate::kernel::Support::Yes,
        Err(e) => crate::kernel::Support::No(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_like_the_kernel_writes_them() {
        assert_eq!(parse_cpu_list("0"), Some(vec![0]));
        assert_eq!(parse_cpu_list("0-1,4,6-7"), Some(vec![0, 1, 4, 6, 7]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
    }
}
