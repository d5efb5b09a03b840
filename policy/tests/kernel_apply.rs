//! The applier against the real kernel, in a network namespace of its own,
//! with both iptables backends (nft and legacy).
//!
//! A "node" namespace holds three workloads wired as the agent wires them
//! (`cali*` veth with proxy ARP and a /32 host route; `eth0` in the workload
//! with the 169.254.1.1 gateway): two in network `blue`, one in `red`.
//! Traffic proves the compiled rules isolate the networks; the applier's
//! bookkeeping proves it writes only what changed, repairs drift and leaves
//! nothing behind on uninstall. Needs root.

mod common;

use std::net::IpAddr;

use brindle_policy::apply::{Applier, IptablesFlavor, SystemBackend};
use brindle_policy::compile::{compile, Config};
use brindle_policy::ir::{PolicyModel, WorkloadEndpoint};
use brindle_testbed::{veth, Netns};
use common::in_netns;

struct Workload {
    ns: Netns,
    ip: IpAddr,
}

fn workload(node: &Netns, tag: &str, ip: &str, iface: &str) -> Workload {
    let ns = Netns::new(tag).unwrap();
    veth(node, iface, &[], &ns, "eth0", &[&format!("{ip}/32")]).unwrap();
    ns.ip(&[
        "route",
        "add",
        "169.254.1.1",
        "dev",
        "eth0",
        "scope",
        "link",
    ])
    .unwrap();
    ns.ip(&[
        "route",
        "add",
        "default",
        "via",
        "169.254.1.1",
        "dev",
        "eth0",
    ])
    .unwrap();
    node.set_sysctl(&format!("net.ipv4.conf.{iface}.proxy_arp"), "1")
        .unwrap();
    node.set_sysctl(&format!("net.ipv4.neigh.{iface}.proxy_delay"), "0")
        .unwrap();
    node.ip(&[
        "route",
        "add",
        &format!("{ip}/32"),
        "dev",
        iface,
        "scope",
        "link",
    ])
    .unwrap();
    Workload {
        ns,
        ip: ip.parse().unwrap(),
    }
}

fn endpoint(name: &str, iface: &str, ip: &str, network: &str) -> WorkloadEndpoint {
    WorkloadEndpoint {
        name: name.to_string(),
        interface: iface.to_string(),
        addrs: vec![format!("{ip}/32").parse().unwrap()],
        labels: Default::default(),
        profiles: vec![network.to_string()],
    }
}

fn save_all(node: &Netns, flavor: IptablesFlavor) -> String {
    let tool = match flavor {
        IptablesFlavor::Nft => "iptables-nft-save",
        IptablesFlavor::Legacy => "iptables-legacy-save",
    };
    node.run(&[tool]).unwrap() + &node.run(&["ipset", "save"]).unwrap()
}

