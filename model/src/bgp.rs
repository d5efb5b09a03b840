//! `BGPConfiguration`, `BGPPeer` and `BGPFilter` specs (Calico
//! `bgpconfig.go`, `bgppeer.go`, `bgpfilter.go`) with defaults and
//! validation.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::meta::{is_false, AsNumber, ObjectMeta};
use crate::selector::{Labels, Selector};
use crate::validate::{
    check_community_value, check_duration, check_range, check_selector, check_subdomain_name,
    net_family, parse_ip, parse_net, Problems,
};

/// Calico's default AS number for nodes without one.
pub const DEFAULT_AS_NUMBER: u32 = 64512;
/// The BGP port.
pub const DEFAULT_BGP_PORT: u16 = 179;

/// A `{cidr: ...}` entry of the service address lists.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CidrBlock {
    /// The CIDR.
    #[serde(default)]
    pub cidr: String,
}

/// A named community value.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Community {
    /// Name used by `prefixAdvertisements`.
    #[serde(default)]
    pub name: String,
    /// `aa:nn` or `aa:nn:mm`.
    #[serde(default)]
    pub value: String,
}

/// Communities to attach to routes within a CIDR.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrefixAdvertisement {
    /// The CIDR the communities apply to.
    #[serde(default)]
    pub cidr: String,
    /// Community names (from `communities`) or literal values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<String>,
}

/// A secret reference for a BGP password (`password.secretKeyRef`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPPassword {
    /// Where the password lives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeySelector>,
}

/// Kubernetes `SecretKeySelector`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeySelector {
    /// Secret name.
    #[serde(default)]
    pub name: String,
    /// Key within the secret.
    #[serde(default)]
    pub key: String,
    /// Whether a missing secret is tolerated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// `logSeverityScreen`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum LogSeverity {
    Debug,
    Info,
    Warning,
    Error,
    Fatal,
}

/// `bindMode`: listen on all addresses or only the node IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BindMode {
    /// Listen on every address.
    None,
    /// Listen only on the node's IP.
    NodeIP,
}

/// `BGPConfiguration.spec`. The resource named `default` is cluster-wide;
/// `node.<name>` overrides a few fields for one node.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPConfigurationSpec {
    /// Log level of the BGP daemon (default Info).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_severity_screen: Option<LogSeverity>,
    /// Full node-to-node mesh (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_to_node_mesh_enabled: Option<bool>,
    /// Default AS number of nodes (default 64512).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<AsNumber>,
    /// LoadBalancer IP ranges to advertise.
    #[serde(
        default,
        rename = "serviceLoadBalancerIPs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_load_balancer_ips: Vec<CidrBlock>,
    /// External IP ranges to advertise.
    #[serde(
        default,
        rename = "serviceExternalIPs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_external_ips: Vec<CidrBlock>,
    /// Cluster IP ranges to advertise.
    #[serde(
        default,
        rename = "serviceClusterIPs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_cluster_ips: Vec<CidrBlock>,
    /// Named community values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<Community>,
    /// Per-prefix communities.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefix_advertisements: Vec<PrefixAdvertisement>,
    /// BGP listen port (default 179).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_port: Option<i64>,
    /// Password for mesh sessions (only on `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_mesh_password: Option<BGPPassword>,
    /// Graceful-restart time for mesh sessions (only on `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_mesh_max_restart_time: Option<String>,
    /// Interfaces whose addresses are never advertised.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored_interfaces: Vec<String>,
    /// Listen on all addresses or the node IP only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_mode: Option<BindMode>,
    /// IPv4 address workloads use to peer with their node.
    #[serde(
        default,
        rename = "localWorkloadPeeringIPV4",
        skip_serializing_if = "Option::is_none"
    )]
    pub local_workload_peering_ipv4: Option<String>,
    /// IPv6 address workloads use to peer with their node.
    #[serde(
        default,
        rename = "localWorkloadPeeringIPV6",
        skip_serializing_if = "Option::is_none"
    )]
    pub local_workload_peering_ipv6: Option<String>,
}

