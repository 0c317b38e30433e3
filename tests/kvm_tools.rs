//! Integration tests of kvm_irqfd_stats_summary: a KVM VM (no guest runs) whose interrupts the
//! test injects a known number of times along each of KVM's paths — an MSI irqfd written by a
//! thread named like a vhost worker, an IOAPIC irqfd (KVM's kworker), KVM_IRQ_LINE and
//! KVM_SIGNAL_MSI — asserted per path, GSI, vector and VM through `--json`.
//! Needs root and /dev/kvm (CI has both): without them every test fails, none is skipped.
use netprobe_lab::kvm::{KvmIrqLab, MsiTrace, IOAPIC_GSI, IOCTL_MSI_VECTOR, MSI_VECTOR};
use netprobe_lab::*;
use nix::sys::signal::Signal;
use std::collections::BTreeMap;
use std::time::Duration;

const TOOL: &str = env!("CARGO_BIN_EXE_kvm_irqfd_stats_summary");
const WAIT: Duration = Duration::from_secs(10);

/// The tests inject into VMs of this one process, and each counts what its process injects:
/// one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Counts summed over every interval, by (path, gsi, vector, category, pid).
/// Has the kernel BTF for KVM (built in: vmlinux BTF, or a kvm module with BTF of its own,
/// 5.11+)? Then the tracepoints attach as tp_btf, and the tool can name the VM of KVM's
/// inject kworker.
fn kworker_vm_known() -> bool {
    use std::path::Path;
    Path::new("/sys/kernel/btf/kvm").exists() || !Path::new("/sys/module/kvm/initstate").exists()
}

type Key = (String, Option<u64>, Option<u64>, String, u64);

fn totals(out: &ToolOutput) -> BTreeMap<Key, u64> {
    let mut t = BTreeMap::new();
    for v in out.json().iter().filter(|v| v["type"] == "interval") {
        for e in v["entries"].as_array().expect("entries") {
            let key = (
                e["path"].as_str().unwrap().to_string(),
                e["gsi"].as_u64(),
                e["vector"].as_u64(),
                e["category"].as_str().unwrap().to_string(),
                e["pid"].as_u64().unwrap(),
            );
            *t.entry(key).or_default() += e["count"].as_u64().unwrap();
        }
    }
    t
}

/// Delivery counters summed over every interval, by (pid, vector): (accepted, injected).
fn delivered(out: &ToolOutput) -> BTreeMap<(u64, u64), (u64, u64)> {
    let mut t = BTreeMap::new();
    for v in out.json().iter().filter(|v| v["type"] == "interval") {
        for d in v["deliveries"].as_array().expect("deliveries") {
            let key = (d["pid"].as_u64().unwrap(), d["vector"].as_u64().unwrap());
            let e: &mut (u64, u64) = t.entry(key).or_default();
            e.0 += d["accepted"].as_u64().unwrap();
            e.1 += d["injected"].as_u64().unwrap();
        }
    }
    t
}

/// vCPU wakeups of VM `pid` over every interval: (wakeups, after sleep, max halted µs).
fn woken(out: &ToolOutput, pid: u64) -> (u64, u64, f64) {
    let mut w = (0, 0, 0.0_f64);
    for v in out.json().iter().filter(|v| v["type"] == "interval") {
        for e in v["wakeups"].as_array().expect("wakeups") {
            if e["pid"].as_u64() == Some(pid) {
                w.0 += e["wakeups"].as_u64().unwrap();
                w.1 += e["waited"].as_u64().unwrap();
                w.2 = w.2.max(e["max_wait_us"].as_f64().unwrap());
            }
        }
    }
    w
}

/// Does this kernel's `kvm_inj_virq` tell reinjections apart (6.3+)? Elsewhere the few that
/// happen (an exit during a delivery: the guest's first touch of a page, a host interrupt)
/// count as injections.
fn reinjections_told() -> bool {
    std::fs::read_to_string("/sys/kernel/tracing/events/kvm/kvm_inj_virq/format")
        .is_ok_and(|f| f.contains(" reinjected;"))
}

