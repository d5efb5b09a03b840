//! Address families, prefixes and next hops shared by several messages, and
//! the NLRI prefix codec.
//!
//! ```text
//! NLRI (RFC 4271 §4.3), with the optional ADD-PATH identifier (RFC 7911 §3):
//! +--------------------------------+
//! | Path Identifier (4 octets)     |  only if ADD-PATH receive was negotiated
//! +--------------------------------+
//! | Length (1 octet, in bits)      |
//! +--------------------------------+
//! | Prefix (ceil(Length/8) octets) |
//! +--------------------------------+
//! ```
//!
//! Decoding validates the prefix length against the address family (≤ 32 or
//! ≤ 128) and that the prefix octets are present; bits past the prefix length
//! are ignored (cleared), as RFC 4271 makes them irrelevant.

use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::{BufMut, BytesMut};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use nom::number::complete::{be_u32, be_u8};

/// Result of the small nom parsers used throughout the codec. The error type
/// is `()`: every call site maps a failure to the [`super::DecodeError`] its
/// position calls for.
pub(crate) type NomResult<'a, T> = nom::IResult<&'a [u8], T, ()>;

/// Takes exactly `n` octets.
pub(crate) fn take_bytes(input: &[u8], n: usize) -> NomResult<'_, &[u8]> {
    nom::bytes::complete::take(n)(input)
}

/// Address Family Identifier (IANA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Afi {
    /// IPv4 (1).
    Ipv4,
    /// IPv6 (2).
    Ipv6,
    /// Any other AFI, kept so capabilities for unknown families round-trip.
    /// Never holds 1 or 2 when built through `From<u16>`.
    Other(u16),
}

impl From<u16> for Afi {
    fn from(value: u16) -> Self {
        match value {
            1 => Afi::Ipv4,
            2 => Afi::Ipv6,
            other => Afi::Other(other),
        }
    }
}

impl From<Afi> for u16 {
    fn from(afi: Afi) -> Self {
        match afi {
            Afi::Ipv4 => 1,
            Afi::Ipv6 => 2,
            Afi::Other(other) => other,
        }
    }
}

/// Subsequent Address Family Identifier (IANA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Safi {
    /// Unicast (1).
    Unicast,
    /// Multicast (2).
    Multicast,
    /// Any other SAFI. Never holds 1 or 2 when built through `From<u8>`.
    Other(u8),
}

impl From<u8> for Safi {
    fn from(value: u8) -> Self {
        match value {
            1 => Safi::Unicast,
            2 => Safi::Multicast,
            other => Safi::Other(other),
        }
    }
}

impl From<Safi> for u8 {
    fn from(safi: Safi) -> Self {
        match safi {
            Safi::Unicast => 1,
            Safi::Multicast => 2,
            Safi::Other(other) => other,
        }
    }
}

/// An (AFI, SAFI) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Family {
    /// Address family.
    pub afi: Afi,
    /// Subsequent address family.
    pub safi: Safi,
}

impl Family {
    /// IPv4 unicast.
    pub const IPV4_UNICAST: Family = Family {
        afi: Afi::Ipv4,
        safi: Safi::Unicast,
    };
    /// IPv6 unicast.
    pub const IPV6_UNICAST: Family = Family {
        afi: Afi::Ipv6,
        safi: Safi::Unicast,
    };

    /// The unicast family of a prefix.
    pub fn unicast_of(prefix: &ipnet::IpNet) -> Family {
        match prefix {
            ipnet::IpNet::V4(_) => Family::IPV4_UNICAST,
            ipnet::IpNet::V6(_) => Family::IPV6_UNICAST,
        }
    }

    /// Builds a family from wire values.
    pub fn from_wire(afi: u16, safi: u8) -> Family {
        Family {
            afi: afi.into(),
            safi: safi.into(),
        }
    }

    /// Whether this codec can parse NLRI of this family (IPv4/IPv6 unicast and
    /// multicast share the plain prefix encoding).
    pub fn has_prefix_nlri(&self) -> bool {
        matches!(self.afi, Afi::Ipv4 | Afi::Ipv6)
            && matches!(self.safi, Safi::Unicast | Safi::Multicast)
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.afi, self.safi) {
            (Afi::Ipv4, Safi::Unicast) => f.write_str("ipv4-unicast"),
            (Afi::Ipv6, Safi::Unicast) => f.write_str("ipv6-unicast"),
            (Afi::Ipv4, Safi::Multicast) => f.write_str("ipv4-multicast"),
            (Afi::Ipv6, Safi::Multicast) => f.write_str("ipv6-multicast"),
            (afi, safi) => write!(f, "afi{}-safi{}", u16::from(afi), u8::from(safi)),
        }
    }
}

/// One announced or withdrawn prefix, with its ADD-PATH identifier when
/// ADD-PATH is in use for its family and direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nlri {
    /// The prefix; host bits are always zero after decoding.
    pub prefix: IpNet,
    /// RFC 7911 path identifier; `Some` exactly when ADD-PATH applies.
    pub path_id: Option<u32>,
}

