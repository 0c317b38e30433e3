//! **netprobe-lab**: the lab netprobe's integration tests and benchmarks share (dev only, never
//! published; the library ships no test code).
//!
//! It builds real network labs (network namespaces joined by a veth pair, unread taps,
//! nftables drop rules, an Open vSwitch kernel datapath driven without OVS userspace:
//! [`ovs`]), injects traffic, reads the kernel's own counters, runs tool processes until they
//! are ready ([`ToolRun`]), and schedules interleaved A/B benchmark windows ([`bench`]).
//!
//! Everything that creates kernel state is owned by a guard whose `Drop` removes it, so
//! namespaces, links and taps are cleaned up whether a test passes or panics. Helpers that
//! tests call panic with a clear message; [`ToolRun::try_start`] and friends return `Result`
//! for callers (benchmarks) that handle failure themselves. The tests need root; see
//! [`require_root`].
pub mod bench;
pub mod cost;
pub mod delivery;
pub mod drops;
pub mod flood;
pub mod kvm;
pub mod latency;
pub mod ovs;
pub mod ovs_switch;
pub mod stamped;
pub mod targets;
pub use drops::{rx_stat64, Drops, Expect, UNKNOWN_ETHERTYPE};
pub mod testkit;
pub mod vhost;
pub mod virtio;

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Panics unless the effective user is root: these tests must not silently skip.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests need root (CI runs as root)"
    );
}

/// Runs `cmd` (optionally feeding `stdin`) and returns its stdout, or a
/// description of the failure including stderr.
pub(crate) fn run_cmd(cmd: &mut Command, stdin: Option<&[u8]>) -> Result<String, String> {
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{desc}: spawn failed: {e}"))?;
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(data)
            .map_err(|e| format!("{desc}: writing stdin: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{desc}: wait failed: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{desc} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn ns_command(ns: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).args(args);
    cmd
}

/// Runs `ip netns exec <ns> <args...>` and returns stdout; panics with stderr on failure.
pub fn ns_exec(ns: &str, args: &[&str]) -> String {
    ns_exec_ok(ns, args).unwrap_or_else(|e| panic!("{e}"))
}

/// Like [`ns_exec`] but returns the failure (including stderr) instead of panicking.
pub fn ns_exec_ok(ns: &str, args: &[&str]) -> Result<String, String> {
    run_cmd(&mut ns_command(ns, args), None)
}

/// Like [`ns_exec`] but feeds `input` on the command's stdin.
pub fn ns_exec_stdin(ns: &str, args: &[&str], input: &str) -> String {
    run_cmd(&mut ns_command(ns, args), Some(input.as_bytes())).unwrap_or_else(|e| panic!("{e}"))
}

static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Two network namespaces `a` and `b` joined by a veth pair `va` <-> `vb`.
///
/// IPv6 is disabled in both namespaces so no autoconf traffic disturbs the
/// counters. Dropping the lab deletes both namespaces (and with them the veths).
pub struct Lab {
    /// Name of namespace a (holds `va`).
    pub a: String,
    /// Name of namespace b (holds `vb`).
    pub b: String,
    /// Address of `va` (`/24`).
    pub a_ip: Ipv4Addr,
    /// Address of `vb` (`/24`).
    pub b_ip: Ipv4Addr,
    /// MAC address of `va`.
    pub a_mac: [u8; 6],
    /// MAC address of `vb`.
    pub b_mac: [u8; 6],
}

impl Lab {
    /// Interface name of the veth end in namespace a.
    pub const A_IF: &'static str = "va";
    /// Interface name of the veth end in namespace b.
    pub const B_IF: &'static str = "vb";

    /// Creates a fresh lab; `tag` makes the namespace names recognisable.
    pub fn new(tag: &str) -> Lab {
        let c = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
        let base = format!("np-{tag}-{}-{c}", std::process::id());
        let n = u8::try_from(c % 200 + 10).expect("subnet index fits in u8");
        // Build the guard first so a failure below still cleans up.
        let mut lab = Lab {
            a: format!("{base}-a"),
            b: format!("{base}-b"),
            a_ip: Ipv4Addr::new(198, 18, n, 1),
            b_ip: Ipv4Addr::new(198, 18, n, 2),
            a_mac: [0; 6],
            b_mac: [0; 6],
        };
        for ns in [&lab.a, &lab.b] {
            create_quiet_netns(ns);
        }
        let (a, b) = (lab.a.clone(), lab.b.clone());
        let (va, vb) = (Self::A_IF, Self::B_IF);
        // Created inside `a` so parallel labs never collide on host names.
        ns_exec(
            &a,
            &[
                "ip", "link", "add", va, "type", "veth", "peer", "name", vb, "netns", &b,
            ],
        );
        for (ns, dev, ip) in [(&a, va, lab.a_ip), (&b, vb, lab.b_ip)] {
            ns_exec(ns, &["ip", "addr", "add", &format!("{ip}/24"), "dev", dev]);
            ns_exec(ns, &["ip", "link", "set", dev, "up"]);
        }
        lab.a_mac = read_mac(&a, va);
        lab.b_mac = read_mac(&b, vb);
        lab
    }
}

impl Lab {
    /// Resolves b's address from a (one ping), so that no later packet waits for ARP.
    pub fn resolve_neighbour(&self) {
        ns_exec(
            &self.a,
            &["ping", "-c", "1", "-W", "2", &self.b_ip.to_string()],
        );
    }
}

/// Creates namespace `ns` with IPv6 off (no autoconf traffic: router solicitations, DAD,
/// MLD) and `lo` up.
pub(crate) fn create_quiet_netns(ns: &str) {
    run_cmd(Command::new("ip").args(["netns", "add", ns]), None).unwrap_or_else(|e| panic!("{e}"));
    for key in ["all", "default"] {
        let setting = format!("net.ipv6.conf.{key}.disable_ipv6=1");
        ns_exec(ns, &["sysctl", "-qw", &setting]);
    }
    ns_exec(ns, &["ip", "link", "set", "lo", "up"]);
}

/// Deletes a network namespace, quietly (cleanup: it may already be gone).
pub(crate) fn delete_netns(ns: &str) {
    let _ = Command::new("ip")
        .args(["netns", "del", ns])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            delete_netns(ns);
        }
    }
}

