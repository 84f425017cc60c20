//! What a call ends with when it has no response to pass on (`CallError`, whose `kind` is
//! the contract's `error_kind`), and how it went (`CallReport`, for B's log line).

use std::fmt;
use std::net::SocketAddr;

use crate::http::client::ClientError;

/// Why a call produced no response to pass on.
#[derive(Debug)]
pub enum CallError {
    /// The breaker is open: A has been failing, and B did not call it.
    CircuitOpen,
    /// The bulkhead is full: this many calls to A are already waiting.
    Overloaded { limit: usize },
    /// Every replica has as many attempts in flight as its adaptive limit allows (`limit.rs`).
    LimitReached,
    /// The last attempt failed this way.
    Client(ClientError),
}

impl CallError {
    /// The contract's `error_kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::CircuitOpen => "circuit_open",
            CallError::Overloaded { .. } | CallError::LimitReached => "overloaded",
            CallError::Client(e) => e.kind(),
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::CircuitOpen => {
                f.write_str("circuit open: recent calls failed, so this one was not made")
            }
            CallError::Overloaded { limit } => {
                write!(
                    f,
                    "overloaded: {limit} calls already waiting, so this one was not made"
                )
            }
            CallError::LimitReached => f.write_str(
                "overloaded: every replica of A is at its adaptive limit (the most it answers \
                 without queueing), so this call was not made",
            ),
            CallError::Client(e) => e.fmt(f),
        }
    }
}

/// How a call went, for B's log line.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallReport {
    /// The replica whose answer (or failure) is the call's result.
    pub replica: Option<SocketAddr>,
    /// Which attempt that was, counting from 1, hedges included.
    pub attempt: usize,
}
