//! The compiler: [`PolicyModel`] in, one [`Ruleset`] per IP family out.
//!
//! Pure and infallible: the model is already validated, so every input
//! compiles. The layout follows Felix's, with one difference that keeps the
//! rule count independent of the number of endpoints: which endpoint a packet
//! belongs to is decided by ipsets, not by per-endpoint chains.
//!
//! ```text
//! FORWARD ─► brindle-FORWARD ─┬─ -i cali+ ─► brindle-from-wl   (egress of the sender)
//!                             ├─ -o cali+ ─► brindle-to-wl     (ingress of the receiver)
//!                             └─ ACCEPT what both allowed
//! brindle-from-wl / brindle-to-wl:
//!   established ─► ACCEPT; invalid ─► DROP; clear marks
//!   (address, interface) not a known endpoint (wl-addrs set) ─► DROP   (anti-spoofing)
//!   from-wl only: ipip / VXLAN sent by a workload ─► DROP
//!   for each policy, in order, selecting a local endpoint:
//!       endpoint in the policy's selector set ─► brindle-po-<policy> / brindle-pi-<policy>
//!       accept mark ─► RETURN (allowed)
//!   endpoint selected by any policy and no Pass ─► DROP        (end of tier)
//!   for each profile (network) with a local member:
//!       endpoint in the network set ─► brindle-pro-<net> / brindle-pri-<net>
//!       accept mark ─► RETURN
//!   DROP
//! INPUT  ─► brindle-INPUT:  IPv6 neighbour/router discovery from workloads accepted,
//!                           workloads to host (egress policy, then the configured action),
//!                           failsafe ports, host endpoints' ingress chains
//! OUTPUT ─► brindle-OUTPUT: host to workloads allowed, failsafe ports, host endpoints' egress
//! nat POSTROUTING ─► brindle-POSTROUTING: natOutgoing pools masqueraded
//! ```
//!
//! A membership change (an endpoint added, removed or relabelled) changes
//! only ipset members; chains change only when policies, profiles or the
//! set of policies that select some local endpoint change.
//!
//! [`Config`] and the failsafe port parser live in the `config` submodule,
//! the preparation both families share in `prepared`.

mod config;
mod prepared;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use brindle_model::selector::Selector;
use ipnet::IpNet;

pub use self::config::{parse_failsafe_ports, Config, EndpointToHost, FailsafeError};
use self::prepared::{Member, Prepared};
use crate::index::SelectorIndex;
use crate::ir::{
    Action, EntityMatch, HostEndpoint, Icmp, Policy, PolicyModel, Pool, PortRange, Profile,
    Protocol, Rule,
};
use crate::names;
use crate::render::ipset_member;
pub use crate::ruleset::{Chains, Family, IpSet, Ruleset, SetKind, HOOKS};

/// Compiles the model for both families.
pub fn compile(model: &PolicyModel, config: &Config) -> [Ruleset; 2] {
    compile_with(model, config, &mut SelectorIndex::default())
}

/// [`compile`], reusing and updating `index` so only what changed since the
/// previous compile is evaluated. The output is the same as [`compile`]'s.
pub fn compile_with(
    model: &PolicyModel,
    config: &Config,
    index: &mut SelectorIndex,
) -> [Ruleset; 2] {
    let prepared = Prepared::new(model);
    prepared.refresh(index);
    let rulesets = Family::ALL.map(|family| {
        let compiler = Compiler::new(&prepared, config, family, std::mem::take(index));
        let (ruleset, used) = compiler.run();
        *index = used;
        ruleset
    });
    index.prune();
    rulesets
}

/// Compiles the model for one family.
pub fn compile_family(model: &PolicyModel, config: &Config, family: Family) -> Ruleset {
    let prepared = Prepared::new(model);
    let mut index = SelectorIndex::default();
    prepared.refresh(&mut index);
    Compiler::new(&prepared, config, family, index).run().0
}

struct Compiler<'m> {
    config: &'m Config,
    family: Family,
    members: Vec<Member<'m>>,
    host_endpoints: Vec<(&'m HostEndpoint, BTreeMap<String, String>)>,
    index: SelectorIndex,
    /// Member key → position in `members`.
    positions: HashMap<&'m str, usize>,
    policies: Vec<&'m Policy>,
    pools: &'m [Pool],
    profiles: &'m BTreeMap<String, Profile>,
    filter: Chains,
    ipsets: BTreeMap<String, IpSet>,
}

