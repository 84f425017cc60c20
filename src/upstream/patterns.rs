//! Which of B's patterns are on, with their settings: `Patterns`, built from B's flags
//! (`flags.rs`) and read by the cluster and each call. The default is none: one attempt per
//! call, as the contract has it.

use std::fmt;
use std::time::Duration;

use super::breaker::BreakerConfig;
use super::budget::BudgetConfig;
use super::hedge::HedgeDelay;
use super::outlier::OutlierConfig;

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
    /// call is refused as `overloaded` at once. A replica that answers nothing is not limited
    /// (failure is the breaker's and ejection's), so the limit and the breaker do not compete.
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
            adaptive_limit: true,
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
