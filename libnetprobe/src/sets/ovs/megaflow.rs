//! New megaflows as user space (ovs-vswitchd) installs them: each `OVS_FLOW_CMD_NEW` request's
//! key, mask and actions, decoded from its netlink attributes and written the way
//! `ovs-dpctl dump-flows` writes a flow, with the upcall that asked for it: the oldest miss
//! still waiting whose packet the new flow matches (its key under the flow's mask).
use super::{is_miss, OvsProbe, UNANSWERED_AFTER};
use crate::kit::BpfStats;
use crate::probe::Plan;
use crate::run::EventSource;
use crate::skel::ovs::types;
use serde::Serialize;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// JSON `type` of a megaflow event.
pub const KIND: &str = "megaflow";

/// One field of a flow's match: `eth.src`, its value and, when the mask is partial, the mask.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MatchField {
    /// `attribute.field` (`ipv4.src`), or the attribute for one-value ones (`in_port`).
    pub name: String,
    /// The value, as dpctl writes it.
    pub value: String,
    /// The mask where it is neither all ones nor all zeros (then the field is absent).
    pub mask: Option<String>,
}

/// A new megaflow.
#[derive(Debug, Clone, Serialize)]
pub struct Megaflow {
    /// Monotonic time of the request, ns.
    pub ts_ns: u64,
    /// CPU it ran on.
    pub cpu: u32,
    /// The installing process (ovs-vswitchd) and thread (a handler or revalidator).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Thread name.
    pub comm: String,
    /// The flow's unique id (hex), where user space gave one.
    pub ufid: Option<String>,
    /// The match, as `ovs-dpctl dump-flows` writes it: wildcarded fields left out.
    #[serde(rename = "match")]
    pub flow: String,
    /// The fields of the match.
    pub fields: Vec<MatchField>,
    /// The actions (`3`, `drop`, `userspace(pid=…)`, comma-separated).
    pub actions: String,
    /// A part of the request was longer than its copy (the decoded part is shown).
    pub truncated: bool,
    /// The miss this flow answers, if one was seen.
    pub upcall: Option<AnsweredUpcall>,
}

/// The upcall a new megaflow answered.
#[derive(Debug, Clone, Serialize)]
pub struct AnsweredUpcall {
    /// Monotonic time of the upcall, ns.
    pub ts_ns: u64,
    /// Upcall → install, µs.
    pub latency_us: f64,
    /// The handler's netlink port the upcall went to.
    pub portid: u32,
    /// The packet's flow as the datapath keyed it.
    #[serde(flatten)]
    pub flow: super::UpcallFlow,
    /// Its Ethernet source.
    pub eth_src: String,
    /// Its Ethernet destination.
    pub eth_dst: String,
}

// enum ovs_key_attr (UAPI).
const KEY_ENCAP: u16 = 1;
const KEY_PRIORITY: u16 = 2;
const KEY_IN_PORT: u16 = 3;
const KEY_ETHERNET: u16 = 4;
const KEY_VLAN: u16 = 5;
const KEY_ETHERTYPE: u16 = 6;
const KEY_IPV4: u16 = 7;
const KEY_IPV6: u16 = 8;
const KEY_TCP: u16 = 9;
const KEY_UDP: u16 = 10;
const KEY_ICMP: u16 = 11;
const KEY_ICMPV6: u16 = 12;
const KEY_ARP: u16 = 13;
const KEY_SKB_MARK: u16 = 15;
const KEY_SCTP: u16 = 17;
const KEY_TCP_FLAGS: u16 = 18;
const KEY_DP_HASH: u16 = 19;
const KEY_RECIRC_ID: u16 = 20;
const KEY_CT_STATE: u16 = 22;
const KEY_CT_ZONE: u16 = 23;
const KEY_CT_MARK: u16 = 24;
const KEY_CT_LABELS: u16 = 25;
const KEY_PACKET_TYPE: u16 = 29;

