//! Who this node is, in the datastore and on the host: the address
//! autodetected from the default route, the Node resource registered (and
//! modified) through the resource store, the datastore opened patiently at
//! boot, and the underlay interface that holds the node's address.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use brindle_datastore::keys;
use brindle_datastore::resources::ResourceStore;
use brindle_datastore::Datastore;
use brindle_model::endpoint::{NodeBgpSpec, NodeSpec};
use brindle_model::meta::AsNumber;
use brindle_model::resource::{Kind, Node};
use brindle_model::{ApiVersion, ObjectMeta, Resource};
use ipnet::{IpNet, Ipv4Net};
use tokio::time::Instant;
use tracing::{info, warn};

use super::options::{NodeError, NodeOptions};
use crate::netlink::Netlink;

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

/// Registers the node: address, IPv6 address and AS (if given), keeping
/// everything else.
pub(super) async fn register(
    ds: &Datastore,
    opts: &NodeOptions,
    address: Ipv4Net,
) -> Result<Node, NodeError> {
    modify_node(ds, &opts.node_name, |node| {
        let bgp = node.spec.bgp.get_or_insert_with(NodeBgpSpec::default);
        bgp.ipv4_address = Some(address.to_string());
        if let Some(address6) = opts.address6 {
            bgp.ipv6_address = Some(address6.to_string());
        }
        if let Some(asn) = opts.asn {
            bgp.as_number = Some(AsNumber(asn));
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
    loop {
        let attempt = async {
            let ds = Datastore::open(opts.datastore.as_deref()).await?;
            info!(store = %ds.describe(), "datastore open");
            register(&ds, opts, address).await?;
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
