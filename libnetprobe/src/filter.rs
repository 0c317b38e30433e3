//! The packet filter shared by every probe set: typed, validated, then written into `.rodata`.
use crate::error::{Error, Result};
use crate::kernel::netns::Netns;
use clap::{Args, ValueEnum};
use serde::Serialize;
use std::net::IpAddr;
use std::str::FromStr;

/// An address with a prefix length: `10.0.0.1`, `10.0.0.0/8`, `fd00::/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    /// The address.
    pub addr: IpAddr,
    /// Prefix length in bits.
    pub prefix: u8,
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("'{s}' is not an IPv4/IPv6 address or CIDR"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("'{s}': prefix length must be 0..={max}")),
            },
        };
        Ok(Self { addr, prefix })
    }
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let max = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.prefix == max {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

impl IpNet {
    /// (l3 code as in BPF, address bytes, mask bytes), 16 bytes each, IPv4 in the first 4.
    pub fn to_bpf(&self) -> (u8, [u8; 16], [u8; 16]) {
        let mut addr = [0u8; 16];
        let mut mask = [0u8; 16];
        let l3 = match self.addr {
            IpAddr::V4(a) => {
                addr[..4].copy_from_slice(&a.octets());
                4
            }
            IpAddr::V6(a) => {
                addr.copy_from_slice(&a.octets());
                6
            }
        };
        for bit in 0..self.prefix as usize {
            mask[bit / 8] |= 0x80 >> (bit % 8);
        }
        for (a, m) in addr.iter_mut().zip(mask) {
            *a &= m;
        }
        (l3, addr, mask)
    }
}

/// L4 protocol filter values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum L4Protocol {
    /// Any protocol.
    #[default]
    All,
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP and ICMPv6.
    Icmp,
}

impl L4Protocol {
    /// IP protocol number, 0 for all.
    pub fn number(self) -> u8 {
        match self {
            L4Protocol::All => 0,
            L4Protocol::Tcp => 6,
            L4Protocol::Udp => 17,
            L4Protocol::Icmp => 1,
        }
    }
}

/// Parses a TCP/UDP port (`0..=65535`), for clap.
pub fn parse_port(s: &str) -> std::result::Result<u16, String> {
    match s.parse::<u32>() {
        Ok(p) if p <= 65535 => Ok(p as u16),
        Ok(p) => Err(format!("port {p} is out of range 0..=65535")),
        Err(_) => Err(format!("'{s}' is not a port number")),
    }
}

/// Packet filter flags, flattened into every tool.
#[derive(Debug, Clone, Default, Args)]
pub struct FilterArgs {
    /// Source IP address or CIDR (IPv4 or IPv6)
    #[arg(long, value_name = "IP[/LEN]")]
    pub src_ip: Option<IpNet>,
    /// Destination IP address or CIDR (IPv4 or IPv6)
    #[arg(long, value_name = "IP[/LEN]")]
    pub dst_ip: Option<IpNet>,
    /// Source port (TCP/UDP)
    #[arg(long, value_name = "PORT", value_parser = parse_port)]
    pub src_port: Option<u16>,
    /// Destination port (TCP/UDP)
    #[arg(long, value_name = "PORT", value_parser = parse_port)]
    pub dst_port: Option<u16>,
    /// L4 protocol
    #[arg(long, value_enum, default_value_t = L4Protocol::All, value_name = "PROTO")]
    pub l4_protocol: L4Protocol,
    /// Only packets on this interface (resolved in --netns if given, else in the tool's namespace)
    #[arg(short = 'n', long, visible_alias = "name", value_name = "IFNAME")]
    pub interface: Option<String>,
    /// Only packets in this network namespace: a name from 'ip netns list' or a PID
    #[arg(long, value_name = "NAME|PID")]
    pub netns: Option<String>,
}

/// A validated filter: names resolved to kernel identifiers.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Source network.
    pub src: Option<IpNet>,
    /// Destination network.
    pub dst: Option<IpNet>,
    /// Source port.
    pub src_port: Option<u16>,
    /// Destination port.
    pub dst_port: Option<u16>,
    /// L4 protocol.
    pub l4: L4Protocol,
    /// Namespace filter (also where the interface name was resolved).
    pub netns: Option<Netns>,
    /// Interface (ifindex, name); always paired with a namespace.
    pub interface: Option<(u32, String)>,
}