/// A field's raw value: bytes in message order (network order for packet fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Host-order integer of 1, 2 or 4 bytes, written in decimal.
    Dec,
    /// Host-order integer written in hex.
    Hex,
    /// Network-order integer written in decimal.
    BeDec,
    /// Network-order integer written in hex.
    BeHex,
    Mac,
    V4,
    V6,
    /// The IP fragment type (`no`, `first`, `later`).
    Frag,
    /// Bytes written as one hex number.
    Bytes,
}

/// Fields of one key attribute: name, offset, length, kind.
type Layout = &'static [(&'static str, usize, usize, Kind)];

/// The name and field layout of key attribute `ty`; `None` for those not decoded.
fn layout(ty: u16) -> Option<(&'static str, Layout)> {
    use Kind::*;
    Some(match ty {
        KEY_RECIRC_ID => ("recirc_id", &[("", 0, 4, Hex)]),
        KEY_DP_HASH => ("dp_hash", &[("", 0, 4, Hex)]),
        KEY_PRIORITY => ("skb_priority", &[("", 0, 4, Hex)]),
        KEY_IN_PORT => ("in_port", &[("", 0, 4, Dec)]),
        KEY_SKB_MARK => ("skb_mark", &[("", 0, 4, Hex)]),
        KEY_CT_STATE => ("ct_state", &[("", 0, 4, Hex)]),
        KEY_CT_ZONE => ("ct_zone", &[("", 0, 2, Hex)]),
        KEY_CT_MARK => ("ct_mark", &[("", 0, 4, Hex)]),
        KEY_CT_LABELS => ("ct_label", &[("", 0, 16, Bytes)]),
        KEY_PACKET_TYPE => ("packet_type", &[("", 0, 4, BeHex)]),
        KEY_ETHERNET => ("eth", &[("src", 0, 6, Mac), ("dst", 6, 6, Mac)]),
        KEY_VLAN => ("vlan", &[("tci", 0, 2, BeHex)]),
        KEY_ETHERTYPE => ("eth_type", &[("", 0, 2, BeHex)]),
        KEY_IPV4 => (
            "ipv4",
            &[
                ("src", 0, 4, V4),
                ("dst", 4, 4, V4),
                ("proto", 8, 1, Dec),
                ("tos", 9, 1, Hex),
                ("ttl", 10, 1, Dec),
                ("frag", 11, 1, Frag),
            ],
        ),
        KEY_IPV6 => (
            "ipv6",
            &[
                ("src", 0, 16, V6),
                ("dst", 16, 16, V6),
                ("label", 32, 4, BeHex),
                ("proto", 36, 1, Dec),
                ("tclass", 37, 1, Hex),
                ("hlimit", 38, 1, Dec),
                ("frag", 39, 1, Frag),
            ],
        ),
        KEY_TCP => ("tcp", &[("src", 0, 2, BeDec), ("dst", 2, 2, BeDec)]),
        KEY_UDP => ("udp", &[("src", 0, 2, BeDec), ("dst", 2, 2, BeDec)]),
        KEY_SCTP => ("sctp", &[("src", 0, 2, BeDec), ("dst", 2, 2, BeDec)]),
        KEY_TCP_FLAGS => ("tcp_flags", &[("", 0, 2, BeHex)]),
        KEY_ICMP => ("icmp", &[("type", 0, 1, Dec), ("code", 1, 1, Dec)]),
        KEY_ICMPV6 => ("icmpv6", &[("type", 0, 1, Dec), ("code", 1, 1, Dec)]),
        KEY_ARP => (
            "arp",
            &[
                ("sip", 0, 4, V4),
                ("tip", 4, 4, V4),
                ("op", 8, 2, BeDec),
                ("sha", 10, 6, Mac),
                ("tha", 16, 6, Mac),
            ],
        ),
        _ => return None,
    })
}

/// The netlink attributes in `buf`: (type without flag bits, payload). A cut-off tail ends
/// the walk.
fn attrs(buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= buf.len() {
        let len = usize::from(u16::from_ne_bytes([buf[at], buf[at + 1]]));
        let ty = u16::from_ne_bytes([buf[at + 2], buf[at + 3]]) & 0x3fff;
        if len < 4 || at + len > buf.len() {
            break;
        }
        out.push((ty, &buf[at + 4..at + len]));
        at += (len + 3) & !3;
    }
    out
}

