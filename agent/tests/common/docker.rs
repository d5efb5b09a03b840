//! Docker fixtures: a node's dockerd (Debian's docker.io, entered into the
//! node's namespace) with `brindle-docker` beside it, and a fabric of two
//! such nodes running `brindle-node`.
//!
//! Plugin names are unique to the test process: every dockerd on one
//! machine reads the same `/run/docker/plugins`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use brindle_testbed::docker::Dockerd;
use brindle_testbed::{poll_until, Host, Netns, Process, RoutedFabric, TwoHosts};

use super::fabric::{tail, NodeDaemon, Store};

pub const DOCKER_BIN: &str = env!("CARGO_BIN_EXE_brindle-docker");
/// The busybox-static image every test imports.
pub const IMAGE: &str = "bb:local";

/// Whether a Docker test can run here (root, namespaces, docker.io); in CI a
/// missing piece fails the test instead.
pub fn can_run_docker() -> bool {
    super::can_run()
        && brindle_testbed::require::require(Dockerd::available(), "docker.io (/usr/sbin/dockerd)")
}

/// A node's dockerd and brindle-docker.
pub struct DockerNode {
    pub dockerd: Dockerd,
    pub plugin: String,
    pub node: String,
    store_url: String,
    ns_name: String,
    driver: Option<Process>,
    driver_log: PathBuf,
    /// brindle-docker's `--state-dir`, kept across its restarts.
    state_dir: PathBuf,
    /// Counts driver restarts, so each keeps its own log.
    starts: u32,
}

impl DockerNode {
    pub fn start(store: &Store, ns: &Netns, node: &str) -> DockerNode {
        let dockerd = Dockerd::start(ns, node).expect("dockerd");
        dockerd.import_busybox(IMAGE).expect("busybox image");
        static STARTED: AtomicU32 = AtomicU32::new(0);
        let plugin = format!(
            "brindle-{node}-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        );
        let mut d = DockerNode {
            dockerd,
            // In the store's temp dir: swept with it after a crash.
            driver_log: store.dir.path().join(format!("{plugin}.log")),
            state_dir: store.dir.path().join(format!("{plugin}.state")),
            plugin,
            node: node.to_owned(),
            store_url: store.url.clone(),
            ns_name: ns.name().to_owned(),
            driver: None,
            starts: 0,
        };
        d.start_driver(ns);
        d
    }

    fn socket(&self) -> PathBuf {
        PathBuf::from(format!("/run/docker/plugins/{}.sock", self.plugin))
    }

    /// Starts brindle-docker (again) and waits for its socket.
    pub fn start_driver(&mut self, ns: &Netns) {
        assert_eq!(ns.name(), self.ns_name);
        self.starts += 1;
        if self.starts > 1 {
            self.driver_log = self
                .driver_log
                .with_file_name(format!("{}.{}.log", self.plugin, self.starts));
        }
        let driver = ns
            .spawn(
                "brindle-docker",
                &[
                    DOCKER_BIN,
                    "--datastore",
                    &self.store_url,
                    "--node-name",
                    &self.node,
                    "--plugin-name",
                    &self.plugin,
                    "--docker-host",
                    &self.dockerd.host(),
                    "--state-dir",
                    &self.state_dir.display().to_string(),
                    // Stale endpoints found in seconds, not minutes.
                    "--stale-check-seconds",
                    "2",
                ],
                &self.driver_log,
            )
            .expect("brindle-docker");
        let socket = self.socket();
        let up = poll_until(Duration::from_secs(20), Duration::from_millis(100), || {
            Ok(socket.exists().then_some(()))
        })
        .unwrap();
        assert!(up.is_some(), "no plugin socket {}", socket.display());
        self.driver = Some(driver);
    }

    /// Kills brindle-docker (SIGKILL: no clean-up of its own).
    pub fn kill_driver(&mut self) {
        if let Some(mut p) = self.driver.take() {
            p.kill();
        }
    }

    pub fn log(&self) -> String {
        format!(
            "--- brindle-docker ({}) ---\n{}\n--- dockerd (tail) ---\n{}",
            self.node,
            tail(&std::fs::read_to_string(&self.driver_log).unwrap_or_default()),
            tail(&self.dockerd.log())
        )
    }

    /// `docker ARGS`, which must succeed; stdout trimmed.
    pub fn docker(&self, args: &[&str]) -> String {
        self.dockerd
            .run(args)
            .unwrap_or_else(|e| panic!("docker {}: {e}\n{}", args.join(" "), self.log()))
    }

    /// `docker ARGS` whatever its outcome.
    pub fn try_docker(&self, args: &[&str]) -> Output {
        self.dockerd
            .docker(args)
            .unwrap_or_else(|e| panic!("spawning docker {}: {e}", args.join(" ")))
    }

    /// The arguments of `docker network create` on this node's driver.
    pub fn network_args<'a>(&'a self, name: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![
            "network",
            "create",
            "-d",
            &self.plugin,
            "--ipam-driver",
            &self.plugin,
        ];
        args.extend_from_slice(extra);
        args.push(name);
        args
    }

    pub fn network(&self, name: &str, extra: &[&str]) {
        self.docker(&self.network_args(name, extra));
    }

