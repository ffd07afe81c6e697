//! The fixed vocabulary of error codes carried in reply bodies.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Why a call did not produce a result. Travels as its upper-case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// No connected worker hosts the function.
    UnknownFunction,
    /// The arguments did not match the function's parameters.
    BadArguments,
    /// The function ran and returned an error, or panicked.
    FunctionError,
    /// The call's deadline passed before a result arrived.
    Timeout,
    /// Every queue that could take the call is full.
    Overloaded,
    /// The worker running the call disconnected or stopped answering.
    WorkerLost,
    /// The message did not follow the wire protocol.
    BadRequest,
    /// The message exceeded a size limit.
    PayloadTooLarge,
    /// The broker or worker is stopping and takes no new calls.
    ShuttingDown,
    /// Client side only: the connection to the broker dropped while the call was in flight,
    /// or no connection came up before the call's deadline.
    BrokerLost,
    /// The caller cancelled the call (`system.cancel`); it may or may not have run.
    Cancelled,
    /// A code this version does not know (sent by a newer or foreign peer).
    Unrecognized,
}

impl ErrorCode {
    /// Every code of the vocabulary, in documentation order.
    pub const ALL: [ErrorCode; 11] = [
        ErrorCode::UnknownFunction,
        ErrorCode::BadArguments,
        ErrorCode::FunctionError,
        ErrorCode::Timeout,
        ErrorCode::Overloaded,
        ErrorCode::WorkerLost,
        ErrorCode::BadRequest,
        ErrorCode::PayloadTooLarge,
        ErrorCode::ShuttingDown,
        ErrorCode::BrokerLost,
        ErrorCode::Cancelled,
    ];

    /// The code's wire name, e.g. `"UNKNOWN_FUNCTION"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::UnknownFunction => "UNKNOWN_FUNCTION",
            ErrorCode::BadArguments => "BAD_ARGUMENTS",
            ErrorCode::FunctionError => "FUNCTION_ERROR",
            ErrorCode::Timeout => "TIMEOUT",
            ErrorCode::Overloaded => "OVERLOADED",
            ErrorCode::WorkerLost => "WORKER_LOST",
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::ShuttingDown => "SHUTTING_DOWN",
            ErrorCode::BrokerLost => "BROKER_LOST",
            ErrorCode::Cancelled => "CANCELLED",
            ErrorCode::Unrecognized => "UNRECOGNIZED",
        }
    }

    /// Parses a wire name; names outside the vocabulary become [`ErrorCode::Unrecognized`].
    pub fn from_wire(name: &str) -> ErrorCode {
        ErrorCode::ALL
            .into_iter()
            .find(|code| code.as_str() == name)
            .unwrap_or(ErrorCode::Unrecognized)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Ok(ErrorCode::from_wire(&name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_its_wire_name() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_wire(code.as_str()), code);
        }
        assert_eq!(ErrorCode::from_wire("NOPE"), ErrorCode::Unrecognized);
    }
}
