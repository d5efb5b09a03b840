//! Byte-vector tests in both directions, hand-built from the RFC layouts:
//! every vector decodes to the expected message and the message encodes back
//! to exactly the same bytes. Also header framing and OPEN errors.

use std::net::{Ipv4Addr, Ipv6Addr};

use brindle_bgp::packet::{
    decode_message, AsPath, Capability, DecodeContext, DecodeError, EncodeContext, Family,
    GracefulRestart, GracefulRestartFamily, Message, MpReach, NextHop, Nlri, Notification, Open,
    Origin, PathAttributes, RouteRefresh, RouteRefreshSubtype, Update, UpdateOutcome,
};

/// NOTIFICATION (code, subcode).
type CodeSubcode = (u8, u8);
/// Wire bytes, expected NOTIFICATION, expected data.
type ErrorCase = (Vec<u8>, CodeSubcode, Vec<u8>);
/// Expected NOTIFICATION code/subcode and data.
type ErrorExpectation = (CodeSubcode, Vec<u8>);

const MARKER: &str = "ffffffffffffffffffffffffffffffff";

fn bytes(hex_str: &str) -> Vec<u8> {
    let clean: String = hex_str.split_whitespace().collect();
    hex::decode(clean).expect("test vector is valid hex")
}

/// Header + body, with the length computed.
fn message(message_type: u8, body_hex: &str) -> Vec<u8> {
    let body = bytes(body_hex);
    let mut out = bytes(MARKER);
    out.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    out.push(message_type);
    out.extend_from_slice(&body);
    out
}

fn four_octet() -> (DecodeContext, EncodeContext) {
    let e = EncodeContext {
        four_octet_as: true,
        ..EncodeContext::default()
    };
    (e.mirror(), e)
}

fn decode_one(wire: &[u8], ctx: &DecodeContext) -> (Message, UpdateOutcome) {
    let decoded = decode_message(wire, ctx)
        .expect("vector decodes")
        .expect("vector is complete");
    assert_eq!(decoded.len, wire.len());
    (decoded.message, decoded.outcome)
}

fn assert_both_ways(wire: &[u8], message: &Message, dctx: &DecodeContext, ectx: &EncodeContext) {
    let (decoded, outcome) = decode_one(wire, dctx);
    assert_eq!(&decoded, message, "decode");
    assert_eq!(outcome, UpdateOutcome::Ok);
    let encoded = message.to_bytes(ectx).expect("encodes");
    assert_eq!(hex::encode(&encoded), hex::encode(wire), "encode");
}

#[test]
fn keepalive() {
    let wire = bytes(&format!("{MARKER} 0013 04"));
    let (d, e) = four_octet();
    assert_both_ways(&wire, &Message::Keepalive, &d, &e);
}

#[test]
fn open_with_capabilities() {
    // AS 65001, hold 180, id 10.0.0.1; one Capabilities parameter holding
    // MP ipv4-unicast, route refresh, 4-octet AS 65001.
    let wire = message(
        1,
        "04 fde9 00b4 0a000001 10
         02 0e  01 04 0001 00 01  02 00  41 04 0000fde9",
    );
    let open = Message::Open(Open {
        version: 4,
        asn: 65001,
        hold_time: 180,
        bgp_id: Ipv4Addr::new(10, 0, 0, 1),
        capabilities: vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::RouteRefresh,
            Capability::FourOctetAs(65001),
        ],
    });
    assert_both_ways(
        &wire,
        &open,
        &DecodeContext::default(),
        &EncodeContext::default(),
    );
}

#[test]
fn open_four_octet_asn_uses_as_trans_in_my_as() {
    // AS 4200000001 = 0xfa56ea01: My AS carries AS_TRANS (0x5ba0).
    let wire = message(1, "04 5ba0 005a c0000201 08 02 06 41 04 fa56ea01");
    let open = Message::Open(Open {
        version: 4,
        asn: 4_200_000_001,
        hold_time: 90,
        bgp_id: Ipv4Addr::new(192, 0, 2, 1),
        capabilities: vec![Capability::FourOctetAs(4_200_000_001)],
    });
    assert_both_ways(
        &wire,
        &open,
        &DecodeContext::default(),
        &EncodeContext::default(),
    );
}

