//! BGP-4 wire codec: messages, attributes and capabilities, with no I/O.
//!
//! ```text
//! Message header (RFC 4271 §4.1):
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                                                               |
//! +                                                               +
//! |                           Marker (16 x 0xff)                  |
//! +                                                               +
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Length               |      Type     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!  Type: 1 OPEN, 2 UPDATE, 3 NOTIFICATION, 4 KEEPALIVE, 5 ROUTE-REFRESH
//! ```
//!
//! # Contract
//!
//! * [`decode_message`] takes the bytes a TCP reader has buffered and returns
//!   `Ok(None)` until a whole message is there, then the message and how many
//!   octets it used. It never panics, whatever the input (this is fuzzed:
//!   `bgp/fuzz`), and every `Err` is a [`DecodeError`] that maps 1:1 to the
//!   NOTIFICATION to send ([`DecodeError::to_notification`]).
//! * The header is validated as soon as its 19 octets are buffered: marker all
//!   ones (1/1), length within 19..=max and the per-type bounds (1/2; OPEN and
//!   KEEPALIVE never above 4096, the rest up to the negotiated maximum), known
//!   type (1/3), ROUTE-REFRESH body exactly 4 octets (7/1).
//! * Message bodies are validated as described in [`open`], [`update`],
//!   [`attribute`], [`notification`] and [`route_refresh`]. UPDATEs follow RFC
//!   7606: decoding yields the UPDATE plus an [`UpdateOutcome`]; `Err` means
//!   session reset.
//! * Semantic OPEN checks that need configuration (peer AS, BGP identifier,
//!   hold time) live in [`mod@negotiate`], which also produces the
//!   [`DecodeContext`] / [`EncodeContext`] for the rest of the session.
//! * Encoding never panics either; it fails with [`EncodeError`] when a
//!   message would exceed the maximum size or a value cannot be represented.
//!   [`build_announcements`] / [`build_withdrawals`] split many prefixes into
//!   as few UPDATEs as fit.
//!
//! Tests: each wire module keeps its byte vectors next to its code, in its
//! own `mod vectors` (hand-built from the RFC layouts, checked in both
//! directions: the vector decodes to the message, the message encodes to the
//! vector), with the helpers in `test_vectors`. Properties, RFC 7606 cases
//! and captures from real daemons are in `bgp/tests/codec_*.rs`.

pub mod attribute;
pub mod context;
pub mod error;
pub mod iana;
pub mod negotiate;
pub mod notification;
pub mod open;
pub mod route_refresh;
#[cfg(test)]
mod test_vectors;
pub mod types;
pub mod update;

use bytes::{BufMut, Bytes, BytesMut};
use nom::number::complete::{be_u16, be_u8};

pub use attribute::{
    Aggregator, AsPath, AsSegment, AsSegmentType, Community, ExtendedCommunity, LargeCommunity,
    Origin, PathAttributes, RawAttribute, UpdateOutcome,
};
pub use context::{DecodeContext, EncodeContext, MAX_EXTENDED_MESSAGE_SIZE, MAX_MESSAGE_SIZE};
pub use error::{DecodeError, EncodeError};
pub use negotiate::{negotiate, Negotiated, NegotiationError};
pub use notification::Notification;
pub use open::{
    AddPathFamily, AddPathMode, Capability, GracefulRestart, GracefulRestartFamily,
    LongLivedFamily, Open, AS_TRANS,
};
pub use route_refresh::{RouteRefresh, RouteRefreshSubtype};
pub use types::{Afi, Family, NextHop, Nlri, Safi};
pub use update::{build_announcements, build_withdrawals, MpReach, MpUnreach, Update};

/// Length of the message header.
pub const HEADER_LEN: usize = 19;
const MARKER: [u8; 16] = [0xff; 16];
const MIN_OPEN_LEN: usize = HEADER_LEN + 10;
const MIN_UPDATE_LEN: usize = HEADER_LEN + 4;
const MIN_NOTIFICATION_LEN: usize = HEADER_LEN + 2;

/// Message type octet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// 1.
    Open,
    /// 2.
    Update,
    /// 3.
    Notification,
    /// 4.
    Keepalive,
    /// 5.
    RouteRefresh,
}

impl MessageType {
    fn from_wire(value: u8) -> Option<MessageType> {
        match value {
            1 => Some(MessageType::Open),
            2 => Some(MessageType::Update),
            3 => Some(MessageType::Notification),
            4 => Some(MessageType::Keepalive),
            5 => Some(MessageType::RouteRefresh),
            _ => None,
        }
    }
    fn to_wire(self) -> u8 {
        match self {
            MessageType::Open => 1,
            MessageType::Update => 2,
            MessageType::Notification => 3,
            MessageType::Keepalive => 4,
            MessageType::RouteRefresh => 5,
        }
    }
}