fn uint(b: &[u8], big_endian: bool) -> u64 {
    let mut v = 0u64;
    if big_endian {
        for &x in b {
            v = v << 8 | u64::from(x);
        }
    } else {
        for &x in b.iter().rev() {
            v = v << 8 | u64::from(x);
        }
    }
    v
}

fn mac(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// C's `%#x`, as OVS writes hex: `0` for zero.
fn c_hex(v: u64) -> String {
    if v == 0 {
        "0".into()
    } else {
        format!("{v:#x}")
    }
}

fn render(kind: Kind, b: &[u8]) -> String {
    match kind {
        Kind::Dec => uint(b, false).to_string(),
        Kind::Hex => c_hex(uint(b, false)),
        Kind::BeDec => uint(b, true).to_string(),
        Kind::BeHex => format!("{:#0w$x}", uint(b, true), w = 2 + 2 * b.len()),
        Kind::Mac => mac(b),
        Kind::V4 => Ipv4Addr::from(<[u8; 4]>::try_from(b).unwrap_or_default()).to_string(),
        Kind::V6 => Ipv6Addr::from(<[u8; 16]>::try_from(b).unwrap_or_default()).to_string(),
        Kind::Bytes => {
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            let digits = hex.trim_start_matches('0');
            format!("0x{}", if digits.is_empty() { "0" } else { digits })
        }
        Kind::Frag => match b.first() {
            Some(0) => "no".into(),
            Some(1) => "first".into(),
            Some(2) => "later".into(),
            Some(x) => format!("{x:#x}"),
            None => String::new(),
        },
    }
}

/// The mask of a frag field is written as the values it admits (dpctl: `frag=no` when the
/// whole field is matched); other masks as values of their kind.
fn render_mask(kind: Kind, b: &[u8]) -> String {
    match kind {
        Kind::Frag | Kind::Dec | Kind::BeDec => c_hex(uint(b, kind == Kind::BeDec)),
        _ => render(kind, b),
    }
}

/// A flow's match from its key and mask attributes (no mask: every field exact, as the
/// kernel reads a request without one). Returns the fields and the dpctl text.
pub fn decode_match(key: &[u8], mask: Option<&[u8]>) -> (Vec<MatchField>, String) {
    let mask_attrs = mask.map(attrs);
    let mut fields = Vec::new();
    let mut text = String::new();
    for (ty, val) in attrs(key) {
        if ty == KEY_ENCAP {
            continue;
        }
        let m = match &mask_attrs {
            None => None,
            Some(ms) => match ms.iter().find(|(t, _)| *t == ty) {
                Some((_, m)) => Some(*m),
                None => continue, // not in the mask: wildcarded
            },
        };
        let Some((name, layout)) = layout(ty) else {
            if m.is_some_and(|m| m.iter().all(|&x| x == 0)) {
                continue;
            }
            if !text.is_empty() {
                text.push(',');
            }
            let hex: String = val.iter().map(|x| format!("{x:02x}")).collect();
            let _ = write!(text, "key{ty}(0x{hex})");
            continue;
        };
        let mut parts = Vec::new();
        for &(field, off, len, kind) in layout {
            let Some(v) = val.get(off..off + len) else {
                continue;
            };
            let mb = m.and_then(|m| m.get(off..off + len));
            // The kernel keeps the ARP opcode in 8 bits (sw_flow_key.ip.proto) and gives it
            // back so: dpctl shows the request's op under a 0xff mask.
            let arp_op = (ty == KEY_ARP && field == "op")
                .then(|| ([0, v[1]], [0, mb.map_or(0xff, |m| m[1])]));
            let (v, mb) = match &arp_op {
                Some((value, mask)) => (&value[..], Some(&mask[..])),
                None => (v, mb),
            };
            let (zero, ones) = match mb {
                None => (false, true),
                Some(mb) => (mb.iter().all(|&x| x == 0), mb.iter().all(|&x| x == 0xff)),
            };
            if zero {
                continue;
            }
            let value = render(kind, v);
            let mask = (!ones).then(|| render_mask(kind, mb.unwrap_or_default()));
            let shown = match &mask {
                Some(m) => format!("{value}/{m}"),
                None => value.clone(),
            };
            parts.push(if field.is_empty() {
                shown
            } else {
                format!("{field}={shown}")
            });
            fields.push(MatchField {
                name: if field.is_empty() {
                    name.to_string()
                } else {
                    format!("{name}.{field}")
                },
                value,
                mask,
            });
        }
        if parts.is_empty() {
            continue;
        }
        if !text.is_empty() {
            text.push(',');
        }
        let _ = write!(text, "{name}({})", parts.join(","));
    }
    (fields, text)
}

// enum ovs_action_attr (UAPI).
const ACTION_NAMES: [&str; 26] = [
    "unspec",
    "output",
    "userspace",
    "set",
    "push_vlan",
    "pop_vlan",
    "sample",
    "recirc",
    "hash",
    "push_mpls",
    "pop_mpls",
    "set_masked",
    "ct",
    "trunc",
    "push_eth",
    "pop_eth",
    "ct_clear",
    "push_nsh",
    "pop_nsh",
    "meter",
    "clone",
    "check_pkt_len",
    "add_mpls",
    "dec_ttl",
    "drop",
    "psample",
];

/// The actions as dpctl writes the common ones: an output is its port number, no action is
/// `drop`.
pub fn decode_actions(buf: &[u8]) -> String {
    let mut out = Vec::new();
    for (ty, v) in attrs(buf) {
        out.push(match ty {
            1 => uint(v.get(..4).unwrap_or_default(), false).to_string(),
            2 => match attrs(v).into_iter().find(|(t, _)| *t == 1) {
                Some((_, pid)) => format!("userspace(pid={})", uint(pid, false)),
                None => "userspace".into(),
            },
            7 => format!(
                "recirc({})",
                c_hex(uint(v.get(..4).unwrap_or_default(), false))
            ),
            t => ACTION_NAMES
                .get(usize::from(t))
                .map_or_else(|| format!("action{t}"), |n| (*n).to_string()),
        });
    }
    if out.is_empty() {
        "drop".into()
    } else {
        out.join(",")
    }
}

/// Filters on a new flow's key values (the packet that missed), all given ones must hold.
#[derive(Debug, Clone, Default)]
pub struct MegaflowFilter {
    /// `eth.src`.
    pub eth_src: Option<[u8; 6]>,
    /// `eth.dst`.
    pub eth_dst: Option<[u8; 6]>,
    /// EtherType.
    pub eth_type: Option<u16>,
    /// IPv4 source.
    pub src_ip: Option<Ipv4Addr>,
    /// IPv4 destination.
    pub dst_ip: Option<Ipv4Addr>,
    /// IP protocol.
    pub ip_proto: Option<u8>,
    /// L4 source port (TCP, UDP, SCTP).
    pub l4_src_port: Option<u16>,
    /// L4 destination port.
    pub l4_dst_port: Option<u16>,
}

/// The fields of a key (or mask) that filters and upcall matching look at, as bytes in the
/// order an upcall event holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Field {
    InPort,
    EthSrc,
    EthDst,
    EthType,
    Src,
    Dst,
    Proto,
    Sport,
    Dport,
}

