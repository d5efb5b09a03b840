//! Path attributes (RFC 4271 §4.3 and §5, plus RFC 1997, 4360, 4456, 4760,
//! 6793, 8092) and their RFC 7606 error handling.
//!
//! ```text
//! Path attribute:
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |O|T|P|E| 0000  |   Type Code   | Length (1 or 2 octets, E bit) |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                Value (Length octets)                          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!  O optional, T transitive, P partial, E extended length
//!
//! AS_PATH / AS4_PATH value: a sequence of segments
//! +--------------+--------------+------------------------------------+
//! | Type (1)     | Count (1)    | Count x AS number (2 or 4 octets)  |
//! +--------------+--------------+------------------------------------+
//!  1 AS_SET, 2 AS_SEQUENCE, 3 AS_CONFED_SEQUENCE, 4 AS_CONFED_SET
//! ```
//!
//! [`PathAttributes`] is the decoded, session-independent form the RIB
//! stores and interns (`Clone + Eq + Hash`): AS numbers are always 32-bit
//! (AS4_PATH / AS4_AGGREGATOR are merged on receive and regenerated on send
//! toward 2-octet peers), MP_REACH/MP_UNREACH live in [`super::Update`].
//!
//! Error handling per attribute follows RFC 7606 §7: malformed ORIGIN,
//! AS_PATH, NEXT_HOP, MED, LOCAL_PREF, COMMUNITIES, ORIGINATOR_ID,
//! CLUSTER_LIST, EXTENDED_COMMUNITIES and LARGE_COMMUNITY mean
//! treat-as-withdraw; ATOMIC_AGGREGATE, AGGREGATOR, AS4_PATH and
//! AS4_AGGREGATOR are discarded; malformed MP_REACH/MP_UNREACH reset the
//! session. Optional/transitive flag bits that contradict the attribute type
//! make it malformed. Repeated attributes: the first wins (MP_* twice resets).
//! Unknown optional transitive attributes are kept with the Partial bit set;
//! unknown optional non-transitive ones are dropped; unknown well-known ones
//! mean treat-as-withdraw. Nothing here panics on any input.

use std::net::Ipv4Addr;

use bytes::{BufMut, BytesMut};
use nom::number::complete::{be_u16, be_u8};

use super::context::{DecodeContext, EncodeContext};
use super::error::{DecodeError, EncodeError};
use super::open::AS_TRANS;
use super::types::{decode_nlri_run, take_bytes, Family, NextHop, PrefixKind};
use super::update::{MpReach, MpUnreach};

mod as_path;
mod decode;
pub use as_path::{AsPath, AsSegment, AsSegmentType};
pub(crate) use decode::decode_attributes;

/// Attribute flag: optional.
pub const FLAG_OPTIONAL: u8 = 0x80;
/// Attribute flag: transitive.
pub const FLAG_TRANSITIVE: u8 = 0x40;
/// Attribute flag: partial.
pub const FLAG_PARTIAL: u8 = 0x20;
/// Attribute flag: extended (2-octet) length.
pub const FLAG_EXTENDED_LENGTH: u8 = 0x10;

/// Attribute type codes.
pub mod attr_type {
    /// ORIGIN.
    pub const ORIGIN: u8 = 1;
    /// AS_PATH.
    pub const AS_PATH: u8 = 2;
    /// NEXT_HOP.
    pub const NEXT_HOP: u8 = 3;
    /// MULTI_EXIT_DISC.
    pub const MED: u8 = 4;
    /// LOCAL_PREF.
    pub const LOCAL_PREF: u8 = 5;
    /// ATOMIC_AGGREGATE.
    pub const ATOMIC_AGGREGATE: u8 = 6;
    /// AGGREGATOR.
    pub const AGGREGATOR: u8 = 7;
    /// COMMUNITIES.
    pub const COMMUNITIES: u8 = 8;
    /// ORIGINATOR_ID.
    pub const ORIGINATOR_ID: u8 = 9;
    /// CLUSTER_LIST.
    pub const CLUSTER_LIST: u8 = 10;
    /// MP_REACH_NLRI.
    pub const MP_REACH_NLRI: u8 = 14;
    /// MP_UNREACH_NLRI.
    pub const MP_UNREACH_NLRI: u8 = 15;
    /// EXTENDED_COMMUNITIES.
    pub const EXTENDED_COMMUNITIES: u8 = 16;
    /// AS4_PATH.
    pub const AS4_PATH: u8 = 17;
    /// AS4_AGGREGATOR.
    pub const AS4_AGGREGATOR: u8 = 18;
    /// LARGE_COMMUNITY.
    pub const LARGE_COMMUNITY: u8 = 32;
}

