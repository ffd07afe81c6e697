//! Frames between a client and the broker frontend.
//!
//! Request, as a `DEALER` client sends it (a `REQ` socket adds the empty
//! delimiter itself): `[""]["SBC1"][function][header][body]`.
//! Reply: `[""]["SBC1"][header][body]`, where `header` is the request's header
//! frame echoed byte for byte.
//!
//! A `DEALER` client may also pipeline: send several calls in one message,
//! `[""]["SBC1"]([function][header][body])…`, and then accept replies grouped the
//! same way, `[""]["SBC1"]([header][body])…`.

use crate::limits::{
    MAX_BATCH_CALLS, MAX_ENVELOPE_BYTES, MAX_ENVELOPE_FRAMES, MAX_FUNCTION_NAME_LEN,
    MAX_PIPELINED_CALLS,
};
use std::ops::Deref;

use crate::error::ProtocolError;
use crate::message::CallHeader;
use crate::{owned_frame, Frame, CLIENT_SIGNATURE};

/// The function name that marks a batch request.
pub const BATCH_FUNCTION: &str = "system.batch";

/// The built-in function that cancels one of the caller's calls: `system.cancel(call_id)`.
pub const CANCEL_FUNCTION: &str = "system.cancel";

/// Header frame the broker echoes when a rejected request had none: MessagePack `nil`.
pub const NO_HEADER: &[u8] = &[0xc0];

/// Where the broker sends the answer to a frontend message: built by [`parse_request`]
/// from the routing frames before the delimiter and the header frame to echo. The broker
/// packs it its own way; [`Envelope`] keeps the frames as they came.
pub trait ReturnAddress: Sized {
    /// From the routing frames (frames or byte slices) and the header frame to echo.
    fn new<F: Deref<Target = [u8]>>(envelope: &[F], header: &[u8]) -> Self;
    /// Marks the caller as accepting several replies in one message (it sent several
    /// calls in one message, so it is a `DEALER`, not a `REQ`).
    fn accept_grouped_replies(&mut self);
}

/// A [`ReturnAddress`] that keeps the frames as they came (for tests and tools).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The routing frames, in order.
    pub frames: Vec<Vec<u8>>,
    /// The header frame to echo.
    pub header: Vec<u8>,
    /// Whether the caller accepts grouped replies.
    pub grouped: bool,
}

impl ReturnAddress for Envelope {
    fn new<F: Deref<Target = [u8]>>(envelope: &[F], header: &[u8]) -> Envelope {
        Envelope {
            frames: envelope.iter().map(|f| f.to_vec()).collect(),
            header: header.to_vec(),
            grouped: false,
        }
    }

    fn accept_grouped_replies(&mut self) {
        self.grouped = true;
    }
}

impl Envelope {
    /// The routing frames, in order.
    pub fn envelope(&self) -> Vec<&[u8]> {
        self.frames.iter().map(|f| &f[..]).collect()
    }

    /// The header frame to echo.
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    /// Whether the caller accepts grouped replies.
    pub fn accepts_grouped_replies(&self) -> bool {
        self.grouped
    }

    /// The frames of the reply carrying `body`: `[envelope…][""]["SBC1"][header][body]`.
    pub fn reply_frames(&self, body: Frame) -> Vec<Frame> {
        let mut frames = Vec::with_capacity(self.frames.len() + 4);
        push_reply_head(self.frames.iter().map(|f| &f[..]), &mut frames);
        frames.push(Frame::from(&self.header[..]));
        frames.push(body);
        frames
    }
}

/// Pushes the head of a reply message, `[envelope…][""]["SBC1"]`; each reply then adds
/// its `[header][body]`.
pub fn push_reply_head<'a>(envelope: impl Iterator<Item = &'a [u8]>, frames: &mut Vec<Frame>) {
    frames.extend(envelope.map(Frame::from));
    frames.push(Frame::new());
    frames.push(Frame::from(CLIENT_SIGNATURE));
}