/// A key's (or mask's) values of the [`Field`]s it carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct KeyView(Vec<(Field, Vec<u8>)>);

impl KeyView {
    /// From key (or mask) attributes; ICMP type/code land in sport/dport as the datapath
    /// keys them.
    fn of(buf: &[u8]) -> KeyView {
        let mut k = Vec::new();
        let mut put = |f: Field, v: &[u8], range: std::ops::Range<usize>| {
            if let Some(b) = v.get(range) {
                k.push((f, b.to_vec()));
            }
        };
        for (ty, v) in attrs(buf) {
            match ty {
                KEY_IN_PORT => put(Field::InPort, v, 0..4),
                KEY_ETHERNET => {
                    put(Field::EthSrc, v, 0..6);
                    put(Field::EthDst, v, 6..12);
                }
                KEY_ETHERTYPE => put(Field::EthType, v, 0..2),
                KEY_IPV4 => {
                    put(Field::Src, v, 0..4);
                    put(Field::Dst, v, 4..8);
                    put(Field::Proto, v, 8..9);
                }
                KEY_TCP | KEY_UDP | KEY_SCTP => {
                    put(Field::Sport, v, 0..2);
                    put(Field::Dport, v, 2..4);
                }
                KEY_ICMP => {
                    if let [t, c, ..] = v {
                        put(Field::Sport, &[0, *t], 0..2);
                        put(Field::Dport, &[0, *c], 0..2);
                    }
                }
                _ => {}
            }
        }
        KeyView(k)
    }

