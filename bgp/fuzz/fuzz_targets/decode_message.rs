//! Decodes arbitrary bytes under several negotiated contexts. Whatever
//! decodes must re-encode and decode again; with 4-octet AS (no AS4_PATH
//! merge, which is lossy for pathological confederation paths by design) the
//! second decode must equal the first.
#![no_main]

use brindle_bgp::packet::{decode_message, DecodeContext, EncodeContext, Family};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fn contexts() -> Vec<EncodeContext> {
    let both = vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST];
    vec![
        EncodeContext::default(),
        EncodeContext {
            four_octet_as: true,
            ..EncodeContext::default()
        },
        EncodeContext {
            four_octet_as: true,
            add_path: both.clone(),
            max_message_size: 65535,
            ipv4_unicast_classic: true,
        },
        EncodeContext {
            four_octet_as: false,
            add_path: both,
            max_message_size: 65535,
            ipv4_unicast_classic: false,
        },
    ]
}

fuzz_target!(|data: &[u8]| {
    for ectx in contexts() {
        let dctx: DecodeContext = ectx.mirror();
        let Ok(Some(first)) = decode_message(data, &dctx) else {
            continue;
        };
        assert!(first.len <= data.len());
        let _ = first.outcome.reasons();
        let mut buf = BytesMut::new();
        if first.message.encode(&ectx, &mut buf).is_err() {
            continue;
        }
        let second = decode_message(&buf, &dctx)
            .expect("re-encoded message must decode")
            .expect("re-encoded message must be complete");
        assert_eq!(second.len, buf.len());
        if ectx.four_octet_as {
            assert_eq!(first.message, second.message);
        }
    }
});
