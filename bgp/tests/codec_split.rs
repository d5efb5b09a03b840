//! The UPDATE packing helpers the Adj-RIB-Out uses: many prefixes become as
//! few UPDATEs as fit under the negotiated maximum size, each decoding back
//! to the same attributes, and all of them together to the same prefixes.

use std::net::{Ipv4Addr, Ipv6Addr};

use brindle_bgp::packet::{
    build_announcements, build_withdrawals, decode_message, AsPath, Community, EncodeContext,
    EncodeError, Family, Message, NextHop, Nlri, Origin, PathAttributes, Update, UpdateOutcome,
};

fn attrs() -> PathAttributes {
    PathAttributes {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::from_sequence([65001, 4_200_000_001])),
        next_hop: Some(Ipv4Addr::new(10, 0, 0, 1)),
        med: Some(5),
        communities: vec![Community::new(65001, 1), Community::NO_EXPORT],
        ..PathAttributes::default()
    }
}

fn v4_prefixes(n: u32) -> Vec<Nlri> {
    (0..n)
        .map(|i| Nlri::new(format!("10.{}.{}.0/24", i / 256, i % 256).parse().unwrap()))
        .collect()
}

fn v6_prefixes(n: u32) -> Vec<Nlri> {
    (0..n)
        .map(|i| Nlri::new(format!("2001:db8:{i:x}::/48").parse().unwrap()))
        .collect()
}

fn decode_all(messages: &[bytes::Bytes], ctx: &EncodeContext) -> Vec<Update> {
    messages
        .iter()
        .map(|wire| {
            assert!(wire.len() <= ctx.max_message_size, "{} octets", wire.len());
            let decoded = decode_message(wire, &ctx.mirror()).unwrap().unwrap();
            assert_eq!(decoded.len, wire.len());
            assert_eq!(decoded.outcome, UpdateOutcome::Ok);
            match decoded.message {
                Message::Update(u) => u,
                other => panic!("expected UPDATE, got {other:?}"),
            }
        })
        .collect()
}

#[test]
fn classic_ipv4_announcements_fill_each_message() {
    let ctx = EncodeContext {
        four_octet_as: true,
        ..EncodeContext::default()
    };
    let prefixes = v4_prefixes(2000);
    let messages =
        build_announcements(Family::IPV4_UNICAST, &attrs(), None, &prefixes, &ctx).unwrap();
    assert!(messages.len() > 1);
    let updates = decode_all(&messages, &ctx);
    let mut all = Vec::new();
    for (i, u) in updates.iter().enumerate() {
        assert_eq!(u.attributes, attrs());
        assert!(u.mp_reach.is_none());
        // Every message but the last is full: one more /24 (4 octets) would
        // not fit.
        if i + 1 < updates.len() {
            assert!(messages[i].len() + 4 > ctx.max_message_size);
        }
        all.extend(u.nlri.iter().copied());
    }
    assert_eq!(all, prefixes);
}

#[test]
fn extended_messages_need_fewer_updates() {
    let small = EncodeContext::default();
    let big = EncodeContext {
        max_message_size: 65535,
        ..EncodeContext::default()
    };
    let prefixes = v4_prefixes(3000);
    let a = build_announcements(Family::IPV4_UNICAST, &attrs(), None, &prefixes, &small).unwrap();
    let b = build_announcements(Family::IPV4_UNICAST, &attrs(), None, &prefixes, &big).unwrap();
    assert!(a.len() >= 3);
    assert_eq!(b.len(), 1);
    // Toward a 2-octet peer the wide AS travels in AS4_PATH.
    let updates = decode_all(&b, &big);
    assert_eq!(updates[0].attributes, attrs());
    assert_eq!(updates[0].nlri.len(), 3000);
}

#[test]
fn ipv6_announcements_use_mp_reach_with_add_path() {
    let ctx = EncodeContext {
        four_octet_as: true,
        add_path: vec![Family::IPV6_UNICAST],
        ..EncodeContext::default()
    };
    let prefixes: Vec<Nlri> = v6_prefixes(1500)
        .into_iter()
        .enumerate()
        .map(|(i, n)| Nlri::with_path_id(n.prefix, i as u32 + 1))
        .collect();
    let next_hop = NextHop::V6 {
        global: "2001:db8::1".parse::<Ipv6Addr>().unwrap(),
        link_local: Some("fe80::1".parse().unwrap()),
    };
    let messages = build_announcements(
        Family::IPV6_UNICAST,
        &attrs(),
        Some(next_hop),
        &prefixes,
        &ctx,
    )
    .unwrap();
    assert!(messages.len() > 1);
    let mut all = Vec::new();
    for u in decode_all(&messages, &ctx) {
        // NEXT_HOP is not sent with MP_REACH-only UPDATEs.
        let mut expected = attrs();
        expected.next_hop = None;
        assert_eq!(u.attributes, expected);
        assert!(u.nlri.is_empty());
        let reach = u.mp_reach.unwrap();
        assert_eq!(reach.next_hop, next_hop);
        all.extend(reach.nlri);
    }
    assert_eq!(all, prefixes);
}