fn isolates_networks_and_repairs_drift(flavor: IptablesFlavor) {
    let node = Netns::new("pnode").unwrap();
    node.enable_forwarding().unwrap();
    // Proxy ARP answers for 169.254.1.1 only when the node has a route to it
    // through another interface: a node always has a default route.
    node.ip(&[
        "link",
        "add",
        "uplink",
        "type",
        "veth",
        "peer",
        "name",
        "uplink-peer",
    ])
    .unwrap();
    node.link_up("uplink").unwrap();
    node.ip(&["route", "add", "default", "dev", "uplink"])
        .unwrap();
    let ifs = [
        brindle_testbed::unique_name("pa"),
        brindle_testbed::unique_name("pb"),
        brindle_testbed::unique_name("pc"),
    ];
    // Interface names must look like workload interfaces to the rules.
    let ifs: Vec<String> = ifs
        .iter()
        .map(|n| format!("cali{}", &n[n.len().saturating_sub(11)..]))
        .collect();
    let a = workload(&node, "wa", "10.65.0.2", &ifs[0]);
    let b = workload(&node, "wb", "10.65.0.3", &ifs[1]);
    let c = workload(&node, "wc", "10.65.0.4", &ifs[2]);

    // Before any policy, everything reaches everything.
    assert!(a.ns.ping(b.ip).unwrap(), "no policy yet: a reaches b");

    let mut model = PolicyModel {
        endpoints: vec![
            endpoint("a", &ifs[0], "10.65.0.2", "blue"),
            endpoint("b", &ifs[1], "10.65.0.3", "red"),
            endpoint("c", &ifs[2], "10.65.0.4", "blue"),
        ],
        ..PolicyModel::default()
    };
    let config = Config::default();

    let (first, second) = in_netns(node.name(), || {
        let mut applier = Applier::new(SystemBackend::new(flavor));
        let first = applier.apply(&compile(&model, &config)).unwrap();
        let second = applier.apply(&compile(&model, &config)).unwrap();
        (first, second)
    });
    assert!(first.chains_written > 0);
    assert_eq!(
        second,
        Default::default(),
        "an unchanged model writes nothing"
    );

    assert!(a.ns.ping(c.ip).unwrap(), "same network (blue) must pass");
    assert!(!a.ns.ping(b.ip).unwrap(), "blue -> red must be dropped");
    assert!(!b.ns.ping(c.ip).unwrap(), "red -> blue must be dropped");

    // Moving c from blue to red is a membership change: ipsets only (both
    // networks keep a local member, so no profile jump appears or goes).
    model.endpoints[2].profiles = vec!["red".to_string()];
    let moved = in_netns(node.name(), || {
        let mut applier = Applier::new(SystemBackend::new(flavor));
        applier.apply(&compile(&model, &config)).unwrap()
    });
    assert_eq!(moved.chains_written, 0, "membership change rewrote chains");
    assert!(moved.members_added > 0 && moved.members_removed > 0);
    assert!(b.ns.ping(c.ip).unwrap(), "c is now in red with b");
    assert!(!a.ns.ping(c.ip).unwrap(), "c left blue");

    // Drift: delete a rule inside Brindle's chain and add a stray member by
    // hand; a resync puts both back.
    let tool = match flavor {
        IptablesFlavor::Nft => "iptables-nft",
        IptablesFlavor::Legacy => "iptables-legacy",
    };
    node.run(&[tool, "-D", "brindle-to-wl", "1"]).unwrap();
    node.run(&["ipset", "add", "brindle4n:blue", "10.99.0.1"])
        .unwrap();
    // A rule of someone else's in a built-in chain must survive everything.
    node.run(&[tool, "-A", "FORWARD", "-s", "192.0.2.1", "-j", "DROP"])
        .unwrap();
    let repaired = in_netns(node.name(), || {
        let mut applier = Applier::new(SystemBackend::new(flavor));
        applier.resync(&compile(&model, &config)).unwrap()
    });
    assert_eq!(
        repaired.chains_written, 1,
        "only the damaged chain is rewritten"
    );
    assert_eq!(repaired.members_removed, 1);
    let saved = node.run(&["ipset", "save", "brindle4n:blue"]).unwrap();
    assert!(!saved.contains("10.99.0.1"));

    // Uninstall leaves nothing of Brindle's.
    in_netns(node.name(), || {
        Applier::new(SystemBackend::new(flavor))
            .uninstall()
            .unwrap();
    });
    let after = save_all(&node, flavor);
    assert!(!after.contains("brindle"), "left behind:\n{after}");
    assert!(
        after.contains("-A FORWARD -s 192.0.2.1/32 -j DROP"),
        "{after}"
    );
    assert!(a.ns.ping(b.ip).unwrap(), "no rules, no isolation");
}

#[test]
fn nft_backend_isolates_networks_and_repairs_drift() {
    isolates_networks_and_repairs_drift(IptablesFlavor::Nft);
}

#[test]
fn legacy_backend_isolates_networks_and_repairs_drift() {
    isolates_networks_and_repairs_drift(IptablesFlavor::Legacy);
}

#[test]
fn every_golden_case_is_accepted_by_the_kernel() {
    // The golden outputs must be valid input for the real tools, on both
    // backends and families.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    for flavor in [IptablesFlavor::Nft, IptablesFlavor::Legacy] {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "yaml") {
                continue;
            }
            let model: PolicyModel =
                serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let node = Netns::new("pgold").unwrap();
            in_netns(node.name(), || {
                let mut applier = Applier::new(SystemBackend::new(flavor));
                let rulesets = compile(&model, &Config::default());
                applier
                    .apply(&rulesets)
                    .unwrap_or_else(|e| panic!("{} on {flavor:?}: {e}", path.display()));
                applier.uninstall().unwrap();
            });
        }
    }
}

