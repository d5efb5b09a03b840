//! `brindle-cni` run exactly as a container runtime runs it: `CNI_*` in the
//! environment, the network configuration on stdin, a container namespace
//! from `ip netns add`, `CNI_PATH` pointing at a directory holding
//! `brindle-cni` and `brindle-ipam` (a symlink to the same binary), and a
//! temporary embedded datastore. The plugin runs inside a "host" namespace
//! (`ip netns exec`), so nothing touches the real host. Needs root.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use brindle_datastore::ipam::{keys::handle_key, Ipam};
use brindle_datastore::Datastore;
use brindle_model::resource::{resource_key, Kind};
use brindle_model::Resource;
use common::{can_run, TestNetns};
use serde_json::{json, Value};

/// A "host": its namespace, a plugin directory and a store.
struct Host {
    ns: TestNetns,
    dir: tempfile::TempDir,
    store_url: String,
}

impl Host {
    fn new(pool_cidrs: &[&str]) -> Host {
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
        let store_url = format!("file://{}", dir.path().join("store.db").display());
        let host = Host { ns, dir, store_url };
        host.block_on(|ipam| async move {
            for cidr in pool_cidrs {
                ipam.ensure_default_pool(cidr.parse().unwrap())
                    .await
                    .unwrap();
            }
        });
        host
    }

