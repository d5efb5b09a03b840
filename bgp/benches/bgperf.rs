//! bgperf-style BGP benchmark: Brindle, BIRD 2, GoBGP and FRR side by side.
//!
//! ```text
//!   tester 0 (AS 65100) ─┐                         ┌─ monitor (AS 65001)
//!   tester 1 (AS 65100) ─┼── LAN 10.0.0.0/24 ──────┤   counts prefixes
//!   …  10.0.0.10+i       │                         │   10.0.0.2
//!                        └── target (AS 65000) ────┘
//!                            10.0.0.1: the daemon under test
//! ```
//!
//! Testers and the monitor are in-process `brindle_bgp::speaker::Speaker`s,
//! each in its own network namespace (see `bgperf/roles.rs`); the target is
//! a real daemon in a fresh namespace for every run (`bgperf/targets.rs`).
//! For every scenario a `direct` row first connects the testers straight to
//! the monitor: that is what the harness itself costs, and the floor of
//! every target's time. Each tester also reports its own injection time
//! (until its Adj-RIB-Out to the target holds all its prefixes).
//!
//! Measured per run: converge time = from the testers starting to announce
//! (all sessions Established) to the monitor holding all N prefixes, polled
//! every 100 ms; peak RSS = sum of `VmHWM` of the target's processes (bgpd +
//! zebra for FRR); bytes/route = (peak RSS − RSS before announcing) / N. A run
//! not converged within `BGPERF_TIMEOUT_SECS` (600) is reported as such.
//!
//! Needs root (namespaces) and the release daemon:
//! `cargo build --release -p brindle-bgp --bin brindle-bgpd &&
//!  cargo bench -p brindle-bgp --bench bgperf`. Without root it prints why and
//! exits 0. Environment: `BGPERF_SCENARIOS` (`100k,1m,10x100k`),
//! `BGPERF_DAEMONS` (`brindle,bird,gobgp,frr`, plus `direct`),
//! `BGPERF_TIMEOUT_SECS`, `BRINDLE_BGPD` (binary path). The Markdown table is
//! printed and written to `target/bgperf.md`.

#[path = "bgperf/roles.rs"]
mod roles;
#[path = "bgperf/targets.rs"]
mod targets;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use brindle_bgp::packet::{Origin, PathAttributes};
use brindle_bgp::speaker::{PathAttrs, PeerState};
use brindle_testbed::{Lan, Netns};
use ipnet::{IpNet, Ipv4Net};

use roles::RoleSpeaker;
use targets::{Daemon, Target, Wiring};

const TARGET_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const MONITOR_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const TARGET_AS: u32 = 65000;
const MONITOR_AS: u32 = 65001;
/// All testers share one AS: the target (with no policy) sends every
/// tester the other testers' routes, and a shared AS makes each tester drop
/// them at its AS-path loop check instead of building a full table of its
/// own, which on 2 cores made the testers, not the target, the bottleneck
/// of the 10-peer scenario. The target still does the full export work.
const TESTER_AS: u32 = 65100;
const POLL: Duration = Duration::from_millis(100);
const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Debug, Clone, Copy)]
struct Scenario {
    key: &'static str,
    label: &'static str,
    peers: usize,
    per_peer: usize,
}

const SCENARIOS: [Scenario; 3] = [
    Scenario {
        key: "100k",
        label: "100k prefixes, 1 peer",
        peers: 1,
        per_peer: 100_000,
    },
    Scenario {
        key: "1m",
        label: "1M prefixes, 1 peer",
        peers: 1,
        per_peer: 1_000_000,
    },
    Scenario {
        key: "10x100k",
        label: "10 peers × 100k",
        peers: 10,
        per_peer: 100_000,
    },
];

impl Scenario {
    fn total(&self) -> usize {
        self.peers * self.per_peer
    }
}

/// What one (scenario, target) run produced.
#[derive(Debug, Default)]
struct Outcome {
    converged: Option<Duration>,
    /// Slowest tester's time to have sent everything.
    tester_time: Option<Duration>,
    received: usize,
    base_rss_kib: u64,
    peak_rss_kib: u64,
    failure: Option<String>,
}