impl BGPConfigurationSpec {
    /// On the cluster-wide `default` resource, fills Calico's defaults
    /// (mesh on, AS 64512, port 179, log Info). Per-node resources are left
    /// alone: their unset fields mean "inherit from default".
    pub fn defaulted(&mut self, meta: &ObjectMeta) {
        if meta.name == "default" {
            self.node_to_node_mesh_enabled.get_or_insert(true);
            self.as_number.get_or_insert(AsNumber(DEFAULT_AS_NUMBER));
            self.listen_port.get_or_insert(i64::from(DEFAULT_BGP_PORT));
            self.log_severity_screen.get_or_insert(LogSeverity::Info);
        }
    }

    /// Calico's BGPConfiguration rules.
    pub fn validate(&self, meta: &ObjectMeta, p: &mut Problems) {
        let is_default = meta.name == "default";
        if !is_default && !meta.name.starts_with("node.") && !meta.name.is_empty() {
            p.add(
                "metadata.name",
                format!(
                    "'{}': a BGPConfiguration is named 'default' or 'node.<nodename>'",
                    meta.name
                ),
            );
        }
        if !is_default {
            for (set, field) in [
                (
                    self.node_to_node_mesh_enabled.is_some(),
                    "nodeToNodeMeshEnabled",
                ),
                (self.node_mesh_password.is_some(), "nodeMeshPassword"),
                (
                    self.node_mesh_max_restart_time.is_some(),
                    "nodeMeshMaxRestartTime",
                ),
            ] {
                if set {
                    p.add(
                        format!("spec.{field}"),
                        "may only be set on the 'default' BGPConfiguration",
                    );
                }
            }
        }
        if self.node_to_node_mesh_enabled == Some(false)
            && (self.node_mesh_password.is_some() || self.node_mesh_max_restart_time.is_some())
        {
            p.add(
                "spec",
                "nodeMeshPassword and nodeMeshMaxRestartTime require nodeToNodeMeshEnabled",
            );
        }
        if let Some(asn) = self.as_number {
            check_asn(p, "spec.asNumber", asn);
        }
        if let Some(port) = self.listen_port {
            check_range(p, "spec.listenPort", port, 1, 65535);
        }
        if let Some(t) = &self.node_mesh_max_restart_time {
            check_duration(p, "spec.nodeMeshMaxRestartTime", t);
        }
        if let Some(pw) = &self.node_mesh_password {
            check_password(p, "spec.nodeMeshPassword", pw);
        }
        for (list, field) in [
            (&self.service_load_balancer_ips, "serviceLoadBalancerIPs"),
            (&self.service_external_ips, "serviceExternalIPs"),
            (&self.service_cluster_ips, "serviceClusterIPs"),
        ] {
            for (i, block) in list.iter().enumerate() {
                parse_net(p, &format!("spec.{field}[{i}].cidr"), &block.cidr);
            }
        }
        for (i, c) in self.communities.iter().enumerate() {
            check_subdomain_name(p, &format!("spec.communities[{i}].name"), &c.name);
            check_community_value(p, &format!("spec.communities[{i}].value"), &c.value);
        }
        for (i, adv) in self.prefix_advertisements.iter().enumerate() {
            parse_net(
                p,
                &format!("spec.prefixAdvertisements[{i}].cidr"),
                &adv.cidr,
            );
            if adv.communities.is_empty() {
                p.add(
                    format!("spec.prefixAdvertisements[{i}].communities"),
                    "required",
                );
            }
            for (j, c) in adv.communities.iter().enumerate() {
                let field = format!("spec.prefixAdvertisements[{i}].communities[{j}]");
                if c.contains(':') {
                    check_community_value(p, &field, c);
                } else if !self.communities.iter().any(|known| &known.name == c) {
                    p.add(
                        field,
                        format!("community '{c}' is neither a value nor a name defined in spec.communities"),
                    );
                }
            }
        }
        if let Some(ip) = &self.local_workload_peering_ipv4 {
            parse_ip(p, "spec.localWorkloadPeeringIPV4", ip, Some(4));
        }
        if let Some(ip) = &self.local_workload_peering_ipv6 {
            parse_ip(p, "spec.localWorkloadPeeringIPV6", ip, Some(6));
        }
    }
}

fn check_asn(p: &mut Problems, field: &str, asn: AsNumber) {
    if asn.0 == 0 {
        p.add(field, "AS number 0 is reserved (RFC 7607)");
    }
}

