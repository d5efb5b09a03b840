//! Namespaces, veths, LANs and the routed topology, with real pings.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use brindle_testbed::{hosts_on_two_subnets, two_hosts_one_subnet, veth, Netns};
use common::{assert_all_gone, namespaces};

#[test]
fn two_namespaces_ping_over_a_veth_v4_and_v6() {
    let (names, sleeper_pid) = {
        let a = Netns::new("a").unwrap();
        let b = Netns::new("b").unwrap();
        veth(
            &a,
            "eth0",
            &["192.0.2.1/30", "2001:db8::1/64"],
            &b,
            "eth0",
            &["192.0.2.2/30", "2001:db8::2/64"],
        )
        .unwrap();
        assert!(a.ping("192.0.2.2".parse().unwrap()).unwrap());
        assert!(b.ping("2001:db8::1".parse().unwrap()).unwrap());
        assert!(
            !a.ping("192.0.2.99".parse().unwrap()).unwrap(),
            "nobody has .99"
        );
        let live = namespaces();
        assert!(live.contains(&a.name().to_string()) && live.contains(&b.name().to_string()));

        // A stray process inside the namespace must not keep it alive.
        let log = tempfile::NamedTempFile::new().unwrap();
        let sleeper = a.spawn("sleep", &["sleep", "600"], log.path()).unwrap();
        let pid = sleeper.pid();
        std::mem::forget(sleeper);
        (vec![a.name().to_string(), b.name().to_string()], pid)
    };
    // The forgotten child is killed by the namespace teardown but still needs
    // reaping by us, its parent.
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(sleeper_pid as i32), None);
    assert_all_gone(&names, &[sleeper_pid]);
}

#[test]
fn run_spawn_and_sysctl_inside_a_namespace() {
    let ns = Netns::new("sys").unwrap();
    assert_eq!(ns.sysctl("net.ipv4.ip_forward").unwrap(), "0");
    ns.enable_forwarding().unwrap();
    assert_eq!(ns.sysctl("net.ipv4.ip_forward").unwrap(), "1");
    assert_eq!(ns.sysctl("net.ipv6.conf.all.forwarding").unwrap(), "1");

    let links = ns.run(&["ip", "-o", "link"]).unwrap();
    assert_eq!(
        links.lines().count(),
        1,
        "only lo in a new namespace: {links}"
    );
    assert!(links.contains("lo:") && links.contains("UP"), "{links}");
    assert!(ns.run(&["false"]).is_err());

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let mut proc_ = ns
        .spawn("echo", &["sh", "-c", "echo hello; exec sleep 600"], &log)
        .unwrap();
    let pid = proc_.pid();
    assert!(ns.pids().unwrap().contains(&pid));
    brindle_testbed::poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
        Ok(proc_.log().contains("hello").then_some(()))
    })
    .unwrap()
    .expect("output reaches the log");
    assert!(proc_.is_running());
    proc_.stop();
    assert!(!proc_.is_running());
    let name = ns.name().to_string();
    drop(ns);
    assert_all_gone(&[name], &[pid]);
}

#[test]
fn lan_joins_two_hosts() {
    let net = two_hosts_one_subnet().unwrap();
    let [a, b] = &net.hosts;
    assert!(a.ns.ping(IpAddr::V4(b.ipv4)).unwrap());
    assert!(b.ns.ping(IpAddr::V6(a.ipv6)).unwrap());
    let names = vec![
        a.ns.name().to_string(),
        b.ns.name().to_string(),
        net.lan.switch().name().to_string(),
    ];
    drop(net);
    assert_all_gone(&names, &[]);
}

#[test]
fn router_joins_two_subnets() {
    let fabric = hosts_on_two_subnets([2, 1]).unwrap();
    assert_eq!(fabric.hosts.len(), 3);
    assert_eq!(fabric.hosts[2].subnet, 1);
    let far = &fabric.hosts[2];
    for near in &fabric.hosts[..2] {
        assert!(
            near.ns.ping(IpAddr::V4(far.ipv4)).unwrap(),
            "{} -> {}",
            near.ipv4,
            far.ipv4
        );
        assert!(
            far.ns.ping(IpAddr::V6(near.ipv6)).unwrap(),
            "{} -> {}",
            far.ipv6,
            near.ipv6
        );
    }
    let mut names: Vec<String> = fabric
        .hosts
        .iter()
        .map(|h| h.ns.name().to_string())
        .collect();
    names.push(fabric.router.name().to_string());
    names.extend(fabric.lans.iter().map(|l| l.switch().name().to_string()));
    drop(fabric);
    assert_all_gone(&names, &[]);
}