/// Whether this codec interprets the attribute type (everything else is
/// handled as unknown).
pub fn is_known_attribute(type_code: u8) -> bool {
    matches!(type_code, 1..=10 | 14..=18 | 32)
}

/// ORIGIN value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    /// 0: IGP.
    Igp,
    /// 1: EGP.
    Egp,
    /// 2: INCOMPLETE.
    Incomplete,
}

impl Origin {
    fn from_wire(value: u8) -> Option<Origin> {
        match value {
            0 => Some(Origin::Igp),
            1 => Some(Origin::Egp),
            2 => Some(Origin::Incomplete),
            _ => None,
        }
    }
    fn to_wire(self) -> u8 {
        match self {
            Origin::Igp => 0,
            Origin::Egp => 1,
            Origin::Incomplete => 2,
        }
    }
}

/// AGGREGATOR value with a 32-bit AS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Aggregator {
    /// AS of the aggregating speaker.
    pub asn: u32,
    /// Its BGP identifier / address.
    pub address: Ipv4Addr,
}

/// A standard community (RFC 1997).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Community(pub u32);

impl Community {
    /// LLGR_STALE (RFC 9494): a route kept after its session ended.
    pub const LLGR_STALE: Community = Community(0xFFFF_0006);
    /// NO_LLGR (RFC 9494): not to be kept as long-lived stale.
    pub const NO_LLGR: Community = Community(0xFFFF_0007);
    /// NO_EXPORT.
    pub const NO_EXPORT: Community = Community(0xFFFF_FF01);
    /// NO_ADVERTISE.
    pub const NO_ADVERTISE: Community = Community(0xFFFF_FF02);
    /// NO_EXPORT_SUBCONFED.
    pub const NO_EXPORT_SUBCONFED: Community = Community(0xFFFF_FF03);

    /// `asn:value` form.
    pub fn new(asn: u16, value: u16) -> Community {
        Community((u32::from(asn) << 16) | u32::from(value))
    }
}

/// An extended community (RFC 4360), kept as its 8 octets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExtendedCommunity(pub [u8; 8]);

/// A large community (RFC 8092).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LargeCommunity {
    /// Global administrator (an AS).
    pub global_admin: u32,
    /// Local data part 1.
    pub local_data1: u32,
    /// Local data part 2.
    pub local_data2: u32,
}

/// An attribute this codec does not interpret, passed on verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RawAttribute {
    /// Optional, transitive and partial bits (the extended-length bit is
    /// recomputed on encode); received unknown optional transitive attributes
    /// have the Partial bit set. Kept sorted by type code after decoding.
    pub flags: u8,
    /// Type code.
    pub type_code: u8,
    /// Value.
    pub value: Vec<u8>,
}

/// The path attributes of a route, independent of the session they came
/// from (4-octet AS numbers, no MP_* attributes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct PathAttributes {
    /// ORIGIN.
    pub origin: Option<Origin>,
    /// AS_PATH (merged with AS4_PATH when received from a 2-octet peer).
    pub as_path: Option<AsPath>,
    /// NEXT_HOP (classic IPv4).
    pub next_hop: Option<Ipv4Addr>,
    /// MULTI_EXIT_DISC.
    pub med: Option<u32>,
    /// LOCAL_PREF.
    pub local_pref: Option<u32>,
    /// ATOMIC_AGGREGATE present.
    pub atomic_aggregate: bool,
    /// AGGREGATOR (merged with AS4_AGGREGATOR).
    pub aggregator: Option<Aggregator>,
    /// COMMUNITIES; empty means absent.
    pub communities: Vec<Community>,
    /// ORIGINATOR_ID (RFC 4456).
    pub originator_id: Option<Ipv4Addr>,
    /// CLUSTER_LIST (RFC 4456); empty means absent.
    pub cluster_list: Vec<Ipv4Addr>,
    /// EXTENDED_COMMUNITIES; empty means absent.
    pub extended_communities: Vec<ExtendedCommunity>,
    /// LARGE_COMMUNITY; empty means absent.
    pub large_communities: Vec<LargeCommunity>,
    /// Unknown optional transitive attributes, passed on.
    pub unknown: Vec<RawAttribute>,
}

