//! What Brindle stores but does not act on yet, field by field.
//!
//! No configuration is accepted silently and ignored: `brindlectl
//! apply|create|replace` prints one warning per field listed here
//! (`warning: BGPPeer 'x': spec.ttlSecurity is accepted but not
//! implemented`) and `--strict` refuses the input instead. A field is
//! listed only when its value asks for something Brindle does not do: a
//! value that is what Brindle already does (`nextHopMode: Auto`,
//! `sourceAddress: UseNodeIP`, `logSeverityScreen: Info`) is not. The list
//! shrinks as features land; a field leaves it in the change that makes it
//! work.
//!
//! Rules that the policy compiler drops at run time (L7 `http`, `services`,
//! `serviceAccounts`, named ports) are listed too: the node logs each rule
//! it does not program, but the user learns it at apply time.

use crate::bgp::{BGPConfigurationSpec, BGPPeerSpec, GatewayMode, ReversePeering};
use crate::endpoint::{HostEndpointSpec, NodeSpec, WorkloadEndpointSpec};
use crate::ipam::IPPoolSpec;
use crate::meta::Port;
use crate::policy::{EntityRule, Rule};
use crate::resource::Resource;

/// Why a BGPFilter's `priority` and `setPriority` are refused.
const NO_ROUTE_PRIORITIES: &str =
    "route priorities are not supported: Brindle installs routes with \
the kernel's default metric and does not carry Calico's priorities in LOCAL_PREF; a rule \
without them would change what the filter lets through";

impl Resource {
    /// Fields Brindle refuses at apply (`brindlectl` writes nothing), each
    /// as `path: reason`: set, they would change what the resource means
    /// in a way Brindle cannot follow, so storing them with a warning
    /// would mislead.
    pub fn refused_fields(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Resource::BGPFilter(f) = self {
            let s = &f.spec;
            for (rules, field) in [
                (&s.export_v4, "spec.exportV4"),
                (&s.import_v4, "spec.importV4"),
                (&s.export_v6, "spec.exportV6"),
                (&s.import_v6, "spec.importV6"),
            ] {
                for (i, rule) in rules.iter().enumerate() {
                    if rule.priority.is_some() {
                        out.push(format!("{field}[{i}].priority: {NO_ROUTE_PRIORITIES}"));
                    }
                    for (j, op) in rule.operations.iter().enumerate() {
                        if op.set_priority.is_some() {
                            out.push(format!(
                                "{field}[{i}].operations[{j}].setPriority: {NO_ROUTE_PRIORITIES}"
                            ));
                        }
                    }
                }
            }
        }
        out
    }

    /// The fields set in this resource that nothing in Brindle acts on, as
    /// paths a user recognises (`spec.ttlSecurity`,
    /// `spec.ingress[0].http`), some with the value that is not
    /// implemented (`spec.nextHopMode: Keep`).
    pub fn unimplemented_fields(&self) -> Vec<String> {
        let mut out = Vec::new();
        match self {
            Resource::BGPPeer(p) => bgp_peer(&p.spec, &mut out),
            Resource::BGPConfiguration(c) => bgp_configuration(&c.metadata.name, &c.spec, &mut out),
            // Every BGPFilter field is acted on, but `priority` and
            // `setPriority`, which are refused (`refused_fields`).
            Resource::BGPFilter(_) => {}
            Resource::IPPool(p) => ip_pool(&p.spec, &mut out),
            Resource::Node(n) => node(&n.spec, &mut out),
            Resource::WorkloadEndpoint(w) => workload_endpoint(&w.spec, &mut out),
            Resource::HostEndpoint(h) => host_endpoint(&h.spec, &mut out),
            Resource::NetworkPolicy(p) => {
                let s = &p.spec;
                policy_common(
                    s.tier.as_deref(),
                    &s.service_account_selector,
                    &s.performance_hints,
                    &mut out,
                );
                rules(&s.ingress, &s.egress, &mut out);
            }
            Resource::GlobalNetworkPolicy(p) => {
                let s = &p.spec;
                policy_common(
                    s.tier.as_deref(),
                    &s.service_account_selector,
                    &s.performance_hints,
                    &mut out,
                );
                for (set, field) in [
                    (s.do_not_track, "spec.doNotTrack"),
                    (s.pre_dnat, "spec.preDNAT"),
                    (s.apply_on_forward, "spec.applyOnForward"),
                ] {
                    if set {
                        out.push(field.to_owned());
                    }
                }
                rules(&s.ingress, &s.egress, &mut out);
            }
            Resource::Profile(p) => rules(&p.spec.ingress, &p.spec.egress, &mut out),
            Resource::IPAMConfiguration(_) | Resource::BFDConfiguration(_) => {}
        }
        out
    }
}

