//! Encoding and decoding of message bodies: the crate's `rmp_serde` boundary.

use crate::code::ErrorCode;
use crate::error::CodecError;
use crate::limits::{MAX_DEPTH, MAX_VALUES};
use crate::message::{CallHeader, CallTimings, RemoteError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// MessagePack `nil`.
const NIL: u8 = 0xc0;
/// MessagePack empty array.
const EMPTY_ARRAY: u8 = 0x90;
/// MessagePack empty map.
const EMPTY_MAP: u8 = 0x80;

/// Encodes any value as MessagePack, structs as maps.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    Ok(rmp_serde::to_vec_named(value)?)
}

/// The limit to give `rmp_serde`, which refuses a value once its nesting reaches it.
pub(crate) fn serde_depth() -> usize {
    MAX_DEPTH + 1
}

/// The limit to give `rmpv`, which spends two units of depth per container and one more.
pub(crate) fn rmpv_depth() -> usize {
    2 * MAX_DEPTH + 1
}

/// Checks, without allocating, that `bytes` hold at most [`MAX_VALUES`] values; a frame
/// whose structure is cut short is left for the decoder to report.
pub fn check_value_count(bytes: &[u8]) -> Result<(), CodecError> {
    if within_values(bytes, MAX_VALUES) {
        Ok(())
    } else {
        Err(CodecError::Rule(format!(
            "more than {MAX_VALUES} values in one frame"
        )))
    }
}

/// Whether `bytes` hold at most `max` values (cut-short frames count as within).
fn within_values(bytes: &[u8], max: usize) -> bool {
    // Values still to read: starts with the one top-level value.
    let mut pending: usize = 1;
    let mut seen: usize = 0;
    let mut at = 0usize;
    let read = |at: usize, n: usize| -> Option<usize> {
        let slice = bytes.get(at..at + n)?;
        Some(slice.iter().fold(0usize, |v, &b| (v << 8) | b as usize))
    };
    while pending > 0 {
        let Some(&marker) = bytes.get(at) else {
            return true;
        };
        pending -= 1;
        seen += 1;
        if seen > max {
            return false;
        }
        at += 1;
        // (payload bytes to skip, values the container adds)
        let (skip, children) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
            0x80..=0x8f => (0, 2 * (marker & 0x0f) as usize),
            0x90..=0x9f => (0, (marker & 0x0f) as usize),
            0xa0..=0xbf => ((marker & 0x1f) as usize, 0),
            0xcc | 0xd0 => (1, 0),
            0xcd | 0xd1 => (2, 0),
            0xce | 0xd2 | 0xca => (4, 0),
            0xcf | 0xd3 | 0xcb => (8, 0),
            0xd4 => (2, 0),
            0xd5 => (3, 0),
            0xd6 => (5, 0),
            0xd7 => (9, 0),
            0xd8 => (17, 0),
            // bin, str, ext, array and map with a length prefix of 1, 2 or 4 bytes.
            0xc4..=0xc9 | 0xd9..=0xdb | 0xdc..=0xdf => {
                let width = match marker {
                    0xc4 | 0xc7 | 0xd9 => 1,
                    0xc5 | 0xc8 | 0xda | 0xdc | 0xde => 2,
                    _ => 4,
                };
                let Some(n) = read(at, width) else {
                    return true;
                };
                match marker {
                    0xdc | 0xdd => (width, n),
                    0xde | 0xdf => (width, 2 * n),
                    // ext: a type byte, then the data
                    0xc7..=0xc9 => (width + 1 + n, 0),
                    _ => (width + n, 0),
                }
            }
            // 0xc1 is never used: the decoder reports it.
            _ => return true,
        };
        at = at.saturating_add(skip);
        // A length prefix claiming more values than bytes remain is cut short anyway;
        // counting stops at the limit either way.
        pending = pending.saturating_add(children);
    }
    true
}

