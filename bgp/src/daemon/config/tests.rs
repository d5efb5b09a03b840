use super::*;

const ISSUE_EXAMPLE: &str = "\
asn: 64512
router_id: 10.0.0.1
listen: 0.0.0.0:179          # address:port
control_socket: /run/brindle-bgpd.sock
originate: [10.20.0.0/26]    # prefixes this speaker announces
peers:
  - address: 10.0.0.2
    asn: 64513
    passive: false
    route_reflector_client: false
    hold_time: 90
";

fn err(text: &str) -> ConfigError {
    Config::parse(text).expect_err("config should be rejected")
}

#[test]
fn issue_example_parses_with_defaults() {
    let c = Config::parse(ISSUE_EXAMPLE).unwrap();
    assert_eq!(c.asn, 64512);
    assert_eq!(c.router_id, Ipv4Addr::new(10, 0, 0, 1));
    assert_eq!(c.listen, Some("0.0.0.0:179".parse().unwrap()));
    assert_eq!(
        c.originate,
        vec![Originate::prefix("10.20.0.0/26".parse().unwrap())]
    );
    let p = &c.peers[0];
    assert_eq!(p.port, 179);
    assert_eq!(p.hold_time, 90);
    assert_eq!(p.keepalive, None);
    assert_eq!(p.families, vec![Family::IPV4_UNICAST]);
    assert!(!p.is_ibgp(&c));
    assert!(!p.graceful_restart_enabled(&c));
    assert_eq!(c.log_level, LogLevel::Info);
}

