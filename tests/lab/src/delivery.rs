//! A UDP flood that is delivered: a socket in the peer namespace drains it ([`UdpSink`]), and
//! the sender ([`MarkedFlooder`]) sends 1 datagram in N from a second source port, so a tool
//! filtering on that port sees a known fraction of the packets. Like [`crate::flood`], the
//! sender is one thread measured by its own CPU time (`CLOCK_THREAD_CPUTIME_ID`): veth delivery
//! runs the receive softirq, up to the socket queue, in the sender's context.
use crate::flood::{Flood, BATCH, PAYLOAD};
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Hard cap on `sendmmsg` calls per flood, far above what a few seconds allow.
const MAX_BATCHES: u64 = 10_000_000;
/// Receive buffer the sink asks for (`SO_RCVBUFFORCE`, so above `rmem_max` as root).
const SINK_RCVBUF: libc::c_int = 8 << 20;
/// The sink drains its socket, then sleeps this long: the sender never wakes it up.
const SINK_NAP: Duration = Duration::from_millis(1);
/// Bytes the sink keeps of each datagram (the rest is truncated).
const SINK_BUF: usize = 64;

/// Joins network namespace `ns` (the calling thread only).
fn enter_netns(ns: &str) -> Result<(), String> {
    let path = format!("/run/netns/{ns}");
    let f = File::open(&path).map_err(|e| format!("open {path}: {e}"))?;
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("setns({path}): {e}"))
}

fn thread_cpu_ns() -> Result<u64, String> {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map_err(|e| format!("clock_gettime(CLOCK_THREAD_CPUTIME_ID): {e}"))?;
    Ok(u64::try_from(ts.tv_sec()).unwrap_or(0) * 1_000_000_000
        + u64::try_from(ts.tv_nsec()).unwrap_or(0))
}

fn local_port(sock: &UdpSocket) -> Result<u16, String> {
    sock.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("getsockname: {e}"))
}

/// A UDP socket bound in a network namespace and drained by its own thread (`recvmmsg` until
/// the queue is empty, then a 1 ms nap), counting what it receives. Dropping it stops and
/// joins the thread (within a few ms).
pub struct UdpSink {
    /// Where it listens.
    pub addr: SocketAddrV4,
    received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpSink {
    /// Binds `addr` inside `ns` and starts draining it.
    pub fn start(ns: &str, addr: SocketAddrV4) -> Result<UdpSink, String> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let received = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, halt, ns) = (received.clone(), stop.clone(), ns.to_owned());
        let thread = thread::Builder::new()
            .name("udp-sink".into())
            .spawn(move || {
                let sock = enter_netns(&ns).and_then(|()| {
                    UdpSocket::bind(addr).map_err(|e| format!("bind UDP {addr} in {ns}: {e}"))
                });
                let sock = match sock {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let size = SINK_RCVBUF;
                // SAFETY: plain setsockopt with a c_int option value that outlives the call.
                let rc = unsafe {
                    libc::setsockopt(
                        sock.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_RCVBUFFORCE,
                        std::ptr::addr_of!(size).cast(),
                        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                    )
                };
                if rc != 0 {
                    let e = std::io::Error::last_os_error();
                    let _ = ready_tx.send(Err(format!("SO_RCVBUFFORCE on {addr}: {e}")));
                    return;
                }
                let _ = ready_tx.send(Ok(()));
                drain(&sock, &count, &halt);
            })
            .map_err(|e| format!("spawn UDP sink thread: {e}"))?;
        let sink = UdpSink {
            addr,
            received,
            stop,
            thread: Some(thread),
        };
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => Ok(sink),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(format!("UDP sink thread did not start: {e}")),
        }
    }

    /// Datagrams received so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

