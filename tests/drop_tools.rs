//! Integration tests of the drop tools: real BPF in the running kernel, real netns labs,
//! drops induced a known number of times, asserted through `--json`.
//! Needs root (CI runs as root): without it every test fails, none is skipped.
use netprobe_lab::*;
use nix::sys::signal::Signal;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

const SUMMARY: &str = env!("CARGO_BIN_EXE_kernel_drop_stack_stats_summary");
const ETH_DROP: &str = env!("CARGO_BIN_EXE_eth_drop");
const TRACE_NET_DROP: &str = env!("CARGO_BIN_EXE_trace_net_drop");
const CHECK: &str = env!("CARGO_BIN_EXE_netprobe_check");
const WAIT: Duration = Duration::from_secs(10);

/// Summary entries of every interval report, in order.
fn entries(out: &ToolOutput) -> Vec<Value> {
    out.json()
        .into_iter()
        .filter(|v| v["type"] == "interval")
        .flat_map(|v| v["entries"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// Sum of `count` per value of `field`.
fn count_by(entries: &[Value], field: &str) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for e in entries {
        let k = e[field].as_str().unwrap_or("").to_string();
        *m.entry(k).or_default() += e["count"].as_u64().unwrap();
    }
    m
}

/// Sum of `count` per kind of drop (its reason, or where the kernel has none its location).
fn count_kinds(entries: &[Value]) -> BTreeMap<String, u64> {
    let x = Expect::of_this_kernel();
    let mut m = BTreeMap::new();
    for e in entries {
        *m.entry(x.kind(e)).or_default() += e["count"].as_u64().unwrap();
    }
    m
}

/// The one entry of a kind of drop.
fn the_entry<'a>(entries: &'a [Value], reason: &str) -> &'a Value {
    let x = Expect::of_this_kernel();
    let found: Vec<&Value> = entries.iter().filter(|e| x.kind(e) == reason).collect();
    assert_eq!(
        found.len(),
        1,
        "exactly one {reason} entry expected in {entries:#?}"
    );
    found[0]
}

