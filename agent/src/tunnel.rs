//! Overlay tunnels: the VXLAN device `vxlan.brindle` with its static
//! neighbour and FDB entries, and the ipip device `tunl0`.
//!
//! VXLAN forwarding to a remote node needs three kernel objects, all static
//! (learning is off, nothing is flooded):
//!
//! ```text
//!  route   10.65.1.0/26 via 10.65.1.0 dev vxlan.brindle onlink   (reconciler)
//!  neigh   10.65.1.0 lladdr <remote VTEP MAC> dev vxlan.brindle PERMANENT
//!  fdb     <remote VTEP MAC> dev vxlan.brindle dst <remote node IP> self permanent
//! ```
//!
//! The route's gateway is the remote node's tunnel address; the neighbour
//! entry turns it into the remote device's MAC without ARP; the FDB entry
//! turns that MAC into the UDP destination. [`diff_vteps`] computes the
//! neighbour/FDB operations purely; [`sync_vteps`] applies them.
//!
//! ipip: this crate builds and unit-tests the `tunl0` request; the kernel
//! the tests run on has no ipip module, so [`ensure_ipip`] is proven
//! elsewhere (under qemu).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use netlink_packet_route::link::{
    InfoData, InfoIpTunnel, InfoKind, LinkAttribute, LinkInfo, LinkMessage,
};
use rtnetlink::{LinkIpIp, LinkUnspec, LinkVxlan};
use tracing::{debug, info};

use crate::netlink::{FdbEntry, LinkChange, LinkState, NeighbourEntry, Netlink, NetlinkError};

/// Name of Brindle's VXLAN device.
pub const VXLAN_DEVICE: &str = "vxlan.brindle";
/// VNI of the fabric (Calico's default).
pub const VXLAN_VNI: u32 = 4096;
/// IANA VXLAN port.
pub const VXLAN_PORT: u16 = 4789;
/// Name of Brindle's VXLAN device over an IPv6 underlay.
/// (`vxlan-v6.brindle` would exceed the kernel's 15-byte name limit.)
pub const VXLAN_V6_DEVICE: &str = "vxlan6.brindle";
/// Outer IPv4 + UDP + VXLAN + inner Ethernet headers.
pub const VXLAN_OVERHEAD_V4: u32 = 50;
/// Outer IPv6 + UDP + VXLAN + inner Ethernet headers.
pub const VXLAN_OVERHEAD_V6: u32 = 70;
/// Name of the ipip device (the kernel's fallback tunnel).
pub const IPIP_DEVICE: &str = "tunl0";
/// Outer IPv4 header.
pub const IPIP_OVERHEAD: u32 = 20;

/// How this node's VXLAN device should look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanConfig {
    pub name: String,
    pub vni: u32,
    pub port: u16,
    /// This node's address: the outer source of encapsulated packets. Its
    /// family is the underlay's (IPv6 costs 20 more bytes of MTU).
    pub local: IpAddr,
    /// MTU of the underlay interface; the device gets this minus 50.
    pub underlay_mtu: u32,
    /// This node's tunnel address (from its block), assigned as /32 or /128.
    pub tunnel_address: Option<IpAddr>,
    /// Device MAC. Remote nodes' neighbour entries point at it, so keeping
    /// it stable across re-creation (see [`vtep_mac_for_node`]) keeps their
    /// state valid; `None` lets the kernel pick a random one.
    pub mac: Option<[u8; 6]>,
}

impl VxlanConfig {
    /// Brindle's defaults for a node at `local`: `vxlan.brindle` over an
    /// IPv4 underlay, `vxlan6.brindle` over IPv6.
    pub fn new(local: impl Into<IpAddr>, underlay_mtu: u32) -> Self {
        let local = local.into();
        Self {
            name: match local {
                IpAddr::V4(_) => VXLAN_DEVICE.to_owned(),
                IpAddr::V6(_) => VXLAN_V6_DEVICE.to_owned(),
            },
            vni: VXLAN_VNI,
            port: VXLAN_PORT,
            local,
            underlay_mtu,
            tunnel_address: None,
            mac: None,
        }
    }