fn check_password(p: &mut Problems, field: &str, pw: &BGPPassword) {
    match &pw.secret_key_ref {
        None => p.add(format!("{field}.secretKeyRef"), "required"),
        Some(r) => {
            if r.name.is_empty() {
                p.add(format!("{field}.secretKeyRef.name"), "required");
            }
            if r.key.is_empty() {
                p.add(format!("{field}.secretKeyRef.key"), "required");
            }
        }
    }
}

/// `sourceAddress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SourceAddress {
    /// Use the node IP as the session source (default).
    UseNodeIP,
    /// Let the kernel pick.
    None,
}

/// `nextHopMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NextHopMode {
    /// next hop self for eBGP, unchanged for iBGP.
    Auto,
    /// Always next hop self.
    #[serde(rename = "Self")]
    Self_,
    /// Keep the original next hop.
    Keep,
}

/// `failureDetectionMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FailureDetectionMode {
    /// No BFD.
    None,
    /// BFD when the peer is directly connected.
    BFDIfDirectlyConnected,
}

/// `restartMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RestartMode {
    /// RFC 4724 graceful restart.
    GracefulRestart,
    /// RFC 9494 long-lived graceful restart.
    LongLivedGracefulRestart,
}

/// `birdGatewayMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GatewayMode {
    /// Resolve next hops recursively.
    Recursive,
    /// Use the next hop directly when it is on-link.
    DirectIfDirectlyConnected,
}

/// `reversePeering`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReversePeering {
    /// Create the reverse session automatically.
    Auto,
    /// Require an explicit reverse BGPPeer.
    Manual,
}

/// `BGPPeer.spec`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPPeerSpec {
    /// The one node that peers (empty with no nodeSelector: all nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Nodes that peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<String>,
    /// Peer address, optionally with port (`10.0.0.1:1179`, `[fd00::1]:1179`).
    #[serde(default, rename = "peerIP", skip_serializing_if = "Option::is_none")]
    pub peer_ip: Option<String>,
    /// Peer AS.
    #[serde(default, rename = "asNumber", skip_serializing_if = "Option::is_none")]
    pub as_number: Option<AsNumber>,
    /// Local AS to present to this peer instead of the node's.
    #[serde(
        default,
        rename = "localASNumber",
        skip_serializing_if = "Option::is_none"
    )]
    pub local_as_number: Option<AsNumber>,
    /// Peer with the nodes this selects instead of a fixed IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_selector: Option<String>,
    /// Legacy form of `nextHopMode: Keep`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub keep_original_next_hop: bool,
    /// Next-hop handling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hop_mode: Option<NextHopMode>,
    /// TCP MD5 password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<BGPPassword>,
    /// Session source address choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_address: Option<SourceAddress>,
    /// BFD use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_detection_mode: Option<FailureDetectionMode>,
    /// Graceful restart flavour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_mode: Option<RestartMode>,
    /// Graceful-restart time (Go duration; BIRD default 120s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restart_time: Option<String>,
    /// Next-hop resolution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bird_gateway_mode: Option<GatewayMode>,
    /// Times our own AS may appear in received paths (allowas-in).
    #[serde(
        default,
        rename = "numAllowedLocalASNumbers",
        skip_serializing_if = "Option::is_none"
    )]
    pub num_allowed_local_as_numbers: Option<i64>,
    /// GTSM (RFC 5082) hop count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_security: Option<i64>,
    /// Keepalive interval (Go duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive_time: Option<String>,
    /// Gateway through which the peer is reachable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reachable_by: Option<String>,
    /// BGPFilter names applied in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<String>,
    /// Peer with the local workloads this selects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_workload_selector: Option<String>,
    /// Reverse session handling for peerSelector peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverse_peering: Option<ReversePeering>,
}

/// Parses Calico's `peerIP`: an address, `v4:port` or `[v6]:port`.
pub fn parse_peer_ip(text: &str) -> Option<(IpAddr, Option<u16>)> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some((ip, None));
    }
    text.parse::<SocketAddr>()
        .ok()
        .filter(|sa| sa.port() != 0)
        .map(|sa| (sa.ip(), Some(sa.port())))
}

