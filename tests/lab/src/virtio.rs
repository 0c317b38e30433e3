//! Two virtio-net NICs joined by a QEMU hub: the VM tier gives its guest these (tests/vm/run.sh:
//! `-netdev hubport` + `virtio-net-pci` with [`HUB_MACS`]); [`VirtioHub`] puts each in its own
//! namespace, so a datagram sent from `a` is received by `b`'s virtio-net driver, and nothing
//! else is (IPv6 off, static neighbours).
use crate::{create_quiet_netns, delete_netns, ns_exec};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// MAC addresses of the hub's two NICs (tests/vm/run.sh gives them to QEMU).
pub const HUB_MACS: [&str; 2] = ["52:54:00:4e:50:01", "52:54:00:4e:50:02"];

static HUB_COUNTER: AtomicU32 = AtomicU32::new(0);

/// One NIC of the hub as found in the root namespace.
#[derive(Debug, Clone)]
pub struct HubNic {
    /// Interface name (`eth0`).
    pub ifname: String,
    /// The virtio device behind it (`virtio1`): its IRQs are named after it.
    pub virtio: String,
}

/// The hub's NICs in the root namespace, in [`HUB_MACS`] order; an error says what is missing.
pub fn find_hub_nics() -> Result<[HubNic; 2], String> {
    let mut found: Vec<Option<HubNic>> = vec![None, None];
    let dir = std::fs::read_dir("/sys/class/net").map_err(|e| format!("/sys/class/net: {e}"))?;
    for entry in dir.flatten() {
        let ifname = entry.file_name().to_string_lossy().into_owned();
        let Ok(mac) = std::fs::read_to_string(entry.path().join("address")) else {
            continue;
        };
        let Some(i) = HUB_MACS.iter().position(|m| *m == mac.trim()) else {
            continue;
        };
        let device = std::fs::read_link(entry.path().join("device"))
            .map_err(|e| format!("{ifname}: no device link: {e}"))?;
        let virtio = device
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        found[i] = Some(HubNic { ifname, virtio });
    }
    match (found[0].take(), found[1].take()) {
        (Some(a), Some(b)) => Ok([a, b]),
        _ => Err(format!(
            "no virtio-net NICs with MACs {HUB_MACS:?} (the VM tier's QEMU hub)"
        )),
    }
}

/// The hub's NICs, each in its own namespace with an address.
pub struct VirtioHub {
    /// Namespace of the sending NIC.
    pub a: String,
    /// Namespace of the receiving NIC.
    pub b: String,
    /// The sending NIC (in `a`).
    pub nic_a: HubNic,
    /// The receiving NIC (in `b`).
    pub nic_b: HubNic,
    /// Address of `nic_a`.
    pub a_ip: Ipv4Addr,
    /// Address of `nic_b`.
    pub b_ip: Ipv4Addr,
}

impl VirtioHub {
    /// Moves the hub's NICs into two fresh namespaces; `tag` names them. Measured in the VM
    /// tier: the first hub after boot may pass nothing (the sender counts its datagrams sent,
    /// the receiver's driver none, also after a link down/up); handing the NICs back to the
    /// root namespace and setting them up again fixes it, so that is retried twice.
    pub fn new(tag: &str) -> Result<VirtioHub, String> {
        crate::require_root();
        let mut failures = Vec::new();
        for _ in 0..3 {
            let hub = Self::setup(tag)?;
            match hub.check_link() {
                Ok(()) => return Ok(hub),
                Err(e) => failures.push(e),
            }
        }
        Err(failures.join("; then "))
    }

