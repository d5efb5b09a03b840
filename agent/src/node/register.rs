//! Who this node is, in the datastore and on the host: the address
//! autodetected from the default route, the Node resource registered (and
//! modified) through the resource store, the VXLAN tunnel address from
//! IPAM, the datastore opened patiently at boot, and the underlay interface
//! that holds the node's address.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use brindle_datastore::ipam::{tunnel_handle, AutoAssignArgs, Ipam, TunnelKind};
use brindle_datastore::keys;
use brindle_datastore::resources::ResourceStore;
use brindle_datastore::Datastore;
use brindle_model::endpoint::{NodeBgpSpec, NodeSpec};
use brindle_model::ipam::AllowedUse;
use brindle_model::meta::AsNumber;
use brindle_model::resource::{Kind, Node};
use brindle_model::{ApiVersion, ObjectMeta, Resource};
use ipnet::{IpNet, Ipv4Net};
use tokio::time::Instant;
use tracing::{info, warn};

use super::cluster::{format_mac, ClusterState};
use super::options::{NodeError, NodeOptions};
use crate::netlink::Netlink;
use crate::tunnel::vtep_mac_for_node;

/// Finds the IPv4 address and subnet of the interface that holds the
/// default route (the lowest metric), and that interface's name; read over
/// rtnetlink, like every other kernel read of the node.
pub async fn autodetect_address(nl: &Netlink) -> Result<(Ipv4Net, String), NodeError> {
    let dev = nl.default_route_device_v4().await?.ok_or_else(|| {
        NodeError::Config("no IPv4 default route to autodetect the address from".into())
    })?;
    let net = nl
        .global_addresses(&dev)
        .await?
        .into_iter()
        .find_map(|a| match a {
            IpNet::V4(v4) => Some(v4),
            IpNet::V6(_) => None,
        })
        .ok_or_else(|| NodeError::Config(format!("{dev} has no global IPv4 address")))?;
    Ok((net, dev))
}

/// Reads the Node, lets `change` edit it, writes it back through the
/// resource store (validated, identity kept, compare-and-swap; created if
/// absent); retries on conflicts.
pub(super) async fn modify_node(
    ds: &Datastore,
    name: &str,
    change: impl Fn(&mut Node),
) -> Result<Node, NodeError> {
    let absent = || {
        Resource::Node(Node {
            api_version: ApiVersion::CalicoV3,
            metadata: ObjectMeta {
                name: name.to_owned(),
                ..Default::default()
            },
            spec: NodeSpec::default(),
            status: None,
        })
    };
    let stored = ResourceStore::new(ds.clone())
        .modify(Kind::Node, None, name, absent, |resource| {
            if let Resource::Node(node) = resource {
                change(node);
            }
        })
        .await?;
    match stored {
        Resource::Node(node) => Ok(node),
        other => Err(NodeError::Config(format!(
            "{} holds a {}, not a Node",
            keys::key_of(&other),
            other.kind()
        ))),
    }
}

/// A tunnel address of one family from IPAM (`allowedUses: Tunnel`), out
/// of the enabled VXLAN pools of that family.
pub(super) async fn assign_vxlan_tunnel(
    ds: &Datastore,
    node: &str,
    cluster: &ClusterState,
    v6: bool,
) -> Result<Option<IpAddr>, NodeError> {
    let pools: Vec<IpNet> = cluster
        .pools
        .iter()
        .filter(|(_, p)| !p.disabled && p.vxlan_mode.unwrap_or_default().enabled())
        .filter_map(|(_, p)| p.net())
        .filter(|n| matches!(n, IpNet::V6(_)) == v6)
        .collect();
    if pools.is_empty() {
        return Ok(None);
    }
    let (kind, num4, num6) = if v6 {
        (TunnelKind::VxlanV6, 0, 1)
    } else {
        (TunnelKind::Vxlan, 1, 0)
    };
    let args = AutoAssignArgs {
        num4,
        num6,
        handle: tunnel_handle(kind, node),
        attrs: BTreeMap::new(),
        node: node.to_owned(),
        pools,
        use_: AllowedUse::Tunnel,
    };
    let assigned = Ipam::new(ds.clone()).auto_assign(&args).await?;
    let addrs = if v6 { &assigned.ipv6 } else { &assigned.ipv4 };
    Ok(addrs.first().map(|n| n.addr()))
}

