//! `brindle-docker` driven by a real dockerd (Debian's docker.io), one per
//! node, each in its node's network namespace next to brindle-node:
//! `docker network create -d <plugin> --ipam-driver <plugin>` and `docker
//! run --network`, as a Docker user types them. Containers of one network
//! reach each other across nodes, two networks do not, `--ip` is honoured,
//! a label `org.projectcalico.label.*` reaches the endpoint, `docker rm`
//! and `docker network rm` leave nothing behind (`ipam check` clean).

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use brindle_testbed::docker::Dockerd;
use brindle_testbed::{poll_until, Netns, Process};
use common::can_run;
use common::fabric::*;

const DOCKER_BIN: &str = env!("CARGO_BIN_EXE_brindle-docker");
const IMAGE: &str = "bb:local";

/// A node's dockerd and brindle-docker (plugin name unique to the test run:
/// dockerds on one machine share /run/docker/plugins).
struct DockerNode {
    dockerd: Dockerd,
    plugin: String,
    _driver: Process,
    driver_log: std::path::PathBuf,
}

impl DockerNode {
    fn start(store: &Store, ns: &Netns, node: &str) -> DockerNode {
        let dockerd = Dockerd::start(ns, node).expect("dockerd");
        dockerd.import_busybox(IMAGE).expect("busybox image");
        let plugin = format!("brindle-{node}-{}", std::process::id());
        let driver_log = std::env::temp_dir().join(format!("{plugin}.log"));
        let driver = ns
            .spawn(
                "brindle-docker",
                &[
                    DOCKER_BIN,
                    "--datastore",
                    &store.url,
                    "--node-name",
                    node,
                    "--plugin-name",
                    &plugin,
                    "--docker-host",
                    &dockerd.host(),
                ],
                &driver_log,
            )
            .expect("brindle-docker");
        let socket = format!("/run/docker/plugins/{plugin}.sock");
        let up = poll_until(Duration::from_secs(20), Duration::from_millis(100), || {
            Ok(std::path::Path::new(&socket).exists().then_some(()))
        })
        .unwrap();
        assert!(up.is_some(), "no plugin socket {socket}");
        DockerNode {
            dockerd,
            plugin,
            _driver: driver,
            driver_log,
        }
    }

    fn log(&self) -> String {
        format!(
            "--- brindle-docker ---\n{}\n--- dockerd (tail) ---\n{}",
            std::fs::read_to_string(&self.driver_log).unwrap_or_default(),
            tail(&self.dockerd.log())
        )
    }

    fn docker(&self, args: &[&str]) -> String {
        self.dockerd
            .run(args)
            .unwrap_or_else(|e| panic!("docker {}: {e}\n{}", args.join(" "), self.log()))
    }

    fn network(&self, name: &str, extra: &[&str]) {
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
        self.docker(&args);
    }

    /// `docker run -d` of a sleeping busybox; returns its address.
    fn run(&self, name: &str, network: &str, extra: &[&str]) -> Ipv4Addr {
        let mut args = vec!["run", "-d", "--name", name, "--network", network];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[IMAGE, "sleep", "600"]);
        self.docker(&args);
        let ip = self.docker(&[
            "inspect",
            "-f",
            &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"),
            name,
        ]);
        ip.parse()
            .unwrap_or_else(|_| panic!("{name} has no address ({ip:?})\n{}", self.log()))
    }

    fn pings(&self, container: &str, ip: Ipv4Addr) -> bool {
        self.dockerd
            .docker(&[
                "exec",
                container,
                "ping",
                "-c",
                "1",
                "-W",
                "1",
                &ip.to_string(),
            ])
            .map(|o| o.status.success())
            .unwrap_or(false)
    }
}

#[test]
fn docker_networks_across_two_nodes() {
    if !can_run()
        || !brindle_testbed::require::require(Dockerd::available(), "docker.io (/usr/sbin/dockerd)")
    {
        return;
    }
    let fabric = brindle_testbed::two_hosts_one_subnet().unwrap();
    let [ha, hb] = &fabric.hosts;
    for h in [ha, hb] {
        // Proxy ARP answers for 169.254.1.1 only with a route to it.
        h.ns.add_default_route(IpAddr::V4(Ipv4Addr::new(10, 0, 1, 254)))
            .unwrap();
    }
    let store = Store::embedded();
    store.apply(&pool_yaml("10.93.0.0/16", "Never"));
    let a = NodeDaemon::start(&store, ha, "node-a");
    let b = NodeDaemon::start(&store, hb, "node-b");
    a.wait_established(1);
    let da = DockerNode::start(&store, &ha.ns, "node-a");
    let db = DockerNode::start(&store, &hb.ns, "node-b");

    // Two networks, created on each node under the same names.
    for d in [&da, &db] {
        d.network("blue", &[]);
        // With --subnet (the pool's CIDR): what `--ip` needs in Docker.
        d.network("green", &["--subnet", "10.93.0.0/16"]);
    }
    let blue_a = da.run(
        "blue-a",
        "blue",
        &["--label", "org.projectcalico.label.role=web"],
    );
    let blue_b = db.run("blue-b", "blue", &[]);
    let fixed: Ipv4Addr = "10.93.200.9".parse().unwrap();
    let green_b = db.run("green-b", "green", &["--ip", &fixed.to_string()]);
    assert_eq!(green_b, fixed, "--ip honoured");

    // Same network across nodes: reachable (once routes are in).
    let reached = poll_until(Duration::from_secs(30), Duration::from_millis(200), || {
        Ok(da.pings("blue-a", blue_b).then_some(()))
    })
    .unwrap();
    assert!(
        reached.is_some(),
        "blue-a cannot reach blue-b {blue_b}\n{}\n{}\n{}",
        da.log(),
        db.log(),
        tail(&a.log())
    );
    assert!(db.pings("blue-b", blue_a), "blue-b → blue-a");
    // Another network: isolated.
    assert!(!da.pings("blue-a", green_b), "blue reached green");

    // The container's label is on its endpoint.
    let labelled = poll_until(Duration::from_secs(20), Duration::from_millis(200), || {
        let text =
            common::policy::Ctl::new(&store).run(&["get", "workloadendpoints", "-A", "-o", "yaml"]);
        Ok(text.contains("role: web").then_some(()))
    })
    .unwrap();
    assert!(
        labelled.is_some(),
        "no role=web label on an endpoint\n{}",
        da.log()
    );

    // Everything removed: nothing leaked.
    for (d, names) in [(&da, &["blue-a"][..]), (&db, &["blue-b", "green-b"][..])] {
        for name in names {
            d.docker(&["rm", "-f", name]);
        }
        d.docker(&["network", "rm", "blue", "green"]);
    }
    let report = store.ipam_check();
    assert!(
        report.leaks.is_empty() && report.conflicts.is_empty(),
        "ipam check: {report:?}"
    );
    let endpoints = common::policy::Ctl::new(&store).run(&["get", "workloadendpoints", "-A"]);
    assert!(
        !endpoints.contains("libnetwork"),
        "endpoints left: {endpoints}"
    );
    assert!(
        !ha.ns.ip(&["link"]).unwrap().contains("cali")
            && !hb.ns.ip(&["link"]).unwrap().contains("cali"),
        "veths left"
    );
    drop(b);
}
