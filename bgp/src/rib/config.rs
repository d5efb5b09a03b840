//! What the RIB is configured with: its own settings and, per established
//! peer, what the decision process and the export rules need to know.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use std::sync::Arc;

use ipnet::IpNet;

use super::filter::{FilterVerdict, RouteFilter};
use crate::packet::attribute::PathAttributes;

/// RIB-wide settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RibConfig {
    pub local_asn: u32,
    pub router_id: Ipv4Addr,
    /// `Some`: we are a route reflector (RFC 4456) with this cluster id.
    pub cluster_id: Option<Ipv4Addr>,
    /// Compare MED between routes from different neighbour ASes too.
    pub always_compare_med: bool,
    /// Most routes installed together for one prefix; 1 disables multipath.
    pub max_paths: usize,
    /// LOCAL_PREF given to eBGP-learned routes and assumed when missing.
    pub default_local_pref: u32,
    /// Our connected networks with their interfaces: a route's outgoing
    /// interface, for BGPFilter `interface` rules, is the one whose
    /// network holds its next hop (see [`RibConfig::interface_of`]).
    pub connected: Arc<Vec<(IpNet, String)>>,
}

impl RibConfig {
    pub fn new(local_asn: u32, router_id: Ipv4Addr) -> Self {
        Self {
            local_asn,
            router_id,
            cluster_id: None,
            always_compare_med: false,
            max_paths: 1,
            default_local_pref: 100,
            connected: Arc::default(),
        }
    }

    /// The outgoing interface of a route with these attributes: the one
    /// of the connected network its next hop is on (the longest such).
    pub fn interface_of(&self, attrs: &super::PathAttrs) -> Option<&str> {
        let hop = attrs.next_hop_addr()?;
        self.connected
            .iter()
            .filter(|(net, _)| net.contains(&hop))
            .max_by_key(|(net, _)| net.prefix_len())
            .map(|(_, name)| name.as_str())
    }
}

/// One established peer as the RIB needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub address: IpAddr,
    pub asn: u32,
    /// BGP identifier from the peer's OPEN.
    pub router_id: Ipv4Addr,
    /// Route-reflector client (only meaningful when we reflect).
    pub rr_client: bool,
    /// Set ourselves as next hop for eBGP-learned routes sent to this iBGP
    /// peer (always done towards eBGP peers).
    pub next_hop_self: bool,
    /// Our addresses on this session, used as next hop self per family.
    pub local_v4: Option<Ipv4Addr>,
    pub local_v6: Option<Ipv6Addr>,
    /// Our link-local address on the session's interface, sent after the
    /// global one in a 32-octet IPv6 next hop (RFC 2545).
    pub local_v6_link_local: Option<Ipv6Addr>,
    /// Our address as next hop of every route sent to this peer, reflected
    /// ones too (BIRD's `next hop self`, Calico's `nextHopMode: Self`).
    pub next_hop_self_always: bool,
    /// The route's own next hop, also toward an eBGP peer (BIRD's `next
    /// hop keep`, Calico's `nextHopMode: Keep`); a route without one
    /// (ours) still gets ours.
    pub next_hop_keep: bool,
    /// Times our own AS may appear in an AS_PATH received from this eBGP
    /// peer before the route is a loop (BIRD's `allow local as`; Calico's
    /// `numAllowedLocalASNumbers`); 0: none.
    pub allow_local_as: u8,
    /// Only routes inside these prefixes go to this peer (`None`: any);
    /// checked before the attribute rules, after `export_filter`.
    pub export_only: Option<ExportPrefixes>,
    /// Rules for what goes to this peer (Calico's BGPFilter `exportV4/V6`):
    /// a rule's verdict wins over `export_only`.
    pub export_filter: Option<Arc<RouteFilter>>,
    /// Rules for what is taken from this peer (`importV4/V6`); a route no
    /// rule rejects is imported.
    pub import_filter: Option<Arc<RouteFilter>>,
    /// The peer negotiated long-lived graceful restart (RFC 9494): it may
    /// be sent routes marked `LLGR_STALE`, which other peers never get.
    pub long_lived: bool,
    /// BIRD's `gateway direct` (Calico's `birdGatewayMode:
    /// DirectIfDirectlyConnected`): the networks directly connected to us;
    /// a route from this peer whose next hop lies outside all of them is
    /// installed through the peer's address instead. `None`: next hops as
    /// received.
    pub direct_gateway: Option<Arc<Vec<IpNet>>>,
}

impl PeerConfig {
    pub fn new(address: IpAddr, asn: u32, router_id: Ipv4Addr) -> Self {
        Self {
            address,
            asn,
            router_id,
            rr_client: false,
            next_hop_self: false,
            local_v4: None,
            local_v6: None,
            local_v6_link_local: None,
            export_only: None,
            export_filter: None,
            import_filter: None,
            allow_local_as: 0,
            next_hop_self_always: false,
            next_hop_keep: false,
            long_lived: false,
            direct_gateway: None,
        }
    }

    /// Whether the filters let `prefix` go to this peer (`learned`: the
    /// route came from a peer, not from us; `attrs`: its attributes).
    pub fn exports(
        &self,
        prefix: &IpNet,
        learned: bool,
        attrs: &PathAttributes,
        iface: Option<&str>,
    ) -> bool {
        match self
            .export_filter
            .as_ref()
            .and_then(|f| f.verdict(prefix, learned, attrs, iface))
        {
            Some(FilterVerdict::Accept) => true,
            Some(FilterVerdict::Reject) => false,
            None => self
                .export_only
                .as_ref()
                .is_none_or(|only| only.contains(prefix)),
        }
    }

    /// Whether the import filter takes `prefix` with `attrs` from this peer.
    pub fn imports(&self, prefix: &IpNet, attrs: &PathAttributes, iface: Option<&str>) -> bool {
        self.import_filter
            .as_ref()
            .and_then(|f| f.verdict(prefix, true, attrs, iface))
            != Some(FilterVerdict::Reject)
    }
}

/// The prefixes an export filter lets through: a route goes out when one
/// of them holds it. Shared (cheap to clone into every session's config).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExportPrefixes(pub std::sync::Arc<Vec<IpNet>>);

impl ExportPrefixes {
    pub fn new(prefixes: Vec<IpNet>) -> Self {
        Self(std::sync::Arc::new(prefixes))
    }

    pub fn contains(&self, prefix: &IpNet) -> bool {
        self.0.iter().any(|p| p.contains(prefix))
    }
}
