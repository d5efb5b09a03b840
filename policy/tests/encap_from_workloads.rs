//! Encapsulated packets sent by a workload are dropped, proven by traffic
//! (issue 6): two nodes on one LAN, a workload on node 0 wired as the agent
//! wires it (`cali…` veth, /32 route, proxy ARP, gateway 169.254.1.1) in a
//! network whose default profile allows all egress, and node 0's applier
//! programming the compiled rules. Node 1 runs no policy and listens with a
//! UDP socket on port 4789, a UDP socket on an ordinary port and a raw
//! IP-protocol-4 socket (this kernel has no ipip module; a raw socket still
//! receives protocol-4 packets delivered to the namespace).
//!
//! Without rules all three kinds of packet reach node 1, which proves the
//! path and the listeners. With rules the ordinary datagram still arrives
//! (control), while the VXLAN-port datagram and the ipip packet do not, and
//! the counters of the two `brindle-from-wl` DROP rules rose by at least the
//! number sent. Both iptables backends. Needs root.
//!
//! Every namespace (and with it every link, socket binding and rule) is
//! deleted when its handle drops, also on panic.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::time::{Duration, Instant};

use brindle_policy::apply::{Applier, IptablesFlavor, SystemBackend};
use brindle_policy::compile::{compile, Config};
use brindle_policy::ir::{PolicyModel, WorkloadEndpoint};
use brindle_testbed::{two_hosts_one_subnet, unique_name, veth, Netns, TwoHosts};
use common::in_netns;
use nix::libc;
use nix::sys::socket::{sendto, setsockopt, sockopt, MsgFlags, SockaddrIn};
use nix::sys::time::TimeVal;

const WORKLOAD_IP: Ipv4Addr = Ipv4Addr::new(10, 70, 0, 2);
const VXLAN_PORT: u16 = 4789;
/// Any port the compiler has no rule for.
const CONTROL_PORT: u16 = 4790;
/// Packets of each kind sent per phase; every one must be counted.
const BURST: u64 = 3;
/// How long a packet that should arrive may take on a loaded machine.
const ARRIVAL_DEADLINE: Duration = Duration::from_secs(20);
/// How long to keep listening for packets that must not arrive, after the
/// control packet sent behind them has arrived.
const QUIET_WAIT: Duration = Duration::from_millis(500);

/// IP protocol 4, "IP in IP" (RFC 2003); `ipencap` in /etc/protocols.
const IPPROTO_IPIP: i32 = 4;

/// Node 0 with one workload, node 1 as the destination.
struct Setup {
    net: TwoHosts,
    workload: Netns,
    iface: String,
}

fn setup() -> Setup {
    let net = two_hosts_one_subnet().unwrap();
    let [node, peer] = &net.hosts;
    let workload = Netns::new("encwl").unwrap();
    let unique = unique_name("encwl");
    let iface = format!("cali{}", &unique[unique.len().saturating_sub(11)..]);
    veth(
        &node.ns,
        &iface,
        &[],
        &workload,
        "eth0",
        &[&format!("{WORKLOAD_IP}/32")],
    )
    .unwrap();
    workload
        .ip(&[
            "route",
            "add",
            "169.254.1.1",
            "dev",
            "eth0",
            "scope",
            "link",
        ])
        .unwrap();
    workload
        .ip(&[
            "route",
            "add",
            "default",
            "via",
            "169.254.1.1",
            "dev",
            "eth0",
        ])
        .unwrap();
    node.ns
        .set_sysctl(&format!("net.ipv4.conf.{iface}.proxy_arp"), "1")
        .unwrap();
    node.ns
        .set_sysctl(&format!("net.ipv4.neigh.{iface}.proxy_delay"), "0")
        .unwrap();
    node.ns
        .ip(&["route", "add", &format!("{WORKLOAD_IP}/32"), "dev", &iface])
        .unwrap();
    node.ns.enable_forwarding().unwrap();
    // Proxy ARP needs the node to route 169.254.1.1 out another interface.
    node.ns
        .ip(&["route", "add", "default", "dev", &node.iface])
        .unwrap();
    // Node 1 answers (ICMP protocol unreachable) through node 0.
    peer.ns
        .ip(&[
            "route",
            "add",
            &format!("{WORKLOAD_IP}/32"),
            "via",
            &node.ipv4.to_string(),
        ])
        .unwrap();
    Setup {
        net,
        workload,
        iface,
    }
}

impl Setup {
    fn node(&self) -> &Netns {
        &self.net.hosts[0].ns
    }

    fn destination(&self) -> Ipv4Addr {
        self.net.hosts[1].ipv4
    }

