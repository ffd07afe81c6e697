//! Switchboard client: call functions hosted by workers, by name, from Rust.
//!
//! ```no_run
//! use switchboard_client::Client;
//! let client = Client::connect("tcp://127.0.0.1:5555").unwrap();
//! let sum: i64 = client.call("add", (2, 3)).unwrap();
//! assert_eq!(sum, 5);
//! // Many calls in flight over one connection:
//! let pending: Vec<_> = (0..10)
//!     .map(|i| client.request("add").args((i, i)).send().unwrap())
//!     .collect();
//! for call in pending {
//!     let _: i64 = call.wait().unwrap();
//! }
//! ```
//!
//! # Layout
//! - `client` — [`Client`], [`RequestBuilder`], [`PendingCall`] and batches: the caller-facing API.
//! - `session` — the call table as a state machine with no socket: what is sent when,
//!   retried, failed and why; unit-tested with a fake clock.
//! - `asynchronous` — [`CallFuture`]: calls as futures, on any runtime, cancelled when
//!   dropped.
//! - `balance` — which broker a call goes to when the client has several
//!   (power-of-two-choices; calls stranded on a lost or stopping broker move on).
//! - `connection` — the socket thread: a thin driver of one session per broker, each over
//!   its own DEALER socket.
//! - `error` — [`CallError`] and [`ConnectError`].

mod asynchronous;
mod balance;
mod client;
mod connection;
mod error;
mod session;

pub use asynchronous::CallFuture;
pub use client::{
    BatchBuilder, BatchReply, Client, ClientConfig, ClientStats, PendingBatch, PendingCall,
    RequestBuilder,
};
pub use error::{CallError, ConnectError};
pub use switchboard_protocol::{CallTimings, ErrorCode, RemoteError, Timestamp, Value};
