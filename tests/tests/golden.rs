//! Golden vectors (protocol/testdata/golden.json): the bytes that the Rust protocol crate and
//! Python's msgpack (tests/python/golden_check.py) must both produce and read.

use serde_bytes::ByteBuf;
use serde_json::Value as Json;
use switchboard_cli::json::to_msgpack;
use switchboard_protocol::codec::{
    decode, decode_reply, encode, encode_error, encode_request_body, encode_result,
};
use switchboard_protocol::{CallHeader, ReadyInfo, Timestamp, Value};
use switchboard_tests::{repo_path, run_python};

const GOLDEN: &str = "protocol/testdata/golden.json";

fn vectors() -> Vec<Json> {
    let text = std::fs::read_to_string(repo_path(GOLDEN)).expect("golden file");
    serde_json::from_str(&text).expect("golden file is JSON")
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The typed Rust encoding of each vector, after decoding it with the typed decoder.
fn typed_round_trip(kind: &str, bytes: &[u8], value: &Json) -> Vec<u8> {
    match kind {
        "header" => CallHeader::decode(bytes).unwrap().encode(),
        "ready" => encode(&decode::<ReadyInfo>(bytes).unwrap()).unwrap(),
        "request" => {
            let Value::Map(entries) = decode::<Value>(bytes).unwrap() else {
                panic!("map")
            };
            let get = |k: &str| {
                entries
                    .iter()
                    .find(|(key, _)| key.as_str() == Some(k))
                    .map(|(_, v)| v.clone())
            };
            encode_request_body(&get("args").unwrap(), &get("kwargs").unwrap()).unwrap()
        }
        "reply" if value["result"].get("$timestamp").is_some() => {
            encode_result(&decode_reply::<Timestamp>(bytes).unwrap().unwrap()).unwrap()
        }
        "reply" if value["result"].get("$bin").is_some() => {
            encode_result(&decode_reply::<ByteBuf>(bytes).unwrap().unwrap()).unwrap()
        }
        "reply" => match decode_reply::<Value>(bytes).unwrap() {
            Ok(result) => encode_result(&result).unwrap(),
            Err(error) => encode_error(&error),
        },
        other => panic!("unknown kind {other}"),
    }
}

#[test]
fn rust_encodes_and_decodes_every_golden_vector_byte_for_byte() {
    let vectors = vectors();
    assert!(vectors.len() >= 10);
    for vector in &vectors {
        let name = vector["name"].as_str().unwrap();
        let bytes = unhex(vector["hex"].as_str().unwrap());
        let value = to_msgpack(&vector["value"]).unwrap();
        assert_eq!(
            encode(&value).unwrap(),
            bytes,
            "{name}: dynamic encoding differs"
        );
        assert_eq!(
            decode::<Value>(&bytes).unwrap(),
            value,
            "{name}: decoding differs"
        );
        let kind = vector["kind"].as_str().unwrap();
        assert_eq!(
            typed_round_trip(kind, &bytes, &vector["value"]),
            bytes,
            "{name}: typed encoding differs"
        );
    }
}

#[test]
fn python_msgpack_agrees_with_the_golden_vectors() {
    let out = run_python(
        "tests/python/golden_check.py",
        &[repo_path(GOLDEN).to_str().unwrap()],
    );
    assert!(out.contains("golden vectors: 14 ok"), "{out}");
}