/// Decodes MessagePack bytes into `T`, nesting bounded by [`MAX_DEPTH`].
///
/// Length prefixes are never trusted for allocation: decoding reads from the
/// slice, so a prefix claiming more bytes than the slice holds fails at once.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    check_value_count(bytes)?;
    let mut deserializer = rmp_serde::Deserializer::from_read_ref(bytes);
    deserializer.set_max_depth(serde_depth());
    Ok(T::deserialize(&mut deserializer)?)
}

impl CallHeader {
    /// Encodes the header frame.
    pub fn encode(&self) -> Vec<u8> {
        encode(self).expect("a call header always encodes")
    }

    /// Decodes a header frame.
    ///
    /// The usual header — a small map with `"id"` and optionally `"timeout_ms"`, as
    /// unsigned integers (or `nil` for the timeout) — is read directly: the broker does
    /// this for every call. Anything else takes the general decoder, which gives the
    /// same result for it and the precise error otherwise.
    pub fn decode(bytes: &[u8]) -> Result<CallHeader, CodecError> {
        match usual_header(bytes) {
            Some(header) => Ok(header),
            // The general decoder would also take a struct written as an array.
            None if !is_map(bytes) => Err(CodecError::Rule(
                "the header must be a map with string keys, e.g. {\"id\": 1}".into(),
            )),
            None => decode(bytes),
        }
    }
}

/// Reads `{"id": uint, "timeout_ms": uint | nil}` (keys in any order, the timeout
/// optional) without serde; `None` for any other shape.
fn usual_header(bytes: &[u8]) -> Option<CallHeader> {
    let (&marker, mut rest) = bytes.split_first()?;
    if !(0x81..=0x82).contains(&marker) {
        return None;
    }
    let (mut id, mut timeout_ms, mut timeout_seen) = (None, None, false);
    for _ in 0..marker & 0x0f {
        let (key, after) = fixstr(rest)?;
        rest = after;
        match key {
            b"id" if id.is_none() => {
                let (value, after) = uint(rest)?;
                id = Some(value);
                rest = after;
            }
            b"timeout_ms" if !timeout_seen => {
                timeout_seen = true;
                if let Some(after) = rest.strip_prefix(&[NIL]) {
                    rest = after;
                } else {
                    let (value, after) = uint(rest)?;
                    timeout_ms = Some(value);
                    rest = after;
                }
            }
            _ => return None,
        }
    }
    Some(CallHeader {
        id: id?,
        timeout_ms,
        traceparent: None,
        timings: false,
        wait_for_ready: false,
        notices: false,
    })
}

/// A MessagePack fixstr: its bytes and what follows.
fn fixstr(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&marker, rest) = bytes.split_first()?;
    if !(0xa0..=0xbf).contains(&marker) {
        return None;
    }
    let len = (marker & 0x1f) as usize;
    Some((rest.get(..len)?, &rest[len..]))
}

/// A MessagePack unsigned integer (positive fixint, uint 8/16/32/64) and what follows.
fn uint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (&marker, rest) = bytes.split_first()?;
    let width = match marker {
        0x00..=0x7f => return Some((marker as u64, rest)),
        0xcc => 1,
        0xcd => 2,
        0xce => 4,
        0xcf => 8,
        _ => return None,
    };
    let value = rest
        .get(..width)?
        .iter()
        .fold(0u64, |value, &byte| (value << 8) | byte as u64);
    Some((value, &rest[width..]))
}

/// Encodes positional arguments: anything that serializes as a sequence (a
/// tuple, array or `Vec`); `()` means none.
pub fn encode_args<A: Serialize + ?Sized>(args: &A) -> Result<Vec<u8>, CodecError> {
    let bytes = encode(args)?;
    if bytes == [NIL] {
        return Ok(vec![EMPTY_ARRAY]);
    }
    if !is_array(&bytes) {
        return Err(CodecError::Rule(
            "positional arguments must serialize as a sequence (use a tuple)".into(),
        ));
    }
    Ok(bytes)
}