#[test]
fn every_key_parses() {
    let text = "\
asn: 4200000001
router_id: 10.0.0.1
listen: \"[::]:1179\"
control_socket: /tmp/x.sock
cluster_id: 1.1.1.1
log_level: debug
graceful_restart:
  restart_time: 60
  long_lived_stale_time: 3600
originate:
  - 10.20.0.0/26
  - prefix: fd00:20::/64
    communities: [\"64512:100\", no-export]
    large_communities: [\"4200000001:1:2\"]
    med: 10
    local_pref: 200
    next_hop: fd00::9
peers:
  - address: fd00::2
    asn: 4200000001
    port: 1790
    passive: true
    route_reflector_client: true
    next_hop_self: true
    hold_time: 0
    connect_retry: 1
    password: s3cret
    local_address: fd00::1
    families: [ipv4, ipv6]
    graceful_restart: false
    ttl_security: 2
    description: ToR A
";
    let c = Config::parse(text).unwrap();
    assert_eq!(c.asn, 4_200_000_001);
    assert_eq!(
        c.graceful_restart,
        Some(GracefulRestart {
            restart_time: 60,
            long_lived_stale_time: Some(3600)
        })
    );
    let o = &c.originate[1];
    assert_eq!(
        o.communities,
        vec![Community::new(64512, 100), Community::NO_EXPORT]
    );
    assert_eq!(
        o.large_communities,
        vec![LargeCommunity {
            global_admin: 4_200_000_001,
            local_data1: 1,
            local_data2: 2
        }]
    );
    assert_eq!((o.med, o.local_pref), (Some(10), Some(200)));
    let p = &c.peers[0];
    assert_eq!(p.keepalive, None);
    assert_eq!(p.families, vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST]);
    assert!(p.is_ibgp(&c) && p.route_reflector_client && p.passive);
    assert!(!p.graceful_restart_enabled(&c));
    assert_eq!(p.password.as_deref(), Some("s3cret"));
    assert_eq!(p.ttl_security, Some(2));
}

#[test]
fn unknown_key_reports_its_line() {
    let e = err(&ISSUE_EXAMPLE.replace("    hold_time: 90", "    hold_tme: 90"));
    assert_eq!(e.line, 11, "{e}");
    assert!(e.message.contains("peers[0]"), "{e}");
    assert!(e.message.contains("unknown field `hold_tme`"), "{e}");
    let e = err("asn: 1\nrouter_id: 1.1.1.1\nrouterid: 1.1.1.1\n");
    assert_eq!(e.line, 3, "{e}");
}

#[test]
fn bad_values_report_their_line() {
    let cases: &[(&str, &str, usize, &str)] = &[
        ("    hold_time: 90", "    hold_time: 2", 11, "hold_time 2"),
        ("asn: 64512", "asn: 0", 1, "AS 0"),
        ("router_id: 10.0.0.1", "router_id: 10.0.0", 2, "router_id"),
        ("listen: 0.0.0.0:179", "listen: 0.0.0.0", 3, "address:port"),
        ("[10.20.0.0/26]", "[10.20.0.1/26]", 5, "host bits"),
        ("    asn: 64513", "    asn: 99999999999", 8, "asn"),
        ("    passive: false", "    passive: maybe", 9, "passive"),
        ("    passive: false", "    ttl_security: 0", 9, "1..=255"),
    ];
    for (from, to, line, needle) in cases {
        let e = err(&ISSUE_EXAMPLE.replace(from, to));
        assert_eq!(e.line, *line, "{to}: {e}");
        assert!(e.to_string().contains(needle), "{to}: {e}");
        assert!(e.to_string().contains(&format!("line {line}")), "{e}");
    }
}

#[test]
fn cross_key_checks_point_at_the_peer() {
    let two_peers = format!(
        "{ISSUE_EXAMPLE}  - address: 10.0.0.3\n    asn: 64512\n    route_reflector_client: true\n"
    );
    let e = err(&two_peers);
    assert_eq!(e.line, 12, "{e}");
    assert!(
        e.message
            .contains("peers[1]: route_reflector_client needs a top-level cluster_id"),
        "{e}"
    );

    let ebgp_client = ISSUE_EXAMPLE
        .replace(
            "route_reflector_client: false",
            "route_reflector_client: true",
        )
        .replace("originate:", "cluster_id: 1.1.1.1\noriginate:");
    let e = err(&ebgp_client);
    assert!(e.message.contains("needs an iBGP peer"), "{e}");
    assert_eq!(e.line, 8, "{e}");

    let dup = format!("{ISSUE_EXAMPLE}  - address: 10.0.0.2\n    asn: 64512\n");
    let e = err(&dup);
    assert!(e.message.contains("already configured as peers[0]"), "{e}");
    assert_eq!(e.line, 12);
    // The same peer written as an IPv4-mapped IPv6 address.
    let mapped = format!("{ISSUE_EXAMPLE}  - address: \"::ffff:10.0.0.2\"\n    asn: 64512\n");
    let e = err(&mapped);
    assert!(e.message.contains("already configured as peers[0]"), "{e}");

    let e = err(&ISSUE_EXAMPLE.replace("    hold_time: 90", "    hold_time: 9\n    keepalive: 9"));
    assert!(e.message.contains("keepalive 9"), "{e}");
    assert_eq!(e.line, 7, "{e}");

    let e = err(&ISSUE_EXAMPLE.replace("    hold_time: 90", "    local_address: fd00::1"));
    assert!(e.message.contains("local_address"), "{e}");
}

#[test]
fn bad_attributes_are_rejected() {
    for (bad, needle) in [
        ("communities: [\"70000:1\"]", "community"),
        ("large_communities: [\"1:2\"]", "large community"),
        ("next_hop: fd00::1", "next_hop"),
        ("color: red", "unknown field `color`"),
    ] {
        let text =
            format!("asn: 1\nrouter_id: 1.1.1.1\noriginate:\n  - prefix: 10.0.0.0/8\n    {bad}\n");
        let e = err(&text);
        assert!(e.to_string().contains(needle), "{bad}: {e}");
        assert!(e.line >= 4, "{bad}: {e}");
    }
}

#[test]
fn garbage_never_panics() {
    for text in [
        "",
        "---",
        "[1,2]",
        "asn: [",
        "\u{0}\u{1}",
        "peers: 5",
        "asn: 1\nasn: 2\n",
    ] {
        let _ = Config::parse(text);
    }
}

#[test]
fn community_text_round_trips() {
    for s in ["64512:100", "no-export", "0:0", "65535:65535"] {
        let c: CommunityText = s.parse().unwrap();
        assert_eq!(community_text(c.0), s);
    }
    let l: LargeCommunityText = "4200000000:1:2".parse().unwrap();
    assert_eq!(large_community_text(l.0), "4200000000:1:2");
}
