//! B's calling policy over A's replicas: how one call to "service A" becomes attempts on
//! replicas, which answer B passes on, and which replicas B stops trusting.
//!
//! ```text
//!  call ─► bulkhead ─► limit ─► breaker ─► choose ─► attempt ─► classify ─┬─► answer
//!  (overloaded) (overloaded) (circuit_open) ▲        │ hedge timer        │
//!                                           │        └─► a second attempt ┤ the first good
//!                                           │                             │ answer wins
//!                                           └── retry, if budget, limit ◄─┘ a failure, and
//!                                               and breaker allow            time left
//! ```
//!
//! Each pattern is a plain data structure in a file of its own that takes the time as an
//! argument and never sleeps. `cluster.rs` holds what every call shares (the replicas, the
//! policies, the counts); `call.rs` holds one call's state, owns its timers and tells its
//! story in `Call::run`. Every pattern is off unless switched on (`Patterns::default()`): B
//! then makes exactly one attempt per call, on the only replica or the next in turn, as it
//! always has. `http::client` stays a client for one address with its pool; it knows none of
//! this.
//!
//! | file | pattern | prior art |
//! | --- | --- | --- |
//! | `call.rs` | one call: attempts, hedge timer, per-try deadline | Envoy's router filter |
//! | `cluster.rs` | what calls share: replicas, policies, counts | Envoy's clusters, Finagle's clients |
//! | `replicas.rs` | the set of replicas, re-resolved | Envoy's `STRICT_DNS` clusters |
//! | `balance.rs` | P2C over peak EWMA; a replica's return | Finagle, Linkerd; Envoy's slow start |
//! | `outlier.rs` | eject after consecutive failures | Envoy's outlier detection |
//! | `breaker.rs` | fail fast while A as a whole fails | Hystrix, resilience4j, Finagle's `FailFast` |
//! | `budget.rs` | retries within a budget | Finagle's `RetryBudget`, Linkerd's retry budget |
//! | `hedge.rs` | a second attempt for the slow tail | "The Tail at Scale", gRPC hedging |
//! | `bulkhead.rs` | a cap on calls in flight | Hystrix's semaphore isolation |
//! | `limit.rs` | each replica's concurrency, from latency | Netflix's Gradient2, Envoy's adaptive concurrency |
//! | `deadline.rs` | tell A how long B will wait | gRPC's `grpc-timeout`, Envoy's expected timeout |
//! | `flags.rs` | B's command line: which patterns are on | |

pub mod balance;
pub mod breaker;
pub mod budget;
pub mod bulkhead;
pub mod call;
pub mod cluster;
pub mod deadline;
pub mod flags;
pub mod hedge;
pub mod limit;
pub mod outlier;
pub mod replicas;

pub use call::{Clock, Exchange, MAX_ATTEMPTS};
pub use cluster::{Cluster, ClusterSnapshot, Refusal};

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::http::client::ClientError;
use breaker::BreakerConfig;
use budget::BudgetConfig;
use hedge::HedgeDelay;
use outlier::OutlierConfig;

/// With `--resilient`, an attempt gets a third of the call's deadline, so that a replica that
/// swallows requests still leaves time for two more attempts elsewhere (Envoy's
/// `per_try_timeout`). A hedge usually goes out long before.
pub const ATTEMPTS_PER_DEADLINE: u32 = 3;

/// The bulkhead's size with `--resilient`: at 300 calls a second and a 1 s deadline, about
/// 300 calls wait on an A that swallows them; three times that is room for bursts, and far
/// below the 10,000 connections B accepts, so B's own health never waits behind A.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;

/// How B picks a replica.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Balance {
    /// Each in turn: what nginx and HAProxy do by default.
    #[default]
    RoundRobin,
    /// The cheaper of two random replicas by outstanding calls × latency (`balance.rs`).
    PeakEwma,
}

/// Which patterns are on, with their settings. The default is none: one attempt per call.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Patterns {
    pub balance: Balance,
    pub ejection: Option<OutlierConfig>,
    pub breaker: Option<BreakerConfig>,
    pub retries: Option<BudgetConfig>,
    pub hedge: Option<HedgeDelay>,
    /// Each attempt's own deadline, inside the call's.
    pub attempt_timeout: Option<Duration>,
    /// Send `X-Timeout-Ms` with every attempt (`deadline.rs`).
    pub propagate_deadline: bool,
    /// The bulkhead: most calls to A in flight at once.
    pub max_in_flight: Option<usize>,
    /// Each replica's concurrency limit learned from its latency (`limit.rs`); past it, the
    /// call is refused as `overloaded` at once.
    pub adaptive_limit: bool,
    /// Retry every retryable failure up to `MAX_ATTEMPTS`, without a budget, a limit or the
    /// breaker's say: what not to do, kept to show a retry storm (`--retries=naive`).
    pub naive_retries: bool,
}

impl Patterns {
    /// Every pattern on, with the settings each file explains: `--resilient`.
    pub fn all(deadline: Duration) -> Patterns {
        Patterns {
            balance: Balance::PeakEwma,
            ejection: Some(OutlierConfig::default()),
            breaker: Some(BreakerConfig::default()),
            retries: Some(BudgetConfig::default()),
            hedge: Some(HedgeDelay::default()),
            attempt_timeout: Some(deadline / ATTEMPTS_PER_DEADLINE),
            propagate_deadline: true,
            max_in_flight: Some(DEFAULT_MAX_IN_FLIGHT),
            adaptive_limit: false,
            naive_retries: false,
        }
    }
}

impl Patterns {
    /// Whether any pattern is on.
    pub fn any(&self) -> bool {
        *self != Patterns::default()
    }
}

/// The patterns that are on, as B's start-up line names them: `balance=peak-ewma eject ...`.
impl fmt::Display for Patterns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let balance = match self.balance {
            Balance::RoundRobin => "round-robin",
            Balance::PeakEwma => "peak-ewma",
        };
        write!(f, "balance={balance}")?;
        let switches = [
            ("eject", self.ejection.is_some()),
            ("breaker", self.breaker.is_some()),
            ("retries", self.retries.is_some()),
            ("retries=naive", self.naive_retries),
            ("propagate_deadline", self.propagate_deadline),
            ("adaptive_limit", self.adaptive_limit),
        ];
        for (name, on) in switches {
            if on {
                write!(f, " {name}")?;
            }
        }
        match self.hedge {
            Some(HedgeDelay::Fixed(delay)) => write!(f, " hedge_ms={}", delay.as_millis())?,
            Some(_) => f.write_str(" hedge=auto")?,
            None => {}
        }
        if let Some(limit) = self.attempt_timeout {
            write!(f, " attempt_timeout_ms={}", limit.as_millis())?;
        }
        if let Some(max) = self.max_in_flight {
            write!(f, " max_in_flight={max}")?;
        }
        Ok(())
    }
}

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

/// A policy's lock. Policies are plain numbers that every update leaves consistent, so a
/// panic elsewhere while one was held leaves nothing half-done: use it anyway.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
