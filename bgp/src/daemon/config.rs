//! The `brindle-bgpd` YAML configuration.
//!
//! ```yaml
//! asn: 64512                    # 1..=4294967295; 4-octet ASNs are fine
//! router_id: 10.0.0.1           # IPv4, not 0.0.0.0
//! listen: 0.0.0.0:179           # address:port, or `none` to never accept
//! control_socket: /run/brindle-bgpd.sock
//! cluster_id: 10.0.0.1          # makes this speaker a route reflector
//! log_level: info               # error | warn | info | debug | trace
//! graceful_restart:             # absent: off (RFC 4724)
//!   restart_time: 120
//!   long_lived_stale_time: 3600 # absent: no long-lived GR (RFC 9494)
//! originate:
//!   - 10.20.0.0/26              # a bare prefix, or a mapping:
//!   - prefix: 10.20.1.0/26
//!     communities: ["64512:100", no-export]
//!     large_communities: ["64512:1:2"]
//!     med: 10
//!     local_pref: 200           # only sent to iBGP peers
//!     next_hop: 10.0.0.9        # default: the session's local address
//! peers:
//!   - address: 10.0.0.2         # required
//!     asn: 64513                # required; equal to `asn` means iBGP
//!     port: 179
//!     passive: false            # only accept, never connect
//!     route_reflector_client: false   # iBGP only; needs cluster_id
//!     next_hop_self: false
//!     hold_time: 90             # 0 or 3..=65535
//!     keepalive: 30             # default: negotiated hold / 3; < hold_time
//!     connect_retry: 5          # seconds between connection attempts, >= 1
//!     password: secret          # TCP MD5 (RFC 2385), 1..=80 bytes
//!     local_address: 10.0.0.1   # same family as address
//!     families: [ipv4, ipv6]    # default: the family of `address`
//!     graceful_restart: true    # default: on when the global block is set
//!     bfd: false                # single-hop BFD, 100 ms x 3 (RFC 5880/5881)
//!     ttl_security: 1           # GTSM (RFC 5082): the peer is this many hops away, 1..=255
//!     description: "ToR A"
//! ```
//!
//! Contract: [`Config::parse`] never panics; every rejection is a
//! [`ConfigError`] whose message names the offending key path and carries the
//! 1-based line and column where the problem is (for a per-peer check that
//! involves several keys, the first line of that peer's entry; for checks
//! across the whole file, line 1). Unknown keys are errors. Validated: value
//! ranges (ASN ≠ 0, hold time 0 or ≥ 3, keepalive < hold time, password length,
//! prefixes strictly masked, next hop family matching the prefix), families of
//! addresses agreeing, route-reflector clients being iBGP with a cluster id,
//! and peer addresses being unique.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use ipnet::IpNet;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::packet::{Community, Family, LargeCommunity};

/// Default control socket path.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/brindle-bgpd.sock";
/// Default hold time offered to peers (seconds), as GoBGP and OpenBGPD.
pub const DEFAULT_HOLD_TIME: u16 = 90;
/// Default seconds between connection attempts.
pub const DEFAULT_CONNECT_RETRY: u16 = 5;
/// Default graceful-restart time (seconds) announced to peers.
pub const DEFAULT_RESTART_TIME: u16 = 120;
/// TCP MD5 keys are at most 80 bytes (Linux `TCP_MD5SIG_MAXKEYLEN`).
pub const MAX_PASSWORD_LEN: usize = 80;

/// A configuration that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (line {line}, column {column})")]
pub struct ConfigError {
    /// What is wrong, with the key path (e.g. `peers[1].hold_time: …`).
    pub message: String,
    /// 1-based line of the problem.
    pub line: usize,
    /// 1-based column of the problem.
    pub column: usize,
}

/// The whole daemon configuration; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub asn: u32,
    pub router_id: Ipv4Addr,
    /// `None`: do not accept connections (every peer must be active).
    pub listen: Option<SocketAddr>,
    pub control_socket: PathBuf,
    pub cluster_id: Option<Ipv4Addr>,
    pub log_level: LogLevel,
    pub graceful_restart: Option<GracefulRestart>,
    pub originate: Vec<Originate>,
    pub peers: Vec<Peer>,
}