impl Filter {
    /// Validates the flags and resolves namespace and interface.
    pub fn resolve(args: &FilterArgs) -> Result<Self> {
        if let (Some(s), Some(d)) = (args.src_ip, args.dst_ip) {
            if s.addr.is_ipv4() != d.addr.is_ipv4() {
                return Err(Error::usage(
                    "--src-ip and --dst-ip mix IPv4 and IPv6: no packet can match both",
                ));
            }
        }
        if args.l4_protocol == L4Protocol::Icmp
            && (args.src_port.is_some() || args.dst_port.is_some())
        {
            return Err(Error::usage(
                "--src-port/--dst-port conflict with --l4-protocol icmp (ICMP has no ports)",
            ));
        }
        let mut netns = match &args.netns {
            Some(spec) => Some(Netns::resolve(spec)?),
            None => None,
        };
        let interface = match &args.interface {
            Some(name) => {
                if name.is_empty() || name.len() > 15 {
                    return Err(Error::usage(format!(
                        "--interface '{name}': not a valid interface name"
                    )));
                }
                let ns = match &netns {
                    Some(ns) => ns.clone(),
                    None => Netns::current()?,
                };
                let idx = ns.ifindex(name)?;
                netns = Some(ns);
                Some((idx, name.clone()))
            }
            None => None,
        };
        Ok(Self {
            src: args.src_ip,
            dst: args.dst_ip,
            src_port: args.src_port,
            dst_port: args.dst_port,
            l4: args.l4_protocol,
            netns,
            interface,
        })
    }

    /// One-line description for report headers.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(ns) = &self.netns {
            parts.push(format!("netns={} ({})", ns.label, ns.inode));
            if let Some(c) = ns.cookie {
                parts.push(format!("netns_cookie={c}"));
            }
        }
        if let Some((idx, name)) = &self.interface {
            parts.push(format!("dev={name} (ifindex {idx})"));
        }
        if self.l4 != L4Protocol::All {
            parts.push(format!("proto={:?}", self.l4).to_lowercase());
        }
        if let Some(s) = &self.src {
            parts.push(format!("src={s}"));
        }
        if let Some(d) = &self.dst {
            parts.push(format!("dst={d}"));
        }
        if let Some(p) = self.src_port {
            parts.push(format!("sport={p}"));
        }
        if let Some(p) = self.dst_port {
            parts.push(format!("dport={p}"));
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(" ")
        }
    }
}

/// Writes a [`Filter`] into a skeleton's generated `np_filter` struct (every set has its own
/// generated type with the same fields, from `bpf/include/np_types.h`).
#[macro_export]
macro_rules! write_np_filter {
    ($dst:expr, $filter:expr) => {{
        let f: &$crate::filter::Filter = $filter;
        let d = &mut $dst;
        if let Some(src) = f.src {
            let (l3, a, m) = src.to_bpf();
            d.src_l3 = l3;
            d.src_addr = a;
            d.src_mask = m;
        }
        if let Some(dst) = f.dst {
            let (l3, a, m) = dst.to_bpf();
            d.dst_l3 = l3;
            d.dst_addr = a;
            d.dst_mask = m;
        }
        if let Some(p) = f.src_port {
            d.has_src_port = 1;
            d.src_port = p;
        }
        if let Some(p) = f.dst_port {
            d.has_dst_port = 1;
            d.dst_port = p;
        }
        d.l4proto = f.l4.number();
        d.netns = f.netns.as_ref().map(|n| n.inode).unwrap_or(0);
        d.netns_cookie = f.netns.as_ref().and_then(|n| n.cookie).unwrap_or(0);
        d.ifindex = f.interface.as_ref().map(|i| i.0).unwrap_or(0);
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses_and_cidrs() {
        let n: IpNet = "10.1.2.3/8".parse().unwrap();
        let (l3, a, m) = n.to_bpf();
        assert_eq!(l3, 4);
        assert_eq!(&a[..4], &[10, 0, 0, 0]);
        assert_eq!(&m[..4], &[255, 0, 0, 0]);
        let n6: IpNet = "fd00::1/64".parse().unwrap();
        let (l3, _, m) = n6.to_bpf();
        assert_eq!(l3, 6);
        assert_eq!(m[7], 0xff);
        assert_eq!(m[8], 0);
        assert!("10.0.0.1/33".parse::<IpNet>().is_err());
        assert!("10.0.0.256".parse::<IpNet>().is_err());
        assert_eq!("1.2.3.4".parse::<IpNet>().unwrap().to_string(), "1.2.3.4");
    }

    #[test]
    fn ports_are_range_checked() {
        assert_eq!(parse_port("80"), Ok(80));
        assert!(parse_port("70000").is_err());
        assert!(parse_port("-1").is_err());
    }
}
