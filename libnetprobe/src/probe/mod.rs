//! Attach plans: each probe point lists candidates in order of preference; the library picks the
//! first one this kernel offers and turns the others off before load.
use crate::error::{Context, Error, Result};
use crate::kernel::{Features, KernelBtf, Support};
use libbpf_rs::{Link, OpenObject};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

/// How a candidate hooks the kernel, in the default order of preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    /// BPF trampoline on a function entry.
    Fentry,
    /// kprobe on a function.
    Kprobe,
    /// BPF trampoline on a function's return (its arguments and return value).
    Fexit,
    /// kretprobe on a function's return (its return value only).
    Kretprobe,
    /// BTF-enabled raw tracepoint.
    TpBtf,
    /// Classic tracepoint.
    Tracepoint,
    /// A perf event (`cpu-clock` sampling), attached by the set itself on every CPU.
    PerfEvent,
    /// A uprobe on a user-space function, attached by the set itself to the functions the
    /// user names.
    Uprobe,
    /// A uretprobe, attached like [`ProbeKind::Uprobe`].
    Uretprobe,
}

impl ProbeKind {
    /// Kinds whose programs the set attaches itself, after load.
    pub fn attached_by_set(self) -> bool {
        matches!(
            self,
            ProbeKind::PerfEvent | ProbeKind::Uprobe | ProbeKind::Uretprobe
        )
    }

    /// Short name as in a SEC() prefix.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Fentry => "fentry",
            ProbeKind::Kprobe => "kprobe",
            ProbeKind::Fexit => "fexit",
            ProbeKind::Kretprobe => "kretprobe",
            ProbeKind::TpBtf => "tp_btf",
            ProbeKind::Tracepoint => "tracepoint",
            ProbeKind::PerfEvent => "perf_event",
            ProbeKind::Uprobe => "uprobe",
            ProbeKind::Uretprobe => "uretprobe",
        }
    }
}

/// One way to implement a probe point: a BPF program of the set and its kernel target.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    /// Program type.
    pub kind: ProbeKind,
    /// Function name, tracepoint name (`kfree_skb`) or `category/name` for tracepoints.
    pub target: &'static str,
    /// Name of the BPF program in the skeleton.
    pub program: &'static str,
}

impl Candidate {
    /// `kind/target`, as printed in plans.
    pub fn label(&self) -> String {
        format!("{}/{}", self.kind.as_str(), self.target)
    }
}

/// A place a probe set needs to hook, with its candidates in order of preference.
#[derive(Debug, Clone, Default)]
pub struct ProbePoint {
    /// What the point observes, e.g. "packet drop".
    pub name: &'static str,
    /// Candidates, best first.
    pub candidates: Vec<Candidate>,
    /// A required point with no usable candidate is an error; an optional one degrades the report.
    pub required: bool,
    /// Checked once attached: a candidate that attaches but never runs is replaced by the
    /// next one ([`crate::kit::selftest`]).
    pub self_test: Option<SelfTest>,
    /// Only a [`SelfTest`] twin: attached for the test, detached after it.
    pub twin_only: bool,
}

/// How a point's chosen candidate is proven to run: `trigger` makes the kernel go through the
/// point once (and through its `twins`, points of the same set that run on the same path);
/// if the twins ran and the candidate did not, the next candidate takes its place.
#[derive(Debug, Clone, Copy)]
pub struct SelfTest {
    /// Points of the same set (usually tracepoints) the trigger also passes through.
    pub twins: &'static [&'static str],
    /// Makes the kernel run the point once; the returned guard is dropped after the counts
    /// are read (it may keep what the kernel works on alive, e.g. a VM).
    pub trigger: fn() -> Result<Box<dyn std::any::Any>>,
}

impl ProbePoint {
    /// An optional point on tracepoint `tracepoint` (`category/name`): `tp_btf` program `btf`
    /// first, then classic tracepoint program `classic`.
    pub fn tracepoint(
        name: &'static str,
        btf: &'static str,
        tracepoint: &'static str,
        classic: &'static str,
    ) -> Self {
        ProbePoint {
            name,
            required: false,
            candidates: vec![
                Candidate {
                    kind: ProbeKind::TpBtf,
                    target: &tracepoint[tracepoint.find('/').map_or(0, |i| i + 1)..],
                    program: btf,
                },
                Candidate {
                    kind: ProbeKind::Tracepoint,
                    target: tracepoint,
                    program: classic,
                },
            ],
            ..Self::default()
        }
    }

    /// An optional point with no candidates yet (add them with [`ProbePoint::or`]).
    pub fn named(name: &'static str) -> Self {
        ProbePoint {
            name,
            ..Self::default()
        }
    }

    /// The same point with one more candidate, tried after the others.
    pub fn or(mut self, kind: ProbeKind, target: &'static str, program: &'static str) -> Self {
        self.candidates.push(Candidate {
            kind,
            target,
            program,
        });
        self
    }

