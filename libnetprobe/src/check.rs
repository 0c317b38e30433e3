//! `netprobe_check`: what the running kernel offers and which plan every tool gets.
use crate::error::Result;
use crate::kernel::{Features, KernelEnv};
use crate::probe::Plan;
use crate::sets::drop::DropProbe;
use serde::Serialize;
use std::fmt::Write as _;

/// One tool's verdict.
#[derive(Debug, Serialize)]
pub struct ToolCheck {
    /// Tool name.
    pub tool: &'static str,
    /// Can it run here?
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
    /// Per tool.
    pub tools: Vec<ToolCheck>,
}

/// The tools and the function that plans each.
/// How a tool plans its probes on a kernel.
type PlanFn = fn(&KernelEnv) -> Plan;

fn tool_plans() -> Vec<(&'static str, PlanFn)> {
    vec![
        ("kernel_drop_stack_stats_summary", DropProbe::plan),
        ("eth_drop", DropProbe::plan),
        ("trace_net_drop", DropProbe::plan),
    ]
}

impl CheckReport {
    /// Probes the kernel; fails only when nothing can be probed (no privileges or no BTF).
    pub fn collect() -> Result<Self> {
        let preflight = crate::preflight::check().err().map(|e| e.to_string());
        if let Some(p) = &preflight {
            if p.starts_with("missing privilege") {
                return Err(crate::Error::env(p.clone()));
            }
        }
        let env = KernelEnv::discover()?;
        let kernel = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        let tools = tool_plans()
            .into_iter()
            .map(|(tool, plan_of)| {
                let plan = plan_of(&env);
                ToolCheck {
                    tool,
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
            tools,
        })
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
        for t in &self.tools {
            let _ = writeln!(
                out,
                "{}: {} (plan: {})",
                t.tool,
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
