//! The two CNI plugins' commands: `brindle-cni` (interfaces, routes,
//! WorkloadEndpoint) and `brindle-ipam` (addresses), one binary dispatching
//! on its name.
//!
//! Contract: [`run`] never panics on input; it returns what to print on
//! stdout (a result, nothing for DEL) or a spec [`CniError`]. ADD either
//! completes or undoes what it did (veth, endpoint, addresses) before
//! failing, and releases only the addresses that call allocated (a repeated
//! ADD of a running container must not free what the container holds). A
//! repeated ADD of a running container returns its existing result. ADD and
//! DEL hold a per-host lock (`ipam_lock_file`, as Calico's plugin does), so
//! concurrent calls for one container cannot both allocate. DEL and the IPAM
//! release are idempotent and succeed on a half-created workload, a missing
//! namespace or a second call. The main plugin must run in the host network
//! namespace.
//!
//! `brindle-ipam` and the IPAM step of ADD/DEL/CHECK (in process, or
//! delegated to another IPAM plugin) are in the sibling module `ipam`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use brindle_datastore::ipam::Ipam;
use brindle_datastore::resources::ResourceStore;
use brindle_datastore::Datastore;
use brindle_model::endpoint::WorkloadEndpointSpec;
use brindle_model::resource::{Kind, WorkloadEndpoint};
use brindle_model::{Object, Resource};
use ipnet::IpNet;
use serde_json::Value;
use tracing::{info, info_span, warn};

use super::errors::{internal, open_store, resource_error, store_error};
use super::identity::WorkloadIdentity;
use super::ipam::{ipam_step, release_allocated, run_ipam, to_value, version_answered_earlier};
use super::lock::{host_lock, LOCK_HELD_ENV};
use super::spec::{
    version_info, CniEnv, CniError, CniResult, Command, ErrorCode, Interface, IpConfig, NetConf,
    RouteConfig, CNI_VERSION,
};
use crate::netlink::Netlink;
use crate::route::BRINDLE_ROUTE_PROTOCOL;
use crate::workload::{
    add_workload, del_workload, host_veth_name, link_local_from_mac, WorkloadSpec, GATEWAY_V4,
    HOST_SIDE_MAC,
};

/// Which plugin this process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `brindle-cni`: the interface plugin.
    Main,
    /// `brindle-ipam`: the IPAM plugin `ipam.type` names.
    Ipam,
}

impl Role {
    /// From `argv[0]`: anything whose file name contains `ipam` is the
    /// IPAM plugin (installed as a second name of the same binary).
    pub fn from_argv0(argv0: &str) -> Role {
        let name = Path::new(argv0)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(argv0);
        if name.contains("ipam") {
            Role::Ipam
        } else {
            Role::Main
        }
    }
}

/// Runs one invocation. `Ok(None)`: success with nothing to print.
pub fn run(
    role: Role,
    get_env: impl Fn(&str) -> Option<String>,
    stdin: &[u8],
) -> Result<Option<Value>, CniError> {
    let env = CniEnv::from_vars(&get_env)?;
    if env.command == Command::Version {
        // VERSION may come with only `{"cniVersion": …}` on stdin.
        let asked = serde_json::from_slice::<Value>(stdin)
            .ok()
            .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| CNI_VERSION.to_owned());
        return Ok(Some(version_info(&asked)));
    }
    let conf = NetConf::parse(stdin)?;
    // Held until this invocation returns. CHECK only reads; brindle-ipam run
    // by brindle-cni (a delegation) is covered by its caller's lock.
    let _host_lock = match (role, env.command) {
        (_, Command::Check) => None,
        (Role::Ipam, _) if get_env(LOCK_HELD_ENV).is_some() => None,
        _ => Some(host_lock(&conf)?),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CniError::new(ErrorCode::Internal, format!("tokio runtime: {e}")))?;
    let span =
        info_span!("cni", role = ?role, command = ?env.command, container = %env.container_id);
    let _entered = span.enter();
    runtime.block_on(async {
        match role {
            Role::Ipam => run_ipam(&env, &conf).await,
            Role::Main => run_main(&env, &conf, stdin).await,
        }
    })
}

