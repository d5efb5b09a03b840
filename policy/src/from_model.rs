//! From stored resources (`brindle-model`) to the compiler's input.
//!
//! This is where Calico's meaning of the YAML is applied:
//!
//! - a namespaced `NetworkPolicy` selects, and its rule selectors match,
//!   only endpoints of its own namespace (`projectcalico.org/namespace`),
//!   unless a rule's `namespaceSelector` says otherwise;
//! - `namespaceSelector` matches namespace labels, which endpoints carry
//!   with the `pcns.` prefix; `global()` there means "not namespaced";
//! - `types` default from the rules when unset;
//! - workload endpoints get the labels Calico adds
//!   (`projectcalico.org/namespace`, `projectcalico.org/orchestrator`).
//!
//! What the iptables dataplane cannot express is dropped with a warning,
//! never approximated: named ports, `services`, `serviceAccounts` and
//! `http` matches. Dropping an Allow rule only narrows what passes; a Deny
//! rule with such a match is dropped too (and logged), since matching more
//! than the user asked would be as wrong as matching less.

use brindle_model::endpoint::{HostEndpointSpec, WorkloadEndpointSpec};
use brindle_model::meta::{Port, Protocol as ModelProtocol};
use brindle_model::policy::{self as mp, default_types, PolicyType};
use brindle_model::resource::{
    GlobalNetworkPolicy, HostEndpoint, IPPool, NetworkPolicy, Object, Profile, WorkloadEndpoint,
};
use brindle_model::selector::{Expr, Selector};
use ipnet::IpNet;

use crate::ir;

/// Label Calico puts on namespaced endpoints.
pub const NAMESPACE_LABEL: &str = "projectcalico.org/namespace";
/// Label Calico puts on workload endpoints.
pub const ORCHESTRATOR_LABEL: &str = "projectcalico.org/orchestrator";
/// Prefix of namespace labels copied onto endpoints.
pub const NAMESPACE_LABEL_PREFIX: &str = "pcns.";

/// Everything policy-related in the datastore, seen from one node.
#[derive(Debug, Clone, Copy)]
pub struct ClusterView<'a> {
    /// This node's name: its workload and host endpoints get chains.
    pub node: &'a str,
    /// Workload endpoints of every node.
    pub workload_endpoints: &'a [WorkloadEndpoint],
    /// Host endpoints of every node.
    pub host_endpoints: &'a [HostEndpoint],
    /// Namespaced policies.
    pub network_policies: &'a [NetworkPolicy],
    /// Global policies.
    pub global_network_policies: &'a [GlobalNetworkPolicy],
    /// User-defined profiles.
    pub profiles: &'a [Profile],
    /// IP pools.
    pub pools: &'a [IPPool],
}

/// Builds the compiler input for `view.node`.
pub fn policy_model(view: &ClusterView<'_>) -> ir::PolicyModel {
    let mut model = ir::PolicyModel::default();
    for wep in view.workload_endpoints {
        let endpoint = workload_endpoint(wep);
        if wep.spec.node.as_deref() == Some(view.node) {
            model.endpoints.push(endpoint);
        } else {
            model.remote_endpoints.push(endpoint);
        }
    }
    model.host_endpoints = view
        .host_endpoints
        .iter()
        .filter(|h| h.spec.node == view.node)
        .filter_map(host_endpoint)
        .collect();
    for np in view.network_policies {
        let ns = np.metadata.namespace.as_deref().unwrap_or("default");
        let spec = &np.spec;
        let selector = and(parse(&spec.selector), namespace_is(ns));
        model.policies.push(policy(
            format!("{ns}/{}", np.metadata.name),
            spec.order,
            selector,
            &spec.types,
            &spec.ingress,
            &spec.egress,
            Some(ns),
        ));
    }
    for gnp in view.global_network_policies {
        let spec = &gnp.spec;
        let mut selector = parse(&spec.selector);
        if !spec.namespace_selector.is_empty() {
            selector = and(selector, namespace_selector(&spec.namespace_selector));
        }
        model.policies.push(policy(
            gnp.metadata.name.clone(),
            spec.order,
            selector,
            &spec.types,
            &spec.ingress,
            &spec.egress,
            None,
        ));
    }
    model.profiles = view.profiles.iter().map(profile).collect();
    model.pools = view
        .pools
        .iter()
        .filter_map(|p| {
            Some(ir::Pool {
                cidr: p.spec.cidr.parse().ok()?,
                nat_outgoing: p.spec.nat_outgoing,
            })
        })
        .collect();
    model
}