    fn plugin_dir(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    fn block_on<F, Fut, T>(&self, work: F) -> T
    where
        F: FnOnce(Ipam) -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let store = Datastore::open(Some(&self.store_url)).await.unwrap();
            work(Ipam::new(store)).await
        })
    }

    fn conf(&self, extra: Value) -> Value {
        let mut conf = json!({
            "cniVersion": "1.0.0",
            "name": "brindle-test",
            "type": "brindle-cni",
            "datastore": self.store_url,
            "nodename": "node-a",
            "network": "blue",
            "mtu": 1440,
            "ipam": {"type": "brindle-ipam"}
        });
        merge(&mut conf, extra);
        conf
    }

    /// Runs the plugin in the host namespace as a runtime would.
    fn cni(&self, command: &str, container: &str, netns: &str, conf: &Value) -> Outcome {
        self.cni_env(
            &[
                ("CNI_COMMAND", command),
                ("CNI_CONTAINERID", container),
                ("CNI_NETNS", netns),
                ("CNI_IFNAME", "eth0"),
                ("CNI_ARGS", "IgnoreUnknown=1"),
            ],
            conf.to_string().as_bytes(),
        )
    }

    fn cni_env(&self, vars: &[(&str, &str)], stdin: &[u8]) -> Outcome {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns.name])
            .arg(self.plugin_dir().join("brindle-cni"))
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

    fn endpoint(&self, name: &str) -> Option<Resource> {
        let key = resource_key(Kind::WorkloadEndpoint, Some("default"), name);
        self.block_on(|ipam| async move {
            let kv = ipam.store().get(key).await.unwrap()?;
            Some(brindle_model::parse_one(std::str::from_utf8(&kv.value).unwrap()).unwrap())
        })
    }

    fn handle_exists(&self, handle: &str) -> bool {
        let key = handle_key(handle);
        self.block_on(|ipam| async move { ipam.store().get(key).await.unwrap().is_some() })
    }

    fn sysctl(&self, key: &str) -> String {
        let out = self.ns.exec(&["sysctl", "-n", key]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

#[derive(Debug)]
struct Outcome {
    ok: bool,
    json: Value,
    stdout: String,
    stderr: String,
}

impl Outcome {
    #[track_caller]
    fn expect_ok(self, what: &str) -> Value {
        assert!(self.ok, "{what} failed: {}\n{}", self.stdout, self.stderr);
        self.json
    }

    #[track_caller]
    fn expect_code(self, what: &str, code: u64) -> Value {
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

fn merge(base: &mut Value, extra: Value) {
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

fn netns_path(ns: &TestNetns) -> String {
    ns.path().to_string_lossy().into_owned()
}

fn container_id(ns: &TestNetns) -> String {
    format!("cid-{}", ns.name)
}

fn endpoint_name(ns: &TestNetns) -> String {
    format!("node--a-cni-{}-eth0", container_id(ns).replace('-', "--"))
}

fn first_ip(result: &Value) -> String {
    let addr = result["ips"][0]["address"].as_str().expect("an address");
    addr.split('/').next().unwrap().to_owned()
}

#[test]
fn two_workloads_ping_each_other_then_del_twice() {
    if !can_run() {
        return;
    }
    let host = Host::new(&["10.77.0.0/16"]);
    let c1 = TestNetns::new("cnic1");
    let c2 = TestNetns::new("cnic2");
    let labelled = host.conf(json!({"args": {"brindle": {"labels": {"app": "web"}}}}));
    let r1 = host
        .cni("ADD", &container_id(&c1), &netns_path(&c1), &labelled)
        .expect_ok("ADD c1");
    let r2 = host
        .cni(
            "ADD",
            &container_id(&c2),
            &netns_path(&c2),
            &host.conf(json!({})),
        )
        .expect_ok("ADD c2");

    // The result, as the spec shapes it.
    assert_eq!(r1["cniVersion"], "1.0.0");
    let host_if = r1["interfaces"][0]["name"].as_str().unwrap().to_owned();
    assert!(host_if.starts_with("cali") && host_if.len() == 15, "{r1}");
    assert_eq!(r1["interfaces"][0]["mac"], "ee:ee:ee:ee:ee:ee");
    assert_eq!(r1["interfaces"][1]["name"], "eth0");
    assert_eq!(r1["interfaces"][1]["sandbox"], json!(netns_path(&c1)));
    assert_eq!(r1["ips"][0]["interface"], 1);
    assert!(
        r1["ips"][0]["address"].as_str().unwrap().ends_with("/32"),
        "{r1}"
    );
    assert_eq!(
        r1["routes"][0],
        json!({"dst": "0.0.0.0/0", "gw": "169.254.1.1"})
    );
    let (ip1, ip2) = (first_ip(&r1), first_ip(&r2));
    assert_ne!(ip1, ip2);
    assert!(ip1.starts_with("10.77."), "{ip1}");

    // Host side: MAC, sysctls, /32 route to the veth.
    let link = host.ns.ip(&["link", "show", &host_if]);
    assert!(
        link.contains("ee:ee:ee:ee:ee:ee") && link.contains("mtu 1440"),
        "{link}"
    );
    for key in ["proxy_arp", "forwarding", "route_localnet"] {
        assert_eq!(
            host.sysctl(&format!("net.ipv4.conf.{host_if}.{key}")),
            "1",
            "{key}"
        );
    }
    assert_eq!(
        host.sysctl(&format!("net.ipv4.neigh.{host_if}.proxy_delay")),
        "0"
    );
    let routes = host.ns.ip(&["route", "show", &format!("{ip1}/32")]);
    assert!(routes.contains(&format!("dev {host_if}")), "{routes}");

    // Container side: /32 on eth0, the fake gateway.
    let addrs = c1.ip(&["addr", "show", "eth0"]);
    assert!(addrs.contains(&format!("{ip1}/32")), "{addrs}");
    let croutes = c1.ip(&["route", "show"]);
    assert!(
        croutes.contains("default via 169.254.1.1 dev eth0"),
        "{croutes}"
    );
    assert!(croutes.contains("169.254.1.1 dev eth0"), "{croutes}");

    // The endpoint: network as profile, labels, addresses, interface.
    let Some(Resource::WorkloadEndpoint(wep)) = host.endpoint(&endpoint_name(&c1)) else {
        panic!("no endpoint {}", endpoint_name(&c1));
    };
    assert_eq!(wep.metadata.labels["app"], "web");
    assert_eq!(wep.metadata.labels["projectcalico.org/orchestrator"], "cni");
    assert_eq!(wep.spec.profiles, vec!["blue"]);
    assert_eq!(wep.spec.ip_networks, vec![format!("{ip1}/32")]);
    assert_eq!(wep.spec.interface_name.as_deref(), Some(host_if.as_str()));
    assert_eq!(wep.spec.node.as_deref(), Some("node-a"));
    assert_eq!(wep.spec.container_id, Some(container_id(&c1)));

    assert!(c1.ping(&ip2), "c1 → c2");
    assert!(c2.ping(&ip1), "c2 → c1");

    // CHECK against the ADD result.
    let check = host.conf(json!({"prevResult": r1}));
    let out = host
        .cni("CHECK", &container_id(&c1), &netns_path(&c1), &check)
        .expect_ok("CHECK");
    assert_eq!(out, Value::Null, "CHECK prints nothing");

    // DEL, then DEL again: both succeed, nothing left.
    let handle = format!("brindle-test.{}", container_id(&c1));
    assert!(host.handle_exists(&handle));
    for round in ["DEL", "DEL again"] {
        host.cni(
            "DEL",
            &container_id(&c1),
            &netns_path(&c1),
            &host.conf(json!({})),
        )
        .expect_ok(round);
    }
    assert!(!host.ns.ip(&["link", "show"]).contains(&host_if));
    assert!(host
        .ns
        .ip(&["route", "show", &format!("{ip1}/32")])
        .trim()
        .is_empty());
    assert!(host.endpoint(&endpoint_name(&c1)).is_none());
    assert!(!host.handle_exists(&handle));
    assert!(!c1.ip(&["link", "show"]).contains("eth0"));

    // CHECK of a deleted workload fails with an error object.
    host.cni("CHECK", &container_id(&c1), &netns_path(&c1), &check)
        .expect_code("CHECK after DEL", 999);

    // The other workload is untouched.
    assert!(host.endpoint(&endpoint_name(&c2)).is_some());
    host.cni(
        "DEL",
        &container_id(&c2),
        &netns_path(&c2),
        &host.conf(json!({})),
    )
    .expect_ok("DEL c2");
}

#[test]
fn del_of_a_half_created_workload_and_of_an_unknown_one() {
    if !can_run() {
        return;
    }
    let host = Host::new(&["10.78.0.0/16"]);
    let c = TestNetns::new("cnihalf");
    let conf = host.conf(json!({}));
    let r = host
        .cni("ADD", &container_id(&c), &netns_path(&c), &conf)
        .expect_ok("ADD");
    let host_if = r["interfaces"][0]["name"].as_str().unwrap().to_owned();
    // Half gone: someone removed the veth (and with it the route).
    host.ns.ip(&["link", "del", &host_if]);
    let check = host.conf(json!({"prevResult": r}));
    host.cni("CHECK", &container_id(&c), &netns_path(&c), &check)
        .expect_code("CHECK without veth", 999);
    host.cni("DEL", &container_id(&c), &netns_path(&c), &conf)
        .expect_ok("DEL half-created");
    assert!(host.endpoint(&endpoint_name(&c)).is_none());
    assert!(!host.handle_exists(&format!("brindle-test.{}", container_id(&c))));

    // ADD again after all that works and gets an address again.
    let again = host
        .cni("ADD", &container_id(&c), &netns_path(&c), &conf)
        .expect_ok("ADD again");
    assert!(first_ip(&again).starts_with("10.78."));
    // ADD repeated (runtime retry) converges on one veth and one address.
    let repeat = host
        .cni("ADD", &container_id(&c), &netns_path(&c), &conf)
        .expect_ok("ADD repeated");
    assert_eq!(
        first_ip(&repeat),
        first_ip(&again),
        "same handle, same address"
    );
    host.cni("DEL", &container_id(&c), &netns_path(&c), &conf)
        .expect_ok("DEL");

    // DEL for something never added, with the namespace already gone.
    host.cni_env(
        &[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "never-added"),
            ("CNI_IFNAME", "eth0"),
        ],
        conf.to_string().as_bytes(),
    )
    .expect_ok("DEL unknown");
}

#[test]
fn fixed_address_is_kept_by_a_moving_workload() {
    if !can_run() {
        return;
    }
    let host = Host::new(&["10.79.0.0/16"]);
    let c1 = TestNetns::new("cnifix1");
    let c2 = TestNetns::new("cnifix2");
    let fixed = host.conf(json!({"ipam": {"ipAddrs": ["10.79.9.9"]}}));
    let r = host
        .cni("ADD", &container_id(&c1), &netns_path(&c1), &fixed)
        .expect_ok("ADD fixed");
    assert_eq!(r["ips"][0]["address"], "10.79.9.9/32");
    // While held, another container cannot take it; the failed ADD leaves nothing.
    host.cni("ADD", &container_id(&c2), &netns_path(&c2), &fixed)
        .expect_code("ADD taken address", 999);
    assert!(!c2.ip(&["link", "show"]).contains("eth0"));
    assert!(host.endpoint(&endpoint_name(&c2)).is_none());
    // It moves: DEL here, ADD there (runtimeConfig.ips form) keeps it.
    host.cni("DEL", &container_id(&c1), &netns_path(&c1), &fixed)
        .expect_ok("DEL");
    let moved_conf = host.conf(json!({"runtimeConfig": {"ips": ["10.79.9.9/32"]}}));
    let moved = host
        .cni("ADD", &container_id(&c2), &netns_path(&c2), &moved_conf)
        .expect_ok("ADD moved");
    assert_eq!(moved["ips"][0]["address"], "10.79.9.9/32");
    host.cni("DEL", &container_id(&c2), &netns_path(&c2), &moved_conf)
        .expect_ok("DEL moved");
}

#[test]
fn dual_stack_workloads_ping_over_ipv6() {
    if !can_run() {
        return;
    }
    let host = Host::new(&["10.80.0.0/16", "fd00:80::/48"]);
    let c1 = TestNetns::new("cni6a");
    let c2 = TestNetns::new("cni6b");
    let conf = host.conf(json!({"ipam": {"assign_ipv6": "true"}}));
    let r1 = host
        .cni("ADD", &container_id(&c1), &netns_path(&c1), &conf)
        .expect_ok("ADD c1");
    let r2 = host
        .cni("ADD", &container_id(&c2), &netns_path(&c2), &conf)
        .expect_ok("ADD c2");
    let v6 = |r: &Value| -> String {
        r["ips"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|ip| ip["address"].as_str())
            .find(|a| a.contains(':'))
            .expect("an IPv6 address")
            .split('/')
            .next()
            .unwrap()
            .to_owned()
    };
    let host_if = r1["interfaces"][0]["name"].as_str().unwrap().to_owned();
    assert_eq!(
        host.sysctl(&format!("net.ipv6.conf.{host_if}.proxy_ndp")),
        "1"
    );
    assert_eq!(
        host.sysctl(&format!("net.ipv6.conf.{host_if}.accept_ra")),
        "0"
    );
    let croutes = c1.ip(&["-6", "route", "show", "default"]);
    assert!(
        croutes.contains("via fe80::ecee:eeff:feee:eeee dev eth0"),
        "{croutes}"
    );
    assert!(c1.ping(&v6(&r2)), "c1 → c2 over IPv6");
    for (c, _) in [(&c1, &r1), (&c2, &r2)] {
        host.cni("DEL", &container_id(c), &netns_path(c), &conf)
            .expect_ok("DEL");
    }
}

#[test]
fn version_and_errors_are_spec_objects() {
    if !can_run() {
        return;
    }
    let host = Host::new(&["10.81.0.0/16"]);
    let c = TestNetns::new("cnierr");
    let version = host
        .cni_env(&[("CNI_COMMAND", "VERSION")], br#"{"cniVersion":"1.0.0"}"#)
        .expect_ok("VERSION");
    assert_eq!(version["cniVersion"], "1.0.0");
    assert!(version["supportedVersions"]
        .as_array()
        .unwrap()
        .contains(&json!("1.0.0")));

    let add = |stdin: &[u8]| {
        host.cni_env(
            &[
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", &container_id(&c)),
                ("CNI_NETNS", &netns_path(&c)),
                ("CNI_IFNAME", "eth0"),
            ],
            stdin,
        )
    };
    add(b"{not json").expect_code("garbage config", 6);
    add(br#"{"cniVersion":"0.1.0","name":"n","type":"brindle-cni"}"#).expect_code("old version", 1);
    let bad_mtu = host.conf(json!({"mtu": 5}));
    add(bad_mtu.to_string().as_bytes()).expect_code("bad mtu", 7);
    let no_plugin = host.conf(json!({"ipam": {"type": "no-such-ipam"}}));
    add(no_plugin.to_string().as_bytes()).expect_code("missing IPAM plugin", 7);
    let json_err = host
        .cni_env(
            &[("CNI_COMMAND", "ADD"), ("CNI_IFNAME", "eth0")],
            host.conf(json!({})).to_string().as_bytes(),
        )
        .expect_code("missing env", 4);
    assert!(json_err["msg"]
        .as_str()
        .unwrap()
        .contains("CNI_CONTAINERID"));
    host.cni(
        "ADD",
        &container_id(&c),
        "/run/netns/brindle-no-such-ns",
        &host.conf(json!({})),
    )
    .expect_code("missing netns", 3);
    // No address leaked by the failed ADDs.
    assert!(!host.handle_exists(&format!("brindle-test.{}", container_id(&c))));
    // An address-less pool: IPAM's error comes back through the main plugin.
    let wrong_pool = host.conf(json!({"ipam": {"ipAddrs": ["192.0.2.200"]}}));
    host.cni("ADD", &container_id(&c), &netns_path(&c), &wrong_pool)
        .expect_code("fixed address outside the pools", 7);
    assert!(!c.ip(&["link", "show"]).contains("eth0"));
}
