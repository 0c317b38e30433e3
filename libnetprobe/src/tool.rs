//! Composition helpers shared by the tool binaries: start-up, plans, the summary loop.
use crate::cli::IntervalArgs;
use crate::error::Result;
use crate::kernel::KernelEnv;
use crate::output::drop::IntervalJson;
use crate::output::drop::{event_text, EventJson};
use crate::probe::Plan;
use crate::session::{Session, Tick};
use crate::sets::drop::{DropProbe, DropSummary};
use std::time::Duration;

/// Checks privileges and BTF, discovers the kernel, and handles `--list-probes`:
/// returns `None` when the plan was printed and the tool should exit.
pub fn start(list_probes: bool, plan_of: impl Fn(&KernelEnv) -> Plan) -> Result<Option<KernelEnv>> {
    crate::preflight::check()?;
    let env = KernelEnv::discover()?;
    if list_probes {
        crate::output::text(&plan_of(&env).render());
        return Ok(None);
    }
    Ok(Some(env))
}

/// Runs a drop summary until Ctrl-C/SIGTERM or `--duration`: one report per interval and a
/// final one, as text (from `text`) or as JSON lines.
pub fn run_drop_summary(
    tool: &str,
    probe: &mut DropProbe,
    intervals: &IntervalArgs,
    json: bool,
    stack_note: &str,
    text: impl Fn(&DropSummary, Duration) -> String,
) -> Result<()> {
    let session = Session::new(intervals.interval, intervals.duration)?;
    let plan = probe.chosen_plan().summary();
    session.ready(tool, &plan);
    let mut last_report = std::time::Instant::now();
    session.run(|tick| match tick {
        Tick::Wait(t) => {
            std::thread::sleep(t);
            Ok(())
        }
        Tick::Report { last } => {
            let summary = probe.drain_summary()?;
            let elapsed = last_report.elapsed();
            last_report = std::time::Instant::now();
            if json {
                crate::output::json_line(&IntervalJson {
                    kind: "interval",
                    tool,
                    time: crate::output::local_time(std::time::SystemTime::now()),
                    interval_s: elapsed.as_secs_f64(),
                    last,
                    probe: plan.clone(),
                    stack_sampling: stack_note.to_string(),
                    summary: &summary,
                });
            } else {
                crate::output::text(&text(&summary, elapsed));
            }
            Ok(())
        }
    })
}

/// Runs a drop details stream until Ctrl-C/SIGTERM or `duration`: one text block or JSON line
/// per dropped packet; lost events are printed every second and counted in the final line.
pub fn run_drop_details(
    tool: &str,
    probe: &mut DropProbe,
    duration: Option<Duration>,
    json: bool,
    verbose: bool,
) -> Result<()> {
    let session = Session::new(Duration::from_secs(1), duration)?;
    session.ready(tool, &probe.chosen_plan().summary());
    let (mut events, mut lost) = (0u64, 0u64);
    let emit = |probe: &mut DropProbe, wait: Duration| -> Result<u64> {
        let evs = probe.poll_events(wait)?;
        for ev in &evs {
            if json {
                crate::output::json_line(&EventJson {
                    kind: "drop",
                    event: ev,
                });
            } else {
                crate::output::text(&event_text(ev, verbose));
            }
        }
        Ok(evs.len() as u64)
    };
    session.run(|tick| {
        match tick {
            Tick::Wait(t) => events += emit(probe, t)?,
            Tick::Report { last } => {
                if last {
                    events += emit(probe, Duration::ZERO)?;
                }
                let d = probe.stats_delta().lost_events;
                lost += d;
                if d > 0 && !json {
                    eprintln!("{tool}: lost {d} events in the last second (ring buffer full)");
                }
                if last {
                    if json {
                        crate::output::json_line(&serde_json::json!({
                            "type": "summary", "tool": tool, "events": events, "lost_events": lost
                        }));
                    } else {
                        crate::output::text(&format!(
                            "{events} drops reported, {lost} lost events\n"
                        ));
                    }
                }
            }
        }
        Ok(())
    })
}
