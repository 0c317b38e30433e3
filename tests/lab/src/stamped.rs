//! Numbered UDP datagrams timed at both ends, as ground truth for latency tools: the sender
//! brackets each `sendto()` with `CLOCK_MONOTONIC` reads, the receiver takes the kernel's
//! receive timestamp (`SO_TIMESTAMPNS`, stamped when the packet entered the receiving
//! device's stack) and converts it to `CLOCK_MONOTONIC`, the clock of `bpf_ktime_get_ns`.

use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags};
use nix::time::{clock_gettime, ClockId};
use std::io::IoSliceMut;
use std::net::{SocketAddrV4, UdpSocket};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// `CLOCK_MONOTONIC` now, in nanoseconds (the clock BPF programs' timestamps use).
pub fn monotonic_ns() -> u64 {
    clock_ns(ClockId::CLOCK_MONOTONIC)
}

fn clock_ns(clock: ClockId) -> u64 {
    let t = clock_gettime(clock).expect("clock_gettime");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// `CLOCK_REALTIME - CLOCK_MONOTONIC` in nanoseconds, from the tightest of a few brackets.
fn realtime_offset_ns() -> i128 {
    (0..16)
        .map(|_| {
            let m0 = clock_ns(ClockId::CLOCK_MONOTONIC);
            let r = clock_ns(ClockId::CLOCK_REALTIME);
            let m1 = clock_ns(ClockId::CLOCK_MONOTONIC);
            (m1 - m0, i128::from(r) - i128::from(m0 + (m1 - m0) / 2))
        })
        .min_by_key(|&(width, _)| width)
        .map(|(_, offset)| offset)
        .expect("16 samples")
}

/// One `sendto()` of [`send_numbered`], as the sender's clock saw it.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    /// `CLOCK_MONOTONIC` ns just before the call.
    pub before_ns: u64,
    /// `CLOCK_MONOTONIC` ns just after it returned.
    pub after_ns: u64,
}

/// Sends `count` datagrams of `len` bytes (at least 4) from an ephemeral port in `ns` to
/// `dst`, back to back; datagram `i` carries `i` as a little-endian u32 in its first bytes.
/// Returns each send's timing, in order; panics if a send fails.
pub fn send_numbered(ns: &str, dst: SocketAddrV4, count: u32, len: usize) -> Vec<Sent> {
    assert!(len >= 4, "a numbered datagram needs 4 bytes");
    crate::in_netns(ns, move || {
        let sock = UdpSocket::bind("0.0.0.0:0").expect("bind UDP");
        let mut payload = vec![0x5a_u8; len];
        (0..count)
            .map(|i| {
                payload[..4].copy_from_slice(&i.to_le_bytes());
                let before_ns = monotonic_ns();
                sock.send_to(&payload, dst)
                    .unwrap_or_else(|e| panic!("send to {dst}: {e}"));
                Sent {
                    before_ns,
                    after_ns: monotonic_ns(),
                }
            })
            .collect()
    })
}

/// A datagram that [`StampedReceiver`] got.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    /// The number [`send_numbered`] put in it.
    pub seq: u32,
    /// The kernel's receive timestamp, as `CLOCK_MONOTONIC` ns.
    pub kernel_ns: u64,
}

/// A UDP socket in a namespace that keeps each datagram's number and kernel receive time.
pub struct StampedReceiver {
    handle: JoinHandle<Vec<Arrival>>,
}

impl StampedReceiver {
    /// Binds `local` in `ns` with `SO_TIMESTAMPNS` and receives until it has `count`
    /// datagrams or `timeout` passed. Returns once the socket is bound and the kernel's
    /// receive timestamps are on.
    pub fn start(ns: &str, local: SocketAddrV4, count: usize, timeout: Duration) -> Self {
        let ns = ns.to_owned();
        let (ready_tx, ready_rx) = mpsc::channel();
        let handle = std::thread::spawn(move || {
            crate::in_netns(&ns, move || {
                let sock = UdpSocket::bind(local).unwrap_or_else(|e| panic!("bind {local}: {e}"));
                setsockopt(&sock, sockopt::ReceiveTimestampns, &true)
                    .unwrap_or_else(|e| panic!("SO_TIMESTAMPNS: {e}"));
                sock.set_read_timeout(Some(Duration::from_millis(100)))
                    .expect("SO_RCVTIMEO");
                // Enabling timestamps flips a static key from a work item: give it a moment.
                std::thread::sleep(Duration::from_millis(50));
                let _ = ready_tx.send(());
                let deadline = Instant::now() + timeout;
                let mut stamped = Vec::new();
                let mut buf = [0u8; 2048];
                while stamped.len() < count && Instant::now() < deadline {
                    let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
                    let mut iov = [IoSliceMut::new(&mut buf)];
                    let Ok(msg) =
                        recvmsg::<()>(sock_fd(&sock), &mut iov, Some(&mut cmsg), MsgFlags::empty())
                    else {
                        continue;
                    };
                    let len = msg.bytes;
                    let stamp = msg.cmsgs().ok().and_then(|mut c| {
                        c.find_map(|m| match m {
                            ControlMessageOwned::ScmTimestampns(ts) => Some(
                                i128::from(ts.tv_sec()) * 1_000_000_000 + i128::from(ts.tv_nsec()),
                            ),
                            _ => None,
                        })
                    });
                    let stamp = stamp.expect("a datagram without SCM_TIMESTAMPNS");
                    assert!(len >= 4, "a datagram of {len} bytes is not numbered");
                    stamped.push((u32::from_le_bytes(buf[..4].try_into().unwrap()), stamp));
                }
                let offset = realtime_offset_ns();
                stamped
                    .into_iter()
                    .map(|(seq, real)| Arrival {
                        seq,
                        kernel_ns: u64::try_from(real - offset).expect("a stamp after boot"),
                    })
                    .collect()
            })
        });
        let _ = ready_rx.recv_timeout(Duration::from_secs(10));
        StampedReceiver { handle }
    }

    /// The datagrams received, in arrival order.
    pub fn join(self) -> Vec<Arrival> {
        self.handle
            .join()
            .unwrap_or_else(|payload| std::panic::resume_unwind(payload))
    }
}

fn sock_fd(sock: &UdpSocket) -> std::os::fd::RawFd {
    use std::os::fd::AsRawFd;
    sock.as_raw_fd()
}