// ----- main plugin ---------------------------------------------------------

async fn run_main(env: &CniEnv, conf: &NetConf, stdin: &[u8]) -> Result<Option<Value>, CniError> {
    let id = WorkloadIdentity::new(env, conf)?;
    match env.command {
        Command::Add => cmd_add(env, conf, stdin, &id).await.map(Some),
        Command::Del => cmd_del(env, conf, stdin, &id).await.map(|()| None),
        Command::Check => cmd_check(env, conf, stdin, &id).await.map(|()| None),
        Command::Version => version_answered_earlier(),
    }
}

fn connect_netlink() -> Result<Netlink, CniError> {
    Netlink::connect(BRINDLE_ROUTE_PROTOCOL).map_err(|e| internal("netlink", e))
}

async fn cmd_add(
    env: &CniEnv,
    conf: &NetConf,
    stdin: &[u8],
    id: &WorkloadIdentity,
) -> Result<Value, CniError> {
    // Validate what the endpoint needs before taking an address.
    let labels = conf.labels()?;
    if !Path::new(&env.netns).exists() {
        return Err(CniError::new(
            ErrorCode::UnknownContainer,
            format!("network namespace {} does not exist", env.netns),
        ));
    }
    let store = open_store(conf).await?;
    let host = connect_netlink()?;
    if let Some(result) = existing_result(env, id, &store, &host).await? {
        info!(endpoint = %id.endpoint_name, "repeated ADD of a running container: its result");
        return to_value(result.for_version(&conf.cni_version));
    }
    let ipam = ipam_step(env, conf, Command::Add, stdin, &store).await?;
    let allocated_now = ipam.allocated_now;
    let ipam_result = ipam.result.unwrap_or_else(|| CniResult {
        cni_version: CNI_VERSION.into(),
        interfaces: Vec::new(),
        ips: Vec::new(),
        routes: Vec::new(),
        dns: Value::Null,
    });
    // Undo only this call's allocation: the handle may hold addresses a
    // running container of the same id still uses.
    let release = || async {
        let undone = match &allocated_now {
            Some(nets) => release_allocated(&Ipam::new(store.clone()), &id.handle, nets).await,
            None => ipam_step(env, conf, Command::Del, stdin, &store)
                .await
                .map(drop),
        };
        if let Err(e) = undone {
            warn!(error = %e, "releasing addresses after a failed ADD");
        }
    };
    let addresses: Vec<IpNet> = ipam_result
        .ips
        .iter()
        .map(|ip| IpNet::from(ip.address.addr()))
        .collect();
    if addresses.is_empty() {
        release().await;
        return Err(internal("ADD", "the IPAM plugin returned no address"));
    }
    let spec = WorkloadSpec {
        workload_id: id.veth_id.clone(),
        netns: PathBuf::from(&env.netns),
        container_ifname: env.ifname.clone(),
        addresses: addresses.clone(),
        mtu: conf.mtu(),
        route_protocol: BRINDLE_ROUTE_PROTOCOL,
    };
    let attachment = match add_workload(&host, &spec).await {
        Ok(a) => a,
        Err(e) => {
            release().await;
            return Err(internal("wiring the workload", e));
        }
    };
    let container_mac = format_mac(&attachment.container_mac);
    let endpoint = build_endpoint(env, conf, id, &labels, &addresses, &container_mac);
    let written = write_endpoint(&store, endpoint).await;
    if let Err(e) = written {
        let _ = del_workload(&host, &id.veth_id).await;
        release().await;
        return Err(e);
    }
    info!(endpoint = %id.endpoint_name, ?addresses, "workload added");
    let result = add_result(
        env,
        &attachment.host_ifname,
        container_mac,
        &addresses,
        ipam_result.dns,
    );
    to_value(result.for_version(&conf.cni_version))
}

