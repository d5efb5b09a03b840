//! UPDATE message (RFC 4271 §4.3) with MP_REACH_NLRI / MP_UNREACH_NLRI
//! (RFC 4760 §3-4), RFC 7606 error handling, and the helper that packs many
//! prefixes into as few UPDATEs as the maximum message size allows.
//!
//! ```text
//! +-----------------------------------------------------+
//! |   Withdrawn Routes Length (2 octets)                |
//! +-----------------------------------------------------+
//! |   Withdrawn Routes (variable)                       |
//! +-----------------------------------------------------+
//! |   Total Path Attribute Length (2 octets)            |
//! +-----------------------------------------------------+
//! |   Path Attributes (variable)                        |
//! +-----------------------------------------------------+
//! |   Network Layer Reachability Information (variable) |
//! +-----------------------------------------------------+
//!
//! MP_REACH_NLRI value:                  MP_UNREACH_NLRI value:
//! +---------------------------------+   +---------------------------------+
//! | AFI (2) | SAFI (1)              |   | AFI (2) | SAFI (1)              |
//! +---------------------------------+   +---------------------------------+
//! | Next Hop Length (1)             |   | Withdrawn Routes (variable)     |
//! +---------------------------------+   +---------------------------------+
//! | Next Hop (4, 16 or 32)          |
//! +---------------------------------+
//! | Reserved (1)                    |
//! +---------------------------------+
//! | NLRI (variable)                 |
//! +---------------------------------+
//! ```
//!
//! Decoding returns `Err` only where RFC 7606 requires a session reset
//! (length fields inconsistent, withdrawn routes / NLRI / MP_* unparseable,
//! attribute overrun, MP_* repeated); everything else yields the UPDATE with
//! an [`UpdateOutcome`]. A missing ORIGIN or AS_PATH when routes are
//! announced, or a missing NEXT_HOP with classic NLRI, is treat-as-withdraw.
//!
//! Encoding places MP_REACH/MP_UNREACH first (RFC 7606 §5.1) and the other
//! attributes in ascending type order.

use bytes::{BufMut, Bytes, BytesMut};
use nom::number::complete::be_u16;

use super::attribute::{
    attr_type, attribute_len, decode_attributes, put_attribute, PathAttributes, UpdateOutcome,
    FLAG_OPTIONAL,
};
use super::context::{DecodeContext, EncodeContext};
use super::error::{DecodeError, EncodeError};
use super::types::{decode_nlri_run, take_bytes, Family, NextHop, Nlri, PrefixKind};
use super::{put_header, MessageType, HEADER_LEN};

/// Reachable prefixes of one family with their next hop.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MpReach {
    /// Family of the NLRI.
    pub family: Family,
    /// Next hop for all NLRI.
    pub next_hop: NextHop,
    /// Announced prefixes.
    pub nlri: Vec<Nlri>,
}

/// Withdrawn prefixes of one family.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MpUnreach {
    /// Family of the prefixes.
    pub family: Family,
    /// Withdrawn prefixes; empty means End-of-RIB for the family.
    pub withdrawn: Vec<Nlri>,
}

/// An UPDATE message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    /// Withdrawn IPv4 unicast prefixes (classic field).
    pub withdrawn: Vec<Nlri>,
    /// Path attributes of the announced prefixes.
    pub attributes: PathAttributes,
    /// Announced IPv4 unicast prefixes (classic field).
    pub nlri: Vec<Nlri>,
    /// MP_REACH_NLRI.
    pub mp_reach: Option<MpReach>,
    /// MP_UNREACH_NLRI.
    pub mp_unreach: Option<MpUnreach>,
}

impl Update {
    /// The End-of-RIB marker for `family` (RFC 4724 §2).
    pub fn end_of_rib(family: Family) -> Update {
        if family == Family::IPV4_UNICAST {
            Update::default()
        } else {
            Update {
                mp_unreach: Some(MpUnreach {
                    family,
                    withdrawn: Vec::new(),
                }),
                ..Update::default()
            }
        }
    }

    /// The family this UPDATE marks End-of-RIB for, if it is such a marker.
    pub fn end_of_rib_family(&self) -> Option<Family> {
        if !self.withdrawn.is_empty()
            || !self.nlri.is_empty()
            || self.mp_reach.is_some()
            || self.attributes != PathAttributes::default()
        {
            return None;
        }
        match &self.mp_unreach {
            None => Some(Family::IPV4_UNICAST),
            Some(u) if u.withdrawn.is_empty() => Some(u.family),
            Some(_) => None,
        }
    }

