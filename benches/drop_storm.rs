//! Overhead of the drop tools under a storm of kernel packet drops.
//!
//! The benchmark builds its own lab: two uniquely named network namespaces A and B joined by a
//! veth pair (198.18.x.1 <-> 198.18.x.2, IPv6 off), removed again by a guard whatever happens.
//! One thread, moved into A with `setns`, floods 16-byte UDP datagrams (`sendmmsg`, 64 per call)
//! at a closed port in B, so the kernel drops every one of them with reason `NO_SOCKET`. Veth
//! delivery runs B's receive softirq in the sender's context, so the whole drop path, including
//! any BPF program on `kfree_skb`, is charged to the sending thread.
//!
//! The metric is drops per CPU-second of the sending thread (`CLOCK_THREAD_CPUTIME_ID`: the
//! thread rather than the process, so the benchmark's own helper threads do not count). It
//! catches the BPF cost and ignores other load on a shared machine; drops per wall-clock second
//! are reported as well. As `DESIGN.md` ("Benchmarks") asks, every configuration runs in 3 s
//! windows interleaved with no-tool baselines (`no tool, tool A, no tool, tool B, no tool, ...`),
//! the tool order is shuffled per repetition, each tool run is divided by the mean of its two
//! neighbouring baselines, and min/median/max over the repetitions are reported: as a ratio, as a
//! cost in %, and as extra CPU ns per drop (`1e9/pps_tool - 1e9/pps_baseline`).
//!
//! Configurations, each started from the binaries in `target/release/` and measured only after
//! it says it is attached (`netprobe: ready` on stderr, `Attaching` for bpftrace), then stopped
//! with SIGINT:
//! - no tool (the baseline);
//! - `kernel_drop_stack_stats_summary --netns B -i 600` (default stack sampling);
//! - `trace_net_drop --netns B -i 600`;
//! - `eth_drop --netns B --json --no-stack-trace`, stdout to /dev/null (one event per drop);
//! - anchors, if `bpftrace` is on `PATH`, all on `tracepoint:skb:kfree_skb`: a bare counter
//!   `@ = count()` (the floor), `@[args->reason] = count()` and `@[kstack] = count()`.
//!
//! The target is: the summary tool within 3 % of no tool. Besides the table, one JSON line per
//! configuration is printed at the end for machines.
//!
//! Run as root from the workspace root (the tool binaries must be built first):
//!
//! ```text
//! cargo build --release
//! cargo bench --bench drop_storm               # 3 repetitions, about 2 minutes
//! cargo bench --bench drop_storm -- --quick    # 1 repetition smoke run (or NETPROBE_BENCH_QUICK=1)
//! ```
//!
//! `NETPROBE_BENCH_SEED=<u64>` replays a tool order. Every loop is bounded in time and count,
//! and no packet leaves the two namespaces the benchmark creates.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use libnetprobe::session::READY_MARKER;
use netprobe_lab::{snmp_udp_noports, Lab};
use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::Pid;

/// Length of one measured window.
const WINDOW: Duration = Duration::from_secs(3);
/// Unmeasured traffic before every window (caches, first map entries, stale neighbours).
const WARMUP: Duration = Duration::from_millis(200);
/// Unmeasured traffic once the lab is up (ARP resolution).
const LAB_WARMUP: Duration = Duration::from_millis(500);
/// Repetitions of every configuration (DESIGN.md: at least 3).
const REPS: usize = 3;
/// Repetitions in `--quick` mode.
const QUICK_REPS: usize = 1;
/// Datagrams per `sendmmsg` call.
const BATCH: usize = 64;
/// UDP payload bytes.
const PAYLOAD: usize = 16;
/// Destination port in namespace B; nothing listens there.
const DST_PORT: u16 = 9;
/// Hard cap on `sendmmsg` calls per phase, far above what a window allows.
const MAX_BATCHES: u64 = 10_000_000;
/// How long a tool may take to say it is attached.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a tool may take to exit after SIGINT.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// bpftrace prints `Attaching` just before it attaches: give it this long to finish.
const ANCHOR_SETTLE: Duration = Duration::from_millis(250);
/// Output lines kept per stream of a tool (enough for the final report of the summary tools).
const TAIL_LINES: usize = 400;
/// Below this CPU/wall share of the sender, a window is noted as disturbed by other load.
const BUSY_CPU_SHARE: f64 = 0.95;
/// The overhead target of the summary tool, in %.
const SUMMARY_TARGET_PCT: f64 = 3.0;

const SUMMARY: &str = "kernel_drop_stack_stats_summary";
const TRACE_NET_DROP: &str = "trace_net_drop";
const ETH_DROP: &str = "eth_drop";

