//! `brindle-docker` driven by a real dockerd (Debian's docker.io), one per
//! node, each in its node's network namespace next to brindle-node, as a
//! Docker user types the commands: `docker network create -d <plugin>
//! --ipam-driver <plugin>`, `docker run --network`.
//!
//! - Containers of one network reach each other across nodes (one subnet,
//!   and two subnets over VXLAN, IPv4 and IPv6), two networks do not.
//! - `--ip` is honoured; a label `org.projectcalico.label.*` reaches the
//!   endpoint and a policy selecting it applies.
//! - `docker rm` and `docker network rm` leave nothing behind (`ipam check`
//!   clean), also after 50 `docker run` at once and across restarts of
//!   brindle-docker and of dockerd.
//! - Bad input fails the docker command with a message naming the problem
//!   and writes nothing.

mod common;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use brindle_testbed::poll_until;
use common::docker::{can_run_docker, DockerFabric, DockerNode, IMAGE};
use common::fabric::*;
use common::policy::Ctl;

fn endpoints(store: &Store) -> String {
    Ctl::new(store).run(&["get", "workloadendpoints", "-A"])
}

/// Docker's endpoints (the table's rows; every endpoint of these tests is
/// one).
fn endpoint_count(store: &Store) -> usize {
    endpoints(store)
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .count()
}

/// No leaked or conflicting address, `allocated` addresses in use, no
/// Docker endpoint and no veth left on either node.
fn assert_clean(f: &DockerFabric, allocated: usize) {
    let report = f.store.ipam_check();
    assert!(
        report.leaks.is_empty() && report.conflicts.is_empty() && report.allocated == allocated,
        "ipam check (want {allocated} allocated): {report:?}\n{}",
        f.logs()
    );
    assert_eq!(
        endpoint_count(&f.store),
        0,
        "endpoints left: {}",
        endpoints(&f.store)
    );
    for h in f.hosts.get() {
        let links = h.ns.ip(&["link"]).unwrap();
        assert!(!links.contains("cali"), "veths left: {links}");
    }
}

#[test]
fn docker_networks_across_two_nodes() {
    if !can_run_docker() {
        return;
    }
    let f = DockerFabric::start(&[&pool_yaml("10.93.0.0/16", "Never")], false);
    let [da, db] = &f.docker;

    // Two networks, created on each node under the same names.
    for d in [da, db] {
        d.network("blue", &[]);
        // With --subnet (what `--ip` needs in Docker) of a CIDR no IPPool
        // has yet: the first node to ask creates it.
        d.network("green", &["--subnet", "10.92.0.0/16"]);
    }
    let blue_a = da.run(
        "blue-a",
        "blue",
        &["--label", "org.projectcalico.label.role=web"],
    );
    let blue_b = db.run("blue-b", "blue", &[]);
    let fixed: Ipv4Addr = "10.92.200.9".parse().unwrap();
    let green_b = db.run("green-b", "green", &["--ip", &fixed.to_string()]);
    assert_eq!(green_b, fixed, "--ip honoured");
    let pools = Ctl::new(&f.store).run(&["get", "ippools"]);
    assert!(
        pools.contains("docker-10-92-0-0-16") && pools.contains("10.92.0.0/16"),
        "{pools}"
    );

    // Same network across nodes: reachable (once routes are in).
    assert!(
        da.reaches("blue-a", blue_b),
        "blue-a cannot reach blue-b {blue_b}\n{}",
        f.logs()
    );
    assert!(db.pings("blue-b", blue_a), "blue-b → blue-a");
    // Another network: isolated.
    assert!(!da.pings("blue-a", green_b), "blue reached green");

    // The container's label is on its endpoint...
    let labelled = poll_until(Duration::from_secs(20), Duration::from_millis(200), || {
        let text = Ctl::new(&f.store).run(&["get", "workloadendpoints", "-A", "-o", "yaml"]);
        Ok(text.contains("role: web").then_some(()))
    })
    .unwrap();
    assert!(
        labelled.is_some(),
        "no role=web label on an endpoint\n{}",
        f.logs()
    );
    // ...and a policy selecting it applies: only role=client may reach it.
    let client = db.run(
        "client-b",
        "blue",
        &["--label", "org.projectcalico.label.role=client"],
    );
    assert!(
        db.reaches("client-b", blue_a),
        "client → web before the policy"
    );
    Ctl::new(&f.store).apply(
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: web-from-clients\n  namespace: default\nspec:\n  selector: role == 'web'\n  types: [Ingress]\n  ingress:\n  - action: Allow\n    source:\n      selector: role == 'client'\n",
    );
    let enforced = poll_until(Duration::from_secs(20), Duration::from_millis(200), || {
        Ok((!db.pings("blue-b", blue_a)).then_some(()))
    })
    .unwrap();
    assert!(
        enforced.is_some(),
        "the policy on role=web never kept blue-b out\n{}",
        f.logs()
    );
    assert!(db.pings("client-b", blue_a), "role=client allowed in");
    assert!(da.pings("blue-a", client), "egress of web not restricted");

    // Everything removed: nothing leaked.
    for (d, names) in [
        (da, &["blue-a"][..]),
        (db, &["blue-b", "green-b", "client-b"][..]),
    ] {
        for name in names {
            d.docker(&["rm", "-f", name]);
        }
        d.docker(&["network", "rm", "blue", "green"]);
    }
    assert_clean(&f, 0);
}

