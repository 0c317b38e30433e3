//! Probe sets: one module per set. Each configures, loads and attaches its BPF programs
//! through [`crate::kit`] and turns what they report into domain types.
pub mod cpu;
pub mod drop;
pub mod flow;
pub mod irq_chain;
pub mod kvm;
pub mod latency;
pub mod ovs;
pub mod proctrace;
pub mod sched;
pub mod syscall;
pub mod tap_vhost;
pub mod tun;
pub mod uprobe;
pub mod vhost;
pub mod virtio;

use crate::kit::set::SetInfo;

/// Every probe set of the library, for `netprobe_check`.
pub fn all() -> Vec<SetInfo> {
    vec![
        SetInfo::of::<drop::DropSet>(),
        SetInfo::of::<latency::LatencySet>(),
        SetInfo::of::<tun::TunSet>(),
        SetInfo::of::<kvm::KvmSet>(),
        SetInfo::of::<virtio::VirtioSet>(),
        SetInfo::of::<vhost::VhostSet>(),
        SetInfo::of::<ovs::OvsSet>(),
        SetInfo::of::<cpu::CpuSet>(),
        SetInfo::of::<uprobe::UprobeSet>(),
        SetInfo::of::<sched::SchedSet>(),
        SetInfo::of::<syscall::SyscallSet>(),
        SetInfo::of::<proctrace::ProctraceSet>(),
    ]
}
