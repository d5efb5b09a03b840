//! brindle-node's address autodetection (no `--ip`) over rtnetlink, in a
//! namespace with two uplinks: the address comes from the interface of the
//! lowest-metric IPv4 default route, its global address (not a link-scope
//! one), with its prefix length; no default route is a clear error.

mod common;

use brindle_agent::netlink::Netlink;
use brindle_agent::netns::block_on_in_netns;
use brindle_agent::node::register::autodetect_address;
use brindle_agent::route::BRINDLE_ROUTE_PROTOCOL;
use common::{can_run, veth_between, TestNetns};

fn detect(ns: &TestNetns) -> Result<(String, String), String> {
    block_on_in_netns(&ns.path(), || async {
        let nl = Netlink::connect(BRINDLE_ROUTE_PROTOCOL).unwrap();
        autodetect_address(&nl)
            .await
            .map(|(net, dev)| (net.to_string(), dev))
            .map_err(|e| e.to_string())
    })
    .unwrap()
}

#[test]
fn the_lowest_metric_default_route_names_the_address() {
    if !can_run() {
        return;
    }
    let host = TestNetns::new("adet");
    let peer = TestNetns::new("adetp");
    assert!(
        detect(&host).unwrap_err().contains("no IPv4 default route"),
        "no default route yet"
    );
    veth_between(&host, "up1", &peer, "p1");
    veth_between(&host, "up2", &peer, "p2");
    // up1: a link-scope address first, then the global one.
    host.ip(&[
        "addr",
        "add",
        "169.254.7.7/16",
        "dev",
        "up1",
        "scope",
        "link",
    ]);
    host.ip(&["addr", "add", "10.61.0.5/24", "dev", "up1"]);
    host.ip(&["addr", "add", "10.62.0.5/23", "dev", "up2"]);
    host.ip(&[
        "route",
        "add",
        "default",
        "via",
        "10.61.0.1",
        "dev",
        "up1",
        "metric",
        "200",
    ]);
    host.ip(&[
        "route",
        "add",
        "default",
        "via",
        "10.62.0.1",
        "dev",
        "up2",
        "metric",
        "100",
    ]);
    assert_eq!(
        detect(&host).unwrap(),
        ("10.62.0.5/23".to_owned(), "up2".to_owned())
    );
    host.ip(&["route", "del", "default", "dev", "up2"]);
    assert_eq!(
        detect(&host).unwrap(),
        ("10.61.0.5/24".to_owned(), "up1".to_owned())
    );
    // A default route on an interface with no global IPv4 address.
    host.ip(&["addr", "del", "10.61.0.5/24", "dev", "up1"]);
    host.ip(&["route", "add", "default", "dev", "up1", "metric", "50"]);
    let err = detect(&host).unwrap_err();
    assert!(err.contains("up1 has no global IPv4 address"), "{err}");
}
