//! Real BGP daemons peering through testbed topologies.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use brindle_testbed::{two_hosts_one_subnet, BgpConfig, Bird, Frr};
use common::{assert_all_gone, assert_removed};

const SESSION_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn bird_and_frr_exchange_routes_over_ebgp_v4_and_v6() {
    let net = two_hosts_one_subnet().unwrap();
    let [h0, h1] = &net.hosts;
    let bird = Bird::start(
        &h0.ns,
        &BgpConfig::new(h0.ipv4, 65001)
            .neighbor(IpAddr::V4(h1.ipv4), 65002)
            .neighbor(IpAddr::V6(h1.ipv6), 65002)
            .originate("10.10.1.0/24")
            .originate("fd10:1::/64"),
    )
    .unwrap();
    let frr = Frr::start(
        &h1.ns,
        &BgpConfig::new(h1.ipv4, 65002)
            .neighbor(IpAddr::V4(h0.ipv4), 65001)
            .neighbor(IpAddr::V6(h0.ipv6), 65001)
            .originate("10.10.2.0/24")
            .originate("fd10:2::/64"),
    )
    .unwrap();

    for peer in [IpAddr::V4(h1.ipv4), IpAddr::V6(h1.ipv6)] {
        bird.wait_neighbor_established(peer, SESSION_TIMEOUT)
            .unwrap();
    }
    for peer in [IpAddr::V4(h0.ipv4), IpAddr::V6(h0.ipv6)] {
        frr.wait_neighbor_established(peer, SESSION_TIMEOUT)
            .unwrap();
    }

    // Each side learns the other's prefixes over BGP…
    bird.wait_route("10.10.2.0/24", SESSION_TIMEOUT).unwrap();
    bird.wait_route("fd10:2::/64", SESSION_TIMEOUT).unwrap();
    frr.wait_route("10.10.1.0/24", SESSION_TIMEOUT).unwrap();
    frr.wait_route("fd10:1::/64", SESSION_TIMEOUT).unwrap();
    let from_frr = bird
        .routes_from(&brindle_testbed::bird_protocol_name(IpAddr::V4(h1.ipv4)))
        .unwrap();
    assert_eq!(from_frr, vec!["10.10.2.0/24".to_string()]);

    // …and installs them in its namespace's kernel table with the peer as
    // next hop (BIRD through its kernel protocol, FRR through zebra).
    let poll = |ns: &brindle_testbed::Netns, prefix: &str, via: &str| {
        brindle_testbed::poll_until(SESSION_TIMEOUT, Duration::from_millis(200), || {
            let route = ns.ip(&["route", "show", prefix])?;
            Ok(route.contains(via).then_some(route))
        })
        .unwrap()
        .unwrap_or_else(|| {
            panic!(
                "{prefix} via {via} never reached the kernel of {}",
                ns.name()
            )
        })
    };
    poll(&h0.ns, "10.10.2.0/24", "via 10.0.1.2");
    poll(&h1.ns, "10.10.1.0/24", "via 10.0.1.1");

    let mut pids = vec![bird.pid()];
    pids.extend(frr.pids());
    let dirs = [bird.dir().to_path_buf(), frr.dir().to_path_buf()];
    let names = vec![h0.ns.name().to_string(), h1.ns.name().to_string()];
    drop(bird);
    drop(frr);
    drop(net);
    assert_all_gone(&names, &pids);
    dirs.iter().for_each(|d| assert_removed(d));
}

#[test]
fn gobgp_starts_answers_and_peers_with_bird() {
    let net = two_hosts_one_subnet().unwrap();
    let [h0, h1] = &net.hosts;
    let gobgp = brindle_testbed::Gobgp::start(
        &h0.ns,
        &BgpConfig::new(h0.ipv4, 65003)
            .neighbor(IpAddr::V4(h1.ipv4), 65001)
            .originate("10.10.3.0/24"),
    )
    .unwrap();
    assert_eq!(gobgp.routes().unwrap(), vec!["10.10.3.0/24".to_string()]);
    let bird = Bird::start(
        &h1.ns,
        &BgpConfig::new(h1.ipv4, 65001)
            .neighbor(IpAddr::V4(h0.ipv4), 65003)
            .originate("10.10.1.0/24"),
    )
    .unwrap();
    gobgp
        .wait_neighbor_established(IpAddr::V4(h1.ipv4), SESSION_TIMEOUT)
        .unwrap();
    bird.wait_neighbor_established(IpAddr::V4(h0.ipv4), SESSION_TIMEOUT)
        .unwrap();
    gobgp.wait_route("10.10.1.0/24", SESSION_TIMEOUT).unwrap();
    bird.wait_route("10.10.3.0/24", SESSION_TIMEOUT).unwrap();
    assert_eq!(gobgp.rib_count().unwrap(), 2);

    let pids = [gobgp.pid(), bird.pid()];
    let dirs = [gobgp.dir().to_path_buf(), bird.dir().to_path_buf()];
    let names = vec![h0.ns.name().to_string(), h1.ns.name().to_string()];
    drop(gobgp);
    drop(bird);
    drop(net);
    assert_all_gone(&names, &pids);
    dirs.iter().for_each(|d| assert_removed(d));
}

