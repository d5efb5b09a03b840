//! `brindle-cni` run exactly as a container runtime runs it: `CNI_*` in the
//! environment, the network configuration on stdin, a container namespace
//! from `ip netns add`, `CNI_PATH` pointing at a directory holding
//! `brindle-cni` and `brindle-ipam` (a symlink to the same binary), and a
//! temporary embedded datastore. The plugin runs inside a "host" namespace
//! (`ip netns exec`), so nothing touches the real host. Needs root.

mod common;

mod cni_support;

use brindle_model::Resource;
use cni_support::{container_id, endpoint_name, first_ip, netns_path, Host};
use common::{can_run, TestNetns};
use serde_json::{json, Value};

#[test]
fn two_workloads_ping_each_other_then_del_twice() {
    if !can_run() {
        return;
    }
    let host = Host::new(&["10.77.0.0/16"]);
    let c1 = TestNetns::new("cnic1");
    let c2 = TestNetns::new("cnic2");
    let labelled = host.conf(json!({"args": {"brindle": {"labels": {"app": "web"}}}}));
    let r1 = host
        .cni("ADD", &container_id(&c1), &netns_path(&c1), &labelled)
        .expect_ok("ADD c1");
    let r2 = host
        .cni(
            "ADD",
            &container_id(&c2),
            &netns_path(&c2),
            &host.conf(json!({})),
        )
        .expect_ok("ADD c2");

    // The result, as the spec shapes it.
    assert_eq!(r1["cniVersion"], "1.0.0");
    let host_if = r1["interfaces"][0]["name"].as_str().unwrap().to_owned();
    assert!(host_if.starts_with("cali") && host_if.len() == 15, "{r1}");
    assert_eq!(r1["interfaces"][0]["mac"], "ee:ee:ee:ee:ee:ee");
    assert_eq!(r1["interfaces"][1]["name"], "eth0");
    assert_eq!(r1["interfaces"][1]["sandbox"], json!(netns_path(&c1)));
    assert_eq!(r1["ips"][0]["interface"], 1);
    assert!(
        r1["ips"][0]["address"].as_str().unwrap().ends_with("/32"),
        "{r1}"
    );
    assert_eq!(
        r1["routes"][0],
        json!({"dst": "0.0.0.0/0", "gw": "169.254.1.1"})
    );
    let (ip1, ip2) = (first_ip(&r1), first_ip(&r2));
    assert_ne!(ip1, ip2);
    assert!(ip1.starts_with("10.77."), "{ip1}");

    // Host side: MAC, sysctls, /32 route to the veth.
    let link = host.ns.ip(&["link", "show", &host_if]);
    assert!(
        link.contains("ee:ee:ee:ee:ee:ee") && link.contains("mtu 1440"),
        "{link}"
    );
    for key in ["proxy_arp", "forwarding", "route_localnet"] {
        assert_eq!(
            host.sysctl(&format!("net.ipv4.conf.{host_if}.{key}")),
            "1",
            "{key}"
        );
    }
    assert_eq!(
        host.sysctl(&format!("net.ipv4.neigh.{host_if}.proxy_delay")),
        "0"
    );
    let routes = host.ns.ip(&["route", "show", &format!("{ip1}/32")]);
    assert!(routes.contains(&format!("dev {host_if}")), "{routes}");

    // Container side: /32 on eth0, the fake gateway.
    let addrs = c1.ip(&["addr", "show", "eth0"]);
    assert!(addrs.contains(&format!("{ip1}/32")), "{addrs}");
    let croutes = c1.ip(&["route", "show"]);
    assert!(
        croutes.contains("default via 169.254.1.1 dev eth0"),
        "{croutes}"
    );
    assert!(croutes.contains("169.254.1.1 dev eth0"), "{croutes}");

    // The endpoint: network as profile, labels, addresses, interface.
    let Some(Resource::WorkloadEndpoint(wep)) = host.endpoint(&endpoint_name(&c1)) else {
        panic!("no endpoint {}", endpoint_name(&c1));
    };
    assert_eq!(wep.metadata.labels["app"], "web");
    assert_eq!(wep.metadata.labels["projectcalico.org/orchestrator"], "cni");
    assert_eq!(wep.spec.profiles, vec!["blue"]);
    assert_eq!(wep.spec.ip_networks, vec![format!("{ip1}/32")]);
    assert_eq!(wep.spec.interface_name.as_deref(), Some(host_if.as_str()));
    assert_eq!(wep.spec.node.as_deref(), Some("node-a"));
    assert_eq!(wep.spec.container_id, Some(container_id(&c1)));

    assert!(c1.ping(&ip2), "c1 → c2");
    assert!(c2.ping(&ip1), "c2 → c1");

    // CHECK against the ADD result.
    let check = host.conf(json!({"prevResult": r1}));
    let out = host
        .cni("CHECK", &container_id(&c1), &netns_path(&c1), &check)
        .expect_ok("CHECK");
    assert_eq!(out, Value::Null, "CHECK prints nothing");

    // DEL, then DEL again: both succeed, nothing left.
    let handle = format!("brindle-test.{}", container_id(&c1));
    assert!(host.handle_exists(&handle));
    for round in ["DEL", "DEL again"] {
        host.cni(
            "DEL",
            &container_id(&c1),
            &netns_path(&c1),
            &host.conf(json!({})),
        )
        .expect_ok(round);
    }
    assert!(!host.ns.ip(&["link", "show"]).contains(&host_if));
    assert!(host
        .ns
        .ip(&["route", "show", &format!("{ip1}/32")])
        .trim()
        .is_empty());
    assert!(host.endpoint(&endpoint_name(&c1)).is_none());
    assert!(!host.handle_exists(&handle));
    assert!(!c1.ip(&["link", "show"]).contains("eth0"));

    // CHECK of a deleted workload fails with an error object.
    host.cni("CHECK", &container_id(&c1), &netns_path(&c1), &check)
        .expect_code("CHECK after DEL", 999);

    // The other workload is untouched.
    assert!(host.endpoint(&endpoint_name(&c2)).is_some());
    host.cni(
        "DEL",
        &container_id(&c2),
        &netns_path(&c2),
        &host.conf(json!({})),
    )
    .expect_ok("DEL c2");
}

