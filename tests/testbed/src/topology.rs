//! Ready-made topologies for the common cases.
//!
//! Addressing is fixed and documented, since every topology lives in its own
//! namespaces and cannot clash with another test:
//!
//! ```text
//!  two_hosts_one_subnet():          hosts_on_two_subnets([n0, n1]):
//!
//!   h0 10.0.1.1  fd00:1::1           subnet 0: 10.0.1.0/24 fd00:1::/64
//!   h1 10.0.1.2  fd00:1::2             hosts 10.0.1.1.., router .254 / ::fe
//!     └── lan 10.0.1.0/24 ──┘        subnet 1: 10.0.2.0/24 fd00:2::/64
//!                                      hosts 10.0.2.1.., router .254 / ::fe
//!                                    hosts use the router as default gateway
//! ```
//!
//! Hosts are numbered across subnets in order: with `[2, 1]`, hosts 0 and 1
//! are on subnet 0 and host 2 is on subnet 1.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::Result;
use crate::link::Lan;
use crate::netns::Netns;

/// Interface name of every host's uplink.
pub const HOST_IF: &str = "eth0";

/// A host namespace attached to a subnet.
#[derive(Debug)]
pub struct Host {
    /// The host's namespace.
    pub ns: Netns,
    /// Uplink interface name ([`HOST_IF`]).
    pub iface: String,
    /// IPv4 address on the uplink (prefix length 24).
    pub ipv4: Ipv4Addr,
    /// IPv6 address on the uplink (prefix length 64).
    pub ipv6: Ipv6Addr,
    /// Index of the subnet the host is on.
    pub subnet: usize,
}

/// IPv4 subnet `index` (0-based) as `(network, prefix_len)`: 10.0.(index+1).0/24.
pub fn subnet_v4(index: usize) -> (Ipv4Addr, u8) {
    (Ipv4Addr::new(10, 0, index as u8 + 1, 0), 24)
}

/// IPv6 subnet `index` (0-based): fd00:(index+1)::/64.
pub fn subnet_v6(index: usize) -> (Ipv6Addr, u8) {
    (
        Ipv6Addr::new(0xfd00, index as u16 + 1, 0, 0, 0, 0, 0, 0),
        64,
    )
}

fn host_v4(subnet: usize, host: u8) -> Ipv4Addr {
    let o = subnet_v4(subnet).0.octets();
    Ipv4Addr::new(o[0], o[1], o[2], host)
}

fn host_v6(subnet: usize, host: u16) -> Ipv6Addr {
    let s = subnet_v6(subnet).0.segments();
    Ipv6Addr::new(s[0], s[1], 0, 0, 0, 0, 0, host)
}

/// Router address on subnet `index`: .254 and ::fe.
pub fn gateway_v4(index: usize) -> Ipv4Addr {
    host_v4(index, 254)
}

/// Router IPv6 address on subnet `index`.
pub fn gateway_v6(index: usize) -> Ipv6Addr {
    host_v6(index, 0xfe)
}

fn add_host(lan: &Lan, tag: &str, subnet: usize, number: u8) -> Result<Host> {
    let ns = Netns::new(tag)?;
    let ipv4 = host_v4(subnet, number);
    let ipv6 = host_v6(subnet, number as u16);
    lan.attach(
        &ns,
        HOST_IF,
        &[&format!("{ipv4}/24"), &format!("{ipv6}/64")],
    )?;
    Ok(Host {
        ns,
        iface: HOST_IF.to_string(),
        ipv4,
        ipv6,
        subnet,
    })
}

/// Two hosts on one LAN.
#[derive(Debug)]
pub struct TwoHosts {
    /// 10.0.1.1 / fd00:1::1 and 10.0.1.2 / fd00:1::2.
    pub hosts: [Host; 2],
    /// The segment joining them.
    pub lan: Lan,
}

/// Builds two hosts on one subnet (see the module docs for addresses).
pub fn two_hosts_one_subnet() -> Result<TwoHosts> {
    let lan = Lan::new("lan")?;
    let a = add_host(&lan, "h0", 0, 1)?;
    let b = add_host(&lan, "h1", 0, 2)?;
    Ok(TwoHosts { hosts: [a, b], lan })
}

/// Hosts on two subnets joined by a forwarding router.
#[derive(Debug)]
pub struct RoutedFabric {
    /// All hosts, subnet 0 first.
    pub hosts: Vec<Host>,
    /// The router; `eth0` on subnet 0, `eth1` on subnet 1.
    pub router: Netns,
    /// The two LAN segments.
    pub lans: [Lan; 2],
}

impl RoutedFabric {
    /// Every host address (IPv4) with its host index, for matrices.
    pub fn host_addresses(&self) -> Vec<IpAddr> {
        self.hosts.iter().map(|h| IpAddr::V4(h.ipv4)).collect()
    }
}

/// Builds `counts[0]` hosts on subnet 0 and `counts[1]` on subnet 1, a router
/// between them, and v4+v6 default routes on every host via the router.
pub fn hosts_on_two_subnets(counts: [usize; 2]) -> Result<RoutedFabric> {
    let lans = [Lan::new("lana")?, Lan::new("lanb")?];
    let router = Netns::new("rtr")?;
    router.enable_forwarding()?;
    for (index, lan) in lans.iter().enumerate() {
        lan.attach(
            &router,
            &format!("eth{index}"),
            &[
                &format!("{}/24", gateway_v4(index)),
                &format!("{}/64", gateway_v6(index)),
            ],
        )?;
    }
    let mut hosts = Vec::new();
    for (subnet, &count) in counts.iter().enumerate() {
        for number in 1..=count {
            let index = hosts.len();
            let host = add_host(&lans[subnet], &format!("h{index}"), subnet, number as u8)?;
            host.ns.add_default_route(IpAddr::V4(gateway_v4(subnet)))?;
            host.ns.add_default_route(IpAddr::V6(gateway_v6(subnet)))?;
            hosts.push(host);
        }
    }
    Ok(RoutedFabric {
        hosts,
        router,
        lans,
    })
}
