//! `BGPConfiguration`, `BGPPeer` and `BGPFilter` specs (Calico
//! `bgpconfig.go`, `bgppeer.go`, `bgpfilter.go`) with defaults and
//! validation: one module per kind, and here what they share (CIDR lists,
//! communities, passwords, the AS and password checks).

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
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
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

mod bfd;
mod configuration;
mod filter;
mod peer;

pub use bfd::*;
pub use configuration::*;
pub use filter::*;
pub use peer::*;

fn check_asn(p: &mut Problems, field: &str, asn: AsNumber) {
    if asn.0 == 0 {
        p.add(field, "AS number 0 is reserved (RFC 7607)");
    }
}

fn check_password(p: &mut Problems, field: &str, pw: &BGPPassword) {
    match &pw.secret_key_ref {
        None => p.add(format!("{field}.secretKeyRef"), "required"),
        Some(r) => {
            // Both name a file under the secrets directory: Kubernetes'
            // own rules (a DNS subdomain; a key of `[-._a-zA-Z0-9]+`) keep
            // them inside it.
            if r.name.is_empty() {
                p.add(format!("{field}.secretKeyRef.name"), "required");
            } else {
                check_subdomain_name(p, &format!("{field}.secretKeyRef.name"), &r.name);
            }
            if r.key.is_empty() {
                p.add(format!("{field}.secretKeyRef.key"), "required");
            } else if r.key == "."
                || r.key == ".."
                || !r
                    .key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
            {
                p.add(
                    format!("{field}.secretKeyRef.key"),
                    format!(
                        "'{}': a key is made of letters, digits, '-', '_' and '.'",
                        r.key
                    ),
                );
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
