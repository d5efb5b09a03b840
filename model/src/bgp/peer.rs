//! `BGPPeer` (Calico `bgppeer.go`): the spec, its defaults and validation.

use super::*;
use crate::meta::ApiVersion;

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

/// `maxPrefixes.action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MaxPrefixAction {
    /// Log it and show it in `node status`; keep the session.
    Warn,
    /// End the session (Cease, Maximum Number of Prefixes Reached); it
    /// starts again by itself.
    Restart,
    /// End the session and keep it down until the BGPPeer changes.
    Disable,
}

/// `maxPrefixes` (a `brindle.dev/v1` extension, like BIRD's `import
/// limit`): most prefixes taken from the peer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MaxPrefixes {
    /// Prefixes received beyond which `action` is taken.
    #[serde(default)]
    pub limit: i64,
    /// What happens past the limit (default Restart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<MaxPrefixAction>,
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
    /// A limit on the prefixes taken from the peer (`brindle.dev/v1`
    /// only; off when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_prefixes: Option<MaxPrefixes>,
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

/// A BGPPeer's node matching with its selectors parsed once: a node
/// computing its peerings matches every other node against them, and
/// parsing per node was a visible share of a 250-node converge. A selector
/// that does not parse matches nothing (validation refuses it at apply).
pub struct PeerMatcher<'a> {
    node: Option<&'a str>,
    /// `Some(None)`: a nodeSelector that does not parse.
    node_selector: Option<Option<Selector>>,
    peer_selector: Option<Selector>,
}

impl PeerMatcher<'_> {
    /// Whether the peering applies to the local node `node_name` with
    /// `labels`: the named node, the nodes the nodeSelector picks, or every
    /// node when neither is set (a global peer).
    pub fn applies_to_node<L: Labels + ?Sized>(&self, node_name: &str, labels: &L) -> bool {
        match (self.node, &self.node_selector) {
            (Some(node), _) => node == node_name,
            (None, Some(sel)) => sel.as_ref().is_some_and(|s| s.matches(labels)),
            (None, None) => true,
        }
    }

    /// Whether a remote node with `labels` is a peer through `peerSelector`.
    pub fn selects_remote_node<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        self.peer_selector
            .as_ref()
            .is_some_and(|s| s.matches(labels))
    }
}

impl BGPPeerSpec {
    /// The peering's node matching, selectors parsed once.
    pub fn matcher(&self) -> PeerMatcher<'_> {
        PeerMatcher {
            node: self.node.as_deref(),
            node_selector: self
                .node_selector
                .as_deref()
                .map(|sel| Selector::parse(sel).ok()),
            peer_selector: self
                .peer_selector
                .as_deref()
                .and_then(|sel| Selector::parse(sel).ok()),
        }
    }

    /// [`PeerMatcher::applies_to_node`] for one node.
    pub fn applies_to_node<L: Labels + ?Sized>(&self, node_name: &str, labels: &L) -> bool {
        self.matcher().applies_to_node(node_name, labels)
    }

    /// [`PeerMatcher::selects_remote_node`] for one node.
    pub fn selects_remote_node<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        self.matcher().selects_remote_node(labels)
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
            for (set, field) in [
                (self.peer_ip.is_some(), "spec.peerIP"),
                (self.peer_selector.is_some(), "spec.peerSelector"),
            ] {
                if set {
                    p.add(field, "must be empty when localWorkloadSelector is set");
                }
            }
            if self.as_number.is_none() {
                p.add(
                    "spec.asNumber",
                    "required when localWorkloadSelector is set (the workloads' AS)",
                );
            }
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
        if let Some(m) = &self.max_prefixes {
            check_range(p, "spec.maxPrefixes.limit", m.limit, 1, i64::from(u32::MAX));
        }
    }

    /// What needs `brindle.dev/v1` (Calico has no such field).
    pub fn validate_extensions(&self, api_version: ApiVersion, p: &mut Problems) {
        if self.max_prefixes.is_some() && api_version != ApiVersion::BrindleV1 {
            p.add(
                "spec.maxPrefixes",
                format!(
                    "a {} extension: write this BGPPeer with apiVersion {}",
                    ApiVersion::BrindleV1,
                    ApiVersion::BrindleV1
                ),
            );
        }
    }
}
