//! An Open vSwitch kernel datapath driven directly over generic netlink, with no OVS
//! userspace (no `ovs-vswitchd`, no `ovs-dpctl`): the fixture for tests of what happens in
//! the `openvswitch` module (upcalls, flow installs, megaflow hits).
//!
//! [`OvsDatapath::create`] makes a datapath whose upcalls go to a netlink socket the fixture
//! owns; a handler thread reads them. In [`UpcallMode::Drop`] (flows installed up front with
//! [`OvsDatapath::add_flow`] / [`OvsDatapath::forward_between`]) it only counts them, so any
//! upcall is a miss the test did not expect. In [`UpcallMode::Reactive`] it acts like
//! ovs-vswitchd: each miss installs a megaflow (input port + EtherType → the paired port) and
//! then executes the packet with the same output action, so the first packet of a flow
//! upcalls and later ones hit the megaflow.
//!
//! Only the parts of the uapi (`include/uapi/linux/openvswitch.h`) the fixture needs are
//! encoded here. Errors are returned, never panics: a kernel without the module gives
//! [`OvsError::ModuleNotLoaded`]. Dropping the datapath deletes it (also while unwinding).
//! [`OvsLab`] adds the usual topology: two namespaces whose veth peers are ports.
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

// Netlink and generic netlink (linux/netlink.h, linux/genetlink.h).
const NLMSG_HDR: usize = 16;
const GENL_HDR: usize = 4;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
// linux/openvswitch.h
const OVS_DP_CMD_NEW: u8 = 1;
const OVS_DP_CMD_DEL: u8 = 2;
const OVS_DP_CMD_GET: u8 = 3;
const OVS_DP_ATTR_NAME: u16 = 1;
const OVS_DP_ATTR_UPCALL_PID: u16 = 2;
const OVS_DP_ATTR_STATS: u16 = 3;
const OVS_VPORT_CMD_NEW: u8 = 1;
const OVS_VPORT_CMD_GET: u8 = 3;
const OVS_VPORT_CMD_SET: u8 = 4;
const OVS_VPORT_ATTR_PORT_NO: u16 = 1;
const OVS_VPORT_ATTR_TYPE: u16 = 2;
const OVS_VPORT_ATTR_NAME: u16 = 3;
const OVS_VPORT_ATTR_UPCALL_PID: u16 = 5;
const OVS_VPORT_TYPE_NETDEV: u32 = 1;
const OVS_VPORT_TYPE_INTERNAL: u32 = 2;
const OVS_FLOW_CMD_NEW: u8 = 1;
const OVS_FLOW_ATTR_KEY: u16 = 1;
const OVS_FLOW_ATTR_ACTIONS: u16 = 2;
const OVS_FLOW_ATTR_MASK: u16 = 7;
const OVS_PACKET_CMD_MISS: u8 = 1;
const OVS_PACKET_CMD_EXECUTE: u8 = 3;
const OVS_PACKET_ATTR_PACKET: u16 = 1;
const OVS_PACKET_ATTR_KEY: u16 = 2;
const OVS_PACKET_ATTR_ACTIONS: u16 = 3;
const OVS_KEY_ATTR_IN_PORT: u16 = 3;
const OVS_KEY_ATTR_ETHERNET: u16 = 4;
const OVS_KEY_ATTR_ETHERTYPE: u16 = 6;
const OVS_KEY_ATTR_IPV4: u16 = 7;
const OVS_KEY_ATTR_IPV6: u16 = 8;
const OVS_KEY_ATTR_ARP: u16 = 13;
const OVS_ACTION_ATTR_OUTPUT: u16 = 1;
/// `OVS_DATAPATH_VERSION` (2: knows user features); the other families are at 1.
const OVS_DP_VERSION: u8 = 2;
const OVS_VERSION: u8 = 1;
/// `sizeof(struct ovs_key_ipv4 / ovs_key_ipv6 / ovs_key_arp)`.
const KEY_IPV4_LEN: usize = 12;
const KEY_IPV6_LEN: usize = 40;
const KEY_ARP_LEN: usize = 24;
/// The EtherType the kernel gives 802.3/LLC frames (length field below 0x600).
pub const ETH_P_802_2: u16 = 0x0004;

/// How long a request waits for the kernel's answer before it fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the upcall handler looks at its stop flag.
const HANDLER_POLL: Duration = Duration::from_millis(50);

/// What went wrong talking to the `openvswitch` module.
#[derive(Debug)]
pub enum OvsError {
    /// The kernel has no `ovs_datapath` generic netlink family: the module is not loaded.
    ModuleNotLoaded,
    /// The kernel refused a request (`op` says which) with `errno`.
    Kernel {
        /// The request, e.g. `add netdev vport veth0 to np-ovs`.
        op: String,
        /// The positive errno the kernel answered with.
        errno: i32,
    },
    /// A socket call failed (`op` says which).
    Io {
        /// What was being done.
        op: String,
        /// The error.
        source: io::Error,
    },
    /// A request the fixture cannot express, or a reply it cannot read.
    Invalid(String),
}

