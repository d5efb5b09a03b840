//! The compiler's input: a normalised policy model.
//!
//! This is what the agent hands the compiler after it has read the
//! datastore: endpoints with their effective labels and networks, policies
//! with their types already defaulted (Calico's rules), rules with ports,
//! protocols and selectors parsed. Validation of user input happens in
//! `brindle-model`; everything here is already well-formed, so the compiler
//! cannot fail on it.
//!
//! The types also deserialize from a compact YAML/JSON form (selectors as
//! strings, ports as `"80"` / `"100:200"`, protocols as names or numbers), which the
//! golden-file tests use.

use std::collections::BTreeMap;
use std::fmt;

use brindle_model::selector::Selector;
use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

/// Everything the compiler needs for one node.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyModel {
    /// Workload endpoints on this node (their `cali*` interfaces are local).
    pub endpoints: Vec<WorkloadEndpoint>,
    /// Endpoints on other nodes: they never get chains here, but their
    /// addresses fill selector and network sets, so rules about them work.
    pub remote_endpoints: Vec<WorkloadEndpoint>,
    /// Host interfaces of this node that policy protects.
    pub host_endpoints: Vec<HostEndpoint>,
    /// Network policies and global network policies, in any order.
    pub policies: Vec<Policy>,
    /// User-defined profiles. A network an endpoint names without a profile
    /// of that name behaves as [`Profile::default_network`].
    pub profiles: Vec<Profile>,
    /// IP pools, for `natOutgoing`.
    pub pools: Vec<Pool>,
}

/// A workload's interface and identity.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkloadEndpoint {
    /// Stable identity, e.g. `node1/default/wl-a`.
    pub name: String,
    /// Host-side interface (`cali…`). Empty for remote endpoints.
    #[serde(default)]
    pub interface: String,
    /// The workload's addresses (/32, /128).
    pub addrs: Vec<IpNet>,
    /// Labels, not yet merged with the profiles' `labelsToApply`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Networks (profiles) the endpoint belongs to, in order.
    #[serde(default)]
    pub profiles: Vec<String>,
}

/// A host interface protected by policy (Calico's HostEndpoint).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HostEndpoint {
    /// Resource name.
    pub name: String,
    /// The host interface, e.g. `eth0`.
    pub interface: String,
    /// Addresses of the interface (they join selector sets).
    #[serde(default)]
    pub addrs: Vec<IpNet>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Profiles, in order.
    #[serde(default)]
    pub profiles: Vec<String>,
}

/// A network policy or global network policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Policy {
    /// Unique name (namespaced policies as `namespace/name`).
    pub name: String,
    /// Lower first; `None` last; ties broken by name.
    #[serde(default)]
    pub order: Option<f64>,
    /// Which endpoints the policy applies to (already scoped to the
    /// namespace for namespaced policies).
    #[serde(deserialize_with = "de_selector")]
    pub selector: Selector,
    /// `Some` when the policy's types include Ingress (an empty list
    /// still selects the endpoint and so denies by default).
    #[serde(default)]
    pub ingress: Option<Vec<Rule>>,
    /// `Some` when the policy's types include Egress.
    #[serde(default)]
    pub egress: Option<Vec<Rule>>,
}

/// A profile (a network): rules applied after policies, and labels given to
/// its members.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Profile {
    /// Name; endpoints list it in `profiles`.
    pub name: String,
    /// Inbound rules.
    #[serde(default)]
    pub ingress: Vec<Rule>,
    /// Outbound rules.
    #[serde(default)]
    pub egress: Vec<Rule>,
    /// Labels every member endpoint gets (the endpoint's own win).
    #[serde(default)]
    pub labels_to_apply: BTreeMap<String, String>,
}

impl Profile {
    /// The profile of a network nobody defined: members reach each other,
    /// and anything may leave.
    pub fn default_network(name: &str) -> Profile {
        Profile {
            name: name.to_string(),
            ingress: vec![Rule {
                source: EntityMatch {
                    network: Some(name.to_string()),
                    ..EntityMatch::default()
                },
                ..Rule::allow()
            }],
            egress: vec![Rule::allow()],
            labels_to_apply: BTreeMap::new(),
        }
    }
}

/// An IP pool, as far as NAT is concerned.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Pool {
    /// The pool's CIDR.
    pub cidr: IpNet,
    /// Masquerade traffic from this pool to destinations outside all pools.
    #[serde(default)]
    pub nat_outgoing: bool,
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Action {
    /// Accept for this direction; later policies are not consulted.
    Allow,
    /// Drop.
    Deny,
    /// Log and carry on with the next rule.
    Log,
    /// Skip the remaining policies and go to the profiles.
    Pass,
}