/// A BGP message.
// UPDATE dominates traffic; boxing it would cost an allocation per message
// to shrink the rare others.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// OPEN.
    Open(Open),
    /// UPDATE.
    Update(Update),
    /// NOTIFICATION.
    Notification(Notification),
    /// KEEPALIVE.
    Keepalive,
    /// ROUTE-REFRESH.
    RouteRefresh(RouteRefresh),
}

/// One message taken off the front of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedMessage {
    /// The message.
    pub message: Message,
    /// RFC 7606 outcome for an UPDATE; always `Ok` for other messages.
    pub outcome: UpdateOutcome,
    /// Octets consumed from the buffer (the header's length field).
    pub len: usize,
}

/// Writes a header with a zero length; `update::finish_message` fills it in.
pub(crate) fn put_header(buf: &mut BytesMut, message_type: MessageType) {
    buf.put_slice(&MARKER);
    buf.put_u16(0);
    buf.put_u8(message_type.to_wire());
}

/// Checks the header at the front of `buf`. `Ok(None)` if fewer than 19
/// octets are buffered; otherwise the message type and total length.
pub fn decode_header(
    buf: &[u8],
    ctx: &DecodeContext,
) -> Result<Option<(MessageType, usize)>, DecodeError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    if buf[..16] != MARKER {
        return Err(DecodeError::ConnectionNotSynchronized);
    }
    let header = || DecodeError::ConnectionNotSynchronized;
    let (rest, length) = be_u16::<_, ()>(&buf[16..]).map_err(|_| header())?;
    let (_, type_octet) = be_u8::<_, ()>(rest).map_err(|_| header())?;
    let len = usize::from(length);
    let bad_length = DecodeError::BadMessageLength { length };
    if len < HEADER_LEN || len > ctx.max_message_size.max(MAX_MESSAGE_SIZE) {
        return Err(bad_length);
    }
    let message_type = MessageType::from_wire(type_octet).ok_or(DecodeError::BadMessageType {
        message_type: type_octet,
    })?;
    let ok = match message_type {
        MessageType::Open => (MIN_OPEN_LEN..=MAX_MESSAGE_SIZE).contains(&len),
        MessageType::Update => len >= MIN_UPDATE_LEN,
        MessageType::Notification => len >= MIN_NOTIFICATION_LEN,
        MessageType::Keepalive => len == HEADER_LEN,
        // Wrong ROUTE-REFRESH lengths are 7/1 with the whole message as data,
        // reported once the message is buffered.
        MessageType::RouteRefresh => true,
    };
    if !ok {
        return Err(bad_length);
    }
    Ok(Some((message_type, len)))
}

/// What [`split_frame`] took off the front of a byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// One whole message (header included), for [`decode_message`].
    Message(Bytes),
    /// A header that cannot start a message (bad marker, length or type):
    /// its 19 octets, which [`decode_message`] turns into the NOTIFICATION
    /// to send. The stream cannot be framed past it.
    BadHeader(Bytes),
}

/// The TCP reader's framing, without I/O: takes the first whole message
/// off `buf`, or `None` while more octets are needed. The header is checked
/// with [`decode_header`] as soon as its 19 octets are buffered, so a
/// header announcing a length it should not (noise, an HTTP request, more
/// than `ctx.max_message_size`) is reported at once instead of waiting for
/// that many octets (RFC 4271 §6.1).
pub fn split_frame(buf: &mut BytesMut, ctx: &DecodeContext) -> Option<Frame> {
    match decode_header(buf, ctx) {
        Ok(None) => None,
        Err(_) => Some(Frame::BadHeader(buf.split_to(HEADER_LEN).freeze())),
        Ok(Some((_, len))) if buf.len() >= len => Some(Frame::Message(buf.split_to(len).freeze())),
        Ok(Some(_)) => None,
    }
}

/// Decodes the first message in `buf`: `Ok(None)` until it is complete.
pub fn decode_message(
    buf: &[u8],
    ctx: &DecodeContext,
) -> Result<Option<DecodedMessage>, DecodeError> {
    let Some((message_type, len)) = decode_header(buf, ctx)? else {
        return Ok(None);
    };
    let Some(whole) = buf.get(..len) else {
        return Ok(None);
    };
    let body = &whole[HEADER_LEN..];
    let mut outcome = UpdateOutcome::Ok;
    let message = match message_type {
        MessageType::Open => Message::Open(Open::decode_body(body)?),
        MessageType::Update => {
            let (update, o) = Update::decode_body(body, ctx)?;
            outcome = o;
            Message::Update(update)
        }
        MessageType::Notification => Message::Notification(
            Notification::decode_body(body)
                .ok_or(DecodeError::BadMessageLength { length: len as u16 })?,
        ),
        MessageType::Keepalive => Message::Keepalive,
        MessageType::RouteRefresh => {
            Message::RouteRefresh(RouteRefresh::decode_body(body).ok_or_else(|| {
                DecodeError::RouteRefreshInvalidLength {
                    data: whole.to_vec(),
                }
            })?)
        }
    };
    Ok(Some(DecodedMessage {
        message,
        outcome,
        len,
    }))
}