/// Reads the MAC address of `ifname` inside `ns`.
pub fn read_mac(ns: &str, ifname: &str) -> [u8; 6] {
    let text = ns_exec(ns, &["cat", &format!("/sys/class/net/{ifname}/address")]);
    let bytes: Vec<u8> = text
        .trim()
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap_or_else(|e| panic!("bad MAC {text:?}: {e}")))
        .collect();
    bytes
        .try_into()
        .unwrap_or_else(|_| panic!("bad MAC {text:?}"))
}

/// Runs `f` on a fresh thread that first joins the network namespace `ns`,
/// and returns its result (re-raising its panic, if any).
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    let handle = thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("setns({path}): {e}"));
        f()
    });
    handle
        .join()
        .unwrap_or_else(|payload| std::panic::resume_unwind(payload))
}

/// Sends `count` UDP datagrams of `payload_len` bytes to `dst` from inside `ns`,
/// optionally bound to source address `src`. Per-send errors are ignored.
pub fn send_udp(
    ns: &str,
    src: Option<Ipv4Addr>,
    dst: SocketAddrV4,
    count: usize,
    payload_len: usize,
) {
    in_netns(ns, move || {
        let bind = SocketAddrV4::new(src.unwrap_or(Ipv4Addr::UNSPECIFIED), 0);
        let sock = UdpSocket::bind(bind).unwrap_or_else(|e| panic!("bind UDP {bind}: {e}"));
        let payload = vec![0x5a_u8; payload_len];
        for _ in 0..count {
            let _ = sock.send_to(&payload, dst);
        }
    });
}