impl fmt::Display for OvsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OvsError::ModuleNotLoaded => write!(
                f,
                "openvswitch module not loaded (no generic netlink family ovs_datapath): \
                 run `modprobe openvswitch`"
            ),
            OvsError::Kernel { op, errno } => {
                write!(f, "{op}: {}", io::Error::from_raw_os_error(*errno))
            }
            OvsError::Io { op, source } => write!(f, "{op}: {source}"),
            OvsError::Invalid(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for OvsError {}

/// Is the `openvswitch` module usable here? Loads it with `modprobe openvswitch` if
/// `/sys/module/openvswitch` is missing, then resolves the `ovs_datapath` family.
pub fn probe_kernel() -> Result<(), OvsError> {
    if !module_loaded() {
        // Failure is the answer we are after, not an error: the lookup below reports it.
        let _ = Command::new("modprobe")
            .arg("openvswitch")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    let sock = NlSocket::open("netlink socket")?;
    sock.family("ovs_datapath").map(|_| ())
}

/// Does `/sys/module/openvswitch` exist (the module is loaded, or built in with parameters)?
pub fn module_loaded() -> bool {
    std::path::Path::new("/sys/module/openvswitch").exists()
}

/// What a flow matches: always the input port; the Ethernet addresses and the EtherType
/// when given (exactly), everything else wildcarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowMatch {
    /// Datapath port the packet came in on.
    pub in_port: u32,
    /// Source MAC address, or any.
    pub eth_src: Option<[u8; 6]>,
    /// Destination MAC address, or any.
    pub eth_dst: Option<[u8; 6]>,
    /// EtherType (e.g. `0x0800`, `0x0806`), or any. A value below `0x600` matches all
    /// 802.3/LLC frames (the kernel keys them all as [`ETH_P_802_2`]). VLAN and MPLS
    /// EtherTypes are not supported.
    pub eth_type: Option<u16>,
}

impl FlowMatch {
    /// Everything that comes in on `in_port`.
    pub fn in_port(in_port: u32) -> FlowMatch {
        FlowMatch {
            in_port,
            eth_src: None,
            eth_dst: None,
            eth_type: None,
        }
    }

    /// The same match restricted to EtherType `eth_type`.
    pub fn with_eth_type(self, eth_type: u16) -> FlowMatch {
        FlowMatch {
            eth_type: Some(eth_type),
            ..self
        }
    }

    /// Appends the `OVS_FLOW_ATTR_KEY` and `OVS_FLOW_ATTR_MASK` nests to `m`.
    fn encode(&self, m: &mut Msg) -> Result<(), OvsError> {
        let l3_len = match self.eth_type {
            Some(0x0800) => Some((OVS_KEY_ATTR_IPV4, KEY_IPV4_LEN)),
            Some(0x86dd) => Some((OVS_KEY_ATTR_IPV6, KEY_IPV6_LEN)),
            Some(0x0806 | 0x8035) => Some((OVS_KEY_ATTR_ARP, KEY_ARP_LEN)),
            Some(t @ (0x8100 | 0x88a8 | 0x8847 | 0x8848)) => {
                return Err(OvsError::Invalid(format!(
                    "flow match on EtherType {t:#06x} (VLAN/MPLS) is not supported"
                )))
            }
            _ => None,
        };
        let eth = |src: Option<[u8; 6]>, dst: Option<[u8; 6]>| {
            let mut v = [0u8; 12];
            v[..6].copy_from_slice(&src.unwrap_or_default());
            v[6..].copy_from_slice(&dst.unwrap_or_default());
            v
        };
        let key = m.begin(OVS_FLOW_ATTR_KEY);
        m.put(OVS_KEY_ATTR_IN_PORT, &self.in_port.to_ne_bytes());
        m.put(OVS_KEY_ATTR_ETHERNET, &eth(self.eth_src, self.eth_dst));
        match self.eth_type {
            // 802.3 frames: no EtherType in the key, an exact one in the mask.
            Some(t) if t >= 0x600 => m.put(OVS_KEY_ATTR_ETHERTYPE, &t.to_be_bytes()),
            _ => {}
        }
        // The kernel wants the L3 key of these EtherTypes; all-zero, and wildcarded below.
        if let Some((ty, len)) = l3_len {
            m.put(ty, &vec![0; len]);
        }
        m.end(key);
        let mask = m.begin(OVS_FLOW_ATTR_MASK);
        m.put(OVS_KEY_ATTR_IN_PORT, &u32::MAX.to_ne_bytes());
        let ff = Some([0xff; 6]);
        m.put(
            OVS_KEY_ATTR_ETHERNET,
            &eth(self.eth_src.and(ff), self.eth_dst.and(ff)),
        );
        if self.eth_type.is_some() {
            m.put(OVS_KEY_ATTR_ETHERTYPE, &0xffff_u16.to_be_bytes());
        }
        m.end(mask);
        Ok(())
    }
}

/// What the upcall handler does with a miss.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpcallMode {
    /// Count it and drop the packet: the mode for flows installed up front, where every
    /// upcall is a packet no flow matched.
    Drop,
    /// Like ovs-vswitchd: a packet from one port of a pair goes to the other. Install the
    /// megaflow `in_port + EtherType → output:peer` (unless this handler installed it
    /// already), then execute the packet with the same output. Packets from ports in no
    /// pair are dropped.
    Reactive {
        /// Port pairs `(a, b)`: a's packets go to b and b's to a.
        pairs: Vec<(u32, u32)>,
    },
}

