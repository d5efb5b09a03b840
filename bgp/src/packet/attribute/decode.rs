//! Decoding an UPDATE's attribute block with RFC 7606 error handling (the
//! rules are in the parent module's documentation): flags checked per type,
//! each known attribute parsed, MP_REACH/MP_UNREACH taken apart, the outcome
//! recorded.

use super::*;

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
