//! A Brindle speaker peering with a real BIRD 2 over a veth, in both
//! directions of connection setup (BIRD dials us; we dial a passive BIRD),
//! with routes flowing both ways and a withdrawal reaching BIRD; also with
//! a TCP MD5 password (on our listening socket and on our connecting one).
//! The same over IPv6 (IPv6 unicast over an IPv6 session). Needs root and
//! `bird`.

#[path = "speaker_support.rs"]
mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use brindle_bgp::packet::AsPath;
use brindle_bgp::speaker::{BestRouteChange, PeerConfig, SpeakerConfig};
use brindle_testbed::{poll_until, veth, BgpConfig, Bird, Neighbor, Netns};
use support::{block_on, local_attrs, net, wait_change, wait_established, NsSpeaker, STEP};

const BRINDLE_AS: u32 = 64512;
const BIRD_AS: u32 = 65001;

struct Case<'a> {
    tag: &'a str,
    subnet: u8,
    bird_passive: bool,
    password: Option<&'a str>,
    ipv6: bool,
}

fn run(case: Case<'_>) {
    let Case {
        tag,
        subnet,
        bird_passive,
        password,
        ipv6,
    } = case;
    let ours_ns = Netns::new(&format!("{tag}o")).unwrap();
    let bird_ns = Netns::new(&format!("{tag}b")).unwrap();
    let (our_ip, bird_ip, len): (IpAddr, IpAddr, u8) = if ipv6 {
        (
            format!("fd{subnet}::1").parse().unwrap(),
            format!("fd{subnet}::2").parse().unwrap(),
            64,
        )
    } else {
        (
            IpAddr::V4(Ipv4Addr::new(10, subnet, 0, 1)),
            IpAddr::V4(Ipv4Addr::new(10, subnet, 0, 2)),
            24,
        )
    };
    let bird_id = Ipv4Addr::new(10, subnet, 0, 2);
    let our_id = Ipv4Addr::new(10, subnet, 0, 1);
    veth(
        &ours_ns,
        "eth0",
        &[&format!("{our_ip}/{len}")],
        &bird_ns,
        "eth0",
        &[&format!("{bird_ip}/{len}")],
    )
    .unwrap();

    let (bird_prefix, block) = if ipv6 {
        (
            format!("fd00:{subnet}:100::/64"),
            format!("fd00:{subnet}:244::/64"),
        )
    } else {
        (
            format!("10.{subnet}.100.0/24"),
            format!("10.{subnet}.244.0/26"),
        )
    };
    let mut neighbor = Neighbor::new(our_ip, BRINDLE_AS);
    neighbor.passive = bird_passive;
    neighbor.password = password.map(str::to_string);
    let bird_cfg = BgpConfig::new(bird_id, BIRD_AS)
        .with_neighbor(neighbor)
        .originate(&bird_prefix);
    let bird = Bird::start(&bird_ns, &bird_cfg).unwrap();

    let mut cfg = SpeakerConfig::new(BRINDLE_AS, our_id);
    let mut peer = PeerConfig::new(bird_ip, BIRD_AS);
    peer.passive = !bird_passive;
    peer.connect_retry = Duration::from_secs(1);
    peer.hold_time = 9;
    peer.md5_password = password.map(str::to_string);
    cfg.peers.push(peer);
    let ours = NsSpeaker::start(&ours_ns, cfg);
    let mut routes = ours.speaker.subscribe();

    let status = wait_established(&ours.speaker, bird_ip);
    assert_eq!(status.router_id, Some(bird_id));
    bird.wait_neighbor_established(our_ip, STEP)
        .unwrap_or_else(|e| panic!("BIRD not established: {e}\n{}", bird.log()));

    // BIRD -> us.
    let bird_net = net(&bird_prefix);
    let change = wait_change(&mut routes, "BIRD's prefix", |c| c.prefix() == bird_net);
    let BestRouteChange::Best(route) = change else {
        panic!("expected a route, got {change:?}");
    };
    assert_eq!(route.next_hops, vec![bird_ip]);
    assert_eq!(
        route.attrs.attributes.as_path,
        Some(AsPath::from_sequence([BIRD_AS]))
    );

    // Us -> BIRD.
    block_on(ours.speaker.originate(net(&block), local_attrs())).unwrap();
    bird.wait_route(&block, STEP)
        .unwrap_or_else(|e| panic!("BIRD never got {block}: {e}\n{}", bird.log()));
    let detail = bird.birdc(&format!("show route {block} all")).unwrap();
    assert!(
        detail.contains(&format!("BGP.as_path: {BRINDLE_AS}")),
        "{detail}"
    );
    assert!(
        detail.contains(&format!("BGP.next_hop: {our_ip}")),
        "{detail}"
    );

    // Withdraw reaches BIRD.
    block_on(ours.speaker.withdraw(net(&block))).unwrap();
    let gone = poll_until(STEP, Duration::from_millis(200), || {
        Ok((!bird.routes()?.contains(&block)).then_some(()))
    })
    .unwrap();
    assert!(gone.is_some(), "BIRD still has {block}");
    assert!(
        bird.protocols()
            .unwrap()
            .iter()
            .any(|p| p.info.starts_with("Established")),
        "the session survived the exchange"
    );
}

