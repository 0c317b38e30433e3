//! Fixtures for per-stage packet latency tests: a hypervisor-host lab whose "VM" is a user
//! process holding a tap fd ([`VmLab`], [`TapVm`]), a token-bucket shaper that delays packets
//! by a computable amount ([`Tbf`]), and a `ping` runner that parses the per-reply RTTs
//! ([`ping`]).
//!
//! ```text
//!  namespace a            namespace b (the "hypervisor host")
//! +--------------+       +--------------------------------------------+
//! |              |       |  br0 198.18.n.2/24 (MAC = lab.b_mac)       |
//! |  va          | veth  |  +--------------------------------------+  |
//! |  198.18.n.1 -+-------+--+- vb ("phy")           tp0 (tap) -+   |  |
//! |              |       |  +------------------------------------|-+  |
//! | neigh (perm) |       |  fdb 02:00:00:00:00:99 dev tp0 static |    |
//! | .99 -> VM    |       +---------------------------------------|----+
//! +--------------+                                               | tap fd
//!                                      +-------------------------+-----+
//!                                      | TapVm, the "VM": a thread     |
//!                                      | reads frames; its writes are  |
//!                                      | the VM's transmits            |
//!                                      | 02:00:00:00:00:99 198.18.n.99 |
//!                                      +-------------------------------+
//! ```
//!
//! Traffic from namespace a to the VM's address crosses the veth, the bridge and the tap's
//! transmit path (its default `pfifo_fast` qdisc, which never holds packets back: the tap
//! drops, counted in its `tx_dropped`, rather than stop its queue), and waits in the tun ring
//! ([`TAP_TXQUEUELEN`] frames) until the [`TapVm`] reads it: [`TapVm::pause`] stops
//! reading, so packets queue there, and [`TapVm::resume`] drains them. Frames the VM writes
//! ([`TapVm::write_frame`]) enter the kernel on `tp0` and are bridged out of `vb` to
//! namespace a.
//!
//! The last step, "VM notified", is optional: after [`TapVm::enable_irqfd_notify`] the reader
//! signals a KVM MSI irqfd ([`KvmIrqfd`]) after each batch of frames it read, from its own
//! thread, as vhost-net's worker does after moving packets into a guest's ring. KVM then
//! fires `kvm:kvm_msi_set_irq` in the reader's thread ([`TapVm::reader_tid`]).
//!
//! Everything is owned by guards: dropping the [`VmLab`] stops the reader and closes the tap
//! fd (which destroys `tp0`) and then deletes both namespaces (and with them `br0` and the
//! veths, their neighbour and fdb entries). [`Tbf`] removes its qdisc on drop.
use crate::kvm::KvmIrqfd;
use crate::{eth_frame, in_netns, ipv4_checksum, ns_exec, ns_exec_ok, udp_ipv4_frame, Lab};
use crate::{IfReq, IFF_MULTI_QUEUE, IFF_NO_PI, IFF_TAP, TUNSETIFF};
use std::collections::HashMap;
use std::fs::OpenOptions;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::process::Command;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// MAC address of the VM behind the tap.
pub const VM_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x99];
/// Last octet of the VM's IPv4 address (`198.18.n.99`, in the lab's `/24`).
pub const VM_HOST_OCTET: u8 = 99;
/// `txqueuelen` the VM lab gives its tap: how many frames the tun ring holds while the VM
/// does not read (further frames are dropped by the tap).
pub const TAP_TXQUEUELEN: u32 = 1000;
/// How long [`TapVm`]'s reader waits in `poll()` before it looks at its controls again.
const POLL_MS: libc::c_int = 5;
/// How long [`TapVm::pause`] and [`TapVm::enable_irqfd_notify`] wait for the reader to
/// acknowledge.
const PAUSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A hypervisor-host lab: namespace `b` bridges its "phy" `vb` and the VM's tap `tp0` on
/// `br0`, and holds its address on `br0`; the VM is a [`TapVm`] (see the module docs).
///
/// Fields drop in declaration order: the VM (reader thread, tap fd) first, then the lab.
pub struct VmLab {
    /// The VM: owns the tap fd and the thread reading it.
    pub vm: TapVm,
    /// The underlying two-namespace lab. `lab.b_ip` is now on `br0`, whose MAC is set to
    /// `lab.b_mac` (`vb`'s), so frames to `lab.b_mac` still reach the host stack.
    pub lab: Lab,
    /// The VM's address, `198.18.n.99` in the lab's `/24`.
    pub vm_ip: Ipv4Addr,
    /// The VM's MAC address ([`VM_MAC`]).
    pub vm_mac: [u8; 6],
    /// Name of the VM's tap in namespace b ([`VmLab::TAP`]).
    pub tap: &'static str,
    /// Name of the bridge in namespace b ([`VmLab::BRIDGE`]).
    pub bridge: &'static str,
}

impl VmLab {
    /// Name of the VM's tap device in namespace b.
    pub const TAP: &'static str = "tp0";
    /// Name of the bridge in namespace b.
    pub const BRIDGE: &'static str = "br0";

