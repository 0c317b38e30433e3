//! Paths and stages: the ordered hooks a packet passes on one datapath, with stable names.
use crate::probe::{Candidate, ProbeKind, ProbePoint};
use crate::skel::latency::types;
use clap::ValueEnum;
use serde::Serialize;

/// Where a stage hooks the kernel (a tracepoint family; one BPF program per candidate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Hook {
    /// `net:net_dev_queue`: the packet enters `dev_queue_xmit`.
    DevQueue,
    /// `qdisc:qdisc_dequeue`: the qdisc hands the packet to the driver.
    QdiscDequeue,
    /// `net:net_dev_start_xmit`: the driver's xmit is called.
    StartXmit,
    /// `net:net_dev_xmit`: the driver returned.
    DevXmit,
    /// The driver hands the packet to the stack (GRO, `netif_receive_skb`, `netif_rx`).
    RxEntry,
    /// `net:netif_receive_skb`: the core receive path.
    Receive,
    /// `skb:skb_copy_datagram_iovec`: a process reads the packet from its socket.
    SockRead,
    /// `skb:consume_skb` in `tun_do_read`: a tap reader (vhost, a VMM) pulled the packet.
    TunRead,
    /// `skb:consume_skb` elsewhere: the packet was used up (an echo request after its reply).
    Consumed,
    /// `__ip_queue_xmit` (fentry, else kprobe): a TCP segment leaves its socket.
    IpQueueXmit,
    /// `ip_send_skb`: a UDP, ICMP or raw datagram leaves its socket.
    IpSendSkb,
    /// `ip_output`.
    IpOutput,
    /// `ip_rcv`.
    IpRcv,
    /// `ip_local_deliver`.
    IpLocalDeliver,
    /// `tcp_v4_rcv`, `__udp4_lib_rcv` (or `udp_rcv`), `icmp_rcv`.
    L4Rcv,
    /// `kvm:kvm_msi_set_irq` in the thread that read the packet from the tap (vhost, the VMM):
    /// the VM was interrupted. Not keyed by packet: the oldest unsignalled read of the thread.
    VmNotify,
    /// `ovs_vport_receive` (openvswitch): a port hands the packet to Open vSwitch's datapath.
    OvsReceive,
    /// `ovs_dp_process_packet`: the datapath looks the packet's flow up.
    OvsProcess,
    /// `openvswitch:ovs_dp_upcall` (tp_btf), else `ovs_dp_upcall`: a flow miss goes to
    /// ovs-vswitchd.
    OvsUpcall,
    /// `ovs_flow_key_extract_userspace`: the packet is back from userspace (OVS_PACKET_CMD_EXECUTE,
    /// a new skb, parsed from its Ethernet header).
    OvsExec,
    /// `ovs_vport_send`: the datapath outputs the packet to a port.
    OvsSend,
}

impl Hook {
    /// The BPF enum value.
    pub fn bpf(self) -> usize {
        use types::lat_hook as H;
        let v = match self {
            Hook::DevQueue => H::LAT_HOOK_DEV_QUEUE,
            Hook::QdiscDequeue => H::LAT_HOOK_QDISC_DEQUEUE,
            Hook::StartXmit => H::LAT_HOOK_START_XMIT,
            Hook::DevXmit => H::LAT_HOOK_DEV_XMIT,
            Hook::RxEntry => H::LAT_HOOK_RX_ENTRY,
            Hook::Receive => H::LAT_HOOK_RECEIVE,
            Hook::SockRead => H::LAT_HOOK_SOCK_READ,
            Hook::TunRead => H::LAT_HOOK_TUN_READ,
            Hook::Consumed => H::LAT_HOOK_CONSUMED,
            Hook::IpQueueXmit => H::LAT_HOOK_IP_QUEUE_XMIT,
            Hook::IpSendSkb => H::LAT_HOOK_IP_SEND_SKB,
            Hook::IpOutput => H::LAT_HOOK_IP_OUTPUT,
            Hook::IpRcv => H::LAT_HOOK_IP_RCV,
            Hook::IpLocalDeliver => H::LAT_HOOK_IP_LOCAL_DELIVER,
            Hook::L4Rcv => H::LAT_HOOK_L4_RCV,
            Hook::VmNotify => H::LAT_HOOK_VM_NOTIFY,
            Hook::OvsReceive => H::LAT_HOOK_OVS_RECEIVE,
            Hook::OvsProcess => H::LAT_HOOK_OVS_PROCESS,
            Hook::OvsUpcall => H::LAT_HOOK_OVS_UPCALL,
            Hook::OvsExec => H::LAT_HOOK_OVS_EXEC,
            Hook::OvsSend => H::LAT_HOOK_OVS_SEND,
        };
        v.0 as usize
    }

