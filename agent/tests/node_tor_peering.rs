//! Peering a real `brindle-node` with a top-of-rack router (a real BIRD 2
//! or FRR in the router's namespace) as Calico users configure it:
//! `BGPPeer` fields that a ToR in production asks for.
//!
//! Passwords: `password.secretKeyRef {name, key}` is the file
//! `<secrets dir>/<name>/<key>`. With no file the peer is held back (no
//! session without the password asked for) and `node status` says which
//! file is missing; with a wrong password the ToR drops our segments and
//! the session stays down; with the right one it comes up, and a changed
//! file re-keys the session without restarting the daemon.
//!
//! Needs root. Every namespace, process and temp file is removed on drop,
//! also when a test panics.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use brindle_testbed::{poll_until, BgpConfig, Bird, Frr, Neighbor};
use common::fabric::*;

const PASSWORD: &str = "tor-s3cret";
const TOR_ROUTE: &str = "10.99.0.0/24";

fn write_secret(dir: &Path, text: &str) {
    std::fs::create_dir_all(dir.join("tor-auth")).unwrap();
    std::fs::write(dir.join("tor-auth/password"), text).unwrap();
}

/// The ToR's side: requires our password and announces a route.
fn tor_config(node_ip: Ipv4Addr, gw: Ipv4Addr) -> BgpConfig {
    BgpConfig::new(gw, 65100)
        .with_neighbor(Neighbor {
            password: Some(PASSWORD.into()),
            ..Neighbor::new(IpAddr::V4(node_ip), 64512)
        })
        .originate(TOR_ROUTE)
}

/// Waits until `node status` shows the ToR's row with `want` true of it.
fn wait_tor_row(
    node: &NodeDaemon,
    what: &str,
    want: impl Fn(&brindle_model::status::PeerRow) -> bool,
) {
    let seen = poll_until(WAIT, Duration::from_millis(200), || {
        Ok(node
            .status()
            .and_then(|r| r.peers.into_iter().find(|p| p.name == "tor-s0"))
            .filter(|p| want(p)))
    })
    .unwrap();
    assert!(
        seen.is_some(),
        "{what}: node status {:?}\n{}",
        node.status(),
        tail(&node.log())
    );
}

fn password_scenario(
    start_tor: impl FnOnce(&brindle_testbed::Netns, &BgpConfig) -> Box<dyn std::any::Any>,
) {
    let fabric = brindle_testbed::hosts_on_two_subnets([1, 0]).unwrap();
    let host = &fabric.hosts[0];
    let gw0 = Ipv4Addr::new(10, 0, 1, 254);
    let store = Store::embedded();
    let secrets = tempfile::tempdir().unwrap();
    store.apply(&pool_yaml("10.76.0.0/16", "Never"));
    store.apply(&node_yaml("node-a", 0));
    store.apply(&format!(
        "{}  password:\n    secretKeyRef:\n      name: tor-auth\n      key: password\n",
        tor_peer_yaml(0, gw0)
    ));
    let _tor = start_tor(&fabric.router, &tor_config(host.ipv4, gw0));
    let secrets_dir = secrets.path().display().to_string();
    let node = NodeDaemon::start_with(
        &store,
        host,
        "node-a",
        true,
        &["--secrets-dir", &secrets_dir],
    );

    // No file: the peer is held back, and status says which file.
    wait_tor_row(&node, "missing secret", |p| {
        !p.established && p.info.contains("tor-auth/password") && p.info.contains("No such file")
    });

    // A wrong password: the ToR drops our segments; no session.
    write_secret(secrets.path(), "not-the-password\n");
    wait_tor_row(&node, "wrong password configured", |p| {
        !p.established && !p.info.contains("tor-auth/password")
    });
    std::thread::sleep(Duration::from_secs(3));
    let report = node.status().unwrap();
    assert!(
        report.peers.iter().all(|p| !p.established),
        "a session came up with a wrong password: {report:?}"
    );
    assert!(
        report.peers[0].info.contains("TCP-MD5: no answer yet"),
        "status does not say why: {report:?}"
    );
    assert!(route_of(&host.ns, TOR_ROUTE).is_empty());

    // The file fixed: the session comes up without a restart of the node.
    write_secret(secrets.path(), &format!("{PASSWORD}\n"));
    node.wait_established(1);
    wait_route(
        &host.ns,
        TOR_ROUTE,
        |r| r.contains(&format!("via {gw0}")),
        "ToR route",
    );
}

#[test]
fn tor_password_with_bird() {
    if !can_run() {
        return;
    }
    password_scenario(|ns, config| Box::new(Bird::start(ns, config).unwrap()));
}

#[test]
fn tor_password_with_frr() {
    if !can_run() {
        return;
    }
    password_scenario(|ns, config| Box::new(Frr::start(ns, config).unwrap()));
}