    fn model(&self) -> PolicyModel {
        PolicyModel {
            endpoints: vec![WorkloadEndpoint {
                name: "node0/default/encwl".into(),
                interface: self.iface.clone(),
                addrs: vec![IpAddr::V4(WORKLOAD_IP).into()],
                labels: Default::default(),
                // No profile of that name: the default network profile,
                // which allows all egress.
                profiles: vec!["blue".into()],
            }],
            ..PolicyModel::default()
        }
    }
}

/// A raw IPv4 socket of protocol 4. nix has no `SockProtocol` for it, so
/// the socket is made with libc directly.
fn raw_ipip_socket() -> OwnedFd {
    // SAFETY: plain socket(2) call; the returned descriptor is checked and
    // then owned by exactly one `OwnedFd`.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            IPPROTO_IPIP,
        )
    };
    assert!(
        fd >= 0,
        "raw protocol-4 socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: `fd` is a fresh, valid descriptor nobody else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// The listening side on node 1. Sockets keep the namespace they were made
/// in, so they are made on a thread inside it and used from anywhere.
struct Listeners {
    vxlan: UdpSocket,
    control: UdpSocket,
    ipip: OwnedFd,
}

impl Listeners {
    fn bind(ns: &Netns) -> Listeners {
        in_netns(ns.name(), || {
            let udp = |port| {
                let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).unwrap();
                socket
                    .set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                socket
            };
            let ipip = raw_ipip_socket();
            setsockopt(&ipip, sockopt::ReceiveTimeout, &TimeVal::new(0, 100_000)).unwrap();
            Listeners {
                vxlan: udp(VXLAN_PORT),
                control: udp(CONTROL_PORT),
                ipip,
            }
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Vxlan,
    Ipip,
    Control,
}

/// Whether a packet containing `marker` arrives on `kind`'s listener within
/// `wait` (other packets, e.g. of an earlier phase, are skipped).
fn arrives(listeners: &Listeners, kind: Kind, marker: &[u8], wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        let received = match kind {
            Kind::Vxlan => listeners.vxlan.recv(&mut buf).ok(),
            Kind::Control => listeners.control.recv(&mut buf).ok(),
            // Raw IPv4 sockets receive the IP header too; the marker is
            // searched anywhere in the packet.
            Kind::Ipip => {
                nix::sys::socket::recv(listeners.ipip.as_raw_fd(), &mut buf, MsgFlags::empty()).ok()
            }
        };
        if let Some(len) = received {
            if buf[..len].windows(marker.len()).any(|w| w == marker) {
                return true;
            }
        }
    }
    false
}

/// A minimal inner IPv4 header (RFC 791) for the ipip payload, so the packet
/// looks like what a workload trying to tunnel would send: protocol 253
/// (experimentation, RFC 3692), `payload` behind it.
fn inner_ipv4(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let total = u16::try_from(20 + payload.len()).unwrap();
    let mut header = vec![0x45, 0];
    header.extend_from_slice(&total.to_be_bytes());
    header.extend_from_slice(&[0, 0, 0, 0, 64, 253, 0, 0]);
    header.extend_from_slice(&src.octets());
    header.extend_from_slice(&dst.octets());
    let sum = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>();
    let folded = (sum & 0xffff) + (sum >> 16);
    let checksum = !u16::try_from((folded & 0xffff) + (folded >> 16)).unwrap();
    header[10..12].copy_from_slice(&checksum.to_be_bytes());
    header.extend_from_slice(payload);
    header
}

/// Sends `BURST` packets of `kind` carrying `marker` from the workload to
/// `destination`.
fn send_from_workload(workload: &Netns, kind: Kind, destination: Ipv4Addr, marker: &[u8]) {
    in_netns(workload.name(), || {
        for _ in 0..BURST {
            match kind {
                Kind::Vxlan | Kind::Control => {
                    let port = if matches!(kind, Kind::Vxlan) {
                        VXLAN_PORT
                    } else {
                        CONTROL_PORT
                    };
                    // A fresh socket (source port) per datagram: each one
                    // is a new flow, never ESTABLISHED in conntrack.
                    let socket = UdpSocket::bind((WORKLOAD_IP, 0)).unwrap();
                    socket.send_to(marker, (destination, port)).unwrap();
                }
                Kind::Ipip => {
                    let socket = raw_ipip_socket();
                    let inner = inner_ipv4(WORKLOAD_IP, Ipv4Addr::new(10, 70, 9, 9), marker);
                    let to = SockaddrIn::from(SocketAddrV4::new(destination, 0));
                    sendto(socket.as_raw_fd(), &inner, &to, MsgFlags::empty()).unwrap();
                }
            }
        }
    })
}

fn save_command(flavor: IptablesFlavor) -> &'static str {
    match flavor {
        IptablesFlavor::Nft => "iptables-nft-save",
        IptablesFlavor::Legacy => "iptables-legacy-save",
    }
}

/// Packet counter of the `brindle-from-wl` DROP rule whose text contains
/// `needle`, from `iptables-save -c` in `node`.
fn drop_counter(node: &Netns, flavor: IptablesFlavor, needle: &str) -> u64 {
    let saved = node
        .run(&[save_command(flavor), "-c", "-t", "filter"])
        .unwrap();
    let line = saved
        .lines()
        .find(|l| l.contains("-A brindle-from-wl") && l.contains(needle) && l.ends_with("-j DROP"))
        .unwrap_or_else(|| panic!("{flavor:?}: no from-wl DROP rule with {needle:?}:\n{saved}"));
    line.strip_prefix('[')
        .and_then(|l| l.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no counter in {line:?}"))
}

fn encapsulation_from_workloads_is_dropped(flavor: IptablesFlavor) {
    let setup = setup();
    let listeners = Listeners::bind(&setup.net.hosts[1].ns);
    let destination = setup.destination();
    let marker = |phase: &str, kind: Kind| {
        format!("brindle-encap-{}-{phase}-{kind:?}", std::process::id()).into_bytes()
    };

    // No rules: every kind of packet reaches node 1. Proves the path, and
    // that the listeners would see the packets the rules must stop.
    for kind in [Kind::Control, Kind::Vxlan, Kind::Ipip] {
        let marker = marker("open", kind);
        send_from_workload(&setup.workload, kind, destination, &marker);
        assert!(
            arrives(&listeners, kind, &marker, ARRIVAL_DEADLINE),
            "{flavor:?}: without rules, {kind:?} from the workload reaches node 1"
        );
    }

    let model = setup.model();
    in_netns(setup.node().name(), || {
        let mut applier = Applier::new(SystemBackend::new(flavor));
        applier.apply(&compile(&model, &Config::default())).unwrap();
    });
    let vxlan_rule = format!("--dport {VXLAN_PORT}");
    // iptables-save names protocol 4 after /etc/protocols.
    let ipip_rule = "-p ipencap";
    let vxlan_before = drop_counter(setup.node(), flavor, &vxlan_rule);
    let ipip_before = drop_counter(setup.node(), flavor, ipip_rule);

    // With rules: the encapsulated packets go first, the control behind
    // them on the same path, so once the control has arrived the others
    // had every chance to.
    let (vxlan, ipip, control) = (
        marker("ruled", Kind::Vxlan),
        marker("ruled", Kind::Ipip),
        marker("ruled", Kind::Control),
    );
    send_from_workload(&setup.workload, Kind::Vxlan, destination, &vxlan);
    send_from_workload(&setup.workload, Kind::Ipip, destination, &ipip);
    send_from_workload(&setup.workload, Kind::Control, destination, &control);
    assert!(
        arrives(&listeners, Kind::Control, &control, ARRIVAL_DEADLINE),
        "{flavor:?}: an ordinary UDP datagram from the workload still reaches node 1"
    );
    assert!(
        !arrives(&listeners, Kind::Vxlan, &vxlan, QUIET_WAIT),
        "{flavor:?}: UDP to port {VXLAN_PORT} from a workload must be dropped"
    );
    assert!(
        !arrives(&listeners, Kind::Ipip, &ipip, QUIET_WAIT),
        "{flavor:?}: ipip from a workload must be dropped"
    );
    let vxlan_after = drop_counter(setup.node(), flavor, &vxlan_rule);
    let ipip_after = drop_counter(setup.node(), flavor, ipip_rule);
    assert!(
        vxlan_after >= vxlan_before + BURST,
        "{flavor:?}: VXLAN drop rule counted {vxlan_before} -> {vxlan_after}"
    );
    assert!(
        ipip_after >= ipip_before + BURST,
        "{flavor:?}: ipip drop rule counted {ipip_before} -> {ipip_after}"
    );

    in_netns(setup.node().name(), || {
        Applier::new(SystemBackend::new(flavor))
            .uninstall()
            .unwrap()
    });
    let left = setup.node().run(&[save_command(flavor)]).unwrap();
    assert!(!left.contains("brindle"), "left behind:\n{left}");
}

#[test]
fn nft_ipip_and_vxlan_sent_by_a_workload_are_dropped() {
    encapsulation_from_workloads_is_dropped(IptablesFlavor::Nft);
}

#[test]
fn legacy_ipip_and_vxlan_sent_by_a_workload_are_dropped() {
    encapsulation_from_workloads_is_dropped(IptablesFlavor::Legacy);
}