    /// The probe points of this hook: candidates tp_btf first, classic tracepoint second.
    pub fn points(self) -> Vec<ProbePoint> {
        let pair = |name: &'static str,
                    btf: &'static str,
                    tp: Option<&'static str>,
                    btf_prog: &'static str,
                    tp_prog: &'static str| {
            let mut candidates = vec![Candidate {
                kind: ProbeKind::TpBtf,
                target: btf,
                program: btf_prog,
            }];
            if let Some(tp) = tp {
                candidates.push(Candidate {
                    kind: ProbeKind::Tracepoint,
                    target: tp,
                    program: tp_prog,
                });
            }
            ProbePoint {
                name,
                candidates,
                required: false,
                ..ProbePoint::default()
            }
        };
        match self {
            Hook::DevQueue => vec![pair(
                "dev queue",
                "net_dev_queue",
                Some("net/net_dev_queue"),
                "lat_queue_btf",
                "lat_queue_tp",
            )],
            Hook::QdiscDequeue => vec![pair(
                "qdisc dequeue",
                "qdisc_dequeue",
                Some("qdisc/qdisc_dequeue"),
                "lat_deq_btf",
                "lat_deq_tp",
            )],
            Hook::StartXmit => vec![pair(
                "driver xmit start",
                "net_dev_start_xmit",
                Some("net/net_dev_start_xmit"),
                "lat_sxmit_btf",
                "lat_sxmit_tp",
            )],
            Hook::DevXmit => vec![pair(
                "driver xmit done",
                "net_dev_xmit",
                Some("net/net_dev_xmit"),
                "lat_xmit_btf",
                "lat_xmit_tp",
            )],
            Hook::RxEntry => vec![
                pair(
                    "rx entry (GRO)",
                    "napi_gro_receive_entry",
                    Some("net/napi_gro_receive_entry"),
                    "lat_gro_btf",
                    "lat_gro_tp",
                ),
                pair(
                    "rx entry (GRO frags)",
                    "napi_gro_frags_entry",
                    None,
                    "lat_frags_btf",
                    "",
                ),
                pair(
                    "rx entry (netif_receive_skb)",
                    "netif_receive_skb_entry",
                    Some("net/netif_receive_skb_entry"),
                    "lat_rxskb_btf",
                    "lat_rxskb_tp",
                ),
                pair(
                    "rx entry (netif_receive_skb_list)",
                    "netif_receive_skb_list_entry",
                    None,
                    "lat_rxlist_btf",
                    "",
                ),
                pair(
                    "rx entry (netif_rx)",
                    "netif_rx",
                    Some("net/netif_rx"),
                    "lat_nrx_btf",
                    "lat_nrx_tp",
                ),
            ],
            Hook::Receive => vec![pair(
                "core receive",
                "netif_receive_skb",
                Some("net/netif_receive_skb"),
                "lat_recv_btf",
                "lat_recv_tp",
            )],
            Hook::SockRead => vec![pair(
                "socket read",
                "skb_copy_datagram_iovec",
                Some("skb/skb_copy_datagram_iovec"),
                "lat_read_btf",
                "lat_read_tp",
            )],
            Hook::IpQueueXmit => vec![func(
                "ip_queue_xmit",
                &[("__ip_queue_xmit", "lat_qxmit_fe", "lat_qxmit_kp")],
            )],
            Hook::IpSendSkb => vec![func(
                "ip_send_skb",
                &[("ip_send_skb", "lat_sendskb_fe", "lat_sendskb_kp")],
            )],
            Hook::IpOutput => vec![func(
                "ip_output",
                &[("ip_output", "lat_ipout_fe", "lat_ipout_kp")],
            )],
            Hook::IpRcv => vec![func(
                "ip_rcv",
                &[("ip_rcv", "lat_iprcv_fe", "lat_iprcv_kp")],
            )],
            Hook::IpLocalDeliver => vec![func(
                "ip_local_deliver",
                &[("ip_local_deliver", "lat_ipld_fe", "lat_ipld_kp")],
            )],
            Hook::L4Rcv => vec![
                func(
                    "l4 receive (TCP)",
                    &[("tcp_v4_rcv", "lat_tcprcv_fe", "lat_tcprcv_kp")],
                ),
                func(
                    "l4 receive (UDP)",
                    &[
                        ("__udp4_lib_rcv", "lat_udprcv_fe", "lat_udprcv_kp"),
                        ("udp_rcv", "lat_udprcv2_fe", "lat_udprcv2_kp"),
                    ],
                ),
                func(
                    "l4 receive (ICMP)",
                    &[("icmp_rcv", "lat_icmprcv_fe", "lat_icmprcv_kp")],
                ),
            ],
            Hook::VmNotify => vec![pair(
                "VM interrupt (kvm_msi_set_irq)",
                "kvm_msi_set_irq",
                Some("kvm/kvm_msi_set_irq"),
                "lat_notify_btf",
                "lat_notify_tp",
            )],
            Hook::OvsReceive => vec![func(
                "ovs_vport_receive",
                &[("ovs_vport_receive", "lat_ovsrcv_fe", "lat_ovsrcv_kp")],
            )],
            Hook::OvsProcess => vec![func(
                "ovs_dp_process_packet",
                &[("ovs_dp_process_packet", "lat_ovsproc_fe", "lat_ovsproc_kp")],
            )],
            Hook::OvsUpcall => {
                let mut p = func(
                    "ovs_dp_upcall",
                    &[("ovs_dp_upcall", "lat_ovsupc_fe", "lat_ovsupc_kp")],
                );
                p.candidates.insert(
                    0,
                    Candidate {
                        kind: ProbeKind::TpBtf,
                        target: "ovs_dp_upcall",
                        program: "lat_ovsupc_btf",
                    },
                );
                vec![p]
            }
            Hook::OvsExec => vec![func(
                "ovs_flow_key_extract_userspace",
                &[(
                    "ovs_flow_key_extract_userspace",
                    "lat_ovsexec_fe",
                    "lat_ovsexec_kp",
                )],
            )],
            Hook::OvsSend => vec![func(
                "ovs_vport_send",
                &[("ovs_vport_send", "lat_ovssend_fe", "lat_ovssend_kp")],
            )],
            Hook::TunRead | Hook::Consumed => vec![pair(
                "consume (tap read, packet used up)",
                "consume_skb",
                Some("skb/consume_skb"),
                "lat_consume_btf",
                "lat_consume_tp",
            )],
        }
    }

    /// A kernel function, not a tracepoint: the stage exists only where fentry or kprobes do.
    pub fn is_function(self) -> bool {
        matches!(
            self,
            Hook::IpQueueXmit
                | Hook::IpSendSkb
                | Hook::IpOutput
                | Hook::IpRcv
                | Hook::IpLocalDeliver
                | Hook::L4Rcv
        ) || self.is_ovs()
    }

    /// Open vSwitch's datapath (the openvswitch module's functions).
    pub fn is_ovs(self) -> bool {
        matches!(
            self,
            Hook::OvsReceive | Hook::OvsProcess | Hook::OvsUpcall | Hook::OvsExec | Hook::OvsSend
        )
    }

    /// A stage this kernel may lack (function stages; the KVM tracepoint without kvm loaded):
    /// left out of the path then, instead of an error.
    pub fn optional(self) -> bool {
        self.is_function() || self == Hook::VmNotify
    }

    /// Every hook, in a stable order.
    pub const ALL: [Hook; 21] = [
        Hook::DevQueue,
        Hook::QdiscDequeue,
        Hook::StartXmit,
        Hook::DevXmit,
        Hook::RxEntry,
        Hook::Receive,
        Hook::SockRead,
        Hook::TunRead,
        Hook::Consumed,
        Hook::IpQueueXmit,
        Hook::IpSendSkb,
        Hook::IpOutput,
        Hook::IpRcv,
        Hook::IpLocalDeliver,
        Hook::L4Rcv,
        Hook::VmNotify,
        Hook::OvsReceive,
        Hook::OvsProcess,
        Hook::OvsUpcall,
        Hook::OvsExec,
        Hook::OvsSend,
    ];
}