    fn get(&self, f: Field) -> Option<&[u8]> {
        self.0.iter().find(|(g, _)| *g == f).map(|(_, v)| &v[..])
    }
}

/// An upcall's value of field `f`, as a key holds it; `None` where the event has none.
fn upcall_field(up: &types::ovs_event, f: Field) -> Option<Vec<u8>> {
    let ip = up.eth_type == 0x0800;
    Some(match f {
        Field::InPort => up.in_port.to_ne_bytes().to_vec(),
        Field::EthSrc => up.eth_src.to_vec(),
        Field::EthDst => up.eth_dst.to_vec(),
        Field::EthType => up.eth_type.to_be_bytes().to_vec(),
        Field::Src if ip => up.src.to_ne_bytes().to_vec(),
        Field::Dst if ip => up.dst.to_ne_bytes().to_vec(),
        Field::Proto if ip => vec![up.ip_proto],
        Field::Sport if ip => up.sport.to_be_bytes().to_vec(),
        Field::Dport if ip => up.dport.to_be_bytes().to_vec(),
        _ => return None,
    })
}

impl MegaflowFilter {
    fn matches(&self, k: &KeyView) -> bool {
        let want: [(Field, Option<Vec<u8>>); 8] = [
            (Field::EthSrc, self.eth_src.map(|m| m.to_vec())),
            (Field::EthDst, self.eth_dst.map(|m| m.to_vec())),
            (
                Field::EthType,
                self.eth_type.map(|t| t.to_be_bytes().to_vec()),
            ),
            (Field::Src, self.src_ip.map(|a| a.octets().to_vec())),
            (Field::Dst, self.dst_ip.map(|a| a.octets().to_vec())),
            (Field::Proto, self.ip_proto.map(|p| vec![p])),
            (
                Field::Sport,
                self.l4_src_port.map(|p| p.to_be_bytes().to_vec()),
            ),
            (
                Field::Dport,
                self.l4_dst_port.map(|p| p.to_be_bytes().to_vec()),
            ),
        ];
        want.iter()
            .all(|(f, w)| w.as_deref().is_none_or(|w| k.get(*f) == Some(w)))
    }
}

/// Does the upcall's packet fall in the flow: equal under the mask wherever both know the
/// field? No mask: exact; a field the mask leaves out: any.
fn covers(key: &KeyView, mask: Option<&KeyView>, up: &types::ovs_event) -> bool {
    key.0.iter().all(|(f, kv)| {
        let Some(uv) = upcall_field(up, *f) else {
            return true;
        };
        let m = match mask {
            None => None,
            Some(m) => match m.get(*f) {
                Some(m) => Some(m),
                None => return true,
            },
        };
        kv.iter().zip(&uv).enumerate().all(|(i, (&k, &u))| {
            let mb = m.map_or(0xff, |m| m.get(i).copied().unwrap_or(0));
            k & mb == u & mb
        })
    })
}

/// Copied bytes of a length-prefixed part of the request: the part, and whether it was cut.
fn part(buf: &[u8], len: u32) -> (Option<&[u8]>, bool) {
    if len == 0 {
        return (None, false);
    }
    let n = (len as usize).min(buf.len());
    (Some(&buf[..n]), len as usize > buf.len())
}

/// Watches new megaflows: an [`EventSource`] of [`Megaflow`]s over an ovs set opened with
/// [`super::OvsOptions::flow_msgs`].
pub struct MegaflowWatch {
    probe: OvsProbe,
    filter: MegaflowFilter,
    waiting: VecDeque<types::ovs_event>,
}

