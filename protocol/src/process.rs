//! Process setup shared by the `broker`, `worker` and `client` binaries.

use crate::Shutdown;

/// Sends `tracing` output to stderr, filtered by `RUST_LOG` (else `default_filter`).
///
/// `SWITCHBOARD_LOG_FORMAT=json` writes one JSON object per line (for log
/// shippers); anything else, or unset, writes human-readable lines.
pub fn init_logging(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let json =
        std::env::var("SWITCHBOARD_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    if json {
        builder.json().with_current_span(false).init();
    } else {
        builder.init();
    }
}

/// A [`Shutdown`] flag that SIGTERM and SIGINT set.
pub fn shutdown_on_signals() -> std::io::Result<Shutdown> {
    let shutdown = Shutdown::new();
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, shutdown.flag())?;
    }
    Ok(shutdown)
}