/// Set by SIGINT/SIGTERM: stop after the current phase and clean up.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

fn install_signal_handlers() {
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        if let Err(e) = unsafe { signal::sigaction(sig, &action) } {
            eprintln!("drop_storm: cannot install a {sig} handler: {e}");
        }
    }
}

/// Command-line and environment options.
struct Opts {
    quick: bool,
    seed: Option<u64>,
}

fn parse_opts() -> Opts {
    let mut quick = std::env::var("NETPROBE_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--quick" => quick = true,
            "--bench" => {} // added by `cargo bench`
            "-h" | "--help" => {
                println!(
                    "drop_storm: overhead of the netprobe drop tools under a UDP drop storm\n\
                     usage (as root): cargo bench --bench drop_storm [-- --quick]\n\
                     env: NETPROBE_BENCH_QUICK=1 (1 repetition), NETPROBE_BENCH_SEED=<u64> (tool order)"
                );
                std::process::exit(0);
            }
            other => eprintln!("drop_storm: ignoring argument {other:?}"),
        }
    }
    let seed = std::env::var("NETPROBE_BENCH_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok());
    Opts { quick, seed }
}

/// xorshift64: enough to shuffle a handful of configurations without a new crate.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Fisher-Yates.
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

fn time_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ u64::from(std::process::id()).rotate_left(32)
}

/// The directory (an ancestor of this executable, normally `target/release`) with the tools.
fn find_tool_dir() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    exe.ancestors()
        .skip(1)
        .find(|d| {
            [SUMMARY, TRACE_NET_DROP, ETH_DROP]
                .iter()
                .all(|t| d.join(t).is_file())
        })
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            format!(
                "the netprobe tools ({SUMMARY}, {TRACE_NET_DROP}, {ETH_DROP}) are not in any parent \
                 directory of {}: run `cargo build --release` first",
                exe.display()
            )
        })
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Whether the running kernel charges softirq time to an "irq" bucket instead of the
/// interrupted task (`CONFIG_IRQ_TIME_ACCOUNTING=y`); `None` if the config is not readable.
fn irq_time_accounting() -> Option<bool> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let config = std::fs::read_to_string(format!("/boot/config-{}", release.trim()))
        .ok()
        .or_else(|| {
            let out = Command::new("zcat")
                .arg("/proc/config.gz")
                .stderr(Stdio::null())
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        })?;
    Some(
        config
            .lines()
            .any(|l| l.trim() == "CONFIG_IRQ_TIME_ACCOUNTING=y"),
    )
}

/// CPU time consumed so far by the calling thread, in ns.
fn thread_cpu_ns() -> Result<u64, String> {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map_err(|e| format!("clock_gettime(CLOCK_THREAD_CPUTIME_ID): {e}"))?;
    let secs = u64::try_from(ts.tv_sec()).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec()).unwrap_or(0);
    Ok(secs * 1_000_000_000 + nanos)
}

/// One measured window of the flood.
#[derive(Debug, Clone, Copy)]
struct Window {
    /// Datagrams sent in the measured window.
    packets: u64,
    /// Datagrams sent in the warm-up and the window together.
    sent_total: u64,
    /// `sendmmsg` calls that failed with a transient error.
    errors: u64,
    /// CPU time of the sending thread during the window.
    cpu_ns: u64,
    /// Wall-clock length of the window.
    wall_ns: u64,
}

impl Window {
    /// Drops per CPU-second of the sending thread.
    fn pps_cpu(&self) -> f64 {
        self.packets as f64 * 1e9 / self.cpu_ns.max(1) as f64
    }

    /// Drops per wall-clock second.
    fn pps_wall(&self) -> f64 {
        self.packets as f64 * 1e9 / self.wall_ns.max(1) as f64
    }

    /// Share of the window the sending thread was on a CPU.
    fn cpu_share(&self) -> f64 {
        self.cpu_ns as f64 / self.wall_ns.max(1) as f64
    }
}

