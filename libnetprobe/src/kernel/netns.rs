//! Network namespaces: inode numbers, and interface names resolved inside a namespace.
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A network namespace, identified by the inode the kernel reports as `net->ns.inum`.
///
/// It holds the namespace open (`pin`) for as long as it lives: a namespace exists while a
/// reference to it does, so its inode cannot be given to a new namespace while a tool filters
/// on it, even if `ip netns del` removed its name.
#[derive(Debug, Clone)]
pub struct Netns {
    /// Namespace inode number.
    pub inode: u32,
    /// A file that refers to it (`/run/netns/NAME`, `/proc/PID/ns/net`).
    pub path: PathBuf,
    /// What the user called it.
    pub label: String,
    /// The namespace's cookie (`SO_NETNS_COOKIE`, 5.14+), never reused; BPF filters on it.
    pub cookie: Option<u64>,
    pin: Arc<File>,
}

impl PartialEq for Netns {
    fn eq(&self, other: &Self) -> bool {
        self.inode == other.inode
    }
}

impl Eq for Netns {}

/// `NS_GET_NSTYPE` (linux/nsfs.h): `_IO(0xb7, 0x3)`.
const NS_GET_NSTYPE: libc::Ioctl = 0xb703;

impl Netns {
    /// The namespace of this process.
    pub fn current() -> Result<Self> {
        Self::from_path(Path::new("/proc/self/ns/net"), "current".into())
    }

    /// Resolves `NAME` (a name under /run/netns, as `ip netns` uses) or `PID`.
    pub fn resolve(spec: &str) -> Result<Self> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err(Error::usage("--netns: empty namespace name"));
        }
        let named = Path::new("/run/netns").join(spec);
        if !spec.contains('/') && named.exists() {
            return Self::from_path(&named, spec.to_string());
        }
        if let Ok(pid) = spec.parse::<u32>() {
            let p = PathBuf::from(format!("/proc/{pid}/ns/net"));
            if p.exists() {
                return Self::from_path(&p, format!("pid {pid}"));
            }
            return Err(Error::usage(format!(
                "--netns {spec}: no process {pid}; give a name from 'ip netns list' or a live PID"
            )));
        }
        Err(Error::usage(format!(
            "--netns {spec}: no such network namespace; see 'ip netns list'"
        )))
    }

    fn from_path(path: &Path, label: String) -> Result<Self> {
        let file = File::open(path)
            .map_err(|e| Error::usage(format!("network namespace {}: {e}", path.display())))?;
        // SAFETY: NS_GET_NSTYPE takes no argument and only inspects the descriptor.
        let kind = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE) };
        if kind != libc::CLONE_NEWNET {
            return Err(Error::usage(format!(
                "--netns {label}: {} is not a network namespace",
                path.display()
            )));
        }
        let meta = file
            .metadata()
            .map_err(|e| Error::usage(format!("network namespace {}: {e}", path.display())))?;
        let mut ns = Self {
            inode: meta.ino() as u32,
            path: path.to_path_buf(),
            label,
            cookie: None,
            pin: Arc::new(file),
        };
        ns.cookie = ns.run_inside(socket_netns_cookie).ok().flatten();
        Ok(ns)
    }

    /// Does the name it was resolved from still refer to it? False once `ip netns del` (or
    /// the process's exit) removed it; the pinned namespace lives on until the tool exits.
    pub fn still_named(&self) -> bool {
        std::fs::metadata(&self.path).is_ok_and(|m| m.ino() as u32 == self.inode)
    }

    /// Runs `f` on a thread that has entered this namespace.
    pub fn run_inside<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        let path = self.path.clone();
        let pin = Arc::clone(&self.pin);
        std::thread::spawn(move || -> Result<T> {
            nix::sched::setns(&*pin, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                Error::privilege(format!(
                    "cannot enter network namespace {}: {e} (needs CAP_SYS_ADMIN)",
                    path.display()
                ))
            })?;
            Ok(f())
        })
        .join()
        .map_err(|_| Error::io("namespace helper thread", std::io::Error::other("panicked")))?
    }

    /// Interface index of `name` inside this namespace.
    pub fn ifindex(&self, name: &str) -> Result<u32> {
        let owned = name.to_string();
        let idx = self.run_inside(move || nix::net::if_::if_nametoindex(owned.as_str()).ok())?;
        match idx {
            Some(i) if i > 0 => Ok(i),
            _ => Err(Error::usage(format!(
                "--interface {name}: no such interface in network namespace {} (see 'ip link')",
                self.label
            ))),
        }
    }

    /// Index of interface `name` in this namespace, `None` if there is none.
    pub fn find_ifindex(&self, name: &str) -> Result<Option<u32>> {
        let owned = name.to_string();
        self.run_inside(move || nix::net::if_::if_nametoindex(owned.as_str()).ok())
            .map(|i| i.filter(|&i| i > 0))
    }

    /// The driver of interface `name` in this namespace (`tun`, `veth`, `virtio_net`), from
    /// the `ETHTOOL_GDRVINFO` ioctl; `None` if the interface does not answer it.
    pub fn driver(&self, name: &str) -> Result<Option<String>> {
        Ok(self.driver_info(name)?.map(|d| d.driver))
    }

    /// Driver and bus of interface `name` in this namespace (`None`: no such interface, or
    /// the driver does not say).
    pub fn driver_info(&self, name: &str) -> Result<Option<DriverInfo>> {
        let owned = name.to_string();
        self.run_inside(move || interface_driver(&owned))
    }

    /// All interfaces of this namespace, by index.
    pub fn interfaces(&self) -> HashMap<u32, String> {
        self.run_inside(|| {
            nix::net::if_::if_nameindex()
                .map(|list| {
                    list.iter()
                        .map(|i| (i.index(), i.name().to_string_lossy().into_owned()))
                        .collect()
                })
                .unwrap_or_default()
        })
        .unwrap_or_default()
    }
}

