//! Policy end to end, driven the way a user drives it: two `brindle-node`
//! daemons on one embedded store, workloads made by the real `brindle-cni`,
//! and every resource written with the real `brindlectl` binary (`apply -f`,
//! `delete`), which reaches the nodes through the datastore watch.
//!
//! Covers: a NetworkPolicy allowing only TCP/80 from `role == 'frontend'`
//! (cross-node and same-node clients); relabelling a WorkloadEndpoint
//! changes what reaches the server (the time it took is printed, never
//! asserted: only that it changed within a generous deadline); deleting the
//! policy restores the network's behaviour; a Profile applied with
//! brindlectl narrows and re-widens it. Needs root.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use brindle_testbed::{poll_until, Host};
use common::fabric::*;
use common::policy::*;

/// How long one probe waits for a connection that policy may drop.
const PROBE_TIMEOUT: Duration = Duration::from_millis(800);
/// Deadline for a relabel to change what reaches the server (the target
/// is one second; this only guards against a hang).
const RELABEL_DEADLINE: Duration = Duration::from_secs(10);

struct Scene<'a> {
    server: &'a Workload,
    clients: Vec<(&'static str, &'a Workload)>,
    nodes: Vec<&'a NodeDaemon>,
    hosts: Vec<&'a Host>,
}

