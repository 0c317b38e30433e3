//! Domain view of the packet structs that every set shares.
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Decoded flow fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FlowView {
    /// `ipv4`, `ipv6`, `arp` or `other`.
    pub l3: &'static str,
    /// EtherType as `0x0800` (`0x0004` is 802.2 LLC).
    pub ethertype: String,
    /// `tcp`, `udp`, `icmp`, `icmpv6`, a number, or empty when not IP.
    pub l4_protocol: String,
    /// Source address (IP or ARP sender).
    pub src_ip: Option<String>,
    /// Destination address (IP or ARP target).
    pub dst_ip: Option<String>,
    /// Source port.
    pub src_port: Option<u16>,
    /// Destination port.
    pub dst_port: Option<u16>,
}

/// Name of an IP protocol number.
pub fn l4_name(proto: u8) -> String {
    match proto {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmpv6".into(),
        132 => "sctp".into(),
        n => n.to_string(),
    }
}

/// Name of a well-known EtherType.
pub fn ethertype_name(t: u16) -> &'static str {
    match t {
        0x0800 => "IPv4",
        0x86dd => "IPv6",
        0x0806 => "ARP",
        0x8035 => "RARP",
        0x88cc => "LLDP",
        0x8100 => "802.1Q",
        0x88a8 => "802.1ad",
        0x0004 => "802.2 LLC",
        0x0001 => "802.3",
        0x8808 => "flow control",
        _ => "unknown",
    }
}

impl FlowView {
    /// Decodes the raw fields of an `np_flow`.
    pub fn decode(
        saddr: &[u8; 16],
        daddr: &[u8; 16],
        sport: u16,
        dport: u16,
        ethertype: u16,
        l3: u8,
        l4: u8,
    ) -> Self {
        use crate::skel::kit::types::np_l3;
        let l3 = np_l3(u32::from(l3));
        let ip = |a: &[u8; 16]| -> IpAddr {
            if l3 == np_l3::NP_L3_IPV6 {
                IpAddr::V6(Ipv6Addr::from(*a))
            } else {
                IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
            }
        };
        let (l3name, addrs, ports) = match l3 {
            np_l3::NP_L3_IPV4 => ("ipv4", true, matches!(l4, 6 | 17 | 132)),
            np_l3::NP_L3_IPV6 => ("ipv6", true, matches!(l4, 6 | 17 | 132)),
            np_l3::NP_L3_ARP => ("arp", true, false),
            _ => ("other", false, false),
        };
        Self {
            l3: l3name,
            ethertype: format!("0x{ethertype:04x}"),
            l4_protocol: if matches!(l3, np_l3::NP_L3_IPV4 | np_l3::NP_L3_IPV6) {
                l4_name(l4)
            } else {
                String::new()
            },
            src_ip: addrs.then(|| ip(saddr).to_string()),
            dst_ip: addrs.then(|| ip(daddr).to_string()),
            src_port: ports.then_some(sport),
            dst_port: ports.then_some(dport),
        }
    }

    /// `udp 10.0.0.1:5000 -> 10.0.0.2:53`, `arp 10.0.0.1 -> 10.0.0.2`, `0x88b5 (unknown)`.
    pub fn describe(&self) -> String {
        match (&self.src_ip, &self.dst_ip) {
            (Some(s), Some(d)) => {
                let proto = if self.l3 == "arp" {
                    "arp"
                } else {
                    self.l4_protocol.as_str()
                };
                match (self.src_port, self.dst_port) {
                    (Some(sp), Some(dp)) => format!("{proto} {s}:{sp} -> {d}:{dp}"),
                    _ => format!("{proto} {s} -> {d}"),
                }
            }
            _ => {
                let t =
                    u16::from_str_radix(self.ethertype.trim_start_matches("0x"), 16).unwrap_or(0);
                format!("{} ({})", self.ethertype, ethertype_name(t))
            }
        }
    }
}

/// Decodes any skeleton's generated `np_flow` (each set's skeleton has its own copy of the
/// type, with the same fields) into a [`FlowView`].
#[macro_export]
macro_rules! flow_view {
    ($f:expr) => {{
        let f = &$f;
        $crate::sets::flow::FlowView::decode(
            &f.saddr,
            &f.daddr,
            f.sport,
            f.dport,
            f.ethertype,
            f.l3,
            f.l4proto,
        )
    }};
}

/// TCP flags as letters (`S`, `A`, `F`, `R`, `P`, `U`, `E`, `C`).
pub fn tcp_flags(f: u8) -> String {
    const NAMES: [(u8, char); 8] = [
        (0x01, 'F'),
        (0x02, 'S'),
        (0x04, 'R'),
        (0x08, 'P'),
        (0x10, 'A'),
        (0x20, 'U'),
        (0x40, 'E'),
        (0x80, 'C'),
    ];
    NAMES
        .iter()
        .filter(|(bit, _)| f & bit != 0)
        .map(|(_, c)| *c)
        .collect()
}

/// A NUL-terminated C string from a BPF struct (`comm`, `ifname`).
pub fn cstr(bytes: &[i8]) -> String {
    let b: Vec<u8> = bytes
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&b).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_ipv4_udp() {
        let mut s = [0u8; 16];
        let mut d = [0u8; 16];
        s[..4].copy_from_slice(&[10, 0, 0, 1]);
        d[..4].copy_from_slice(&[10, 0, 0, 2]);
        let f = FlowView::decode(&s, &d, 5000, 53, 0x0800, 4, 17);
        assert_eq!(f.describe(), "udp 10.0.0.1:5000 -> 10.0.0.2:53");
        let o = FlowView::decode(&s, &d, 0, 0, 0x88b5, 0, 0);
        assert_eq!(o.describe(), "0x88b5 (unknown)");
        assert_eq!(o.src_ip, None);
    }
}