impl<'m> Compiler<'m> {
    fn new(
        prepared: &'m Prepared<'m>,
        config: &'m Config,
        family: Family,
        index: SelectorIndex,
    ) -> Self {
        let model = prepared.model;
        let family_addrs = |addrs: &[IpNet]| -> Vec<String> {
            addrs
                .iter()
                .filter(|a| family.contains(a))
                .map(|a| ipset_member(&a.trunc().to_string()))
                .collect()
        };
        let local = model.endpoints.iter().map(|e| (e, true));
        let remote = model.remote_endpoints.iter().map(|e| (e, false));
        let members: Vec<Member<'m>> = local
            .chain(remote)
            .zip(&prepared.endpoint_labels)
            .map(|((e, local), (key, labels))| Member {
                key: key.as_str(),
                labels: labels.as_ref(),
                addrs: family_addrs(&e.addrs),
                profiles: &e.profiles,
                interface: &e.interface,
                local,
            })
            .collect();
        let host_endpoints = model
            .host_endpoints
            .iter()
            .zip(&prepared.host_labels)
            .map(|(h, (_, labels))| (h, labels.clone()))
            .collect();
        let positions = members
            .iter()
            .enumerate()
            .map(|(i, m)| (m.key, i))
            .collect();
        Compiler {
            config,
            family,
            members,
            host_endpoints,
            index,
            positions,
            policies: prepared.policies.clone(),
            pools: &model.pools,
            profiles: &prepared.profiles,
            filter: Chains::new(),
            ipsets: BTreeMap::new(),
        }
    }

    fn run(mut self) -> (Ruleset, SelectorIndex) {
        let mut endpoint_set = BTreeSet::new();
        for m in self.members.iter().filter(|m| m.local) {
            for a in &m.addrs {
                endpoint_set.insert(format!("{a},{}", m.interface));
            }
        }
        self.ipsets.insert(
            names::workload_addrs_set(self.family),
            IpSet {
                kind: SetKind::HashNetIface,
                members: endpoint_set,
            },
        );

        self.workload_direction(Direction::FromWorkload);
        self.workload_direction(Direction::ToWorkload);
        self.forward_chain();
        self.host_chains();
        let nat = self.nat_chains();
        let ruleset = Ruleset {
            family: self.family,
            filter: self.filter,
            nat,
            ipsets: self.ipsets,
        };
        (ruleset, self.index)
    }

    /// Keys of the endpoints (workload and host) `selector` matches.
    fn matching(&mut self, selector: &Selector) -> &HashSet<String> {
        let Compiler {
            index,
            members,
            host_endpoints,
            ..
        } = self;
        let heps: Vec<(String, &BTreeMap<String, String>)> = host_endpoints
            .iter()
            .map(|(h, l)| (format!("h:{}", h.name), l))
            .collect();
        index.matching(
            selector,
            members
                .iter()
                .map(|m| (m.key, m.labels))
                .chain(heps.iter().map(|(k, l)| (k.as_str(), *l))),
        )
    }

    /// Whether `selector` matches a local endpoint with an address in this
    /// family (only then do its policies need a jump here).
    fn selects_local_endpoint(&mut self, selector: &Selector) -> bool {
        self.matching(selector);
        let Compiler {
            index,
            positions,
            members,
            ..
        } = self;
        index.known(selector).is_some_and(|keys| {
            keys.iter().any(|k| {
                positions
                    .get(k.as_str())
                    .is_some_and(|&i| members[i].local && !members[i].addrs.is_empty())
            })
        })
    }

    fn marks(&self) -> (String, String, String) {
        let (a, p) = (self.config.accept_mark, self.config.pass_mark);
        (
            format!("{a:#x}/{a:#x}"),
            format!("0x0/{p:#x}"),
            format!("0x0/{:#x}", a | p),
        )
    }

    fn forward_chain(&mut self) {
        let wl = format!("{}+", self.config.workload_interface_prefix);
        let rules = vec![
            format!("-i {wl} -j {}", names::FROM_WORKLOAD_CHAIN),
            format!("-o {wl} -j {}", names::TO_WORKLOAD_CHAIN),
            format!("-i {wl} -j ACCEPT"),
            format!("-o {wl} -j ACCEPT"),
        ];
        self.filter.insert(names::FORWARD_CHAIN.to_string(), rules);
    }