#[test]
fn summary_counts_five_kinds_of_drop_exactly() {
    require_root();
    let lab = Lab::new("sum");
    let drops = Drops::new(&lab, "s");
    let tool = ToolRun::start(
        SUMMARY,
        &["--netns", &lab.b, "--json", "-i", "600", "--top", "20"],
    );
    drops.no_socket(20, 9);
    drops.netfilter(7);
    drops.otherhost(5);
    drops.unknown_ethertype(4);
    let ring = drops.full_ring(30);
    assert_eq!(
        ring,
        22,
        "tap ring of {} should drop 30 - {}",
        Drops::TAP_QUEUE,
        Drops::TAP_QUEUE
    );
    let out = tool.stop(Signal::SIGINT);
    assert!(out.status.success(), "{:?}", out.stderr);
    let all = entries(&out);
    let x = Expect::of_this_kernel();
    let by_reason = count_kinds(&all);
    let expected: BTreeMap<String, u64> = [
        ("NO_SOCKET", 20),
        ("NETFILTER_DROP", 7),
        ("OTHERHOST", 5),
        ("UNHANDLED_PROTO", 4),
        ("FULL_RING", ring),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(by_reason, expected, "{all:#?}");

    let e = the_entry(&all, "NO_SOCKET");
    let udp_at = e["location_func"].as_str().unwrap();
    assert!(x.located("NO_SOCKET", udp_at), "{e:#?}");
    assert_eq!(e["ifname"], Lab::B_IF);
    assert_eq!(e["l4_protocol"], "udp");
    assert_eq!(e["src_ip"], lab.a_ip.to_string());
    assert_eq!(e["dst_ip"], lab.b_ip.to_string());
    assert_eq!(e["dst_port"], 9);
    let stack: Vec<&str> = e["stack"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(
        stack[0].starts_with(&format!("{udp_at}+0x")),
        "stack not stripped: {stack:?}"
    );

    let e = the_entry(&all, "NETFILTER_DROP");
    assert_eq!(e["location_func"], x.netfilter_location());
    assert_eq!(e["dst_port"], Drops::NFT_PORT);
    assert_eq!(e["ifname"], Lab::B_IF);

    let e = the_entry(&all, "OTHERHOST");
    assert!(
        x.located("OTHERHOST", e["location_func"].as_str().unwrap()),
        "{e:#?}"
    );
    assert_eq!(e["dst_ip"], drops.otherhost.to_string());

    let e = the_entry(&all, "UNHANDLED_PROTO");
    assert_eq!(e["location_func"], "__netif_receive_skb_core");
    assert_eq!(e["ethertype"], format!("0x{UNKNOWN_ETHERTYPE:04x}"));
    assert_eq!(e["l3"], "other");

    let e = the_entry(&all, "FULL_RING");
    assert_eq!(e["location_func"], "tun_net_xmit");
    assert_eq!(e["ifname"], drops.tap.name);
    assert_eq!(e["dst_ip"], drops.tap_peer.to_string());

    let last = out
        .json()
        .into_iter()
        .rfind(|v| v["type"] == "interval")
        .unwrap();
    assert_eq!(last["final"], true);
    assert_eq!(last["lost_events"], 0);
    assert_eq!(last["map_full"], 0);
}

#[test]
fn tracepoint_fallback_gives_the_same_answers() {
    require_root();
    let lab = Lab::new("tpf");
    let drops = Drops::new(&lab, "b");
    let args = [
        "NETPROBE_DISABLE=tp_btf",
        SUMMARY,
        "--netns",
        &lab.b,
        "--json",
        "-i",
        "600",
    ];
    let tool = ToolRun::start("env", &args);
    drops.no_socket(9, 9);
    drops.netfilter(4);
    drops.otherhost(3);
    drops.unknown_ethertype(2);
    let ring = drops.full_ring(11);
    let out = tool.stop(Signal::SIGINT);
    assert!(
        out.stderr
            .iter()
            .any(|l| l.contains("tracepoint/skb/kfree_skb")),
        "{:?}",
        out.stderr
    );
    let all = entries(&out);
    let expected: BTreeMap<String, u64> = [
        ("NO_SOCKET", 9),
        ("NETFILTER_DROP", 4),
        ("OTHERHOST", 3),
        ("UNHANDLED_PROTO", 2),
        ("FULL_RING", ring),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(count_kinds(&all), expected, "{all:#?}");
    let x = Expect::of_this_kernel();
    assert!(x.located(
        "NO_SOCKET",
        the_entry(&all, "NO_SOCKET")["location_func"]
            .as_str()
            .unwrap()
    ));
    assert_eq!(
        the_entry(&all, "FULL_RING")["location_func"],
        "tun_net_xmit"
    );
    let plan = run_tool(
        "env",
        &["NETPROBE_DISABLE=tp_btf", SUMMARY, "--list-probes"],
    );
    assert!(
        plan.stdout[0].contains("tracepoint/skb/kfree_skb"),
        "{:?}",
        plan.stdout
    );
    assert!(plan
        .stdout
        .iter()
        .any(|l| l.contains("disabled by NETPROBE_DISABLE")));
}

#[test]
fn eth_drop_reports_every_drop_with_headers() {
    require_root();
    let lab = Lab::new("eth");
    let drops = Drops::new(&lab, "e");
    let tool = ToolRun::start(ETH_DROP, &["--netns", &lab.b, "--json"]);
    drops.no_socket(6, 9);
    drops.netfilter(3);
    drops.unknown_ethertype(2);
    drops.otherhost(4);
    let ring = drops.full_ring(10);
    let before = read_stat(&lab.b, Lab::B_IF, "rx_packets");
    send_raw_frames(&lab.a, Lab::A_IF, &stp_frame(lab.a_mac), 3);
    wait_until("STP frames received", WAIT, || {
        read_stat(&lab.b, Lab::B_IF, "rx_packets") >= before + 3
    });
    let out = tool.stop(Signal::SIGTERM);
    assert!(out.status.success(), "{:?}", out.stderr);
    let json = out.json();
    let events: Vec<&Value> = json.iter().filter(|v| v["type"] == "drop").collect();
    let summary = json
        .iter()
        .find(|v| v["type"] == "summary")
        .expect("summary line");
    assert_eq!(summary["events"], events.len());
    assert_eq!(summary["lost_events"], 0);

    let x = Expect::of_this_kernel();
    let udp: Vec<&&Value> = events.iter().filter(|e| x.kind(e) == "NO_SOCKET").collect();
    assert_eq!(udp.len(), 6);
    for e in &udp {
        assert!(x.located("NO_SOCKET", e["location_func"].as_str().unwrap()));
        assert_eq!(e["ifname"], Lab::B_IF);
        assert_eq!(e["src_ip"], lab.a_ip.to_string());
        assert_eq!(e["dst_port"], 9);
        assert_eq!(e["ttl"], 64);
        assert!(e["ip_id"].is_u64());
        assert!(!e["stack"].as_array().unwrap().is_empty());
        assert!(e["time"].as_str().unwrap().len() >= 19);
    }
    let with_reason =
        |r: &str| -> Vec<&Value> { events.iter().copied().filter(|e| x.kind(e) == r).collect() };
    let nft = with_reason("NETFILTER_DROP");
    assert_eq!(nft.len(), 3);
    assert!(nft
        .iter()
        .all(|e| e["location_func"] == x.netfilter_location() && e["dst_port"] == Drops::NFT_PORT));
    let other = with_reason("OTHERHOST");
    assert_eq!(other.len(), 4);
    assert!(other.iter().all(
        |e| x.located("OTHERHOST", e["location_func"].as_str().unwrap())
            && e["dst_ip"] == drops.otherhost.to_string()
            && e["pkt_type"] == 3
    ));
    let full = with_reason("FULL_RING");
    assert_eq!(full.len() as u64, ring);
    assert!(full
        .iter()
        .all(|e| e["location_func"] == "tun_net_xmit" && e["ifname"] == drops.tap.name.as_str()));
    let unknown: Vec<&&Value> = events
        .iter()
        .filter(|e| e["ethertype"] == "0x88b5")
        .collect();
    assert_eq!(unknown.len(), 2);
    assert_eq!(unknown[0]["reason"], x.reason("UNHANDLED_PROTO"));
    assert_eq!(unknown[0]["src_mac"], mac(&lab.a_mac));
    let stp: Vec<&&Value> = events.iter().filter(|e| e["llc"]["dsap"] == 0x42).collect();
    assert_eq!(
        stp.len(),
        3,
        "STP frames must be reported with their LLC header: {events:#?}"
    );
    assert_eq!(stp[0]["llc"]["ssap"], 0x42);
    assert_eq!(stp[0]["dst_mac"], "01:80:c2:00:00:00");
    assert!(stp.iter().all(|e| e["location_func"]
        .as_str()
        .is_some_and(|l| !l.is_empty() && l != "-")));
    assert_eq!(
        events.len() as u64,
        6 + 3 + 2 + 4 + ring + 3,
        "no other drops in the lab: {events:#?}"
    );
}

#[test]
fn eth_drop_vlan_filter_sees_offloaded_tags() {
    require_root();
    let lab = Lab::new("vln");
    let drops = Drops::new(&lab, "v");
    let n = lab.a_ip.octets()[2];
    let name = format!("nptq{}", std::process::id() % 100_000);
    let tap = Tap::create_unread(&lab.b, &name, 4, &format!("198.20.{n}.1/24"));
    let peer = Ipv4Addr::new(198, 20, n, 2);
    ns_exec(
        &lab.b,
        &[
            "ip",
            "neigh",
            "add",
            &peer.to_string(),
            "lladdr",
            "02:00:00:00:00:05",
            "dev",
            &name,
        ],
    );
    in_netns(&lab.b, move || {
        netprobe_lab::testkit::push_vlan_on_egress(&name, 100)
    })
    .expect("tc vlan push");
    let tool = ToolRun::start(ETH_DROP, &["--netns", &lab.b, "--json", "--vlan-id", "100"]);
    let before = read_stat(&lab.b, &tap.name, "tx_dropped");
    send_udp(&lab.b, None, SocketAddrV4::new(peer, 6000), 10, 32);
    wait_until("vlan tap tx_dropped", WAIT, || {
        read_stat(&lab.b, &tap.name, "tx_dropped") >= before + 6
    });
    let untagged = drops.full_ring(9); // the same kind of drop without a tag: filtered out
    assert!(untagged > 0);
    let out = tool.stop(Signal::SIGINT);
    let events: Vec<Value> = out
        .json()
        .into_iter()
        .filter(|v| v["type"] == "drop")
        .collect();
    let dropped = read_stat(&lab.b, &tap.name, "tx_dropped") - before;
    assert_eq!(events.len() as u64, dropped, "{events:#?}");
    for e in &events {
        assert_eq!(e["vlan_id"], 100, "{e:#?}");
        assert_eq!(e["reason"], Expect::of_this_kernel().reason("FULL_RING"));
        assert_eq!(e["dst_ip"], peer.to_string());
        assert_eq!(e["ifname"], tap.name.as_str());
    }
}

#[test]
fn eth_drop_type_filter_and_no_stack() {
    require_root();
    let lab = Lab::new("ety");
    let drops = Drops::new(&lab, "t");
    let tool = ToolRun::start(
        ETH_DROP,
        &[
            "--netns",
            &lab.b,
            "--json",
            "--type",
            "other",
            "--no-stack-trace",
        ],
    );
    drops.no_socket(4, 9);
    drops.unknown_ethertype(3);
    let out = tool.stop(Signal::SIGINT);
    let events: Vec<Value> = out
        .json()
        .into_iter()
        .filter(|v| v["type"] == "drop")
        .collect();
    assert_eq!(events.len(), 3, "{events:#?}");
    assert!(events
        .iter()
        .all(|e| e["ethertype"] == "0x88b5" && e["stack"].as_array().unwrap().is_empty()));
}

#[test]
fn trace_net_drop_counts_per_location_and_matches_functions() {
    require_root();
    let lab = Lab::new("tnd");
    let drops = Drops::new(&lab, "d");
    let run = |extra: &[&str]| {
        let mut args = vec!["--netns", lab.b.as_str(), "--json", "-i", "600"];
        args.extend_from_slice(extra);
        let tool = ToolRun::start(TRACE_NET_DROP, &args);
        drops.no_socket(6, 9);
        drops.netfilter(3);
        let out = tool.stop(Signal::SIGINT);
        assert!(out.status.success(), "{:?}", out.stderr);
        entries(&out)
    };
    let tool = ToolRun::start(
        TRACE_NET_DROP,
        &["--netns", lab.b.as_str(), "--json", "-i", "600"],
    );
    drops.no_socket(6, 9);
    drops.netfilter(3);
    drops.otherhost(2);
    drops.unknown_ethertype(5);
    let ring = drops.full_ring(12);
    let all = entries(&tool.stop(Signal::SIGINT));
    let x = Expect::of_this_kernel();
    let expected: BTreeMap<String, u64> = [
        ("NO_SOCKET", 6),
        ("NETFILTER_DROP", 3),
        ("OTHERHOST", 2),
        ("UNHANDLED_PROTO", 5),
        ("FULL_RING", ring),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(count_kinds(&all), expected, "{all:#?}");
    for e in &all {
        assert!(
            x.located(&x.kind(e), e["location_func"].as_str().unwrap()),
            "{e:#?}"
        );
    }
    assert!(
        all.iter().all(|e| e["src_ip"].is_null()),
        "trace_net_drop counts by location only"
    );

    let nft = x.netfilter_location();
    let only = run(&["--match", nft]);
    assert_eq!(
        count_by(&only, "location_func"),
        BTreeMap::from([(nft.to_string(), 3)])
    );

    let except = run(&["--filter", nft]);
    assert_eq!(
        count_kinds(&except),
        BTreeMap::from([("NO_SOCKET".to_string(), 6)])
    );

    let bt = run(&["--bt"]);
    assert_eq!(
        bt.iter().map(|e| e["count"].as_u64().unwrap()).sum::<u64>(),
        9
    );
    for e in &bt {
        let top = e["stack"][0].as_str().unwrap_or_default();
        assert!(
            top.starts_with(e["location_func"].as_str().unwrap()),
            "{e:#?}"
        );
    }
}

#[test]
fn filters_exclude_traffic_outside_them() {
    require_root();
    let lab = Lab::new("flt");
    let other = Lab::new("flo");
    let drops = Drops::new(&lab, "f");
    let other_drops = Drops::new(&other, "g");
    let dst = format!("{}/24", lab.b_ip);
    let x = Expect::of_this_kernel();
    let mut args = vec![
        "--netns",
        &lab.b,
        "--interface",
        Lab::B_IF,
        "--json",
        "-i",
        "600",
        "--l4-protocol",
        "udp",
        "--dst-ip",
        &dst,
        "--dst-port",
        "9",
    ];
    if x.reasons {
        args.extend(["--reason", "NO_SOCKET"]);
    }
    let tool = ToolRun::start(SUMMARY, &args);
    drops.no_socket(10, 9); // counted
    drops.no_socket(5, 10); // other port
    drops.netfilter(4); // other reason and port
    drops.otherhost(3); // other address
    drops.unknown_ethertype(2); // not UDP
    drops.full_ring(12); // other interface
    other_drops.no_socket(8, 9); // other namespace, same everything else
    let out = tool.stop(Signal::SIGINT);
    let all = entries(&out);
    assert_eq!(
        count_kinds(&all),
        BTreeMap::from([("NO_SOCKET".to_string(), 10)]),
        "{all:#?}"
    );
    assert!(all
        .iter()
        .all(|e| e["netns"] == all[0]["netns"] && e["dst_port"] == 9));
}

#[test]
fn group_by_stack_merges_flows() {
    require_root();
    let lab = Lab::new("grp");
    let drops = Drops::new(&lab, "p");
    let tool = ToolRun::start(
        SUMMARY,
        &[
            "--netns",
            &lab.b,
            "--json",
            "-i",
            "600",
            "--group-by",
            "stack",
        ],
    );
    drops.no_socket(5, 9);
    drops.no_socket(5, 10);
    let out = tool.stop(Signal::SIGINT);
    let all = entries(&out);
    let e = the_entry(&all, "NO_SOCKET");
    assert_eq!(e["count"], 10);
    assert!(
        e["src_ip"].is_null(),
        "flows are merged under --group-by stack"
    );
}

#[test]
fn example_embeds_the_library() {
    require_root();
    let lab = Lab::new("exm");
    let drops = Drops::new(&lab, "x");
    let example = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/drops_by_reason");
    assert!(example.exists(), "example not built: {}", example.display());
    let tool = ToolRun::start(example.to_str().unwrap(), &[&lab.b]);
    drops.no_socket(4, 9);
    drops.netfilter(2);
    let out = tool.stop(Signal::SIGINT);
    assert!(out.status.success(), "{:?}", out.stderr);
    let want: &[&str] = if Expect::of_this_kernel().reasons {
        &["total NO_SOCKET 4", "total NETFILTER_DROP 2"]
    } else {
        &["total - 6"]
    };
    for line in want {
        assert!(out.stdout.contains(&line.to_string()), "{:?}", out.stdout);
    }
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    require_root();
    let cases: &[(&str, &[&str])] = &[
        (SUMMARY, &["--src-ip", "300.1.1.1"]),
        (SUMMARY, &["--dst-port", "70000"]),
        (SUMMARY, &["--interface", "nosuchif0"]),
        (SUMMARY, &["--reason", "NOT_A_REASON"]),
        (SUMMARY, &["-i", "0"]),
        (SUMMARY, &["--interval", "-5"]),
        (SUMMARY, &["--top", "0"]),
        (SUMMARY, &["--netns", "np-no-such-netns"]),
        (SUMMARY, &["--src-ip", "10.0.0.1", "--dst-ip", "fd00::1"]),
        (SUMMARY, &["--group-by", "nothing"]),
        (ETH_DROP, &["--l4-protocol", "icmp", "--dst-port", "80"]),
        (ETH_DROP, &["--vlan-id", "5000"]),
        (ETH_DROP, &["--type", "bogus"]),
        (ETH_DROP, &["--src-ip", "10.0.0.0/40"]),
        (
            TRACE_NET_DROP,
            &["--match", "ip_rcv", "--filter", "nft_do_chain"],
        ),
        (TRACE_NET_DROP, &["--match", "no_such_kernel_function_xyz"]),
        (TRACE_NET_DROP, &["--netns", "999999999"]),
        (TRACE_NET_DROP, &["--match", ""]),
        (TRACE_NET_DROP, &["--filter", " "]),
        (CHECK, &["--bogus"]),
        (ETH_DROP, &["--type", "arp", "--dst-port", "80"]),
        (ETH_DROP, &["--type", "stp", "--l4-protocol", "tcp"]),
        (ETH_DROP, &["--type", "ipv6", "--src-ip", "10.0.0.1"]),
        (ETH_DROP, &["--type", "ipv4", "--dst-ip", "fd00::1"]),
        (SUMMARY, &["-i", "1e-9"]),
        (TRACE_NET_DROP, &["--interval", "0.01"]),
        (ETH_DROP, &["--duration", "0.000001"]),
        (SUMMARY, &["--netns", "np-not-a-netns-file"]),
        ("env", &["NETPROBE_DISABLE=tp_bft", SUMMARY, "-d", "1"]),
    ];
    // A plain file where `ip netns` keeps namespaces is not a namespace (removed on any exit).
    struct PlainFile(&'static str);
    impl Drop for PlainFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0);
        }
    }
    std::fs::create_dir_all("/run/netns").unwrap();
    let plain = PlainFile("/run/netns/np-not-a-netns-file");
    std::fs::write(plain.0, b"").unwrap();
    for (bin, args) in cases {
        let out = run_tool(bin, args);
        let name = if *bin == "env" { args[1] } else { bin };
        let name = name.rsplit('/').next().unwrap();
        let lines: Vec<&String> = out.stderr.iter().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{name} {args:?}: {:?}",
            out.stderr
        );
        assert_eq!(
            lines.len(),
            1,
            "{name} {args:?}: one line expected: {:?}",
            out.stderr
        );
        assert!(
            lines[0].starts_with(&format!("{name}: error: ")),
            "{name} {args:?}: {}",
            lines[0]
        );
        assert!(!lines[0].contains("panicked"), "{}", lines[0]);
        assert!(out.stdout.is_empty(), "{name} {args:?}: nothing on stdout");
    }
    drop(plain);
    // A long bad value is quoted shortened, not echoed whole.
    let long = "X".repeat(5000);
    let out = run_tool(SUMMARY, &["--reason", &long]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stderr.join("\n").len() < 600 && out.stderr.join("\n").contains("(5000 characters)"),
        "long value echoed: {} bytes",
        out.stderr.join("\n").len()
    );
}

#[test]
fn a_failed_write_is_an_error_not_a_silent_exit() {
    require_root();
    let lab = Lab::new("full");
    let devfull = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = std::process::Command::new(SUMMARY)
        .args(["--netns", &lab.b, "--json", "-d", "0.5"])
        .stdout(devfull)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("kernel_drop_stack_stats_summary: error: cannot write output"),
        "{err}"
    );
}

