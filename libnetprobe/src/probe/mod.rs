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
}

impl ProbeKind {
    /// Short name as in a SEC() prefix.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Fentry => "fentry",
            ProbeKind::Kprobe => "kprobe",
            ProbeKind::Fexit => "fexit",
            ProbeKind::Kretprobe => "kretprobe",
            ProbeKind::TpBtf => "tp_btf",
            ProbeKind::Tracepoint => "tracepoint",
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
#[derive(Debug, Clone)]
pub struct ProbePoint {
    /// What the point observes, e.g. "packet drop".
    pub name: &'static str,
    /// Candidates, best first.
    pub candidates: Vec<Candidate>,
    /// A required point with no usable candidate is an error; an optional one degrades the report.
    pub required: bool,
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
}

/// The attach plan of a probe set on this kernel.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// One choice per probe point.
    pub choices: Vec<Choice>,
}

fn availability(c: &Candidate, f: &Features, btf: &KernelBtf, tracefs: Option<&Path>) -> Support {
    let (kind_support, target_ok, what) = match c.kind {
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
                };
                for c in &p.candidates {
                    if choice.chosen.is_some() {
                        choice
                            .rejected
                            .push((c.clone(), "a preferred candidate was chosen".into()));
                        continue;
                    }
                    match availability(c, features, btf, tracefs) {
                        Support::Yes => choice.chosen = Some(c.clone()),
                        Support::No(why) => choice.rejected.push((c.clone(), why)),
                    }
                }
                choice
            })
            .collect();
        Self { choices }
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

    /// Turns autoload off for every program of `object` that the plan did not choose.
    pub fn apply(&self, object: &mut OpenObject) {
        let wanted: Vec<&str> = self.chosen().map(|c| c.program).collect();
        for mut prog in object.progs_mut() {
            let name = prog.name().to_string_lossy().into_owned();
            prog.set_autoload(wanted.contains(&name.as_str()));
        }
    }

    /// Attaches the chosen programs of a loaded object; links detach when dropped.
    pub fn attach(&self, object: &libbpf_rs::Object) -> Result<Vec<Link>> {
        let mut links = Vec::new();
        for cand in self.chosen() {
            let prog = object
                .progs_mut()
                .find(|p| p.name() == cand.program)
                .ok_or_else(|| Error::missing(format!("program {} missing", cand.program)))?;
            let link = match cand.kind {
                ProbeKind::Kprobe => prog.attach_kprobe(false, cand.target),
                ProbeKind::Kretprobe => prog.attach_kprobe(true, cand.target),
                _ => prog.attach(),
            }
            .context(|| format!("attach {} ({})", cand.program, cand.label()))?;
            links.push(link);
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
            for (cand, why) in &c.rejected {
                let _ = writeln!(out, "  not {}: {why}", cand.label());
            }
        }
        out
    }
}