/// Two subnets joined by a router: Docker containers reach each other
/// through VXLAN, over IPv4 and IPv6 (`--ipv6`, the default pools of both
/// families, and a `--subnet` of each family for a dual-stack network).
#[test]
fn docker_dual_stack_across_subnets_over_vxlan() {
    if !can_run_docker() {
        return;
    }
    let f = DockerFabric::start_dual_stack(
        &[
            &pool_yaml_named("v4", "10.94.0.0/16", "Always", false),
            &pool_yaml_named("v6", "fd00:94::/48", "Always", false),
            // The pools of a network with --subnet, made by an operator:
            // encapsulated across subnets (a pool the driver creates has
            // Calico's IPPool defaults, no encapsulation).
            &pool_yaml_named("fixed-v4", "10.95.0.0/16", "Always", false),
            &pool_yaml_named("fixed-v6", "fd00:95::/48", "Always", false),
        ],
        true,
    );
    let [da, db] = &f.docker;
    for d in [da, db] {
        d.network("dual", &["--ipv6"]);
        d.network(
            "fixed",
            &[
                "--ipv6",
                "--subnet",
                "10.95.0.0/16",
                "--subnet",
                "fd00:95::/48",
            ],
        );
    }
    let mut v6 = Vec::new();
    for (d, name, network) in [
        (da, "dual-a", "dual"),
        (db, "dual-b", "dual"),
        (da, "fixed-a", "fixed"),
        (db, "fixed-b", "fixed"),
    ] {
        let v4 = d.run(name, network, &[]);
        let ip6: Ipv6Addr = d
            .address(name, network, "GlobalIPv6Address")
            .parse()
            .unwrap_or_else(|_| panic!("{name} has no IPv6 address\n{}", f.logs()));
        // A network without --subnet takes from any pool (Calico's
        // default pools: every enabled one); one with --subnet only from
        // that subnet's pool.
        let (want4, want6) = if network == "fixed" {
            ("10.95.0.0/16", "fd00:95::/48")
        } else {
            ("10.94.0.0/15", "fd00:94::/31")
        };
        let net4: ipnet::IpNet = want4.parse().unwrap();
        let net6: ipnet::IpNet = want6.parse().unwrap();
        assert!(
            net4.contains(&IpAddr::V4(v4)),
            "{name}: {v4} not in {want4}"
        );
        assert!(
            net6.contains(&IpAddr::V6(ip6)),
            "{name}: {ip6} not in {want6}"
        );
        v6.push((v4, ip6));
    }
    for (from, d, to) in [("dual-a", da, 1), ("dual-b", db, 0), ("fixed-a", da, 3)] {
        let (v4, ip6) = v6[to];
        assert!(d.reaches(from, v4), "{from} → {v4}\n{}", f.logs());
        assert!(d.reaches(from, ip6), "{from} → {ip6}\n{}", f.logs());
    }
    // The --subnet network used the operator's pools.
    let pools = Ctl::new(&f.store).run(&["get", "ippools"]);
    assert!(!pools.contains("docker-"), "{pools}");
    // Every address of a running container, both families, belongs to its
    // endpoint: `ipam check` finds nothing to release.
    let report = f.store.ipam_check();
    assert!(
        report.leaks.is_empty() && report.conflicts.is_empty() && report.allocated == 4 + 8,
        "{report:?}"
    );
    for d in [da, db] {
        d.dockerd.stop_containers();
    }
    // Only the nodes' VXLAN tunnel addresses (one per family and node) stay.
    assert_clean(&f, 4);
}