    /// RFC 7606 treat-as-withdraw: every prefix this UPDATE names, announced
    /// or withdrawn, grouped by family, to be removed from the Adj-RIB-In.
    pub fn into_withdrawals(self) -> Vec<(Family, Vec<Nlri>)> {
        let mut out: Vec<(Family, Vec<Nlri>)> = Vec::new();
        let mut add = |family: Family, prefixes: Vec<Nlri>| {
            if prefixes.is_empty() {
                return;
            }
            match out.iter_mut().find(|(f, _)| *f == family) {
                Some((_, list)) => list.extend(prefixes),
                None => out.push((family, prefixes)),
            }
        };
        add(Family::IPV4_UNICAST, self.withdrawn);
        add(Family::IPV4_UNICAST, self.nlri);
        if let Some(unreach) = self.mp_unreach {
            add(unreach.family, unreach.withdrawn);
        }
        if let Some(reach) = self.mp_reach {
            add(reach.family, reach.nlri);
        }
        out
    }

    /// Whether any prefix is announced (classic NLRI or MP_REACH).
    pub fn announces(&self) -> bool {
        !self.nlri.is_empty() || self.mp_reach.as_ref().is_some_and(|r| !r.nlri.is_empty())
    }

    /// Decodes an UPDATE body (after the 19-octet header).
    pub fn decode_body(
        body: &[u8],
        ctx: &DecodeContext,
    ) -> Result<(Update, UpdateOutcome), DecodeError> {
        let list_error = |_| DecodeError::MalformedAttributeList;
        let classic_add_path = ctx.add_path_for(Family::IPV4_UNICAST);

        let (rest, withdrawn_len) = be_u16::<_, ()>(body).map_err(list_error)?;
        let (rest, withdrawn) = take_bytes(rest, usize::from(withdrawn_len)).map_err(list_error)?;
        let (rest, attr_len) = be_u16::<_, ()>(rest).map_err(list_error)?;
        let (nlri, attrs) = take_bytes(rest, usize::from(attr_len)).map_err(list_error)?;

        let withdrawn = decode_nlri_run(withdrawn, PrefixKind::V4, classic_add_path)
            .ok_or(DecodeError::InvalidNetworkField)?;
        let nlri = decode_nlri_run(nlri, PrefixKind::V4, classic_add_path)
            .ok_or(DecodeError::InvalidNetworkField)?;
        let decoded = decode_attributes(attrs, ctx)?;
        // RFC 7606 §3 (d): a missing well-known mandatory attribute means
        // treat-as-withdraw. One present but malformed was already handled.
        let announces = !nlri.is_empty()
            || decoded
                .mp_reach
                .as_ref()
                .is_some_and(|r| !r.nlri.is_empty());
        let mut missing = Vec::new();
        if announces {
            missing.extend(
                [attr_type::ORIGIN, attr_type::AS_PATH]
                    .into_iter()
                    .filter(|t| !decoded.was_seen(*t)),
            );
            if !nlri.is_empty() && !decoded.was_seen(attr_type::NEXT_HOP) {
                missing.push(attr_type::NEXT_HOP);
            }
        }
        let mut outcome = decoded.outcome;
        for type_code in missing {
            outcome.withdraw(DecodeError::MissingWellKnownAttribute { type_code });
        }
        let update = Update {
            withdrawn,
            attributes: decoded.attributes,
            nlri,
            mp_reach: decoded.mp_reach,
            mp_unreach: decoded.mp_unreach,
        };
        Ok((update, outcome))
    }

    /// Appends the UPDATE body.
    pub fn encode_body(&self, ctx: &EncodeContext, buf: &mut BytesMut) -> Result<(), EncodeError> {
        let classic_add_path = ctx.add_path_for(Family::IPV4_UNICAST);
        let withdrawn_at = buf.len();
        buf.put_u16(0);
        for n in &self.withdrawn {
            check_v4(n)?;
            n.encode(classic_add_path, buf);
        }
        let withdrawn_len = buf.len() - withdrawn_at - 2;
        patch_u16(buf, withdrawn_at, withdrawn_len)?;

        let attr_at = buf.len();
        buf.put_u16(0);
        if let Some(reach) = &self.mp_reach {
            let mut value = BytesMut::new();
            encode_mp_reach_head(reach.family, &reach.next_hop, &mut value);
            let add_path = ctx.add_path_for(reach.family);
            for n in &reach.nlri {
                n.encode(add_path, &mut value);
            }
            put_attribute(FLAG_OPTIONAL, attr_type::MP_REACH_NLRI, &value, buf)?;
        }
        if let Some(unreach) = &self.mp_unreach {
            let mut value = BytesMut::new();
            value.put_u16(unreach.family.afi.into());
            value.put_u8(unreach.family.safi.into());
            let add_path = ctx.add_path_for(unreach.family);
            for n in &unreach.withdrawn {
                n.encode(add_path, &mut value);
            }
            put_attribute(FLAG_OPTIONAL, attr_type::MP_UNREACH_NLRI, &value, buf)?;
        }
        self.attributes.encode(ctx, buf)?;
        let attr_len = buf.len() - attr_at - 2;
        patch_u16(buf, attr_at, attr_len)?;

        for n in &self.nlri {
            check_v4(n)?;
            n.encode(classic_add_path, buf);
        }
        Ok(())
    }
}

