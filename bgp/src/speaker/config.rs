//! Configuration of a [`super::Speaker`] and of its peers.
//!
//! Defaults follow what Calico's BIRD does for node-to-node meshes: port 179,
//! hold time 90 s (keepalive a third of it), connect retry 5 s, IPv4 and IPv6
//! unicast, graceful restart with a 120 s restart time.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// Port BGP listens on and connects to (RFC 4271 §8.2.1).
pub const BGP_PORT: u16 = 179;
/// Calico's BIRD retries a connection every 5 s.
pub const DEFAULT_CONNECT_RETRY: Duration = Duration::from_secs(5);
/// Hold time offered by default, seconds.
pub const DEFAULT_HOLD_TIME: u16 = 90;
/// Graceful restart time advertised and honoured by default, seconds.
pub const DEFAULT_RESTART_TIME: u16 = 120;

/// Speaker-wide settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeakerConfig {
    /// Our AS.
    pub local_asn: u32,
    /// Our BGP identifier.
    pub router_id: Ipv4Addr,
    /// Addresses to accept connections on; empty: accept none (every peer
    /// must then be active). Defaults to `0.0.0.0` and `::`.
    pub listen_addresses: Vec<IpAddr>,
    /// Port to accept connections on (179; tests may use another).
    pub listen_port: u16,
    /// `Some`: act as a route reflector (RFC 4456) with this cluster id; peers
    /// with [`PeerConfig::route_reflector_client`] are its clients.
    pub cluster_id: Option<Ipv4Addr>,
    /// Most equal-cost paths installed per prefix (1: no ECMP).
    pub max_paths: usize,
    /// Peers to start with.
    pub peers: Vec<PeerConfig>,
}

impl SpeakerConfig {
    /// A speaker listening on all addresses, port 179, without peers.
    pub fn new(local_asn: u32, router_id: Ipv4Addr) -> Self {
        Self {
            local_asn,
            router_id,
            listen_addresses: vec![
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            ],
            listen_port: BGP_PORT,
            cluster_id: None,
            max_paths: 1,
            peers: Vec::new(),
        }
    }
}

/// ADD-PATH (RFC 7911) modes we advertise for every negotiated family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AddPathConfig {
    /// Accept several paths per prefix from the peer.
    pub receive: bool,
    /// Send path identifiers (we send the best path only, with id 1).
    pub send: bool,
}

/// A limit on the prefixes a neighbour may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixLimit {
    /// Prefixes received (all families) beyond which `action` is taken.
    pub limit: usize,
    pub action: LimitAction,
}

/// What a [`PrefixLimit`] does when the neighbour goes past it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitAction {
    /// Log it and show it in the peer's status; keep the session.
    Warn,
    /// End the session with Cease "Maximum Number of Prefixes Reached"
    /// (RFC 4486); it starts again after the damped idle hold time.
    Restart,
    /// The same NOTIFICATION, and the session stays down until the peer's
    /// configuration changes.
    Disable,
}

