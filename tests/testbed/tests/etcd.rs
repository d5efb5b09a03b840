//! etcd starts, answers, and disappears with its handle.

mod common;

use std::net::IpAddr;

use brindle_testbed::{two_hosts_one_subnet, Etcd};
use common::{assert_all_gone, assert_removed};

#[test]
fn etcd_on_loopback_stores_a_key() {
    let etcd = Etcd::start().unwrap();
    assert!(etcd.client_url().starts_with("http://127.0.0.1:"));
    etcd.etcdctl(&["put", "/brindle/test", "hello"]).unwrap();
    let got = etcd
        .etcdctl(&["get", "--print-value-only", "/brindle/test"])
        .unwrap();
    assert_eq!(got.trim(), "hello");
    let (pid, dir) = (etcd.pid(), etcd.dir().to_path_buf());
    drop(etcd);
    assert_all_gone(&[], &[pid]);
    assert_removed(&dir);
}

#[test]
fn etcd_in_a_namespace_serves_other_hosts() {
    let net = two_hosts_one_subnet().unwrap();
    let [server, client] = &net.hosts;
    let etcd = Etcd::start_in(&server.ns, IpAddr::V4(server.ipv4)).unwrap();
    assert_eq!(etcd.client_url(), "http://10.0.1.1:2379");
    etcd.etcdctl(&["put", "k", "v"]).unwrap();
    // Another host reaches it over the LAN.
    let got = client
        .ns
        .run(&[
            "etcdctl",
            "--endpoints",
            etcd.client_url(),
            "get",
            "--print-value-only",
            "k",
        ])
        .unwrap();
    assert_eq!(got.trim(), "v");
    let (pid, dir) = (etcd.pid(), etcd.dir().to_path_buf());
    let names = vec![server.ns.name().to_string(), client.ns.name().to_string()];
    drop(etcd);
    drop(net);
    assert_all_gone(&names, &[pid]);
    assert_removed(&dir);
}