/// Registers the node: address, IPv6 address and AS (if given), keeping
/// everything else. When the pools ask for VXLAN and the Node has no IPv4
/// tunnel address yet, the address is allocated first and registered with
/// the rest, so a cold start writes its Node once, not twice: at 250 nodes
/// starting together each write waits its turn in the store's writer queue.
///
/// `allocated` keeps an address allocated by an attempt whose Node write
/// failed, so the next attempt registers that one instead of taking another.
pub(super) async fn register(
    ds: &Datastore,
    opts: &NodeOptions,
    address: Ipv4Net,
    allocated: &mut Option<IpAddr>,
) -> Result<Node, NodeError> {
    let name = &opts.node_name;
    let listing = ds.list(keys::resources_prefix()).await?;
    let cluster = ClusterState::decode(&listing.kvs, &[]);
    let has_one = cluster
        .nodes
        .get(name)
        .is_some_and(|n| n.vxlan_tunnel.is_some());
    if !has_one && allocated.is_none() {
        // Best effort: the daemon allocates it later if this fails.
        *allocated = assign_vxlan_tunnel(ds, name, &cluster, false)
            .await
            .unwrap_or_else(|error| {
                warn!(%error, "no VXLAN tunnel address at registration; trying again later");
                None
            });
    }
    let tunnel = if has_one { None } else { *allocated };
    modify_node(ds, name, |node| {
        let bgp = node.spec.bgp.get_or_insert_with(NodeBgpSpec::default);
        bgp.ipv4_address = Some(address.to_string());
        if let Some(address6) = opts.address6 {
            bgp.ipv6_address = Some(address6.to_string());
        }
        if let Some(asn) = opts.asn {
            bgp.as_number = Some(AsNumber(asn));
        }
        if let Some(tunnel) = tunnel {
            node.spec.ipv4_vxlan_tunnel_addr = Some(tunnel.to_string());
            node.spec.vxlan_tunnel_mac_addr = Some(format_mac(&vtep_mac_for_node(name)));
        }
    })
    .await
}

/// How long a starting node keeps retrying an etcd it cannot reach: a node
/// often boots before (or while) its etcd cluster does, and a supervisor
/// restart loop is a worse way to wait.
const DATASTORE_STARTUP_PATIENCE: Duration = Duration::from_secs(120);

/// Opens the datastore and registers this node, retrying with backoff while
/// etcd is unreachable (other errors, e.g. a bad URL, fail at once).
pub(super) async fn open_and_register(
    opts: &NodeOptions,
    address: Ipv4Net,
) -> Result<Datastore, NodeError> {
    let deadline = Instant::now() + DATASTORE_STARTUP_PATIENCE;
    let mut backoff = Duration::from_millis(250);
    let mut tunnel = None;
    loop {
        let attempt = async {
            let ds = Datastore::open(opts.datastore.as_deref()).await?;
            info!(store = %ds.describe(), "datastore open");
            register(&ds, opts, address, &mut tunnel).await?;
            Ok::<_, NodeError>(ds)
        };
        match attempt.await {
            Ok(ds) => return Ok(ds),
            Err(NodeError::Datastore(error @ brindle_datastore::Error::Etcd { .. }))
                if Instant::now() + backoff < deadline =>
            {
                warn!(%error, retry_in = ?backoff, "datastore unreachable; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(error) => return Err(error),
        }
    }
}

/// The interface holding `address`, and its MTU.
pub(super) async fn underlay_of(
    nl: &Netlink,
    address: Ipv4Addr,
) -> Result<(String, u32), NodeError> {
    for link in nl.links().await? {
        let addrs = nl.addresses(&link.name).await?;
        if addrs.iter().any(|a| a.addr() == IpAddr::V4(address)) {
            return Ok((link.name, link.mtu));
        }
    }
    Err(NodeError::Config(format!("no interface holds {address}")))
}
