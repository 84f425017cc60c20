//! What every call to A shares: the replicas, the policies that remember across calls (breaker,
//! retry budget, hedge delay, bulkhead, round-robin turn), the counts for `/metrics`, and the
//! two seams a call goes through, the exchange and the clock.
//!
//! One call's own state lives in `call.rs`; this file holds nothing that belongs to a single
//! call. Each shared policy sits behind a short lock that no `.await` ever holds.

use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_lite::FutureExt;

use super::breaker::{Admission, Breaker, BreakerState};
use super::budget::{BudgetConfig, RetryBudget};
use super::bulkhead::{Bulkhead, Permit};
use super::exchange::{ClientExchange, Clock, Exchange, SystemClock};
use super::health_check;
use super::hedge::Hedge;
use super::lock::lock;
use super::outcome::CallError;
use super::patterns::Patterns;
use super::replicas::{Replica, ReplicaSnapshot, Replicas};
use crate::http::Deadline;
use crate::http::client::{ClientError, Phase};

/// A's replicas and the policy for calling them, shared by every call B makes.
pub struct Cluster {
    pub(super) replicas: Arc<Replicas>,
    pub(super) patterns: Patterns,
    pub(super) breaker: Option<Mutex<Breaker>>,
    /// Present when retries or hedging are on: both draw on it.
    pub(super) budget: Option<Mutex<RetryBudget>>,
    pub(super) hedge: Option<Mutex<Hedge>>,
    bulkhead: Option<Bulkhead>,
    /// The round-robin position.
    pub(super) next: AtomicUsize,
    pub(super) stats: ClusterStats,
    /// How an attempt reaches a replica: its HTTP client, or a script in unit tests.
    pub(super) exchange: Arc<dyn Exchange>,
    /// What time it is and how to wait: the system's, or a hand-driven one in unit tests.
    pub(super) clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("replicas", &self.replicas)
            .field("patterns", &self.patterns)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Counts for `/metrics`.
#[derive(Debug, Default)]
pub(super) struct ClusterStats {
    pub(super) in_flight: AtomicUsize,
    pub(super) retries: AtomicU64,
    pub(super) hedges: AtomicU64,
    pub(super) hedge_wins: AtomicU64,
    /// Retries and hedges not sent, by [`Refusal`] (indexed by `Refusal as usize`).
    pub(super) refusals: [AtomicU64; Refusal::ALL.len()],
    pub(super) circuit_rejections: AtomicU64,
    pub(super) overloaded: AtomicU64,
    /// Choices of a replica made so far: the balancer's clock for probes (`balance::overdue`).
    pub(super) choices: AtomicU64,
}

/// Why a retry or a hedge the call could use was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The retry budget was spent.
    Budget,
    /// No replica the call may still try has a worker to spare under its adaptive limit
    /// (`AdaptiveLimit::has_spare_room`): the attempt would only wait in a queue inside A.
    Limit,
    /// The breaker is not closed: A as a whole is failing or being probed, and extra attempts
    /// are what keeps a struggling service down.
    Breaker,
}

impl Refusal {
    pub const ALL: [Refusal; 3] = [Refusal::Budget, Refusal::Limit, Refusal::Breaker];

    /// The `reason` label of `echo_lab_upstream_budget_refusals_total`.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Budget => "budget",
            Refusal::Limit => "limit",
            Refusal::Breaker => "breaker",
        }
    }
}

/// A point-in-time copy of everything the cluster knows, for `/metrics`.
#[derive(Debug, Clone)]
pub struct ClusterSnapshot {
    pub replicas: Vec<ReplicaSnapshot>,
    pub in_flight: usize,
    pub breaker: Option<BreakerState>,
    pub breaker_opened: u64,
    pub budget_available: Option<f64>,
    pub retries: u64,
    pub hedges: u64,
    pub hedge_wins: u64,
    /// Retries and hedges not sent, over every reason.
    pub budget_refusals: u64,
    /// The same by reason, in the order of [`Refusal::ALL`].
    pub refusals: [(Refusal, u64); Refusal::ALL.len()],
    pub circuit_rejections: u64,
    pub overloaded: u64,
    /// Whether `--adaptive-limit` is on (each replica's `limit` means something).
    pub adaptive_limit: bool,
}

