//! Names of Brindle's chains and ipsets.
//!
//! Every name starts with `brindle`, so the applier can tell what it owns and
//! never touches anything else. Chains fit iptables' 28-character limit and
//! ipsets the kernel's 31; a name too long (or with characters a chain name
//! should not hold) is shortened to `prefix_` + base64url(sha256(name)), as
//! Felix does.

use brindle_model::selector::{length_limited_id, Selector, CHAIN_NAME_MAX, IPSET_NAME_MAX};

use crate::ruleset::Family;

/// Prefix of everything Brindle creates.
pub const OWNED_PREFIX: &str = "brindle";
/// Hooked from `FORWARD`.
pub const FORWARD_CHAIN: &str = "brindle-FORWARD";
/// Hooked from `INPUT`.
pub const INPUT_CHAIN: &str = "brindle-INPUT";
/// Hooked from `OUTPUT`.
pub const OUTPUT_CHAIN: &str = "brindle-OUTPUT";
/// Hooked from nat `POSTROUTING`.
pub const POSTROUTING_CHAIN: &str = "brindle-POSTROUTING";
/// Egress policy of local workloads.
pub const FROM_WORKLOAD_CHAIN: &str = "brindle-from-wl";
/// Ingress policy of local workloads.
pub const TO_WORKLOAD_CHAIN: &str = "brindle-to-wl";

/// A chain name: `prefix + name`, or `prefix + "_" + hash` when that would
/// be too long or `name` holds characters outside `[A-Za-z0-9._-]`.
fn chain_name(prefix: &str, name: &str) -> String {
    let safe = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'));
    if safe {
        if let Some(id) = length_limited_id(prefix, name, CHAIN_NAME_MAX) {
            return id;
        }
    }
    // Force the hashed form: a suffix of exactly the limit starting with `_`
    // is always hashed.
    let forced = format!("_{name}{}", "_".repeat(CHAIN_NAME_MAX));
    length_limited_id(prefix, &forced, CHAIN_NAME_MAX).unwrap_or_else(|| prefix.to_string())
}

fn set_name(prefix: &str, name: &str) -> String {
    length_limited_id(prefix, name, IPSET_NAME_MAX).unwrap_or_else(|| prefix.to_string())
}

/// `brindle-pi-<policy>` (ingress) or `brindle-po-<policy>` (egress).
pub fn policy_chain(policy: &str, ingress: bool) -> String {
    chain_name(
        if ingress {
            "brindle-pi-"
        } else {
            "brindle-po-"
        },
        policy,
    )
}

/// `brindle-pri-<profile>` or `brindle-pro-<profile>`.
pub fn profile_chain(profile: &str, ingress: bool) -> String {
    chain_name(
        if ingress {
            "brindle-pri-"
        } else {
            "brindle-pro-"
        },
        profile,
    )
}

/// `brindle-th-<iface>` (into the host through a host endpoint) or
/// `brindle-fh-<iface>` (out of the host).
pub fn host_endpoint_chain(interface: &str, ingress: bool) -> String {
    chain_name(
        if ingress {
            "brindle-th-"
        } else {
            "brindle-fh-"
        },
        interface,
    )
}

/// The `hash:net,iface` set of (address, interface) of local workloads.
pub fn workload_addrs_set(family: Family) -> String {
    format!("brindle{}-wl-addrs", family.version())
}

/// Local endpoints selected by at least one ingress (or egress) policy.
pub fn selected_set(family: Family, ingress: bool) -> String {
    let dir = if ingress { "in" } else { "out" };
    format!("brindle{}-{dir}-selected", family.version())
}

/// Endpoint addresses matching a selector: `brindle4s:<hash>`.
pub fn selector_set(family: Family, selector: &Selector) -> String {
    selector_set_named(family, &selector.unique_id())
}

/// [`selector_set`] from the selector's [`Selector::unique_id`].
pub fn selector_set_named(family: Family, id: &str) -> String {
    let hash = id.strip_prefix("s:").unwrap_or(id);
    let mut name = format!("brindle{}s:{hash}", family.version());
    name.truncate(IPSET_NAME_MAX);
    name
}

/// Endpoint addresses of a network: `brindle4n:<network>`.
pub fn network_set(family: Family, network: &str) -> String {
    set_name(&format!("brindle{}n:", family.version()), network)
}

/// A list of CIDRs from one rule: `brindle4c:<hash>`.
pub fn cidr_set(family: Family, cidrs: &[String]) -> String {
    let joined = format!("_{}{}", cidrs.join(","), "_".repeat(IPSET_NAME_MAX));
    set_name(&format!("brindle{}c:", family.version()), &joined)
}

/// (natOutgoing pools, all pools).
pub fn nat_sets(family: Family) -> (String, String) {
    let v = family.version();
    (
        format!("brindle{v}-masq-pools"),
        format!("brindle{v}-all-pools"),
    )
}

/// Whether a chain or set name is Brindle's.
pub fn is_owned(name: &str) -> bool {
    name.starts_with(OWNED_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_the_kernel_limits() {
        let long = "a-very-long-policy-name-that-cannot-fit-in-a-chain";
        assert!(policy_chain(long, true).len() <= CHAIN_NAME_MAX);
        assert!(policy_chain(long, true).starts_with("brindle-pi-_"));
        assert_eq!(policy_chain("allow-web", false), "brindle-po-allow-web");
        assert!(policy_chain("ns/allow", true).starts_with("brindle-pi-_"));
        let sel = Selector::parse("role == 'db'").unwrap();
        let set = selector_set(Family::V4, &sel);
        assert_eq!(set.len(), IPSET_NAME_MAX);
        assert!(set.starts_with("brindle4s:"));
        assert!(network_set(Family::V6, &"n".repeat(40)).len() <= IPSET_NAME_MAX);
        let cidrs = ["10.0.0.0/8".to_string(), "192.168.0.0/16".to_string()];
        assert!(cidr_set(Family::V4, &cidrs).len() <= IPSET_NAME_MAX);
    }

    #[test]
    fn distinct_inputs_give_distinct_names() {
        let a = Selector::parse("role == 'a'").unwrap();
        let b = Selector::parse("role == 'b'").unwrap();
        assert_ne!(selector_set(Family::V4, &a), selector_set(Family::V4, &b));
        assert_ne!(policy_chain("x/y", true), policy_chain("x/z", true));
    }
}