/// A call as the broker receives it on its frontend, answered to `R`.
#[derive(Debug)]
pub struct Request<R> {
    /// The routing frames back to the caller and the header frame to echo.
    pub route: R,
    /// The function name frame, checked by [`function_name`] (kept as the frame: no
    /// copy per call). [`Request::function_name`] reads it.
    pub function: Frame,
    /// The decoded header.
    pub header: CallHeader,
    /// The request body, never decoded by the broker.
    pub body: Frame,
}

impl<R> Request<R> {
    /// The function to call ("" if the frame was not checked and is not a valid name).
    pub fn function_name(&self) -> &str {
        function_name(&self.function).unwrap_or_default()
    }
}

/// A frontend message that is not a valid request, with what is needed to answer it.
#[derive(Debug)]
pub struct Rejected<R> {
    /// Routing frames back to the sender (none when the message carried none) and the
    /// header frame to echo ([`NO_HEADER`] when the message did not get that far).
    pub route: R,
    /// What was wrong.
    pub error: ProtocolError,
}

/// A batch as the broker receives it: many calls sharing one header and one reply.
#[derive(Debug)]
pub struct BatchRequest<R> {
    /// The routing frames back to the caller and the header frame to echo.
    pub route: R,
    /// The decoded header; its timeout applies to every call of the batch.
    pub header: CallHeader,
    /// Function name and request body of each call, in order. A call whose name frame is
    /// not a valid function name carries the error instead: it is answered BAD_REQUEST in
    /// its slot, and the other calls proceed.
    pub calls: Vec<(Result<String, ProtocolError>, Frame)>,
}

/// A valid frontend message.
#[derive(Debug)]
pub enum Incoming<R> {
    /// One call.
    Call(Request<R>),
    /// Several calls in one message, each answered on its own (replies may be grouped).
    /// A malformed call among them is rejected alone.
    Pipelined(Vec<Result<Request<R>, Rejected<R>>>),
    /// A `system.batch` of calls.
    Batch(BatchRequest<R>),
}

