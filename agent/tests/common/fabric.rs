//! Fixtures for the fabric tests (`node_fabric*.rs`): a shared store (the
//! embedded SQLite file, or a real etcd inside the topology), `brindle-node`
//! daemons, workloads made by running the `brindle-cni` binary exactly as a
//! container runtime does, and the route/ping/TCP checks.
//!
//! Every namespace, process and temp file is owned by a handle and removed on
//! drop, also when a test panics.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use brindle_agent::netns::{block_on_in_netns, named_netns_path, run_in_netns};
use brindle_agent::node::status::StatusReport;
use brindle_datastore::{Datastore, KeyValue};
use brindle_model::{parse_one, Resource};
use brindle_testbed::{poll_until, Etcd, Host, Netns, Process};

pub const NODE_BIN: &str = env!("CARGO_BIN_EXE_brindle-node");
pub const CNI_BIN: &str = env!("CARGO_BIN_EXE_brindle-cni");
pub const WAIT: Duration = Duration::from_secs(60);

pub fn can_run() -> bool {
    brindle_testbed::require::root()
}

/// Which store a fabric test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// One SQLite file every daemon and the CNI plugin open.
    Embedded,
    /// A real etcd inside the topology, reached over the underlay.
    Etcd,
}

enum Backend {
    /// Opened once by the test (the file needs no namespace).
    Embedded {
        rt: tokio::runtime::Runtime,
        ds: Datastore,
    },
    /// etcd listens inside a namespace the test's own (root namespace)
    /// threads cannot reach, so every operation runs on a thread that
    /// entered that namespace, with its own connection: a few dozen
    /// operations per test, and no connection that could reconnect from the
    /// wrong namespace later.
    Etcd { etcd: Etcd, netns: PathBuf },
    /// A cluster of etcd members in a namespace; the URL names them all.
    EtcdCluster {
        cluster: brindle_testbed::EtcdCluster,
        netns: PathBuf,
    },
}

/// The shared store and a way to talk to it from the test.
pub struct Store {
    pub dir: tempfile::TempDir,
    /// What daemons and the CNI plugin are given as `--datastore`.
    pub url: String,
    // Field order: etcd (in `backend`) stops before `dir` goes.
    backend: Backend,
}

impl Store {
    /// An embedded store file in a private temp dir.
    pub fn embedded() -> Store {
        let dir = temp_dir();
        // The store in a directory of its own, as on a real host (not next
        // to the daemons' logs and sockets in `dir`).
        let url = format!("file://{}/store/store.db", dir.path().display());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let ds = rt.block_on(Datastore::open(Some(&url))).unwrap();
        Store {
            dir,
            url,
            backend: Backend::Embedded { rt, ds },
        }
    }

    /// A real etcd in `ns` listening on `address` (already configured there,
    /// reachable from every host of the topology).
    pub fn etcd_in(ns: &Netns, address: Ipv4Addr) -> Store {
        let dir = temp_dir();
        let etcd = Etcd::start_in(ns, IpAddr::V4(address)).unwrap();
        let url = format!("etcd://{address}:2379");
        Store {
            dir,
            url,
            backend: Backend::Etcd {
                etcd,
                netns: named_netns_path(ns.name()),
            },
        }
    }

    /// A real `members`-member etcd cluster in `ns` on `address` (ports 2379,
    /// 2381, …); daemons get every member in their URL.
    pub fn etcd_cluster_in(ns: &Netns, address: Ipv4Addr, members: usize) -> Store {
        let dir = temp_dir();
        let cluster = brindle_testbed::EtcdCluster::start_in(ns, address, members).unwrap();
        let endpoints: Vec<String> = cluster
            .endpoints()
            .iter()
            .map(|e| e.trim_start_matches("http://").to_owned())
            .collect();
        let url = format!("etcd://{}", endpoints.join(","));
        Store {
            dir,
            url,
            backend: Backend::EtcdCluster {
                cluster,
                netns: named_netns_path(ns.name()),
            },
        }
    }

