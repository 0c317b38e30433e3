//! Which BPF program types this kernel can load and attach, found by trial, not by version.
use crate::skel::features::{FeaturesSkel, FeaturesSkelBuilder, OpenFeaturesSkel};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType};
use serde::Serialize;
use std::mem::MaybeUninit;

/// Availability of one kernel feature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "detail", rename_all = "snake_case")]
pub enum Support {
    /// Loaded and attached.
    Yes,
    /// Unavailable, with the reason.
    No(String),
}

impl Support {
    /// Is the feature available?
    pub fn ok(&self) -> bool {
        matches!(self, Support::Yes)
    }
}

impl std::fmt::Display for Support {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Support::Yes => write!(f, "yes"),
            Support::No(why) => write!(f, "no ({why})"),
        }
    }
}

/// The program and map types a probe plan chooses from.
#[derive(Debug, Clone, Serialize)]
pub struct Features {
    /// fentry/fexit (BPF trampolines).
    pub fentry: Support,
    /// kprobes.
    pub kprobe: Support,
    /// BTF-enabled raw tracepoints.
    pub tp_btf: Support,
    /// Classic tracepoints.
    pub tracepoint: Support,
    /// BPF ring buffer maps.
    pub ringbuf: Support,
}

#[derive(Clone, Copy)]
enum Trial {
    Fentry,
    Kprobe,
    TpBtf,
    Tracepoint,
}

/// Environment variable naming program types not to use (`tp_btf,fentry`), e.g. to exercise
/// the fallback candidates on a kernel that has everything.
pub const DISABLE_ENV: &str = "NETPROBE_DISABLE";

/// The entries `NETPROBE_DISABLE` may name.
pub const DISABLE_NAMES: [&str; 4] = ["fentry", "kprobe", "tp_btf", "tracepoint"];

/// Checks `NETPROBE_DISABLE`: an unknown or misspelt entry is an error, not ignored.
pub fn check_disable_env() -> crate::Result<()> {
    let disabled = std::env::var(DISABLE_ENV).unwrap_or_default();
    for d in disabled.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        if !DISABLE_NAMES.contains(&d) {
            return Err(crate::Error::usage(format!(
                "{DISABLE_ENV}: unknown entry {} (known: {})",
                crate::cli::quote(d),
                DISABLE_NAMES.join(", ")
            )));
        }
    }
    Ok(())
}

impl Features {
    /// Probes the running kernel; takes a few milliseconds per program type. Types listed in
    /// `NETPROBE_DISABLE` are reported unavailable without being tried.
    pub fn probe() -> Self {
        let disabled = std::env::var(DISABLE_ENV).unwrap_or_default();
        let off = |name: &str| disabled.split(',').any(|d| d.trim() == name);
        let run = |name: &str, t: Trial| {
            if off(name) {
                Support::No(format!("disabled by {DISABLE_ENV}"))
            } else {
                trial(t)
            }
        };
        Self {
            fentry: run("fentry", Trial::Fentry),
            kprobe: run("kprobe", Trial::Kprobe),
            tp_btf: run("tp_btf", Trial::TpBtf),
            tracepoint: run("tracepoint", Trial::Tracepoint),
            ringbuf: ringbuf(),
        }
    }
}

fn select(open: &mut OpenFeaturesSkel<'_>, which: Trial) {
    open.progs
        .feature_fentry
        .set_autoload(matches!(which, Trial::Fentry));
    open.progs
        .feature_kprobe
        .set_autoload(matches!(which, Trial::Kprobe));
    open.progs
        .feature_tp_btf
        .set_autoload(matches!(which, Trial::TpBtf));
    open.progs
        .feature_tracepoint
        .set_autoload(matches!(which, Trial::Tracepoint));
}

fn attach(skel: &FeaturesSkel<'_>, which: Trial) -> libbpf_rs::Result<libbpf_rs::Link> {
    match which {
        Trial::Fentry => skel.progs.feature_fentry.attach(),
        // A function only BPF_PROG_TEST_RUN calls: attaching and detaching a kprobe on a hot
        // one (vfs_read) while another thread is inside it crashed 5.10 (NULL fetch at its
        // entry), and every tool start runs this trial.
        Trial::Kprobe => skel
            .progs
            .feature_kprobe
            .attach_kprobe(false, "bpf_fentry_test1"),
        Trial::TpBtf => skel.progs.feature_tp_btf.attach(),
        Trial::Tracepoint => skel.progs.feature_tracepoint.attach(),
    }
}

fn trial(which: Trial) -> Support {
    let mut storage = MaybeUninit::uninit();
    let mut open = match FeaturesSkelBuilder::default().open(&mut storage) {
        Ok(o) => o,
        Err(e) => return Support::No(format!("open: {e}")),
    };
    select(&mut open, which);
    let skel = match open.load() {
        Ok(s) => s,
        Err(e) => return Support::No(format!("load failed: {e} ({:?})", e.kind())),
    };
    match attach(&skel, which) {
        Ok(_link) => Support::Yes,
        Err(e) => Support::No(format!("attach failed: {e} ({:?})", e.kind())),
    }
}

fn ringbuf() -> Support {
    let opts = libbpf_rs::libbpf_sys::bpf_map_create_opts {
        sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_map_create_opts>() as _,
        ..Default::default()
    };
    match MapHandle::create(MapType::RingBuf, Some("np_probe_rb"), 0, 0, 4096, &opts) {
        Ok(map) => {
            // A ring buffer has no keys; a failing lookup still proves the fd is usable.
            let _ = map.lookup(&[], MapFlags::ANY);
            Support::Yes
        }
        Err(e) => Support::No(format!("map create failed: {e}")),
    }
}
