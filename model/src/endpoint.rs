//! `Node`, `WorkloadEndpoint` and `HostEndpoint` specs (Calico libcalico-go
//! `node.go`, `workloadendpoint.go`, api `hostendpoint.go`).

use serde::{Deserialize, Serialize};

use crate::meta::{AsNumber, ObjectMeta, Protocol};
use crate::validate::{
    check_address_with_prefix, check_interface_name, check_mac, check_permissive_name, check_range,
    check_subdomain_name, parse_ip, parse_net, Problems,
};

/// `Node.spec.bgp`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeBgpSpec {
    /// The node's AS (default: the cluster's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<AsNumber>,
    /// IPv4 address and subnet, e.g. `10.0.0.5/24`.
    #[serde(
        default,
        rename = "ipv4Address",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_address: Option<String>,
    /// IPv6 address and subnet.
    #[serde(
        default,
        rename = "ipv6Address",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_address: Option<String>,
    /// Address of the IP-in-IP tunnel device.
    #[serde(
        default,
        rename = "ipv4IPIPTunnelAddr",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_ipip_tunnel_addr: Option<String>,
    /// Makes the node a route reflector with this cluster id (an IPv4 form).
    #[serde(
        default,
        rename = "routeReflectorClusterID",
        skip_serializing_if = "Option::is_none"
    )]
    pub route_reflector_cluster_id: Option<String>,
}

/// An orchestrator reference.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrchRef {
    /// Name of the node in the orchestrator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// The orchestrator (`k8s`, `libnetwork`, ...).
    #[serde(default)]
    pub orchestrator: String,
}

/// WireGuard settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeWireguardSpec {
    /// IPv4 address of the wireguard device.
    #[serde(
        default,
        rename = "interfaceIPv4Address",
        skip_serializing_if = "Option::is_none"
    )]
    pub interface_ipv4_address: Option<String>,
    /// IPv6 address of the wireguard device.
    #[serde(
        default,
        rename = "interfaceIPv6Address",
        skip_serializing_if = "Option::is_none"
    )]
    pub interface_ipv6_address: Option<String>,
}

/// An address the node is reachable at.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeAddress {
    /// Address or CIDR.
    #[serde(default)]
    pub address: String,
    /// `CalicoNodeIP`, `InternalIP` or `ExternalIP`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub address_type: Option<String>,
}

/// `Node.spec`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSpec {
    /// BGP settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<NodeBgpSpec>,
    /// VXLAN tunnel IPv4 address.
    #[serde(
        default,
        rename = "ipv4VXLANTunnelAddr",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_vxlan_tunnel_addr: Option<String>,
    /// VXLAN tunnel MAC.
    #[serde(
        default,
        rename = "vxlanTunnelMACAddr",
        skip_serializing_if = "Option::is_none"
    )]
    pub vxlan_tunnel_mac_addr: Option<String>,
    /// VXLAN tunnel IPv6 address.
    #[serde(
        default,
        rename = "ipv6VXLANTunnelAddr",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_vxlan_tunnel_addr: Option<String>,
    /// IPv6 VXLAN tunnel MAC.
    #[serde(
        default,
        rename = "vxlanTunnelMACAddrV6",
        skip_serializing_if = "Option::is_none"
    )]
    pub vxlan_tunnel_mac_addr_v6: Option<String>,
    /// Orchestrator references.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orch_refs: Vec<OrchRef>,
    /// WireGuard settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard: Option<NodeWireguardSpec>,
    /// Reachable addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<NodeAddress>,
}

/// `Node.status`, written by the node itself.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeStatus {
    /// WireGuard IPv4 public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_public_key: Option<String>,
    /// WireGuard IPv6 public key.
    #[serde(
        default,
        rename = "wireguardPublicKeyV6",
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_public_key_v6: Option<String>,
    /// Kubernetes pod CIDRs.
    #[serde(default, rename = "podCIDRs", skip_serializing_if = "Vec::is_empty")]
    pub pod_cidrs: Vec<String>,
}

impl NodeSpec {
    /// No defaults.
    pub fn defaulted(&mut self) {}

