//! RFC 7606 revised error handling: each malformed-UPDATE case maps to the
//! right outcome (ok, attribute-discard, treat-as-withdraw, session reset)
//! and, for resets, to the right NOTIFICATION.

use std::net::Ipv4Addr;

use brindle_bgp::packet::{
    decode_message, AsPath, DecodeContext, DecodeError, EncodeContext, Family, Message, Nlri,
    Origin, RawAttribute, Update, UpdateOutcome,
};

fn bytes(hex_str: &str) -> Vec<u8> {
    let clean: String = hex_str.split_whitespace().collect();
    hex::decode(clean).expect("test vector is valid hex")
}

/// An UPDATE with no withdrawn routes, the given attributes and NLRI.
fn update(attrs_hex: &str, nlri_hex: &str) -> Vec<u8> {
    let attrs = bytes(attrs_hex);
    let nlri = bytes(nlri_hex);
    let mut body = vec![0, 0];
    body.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    body.extend_from_slice(&attrs);
    body.extend_from_slice(&nlri);
    let mut out = vec![0xff; 16];
    out.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    out.push(2);
    out.extend_from_slice(&body);
    out
}

const ORIGIN: &str = "40 01 01 00";
const AS_PATH: &str = "40 02 06 02 01 0000fde9";
const NEXT_HOP: &str = "40 03 04 0a000001";
const NLRI: &str = "18 c0a801";

fn ctx4() -> DecodeContext {
    DecodeContext {
        four_octet_as: true,
        ..DecodeContext::default()
    }
}

fn decode(wire: &[u8], ctx: &DecodeContext) -> Result<(Update, UpdateOutcome), DecodeError> {
    let decoded = decode_message(wire, ctx)?.expect("complete");
    match decoded.message {
        Message::Update(u) => Ok((u, decoded.outcome)),
        other => panic!("expected UPDATE, got {other:?}"),
    }
}

fn withdraw_reason(wire: &[u8], ctx: &DecodeContext) -> Vec<DecodeError> {
    let (_, outcome) = decode(wire, ctx).expect("no session reset");
    match outcome {
        UpdateOutcome::TreatAsWithdraw(reasons) => reasons,
        other => panic!("expected treat-as-withdraw, got {other:?}"),
    }
}

fn discard_reason(wire: &[u8], ctx: &DecodeContext) -> (Update, Vec<DecodeError>) {
    let (u, outcome) = decode(wire, ctx).expect("no session reset");
    match outcome {
        UpdateOutcome::AttributeDiscard(reasons) => (u, reasons),
        other => panic!("expected attribute-discard, got {other:?}"),
    }
}

fn reset(wire: &[u8], ctx: &DecodeContext) -> (u8, u8) {
    let err = decode(wire, ctx).expect_err("session reset");
    let n = err.to_notification();
    (n.code, n.subcode)
}

#[test]
fn well_formed_update_is_ok() {
    let wire = update(&format!("{ORIGIN} {AS_PATH} {NEXT_HOP}"), NLRI);
    let (u, outcome) = decode(&wire, &ctx4()).unwrap();
    assert_eq!(outcome, UpdateOutcome::Ok);
    assert_eq!(u.attributes.origin, Some(Origin::Igp));
}

#[test]
fn bad_origin_value_is_treat_as_withdraw() {
    let wire = update(&format!("40 01 01 03 {AS_PATH} {NEXT_HOP}"), NLRI);
    let reasons = withdraw_reason(&wire, &ctx4());
    assert_eq!(
        reasons,
        vec![DecodeError::InvalidOrigin {
            data: bytes("40 01 01 03")
        }]
    );
    let n = reasons[0].to_notification();
    assert_eq!((n.code, n.subcode, n.data), (3, 6, bytes("40 01 01 03")));
}

#[test]
fn bad_origin_length_is_treat_as_withdraw() {
    let wire = update(&format!("40 01 02 0000 {AS_PATH} {NEXT_HOP}"), NLRI);
    let reasons = withdraw_reason(&wire, &ctx4());
    assert_eq!(reasons[0].code_subcode(), (3, 5));
}

#[test]
fn malformed_as_path_is_treat_as_withdraw() {
    for (name, as_path) in [
        ("segment overrun", "40 02 06 02 02 0000fde9"),
        ("zero-length segment", "40 02 02 02 00"),
        ("unknown segment type", "40 02 06 05 01 0000fde9"),
        ("dangling octet", "40 02 07 02 01 0000fde9 02"),
    ] {
        let wire = update(&format!("{ORIGIN} {as_path} {NEXT_HOP}"), NLRI);
        let reasons = withdraw_reason(&wire, &ctx4());
        assert_eq!(reasons, vec![DecodeError::MalformedAsPath], "{name}");
        assert_eq!(reasons[0].code_subcode(), (3, 11));
    }
}