    /// The same point, required.
    pub fn required(self) -> Self {
        Self {
            required: true,
            ..self
        }
    }

    /// The same point with a self-test of its chosen candidate (the next available candidate
    /// is loaded as its reserve).
    pub fn self_tested(self, test: SelfTest) -> Self {
        Self {
            self_test: Some(test),
            ..self
        }
    }

    /// The same point as a twin of a self-tested one: chosen only while a self-test needs it.
    pub fn twin_only(self) -> Self {
        Self {
            twin_only: true,
            ..self
        }
    }
}

/// What was chosen for one probe point and why the others were not.
#[derive(Debug, Clone, Serialize)]
pub struct Choice {
    /// The probe point's name.
    pub point: &'static str,
    /// Required or optional.
    pub required: bool,
    /// The candidate in use, if any.
    pub chosen: Option<Candidate>,
    /// Candidates passed over, each with the reason.
    pub rejected: Vec<(Candidate, String)>,
    /// The next available candidate of a self-tested point, loaded but not attached.
    pub reserve: Option<Candidate>,
    /// The point's self-test, if it has one.
    #[serde(skip)]
    pub self_test: Option<SelfTest>,
    /// The point is only a self-test twin.
    #[serde(skip)]
    pub twin_only: bool,
}

/// The attach plan of a probe set on this kernel.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// One choice per probe point.
    pub choices: Vec<Choice>,
}

/// Attaches `cand`'s program of a loaded object.
pub fn attach_one(object: &libbpf_rs::Object, cand: &Candidate) -> Result<Link> {
    let prog = object
        .progs_mut()
        .find(|p| p.name() == cand.program)
        .ok_or_else(|| Error::missing(format!("program {} missing", cand.program)))?;
    match cand.kind {
        ProbeKind::Kprobe => prog.attach_kprobe(false, cand.target),
        ProbeKind::Kretprobe => prog.attach_kprobe(true, cand.target),
        _ => prog.attach(),
    }
    .context(|| format!("attach {} ({})", cand.program, cand.label()))
}

fn availability(c: &Candidate, f: &Features, btf: &KernelBtf, tracefs: Option<&Path>) -> Support {
    let (kind_support, target_ok, what) = match c.kind {
        ProbeKind::PerfEvent => return crate::kernel::perf::cpu_clock_support(),
        // In every kernel netprobe runs on (3.5+); attaching tells about the function.
        ProbeKind::Uprobe | ProbeKind::Uretprobe => return Support::Yes,
        ProbeKind::Fentry => (&f.fentry, btf.has_func(c.target), "no such function in BTF"),
        ProbeKind::Fexit => (&f.fentry, btf.has_func(c.target), "no such function in BTF"),
        ProbeKind::Kprobe | ProbeKind::Kretprobe => (
            &f.kprobe,
            btf.has_kprobe_target(c.target),
            "no such function in BTF or a module's kallsyms",
        ),
        ProbeKind::TpBtf => (
            &f.tp_btf,
            btf.has_btf_tracepoint(c.target),
            "no btf_trace_ typedef for this tracepoint",
        ),
        ProbeKind::Tracepoint => {
            let ok = match (tracefs, c.target.split_once('/')) {
                (Some(t), Some((cat, name))) => {
                    crate::kernel::tracefs::has_tracepoint(t, cat, name)
                }
                _ => false,
            };
            (&f.tracepoint, ok, "no such tracepoint in tracefs")
        }
    };
    match kind_support {
        Support::No(why) => Support::No(format!("{} unavailable: {why}", c.kind.as_str())),
        Support::Yes if !target_ok => Support::No(what.to_string()),
        Support::Yes => Support::Yes,
    }
}

impl Plan {
    /// Chooses one candidate per point from what this kernel offers.
    pub fn choose(
        points: &[ProbePoint],
        features: &Features,
        btf: &KernelBtf,
        tracefs: Option<&Path>,
    ) -> Self {
        let choices = points
            .iter()
            .map(|p| {
                let mut choice = Choice {
                    point: p.name,
                    required: p.required,
                    chosen: None,
                    rejected: Vec::new(),
                    reserve: None,
                    self_test: p.self_test,
                    twin_only: p.twin_only,
                };
                for c in &p.candidates {
                    let wants_reserve = p.self_test.is_some() && choice.reserve.is_none();
                    if choice.chosen.is_some() && !wants_reserve {
                        choice
                            .rejected
                            .push((c.clone(), "a preferred candidate was chosen".into()));
                        continue;
                    }
                    match availability(c, features, btf, tracefs) {
                        Support::Yes if choice.chosen.is_some() => choice.reserve = Some(c.clone()),
                        Support::Yes => choice.chosen = Some(c.clone()),
                        Support::No(why) => choice.rejected.push((c.clone(), why)),
                    }
                }
                choice
            })
            .collect();
        let mut plan = Self { choices };
        plan.drop_idle_twins();
        plan
    }