    /// `brindle-from-wl` or `brindle-to-wl`, plus the policy and profile
    /// chains they jump to.
    fn workload_direction(&mut self, dir: Direction) {
        let (accept, no_pass, clear) = self.marks();
        let ends = dir.local_end();
        let mut rules = vec![
            "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT".to_string(),
            "-m conntrack --ctstate INVALID -j DROP".to_string(),
            format!("-j MARK --set-xmark {clear}"),
            format!(
                "-m set ! --match-set {} {ends},{ends} -j DROP",
                names::workload_addrs_set(self.family)
            ),
        ];
        if dir == Direction::FromWorkload {
            if self.family == Family::V4 {
                rules.push("-p ipencap -j DROP".to_string());
            }
            rules.push(format!(
                "-p udp -m udp --dport {} -j DROP",
                self.config.vxlan_port
            ));
        }

        let policies: Vec<&Policy> = self
            .policies
            .iter()
            .copied()
            .filter(|p| dir.rules_of(p).is_some())
            .collect::<Vec<_>>()
            .into_iter()
            .filter(|p| self.selects_local_endpoint(&p.selector))
            .collect();
        let mut selecting_sets = BTreeSet::new();
        for policy in &policies {
            let set = self.selector_set(&policy.selector);
            selecting_sets.insert(set.clone());
            let chain = self.policy_chain(policy, dir);
            rules.push(format!(
                "-m mark --mark {no_pass} -m set --match-set {set} {ends} -j {chain}"
            ));
            rules.push(format!("-m mark --mark {accept} -j RETURN"));
        }
        if !policies.is_empty() {
            // Every address some selecting policy's set holds; borrowed
            // first so an address selected by several policies is copied once.
            let selected: BTreeSet<&String> = selecting_sets
                .iter()
                .flat_map(|set| &self.ipsets[set].members)
                .collect();
            let selected = selected.into_iter().cloned().collect();
            let tier = names::selected_set(self.family, dir.is_ingress());
            self.ipsets.insert(
                tier.clone(),
                IpSet {
                    kind: SetKind::HashNet,
                    members: selected,
                },
            );
            rules.push(format!(
                "-m mark --mark {no_pass} -m set --match-set {tier} {ends} -j DROP"
            ));
        }

        let local_profiles: BTreeSet<String> = self
            .members
            .iter()
            .filter(|m| m.local && !m.addrs.is_empty())
            .flat_map(|m| m.profiles.iter().cloned())
            .collect();
        for name in local_profiles {
            let set = self.network_set(&name);
            let chain = self.profile_chain(&name, dir);
            rules.push(format!("-m set --match-set {set} {ends} -j {chain}"));
            rules.push(format!("-m mark --mark {accept} -j RETURN"));
        }
        rules.push("-j DROP".to_string());
        let chain = if dir.is_ingress() {
            names::TO_WORKLOAD_CHAIN
        } else {
            names::FROM_WORKLOAD_CHAIN
        };
        self.filter.insert(chain.to_string(), rules);
    }

    fn policy_chain(&mut self, policy: &Policy, dir: Direction) -> String {
        let chain = names::policy_chain(&policy.name, dir.is_ingress());
        if !self.filter.contains_key(&chain) {
            let rules = dir.rules_of(policy).unwrap_or(&[]);
            let body = self.render_rules(rules);
            self.filter.insert(chain.clone(), body);
        }
        chain
    }

    fn profile_chain(&mut self, name: &str, dir: Direction) -> String {
        let chain = names::profile_chain(name, dir.is_ingress());
        if !self.filter.contains_key(&chain) {
            let profile = self.profiles[name].clone();
            let rules = if dir.is_ingress() {
                &profile.ingress
            } else {
                &profile.egress
            };
            let body = self.render_rules(rules);
            self.filter.insert(chain.clone(), body);
        }
        chain
    }

