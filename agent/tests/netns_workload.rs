//! Workload plumbing against the real kernel: a "host" namespace and two
//! "container" namespaces; ADD both, ping between them through the host
//! (proxy ARP, host routes; IPv6 via the host's link-local address); DEL,
//! DEL again; nothing left.

mod common;

use brindle_agent::netlink::Netlink;
use brindle_agent::netns::block_on_in_netns;
use brindle_agent::route::BRINDLE_ROUTE_PROTOCOL;
use brindle_agent::workload::{
    add_workload, add_workload_blocking, del_workload, del_workload_blocking,
    enable_host_forwarding, host_veth_name, WorkloadSpec, HOST_SIDE_MAC,
};
use common::{can_run, TestNetns};

/// The host needs a unicast route covering 169.254.1.1 on some other
/// interface, or proxy ARP has nothing to answer for (a real node has its
/// default route).
fn host_namespace() -> TestNetns {
    let host = TestNetns::new("wlhost");
    // No dummy module on the test kernel: a veth pair with a dead end.
    host.ip(&[
        "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink0p",
    ]);
    host.ip(&["link", "set", "uplink0p", "up"]);
    host.ip(&["addr", "add", "192.0.2.1/24", "dev", "uplink0"]);
    host.ip(&["link", "set", "uplink0", "up"]);
    host.ip(&["route", "add", "default", "dev", "uplink0"]);
    brindle_agent::netns::run_in_netns(&host.path(), enable_host_forwarding)
        .unwrap()
        .unwrap();
    host
}

fn spec(id: &str, container: &TestNetns, v4: &str, v6: &str) -> WorkloadSpec {
    WorkloadSpec {
        workload_id: id.to_owned(),
        netns: container.path(),
        container_ifname: "eth0".into(),
        addresses: vec![v4.parse().unwrap(), v6.parse().unwrap()],
        mtu: 1440,
        route_protocol: BRINDLE_ROUTE_PROTOCOL,
    }
}

