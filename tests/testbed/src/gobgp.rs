//! GoBGP (`gobgpd`) running inside a namespace.
//!
//! `gobgpd` reads a TOML config from a private temp dir and serves its gRPC
//! API on 127.0.0.1 *inside the namespace*, on a port unique within this
//! process (50051 + n), so several instances can share a namespace. Ready
//! means `gobgp global -j` answers. Prefixes to originate are added with
//! `gobgp global rib add` once ready. Queries use the `gobgp` CLI run in
//! the same namespace, with `-j` output parsed as JSON.

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use crate::cmd;
use crate::error::{Error, Result};
use crate::names::temp_dir;
use crate::netns::Netns;
use crate::process::{poll_until, Process};
use crate::speaker::{gobgp_config, BgpConfig, Route};

/// How long gobgpd gets to answer on its API.
pub const GOBGP_READY_TIMEOUT: Duration = Duration::from_secs(20);

static NEXT_API_PORT: AtomicU16 = AtomicU16::new(0);

/// A running gobgpd; stopped and files removed on drop.
#[derive(Debug)]
pub struct Gobgp {
    // The process must die before its directory goes.
    process: Process,
    netns: String,
    api_port: u16,
    dir: TempDir,
}

impl Gobgp {
    /// Starts gobgpd in `ns` configured from `config`, then originates
    /// `config.originate`.
    pub fn start(ns: &Netns, config: &BgpConfig) -> Result<Self> {
        Self::start_with_args(ns, config, &[])
    }

    /// [`Gobgp::start`] with `extra_args` on gobgpd's command line.
    pub fn start_with_args(ns: &Netns, config: &BgpConfig, extra_args: &[&str]) -> Result<Self> {
        let gobgp = Self::start_with_config_args(ns, &gobgp_config(config), extra_args)?;
        for route in &config.originate {
            gobgp.announce_route(route)?;
        }
        Ok(gobgp)
    }

    /// Starts gobgpd in `ns` with `toml` as its whole config file.
    pub fn start_with_config(ns: &Netns, toml: &str) -> Result<Self> {
        Self::start_with_config_args(ns, toml, &[])
    }

    /// Like [`Gobgp::start_with_config`], with `extra_args` appended to
    /// gobgpd's command line (e.g. `-r`: a graceful restart, so the OPEN
    /// carries the Restart State and Forwarding State bits).
    pub fn start_with_config_args(ns: &Netns, toml: &str, extra_args: &[&str]) -> Result<Self> {
        let _span = tracing::info_span!("gobgp", netns = %ns.name()).entered();
        let dir = temp_dir("gobgp")?;
        let conf = dir.path().join("gobgpd.toml");
        std::fs::write(&conf, toml).map_err(|e| Error::io("writing gobgpd.toml", e))?;
        let api_port = 50051 + NEXT_API_PORT.fetch_add(1, Ordering::Relaxed) % 10000;
        let mut argv = vec![
            "gobgpd".to_string(),
            "-f".into(),
            conf.display().to_string(),
            "-t".into(),
            "toml".into(),
            format!("--api-hosts=127.0.0.1:{api_port}"),
            "--pprof-disable".into(),
            "--log-plain".into(),
        ];
        argv.extend(extra_args.iter().map(|a| a.to_string()));
        let mut process = ns.spawn("gobgpd", &argv, &dir.path().join("gobgpd.log"))?;
        let gobgp_ns = ns.name().to_string();
        let ready = poll_until(GOBGP_READY_TIMEOUT, Duration::from_millis(100), || {
            process.check_running()?;
            let out = cmd::output(gobgp_command(&gobgp_ns, api_port, &["global", "-j"]))?;
            Ok((out.status.success() && out.stdout.starts_with(b"{")).then_some(()))
        })?;
        if ready.is_none() {
            return Err(process.not_ready(GOBGP_READY_TIMEOUT, "gobgp global never answered"));
        }
        Ok(Gobgp {
            process,
            netns: gobgp_ns,
            api_port,
            dir,
        })
    }

    /// Runs the `gobgp` CLI against this instance; returns stdout.
    pub fn gobgp(&self, args: &[&str]) -> Result<String> {
        cmd::checked(gobgp_command(&self.netns, self.api_port, args))
    }

    fn gobgp_json(&self, args: &[&str]) -> Result<Value> {
        let text = self.gobgp(args)?;
        serde_json::from_str(&text).map_err(|e| Error::Parse {
            what: format!("gobgp {}", args.join(" ")),
            detail: format!("{e}: {text}"),
        })
    }