#[test]
fn open_graceful_restart_add_path_and_unknown_capabilities() {
    // GR: R bit + N bit, restart time 120, ipv4-unicast with F bit;
    // ADD-PATH ipv6-unicast both; FQDN (73) and dynamic capability (67),
    // which must be kept and ignored; each in its own parameter, as FRR does.
    let wire = message(
        1,
        "04 fde9 00b4 0a000001 1f
         02 08 40 06 c078 0001 01 80
         02 06 45 04 0002 01 03
         02 07 49 05 03 66 72 72 00
         02 02 43 00",
    );
    let (msg, _) = decode_one(&wire, &DecodeContext::default());
    let Message::Open(open) = msg else {
        panic!("expected OPEN")
    };
    assert_eq!(open.asn, 65001);
    assert_eq!(
        open.capabilities,
        vec![
            Capability::GracefulRestart(GracefulRestart {
                restart_state: true,
                notification: true,
                restart_time: 120,
                families: vec![GracefulRestartFamily {
                    family: Family::IPV4_UNICAST,
                    forwarding_preserved: true,
                }],
            }),
            Capability::AddPath(vec![brindle_bgp::packet::AddPathFamily {
                family: Family::IPV6_UNICAST,
                mode: brindle_bgp::packet::AddPathMode::Both,
            }]),
            Capability::Unknown {
                code: 73,
                value: bytes("03 66 72 72 00"),
            },
            Capability::Unknown {
                code: 67,
                value: vec![],
            },
        ]
    );
    // Re-encoded in a single parameter, it decodes to the same OPEN.
    let again = Message::Open(open.clone())
        .to_bytes(&EncodeContext::default())
        .unwrap();
    let (msg2, _) = decode_one(&again, &DecodeContext::default());
    assert_eq!(msg2, Message::Open(open));
}

#[test]
fn open_malformed_known_capability_is_kept_raw() {
    // 4-octet AS capability with 2 octets: kept as unknown, My AS used.
    let wire = message(1, "04 fde9 00b4 0a000001 06 02 04 41 02 0001");
    let (msg, _) = decode_one(&wire, &DecodeContext::default());
    let Message::Open(open) = msg else {
        panic!("expected OPEN")
    };
    assert_eq!(open.asn, 65001);
    assert_eq!(
        open.capabilities,
        vec![Capability::Unknown {
            code: 65,
            value: vec![0, 1]
        }]
    );
}

#[test]
fn open_rfc9072_extended_parameters() {
    // Opt Parm Len 255, Non-Ext OP Type 255, Extended Opt. Parm. Length 9,
    // then a Capabilities parameter with a 2-octet length of 6.
    let wire = message(1, "04 fde9 00b4 0a000001 ff ff 0009 02 0006 41 04 0000fde9");
    let (msg, _) = decode_one(&wire, &DecodeContext::default());
    let Message::Open(open) = msg else {
        panic!("expected OPEN")
    };
    assert_eq!(open.capabilities, vec![Capability::FourOctetAs(65001)]);
}

#[test]
fn open_errors_map_to_notifications() {
    let cases: Vec<ErrorCase> = vec![
        // Version 3 → 2/1 with our version (4) as 2 octets.
        (message(1, "03 fde9 00b4 0a000001 00"), (2, 1), vec![0, 4]),
        // Authentication parameter (type 1) → 2/4.
        (
            message(1, "04 fde9 00b4 0a000001 03 01 01 00"),
            (2, 4),
            vec![],
        ),
        // Optional parameters overrun the message → 2/0.
        (
            message(1, "04 fde9 00b4 0a000001 08 02 06 41 04"),
            (2, 0),
            vec![],
        ),
    ];
    for (wire, (code, subcode), data) in cases {
        let err = decode_message(&wire, &DecodeContext::default()).unwrap_err();
        let n = err.to_notification();
        assert_eq!((n.code, n.subcode), (code, subcode), "{err}");
        assert_eq!(n.data, data, "{err}");
    }
}

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

