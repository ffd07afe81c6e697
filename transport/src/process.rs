//! Process set-up for programs (the binaries, and a worker's `serve`): logging to
//! stderr, and SIGTERM/SIGINT to a stop flag.

use crate::Shutdown;

/// Sends `tracing` output to stderr, filtered by `RUST_LOG` (else `default_filter`).
///
/// `SWITCHBOARD_LOG_FORMAT=json` writes one JSON object per line (for log
/// shippers); anything else, or unset, writes human-readable lines, coloured only
/// when stderr is a terminal. Does nothing if the program already set a subscriber.
pub fn init_logging(default_filter: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let json =
        std::env::var("SWITCHBOARD_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    // An error only means a subscriber is already set: keep that one.
    let _ = if json {
        builder.json().with_current_span(false).try_init()
    } else {
        builder.try_init()
    };
}

/// A [`Shutdown`] flag that SIGTERM and SIGINT set.
pub fn shutdown_on_signals() -> std::io::Result<Shutdown> {
    let shutdown = Shutdown::new();
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, shutdown.flag())?;
    }
    Ok(shutdown)
}
