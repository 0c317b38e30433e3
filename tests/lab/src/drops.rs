//! The five kinds of drop every test can induce in a [`Lab`], each confirmed by the kernel's
//! own counter for it (the readiness signal that the drops happened, never a sleep).
use crate::*;
use serde_json::Value;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);
/// The EtherType of [`Drops::unknown_ethertype`]'s frames.
pub const UNKNOWN_ETHERTYPE: u16 = 0x88b5;

/// A receive counter of the link's 64-bit stats (`ip -s -s -j link`); absent counters are 0.
pub fn rx_stat64(ns: &str, ifname: &str, key: &str) -> u64 {
    rx_stat64_opt(ns, ifname, key).unwrap_or(0)
}

/// A receive counter of the link's 64-bit stats, `None` when this kernel has no such counter.
pub fn rx_stat64_opt(ns: &str, ifname: &str, key: &str) -> Option<u64> {
    let out = ns_exec(ns, &["ip", "-s", "-s", "-j", "link", "show", "dev", ifname]);
    let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    v[0]["stats64"]["rx"][key].as_u64()
}

/// The five kinds of drop every test can induce in a lab, with the kernel's own counters as
/// the readiness signal that the drops happened.
pub struct Drops<'a> {
    /// The lab the drops happen in (in namespace b).
    pub lab: &'a Lab,
    /// The unread tap whose full ring drops.
    pub tap: Tap,
    /// The tap's (never answering) peer.
    pub tap_peer: Ipv4Addr,
    /// An address on the veth's subnet whose MAC is not vb's: received as otherhost.
    pub otherhost: Ipv4Addr,
}

impl<'a> Drops<'a> {
    /// txqueuelen of the unread tap.
    pub const TAP_QUEUE: u32 = 8;
    /// UDP port namespace b's nft rule drops.
    pub const NFT_PORT: u16 = 7777;

    /// Builds the tap, neighbours and nft rule in `lab`.
    pub fn new(lab: &'a Lab, tag: &str) -> Self {
        let n = lab.a_ip.octets()[2];
        let tap_name = format!("npt{}{}", tag, std::process::id() % 100_000);
        let tap = Tap::create_unread(
            &lab.b,
            &tap_name,
            Self::TAP_QUEUE,
            &format!("198.19.{n}.1/24"),
        );
        let tap_peer = Ipv4Addr::new(198, 19, n, 2);
        ns_exec(
            &lab.b,
            &[
                "ip",
                "neigh",
                "add",
                &tap_peer.to_string(),
                "lladdr",
                "02:00:00:00:00:02",
                "dev",
                &tap.name,
            ],
        );
        let otherhost = Ipv4Addr::new(198, 18, n, 3);
        ns_exec(
            &lab.a,
            &[
                "ip",
                "neigh",
                "add",
                &otherhost.to_string(),
                "lladdr",
                "02:00:00:00:00:33",
                "dev",
                Lab::A_IF,
            ],
        );
        nft_drop_udp_dport(&lab.b, Self::NFT_PORT);
        Drops {
            lab,
            tap,
            tap_peer,
            otherhost,
        }
    }

    /// `n` UDP datagrams to a closed port of b (NO_SOCKET).
    pub fn no_socket(&self, n: usize, port: u16) {
        let before = snmp_udp_noports(&self.lab.b);
        send_udp(
            &self.lab.a,
            None,
            SocketAddrV4::new(self.lab.b_ip, port),
            n,
            32,
        );
        wait_until("UDP NoPorts", WAIT, || {
            snmp_udp_noports(&self.lab.b) >= before + n as u64
        });
    }

    /// `n` datagrams the nft rule drops (NETFILTER_DROP).
    pub fn netfilter(&self, n: usize) {
        let before = nft_counter_packets(&self.lab.b);
        send_udp(
            &self.lab.a,
            None,
            SocketAddrV4::new(self.lab.b_ip, Self::NFT_PORT),
            n,
            32,
        );
        wait_until("nft counter", WAIT, || {
            nft_counter_packets(&self.lab.b) >= before + n as u64
        });
    }

    /// `n` datagrams for another host's MAC (OTHERHOST).
    pub fn otherhost(&self, n: usize) {
        // rx_otherhost_dropped exists since 5.19; before it, vb's rx_packets (the veth hands
        // the packet to the stack in the sender's softirq, so it is dropped by then).
        let key = match rx_stat64_opt(&self.lab.b, Lab::B_IF, "otherhost") {
            Some(_) => "otherhost",
            None => "packets",
        };
        let before = rx_stat64(&self.lab.b, Lab::B_IF, key);
        send_udp(
            &self.lab.a,
            None,
            SocketAddrV4::new(self.otherhost, 4444),
            n,
            32,
        );
        wait_until("rx otherhost", WAIT, || {
            rx_stat64(&self.lab.b, Lab::B_IF, key) >= before + n as u64
        });
    }

