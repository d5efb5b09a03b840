//! BIRD 2 running inside a namespace.
//!
//! `bird -f -c bird.conf -s bird.ctl -P bird.pid` runs in the foreground in a
//! private temp dir; its log (configured as `log stderr all`) is the
//! process log. Ready means `birdc show status` reports the daemon up. All
//! queries go through `birdc -s <socket>`, which needs no namespace because
//! the control socket is a file.

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::cmd;
use crate::error::{Error, Result};
use crate::names::temp_dir;
use crate::netns::Netns;
use crate::process::{poll_until, Process};
use crate::speaker::{bird_config, bird_protocol_name, BgpConfig};

/// How long BIRD gets to answer on its control socket after start.
pub const BIRD_READY_TIMEOUT: Duration = Duration::from_secs(20);

/// One row of `birdc show protocols`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BirdProtocol {
    /// Protocol name, e.g. `n10_0_1_2`.
    pub name: String,
    /// Protocol type, e.g. `BGP`, `Static`.
    pub proto: String,
    /// `up`, `start`, `down`…
    pub state: String,
    /// Free text after the timestamp; `Established` for a BGP session up.
    pub info: String,
}

/// A running BIRD; stopped and its files removed on drop.
#[derive(Debug)]
pub struct Bird {
    // The process must die before its directory is removed.
    process: Process,
    socket: std::path::PathBuf,
    dir: TempDir,
}

impl Bird {
    /// Starts BIRD in `ns` with a config generated from `config`.
    pub fn start(ns: &Netns, config: &BgpConfig) -> Result<Self> {
        Self::start_with_config(ns, &bird_config(config))
    }

    /// Starts BIRD in `ns` with `config_text` as its whole `bird.conf`.
    pub fn start_with_config(ns: &Netns, config_text: &str) -> Result<Self> {
        Self::start_with_config_args(ns, config_text, &[])
    }

    /// Like [`Bird::start_with_config`], with `extra_args` appended to
    /// BIRD's command line (e.g. `-R`: start in graceful restart recovery,
    /// as an operator restarting BIRD with graceful restart does).
    pub fn start_with_config_args(
        ns: &Netns,
        config_text: &str,
        extra_args: &[&str],
    ) -> Result<Self> {
        let _span = tracing::info_span!("bird", netns = %ns.name()).entered();
        let dir = temp_dir("bird")?;
        let conf = dir.path().join("bird.conf");
        let socket = dir.path().join("bird.ctl");
        let pid = dir.path().join("bird.pid");
        std::fs::write(&conf, config_text).map_err(|e| Error::io("writing bird.conf", e))?;
        let mut argv = vec![
            "bird".to_string(),
            "-f".into(),
            "-c".into(),
            conf.display().to_string(),
            "-s".into(),
            socket.display().to_string(),
            "-P".into(),
            pid.display().to_string(),
        ];
        argv.extend(extra_args.iter().map(|a| a.to_string()));
        let mut process = ns.spawn("bird", &argv, &dir.path().join("bird.log"))?;
        let ready = poll_until(BIRD_READY_TIMEOUT, Duration::from_millis(50), || {
            process.check_running()?;
            let out = cmd::output(birdc_command(&socket, "show status"))?;
            let text = String::from_utf8_lossy(&out.stdout);
            Ok((out.status.success() && text.contains("Daemon is up and running")).then_some(()))
        })?;
        if ready.is_none() {
            return Err(
                process.not_ready(BIRD_READY_TIMEOUT, "birdc show status never reported up")
            );
        }
        Ok(Bird {
            process,
            socket,
            dir,
        })
    }

    /// Runs `birdc -s <socket> <command>` and returns its output.
    pub fn birdc(&self, command: &str) -> Result<String> {
        cmd::checked(birdc_command(&self.socket, command))
    }

    /// Parsed `show protocols`.
    pub fn protocols(&self) -> Result<Vec<BirdProtocol>> {
        Ok(parse_protocols(&self.birdc("show protocols")?))
    }