/// Splits a frontend message: `[envelope…][""]["SBC1"][function][header][body]`, or for a batch
/// `[envelope…][""]["SBC1"]["system.batch"][header]([function][body])…`.
pub fn parse_request<R: ReturnAddress>(
    frames: Vec<Frame>,
) -> Result<Incoming<R>, Box<Rejected<R>>> {
    let Some(delimiter) = frames.iter().position(|f| f.is_empty()) else {
        // A ROUTER always prepends the sender's identity: answer to that.
        return Err(Box::new(Rejected {
            route: R::new(&frames[..frames.len().min(1)], NO_HEADER),
            error: ProtocolError::MissingDelimiter,
        }));
    };
    // Frames are moved out one by one: no copy of the (possibly long) tail.
    let mut rest = frames.into_iter();
    let envelope: Vec<Frame> = rest.by_ref().take(delimiter).collect();
    rest.next(); // the delimiter
    let envelope_bytes: usize = envelope.iter().map(|f| f.len()).sum();
    if envelope.len() > MAX_ENVELOPE_FRAMES || envelope_bytes > MAX_ENVELOPE_BYTES {
        // Answered once, to the sender (the first frame is its identity).
        let header = rest.as_slice().get(2).map_or(NO_HEADER, |f| &f[..]);
        let error = ProtocolError::Envelope {
            frames: envelope.len(),
            bytes: envelope_bytes,
        };
        return Err(Box::new(Rejected {
            route: R::new(&envelope[..1], header),
            error,
        }));
    }
    let reject = |envelope: Vec<Frame>, header_frame: Option<Frame>, error| {
        let header = header_frame.as_deref().unwrap_or(NO_HEADER);
        Err(Box::new(Rejected {
            route: R::new(&envelope, header),
            error,
        }))
    };
    let is_batch = rest
        .as_slice()
        .get(1)
        .is_some_and(|f| &f[..] == BATCH_FUNCTION.as_bytes());
    let pipelined = !is_batch && rest.len() > 4;
    let count_ok = if is_batch {
        rest.len() >= 5 && rest.len() % 2 == 1 && (rest.len() - 3) / 2 <= MAX_BATCH_CALLS
    } else if pipelined {
        (rest.len() - 1) % 3 == 0 && (rest.len() - 1) / 3 <= MAX_PIPELINED_CALLS
    } else {
        rest.len() == 4
    };
    if !count_ok {
        let expected = if is_batch {
            "3 + 2 per call, 1 to 1000 calls (signature, system.batch, header, then function and body)"
        } else {
            "4 (signature, function, header, body), or 1 + 3 per call for 2 to 256 pipelined calls"
        };
        let got = rest.len();
        // [signature][function][header]…: echo the (first) header whenever it came.
        let header = rest.nth(2);
        return reject(
            envelope,
            header,
            ProtocolError::FrameCount { expected, got },
        );
    }
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
    if pipelined {
        let mut calls = Vec::with_capacity(rest.len() / 3 + 1);
        // Every call's route copies the same envelope: read its frames once.
        let envelope: Vec<&[u8]> = envelope.iter().map(|f| &f[..]).collect();
        calls.push(pipelined_call(
            &envelope,
            function,
            header_frame,
            rest.next(),
        ));
        while let (Some(function), Some(header)) = (rest.next(), rest.next()) {
            calls.push(pipelined_call(&envelope, function, header, rest.next()));
        }
        return Ok(Incoming::Pipelined(calls));
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
            calls.push((function_name(&name).map(str::to_owned), body));
        }
        return Ok(Incoming::Batch(BatchRequest {
            route: R::new(&envelope, &header_frame),
            header,
            calls,
        }));
    }
    if let Err(error) = function_name(&function) {
        return reject(envelope, Some(header_frame), error);
    }
    let body = rest.next().expect("counted");
    Ok(Incoming::Call(Request {
        route: R::new(&envelope, &header_frame),
        function,
        header,
        body,
    }))
}

/// One call of a pipelined message, its route marked as accepting grouped replies.
fn pipelined_call<R: ReturnAddress>(
    envelope: &[&[u8]],
    function: Frame,
    header_frame: Frame,
    body: Option<Frame>,
) -> Result<Request<R>, Rejected<R>> {
    let mut route = R::new(envelope, &header_frame);
    route.accept_grouped_replies();
    let error = match (function_name(&function), CallHeader::decode(&header_frame)) {
        (Ok(name), _) if name == BATCH_FUNCTION => {
            ProtocolError::FunctionName("system.batch cannot be pipelined: send it alone")
        }
        (Ok(_), Ok(header)) => {
            return Ok(Request {
                route,
                function,
                header,
                body: body.expect("counted: three frames per call"),
            })
        }
        (Err(error), _) => error,
        (Ok(_), Err(source)) => ProtocolError::Body {
            frame: "header",
            source,
        },
    };
    Err(Rejected { route, error })
}

