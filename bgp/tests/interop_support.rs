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
use brindle_testbed::{Lan, Netns, Process};
// Not every test that includes this file uses each of them.
#[allow(unused_imports)]
pub use brindle_testbed::daemons::{Kind, Other, SeenRoute};
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