    /// Builds a [`Lab`] tagged `tag` and turns namespace b into a hypervisor host with one
    /// VM. Panics with the failing command's message if any step fails (all state created
    /// so far is removed).
    pub fn new(tag: &str) -> VmLab {
        let lab = Lab::new(tag);
        let [_, _, n, _] = lab.a_ip.octets();
        let vm_ip = Ipv4Addr::new(198, 18, n, VM_HOST_OCTET);
        let (a, b) = (lab.a.clone(), lab.b.clone());
        let (br, tap, vb) = (Self::BRIDGE, Self::TAP, Lab::B_IF);
        let b_mac = mac_string(lab.b_mac);
        let vm_mac = mac_string(VM_MAC);
        // With STP off (the default) ports forward at once; forward_delay 0 makes sure.
        ns_exec(
            &b,
            &[
                "ip",
                "link",
                "add",
                br,
                "address",
                &b_mac,
                "type",
                "bridge",
                "stp_state",
                "0",
                "forward_delay",
                "0",
            ],
        );
        ns_exec(&b, &["ip", "link", "set", vb, "master", br]);
        let vm = TapVm::create(&b, tap, VM_MAC, vm_ip);
        ns_exec(
            &b,
            &[
                "ip",
                "link",
                "set",
                tap,
                "txqueuelen",
                &TAP_TXQUEUELEN.to_string(),
            ],
        );
        ns_exec(&b, &["ip", "link", "set", tap, "master", br]);
        ns_exec(&b, &["ip", "link", "set", tap, "up"]);
        let b_cidr = format!("{}/24", lab.b_ip);
        ns_exec(&b, &["ip", "addr", "del", &b_cidr, "dev", vb]);
        ns_exec(&b, &["ip", "addr", "add", &b_cidr, "dev", br]);
        ns_exec(&b, &["ip", "link", "set", br, "up"]);
        ns_exec(
            &b,
            &[
                "bridge", "fdb", "add", &vm_mac, "dev", tap, "master", "static",
            ],
        );
        let vm_ip_s = vm_ip.to_string();
        for (ns, dev) in [(&a, Lab::A_IF), (&b, br)] {
            ns_exec(
                ns,
                &[
                    "ip",
                    "neigh",
                    "replace",
                    &vm_ip_s,
                    "lladdr",
                    &vm_mac,
                    "dev",
                    dev,
                    "nud",
                    "permanent",
                ],
            );
        }
        VmLab {
            vm,
            lab,
            vm_ip,
            vm_mac: VM_MAC,
            tap: Self::TAP,
            bridge: Self::BRIDGE,
        }
    }
}

