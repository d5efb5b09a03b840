//! Neighbours (ARP/NDP entries) and bridge FDB entries, for VXLAN.

use super::*;

impl Netlink {
    // ---- neighbours and FDB -------------------------------------------

    /// `ip neigh replace <ip> lladdr <mac> dev <dev> nud permanent`.
    pub async fn replace_neighbour(
        &self,
        dev: &str,
        ip: IpAddr,
        mac: &[u8],
    ) -> Result<(), NetlinkError> {
        let index = self.ifindex(dev).await?;
        let mut msg = NeighbourMessage::default();
        msg.header.family = family_of(&ip);
        msg.header.ifindex = index;
        msg.header.state = NeighbourState::Permanent;
        msg.attributes
            .push(NeighbourAttribute::Destination(neighbour_address(ip)));
        msg.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        self.ack(
            &format!("neigh replace {ip} dev {dev}"),
            RouteNetlinkMessage::NewNeighbour(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
        .await
    }

    /// `ip neigh del <ip> dev <dev>`; `Ok(false)` if absent.
    pub async fn delete_neighbour(&self, dev: &str, ip: IpAddr) -> Result<bool, NetlinkError> {
        let index = self.ifindex(dev).await?;
        let mut msg = NeighbourMessage::default();
        msg.header.family = family_of(&ip);
        msg.header.ifindex = index;
        msg.attributes
            .push(NeighbourAttribute::Destination(neighbour_address(ip)));
        absent_is_false(
            self.ack(
                &format!("neigh del {ip} dev {dev}"),
                RouteNetlinkMessage::DelNeighbour(msg),
                0,
            )
            .await,
        )
    }

    /// Neighbour entries on `dev`.
    pub async fn neighbours(&self, dev: &str) -> Result<Vec<NeighbourEntry>, NetlinkError> {
        let index = self.ifindex(dev).await?;
        let mut entries = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut req = NeighbourMessage::default();
            req.header.family = family;
            let msgs = self
                .dump("dump neighbours", RouteNetlinkMessage::GetNeighbour(req))
                .await?;
            for m in msgs {
                let RouteNetlinkMessage::NewNeighbour(n) = m else {
                    continue;
                };
                if n.header.ifindex != index {
                    continue;
                }
                let mut ip = None;
                let mut mac = None;
                for attr in &n.attributes {
                    match attr {
                        NeighbourAttribute::Destination(a) => ip = neighbour_ip(a),
                        NeighbourAttribute::LinkLayerAddress(l) => mac = Some(l.clone()),
                        _ => {}
                    }
                }
                if let Some(ip) = ip {
                    entries.push(NeighbourEntry {
                        ifindex: index,
                        ip,
                        mac,
                        permanent: n.header.state == NeighbourState::Permanent,
                    });
                }
            }
        }
        Ok(entries)
    }

    /// `bridge fdb replace <mac> dev <dev> dst <remote> self permanent`.
    pub async fn replace_fdb(
        &self,
        dev: &str,
        mac: &[u8],
        dst: IpAddr,
    ) -> Result<(), NetlinkError> {
        let index = self.ifindex(dev).await?;
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Bridge;
        msg.header.ifindex = index;
        msg.header.state = NeighbourState::Permanent;
        msg.header.flags = NeighbourFlags::Own;
        msg.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        msg.attributes
            .push(NeighbourAttribute::Destination(neighbour_address(dst)));
        self.ack(
            &format!("fdb replace dev {dev} dst {dst}"),
            RouteNetlinkMessage::NewNeighbour(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
        .await
    }

    /// `bridge fdb del <mac> dev <dev> self`; `Ok(false)` if absent.
    pub async fn delete_fdb(&self, dev: &str, mac: &[u8]) -> Result<bool, NetlinkError> {
        let index = self.ifindex(dev).await?;
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Bridge;
        msg.header.ifindex = index;
        msg.header.flags = NeighbourFlags::Own;
        msg.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        absent_is_false(
            self.ack(
                &format!("fdb del dev {dev}"),
                RouteNetlinkMessage::DelNeighbour(msg),
                0,
            )
            .await,
        )
    }

    /// FDB entries of `dev` (a VXLAN device).
    pub async fn fdb(&self, dev: &str) -> Result<Vec<FdbEntry>, NetlinkError> {
        let index = self.ifindex(dev).await?;
        let mut req = NeighbourMessage::default();
        req.header.family = AddressFamily::Bridge;
        let msgs = self
            .dump("dump fdb", RouteNetlinkMessage::GetNeighbour(req))
            .await?;
        let mut entries = Vec::new();
        for m in msgs {
            let RouteNetlinkMessage::NewNeighbour(n) = m else {
                continue;
            };
            if n.header.ifindex != index {
                continue;
            }
            let mut mac = None;
            let mut dst = None;
            for attr in &n.attributes {
                match attr {
                    NeighbourAttribute::LinkLayerAddress(l) => mac = Some(l.clone()),
                    NeighbourAttribute::Destination(a) => dst = neighbour_ip(a),
                    _ => {}
                }
            }
            if let Some(mac) = mac {
                entries.push(FdbEntry {
                    ifindex: index,
                    mac,
                    dst,
                    permanent: n.header.state == NeighbourState::Permanent,
                });
            }
        }
        Ok(entries)
    }
}
