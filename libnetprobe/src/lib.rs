//! **libnetprobe**: eBPF probe sets that tell where a packet was dropped or delayed, and why.
//!
//! A probe set (see [`sets`]) is configured from typed options, chooses how to hook this kernel
//! (a [`probe::Plan`]: tp_btf, tracepoint, kprobe or fentry, by trial, never by version), loads
//! CO-RE BPF programs, and returns domain types ready for [`output`].
//!
//! ```no_run
//! use libnetprobe::{filter::Filter, kernel::KernelEnv, sets::drop::{DropOptions, DropProbe}};
//! let env = KernelEnv::discover()?;
//! let mut drops = DropProbe::open(DropOptions::summary(Filter::default()), &env)?;
//! std::thread::sleep(std::time::Duration::from_secs(1));
//! for e in drops.drain_summary()?.entries {
//!     println!("{} {} at {}", e.count, e.reason, e.location);
//! }
//! # Ok::<(), libnetprobe::Error>(())
//! ```
pub mod bpf_log;
pub mod check;
pub mod cli;
pub mod clock;
pub mod error;
pub mod filter;
pub mod hist;
pub mod kernel;
pub mod kit;
pub mod output;
pub mod preflight;
pub mod probe;
pub mod run;
pub mod session;
pub mod sets;
pub mod symbol;

pub use error::{Error, Result};

/// Skeletons generated from `bpf/*.bpf.c` by libbpf-cargo.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod skel {
    /// The drop probe set's BPF object.
    pub mod drop {
        include!(concat!(env!("OUT_DIR"), "/drop.skel.rs"));
    }
    /// The latency probe set's BPF object (the stage engine).
    pub mod latency {
        include!(concat!(env!("OUT_DIR"), "/latency.skel.rs"));
    }
    /// The kvm probe set's BPF object (interrupt injection).
    pub mod kvm {
        include!(concat!(env!("OUT_DIR"), "/kvm.skel.rs"));
    }
    /// The virtio probe set's BPF object (virtio-net NAPI polls and IRQs).
    pub mod virtio {
        include!(concat!(env!("OUT_DIR"), "/virtio.skel.rs"));
    }
    /// The tun probe set's BPF object (tap tx rings).
    pub mod tun {
        include!(concat!(env!("OUT_DIR"), "/tun.skel.rs"));
    }
    /// The ovs probe set's BPF object (the OVS datapath's slow path).
    pub mod ovs {
        include!(concat!(env!("OUT_DIR"), "/ovs.skel.rs"));
    }
    /// The vhost probe set's BPF object (vhost-net virtqueues).
    pub mod vhost {
        include!(concat!(env!("OUT_DIR"), "/vhost.skel.rs"));
    }
    /// The cpu probe set's BPF object (on-CPU samples, off-CPU time).
    pub mod cpu {
        include!(concat!(env!("OUT_DIR"), "/cpu.skel.rs"));
    }
    /// The uprobe probe set's BPF object (user-space function calls).
    pub mod uprobe {
        include!(concat!(env!("OUT_DIR"), "/uprobe.skel.rs"));
    }
    /// The sched probe set's BPF object (where threads' time goes).
    pub mod sched {
        include!(concat!(env!("OUT_DIR"), "/sched.skel.rs"));
    }
    /// The proctrace probe set's BPF object (a process's syscalls and packets).
    pub mod proctrace {
        include!(concat!(env!("OUT_DIR"), "/proctrace.skel.rs"));
    }
    /// The syscall probe set's BPF object (syscall counts, futex waits).
    pub mod syscall {
        include!(concat!(env!("OUT_DIR"), "/syscall.skel.rs"));
    }
    /// The kit's shared types (`bpf/kit.bpf.c`: stats, kit config, boundary enums).
    pub mod kit {
        include!(concat!(env!("OUT_DIR"), "/kit.skel.rs"));
    }
    /// Tiny programs used to probe which program types the kernel offers.
    pub mod features {
        include!(concat!(env!("OUT_DIR"), "/features.skel.rs"));
    }
}