#[test]
fn notification_with_shutdown_communication() {
    let wire = message(3, "06 02 03 627965");
    let n = Notification::administrative_shutdown(Some("bye"));
    assert_both_ways(
        &wire,
        &Message::Notification(n.clone()),
        &DecodeContext::default(),
        &EncodeContext::default(),
    );
    assert_eq!(n.shutdown_communication(), Some(Ok("bye")));
    assert_eq!(
        n.to_string(),
        "cease: administrative shutdown (6/2): \"bye\""
    );

    // Cut at a character boundary to at most 255 octets.
    let long = "é".repeat(200);
    let n = Notification::administrative_reset(&long);
    assert_eq!(n.data[0], 254);
    assert_eq!(n.shutdown_communication().unwrap().unwrap().len(), 254);

    // Length past the data, and invalid UTF-8, are reported not panicked on.
    let bad = Notification {
        code: 6,
        subcode: 2,
        data: vec![5, b'a'],
    };
    assert!(bad.shutdown_communication().unwrap().is_err());
    let bad = Notification {
        code: 6,
        subcode: 4,
        data: vec![1, 0xff],
    };
    assert!(bad.shutdown_communication().unwrap().is_err());
    assert_eq!(Notification::new(4, 0).shutdown_communication(), None);
}

#[test]
fn route_refresh_plain_and_enhanced() {
    let plain = message(5, "0002 00 01");
    assert_both_ways(
        &plain,
        &Message::RouteRefresh(RouteRefresh::request(Family::IPV6_UNICAST)),
        &DecodeContext::default(),
        &EncodeContext::default(),
    );
    let borr = message(5, "0001 01 01");
    assert_both_ways(
        &borr,
        &Message::RouteRefresh(RouteRefresh {
            family: Family::IPV4_UNICAST,
            subtype: RouteRefreshSubtype::BeginOfRefresh,
        }),
        &DecodeContext::default(),
        &EncodeContext::default(),
    );
    let eorr = message(5, "0001 02 01");
    let (msg, _) = decode_one(&eorr, &DecodeContext::default());
    assert!(matches!(
        msg,
        Message::RouteRefresh(RouteRefresh {
            subtype: RouteRefreshSubtype::EndOfRefresh,
            ..
        })
    ));
    // Reserved subtypes decode (to be ignored by the receiver).
    let other = message(5, "0001 07 01");
    let (msg, _) = decode_one(&other, &DecodeContext::default());
    assert!(matches!(
        msg,
        Message::RouteRefresh(RouteRefresh {
            subtype: RouteRefreshSubtype::Other(7),
            ..
        })
    ));
}

#[test]
fn framing_needs_more_bytes_then_yields_one_message() {
    let ctx = DecodeContext::default();
    let mut stream = bytes(&format!("{MARKER} 0013 04"));
    stream.extend(message(5, "0001 00 01"));
    for cut in 0..19 {
        assert_eq!(decode_message(&stream[..cut], &ctx), Ok(None), "cut {cut}");
    }
    let first = decode_message(&stream, &ctx).unwrap().unwrap();
    assert_eq!(first.message, Message::Keepalive);
    assert_eq!(first.len, 19);
    let rest = &stream[first.len..];
    assert_eq!(decode_message(&rest[..22], &ctx), Ok(None));
    let second = decode_message(rest, &ctx).unwrap().unwrap();
    assert_eq!(second.len, 23);
}