    /// Address, MAC and AS checks.
    pub fn validate(&self, _meta: &ObjectMeta, p: &mut Problems) {
        if let Some(bgp) = &self.bgp {
            if bgp == &NodeBgpSpec::default() {
                p.add("spec.bgp", "must not be empty when present");
            }
            if let Some(a) = &bgp.ipv4_address {
                check_address_with_prefix(p, "spec.bgp.ipv4Address", a, 4);
            }
            if let Some(a) = &bgp.ipv6_address {
                check_address_with_prefix(p, "spec.bgp.ipv6Address", a, 6);
            }
            if let Some(a) = &bgp.ipv4_ipip_tunnel_addr {
                parse_ip(p, "spec.bgp.ipv4IPIPTunnelAddr", a, Some(4));
            }
            if let Some(a) = &bgp.route_reflector_cluster_id {
                parse_ip(p, "spec.bgp.routeReflectorClusterID", a, Some(4));
            }
            if bgp.as_number == Some(AsNumber(0)) {
                p.add("spec.bgp.asNumber", "AS number 0 is reserved (RFC 7607)");
            }
        }
        if let Some(a) = &self.ipv4_vxlan_tunnel_addr {
            parse_ip(p, "spec.ipv4VXLANTunnelAddr", a, Some(4));
        }
        if let Some(a) = &self.ipv6_vxlan_tunnel_addr {
            parse_ip(p, "spec.ipv6VXLANTunnelAddr", a, Some(6));
        }
        if let Some(m) = &self.vxlan_tunnel_mac_addr {
            check_mac(p, "spec.vxlanTunnelMACAddr", m);
        }
        if let Some(m) = &self.vxlan_tunnel_mac_addr_v6 {
            check_mac(p, "spec.vxlanTunnelMACAddrV6", m);
        }
        if let Some(wg) = &self.wireguard {
            if let Some(a) = &wg.interface_ipv4_address {
                parse_ip(p, "spec.wireguard.interfaceIPv4Address", a, Some(4));
            }
            if let Some(a) = &wg.interface_ipv6_address {
                parse_ip(p, "spec.wireguard.interfaceIPv6Address", a, Some(6));
            }
        }
        for (i, r) in self.orch_refs.iter().enumerate() {
            if r.orchestrator.is_empty() {
                p.add(format!("spec.orchRefs[{i}].orchestrator"), "required");
            }
        }
        for (i, a) in self.addresses.iter().enumerate() {
            parse_net(p, &format!("spec.addresses[{i}].address"), &a.address);
            if let Some(t) = &a.address_type {
                if !matches!(t.as_str(), "CalicoNodeIP" | "InternalIP" | "ExternalIP") {
                    p.add(
                        format!("spec.addresses[{i}].type"),
                        format!("'{t}' is not CalicoNodeIP, InternalIP or ExternalIP"),
                    );
                }
            }
        }
    }
}

/// A named port of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointPort {
    /// Port name referenced by policy.
    #[serde(default)]
    pub name: String,
    /// TCP, UDP or SCTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// Port number 1–65535.
    #[serde(default)]
    pub port: i64,
    /// Host port mapped to it (workload endpoints only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<i64>,
    /// Host IP of the mapping (workload endpoints only).
    #[serde(default, rename = "hostIP", skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
}

fn validate_ports(p: &mut Problems, ports: &[EndpointPort], host_mapping_allowed: bool) {
    for (i, port) in ports.iter().enumerate() {
        let f = format!("spec.ports[{i}]");
        // A workload port may be unnamed when it only maps a host port.
        let unnamed_ok =
            host_mapping_allowed && port.name.is_empty() && port.host_port.unwrap_or(0) != 0;
        if !unnamed_ok && !crate::meta::is_port_name(&port.name) {
            p.add(
                format!("{f}.name"),
                format!("'{}' is not a valid port name", port.name),
            );
        }
        match &port.protocol {
            None => p.add(format!("{f}.protocol"), "required (TCP, UDP or SCTP)"),
            Some(proto) if !matches!(proto.number(), Some(6 | 17 | 132)) => p.add(
                format!("{f}.protocol"),
                format!("{proto} is not TCP, UDP or SCTP"),
            ),
            _ => {}
        }
        check_range(p, &format!("{f}.port"), port.port, 1, 65535);
        if !host_mapping_allowed && (port.host_port.is_some() || port.host_ip.is_some()) {
            p.add(&f, "hostPort/hostIP are only valid on workload endpoints");
        }
        if let Some(hp) = port.host_port {
            check_range(p, &format!("{f}.hostPort"), hp, 0, 65535);
        }
        if let Some(ip) = &port.host_ip {
            parse_ip(p, &format!("{f}.hostIP"), ip, None);
        }
    }
}

/// A 1:1 NAT mapping.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IpNat {
    /// Endpoint address (must be one of its ipNetworks).
    #[serde(default, rename = "internalIP")]
    pub internal_ip: String,
    /// Address the endpoint is reachable at from outside.
    #[serde(default, rename = "externalIP")]
    pub external_ip: String,
}

/// `WorkloadEndpoint.spec` (namespaced).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadEndpointSpec {
    /// Orchestrator (`k8s`, `libnetwork`, `cni`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orchestrator: Option<String>,
    /// Workload name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// Hosting node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Container id.
    #[serde(
        default,
        rename = "containerID",
        skip_serializing_if = "Option::is_none"
    )]
    pub container_id: Option<String>,
    /// Pod name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// Endpoint name within the workload (`eth0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Kubernetes service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// The endpoint's addresses (/32 or /128 each).
    #[serde(default, rename = "ipNetworks", skip_serializing_if = "Vec::is_empty")]
    pub ip_networks: Vec<String>,
    /// 1:1 NATs.
    #[serde(default, rename = "ipNATs", skip_serializing_if = "Vec::is_empty")]
    pub ip_nats: Vec<IpNat>,
    /// IPv4 gateway the workload uses.
    #[serde(
        default,
        rename = "ipv4Gateway",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_gateway: Option<String>,
    /// IPv6 gateway the workload uses.
    #[serde(
        default,
        rename = "ipv6Gateway",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_gateway: Option<String>,
    /// Profiles (networks) applied after policy, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    /// Host-side interface (`cali…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface_name: Option<String>,
    /// Workload-side MAC.
    #[serde(default, rename = "mac", skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Named ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<EndpointPort>,
    /// Source prefixes allowed to bypass the RPF check.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_spoofed_source_prefixes: Vec<String>,
}