impl BGPPeerSpec {
    /// Whether this peering applies to the local node `node_name` with
    /// `labels`: the named node, the nodes the nodeSelector picks, or every
    /// node when neither is set (a global peer).
    pub fn applies_to_node<L: Labels + ?Sized>(&self, node_name: &str, labels: &L) -> bool {
        match (&self.node, &self.node_selector) {
            (Some(node), _) => node == node_name,
            (None, Some(sel)) => Selector::parse(sel).is_ok_and(|s| s.matches(labels)),
            (None, None) => true,
        }
    }

    /// Whether a remote node with `labels` is a peer through `peerSelector`.
    pub fn selects_remote_node<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        self.peer_selector
            .as_deref()
            .is_some_and(|sel| Selector::parse(sel).is_ok_and(|s| s.matches(labels)))
    }

    /// The effective next-hop handling (`keepOriginalNextHop` is the legacy
    /// spelling of Keep; unset is Auto).
    pub fn effective_next_hop_mode(&self) -> NextHopMode {
        match (self.next_hop_mode, self.keep_original_next_hop) {
            (Some(mode), _) => mode,
            (None, true) => NextHopMode::Keep,
            (None, false) => NextHopMode::Auto,
        }
    }

    /// BGPPeer has no materialised defaults: unset fields mean "use the
    /// node's or the cluster's setting".
    pub fn defaulted(&mut self) {}

    /// Calico's BGPPeer rules.
    pub fn validate(&self, _meta: &ObjectMeta, p: &mut Problems) {
        if let Some(node) = &self.node {
            check_subdomain_name(p, "spec.node", node);
            if self.node_selector.is_some() {
                p.add("spec.node", "node must be empty when nodeSelector is set");
            }
        }
        if let Some(sel) = &self.node_selector {
            check_selector(p, "spec.nodeSelector", sel);
        }
        if let Some(sel) = &self.peer_selector {
            check_selector(p, "spec.peerSelector", sel);
            if self.peer_ip.is_some() {
                p.add(
                    "spec.peerIP",
                    "peerIP must be empty when peerSelector is set",
                );
            }
            if self.as_number.is_some() {
                p.add(
                    "spec.asNumber",
                    "asNumber must be empty when peerSelector is set (the remote node's AS is used)",
                );
            }
        } else if self.local_workload_selector.is_none() && self.peer_ip.is_none() {
            p.add(
                "spec",
                "one of peerIP, peerSelector or localWorkloadSelector is required",
            );
        }
        if let Some(ip) = &self.peer_ip {
            if parse_peer_ip(ip).is_none() {
                p.add(
                    "spec.peerIP",
                    format!("'{ip}' is not an IP address, <IPv4>:<port> or [<IPv6>]:<port>"),
                );
            }
        }
        if let Some(sel) = &self.local_workload_selector {
            check_selector(p, "spec.localWorkloadSelector", sel);
        }
        if let Some(asn) = self.as_number {
            check_asn(p, "spec.asNumber", asn);
        }
        if let Some(asn) = self.local_as_number {
            check_asn(p, "spec.localASNumber", asn);
        }
        if self.keep_original_next_hop && self.next_hop_mode.is_some() {
            p.add(
                "spec.nextHopMode",
                "cannot be combined with keepOriginalNextHop",
            );
        }
        if let Some(pw) = &self.password {
            check_password(p, "spec.password", pw);
        }
        if let Some(t) = &self.max_restart_time {
            check_duration(p, "spec.maxRestartTime", t);
        }
        if let Some(t) = &self.keepalive_time {
            check_duration(p, "spec.keepaliveTime", t);
        }
        if let Some(n) = self.num_allowed_local_as_numbers {
            check_range(p, "spec.numAllowedLocalASNumbers", n, 0, 10);
        }
        if let Some(t) = self.ttl_security {
            check_range(p, "spec.ttlSecurity", t, 0, 255);
        }
        if let Some(gw) = &self.reachable_by {
            let peer = self.peer_ip.as_deref().and_then(parse_peer_ip);
            match (
                parse_ip(p, "spec.reachableBy", gw, None),
                &self.peer_ip,
                peer,
            ) {
                (_, None, _) => p.add("spec.reachableBy", "requires peerIP"),
                (Some(gw_ip), Some(_), Some((peer_ip, _)))
                    if gw_ip.is_ipv4() != peer_ip.is_ipv4() =>
                {
                    p.add(
                        "spec.reachableBy",
                        format!("{gw_ip} and peerIP {peer_ip} are of different address families"),
                    )
                }
                _ => {}
            }
        }
        for (i, f) in self.filters.iter().enumerate() {
            check_subdomain_name(p, &format!("spec.filters[{i}]"), f);
        }
    }
}