#[test]
fn del_of_a_half_created_workload_and_of_an_unknown_one() {
    if !can_run() {
        return;
    }
    let host = Host::new(&["10.78.0.0/16"]);
    let c = TestNetns::new("cnihalf");
    let conf = host.conf(json!({}));
    let r = host
        .cni("ADD", &container_id(&c), &netns_path(&c), &conf)
        .expect_ok("ADD");
    let host_if = r["interfaces"][0]["name"].as_str().unwrap().to_owned();
    // Half gone: someone removed the veth (and with it the route).
    host.ns.ip(&["link", "del", &host_if]);
    let check = host.conf(json!({"prevResult": r}));
    host.cni("CHECK", &container_id(&c), &netns_path(&c), &check)
        .expect_code("CHECK without veth", 999);
    host.cni("DEL", &container_id(&c), &netns_path(&c), &conf)
        .expect_ok("DEL half-created");
    assert!(host.endpoint(&endpoint_name(&c)).is_none());
    assert!(!host.handle_exists(&format!("brindle-test.{}", container_id(&c))));

    // ADD again after all that works and gets an address again.
    let again = host
        .cni("ADD", &container_id(&c), &netns_path(&c), &conf)
        .expect_ok("ADD again");
    assert!(first_ip(&again).starts_with("10.78."));
    // ADD repeated (runtime retry) converges on one veth and one address.
    let repeat = host
        .cni("ADD", &container_id(&c), &netns_path(&c), &conf)
        .expect_ok("ADD repeated");
    assert_eq!(
        first_ip(&repeat),
        first_ip(&again),
        "same handle, same address"
    );
    host.cni("DEL", &container_id(&c), &netns_path(&c), &conf)
        .expect_ok("DEL");

    // DEL for something never added, with the namespace already gone.
    host.cni_env(
        &[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "never-added"),
            ("CNI_IFNAME", "eth0"),
        ],
        conf.to_string().as_bytes(),
    )
    .expect_ok("DEL unknown");
}

#[test]
fn fixed_address_is_kept_by_a_moving_workload() {
    if !can_run() {
        return;
    }
    let host = Host::new(&["10.79.0.0/16"]);
    let c1 = TestNetns::new("cnifix1");
    let c2 = TestNetns::new("cnifix2");
    let fixed = host.conf(json!({"ipam": {"ipAddrs": ["10.79.9.9"]}}));
    let r = host
        .cni("ADD", &container_id(&c1), &netns_path(&c1), &fixed)
        .expect_ok("ADD fixed");
    assert_eq!(r["ips"][0]["address"], "10.79.9.9/32");
    // While held, another container cannot take it; the failed ADD leaves nothing.
    host.cni("ADD", &container_id(&c2), &netns_path(&c2), &fixed)
        .expect_code("ADD taken address", 999);
    assert!(!c2.ip(&["link", "show"]).contains("eth0"));
    assert!(host.endpoint(&endpoint_name(&c2)).is_none());
    // It moves: DEL here, ADD there (runtimeConfig.ips form) keeps it.
    host.cni("DEL", &container_id(&c1), &netns_path(&c1), &fixed)
        .expect_ok("DEL");
    let moved_conf = host.conf(json!({"runtimeConfig": {"ips": ["10.79.9.9/32"]}}));
    let moved = host
        .cni("ADD", &container_id(&c2), &netns_path(&c2), &moved_conf)
        .expect_ok("ADD moved");
    assert_eq!(moved["ips"][0]["address"], "10.79.9.9/32");
    host.cni("DEL", &container_id(&c2), &netns_path(&c2), &moved_conf)
        .expect_ok("DEL moved");
}

