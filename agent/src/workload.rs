//! Workload plumbing: what `brindle-cni` ADD and DEL do to the kernel.
//!
//! ```text
//!   container netns                         host netns
//!  ┌──────────────────────────┐           ┌──────────────────────────────────┐
//!  │ eth0  10.65.0.5/32       │  veth     │ cali<11 hex>  ee:ee:ee:ee:ee:ee  │
//!  │       fd00:65::5/128     │◄─────────►│ proxy_arp=1, forwarding=1, …     │
//!  │ 169.254.1.1 dev eth0     │           │ 10.65.0.5 dev caliX scope link   │
//!  │ default via 169.254.1.1  │           │ fd00:65::5 dev caliX             │
//!  │ default via fe80::ecee:… │           │   (proto brindle)                │
//!  └──────────────────────────┘           └──────────────────────────────────┘
//! ```
//!
//! The container never learns a real gateway: `169.254.1.1` does not exist,
//! the host answers its ARP by proxy ARP, so every packet leaves through the
//! host, where routing and policy apply. IPv6 uses the host side's
//! link-local address, which is fixed because the host-side MAC is.
//!
//! Contract: [`add_workload`] must run on a thread in the *host* network
//! namespace (the one `host` was connected in; sysctls are written there)
//! and is idempotent: leftovers of an earlier, half-finished ADD are removed
//! first, and an ADD that fails removes the veth it created.
//! [`del_workload`] is idempotent too and succeeds when nothing is
//! left. Addresses must be host prefixes (/32, /128); others are rejected.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use ipnet::IpNet;
use netlink_packet_route::route::RouteScope;
use sha2::{Digest, Sha256};
use tracing::{debug, info_span, Instrument};

use crate::netlink::{LinkChange, Netlink, NetlinkError};
use crate::netns::{in_netns, NetnsError};
use crate::reconciler::OpError;
use crate::route::{NextHop, Route, RouteTarget};
use crate::sysctl::{self, SysctlError, SysctlKey};

/// MAC of every host-side veth (as Calico): the container's neighbour entry
/// for its gateway never changes, whatever veth it is attached to.
pub const HOST_SIDE_MAC: [u8; 6] = [0xee; 6];

/// The fake IPv4 gateway every container routes through.
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

/// Host-side interface name: `cali` + the first 11 hex digits of the
/// SHA-256 of the workload id (15 bytes, the kernel's limit).
pub fn host_veth_name(workload_id: &str) -> String {
    format!("cali{}", &hash_hex(workload_id)[..11])
}

/// Name of the container end while it still lives in the host namespace
/// (unique per workload so concurrent ADDs do not collide).
fn temp_peer_name(workload_id: &str) -> String {
    format!("tmp{}", &hash_hex(workload_id)[..11])
}

fn hash_hex(workload_id: &str) -> String {
    hex::encode(Sha256::digest(workload_id.as_bytes()))
}

/// The EUI-64 link-local address the kernel derives from `mac`.
pub fn link_local_from_mac(mac: [u8; 6]) -> Ipv6Addr {
    Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([mac[0] ^ 0x02, mac[1]]),
        u16::from_be_bytes([mac[2], 0xff]),
        u16::from_be_bytes([0xfe, mac[3]]),
        u16::from_be_bytes([mac[4], mac[5]]),
    )
}

/// What ADD needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadSpec {
    /// Stable id of the workload (e.g. `<namespace>/<pod>` or the container id).
    pub workload_id: String,
    /// Path of the container's network namespace (`/proc/<pid>/ns/net`,
    /// `/run/netns/<name>`).
    pub netns: PathBuf,
    /// Interface name inside the container, normally `eth0`.
    pub container_ifname: String,
    /// The workload's addresses, /32 and/or /128.
    pub addresses: Vec<IpNet>,
    /// MTU of both veth ends.
    pub mtu: u32,
    /// Route protocol number to stamp on the routes we add.
    pub route_protocol: u8,
}