/// `matchOperator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MatchOperator {
    /// Prefix equals the CIDR.
    Equal,
    /// Prefix differs from the CIDR.
    NotEqual,
    /// Prefix within the CIDR.
    In,
    /// Prefix not within the CIDR.
    NotIn,
}

/// `action` of a filter rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FilterAction {
    /// Accept the route.
    Accept,
    /// Reject the route.
    Reject,
}

/// `source` of a filter rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FilterSource {
    /// Routes learned from BGP peers.
    RemotePeers,
}

/// `peerType` of a filter rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FilterPeerType {
    /// External peers.
    #[serde(rename = "eBGP")]
    EBgp,
    /// Internal peers.
    #[serde(rename = "iBGP")]
    IBgp,
}

/// `prefixLength` bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrefixLength {
    /// Shortest accepted prefix length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    /// Longest accepted prefix length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
}

/// `communities` match.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CommunityMatch {
    /// Exactly one community value.
    #[serde(default)]
    pub values: Vec<String>,
}

/// `addCommunity` operation.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddCommunity {
    /// Community to add.
    #[serde(default)]
    pub value: String,
}

/// `prependASPath` operation.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrependAsPath {
    /// AS numbers to prepend, in order.
    #[serde(default)]
    pub prefix: Vec<AsNumber>,
}

/// `setPriority` operation.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetPriority {
    /// Route priority (metric).
    #[serde(default)]
    pub value: i64,
}

/// One route modification; exactly one field is set.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilterOperation {
    /// Add a community.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_community: Option<AddCommunity>,
    /// Prepend AS numbers.
    #[serde(
        default,
        rename = "prependASPath",
        skip_serializing_if = "Option::is_none"
    )]
    pub prepend_as_path: Option<PrependAsPath>,
    /// Set the priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_priority: Option<SetPriority>,
}

/// One BGP filter rule (the V4 and V6 lists share this shape; the family is
/// checked by validation).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPFilterRule {
    /// Prefix to compare routes against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    /// Prefix-length bounds (requires cidr).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_length: Option<PrefixLength>,
    /// Only routes learned from peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<FilterSource>,
    /// Only routes via this interface (glob with `*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// How `cidr` is compared (required with cidr).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_operator: Option<MatchOperator>,
    /// Only for peers of this type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_type: Option<FilterPeerType>,
    /// Only routes carrying this community.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub communities: Option<CommunityMatch>,
    /// Only routes whose AS path starts with these.
    #[serde(
        default,
        rename = "asPathPrefix",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub as_path_prefix: Vec<AsNumber>,
    /// Only routes with this priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    /// Accept or Reject (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<FilterAction>,
    /// Modifications applied on Accept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<FilterOperation>,
}

