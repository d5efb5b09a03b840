//! Policy kinds: `NetworkPolicy`, `GlobalNetworkPolicy`, `Profile`, and the
//! `Rule` / `EntityRule` they share (Calico `policy_common.go`,
//! `networkpolicy.go`, `globalnetworkpolicy.go`, `profile.go`).
//!
//! Defaults: a policy without `types` gets `[Ingress]`, `[Egress]` or both
//! from the rules it has, as Calico does on write. Validation follows
//! Calico's `validateRule`/`validateEntityRule` and policy rules.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::meta::{is_false, ObjectMeta, Port, Protocol};
use crate::selector::{Expr, Selector};
use crate::validate::{
    check_label_name, check_labels, check_selector, check_subdomain_name, net_family, parse_net,
    Problems,
};

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Action {
    /// Accept the packet (stop evaluating this tier).
    Allow,
    /// Drop the packet.
    Deny,
    /// Log the packet and continue.
    Log,
    /// Skip to the next tier (or profiles).
    Pass,
}

/// Direction a policy applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PolicyType {
    /// Traffic into the endpoint.
    Ingress,
    /// Traffic out of the endpoint.
    Egress,
}

/// ICMP type/code match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IcmpFields {
    /// ICMP type 0–254.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<i64>,
    /// ICMP code 0–255 (requires type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
}

/// Kubernetes Service match.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceMatch {
    /// Service name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Service namespace (default: the policy's).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

/// Service account match.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceAccountMatch {
    /// Account names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Account label selector.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub selector: String,
}

/// Source or destination match criteria.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntityRule {
    /// Address ranges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<String>,
    /// Endpoint selector.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub selector: String,
    /// Namespace selector (`global()` = non-namespaced entities).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace_selector: String,
    /// Kubernetes services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<ServiceMatch>,
    /// Ports (require a protocol with ports).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    /// Negated nets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_nets: Vec<String>,
    /// Negated selector.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub not_selector: String,
    /// Negated ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<Port>,
    /// Service accounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_accounts: Option<ServiceAccountMatch>,
}

impl EntityRule {
    /// Whether nothing is set (the entity matches anything).
    pub fn is_empty(&self) -> bool {
        self == &EntityRule::default()
    }
}

/// An HTTP path match: exactly one of exact/prefix.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpPath {
    /// Exact path.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub exact: String,
    /// Path prefix.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
}

/// HTTP match criteria (accepted for compatibility; enforced only by an
/// application-layer dataplane).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpMatch {
    /// Methods, OR'd.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Paths, OR'd.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<HttpPath>,
}

/// Rule metadata.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleMetadata {
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// One policy rule: match criteria and an action.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// 4 or 6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_version: Option<i64>,
    /// IP protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// ICMP match (requires protocol ICMP/ICMPv6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp: Option<IcmpFields>,
    /// Negated protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_protocol: Option<Protocol>,
    /// Negated ICMP match.
    #[serde(default, rename = "notICMP", skip_serializing_if = "Option::is_none")]
    pub not_icmp: Option<IcmpFields>,
    /// Source match.
    #[serde(default, skip_serializing_if = "EntityRule::is_empty")]
    pub source: EntityRule,
    /// Destination match.
    #[serde(default, skip_serializing_if = "EntityRule::is_empty")]
    pub destination: EntityRule,
    /// HTTP match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpMatch>,
    /// Rule metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<RuleMetadata>,
}

