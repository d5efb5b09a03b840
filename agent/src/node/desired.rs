//! The node's desired state, computed purely from the cluster state and the
//! speaker's Loc-RIB: `desired_state(inputs) -> Desired`.
//!
//! * **Originations**: the node's own IPAM blocks (as their block prefix,
//!   e.g. /26) plus every address it borrowed from another node's block (as
//!   a /32); never prefixes of pools with `disableBGPExport`.
//! * **Kernel routes** (all under Brindle's route protocol):
//!   `blackhole <block>` for each own block (not for /32 blocks), `<ip> dev
//!   caliX scope link` for each local workload, and one route per learned
//!   prefix whose kind [`learned_route`] chooses from the pool's
//!   encapsulation and the subnets.
//! * **Peers**: the node-to-node mesh from `Node` resources when enabled
//!   (route reflectors leave it; the node with the higher address is
//!   passive, like Calico), plus `BGPPeer` resources that apply to this node
//!   (global, `node`, or `nodeSelector`; targets by `peerIP` or
//!   `peerSelector`; a `peerSelector` peering also runs back from the
//!   nodes it selects unless `reversePeering: Manual`). A route-reflector
//!   node treats same-AS peers that are not reflectors themselves as
//!   clients. Passwords stay references here (the daemon reads them).
//!   Every session exports only routes inside the IP pools (less
//!   `disableBGPExport` ones) and the service ranges, as Calico's BIRD.
//! * **VTEPs**: the remote nodes' VXLAN endpoints, when a pool uses VXLAN.
//!
//! IPv6: a node whose `Node` has `spec.bgp.ipv6Address` gets IPv6 sessions
//! (mesh, `peerSelector` and IPv6 `peerIP` peers) between IPv6 addresses,
//! one family per session as Calico's BIRD does (an IPv6 next hop needs the
//! session's own IPv6 address); its IPv6 blocks are originated and learned
//! IPv6 prefixes are routed via the peer's IPv6 address, or through
//! `vxlan6.brindle` (IPv6 underlay, IPv6 tunnel addresses and VTEPs) when
//! the IPv6 pool's `vxlanMode` asks for it; ipip is IPv4 only. Nothing here
//! panics; data that cannot be used (a node
//! without an address, a malformed peer IP) is left out.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use brindle_bgp::bfd::BfdConfig;
use std::sync::Arc;

use brindle_bgp::packet::{Community, LargeCommunity};
use brindle_bgp::rib::{
    CommunityMatch, ExportPrefixes, FilterRule, FilterVerdict, PrefixMatch, PrefixOp, RouteFilter,
    RouteOperation,
};
use brindle_bgp::speaker::{LimitAction, PeerConfig, PrefixLimit};
use brindle_model::bgp::{
    parse_peer_ip, BGPFilterRule, FailureDetectionMode, FilterAction, FilterPeerType, FilterSource,
    GatewayMode, MatchOperator, MaxPrefixAction, NextHopMode, RestartMode, ReversePeering,
    SecretKeySelector, SourceAddress,
};

/// BIRD's default `long lived stale time`, for `restartMode:
/// LongLivedGracefulRestart` without `maxRestartTime`.
pub const DEFAULT_LONG_LIVED_STALE_TIME: u32 = 3600;
use brindle_model::ipam::{EncapMode, IPPoolSpec};
use brindle_model::validate::parse_go_duration as parse_duration;
use ipnet::IpNet;

use super::cluster::{ClusterState, Communities, NodeInfo};
use crate::route::{Route, RouteTarget};
use crate::tunnel::{Vtep, IPIP_DEVICE, VXLAN_DEVICE, VXLAN_V6_DEVICE};

/// How `brindlectl node status` names a session's origin (the status
/// document's own type).
pub use brindle_model::status::PeerType;

/// One session the node should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredPeer {
    /// The session; `md5_password` is left for the daemon to fill from
    /// `password` (reading the secrets directory is I/O).
    pub config: PeerConfig,
    pub kind: PeerType,
    /// The remote node (mesh, peerSelector) or the BGPPeer resource.
    pub name: String,
    /// Where the session's TCP-MD5 password is: the BGPPeer's
    /// `password.secretKeyRef`, or `nodeMeshPassword` for the mesh.
    pub password: Option<SecretKeySelector>,
}