fn check_v4(n: &Nlri) -> Result<(), EncodeError> {
    match n.prefix {
        ipnet::IpNet::V4(_) => Ok(()),
        ipnet::IpNet::V6(_) => Err(EncodeError::Unrepresentable(
            "IPv6 prefix in the classic IPv4 NLRI field",
        )),
    }
}

fn patch_u16(buf: &mut BytesMut, at: usize, value: usize) -> Result<(), EncodeError> {
    let value = u16::try_from(value).map_err(|_| EncodeError::TooLarge {
        size: value,
        max: usize::from(u16::MAX),
    })?;
    buf[at..at + 2].copy_from_slice(&value.to_be_bytes());
    Ok(())
}

fn encode_mp_reach_head(family: Family, next_hop: &NextHop, value: &mut BytesMut) {
    value.put_u16(family.afi.into());
    value.put_u8(family.safi.into());
    // 4, 16 or 32: always fits.
    value.put_u8(next_hop.encoded_len() as u8);
    next_hop.encode(value);
    value.put_u8(0);
}

/// Builds the complete UPDATE messages announcing `nlri` of `family` with
/// `attributes`, as few as the negotiated maximum size allows.
///
/// IPv4 unicast goes into the classic NLRI field with a NEXT_HOP attribute
/// when `ctx.ipv4_unicast_classic` and the next hop is IPv4 (`next_hop`, or
/// else `attributes.next_hop`); everything else goes into MP_REACH_NLRI, and
/// then the NEXT_HOP attribute is left out (RFC 4760 §3). Path identifiers
/// are written when ADD-PATH send applies to the family (0 if missing).
///
/// Errors: no usable next hop, an IPv6 prefix for an IPv4 family (or the
/// reverse), or attributes that alone exceed the maximum size.
pub fn build_announcements(
    family: Family,
    attributes: &PathAttributes,
    next_hop: Option<NextHop>,
    nlri: &[Nlri],
    ctx: &EncodeContext,
) -> Result<Vec<Bytes>, EncodeError> {
    if nlri.is_empty() {
        return Ok(Vec::new());
    }
    check_family(family, nlri)?;
    let add_path = ctx.add_path_for(family);
    let next_hop =
        next_hop
            .or(attributes.next_hop.map(NextHop::V4))
            .ok_or(EncodeError::Unrepresentable(
                "announcement without a next hop",
            ))?;
    let classic = family == Family::IPV4_UNICAST
        && ctx.ipv4_unicast_classic
        && matches!(next_hop, NextHop::V4(_));

    let mut attrs_buf = BytesMut::new();
    if classic {
        let mut attrs = attributes.clone();
        if let NextHop::V4(addr) = next_hop {
            attrs.next_hop = Some(addr);
        }
        attrs.encode(ctx, &mut attrs_buf)?;
    } else if attributes.next_hop.is_some() {
        let mut attrs = attributes.clone();
        attrs.next_hop = None;
        attrs.encode(ctx, &mut attrs_buf)?;
    } else {
        attributes.encode(ctx, &mut attrs_buf)?;
    }

    let max = ctx.max_message_size;
    let fixed = HEADER_LEN + 2 + 2 + attrs_buf.len();
    let mp_head = 2 + 1 + 1 + next_hop.encoded_len() + 1;
    let mut messages = Vec::new();
    let mut rest = nlri;
    while !rest.is_empty() {
        // Greedily take prefixes while the message still fits.
        let mut nlri_len = 0;
        let mut count = 0;
        for n in rest {
            let candidate = nlri_len + n.encoded_len(add_path);
            let size = if classic {
                fixed + candidate
            } else {
                fixed + attribute_len(mp_head + candidate)
            };
            if size > max {
                break;
            }
            nlri_len = candidate;
            count += 1;
        }
        if count == 0 {
            let size = if classic {
                fixed + rest[0].encoded_len(add_path)
            } else {
                fixed + attribute_len(mp_head + rest[0].encoded_len(add_path))
            };
            return Err(EncodeError::TooLarge { size, max });
        }
        let (chunk, tail) = rest.split_at(count);
        rest = tail;

        let mut buf = BytesMut::with_capacity(max.min(fixed + 64 + nlri_len));
        put_header(&mut buf, MessageType::Update);
        buf.put_u16(0);
        let attr_at = buf.len();
        buf.put_u16(0);
        if !classic {
            let mut value = BytesMut::with_capacity(mp_head + nlri_len);
            encode_mp_reach_head(family, &next_hop, &mut value);
            for n in chunk {
                n.encode(add_path, &mut value);
            }
            put_attribute(FLAG_OPTIONAL, attr_type::MP_REACH_NLRI, &value, &mut buf)?;
        }
        buf.put_slice(&attrs_buf);
        let attr_len = buf.len() - attr_at - 2;
        patch_u16(&mut buf, attr_at, attr_len)?;
        if classic {
            for n in chunk {
                n.encode(add_path, &mut buf);
            }
        }
        finish_message(&mut buf)?;
        messages.push(buf.freeze());
    }
    Ok(messages)
}

