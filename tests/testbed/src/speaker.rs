//! One BGP speaker description, rendered into BIRD, FRR or GoBGP config:
//! the only generator of other daemons' configs in the tree (the testbed's
//! launchers, the `brindle-bgpd` interop tests and the node tests all use
//! it; golden-tested in `tests/golden.rs`).
//!
//! [`BgpConfig`] covers what interop tests need: a router id and AS, a list
//! of neighbors (address, AS, optional port, TCP-MD5 password, passive,
//! multihop, route-reflector client, BFD), routes to originate with optional
//! attributes (MED, LOCAL_PREF, communities, large communities), graceful
//! restart, a route-reflector cluster id, and for BIRD a 2-octet-only mode
//! and ASes to prepend. Each neighbor carries the address family of its own
//! address (IPv4 unicast over an IPv4 session, IPv6 unicast over an IPv6
//! session); originated routes are announced to the neighbors of their
//! family. Timers default to hold 9 s / keepalive 3 s / connect retry 2 s so
//! sessions come up and fail over quickly in tests. For anything beyond
//! this, each launcher also accepts a raw config file.

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
    /// The peer is a route-reflector client of this speaker.
    pub rr_client: bool,
    /// Single-hop BFD with the peer at 100 ms × 3 (BIRD: `bfd on` and a
    /// `protocol bfd`; FRR: `neighbor … bfd profile`, the profile in the
    /// bfdd config [`FRR_BFDD_CONFIG`]). GoBGP has no BFD: its renderer
    /// refuses the field.
    pub bfd: bool,
    /// GTSM (RFC 5082) with the peer this many hops away: BIRD `ttl
    /// security on` (with `multihop N` beyond one hop), FRR `ttl-security
    /// hops N`, GoBGP `ttl-security` with `ttl-min = 256 - N`.
    pub ttl_security: Option<u8>,
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
            rr_client: false,
            bfd: false,
            ttl_security: None,
        }
    }

    /// The same neighbor, passive or not.
    pub fn with_passive(mut self, passive: bool) -> Self {
        self.passive = passive;
        self
    }
}

/// A route the speaker originates, with optional attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Route {
    /// CIDR, e.g. `"10.10.1.0/24"`.
    pub prefix: String,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    /// Standard communities `(asn, value)`.
    pub communities: Vec<(u16, u16)>,
    /// Large communities `(global, local1, local2)`.
    pub large_communities: Vec<(u32, u32, u32)>,
}

impl Route {
    /// A route with no attributes of its own.
    pub fn plain(prefix: &str) -> Self {
        Route {
            prefix: prefix.to_string(),
            ..Default::default()
        }
    }

    pub fn is_v6(&self) -> bool {
        self.prefix.contains(':')
    }

    fn has_attributes(&self) -> bool {
        self.med.is_some()
            || self.local_pref.is_some()
            || !self.communities.is_empty()
            || !self.large_communities.is_empty()
    }

    fn communities_text(&self) -> String {
        let c: Vec<String> = self
            .communities
            .iter()
            .map(|(a, v)| format!("{a}:{v}"))
            .collect();
        c.join(" ")
    }

    fn large_communities_text(&self) -> String {
        let c: Vec<String> = self
            .large_communities
            .iter()
            .map(|(g, a, b)| format!("{g}:{a}:{b}"))
            .collect();
        c.join(" ")
    }

