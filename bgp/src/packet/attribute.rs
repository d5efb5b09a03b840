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

/// AS_PATH segment type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AsSegmentType {
    /// 1: unordered set.
    Set,
    /// 2: ordered sequence.
    Sequence,
    /// 3: confederation sequence (RFC 5065).
    ConfedSequence,
    /// 4: confederation set (RFC 5065).
    ConfedSet,
}

impl AsSegmentType {
    fn from_wire(value: u8) -> Option<AsSegmentType> {
        match value {
            1 => Some(AsSegmentType::Set),
            2 => Some(AsSegmentType::Sequence),
            3 => Some(AsSegmentType::ConfedSequence),
            4 => Some(AsSegmentType::ConfedSet),
            _ => None,
        }
    }
    fn to_wire(self) -> u8 {
        match self {
            AsSegmentType::Set => 1,
            AsSegmentType::Sequence => 2,
            AsSegmentType::ConfedSequence => 3,
            AsSegmentType::ConfedSet => 4,
        }
    }
    /// Confederation segments do not count toward the path length.
    pub fn is_confed(self) -> bool {
        matches!(
            self,
            AsSegmentType::ConfedSequence | AsSegmentType::ConfedSet
        )
    }
}

/// One AS_PATH segment. Never empty after decoding.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AsSegment {
    /// Segment type.
    pub kind: AsSegmentType,
    /// AS numbers, 32-bit.
    pub asns: Vec<u32>,
}

impl AsSegment {
    /// Contribution to the path length (RFC 4271 §9.1.2.2: a set counts 1,
    /// RFC 5065: confederation segments count 0).
    pub fn path_len(&self) -> usize {
        match self.kind {
            AsSegmentType::Sequence => self.asns.len(),
            AsSegmentType::Set => 1,
            AsSegmentType::ConfedSequence | AsSegmentType::ConfedSet => 0,
        }
    }
}

/// An AS path with 32-bit AS numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AsPath {
    /// Segments, first is the most recently traversed.
    pub segments: Vec<AsSegment>,
}

impl AsPath {
    /// A path of one AS_SEQUENCE (empty path if `asns` is empty).
    pub fn from_sequence(asns: impl IntoIterator<Item = u32>) -> AsPath {
        let asns: Vec<u32> = asns.into_iter().collect();
        if asns.is_empty() {
            return AsPath::default();
        }
        AsPath {
            segments: vec![AsSegment {
                kind: AsSegmentType::Sequence,
                asns,
            }],
        }
    }

    /// Length for best-path selection.
    pub fn path_len(&self) -> usize {
        self.segments.iter().map(AsSegment::path_len).sum()
    }

    /// The neighbouring AS: first AS of a leading AS_SEQUENCE.
    pub fn first_asn(&self) -> Option<u32> {
        self.segments
            .iter()
            .find(|s| !s.kind.is_confed())
            .filter(|s| s.kind == AsSegmentType::Sequence)
            .and_then(|s| s.asns.first().copied())
    }

    /// Whether `asn` appears anywhere (loop detection).
    pub fn contains(&self, asn: u32) -> bool {
        self.segments.iter().any(|s| s.asns.contains(&asn))
    }

    /// Prepends `asn` to the leading AS_SEQUENCE (or a new one).
    pub fn prepend(&mut self, asn: u32) {
        match self.segments.first_mut() {
            Some(seg) if seg.kind == AsSegmentType::Sequence && seg.asns.len() < 255 => {
                seg.asns.insert(0, asn)
            }
            _ => self.segments.insert(
                0,
                AsSegment {
                    kind: AsSegmentType::Sequence,
                    asns: vec![asn],
                },
            ),
        }
    }

    /// Whether a 2-octet peer needs AS4_PATH: some AS outside the
    /// confederation segments (which AS4_PATH never carries) is above 65535.
    fn needs_as4_path(&self) -> bool {
        self.segments
            .iter()
            .filter(|s| !s.kind.is_confed())
            .any(|s| s.asns.iter().any(|&a| a > u32::from(u16::MAX)))
    }