/// Input dockerd or brindle-docker cannot act on fails the docker command
/// with a message naming the problem, and nothing is written: no IPPool,
/// no endpoint, no address.
#[test]
fn docker_bad_input_is_refused_and_writes_nothing() {
    if !can_run_docker() {
        return;
    }
    let f = DockerFabric::start(&[&pool_yaml("10.96.0.0/16", "Never")], false);
    let d = &f.docker[0];
    d.network("net", &["--subnet", "10.96.0.0/16"]);
    let ctl = Ctl::new(&f.store);
    let pools_before = ctl.run(&["get", "ippools", "-o", "yaml"]);

    let refused = |args: Vec<&str>, needles: &[&str]| {
        let out = d.try_docker(&args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "docker {} succeeded\n{}",
            args.join(" "),
            d.log()
        );
        for needle in needles {
            assert!(
                stderr.contains(needle),
                "docker {}: {needle:?} not in {stderr:?}",
                args.join(" ")
            );
        }
        eprintln!("docker {}: {}", args.join(" "), stderr.trim());
    };
    // An unknown driver option.
    refused(
        d.network_args("bad1", &["-o", "mtu=9000"]),
        &["not supported", "mtu"],
    );
    // An unknown IPAM option.
    refused(
        d.network_args(
            "bad2",
            &["--subnet", "10.97.0.0/16", "--ipam-opt", "foo=bar"],
        ),
        &["not supported", "foo"],
    );
    // A subnet overlapping the existing pool (Brindle's pool guard).
    refused(
        d.network_args("bad3", &["--subnet", "10.96.128.0/20"]),
        &["10.96.128.0/20", "overlap"],
    );
    // --ip-range is not something Brindle pools have.
    refused(
        d.network_args(
            "bad4",
            &["--subnet", "10.97.0.0/16", "--ip-range", "10.97.1.0/24"],
        ),
        &["--ip-range", "not supported"],
    );
    // A fixed address outside the network's subnet.
    refused(
        vec![
            "run",
            "-d",
            "--name",
            "bad5",
            "--network",
            "net",
            "--ip",
            "10.99.0.5",
            IMAGE,
            "true",
        ],
        &["10.99.0.5"],
    );
    // A fixed address another container holds.
    d.run("holder", "net", &["--ip", "10.96.7.7"]);
    refused(
        vec![
            "run",
            "-d",
            "--name",
            "bad6",
            "--network",
            "net",
            "--ip",
            "10.96.7.7",
            IMAGE,
            "true",
        ],
        &["10.96.7.7"],
    );

    assert_eq!(
        ctl.run(&["get", "ippools", "-o", "yaml"]),
        pools_before,
        "an IPPool was written"
    );
    let networks = d.docker(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(
        !networks.contains("bad"),
        "a network was created: {networks}"
    );
    assert_eq!(endpoint_count(&f.store), 1, "{}", endpoints(&f.store));
    let report = f.store.ipam_check();
    assert_eq!(report.allocated, 1, "only the holder's address: {report:?}");
    d.docker(&["rm", "-f", "holder"]);
    d.try_docker(&["rm", "-f", "bad5", "bad6"]);
    assert_clean(&f, 0);
}

/// 50 `docker run` at once on one node, then 50 `docker rm` at once: every
/// container has its own address and endpoint, and nothing is left.
#[test]
fn fifty_docker_runs_at_once_leave_no_duplicate_and_no_leak() {
    if !can_run_docker() {
        return;
    }
    let f = DockerFabric::start(&[&pool_yaml("10.98.0.0/16", "Never")], false);
    let d = &f.docker[0];
    d.network("many", &[]);
    const N: usize = 50;
    let failures: Vec<String> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..N)
            .map(|i| {
                s.spawn(move || {
                    let name = format!("c{i}");
                    let out = d.try_docker(&[
                        "run",
                        "-d",
                        "--name",
                        &name,
                        "--network",
                        "many",
                        IMAGE,
                        "sleep",
                        "600",
                    ]);
                    (!out.status.success())
                        .then(|| format!("{name}: {}", String::from_utf8_lossy(&out.stderr)))
                })
            })
            .collect();
        runs.into_iter().filter_map(|r| r.join().unwrap()).collect()
    });
    assert!(failures.is_empty(), "{failures:#?}\n{}", d.log());
    let addresses: BTreeSet<String> = (0..N)
        .map(|i| d.address(&format!("c{i}"), "many", "IPAddress"))
        .collect();
    assert_eq!(addresses.len(), N, "duplicate addresses: {addresses:?}");
    assert_eq!(endpoint_count(&f.store), N);
    let report = f.store.ipam_check();
    assert!(
        report.leaks.is_empty() && report.conflicts.is_empty() && report.allocated == N,
        "{report:?}"
    );
    // A container reaches its neighbours on the node.
    let first: Ipv4Addr = d.address("c0", "many", "IPAddress").parse().unwrap();
    assert!(d.reaches(&format!("c{}", N - 1), first));

    std::thread::scope(|s| {
        for i in 0..N {
            s.spawn(move || d.docker(&["rm", "-f", &format!("c{i}")]));
        }
    });
    // Brindle's side: every endpoint and address gone.
    assert_clean(&f, 0);
    // dockerd answers `rm -f` before its last Leave/DeleteEndpoint calls
    // have returned; the network goes once they have. dockerd 20.10 can
    // also lose count of a network's endpoints when many containers go at
    // once, whatever the driver ("has active endpoints" with no container
    // left, moby/moby#42119); its restart, the known cure, recounts them.
    let network_rm = |d: &DockerNode| {
        poll_until(Duration::from_secs(30), Duration::from_millis(500), || {
            Ok(d.try_docker(&["network", "rm", "many"])
                .status
                .success()
                .then_some(()))
        })
        .unwrap()
        .is_some()
    };
    if !network_rm(&f.docker[0]) {
        let containers =
            f.docker[0].docker(&["network", "inspect", "-f", "{{len .Containers}}", "many"]);
        assert_eq!(containers, "0", "containers left on network many");
        eprintln!(
            "dockerd lost count of network many's endpoints (moby/moby#42119): restarting it"
        );
        let mut f = f;
        f.docker[0].dockerd.restart().expect("dockerd restart");
        assert!(
            network_rm(&f.docker[0]),
            "network many still has endpoints\n{}",
            f.docker[0].log()
        );
        assert_clean(&f, 0);
        return;
    }
    assert_clean(&f, 0);
}

