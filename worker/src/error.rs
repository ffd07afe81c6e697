//! Errors that stop a worker.

/// Why a worker could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The registry hosts no function.
    #[error("the registry is empty: register at least one function")]
    EmptyRegistry,
    /// Some registered names cannot be served.
    #[error("invalid function names: {0}")]
    InvalidNames(String),
    /// A ZeroMQ socket could not be created, configured or used.
    #[error("socket error")]
    Socket(#[from] zmq::Error),
    /// CURVE could not be set up.
    #[error("cannot set up CURVE")]
    Curve(#[from] switchboard_transport::curve::KeyError),
    /// An environment variable does not hold a valid value.
    #[error("{variable}={value:?} is not valid: {reason}")]
    Config {
        /// The variable's name.
        variable: &'static str,
        /// What it holds.
        value: String,
        /// Why that does not parse.
        reason: String,
    },
    /// A thread or the waker could not be created.
    #[error("cannot start worker threads")]
    Thread(#[from] std::io::Error),
}