/// A probe point on kernel functions: fentry then kprobe for each function, in order.
fn func(name: &'static str, funcs: &[(&'static str, &'static str, &'static str)]) -> ProbePoint {
    let mut candidates = Vec::new();
    for (target, fentry, kprobe) in funcs {
        candidates.push(Candidate {
            kind: ProbeKind::Fentry,
            target,
            program: fentry,
        });
        candidates.push(Candidate {
            kind: ProbeKind::Kprobe,
            target,
            program: kprobe,
        });
    }
    ProbePoint {
        name,
        candidates,
        required: false,
        ..ProbePoint::default()
    }
}

/// What a device is to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// No device of its own (socket reads, consumes): only packets already tracked.
    Any,
    /// The physical (uplink) interface: `--phy-interface`.
    Phy,
    /// The host stack's side: an OVS internal port or bridge, `--internal-interface`.
    Internal,
    /// The VM's tap: `--vm-interface`.
    Vm,
}

impl Role {
    /// The BPF enum value.
    pub fn bpf(self) -> usize {
        use types::lat_role as R;
        let v = match self {
            Role::Any => R::LAT_ROLE_ANY,
            Role::Phy => R::LAT_ROLE_PHY,
            Role::Internal => R::LAT_ROLE_INTERNAL,
            Role::Vm => R::LAT_ROLE_VM,
        };
        v.0 as usize
    }
}