impl Rule {
    /// Calico's rule checks; `field` is e.g. `spec.ingress[2]`.
    pub fn validate(&self, field: &str, direction: PolicyType, p: &mut Problems) {
        if self.action.is_none() {
            p.add(
                format!("{field}.action"),
                "required (Allow, Deny, Log or Pass)",
            );
        }
        if let Some(v) = self.ip_version {
            if v != 4 && v != 6 {
                p.add(format!("{field}.ipVersion"), format!("{v} is not 4 or 6"));
            }
        }
        for (proto, name) in [
            (&self.protocol, "protocol"),
            (&self.not_protocol, "notProtocol"),
        ] {
            if let Some(reason) = proto.as_ref().and_then(Protocol::problem) {
                p.add(format!("{field}.{name}"), reason);
            }
        }
        for (icmp, name) in [(&self.icmp, "icmp"), (&self.not_icmp, "notICMP")] {
            let Some(icmp) = icmp else { continue };
            if !self.protocol.as_ref().is_some_and(Protocol::is_icmp) {
                p.add(
                    format!("{field}.{name}"),
                    "ICMP type/code may only be used with protocol ICMP or ICMPv6",
                );
            }
            if let Some(t) = icmp.icmp_type {
                if !(0..=254).contains(&t) {
                    p.add(
                        format!("{field}.{name}.type"),
                        format!("{t} is out of range 0..254"),
                    );
                }
            }
            match icmp.code {
                Some(_) if icmp.icmp_type.is_none() => p.add(
                    format!("{field}.{name}.code"),
                    "an ICMP code requires an ICMP type",
                ),
                Some(c) if !(0..=255).contains(&c) => p.add(
                    format!("{field}.{name}.code"),
                    format!("{c} is out of range 0..255"),
                ),
                _ => {}
            }
        }
        if let (Some(v), Some(proto)) = (self.ip_version, &self.protocol) {
            let mismatch = match proto.number() {
                Some(1) => v == 6,
                Some(58) => v == 4,
                _ => false,
            };
            if mismatch {
                p.add(
                    format!("{field}.protocol"),
                    format!("{proto} does not match ipVersion {v}"),
                );
            }
        }
        let has_ports = |e: &EntityRule| !e.ports.is_empty() || !e.not_ports.is_empty();
        // As Calico: without a protocol only named ports may be used (they
        // carry their own protocol); a protocol without ports allows none.
        for (entity, side) in [(&self.source, "source"), (&self.destination, "destination")] {
            for (ports, name) in [(&entity.ports, "ports"), (&entity.not_ports, "notPorts")] {
                if ports.is_empty() {
                    continue;
                }
                let all_named = ports.iter().all(|p| matches!(p, Port::Named(_)));
                match &self.protocol {
                    None if !all_named => p.add(
                        format!("{field}.{side}.{name}"),
                        "numeric ports require protocol TCP, UDP, SCTP or UDPLite",
                    ),
                    Some(proto) if !proto.supports_ports() => p.add(
                        format!("{field}.{side}.{name}"),
                        format!("protocol {proto} does not have ports"),
                    ),
                    _ => {}
                }
            }
        }
        let families: Vec<u8> = [
            &self.source.nets,
            &self.source.not_nets,
            &self.destination.nets,
            &self.destination.not_nets,
        ]
        .into_iter()
        .flatten()
        .filter_map(|n| n.parse::<ipnet::IpNet>().ok())
        .map(|n| net_family(&n))
        .collect();
        if families.contains(&4) && families.contains(&6) {
            p.add(field, "the rule contains both IPv4 and IPv6 CIDRs");
        }
        self.validate_entity(&format!("{field}.source"), &self.source, p);
        self.validate_entity(&format!("{field}.destination"), &self.destination, p);
        // Calico allows ports next to services only on ingress rules (they
        // then restrict the destination port); source services carry none.
        if self.source.services.is_some() && has_ports(&self.source) {
            p.add(
                format!("{field}.source.ports"),
                "ports cannot be combined with source services",
            );
        }
        if direction == PolicyType::Egress
            && self.destination.services.is_some()
            && has_ports(&self.destination)
        {
            p.add(
                format!("{field}.destination.ports"),
                "ports cannot be combined with destination services on egress rules",
            );
        }
        if let Some(http) = &self.http {
            for (i, path) in http.paths.iter().enumerate() {
                if path.exact.is_empty() == path.prefix.is_empty() {
                    p.add(
                        format!("{field}.http.paths[{i}]"),
                        "exactly one of exact or prefix must be set",
                    );
                }
            }
        }
    }

