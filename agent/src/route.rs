//! Route model shared by the reconciler and the kernel implementation.
//!
//! A [`Route`] is what Brindle wants in the main routing table for one
//! destination prefix; a [`KernelRoute`] is what a dump of the kernel returned
//! for a route carrying Brindle's protocol number. Both use interface *names*
//! (the kernel implementation translates to and from ifindexes), so the pure
//! reconciler never needs to know ifindexes and survives an interface being
//! re-created with a new index.
//!
//! Nothing here validates that a gateway is reachable or that a device exists:
//! that is the kernel's job and surfaces as an [`crate::reconciler::OpError`].

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// Route protocol number Brindle stamps on every route it owns (`proto 80`).
///
/// Everything the reconciler deletes or replaces carries this number; routes
/// of every other protocol (kernel, BIRD, FRR, DHCP, static…) are invisible to
/// it. 80 is unassigned in `/etc/iproute2/rt_protos`. Calico's Felix also uses
/// 80 for its VXLAN routes, so a host migrating from Calico should run with a
/// different number ([`crate::reconciler::ReconcilerConfig::protocol`]).
pub const BRINDLE_ROUTE_PROTOCOL: u8 = 80;

/// Name `ip route` prints for [`BRINDLE_ROUTE_PROTOCOL`] once
/// `/etc/iproute2/rt_protos.d/brindle.conf` is installed.
pub const BRINDLE_ROUTE_PROTOCOL_NAME: &str = "brindle";

/// One next hop of a gateway or ECMP route.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NextHop {
    /// Gateway address; `None` for a device-only hop.
    pub gateway: Option<IpAddr>,
    /// Outgoing interface. `None` lets the kernel pick it from the gateway
    /// (peer node in the same subnet); a route read back from the kernel
    /// always has it.
    pub device: Option<String>,
    /// `onlink`: the gateway is on the device even though no connected
    /// prefix says so (tunnel next hops: `via <peer> dev tunl0 onlink`).
    pub onlink: bool,
}

impl NextHop {
    /// `via <gateway>` with the kernel choosing the interface.
    pub fn via(gateway: IpAddr) -> Self {
        Self {
            gateway: Some(gateway),
            device: None,
            onlink: false,
        }
    }

    /// `via <gateway> dev <device>`.
    pub fn via_dev(gateway: IpAddr, device: impl Into<String>) -> Self {
        Self {
            gateway: Some(gateway),
            device: Some(device.into()),
            onlink: false,
        }
    }

    /// `via <gateway> dev <device> onlink` (ipip `tunl0`, `vxlan.brindle`).
    pub fn onlink(gateway: IpAddr, device: impl Into<String>) -> Self {
        Self {
            gateway: Some(gateway),
            device: Some(device.into()),
            onlink: true,
        }
    }

    /// Whether `self` (desired) is satisfied by `other` (kernel). A missing
    /// device on either side matches any device: the kernel resolved it.
    fn matches(&self, other: &NextHop) -> bool {
        let device_ok = match (&self.device, &other.device) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        self.gateway == other.gateway && self.onlink == other.onlink && device_ok
    }
}

impl fmt::Display for NextHop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        if let Some(gw) = self.gateway {
            write!(f, "via {gw}")?;
            sep = " ";
        }
        if let Some(dev) = &self.device {
            write!(f, "{sep}dev {dev}")?;
        }
        if self.onlink {
            write!(f, " onlink")?;
        }
        Ok(())
    }
}

/// Where traffic for a prefix goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RouteTarget {
    /// `blackhole <prefix>`: the node's own IPAM blocks, so addresses of the
    /// block that have no workload are dropped here instead of bouncing
    /// back to the default route.
    Blackhole,
    /// `<prefix> dev <device> scope link`: a local workload behind its veth.
    Device(String),
    /// One gateway (`len() == 1`) or an ECMP route (`len() > 1`). The order
    /// is irrelevant; [`RouteTarget::nexthops`] normalises it.
    NextHops(Vec<NextHop>),
    /// Anything else read from the kernel (unreachable, prohibit, a route
    /// with no next hop…). Never desired, so always replaced or deleted.
    Unsupported(String),
}

impl RouteTarget {
    /// A gateway or ECMP target with its next hops sorted and deduplicated.
    ///
    /// # Panics
    /// If `hops` is empty: a route needs at least one next hop.
    pub fn nexthops(mut hops: Vec<NextHop>) -> Self {
        assert!(!hops.is_empty(), "a gateway route needs a next hop");
        hops.sort();
        hops.dedup();
        RouteTarget::NextHops(hops)
    }

    /// Whether the kernel's `actual` target already does what `self` asks.
    pub fn satisfied_by(&self, actual: &RouteTarget) -> bool {
        match (self, actual) {
            (RouteTarget::Blackhole, RouteTarget::Blackhole) => true,
            (RouteTarget::Device(a), RouteTarget::Device(b)) => a == b,
            (RouteTarget::NextHops(want), RouteTarget::NextHops(have)) => {
                if want.len() != have.len() {
                    return false;
                }
                // Small n (ECMP fan-out): a greedy bipartite match is enough
                // because wildcard devices only relax, never conflict.
                let mut used = vec![false; have.len()];
                want.iter().all(|w| {
                    let found = have
                        .iter()
                        .enumerate()
                        .find(|(i, h)| !used[*i] && w.matches(h))
                        .map(|(i, _)| i);
                    match found {
                        Some(i) => {
                            used[i] = true;
                            true
                        }
                        None => false,
                    }
                })
            }
            _ => false,
        }
    }

