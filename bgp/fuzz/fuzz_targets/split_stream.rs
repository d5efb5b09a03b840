//! The TCP reader's framing (`packet::split_frame`) over arbitrary bytes
//! arriving in arbitrary chunks: it never panics, the frames it emits are
//! the stream's prefix in order, it stops after a bad header, each whole
//! message decodes to a message or an error (never "incomplete"), and the
//! frames do not depend on how the stream was chunked.
#![no_main]

use brindle_bgp::packet::{decode_message, split_frame, DecodeContext, Frame};
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;

/// Feeds `stream` in chunks of the given sizes (cycled); returns the frames.
fn frames(stream: &[u8], chunks: &[u8], ctx: &DecodeContext) -> Vec<Frame> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < stream.len() {
        let size = chunks
            .get(i % chunks.len().max(1))
            .map_or(stream.len(), |c| usize::from(*c).max(1));
        i += 1;
        let end = (at + size).min(stream.len());
        buf.extend_from_slice(&stream[at..end]);
        at = end;
        while let Some(frame) = split_frame(&mut buf, ctx) {
            let bad = matches!(frame, Frame::BadHeader(_));
            out.push(frame);
            if bad {
                return out;
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let (chunks, stream) = data.split_at(data.len().min(8));
    for max in [4096usize, 65535] {
        let ctx = DecodeContext {
            max_message_size: max,
            ..DecodeContext::default()
        };
        let chunked = frames(stream, chunks, &ctx);
        let mut consumed = Vec::new();
        for (n, frame) in chunked.iter().enumerate() {
            let bytes: &Bytes = match frame {
                Frame::Message(b) => {
                    assert!(b.len() >= 19 && b.len() <= max);
                    let decoded = decode_message(b, &ctx);
                    assert!(!matches!(decoded, Ok(None)), "a whole message is never incomplete");
                    if let Ok(Some(m)) = decoded {
                        assert_eq!(m.len, b.len());
                    }
                    b
                }
                Frame::BadHeader(h) => {
                    assert_eq!(h.len(), 19);
                    assert_eq!(n, chunked.len() - 1, "nothing after a bad header");
                    assert!(decode_message(h, &ctx).is_err());
                    h
                }
            };
            consumed.extend_from_slice(bytes);
        }
        assert_eq!(&stream[..consumed.len()], &consumed[..], "frames are the stream's prefix");
        assert_eq!(chunked, frames(stream, &[], &ctx), "chunking changes nothing");
    }
});