fn main() -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        println!("bgperf: needs root (network namespaces); skipped");
        return Ok(());
    }
    let scenarios: Vec<Scenario> = match std::env::var("BGPERF_SCENARIOS") {
        Ok(list) => list
            .split(',')
            .map(|k| {
                SCENARIOS
                    .iter()
                    .find(|s| s.key == k.trim())
                    .copied()
                    .with_context(|| format!("unknown scenario {k:?}"))
            })
            .collect::<anyhow::Result<_>>()?,
        Err(_) => SCENARIOS.to_vec(),
    };
    let daemons: Vec<Option<Daemon>> = match std::env::var("BGPERF_DAEMONS") {
        Ok(list) => list
            .split(',')
            .map(|k| match k.trim() {
                "direct" => Ok(None),
                k => Daemon::ALL
                    .iter()
                    .find(|d| d.key() == k)
                    .map(|&d| Some(d))
                    .with_context(|| format!("unknown daemon {k:?}")),
            })
            .collect::<anyhow::Result<_>>()?,
        Err(_) => std::iter::once(None).chain(Daemon::ALL.map(Some)).collect(),
    };
    let timeout = Duration::from_secs(
        std::env::var("BGPERF_TIMEOUT_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(600),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;

    let load_before = load_average();
    let mut rows = Vec::new();
    for scenario in &scenarios {
        for &daemon in &daemons {
            let name = daemon.map_or("direct (no target)", Daemon::name);
            eprintln!("bgperf: {} / {name} …", scenario.label);
            let outcome = runtime
                .block_on(run(*scenario, daemon, timeout))
                .unwrap_or_else(|e| Outcome {
                    failure: Some(format!("{e:#}")),
                    ..Default::default()
                });
            eprintln!("bgperf:   {outcome:?}");
            rows.push((*scenario, daemon, outcome));
        }
    }
    let load_after = load_average();

    let table = render(&rows, timeout, &load_before, &load_after);
    println!("{table}");
    let out = targets::target_dir().join("bgperf.md");
    if let Err(e) = std::fs::write(&out, &table) {
        eprintln!("bgperf: cannot write {}: {e}", out.display());
    }
    Ok(())
}

/// The prefixes of tester `index`: distinct /24s from 16.0.0.0 up, so no
/// two testers overlap and none hits the LAN.
fn tester_prefixes(scenario: &Scenario, index: usize) -> Vec<IpNet> {
    let first = index * scenario.per_peer;
    (first..first + scenario.per_peer)
        .map(|k| {
            let address = Ipv4Addr::from(0x1000_0000u32 + ((k as u32) << 8));
            IpNet::V4(Ipv4Net::new(address, 24).expect("24 is a valid length"))
        })
        .collect()
}

async fn run(
    scenario: Scenario,
    daemon: Option<Daemon>,
    timeout: Duration,
) -> anyhow::Result<Outcome> {
    let lan = Lan::new("bplan")?;
    let tester_ips: Vec<Ipv4Addr> = (0..scenario.peers)
        .map(|i| Ipv4Addr::new(10, 0, 0, 10 + i as u8))
        .collect();
    let monitor_ns = Netns::new("bpmon")?;
    lan.attach(&monitor_ns, "eth0", &[&format!("{MONITOR_IP}/24")])?;
    let mut tester_nss = Vec::new();
    for (i, ip) in tester_ips.iter().enumerate() {
        let ns = Netns::new(&format!("bpt{i}"))?;
        lan.attach(&ns, "eth0", &[&format!("{ip}/24")])?;
        tester_nss.push(ns);
    }
    let testers_as: Vec<(Ipv4Addr, u32)> = tester_ips.iter().map(|&ip| (ip, TESTER_AS)).collect();

    // The target (if any) and who the testers and the monitor talk to.
    let target_ns;
    let target: Option<Target>;
    let (tester_upstream, monitor_peers) = match daemon {
        Some(daemon) => {
            let ns = Netns::new("bptgt")?;
            lan.attach(&ns, "eth0", &[&format!("{TARGET_IP}/24")])?;
            let mut neighbors = testers_as.clone();
            neighbors.push((MONITOR_IP, MONITOR_AS));
            let wiring = Wiring {
                asn: TARGET_AS,
                router_id: TARGET_IP,
                neighbors,
            };
            target = Some(targets::start(daemon, &ns, &wiring)?);
            target_ns = Some(ns);
            ((TARGET_IP, TARGET_AS), vec![(TARGET_IP, TARGET_AS)])
        }
        None => {
            target = None;
            target_ns = None;
            ((MONITOR_IP, MONITOR_AS), testers_as.clone())
        }
    };
    let monitor = RoleSpeaker::start(monitor_ns.name(), MONITOR_AS, MONITOR_IP, &monitor_peers)?;
    let mut testers = Vec::new();
    for (i, ns) in tester_nss.iter().enumerate() {
        let (ip, asn) = testers_as[i];
        testers.push(RoleSpeaker::start(ns.name(), asn, ip, &[tester_upstream])?);
    }
    let prefixes: Vec<Vec<IpNet>> = (0..scenario.peers)
        .map(|i| tester_prefixes(&scenario, i))
        .collect();

    let result = measure(
        &scenario,
        target.as_ref(),
        &monitor,
        &testers,
        prefixes,
        timeout,
    )
    .await;
    let result = result.map_err(|e| match &target {
        Some(t) => e.context(format!("target log tail:\n{}", t.log())),
        None => e,
    });
    // Speakers first (their threads live in the namespaces), then the
    // target, then the namespaces and the LAN.
    drop(testers);
    drop(monitor);
    drop(target);
    drop(target_ns);
    drop(tester_nss);
    drop(monitor_ns);
    drop(lan);
    result
}

async fn measure(
    scenario: &Scenario,
    target: Option<&Target>,
    monitor: &RoleSpeaker,
    testers: &[RoleSpeaker],
    prefixes: Vec<Vec<IpNet>>,
    timeout: Duration,
) -> anyhow::Result<Outcome> {
    // Every session Established before anything is announced.
    let deadline = Instant::now() + ESTABLISH_TIMEOUT;
    loop {
        let mut all_up = true;
        for role in std::iter::once(monitor).chain(testers) {
            let peers = role.speaker.peers().await?;
            all_up &= peers.iter().all(|p| p.state == PeerState::Established);
        }
        if all_up {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "sessions not Established within {ESTABLISH_TIMEOUT:?}"
        );
        tokio::time::sleep(POLL).await;
    }
    // Let the daemons settle (End-of-RIB, initial exchanges) before the
    // memory baseline.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pids = target.map(Target::pids).unwrap_or_default();
    let base_rss_kib = sum_status_kib(&pids, "VmRSS:")?;

    let attrs = PathAttrs {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            ..Default::default()
        },
        next_hop: None,
    };
    let total = scenario.total();
    let start = Instant::now();
    let mut injections = Vec::new();
    for (tester, prefixes) in testers.iter().zip(prefixes) {
        let speaker = tester.speaker.clone();
        let attrs = attrs.clone();
        injections.push(tokio::spawn(async move {
            speaker.originate_many(prefixes, attrs).await
        }));
    }
    for injection in injections {
        injection.await??;
    }

    let mut outcome = Outcome {
        base_rss_kib,
        ..Default::default()
    };
    let mut testers_done = vec![false; testers.len()];
    loop {
        for (done, tester) in testers_done.iter_mut().zip(testers) {
            if !*done {
                let peers = tester.speaker.peers().await?;
                *done = peers
                    .iter()
                    .all(|p| p.prefixes_advertised >= scenario.per_peer);
            }
        }
        if outcome.tester_time.is_none() && testers_done.iter().all(|&d| d) {
            outcome.tester_time = Some(start.elapsed());
        }
        let received: usize = monitor
            .speaker
            .peers()
            .await?
            .iter()
            .map(|p| p.prefixes_received)
            .sum();
        outcome.received = received;
        if received >= total {
            outcome.converged = Some(start.elapsed());
            break;
        }
        if let Some(pid) = pids.iter().find(|&&pid| !is_alive(pid)) {
            outcome.failure = Some(format!("target process {pid} died"));
            break;
        }
        if start.elapsed() > timeout {
            outcome.failure = Some(format!(
                "not converged in {timeout:?} ({received} of {total})"
            ));
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    outcome.peak_rss_kib = sum_status_kib(&pids, "VmHWM:").unwrap_or(0);
    Ok(outcome)
}

fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

/// Sum over `pids` of one `kB` field of `/proc/PID/status`.
fn sum_status_kib(pids: &[u32], field: &str) -> anyhow::Result<u64> {
    let mut sum = 0;
    for pid in pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("reading /proc/{pid}/status"))?;
        let value = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
        sum += value;
    }
    Ok(sum)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn render(
    rows: &[(Scenario, Option<Daemon>, Outcome)],
    timeout: Duration,
    load_before: &str,
    load_after: &str,
) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "load average (1/5/15 min) before: {load_before}, after: {load_after}; \
         converge timeout {} s\n\n",
        timeout.as_secs()
    ));
    out.push_str(
        "| scenario | target | converge time | tester injection | peak RSS | RSS before | bytes/route |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for (scenario, daemon, o) in rows {
        let name = daemon.map_or("direct (no target)", Daemon::name);
        let converge = match (&o.converged, &o.failure) {
            (Some(t), _) => format!("{:.1} s", t.as_secs_f64()),
            (None, Some(f)) => format!("**{f}**"),
            (None, None) => "?".into(),
        };
        let tester = o
            .tester_time
            .map_or("–".into(), |t| format!("{:.1} s", t.as_secs_f64()));
        let (peak, base, per_route) = if daemon.is_some() && o.peak_rss_kib > 0 {
            let grown = o.peak_rss_kib.saturating_sub(o.base_rss_kib) * 1024;
            (
                format!("{:.0} MiB", o.peak_rss_kib as f64 / 1024.0),
                format!("{:.0} MiB", o.base_rss_kib as f64 / 1024.0),
                format!("{}", grown / scenario.total() as u64),
            )
        } else {
            ("–".into(), "–".into(), "–".into())
        };
        out.push_str(&format!(
            "| {} | {name} | {converge} | {tester} | {peak} | {base} | {per_route} |\n",
            scenario.label
        ));
    }
    out
}