/// What ADD produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadAttachment {
    pub host_ifname: String,
    pub container_mac: Vec<u8>,
    pub addresses: Vec<IpNet>,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("{0} is not a host prefix (/32 or /128)")]
    NotAHostPrefix(IpNet),
    #[error("host-side MAC of {ifname} is {actual:02x?} after setting it to ee:ee:ee:ee:ee:ee")]
    MacNotApplied {
        ifname: String,
        actual: Option<Vec<u8>>,
    },
    #[error("route {route}: {error}")]
    Route { route: String, error: OpError },
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error(transparent)]
    Sysctl(#[from] SysctlError),
    #[error(transparent)]
    Netns(#[from] NetnsError),
}

fn route_err(route: &Route) -> impl FnOnce(OpError) -> WorkloadError + '_ {
    move |error| WorkloadError::Route {
        route: route.to_string(),
        error,
    }
}

/// CNI ADD: create and wire the veth pair. See the module docs.
pub async fn add_workload(
    host: &Netlink,
    spec: &WorkloadSpec,
) -> Result<WorkloadAttachment, WorkloadError> {
    for addr in &spec.addresses {
        if addr.prefix_len() != addr.max_prefix_len() {
            return Err(WorkloadError::NotAHostPrefix(*addr));
        }
    }
    let host_ifname = host_veth_name(&spec.workload_id);
    let span = info_span!("add_workload", workload = %spec.workload_id, %host_ifname);
    async {
        let peer = temp_peer_name(&spec.workload_id);
        let has_v6 = spec.addresses.iter().any(|a| matches!(a, IpNet::V6(_)));

        // Leftovers of an earlier attempt would make creation fail.
        if host.delete_link(&host_ifname).await? {
            debug!("removed stale host veth");
        }
        host.delete_link(&peer).await?;

        // The container end is born in the container's namespace under its
        // final name: a move or a rename afterwards would each cost an RCU
        // grace period. (A stale one went with the host end deleted above.)
        host.create_veth_with_peer_in(&host_ifname, &spec.container_ifname, &spec.netns, spec.mtu)
            .await?;
        let wired = async {
            wire_host_side(host, &host_ifname, spec.mtu, has_v6).await?;

            let container = spec.clone();
            let container_peer = spec.container_ifname.clone();
            let container_mac = in_netns(&spec.netns, move || async move {
                configure_container(&container, &container_peer).await
            })
            .await??;

            route_to_host_side(host, &host_ifname, &spec.addresses).await?;
            Ok(WorkloadAttachment {
                host_ifname: host_ifname.clone(),
                container_mac,
                addresses: spec.addresses.clone(),
            })
        }
        .await;
        if wired.is_err() {
            // A failed ADD leaves nothing behind (the runtime will retry or
            // give up; either way a half-wired veth would only confuse).
            let _ = host.delete_link(&host_ifname).await;
            let _ = host.delete_link(&peer).await;
        }
        wired
    }
    .instrument(span)
    .await
}

/// The host end as every workload has it: the fixed MAC (checked: it can
/// silently not stick), the MTU, proxy ARP and the other sysctls, up.
async fn wire_host_side(
    host: &Netlink,
    host_ifname: &str,
    mtu: u32,
    has_v6: bool,
) -> Result<(), WorkloadError> {
    host.set_link(
        host_ifname,
        &LinkChange {
            mac: Some(HOST_SIDE_MAC.to_vec()),
            mtu: Some(mtu),
            ..Default::default()
        },
    )
    .await?;
    // Setting the MAC can silently not stick (udev MACAddressPolicy racing
    // us); the container's neighbour entry depends on it.
    let actual = host.link(host_ifname).await?.and_then(|l| l.mac);
    if actual.as_deref() != Some(&HOST_SIDE_MAC[..]) {
        return Err(WorkloadError::MacNotApplied {
            ifname: host_ifname.to_owned(),
            actual,
        });
    }
    configure_host_sysctls(host_ifname, has_v6)?;
    host.set_link(
        host_ifname,
        &LinkChange {
            up: Some(true),
            ..Default::default()
        },
    )
    .await?;
    Ok(())
}

/// The workload's host routes: each address `dev <host end>`.
async fn route_to_host_side(
    host: &Netlink,
    host_ifname: &str,
    addresses: &[IpNet],
) -> Result<(), WorkloadError> {
    for addr in addresses {
        let route = Route::workload(*addr, host_ifname.to_owned());
        host.replace_route(&route)
            .await
            .map_err(route_err(&route))?;
    }
    Ok(())
}

