//! What each remote-plugin call does to Brindle's state and the kernel.
//!
//! - IPAM (`IpamDriver.*`): a network's pool is a Brindle IPPool: without
//!   `--subnet` the node's default pools (pool id `BrindlePoolIPv4/6`),
//!   with one the IPPool of that CIDR, created if there is none (refused
//!   when it overlaps another: the store's pool guard). Every reply carries
//!   the dummy gateway `0.0.0.0/0` (`::/0`), so dockerd never asks Brindle
//!   for a gateway address: the container's gateway is 169.254.1.1, as
//!   with brindle-cni. Each address is allocated on this node's blocks
//!   under a handle of its own, `libnetwork.<id>` (dockerd asks for each
//!   address separately); `CreateEndpoint` moves a dual-stack endpoint's
//!   second address under its first one's handle and records `<id>` as the
//!   endpoint's `containerID` (what ties an allocation to a live endpoint
//!   in `brindlectl ipam check`), and a release frees an address only if a
//!   handle of this driver still holds it.
//! - Network (`NetworkDriver.*`): a docker network's *name* is its Brindle
//!   network (the endpoint's profile), so equally named networks on
//!   different hosts are one; `CreateEndpoint` writes the
//!   WorkloadEndpoint, `Join` creates the veth (host end wired and routed
//!   as brindle-cni does, `workload::add_handed_over_veth`) and hands the
//!   other end to dockerd, `Leave` and `DeleteEndpoint` undo them.
//!   Container labels `org.projectcalico.label.<key>=<value>` become
//!   endpoint labels once dockerd lists the container.
//!
//! Every state lives in the datastore and the kernel (and the network
//! names in `--state-dir`, see `names`): a restarted brindle-docker carries
//! on with the endpoints dockerd has, and removes, two passes in a row
//! apart, the endpoints of its node dockerd no longer has (containers
//! removed while it was down).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use brindle_datastore::ipam::{AutoAssignArgs, Ipam, ReleaseOptions};
use brindle_datastore::resources::ResourceStore;
use brindle_datastore::Datastore;
use brindle_model::endpoint::WorkloadEndpointSpec;
use brindle_model::ipam::AllowedUse;
use brindle_model::ipam::IPPoolSpec;
use brindle_model::resource::Object;
use brindle_model::resource::{Kind, Resource, WorkloadEndpoint};
use ipnet::IpNet;
use serde_json::{json, Value};
use tracing::{debug, info, warn};

use super::engine::Engine;
use super::names::NetworkNames;
use super::protocol::*;
use crate::cni::spec::endpoint_name;
use crate::netlink::Netlink;
use crate::workload::{
    add_handed_over_veth, del_workload, host_veth_name, link_local_from_mac, GATEWAY_V4,
    HOST_SIDE_MAC,
};

/// The address spaces Brindle reports (any name would do: there is one).
pub const LOCAL_ADDRESS_SPACE: &str = "BrindleLocal";
pub const GLOBAL_ADDRESS_SPACE: &str = "BrindleGlobal";
/// Pool ids of a network created without `--subnet`: the default pools.
pub const POOL_V4: &str = "BrindlePoolIPv4";
pub const POOL_V6: &str = "BrindlePoolIPv6";
/// The gateway every pool reply carries, so dockerd asks for none.
const NO_GATEWAY_V4: &str = "0.0.0.0/0";
const NO_GATEWAY_V6: &str = "::/0";
/// The endpoints' orchestrator (Calico's Docker driver's).
pub const ORCHESTRATOR: &str = "libnetwork";
/// Docker endpoints' namespace (Docker has none; WorkloadEndpoints do).
pub const NAMESPACE: &str = "default";
/// Container labels with this prefix become endpoint labels.
pub const LABEL_PREFIX: &str = "org.projectcalico.label.";

/// A new handle for one address, `libnetwork.<16 hex digits>`.
fn new_handle() -> String {
    format!("{ORCHESTRATOR}.{}", random_id())
}