#[test]
fn bad_next_hop_length_is_treat_as_withdraw() {
    let wire = update(&format!("{ORIGIN} {AS_PATH} 40 03 05 0a00000100"), NLRI);
    assert_eq!(withdraw_reason(&wire, &ctx4())[0].code_subcode(), (3, 5));
}

#[test]
fn bad_med_and_local_pref_length_are_treat_as_withdraw() {
    for attr in ["80 04 03 000064", "40 05 02 0064"] {
        let wire = update(&format!("{ORIGIN} {AS_PATH} {NEXT_HOP} {attr}"), NLRI);
        assert_eq!(
            withdraw_reason(&wire, &ctx4())[0].code_subcode(),
            (3, 5),
            "{attr}"
        );
    }
}

#[test]
fn bad_community_lists_are_treat_as_withdraw() {
    for attr in [
        "c0 08 05 0001000200",        // COMMUNITIES not a multiple of 4
        "c0 08 00",                   // COMMUNITIES empty
        "80 0a 03 0a0000",            // CLUSTER_LIST not a multiple of 4
        "c0 10 04 00020000",          // EXTENDED_COMMUNITIES not a multiple of 8
        "c0 20 08 0000fde9 00000001", // LARGE_COMMUNITY not a multiple of 12
        "80 09 03 0a0000",            // ORIGINATOR_ID not 4 octets
    ] {
        let wire = update(&format!("{ORIGIN} {AS_PATH} {NEXT_HOP} {attr}"), NLRI);
        let reasons = withdraw_reason(&wire, &ctx4());
        assert_eq!(reasons.len(), 1, "{attr}");
    }
}

#[test]
fn missing_mandatory_attributes_with_nlri_are_treat_as_withdraw() {
    let wire = update(&format!("{AS_PATH} {NEXT_HOP}"), NLRI);
    assert_eq!(
        withdraw_reason(&wire, &ctx4()),
        vec![DecodeError::MissingWellKnownAttribute { type_code: 1 }]
    );
    let wire = update(&format!("{ORIGIN} {NEXT_HOP}"), NLRI);
    assert_eq!(
        withdraw_reason(&wire, &ctx4()),
        vec![DecodeError::MissingWellKnownAttribute { type_code: 2 }]
    );
    let wire = update(&format!("{ORIGIN} {AS_PATH}"), NLRI);
    let reasons = withdraw_reason(&wire, &ctx4());
    assert_eq!(
        reasons,
        vec![DecodeError::MissingWellKnownAttribute { type_code: 3 }]
    );
    let n = reasons[0].to_notification();
    assert_eq!((n.code, n.subcode, n.data), (3, 3, vec![3]));
}

#[test]
fn mp_reach_only_update_needs_no_next_hop_attribute() {
    let mp = "80 0e 1c 0002 01 10 20010db8000000000000000000000001 00 30 20010db80001";
    let wire = update(&format!("{mp} {ORIGIN} {AS_PATH}"), "");
    let (u, outcome) = decode(&wire, &ctx4()).unwrap();
    assert_eq!(outcome, UpdateOutcome::Ok);
    assert_eq!(u.mp_reach.unwrap().nlri.len(), 1);
    // ...but still ORIGIN and AS_PATH.
    let wire = update(mp, "");
    assert_eq!(withdraw_reason(&wire, &ctx4()).len(), 2);
}

#[test]
fn withdraw_only_update_needs_no_attributes() {
    let mut wire = vec![0xff; 16];
    wire.extend_from_slice(&bytes("001a 02 0003 10 0a00 0000"));
    let (u, outcome) = decode(&wire, &ctx4()).unwrap();
    assert_eq!(outcome, UpdateOutcome::Ok);
    assert_eq!(u.withdrawn, vec![Nlri::new("10.0.0.0/16".parse().unwrap())]);
}

#[test]
fn bad_atomic_aggregate_and_aggregator_are_discarded() {
    let wire = update(
        &format!("{ORIGIN} {AS_PATH} {NEXT_HOP} 40 06 01 00 c0 07 07 0000fde90a0000"),
        NLRI,
    );
    let (u, reasons) = discard_reason(&wire, &ctx4());
    assert_eq!(reasons.len(), 2);
    assert!(reasons.iter().all(|r| r.code_subcode() == (3, 5)));
    assert!(!u.attributes.atomic_aggregate);
    assert_eq!(u.attributes.aggregator, None);
    // The rest of the route survives.
    assert_eq!(u.attributes.next_hop, Some(Ipv4Addr::new(10, 0, 0, 1)));
    assert_eq!(u.nlri.len(), 1);
}