    /// Encodes segments with 2- or 4-octet AS numbers; 2-octet form maps AS
    /// numbers above 65535 to AS_TRANS. Segments longer than 255 are split,
    /// empty ones skipped.
    fn encode_value(&self, four_octet: bool, skip_confed: bool, out: &mut Vec<u8>) {
        for seg in &self.segments {
            if skip_confed && seg.kind.is_confed() {
                continue;
            }
            for chunk in seg.asns.chunks(255) {
                out.push(seg.kind.to_wire());
                out.push(chunk.len() as u8);
                for &asn in chunk {
                    if four_octet {
                        out.extend_from_slice(&asn.to_be_bytes());
                    } else {
                        let narrow = u16::try_from(asn).unwrap_or(AS_TRANS as u16);
                        out.extend_from_slice(&narrow.to_be_bytes());
                    }
                }
            }
        }
    }

    /// Decodes an AS_PATH/AS4_PATH value; `None` if malformed per RFC 7606
    /// §7.2 (unknown segment type, zero-length segment, overrun, dangling octet).
    fn decode_value(mut value: &[u8], four_octet: bool) -> Option<AsPath> {
        let width = if four_octet { 4 } else { 2 };
        let mut segments = Vec::new();
        while !value.is_empty() {
            let (r, kind) = be_u8::<_, ()>(value).ok()?;
            let (r, count) = be_u8::<_, ()>(r).ok()?;
            let kind = AsSegmentType::from_wire(kind)?;
            if count == 0 {
                return None;
            }
            let (r, raw) = take_bytes(r, usize::from(count) * width).ok()?;
            value = r;
            let asns = raw
                .chunks_exact(width)
                .map(|c| {
                    if four_octet {
                        u32::from_be_bytes([c[0], c[1], c[2], c[3]])
                    } else {
                        u32::from(u16::from_be_bytes([c[0], c[1]]))
                    }
                })
                .collect();
            segments.push(AsSegment { kind, asns });
        }
        Some(AsPath { segments })
    }