impl Cluster {
    /// The cluster B runs: attempts go out through each replica's HTTP client, on the
    /// system's clock.
    pub fn new(replicas: Arc<Replicas>, patterns: Patterns) -> Cluster {
        Cluster::with_seams(
            replicas,
            patterns,
            Arc::new(ClientExchange),
            Arc::new(SystemClock),
        )
    }

    /// A cluster whose attempts go through `exchange` and whose time is `clock`'s: how unit
    /// tests run whole calls over scripted replicas without sockets or sleeps.
    pub fn with_seams(
        replicas: Arc<Replicas>,
        patterns: Patterns,
        exchange: Arc<dyn Exchange>,
        clock: Arc<dyn Clock>,
    ) -> Cluster {
        let now = clock.now();
        let budget_config = patterns
            .retries
            .or_else(|| patterns.hedge.map(|_| BudgetConfig::default()));
        Cluster {
            replicas,
            breaker: patterns.breaker.map(|c| Mutex::new(Breaker::new(c))),
            budget: budget_config.map(|c| Mutex::new(RetryBudget::new(c, now))),
            hedge: patterns.hedge.map(|d| Mutex::new(Hedge::new(d))),
            bulkhead: patterns.max_in_flight.map(Bulkhead::new),
            patterns,
            next: AtomicUsize::new(0),
            stats: ClusterStats::default(),
            exchange,
            clock,
        }
    }

    pub fn patterns(&self) -> &Patterns {
        &self.patterns
    }

    /// Whether there is anything to choose: several replicas, or a pattern on. With one
    /// replica and no pattern B calls A exactly as it always has, and its log line stays the
    /// contract's.
    pub fn has_choices(&self) -> bool {
        self.patterns.any() || self.replicas.current().len() > 1
    }

    /// Looks A's names up again every `interval` while B runs (see `replicas.rs`).
    pub fn keep_resolving(&self, interval: Duration) {
        self.replicas.keep_resolving(interval);
    }

    /// Whether replicas that nothing listens at are left out and health-checked
    /// (`health_check.rs`): with ejection, whose job it is to take failing replicas out.
    pub(super) fn checks_health(&self) -> bool {
        self.patterns.ejection.is_some()
    }

    /// Checks unreachable replicas every `health_check::HEALTH_CHECK_INTERVAL` while B runs,
    /// on a thread of its own; nothing to do (and no thread) when ejection is off.
    pub fn keep_checking_health(&self) {
        if self.checks_health() {
            health_check::keep_checking(&self.replicas, self.exchange.clone(), self.clock.clone());
        }
    }