/// The fields marked set, each as `prefix` + its name.
fn push_set(out: &mut Vec<String>, prefix: &str, fields: &[(bool, &str)]) {
    out.extend(
        fields
            .iter()
            .filter(|(set, _)| *set)
            .map(|(_, name)| format!("{prefix}{name}")),
    );
}

fn bgp_peer(s: &BGPPeerSpec, out: &mut Vec<String>) {
    // keepOriginalNextHop and nextHopMode are acted on.
    // restartMode (GracefulRestart and LongLivedGracefulRestart) is acted
    // on.
    // birdGatewayMode is acted on: DirectIfDirectlyConnected is BIRD's
    // `gateway direct` for a directly connected peer; Recursive, the
    // default, resolves an off-link next hop through the kernel's routes.
    let _: (Option<GatewayMode>, &mut Vec<String>) = (s.bird_gateway_mode, out);
    // reachableBy is acted on (a static route to the peer), and so is
    // localWorkloadSelector (passive sessions to the selected local
    // workloads).
    // reversePeering (Auto and Manual) is acted on.
    let _: Option<ReversePeering> = s.reverse_peering;
}

fn bgp_configuration(name: &str, s: &BGPConfigurationSpec, out: &mut Vec<String>) {
    // Acted on, in `default` and in a node's own `node.<name>`:
    // logSeverityScreen, listenPort, bindMode, communities,
    // prefixAdvertisements; in `default`: the service address lists.
    // ignoredInterfaces holds by construction: Brindle announces no
    // interface addresses and learns no kernel routes. In `default`:
    // localWorkloadPeeringIPV4/6, put on the interfaces of workloads a
    // localWorkloadSelector selects. (The global-only fields are refused
    // in `node.<name>` by validation.)
    let _ = (name, s, out);
}

fn ip_pool(s: &IPPoolSpec, out: &mut Vec<String>) {
    if s.namespace_selector
        .as_deref()
        .is_some_and(|n| !n.is_empty())
    {
        out.push("spec.namespaceSelector".into());
    }
}

fn node(s: &NodeSpec, out: &mut Vec<String>) {
    if !s.orch_refs.is_empty() {
        out.push("spec.orchRefs".into());
    }
    if s.wireguard.is_some() {
        out.push("spec.wireguard".into());
    }
    if !s.addresses.is_empty() {
        out.push("spec.addresses".into());
    }
    if s.bgp
        .as_ref()
        .is_some_and(|b| b.ipv4_ipip_tunnel_addr.is_some())
    {
        out.push("spec.bgp.ipv4IPIPTunnelAddr".into());
    }
}

fn workload_endpoint(s: &WorkloadEndpointSpec, out: &mut Vec<String>) {
    let fields = [
        (s.service_account_name.is_some(), "spec.serviceAccountName"),
        (!s.ip_nats.is_empty(), "spec.ipNATs"),
        (s.ipv4_gateway.is_some(), "spec.ipv4Gateway"),
        (s.ipv6_gateway.is_some(), "spec.ipv6Gateway"),
        (s.mac.is_some(), "spec.mac"),
        (!s.ports.is_empty(), "spec.ports"),
        (
            !s.allow_spoofed_source_prefixes.is_empty(),
            "spec.allowSpoofedSourcePrefixes",
        ),
    ];
    push_set(out, "", &fields);
}

fn host_endpoint(s: &HostEndpointSpec, out: &mut Vec<String>) {
    match s.interface_name.as_deref() {
        Some("*") => out.push("spec.interfaceName: \"*\"".into()),
        // Only expectedIPs: an endpoint without an interface is skipped.
        None => out.push("spec.expectedIPs without spec.interfaceName".into()),
        Some(_) => {}
    }
    if !s.ports.is_empty() {
        out.push("spec.ports".into());
    }
}

