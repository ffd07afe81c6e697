//! Frames between a client and the broker frontend.
//!
//! Request, as a `DEALER` client sends it (a `REQ` socket adds the empty
//! delimiter itself): `[""]["SBC1"][function][header][body]`.
//! Reply: `[""]["SBC1"][header][body]`, where `header` is the request's header
//! frame echoed byte for byte.

use crate::error::ProtocolError;
use crate::message::CallHeader;
use crate::route::ReplyRoute;
use crate::socket::Oversized;
use crate::{owned_frame, Frame, CLIENT_SIGNATURE, MAX_FUNCTION_NAME_LEN};

/// The function name that marks a batch request.
pub const BATCH_FUNCTION: &str = "system.batch";

/// Most calls one batch may carry.
pub const MAX_BATCH_CALLS: usize = 1000;

/// Header frame the broker echoes when a rejected request had none: MessagePack `nil`.
pub const NO_HEADER: &[u8] = &[0xc0];

/// A call as the broker receives it on its frontend.
#[derive(Debug)]
pub struct Request {
    /// The routing frames back to the caller and the header frame to echo.
    pub route: ReplyRoute,
    /// The function to call.
    pub function: String,
    /// The decoded header.
    pub header: CallHeader,
    /// The request body, never decoded by the broker.
    pub body: Frame,
}

/// A frontend message that is not a valid request, with what is needed to answer it.
#[derive(Debug)]
pub struct Rejected {
    /// Routing frames back to the sender (none when the message carried none) and the
    /// header frame to echo ([`NO_HEADER`] when the message did not get that far).
    pub route: ReplyRoute,
    /// What was wrong.
    pub error: ProtocolError,
}

/// A batch as the broker receives it: many calls sharing one header and one reply.
#[derive(Debug)]
pub struct BatchRequest {
    /// The routing frames back to the caller and the header frame to echo.
    pub route: ReplyRoute,
    /// The decoded header; its timeout applies to every call of the batch.
    pub header: CallHeader,
    /// Function name and request body of each call, in order.
    pub calls: Vec<(String, Frame)>,
}

/// A valid frontend message.
#[derive(Debug)]
pub enum Incoming {
    /// One call.
    Call(Request),
    /// A `system.batch` of calls.
    Batch(BatchRequest),
}

/// Splits a frontend message: `[envelope…][""]["SBC1"][function][header][body]`, or for a batch
/// `[envelope…][""]["SBC1"]["system.batch"][header]([function][body])…`.
pub fn parse_request(mut frames: Vec<Frame>) -> Result<Incoming, Box<Rejected>> {
    let Some(delimiter) = frames.iter().position(|f| f.is_empty()) else {
        // A ROUTER always prepends the sender's identity: answer to that.
        return Err(Box::new(Rejected {
            route: ReplyRoute::new(&frames[..frames.len().min(1)], NO_HEADER),
            error: ProtocolError::MissingDelimiter,
        }));
    };
    let rest = frames.split_off(delimiter + 1);
    frames.pop(); // the delimiter
    let envelope = frames;
    let reject = |envelope: Vec<Frame>, header_frame: Option<Frame>, error| {
        let header = header_frame.as_deref().unwrap_or(NO_HEADER);
        Err(Box::new(Rejected {
            route: ReplyRoute::new(&envelope, header),
            error,
        }))
    };
    let is_batch = rest
        .get(1)
        .is_some_and(|f| &f[..] == BATCH_FUNCTION.as_bytes());
    let count_ok = if is_batch {
        rest.len() >= 5 && rest.len() % 2 == 1 && (rest.len() - 3) / 2 <= MAX_BATCH_CALLS
    } else {
        rest.len() == 4
    };
    if !count_ok {
        let expected = if is_batch {
            "3 + 2 per call, 1 to 1000 calls (signature, system.batch, header, then function and body)"
        } else {
            "4 (signature, function, header, body)"
        };
        let got = rest.len();
        return reject(envelope, None, ProtocolError::FrameCount { expected, got });
    }
    let mut rest = rest.into_iter();
    let signature = rest.next().expect("counted");
    let function = rest.next().expect("counted");
    let header_frame = rest.next().expect("counted");
    if &signature[..] != CLIENT_SIGNATURE {
        return reject(
            envelope,
            Some(header_frame),
            ProtocolError::Signature { expected: "SBC1" },
        );
    }
    let header = match CallHeader::decode(&header_frame) {
        Ok(header) => header,
        Err(source) => {
            let error = ProtocolError::Body {
                frame: "header",
                source,
            };
            return reject(envelope, Some(header_frame), error);
        }
    };
    if is_batch {
        let mut calls = Vec::with_capacity(rest.len() / 2);
        while let (Some(name), Some(body)) = (rest.next(), rest.next()) {
            match function_name(&name) {
                Ok(name) => calls.push((name.to_owned(), body)),
                Err(error) => return reject(envelope, Some(header_frame), error),
            }
        }
        return Ok(Incoming::Batch(BatchRequest {
            route: ReplyRoute::new(&envelope, &header_frame),
            header,
            calls,
        }));
    }
    let function = match function_name(&function) {
        Ok(name) => name.to_owned(),
        Err(error) => return reject(envelope, Some(header_frame), error),
    };
    let body = rest.next().expect("counted");
    Ok(Incoming::Call(Request {
        route: ReplyRoute::new(&envelope, &header_frame),
        function,
        header,
        body,
    }))
}