/// What the host veth is named from.
fn veth_id(endpoint: &str) -> String {
    format!("{ORCHESTRATOR}.{endpoint}")
}

/// A failed call: its text goes back to dockerd, which shows it to the user.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DriverError(pub String);

fn fail(text: impl Into<String>) -> DriverError {
    DriverError(text.into())
}

/// The driver of one node.
pub struct Driver {
    ds: Datastore,
    node: String,
    plugin: String,
    nl: Netlink,
    engine: Engine,
    names: NetworkNames,
    mtu: u32,
    /// How often endpoints dockerd no longer has are looked for.
    stale_check: Duration,
    /// Endpoints this process created, and when: dockerd lists a container
    /// on its network only once it runs, which under load takes a while.
    created: std::sync::Mutex<HashMap<String, Instant>>,
}

/// An endpoint this process created is not taken for stale before this.
const STALE_GRACE: Duration = Duration::from_secs(60);

/// The driver's settings (brindle-docker's flags).
#[derive(Debug, Clone)]
pub struct Settings {
    /// This node's name, as brindle-node's.
    pub node: String,
    /// The network and IPAM driver's name.
    pub plugin: String,
    /// MTU of the containers' veths.
    pub mtu: u32,
    /// How often endpoints dockerd no longer has are looked for.
    pub stale_check: Duration,
}

impl Driver {
    /// The driver, and its background work: learning network names, then
    /// collecting stale endpoints.
    pub fn new(
        ds: Datastore,
        nl: Netlink,
        engine: Engine,
        names: NetworkNames,
        settings: Settings,
    ) -> Arc<Self> {
        let driver = Arc::new(Self {
            ds,
            node: settings.node,
            plugin: settings.plugin,
            nl,
            engine,
            names,
            mtu: settings.mtu,
            stale_check: settings.stale_check,
            created: Default::default(),
        });
        let me = driver.clone();
        tokio::spawn(async move {
            me.learn_all_names().await;
            me.collect_stale_endpoints().await;
        });
        driver
    }

    /// Removes, every `stale_check`, the endpoints of this node that dockerd
    /// no longer has: containers removed while this driver was down (dockerd
    /// gives up calling `DeleteEndpoint` and `ReleaseAddress` then), or
    /// anything else that kept dockerd from calling. An endpoint must be
    /// missing in two passes in a row, so one being created during a pass
    /// (written before dockerd lists it) is never taken.
    async fn collect_stale_endpoints(&self) {
        let mut suspects = HashSet::new();
        loop {
            match self.stale_pass(&suspects).await {
                Ok(missing) => suspects = missing,
                Err(error) => {
                    debug!(%error, "looking for stale endpoints");
                    suspects.clear();
                }
            }
            tokio::time::sleep(self.stale_check).await;
        }
    }

    /// Whether this process created `endpoint` less than [`STALE_GRACE`]
    /// ago (forgetting older ones).
    fn is_recent(&self, endpoint: &str) -> bool {
        let mut created = self.created.lock().unwrap_or_else(|e| e.into_inner());
        created.retain(|_, at| at.elapsed() < STALE_GRACE);
        created.contains_key(endpoint)
    }