#[test]
fn header_errors_map_to_notifications() {
    let ctx = DecodeContext::default();
    let extended = DecodeContext {
        max_message_size: 65535,
        ..DecodeContext::default()
    };
    let mut bad_marker = bytes(&format!("{MARKER} 0013 04"));
    bad_marker[3] = 0;
    let mut big_open = message(1, "04 fde9 00b4 0a000001 00");
    big_open[16..18].copy_from_slice(&5000u16.to_be_bytes());
    let mut big_update = message(2, "0000 0000");
    big_update[16..18].copy_from_slice(&5000u16.to_be_bytes());

    let cases: Vec<(&str, Vec<u8>, &DecodeContext, ErrorExpectation)> = vec![
        ("marker", bad_marker, &ctx, ((1, 1), vec![])),
        (
            "length < 19",
            bytes(&format!("{MARKER} 0012 04")),
            &ctx,
            ((1, 2), vec![0, 18]),
        ),
        (
            "keepalive 20",
            bytes(&format!("{MARKER} 0014 04 00")),
            &ctx,
            ((1, 2), vec![0, 20]),
        ),
        (
            "type 9",
            bytes(&format!("{MARKER} 0013 09")),
            &ctx,
            ((1, 3), vec![9]),
        ),
        (
            "update over 4096",
            big_update.clone(),
            &ctx,
            ((1, 2), vec![0x13, 0x88]),
        ),
        (
            "open over 4096 even extended",
            big_open,
            &extended,
            ((1, 2), vec![0x13, 0x88]),
        ),
        (
            "short update",
            bytes(&format!("{MARKER} 0015 02 0000")),
            &ctx,
            ((1, 2), vec![0, 21]),
        ),
        (
            "short notification",
            bytes(&format!("{MARKER} 0014 03 06")),
            &ctx,
            ((1, 2), vec![0, 20]),
        ),
    ];
    for (name, wire, ctx, ((code, subcode), data)) in cases {
        let err = decode_message(&wire, ctx).expect_err(name);
        let n = err.to_notification();
        assert_eq!((n.code, n.subcode, n.data), (code, subcode, data), "{name}");
    }
    // With extended messages a 5000-octet UPDATE is only incomplete here.
    assert_eq!(decode_message(&big_update, &extended), Ok(None));

    // ROUTE-REFRESH of the wrong length: 7/1 with the whole message as data.
    let rr = message(5, "0001 00 01 00");
    let err = decode_message(&rr, &ctx).unwrap_err();
    assert_eq!(
        err,
        DecodeError::RouteRefreshInvalidLength { data: rr.clone() }
    );
    let n = err.to_notification();
    assert_eq!((n.code, n.subcode), (7, 1));
    assert_eq!(n.data, rr);
}

/// OPENs captured from real speakers by `codec_interop` (AS 65010, router
/// id 10.77.0.1, hold 9): BIRD 2, FRR 10 (with FQDN, software version and
/// other capabilities we do not know) and GoBGP (with extended next hop).
#[test]
fn real_captured_opens() {
    let captures = [
        (
            "bird",
            "ffffffffffffffffffffffffffffffff00350104fdf200090a4d000118021601040001000102004002\
             007841040000fdf246004700",
        ),
        (
            "frr",
            "ffffffffffffffffffffffffffffffff00630104fdf200090a4d00014602060104000100010202800002\
             02020002024600020641040000fdf2020206000206450400010101020b4909077465737462656400020440\
             02c0780209470700010180000000",
        ),
        (
            "gobgp",
            "ffffffffffffffffffffffffffffffff003b0104fdf200090a4d00011e021c0200490402766d00010400\
             01000141040000fdf20506000100010002",
        ),
    ];
    for (name, wire) in captures {
        let wire = bytes(wire);
        let (msg, _) = decode_one(&wire, &DecodeContext::default());
        let Message::Open(open) = msg else {
            panic!("{name}: expected OPEN")
        };
        assert_eq!(open.asn, 65010, "{name}");
        assert_eq!(open.hold_time, 9, "{name}");
        assert_eq!(open.bgp_id, Ipv4Addr::new(10, 77, 0, 1), "{name}");
        assert_eq!(open.four_octet_as(), Some(65010), "{name}");
        assert_eq!(
            open.multiprotocol_families(),
            vec![Family::IPV4_UNICAST],
            "{name}"
        );
        assert!(
            open.capabilities.contains(&Capability::RouteRefresh),
            "{name}"
        );
        let again = Message::Open(open.clone())
            .to_bytes(&EncodeContext::default())
            .unwrap();
        let (msg, _) = decode_one(&again, &DecodeContext::default());
        assert_eq!(msg, Message::Open(open), "{name}");
    }
}