    pub fn mtu(&self) -> u32 {
        let overhead = match self.local {
            IpAddr::V4(_) => VXLAN_OVERHEAD_V4,
            IpAddr::V6(_) => VXLAN_OVERHEAD_V6,
        };
        self.underlay_mtu.saturating_sub(overhead)
    }
}

/// A stable, locally administered unicast MAC for `node`'s VXLAN device,
/// derived from the node name.
pub fn vtep_mac_for_node(node: &str) -> [u8; 6] {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(node.as_bytes());
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&digest[..6]);
    // Locally administered (bit 1), unicast (bit 0 clear).
    mac[0] = (mac[0] | 0x02) & !0x01;
    mac
}

/// The `RTM_NEWLINK` request creating the VXLAN device: `ip link add
/// vxlan.brindle type vxlan id 4096 local <ip> dstport 4789 nolearning`.
pub fn vxlan_link_message(cfg: &VxlanConfig) -> LinkMessage {
    let mut builder = LinkVxlan::new(&cfg.name, cfg.vni)
        .port(cfg.port)
        .learning(false)
        .mtu(cfg.mtu());
    builder = match cfg.local {
        IpAddr::V4(v4) => builder.local(v4),
        IpAddr::V6(v6) => builder.local6(v6),
    };
    if let Some(mac) = cfg.mac {
        builder = builder.address(mac.to_vec());
    }
    builder.build()
}

/// Create `vxlan.brindle` (or fix it: a device with the wrong VNI, port or
/// local address is re-created, MTU/address/up are set in place) and return
/// its state, including the MAC remote nodes need.
pub async fn ensure_vxlan(nl: &Netlink, cfg: &VxlanConfig) -> Result<LinkState, NetlinkError> {
    if let Some(existing) = nl.link(&cfg.name).await? {
        let params = existing.vxlan.clone().unwrap_or_default();
        let matches = existing.kind.as_deref() == Some("vxlan")
            && params.vni == Some(cfg.vni)
            && params.port == Some(cfg.port)
            && params.local == Some(cfg.local)
            && params.learning == Some(false);
        if !matches {
            info!(device = %cfg.name, ?params, "re-creating VXLAN device with wrong parameters");
            nl.delete_link(&cfg.name).await?;
        }
    }
    if nl.link(&cfg.name).await?.is_none() {
        nl.create_link(&format!("create {}", cfg.name), vxlan_link_message(cfg))
            .await?;
    }
    nl.set_link(
        &cfg.name,
        &LinkChange {
            mtu: Some(cfg.mtu()),
            mac: cfg.mac.map(|m| m.to_vec()),
            up: Some(true),
            ..Default::default()
        },
    )
    .await?;
    if let Some(addr) = cfg.tunnel_address {
        // A node whose block changed must not keep answering for the old
        // tunnel address.
        nl.set_sole_address(&cfg.name, IpNet::from(addr), true)
            .await?;
    }
    nl.link(&cfg.name)
        .await?
        .ok_or_else(|| NetlinkError::LinkNotFound(cfg.name.clone()))
}

/// A remote node's VXLAN endpoint.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Vtep {
    /// The remote node's tunnel address (gateway of routes to its blocks).
    pub tunnel_ip: IpAddr,
    /// MAC of the remote node's VXLAN device.
    pub mac: Vec<u8>,
    /// The remote node's underlay address (outer destination).
    pub node_ip: IpAddr,
}

/// One neighbour/FDB change on the VXLAN device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VtepOp {
    SetNeighbour { ip: IpAddr, mac: Vec<u8> },
    DeleteNeighbour { ip: IpAddr },
    SetFdb { mac: Vec<u8>, dst: IpAddr },
    DeleteFdb { mac: Vec<u8> },
}

