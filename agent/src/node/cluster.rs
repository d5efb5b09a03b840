//! The datastore as the node agent sees it: the raw key/value mirrors of the
//! resource and IPAM-block prefixes, decoded into a [`ClusterState`].
//!
//! Decoding is pure and total: a document that does not parse is skipped and
//! named in [`ClusterState::problems`] (one bad resource must not stop a node
//! from routing everything else), never a panic.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use brindle_bgp::packet::{Community, LargeCommunity};
use brindle_datastore::ipam::{block::AllocationBlock, ATTR_NODE};
use brindle_datastore::KeyValue;
use brindle_model::bgp::{
    BFDConfigurationSpec, BGPConfigurationSpec, BGPFilterSpec, BGPPeerSpec, BindMode, LogSeverity,
    SecretKeySelector, DEFAULT_AS_NUMBER, DEFAULT_BGP_PORT,
};
use brindle_model::endpoint::WorkloadEndpointSpec;
use brindle_model::ipam::IPPoolSpec;
use brindle_model::validate::parse_go_duration;
use brindle_model::Resource;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::cache::{decode_block, decode_resource, Decoded, Entry};

/// A `Node` resource, reduced to what routing needs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// `spec.bgp.ipv4Address`: the node's address and its subnet.
    pub address: Option<Ipv4Net>,
    /// `spec.bgp.ipv6Address`: the node's IPv6 address and its subnet (the
    /// node's IPv6 BGP sessions run between these addresses).
    pub address6: Option<Ipv6Net>,
    /// `spec.bgp.asNumber` (unset: the cluster's).
    pub asn: Option<u32>,
    /// `spec.bgp.routeReflectorClusterID`: the node is a route reflector.
    pub rr_cluster_id: Option<Ipv4Addr>,
    /// `spec.ipv4VXLANTunnelAddr`.
    pub vxlan_tunnel: Option<Ipv4Addr>,
    /// `spec.vxlanTunnelMACAddr`.
    pub vxlan_mac: Option<[u8; 6]>,
    /// `spec.ipv6VXLANTunnelAddr`.
    pub vxlan_tunnel6: Option<Ipv6Addr>,
    /// `spec.vxlanTunnelMACAddrV6`.
    pub vxlan_mac6: Option<[u8; 6]>,
}

impl NodeInfo {
    pub fn ip(&self) -> Option<Ipv4Addr> {
        self.address.map(|a| a.addr())
    }

    pub fn ip6(&self) -> Option<Ipv6Addr> {
        self.address6.map(|a| a.addr())
    }
}

/// Cluster-wide BGP settings (`BGPConfiguration default`, defaulted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BgpSettings {
    pub mesh: bool,
    pub asn: u32,
    pub listen_port: u16,
    /// `bindMode: NodeIP`: listen for BGP on the node's addresses only.
    pub bind_node_ip: bool,
}

impl Default for BgpSettings {
    fn default() -> Self {
        Self {
            mesh: true,
            asn: DEFAULT_AS_NUMBER,
            listen_port: DEFAULT_BGP_PORT,
            bind_node_ip: false,
        }
    }
}

/// A local or remote workload interface.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadInfo {
    pub key: String,
    pub node: Option<String>,
    pub interface: Option<String>,
    pub addresses: Vec<IpNet>,
    /// The decoded document (shared, not copied): its labels are read only
    /// for a BGPPeer's `localWorkloadSelector`.
    pub endpoint: Arc<Resource>,
}

impl WorkloadInfo {
    /// The endpoint's labels as selectors see them (with Calico's
    /// namespace and orchestrator labels).
    pub fn labels(&self) -> BTreeMap<String, String> {
        match &*self.endpoint {
            Resource::WorkloadEndpoint(w) => brindle_policy::from_model::workload_labels(w),
            _ => BTreeMap::new(),
        }
    }

    /// The endpoint's name, `namespace/name` when namespaced.
    pub fn name(&self) -> String {
        match &*self.endpoint {
            Resource::WorkloadEndpoint(w) => match &w.metadata.namespace {
                Some(ns) => format!("{ns}/{}", w.metadata.name),
                None => w.metadata.name.clone(),
            },
            _ => self.key.clone(),
        }
    }
}

/// One IPAM block: who holds its affinity and who each allocation is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockInfo {
    pub cidr: IpNet,
    pub affinity: Option<String>,
    /// Allocated addresses with the node they were allocated for.
    pub allocations: Vec<(IpAddr, Option<String>)>,
}

