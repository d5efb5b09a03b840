//! Install N routes (default 100 000) in a fresh network namespace with
//! Brindle's reconciler + rtnetlink implementation, and with `ip -batch`
//! doing the same, and print both timings side by side.
//!
//! ```text
//! cargo bench -p brindle-agent --bench route_install            # 100k
//! BRINDLE_BENCH_ROUTES=20000 cargo bench -p brindle-agent --bench route_install
//! ```
//!
//! Needs root (creates and deletes namespace `brb-<pid>`). Each phase starts
//! from an empty table of our protocol. Phases:
//! - install: empty table → N routes `10.x.y.z/32 via 10.0.0.2 dev eth0`;
//! - restart resync: a fresh reconciler over the N installed routes (dump +
//!   diff, zero operations expected), then again with N routes of another
//!   protocol in the table (the kernel filters the dump);
//! - remove: N routes → none.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::{Duration, Instant};

use brindle_agent::netlink::Netlink;
use brindle_agent::netns::{block_on_in_netns, named_netns_path};
use brindle_agent::reconciler::{Input, ReconcilerConfig};
use brindle_agent::route::{Route, BRINDLE_ROUTE_PROTOCOL};
use brindle_agent::routesync::RouteSyncer;

struct Namespace(String);

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("spawn ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn prefixes(n: usize) -> Vec<Ipv4Addr> {
    // 10.128.0.0 upwards, one /32 each.
    (0..n as u32)
        .map(|i| Ipv4Addr::from(0x0a80_0000 + i))
        .collect()
}

/// Someone else's routes (e.g. a full table from BIRD), disjoint from ours.
fn foreign_prefixes(n: usize) -> Vec<Ipv4Addr> {
    (0..n as u32)
        .map(|i| Ipv4Addr::from(0x0b00_0000 + i))
        .collect()
}

fn count_ours(ns: &str) -> usize {
    let out = Command::new("ip")
        .args(["-n", ns, "route", "show", "proto", "80"])
        .output()
        .expect("ip route show");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

struct Phases {
    install: Duration,
    resync: Duration,
    resync_with_foreign: Duration,
    remove: Duration,
}

fn brindle_phases(ns: &str, n: usize) -> Phases {
    let path = named_netns_path(ns);
    let nsname = ns.to_owned();
    let routes: Vec<Route> = prefixes(n)
        .into_iter()
        .map(|p| {
            Route::via(
                ipnet::IpNet::from(IpAddr::V4(p)),
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            )
        })
        .collect();
    block_on_in_netns(&path, move || async move {
        let config = ReconcilerConfig::default();
        let mut syncer = RouteSyncer::new(
            Netlink::connect(BRINDLE_ROUTE_PROTOCOL).unwrap(),
            config.clone(),
        );
        let start = Instant::now();
        syncer.handle(Input::SetAll(routes.clone())).await;
        syncer.handle(Input::Start).await;
        let install = start.elapsed();
        assert!(syncer.reconciler().in_sync());
        assert_eq!(syncer.ops_applied(), n as u64);

        let mut restarted = RouteSyncer::new(
            Netlink::connect(BRINDLE_ROUTE_PROTOCOL).unwrap(),
            config.clone(),
        );
        let start = Instant::now();
        restarted.handle(Input::SetAll(routes.clone())).await;
        restarted.handle(Input::Start).await;
        let resync = start.elapsed();
        assert_eq!(restarted.ops_applied(), 0, "restart must be a no-op");

        // Another N routes of another protocol: the kernel filters the dump.
        batch(
            &nsname,
            foreign_prefixes(n)
                .iter()
                .map(|p| format!("route add {p}/32 via 10.0.0.2 dev eth0 proto bird")),
        );
        let mut third = RouteSyncer::new(
            Netlink::connect(BRINDLE_ROUTE_PROTOCOL).unwrap(),
            config.clone(),
        );
        let start = Instant::now();
        third.handle(Input::SetAll(routes)).await;
        third.handle(Input::Start).await;
        let resync_with_foreign = start.elapsed();
        assert_eq!(third.ops_applied(), 0, "foreign routes are not ours");

        let start = Instant::now();
        third.handle(Input::SetAll(Vec::new())).await;
        let remove = start.elapsed();
        assert!(third.reconciler().in_sync());
        batch(
            &nsname,
            foreign_prefixes(n)
                .iter()
                .map(|p| format!("route del {p}/32 proto bird")),
        );
        Phases {
            install,
            resync,
            resync_with_foreign,
            remove,
        }
    })
    .unwrap()
}

/// Run `ip -n <ns> -batch` over `lines`; returns the time `ip` took.
fn batch(ns: &str, lines: impl Iterator<Item = String>) -> Duration {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    {
        let mut w = std::io::BufWriter::new(file.as_file_mut());
        for line in lines {
            writeln!(w, "{line}").unwrap();
        }
    }
    let path = file.path().to_str().unwrap().to_owned();
    let start = Instant::now();
    ip(&["-n", ns, "-batch", &path]);
    start.elapsed()
}

fn ip_batch(ns: &str, verb: &str, n: usize) -> Duration {
    batch(
        ns,
        prefixes(n).into_iter().map(|p| match verb {
            "add" => format!("route add {p}/32 via 10.0.0.2 dev eth0 proto 80"),
            _ => format!("route del {p}/32 proto 80"),
        }),
    )
}

fn ms(d: Duration) -> String {
    format!("{:>10.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    // `cargo bench` passes `--bench`; a plain `cargo test --benches` passes
    // nothing useful either way. Only run when we can create namespaces.
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("route_install: needs root, skipping");
        return;
    }
    let n: usize = std::env::var("BRINDLE_BENCH_ROUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let name = format!("brb-{}", std::process::id());
    ip(&["netns", "add", &name]);
    let ns = Namespace(name);
    ip(&[
        "-n", &ns.0, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
    ]);
    ip(&["-n", &ns.0, "addr", "add", "10.0.0.1/16", "dev", "eth0"]);
    ip(&["-n", &ns.0, "link", "set", "eth0", "up"]);
    ip(&["-n", &ns.0, "link", "set", "eth0p", "up"]);

    let b = brindle_phases(&ns.0, n);
    assert_eq!(count_ours(&ns.0), 0);

    let i_install = ip_batch(&ns.0, "add", n);
    assert_eq!(count_ours(&ns.0), n);
    let i_remove = ip_batch(&ns.0, "del", n);
    assert_eq!(count_ours(&ns.0), 0);

    println!("routes: {n} (/32 via 10.0.0.2 dev eth0, proto 80, one netns)");
    println!("{:<34}{:>13}{:>13}", "phase", "brindle", "ip -batch");
    println!("{:<34}{}{}", "install", ms(b.install), ms(i_install));
    println!(
        "{:<34}{}{:>13}",
        "restart resync (no-op)",
        ms(b.resync),
        "n/a"
    );
    println!(
        "{:<34}{}{:>13}",
        "  same, with N foreign routes",
        ms(b.resync_with_foreign),
        "n/a"
    );
    println!("{:<34}{}{}", "remove", ms(b.remove), ms(i_remove));
}
