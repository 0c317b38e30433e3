//! The latency tools on a demo lab (run by `scripts/demo.sh`): a host with a shaped uplink and
//! a "VM" (a tap read by this process) on a bridge, with known delays induced, each tool's
//! text output printed. Usage: `latency_demo BIN_DIR` (where the tools were built).
use netprobe_lab::latency::{Tbf, TbfQueue, VmLab};
use netprobe_lab::{ns_exec, send_udp, show_run, wait_until, Lab, ToolRun};
use std::net::SocketAddrV4;
use std::time::Duration;

fn main() {
    netprobe_lab::require_root();
    let bin = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/release".to_string());
    let tool = |name: &str| format!("{bin}/{name}");
    let vl = VmLab::new("demo");
    let (a, b) = (vl.lab.a.clone(), vl.lab.b.clone());
    vl.lab.resolve_neighbour();

    // Host stack: 20 datagrams through a 2 Mbit/s shaper on the uplink of namespace a.
    let shaper = Tbf::install(&a, Lab::A_IF, 2_000_000, 1600, TbfQueue::Bytes(100_000));
    let sys = [
        "--netns",
        a.as_str(),
        "--phy-interface",
        Lab::A_IF,
        "--direction",
        "tx",
        "--protocol",
        "udp",
    ];
    let summary = ToolRun::start(
        &tool("system_network_latency_summary"),
        &[&sys[..], &["--stage-latency", "-i", "60"]].concat(),
    );
    let details = ToolRun::start(
        &tool("system_network_latency_details"),
        &[&sys[..], &["--latency-us", "60000"]].concat(),
    );
    let qdisc = ToolRun::start(
        &tool("qdisc_latency_details"),
        &["--netns", &a, "--dev", Lab::A_IF, "--latency-us", "70000"],
    );
    send_udp(&a, None, SocketAddrV4::new(vl.lab.b_ip, 7400), 20, 1000);
    std::thread::sleep(Duration::from_millis(400));
    show_run(
        "system_network_latency_summary --stage-latency  (20 UDP datagrams, 2 Mbit/s tbf on the uplink)",
        summary,
    );
    show_run(
        "system_network_latency_details --latency-us 60000  (the same datagrams: those that waited 60 ms or more)",
        details,
    );
    show_run("qdisc_latency_details --latency-us 70000", qdisc);
    drop(shaper);

    // ICMP round trips, timed on the pinger's and on the responder's side.
    let pinger = ToolRun::start(
        &tool("kernel_icmp_rtt"),
        &[
            "--netns",
            &a,
            "--phy-interface",
            Lab::A_IF,
            "--direction",
            "tx",
        ],
    );
    let responder = ToolRun::start(
        &tool("kernel_icmp_rtt"),
        &[
            "--netns",
            &b,
            "--phy-interface",
            Lab::B_IF,
            "--direction",
            "rx",
        ],
    );
    ns_exec(
        &a,
        &["ping", "-c", "2", "-i", "0.2", &vl.lab.b_ip.to_string()],
    );
    show_run(
        "kernel_icmp_rtt --direction tx  (ping -c 2, on the pinger)",
        pinger,
    );
    show_run(
        "kernel_icmp_rtt --direction rx  (the same pings, on the responder)",
        responder,
    );

    // The VM: its reader stops for 300 ms while 5 of 15 datagrams wait in the tap's ring.
    let vm = [
        "--netns",
        b.as_str(),
        "--phy-interface",
        Lab::B_IF,
        "--vm-interface",
        vl.tap,
        "--protocol",
        "udp",
    ];
    let summary = ToolRun::start(
        &tool("vm_network_latency_summary"),
        &[
            &vm[..],
            &["--direction", "rx", "--stage-latency", "-i", "60"],
        ]
        .concat(),
    );
    let details = ToolRun::start(
        &tool("vm_network_latency_details"),
        &[&vm[..], &["--direction", "rx", "--latency-us", "100000"]].concat(),
    );
    let metrics = ToolRun::start(
        &tool("vm_network_performance_metrics"),
        &[&vm[..], &["--direction", "tx"]].concat(),
    );
    let dst = SocketAddrV4::new(vl.vm_ip, 7401);
    send_udp(&a, None, dst, 10, 200);
    wait_until("fast packets read", Duration::from_secs(5), || {
        vl.vm.udp_frames_to(7401) == 10
    });
    vl.vm.pause();
    send_udp(&a, None, dst, 5, 200);
    std::thread::sleep(Duration::from_millis(300));
    vl.vm.resume();
    wait_until("slow packets read", Duration::from_secs(5), || {
        vl.vm.udp_frames_to(7401) == 15
    });
    vl.vm
        .send_udp_from_vm(vl.lab.a_mac, vl.lab.a_ip, 7402, 4000, 2, 100);
    std::thread::sleep(Duration::from_millis(200));
    show_run(
        "vm_network_latency_summary --direction rx --stage-latency  (15 datagrams to the VM; its reader stopped for 300 ms during 5)",
        summary,
    );
    show_run(
        "vm_network_latency_details --direction rx --latency-us 100000  (only the 5 that waited for the reader)",
        details,
    );
    show_run(
        "vm_network_performance_metrics --direction tx  (2 datagrams the VM sends)",
        metrics,
    );
}