/// Does KVM's backend trace `kvm_inj_virq`? SVM and VMX do; PVM (this development kernel's)
/// injects without it.
fn injection_traced() -> bool {
    ["kvm_amd", "kvm_intel"]
        .iter()
        .any(|m| std::path::Path::new(&format!("/sys/module/{m}")).exists())
}

/// A guest that runs: each interrupt wakes its halted vCPU, is accepted by its LAPIC, injected
/// and taken by the guest's handler (which reports it to the test). The test waits for each
/// before the next and lets the guest halt again in between, so every one wakes it.
#[test]
fn delivery_to_a_running_guest_is_counted_per_vector() {
    require_root();
    let _serial = serial();
    let me = u64::from(std::process::id());
    let vm_tier = std::env::var("NETPROBE_TEST_TIER").as_deref() == Ok("vm");
    assert!(
        !vm_tier || injection_traced(),
        "the VM tier runs kvm_amd (nested SVM)"
    );
    let settle = Duration::from_millis(if vm_tier { 200 } else { 30 });
    let mut vm = KvmIrqLab::create().unwrap_or_else(|e| panic!("{e}"));
    vm.run_guest().unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(settle);
    let pid = me.to_string();
    let tool = ToolRun::start(TOOL, &["--pid", &pid, "-i", "0.3", "--json"]);
    let text = ToolRun::start(TOOL, &["--pid", &pid, "-i", "0.3"]);
    const IRQFD: u64 = 6;
    const IOCTL: u64 = 4;
    let vm = quiet(move || {
        let guest = |vm: &KvmIrqLab, vector, n| {
            vm.guest()
                .expect("the guest runs")
                .wait_taken(vector, n, WAIT)
                .unwrap_or_else(|e| panic!("{e}"));
            std::thread::sleep(settle);
        };
        for i in 1..=IRQFD {
            vm.signal_msi_irqfd().unwrap_or_else(|e| panic!("{e}"));
            guest(&vm, MSI_VECTOR, i);
        }
        for i in 1..=IOCTL {
            vm.signal_msi().unwrap_or_else(|e| panic!("{e}"));
            guest(&vm, IOCTL_MSI_VECTOR, i);
        }
        vm
    });
    let out = tool.stop(Signal::SIGINT);
    let mut vm = vm;
    vm.stop_guest().unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "{:?}", out.stderr);
    let mut got = delivered(&out);
    if injection_traced() && !reinjections_told() {
        // The guest touched its pages before it waited: at most a stray reinjection or two.
        for ((_, vector), (accepted, injected)) in got.iter_mut() {
            assert!(
                (*accepted..=*accepted + 2).contains(injected),
                "vector {vector}: {injected} injections of {accepted}: {:?}",
                out.stdout
            );
            *injected = *accepted;
        }
    }
    let injected = |n: u64| if injection_traced() { n } else { 0 };
    let want = BTreeMap::from([
        ((me, u64::from(MSI_VECTOR)), (IRQFD, injected(IRQFD))),
        ((me, u64::from(IOCTL_MSI_VECTOR)), (IOCTL, injected(IOCTL))),
    ]);
    assert_eq!(
        got, want,
        "(accepted, injected) by (VM, vector): {:?}",
        out.stdout
    );
    let (wakeups, waited, max_us) = woken(&out, me);
    assert_eq!(
        wakeups,
        IRQFD + IOCTL,
        "one wakeup per interrupt: {:?}",
        out.stdout
    );
    assert!(
        (1..=wakeups).contains(&waited),
        "{waited} of {wakeups} after sleeping"
    );
    // Each sleep lasted at least the pause before the interrupt that ended it.
    assert!(
        max_us >= settle.as_micros() as f64 * 0.9,
        "longest halt {max_us} us, paused {settle:?}"
    );
    let text = text.stop(Signal::SIGINT);
    assert!(text.status.success(), "{:?}", text.stderr);
    let table = text
        .stdout
        .iter()
        .skip_while(|l| !l.starts_with("delivery to vCPUs:"))
        .collect::<Vec<_>>();
    assert!(
        table
            .iter()
            .any(|l| l.contains(&format!("0x{MSI_VECTOR:02x}"))),
        "{:?}",
        text.stdout
    );
    assert!(
        text.stdout
            .iter()
            .any(|l| l.starts_with("halted vCPUs woken:")),
        "{:?}",
        text.stdout
    );
}