    /// The etcd cluster behind a cluster store.
    ///
    /// # Panics
    /// On another kind of store.
    pub fn etcd_cluster(&mut self) -> &mut brindle_testbed::EtcdCluster {
        match &mut self.backend {
            Backend::EtcdCluster { cluster, .. } => cluster,
            _ => panic!("not an etcd cluster store"),
        }
    }

    /// `kind` of store, etcd living in `ns` on `address`.
    pub fn new(kind: StoreKind, ns: &Netns, address: Ipv4Addr) -> Store {
        match kind {
            StoreKind::Embedded => Store::embedded(),
            StoreKind::Etcd => Store::etcd_in(ns, address),
        }
    }

    pub fn kind(&self) -> StoreKind {
        match self.backend {
            Backend::Embedded { .. } => StoreKind::Embedded,
            Backend::Etcd { .. } | Backend::EtcdCluster { .. } => StoreKind::Etcd,
        }
    }

    /// Runs `op` against the store and returns its result.
    fn run<T, Fut>(&self, op: impl FnOnce(Datastore) -> Fut + Send + 'static) -> T
    where
        Fut: std::future::Future<Output = brindle_datastore::Result<T>>,
        T: Send + 'static,
    {
        match &self.backend {
            Backend::Embedded { rt, ds } => rt.block_on(op(ds.clone())).unwrap(),
            Backend::Etcd { netns, .. } | Backend::EtcdCluster { netns, .. } => {
                let url = self.url.clone();
                block_on_in_netns(netns, move || async move {
                    let ds = Datastore::open(Some(&url)).await?;
                    op(ds).await
                })
                .unwrap()
                .unwrap()
            }
        }
    }

    pub fn apply(&self, yaml: &str) {
        let resource = parse_one(yaml).unwrap();
        self.put(&resource);
    }

    pub fn put(&self, resource: &Resource) {
        let value = serde_json::to_vec(resource).unwrap();
        let key = brindle_datastore::keys::key_of(resource);
        self.run(move |ds| async move { ds.put(key, value).await.map(drop) });
    }

    pub fn delete(&self, key: &str) {
        let key = key.to_owned();
        self.run(move |ds| async move { ds.delete(key).await.map(drop) });
    }

    pub fn get(&self, key: &str) -> Option<KeyValue> {
        let key = key.to_owned();
        self.run(move |ds| async move { ds.get(key).await })
    }

    /// Discards the store's history up to its current revision: a watch
    /// resuming from before it gets "compacted" and must re-list.
    pub fn compact_now(&self) -> i64 {
        self.run(|ds| async move {
            let revision = ds.revision().await?;
            ds.compact(revision).await?;
            Ok(revision)
        })
    }

    /// What `brindlectl ipam check` reports: allocations without a user,
    /// addresses in use that IPAM does not hold, addresses used twice.
    pub fn ipam_check(&self) -> brindle_datastore::ipam::CheckReport {
        let report = self.run(|ds| async move {
            let ipam = brindle_datastore::ipam::Ipam::new(ds);
            Ok(async {
                let live = ipam.live_handles_from_store().await?;
                let users = ipam.address_users_from_store().await?;
                ipam.check_with_users(&live, &users).await
            }
            .await
            .map_err(|e| e.to_string()))
        });
        report.unwrap_or_else(|e| panic!("ipam check: {e}"))
    }

    /// The etcd member behind an etcd store.
    ///
    /// # Panics
    /// On the embedded store.
    pub fn etcd(&mut self) -> &mut Etcd {
        match &mut self.backend {
            Backend::Etcd { etcd, .. } => etcd,
            _ => panic!("the store is not a single etcd"),
        }
    }

    /// etcd's log (empty for the embedded store), for failure messages.
    pub fn log(&self) -> String {
        match &self.backend {
            Backend::Embedded { .. } => String::new(),
            Backend::Etcd { etcd, .. } => etcd.log(),
            Backend::EtcdCluster { cluster, .. } => (0..cluster.len())
                .map(|i| cluster.log(i))
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("brindle-node-e2e")
        .tempdir()
        .unwrap()
}

/// A running `brindle-node`.
pub struct NodeDaemon {
    pub name: String,
    socket: PathBuf,
    args: Vec<String>,
    /// Extra environment (calico-node's variables), kept across restarts.
    env: Vec<(String, String)>,
    process: Option<Process>,
    log: PathBuf,
}

impl NodeDaemon {
    /// [`NodeDaemon::start`] with calico-node environment variables.
    pub fn start_env(store: &Store, host: &Host, name: &str, env: &[(&str, &str)]) -> NodeDaemon {
        let mut d = Self::prepared(store, host, name, true, &[]);
        d.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        d.restart(host);
        d
    }

    pub fn start(store: &Store, host: &Host, name: &str) -> NodeDaemon {
        Self::start_with(store, host, name, true, &[])
    }

    /// `with_ip: false` leaves the address to autodetection (the interface
    /// of the default route).
    pub fn start_with(
        store: &Store,
        host: &Host,
        name: &str,
        with_ip: bool,
        extra: &[&str],
    ) -> NodeDaemon {
        let mut d = Self::prepared(store, host, name, with_ip, extra);
        d.restart(host);
        d
    }

    /// The daemon's command line, not started yet.
    fn prepared(
        store: &Store,
        host: &Host,
        name: &str,
        with_ip: bool,
        extra: &[&str],
    ) -> NodeDaemon {
        let socket = store.dir.path().join(format!("{name}.sock"));
        let log = store.dir.path().join(format!("{name}.log"));
        let mut args: Vec<String> = vec![
            NODE_BIN.to_owned(),
            "--datastore".into(),
            store.url.clone(),
            "--node-name".into(),
            name.into(),
            "--status-socket".into(),
            socket.display().to_string(),
            "--startup-grace-seconds".into(),
            "20".into(),
        ];
        if with_ip {
            args.extend(["--ip".into(), format!("{}/24", host.ipv4)]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        NodeDaemon {
            name: name.into(),
            socket,
            args,
            env: Vec::new(),
            process: None,
            log,
        }
    }

    pub fn restart(&mut self, host: &Host) {
        let mut command = host.ns.command(&self.args[0]);
        command.args(&self.args[1..]);
        // Benchmarks of many nodes turn the debug logs down.
        let log = std::env::var("BRINDLE_BENCH_NODE_LOG")
            .unwrap_or_else(|_| "info,brindle_agent=debug,brindle_datastore=debug".to_owned());
        command.env("RUST_LOG", log);
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        self.process = Some(
            Process::spawn(format!("brindle-node {}", self.name), command, &self.log).unwrap(),
        );
    }

    /// The running daemon's process id.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Process::pid)
    }

    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop();
        }
    }

    pub fn status(&self) -> Option<StatusReport> {
        let mut stream = UnixStream::connect(&self.socket).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the status socket shows `count` peers, all Established.
    pub fn wait_established(&self, count: usize) -> StatusReport {
        let report = poll_until(WAIT, Duration::from_millis(250), || {
            Ok(self
                .status()
                .filter(|r| r.peers.len() == count && r.peers.iter().all(|p| p.established)))
        })
        .unwrap();
        report.unwrap_or_else(|| {
            panic!(
                "{}: peers not established: {:?}\n{}",
                self.name,
                self.status(),
                tail(&self.log())
            )
        })
    }
}

pub fn tail(text: &str) -> String {
    let mut start = text.len().saturating_sub(6000);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_owned()
}

/// A workload: its namespace and addresses.
pub struct Workload {
    pub id: String,
    pub ns: Netns,
    pub ip: Ipv4Addr,
    /// Its IPv6 address, when an IPv6 pool gave it one.
    pub ip6: Option<Ipv6Addr>,
    pub node: String,
    pub host_ifname: String,
}

/// The CNI plugin directory: `brindle-cni` and its IPAM name `brindle-ipam`.
pub fn plugin_dir(store: &Store) -> PathBuf {
    let bin = store.dir.path().join("bin");
    if !bin.exists() {
        std::fs::create_dir(&bin).unwrap();
        std::fs::copy(CNI_BIN, bin.join("brindle-cni")).unwrap();
        std::os::unix::fs::symlink(bin.join("brindle-cni"), bin.join("brindle-ipam")).unwrap();
    }
    bin
}

/// Runs `brindle-cni` in `host`'s namespace exactly as a runtime does (env,
/// netconf on stdin, `CNI_PATH`); returns the result JSON.
pub fn cni(
    store: &Store,
    host: &Host,
    node: &str,
    command: &str,
    container: &str,
    netns: &Path,
) -> serde_json::Value {
    cni_with(
        store,
        host,
        node,
        command,
        container,
        netns,
        &serde_json::json!({}),
    )
}

/// [`cni`] with extra fields merged into the netconf's `ipam` section
/// (`ipv4_pools`, `assign_ipv6`…).
pub fn cni_with(
    store: &Store,
    host: &Host,
    node: &str,
    command: &str,
    container: &str,
    netns: &Path,
    ipam_extra: &serde_json::Value,
) -> serde_json::Value {
    let bin = plugin_dir(store);
    let mut conf = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "brindle-e2e",
        "type": "brindle-cni",
        "datastore": store.url,
        "nodename": node,
        // The profile every endpoint of this network gets.
        "network": "allow-all",
        "mtu": 1400,
        "ipam": {"type": "brindle-ipam"}
    });
    if let Some(extra) = ipam_extra.as_object() {
        for (key, value) in extra {
            conf["ipam"][key] = value.clone();
        }
    }
    let netns = netns.display().to_string();
    let out = run_cni_plugin(
        &host.ns,
        &bin.join("brindle-cni"),
        &[
            ("CNI_PATH", &bin.display().to_string()),
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", container),
            ("CNI_NETNS", &netns),
            ("CNI_IFNAME", "eth0"),
        ],
        &conf,
    );
    assert!(
        out.status.success(),
        "brindle-cni {command}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// Runs CNI plugin `binary` in `ns` as a runtime does: a clean
/// environment (`PATH` and `vars`), the network configuration on stdin.
pub fn run_cni_plugin(
    ns: &Netns,
    binary: &Path,
    vars: &[(&str, &str)],
    conf: &serde_json::Value,
) -> std::process::Output {
    let mut child = ns
        .command(&binary.display().to_string())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(vars.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// A workload made by `brindle-cni ADD` (address from IPAM, veth, /32
/// route, WorkloadEndpoint).
pub fn add_workload(store: &Store, host: &Host, node: &str, id: &str) -> Workload {
    add_workload_with(store, host, node, id, &serde_json::json!({}))
}

/// [`add_workload`] with extra `ipam` netconf fields (see [`cni_with`]).
pub fn add_workload_with(
    store: &Store,
    host: &Host,
    node: &str,
    id: &str,
    ipam_extra: &serde_json::Value,
) -> Workload {
    let ns = Netns::new("w").unwrap();
    let container = format!("{id}-{}", std::process::id());
    let result = cni_with(
        store,
        host,
        node,
        "ADD",
        &container,
        &named_netns_path(ns.name()),
        ipam_extra,
    );
    let addresses: Vec<IpAddr> = result["ips"]
        .as_array()
        .expect("ips")
        .iter()
        .filter_map(|ip| ip["address"].as_str()?.split('/').next()?.parse().ok())
        .collect();
    let ip = addresses
        .iter()
        .find_map(|a| match a {
            IpAddr::V4(v4) => Some(*v4),
            IpAddr::V6(_) => None,
        })
        .expect("an IPv4 address");
    let ip6 = addresses.iter().find_map(|a| match a {
        IpAddr::V6(v6) => Some(*v6),
        IpAddr::V4(_) => None,
    });
    let host_ifname = result["interfaces"]
        .as_array()
        .and_then(|list| list.iter().find(|i| i.get("sandbox").is_none()))
        .and_then(|i| i["name"].as_str())
        .expect("a host interface")
        .to_owned();
    Workload {
        id: container,
        ns,
        ip,
        ip6,
        node: node.into(),
        host_ifname,
    }
}

/// `brindle-cni DEL`: veth gone, endpoint deleted, address released.
pub fn delete_workload(store: &Store, host: &Host, w: &Workload) {
    cni(
        store,
        host,
        &w.node,
        "DEL",
        &w.id,
        &named_netns_path(w.ns.name()),
    );
}

/// `ip route show exact <prefix>` (either family, by the prefix).
pub fn route_of(ns: &Netns, prefix: &str) -> String {
    let family = if prefix.contains(':') { "-6" } else { "-4" };
    ns.ip(&[family, "route", "show", "exact", prefix])
        .unwrap_or_default()
}

pub fn wait_route(ns: &Netns, prefix: &str, want: impl Fn(&str) -> bool, what: &str) -> String {
    let got = poll_until(WAIT, Duration::from_millis(200), || {
        let r = route_of(ns, prefix);
        Ok(want(&r).then_some(r))
    })
    .unwrap();
    got.unwrap_or_else(|| {
        let family = if prefix.contains(':') { "-6" } else { "-4" };
        panic!(
            "{what}: route {prefix} in {} is {:?}; table:\n{}",
            ns.name(),
            route_of(ns, prefix),
            ns.ip(&[family, "route"]).unwrap_or_default()
        )
    })
}

pub fn block_of(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("{}.{}.{}.{}/26", o[0], o[1], o[2], o[3] & 0xc0)
}

/// Whether a 64 KiB iperf3 transfer from `from` to `ip` (served in `to`)
/// completes.
pub fn tcp_works(from: &Netns, to: &Netns, ip: IpAddr) -> bool {
    let server = to
        .command("iperf3")
        .args(["-s", "-1", "-B", &ip.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let Ok(mut server) = server else { return false };
    let family = if ip.is_ipv4() { "-4" } else { "-6" };
    let ok = poll_until(Duration::from_secs(10), Duration::from_millis(200), || {
        let out = from
            .exec(&["iperf3", "-c", &ip.to_string(), "-n", "64K", family])
            .unwrap();
        Ok(out.status.success().then_some(()))
    })
    .unwrap()
    .is_some();
    let _ = server.kill();
    let _ = server.wait();
    ok
}

/// Connects over TCP from `client` to `server_ip` (a listener this call
/// opens inside `server`) and returns the source address the server saw
/// for the connection; `None` if no connection arrived within a few
/// seconds. Each call is a new connection (new source port, new conntrack
/// entry), so it shows the NAT decision as of now.
pub fn tcp_source_seen(client: &Netns, server: &Netns, server_ip: IpAddr) -> Option<IpAddr> {
    use std::net::{SocketAddr, TcpListener, TcpStream};
    const PORT: u16 = 7777;
    let deadline = Duration::from_secs(8);
    let address = SocketAddr::new(server_ip, PORT);
    let (bound_tx, bound_rx) = std::sync::mpsc::channel();
    // Set when the client gave up: nothing will arrive, stop listening.
    let gave_up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let server_path = named_netns_path(server.name());
    let stop = gave_up.clone();
    let accepting = std::thread::spawn(move || {
        run_in_netns(&server_path, move || -> Option<IpAddr> {
            let listener = TcpListener::bind(address).unwrap();
            listener.set_nonblocking(true).unwrap();
            bound_tx.send(()).unwrap();
            let started = std::time::Instant::now();
            while started.elapsed() < deadline && !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((_, peer)) => return Some(peer.ip()),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => panic!("accept on {address}: {e}"),
                }
            }
            None
        })
        .unwrap()
    });
    bound_rx.recv().unwrap();
    let client_path = named_netns_path(client.name());
    let connected = run_in_netns(&client_path, move || {
        TcpStream::connect_timeout(&address, Duration::from_secs(5)).is_ok()
    })
    .unwrap();
    if !connected {
        gave_up.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let seen = accepting.join().unwrap();
    seen.filter(|_| connected)
}

/// Pings `ip` from `from` until it answers; on failure panics with every
/// host's routes and every daemon's log tail.
pub fn ping_or_dump(from: &Netns, ip: impl Into<IpAddr>, nodes: &[&NodeDaemon], hosts: &[&Host]) {
    let ip = ip.into();
    if from.wait_ping(ip, WAIT).is_ok() {
        return;
    }
    let family = if ip.is_ipv4() { "-4" } else { "-6" };
    let mut dump = String::new();
    for h in hosts {
        dump += &format!(
            "--- {} routes:\n{}",
            h.ns.name(),
            h.ns.ip(&[family, "route"]).unwrap_or_default()
        );
    }
    for n in nodes {
        dump += &format!("--- {} log:\n{}", n.name, tail(&n.log()));
    }
    panic!("ping {ip} from {} failed\n{dump}", from.name());
}

/// Runs `ping` from `from` to `ip` in the background while `during` runs,
/// then asserts no reply was lost.
pub fn ping_loss_free_during(from: &Netns, ip: impl Into<IpAddr>, during: impl FnOnce()) {
    ping_loss_free_for(from, ip, 100, during);
}

/// [`ping_loss_free_during`] with `count` pings (one every 0.1 s): `during`
/// must be over before they are.
pub fn ping_loss_free_for(
    from: &Netns,
    ip: impl Into<IpAddr>,
    count: usize,
    during: impl FnOnce(),
) {
    let ip = ip.into();
    let count = count.to_string();
    let mut ping = from
        .command("ping")
        .args([
            "-n",
            "-q",
            "-i",
            "0.1",
            "-c",
            &count,
            "-W",
            "1",
            &ip.to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    during();
    let status = ping.wait().unwrap();
    let mut text = String::new();
    ping.stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert!(
        text.contains(" 0% packet loss") && status.success(),
        "ping {ip}: {text}"
    );
}

/// Drops every packet between `from` and etcd's client port, both ways
/// (etcd's pushes on a running watch too), inside the namespace etcd runs
/// in; lifted on drop.
pub struct EtcdCut<'a> {
    ns: &'a brindle_testbed::Netns,
    from: String,
}

impl<'a> EtcdCut<'a> {
    pub fn new(ns: &'a brindle_testbed::Netns, from: Ipv4Addr) -> Self {
        let cut = EtcdCut {
            ns,
            from: from.to_string(),
        };
        for rule in cut.rules("-I") {
            ns.run(&rule).unwrap();
        }
        cut
    }

    fn rules(&self, op: &str) -> [Vec<String>; 2] {
        let rule = |chain: &str, host: &str, port: &str| {
            [
                "iptables", "-w", op, chain, host, &self.from, "-p", "tcp", port, "2379", "-j",
                "DROP",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        };
        [
            rule("INPUT", "-s", "--dport"),
            rule("OUTPUT", "-d", "--sport"),
        ]
    }
}

impl Drop for EtcdCut<'_> {
    fn drop(&mut self) {
        for rule in self.rules("-D") {
            let _ = self.ns.run(&rule);
        }
    }
}

/// What a namespace's profile is for Calico's CNI: allow everything.
pub const ALLOW_ALL_PROFILE: &str = "apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata:\n  name: allow-all\nspec:\n  ingress:\n  - action: Allow\n  egress:\n  - action: Allow\n";

pub fn pool_yaml(cidr: &str, vxlan: &str) -> String {
    pool_yaml_named("pool", cidr, vxlan, true)
}

pub fn pool_yaml_named(name: &str, cidr: &str, vxlan: &str, nat_outgoing: bool) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: {name}\nspec:\n  cidr: {cidr}\n  vxlanMode: {vxlan}\n  ipipMode: Never\n  natOutgoing: {nat_outgoing}\n"
    )
}

pub fn node_yaml(name: &str, subnet: usize) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: {name}\n  labels:\n    subnet: \"s{subnet}\"\nspec: {{}}\n"
    )
}

pub fn tor_peer_yaml(subnet: usize, peer_ip: Ipv4Addr) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: tor-s{subnet}\nspec:\n  nodeSelector: subnet == 's{subnet}'\n  peerIP: {peer_ip}\n  asNumber: 65100\n"
    )
}