    /// Originates `prefix` (v4 or v6) from the global RIB.
    pub fn announce(&self, prefix: &str) -> Result<()> {
        let family = if prefix.contains(':') { "ipv6" } else { "ipv4" };
        self.gobgp(&["global", "rib", "add", "-a", family, prefix])
            .map(drop)
    }

    /// Originates `route` with its attributes.
    pub fn announce_route(&self, route: &Route) -> Result<()> {
        let args = route.gobgp_add_args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.gobgp(&args).map(drop)
    }

    /// Withdraws a prefix added with [`Gobgp::announce`].
    pub fn withdraw(&self, prefix: &str) -> Result<()> {
        let family = if prefix.contains(':') { "ipv6" } else { "ipv4" };
        self.gobgp(&["global", "rib", "del", "-a", family, prefix])
            .map(drop)
    }

    /// Session state of neighbor `address` in upper case (`ESTABLISHED`,
    /// `ACTIVE`…), or `None` if it is not configured.
    pub fn neighbor_state(&self, address: IpAddr) -> Result<Option<String>> {
        let neighbors = self.gobgp_json(&["neighbor", "-j"])?;
        let key = address.to_string();
        let state = neighbors
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["state"]["neighbor_address"].as_str() == Some(&key))
            .map(|n| session_state_name(&n["state"]["session_state"]));
        Ok(state)
    }

    /// Waits until the session with `address` is Established.
    pub fn wait_neighbor_established(&self, address: IpAddr, timeout: Duration) -> Result<()> {
        let mut last = None;
        let up = poll_until(timeout, Duration::from_millis(200), || {
            last = self.neighbor_state(address)?;
            Ok((last.as_deref() == Some("ESTABLISHED")).then_some(()))
        })?;
        up.ok_or_else(|| {
            self.process.not_ready(
                timeout,
                format!("neighbor {address} state {last:?}, not ESTABLISHED"),
            )
        })
    }

    /// Prefixes in the global IPv4 and IPv6 RIBs.
    pub fn routes(&self) -> Result<Vec<String>> {
        let mut prefixes = Vec::new();
        for family in ["ipv4", "ipv6"] {
            let rib = self.gobgp_json(&["global", "rib", "-a", family, "-j"])?;
            if let Some(map) = rib.as_object() {
                prefixes.extend(map.keys().cloned());
            }
        }
        Ok(prefixes)
    }

    /// Number of prefixes in the global RIBs.
    pub fn rib_count(&self) -> Result<usize> {
        Ok(self.routes()?.len())
    }

    /// Waits until `prefix` is in the global RIB.
    pub fn wait_route(&self, prefix: &str, timeout: Duration) -> Result<()> {
        let found = poll_until(timeout, Duration::from_millis(200), || {
            Ok(self.routes()?.iter().any(|p| p == prefix).then_some(()))
        })?;
        found.ok_or_else(|| {
            self.process
                .not_ready(timeout, format!("route {prefix} never appeared"))
        })
    }

    /// The gRPC API port (on 127.0.0.1 inside the namespace).
    pub fn api_port(&self) -> u16 {
        self.api_port
    }

    /// Private directory (config, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// gobgpd's log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Pid of gobgpd.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

fn gobgp_command(netns: &str, port: u16, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args([
        "netns",
        "exec",
        netns,
        "gobgp",
        "-u",
        "127.0.0.1",
        "-p",
        &port.to_string(),
    ]);
    c.args(args);
    c
}

/// GoBGP prints the session state either as the API enum's number or its
/// name depending on version; normalize to the upper-case name.
fn session_state_name(value: &Value) -> String {
    const NAMES: [&str; 7] = [
        "UNKNOWN",
        "IDLE",
        "CONNECT",
        "ACTIVE",
        "OPENSENT",
        "OPENCONFIRM",
        "ESTABLISHED",
    ];
    match value {
        Value::Number(n) => n
            .as_u64()
            .and_then(|i| NAMES.get(i as usize))
            .map_or_else(|| format!("STATE{n}"), |s| s.to_string()),
        Value::String(s) => s.trim_start_matches("SESSION_STATE_").to_uppercase(),
        _ => "UNKNOWN".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_states_normalize() {
        assert_eq!(session_state_name(&Value::from(6)), "ESTABLISHED");
        assert_eq!(session_state_name(&Value::from(3)), "ACTIVE");
        assert_eq!(
            session_state_name(&Value::from("SESSION_STATE_ESTABLISHED")),
            "ESTABLISHED"
        );
        assert_eq!(session_state_name(&Value::from(42)), "STATE42");
    }
}