impl Message {
    /// The message type.
    pub fn message_type(&self) -> MessageType {
        match self {
            Message::Open(_) => MessageType::Open,
            Message::Update(_) => MessageType::Update,
            Message::Notification(_) => MessageType::Notification,
            Message::Keepalive => MessageType::Keepalive,
            Message::RouteRefresh(_) => MessageType::RouteRefresh,
        }
    }

    /// Appends the complete message to `buf`. On error `buf` is left as it
    /// was.
    pub fn encode(&self, ctx: &EncodeContext, buf: &mut BytesMut) -> Result<(), EncodeError> {
        let start = buf.len();
        let result = self.encode_inner(ctx, buf, start);
        if result.is_err() {
            buf.truncate(start);
        }
        result
    }

    fn encode_inner(
        &self,
        ctx: &EncodeContext,
        buf: &mut BytesMut,
        start: usize,
    ) -> Result<(), EncodeError> {
        put_header(buf, self.message_type());
        match self {
            Message::Open(open) => open.encode_body(buf)?,
            Message::Update(update) => update.encode_body(ctx, buf)?,
            Message::Notification(n) => n.encode_body(buf),
            Message::Keepalive => {}
            Message::RouteRefresh(rr) => rr.encode_body(buf),
        }
        let size = buf.len() - start;
        let max = match self {
            Message::Open(_) | Message::Keepalive => MAX_MESSAGE_SIZE,
            _ => ctx
                .max_message_size
                .clamp(MAX_MESSAGE_SIZE, MAX_EXTENDED_MESSAGE_SIZE),
        };
        if size > max {
            return Err(EncodeError::TooLarge { size, max });
        }
        buf[start + 16..start + 18].copy_from_slice(&(size as u16).to_be_bytes());
        Ok(())
    }

    /// The complete message as bytes.
    pub fn to_bytes(&self, ctx: &EncodeContext) -> Result<Bytes, EncodeError> {
        let mut buf = BytesMut::new();
        self.encode(ctx, &mut buf)?;
        Ok(buf.freeze())
    }
}

#[cfg(test)]
mod framing_tests {
    use super::*;

    const KEEPALIVE: [u8; 19] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x00, 0x13, 0x04,
    ];

    #[test]
    fn whole_messages_are_split_and_partial_ones_wait() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&KEEPALIVE);
        buf.extend_from_slice(&KEEPALIVE[..10]);
        let ctx = DecodeContext::default();
        assert_eq!(
            split_frame(&mut buf, &ctx),
            Some(Frame::Message(Bytes::from_static(&KEEPALIVE)))
        );
        assert_eq!(split_frame(&mut buf, &ctx), None, "10 of 19 octets");
        buf.extend_from_slice(&KEEPALIVE[10..]);
        assert!(matches!(
            split_frame(&mut buf, &ctx),
            Some(Frame::Message(_))
        ));
        assert!(buf.is_empty());
    }

    #[test]
    fn a_bad_header_is_reported_once_its_19_octets_are_in() {
        let ctx = DecodeContext::default();
        // An HTTP request: bad marker, whatever its "length" says.
        let mut http = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..]);
        let Some(Frame::BadHeader(h)) = split_frame(&mut http, &ctx) else {
            panic!("not reported");
        };
        assert_eq!(h.len(), HEADER_LEN);
        assert_eq!(
            decode_message(&h, &ctx).unwrap_err().to_notification().code,
            1
        );
        // Good marker, length 60000 without extended messages: 1/2 at once.
        let mut long = BytesMut::from(&[0xffu8; 16][..]);
        long.extend_from_slice(&[0xea, 0x60, 0x02]);
        let Some(Frame::BadHeader(h)) = split_frame(&mut long, &ctx) else {
            panic!("not reported");
        };
        let n = decode_message(&h, &ctx).unwrap_err().to_notification();
        assert_eq!((n.code, n.subcode), (1, 2));
        // The same length is a message to wait for once 65535 is negotiated.
        let extended = DecodeContext {
            max_message_size: MAX_EXTENDED_MESSAGE_SIZE,
            ..DecodeContext::default()
        };
        let mut long = BytesMut::from(&[0xffu8; 16][..]);
        long.extend_from_slice(&[0xea, 0x60, 0x02]);
        assert_eq!(split_frame(&mut long, &extended), None);
    }
}

#[cfg(test)]
mod vectors {
    //! Byte vectors hand-built from the RFC layouts, both directions.

    use crate::packet::test_vectors::*;
    use crate::packet::{decode_message, DecodeContext, DecodeError, Message};

    #[test]
    fn keepalive() {
        let wire = bytes(&format!("{MARKER} 0013 04"));
        let (d, e) = four_octet();
        assert_both_ways(&wire, &Message::Keepalive, &d, &e);
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
}