/// How an UPDATE must be handled after decoding (RFC 7606 §2). Session
/// reset is not an outcome: it is the `Err` of decoding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// Everything parsed; use the UPDATE as is.
    #[default]
    Ok,
    /// Some malformed attributes were dropped; the rest is usable. Each
    /// entry is the NOTIFICATION the error would have meant, for logging.
    AttributeDiscard(Vec<DecodeError>),
    /// Treat every announced prefix (NLRI and MP_REACH) as withdrawn (see
    /// [`super::Update::into_withdrawals`]). Also lists discarded attributes.
    TreatAsWithdraw(Vec<DecodeError>),
}

impl UpdateOutcome {
    pub(crate) fn discard(&mut self, reason: DecodeError) {
        match self {
            UpdateOutcome::Ok => *self = UpdateOutcome::AttributeDiscard(vec![reason]),
            UpdateOutcome::AttributeDiscard(v) | UpdateOutcome::TreatAsWithdraw(v) => {
                v.push(reason)
            }
        }
    }

    pub(crate) fn withdraw(&mut self, reason: DecodeError) {
        match self {
            UpdateOutcome::Ok => *self = UpdateOutcome::TreatAsWithdraw(vec![reason]),
            UpdateOutcome::AttributeDiscard(v) => {
                let mut reasons = std::mem::take(v);
                reasons.push(reason);
                *self = UpdateOutcome::TreatAsWithdraw(reasons);
            }
            UpdateOutcome::TreatAsWithdraw(v) => v.push(reason),
        }
    }

    /// Whether the announced routes must be treated as withdrawn.
    pub fn is_treat_as_withdraw(&self) -> bool {
        matches!(self, UpdateOutcome::TreatAsWithdraw(_))
    }

    /// The reasons recorded (empty when `Ok`).
    pub fn reasons(&self) -> &[DecodeError] {
        match self {
            UpdateOutcome::Ok => &[],
            UpdateOutcome::AttributeDiscard(v) | UpdateOutcome::TreatAsWithdraw(v) => v,
        }
    }
}

/// Writes one attribute header and value, choosing the length form.
pub(crate) fn put_attribute(
    flags: u8,
    type_code: u8,
    value: &[u8],
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    let len = u16::try_from(value.len())
        .map_err(|_| EncodeError::Unrepresentable("attribute value over 65535 octets"))?;
    if len > 255 {
        buf.put_u8((flags & !FLAG_EXTENDED_LENGTH) | FLAG_EXTENDED_LENGTH);
        buf.put_u8(type_code);
        buf.put_u16(len);
    } else {
        buf.put_u8(flags & !FLAG_EXTENDED_LENGTH);
        buf.put_u8(type_code);
        buf.put_u8(len as u8);
    }
    buf.put_slice(value);
    Ok(())
}

/// Octets an attribute with a value of `value_len` takes.
pub(crate) fn attribute_len(value_len: usize) -> usize {
    if value_len > 255 {
        4 + value_len
    } else {
        3 + value_len
    }
}

