//! The demo's Docker part, when docker.io is installed: a dockerd and a
//! `brindle-docker` on node-0 and node-2 (two subnets), two Docker networks
//! created on both with the Brindle driver, one container of each network
//! on each node, and the container × container matrix: same Docker network
//! passes (across the router over VXLAN), different networks are blocked.
//! Everything is removed afterwards and `brindlectl ipam check` must find
//! no leaked address.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use brindle_testbed::docker::Dockerd;
use brindle_testbed::{Process, RoutedFabric};

use super::{brindlectl, check_interrupted, wait_for, Binaries};

const IMAGE: &str = "bb:demo";
const NETWORKS: [&str; 2] = ["web", "db"];
/// The nodes that run Docker: one on each subnet.
const NODES: [usize; 2] = [0, 2];

/// A node's dockerd with brindle-docker beside it. Field order is drop
/// order: containers (removed by the Dockerd's drop) need the driver.
struct DockerHost {
    node: usize,
    dockerd: Dockerd,
    plugin: String,
    _driver: Process,
}

impl DockerHost {
    fn docker(&self, args: &[&str]) -> Result<String> {
        self.dockerd
            .run(args)
            .with_context(|| format!("node-{}: docker {}", self.node, args.join(" ")))
    }

    fn exec_ok(&self, container: &str, command: &str) -> bool {
        self.dockerd
            .docker(&["exec", container, "sh", "-c", command])
            .is_ok_and(|o| o.status.success())
    }
}

struct Container {
    name: String,
    host: usize,
    network: &'static str,
    ip: Ipv4Addr,
}

/// Runs the Docker part; `None` when docker.io or brindle-docker is missing.
pub fn docker_part(
    bins: &Binaries,
    store_url: &str,
    dir: &Path,
    fabric: &RoutedFabric,
) -> Result<Option<bool>> {
    let Some(driver_bin) = &bins.docker else {
        println!("\n== Docker: skipped (brindle-docker was not built next to brindle-demo)");
        return Ok(None);
    };
    if !Dockerd::available() {
        println!("\n== Docker: skipped (docker.io is not installed)");
        return Ok(None);
    }
    println!("\n== Docker: dockerd and brindle-docker on node-0 and node-2 (two subnets)");
    let mut hosts = Vec::new();
    for node in NODES {
        let ns = &fabric.hosts[node].ns;
        let dockerd = Dockerd::start(ns, &format!("demo{node}"))
            .with_context(|| format!("starting dockerd on node-{node}"))?;
        dockerd.import_busybox(IMAGE)?;
        // Every dockerd on this machine reads /run/docker/plugins.
        let plugin = format!("brindle-demo-{}-{node}", std::process::id());
        let state = dir.join(format!("docker-state-{node}"));
        let driver = ns.spawn(
            "brindle-docker",
            &[
                &driver_bin.display().to_string(),
                "--datastore",
                store_url,
                "--node-name",
                &format!("node-{node}"),
                "--plugin-name",
                &plugin,
                "--docker-host",
                &dockerd.host(),
                "--state-dir",
                &state.display().to_string(),
            ],
            &dir.join(format!("brindle-docker-{node}.log")),
        )?;
        let socket = format!("/run/docker/plugins/{plugin}.sock");
        if wait_for(Duration::from_secs(20), || {
            Ok(Path::new(&socket).exists().then_some(()))
        })?
        .is_none()
        {
            bail!("node-{node}: brindle-docker never served {socket}");
        }
        let version = dockerd.run(&["version", "--format", "{{.Server.Version}}"])?;
        println!("  node-{node}: dockerd {version}, brindle-docker serving plugin {plugin}");
        hosts.push(DockerHost {
            node,
            dockerd,
            plugin,
            _driver: driver,
        });
        check_interrupted()?;
    }
    for h in &hosts {
        for network in NETWORKS {
            h.docker(&[
                "network",
                "create",
                "-d",
                &h.plugin,
                "--ipam-driver",
                &h.plugin,
                network,
            ])?;
        }
    }
    println!(
        "  docker network create -d <plugin> --ipam-driver <plugin> {{web,db}} on both nodes \
         (equal names: one Brindle network)"
    );
    let mut containers = Vec::new();
    for (index, h) in hosts.iter().enumerate() {
        for network in NETWORKS {
            let name = format!("{network}-{}", h.node);
            h.docker(&[
                "run",
                "-d",
                "--name",
                &name,
                "--network",
                network,
                IMAGE,
                "httpd",
                "-f",
                "-p",
                "80",
                "-h",
                "/",
            ])?;
            let ip = h.docker(&[
                "inspect",
                "-f",
                &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"),
                &name,
            ])?;
            let ip: Ipv4Addr = ip
                .parse()
                .with_context(|| format!("{name} has no address ({ip:?})"))?;
            println!(
                "  docker run --network {network:<4} {name:<6} on node-{}: {ip}",
                h.node
            );
            containers.push(Container {
                name,
                host: index,
                network,
                ip,
            });
            check_interrupted()?;
        }
    }

    let all_ok = matrix(&hosts, &containers)?;

    println!("\n== Docker teardown: docker rm, docker network rm, then brindlectl ipam check");
    for h in &hosts {
        h.dockerd.stop_containers();
        for network in NETWORKS {
            // dockerd may still be finishing the last Leave/DeleteEndpoint.
            let removed = wait_for(Duration::from_secs(30), || {
                Ok(h.dockerd
                    .docker(&["network", "rm", network])?
                    .status
                    .success()
                    .then_some(()))
            })?;
            if removed.is_none() {
                bail!(
                    "node-{}: docker network rm {network} never succeeded",
                    h.node
                );
            }
        }
    }
    drop(hosts);
    let check = brindlectl(bins, store_url, &["ipam", "check"])?;
    let summary = check.lines().last().unwrap_or_default().to_owned();
    let clean = summary.contains("found 0 problems");
    println!("  {summary}");
    if !clean {
        println!("  FAIL: Docker left addresses behind:\n{check}");
    }
    Ok(Some(all_ok && clean))
}

