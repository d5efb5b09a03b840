//! Fixture for the `cni_*` tests: a "host" namespace, a plugin directory
//! (`brindle-cni` plus `brindle-ipam`, a symlink to it) and a temporary
//! embedded store; the plugin is run exactly as a runtime runs it. Every
//! namespace and file is removed on drop, also when a test panics.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use brindle_datastore::ipam::Ipam;
use brindle_datastore::keys::{handle_key, resource_key};
use brindle_datastore::Datastore;
use brindle_model::resource::Kind;
use brindle_model::Resource;
use serde_json::{json, Value};

use crate::common::TestNetns;

/// A "host": its namespace, a plugin directory and a store.
pub struct Host {
    pub ns: TestNetns,
    pub dir: tempfile::TempDir,
    pub store_url: String,
}

impl Host {
    /// A host using a temporary embedded store.
    pub fn new(pool_cidrs: &[&str]) -> Host {
        Host::with_store(pool_cidrs, |_, dir| {
            format!("file://{}", dir.join("store.db").display())
        })
    }

    /// A host whose store URL `store` picks once the namespace exists (it
    /// may wire the namespace to a store elsewhere first).
    pub fn with_store(
        pool_cidrs: &[&str],
        store: impl FnOnce(&TestNetns, &Path) -> String,
    ) -> Host {
        let ns = TestNetns::new("cnihost");
        // Proxy ARP answers only for addresses the host routes elsewhere:
        // give it a default route through a dead-end veth, like a node's uplink.
        ns.ip(&[
            "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink0p",
        ]);
        ns.ip(&["link", "set", "uplink0p", "up"]);
        ns.ip(&["addr", "add", "192.0.2.1/24", "dev", "uplink0"]);
        ns.ip(&["link", "set", "uplink0", "up"]);
        ns.ip(&["route", "add", "default", "dev", "uplink0"]);
        ns.sysctl("net.ipv4.ip_forward", "1");
        ns.sysctl("net.ipv6.conf.all.forwarding", "1");

        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let exe = Path::new(env!("CARGO_BIN_EXE_brindle-cni"));
        std::fs::copy(exe, bin.join("brindle-cni")).unwrap();
        std::os::unix::fs::symlink(bin.join("brindle-cni"), bin.join("brindle-ipam")).unwrap();
        let store_url = store(&ns, dir.path());
        let host = Host { ns, dir, store_url };
        let pools: Vec<String> = pool_cidrs.iter().map(|c| c.to_string()).collect();
        host.block_on(|ipam| async move {
            for cidr in pools {
                ipam.ensure_default_pool(cidr.parse().unwrap())
                    .await
                    .unwrap();
            }
        });
        host
    }