    fn host_chains(&mut self) {
        let (accept, no_pass, clear) = self.marks();
        let wl = format!("{}+", self.config.workload_interface_prefix);
        let mut input = Vec::new();
        if self.family == Family::V6 {
            // Neighbour and router discovery (and MLD) from a workload to its
            // host, sent from link-local addresses the anti-spoofing set
            // does not hold: without them no IPv6 workload resolves its
            // gateway. Felix accepts the same types; 134 (router
            // advertisement) stays out: workloads do not advertise routes.
            for icmp_type in [130, 131, 132, 133, 135, 136] {
                input.push(format!(
                    "-i {wl} -p ipv6-icmp -m icmp6 --icmpv6-type {icmp_type} -j ACCEPT"
                ));
            }
        }
        input.push(format!("-i {wl} -j {}", names::FROM_WORKLOAD_CHAIN));
        input.push(match self.config.endpoint_to_host {
            EndpointToHost::Drop => format!("-i {wl} -j DROP"),
            EndpointToHost::Accept => format!("-i {wl} -j ACCEPT"),
            EndpointToHost::Return => format!("-i {wl} -j RETURN"),
        });
        let mut output = vec![format!("-o {wl} -j RETURN")];

        let heps: Vec<(HostEndpoint, BTreeMap<String, String>)> = self
            .host_endpoints
            .iter()
            .map(|(h, l)| ((*h).clone(), l.clone()))
            .collect();
        if !heps.is_empty() {
            for (proto, port) in &self.config.failsafe_inbound {
                input.push(format!("-p {proto} -m {proto} --dport {port} -j ACCEPT"));
            }
            for (proto, port) in &self.config.failsafe_outbound {
                output.push(format!("-p {proto} -m {proto} --dport {port} -j ACCEPT"));
            }
        }
        for (hep, labels) in &heps {
            for dir in [Direction::ToHost, Direction::FromHost] {
                let chain = names::host_endpoint_chain(&hep.interface, dir.is_ingress());
                let mut rules = vec![
                    "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT".to_string(),
                    "-m conntrack --ctstate INVALID -j DROP".to_string(),
                    format!("-j MARK --set-xmark {clear}"),
                ];
                let selecting: Vec<&Policy> = self
                    .policies
                    .iter()
                    .copied()
                    .filter(|p| dir.rules_of(p).is_some() && p.selector.matches(labels))
                    .collect();
                for policy in &selecting {
                    let target = self.policy_chain(policy, dir);
                    rules.push(format!("-m mark --mark {no_pass} -j {target}"));
                    rules.push(format!("-m mark --mark {accept} -j RETURN"));
                }
                if !selecting.is_empty() {
                    rules.push(format!("-m mark --mark {no_pass} -j DROP"));
                }
                for name in &hep.profiles {
                    let target = self.profile_chain(name, dir);
                    rules.push(format!("-j {target}"));
                    rules.push(format!("-m mark --mark {accept} -j RETURN"));
                }
                rules.push("-j DROP".to_string());
                self.filter.insert(chain.clone(), rules);
                let (list, flag) = if dir.is_ingress() {
                    (&mut input, "-i")
                } else {
                    (&mut output, "-o")
                };
                list.push(format!("{flag} {} -j {chain}", hep.interface));
                list.push(format!("{flag} {} -j ACCEPT", hep.interface));
            }
        }
        self.filter.insert(names::INPUT_CHAIN.to_string(), input);
        self.filter.insert(names::OUTPUT_CHAIN.to_string(), output);
    }

    fn nat_chains(&mut self) -> Chains {
        let mut all = BTreeSet::new();
        let mut masq = BTreeSet::new();
        // The model holds pools of both families; keep ours.
        for (cidr, nat) in self.pool_cidrs() {
            all.insert(cidr.clone());
            if nat {
                masq.insert(cidr);
            }
        }
        let mut rules = Vec::new();
        if !masq.is_empty() {
            let (masq_set, all_set) = names::nat_sets(self.family);
            rules.push(format!(
                "-m set --match-set {masq_set} src -m set ! --match-set {all_set} dst -j MASQUERADE --random-fully"
            ));
            let sets = [(masq_set, masq), (all_set, all)];
            for (name, members) in sets {
                let kind = SetKind::HashNet;
                self.ipsets.insert(name, IpSet { kind, members });
            }
        }
        Chains::from([(names::POSTROUTING_CHAIN.to_string(), rules)])
    }

    fn pool_cidrs(&self) -> Vec<(String, bool)> {
        self.pools
            .iter()
            .filter(|p| self.family.contains(&p.cidr))
            .map(|p| (ipset_member(&p.cidr.trunc().to_string()), p.nat_outgoing))
            .collect()
    }

    /// The ipset of every endpoint address matching `selector`.
    fn selector_set(&mut self, selector: &Selector) -> String {
        let name = names::selector_set_named(self.family, self.index.unique_id(selector));
        if !self.ipsets.contains_key(&name) {
            let keys = self.matching(selector).clone();
            let mut members: BTreeSet<String> = BTreeSet::new();
            for key in &keys {
                if let Some(&i) = self.positions.get(key.as_str()) {
                    members.extend(self.members[i].addrs.iter().cloned());
                }
            }
            for (hep, _) in &self.host_endpoints {
                if keys.contains(&format!("h:{}", hep.name)) {
                    let addrs = hep.addrs.iter().filter(|a| self.family.contains(a));
                    members.extend(addrs.map(|a| ipset_member(&a.trunc().to_string())));
                }
            }
            let kind = SetKind::HashNet;
            self.ipsets.insert(name.clone(), IpSet { kind, members });
        }
        name
    }

