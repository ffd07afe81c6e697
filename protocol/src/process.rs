//! Process setup shared by the `broker`, `worker` and `client` binaries.

use crate::Shutdown;

/// Sends `tracing` output to stderr, filtered by `RUST_LOG` (else `default_filter`).
pub fn init_logging(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// A [`Shutdown`] flag that SIGTERM and SIGINT set.
pub fn shutdown_on_signals() -> std::io::Result<Shutdown> {
    let shutdown = Shutdown::new();
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, shutdown.flag())?;
    }
    Ok(shutdown)
}
