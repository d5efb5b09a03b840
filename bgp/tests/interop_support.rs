//! Shared scaffolding of the `brindle-bgpd` interop tests (included by them
//! with `#[path]`; as a test target of its own it has no tests).
//!
//! * [`Bgpd`]: the built `brindle-bgpd` binary running in a namespace with
//!   generated YAML, queried through `brindle-bgpd show … --json` (so every
//!   test also exercises the CLI and the control socket).
//! * [`Other`]: BIRD 2, FRR or GoBGP, configured from one testbed
//!   [`BgpConfig`] (the tree's one generator of their configs, with
//!   per-route attributes), and read back through birdc / vtysh / gobgp into
//!   one [`SeenRoute`] shape, so each scenario is written once and run
//!   against all three.
//! * [`lan`]: namespaces on one switched segment, `10.77.0.N/24` and
//!   `fd77::N/64` for host N.
//!
//! Everything is torn down on drop (namespaces, processes, temp files), also
//! when a test panics; names are unique per process. Needs root.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use brindle_bgp::daemon::control::{PeerView, RouteView};
use brindle_testbed::{bird_config, bird_protocol_name, Bird, Frr, Gobgp, Lan, Netns, Process};
// Not every test that includes this file uses all three.
#[allow(unused_imports)]
pub use brindle_testbed::{BgpConfig, Neighbor, Route};
use serde_json::Value;
use tempfile::TempDir;

pub const BGPD: &str = env!("CARGO_BIN_EXE_brindle-bgpd");
/// Upper bound for any one convergence wait; a bound, not a measurement.
pub const WAIT: Duration = Duration::from_secs(60);

/// Host `n`'s IPv4 address on the LAN.
pub fn v4(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 77, 0, n))
}

/// Host `n`'s IPv6 address on the LAN.
pub fn v6(n: u8) -> IpAddr {
    IpAddr::V6(format!("fd77::{n}").parse().unwrap())
}

/// Router id of host `n`.
pub fn rid(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 0, n)
}

/// A switched segment and one namespace per host (host `i` gets number
/// `i + 1`).
pub struct Fabric {
    pub hosts: Vec<Netns>,
    // Dropped after the hosts, so their interfaces go first.
    pub lan: Lan,
}

pub fn lan(tag: &str, count: u8) -> Fabric {
    let lan = Lan::new(&format!("{tag}s")).expect("switch namespace");
    let mut hosts = Vec::new();
    for n in 1..=count {
        let ns = Netns::new(&format!("{tag}{n}")).expect("host namespace");
        let a4 = format!("{}/24", v4(n));
        let a6 = format!("{}/64", v6(n));
        lan.attach(&ns, "eth0", &[&a4, &a6]).expect("attach");
        hosts.push(ns);
    }
    Fabric { hosts, lan }
}

/// Polls `probe` every 200 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `brindle-bgpd` running in a namespace.
pub struct Bgpd {
    process: Option<Process>,
    ns_name: String,
    config: PathBuf,
    socket: PathBuf,
    dir: TempDir,
}

impl Bgpd {
    /// Writes `yaml` (without `control_socket`, which is added) and starts
    /// the daemon in `ns`; returns once its control socket answers.
    pub fn start(ns: &Netns, yaml: &str) -> Bgpd {
        let dir = tempfile::Builder::new()
            .prefix("brindle-bgpd-test")
            .tempdir()
            .expect("temp dir");
        let socket = dir.path().join("bgpd.sock");
        let config = dir.path().join("bgpd.yaml");
        let text = format!(
            "{}\ncontrol_socket: {}\nlog_level: debug\n",
            yaml.trim_end(),
            socket.display()
        );
        std::fs::write(&config, text).expect("write config");
        let mut bgpd = Bgpd {
            process: None,
            ns_name: ns.name().to_string(),
            config,
            socket,
            dir,
        };
        bgpd.spawn(ns);
        bgpd
    }

    fn spawn(&mut self, ns: &Netns) {
        let argv = [
            BGPD.to_string(),
            "--config".into(),
            self.config.display().to_string(),
        ];
        let log = self.dir.path().join("bgpd.log");
        let process = ns
            .spawn("brindle-bgpd", &argv, &log)
            .expect("spawn brindle-bgpd");
        self.process = Some(process);
        let up = wait_for(WAIT, || {
            if let Some(p) = self.process.as_mut() {
                if !p.is_running() {
                    return Some(false);
                }
            }
            self.try_show(&["peers"]).ok().map(|_| true)
        });
        assert_eq!(
            up,
            Some(true),
            "brindle-bgpd did not come up:\n{}",
            self.log()
        );
    }

