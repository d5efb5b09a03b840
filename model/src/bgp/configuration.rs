//! `BGPConfiguration` (Calico `bgpconfig.go`): the spec, its defaults and
//! validation.

use super::*;

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
                (!self.service_cluster_ips.is_empty(), "serviceClusterIPs"),
                (!self.service_external_ips.is_empty(), "serviceExternalIPs"),
                (
                    !self.service_load_balancer_ips.is_empty(),
                    "serviceLoadBalancerIPs",
                ),
                (
                    self.local_workload_peering_ipv4.is_some(),
                    "localWorkloadPeeringIPV4",
                ),
                (
                    self.local_workload_peering_ipv6.is_some(),
                    "localWorkloadPeeringIPV6",
                ),
            ] {
                if set {
                    p.add(
                        format!("spec.{field}"),
                        "may only be set on the 'default' BGPConfiguration",
                    );
                }
            }
            if self.as_number.is_some() {
                p.add(
                    "spec.asNumber",
                    "may only be set on the 'default' BGPConfiguration (a node's own AS number is its Node's spec.bgp.asNumber)",
                );
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