#[test]
fn dual_stack_workloads_ping_over_ipv6() {
    if !can_run() {
        return;
    }
    let host = Host::new(&["10.80.0.0/16", "fd00:80::/48"]);
    let c1 = TestNetns::new("cni6a");
    let c2 = TestNetns::new("cni6b");
    let conf = host.conf(json!({"ipam": {"assign_ipv6": "true"}}));
    let r1 = host
        .cni("ADD", &container_id(&c1), &netns_path(&c1), &conf)
        .expect_ok("ADD c1");
    let r2 = host
        .cni("ADD", &container_id(&c2), &netns_path(&c2), &conf)
        .expect_ok("ADD c2");
    let v6 = |r: &Value| -> String {
        r["ips"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|ip| ip["address"].as_str())
            .find(|a| a.contains(':'))
            .expect("an IPv6 address")
            .split('/')
            .next()
            .unwrap()
            .to_owned()
    };
    let host_if = r1["interfaces"][0]["name"].as_str().unwrap().to_owned();
    assert_eq!(
        host.sysctl(&format!("net.ipv6.conf.{host_if}.proxy_ndp")),
        "1"
    );
    assert_eq!(
        host.sysctl(&format!("net.ipv6.conf.{host_if}.accept_ra")),
        "0"
    );
    let croutes = c1.ip(&["-6", "route", "show", "default"]);
    assert!(
        croutes.contains("via fe80::ecee:eeff:feee:eeee dev eth0"),
        "{croutes}"
    );
    assert!(c1.ping(&v6(&r2)), "c1 → c2 over IPv6");
    for (c, _) in [(&c1, &r1), (&c2, &r2)] {
        host.cni("DEL", &container_id(c), &netns_path(c), &conf)
            .expect_ok("DEL");
    }
}

