//! Switchboard worker: hosts Rust functions and runs calls from the broker.
//!
//! Register functions by name in a [`Registry`]; arguments arrive as
//! MessagePack and are decoded through serde straight into the function's
//! parameter types, and the return value travels back the same way. A
//! [`Worker`] connects to the broker's backend, announces the registry, and
//! runs calls on a pool of executor threads while one socket thread keeps
//! talking to the broker (heartbeats go on during long calls).
//!
//! ```no_run
//! use switchboard_worker::{Registry, Shutdown, Worker, WorkerConfig};
//! let mut registry = Registry::new();
//! registry.register("add", |a: i64, b: i64| a + b).doc("adds two integers");
//! let config = WorkerConfig { broker: "tcp://127.0.0.1:5556".into(), ..Default::default() };
//! Worker::new(registry, config).run(Shutdown::new()).unwrap();
//! ```
//!
//! # Layout
//! - [`registry`] — [`Registry`], typed functions erased to "body in, reply out".
//! - [`executor`] — the executor thread pool and its bounded job channel.
//! - [`worker`] — [`Worker`], the socket thread: READY, REQUEST/REPLY, heartbeats, graceful leave.
//! - [`config`] — [`WorkerConfig`].
//! - [`demo`] — the demo registry hosted by the `worker` binary.
//! - [`error`] — [`WorkerError`].

pub mod config;
pub mod demo;
pub mod error;
pub mod executor;
pub mod registry;
pub mod worker;

pub use config::WorkerConfig;
pub use error::WorkerError;
pub use registry::{Kwargs, Registry};
pub use switchboard_protocol::Shutdown;
pub use worker::Worker;
