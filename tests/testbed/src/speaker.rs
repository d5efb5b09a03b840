//! One BGP speaker description, rendered into BIRD, FRR or GoBGP config.
//!
//! [`BgpConfig`] covers what interop tests need: a router id and AS, a list
//! of neighbors (address, AS, optional port, TCP-MD5 password, passive,
//! multihop) and prefixes to originate. Each neighbor carries the address
//! family of its own address (IPv4 unicast over an IPv4 session, IPv6 unicast
//! over an IPv6 session); originated prefixes are announced to the neighbors
//! of their family. Timers default to hold 9 s / keepalive 3 s / connect
//! retry 2 s so sessions come up and fail over quickly in tests. For anything
//! beyond this, each launcher also accepts a raw config file.

use std::net::{IpAddr, Ipv4Addr};

/// A BGP neighbor of the speaker being configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbor {
    /// The peer's address (also selects the address family).
    pub address: IpAddr,
    /// The peer's AS (equal to the local AS for iBGP).
    pub remote_as: u32,
    /// TCP port the peer listens on (179 when `None`).
    pub port: Option<u16>,
    /// TCP-MD5 (RFC 2385) password.
    pub password: Option<String>,
    /// Never connect, only accept the peer's connection.
    pub passive: bool,
    /// Allow an eBGP peer that is more than one hop away (TTL 255).
    pub multihop: bool,
}

impl Neighbor {
    /// A neighbor with defaults: port 179, no password, active, one hop.
    pub fn new(address: IpAddr, remote_as: u32) -> Self {
        Neighbor {
            address,
            remote_as,
            port: None,
            password: None,
            passive: false,
            multihop: false,
        }
    }
}

/// Configuration of one BGP speaker (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpConfig {
    /// BGP identifier.
    pub router_id: Ipv4Addr,
    /// Local AS number.
    pub local_as: u32,
    /// TCP port this speaker listens on.
    pub listen_port: u16,
    /// Hold time offered, seconds (keepalive is a third of it).
    pub hold_time: u16,
    /// Seconds between connection attempts.
    pub connect_retry: u16,
    /// Peers.
    pub neighbors: Vec<Neighbor>,
    /// Prefixes (CIDR strings) to originate.
    pub originate: Vec<String>,
}

impl BgpConfig {
    /// A speaker with no neighbors, listening on 179, hold time 9 s.
    pub fn new(router_id: Ipv4Addr, local_as: u32) -> Self {
        BgpConfig {
            router_id,
            local_as,
            listen_port: 179,
            hold_time: 9,
            connect_retry: 2,
            neighbors: Vec::new(),
            originate: Vec::new(),
        }
    }

    /// Adds a neighbor with default options.
    pub fn neighbor(self, address: IpAddr, remote_as: u32) -> Self {
        self.with_neighbor(Neighbor::new(address, remote_as))
    }

    /// Adds a fully specified neighbor.
    pub fn with_neighbor(mut self, neighbor: Neighbor) -> Self {
        self.neighbors.push(neighbor);
        self
    }

    /// Adds a prefix to originate (e.g. `"10.10.1.0/24"`).
    pub fn originate(mut self, cidr: &str) -> Self {
        self.originate.push(cidr.to_string());
        self
    }

    pub(crate) fn keepalive(&self) -> u16 {
        (self.hold_time / 3).max(1)
    }

    pub(crate) fn originated(&self, v6: bool) -> impl Iterator<Item = &str> {
        self.originate
            .iter()
            .filter(move |p| p.contains(':') == v6)
            .map(String::as_str)
    }
}

/// Name BIRD uses for the BGP protocol of `address` (what
/// [`crate::Bird::wait_established`] expects): `n` + address with every
/// non-alphanumeric character replaced by `_`, e.g. `n10_0_1_2`.
pub fn bird_protocol_name(address: IpAddr) -> String {
    let body: String = address
        .to_string()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("n{body}")
}