#[test]
fn every_injection_path_is_counted_once_per_interrupt() {
    let want = if kworker_vm_known() {
        "tp_btf/kvm_set_irq"
    } else {
        "tracepoint/kvm/kvm_set_irq"
    };
    count_every_path(None, want);
}

/// The same with the classic tracepoints (their kvm records read at tracefs' offsets).
#[test]
fn the_classic_tracepoint_plan_counts_the_same() {
    count_every_path(Some("tp_btf"), "tracepoint/kvm/kvm_set_irq");
}

/// The fentry and the kprobe plans (the functions the tracepoints sit in), forced by turning
/// the tracepoints off. Where the kernel can attach them (the VM tier's 5.10, 6.1 and 6.12;
/// fentry on the kvm module needs its BTF, so 5.10 goes on to kprobes) they must count what
/// the tracepoints count; elsewhere (this development kernel has neither; 7.2 has no
/// kvm_set_msi_irq) the tool must say which point it cannot observe.
#[test]
fn the_fentry_and_kprobe_plans_count_the_same() {
    require_root();
    let has_msi_fn = std::fs::read_to_string("/proc/kallsyms")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(2) == Some("kvm_set_msi_irq"));
    let vm_tier = std::env::var("NETPROBE_TEST_TIER").as_deref() == Ok("vm");
    for (disable, kind) in [
        ("tp_btf,tracepoint", "fentry"),
        ("tp_btf,tracepoint,fentry", "kprobe"),
    ] {
        if vm_tier && has_msi_fn {
            // fentry on a module's function needs its BTF: without it the plan goes on to kprobe.
            let chosen = if kworker_vm_known() { kind } else { "kprobe" };
            count_every_path(Some(disable), &format!("{chosen}/kvm_set_irq"));
            continue;
        }
        let env = format!("NETPROBE_DISABLE={disable}");
        let out = run_tool("env", &[&env, TOOL, "--duration", "0.2"]);
        assert_eq!(out.status.code(), Some(1), "{kind}: {:?}", out.stderr);
        assert_eq!(out.stderr.len(), 1, "{kind}: one line: {:?}", out.stderr);
        assert!(
            out.stderr[0].contains("kernel lacks every way to observe"),
            "{kind}: {:?}",
            out.stderr
        );
    }
}