/// Sends `sendmmsg` batches on `sock` for `warmup`, then for `window` while measuring.
fn flood(
    sock: &UdpSocket,
    dst: SocketAddrV4,
    warmup: Duration,
    window: Duration,
) -> Result<Window, String> {
    let payload = [0x5a_u8; PAYLOAD];
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: dst.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*dst.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let mut iov = [libc::iovec {
        iov_base: payload.as_ptr().cast_mut().cast(),
        iov_len: PAYLOAD,
    }; BATCH];
    // SAFETY: mmsghdr is plain old data; all-zeroes is a valid (empty) value.
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for (m, v) in msgs.iter_mut().zip(iov.iter_mut()) {
        m.msg_hdr.msg_name = std::ptr::addr_of!(addr).cast_mut().cast();
        m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        m.msg_hdr.msg_iov = v;
        m.msg_hdr.msg_iovlen = 1;
    }
    let fd = sock.as_raw_fd();
    let mut errors = 0_u64;
    let mut send_batch = || -> Result<u64, String> {
        // SAFETY: `msgs` points into `iov`, `payload` and `addr`, all alive and unmoved until
        // this function returns; the kernel only reads them and writes `msg_len`.
        let n = unsafe {
            libc::sendmmsg(
                fd,
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT as _,
            )
        };
        if n >= 0 {
            return Ok(n as u64);
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EAGAIN | libc::ENOBUFS | libc::ECONNREFUSED | libc::EINTR) => {
                errors += 1;
                Ok(0)
            }
            _ => Err(format!("sendmmsg to {dst}: {err}")),
        }
    };

    let warm_end = Instant::now() + warmup;
    let mut warm = 0_u64;
    for _ in 0..MAX_BATCHES {
        if Instant::now() >= warm_end || interrupted() {
            break;
        }
        warm += send_batch()?;
    }
    let cpu0 = thread_cpu_ns()?;
    let t0 = Instant::now();
    let end = t0 + window;
    let mut packets = 0_u64;
    for _ in 0..MAX_BATCHES {
        packets += send_batch()?;
        if Instant::now() >= end || interrupted() {
            break;
        }
    }
    let wall = t0.elapsed();
    let cpu1 = thread_cpu_ns()?;
    Ok(Window {
        packets,
        sent_total: warm + packets,
        errors,
        cpu_ns: cpu1.saturating_sub(cpu0),
        wall_ns: u64::try_from(wall.as_nanos()).unwrap_or(u64::MAX),
    })
}

fn enter_netns_and_bind(ns_path: &str, src: Ipv4Addr) -> Result<UdpSocket, String> {
    let file = File::open(ns_path).map_err(|e| format!("open {ns_path}: {e}"))?;
    nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("setns({ns_path}): {e}"))?;
    UdpSocket::bind(SocketAddrV4::new(src, 0)).map_err(|e| format!("bind UDP {src}:0: {e}"))
}

/// A long-lived thread inside namespace A that floods on request.
///
/// Dropping it closes the request channel and joins the thread (at most one window later).
struct Flooder {
    requests: Option<mpsc::Sender<(Duration, Duration)>>,
    results: mpsc::Receiver<Result<Window, String>>,
    thread: Option<JoinHandle<()>>,
}

impl Flooder {
    fn start(ns: &str, src: Ipv4Addr, dst: SocketAddrV4) -> Result<Flooder, String> {
        let (req_tx, req_rx) = mpsc::channel::<(Duration, Duration)>();
        let (res_tx, res_rx) = mpsc::channel();
        let (up_tx, up_rx) = mpsc::channel::<Result<(), String>>();
        let ns_path = format!("/run/netns/{ns}");
        let thread = thread::Builder::new()
            .name("flood".into())
            .spawn(move || {
                let sock = match enter_netns_and_bind(&ns_path, src) {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = up_tx.send(Err(e));
                        return;
                    }
                };
                let _ = up_tx.send(Ok(()));
                while let Ok((warmup, window)) = req_rx.recv() {
                    if res_tx.send(flood(&sock, dst, warmup, window)).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| format!("spawn flood thread: {e}"))?;
        let flooder = Flooder {
            requests: Some(req_tx),
            results: res_rx,
            thread: Some(thread),
        };
        match up_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => Ok(flooder),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(format!("flood thread did not start: {e}")),
        }
    }

    /// Floods for `warmup` (unmeasured), then measures a `window`.
    fn run(&self, warmup: Duration, window: Duration) -> Result<Window, String> {
        self.requests
            .as_ref()
            .ok_or("flood thread stopped")?
            .send((warmup, window))
            .map_err(|_| "flood thread is gone".to_string())?;
        self.results
            .recv_timeout(warmup + window + Duration::from_secs(10))
            .map_err(|e| format!("flood thread did not report: {e}"))?
    }
}

