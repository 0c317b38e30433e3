//! What every probe set declares: its name and its probe points, so plans, `--list-probes`
//! and `netprobe_check` work the same for all sets.
use crate::kernel::KernelEnv;
use crate::probe::{Plan, ProbePoint};

/// A probe set, as plans and `netprobe_check` see it.
pub trait ProbeSet {
    /// Short name (`drop`).
    const NAME: &'static str;
    /// What the set observes, one line.
    const ABOUT: &'static str;

    /// The set's probe points, each with its candidates, best first.
    fn probe_points() -> Vec<ProbePoint>;

    /// The plan this kernel gets, without loading anything.
    fn plan(env: &KernelEnv) -> Plan {
        Plan::choose(
            &Self::probe_points(),
            &env.features,
            &env.btf,
            env.tracefs.as_deref(),
        )
    }
}

/// A set as a value: name and plan function (for lists of sets).
#[derive(Clone, Copy)]
pub struct SetInfo {
    /// Set name.
    pub name: &'static str,
    /// What it observes.
    pub about: &'static str,
    /// Its plan on a kernel.
    pub plan: fn(&KernelEnv) -> Plan,
}

impl SetInfo {
    /// The info of set `S`.
    pub const fn of<S: ProbeSet>() -> Self {
        Self {
            name: S::NAME,
            about: S::ABOUT,
            plan: S::plan,
        }
    }
}