#[test]
fn malformed_as4_path_from_two_octet_peer_is_discarded() {
    let wire = update(
        "40 01 01 00  40 02 04 02 01 5ba0  40 03 04 0a000001  c0 11 04 02 01 0001",
        NLRI,
    );
    let (u, reasons) = discard_reason(&wire, &DecodeContext::default());
    assert_eq!(reasons[0].code_subcode(), (3, 9));
    assert_eq!(u.attributes.as_path, Some(AsPath::from_sequence([23456])));
}

#[test]
fn duplicate_attribute_keeps_the_first() {
    let wire = update(
        &format!("{ORIGIN} {AS_PATH} {NEXT_HOP} 80 04 04 00000001 80 04 04 00000002"),
        NLRI,
    );
    let (u, reasons) = discard_reason(&wire, &ctx4());
    assert_eq!(reasons, vec![DecodeError::MalformedAttributeList]);
    assert_eq!(u.attributes.med, Some(1));
}

#[test]
fn duplicate_mp_reach_resets_the_session() {
    let mp = "80 0e 0d 0001 01 04 0a000001 00 18 0a0100";
    let wire = update(&format!("{mp} {mp} {ORIGIN} {AS_PATH}"), "");
    assert_eq!(reset(&wire, &ctx4()), (3, 1));
    let unreach = "80 0f 07 0001 01 18 0a0100";
    let wire = update(&format!("{unreach} {unreach}"), "");
    assert_eq!(reset(&wire, &ctx4()), (3, 1));
}

#[test]
fn unparseable_nlri_or_withdrawn_resets_the_session() {
    // Prefix length 33.
    let wire = update(&format!("{ORIGIN} {AS_PATH} {NEXT_HOP}"), "21 0a000001 00");
    assert_eq!(reset(&wire, &ctx4()), (3, 10));
    // Truncated prefix.
    let wire = update(&format!("{ORIGIN} {AS_PATH} {NEXT_HOP}"), "18 0a00");
    assert_eq!(reset(&wire, &ctx4()), (3, 10));
    // Withdrawn routes: /24 with only two octets.
    let mut wire = vec![0xff; 16];
    wire.extend_from_slice(&bytes("001a 02 0003 18 0a00 0000"));
    assert_eq!(reset(&wire, &ctx4()), (3, 10));
}

#[test]
fn length_overruns_reset_the_session() {
    // Attribute length runs past the attribute block.
    let wire = update(&format!("{ORIGIN} 40 02 09 02 01 0000fde9"), "");
    assert_eq!(reset(&wire, &ctx4()), (3, 1));
    // Truncated attribute header.
    let wire = update(&format!("{ORIGIN} 40"), "");
    assert_eq!(reset(&wire, &ctx4()), (3, 1));
    // Withdrawn length past the message.
    let mut wire = vec![0xff; 16];
    wire.extend_from_slice(&bytes("0017 02 0009 0000"));
    assert_eq!(reset(&wire, &ctx4()), (3, 1));
    // Total attribute length past the message.
    let mut wire = vec![0xff; 16];
    wire.extend_from_slice(&bytes("0017 02 0000 0009"));
    assert_eq!(reset(&wire, &ctx4()), (3, 1));
}

#[test]
fn malformed_mp_reach_resets_the_session() {
    // Next hop length 5.
    let wire = update(
        &format!("80 0e 0c 0001 01 05 0a00000100 00 18 0a0100 {ORIGIN} {AS_PATH}"),
        "",
    );
    assert_eq!(reset(&wire, &ctx4()), (3, 9));
    // IPv6 prefix length 129.
    let wire = update(
        &format!(
            "80 0e 16 0002 01 10 20010db8000000000000000000000001 00 81 20 {ORIGIN} {AS_PATH}"
        ),
        "",
    );
    assert_eq!(reset(&wire, &ctx4()), (3, 9));
    // MP_UNREACH too short for AFI/SAFI.
    let wire = update("80 0f 02 0002", "");
    assert_eq!(reset(&wire, &ctx4()), (3, 9));
}

#[test]
fn mp_reach_of_an_unsupported_family_is_ignored() {
    // AFI 25 (L2VPN) SAFI 70 (EVPN): not parsed, not an error.
    let wire = update(
        &format!("80 0e 0b 0019 46 04 0a000001 00 0102 {ORIGIN} {AS_PATH}"),
        "",
    );
    let (u, outcome) = decode(&wire, &ctx4()).unwrap();
    assert_eq!(outcome, UpdateOutcome::Ok);
    assert_eq!(u.mp_reach, None);
}

