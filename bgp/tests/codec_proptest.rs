//! Property tests: encode → decode is the identity for every message type
//! under several negotiated contexts, and decoding arbitrary bytes never
//! panics.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use brindle_bgp::packet::{
    decode_message, AddPathFamily, AddPathMode, Aggregator, AsPath, AsSegment, AsSegmentType,
    Capability, Community, DecodeContext, EncodeContext, EncodeError, ExtendedCommunity, Family,
    GracefulRestart, GracefulRestartFamily, LargeCommunity, Message, MpReach, MpUnreach, NextHop,
    Nlri, Notification, Open, Origin, PathAttributes, RawAttribute, RouteRefresh, Update,
};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::prelude::*;

fn family() -> impl Strategy<Value = Family> {
    prop_oneof![
        Just(Family::IPV4_UNICAST),
        Just(Family::IPV6_UNICAST),
        (any::<u16>(), any::<u8>()).prop_map(|(a, s)| Family::from_wire(a, s)),
    ]
}

fn v4_net() -> impl Strategy<Value = IpNet> {
    (any::<u32>(), 0u8..=32)
        .prop_map(|(a, l)| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), l).unwrap().trunc()))
}

fn v6_net() -> impl Strategy<Value = IpNet> {
    (any::<u128>(), 0u8..=128)
        .prop_map(|(a, l)| IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), l).unwrap().trunc()))
}

fn nlri_list(v6: bool, add_path: bool) -> BoxedStrategy<Vec<Nlri>> {
    let net = if v6 {
        v6_net().boxed()
    } else {
        v4_net().boxed()
    };
    prop::collection::vec(
        (net, any::<u32>()).prop_map(move |(prefix, id)| Nlri {
            prefix,
            path_id: add_path.then_some(id),
        }),
        0..12,
    )
    .boxed()
}

fn next_hop() -> impl Strategy<Value = NextHop> {
    prop_oneof![
        any::<u32>().prop_map(|a| NextHop::V4(Ipv4Addr::from(a))),
        (any::<u128>(), proptest::option::of(any::<u128>())).prop_map(|(g, l)| NextHop::V6 {
            global: Ipv6Addr::from(g),
            link_local: l.map(Ipv6Addr::from),
        }),
    ]
}

fn segment(kind: AsSegmentType, max_asn: u32) -> impl Strategy<Value = AsSegment> {
    prop::collection::vec(0..=max_asn, 1..8).prop_map(move |asns| AsSegment { kind, asns })
}

/// Any AS path (4-octet sessions carry everything as is).
fn as_path_any() -> impl Strategy<Value = AsPath> {
    let kind = prop_oneof![
        Just(AsSegmentType::Sequence),
        Just(AsSegmentType::Set),
        Just(AsSegmentType::ConfedSequence),
        Just(AsSegmentType::ConfedSet),
    ];
    prop::collection::vec(kind.prop_flat_map(|k| segment(k, u32::MAX)), 0..5)
        .prop_map(|segments| AsPath { segments })
}

/// Paths that survive a trip through a 2-octet session: confederation
/// segments (2-octet members) only in front, no two adjacent sequences (the
/// AS4 merge joins them, which is equivalent but not identical).
fn as_path_two_octet() -> impl Strategy<Value = AsPath> {
    let confed = prop::collection::vec(segment(AsSegmentType::ConfedSequence, 65535), 0..2);
    let kind = prop_oneof![Just(AsSegmentType::Sequence), Just(AsSegmentType::Set)];
    let rest = prop::collection::vec(kind.prop_flat_map(|k| segment(k, u32::MAX)), 0..5);
    (confed, rest).prop_map(|(mut segments, rest)| {
        for seg in rest {
            match segments.last_mut() {
                Some(last)
                    if last.kind == AsSegmentType::Sequence
                        && seg.kind == AsSegmentType::Sequence =>
                {
                    last.asns.extend(seg.asns)
                }
                _ => segments.push(seg),
            }
        }
        AsPath { segments }
    })
}

fn unknown_attributes() -> impl Strategy<Value = Vec<RawAttribute>> {
    let code = any::<u8>().prop_filter("unknown type", |c| {
        !brindle_bgp::packet::attribute::is_known_attribute(*c)
    });
    prop::collection::btree_map(code, prop::collection::vec(any::<u8>(), 0..300), 0..3).prop_map(
        |m: BTreeMap<u8, Vec<u8>>| {
            m.into_iter()
                .map(|(type_code, value)| RawAttribute {
                    flags: 0xe0,
                    type_code,
                    value,
                })
                .collect()
        },
    )
}

