//! Output in one place: text tables, headers, clocks and JSON lines.
use serde::Serialize;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub mod drop;
pub mod table;
pub use table::Table;

/// Prints one JSON object on one line of stdout.
pub fn json_line<T: Serialize>(value: &T) {
    match serde_json::to_string(value) {
        Ok(s) => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{s}");
            let _ = out.flush();
        }
        Err(e) => eprintln!("netprobe: cannot encode JSON: {e}"),
    }
}

/// Prints text to stdout and flushes, so output shows up promptly through pipes.
pub fn text(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(s.as_bytes());
    let _ = out.flush();
}

/// Local time as `YYYY-MM-DD HH:MM:SS.mmm`.
pub fn local_time(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as libc::time_t;
    // SAFETY: localtime_r only writes into the tm we pass.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&secs, &mut tm);
        tm
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        d.subsec_millis()
    )
}

/// Converts `bpf_ktime_get_ns()` timestamps (CLOCK_MONOTONIC) to wall-clock time.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    offset_ns: i128,
}

impl WallClock {
    /// Samples both clocks now.
    pub fn new() -> Self {
        let mono = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map(|t| t.tv_sec() as i128 * 1_000_000_000 + t.tv_nsec() as i128)
            .unwrap_or(0);
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as i128;
        Self {
            offset_ns: wall - mono,
        }
    }

    /// Wall-clock time of a monotonic timestamp.
    pub fn wall(&self, mono_ns: u64) -> SystemTime {
        let ns = (mono_ns as i128 + self.offset_ns).max(0) as u128;
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    }
}

impl Default for WallClock {
    fn default() -> Self {
        Self::new()
    }
}

/// The header line of an interval report.
pub fn interval_header(tool: &str, interval: Duration, now: SystemTime) -> String {
    format!(
        "=== {} | {tool} | interval {:.1} s ===\n",
        local_time(now),
        interval.as_secs_f64()
    )
}