/// Log verbosity (the `tracing` levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// The name `tracing_subscriber::EnvFilter` understands.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// Graceful restart (RFC 4724) settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GracefulRestart {
    /// Seconds peers keep our routes while we restart (12 bits on the wire).
    #[serde(default = "default_restart_time", deserialize_with = "restart_time")]
    pub restart_time: u16,
    /// Long-lived graceful restart (RFC 9494): seconds peers keep our
    /// routes, marked `LLGR_STALE`, after the restart time (24 bits).
    #[serde(default, deserialize_with = "long_lived_stale_time")]
    pub long_lived_stale_time: Option<u32>,
}

fn long_lived_stale_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    checked_int(d, |v| {
        if v == 0 || v > 0x00ff_ffff {
            return Err(format!(
                "long_lived_stale_time {v} is outside 1..=16777215 (24 bits)"
            ));
        }
        Ok(Some(v as u32))
    })
}

fn default_restart_time() -> u16 {
    DEFAULT_RESTART_TIME
}

fn restart_time<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    checked_int(d, |v| {
        if v > 4095 {
            return Err(format!(
                "restart_time {v} does not fit the 12-bit field (0..=4095)"
            ));
        }
        fits(v, "restart_time")
    })
}

/// Deserializes an integer and checks it inside the visitor, so the error
/// carries the line and column of the value itself (serde_yaml_ng only marks
/// errors raised while the scalar is being visited).
fn checked_int<'de, D, T, F>(d: D, check: F) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    F: FnOnce(u64) -> Result<T, String>,
{
    struct V<F>(F);
    impl<'de, T, F: FnOnce(u64) -> Result<T, String>> Visitor<'de> for V<F> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a non-negative integer")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
            (self.0)(v).map_err(E::custom)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
            match u64::try_from(v) {
                Ok(v) => self.visit_u64(v),
                Err(_) => Err(E::custom(format!("{v} is negative"))),
            }
        }
    }
    d.deserialize_u64(V(check))
}

/// Like [`checked_int`] for a string value.
fn checked_str<'de, D, T, F>(d: D, check: F) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    F: FnOnce(&str) -> Result<T, String>,
{
    struct V<F>(F);
    impl<'de, T, F: FnOnce(&str) -> Result<T, String>> Visitor<'de> for V<F> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            (self.0)(v).map_err(E::custom)
        }
    }
    d.deserialize_str(V(check))
}

fn fits<T: TryFrom<u64>>(v: u64, what: &str) -> Result<T, String> {
    T::try_from(v).map_err(|_| format!("{what} {v} is out of range"))
}

/// A prefix this speaker announces, with the attributes it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Originate {
    pub prefix: IpNet,
    pub communities: Vec<Community>,
    pub large_communities: Vec<LargeCommunity>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    /// `None`: the local address of each session (next hop self).
    pub next_hop: Option<IpAddr>,
}

impl Originate {
    /// A bare prefix with no extra attributes.
    pub fn prefix(prefix: IpNet) -> Self {
        Originate {
            prefix,
            communities: Vec::new(),
            large_communities: Vec::new(),
            med: None,
            local_pref: None,
            next_hop: None,
        }
    }
}

/// One configured BGP neighbor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub address: IpAddr,
    pub asn: u32,
    pub port: u16,
    pub passive: bool,
    pub route_reflector_client: bool,
    pub next_hop_self: bool,
    /// Offered hold time; 0 disables keepalives.
    pub hold_time: u16,
    /// Seconds between KEEPALIVEs; `None`: a third of the negotiated hold
    /// time (which may be lower than ours).
    pub keepalive: Option<u16>,
    pub connect_retry: u16,
    pub password: Option<String>,
    pub local_address: Option<IpAddr>,
    pub families: Vec<Family>,
    /// `None`: follow the global `graceful_restart` block.
    pub graceful_restart: Option<bool>,
    /// Run BFD with the peer (default timers).
    pub bfd: bool,
    /// GTSM with the peer this many hops away.
    pub ttl_security: Option<u8>,
    pub description: Option<String>,
}

