//! The one real implementation of the agent's kernel access: rtnetlink.
//!
//! [`Netlink`] wraps an `rtnetlink` connection opened in the network
//! namespace of the thread that called [`Netlink::connect`] (see
//! [`crate::netns`] to act in another namespace). It offers the handful of
//! link, address, route, neighbour and FDB operations the agent needs and
//! implements [`KernelRoutes`] for the reconciler.
//!
//! Contract:
//! - Route listing returns only main-table routes whose protocol is the one
//!   given to [`Netlink::connect`]; deletes carry that protocol too, so the
//!   kernel itself refuses to delete a route of any other protocol.
//! - Interfaces are addressed by name; the ifindex cache is refreshed when a
//!   name is unknown or the kernel answers `ENODEV` (interface re-created).
//! - Kernel errors keep their errno ([`NetlinkError::errno`]); nothing panics.
//!
//! Where the code is: this file holds the connection, the error and value
//! types and the message helpers; `link`, `address`, `route` (with the
//! [`KernelRoutes`] implementation) and `neighbour` (neighbours and FDB)
//! each add their part of [`Netlink`]'s methods.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Mutex;

use futures::StreamExt;
use ipnet::IpNet;
use netlink_packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteNextHop,
    RouteNextHopFlags, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::{Handle, LinkUnspec, LinkVeth};

use crate::reconciler::{OpError, RouteOp};
use crate::route::{default_metric, KernelRoute, NextHop, Route, RouteTarget};

mod address;
mod link;
mod neighbour;
mod route;

/// A netlink request failed.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("netlink socket: {0}")]
    Socket(#[source] std::io::Error),
    #[error("{what}: {source}")]
    Kernel {
        what: String,
        errno: i32,
        #[source]
        source: std::io::Error,
    },
    #[error("interface {0} not found")]
    LinkNotFound(String),
    #[error("{0}")]
    Unexpected(String),
    #[error(transparent)]
    Netns(#[from] crate::netns::NetnsError),
}

impl NetlinkError {
    /// The kernel's errno, if the kernel refused the request.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

/// Route operations on one host's kernel, as the reconciler driver needs
/// them. [`Netlink`] is the real implementation.
pub trait KernelRoutes {
    /// Every main-table route of our protocol.
    fn list_routes(&self) -> impl Future<Output = Result<Vec<KernelRoute>, NetlinkError>> + Send;
    /// Apply one operation.
    fn apply(&self, op: &RouteOp) -> impl Future<Output = Result<(), OpError>> + Send;
    /// Whether the kernel holds exactly `route`, of our protocol, at the
    /// default metric: what an [`RouteOp::Add`] that failed with
    /// [`OpError::Exists`] may have run into when another process of ours
    /// (`brindle-cni`) installed it first. The default knows nothing.
    fn holds(&self, route: &Route) -> impl Future<Output = bool> + Send {
        let _ = route;
        std::future::ready(false)
    }
}

/// What the agent needs to know about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkState {
    pub index: u32,
    pub name: String,
    pub mac: Option<Vec<u8>>,
    pub mtu: u32,
    pub up: bool,
    /// `veth`, `vxlan`, `ipip`, … (`None` for physical devices).
    pub kind: Option<String>,
    /// VXLAN parameters, for devices of that kind.
    pub vxlan: Option<VxlanParams>,
}

/// The VXLAN attributes Brindle cares about, as read back from the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VxlanParams {
    pub vni: Option<u32>,
    pub port: Option<u16>,
    pub local: Option<IpAddr>,
    pub learning: Option<bool>,
}

/// One neighbour (ARP/NDP) entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct NeighbourEntry {
    pub ifindex: u32,
    pub ip: IpAddr,
    pub mac: Option<Vec<u8>>,
    pub permanent: bool,
}

/// One forwarding-database entry of a VXLAN device (`bridge fdb … self`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FdbEntry {
    pub ifindex: u32,
    pub mac: Vec<u8>,
    pub dst: Option<IpAddr>,
    pub permanent: bool,
}

/// An rtnetlink connection bound to one network namespace.
pub struct Netlink {
    handle: Handle,
    protocol: u8,
    ifindex_cache: Mutex<HashMap<String, u32>>,
}

const RT_TABLE_MAIN: u8 = RouteHeader::RT_TABLE_MAIN;