impl PathAttributes {
    /// Appends the attributes (without MP_*) in ascending type order. Toward
    /// a 2-octet peer, AS numbers above 65535 become AS_TRANS and AS4_PATH /
    /// AS4_AGGREGATOR carry the real values.
    pub fn encode(&self, ctx: &EncodeContext, buf: &mut BytesMut) -> Result<(), EncodeError> {
        use attr_type::*;
        const WK: u8 = FLAG_TRANSITIVE;
        const OPT: u8 = FLAG_OPTIONAL;
        const OPT_T: u8 = FLAG_OPTIONAL | FLAG_TRANSITIVE;

        let mut unknown: Vec<&RawAttribute> = self.unknown.iter().collect();
        unknown.sort_by_key(|a| a.type_code);
        let mut unknown = unknown.into_iter().peekable();
        let mut flush_unknown_below = |limit: u16, buf: &mut BytesMut| -> Result<(), EncodeError> {
            while let Some(a) = unknown.next_if(|a| u16::from(a.type_code) < limit) {
                put_attribute(a.flags & 0xf0, a.type_code, &a.value, buf)?;
            }
            Ok(())
        };

        let mut value = Vec::with_capacity(64);
        if let Some(origin) = self.origin {
            flush_unknown_below(ORIGIN.into(), buf)?;
            put_attribute(WK, ORIGIN, &[origin.to_wire()], buf)?;
        }
        if let Some(path) = &self.as_path {
            flush_unknown_below(AS_PATH.into(), buf)?;
            value.clear();
            path.encode_value(ctx.four_octet_as, false, &mut value);
            put_attribute(WK, AS_PATH, &value, buf)?;
        }
        if let Some(nh) = self.next_hop {
            flush_unknown_below(NEXT_HOP.into(), buf)?;
            put_attribute(WK, NEXT_HOP, &nh.octets(), buf)?;
        }
        if let Some(med) = self.med {
            flush_unknown_below(MED.into(), buf)?;
            put_attribute(OPT, MED, &med.to_be_bytes(), buf)?;
        }
        if let Some(lp) = self.local_pref {
            flush_unknown_below(LOCAL_PREF.into(), buf)?;
            put_attribute(WK, LOCAL_PREF, &lp.to_be_bytes(), buf)?;
        }
        if self.atomic_aggregate {
            flush_unknown_below(ATOMIC_AGGREGATE.into(), buf)?;
            put_attribute(WK, ATOMIC_AGGREGATE, &[], buf)?;
        }
        if let Some(agg) = self.aggregator {
            flush_unknown_below(AGGREGATOR.into(), buf)?;
            value.clear();
            if ctx.four_octet_as {
                value.extend_from_slice(&agg.asn.to_be_bytes());
            } else {
                let narrow = u16::try_from(agg.asn).unwrap_or(AS_TRANS as u16);
                value.extend_from_slice(&narrow.to_be_bytes());
            }
            value.extend_from_slice(&agg.address.octets());
            put_attribute(OPT_T, AGGREGATOR, &value, buf)?;
        }
        if !self.communities.is_empty() {
            flush_unknown_below(COMMUNITIES.into(), buf)?;
            value.clear();
            for c in &self.communities {
                value.extend_from_slice(&c.0.to_be_bytes());
            }
            put_attribute(OPT_T, COMMUNITIES, &value, buf)?;
        }
        if let Some(id) = self.originator_id {
            flush_unknown_below(ORIGINATOR_ID.into(), buf)?;
            put_attribute(OPT, ORIGINATOR_ID, &id.octets(), buf)?;
        }
        if !self.cluster_list.is_empty() {
            flush_unknown_below(CLUSTER_LIST.into(), buf)?;
            value.clear();
            for id in &self.cluster_list {
                value.extend_from_slice(&id.octets());
            }
            put_attribute(OPT, CLUSTER_LIST, &value, buf)?;
        }
        if !self.extended_communities.is_empty() {
            flush_unknown_below(EXTENDED_COMMUNITIES.into(), buf)?;
            value.clear();
            for c in &self.extended_communities {
                value.extend_from_slice(&c.0);
            }
            put_attribute(OPT_T, EXTENDED_COMMUNITIES, &value, buf)?;
        }
        if !ctx.four_octet_as {
            if let Some(path) = self.as_path.as_ref().filter(|p| p.needs_as4_path()) {
                flush_unknown_below(AS4_PATH.into(), buf)?;
                value.clear();
                path.encode_value(true, true, &mut value);
                put_attribute(OPT_T, AS4_PATH, &value, buf)?;
            }
            if let Some(agg) = self.aggregator.filter(|a| a.asn > u32::from(u16::MAX)) {
                flush_unknown_below(AS4_AGGREGATOR.into(), buf)?;
                value.clear();
                value.extend_from_slice(&agg.asn.to_be_bytes());
                value.extend_from_slice(&agg.address.octets());
                put_attribute(OPT_T, AS4_AGGREGATOR, &value, buf)?;
            }
        }
        if !self.large_communities.is_empty() {
            flush_unknown_below(LARGE_COMMUNITY.into(), buf)?;
            value.clear();
            for c in &self.large_communities {
                value.extend_from_slice(&c.global_admin.to_be_bytes());
                value.extend_from_slice(&c.local_data1.to_be_bytes());
                value.extend_from_slice(&c.local_data2.to_be_bytes());
            }
            put_attribute(OPT_T, LARGE_COMMUNITY, &value, buf)?;
        }
        flush_unknown_below(256, buf)?;
        Ok(())
    }
}