/// Sends the complete Ethernet `frame` `count` times on `ifname` inside `ns`
/// through an `AF_PACKET`/`SOCK_RAW` socket.
///
/// `ENOBUFS` (the frame was accepted and then dropped by a full queue) is not
/// an error; any other failure panics.
pub fn send_raw_frames(ns: &str, ifname: &str, frame: &[u8], count: usize) {
    let (ifname, frame, ns_name) = (ifname.to_owned(), frame.to_vec(), ns.to_owned());
    in_netns(ns, move || {
        let ctx = format!("raw send on {ifname} in {ns_name}");
        let cname = CString::new(ifname.as_str()).expect("interface name without NUL");
        // SAFETY: `cname` is a valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        assert!(ifindex != 0, "{ctx}: no such interface");
        // SAFETY: plain socket(2) call; the result is checked below.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        assert!(
            raw >= 0,
            "{ctx}: socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: `raw` is a freshly created descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_ll is plain old data; all-zeroes is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as libc::c_ushort;
        sll.sll_ifindex = i32::try_from(ifindex).expect("ifindex fits in i32");
        // SAFETY: `sll` is a valid sockaddr_ll and the length matches its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                std::ptr::addr_of!(sll).cast::<libc::sockaddr>(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        assert!(rc == 0, "{ctx}: bind: {}", std::io::Error::last_os_error());
        for i in 0..count {
            // SAFETY: the pointer/length pair describes the live `frame` buffer.
            let n = unsafe { libc::send(fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
            if n < 0 {
                let err = std::io::Error::last_os_error();
                assert!(
                    err.raw_os_error() == Some(libc::ENOBUFS),
                    "{ctx}: send #{i}: {err}"
                );
            }
        }
    });
}

/// Builds an Ethernet II frame, zero-padded to the 60-byte minimum (no FCS).
pub fn eth_frame(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(60.max(14 + payload.len()));
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f.resize(f.len().max(60), 0);
    f
}

/// Builds an 802.3/LLC STP configuration BPDU (all fields zero) from `src`
/// to the bridge group address 01:80:c2:00:00:00.
pub fn stp_frame(src: [u8; 6]) -> Vec<u8> {
    let mut llc = vec![0x42, 0x42, 0x03];
    llc.extend_from_slice(&[0u8; 35]); // protocol id 0, version 0, type 0 (config)
    let len = u16::try_from(llc.len()).expect("LLC length");
    // For 802.3 frames the "ethertype" slot carries the length.
    eth_frame([0x01, 0x80, 0xc2, 0, 0, 0], src, len, &llc)
}

/// Builds an Ethernet/IPv4/UDP frame with a valid IPv4 header checksum,
/// TTL 64, IP id 0x1234 and UDP checksum 0.
pub fn udp_ipv4_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let udp_len = u16::try_from(8 + payload.len()).expect("UDP payload too large");
    let total_len = udp_len.checked_add(20).expect("IP packet too large");
    let mut ip = Vec::with_capacity(usize::from(total_len));
    ip.extend_from_slice(&[0x45, 0]);
    ip.extend_from_slice(&total_len.to_be_bytes());
    ip.extend_from_slice(&0x1234_u16.to_be_bytes());
    ip.extend_from_slice(&[0, 0, 64, 17, 0, 0]); // frag, TTL, proto UDP, checksum
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let csum = ipv4_checksum(&ip);
    ip[10..12].copy_from_slice(&csum.to_be_bytes());
    ip.extend_from_slice(&sport.to_be_bytes());
    ip.extend_from_slice(&dport.to_be_bytes());
    ip.extend_from_slice(&udp_len.to_be_bytes());
    ip.extend_from_slice(&[0, 0]);
    ip.extend_from_slice(payload);
    eth_frame(dst_mac, src_mac, 0x0800, &ip)
}

/// RFC 1071 internet checksum of `data`.
fn ipv4_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

const TUNSETIFF: libc::Ioctl = 0x4004_54ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;

/// `struct ifreq` as used by `TUNSETIFF`: name, flags, union padding.
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}
const _: () = assert!(std::mem::size_of::<IfReq>() == 40);

/// A tap device whose file descriptor is held open but never read, so its
/// transmit ring fills up and further packets are dropped.
///
/// Dropping the `Tap` closes the descriptor, which destroys the device.
pub struct Tap {
    /// Interface name.
    pub name: String,
    /// Namespace the tap lives in.
    pub ns: String,
    _file: File,
}