/// Everything the node's desired state is computed from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterState {
    pub nodes: BTreeMap<String, Arc<NodeInfo>>,
    pub pools: Vec<(String, IPPoolSpec)>,
    pub bgp: BgpSettings,
    /// Per-node `BGPConfiguration node.<name>` AS overrides are not used by
    /// Calico for routing; only `default` is read.
    pub peers: Vec<(String, BGPPeerSpec)>,
    /// `prefixAdvertisements` of `BGPConfiguration default`, names
    /// resolved through its `communities`: the communities our announced
    /// routes inside each CIDR carry.
    pub prefix_communities: Vec<(IpNet, Communities)>,
    /// `serviceClusterIPs`, `serviceExternalIPs` and
    /// `serviceLoadBalancerIPs` of `BGPConfiguration default`: every node
    /// announces them, as Calico's do.
    pub service_cidrs: Vec<IpNet>,
    /// `nodeMeshPassword` of `BGPConfiguration default`.
    pub mesh_password: Option<SecretKeySelector>,
    /// `nodeMeshMaxRestartTime` of `BGPConfiguration default`, seconds.
    pub mesh_max_restart_time: Option<u16>,
    /// `logSeverityScreen` of `BGPConfiguration default`.
    pub log_severity: Option<LogSeverity>,
    /// `localWorkloadPeeringIPV4` and `…IPV6` of `BGPConfiguration
    /// default`: the node's address toward workloads that peer with it
    /// (put on their host-side interfaces).
    pub local_workload_peering: Vec<IpAddr>,
    /// `BGPConfiguration node.<name>`, by node name: what a node sets for
    /// itself over the default (see the `*_of` accessors).
    pub node_bgp: BTreeMap<String, NodeBgpConfig>,
    /// `BGPFilter`s by name.
    pub filters: BTreeMap<String, BGPFilterSpec>,
    /// `BFDConfiguration`s by name (`default`, `node.<name>`).
    pub bfd: BTreeMap<String, BFDConfigurationSpec>,
    pub workloads: Vec<WorkloadInfo>,
    pub blocks: Vec<Arc<BlockInfo>>,
    /// Keys that did not decode, with the reason.
    pub problems: Vec<(String, String)>,
}

/// What a node's own `BGPConfiguration node.<name>` sets; `None` leaves the
/// `default` configuration's value. (Global-only fields are refused there
/// at apply: nodeToNodeMeshEnabled, asNumber, the service address lists,
/// nodeMeshPassword, nodeMeshMaxRestartTime.)
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeBgpConfig {
    pub listen_port: Option<u16>,
    pub bind_node_ip: Option<bool>,
    /// The node's `prefixAdvertisements` (replacing the default's when
    /// set), community names resolved in the node's own `communities`.
    pub prefix_communities: Option<Vec<(IpNet, Communities)>>,
    pub log_severity: Option<LogSeverity>,
}

impl ClusterState {
    /// The port `node` listens for BGP on (its own listenPort, else the
    /// cluster's); other nodes connect to it there.
    pub fn listen_port_of(&self, node: &str) -> u16 {
        self.node_bgp
            .get(node)
            .and_then(|c| c.listen_port)
            .unwrap_or(self.bgp.listen_port)
    }

    /// `bindMode: NodeIP` for `node`.
    pub fn bind_node_ip_of(&self, node: &str) -> bool {
        self.node_bgp
            .get(node)
            .and_then(|c| c.bind_node_ip)
            .unwrap_or(self.bgp.bind_node_ip)
    }

    /// The prefix advertisements `node` announces with.
    pub fn prefix_communities_of(&self, node: &str) -> &[(IpNet, Communities)] {
        self.node_bgp
            .get(node)
            .and_then(|c| c.prefix_communities.as_deref())
            .unwrap_or(&self.prefix_communities)
    }

    /// `logSeverityScreen` for `node` (its own, else the cluster's).
    pub fn log_severity_of(&self, node: &str) -> Option<LogSeverity> {
        self.node_bgp
            .get(node)
            .and_then(|c| c.log_severity)
            .or(self.log_severity)
    }
}

/// Standard (`aa:nn`) and large (`aa:nn:mm`) communities.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Communities {
    pub standard: Vec<Community>,
    pub large: Vec<LargeCommunity>,
}

