//! Switchboard wire protocol (clients SBC1, workers SBW2): the only code that knows the bytes.
//!
//! Every multipart message that crosses a Switchboard socket is built and parsed
//! here, and this crate is the only caller of `rmp_serde`. Broker, worker and
//! client never assemble frames by hand. The normative description of the
//! bytes is `docs/PROTOCOL.md`; this crate implements it.
//!
//! MessagePack conventions (decided once, here): structs are written as maps
//! with field names as keys (`rmp_serde::to_vec_named`), so Python sees dicts;
//! byte strings that are data travel as `bin` through `serde_bytes`.
//!
//! # Layout
//! - [`code`] — the fixed vocabulary of error codes that travel on the wire.
//! - [`message`] — the MessagePack bodies: call header, request body, reply body,
//!   worker READY announcement.
//! - [`codec`] — encode/decode of those bodies (the `rmp_serde` boundary).
//! - [`args`] — single-pass decoding of a request body into a function's
//!   argument type, with arity and type errors that name the problem.
//! - [`client`] — frames between a client and the broker frontend.
//! - [`worker`] — frames between a worker and the broker backend.
//! - [`timestamp`] — [`Timestamp`], the MessagePack timestamp extension.
//! - [`limits`] — every limit of the protocol, and the names of its three ways of
//!   carrying several calls (pipeline, batch, coalescing).
//! - [`error`] — the crate's error types.

pub mod args;
pub mod client;
pub mod code;
pub mod codec;
pub mod error;
pub mod limits;
pub mod message;
pub mod worker;

pub use code::ErrorCode;
pub use error::{CodecError, ProtocolError};
pub use message::{
    CallHeader, CallTimings, FunctionInfo, FunctionListing, FunctionVariant, ReadyInfo,
    RemoteError, WorkerListing,
};

/// One ZeroMQ frame. Frames the broker only forwards are moved, never copied.
pub type Frame = zmq::Message;

/// Largest frame libzmq keeps inside the message itself, allocating nothing.
const INLINE_FRAME: usize = 33;

/// Makes a frame from owned bytes: small ones are copied into the message itself (so
/// libzmq allocates nothing and has no free callback to run), large ones are handed
/// over without a copy.
pub fn owned_frame(bytes: Vec<u8>) -> Frame {
    if bytes.len() <= INLINE_FRAME {
        Frame::from(&bytes[..])
    } else {
        Frame::from(bytes)
    }
}

/// Signature frame that starts every client message (after the empty delimiter).
pub const CLIENT_SIGNATURE: &[u8] = b"SBC1";

/// Signature that starts every worker message's control frame (after the routing identity).
pub const WORKER_SIGNATURE: &[u8] = b"SBW2";

/// Names under this prefix are answered by the broker itself; workers cannot register them.
pub const RESERVED_PREFIX: &str = "system.";

pub mod timestamp;
pub use timestamp::Timestamp;

/// A dynamically typed MessagePack value, for functions and tools that take anything.
pub type Value = rmpv::Value;