#[test]
fn seed_command_lines_keep_working() {
    require_root();
    let lab = Lab::new("seed");
    let (a, b) = (lab.a_ip.to_string(), lab.b_ip.to_string());
    // The seed toolset's documented invocations (IPs and devices of the lab), each run briefly.
    let lines: Vec<(&str, Vec<&str>)> = vec![
        (
            SUMMARY,
            vec![
                "--src-ip",
                &a,
                "--dst-ip",
                &b,
                "--l4-protocol",
                "tcp",
                "--interval",
                "60",
            ],
        ),
        (
            SUMMARY,
            vec![
                "--src-ip",
                &a,
                "--dst-ip",
                &b,
                "--l4-protocol",
                "icmp",
                "--interval",
                "30",
                "--top",
                "10",
            ],
        ),
        (
            SUMMARY,
            vec![
                "-n",
                Lab::B_IF,
                "--group-by",
                "stack",
                "--max-entries",
                "10240",
                "-i",
                "10",
            ],
        ),
        (
            SUMMARY,
            vec![
                "--name",
                Lab::B_IF,
                "--group-by",
                "fivetuple",
                "--src-port",
                "1234",
                "--dst-port",
                "80",
            ],
        ),
        (ETH_DROP, vec!["--src-ip", &a, "--dst-ip", &b, "--verbose"]),
        (
            ETH_DROP,
            vec!["--type", "flow_control", "--interface", Lab::B_IF],
        ),
        (
            ETH_DROP,
            vec![
                "--type",
                "ipv4",
                "--l4-protocol",
                "udp",
                "--dst-port",
                "53",
                "--no-stack-trace",
            ],
        ),
        (
            ETH_DROP,
            vec![
                "--type",
                "all",
                "--disable-normal-filter",
                "--vlan-id",
                "100",
            ],
        ),
        (ETH_DROP, vec!["--type", "lldp"]),
        (TRACE_NET_DROP, vec!["--match", "nft_do_chain", "-i", "1"]),
    ];
    for (bin, args) in lines {
        let mut full = vec!["netns", "exec", lab.b.as_str(), bin];
        full.extend(args.iter().copied());
        full.extend(["--duration", "0.5"]);
        let out = run_tool("ip", &full);
        assert!(out.status.success(), "{bin} {args:?}: {:?}", out.stderr);
        assert!(
            out.stderr.iter().any(|l| l.starts_with("netprobe: ready")),
            "{bin} {args:?}: {:?}",
            out.stderr
        );
    }
}

