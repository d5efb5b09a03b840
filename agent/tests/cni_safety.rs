//! Repeated, failing and concurrent CNI calls for one container never leave
//! an address that a container uses free in IPAM (issue: duplicate address
//! after a failed repeat ADD, and under concurrent ADDs of one container).
//!
//! Each case ends the same way: 100 further ADDs (through `brindle-ipam`,
//! as a runtime delegating IPAM would call it) never hand out an address a
//! running container holds, and `ipam check` finds nothing in use that IPAM
//! does not hold. Needs root.

mod common;

mod cni_support;

use std::collections::BTreeSet;

use brindle_datastore::ipam::HandleDoc;
use brindle_datastore::keys::handle_key;
use cni_support::{container_id, first_ip, netns_path, Host};
use common::{can_run, TestNetns};
use serde_json::json;

/// Addresses on `ifname` inside `ns` (IPv4, without prefix length).
fn addresses_on(ns: &TestNetns, ifname: &str) -> Vec<String> {
    let out = ns.ip(&["-4", "-o", "addr", "show", "dev", ifname]);
    out.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            it.find(|w| *w == "inet")?;
            Some(it.next()?.split('/').next()?.to_owned())
        })
        .collect()
}

/// How many addresses IPAM's handle document says `handle` holds.
fn held_by_handle(host: &Host, handle: &str) -> usize {
    let key = handle_key(handle);
    host.block_on(|ipam| async move {
        ipam.store()
            .get_json::<HandleDoc>(key)
            .await
            .unwrap()
            .map(|d| d.value.block.values().sum::<usize>())
            .unwrap_or(0)
    })
}

/// Runs 100 IPAM ADDs for fresh containers and returns their addresses.
fn hundred_more_adds(host: &Host) -> BTreeSet<String> {
    let conf = host.conf(json!({})).to_string();
    let mut got = BTreeSet::new();
    for n in 0..100 {
        let id = format!("later-{n}");
        let out = host
            .run_plugin(
                "brindle-ipam",
                &[
                    ("CNI_COMMAND", "ADD"),
                    ("CNI_CONTAINERID", &id),
                    ("CNI_NETNS", "/proc/self/ns/net"),
                    ("CNI_IFNAME", "eth0"),
                ],
                conf.as_bytes(),
            )
            .expect_ok("a later IPAM ADD");
        let ip = first_ip(&out);
        assert!(got.insert(ip.clone()), "IPAM handed out {ip} twice");
    }
    got
}

/// `ipam check` (the library call behind `brindlectl ipam check`) finds no
/// address in use that IPAM does not hold for its user.
fn assert_ipam_consistent(host: &Host) {
    let report = host.block_on(|ipam| async move {
        let live = ipam.live_handles_from_store().await.unwrap();
        let users = ipam.address_users_from_store().await.unwrap();
        ipam.check_with_users(&live, &users).await.unwrap()
    });
    assert!(
        report.conflicts.is_empty(),
        "ipam check: {:?}",
        report.conflicts
    );
}

#[test]
fn a_failed_repeat_add_keeps_the_running_containers_address() {
    if !can_run() {
        return;
    }
    let host = Host::new(&["10.81.0.0/24"]);
    let c1 = TestNetns::new("cnirep");
    let conf = host.conf(json!({}));
    let cid = container_id(&c1);
    let first = host
        .cni("ADD", &cid, &netns_path(&c1), &conf)
        .expect_ok("ADD c1");
    let ip = first_ip(&first);
    let handle = format!("brindle-test.{cid}");

    // The case: the same ADD again with an interface name the
    // kernel refuses. Refused before anything is allocated.
    host.cni_env(
        &[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", &cid),
            ("CNI_NETNS", &netns_path(&c1)),
            ("CNI_IFNAME", "averyveryverylongifname"),
        ],
        conf.to_string().as_bytes(),
    )
    .expect_code("ADD with a too-long CNI_IFNAME", 4);

    // A repeat that fails after IPAM answered (a second interface into a
    // "namespace" that is a regular file): IPAM hands back the addresses the
    // handle already holds, and the failure must not release them.
    let not_a_netns = host.dir.path().join("not-a-netns");
    std::fs::write(&not_a_netns, b"").unwrap();
    let out = host.cni_env(
        &[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", &cid),
            ("CNI_NETNS", not_a_netns.to_str().unwrap()),
            ("CNI_IFNAME", "eth1"),
        ],
        conf.to_string().as_bytes(),
    );
    assert!(!out.ok, "ADD into a regular file succeeded: {}", out.stdout);

    assert_eq!(addresses_on(&c1, "eth0"), vec![ip.clone()]);
    assert_eq!(
        held_by_handle(&host, &handle),
        1,
        "the container's address is still held"
    );
    assert_ipam_consistent(&host);
    let later = hundred_more_adds(&host);
    assert!(
        !later.contains(&ip),
        "{ip}, held by c1, was handed out again"
    );
    assert_ipam_consistent(&host);
}

#[test]
fn concurrent_adds_of_one_container_give_it_one_address() {
    if !can_run() {
        return;
    }
    let host = std::sync::Arc::new(Host::new(&["10.82.0.0/24"]));
    let c1 = TestNetns::new("cniconc");
    let cid = container_id(&c1);
    let netns = netns_path(&c1);
    let conf = host.conf(json!({}));
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                let host = host.clone();
                let (cid, netns, conf) = (cid.clone(), netns.clone(), conf.clone());
                s.spawn(move || host.cni("ADD", &cid, &netns, &conf))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ips = BTreeSet::new();
    for out in results {
        let result = out.expect_ok("one of six concurrent ADDs");
        ips.insert(first_ip(&result));
    }
    assert_eq!(ips.len(), 1, "six ADDs of one container: {ips:?}");
    let ip = ips.into_iter().next().unwrap();
    assert_eq!(addresses_on(&c1, "eth0"), vec![ip.clone()]);
    assert_eq!(held_by_handle(&host, &format!("brindle-test.{cid}")), 1);
    assert_ipam_consistent(&host);
    let later = hundred_more_adds(&host);
    assert!(
        !later.contains(&ip),
        "{ip}, held by c1, was handed out again"
    );

    // The repeated ADDs answered with the running container's result; DEL
    // still removes everything once.
    host.cni("DEL", &cid, &netns, &conf).expect_ok("DEL");
    assert!(!c1.ip(&["link", "show"]).contains("eth0"));
    assert_eq!(held_by_handle(&host, &format!("brindle-test.{cid}")), 0);
}
