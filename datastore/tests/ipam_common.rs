//! Shared by the IPAM integration tests (included with `#[path]`): a fresh
//! store of either kind, and resources written where `brindlectl apply`
//! writes them. Compiled on its own too, as an empty test crate.
#![allow(dead_code)]

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