/// One policy or profile rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rule {
    /// The action.
    pub action: Action,
    /// Restrict to IPv4 (`4`) or IPv6 (`6`).
    #[serde(default)]
    pub ip_version: Option<u8>,
    /// Only this protocol.
    #[serde(default)]
    pub protocol: Option<Protocol>,
    /// Any protocol but this one.
    #[serde(default)]
    pub not_protocol: Option<Protocol>,
    /// ICMP type/code (with protocol ICMP or ICMPv6).
    #[serde(default)]
    pub icmp: Option<Icmp>,
    /// Not this ICMP type/code.
    #[serde(default, rename = "notICMP")]
    pub not_icmp: Option<Icmp>,
    /// Conditions on the source.
    #[serde(default)]
    pub source: EntityMatch,
    /// Conditions on the destination.
    #[serde(default)]
    pub destination: EntityMatch,
}

impl Rule {
    /// A rule that allows everything.
    pub fn allow() -> Rule {
        Rule {
            action: Action::Allow,
            ip_version: None,
            protocol: None,
            not_protocol: None,
            icmp: None,
            not_icmp: None,
            source: EntityMatch::default(),
            destination: EntityMatch::default(),
        }
    }
}

/// Conditions on one end of a packet; all given conditions must hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct EntityMatch {
    /// The address is in one of these.
    pub nets: Vec<IpNet>,
    /// The address is in none of these.
    pub not_nets: Vec<IpNet>,
    /// The address belongs to an endpoint matching this selector.
    #[serde(deserialize_with = "de_opt_selector")]
    pub selector: Option<Selector>,
    /// The address belongs to no endpoint matching this selector.
    #[serde(deserialize_with = "de_opt_selector")]
    pub not_selector: Option<Selector>,
    /// The address belongs to an endpoint of this network (profile).
    pub network: Option<String>,
    /// The port is one of these.
    pub ports: Vec<PortRange>,
    /// The port is none of these.
    pub not_ports: Vec<PortRange>,
}

/// An IP protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
    /// ICMP (1).
    Icmp,
    /// ICMPv6 (58).
    IcmpV6,
    /// SCTP (132).
    Sctp,
    /// UDP-Lite (136).
    UdpLite,
    /// Any other protocol by number.
    Number(u8),
}

impl Protocol {
    /// The protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Icmp => 1,
            Protocol::IcmpV6 => 58,
            Protocol::Sctp => 132,
            Protocol::UdpLite => 136,
            Protocol::Number(n) => n,
        }
    }

    /// Whether iptables' `multiport` match can filter its ports.
    pub fn has_ports(self) -> bool {
        matches!(
            self,
            Protocol::Tcp | Protocol::Udp | Protocol::Sctp | Protocol::UdpLite
        )
    }

    /// Parses Calico's protocol spelling: a name (any case) or a number.
    pub fn parse(text: &str) -> Option<Protocol> {
        Some(match text.to_ascii_lowercase().as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "icmp" => Protocol::Icmp,
            "icmpv6" => Protocol::IcmpV6,
            "sctp" => Protocol::Sctp,
            "udplite" => Protocol::UdpLite,
            other => match other.parse::<u8>().ok()? {
                0 => return None,
                6 => Protocol::Tcp,
                17 => Protocol::Udp,
                1 => Protocol::Icmp,
                58 => Protocol::IcmpV6,
                132 => Protocol::Sctp,
                136 => Protocol::UdpLite,
                n => Protocol::Number(n),
            },
        })
    }
}

impl fmt::Display for Protocol {
    /// The spelling iptables accepts for `-p`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protocol::Tcp => f.write_str("tcp"),
            Protocol::Udp => f.write_str("udp"),
            Protocol::Icmp => f.write_str("icmp"),
            Protocol::IcmpV6 => f.write_str("ipv6-icmp"),
            Protocol::Sctp => f.write_str("sctp"),
            Protocol::UdpLite => f.write_str("udplite"),
            Protocol::Number(n) => write!(f, "{n}"),
        }
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Number(n) => n.to_string(),
            Raw::Text(t) => t,
        };
        Protocol::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown protocol {text:?}")))
    }
}

/// ICMP type and optional code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Icmp {
    /// ICMP type.
    #[serde(rename = "type")]
    pub icmp_type: u8,
    /// ICMP code.
    #[serde(default)]
    pub code: Option<u8>,
}

/// An inclusive port range; a single port has `first == last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port (≥ first).
    pub last: u16,
}

impl PortRange {
    /// Parses `"80"` or `"100:200"`.
    pub fn parse(text: &str) -> Option<PortRange> {
        let (first, last) = match text.split_once(':') {
            Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
            None => {
                let p = text.trim().parse().ok()?;
                (p, p)
            }
        };
        (first <= last).then_some(PortRange { first, last })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}:{}", self.first, self.last)
        }
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u16),
            Text(String),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Number(n) => n.to_string(),
            Raw::Text(t) => t,
        };
        PortRange::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("bad port range {text:?}")))
    }
}

fn de_selector<'de, D: Deserializer<'de>>(d: D) -> Result<Selector, D::Error> {
    let text = String::deserialize(d)?;
    Selector::parse(&text).map_err(serde::de::Error::custom)
}

fn de_opt_selector<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Selector>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(text) => Selector::parse(&text)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}
