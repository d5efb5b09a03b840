//! 4-octet AS toward and from 2-octet speakers (RFC 6793 §4.2.2 / §4.2.3):
//! AS_TRANS substitution with AS4_PATH / AS4_AGGREGATOR on send, and the
//! merge back on receive.

use std::net::Ipv4Addr;

use brindle_bgp::packet::{
    decode_message, Aggregator, AsPath, AsSegment, AsSegmentType, DecodeContext, EncodeContext,
    Message, Nlri, Origin, PathAttributes, Update, UpdateOutcome,
};

fn bytes(hex_str: &str) -> Vec<u8> {
    let clean: String = hex_str.split_whitespace().collect();
    hex::decode(clean).expect("test vector is valid hex")
}

fn update(attrs_hex: &str) -> Vec<u8> {
    let attrs = bytes(attrs_hex);
    let nlri = bytes("18 c0a801");
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

fn seg(kind: AsSegmentType, asns: &[u32]) -> AsSegment {
    AsSegment {
        kind,
        asns: asns.to_vec(),
    }
}

fn path(segments: Vec<AsSegment>) -> AsPath {
    AsPath { segments }
}

use AsSegmentType::{ConfedSequence, Sequence, Set};

fn decode_attrs(wire: &[u8], ctx: &DecodeContext) -> PathAttributes {
    let decoded = decode_message(wire, ctx).unwrap().unwrap();
    assert_eq!(decoded.outcome, UpdateOutcome::Ok);
    match decoded.message {
        Message::Update(u) => u.attributes,
        other => panic!("expected UPDATE, got {other:?}"),
    }
}

const HEAD: &str = "40 01 01 00";
const NH: &str = "40 03 04 0a000001";

#[test]
fn wide_asns_toward_a_two_octet_peer_use_as_trans_and_as4_path() {
    let attrs = PathAttributes {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::from_sequence([65001, 4_200_000_001, 65002])),
        next_hop: Some(Ipv4Addr::new(10, 0, 0, 1)),
        aggregator: Some(Aggregator {
            asn: 4_200_000_001,
            address: Ipv4Addr::new(10, 9, 9, 9),
        }),
        ..PathAttributes::default()
    };
    let message = Message::Update(Update {
        attributes: attrs.clone(),
        nlri: vec![Nlri::new("192.168.1.0/24".parse().unwrap())],
        ..Update::default()
    });
    let wire = message.to_bytes(&EncodeContext::default()).unwrap();
    // AS_PATH: 65001 23456 65002; AGGREGATOR 23456; AS4_PATH and
    // AS4_AGGREGATOR with the real numbers (4200000001 = 0xfa56ea01).
    let expect = update(&format!(
        "{HEAD}
         40 02 08 02 03 fde9 5ba0 fdea
         {NH}
         c0 07 06 5ba0 0a090909
         c0 11 0e 02 03 0000fde9 fa56ea01 0000fdea
         c0 12 08 fa56ea01 0a090909"
    ));
    assert_eq!(hex::encode(&wire), hex::encode(&expect));
    // A 2-octet peer that passes it back gets the original attributes.
    assert_eq!(decode_attrs(&wire, &DecodeContext::default()), attrs);
}

#[test]
fn four_octet_session_sends_no_as4_attributes_and_ignores_received_ones() {
    let ctx = EncodeContext {
        four_octet_as: true,
        ..EncodeContext::default()
    };
    let attrs = PathAttributes {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::from_sequence([4_200_000_001])),
        next_hop: Some(Ipv4Addr::new(10, 0, 0, 1)),
        ..PathAttributes::default()
    };
    let wire = Message::Update(Update {
        attributes: attrs,
        nlri: vec![Nlri::new("192.168.1.0/24".parse().unwrap())],
        ..Update::default()
    })
    .to_bytes(&ctx)
    .unwrap();
    assert_eq!(
        hex::encode(&wire),
        hex::encode(update(&format!("{HEAD} 40 02 06 02 01 fa56ea01 {NH}")))
    );
    // AS4_PATH from a 4-octet speaker is ignored.
    let wire = update(&format!(
        "{HEAD} 40 02 06 02 01 0000fde9 {NH} c0 11 06 02 01 00000001"
    ));
    let attrs = decode_attrs(&wire, &ctx.mirror());
    assert_eq!(attrs.as_path, Some(AsPath::from_sequence([65001])));
}