/// A Loc-RIB entry learned from a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Learned {
    /// The best path's next hop first, then those of the paths equal to it
    /// (the speaker's multipath set): one ECMP route in the kernel, as
    /// Calico's BIRD installs with `merge paths`.
    pub next_hops: Vec<IpAddr>,
}

impl Learned {
    /// A route with one path.
    pub fn via(next_hop: IpAddr) -> Self {
        Self {
            next_hops: vec![next_hop],
        }
    }
}

/// What the pure core is given.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub node: &'a str,
    pub cluster: &'a ClusterState,
    pub learned: &'a BTreeMap<IpNet, Learned>,
}

/// What the node should make true.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub routes: Vec<Route>,
    pub originations: BTreeSet<IpNet>,
    /// BGPFilters named by a BGPPeer that do not exist (the peer runs
    /// without them; the daemon warns).
    pub missing_filters: BTreeSet<String>,
    /// The communities of the originations that carry some
    /// (`prefixAdvertisements`).
    pub communities: BTreeMap<IpNet, Communities>,
    pub peers: BTreeMap<IpAddr, DesiredPeer>,
    pub vteps: Vec<Vtep>,
    /// The remote nodes' IPv6 VXLAN endpoints (on `vxlan6.brindle`).
    pub vteps6: Vec<Vtep>,
    /// Some enabled IPv4 pool uses VXLAN: the device must exist.
    pub vxlan: bool,
    /// Some enabled IPv6 pool uses VXLAN: `vxlan6.brindle` must exist.
    pub vxlan6: bool,
    /// Some enabled pool uses ipip: `tunl0` must be configured.
    pub ipip: bool,
    /// `localWorkloadPeeringIPV4`/`IPV6` (a /32 or /128) on the host-side
    /// interface of each local workload a BGPPeer's
    /// `localWorkloadSelector` selects, as Felix puts it there: the
    /// address the workload's BGP speaker dials.
    pub peering_addresses: BTreeSet<(String, IpNet)>,
    /// Gateways of `routes` on none of the node's own subnets, to be
    /// resolved through the kernel (recursive next hops).
    pub off_link_gateways: BTreeSet<IpAddr>,
}

/// Parses a Go duration of whole seconds/minutes (`120s`, `2m`, `1m30s`).
pub fn parse_go_duration(text: &str) -> Option<Duration> {
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number.parse().ok()?;
        number.clear();
        total += match c {
            'h' => n * 3600,
            'm' => n * 60,
            's' => n,
            _ => return None,
        };
    }
    number.is_empty().then(|| Duration::from_secs(total))
}

fn pool_of<'a>(pools: &'a [(String, IPPoolSpec)], prefix: &IpNet) -> Option<&'a IPPoolSpec> {
    pools
        .iter()
        .map(|(_, p)| p)
        .find(|p| p.net().is_some_and(|net| net.contains(prefix)))
}