/// A veth whose container end stays in the host namespace under a
/// temporary name, for a runtime that moves it into the container and
/// configures it itself (Docker's remote network driver: `Join` answers
/// with this name). The host end is wired as [`add_workload`] wires it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandedOverVeth {
    pub host_ifname: String,
    /// The container end, still in the host namespace.
    pub peer_ifname: String,
}

/// Creates and wires a [`HandedOverVeth`] for `workload_id` with host
/// routes to `addresses` (host prefixes); idempotent like [`add_workload`]
/// (leftovers removed first, nothing left on failure). Removed with
/// [`del_workload`].
pub async fn add_handed_over_veth(
    host: &Netlink,
    workload_id: &str,
    addresses: &[IpNet],
    mtu: u32,
) -> Result<HandedOverVeth, WorkloadError> {
    for addr in addresses {
        if addr.prefix_len() != addr.max_prefix_len() {
            return Err(WorkloadError::NotAHostPrefix(*addr));
        }
    }
    let host_ifname = host_veth_name(workload_id);
    let peer = temp_peer_name(workload_id);
    let span = info_span!("add_handed_over_veth", workload = %workload_id, %host_ifname);
    async {
        host.delete_link(&host_ifname).await?;
        host.delete_link(&peer).await?;
        host.create_veth(&host_ifname, &peer).await?;
        let has_v6 = addresses.iter().any(|a| matches!(a, IpNet::V6(_)));
        let wired = async {
            host.set_link(
                &peer,
                &LinkChange {
                    mtu: Some(mtu),
                    ..Default::default()
                },
            )
            .await?;
            wire_host_side(host, &host_ifname, mtu, has_v6).await?;
            route_to_host_side(host, &host_ifname, addresses).await
        }
        .await;
        if let Err(e) = wired {
            let _ = host.delete_link(&host_ifname).await;
            return Err(e);
        }
        Ok(HandedOverVeth {
            host_ifname: host_ifname.clone(),
            peer_ifname: peer,
        })
    }
    .instrument(span)
    .await
}

fn configure_host_sysctls(ifname: &str, has_v6: bool) -> Result<(), WorkloadError> {
    sysctl::write(&SysctlKey::ipv4_conf(ifname, "proxy_arp"), "1")?;
    sysctl::write(&SysctlKey::ipv4_neigh(ifname, "proxy_delay"), "0")?;
    sysctl::write(&SysctlKey::ipv4_conf(ifname, "forwarding"), "1")?;
    sysctl::write(&SysctlKey::ipv4_conf(ifname, "route_localnet"), "1")?;
    // Strict reverse-path filtering: a workload may only source its own
    // addresses (their routes point back at this veth).
    sysctl::write(&SysctlKey::ipv4_conf(ifname, "rp_filter"), "1")?;
    if has_v6 {
        let v6 = |leaf: &str, value: &str| -> Result<(), WorkloadError> {
            match sysctl::write(&SysctlKey::ipv6_conf(ifname, leaf), value) {
                Err(e) if e.is_missing() => Ok(()), // IPv6 disabled on the host
                other => Ok(other?),
            }
        };
        v6("disable_ipv6", "0")?;
        v6("proxy_ndp", "1")?;
        v6("accept_ra", "0")?;
        v6("forwarding", "1")?;
        // The container's default route points at our link-local address;
        // DAD would keep it tentative (unanswerable) for a second or more.
        v6("accept_dad", "0")?;
    }
    Ok(())
}