    /// Starts the daemon again with the same config (after [`Bgpd::stop`] or
    /// [`Bgpd::kill`]).
    pub fn restart(&mut self, ns: &Netns) {
        assert_eq!(ns.name(), self.ns_name);
        self.spawn(ns);
    }

    /// SIGTERM (Cease to peers), waits for exit; returns the exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut p = self.process.take()?;
        p.stop();
        p.exit_status()
    }

    /// SIGKILL: a crash, peers see the TCP connection drop (or nothing).
    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p.pid() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            p.stop();
        }
    }

    /// The running daemon's process id.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Process::pid)
    }

    /// Resident memory of the running daemon, KiB (`VmRSS`).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Sends `signal` to the daemon (e.g. SIGHUP to reload).
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = self.process.as_ref().expect("brindle-bgpd running").pid();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).expect("kill");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("bgpd.log")).unwrap_or_default()
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// `brindle-bgpd show <what> --json --socket …`.
    pub fn try_show(&self, what: &[&str]) -> Result<Value, String> {
        let out = Command::new(BGPD)
            .arg("show")
            .args(what)
            .arg("--json")
            .arg("--socket")
            .arg(&self.socket)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
    }

    pub fn peers(&self) -> Vec<PeerView> {
        let v = self
            .try_show(&["peers"])
            .unwrap_or_else(|e| panic!("show peers: {e}"));
        serde_json::from_value(v).expect("peers JSON")
    }

    pub fn peer(&self, address: IpAddr) -> PeerView {
        let v = self
            .try_show(&["peer", &address.to_string()])
            .unwrap_or_else(|e| panic!("show peer: {e}"));
        serde_json::from_value(v).expect("peer JSON")
    }

    pub fn routes(&self) -> Vec<RouteView> {
        let v = self
            .try_show(&["routes"])
            .unwrap_or_else(|e| panic!("show routes: {e}"));
        serde_json::from_value(v).expect("routes JSON")
    }

    pub fn route(&self, prefix: &str) -> Option<RouteView> {
        self.routes()
            .into_iter()
            .find(|r| r.prefix.to_string() == prefix)
    }

    pub fn wait_established(&self, peer: IpAddr) -> PeerView {
        let mut last = None;
        let up = wait_for(WAIT, || {
            let p = self.peers().into_iter().find(|p| p.address == peer);
            last = p.clone();
            p.filter(|p| p.state == "Established")
        });
        up.unwrap_or_else(|| {
            panic!(
                "brindle-bgpd: peer {peer} not Established; last {last:?}\n{}",
                self.log()
            )
        })
    }

    /// Waits until `prefix` is in the Loc-RIB and `check` accepts it.
    pub fn wait_route(&self, prefix: &str, check: impl Fn(&RouteView) -> bool) -> RouteView {
        let mut last = None;
        let found = wait_for(WAIT, || {
            let r = self.route(prefix);
            last = r.clone();
            r.filter(&check)
        });
        found.unwrap_or_else(|| {
            panic!(
                "brindle-bgpd: route {prefix} not as expected; last {last:?}\n{}",
                self.log()
            )
        })
    }

    pub fn wait_no_route(&self, prefix: &str) {
        let gone = wait_for(WAIT, || self.route(prefix).is_none().then_some(()));
        assert!(
            gone.is_some(),
            "brindle-bgpd: {prefix} never withdrawn\n{}",
            self.log()
        );
    }
}

impl Drop for Bgpd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- brindle-bgpd log ----\n{}", self.log());
        }
    }
}

/// A route as another daemon shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeenRoute {
    pub as_path: Vec<u32>,
    pub next_hop: Option<IpAddr>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    /// `asn:value`
    pub communities: Vec<String>,
    /// `global:local1:local2`
    pub large_communities: Vec<String>,
    pub originator_id: Option<Ipv4Addr>,
    pub cluster_list: Vec<Ipv4Addr>,
}

/// Which daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bird,
    Frr,
    Gobgp,
}

pub enum Other {
    Bird(Bird),
    Frr(Frr),
    Gobgp(Gobgp),
}

fn is_v6(prefix: &str) -> bool {
    prefix.contains(':')
}