    fn setup(tag: &str) -> Result<VirtioHub, String> {
        let [nic_a, nic_b] = find_hub_nics()?;
        let c = HUB_COUNTER.fetch_add(1, Ordering::Relaxed);
        let base = format!("npv-{tag}-{}-{c}", std::process::id());
        let hub = VirtioHub {
            a: format!("{base}-a"),
            b: format!("{base}-b"),
            nic_a,
            nic_b,
            a_ip: Ipv4Addr::new(198, 19, 7, 1),
            b_ip: Ipv4Addr::new(198, 19, 7, 2),
        };
        let macs = HUB_MACS;
        let sides = [
            (&hub.a, &hub.nic_a.ifname, hub.a_ip, hub.b_ip, macs[1]),
            (&hub.b, &hub.nic_b.ifname, hub.b_ip, hub.a_ip, macs[0]),
        ];
        for (ns, dev, ip, peer, peer_mac) in sides {
            create_quiet_netns(ns);
            crate::run_cmd(
                std::process::Command::new("ip").args(["link", "set", dev, "netns", ns]),
                None,
            )?;
            // IPv6 off on the NIC itself too: it kept the root namespace's setting.
            let v6 = format!("net.ipv6.conf.{dev}.disable_ipv6=1");
            ns_exec(ns, &["sysctl", "-qw", &v6]);
            ns_exec(ns, &["ip", "addr", "add", &format!("{ip}/24"), "dev", dev]);
            ns_exec(
                ns,
                &[
                    "ip",
                    "neigh",
                    "replace",
                    &peer.to_string(),
                    "lladdr",
                    peer_mac,
                    "dev",
                    dev,
                    "nud",
                    "permanent",
                ],
            );
            ns_exec(ns, &["ip", "link", "set", dev, "arp", "off", "up"]);
        }
        Ok(hub)
    }

    /// Sends datagrams from `a` to `b` until one arrives (5 s at most), so that tests start
    /// counting on a working link; the error says what each NIC counted.
    fn check_link(&self) -> Result<(), String> {
        if self.link_passes(Duration::from_secs(5)) {
            return Ok(());
        }
        let stat = |ns: &str, nic: &HubNic, s: &str| crate::read_stat(ns, &nic.ifname, s);
        Err(format!(
            "no datagram from {} ({}) reached {} ({}) in 5 s: {} tx {} tx_dropped {}, {} rx {} rx_dropped {}",
            self.nic_a.ifname,
            self.a,
            self.nic_b.ifname,
            self.b,
            self.nic_a.ifname,
            stat(&self.a, &self.nic_a, "tx_packets"),
            stat(&self.a, &self.nic_a, "tx_dropped"),
            self.nic_b.ifname,
            stat(&self.b, &self.nic_b, "rx_packets"),
            stat(&self.b, &self.nic_b, "rx_dropped"),
        ))
    }

