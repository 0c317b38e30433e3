//! A target of the cpu tools' tests, built by the tests with frame pointers and full debug
//! information: `cpu_burn burn SECS` spins for SECS seconds in `hot_three` and `hot_one`,
//! which share the work 3:1, and prints its CPU time in ms; `cpu_burn sleep N MS` sleeps N times MS milliseconds in
//! `sleep_loop` and prints the time it slept in microseconds (`cpu_burn naps N US`: N times US
//! microseconds); `cpu_burn calls N T` calls
//! `counted_call` N times and `timed_call` (2 ms) T times; `cpu_burn lock N MS` makes a
//! thread wait N times for a mutex the main thread holds for MS ms and prints the time it
//! waited in microseconds, the rounds it slept in the lock (a futex wait that blocked) and the
//! mutex's address; `cpu_burn syscalls N` calls getppid N
//! times, fails to open a missing file N times and sleeps 20 × 5 ms; `cpu_burn pingpong SECS [CPU]`
//! passes a byte back and forth between two threads over pipes for SECS seconds (every pass a
//! context switch; both on CPU if given) and prints the round trips; `cpu_burn hits N` times N calls of
//! `counted_call` and prints the ns per call; `cpu_burn sites N` sleeps N times 2 ms in
//! `nap_short` and 4 ms in `nap_long`, alternately (one thread blocking at two call sites
//! of the same depth), and prints each one's time in microseconds. Each waits for a line on stdin first, so a tool
//! can attach to it.
use std::hint::black_box;
use std::io::BufRead;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[inline(never)]
fn spin(n: u64) -> u64 {
    let mut x = 0u64;
    for i in 0..n {
        x = black_box(x.wrapping_mul(31).wrapping_add(i));
    }
    x
}

#[inline(never)]
fn hot_three(n: u64) -> u64 {
    // black_box after the call: no tail call, so hot_three keeps its frame.
    black_box(spin(3 * n))
}

#[inline(never)]
fn hot_one(n: u64) -> u64 {
    black_box(spin(n))
}

#[inline(never)]
fn burn(secs: f64) {
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let mut acc = 0u64;
    while Instant::now() < end {
        acc = acc.wrapping_add(hot_three(200_000)).wrapping_add(hot_one(200_000));
    }
    println!("burnt {acc}");
    println!("burn_us {}", start.elapsed().as_micros());
    println!("cpu_ms {}", cpu_ms());
}

/// This process's user + system time, ms, from /proc/self/stat (clock ticks of 10 ms).
fn cpu_ms() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let after_comm = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: 11 and 12 after the state.
    let ticks: u64 = fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    ticks * 10
}

#[inline(never)]
fn sleep_loop(n: u32, each: Duration) -> Duration {
    let mut slept = Duration::ZERO;
    for _ in 0..n {
        let t = Instant::now();
        std::thread::sleep(each);
        slept += t.elapsed();
    }
    slept
}

#[inline(never)]
fn counted_call(i: u64) -> u64 {
    black_box(i.wrapping_mul(7))
}

#[inline(never)]
fn timed_call(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
    black_box(ms);
}

/// N calls of `counted_call`, then T calls of `timed_call` (2 ms each).
#[inline(never)]
fn calls(n: u64, t: u64) {
    let mut acc = 0u64;
    for i in 0..n {
        acc = acc.wrapping_add(counted_call(i));
    }
    for _ in 0..t {
        timed_call(2);
    }
    println!("called {n} {t} {acc}");
}

/// This thread's voluntary context switches (`/proc/thread-self/status`).
fn voluntary_switches() -> u64 {
    std::fs::read_to_string("/proc/thread-self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Waits `n` times for `m` while the other thread holds it (`round` 3r+1: held, 3r+2: the
/// waiter is at the lock, 3r+3: it got it).
#[inline(never)]
fn lock_waiter(m: &Mutex<()>, round: &AtomicU32, n: u32) -> (Duration, u32) {
    let mut waited = Duration::ZERO;
    let mut blocked = 0;
    for r in 0..n {
        while round.load(Ordering::Acquire) != 3 * r + 1 {
            std::thread::yield_now();
        }
        round.store(3 * r + 2, Ordering::Release);
        let slept_before = voluntary_switches();
        let t = Instant::now();
        let g = m.lock().expect("lock");
        let w = t.elapsed();
        waited += w;
        // Slept in the lock (a futex wait that blocked), not got it after spinning or after
        // being scheduled too late to see the hold.
        if voluntary_switches() > slept_before {
            blocked += 1;
        }
        drop(g);
        round.store(3 * r + 3, Ordering::Release);
    }
    (waited, blocked)
}

#[inline(never)]
fn lock_holder(m: &Mutex<()>, round: &AtomicU32, n: u32, ms: u64) {
    for r in 0..n {
        let g = m.lock().expect("lock");
        round.store(3 * r + 1, Ordering::Release);
        // Held until the waiter is at the lock: each round it waits the whole hold.
        while round.load(Ordering::Acquire) != 3 * r + 2 {
            std::thread::yield_now();
        }
        std::thread::sleep(Duration::from_millis(ms));
        drop(g);
        while round.load(Ordering::Acquire) != 3 * r + 3 {
            std::thread::yield_now();
        }
    }
}

fn lock(n: u32, ms: u64) {
    let m = Mutex::new(());
    let round = AtomicU32::new(0);
    let (waited, blocked) = std::thread::scope(|s| {
        let waiter = s.spawn(|| lock_waiter(&m, &round, n));
        lock_holder(&m, &round, n, ms);
        waiter.join().expect("waiter")
    });
    println!("mutex_addr 0x{:x}", &m as *const Mutex<()> as usize);
    println!("mutex_size {}", std::mem::size_of::<Mutex<()>>());
    println!("waited_us {}", waited.as_micros());
    println!("blocked_rounds {blocked}");
}

fn syscalls(n: u32) {
    let mut acc = 0u32;
    for _ in 0..n {
        acc = acc.wrapping_add(std::os::unix::process::parent_id());
    }
    for _ in 0..n {
        let _ = black_box(std::fs::File::open("/nonexistent/netprobe-test"));
    }
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(5));
    }
    println!("syscalls {n} {acc}");
}