impl Tap {
    /// Creates tap `name` in the host namespace, moves it into `ns`, sets its
    /// `txqueuelen`, assigns `addr_cidr` (e.g. `"198.51.100.1/24"`) and brings it up.
    pub fn create_unread(ns: &str, name: &str, txqueuelen: u32, addr_cidr: &str) -> Tap {
        assert!(name.len() < 16, "tap name {name:?} too long");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .unwrap_or_else(|e| panic!("open /dev/net/tun: {e}"));
        let mut req = IfReq {
            name: [0; 16],
            flags: IFF_TAP | IFF_NO_PI,
            _pad: [0; 22],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: `req` is a correctly laid-out ifreq that outlives the call.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, std::ptr::addr_of_mut!(req)) };
        assert!(
            rc == 0,
            "TUNSETIFF {name}: {}",
            std::io::Error::last_os_error()
        );
        // From here on the guard owns the fd, so a panic removes the device.
        let tap = Tap {
            name: name.to_owned(),
            ns: ns.to_owned(),
            _file: file,
        };
        run_cmd(
            Command::new("ip").args(["link", "set", name, "netns", ns]),
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        ns_exec(
            ns,
            &[
                "ip",
                "link",
                "set",
                name,
                "txqueuelen",
                &txqueuelen.to_string(),
            ],
        );
        ns_exec(ns, &["ip", "addr", "add", addr_cidr, "dev", name]);
        ns_exec(ns, &["ip", "link", "set", name, "up"]);
        tap
    }
}

/// Adds `table inet nptest` in `ns` with an input-hook rule that counts and
/// drops UDP to `port`.
pub fn nft_drop_udp_dport(ns: &str, port: u16) {
    let rules = format!(
        "table inet nptest {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n    udp dport {port} counter drop\n  }}\n}}\n"
    );
    ns_exec_stdin(ns, &["nft", "-f", "-"], &rules);
}

/// Sum of the packet counters of the rules in `table inet nptest` in `ns`.
pub fn nft_counter_packets(ns: &str) -> u64 {
    let out = ns_exec(ns, &["nft", "-j", "list", "ruleset"]);
    let v: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("nft -j output: {e}: {out}"));
    v["nftables"]
        .as_array()
        .unwrap_or_else(|| panic!("unexpected nft -j output: {out}"))
        .iter()
        .filter_map(|item| item.get("rule"))
        .filter(|rule| rule["table"] == "nptest" && rule["family"] == "inet")
        .flat_map(|rule| rule["expr"].as_array().cloned().unwrap_or_default())
        .filter_map(|expr| expr["counter"]["packets"].as_u64())
        .sum()
}

/// Reads `/sys/class/net/{ifname}/statistics/{stat}` inside `ns`.
pub fn read_stat(ns: &str, ifname: &str, stat: &str) -> u64 {
    let path = format!("/sys/class/net/{ifname}/statistics/{stat}");
    let text = ns_exec(ns, &["cat", &path]);
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{path} in {ns}: {e}: {text:?}"))
}

/// The `Udp: NoPorts` counter from `/proc/net/snmp` inside `ns`.
pub fn snmp_udp_noports(ns: &str) -> u64 {
    let text = ns_exec(ns, &["cat", "/proc/net/snmp"]);
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let (header, values) = match (udp.next(), udp.next()) {
        (Some(h), Some(v)) => (h, v),
        _ => panic!("no Udp lines in /proc/net/snmp: {text}"),
    };
    let col = header
        .split_whitespace()
        .position(|c| c == "NoPorts")
        .unwrap_or_else(|| panic!("no NoPorts column: {header}"));
    values
        .split_whitespace()
        .nth(col)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("bad Udp values line: {values}"))
}

/// Polls `f` every 20 ms until it returns true; panics mentioning `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// The tool runner's readiness line (the same as `libnetprobe::session::READY_MARKER`).
pub const READY_MARKER: &str = "netprobe: ready";