impl Communities {
    /// Adds a value in Calico's text form; false if it is not one.
    fn add_text(&mut self, text: &str) -> bool {
        let parts: Vec<&str> = text.split(':').collect();
        match parts[..] {
            [a, n] => match (a.parse::<u16>(), n.parse::<u16>()) {
                (Ok(a), Ok(n)) => self.standard.push(Community::new(a, n)),
                _ => return false,
            },
            [a, n, m] => match (a.parse::<u32>(), n.parse::<u32>(), m.parse::<u32>()) {
                (Ok(a), Ok(n), Ok(m)) => self.large.push(LargeCommunity {
                    global_admin: a,
                    local_data1: n,
                    local_data2: m,
                }),
                _ => return false,
            },
            _ => return false,
        }
        true
    }

    /// Adds `other`'s values not already here.
    pub fn merge(&mut self, other: &Communities) {
        for c in &other.standard {
            if !self.standard.contains(c) {
                self.standard.push(*c);
            }
        }
        for c in &other.large {
            if !self.large.contains(c) {
                self.large.push(*c);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.standard.is_empty() && self.large.is_empty()
    }
}

/// `prefixAdvertisements` with names looked up in `communities` (the model
/// refuses a name that is not defined; one that slips through is skipped).
/// `spec`'s prefix advertisements, community names resolved in
/// `spec.communities` (validation refuses a name not defined there).
fn prefix_communities(spec: &BGPConfigurationSpec) -> Vec<(IpNet, Communities)> {
    spec.prefix_advertisements
        .iter()
        .filter_map(|adv| {
            let cidr: IpNet = adv.cidr.parse().ok()?;
            let mut communities = Communities::default();
            for item in &adv.communities {
                if !communities.add_text(item) {
                    if let Some(named) = spec.communities.iter().find(|c| &c.name == item) {
                        communities.add_text(&named.value);
                    }
                }
            }
            Some((cidr.trunc(), communities))
        })
        .collect()
}

/// Parses `"aa:bb:cc:dd:ee:ff"`.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Formats a MAC as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn node_info(node: &brindle_model::resource::Node) -> NodeInfo {
    let bgp = node.spec.bgp.clone().unwrap_or_default();
    NodeInfo {
        name: node.metadata.name.clone(),
        labels: node.metadata.labels.clone(),
        address: bgp.ipv4_address.as_deref().and_then(|a| a.parse().ok()),
        address6: bgp.ipv6_address.as_deref().and_then(|a| a.parse().ok()),
        asn: bgp.as_number.map(|a| a.0),
        rr_cluster_id: bgp
            .route_reflector_cluster_id
            .as_deref()
            .and_then(|c| c.parse().ok()),
        vxlan_tunnel: node
            .spec
            .ipv4_vxlan_tunnel_addr
            .as_deref()
            .and_then(|a| a.split('/').next()?.parse().ok()),
        vxlan_mac: node
            .spec
            .vxlan_tunnel_mac_addr
            .as_deref()
            .and_then(parse_mac),
        vxlan_tunnel6: node
            .spec
            .ipv6_vxlan_tunnel_addr
            .as_deref()
            .and_then(|a| a.split('/').next()?.parse().ok()),
        vxlan_mac6: node
            .spec
            .vxlan_tunnel_mac_addr_v6
            .as_deref()
            .and_then(parse_mac),
    }
}

fn workload_info(key: &str, spec: &WorkloadEndpointSpec, endpoint: Arc<Resource>) -> WorkloadInfo {
    WorkloadInfo {
        endpoint,
        key: key.to_owned(),
        node: spec.node.clone(),
        interface: spec.interface_name.clone(),
        addresses: spec
            .ip_networks
            .iter()
            .filter_map(|n| {
                n.parse::<IpNet>()
                    .ok()
                    .or_else(|| n.parse::<IpAddr>().ok().map(IpNet::from))
            })
            .collect(),
    }
}

impl ClusterState {
    /// Decodes the mirrors of the resource prefix and the IPAM block prefix
    /// (a listing read once, e.g. at start; the daemon keeps a
    /// [`Decoded`] mirror and calls [`ClusterState::from_decoded`]).
    pub fn decode<'a>(
        resources: impl IntoIterator<Item = &'a KeyValue>,
        blocks: impl IntoIterator<Item = &'a KeyValue>,
    ) -> ClusterState {
        ClusterState::from_decoded(
            Decoded::from_kvs(decode_resource, resources).entries(),
            Decoded::from_kvs(decode_block_info, blocks).entries(),
            &mut NodeInfos::default(),
        )
    }