impl Peer {
    /// Whether the session is iBGP under `config`.
    pub fn is_ibgp(&self, config: &Config) -> bool {
        self.asn == config.asn
    }

    /// Whether graceful restart is advertised to this peer.
    pub fn graceful_restart_enabled(&self, config: &Config) -> bool {
        self.graceful_restart
            .unwrap_or(config.graceful_restart.is_some())
    }
}

impl Config {
    /// Parses and validates YAML text; see the module docs.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = serde_yaml_ng::from_str(text).map_err(|e| {
            let (line, column) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((1, 1));
            ConfigError {
                message: strip_location(&e.to_string()),
                line,
                column,
            }
        })?;
        raw.validate(text)
    }

    /// Reads and parses a file; I/O errors are reported at line 1.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            message: format!("cannot read {}: {e}", path.display()),
            line: 1,
            column: 1,
        })?;
        Config::parse(&text)
    }

    /// The configured peer with `address`.
    pub fn peer(&self, address: IpAddr) -> Option<&Peer> {
        self.peers.iter().find(|p| p.address == address)
    }
}

/// serde_yaml_ng appends " at line L column C"; we keep the numbers in
/// fields and print them once.
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(deserialize_with = "asn")]
    asn: u32,
    #[serde(deserialize_with = "router_id")]
    router_id: Ipv4Addr,
    #[serde(default = "default_listen", deserialize_with = "listen")]
    listen: Option<SocketAddr>,
    #[serde(default = "default_control_socket")]
    control_socket: PathBuf,
    #[serde(default, deserialize_with = "cluster_id")]
    cluster_id: Option<Ipv4Addr>,
    #[serde(default)]
    log_level: LogLevel,
    #[serde(default)]
    graceful_restart: Option<GracefulRestart>,
    #[serde(default)]
    originate: Vec<Originate>,
    #[serde(default)]
    peers: Vec<Peer>,
}

fn default_listen() -> Option<SocketAddr> {
    Some(SocketAddr::from(([0, 0, 0, 0], 179)))
}

fn default_control_socket() -> PathBuf {
    PathBuf::from(DEFAULT_CONTROL_SOCKET)
}

fn asn<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    checked_int(d, |v| match v {
        0 => Err("AS 0 is reserved (RFC 7607)".to_string()),
        v => fits(v, "AS number"),
    })
}

fn router_id<'de, D: Deserializer<'de>>(d: D) -> Result<Ipv4Addr, D::Error> {
    checked_str(d, |s| match s.parse::<Ipv4Addr>() {
        Ok(a) if a.is_unspecified() => {
            Err("router_id 0.0.0.0 is not a valid BGP identifier".to_string())
        }
        Ok(a) => Ok(a),
        Err(_) => Err(format!("router_id {s:?} is not an IPv4 address")),
    })
}

fn cluster_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Ipv4Addr>, D::Error> {
    checked_str(d, |s| match s.parse::<Ipv4Addr>() {
        Ok(a) if a.is_unspecified() => Err("cluster_id 0.0.0.0 is not allowed".to_string()),
        Ok(a) => Ok(Some(a)),
        Err(_) => Err(format!("cluster_id {s:?} is not an IPv4 address")),
    })
}

fn listen<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    checked_str(d, |text| {
        if text == "none" {
            return Ok(None);
        }
        text.parse().map(Some).map_err(|_| {
            format!("listen {text:?} is not address:port (e.g. 0.0.0.0:179 or [::]:179) or `none`")
        })
    })
}