/// The result of a finished tool run.
#[derive(Debug)]
pub struct ToolOutput {
    /// Exit status of the process.
    pub status: ExitStatus,
    /// Captured stdout, one entry per line.
    pub stdout: Vec<String>,
    /// Captured stderr, one entry per line.
    pub stderr: Vec<String>,
}

impl ToolOutput {
    /// Parses every non-empty stdout line as JSON; panics on the first line that is not.
    pub fn json(&self) -> Vec<serde_json::Value> {
        self.stdout
            .iter()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }
}

type Lines = Arc<Mutex<Vec<String>>>;

fn spawn_reader(pipe: impl Read + Send + 'static, sink: Lines) -> JoinHandle<()> {
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
        }
    })
}

fn snapshot(lines: &Lines) -> Vec<String> {
    lines.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Tools of one test binary that attach or detach (start, stop) against windows in which a
/// test counts packets exactly. Measured on 6.18: while another BPF program is attached to or
/// detached from the same tracepoints, a probe can miss a packet (about 1 run in 6 of the tbf
/// test with a tool attaching and detaching in a loop beside it).
static PROBE_CHURN: RwLock<()> = RwLock::new(());

fn churn() -> RwLockWriteGuard<'static, ()> {
    PROBE_CHURN.write().unwrap_or_else(|p| p.into_inner())
}

/// Runs `f` (send packets and let the tools see them) while no tool of this test binary
/// attaches or detaches. `f` must not start or stop a [`ToolRun`] itself (it would wait for
/// its own window).
pub fn quiet<T>(f: impl FnOnce() -> T) -> T {
    let _window: RwLockReadGuard<'static, ()> =
        PROBE_CHURN.read().unwrap_or_else(|p| p.into_inner());
    f()
}

/// True in the VM tier (`NETPROBE_TEST_TIER=vm`): TCG guests of a shared host, whose vCPU
/// threads the host preempts for tens of milliseconds at a time.
pub fn vm_tier() -> bool {
    std::env::var("NETPROBE_TEST_TIER").as_deref() == Ok("vm")
}

/// How long a tool may take to attach: 20 s, or 60 s in the VM tier, whose TCG guests verify
/// and attach a tool of two sets (tun + vhost) in up to 20 s on a loaded host (seen on 7.2).
pub fn ready_timeout() -> Duration {
    if vm_tier() {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(20)
    }
}

/// A running tool process with its stdout/stderr captured line by line.
///
/// Dropping a `ToolRun` that was not stopped kills the process.
pub struct ToolRun {
    desc: String,
    child: Option<Child>,
    stdout: Lines,
    stderr: Lines,
    readers: Vec<JoinHandle<()>>,
}