/// The kernel route for a prefix learned with `next_hop`:
/// * the pool's `vxlanMode` is Always, or CrossSubnet and the next hop is
///   outside `local_subnets`, and the remote node has a VTEP of the
///   prefix's family: `via <remote tunnel address> dev vxlan.brindle
///   onlink` (IPv6: `vxlan6.brindle`);
/// * likewise for `ipipMode`: `via <next hop> dev tunl0 onlink`;
/// * otherwise directly `via <next hop>` (same subnet, or a ToR's route).
pub fn learned_route(
    prefix: IpNet,
    next_hop: IpAddr,
    local_subnets: &[IpNet],
    pool: Option<&IPPoolSpec>,
    remote: Option<&NodeInfo>,
) -> Route {
    let same_subnet = local_subnets.iter().any(|net| net.contains(&next_hop));
    let encapsulate = |mode: Option<EncapMode>| match mode.unwrap_or_default() {
        EncapMode::Always => true,
        EncapMode::CrossSubnet => !same_subnet,
        EncapMode::Never => false,
    };
    if let Some(pool) = pool.filter(|p| !p.disabled) {
        if encapsulate(pool.vxlan_mode) {
            // Each family has its own device and tunnel addresses.
            let (tunnel, device) = match prefix {
                IpNet::V4(_) => (
                    remote.and_then(|r| r.vxlan_tunnel).map(IpAddr::V4),
                    VXLAN_DEVICE,
                ),
                IpNet::V6(_) => (
                    remote.and_then(|r| r.vxlan_tunnel6).map(IpAddr::V6),
                    VXLAN_V6_DEVICE,
                ),
            };
            if let Some(tunnel) = tunnel {
                return Route::onlink(prefix, tunnel, device);
            }
        }
        if encapsulate(pool.ipip_mode) && next_hop.is_ipv4() {
            return Route::onlink(prefix, next_hop, IPIP_DEVICE);
        }
    }
    Route::via(prefix, next_hop)
}

/// The import and export rules of a session from the BGPFilters a BGPPeer
/// names, in order (first match wins across them, as Calico's BIRD chains
/// them). A rule for the other peer type (`peerType`) is left out, and so
/// is one with a route priority (`priority`, a `setPriority` operation),
/// which `brindlectl apply` refuses: only a document stored before that
/// has one.
fn compile_filters(
    cluster: &ClusterState,
    names: &[String],
    ibgp: bool,
    missing: &mut BTreeSet<String>,
) -> (Option<Arc<RouteFilter>>, Option<Arc<RouteFilter>>) {
    let mut import = RouteFilter::default();
    let mut export = RouteFilter::default();
    for name in names {
        let Some(spec) = cluster.filters.get(name) else {
            missing.insert(name.clone());
            continue;
        };
        for (rules, into) in [
            (&spec.import_v4, &mut import.v4),
            (&spec.import_v6, &mut import.v6),
            (&spec.export_v4, &mut export.v4),
            (&spec.export_v6, &mut export.v6),
        ] {
            into.extend(rules.iter().filter_map(|r| filter_rule(r, ibgp)));
        }
    }
    let shared = |f: RouteFilter| (!f.is_empty()).then(|| Arc::new(f));
    (shared(import), shared(export))
}

fn filter_rule(rule: &BGPFilterRule, ibgp: bool) -> Option<FilterRule> {
    let for_this_peer = match rule.peer_type {
        None => true,
        Some(FilterPeerType::IBgp) => ibgp,
        Some(FilterPeerType::EBgp) => !ibgp,
    };
    // Not evaluated (warned about at apply): the rule is left out whole.
    let unsupported =
        rule.priority.is_some() || rule.operations.iter().any(|op| op.set_priority.is_some());
    if !for_this_peer || unsupported {
        return None;
    }
    let operations = rule
        .operations
        .iter()
        .map(|op| match (&op.add_community, &op.prepend_as_path) {
            (Some(c), _) => community_match(&c.value).map(RouteOperation::AddCommunity),
            (None, Some(p)) => Some(RouteOperation::PrependAsPath(
                p.prefix.iter().map(|a| a.0).collect(),
            )),
            // Validation allows exactly one operation per entry.
            (None, None) => None,
        })
        .collect::<Option<Vec<_>>>()?;
    let community = match &rule.communities {
        None => None,
        // Calico allows exactly one value (validated).
        Some(m) => Some(community_match(m.values.first()?)?),
    };
    let verdict = match rule.action? {
        FilterAction::Accept => FilterVerdict::Accept,
        FilterAction::Reject => FilterVerdict::Reject,
    };
    let prefix = match (&rule.cidr, rule.match_operator) {
        (Some(cidr), Some(op)) => {
            let cidr: IpNet = cidr.parse().ok()?;
            let op = match op {
                MatchOperator::Equal => PrefixOp::Equal,
                MatchOperator::NotEqual => PrefixOp::NotEqual,
                MatchOperator::In => PrefixOp::In,
                MatchOperator::NotIn => PrefixOp::NotIn,
            };
            let mut m = PrefixMatch::new(cidr, op);
            if let Some(lengths) = &rule.prefix_length {
                let bound = |v: Option<i64>, default: u8| {
                    v.and_then(|v| u8::try_from(v).ok()).unwrap_or(default)
                };
                m.lengths = (
                    bound(lengths.min, m.lengths.0),
                    bound(lengths.max, m.lengths.1),
                );
            }
            Some(m)
        }
        _ => None,
    };
    Some(FilterRule {
        verdict,
        prefix,
        learned_only: rule.source == Some(FilterSource::RemotePeers),
        community,
        as_path_prefix: rule.as_path_prefix.iter().map(|a| a.0).collect(),
        operations,
        interface: rule.interface.clone(),
    })
}

