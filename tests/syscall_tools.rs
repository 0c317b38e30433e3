//! Integration tests of the syscall tools (syscount, futex_wait, proc_net_trace) against the
//! cpu_burn target (`tests/targets/cpu_burn.rs`): exact counts of a known number of getppid
//! calls and failed opens per process and per cgroup, the time of known sleeps, a mutex one
//! thread waits for a known number of times while the other holds it for a known time; and
//! the pings a traced command sends through a veth of the test's own namespaces.
//! Needs root (CI has it): without it every test fails, none is skipped.
use netprobe_lab::targets::{cpu_burn, Cgroup, Target};
use netprobe_lab::*;
use nix::sys::signal::Signal;
use serde_json::Value;
use std::time::Duration;

const SYSCOUNT: &str = env!("CARGO_BIN_EXE_syscount");
const FUTEX: &str = env!("CARGO_BIN_EXE_futex_wait");
const PROC_NET: &str = env!("CARGO_BIN_EXE_proc_net_trace");

/// One test at a time: the sleeps and lock holds are measured against wall time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A `name value` line of the target's output.
fn field(out: &str, name: &str) -> String {
    out.lines()
        .find_map(|l| Some(l.strip_prefix(name)?.trim().to_string()))
        .unwrap_or_else(|| panic!("no '{name}' in the target's output: {out}"))
}

/// Every interval's rows of `list`, for rows that `keep` accepts.
fn rows(out: &ToolOutput, list: &str, keep: impl Fn(&Value) -> bool) -> Vec<Value> {
    out.json()
        .iter()
        .filter(|v| v["type"] == "interval")
        .flat_map(|v| v[list].as_array().expect(list).clone())
        .filter(|r| keep(r))
        .collect()
}

/// Counts `got` where `want` happened: exact, less the runs the kernel skipped and said so
/// (since 6.14 syscall tracepoints are preemptible: a program preempted on a CPU makes the
/// next run there skip, counted).
fn assert_pair(out: &ToolOutput, got: (u64, u64), want: (u64, u64), what: &str) {
    let misses = missed_runs(out);
    let ok = |g: u64, w: u64| g <= w && g + misses >= w;
    assert!(
        ok(got.0, want.0) && ok(got.1, want.1),
        "{what}: {got:?}, expected {want:?} ({misses} runs missed)"
    );
}

/// A syscall's count and errors over all intervals (the rows `keep` accepts).
fn calls(out: &ToolOutput, syscall: &str, keep: impl Fn(&Value) -> bool) -> (u64, u64) {
    rows(out, "syscalls", |r| r["syscall"] == syscall && keep(r))
        .iter()
        .fold((0, 0), |(c, e), r| {
            (
                c + r["count"].as_u64().expect("count"),
                e + r["errors"].as_u64().expect("errors"),
            )
        })
}

const N: u64 = 1234;

#[test]
fn syscount_counts_each_call_of_one_process_exactly() {
    require_root();
    let _serial = serial();
    let mut target = Target::spawn(cpu_burn(), &["syscalls", &N.to_string()]);
    let pid = target.pid().to_string();
    let tool = ToolRun::start(SYSCOUNT, &["-p", &pid, "-L", "-i", "1", "--json"]);
    target.go();
    target.finish();
    let out = tool.stop(Signal::SIGINT);
    assert!(out.status.success(), "{:?}", out.stderr);
    let all = |_: &Value| true;
    assert_pair(&out, calls(&out, "getppid", all), (N, 0), "getppid");
    let (opens, failed) = calls(&out, "openat", all);
    assert_pair(
        &out,
        (opens, failed),
        (N, N),
        "every open of the missing file fails",
    );
    // 20 sleeps of 5 ms: each call takes at least that, and little more.
    let sleeps = rows(&out, "syscalls", |r| r["syscall"] == "clock_nanosleep");
    let count: u64 = sleeps.iter().map(|r| r["count"].as_u64().unwrap()).sum();
    let ns: u64 = sleeps.iter().map(|r| r["total_ns"].as_u64().unwrap()).sum();
    assert_pair(&out, (count, 0), (20, 0), "clock_nanosleep");
    assert!(
        (100_000_000..if vm_tier() { 250_000_000 } else { 150_000_000 }).contains(&ns),
        "20 sleeps of 5 ms took {ns} ns in the syscall"
    );
    // Only the one process was counted.
    let others = rows(&out, "syscalls", |r| r["comm"] != "cpu_burn");
    assert!(others.is_empty(), "other callers: {others:?}");
}