/// ICMP echo side a stage accepts (kernel_icmp_rtt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EchoSide {
    /// Echo requests only.
    Request,
    /// Echo replies only.
    Reply,
}

/// One stage of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Stage {
    /// Stable lower_snake_case name (`phy_xmit`).
    pub name: &'static str,
    /// Where it hooks.
    pub hook: Hook,
    /// Which device it watches.
    pub role: Role,
    /// Closes the packet (a path may end at one of several last stages).
    pub last: bool,
    /// Echo side, for kernel_icmp_rtt.
    pub echo: Option<EchoSide>,
    /// Opens packets too, as an alternative to the stage before it (`ip_send_skb` next to
    /// `__ip_queue_xmit`: a packet passes one of them).
    pub alt_first: bool,
}

const fn stage(name: &'static str, hook: Hook, role: Role) -> Stage {
    Stage {
        name,
        hook,
        role,
        last: false,
        echo: None,
        alt_first: false,
    }
}

const fn alt_first(s: Stage) -> Stage {
    Stage {
        alt_first: true,
        ..s
    }
}

const fn last(s: Stage) -> Stage {
    Stage { last: true, ..s }
}

const fn echo(s: Stage, side: EchoSide) -> Stage {
    Stage {
        echo: Some(side),
        ..s
    }
}

impl Stage {
    /// Where the engine parses the packet: at skb->data where it just came in at L2.
    pub fn from_data(&self) -> bool {
        matches!(self.hook, Hook::RxEntry | Hook::Receive)
    }

    /// The packet has no IP header yet: addresses from its socket.
    pub fn from_sock(&self) -> bool {
        self.hook == Hook::IpQueueXmit
    }

    /// An IPv4 function: the packet is IPv4 whatever skb->protocol says yet.
    pub fn ipv4(&self) -> bool {
        self.hook.is_function() && !self.hook.is_ovs()
    }

    /// A packet built from userspace: parse from its Ethernet header at skb->data.
    pub fn from_l2(&self) -> bool {
        self.hook == Hook::OvsExec
    }
}