/// What the upcall handler has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpcallStats {
    /// `OVS_PACKET_CMD_MISS` upcalls received.
    pub upcalls: u64,
    /// Packets sent back with `OVS_PACKET_CMD_EXECUTE` (and acknowledged).
    pub executed: u64,
    /// Flows the handler installed, in order (each one once).
    pub flows_installed: Vec<FlowMatch>,
    /// Misses whose flow the handler had installed already (the packet raced the install).
    pub repeated: u64,
    /// Everything that failed (flow install, execute, socket errors), in order.
    pub errors: Vec<String>,
}

/// The datapath's own counters (`OVS_DP_ATTR_STATS`, what `ovs-dpctl show` prints as
/// `lookups: hit:… missed:… lost:…` and `flows:`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DatapathStats {
    /// Packets that matched a flow.
    pub hit: u64,
    /// Packets that matched none (upcalled).
    pub missed: u64,
    /// Misses that could not be queued to the upcall socket.
    pub lost: u64,
    /// Flows in the table.
    pub flows: u64,
}

/// Generic netlink family ids of the OVS families.
#[derive(Debug, Clone, Copy)]
struct Families {
    datapath: u16,
    vport: u16,
    flow: u16,
    packet: u16,
}

/// A kernel datapath (like `ovs-dpctl add-dp <name>`) with its upcall handler thread.
/// Dropping it stops the handler and deletes the datapath with all its ports and flows.
pub struct OvsDatapath {
    name: String,
    ifindex: i32,
    fam: Families,
    upcall_portid: u32,
    ctl: Mutex<NlSocket>,
    shared: Arc<Shared>,
    handler: Option<JoinHandle<()>>,
}

/// State the handler thread shares with the datapath handle.
struct Shared {
    stop: AtomicBool,
    mode: Mutex<UpcallMode>,
    stats: Mutex<UpcallStats>,
}