/// Turns the first frames (`head`) of a frontend message refused for its size (`frames`
/// frames, `bytes` bytes in all) into a rejection that can be answered, when its
/// envelope and delimiter came through.
pub fn reject_oversized<R: ReturnAddress>(
    head: Vec<Frame>,
    frames: usize,
    bytes: usize,
) -> Rejected<R> {
    let error = ProtocolError::TooLarge { frames, bytes };
    let Some(delimiter) = head.iter().position(|f| f.is_empty()) else {
        return Rejected {
            route: R::new::<Frame>(&[], NO_HEADER),
            error,
        };
    };
    // [envelope…][""]["SBC1"][function][header]: the header, if it arrived, is echoed.
    let header = head.get(delimiter + 3).map_or(NO_HEADER, |f| &f[..]);
    Rejected {
        route: R::new(&head[..delimiter], header),
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
pub fn parse_reply(frames: Vec<Frame>) -> Result<Reply, ProtocolError> {
    if frames.len() != 4 {
        return Err(ProtocolError::FrameCount {
            expected: "4 (delimiter, signature, header, body)",
            got: frames.len(),
        });
    }
    let mut replies = parse_replies(frames)?;
    Ok(replies.pop().expect("four frames make one reply"))
}

/// What a broker announces to clients that asked for notices (header key `notices`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The broker is stopping: it takes no new calls (they are answered SHUTTING_DOWN)
    /// and answers the ones it holds before it closes.
    Stopping,
    /// A notice this version does not know (ignored by receivers).
    Other(String),
}

/// The body key of a NOTICE.
const NOTICE_KEY: &str = "notice";
/// The NOTICE of a stopping broker.
const STOPPING: &str = "stopping";

/// The reply body of a NOTICE (frames `[""]["SBC1"][""][body]`: the header frame is empty,
/// as no reply's is).
pub fn notice_body(notice: &Notice) -> Vec<u8> {
    let name = match notice {
        Notice::Stopping => STOPPING,
        Notice::Other(name) => name,
    };
    let mut body = std::collections::BTreeMap::new();
    body.insert(NOTICE_KEY, name);
    crate::codec::encode(&body).expect("a map of strings encodes")
}

/// The notice a message received on a `DEALER` socket carries, if it is a NOTICE
/// (`[""]["SBC1"][""][{"notice": name}]`); `None` for anything else (replies included).
pub fn parse_notice(frames: &[Frame]) -> Option<Notice> {
    let [delimiter, signature, header, body] = frames else {
        return None;
    };
    if !delimiter.is_empty() || &signature[..] != CLIENT_SIGNATURE || !header.is_empty() {
        return None;
    }
    let map: std::collections::BTreeMap<String, rmpv::Value> = crate::codec::decode(body).ok()?;
    match map.get(NOTICE_KEY)?.as_str()? {
        STOPPING => Some(Notice::Stopping),
        other => Some(Notice::Other(other.to_owned())),
    }
}

/// Splits a reply message received on a `DEALER` socket that pipelines: one reply, or
/// several grouped, `[""]["SBC1"]([header][body])…`. Every header must decode.
pub fn parse_replies(frames: Vec<Frame>) -> Result<Vec<Reply>, ProtocolError> {
    if frames.len() < 4 || frames.len() % 2 != 0 {
        return Err(ProtocolError::FrameCount {
            expected: "2 + 2 per reply (delimiter, signature, then header and body)",
            got: frames.len(),
        });
    }
    if !frames[0].is_empty() {
        return Err(ProtocolError::MissingDelimiter);
    }
    if &frames[1][..] != CLIENT_SIGNATURE {
        return Err(ProtocolError::Signature { expected: "SBC1" });
    }
    let mut replies = Vec::with_capacity(frames.len() / 2 - 1);
    let mut rest = frames.into_iter().skip(2);
    while let (Some(header_frame), Some(body)) = (rest.next(), rest.next()) {
        let header = CallHeader::decode(&header_frame).map_err(|source| ProtocolError::Body {
            frame: "header",
            source,
        })?;
        replies.push(Reply { header, body });
    }
    Ok(replies)
}

/// A `DEALER` client's message carrying up to [`MAX_PIPELINED_CALLS`] calls,
/// `[""]["SBC1"]([function][header][body])…`, built from single-call requests.
#[derive(Debug)]
pub struct Pipeline {
    frames: Vec<Frame>,
    calls: usize,
}

impl Default for Pipeline {
    fn default() -> Self {
        Pipeline::new()
    }
}

impl Pipeline {
    /// An empty message.
    pub fn new() -> Pipeline {
        Pipeline {
            frames: vec![Frame::new(), Frame::from(CLIENT_SIGNATURE)],
            calls: 0,
        }
    }

    /// Whether `frames` is one call as [`request_frames`] builds it (a batch is not).
    pub fn can_take(frames: &[Frame]) -> bool {
        frames.len() == 5 && &frames[2][..] != BATCH_FUNCTION.as_bytes()
    }

    /// Adds the call of a single-call request (see [`Pipeline::can_take`]).
    pub fn push(&mut self, request: Vec<Frame>) {
        debug_assert!(Pipeline::can_take(&request));
        self.frames.extend(request.into_iter().skip(2));
        self.calls += 1;
    }

    /// Adds one call.
    pub fn push_call(&mut self, function: &str, header: &CallHeader, body: Frame) {
        self.frames.push(Frame::from(function.as_bytes()));
        self.frames.push(owned_frame(header.encode()));
        self.frames.push(body);
        self.calls += 1;
    }

    /// How many calls the message holds.
    pub fn len(&self) -> usize {
        self.calls
    }

    /// Whether the message holds no call.
    pub fn is_empty(&self) -> bool {
        self.calls == 0
    }

    /// Whether no more calls fit.
    pub fn is_full(&self) -> bool {
        self.calls >= MAX_PIPELINED_CALLS
    }

    /// The frames to send. One call is sent in the single-call form.
    pub fn into_frames(self) -> Vec<Frame> {
        self.frames
    }

    /// Splits the frames of a pipelined message (as [`Pipeline::into_frames`] made them,
    /// e.g. handed back by a refused send) into single-call requests, in order.
    pub fn split(frames: Vec<Frame>) -> Vec<Vec<Frame>> {
        let mut calls = Vec::with_capacity(frames.len() / 3);
        let mut rest = frames.into_iter().skip(2);
        while let (Some(function), Some(header), Some(body)) =
            (rest.next(), rest.next(), rest.next())
        {
            calls.push(vec![
                Frame::new(),
                Frame::from(CLIENT_SIGNATURE),
                function,
                header,
                body,
            ]);
        }
        calls
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(frames: Vec<Frame>) -> Result<Incoming<Envelope>, Box<Rejected<Envelope>>> {
        parse_request(frames)
    }

    fn frames(parts: &[&[u8]]) -> Vec<Frame> {
        parts.iter().map(|p| Frame::from(*p)).collect()
    }

    #[test]
    fn parses_a_well_formed_request() {
        let header = CallHeader {
            id: 9,
            timeout_ms: Some(50),
            traceparent: None,
            timings: false,
            wait_for_ready: false,
            notices: false,
        }
        .encode();
        let parsed = parse(frames(&[b"\x00id", b"", b"SBC1", b"add", &header, b"\x80"]));
        let Ok(Incoming::Call(req)) = parsed else {
            panic!("not a single call: {parsed:?}")
        };
        assert_eq!(req.route.envelope(), [b"\x00id"]);
        assert_eq!(req.route.header(), header);
        assert_eq!(req.function_name(), "add");
        assert_eq!(
            req.header,
            CallHeader {
                id: 9,
                timeout_ms: Some(50),
                traceparent: None,
                timings: false,
                wait_for_ready: false,
                notices: false,
            }
        );
        assert_eq!(&req.body[..], b"\x80");
    }

    #[test]
    fn missing_delimiter_still_answers_the_sender() {
        let rejected = parse(frames(&[b"\x00id", b"SBC1", b"add"])).unwrap_err();
        assert_eq!(rejected.route.envelope(), [b"\x00id"]);
        assert_eq!(rejected.route.header(), NO_HEADER);
        assert!(matches!(rejected.error, ProtocolError::MissingDelimiter));
    }

    #[test]
    fn bad_requests_are_rejected_with_a_reason() {
        let header = CallHeader {
            id: 1,
            timeout_ms: None,
            traceparent: None,
            timings: false,
            wait_for_ready: false,
            notices: false,
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
            let rejected = parse(frames(&parts)).unwrap_err();
            assert_eq!(rejected.route.envelope(), [b"c"]);
            assert!(
                rejected.error.to_string().contains(want),
                "{}",
                rejected.error
            );
        }
    }

    #[test]
    fn a_refused_message_echoes_its_header_whenever_it_came() {
        let header = CallHeader {
            id: 7,
            timeout_ms: None,
            traceparent: None,
            timings: false,
            wait_for_ready: false,
            notices: false,
        }
        .encode();
        let h = &header[..];
        let call: [&[u8]; 3] = [b"add", h, b"\x80"];
        let mut too_many: Vec<&[u8]> = vec![b"c", b"", b"SBC1"];
        for _ in 0..=MAX_PIPELINED_CALLS {
            too_many.extend_from_slice(&call);
        }
        let mut big_batch: Vec<&[u8]> = vec![b"c", b"", b"SBC1", b"system.batch", h];
        for _ in 0..=MAX_BATCH_CALLS {
            big_batch.extend_from_slice(&[b"add", b"\x80"]);
        }
        let cases: Vec<Vec<&[u8]>> = vec![
            vec![b"c", b"", b"SBC1", b"add", h],                    // no body
            vec![b"c", b"", b"SBC1", b"add", h, b"\x80", b"extra"], // a trailing frame
            vec![b"c", b"", b"SBC1", b"add", h, b"\x80", b"add", h], // [fn,H,B,fn,H]
            too_many,
            vec![b"c", b"", b"SBC1", b"system.batch", h], // no call
            vec![b"c", b"", b"SBC1", b"system.batch", h, b"add"], // no body
            big_batch,
            vec![b"c", b"", b"XXXX", b"add", h, b"\x80"], // wrong signature
        ];
        for parts in cases {
            let rejected = parse(frames(&parts)).expect_err("refused");
            assert_eq!(rejected.route.header(), h, "{}", rejected.error);
        }
        // Frames stop before the header: nothing to echo but nil.
        let rejected = parse(frames(&[b"c", b"", b"SBC1", b"add"])).unwrap_err();
        assert_eq!(rejected.route.header(), NO_HEADER);
    }

    #[test]
    fn parses_a_batch_of_calls_in_order() {
        let header = CallHeader {
            id: 4,
            timeout_ms: None,
            traceparent: None,
            timings: false,
            wait_for_ready: false,
            notices: false,
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
        let Incoming::Batch(batch) = parse(frames(&parts)).unwrap() else {
            panic!("not a batch")
        };
        let names: Vec<_> = batch
            .calls
            .iter()
            .map(|(n, _)| n.as_deref().unwrap())
            .collect();
        assert_eq!(names, ["add", "upper"]);
        assert_eq!(&batch.calls[1].1[..], b"\x81");
        for bad in [
            vec![&b"c"[..], b"", b"SBC1", b"system.batch", &header],
            vec![b"c", b"", b"SBC1", b"system.batch", &header, b"add"],
        ] {
            assert!(parse(frames(&bad)).is_err(), "{bad:?}");
        }
        // A bad name fails its own slot only, as in a pipeline.
        let parts: Vec<&[u8]> = vec![
            b"c",
            b"",
            b"SBC1",
            b"system.batch",
            &header,
            b"",
            b"\x80",
            b"add",
            b"\x80",
        ];
        let Incoming::Batch(batch) = parse(frames(&parts)).unwrap() else {
            panic!("not a batch")
        };
        assert!(batch.calls[0].0.is_err());
        assert_eq!(batch.calls[1].0.as_deref().ok(), Some("add"));
    }

    #[test]
    fn parses_pipelined_calls_and_rejects_bad_ones_alone() {
        let header = |id| {
            CallHeader {
                id,
                timeout_ms: None,
                traceparent: None,
                timings: false,
                wait_for_ready: false,
                notices: false,
            }
            .encode()
        };
        let (h1, h2, h3, h4) = (header(1), header(2), header(3), header(4));
        let parts: Vec<&[u8]> = vec![
            b"c",
            b"",
            b"SBC1",
            b"add",
            &h1,
            b"\x80",
            b"",
            &h2,
            b"\x80", // empty function name
            b"upper",
            b"\xc1",
            b"\x81", // header that does not decode
            b"system.batch",
            &h3,
            b"\x80", // a batch cannot ride along
            b"echo",
            &h4,
            b"\x82",
        ];
        let Incoming::Pipelined(calls) = parse(frames(&parts)).unwrap() else {
            panic!("not pipelined")
        };
        assert_eq!(calls.len(), 5);
        let ok: Vec<(&str, u64, Vec<u8>)> = calls
            .iter()
            .filter_map(|c| c.as_ref().ok())
            .map(|r| (r.function_name(), r.header.id, r.body.to_vec()))
            .collect();
        assert_eq!(
            ok,
            [("add", 1, b"\x80".to_vec()), ("echo", 4, b"\x82".to_vec())]
        );
        for call in &calls {
            let route = match call {
                Ok(request) => &request.route,
                Err(rejected) => &rejected.route,
            };
            assert!(route.accepts_grouped_replies());
            assert_eq!(route.envelope(), [b"c"]);
        }
        let rejected: Vec<&[u8]> = calls
            .iter()
            .filter_map(|c| c.as_ref().err())
            .map(|r| r.route.header())
            .collect();
        assert_eq!(rejected, [&h2[..], b"\xc1", &h3[..]]);
        // Not three frames per call, or too many calls: the whole message is refused.
        let mut too_many: Vec<&[u8]> = vec![b"c", b"", b"SBC1"];
        for _ in 0..=MAX_PIPELINED_CALLS {
            too_many.extend_from_slice(&[b"add", &h1, b"\x80"]);
        }
        for bad in [&parts[..parts.len() - 1], &too_many[..]] {
            assert!(parse(frames(bad)).is_err());
        }
    }

    #[test]
    fn a_pipeline_splits_back_and_grouped_replies_parse() {
        let header = CallHeader {
            id: 8,
            timeout_ms: Some(5),
            traceparent: None,
            timings: false,
            wait_for_ready: false,
            notices: false,
        };
        let mut pipeline = Pipeline::new();
        pipeline.push(request_frames("add", &header, vec![0x80]));
        pipeline.push_call("echo", &header, Frame::from(&b"\x81"[..]));
        assert_eq!(pipeline.len(), 2);
        let message = pipeline.into_frames();
        assert_eq!(message.len(), 8);
        let single = Pipeline::split(message);
        assert_eq!(single.len(), 2);
        assert!(single.iter().all(|f| Pipeline::can_take(f)));
        assert_eq!(&single[1][2][..], b"echo");
        let h = header.encode();
        let grouped = parse_replies(frames(&[b"", b"SBC1", &h, b"r1", &h, b"r2"])).unwrap();
        assert_eq!(grouped.len(), 2);
        assert_eq!(&grouped[1].body[..], b"r2");
        assert!(parse_replies(frames(&[b"", b"SBC1", &h, b"r1", &h])).is_err());
        assert!(parse_reply(frames(&[b"", b"SBC1", &h, b"r1", &h, b"r2"])).is_err());
    }

    #[test]
    fn reply_route_frames_round_trip_through_parse_reply() {
        let header = CallHeader {
            id: 3,
            timeout_ms: None,
            traceparent: None,
            timings: false,
            wait_for_ready: false,
            notices: false,
        };
        let route = Envelope::new(&frames(&[b"client"]), &header.encode());
        let mut out = route.reply_frames(Frame::from(&b"\x80"[..]));
        assert_eq!(&out.remove(0)[..], b"client");
        let reply = parse_reply(out).unwrap();
        assert_eq!(reply.header, header);
    }
}