/// A community in Calico's text form: `aa:nn` (standard) or `aa:nn:mm`
/// (large).
fn community_match(text: &str) -> Option<CommunityMatch> {
    let parts: Vec<&str> = text.split(':').collect();
    match parts[..] {
        [a, n] => Some(CommunityMatch::Standard(Community::new(
            a.parse().ok()?,
            n.parse().ok()?,
        ))),
        [a, n, m] => Some(CommunityMatch::Large(LargeCommunity {
            global_admin: a.parse().ok()?,
            local_data1: n.parse().ok()?,
            local_data2: m.parse().ok()?,
        })),
        _ => None,
    }
}

/// One route from the routes of a prefix's equal paths: their next hops
/// together (ECMP), or the best path's route alone when one of them is not
/// a gateway route.
fn merge_paths(paths: Vec<Route>) -> Option<Route> {
    let mut paths = paths.into_iter();
    let first = paths.next()?;
    let RouteTarget::NextHops(mut hops) = first.target.clone() else {
        return Some(first);
    };
    for path in paths {
        match path.target {
            RouteTarget::NextHops(more) => hops.extend(more),
            _ => return Some(first),
        }
    }
    Some(Route {
        dst: first.dst,
        target: RouteTarget::nexthops(hops),
    })
}

/// A session to `address` from `local` (our address of the same family),
/// carrying that family only.
fn peer_config(address: IpAddr, remote_asn: u32, local: Option<IpAddr>) -> PeerConfig {
    let mut config = PeerConfig::new(address, remote_asn);
    // Mesh sessions are one-directional like Calico's: the node with the
    // higher address waits, which avoids collisions and a restart race.
    if let Some(local) = local.filter(|l| l.is_ipv4() == address.is_ipv4()) {
        config.passive = local > address;
        config.source_address = Some(local);
    }
    config.ipv4_unicast = address.is_ipv4();
    config.ipv6_unicast = address.is_ipv6();
    config
}

/// The BFD timers of `node`: its `BFDConfiguration node.<name>` over
/// `default` over the built-in 100 ms × 3.
fn bfd_config(cluster: &ClusterState, node: &str) -> BfdConfig {
    let mut config = BfdConfig::default();
    let own = format!("node.{node}");
    for spec in [cluster.bfd.get("default"), cluster.bfd.get(&own)]
        .into_iter()
        .flatten()
    {
        let duration = |text: &Option<String>| text.as_deref().and_then(parse_duration);
        if let Some(d) = duration(&spec.minimum_recv_interval) {
            config.min_rx = d;
        }
        if let Some(d) = duration(&spec.minimum_send_interval) {
            config.min_tx = d;
        }
        if let Some(d) = duration(&spec.idle_send_interval) {
            config.idle_tx = d;
        }
        if let Some(m) = spec.multiplier.and_then(|m| u8::try_from(m).ok()) {
            config.multiplier = m.max(1);
        }
    }
    config
}

/// A node's BGP addresses: IPv4, then IPv6.
fn node_addresses(n: &NodeInfo) -> impl Iterator<Item = IpAddr> {
    let v4 = n.ip().map(IpAddr::V4);
    let v6 = n.ip6().map(IpAddr::V6);
    v4.into_iter().chain(v6)
}