#[test]
fn syscount_per_cgroup_and_per_process_with_failures_only() {
    require_root();
    let _serial = serial();
    let group = Cgroup::new("syscount");
    let mut inside = Target::spawn(cpu_burn(), &["syscalls", &N.to_string()]);
    group.add(inside.pid());
    let mut outside = Target::spawn(cpu_burn(), &["syscalls", "100"]);
    let by_cgroup = ToolRun::start(SYSCOUNT, &["--per-cgroup", "-x", "-T", "0", "--json"]);
    let by_process = ToolRun::start(SYSCOUNT, &["-P", "-e", "ENOENT", "-T", "0", "--json"]);
    inside.go();
    outside.go();
    let (pin, pout) = (inside.pid() as u64, outside.pid() as u64);
    inside.finish();
    outside.finish();
    let cg = by_cgroup.stop(Signal::SIGINT);
    let pp = by_process.stop(Signal::SIGTERM);
    assert!(cg.status.success(), "{:?}", cg.stderr);
    assert!(pp.status.success(), "{:?}", pp.stderr);
    let name = group
        .dir
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let in_group = |r: &Value| r["cgroup"].as_str().is_some_and(|c| c.ends_with(&name));
    assert_pair(
        &cg,
        calls(&cg, "openat", in_group),
        (N, N),
        "openat in the group",
    );
    assert_eq!(
        calls(&cg, "getppid", in_group),
        (0, 0),
        "-x counts failures only"
    );
    let of = |pid: u64| move |r: &Value| r["pid"] == pid;
    assert_pair(&pp, calls(&pp, "openat", of(pin)), (N, N), "openat inside");
    assert_pair(
        &pp,
        calls(&pp, "openat", of(pout)),
        (100, 100),
        "openat outside",
    );
    let non_enoent = rows(&pp, "syscalls", |r| r["errors"] != r["count"]);
    assert!(
        non_enoent.is_empty(),
        "-e counts ENOENT failures only: {non_enoent:?}"
    );
}

#[test]
fn futex_wait_times_a_contended_mutex_from_the_waiting_stack() {
    require_root();
    let _serial = serial();
    const ROUNDS: u64 = 50;
    let mut target = Target::spawn(cpu_burn(), &["lock", &ROUNDS.to_string(), "10"]);
    let pid = target.pid().to_string();
    let tool = ToolRun::start(FUTEX, &["-p", &pid, "-i", "1", "--json"]);
    target.go();
    let told = target.finish();
    let out = tool.stop(Signal::SIGINT);
    assert!(out.status.success(), "{:?}", out.stderr);
    let addr = u64::from_str_radix(field(&told, "mutex_addr").trim_start_matches("0x"), 16)
        .expect("mutex_addr");
    let size: u64 = field(&told, "mutex_size").parse().expect("mutex_size");
    let waited_us: u64 = field(&told, "waited_us").parse().expect("waited_us");
    let on_mutex = rows(&out, "waits", |r| {
        let a = u64::from_str_radix(r["uaddr"].as_str().unwrap().trim_start_matches("0x"), 16);
        a.is_ok_and(|a| (addr..addr + size).contains(&a))
    });
    assert!(
        !on_mutex.is_empty(),
        "no wait on the mutex at 0x{addr:x}: {:?}",
        out.stdout
    );
    let waits: u64 = on_mutex.iter().map(|r| r["count"].as_u64().unwrap()).sum();
    let us: u64 = on_mutex
        .iter()
        .map(|r| r["total_us"].as_u64().unwrap())
        .sum();
    // Rounds the waiter slept in the lock (its voluntary switches: one that spun or was
    // scheduled too late to see the hold made no futex wait), and runs the kernel skipped
    // (since 6.14 syscall tracepoints are preemptible: a program preempted on a CPU makes it
    // skip the next one there, and counts that).
    let blocked: u64 = field(&told, "blocked_rounds")
        .parse()
        .expect("blocked_rounds");
    let misses = missed_runs(&out);
    assert!(
        waits <= ROUNDS + 5 && waits + misses >= blocked,
        "one wait per blocked round ({blocked} of {ROUNDS}; a spurious wakeup waits again, {misses} runs missed): {waits}"
    );
    // The time: all of the waiter's when every round slept in the lock; at most that else.
    let tolerance = if vm_tier() { 0.05 } else { 0.02 };
    // A round that did not sleep may have spent its time descheduled rather than in a
    // futex wait: then only each slept round's share of the hold is certain.
    // Under the VM tier's emulated CPUs the time before the futex call (the mutex spins
    // first) and after its return grows to ~1 ms a round (seen: 582 ms of 618 ms on 6.1 with
    // two guests on the host): there each slept round is certain for 8 ms of its 10 ms hold.
    let low = if blocked == ROUNDS && misses == 0 && !vm_tier() {
        waited_us as f64 * (1.0 - tolerance)
    } else if vm_tier() {
        blocked.saturating_sub(misses) as f64 * 8_000.0
    } else {
        blocked.saturating_sub(misses) as f64 * 5_000.0
    };
    assert!(
        (us as f64) <= waited_us as f64 * (1.0 + tolerance) && us as f64 >= low,
        "waited {us} us on the mutex, the target says {waited_us} us ({blocked} rounds slept, {misses} runs missed)"
    );
    let stack: Vec<&str> = on_mutex[0]["stack"]
        .as_array()
        .expect("stack")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        stack.contains(&"cpu_burn::lock_waiter"),
        "the waiting stack: {stack:?}"
    );
    let hist = &on_mutex[0]["wait"];
    assert_eq!(hist["unit"], "us");
    assert!(
        hist["p50"].as_u64().unwrap() >= 4096,
        "waits of about 10 ms: {hist}"
    );
}