/// `iptables_restore` returns once the kernel committed (it does not wait for
/// the tool to exit): the rules are there on return, a failing input is
/// reported with the tool's message and changes nothing, and the read-back
/// of the written chains (`verify`) agrees with what was written.
fn restore_returns_at_commit_and_reports_failures(flavor: IptablesFlavor) {
    use brindle_policy::apply::Backend;
    use brindle_policy::compile::Family;

    let node = Netns::new("prestore").unwrap();
    let tool = match flavor {
        IptablesFlavor::Nft => "iptables-nft",
        IptablesFlavor::Legacy => "iptables-legacy",
    };
    in_netns(node.name(), || {
        let mut backend = SystemBackend::new(flavor);
        let good = "*filter\n:brindle-t - [0:0]\n-F brindle-t\n-A brindle-t -p tcp --dport 80 -j ACCEPT\nCOMMIT\n";
        backend.iptables_restore(Family::V4, good).unwrap();
        // Straight after the call, with the tool possibly still exiting.
        let listed = backend
            .iptables_list_chain(Family::V4, "filter", "brindle-t")
            .unwrap()
            .expect("chain exists after restore");
        assert!(listed.contains("--dport 80 -j ACCEPT"), "{listed}");

        // Rewriting the chain (a deletion of rules) and then a failing
        // table: the first commits, the second is refused as a whole.
        let rewrite = "*filter\n:brindle-t - [0:0]\n-F brindle-t\n-A brindle-t -p tcp --dport 81 -j ACCEPT\nCOMMIT\n";
        backend.iptables_restore(Family::V4, rewrite).unwrap();
        let bad = "*filter\n-F brindle-t\n-A brindle-t -j brindle-no-such-chain\nCOMMIT\n";
        let err = backend.iptables_restore(Family::V4, bad).unwrap_err();
        assert!(err.to_string().contains("brindle-no-such-chain"), "{err}");
        backend.settle().unwrap();
        let listed = backend
            .iptables_list_chain(Family::V4, "filter", "brindle-t")
            .unwrap()
            .unwrap();
        assert!(listed.contains("--dport 81 -j ACCEPT"), "{listed}");
        assert!(
            backend
                .iptables_list_chain(Family::V4, "filter", "brindle-absent")
                .unwrap()
                .is_none(),
            "a missing chain lists as None"
        );
        backend
            .iptables_restore(Family::V4, "*filter\n-F brindle-t\n-X brindle-t\nCOMMIT\n")
            .unwrap();
    });
    let left = node.run(&[tool, "-S"]).unwrap();
    assert!(!left.contains("brindle"), "left behind:\n{left}");

    // The applier with read-back on: a policy change verifies only the
    // chains it wrote, and agrees with the kernel.
    let config = Config::default();
    let mut model = PolicyModel {
        endpoints: vec![
            endpoint("a", "calirestorea", "10.65.0.1", "blue"),
            endpoint("b", "calirestoreb", "10.65.0.2", "red"),
        ],
        ..PolicyModel::default()
    };
    in_netns(node.name(), || {
        let mut applier = Applier::new(SystemBackend::new(flavor));
        applier.verify = true;
        applier.apply(&compile(&model, &config)).unwrap();
        model.endpoints[1].profiles = vec!["blue".into(), "green".into()];
        let stats = applier.apply(&compile(&model, &config)).unwrap();
        assert!(stats.chains_written > 0);
        applier.uninstall().unwrap();
    });
}

#[test]
fn nft_restore_returns_at_commit_and_reports_failures() {
    restore_returns_at_commit_and_reports_failures(IptablesFlavor::Nft);
}

#[test]
fn legacy_restore_returns_at_commit_and_reports_failures() {
    restore_returns_at_commit_and_reports_failures(IptablesFlavor::Legacy);
}