#[test]
fn frr_rejects_a_broken_config_before_starting() {
    let ns = brindle_testbed::Netns::new("frrbad").unwrap();
    let err = Frr::start_with_config(
        &ns,
        "router bgp 65001\n neighbor 10.0.0.1 remote-as bogus\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("remote-as bogus"), "{err}");
}

#[test]
fn bird_that_fails_to_start_reports_its_log() {
    let ns = brindle_testbed::Netns::new("birdbad").unwrap();
    let err = Bird::start_with_config(&ns, "protocol bgp x { bogus; }\n").unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("exited early") && text.contains("syntax error"),
        "{text}"
    );
}

#[test]
fn bird_and_frr_peer_across_a_router_with_tcp_md5_and_multihop() {
    let fabric = brindle_testbed::hosts_on_two_subnets([1, 1]).unwrap();
    let (near, far) = (&fabric.hosts[0], &fabric.hosts[1]);
    let neighbor = |address, remote_as| brindle_testbed::Neighbor {
        password: Some("brindle-md5".into()),
        multihop: true,
        ..brindle_testbed::Neighbor::new(IpAddr::V4(address), remote_as)
    };
    let bird = Bird::start(
        &near.ns,
        &BgpConfig::new(near.ipv4, 65001)
            .with_neighbor(neighbor(far.ipv4, 65002))
            .originate("10.10.1.0/24"),
    )
    .unwrap();
    let frr = Frr::start(
        &far.ns,
        &BgpConfig::new(far.ipv4, 65002)
            .with_neighbor(neighbor(near.ipv4, 65001))
            .originate("10.10.2.0/24"),
    )
    .unwrap();
    bird.wait_neighbor_established(IpAddr::V4(far.ipv4), SESSION_TIMEOUT)
        .unwrap();
    frr.wait_neighbor_established(IpAddr::V4(near.ipv4), SESSION_TIMEOUT)
        .unwrap();
    bird.wait_route("10.10.2.0/24", SESSION_TIMEOUT).unwrap();
    frr.wait_route("10.10.1.0/24", SESSION_TIMEOUT).unwrap();

    // The session really is MD5-signed: capture one BGP segment (keepalives
    // flow every 3 s) and look at its TCP options.
    let capture = near
        .ns
        .run(&[
            "timeout",
            "30",
            "tcpdump",
            "-i",
            "eth0",
            "-c",
            "1",
            "-n",
            "-v",
            "tcp port 179 and (tcp[tcpflags] & tcp-push != 0)",
        ])
        .unwrap();
    assert!(capture.contains("md5"), "no TCP-MD5 option in: {capture}");
}

#[test]
fn frr_listens_on_a_custom_port_bird_connects_to_it() {
    let net = two_hosts_one_subnet().unwrap();
    let [h0, h1] = &net.hosts;
    // FRR only accepts (passive) and only on 1179, so the session can only
    // come up through BIRD connecting to that port.
    let frr = Frr::start(
        &h1.ns,
        &BgpConfig {
            listen_port: 1179,
            ..BgpConfig::new(h1.ipv4, 65002)
        }
        .with_neighbor(brindle_testbed::Neighbor {
            passive: true,
            ..brindle_testbed::Neighbor::new(IpAddr::V4(h0.ipv4), 65001)
        }),
    )
    .unwrap();
    let bird = Bird::start(
        &h0.ns,
        &BgpConfig::new(h0.ipv4, 65001)
            .with_neighbor(brindle_testbed::Neighbor {
                port: Some(1179),
                ..brindle_testbed::Neighbor::new(IpAddr::V4(h1.ipv4), 65002)
            })
            .originate("10.10.1.0/24"),
    )
    .unwrap();
    frr.wait_neighbor_established(IpAddr::V4(h0.ipv4), SESSION_TIMEOUT)
        .unwrap();
    frr.wait_route("10.10.1.0/24", SESSION_TIMEOUT).unwrap();
    let sockets = h1.ns.run(&["ss", "-Htn", "state", "established"]).unwrap();
    assert!(sockets.contains(":1179"), "{sockets}");
    drop(bird);
}
