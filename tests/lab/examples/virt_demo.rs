//! The virtualization tools on a demo lab (run by `scripts/demo.sh`): a two-queue tap whose
//! reader (this process, standing in for a VM) stalls while the host sends to the VM, and a
//! KVM VM of this process whose interrupts are injected along each of KVM's paths. Each tool's
//! text output is printed. Usage: `virt_demo BIN_DIR` (where the tools were built).
use netprobe_lab::kvm::{KvmIrqLab, MsiTrace, IOAPIC_GSI};
use netprobe_lab::latency::{mac_string, TapVm, VM_MAC};
use netprobe_lab::testkit::steer_tun_by_udp_dport;
use netprobe_lab::{ns_exec, send_udp, show_run, wait_until, Lab, ToolRun};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

fn main() {
    netprobe_lab::require_root();
    let bin = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/release".to_string());
    let tool = |name: &str| format!("{bin}/{name}");
    let wait = Duration::from_secs(10);

    // A tap with two queues and txqueuelen 64 in namespace a; UDP port parity picks the queue.
    let lab = Lab::new("vdemo");
    let ns = lab.a.clone();
    let vm_ip = Ipv4Addr::new(192, 0, 2, 99);
    let vm = TapVm::create_queues(&ns, "vnet0", VM_MAC, vm_ip, 2);
    steer_tun_by_udp_dport(vm.queue_fd(0).expect("queue 0")).unwrap_or_else(|e| panic!("{e}"));
    for cmd in [
        &["ip", "link", "set", "vnet0", "txqueuelen", "64"][..],
        &["ip", "addr", "add", "192.0.2.1/24", "dev", "vnet0"],
        &["ip", "link", "set", "vnet0", "up"],
        &[
            "ip",
            "neigh",
            "add",
            "192.0.2.99",
            "lladdr",
            &mac_string(VM_MAC),
            "dev",
            "vnet0",
            "nud",
            "permanent",
        ],
    ] {
        ns_exec(&ns, cmd);
    }
    let summary = ToolRun::start(
        &tool("tun_ring_monitor"),
        &["-d", "vnet0", "--netns", &ns, "-i", "60"],
    );
    let events = ToolRun::start(
        &tool("tun_ring_monitor"),
        &["-d", "vnet0", "--netns", &ns, "--dst-port", "5001"],
    );
    vm.pause();
    send_udp(&ns, None, SocketAddrV4::new(vm_ip, 5000), 100, 64);
    send_udp(&ns, None, SocketAddrV4::new(vm_ip, 5001), 70, 64);
    vm.resume();
    wait_until("the VM to read its rings", wait, || vm.frames_read() >= 128);
    std::thread::sleep(Duration::from_millis(100));
    show_run(
        &format!(
            "tun_ring_monitor -d vnet0 --netns {ns} -i 60  (the reader stalls; 100 + 70 packets)"
        ),
        summary,
    );
    show_run(
        &format!("tun_ring_monitor -d vnet0 --netns {ns} --dst-port 5001  (ring-full xmits)"),
        events,
    );

    // KVM: 10 MSI irqfd signals from a vhost-named thread, 5 IOAPIC irqfd signals (kworker),
    // 3 KVM_IRQ_LINE asserts and 2 KVM_SIGNAL_MSI, to a guest that takes the MSIs.
    let me = std::process::id();
    let mut kvm = match KvmIrqLab::create() {
        Ok(kvm) => kvm,
        Err(e) => {
            println!(
                "### kvm_irqfd_stats_summary: not shown, this machine cannot make a KVM VM ({e})"
            );
            return;
        }
    };
    if let Err(e) = kvm.run_guest() {
        println!("(no guest runs, so nothing is delivered: {e})");
    }
    std::thread::sleep(Duration::from_millis(50));
    let trace = MsiTrace::start_events(&["kvm_set_irq"]).unwrap_or_else(|e| panic!("{e}"));
    let irqs = ToolRun::start(
        &tool("kvm_irqfd_stats_summary"),
        &[&me.to_string(), "-i", "60"],
    );
    let kvm = std::thread::Builder::new()
        .name(format!("vhost-{me}"))
        .spawn(move || {
            for _ in 0..10 {
                kvm.signal_msi_irqfd().unwrap_or_else(|e| panic!("{e}"));
            }
            kvm
        })
        .expect("spawn writer")
        .join()
        .expect("writer");
    let asserts = format!("gsi {IOAPIC_GSI} level 1");
    for _ in 0..5 {
        let before = trace.count("kvm_set_irq", &asserts).unwrap_or(0);
        kvm.signal_ioapic_irqfd().unwrap_or_else(|e| panic!("{e}"));
        wait_until("the kworker's assert", wait, || {
            trace.count("kvm_set_irq", &asserts).unwrap_or(0) > before
        });
    }
    for _ in 0..3 {
        kvm.irq_line(1).unwrap_or_else(|e| panic!("{e}"));
        kvm.irq_line(0).unwrap_or_else(|e| panic!("{e}"));
    }
    for _ in 0..2 {
        kvm.signal_msi().unwrap_or_else(|e| panic!("{e}"));
    }
    std::thread::sleep(Duration::from_millis(100));
    show_run(
        &format!("kvm_irqfd_stats_summary {me} -i 60  (this process's VM)"),
        irqs,
    );
}
