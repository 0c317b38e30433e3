//! vhost-net driven from user space, with no guest: a tap whose queue is the backend of a
//! vhost-net device, and two split virtqueues (RX 0, TX 1) in this process's memory, which the
//! vhost worker reads and writes as it would a guest's (the memory table maps guest-physical
//! addresses 1:1 to ours). Frames sent into the tap land in the RX ring's buffers; frames
//! posted on the TX ring leave through the tap. Each call eventfd counts the worker's signals.
//!
//! Needs the `vhost_net` module (`/dev/vhost-net`): the VM tier has it, the development host
//! does not.
use crate::{create_quiet_netns, delete_netns, ns_exec, run_cmd, send_raw_frames, IfReq};
use crate::{IFF_NO_PI, IFF_TAP, TUNSETIFF};
use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::time::{Duration, Instant};

const IFF_VNET_HDR: libc::c_short = 0x4000;
/// Entries per virtqueue.
pub const QUEUE_SIZE: u16 = 256;
/// RX buffers kept posted.
const RX_BUFFERS: u16 = 128;
const BUF_LEN: u32 = 2048;
const REGION: usize = 4 << 20;
/// `struct virtio_net_hdr` without MRG_RXBUF: what precedes every frame in a buffer.
pub const VNET_HDR_LEN: usize = 10;
/// Ethertype of the frames the fixture sends (IEEE local experimental 1).
pub const ETHERTYPE: u16 = 0x88b5;

const VHOST: u32 = 0xAF;
const fn iow(nr: u32, size: usize) -> libc::Ioctl {
    ((1u32 << 30) | ((size as u32) << 16) | (VHOST << 8) | nr) as libc::Ioctl
}

/// `struct vhost_vring_state`.
#[repr(C)]
struct VringState {
    index: u32,
    num: u32,
}
/// `struct vhost_vring_file`.
#[repr(C)]
struct VringFile {
    index: u32,
    fd: i32,
}
/// `struct vhost_vring_addr` (note the order: desc, used, avail).
#[repr(C)]
struct VringAddr {
    index: u32,
    flags: u32,
    desc_user_addr: u64,
    used_user_addr: u64,
    avail_user_addr: u64,
    log_guest_addr: u64,
}
const _: () = assert!(std::mem::size_of::<VringAddr>() == 40);
/// `struct vhost_memory` with one `struct vhost_memory_region`.
#[repr(C)]
struct MemTable {
    nregions: u32,
    padding: u32,
    guest_phys_addr: u64,
    memory_size: u64,
    userspace_addr: u64,
    flags_padding: u64,
}
const _: () = assert!(std::mem::size_of::<MemTable>() == 8 + 32);
/// `struct vring_desc`.
#[repr(C)]
#[derive(Clone, Copy)]
struct Desc {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}
const VRING_DESC_F_WRITE: u16 = 2;

const VHOST_SET_OWNER: libc::Ioctl = ((VHOST << 8) | 0x01) as libc::Ioctl;
const VHOST_SET_FEATURES: libc::Ioctl = iow(0x00, 8);
const VHOST_SET_MEM_TABLE: libc::Ioctl = iow(0x03, 8);
const VHOST_SET_VRING_NUM: libc::Ioctl = iow(0x10, 8);
const VHOST_SET_VRING_ADDR: libc::Ioctl = iow(0x11, 40);
const VHOST_SET_VRING_BASE: libc::Ioctl = iow(0x12, 8);
const VHOST_SET_VRING_KICK: libc::Ioctl = iow(0x20, 8);
const VHOST_SET_VRING_CALL: libc::Ioctl = iow(0x21, 8);
const VHOST_NET_SET_BACKEND: libc::Ioctl = iow(0x30, 8);