impl Scene<'_> {
    fn client(&self, name: &str) -> &Workload {
        self.clients.iter().find(|(n, _)| *n == name).unwrap().1
    }

    /// Polls until every (client, port, reachable) holds at once.
    fn expect(&self, what: &str, want: &[(&str, u16, bool)]) {
        let held = poll_until(WAIT, Duration::from_millis(100), || {
            let all = want.iter().all(|&(client, port, reachable)| {
                connects(&self.client(client).ns, self.server.ip, port, PROBE_TIMEOUT) == reachable
            });
            Ok(all.then_some(()))
        })
        .unwrap();
        if held.is_none() {
            let got: Vec<String> = want
                .iter()
                .map(|&(client, port, _)| {
                    let ok = connects(&self.client(client).ns, self.server.ip, port, PROBE_TIMEOUT);
                    format!("{client}:{port}={ok}")
                })
                .collect();
            let mut dump = String::new();
            for h in &self.hosts {
                dump += &format!(
                    "--- {} iptables:\n{}",
                    h.ns.name(),
                    h.ns.run(&["iptables-nft-save"]).unwrap_or_default()
                );
            }
            for n in &self.nodes {
                dump += &format!("--- {} log:\n{}", n.name, tail(&n.log()));
            }
            panic!("{what}: wanted {want:?}, got {got:?}\n{dump}");
        }
    }

    /// Probes `client`→server:`port` until it is `reachable`; returns how
    /// long that took from `since` (to the start of the probe that showed
    /// it). Probes give up after 50 ms, so a refusal is seen within ~50 ms;
    /// a refusal counts only after three in a row, so a probe that was slow
    /// on a loaded machine does not pass for one.
    fn time_until(&self, client: &str, port: u16, reachable: bool, since: Instant) -> Duration {
        let probe_timeout = Duration::from_millis(50);
        let needed = if reachable { 1 } else { 3 };
        let mut streak: Option<(Instant, usize)> = None;
        loop {
            let probe_started = Instant::now();
            let ok = connects(&self.client(client).ns, self.server.ip, port, probe_timeout);
            if ok == reachable {
                let (first, count) = streak.get_or_insert((probe_started, 0));
                *count += 1;
                if *count >= needed {
                    return first.duration_since(since);
                }
            } else {
                streak = None;
            }
            assert!(
                since.elapsed() < RELABEL_DEADLINE,
                "{client}:{port} still {} after {RELABEL_DEADLINE:?}",
                if reachable { "refused" } else { "allowed" }
            );
            if ok {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

const POLICY: &str = "\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: server-from-frontend
  namespace: default
spec:
  selector: role == 'server'
  types: [Ingress]
  ingress:
  - action: Allow
    protocol: TCP
    source:
      selector: role == 'frontend'
    destination:
      ports: [80]
";

/// The network's profile narrowed to TCP/80 from anyone.
const PROFILE_ONLY_80: &str = "\
apiVersion: projectcalico.org/v3
kind: Profile
metadata:
  name: allow-all
spec:
  ingress:
  - action: Allow
    protocol: TCP
    destination:
      ports: [80]
  egress:
  - action: Allow
";

#[test]
fn brindlectl_policy_relabel_and_profile_through_the_nodes() {
    if !can_run() {
        return;
    }
    let fabric = brindle_testbed::two_hosts_one_subnet().unwrap();
    let [ha, hb] = &fabric.hosts;
    for h in [ha, hb] {
        h.ns.add_default_route(IpAddr::V4(Ipv4Addr::new(10, 0, 1, 254)))
            .unwrap();
    }
    let store = Store::embedded();
    let ctl = Ctl::new(&store);
    ctl.apply(&pool_yaml("10.74.0.0/16", "Never"));
    ctl.apply(ALLOW_ALL_PROFILE);
    let a = NodeDaemon::start(&store, ha, "node-a");
    let b = NodeDaemon::start(&store, hb, "node-b");
    // The server and one client on node-b (same-node path), the frontend
    // on node-a (across the LAN).
    let server = add_workload(&store, hb, "node-b", "server");
    let frontend = add_workload(&store, ha, "node-a", "frontend");
    let other = add_workload(&store, hb, "node-b", "other");
    ctl.set_role(&server.host_ifname, "server");
    ctl.set_role(&frontend.host_ifname, "frontend");
    ctl.set_role(&other.host_ifname, "backend");
    a.wait_established(1);
    b.wait_established(1);
    let _listeners = Listeners::start(&server.ns, server.ip, &[80, 81]);
    let scene = Scene {
        server: &server,
        clients: vec![("frontend", &frontend), ("other", &other)],
        nodes: vec![&a, &b],
        hosts: vec![ha, hb],
    };
    ping_or_dump(&frontend.ns, server.ip, &scene.nodes, &scene.hosts);

    // The network alone (profile allow-all): everything reaches the server.
    scene.expect(
        "network only",
        &[
            ("frontend", 80, true),
            ("frontend", 81, true),
            ("other", 80, true),
        ],
    );

    // Only TCP/80 from frontends.
    ctl.apply(POLICY);
    let only_80 = [
        ("frontend", 80, true),
        ("frontend", 81, false),
        ("other", 80, false),
        ("other", 81, false),
    ];
    scene.expect("policy applied", &only_80);

    // Relabel the frontend: it loses :80; relabel it back: it regains it.
    let since = Instant::now();
    ctl.set_role(&frontend.host_ifname, "retired");
    let lost = scene.time_until("frontend", 80, false, since);
    println!("relabel (frontend -> retired) cut access after {lost:?}");
    scene.expect(
        "relabelled away",
        &[("frontend", 80, false), ("other", 80, false)],
    );
    let since = Instant::now();
    ctl.set_role(&frontend.host_ifname, "frontend");
    let regained = scene.time_until("frontend", 80, true, since);
    println!("relabel (retired -> frontend) restored access after {regained:?}");
    // And the other way round: the backend on the server's node becomes a
    // frontend.
    let since = Instant::now();
    ctl.set_role(&other.host_ifname, "frontend");
    let granted = scene.time_until("other", 80, true, since);
    println!("relabel (backend -> frontend, same node) granted access after {granted:?}");
    scene.expect(
        "both frontends",
        &[
            ("frontend", 80, true),
            ("other", 80, true),
            ("other", 81, false),
        ],
    );
    ctl.set_role(&other.host_ifname, "backend");
    scene.expect("back to one frontend", &only_80);

    // Deleting the policy restores the network's behaviour.
    ctl.run(&[
        "delete",
        "networkpolicy",
        "server-from-frontend",
        "-n",
        "default",
    ]);
    scene.expect(
        "policy deleted",
        &[
            ("frontend", 80, true),
            ("frontend", 81, true),
            ("other", 81, true),
        ],
    );

    // The network's profile, narrowed with brindlectl, then widened again.
    ctl.apply(PROFILE_ONLY_80);
    scene.expect(
        "profile narrowed to :80",
        &[
            ("frontend", 80, true),
            ("frontend", 81, false),
            ("other", 80, true),
            ("other", 81, false),
        ],
    );
    ctl.apply(ALLOW_ALL_PROFILE);
    scene.expect(
        "profile allows all again",
        &[("frontend", 81, true), ("other", 81, true)],
    );
}