/// One BGP neighbour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// The neighbour's address; also what identifies the peer.
    pub address: IpAddr,
    /// The AS the neighbour must announce.
    pub remote_asn: u32,
    /// Our AS towards this neighbour, if not the speaker's (like BIRD's
    /// per-protocol `local as`): used in the OPEN and prepended to the
    /// AS_PATH instead of the speaker's AS. The other export rules (next hop
    /// self, LOCAL_PREF) follow the speaker's AS.
    pub local_asn: Option<u32>,
    /// The neighbour's TCP port.
    pub port: u16,
    /// Never connect; wait for the neighbour.
    pub passive: bool,
    /// The neighbour is a route-reflector client (with
    /// [`SpeakerConfig::cluster_id`]).
    pub route_reflector_client: bool,
    /// Hold time offered, seconds (0, or at least 3).
    pub hold_time: u16,
    /// Keepalive interval, seconds; `None`: a third of the negotiated hold.
    pub keepalive: Option<u16>,
    /// Delay between connection attempts.
    pub connect_retry: Duration,
    /// TCP MD5 signature (RFC 2385) password.
    pub md5_password: Option<String>,
    /// Only routes inside these prefixes are announced to the neighbour
    /// (`None`: every route the export rules allow). Changing only this
    /// (or `bfd`, or `max_prefixes`) does not restart the session: the
    /// routes it now holds back are withdrawn, those it lets through sent.
    pub export_only: Option<crate::rib::ExportPrefixes>,
    /// Our address as next hop of every route sent, reflected ones too
    /// (Calico's `nextHopMode: Self`).
    pub next_hop_self_always: bool,
    /// The route's own next hop, also toward an eBGP neighbour (Calico's
    /// `nextHopMode: Keep` / `keepOriginalNextHop`).
    pub next_hop_keep: bool,
    /// Rules for what is announced to the neighbour (BGPFilter export);
    /// a rule's verdict wins over `export_only`.
    pub export_filter: Option<std::sync::Arc<crate::rib::RouteFilter>>,
    /// Rules for what is taken from the neighbour (BGPFilter import). A
    /// change applies without a reset: paths it now rejects leave at once,
    /// and the neighbour is asked (ROUTE-REFRESH) for the routes it kept
    /// out before; one without route refresh is restarted instead.
    pub import_filter: Option<std::sync::Arc<crate::rib::RouteFilter>>,
    /// Times our own AS may appear in a path from this eBGP neighbour
    /// (BIRD's `allow local as N`): 0, the default, is RFC 4271's loop
    /// rule. This removes loop prevention; only for designs that need it.
    pub allow_local_as: u8,
    /// Most prefixes taken from the neighbour, and what happens past it
    /// (BIRD's `import limit`, FRR's `maximum-prefix`); `None`: no limit.
    pub max_prefixes: Option<PrefixLimit>,
    /// GTSM (RFC 5082) for a neighbour this many hops away (1: directly
    /// connected): our segments leave with TTL 255 and the kernel drops
    /// the neighbour's that arrive with less than `256 - hops`.
    pub ttl_security: Option<u8>,
    /// Address to connect from (and to offer as next hop self).
    pub source_address: Option<IpAddr>,
    /// Use our address as next hop for eBGP-learned routes sent to this iBGP
    /// neighbour.
    pub next_hop_self: bool,
    /// Offer IPv4 unicast.
    pub ipv4_unicast: bool,
    /// Offer IPv6 unicast.
    pub ipv6_unicast: bool,
    /// ADD-PATH modes to offer.
    pub add_path: AddPathConfig,
    /// Graceful restart (RFC 4724) restart time to advertise; `None`
    /// disables the capability (and with it the helper side for this peer).
    pub graceful_restart: Option<u16>,
    /// Long-lived graceful restart (RFC 9494): the long-lived stale time to
    /// advertise, seconds; `None` (or 0) disables the capability. With a
    /// peer that advertises it too, the peer's routes outlive its session
    /// (after the graceful restart time, if any) for the smaller of the two
    /// stale times, marked `LLGR_STALE` and least preferred. Needs
    /// `graceful_restart` (RFC 9494 §4.2: both capabilities go together).
    pub long_lived_stale_time: Option<u32>,
    /// BIRD's `gateway direct` when the neighbour is directly connected
    /// (Calico's `birdGatewayMode: DirectIfDirectlyConnected`): a route's
    /// next hop outside our connected networks is replaced by the
    /// neighbour's address. Off, or a neighbour on no connected network:
    /// next hops as received.
    pub gateway_direct: bool,
    /// Run a single-hop BFD session with the neighbour (RFC 5881); its
    /// failure closes the BGP session at once. Changing only this does not
    /// restart the BGP session.
    pub bfd: Option<crate::bfd::BfdConfig>,
}

impl PeerConfig {
    /// A neighbour with the defaults described in the module docs.
    pub fn new(address: IpAddr, remote_asn: u32) -> Self {
        Self {
            address,
            remote_asn,
            local_asn: None,
            port: BGP_PORT,
            passive: false,
            route_reflector_client: false,
            hold_time: DEFAULT_HOLD_TIME,
            keepalive: None,
            connect_retry: DEFAULT_CONNECT_RETRY,
            md5_password: None,
            ttl_security: None,
            max_prefixes: None,
            export_only: None,
            allow_local_as: 0,
            export_filter: None,
            import_filter: None,
            next_hop_self_always: false,
            next_hop_keep: false,
            source_address: None,
            next_hop_self: false,
            ipv4_unicast: true,
            ipv6_unicast: true,
            add_path: AddPathConfig::default(),
            graceful_restart: Some(DEFAULT_RESTART_TIME),
            long_lived_stale_time: None,
            gateway_direct: false,
            bfd: None,
        }
    }
}

impl PeerConfig {
    /// What our OPEN offers this peer, presenting `local_asn` (the
    /// per-peer local AS, or the speaker's) and `router_id`.
    pub fn open_offer(&self, local_asn: u32, router_id: Ipv4Addr) -> crate::session::OpenOffer {
        crate::session::OpenOffer {
            local_asn,
            router_id,
            hold_time: self.hold_time,
            ipv4_unicast: self.ipv4_unicast,
            ipv6_unicast: self.ipv6_unicast,
            graceful_restart: self.graceful_restart,
            long_lived_stale_time: self
                .long_lived_stale_time
                .filter(|t| *t > 0 && self.graceful_restart.is_some()),
            add_path_receive: self.add_path.receive,
            add_path_send: self.add_path.send,
        }
    }
}