/// Which way a packet goes (`--direction`): for VM paths, the VM's view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Sent: by the host stack (system), by the VM (vm).
    Tx,
    /// Received: by the host stack (system), by the VM (vm).
    Rx,
    /// Both paths at once.
    Both,
}

impl Direction {
    /// The single directions this choice covers.
    pub fn each(self) -> Vec<Direction> {
        match self {
            Direction::Both => vec![Direction::Tx, Direction::Rx],
            d => vec![d],
        }
    }
}

/// An ordered list of stages; the first opens a packet, a `last` stage closes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Path {
    /// Stable name (`system_tx`).
    pub name: &'static str,
    /// Stages in the order a packet passes them.
    pub stages: Vec<Stage>,
}

impl Path {
    /// The same path through Open vSwitch's kernel datapath between its devices (`--ovs`): the
    /// OVS stages right after the stages of the device the packet enters the datapath from.
    pub fn through_ovs(mut self) -> Path {
        let entry = match self.name {
            "system_tx" => "internal_xmit",
            "vm_tx" => "vm_receive",
            _ => "phy_receive",
        };
        if let Some(i) = self.stages.iter().position(|s| s.name == entry) {
            self.stages.splice(i + 1..i + 1, ovs_stages());
        }
        self
    }

    /// Host stack to the physical interface (or from it), optionally through an internal port.
    pub fn system(dir: Direction, internal: bool) -> Path {
        match dir {
            Direction::Rx => {
                let mut stages = vec![
                    stage("phy_rx", Hook::RxEntry, Role::Phy),
                    stage("phy_receive", Hook::Receive, Role::Phy),
                ];
                if internal {
                    stages.push(stage("internal_receive", Hook::Receive, Role::Internal));
                }
                stages.push(stage("ip_rcv", Hook::IpRcv, Role::Any));
                stages.push(stage("ip_local_deliver", Hook::IpLocalDeliver, Role::Any));
                stages.push(stage("l4_rcv", Hook::L4Rcv, Role::Any));
                stages.push(last(stage("sock_read", Hook::SockRead, Role::Any)));
                stages.push(last(stage("consumed", Hook::Consumed, Role::Any)));
                Path {
                    name: "system_rx",
                    stages,
                }
            }
            _ => {
                let mut stages = vec![
                    stage("ip_queue_xmit", Hook::IpQueueXmit, Role::Any),
                    alt_first(stage("ip_send_skb", Hook::IpSendSkb, Role::Any)),
                    stage("ip_output", Hook::IpOutput, Role::Any),
                ];
                if internal {
                    stages.push(stage("internal_queue", Hook::DevQueue, Role::Internal));
                    stages.push(stage("internal_xmit", Hook::StartXmit, Role::Internal));
                }
                stages.extend(phy_tx());
                Path {
                    name: "system_tx",
                    stages,
                }
            }
        }
    }

    /// A VM's packets: from its tap to the physical interface (tx), or back (rx, ending when
    /// the tap's reader pulls the packet from the ring).
    pub fn vm(dir: Direction) -> Path {
        match dir {
            Direction::Rx => Path {
                name: "vm_rx",
                stages: vec![
                    stage("phy_rx", Hook::RxEntry, Role::Phy),
                    stage("phy_receive", Hook::Receive, Role::Phy),
                    stage("tap_queue", Hook::DevQueue, Role::Vm),
                    stage("tap_qdisc_dequeue", Hook::QdiscDequeue, Role::Vm),
                    stage("tap_xmit", Hook::StartXmit, Role::Vm),
                    last(stage("vm_read", Hook::TunRead, Role::Vm)),
                    stage("vm_notified", Hook::VmNotify, Role::Any),
                ],
            },
            _ => {
                let mut stages = vec![
                    stage("vm_write", Hook::RxEntry, Role::Vm),
                    stage("vm_receive", Hook::Receive, Role::Vm),
                ];
                stages.extend(phy_tx());
                Path {
                    name: "vm_tx",
                    stages,
                }
            }
        }
    }