/// Formats a MAC address as `aa:bb:cc:dd:ee:ff`.
pub fn mac_string(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

/// What the reader thread is told and what it acknowledges, under one mutex.
#[derive(Default)]
struct Ctl {
    /// `pause()` asked the reader to stop reading.
    pause_requested: bool,
    /// The reader acknowledged the pause: it is parked outside any `read()`.
    paused: bool,
    /// Drop asked the reader to exit.
    stop: bool,
    /// The reader exited on an error (the message).
    died: Option<String>,
    /// `enable_irqfd_notify()` hands the reader this irqfd to signal after each batch.
    irqfd_offer: Option<KvmIrqfd>,
    /// The reader took the irqfd: from now on it signals after each batch.
    irqfd_taken: bool,
}

/// State shared between a [`TapVm`] and its reader thread.
#[derive(Default)]
struct Shared {
    ctl: Mutex<Ctl>,
    cv: Condvar,
    frames: AtomicU64,
    /// Frames read, by queue (index of the fd).
    queue_frames: Mutex<Vec<u64>>,
    /// `signal()` calls the reader made on its irqfd.
    notifications: AtomicU64,
    udp_by_dport: Mutex<HashMap<u16, u64>>,
}

/// Locks `m`, ignoring poisoning (the data are plain counters and flags).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The user process standing in for a VM: owns a tap fd and a thread that reads frames
/// from it in a loop, counting them; writes to the fd are the VM's transmits.
///
/// The reader reads until `read()` returns `EAGAIN`; the frames read since the last
/// `EAGAIN` form a *batch*. With [`TapVm::enable_irqfd_notify`] it signals a [`KvmIrqfd`]
/// once at the end of each non-empty batch, like vhost-net, which signals the guest once
/// per run of `handle_rx` rather than per packet. A batch cut short by [`TapVm::pause`] is
/// signalled before the reader parks, so no notification is owed while paused.
///
/// Dropping it stops the thread (which closes the irqfd, if any) and closes the fd, which
/// destroys the tap device.
pub struct TapVm {
    /// Name of the tap device.
    pub name: String,
    /// Namespace the tap lives in.
    pub ns: String,
    /// The VM's MAC address (the source of its frames; not the tap device's own MAC).
    pub mac: [u8; 6],
    /// The VM's IPv4 address (the source of its frames).
    pub ip: Ipv4Addr,
    /// One fd per queue; the first is the one the VM writes to.
    fds: Arc<Vec<OwnedFd>>,
    shared: Arc<Shared>,
    reader: Option<JoinHandle<()>>,
    reader_tid: u32,
    next_ip_id: AtomicU16,
}

impl TapVm {
    /// Creates tap `name` (`IFF_TAP | IFF_NO_PI`, non-blocking fd) directly inside namespace
    /// `ns` and starts the reader. The device is left down, unenslaved and without address:
    /// the caller configures it. `mac`/`ip` are the VM's (used by [`TapVm::send_udp_from_vm`]).
    pub fn create(ns: &str, name: &str, mac: [u8; 6], ip: Ipv4Addr) -> TapVm {
        Self::create_queues(ns, name, mac, ip, 1)
    }

    /// As [`TapVm::create`], with `queues` queues (`IFF_MULTI_QUEUE` when more than one):
    /// one fd per queue, all read by the one reader thread, in turn.
    pub fn create_queues(ns: &str, name: &str, mac: [u8; 6], ip: Ipv4Addr, queues: usize) -> TapVm {
        assert!(name.len() < 16, "tap name {name:?} too long");
        assert!((1..=256).contains(&queues), "{queues} tap queues");
        let (name_owned, ns_owned) = (name.to_owned(), ns.to_owned());
        let flags = IFF_TAP | IFF_NO_PI | if queues > 1 { IFF_MULTI_QUEUE } else { 0 };
        // Opened inside `ns`, the tun socket and so the device belong to `ns` from the start:
        // nothing is created in the caller's namespace, where parallel labs would collide.
        let fds: Vec<OwnedFd> = in_netns(ns, move || {
            (0..queues)
                .map(|_| {
                    let file = OpenOptions::new()
                        .read(true)
                        .write(true)
                        .custom_flags(libc::O_NONBLOCK)
                        .open("/dev/net/tun")
                        .unwrap_or_else(|e| panic!("open /dev/net/tun in {ns_owned}: {e}"));
                    let mut req = IfReq {
                        name: [0; 16],
                        flags,
                        _pad: [0; 22],
                    };
                    req.name[..name_owned.len()].copy_from_slice(name_owned.as_bytes());
                    // SAFETY: `req` is a correctly laid-out ifreq that outlives the call.
                    let rc = unsafe {
                        libc::ioctl(file.as_raw_fd(), TUNSETIFF, std::ptr::addr_of_mut!(req))
                    };
                    assert!(
                        rc == 0,
                        "TUNSETIFF {name_owned} in {ns_owned}: {}",
                        std::io::Error::last_os_error()
                    );
                    OwnedFd::from(file)
                })
                .collect()
        });
        Self::with_fds(ns, name, mac, ip, fds)
    }

    /// Creates macvtap `name` on `lower` in namespace `ns` (bridge mode, MAC `mac`, ring of
    /// `txqueuelen` slots, up), opens its character device (`/dev/tap<ifindex>`, non-blocking)
    /// and starts the reader. The VM's frames carry `mac` and `ip`. The device lives until
    /// the namespace goes.
    pub fn create_macvtap(
        ns: &str,
        name: &str,
        lower: &str,
        mac: [u8; 6],
        ip: Ipv4Addr,
        txqueuelen: u32,
    ) -> TapVm {
        let (addr, qlen) = (mac_string(mac), txqueuelen.to_string());
        ns_exec(
            ns,
            &[
                "ip",
                "link",
                "add",
                "link",
                lower,
                "name",
                name,
                "address",
                &addr,
                "txqueuelen",
                &qlen,
                "type",
                "macvtap",
                "mode",
                "bridge",
            ],
        );
        ns_exec(ns, &["ip", "link", "set", name, "up"]);
        let owned = name.to_owned();
        let ifindex = in_netns(ns, move || nix::net::if_::if_nametoindex(owned.as_str()))
            .unwrap_or_else(|e| panic!("macvtap {name} in {ns}: {e}"));
        // devtmpfs names the character device after the ifindex the macvtap had when created.
        let path = format!("/dev/tap{ifindex}");
        let deadline = Instant::now() + Duration::from_secs(5);
        let file = loop {
            match OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&path)
            {
                Ok(f) => break f,
                Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                Err(e) => panic!("open {path} (macvtap {name} in {ns}): {e}"),
            }
        };
        Self::with_fds(ns, name, mac, ip, vec![OwnedFd::from(file)])
    }

    /// A VM on tap queues `fds` (already open) of device `name`: starts the reader.
    fn with_fds(ns: &str, name: &str, mac: [u8; 6], ip: Ipv4Addr, fds: Vec<OwnedFd>) -> TapVm {
        let queues = fds.len();
        let fds = Arc::new(fds);
        let shared = Arc::new(Shared {
            queue_frames: Mutex::new(vec![0; queues]),
            ..Shared::default()
        });
        let (tid_tx, tid_rx) = mpsc::channel();
        let reader = {
            let (fds, shared) = (Arc::clone(&fds), Arc::clone(&shared));
            thread::Builder::new()
                .name(format!("tapvm-{name}"))
                .spawn(move || {
                    // SAFETY: gettid(2) has no preconditions.
                    let tid = unsafe { libc::gettid() };
                    let _ = tid_tx.send(u32::try_from(tid).unwrap_or(0));
                    if let Err(e) = reader_loop(&fds, &shared) {
                        lock(&shared.ctl).died = Some(e);
                        shared.cv.notify_all();
                    }
                })
                .unwrap_or_else(|e| panic!("spawn tap reader for {name}: {e}"))
        };
        let reader_tid = tid_rx
            .recv()
            .unwrap_or_else(|e| panic!("tap reader for {name} did not start: {e}"));
        TapVm {
            name: name.to_owned(),
            ns: ns.to_owned(),
            mac,
            ip,
            fds,
            shared,
            reader: Some(reader),
            reader_tid,
            next_ip_id: AtomicU16::new(1),
        }
    }

    /// Thread id (`gettid()`) of the reader thread: the context in which it reads the tap
    /// and signals the irqfd (tracefs' and BPF's `pid`/`tid` of those events).
    pub fn reader_tid(&self) -> u32 {
        self.reader_tid
    }

    /// Creates a [`KvmIrqfd`] and hands it to the reader thread, which from then on signals
    /// it after each batch of frames (see [`TapVm`]). When this returns the reader owns it:
    /// every batch that ends afterwards is signalled (one whose frames were partly read
    /// before is signalled too). Calling it again does nothing. Fails if KVM is unusable
    /// ([`KvmIrqfd::create`]), the reader died, or it does not take the irqfd within 5 s.
    pub fn enable_irqfd_notify(&self) -> Result<(), String> {
        if lock(&self.shared.ctl).irqfd_taken {
            return Ok(());
        }
        let irqfd = KvmIrqfd::create()?;
        let mut ctl = lock(&self.shared.ctl);
        if ctl.irqfd_offer.is_none() && !ctl.irqfd_taken {
            ctl.irqfd_offer = Some(irqfd);
            self.shared.cv.notify_all();
        } // else a concurrent call got there first; ours is dropped.
        let deadline = Instant::now() + PAUSE_TIMEOUT;
        while !ctl.irqfd_taken {
            if let Some(e) = &ctl.died {
                return Err(format!("tap reader of {} died: {e}", self.name));
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Err(format!(
                    "tap reader of {} did not take the irqfd in 5 s",
                    self.name
                ));
            };
            ctl = self
                .shared
                .cv
                .wait_timeout(ctl, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        Ok(())
    }

    /// How many times the reader signalled its irqfd (0 before
    /// [`TapVm::enable_irqfd_notify`]); at most one per batch, so never more than the frames
    /// read.
    pub fn notifications(&self) -> u64 {
        self.shared.notifications.load(Ordering::SeqCst)
    }

    /// Frames read from the tap so far (every kind: ARP, broadcasts, ...).
    pub fn frames_read(&self) -> u64 {
        self.shared.frames.load(Ordering::SeqCst)
    }

    /// Frames read so far from queue `queue` (0 for a queue the tap does not have).
    pub fn frames_read_on(&self, queue: usize) -> u64 {
        lock(&self.shared.queue_frames)
            .get(queue)
            .copied()
            .unwrap_or(0)
    }

    /// The fd of queue `queue` (to attach a steering program, for one).
    pub fn queue_fd(&self, queue: usize) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.fds.get(queue).map(|fd| fd.as_fd())
    }

    /// Frames read so far that were untagged Ethernet/IPv4/UDP (first fragment or whole)
    /// with destination port `port`.
    pub fn udp_frames_to(&self, port: u16) -> u64 {
        lock(&self.shared.udp_by_dport)
            .get(&port)
            .copied()
            .unwrap_or(0)
    }

    /// Stops reading: when this returns the reader is parked outside `read()` and the
    /// counters no longer change, so frames for the VM wait in the tun ring (up to its
    /// `txqueuelen`, then the tap drops). Panics if the reader died or does not
    /// acknowledge within 5 s.
    pub fn pause(&self) {
        let mut ctl = lock(&self.shared.ctl);
        ctl.pause_requested = true;
        self.shared.cv.notify_all();
        let deadline = Instant::now() + PAUSE_TIMEOUT;
        while !ctl.paused {
            if let Some(e) = &ctl.died {
                panic!("tap reader of {} died: {e}", self.name);
            }
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("tap reader of {} did not pause in 5 s", self.name));
            ctl = self
                .shared
                .cv
                .wait_timeout(ctl, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Lets the reader go on reading (and so drain what queued while paused).
    /// Does nothing when not paused.
    pub fn resume(&self) {
        let mut ctl = lock(&self.shared.ctl);
        ctl.pause_requested = false;
        self.shared.cv.notify_all();
    }

    /// Writes one complete Ethernet frame into the tap: the kernel receives it on the tap as
    /// the VM's transmit. Panics if the write fails or is short.
    pub fn write_frame(&self, frame: &[u8]) {
        // SAFETY: the pointer/length pair describes the live `frame` buffer and the fd is
        // open for as long as `self` lives.
        let n = unsafe { libc::write(self.fds[0].as_raw_fd(), frame.as_ptr().cast(), frame.len()) };
        assert!(
            n >= 0,
            "write of a {}-byte frame to tap {}: {}",
            frame.len(),
            self.name,
            std::io::Error::last_os_error()
        );
        assert!(
            usize::try_from(n).ok() == Some(frame.len()),
            "short write to tap {}: {n} of {} bytes",
            self.name,
            frame.len()
        );
    }

    /// Sends `count` UDP datagrams of `payload_len` bytes (0x5a) from the VM (its MAC and
    /// IP, source port `src_port`) to `dst_mac`/`dst_ip`:`dst_port`, writing each frame into
    /// the tap. Every frame gets the next IP id of the VM's counter (starting at 1, wrapping
    /// at 65535); nothing else varies. Returns the ids in sending order, so `count` may be at
    /// most 65536 for them to be distinct.
    pub fn send_udp_from_vm(
        &self,
        dst_mac: [u8; 6],
        dst_ip: Ipv4Addr,
        dst_port: u16,
        src_port: u16,
        count: usize,
        payload_len: usize,
    ) -> Vec<u16> {
        assert!(
            count <= 1 << 16,
            "{count} datagrams cannot have distinct IP ids"
        );
        let payload = vec![0x5a_u8; payload_len];
        let mut frame = udp_ipv4_frame(
            dst_mac, self.mac, self.ip, dst_ip, src_port, dst_port, &payload,
        );
        let first = self.next_ip_id.fetch_add(count as u16, Ordering::SeqCst);
        let ids: Vec<u16> = (0..count).map(|i| first.wrapping_add(i as u16)).collect();
        for &id in &ids {
            set_ip_id(&mut frame, id);
            self.write_frame(&frame);
        }
        ids
    }
}

impl Drop for TapVm {
    fn drop(&mut self) {
        lock(&self.shared.ctl).stop = true;
        self.shared.cv.notify_all();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        // The reader's clone of the fd is gone; ours closes as the field drops.
    }
}

/// The reader's notification state: the irqfd once handed over, and the frames read since the
/// last `EAGAIN` (the current batch).
#[derive(Default)]
struct Notify {
    irqfd: Option<KvmIrqfd>,
    batch: u64,
}

impl Notify {
    /// Takes an irqfd `enable_irqfd_notify()` offered, and acknowledges it.
    fn take_offer(&mut self, ctl: &mut Ctl, shared: &Shared) {
        if let Some(irqfd) = ctl.irqfd_offer.take() {
            self.irqfd = Some(irqfd);
            ctl.irqfd_taken = true;
            shared.cv.notify_all();
        }
    }

    /// Ends the current batch: signals the irqfd if the batch read anything and there is one.
    fn end_batch(&mut self, shared: &Shared) -> Result<(), String> {
        if self.batch > 0 {
            if let Some(irqfd) = &self.irqfd {
                irqfd.signal()?;
                shared.notifications.fetch_add(1, Ordering::SeqCst);
            }
        }
        self.batch = 0;
        Ok(())
    }
}

/// The reader thread: reads frames while not paused, until told to stop. It reads one frame
/// from each queue in turn until every queue says `EAGAIN`, ends the batch there (signalling
/// the irqfd, if enabled), and then waits in `poll()`. The controls are checked before every
/// round of reads.
fn reader_loop(fds: &[OwnedFd], shared: &Shared) -> Result<(), String> {
    let mut buf = vec![0u8; 65_536];
    let mut notify = Notify::default();
    loop {
        {
            let mut ctl = lock(&shared.ctl);
            notify.take_offer(&mut ctl, shared);
            if ctl.pause_requested && !ctl.stop {
                // Signal what was read before parking, so nothing changes while paused.
                notify.end_batch(shared)?;
                ctl.paused = true;
                shared.cv.notify_all();
                while ctl.pause_requested && !ctl.stop {
                    ctl = shared.cv.wait(ctl).unwrap_or_else(|p| p.into_inner());
                    notify.take_offer(&mut ctl, shared);
                }
                ctl.paused = false;
            }
            if ctl.stop {
                return Ok(());
            }
        }
        let mut idle = true;
        for (queue, fd) in fds.iter().enumerate() {
            // SAFETY: `buf` is a live buffer of `buf.len()` bytes; the fd is open (we hold it).
            let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                let err = std::io::Error::last_os_error();
                match err.kind() {
                    std::io::ErrorKind::Interrupted => idle = false,
                    std::io::ErrorKind::WouldBlock => {}
                    _ => return Err(format!("read queue {queue}: {err}")),
                }
                continue;
            }
            idle = false;
            let frame = &buf[..usize::try_from(n).unwrap_or(0)];
            lock(&shared.queue_frames)[queue] += 1;
            shared.frames.fetch_add(1, Ordering::SeqCst);
            if let Some(port) = udp_dport(frame) {
                *lock(&shared.udp_by_dport).entry(port).or_insert(0) += 1;
            }
            notify.batch += 1;
        }
        if idle {
            notify.end_batch(shared)?;
            wait_readable(fds)?;
        }
    }
}

/// Waits up to [`POLL_MS`] for one of `fds` to become readable (returning early on a signal).
fn wait_readable(fds: &[OwnedFd]) -> Result<(), String> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `pfds` is a live array of valid pollfds that outlives the call.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, POLL_MS) };
    if rc < 0 {
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("poll: {err}"));
        }
    }
    Ok(())
}