/// `ioctl(fd, req, arg)`; the error names `what`.
///
/// # Safety
/// `arg` must point to a live value of the layout `req` expects (or be 0 for `_IO`).
unsafe fn vhost_ioctl(
    fd: &OwnedFd,
    req: libc::Ioctl,
    arg: usize,
    what: &str,
) -> Result<(), String> {
    // SAFETY: the caller guarantees that `arg` matches `req`; `fd` is open.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), req, arg) };
    if rc < 0 {
        return Err(format!("{what}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

fn eventfd(flags: libc::c_int) -> Result<OwnedFd, String> {
    // SAFETY: plain eventfd(2); the result is checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | flags) };
    if fd < 0 {
        return Err(format!("eventfd: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// One split virtqueue in the shared region: descriptors, avail ring and used ring.
struct Ring {
    base: *mut u8,
    kick: OwnedFd,
    call: OwnedFd,
    /// Next avail index the driver publishes.
    avail_idx: u16,
    /// Used entries the driver has consumed.
    used_seen: u16,
}

impl Ring {
    const DESC: usize = 0;
    const AVAIL: usize = 16 * QUEUE_SIZE as usize;
    const USED: usize = Self::AVAIL + 4096;
    const BUFS: usize = 65536;

    fn desc(&self, i: u16) -> *mut Desc {
        // SAFETY: i < QUEUE_SIZE: inside the descriptor table of this ring's region.
        unsafe {
            self.base
                .add(Self::DESC)
                .cast::<Desc>()
                .add(usize::from(i % QUEUE_SIZE))
        }
    }

    fn buf(&self, i: u16) -> *mut u8 {
        // SAFETY: buffers follow the rings inside this ring's 2 MiB half of the region.
        unsafe {
            self.base
                .add(Self::BUFS + usize::from(i) * BUF_LEN as usize)
        }
    }

    fn avail_u16(&self, index: usize) -> *mut u16 {
        // SAFETY: flags, idx, ring[QUEUE_SIZE], used_event: inside the avail area.
        unsafe { self.base.add(Self::AVAIL).cast::<u16>().add(index) }
    }

    /// Publishes descriptor `id` as the next avail entry (the index is stored by `publish`).
    fn post(&mut self, id: u16) {
        // SAFETY: the ring entry is inside the avail area; vhost reads it only after `publish`.
        unsafe {
            self.avail_u16(2 + usize::from(self.avail_idx % QUEUE_SIZE))
                .write_volatile(id)
        };
        self.avail_idx = self.avail_idx.wrapping_add(1);
    }

    fn publish(&self) {
        std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
        // SAFETY: avail->idx, read by the vhost worker.
        unsafe { self.avail_u16(1).write_volatile(self.avail_idx) };
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    }

    fn used_idx(&self) -> u16 {
        // SAFETY: used->idx, written by the vhost worker.
        let v = unsafe { self.base.add(Self::USED + 2).cast::<u16>().read_volatile() };
        std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
        v
    }

    /// The used entry `n` (id, len).
    fn used_elem(&self, n: u16) -> (u32, u32) {
        let at = Self::USED + 4 + 8 * usize::from(n % QUEUE_SIZE);
        // SAFETY: inside the used ring.
        unsafe {
            (
                self.base.add(at).cast::<u32>().read_volatile(),
                self.base.add(at + 4).cast::<u32>().read_volatile(),
            )
        }
    }

    fn kick(&self) -> Result<(), String> {
        let one = 1u64.to_ne_bytes();
        // SAFETY: an 8-byte write to an eventfd.
        let n = unsafe { libc::write(self.kick.as_raw_fd(), one.as_ptr().cast(), 8) };
        if n != 8 {
            return Err(format!("kick: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Reads and resets the call eventfd: the signals since the last read (0 without a wait
    /// where it is empty, also for a blocking eventfd such as an irqfd's).
    fn take_calls(&self) -> u64 {
        let mut pfd = libc::pollfd {
            fd: self.call.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one live pollfd, no wait.
        if unsafe { libc::poll(&mut pfd, 1, 0) } != 1 {
            return 0;
        }
        let mut v = [0u8; 8];
        // SAFETY: an 8-byte read from a non-blocking eventfd.
        let n = unsafe { libc::read(self.call.as_raw_fd(), v.as_mut_ptr().cast(), 8) };
        if n == 8 {
            u64::from_ne_bytes(v)
        } else {
            0
        }
    }
}

/// The shared memory region (anonymous, populated), unmapped on drop.
struct Region(*mut u8);

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the mapping this struct created, no longer used (the vhost fd closed first).
        unsafe { libc::munmap(self.0.cast(), REGION) };
    }
}

/// A vhost-net device whose backend is tap `tap` in namespace `ns`, driven by this process.
/// Dropping it stops vhost (closes the device), then removes the tap and the namespace.
pub struct VhostNet {
    /// The tap's name.
    pub tap: String,
    /// The namespace it is in (IPv6 off, so the stack sends nothing of its own into it).
    pub ns: String,
    // Field order is drop order: vhost stops before the region and the tap go.
    vhost: OwnedFd,
    rx: Ring,
    tx: Ring,
    _region: Region,
    _tap: File,
    rx_delivered: u64,
}

// SAFETY: the raw pointers point into the region this struct owns; it is used from one thread
// at a time (the methods take &mut self or read only).
unsafe impl Send for VhostNet {}

impl VhostNet {
    /// Is vhost-net there (`/dev/vhost-net`, after `modprobe vhost_net`)?
    pub fn available() -> bool {
        let _ = Command::new("modprobe")
            .arg("vhost_net")
            .stderr(std::process::Stdio::null())
            .status();
        std::path::Path::new("/dev/vhost-net").exists()
    }

    /// Creates namespace `ns` with tap `tap` in it, and a vhost-net device with its two
    /// virtqueues on the tap, RX buffers posted.
    pub fn create(ns: &str, tap: &str) -> Result<VhostNet, String> {
        create_quiet_netns(ns);
        Self::build(ns, tap, None).inspect_err(|_| delete_netns(ns))
    }

    /// As [`VhostNet::create`], with `rx_call` as the RX virtqueue's call eventfd: a KVM
    /// irqfd's (`KvmIrqLab::msi_irqfd_eventfd`), so that vhost's signals become the VM's
    /// interrupts, as in production. KVM consumes that eventfd's count, so
    /// [`VhostNet::take_rx_calls`] reads 0.
    pub fn create_with_rx_call(ns: &str, tap: &str, rx_call: OwnedFd) -> Result<VhostNet, String> {
        create_quiet_netns(ns);
        Self::build(ns, tap, Some(rx_call)).inspect_err(|_| delete_netns(ns))
    }

    fn build(ns: &str, tap: &str, rx_call: Option<OwnedFd>) -> Result<VhostNet, String> {
        let tap_file = open_tap(tap)?;
        run_cmd(
            Command::new("ip").args(["link", "set", tap, "netns", ns]),
            None,
        )?;
        ns_exec(ns, &["ip", "link", "set", tap, "up"]);
        let vhost: OwnedFd = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/vhost-net")
            .map_err(|e| format!("open /dev/vhost-net: {e} (modprobe vhost_net)"))?
            .into();
        // SAFETY: _IO ioctl without argument.
        unsafe { vhost_ioctl(&vhost, VHOST_SET_OWNER, 0, "VHOST_SET_OWNER")? };
        let features = 0u64;
        // SAFETY: a u64 feature mask (legacy virtio, no offloads, no EVENT_IDX).
        unsafe {
            vhost_ioctl(
                &vhost,
                VHOST_SET_FEATURES,
                std::ptr::addr_of!(features) as usize,
                "VHOST_SET_FEATURES",
            )?
        };
        // SAFETY: anonymous private mapping; checked below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                REGION,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(format!("mmap: {}", std::io::Error::last_os_error()));
        }
        let region = Region(base.cast());
        let table = MemTable {
            nregions: 1,
            padding: 0,
            guest_phys_addr: base as u64,
            memory_size: REGION as u64,
            userspace_addr: base as u64,
            flags_padding: 0,
        };
        // SAFETY: a vhost_memory with one region, live for the call.
        unsafe {
            vhost_ioctl(
                &vhost,
                VHOST_SET_MEM_TABLE,
                std::ptr::addr_of!(table) as usize,
                "VHOST_SET_MEM_TABLE",
            )?
        };
        let rx = setup_ring(&vhost, 0, region.0, rx_call)?;
        // SAFETY: the second half of the region.
        let tx = setup_ring(&vhost, 1, unsafe { region.0.add(REGION / 2) }, None)?;
        let mut dev = VhostNet {
            tap: tap.to_owned(),
            ns: ns.to_owned(),
            vhost,
            rx,
            tx,
            _region: region,
            _tap: tap_file,
            rx_delivered: 0,
        };
        for i in 0..RX_BUFFERS {
            let addr = dev.rx.buf(i) as u64;
            // SAFETY: a descriptor of this ring, not yet published.
            unsafe {
                dev.rx.desc(i).write_volatile(Desc {
                    addr,
                    len: BUF_LEN,
                    flags: VRING_DESC_F_WRITE,
                    next: 0,
                })
            };
            dev.rx.post(i);
        }
        dev.rx.publish();
        for index in 0..2 {
            let backend = VringFile {
                index,
                fd: dev._tap.as_raw_fd(),
            };
            // SAFETY: a vhost_vring_file live for the call.
            unsafe {
                vhost_ioctl(
                    &dev.vhost,
                    VHOST_NET_SET_BACKEND,
                    std::ptr::addr_of!(backend) as usize,
                    "VHOST_NET_SET_BACKEND",
                )?
            };
        }
        dev.rx.kick()?;
        Ok(dev)
    }

    /// Sends `count` frames into the tap (the host's side of a VM's NIC), waits until vhost
    /// has put them all in RX buffers, checks each one and posts its buffer again.
    pub fn deliver(&mut self, count: u16, timeout: Duration) -> Result<(), String> {
        assert!(count <= RX_BUFFERS, "at most {RX_BUFFERS} frames at a time");
        let frame = crate::eth_frame([0xff; 6], [2, 0, 0, 0, 0, 1], ETHERTYPE, b"netprobe vhost");
        send_raw_frames(&self.ns, &self.tap, &frame, usize::from(count));
        let want = self.rx.used_seen.wrapping_add(count);
        wait_used(&self.rx, want, timeout, "RX")?;
        while self.rx.used_seen != want {
            let (id, len) = self.rx.used_elem(self.rx.used_seen);
            if len as usize != VNET_HDR_LEN + frame.len() {
                return Err(format!(
                    "RX buffer {id}: {len} bytes, expected {}",
                    VNET_HDR_LEN + frame.len()
                ));
            }
            self.rx.used_seen = self.rx.used_seen.wrapping_add(1);
            self.rx.post(id as u16);
        }
        self.rx.publish();
        self.rx_delivered += u64::from(count);
        Ok(())
    }

    /// Posts `count` frames on the TX ring (the guest sending), kicks, and waits until vhost
    /// has sent them all through the tap.
    pub fn transmit(&mut self, count: u16, timeout: Duration) -> Result<(), String> {
        assert!(
            count <= QUEUE_SIZE / 2,
            "at most {} frames at a time",
            QUEUE_SIZE / 2
        );
        let frame = crate::eth_frame(
            [0xff; 6],
            [2, 0, 0, 0, 0, 2],
            ETHERTYPE,
            b"netprobe vhost tx",
        );
        for k in 0..count {
            let id = self.tx.avail_idx % (QUEUE_SIZE / 2);
            let buf = self.tx.buf(id);
            // SAFETY: a buffer of this ring, not in vhost's hands (its last use completed).
            unsafe {
                std::ptr::write_bytes(buf, 0, VNET_HDR_LEN);
                std::ptr::copy_nonoverlapping(frame.as_ptr(), buf.add(VNET_HDR_LEN), frame.len());
                self.tx.desc(id).write_volatile(Desc {
                    addr: buf as u64,
                    len: (VNET_HDR_LEN + frame.len()) as u32,
                    flags: 0,
                    next: 0,
                });
            }
            let _ = k;
            self.tx.post(id);
        }
        self.tx.publish();
        self.tx.kick()?;
        let want = self.tx.used_seen.wrapping_add(count);
        wait_used(&self.tx, want, timeout, "TX")?;
        self.tx.used_seen = want;
        Ok(())
    }

    /// Sets or clears `VRING_AVAIL_F_NO_INTERRUPT` in the RX ring's avail flags: the guest
    /// asking for no interrupts (a NAPI poll in progress), which vhost honours without EVENT_IDX.
    pub fn set_rx_no_interrupt(&mut self, on: bool) {
        // SAFETY: avail->flags of the RX ring, read by the vhost worker.
        unsafe { self.rx.avail_u16(0).write_volatile(u16::from(on)) };
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    }

    /// Sends `count` frames into the tap without waiting for them or posting buffers again:
    /// past the posted buffers they wait in the tap's ring, and past its size they are dropped.
    pub fn flood(&self, count: usize) {
        let frame = crate::eth_frame([0xff; 6], [2, 0, 0, 0, 0, 1], ETHERTYPE, b"netprobe flood");
        send_raw_frames(&self.ns, &self.tap, &frame, count);
    }

    /// The RX ring's used index: buffers vhost filled so far (mod 2^16).
    pub fn rx_used(&self) -> u16 {
        self.rx.used_idx()
    }

    /// RX buffers posted at creation (and after each `deliver`).
    pub const RX_BUFFERS: u16 = RX_BUFFERS;

    /// Sets the tap's txqueuelen: its ring's size toward the "guest".
    pub fn set_txqueuelen(&self, len: u32) {
        ns_exec(
            &self.ns,
            &[
                "ip",
                "link",
                "set",
                &self.tap,
                "txqueuelen",
                &len.to_string(),
            ],
        );
    }

    /// Signals of the RX queue's call eventfd since the last call (reads and resets it).
    pub fn take_rx_calls(&self) -> u64 {
        self.rx.take_calls()
    }

    /// Signals of the TX queue's call eventfd since the last call (reads and resets it).
    pub fn take_tx_calls(&self) -> u64 {
        self.tx.take_calls()
    }

    /// Frames delivered into RX buffers so far.
    pub fn delivered(&self) -> u64 {
        self.rx_delivered
    }
}

impl Drop for VhostNet {
    fn drop(&mut self) {
        delete_netns(&self.ns);
    }
}

fn wait_used(ring: &Ring, want: u16, timeout: Duration, what: &str) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let used = ring.used_idx();
        // Within half the index space ahead: not there yet.
        if used.wrapping_sub(want) < 0x8000 {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(format!("{what}: used.idx {used}, waited for {want}"));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn open_tap(name: &str) -> Result<File, String> {
    assert!(name.len() < 16, "tap name {name:?} too long");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(|e| format!("open /dev/net/tun: {e}"))?;
    let mut req = IfReq {
        name: [0; 16],
        flags: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: `req` is a correctly laid-out ifreq that outlives the call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, std::ptr::addr_of_mut!(req)) };
    if rc != 0 {
        return Err(format!(
            "TUNSETIFF {name}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(file)
}

fn setup_ring(
    vhost: &OwnedFd,
    index: u32,
    base: *mut u8,
    call: Option<OwnedFd>,
) -> Result<Ring, String> {
    let call = match call {
        Some(fd) => fd,
        None => eventfd(libc::EFD_NONBLOCK)?,
    };
    let ring = Ring {
        base,
        kick: eventfd(0)?,
        call,
        avail_idx: 0,
        used_seen: 0,
    };
    let num = VringState {
        index,
        num: u32::from(QUEUE_SIZE),
    };
    let start = VringState { index, num: 0 };
    // SAFETY: the ring areas lie inside the registered region.
    let addr = VringAddr {
        index,
        flags: 0,
        desc_user_addr: unsafe { base.add(Ring::DESC) } as u64,
        used_user_addr: unsafe { base.add(Ring::USED) } as u64,
        avail_user_addr: unsafe { base.add(Ring::AVAIL) } as u64,
        log_guest_addr: 0,
    };
    let kick = VringFile {
        index,
        fd: ring.kick.as_raw_fd(),
    };
    let call = VringFile {
        index,
        fd: ring.call.as_raw_fd(),
    };
    // SAFETY: each argument is a live struct of the size its request encodes.
    unsafe {
        let p = |v: *const u8| v as usize;
        vhost_ioctl(
            vhost,
            VHOST_SET_VRING_NUM,
            p(std::ptr::addr_of!(num).cast()),
            "VHOST_SET_VRING_NUM",
        )?;
        vhost_ioctl(
            vhost,
            VHOST_SET_VRING_BASE,
            p(std::ptr::addr_of!(start).cast()),
            "VHOST_SET_VRING_BASE",
        )?;
        vhost_ioctl(
            vhost,
            VHOST_SET_VRING_ADDR,
            p(std::ptr::addr_of!(addr).cast()),
            "VHOST_SET_VRING_ADDR",
        )?;
        vhost_ioctl(
            vhost,
            VHOST_SET_VRING_KICK,
            p(std::ptr::addr_of!(kick).cast()),
            "VHOST_SET_VRING_KICK",
        )?;
        vhost_ioctl(
            vhost,
            VHOST_SET_VRING_CALL,
            p(std::ptr::addr_of!(call).cast()),
            "VHOST_SET_VRING_CALL",
        )?;
    }
    Ok(ring)
}