fn attributes(four_octet: bool) -> impl Strategy<Value = PathAttributes> {
    let path = if four_octet {
        as_path_any().boxed()
    } else {
        as_path_two_octet().boxed()
    };
    // From a 2-octet peer an AGGREGATOR that is not AS_TRANS voids AS4_PATH
    // (RFC 6793), so only wide aggregators round-trip there.
    let min_agg = if four_octet { 0 } else { 65536 };
    let aggregator = proptest::option::of((min_agg..=u32::MAX, any::<u32>()).prop_map(
        |(asn, a)| Aggregator {
            asn,
            address: Ipv4Addr::from(a),
        },
    ));
    let origin = proptest::option::of(prop_oneof![
        Just(Origin::Igp),
        Just(Origin::Egp),
        Just(Origin::Incomplete)
    ]);
    let communities = (
        prop::collection::vec(any::<u32>().prop_map(Community), 0..5),
        prop::collection::vec(any::<[u8; 8]>().prop_map(ExtendedCommunity), 0..4),
        prop::collection::vec(
            any::<(u32, u32, u32)>().prop_map(|(g, a, b)| LargeCommunity {
                global_admin: g,
                local_data1: a,
                local_data2: b,
            }),
            0..4,
        ),
    );
    let scalars = (
        origin,
        proptest::option::of(path),
        proptest::option::of(any::<u32>().prop_map(Ipv4Addr::from)),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u32>()),
        any::<bool>(),
        aggregator,
    );
    let reflection = (
        proptest::option::of(any::<u32>().prop_map(Ipv4Addr::from)),
        prop::collection::vec(any::<u32>().prop_map(Ipv4Addr::from), 0..4),
    );
    (scalars, communities, reflection, unknown_attributes()).prop_map(
        |(
            (origin, as_path, next_hop, med, local_pref, atomic_aggregate, aggregator),
            (communities, extended_communities, large_communities),
            (originator_id, cluster_list),
            unknown,
        )| PathAttributes {
            origin,
            as_path,
            next_hop,
            med,
            local_pref,
            atomic_aggregate,
            aggregator,
            communities,
            originator_id,
            cluster_list,
            extended_communities,
            large_communities,
            unknown,
        },
    )
}

fn mp_family() -> impl Strategy<Value = (Family, bool)> {
    prop_oneof![
        Just((Family::IPV4_UNICAST, false)),
        Just((Family::IPV6_UNICAST, true)),
    ]
}

fn update(four_octet: bool, add_path: bool) -> impl Strategy<Value = Update> {
    let reach = proptest::option::of((mp_family(), next_hop()).prop_flat_map(
        move |((family, v6), next_hop)| {
            nlri_list(v6, add_path).prop_map(move |nlri| MpReach {
                family,
                next_hop,
                nlri,
            })
        },
    ));
    let unreach = proptest::option::of(mp_family().prop_flat_map(move |(family, v6)| {
        nlri_list(v6, add_path).prop_map(move |withdrawn| MpUnreach { family, withdrawn })
    }));
    (
        nlri_list(false, add_path),
        attributes(four_octet),
        nlri_list(false, add_path),
        reach,
        unreach,
    )
        .prop_map(
            |(withdrawn, attributes, nlri, mp_reach, mp_unreach)| Update {
                withdrawn,
                attributes,
                nlri,
                mp_reach,
                mp_unreach,
            },
        )
}

fn capability() -> impl Strategy<Value = Capability> {
    let add_path_mode = prop_oneof![
        Just(AddPathMode::Receive),
        Just(AddPathMode::Send),
        Just(AddPathMode::Both)
    ];
    prop_oneof![
        family().prop_map(Capability::Multiprotocol),
        Just(Capability::RouteRefresh),
        Just(Capability::ExtendedMessage),
        Just(Capability::EnhancedRouteRefresh),
        (
            any::<bool>(),
            any::<bool>(),
            0u16..4096,
            prop::collection::vec((family(), any::<bool>()), 0..4)
        )
            .prop_map(
                |(r, n, t, fams)| Capability::GracefulRestart(GracefulRestart {
                    restart_state: r,
                    notification: n,
                    restart_time: t,
                    families: fams
                        .into_iter()
                        .map(|(family, f)| GracefulRestartFamily {
                            family,
                            forwarding_preserved: f,
                        })
                        .collect(),
                })
            ),
        prop::collection::vec((family(), add_path_mode), 1..4).prop_map(|v| {
            Capability::AddPath(
                v.into_iter()
                    .map(|(family, mode)| AddPathFamily { family, mode })
                    .collect(),
            )
        }),
        (
            any::<u8>().prop_filter("unknown code", |c| {
                !matches!(c, 1 | 2 | 6 | 64 | 65 | 69 | 70)
            }),
            prop::collection::vec(any::<u8>(), 0..40)
        )
            .prop_map(|(code, value)| Capability::Unknown { code, value }),
    ]
}