impl WorkloadEndpointSpec {
    /// No defaults.
    pub fn defaulted(&mut self) {}

    /// Calico's WorkloadEndpoint rules.
    pub fn validate(&self, meta: &ObjectMeta, p: &mut Problems) {
        if meta.namespace.is_none() {
            p.add("metadata.namespace", "required for a WorkloadEndpoint");
        }
        for (v, f) in [
            (&self.orchestrator, "orchestrator"),
            (&self.workload, "workload"),
            (&self.pod, "pod"),
            (&self.endpoint, "endpoint"),
            (&self.service_account_name, "serviceAccountName"),
        ] {
            if let Some(v) = v {
                check_permissive_name(p, &format!("spec.{f}"), v);
            }
        }
        if let Some(node) = &self.node {
            check_subdomain_name(p, "spec.node", node);
        }
        let mut addresses = Vec::new();
        for (i, n) in self.ip_networks.iter().enumerate() {
            let f = format!("spec.ipNetworks[{i}]");
            if let Some(net) = parse_net(p, &f, n) {
                if net.prefix_len() != net.max_prefix_len() {
                    p.add(
                        f,
                        format!("{n}: only /32 (IPv4) and /128 (IPv6) networks are supported"),
                    );
                }
                addresses.push(net.addr());
            }
        }
        for (i, nat) in self.ip_nats.iter().enumerate() {
            let f = format!("spec.ipNATs[{i}]");
            if let Some(ip) = parse_ip(p, &format!("{f}.internalIP"), &nat.internal_ip, None) {
                if !addresses.contains(&ip) {
                    p.add(
                        format!("{f}.internalIP"),
                        format!("{ip} is not one of the endpoint's ipNetworks"),
                    );
                }
            }
            parse_ip(p, &format!("{f}.externalIP"), &nat.external_ip, None);
        }
        if let Some(gw) = &self.ipv4_gateway {
            parse_ip(p, "spec.ipv4Gateway", gw, Some(4));
        }
        if let Some(gw) = &self.ipv6_gateway {
            parse_ip(p, "spec.ipv6Gateway", gw, Some(6));
        }
        for (i, prof) in self.profiles.iter().enumerate() {
            check_permissive_name(p, &format!("spec.profiles[{i}]"), prof);
        }
        if let Some(iface) = &self.interface_name {
            check_interface_name(p, "spec.interfaceName", iface);
        }
        if let Some(mac) = &self.mac {
            check_mac(p, "spec.mac", mac);
        }
        validate_ports(p, &self.ports, true);
        for (i, n) in self.allow_spoofed_source_prefixes.iter().enumerate() {
            parse_net(p, &format!("spec.allowSpoofedSourcePrefixes[{i}]"), n);
        }
    }
}

/// `HostEndpoint.spec`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostEndpointSpec {
    /// Node the interface is on.
    #[serde(default)]
    pub node: String,
    /// Interface name (`*` = all interfaces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface_name: Option<String>,
    /// Addresses expected on the interface.
    #[serde(default, rename = "expectedIPs", skip_serializing_if = "Vec::is_empty")]
    pub expected_ips: Vec<String>,
    /// Profiles applied after policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    /// Named ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<EndpointPort>,
}

impl HostEndpointSpec {
    /// No defaults.
    pub fn defaulted(&mut self) {}

    /// Calico's HostEndpoint rules.
    pub fn validate(&self, _meta: &ObjectMeta, p: &mut Problems) {
        if self.node.is_empty() {
            p.add("spec.node", "required");
        } else {
            check_subdomain_name(p, "spec.node", &self.node);
        }
        match &self.interface_name {
            None if self.expected_ips.is_empty() => p.add(
                "spec",
                "at least one of interfaceName or expectedIPs must be set",
            ),
            Some(iface) if iface != "*" => check_interface_name(p, "spec.interfaceName", iface),
            _ => {}
        }
        for (i, ip) in self.expected_ips.iter().enumerate() {
            parse_ip(p, &format!("spec.expectedIPs[{i}]"), ip, None);
        }
        for (i, prof) in self.profiles.iter().enumerate() {
            check_permissive_name(p, &format!("spec.profiles[{i}]"), prof);
        }
        validate_ports(p, &self.ports, false);
    }
}