#[test]
fn version_and_errors_are_spec_objects() {
    if !can_run() {
        return;
    }
    let host = Host::new(&["10.81.0.0/16"]);
    let c = TestNetns::new("cnierr");
    let version = host
        .cni_env(&[("CNI_COMMAND", "VERSION")], br#"{"cniVersion":"1.0.0"}"#)
        .expect_ok("VERSION");
    assert_eq!(version["cniVersion"], "1.0.0");
    assert!(version["supportedVersions"]
        .as_array()
        .unwrap()
        .contains(&json!("1.0.0")));

    let add = |stdin: &[u8]| {
        host.cni_env(
            &[
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", &container_id(&c)),
                ("CNI_NETNS", &netns_path(&c)),
                ("CNI_IFNAME", "eth0"),
            ],
            stdin,
        )
    };
    add(b"{not json").expect_code("garbage config", 6);
    add(br#"{"cniVersion":"0.1.0","name":"n","type":"brindle-cni"}"#).expect_code("old version", 1);
    let bad_mtu = host.conf(json!({"mtu": 5}));
    add(bad_mtu.to_string().as_bytes()).expect_code("bad mtu", 7);
    let no_plugin = host.conf(json!({"ipam": {"type": "no-such-ipam"}}));
    add(no_plugin.to_string().as_bytes()).expect_code("missing IPAM plugin", 7);
    let json_err = host
        .cni_env(
            &[("CNI_COMMAND", "ADD"), ("CNI_IFNAME", "eth0")],
            host.conf(json!({})).to_string().as_bytes(),
        )
        .expect_code("missing env", 4);
    assert!(json_err["msg"]
        .as_str()
        .unwrap()
        .contains("CNI_CONTAINERID"));
    host.cni(
        "ADD",
        &container_id(&c),
        "/run/netns/brindle-no-such-ns",
        &host.conf(json!({})),
    )
    .expect_code("missing netns", 3);
    // No address leaked by the failed ADDs.
    assert!(!host.handle_exists(&format!("brindle-test.{}", container_id(&c))));
    // An address-less pool: IPAM's error comes back through the main plugin.
    let wrong_pool = host.conf(json!({"ipam": {"ipAddrs": ["192.0.2.200"]}}));
    host.cni("ADD", &container_id(&c), &netns_path(&c), &wrong_pool)
        .expect_code("fixed address outside the pools", 7);
    assert!(!c.ip(&["link", "show"]).contains("eth0"));
}

#[test]
fn kubernetes_pod_args_name_and_label_the_endpoint() {
    if !can_run() {
        return;
    }
    let host = Host::new(&["10.82.0.0/16"]);
    let c = TestNetns::new("cnik8s");
    let args =
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=x";
    let conf = host.conf(json!({"runtimeConfig": {"labels": {"tier": "front"}}}));
    let r = host
        .cni_args("ADD", &container_id(&c), &netns_path(&c), args, &conf)
        .expect_ok("ADD pod");
    let Some(Resource::WorkloadEndpoint(wep)) = host.endpoint_in("shop", "node--a-k8s-web--0-eth0")
    else {
        panic!("no endpoint for the pod");
    };
    assert_eq!(wep.spec.orchestrator.as_deref(), Some("k8s"));
    assert_eq!(wep.spec.pod.as_deref(), Some("web-0"));
    assert_eq!(wep.metadata.labels["tier"], "front");
    assert_eq!(wep.metadata.labels["projectcalico.org/namespace"], "shop");
    // The veth name hashes `<namespace>.<pod>`, as Calico's does.
    assert_eq!(
        r["interfaces"][0]["name"],
        json!(brindle_agent::workload::host_veth_name("shop.web-0"))
    );

    // A late DEL from an earlier sandbox of the same pod (another container
    // id) must not tear down the current one; its own addresses are freed.
    host.cni_args("DEL", "old-sandbox", "", args, &conf)
        .expect_ok("DEL of a stale sandbox");
    assert!(host
        .endpoint_in("shop", "node--a-k8s-web--0-eth0")
        .is_some());
    assert!(c.ip(&["link", "show"]).contains("eth0"));

    host.cni_args("DEL", &container_id(&c), &netns_path(&c), args, &conf)
        .expect_ok("DEL pod");
    assert!(host
        .endpoint_in("shop", "node--a-k8s-web--0-eth0")
        .is_none());
}

/// The same plugin against a real etcd: etcd runs in its own namespace,
/// wired to the host namespace by a veth, and the plugin gets an
/// `etcd://` URL.
#[test]
fn add_and_del_against_a_real_etcd() {
    if !can_run() {
        return;
    }
    let etcd_ns = brindle_testbed::Netns::new("cnietcd").unwrap();
    let mut etcd = None;
    let host = Host::with_store(&["10.87.0.0/16"], |host_ns, _| {
        let (a, b) = (
            format!("ce{}", std::process::id()),
            format!("ch{}", std::process::id()),
        );
        common::run(&[
            "ip",
            "link",
            "add",
            &a,
            "netns",
            etcd_ns.name(),
            "type",
            "veth",
            "peer",
            "name",
            &b,
            "netns",
            &host_ns.name,
        ]);
        etcd_ns.add_address(&a, "198.18.7.1/30").unwrap();
        etcd_ns.link_up(&a).unwrap();
        host_ns.ip(&["addr", "add", "198.18.7.2/30", "dev", &b]);
        host_ns.ip(&["link", "set", &b, "up"]);
        etcd =
            Some(brindle_testbed::Etcd::start_in(&etcd_ns, "198.18.7.1".parse().unwrap()).unwrap());
        "etcd://198.18.7.1:2379".to_owned()
    });
    let c = TestNetns::new("cnietcdc");
    let conf = host.conf(json!({}));
    let r = host
        .cni("ADD", &container_id(&c), &netns_path(&c), &conf)
        .expect_ok("ADD over etcd");
    assert!(first_ip(&r).starts_with("10.87."), "{r}");
    let keys = etcd
        .as_ref()
        .unwrap()
        .etcdctl(&["get", "--prefix", "--keys-only", "/"])
        .unwrap();
    assert!(keys.contains("workloadendpoints/default/"), "{keys}");
    host.cni("DEL", &container_id(&c), &netns_path(&c), &conf)
        .expect_ok("DEL over etcd");
    host.cni("DEL", &container_id(&c), &netns_path(&c), &conf)
        .expect_ok("DEL again over etcd");
    assert!(host.endpoint(&endpoint_name(&c)).is_none());
    assert!(!host.handle_exists(&format!("brindle-test.{}", container_id(&c))));
    drop(host);
    drop(etcd);
}