/// A workload endpoint's labels as selectors see them: its own, and the
/// ones Calico adds (its namespace and orchestrator). Also what a BGPPeer's
/// `localWorkloadSelector` matches.
pub fn workload_labels(
    wep: &Object<WorkloadEndpointSpec>,
) -> std::collections::BTreeMap<String, String> {
    let mut labels = wep.metadata.labels.clone();
    if let Some(ns) = &wep.metadata.namespace {
        labels.insert(NAMESPACE_LABEL.to_string(), ns.clone());
    }
    if let Some(orch) = &wep.spec.orchestrator {
        labels.insert(ORCHESTRATOR_LABEL.to_string(), orch.clone());
    }
    labels
}

fn workload_endpoint(wep: &Object<WorkloadEndpointSpec>) -> ir::WorkloadEndpoint {
    let labels = workload_labels(wep);
    ir::WorkloadEndpoint {
        name: format!(
            "{}/{}",
            wep.metadata.namespace.as_deref().unwrap_or(""),
            wep.metadata.name
        ),
        interface: wep.spec.interface_name.clone().unwrap_or_default(),
        addrs: nets(&wep.spec.ip_networks),
        labels,
        profiles: wep.spec.profiles.clone(),
    }
}

fn host_endpoint(hep: &Object<HostEndpointSpec>) -> Option<ir::HostEndpoint> {
    // `*` (all interfaces) needs a different layout; not supported yet.
    let interface = hep.spec.interface_name.clone().filter(|i| i != "*")?;
    Some(ir::HostEndpoint {
        name: hep.metadata.name.clone(),
        interface,
        addrs: hep
            .spec
            .expected_ips
            .iter()
            .filter_map(|ip| ip.parse::<std::net::IpAddr>().ok().map(IpNet::from))
            .collect(),
        labels: hep.metadata.labels.clone(),
        profiles: hep.spec.profiles.clone(),
    })
}

fn profile(p: &Profile) -> ir::Profile {
    ir::Profile {
        name: p.metadata.name.clone(),
        ingress: rules(&p.spec.ingress, None, &p.metadata.name),
        egress: rules(&p.spec.egress, None, &p.metadata.name),
        labels_to_apply: p.spec.labels_to_apply.clone(),
    }
}

fn policy(
    name: String,
    order: Option<f64>,
    selector: Selector,
    types: &[PolicyType],
    ingress: &[mp::Rule],
    egress: &[mp::Rule],
    namespace: Option<&str>,
) -> ir::Policy {
    let types = if types.is_empty() {
        default_types(ingress, egress)
    } else {
        types.to_vec()
    };
    let direction = |t: PolicyType, list: &[mp::Rule]| {
        types.contains(&t).then(|| rules(list, namespace, &name))
    };
    ir::Policy {
        ingress: direction(PolicyType::Ingress, ingress),
        egress: direction(PolicyType::Egress, egress),
        name,
        order,
        selector,
    }
}

fn rules(list: &[mp::Rule], namespace: Option<&str>, owner: &str) -> Vec<ir::Rule> {
    list.iter()
        .enumerate()
        .filter_map(|(i, r)| match rule(r, namespace) {
            Ok(rule) => Some(rule),
            Err(why) => {
                tracing::warn!(policy = owner, rule = i, "rule not programmed: {why}");
                None
            }
        })
        .collect()
}

fn rule(r: &mp::Rule, namespace: Option<&str>) -> Result<ir::Rule, String> {
    if r.http.is_some() {
        return Err("http matches need an L7 proxy".into());
    }
    let action = match r.action.unwrap_or(mp::Action::Allow) {
        mp::Action::Allow => ir::Action::Allow,
        mp::Action::Deny => ir::Action::Deny,
        mp::Action::Log => ir::Action::Log,
        mp::Action::Pass => ir::Action::Pass,
    };
    Ok(ir::Rule {
        action,
        ip_version: r.ip_version.and_then(|v| u8::try_from(v).ok()),
        protocol: r.protocol.as_ref().map(protocol).transpose()?,
        not_protocol: r.not_protocol.as_ref().map(protocol).transpose()?,
        icmp: r.icmp.as_ref().and_then(icmp),
        not_icmp: r.not_icmp.as_ref().and_then(icmp),
        source: entity(&r.source, namespace)?,
        destination: entity(&r.destination, namespace)?,
    })
}

fn protocol(p: &ModelProtocol) -> Result<ir::Protocol, String> {
    p.number()
        .and_then(|n| ir::Protocol::parse(&n.to_string()))
        .ok_or_else(|| format!("unknown protocol {p:?}"))
}

fn icmp(f: &mp::IcmpFields) -> Option<ir::Icmp> {
    Some(ir::Icmp {
        icmp_type: u8::try_from(f.icmp_type?).ok()?,
        code: f.code.and_then(|c| u8::try_from(c).ok()),
    })
}

