//! Conditions a lab cannot build with `ip` alone on every kernel, made with small BPF programs.
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags, MapHandle, TcHookBuilder, TC_EGRESS};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};

#[allow(missing_docs, clippy::all, clippy::pedantic)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/testkit.skel.rs"));
}
use skel::{OpenTestkitSkel, TestkitSkelBuilder};

/// Opens the testkit object with only program `prog` to load (the others need kernels or
/// program types a test may not have: tp_btf needs BTF, which old VM kernels lack).
fn open_only<'a>(
    storage: &'a mut MaybeUninit<libbpf_rs::OpenObject>,
    prog: &str,
) -> Result<OpenTestkitSkel<'a>, String> {
    let mut open = TestkitSkelBuilder::default()
        .open(storage)
        .map_err(|e| format!("open testkit: {e}"))?;
    for mut p in open.open_object_mut().progs_mut() {
        let keep = p.name() == prog
            || (prog == "floor" && p.name().to_string_lossy().starts_with("floor_"));
        p.set_autoload(keep);
    }
    Ok(open)
}

/// Tags every packet leaving `ifname` (in the calling thread's network namespace) with an
/// offloaded 802.1Q tag `vlan_id`, as a VLAN device on a tag-offloading NIC would (this kernel
/// has no 8021q and no act_vlan). Uses a tc clsact egress program; it lives as long as the
/// device (remove the device, or its clsact qdisc, to undo it).
pub fn push_vlan_on_egress(ifname: &str, vlan_id: u16) -> Result<(), String> {
    let ifindex =
        nix::net::if_::if_nametoindex(ifname).map_err(|e| format!("no interface {ifname}: {e}"))?;
    let mut storage = MaybeUninit::uninit();
    let mut open = open_only(&mut storage, "push_vlan")?;
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

/// The benchmarks' floor: a bare in-kernel counter on the drop hook (`tp_btf/kfree_skb`, or
/// the xmit hook with [`DropCounter::attach_xmit`]) that only increments a per-CPU counter.
/// Attached while the guard lives; dropping it detaches.
pub struct DropCounter {
    // Declared first, so dropped first: detaching is what the guard is for.
    _link: Link,
    prog: OwnedFd,
    map: MapHandle,
}

impl DropCounter {
    /// Loads and attaches the counter (needs a kernel with BTF, 5.5 or later).
    pub fn attach() -> Result<DropCounter, String> {
        Self::attach_program("count_drop")
    }

    /// The same bare counter on `tp_btf/net_dev_start_xmit` (every xmit into a device).
    pub fn attach_xmit() -> Result<DropCounter, String> {
        Self::attach_program("count_xmit")
    }

    fn attach_program(name: &str) -> Result<DropCounter, String> {
        let mut storage = MaybeUninit::uninit();
        let open = open_only(&mut storage, name)?;
        let skel = open.load().map_err(|e| format!("load testkit: {e}"))?;
        let prog = if name == "count_xmit" {
            &skel.progs.count_xmit
        } else {
            &skel.progs.count_drop
        };
        let link = prog.attach().map_err(|e| format!("attach {name}: {e}"))?;
        // The link keeps the program (and it its map) alive after the skeleton is gone.
        let fd = prog.as_fd().try_clone_to_owned();
        let map = MapHandle::try_from(&skel.maps.drop_count);
        let (prog, map) = match (fd, map) {
            (Ok(p), Ok(m)) => (p, m),
            (Err(e), _) => return Err(format!("dup program fd: {e}")),
            (_, Err(e)) => return Err(format!("map handle: {e}")),
        };
        Ok(DropCounter {
            _link: link,
            prog,
            map,
        })
    }

    /// The program's file descriptor (for its `bpf_prog_info` run time and count).
    pub fn prog_fd(&self) -> &OwnedFd {
        &self.prog
    }

    /// Drops counted so far, summed over the CPUs.
    pub fn count(&self) -> Result<u64, String> {
        let per_cpu = self
            .map
            .lookup_percpu(&0_u32.to_ne_bytes(), MapFlags::ANY)
            .map_err(|e| format!("read drop_count: {e}"))?
            .unwrap_or_default();
        Ok(per_cpu
            .iter()
            .filter_map(|v| v.get(..8)?.try_into().ok().map(u64::from_ne_bytes))
            .sum())
    }
}

/// The latency benchmark's floor: bpftrace's two-stage measurement (`net_dev_queue` timestamp,
/// log2 histogram at `net_dev_xmit`) and nothing else, on every device without a qdisc (one
/// slot per CPU: the transmit is synchronous there). Attached while the guard lives.
pub struct TimingFloor {
    // Declared first, so dropped first: detaching is what the guard is for.
    _links: [Link; 2],
    progs: [OwnedFd; 2],
    hist: MapHandle,
}

impl TimingFloor {
    /// Loads and attaches both programs (needs a kernel with BTF, 5.5 or later).
    pub fn attach() -> Result<TimingFloor, String> {
        let mut storage = MaybeUninit::uninit();
        let open = open_only(&mut storage, "floor")?;
        let skel = open.load().map_err(|e| format!("load testkit: {e}"))?;
        let (queue, xmit) = (&skel.progs.floor_queue, &skel.progs.floor_xmit);
        let attach = |p: &libbpf_rs::ProgramMut, tp: &str| {
            p.attach().map_err(|e| format!("attach tp_btf/{tp}: {e}"))
        };
        let links = [
            attach(queue, "net_dev_queue")?,
            attach(xmit, "net_dev_xmit")?,
        ];
        let dup = |p: &libbpf_rs::ProgramMut| {
            p.as_fd()
                .try_clone_to_owned()
                .map_err(|e| format!("dup program fd: {e}"))
        };
        let progs = [dup(queue)?, dup(xmit)?];
        let hist =
            MapHandle::try_from(&skel.maps.floor_hist).map_err(|e| format!("map handle: {e}"))?;
        Ok(TimingFloor {
            _links: links,
            progs,
            hist,
        })
    }

    /// The programs' file descriptors (for their `bpf_prog_info` run time and count).
    pub fn prog_fds(&self) -> &[OwnedFd; 2] {
        &self.progs
    }

    /// Packets timed so far (the histogram's count), summed over the CPUs.
    pub fn count(&self) -> Result<u64, String> {
        let mut total = 0;
        for slot in 0..64_u32 {
            let per_cpu = self
                .hist
                .lookup_percpu(&slot.to_ne_bytes(), MapFlags::ANY)
                .map_err(|e| format!("read floor_hist: {e}"))?
                .unwrap_or_default();
            total += per_cpu
                .iter()
                .filter_map(|v| v.get(..8)?.try_into().ok().map(u64::from_ne_bytes))
                .sum::<u64>();
        }
        Ok(total)
    }
}

/// Steers a tun device's packets to its queues by UDP destination port (port modulo the
/// queue count; other packets to queue 0), with a `TUNSETSTEERINGEBPF` program attached
/// through `queue_fd`, any queue's fd of the device. The program stays with the device.
pub fn steer_tun_by_udp_dport(queue_fd: std::os::fd::BorrowedFd<'_>) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    const TUNSETSTEERINGEBPF: libc::Ioctl = 0x8004_54e0;
    let mut storage = MaybeUninit::uninit();
    let open = open_only(&mut storage, "steer_by_dport")?;
    let skel = open.load().map_err(|e| format!("load testkit: {e}"))?;
    let mut prog_fd: libc::c_int = skel.progs.steer_by_dport.as_fd().as_raw_fd();
    // SAFETY: TUNSETSTEERINGEBPF reads one int (a program fd) from the pointer; the tun
    // device takes its own reference to the program.
    let rc = unsafe { libc::ioctl(queue_fd.as_raw_fd(), TUNSETSTEERINGEBPF, &mut prog_fd) };
    if rc != 0 {
        return Err(format!(
            "TUNSETSTEERINGEBPF: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}
