//! The daemons under test, each started in the (fresh) target namespace with
//! eBGP sessions to every tester and to the monitor and no policy filtering.
//!
//! Every target gets the same job: accept IPv4 unicast from the testers,
//! pass the best paths on to the monitor. Kernel route installation is off
//! where the daemon would do it by default (BIRD has no `kernel` protocol
//! here; FRR's bgpd runs with `bgp no-rib`), because the benchmark measures
//! BGP processing, as bgperf does, not netlink.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use brindle_testbed::{gobgp_config, BgpConfig, Bird, Frr, Gobgp, Netns, Process};

/// The implementations compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Daemon {
    Brindle,
    Bird,
    Gobgp,
    Frr,
}

impl Daemon {
    pub const ALL: [Daemon; 4] = [Daemon::Brindle, Daemon::Bird, Daemon::Gobgp, Daemon::Frr];

    pub fn name(self) -> &'static str {
        match self {
            Daemon::Brindle => "brindle-bgpd",
            Daemon::Bird => "BIRD 2",
            Daemon::Gobgp => "GoBGP",
            Daemon::Frr => "FRR bgpd",
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Daemon::Brindle => "brindle",
            Daemon::Bird => "bird",
            Daemon::Gobgp => "gobgp",
            Daemon::Frr => "frr",
        }
    }
}

/// Who the target talks to.
pub struct Wiring {
    pub asn: u32,
    pub router_id: Ipv4Addr,
    /// (address, AS) of each tester and then the monitor.
    pub neighbors: Vec<(Ipv4Addr, u32)>,
}

/// A running target; stops on drop.
pub enum Target {
    Brindle {
        process: Process,
        _dir: tempfile::TempDir,
    },
    Bird(Bird),
    Gobgp(Gobgp),
    Frr(Frr),
}

impl Target {
    /// Pids whose memory counts as the target's (bgpd + zebra for FRR).
    pub fn pids(&self) -> Vec<u32> {
        match self {
            Target::Brindle { process, .. } => vec![process.pid()],
            Target::Bird(b) => vec![b.pid()],
            Target::Gobgp(g) => vec![g.pid()],
            Target::Frr(f) => f.pids().to_vec(),
        }
    }

    /// The target's log, for failures.
    pub fn log(&self) -> String {
        match self {
            Target::Brindle { process, .. } => process.log_tail(4096),
            Target::Bird(b) => tail(&b.log()),
            Target::Gobgp(g) => tail(&g.log()),
            Target::Frr(f) => tail(&f.bgpd_log()),
        }
    }
}

fn tail(text: &str) -> String {
    let start = text.len().saturating_sub(4096);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[start..].to_string()
}

/// The release `brindle-bgpd`: `$BRINDLE_BGPD`, else `target/release/`.
pub fn brindle_bgpd_path() -> PathBuf {
    if let Some(path) = std::env::var_os("BRINDLE_BGPD") {
        return path.into();
    }
    target_dir().join("release/brindle-bgpd")
}

/// The workspace's target directory (`$CARGO_TARGET_DIR` or `target/`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

pub fn start(daemon: Daemon, ns: &Netns, wiring: &Wiring) -> anyhow::Result<Target> {
    Ok(match daemon {
        Daemon::Brindle => start_brindle(ns, wiring)?,
        Daemon::Bird => Target::Bird(Bird::start_with_config(ns, &bird_conf(wiring))?),
        Daemon::Gobgp => {
            let mut config = BgpConfig::new(wiring.router_id, wiring.asn);
            config.hold_time = 90;
            config.connect_retry = 1;
            for &(address, asn) in &wiring.neighbors {
                config = config.neighbor(address.into(), asn);
            }
            Target::Gobgp(Gobgp::start_with_config(ns, &gobgp_config(&config))?)
        }
        Daemon::Frr => Target::Frr(Frr::start_with_config(ns, &frr_conf(wiring))?),
    })
}

fn start_brindle(ns: &Netns, wiring: &Wiring) -> anyhow::Result<Target> {
    let binary = brindle_bgpd_path();
    anyhow::ensure!(
        binary.exists(),
        "{} is missing: run `cargo build --release -p brindle-bgp --bin brindle-bgpd` first \
         (or set BRINDLE_BGPD)",
        binary.display()
    );
    let dir = tempfile::Builder::new()
        .prefix("bgperf-brindle.")
        .tempdir()?;
    let mut yaml = format!(
        "asn: {}\nrouter_id: {}\nlisten: 0.0.0.0:179\ncontrol_socket: {}\nlog_level: warn\npeers:\n",
        wiring.asn,
        wiring.router_id,
        dir.path().join("bgpd.sock").display()
    );
    for &(address, asn) in &wiring.neighbors {
        yaml.push_str(&format!(
            "  - address: {address}\n    asn: {asn}\n    connect_retry: 1\n"
        ));
    }
    let config = dir.path().join("bgpd.yaml");
    std::fs::write(&config, yaml)?;
    let argv = [
        binary.display().to_string(),
        "--config".into(),
        config.display().to_string(),
    ];
    let process = ns.spawn("brindle-bgpd", &argv, &dir.path().join("bgpd.log"))?;
    Ok(Target::Brindle { process, _dir: dir })
}

/// BIRD as in bgperf: one table, BGP in and out, nothing to the kernel.
fn bird_conf(wiring: &Wiring) -> String {
    let mut out = format!(
        "router id {};\nlog stderr {{ warning, error, fatal }};\nprotocol device {{ }}\n",
        wiring.router_id
    );
    for (i, &(address, asn)) in wiring.neighbors.iter().enumerate() {
        out.push_str(&format!(
            "protocol bgp n{i} {{\n  local as {};\n  neighbor {address} as {asn};\n  \
             connect retry time 1;\n  connect delay time 1;\n  \
             ipv4 {{ import all; export all; }};\n}}\n",
            wiring.asn
        ));
    }
    out
}

/// FRR bgpd: no policy requirement, no RIB installation.
fn frr_conf(wiring: &Wiring) -> String {
    let mut out = format!(
        "hostname bgperf\nlog stdout warnings\n!\nbgp no-rib\n!\nrouter bgp {}\n bgp router-id {}\n \
         no bgp ebgp-requires-policy\n no bgp default ipv4-unicast\n",
        wiring.asn, wiring.router_id
    );
    for &(address, asn) in &wiring.neighbors {
        out.push_str(&format!(
            " neighbor {address} remote-as {asn}\n neighbor {address} timers connect 1\n"
        ));
    }
    out.push_str(" !\n address-family ipv4 unicast\n");
    for &(address, _) in &wiring.neighbors {
        out.push_str(&format!("  neighbor {address} activate\n"));
    }
    out.push_str(" exit-address-family\n!\n");
    out
}
