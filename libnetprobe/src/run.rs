//! The loops tools run a set with: interval summaries and event streams, until Ctrl-C,
//! SIGTERM or `--duration`. A tool is flags, options, and one of these.
use crate::cli::IntervalArgs;
use crate::error::Result;
use crate::kernel::netns::Netns;
use crate::kernel::KernelEnv;
use crate::kit::set::SetInfo;
use crate::kit::BpfStats;
use crate::output::{Interval, Out, StreamEnd};
use crate::probe::Plan;
use crate::session::{Session, Tick};
use serde::Serialize;
use std::time::{Duration, Instant, SystemTime};

/// Checks privileges and BTF, discovers the kernel, and handles `--list-probes` for the probe
/// sets the tool uses (`sets`): returns `None` when the plans were printed and the tool should
/// exit.
pub fn start(list_probes: bool, sets: &[SetInfo]) -> Result<Option<KernelEnv>> {
    crate::preflight::check()?;
    let env = KernelEnv::discover()?;
    if list_probes {
        let mut text = String::new();
        for set in sets {
            if sets.len() > 1 {
                text.push_str(&format!("set {} ({}):\n", set.name, set.about));
            }
            text.push_str(&(set.plan)(&env).render());
        }
        crate::output::text(&text)?;
        return Ok(None);
    }
    Ok(Some(env))
}

/// A set read once per interval.
pub trait IntervalSource {
    /// What one interval yields (serializable: it is the body of the JSON envelope).
    type Report: Serialize;
    /// Reads and clears the interval's counts.
    fn drain(&mut self) -> Result<Self::Report>;
    /// The plan in use.
    fn plan(&self) -> &Plan;
    /// How the set is attached, for the ready line: the plan, and what else it chose here.
    fn how(&self) -> String {
        self.plan().summary()
    }
    /// The namespace the set filters on, if any (watched for deletion).
    fn netns(&self) -> Option<&Netns> {
        None
    }
    /// Waits `t` between reports (a set with work between reports polls instead).
    fn wait(&mut self, t: Duration) -> Result<()> {
        std::thread::sleep(t);
        Ok(())
    }
}

/// A set that reports events one by one.
pub trait EventSource {
    /// One decoded event.
    type Event: Serialize;
    /// The JSON `type` of an event line (`drop`).
    const KIND: &'static str;
    /// Waits up to `timeout` and returns the events that arrived.
    fn poll(&mut self, timeout: Duration) -> Result<Vec<Self::Event>>;
    /// BPF counters since the previous call.
    fn stats(&mut self) -> BpfStats;
    /// The plan in use.
    fn plan(&self) -> &Plan;
    /// The namespace the set filters on, if any (watched for deletion).
    fn netns(&self) -> Option<&Netns> {
        None
    }
    /// Has what the set follows ended (a traced command exited)? The run then stops as on
    /// Ctrl-C, after the events still in the ring.
    fn finished(&mut self) -> bool {
        false
    }
}

/// Says once on stderr that a filtered-on namespace was deleted while the tool ran.
#[derive(Default)]
struct NetnsWatch {
    told: bool,
}

impl NetnsWatch {
    fn check(&mut self, tool: &str, ns: Option<&Netns>) {
        let Some(ns) = ns else { return };
        if !self.told && !ns.still_named() {
            self.told = true;
            eprintln!(
                "{tool}: network namespace {} (inode {}) was deleted; the tool keeps it pinned, so its inode is not reused, and counts what is left of it",
                ns.label, ns.inode
            );
        }
    }
}

/// What the text renderer of an interval gets besides the report.
#[derive(Debug, Clone, Copy)]
pub struct IntervalInfo {
    /// Measured interval length.
    pub elapsed: Duration,
    /// The report at exit.
    pub last: bool,
    /// End of the interval.
    pub now: SystemTime,
}

