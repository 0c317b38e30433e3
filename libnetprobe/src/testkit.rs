//! Test support: induce conditions that a lab cannot build with `ip` alone on every kernel.
use crate::error::{Context, Error, Result};
use crate::skel::testkit::TestkitSkelBuilder;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{TcHookBuilder, TC_EGRESS};
use std::mem::MaybeUninit;
use std::os::fd::AsFd;

/// Tags every packet leaving `ifname` (in the calling thread's network namespace) with an
/// offloaded 802.1Q tag `vlan_id`, as a VLAN device on a tag-offloading NIC would. Uses a tc
/// clsact egress program; it lives as long as the device (remove the device, or its clsact
/// qdisc, to undo it).
pub fn push_vlan_on_egress(ifname: &str, vlan_id: u16) -> Result<()> {
    let ifindex = nix::net::if_::if_nametoindex(ifname)
        .map_err(|e| Error::usage(format!("no interface {ifname}: {e}")))?;
    let mut storage = MaybeUninit::uninit();
    let mut open = TestkitSkelBuilder::default()
        .open(&mut storage)
        .context(|| "open testkit".into())?;
    if let Some(ro) = open.maps.rodata_data.as_deref_mut() {
        ro.vlan_id = vlan_id;
    }
    let skel = open.load().context(|| "load testkit".into())?;
    let mut hook = TcHookBuilder::new(skel.progs.push_vlan.as_fd())
        .ifindex(ifindex as i32)
        .replace(true)
        .handle(1)
        .priority(1)
        .hook(TC_EGRESS);
    hook.create().context(|| format!("clsact on {ifname}"))?;
    if let Err(e) = hook.attach() {
        // Leave nothing behind: the clsact qdisc we just created goes too.
        let _ = hook.destroy();
        return Err(e).context(|| format!("attach tc egress on {ifname}"));
    }
    Ok(())
}