/// The UDP destination port of an untagged Ethernet/IPv4/UDP frame (whole or first
/// fragment), `None` for anything else.
fn udp_dport(frame: &[u8]) -> Option<u16> {
    let ip = frame.get(14..)?;
    if frame.get(12..14)? != [0x08, 0x00] || ip.first()? >> 4 != 4 || *ip.get(9)? != 17 {
        return None;
    }
    let frag_offset = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]) & 0x1fff;
    if frag_offset != 0 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let udp = ip.get(ihl..ihl + 8)?;
    Some(u16::from_be_bytes([udp[2], udp[3]]))
}

/// Sets the IPv4 id of the Ethernet/IPv4 `frame` (untagged, as [`udp_ipv4_frame`] builds it)
/// to `id` and recomputes the IPv4 header checksum. Panics if `frame` is not such a frame.
pub fn set_ip_id(frame: &mut [u8], id: u16) {
    assert!(
        frame.len() >= 34 && frame[12..14] == [0x08, 0x00] && frame[14] >> 4 == 4,
        "not an Ethernet/IPv4 frame: {:02x?}",
        &frame[..frame.len().min(34)]
    );
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    assert!(
        ihl >= 20 && frame.len() >= 14 + ihl,
        "bad IPv4 header length {ihl}"
    );
    let hdr = &mut frame[14..14 + ihl];
    hdr[4..6].copy_from_slice(&id.to_be_bytes());
    hdr[10..12].copy_from_slice(&[0, 0]);
    let csum = ipv4_checksum(hdr);
    hdr[10..12].copy_from_slice(&csum.to_be_bytes());
}