    /// Waits until BGP protocol `name` is Established; see
    /// [`crate::bird_protocol_name`] for the names of generated neighbors.
    pub fn wait_established(&self, name: &str, timeout: Duration) -> Result<()> {
        let mut last = String::new();
        let up = poll_until(timeout, Duration::from_millis(200), || {
            let protocols = self.protocols()?;
            let row = protocols.iter().find(|p| p.name == name);
            last = format!("{row:?}");
            Ok(row
                .is_some_and(|p| p.info.starts_with("Established"))
                .then_some(()))
        })?;
        up.ok_or_else(|| {
            self.process.not_ready(
                timeout,
                format!("BGP protocol {name} not Established; last row: {last}"),
            )
        })
    }

    /// Waits until the session with neighbor `address` is Established.
    pub fn wait_neighbor_established(&self, address: IpAddr, timeout: Duration) -> Result<()> {
        self.wait_established(&bird_protocol_name(address), timeout)
    }

    /// Prefixes of all best routes in all tables (`show route table all`).
    pub fn routes(&self) -> Result<Vec<String>> {
        Ok(parse_route_prefixes(&self.birdc("show route table all")?))
    }

    /// Prefixes learned from protocol `name`.
    pub fn routes_from(&self, name: &str) -> Result<Vec<String>> {
        Ok(parse_route_prefixes(
            &self.birdc(&format!("show route table all protocol {name}"))?,
        ))
    }

    /// Waits until `prefix` is in BIRD's routing tables.
    pub fn wait_route(&self, prefix: &str, timeout: Duration) -> Result<()> {
        let found = poll_until(timeout, Duration::from_millis(200), || {
            Ok(self.routes()?.iter().any(|p| p == prefix).then_some(()))
        })?;
        found.ok_or_else(|| {
            self.process
                .not_ready(timeout, format!("route {prefix} never appeared"))
        })
    }

    /// Number of routes in all tables.
    pub fn route_count(&self) -> Result<usize> {
        Ok(self.routes()?.len())
    }

    /// Private directory (config, socket, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// BIRD's log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Pid of the bird process.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

fn birdc_command(socket: &Path, command: &str) -> Command {
    let mut c = Command::new("birdc");
    c.arg("-s").arg(socket);
    c.args(command.split_whitespace());
    c
}

/// Parses `show protocols` output (header line `Name Proto Table State
/// Since Info`). The Since column may be one or two words (time, or date and
/// time); Info is whatever follows it.
pub(crate) fn parse_protocols(text: &str) -> Vec<BirdProtocol> {
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in text.lines() {
        if line.starts_with("Name") {
            in_table = true;
            continue;
        }
        if !in_table || line.trim().is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() < 5 {
            continue;
        }
        let mut info_start = 5;
        // A date in the Since column pushes the time into the next word.
        if words.len() > 5 && words[5].contains(':') && words[4].contains('-') {
            info_start = 6;
        }
        rows.push(BirdProtocol {
            name: words[0].to_string(),
            proto: words[1].to_string(),
            state: words[3].to_string(),
            info: words[info_start.min(words.len())..].join(" "),
        });
    }
    rows
}

/// Prefixes from `show route`: lines that start (unindented) with a prefix.
pub(crate) fn parse_route_prefixes(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with(char::is_whitespace))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.contains('/') && w.chars().next().is_some_and(|c| c.is_ascii_hexdigit()))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_table_is_parsed() {
        let text = "BIRD 2.0.12 ready.\n\
Name       Proto      Table      State  Since         Info\n\
device1    Device     ---        up     04:30:00.123  \n\
n10_0_1_2  BGP        ---        up     04:30:01.000  Established   \n\
n10_0_1_3  BGP        ---        start  2026-11-22 04:30:01  Active        Socket: Connection refused\n";
        let rows = parse_protocols(text);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1].name, "n10_0_1_2");
        assert_eq!(rows[1].info, "Established");
        assert_eq!(rows[2].state, "start");
        assert_eq!(rows[2].info, "Active Socket: Connection refused");
    }

    #[test]
    fn route_prefixes_are_parsed() {
        let text = "BIRD 2.0.12 ready.\nTable master4:\n\
10.10.2.0/24         unicast [n10_0_1_2 04:31:02.123] * (100) [AS65002i]\n\
\tvia 10.0.1.2 on eth0\n\
10.10.1.0/24         blackhole [static_ipv4 04:31:00.000] * (200)\n\n\
Table master6:\nfd10:2::/64          unicast [n 04:31] * (100)\n";
        assert_eq!(
            parse_route_prefixes(text),
            vec!["10.10.2.0/24", "10.10.1.0/24", "fd10:2::/64"]
        );
    }
}