fn entity(e: &mp::EntityRule, namespace: Option<&str>) -> Result<ir::EntityMatch, String> {
    if e.services.is_some() {
        return Err("services matches are not supported".into());
    }
    if e.service_accounts.is_some() {
        return Err("serviceAccounts matches are not supported".into());
    }
    let scope = |selector: Selector| -> Selector {
        if !e.namespace_selector.is_empty() {
            and(selector, namespace_selector(&e.namespace_selector))
        } else if let Some(ns) = namespace {
            and(selector, namespace_is(ns))
        } else {
            selector
        }
    };
    // A namespaced rule's selector (or namespaceSelector alone) names
    // endpoints; with neither, the rule matches any address.
    let selector = if !e.selector.is_empty() || !e.namespace_selector.is_empty() {
        Some(scope(parse(&e.selector)))
    } else {
        None
    };
    let not_selector = (!e.not_selector.is_empty()).then(|| scope(parse(&e.not_selector)));
    Ok(ir::EntityMatch {
        nets: nets(&e.nets),
        not_nets: nets(&e.not_nets),
        selector,
        not_selector,
        network: None,
        ports: ports(&e.ports)?,
        not_ports: ports(&e.not_ports)?,
    })
}

fn ports(list: &[Port]) -> Result<Vec<ir::PortRange>, String> {
    list.iter()
        .map(|p| {
            let (first, last) = match p {
                Port::Number(n) => (*n, *n),
                Port::Range(a, b) => (*a, *b),
                Port::Named(name) => return Err(format!("named port {name:?} is not supported")),
            };
            let first = u16::try_from(first).map_err(|_| format!("bad port {first}"))?;
            let last = u16::try_from(last).map_err(|_| format!("bad port {last}"))?;
            Ok(ir::PortRange { first, last })
        })
        .collect()
}

fn nets(list: &[String]) -> Vec<IpNet> {
    list.iter()
        .filter_map(|n| {
            n.parse::<IpNet>()
                .or_else(|_| n.parse::<std::net::IpAddr>().map(IpNet::from))
                .ok()
        })
        .collect()
}

/// Parses a selector the model already validated; an empty one is `all()`.
fn parse(text: &str) -> Selector {
    Selector::parse(text).unwrap_or_else(|e| {
        // Validation rejects these before they are stored; match nothing
        // rather than everything if one slips through.
        tracing::warn!("invalid selector {text:?} ignored: {e}");
        Selector::from_expr(Expr::Not(Box::new(Expr::All)))
    })
}

fn namespace_is(ns: &str) -> Selector {
    Selector::from_expr(Expr::Eq(NAMESPACE_LABEL.to_string(), ns.to_string()))
}

fn and(a: Selector, b: Selector) -> Selector {
    match (a.is_all(), b.is_all()) {
        (true, _) => b,
        (_, true) => a,
        _ => Selector::from_expr(Expr::And(vec![a.expr().clone(), b.expr().clone()])),
    }
}

/// A `namespaceSelector` rewritten to match endpoints: namespace labels
/// become `pcns.` labels; `all()` means "any namespaced endpoint" and
/// `global()` "not namespaced".
pub fn namespace_selector(text: &str) -> Selector {
    fn rewrite(e: &Expr) -> Expr {
        let key = |k: &str| format!("{NAMESPACE_LABEL_PREFIX}{k}");
        match e {
            Expr::All => Expr::Has(NAMESPACE_LABEL.to_string()),
            Expr::Global => Expr::Not(Box::new(Expr::Has(NAMESPACE_LABEL.to_string()))),
            Expr::Has(k) => Expr::Has(key(k)),
            Expr::Eq(k, v) => Expr::Eq(key(k), v.clone()),
            Expr::Ne(k, v) => Expr::Ne(key(k), v.clone()),
            Expr::Contains(k, v) => Expr::Contains(key(k), v.clone()),
            Expr::StartsWith(k, v) => Expr::StartsWith(key(k), v.clone()),
            Expr::EndsWith(k, v) => Expr::EndsWith(key(k), v.clone()),
            Expr::In(k, v) => Expr::In(key(k), v.clone()),
            Expr::NotIn(k, v) => Expr::NotIn(key(k), v.clone()),
            Expr::Not(inner) => Expr::Not(Box::new(rewrite(inner))),
            Expr::And(v) => Expr::And(v.iter().map(rewrite).collect()),
            Expr::Or(v) => Expr::Or(v.iter().map(rewrite).collect()),
        }
    }
    Selector::from_expr(rewrite(parse(text).expr()))
}