/// ICMP and TCP (an HTTP request to busybox httpd) from every container to
/// every other, through `docker exec`.
fn matrix(hosts: &[DockerHost], containers: &[Container]) -> Result<bool> {
    println!("\n== Docker reachability: container x container (ICMP echo / TCP connect)");
    println!("  expectation: same Docker network passes, web<->db is blocked");
    print!("  {:>9}", "from\\to");
    for c in containers {
        print!(" {:>8}", c.name);
    }
    println!();
    let mut failures = Vec::new();
    let mut total = 0;
    for from in containers {
        let h = &hosts[from.host];
        print!("  {:>9}", from.name);
        for to in containers {
            if std::ptr::eq(from, to) {
                print!(" {:>8}", "-");
                continue;
            }
            let expect = from.network == to.network;
            let ping = format!("ping -c 1 -W 1 {}", to.ip);
            // busybox nc, not wget: the static wget crashes looking for NSS
            // modules in a rootfs without them.
            let http = format!(
                "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 1 {} 80 | grep -q '^HTTP/1'",
                to.ip
            );
            let mut cell = String::new();
            for (proto, command) in [("icmp", &ping), ("tcp", &http)] {
                let got = if expect {
                    wait_for(Duration::from_secs(15), || {
                        Ok(h.exec_ok(&from.name, command).then_some(()))
                    })?
                    .is_some()
                } else {
                    h.exec_ok(&from.name, command)
                };
                total += 1;
                if got != expect {
                    failures.push(format!(
                        "{} -> {} {proto}: expected {}, got {}",
                        from.name,
                        to.name,
                        if expect { "pass" } else { "blocked" },
                        if got { "pass" } else { "blocked" }
                    ));
                }
                cell.push_str(if got { "ok/" } else { "--/" });
                check_interrupted()?;
            }
            cell.pop();
            print!(" {cell:>8}");
        }
        println!();
    }
    println!("  (ok = reached, -- = blocked; cell is icmp/tcp)");
    for f in &failures {
        println!("  FAIL {f}");
    }
    if failures.is_empty() {
        println!("  PASS: all {total} Docker expectations held.");
    } else {
        println!(
            "  FAIL: {} of {total} Docker expectations did not hold.",
            failures.len()
        );
    }
    Ok(failures.is_empty())
}