#[test]
fn add_ping_del_two_workloads() {
    if !can_run() {
        return;
    }
    let host = host_namespace();
    let c1 = TestNetns::new("wlc1");
    let c2 = TestNetns::new("wlc2");
    let id1 = format!("test/{}-a", c1.name);
    let id2 = format!("test/{}-b", c2.name);
    let s1 = spec(&id1, &c1, "10.65.0.1/32", "fd00:65::1/128");
    let s2 = spec(&id2, &c2, "10.65.0.2/32", "fd00:65::2/128");

    let (a1, a2) = {
        let (s1, s2) = (s1.clone(), s2.clone());
        block_on_in_netns(&host.path(), move || async move {
            let nl = Netlink::connect(BRINDLE_ROUTE_PROTOCOL).unwrap();
            let a1 = add_workload(&nl, &s1).await.expect("ADD 1");
            let a2 = add_workload(&nl, &s2).await.expect("ADD 2");
            // ADD again (runtime retry) converges to the same result.
            let a2_again = add_workload(&nl, &s2).await.expect("ADD 2 again");
            assert_eq!(a2.host_ifname, a2_again.host_ifname);
            (a1, a2_again)
        })
        .unwrap()
    };
    assert_eq!(a1.host_ifname, host_veth_name(&id1));

    // Host side as specified.
    let link = host.ip(&["-d", "link", "show", &a1.host_ifname]);
    assert!(link.contains("ee:ee:ee:ee:ee:ee"), "{link}");
    assert!(link.contains("mtu 1440"), "{link}");
    let routes = host.ip(&["route", "show", "proto", "80"]);
    assert!(
        routes.contains(&format!("10.65.0.1 dev {} scope link", a1.host_ifname)),
        "{routes}"
    );
    let routes6 = host.ip(&["-6", "route", "show", "proto", "80"]);
    assert!(
        routes6.contains(&format!("fd00:65::2 dev {}", a2.host_ifname)),
        "{routes6}"
    );
    for (key, want) in [
        (format!("net.ipv4.conf.{}.proxy_arp", a1.host_ifname), "1"),
        (
            format!("net.ipv4.neigh.{}.proxy_delay", a1.host_ifname),
            "0",
        ),
        (format!("net.ipv4.conf.{}.forwarding", a1.host_ifname), "1"),
        (
            format!("net.ipv4.conf.{}.route_localnet", a1.host_ifname),
            "1",
        ),
        (format!("net.ipv6.conf.{}.proxy_ndp", a1.host_ifname), "1"),
        (format!("net.ipv6.conf.{}.accept_ra", a1.host_ifname), "0"),
        (format!("net.ipv6.conf.{}.forwarding", a1.host_ifname), "1"),
    ] {
        let out = host.exec(&["sysctl", "-n", &key]);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want, "{key}");
    }

    // Container side as specified.
    let c_routes = c1.ip(&["route", "show"]);
    assert!(
        c_routes.contains("default via 169.254.1.1 dev eth0"),
        "{c_routes}"
    );
    assert!(c_routes.contains("169.254.1.1 dev eth0"), "{c_routes}");
    let c_routes6 = c1.ip(&["-6", "route", "show"]);
    assert!(
        c_routes6.contains("default via fe80::ecee:eeff:feee:eeee dev eth0"),
        "{c_routes6}"
    );
    let c_addr = c1.ip(&["addr", "show", "eth0"]);
    assert!(c_addr.contains("10.65.0.1/32"), "{c_addr}");
    assert!(c_addr.contains("fd00:65::1/128"), "{c_addr}");
    assert!(c_addr.contains("mtu 1440"), "{c_addr}");

    // Traffic through the host, both families.
    assert!(c1.ping("10.65.0.2"), "v4 c1 -> c2");
    assert!(c2.ping("10.65.0.1"), "v4 c2 -> c1");
    assert!(c1.ping("fd00:65::2"), "v6 c1 -> c2");
    assert!(c2.ping("fd00:65::1"), "v6 c2 -> c1");
    // The container resolved its gateway to the fixed host-side MAC.
    let neigh = c1.ip(&["neigh", "show", "169.254.1.1"]);
    let mac = HOST_SIDE_MAC.map(|b| format!("{b:02x}")).join(":");
    assert!(neigh.contains(&mac), "{neigh}");

    // DEL twice.
    let (first, second) = block_on_in_netns(&host.path(), move || async move {
        let nl = Netlink::connect(BRINDLE_ROUTE_PROTOCOL).unwrap();
        let first = del_workload(&nl, &id1).await.expect("DEL 1")
            && del_workload(&nl, &id2).await.expect("DEL 2");
        let second = del_workload(&nl, &id1).await.expect("DEL 1 again")
            || del_workload(&nl, &id2).await.expect("DEL 2 again");
        (first, second)
    })
    .unwrap();
    assert!(first, "first DEL removed the veths");
    assert!(!second, "second DEL found nothing and succeeded");

    let links = host.ip(&["link", "show"]);
    assert!(!links.contains("cali"), "{links}");
    assert!(!links.contains("tmp"), "{links}");
    assert_eq!(host.ip(&["route", "show", "proto", "80"]).trim(), "");
    assert_eq!(host.ip(&["-6", "route", "show", "proto", "80"]).trim(), "");
    assert!(!c1.ip(&["link", "show"]).contains("eth0"));
}

#[test]
fn del_cleans_up_half_created_state() {
    if !can_run() {
        return;
    }
    let host = host_namespace();
    let id = format!("test/{}-half", host.name);
    // As if ADD died right after creating the pair.
    let hostif = host_veth_name(&id);
    let tmp = format!("tmp{}", &hostif[4..]);
    host.ip(&["link", "add", &hostif, "type", "veth", "peer", "name", &tmp]);
    // The synchronous entry point the CNI binary uses.
    let removed = brindle_agent::netns::run_in_netns(&host.path(), move || {
        del_workload_blocking(&id, BRINDLE_ROUTE_PROTOCOL).expect("DEL")
    })
    .unwrap();
    assert!(removed);
    let links = host.ip(&["link", "show"]);
    assert!(!links.contains(&hostif) && !links.contains(&tmp), "{links}");
}

