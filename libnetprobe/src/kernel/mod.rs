//! What the running kernel offers: BTF, tracefs, program types, namespaces.
pub mod btf;
pub mod features;
pub mod interrupts;
pub mod kvm_irqfd;
pub mod netns;
pub mod perf;
pub mod process;
pub mod tracefs;

pub use btf::{DropReasons, KernelBtf};
pub use features::{Features, Support};

use crate::error::Result;
use std::path::PathBuf;

/// Everything a probe set needs to know about the running kernel, discovered once.
pub struct KernelEnv {
    /// The kernel's BTF.
    pub btf: KernelBtf,
    /// Program types that load and attach here.
    pub features: Features,
    /// tracefs mount point, if it could be found or mounted.
    pub tracefs: Option<PathBuf>,
    /// tracefs problem, if any (classic tracepoints are then unavailable).
    pub tracefs_error: Option<String>,
    /// Drop-reason names of this kernel.
    pub reasons: DropReasons,
}

impl KernelEnv {
    /// Loads BTF, mounts tracefs if needed and probes program types.
    pub fn discover() -> Result<Self> {
        features::check_disable_env()?;
        crate::bpf_log::install();
        let btf = KernelBtf::load()?;
        let (tracefs, tracefs_error) = match tracefs::ensure_mounted() {
            Ok(p) => (Some(p), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let features = Features::probe();
        let reasons = DropReasons::from_kernel(&btf);
        Ok(Self {
            btf,
            features,
            tracefs,
            tracefs_error,
            reasons,
        })
    }
}
