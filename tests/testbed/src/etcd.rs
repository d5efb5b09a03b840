//! A real single-member etcd (etcd-server 3.4) for tests.
//!
//! [`Etcd::start`] runs it in the root namespace on 127.0.0.1 with free ports
//! (for datastore tests that run in the root namespace); [`Etcd::start_in`]
//! runs it inside a namespace on a given address with the standard ports
//! 2379/2380 (for fabric tests where nodes reach it over the topology). The
//! data dir is a private temp dir. Ready means `etcdctl endpoint health`
//! passed. [`Etcd::stop`] / [`Etcd::start_again`] (or [`Etcd::restart`])
//! take the member down and back on the same data dir, so clients see an
//! etcd restart with every key and revision kept. Dropping the handle stops
//! etcd and removes the data dir.

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::cmd;
use crate::error::{Error, Result};
use crate::names::temp_dir;
use crate::netns::Netns;
use crate::process::{poll_until, Process};

/// How long etcd gets to pass its health check.
pub const ETCD_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running etcd member; stopped and wiped on drop.
#[derive(Debug)]
pub struct Etcd {
    // Field order matters: the process must die before its data dir goes.
    process: Process,
    netns: Option<String>,
    client_url: String,
    /// The command line, for [`Etcd::restart`].
    argv: Vec<String>,
    dir: TempDir,
}

impl Etcd {
    /// Starts etcd on 127.0.0.1 in the root namespace with free ports.
    pub fn start() -> Result<Self> {
        let _span = tracing::info_span!("etcd", netns = "root").entered();
        let mut last_error = None;
        // Free ports are found by binding port 0 and releasing it; another
        // process may grab one in between, so retry with fresh ports.
        for _ in 0..3 {
            let client = free_port()?;
            let peer = free_port()?;
            match Self::launch(None, IpAddr::V4(Ipv4Addr::LOCALHOST), client, peer) {
                Ok(etcd) => return Ok(etcd),
                Err(e) if e.to_string().contains("address already in use") => last_error = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_error.expect("loop ran at least once"))
    }

    /// Starts etcd inside `ns`, listening on `address` ports 2379 (clients)
    /// and 2380 (peers). `address` must already be configured in `ns`.
    pub fn start_in(ns: &Netns, address: IpAddr) -> Result<Self> {
        let _span = tracing::info_span!("etcd", netns = %ns.name()).entered();
        Self::launch(Some(ns), address, 2379, 2380)
    }

    fn launch(ns: Option<&Netns>, address: IpAddr, client: u16, peer: u16) -> Result<Self> {
        let dir = temp_dir("etcd")?;
        let host = match address {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        let client_url = format!("http://{host}:{client}");
        let peer_url = format!("http://{host}:{peer}");
        let data_dir = dir.path().join("data");
        let log = dir.path().join("etcd.log");
        let argv = [
            "etcd".to_string(),
            "--name=testbed".into(),
            format!("--data-dir={}", data_dir.display()),
            format!("--listen-client-urls={client_url}"),
            format!("--advertise-client-urls={client_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=testbed={peer_url}"),
            "--initial-cluster-state=new".into(),
            "--logger=zap".into(),
            "--log-outputs=stderr".into(),
        ];
        let etcd_ns = ns.map(|ns| ns.name().to_string());
        let process = spawn_ready(etcd_ns.as_deref(), &argv, &log, &client_url)?;
        tracing::info!(%client_url, "etcd ready");
        Ok(Etcd {
            process,
            netns: etcd_ns,
            client_url,
            argv: argv.to_vec(),
            dir,
        })
    }

    /// Stops etcd (SIGTERM, then SIGKILL): clients see their connections
    /// close. The data dir stays; [`Etcd::start_again`] brings it back.
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Starts etcd again on its data dir after [`Etcd::stop`] (a no-op if it
    /// is running): same member, same URLs, every key and revision kept.
    pub fn start_again(&mut self) -> Result<()> {
        if self.process.is_running() {
            return Ok(());
        }
        let log = self.process.log_path().to_path_buf();
        self.process = spawn_ready(self.netns.as_deref(), &self.argv, &log, &self.client_url)?;
        tracing::info!(client_url = %self.client_url, "etcd ready again");
        Ok(())
    }

    /// [`Etcd::stop`] then [`Etcd::start_again`].
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.start_again()
    }

    /// Client URL, e.g. `http://127.0.0.1:41234`.
    pub fn client_url(&self) -> &str {
        &self.client_url
    }

    /// Client endpoints in the form `etcd-client` wants (`host:port` URLs).
    pub fn endpoints(&self) -> Vec<String> {
        vec![self.client_url.clone()]
    }

    /// Runs `etcdctl --endpoints <url> <args>` (inside the namespace if etcd
    /// runs in one); returns stdout, errors on failure.
    pub fn etcdctl(&self, args: &[&str]) -> Result<String> {
        cmd::checked(etcdctl_command(
            self.netns.as_deref(),
            &self.client_url,
            args,
        ))
    }

    /// The private directory holding data and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// etcd's log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Pid of the etcd process.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

/// Spawns etcd (inside `netns` if given) and waits until it is healthy.
fn spawn_ready(
    netns: Option<&str>,
    argv: &[String],
    log: &Path,
    client_url: &str,
) -> Result<Process> {
    let mut process = match netns {
        Some(ns) => {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", ns]).args(argv);
            Process::spawn(format!("etcd in {ns}"), command, log)?
        }
        None => Process::spawn("etcd on 127.0.0.1", cmd::from_argv(argv), log)?,
    };
    let ready = poll_until(ETCD_READY_TIMEOUT, Duration::from_millis(200), || {
        process.check_running()?;
        let out = cmd::output(etcdctl_command(netns, client_url, &["endpoint", "health"]))?;
        Ok(out.status.success().then_some(()))
    });
    match ready {
        Ok(Some(())) => Ok(process),
        Ok(None) => {
            Err(process.not_ready(ETCD_READY_TIMEOUT, "etcdctl endpoint health never passed"))
        }
        Err(e) => Err(e),
    }
}

fn etcdctl_command(netns: Option<&str>, url: &str, args: &[&str]) -> Command {
    let mut command = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "etcdctl"]);
            c
        }
        None => Command::new("etcdctl"),
    };
    command
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={url}"))
        .arg("--dial-timeout=2s")
        .arg("--command-timeout=5s")
        .args(args);
    command
}

fn free_port() -> Result<u16> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error::io("finding a free port on 127.0.0.1", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_keeps_keys_and_revisions() {
        if !crate::require::root() {
            return;
        }
        let mut etcd = Etcd::start().unwrap();
        etcd.etcdctl(&["put", "/brindle/restart", "kept"]).unwrap();
        let before = etcd
            .etcdctl(&["get", "-w", "json", "/brindle/restart"])
            .unwrap();
        let pid = etcd.pid();
        etcd.stop();
        assert!(etcd.etcdctl(&["get", "/brindle/restart"]).is_err());
        etcd.start_again().unwrap();
        assert_ne!(etcd.pid(), pid);
        let value = etcd
            .etcdctl(&["get", "--print-value-only", "/brindle/restart"])
            .unwrap();
        assert_eq!(value.trim(), "kept");
        let after = etcd
            .etcdctl(&["get", "-w", "json", "/brindle/restart"])
            .unwrap();
        let mod_revision = |json: &str| -> serde_json::Value {
            serde_json::from_str::<serde_json::Value>(json).unwrap()["kvs"][0]["mod_revision"]
                .clone()
        };
        assert_eq!(mod_revision(&before), mod_revision(&after));
        etcd.restart().unwrap();
    }
}