    /// A slot in the bulkhead (none to take when it is off), or `Overloaded`.
    pub(super) fn enter(&self) -> Result<Option<Permit<'_>>, CallError> {
        let Some(bulkhead) = &self.bulkhead else {
            return Ok(None);
        };
        match bulkhead.try_enter() {
            Some(permit) => Ok(Some(permit)),
            None => {
                self.stats.overloaded.fetch_add(1, Ordering::Relaxed);
                Err(CallError::Overloaded {
                    limit: bulkhead.max(),
                })
            }
        }
    }

    /// The breaker's answer for a call starting `now` (always `Call` when it is off). A
    /// refusal is counted, a probe said in the log.
    pub(super) fn admit(&self, now: Instant) -> Admission {
        let admission = match &self.breaker {
            Some(breaker) => lock(breaker).admit(now),
            None => Admission::Call,
        };
        match admission {
            Admission::Reject => {
                self.stats
                    .circuit_rejections
                    .fetch_add(1, Ordering::Relaxed);
            }
            Admission::Probe => {
                log::info!("circuit breaker half-open: this call goes to A as a probe");
            }
            Admission::Call => {}
        }
        admission
    }

    /// A call goes to A: what the retry budget allows grows with it.
    pub(super) fn deposit_in_budget(&self, now: Instant) {
        if let Some(budget) = &self.budget {
            lock(budget).record_request(now);
        }
    }

    /// Tells the breaker how a call it let through went: whether A answered.
    pub(super) fn record_outcome(&self, admission: Admission, answered: bool) {
        let Some(breaker) = &self.breaker else {
            return;
        };
        let now = self.clock.now();
        let mut breaker = lock(breaker);
        let was = breaker.state(now);
        breaker.record(admission, answered, now);
        log_breaker_change(was, breaker.state(now));
    }

    /// The hedge delay now, when hedging is on.
    pub(super) fn hedge_delay(&self) -> Option<Duration> {
        self.hedge.as_ref().map(|hedge| lock(hedge).delay())
    }

    /// Takes one retry or hedge from the budget. False when there is no budget or it is
    /// empty; an empty budget's refusal is counted. Ask only once every free rule has said
    /// yes: a withdrawal is spent even if the attempt is then not sent.
    pub(super) fn withdraw_from_budget(&self, now: Instant) -> bool {
        let Some(budget) = &self.budget else {
            return false;
        };
        let allowed = lock(budget).try_withdraw(now);
        if !allowed {
            self.count_refusal(Refusal::Budget);
        }
        allowed
    }

    /// A retry or hedge was not sent, for `reason`.
    pub(super) fn count_refusal(&self, reason: Refusal) {
        self.stats.refusals[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the breaker is closed (or off): extra attempts are for an A that works.
    pub(super) fn breaker_closed(&self, now: Instant) -> bool {
        self.breaker
            .as_ref()
            .is_none_or(|b| lock(b).state(now) == BreakerState::Closed)
    }

    /// The replicas, looked up now: for a call that found none (A's name does not exist yet
    /// while everything starts). Gives up at `ends`, the instant `deadline` ends on the
    /// cluster's clock.
    pub(super) async fn resolve(
        &self,
        deadline: Deadline,
        ends: Instant,
    ) -> Result<Arc<[Arc<Replica>]>, ClientError> {
        let replicas = self.replicas.clone();
        let lookup = async {
            smol::unblock(move || replicas.resolve())
                .await
                .map_err(ClientError::Connect)
        };
        let timeout = async {
            self.clock.sleep_until(ends).await;
            Err(ClientError::Timeout {
                phase: Phase::Connect,
                budget: deadline.budget(),
                elapsed: deadline.elapsed(),
            })
        };
        lookup.or(timeout).await?;
        let set = self.replicas.current();
        if set.is_empty() {
            let none = io::Error::new(io::ErrorKind::NotFound, "no address for service A");
            return Err(ClientError::Connect(none));
        }
        Ok(set)
    }

    /// Everything the cluster knows now, for `/metrics`.
    pub fn snapshot(&self) -> ClusterSnapshot {
        let now = self.clock.now();
        let stats = &self.stats;
        let count = |n: &AtomicU64| n.load(Ordering::Relaxed);
        let breaker = self.breaker.as_ref().map(|b| lock(b).state(now));
        let breaker_opened = self.breaker.as_ref().map_or(0, |b| lock(b).times_opened());
        ClusterSnapshot {
            replicas: self
                .replicas
                .current()
                .iter()
                .map(|r| r.snapshot(now))
                .collect(),
            in_flight: stats.in_flight.load(Ordering::Relaxed),
            breaker,
            breaker_opened,
            budget_available: self.budget.as_ref().map(|b| lock(b).available(now)),
            retries: count(&stats.retries),
            hedges: count(&stats.hedges),
            hedge_wins: count(&stats.hedge_wins),
            budget_refusals: stats.refusals.iter().map(count).sum(),
            refusals: Refusal::ALL.map(|r| (r, count(&stats.refusals[r as usize]))),
            circuit_rejections: count(&stats.circuit_rejections),
            overloaded: count(&stats.overloaded),
            adaptive_limit: self.patterns.adaptive_limit,
        }
    }

    /// Idle pooled connections over all replicas.
    pub fn idle_connections(&self) -> usize {
        self.replicas
            .current()
            .iter()
            .map(|r| r.client.idle_connections())
            .sum()
    }
}

/// Says so when the breaker opened, closed or opened again after a failed probe, so that a
/// learner sees B decide in its log.
fn log_breaker_change(was: BreakerState, is: BreakerState) {
    match (was, is) {
        (BreakerState::Closed, BreakerState::Open) => {
            log::warn!("circuit breaker open: too many recent calls to A failed; failing fast")
        }
        (BreakerState::HalfOpen, BreakerState::Open) => {
            log::warn!("circuit breaker open again: the probe failed")
        }
        (BreakerState::HalfOpen, BreakerState::Closed) => {
            log::info!("circuit breaker closed: the probe succeeded; calling A again")
        }
        _ => {}
    }
}

/// Counts a call in flight for as long as it lives.
pub(super) struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    pub(super) fn new(count: &'a AtomicUsize) -> InFlight<'a> {
        count.fetch_add(1, Ordering::Relaxed);
        InFlight(count)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
