//! Links: listing, creating (veth, VXLAN), changing, deleting and moving
//! them between namespaces; the name → ifindex cache.

use super::*;

impl Netlink {
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

    /// How the kernel reaches `addr` (`ip route get <addr>`): the gateway
    /// and device of the route it would use, or `None` when `addr` is on a
    /// connected network (no gateway) or unreachable. BIRD's recursive
    /// next hop resolution, for a BGP next hop off the node's networks.
    pub async fn gateway_toward(
        &self,
        addr: IpAddr,
    ) -> Result<Option<crate::route::NextHop>, NetlinkError> {
        let mut req = RouteMessage::default();
        req.header.address_family = family_of(&addr);
        req.header.destination_prefix_length = if addr.is_ipv4() { 32 } else { 128 };
        req.attributes
            .push(RouteAttribute::Destination(route_address(addr)));
        let reply = match self
            .request_one("resolve a next hop", RouteNetlinkMessage::GetRoute(req))
            .await
        {
            Ok(r) => r,
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
        let mut gateway = None;
        let mut oif = None;
        for attr in &r.attributes {
            match attr {
                RouteAttribute::Gateway(a) => gateway = ip_of(a),
                RouteAttribute::Oif(i) => oif = Some(*i),
                _ => {}
            }
        }
        let Some(gateway) = gateway.filter(|g| *g != addr) else {
            return Ok(None);
        };
        let names = self.names_by_index().await?;
        Ok(Some(match oif.and_then(|i| names.get(&i)) {
            Some(name) => crate::route::NextHop::via_dev(gateway, name.clone()),
            None => crate::route::NextHop::via(gateway),
        }))
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

    pub(super) async fn refresh_ifindex(&self, name: &str) -> Result<u32, NetlinkError> {
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

    pub(super) fn forget(&self, name: &str) {
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
}