    /// The cluster view from documents decoded already: no parsing here,
    /// and a Node's info is derived once per version of its document
    /// (`node_infos` keeps them from one call to the next).
    pub fn from_decoded<'a>(
        resources: impl IntoIterator<Item = &'a Entry<Resource>>,
        blocks: impl IntoIterator<Item = &'a Entry<BlockInfo>>,
        node_infos: &mut NodeInfos,
    ) -> ClusterState {
        let mut state = ClusterState::default();
        let mut seen_nodes = Vec::new();
        for entry in resources {
            let resource = match &entry.value {
                Ok(r) => r,
                Err(e) => {
                    state.problems.push((entry.key.clone(), e.clone()));
                    continue;
                }
            };
            match &**resource {
                Resource::Node(n) => {
                    let info = match node_infos.0.get(&entry.key) {
                        Some((from, info)) if Arc::ptr_eq(from, resource) => info.clone(),
                        _ => {
                            let info = Arc::new(node_info(n));
                            node_infos
                                .0
                                .insert(entry.key.clone(), (resource.clone(), info.clone()));
                            info
                        }
                    };
                    seen_nodes.push(&entry.key);
                    state.nodes.insert(info.name.clone(), info);
                }
                Resource::IPPool(p) => state.pools.push((p.metadata.name.clone(), p.spec.clone())),
                Resource::BGPPeer(p) => state.peers.push((p.metadata.name.clone(), p.spec.clone())),
                Resource::BGPFilter(f) => {
                    state
                        .filters
                        .insert(f.metadata.name.clone(), f.spec.clone());
                }
                Resource::BFDConfiguration(c) => {
                    state.bfd.insert(c.metadata.name.clone(), c.spec.clone());
                }
                Resource::BGPConfiguration(c) if c.metadata.name != "default" => {
                    if let Some(node) = c.metadata.name.strip_prefix("node.") {
                        let s = &c.spec;
                        let config = NodeBgpConfig {
                            listen_port: s.listen_port.and_then(|p| u16::try_from(p).ok()),
                            bind_node_ip: s.bind_mode.map(|m| m == BindMode::NodeIP),
                            prefix_communities: (!s.prefix_advertisements.is_empty())
                                .then(|| prefix_communities(s)),
                            log_severity: s.log_severity_screen,
                        };
                        state.node_bgp.insert(node.to_owned(), config);
                    }
                }
                Resource::BGPConfiguration(c) => {
                    let s = &c.spec;
                    state.log_severity = s.log_severity_screen;
                    state.bgp = BgpSettings {
                        mesh: s.node_to_node_mesh_enabled.unwrap_or(true),
                        asn: s.as_number.map_or(DEFAULT_AS_NUMBER, |a| a.0),
                        listen_port: s
                            .listen_port
                            .and_then(|p| u16::try_from(p).ok())
                            .unwrap_or(DEFAULT_BGP_PORT),
                        bind_node_ip: s.bind_mode == Some(BindMode::NodeIP),
                    };
                    state.prefix_communities = prefix_communities(s);
                    state.local_workload_peering = [
                        &s.local_workload_peering_ipv4,
                        &s.local_workload_peering_ipv6,
                    ]
                    .into_iter()
                    .filter_map(|ip| ip.as_deref()?.parse::<IpAddr>().ok())
                    .collect();
                    state.service_cidrs = s
                        .service_cluster_ips
                        .iter()
                        .chain(&s.service_external_ips)
                        .chain(&s.service_load_balancer_ips)
                        .filter_map(|c| c.cidr.parse::<IpNet>().ok())
                        .map(|c| c.trunc())
                        .collect();
                    state.mesh_password = s
                        .node_mesh_password
                        .as_ref()
                        .and_then(|p| p.secret_key_ref.clone());
                    state.mesh_max_restart_time = s
                        .node_mesh_max_restart_time
                        .as_deref()
                        .and_then(parse_go_duration)
                        .map(|d| u16::try_from(d.as_secs()).unwrap_or(u16::MAX));
                }
                Resource::WorkloadEndpoint(w) => {
                    state
                        .workloads
                        .push(workload_info(&entry.key, &w.spec, resource.clone()));
                }
                _ => {}
            }
        }
        if node_infos.0.len() != seen_nodes.len() {
            let seen: std::collections::HashSet<&String> = seen_nodes.into_iter().collect();
            node_infos.0.retain(|key, _| seen.contains(key));
        }
        for entry in blocks {
            match &entry.value {
                Ok(block) => state.blocks.push(block.clone()),
                Err(e) => state.problems.push((entry.key.clone(), e.clone())),
            }
        }
        state
    }
}