    fn validate_entity(&self, field: &str, e: &EntityRule, p: &mut Problems) {
        for (nets, name) in [(&e.nets, "nets"), (&e.not_nets, "notNets")] {
            for (i, net) in nets.iter().enumerate() {
                let f = format!("{field}.{name}[{i}]");
                if let Some(parsed) = parse_net(p, &f, net) {
                    if let Some(v) = self.ip_version {
                        if i64::from(net_family(&parsed)) != v {
                            p.add(f, format!("{net} does not match the rule's ipVersion {v}"));
                        }
                    }
                }
            }
        }
        for (i, net) in e.not_nets.iter().enumerate() {
            if net
                .parse::<ipnet::IpNet>()
                .is_ok_and(|n| n.prefix_len() == 0)
            {
                p.add(
                    format!("{field}.notNets[{i}]"),
                    format!("{net} matches everything, so the rule could never match"),
                );
            }
        }
        for (sel, name) in [(&e.selector, "selector"), (&e.not_selector, "notSelector")] {
            if sel.contains("global(") {
                p.add(
                    format!("{field}.{name}"),
                    "global() can only be used in a namespaceSelector",
                );
            }
        }
        if e.namespace_selector.contains("global(")
            && Selector::parse(&e.namespace_selector).is_ok_and(|s| s.expr() != &Expr::Global)
        {
            p.add(
                format!("{field}.namespaceSelector"),
                "global() must be the whole namespaceSelector",
            );
        }
        for (sel, name) in [
            (&e.selector, "selector"),
            (&e.not_selector, "notSelector"),
            (&e.namespace_selector, "namespaceSelector"),
        ] {
            check_selector(p, &format!("{field}.{name}"), sel);
        }
        for (ports, name) in [(&e.ports, "ports"), (&e.not_ports, "notPorts")] {
            for (i, port) in ports.iter().enumerate() {
                if let Some(reason) = port.problem() {
                    p.add(format!("{field}.{name}[{i}]"), reason);
                }
            }
        }
        if let Some(svc) = &e.services {
            if svc.name.is_empty() {
                p.add(format!("{field}.services.name"), "required");
            } else {
                check_subdomain_name(p, &format!("{field}.services.name"), &svc.name);
            }
            if !svc.namespace.is_empty() {
                check_label_name(p, &format!("{field}.services.namespace"), &svc.namespace);
            }
            let others = !e.nets.is_empty()
                || !e.not_nets.is_empty()
                || !e.selector.is_empty()
                || !e.not_selector.is_empty()
                || !e.namespace_selector.is_empty()
                || e.service_accounts.is_some();
            if others {
                p.add(
                    format!("{field}.services"),
                    "services cannot be combined with nets, selectors or serviceAccounts",
                );
            }
        }
        if let Some(sa) = &e.service_accounts {
            check_selector(
                p,
                &format!("{field}.serviceAccounts.selector"),
                &sa.selector,
            );
        }
    }
}

/// The `types` Calico derives when none are given.
pub fn default_types(ingress: &[Rule], egress: &[Rule]) -> Vec<PolicyType> {
    match (ingress.is_empty(), egress.is_empty()) {
        (_, true) => vec![PolicyType::Ingress],
        (true, false) => vec![PolicyType::Egress],
        (false, false) => vec![PolicyType::Ingress, PolicyType::Egress],
    }
}

fn validate_rules(p: &mut Problems, ingress: &[Rule], egress: &[Rule]) {
    for (i, r) in ingress.iter().enumerate() {
        r.validate(&format!("spec.ingress[{i}]"), PolicyType::Ingress, p);
        if r.destination.services.is_some() {
            p.add(
                format!("spec.ingress[{i}].destination.services"),
                "services are not allowed in an ingress rule's destination",
            );
        }
    }
    for (i, r) in egress.iter().enumerate() {
        r.validate(&format!("spec.egress[{i}]"), PolicyType::Egress, p);
        if r.source.services.is_some() {
            p.add(
                format!("spec.egress[{i}].source.services"),
                "services are not allowed in an egress rule's source",
            );
        }
    }
}

/// `global()` only means something in a rule's namespaceSelector.
fn forbid_global(p: &mut Problems, field: &str, selector: &str) {
    if selector.contains("global(") {
        p.add(
            field,
            "global() can only be used in a rule's namespaceSelector",
        );
    }
}

fn validate_common(
    p: &mut Problems,
    order: Option<f64>,
    tier: &Option<String>,
    types: &[PolicyType],
    ingress: &[Rule],
    egress: &[Rule],
    hints: &[String],
) {
    if order.is_some_and(|o| !o.is_finite()) {
        p.add("spec.order", "must be a finite number");
    }
    if let Some(t) = tier {
        check_subdomain_name(p, "spec.tier", t);
    }
    for (i, t) in types.iter().enumerate() {
        if types[..i].contains(t) {
            p.add(format!("spec.types[{i}]"), format!("{t:?} is listed twice"));
        }
    }
    if !types.is_empty() {
        if !ingress.is_empty() && !types.contains(&PolicyType::Ingress) {
            p.add(
                "spec.types",
                "the policy has ingress rules but types does not include Ingress",
            );
        }
        if !egress.is_empty() && !types.contains(&PolicyType::Egress) {
            p.add(
                "spec.types",
                "the policy has egress rules but types does not include Egress",
            );
        }
    }
    for (i, h) in hints.iter().enumerate() {
        if h != "AssumeNeededOnEveryNode" {
            p.add(
                format!("spec.performanceHints[{i}]"),
                format!("unknown hint '{h}' (expected AssumeNeededOnEveryNode)"),
            );
        }
    }
    validate_rules(p, ingress, egress);
}

/// `NetworkPolicy.spec` (namespaced).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicySpec {
    /// Tier (default `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// Lower first; unset = last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<f64>,
    /// Ingress rules in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    /// Egress rules in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
    /// Endpoints (in the namespace) the policy applies to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub selector: String,
    /// Directions (defaulted from the rules).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<PolicyType>,
    /// Service-account selector.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_account_selector: String,
    /// Engine hints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub performance_hints: Vec<String>,
}

