//! Error types of the protocol crate, split by failure domain.

use std::sync::Arc;

/// An error with the reasons behind it, `"outer: inner: innermost"`: for messages that
/// travel to a peer or a user, where the source chain is not available.
pub fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A multipart message that does not follow the wire protocol.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProtocolError {
    /// The message had fewer or more frames than its kind requires.
    #[error("expected {expected} frames after the envelope, got {got}")]
    FrameCount {
        /// What the message kind requires, as text (e.g. "4").
        expected: &'static str,
        /// How many frames arrived.
        got: usize,
    },
    /// The signature frame was not the expected one.
    #[error("bad protocol signature (expected {expected:?})")]
    Signature {
        /// The signature this socket speaks.
        expected: &'static str,
    },
    /// A client message without the empty delimiter frame.
    #[error("missing empty delimiter frame before the signature")]
    MissingDelimiter,
    /// The worker command byte is not one of the defined commands.
    #[error("unknown command {0:#04x}")]
    UnknownCommand(u8),
    /// A worker message's control frame does not have its command's layout.
    #[error("malformed control frame: {0}")]
    Control(&'static str),
    /// The function name frame is empty, too long or not UTF-8.
    #[error("invalid function name: {0}")]
    FunctionName(&'static str),
    /// The routing envelope (the frames before the empty delimiter) is over its limit:
    /// every call of a pipelined message keeps a copy of it until answered.
    #[error(
        "routing envelope too large: {frames} frames, {bytes} bytes (at most {} frames, {} bytes)",
        crate::limits::MAX_ENVELOPE_FRAMES,
        crate::limits::MAX_ENVELOPE_BYTES
    )]
    Envelope {
        /// Frames before the delimiter (the broker's routing identity included).
        frames: usize,
        /// Their bytes.
        bytes: usize,
    },
    /// The message had too many frames or bytes.
    #[error("message too large: {frames} frames, {bytes} bytes")]
    TooLarge {
        /// Frames in the message.
        frames: usize,
        /// Bytes in the message.
        bytes: usize,
    },
    /// A MessagePack frame did not decode.
    #[error("invalid {frame} frame")]
    Body {
        /// Which frame failed ("header", "ready", ...).
        frame: &'static str,
        /// Why it failed.
        #[source]
        source: CodecError,
    },
}

/// A MessagePack value that could not be encoded or decoded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CodecError {
    /// Encoding failed: a `Serialize` impl reported an error.
    #[error("cannot encode value")]
    Encode(#[source] Arc<rmp_serde::encode::Error>),
    /// The bytes are not MessagePack of the shape expected.
    #[error("cannot decode value")]
    Decode(#[source] Arc<rmp_serde::decode::Error>),
    /// The value is well formed but breaks a rule of the protocol (its shape or size):
    /// the rule is the message.
    #[error("{0}")]
    Rule(String),
}

impl CodecError {
    /// The error with its causes, `"cannot decode value: invalid type: …"`: for messages
    /// that travel to a peer, where the source chain is not available.
    pub fn with_causes(&self) -> String {
        with_causes(self)
    }
}

impl From<rmp_serde::encode::Error> for CodecError {
    fn from(error: rmp_serde::encode::Error) -> CodecError {
        CodecError::Encode(Arc::new(error))
    }
}

impl From<rmp_serde::decode::Error> for CodecError {
    fn from(error: rmp_serde::decode::Error) -> CodecError {
        CodecError::Decode(Arc::new(error))
    }
}