    /// The `gobgp global rib add` arguments that originate this route.
    pub fn gobgp_add_args(&self) -> Vec<String> {
        let mut args: Vec<String> = vec!["global".into(), "rib".into(), "add".into()];
        args.push(self.prefix.clone());
        args.extend(["origin".into(), "igp".into()]);
        if let Some(m) = self.med {
            args.extend(["med".into(), m.to_string()]);
        }
        if let Some(l) = self.local_pref {
            args.extend(["local-pref".into(), l.to_string()]);
        }
        if !self.communities.is_empty() {
            args.extend([
                "community".into(),
                self.communities_text().replace(' ', ","),
            ]);
        }
        if !self.large_communities.is_empty() {
            args.extend([
                "large-community".into(),
                self.large_communities_text().replace(' ', ","),
            ]);
        }
        let family = if self.is_v6() { "ipv6" } else { "ipv4" };
        args.extend(["-a".into(), family.into()]);
        args
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
    /// Routes to originate.
    pub originate: Vec<Route>,
    /// Graceful restart (RFC 4724) with this restart time, seconds.
    pub graceful_restart: Option<u16>,
    /// Long-lived graceful restart (RFC 9494) with this stale time,
    /// seconds (BIRD and FRR; with `graceful_restart`).
    pub long_lived_stale_time: Option<u32>,
    /// Route-reflector cluster id (clients: [`Neighbor::rr_client`]).
    pub cluster_id: Option<Ipv4Addr>,
    /// BIRD only: `false` makes a 2-octet-only speaker (`enable as4 off`;
    /// a peer AS above 65535 is then known only as AS_TRANS).
    pub as4: bool,
    /// BIRD only: ASes to prepend to originated routes on export.
    pub prepend: Vec<u32>,
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
            graceful_restart: None,
            long_lived_stale_time: None,
            cluster_id: None,
            as4: true,
            prepend: Vec::new(),
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
    pub fn originate(self, cidr: &str) -> Self {
        self.route(Route::plain(cidr))
    }

    /// Adds a route to originate, with its attributes.
    pub fn route(mut self, route: Route) -> Self {
        self.originate.push(route);
        self
    }

    pub(crate) fn keepalive(&self) -> u16 {
        (self.hold_time / 3).max(1)
    }

    pub(crate) fn originated(&self, v6: bool) -> impl Iterator<Item = &Route> {
        self.originate.iter().filter(move |r| r.is_v6() == v6)
    }

    /// Whether BIRD needs an export filter (per-route attributes or
    /// prepending) instead of `export all`.
    fn needs_bird_export_filter(&self) -> bool {
        !self.prepend.is_empty() || self.originate.iter().any(Route::has_attributes)
    }
}

/// The bfdd profile FRR neighbors with [`Neighbor::bfd`] use.
pub const FRR_BFD_PROFILE: &str = "brindle";

/// bfdd's configuration for [`FRR_BFD_PROFILE`]: 100 ms × 3, as BIRD's.
pub const FRR_BFDD_CONFIG: &str = "hostname testbed\nbfd\n profile brindle\n  \
     receive-interval 100\n  transmit-interval 100\n  detect-multiplier 3\n !\n!\n";

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
        let routes: Vec<&Route> = config.originated(v6).collect();
        if routes.is_empty() {
            continue;
        }
        out.push_str(&format!("\nprotocol static static_{name} {{\n  {name};\n"));
        for route in routes {
            out.push_str(&format!("  route {} blackhole;\n", route.prefix));
        }
        out.push_str("}\n");
    }
    if config.neighbors.iter().any(|n| n.bfd) {
        out.push_str(
            "\nprotocol bfd {\n  interface \"*\" { min rx interval 100 ms; \
             min tx interval 100 ms; multiplier 3; };\n}\n",
        );
    }
    let export = if config.needs_bird_export_filter() {
        out.push_str(&bird_export_filter(config));
        "filter brindle_export"
    } else {
        "all"
    };
    for n in &config.neighbors {
        let family = if n.address.is_ipv6() { "ipv6" } else { "ipv4" };
        // A 2-octet-only BIRD knows a wide peer AS only as AS_TRANS.
        let remote_as = if !config.as4 && n.remote_as > 65535 {
            23456
        } else {
            n.remote_as
        };
        out.push_str(&format!(
            "\nprotocol bgp {} {{\n  local as {};\n  neighbor {}{} as {};\n",
            bird_protocol_name(n.address),
            config.local_as,
            n.address,
            n.port.map(|p| format!(" port {p}")).unwrap_or_default(),
            remote_as
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
        } else if n.remote_as == config.local_as {
            // BIRD takes an iBGP neighbour for multihop and resolves its
            // next hops recursively, which this config (no `direct`
            // protocol) cannot do for an on-link one.
            out.push_str("  direct;\n");
        }
        if n.bfd {
            out.push_str("  bfd on;\n");
        }
        if let Some(hops) = n.ttl_security {
            out.push_str("  ttl security on;\n");
            if hops > 1 && !n.multihop {
                out.push_str(&format!("  multihop {hops};\n"));
            }
        }
        if let Some(password) = &n.password {
            out.push_str(&format!("  password \"{password}\";\n"));
        }
        if !config.as4 {
            out.push_str("  enable as4 off;\n");
        }
        if let Some(time) = config.graceful_restart {
            out.push_str(&format!(
                "  graceful restart on;\n  graceful restart time {time};\n"
            ));
            if let Some(stale) = config.long_lived_stale_time {
                out.push_str(&format!(
                    "  long lived graceful restart on;\n  long lived stale time {stale};\n"
                ));
            }
        }
        if n.rr_client {
            out.push_str("  rr client;\n");
        }
        if let Some(id) = config.cluster_id {
            out.push_str(&format!("  rr cluster id {id};\n"));
        }
        out.push_str(&format!(
            "  {family} {{ import all; export {export}; }};\n}}\n"
        ));
    }
    out
}

