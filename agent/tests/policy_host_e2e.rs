//! Host endpoint policy through `brindle-node`: a HostEndpoint on node-b's
//! uplink and a deny-all GlobalNetworkPolicy for it, both written with the
//! real `brindlectl`, while the daemons run with a failsafe list given the
//! way Felix takes it (`FELIX_FAILSAFEINBOUNDHOSTPORTS`). From node-a's
//! namespace, the failsafe ports of node-b still answer, another port does
//! not, and the nodes' BGP session stays up; deleting the policy opens the
//! port again. Needs root.
//!
//! The failsafe variable is set in this test process's environment before
//! the daemons start (they inherit it); this binary holds one test so
//! nothing else sees it.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use brindle_testbed::poll_until;
use common::fabric::*;
use common::policy::*;

const PROBE_TIMEOUT: Duration = Duration::from_millis(800);

fn host_endpoint_yaml(node: &str, iface: &str, ip: Ipv4Addr) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata:\n  name: {node}-uplink\n  labels:\n    role: host\nspec:\n  node: {node}\n  interfaceName: {iface}\n  expectedIPs: [\"{ip}\"]\n"
    )
}

const DENY_ALL_HOSTS: &str = "\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: deny-all-hosts
spec:
  selector: role == 'host'
  types: [Ingress, Egress]
";

#[test]
fn failsafe_ports_from_the_environment_survive_a_deny_all_host_policy() {
    if !can_run() {
        return;
    }
    // Port 2222 stands in for a site's own SSH port; 179 keeps BGP.
    std::env::set_var("FELIX_FAILSAFEINBOUNDHOSTPORTS", "tcp:179, tcp:2222");
    let fabric = brindle_testbed::two_hosts_one_subnet().unwrap();
    let [ha, hb] = &fabric.hosts;
    for h in [ha, hb] {
        h.ns.add_default_route(IpAddr::V4(Ipv4Addr::new(10, 0, 1, 254)))
            .unwrap();
    }
    let store = Store::embedded();
    let ctl = Ctl::new(&store);
    ctl.apply(&pool_yaml("10.75.0.0/16", "Never"));
    ctl.apply(ALLOW_ALL_PROFILE);
    let a = NodeDaemon::start(&store, ha, "node-a");
    let b = NodeDaemon::start(&store, hb, "node-b");
    a.wait_established(1);
    b.wait_established(1);
    let _listeners = Listeners::start(&hb.ns, hb.ipv4, &[22, 2222, 8080]);
    let reachable = || -> Vec<u16> {
        [22, 2222, 8080]
            .into_iter()
            .filter(|&port| connects(&ha.ns, hb.ipv4, port, PROBE_TIMEOUT))
            .collect()
    };
    let expect = |what: &str, want: &[u16]| {
        let held = poll_until(WAIT, Duration::from_millis(200), || {
            Ok((reachable() == want).then_some(()))
        })
        .unwrap();
        assert!(
            held.is_some(),
            "{what}: node-b answers on {:?}, wanted {want:?}\n{}\n--- node-b log:\n{}",
            reachable(),
            hb.ns.run(&["iptables-nft-save"]).unwrap_or_default(),
            tail(&b.log())
        );
    };
    expect("no host endpoint", &[22, 2222, 8080]);

    ctl.apply(&host_endpoint_yaml("node-b", &hb.iface, hb.ipv4));
    ctl.apply(DENY_ALL_HOSTS);
    // 22 is not in the configured list (it replaced Calico's default).
    expect("deny-all on node-b's uplink", &[2222]);
    let report = b.wait_established(1);
    assert_eq!(report.peers[0].state, "up", "BGP survives: 179 is failsafe");

    ctl.run(&["delete", "globalnetworkpolicy", "deny-all-hosts"]);
    // No policy selects the host endpoint and it has no profile: Calico
    // drops everything but failsafe traffic then too.
    expect("host endpoint without policy or profile", &[2222]);
    ctl.run(&["delete", "hostendpoint", "node-b-uplink"]);
    expect("host endpoint deleted", &[22, 2222, 8080]);
    a.wait_established(1);
}