    /// `n` frames of an unknown EtherType (UNHANDLED_PROTO).
    pub fn unknown_ethertype(&self, n: usize) {
        let before = rx_stat64(&self.lab.b, Lab::B_IF, "dropped");
        let frame = eth_frame(
            self.lab.b_mac,
            self.lab.a_mac,
            UNKNOWN_ETHERTYPE,
            b"netprobe",
        );
        send_raw_frames(&self.lab.a, Lab::A_IF, &frame, n);
        wait_until("rx dropped", WAIT, || {
            rx_stat64(&self.lab.b, Lab::B_IF, "dropped") >= before + n as u64
        });
    }

    /// Sends `n` datagrams into the unread tap; returns how many the full ring dropped.
    pub fn full_ring(&self, n: usize) -> u64 {
        let before = read_stat(&self.lab.b, &self.tap.name, "tx_dropped");
        send_udp(
            &self.lab.b,
            None,
            SocketAddrV4::new(self.tap_peer, 5555),
            n,
            32,
        );
        let expect = before + (n as u64).saturating_sub(u64::from(Self::TAP_QUEUE));
        wait_until("tap tx_dropped", WAIT, || {
            read_stat(&self.lab.b, &self.tap.name, "tx_dropped") >= expect
        });
        read_stat(&self.lab.b, &self.tap.name, "tx_dropped") - before
    }
}

/// What the running kernel reports for the lab's drops: reason names where kfree_skb has a
/// reason argument (5.17+), only locations before.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    /// Does kfree_skb carry a drop reason here?
    pub reasons: bool,
}

impl Expect {
    /// Reads the kfree_skb tracepoint's format (mounting tracefs if needed).
    pub fn of_this_kernel() -> Self {
        let paths = [
            "/sys/kernel/tracing/events/skb/kfree_skb/format",
            "/sys/kernel/debug/tracing/events/skb/kfree_skb/format",
        ];
        if !paths.iter().any(|p| std::path::Path::new(p).exists()) {
            let _ = std::process::Command::new("mount")
                .args(["-t", "tracefs", "tracefs", "/sys/kernel/tracing"])
                .status();
        }
        let format = paths
            .iter()
            .find_map(|p| std::fs::read_to_string(p).ok())
            .expect("the skb:kfree_skb tracepoint format (tracefs)");
        Self {
            reasons: format.contains(" reason;"),
        }
    }

    /// The reason a tool shows for a drop of reason `name`: the name, or `-` without reasons.
    pub fn reason<'a>(&self, name: &'a str) -> &'a str {
        if self.reasons {
            name
        } else {
            "-"
        }
    }

    /// Where the nft rule's drops are located: `nft_do_chain` where the kernel passes a
    /// reason (it frees there), `nf_hook_slow` before.
    pub fn netfilter_location(&self) -> &'static str {
        if self.reasons {
            "nft_do_chain"
        } else {
            "nf_hook_slow"
        }
    }

    /// The kind of a drop entry or event (`"NO_SOCKET"`, ...): its reason, or without reasons
    /// the kind its location stands for in the lab.
    pub fn kind(&self, v: &Value) -> String {
        let reason = v["reason"].as_str().unwrap_or_default();
        if self.reasons {
            return reason.to_string();
        }
        assert_eq!(reason, "-", "a kernel without reasons shows '-': {v}");
        let loc = v["location_func"].as_str().unwrap_or_default();
        match loc {
            "__udp4_lib_rcv" | "udp_rcv" => "NO_SOCKET",
            "nft_do_chain" | "nf_hook_slow" => "NETFILTER_DROP",
            "ip_rcv_core" | "ip_rcv" => "OTHERHOST",
            "__netif_receive_skb_core" => "UNHANDLED_PROTO",
            "tun_net_xmit" => "FULL_RING",
            other => return format!("UNEXPECTED at {other}"),
        }
        .to_string()
    }

    /// Is `loc` where this kernel drops `kind`?
    pub fn located(&self, kind: &str, loc: &str) -> bool {
        match kind {
            // 7.x inlines __udp4_lib_rcv into udp_rcv.
            "NO_SOCKET" => loc == "__udp4_lib_rcv" || loc == "udp_rcv",
            "NETFILTER_DROP" => loc == self.netfilter_location(),
            "OTHERHOST" => loc == "ip_rcv_core" || (!self.reasons && loc == "ip_rcv"),
            "UNHANDLED_PROTO" => loc == "__netif_receive_skb_core",
            "FULL_RING" => loc == "tun_net_xmit",
            _ => false,
        }
    }
}