impl OvsDatapath {
    /// Creates datapath `name` (at most 15 bytes: it is also the name of its internal
    /// port 0) in the calling thread's network namespace, and starts its upcall handler in
    /// [`UpcallMode::Drop`].
    pub fn create(name: &str) -> Result<OvsDatapath, OvsError> {
        if name.is_empty() || name.len() > 15 || name.contains(['/', '\0', ' ']) {
            return Err(OvsError::Invalid(format!("bad datapath name {name:?}")));
        }
        let ctl = NlSocket::open("netlink socket")?;
        let fam = Families {
            datapath: ctl.family("ovs_datapath")?,
            vport: ctl.family("ovs_vport")?,
            flow: ctl.family("ovs_flow")?,
            packet: ctl.family("ovs_packet")?,
        };
        let upcall = NlSocket::open("upcall socket")?;
        upcall.set_timeout(HANDLER_POLL)?;
        upcall.set_rcvbuf(4 << 20);
        let handler_ctl = NlSocket::open("handler socket")?;
        let mut m = Msg::new(fam.datapath, OVS_DP_CMD_NEW, OVS_DP_VERSION, Some(0));
        m.put_str(OVS_DP_ATTR_NAME, name);
        m.put(OVS_DP_ATTR_UPCALL_PID, &upcall.portid.to_ne_bytes());
        ctl.request(m, 0, &format!("create datapath {name}"))?;
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            mode: Mutex::new(UpcallMode::Drop),
            stats: Mutex::new(UpcallStats::default()),
        });
        // From here on the guard owns the datapath: an error below deletes it again.
        let mut dp = OvsDatapath {
            name: name.to_owned(),
            ifindex: 0,
            fam,
            upcall_portid: upcall.portid,
            ctl: Mutex::new(ctl),
            shared,
            handler: None,
        };
        let ifindex = nix::net::if_::if_nametoindex(name).map_err(|e| OvsError::Io {
            op: format!("ifindex of datapath {name}"),
            source: e.into(),
        })?;
        dp.ifindex = i32::try_from(ifindex)
            .map_err(|_| OvsError::Invalid(format!("ifindex {ifindex} out of range")))?;
        let handler = Handler {
            upcall,
            ctl: handler_ctl,
            fam,
            ifindex: dp.ifindex,
            shared: Arc::clone(&dp.shared),
        };
        dp.handler = Some(
            std::thread::Builder::new()
                .name(format!("ovs-upcall-{name}"))
                .spawn(move || handler.run())
                .map_err(|e| OvsError::Io {
                    op: "spawn the upcall handler".into(),
                    source: e,
                })?,
        );
        Ok(dp)
    }

    /// The datapath's name (also its internal port 0's interface name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Interface index of the datapath's internal port 0 (`dp_ifindex` in requests).
    pub fn ifindex(&self) -> i32 {
        self.ifindex
    }

    /// Netlink port id of the socket the datapath sends its upcalls to.
    pub fn upcall_portid(&self) -> u32 {
        self.upcall_portid
    }

    /// Attaches the existing interface `ifname` (in the datapath's namespace, e.g. a veth end
    /// whose peer is in another namespace) as a netdev vport; returns its port number.
    pub fn add_netdev_port(&self, ifname: &str) -> Result<u32, OvsError> {
        self.add_port(ifname, OVS_VPORT_TYPE_NETDEV, "netdev")
    }

    /// Creates an internal port (a new interface `ifname`, down) and returns its number.
    pub fn add_internal_port(&self, ifname: &str) -> Result<u32, OvsError> {
        self.add_port(ifname, OVS_VPORT_TYPE_INTERNAL, "internal")
    }

    fn add_port(&self, ifname: &str, ty: u32, kind: &str) -> Result<u32, OvsError> {
        let op = format!("add {kind} vport {ifname} to datapath {}", self.name);
        let ctl = self.ctl()?;
        let mut m = Msg::new(
            self.fam.vport,
            OVS_VPORT_CMD_NEW,
            OVS_VERSION,
            Some(self.ifindex),
        );
        m.put_str(OVS_VPORT_ATTR_NAME, ifname);
        m.put(OVS_VPORT_ATTR_TYPE, &ty.to_ne_bytes());
        m.put(OVS_VPORT_ATTR_UPCALL_PID, &self.upcall_portid.to_ne_bytes());
        ctl.request(m, 0, &op)?;
        let mut m = Msg::new(
            self.fam.vport,
            OVS_VPORT_CMD_GET,
            OVS_VERSION,
            Some(self.ifindex),
        );
        m.put_str(OVS_VPORT_ATTR_NAME, ifname);
        let replies = ctl.request(m, 0, &format!("look up vport {ifname}"))?;
        replies
            .iter()
            .find_map(|r| attr(r.get(GENL_HDR + 4..)?, OVS_VPORT_ATTR_PORT_NO).and_then(u32_of))
            .ok_or_else(|| OvsError::Invalid(format!("{op}: no port number in the reply")))
    }

    /// Sets the netlink port that `port`'s upcalls go to (`OVS_VPORT_CMD_SET`): 0 makes every
    /// miss on it fail with `ENOTCONN` in `ovs_dp_upcall`, a port no socket has makes
    /// `queue_userspace_packet` fail with `ECONNREFUSED`.
    pub fn set_port_upcall_pid(&self, port: u32, pid: u32) -> Result<(), OvsError> {
        let mut m = Msg::new(
            self.fam.vport,
            OVS_VPORT_CMD_SET,
            OVS_VERSION,
            Some(self.ifindex),
        );
        m.put(OVS_VPORT_ATTR_PORT_NO, &port.to_ne_bytes());
        m.put(OVS_VPORT_ATTR_UPCALL_PID, &pid.to_ne_bytes());
        self.ctl()?
            .request(m, 0, &format!("set vport {port}'s upcall pid to {pid}"))
            .map(|_| ())
    }

    /// Installs a flow: packets matching `flow` are output to `out_port`
    /// (`OVS_FLOW_CMD_NEW`; an identical flow that exists already is an `EEXIST` error).
    pub fn add_flow(&self, flow: &FlowMatch, out_port: u32) -> Result<(), OvsError> {
        let m = flow_msg(self.fam, self.ifindex, flow, out_port)?;
        self.ctl()?
            .request(m, NLM_F_CREATE, &format!("add flow {flow:?} -> {out_port}"))
            .map(|_| ())
    }

    /// Installs a flow that drops what matches `flow` (an empty action list).
    pub fn add_drop_flow(&self, flow: &FlowMatch) -> Result<(), OvsError> {
        let mut m = Msg::new(
            self.fam.flow,
            OVS_FLOW_CMD_NEW,
            OVS_VERSION,
            Some(self.ifindex),
        );
        flow.encode(&mut m)?;
        let actions = m.begin(OVS_FLOW_ATTR_ACTIONS);
        m.end(actions);
        self.ctl()?
            .request(m, NLM_F_CREATE, &format!("add flow {flow:?} -> drop"))
            .map(|_| ())
    }

    /// Installs the two flows of a patch between ports `a` and `b`: everything from `a` is
    /// output to `b`, and everything from `b` to `a` (any EtherType).
    pub fn forward_between(&self, a: u32, b: u32) -> Result<(), OvsError> {
        self.add_flow(&FlowMatch::in_port(a), b)?;
        self.add_flow(&FlowMatch::in_port(b), a)
    }

    /// Switches what the upcall handler does with the next misses.
    pub fn set_upcall_mode(&self, mode: UpcallMode) {
        *lock(&self.shared.mode) = mode;
    }

    /// Upcalls the handler has received so far.
    pub fn upcalls(&self) -> u64 {
        lock(&self.shared.stats).upcalls
    }

    /// Everything the handler has counted and installed so far.
    pub fn upcall_stats(&self) -> UpcallStats {
        lock(&self.shared.stats).clone()
    }

    /// The kernel's counters for this datapath (`OVS_DP_CMD_GET`).
    pub fn stats(&self) -> Result<DatapathStats, OvsError> {
        let mut m = Msg::new(self.fam.datapath, OVS_DP_CMD_GET, OVS_DP_VERSION, Some(0));
        m.put_str(OVS_DP_ATTR_NAME, &self.name);
        let op = format!("get datapath {}", self.name);
        let replies = self.ctl()?.request(m, 0, &op)?;
        let raw = replies
            .iter()
            .find_map(|r| attr(r.get(GENL_HDR + 4..)?, OVS_DP_ATTR_STATS))
            .filter(|s| s.len() >= 32)
            .ok_or_else(|| OvsError::Invalid(format!("{op}: no stats in the reply")))?;
        let u = |i: usize| u64::from_ne_bytes(raw[i * 8..i * 8 + 8].try_into().unwrap_or_default());
        Ok(DatapathStats {
            hit: u(0),
            missed: u(1),
            lost: u(2),
            flows: u(3),
        })
    }

    fn ctl(&self) -> Result<std::sync::MutexGuard<'_, NlSocket>, OvsError> {
        self.ctl
            .lock()
            .map_err(|_| OvsError::Invalid("netlink socket lock poisoned".into()))
    }
}