extern "C" {
    fn sched_setaffinity(pid: i32, size: usize, mask: *const u64) -> i32;
}

/// Keeps this thread (and the threads it spawns) on `cpu`.
fn pin_to(cpu: u32) {
    let mask: u64 = 1 << cpu;
    // SAFETY: a valid mask of the size given; pid 0 is the calling thread.
    let rc = unsafe { sched_setaffinity(0, std::mem::size_of::<u64>(), &mask) };
    assert_eq!(rc, 0, "sched_setaffinity to CPU {cpu}");
}

/// Two threads pass a byte over two pipes until `secs` have passed: the round trips.
fn pingpong(secs: f64) -> u64 {
    use std::io::{Read, Write};
    let (mut a_rx, mut b_tx) = std::io::pipe().expect("pipe");
    let (mut b_rx, mut a_tx) = std::io::pipe().expect("pipe");
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let echo = std::thread::spawn(move || {
        let mut b = [0u8; 1];
        while a_rx.read_exact(&mut b).is_ok() && b[0] == 1 {
            a_tx.write_all(&b).expect("echo");
        }
    });
    let mut trips = 0u64;
    let mut b = [1u8; 1];
    while Instant::now() < end {
        b_tx.write_all(&[1]).expect("ping");
        b_rx.read_exact(&mut b).expect("pong");
        trips += 1;
    }
    b_tx.write_all(&[0]).expect("stop");
    echo.join().expect("echo thread");
    trips
}

#[inline(never)]
fn nap_short() -> Duration {
    let t = Instant::now();
    std::thread::sleep(Duration::from_millis(2));
    black_box(t.elapsed())
}

#[inline(never)]
fn nap_long() -> Duration {
    let t = Instant::now();
    std::thread::sleep(Duration::from_millis(4));
    black_box(t.elapsed())
}

/// `n` rounds of `nap_short` then `nap_long`: the time slept in each.
fn sites(n: u32) -> (Duration, Duration) {
    let (mut short, mut long) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..n {
        short += nap_short();
        long += nap_long();
    }
    (short, long)
}

/// `n` calls of `counted_call`: ns per call.
fn hits(n: u64) -> f64 {
    let t = Instant::now();
    let mut acc = 0u64;
    for i in 0..n {
        acc = acc.wrapping_add(counted_call(i));
    }
    black_box(acc);
    t.elapsed().as_nanos() as f64 / n as f64
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    match args.get(1).map(String::as_str) {
        Some("burn") => burn(args[2].parse().expect("SECS")),
        Some("calls") => calls(args[2].parse().expect("N"), args[3].parse().expect("T")),
        Some("sleep") => {
            let ms = Duration::from_millis(args[3].parse().expect("MS"));
            let slept = sleep_loop(args[2].parse().expect("N"), ms);
            println!("slept_us {}", slept.as_micros());
        }
        Some("naps") => {
            let us = Duration::from_micros(args[3].parse().expect("US"));
            let slept = sleep_loop(args[2].parse().expect("N"), us);
            println!("slept_us {}", slept.as_micros());
        }
        Some("lock") => lock(args[2].parse().expect("N"), args[3].parse().expect("MS")),
        Some("syscalls") => syscalls(args[2].parse().expect("N")),
        Some("pingpong") => {
            if let Some(cpu) = args.get(3) {
                pin_to(cpu.parse().expect("CPU"));
            }
            println!("round_trips {}", pingpong(args[2].parse().expect("SECS")));
        }
        Some("hits") => println!("ns_per_call {:.1}", hits(args[2].parse().expect("N"))),
        Some("sites") => {
            let (short, long) = sites(args[2].parse().expect("N"));
            println!("short_us {}\nlong_us {}", short.as_micros(), long.as_micros());
        }
        _ => {
            eprintln!("usage: cpu_burn burn SECS | sleep N MS | naps N US | calls N T | lock N MS | syscalls N | pingpong SECS [CPU] | hits N | sites N");
            std::process::exit(2);
        }
    }
}