impl Other {
    pub fn start(kind: Kind, ns: &Netns, spec: &BgpConfig) -> Other {
        match kind {
            Kind::Bird => Other::Bird(Bird::start(ns, spec).expect("bird starts")),
            Kind::Frr => Other::Frr(Frr::start(ns, spec).expect("frr starts")),
            Kind::Gobgp => Other::Gobgp(Gobgp::start(ns, spec).expect("gobgpd starts")),
        }
    }

    /// Starts the daemon again after [`Other::kill`] the way an operator
    /// restarts it with graceful restart: BIRD with `-R` (recovery: R and
    /// F bits set, so the helper keeps the stale routes until End-of-RIB;
    /// a plain start has F clear and RFC 4724 §4.2 then makes the helper
    /// flush them at once), GoBGP with `-r` (the same bits); FRR sets F
    /// from `preserve-fw-state` in its config.
    pub fn restart(kind: Kind, ns: &Netns, spec: &BgpConfig) -> Other {
        match kind {
            Kind::Bird => Other::Bird(
                Bird::start_with_config_args(ns, &bird_config(spec), &["-R"])
                    .expect("bird starts in graceful restart recovery"),
            ),
            Kind::Gobgp => Other::Gobgp(
                Gobgp::start_with_args(ns, spec, &["-r"])
                    .expect("gobgpd starts as a graceful restart"),
            ),
            Kind::Frr => Other::start(kind, ns, spec),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Other::Bird(_) => "bird",
            Other::Frr(_) => "frr",
            Other::Gobgp(_) => "gobgp",
        }
    }

    pub fn log(&self) -> String {
        match self {
            Other::Bird(b) => b.log(),
            Other::Frr(f) => f.bgpd_log(),
            Other::Gobgp(g) => g.log(),
        }
    }

    /// SIGKILL (a crash: no NOTIFICATION), then the usual teardown.
    pub fn kill(self) {
        let pids = match &self {
            Other::Bird(b) => vec![b.pid()],
            Other::Frr(f) => vec![f.pids()[0]],
            Other::Gobgp(g) => vec![g.pid()],
        };
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        drop(self);
    }

    pub fn established(&self, peer: IpAddr) -> bool {
        match self {
            Other::Bird(b) => b.protocols().ok().is_some_and(|ps| {
                ps.iter().any(|p| {
                    p.name == bird_protocol_name(peer) && p.info.starts_with("Established")
                })
            }),
            Other::Frr(f) => {
                f.neighbor_state(peer).ok().flatten().as_deref() == Some("Established")
            }
            Other::Gobgp(g) => {
                g.neighbor_state(peer).ok().flatten().as_deref() == Some("ESTABLISHED")
            }
        }
    }

    pub fn wait_established(&self, peer: IpAddr) {
        let up = wait_for(WAIT, || self.established(peer).then_some(()));
        assert!(
            up.is_some(),
            "{}: session with {peer} not Established\n{}",
            self.name(),
            self.log()
        );
    }

    /// The best route for `prefix`, if the daemon has one.
    pub fn route(&self, prefix: &str) -> Option<SeenRoute> {
        match self {
            Other::Bird(b) => {
                let text = b.birdc(&format!("show route {prefix} all")).ok()?;
                parse_bird_route(&text, prefix)
            }
            Other::Frr(f) => {
                let fam = if is_v6(prefix) { "ipv6" } else { "ipv4" };
                let v = f
                    .vtysh_json(&format!("show bgp {fam} unicast {prefix} json"))
                    .ok()?;
                parse_frr_route(&v)
            }
            Other::Gobgp(g) => {
                let fam = if is_v6(prefix) { "ipv6" } else { "ipv4" };
                let text = g.gobgp(&["-j", "global", "rib", "-a", fam, prefix]).ok()?;
                let v: Value = serde_json::from_str(&text).ok()?;
                parse_gobgp_route(&v, prefix)
            }
        }
    }

    pub fn wait_route(&self, prefix: &str, check: impl Fn(&SeenRoute) -> bool) -> SeenRoute {
        let mut last = None;
        let found = wait_for(WAIT, || {
            let r = self.route(prefix);
            last = r.clone();
            r.filter(&check)
        });
        found.unwrap_or_else(|| {
            panic!(
                "{}: {prefix} not as expected; last {last:?}\n{}",
                self.name(),
                self.log()
            )
        })
    }

