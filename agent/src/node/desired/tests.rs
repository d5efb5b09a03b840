use super::*;
use crate::node::cluster::{BgpSettings, BlockInfo, WorkloadInfo};
use brindle_model::bgp::{BGPPeerSpec, SourceAddress};
use brindle_model::meta::AsNumber;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// A WorkloadEndpoint of `node` with `labels` (YAML flow content).
fn endpoint(node: &str, name: &str, labels: &str) -> Arc<brindle_model::Resource> {
    let yaml = format!(
        "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata:\n  name: {name}\n  namespace: default\n  labels: {{{labels}}}\nspec:\n  node: {node}\n  orchestrator: cni\n  workload: {name}\n  endpoint: eth0\n  interfaceName: cali-{name}\n"
    );
    let mut docs = brindle_model::document::parse_documents(&yaml).unwrap();
    Arc::new(docs.remove(0))
}

fn node_mut<'a>(c: &'a mut ClusterState, name: &str) -> &'a mut NodeInfo {
    Arc::make_mut(c.nodes.get_mut(name).expect("node in the test cluster"))
}

fn node(name: &str, addr: &str) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        address: Some(addr.parse().unwrap()),
        ..Default::default()
    }
}

fn pool(cidr: &str, vxlan: EncapMode, ipip: EncapMode) -> (String, IPPoolSpec) {
    let mut spec = IPPoolSpec {
        cidr: cidr.into(),
        vxlan_mode: Some(vxlan),
        ipip_mode: Some(ipip),
        ..Default::default()
    };
    spec.defaulted();
    ("p".into(), spec)
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Three nodes: a, b on 10.0.1.0/24, c on 10.0.2.0/24.
fn cluster(vxlan: EncapMode, ipip: EncapMode) -> ClusterState {
    let mut c = ClusterState::default();
    for (name, addr, tunnel) in [
        ("a", "10.0.1.1/24", "10.65.0.1"),
        ("b", "10.0.1.2/24", "10.65.0.65"),
        ("c", "10.0.2.1/24", "10.65.0.129"),
    ] {
        let mut n = node(name, addr);
        n.vxlan_tunnel = Some(tunnel.parse().unwrap());
        n.vxlan_mac = Some(crate::tunnel::vtep_mac_for_node(name));
        c.nodes.insert(name.into(), Arc::new(n));
    }
    c.pools.push(pool("10.65.0.0/16", vxlan, ipip));
    c.blocks = vec![
        Arc::new(BlockInfo {
            cidr: net("10.65.0.0/26"),
            affinity: Some("a".into()),
            allocations: vec![(ip("10.65.0.1"), Some("a".into()))],
        }),
        Arc::new(BlockInfo {
            cidr: net("10.65.0.64/26"),
            affinity: Some("b".into()),
            allocations: vec![(ip("10.65.0.70"), Some("a".into()))],
        }),
    ];
    c.workloads.push(WorkloadInfo {
        key: "w1".into(),
        node: Some("a".into()),
        interface: Some("cali1".into()),
        addresses: vec![net("10.65.0.2/32")],
        endpoint: endpoint("a", "w1", "role: bgp-speaker"),
    });
    c.workloads.push(WorkloadInfo {
        key: "w2".into(),
        node: Some("b".into()),
        interface: Some("cali2".into()),
        addresses: vec![net("10.65.0.66/32")],
        endpoint: endpoint("b", "w2", "role: bgp-speaker"),
    });
    c
}

#[test]
fn route_kind_table() {
    let c = cluster(EncapMode::Never, EncapMode::Never);
    let subnet: &[IpNet] = &[net("10.0.1.0/24")];
    let b = &c.nodes["b"];
    let cn = &c.nodes["c"];
    let p = |v, i| pool("10.65.0.0/16", v, i).1;
    use EncapMode::*;
    let cases: Vec<(&str, IPPoolSpec, &NodeInfo, &str, Route)> = vec![
        (
            "same subnet, no encap",
            p(Never, Never),
            b,
            "10.0.1.2",
            Route::via(net("10.65.0.64/26"), ip("10.0.1.2")),
        ),
        (
            "same subnet, vxlan cross-subnet",
            p(CrossSubnet, Never),
            b,
            "10.0.1.2",
            Route::via(net("10.65.0.64/26"), ip("10.0.1.2")),
        ),
        (
            "other subnet, vxlan cross-subnet",
            p(CrossSubnet, Never),
            cn,
            "10.0.2.1",
            Route::onlink(net("10.65.0.64/26"), ip("10.65.0.129"), VXLAN_DEVICE),
        ),
        (
            "same subnet, vxlan always",
            p(Always, Never),
            b,
            "10.0.1.2",
            Route::onlink(net("10.65.0.64/26"), ip("10.65.0.65"), VXLAN_DEVICE),
        ),
        (
            "other subnet, ipip cross-subnet",
            p(Never, CrossSubnet),
            cn,
            "10.0.2.1",
            Route::onlink(net("10.65.0.64/26"), ip("10.0.2.1"), IPIP_DEVICE),
        ),
        (
            "same subnet, ipip always",
            p(Never, Always),
            b,
            "10.0.1.2",
            Route::onlink(net("10.65.0.64/26"), ip("10.0.1.2"), IPIP_DEVICE),
        ),
    ];
    for (what, pool, remote, nh, want) in cases {
        let got = learned_route(
            net("10.65.0.64/26"),
            ip(nh),
            subnet,
            Some(&pool),
            Some(remote),
        );
        assert_eq!(got, want, "{what}");
    }
    // A prefix outside every pool (e.g. from the ToR) goes direct.
    assert_eq!(
        learned_route(net("192.0.2.0/24"), ip("10.0.1.254"), subnet, None, None),
        Route::via(net("192.0.2.0/24"), ip("10.0.1.254"))
    );
    // VXLAN wanted but the remote has no VTEP yet: direct.
    let no_vtep = node("d", "10.0.2.9/24");
    assert_eq!(
        learned_route(
            net("10.65.1.0/26"),
            ip("10.0.2.9"),
            subnet,
            Some(&p(Always, Never)),
            Some(&no_vtep)
        ),
        Route::via(net("10.65.1.0/26"), ip("10.0.2.9"))
    );
}

#[test]
fn blocks_workloads_borrowed_and_learned() {
    let c = cluster(EncapMode::CrossSubnet, EncapMode::Never);
    let learned = BTreeMap::from([
        (net("10.65.0.64/26"), Learned::via(ip("10.0.1.2"))),
        (net("10.65.0.128/26"), Learned::via(ip("10.0.2.1"))),
        // Our own block reflected back: ignored.
        (net("10.65.0.0/26"), Learned::via(ip("10.0.1.2"))),
    ]);
    let d = desired_state(Inputs {
        node: "a",
        cluster: &c,
        learned: &learned,
    });
    assert_eq!(
        d.originations,
        BTreeSet::from([net("10.65.0.0/26"), net("10.65.0.70/32")])
    );
    let mut routes = d.routes.clone();
    routes.sort_by_key(|r| r.dst);
    assert_eq!(
        routes,
        vec![
            Route::blackhole(net("10.65.0.0/26")),
            Route::workload(net("10.65.0.2/32"), "cali1"),
            Route::via(net("10.65.0.64/26"), ip("10.0.1.2")),
            Route::onlink(net("10.65.0.128/26"), ip("10.65.0.129"), VXLAN_DEVICE),
        ]
    );
    assert!(d.vxlan && !d.ipip);
    assert_eq!(d.vteps.len(), 2);
    assert!(d.vteps.iter().all(|v| v.node_ip != ip("10.0.1.1")));
}

#[test]
fn mesh_is_one_directional_and_skips_reflectors() {
    let mut c = cluster(EncapMode::Never, EncapMode::Never);
    let d = desired_state(Inputs {
        node: "b",
        cluster: &c,
        learned: &BTreeMap::new(),
    });
    let peers: Vec<_> = d
        .peers
        .values()
        .map(|p| (p.config.address, p.config.passive, p.kind))
        .collect();
    assert_eq!(
        peers,
        vec![
            (ip("10.0.1.1"), true, PeerType::Mesh),
            (ip("10.0.2.1"), false, PeerType::Mesh),
        ]
    );
    // c becomes a reflector: it leaves the mesh, and b's mesh loses it.
    node_mut(&mut c, "c").rr_cluster_id = Some(Ipv4Addr::new(1, 0, 0, 1));
    let d = desired_state(Inputs {
        node: "b",
        cluster: &c,
        learned: &BTreeMap::new(),
    });
    assert_eq!(
        d.peers.keys().copied().collect::<Vec<_>>(),
        vec![ip("10.0.1.1")]
    );
    let d = desired_state(Inputs {
        node: "c",
        cluster: &c,
        learned: &BTreeMap::new(),
    });
    assert!(d.peers.is_empty());
    // Mesh off: no sessions at all.
    c.bgp = BgpSettings {
        mesh: false,
        ..c.bgp
    };
    let d = desired_state(Inputs {
        node: "a",
        cluster: &c,
        learned: &BTreeMap::new(),
    });
    assert!(d.peers.is_empty());
}

#[test]
fn bgp_peers_global_node_selector_and_reflector_clients() {
    let mut c = cluster(EncapMode::Never, EncapMode::Never);
    c.bgp.mesh = false;
    node_mut(&mut c, "a")
        .labels
        .insert("rack".into(), "r1".into());
    node_mut(&mut c, "c").rr_cluster_id = Some(Ipv4Addr::new(1, 0, 0, 1));
    node_mut(&mut c, "c")
        .labels
        .insert("rr".into(), "yes".into());
    c.peers = vec![
        (
            "tor".into(),
            BGPPeerSpec {
                peer_ip: Some("10.0.1.254:1179".into()),
                as_number: Some(AsNumber(65100)),
                max_restart_time: Some("2m".into()),
                ..Default::default()
            },
        ),
        (
            "rack1".into(),
            BGPPeerSpec {
                node_selector: Some("rack == 'r1'".into()),
                peer_ip: Some("10.0.1.253".into()),
                as_number: Some(AsNumber(65101)),
                ..Default::default()
            },
        ),
        (
            "to-rr".into(),
            BGPPeerSpec {
                node_selector: Some("!has(rr)".into()),
                peer_selector: Some("has(rr)".into()),
                ..Default::default()
            },
        ),
        (
            "rr-to-clients".into(),
            BGPPeerSpec {
                node_selector: Some("has(rr)".into()),
                peer_selector: Some("!has(rr)".into()),
                ..Default::default()
            },
        ),
    ];
    let d = desired_state(Inputs {
        node: "a",
        cluster: &c,
        learned: &BTreeMap::new(),
    });
    let tor = &d.peers[&ip("10.0.1.254")];
    assert_eq!(
        (tor.kind, tor.config.port, tor.config.remote_asn),
        (PeerType::Global, 1179, 65100)
    );
    assert_eq!(tor.config.graceful_restart, Some(120));
    assert!(!tor.config.passive);
    assert_eq!(d.peers[&ip("10.0.1.253")].kind, PeerType::NodeSpecific);
    let rr = &d.peers[&ip("10.0.2.1")];
    assert_eq!(
        (rr.kind, rr.name.as_str(), rr.config.route_reflector_client),
        (PeerType::NodeSpecific, "c", false)
    );
    // b is not in rack r1.
    let d = desired_state(Inputs {
        node: "b",
        cluster: &c,
        learned: &BTreeMap::new(),
    });
    assert!(!d.peers.contains_key(&ip("10.0.1.253")));
    // The reflector sees a and b as clients.
    let d = desired_state(Inputs {
        node: "c",
        cluster: &c,
        learned: &BTreeMap::new(),
    });
    let clients: Vec<_> = d
        .peers
        .values()
        .filter(|p| p.config.route_reflector_client)
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(clients, vec!["a", "b"]);
}

/// Calico's `reversePeering: Auto`: one BGPPeer (every node peers with the
/// reflectors) configures the reflector's end too; `Manual` does not.
#[test]
fn peer_selector_peerings_run_back_unless_manual() {
    let mut c = cluster(EncapMode::Never, EncapMode::Never);
    c.bgp.mesh = false;
    let rr = node_mut(&mut c, "c");
    rr.rr_cluster_id = Some(Ipv4Addr::new(1, 0, 0, 1));
    rr.labels.insert("rr".into(), "yes".into());
    c.peers = vec![(
        "to-rr".into(),
        BGPPeerSpec {
            peer_selector: Some("has(rr)".into()),
            password: Some(brindle_model::bgp::BGPPassword {
                secret_key_ref: Some(SecretKeySelector {
                    name: "bgp".into(),
                    key: "rr".into(),
                    optional: None,
                }),
            }),
            ..Default::default()
        },
    )];
    let on = |c: &ClusterState, node: &str| {
        desired_state(Inputs {
            node,
            cluster: c,
            learned: &BTreeMap::new(),
        })
        .peers
    };
    let a = on(&c, "a");
    assert_eq!(a.keys().collect::<Vec<_>>(), [&ip("10.0.2.1")]);
    assert_eq!(
        a[&ip("10.0.2.1")].password.as_ref().map(|r| r.key.as_str()),
        Some("rr"),
        "the password goes with the session"
    );
    let reflector = on(&c, "c");
    let clients: Vec<_> = reflector
        .values()
        .map(|p| {
            (
                p.name.as_str(),
                p.config.route_reflector_client,
                p.password.is_some(),
            )
        })
        .collect();
    assert_eq!(clients, [("a", true, true), ("b", true, true)]);

    c.peers[0].1.reverse_peering = Some(ReversePeering::Manual);
    assert!(
        on(&c, "c").is_empty(),
        "Manual: the reflector needs its own BGPPeer"
    );
    assert_eq!(on(&c, "a").len(), 1);
}

#[test]
fn mesh_sessions_take_the_mesh_password_and_restart_time() {
    let mut c = cluster(EncapMode::Never, EncapMode::Never);
    c.mesh_password = Some(SecretKeySelector {
        name: "mesh".into(),
        key: "password".into(),
        optional: None,
    });
    c.mesh_max_restart_time = Some(300);
    let d = desired_state(Inputs {
        node: "a",
        cluster: &c,
        learned: &BTreeMap::new(),
    });
    assert_eq!(d.peers.len(), 2);
    for p in d.peers.values() {
        assert_eq!(p.password, c.mesh_password);
        assert_eq!(p.config.graceful_restart, Some(300));
        assert_eq!(p.config.md5_password, None, "the daemon reads the secret");
    }
}

/// a and b have IPv6 addresses too, c does not.
fn dual_stack() -> ClusterState {
    let mut c = cluster(EncapMode::CrossSubnet, EncapMode::Never);
    node_mut(&mut c, "a").address6 = Some("fd00:1::1/64".parse().unwrap());
    node_mut(&mut c, "b").address6 = Some("fd00:1::2/64".parse().unwrap());
    c.pools.push(pool(
        "fd00:65::/48",
        EncapMode::CrossSubnet,
        EncapMode::Never,
    ));
    node_mut(&mut c, "b").vxlan_tunnel6 = Some("fd00:65::41".parse().unwrap());
    node_mut(&mut c, "b").vxlan_mac6 = Some([2, 0, 0, 0, 0, 0x0b]);
    c.blocks.push(Arc::new(BlockInfo {
        cidr: net("fd00:65::/122"),
        affinity: Some("a".into()),
        allocations: vec![(ip("fd00:65::1"), Some("a".into()))],
    }));
    c
}

#[test]
fn ipv6_sessions_originations_and_routes() {
    let c = dual_stack();
    let learned = BTreeMap::from([
        (net("fd00:65::40/122"), Learned::via(ip("fd00:1::2"))),
        // From a router on another subnet: still direct (no vxlan6).
        (net("fd00:65::80/122"), Learned::via(ip("fd00:2::1"))),
    ]);
    let d = desired_state(Inputs {
        node: "a",
        cluster: &c,
        learned: &learned,
    });
    // One session per family both ends have; each carries its family.
    let sessions: Vec<_> = d
        .peers
        .values()
        .map(|p| {
            (
                p.config.address,
                p.config.source_address,
                p.config.ipv4_unicast,
                p.config.ipv6_unicast,
                p.config.passive,
            )
        })
        .collect();
    assert_eq!(
        sessions,
        vec![
            (ip("10.0.1.2"), Some(ip("10.0.1.1")), true, false, false),
            (ip("10.0.2.1"), Some(ip("10.0.1.1")), true, false, false),
            (ip("fd00:1::2"), Some(ip("fd00:1::1")), false, true, false),
        ]
    );
    assert_eq!(d.peers[&ip("fd00:1::2")].name, "b");
    assert!(d.originations.contains(&net("fd00:65::/122")));
    assert!(d.routes.contains(&Route::blackhole(net("fd00:65::/122"))));
    assert!(d
        .routes
        .contains(&Route::via(net("fd00:65::40/122"), ip("fd00:1::2"))));
    assert!(d
        .routes
        .contains(&Route::via(net("fd00:65::80/122"), ip("fd00:2::1"))));
    // b is the higher address: it waits, on both families.
    let d = desired_state(Inputs {
        node: "b",
        cluster: &c,
        learned: &BTreeMap::new(),
    });
    assert!(d.peers[&ip("fd00:1::1")].config.passive);
    assert!(d.peers[&ip("10.0.1.1")].config.passive);
    // An IPv6 pool with VXLAN across subnets: through vxlan6.brindle to
    // the remote's IPv6 tunnel address, once it has one.
    let mut remote = node("d", "10.0.2.9/24");
    remote.address6 = Some("fd00:2::9/64".parse().unwrap());
    let p6 = pool("fd00:65::/48", EncapMode::CrossSubnet, EncapMode::Never).1;
    let subnets = [net("10.0.1.0/24"), net("fd00:1::/64")];
    let route = |remote: &NodeInfo| {
        learned_route(
            net("fd00:65::80/122"),
            ip("fd00:2::9"),
            &subnets,
            Some(&p6),
            Some(remote),
        )
    };
    assert_eq!(
        route(&remote),
        Route::via(net("fd00:65::80/122"), ip("fd00:2::9"))
    );
    remote.vxlan_tunnel6 = Some("fd00:65::81".parse().unwrap());
    assert_eq!(
        route(&remote),
        Route::onlink(net("fd00:65::80/122"), ip("fd00:65::81"), VXLAN_V6_DEVICE)
    );
    // c has no IPv6 address: IPv4 only.
    let d = desired_state(Inputs {
        node: "c",
        cluster: &c,
        learned: &BTreeMap::new(),
    });
    assert!(d.peers.keys().all(IpAddr::is_ipv4));
    assert!(d.vteps6.is_empty());
    // a sees b's IPv6 VTEP (same subnet, so b's block stays direct).
    let d = desired_state(Inputs {
        node: "a",
        cluster: &c,
        learned: &BTreeMap::new(),
    });
    assert!(d.vxlan && d.vxlan6);
    assert_eq!(
        d.vteps6,
        vec![Vtep {
            tunnel_ip: ip("fd00:65::41"),
            mac: vec![2, 0, 0, 0, 0, 0x0b],
            node_ip: ip("fd00:1::2"),
        }]
    );
}

#[test]
fn go_durations() {
    assert_eq!(parse_go_duration("120s"), Some(Duration::from_secs(120)));
    assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
    assert_eq!(parse_go_duration("1h"), Some(Duration::from_secs(3600)));
    assert_eq!(parse_go_duration("12"), None);
    assert_eq!(parse_go_duration("1x"), None);
}

#[test]
fn bfd_only_to_directly_connected_peers_with_the_nodes_timers() {
    use brindle_model::bgp::{BFDConfigurationSpec, FailureDetectionMode};
    let mut c = cluster(EncapMode::Never, EncapMode::Never);
    c.bgp.mesh = false;
    let peer = |ip: &str| BGPPeerSpec {
        peer_ip: Some(ip.into()),
        as_number: Some(AsNumber(65100)),
        failure_detection_mode: Some(FailureDetectionMode::BFDIfDirectlyConnected),
        ..Default::default()
    };
    c.peers = vec![
        ("near".into(), peer("10.0.1.254")),
        ("far".into(), peer("10.9.9.9")),
        (
            "none".into(),
            BGPPeerSpec {
                failure_detection_mode: Some(FailureDetectionMode::None),
                ..peer("10.0.1.253")
            },
        ),
    ];
    c.bfd.insert(
        "default".into(),
        BFDConfigurationSpec {
            minimum_send_interval: Some("200ms".into()),
            multiplier: Some(5),
            ..Default::default()
        },
    );
    c.bfd.insert(
        "node.a".into(),
        BFDConfigurationSpec {
            minimum_send_interval: Some("50ms".into()),
            ..Default::default()
        },
    );
    let learned = BTreeMap::new();
    let run = |node: &str| {
        desired_state(Inputs {
            node,
            cluster: &c,
            learned: &learned,
        })
    };
    let a = run("a");
    let near = a.peers[&ip("10.0.1.254")]
        .config
        .bfd
        .expect("BFD to the on-link peer");
    // node.a over default over the built-in 100 ms.
    assert_eq!(near.min_tx, Duration::from_millis(50));
    assert_eq!(near.min_rx, Duration::from_millis(100));
    assert_eq!(near.multiplier, 5);
    assert_eq!(
        a.peers[&ip("10.9.9.9")].config.bfd,
        None,
        "not directly connected"
    );
    assert_eq!(a.peers[&ip("10.0.1.253")].config.bfd, None, "mode None");
    // Node c is on 10.0.2.0/24: the ToR on 10.0.1.0/24 is not on-link for it.
    let on_c = run("c");
    assert_eq!(on_c.peers[&ip("10.0.1.254")].config.bfd, None);
    // Node b gets default's timers.
    let b = run("b");
    assert_eq!(
        b.peers[&ip("10.0.1.254")].config.bfd.unwrap().min_tx,
        Duration::from_millis(200)
    );
}

/// Equal paths become one ECMP route; a path through ourselves is left out.
#[test]
fn equal_paths_become_one_multipath_route() {
    let c = cluster(EncapMode::Never, EncapMode::Never);
    let learned = BTreeMap::from([
        (
            net("10.99.0.0/24"),
            Learned {
                next_hops: vec![ip("10.0.1.254"), ip("10.0.1.253")],
            },
        ),
        (
            net("10.98.0.0/24"),
            Learned {
                next_hops: vec![ip("10.0.1.1"), ip("10.0.1.253")],
            },
        ),
    ]);
    let d = desired_state(Inputs {
        node: "a",
        cluster: &c,
        learned: &learned,
    });
    let route = |dst: &str| d.routes.iter().find(|r| r.dst == net(dst)).unwrap().clone();
    assert_eq!(
        route("10.99.0.0/24").target,
        RouteTarget::nexthops(vec![
            crate::route::NextHop::via(ip("10.0.1.253")),
            crate::route::NextHop::via(ip("10.0.1.254")),
        ])
    );
    assert_eq!(
        route("10.98.0.0/24"),
        Route::via(net("10.98.0.0/24"), ip("10.0.1.253"))
    );
}

#[test]
fn source_address_none_leaves_the_source_to_the_kernel() {
    let mut c = cluster(EncapMode::Never, EncapMode::Never);
    c.peers = vec![(
        "tor".into(),
        BGPPeerSpec {
            peer_ip: Some("10.0.1.254".into()),
            as_number: Some(AsNumber(65100)),
            source_address: Some(SourceAddress::None),
            ..Default::default()
        },
    )];
    let d = desired_state(Inputs {
        node: "a",
        cluster: &c,
        learned: &BTreeMap::new(),
    });
    assert_eq!(d.peers[&ip("10.0.1.254")].config.source_address, None);
    c.peers[0].1.source_address = None;
    let d = desired_state(Inputs {
        node: "a",
        cluster: &c,
        learned: &BTreeMap::new(),
    });
    assert_eq!(
        d.peers[&ip("10.0.1.254")].config.source_address,
        Some(ip("10.0.1.1")),
        "UseNodeIP, the default"
    );
}

#[test]
fn next_hop_mode_and_allowed_local_as_reach_the_session() {
    use brindle_model::bgp::NextHopMode;
    let mut c = cluster(EncapMode::Never, EncapMode::Never);
    let tor = |mode: Option<NextHopMode>, keep_original: bool| BGPPeerSpec {
        peer_ip: Some("10.0.1.254".into()),
        as_number: Some(AsNumber(65100)),
        next_hop_mode: mode,
        keep_original_next_hop: keep_original,
        num_allowed_local_as_numbers: Some(2),
        ..Default::default()
    };
    let session = |c: &ClusterState| {
        desired_state(Inputs {
            node: "a",
            cluster: c,
            learned: &BTreeMap::new(),
        })
        .peers[&ip("10.0.1.254")]
            .config
            .clone()
    };
    c.peers = vec![("tor".into(), tor(Some(NextHopMode::Keep), false))];
    let s = session(&c);
    assert!(s.next_hop_keep && !s.next_hop_self_always);
    assert_eq!(s.allow_local_as, 2);
    c.peers = vec![("tor".into(), tor(None, true))];
    assert!(session(&c).next_hop_keep, "keepOriginalNextHop is Keep");
    c.peers = vec![("tor".into(), tor(Some(NextHopMode::Self_), false))];
    let s = session(&c);
    assert!(s.next_hop_self_always && !s.next_hop_keep);
}

/// Calico's reachableBy: a static route to the peer through the gateway,
/// preferred over a route to the peer learned by BGP.
#[test]
fn reachable_by_routes_the_peer_through_its_gateway() {
    let mut c = cluster(EncapMode::Never, EncapMode::Never);
    c.peers = vec![(
        "tor".into(),
        BGPPeerSpec {
            peer_ip: Some("192.0.2.9".into()),
            as_number: Some(AsNumber(65100)),
            reachable_by: Some("10.0.1.254".into()),
            ..Default::default()
        },
    )];
    let mut learned = BTreeMap::new();
    learned.insert(net("192.0.2.9/32"), Learned::via(ip("10.0.1.2")));
    let d = desired_state(Inputs {
        node: "a",
        cluster: &c,
        learned: &learned,
    });
    let to_peer: Vec<&Route> = d
        .routes
        .iter()
        .filter(|r| r.dst == net("192.0.2.9/32"))
        .collect();
    assert_eq!(
        to_peer,
        vec![&Route::via(net("192.0.2.9/32"), ip("10.0.1.254"))]
    );
    assert!(d.peers.contains_key(&ip("192.0.2.9")));
}

/// Calico's local workload peering: the node's own workloads the selector
/// matches become passive peers in the BGPPeer's AS (a remote node's
/// workload does not), and the peering address goes on their interfaces.
#[test]
fn local_workload_selector_peers_with_the_nodes_own_workloads() {
    let mut c = cluster(EncapMode::Never, EncapMode::Never);
    c.local_workload_peering = vec![ip("169.254.0.179"), ip("fd00::179")];
    c.peers = vec![(
        "speakers".into(),
        BGPPeerSpec {
            local_workload_selector: Some("role == 'bgp-speaker'".into()),
            as_number: Some(AsNumber(65010)),
            ..Default::default()
        },
    )];
    let d = desired_state(Inputs {
        node: "a",
        cluster: &c,
        learned: &BTreeMap::new(),
    });
    let peer = &d.peers[&ip("10.65.0.2")];
    assert_eq!(peer.kind, PeerType::LocalWorkload);
    assert_eq!(peer.name, "default/w1");
    assert_eq!(peer.config.remote_asn, 65010);
    assert!(peer.config.passive);
    assert_eq!(peer.config.source_address, None);
    assert!(
        !d.peers.contains_key(&ip("10.65.0.66")),
        "node b's workload"
    );
    assert_eq!(
        d.peering_addresses,
        BTreeSet::from([("cali1".to_owned(), net("169.254.0.179/32"))]),
        "the IPv6 address only for a workload with an IPv6 address"
    );

    // Not selected: no peer, no address.
    c.peers[0].1.local_workload_selector = Some("role == 'web'".into());
    let d = desired_state(Inputs {
        node: "a",
        cluster: &c,
        learned: &BTreeMap::new(),
    });
    assert!(!d.peers.contains_key(&ip("10.65.0.2")));
    assert!(d.peering_addresses.is_empty());
}

/// `restartMode: LongLivedGracefulRestart`: maxRestartTime becomes the
/// long-lived stale time (default 3600 s) and graceful restart keeps its
/// default time; with GracefulRestart it is the restart time, as before.
#[test]
fn restart_mode_long_lived_takes_max_restart_time_as_the_stale_time() {
    use brindle_model::bgp::RestartMode;
    let mut c = cluster(EncapMode::Never, EncapMode::Never);
    c.peers = vec![(
        "tor".into(),
        BGPPeerSpec {
            peer_ip: Some("10.0.1.254".into()),
            as_number: Some(AsNumber(65100)),
            restart_mode: Some(RestartMode::LongLivedGracefulRestart),
            max_restart_time: Some("10m".into()),
            ..Default::default()
        },
    )];
    let config = |c: &ClusterState| {
        desired_state(Inputs {
            node: "a",
            cluster: c,
            learned: &BTreeMap::new(),
        })
        .peers[&ip("10.0.1.254")]
            .config
            .clone()
    };
    let llgr = config(&c);
    assert_eq!(llgr.long_lived_stale_time, Some(600));
    assert_eq!(
        llgr.graceful_restart,
        PeerConfig::new(ip("10.0.1.254"), 1).graceful_restart
    );
    c.peers[0].1.max_restart_time = None;
    assert_eq!(config(&c).long_lived_stale_time, Some(3600));
    c.peers[0].1.restart_mode = Some(RestartMode::GracefulRestart);
    c.peers[0].1.max_restart_time = Some("10m".into());
    let gr = config(&c);
    assert_eq!(
        (gr.long_lived_stale_time, gr.graceful_restart),
        (None, Some(600))
    );
}

/// `birdGatewayMode: DirectIfDirectlyConnected` reaches the session as
/// BIRD's `gateway direct`; unset or Recursive it does not.
#[test]
fn bird_gateway_mode_direct_reaches_the_session() {
    use brindle_model::bgp::GatewayMode;
    let mut c = cluster(EncapMode::Never, EncapMode::Never);
    c.peers = vec![(
        "tor".into(),
        BGPPeerSpec {
            peer_ip: Some("10.0.1.254".into()),
            as_number: Some(AsNumber(65100)),
            bird_gateway_mode: Some(GatewayMode::DirectIfDirectlyConnected),
            ..Default::default()
        },
    )];
    let direct = |c: &ClusterState| {
        desired_state(Inputs {
            node: "a",
            cluster: c,
            learned: &BTreeMap::new(),
        })
        .peers[&ip("10.0.1.254")]
            .config
            .gateway_direct
    };
    assert!(direct(&c));
    c.peers[0].1.bird_gateway_mode = Some(GatewayMode::Recursive);
    assert!(!direct(&c));
}

/// A learned route whose next hop is on none of the node's subnets (no
/// encapsulation) is listed for the daemon to resolve through the kernel
/// (BIRD's recursive gateway); one on the node's subnet is not.
#[test]
fn off_link_next_hops_are_listed_for_resolution() {
    let c = cluster(EncapMode::Never, EncapMode::Never);
    let learned = BTreeMap::from([
        (net("10.65.0.64/26"), Learned::via(ip("10.0.1.2"))),
        (net("10.65.0.128/26"), Learned::via(ip("10.0.2.1"))),
    ]);
    let d = desired_state(Inputs {
        node: "a",
        cluster: &c,
        learned: &learned,
    });
    assert_eq!(d.off_link_gateways, BTreeSet::from([ip("10.0.2.1")]));
}
