//! `brindle-cni` with the reference plugins of containernetworking-plugins
//! (Debian installs them in `/usr/lib/cni`), proving both directions of
//! delegation follow the `invoke` conventions:
//! - `brindle-cni` delegating to the reference `host-local` IPAM;
//! - the reference `bridge` plugin delegating to `brindle-ipam`;
//! - the reference `tuning` plugin chained after `brindle-cni`, reading
//!   our result as its `prevResult`.
//!
//! Skipped when the reference plugins or root are missing.

mod cni_support;
mod common;

use std::path::Path;

use cni_support::{container_id, first_ip, netns_path, Host};
use common::{can_run, TestNetns};
use serde_json::json;

const REFERENCE_DIR: &str = "/usr/lib/cni";

fn with_reference(host: &Host, plugins: &[&str]) -> bool {
    for plugin in plugins {
        let from = Path::new(REFERENCE_DIR).join(plugin);
        if !brindle_testbed::require::file(&from) {
            return false;
        }
        std::os::unix::fs::symlink(&from, host.plugin_dir().join(plugin)).unwrap();
    }
    true
}

#[test]
fn brindle_cni_delegates_to_reference_host_local() {
    if !can_run() {
        return;
    }
    let host = Host::new(&["10.83.0.0/16"]);
    if !with_reference(&host, &["host-local"]) {
        return;
    }
    let c1 = TestNetns::new("cnirefhl1");
    let c2 = TestNetns::new("cnirefhl2");
    let data_dir = host.dir.path().join("host-local");
    let conf = host.conf(json!({"ipam": {
        "type": "host-local",
        "dataDir": data_dir,
        "ranges": [[{"subnet": "10.84.0.0/24"}]]
    }}));
    let r1 = host
        .cni("ADD", &container_id(&c1), &netns_path(&c1), &conf)
        .expect_ok("ADD c1");
    let r2 = host
        .cni("ADD", &container_id(&c2), &netns_path(&c2), &conf)
        .expect_ok("ADD c2");
    let (ip1, ip2) = (first_ip(&r1), first_ip(&r2));
    assert!(ip1.starts_with("10.84.0."), "{r1}");
    assert!(c1.ping(&ip2), "c1 → c2 with host-local addresses");
    for c in [&c1, &c2] {
        host.cni("DEL", &container_id(c), &netns_path(c), &conf)
            .expect_ok("DEL");
    }
    // host-local keeps one file per address; DEL went through it.
    let leftover: Vec<_> = std::fs::read_dir(data_dir.join("brindle-test"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("10.84."))
        .collect();
    assert!(leftover.is_empty(), "{leftover:?}");
}

#[test]
fn reference_bridge_delegates_to_brindle_ipam() {
    if !can_run() {
        return;
    }
    let host = Host::new(&["10.85.0.0/16"]);
    if !with_reference(&host, &["bridge"]) {
        return;
    }
    let c = TestNetns::new("cnirefbr");
    let bridge = format!("brb{}", std::process::id() % 100_000);
    let conf = host.conf(json!({"type": "bridge", "bridge": bridge}));
    let r = host
        .cni_env_plugin("bridge", "ADD", &c, &conf)
        .expect_ok("bridge ADD");
    let ip = first_ip(&r);
    assert!(ip.starts_with("10.85."), "{r}");
    let addrs = c.ip(&["addr", "show", "eth0"]);
    assert!(addrs.contains(&format!("{ip}/32")), "{addrs}");
    assert!(host.handle_exists(&format!("brindle-test.{}", container_id(&c))));
    host.cni_env_plugin("bridge", "DEL", &c, &conf)
        .expect_ok("bridge DEL");
    assert!(!host.handle_exists(&format!("brindle-test.{}", container_id(&c))));
}

#[test]
fn reference_tuning_chains_after_brindle_cni() {
    if !can_run() {
        return;
    }
    let host = Host::new(&["10.86.0.0/16"]);
    if !with_reference(&host, &["tuning"]) {
        return;
    }
    let c = TestNetns::new("cnireftun");
    let conf = host.conf(json!({}));
    let r = host
        .cni("ADD", &container_id(&c), &netns_path(&c), &conf)
        .expect_ok("ADD");
    let tuning = json!({
        "cniVersion": "1.0.0",
        "name": "brindle-test",
        "type": "tuning",
        "sysctl": {"net.ipv4.conf.eth0.accept_local": "1"},
        "prevResult": r,
    });
    let out = host
        .cni_env_plugin("tuning", "ADD", &c, &tuning)
        .expect_ok("tuning ADD");
    assert_eq!(out["ips"], r["ips"], "tuning passes our result through");
    let v = c.exec(&["sysctl", "-n", "net.ipv4.conf.eth0.accept_local"]);
    assert_eq!(String::from_utf8_lossy(&v.stdout).trim(), "1");
    host.cni("DEL", &container_id(&c), &netns_path(&c), &conf)
        .expect_ok("DEL");
}
