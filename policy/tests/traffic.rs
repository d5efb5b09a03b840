//! Policy semantics proven by real traffic: two nodes on one subnet, each
//! with workloads of two networks wired as the agent wires them, routes
//! between the nodes set by hand (the agent's job, not under test here), and
//! each node's applier programming the rules compiled for its own view.
//!
//! Covers: networks isolate each other across nodes; a policy allowing only
//! TCP/80 from `role == 'frontend'`; `order` and `Pass`; a relabel taking
//! effect (time printed, never asserted); deleting a policy restoring the
//! previous behaviour; spoofed source addresses dropped. Needs root.

mod common;

use std::collections::BTreeMap;
use std::io::Read as _;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use brindle_model::selector::Selector;
use brindle_policy::apply::{Applier, IptablesFlavor, SystemBackend};
use brindle_policy::compile::{compile, Config};
use brindle_policy::ir::{
    Action, EntityMatch, Policy, PolicyModel, PortRange, Protocol, Rule, WorkloadEndpoint,
};
use brindle_testbed::{two_hosts_one_subnet, unique_name, veth, Netns};
use common::in_netns;

struct Workload {
    name: &'static str,
    ns: Netns,
    iface: String,
    ip: IpAddr,
    node: usize,
    labels: BTreeMap<String, String>,
    network: &'static str,
}

impl Workload {
    fn endpoint(&self) -> WorkloadEndpoint {
        WorkloadEndpoint {
            name: self.name.to_string(),
            interface: self.iface.clone(),
            addrs: vec![IpAddr::into(self.ip)],
            labels: self.labels.clone(),
            profiles: vec![self.network.to_string()],
        }
    }
}

struct Fabric {
    workloads: Vec<Workload>,
    /// The two nodes and the LAN joining them.
    net: brindle_testbed::TwoHosts,
}

fn fabric() -> Fabric {
    let net = two_hosts_one_subnet().unwrap();
    let node_ips: Vec<IpAddr> = net.hosts.iter().map(|h| IpAddr::V4(h.ipv4)).collect();
    let specs: [(&str, usize, &str, &str, &str); 6] = [
        ("fe1", 0, "10.70.0.2", "frontend", "blue"),
        ("be1", 0, "10.70.0.3", "backend", "blue"),
        ("x1", 0, "10.70.0.4", "other", "red"),
        ("fe2", 1, "10.70.1.2", "frontend", "blue"),
        ("be2", 1, "10.70.1.3", "backend", "blue"),
        ("x2", 1, "10.70.1.4", "other", "red"),
    ];
    let mut workloads = Vec::new();
    for (name, node, ip, role, network) in specs {
        let host = &net.hosts[node];
        let ns = Netns::new(name).unwrap();
        let unique = unique_name(name);
        let iface = format!("cali{}", &unique[unique.len().saturating_sub(11)..]);
        veth(&host.ns, &iface, &[], &ns, "eth0", &[&format!("{ip}/32")]).unwrap();
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
        host.ns
            .set_sysctl(&format!("net.ipv4.conf.{iface}.proxy_arp"), "1")
            .unwrap();
        host.ns
            .set_sysctl(&format!("net.ipv4.neigh.{iface}.proxy_delay"), "0")
            .unwrap();
        host.ns
            .ip(&["route", "add", &format!("{ip}/32"), "dev", &iface])
            .unwrap();
        // The other node reaches this workload through this node.
        let other = &net.hosts[1 - node];
        other
            .ns
            .ip(&[
                "route",
                "add",
                &format!("{ip}/32"),
                "via",
                &node_ips[node].to_string(),
            ])
            .unwrap();
        workloads.push(Workload {
            name,
            ns,
            iface,
            ip: ip.parse().unwrap(),
            node,
            labels: BTreeMap::from([("role".to_string(), role.to_string())]),
            network,
        });
    }
    for host in &net.hosts {
        host.ns.enable_forwarding().unwrap();
        // Proxy ARP needs the node to route 169.254.1.1 out another interface.
        host.ns
            .ip(&["route", "add", "default", "dev", &host.iface])
            .unwrap();
    }
    Fabric { workloads, net }
}

impl Fabric {
    fn wl(&self, name: &str) -> &Workload {
        self.workloads.iter().find(|w| w.name == name).unwrap()
    }