/// brindle-docker killed (SIGKILL) and started again: running containers
/// keep their address and reachability, new ones run, and a `docker rm`
/// handled by the new process releases. dockerd stopped and started again:
/// its containers' endpoints and addresses are released when it stops
/// them and a `--restart always` container comes back with one endpoint
/// and one address.
#[test]
fn brindle_docker_and_dockerd_restarts_lose_and_leak_nothing() {
    if !can_run_docker() {
        return;
    }
    let mut f = DockerFabric::start(&[&pool_yaml("10.99.0.0/16", "Never")], false);
    {
        let [da, db] = &f.docker;
        da.network("red", &[]);
        db.network("red", &[]);
    }
    let a1 = f.docker[0].run("a1", "red", &[]);
    let b1 = f.docker[1].run("b1", "red", &[]);
    assert!(f.docker[0].reaches("a1", b1), "{}", f.logs());

    // brindle-docker crashes and comes back.
    f.docker[0].kill_driver();
    assert!(
        f.docker[1].pings("b1", a1),
        "a1 unreachable with its driver down"
    );
    f.docker[0].start_driver(&f.hosts.get()[0].ns);
    let a2 = f.docker[0].run("a2", "red", &[]);
    assert!(f.docker[0].reaches("a2", b1), "{}", f.logs());
    assert!(f.docker[1].pings("b1", a1));
    f.docker[0].docker(&["rm", "-f", "a1"]);
    assert_eq!(endpoint_count(&f.store), 2, "{}", endpoints(&f.store));
    let report = f.store.ipam_check();
    assert!(
        report.leaks.is_empty() && report.allocated == 2,
        "{report:?}"
    );

    // dockerd restarts; a2 restarts with it.
    f.docker[0].docker(&["update", "--restart", "always", "a2"]);
    f.docker[0].dockerd.restart().expect("dockerd restart");
    let back = poll_until(Duration::from_secs(60), Duration::from_millis(500), || {
        let state = f.docker[0].try_docker(&["inspect", "-f", "{{.State.Running}}", "a2"]);
        Ok((String::from_utf8_lossy(&state.stdout).trim() == "true").then_some(()))
    })
    .unwrap();
    assert!(back.is_some(), "a2 did not come back\n{}", f.logs());
    let a2_again: Ipv4Addr = f.docker[0]
        .address("a2", "red", "IPAddress")
        .parse()
        .unwrap();
    assert!(f.docker[0].reaches("a2", b1), "{}", f.logs());
    assert!(f.docker[1].reaches("b1", a2_again), "{}", f.logs());
    eprintln!("a2: {a2} before the dockerd restart, {a2_again} after");
    assert_eq!(endpoint_count(&f.store), 2, "{}", endpoints(&f.store));
    let report = f.store.ipam_check();
    assert!(
        report.leaks.is_empty() && report.conflicts.is_empty() && report.allocated == 2,
        "{report:?}\n{}",
        f.logs()
    );
    for d in &f.docker {
        d.dockerd.stop_containers();
        d.docker(&["network", "rm", "red"]);
    }
    assert_clean(&f, 0);
}