fn open() -> impl Strategy<Value = Open> {
    (
        any::<u32>(),
        any::<bool>(),
        any::<u16>(),
        any::<u32>(),
        prop::collection::vec(capability(), 0..12),
    )
        .prop_map(|(asn, with_cap, hold_time, id, mut capabilities)| {
            // The AS survives only if it fits My AS or the capability says it.
            let asn = if with_cap || asn > 65535 {
                capabilities.push(Capability::FourOctetAs(asn));
                asn
            } else {
                asn & 0xffff
            };
            Open {
                version: 4,
                asn,
                hold_time,
                bgp_id: Ipv4Addr::from(id),
                capabilities,
            }
        })
}

fn roundtrip(message: &Message, ctx: &EncodeContext) -> Result<(), TestCaseError> {
    let wire = match message.to_bytes(ctx) {
        Ok(wire) => wire,
        Err(EncodeError::TooLarge { .. }) => return Ok(()),
        Err(e) => return Err(TestCaseError::fail(format!("encode: {e}"))),
    };
    let decoded = decode_message(&wire, &ctx.mirror())
        .map_err(|e| TestCaseError::fail(format!("decode: {e}")))?
        .ok_or_else(|| TestCaseError::fail("incomplete"))?;
    prop_assert_eq!(decoded.len, wire.len());
    prop_assert_eq!(&decoded.message, message);
    // Split anywhere: the framing layer asks for more bytes.
    for cut in [0, 1, 18, wire.len() - 1] {
        prop_assert_eq!(decode_message(&wire[..cut], &ctx.mirror()), Ok(None));
    }
    Ok(())
}

fn four_octet_ctx(add_path: bool, extended: bool) -> EncodeContext {
    EncodeContext {
        four_octet_as: true,
        add_path: if add_path {
            vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST]
        } else {
            vec![]
        },
        max_message_size: if extended { 65535 } else { 4096 },
        ipv4_unicast_classic: true,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn update_roundtrip_four_octet(u in update(true, false), extended in any::<bool>()) {
        roundtrip(&Message::Update(u), &four_octet_ctx(false, extended))?;
    }

    #[test]
    fn update_roundtrip_add_path(u in update(true, true)) {
        roundtrip(&Message::Update(u), &four_octet_ctx(true, false))?;
    }

    #[test]
    fn update_roundtrip_two_octet(u in update(false, false)) {
        roundtrip(&Message::Update(u), &EncodeContext::default())?;
    }

    #[test]
    fn open_roundtrip(o in open()) {
        roundtrip(&Message::Open(o), &EncodeContext::default())?;
    }

    #[test]
    fn notification_roundtrip(code in any::<u8>(), subcode in any::<u8>(),
                              data in prop::collection::vec(any::<u8>(), 0..200)) {
        roundtrip(&Message::Notification(Notification { code, subcode, data }),
                  &EncodeContext::default())?;
    }

    #[test]
    fn shutdown_communication_roundtrip(text in ".{0,300}") {
        let n = Notification::administrative_shutdown(Some(&text));
        let got = n.shutdown_communication();
        if text.is_empty() {
            prop_assert_eq!(got, None);
        } else {
            let got = got.unwrap().unwrap();
            prop_assert!(text.starts_with(got));
            prop_assert!(got.len() <= 255);
        }
        roundtrip(&Message::Notification(n), &EncodeContext::default())?;
    }

    #[test]
    fn route_refresh_roundtrip(family in family(), subtype in any::<u8>()) {
        roundtrip(&Message::RouteRefresh(RouteRefresh { family, subtype: subtype.into() }),
                  &EncodeContext::default())?;
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(
        body in prop::collection::vec(any::<u8>(), 0..600),
        message_type in 1u8..=5,
        four_octet in any::<bool>(),
        add_path in any::<bool>(),
    ) {
        let ctx = four_octet_ctx(add_path, false).mirror();
        let ctx = DecodeContext { four_octet_as: four_octet, ..ctx };
        let mut wire = vec![0xff; 16];
        wire.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
        wire.push(message_type);
        wire.extend_from_slice(&body);
        if let Ok(Some(decoded)) = decode_message(&wire, &ctx) {
            prop_assert_eq!(decoded.len, wire.len());
        }
        let _ = decode_message(&body, &ctx);
    }
}

#[test]
fn keepalive_roundtrip() {
    let wire = Message::Keepalive
        .to_bytes(&EncodeContext::default())
        .unwrap();
    assert_eq!(wire.len(), 19);
    let decoded = decode_message(&wire, &DecodeContext::default())
        .unwrap()
        .unwrap();
    assert_eq!(decoded.message, Message::Keepalive);
}
