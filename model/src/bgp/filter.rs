//! `BGPFilter` (Calico `bgpfilter.go`): rules, their operators and
//! validation.

use super::*;

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