    /// RFC 6793 §4.2.3: rebuild the real path from a 2-octet AS_PATH and the
    /// AS4_PATH. If AS4_PATH is longer than AS_PATH it is ignored; otherwise
    /// the leading (AS_PATH − AS4_PATH) ASes of AS_PATH are kept, followed by
    /// AS4_PATH. Confederation segments count 0 and are never taken from
    /// AS4_PATH.
    pub fn merge_as4(&self, as4_path: &AsPath) -> AsPath {
        let as4_segments: Vec<AsSegment> = as4_path
            .segments
            .iter()
            .filter(|s| !s.kind.is_confed())
            .cloned()
            .collect();
        let as4 = AsPath {
            segments: as4_segments,
        };
        let path_len = self.path_len();
        let as4_len = as4.path_len();
        if path_len < as4_len {
            return self.clone();
        }
        let mut keep = path_len - as4_len;
        let mut merged: Vec<AsSegment> = Vec::new();
        for seg in &self.segments {
            if seg.kind.is_confed() {
                merged.push(seg.clone());
                continue;
            }
            if keep == 0 {
                break;
            }
            match seg.kind {
                AsSegmentType::Set => {
                    merged.push(seg.clone());
                    keep -= 1;
                }
                _ => {
                    let take = keep.min(seg.asns.len());
                    merged.push(AsSegment {
                        kind: seg.kind,
                        asns: seg.asns[..take].to_vec(),
                    });
                    keep -= take;
                }
            }
        }
        for seg in as4.segments {
            // A sequence cut by the merge continues in AS4_PATH: rejoin it so
            // the result equals what the 4-octet speaker originally sent.
            match merged.last_mut() {
                Some(last)
                    if last.kind == AsSegmentType::Sequence
                        && seg.kind == AsSegmentType::Sequence
                        && last.asns.len() + seg.asns.len() <= 255 =>
                {
                    last.asns.extend_from_slice(&seg.asns)
                }
                _ => merged.push(seg),
            }
        }
        AsPath { segments: merged }
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
    /// [`super::Update::into_withdraw`]). Also lists discarded attributes.
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

/// What the attribute block decoded to.
#[derive(Debug, Default)]
pub(crate) struct DecodedAttributes {
    pub(crate) attributes: PathAttributes,
    pub(crate) mp_reach: Option<MpReach>,
    pub(crate) mp_unreach: Option<MpUnreach>,
    pub(crate) outcome: UpdateOutcome,
    /// Type codes seen (even if malformed), for the mandatory-attribute check.
    pub(crate) seen: [u64; 4],
}

impl DecodedAttributes {
    pub(crate) fn was_seen(&self, type_code: u8) -> bool {
        self.seen[usize::from(type_code / 64)] & (1u64 << (type_code % 64)) != 0
    }
    fn mark_seen(&mut self, type_code: u8) {
        self.seen[usize::from(type_code / 64)] |= 1u64 << (type_code % 64);
    }
}

/// Error handling approach for a malformed known attribute.
#[derive(Clone, Copy)]
enum OnError {
    TreatAsWithdraw,
    Discard,
    Reset,
}

fn expected_flags(type_code: u8) -> (u8, OnError) {
    use attr_type::*;
    const WK: u8 = FLAG_TRANSITIVE;
    const OPT: u8 = FLAG_OPTIONAL;
    const OPT_T: u8 = FLAG_OPTIONAL | FLAG_TRANSITIVE;
    match type_code {
        ORIGIN | AS_PATH | NEXT_HOP | LOCAL_PREF => (WK, OnError::TreatAsWithdraw),
        ATOMIC_AGGREGATE => (WK, OnError::Discard),
        MED | ORIGINATOR_ID | CLUSTER_LIST => (OPT, OnError::TreatAsWithdraw),
        MP_REACH_NLRI | MP_UNREACH_NLRI => (OPT, OnError::Reset),
        AGGREGATOR | AS4_PATH | AS4_AGGREGATOR => (OPT_T, OnError::Discard),
        _ => (OPT_T, OnError::TreatAsWithdraw),
    }
}

fn u32_value(value: &[u8]) -> Option<u32> {
    <[u8; 4]>::try_from(value).ok().map(u32::from_be_bytes)
}

fn ipv4_value(value: &[u8]) -> Option<Ipv4Addr> {
    <[u8; 4]>::try_from(value).ok().map(Ipv4Addr::from)
}

/// Decodes the path attribute block of an UPDATE.
///
/// `Err` only for session-reset conditions: an attribute header or length
/// overrunning the block (3/1), MP_REACH/MP_UNREACH repeated (3/1) or
/// malformed (3/9).
pub(crate) fn decode_attributes(
    mut input: &[u8],
    ctx: &DecodeContext,
) -> Result<DecodedAttributes, DecodeError> {
    use attr_type::*;
    let mut out = DecodedAttributes::default();
    let mut as4_path: Option<AsPath> = None;
    let mut as4_aggregator: Option<Aggregator> = None;
    let overrun = |_| DecodeError::MalformedAttributeList;

    while !input.is_empty() {
        let start = input;
        let (r, flags) = be_u8::<_, ()>(input).map_err(overrun)?;
        let (r, type_code) = be_u8::<_, ()>(r).map_err(overrun)?;
        let (r, len) = if flags & FLAG_EXTENDED_LENGTH != 0 {
            be_u16::<_, ()>(r).map_err(overrun)?
        } else {
            let (r, l) = be_u8::<_, ()>(r).map_err(overrun)?;
            (r, u16::from(l))
        };
        let (r, value) = take_bytes(r, usize::from(len)).map_err(overrun)?;
        input = r;
        let whole = &start[..start.len() - r.len()];

        if !is_known_attribute(type_code) {
            if flags & FLAG_OPTIONAL == 0 {
                out.outcome
                    .withdraw(DecodeError::UnrecognizedWellKnownAttribute {
                        data: whole.to_vec(),
                    });
            } else if flags & FLAG_TRANSITIVE != 0 && !out.was_seen(type_code) {
                out.attributes.unknown.push(RawAttribute {
                    // The low four bits are unused: ignored on receipt, sent as zero.
                    flags: (flags & (FLAG_OPTIONAL | FLAG_TRANSITIVE)) | FLAG_PARTIAL,
                    type_code,
                    value: value.to_vec(),
                });
            }
            out.mark_seen(type_code);
            continue;
        }

        if out.was_seen(type_code) {
            if matches!(type_code, MP_REACH_NLRI | MP_UNREACH_NLRI) {
                return Err(DecodeError::MalformedAttributeList);
            }
            // RFC 7606 §3 (g): keep the first occurrence, discard the rest.
            out.outcome.discard(DecodeError::MalformedAttributeList);
            continue;
        }
        out.mark_seen(type_code);

        let (want_flags, on_error) = expected_flags(type_code);
        let result = if flags & (FLAG_OPTIONAL | FLAG_TRANSITIVE) != want_flags {
            Err(DecodeError::AttributeFlagsError {
                data: whole.to_vec(),
            })
        } else {
            decode_known(
                type_code,
                value,
                whole,
                ctx,
                &mut out,
                &mut as4_path,
                &mut as4_aggregator,
            )
        };
        if let Err(reason) = result {
            match on_error {
                OnError::TreatAsWithdraw => out.outcome.withdraw(reason),
                OnError::Discard => out.outcome.discard(reason),
                OnError::Reset => return Err(reason),
            }
        }
    }

    // Canonical order, so equal attribute sets intern to one entry whatever
    // order they arrived in (and re-encoding, which sorts, is lossless).
    out.attributes.unknown.sort_by_key(|a| a.type_code);

    // AS4_* only mean something from a 2-octet speaker (RFC 6793 §4.2.3); a
    // 4-octet speaker's are silently ignored.
    if !ctx.four_octet_as {
        let mut use_as4_path = true;
        if let Some(aggregator) = out.attributes.aggregator.as_mut() {
            if aggregator.asn != AS_TRANS {
                use_as4_path = false;
            } else if let Some(as4) = as4_aggregator {
                *aggregator = as4;
            }
        }
        if let (true, Some(as4), Some(path)) =
            (use_as4_path, as4_path, out.attributes.as_path.as_ref())
        {
            out.attributes.as_path = Some(path.merge_as4(&as4));
        }
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn decode_known(
    type_code: u8,
    value: &[u8],
    whole: &[u8],
    ctx: &DecodeContext,
    out: &mut DecodedAttributes,
    as4_path: &mut Option<AsPath>,
    as4_aggregator: &mut Option<Aggregator>,
) -> Result<(), DecodeError> {
    use attr_type::*;
    let length_error = || DecodeError::AttributeLengthError {
        data: whole.to_vec(),
    };
    let optional_error = || DecodeError::OptionalAttributeError {
        data: whole.to_vec(),
    };
    let attrs = &mut out.attributes;
    match type_code {
        ORIGIN => {
            let [v] = <[u8; 1]>::try_from(value).map_err(|_| length_error())?;
            attrs.origin =
                Some(
                    Origin::from_wire(v).ok_or_else(|| DecodeError::InvalidOrigin {
                        data: whole.to_vec(),
                    })?,
                );
        }
        AS_PATH => {
            attrs.as_path = Some(
                AsPath::decode_value(value, ctx.four_octet_as)
                    .ok_or(DecodeError::MalformedAsPath)?,
            );
        }
        NEXT_HOP => attrs.next_hop = Some(ipv4_value(value).ok_or_else(length_error)?),
        MED => attrs.med = Some(u32_value(value).ok_or_else(length_error)?),
        LOCAL_PREF => attrs.local_pref = Some(u32_value(value).ok_or_else(length_error)?),
        ATOMIC_AGGREGATE => {
            if !value.is_empty() {
                return Err(length_error());
            }
            attrs.atomic_aggregate = true;
        }
        AGGREGATOR => {
            let aggregator = match (ctx.four_octet_as, value.len()) {
                (true, 8) => Aggregator {
                    asn: u32::from_be_bytes([value[0], value[1], value[2], value[3]]),
                    address: Ipv4Addr::new(value[4], value[5], value[6], value[7]),
                },
                (false, 6) => Aggregator {
                    asn: u32::from(u16::from_be_bytes([value[0], value[1]])),
                    address: Ipv4Addr::new(value[2], value[3], value[4], value[5]),
                },
                _ => return Err(length_error()),
            };
            attrs.aggregator = Some(aggregator);
        }
        COMMUNITIES => {
            if value.is_empty() || value.len() % 4 != 0 {
                return Err(optional_error());
            }
            attrs.communities = value
                .chunks_exact(4)
                .map(|c| Community(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect();
        }
        ORIGINATOR_ID => attrs.originator_id = Some(ipv4_value(value).ok_or_else(length_error)?),
        CLUSTER_LIST => {
            if value.is_empty() || value.len() % 4 != 0 {
                return Err(length_error());
            }
            attrs.cluster_list = value
                .chunks_exact(4)
                .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
                .collect();
        }
        EXTENDED_COMMUNITIES => {
            if value.is_empty() || value.len() % 8 != 0 {
                return Err(optional_error());
            }
            attrs.extended_communities = value
                .chunks_exact(8)
                .map(|c| {
                    let mut octets = [0u8; 8];
                    octets.copy_from_slice(c);
                    ExtendedCommunity(octets)
                })
                .collect();
        }
        LARGE_COMMUNITY => {
            if value.is_empty() || value.len() % 12 != 0 {
                return Err(optional_error());
            }
            attrs.large_communities = value
                .chunks_exact(12)
                .map(|c| LargeCommunity {
                    global_admin: u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                    local_data1: u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
                    local_data2: u32::from_be_bytes([c[8], c[9], c[10], c[11]]),
                })
                .collect();
        }
        AS4_PATH => {
            *as4_path = Some(AsPath::decode_value(value, true).ok_or_else(optional_error)?);
        }
        AS4_AGGREGATOR => {
            if value.len() != 8 {
                return Err(length_error());
            }
            *as4_aggregator = Some(Aggregator {
                asn: u32::from_be_bytes([value[0], value[1], value[2], value[3]]),
                address: Ipv4Addr::new(value[4], value[5], value[6], value[7]),
            });
        }
        MP_REACH_NLRI => out.mp_reach = decode_mp_reach(value, ctx).ok_or_else(optional_error)?,
        MP_UNREACH_NLRI => {
            out.mp_unreach = decode_mp_unreach(value, ctx).ok_or_else(optional_error)?
        }
        _ => {}
    }
    Ok(())
}

/// `Some(None)`: well-formed but for a family whose NLRI we do not parse
/// (ignored). `None`: malformed.
fn decode_mp_reach(value: &[u8], ctx: &DecodeContext) -> Option<Option<MpReach>> {
    let (r, afi) = be_u16::<_, ()>(value).ok()?;
    let (r, safi) = be_u8::<_, ()>(r).ok()?;
    let (r, nh_len) = be_u8::<_, ()>(r).ok()?;
    let (r, nh) = take_bytes(r, usize::from(nh_len)).ok()?;
    let (r, _reserved) = be_u8::<_, ()>(r).ok()?;
    let family = Family::from_wire(afi, safi);
    if !family.has_prefix_nlri() {
        tracing::debug!(%family, "ignoring MP_REACH_NLRI of unsupported family");
        return Some(None);
    }
    let next_hop = NextHop::decode(nh)?;
    let kind = PrefixKind::of(family.afi)?;
    let nlri = decode_nlri_run(r, kind, ctx.add_path_for(family))?;
    Some(Some(MpReach {
        family,
        next_hop,
        nlri,
    }))
}

fn decode_mp_unreach(value: &[u8], ctx: &DecodeContext) -> Option<Option<MpUnreach>> {
    let (r, afi) = be_u16::<_, ()>(value).ok()?;
    let (r, safi) = be_u8::<_, ()>(r).ok()?;
    let family = Family::from_wire(afi, safi);
    if !family.has_prefix_nlri() {
        tracing::debug!(%family, "ignoring MP_UNREACH_NLRI of unsupported family");
        return Some(None);
    }
    let kind = PrefixKind::of(family.afi)?;
    let withdrawn = decode_nlri_run(r, kind, ctx.add_path_for(family))?;
    Some(Some(MpUnreach { family, withdrawn }))
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
