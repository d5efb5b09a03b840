use super::*;

fn rule_problems(yaml: &str) -> Vec<String> {
    let rule: Rule = serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("{e}"));
    let mut p = Problems::default();
    rule.validate("r", PolicyType::Ingress, &mut p);
    p.list.iter().map(|e| e.to_string()).collect()
}

#[test]
fn valid_rules() {
    for yaml in [
        "action: Allow",
        "{action: Allow, protocol: TCP, destination: {ports: [80, '8000:8080', http]}}",
        "{action: Deny, protocol: ICMP, icmp: {type: 8, code: 0}}",
        "{action: Allow, protocol: 6, source: {nets: [10.0.0.0/8], selector: \"role == 'db'\"}}",
        "{action: Pass, ipVersion: 6, protocol: ICMPv6, destination: {notNets: ['fd00::/8']}}",
        "{action: Allow, destination: {ports: [http, metrics]}}",
        "{action: Allow, source: {namespaceSelector: 'global()'}}",
    ] {
        assert_eq!(rule_problems(yaml), Vec::<String>::new(), "{yaml}");
    }
}

#[test]
fn invalid_rules() {
    let cases = [
        ("{protocol: TCP}", "r.action: required"),
        (
            "{action: Allow, destination: {ports: [80]}}",
            "r.destination.ports: numeric ports require protocol TCP, UDP, SCTP or UDPLite",
        ),
        (
            "{action: Allow, protocol: ICMP, source: {notPorts: [http]}}",
            "r.source.notPorts: protocol ICMP does not have ports",
        ),
        (
            "{action: Allow, source: {nets: [10.0.0.0/8]}, destination: {nets: ['fd00::/8']}}",
            "r: the rule contains both IPv4 and IPv6 CIDRs",
        ),
        (
            "{action: Allow, source: {notNets: [0.0.0.0/0]}}",
            "r.source.notNets[0]: 0.0.0.0/0 matches everything",
        ),
        (
            "{action: Allow, source: {selector: 'global()'}}",
            "r.source.selector: global() can only be used in a namespaceSelector",
        ),
        (
            "{action: Allow, source: {namespaceSelector: 'global() || has(x)'}}",
            "r.source.namespaceSelector: global() must be the whole namespaceSelector",
        ),
        (
            "{action: Allow, protocol: TCP, icmp: {type: 8}}",
            "r.icmp: ICMP type/code may only be used with protocol ICMP or ICMPv6",
        ),
        (
            "{action: Allow, protocol: ICMP, icmp: {code: 1}}",
            "r.icmp.code: an ICMP code requires an ICMP type",
        ),
        (
            "{action: Allow, protocol: ICMP, icmp: {type: 255}}",
            "r.icmp.type: 255 is out of range 0..254",
        ),
        (
            "{action: Allow, protocol: 300}",
            "r.protocol: protocol number 300 is out of range 1..255",
        ),
        (
            "{action: Allow, protocol: QUIC}",
            "r.protocol: unknown protocol 'QUIC'",
        ),
        (
            "{action: Allow, protocol: TCP, destination: {ports: ['90:80']}}",
            "r.destination.ports[0]: port range 90:80 has its minimum above its maximum",
        ),
        (
            "{action: Allow, ipVersion: 4, source: {nets: ['fd00::/8']}}",
            "r.source.nets[0]: fd00::/8 does not match the rule's ipVersion 4",
        ),
        (
            "{action: Allow, source: {selector: 'a = b'}}",
            "r.source.selector: invalid selector 'a = b'",
        ),
        (
            "{action: Allow, ipVersion: 6, protocol: ICMP}",
            "r.protocol: ICMP does not match ipVersion 6",
        ),
    ];
    for (yaml, want) in cases {
        let got = rule_problems(yaml);
        assert!(
            got.iter().any(|g| g.starts_with(want)),
            "{yaml}: got {got:?}, wanted {want:?}"
        );
    }
}

#[test]
fn types_default_from_rules() {
    let allow = Rule {
        action: Some(Action::Allow),
        ..Default::default()
    };
    assert_eq!(default_types(&[], &[]), vec![PolicyType::Ingress]);
    assert_eq!(
        default_types(&[], std::slice::from_ref(&allow)),
        vec![PolicyType::Egress]
    );
    assert_eq!(
        default_types(std::slice::from_ref(&allow), std::slice::from_ref(&allow)),
        vec![PolicyType::Ingress, PolicyType::Egress]
    );
}

#[test]
fn network_profile_lets_members_talk() {
    let spec = ProfileSpec::network("frontend-net");
    let mut p = Problems::default();
    spec.validate(&ObjectMeta::default(), &mut p);
    assert!(p.is_empty(), "{:?}", p.list);
    let member: BTreeMap<String, String> = spec.labels_to_apply.clone();
    let outsider: BTreeMap<String, String> = BTreeMap::from([("app".into(), "x".into())]);
    let source = Selector::parse(&spec.ingress[0].source.selector).unwrap();
    assert!(source.matches(&member));
    assert!(!source.matches(&outsider));
}

#[test]
fn global_policy_flags() {
    let spec = GlobalNetworkPolicySpec {
        do_not_track: true,
        pre_dnat: true,
        ..Default::default()
    };
    let mut p = Problems::default();
    spec.validate(&ObjectMeta::default(), &mut p);
    let got: Vec<String> = p.list.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        got,
        [
            "spec: preDNAT and doNotTrack cannot both be true",
            "spec.applyOnForward: must be true when preDNAT or doNotTrack is true",
        ]
    );
}