/// Encodes keyword arguments: anything that serializes as a map or struct; `()` means none.
pub fn encode_kwargs<K: Serialize + ?Sized>(kwargs: &K) -> Result<Vec<u8>, CodecError> {
    let bytes = encode(kwargs)?;
    if bytes == [NIL] {
        return Ok(vec![EMPTY_MAP]);
    }
    if !is_map(&bytes) {
        return Err(CodecError::Rule(
            "keyword arguments must serialize as a map or struct".into(),
        ));
    }
    Ok(bytes)
}

/// Assembles a request body `{"args": ..., "kwargs": ...}` from parts made by
/// [`encode_args`] and [`encode_kwargs`], without encoding them again.
pub fn request_body_from_parts(args: &[u8], kwargs: &[u8]) -> Vec<u8> {
    // fixmap with two entries, then each key and its already-encoded value.
    let mut body = Vec::with_capacity(args.len() + kwargs.len() + 14);
    body.push(0x82);
    body.push(0xa4);
    body.extend_from_slice(b"args");
    body.extend_from_slice(args);
    body.push(0xa6);
    body.extend_from_slice(b"kwargs");
    body.extend_from_slice(kwargs);
    body
}

/// Encodes a request body `{"args": [...], "kwargs": {...}}` (see [`encode_args`], [`encode_kwargs`]).
pub fn encode_request_body<A, K>(args: &A, kwargs: &K) -> Result<Vec<u8>, CodecError>
where
    A: Serialize + ?Sized,
    K: Serialize + ?Sized,
{
    Ok(request_body_from_parts(
        &encode_args(args)?,
        &encode_kwargs(kwargs)?,
    ))
}

fn is_array(bytes: &[u8]) -> bool {
    matches!(bytes.first(), Some(0x90..=0x9f | 0xdc | 0xdd))
}

fn is_map(bytes: &[u8]) -> bool {
    matches!(bytes.first(), Some(0x80..=0x8f | 0xde | 0xdf))
}

#[derive(Serialize)]
struct OkReply<'a, T: ?Sized> {
    result: &'a T,
}

#[derive(Serialize)]
struct ErrReply<'a> {
    error: &'a RemoteError,
}

/// Encodes a successful reply body `{"result": value}`.
pub fn encode_result<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    encode(&OkReply { result: value })
}

/// Encodes a failed reply body `{"error": {"code": ..., "message": ...}}`.
pub fn encode_error(error: &RemoteError) -> Vec<u8> {
    encode(&ErrReply { error }).expect("an error reply always encodes")
}

/// Assembles a batch reply body `{"result": [reply, reply, ...]}` from the
/// reply bodies of its calls, in order, without decoding them.
pub fn batch_reply_body(replies: &[&[u8]]) -> Vec<u8> {
    let len: usize = replies.iter().map(|r| r.len()).sum();
    let mut body = Vec::with_capacity(len + 13);
    body.push(0x81);
    body.push(0xa6);
    body.extend_from_slice(b"result");
    let count = replies.len();
    if count < 16 {
        body.push(0x90 | count as u8);
    } else if let Ok(count) = u16::try_from(count) {
        body.push(0xdc);
        body.extend_from_slice(&count.to_be_bytes());
    } else {
        body.push(0xdd);
        body.extend_from_slice(&(count as u32).to_be_bytes());
    }
    for reply in replies {
        body.extend_from_slice(reply);
    }
    body
}

/// One call's reply inside a batch reply, kept encoded until its type is known.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchItem {
    body: Vec<u8>,
}

impl BatchItem {
    /// Decodes this call's result or remote error (see [`decode_reply`]).
    pub fn decode<T: DeserializeOwned>(&self) -> Result<Result<T, RemoteError>, CodecError> {
        decode_reply(&self.body)
    }