    pub fn plugin_dir(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    /// Runs `work` against the store from inside the host namespace (where
    /// the plugin reaches it too).
    pub fn block_on<F, Fut, T>(&self, work: F) -> T
    where
        F: FnOnce(Ipam) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T>,
        T: Send + 'static,
    {
        let url = self.store_url.clone();
        brindle_agent::netns::block_on_in_netns(&self.ns.path(), move || async move {
            let store = Datastore::open(Some(&url)).await.unwrap();
            work(Ipam::new(store)).await
        })
        .unwrap()
    }

    pub fn conf(&self, extra: Value) -> Value {
        let mut conf = json!({
            "cniVersion": "1.0.0",
            "name": "brindle-test",
            "type": "brindle-cni",
            "datastore": self.store_url,
            "nodename": "node-a",
            "network": "blue",
            "mtu": 1440,
            "ipam": {"type": "brindle-ipam"},
            // This "host"'s own per-host lock, as each real host has one.
            "ipam_lock_file": self.dir.path().join("ipam.lock"),
        });
        merge(&mut conf, extra);
        conf
    }

    /// Runs the plugin in the host namespace as a runtime would.
    pub fn cni(&self, command: &str, container: &str, netns: &str, conf: &Value) -> Outcome {
        self.cni_args(command, container, netns, "IgnoreUnknown=1", conf)
    }

    /// Runs another plugin of the plugin directory (a reference plugin).
    pub fn cni_env_plugin(
        &self,
        plugin: &str,
        command: &str,
        container: &TestNetns,
        conf: &Value,
    ) -> Outcome {
        self.run_plugin(
            plugin,
            &[
                ("CNI_COMMAND", command),
                ("CNI_CONTAINERID", &container_id(container)),
                ("CNI_NETNS", &netns_path(container)),
                ("CNI_IFNAME", "eth0"),
            ],
            conf.to_string().as_bytes(),
        )
    }

    /// [`cni`](Self::cni) with a `CNI_ARGS` string.
    pub fn cni_args(
        &self,
        command: &str,
        container: &str,
        netns: &str,
        cni_args: &str,
        conf: &Value,
    ) -> Outcome {
        self.cni_env(
            &[
                ("CNI_COMMAND", command),
                ("CNI_CONTAINERID", container),
                ("CNI_NETNS", netns),
                ("CNI_IFNAME", "eth0"),
                ("CNI_ARGS", cni_args),
            ],
            conf.to_string().as_bytes(),
        )
    }

    pub fn cni_env(&self, vars: &[(&str, &str)], stdin: &[u8]) -> Outcome {
        self.run_plugin("brindle-cni", vars, stdin)
    }

    pub fn run_plugin(&self, plugin: &str, vars: &[(&str, &str)], stdin: &[u8]) -> Outcome {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns.name])
            .arg(self.plugin_dir().join(plugin))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "CNI_PATH",
                format!("/nonexistent:{}", self.plugin_dir().display()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn brindle-cni");
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        Outcome {
            ok: out.status.success(),
            json: serde_json::from_str(&stdout).unwrap_or(Value::Null),
            stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn endpoint(&self, name: &str) -> Option<Resource> {
        self.endpoint_in("default", name)
    }

    pub fn endpoint_in(&self, namespace: &str, name: &str) -> Option<Resource> {
        let key = resource_key(Kind::WorkloadEndpoint, Some(namespace), name);
        self.block_on(|ipam| async move {
            let kv = ipam.store().get(key).await.unwrap()?;
            Some(brindle_model::parse_one(std::str::from_utf8(&kv.value).unwrap()).unwrap())
        })
    }

    pub fn handle_exists(&self, handle: &str) -> bool {
        let key = handle_key(handle);
        self.block_on(|ipam| async move { ipam.store().get(key).await.unwrap().is_some() })
    }

    pub fn sysctl(&self, key: &str) -> String {
        let out = self.ns.exec(&["sysctl", "-n", key]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

#[derive(Debug)]
pub struct Outcome {
    pub ok: bool,
    pub json: Value,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    #[track_caller]
    pub fn expect_ok(self, what: &str) -> Value {
        assert!(self.ok, "{what} failed: {}\n{}", self.stdout, self.stderr);
        self.json
    }

    #[track_caller]
    pub fn expect_code(self, what: &str, code: u64) -> Value {
        assert!(!self.ok, "{what} succeeded: {}", self.stdout);
        assert_eq!(
            self.json["code"],
            json!(code),
            "{what}: {}\n{}",
            self.stdout,
            self.stderr
        );
        assert!(
            self.json["msg"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {}",
            self.stdout
        );
        self.json
    }
}

pub fn merge(base: &mut Value, extra: Value) {
    if let (Value::Object(b), Value::Object(e)) = (base, extra) {
        for (k, v) in e {
            match b.get_mut(&k) {
                Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                _ => {
                    b.insert(k, v);
                }
            }
        }
    }
}

pub fn netns_path(ns: &TestNetns) -> String {
    ns.path().to_string_lossy().into_owned()
}

pub fn container_id(ns: &TestNetns) -> String {
    format!("cid-{}", ns.name)
}

pub fn endpoint_name(ns: &TestNetns) -> String {
    format!("node--a-cni-{}-eth0", container_id(ns).replace('-', "--"))
}

pub fn first_ip(result: &Value) -> String {
    let addr = result["ips"][0]["address"].as_str().expect("an address");
    addr.split('/').next().unwrap().to_owned()
}