/// Like [`udp_ipv4_frame`] (valid IPv4 checksum, TTL 64, UDP checksum 0) with IP id `ip_id`.
#[allow(clippy::too_many_arguments)]
pub fn udp_ipv4_frame_with_id(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    payload: &[u8],
    ip_id: u16,
) -> Vec<u8> {
    let mut frame = udp_ipv4_frame(dst_mac, src_mac, src, dst, sport, dport, payload);
    set_ip_id(&mut frame, ip_id);
    frame
}

/// How much a [`Tbf`] may queue before it drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TbfQueue {
    /// `latency`: the longest a packet may wait (tc turns it into a byte limit,
    /// `rate * latency + burst`).
    Latency(Duration),
    /// `limit`: bytes that may wait in the queue.
    Bytes(u32),
}

/// A `tbf` root qdisc on a device in a namespace, removed on drop.
///
/// # Queueing delay
///
/// tbf charges each packet its length as the qdisc sees it: the frame from the Ethernet
/// header on, without preamble, FCS or inter-frame gap and without the 60-byte minimum
/// padding (a veth or tap never pads), i.e. `L = 14 + IP total length`. The bucket starts
/// full with `B` = `burst` bytes of tokens and refills at `R` bit/s. A burst of `K` frames of
/// `L` bytes each, all enqueued at t = 0 on an idle shaper, leaves at
///
/// ```text
/// t_i = max(0, ((i + 1) * L - B) * 8 / R)      seconds, frame i = 0 .. K-1
/// ```
///
/// so frame `i` waits roughly `max(0, i * L * 8 / R - (B - L) * 8 / R)`: the first
/// `floor(B / L)` frames pass at once, every later one `L * 8 / R` after the previous. For
/// example 10 frames of 1042 bytes at 10 Mbit/s with `burst` 1042 wait 0, 0.83, 1.67, ...,
/// 7.5 ms. Frames arriving while the backlog already holds the [`TbfQueue`] limit are
/// dropped (`L` counts against it too), and `burst` must be at least the largest frame or
/// such frames are dropped; tc rounds `burst` to timer ticks (1042 shows as `1041b`), so
/// leave a few bytes of margin. The kernel's timer adds microseconds of jitter to each `t_i`.
pub struct Tbf {
    /// Namespace of the device.
    pub ns: String,
    /// Device whose root qdisc this is.
    pub dev: String,
}