/// Operations making the device's static entries match `desired`. Only
/// permanent entries are considered ours; entries the kernel resolved or
/// learned itself are left alone. Pure.
pub fn diff_vteps(
    desired: &[Vtep],
    neighbours: &[NeighbourEntry],
    fdb: &[FdbEntry],
) -> Vec<VtepOp> {
    let mut ops = Vec::new();
    let want_neigh: BTreeMap<IpAddr, &Vec<u8>> =
        desired.iter().map(|v| (v.tunnel_ip, &v.mac)).collect();
    let want_fdb: BTreeMap<&Vec<u8>, IpAddr> =
        desired.iter().map(|v| (&v.mac, v.node_ip)).collect();

    let have_neigh: BTreeMap<IpAddr, &NeighbourEntry> =
        neighbours.iter().map(|n| (n.ip, n)).collect();
    for (ip, mac) in &want_neigh {
        let ok = have_neigh
            .get(ip)
            .is_some_and(|n| n.permanent && n.mac.as_ref() == Some(*mac));
        if !ok {
            ops.push(VtepOp::SetNeighbour {
                ip: *ip,
                mac: (*mac).clone(),
            });
        }
    }
    for n in neighbours {
        if n.permanent && !want_neigh.contains_key(&n.ip) {
            ops.push(VtepOp::DeleteNeighbour { ip: n.ip });
        }
    }

    for (mac, dst) in &want_fdb {
        let ok = fdb
            .iter()
            .any(|f| f.permanent && &f.mac == *mac && f.dst == Some(*dst));
        // A MAC with several remotes (stale appended entry) is rewritten.
        let count = fdb.iter().filter(|f| &f.mac == *mac).count();
        if !ok || count > 1 {
            ops.push(VtepOp::SetFdb {
                mac: (*mac).clone(),
                dst: *dst,
            });
        }
    }
    let mut deleted: Vec<&Vec<u8>> = Vec::new();
    for f in fdb {
        let all_zero = f.mac.iter().all(|b| *b == 0);
        if f.permanent && !all_zero && !want_fdb.contains_key(&f.mac) && !deleted.contains(&&f.mac)
        {
            deleted.push(&f.mac);
            ops.push(VtepOp::DeleteFdb { mac: f.mac.clone() });
        }
    }
    ops
}

/// The operations turning what was programmed for `before` into `after`,
/// without reading the kernel: [`diff_vteps`] against `before` as if the
/// kernel held exactly it. Pure.
pub fn diff_vtep_sets(before: &[Vtep], after: &[Vtep]) -> Vec<VtepOp> {
    let neighbours: Vec<NeighbourEntry> = before
        .iter()
        .map(|v| NeighbourEntry {
            ifindex: 0,
            ip: v.tunnel_ip,
            mac: Some(v.mac.clone()),
            permanent: true,
        })
        .collect();
    let fdb: Vec<FdbEntry> = before
        .iter()
        .map(|v| FdbEntry {
            ifindex: 0,
            mac: v.mac.clone(),
            dst: Some(v.node_ip),
            permanent: true,
        })
        .collect();
    diff_vteps(after, &neighbours, &fdb)
}

/// Read the device's neighbour and FDB entries and apply [`diff_vteps`].
/// Returns the number of operations applied.
pub async fn sync_vteps(
    nl: &Netlink,
    device: &str,
    desired: &[Vtep],
) -> Result<usize, NetlinkError> {
    let neighbours = nl.neighbours(device).await?;
    let fdb = nl.fdb(device).await?;
    let ops = diff_vteps(desired, &neighbours, &fdb);
    apply_vtep_ops(nl, device, &ops).await?;
    Ok(ops.len())
}

/// Applies the change from `before` (programmed by an earlier sync) to
/// `after` without dumping the device's tables: a dump walks the host's
/// whole neighbour table, which on one host running many nodes (tests,
/// benchmarks) holds every node's entries and made each converge O(N²).
/// The periodic resync ([`sync_vteps`]) still repairs drift.
pub async fn update_vteps(
    nl: &Netlink,
    device: &str,
    before: &[Vtep],
    after: &[Vtep],
) -> Result<usize, NetlinkError> {
    let ops = diff_vtep_sets(before, after);
    apply_vtep_ops(nl, device, &ops).await?;
    Ok(ops.len())
}

/// Netlink requests in flight at once while applying VTEP operations.
const VTEP_CONCURRENCY: usize = 64;

