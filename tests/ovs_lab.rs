//! The Open vSwitch kernel-datapath fixture (`netprobe_lab::ovs`) against the real
//! `openvswitch` module: two namespaces whose veth peers are ports of one datapath, pinged
//! across with flows installed up front and with a reactive upcall handler.
//!
//! Where the tests run decides what they assert, never silently:
//! - VM tier (`NETPROBE_TEST_TIER=vm`, set by `tests/vm/init`, which loads `openvswitch`
//!   up front): the module must be there, and the datapath tests run.
//! - Elsewhere: `modprobe openvswitch` is tried. If the module then exists
//!   (`/sys/module/openvswitch`) the datapath tests run here too; if not (the development
//!   host's kernel has no such module), each test asserts that `OvsDatapath::create` fails
//!   with the "openvswitch module not loaded" error and leaves nothing behind.
//!
//! Needs root (CI runs as root): without it every test fails, none is skipped.
use netprobe_lab::latency::ping;
use netprobe_lab::ovs::{kernel_has_ovs, FlowMatch, OvsDatapath, OvsError, OvsLab, UpcallMode};
use netprobe_lab::wait_until;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_ARP: u16 = 0x0806;

fn lab(tag: &str) -> OvsLab {
    OvsLab::new(tag).unwrap_or_else(|e| panic!("OVS lab: {e}"))
}

/// Pings b from a `count` times and asserts every echo got exactly one reply.
fn ping_all(lab: &OvsLab, count: u32) {
    let replies = ping(&lab.a, lab.b_ip, count, 200);
    let seqs: Vec<u16> = replies
        .iter()
        .filter(|r| !r.duplicate)
        .map(|r| r.seq)
        .collect();
    assert_eq!(seqs, (1..=count as u16).collect::<Vec<_>>(), "{replies:?}");
    assert!(replies.iter().all(|r| !r.duplicate), "{replies:?}");
}

#[test]
fn preinstalled_flows_forward_without_upcalls() {
    if !kernel_has_ovs() {
        return;
    }
    let lab = lab("pre");
    lab.dp.forward_between(lab.a_port, lab.b_port).unwrap();
    // The same flow again is refused: NLM_F_CREATE makes the kernel say EEXIST.
    let again = lab.dp.add_flow(&FlowMatch::in_port(lab.a_port), lab.b_port);
    assert!(
        matches!(
            again,
            Err(OvsError::Kernel {
                errno: libc::EEXIST,
                ..
            })
        ),
        "{again:?}"
    );
    ping_all(&lab, 5);
    let up = lab.dp.upcall_stats();
    assert_eq!(up.upcalls, 0, "{up:?}");
    assert!(up.errors.is_empty(), "{up:?}");
    let st = lab.dp.stats().unwrap();
    assert_eq!((st.missed, st.lost, st.flows), (0, 0, 2), "{st:?}");
    // 5 echo requests, 5 replies, ARP request and reply.
    assert!(st.hit >= 12, "{st:?}");
}

#[test]
fn reactive_handler_installs_one_megaflow_per_upcall() {
    if !kernel_has_ovs() {
        return;
    }
    let lab = lab("rea");
    let (a, b) = (lab.a_port, lab.b_port);
    lab.dp.set_upcall_mode(UpcallMode::Reactive {
        pairs: vec![(a, b)],
    });
    ping_all(&lab, 5);
    let up = lab.dp.upcall_stats();
    assert!(up.errors.is_empty(), "{up:?}");
    let flows: BTreeSet<FlowMatch> = up.flows_installed.iter().copied().collect();
    assert_eq!(
        flows.len(),
        up.flows_installed.len(),
        "installed twice: {up:?}"
    );
    // ARP request a->b, ARP reply b->a, then the echoes and their replies: the first
    // packet of each megaflow upcalls, the rest hit it.
    let expect: BTreeSet<FlowMatch> =
        [(a, ETH_P_ARP), (b, ETH_P_ARP), (a, ETH_P_IP), (b, ETH_P_IP)]
            .into_iter()
            .map(|(p, t)| FlowMatch::in_port(p).with_eth_type(t))
            .collect();
    assert_eq!(flows, expect, "{up:?}");
    assert_eq!(up.upcalls, up.flows_installed.len() as u64, "{up:?}");
    assert_eq!((up.executed, up.repeated), (up.upcalls, 0), "{up:?}");
    let st = lab.dp.stats().unwrap();
    assert_eq!(
        (st.missed, st.lost, st.flows),
        (up.upcalls, 0, up.flows_installed.len() as u64),
        "{st:?}"
    );

    // Later packets are not upcalled: they all hit the megaflows.
    ping_all(&lab, 5);
    let later = lab.dp.upcall_stats();
    assert_eq!(later.upcalls, up.upcalls, "{later:?}");
    let st2 = lab.dp.stats().unwrap();
    assert_eq!(st2.missed, st.missed, "{st2:?}");
    assert!(st2.hit >= st.hit + 10, "{st:?} -> {st2:?}");
}

#[test]
fn datapath_is_deleted_on_drop_and_on_panic() {
    if !kernel_has_ovs() {
        return;
    }
    let pid = std::process::id() % 100_000;
    let gone = |name: &str| !Path::new("/sys/class/net").join(name).exists();
    let name = format!("npd{pid}");
    {
        let dp = OvsDatapath::create(&name).unwrap();
        assert!(
            !gone(&name),
            "the datapath's internal port 0 is an interface"
        );
        let port = dp.add_internal_port(&format!("npi{pid}")).unwrap();
        assert!(port > 0, "port 0 is the datapath's own");
        let dup = OvsDatapath::create(&name);
        assert!(
            matches!(
                dup,
                Err(OvsError::Kernel {
                    errno: libc::EEXIST,
                    ..
                })
            ),
            "{:?}",
            dup.err()
        );
    }
    wait_until("datapath deleted", Duration::from_secs(5), || {
        gone(&name) && gone(&format!("npi{pid}"))
    });
    let name = format!("npp{pid}");
    let caught = std::panic::catch_unwind(|| {
        let _dp = OvsDatapath::create(&name).unwrap();
        panic!("test failure while the datapath exists");
    });
    assert!(caught.is_err());
    wait_until(
        "datapath deleted while unwinding",
        Duration::from_secs(5),
        || gone(&name),
    );
}