    pub fn wait_no_route(&self, prefix: &str) {
        let gone = wait_for(WAIT, || self.route(prefix).is_none().then_some(()));
        assert!(gone.is_some(), "{}: {prefix} never withdrawn", self.name());
    }

    /// Stops originating `prefix`.
    pub fn withdraw(&self, spec: &BgpConfig, prefix: &str) {
        match self {
            Other::Bird(b) => {
                // Reconfigure without the route: BIRD withdraws it.
                let mut spec = spec.clone();
                spec.originate.retain(|r| r.prefix != prefix);
                let conf = b.dir().join("bird.conf");
                std::fs::write(&conf, bird_config(&spec)).expect("rewrite bird.conf");
                let out = b.birdc("configure").expect("birdc configure");
                assert!(out.contains("Reconfigur"), "birdc configure: {out}");
            }
            Other::Frr(f) => {
                let fam = if is_v6(prefix) { "ipv6" } else { "ipv4" };
                let out = Command::new("vtysh")
                    .arg("--vty_socket")
                    .arg(f.dir())
                    .args(["-c", "configure terminal"])
                    .args(["-c", &format!("router bgp {}", spec.local_as)])
                    .args(["-c", &format!("address-family {fam} unicast")])
                    .args(["-c", &format!("no network {prefix}")])
                    .output()
                    .expect("vtysh");
                assert!(out.status.success(), "vtysh: {out:?}");
            }
            Other::Gobgp(g) => g.withdraw(prefix).expect("gobgp withdraw"),
        }
    }
}

/// Parses `birdc show route PREFIX all` (the first, best, route).
pub fn parse_bird_route(text: &str, prefix: &str) -> Option<SeenRoute> {
    let mut lines = text.lines().skip_while(|l| !l.starts_with(prefix));
    lines.next()?;
    let mut r = SeenRoute::default();
    for line in lines {
        if !line.starts_with(char::is_whitespace) {
            break; // the next route
        }
        let Some((key, value)) = line.trim().split_once(": ") else {
            continue;
        };
        let value = value.trim();
        match key {
            "BGP.as_path" => {
                r.as_path = value
                    .split_whitespace()
                    .filter_map(|a| a.parse().ok())
                    .collect()
            }
            "BGP.next_hop" => {
                r.next_hop = value.split_whitespace().next().and_then(|a| a.parse().ok())
            }
            "BGP.med" => r.med = value.parse().ok(),
            "BGP.local_pref" => r.local_pref = value.parse().ok(),
            "BGP.community" => {
                r.communities = value
                    .split(") (")
                    .map(|c| {
                        c.trim_matches(|ch| ch == '(' || ch == ')')
                            .replace(',', ":")
                    })
                    .filter(|c| !c.is_empty())
                    .collect()
            }
            "BGP.large_community" => {
                r.large_communities = value
                    .split(") (")
                    .map(|c| {
                        c.trim_matches(|ch| ch == '(' || ch == ')')
                            .split(',')
                            .map(str::trim)
                            .collect::<Vec<_>>()
                            .join(":")
                    })
                    .filter(|c| !c.is_empty())
                    .collect()
            }
            "BGP.originator_id" => r.originator_id = value.parse().ok(),
            "BGP.cluster_list" => {
                r.cluster_list = value
                    .split_whitespace()
                    .filter_map(|a| a.parse().ok())
                    .collect()
            }
            _ => {}
        }
    }
    Some(r)
}

/// Parses `show bgp … PREFIX json` of FRR 8 (the best path).
pub fn parse_frr_route(v: &Value) -> Option<SeenRoute> {
    let paths = v.get("paths")?.as_array()?;
    let best = paths
        .iter()
        .find(|p| p["bestpath"]["overall"].as_bool() == Some(true))
        .or_else(|| paths.first())?;
    let mut r = SeenRoute {
        as_path: best["aspath"]["string"]
            .as_str()
            .unwrap_or("")
            .split_whitespace()
            .filter_map(|a| a.parse().ok())
            .collect(),
        next_hop: best["nexthops"][0]["ip"]
            .as_str()
            .and_then(|a| a.parse().ok()),
        med: best["metric"].as_u64().map(|m| m as u32),
        local_pref: best["locPrf"]
            .as_u64()
            .or_else(|| best["localpref"].as_u64())
            .map(|m| m as u32),
        originator_id: best["originatorId"].as_str().and_then(|a| a.parse().ok()),
        ..Default::default()
    };
    if let Some(s) = best["community"]["string"].as_str() {
        r.communities = s.split_whitespace().map(str::to_string).collect();
    }
    if let Some(s) = best["largeCommunity"]["string"].as_str() {
        r.large_communities = s.split_whitespace().map(str::to_string).collect();
    }
    if let Some(list) = best["clusterList"]["list"].as_array() {
        r.cluster_list = list
            .iter()
            .filter_map(|a| a.as_str()?.parse().ok())
            .collect();
    }
    Some(r)
}