impl MegaflowWatch {
    /// Wraps `probe` (opened with `flow_msgs`), showing the flows `filter` lets through.
    pub fn new(probe: OvsProbe, filter: MegaflowFilter) -> Self {
        Self {
            probe,
            filter,
            waiting: VecDeque::new(),
        }
    }

    fn decode(&mut self, m: &types::ovs_flow_msg) -> Option<Megaflow> {
        let (key, key_cut) = part(&m.key, m.key_len);
        let (mask, mask_cut) = part(&m.mask, m.mask_len);
        let (actions, act_cut) = part(&m.actions, m.actions_len);
        let key = key.unwrap_or_default();
        let view = KeyView::of(key);
        let mask_view = mask.map(KeyView::of);
        let answered = self
            .waiting
            .iter()
            .position(|u| u.ts_ns <= m.ts_ns && covers(&view, mask_view.as_ref(), u))
            .and_then(|i| self.waiting.remove(i));
        if !self.filter.matches(&view) {
            return None;
        }
        let (fields, flow) = decode_match(key, mask);
        let comm_end = m.comm.iter().position(|&c| c == 0).unwrap_or(m.comm.len());
        Some(Megaflow {
            ts_ns: m.ts_ns,
            cpu: m.cpu,
            pid: m.pid,
            tid: m.tid,
            comm: String::from_utf8_lossy(&m.comm[..comm_end]).into_owned(),
            ufid: (m.ufid_len > 0).then(|| {
                let n = (m.ufid_len as usize).min(m.ufid.len());
                m.ufid[..n].iter().map(|b| format!("{b:02x}")).collect()
            }),
            flow,
            fields,
            actions: decode_actions(actions.unwrap_or_default()),
            truncated: key_cut || mask_cut || act_cut,
            upcall: answered.map(|u| AnsweredUpcall {
                ts_ns: u.ts_ns,
                latency_us: m.ts_ns.saturating_sub(u.ts_ns) as f64 / 1e3,
                portid: u.portid,
                flow: super::flow_of(&u),
                eth_src: mac(&u.eth_src),
                eth_dst: mac(&u.eth_dst),
            }),
        })
    }
}

impl EventSource for MegaflowWatch {
    type Event = Megaflow;
    const KIND: &'static str = KIND;

    fn poll(&mut self, timeout: Duration) -> crate::error::Result<Vec<Megaflow>> {
        let (events, mut msgs) = self.probe.take(timeout)?;
        for e in events.into_iter().filter(is_miss) {
            if self.waiting.len() >= 65536 {
                self.waiting.pop_front();
            }
            self.waiting.push_back(e);
        }
        msgs.sort_by_key(|m| m.ts_ns);
        let out = msgs.iter().filter_map(|m| self.decode(m)).collect();
        let now = crate::clock::monotonic_ns();
        let max_age = UNANSWERED_AFTER.as_nanos() as u64;
        while self
            .waiting
            .front()
            .is_some_and(|u| now.saturating_sub(u.ts_ns) > max_age)
        {
            self.waiting.pop_front();
        }
        Ok(out)
    }

    fn stats(&mut self) -> BpfStats {
        self.probe.stats_delta()
    }