impl Drop for OvsDatapath {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handler.take() {
            let _ = h.join();
        }
        let mut m = Msg::new(self.fam.datapath, OVS_DP_CMD_DEL, OVS_DP_VERSION, Some(0));
        m.put_str(OVS_DP_ATTR_NAME, &self.name);
        let op = format!("delete datapath {}", self.name);
        let done = match self.ctl.get_mut() {
            Ok(ctl) => ctl.request(m, 0, &op).map(|_| ()),
            Err(p) => p.into_inner().request(m, 0, &op).map(|_| ()),
        };
        if let Err(e) = done {
            eprintln!("netprobe-lab: {e}");
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `OVS_FLOW_CMD_NEW` for `flow` with the single action `output:out_port`.
fn flow_msg(fam: Families, ifindex: i32, flow: &FlowMatch, out_port: u32) -> Result<Msg, OvsError> {
    let mut m = Msg::new(fam.flow, OVS_FLOW_CMD_NEW, OVS_VERSION, Some(ifindex));
    flow.encode(&mut m)?;
    put_output(&mut m, OVS_FLOW_ATTR_ACTIONS, out_port);
    Ok(m)
}

fn put_output(m: &mut Msg, nest: u16, port: u32) {
    let actions = m.begin(nest);
    m.put(OVS_ACTION_ATTR_OUTPUT, &port.to_ne_bytes());
    m.end(actions);
}

/// The upcall handler thread's state.
struct Handler {
    upcall: NlSocket,
    ctl: NlSocket,
    fam: Families,
    ifindex: i32,
    shared: Arc<Shared>,
}

impl Handler {
    fn run(self) {
        let mut buf = vec![0u8; 1 << 17];
        while !self.shared.stop.load(Ordering::Relaxed) {
            let n = match self.upcall.recv(&mut buf) {
                Ok(n) => n,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EINTR)) => continue,
                Err(e) => {
                    // ENOBUFS: the kernel dropped upcalls (it counts them as lost).
                    self.error(format!("receive upcall: {e}"));
                    if e.raw_os_error() == Some(libc::ENOBUFS) {
                        continue;
                    }
                    return;
                }
            };
            for msg in messages(&buf[..n]) {
                if msg.ty == self.fam.packet && msg.payload.first() == Some(&OVS_PACKET_CMD_MISS) {
                    lock(&self.shared.stats).upcalls += 1;
                    if let Err(e) = self.miss(msg.payload) {
                        self.error(e.to_string());
                    }
                }
            }
        }
    }

    fn error(&self, e: String) {
        lock(&self.shared.stats).errors.push(e);
    }

    /// One `OVS_PACKET_CMD_MISS` (genl header onwards): install and execute, or drop.
    fn miss(&self, payload: &[u8]) -> Result<(), OvsError> {
        let pairs = match &*lock(&self.shared.mode) {
            UpcallMode::Drop => return Ok(()),
            UpcallMode::Reactive { pairs } => pairs.clone(),
        };
        let attrs = payload
            .get(GENL_HDR + 4..)
            .ok_or_else(|| OvsError::Invalid("short upcall".into()))?;
        let (packet, key) = match (
            attr(attrs, OVS_PACKET_ATTR_PACKET),
            attr(attrs, OVS_PACKET_ATTR_KEY),
        ) {
            (Some(p), Some(k)) => (p, k),
            _ => return Err(OvsError::Invalid("upcall without packet or key".into())),
        };
        let in_port = attr(key, OVS_KEY_ATTR_IN_PORT)
            .and_then(u32_of)
            .ok_or_else(|| OvsError::Invalid("upcall key without in_port".into()))?;
        let eth_type = attr(key, OVS_KEY_ATTR_ETHERTYPE)
            .and_then(|v| Some(u16::from_be_bytes(v.get(..2)?.try_into().ok()?)))
            .unwrap_or(ETH_P_802_2);
        let peers: HashMap<u32, u32> = pairs.iter().flat_map(|&(a, b)| [(a, b), (b, a)]).collect();
        let Some(&out) = peers.get(&in_port) else {
            return Ok(());
        };
        let flow = FlowMatch::in_port(in_port).with_eth_type(eth_type);
        let known = lock(&self.shared.stats).flows_installed.contains(&flow);
        if known {
            lock(&self.shared.stats).repeated += 1;
        } else {
            // Like ovs-vswitchd: the flow first, then the packet (which goes out even if the
            // flow cannot be installed).
            let installed = flow_msg(self.fam, self.ifindex, &flow, out).and_then(|m| {
                self.ctl
                    .request(m, NLM_F_CREATE, &format!("install {flow:?} -> {out}"))
            });
            match installed {
                Ok(_) => lock(&self.shared.stats).flows_installed.push(flow),
                Err(OvsError::Kernel {
                    errno: libc::EEXIST,
                    ..
                }) => lock(&self.shared.stats).repeated += 1,
                Err(e) => self.error(e.to_string()),
            }
        }
        let mut m = Msg::new(
            self.fam.packet,
            OVS_PACKET_CMD_EXECUTE,
            OVS_VERSION,
            Some(self.ifindex),
        );
        m.put(OVS_PACKET_ATTR_PACKET, packet);
        m.put(OVS_PACKET_ATTR_KEY, key);
        put_output(&mut m, OVS_PACKET_ATTR_ACTIONS, out);
        self.ctl.request(m, 0, "execute upcalled packet")?;
        lock(&self.shared.stats).executed += 1;
        Ok(())
    }
}