/// Builds the complete UPDATE messages withdrawing `nlri` of `family`, as
/// few as the maximum size allows. IPv4 unicast uses the classic withdrawn
/// field when `ctx.ipv4_unicast_classic`, everything else MP_UNREACH_NLRI.
pub fn build_withdrawals(
    family: Family,
    nlri: &[Nlri],
    ctx: &EncodeContext,
) -> Result<Vec<Bytes>, EncodeError> {
    if nlri.is_empty() {
        return Ok(Vec::new());
    }
    check_family(family, nlri)?;
    let add_path = ctx.add_path_for(family);
    let classic = family == Family::IPV4_UNICAST && ctx.ipv4_unicast_classic;
    let max = ctx.max_message_size;
    let fixed = HEADER_LEN + 2 + 2;
    let mut messages = Vec::new();
    let mut rest = nlri;
    while !rest.is_empty() {
        let mut len = 0;
        let mut count = 0;
        for n in rest {
            let candidate = len + n.encoded_len(add_path);
            let size = if classic {
                fixed + candidate
            } else {
                fixed + attribute_len(3 + candidate)
            };
            if size > max {
                break;
            }
            len = candidate;
            count += 1;
        }
        if count == 0 {
            return Err(EncodeError::TooLarge {
                size: fixed + 4 + rest[0].encoded_len(add_path),
                max,
            });
        }
        let (chunk, tail) = rest.split_at(count);
        rest = tail;
        let mut buf = BytesMut::with_capacity(fixed + 8 + len);
        put_header(&mut buf, MessageType::Update);
        if classic {
            buf.put_u16(len as u16);
            for n in chunk {
                n.encode(add_path, &mut buf);
            }
            buf.put_u16(0);
        } else {
            buf.put_u16(0);
            let attr_at = buf.len();
            buf.put_u16(0);
            let mut value = BytesMut::with_capacity(3 + len);
            value.put_u16(family.afi.into());
            value.put_u8(family.safi.into());
            for n in chunk {
                n.encode(add_path, &mut value);
            }
            put_attribute(FLAG_OPTIONAL, attr_type::MP_UNREACH_NLRI, &value, &mut buf)?;
            let attr_len = buf.len() - attr_at - 2;
            patch_u16(&mut buf, attr_at, attr_len)?;
        }
        finish_message(&mut buf)?;
        messages.push(buf.freeze());
    }
    Ok(messages)
}

fn check_family(family: Family, nlri: &[Nlri]) -> Result<(), EncodeError> {
    use super::types::Afi;
    let ok = match family.afi {
        Afi::Ipv4 => nlri.iter().all(|n| n.prefix.addr().is_ipv4()),
        Afi::Ipv6 => nlri.iter().all(|n| n.prefix.addr().is_ipv6()),
        Afi::Other(_) => false,
    };
    if ok && family.has_prefix_nlri() {
        Ok(())
    } else {
        Err(EncodeError::Unrepresentable(
            "prefixes do not match the address family",
        ))
    }
}

/// Writes the total length into a message started with `put_header`.
pub(crate) fn finish_message(buf: &mut BytesMut) -> Result<(), EncodeError> {
    let len = buf.len();
    patch_u16(buf, 16, len)
}