/// Renders `config` as a complete `bird.conf` (BIRD 2). Routes learned over
/// BGP are exported to the namespace's kernel table, so they can be checked
/// with `ip route` too.
pub fn bird_config(config: &BgpConfig) -> String {
    let mut out = format!(
        "router id {};\nlog stderr all;\n\nprotocol device {{ scan time 10; }}\n\
         protocol kernel kernel4 {{ ipv4 {{ import none; export where source = RTS_BGP; }}; }}\n\
         protocol kernel kernel6 {{ ipv6 {{ import none; export where source = RTS_BGP; }}; }}\n",
        config.router_id
    );
    for (v6, name) in [(false, "ipv4"), (true, "ipv6")] {
        let routes: Vec<&str> = config.originated(v6).collect();
        if routes.is_empty() {
            continue;
        }
        out.push_str(&format!("\nprotocol static static_{name} {{\n  {name};\n"));
        for route in routes {
            out.push_str(&format!("  route {route} blackhole;\n"));
        }
        out.push_str("}\n");
    }
    for n in &config.neighbors {
        let family = if n.address.is_ipv6() { "ipv6" } else { "ipv4" };
        out.push_str(&format!(
            "\nprotocol bgp {} {{\n  local as {};\n  neighbor {}{} as {};\n",
            bird_protocol_name(n.address),
            config.local_as,
            n.address,
            n.port.map(|p| format!(" port {p}")).unwrap_or_default(),
            n.remote_as
        ));
        if config.listen_port != 179 {
            out.push_str(&format!("  local port {};\n", config.listen_port));
        }
        out.push_str(&format!(
            "  hold time {};\n  keepalive time {};\n  connect retry time {};\n  \
             connect delay time 1;\n  error wait time 1, 10;\n",
            config.hold_time,
            config.keepalive(),
            config.connect_retry
        ));
        if n.passive {
            out.push_str("  passive on;\n");
        }
        if n.multihop {
            out.push_str("  multihop;\n");
        }
        if let Some(password) = &n.password {
            out.push_str(&format!("  password \"{password}\";\n"));
        }
        out.push_str(&format!("  {family} {{ import all; export all; }};\n}}\n"));
    }
    out
}

/// Renders the `bgpd` part of `config` as an FRR configuration file. The
/// listen port is not part of it: [`crate::Frr::start`] passes it to bgpd
/// with `-p`.
pub fn frr_config(config: &BgpConfig) -> String {
    let mut out = format!(
        "hostname testbed\nlog stdout informational\n!\nrouter bgp {}\n bgp router-id {}\n \
         no bgp ebgp-requires-policy\n no bgp network import-check\n no bgp default ipv4-unicast\n",
        config.local_as, config.router_id
    );
    for n in &config.neighbors {
        let a = n.address;
        out.push_str(&format!(" neighbor {a} remote-as {}\n", n.remote_as));
        out.push_str(&format!(
            " neighbor {a} timers {} {}\n neighbor {a} timers connect {}\n",
            config.keepalive(),
            config.hold_time,
            config.connect_retry
        ));
        if let Some(port) = n.port {
            out.push_str(&format!(" neighbor {a} port {port}\n"));
        }
        if n.passive {
            out.push_str(&format!(" neighbor {a} passive\n"));
        }
        if n.multihop {
            out.push_str(&format!(" neighbor {a} ebgp-multihop 255\n"));
        }
        if let Some(password) = &n.password {
            out.push_str(&format!(" neighbor {a} password {password}\n"));
        }
    }
    for (v6, family) in [(false, "ipv4"), (true, "ipv6")] {
        let neighbors: Vec<&Neighbor> = config
            .neighbors
            .iter()
            .filter(|n| n.address.is_ipv6() == v6)
            .collect();
        let routes: Vec<&str> = config.originated(v6).collect();
        if neighbors.is_empty() && routes.is_empty() {
            continue;
        }
        out.push_str(&format!(" !\n address-family {family} unicast\n"));
        for route in routes {
            out.push_str(&format!("  network {route}\n"));
        }
        for n in neighbors {
            out.push_str(&format!("  neighbor {} activate\n", n.address));
        }
        out.push_str(" exit-address-family\n");
    }
    out.push_str("!\n");
    out
}

/// Renders `config` as a GoBGP TOML file. Originated prefixes are not part of
/// GoBGP's file format; [`crate::Gobgp`] adds them over its API after start.
pub fn gobgp_config(config: &BgpConfig) -> String {
    let mut out = format!(
        "[global.config]\n  as = {}\n  router-id = \"{}\"\n  port = {}\n",
        config.local_as, config.router_id, config.listen_port
    );
    for n in &config.neighbors {
        out.push_str(&format!(
            "\n[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{}\"\n    peer-as = {}\n",
            n.address, n.remote_as
        ));
        if let Some(password) = &n.password {
            out.push_str(&format!("    auth-password = \"{password}\"\n"));
        }
        out.push_str(&format!(
            "  [neighbors.timers.config]\n    connect-retry = {}\n    hold-time = {}\n    \
             keepalive-interval = {}\n",
            config.connect_retry,
            config.hold_time,
            config.keepalive()
        ));
        if n.passive || n.port.is_some() {
            out.push_str("  [neighbors.transport.config]\n");
            if n.passive {
                out.push_str("    passive-mode = true\n");
            }
            if let Some(port) = n.port {
                out.push_str(&format!("    remote-port = {port}\n"));
            }
        }
        if n.multihop {
            out.push_str(
                "  [neighbors.ebgp-multihop.config]\n    enabled = true\n    multihop-ttl = 255\n",
            );
        }
        let family = if n.address.is_ipv6() {
            "ipv6-unicast"
        } else {
            "ipv4-unicast"
        };
        out.push_str(&format!(
            "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"{family}\"\n"
        ));
    }
    out
}