/// Runs inside the container's namespace.
async fn configure_container(spec: &WorkloadSpec, peer: &str) -> Result<Vec<u8>, WorkloadError> {
    let nl = Netlink::connect(spec.route_protocol)?;
    let eth = spec.container_ifname.as_str();
    if peer != eth {
        nl.set_link(
            peer,
            &LinkChange {
                rename: Some(eth.to_owned()),
                mtu: Some(spec.mtu),
                ..Default::default()
            },
        )
        .await?;
    }
    let has_v6 = spec.addresses.iter().any(|a| matches!(a, IpNet::V6(_)));
    if has_v6 {
        match sysctl::write(&SysctlKey::ipv6_conf(eth, "disable_ipv6"), "0") {
            Err(e) if !e.is_missing() => return Err(e.into()),
            _ => {}
        }
    }
    nl.set_link(
        "lo",
        &LinkChange {
            up: Some(true),
            ..Default::default()
        },
    )
    .await?;
    nl.set_link(
        eth,
        &LinkChange {
            up: Some(true),
            ..Default::default()
        },
    )
    .await?;
    for addr in &spec.addresses {
        nl.add_address(eth, *addr, true).await?;
    }
    if spec.addresses.iter().any(|a| matches!(a, IpNet::V4(_))) {
        let gw = Route::workload(IpNet::from(IpAddr::V4(GATEWAY_V4)), eth);
        nl.replace_route(&gw).await.map_err(route_err(&gw))?;
        let default = Route {
            dst: "0.0.0.0/0".parse().expect("literal"),
            target: RouteTarget::nexthops(vec![NextHop::via_dev(IpAddr::V4(GATEWAY_V4), eth)]),
        };
        nl.replace_route(&default)
            .await
            .map_err(route_err(&default))?;
    }
    if has_v6 {
        let gw = IpAddr::V6(link_local_from_mac(HOST_SIDE_MAC));
        let default = Route {
            dst: "::/0".parse().expect("literal"),
            target: RouteTarget::nexthops(vec![NextHop::via_dev(gw, eth)]),
        };
        // A link-local gateway is valid on the named device without any
        // connected prefix.
        nl.replace_route_with_scope(&default, RouteScope::Universe)
            .await
            .map_err(route_err(&default))?;
    }
    let mac = nl.link(eth).await?.and_then(|l| l.mac).unwrap_or_default();
    Ok(mac)
}

/// Node-wide forwarding, which per-interface `forwarding` does not imply
/// for IPv4 (`ip_forward` gates it) and which IPv6 needs on `all`. Runs in
/// the calling thread's namespace; IPv6 is skipped if the host has it off.
pub fn enable_host_forwarding() -> Result<(), SysctlError> {
    sysctl::write(&SysctlKey::new(["net", "ipv4", "ip_forward"]), "1")?;
    match sysctl::write(&SysctlKey::ipv6_conf("all", "forwarding"), "1") {
        Err(e) if e.is_missing() => Ok(()),
        other => other,
    }
}

/// [`add_workload`] for a synchronous caller in the host namespace (the
/// CNI plugin binary): opens its own connection and runtime.
pub fn add_workload_blocking(spec: &WorkloadSpec) -> Result<WorkloadAttachment, WorkloadError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(NetnsError::Runtime)?;
    runtime.block_on(async {
        let host = Netlink::connect(spec.route_protocol)?;
        add_workload(&host, spec).await
    })
}

/// [`del_workload`] for a synchronous caller in the host namespace.
pub fn del_workload_blocking(workload_id: &str, route_protocol: u8) -> Result<bool, WorkloadError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(NetnsError::Runtime)?;
    runtime.block_on(async {
        let host = Netlink::connect(route_protocol)?;
        del_workload(&host, workload_id).await
    })
}

/// CNI DEL: remove the veth pair (its routes go with it). Returns whether
/// anything was removed; a second DEL returns `Ok(false)`.
pub async fn del_workload(host: &Netlink, workload_id: &str) -> Result<bool, WorkloadError> {
    let host_ifname = host_veth_name(workload_id);
    let span = info_span!("del_workload", workload = %workload_id, %host_ifname);
    async {
        // Deleting one end of a veth deletes the other, wherever it lives,
        // and the kernel drops every route through it.
        let removed_host = host.delete_link(&host_ifname).await?;
        let removed_peer = host.delete_link(&temp_peer_name(workload_id)).await?;
        Ok(removed_host || removed_peer)
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_veth_name_is_cali_plus_11_hex_of_sha256() {
        // sha256("abc") = ba7816bf8f01cfea4141…
        assert_eq!(host_veth_name("abc"), "caliba7816bf8f0");
        assert_eq!(host_veth_name("abc").len(), 15);
        assert_ne!(host_veth_name("k8s/pod-a"), host_veth_name("k8s/pod-b"));
    }

    #[test]
    fn link_local_of_host_mac_is_eui64() {
        assert_eq!(
            link_local_from_mac(HOST_SIDE_MAC),
            "fe80::ecee:eeff:feee:eeee".parse::<Ipv6Addr>().unwrap()
        );
    }
}
