//! Error types of the protocol crate, split by failure domain.

/// A multipart message that does not follow the wire protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// Encoding failed (a `Serialize` impl reported an error).
    #[error("cannot encode value: {0}")]
    Encode(String),
    /// The bytes are not the MessagePack shape expected.
    #[error("cannot decode value: {0}")]
    Decode(String),
}