/// Turns the head of an oversized frontend message into a rejection that can be answered
/// (when its envelope and delimiter came through).
pub fn reject_oversized(oversized: Oversized) -> Rejected {
    let Oversized {
        head,
        frames,
        bytes,
    } = oversized;
    let error = ProtocolError::TooLarge { frames, bytes };
    let Some(delimiter) = head.iter().position(|f| f.is_empty()) else {
        return Rejected {
            route: ReplyRoute::new(&[], NO_HEADER),
            error,
        };
    };
    // [envelope…][""]["SBC1"][function][header]: the header, if it arrived, is echoed.
    let header = head.get(delimiter + 3).map_or(NO_HEADER, |f| &f[..]);
    Rejected {
        route: ReplyRoute::new(&head[..delimiter], header),
        error,
    }
}

/// Checks a function name frame: UTF-8, 1 to 255 bytes, no control characters.
pub fn function_name(frame: &[u8]) -> Result<&str, ProtocolError> {
    if frame.is_empty() {
        return Err(ProtocolError::FunctionName("empty"));
    }
    if frame.len() > MAX_FUNCTION_NAME_LEN {
        return Err(ProtocolError::FunctionName("longer than 255 bytes"));
    }
    let name = std::str::from_utf8(frame).map_err(|_| ProtocolError::FunctionName("not UTF-8"))?;
    if name.chars().any(char::is_control) {
        return Err(ProtocolError::FunctionName("contains control characters"));
    }
    Ok(name)
}

/// Builds the frames a `DEALER` client sends for one call (leading empty delimiter included).
pub fn request_frames(function: &str, header: &CallHeader, body: Vec<u8>) -> Vec<Frame> {
    vec![
        Frame::new(),
        Frame::from(CLIENT_SIGNATURE),
        Frame::from(function.as_bytes()),
        owned_frame(header.encode()),
        owned_frame(body),
    ]
}

/// Builds the frames a `DEALER` client sends for a batch of `(function, body)` calls.
pub fn batch_request_frames(header: &CallHeader, calls: Vec<(String, Vec<u8>)>) -> Vec<Frame> {
    let mut frames = Vec::with_capacity(4 + 2 * calls.len());
    frames.push(Frame::new());
    frames.push(Frame::from(CLIENT_SIGNATURE));
    frames.push(Frame::from(BATCH_FUNCTION.as_bytes()));
    frames.push(owned_frame(header.encode()));
    for (function, body) in calls {
        frames.push(Frame::from(function.as_bytes()));
        frames.push(owned_frame(body));
    }
    frames
}

/// A reply as a `DEALER` client receives it.
#[derive(Debug)]
pub struct Reply {
    /// The echoed header of the request this answers.
    pub header: CallHeader,
    /// The reply body: `{"result": ...}` or `{"error": {...}}`.
    pub body: Frame,
}