impl Tbf {
    /// Runs `tc qdisc replace dev <dev> root tbf rate <rate_bit_s>bit burst <burst_bytes>
    /// (latency <ms>ms | limit <bytes>)` in `ns`; panics with tc's message on failure.
    pub fn install(ns: &str, dev: &str, rate_bit_s: u64, burst_bytes: u32, queue: TbfQueue) -> Tbf {
        let rate = format!("{rate_bit_s}bit");
        let burst = burst_bytes.to_string();
        let (key, value) = match queue {
            TbfQueue::Latency(d) => ("latency", format!("{}us", d.as_micros())),
            TbfQueue::Bytes(b) => ("limit", b.to_string()),
        };
        ns_exec(
            ns,
            &[
                "tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate", &rate, "burst",
                &burst, key, &value,
            ],
        );
        Tbf {
            ns: ns.to_owned(),
            dev: dev.to_owned(),
        }
    }
}

impl Drop for Tbf {
    fn drop(&mut self) {
        // Fails harmlessly if the namespace or the device is already gone.
        let _ = ns_exec_ok(&self.ns, &["tc", "qdisc", "del", "dev", &self.dev, "root"]);
    }
}

/// One echo reply that `ping` reported.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PingReply {
    /// ICMP sequence number (`icmp_seq`; ping numbers from 1).
    pub seq: u16,
    /// ICMP identifier (`ident`, printed because of `-v`), if ping printed it.
    pub ident: Option<u16>,
    /// TTL of the reply.
    pub ttl: u8,
    /// Round-trip time in microseconds.
    pub rtt_us: f64,
    /// ping marked the reply `(DUP!)`.
    pub duplicate: bool,
}

/// Runs iputils `ping -n -v -c <count> -i <interval_ms/1000> -W 2 <dst>` in `ns` and returns
/// the replies it printed, in order (lost requests are simply missing; no reply at all
/// gives an empty list). Intervals below 2 ms need root. Panics if ping cannot run or fails
/// otherwise (exit status other than 0 or 1).
pub fn ping(ns: &str, dst: Ipv4Addr, count: u32, interval_ms: u32) -> Vec<PingReply> {
    ping_with(ns, dst, count, interval_ms, &[])
}

/// [`ping`] with extra options, e.g. `-U` (user-to-user latency: from before `sendto()` to
/// after `recvmsg()`, where the default RTT ends at the reply's kernel receive timestamp).
pub fn ping_with(
    ns: &str,
    dst: Ipv4Addr,
    count: u32,
    interval_ms: u32,
    extra: &[&str],
) -> Vec<PingReply> {
    let interval = format!("{}.{:03}", interval_ms / 1000, interval_ms % 1000);
    let (count_s, dst_s) = (count.to_string(), dst.to_string());
    let mut args = vec![
        "netns", "exec", ns, "ping", "-n", "-v", "-c", &count_s, "-i", &interval, "-W", "2",
    ];
    args.extend_from_slice(extra);
    args.push(&dst_s);
    let out = Command::new("ip")
        .args(&args)
        .output()
        .unwrap_or_else(|e| panic!("spawn ip {args:?}: {e}"));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    // 1: some or all requests got no reply; anything else is a failure to ping at all.
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "ip {args:?} failed ({}; is iputils-ping installed?): {}",
        out.status,
        stderr.trim()
    );
    stdout.lines().filter_map(parse_ping_line).collect()
}

/// Parses one iputils reply line, e.g.
/// `64 bytes from 198.18.10.2: icmp_seq=1 ident=26347 ttl=64 time=0.045 ms`.
fn parse_ping_line(line: &str) -> Option<PingReply> {
    let (_, rest) = line.split_once(" bytes from ")?;
    let (mut seq, mut ident, mut ttl, mut rtt_ms) = (None, None, None, None);
    for token in rest.split_whitespace() {
        match token.split_once('=') {
            Some(("icmp_seq", v)) => seq = v.parse().ok(),
            Some(("ident", v)) => ident = v.parse().ok(),
            Some(("ttl", v)) => ttl = v.parse().ok(),
            Some(("time", v)) => rtt_ms = v.parse::<f64>().ok(),
            _ => {}
        }
    }
    Some(PingReply {
        seq: seq?,
        ident,
        ttl: ttl?,
        rtt_us: rtt_ms? * 1000.0,
        duplicate: rest.contains("(DUP!)"),
    })
}