impl RawConfig {
    fn validate(self, text: &str) -> Result<Config, ConfigError> {
        let mut seen: HashMap<IpAddr, usize> = HashMap::new();
        for (i, peer) in self.peers.iter().enumerate() {
            let at = |message: String| {
                let line = peer_line(text, i).unwrap_or(1);
                ConfigError {
                    message: format!("peers[{i}]: {message}"),
                    line,
                    column: 1,
                }
            };
            // The speaker keys peers by their canonical form (an IPv4 peer
            // reaches an IPv6 socket as ::ffff:a.b.c.d), so must the check.
            if let Some(first) = seen.insert(crate::speaker::canonical_address(peer.address), i) {
                return Err(at(format!(
                    "peer {} is already configured as peers[{first}]",
                    peer.address
                )));
            }
            let ibgp = peer.asn == self.asn;
            if peer.route_reflector_client && !ibgp {
                return Err(at(format!(
                    "route_reflector_client needs an iBGP peer (asn {} ≠ local {})",
                    peer.asn, self.asn
                )));
            }
            if peer.route_reflector_client && self.cluster_id.is_none() {
                return Err(at(
                    "route_reflector_client needs a top-level cluster_id".to_string()
                ));
            }
            if peer.graceful_restart == Some(true) && self.graceful_restart.is_none() {
                return Err(at(
                    "graceful_restart: true needs the top-level graceful_restart block".to_string(),
                ));
            }
            if let Some(listen) = self.listen {
                if peer.passive
                    && listen.ip().is_ipv4() != peer.address.is_ipv4()
                    && !listen.ip().is_unspecified()
                {
                    return Err(at(format!(
                        "passive peer {} can never reach listen address {listen}",
                        peer.address
                    )));
                }
            }
            if peer.passive && self.listen.is_none() {
                return Err(at("passive peer but listen is `none`".to_string()));
            }
        }
        for (i, o) in self.originate.iter().enumerate() {
            if let Some(next_hop) = o.next_hop {
                if next_hop.is_ipv4() != matches!(o.prefix, IpNet::V4(_)) {
                    return Err(ConfigError {
                        message: format!(
                            "originate[{i}]: next_hop {next_hop} is not in the family of {}",
                            o.prefix
                        ),
                        line: list_item_line(text, "originate", i).unwrap_or(1),
                        column: 1,
                    });
                }
            }
        }
        Ok(Config {
            asn: self.asn,
            router_id: self.router_id,
            listen: self.listen,
            control_socket: self.control_socket,
            cluster_id: self.cluster_id,
            log_level: self.log_level,
            graceful_restart: self.graceful_restart,
            originate: self.originate,
            peers: self.peers,
        })
    }
}

fn peer_line(text: &str, index: usize) -> Option<usize> {
    list_item_line(text, "peers", index)
}

/// Line of the `index`-th item of the block sequence under top-level `key`
/// (`- ` items), for errors that involve several keys of one item. Flow
/// sequences (`[…]`) fall back to the key's line.
fn list_item_line(text: &str, key: &str, index: usize) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with(&format!("{key}:")))?;
    let mut seen = 0;
    let mut item_indent: Option<usize> = None;
    for (n, line) in lines.iter().enumerate().skip(start + 1) {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        if indent == 0 && !trimmed.starts_with('-') {
            break;
        }
        if trimmed.starts_with('-') && item_indent.is_none_or(|i| i == indent) {
            item_indent = Some(indent);
            if seen == index {
                return Some(n + 1);
            }
            seen += 1;
        }
    }
    Some(start + 1)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    address: IpAddr,
    #[serde(deserialize_with = "asn")]
    asn: u32,
    #[serde(default = "default_port")]
    port: u16,
    #[serde(default)]
    passive: bool,
    #[serde(default)]
    route_reflector_client: bool,
    #[serde(default)]
    next_hop_self: bool,
    #[serde(default = "default_hold_time", deserialize_with = "hold_time")]
    hold_time: u16,
    #[serde(default)]
    keepalive: Option<u16>,
    #[serde(default = "default_connect_retry", deserialize_with = "connect_retry")]
    connect_retry: u16,
    #[serde(default, deserialize_with = "password")]
    password: Option<String>,
    #[serde(default)]
    local_address: Option<IpAddr>,
    #[serde(default, deserialize_with = "families")]
    families: Option<Vec<Family>>,
    #[serde(default)]
    graceful_restart: Option<bool>,
    #[serde(default)]
    bfd: bool,
    #[serde(default, deserialize_with = "ttl_security")]
    ttl_security: Option<u8>,
    #[serde(default)]
    description: Option<String>,
}