/// Runs `set` until stopped: one report per interval and a final one, as text (from `text`)
/// or as JSON lines in the [`Interval`] envelope.
pub fn run_intervals<S: IntervalSource>(
    tool: &str,
    set: &mut S,
    intervals: &IntervalArgs,
    json: bool,
    text: impl Fn(&S::Report, &IntervalInfo) -> String,
) -> Result<()> {
    run_intervals_with(tool, set, intervals, json, text, |_| {})
}

/// [`run_intervals`], handing every report to `observe` too (a tool that also writes the
/// whole run somewhere at the end: a flame graph).
pub fn run_intervals_with<S: IntervalSource>(
    tool: &str,
    set: &mut S,
    intervals: &IntervalArgs,
    json: bool,
    text: impl Fn(&S::Report, &IntervalInfo) -> String,
    mut observe: impl FnMut(&S::Report),
) -> Result<()> {
    let session = Session::new(intervals.interval, intervals.duration)?;
    let plan = set.plan().summary();
    session.ready(tool, &set.how());
    let mut out = Out::new();
    let mut started = Instant::now();
    let mut watch = NetnsWatch::default();
    session.run(|tick| match tick {
        Tick::Wait(t) => set.wait(t),
        Tick::Report { last } => {
            watch.check(tool, set.netns());
            let report = set.drain()?;
            let info = IntervalInfo {
                elapsed: started.elapsed(),
                last,
                now: SystemTime::now(),
            };
            started = Instant::now();
            observe(&report);
            if json {
                out.json(&Interval {
                    kind: "interval",
                    tool,
                    time: info.now,
                    interval_s: info.elapsed.as_secs_f64(),
                    last,
                    probe: &plan,
                    report: &report,
                })?;
            } else {
                out.text(&text(&report, &info))?;
            }
            out.flush()
        }
    })
}

/// Runs `set` until stopped: one text block (from `text`) or JSON line per event, a line on
/// stderr every second in which events were lost or rate-limited, and a closing line.
pub fn run_events<S: EventSource>(
    tool: &str,
    set: &mut S,
    duration: Option<Duration>,
    json: bool,
    text: impl Fn(&S::Event) -> String,
) -> Result<()> {
    #[derive(Serialize)]
    struct Line<'a, E> {
        #[serde(rename = "type")]
        kind: &'static str,
        #[serde(flatten)]
        event: &'a E,
    }
    let session = Session::new(Duration::from_secs(1), duration)?;
    session.ready(tool, &set.plan().summary());
    let mut out = Out::new();
    let mut events = 0u64;
    let mut total = BpfStats::default();
    let mut watch = NetnsWatch::default();
    let emit = |set: &mut S, out: &mut Out, wait: Duration| -> Result<u64> {
        let evs = set.poll(wait)?;
        for ev in &evs {
            if json {
                out.json(&Line {
                    kind: S::KIND,
                    event: ev,
                })?;
            } else {
                out.text(&text(ev))?;
            }
        }
        out.flush()?;
        Ok(evs.len() as u64)
    };
    session.run(|tick| {
        match tick {
            Tick::Wait(t) => {
                events += emit(set, &mut out, t)?;
                if set.finished() {
                    session.request_stop();
                }
            }
            Tick::Report { last } => {
                watch.check(tool, set.netns());
                if last {
                    events += emit(set, &mut out, Duration::ZERO)?;
                }
                let d = set.stats();
                total.add(d);
                if (d.lost_events > 0 || d.rate_limited > 0) && !json {
                    eprintln!(
                        "{tool}: last second: {} events lost (ring buffer full), {} rate-limited (counted, not shown)",
                        d.lost_events, d.rate_limited
                    );
                }
                if last {
                    if json {
                        out.json(&StreamEnd {
                            kind: "summary",
                            tool,
                            events,
                            stats: total,
                        })?;
                    } else {
                        out.text(&format!("{events} events reported; {}\n", total.line()))?;
                    }
                    out.flush()?;
                }
            }
        }
        Ok(())
    })
}