#[test]
fn ipv4_goes_to_mp_reach_when_not_classic_or_with_an_ipv6_next_hop() {
    let ctx = EncodeContext {
        four_octet_as: true,
        ipv4_unicast_classic: false,
        ..EncodeContext::default()
    };
    let prefixes = v4_prefixes(3);
    let messages =
        build_announcements(Family::IPV4_UNICAST, &attrs(), None, &prefixes, &ctx).unwrap();
    let u = &decode_all(&messages, &ctx)[0];
    let reach = u.mp_reach.as_ref().unwrap();
    assert_eq!(reach.next_hop, NextHop::V4(Ipv4Addr::new(10, 0, 0, 1)));
    assert_eq!(reach.nlri, prefixes);

    // RFC 8950: IPv4 routes with an IPv6 next hop.
    let classic = EncodeContext {
        four_octet_as: true,
        ..EncodeContext::default()
    };
    let nh = NextHop::V6 {
        global: "2001:db8::1".parse().unwrap(),
        link_local: None,
    };
    let messages = build_announcements(
        Family::IPV4_UNICAST,
        &attrs(),
        Some(nh),
        &prefixes,
        &classic,
    )
    .unwrap();
    let u = &decode_all(&messages, &classic)[0];
    assert_eq!(u.mp_reach.as_ref().unwrap().next_hop, nh);
    assert!(u.nlri.is_empty());
}

#[test]
fn withdrawals_classic_and_mp() {
    let ctx = EncodeContext::default();
    let v4 = v4_prefixes(2500);
    let messages = build_withdrawals(Family::IPV4_UNICAST, &v4, &ctx).unwrap();
    assert!(messages.len() > 1);
    let all: Vec<Nlri> = decode_all(&messages, &ctx)
        .into_iter()
        .flat_map(|u| u.withdrawn)
        .collect();
    assert_eq!(all, v4);

    let v6 = v6_prefixes(1000);
    let messages = build_withdrawals(Family::IPV6_UNICAST, &v6, &ctx).unwrap();
    assert!(messages.len() > 1);
    let all: Vec<Nlri> = decode_all(&messages, &ctx)
        .into_iter()
        .flat_map(|u| u.mp_unreach.unwrap().withdrawn)
        .collect();
    assert_eq!(all, v6);

    assert!(build_withdrawals(Family::IPV6_UNICAST, &[], &ctx)
        .unwrap()
        .is_empty());
}

#[test]
fn errors() {
    let ctx = EncodeContext::default();
    let mut no_nh = attrs();
    no_nh.next_hop = None;
    assert!(matches!(
        build_announcements(Family::IPV4_UNICAST, &no_nh, None, &v4_prefixes(1), &ctx),
        Err(EncodeError::Unrepresentable(_))
    ));
    assert!(matches!(
        build_announcements(Family::IPV6_UNICAST, &attrs(), None, &v4_prefixes(1), &ctx),
        Err(EncodeError::Unrepresentable(_))
    ));
    let mut huge = attrs();
    huge.communities = (0..1100).map(Community).collect();
    assert!(matches!(
        build_announcements(Family::IPV4_UNICAST, &huge, None, &v4_prefixes(1), &ctx),
        Err(EncodeError::TooLarge { .. })
    ));
    // A single oversized UPDATE is refused by the message encoder too.
    let update = Message::Update(Update {
        attributes: huge,
        nlri: v4_prefixes(1),
        ..Update::default()
    });
    assert!(matches!(
        update.to_bytes(&ctx),
        Err(EncodeError::TooLarge { .. })
    ));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn prefixes() -> impl Strategy<Value = (bool, Vec<Nlri>)> {
        prop_oneof![
            prop::collection::vec((any::<u32>(), 0u8..=32, any::<u32>()), 1..400).prop_map(|v| {
                (
                    false,
                    v.into_iter()
                        .map(|(a, l, id)| {
                            let net = ipnet::Ipv4Net::new(Ipv4Addr::from(a), l).unwrap();
                            Nlri::with_path_id(ipnet::IpNet::V4(net), id)
                        })
                        .collect(),
                )
            }),
            prop::collection::vec((any::<u128>(), 0u8..=128, any::<u32>()), 1..400).prop_map(|v| {
                (
                    true,
                    v.into_iter()
                        .map(|(a, l, id)| {
                            let net = ipnet::Ipv6Net::new(Ipv6Addr::from(a), l).unwrap();
                            Nlri::with_path_id(ipnet::IpNet::V6(net), id)
                        })
                        .collect(),
                )
            },),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever the prefixes and the size limit, every message fits and
        /// together they carry exactly the input, in order.
        #[test]
        fn packing_is_lossless_and_within_size(
            (v6, nlri) in prefixes(),
            max in 256usize..=4096,
            add_path in any::<bool>(),
            withdraw in any::<bool>(),
        ) {
            let family = if v6 { Family::IPV6_UNICAST } else { Family::IPV4_UNICAST };
            let nlri: Vec<Nlri> = nlri
                .into_iter()
                .map(|n| Nlri { path_id: add_path.then_some(n.path_id.unwrap_or(0)), ..n })
                .collect();
            let ctx = EncodeContext {
                four_octet_as: true,
                add_path: if add_path { vec![family] } else { vec![] },
                max_message_size: max,
                ipv4_unicast_classic: true,
            };
            let next_hop = v6.then_some(NextHop::V6 {
                global: "2001:db8::1".parse().unwrap(),
                link_local: None,
            });
            let messages = if withdraw {
                build_withdrawals(family, &nlri, &ctx).unwrap()
            } else {
                build_announcements(family, &attrs(), next_hop, &nlri, &ctx).unwrap()
            };
            let mut all = Vec::new();
            for u in decode_all(&messages, &ctx) {
                all.extend(u.withdrawn);
                all.extend(u.nlri);
                all.extend(u.mp_reach.into_iter().flat_map(|r| r.nlri));
                all.extend(u.mp_unreach.into_iter().flat_map(|r| r.withdrawn));
            }
            let expected: Vec<Nlri> = nlri.iter().map(|n| Nlri { prefix: n.prefix.trunc(), ..*n }).collect();
            prop_assert_eq!(all, expected);
        }
    }
}
