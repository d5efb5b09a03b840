//! Shared by the IPAM integration tests (included with `#[path]`): a fresh
//! store of either kind, resources written where `brindlectl apply` writes
//! them, and `ipam-stress` allocator processes with what their logs say.
//! Compiled on its own too, as an empty test crate.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use brindle_datastore::Datastore;
use brindle_model::{parse_one, Resource};

/// A fresh, empty store and what keeps it alive.
pub struct TestStore {
    pub url: String,
    pub ds: Datastore,
    _keep: Keep,
}

enum Keep {
    Dir(tempfile::TempDir),
    Etcd(brindle_testbed::Etcd),
}

pub async fn embedded() -> TestStore {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("file://{}/store.db", dir.path().display());
    let ds = Datastore::open(Some(&url))
        .await
        .expect("open embedded store");
    TestStore {
        url,
        ds,
        _keep: Keep::Dir(dir),
    }
}

pub async fn etcd() -> TestStore {
    let etcd = tokio::task::spawn_blocking(brindle_testbed::Etcd::start)
        .await
        .unwrap()
        .expect("start etcd");
    let url = format!("etcd://{}", etcd.client_url().trim_start_matches("http://"));
    let ds = Datastore::open(Some(&url)).await.expect("connect to etcd");
    TestStore {
        url,
        ds,
        _keep: Keep::Etcd(etcd),
    }
}

/// Parses a resource document and stores it as the CLI does (JSON at its key).
pub async fn apply(ds: &Datastore, yaml: &str) -> Resource {
    let r = parse_one(yaml).unwrap_or_else(|e| panic!("bad test resource: {e}\n{yaml}"));
    ds.put(
        brindle_datastore::keys::key_of(&r),
        serde_json::to_vec(&r).unwrap(),
    )
    .await
    .expect("store resource");
    r
}

pub async fn pool(ds: &Datastore, name: &str, cidr: &str, block_size: u8, extra: &str) {
    apply(
        ds,
        &format!(
            "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: {name}\n\
             spec:\n  cidr: {cidr}\n  blockSize: {block_size}\n{extra}"
        ),
    )
    .await;
}

pub async fn ipam_config(ds: &Datastore, spec: &str) {
    apply(
        ds,
        &format!(
            "apiVersion: projectcalico.org/v3\nkind: IPAMConfiguration\nmetadata:\n  name: default\n\
             spec:\n{spec}"
        ),
    )
    .await;
}

pub async fn node(ds: &Datastore, name: &str, labels: &[(&str, &str)]) {
    let labels: String = labels
        .iter()
        .map(|(k, v)| format!("    {k}: \"{v}\"\n"))
        .collect();
    let labels = if labels.is_empty() {
        String::new()
    } else {
        format!("  labels:\n{labels}")
    };
    apply(
        ds,
        &format!(
            "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: {name}\n{labels}spec: {{}}\n"
        ),
    )
    .await;
}

/// Kills and reaps the allocators if the test fails half-way.
pub struct Allocators(pub Vec<Child>);

impl Drop for Allocators {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts one `ipam-stress` process: `count` allocations on `node`, each
/// logged to `log`, every `release_every`-th released (0: none).
pub fn spawn_allocator(
    url: &str,
    node: &str,
    count: usize,
    log: &Path,
    release_every: usize,
) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ipam-stress"))
        .args([
            url,
            node,
            &count.to_string(),
            log.to_str().unwrap(),
            &release_every.to_string(),
        ])
        .spawn()
        .expect("spawn ipam-stress")
}

/// What one allocator's log says.
#[derive(Default)]
pub struct Log {
    pub allocated: Vec<(IpAddr, String)>,
    pub released: HashSet<String>,
    pub release_started: HashSet<String>,
    pub exhausted: usize,
}

pub fn read_log(path: &Path) -> Log {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut log = Log::default();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        match f.as_slice() {
            ["A", ip, handle, _micros] => log
                .allocated
                .push((ip.parse().unwrap(), handle.to_string())),
            ["X", _] => log.exhausted += 1,
            ["r", h] => {
                log.release_started.insert(h.to_string());
            }
            ["R", h, _] => {
                log.released.insert(h.to_string());
            }
            // A SIGKILL can cut the last line short.
            _ => {}
        }
    }
    log
}

/// What the allocators' logs say together.
pub struct Holdings {
    /// Handle → address, for every allocation never released.
    pub live: HashMap<String, IpAddr>,
    /// Allocations logged (released or not).
    pub allocated: usize,
    /// Attempts that found the pools exhausted.
    pub exhausted: usize,
}

/// Reads the logs at `paths`; panics if a release did not finish or if an
/// address is held by two handles that were never released.
pub fn holdings(paths: &[PathBuf]) -> Holdings {
    let mut live: HashMap<String, IpAddr> = HashMap::new();
    let mut holder_of: HashMap<IpAddr, String> = HashMap::new();
    let mut exhausted = 0;
    let mut allocated = 0;
    for p in paths {
        let log = read_log(p);
        exhausted += log.exhausted;
        allocated += log.allocated.len();
        assert_eq!(log.release_started, log.released, "every release finished");
        for (ip, handle) in log.allocated {
            if log.released.contains(&handle) {
                continue;
            }
            if let Some(other) = holder_of.insert(ip, handle.clone()) {
                panic!("DUPLICATE: {ip} handed to {other} and to {handle}");
            }
            live.insert(handle, ip);
        }
    }
    Holdings {
        live,
        allocated,
        exhausted,
    }
}