/// What `ethtool -i` says of an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverInfo {
    /// Driver name (`virtio_net`, `tun`, `veth`).
    pub driver: String,
    /// Bus address (`0000:00:03.0` for a virtio-net PCI device; empty if none).
    pub bus_info: String,
}

/// The driver of interface `name` in the calling thread's namespace (`ETHTOOL_GDRVINFO`).
fn interface_driver(name: &str) -> Option<DriverInfo> {
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    const ETHTOOL_GDRVINFO: u32 = 3;
    /// `struct ethtool_drvinfo` (include/uapi/linux/ethtool.h).
    #[repr(C)]
    struct DrvInfo {
        cmd: u32,
        driver: [u8; 32],
        version: [u8; 32],
        fw_version: [u8; 32],
        bus_info: [u8; 32],
        erom_version: [u8; 32],
        reserved2: [u8; 12],
        counts: [u32; 5],
    }
    /// `struct ifreq` with `ifr_data`.
    #[repr(C)]
    struct IfReqData {
        name: [u8; 16],
        data: *mut DrvInfo,
        _pad: [u8; 16],
    }
    if name.is_empty() || name.len() >= 16 {
        return None;
    }
    let mut info = DrvInfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        version: [0; 32],
        fw_version: [0; 32],
        bus_info: [0; 32],
        erom_version: [0; 32],
        reserved2: [0; 12],
        counts: [0; 5],
    };
    let mut req = IfReqData {
        name: [0; 16],
        data: &mut info,
        _pad: [0; 16],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: plain socket(2); the result is checked and owned below.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return None;
    }
    // SAFETY: a fresh descriptor nothing else owns.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    // SAFETY: `req` is a valid ifreq whose data pointer targets `info`; both outlive the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL, &mut req) };
    if rc != 0 {
        return None;
    }
    let text = |b: &[u8; 32]| {
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        String::from_utf8_lossy(&b[..end]).into_owned()
    };
    Some(DriverInfo {
        driver: text(&info.driver),
        bus_info: text(&info.bus_info),
    })
}

/// The cookie of the calling thread's namespace, from a socket created in it (5.14+).
fn socket_netns_cookie() -> Option<u64> {
    const SO_NETNS_COOKIE: libc::c_int = 71;
    // SAFETY: plain socket(2); the result is checked and owned below.
    let raw = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return None;
    }
    // SAFETY: a fresh descriptor nothing else owns.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: cookie/len describe a valid 8-byte buffer for the option value.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    (rc == 0 && cookie != 0).then_some(cookie)
}

/// Names interfaces seen in drops, by (netns inode, ifindex), looking in known namespaces.
#[derive(Debug, Default)]
pub struct IfNames {
    known: HashMap<u32, Netns>,
    cache: HashMap<u32, HashMap<u32, String>>,
}

impl IfNames {
    /// Knows this process's namespace, every `ip netns` namespace, and `extra`.
    pub fn new(extra: Option<&Netns>) -> Self {
        let mut known = HashMap::new();
        if let Ok(cur) = Netns::current() {
            known.insert(cur.inode, cur);
        }
        if let Ok(dir) = std::fs::read_dir("/run/netns") {
            for entry in dir.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Ok(ns) = Netns::resolve(&name) {
                    known.entry(ns.inode).or_insert(ns);
                }
            }
        }
        if let Some(ns) = extra {
            known.insert(ns.inode, ns.clone());
        }
        Self {
            known,
            cache: HashMap::new(),
        }
    }

    /// The interface's name, or `if<N>` when its namespace is not known.
    pub fn name(&mut self, netns: u32, ifindex: u32) -> String {
        if ifindex == 0 {
            return "-".to_string();
        }
        let known = &self.known;
        let table = self
            .cache
            .entry(netns)
            .or_insert_with(|| known.get(&netns).map(Netns::interfaces).unwrap_or_default());
        if !table.contains_key(&ifindex) {
            if let Some(ns) = self.known.get(&netns) {
                *table = ns.interfaces();
            }
        }
        table
            .get(&ifindex)
            .cloned()
            .unwrap_or_else(|| format!("if{ifindex}"))
    }
}