/// Splits a reply `[""]["SBC1"][header][body]` received on a `DEALER` socket.
pub fn parse_reply(mut frames: Vec<Frame>) -> Result<Reply, ProtocolError> {
    if frames.len() != 4 {
        return Err(ProtocolError::FrameCount {
            expected: "4 (delimiter, signature, header, body)",
            got: frames.len(),
        });
    }
    let body = frames.pop().expect("four frames");
    let header_frame = frames.pop().expect("four frames");
    if !frames[0].is_empty() {
        return Err(ProtocolError::MissingDelimiter);
    }
    if &frames[1][..] != CLIENT_SIGNATURE {
        return Err(ProtocolError::Signature { expected: "SBC1" });
    }
    let header = CallHeader::decode(&header_frame).map_err(|source| ProtocolError::Body {
        frame: "header",
        source,
    })?;
    Ok(Reply { header, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(parts: &[&[u8]]) -> Vec<Frame> {
        parts.iter().map(|p| Frame::from(*p)).collect()
    }

    #[test]
    fn parses_a_well_formed_request() {
        let header = CallHeader {
            id: 9,
            timeout_ms: Some(50),
        }
        .encode();
        let parsed = parse_request(frames(&[b"\x00id", b"", b"SBC1", b"add", &header, b"\x80"]));
        let Ok(Incoming::Call(req)) = parsed else {
            panic!("not a single call: {parsed:?}")
        };
        assert_eq!(req.route.envelope(), [b"\x00id"]);
        assert_eq!(req.route.header(), header);
        assert_eq!(req.function, "add");
        assert_eq!(
            req.header,
            CallHeader {
                id: 9,
                timeout_ms: Some(50)
            }
        );
        assert_eq!(&req.body[..], b"\x80");
    }

    #[test]
    fn missing_delimiter_still_answers_the_sender() {
        let rejected = parse_request(frames(&[b"\x00id", b"SBC1", b"add"])).unwrap_err();
        assert_eq!(rejected.route.envelope(), [b"\x00id"]);
        assert_eq!(rejected.route.header(), NO_HEADER);
        assert_eq!(rejected.error, ProtocolError::MissingDelimiter);
    }

    #[test]
    fn bad_requests_are_rejected_with_a_reason() {
        let header = CallHeader {
            id: 1,
            timeout_ms: None,
        }
        .encode();
        let cases: Vec<(Vec<&[u8]>, &str)> = vec![
            (vec![b"c", b"", b"SBC1", b"add", &header], "expected 4"),
            (
                vec![b"c", b"", b"XXXX", b"add", &header, b"\x80"],
                "signature",
            ),
            (
                vec![b"c", b"", b"SBC1", b"", &header, b"\x80"],
                "function name",
            ),
            (
                vec![b"c", b"", b"SBC1", b"\xff", &header, b"\x80"],
                "function name",
            ),
            (vec![b"c", b"", b"SBC1", b"add", b"\x01", b"\x80"], "header"),
        ];
        for (parts, want) in cases {
            let rejected = parse_request(frames(&parts)).unwrap_err();
            assert_eq!(rejected.route.envelope(), [b"c"]);
            assert!(
                rejected.error.to_string().contains(want),
                "{}",
                rejected.error
            );
        }
    }

    #[test]
    fn parses_a_batch_of_calls_in_order() {
        let header = CallHeader {
            id: 4,
            timeout_ms: None,
        }
        .encode();
        let parts: Vec<&[u8]> = vec![
            b"c",
            b"",
            b"SBC1",
            b"system.batch",
            &header,
            b"add",
            b"\x80",
            b"upper",
            b"\x81",
        ];
        let Incoming::Batch(batch) = parse_request(frames(&parts)).unwrap() else {
            panic!("not a batch")
        };
        let names: Vec<_> = batch.calls.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["add", "upper"]);
        assert_eq!(&batch.calls[1].1[..], b"\x81");
        for bad in [
            vec![&b"c"[..], b"", b"SBC1", b"system.batch", &header],
            vec![b"c", b"", b"SBC1", b"system.batch", &header, b"add"],
            vec![b"c", b"", b"SBC1", b"system.batch", &header, b"", b"\x80"],
        ] {
            assert!(parse_request(frames(&bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reply_route_frames_round_trip_through_parse_reply() {
        let header = CallHeader {
            id: 3,
            timeout_ms: None,
        };
        let route = ReplyRoute::new(&frames(&[b"client"]), &header.encode());
        let mut out = route.into_frames(Frame::from(&b"\x80"[..]));
        assert_eq!(&out.remove(0)[..], b"client");
        let reply = parse_reply(out).unwrap();
        assert_eq!(reply.header, header);
    }
}
