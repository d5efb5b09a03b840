//! FRR (zebra + bgpd, and bfdd when a neighbor uses BFD) running inside a
//! namespace.
//!
//! Several instances run side by side because each gets a private temp dir
//! holding its config, pid files, vty sockets (`--vty_socket`) and zserv
//! socket (`-z`); TCP vty ports are disabled (`-P 0`). Both daemons run as
//! root with group `frrvty` (FRR refuses to run as a user outside that group
//! otherwise). zebra starts first; bgpd starts once the zserv socket exists.
//! Ready means `vtysh --vty_socket <dir> -c 'show bgp summary json'` answers.
//! Queries use `vtysh` with the same socket dir and parse its JSON output.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use crate::cmd;
use crate::error::{Error, Result};
use crate::names::temp_dir;
use crate::netns::Netns;
use crate::process::{poll_until, Process};
use crate::speaker::{frr_config, BgpConfig, FRR_BFDD_CONFIG};

/// How long zebra and bgpd get to come up.
pub const FRR_READY_TIMEOUT: Duration = Duration::from_secs(30);

const FRR_DAEMON_DIR: &str = "/usr/lib/frr";

/// A running FRR (zebra + bgpd); both stopped and files removed on drop.
#[derive(Debug)]
pub struct Frr {
    // Processes must die before their directory goes; bgpd before zebra.
    bgpd: Process,
    /// Started when the bgpd config asks for BFD (`neighbor … bfd`); held
    /// only to be stopped on drop.
    _bfdd: Option<Process>,
    zebra: Process,
    dir: TempDir,
}

impl Frr {
    /// Starts zebra and bgpd in `ns` with a bgpd config generated from
    /// `config`.
    pub fn start(ns: &Netns, config: &BgpConfig) -> Result<Self> {
        Self::launch(ns, &frr_config(config), config.listen_port)
    }

    /// Starts zebra and bgpd in `ns`, with `bgpd_config` as bgpd's whole
    /// configuration file; bgpd listens on port 179.
    pub fn start_with_config(ns: &Netns, bgpd_config: &str) -> Result<Self> {
        Self::launch(ns, bgpd_config, 179)
    }

    fn launch(ns: &Netns, bgpd_config: &str, listen_port: u16) -> Result<Self> {
        let _span = tracing::info_span!("frr", netns = %ns.name()).entered();
        let dir = temp_dir("frr")?;
        let path = |name: &str| dir.path().join(name);
        let write = |name: &str, text: &str| {
            std::fs::write(path(name), text).map_err(|e| Error::io(format!("writing {name}"), e))
        };
        write("zebra.conf", "hostname testbed\n")?;
        write("bgpd.conf", bgpd_config)?;
        check_bgpd_config(&path("bgpd.conf"))?;
        let zserv = path("zserv.api");

        let mut zebra = ns.spawn(
            "zebra",
            &daemon_argv("zebra", dir.path(), &zserv),
            &path("zebra.log"),
        )?;
        let zserv_up = poll_until(FRR_READY_TIMEOUT, Duration::from_millis(50), || {
            zebra.check_running()?;
            Ok(zserv.exists().then_some(()))
        })?;
        if zserv_up.is_none() {
            return Err(zebra.not_ready(FRR_READY_TIMEOUT, "zserv socket never appeared"));
        }

        // bgpd registers its BFD peers with bfdd through zebra.
        let bfdd = if bgpd_config.contains(" bfd\n") {
            write("bfdd.conf", FRR_BFDD_CONFIG)?;
            Some(ns.spawn(
                "bfdd",
                &daemon_argv("bfdd", dir.path(), &zserv),
                &path("bfdd.log"),
            )?)
        } else {
            None
        };
        let mut bgpd_argv = daemon_argv("bgpd", dir.path(), &zserv);
        // The listen port is a command-line option, not configuration.
        bgpd_argv.extend(["-p".to_string(), listen_port.to_string()]);
        let mut bgpd = ns.spawn("bgpd", &bgpd_argv, &path("bgpd.log"))?;
        let socket_dir = dir.path().to_path_buf();
        let ready = poll_until(FRR_READY_TIMEOUT, Duration::from_millis(100), || {
            bgpd.check_running()?;
            zebra.check_running()?;
            let out = cmd::output(vtysh_command(&socket_dir, "show bgp summary json"))?;
            Ok((out.status.success() && out.stdout.starts_with(b"{")).then_some(()))
        })?;
        if ready.is_none() {
            return Err(bgpd.not_ready(FRR_READY_TIMEOUT, "vtysh show bgp summary never answered"));
        }
        Ok(Frr {
            bgpd,
            _bfdd: bfdd,
            zebra,
            dir,
        })
    }

    /// Runs `vtysh -c <command>` against this instance; returns stdout.
    pub fn vtysh(&self, command: &str) -> Result<String> {
        cmd::checked(vtysh_command(self.dir.path(), command))
    }