    /// Does a datagram sent every 100 ms from `a` reach `b` within `timeout`?
    fn link_passes(&self, timeout: Duration) -> bool {
        const PORT: u16 = 9;
        let local = SocketAddrV4::new(self.b_ip, PORT);
        let peer = SocketAddrV4::new(self.a_ip, PORT);
        let rx = UdpReceiver::start(&self.b, local, peer, 1, None, timeout);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (a, sending) = (self.a.clone(), stop.clone());
        let sender = std::thread::spawn(move || {
            crate::in_netns(&a, move || {
                let sock = UdpSocket::bind(peer).unwrap_or_else(|e| panic!("bind {peer}: {e}"));
                while !sending.load(Ordering::Relaxed) {
                    let _ = sock.send_to(b"link", local);
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        });
        let got = rx.join();
        stop.store(true, Ordering::Relaxed);
        let _ = sender.join();
        got > 0
    }

    /// Packets `nic_b` has received (its driver's count).
    pub fn b_rx_packets(&self) -> u64 {
        crate::read_stat(&self.b, &self.nic_b.ifname, "rx_packets")
    }

    /// The IRQ number of `nic_b`'s vector named `suffix` (`input.0`), from /proc/interrupts.
    pub fn b_irq(&self, suffix: &str) -> Option<u32> {
        let name = format!("{}-{suffix}", self.nic_b.virtio);
        irq_counts()
            .into_iter()
            .find(|(_, n, _)| *n == name)
            .map(|(irq, _, _)| irq)
    }
}

impl Drop for VirtioHub {
    fn drop(&mut self) {
        // Deleting a namespace hands its physical NICs back to the root namespace.
        for ns in [&self.a, &self.b] {
            delete_netns(ns);
        }
        let back = |n: &HubNic| {
            std::path::Path::new("/sys/class/net")
                .join(&n.ifname)
                .exists()
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(back(&self.nic_a) && back(&self.nic_b)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Every numbered IRQ of /proc/interrupts: number, name, count over all CPUs. Parsed here,
/// not with libnetprobe's parser: what the tests compare the tools with stays independent.
pub fn irq_counts() -> Vec<(u32, String, u64)> {
    let text = std::fs::read_to_string("/proc/interrupts").unwrap_or_default();
    let mut lines = text.lines();
    let cpus = lines.next().map_or(0, |h| h.split_whitespace().count());
    lines
        .filter_map(|l| {
            let (num, rest) = l.trim_start().split_once(':')?;
            let irq = num.parse().ok()?;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let total = fields
                .iter()
                .take(cpus)
                .filter_map(|f| f.parse::<u64>().ok())
                .sum();
            Some((irq, fields.last()?.to_string(), total))
        })
        .collect()
}

/// IRQ `irq`'s count over all CPUs.
pub fn irq_count(irq: u32) -> u64 {
    irq_counts()
        .into_iter()
        .find(|(n, _, _)| *n == irq)
        .map_or(0, |(_, _, c)| c)
}

/// A UDP socket in a namespace that receives until it has `count` datagrams or times out.
pub struct UdpReceiver {
    handle: JoinHandle<u64>,
}

impl UdpReceiver {
    /// Binds `local` in `ns`, connected to `peer`; with `busy_poll_us`, the socket busy-polls
    /// its device's NAPI that long before it sleeps (`SO_BUSY_POLL`). Returns once bound.
    pub fn start(
        ns: &str,
        local: SocketAddrV4,
        peer: SocketAddrV4,
        count: u64,
        busy_poll_us: Option<u32>,
        timeout: Duration,
    ) -> UdpReceiver {
        let path = format!("/run/netns/{ns}");
        let (tx, rx) = mpsc::channel();
        let handle = std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("setns({path}): {e}"));
            let sock = UdpSocket::bind(local).unwrap_or_else(|e| panic!("bind {local}: {e}"));
            sock.connect(peer)
                .unwrap_or_else(|e| panic!("connect {peer}: {e}"));
            if let Some(us) = busy_poll_us {
                let v = us as libc::c_int;
                // SAFETY: setsockopt with a valid int option value and its size.
                let rc = unsafe {
                    libc::setsockopt(
                        sock.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_BUSY_POLL,
                        (&v as *const libc::c_int).cast(),
                        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                    )
                };
                assert_eq!(rc, 0, "SO_BUSY_POLL: {}", std::io::Error::last_os_error());
            }
            sock.set_read_timeout(Some(Duration::from_millis(200))).ok();
            let _ = tx.send(());
            let deadline = Instant::now() + timeout;
            let (mut got, mut buf) = (0u64, [0u8; 2048]);
            while got < count && Instant::now() < deadline {
                if sock.recv(&mut buf).is_ok() {
                    got += 1;
                }
            }
            got
        });
        let _ = rx.recv_timeout(Duration::from_secs(10));
        UdpReceiver { handle }
    }

    /// Datagrams received.
    pub fn join(self) -> u64 {
        self.handle
            .join()
            .unwrap_or_else(|payload| std::panic::resume_unwind(payload))
    }
}

/// Sends `count` datagrams of `len` bytes from `local` in `ns` to `peer`, `gap` apart.
pub fn send_paced(
    ns: &str,
    local: SocketAddrV4,
    peer: SocketAddrV4,
    count: u64,
    len: usize,
    gap: Duration,
) {
    crate::in_netns(ns, move || {
        let sock = UdpSocket::bind(local).unwrap_or_else(|e| panic!("bind {local}: {e}"));
        let payload = vec![0x6e_u8; len];
        for _ in 0..count {
            sock.send_to(&payload, peer)
                .unwrap_or_else(|e| panic!("send to {peer}: {e}"));
            std::thread::sleep(gap);
        }
    });
}