fn ttl_security<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
    checked_int(d, |v| match v {
        0 => Err("ttl_security is the peer's distance in hops, 1..=255".to_string()),
        v => fits(v, "ttl_security").map(Some),
    })
}

fn default_port() -> u16 {
    179
}
fn default_hold_time() -> u16 {
    DEFAULT_HOLD_TIME
}
fn default_connect_retry() -> u16 {
    DEFAULT_CONNECT_RETRY
}

fn hold_time<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    checked_int(d, |v| {
        if v == 1 || v == 2 {
            return Err(format!(
                "hold_time {v} is invalid: 0 or at least 3 seconds (RFC 4271 §4.2)"
            ));
        }
        fits(v, "hold_time")
    })
}

fn connect_retry<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    checked_int(d, |v| match v {
        0 => Err("connect_retry must be at least 1 second".to_string()),
        v => fits(v, "connect_retry"),
    })
}

fn password<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    checked_str(d, |value| {
        if value.is_empty() || value.len() > MAX_PASSWORD_LEN {
            return Err(format!(
                "password must be 1..={MAX_PASSWORD_LEN} bytes (TCP MD5 key), got {}",
                value.len()
            ));
        }
        Ok(Some(value.to_string()))
    })
}

fn families<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Family>>, D::Error> {
    let names = Vec::<FamilyText>::deserialize(d)?;
    if names.is_empty() {
        return Err(de::Error::custom("families must name at least one family"));
    }
    let mut out = Vec::new();
    for FamilyText(family) in names {
        if !out.contains(&family) {
            out.push(family);
        }
    }
    Ok(Some(out))
}

struct FamilyText(Family);

impl<'de> Deserialize<'de> for FamilyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |name| match name {
            "ipv4" | "ipv4-unicast" => Ok(FamilyText(Family::IPV4_UNICAST)),
            "ipv6" | "ipv6-unicast" => Ok(FamilyText(Family::IPV6_UNICAST)),
            other => Err(format!("unknown family {other:?}; expected ipv4 or ipv6")),
        })
    }
}

impl<'de> Deserialize<'de> for Peer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawPeer::deserialize(d)?;
        let keepalive = match raw.keepalive {
            Some(k) if raw.hold_time == 0 && k != 0 => {
                return Err(de::Error::custom(
                    "keepalive must be 0 (or absent) when hold_time is 0",
                ))
            }
            Some(k) if raw.hold_time != 0 && (k == 0 || k >= raw.hold_time) => {
                return Err(de::Error::custom(format!(
                    "keepalive {k} must be between 1 and hold_time - 1 ({})",
                    raw.hold_time - 1
                )))
            }
            k => k,
        };
        if let Some(local) = raw.local_address {
            if local.is_ipv4() != raw.address.is_ipv4() {
                return Err(de::Error::custom(format!(
                    "local_address {local} is not in the family of address {}",
                    raw.address
                )));
            }
        }
        if raw.port == 0 {
            return Err(de::Error::custom("port 0 is not a valid peer port"));
        }
        let families = raw.families.unwrap_or_else(|| {
            vec![if raw.address.is_ipv4() {
                Family::IPV4_UNICAST
            } else {
                Family::IPV6_UNICAST
            }]
        });
        Ok(Peer {
            address: raw.address,
            asn: raw.asn,
            port: raw.port,
            passive: raw.passive,
            route_reflector_client: raw.route_reflector_client,
            next_hop_self: raw.next_hop_self,
            hold_time: raw.hold_time,
            keepalive,
            connect_retry: raw.connect_retry,
            password: raw.password,
            local_address: raw.local_address,
            families,
            graceful_restart: raw.graceful_restart,
            bfd: raw.bfd,
            ttl_security: raw.ttl_security,
            description: raw.description,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOriginate {
    #[serde(deserialize_with = "prefix")]
    prefix: IpNet,
    #[serde(default)]
    communities: Vec<CommunityText>,
    #[serde(default)]
    large_communities: Vec<LargeCommunityText>,
    #[serde(default)]
    med: Option<u32>,
    #[serde(default)]
    local_pref: Option<u32>,
    #[serde(default)]
    next_hop: Option<IpAddr>,
}

fn parse_prefix(text: &str) -> Result<IpNet, String> {
    let net: IpNet = text
        .parse()
        .map_err(|_| format!("{text:?} is not a prefix (e.g. 10.20.0.0/26)"))?;
    if net.trunc() != net {
        return Err(format!(
            "prefix {text} has host bits set; did you mean {}?",
            net.trunc()
        ));
    }
    Ok(net)
}

fn prefix<'de, D: Deserializer<'de>>(d: D) -> Result<IpNet, D::Error> {
    checked_str(d, parse_prefix)
}

impl<'de> Deserialize<'de> for Originate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct OriginateVisitor;
        impl<'de> Visitor<'de> for OriginateVisitor {
            type Value = Originate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a prefix or a mapping with `prefix` and attributes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Originate, E> {
                parse_prefix(v).map(Originate::prefix).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Originate, A::Error> {
                let raw = RawOriginate::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Originate {
                    prefix: raw.prefix,
                    communities: raw.communities.into_iter().map(|c| c.0).collect(),
                    large_communities: raw.large_communities.into_iter().map(|c| c.0).collect(),
                    med: raw.med,
                    local_pref: raw.local_pref,
                    next_hop: raw.next_hop,
                })
            }
        }
        d.deserialize_any(OriginateVisitor)
    }
}