#[test]
fn add_rejects_non_host_prefix() {
    if !can_run() {
        return;
    }
    let host = host_namespace();
    let c = TestNetns::new("wlbad");
    let mut s = spec(
        &format!("test/{}-bad", c.name),
        &c,
        "10.65.0.1/32",
        "fd00:65::1/128",
    );
    s.addresses = vec!["10.65.0.0/24".parse().unwrap()];
    let err = brindle_agent::netns::run_in_netns(&host.path(), move || {
        add_workload_blocking(&s).unwrap_err().to_string()
    })
    .unwrap();
    assert!(err.contains("not a host prefix"), "{err}");
    assert!(!host.ip(&["link", "show"]).contains("cali"));
    let forwarding = host.exec(&["sysctl", "-n", "net.ipv4.ip_forward"]);
    assert_eq!(String::from_utf8_lossy(&forwarding.stdout).trim(), "1");
}

/// Many concurrent ADDs into one host (calico#3940 appeared when creating
/// thousands of pods): no name collisions, no "route already exists", every
/// host route points at its own veth; then concurrent DELs leave nothing.
#[test]
fn concurrent_adds_and_dels_do_not_collide() {
    if !can_run() {
        return;
    }
    const WORKLOADS: usize = 32;
    const THREADS: usize = 8;
    let host = host_namespace();
    let containers: Vec<TestNetns> = (0..WORKLOADS).map(|_| TestNetns::new("wlm")).collect();
    let specs: Vec<WorkloadSpec> = containers
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut s = spec(
                &format!("test/{}", c.name),
                c,
                &format!("10.66.0.{}/32", i + 1),
                &format!("fd00:66::{:x}/128", i + 1),
            );
            s.mtu = 1500;
            s
        })
        .collect();
    let host_path = host.path();
    let per_thread = WORKLOADS.div_ceil(THREADS);
    std::thread::scope(|scope| {
        for chunk in specs.chunks(per_thread) {
            let host_path = host_path.clone();
            scope.spawn(move || {
                for s in chunk {
                    let s = s.clone();
                    brindle_agent::netns::run_in_netns(&host_path, move || {
                        add_workload_blocking(&s).expect("concurrent ADD")
                    })
                    .unwrap();
                }
            });
        }
    });
    let routes = host.ip(&["route", "show", "proto", "80"]);
    for (i, s) in specs.iter().enumerate() {
        let line = format!(
            "10.66.0.{} dev {} scope link",
            i + 1,
            host_veth_name(&s.workload_id)
        );
        assert!(routes.contains(&line), "missing {line}\n{routes}");
    }
    assert_eq!(routes.lines().count(), WORKLOADS);
    assert!(containers[0].ping("10.66.0.2"));
    assert!(containers[WORKLOADS - 1].ping("fd00:66::1"));

    std::thread::scope(|scope| {
        for chunk in specs.chunks(per_thread) {
            let host_path = host_path.clone();
            scope.spawn(move || {
                for s in chunk {
                    let id = s.workload_id.clone();
                    let removed = brindle_agent::netns::run_in_netns(&host_path, move || {
                        del_workload_blocking(&id, BRINDLE_ROUTE_PROTOCOL).expect("concurrent DEL")
                    })
                    .unwrap();
                    assert!(removed);
                }
            });
        }
    });
    assert_eq!(host.ip(&["route", "show", "proto", "80"]).trim(), "");
    assert!(!host.ip(&["link", "show"]).contains("cali"));
}

#[test]
fn failed_add_leaves_nothing_behind() {
    if !can_run() {
        return;
    }
    let host = host_namespace();
    let c = TestNetns::new("wlgone");
    let mut s = spec(
        &format!("test/{}-gone", c.name),
        &c,
        "10.65.0.9/32",
        "fd00:65::9/128",
    );
    // The container's namespace vanished before ADD got to it.
    s.netns = std::path::PathBuf::from(format!("/run/netns/{}-missing", c.name));
    let err = brindle_agent::netns::run_in_netns(&host.path(), move || {
        add_workload_blocking(&s).unwrap_err().to_string()
    })
    .unwrap();
    assert!(err.contains("missing"), "{err}");
    let links = host.ip(&["link", "show"]);
    assert!(!links.contains("cali") && !links.contains("tmp"), "{links}");
    assert_eq!(host.ip(&["route", "show", "proto", "80"]).trim(), "");
}
