//! The self-test of probe points whose chosen candidate can attach and never run (fentry on
//! `irqfd_wakeup` on Debian's 6.12). Once a set is attached, each self-tested point's trigger
//! makes the kernel go through it; if the point's twins (tracepoints on the same path) ran
//! and the candidate did not, its reserve is attached in its place, the plan records why, and
//! one line on stderr says so. Run counts come from `BPF_ENABLE_STATS`, on only for the test.
use super::stats::prog_info;
use crate::probe::{attach_one, Candidate, Choice, Plan};
use libbpf_rs::libbpf_sys;
use libbpf_rs::{Link, Object};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// How long the twins may take to run after the trigger (a kworker injects an irqfd's GSI).
const WAIT: Duration = Duration::from_secs(1);
/// How long the candidate may lag its first twin.
const GRACE: Duration = Duration::from_millis(50);

/// What one self-test found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The candidate ran.
    Runs,
    /// The twins ran and the candidate did not.
    Silent,
    /// Neither ran: the trigger did not reach the point, and nothing is concluded.
    Inconclusive,
}

/// The verdict from the runs of a candidate and of its twins during a test.
pub fn verdict(candidate_runs: u64, twin_runs: u64) -> Verdict {
    match (candidate_runs, twin_runs) {
        (0, 0) => Verdict::Inconclusive,
        (0, _) => Verdict::Silent,
        _ => Verdict::Runs,
    }
}

fn runs(object: &Object, program: &str) -> u64 {
    object
        .progs()
        .find(|p| p.name() == program)
        .and_then(|p| p.as_fd().try_clone_to_owned().ok())
        .and_then(|fd| prog_info(&fd))
        .map_or(0, |i| i.run_cnt)
}

/// Keeps program run counting on while it lives.
struct StatsOn(#[allow(dead_code)] OwnedFd);

impl StatsOn {
    fn enable() -> std::result::Result<Self, String> {
        // SAFETY: takes no pointers; returns a new descriptor or a negative errno.
        let fd = unsafe { libbpf_sys::bpf_enable_stats(libbpf_sys::BPF_STATS_RUN_TIME) };
        if fd < 0 {
            return Err(std::io::Error::from_raw_os_error(-fd).to_string());
        }
        // SAFETY: a new descriptor that nothing else owns.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }
}

/// Triggers `choice`'s point and counts the runs of `candidate` and of the twins' programs.
fn test_once(
    plan: &Plan,
    choice: &Choice,
    candidate: &Candidate,
    object: &Object,
) -> crate::error::Result<(Verdict, String)> {
    let Some(test) = choice.self_test else {
        return Ok((Verdict::Inconclusive, String::new()));
    };
    let twins: Vec<&Candidate> = test
        .twins
        .iter()
        .filter_map(|t| plan.chosen_for(t))
        .collect();
    let twin_runs = || twins.iter().map(|t| runs(object, t.program)).sum::<u64>();
    let (c0, t0) = (runs(object, candidate.program), twin_runs());
    let guard = (test.trigger)()?;
    let start = Instant::now();
    let mut twin_seen: Option<Instant> = None;
    let (c, t) = loop {
        let (c, t) = (runs(object, candidate.program) - c0, twin_runs() - t0);
        let now = Instant::now();
        if t > 0 && twin_seen.is_none() {
            twin_seen = Some(now);
        }
        if c > 0 || twin_seen.is_some_and(|s| now >= s + GRACE) || now >= start + WAIT {
            break (c, t);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    drop(guard);
    let names: Vec<String> = twins.iter().map(|t| t.label()).collect();
    Ok((verdict(c, t), names.join(", ")))
}

/// Runs the self-tests of `plan` on the loaded `object` whose chosen programs are `links`
/// (by point), falls back where a candidate never ran, and detaches the twins.
pub fn run(plan: &mut Plan, object: &Object, links: &mut Vec<(&'static str, Link)>) {
    let tested: Vec<usize> = (0..plan.choices.len())
        .filter(|&i| plan.self_tests().any(|c| c.point == plan.choices[i].point))
        .collect();
    if !tested.is_empty() {
        match StatsOn::enable() {
            Ok(_on) => {
                for i in tested {
                    test_point(plan, i, object, links);
                }
            }
            Err(e) => eprintln!(
                "netprobe: self-tests skipped: BPF program runs cannot be counted (BPF_ENABLE_STATS: {e}; Linux 5.8 or later)"
            ),
        }
    }
    for c in plan.choices.iter_mut().filter(|c| c.twin_only) {
        if let Some(cand) = c.chosen.take() {
            links.retain(|(p, _)| *p != c.point);
            c.rejected
                .push((cand, "a self-test twin, detached after the test".into()));
        }
    }
}

fn test_point(plan: &mut Plan, i: usize, object: &Object, links: &mut Vec<(&'static str, Link)>) {
    let choice = plan.choices[i].clone();
    let (Some(chosen), Some(reserve)) = (choice.chosen.clone(), choice.reserve.clone()) else {
        return;
    };
    let label = chosen.label();
    let (verdict, twins) = match test_once(plan, &choice, &chosen, object) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("netprobe: self-test of {label} skipped: {e}");
            return;
        }
    };
    match verdict {
        Verdict::Runs => {}
        Verdict::Inconclusive => eprintln!(
            "netprobe: self-test of {label} inconclusive: neither it nor {twins} ran after the trigger; keeping it"
        ),
        Verdict::Silent => {
            let link = match attach_one(object, &reserve) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!(
                        "netprobe: self-test: {label} attached but did not run while {twins} did, and {} failed: {e}; keeping {label}",
                        reserve.label()
                    );
                    return;
                }
            };
            links.retain(|(p, _)| *p != choice.point);
            links.push((choice.point, link));
            let c = &mut plan.choices[i];
            c.rejected.push((
                chosen,
                format!("attached, but did not run in its self-test while {twins} did"),
            ));
            c.chosen = c.reserve.take();
            let again = test_once(plan, &plan.choices[i], &reserve, object)
                .map(|(v, _)| v)
                .unwrap_or(Verdict::Inconclusive);
            let how = if again == Verdict::Runs {
                "it runs"
            } else {
                "it did not run either"
            };
            eprintln!(
                "netprobe: self-test: {label} attached but did not run while {twins} did; using {} ({how})",
                reserve.label()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_candidate_is_one_whose_twins_ran() {
        assert_eq!(verdict(0, 2), Verdict::Silent);
        assert_eq!(verdict(1, 2), Verdict::Runs);
        assert_eq!(verdict(1, 0), Verdict::Runs);
        assert_eq!(verdict(0, 0), Verdict::Inconclusive);
    }
}
