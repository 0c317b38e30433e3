//! Conditions a lab cannot build with `ip` alone on every kernel, made with small BPF programs.
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{TcHookBuilder, TC_EGRESS};
use std::mem::MaybeUninit;
use std::os::fd::AsFd;

#[allow(missing_docs, clippy::all, clippy::pedantic)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/testkit.skel.rs"));
}
use skel::TestkitSkelBuilder;

/// Tags every packet leaving `ifname` (in the calling thread's network namespace) with an
/// offloaded 802.1Q tag `vlan_id`, as a VLAN device on a tag-offloading NIC would (this kernel
/// has no 8021q and no act_vlan). Uses a tc clsact egress program; it lives as long as the
/// device (remove the device, or its clsact qdisc, to undo it).
pub fn push_vlan_on_egress(ifname: &str, vlan_id: u16) -> Result<(), String> {
    let ifindex =
        nix::net::if_::if_nametoindex(ifname).map_err(|e| format!("no interface {ifname}: {e}"))?;
    let mut storage = MaybeUninit::uninit();
    let mut open = TestkitSkelBuilder::default()
        .open(&mut storage)
        .map_err(|e| format!("open testkit: {e}"))?;
    if let Some(ro) = open.maps.rodata_data.as_deref_mut() {
        ro.vlan_id = vlan_id;
    }
    let skel = open.load().map_err(|e| format!("load testkit: {e}"))?;
    let mut hook = TcHookBuilder::new(skel.progs.push_vlan.as_fd())
        .ifindex(ifindex as i32)
        .replace(true)
        .handle(1)
        .priority(1)
        .hook(TC_EGRESS);
    hook.create()
        .map_err(|e| format!("clsact on {ifname}: {e}"))?;
    if let Err(e) = hook.attach() {
        // Leave nothing behind: the clsact qdisc we just created goes too.
        let _ = hook.destroy();
        return Err(format!("attach tc egress on {ifname}: {e}"));
    }
    Ok(())
}