    /// Runs a `… json` command and parses its output.
    pub fn vtysh_json(&self, command: &str) -> Result<Value> {
        let text = self.vtysh(command)?;
        serde_json::from_str(&text).map_err(|e| Error::Parse {
            what: format!("vtysh -c '{command}'"),
            detail: format!("{e}: {text}"),
        })
    }

    /// BGP state of neighbor `address` (e.g. `Established`, `Active`), from
    /// `show bgp summary json`; `None` if the neighbor is not listed.
    pub fn neighbor_state(&self, address: IpAddr) -> Result<Option<String>> {
        let summary = self.vtysh_json("show bgp summary json")?;
        let key = address.to_string();
        Ok(summary
            .as_object()
            .into_iter()
            .flat_map(|families| families.values())
            .filter_map(|family| family.get("peers")?.get(&key)?.get("state")?.as_str())
            .map(str::to_string)
            .next())
    }

    /// Waits until the session with `address` is Established.
    pub fn wait_neighbor_established(&self, address: IpAddr, timeout: Duration) -> Result<()> {
        let mut last = None;
        let up = poll_until(timeout, Duration::from_millis(200), || {
            last = self.neighbor_state(address)?;
            Ok((last.as_deref() == Some("Established")).then_some(()))
        })?;
        up.ok_or_else(|| {
            self.bgpd.not_ready(
                timeout,
                format!("neighbor {address} state {last:?}, not Established"),
            )
        })
    }

    /// Prefixes in bgpd's IPv4 and IPv6 unicast tables.
    pub fn routes(&self) -> Result<Vec<String>> {
        let mut prefixes = Vec::new();
        for family in ["ipv4", "ipv6"] {
            let table = self.vtysh_json(&format!("show bgp {family} unicast json"))?;
            if let Some(routes) = table.get("routes").and_then(Value::as_object) {
                prefixes.extend(routes.keys().cloned());
            }
        }
        Ok(prefixes)
    }

    /// Waits until `prefix` is in bgpd's tables.
    pub fn wait_route(&self, prefix: &str, timeout: Duration) -> Result<()> {
        let found = poll_until(timeout, Duration::from_millis(200), || {
            Ok(self.routes()?.iter().any(|p| p == prefix).then_some(()))
        })?;
        found.ok_or_else(|| {
            self.bgpd
                .not_ready(timeout, format!("route {prefix} never appeared"))
        })
    }

    /// Private directory (configs, sockets, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// bgpd's log so far.
    pub fn bgpd_log(&self) -> String {
        self.bgpd.log()
    }

    /// zebra's log so far.
    pub fn zebra_log(&self) -> String {
        self.zebra.log()
    }

    /// Pids of bgpd and zebra.
    pub fn pids(&self) -> [u32; 2] {
        [self.bgpd.pid(), self.zebra.pid()]
    }
}

/// Runs `bgpd -C` (dry run) on `conf`. bgpd starts even with a broken
/// config and only logs the bad lines, which would surface much later as a
/// session that never comes up; failing here names the line at once. `-C`
/// exits 0 regardless, so errors are recognised by FRR's `[EC <code>]` tag.
fn check_bgpd_config(conf: &Path) -> Result<()> {
    let mut check = Command::new(format!("{FRR_DAEMON_DIR}/bgpd"));
    check
        .arg("-C")
        .arg("-f")
        .arg(conf)
        .args(["-u", "root", "-g", "frrvty", "--log", "stdout"]);
    let out = cmd::output(check)?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() || text.contains("[EC ") {
        return Err(Error::Parse {
            what: format!("bgpd config {}", conf.display()),
            detail: text,
        });
    }
    Ok(())
}

fn daemon_argv(daemon: &str, dir: &Path, zserv: &Path) -> Vec<String> {
    let file = |suffix: &str| dir.join(format!("{daemon}.{suffix}")).display().to_string();
    vec![
        format!("{FRR_DAEMON_DIR}/{daemon}"),
        "-f".into(),
        file("conf"),
        "-i".into(),
        file("pid"),
        "-z".into(),
        zserv.display().to_string(),
        "--vty_socket".into(),
        dir.display().to_string(),
        "-P".into(),
        "0".into(),
        "-u".into(),
        "root".into(),
        "-g".into(),
        "frrvty".into(),
        // FRR sizes tables by the fd limit; CI shells can have it at 1M.
        "--limit-fds".into(),
        "1024".into(),
        "--log".into(),
        "stdout".into(),
    ]
}

fn vtysh_command(socket_dir: &Path, command: &str) -> Command {
    let mut c = Command::new("vtysh");
    c.arg("--vty_socket")
        .arg(PathBuf::from(socket_dir))
        .arg("-c")
        .arg(command);
    c
}