    /// An ICMP echo and its reply as one path: this host pings (tx) or answers (rx).
    pub fn icmp_rtt(dir: Direction) -> Path {
        use EchoSide::{Reply, Request};
        let tx = |prefix_req: bool| -> Vec<Stage> {
            let side = if prefix_req { Request } else { Reply };
            let names = if prefix_req {
                [
                    "req_phy_queue",
                    "req_phy_qdisc_dequeue",
                    "req_phy_start_xmit",
                    "req_phy_xmit",
                ]
            } else {
                [
                    "rep_phy_queue",
                    "rep_phy_qdisc_dequeue",
                    "rep_phy_start_xmit",
                    "rep_phy_xmit",
                ]
            };
            vec![
                echo(stage(names[0], Hook::DevQueue, Role::Phy), side),
                echo(stage(names[1], Hook::QdiscDequeue, Role::Phy), side),
                echo(stage(names[2], Hook::StartXmit, Role::Phy), side),
                echo(stage(names[3], Hook::DevXmit, Role::Phy), side),
            ]
        };
        match dir {
            Direction::Rx => {
                let mut stages = vec![
                    echo(stage("req_phy_rx", Hook::RxEntry, Role::Phy), Request),
                    echo(stage("req_phy_receive", Hook::Receive, Role::Phy), Request),
                ];
                stages.extend(tx(false));
                if let Some(s) = stages.last_mut() {
                    s.last = true;
                }
                Path {
                    name: "icmp_rtt_rx",
                    stages,
                }
            }
            _ => {
                let mut stages = tx(true);
                stages.push(echo(stage("rep_phy_rx", Hook::RxEntry, Role::Phy), Reply));
                stages.push(echo(
                    stage("rep_phy_receive", Hook::Receive, Role::Phy),
                    Reply,
                ));
                stages.push(echo(
                    last(stage("rep_sock_read", Hook::SockRead, Role::Any)),
                    Reply,
                ));
                Path {
                    name: "icmp_rtt_tx",
                    stages,
                }
            }
        }
    }

    /// A qdisc's sojourn on the physical interface: enqueue to dequeue.
    pub fn qdisc() -> Path {
        Path {
            name: "qdisc",
            stages: vec![
                stage("qdisc_enqueue", Hook::DevQueue, Role::Phy),
                last(stage("qdisc_dequeue", Hook::QdiscDequeue, Role::Phy)),
            ],
        }
    }

    /// Which stages open a packet: the first, and alternatives right after it.
    pub fn openers(&self) -> Vec<bool> {
        let mut out = Vec::with_capacity(self.stages.len());
        let mut all_before = true;
        for (i, s) in self.stages.iter().enumerate() {
            let opens = i == 0 || (all_before && s.alt_first);
            all_before &= opens;
            out.push(opens);
        }
        out
    }

    /// The first tracepoint stage after leading function stages: it opens the packets those
    /// missed (traffic that does not pass them: forwarded, or a function the compiler copied).
    pub fn fallback_opener(&self) -> Option<usize> {
        let first_tp = self.stages.iter().position(|s| !s.hook.is_function())?;
        (first_tp > 0 && self.stages[..first_tp].iter().all(|s| s.hook.is_function()))
            .then_some(first_tp)
    }

    /// The stages a total-only measurement needs: the openers and every last, and a
    /// start_xmit on a device with no net_dev_xmit stage (it lets net_dev_xmit tell that
    /// device's drops, e.g. a full tap ring).
    pub fn ends(&self) -> Path {
        let openers = self.openers();
        let fallback = self.fallback_opener();
        let drop_watch = |s: &Stage| {
            s.hook == Hook::StartXmit
                && !self
                    .stages
                    .iter()
                    .any(|t| t.hook == Hook::DevXmit && t.role == s.role)
        };
        Path {
            name: self.name,
            stages: self
                .stages
                .iter()
                .zip(openers)
                .enumerate()
                .filter(|(i, (s, opens))| *opens || s.last || drop_watch(s) || Some(*i) == fallback)
                .map(|(_, (s, _))| *s)
                .collect(),
        }
    }