/// `docker rm` while brindle-docker is down: dockerd cannot call the
/// driver, so the container's endpoint and address outlive it; the
/// restarted driver finds endpoints dockerd no longer has and releases
/// them, and leaves the running containers' alone.
#[test]
fn docker_rm_while_brindle_docker_is_down_leaks_nothing() {
    if !can_run_docker() {
        return;
    }
    let mut f = DockerFabric::start(&[&pool_yaml("10.93.0.0/16", "Never")], false);
    f.docker[0].network("red", &[]);
    f.docker[1].network("red", &[]);
    let _a1 = f.docker[0].run("a1", "red", &[]);
    let a2 = f.docker[0].run("a2", "red", &[]);
    let b1 = f.docker[1].run("b1", "red", &[]);
    assert!(f.docker[1].reaches("b1", a2), "{}", f.logs());

    f.docker[0].kill_driver();
    let started = std::time::Instant::now();
    let out = f.docker[0].try_docker(&["rm", "-f", "a1"]);
    eprintln!(
        "docker rm -f with the driver down: {:?} after {:?}: {}",
        out.status,
        started.elapsed(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(endpoint_count(&f.store), 3, "{}", endpoints(&f.store));
    f.docker[0].start_driver(&f.hosts.get()[0].ns);
    let cleaned = poll_until(Duration::from_secs(60), Duration::from_millis(500), || {
        Ok((endpoint_count(&f.store) == 2).then_some(()))
    })
    .unwrap();
    assert!(
        cleaned.is_some(),
        "a1's endpoint stayed\n{}\n{}",
        endpoints(&f.store),
        f.logs()
    );
    let report = f.store.ipam_check();
    assert!(
        report.leaks.is_empty() && report.conflicts.is_empty() && report.allocated == 2,
        "{report:?}\n{}",
        f.logs()
    );
    assert!(f.docker[1].pings("b1", a2), "a2 lost its network");
    assert!(f.docker[0].reaches("a2", b1), "{}", f.logs());
    for d in &f.docker {
        d.dockerd.stop_containers();
    }
    assert_clean(&f, 0);
}