    /// Compiles each node's view of `policies` and applies it there.
    fn apply(&self, policies: &[Policy]) {
        for (index, host) in self.net.hosts.iter().enumerate() {
            let (local, remote): (Vec<_>, Vec<_>) =
                self.workloads.iter().partition(|w| w.node == index);
            let model = PolicyModel {
                endpoints: local.iter().map(|w| w.endpoint()).collect(),
                remote_endpoints: remote.iter().map(|w| w.endpoint()).collect(),
                policies: policies.to_vec(),
                ..PolicyModel::default()
            };
            in_netns(host.ns.name(), || {
                let mut applier = Applier::new(SystemBackend::new(IptablesFlavor::Nft));
                applier.apply(&compile(&model, &Config::default())).unwrap();
            });
        }
    }

    fn ping(&self, from: &str, to: &str) -> bool {
        self.wl(from).ns.ping(self.wl(to).ip).unwrap()
    }

    /// Whether a TCP connection from `from` to `to`:`port` completes and
    /// carries a byte.
    fn tcp(&self, from: &str, to: &str, port: u16) -> bool {
        let server = &self.wl(to).ns;
        let client = &self.wl(from).ns;
        let addr = SocketAddr::new(self.wl(to).ip, port);
        std::thread::scope(|s| {
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let srv = s.spawn(move || {
                in_netns(server.name(), || {
                    let listener = TcpListener::bind(("0.0.0.0", port)).unwrap();
                    listener.set_nonblocking(true).unwrap();
                    ready_tx.send(()).unwrap();
                    let deadline = Instant::now() + Duration::from_secs(3);
                    while Instant::now() < deadline {
                        if let Ok((mut conn, _)) = listener.accept() {
                            use std::io::Write as _;
                            let _ = conn.write_all(b"k");
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                })
            });
            ready_rx.recv().unwrap();
            let ok = in_netns(client.name(), || {
                let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
                else {
                    return false;
                };
                stream
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .unwrap();
                let mut byte = [0u8; 1];
                matches!(stream.read(&mut byte), Ok(1))
            });
            srv.join().unwrap();
            ok
        })
    }
}

fn sel(text: &str) -> Selector {
    Selector::parse(text).unwrap()
}

fn allow_tcp_80_from_frontend(order: f64) -> Policy {
    Policy {
        name: "backend-from-frontend".into(),
        order: Some(order),
        selector: sel("role == 'backend'"),
        ingress: Some(vec![Rule {
            protocol: Some(Protocol::Tcp),
            source: EntityMatch {
                selector: Some(sel("role == 'frontend'")),
                ..EntityMatch::default()
            },
            destination: EntityMatch {
                ports: vec![PortRange {
                    first: 80,
                    last: 80,
                }],
                ..EntityMatch::default()
            },
            ..Rule::allow()
        }]),
        egress: None,
    }
}

#[test]
fn policy_semantics_hold_for_real_traffic_across_two_nodes() {
    let mut f = fabric();

    // Networks only: members of one network reach each other across nodes;
    // the two networks are isolated even on one host and one subnet.
    f.apply(&[]);
    assert!(f.ping("fe1", "be2"), "blue -> blue across nodes");
    assert!(f.tcp("fe2", "be1", 8080), "blue -> blue TCP");
    assert!(!f.ping("x1", "be1"), "red -> blue on one node must drop");
    assert!(!f.ping("x2", "fe1"), "red -> blue across nodes must drop");
    assert!(!f.tcp("x1", "be2", 80), "red -> blue TCP must drop");
    assert!(f.ping("x1", "x2"), "red -> red across nodes");

    // Only TCP/80 from frontends reaches a backend.
    let only_80 = allow_tcp_80_from_frontend(100.0);
    f.apply(std::slice::from_ref(&only_80));
    assert!(f.tcp("fe2", "be1", 80), "frontend -> backend:80 allowed");
    assert!(f.tcp("fe1", "be1", 80), "same-node frontend -> backend:80");
    assert!(!f.tcp("fe2", "be1", 8080), "backend:8080 not allowed");
    assert!(!f.ping("fe2", "be1"), "ICMP to backend not allowed");
    assert!(
        !f.tcp("be2", "be1", 80),
        "backend -> backend:80 not allowed"
    );
    assert!(
        f.tcp("be1", "fe2", 8080),
        "frontends are not selected: profile applies"
    );

    // Order: a lower-order Deny of frontends wins over the Allow.
    let deny_first = Policy {
        name: "deny-frontends".into(),
        order: Some(10.0),
        selector: sel("role == 'backend'"),
        ingress: Some(vec![Rule {
            action: Action::Deny,
            source: EntityMatch {
                selector: Some(sel("role == 'frontend'")),
                ..EntityMatch::default()
            },
            ..Rule::allow()
        }]),
        egress: None,
    };
    f.apply(&[only_80.clone(), deny_first.clone()]);
    assert!(
        !f.tcp("fe2", "be1", 80),
        "order 10 Deny before order 100 Allow"
    );
    // ... and with the orders swapped the Allow wins.
    let allow_first = allow_tcp_80_from_frontend(1.0);
    f.apply(&[allow_first, deny_first]);
    assert!(
        f.tcp("fe2", "be1", 80),
        "order 1 Allow before order 10 Deny"
    );

    // Pass skips the remaining policies and goes to the profile (which
    // allows the whole blue network): even port 8080 and ICMP get through.
    let pass_frontends = Policy {
        name: "pass-frontends".into(),
        order: Some(1.0),
        selector: sel("role == 'backend'"),
        ingress: Some(vec![Rule {
            action: Action::Pass,
            source: EntityMatch {
                selector: Some(sel("role == 'frontend'")),
                ..EntityMatch::default()
            },
            ..Rule::allow()
        }]),
        egress: None,
    };
    f.apply(&[only_80.clone(), pass_frontends]);
    assert!(f.tcp("fe2", "be1", 8080), "Pass -> profile allows blue");
    assert!(f.ping("fe2", "be1"), "Pass -> profile allows ICMP");
    assert!(
        !f.tcp("be2", "be1", 80),
        "non-frontends still hit the tier drop"
    );

    // Relabel: fe2 stops being a frontend; its access to :80 goes.
    f.apply(std::slice::from_ref(&only_80));
    assert!(f.tcp("fe2", "be1", 80));
    let started = Instant::now();
    f.workloads
        .iter_mut()
        .find(|w| w.name == "fe2")
        .unwrap()
        .labels
        .insert("role".into(), "retired".into());
    f.apply(std::slice::from_ref(&only_80));
    println!("relabel applied on both nodes in {:?}", started.elapsed());
    assert!(!f.tcp("fe2", "be1", 80), "relabelled endpoint lost access");
    assert!(f.tcp("fe1", "be1", 80), "other frontends unaffected");

    // Deleting the policy restores the network-only behaviour.
    f.apply(&[]);
    assert!(f.tcp("fe2", "be1", 8080), "policy gone: blue reaches blue");
    assert!(f.ping("be2", "be1"));

    // Spoofing: x1 sends with be1's address as source; the node drops it at
    // the anti-spoofing rule before any policy (counted there).
    let spoofed = f.wl("be1").ip.to_string();
    let x1 = &f.wl("x1").ns;
    x1.ip(&["addr", "add", &format!("{spoofed}/32"), "dev", "eth0"])
        .unwrap();
    let drops = |node: &Netns| -> u64 {
        let saved = node
            .run(&["iptables-nft-save", "-c", "-t", "filter"])
            .unwrap();
        saved
            .lines()
            .find(|l| l.contains("-A brindle-from-wl") && l.contains("wl-addrs src,src"))
            .and_then(|l| l.strip_prefix('['))
            .and_then(|l| l.split(':').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let before = drops(&f.net.hosts[0].ns);
    let _ = x1.run(&[
        "ping",
        "-c",
        "2",
        "-W",
        "1",
        "-I",
        &spoofed,
        &f.wl("be2").ip.to_string(),
    ]);
    let after = drops(&f.net.hosts[0].ns);
    assert!(
        after >= before + 2,
        "spoofed packets dropped: {before} -> {after}"
    );

    // Uninstall leaves nothing of Brindle's in either node.
    for host in &f.net.hosts {
        in_netns(host.ns.name(), || {
            Applier::new(SystemBackend::new(IptablesFlavor::Nft))
                .uninstall()
                .unwrap()
        });
        let saved = host.ns.run(&["iptables-nft-save"]).unwrap();
        assert!(!saved.contains("brindle"), "{saved}");
    }
}