/// Builds an Ethernet broadcast ARP request from `src_mac`/`src_ip` for `target`
/// (handy to make the bridge learn the VM's port, or to poke the host).
pub fn arp_request(src_mac: [u8; 6], src_ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1];
    arp.extend_from_slice(&src_mac);
    arp.extend_from_slice(&src_ip.octets());
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&target.octets());
    eth_frame([0xff; 6], src_mac, 0x0806, &arp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kvm::{MsiEvent, MsiTrace, MSI_VECTOR};
    use crate::{require_root, send_udp, wait_until};
    use std::net::{SocketAddrV4, UdpSocket};

    const WAIT: Duration = Duration::from_secs(10);

    #[test]
    fn ping_lines_parse() {
        let r = parse_ping_line(
            "64 bytes from 198.18.10.2: icmp_seq=7 ident=26347 ttl=64 time=0.045 ms",
        )
        .expect("reply line parses");
        assert_eq!(
            (r.seq, r.ident, r.ttl, r.duplicate),
            (7, Some(26347), 64, false)
        );
        assert!((r.rtt_us - 45.0).abs() < 1e-9);
        let r = parse_ping_line("64 bytes from 10.0.0.1: icmp_seq=2 ttl=63 time=12 ms (DUP!)")
            .expect("dup line parses");
        assert_eq!((r.seq, r.ident, r.duplicate), (2, None, true));
        assert!((r.rtt_us - 12_000.0).abs() < 1e-9);
        assert_eq!(
            parse_ping_line("PING 1.2.3.4 (1.2.3.4) 56(84) bytes of data."),
            None
        );
        assert_eq!(
            parse_ping_line("From 1.2.3.4 icmp_seq=1 Destination Host Unreachable"),
            None
        );
    }

    #[test]
    fn ip_id_is_patched_with_a_valid_checksum() {
        let (m1, m2) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let (s, d) = (Ipv4Addr::new(198, 18, 1, 1), Ipv4Addr::new(198, 18, 1, 2));
        let f = udp_ipv4_frame_with_id(m1, m2, s, d, 1000, 2000, b"hello", 0xbeef);
        assert_eq!(f[18..20], [0xbe, 0xef]);
        assert_eq!(ipv4_checksum(&f[14..34]), 0, "header checksums to zero");
        let mut g = udp_ipv4_frame(m1, m2, s, d, 1000, 2000, b"hello");
        set_ip_id(&mut g, 0xbeef);
        assert_eq!(f, g);
        assert_eq!(udp_dport(&f), Some(2000));
        assert_eq!(udp_dport(&arp_request(m1, s, d)), None);
    }

    /// A VM frame written into the tap is bridged out of `vb` and received in namespace a.
    #[test]
    fn latency_vm_frames_reach_namespace_a() {
        require_root();
        let vl = VmLab::new("lat-tx");
        let port = 40_001;
        let a_ip = vl.lab.a_ip;
        let sock = in_netns(&vl.lab.a, move || {
            UdpSocket::bind(SocketAddrV4::new(a_ip, port))
                .unwrap_or_else(|e| panic!("bind {a_ip}:{port} in a: {e}"))
        });
        sock.set_read_timeout(Some(WAIT))
            .expect("set UDP read timeout");
        let ids = vl
            .vm
            .send_udp_from_vm(vl.lab.a_mac, a_ip, port, 5555, 5, 100);
        assert_eq!(ids, vec![1, 2, 3, 4, 5]);
        let mut buf = [0u8; 2048];
        for i in 0..5 {
            let (n, from) = sock
                .recv_from(&mut buf)
                .unwrap_or_else(|e| panic!("datagram {i} from the VM not received in a: {e}"));
            assert_eq!(n, 100);
            assert_eq!(from, SocketAddrV4::new(vl.vm_ip, 5555).into());
            assert!(buf[..n].iter().all(|&b| b == 0x5a));
        }
        // The next batch continues the id counter.
        assert_eq!(
            vl.vm.send_udp_from_vm(vl.lab.a_mac, a_ip, port, 5555, 2, 0),
            vec![6, 7]
        );
    }

    /// UDP from namespace a to the VM is read by the TapVm; paused, it waits in the tun ring
    /// and arrives on resume.
    #[test]
    fn latency_vm_reads_and_pause_holds() {
        require_root();
        let vl = VmLab::new("lat-rx");
        let (a, vm_ip, port) = (vl.lab.a.clone(), vl.vm_ip, 40_002);
        let dst = SocketAddrV4::new(vm_ip, port);
        send_udp(&a, None, dst, 20, 64);
        wait_until("20 datagrams read by the VM", WAIT, || {
            vl.vm.udp_frames_to(port) == 20
        });
        assert_eq!(vl.vm.udp_frames_to(port + 1), 0);

        vl.vm.pause();
        let before = vl.vm.frames_read();
        let rx0 = crate::read_stat(&vl.lab.b, Lab::B_IF, "rx_packets");
        send_udp(&a, None, dst, 300, 64);
        // Readiness: the host received all 300 on its phy (and bridged them to the tap ring
        // in the same softirq); give a late one a moment, then check none was read.
        wait_until("300 datagrams received on vb", WAIT, || {
            crate::read_stat(&vl.lab.b, Lab::B_IF, "rx_packets") >= rx0 + 300
        });
        thread::sleep(Duration::from_millis(50));
        assert_eq!(vl.vm.frames_read(), before, "paused VM read nothing");
        assert_eq!(vl.vm.udp_frames_to(port), 20);

        vl.vm.resume();
        wait_until("the 300 queued datagrams drained", WAIT, || {
            vl.vm.udp_frames_to(port) == 320
        });
        assert_eq!(crate::read_stat(&vl.lab.b, vl.tap, "tx_dropped"), 0);
        // pause/resume are repeatable.
        vl.vm.pause();
        vl.vm.pause();
        vl.vm.resume();
        vl.vm.resume();
    }

    /// With irqfd notification on, the reader signals KVM once per batch of frames it read, from
    /// its own thread: `kvm:kvm_msi_set_irq` fires there once per notification. Paused, it
    /// neither reads nor signals; the queue drained on resume is one batch.
    #[test]
    fn latency_vm_kvm_irqfd_notifies_per_batch() {
        require_root();
        let _serial = crate::kvm::KVM_TESTS
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let vl = VmLab::new("lat-kvm");
        let (a, b, port) = (vl.lab.a.clone(), vl.lab.b.clone(), 40_004);
        let dst = SocketAddrV4::new(vl.vm_ip, port);
        send_udp(&a, None, dst, 5, 64);
        wait_until("5 datagrams read by the VM", WAIT, || {
            vl.vm.udp_frames_to(port) == 5
        });
        assert_eq!(
            vl.vm.notifications(),
            0,
            "nothing signalled before enabling"
        );

        let trace = MsiTrace::start().unwrap_or_else(|e| panic!("{e}"));
        vl.vm
            .enable_irqfd_notify()
            .unwrap_or_else(|e| panic!("{e}"));
        vl.vm
            .enable_irqfd_notify()
            .unwrap_or_else(|e| panic!("second call: {e}"));
        let frames0 = vl.vm.frames_read();
        send_udp(&a, None, dst, 50, 64);
        wait_until("55 datagrams read by the VM", WAIT, || {
            vl.vm.udp_frames_to(port) == 55
        });
        // The batch ends at the EAGAIN right after its last frame.
        wait_until("a notification", WAIT, || vl.vm.notifications() > 0);
        let n1 = vl.vm.notifications();
        let read1 = vl.vm.frames_read() - frames0;
        assert!(n1 <= read1, "{n1} notifications for {read1} frames");

        vl.vm.pause();
        let n2 = vl.vm.notifications();
        let rx0 = crate::read_stat(&b, Lab::B_IF, "rx_packets");
        send_udp(&a, None, dst, 300, 64);
        wait_until("300 datagrams received on vb", WAIT, || {
            crate::read_stat(&b, Lab::B_IF, "rx_packets") >= rx0 + 300
        });
        thread::sleep(Duration::from_millis(50));
        assert_eq!(vl.vm.notifications(), n2, "a paused VM signals nothing");
        vl.vm.resume();
        wait_until("the 300 queued datagrams drained", WAIT, || {
            vl.vm.udp_frames_to(port) == 355
        });
        wait_until("the drain signalled", WAIT, || vl.vm.notifications() > n2);
        vl.vm.pause();
        let n3 = vl.vm.notifications();
        // One batch (read without EAGAIN), plus one per stray frame that arrived later.
        assert!(n3 - n2 <= 3, "{} notifications for one drain", n3 - n2);
        assert!(n3 <= vl.vm.frames_read() - frames0);

        let events = trace.events().unwrap_or_else(|e| panic!("{e}"));
        let tid = vl.vm.reader_tid();
        let ours: Vec<&MsiEvent> = events.iter().filter(|e| e.tid == tid).collect();
        assert_eq!(
            ours.len() as u64,
            n3,
            "kvm_msi_set_irq in the reader (tid {tid}): {events:?}"
        );
        assert!(ours.iter().all(|e| e.vector == MSI_VECTOR && e.dst == 0));
        vl.vm.resume();
    }

    /// The host keeps its address on br0, the bridge has the VM's static fdb entry, and ping
    /// from a to the host is parsed.
    #[test]
    fn latency_host_reachable_and_ping_parses() {
        require_root();
        let vl = VmLab::new("lat-ping");
        let fdb = ns_exec(&vl.lab.b, &["bridge", "fdb", "show", "dev", vl.tap]);
        assert!(
            fdb.lines()
                .any(|l| l.starts_with(&mac_string(VM_MAC)) && l.contains("static")),
            "no static fdb entry for the VM: {fdb}"
        );
        let replies = ping(&vl.lab.a, vl.lab.b_ip, 5, 10);
        let seqs: Vec<u16> = replies.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5], "replies: {replies:?}");
        assert!(replies
            .iter()
            .all(|r| r.rtt_us > 0.0 && r.rtt_us < 1e6 && r.ttl == 64 && r.ident.is_some()));
        // The VM never answers: no replies, no panic.
        assert!(ping(&vl.lab.a, vl.vm_ip, 2, 10).is_empty());
    }

    /// A tbf on `va` spaces a burst out as the doc formula says, and goes away on drop.
    #[test]
    fn latency_tbf_delays_and_is_removed() {
        require_root();
        let vl = VmLab::new("lat-tbf");
        let (a, vm_ip, port) = (vl.lab.a.clone(), vl.vm_ip, 40_003);
        {
            // 1000-byte payload: L = 14 + 20 + 8 + 1000 = 1042 bytes; 10 Mbit/s -> 0.8336 ms
            // each after the first three (burst 4000 bytes).
            let _tbf = Tbf::install(&a, Lab::A_IF, 10_000_000, 4000, TbfQueue::Bytes(100_000));
            let show = ns_exec(&a, &["tc", "qdisc", "show", "dev", Lab::A_IF]);
            assert!(show.contains("tbf"), "no tbf: {show}");
            let start = Instant::now();
            send_udp(&a, None, SocketAddrV4::new(vm_ip, port), 21, 1000);
            wait_until("21 shaped datagrams read", WAIT, || {
                vl.vm.udp_frames_to(port) == 21
            });
            // Frame 20 leaves at (21 * 1042 - 4000) * 8 / 1e7 s = 14.3 ms.
            let took = start.elapsed();
            assert!(
                took >= Duration::from_micros(13_500),
                "21 frames took only {took:?}"
            );
        }
        let show = ns_exec(&a, &["tc", "qdisc", "show", "dev", Lab::A_IF]);
        assert!(!show.contains("tbf"), "tbf left behind: {show}");
    }
}