/// The result of an ADD that already completed for this container (its
/// endpoint names this container id and its host veth exists), rebuilt from
/// the stored endpoint.
async fn existing_result(
    env: &CniEnv,
    id: &WorkloadIdentity,
    store: &Datastore,
    host: &Netlink,
) -> Result<Option<CniResult>, CniError> {
    let Some(Some(w)) = read_endpoint(store, id).await? else {
        return Ok(None);
    };
    if w.spec.container_id.as_deref() != Some(env.container_id.as_str()) {
        return Ok(None);
    }
    let host_ifname = host_veth_name(&id.veth_id);
    if host
        .link(&host_ifname)
        .await
        .map_err(|e| internal("reading the host veth", e))?
        .is_none()
    {
        return Ok(None);
    }
    let addresses: Vec<IpNet> = w
        .spec
        .ip_networks
        .iter()
        .filter_map(|n| n.parse::<IpNet>().ok())
        .collect();
    if addresses.is_empty() {
        return Ok(None);
    }
    Ok(Some(add_result(
        env,
        &host_ifname,
        w.spec.mac.clone().unwrap_or_default(),
        &addresses,
        Value::Null,
    )))
}

/// ADD's result: both ends of the veth, the addresses on the container's
/// interface, default routes through the fake gateways.
fn add_result(
    env: &CniEnv,
    host_ifname: &str,
    container_mac: String,
    addresses: &[IpNet],
    dns: Value,
) -> CniResult {
    let has_v4 = addresses.iter().any(|a| matches!(a, IpNet::V4(_)));
    let has_v6 = addresses.iter().any(|a| matches!(a, IpNet::V6(_)));
    let mut routes = Vec::new();
    if has_v4 {
        routes.push(RouteConfig {
            dst: "0.0.0.0/0".parse().expect("literal"),
            gw: Some(IpAddr::V4(GATEWAY_V4)),
        });
    }
    if has_v6 {
        routes.push(RouteConfig {
            dst: "::/0".parse().expect("literal"),
            gw: Some(IpAddr::V6(link_local_from_mac(HOST_SIDE_MAC))),
        });
    }
    CniResult {
        cni_version: CNI_VERSION.into(),
        interfaces: vec![
            Interface {
                name: host_ifname.to_owned(),
                mac: format_mac(&HOST_SIDE_MAC),
                sandbox: String::new(),
            },
            Interface {
                name: env.ifname.clone(),
                mac: container_mac,
                sandbox: env.netns.clone(),
            },
        ],
        ips: addresses
            .iter()
            .map(|a| IpConfig {
                address: *a,
                gateway: None,
                interface: Some(1),
                version: None,
            })
            .collect(),
        routes,
        dns,
    }
}

fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The endpoint ADD records (Calico's shape).
pub fn build_endpoint(
    env: &CniEnv,
    conf: &NetConf,
    id: &WorkloadIdentity,
    labels: &BTreeMap<String, String>,
    addresses: &[IpNet],
    container_mac: &str,
) -> Resource {
    let mut meta_labels = labels.clone();
    meta_labels.insert("projectcalico.org/namespace".into(), id.namespace.clone());
    meta_labels.insert(
        "projectcalico.org/orchestrator".into(),
        id.orchestrator.clone(),
    );
    let mut wep: WorkloadEndpoint = Object::named(&id.endpoint_name);
    wep.metadata.namespace = Some(id.namespace.clone());
    wep.metadata.labels = meta_labels;
    wep.spec = WorkloadEndpointSpec {
        orchestrator: Some(id.orchestrator.clone()),
        workload: (id.orchestrator != "k8s").then(|| id.workload.clone()),
        pod: (id.orchestrator == "k8s").then(|| id.workload.clone()),
        node: Some(id.node.clone()),
        container_id: Some(env.container_id.clone()),
        endpoint: Some(env.ifname.clone()),
        ip_networks: addresses.iter().map(ToString::to_string).collect(),
        ipv4_gateway: None,
        ipv6_gateway: None,
        profiles: vec![conf.network().to_owned()],
        interface_name: Some(host_veth_name(&id.veth_id)),
        mac: (!container_mac.is_empty()).then(|| container_mac.to_owned()),
        ..Default::default()
    };
    Resource::WorkloadEndpoint(wep)
}

/// Writes the endpoint through the resource store (validated; identity
/// metadata kept when ADD is repeated).
async fn write_endpoint(store: &Datastore, endpoint: Resource) -> Result<(), CniError> {
    ResourceStore::new(store.clone())
        .apply(endpoint)
        .await
        .map(drop)
        .map_err(|e| resource_error("writing the workload endpoint", e))
}

/// The stored endpoint, if any (an undecodable one counts as ours to remove).
async fn read_endpoint(
    store: &Datastore,
    id: &WorkloadIdentity,
) -> Result<Option<Option<WorkloadEndpoint>>, CniError> {
    let Some(kv) = store
        .get(id.endpoint_key())
        .await
        .map_err(|e| store_error("reading the workload endpoint", e))?
    else {
        return Ok(None);
    };
    let parsed = brindle_model::parse_stored(&kv.value).ok();
    Ok(Some(match parsed {
        Some(Resource::WorkloadEndpoint(w)) => Some(w),
        _ => None,
    }))
}

async fn cmd_del(
    env: &CniEnv,
    conf: &NetConf,
    stdin: &[u8],
    id: &WorkloadIdentity,
) -> Result<(), CniError> {
    let store = open_store(conf).await?;
    // A pod re-created under the same name has a new container id: a late
    // DEL for the old one must not tear down the new one's endpoint or veth.
    let stored = read_endpoint(&store, id).await?;
    let owned_by_other = matches!(
        &stored,
        Some(Some(w)) if w.spec.container_id.as_deref().is_some_and(|c| c != env.container_id)
    );
    if owned_by_other {
        info!(endpoint = %id.endpoint_name, "endpoint belongs to a newer container; kept");
    } else {
        let host = connect_netlink()?;
        let removed = del_workload(&host, &id.veth_id)
            .await
            .map_err(|e| internal("removing the veth", e))?;
        if stored.is_some() {
            ResourceStore::new(store.clone())
                .remove(
                    Kind::WorkloadEndpoint,
                    Some(&id.namespace),
                    &id.endpoint_name,
                )
                .await
                .map_err(|e| resource_error("deleting the workload endpoint", e))?;
        }
        info!(removed_veth = removed, endpoint = %id.endpoint_name, "workload deleted");
    }
    // Addresses are per container id, so always ours to release.
    ipam_step(env, conf, Command::Del, stdin, &store).await?;
    Ok(())
}

async fn cmd_check(
    env: &CniEnv,
    conf: &NetConf,
    stdin: &[u8],
    id: &WorkloadIdentity,
) -> Result<(), CniError> {
    let Some(prev) = &conf.prev_result else {
        return Err(CniError::new(
            ErrorCode::InvalidConfig,
            "CHECK needs prevResult",
        ));
    };
    let prev: CniResult = serde_json::from_value(prev.clone()).map_err(|e| {
        CniError::new(ErrorCode::DecodeFailure, "cannot decode prevResult")
            .with_details(e.to_string())
    })?;
    let store = open_store(conf).await?;
    ipam_step(env, conf, Command::Check, stdin, &store).await?;
    let want: Vec<IpNet> = prev
        .ips
        .iter()
        .map(|ip| IpNet::from(ip.address.addr()))
        .collect();

    let host_ifname = host_veth_name(&id.veth_id);
    let host = connect_netlink()?;
    let link = host
        .link(&host_ifname)
        .await
        .map_err(|e| internal("reading the host veth", e))?
        .ok_or_else(|| internal("CHECK", format!("host interface {host_ifname} is missing")))?;
    if !link.up || link.mac.as_deref() != Some(&HOST_SIDE_MAC[..]) {
        return Err(internal(
            "CHECK",
            format!("host interface {host_ifname} is down or has the wrong MAC"),
        ));
    }
    let ifname = env.ifname.clone();
    let in_container = crate::netns::block_on_in_netns(Path::new(&env.netns), move || async move {
        let nl = Netlink::connect(BRINDLE_ROUTE_PROTOCOL)?;
        nl.addresses(&ifname).await
    })
    .map_err(|e| {
        CniError::new(
            ErrorCode::UnknownContainer,
            format!("entering {}: {e}", env.netns),
        )
    })?
    .map_err(|e| internal("reading container addresses", e))?;
    for addr in &want {
        if !in_container.contains(addr) {
            return Err(internal(
                "CHECK",
                format!("{addr} is not on {} in the container", env.ifname),
            ));
        }
    }
    match read_endpoint(&store, id).await? {
        Some(Some(w)) => {
            let mut stored: Vec<String> = w.spec.ip_networks.clone();
            let mut expected: Vec<String> = want.iter().map(ToString::to_string).collect();
            stored.sort();
            expected.sort();
            if stored != expected {
                return Err(internal(
                    "CHECK",
                    format!(
                        "endpoint {} has {stored:?}, expected {expected:?}",
                        id.endpoint_name
                    ),
                ));
            }
            Ok(())
        }
        _ => Err(internal(
            "CHECK",
            format!("workload endpoint {} is missing", id.endpoint_name),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(container: &str, args: &str, ifname: &str) -> CniEnv {
        CniEnv {
            command: Command::Add,
            container_id: container.into(),
            netns: "/run/netns/x".into(),
            ifname: ifname.into(),
            args: super::super::spec::parse_cni_args(args).unwrap(),
            path: Vec::new(),
        }
    }

    fn conf() -> NetConf {
        NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"k8s-pod-network","type":"brindle-cni",
                 "nodename":"node-1","network":"blue","ipam":{"type":"brindle-ipam"}}"#,
        )
        .unwrap()
    }

    #[test]
    fn role_follows_the_binary_name() {
        assert_eq!(Role::from_argv0("/opt/cni/bin/brindle-ipam"), Role::Ipam);
        assert_eq!(Role::from_argv0("brindle-cni"), Role::Main);
    }

    #[test]
    fn identity_of_a_pod_and_of_a_bare_container() {
        let pod = WorkloadIdentity::new(
            &env(
                "c0ffee",
                "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-1",
                "eth0",
            ),
            &conf(),
        )
        .unwrap();
        assert_eq!(pod.endpoint_name, "node--1-k8s-web--1-eth0");
        assert_eq!(pod.namespace, "shop");
        assert_eq!(pod.veth_id, "shop.web-1");
        assert_eq!(pod.handle, "k8s-pod-network.c0ffee");

        let bare = WorkloadIdentity::new(&env("c0ffee", "", "net1"), &conf()).unwrap();
        assert_eq!(bare.endpoint_name, "node--1-cni-c0ffee-net1");
        assert_eq!(bare.namespace, "default");
        assert_eq!(bare.veth_id, "c0ffee.net1");
    }

    #[test]
    fn endpoint_carries_network_labels_and_addresses() {
        let e = env("c0ffee", "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web", "eth0");
        let id = WorkloadIdentity::new(&e, &conf()).unwrap();
        let labels = BTreeMap::from([("app".to_owned(), "web".to_owned())]);
        let addrs = vec!["10.65.0.5/32".parse().unwrap()];
        let r = build_endpoint(&e, &conf(), &id, &labels, &addrs, "02:42:00:00:00:01");
        assert!(r.validate().is_empty(), "{:?}", r.validate());
        let Resource::WorkloadEndpoint(w) = &r else {
            panic!("kind")
        };
        assert_eq!(w.metadata.labels["app"], "web");
        assert_eq!(w.metadata.labels["projectcalico.org/namespace"], "shop");
        assert_eq!(w.spec.profiles, vec!["blue"]);
        assert_eq!(w.spec.ip_networks, vec!["10.65.0.5/32"]);
        assert_eq!(
            w.spec.interface_name.as_deref(),
            Some(host_veth_name("shop.web").as_str())
        );
        assert_eq!(
            brindle_datastore::keys::key_of(&r),
            brindle_datastore::keys::resource_key(
                Kind::WorkloadEndpoint,
                Some("shop"),
                "node--1-k8s-web-eth0"
            )
        );
    }
}