impl Drop for Flooder {
    fn drop(&mut self) {
        self.requests.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How to run one tool configuration.
struct ToolConfig {
    /// Short name used in the table and the JSON lines.
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    /// Text (on stdout or stderr) that says the tool is attached.
    marker: &'static str,
    /// Send stdout to /dev/null instead of reading it.
    stdout_null: bool,
    /// A bpftrace anchor: wait [`ANCHOR_SETTLE`] after the marker.
    anchor: bool,
    /// Prefix of the stdout line whose first number is the tool's own drop count.
    count_prefix: Option<&'static str>,
}

impl ToolConfig {
    fn command(&self) -> String {
        let prog = self.program.file_name().map_or_else(
            || self.program.display().to_string(),
            |f| f.to_string_lossy().into_owned(),
        );
        let args: Vec<String> = self
            .args
            .iter()
            .map(|a| {
                if a.contains(' ') {
                    format!("'{a}'")
                } else {
                    a.clone()
                }
            })
            .collect();
        format!("{prog} {}", args.join(" "))
    }
}

fn configs(bin_dir: &Path, netns_b: &str, bpftrace: Option<&Path>) -> Vec<ToolConfig> {
    let netprobe = |name: &'static str, bin: &str, args: &[&str], count_prefix| ToolConfig {
        name,
        program: bin_dir.join(bin),
        args: args.iter().map(|a| (*a).to_string()).collect(),
        marker: READY_MARKER,
        stdout_null: bin == ETH_DROP,
        anchor: false,
        count_prefix,
    };
    let mut v = vec![
        netprobe(
            "summary",
            SUMMARY,
            &["--netns", netns_b, "-i", "600"],
            Some("total drops:"),
        ),
        netprobe(
            "trace_net_drop",
            TRACE_NET_DROP,
            &["--netns", netns_b, "-i", "600"],
            Some("total:"),
        ),
        netprobe(
            "eth_drop details",
            ETH_DROP,
            &["--netns", netns_b, "--json", "--no-stack-trace"],
            None,
        ),
    ];
    if let Some(bt) = bpftrace {
        for (name, body) in [
            ("bpftrace count (floor)", "@ = count();"),
            ("bpftrace by reason", "@[args->reason] = count();"),
            ("bpftrace by kstack", "@[kstack] = count();"),
        ] {
            v.push(ToolConfig {
                name,
                program: bt.to_path_buf(),
                args: vec![
                    "-e".into(),
                    format!("tracepoint:skb:kfree_skb {{ {body} }}"),
                ],
                marker: "Attaching",
                stdout_null: false,
                anchor: true,
                count_prefix: None,
            });
        }
    }
    v
}

type Tail = Arc<Mutex<VecDeque<String>>>;

fn snapshot(tail: &Tail) -> Vec<String> {
    tail.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .cloned()
        .collect()
}

/// Reads `pipe` line by line to EOF, keeping the last [`TAIL_LINES`] and raising `ready` when a
/// line contains `marker`. Always drains the pipe, so the tool never blocks on it.
fn spawn_reader(
    pipe: impl Read + Send + 'static,
    marker: &'static str,
    ready: Arc<AtomicBool>,
    tail: Tail,
) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = String::from_utf8_lossy(&buf).trim_end().to_string();
            if line.contains(marker) {
                ready.store(true, Ordering::SeqCst);
            }
            let mut t = tail.lock().unwrap_or_else(PoisonError::into_inner);
            if t.len() >= TAIL_LINES {
                t.pop_front();
            }
            t.push_back(line);
        }
    })
}

/// What a stopped tool left behind.
struct ToolExit {
    status: ExitStatus,
    stdout: Vec<String>,
    stderr: Vec<String>,
}

/// A running tool; dropping it without [`Running::stop`] kills it.
struct Running {
    desc: String,
    child: Option<Child>,
    stdout: Tail,
    stderr: Tail,
    readers: Vec<JoinHandle<()>>,
}

