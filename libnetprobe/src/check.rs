//! `netprobe_check`: what the running kernel offers and which plan every probe set gets.
use crate::error::Result;
use crate::kernel::{Features, KernelEnv};
use crate::probe::Plan;
use serde::Serialize;
use std::fmt::Write as _;

/// One probe set's verdict.
#[derive(Debug, Serialize)]
pub struct SetCheck {
    /// Set name.
    pub set: &'static str,
    /// What it observes.
    pub about: &'static str,
    /// Can its tools run here?
    pub can_run: bool,
    /// The plan it would use.
    pub plan: Plan,
}

/// Everything netprobe_check reports.
#[derive(Debug, Serialize)]
pub struct CheckReport {
    /// `uname -r`.
    pub kernel: String,
    /// Privilege / BTF / kptr_restrict problem, if any.
    pub preflight: Option<String>,
    /// tracefs mount point.
    pub tracefs: Option<String>,
    /// Why tracefs is unavailable.
    pub tracefs_error: Option<String>,
    /// Program and map types.
    pub features: Features,
    /// Number of drop-reason names read from BTF (0: kernel has no reasons).
    pub drop_reasons: usize,
    /// Per probe set.
    pub sets: Vec<SetCheck>,
}

impl CheckReport {
    /// Probes the kernel; fails only when nothing can be probed (no privileges or no BTF).
    pub fn collect() -> Result<Self> {
        let preflight = match crate::preflight::check() {
            Ok(()) => None,
            Err(e @ crate::Error::Privilege(_)) => return Err(e),
            Err(e) => Some(e.to_string()),
        };
        let env = KernelEnv::discover()?;
        let kernel = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        let sets = crate::sets::all()
            .into_iter()
            .map(|info| {
                let plan = (info.plan)(&env);
                SetCheck {
                    set: info.name,
                    about: info.about,
                    can_run: plan.require().is_ok() && preflight.is_none(),
                    plan,
                }
            })
            .collect();
        Ok(Self {
            kernel,
            preflight,
            tracefs: env.tracefs.as_ref().map(|p| p.display().to_string()),
            tracefs_error: env.tracefs_error.clone(),
            features: env.features.clone(),
            drop_reasons: env.reasons.names().count(),
            sets,
        })
    }

    /// Can any set run here?
    pub fn any_can_run(&self) -> bool {
        self.sets.iter().any(|s| s.can_run)
    }

    /// Text report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "kernel: {}", self.kernel);
        let _ = writeln!(
            out,
            "privileges/BTF/kallsyms: {}",
            self.preflight.as_deref().unwrap_or("ok")
        );
        let _ = writeln!(
            out,
            "tracefs: {}",
            self.tracefs
                .clone()
                .or_else(|| self.tracefs_error.clone())
                .unwrap_or_default()
        );
        let f = &self.features;
        for (name, s) in [
            ("fentry", &f.fentry),
            ("kprobe", &f.kprobe),
            ("tp_btf", &f.tp_btf),
            ("tracepoint", &f.tracepoint),
            ("ringbuf", &f.ringbuf),
        ] {
            let _ = writeln!(out, "{name:<11} {s}");
        }
        let _ = writeln!(out, "drop reasons from BTF: {}", self.drop_reasons);
        let _ = writeln!(out);
        for t in &self.sets {
            let _ = writeln!(
                out,
                "set {} ({}): {} (plan: {})",
                t.set,
                t.about,
                if t.can_run { "can run" } else { "CANNOT run" },
                t.plan.summary()
            );
            for line in t.plan.render().lines() {
                let _ = writeln!(out, "    {line}");
            }
        }
        out
    }
}
