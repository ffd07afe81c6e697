//! Switchboard's ZeroMQ plumbing, shared by the broker, the worker and the client.
//!
//! The wire format lives in `switchboard-protocol`; this crate is what moves it: how a
//! message is read within limits and sent without blocking, how CURVE keys are loaded
//! and applied, how another thread wakes a socket thread's poll, and the stop flag every
//! long-running loop takes.
//!
//! # Layout
//! - [`socket`] — multipart receive (bounded) and non-blocking send, socket options.
//! - [`curve`] — CURVE keys, key files, allow-lists and socket setup.
//! - [`wake`] — a waker that lets other threads interrupt a socket thread's poll.
//! - [`resolve`] — broker endpoints that name a host: one connection per address.
//! - [`shutdown`] — [`Shutdown`], the stop flag every long-running loop takes.
//! - `process` (feature `process`) — logging and signals for programs.

pub mod curve;
#[cfg(feature = "process")]
pub mod process;
pub mod resolve;
pub mod shutdown;
pub mod socket;
pub mod wake;

pub use shutdown::Shutdown;