    /// The path without the function stages this kernel cannot hook (`hooked` says which
    /// it can); the first stage left opens packets.
    pub fn on_kernel(&self, hooked: impl Fn(Hook) -> bool) -> Path {
        Path {
            name: self.name,
            stages: self
                .stages
                .iter()
                .filter(|s| !s.hook.optional() || hooked(s.hook))
                .copied()
                .collect(),
        }
    }
}

fn ovs_stages() -> Vec<Stage> {
    vec![
        stage("ovs_receive", Hook::OvsReceive, Role::Any),
        stage("ovs_process", Hook::OvsProcess, Role::Any),
        stage("ovs_upcall", Hook::OvsUpcall, Role::Any),
        stage("ovs_execute", Hook::OvsExec, Role::Any),
        stage("ovs_send", Hook::OvsSend, Role::Any),
    ]
}

fn phy_tx() -> Vec<Stage> {
    vec![
        stage("phy_queue", Hook::DevQueue, Role::Phy),
        stage("phy_qdisc_dequeue", Hook::QdiscDequeue, Role::Phy),
        stage("phy_start_xmit", Hook::StartXmit, Role::Phy),
        last(stage("phy_xmit", Hook::DevXmit, Role::Phy)),
    ]
}

/// The probe points every path of the set may use (for `--list-probes` and netprobe_check).
pub fn all_points() -> Vec<ProbePoint> {
    let mut v = Vec::new();
    for h in Hook::ALL {
        if h == Hook::Consumed {
            continue; // shares consume_skb with TunRead
        }
        v.extend(h.points());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_names_are_unique_lower_snake_case() {
        let paths = [
            Path::system(Direction::Tx, true),
            Path::system(Direction::Rx, true),
            Path::vm(Direction::Tx),
            Path::vm(Direction::Rx),
            Path::icmp_rtt(Direction::Tx),
            Path::icmp_rtt(Direction::Rx),
            Path::qdisc(),
        ];
        for p in &paths {
            assert!(p.stages.len() <= super::super::MAX_STAGES);
            assert!(
                p.stages.iter().any(|s| s.last),
                "{} has no last stage",
                p.name
            );
            assert!(!p.stages[0].last);
            let mut names: Vec<&str> = p.stages.iter().map(|s| s.name).collect();
            for n in &names {
                assert!(
                    n.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                    "{n}"
                );
            }
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), p.stages.len(), "{}", p.name);
        }
        let vm = Path::vm(Direction::Rx);
        let names: Vec<&str> = vm.stages.iter().map(|s| s.name).collect();
        assert!(names.ends_with(&["tap_xmit", "vm_read", "vm_notified"]));
        assert_eq!(Path::vm(Direction::Tx).stages[0].name, "vm_write");
        let ends: Vec<&str> = Path::vm(Direction::Rx)
            .ends()
            .stages
            .iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(ends, ["phy_rx", "tap_xmit", "vm_read"]);
    }

    #[test]
    fn ovs_stages_follow_the_device_the_packet_enters_the_datapath_from() {
        let ovs = [
            "ovs_receive",
            "ovs_process",
            "ovs_upcall",
            "ovs_execute",
            "ovs_send",
        ];
        for (path, entry) in [
            (Path::system(Direction::Tx, true), "internal_xmit"),
            (Path::system(Direction::Rx, true), "phy_receive"),
            (Path::vm(Direction::Tx), "vm_receive"),
            (Path::vm(Direction::Rx), "phy_receive"),
        ] {
            let p = path.through_ovs();
            assert!(p.stages.len() <= super::super::MAX_STAGES, "{}", p.name);
            let names: Vec<&str> = p.stages.iter().map(|s| s.name).collect();
            let i = names.iter().position(|n| *n == entry).unwrap();
            assert_eq!(names[i + 1..i + 6], ovs, "{}", p.name);
            assert!(p
                .stages
                .iter()
                .filter(|s| s.hook.is_ovs())
                .all(|s| !s.ipv4()));
            assert!(p
                .stages
                .iter()
                .all(|s| s.from_l2() == (s.hook == Hook::OvsExec)));
        }
    }
}
