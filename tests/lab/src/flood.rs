//! A UDP flood from one thread inside a network namespace, measured by the CPU time of the
//! sending thread (`CLOCK_THREAD_CPUTIME_ID`). Veth delivery runs the peer's receive softirq
//! in the sender's context, so the whole receive (and drop) path is charged to that thread.
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Datagrams per `sendmmsg` call.
pub const BATCH: usize = 64;
/// UDP payload bytes.
pub const PAYLOAD: usize = 16;
/// Hard cap on `sendmmsg` calls per flood, far above what a few seconds allow.
const MAX_BATCHES: u64 = 10_000_000;

/// One measured flood.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flood {
    /// Datagrams sent.
    pub packets: u64,
    /// `sendmmsg` calls that failed with a transient error.
    pub errors: u64,
    /// CPU time of the sending thread.
    pub cpu_ns: u64,
    /// Wall-clock length.
    pub wall_ns: u64,
}

impl Flood {
    /// Datagrams per CPU-second of the sending thread.
    pub fn pps_cpu(&self) -> f64 {
        self.packets as f64 * 1e9 / self.cpu_ns.max(1) as f64
    }

    /// Datagrams per wall-clock second.
    pub fn pps_wall(&self) -> f64 {
        self.packets as f64 * 1e9 / self.wall_ns.max(1) as f64
    }
}

fn thread_cpu_ns() -> Result<u64, String> {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map_err(|e| format!("clock_gettime(CLOCK_THREAD_CPUTIME_ID): {e}"))?;
    Ok(u64::try_from(ts.tv_sec()).unwrap_or(0) * 1_000_000_000
        + u64::try_from(ts.tv_nsec()).unwrap_or(0))
}

/// Sends `sendmmsg` batches on `sock` for `length`, measuring the sending thread's CPU time.
fn flood(sock: &UdpSocket, dst: SocketAddrV4, length: Duration) -> Result<Flood, String> {
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
    let mut w = Flood::default();
    let cpu0 = thread_cpu_ns()?;
    let t0 = Instant::now();
    for _ in 0..MAX_BATCHES {
        // SAFETY: `msgs` points into `iov`, `payload` and `addr`, all alive and unmoved until
        // this function returns; the kernel only reads them and writes `msg_len`.
        let n = unsafe {
            libc::sendmmsg(
                sock.as_raw_fd(),
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT as _,
            )
        };
        if n >= 0 {
            w.packets += n as u64;
        } else {
            let err = std::io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EAGAIN | libc::ENOBUFS | libc::ECONNREFUSED | libc::EINTR) => {
                    w.errors += 1;
                }
                _ => return Err(format!("sendmmsg to {dst}: {err}")),
            }
        }
        if t0.elapsed() >= length {
            break;
        }
    }
    w.wall_ns = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
    w.cpu_ns = thread_cpu_ns()?.saturating_sub(cpu0);
    Ok(w)
}

/// A long-lived thread inside a network namespace that floods UDP datagrams at `dst` on
/// request. Dropping it closes the request channel and joins the thread.
pub struct Flooder {
    requests: Option<mpsc::Sender<Duration>>,
    results: mpsc::Receiver<Result<Flood, String>>,
    thread: Option<JoinHandle<()>>,
}

impl Flooder {
    /// Starts the thread in namespace `ns`, sending from `src`.
    pub fn start(ns: &str, src: Ipv4Addr, dst: SocketAddrV4) -> Result<Flooder, String> {
        let (req_tx, req_rx) = mpsc::channel::<Duration>();
        let (res_tx, res_rx) = mpsc::channel();
        let path = format!("/run/netns/{ns}");
        let thread = thread::Builder::new()
            .name("flood".into())
            .spawn(move || {
                let sock = File::open(&path)
                    .map_err(|e| format!("open {path}: {e}"))
                    .and_then(|f| {
                        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
                            .map_err(|e| format!("setns({path}): {e}"))
                    })
                    .and_then(|()| {
                        UdpSocket::bind(SocketAddrV4::new(src, 0))
                            .map_err(|e| format!("bind UDP {src}: {e}"))
                    });
                let sock = match sock {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = res_tx.send(Err(e));
                        return;
                    }
                };
                while let Ok(length) = req_rx.recv() {
                    if res_tx.send(flood(&sock, dst, length)).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| format!("spawn flood thread: {e}"))?;
        Ok(Flooder {
            requests: Some(req_tx),
            results: res_rx,
            thread: Some(thread),
        })
    }

    /// Floods for `length` (bounded by a cap on `sendmmsg` calls) and returns what it measured.
    pub fn run(&self, length: Duration) -> Result<Flood, String> {
        let sent = self.requests.as_ref().map(|r| r.send(length));
        if !matches!(sent, Some(Ok(()))) {
            // The thread ended; it may have said why.
            return self
                .results
                .try_recv()
                .unwrap_or_else(|_| Err("flood thread is gone".into()));
        }
        self.results
            .recv_timeout(length + Duration::from_secs(10))
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