    /// The reply body bytes of this call.
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

/// Splits a batch reply body into the reply bodies of its calls.
pub fn decode_batch_reply(body: &[u8]) -> Result<Result<Vec<BatchItem>, RemoteError>, CodecError> {
    let items: Vec<crate::Value> = match decode_reply(body)? {
        Ok(items) => items,
        Err(error) => return Ok(Err(error)),
    };
    items
        .iter()
        .map(|item| encode(item).map(|body| BatchItem { body }))
        .collect::<Result<Vec<_>, _>>()
        .map(Ok)
}

#[derive(Deserialize)]
struct ReplyBody<T> {
    #[serde(default = "none")]
    result: Option<T>,
    #[serde(default)]
    error: Option<RemoteError>,
}

fn none<T>() -> Option<T> {
    None
}

/// Adds `"timings": {…}` to a reply body whose top level is a small map (a fixmap of at
/// most 14 entries, as every reply body of this protocol is), without decoding the rest:
/// its entry count goes up by one and the entry is appended. `None` for any other body.
pub fn append_timings(body: &[u8], timings: &CallTimings) -> Option<Vec<u8>> {
    append_entry(body, b"\xa7timings", &encode(timings).ok()?)
}

/// Adds `"run_us": n` (the function's own run time, measured by the worker) to a reply
/// body the way [`append_timings`] adds its entry. `None` for a body that is not a small map.
pub fn append_run_time(body: &[u8], run_us: u64) -> Option<Vec<u8>> {
    append_entry(body, b"\xa6run_us", &encode(&run_us).ok()?)
}

/// Appends one entry (an encoded key and value) to a fixmap of at most 14 entries.
fn append_entry(body: &[u8], key: &[u8], value: &[u8]) -> Option<Vec<u8>> {
    let (&marker, rest) = body.split_first()?;
    if !(0x80..=0x8e).contains(&marker) {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() + key.len() + value.len());
    out.push(marker + 1);
    out.extend_from_slice(rest);
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    Some(out)
}

/// The `"timings"` a reply body carries, if any (see [`append_timings`]), with the
/// worker's `"run_us"` when it reported one.
pub fn decode_timings(body: &[u8]) -> Option<CallTimings> {
    #[derive(Deserialize)]
    struct WithTimings {
        #[serde(default)]
        timings: Option<CallTimings>,
        #[serde(default)]
        run_us: Option<u64>,
    }
    let found = decode::<WithTimings>(body).ok()?;
    let mut timings = found.timings?;
    timings.run_us = timings.run_us.or(found.run_us);
    Some(timings)
}

/// The outcome of a reply body, for metrics: `None` for a result, else the error code.
///
/// A successful reply written as `{"result": …}` is recognized from its first
/// eight bytes without decoding the result; only error replies are decoded.
pub fn reply_outcome(body: &[u8]) -> Option<ErrorCode> {
    if body.starts_with(b"\x81\xa6result") {
        return None;
    }
    match decode_reply::<serde::de::IgnoredAny>(body) {
        Ok(Ok(_)) => None,
        Ok(Err(error)) => Some(error.code),
        Err(_) => Some(ErrorCode::Unrecognized),
    }
}

/// Decodes a reply body into the function's result or its remote error.
///
/// A missing or `nil` result decodes as `T` from `nil`, so `()` and `Option`
/// results work.
pub fn decode_reply<T: DeserializeOwned>(
    body: &[u8],
) -> Result<Result<T, RemoteError>, CodecError> {
    let reply: ReplyBody<T> = decode(body)?;
    match (reply.error, reply.result) {
        (Some(error), _) => Ok(Err(error)),
        (None, Some(value)) => Ok(Ok(value)),
        (None, None) => decode(&[NIL]).map(Ok),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decode_error_keeps_the_decoder_s_reason_as_its_source() {
        let error = decode::<u32>(b"\xa1x").unwrap_err();
        assert!(matches!(error, CodecError::Decode(_)), "{error:?}");
        let source = std::error::Error::source(&error).expect("the decoder's error");
        assert!(!source.to_string().is_empty());
        let text = error.with_causes();
        assert!(text.starts_with("cannot decode value: "), "{text}");
        assert!(text.contains(&source.to_string()), "{text}");
    }
    use std::collections::BTreeMap;

    #[test]
    fn the_usual_header_reads_as_the_general_decoder_reads_it() {
        let uints: [&[u8]; 6] = [
            b"\x07",
            b"\xcc\xff",
            b"\xcd\x13\x88",
            b"\xce\x00\x01\x00\x00",
            b"\xcf\xff\xff\xff\xff\xff\xff\xff\xff",
            b"\xc0",
        ];
        let mut cases: Vec<Vec<u8>> = Vec::new();
        for id in &uints {
            cases.push([&b"\x81\xa2id"[..], id].concat());
            for timeout in &uints {
                cases.push([&b"\x82\xa2id"[..], id, b"\xaatimeout_ms", timeout].concat());
                cases.push([&b"\x82\xaatimeout_ms"[..], timeout, b"\xa2id", id].concat());
            }
        }
        // Shapes the fast path leaves to serde: these must give serde's answer too.
        let others: [&[u8]; 9] = [
            b"\x82\xa2id\x01\xa2id\x02",           // duplicate key
            b"\x82\xa2id\x01\xa5extra\x02",        // unknown key (ignored)
            b"\x81\xa2id\xff",                     // negative id
            b"\x81\xa2id\xcb\x3f\xf0\0\0\0\0\0\0", // float id
            b"\x81\xaatimeout_ms\x01",             // no id
            b"\x80",                               // empty map
            b"\x81\xa2id\xcd\x01",                 // cut short
            b"\x81\xa2id",                         // no value
            b"\x81\xa2id\x01\x99",                 // trailing bytes
        ];
        cases.extend(others.iter().map(|c| c.to_vec()));
        for bytes in &cases {
            let general: Result<CallHeader, CodecError> = decode(bytes);
            assert_eq!(CallHeader::decode(bytes).ok(), general.ok(), "{bytes:02x?}");
        }
        assert!(usual_header(b"\x82\xa2id\x05\xaatimeout_ms\xcd\x13\x88").is_some());
    }

    #[test]
    fn a_header_must_be_a_map() {
        // serde would read a struct from an array; the protocol says map.
        for bytes in [
            &b"\x92\x05\x64"[..],
            b"\x91\x05",
            b"\xdc\x00\x01\x05",
            b"\x05",
        ] {
            let error = CallHeader::decode(bytes).expect_err("not a map");
            assert!(error.to_string().contains("map"), "{error}");
        }
    }

    #[test]
    fn request_body_is_a_map_of_args_and_kwargs() {
        let body = encode_request_body(&(1, "x"), &()).unwrap();
        assert_eq!(
            body,
            [
                0x82, 0xa4, b'a', b'r', b'g', b's', 0x92, 0x01, 0xa1, b'x', 0xa6, b'k', b'w', b'a',
                b'r', b'g', b's', 0x80
            ]
        );
        let mut kwargs = BTreeMap::new();
        kwargs.insert("name", "bob");
        let body = encode_request_body(&(), &kwargs).unwrap();
        assert_eq!(&body[..7], &[0x82, 0xa4, b'a', b'r', b'g', b's', 0x90]);
    }

    #[test]
    fn request_body_rejects_scalar_args() {
        assert!(encode_request_body(&5, &()).is_err());
        assert!(encode_request_body(&(), &[1, 2]).is_err());
    }

    #[test]
    fn reply_round_trips_result_and_error() {
        let ok = encode_result(&42i64).unwrap();
        assert_eq!(decode_reply::<i64>(&ok).unwrap(), Ok(42));
        let err = encode_error(&RemoteError::new(ErrorCode::Timeout, "too slow"));
        let got = decode_reply::<i64>(&err).unwrap().unwrap_err();
        assert_eq!(got.code, ErrorCode::Timeout);
        assert_eq!(got.message, "too slow");
    }

    #[test]
    fn nil_result_decodes_as_unit_and_none() {
        let nil = encode_result(&()).unwrap();
        assert_eq!(decode_reply::<()>(&nil).unwrap(), Ok(()));
        assert_eq!(decode_reply::<Option<i64>>(&nil).unwrap(), Ok(None));
    }

    #[test]
    fn batch_reply_is_a_result_array_of_reply_bodies() {
        let one = encode_result(&1i64).unwrap();
        let err = encode_error(&RemoteError::new(ErrorCode::FunctionError, "no"));
        for n in [1usize, 15, 16, 300] {
            let parts: Vec<&[u8]> = (0..n)
                .map(|i| if i % 2 == 0 { &one[..] } else { &err[..] })
                .collect();
            let body = batch_reply_body(&parts);
            let decoded: Vec<crate::Value> = decode_reply(&body).unwrap().unwrap();
            assert_eq!(decoded.len(), n);
            let second = decoded
                .get(1)
                .map(|v| v["error"]["code"].as_str().unwrap().to_owned());
            if n > 1 {
                assert_eq!(second.as_deref(), Some("FUNCTION_ERROR"));
            }
        }
    }

    #[test]
    fn reply_outcome_reads_only_what_it_needs() {
        assert_eq!(
            reply_outcome(&encode_result(&vec![1u8; 1000]).unwrap()),
            None
        );
        let error = encode_error(&RemoteError::new(ErrorCode::FunctionError, "x"));
        assert_eq!(reply_outcome(&error), Some(ErrorCode::FunctionError));
        assert_eq!(reply_outcome(b"\xc1"), Some(ErrorCode::Unrecognized));
    }

    #[test]
    fn deep_nesting_and_huge_length_prefixes_are_errors_not_crashes() {
        let deep = [vec![0x91u8; 100_000], vec![0x01]].concat();
        assert!(decode::<crate::Value>(&deep).is_err());
        let nested = |n: usize| [vec![0x91u8; n], vec![0x01]].concat();
        assert!(decode::<crate::Value>(&nested(MAX_DEPTH)).is_ok());
        assert!(decode::<crate::Value>(&nested(MAX_DEPTH + 1)).is_err());
        // A request body's map and args array count: 62 more arrays fit, 63 do not,
        // whichever decoder reads the arguments.
        use crate::args::{decode_args, ArgsShape};
        for (n, fits) in [(MAX_DEPTH - 2, true), (MAX_DEPTH - 1, false)] {
            let body = [&b"\x81\xa4args\x91"[..], &nested(n)].concat();
            let positional =
                decode_args::<(crate::Value,)>(&body, ArgsShape::Positional { arity: 1 });
            assert_eq!(positional.is_ok(), fits, "positional, {n}");
            let body = [&b"\x81\xa6kwargs\x81\xa1x"[..], &nested(n)].concat();
            let keyword = decode_args::<std::collections::BTreeMap<String, crate::Value>>(
                &body,
                ArgsShape::Keyword { fields: None },
            );
            assert_eq!(keyword.is_ok(), fits, "keyword, {n}");
        }
        // bin32, str32, array32 and map32 claiming 4 GiB, with 3 bytes behind them.
        for marker in [0xc6u8, 0xdb, 0xdd, 0xdf] {
            let claim = [marker, 0xff, 0xff, 0xff, 0xff, 1, 2, 3];
            assert!(decode::<crate::Value>(&claim).is_err(), "{marker:#x}");
            assert!(decode_reply::<crate::Value>(&claim).is_err());
        }
    }

    #[test]
    fn a_frame_of_millions_of_tiny_values_is_refused_before_decoding() {
        // {"args": [[], [], ... 4 Mi times]}: 4 MiB that would decode into 160 MiB.
        let count = 4usize << 20;
        let mut body = b"\x81\xa4args\xdd".to_vec();
        body.extend_from_slice(&(count as u32).to_be_bytes());
        body.extend(std::iter::repeat_n(0x90u8, count));
        let error = check_value_count(&body).unwrap_err();
        assert!(error.to_string().contains("values"), "{error}");
        assert!(decode::<crate::Value>(&body).is_err());
        use crate::args::{decode_args, ArgsError, ArgsShape};
        let refused = decode_args::<(crate::Value,)>(&body, ArgsShape::Positional { arity: 1 });
        assert!(
            matches!(refused, Err(ArgsError::Malformed(_))),
            "{refused:?}"
        );
        // Just under the limit: the map, its key, the array, and the elements.
        let fits = MAX_VALUES - 3;
        let mut body = b"\x81\xa4args\xdd".to_vec();
        body.extend_from_slice(&(fits as u32).to_be_bytes());
        body.extend(std::iter::repeat_n(0x01u8, fits));
        assert!(check_value_count(&body).is_ok());
        body[7..11].copy_from_slice(&(fits as u32 + 1).to_be_bytes());
        body.push(0x01);
        assert!(check_value_count(&body).is_err());
        // Every kind of value is walked: a sample of each, well under the limit.
        let sample = encode(&(
            1u8,
            -1i8,
            300u16,
            70_000u32,
            1u64 << 40,
            -5_000_000_000i64,
            1.5f32,
            2.5f64,
            "text",
            serde_bytes::ByteBuf::from(vec![1u8; 300]),
            vec![Some(1), None],
            std::collections::BTreeMap::from([("k", true)]),
            crate::Timestamp::new(1, 2).unwrap(),
        ))
        .unwrap();
        assert!(check_value_count(&sample).is_ok());
    }

    #[test]
    fn the_value_count_walks_every_kind_of_value() {
        use crate::Value;
        let ext = |len: usize| Value::Ext(5, vec![1; len]);
        let values = [
            Value::from(vec![7u8; 300]),                            // bin16
            Value::from(vec![7u8; 20]),                             // bin8
            Value::from("x".repeat(40)),                            // str8
            Value::from("x".repeat(300)),                           // str16
            ext(4),                                                 // fixext4
            ext(3),                                                 // ext8
            ext(300),                                               // ext16
            Value::from(-200_000i64),                               // int32
            Value::from(1.5f64),                                    // float64
            Value::Array(vec![Value::Nil; 20]),                     // array16: 1 + 20 values
            Value::Map(vec![(Value::from(1), Value::from(2)); 17]), // map16: 1 + 34
        ];
        // One array around them: 1 + 9 + 21 + 35 values.
        let bytes = encode(&Value::Array(values.to_vec())).unwrap();
        assert!(within_values(&bytes, 66));
        assert!(!within_values(&bytes, 65));
    }

    #[test]
    fn header_omits_absent_timeout() {
        let header = CallHeader {
            id: 7,
            timeout_ms: None,
            traceparent: None,
            timings: false,
            wait_for_ready: false,
            notices: false,
        };
        assert_eq!(header.encode(), [0x81, 0xa2, b'i', b'd', 0x07]);
        let header = CallHeader {
            id: 7,
            timeout_ms: Some(1000),
            traceparent: None,
            timings: false,
            wait_for_ready: false,
            notices: false,
        };
        assert_eq!(CallHeader::decode(&header.encode()).unwrap(), header);
    }

    #[test]
    fn timings_are_appended_to_a_reply_without_decoding_it_and_read_back() {
        let timings = CallTimings {
            queued_us: 5,
            running_us: 1_200,
            attempts: 1,
            worker: "w0".into(),
            run_us: None,
        };
        let body = encode_result(&vec![1, 2, 3]).unwrap();
        let with = append_timings(&body, &timings).unwrap();
        assert_eq!(decode_reply::<Vec<i32>>(&with).unwrap().unwrap(), [1, 2, 3]);
        assert_eq!(decode_timings(&with), Some(timings.clone()));
        assert_eq!(decode_timings(&body), None);
        let error = encode_error(&RemoteError::new(ErrorCode::FunctionError, "no"));
        let with = append_timings(&error, &timings).unwrap();
        assert_eq!(
            decode_reply::<()>(&with).unwrap().unwrap_err().code,
            ErrorCode::FunctionError
        );
        // Not a small map: left alone.
        assert_eq!(append_timings(b"\x91\x01", &timings), None);
        assert_eq!(append_timings(b"", &timings), None);
        // The worker's own run time, added before the broker's timings, is read with them.
        let with_run = append_run_time(&body, 900).unwrap();
        let both = append_timings(&with_run, &timings).unwrap();
        assert_eq!(decode_reply::<Vec<i32>>(&both).unwrap().unwrap(), [1, 2, 3]);
        assert_eq!(
            decode_timings(&both),
            Some(CallTimings {
                run_us: Some(900),
                ..timings
            })
        );
    }
}