#[test]
fn bird_dials_us() {
    run(Case {
        tag: "spbd",
        subnet: 66,
        bird_passive: false,
        password: None,
        ipv6: false,
    });
}

#[test]
fn we_dial_passive_bird() {
    run(Case {
        tag: "spbp",
        subnet: 67,
        bird_passive: true,
        password: None,
        ipv6: false,
    });
}

#[test]
fn bird_dials_us_with_tcp_md5() {
    run(Case {
        tag: "spbm",
        subnet: 72,
        bird_passive: false,
        password: Some("brindle-md5"),
        ipv6: false,
    });
}

#[test]
fn we_dial_passive_bird_with_tcp_md5() {
    run(Case {
        tag: "spbn",
        subnet: 73,
        bird_passive: true,
        password: Some("brindle-md5"),
        ipv6: false,
    });
}

#[test]
fn bird_over_ipv6_both_ways() {
    run(Case {
        tag: "spb6",
        subnet: 75,
        bird_passive: false,
        password: None,
        ipv6: true,
    });
}

#[test]
fn we_dial_passive_bird_over_ipv6_with_tcp_md5() {
    run(Case {
        tag: "spb7",
        subnet: 76,
        bird_passive: true,
        password: Some("brindle-md5"),
        ipv6: true,
    });
}

/// Import rules with operations (Calico's BGPFilter `addCommunity` and
/// `prependASPath`) on what a real BIRD sends: the rule that accepts one
/// prefix changes it; the other prefix, accepted by no rule, is stored as
/// sent. An export rule's operations reach BIRD ahead of our own AS.
#[test]
fn filter_operations_on_routes_from_and_to_bird() {
    use brindle_bgp::packet::{Community, LargeCommunity};
    use brindle_bgp::rib::{
        CommunityMatch, FilterRule, FilterVerdict, PrefixMatch, PrefixOp, RouteFilter,
        RouteOperation,
    };
    use std::sync::Arc;
    let ours_ns = Netns::new("spbo").unwrap();
    let bird_ns = Netns::new("spbq").unwrap();
    let (our_ip, bird_ip) = (Ipv4Addr::new(10, 79, 0, 1), Ipv4Addr::new(10, 79, 0, 2));
    veth(
        &ours_ns,
        "eth0",
        &[&format!("{our_ip}/24")],
        &bird_ns,
        "eth0",
        &[&format!("{bird_ip}/24")],
    )
    .unwrap();
    let bird_cfg = BgpConfig::new(bird_ip, BIRD_AS)
        .with_neighbor(Neighbor::new(IpAddr::V4(our_ip), BRINDLE_AS))
        .originate("10.79.100.0/24")
        .originate("10.79.101.0/24");
    let bird = Bird::start(&bird_ns, &bird_cfg).unwrap();
    let rule = |cidr: &str, ops| FilterRule {
        operations: ops,
        ..FilterRule::on_prefix(
            FilterVerdict::Accept,
            Some(PrefixMatch::new(net(cidr), PrefixOp::Equal)),
        )
    };
    let mut cfg = SpeakerConfig::new(BRINDLE_AS, our_ip);
    let mut peer = PeerConfig::new(IpAddr::V4(bird_ip), BIRD_AS);
    peer.connect_retry = Duration::from_secs(1);
    peer.hold_time = 9;
    peer.import_filter = Some(Arc::new(RouteFilter {
        v4: vec![rule(
            "10.79.100.0/24",
            vec![
                RouteOperation::AddCommunity(CommunityMatch::Standard(Community::new(65000, 5))),
                RouteOperation::PrependAsPath(vec![65400]),
            ],
        )],
        v6: Vec::new(),
    }));
    peer.export_filter = Some(Arc::new(RouteFilter {
        v4: vec![rule(
            "10.79.244.0/26",
            vec![
                RouteOperation::AddCommunity(CommunityMatch::Large(LargeCommunity {
                    global_admin: 65000,
                    local_data1: 9,
                    local_data2: 9,
                })),
                RouteOperation::PrependAsPath(vec![65401, 65402]),
            ],
        )],
        v6: Vec::new(),
    }));
    cfg.peers.push(peer);
    let ours = NsSpeaker::start(&ours_ns, cfg);
    let mut routes = ours.speaker.subscribe();
    wait_established(&ours.speaker, IpAddr::V4(bird_ip));

    let mut seen = std::collections::HashMap::new();
    while seen.len() < 2 {
        let change = wait_change(&mut routes, "BIRD's prefixes", |c| {
            c.prefix().to_string().starts_with("10.79.10")
        });
        if let BestRouteChange::Best(route) = change {
            seen.insert(route.prefix.to_string(), route.attrs.clone());
        }
    }
    let changed = &seen["10.79.100.0/24"].attributes;
    assert_eq!(changed.communities, [Community::new(65000, 5)]);
    assert_eq!(
        changed.as_path,
        Some(AsPath::from_sequence([65400, BIRD_AS]))
    );
    let plain = &seen["10.79.101.0/24"].attributes;
    assert!(plain.communities.is_empty());
    assert_eq!(plain.as_path, Some(AsPath::from_sequence([BIRD_AS])));

    block_on(ours.speaker.originate(net("10.79.244.0/26"), local_attrs())).unwrap();
    bird.wait_route("10.79.244.0/26", STEP)
        .unwrap_or_else(|e| panic!("BIRD never got the block: {e}\n{}", bird.log()));
    let detail = bird.birdc("show route 10.79.244.0/26 all").unwrap();
    assert!(
        detail.contains(&format!("BGP.as_path: {BRINDLE_AS} 65401 65402")),
        "{detail}"
    );
    assert!(
        detail.contains("BGP.large_community: (65000, 9, 9)"),
        "{detail}"
    );
}

