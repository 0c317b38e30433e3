//! A real Open vSwitch: `ovsdb-server` and `ovs-vswitchd` (Debian's packages, copied into the
//! VM image by `tests/vm/run.sh`) with one bridge whose two ports are veths into two
//! namespaces, as on a hypervisor. The daemons run from a private directory
//! (`OVS_RUNDIR`/`OVS_DBDIR`/`OVS_LOGDIR`), are killed and the bridge, its datapath and the
//! namespaces removed on drop.
//!
//! Debian's OVS 3.1 drops every upcall while the monotonic clock reads under 10 s (the VM's
//! uptime when the tests start): `ovs-vswitchd` runs in a time namespace 10 s ahead. Flows
//! stay installed for a minute (`other_config:max-idle`), so `ovs-dpctl dump-flows` still
//! shows what the tests made.
use crate::ovs::ns_with_veth;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The daemons and tools the switch needs on PATH.
pub const PROGRAMS: [&str; 5] = [
    "ovsdb-tool",
    "ovsdb-server",
    "ovs-vswitchd",
    "ovs-vsctl",
    "ovs-dpctl",
];
/// The database schema Debian installs.
pub const SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";
const START: Duration = Duration::from_secs(20);

/// Is every program of [`PROGRAMS`] on PATH and the schema installed?
pub fn available() -> bool {
    Path::new(SCHEMA).exists() && PROGRAMS.iter().all(|p| which(p).is_some())
}

fn which(prog: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(prog))
            .find(|p| p.is_file())
    })
}

/// A running switch: bridge `bridge` with ports `host_ifs`, whose peers are `eth0` in `a`
/// and `b`.
pub struct OvsSwitch {
    dir: PathBuf,
    daemons: Vec<Child>,
    /// The bridge.
    pub bridge: String,
    /// Namespace a (address [`OvsSwitch::a_ip`] on `eth0`).
    pub a: String,
    /// Namespace b.
    pub b: String,
    /// a's address (`/24`).
    pub a_ip: Ipv4Addr,
    /// b's address (`/24`).
    pub b_ip: Ipv4Addr,
    /// Host ends of a's and b's veths, the bridge's ports.
    pub host_ifs: [String; 2],
}