    fn plan(&self) -> &Plan {
        self.probe.chosen_plan()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(ty: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((payload.len() + 4) as u16).to_ne_bytes());
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(payload);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, frag: u8) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&src);
        v.extend_from_slice(&dst);
        v.extend_from_slice(&[proto, 0, 64, frag]);
        v
    }

    #[test]
    fn a_megaflow_reads_like_dpctl_dump_flows() {
        let eth: Vec<u8> = [[0x02, 0, 0, 0, 0, 1], [0x02, 0, 0, 0, 0, 2]].concat();
        let key = [
            attr(KEY_RECIRC_ID, &0u32.to_ne_bytes()),
            attr(KEY_IN_PORT, &2u32.to_ne_bytes()),
            attr(KEY_ETHERNET, &eth),
            attr(KEY_ETHERTYPE, &0x0800u16.to_be_bytes()),
            attr(KEY_IPV4, &ipv4([10, 0, 0, 1], [10, 0, 0, 2], 1, 0)),
            attr(KEY_ICMP, &[8, 0]),
        ]
        .concat();
        let mask = [
            attr(KEY_RECIRC_ID, &u32::MAX.to_ne_bytes()),
            attr(KEY_IN_PORT, &u32::MAX.to_ne_bytes()),
            attr(KEY_ETHERNET, &[[0xff; 6], [0; 6]].concat()),
            attr(KEY_ETHERTYPE, &0xffffu16.to_be_bytes()),
            attr(KEY_IPV4, &[0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0xff]),
        ]
        .concat();
        let (fields, text) = decode_match(&key, Some(&mask));
        assert_eq!(
            text,
            "recirc_id(0),in_port(2),eth(src=02:00:00:00:00:01),eth_type(0x0800),ipv4(src=10.0.0.1/255.255.255.0,frag=no)"
        );
        assert_eq!(fields.len(), 6);
        assert_eq!(fields[4].name, "ipv4.src");
        assert_eq!(fields[4].mask.as_deref(), Some("255.255.255.0"));
        // Without a mask every field is exact.
        let (_, exact) = decode_match(&attr(KEY_IN_PORT, &7u32.to_ne_bytes()), None);
        assert_eq!(exact, "in_port(7)");
    }

    #[test]
    fn arp_op_shows_the_kernels_8_bit_mask_and_masked_out_attributes_vanish() {
        let mut arp = vec![198, 18, 10, 1, 198, 18, 10, 2, 0, 1];
        arp.extend_from_slice(&[0; 12]);
        let key = [
            attr(KEY_IN_PORT, &2u32.to_ne_bytes()),
            attr(KEY_CT_LABELS, &[0; 16]),
            attr(KEY_ETHERTYPE, &0x0806u16.to_be_bytes()),
            attr(KEY_ARP, &arp),
        ]
        .concat();
        let mut arp_mask = vec![0xff; 10];
        arp_mask.extend_from_slice(&[0; 12]);
        let mask = [
            attr(KEY_IN_PORT, &u32::MAX.to_ne_bytes()),
            attr(KEY_CT_LABELS, &[0; 16]),
            attr(KEY_ETHERTYPE, &0xffffu16.to_be_bytes()),
            attr(KEY_ARP, &arp_mask),
        ]
        .concat();
        let (_, text) = decode_match(&key, Some(&mask));
        assert_eq!(
            text,
            "in_port(2),eth_type(0x0806),arp(sip=198.18.10.1,tip=198.18.10.2,op=1/0xff)"
        );
    }

    #[test]
    fn actions_are_ports_or_names() {
        let out = [attr(1, &3u32.to_ne_bytes()), attr(5, &[])].concat();
        assert_eq!(decode_actions(&out), "3,pop_vlan");
        let up = attr(2, &attr(1, &42u32.to_ne_bytes()));
        assert_eq!(decode_actions(&up), "userspace(pid=42)");
        assert_eq!(decode_actions(&[]), "drop");
    }

    #[test]
    fn an_upcall_is_answered_by_the_flow_that_covers_it() {
        let key = [
            attr(KEY_IN_PORT, &2u32.to_ne_bytes()),
            attr(KEY_ETHERTYPE, &0x0806u16.to_be_bytes()),
        ]
        .concat();
        let mask = [
            attr(KEY_IN_PORT, &u32::MAX.to_ne_bytes()),
            attr(KEY_ETHERTYPE, &0xffffu16.to_be_bytes()),
        ]
        .concat();
        let up = |in_port, eth_type| types::ovs_event {
            in_port,
            eth_type,
            ..Default::default()
        };
        let (k, m) = (KeyView::of(&key), KeyView::of(&mask));
        assert!(covers(&k, Some(&m), &up(2, 0x0806)));
        assert!(!covers(&k, Some(&m), &up(3, 0x0806)));
        assert!(!covers(&k, Some(&m), &up(2, 0x0800)));
        let f = MegaflowFilter {
            eth_type: Some(0x0806),
            ..Default::default()
        };
        assert!(f.matches(&k));
        let g = MegaflowFilter {
            eth_type: Some(0x0800),
            ..Default::default()
        };
        assert!(!g.matches(&k));
    }
}