/// BIRD's `gateway direct` on our side (Calico's `birdGatewayMode:
/// DirectIfDirectlyConnected`): BIRD sends a route whose next hop (set by
/// its export filter) lies on a network only BIRD has; we install it
/// through BIRD's address. Its other route, with a next hop on the shared
/// network, keeps that next hop.
#[test]
fn gateway_direct_replaces_an_off_link_next_hop_from_bird() {
    let ours_ns = Netns::new("spgd").unwrap();
    let bird_ns = Netns::new("spge").unwrap();
    let (our_ip, bird_ip) = (Ipv4Addr::new(10, 86, 0, 1), Ipv4Addr::new(10, 86, 0, 2));
    veth(
        &ours_ns,
        "eth0",
        &[&format!("{our_ip}/24")],
        &bird_ns,
        "eth0",
        &[&format!("{bird_ip}/24")],
    )
    .unwrap();
    // A network only BIRD has (a veth pair inside its namespace: this
    // kernel has no dummy driver).
    bird_ns
        .ip(&[
            "link", "add", "far0", "type", "veth", "peer", "name", "far1",
        ])
        .and_then(|_| bird_ns.ip(&["addr", "add", "10.87.0.1/24", "dev", "far0"]))
        .and_then(|_| bird_ns.ip(&["link", "set", "far0", "up"]))
        .and_then(|_| bird_ns.ip(&["link", "set", "far1", "up"]))
        .unwrap();
    let config = format!(
        "router id {bird_ip};\nprotocol device {{ scan time 1; }}\n\
         protocol static {{ ipv4;\n  route 10.88.1.0/24 via 10.87.0.9;\n  route 10.88.2.0/24 via 10.86.0.7;\n}}\n\
         protocol bgp tor {{\n  local as {BIRD_AS};\n  neighbor {our_ip} as {BRINDLE_AS};\n  \
         connect delay time 1;\n  connect retry time 1;\n  \
         ipv4 {{ import none; next hop keep;\n    export filter {{ if net = 10.88.1.0/24 then bgp_next_hop = 10.87.0.9; accept; }}; }};\n}}\n"
    );
    let bird = Bird::start_with_config(&bird_ns, &config).unwrap();
    let mut cfg = SpeakerConfig::new(BRINDLE_AS, our_ip);
    let mut peer = PeerConfig::new(IpAddr::V4(bird_ip), BIRD_AS);
    peer.connect_retry = Duration::from_secs(1);
    peer.hold_time = 9;
    peer.gateway_direct = true;
    cfg.peers.push(peer);
    let ours = NsSpeaker::start(&ours_ns, cfg);
    let mut routes = ours.speaker.subscribe();
    wait_established(&ours.speaker, IpAddr::V4(bird_ip));
    let mut seen = std::collections::HashMap::new();
    while seen.len() < 2 {
        let change = wait_change(&mut routes, "BIRD's routes", |c| {
            c.prefix().to_string().starts_with("10.88.")
        });
        if let BestRouteChange::Best(route) = change {
            let sent = route.attrs.next_hop_addr();
            seen.insert(route.prefix.to_string(), (sent, route.next_hops.clone()));
        }
    }
    let far = &seen["10.88.1.0/24"];
    assert_eq!(
        far.0,
        Some("10.87.0.9".parse().unwrap()),
        "BIRD kept its next hop: {}",
        bird.log()
    );
    assert_eq!(far.1, [IpAddr::V4(bird_ip)], "installed through BIRD");
    assert_eq!(
        seen["10.88.2.0/24"].1,
        ["10.86.0.7".parse::<IpAddr>().unwrap()]
    );
}