impl NetworkPolicySpec {
    /// Fills `types` from the rules when unset.
    pub fn defaulted(&mut self) {
        if self.types.is_empty() {
            self.types = default_types(&self.ingress, &self.egress);
        }
    }

    /// Calico's NetworkPolicy rules.
    pub fn validate(&self, _meta: &ObjectMeta, p: &mut Problems) {
        check_selector(p, "spec.selector", &self.selector);
        check_selector(
            p,
            "spec.serviceAccountSelector",
            &self.service_account_selector,
        );
        forbid_global(p, "spec.selector", &self.selector);
        forbid_global(
            p,
            "spec.serviceAccountSelector",
            &self.service_account_selector,
        );
        validate_common(
            p,
            self.order,
            &self.tier,
            &self.types,
            &self.ingress,
            &self.egress,
            &self.performance_hints,
        );
    }
}

/// `GlobalNetworkPolicy.spec`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GlobalNetworkPolicySpec {
    /// Tier (default `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// Lower first; unset = last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<f64>,
    /// Ingress rules in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    /// Egress rules in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
    /// Endpoints the policy applies to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub selector: String,
    /// Directions (defaulted from the rules).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<PolicyType>,
    /// Untracked (raw table) policy.
    #[serde(default, skip_serializing_if = "is_false")]
    pub do_not_track: bool,
    /// Applied before DNAT (mangle table).
    #[serde(default, rename = "preDNAT", skip_serializing_if = "is_false")]
    pub pre_dnat: bool,
    /// Also applies to forwarded traffic.
    #[serde(default, skip_serializing_if = "is_false")]
    pub apply_on_forward: bool,
    /// Service-account selector.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_account_selector: String,
    /// Namespace selector.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace_selector: String,
    /// Engine hints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub performance_hints: Vec<String>,
}

impl GlobalNetworkPolicySpec {
    /// Fills `types` from the rules when unset.
    pub fn defaulted(&mut self) {
        if self.types.is_empty() {
            self.types = default_types(&self.ingress, &self.egress);
        }
    }

    /// Calico's GlobalNetworkPolicy rules.
    pub fn validate(&self, _meta: &ObjectMeta, p: &mut Problems) {
        check_selector(p, "spec.selector", &self.selector);
        check_selector(p, "spec.namespaceSelector", &self.namespace_selector);
        forbid_global(p, "spec.selector", &self.selector);
        forbid_global(p, "spec.namespaceSelector", &self.namespace_selector);
        check_selector(
            p,
            "spec.serviceAccountSelector",
            &self.service_account_selector,
        );
        if self.do_not_track && self.pre_dnat {
            p.add("spec", "preDNAT and doNotTrack cannot both be true");
        }
        if (self.do_not_track || self.pre_dnat) && !self.apply_on_forward {
            p.add(
                "spec.applyOnForward",
                "must be true when preDNAT or doNotTrack is true",
            );
        }
        if self.pre_dnat && (!self.egress.is_empty() || self.types.contains(&PolicyType::Egress)) {
            p.add("spec.egress", "a preDNAT policy cannot have egress rules");
        }
        validate_common(
            p,
            self.order,
            &self.tier,
            &self.types,
            &self.ingress,
            &self.egress,
            &self.performance_hints,
        );
    }
}

/// `Profile.spec`: rules applied after policy to endpoints that list the
/// profile, and labels those endpoints inherit. A profile is how a Brindle
/// network says "endpoints in me may talk to each other".
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProfileSpec {
    /// Ingress rules in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    /// Egress rules in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
    /// Labels added to every endpoint using the profile.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels_to_apply: BTreeMap<String, String>,
}

impl ProfileSpec {
    /// The profile of a network named `name`, as Calico's libnetwork plugin
    /// made them: members carry the label `name` (empty value), accept
    /// traffic from endpoints with that label, and may send anywhere.
    pub fn network(name: &str) -> ProfileSpec {
        ProfileSpec {
            ingress: vec![Rule {
                action: Some(Action::Allow),
                source: EntityRule {
                    selector: format!("has({name})"),
                    ..Default::default()
                },
                ..Default::default()
            }],
            egress: vec![Rule {
                action: Some(Action::Allow),
                ..Default::default()
            }],
            labels_to_apply: BTreeMap::from([(name.to_string(), String::new())]),
        }
    }

    /// No defaults.
    pub fn defaulted(&mut self) {}

    /// Rule and label checks.
    pub fn validate(&self, _meta: &ObjectMeta, p: &mut Problems) {
        check_labels(p, "spec.labelsToApply", &self.labels_to_apply);
        validate_rules(p, &self.ingress, &self.egress);
    }
}

#[cfg(test)]
mod tests;