#[cfg(test)]
mod vectors {
    //! Byte vectors hand-built from the RFC layouts, both directions.
    use std::net::{Ipv4Addr, Ipv6Addr};

    use crate::packet::test_vectors::*;
    use crate::packet::{
        AsPath, DecodeContext, EncodeContext, Family, Message, MpReach, NextHop, Nlri, Origin,
        PathAttributes, Update,
    };

    #[test]
    fn update_classic_ipv4() {
        let wire = message(
            2,
            "0000 001b
             40 01 01 00
             40 02 06 02 01 0000fde9
             40 03 04 0a000001
             80 04 04 00000064
             18 c0a801
             20 0a010203",
        );
        let update = Message::Update(Update {
            attributes: PathAttributes {
                origin: Some(Origin::Igp),
                as_path: Some(AsPath::from_sequence([65001])),
                next_hop: Some(Ipv4Addr::new(10, 0, 0, 1)),
                med: Some(100),
                ..PathAttributes::default()
            },
            nlri: vec![
                Nlri::new("192.168.1.0/24".parse().unwrap()),
                Nlri::new("10.1.2.3/32".parse().unwrap()),
            ],
            ..Update::default()
        });
        let (d, e) = four_octet();
        assert_both_ways(&wire, &update, &d, &e);
    }

    #[test]
    fn update_classic_ipv4_two_octet_as_path() {
        let wire = message(
            2,
            "0001 00 0012
             40 01 01 02
             40 02 04 02 01 fde9
             40 03 04 0a000001",
        );
        let update = Message::Update(Update {
            // 0/0 withdrawn: one octet.
            withdrawn: vec![Nlri::new("0.0.0.0/0".parse().unwrap())],
            attributes: PathAttributes {
                origin: Some(Origin::Incomplete),
                as_path: Some(AsPath::from_sequence([65001])),
                next_hop: Some(Ipv4Addr::new(10, 0, 0, 1)),
                ..PathAttributes::default()
            },
            ..Update::default()
        });
        assert_both_ways(
            &wire,
            &update,
            &DecodeContext::default(),
            &EncodeContext::default(),
        );
    }

    #[test]
    fn update_mp_reach_ipv6_global_and_link_local_next_hop() {
        // BIRD's form: global :: followed by the link-local address.
        let wire = message(
            2,
            "0000 0038
             80 0e 2e 0002 01 20
                00000000000000000000000000000000
                fe800000000000000000000000000001
                00
                40 20010db800000001
             40 01 01 00
             40 02 00",
        );
        let update = Message::Update(Update {
            attributes: PathAttributes {
                origin: Some(Origin::Igp),
                as_path: Some(AsPath::default()),
                ..PathAttributes::default()
            },
            mp_reach: Some(MpReach {
                family: Family::IPV6_UNICAST,
                next_hop: NextHop::V6 {
                    global: Ipv6Addr::UNSPECIFIED,
                    link_local: Some("fe80::1".parse().unwrap()),
                },
                nlri: vec![Nlri::new("2001:db8:0:1::/64".parse().unwrap())],
            }),
            ..Update::default()
        });
        let (d, e) = four_octet();
        assert_both_ways(&wire, &update, &d, &e);
    }

    #[test]
    fn update_add_path_ipv4() {
        let e = EncodeContext {
            four_octet_as: true,
            add_path: vec![Family::IPV4_UNICAST],
            ..EncodeContext::default()
        };
        let wire = message(2, "0008 00000007 18 0a0000 0000");
        let update = Message::Update(Update {
            withdrawn: vec![Nlri::with_path_id("10.0.0.0/24".parse().unwrap(), 7)],
            ..Update::default()
        });
        assert_both_ways(&wire, &update, &e.mirror(), &e);
    }

    #[test]
    fn end_of_rib_markers() {
        let v4 = message(2, "0000 0000");
        let (msg, _) = decode_one(&v4, &DecodeContext::default());
        let Message::Update(u) = msg else { panic!() };
        assert_eq!(u.end_of_rib_family(), Some(Family::IPV4_UNICAST));

        let v6 = message(2, "0000 0006 80 0f 03 0002 01");
        let (msg, _) = decode_one(&v6, &DecodeContext::default());
        let Message::Update(u) = msg else { panic!() };
        assert_eq!(u.end_of_rib_family(), Some(Family::IPV6_UNICAST));
        assert_eq!(u, Update::end_of_rib(Family::IPV6_UNICAST));
        let encoded = Message::Update(u)
            .to_bytes(&EncodeContext::default())
            .unwrap();
        assert_eq!(encoded.as_ref(), v6.as_slice());
    }
}