    /// Interfaces this target needs to exist before it can be installed.
    pub fn devices(&self) -> Vec<&str> {
        match self {
            RouteTarget::Device(dev) => vec![dev.as_str()],
            RouteTarget::NextHops(hops) => {
                hops.iter().filter_map(|h| h.device.as_deref()).collect()
            }
            RouteTarget::Blackhole | RouteTarget::Unsupported(_) => Vec::new(),
        }
    }
}

impl fmt::Display for RouteTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteTarget::Blackhole => write!(f, "blackhole"),
            RouteTarget::Device(dev) => write!(f, "dev {dev} scope link"),
            RouteTarget::NextHops(hops) if hops.len() == 1 => write!(f, "{}", hops[0]),
            RouteTarget::NextHops(hops) => {
                for (i, hop) in hops.iter().enumerate() {
                    if i > 0 {
                        write!(f, " ")?;
                    }
                    write!(f, "nexthop {hop}")?;
                }
                Ok(())
            }
            RouteTarget::Unsupported(what) => write!(f, "unsupported({what})"),
        }
    }
}

/// A route Brindle wants in the main table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route {
    pub dst: IpNet,
    pub target: RouteTarget,
}

impl Route {
    /// `blackhole <block>`.
    pub fn blackhole(dst: IpNet) -> Self {
        Self {
            dst: dst.trunc(),
            target: RouteTarget::Blackhole,
        }
    }

    /// `<addr>/32 dev <cali…> scope link`.
    pub fn workload(dst: IpNet, device: impl Into<String>) -> Self {
        Self {
            dst: dst.trunc(),
            target: RouteTarget::Device(device.into()),
        }
    }

    /// `<block> via <peer>` (peer in the same subnet).
    pub fn via(dst: IpNet, gateway: IpAddr) -> Self {
        Self {
            dst: dst.trunc(),
            target: RouteTarget::nexthops(vec![NextHop::via(gateway)]),
        }
    }

    /// `<block> via <gateway> dev <tunnel> onlink` (ipip and VXLAN).
    pub fn onlink(dst: IpNet, gateway: IpAddr, device: impl Into<String>) -> Self {
        Self {
            dst: dst.trunc(),
            target: RouteTarget::nexthops(vec![NextHop::onlink(gateway, device)]),
        }
    }

    /// ECMP over `hops`.
    ///
    /// # Panics
    /// If `hops` is empty.
    pub fn multipath(dst: IpNet, hops: Vec<NextHop>) -> Self {
        Self {
            dst: dst.trunc(),
            target: RouteTarget::nexthops(hops),
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.target {
            RouteTarget::Blackhole => write!(f, "blackhole {}", self.dst),
            _ => write!(f, "{} {}", self.dst, self.target),
        }
    }
}

/// A route of Brindle's protocol as the kernel reported it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KernelRoute {
    pub dst: IpNet,
    pub target: RouteTarget,
    /// The kernel's priority (metric). Part of the route's identity: two
    /// routes for one prefix with different metrics coexist.
    pub metric: u32,
}

/// The metric the kernel gives a route added without one: 0 for IPv4, 1024
/// for IPv6. A replace only hits an existing route of the same metric.
pub fn default_metric(dst: &IpNet) -> u32 {
    match dst {
        IpNet::V4(_) => 0,
        IpNet::V6(_) => 1024,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn wildcard_device_matches_resolved_device() {
        let want = RouteTarget::nexthops(vec![NextHop::via(ip("10.0.0.2"))]);
        let have = RouteTarget::nexthops(vec![NextHop::via_dev(ip("10.0.0.2"), "eth0")]);
        assert!(want.satisfied_by(&have));
    }

    #[test]
    fn ecmp_order_is_irrelevant_but_members_matter() {
        let a = NextHop::via_dev(ip("10.0.0.2"), "eth0");
        let b = NextHop::via_dev(ip("10.0.0.3"), "eth0");
        let c = NextHop::via_dev(ip("10.0.0.4"), "eth0");
        let want = RouteTarget::nexthops(vec![a.clone(), b.clone()]);
        assert!(want.satisfied_by(&RouteTarget::nexthops(vec![b.clone(), a.clone()])));
        assert!(!want.satisfied_by(&RouteTarget::nexthops(vec![a.clone(), c])));
        assert!(!want.satisfied_by(&RouteTarget::nexthops(vec![a])));
    }

    #[test]
    fn onlink_flag_is_significant() {
        let want = RouteTarget::nexthops(vec![NextHop::onlink(ip("10.0.0.2"), "tunl0")]);
        let have = RouteTarget::nexthops(vec![NextHop::via_dev(ip("10.0.0.2"), "tunl0")]);
        assert!(!want.satisfied_by(&have));
    }

    #[test]
    fn display_reads_like_ip_route() {
        let r = Route::onlink("10.65.1.0/26".parse().unwrap(), ip("192.168.0.33"), "tunl0");
        assert_eq!(
            r.to_string(),
            "10.65.1.0/26 via 192.168.0.33 dev tunl0 onlink"
        );
        let r = Route::blackhole("10.65.0.0/26".parse().unwrap());
        assert_eq!(r.to_string(), "blackhole 10.65.0.0/26");
        let r = Route::workload("10.65.0.3/32".parse().unwrap(), "cali0123456789a");
        assert_eq!(r.to_string(), "10.65.0.3/32 dev cali0123456789a scope link");
    }
}