impl BGPFilterRule {
    fn validate(&self, field: &str, family: u8, p: &mut Problems) {
        let max_len: i64 = if family == 4 { 32 } else { 128 };
        match (&self.cidr, &self.match_operator) {
            (Some(cidr), Some(_)) => {
                if let Some(net) = parse_net(p, &format!("{field}.cidr"), cidr) {
                    if net_family(&net) != family {
                        p.add(
                            format!("{field}.cidr"),
                            format!("{cidr} is not an IPv{family} CIDR"),
                        );
                    }
                }
            }
            (Some(_), None) => p.add(
                format!("{field}.matchOperator"),
                "required when cidr is set",
            ),
            (None, Some(_)) => p.add(
                format!("{field}.cidr"),
                "required when matchOperator is set",
            ),
            (None, None) => {}
        }
        if let Some(pl) = &self.prefix_length {
            if self.cidr.is_none() {
                p.add(format!("{field}.cidr"), "required when prefixLength is set");
            }
            if let Some(min) = pl.min {
                check_range(p, &format!("{field}.prefixLength.min"), min, 0, max_len);
            }
            if let Some(max) = pl.max {
                check_range(p, &format!("{field}.prefixLength.max"), max, 0, max_len);
            }
            if let (Some(min), Some(max)) = (pl.min, pl.max) {
                if min > max {
                    p.add(
                        format!("{field}.prefixLength"),
                        format!("min {min} is greater than max {max}"),
                    );
                }
            }
        }
        if let Some(iface) = &self.interface {
            let ok = !iface.is_empty()
                && iface.len() <= 15
                && iface
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-' | b'*'));
            if !ok {
                p.add(
                    format!("{field}.interface"),
                    format!("'{iface}' is not a valid interface name or glob"),
                );
            }
        }
        if let Some(c) = &self.communities {
            if c.values.len() != 1 {
                p.add(
                    format!("{field}.communities.values"),
                    "exactly one community value is supported",
                );
            }
            for (i, v) in c.values.iter().enumerate() {
                check_community_value(p, &format!("{field}.communities.values[{i}]"), v);
            }
        }
        if let Some(prio) = self.priority {
            check_range(p, &format!("{field}.priority"), prio, 1, 2_147_483_646);
        }
        match self.action {
            None => p.add(format!("{field}.action"), "required (Accept or Reject)"),
            Some(FilterAction::Reject) if !self.operations.is_empty() => p.add(
                format!("{field}.operations"),
                "operations may only be used with action Accept",
            ),
            _ => {}
        }
        if self.operations.len() > 10 {
            p.add(format!("{field}.operations"), "at most 10 operations");
        }
        for (i, op) in self.operations.iter().enumerate() {
            let f = format!("{field}.operations[{i}]");
            let set = usize::from(op.add_community.is_some())
                + usize::from(op.prepend_as_path.is_some())
                + usize::from(op.set_priority.is_some());
            if set != 1 {
                p.add(
                    &f,
                    "exactly one of addCommunity, prependASPath, setPriority must be set",
                );
            }
            if let Some(c) = &op.add_community {
                check_community_value(p, &format!("{f}.addCommunity.value"), &c.value);
            }
            if let Some(pp) = &op.prepend_as_path {
                if pp.prefix.is_empty() || pp.prefix.len() > 10 {
                    p.add(format!("{f}.prependASPath.prefix"), "1 to 10 AS numbers");
                }
            }
            if let Some(sp) = &op.set_priority {
                check_range(
                    p,
                    &format!("{f}.setPriority.value"),
                    sp.value,
                    1,
                    2_147_483_646,
                );
            }
        }
    }
}

/// `BGPFilter.spec`: ordered import/export rules per family.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPFilterSpec {
    /// IPv4 export rules.
    #[serde(default, rename = "exportV4", skip_serializing_if = "Vec::is_empty")]
    pub export_v4: Vec<BGPFilterRule>,
    /// IPv4 import rules.
    #[serde(default, rename = "importV4", skip_serializing_if = "Vec::is_empty")]
    pub import_v4: Vec<BGPFilterRule>,
    /// IPv6 export rules.
    #[serde(default, rename = "exportV6", skip_serializing_if = "Vec::is_empty")]
    pub export_v6: Vec<BGPFilterRule>,
    /// IPv6 import rules.
    #[serde(default, rename = "importV6", skip_serializing_if = "Vec::is_empty")]
    pub import_v6: Vec<BGPFilterRule>,
}

impl BGPFilterSpec {
    /// No defaults.
    pub fn defaulted(&mut self) {}

