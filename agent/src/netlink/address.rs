//! Addresses on links.

use super::*;

impl Netlink {
    /// `ip addr replace <addr> dev <name>`; `nodad` skips IPv6 duplicate
    /// address detection so the address is usable at once.
    pub async fn add_address(
        &self,
        name: &str,
        addr: IpNet,
        nodad: bool,
    ) -> Result<(), NetlinkError> {
        self.add_address_in_scope(name, addr, nodad, AddressScope::Universe)
            .await
    }

    /// `ip addr replace <addr> dev <name> scope link nodad`: an address
    /// only the link's other end uses (a local workload's BGP peering
    /// address), never taken for the host's own.
    /// The interface is looked up afresh (a workload's interface comes and
    /// goes under the same name).
    pub async fn add_link_scope_address(
        &self,
        name: &str,
        addr: IpNet,
    ) -> Result<(), NetlinkError> {
        self.forget(name);
        self.add_address_in_scope(name, addr, true, AddressScope::Link)
            .await
    }

    /// [`Netlink::delete_address`] on an interface looked up afresh;
    /// `Ok(false)` also when the interface is gone.
    pub async fn remove_link_scope_address(
        &self,
        name: &str,
        addr: IpNet,
    ) -> Result<bool, NetlinkError> {
        self.forget(name);
        match self.delete_address(name, addr).await {
            Err(NetlinkError::LinkNotFound(_)) => Ok(false),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(false),
            other => other,
        }
    }

    async fn add_address_in_scope(
        &self,
        name: &str,
        addr: IpNet,
        nodad: bool,
        scope: AddressScope,
    ) -> Result<(), NetlinkError> {
        let index = self.ifindex(name).await?;
        let mut msg = AddressMessage::default();
        msg.header.scope = scope;
        msg.header.index = index;
        msg.header.prefix_len = addr.prefix_len();
        msg.header.family = family_of(&addr.addr());
        msg.attributes.push(AddressAttribute::Local(addr.addr()));
        msg.attributes.push(AddressAttribute::Address(addr.addr()));
        if nodad {
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        self.ack(
            &format!("add address {addr} to {name}"),
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
        .await
    }

    /// `ip addr del <addr> dev <name>`; `Ok(false)` if it was not there.
    pub async fn delete_address(&self, name: &str, addr: IpNet) -> Result<bool, NetlinkError> {
        let index = self.ifindex(name).await?;
        let mut msg = AddressMessage::default();
        msg.header.index = index;
        msg.header.prefix_len = addr.prefix_len();
        msg.header.family = family_of(&addr.addr());
        msg.attributes.push(AddressAttribute::Local(addr.addr()));
        msg.attributes.push(AddressAttribute::Address(addr.addr()));
        match self
            .ack(
                &format!("delete address {addr} from {name}"),
                RouteNetlinkMessage::DelAddress(msg),
                0,
            )
            .await
        {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(libc::EADDRNOTAVAIL) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Make `addr` the only global address of its family on `name`: add it,
    /// then remove any other (a node's old tunnel address). IPv6
    /// link-local addresses are kept.
    pub async fn set_sole_address(
        &self,
        name: &str,
        addr: IpNet,
        nodad: bool,
    ) -> Result<(), NetlinkError> {
        self.add_address(name, addr, nodad).await?;
        for other in self.addresses(name).await? {
            let same_family = other.addr().is_ipv4() == addr.addr().is_ipv4();
            let link_local =
                matches!(other.addr(), IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80);
            if same_family && !link_local && other != addr {
                self.delete_address(name, other).await?;
            }
        }
        Ok(())
    }

    /// Addresses configured on `name`.
    pub async fn addresses(&self, name: &str) -> Result<Vec<IpNet>, NetlinkError> {
        self.addresses_of(name, false).await
    }

    /// Addresses of global (universe) scope on `name`, in the kernel's
    /// order (the primary first): what `ip addr show scope global` lists.
    pub async fn global_addresses(&self, name: &str) -> Result<Vec<IpNet>, NetlinkError> {
        self.addresses_of(name, true).await
    }

    async fn addresses_of(
        &self,
        name: &str,
        global_only: bool,
    ) -> Result<Vec<IpNet>, NetlinkError> {
        let index = self.ifindex(name).await?;
        let msgs = self
            .dump(
                "dump addresses",
                RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            )
            .await?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a)
                    if a.header.index == index
                        && (!global_only || a.header.scope == AddressScope::Universe) =>
                {
                    let ip = a.attributes.iter().find_map(|attr| match attr {
                        AddressAttribute::Address(ip) => Some(*ip),
                        _ => None,
                    })?;
                    IpNet::new(ip, a.header.prefix_len).ok()
                }
                _ => None,
            })
            .collect())
    }
}