/// The communities `prefix` is announced with: those of every
/// `prefixAdvertisements` entry whose CIDR holds it (Calico's BIRD tests
/// `net ~ cidr` for each).
pub fn communities_for(cluster: &ClusterState, node: &str, prefix: &IpNet) -> Communities {
    let mut out = Communities::default();
    for (cidr, communities) in cluster.prefix_communities_of(node) {
        if cidr.contains(prefix) {
            out.merge(communities);
        }
    }
    out
}

/// The desired state; see the module docs.
pub fn desired_state(inputs: Inputs<'_>) -> Desired {
    let cluster = inputs.cluster;
    let me = cluster.nodes.get(inputs.node).map(|n| &**n);
    let local_ip = me.and_then(NodeInfo::ip);
    let local_ip6 = me.and_then(NodeInfo::ip6);
    // Our address of the family of `remote`.
    let local_for = |remote: IpAddr| match remote {
        IpAddr::V4(_) => local_ip.map(IpAddr::V4),
        IpAddr::V6(_) => local_ip6.map(IpAddr::V6),
    };
    let local_subnets: Vec<IpNet> = me
        .into_iter()
        .flat_map(|n| {
            let v4 = n.address.map(|a| IpNet::V4(a.trunc()));
            let v6 = n.address6.map(|a| IpNet::V6(a.trunc()));
            v4.into_iter().chain(v6)
        })
        .collect();
    let local_asn = me.and_then(|n| n.asn).unwrap_or(cluster.bgp.asn);
    let local_rr = me.and_then(|n| n.rr_cluster_id);
    let empty = BTreeMap::new();
    let local_labels = me.map_or(&empty, |n| &n.labels);
    let mut out = Desired::default();

    let enabled_pools = || cluster.pools.iter().map(|(_, p)| p).filter(|p| !p.disabled);
    let vxlan_pool = |v6: bool| {
        enabled_pools().any(|p| {
            p.vxlan_mode.unwrap_or_default().enabled()
                && p.net().is_some_and(|n| matches!(n, IpNet::V6(_)) == v6)
        })
    };
    out.vxlan = vxlan_pool(false);
    // IPv6 VXLAN runs over the IPv6 underlay: only with an IPv6 address.
    out.vxlan6 = vxlan_pool(true) && local_ip6.is_some();
    out.ipip = enabled_pools().any(|p| p.ipip_mode.unwrap_or_default().enabled());

    // Own blocks and borrowed addresses.
    let exported =
        |prefix: &IpNet| pool_of(&cluster.pools, prefix).is_some_and(|p| !p.disable_bgp_export);
    let mut own_blocks = BTreeSet::new();
    for block in &cluster.blocks {
        if block.affinity.as_deref() == Some(inputs.node) {
            own_blocks.insert(block.cidr);
            if block.cidr.prefix_len() < block.cidr.max_prefix_len() {
                out.routes.push(Route::blackhole(block.cidr));
            }
            if exported(&block.cidr) {
                out.originations.insert(block.cidr);
            }
        } else {
            for (ip, node) in &block.allocations {
                if node.as_deref() == Some(inputs.node) {
                    let host = IpNet::from(*ip);
                    if exported(&host) {
                        out.originations.insert(host);
                    }
                }
            }
        }
    }

    // Service address ranges: every node announces them (kube-proxy or
    // its like on the node takes the traffic from there).
    out.originations
        .extend(cluster.service_cidrs.iter().copied());
    for prefix in &out.originations {
        let communities = communities_for(cluster, inputs.node, prefix);
        if !communities.is_empty() {
            out.communities.insert(*prefix, communities);
        }
    }

    // Local workloads.
    for w in &cluster.workloads {
        if w.node.as_deref() != Some(inputs.node) {
            continue;
        }
        let Some(ifname) = &w.interface else { continue };
        for addr in &w.addresses {
            out.routes.push(Route::workload(*addr, ifname.clone()));
        }
    }

    // Learned routes.
    let node_by_ip: BTreeMap<IpAddr, &NodeInfo> = cluster
        .nodes
        .values()
        .map(|n| &**n)
        .flat_map(|n| {
            let v4 = n.ip().map(|ip| (IpAddr::V4(ip), n));
            let v6 = n.ip6().map(|ip| (IpAddr::V6(ip), n));
            v4.into_iter().chain(v6)
        })
        .collect();
    let local_prefixes: BTreeSet<IpNet> = out.routes.iter().map(|r| r.dst).collect();
    for (prefix, learned) in inputs.learned {
        if local_prefixes.contains(prefix) || out.originations.contains(prefix) {
            continue;
        }
        let paths: Vec<Route> = learned
            .next_hops
            .iter()
            .filter(|hop| local_for(**hop) != Some(**hop))
            .map(|hop| {
                learned_route(
                    *prefix,
                    *hop,
                    &local_subnets,
                    pool_of(&cluster.pools, prefix),
                    node_by_ip.get(hop).copied(),
                )
            })
            .collect();
        if let Some(route) = merge_paths(paths) {
            out.routes.push(route);
        }
    }

    // VTEPs of the other nodes, per family.
    if out.vxlan6 {
        for n in cluster.nodes.values() {
            if n.name == inputs.node {
                continue;
            }
            if let (Some(ip), Some(tunnel), Some(mac)) = (n.ip6(), n.vxlan_tunnel6, n.vxlan_mac6) {
                out.vteps6.push(Vtep {
                    tunnel_ip: IpAddr::V6(tunnel),
                    mac: mac.to_vec(),
                    node_ip: IpAddr::V6(ip),
                });
            }
        }
        out.vteps6.sort();
    }
    if out.vxlan {
        for n in cluster.nodes.values() {
            if n.name == inputs.node {
                continue;
            }
            if let (Some(ip), Some(tunnel), Some(mac)) = (n.ip(), n.vxlan_tunnel, n.vxlan_mac) {
                out.vteps.push(Vtep {
                    tunnel_ip: IpAddr::V4(tunnel),
                    mac: mac.to_vec(),
                    node_ip: IpAddr::V4(ip),
                });
            }
        }
        out.vteps.sort();
    }

    // What any session may carry out, as Calico's BIRD exports to every
    // BGP peer: routes inside the IP pools (less `disableBGPExport` ones)
    // and the service ranges, never a route learned from a ToR passed on
    // to another one or to the mesh.
    let export_only = ExportPrefixes::new(
        cluster
            .pools
            .iter()
            .filter(|(_, p)| !p.disable_bgp_export)
            .filter_map(|(_, p)| p.net())
            .chain(cluster.service_cidrs.iter().copied())
            .collect(),
    );

    // The mesh: a session per family both nodes have an address of.
    if cluster.bgp.mesh && local_rr.is_none() {
        for n in cluster.nodes.values() {
            if n.name == inputs.node || n.rr_cluster_id.is_some() {
                continue;
            }
            for remote in node_addresses(n) {
                let Some(local) = local_for(remote) else {
                    continue;
                };
                let mut config = peer_config(remote, n.asn.unwrap_or(cluster.bgp.asn), Some(local));
                config.port = cluster.listen_port_of(&n.name);
                if let Some(restart) = cluster.mesh_max_restart_time {
                    config.graceful_restart = Some(restart);
                }
                config.export_only = Some(export_only.clone());
                out.peers.insert(
                    config.address,
                    DesiredPeer {
                        config,
                        kind: PeerType::Mesh,
                        name: n.name.clone(),
                        password: cluster.mesh_password.clone(),
                    },
                );
            }
        }
    }

    // Explicit peerings (they take precedence over a mesh session to the
    // same address).
    for (name, spec) in &cluster.peers {
        let matcher = spec.matcher();
        // Calico's `reversePeering: Auto` (the default): a peering by
        // peerSelector also runs from each node it selects back to the
        // nodes the resource applies to, so one BGPPeer (all nodes peer
        // with the reflectors) configures both ends.
        let reverse = spec.peer_selector.is_some()
            && spec.reverse_peering != Some(ReversePeering::Manual)
            && matcher.selects_remote_node(local_labels);
        let forward = matcher.applies_to_node(inputs.node, local_labels);
        if !forward && !reverse {
            continue;
        }
        let kind = if spec.node.is_none() && spec.node_selector.is_none() {
            PeerType::Global
        } else {
            PeerType::NodeSpecific
        };
        let mut targets: Vec<(IpAddr, u16, u32, bool, String)> = Vec::new();
        let local_workload = spec.local_workload_selector.is_some();
        if let Some(text) = &spec.local_workload_selector {
            // Calico's local workload peering: each workload on this node
            // the selector matches is a passive peer (its speaker dials
            // the node, at `localWorkloadPeeringIPV4/6` on its interface).
            let Ok(selector) = brindle_model::selector::Selector::parse(text) else {
                continue;
            };
            let (Some(asn), true) = (spec.as_number, forward) else {
                continue;
            };
            for w in &cluster.workloads {
                if w.node.as_deref() != Some(inputs.node) || !selector.matches(&w.labels()) {
                    continue;
                }
                for addr in &w.addresses {
                    targets.push((
                        addr.addr(),
                        brindle_model::bgp::DEFAULT_BGP_PORT,
                        asn.0,
                        false,
                        w.name(),
                    ));
                    let family = addr.addr().is_ipv4();
                    if let Some(ifname) = &w.interface {
                        for ip in cluster
                            .local_workload_peering
                            .iter()
                            .filter(|ip| ip.is_ipv4() == family)
                        {
                            out.peering_addresses
                                .insert((ifname.clone(), IpNet::from(*ip)));
                        }
                    }
                }
            }
        } else if let Some(text) = &spec.peer_ip {
            if let Some((ip, port)) = parse_peer_ip(text) {
                // Calico's reachableBy: a static route to the peer through
                // the gateway it sits behind (BIRD's static protocol,
                // preferred over a route to it learned by BGP).
                if let Some(gateway) = spec
                    .reachable_by
                    .as_deref()
                    .and_then(|g| g.parse::<IpAddr>().ok())
                    .filter(|g| g.is_ipv4() == ip.is_ipv4())
                {
                    let dst = IpNet::from(ip);
                    out.routes.retain(|r| r.dst != dst);
                    out.routes.push(Route::via(dst, gateway));
                }
                let asn = spec.as_number.map_or(local_asn, |a| a.0);
                targets.push((
                    ip,
                    // Calico: a peer that is one of our nodes listens on
                    // that node's listenPort.
                    port.unwrap_or_else(|| match node_by_ip.get(&ip) {
                        Some(n) => cluster.listen_port_of(&n.name),
                        None => cluster.bgp.listen_port,
                    }),
                    asn,
                    false,
                    name.clone(),
                ));
            }
        } else if spec.peer_selector.is_some() {
            for n in cluster.nodes.values() {
                let selected = (forward && matcher.selects_remote_node(&n.labels))
                    || (reverse && matcher.applies_to_node(&n.name, &n.labels));
                if n.name == inputs.node || !selected {
                    continue;
                }
                for ip in node_addresses(n).filter(|ip| local_for(*ip).is_some()) {
                    let asn = n.asn.unwrap_or(cluster.bgp.asn);
                    let is_rr = n.rr_cluster_id.is_some();
                    let port = cluster.listen_port_of(&n.name);
                    targets.push((ip, port, asn, is_rr, n.name.clone()));
                }
            }
        }
        for (ip, port, asn, remote_is_rr, peer_name) in targets {
            if local_for(ip) == Some(ip) {
                continue;
            }
            let mut config = peer_config(ip, asn, local_for(ip));
            if spec.peer_ip.is_some() {
                // A ToR does not run our one-directional rule.
                config.passive = false;
            }
            if local_workload {
                // As Calico's: the workload dials; the kernel picks the
                // source (the peering address it dialled).
                config.passive = true;
                config.source_address = None;
            }
            config.port = port;
            // Calico's BFDIfDirectlyConnected: BFD only to a peer on one of
            // our own subnets (single hop, RFC 5881).
            if spec.failure_detection_mode == Some(FailureDetectionMode::BFDIfDirectlyConnected)
                && local_subnets.iter().any(|net| net.contains(&ip))
            {
                config.bfd = Some(bfd_config(cluster, inputs.node));
            }
            config.local_asn = spec.local_as_number.map(|a| a.0);
            config.gateway_direct =
                spec.bird_gateway_mode == Some(GatewayMode::DirectIfDirectlyConnected);
            if spec.source_address == Some(SourceAddress::None) {
                // Let the kernel pick the session's source address.
                config.source_address = None;
            }
            config.max_prefixes = spec.max_prefixes.as_ref().map(|m| PrefixLimit {
                limit: usize::try_from(m.limit).unwrap_or(usize::MAX),
                action: match m.action {
                    Some(MaxPrefixAction::Warn) => LimitAction::Warn,
                    Some(MaxPrefixAction::Disable) => LimitAction::Disable,
                    Some(MaxPrefixAction::Restart) | None => LimitAction::Restart,
                },
            });
            config.export_only = Some(export_only.clone());
            let ibgp = asn == local_asn;
            let (import, export) =
                compile_filters(cluster, &spec.filters, ibgp, &mut out.missing_filters);
            config.import_filter = import;
            config.export_filter = export;
            match spec.effective_next_hop_mode() {
                NextHopMode::Auto => {}
                NextHopMode::Self_ => config.next_hop_self_always = true,
                NextHopMode::Keep => config.next_hop_keep = true,
            }
            config.allow_local_as = spec
                .num_allowed_local_as_numbers
                .and_then(|n| u8::try_from(n).ok())
                .unwrap_or(0);
            config.ttl_security = spec
                .ttl_security
                .filter(|hops| *hops > 0)
                .and_then(|hops| u8::try_from(hops).ok());
            config.route_reflector_client = local_rr.is_some() && asn == local_asn && !remote_is_rr;
            let max_restart = spec.max_restart_time.as_deref().and_then(parse_go_duration);
            if spec.restart_mode == Some(RestartMode::LongLivedGracefulRestart) {
                // Calico: maxRestartTime is then the long-lived stale time
                // (BIRD's `long lived stale time`, default 3600 s), and
                // graceful restart keeps its default time.
                config.long_lived_stale_time =
                    Some(max_restart.map_or(DEFAULT_LONG_LIVED_STALE_TIME, |d| {
                        u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
                    }));
            } else if let Some(restart) = max_restart {
                config.graceful_restart =
                    Some(u16::try_from(restart.as_secs()).unwrap_or(u16::MAX));
            }
            if let Some(keepalive) = spec.keepalive_time.as_deref().and_then(parse_go_duration) {
                let secs = u16::try_from(keepalive.as_secs())
                    .unwrap_or(u16::MAX)
                    .max(1);
                config.keepalive = Some(secs);
                config.hold_time = config.hold_time.max(secs.saturating_mul(3));
            }
            out.peers.insert(
                ip,
                DesiredPeer {
                    config,
                    kind: if local_workload {
                        PeerType::LocalWorkload
                    } else {
                        kind
                    },
                    name: peer_name,
                    password: spec
                        .password
                        .as_ref()
                        .and_then(|p| p.secret_key_ref.clone()),
                },
            );
        }
    }
    // Next hops on none of the node's networks (a reflected route of a node
    // on another subnet without encapsulation, a ToR's third-party next
    // hop): the daemon resolves them through the kernel's routes, as
    // BIRD's recursive gateway mode does.
    out.off_link_gateways = out
        .routes
        .iter()
        .filter_map(|r| match &r.target {
            RouteTarget::NextHops(hops) => Some(hops),
            _ => None,
        })
        .flatten()
        .filter(|h| h.device.is_none() && !h.onlink)
        .filter_map(|h| h.gateway)
        .filter(|g| !local_subnets.iter().any(|n| n.contains(g)))
        .collect();
    out
}

#[cfg(test)]
mod tests;
