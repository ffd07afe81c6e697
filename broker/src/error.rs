//! Errors that stop the broker.

/// Why the broker could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// A socket could not be created, configured or bound.
    #[error("cannot set up the {socket} socket at {endpoint}")]
    Bind {
        /// "frontend" or "backend".
        socket: &'static str,
        /// The endpoint that was asked for.
        endpoint: String,
        /// The ZeroMQ error.
        #[source]
        source: zmq::Error,
    },
    /// CURVE could not be set up on a socket.
    #[error("cannot enable CURVE on the {socket} socket")]
    Curve {
        /// "frontend" or "backend".
        socket: &'static str,
        /// Why.
        #[source]
        source: switchboard_transport::curve::KeyError,
    },
    /// The metrics endpoint could not be started.
    #[error("cannot serve metrics at {address}")]
    Metrics {
        /// The address asked for.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A helper thread could not be started.
    #[error("cannot start the {name} thread")]
    Thread {
        /// The thread's name.
        name: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Polling or receiving failed in a way that cannot be retried.
    #[error("socket loop failed")]
    Io(#[from] zmq::Error),
}
