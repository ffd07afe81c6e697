//! Property tests: every decoder, fed arbitrary frames and bytes, returns a typed
//! result and never panics (nor overflows its stack, nor allocates what a length
//! prefix claims).

use proptest::prelude::*;
use switchboard_protocol::args::{decode_args, struct_fields, ArgsShape};
use switchboard_protocol::client::{parse_replies, parse_reply, parse_request, Envelope, Pipeline};
use switchboard_protocol::codec::{decode, decode_batch_reply, decode_reply, reply_outcome};
use switchboard_protocol::worker::{BrokerMessage, WorkerMessage};
use switchboard_protocol::{CallHeader, Frame, ReadyInfo, Timestamp, Value};

fn frames(parts: &[Vec<u8>]) -> Vec<Frame> {
    parts.iter().map(|p| Frame::from(&p[..])).collect()
}

/// Bytes that often look like MessagePack: markers, lengths and a few payload bytes.
fn msgpackish() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        any::<u8>(),
        Just(0x80u8),
        Just(0x81),
        Just(0x82),
        Just(0x90),
        Just(0x91),
        Just(0x92),
        Just(0xa4),
        Just(0xa6),
        Just(0xc0),
        Just(0xc4),
        Just(0xc6),
        Just(0xd6),
        Just(0xd7),
        Just(0xc7),
        Just(0xdc),
        Just(0xdd),
        Just(0xde),
        Just(0xdf),
        Just(0xff),
    ];
    prop::collection::vec(byte, 0..64)
}

/// Frame lists that start like real messages, so parsing goes past the first checks.
fn messages() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let frame = prop_oneof![
        msgpackish(),
        Just(Vec::new()),
        Just(b"SBC1".to_vec()),
        Just(b"SBW2\x01".to_vec()),
        Just(b"SBW2\x02\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\x02\0\0\0\x03\x03add".to_vec()),
        Just(b"SBW2\x03\0\0\0\0\0\0\0\x01".to_vec()),
        Just(b"system.batch".to_vec()),
        Just(b"add".to_vec()),
        (0u8..8).prop_map(|c| vec![c]),
        prop::collection::vec(any::<u8>(), 8..=8),
    ];
    prop::collection::vec(frame, 0..12)
}

#[derive(serde::Deserialize, Debug)]
#[allow(dead_code)]
struct Keywords {
    name: String,
    count: Option<u32>,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    #[test]
    fn frame_parsers_never_panic(parts in messages()) {
        let _ = parse_request::<Envelope>(frames(&parts));
        let _ = parse_reply(frames(&parts));
        let _ = parse_replies(frames(&parts));
        let _ = Pipeline::split(frames(&parts));
        let _ = WorkerMessage::parse(frames(&parts));
        let _ = BrokerMessage::parse(frames(&parts));
    }

    #[test]
    fn the_header_fast_path_agrees_with_the_general_decoder(
        id in prop_oneof![0u64..200, any::<u64>()],
        timeout in proptest::option::of(prop_oneof![0u64..70_000, any::<u64>()]),
        noise in msgpackish(),
    ) {
        let header = CallHeader { id, timeout_ms: timeout, traceparent: None, timings: false, wait_for_ready: false, notices: false };
        let bytes = header.encode();
        prop_assert_eq!(CallHeader::decode(&bytes).ok(), Some(header));
        // The general decoder also reads a struct from an array; headers are maps only.
        let is_map = matches!(noise.first(), Some(0x80..=0x8f | 0xde | 0xdf));
        let general: Result<CallHeader, _> = decode(&noise);
        prop_assert_eq!(CallHeader::decode(&noise).ok(), general.ok().filter(|_| is_map));
    }

    #[test]
    fn body_decoders_never_panic(bytes in msgpackish()) {
        let _ = CallHeader::decode(&bytes);
        let _ = decode::<Value>(&bytes);
        let _ = decode::<ReadyInfo>(&bytes);
        let _ = decode::<Timestamp>(&bytes);
        let _ = decode_reply::<Value>(&bytes);
        let _ = decode_batch_reply(&bytes);
        let _ = reply_outcome(&bytes);
        for arity in 0..3 {
            let _ = decode_args::<Vec<Value>>(&bytes, ArgsShape::Positional { arity });
        }
        let _ = decode_args::<(i64, String)>(&bytes, ArgsShape::Positional { arity: 2 });
        let fields = struct_fields::<Keywords>();
        let _ = decode_args::<Keywords>(&bytes, ArgsShape::Keyword { fields });
        let _ = decode_args::<std::collections::BTreeMap<String, Value>>(&bytes, ArgsShape::Keyword { fields: None });
    }

    #[test]
    fn arbitrary_bytes_never_panic_any_decoder(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode::<Value>(&bytes);
        let _ = decode_reply::<Value>(&bytes);
        let _ = decode_args::<(Value,)>(&bytes, ArgsShape::Positional { arity: 1 });
        let _ = decode_args::<Keywords>(&bytes, ArgsShape::Keyword { fields: struct_fields::<Keywords>() });
    }
}

#[test]
fn nesting_far_beyond_the_limit_is_an_error() {
    for marker in [0x91u8, 0x81] {
        let mut deep = vec![0x82, 0xa4, b'a', b'r', b'g', b's'];
        for _ in 0..200_000 {
            deep.push(marker);
            if marker == 0x81 {
                deep.push(0xa1);
                deep.push(b'k');
            }
        }
        deep.push(0xc0);
        assert!(decode::<Value>(&deep).is_err());
        assert!(decode_reply::<Value>(&deep).is_err());
        assert!(decode_args::<(Value,)>(&deep, ArgsShape::Positional { arity: 1 }).is_err());
        assert!(decode_args::<Keywords>(
            &deep,
            ArgsShape::Keyword {
                fields: struct_fields::<Keywords>()
            }
        )
        .is_err());
    }
}