    /// Per-rule checks, with the family taken from the list.
    pub fn validate(&self, _meta: &ObjectMeta, p: &mut Problems) {
        for (rules, name, family) in [
            (&self.export_v4, "exportV4", 4),
            (&self.import_v4, "importV4", 4),
            (&self.export_v6, "exportV6", 6),
            (&self.import_v6, "importV6", 6),
        ] {
            for (i, rule) in rules.iter().enumerate() {
                rule.validate(&format!("spec.{name}[{i}]"), family, p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str) -> ObjectMeta {
        ObjectMeta {
            name: name.into(),
            ..Default::default()
        }
    }

    fn problems<F: Fn(&mut Problems)>(f: F) -> Vec<String> {
        let mut p = Problems::default();
        f(&mut p);
        p.list.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn peer_ip_forms() {
        assert_eq!(
            parse_peer_ip("10.0.0.1"),
            Some(("10.0.0.1".parse().unwrap(), None))
        );
        assert_eq!(
            parse_peer_ip("10.0.0.1:1179"),
            Some(("10.0.0.1".parse().unwrap(), Some(1179)))
        );
        assert_eq!(
            parse_peer_ip("[fd00::1]:179"),
            Some(("fd00::1".parse().unwrap(), Some(179)))
        );
        assert_eq!(parse_peer_ip("fd00::1:179").map(|x| x.1), Some(None));
        assert_eq!(parse_peer_ip("10.0.0.1:0"), None);
        assert_eq!(parse_peer_ip("peer"), None);
    }

    #[test]
    fn which_nodes_peer() {
        use std::collections::BTreeMap;
        let rr: BTreeMap<String, String> = BTreeMap::from([("rr".into(), "true".into())]);
        let none: BTreeMap<String, String> = BTreeMap::new();
        let global = BGPPeerSpec::default();
        assert!(global.applies_to_node("any", &none));
        let one = BGPPeerSpec {
            node: Some("node-1".into()),
            ..Default::default()
        };
        assert!(one.applies_to_node("node-1", &none));
        assert!(!one.applies_to_node("node-2", &none));
        let to_rr = BGPPeerSpec {
            node_selector: Some("!has(rr)".into()),
            peer_selector: Some("has(rr)".into()),
            ..Default::default()
        };
        assert!(to_rr.applies_to_node("n", &none));
        assert!(!to_rr.applies_to_node("n", &rr));
        assert!(to_rr.selects_remote_node(&rr));
        assert!(!to_rr.selects_remote_node(&none));
        assert_eq!(to_rr.effective_next_hop_mode(), NextHopMode::Auto);
    }

    #[test]
    fn peer_rules() {
        let spec = BGPPeerSpec {
            node: Some("node-1".into()),
            node_selector: Some("all()".into()),
            peer_ip: Some("10.0.0.1".into()),
            peer_selector: Some("has(rr)".into()),
            as_number: Some(AsNumber(0)),
            ttl_security: Some(300),
            keepalive_time: Some("ten".into()),
            ..Default::default()
        };
        let found = problems(|p| spec.validate(&meta("p"), p));
        assert_eq!(found.len(), 6, "{found:#?}");
        let ok = BGPPeerSpec {
            peer_ip: Some("[fd00::1]:1179".into()),
            as_number: Some(AsNumber(65001)),
            ..Default::default()
        };
        assert!(problems(|p| ok.validate(&meta("p"), p)).is_empty());
    }

    #[test]
    fn config_defaults_only_on_default() {
        let mut spec = BGPConfigurationSpec::default();
        spec.defaulted(&meta("default"));
        assert_eq!(spec.as_number, Some(AsNumber(64512)));
        assert_eq!(spec.node_to_node_mesh_enabled, Some(true));
        assert_eq!(spec.listen_port, Some(179));
        let mut node = BGPConfigurationSpec::default();
        node.defaulted(&meta("node.a"));
        assert_eq!(node, BGPConfigurationSpec::default());
        node.node_to_node_mesh_enabled = Some(false);
        let found = problems(|p| node.validate(&meta("node.a"), p));
        assert_eq!(
            found,
            ["spec.nodeToNodeMeshEnabled: may only be set on the 'default' BGPConfiguration"]
        );
    }

    #[test]
    fn filter_rules() {
        let spec = BGPFilterSpec {
            export_v4: vec![
                BGPFilterRule {
                    cidr: Some("fd00::/64".into()),
                    match_operator: Some(MatchOperator::In),
                    action: Some(FilterAction::Accept),
                    ..Default::default()
                },
                BGPFilterRule {
                    cidr: Some("10.0.0.0/8".into()),
                    prefix_length: Some(PrefixLength {
                        min: Some(24),
                        max: Some(16),
                    }),
                    action: Some(FilterAction::Reject),
                    operations: vec![FilterOperation::default()],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let found = problems(|p| spec.validate(&meta("f"), p));
        assert_eq!(
            found,
            [
                "spec.exportV4[0].cidr: fd00::/64 is not an IPv4 CIDR",
                "spec.exportV4[1].matchOperator: required when cidr is set",
                "spec.exportV4[1].prefixLength: min 24 is greater than max 16",
                "spec.exportV4[1].operations: operations may only be used with action Accept",
                "spec.exportV4[1].operations[0]: exactly one of addCommunity, prependASPath, setPriority must be set",
            ]
        );
    }
}
