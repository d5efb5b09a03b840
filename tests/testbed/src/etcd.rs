//! A real single-member etcd (etcd-server 3.4) for tests.
//!
//! [`Etcd::start`] runs it in the root namespace on 127.0.0.1 with free ports
//! (for datastore tests that run in the root namespace); [`Etcd::start_in`]
//! runs it inside a namespace on a given address with the standard ports
//! 2379/2380 (for fabric tests where nodes reach it over the topology). The
//! data dir is a private temp dir. Ready means `etcdctl endpoint health`
//! passed. Dropping the handle stops etcd and removes the data dir.

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
        let mut process = match ns {
            Some(ns) => ns.spawn("etcd", &argv, &log)?,
            None => Process::spawn("etcd on 127.0.0.1", cmd::from_argv(&argv), &log)?,
        };
        let etcd_ns = ns.map(|ns| ns.name().to_string());
        let ready = poll_until(ETCD_READY_TIMEOUT, Duration::from_millis(200), || {
            process.check_running()?;
            let out = cmd::output(etcdctl_command(
                etcd_ns.as_deref(),
                &client_url,
                &["endpoint", "health"],
            ))?;
            Ok(out.status.success().then_some(()))
        });
        match ready {
            Ok(Some(())) => {}
            Ok(None) => {
                return Err(
                    process.not_ready(ETCD_READY_TIMEOUT, "etcdctl endpoint health never passed")
                )
            }
            Err(e) => return Err(e),
        }
        tracing::info!(%client_url, "etcd ready");
        Ok(Etcd {
            process,
            netns: etcd_ns,
            client_url,
            dir,
        })
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