impl Nlri {
    /// A prefix without path identifier.
    pub fn new(prefix: IpNet) -> Nlri {
        Nlri {
            prefix: prefix.trunc(),
            path_id: None,
        }
    }

    /// A prefix with an ADD-PATH identifier.
    pub fn with_path_id(prefix: IpNet, path_id: u32) -> Nlri {
        Nlri {
            prefix: prefix.trunc(),
            path_id: Some(path_id),
        }
    }

    /// Octets this NLRI takes on the wire.
    pub fn encoded_len(&self, add_path: bool) -> usize {
        let bits = usize::from(self.prefix.prefix_len());
        usize::from(add_path) * 4 + 1 + bits.div_ceil(8)
    }

    /// Appends the wire form. With `add_path` a missing path id is sent as 0.
    pub fn encode(&self, add_path: bool, buf: &mut BytesMut) {
        if add_path {
            buf.put_u32(self.path_id.unwrap_or(0));
        }
        let len = self.prefix.prefix_len();
        buf.put_u8(len);
        let octets = usize::from(len).div_ceil(8);
        match self.prefix {
            IpNet::V4(net) => buf.put_slice(&net.network().octets()[..octets]),
            IpNet::V6(net) => buf.put_slice(&net.network().octets()[..octets]),
        }
    }
}

/// Which address family a run of NLRI belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PrefixKind {
    V4,
    V6,
}

impl PrefixKind {
    pub(crate) fn of(afi: Afi) -> Option<PrefixKind> {
        match afi {
            Afi::Ipv4 => Some(PrefixKind::V4),
            Afi::Ipv6 => Some(PrefixKind::V6),
            Afi::Other(_) => None,
        }
    }
}

/// Decodes a run of NLRI filling all of `input`. `None` if any prefix is
/// malformed (too long for the family, or truncated).
pub(crate) fn decode_nlri_run(input: &[u8], kind: PrefixKind, add_path: bool) -> Option<Vec<Nlri>> {
    let mut out = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let path_id = if add_path {
            let (r, id) = be_u32::<_, ()>(rest).ok()?;
            rest = r;
            Some(id)
        } else {
            None
        };
        let (r, len) = be_u8::<_, ()>(rest).ok()?;
        let max = match kind {
            PrefixKind::V4 => 32,
            PrefixKind::V6 => 128,
        };
        if len > max {
            return None;
        }
        let (r, octets) = take_bytes(r, usize::from(len).div_ceil(8)).ok()?;
        rest = r;
        let prefix = match kind {
            PrefixKind::V4 => {
                let mut addr = [0u8; 4];
                addr[..octets.len()].copy_from_slice(octets);
                IpNet::V4(Ipv4Net::new(Ipv4Addr::from(addr), len).ok()?.trunc())
            }
            PrefixKind::V6 => {
                let mut addr = [0u8; 16];
                addr[..octets.len()].copy_from_slice(octets);
                IpNet::V6(Ipv6Net::new(Ipv6Addr::from(addr), len).ok()?.trunc())
            }
        };
        out.push(Nlri { prefix, path_id });
    }
    Some(out)
}

/// The next hop of an MP_REACH_NLRI attribute (RFC 4760 §3, RFC 2545 §3 for
/// the IPv6 global + link-local form, RFC 8950 for IPv6 next hops of IPv4
/// routes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NextHop {
    /// A 4-octet IPv4 next hop.
    V4(Ipv4Addr),
    /// A 16-octet global IPv6 next hop, optionally followed by a link-local
    /// one (32 octets in total).
    V6 {
        /// Global address (BIRD sends `::` here when it has only a link-local).
        global: Ipv6Addr,
        /// Link-local address, present in the 32-octet form.
        link_local: Option<Ipv6Addr>,
    },
}

impl NextHop {
    /// Octets on the wire.
    pub fn encoded_len(&self) -> usize {
        match self {
            NextHop::V4(_) => 4,
            NextHop::V6 {
                link_local: None, ..
            } => 16,
            NextHop::V6 {
                link_local: Some(_),
                ..
            } => 32,
        }
    }

    pub(crate) fn encode(&self, buf: &mut BytesMut) {
        match self {
            NextHop::V4(addr) => buf.put_slice(&addr.octets()),
            NextHop::V6 { global, link_local } => {
                buf.put_slice(&global.octets());
                if let Some(ll) = link_local {
                    buf.put_slice(&ll.octets());
                }
            }
        }
    }

    /// Parses a next hop of 4, 16 or 32 octets; `None` for any other length.
    pub(crate) fn decode(octets: &[u8]) -> Option<NextHop> {
        match octets.len() {
            4 => Some(NextHop::V4(Ipv4Addr::from(
                <[u8; 4]>::try_from(octets).ok()?,
            ))),
            16 => Some(NextHop::V6 {
                global: Ipv6Addr::from(<[u8; 16]>::try_from(octets).ok()?),
                link_local: None,
            }),
            32 => Some(NextHop::V6 {
                global: Ipv6Addr::from(<[u8; 16]>::try_from(&octets[..16]).ok()?),
                link_local: Some(Ipv6Addr::from(<[u8; 16]>::try_from(&octets[16..]).ok()?)),
            }),
            _ => None,
        }
    }
}