impl Netlink {
    /// Open a connection in the calling thread's network namespace and drive
    /// it on the current tokio runtime. `protocol` is the route protocol
    /// number whose routes this handle lists and owns.
    ///
    /// # Panics
    /// Outside a tokio runtime (the connection task is spawned).
    pub fn connect(protocol: u8) -> Result<Self, NetlinkError> {
        // Strict checking makes the kernel validate requests instead of
        // ignoring what it does not understand, and lets route dumps be
        // filtered by protocol and table in the kernel: a host carrying a
        // full BGP table from BIRD costs us only our own routes per resync.
        let (connection, handle, _) =
            rtnetlink::new_connection_with_strict_check().map_err(NetlinkError::Socket)?;
        tokio::spawn(connection);
        Ok(Self {
            handle,
            protocol,
            ifindex_cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn protocol(&self) -> u8 {
        self.protocol
    }

    async fn ack(
        &self,
        what: &str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<(), NetlinkError> {
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        let mut responses = self
            .handle
            .clone()
            .request(req)
            .map_err(|e| NetlinkError::Unexpected(format!("{what}: {e}")))?;
        while let Some(reply) = responses.next().await {
            if let NetlinkPayload::Error(err) = reply.payload {
                if err.code.is_some() {
                    return Err(kernel_error(what, err.raw_code()));
                }
            }
        }
        Ok(())
    }

    async fn dump(
        &self,
        what: &str,
        msg: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        let mut responses = self
            .handle
            .clone()
            .request(req)
            .map_err(|e| NetlinkError::Unexpected(format!("{what}: {e}")))?;
        let mut out = Vec::new();
        while let Some(reply) = responses.next().await {
            match reply.payload {
                NetlinkPayload::InnerMessage(inner) => out.push(inner),
                NetlinkPayload::Error(err) if err.code.is_some() => {
                    return Err(kernel_error(what, err.raw_code()))
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

/// Fields of a link change; `None` leaves the attribute alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkChange {
    pub rename: Option<String>,
    pub mac: Option<Vec<u8>>,
    pub mtu: Option<u32>,
    pub up: Option<bool>,
}

fn kernel_error(what: &str, raw_code: i32) -> NetlinkError {
    let errno = raw_code.abs();
    NetlinkError::Kernel {
        what: what.to_owned(),
        errno,
        source: std::io::Error::from_raw_os_error(errno),
    }
}

fn absent_is_false(result: Result<(), NetlinkError>) -> Result<bool, NetlinkError> {
    match result {
        Ok(()) => Ok(true),
        Err(e) if matches!(e.errno(), Some(libc::ENOENT) | Some(libc::ESRCH)) => Ok(false),
        Err(e) => Err(e),
    }
}

fn family_of(ip: &IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn route_address(ip: IpAddr) -> RouteAddress {
    match ip {
        IpAddr::V4(a) => RouteAddress::Inet(a),
        IpAddr::V6(a) => RouteAddress::Inet6(a),
    }
}

/// `NDA_DST` of an `AF_BRIDGE` (FDB) entry is decoded without knowing its
/// family, so it arrives as raw bytes: 4 or 16 of them.
fn neighbour_ip(a: &NeighbourAddress) -> Option<IpAddr> {
    match a {
        NeighbourAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        NeighbourAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        NeighbourAddress::Other(raw) => match raw.len() {
            4 => <[u8; 4]>::try_from(raw.as_slice())
                .ok()
                .map(|b| IpAddr::V4(b.into())),
            16 => <[u8; 16]>::try_from(raw.as_slice())
                .ok()
                .map(|b| IpAddr::V6(b.into())),
            _ => None,
        },
        _ => None,
    }
}

fn neighbour_address(ip: IpAddr) -> NeighbourAddress {
    match ip {
        IpAddr::V4(a) => NeighbourAddress::Inet(a),
        IpAddr::V6(a) => NeighbourAddress::Inet6(a),
    }
}

/// The common part of every route message: main table, our protocol.
fn route_header(dst: IpNet, protocol: u8) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = family_of(&dst.addr());
    msg.header.destination_prefix_length = dst.prefix_len();
    msg.header.table = RT_TABLE_MAIN;
    msg.header.protocol = RouteProtocol::from(protocol);
    msg.header.scope = RouteScope::Universe;
    if dst.prefix_len() > 0 {
        msg.attributes
            .push(RouteAttribute::Destination(route_address(dst.network())));
    }
    msg
}

/// Decode a dumped route into a [`KernelRoute`] if it is a main-table route
/// of `protocol`. Pure; unit-tested.
pub fn decode_route(
    r: &RouteMessage,
    protocol: u8,
    names: &HashMap<u32, String>,
) -> Option<KernelRoute> {
    if u8::from(r.header.protocol) != protocol {
        return None;
    }
    let mut table = u32::from(r.header.table);
    let mut dst_addr = None;
    let mut gateway = None;
    let mut oif = None;
    let mut metric = 0;
    let mut multipath = None;
    for attr in &r.attributes {
        match attr {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(a) => dst_addr = ip_of(a),
            RouteAttribute::Gateway(a) => gateway = ip_of(a),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Priority(p) => metric = *p,
            RouteAttribute::MultiPath(hops) => multipath = Some(hops),
            _ => {}
        }
    }
    if table != u32::from(RT_TABLE_MAIN) {
        return None;
    }
    let dst_addr = dst_addr.unwrap_or(match r.header.address_family {
        AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    });
    let dst = IpNet::new(dst_addr, r.header.destination_prefix_length).ok()?;
    let name = |i: u32| names.get(&i).cloned().unwrap_or_else(|| format!("if#{i}"));
    let target = match r.header.kind {
        RouteType::BlackHole => RouteTarget::Blackhole,
        RouteType::Unicast => {
            if let Some(hops) = multipath {
                let hops: Vec<NextHop> = hops
                    .iter()
                    .map(|h| NextHop {
                        gateway: h.attributes.iter().find_map(|a| match a {
                            RouteAttribute::Gateway(g) => ip_of(g),
                            _ => None,
                        }),
                        device: Some(name(h.interface_index)),
                        onlink: h.flags.contains(RouteNextHopFlags::Onlink),
                    })
                    .collect();
                if hops.is_empty() {
                    RouteTarget::Unsupported("empty multipath".into())
                } else {
                    RouteTarget::nexthops(hops)
                }
            } else if let Some(gw) = gateway {
                RouteTarget::nexthops(vec![NextHop {
                    gateway: Some(gw),
                    device: oif.map(name),
                    onlink: r.header.flags.contains(RouteFlags::Onlink),
                }])
            } else if let Some(i) = oif {
                RouteTarget::Device(name(i))
            } else {
                RouteTarget::Unsupported("unicast without next hop".into())
            }
        }
        other => RouteTarget::Unsupported(format!("{other:?}").to_lowercase()),
    };
    Some(KernelRoute {
        dst,
        target,
        metric,
    })
}

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn link_state(link: &LinkMessage) -> LinkState {
    let mut state = LinkState {
        index: link.header.index,
        name: String::new(),
        mac: None,
        mtu: 0,
        up: link.header.flags.contains(LinkFlags::Up),
        kind: None,
        vxlan: None,
    };
    for attr in &link.attributes {
        match attr {
            LinkAttribute::IfName(n) => state.name = n.clone(),
            LinkAttribute::Address(a) => state.mac = Some(a.clone()),
            LinkAttribute::Mtu(m) => state.mtu = *m,
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(kind) => state.kind = Some(info_kind_name(kind)),
                        LinkInfo::Data(InfoData::Vxlan(vx)) => {
                            let mut p = VxlanParams::default();
                            for v in vx {
                                match v {
                                    InfoVxlan::Id(id) => p.vni = Some(*id),
                                    InfoVxlan::Port(port) => p.port = Some(*port),
                                    InfoVxlan::Local(ip) => p.local = Some(IpAddr::V4(*ip)),
                                    InfoVxlan::Local6(ip) => p.local = Some(IpAddr::V6(*ip)),
                                    InfoVxlan::Learning(l) => p.learning = Some(*l),
                                    _ => {}
                                }
                            }
                            state.vxlan = Some(p);
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    state
}

fn info_kind_name(kind: &InfoKind) -> String {
    match kind {
        InfoKind::Veth => "veth".into(),
        InfoKind::Vxlan => "vxlan".into(),
        InfoKind::IpIp => "ipip".into(),
        InfoKind::Dummy => "dummy".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// Install `/etc/iproute2/rt_protos.d/<name>.conf` so `ip route` prints
/// `proto brindle`. Best effort: returns whether the file is in place.
pub fn install_protocol_name(protocol: u8, name: &str) -> bool {
    install_protocol_name_in(Path::new("/etc/iproute2/rt_protos.d"), protocol, name)
}

/// [`install_protocol_name`] into another directory (tests, image builds).
pub fn install_protocol_name_in(dir: &Path, protocol: u8, name: &str) -> bool {
    if !dir.is_dir() {
        return false;
    }
    let path = dir.join(format!("{name}.conf"));
    let content =
        format!("# Installed by brindle-node: routes owned by Brindle.\n{protocol}\t{name}\n");
    if std::fs::read_to_string(&path).ok().as_deref() == Some(content.as_str()) {
        return true;
    }
    std::fs::write(&path, content).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> HashMap<u32, String> {
        HashMap::from([(2, "eth0".to_string()), (7, "vxlan.brindle".to_string())])
    }

    fn base(dst: &str, kind: RouteType, protocol: u8) -> RouteMessage {
        let net: IpNet = dst.parse().unwrap();
        let mut m = route_header(net, protocol);
        m.header.kind = kind;
        m
    }

    #[test]
    fn protocol_name_file_is_iproute2_format_and_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        assert!(install_protocol_name_in(dir.path(), 80, "brindle"));
        assert!(install_protocol_name_in(dir.path(), 80, "brindle"));
        let text = std::fs::read_to_string(dir.path().join("brindle.conf")).unwrap();
        let line = text.lines().find(|l| !l.starts_with('#')).unwrap();
        assert_eq!(
            line.split_whitespace().collect::<Vec<_>>(),
            ["80", "brindle"]
        );
        assert!(!install_protocol_name_in(
            &dir.path().join("missing"),
            80,
            "brindle"
        ));
    }

    #[test]
    fn foreign_protocol_and_other_tables_are_invisible() {
        let m = base("10.0.0.0/26", RouteType::BlackHole, 12);
        assert!(decode_route(&m, 80, &names()).is_none());
        let mut m = base("10.0.0.0/26", RouteType::BlackHole, 80);
        m.attributes.push(RouteAttribute::Table(100));
        assert!(decode_route(&m, 80, &names()).is_none());
    }

    #[test]
    fn decodes_onlink_gateway_with_device_name() {
        let mut m = base("10.65.1.0/26", RouteType::Unicast, 80);
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(
                "10.65.1.0".parse().unwrap(),
            )));
        m.attributes.push(RouteAttribute::Oif(7));
        m.header.flags |= RouteFlags::Onlink;
        let k = decode_route(&m, 80, &names()).unwrap();
        assert_eq!(
            k.target,
            Route::onlink(k.dst, "10.65.1.0".parse().unwrap(), "vxlan.brindle").target
        );
        assert_eq!(k.metric, 0);
    }

    #[test]
    fn decodes_multipath_and_unknown_ifindex() {
        let mut m = base("10.65.2.0/26", RouteType::Unicast, 80);
        let hop = |gw: &str, i: u32| {
            let mut nh = RouteNextHop::default();
            nh.interface_index = i;
            nh.attributes
                .push(RouteAttribute::Gateway(RouteAddress::Inet(
                    gw.parse().unwrap(),
                )));
            nh
        };
        m.attributes.push(RouteAttribute::MultiPath(vec![
            hop("192.168.0.3", 2),
            hop("192.168.0.2", 99),
        ]));
        let k = decode_route(&m, 80, &names()).unwrap();
        let RouteTarget::NextHops(hops) = k.target else {
            panic!("not nexthops")
        };
        assert_eq!(hops.len(), 2);
        assert_eq!(hops[0].device.as_deref(), Some("if#99"));
    }

    #[test]
    fn unreachable_is_unsupported_and_default_route_decodes() {
        let m = base("0.0.0.0/0", RouteType::Unreachable, 80);
        let k = decode_route(&m, 80, &names()).unwrap();
        assert_eq!(k.dst, "0.0.0.0/0".parse::<IpNet>().unwrap());
        assert!(matches!(k.target, RouteTarget::Unsupported(_)));
    }
}