/// A generic netlink message under construction (nlmsghdr, genlmsghdr, optional ovs_header,
/// attributes).
struct Msg {
    buf: Vec<u8>,
}

impl Msg {
    fn new(family: u16, cmd: u8, version: u8, dp_ifindex: Option<i32>) -> Msg {
        let mut buf = vec![0u8; NLMSG_HDR];
        buf[4..6].copy_from_slice(&family.to_ne_bytes());
        buf.extend_from_slice(&[cmd, version, 0, 0]);
        if let Some(i) = dp_ifindex {
            buf.extend_from_slice(&i.to_ne_bytes());
        }
        Msg { buf }
    }

    fn put(&mut self, ty: u16, data: &[u8]) {
        let len = u16::try_from(4 + data.len()).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
    }

    /// A NUL-terminated string attribute.
    fn put_str(&mut self, ty: u16, s: &str) {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.put(ty, &v);
    }

    /// Starts a nested attribute; returns its offset for [`Msg::end`].
    fn begin(&mut self, ty: u16) -> usize {
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        at
    }

    fn end(&mut self, at: usize) {
        let len = u16::try_from(self.buf.len() - at).unwrap_or(u16::MAX);
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn pad(&mut self) {
        self.buf.resize(self.buf.len().next_multiple_of(4), 0);
    }
}

/// One netlink message of a received datagram.
struct NlMsg<'a> {
    ty: u16,
    seq: u32,
    /// Everything after the nlmsghdr.
    payload: &'a [u8],
}

fn messages(buf: &[u8]) -> impl Iterator<Item = NlMsg<'_>> {
    let mut off = 0;
    std::iter::from_fn(move || {
        let hdr = buf.get(off..off + NLMSG_HDR)?;
        let len = u32::from_ne_bytes(hdr[0..4].try_into().ok()?) as usize;
        let body = buf.get(off + NLMSG_HDR..off + len)?;
        let msg = NlMsg {
            ty: u16::from_ne_bytes(hdr[4..6].try_into().ok()?),
            seq: u32::from_ne_bytes(hdr[8..12].try_into().ok()?),
            payload: body,
        };
        off += len.max(NLMSG_HDR).next_multiple_of(4);
        Some(msg)
    })
}

/// The first attribute of type `ty` in the attribute stream `attrs`.
fn attr(attrs: &[u8], ty: u16) -> Option<&[u8]> {
    let mut off = 0;
    while let Some(h) = attrs.get(off..off + 4) {
        let len = usize::from(u16::from_ne_bytes([h[0], h[1]]));
        let t = u16::from_ne_bytes([h[2], h[3]]) & 0x3fff;
        let data = attrs.get(off + 4..off + len.max(4))?;
        if t == ty {
            return Some(data);
        }
        off += len.max(4).next_multiple_of(4);
    }
    None
}

fn u32_of(v: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(v.get(..4)?.try_into().ok()?))
}

/// A `NETLINK_GENERIC` socket bound to a kernel-assigned port id.
struct NlSocket {
    fd: OwnedFd,
    portid: u32,
    seq: AtomicU32,
}