    /// The ipset of every endpoint address in network `network`.
    fn network_set(&mut self, network: &str) -> String {
        let name = names::network_set(self.family, network);
        if !self.ipsets.contains_key(&name) {
            let members = self
                .members
                .iter()
                .filter(|m| m.profiles.iter().any(|p| p == network))
                .flat_map(|m| m.addrs.iter().cloned())
                .collect();
            let kind = SetKind::HashNet;
            self.ipsets.insert(name.clone(), IpSet { kind, members });
        }
        name
    }

    /// An ipset holding CIDRs (used when a rule lists more than one).
    fn cidr_set(&mut self, nets: &[String]) -> String {
        let name = names::cidr_set(self.family, nets);
        let members = nets.iter().map(|n| ipset_member(n)).collect();
        let kind = SetKind::HashNet;
        self.ipsets.insert(name.clone(), IpSet { kind, members });
        name
    }

    fn render_rules(&mut self, rules: &[Rule]) -> Vec<String> {
        let (accept, _, _) = self.marks();
        let pass = {
            let p = self.config.pass_mark;
            format!("{p:#x}/{p:#x}")
        };
        let mut out = Vec::new();
        for rule in rules {
            let Some(alternatives) = self.rule_matches(rule) else {
                continue;
            };
            let (target, then) = match rule.action {
                Action::Allow => (
                    format!("-j MARK --set-xmark {accept}"),
                    Some(format!("-m mark --mark {accept} -j RETURN")),
                ),
                Action::Pass => (
                    format!("-j MARK --set-xmark {pass}"),
                    Some(format!("-m mark --mark {pass} -j RETURN")),
                ),
                Action::Deny => ("-j DROP".to_string(), None),
                Action::Log => (
                    "-j LOG --log-prefix \"brindle-packet: \" --log-level 5".to_string(),
                    None,
                ),
            };
            for matches in alternatives {
                let sep = if matches.is_empty() { "" } else { " " };
                out.push(format!("{matches}{sep}{target}"));
            }
            out.extend(then);
        }
        out
    }

    /// The match part of a rule, as alternatives (more than one when ports
    /// do not fit one `multiport` match). `None` when the rule cannot match
    /// in this family.
    fn rule_matches(&mut self, rule: &Rule) -> Option<Vec<String>> {
        let family = self.family;
        if rule.ip_version.is_some_and(|v| v != family.version()) {
            return None;
        }
        let protocol = match (rule.protocol, rule.not_protocol) {
            (Some(p), Some(n)) if p == n => return None,
            (p, _) => p,
        };
        let wrong_icmp = |p: Protocol| {
            matches!(
                (family, p),
                (Family::V4, Protocol::IcmpV6) | (Family::V6, Protocol::Icmp)
            )
        };
        if protocol.is_some_and(wrong_icmp) {
            return None;
        }
        // iptables can only match ports under a port-carrying protocol; the
        // model's validation rejects such rules, so never emit them.
        let has_ports = [&rule.source, &rule.destination]
            .iter()
            .any(|e| !e.ports.is_empty() || !e.not_ports.is_empty());
        if has_ports && !protocol.is_some_and(Protocol::has_ports) {
            return None;
        }
        let family_icmp = match family {
            Family::V4 => Protocol::Icmp,
            Family::V6 => Protocol::IcmpV6,
        };
        let has_icmp = rule.icmp.is_some() || rule.not_icmp.is_some();
        if has_icmp && protocol != Some(family_icmp) {
            return None;
        }
        let mut parts = Vec::new();
        match (protocol, rule.not_protocol) {
            (Some(p), _) => parts.push(format!("-p {p}")),
            (None, Some(n)) => parts.push(format!("! -p {n}")),
            (None, None) => {}
        }
        let icmp_match = |icmp: &Icmp, negate: bool| {
            let (module, flag) = match family {
                Family::V4 => ("icmp", "--icmp-type"),
                Family::V6 => ("icmp6", "--icmpv6-type"),
            };
            let not = if negate { "! " } else { "" };
            let value = match icmp.code {
                Some(code) => format!("{}/{code}", icmp.icmp_type),
                None => icmp.icmp_type.to_string(),
            };
            format!("-m {module} {not}{flag} {value}")
        };
        if let Some(icmp) = &rule.icmp {
            parts.push(icmp_match(icmp, false));
        }
        if let Some(icmp) = &rule.not_icmp {
            parts.push(icmp_match(icmp, true));
        }
        for (entity, dir) in [(&rule.source, "src"), (&rule.destination, "dst")] {
            parts.extend(self.entity_matches(entity, dir)?);
        }

        let port_chunks = |ports: &[PortRange]| -> Vec<String> {
            let mut chunks: Vec<String> = Vec::new();
            let mut current: Vec<String> = Vec::new();
            let mut slots = 0;
            for p in ports {
                let cost = if p.first == p.last { 1 } else { 2 };
                if slots + cost > 15 {
                    chunks.push(current.join(","));
                    current.clear();
                    slots = 0;
                }
                slots += cost;
                current.push(p.to_string());
            }
            if !current.is_empty() {
                chunks.push(current.join(","));
            }
            chunks
        };
        let mut alternatives = vec![parts.join(" ")];
        for (entity, flag) in [(&rule.source, "--sports"), (&rule.destination, "--dports")] {
            for chunk in port_chunks(&entity.not_ports) {
                for alt in &mut alternatives {
                    alt.push_str(&format!(" -m multiport ! {flag} {chunk}"));
                }
            }
            if !entity.ports.is_empty() {
                let chunks = port_chunks(&entity.ports);
                alternatives = alternatives
                    .iter()
                    .flat_map(|alt| {
                        chunks
                            .iter()
                            .map(move |c| format!("{alt} -m multiport {flag} {c}"))
                    })
                    .collect();
            }
        }
        Some(
            alternatives
                .into_iter()
                .map(|a| a.trim().to_string())
                .collect(),
        )
    }

