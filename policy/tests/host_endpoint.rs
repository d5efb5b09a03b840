//! Host endpoints and failsafe ports, proven by traffic: a "node" namespace
//! whose interface `eth1` is a HostEndpoint (Calico v3 YAML through
//! `from_model`, as the agent reads it), a client namespace on the other
//! end of the link, and TCP listeners on the node. Under a deny-all
//! GlobalNetworkPolicy the node still accepts the failsafe ports (Calico's
//! default list, then a list given in Calico's `failsafeInboundHostPorts`
//! format) and refuses the rest. Both iptables backends. Needs root.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use brindle_model::Resource;
use brindle_policy::apply::{Applier, IptablesFlavor, SystemBackend};
use brindle_policy::compile::{compile, parse_failsafe_ports, Config};
use brindle_policy::from_model::{policy_model, ClusterView};
use brindle_policy::PolicyModel;
use brindle_testbed::{veth, Netns};
use common::in_netns;

const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 81, 0, 1);
const PORTS: [u16; 3] = [22, 179, 8080];

const RESOURCES: &str = "\
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata:
  name: node1-eth1
  labels:
    role: host
spec:
  node: node1
  interfaceName: eth1
  expectedIPs: [10.81.0.1]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: deny-all-host
spec:
  selector: role == 'host'
  types: [Ingress, Egress]
";

fn model() -> PolicyModel {
    let (mut heps, mut gnps) = (vec![], vec![]);
    for doc in brindle_model::parse_documents(RESOURCES).unwrap() {
        match doc {
            Resource::HostEndpoint(h) => heps.push(h),
            Resource::GlobalNetworkPolicy(p) => gnps.push(p),
            other => panic!("unexpected {other:?}"),
        }
    }
    let model = policy_model(&ClusterView {
        node: "node1",
        workload_endpoints: &[],
        host_endpoints: &heps,
        network_policies: &[],
        global_network_policies: &gnps,
        profiles: &[],
        pools: &[],
    });
    assert_eq!(model.host_endpoints.len(), 1, "the host endpoint is ours");
    model
}

/// Listeners on the node's address, one byte per connection, until dropped.
struct Listeners {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Listeners {
    fn start(node: &Netns) -> Listeners {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for port in PORTS {
            let (bound_tx, bound_rx) = std::sync::mpsc::channel();
            let name = node.name().to_string();
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || {
                in_netns(&name, || {
                    let listener = TcpListener::bind((NODE_IP, port)).unwrap();
                    listener.set_nonblocking(true).unwrap();
                    bound_tx.send(()).unwrap();
                    while !stop.load(Ordering::Relaxed) {
                        match listener.accept() {
                            Ok((mut conn, _)) => {
                                let _ = conn.write_all(b"k");
                            }
                            Err(_) => std::thread::sleep(Duration::from_millis(5)),
                        }
                    }
                })
            }));
            bound_rx.recv().unwrap();
        }
        Listeners { stop, threads }
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The ports of [`PORTS`] a new TCP connection from `client` reaches.
fn reachable(client: &Netns) -> Vec<u16> {
    in_netns(client.name(), || {
        PORTS
            .into_iter()
            .filter(|&port| {
                let addr = SocketAddr::new(IpAddr::V4(NODE_IP), port);
                let timeout = Duration::from_secs(1);
                let Ok(mut stream) = TcpStream::connect_timeout(&addr, timeout) else {
                    return false;
                };
                stream.set_read_timeout(Some(timeout)).unwrap();
                let mut byte = [0u8; 1];
                matches!(stream.read(&mut byte), Ok(1))
            })
            .collect()
    })
}

fn failsafe_ports_survive_deny_all(flavor: IptablesFlavor) {
    let node = Netns::new("phost").unwrap();
    let client = Netns::new("pclient").unwrap();
    veth(
        &node,
        "eth1",
        &[&format!("{NODE_IP}/24")],
        &client,
        "eth0",
        &["10.81.0.2/24"],
    )
    .unwrap();
    let _listeners = Listeners::start(&node);
    assert_eq!(
        reachable(&client),
        PORTS,
        "no rules yet: every port answers"
    );

    let model = model();
    let apply = |config: &Config| {
        in_netns(node.name(), || {
            let mut applier = Applier::new(SystemBackend::new(flavor));
            applier.apply(&compile(&model, config)).unwrap();
        })
    };

    // Deny-all on the host endpoint, Calico's default failsafe list: SSH and
    // BGP still reach the node, 8080 does not.
    apply(&Config::default());
    assert_eq!(
        reachable(&client),
        [22, 179],
        "{flavor:?}, default failsafe"
    );

    // A failsafe list in Calico's format replaces the default one.
    let config = Config {
        failsafe_inbound: parse_failsafe_ports("tcp:8080").unwrap(),
        ..Config::default()
    };
    apply(&config);
    assert_eq!(reachable(&client), [8080], "{flavor:?}, failsafe tcp:8080");

    // `none`: nothing gets through the deny-all policy.
    let config = Config {
        failsafe_inbound: parse_failsafe_ports("none").unwrap(),
        ..Config::default()
    };
    apply(&config);
    assert!(reachable(&client).is_empty(), "{flavor:?}, no failsafe");

    in_netns(node.name(), || {
        Applier::new(SystemBackend::new(flavor))
            .uninstall()
            .unwrap()
    });
    assert_eq!(reachable(&client), PORTS, "uninstalled: every port answers");
    let save = match flavor {
        IptablesFlavor::Nft => "iptables-nft-save",
        IptablesFlavor::Legacy => "iptables-legacy-save",
    };
    let left = node.run(&[save]).unwrap();
    assert!(!left.contains("brindle"), "left behind:\n{left}");
}

#[test]
fn nft_failsafe_ports_survive_a_deny_all_host_policy() {
    failsafe_ports_survive_deny_all(IptablesFlavor::Nft);
}

#[test]
fn legacy_failsafe_ports_survive_a_deny_all_host_policy() {
    failsafe_ports_survive_deny_all(IptablesFlavor::Legacy);
}