    /// Self-tested points that can fall back (chosen, reserve and a chosen twin).
    pub fn self_tests(&self) -> impl Iterator<Item = &Choice> {
        self.choices.iter().filter(|c| {
            c.chosen.is_some()
                && c.reserve.is_some()
                && c.self_test
                    .is_some_and(|t| t.twins.iter().any(|tw| self.chosen_for(tw).is_some()))
        })
    }

    /// Twins no self-test needs are not loaded.
    fn drop_idle_twins(&mut self) {
        let needed: Vec<&'static str> = self
            .self_tests()
            .flat_map(|c| c.self_test.map_or(&[][..], |t| t.twins).iter().copied())
            .collect();
        for c in &mut self.choices {
            if c.twin_only && !needed.contains(&c.point) {
                if let Some(cand) = c.chosen.take() {
                    c.rejected
                        .push((cand, "a self-test twin, and nothing here to test".into()));
                }
            }
        }
    }

    /// The plan of a tool that uses only `points` of its set: those become required, the
    /// others are left out (their programs are not loaded).
    pub fn only(mut self, points: &[&str]) -> Self {
        for c in &mut self.choices {
            if points.contains(&c.point) {
                c.required = true;
            } else if let Some(cand) = c.chosen.take() {
                c.reserve = None;
                c.rejected.push((cand, "not used by this tool".into()));
            }
        }
        self
    }

    /// Fails with one line if a required point has no candidate.
    pub fn require(&self) -> Result<()> {
        for c in &self.choices {
            if c.required && c.chosen.is_none() {
                let why: Vec<String> = c
                    .rejected
                    .iter()
                    .map(|(cand, why)| format!("{}: {why}", cand.label()))
                    .collect();
                return Err(Error::missing(format!(
                    "kernel lacks every way to observe '{}' ({}); run netprobe_check for details",
                    c.point,
                    why.join("; ")
                )));
            }
        }
        Ok(())
    }

    /// The candidate chosen for the point named `point`, if the kernel gave one.
    pub fn chosen_for(&self, point: &str) -> Option<&Candidate> {
        self.choices
            .iter()
            .find(|c| c.point == point)
            .and_then(|c| c.chosen.as_ref())
    }

    /// Chosen candidates.
    pub fn chosen(&self) -> impl Iterator<Item = &Candidate> {
        self.choices.iter().filter_map(|c| c.chosen.as_ref())
    }

    /// Reserve candidates of self-tested points.
    pub fn reserves(&self) -> impl Iterator<Item = &Candidate> {
        self.choices.iter().filter_map(|c| c.reserve.as_ref())
    }

    /// Turns autoload off for every program of `object` that the plan did not choose (or keep
    /// in reserve).
    pub fn apply(&self, object: &mut OpenObject) {
        let wanted: Vec<&str> = self
            .chosen()
            .chain(self.reserves())
            .map(|c| c.program)
            .collect();
        for mut prog in object.progs_mut() {
            let name = prog.name().to_string_lossy().into_owned();
            prog.set_autoload(wanted.contains(&name.as_str()));
        }
    }

    /// Attaches the chosen programs of a loaded object, each with its point's name; links
    /// detach when dropped.
    pub fn attach(&self, object: &libbpf_rs::Object) -> Result<Vec<(&'static str, Link)>> {
        let mut links = Vec::new();
        for c in &self.choices {
            // Perf events (per CPU, the set's own settings) and uprobes (on the functions a
            // user names) are attached by their sets.
            if let Some(cand) = c.chosen.as_ref().filter(|c| !c.kind.attached_by_set()) {
                links.push((c.point, attach_one(object, cand)?));
            }
        }
        Ok(links)
    }

    /// Short summary: the chosen candidates, comma separated.
    pub fn summary(&self) -> String {
        let v: Vec<String> = self.chosen().map(Candidate::label).collect();
        if v.is_empty() {
            "none".into()
        } else {
            v.join(", ")
        }
    }

    /// The plan as text: every point, its choice and each rejected candidate with the reason.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.choices {
            let chosen = c
                .chosen
                .as_ref()
                .map(|x| format!("{} (program {})", x.label(), x.program))
                .unwrap_or_else(|| "NONE".into());
            let _ = writeln!(
                out,
                "probe point '{}' ({}): {chosen}",
                c.point,
                if c.required { "required" } else { "optional" }
            );
            if let Some(r) = &c.reserve {
                let _ = writeln!(
                    out,
                    "  reserve {}: replaces it if its self-test sees it never run",
                    r.label()
                );
            }
            for (cand, why) in &c.rejected {
                let _ = writeln!(out, "  not {}: {why}", cand.label());
            }
        }
        out
    }
}