impl NlSocket {
    fn open(what: &str) -> Result<NlSocket, OvsError> {
        let io_err = |op: &str| OvsError::Io {
            op: format!("{what}: {op}"),
            source: io::Error::last_os_error(),
        };
        // SAFETY: plain socket(2) call; the result is checked.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_GENERIC,
            )
        };
        if raw < 0 {
            return Err(io_err("socket(AF_NETLINK)"));
        }
        // SAFETY: `raw` is a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_nl is plain old data; all-zeroes (nl_pid 0: kernel picks) is valid.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        let mut len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: `sa` is a valid sockaddr_nl of `len` bytes.
        if unsafe { libc::bind(fd.as_raw_fd(), std::ptr::addr_of!(sa).cast(), len) } != 0 {
            return Err(io_err("bind"));
        }
        // SAFETY: `sa`/`len` describe a writable sockaddr_nl.
        if unsafe { libc::getsockname(fd.as_raw_fd(), std::ptr::addr_of_mut!(sa).cast(), &mut len) }
            != 0
        {
            return Err(io_err("getsockname"));
        }
        let sock = NlSocket {
            fd,
            portid: sa.nl_pid,
            seq: AtomicU32::new(1),
        };
        sock.set_timeout(REQUEST_TIMEOUT)?;
        Ok(sock)
    }

    fn set_timeout(&self, t: Duration) -> Result<(), OvsError> {
        let tv = libc::timeval {
            tv_sec: t.as_secs() as libc::time_t,
            tv_usec: libc::suseconds_t::from(t.subsec_micros()),
        };
        self.setsockopt(libc::SO_RCVTIMEO, &tv)
            .map_err(|source| OvsError::Io {
                op: "setsockopt(SO_RCVTIMEO)".into(),
                source,
            })
    }

    /// Best effort: a bigger receive buffer makes lost upcalls (ENOBUFS) unlikely.
    fn set_rcvbuf(&self, bytes: libc::c_int) {
        if self.setsockopt(libc::SO_RCVBUFFORCE, &bytes).is_err() {
            let _ = self.setsockopt(libc::SO_RCVBUF, &bytes);
        }
    }

    fn setsockopt<T>(&self, opt: libc::c_int, val: &T) -> io::Result<()> {
        // SAFETY: `val` points to a live T of the given size, as the option expects.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                std::ptr::from_ref(val).cast(),
                std::mem::size_of::<T>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: the pointer/length pair describes the writable `buf`.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    /// Sends `m` (with `flags` added to REQUEST|ACK) and collects the replies up to the
    /// kernel's acknowledgement; each reply is the message after its nlmsghdr.
    fn request(&self, mut m: Msg, flags: u16, op: &str) -> Result<Vec<Vec<u8>>, OvsError> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let len = u32::try_from(m.buf.len())
            .map_err(|_| OvsError::Invalid(format!("{op}: message too long")))?;
        m.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        m.buf[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_ACK | flags).to_ne_bytes());
        m.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        let io_err = |source| OvsError::Io {
            op: op.to_owned(),
            source,
        };
        // SAFETY: the pointer/length pair describes the live message buffer.
        let sent =
            unsafe { libc::send(self.fd.as_raw_fd(), m.buf.as_ptr().cast(), m.buf.len(), 0) };
        if sent < 0 {
            return Err(io_err(io::Error::last_os_error()));
        }
        let mut replies = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = self.recv(&mut buf).map_err(io_err)?;
            for msg in messages(&buf[..n]).filter(|msg| msg.seq == seq) {
                match msg.ty {
                    NLMSG_ERROR => {
                        let code = msg.payload.get(..4).map_or(-libc::EPROTO, |b| {
                            i32::from_ne_bytes([b[0], b[1], b[2], b[3]])
                        });
                        return if code == 0 {
                            Ok(replies)
                        } else {
                            Err(OvsError::Kernel {
                                op: op.to_owned(),
                                errno: -code,
                            })
                        };
                    }
                    NLMSG_DONE => return Ok(replies),
                    _ => replies.push(msg.payload.to_vec()),
                }
            }
        }
    }

    /// Resolves a generic netlink family name to its id; a missing OVS family means the
    /// module is not loaded.
    fn family(&self, name: &str) -> Result<u16, OvsError> {
        let mut m = Msg::new(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, 1, None);
        m.put_str(CTRL_ATTR_FAMILY_NAME, name);
        let op = format!("resolve generic netlink family {name}");
        let replies = match self.request(m, 0, &op) {
            Err(OvsError::Kernel {
                errno: libc::ENOENT,
                ..
            }) => return Err(OvsError::ModuleNotLoaded),
            other => other?,
        };
        replies
            .iter()
            .find_map(|r| attr(r.get(GENL_HDR..)?, CTRL_ATTR_FAMILY_ID))
            .and_then(|v| Some(u16::from_ne_bytes(v.get(..2)?.try_into().ok()?)))
            .ok_or_else(|| OvsError::Invalid(format!("{op}: no family id in the reply")))
    }
}

static OVS_LAB_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Two network namespaces `a` and `b`, each with a veth `eth0` whose peer is in the calling
/// thread's namespace (the "host"), both peers attached as netdev ports of one datapath:
/// `a ── a_port [dp] b_port ── b`. No flows are installed and the handler is in
/// [`UpcallMode::Drop`]. IPv6 is off on all four ends, so only the test's traffic crosses.
///
/// Dropping it deletes the namespaces (and with them the veths, whose vports the kernel
/// detaches), then the datapath.
pub struct OvsLab {
    /// The datapath.
    pub dp: OvsDatapath,
    /// Namespace a (address [`OvsLab::a_ip`] on `eth0`).
    pub a: String,
    /// Namespace b (address [`OvsLab::b_ip`] on `eth0`).
    pub b: String,
    /// `eth0`'s address in a (`/24`).
    pub a_ip: Ipv4Addr,
    /// `eth0`'s address in b (`/24`).
    pub b_ip: Ipv4Addr,
    /// Datapath port of a's veth peer.
    pub a_port: u32,
    /// Datapath port of b's veth peer.
    pub b_port: u32,
    /// Host-side interface names of a's and b's veth peers.
    pub host_ifs: [String; 2],
}