#[test]
fn merge_keeps_leading_asns_added_by_two_octet_speakers() {
    // RFC 6793 §4.2.3: AS_PATH 100 200 23456 23456, AS4_PATH X Y → 100 200 X Y.
    let wire = update(&format!(
        "{HEAD} 40 02 0a 02 04 0064 00c8 5ba0 5ba0 {NH}
         c0 11 0a 02 02 fa56ea01 fa56ea02"
    ));
    let attrs = decode_attrs(&wire, &DecodeContext::default());
    assert_eq!(
        attrs.as_path,
        Some(AsPath::from_sequence([
            100,
            200,
            4_200_000_001,
            4_200_000_002
        ]))
    );
}

#[test]
fn longer_as4_path_is_ignored() {
    let wire = update(&format!(
        "{HEAD} 40 02 04 02 01 5ba0 {NH} c0 11 0a 02 02 fa56ea01 fa56ea02"
    ));
    let attrs = decode_attrs(&wire, &DecodeContext::default());
    assert_eq!(attrs.as_path, Some(AsPath::from_sequence([23456])));
}

#[test]
fn aggregator_not_as_trans_means_as4_attributes_are_ignored() {
    // An old speaker aggregated (AGGREGATOR 65000, not AS_TRANS): AS4_PATH and
    // AS4_AGGREGATOR are stale and ignored.
    let wire = update(&format!(
        "{HEAD} 40 02 04 02 01 5ba0 {NH}
         c0 07 06 fde8 0a000002
         c0 11 06 02 01 fa56ea01
         c0 12 08 fa56ea01 0a000003"
    ));
    let attrs = decode_attrs(&wire, &DecodeContext::default());
    assert_eq!(attrs.as_path, Some(AsPath::from_sequence([23456])));
    assert_eq!(
        attrs.aggregator,
        Some(Aggregator {
            asn: 65000,
            address: Ipv4Addr::new(10, 0, 0, 2)
        })
    );
}

#[test]
fn aggregator_as_trans_is_replaced_by_as4_aggregator() {
    let wire = update(&format!(
        "{HEAD} 40 02 04 02 01 5ba0 {NH}
         c0 07 06 5ba0 0a000002
         c0 11 06 02 01 fa56ea01
         c0 12 08 fa56ea01 0a000003"
    ));
    let attrs = decode_attrs(&wire, &DecodeContext::default());
    assert_eq!(attrs.as_path, Some(AsPath::from_sequence([4_200_000_001])));
    assert_eq!(
        attrs.aggregator,
        Some(Aggregator {
            asn: 4_200_000_001,
            address: Ipv4Addr::new(10, 0, 0, 3)
        })
    );
}

#[test]
fn merge_counts_sets_as_one_and_confederations_as_zero() {
    let as_path = path(vec![
        seg(ConfedSequence, &[64512, 64513]),
        seg(Sequence, &[100, 23456]),
        seg(Set, &[23456, 300]),
    ]);
    // AS4_PATH covering the last two (a sequence of 1 and the set); a confed
    // segment in AS4_PATH is dropped.
    let as4 = path(vec![
        seg(ConfedSequence, &[1]),
        seg(Sequence, &[4_200_000_001]),
        seg(Set, &[4_200_000_002, 300]),
    ]);
    assert_eq!(
        as_path.merge_as4(&as4),
        path(vec![
            seg(ConfedSequence, &[64512, 64513]),
            seg(Sequence, &[100, 4_200_000_001]),
            seg(Set, &[4_200_000_002, 300]),
        ])
    );
    assert_eq!(as_path.path_len(), 3);
}

#[test]
fn path_helpers() {
    let mut p = path(vec![
        seg(ConfedSequence, &[64512]),
        seg(Sequence, &[100, 200]),
    ]);
    assert_eq!(p.first_asn(), Some(100));
    assert!(p.contains(64512));
    p.prepend(65001);
    assert_eq!(p.segments[0], seg(Sequence, &[65001]));
    assert_eq!(p.path_len(), 3);
    let mut q = AsPath::from_sequence([1]);
    q.prepend(2);
    assert_eq!(q, AsPath::from_sequence([2, 1]));
}