/// Parses `gobgp -j global rib -a FAMILY PREFIX` (the best path).
pub fn parse_gobgp_route(v: &Value, prefix: &str) -> Option<SeenRoute> {
    let paths = v.get(prefix)?.as_array()?;
    let best = paths
        .iter()
        .find(|p| p["best"].as_bool() == Some(true))
        .or_else(|| paths.first())?;
    let mut r = SeenRoute::default();
    for a in best["attrs"].as_array()? {
        match a["type"].as_u64()? {
            2 => {
                for seg in a["as_paths"].as_array().into_iter().flatten() {
                    for asn in seg["asns"].as_array().into_iter().flatten() {
                        r.as_path.extend(asn.as_u64().map(|x| x as u32));
                    }
                }
            }
            3 => r.next_hop = a["nexthop"].as_str().and_then(|s| s.parse().ok()),
            14 => r.next_hop = a["nexthop"].as_str().and_then(|s| s.parse().ok()),
            4 => r.med = a["metric"].as_u64().map(|x| x as u32),
            5 => r.local_pref = a["value"].as_u64().map(|x| x as u32),
            8 => {
                r.communities = a["communities"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_u64)
                    .map(|c| format!("{}:{}", c >> 16, c & 0xffff))
                    .collect()
            }
            9 => r.originator_id = a["value"].as_str().and_then(|s| s.parse().ok()),
            10 => {
                r.cluster_list = a["value"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str()?.parse().ok())
                    .collect()
            }
            32 => {
                r.large_communities = a["value"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| format!("{}:{}:{}", c["ASN"], c["LocalData1"], c["LocalData2"]))
                    .collect()
            }
            _ => {}
        }
    }
    Some(r)
}

#[test]
fn parsers_read_the_daemons_output() {
    let bird = "BIRD 2.0.12 ready.\nTable master4:\n\
10.20.0.0/26         unicast [n10_77_0_1 05:06:01.123] * (100) [AS64512i]\n\
\tvia 10.77.0.1 on eth0\n\
\tType: BGP univ\n\
\tBGP.origin: IGP\n\
\tBGP.as_path: 64512 4200000001\n\
\tBGP.next_hop: 10.77.0.1\n\
\tBGP.med: 10\n\
\tBGP.local_pref: 100\n\
\tBGP.community: (64512,100) (65535,65281)\n\
\tBGP.large_community: (64512, 1, 2)\n";
    let r = parse_bird_route(bird, "10.20.0.0/26").unwrap();
    assert_eq!(r.as_path, vec![64512, 4_200_000_001]);
    assert_eq!(r.next_hop, Some(v4(1)));
    assert_eq!((r.med, r.local_pref), (Some(10), Some(100)));
    assert_eq!(r.communities, vec!["64512:100", "65535:65281"]);
    assert_eq!(r.large_communities, vec!["64512:1:2"]);

    let gobgp: Value = serde_json::from_str(
        r#"{"10.1.0.0/24":[{"nlri":{"prefix":"10.1.0.0/24"},"best":true,"attrs":[{"type":1,"value":2},{"type":2,"as_paths":[{"segment_type":2,"num":2,"asns":[65001,65002]}]},{"type":4,"metric":10},{"type":5,"value":200},{"type":8,"communities":[65538]},{"type":32,"value":[{"ASN":1,"LocalData1":2,"LocalData2":3}]},{"type":3,"nexthop":"10.0.0.5"}],"stale":false}]}"#,
    )
    .unwrap();
    let r = parse_gobgp_route(&gobgp, "10.1.0.0/24").unwrap();
    assert_eq!(r.as_path, vec![65001, 65002]);
    assert_eq!(r.communities, vec!["1:2"]);
    assert_eq!(r.large_communities, vec!["1:2:3"]);
    assert_eq!((r.med, r.local_pref), (Some(10), Some(200)));
}
