//! Support code of Switchboard's programs (`broker`, `worker`, `client`, `bench`).
//!
//! Not a library to build on: use `switchboard-client`, `switchboard-worker` or
//! `switchboard-broker`. It holds what only the programs need, so that those libraries
//! carry no CLI dependencies.
//!
//! # Layout
//! - [`curve_args`] — the CURVE flags of the client and the worker.
//! - [`demo`] — the demo registry the `worker` program hosts.
//! - [`json`] — conversion between JSON (as typed in a shell) and MessagePack values.

pub mod curve_args;
pub mod demo;
pub mod json;
