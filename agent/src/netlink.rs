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

    // ---- links ---------------------------------------------------------

    /// All links of the namespace.
    pub async fn links(&self) -> Result<Vec<LinkState>, NetlinkError> {
        let msgs = self
            .dump(
                "dump links",
                RouteNetlinkMessage::GetLink(LinkMessage::default()),
            )
            .await?;
        let links: Vec<LinkState> = msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(link_state(&link)),
                _ => None,
            })
            .collect();
        let mut cache = self.ifindex_cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.clear();
        cache.extend(links.iter().map(|l| (l.name.clone(), l.index)));
        Ok(links)
    }

    /// The link called `name`, if any.
    pub async fn link(&self, name: &str) -> Result<Option<LinkState>, NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        match self
            .request_one(
                &format!("get link {name}"),
                RouteNetlinkMessage::GetLink(msg),
            )
            .await
        {
            Ok(Some(RouteNetlinkMessage::NewLink(link))) => Ok(Some(link_state(&link))),
            Ok(_) => Ok(None),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The main-table route of our protocol at exactly `dst`, if any: one
    /// `RTM_GETROUTE` with `RTM_F_FIB_MATCH` (`ip route get fibmatch`), not a
    /// dump, so it costs the same with 100k routes in the table.
    pub async fn route_at(&self, dst: IpNet) -> Result<Option<KernelRoute>, NetlinkError> {
        let mut req = RouteMessage::default();
        req.header.address_family = family_of(&dst.addr());
        req.header.destination_prefix_length = dst.max_prefix_len();
        req.header.flags = RouteFlags::FibMatch;
        req.attributes
            .push(RouteAttribute::Destination(route_address(dst.addr())));
        let reply = match self
            .request_one("look up a route", RouteNetlinkMessage::GetRoute(req))
            .await
        {
            Ok(r) => r,
            // No route at all for the address.
            Err(NetlinkError::Kernel { errno, .. })
                if errno == libc::ENETUNREACH
                    || errno == libc::EHOSTUNREACH
                    || errno == libc::ESRCH =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        let Some(RouteNetlinkMessage::NewRoute(r)) = reply else {
            return Ok(None);
        };
        let names = self.names_by_index().await?;
        Ok(decode_route(&r, self.protocol, &names).filter(|k| k.dst == dst))
    }

    async fn request_one(
        &self,
        what: &str,
        msg: RouteNetlinkMessage,
    ) -> Result<Option<RouteNetlinkMessage>, NetlinkError> {
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = NLM_F_REQUEST;
        let mut responses = self
            .handle
            .clone()
            .request(req)
            .map_err(|e| NetlinkError::Unexpected(format!("{what}: {e}")))?;
        let mut found = None;
        while let Some(reply) = responses.next().await {
            match reply.payload {
                NetlinkPayload::InnerMessage(inner) => found = Some(inner),
                NetlinkPayload::Error(err) if err.code.is_some() => {
                    return Err(kernel_error(what, err.raw_code()))
                }
                _ => {}
            }
        }
        Ok(found)
    }

    /// Index of `name`, from the cache or the kernel.
    pub async fn ifindex(&self, name: &str) -> Result<u32, NetlinkError> {
        if let Some(i) = self.cached_ifindex(name) {
            return Ok(i);
        }
        self.refresh_ifindex(name).await
    }

    fn cached_ifindex(&self, name: &str) -> Option<u32> {
        let cache = self.ifindex_cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(name).copied()
    }

    async fn refresh_ifindex(&self, name: &str) -> Result<u32, NetlinkError> {
        self.forget(name);
        match self.link(name).await? {
            Some(link) => {
                let mut cache = self.ifindex_cache.lock().unwrap_or_else(|p| p.into_inner());
                cache.insert(name.to_owned(), link.index);
                Ok(link.index)
            }
            None => Err(NetlinkError::LinkNotFound(name.to_owned())),
        }
    }

    fn forget(&self, name: &str) {
        let mut cache = self.ifindex_cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.remove(name);
    }

    /// `ip link add <name> type veth peer name <peer>`.
    pub async fn create_veth(&self, name: &str, peer: &str) -> Result<(), NetlinkError> {
        let msg = LinkVeth::new(name, peer).build();
        self.ack(
            &format!("create veth {name}/{peer}"),
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .await
    }

    /// `ip link add <name> mtu <mtu> type veth peer name <peer> mtu <mtu>
    /// netns <peer_netns>`: the peer is born in the other namespace under
    /// its final name. Creating it here and moving it afterwards costs the
    /// kernel an RCU grace period per move (`dev_change_net_namespace` →
    /// `synchronize_net`), ~20 ms on this machine, half of a CNI ADD; a
    /// rename costs another (`dev_change_name` → `synchronize_net`).
    pub async fn create_veth_with_peer_in(
        &self,
        name: &str,
        peer: &str,
        peer_netns: &Path,
        mtu: u32,
    ) -> Result<(), NetlinkError> {
        let ns = std::fs::File::open(peer_netns).map_err(|source| NetlinkError::Kernel {
            what: format!("open netns {}", peer_netns.display()),
            errno: source.raw_os_error().unwrap_or(0),
            source,
        })?;
        let peer_msg = LinkUnspec::new_with_name(peer)
            .mtu(mtu)
            .setns_by_fd(ns.as_raw_fd())
            .build();
        let msg = LinkVeth::new(name, peer)
            .mtu(mtu)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
            .build();
        let result = self
            .ack(
                &format!(
                    "create veth {name}/{peer} (peer in {})",
                    peer_netns.display()
                ),
                RouteNetlinkMessage::NewLink(msg),
                NLM_F_CREATE | NLM_F_EXCL,
            )
            .await;
        // The fd must stay open until the kernel has answered.
        drop(ns);
        result
    }

    /// Create a link from a prepared message (tunnels).
    pub async fn create_link(&self, what: &str, msg: LinkMessage) -> Result<(), NetlinkError> {
        self.ack(
            what,
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .await
    }

    /// `ip link set` with a prepared message (changelink).
    pub async fn change_link(&self, what: &str, msg: LinkMessage) -> Result<(), NetlinkError> {
        self.ack(what, RouteNetlinkMessage::NewLink(msg), 0).await
    }

    /// `ip link del <name>`; `Ok(false)` if it did not exist.
    pub async fn delete_link(&self, name: &str) -> Result<bool, NetlinkError> {
        let index = match self.refresh_ifindex(name).await {
            Ok(i) => i,
            Err(NetlinkError::LinkNotFound(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        self.forget(name);
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        match self
            .ack(
                &format!("delete link {name}"),
                RouteNetlinkMessage::DelLink(msg),
                0,
            )
            .await
        {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Change name / MAC / MTU / up of `name`; `None` fields are left alone.
    pub async fn set_link(&self, name: &str, change: &LinkChange) -> Result<(), NetlinkError> {
        let index = self.ifindex(name).await?;
        let mut builder = LinkUnspec::new_with_index(index);
        if let Some(new_name) = &change.rename {
            builder = builder.name(new_name.clone());
        }
        if let Some(mac) = &change.mac {
            builder = builder.address(mac.clone());
        }
        if let Some(mtu) = change.mtu {
            builder = builder.mtu(mtu);
        }
        match change.up {
            Some(true) => builder = builder.up(),
            Some(false) => builder = builder.down(),
            None => {}
        }
        let result = self
            .change_link(&format!("set link {name}"), builder.build())
            .await;
        if change.rename.is_some() {
            self.forget(name);
        }
        result
    }

    /// Move `name` into the network namespace at `netns`.
    pub async fn move_to_netns(&self, name: &str, netns: &Path) -> Result<(), NetlinkError> {
        let index = self.ifindex(name).await?;
        let ns = std::fs::File::open(netns).map_err(|source| NetlinkError::Kernel {
            what: format!("open netns {}", netns.display()),
            errno: source.raw_os_error().unwrap_or(0),
            source,
        })?;
        let msg = LinkUnspec::new_with_index(index)
            .setns_by_fd(ns.as_raw_fd())
            .build();
        let result = self
            .change_link(&format!("move {name} to {}", netns.display()), msg)
            .await;
        self.forget(name);
        drop(ns);
        result
    }

    /// `ip addr replace <addr> dev <name>`; `nodad` skips IPv6 duplicate
    /// address detection so the address is usable at once.
    pub async fn add_address(
        &self,
        name: &str,
        addr: IpNet,
        nodad: bool,
    ) -> Result<(), NetlinkError> {
        let index = self.ifindex(name).await?;
        let mut msg = AddressMessage::default();
        msg.header.index = index;
        msg.header.prefix_len = addr.prefix_len();
        msg.header.family = family_of(&addr.addr());
        msg.attributes.push(AddressAttribute::Local(addr.addr()));
        msg.attributes.push(AddressAttribute::Address(addr.addr()));
        if nodad {
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        self.ack(
            &format!("add address {addr} to {name}"),
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
        .await
    }

    /// `ip addr del <addr> dev <name>`; `Ok(false)` if it was not there.
    pub async fn delete_address(&self, name: &str, addr: IpNet) -> Result<bool, NetlinkError> {
        let index = self.ifindex(name).await?;
        let mut msg = AddressMessage::default();
        msg.header.index = index;
        msg.header.prefix_len = addr.prefix_len();
        msg.header.family = family_of(&addr.addr());
        msg.attributes.push(AddressAttribute::Local(addr.addr()));
        msg.attributes.push(AddressAttribute::Address(addr.addr()));
        match self
            .ack(
                &format!("delete address {addr} from {name}"),
                RouteNetlinkMessage::DelAddress(msg),
                0,
            )
            .await
        {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(libc::EADDRNOTAVAIL) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Make `addr` the only global address of its family on `name`: add it,
    /// then remove any other (a node's old tunnel address). IPv6
    /// link-local addresses are kept.
    pub async fn set_sole_address(
        &self,
        name: &str,
        addr: IpNet,
        nodad: bool,
    ) -> Result<(), NetlinkError> {
        self.add_address(name, addr, nodad).await?;
        for other in self.addresses(name).await? {
            let same_family = other.addr().is_ipv4() == addr.addr().is_ipv4();
            let link_local =
                matches!(other.addr(), IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80);
            if same_family && !link_local && other != addr {
                self.delete_address(name, other).await?;
            }
        }
        Ok(())
    }

    /// Addresses configured on `name`.
    pub async fn addresses(&self, name: &str) -> Result<Vec<IpNet>, NetlinkError> {
        let index = self.ifindex(name).await?;
        let msgs = self
            .dump(
                "dump addresses",
                RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            )
            .await?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) if a.header.index == index => {
                    let ip = a.attributes.iter().find_map(|attr| match attr {
                        AddressAttribute::Address(ip) => Some(*ip),
                        _ => None,
                    })?;
                    IpNet::new(ip, a.header.prefix_len).ok()
                }
                _ => None,
            })
            .collect())
    }

    /// Addresses of global (universe) scope on `name`, in the kernel's
    /// order (the primary first): what `ip addr show scope global` lists.
    pub async fn global_addresses(&self, name: &str) -> Result<Vec<IpNet>, NetlinkError> {
        let index = self.ifindex(name).await?;
        let msgs = self
            .dump(
                "dump addresses",
                RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            )
            .await?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a)
                    if a.header.index == index && a.header.scope == AddressScope::Universe =>
                {
                    let ip = a.attributes.iter().find_map(|attr| match attr {
                        AddressAttribute::Address(ip) => Some(*ip),
                        _ => None,
                    })?;
                    IpNet::new(ip, a.header.prefix_len).ok()
                }
                _ => None,
            })
            .collect())
    }

    // ---- routes --------------------------------------------------------

    /// The device of the main table's IPv4 default route, whoever installed
    /// it (`ip -4 route show default`); with several, the lowest metric.
    pub async fn default_route_device_v4(&self) -> Result<Option<String>, NetlinkError> {
        let mut req = RouteMessage::default();
        req.header.address_family = AddressFamily::Inet;
        let msgs = self
            .dump("dump routes", RouteNetlinkMessage::GetRoute(req))
            .await?;
        let mut best: Option<(u32, u32)> = None;
        for m in msgs {
            let RouteNetlinkMessage::NewRoute(r) = m else {
                continue;
            };
            if r.header.address_family != AddressFamily::Inet
                || r.header.destination_prefix_length != 0
                || r.header.kind != RouteType::Unicast
            {
                continue;
            }
            let mut table = u32::from(r.header.table);
            let mut oif = None;
            let mut metric = 0;
            for attr in &r.attributes {
                match attr {
                    RouteAttribute::Table(t) => table = *t,
                    RouteAttribute::Oif(i) => oif = Some(*i),
                    RouteAttribute::Priority(p) => metric = *p,
                    _ => {}
                }
            }
            if table != u32::from(RT_TABLE_MAIN) {
                continue;
            }
            if let Some(oif) = oif {
                if best.is_none_or(|(m, _)| metric < m) {
                    best = Some((metric, oif));
                }
            }
        }
        let Some((_, index)) = best else {
            return Ok(None);
        };
        Ok(self.names_by_index().await?.get(&index).cloned())
    }

    /// Add or replace a route of our protocol directly (the CNI plugin's
    /// host route, container routes); the reconciler uses [`KernelRoutes`].
    pub async fn replace_route(&self, route: &Route) -> Result<(), OpError> {
        self.apply(&RouteOp::Replace(route.clone())).await
    }

    /// A route in the container's namespace: `169.254.1.1 dev eth0 scope
    /// link` or `default via 169.254.1.1 dev eth0`, stamped with our protocol.
    pub async fn replace_route_with_scope(
        &self,
        route: &Route,
        scope: RouteScope,
    ) -> Result<(), OpError> {
        let mut msg = self.route_message(route).await?;
        msg.header.scope = scope;
        self.route_ack(
            &RouteOp::Replace(route.clone()),
            msg,
            NLM_F_CREATE | NLM_F_REPLACE,
        )
        .await
    }

    async fn route_ack(&self, op: &RouteOp, msg: RouteMessage, flags: u16) -> Result<(), OpError> {
        let new = !matches!(op, RouteOp::Delete(_));
        let what = format!("{op:?}");
        let req = if new {
            RouteNetlinkMessage::NewRoute(msg)
        } else {
            RouteNetlinkMessage::DelRoute(msg)
        };
        match self.ack(&what, req, flags).await {
            Ok(()) => Ok(()),
            Err(e) => Err(match e.errno() {
                Some(libc::EEXIST) => OpError::Exists,
                Some(libc::ESRCH) | Some(libc::ENOENT) if !new => OpError::NotFound,
                Some(libc::ENODEV) => {
                    let dev = match op {
                        RouteOp::Add(r) | RouteOp::Replace(r) => {
                            r.target.devices().first().map(|d| d.to_string())
                        }
                        RouteOp::Delete(_) => None,
                    };
                    for d in dev.iter() {
                        self.forget(d);
                    }
                    OpError::LinkMissing(dev.unwrap_or_default())
                }
                _ => OpError::Other(e.to_string()),
            }),
        }
    }

    async fn resolve_for_route(&self, name: &str) -> Result<u32, OpError> {
        match self.ifindex(name).await {
            Ok(i) => Ok(i),
            Err(NetlinkError::LinkNotFound(n)) => Err(OpError::LinkMissing(n)),
            Err(e) => Err(OpError::Other(e.to_string())),
        }
    }

    async fn route_message(&self, route: &Route) -> Result<RouteMessage, OpError> {
        let mut msg = route_header(route.dst, self.protocol);
        match &route.target {
            RouteTarget::Blackhole => {
                msg.header.kind = RouteType::BlackHole;
            }
            RouteTarget::Device(dev) => {
                msg.header.kind = RouteType::Unicast;
                msg.header.scope = match route.dst {
                    IpNet::V4(_) => RouteScope::Link,
                    IpNet::V6(_) => RouteScope::Universe,
                };
                let index = self.resolve_for_route(dev).await?;
                msg.attributes.push(RouteAttribute::Oif(index));
            }
            RouteTarget::NextHops(hops) if hops.len() == 1 => {
                msg.header.kind = RouteType::Unicast;
                let hop = &hops[0];
                if let Some(gw) = hop.gateway {
                    msg.attributes
                        .push(RouteAttribute::Gateway(route_address(gw)));
                } else {
                    msg.header.scope = RouteScope::Link;
                }
                if let Some(dev) = &hop.device {
                    let index = self.resolve_for_route(dev).await?;
                    msg.attributes.push(RouteAttribute::Oif(index));
                }
                if hop.onlink {
                    msg.header.flags |= RouteFlags::Onlink;
                }
            }
            RouteTarget::NextHops(hops) => {
                msg.header.kind = RouteType::Unicast;
                let mut nexthops = Vec::with_capacity(hops.len());
                for hop in hops {
                    let mut nh = RouteNextHop::default();
                    if let Some(gw) = hop.gateway {
                        nh.attributes
                            .push(RouteAttribute::Gateway(route_address(gw)));
                    }
                    if let Some(dev) = &hop.device {
                        nh.interface_index = self.resolve_for_route(dev).await?;
                    }
                    if hop.onlink {
                        nh.flags |= RouteNextHopFlags::Onlink;
                    }
                    nexthops.push(nh);
                }
                msg.attributes.push(RouteAttribute::MultiPath(nexthops));
            }
            RouteTarget::Unsupported(what) => {
                return Err(OpError::Other(format!(
                    "cannot install unsupported route {what}"
                )))
            }
        }
        Ok(msg)
    }

    async fn apply_once(&self, op: &RouteOp) -> Result<(), OpError> {
        match op {
            RouteOp::Add(route) => {
                let msg = self.route_message(route).await?;
                self.route_ack(op, msg, NLM_F_CREATE | NLM_F_EXCL).await
            }
            RouteOp::Replace(route) => {
                let msg = self.route_message(route).await?;
                self.route_ack(op, msg, NLM_F_CREATE | NLM_F_REPLACE).await
            }
            RouteOp::Delete(k) => {
                let mut msg = route_header(k.dst, self.protocol);
                // Match any scope and type; protocol and metric pin it to ours.
                msg.header.scope = RouteScope::NoWhere;
                msg.header.kind = RouteType::Unspec;
                if k.metric != 0 {
                    msg.attributes.push(RouteAttribute::Priority(k.metric));
                }
                self.route_ack(op, msg, 0).await
            }
        }
    }

    /// Names of all links by index (for decoding route dumps).
    async fn names_by_index(&self) -> Result<HashMap<u32, String>, NetlinkError> {
        Ok(self
            .links()
            .await?
            .into_iter()
            .map(|l| (l.index, l.name))
            .collect())
    }

    // ---- neighbours and FDB -------------------------------------------

    /// `ip neigh replace <ip> lladdr <mac> dev <dev> nud permanent`.
    pub async fn replace_neighbour(
        &self,
        dev: &str,
        ip: IpAddr,
        mac: &[u8],
    ) -> Result<(), NetlinkError> {
        let index = self.ifindex(dev).await?;
        let mut msg = NeighbourMessage::default();
        msg.header.family = family_of(&ip);
        msg.header.ifindex = index;
        msg.header.state = NeighbourState::Permanent;
        msg.attributes
            .push(NeighbourAttribute::Destination(neighbour_address(ip)));
        msg.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        self.ack(
            &format!("neigh replace {ip} dev {dev}"),
            RouteNetlinkMessage::NewNeighbour(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
        .await
    }

    /// `ip neigh del <ip> dev <dev>`; `Ok(false)` if absent.
    pub async fn delete_neighbour(&self, dev: &str, ip: IpAddr) -> Result<bool, NetlinkError> {
        let index = self.ifindex(dev).await?;
        let mut msg = NeighbourMessage::default();
        msg.header.family = family_of(&ip);
        msg.header.ifindex = index;
        msg.attributes
            .push(NeighbourAttribute::Destination(neighbour_address(ip)));
        absent_is_false(
            self.ack(
                &format!("neigh del {ip} dev {dev}"),
                RouteNetlinkMessage::DelNeighbour(msg),
                0,
            )
            .await,
        )
    }

    /// Neighbour entries on `dev`.
    pub async fn neighbours(&self, dev: &str) -> Result<Vec<NeighbourEntry>, NetlinkError> {
        let index = self.ifindex(dev).await?;
        let mut entries = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut req = NeighbourMessage::default();
            req.header.family = family;
            let msgs = self
                .dump("dump neighbours", RouteNetlinkMessage::GetNeighbour(req))
                .await?;
            for m in msgs {
                let RouteNetlinkMessage::NewNeighbour(n) = m else {
                    continue;
                };
                if n.header.ifindex != index {
                    continue;
                }
                let mut ip = None;
                let mut mac = None;
                for attr in &n.attributes {
                    match attr {
                        NeighbourAttribute::Destination(a) => ip = neighbour_ip(a),
                        NeighbourAttribute::LinkLayerAddress(l) => mac = Some(l.clone()),
                        _ => {}
                    }
                }
                if let Some(ip) = ip {
                    entries.push(NeighbourEntry {
                        ifindex: index,
                        ip,
                        mac,
                        permanent: n.header.state == NeighbourState::Permanent,
                    });
                }
            }
        }
        Ok(entries)
    }

    /// `bridge fdb replace <mac> dev <dev> dst <remote> self permanent`.
    pub async fn replace_fdb(
        &self,
        dev: &str,
        mac: &[u8],
        dst: IpAddr,
    ) -> Result<(), NetlinkError> {
        let index = self.ifindex(dev).await?;
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Bridge;
        msg.header.ifindex = index;
        msg.header.state = NeighbourState::Permanent;
        msg.header.flags = NeighbourFlags::Own;
        msg.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        msg.attributes
            .push(NeighbourAttribute::Destination(neighbour_address(dst)));
        self.ack(
            &format!("fdb replace dev {dev} dst {dst}"),
            RouteNetlinkMessage::NewNeighbour(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
        .await
    }

    /// `bridge fdb del <mac> dev <dev> self`; `Ok(false)` if absent.
    pub async fn delete_fdb(&self, dev: &str, mac: &[u8]) -> Result<bool, NetlinkError> {
        let index = self.ifindex(dev).await?;
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Bridge;
        msg.header.ifindex = index;
        msg.header.flags = NeighbourFlags::Own;
        msg.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        absent_is_false(
            self.ack(
                &format!("fdb del dev {dev}"),
                RouteNetlinkMessage::DelNeighbour(msg),
                0,
            )
            .await,
        )
    }

    /// FDB entries of `dev` (a VXLAN device).
    pub async fn fdb(&self, dev: &str) -> Result<Vec<FdbEntry>, NetlinkError> {
        let index = self.ifindex(dev).await?;
        let mut req = NeighbourMessage::default();
        req.header.family = AddressFamily::Bridge;
        let msgs = self
            .dump("dump fdb", RouteNetlinkMessage::GetNeighbour(req))
            .await?;
        let mut entries = Vec::new();
        for m in msgs {
            let RouteNetlinkMessage::NewNeighbour(n) = m else {
                continue;
            };
            if n.header.ifindex != index {
                continue;
            }
            let mut mac = None;
            let mut dst = None;
            for attr in &n.attributes {
                match attr {
                    NeighbourAttribute::LinkLayerAddress(l) => mac = Some(l.clone()),
                    NeighbourAttribute::Destination(a) => dst = neighbour_ip(a),
                    _ => {}
                }
            }
            if let Some(mac) = mac {
                entries.push(FdbEntry {
                    ifindex: index,
                    mac,
                    dst,
                    permanent: n.header.state == NeighbourState::Permanent,
                });
            }
        }
        Ok(entries)
    }
}

impl KernelRoutes for Netlink {
    async fn list_routes(&self) -> Result<Vec<KernelRoute>, NetlinkError> {
        let names = self.names_by_index().await?;
        let mut routes = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut req = RouteMessage::default();
            req.header.address_family = family;
            req.header.protocol = RouteProtocol::from(self.protocol);
            req.header.table = RT_TABLE_MAIN;
            let msgs = self
                .dump("dump routes", RouteNetlinkMessage::GetRoute(req))
                .await?;
            for m in msgs {
                if let RouteNetlinkMessage::NewRoute(r) = m {
                    if let Some(k) = decode_route(&r, self.protocol, &names) {
                        routes.push(k);
                    }
                }
            }
        }
        Ok(routes)
    }

    async fn holds(&self, route: &Route) -> bool {
        match self.route_at(route.dst).await {
            Ok(Some(k)) => k.target == route.target && k.metric == default_metric(&route.dst),
            _ => false,
        }
    }

    async fn apply(&self, op: &RouteOp) -> Result<(), OpError> {
        match self.apply_once(op).await {
            // The ifindex may be stale (interface re-created): refresh once.
            Err(OpError::LinkMissing(dev)) if !dev.is_empty() => {
                if self.refresh_ifindex(&dev).await.is_err() {
                    return Err(OpError::LinkMissing(dev));
                }
                self.apply_once(op).await
            }
            other => other,
        }
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