/// The [`NodeInfo`] of each Node document (by key), with the decoded
/// document it came from: a converge rebuilds the cluster view, and
/// deriving every node's info again each time was a visible share of a
/// 250-node cold start.
#[derive(Default)]
pub struct NodeInfos(HashMap<String, (Arc<Resource>, Arc<NodeInfo>)>);

/// An IPAM block document, reduced to what the desired state reads (once
/// per version of the document, by the [`Decoded`] mirror).
pub fn decode_block_info(kv: &KeyValue) -> Result<BlockInfo, String> {
    let block = decode_block(kv)?;
    Ok(block_info(&block))
}

fn block_info(block: &AllocationBlock) -> BlockInfo {
    let allocations = block
        .allocations_view()
        .map(|a| {
            let node = a
                .attribute
                .and_then(|x| x.secondary.get(ATTR_NODE).cloned());
            (a.ip, node)
        })
        .collect();
    BlockInfo {
        cidr: block.cidr,
        affinity: block.affine_node().map(str::to_owned),
        allocations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            create_revision: 1,
            mod_revision: 1,
            version: 1,
        }
    }

    fn node_kv(name: &str, address: &str) -> KeyValue {
        kv(
            &format!("/brindle/resources/v3/nodes/{name}"),
            &format!(
                r#"{{"apiVersion":"projectcalico.org/v3","kind":"Node","metadata":{{"name":"{name}"}},"spec":{{"bgp":{{"ipv4Address":"{address}"}}}}}}"#
            ),
        )
    }

    /// A Node's info is derived once per version of its document: the same
    /// decoded document gives the same `Arc`, a new version a new info, and
    /// a deleted Node leaves the memo.
    #[test]
    fn node_infos_are_derived_once_per_document_version() {
        use brindle_datastore::{Event, EventKind, Listing, Update};
        let mut resources = Decoded::new(decode_resource);
        resources.apply(Update::Snapshot(Listing {
            kvs: vec![node_kv("a", "10.0.1.1/24"), node_kv("b", "10.0.1.2/24")],
            revision: 1,
        }));
        let no_blocks: [Entry<BlockInfo>; 0] = [];
        let mut memo = NodeInfos::default();
        let first = ClusterState::from_decoded(resources.entries(), &no_blocks, &mut memo);
        let again = ClusterState::from_decoded(resources.entries(), &no_blocks, &mut memo);
        assert!(Arc::ptr_eq(&first.nodes["a"], &again.nodes["a"]));

        resources.apply(Update::Event(Event {
            kind: EventKind::Put,
            kv: node_kv("a", "10.0.1.9/24"),
        }));
        resources.apply(Update::Event(Event {
            kind: EventKind::Delete,
            kv: node_kv("b", "10.0.1.2/24"),
        }));
        let changed = ClusterState::from_decoded(resources.entries(), &no_blocks, &mut memo);
        assert_eq!(
            changed.nodes["a"].address,
            Some("10.0.1.9/24".parse().unwrap())
        );
        assert!(!changed.nodes.contains_key("b"));
        assert_eq!(memo.0.len(), 1);
    }

    /// `node.<name>` overrides `default` for that node only.
    #[test]
    fn a_nodes_own_bgp_configuration_overrides_the_default() {
        let resources = [
            kv(
                "/brindle/resources/v3/bgpconfigurations/default",
                r#"{"apiVersion":"projectcalico.org/v3","kind":"BGPConfiguration","metadata":{"name":"default"},"spec":{"listenPort":1179,"logSeverityScreen":"Warning","communities":[{"name":"rack","value":"65000:100"}],"prefixAdvertisements":[{"cidr":"10.65.0.0/16","communities":["rack"]}]}}"#,
            ),
            kv(
                "/brindle/resources/v3/bgpconfigurations/node.b",
                r#"{"apiVersion":"projectcalico.org/v3","kind":"BGPConfiguration","metadata":{"name":"node.b"},"spec":{"listenPort":2179,"bindMode":"NodeIP","logSeverityScreen":"Debug","communities":[{"name":"host","value":"65000:8"}],"prefixAdvertisements":[{"cidr":"10.65.1.0/24","communities":["host","65000:7"]}]}}"#,
            ),
        ];
        let state = ClusterState::decode(&resources, &[]);
        assert_eq!(state.listen_port_of("a"), 1179);
        assert_eq!(state.listen_port_of("b"), 2179);
        assert!(!state.bind_node_ip_of("a"));
        assert!(state.bind_node_ip_of("b"));
        assert_eq!(state.log_severity_of("a"), Some(LogSeverity::Warning));
        assert_eq!(state.log_severity_of("b"), Some(LogSeverity::Debug));
        assert_eq!(state.prefix_communities_of("a").len(), 1);
        let b = state.prefix_communities_of("b");
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].0, "10.65.1.0/24".parse::<IpNet>().unwrap());
        assert_eq!(b[0].1.standard.len(), 2, "{:?}", b[0].1);
    }

    #[test]
    fn decodes_nodes_pools_config_and_skips_garbage() {
        let resources = [
            kv(
                "/brindle/resources/v3/nodes/a",
                r#"{"apiVersion":"projectcalico.org/v3","kind":"Node","metadata":{"name":"a","labels":{"rack":"1"}},
                   "spec":{"bgp":{"ipv4Address":"10.0.1.1/24","ipv6Address":"fd00:1::1/64","asNumber":65001,"routeReflectorClusterID":"1.0.0.1"},
                   "ipv4VXLANTunnelAddr":"10.65.0.1","vxlanTunnelMACAddr":"02:00:00:00:00:01",
                   "ipv6VXLANTunnelAddr":"fd00:65::1","vxlanTunnelMACAddrV6":"02:00:00:00:00:02"}}"#,
            ),
            kv(
                "/brindle/resources/v3/ippools/p",
                r#"{"apiVersion":"projectcalico.org/v3","kind":"IPPool","metadata":{"name":"p"},"spec":{"cidr":"10.65.0.0/16","vxlanMode":"CrossSubnet"}}"#,
            ),
            kv(
                "/brindle/resources/v3/bgpconfigurations/default",
                r#"{"apiVersion":"projectcalico.org/v3","kind":"BGPConfiguration","metadata":{"name":"default"},"spec":{"nodeToNodeMeshEnabled":false,"asNumber":65000,"listenPort":1179}}"#,
            ),
            kv("/brindle/resources/v3/nodes/bad", "{not json"),
        ];
        let state = ClusterState::decode(&resources, &[]);
        let a = &state.nodes["a"];
        assert_eq!(a.address, Some("10.0.1.1/24".parse().unwrap()));
        assert_eq!(a.address6, Some("fd00:1::1/64".parse().unwrap()));
        assert_eq!(a.ip6(), Some("fd00:1::1".parse().unwrap()));
        assert_eq!(a.asn, Some(65001));
        assert_eq!(a.rr_cluster_id, Some(Ipv4Addr::new(1, 0, 0, 1)));
        assert_eq!(a.vxlan_tunnel, Some(Ipv4Addr::new(10, 65, 0, 1)));
        assert_eq!(a.vxlan_mac, Some([2, 0, 0, 0, 0, 1]));
        assert_eq!(a.vxlan_tunnel6, Some("fd00:65::1".parse().unwrap()));
        assert_eq!(a.vxlan_mac6, Some([2, 0, 0, 0, 0, 2]));
        assert_eq!(a.labels["rack"], "1");
        assert_eq!(state.pools.len(), 1);
        assert_eq!(
            state.bgp,
            BgpSettings {
                mesh: false,
                asn: 65000,
                listen_port: 1179,
                bind_node_ip: false,
            }
        );
        assert_eq!(state.problems.len(), 1);
        assert_eq!(state.problems[0].0, "/brindle/resources/v3/nodes/bad");
    }

    #[test]
    fn mac_round_trip() {
        let mac = [0x02, 0xab, 0, 1, 0xff, 0x10];
        assert_eq!(parse_mac(&format_mac(&mac)), Some(mac));
        assert_eq!(parse_mac("02:ab"), None);
        assert_eq!(parse_mac("02:ab:00:01:ff:10:00"), None);
    }
}
