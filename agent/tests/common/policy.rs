//! Fixtures for the policy end-to-end tests (`policy_*.rs`): the real
//! `brindlectl` binary against a test's store, TCP listeners inside a
//! namespace, and connection probes.
//!
//! `brindlectl` is taken from this build's target directory (`scripts/test`
//! builds the whole workspace first); when it is missing it is built with
//! `cargo build -p brindlectl`.

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use brindle_agent::netns::{named_netns_path, run_in_netns};
use brindle_testbed::Netns;

use super::fabric::Store;

/// This workspace's `brindlectl` (next to the test binary's `deps/`).
pub fn brindlectl_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let mut dir = exe.parent().unwrap().to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("brindlectl");
    if !bin.is_file() {
        let mut build = Command::new(env!("CARGO"));
        build.args(["build", "-p", "brindlectl", "--bin", "brindlectl"]);
        if dir.ends_with("release") {
            build.arg("--release");
        }
        let status = build.status().unwrap();
        assert!(status.success(), "cargo build -p brindlectl failed");
    }
    assert!(bin.is_file(), "{} missing", bin.display());
    bin
}

/// `brindlectl` against the test's store.
pub struct Ctl {
    bin: PathBuf,
    url: String,
    dir: PathBuf,
}

impl Ctl {
    pub fn new(store: &Store) -> Ctl {
        Ctl {
            bin: brindlectl_bin(),
            url: store.url.clone(),
            dir: store.dir.path().to_path_buf(),
        }
    }

    /// Runs `brindlectl args…` with `BRINDLE_DATASTORE` set; returns stdout.
    pub fn run(&self, args: &[&str]) -> String {
        let out = Command::new(&self.bin)
            .args(args)
            .env("BRINDLE_DATASTORE", &self.url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "brindlectl {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `brindlectl apply -f <file holding text>`.
    pub fn apply(&self, text: &str) {
        let mut file = tempfile::Builder::new()
            .prefix("resource")
            .suffix(".yaml")
            .tempfile_in(&self.dir)
            .unwrap();
        file.write_all(text.as_bytes()).unwrap();
        self.run(&["apply", "-f", &file.path().display().to_string()]);
    }

    /// Sets label `role` on the WorkloadEndpoint of host interface `iface`,
    /// as an orchestrator would: read it, change it, apply it.
    pub fn set_role(&self, iface: &str, role: &str) {
        let listed: serde_json::Value =
            serde_json::from_str(&self.run(&["get", "workloadendpoints", "-A", "-o", "json"]))
                .unwrap();
        let all = match listed.get("items") {
            Some(items) => items.as_array().unwrap().clone(),
            None => vec![listed],
        };
        let mut wep = all
            .into_iter()
            .find(|w| w["spec"]["interfaceName"] == iface)
            .unwrap_or_else(|| panic!("no WorkloadEndpoint with interface {iface}"));
        wep["metadata"]["labels"]["role"] = serde_json::Value::from(role);
        self.apply(&wep.to_string());
    }
}

/// TCP listeners on `ports` inside a workload, answering each connection
/// with one byte, until dropped.
pub struct Listeners {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Listeners {
    pub fn start(ns: &Netns, ip: Ipv4Addr, ports: &[u16]) -> Listeners {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for &port in ports {
            let (bound_tx, bound_rx) = std::sync::mpsc::channel();
            let path = named_netns_path(ns.name());
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || {
                run_in_netns(&path, move || {
                    let listener = TcpListener::bind((ip, port)).unwrap();
                    listener.set_nonblocking(true).unwrap();
                    bound_tx.send(()).unwrap();
                    while !stop.load(Ordering::Relaxed) {
                        match listener.accept() {
                            Ok((mut conn, _)) => {
                                let _ = conn.write_all(b"k");
                            }
                            Err(_) => std::thread::sleep(Duration::from_millis(5)),
                        }
                    }
                })
                .unwrap();
            }));
            bound_rx.recv().unwrap();
        }
        Listeners { stop, threads }
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Whether a new TCP connection from `client` to `ip:port` completes and
/// carries the server's byte within `timeout`.
pub fn connects(client: &Netns, ip: Ipv4Addr, port: u16, timeout: Duration) -> bool {
    let path = named_netns_path(client.name());
    run_in_netns(&path, move || {
        let addr = SocketAddr::new(IpAddr::V4(ip), port);
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, timeout) else {
            return false;
        };
        stream.set_read_timeout(Some(timeout)).unwrap();
        let mut byte = [0u8; 1];
        matches!(stream.read(&mut byte), Ok(1))
    })
    .unwrap()
}