/// BIRD's export filter shared by all sessions: per-route attributes, then
/// the prepended ASes on originated routes.
fn bird_export_filter(config: &BgpConfig) -> String {
    let mut filter = String::from("\nfilter brindle_export {\n");
    for r in &config.originate {
        let mut body = String::new();
        if let Some(m) = r.med {
            body.push_str(&format!("bgp_med = {m}; "));
        }
        if let Some(l) = r.local_pref {
            body.push_str(&format!("bgp_local_pref = {l}; "));
        }
        for (a, v) in &r.communities {
            body.push_str(&format!("bgp_community.add(({a},{v})); "));
        }
        for (g, l1, l2) in &r.large_communities {
            body.push_str(&format!("bgp_large_community.add(({g},{l1},{l2})); "));
        }
        if !body.is_empty() {
            filter.push_str(&format!("  if net = {} then {{ {body}}}\n", r.prefix));
        }
    }
    for asn in config.prepend.iter().rev() {
        filter.push_str(&format!(
            "  if source = RTS_STATIC then bgp_path.prepend({asn});\n"
        ));
    }
    filter.push_str("  accept;\n}\n");
    filter
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
    if let Some(time) = config.graceful_restart {
        out.push_str(&format!(
            " bgp graceful-restart\n bgp graceful-restart restart-time {time}\n \
             bgp graceful-restart preserve-fw-state\n"
        ));
        if let Some(stale) = config.long_lived_stale_time {
            out.push_str(&format!(
                " bgp long-lived-graceful-restart stale-time {stale}\n"
            ));
        }
    }
    if let Some(id) = config.cluster_id {
        out.push_str(&format!(" bgp cluster-id {id}\n"));
    }
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
        if n.bfd {
            out.push_str(&format!(
                " neighbor {a} bfd\n neighbor {a} bfd profile {FRR_BFD_PROFILE}\n"
            ));
        }
        if let Some(password) = &n.password {
            out.push_str(&format!(" neighbor {a} password {password}\n"));
        }
        if let Some(hops) = n.ttl_security {
            out.push_str(&format!(" neighbor {a} ttl-security hops {hops}\n"));
        }
    }
    for (v6, family) in [(false, "ipv4"), (true, "ipv6")] {
        let neighbors: Vec<&Neighbor> = config
            .neighbors
            .iter()
            .filter(|n| n.address.is_ipv6() == v6)
            .collect();
        let routes: Vec<(usize, &Route)> = config
            .originate
            .iter()
            .enumerate()
            .filter(|(_, r)| r.is_v6() == v6)
            .collect();
        if neighbors.is_empty() && routes.is_empty() {
            continue;
        }
        out.push_str(&format!(" !\n address-family {family} unicast\n"));
        for (i, route) in routes {
            if route.has_attributes() {
                out.push_str(&format!("  network {} route-map R{i}\n", route.prefix));
            } else {
                out.push_str(&format!("  network {}\n", route.prefix));
            }
        }
        for n in neighbors {
            out.push_str(&format!("  neighbor {} activate\n", n.address));
            if n.rr_client {
                out.push_str(&format!(
                    "  neighbor {} route-reflector-client\n",
                    n.address
                ));
            }
        }
        out.push_str(" exit-address-family\n");
    }
    out.push_str("!\n");
    for (i, r) in config.originate.iter().enumerate() {
        if !r.has_attributes() {
            continue;
        }
        out.push_str(&format!("route-map R{i} permit 10\n"));
        if let Some(m) = r.med {
            out.push_str(&format!(" set metric {m}\n"));
        }
        if let Some(l) = r.local_pref {
            out.push_str(&format!(" set local-preference {l}\n"));
        }
        if !r.communities.is_empty() {
            out.push_str(&format!(" set community {}\n", r.communities_text()));
        }
        if !r.large_communities.is_empty() {
            out.push_str(&format!(
                " set large-community {}\n",
                r.large_communities_text()
            ));
        }
        out.push_str("!\n");
    }
    out
}

/// Renders `config` as a GoBGP TOML file. Originated routes are not part of
/// GoBGP's file format; [`crate::Gobgp`] adds them over its API after start
/// ([`Route::gobgp_add_args`]).
///
/// # Panics
/// On a neighbor with [`Neighbor::bfd`]: GoBGP has no BFD, and a test must
/// not believe it runs one.
pub fn gobgp_config(config: &BgpConfig) -> String {
    assert!(
        config.neighbors.iter().all(|n| !n.bfd),
        "GoBGP has no BFD; do not ask it for a BFD session"
    );
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
        if let Some(hops) = n.ttl_security {
            out.push_str(&format!(
                "  [neighbors.ttl-security.config]\n    enabled = true\n    ttl-min = {}\n",
                256 - u16::from(hops)
            ));
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
        if let Some(time) = config.graceful_restart {
            out.push_str(&format!(
                "  [neighbors.graceful-restart.config]\n    enabled = true\n    restart-time = {time}\n"
            ));
        }
        if n.rr_client {
            out.push_str(&format!(
                "  [neighbors.route-reflector.config]\n    route-reflector-client = true\n    \
                 route-reflector-cluster-id = \"{}\"\n",
                config.cluster_id.unwrap_or(config.router_id)
            ));
        }
        let family = if n.address.is_ipv6() {
            "ipv6-unicast"
        } else {
            "ipv4-unicast"
        };
        out.push_str(&format!(
            "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"{family}\"\n"
        ));
        if config.graceful_restart.is_some() {
            out.push_str(
                "    [neighbors.afi-safis.mp-graceful-restart.config]\n      enabled = true\n",
            );
        }
    }
    out
}
