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
//!
//! [`EtcdCluster::start`] runs a cluster of several members on 127.0.0.1
//! (free ports, one temp dir each), started together since a member is
//! healthy only once a quorum runs. [`EtcdCluster::leader`] says which member
//! leads, [`EtcdCluster::kill`] crashes one (SIGKILL) and
//! [`EtcdCluster::start_again`] brings it back on its data dir to rejoin.
//! Dropping the handle kills every member and removes their dirs.

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
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
        with_free_ports(2, |ports| {
            Self::launch(None, IpAddr::V4(Ipv4Addr::LOCALHOST), ports[0], ports[1])
        })
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
        let argv = member_argv(
            "testbed",
            &data_dir,
            &client_url,
            &peer_url,
            &format!("testbed={peer_url}"),
            "new",
        );
        let etcd_ns = ns.map(|ns| ns.name().to_string());
        let process = spawn_ready(etcd_ns.as_deref(), "etcd", &argv, &log, &client_url)?;
        tracing::info!(%client_url, "etcd ready");
        Ok(Etcd {
            process,
            netns: etcd_ns,
            client_url,
            argv,
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
        self.process = spawn_ready(
            self.netns.as_deref(),
            "etcd",
            &self.argv,
            &log,
            &self.client_url,
        )?;
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

/// A running etcd cluster on 127.0.0.1, or on one address inside a
/// namespace (members `member0`, `member1`, …); every member killed and
/// wiped on drop.
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<ClusterMember>,
    /// The namespace the members run in (`None`: the root namespace).
    netns: Option<String>,
}

#[derive(Debug)]
struct ClusterMember {
    // Field order matters: the process must die before its data dir goes.
    process: Process,
    client_url: String,
    /// The command line that brings it back on its data dir
    /// (`--initial-cluster-state=existing`), for [`EtcdCluster::start_again`].
    rejoin_argv: Vec<String>,
    /// Killed by [`EtcdCluster::kill`] and not started again: not asked by
    /// [`EtcdCluster::leader`] (etcdctl would wait its whole timeout on it).
    killed: bool,
    dir: TempDir,
}

impl EtcdCluster {
    /// Starts a cluster of `members` members (3 for a quorum that survives
    /// one crash) with free ports, each with its own data dir and log.
    /// Returns once every member passes `etcdctl endpoint health`.
    ///
    /// # Panics
    /// If `members` is 0: a bug in the calling test.
    pub fn start(members: usize) -> Result<Self> {
        assert!(members > 0, "an etcd cluster needs a member");
        let _span = tracing::info_span!("etcd_cluster", members).entered();
        with_free_ports(2 * members, |ports| Self::launch(None, "127.0.0.1", ports))
    }

    /// Starts a cluster of `members` members inside `ns`, all on `address`
    /// (already configured there, reachable from the hosts of a topology):
    /// member `i` serves clients on port `2379 + 2i` and peers on `2380 + 2i`.
    pub fn start_in(ns: &Netns, address: Ipv4Addr, members: usize) -> Result<Self> {
        assert!(members > 0, "an etcd cluster needs a member");
        let _span = tracing::info_span!("etcd_cluster", netns = %ns.name(), members).entered();
        let ports: Vec<u16> = (0..2 * members as u16).map(|i| 2379 + i).collect();
        Self::launch(Some(ns.name()), &address.to_string(), &ports)
    }

    /// Launches one member per pair of `ports` (client, peer) on `host`.
    fn launch(netns: Option<&str>, host: &str, ports: &[u16]) -> Result<Self> {
        let urls: Vec<(String, String)> = ports
            .chunks(2)
            .map(|p| {
                (
                    format!("http://{host}:{}", p[0]),
                    format!("http://{host}:{}", p[1]),
                )
            })
            .collect();
        let initial_cluster = urls
            .iter()
            .enumerate()
            .map(|(i, (_, peer_url))| format!("{}={peer_url}", member_name(i)))
            .collect::<Vec<_>>()
            .join(",");
        // Spawned before any is waited for: a member is healthy only once a
        // quorum of its peers runs.
        let mut members = Vec::with_capacity(urls.len());
        for (i, (client_url, peer_url)) in urls.into_iter().enumerate() {
            let name = member_name(i);
            let dir = temp_dir(&format!("etcd{i}"))?;
            let data_dir = dir.path().join("data");
            let argv = |state| {
                member_argv(
                    &name,
                    &data_dir,
                    &client_url,
                    &peer_url,
                    &initial_cluster,
                    state,
                )
            };
            let log = dir.path().join("etcd.log");
            let process = spawn(netns, &format!("etcd {name}"), &argv("new"), &log)?;
            members.push(ClusterMember {
                process,
                rejoin_argv: argv("existing"),
                client_url,
                killed: false,
                dir,
            });
        }
        let mut waiting: Vec<(&mut Process, &str)> = members
            .iter_mut()
            .map(|m| (&mut m.process, m.client_url.as_str()))
            .collect();
        wait_ready(netns, &mut waiting)?;
        let cluster = EtcdCluster {
            members,
            netns: netns.map(str::to_owned),
        };
        tracing::info!(endpoints = %cluster.endpoints().join(","), "etcd cluster ready");
        Ok(cluster)
    }

    /// Number of members (running or not).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Always false: a cluster has at least one member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Every member's client URL (`http://127.0.0.1:port`), by index,
    /// killed members included.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// Index of the current leader: the member whose `etcdctl endpoint
    /// status` names itself as leader. Asks every member not killed by
    /// [`EtcdCluster::kill`]. Errors while there is none (an election is
    /// under way, no quorum); callers poll.
    pub fn leader(&self) -> Result<usize> {
        let asked: Vec<&str> = self
            .members
            .iter()
            .filter(|m| !m.killed)
            .map(|m| m.client_url.as_str())
            .collect();
        let out = cmd::output(etcdctl_command(
            self.netns.as_deref(),
            &asked.join(","),
            &["endpoint", "status", "-w", "json"],
        ))?;
        // etcdctl prints the members that answered and fails if one did not:
        // the JSON decides.
        let stdout = String::from_utf8_lossy(&out.stdout);
        leader_in_status(&stdout, &self.endpoints()).map_err(|detail| Error::Parse {
            what: format!("etcdctl --endpoints={} endpoint status", asked.join(",")),
            detail: format!(
                "{detail}\nstdout: {stdout}\nstderr: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        })
    }

    /// SIGKILLs member `index` (a crash: no leadership hand-over, no clean
    /// shutdown) and reaps it. Its data dir and log stay.
    pub fn kill(&mut self, index: usize) {
        let _span = tracing::info_span!("etcd_cluster", member = index).entered();
        let member = &mut self.members[index];
        member.killed = true;
        if !member.process.is_running() {
            return;
        }
        let pgid = Pid::from_raw(member.process.pid() as i32);
        if let Err(e) = killpg(pgid, Signal::SIGKILL) {
            tracing::warn!(error = %e, "cannot SIGKILL etcd");
        }
        let reaped = poll_until(Duration::from_secs(5), Duration::from_millis(10), || {
            Ok((!member.process.is_running()).then_some(()))
        });
        match reaped {
            Ok(Some(())) => tracing::info!(client_url = %member.client_url, "etcd member killed"),
            _ => tracing::warn!("etcd member still running 5s after SIGKILL"),
        }
    }

    /// Starts member `index` again on its data dir after [`EtcdCluster::kill`]
    /// (a no-op if it runs), joining the running cluster; returns once it
    /// passes `etcdctl endpoint health` (it has a leader and caught up).
    pub fn start_again(&mut self, index: usize) -> Result<()> {
        let _span = tracing::info_span!("etcd_cluster", member = index).entered();
        let netns = self.netns.clone();
        let member = &mut self.members[index];
        if member.process.is_running() {
            return Ok(());
        }
        let log = member.process.log_path().to_path_buf();
        member.process = spawn_ready(
            netns.as_deref(),
            &format!("etcd {}", member_name(index)),
            &member.rejoin_argv,
            &log,
            &member.client_url,
        )?;
        member.killed = false;
        tracing::info!(client_url = %member.client_url, "etcd member ready again");
        Ok(())
    }

    /// Runs `etcdctl --endpoints <every member> <args>`; returns stdout,
    /// errors on failure (e.g. `endpoint health` with a member down).
    pub fn etcdctl(&self, args: &[&str]) -> Result<String> {
        cmd::checked(etcdctl_command(
            self.netns.as_deref(),
            &self.endpoints().join(","),
            args,
        ))
    }

    /// Member `index`'s log so far (every run of it).
    pub fn log(&self, index: usize) -> String {
        self.members[index].process.log()
    }

    /// Member `index`'s private directory (data and log).
    pub fn dir(&self, index: usize) -> &Path {
        self.members[index].dir.path()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        // Why SIGKILL and not Process's SIGTERM: a stopping leader hands
        // leadership to a peer that is stopping too, which takes seconds per
        // member, and the data is thrown away anyway.
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

fn member_name(index: usize) -> String {
    format!("member{index}")
}

/// The index in `endpoints` of the leader in `etcdctl endpoint status -w
/// json` output: the member whose `header.member_id` is its own `leader`.
fn leader_in_status(json: &str, endpoints: &[String]) -> std::result::Result<usize, String> {
    let statuses: Vec<serde_json::Value> =
        serde_json::from_str(json.trim()).map_err(|e| format!("not a JSON list: {e}"))?;
    for status in &statuses {
        let s = &status["Status"];
        let (Some(id), Some(leader)) = (s["header"]["member_id"].as_u64(), s["leader"].as_u64())
        else {
            return Err(format!("no member_id or leader in {status}"));
        };
        if id != 0 && id == leader {
            let endpoint = status["Endpoint"].as_str().unwrap_or_default();
            return endpoints
                .iter()
                .position(|e| e == endpoint)
                .ok_or_else(|| format!("the leader {endpoint:?} is not a member"));
        }
    }
    Err(format!(
        "none of the {} members that answered is the leader (election under way?)",
        statuses.len()
    ))
}

/// The command line of one etcd member: `name`, its data in `data_dir`,
/// clients on `client_url`, peers on `peer_url`, in the cluster
/// `initial_cluster` (`name=peer_url,…`); `state` is `new` to bootstrap,
/// `existing` to join a running cluster (ignored once `data_dir` holds data).
fn member_argv(
    name: &str,
    data_dir: &Path,
    client_url: &str,
    peer_url: &str,
    initial_cluster: &str,
    state: &str,
) -> Vec<String> {
    vec![
        "etcd".to_string(),
        format!("--name={name}"),
        format!("--data-dir={}", data_dir.display()),
        format!("--listen-client-urls={client_url}"),
        format!("--advertise-client-urls={client_url}"),
        format!("--listen-peer-urls={peer_url}"),
        format!("--initial-advertise-peer-urls={peer_url}"),
        format!("--initial-cluster={initial_cluster}"),
        format!("--initial-cluster-state={state}"),
        "--logger=zap".into(),
        "--log-outputs=stderr".into(),
    ]
}

/// Spawns etcd (inside `netns` if given) and waits until it is healthy.
/// `label` names it in errors ("etcd", "etcd member1").
fn spawn_ready(
    netns: Option<&str>,
    label: &str,
    argv: &[String],
    log: &Path,
    client_url: &str,
) -> Result<Process> {
    let mut process = spawn(netns, label, argv, log)?;
    wait_ready(netns, &mut [(&mut process, client_url)])?;
    Ok(process)
}

/// Spawns etcd (inside `netns` if given) without waiting for it.
fn spawn(netns: Option<&str>, label: &str, argv: &[String], log: &Path) -> Result<Process> {
    match netns {
        Some(ns) => {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", ns]).args(argv);
            Process::spawn(format!("{label} in {ns}"), command, log)
        }
        None => Process::spawn(format!("{label} on 127.0.0.1"), cmd::from_argv(argv), log),
    }
}

/// Waits until every member (process, client URL) passes `etcdctl endpoint
/// health`; fails as soon as one exits.
fn wait_ready(netns: Option<&str>, members: &mut [(&mut Process, &str)]) -> Result<()> {
    let mut healthy = vec![false; members.len()];
    let ready = poll_until(ETCD_READY_TIMEOUT, Duration::from_millis(200), || {
        for ((process, client_url), healthy) in members.iter_mut().zip(healthy.iter_mut()) {
            process.check_running()?;
            if !*healthy {
                let out = cmd::output(etcdctl_command(netns, client_url, &["endpoint", "health"]))?;
                *healthy = out.status.success();
            }
        }
        Ok(healthy.iter().all(|h| *h).then_some(()))
    })?;
    match (ready, healthy.iter().position(|h| !*h)) {
        (Some(()), _) | (None, None) => Ok(()),
        (None, Some(i)) => Err(members[i]
            .0
            .not_ready(ETCD_READY_TIMEOUT, "etcdctl endpoint health never passed")),
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

/// `n` distinct free ports on 127.0.0.1: each is found by binding port 0,
/// all are held until the last is found, then released.
fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| Error::io("finding a free port on 127.0.0.1", e))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| Error::io("finding a free port on 127.0.0.1", e))
}

/// Runs `launch` on `n` free ports. Another process may grab a port between
/// its release and etcd binding it, so this retries with fresh ports when
/// etcd says so.
fn with_free_ports<T>(n: usize, mut launch: impl FnMut(&[u16]) -> Result<T>) -> Result<T> {
    let mut last_error = None;
    for _ in 0..3 {
        match launch(&free_ports(n)?) {
            Ok(started) => return Ok(started),
            Err(e) if e.to_string().contains("address already in use") => last_error = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_error.expect("loop ran at least once"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `etcdctl endpoint status -w json` of etcd 3.4 with one member down.
    const STATUS: &str = r#"[{"Endpoint":"http://127.0.0.1:23792","Status":{"header":{"cluster_id":17300438976491492131,"member_id":185828541645115251,"revision":1,"raft_term":3},"version":"3.4.23","dbSize":20480,"leader":3990370604368066554,"raftIndex":9,"raftTerm":3,"raftAppliedIndex":9,"dbSizeInUse":16384}},{"Endpoint":"http://127.0.0.1:23793","Status":{"header":{"cluster_id":17300438976491492131,"member_id":3990370604368066554,"revision":1,"raft_term":3},"version":"3.4.23","dbSize":20480,"leader":3990370604368066554,"raftIndex":9,"raftTerm":3,"raftAppliedIndex":9,"dbSizeInUse":16384}}]"#;

    #[test]
    fn leader_is_the_member_that_names_itself() {
        let endpoints: Vec<String> = (1..=3)
            .map(|i| format!("http://127.0.0.1:2379{i}"))
            .collect();
        assert_eq!(leader_in_status(STATUS, &endpoints), Ok(2));
        // The old leader's id, which no member that answered has: an election.
        let electing = STATUS.replace("\"leader\":3990370604368066554", "\"leader\":1");
        assert!(leader_in_status(&electing, &endpoints)
            .unwrap_err()
            .contains("none of the 2 members"));
        assert!(leader_in_status("", &endpoints).is_err());
        assert!(leader_in_status(STATUS, &endpoints[..1])
            .unwrap_err()
            .contains("not a member"));
    }

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