/// Applies `ops` with up to [`VTEP_CONCURRENCY`] in flight: [`diff_vteps`]
/// gives each neighbour IP and each FDB MAC at most one operation, so they
/// do not depend on each other (one at a time, 250 VTEPs took seconds of
/// wall time on a busy host, each answer waiting for the process to be
/// scheduled). The first error is returned after all have been tried.
async fn apply_vtep_ops(nl: &Netlink, device: &str, ops: &[VtepOp]) -> Result<(), NetlinkError> {
    use futures::StreamExt;
    let apply = |op: &VtepOp| {
        let op = op.clone();
        async move {
            debug!(?op, device, "vtep op");
            match &op {
                VtepOp::SetNeighbour { ip, mac } => nl.replace_neighbour(device, *ip, mac).await,
                VtepOp::DeleteNeighbour { ip } => nl.delete_neighbour(device, *ip).await.map(drop),
                VtepOp::SetFdb { mac, dst } => {
                    // Replace only rewrites the first remote of a MAC; start clean.
                    nl.delete_fdb(device, mac).await?;
                    nl.replace_fdb(device, mac, *dst).await
                }
                VtepOp::DeleteFdb { mac } => nl.delete_fdb(device, mac).await.map(drop),
            }
        }
    };
    let results: Vec<Result<(), NetlinkError>> = futures::stream::iter(ops)
        .map(apply)
        .buffer_unordered(VTEP_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect()
}

/// The `RTM_NEWLINK` request for `tunl0`: `ip link add tunl0 type ipip
/// nopmtudisc` with MTU `underlay_mtu - 20`. Path MTU discovery is off
/// because the inner DF bit is copied otherwise and big packets die
/// silently when ICMP is filtered (calico#7146).
pub fn ipip_link_message(underlay_mtu: u32) -> LinkMessage {
    LinkIpIp::new(IPIP_DEVICE)
        .pmtudisc(false)
        .mtu(underlay_mtu.saturating_sub(IPIP_OVERHEAD))
        .build()
}

/// Create or fix `tunl0`. The kernel creates `tunl0` itself when the ipip
/// module loads, so an existing device is changed in place.
pub async fn ensure_ipip(
    nl: &Netlink,
    underlay_mtu: u32,
    tunnel_address: Option<Ipv4Addr>,
) -> Result<LinkState, NetlinkError> {
    let mtu = underlay_mtu.saturating_sub(IPIP_OVERHEAD);
    match nl.link(IPIP_DEVICE).await? {
        Some(link) => {
            // The kernel's fallback `tunl0` (created with the ipip module in
            // every namespace) refuses tunnel parameter changes with EINVAL;
            // it already is `remote any local any ttl inherit nopmtudisc`,
            // so, as Calico does, only its MTU, state and address matter.
            let mut msg = ipip_link_message(underlay_mtu);
            msg.header.index = link.index;
            if let Err(error) = nl.change_link("configure tunl0", msg).await {
                debug!(%error, "tunl0 keeps its kernel defaults");
            }
        }
        None => {
            nl.create_link("create tunl0", ipip_link_message(underlay_mtu))
                .await?
        }
    }
    nl.change_link(
        "tunl0 up",
        LinkUnspec::new_with_name(IPIP_DEVICE).mtu(mtu).up().build(),
    )
    .await?;
    if let Some(addr) = tunnel_address {
        nl.set_sole_address(IPIP_DEVICE, IpNet::from(IpAddr::V4(addr)), false)
            .await?;
    }
    nl.link(IPIP_DEVICE)
        .await?
        .ok_or_else(|| NetlinkError::LinkNotFound(IPIP_DEVICE.into()))
}

/// Kind and info data of a link request, for tests and diagnostics.
pub fn link_info_of(msg: &LinkMessage) -> (Option<InfoKind>, Option<InfoData>) {
    let mut kind = None;
    let mut data = None;
    for attr in &msg.attributes {
        if let LinkAttribute::LinkInfo(infos) = attr {
            for info in infos {
                match info {
                    LinkInfo::Kind(k) => kind = Some(k.clone()),
                    LinkInfo::Data(d) => data = Some(d.clone()),
                    _ => {}
                }
            }
        }
    }
    (kind, data)
}

/// Whether an ipip request carries `nopmtudisc`.
pub fn ipip_has_nopmtudisc(msg: &LinkMessage) -> bool {
    matches!(link_info_of(msg).1, Some(InfoData::IpTunnel(infos)) if infos.contains(&InfoIpTunnel::PMtuDisc(false)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::link::InfoVxlan;

    fn mtu_of(msg: &LinkMessage) -> Option<u32> {
        msg.attributes.iter().find_map(|a| match a {
            LinkAttribute::Mtu(m) => Some(*m),
            _ => None,
        })
    }

    #[test]
    fn a_vtep_change_is_applied_without_reading_the_kernel() {
        let vtep = |tunnel: &str, mac: u8, node: &str| Vtep {
            tunnel_ip: tunnel.parse().unwrap(),
            mac: vec![0xee, 0, 0, 0, 0, mac],
            node_ip: node.parse().unwrap(),
        };
        let a = vtep("10.65.0.1", 1, "10.0.1.1");
        let b = vtep("10.65.0.65", 2, "10.0.1.2");
        let b_moved = vtep("10.65.0.65", 2, "10.0.1.9");
        let c = vtep("10.65.0.129", 3, "10.0.1.3");
        let ops = diff_vtep_sets(&[a.clone(), b.clone()], &[b_moved.clone(), c.clone()]);
        assert_eq!(
            ops,
            vec![
                VtepOp::SetNeighbour {
                    ip: c.tunnel_ip,
                    mac: c.mac.clone()
                },
                VtepOp::DeleteNeighbour { ip: a.tunnel_ip },
                VtepOp::SetFdb {
                    mac: b.mac.clone(),
                    dst: b_moved.node_ip
                },
                VtepOp::SetFdb {
                    mac: c.mac.clone(),
                    dst: c.node_ip
                },
                VtepOp::DeleteFdb { mac: a.mac.clone() },
            ]
        );
        // Nothing changed: nothing to do.
        assert!(diff_vtep_sets(&[a.clone(), b.clone()], &[a, b]).is_empty());
    }

    #[test]
    fn vxlan_request_has_vni_port_local_nolearning_and_mtu_minus_50() {
        let cfg = VxlanConfig::new("172.16.0.2".parse::<IpAddr>().unwrap(), 1500);
        let msg = vxlan_link_message(&cfg);
        assert_eq!(mtu_of(&msg), Some(1450));
        let (kind, data) = link_info_of(&msg);
        assert_eq!(kind, Some(InfoKind::Vxlan));
        let Some(InfoData::Vxlan(infos)) = data else {
            panic!("no vxlan data")
        };
        assert!(infos.contains(&InfoVxlan::Id(4096)));
        assert!(infos.contains(&InfoVxlan::Port(4789)));
        assert!(infos.contains(&InfoVxlan::Local("172.16.0.2".parse().unwrap())));
        assert!(infos.contains(&InfoVxlan::Learning(false)));
        assert!(msg
            .attributes
            .contains(&LinkAttribute::IfName("vxlan.brindle".into())));
    }

    #[test]
    fn vxlan_over_ipv6_underlay_uses_local6_and_mtu_minus_70() {
        let cfg = VxlanConfig::new("fd00:a::2".parse::<IpAddr>().unwrap(), 1500);
        assert_eq!(cfg.name, "vxlan6.brindle");
        let msg = vxlan_link_message(&cfg);
        assert_eq!(mtu_of(&msg), Some(1430));
        let Some(InfoData::Vxlan(infos)) = link_info_of(&msg).1 else {
            panic!("no vxlan data")
        };
        assert!(infos.contains(&InfoVxlan::Local6("fd00:a::2".parse().unwrap())));
        assert!(infos.contains(&InfoVxlan::Id(4096)));
    }

    #[test]
    fn vtep_mac_is_stable_local_unicast_and_applied() {
        let mac = vtep_mac_for_node("node-a");
        assert_eq!(mac, vtep_mac_for_node("node-a"));
        assert_ne!(mac, vtep_mac_for_node("node-b"));
        assert_eq!(mac[0] & 0x03, 0x02);
        let cfg = VxlanConfig {
            mac: Some(mac),
            ..VxlanConfig::new("172.16.0.2".parse::<IpAddr>().unwrap(), 1500)
        };
        assert!(vxlan_link_message(&cfg)
            .attributes
            .contains(&LinkAttribute::Address(mac.to_vec())));
    }

    #[test]
    fn ipip_request_is_tunl0_nopmtudisc_mtu_minus_20() {
        let msg = ipip_link_message(1500);
        assert_eq!(mtu_of(&msg), Some(1480));
        assert_eq!(link_info_of(&msg).0, Some(InfoKind::IpIp));
        assert!(ipip_has_nopmtudisc(&msg));
        assert!(msg
            .attributes
            .contains(&LinkAttribute::IfName("tunl0".into())));
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn neigh(ipa: &str, mac: u8, permanent: bool) -> NeighbourEntry {
        NeighbourEntry {
            ifindex: 9,
            ip: ip(ipa),
            mac: Some(vec![0x66, 0, 0, 0, 0, mac]),
            permanent,
        }
    }

    fn fdb(mac: u8, dst: &str) -> FdbEntry {
        FdbEntry {
            ifindex: 9,
            mac: vec![0x66, 0, 0, 0, 0, mac],
            dst: Some(ip(dst)),
            permanent: true,
        }
    }

    fn vtep(tunnel: &str, mac: u8, node: &str) -> Vtep {
        Vtep {
            tunnel_ip: ip(tunnel),
            mac: vec![0x66, 0, 0, 0, 0, mac],
            node_ip: ip(node),
        }
    }

    #[test]
    fn vtep_diff_table() {
        let b = vtep("10.65.1.0", 1, "10.2.0.2");
        let c = vtep("10.65.2.0", 2, "10.3.0.2");
        type Case = (
            &'static str,
            Vec<Vtep>,
            Vec<NeighbourEntry>,
            Vec<FdbEntry>,
            Vec<VtepOp>,
        );
        let cases: Vec<Case> = vec![
            (
                "new remote gets neighbour and fdb",
                vec![b.clone()],
                vec![],
                vec![],
                vec![
                    VtepOp::SetNeighbour {
                        ip: b.tunnel_ip,
                        mac: b.mac.clone(),
                    },
                    VtepOp::SetFdb {
                        mac: b.mac.clone(),
                        dst: b.node_ip,
                    },
                ],
            ),
            (
                "converged remote needs nothing",
                vec![b.clone()],
                vec![neigh("10.65.1.0", 1, true)],
                vec![fdb(1, "10.2.0.2")],
                vec![],
            ),
            (
                "remote node moved: fdb rewritten",
                vec![b.clone()],
                vec![neigh("10.65.1.0", 1, true)],
                vec![fdb(1, "10.9.9.9")],
                vec![VtepOp::SetFdb {
                    mac: b.mac.clone(),
                    dst: b.node_ip,
                }],
            ),
            (
                "gone remote removed, dynamic entries kept",
                vec![b.clone()],
                vec![
                    neigh("10.65.1.0", 1, true),
                    neigh("10.65.2.0", 2, true),
                    neigh("10.65.3.0", 3, false),
                ],
                vec![fdb(1, "10.2.0.2"), fdb(2, "10.3.0.2")],
                vec![
                    VtepOp::DeleteNeighbour { ip: c.tunnel_ip },
                    VtepOp::DeleteFdb { mac: c.mac.clone() },
                ],
            ),
            (
                "dynamic neighbour for a remote becomes permanent",
                vec![b.clone()],
                vec![neigh("10.65.1.0", 1, false)],
                vec![fdb(1, "10.2.0.2")],
                vec![VtepOp::SetNeighbour {
                    ip: b.tunnel_ip,
                    mac: b.mac.clone(),
                }],
            ),
        ];
        for (name, desired, n, f, expected) in cases {
            assert_eq!(diff_vteps(&desired, &n, &f), expected, "case: {name}");
        }
    }
}