    /// `docker run -d` of a sleeping busybox; returns its IPv4 address.
    pub fn run(&self, name: &str, network: &str, extra: &[&str]) -> Ipv4Addr {
        let mut args = vec!["run", "-d", "--name", name, "--network", network];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[IMAGE, "sleep", "600"]);
        self.docker(&args);
        let ip = self.address(name, network, "IPAddress");
        ip.parse()
            .unwrap_or_else(|_| panic!("{name} has no address ({ip:?})\n{}", self.log()))
    }

    /// A field of the container's settings on `network` (`IPAddress`,
    /// `GlobalIPv6Address`, `EndpointID`).
    pub fn address(&self, container: &str, network: &str, field: &str) -> String {
        self.docker(&[
            "inspect",
            "-f",
            &format!("{{{{(index .NetworkSettings.Networks \"{network}\").{field}}}}}"),
            container,
        ])
    }

    /// One ping from the container to `ip`.
    pub fn pings(&self, container: &str, ip: impl Into<IpAddr>) -> bool {
        let ip = ip.into();
        self.dockerd
            .docker(&[
                "exec",
                container,
                "ping",
                if ip.is_ipv6() { "-6" } else { "-4" },
                "-c",
                "1",
                "-W",
                "1",
                &ip.to_string(),
            ])
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    /// Waits (up to 30 s) until `container` reaches `ip`.
    pub fn reaches(&self, container: &str, ip: impl Into<IpAddr>) -> bool {
        let ip = ip.into();
        poll_until(Duration::from_secs(30), Duration::from_millis(200), || {
            Ok(self.pings(container, ip).then_some(()))
        })
        .unwrap()
        .is_some()
    }
}

impl Drop for DockerNode {
    fn drop(&mut self) {
        // Containers first (their Leave/DeleteEndpoint need the driver).
        self.dockerd.stop();
        drop(self.driver.take());
        let _ = std::fs::remove_file(self.socket());
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

/// The two hosts of a Docker test.
pub enum Hosts {
    OneSubnet(TwoHosts),
    TwoSubnets(RoutedFabric),
}

impl Hosts {
    pub fn get(&self) -> [&Host; 2] {
        match self {
            Hosts::OneSubnet(f) => [&f.hosts[0], &f.hosts[1]],
            Hosts::TwoSubnets(f) => [&f.hosts[0], &f.hosts[1]],
        }
    }
}

/// Two hosts with brindle-node on each (`node-a`, `node-b`), sessions up,
/// an embedded store holding `pools`; `two_subnets` puts them on two
/// subnets joined by a router, `dual_stack` registers their IPv6 addresses
/// (`--ip6`) too.
pub fn two_nodes(
    pools: &[&str],
    two_subnets: bool,
    dual_stack: bool,
) -> (Hosts, Store, [NodeDaemon; 2]) {
    let hosts = if two_subnets {
        Hosts::TwoSubnets(brindle_testbed::hosts_on_two_subnets([1, 1]).unwrap())
    } else {
        let f = brindle_testbed::two_hosts_one_subnet().unwrap();
        for h in &f.hosts {
            // Proxy ARP answers for 169.254.1.1 only with a route to it.
            h.ns.add_default_route(IpAddr::V4(Ipv4Addr::new(10, 0, 1, 254)))
                .unwrap();
        }
        Hosts::OneSubnet(f)
    };
    let store = Store::embedded();
    for pool in pools {
        store.apply(pool);
    }
    let [ha, hb] = hosts.get();
    let start = |host: &Host, name: &str| {
        let ip6 = format!("{}/64", host.ipv6);
        let extra: &[&str] = if dual_stack { &["--ip6", &ip6] } else { &[] };
        NodeDaemon::start_with(&store, host, name, true, extra)
    };
    let a = start(ha, "node-a");
    let b = start(hb, "node-b");
    a.wait_established(if dual_stack { 2 } else { 1 });
    (hosts, store, [a, b])
}

/// Two nodes, each running brindle-node, dockerd and brindle-docker. Field
/// order is drop order: containers and drivers, then daemons, then hosts.
pub struct DockerFabric {
    pub docker: [DockerNode; 2],
    pub nodes: [NodeDaemon; 2],
    pub store: Store,
    pub hosts: Hosts,
}

impl DockerFabric {
    /// `pools` are applied before the nodes start; `two_subnets` puts the
    /// nodes on two subnets joined by a router.
    pub fn start(pools: &[&str], two_subnets: bool) -> DockerFabric {
        Self::start_inner(pools, two_subnets, false)
    }

    /// [`DockerFabric::start`] with each node's IPv6 address registered
    /// (`--ip6`): IPv4 and IPv6 sessions, VXLAN of both families.
    pub fn start_dual_stack(pools: &[&str], two_subnets: bool) -> DockerFabric {
        Self::start_inner(pools, two_subnets, true)
    }

    fn start_inner(pools: &[&str], two_subnets: bool, dual_stack: bool) -> DockerFabric {
        let (hosts, store, [a, b]) = two_nodes(pools, two_subnets, dual_stack);
        let [ha, hb] = hosts.get();
        let da = DockerNode::start(&store, &ha.ns, "node-a");
        let db = DockerNode::start(&store, &hb.ns, "node-b");
        DockerFabric {
            docker: [da, db],
            nodes: [a, b],
            store,
            hosts,
        }
    }

    /// Both drivers' and nodes' logs, for a failure message.
    pub fn logs(&self) -> String {
        format!(
            "{}\n{}\n--- node-a ---\n{}\n--- node-b ---\n{}",
            self.docker[0].log(),
            self.docker[1].log(),
            tail(&self.nodes[0].log()),
            tail(&self.nodes[1].log())
        )
    }
}