fn policy_common(
    tier: Option<&str>,
    service_account_selector: &str,
    performance_hints: &[String],
    out: &mut Vec<String>,
) {
    if let Some(tier) = tier.filter(|t| *t != "default") {
        out.push(format!("spec.tier: {tier}"));
    }
    if !service_account_selector.is_empty() {
        out.push("spec.serviceAccountSelector".into());
    }
    if !performance_hints.is_empty() {
        out.push("spec.performanceHints".into());
    }
}

fn rules(ingress: &[Rule], egress: &[Rule], out: &mut Vec<String>) {
    for (direction, list) in [("ingress", ingress), ("egress", egress)] {
        for (i, rule) in list.iter().enumerate() {
            let at = format!("spec.{direction}[{i}]");
            if rule.http.is_some() {
                out.push(format!("{at}.http"));
            }
            for (side, entity) in [("source", &rule.source), ("destination", &rule.destination)] {
                entity_rule(&format!("{at}.{side}"), entity, out);
            }
        }
    }
}

fn entity_rule(at: &str, e: &EntityRule, out: &mut Vec<String>) {
    if e.services.is_some() {
        out.push(format!("{at}.services"));
    }
    if e.service_accounts.is_some() {
        out.push(format!("{at}.serviceAccounts"));
    }
    for (ports, field) in [(&e.ports, "ports"), (&e.not_ports, "notPorts")] {
        if ports.iter().any(|p| matches!(p, Port::Named(_))) {
            out.push(format!("{at}.{field} (named ports)"));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::document::parse_documents;

    fn fields(yaml: &str) -> Vec<String> {
        let resources = parse_documents(yaml).unwrap();
        assert_eq!(resources.len(), 1);
        resources[0].unimplemented_fields()
    }

    #[test]
    fn a_peer_lists_nothing_every_field_is_acted_on() {
        let all = fields(
            "apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: tor}
spec:
  peerIP: 10.0.0.1
  asNumber: 65001
  password: {secretKeyRef: {name: tor, key: password}}
  keepaliveTime: 10s
  nextHopMode: Keep
  ttlSecurity: 1
  filters: [f]
  sourceAddress: UseNodeIP
  restartMode: LongLivedGracefulRestart
  birdGatewayMode: Recursive
",
        );
        assert!(all.is_empty(), "{all:?}");
    }

    #[test]
    fn a_filter_refuses_route_priorities_and_lists_nothing() {
        let resources = parse_documents(
            "apiVersion: projectcalico.org/v3
kind: BGPFilter
metadata: {name: f}
spec:
  exportV4:
  - action: Accept
    communities: {values: ['65000:1']}
    asPathPrefix: [65000]
    interface: eth*
    operations:
    - addCommunity: {value: '65000:2'}
    - prependASPath: {prefix: [65001]}
    - setPriority: {value: 512}
  importV4:
  - action: Reject
    priority: 100
",
        )
        .unwrap();
        let filter = &resources[0];
        assert!(filter.unimplemented_fields().is_empty());
        let refused: Vec<String> = filter
            .refused_fields()
            .into_iter()
            .map(|f| f.split(':').next().unwrap().to_owned())
            .collect();
        assert_eq!(
            refused,
            [
                "spec.exportV4[0].operations[2].setPriority",
                "spec.importV4[0].priority",
            ]
        );
    }

    #[test]
    fn defaults_and_what_brindle_does_are_not_listed() {
        let none = fields(
            "apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec:
  nodeToNodeMeshEnabled: true
  asNumber: 64512
  nodeMeshPassword: {secretKeyRef: {name: mesh, key: pw}}
  nodeMeshMaxRestartTime: 2m
  bindMode: None
  logSeverityScreen: Debug
",
        );
        assert!(none.is_empty(), "{none:?}");
        let per_node = fields(
            "apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: node.a}
spec:
  listenPort: 1179
  logSeverityScreen: Debug
",
        );
        assert!(per_node.is_empty(), "{per_node:?}");
    }

    #[test]
    fn policy_rules_name_their_place() {
        let got = fields(
            "apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: p}
spec:
  doNotTrack: true
  applyOnForward: true
  selector: all()
  ingress:
  - action: Allow
  - action: Allow
    protocol: TCP
    destination: {ports: [http]}
",
        );
        assert_eq!(
            got,
            [
                "spec.doNotTrack",
                "spec.applyOnForward",
                "spec.ingress[1].destination.ports (named ports)"
            ]
        );
    }
}
