//! Output in one place: text tables, headers, local time, JSON lines, and the interval
//! envelope every summary tool's JSON uses. Every write reports its failure: a full disk
//! is an error, never a silent exit 0 (a closed pipe ends the process quietly, by SIGPIPE).
use crate::error::{Error, Result};
use serde::{Serialize, Serializer};
use std::io::{BufWriter, Stdout, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub mod cpu;
pub mod drop;
pub mod kvm;
pub mod latency;
pub mod ovs;
pub mod proctrace;
pub mod sched;
pub mod syscall;
pub mod table;
pub mod tun;
pub mod uprobe;
pub mod vhost;
pub mod virtio;
pub use table::Table;

/// Buffered stdout: callers write a batch (an interval report, a poll's events) and flush
/// once, so a busy stream costs one write per batch, not per line.
pub struct Out {
    w: BufWriter<Stdout>,
}

impl Default for Out {
    fn default() -> Self {
        Self::new()
    }
}

impl Out {
    /// Stdout with a 64 KiB buffer.
    pub fn new() -> Self {
        Self {
            w: BufWriter::with_capacity(64 * 1024, std::io::stdout()),
        }
    }

    /// Appends one JSON object on one line.
    pub fn json<T: Serialize>(&mut self, value: &T) -> Result<()> {
        serde_json::to_writer(&mut self.w, value).map_err(|e| match e.io_error_kind() {
            Some(_) => Error::Output(e.into()),
            None => Error::Output(std::io::Error::other(e)),
        })?;
        self.w.write_all(b"\n").map_err(Error::Output)
    }

    /// Appends text.
    pub fn text(&mut self, s: &str) -> Result<()> {
        self.w.write_all(s.as_bytes()).map_err(Error::Output)
    }

    /// Writes what is buffered.
    pub fn flush(&mut self) -> Result<()> {
        self.w.flush().map_err(Error::Output)
    }
}

/// Prints one JSON object on one line of stdout, now.
pub fn json_line<T: Serialize>(value: &T) -> Result<()> {
    let mut out = Out::new();
    out.json(value)?;
    out.flush()
}

/// Prints text to stdout, now.
pub fn text(s: &str) -> Result<()> {
    let mut out = Out::new();
    out.text(s)?;
    out.flush()
}

/// Local time as `YYYY-MM-DD HH:MM:SS.mmm`. The date and time of the last second seen is
/// kept, so an event stream formats a second once, not once per event.
pub fn local_time(t: SystemTime) -> String {
    thread_local! {
        static LAST: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != d.as_secs() {
            *last = (d.as_secs(), local_seconds(d.as_secs()));
        }
        format!("{}.{:03}", last.1, d.subsec_millis())
    })
}

fn local_seconds(secs: u64) -> String {
    let secs = secs as libc::time_t;
    // SAFETY: localtime_r only writes into the tm we pass.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&secs, &mut tm);
        tm
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
    )
}

/// Serializes a `SystemTime` as [`local_time`] (for `#[serde(serialize_with)]`).
pub fn serialize_local_time<S: Serializer>(
    t: &SystemTime,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&local_time(*t))
}

/// The header line of an interval report.
pub fn interval_header(tool: &str, interval: Duration, now: SystemTime) -> String {
    format!(
        "=== {} | {tool} | interval {:.1} s ===\n",
        local_time(now),
        interval.as_secs_f64()
    )
}

/// An interval report as one JSON object (`"type": "interval"`), around any set's report.
#[derive(Debug, Serialize)]
pub struct Interval<'a, R> {
    /// Always `interval`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Tool name.
    pub tool: &'a str,
    /// Local time at the end of the interval.
    #[serde(serialize_with = "serialize_local_time")]
    pub time: SystemTime,
    /// Interval length, seconds.
    pub interval_s: f64,
    /// True for the report printed at exit.
    #[serde(rename = "final")]
    pub last: bool,
    /// Attach plan in use.
    pub probe: &'a str,
    /// The set's report (flattened).
    #[serde(flatten)]
    pub report: &'a R,
}

/// The last line of an event stream (`"type": "summary"`).
#[derive(Debug, Serialize)]
pub struct StreamEnd<'a> {
    /// Always `summary`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Tool name.
    pub tool: &'a str,
    /// Events reported.
    pub events: u64,
    /// What went wrong in BPF over the whole run.
    #[serde(flatten)]
    pub stats: crate::kit::BpfStats,
}