#[test]
fn a_deleted_namespace_is_reported_and_not_confused_with_a_new_one() {
    require_root();
    let old = Lab::new("old");
    let tool = ToolRun::start(SUMMARY, &["--netns", &old.b, "--json", "-i", "1"]);
    ns_exec(&old.a, &["ip", "link", "del", Lab::A_IF]);
    std::process::Command::new("ip")
        .args(["netns", "del", &old.b])
        .status()
        .unwrap();
    let new = Lab::new("new");
    let drops = Drops::new(&new, "n");
    wait_until("deletion reported", WAIT, || {
        tool.stderr_so_far()
            .iter()
            .any(|l| l.contains("was deleted"))
    });
    drops.no_socket(6, 9);
    let out = tool.stop(Signal::SIGINT);
    assert!(out.status.success(), "{:?}", out.stderr);
    let all = entries(&out);
    assert!(
        all.is_empty(),
        "a new namespace's drops counted under the deleted one: {all:#?}"
    );
}

/// BPF object ids (`prog_id:` or `link_id:`) held open by process `pid`, from fdinfo.
fn held_by(pid: u32, field: &str) -> Vec<u64> {
    let mut ids = Vec::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .flatten()
    {
        let info = std::fs::read_to_string(fd.path()).unwrap_or_default();
        ids.extend(
            info.lines()
                .filter_map(|l| l.strip_prefix(field))
                .filter_map(|v| v.trim().parse::<u64>().ok()),
        );
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Ids of every loaded BPF object of a kind (`prog`, `link`), from bpftool.
fn bpftool_ids(kind: &str) -> Vec<u64> {
    let out = std::process::Command::new("bpftool")
        .args(["-j", kind, "show"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v.as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p["id"].as_u64())
        .collect()
}

#[test]
fn signals_leave_no_program_behind() {
    require_root();
    let lab = Lab::new("sig");
    for (bin, sig) in [
        (SUMMARY, Signal::SIGINT),
        (SUMMARY, Signal::SIGTERM),
        (ETH_DROP, Signal::SIGINT),
        (ETH_DROP, Signal::SIGTERM),
        (TRACE_NET_DROP, Signal::SIGTERM),
    ] {
        let tool = ToolRun::start(bin, &["--netns", &lab.b]);
        let held = held_by(tool.pid(), "prog_id:");
        let links = held_by(tool.pid(), "link_id:");
        assert!(!held.is_empty(), "{bin} holds no BPF program while running");
        assert!(!links.is_empty(), "{bin} holds no BPF link while running");
        let out = tool.stop(sig);
        assert!(out.status.success(), "{bin} {sig:?}: {:?}", out.stderr);
        // The kernel frees programs after their last link goes (RCU), so allow it a moment.
        wait_until(
            &format!("{bin} programs {held:?} and links {links:?} freed after {sig:?}"),
            WAIT,
            || {
                let (progs, links_left) = (bpftool_ids("prog"), bpftool_ids("link"));
                held.iter().all(|id| !progs.contains(id))
                    && links.iter().all(|id| !links_left.contains(id))
            },
        );
    }
}

/// Host tier: program types are probed by trial, so on this kernel kprobe programs must at least
/// pass the verifier (they load; attaching may fail). VM tier (`NETPROBE_TEST_TIER=vm`, stock
/// Debian kernels): fentry and kprobe must be found available, and the drop tools still prefer
/// tp_btf, their best candidate.
#[test]
fn feature_probes_match_the_test_tier() {
    require_root();
    let out = run_tool(CHECK, &["--json"]);
    assert!(out.status.success(), "{:?}", out.stderr);
    let v = &out.json()[0];
    let f = &v["features"];
    let kprobe_loaded = f["kprobe"]["status"] == "yes"
        || f["kprobe"]["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("attach failed"));
    assert!(kprobe_loaded, "kprobe programs must load here: {f:#?}");
    if std::env::var("NETPROBE_TEST_TIER").as_deref() == Ok("vm") {
        assert_eq!(f["fentry"]["status"], "yes", "{f:#?}");
        assert_eq!(f["kprobe"]["status"], "yes", "{f:#?}");
    }
    // A module's tracepoints are tp_btf only where the module has BTF (5.11+) or is built in.
    let module_btf = |m: &str| {
        std::path::Path::new(&format!("/sys/kernel/btf/{m}")).exists()
            || !std::path::Path::new(&format!("/sys/module/{m}/initstate")).exists()
    };
    let vm = std::env::var("NETPROBE_TEST_TIER").as_deref() == Ok("vm");
    for t in v["sets"].as_array().unwrap() {
        // Module-only sets: the VM tier has the modules, this host does not. With the
        // module's BTF, vhost's best is fentry (it has no tracepoints) and ovs's tp_btf;
        // without it (5.10), kprobes.
        let module_only = [
            ("vhost", "vhost", "fentry"),
            ("ovs", "openvswitch", "tp_btf"),
        ];
        if let Some((_, module, best)) = module_only.iter().find(|m| t["set"] == m.0) {
            let chosen = &t["plan"]["choices"][0]["chosen"]["kind"];
            match (vm, module_btf(module)) {
                (true, true) => assert_eq!(chosen, *best, "{t:#?}"),
                (true, false) => assert_eq!(chosen, "kprobe", "{t:#?}"),
                (false, _) => assert!(chosen.is_null(), "{t:#?}"),
            }
            continue;
        }
        // The first point of the sampling and user-space sets has one kind of hook only.
        let want = match t["set"].as_str().unwrap() {
            "kvm" if !module_btf("kvm") => "tracepoint",
            "cpu" => "perf_event",
            "uprobe" => "uprobe",
            _ => "tp_btf",
        };
        assert_eq!(t["plan"]["choices"][0]["chosen"]["kind"], want, "{t:#?}");
    }
    if Expect::of_this_kernel().reasons {
        assert!(
            v["drop_reasons"].as_u64().unwrap() > 10,
            "reason names come from BTF"
        );
    } else {
        assert_eq!(v["drop_reasons"], 0, "no reason enum before 5.17");
    }
}

#[test]
fn netprobe_check_reports_plans() {
    require_root();
    let out = run_tool(CHECK, &["--json"]);
    assert!(out.status.success(), "{:?}", out.stderr);
    let v = &out.json()[0];
    assert_eq!(v["features"]["tp_btf"]["status"], "yes");
    assert_eq!(v["features"]["ringbuf"]["status"], "yes");
    assert!(v["sets"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["set"] == "drop"));
    let vm = std::env::var("NETPROBE_TEST_TIER").as_deref() == Ok("vm");
    for t in v["sets"].as_array().unwrap() {
        let chosen = &t["plan"]["choices"][0]["chosen"];
        if t["set"] == "vhost" || t["set"] == "ovs" {
            // A module's functions and tracepoints only: the VM tier has it, this host not.
            assert_eq!(t["can_run"], vm, "{t:#?}");
            if vm {
                assert!(["tp_btf", "fentry", "kprobe"].contains(&chosen["kind"].as_str().unwrap()));
            }
            continue;
        }
        assert_eq!(t["can_run"], true, "{t:#?}");
        // Tracepoint-first: this host has neither fentry nor kprobes, and every set runs.
        let tracepoint_first = ["tp_btf", "tracepoint", "perf_event", "uprobe", "uretprobe"];
        for c in t["plan"]["choices"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|_| !vm)
        {
            let kind = &c["chosen"]["kind"];
            assert!(
                kind.is_null() && c["required"] == false
                    || tracepoint_first.contains(&kind.as_str().unwrap_or("")),
                "{}: {c:#?}",
                t["set"]
            );
        }
    }
    let plan = run_tool(SUMMARY, &["--list-probes"]);
    assert!(plan.status.success());
    assert!(plan.stdout[0].contains("kfree_skb"), "{:?}", plan.stdout);
}

fn mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[test]
fn eth_drop_rate_limit_counts_what_it_does_not_show() {
    require_root();
    let lab = Lab::new("rate");
    let drops = Drops::new(&lab, "r");
    let tool = ToolRun::start(
        ETH_DROP,
        &["--netns", &lab.b, "--json", "--max-events-per-sec", "4"],
    );
    drops.no_socket(40, 9);
    let out = tool.stop(Signal::SIGINT);
    assert!(out.status.success(), "{:?}", out.stderr);
    let json = out.json();
    let shown = json.iter().filter(|v| v["type"] == "drop").count() as u64;
    let end = json
        .iter()
        .find(|v| v["type"] == "summary")
        .expect("summary");
    let limited = end["rate_limited"].as_u64().unwrap();
    assert_eq!(end["events"], shown);
    assert!((1..=4).contains(&shown), "{shown} shown");
    assert_eq!(shown + limited, 40, "every drop is shown or counted: {end}");
}

#[test]
fn namespaces_are_matched_by_cookie_where_the_kernel_has_one() {
    require_root();
    let lab = Lab::new("cki");
    let out = run_tool(SUMMARY, &["--netns", &lab.b, "-d", "0.3"]);
    assert!(out.status.success(), "{:?}", out.stderr);
    let header = out
        .stdout
        .iter()
        .find(|l| l.starts_with("filter:"))
        .expect("filter header");
    // SO_NETNS_COOKIE (5.14+): where user space can learn a cookie, the filter must use it.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut cookie = 0u64;
    let mut len = 8 as libc::socklen_t;
    // SAFETY: an 8-byte buffer for the option value.
    let rc = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            libc::SOL_SOCKET,
            71,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        assert!(header.contains("netns_cookie="), "{header}");
    }
    assert!(header.contains("netns="), "{header}");
}

/// Connects over TCP from namespace a to a closed port in b `n` times (each SYN is freed in
/// tcp_v4_rcv and answered with a RST).
fn tcp_to_closed_port(lab: &Lab, n: usize) {
    let dst = SocketAddrV4::new(lab.b_ip, 9);
    in_netns(&lab.a, move || {
        for _ in 0..n {
            let r = std::net::TcpStream::connect_timeout(&dst.into(), Duration::from_secs(2));
            assert!(r.is_err(), "nothing listens on {dst}");
        }
    });
}

#[test]
fn normal_frees_are_told_from_drops() {
    require_root();
    let lab = Lab::new("nrm");
    let x = Expect::of_this_kernel();
    let tcp_frees = |extra: &[&str]| -> Vec<Value> {
        let mut args = vec!["--netns", lab.b.as_str(), "--json", "--l4-protocol", "tcp"];
        args.extend_from_slice(extra);
        let tool = ToolRun::start(ETH_DROP, &args);
        tcp_to_closed_port(&lab, 3);
        let out = tool.stop(Signal::SIGINT);
        assert!(out.status.success(), "{:?}", out.stderr);
        out.json()
            .into_iter()
            .filter(|v| v["type"] == "drop" && v["location_func"] == "tcp_v4_rcv")
            .collect()
    };
    let default = tcp_frees(&[]);
    let all = tcp_frees(&["--disable-normal-filter"]);
    if x.reasons {
        // The reason says it: a SYN to a closed port is a NO_SOCKET drop, reported either way.
        assert_eq!(default.len(), 3, "{default:#?}");
        assert!(default.iter().all(|e| e["reason"] == "NO_SOCKET"));
        assert!(all.len() >= 3, "{all:#?}");
    } else {
        // No reason before 5.17: frees in tcp_v4_rcv are normal frees to the seed's filter,
        // which runs in BPF, unless --disable-normal-filter.
        assert!(default.is_empty(), "{default:#?}");
        assert_eq!(all.len(), 3, "{all:#?}");
        assert!(all.iter().all(|e| e["reason"] == "-"));
    }
}