impl Running {
    /// Spawns the tool and waits (bounded) until it says it is attached.
    fn start(cfg: &ToolConfig) -> Result<Running, String> {
        let desc = cfg.command();
        let mut child = Command::new(&cfg.program)
            .args(&cfg.args)
            .stdin(Stdio::null())
            .stdout(if cfg.stdout_null {
                Stdio::null()
            } else {
                Stdio::piped()
            })
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn {desc}: {e}"))?;
        let ready = Arc::new(AtomicBool::new(false));
        let (stdout, stderr) = (Tail::default(), Tail::default());
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(spawn_reader(out, cfg.marker, ready.clone(), stdout.clone()));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(spawn_reader(err, cfg.marker, ready.clone(), stderr.clone()));
        }
        let mut run = Running {
            desc,
            child: Some(child),
            stdout,
            stderr,
            readers,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        while !ready.load(Ordering::SeqCst) {
            if let Some(status) = run.try_wait()? {
                let out = run.finish(status);
                return Err(format!(
                    "{} exited before it was ready ({status}): {}",
                    run.desc,
                    last_lines(&out.stderr, 3)
                ));
            }
            if Instant::now() >= deadline || interrupted() {
                let out = run.kill_and_finish();
                return Err(format!(
                    "{} not ready within {READY_TIMEOUT:?}: {}",
                    run.desc,
                    last_lines(&out.stderr, 3)
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(run)
    }

    fn try_wait(&mut self) -> Result<Option<ExitStatus>, String> {
        match self.child.as_mut() {
            Some(c) => c
                .try_wait()
                .map_err(|e| format!("wait for {}: {e}", self.desc)),
            None => Err(format!("{} already reaped", self.desc)),
        }
    }

    /// Sends SIGINT and waits (bounded) for the tool to exit; SIGKILL if it does not.
    fn stop(mut self) -> Result<ToolExit, String> {
        let Some(child) = self.child.as_ref() else {
            return Err(format!("{} already reaped", self.desc));
        };
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
        match signal::kill(pid, Signal::SIGINT) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => return Err(format!("kill -INT {pid} ({}): {e}", self.desc)),
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(self.finish(status));
            }
            if Instant::now() >= deadline {
                let out = self.kill_and_finish();
                return Err(format!(
                    "{} did not exit within {STOP_TIMEOUT:?} of SIGINT; killed: {}",
                    self.desc,
                    last_lines(&out.stderr, 3)
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill_and_finish(&mut self) -> ToolExit {
        let status = self.child.as_mut().and_then(|c| {
            let _ = c.kill();
            c.wait().ok()
        });
        match status {
            Some(s) => self.finish(s),
            None => ToolExit {
                status: ExitStatus::default(),
                stdout: snapshot(&self.stdout),
                stderr: snapshot(&self.stderr),
            },
        }
    }

    fn finish(&mut self, status: ExitStatus) -> ToolExit {
        self.child = None;
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        ToolExit {
            status,
            stdout: snapshot(&self.stdout),
            stderr: snapshot(&self.stderr),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn last_lines(lines: &[String], n: usize) -> String {
    let useful: Vec<&str> = lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect();
    let start = useful.len().saturating_sub(n);
    if useful.is_empty() {
        "(no output)".into()
    } else {
        useful[start..].join(" | ")
    }
}

/// The first number after `prefix` on the last stdout line that starts with it.
fn tool_count(stdout: &[String], prefix: &str) -> Option<u64> {
    let line = stdout.iter().rev().find(|l| l.starts_with(prefix))?;
    line[prefix.len()..]
        .split(|c: char| !c.is_ascii_digit())
        .find(|s| !s.is_empty())?
        .parse()
        .ok()
}

/// Runs one window with `cfg` attached. `Ok(None)`: the tool could not be started (noted).
fn tool_window(
    cfg: &ToolConfig,
    flooder: &Flooder,
    notes: &mut Vec<String>,
) -> Result<Option<Window>, String> {
    let name = cfg.name;
    let tool = match Running::start(cfg) {
        Ok(t) => t,
        Err(e) => {
            notes.push(format!("{name}: {e}"));
            return Ok(None);
        }
    };
    if cfg.anchor {
        thread::sleep(ANCHOR_SETTLE);
    }
    let window = flooder.run(WARMUP, WINDOW)?;
    match tool.stop() {
        Ok(exit) => {
            if !exit.status.success() {
                notes.push(format!(
                    "{name}: exited with {} after SIGINT: {}",
                    exit.status,
                    last_lines(&exit.stderr, 3)
                ));
            }
            if let Some(prefix) = cfg.count_prefix {
                let sent = window.sent_total;
                match tool_count(&exit.stdout, prefix) {
                    Some(n) if n == sent => {}
                    Some(n) => notes.push(format!(
                        "{name}: counted {n} drops while {sent} datagrams were sent"
                    )),
                    None => notes.push(format!(
                        "{name}: no '{prefix}' line in its final report: {}",
                        last_lines(&exit.stdout, 3)
                    )),
                }
            }
        }
        Err(e) => notes.push(format!("{name}: {e}")),
    }
    Ok(Some(window))
}

/// One phase of the run.
#[derive(Debug, Clone, Copy)]
enum Step {
    Baseline,
    Tool { cfg: usize, rep: usize },
}

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    if s.len().is_multiple_of(2) {
        (s[m - 1] + s[m]) / 2.0
    } else {
        s[m]
    }
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::min)
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::max)
}

/// An integer with thousands separators (`1,234,567`), or `n/a`.
fn grouped(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    let n = x.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn fixed(x: f64, decimals: usize) -> String {
    if x.is_finite() {
        format!("{x:.decimals$}")
    } else {
        "n/a".into()
    }
}

fn json_num(x: f64, decimals: usize) -> String {
    if x.is_finite() {
        format!("{x:.decimals$}")
    } else {
        "null".into()
    }
}

fn json_str(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// Per-configuration results: one entry per repetition that ran.
#[derive(Default)]
struct Row {
    ratio: Vec<f64>,
    ns_per_drop: Vec<f64>,
    wall_ratio: Vec<f64>,
    pps_cpu: Vec<f64>,
    failed: usize,
}

fn main() {
    let code = run();
    std::process::exit(code);
}

/// Everything that owns kernel state lives in here, so it is dropped before `exit`.
fn run() -> i32 {
    let opts = parse_opts();
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "drop_storm: needs root (network namespaces, BPF); e.g. `sudo -E cargo bench --bench drop_storm`"
        );
        return 1;
    }
    let bin_dir = match find_tool_dir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("drop_storm: {e}");
            return 1;
        }
    };
    install_signal_handlers();
    match bench(&opts, &bin_dir) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("drop_storm: error: {e}");
            if interrupted() {
                130
            } else {
                1
            }
        }
    }
}

fn bench(opts: &Opts, bin_dir: &Path) -> Result<i32, String> {
    let reps = if opts.quick { QUICK_REPS } else { REPS };
    let seed = opts.seed.unwrap_or_else(time_seed) | 1;
    let mut rng = XorShift(seed);
    let bpftrace = find_on_path("bpftrace");

    // Drop order matters: the flooder (declared later) leaves namespace A before the lab goes.
    let lab = Lab::new("bench");
    let configs = configs(bin_dir, &lab.b, bpftrace.as_deref());
    let dst = SocketAddrV4::new(lab.b_ip, DST_PORT);
    let flooder = Flooder::start(&lab.a, lab.a_ip, dst)?;
    flooder.run(LAB_WARMUP, Duration::ZERO)?;
    let mut noports = snmp_udp_noports(&lab.b);

    let mut steps = vec![Step::Baseline];
    let mut order: Vec<usize> = (0..configs.len()).collect();
    for rep in 0..reps {
        rng.shuffle(&mut order);
        for &cfg in &order {
            steps.push(Step::Tool { cfg, rep });
            steps.push(Step::Baseline);
        }
    }

    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let release = release.trim();
    let cpus = thread::available_parallelism().map_or(0, |n| n.get());
    let irq_time = irq_time_accounting();
    let window_s = WINDOW.as_secs_f64();
    let tool_runs = steps.len() - steps.iter().filter(|s| matches!(s, Step::Baseline)).count();
    let estimate = steps.len() as f64 * (WINDOW + WARMUP).as_secs_f64() + tool_runs as f64 * 0.6;
    println!("netprobe drop_storm: what watching a drop storm costs the dropping CPU");
    println!(
        "  lab      {} ({}) -> {} ({}) udp/{DST_PORT}, closed: every datagram dropped as NO_SOCKET",
        lab.a, lab.a_ip, lab.b, lab.b_ip
    );
    println!("  traffic  {PAYLOAD}-byte UDP payload, sendmmsg x{BATCH}, one sending thread");
    println!(
        "  plan     {reps} repetition(s) x {} configuration(s), {window_s:.0} s windows, a no-tool \
         baseline between all, order shuffled per repetition (NETPROBE_BENCH_SEED={seed}); about {estimate:.0} s",
        configs.len()
    );
    println!("  kernel   {release}, {cpus} CPU(s)");
    println!(
        "  metric   drops per CPU-second of the sending thread (CLOCK_THREAD_CPUTIME_ID); the veth \
         receive softirq runs in it"
    );
    match irq_time {
        Some(false) => println!(
            "           CONFIG_IRQ_TIME_ACCOUNTING is off: softirq time is charged to the sender"
        ),
        Some(true) => println!(
            "  WARNING  CONFIG_IRQ_TIME_ACCOUNTING=y: softirq time (the drop path and the BPF programs \
             on it) is NOT charged to the sending thread, so CPU ratios understate the cost; use \
             the wall ratio column"
        ),
        None => println!(
            "           kernel config not readable: check that sender CPU/wall is close to 1.00"
        ),
    }
    if bpftrace.is_none() {
        println!("  bpftrace not on PATH: the bpftrace anchors are skipped");
    }
    for c in &configs {
        println!("  {:<24} {}", c.name, c.command());
    }
    println!();

    let mut results: Vec<Option<Window>> = Vec::with_capacity(steps.len());
    let mut notes: Vec<String> = Vec::new();
    let mut kernel_mismatch = 0_usize;
    let mut busy_windows = 0_usize;
    let total = steps.len();
    for (k, step) in steps.iter().enumerate() {
        if interrupted() {
            return Err("interrupted; lab removed".into());
        }
        let (label, res) = match *step {
            Step::Baseline => ("no tool", Some(flooder.run(WARMUP, WINDOW)?)),
            Step::Tool { cfg, .. } => {
                let c = &configs[cfg];
                (c.name, tool_window(c, &flooder, &mut notes)?)
            }
        };
        let now = snmp_udp_noports(&lab.b);
        let sent = res.map_or(0, |w| w.sent_total);
        if now.wrapping_sub(noports) != sent {
            kernel_mismatch += 1;
            notes.push(format!(
                "step {}: Udp NoPorts in B grew by {} but {sent} datagrams were sent",
                k + 1,
                now.wrapping_sub(noports)
            ));
        }
        noports = now;
        if res.is_some_and(|w| w.cpu_share() < BUSY_CPU_SHARE) {
            busy_windows += 1;
        }
        let rep = match *step {
            Step::Tool { rep, .. } => format!("rep {}/{reps}", rep + 1),
            Step::Baseline => String::new(),
        };
        let line = match res {
            Some(w) => format!(
                "{:>11} drops/CPU-s {:>11} drops/s  CPU/wall {:.2}{}",
                grouped(w.pps_cpu()),
                grouped(w.pps_wall()),
                w.cpu_share(),
                if w.errors > 0 {
                    format!("  ({} failed sendmmsg)", w.errors)
                } else {
                    String::new()
                }
            ),
            None => "failed (see notes)".into(),
        };
        eprintln!("[{:>2}/{total}] {label:<24} {rep:<9} {line}", k + 1);
        results.push(res);
    }

    if busy_windows > 0 {
        notes.push(format!(
            "{busy_windows} of {total} windows had the sender on a CPU less than {:.0} % of the time: \
             other load on this machine. The CPU-time ratios are less sensitive to that than the \
             wall ratios, but expect a wider min..max.",
            BUSY_CPU_SHARE * 100.0
        ));
    }

    // Tool runs against the mean of their two neighbouring baselines.
    let mut rows: Vec<Row> = configs.iter().map(|_| Row::default()).collect();
    for (k, step) in steps.iter().enumerate() {
        let Step::Tool { cfg, .. } = *step else {
            continue;
        };
        let row = &mut rows[cfg];
        let Some(t) = results[k] else {
            row.failed += 1;
            continue;
        };
        let neighbours = (
            k.checked_sub(1)
                .and_then(|i| results.get(i).copied().flatten()),
            results.get(k + 1).copied().flatten(),
        );
        let (Some(b1), Some(b2)) = neighbours else {
            row.failed += 1;
            continue;
        };
        let base_cpu = (b1.pps_cpu() + b2.pps_cpu()) / 2.0;
        let base_wall = (b1.pps_wall() + b2.pps_wall()) / 2.0;
        row.ratio.push(t.pps_cpu() / base_cpu);
        row.ns_per_drop.push(1e9 / t.pps_cpu() - 1e9 / base_cpu);
        row.wall_ratio.push(t.pps_wall() / base_wall);
        row.pps_cpu.push(t.pps_cpu());
    }
    let baselines: Vec<Window> = steps
        .iter()
        .zip(&results)
        .filter(|(s, _)| matches!(s, Step::Baseline))
        .filter_map(|(_, w)| *w)
        .collect();
    let base_cpu: Vec<f64> = baselines.iter().map(Window::pps_cpu).collect();
    let base_wall: Vec<f64> = baselines.iter().map(Window::pps_wall).collect();
    let base_share: Vec<f64> = baselines.iter().map(Window::cpu_share).collect();

    println!();
    println!(
        "no tool (baseline, {} windows): {} drops/CPU-s median (min {}, max {}; spread {:.1} %), \
         {} drops/s wall, sender CPU/wall {:.2}",
        baselines.len(),
        grouped(median(&base_cpu)),
        grouped(min(&base_cpu)),
        grouped(max(&base_cpu)),
        (max(&base_cpu) / min(&base_cpu) - 1.0) * 100.0,
        grouped(median(&base_wall)),
        median(&base_share)
    );
    println!();
    println!(
        "{:<24} {:>4}  {:^26}  {:>8}  {:^24}  {:>10}  {:>13}",
        "configuration",
        "runs",
        "ratio tool/no-tool [x]",
        "cost [%]",
        "extra CPU [ns/drop]",
        "wall ratio",
        "tool"
    );
    println!(
        "{:<24} {:>4}  {:^26}  {:>8}  {:^24}  {:>10}  {:>13}",
        "", "", "min / median / max", "median", "min / median / max", "[x] median", "[drops/CPU-s]"
    );
    for (c, r) in configs.iter().zip(&rows) {
        let failed = if r.failed > 0 {
            format!("  ({} failed)", r.failed)
        } else {
            String::new()
        };
        println!(
            "{:<24} {:>4}  {:^26}  {:>8}  {:^24}  {:>10}  {:>13}{failed}",
            c.name,
            r.ratio.len(),
            format!(
                "{} / {} / {}",
                fixed(min(&r.ratio), 3),
                fixed(median(&r.ratio), 3),
                fixed(max(&r.ratio), 3)
            ),
            fixed((1.0 - median(&r.ratio)) * 100.0, 1),
            format!(
                "{} / {} / {}",
                fixed(min(&r.ns_per_drop), 0),
                fixed(median(&r.ns_per_drop), 0),
                fixed(max(&r.ns_per_drop), 0)
            ),
            fixed(median(&r.wall_ratio), 3),
            grouped(median(&r.pps_cpu)),
        );
    }
    if bpftrace.is_none() {
        println!("{:<24} skipped: bpftrace not on PATH", "bpftrace anchors");
    }
    println!();

    let summary = configs.iter().position(|c| c.name == "summary");
    if let Some(r) = summary.map(|i| &rows[i]) {
        let cost = (1.0 - median(&r.ratio)) * 100.0;
        let verdict = if !cost.is_finite() {
            "NO DATA"
        } else if cost <= SUMMARY_TARGET_PCT {
            "MET"
        } else {
            "NOT MET"
        };
        println!(
            "target: summary tool within {SUMMARY_TARGET_PCT:.0} % of no tool -> median cost {} % \
             (range {} .. {} %) over {} run(s): {verdict}",
            fixed(cost, 1),
            fixed((1.0 - max(&r.ratio)) * 100.0, 1),
            fixed((1.0 - min(&r.ratio)) * 100.0, 1),
            r.ratio.len()
        );
    }
    println!(
        "reference (DESIGN.md): bare counter 60-80 ns/drop, bpftrace by reason ~300-400 ns, any \
         stack walk per event 1.8-4 us"
    );
    if kernel_mismatch == 0 {
        println!(
            "check: Udp NoPorts in B grew by exactly the datagrams sent in every window (all dropped \
             as NO_SOCKET)"
        );
    }
    if !notes.is_empty() {
        println!("notes:");
        for n in &notes {
            println!("  - {n}");
        }
    }
    println!();

    println!(
        "{{\"config\":\"no tool\",\"runs\":{},\"pps_cpu_median\":{},\"pps_wall_median\":{},\"cpu_per_wall_median\":{}}}",
        baselines.len(),
        json_num(median(&base_cpu), 0),
        json_num(median(&base_wall), 0),
        json_num(median(&base_share), 3)
    );
    for (c, r) in configs.iter().zip(&rows) {
        println!(
            "{{\"config\":{},\"runs\":{},\"failed\":{},\"ratio_min\":{},\"ratio_median\":{},\"ratio_max\":{},\
             \"cost_pct_median\":{},\"ns_per_drop_min\":{},\"ns_per_drop_median\":{},\"ns_per_drop_max\":{},\
             \"wall_ratio_median\":{},\"pps_cpu_median\":{}}}",
            json_str(c.name),
            r.ratio.len(),
            r.failed,
            json_num(min(&r.ratio), 4),
            json_num(median(&r.ratio), 4),
            json_num(max(&r.ratio), 4),
            json_num((1.0 - median(&r.ratio)) * 100.0, 2),
            json_num(min(&r.ns_per_drop), 1),
            json_num(median(&r.ns_per_drop), 1),
            json_num(max(&r.ns_per_drop), 1),
            json_num(median(&r.wall_ratio), 4),
            json_num(median(&r.pps_cpu), 0),
        );
    }
    if bpftrace.is_none() {
        for name in [
            "bpftrace count (floor)",
            "bpftrace by reason",
            "bpftrace by kstack",
        ] {
            println!(
                "{{\"config\":{},\"skipped\":\"bpftrace not on PATH\"}}",
                json_str(name)
            );
        }
    }
    let failed: usize = rows.iter().map(|r| r.failed).sum();
    Ok(if failed > 0 { 1 } else { 0 })
}
