//! The datastore's key layout, all of it: every key any writer or reader
//! uses is built here (Calico's etcd layout under Brindle's own roots).
//!
//! ```text
//! /brindle/resources/v3/<plural>/<name>                       a resource (JSON)
//! /brindle/resources/v3/<plural>/<namespace>/<name>           a namespaced one
//! /brindle/guards/ippools                                     bumped by every IPPool write
//! /brindle/ipam/v2/assignment/ipv4/block/10.0.0.0-26          block document
//! /brindle/ipam/v2/host/<node>/ipv4/block/10.0.0.0-26         {"state":"confirmed"}
//! /brindle/ipam/v2/handle/<handle id>                         {"handleID":…,"block":{cidr:count}}
//! ```
//!
//! A CIDR's `/` is written `-` in keys. Pools, the IPAM configuration and
//! nodes are ordinary resources, read where `brindlectl apply` writes them.

use brindle_model::resource::{Kind, Resource};
use ipnet::IpNet;

/// Root of every resource key.
pub const RESOURCES_ROOT: &str = "/brindle/resources/v3";

/// Prefix of every resource key (what brindle-node lists and follows).
pub fn resources_prefix() -> String {
    format!("{RESOURCES_ROOT}/")
}

/// Prefix under which all resources of `kind` are stored
/// (`/brindle/resources/v3/ippools/`).
pub fn kind_prefix(kind: Kind) -> String {
    format!("{RESOURCES_ROOT}/{}/", kind.plural())
}

/// Prefix of `kind`'s resources in `namespace` (all of them for a kind
/// that is not namespaced, or without a namespace).
pub fn namespace_prefix(kind: Kind, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if kind.namespaced() => format!("{}{ns}/", kind_prefix(kind)),
        _ => kind_prefix(kind),
    }
}

/// The key of a kind, namespace and name: `<kind prefix>[<namespace>/]<name>`
/// (the namespace only for namespaced kinds).
pub fn resource_key(kind: Kind, namespace: Option<&str>, name: &str) -> String {
    format!("{}{name}", namespace_prefix(kind, namespace))
}

/// The key `resource` is stored at.
pub fn key_of(resource: &Resource) -> String {
    resource_key(resource.kind(), resource.namespace(), resource.name())
}

/// Bumped in the same transaction as every IPPool write, so that a writer
/// that checked the whole set of pools (overlaps) fails if any changed.
pub const POOLS_GUARD_KEY: &str = "/brindle/guards/ippools";

/// Root of all IPAM state.
pub const IPAM_ROOT: &str = "/brindle/ipam/v2";

/// An address family, as it appears in keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(net: &IpNet) -> Family {
        match net {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        }
    }

    pub fn of_ip(ip: &std::net::IpAddr) -> Family {
        if ip.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }

    pub fn segment(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }
}

/// `10.0.0.0/26` → `10.0.0.0-26`.
pub fn cidr_segment(net: &IpNet) -> String {
    format!("{}-{}", net.network(), net.prefix_len())
}

/// `10.0.0.0-26` → `10.0.0.0/26`.
pub fn parse_cidr_segment(segment: &str) -> Option<IpNet> {
    let (addr, len) = segment.rsplit_once('-')?;
    format!("{addr}/{len}").parse().ok()
}

pub fn blocks_prefix(family: Family) -> String {
    format!("{IPAM_ROOT}/assignment/{}/block/", family.segment())
}

pub fn block_key(net: &IpNet) -> String {
    format!("{}{}", blocks_prefix(Family::of(net)), cidr_segment(net))
}

pub fn hosts_prefix() -> String {
    format!("{IPAM_ROOT}/host/")
}

pub fn host_prefix(node: &str) -> String {
    format!("{IPAM_ROOT}/host/{node}/")
}

pub fn host_family_prefix(node: &str, family: Family) -> String {
    format!("{}{}/block/", host_prefix(node), family.segment())
}

pub fn affinity_key(node: &str, net: &IpNet) -> String {
    format!(
        "{}{}",
        host_family_prefix(node, Family::of(net)),
        cidr_segment(net)
    )
}

/// `(node, block)` from an affinity key.
pub fn parse_affinity_key(key: &str) -> Option<(String, IpNet)> {
    let rest = key.strip_prefix(&hosts_prefix())?;
    let (node, rest) = rest.split_once('/')?;
    let (_family, rest) = rest.split_once('/')?;
    let cidr = rest.strip_prefix("block/")?;
    Some((node.to_owned(), parse_cidr_segment(cidr)?))
}

pub fn handles_prefix() -> String {
    format!("{IPAM_ROOT}/handle/")
}

pub fn handle_key(handle: &str) -> String {
    format!("{}{handle}", handles_prefix())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let v4: IpNet = "10.0.0.64/26".parse().unwrap();
        assert_eq!(
            block_key(&v4),
            "/brindle/ipam/v2/assignment/ipv4/block/10.0.0.64-26"
        );
        let aff = affinity_key("node-a", &v4);
        assert_eq!(aff, "/brindle/ipam/v2/host/node-a/ipv4/block/10.0.0.64-26");
        assert_eq!(parse_affinity_key(&aff), Some(("node-a".into(), v4)));
        let v6: IpNet = "fd00::40/122".parse().unwrap();
        assert_eq!(
            block_key(&v6),
            "/brindle/ipam/v2/assignment/ipv6/block/fd00::40-122"
        );
        assert_eq!(parse_cidr_segment("fd00::40-122"), Some(v6));
        assert_eq!(handle_key("net.c1"), "/brindle/ipam/v2/handle/net.c1");
    }

    #[test]
    fn resource_layout() {
        assert_eq!(kind_prefix(Kind::IPPool), "/brindle/resources/v3/ippools/");
        assert_eq!(
            resource_key(Kind::NetworkPolicy, Some("default"), "p"),
            "/brindle/resources/v3/networkpolicies/default/p"
        );
        // A namespace means nothing to a kind that has none.
        assert_eq!(
            resource_key(Kind::IPPool, Some("default"), "p"),
            "/brindle/resources/v3/ippools/p"
        );
    }
}