#[test]
fn bad_input_is_one_line_and_exit_two() {
    require_root();
    let _serial = serial();
    let cases: &[(&str, &[&str], &str)] = &[
        (SYSCOUNT, &["-p", "999999999"], "no such process"),
        (SYSCOUNT, &["--syscall", "no_such_call"], "no such syscall"),
        (SYSCOUNT, &["-e", "EWHAT"], "not an errno"),
        (SYSCOUNT, &["--cgroup", "/nonexistent/cg"], "--cgroup"),
        (FUTEX, &["-p", "999999999"], "no such process"),
        (FUTEX, &["--stack-storage-size", "0"], "at least 1"),
        (PROC_NET, &[], "give a command"),
        (PROC_NET, &["no-such-command-here"], "command not found"),
        (PROC_NET, &["-p", "999999999"], "no such process"),
    ];
    assert_usage_errors(cases);
}

#[test]
fn the_tools_leave_no_program_behind() {
    require_root();
    let _serial = serial();
    const PROGS: &[&str] = &[
        "sc_enter_btf",
        "sc_exit_btf",
        "sc_enter_tp",
        "sc_exit_tp",
        "pt_enter_btf",
        "pt_dev_queue",
    ];
    let sleeper = Target::spawn(cpu_burn(), &["sleep", "1", "1"]);
    let pid = sleeper.pid().to_string();
    for (tool, args, sig) in [
        (SYSCOUNT, vec!["--duration", "30"], Signal::SIGINT),
        (FUTEX, vec!["--duration", "30"], Signal::SIGTERM),
        (
            PROC_NET,
            vec!["-p", &pid, "--duration", "30"],
            Signal::SIGINT,
        ),
    ] {
        assert_stop_unloads(tool, &args, sig, PROGS);
    }
}

#[test]
fn proc_net_trace_names_the_command_that_sent_each_ping() {
    require_root();
    let _serial = serial();
    let lab = Lab::new("pnt");
    lab.resolve_neighbour();
    let dst = lab.b_ip.to_string();
    let run = ToolRun::start_netns(
        &lab.a,
        PROC_NET,
        &["--json", "ping", "-c", "3", "-i", "0.2", "-W", "1", &dst],
    );
    let out = run.wait(Duration::from_secs(30));
    assert!(out.status.success(), "{:?}", out.stderr);
    let events = out.json();
    let of = |kind: &str| -> Vec<&Value> {
        events
            .iter()
            .filter(|e| e["type"] == "event" && e["event"] == kind)
            .collect()
    };
    let execs: Vec<&Value> = of("syscall")
        .into_iter()
        .filter(|e| e["syscall"] == "execve")
        .collect();
    assert_eq!(
        execs.len(),
        1,
        "the command's exec is its first traced call"
    );
    let pid = execs[0]["pid"].as_u64().expect("pid");
    let requests: Vec<&Value> = of("net_dev_queue")
        .into_iter()
        .filter(|e| e["dev"] == "va" && e["icmp"][0] == 8)
        .collect();
    assert_eq!(
        requests.len(),
        3,
        "three echo requests queued on va: {requests:#?}"
    );
    for r in &requests {
        assert_eq!(r["pid"], pid, "queued in ping's context: {r}");
        assert_eq!(r["comm"], "ping");
        assert_eq!(r["flow"]["src_ip"], lab.a_ip.to_string());
        assert_eq!(r["flow"]["dst_ip"], dst);
        assert_eq!(r["flow"]["l4_protocol"], "icmp");
    }
    let seqs: Vec<u64> = requests
        .iter()
        .map(|r| r["icmp"][2].as_u64().unwrap())
        .collect();
    // iputils counts from 1, busybox (the VM tier's) from 0.
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1) && seqs[0] <= 1,
        "in order, by sequence number: {seqs:?}"
    );
    let xmits = of("net_dev_xmit")
        .into_iter()
        .filter(|e| e["dev"] == "va" && e["icmp"][0] == 8 && e["ret"] == 0)
        .count();
    assert_eq!(xmits, 3, "the driver took each request");
    let sends = of("syscall")
        .into_iter()
        .filter(|e| {
            e["pid"] == pid
                && ["sendto", "sendmsg"].contains(&e["syscall"].as_str().unwrap_or(""))
                && e["ret"].as_i64() > Some(0)
        })
        .count();
    assert_eq!(sends, 3, "one send per request");
    let summary = events
        .iter()
        .find(|e| e["type"] == "summary")
        .expect("summary");
    assert_eq!(summary["lost_events"], 0);
}
