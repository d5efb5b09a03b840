//! Routes: our protocol's routes in the main table (what the reconciler
//! and the CNI plugin write), and reads of others (the default route).

use super::*;

impl Netlink {
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
    pub(super) async fn names_by_index(&self) -> Result<HashMap<u32, String>, NetlinkError> {
        Ok(self
            .links()
            .await?
            .into_iter()
            .map(|l| (l.index, l.name))
            .collect())
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