#[test]
fn unknown_attributes() {
    // Optional transitive (type 99): kept, Partial bit set, passed on.
    // Optional non-transitive (type 98): dropped.
    let wire = update(
        &format!("{ORIGIN} {AS_PATH} {NEXT_HOP} c0 63 02 abcd 80 62 01 ff"),
        NLRI,
    );
    let (u, outcome) = decode(&wire, &ctx4()).unwrap();
    assert_eq!(outcome, UpdateOutcome::Ok);
    assert_eq!(
        u.attributes.unknown,
        vec![RawAttribute {
            flags: 0xe0,
            type_code: 99,
            value: vec![0xab, 0xcd]
        }]
    );
    let ectx = EncodeContext {
        four_octet_as: true,
        ..EncodeContext::default()
    };
    let out = Message::Update(u).to_bytes(&ectx).unwrap();
    let expect = update(
        &format!("{ORIGIN} {AS_PATH} {NEXT_HOP} e0 63 02 abcd"),
        NLRI,
    );
    assert_eq!(hex::encode(out), hex::encode(expect));

    // Unknown well-known (no optional bit): treat-as-withdraw, 3/2.
    let wire = update(&format!("{ORIGIN} {AS_PATH} {NEXT_HOP} 40 63 01 00"), NLRI);
    let reasons = withdraw_reason(&wire, &ctx4());
    let n = reasons[0].to_notification();
    assert_eq!((n.code, n.subcode, n.data), (3, 2, bytes("40 63 01 00")));
}

#[test]
fn conflicting_flags_make_the_attribute_malformed() {
    // ORIGIN marked optional: treat-as-withdraw with 3/4.
    let wire = update(&format!("c0 01 01 00 {AS_PATH} {NEXT_HOP}"), NLRI);
    let reasons = withdraw_reason(&wire, &ctx4());
    let n = reasons[0].to_notification();
    assert_eq!((n.code, n.subcode, n.data), (3, 4, bytes("c0 01 01 00")));
    // AGGREGATOR marked non-transitive: discarded.
    let wire = update(
        &format!("{ORIGIN} {AS_PATH} {NEXT_HOP} 80 07 08 0000fde9 0a000001"),
        NLRI,
    );
    let (_, reasons) = discard_reason(&wire, &ctx4());
    assert_eq!(reasons[0].code_subcode(), (3, 4));
}

#[test]
fn extended_length_flag_on_a_short_attribute_is_accepted() {
    let wire = update(&format!("50 01 0001 00 {AS_PATH} {NEXT_HOP}"), NLRI);
    let (u, outcome) = decode(&wire, &ctx4()).unwrap();
    assert_eq!(outcome, UpdateOutcome::Ok);
    assert_eq!(u.attributes.origin, Some(Origin::Igp));
}

#[test]
fn treat_as_withdraw_withdraws_everything_announced() {
    let mp = "80 0e 1c 0002 01 10 20010db8000000000000000000000001 00 30 20010db80001";
    let wire = update(&format!("{mp} 40 01 01 07 {AS_PATH} {NEXT_HOP}"), NLRI);
    let (u, outcome) = decode(&wire, &ctx4()).unwrap();
    assert!(outcome.is_treat_as_withdraw());
    let withdrawals = u.into_withdrawals();
    assert_eq!(
        withdrawals,
        vec![
            (
                Family::IPV4_UNICAST,
                vec![Nlri::new("192.168.1.0/24".parse().unwrap())]
            ),
            (
                Family::IPV6_UNICAST,
                vec![Nlri::new("2001:db8:1::/48".parse().unwrap())]
            ),
        ]
    );
}

/// Regression (found by fuzzing): unknown attributes arriving out of type
/// order are stored sorted, so re-encoding (which sorts) is lossless and
/// equal attribute sets compare equal; unused low flag bits are cleared.
#[test]
fn unknown_attributes_are_kept_in_type_order() {
    let wire = update(
        &format!("{ORIGIN} {AS_PATH} {NEXT_HOP} c0 fd 01 aa cd 52 00"),
        NLRI,
    );
    let (u, outcome) = decode(&wire, &ctx4()).unwrap();
    assert_eq!(outcome, UpdateOutcome::Ok);
    let codes: Vec<(u8, u8)> = u
        .attributes
        .unknown
        .iter()
        .map(|a| (a.type_code, a.flags))
        .collect();
    assert_eq!(codes, vec![(0x52, 0xe0), (0xfd, 0xe0)]);
    let ectx = EncodeContext {
        four_octet_as: true,
        ..EncodeContext::default()
    };
    let again = Message::Update(u.clone()).to_bytes(&ectx).unwrap();
    let (u2, _) = decode(&again, &ctx4()).unwrap();
    assert_eq!(u2, u);
}