impl OvsLab {
    /// Interface name of the veth end inside each namespace.
    pub const NS_IF: &'static str = "eth0";

    /// Builds the lab (`tag` makes the names recognisable). Datapath errors (no module)
    /// are returned; a failing `ip` command panics, as in [`crate::Lab::new`], after
    /// removing what was built.
    pub fn new(tag: &str) -> Result<OvsLab, OvsError> {
        let c = OVS_LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id() % 100_000;
        let dp = OvsDatapath::create(&format!("np{tag:.3}{pid}{c}"))?;
        let n = u8::try_from(c % 200 + 10).unwrap_or(10);
        // Built as a guard first: a panic below deletes the namespaces (and veths) again.
        let mut lab = OvsLab {
            dp,
            a: format!("np-{tag}-{pid}-{c}-a"),
            b: format!("np-{tag}-{pid}-{c}-b"),
            a_ip: Ipv4Addr::new(198, 19, n, 1),
            b_ip: Ipv4Addr::new(198, 19, n, 2),
            a_port: 0,
            b_port: 0,
            host_ifs: [format!("npo{pid}x{c}a"), format!("npo{pid}x{c}b")],
        };
        let (a, b) = (lab.a.clone(), lab.b.clone());
        ns_with_veth(&a, lab.a_ip, &lab.host_ifs[0], Self::NS_IF);
        ns_with_veth(&b, lab.b_ip, &lab.host_ifs[1], Self::NS_IF);
        lab.a_port = lab.dp.add_netdev_port(&lab.host_ifs[0])?;
        lab.b_port = lab.dp.add_netdev_port(&lab.host_ifs[1])?;
        Ok(lab)
    }
}

/// Namespace `ns` (IPv6 off) holding `ns_if` with address `ip/24`, the peer of veth `hif` in
/// this namespace; both up. A failing `ip` command panics (the caller's guard removes `ns`).
pub(crate) fn ns_with_veth(ns: &str, ip: Ipv4Addr, hif: &str, ns_if: &str) {
    let host = |args: &[&str]| {
        crate::run_cmd(Command::new("ip").args(args), None).unwrap_or_else(|e| panic!("{e}"))
    };
    host(&["netns", "add", ns]);
    for key in ["all", "default"] {
        crate::ns_exec(
            ns,
            &[
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{key}.disable_ipv6=1"),
            ],
        );
    }
    host(&[
        "link", "add", hif, "type", "veth", "peer", "name", ns_if, "netns", ns,
    ]);
    // Absent where IPv6 is off altogether: nothing to disable then.
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{hif}/disable_ipv6"), "1");
    host(&["link", "set", hif, "up"]);
    crate::ns_exec(ns, &["ip", "link", "set", "lo", "up"]);
    crate::ns_exec(
        ns,
        &["ip", "addr", "add", &format!("{ip}/24"), "dev", ns_if],
    );
    crate::ns_exec(ns, &["ip", "link", "set", ns_if, "up"]);
}

impl Drop for OvsLab {
    fn drop(&mut self) {
        // The datapath field drops after this body.
        for ns in [&self.a, &self.b] {
            crate::delete_netns(ns);
        }
    }
}

/// True where OVS datapath tests can run: the VM tier (`NETPROBE_TEST_TIER=vm`, set by
/// `tests/vm/init`), where the module must be usable, or any kernel where `modprobe
/// openvswitch` works. On a kernel without the module it asserts what must hold there instead
/// (`OvsDatapath::create` says the module is missing, leaves nothing behind) and returns false.
pub fn kernel_has_ovs() -> bool {
    crate::require_root();
    let vm_tier = std::env::var("NETPROBE_TEST_TIER").as_deref() == Ok("vm");
    match probe_kernel() {
        Ok(()) => true,
        Err(e) if vm_tier => panic!("VM tier: the openvswitch module must be usable: {e}"),
        Err(e) => {
            assert!(
                matches!(e, OvsError::ModuleNotLoaded),
                "no openvswitch, but not for want of the module: {e}"
            );
            assert!(
                !std::path::Path::new("/sys/module/openvswitch").exists(),
                "the module is loaded, yet its genl family is missing: {e}"
            );
            let name = format!("npx{}", std::process::id() % 100_000);
            let err = match OvsDatapath::create(&name) {
                Ok(_) => panic!("OvsDatapath::create succeeded without the openvswitch module"),
                Err(err) => err,
            };
            assert!(matches!(err, OvsError::ModuleNotLoaded), "{err}");
            let msg = err.to_string();
            assert!(
                msg.contains("openvswitch module not loaded")
                    && msg.contains("modprobe openvswitch"),
                "{msg}"
            );
            assert!(!std::path::Path::new("/sys/class/net").join(&name).exists());
            eprintln!("no openvswitch module here: asserted that OvsDatapath::create says so");
            false
        }
    }
}