/// Injects along every path and asserts the counts, with the plan whose `gsi assert` point
/// is `want` (`tp_btf/kvm_set_irq`, `kprobe/kvm_set_irq`, ...).
fn count_every_path(disable: Option<&str>, want: &str) {
    require_root();
    let _serial = serial();
    let me = std::process::id();
    let trace = MsiTrace::start_events(&["kvm_set_irq"]).unwrap_or_else(|e| panic!("{e}"));
    let vm = KvmIrqLab::create().unwrap_or_else(|e| panic!("{e}"));
    let pid = me.to_string();
    let mut args = vec!["--pid", pid.as_str(), "-i", "0.3", "--json"];
    let env = disable.map(|d| format!("NETPROBE_DISABLE={d}"));
    let tool = match &env {
        Some(e) => {
            args.insert(0, TOOL);
            args.insert(0, e.as_str());
            ToolRun::start("env", &args)
        }
        None => ToolRun::start(TOOL, &args),
    };
    let vm = quiet(move || {
        // The data path: a thread named as a vhost worker of this process is.
        let writer = std::thread::Builder::new()
            .name(format!("vhost-{me}"))
            .spawn(move || {
                for _ in 0..10 {
                    vm.signal_msi_irqfd().unwrap_or_else(|e| panic!("{e}"));
                }
                vm
            })
            .expect("spawn writer");
        let vm = writer.join().expect("writer");
        // KVM merges signals that come before its kworker ran: wait for each assert.
        let asserts = format!("gsi {IOAPIC_GSI} level 1");
        for i in 1..=7 {
            let before = trace.count("kvm_set_irq", &asserts).unwrap();
            vm.signal_ioapic_irqfd().unwrap_or_else(|e| panic!("{e}"));
            wait_until(&format!("the kworker's assert {i}"), WAIT, || {
                trace.count("kvm_set_irq", &asserts).unwrap() > before
            });
        }
        for _ in 0..3 {
            vm.irq_line(1).unwrap_or_else(|e| panic!("{e}"));
            vm.irq_line(0).unwrap_or_else(|e| panic!("{e}"));
        }
        for _ in 0..4 {
            vm.signal_msi().unwrap_or_else(|e| panic!("{e}"));
        }
        vm
    });
    let out = tool.stop(Signal::SIGINT);
    drop(vm);
    assert!(out.status.success(), "{:?}", out.stderr);
    let plan = out.json()[0]["probe"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(plan.contains(want), "plan {plan}");
    // A kprobe without the kvm module's BTF cannot read the routing entry: no vectors.
    let vectors = !want.starts_with("kprobe") || kworker_vm_known();
    let vector = |v: u8| vectors.then_some(u64::from(v));
    let kworker_vm = kworker_vm_known()
        && (plan.contains("workqueue_execute_start") || plan.contains("process_one_work"));
    let got = totals(&out);
    let key = |path: &str, gsi: Option<u64>, vector: Option<u64>, category: &str| -> Key {
        (
            path.to_string(),
            gsi,
            vector,
            category.to_string(),
            u64::from(me),
        )
    };
    let irqfd = key("irqfd", None, vector(MSI_VECTOR), "data");
    let inject = if kworker_vm {
        got.keys()
            .find(|k| k.0 == "irqfd_inject")
            .cloned()
            .unwrap_or_else(|| panic!("no irqfd_inject entry: {got:#?}"))
    } else {
        // The kworker's injections belong to an unknown VM: --pid leaves them out.
        assert!(got.keys().all(|k| k.0 != "irqfd_inject"), "{got:#?}");
        let gsi = Some(u64::from(IOAPIC_GSI));
        (String::new(), gsi, None, "control".into(), u64::from(me))
    };
    let line = got
        .keys()
        .find(|k| k.0 == "ioctl" && k.1 == Some(u64::from(IOAPIC_GSI)))
        .cloned()
        .unwrap_or_else(|| panic!("no KVM_IRQ_LINE entry: {got:#?}"));
    let msi = key("ioctl", None, vector(IOCTL_MSI_VECTOR), "control");
    assert_eq!(got.get(&irqfd), Some(&10), "MSI irqfd fast path: {got:#?}");
    let kworker = if kworker_vm { 7 } else { 0 };
    let injected = got.get(&inject).copied().unwrap_or(0);
    assert_eq!(injected, kworker, "IOAPIC irqfd in the kworker: {got:#?}");
    assert_eq!(inject.1, Some(u64::from(IOAPIC_GSI)), "{inject:?}");
    assert_eq!(inject.3, "control", "{inject:?}");
    assert_eq!(
        inject.4,
        u64::from(me),
        "the kworker's VM is the irqfd's: {inject:?}"
    );
    assert_eq!(got.get(&line), Some(&3), "KVM_IRQ_LINE asserts: {got:#?}");
    assert_eq!(got.get(&msi), Some(&4), "KVM_SIGNAL_MSI: {got:#?}");
    assert_eq!(
        got.values().sum::<u64>(),
        17 + kworker,
        "nothing else: {got:#?}"
    );
}

#[test]
fn category_and_thread_filters_keep_only_their_injections() {
    require_root();
    let _serial = serial();
    let me = std::process::id().to_string();
    let vm = KvmIrqLab::create().unwrap_or_else(|e| panic!("{e}"));
    // Two writers named as vhost workers; --vhost-pid keeps the second's only. The second
    // starts first, so that its thread id is known, and writes when it gets the VM.
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<KvmIrqLab>();
    let second = std::thread::Builder::new()
        .name(format!("vhost-{me}"))
        .spawn(move || {
            // SAFETY: gettid(2) has no preconditions.
            tid_tx.send(unsafe { libc::gettid() }).expect("send tid");
            let vm = go_rx.recv().expect("the VM");
            for _ in 0..4 {
                vm.signal_msi_irqfd().unwrap_or_else(|e| panic!("{e}"));
            }
            vm
        })
        .expect("spawn second writer");
    let tid = tid_rx.recv().expect("second writer's tid").to_string();
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["-i", "0.3", "--json"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let start = |extra: &[&str]| {
        let a = args(extra);
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        ToolRun::start(TOOL, &refs)
    };
    let data = start(&["-p", &me, "--category", "data"]);
    let control = start(&[&me, "--category", "control"]);
    let only = start(&["--vhost-pid", &tid]);
    let vm = quiet(move || {
        for _ in 0..5 {
            vm.signal_msi().unwrap_or_else(|e| panic!("{e}"));
        }
        let writer = std::thread::Builder::new()
            .name(format!("vhost-{me}"))
            .spawn(move || {
                for _ in 0..6 {
                    vm.signal_msi_irqfd().unwrap_or_else(|e| panic!("{e}"));
                }
                vm
            })
            .expect("spawn writer");
        let vm = writer.join().expect("writer");
        go_tx.send(vm).expect("hand over the VM");
        second.join().expect("second writer")
    });
    let data = data.stop(Signal::SIGINT);
    let control = control.stop(Signal::SIGINT);
    let only = only.stop(Signal::SIGINT);
    drop(vm);
    let sum = |out: &ToolOutput| totals(out).values().sum::<u64>();
    assert_eq!(sum(&data), 6 + 4, "{:?}", data.stdout);
    assert_eq!(sum(&control), 5, "{:?}", control.stdout);
    assert_eq!(sum(&only), 4, "--vhost-pid {tid}: {:?}", only.stdout);
}

#[test]
fn bad_arguments_are_one_line_errors() {
    require_root();
    for (args, want) in [
        (&["--pid", "abc"][..], "invalid value"),
        (&["999999999"][..], "no process"),
        (&["--category", "video"][..], "invalid value"),
    ] {
        let out = run_tool(TOOL, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {:?}", out.stderr);
        assert_eq!(out.stderr.len(), 1, "{args:?}: {:?}", out.stderr);
        assert!(out.stderr[0].contains(want), "{args:?}: {:?}", out.stderr);
    }
}

/// The trigger of the vhost set's irqfd self-test really goes through KVM's irqfd: one
/// signal of its throw-away VM's irqfd is one assert and one deassert of GSI 10 by KVM's
/// inject worker, as tracefs (not netprobe) sees it.
#[test]
fn the_irqfd_self_test_trigger_injects_once() {
    require_root();
    let _serial = serial();
    let trace = MsiTrace::start_events(&["kvm_set_irq"]).unwrap_or_else(|e| panic!("{e}"));
    let vm = libnetprobe::kernel::kvm_irqfd::signal_once().unwrap_or_else(|e| panic!("{e}"));
    let count = |level: &str| trace.count("kvm_set_irq", &format!("gsi 10 level {level}"));
    wait_until("the inject worker's deassert", WAIT, || {
        count("0").unwrap() == 1
    });
    drop(vm);
    assert_eq!(count("1").unwrap(), 1);
    assert_eq!(count("0").unwrap(), 1);
}