    /// Matches for one end of a rule; `None` when it cannot match in this
    /// family (it names only the other family's nets).
    fn entity_matches(&mut self, entity: &EntityMatch, dir: &str) -> Option<Vec<String>> {
        let family = self.family;
        let ours = |nets: &[IpNet]| -> Vec<String> {
            let mut v: Vec<String> = nets
                .iter()
                .filter(|n| family.contains(n))
                .map(|n| n.trunc().to_string())
                .collect();
            v.sort();
            v.dedup();
            v
        };
        let flag = if dir == "src" { "-s" } else { "-d" };
        let mut parts = Vec::new();
        let nets = ours(&entity.nets);
        if !entity.nets.is_empty() && nets.is_empty() {
            return None;
        }
        match nets.as_slice() {
            [] => {}
            [one] => parts.push(format!("{flag} {one}")),
            many => {
                let set = self.cidr_set(many);
                parts.push(format!("-m set --match-set {set} {dir}"));
            }
        }
        match ours(&entity.not_nets).as_slice() {
            [] => {}
            [one] => parts.push(format!("! {flag} {one}")),
            many => {
                let set = self.cidr_set(many);
                parts.push(format!("-m set ! --match-set {set} {dir}"));
            }
        }
        if let Some(sel) = &entity.selector {
            let set = self.selector_set(sel);
            parts.push(format!("-m set --match-set {set} {dir}"));
        }
        if let Some(sel) = &entity.not_selector {
            let set = self.selector_set(sel);
            parts.push(format!("-m set ! --match-set {set} {dir}"));
        }
        if let Some(net) = &entity.network {
            let set = self.network_set(net);
            parts.push(format!("-m set --match-set {set} {dir}"));
        }
        Some(parts)
    }
}

/// Which way a packet crosses an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Leaving a workload: its egress policy.
    FromWorkload,
    /// Entering a workload: its ingress policy.
    ToWorkload,
    /// Arriving at the host through a host endpoint: its ingress policy.
    ToHost,
    /// Leaving the host through a host endpoint: its egress policy.
    FromHost,
}

impl Direction {
    fn is_ingress(self) -> bool {
        matches!(self, Direction::ToWorkload | Direction::ToHost)
    }

    fn rules_of(self, policy: &Policy) -> Option<&[Rule]> {
        if self.is_ingress() {
            policy.ingress.as_deref()
        } else {
            policy.egress.as_deref()
        }
    }

    /// Which address of the packet is the local endpoint's.
    fn local_end(self) -> &'static str {
        if self.is_ingress() {
            "dst"
        } else {
            "src"
        }
    }
}
