//! The run loop every tool shares: intervals, duration, SIGINT/SIGTERM, readiness.
use crate::error::{Error, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The line on stderr that says a tool is attached and counting; tests wait for it.
pub const READY_MARKER: &str = "netprobe: ready";

/// Interval/duration loop that stops cleanly on SIGINT or SIGTERM.
pub struct Session {
    stop: Arc<AtomicBool>,
    interval: Duration,
    deadline: Option<Instant>,
}

impl Session {
    /// Installs the signal handlers; `duration` ends the run on its own.
    pub fn new(interval: Duration, duration: Option<Duration>) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, Arc::clone(&stop))
                .map_err(|e| Error::io("cannot install signal handler", e))?;
        }
        Ok(Self {
            stop,
            interval,
            deadline: duration.map(|d| Instant::now() + d),
        })
    }

    /// Says on stderr that the tool is attached, how, and how to stop it.
    pub fn ready(&self, tool: &str, how: &str) {
        eprintln!("{READY_MARKER}: {tool} attached via {how}; Ctrl-C to stop");
    }

    /// Ends the run at the next step, as a signal would (e.g. the traced command exited).
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Has a signal arrived or the duration passed?
    pub fn finished(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Runs until finished, calling `step` with [`Tick::Wait`] (at most 100 ms: sleep or poll a
    /// ring buffer), with [`Tick::Report`] once per interval, and a last time with `last: true`.
    pub fn run(&self, mut step: impl FnMut(Tick) -> Result<()>) -> Result<()> {
        loop {
            let next = Instant::now() + self.interval;
            loop {
                if self.finished() {
                    return step(Tick::Report { last: true });
                }
                let now = Instant::now();
                if now >= next {
                    break;
                }
                let mut left = next - now;
                if let Some(d) = self.deadline {
                    left = left.min(d.saturating_duration_since(now));
                }
                step(Tick::Wait(left.min(Duration::from_millis(100))))?;
            }
            step(Tick::Report { last: false })?;
        }
    }
}

/// What a [`Session::run`] step should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// Wait (sleep or poll) for at most this long.
    Wait(Duration),
    /// Report the interval; `last` for the final report at exit.
    Report {
        /// True once, at exit.
        last: bool,
    },
}
