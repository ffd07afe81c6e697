//! Switchboard broker: routes calls from clients to the workers that host them.
//!
//! Clients connect to the frontend ROUTER socket, workers to the backend ROUTER
//! socket. One thread polls both; routing decisions are made by a plain state
//! machine with no sockets in it. Call bodies are forwarded as they arrived and
//! never decoded.
//!
//! # Layout
//! - [`auth`] — the CURVE ZAP handler with per-socket allow-lists.
//! - `backlog` — replies waiting for clients that read slowly, within byte budgets.
//! - [`background`] — helper threads that stop and join when dropped.
//! - [`config`] — [`BrokerConfig`], everything the broker can be told.
//! - [`route`] — [`route::ReplyRoute`], where a reply goes, packed small; replies grouped per caller.
//! - [`router`] — [`router::Router`], routing state and decisions (no I/O): a folder of
//!   owned tables (calls and deadlines, functions and queues, workers, batches).
//! - `handshakes` — socket monitors that count handshakes refused before ZAP is asked.
//! - [`http`] — the `/metrics` and `/health` HTTP endpoint.
//! - [`introspection`] — the built-in `system.` functions, answered from the router's state.
//! - `libzmq_seed` — an unpredictable start for libzmq's routing-id counter.
//! - [`memory`] — returns freed memory to the OS after a flood drains.
//! - [`metrics`] — Prometheus counters and histograms, rendered on request.
//! - [`server`] — [`server::Broker`], the sockets and the poll loop that feeds the router.
//! - [`view`] — what the router shows of its state ([`view::View`]) and reports as calls end.
//! - [`error`] — [`BrokerError`].

pub mod auth;
pub mod background;
mod backlog;
pub mod config;
pub mod error;
mod handshakes;
pub mod http;
pub mod introspection;
mod libzmq_seed;
pub mod memory;
pub mod metrics;
pub mod route;
pub mod router;
pub mod server;
pub mod view;

pub use config::BrokerConfig;
pub use error::BrokerError;
pub use server::Broker;
pub use switchboard_transport::Shutdown;

/// Binds the broker's sockets and runs its loop until `shutdown` is triggered; returns
/// the counters of its lifetime.
pub fn run(config: BrokerConfig, shutdown: Shutdown) -> Result<view::RouterStats, BrokerError> {
    Broker::bind(config)?.run(shutdown)
}