impl ToolRun {
    /// Spawns `bin args...` and waits (at most [`ready_timeout`]) for `netprobe: ready` on
    /// stderr.
    pub fn start(bin: &str, args: &[&str]) -> ToolRun {
        Self::try_start(bin, args, READY_MARKER).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Spawns `bin args...` and waits (at most [`ready_timeout`]) for a stderr line containing
    /// `marker`; the
    /// error says why it never got there, with the tool's output.
    pub fn try_start(bin: &str, args: &[&str], marker: &str) -> Result<ToolRun, String> {
        let _attaching = churn();
        let mut cmd = Command::new(bin);
        cmd.args(args);
        Self::try_spawn(cmd)?.try_await_ready(marker)
    }

    /// Spawns `cmd` (stdout and stderr captured) and waits for `marker` on stderr.
    pub fn try_start_command(cmd: Command, marker: &str) -> Result<ToolRun, String> {
        let _attaching = churn();
        Self::try_spawn(cmd)?.try_await_ready(marker)
    }

    /// Lines the tool wrote to stdout so far.
    pub fn stdout_so_far(&self) -> Vec<String> {
        snapshot(&self.stdout)
    }

    /// Lines the tool wrote to stderr so far.
    pub fn stderr_so_far(&self) -> Vec<String> {
        snapshot(&self.stderr)
    }

    /// Like [`ToolRun::start`] but runs the tool under `ip netns exec ns`.
    pub fn start_netns(ns: &str, bin: &str, args: &[&str]) -> ToolRun {
        let _attaching = churn();
        let mut cmd = ns_command(ns, &[bin]);
        cmd.args(args);
        Self::spawn(cmd).await_ready()
    }

    fn spawn(cmd: Command) -> ToolRun {
        Self::try_spawn(cmd).unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_spawn(mut cmd: Command) -> Result<ToolRun, String> {
        let desc = format!("{cmd:?}");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn {desc}: {e}"))?;
        let (stdout, stderr) = (Lines::default(), Lines::default());
        let readers = vec![
            spawn_reader(child.stdout.take().expect("piped stdout"), stdout.clone()),
            spawn_reader(child.stderr.take().expect("piped stderr"), stderr.clone()),
        ];
        Ok(ToolRun {
            desc,
            child: Some(child),
            stdout,
            stderr,
            readers,
        })
    }

    fn await_ready(self) -> ToolRun {
        self.try_await_ready(READY_MARKER)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_await_ready(mut self, marker: &str) -> Result<ToolRun, String> {
        let deadline = Instant::now() + ready_timeout();
        loop {
            if snapshot(&self.stderr).iter().any(|l| l.contains(marker)) {
                return Ok(self);
            }
            let exited = self
                .child_mut()
                .try_wait()
                .map_err(|e| format!("try_wait: {e}"))?;
            if let Some(status) = exited {
                let out = self.finish(status);
                return Err(format!(
                    "{} exited before ready ({status})\n{}",
                    self.desc,
                    dump(&out)
                ));
            }
            if Instant::now() >= deadline {
                let out = self.kill_and_finish();
                return Err(format!(
                    "{} not ready within {:?}\n{}",
                    self.desc,
                    ready_timeout(),
                    dump(&out)
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("child already reaped")
    }

    /// Process id of the tool.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("child already reaped").id()
    }

    /// Sends `sig`, waits up to [`ready_timeout`] (20 s; 60 s in the VM tier, where detaching
    /// fentry programs waits for RCU grace periods under TCG: seen over 20 s on 7.2) for the
    /// tool to exit and returns its output.
    /// Panics (after SIGKILL) if the tool does not exit in time.
    pub fn stop(self, sig: Signal) -> ToolOutput {
        self.try_stop(sig).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`ToolRun::stop`], returning the failure instead of panicking.
    pub fn try_stop(mut self, sig: Signal) -> Result<ToolOutput, String> {
        let _detaching = churn();
        let pid = Pid::from_raw(i32::try_from(self.pid()).map_err(|e| e.to_string())?);
        kill(pid, sig).map_err(|e| format!("kill({pid}, {sig}) {}: {e}", self.desc))?;
        let limit = ready_timeout();
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child_mut().try_wait() {
                return Ok(self.finish(status));
            }
            if Instant::now() >= deadline {
                let out = self.kill_and_finish();
                return Err(format!(
                    "{} did not exit after {sig} within {limit:?}\n{}",
                    self.desc,
                    dump(&out)
                ));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits up to `timeout` for the tool to exit on its own (e.g. `--duration`).
    /// Panics (after SIGKILL) if it does not.
    pub fn wait(mut self, timeout: Duration) -> ToolOutput {
        self.wait_inner(timeout, "exit")
    }

    fn wait_inner(&mut self, timeout: Duration, what: &str) -> ToolOutput {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child_mut().try_wait().expect("try_wait") {
                return self.finish(status);
            }
            if Instant::now() >= deadline {
                let out = self.kill_and_finish();
                panic!(
                    "{} did not {what} within {timeout:?}\n{}",
                    self.desc,
                    dump(&out)
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill_and_finish(&mut self) -> ToolOutput {
        let child = self.child_mut();
        let _ = child.kill();
        let status = child.wait().expect("wait after kill");
        self.finish(status)
    }

    /// Reaps bookkeeping after exit: joins the readers and collects output.
    fn finish(&mut self, status: ExitStatus) -> ToolOutput {
        self.child = None;
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        ToolOutput {
            status,
            stdout: snapshot(&self.stdout),
            stderr: snapshot(&self.stderr),
        }
    }
}

impl Drop for ToolRun {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

fn dump(out: &ToolOutput) -> String {
    format!(
        "--- stderr ---\n{}\n--- stdout ---\n{}",
        out.stderr.join("\n"),
        out.stdout.join("\n")
    )
}

/// Runs `bin args...` to completion (max 30 s) without waiting for readiness.
pub fn run_tool(bin: &str, args: &[&str]) -> ToolOutput {
    let mut cmd = Command::new(bin);
    cmd.args(args);
    ToolRun::spawn(cmd).wait(Duration::from_secs(30))
}

/// Stops `run` with SIGINT and prints its stdout under `### title` (the demo examples).
pub fn show_run(title: &str, run: ToolRun) {
    println!("### {title}");
    let out = run.stop(Signal::SIGINT);
    for l in out.stdout {
        println!("{l}");
    }
    println!();
}

/// Runs each `(tool, args, want)` and asserts a usage error: exit 2 and one line on stderr
/// that contains `want`.
pub fn assert_usage_errors(cases: &[(&str, &[&str], &str)]) {
    for (tool, args, want) in cases {
        let out = run_tool(tool, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {:?}", out.stderr);
        assert_eq!(out.stderr.len(), 1, "{args:?}: {:?}", out.stderr);
        assert!(out.stderr[0].contains(want), "{args:?}: {:?}", out.stderr);
    }
}

/// Starts `tool args`, asserts it holds one of the programs named `progs` (BPF cuts names at
/// 15 characters), stops it with `sig` and waits (10 s at most) until the kernel has unloaded
/// them: it frees a program once its last reference is gone, after an RCU grace period.
pub fn assert_stop_unloads(tool: &str, args: &[&str], sig: Signal, progs: &[&str]) {
    let run = ToolRun::start(tool, args);
    let ids = bpf_prog_ids_with_names(progs);
    assert!(!ids.is_empty(), "{tool} holds its program");
    let out = run.stop(sig);
    assert!(out.status.success(), "{tool}: {:?}", out.stderr);
    wait_until(
        "the tool's programs unloaded",
        Duration::from_secs(10),
        || {
            let loaded = loaded_prog_ids();
            ids.iter().all(|id| !loaded.contains(id))
        },
    );
}

/// The program runs the kernel skipped (`recursion_misses`) over all intervals of a tool's
/// JSON: programs on preemptible hooks (uprobes, and syscall tracepoints since 6.14) make the
/// next run on their CPU skip when preempted, and the kernel counts it.
pub fn missed_runs(out: &ToolOutput) -> u64 {
    out.json()
        .iter()
        .filter(|v| v["type"] == "interval")
        .map(|v| v["recursion_misses"].as_u64().unwrap_or(0))
        .sum()
}

/// Ids of every loaded BPF program (`bpftool -j prog show`).
pub fn loaded_prog_ids() -> Vec<u32> {
    bpf_prog_ids_with_names(&[])
}

/// Ids of loaded BPF programs whose name matches one of `names`.
///
/// The kernel truncates program names to 15 characters (bpftool may print
/// the full name from BTF), so both sides are compared on their first 15.
pub fn bpf_prog_ids_with_names(names: &[&str]) -> Vec<u32> {
    fn trunc(s: &str) -> &str {
        s.char_indices().nth(15).map_or(s, |(i, _)| &s[..i])
    }
    let out = run_cmd(Command::new("bpftool").args(["-j", "prog", "show"]), None)
        .unwrap_or_else(|e| panic!("{e}"));
    let progs: Vec<serde_json::Value> =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("bpftool -j: {e}: {out}"));
    progs
        .iter()
        .filter(|p| {
            let name = p["name"].as_str().unwrap_or("");
            names.is_empty() || names.iter().any(|n| trunc(n) == trunc(name))
        })
        .filter_map(|p| p["id"].as_u64().and_then(|id| u32::try_from(id).ok()))
        .collect()
}