/// `asn:value` or a well-known name (`no-export`, `no-advertise`,
/// `no-export-subconfed`).
struct CommunityText(Community);

impl FromStr for CommunityText {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let named = match s {
            "no-export" | "no_export" => Some(Community::NO_EXPORT),
            "no-advertise" | "no_advertise" => Some(Community::NO_ADVERTISE),
            "no-export-subconfed" | "no_export_subconfed" => Some(Community::NO_EXPORT_SUBCONFED),
            _ => None,
        };
        if let Some(c) = named {
            return Ok(CommunityText(c));
        }
        let bad = || {
            format!("community {s:?} is not asn:value (two 16-bit numbers) or a well-known name")
        };
        let (a, v) = s.split_once(':').ok_or_else(bad)?;
        let a: u16 = a.parse().map_err(|_| bad())?;
        let v: u16 = v.parse().map_err(|_| bad())?;
        Ok(CommunityText(Community::new(a, v)))
    }
}

impl<'de> Deserialize<'de> for CommunityText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, str::parse)
    }
}

/// `global:local1:local2`, three 32-bit numbers (RFC 8092).
struct LargeCommunityText(LargeCommunity);

impl FromStr for LargeCommunityText {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("large community {s:?} is not global:local1:local2 (32-bit numbers)");
        let parts: Vec<u32> = s
            .split(':')
            .map(|p| p.parse::<u32>().map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        match parts[..] {
            [global_admin, local_data1, local_data2] => Ok(LargeCommunityText(LargeCommunity {
                global_admin,
                local_data1,
                local_data2,
            })),
            _ => Err(bad()),
        }
    }
}

impl<'de> Deserialize<'de> for LargeCommunityText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, str::parse)
    }
}

/// `asn:value` text of a community, well-known ones by name.
pub fn community_text(c: Community) -> String {
    match c {
        Community::NO_EXPORT => "no-export".to_string(),
        Community::NO_ADVERTISE => "no-advertise".to_string(),
        Community::NO_EXPORT_SUBCONFED => "no-export-subconfed".to_string(),
        Community(v) => format!("{}:{}", v >> 16, v & 0xFFFF),
    }
}

/// `global:local1:local2` text of a large community.
pub fn large_community_text(c: LargeCommunity) -> String {
    format!("{}:{}:{}", c.global_admin, c.local_data1, c.local_data2)
}

#[cfg(test)]
mod tests;