impl Drop for UdpSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The sink's loop: drain with non-blocking `recvmmsg`, nap, until `stop`.
fn drain(sock: &UdpSocket, count: &AtomicU64, stop: &AtomicBool) {
    let mut bufs = [[0_u8; SINK_BUF]; BATCH];
    let mut iov: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: SINK_BUF,
        })
        .collect();
    // SAFETY: mmsghdr is plain old data; all-zeroes is a valid (empty) value.
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for (m, v) in msgs.iter_mut().zip(iov.iter_mut()) {
        m.msg_hdr.msg_iov = v;
        m.msg_hdr.msg_iovlen = 1;
    }
    while !stop.load(Ordering::Relaxed) {
        loop {
            // SAFETY: every header points at a live iovec and buffer of this frame; the
            // kernel writes at most `iov_len` bytes into each and the lengths into `msgs`.
            let n = unsafe {
                libc::recvmmsg(
                    sock.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if n <= 0 {
                break; // EAGAIN (drained) or an error: nap and retry
            }
            count.fetch_add(n as u64, Ordering::Relaxed);
        }
        thread::sleep(SINK_NAP);
    }
}

/// One measured [`MarkedFlooder`] flood.
#[derive(Debug, Clone, Copy, Default)]
pub struct MarkedFlood {
    /// The whole flood (both source ports); `flood.packets` includes `marked`.
    pub flood: Flood,
    /// Datagrams sent from the marked port.
    pub marked: u64,
}

/// A long-lived thread inside a network namespace that floods UDP datagrams at `dst` on
/// request from two sockets: batches of [`BATCH`] from [`MarkedFlooder::port`], and from
/// [`MarkedFlooder::marked_port`] as many as make it 1 datagram in `one_in` overall (sent after
/// the batch that owes them, so they are spread through the flood). Dropping it closes the
/// request channel and joins the thread.
pub struct MarkedFlooder {
    /// Source port of the bulk of the flood.
    pub port: u16,
    /// Source port of 1 datagram in `one_in`.
    pub marked_port: u16,
    requests: Option<mpsc::Sender<Duration>>,
    results: mpsc::Receiver<Result<MarkedFlood, String>>,
    thread: Option<JoinHandle<()>>,
}

impl MarkedFlooder {
    /// Starts the thread in namespace `ns`, sending from `src` (two kernel-chosen ports) with
    /// 1 datagram in `one_in` (at least 2) from the marked port.
    pub fn start(
        ns: &str,
        src: Ipv4Addr,
        dst: SocketAddrV4,
        one_in: u64,
    ) -> Result<MarkedFlooder, String> {
        let one_in = one_in.max(2);
        let (req_tx, req_rx) = mpsc::channel::<Duration>();
        let (res_tx, res_rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let ns = ns.to_owned();
        let thread = thread::Builder::new()
            .name("marked-flood".into())
            .spawn(move || {
                let bind = || {
                    UdpSocket::bind(SocketAddrV4::new(src, 0))
                        .map_err(|e| format!("bind UDP {src}: {e}"))
                };
                let socks = enter_netns(&ns).and_then(|()| {
                    let (b, m) = (bind()?, bind()?);
                    let ports = (local_port(&b)?, local_port(&m)?);
                    Ok((b, m, ports))
                });
                let (bulk, marked) = match socks {
                    Ok((b, m, ports)) => {
                        let _ = ready_tx.send(Ok(ports));
                        (b, m)
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while let Ok(length) = req_rx.recv() {
                    let r = marked_flood(&bulk, &marked, dst, one_in, length);
                    if res_tx.send(r).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| format!("spawn marked flood thread: {e}"))?;
        let (port, marked_port) = ready_rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|e| format!("marked flood thread did not start: {e}"))??;
        Ok(MarkedFlooder {
            port,
            marked_port,
            requests: Some(req_tx),
            results: res_rx,
            thread: Some(thread),
        })
    }

    /// Floods for `length` (bounded by a cap on `sendmmsg` calls) and returns what it measured.
    pub fn run(&self, length: Duration) -> Result<MarkedFlood, String> {
        let sent = self.requests.as_ref().map(|r| r.send(length));
        if !matches!(sent, Some(Ok(()))) {
            return self
                .results
                .try_recv()
                .unwrap_or_else(|_| Err("marked flood thread is gone".into()));
        }
        self.results
            .recv_timeout(length + Duration::from_secs(10))
            .map_err(|e| format!("marked flood thread did not report: {e}"))?
    }
}

impl Drop for MarkedFlooder {
    fn drop(&mut self) {
        self.requests.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `sendmmsg` of up to `n` (at most [`BATCH`]) copies of the prepared datagram; `Ok(sent)`,
/// 0 on a transient error (counted in `errors`).
fn send_batch(
    sock: &UdpSocket,
    msgs: &mut [libc::mmsghdr; BATCH],
    n: usize,
    errors: &mut u64,
) -> Result<u64, String> {
    // SAFETY: `msgs` points into the caller's iovecs, payload and address, all alive and
    // unmoved for the call; the kernel only reads them and writes `msg_len`.
    let rc = unsafe {
        libc::sendmmsg(
            sock.as_raw_fd(),
            msgs.as_mut_ptr(),
            n.min(BATCH) as libc::c_uint,
            libc::MSG_DONTWAIT as _,
        )
    };
    if rc >= 0 {
        return Ok(rc as u64);
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EAGAIN | libc::ENOBUFS | libc::ECONNREFUSED | libc::EINTR) => {
            *errors += 1;
            Ok(0)
        }
        _ => Err(format!("sendmmsg: {err}")),
    }
}

fn marked_flood(
    bulk: &UdpSocket,
    marked: &UdpSocket,
    dst: SocketAddrV4,
    one_in: u64,
    length: Duration,
) -> Result<MarkedFlood, String> {
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
    let mut w = MarkedFlood::default();
    let mut bulk_sent = 0_u64;
    let cpu0 = thread_cpu_ns()?;
    let t0 = Instant::now();
    for _ in 0..MAX_BATCHES {
        bulk_sent += send_batch(bulk, &mut msgs, BATCH, &mut w.flood.errors)?;
        // Marked datagrams owed so that marked / (bulk + marked) = 1 / one_in.
        let owed = (bulk_sent / (one_in - 1)).saturating_sub(w.marked);
        if owed > 0 {
            let n = usize::try_from(owed).unwrap_or(BATCH);
            w.marked += send_batch(marked, &mut msgs, n, &mut w.flood.errors)?;
        }
        if t0.elapsed() >= length {
            break;
        }
    }
    w.flood.wall_ns = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
    w.flood.cpu_ns = thread_cpu_ns()?.saturating_sub(cpu0);
    w.flood.packets = bulk_sent + w.marked;
    Ok(w)
}
