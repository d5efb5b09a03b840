//! Helpers of the codec's byte-vector tests (each wire module keeps its
//! vectors in its own `mod vectors`, smoltcp style): hex to bytes, whole
//! messages with their header, and the check that a vector decodes to the
//! expected message and that message encodes back to exactly the vector.

use super::{decode_message, DecodeContext, EncodeContext, Message, UpdateOutcome};

/// NOTIFICATION (code, subcode).
pub(crate) type CodeSubcode = (u8, u8);
/// Wire bytes, expected NOTIFICATION, expected data.
pub(crate) type ErrorCase = (Vec<u8>, CodeSubcode, Vec<u8>);
/// Expected NOTIFICATION code/subcode and data.
pub(crate) type ErrorExpectation = (CodeSubcode, Vec<u8>);

pub(crate) const MARKER: &str = "ffffffffffffffffffffffffffffffff";

pub(crate) fn bytes(hex_str: &str) -> Vec<u8> {
    let clean: String = hex_str.split_whitespace().collect();
    hex::decode(clean).expect("test vector is valid hex")
}

/// Header + body, with the length computed.
pub(crate) fn message(message_type: u8, body_hex: &str) -> Vec<u8> {
    let body = bytes(body_hex);
    let mut out = bytes(MARKER);
    out.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    out.push(message_type);
    out.extend_from_slice(&body);
    out
}

pub(crate) fn four_octet() -> (DecodeContext, EncodeContext) {
    let e = EncodeContext {
        four_octet_as: true,
        ..EncodeContext::default()
    };
    (e.mirror(), e)
}

pub(crate) fn decode_one(wire: &[u8], ctx: &DecodeContext) -> (Message, UpdateOutcome) {
    let decoded = decode_message(wire, ctx)
        .expect("vector decodes")
        .expect("vector is complete");
    assert_eq!(decoded.len, wire.len());
    (decoded.message, decoded.outcome)
}

pub(crate) fn assert_both_ways(
    wire: &[u8],
    message: &Message,
    dctx: &DecodeContext,
    ectx: &EncodeContext,
) {
    let (decoded, outcome) = decode_one(wire, dctx);
    assert_eq!(&decoded, message, "decode");
    assert_eq!(outcome, UpdateOutcome::Ok);
    let encoded = message.to_bytes(ectx).expect("encodes");
    assert_eq!(hex::encode(&encoded), hex::encode(wire), "encode");
}