impl OvsSwitch {
    /// Starts the daemons and builds the bridge; an error says which step failed (with the
    /// end of the daemon's log), after removing what was built.
    pub fn start(tag: &str) -> Result<OvsSwitch, String> {
        // ovs-vswitchd's datapath is always ovs-system: one there already is another switch's
        // (this machine runs OVS), which the test must neither use nor remove.
        if Path::new("/sys/class/net/ovs-system").exists() {
            return Err(
                "an Open vSwitch datapath (ovs-system) exists already: this machine runs OVS; the test needs its own (run it in the VM tier)"
                    .into(),
            );
        }
        let c = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id() % 100_000;
        let dir = std::env::temp_dir().join(format!("netprobe-ovs-{tag}-{pid}-{c}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let n = u8::try_from(c % 200 + 10).unwrap_or(10);
        let mut sw = OvsSwitch {
            dir,
            daemons: Vec::new(),
            bridge: format!("npbr{pid}x{c}"),
            a: format!("np-{tag}-{pid}-{c}-a"),
            b: format!("np-{tag}-{pid}-{c}-b"),
            a_ip: Ipv4Addr::new(198, 18, n, 1),
            b_ip: Ipv4Addr::new(198, 18, n, 2),
            host_ifs: [format!("npv{pid}x{c}a"), format!("npv{pid}x{c}b")],
        };
        sw.run_tool("ovsdb-tool", &["create", &sw.path("conf.db"), SCHEMA])?;
        let db = sw.spawn(
            "ovsdb-server",
            &[
                &sw.path("conf.db"),
                &format!("--remote=punix:{}", sw.path("db.sock")),
                &format!("--unixctl={}", sw.path("ovsdb-server.ctl")),
                &format!("--log-file={}", sw.path("ovsdb-server.log")),
            ],
        )?;
        sw.daemons.push(db);
        sw.wait_for("ovsdb-server's socket", "ovsdb-server.log", || {
            Path::new(&sw.path("db.sock")).exists()
        })?;
        sw.vsctl(&["--no-wait", "init"])?;
        sw.vsctl(&[
            "--no-wait",
            "set",
            "Open_vSwitch",
            ".",
            "other_config:max-idle=60000",
        ])?;
        let mut vswitchd = Command::new("unshare");
        vswitchd
            .args([
                "--fork",
                "--kill-child",
                "--time",
                "--monotonic",
                "10",
                "ovs-vswitchd",
            ])
            .args([
                format!("unix:{}", sw.path("db.sock")),
                format!("--unixctl={}", sw.path("ovs-vswitchd.ctl")),
                format!("--log-file={}", sw.path("ovs-vswitchd.log")),
            ]);
        let d = sw.spawn_cmd("ovs-vswitchd", vswitchd)?;
        sw.daemons.push(d);
        sw.wait_for("ovs-vswitchd's control socket", "ovs-vswitchd.log", || {
            Path::new(&sw.path("ovs-vswitchd.ctl")).exists()
        })?;
        for (ns, ip, hif) in [
            (sw.a.clone(), sw.a_ip, sw.host_ifs[0].clone()),
            (sw.b.clone(), sw.b_ip, sw.host_ifs[1].clone()),
        ] {
            ns_with_veth(&ns, ip, &hif, crate::ovs::OvsLab::NS_IF);
        }
        let br = sw.bridge.clone();
        let [ha, hb] = sw.host_ifs.clone();
        sw.vsctl(&[
            "--timeout=20",
            "add-br",
            &br,
            "--",
            "add-port",
            &br,
            &ha,
            "--",
            "add-port",
            &br,
            &hb,
        ])?;
        Ok(sw)
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }

    fn env(&self, cmd: &mut Command) {
        for var in ["OVS_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR", "OVS_SYSCONFDIR"] {
            cmd.env(var, &self.dir);
        }
    }

    fn spawn(&self, prog: &str, args: &[&str]) -> Result<Child, String> {
        let mut cmd = Command::new(prog);
        cmd.args(args);
        self.spawn_cmd(prog, cmd)
    }

    fn spawn_cmd(&self, what: &str, mut cmd: Command) -> Result<Child, String> {
        self.env(&mut cmd);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd.spawn().map_err(|e| format!("start {what}: {e}"))
    }

    fn run_tool(&self, prog: &str, args: &[&str]) -> Result<String, String> {
        let mut cmd = Command::new(prog);
        cmd.args(args);
        self.env(&mut cmd);
        let out = cmd.output().map_err(|e| format!("{prog}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{prog} {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `ovs-vsctl` against this switch's database.
    pub fn vsctl(&self, args: &[&str]) -> Result<String, String> {
        let db = format!("--db=unix:{}", self.path("db.sock"));
        let mut all = vec![db.as_str()];
        all.extend_from_slice(args);
        self.run_tool("ovs-vsctl", &all)
    }

    /// The kernel datapath's flows (`ovs-dpctl dump-flows`), one line each.
    pub fn dump_flows(&self) -> Result<Vec<String>, String> {
        Ok(self
            .run_tool("ovs-dpctl", &["dump-flows"])?
            .lines()
            .map(str::to_string)
            .filter(|l| !l.trim().is_empty())
            .collect())
    }

    /// The datapath's `lookups: hit:H missed:M lost:L` (`ovs-dpctl show`).
    pub fn lookups(&self) -> Result<(u64, u64, u64), String> {
        let out = self.run_tool("ovs-dpctl", &["show"])?;
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with("lookups:"))
            .ok_or_else(|| format!("no lookups line in ovs-dpctl show: {out}"))?;
        let num = |k: &str| -> Result<u64, String> {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("no {k} in {line}"))
        };
        Ok((num("hit:")?, num("missed:")?, num("lost:")?))
    }

    /// The datapath port number of interface `ifname` (`ovs-dpctl show`: `port 2: name`).
    pub fn port_no(&self, ifname: &str) -> Result<u32, String> {
        let out = self.run_tool("ovs-dpctl", &["show"])?;
        out.lines()
            .find_map(|l| {
                let rest = l.trim_start().strip_prefix("port ")?;
                let (no, name) = rest.split_once(": ")?;
                (name.split_whitespace().next() == Some(ifname)).then(|| no.parse().ok())?
            })
            .ok_or_else(|| format!("{ifname} is no port in ovs-dpctl show: {out}"))
    }

    fn log_tail(&self, file: &str) -> String {
        let text = std::fs::read_to_string(self.dir.join(file)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    fn wait_for(&self, what: &str, log: &str, f: impl Fn() -> bool) -> Result<(), String> {
        let start = Instant::now();
        while !f() {
            if start.elapsed() > START {
                return Err(format!(
                    "{what} did not appear in {START:?}: {}",
                    self.log_tail(log)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for OvsSwitch {
    fn drop(&mut self) {
        let br = self.bridge.clone();
        let _ = self.vsctl(&["--timeout=10", "--if-exists", "del-br", &br]);
        for d in self.daemons.iter_mut().rev() {
            let _ = d.kill();
            let _ = d.wait();
        }
        // ovs-vswitchd removes its datapath on exit only when told; a killed one leaves it.
        let _ = Command::new("ovs-dpctl")
            .args(["del-dp", "ovs-system"])
            .stderr(Stdio::null())
            .status();
        for ns in [&self.a, &self.b] {
            crate::delete_netns(ns);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