    /// One pass: removes the endpoints missing now that were already
    /// missing in the last pass; returns those missing for the first time.
    async fn stale_pass(&self, suspects: &HashSet<String>) -> Result<HashSet<String>, String> {
        let networks = self
            .engine
            .networks_of_driver(&self.plugin)
            .await
            .map_err(|e| e.to_string())?;
        let mut live = HashSet::new();
        for id in networks.keys() {
            live.extend(
                self.engine
                    .endpoints_of(id)
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        let weps: Vec<WorkloadEndpoint> = ResourceStore::new(self.ds.clone())
            .list(Kind::WorkloadEndpoint, Some(NAMESPACE))
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter_map(|r| match r {
                Resource::WorkloadEndpoint(w) => Some(w),
                _ => None,
            })
            .collect();
        // Addresses another endpoint uses are never released here.
        let mut users: BTreeMap<String, usize> = BTreeMap::new();
        for w in &weps {
            for net in &w.spec.ip_networks {
                *users.entry(net.clone()).or_default() += 1;
            }
        }
        let mut missing = HashSet::new();
        for w in weps {
            let ours = w.spec.orchestrator.as_deref() == Some(ORCHESTRATOR)
                && w.spec.node.as_deref() == Some(self.node.as_str());
            let Some(endpoint) = w.spec.workload.clone().filter(|_| ours) else {
                continue;
            };
            if live.contains(&endpoint) || self.is_recent(&endpoint) {
                continue;
            }
            if !suspects.contains(&endpoint) {
                missing.insert(endpoint);
                continue;
            }
            let _ = del_workload(&self.nl, &veth_id(&endpoint)).await;
            for net in &w.spec.ip_networks {
                let shared = users.get(net).is_some_and(|n| *n > 1);
                let ip = net.parse::<IpNet>().map(|n| n.addr());
                if let (false, Ok(ip)) = (shared, ip) {
                    if let Err(error) = self.release_ip(ip).await {
                        warn!(%endpoint, %ip, %error, "releasing a stale endpoint's address");
                    }
                }
            }
            if let Err(error) = self.delete_endpoint_record(&endpoint).await {
                warn!(%endpoint, %error, "removing a stale endpoint");
                continue;
            }
            info!(%endpoint, addresses = ?w.spec.ip_networks, "stale endpoint removed (dockerd no longer has it)");
        }
        Ok(missing)
    }

    /// Learns the names of this driver's networks from dockerd once its API
    /// answers (it may start after us), forgetting networks removed while
    /// we were down.
    async fn learn_all_names(&self) {
        loop {
            match self.engine.networks_of_driver(&self.plugin).await {
                Ok(current) => {
                    let count = current.len();
                    match self.names.replace_all(current) {
                        Ok(()) => info!(networks = count, "network names read from dockerd"),
                        Err(error) => warn!(%error, "recording network names"),
                    }
                    return;
                }
                Err(error) => debug!(%error, "listing dockerd's networks"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Learns a new network's name once dockerd lists it (it does right
    /// after `CreateNetwork` returns).
    async fn learn_name(&self, id: String) {
        for _ in 0..60 {
            match self.network_name(&id).await {
                Ok(_) => return,
                Err(error) => debug!(%error, "asking dockerd for the network's name"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        warn!(network = %id, "dockerd never listed the new network; its name is read at its first endpoint");
    }

    /// A network's name: remembered, else from dockerd (see `names`).
    async fn network_name(&self, id: &str) -> Result<String, DriverError> {
        if let Some(name) = self.names.get(id) {
            return Ok(name);
        }
        let name = self
            .engine
            .network_name(id)
            .await
            .map_err(|e| fail(format!("reading the network's name: {e}")))?;
        if let Err(error) = self.names.insert(id, &name) {
            warn!(%error, network = %name, "recording the network's name");
        }
        Ok(name)
    }

    /// Answers one call (`method` is the path without the `/`): the
    /// reply's JSON, `{"Error": …}` (IPAM) or `{"Err": …}` for a failure.
    pub async fn handle(self: &Arc<Self>, method: &str, body: &[u8]) -> Value {
        let body = if body.iter().all(u8::is_ascii_whitespace) {
            &b"{}"[..]
        } else {
            body
        };
        let result = self.dispatch(method, body).await;
        match result {
            Ok(v) => v,
            Err(e) => {
                warn!(method, error = %e, "call refused");
                error_reply(method, &e.0)
            }
        }
    }

    async fn dispatch(self: &Arc<Self>, method: &str, body: &[u8]) -> Result<Value, DriverError> {
        fn parse<T: serde::de::DeserializeOwned>(
            method: &str,
            body: &[u8],
        ) -> Result<T, DriverError> {
            serde_json::from_slice(body).map_err(|e| fail(format!("{method}: bad request: {e}")))
        }
        debug!(method, body = %String::from_utf8_lossy(body), "call");
        let reply = match method {
            "Plugin.Activate" => to_json(&Activated {
                implements: vec!["NetworkDriver".into(), "IpamDriver".into()],
            }),
            "NetworkDriver.GetCapabilities" => to_json(&NetworkCapabilities {
                scope: "local".into(),
                connectivity_scope: "global".into(),
            }),
            "IpamDriver.GetCapabilities" => to_json(&IpamCapabilities {
                requires_mac_address: false,
            }),
            "IpamDriver.GetDefaultAddressSpaces" => to_json(&AddressSpaces {
                local_default_address_space: LOCAL_ADDRESS_SPACE.into(),
                global_default_address_space: GLOBAL_ADDRESS_SPACE.into(),
            }),
            "IpamDriver.RequestPool" => to_json(&self.request_pool(parse(method, body)?).await?),
            "IpamDriver.ReleasePool" => json!({}),
            "IpamDriver.RequestAddress" => {
                to_json(&self.request_address(parse(method, body)?).await?)
            }
            "IpamDriver.ReleaseAddress" => {
                self.release_address(parse(method, body)?).await?;
                json!({})
            }
            "NetworkDriver.CreateNetwork" => {
                let req: CreateNetwork = parse(method, body)?;
                let id = req.network_id.clone();
                self.create_network(req)?;
                let me = self.clone();
                tokio::spawn(async move { me.learn_name(id).await });
                json!({})
            }
            "NetworkDriver.DeleteNetwork" => {
                let req: NetworkRef = parse(method, body)?;
                if let Err(error) = self.names.remove(&req.network_id) {
                    warn!(%error, "forgetting the network's name");
                }
                json!({})
            }
            "NetworkDriver.DiscoverNew"
            | "NetworkDriver.DiscoverDelete"
            | "NetworkDriver.ProgramExternalConnectivity"
            | "NetworkDriver.RevokeExternalConnectivity" => json!({}),
            "NetworkDriver.CreateEndpoint" => {
                self.create_endpoint(parse(method, body)?).await?;
                json!({})
            }
            "NetworkDriver.EndpointOperInfo" => json!({ "Value": {} }),
            "NetworkDriver.Join" => to_json(&self.join(parse(method, body)?).await?),
            "NetworkDriver.Leave" => {
                let r: EndpointRef = parse(method, body)?;
                del_workload(&self.nl, &veth_id(&r.endpoint_id))
                    .await
                    .map_err(|e| fail(format!("removing the veth: {e}")))?;
                json!({})
            }
            "NetworkDriver.DeleteEndpoint" => {
                self.delete_endpoint(parse(method, body)?).await?;
                json!({})
            }
            other => {
                return Err(fail(format!(
                    "{other} is not implemented by {}",
                    self.plugin
                )))
            }
        };
        Ok(reply)
    }

    // ----- IPAM ------------------------------------------------------------

    async fn request_pool(&self, req: RequestPool) -> Result<PoolReply, DriverError> {
        if !req.sub_pool.is_empty() {
            return Err(fail(format!(
                "--ip-range {} is not supported: addresses come from the whole IPPool",
                req.sub_pool
            )));
        }
        if let Some(options) = req.options.as_ref().filter(|o| !o.is_empty()) {
            let names: Vec<&str> = options.keys().map(String::as_str).collect();
            return Err(fail(format!(
                "IPAM options are not supported (--ipam-opt {})",
                names.join(", ")
            )));
        }
        let gateway = if req.v6 { NO_GATEWAY_V6 } else { NO_GATEWAY_V4 };
        let data = BTreeMap::from([("com.docker.network.gateway".to_owned(), gateway.to_owned())]);
        if req.pool.is_empty() {
            let (id, pool) = if req.v6 {
                (POOL_V6, "::/0")
            } else {
                (POOL_V4, "0.0.0.0/0")
            };
            return Ok(PoolReply {
                pool_id: id.into(),
                pool: pool.into(),
                data,
            });
        }
        let cidr: IpNet = req
            .pool
            .parse()
            .map_err(|_| fail(format!("--subnet {}: not a CIDR", req.pool)))?;
        if cidr.addr().is_ipv6() != req.v6 {
            return Err(fail(format!(
                "--subnet {cidr}: not an IPv{} CIDR",
                if req.v6 { 6 } else { 4 }
            )));
        }
        if cidr != cidr.trunc() {
            return Err(fail(format!(
                "--subnet {cidr}: host bits set (did you mean {}?)",
                cidr.trunc()
            )));
        }
        self.ensure_pool(cidr).await?;
        Ok(PoolReply {
            pool_id: cidr.to_string(),
            pool: cidr.to_string(),
            data,
        })
    }

    /// The IPPool of `cidr`, created (`docker-<cidr>`) when there is none.
    async fn ensure_pool(&self, cidr: IpNet) -> Result<(), DriverError> {
        let store = ResourceStore::new(self.ds.clone());
        let pools = store
            .list(Kind::IPPool, None)
            .await
            .map_err(|e| fail(format!("reading IPPools: {e}")))?;
        let exists = pools.iter().any(|p| match p {
            Resource::IPPool(p) => p.spec.net() == Some(cidr),
            _ => false,
        });
        if exists {
            return Ok(());
        }
        let name = format!("docker-{}", cidr.to_string().replace(['.', ':', '/'], "-"));
        let spec = IPPoolSpec {
            cidr: cidr.to_string(),
            ..Default::default()
        };
        let pool = brindle_datastore::ipam::pool_resource(&name, spec);
        match store.create(pool).await {
            Ok(_) => {
                info!(%cidr, pool = %name, "IPPool created for a docker network");
                Ok(())
            }
            Err(e) => Err(fail(format!(
                "--subnet {cidr}: cannot create IPPool {name}: {}",
                e.to_string().replace('\n', "; ")
            ))),
        }
    }

    async fn request_address(&self, req: RequestAddress) -> Result<AddressReply, DriverError> {
        let options = req.options.unwrap_or_default();
        if options.get("RequestAddressType").map(String::as_str)
            == Some("com.docker.network.gateway")
        {
            return Err(fail(format!(
                "{} hands out no gateway address: create the network with --ipam-driver {}",
                self.plugin, self.plugin
            )));
        }
        let ipam = Ipam::new(self.ds.clone());
        let pool: Option<IpNet> = match req.pool_id.as_str() {
            POOL_V4 | POOL_V6 => None,
            id => Some(
                id.parse()
                    .map_err(|_| fail(format!("unknown pool id {id}")))?,
            ),
        };
        let handle = new_handle();
        let ip = if req.address.is_empty() {
            let v6 = req.pool_id == POOL_V6 || pool.is_some_and(|p| p.addr().is_ipv6());
            let args = AutoAssignArgs {
                num4: usize::from(!v6),
                num6: usize::from(v6),
                handle: handle.clone(),
                attrs: BTreeMap::new(),
                node: self.node.clone(),
                pools: pool.into_iter().collect(),
                use_: AllowedUse::Workload,
            };
            let assigned = ipam
                .auto_assign(&args)
                .await
                .map_err(|e| fail(format!("no address: {e}")))?;
            let Some(net) = assigned.ipv4.first().or(assigned.ipv6.first()).copied() else {
                return Err(fail(format!(
                    "no free address in {}",
                    pool.map_or("the default pools".to_owned(), |p| p.to_string())
                )));
            };
            net.addr()
        } else {
            let ip: IpAddr = req
                .address
                .parse()
                .map_err(|_| fail(format!("--ip {}: not an address", req.address)))?;
            if let Some(pool) = pool.filter(|p| !p.contains(&ip)) {
                return Err(fail(format!(
                    "--ip {ip} is outside the network's subnet {pool}"
                )));
            }
            ipam.assign_ip(ip, &handle, &self.node, BTreeMap::new())
                .await
                .map_err(|e| fail(format!("--ip {ip}: {e}")))?;
            ip
        };
        info!(%ip, %handle, pool = %req.pool_id, "address assigned");
        Ok(AddressReply {
            address: IpNet::from(ip).to_string(),
            data: BTreeMap::new(),
        })
    }

    async fn release_address(&self, req: ReleaseAddress) -> Result<(), DriverError> {
        let Ok(ip) = req.address.parse::<IpAddr>() else {
            return Err(fail(format!("release of {}: not an address", req.address)));
        };
        self.release_ip(ip).await
    }

    /// Releases `ip` if this driver's handle holds it.
    async fn release_ip(&self, ip: IpAddr) -> Result<(), DriverError> {
        let ipam = Ipam::new(self.ds.clone());
        let holder = ipam
            .holder_of(ip)
            .await
            .map_err(|e| fail(format!("releasing {ip}: {e}")))?;
        // Only an address this driver handed out (a repeated release, or an
        // address since given to someone else, is left alone).
        let Some(handle) = holder.filter(|h| h.starts_with(&format!("{ORCHESTRATOR}."))) else {
            debug!(%ip, "release of an address this driver does not hold");
            return Ok(());
        };
        let outcome = ipam
            .release_ips(&[ReleaseOptions {
                ip,
                handle: Some(handle.clone()),
                sequence: None,
            }])
            .await
            .map_err(|e| fail(format!("releasing {ip}: {e}")))?;
        info!(%ip, %handle, ?outcome, "address released");
        Ok(())
    }

    // ----- network ---------------------------------------------------------

    fn create_network(&self, req: CreateNetwork) -> Result<(), DriverError> {
        for (key, value) in &req.options {
            let set = match value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Object(o) => !o.is_empty(),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            match key.as_str() {
                "com.docker.network.enable_ipv6" => {}
                "com.docker.network.generic" if set => {
                    let names: Vec<String> = value
                        .as_object()
                        .map(|o| o.keys().cloned().collect())
                        .unwrap_or_default();
                    return Err(fail(format!(
                        "driver options are not supported (-o {})",
                        names.join(", ")
                    )));
                }
                _ if set => {
                    let flag = key.strip_prefix("com.docker.network.").unwrap_or(key);
                    return Err(fail(format!(
                        "--{flag} is not supported by the {} driver",
                        self.plugin
                    )));
                }
                _ => {}
            }
        }
        for data in req.ipv4_data.iter().chain(&req.ipv6_data) {
            if data.gateway != NO_GATEWAY_V4
                && data.gateway != NO_GATEWAY_V6
                && !data.gateway.is_empty()
            {
                return Err(fail(format!(
                    "the {0} network driver needs the {0} IPAM driver (--ipam-driver {0}); got gateway {1}",
                    self.plugin, data.gateway
                )));
            }
        }
        info!(network = %req.network_id, "network created");
        Ok(())
    }

    fn endpoint_name(&self, endpoint: &str) -> String {
        endpoint_name(&self.node, ORCHESTRATOR, endpoint, "eth0")
    }

    async fn create_endpoint(self: &Arc<Self>, req: CreateEndpoint) -> Result<(), DriverError> {
        let interface = req.interface.unwrap_or_default();
        let mut addresses: Vec<IpNet> = Vec::new();
        for text in [&interface.address, &interface.address_ipv6] {
            if text.is_empty() {
                continue;
            }
            let net: IpNet = text
                .parse()
                .map_err(|_| fail(format!("endpoint address {text}: not a CIDR")))?;
            addresses.push(IpNet::from(net.addr()));
        }
        let Some(first) = addresses.first() else {
            return Err(fail(
                "the endpoint has no address (use --ipam-driver with this driver)",
            ));
        };
        let ipam = Ipam::new(self.ds.clone());
        let holder = ipam
            .holder_of(first.addr())
            .await
            .map_err(|e| fail(format!("reading the holder of {first}: {e}")))?;
        let Some(id) = holder
            .as_deref()
            .and_then(|h| h.strip_prefix(&format!("{ORCHESTRATOR}.")))
            .map(str::to_owned)
        else {
            return Err(fail(format!(
                "{first} was not handed out by the {} IPAM driver",
                self.plugin
            )));
        };
        // dockerd asked for each address separately (each got a handle of
        // its own); the endpoint keeps all of them under the first one, the
        // handle its containerID names, so `ipam check` ties every address
        // to the live endpoint.
        let handle = format!("{ORCHESTRATOR}.{id}");
        for other in &addresses[1..] {
            let held_by = ipam
                .holder_of(other.addr())
                .await
                .map_err(|e| fail(format!("reading the holder of {other}: {e}")))?;
            match held_by {
                Some(h) if h == handle => {}
                Some(h) if h.starts_with(&format!("{ORCHESTRATOR}.")) => {
                    ipam.transfer_ip(other.addr(), &h, &handle)
                        .await
                        .map_err(|e| fail(format!("keeping {other} with {first}: {e}")))?;
                }
                _ => {
                    return Err(fail(format!(
                        "{other} was not handed out by the {} IPAM driver",
                        self.plugin
                    )))
                }
            }
        }
        let network = self.network_name(&req.network_id).await?;
        let mut wep: WorkloadEndpoint = Object::named(&self.endpoint_name(&req.endpoint_id));
        wep.metadata.namespace = Some(NAMESPACE.into());
        wep.metadata.labels = BTreeMap::from([
            (
                "projectcalico.org/namespace".to_owned(),
                NAMESPACE.to_owned(),
            ),
            (
                "projectcalico.org/orchestrator".to_owned(),
                ORCHESTRATOR.to_owned(),
            ),
        ]);
        wep.spec = WorkloadEndpointSpec {
            orchestrator: Some(ORCHESTRATOR.into()),
            workload: Some(req.endpoint_id.clone()),
            node: Some(self.node.clone()),
            container_id: Some(id),
            endpoint: Some("eth0".into()),
            ip_networks: addresses.iter().map(ToString::to_string).collect(),
            profiles: vec![network.clone()],
            interface_name: Some(host_veth_name(&veth_id(&req.endpoint_id))),
            ..Default::default()
        };
        self.created
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(req.endpoint_id.clone(), Instant::now());
        ResourceStore::new(self.ds.clone())
            .apply(Resource::WorkloadEndpoint(wep))
            .await
            .map_err(|e| fail(format!("writing the endpoint: {e}")))?;
        info!(endpoint = %req.endpoint_id, %network, ?addresses, "endpoint created");
        Ok(())
    }

    async fn read_endpoint(&self, endpoint: &str) -> Result<Option<WorkloadEndpoint>, DriverError> {
        let found = ResourceStore::new(self.ds.clone())
            .get(
                Kind::WorkloadEndpoint,
                Some(NAMESPACE),
                &self.endpoint_name(endpoint),
            )
            .await
            .map_err(|e| fail(format!("reading the endpoint: {e}")))?;
        Ok(match found {
            Some(Resource::WorkloadEndpoint(w)) => Some(w),
            _ => None,
        })
    }

    async fn join(self: &Arc<Self>, req: Join) -> Result<JoinReply, DriverError> {
        let Some(wep) = self.read_endpoint(&req.endpoint_id).await? else {
            return Err(fail(format!(
                "endpoint {} is unknown (not created by this driver)",
                req.endpoint_id
            )));
        };
        let addresses: Vec<IpNet> = wep
            .spec
            .ip_networks
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect();
        let veth = add_handed_over_veth(&self.nl, &veth_id(&req.endpoint_id), &addresses, self.mtu)
            .await
            .map_err(|e| fail(format!("creating the veth: {e}")))?;
        let has_v4 = addresses.iter().any(|a| a.addr().is_ipv4());
        let has_v6 = addresses.iter().any(|a| a.addr().is_ipv6());
        let mut reply = JoinReply {
            interface_name: InterfaceName {
                src_name: veth.peer_ifname,
                dst_prefix: "eth".into(),
            },
            gateway: String::new(),
            gateway_ipv6: String::new(),
            static_routes: Vec::new(),
            disable_gateway_service: false,
        };
        if has_v4 {
            reply.gateway = GATEWAY_V4.to_string();
            reply.static_routes.push(StaticRoute {
                destination: format!("{GATEWAY_V4}/32"),
                route_type: 1,
                next_hop: String::new(),
            });
        }
        if has_v6 {
            let gw = link_local_from_mac(HOST_SIDE_MAC);
            reply.gateway_ipv6 = gw.to_string();
            reply.static_routes.push(StaticRoute {
                destination: format!("{gw}/128"),
                route_type: 1,
                next_hop: String::new(),
            });
        }
        info!(endpoint = %req.endpoint_id, host = %veth.host_ifname, "joined");
        let me = self.clone();
        tokio::spawn(async move { me.label_endpoint(req.network_id, req.endpoint_id).await });
        Ok(reply)
    }

    /// Copies the container's `org.projectcalico.label.*` labels onto its
    /// endpoint once dockerd lists the container on the network (it does
    /// shortly after `Join`).
    async fn label_endpoint(&self, network: String, endpoint: String) {
        let mut container = None;
        // Up to a minute: a restarting dockerd answers only once it has
        // restored every container.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while tokio::time::Instant::now() < deadline {
            match self.engine.container_of(&network, &endpoint).await {
                Ok(Some(id)) => {
                    container = Some(id);
                    break;
                }
                Ok(None) => {}
                Err(error) => debug!(%error, "asking dockerd for the endpoint's container"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let Some(container) = container else {
            warn!(%endpoint, "dockerd never listed the endpoint's container: no labels copied");
            return;
        };
        let labels = match self.engine.container(&container).await {
            Ok((_, labels)) => labels,
            Err(error) => {
                warn!(%endpoint, %error, "reading the container's labels");
                return;
            }
        };
        let wanted: BTreeMap<String, String> = labels
            .into_iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(LABEL_PREFIX)?.to_owned(), v)))
            .collect();
        if wanted.is_empty() {
            return;
        }
        let name = self.endpoint_name(&endpoint);
        let result = ResourceStore::new(self.ds.clone())
            .modify(
                Kind::WorkloadEndpoint,
                Some(NAMESPACE),
                &name,
                || Resource::WorkloadEndpoint(Object::named(&name)),
                |r| {
                    if let Resource::WorkloadEndpoint(w) = r {
                        for (k, v) in &wanted {
                            w.metadata.labels.insert(k.clone(), v.clone());
                        }
                    }
                },
            )
            .await;
        match result {
            Ok(_) => {
                info!(%endpoint, %container, labels = ?wanted, "container labels copied to the endpoint")
            }
            Err(error) => warn!(%endpoint, %error, "labelling the endpoint"),
        }
    }

    async fn delete_endpoint(&self, req: EndpointRef) -> Result<(), DriverError> {
        // Leave removed the veth already; a brindle-docker restarted in
        // between may not have seen it.
        let _ = del_workload(&self.nl, &veth_id(&req.endpoint_id)).await;
        self.delete_endpoint_record(&req.endpoint_id).await?;
        info!(endpoint = %req.endpoint_id, "endpoint deleted");
        Ok(())
    }

    async fn delete_endpoint_record(&self, endpoint: &str) -> Result<(), DriverError> {
        ResourceStore::new(self.ds.clone())
            .remove(
                Kind::WorkloadEndpoint,
                Some(NAMESPACE),
                &self.endpoint_name(endpoint),
            )
            .await
            .map_err(|e| fail(format!("removing the endpoint: {e}")))?;
        Ok(())
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or_else(|e| json!({ "Err": e.to_string() }))
}

/// 16 random hex digits.
fn random_id() -> String {
    let mut bytes = [0u8; 8];
    if getrandom_fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = (nanos as u64 ^ u64::from(std::process::id())).to_be_bytes();
    }
    hex::encode(bytes)
}

fn getrandom_fill(buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}
