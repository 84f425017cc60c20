//! B's calling policy over A's replicas: how one call to "service A" becomes attempts on
//! replicas, which answer B passes on, and which replicas B stops trusting.
//!
//! ```text
//!  call ─► bulkhead ─► breaker ─► choose ─► attempt ─► classify ─┬─► answer
//!  (overloaded)   (circuit_open)    ▲         │ hedge timer       │
//!                                   │         └─► a second attempt┤ the first good answer wins
//!                                   └───── retry, if the budget ◄─┘ a failure, and time left
//! ```
//!
//! Each pattern is a plain data structure in a file of its own that takes the time as an
//! argument and never sleeps; this file owns the timers and tells the story of one call in
//! `Cluster::call`. Every pattern is off unless switched on (`Patterns::default()`): B then
//! makes exactly one attempt per call, on the only replica or the next in turn, as it always
//! has. `http::client` stays a client for one address with its pool; it knows none of this.
//!
//! | file | pattern | prior art |
//! | --- | --- | --- |
//! | `replicas.rs` | the set of replicas, re-resolved | Envoy's `STRICT_DNS` clusters |
//! | `balance.rs` | power of two choices over peak EWMA | Finagle's and Linkerd's balancers |
//! | `outlier.rs` | eject after consecutive failures | Envoy's outlier detection |
//! | `breaker.rs` | fail fast while A as a whole fails | Hystrix, resilience4j, Finagle's `FailFast` |
//! | `budget.rs` | retries within a budget | Finagle's `RetryBudget`, Linkerd's retry budget |
//! | `hedge.rs` | a second attempt for the slow tail | "The Tail at Scale", gRPC hedging |
//! | `bulkhead.rs` | a cap on calls in flight | Hystrix's semaphore isolation |
//! | `deadline.rs` | tell A how long B will wait | gRPC's `grpc-timeout`, Envoy's expected timeout |

pub mod balance;
pub mod breaker;
pub mod budget;
pub mod bulkhead;
pub mod deadline;
pub mod hedge;
pub mod limit;
pub mod outlier;
pub mod replicas;

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::{Duration, Instant};

use async_io::Timer;
use futures_lite::{FutureExt, future};

use crate::http::client::{ClientError, ClientResponse, Deadline, Phase};
use crate::http::trace;
use crate::random;
use balance::pick_two;
use breaker::{Admission, Breaker, BreakerConfig, BreakerState};
use budget::{BudgetConfig, RetryBudget};
use bulkhead::{Bulkhead, Permit};
use hedge::{Hedge, HedgeDelay};
use outlier::{OutlierConfig, may_eject};
use replicas::{AttemptEnd, Replica, ReplicaSnapshot, Replicas};

/// Most attempts one call makes, hedges included: the first and two more. With every replica
/// failing a fifth of the time, three attempts succeed 99.2 % of the time for 1.24× the load
/// (1 + 0.2 + 0.04); a fourth would add 0.16 % for more load on an A that may be struggling.
pub const MAX_ATTEMPTS: usize = 3;

/// With `--resilient`, an attempt gets a third of the call's deadline, so that a replica that
/// swallows requests still leaves time for two more attempts elsewhere (Envoy's
/// `per_try_timeout`). A hedge usually goes out long before.
pub const ATTEMPTS_PER_DEADLINE: u32 = 3;

/// Below this much time left, another attempt could not even connect: give up instead.
const MIN_ATTEMPT_TIME: Duration = Duration::from_millis(2);

/// With `--propagate-deadline`, B tells A this much more than it will itself wait, so that B's
/// own timer, not A's "abandoned" `503`, ends a call that runs out of time: B then reports the
/// `timeout` it measured, whatever the scheduling of two busy processes. A works these 10 ms for
/// nobody, the price of an answer that does not depend on which timer the machine runs first.
const PROPAGATION_SLACK: Duration = Duration::from_millis(10);

/// A failed attempt is taught to the load estimate as taking at least this long. A refused
/// connection "answers" in microseconds; a balancer that learned only that would find the
/// dead replica the fastest of all and send it ever more calls.
const FAILURE_PENALTY: Duration = Duration::from_millis(100);

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

/// A's replicas and the policy for calling them, shared by every call B makes.
#[derive(Debug)]
pub struct Cluster {
    replicas: Arc<Replicas>,
    patterns: Patterns,
    breaker: Option<Mutex<Breaker>>,
    /// Present when retries or hedging are on: both draw on it.
    budget: Option<Mutex<RetryBudget>>,
    hedge: Option<Mutex<Hedge>>,
    bulkhead: Option<Bulkhead>,
    /// The round-robin position.
    next: AtomicUsize,
    stats: ClusterStats,
}

/// Counts for `/metrics`.
#[derive(Debug, Default)]
struct ClusterStats {
    in_flight: AtomicUsize,
    retries: AtomicU64,
    hedges: AtomicU64,
    hedge_wins: AtomicU64,
    budget_refusals: AtomicU64,
    circuit_rejections: AtomicU64,
    overloaded: AtomicU64,
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
    pub budget_refusals: u64,
    pub circuit_rejections: u64,
    pub overloaded: u64,
}

/// How an attempt's result counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// An answer to pass on: any status below 500 (a 4xx is A working, and the same request
    /// would get it again).
    Answer,
    /// A failure another attempt may cure: no connection, a timeout, a connection closed
    /// early, or a 5xx. GET is idempotent (RFC 9110 §9.2.2), so sending it again is safe.
    Retryable,
    /// A failure to pass on as it is: a response that is not valid HTTP will not improve.
    Final,
}

fn classify(result: &Result<ClientResponse, ClientError>) -> Verdict {
    match result {
        Ok(response) if response.head.status >= 500 => Verdict::Retryable,
        Ok(_) => Verdict::Answer,
        Err(ClientError::BadResponse(_)) => Verdict::Final,
        Err(_) => Verdict::Retryable,
    }
}

/// Why an attempt was sent, for the wire trace.
#[derive(Debug, Clone, Copy)]
enum Reason {
    First,
    Retry,
    Hedge,
}

/// One attempt in flight on one replica.
struct Attempt {
    replica: Arc<Replica>,
    /// 1 for the first attempt of a call, then 2, 3.
    number: usize,
    started: Instant,
    is_hedge: bool,
    /// Set once its result is recorded; an attempt dropped before that was given up (the
    /// other attempt won), and its `Drop` says so to the replica's statistics.
    recorded: bool,
    exchange: Pin<Box<dyn Future<Output = Result<ClientResponse, ClientError>> + Send>>,
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.recorded {
            // The replica was at least this slow: the load estimate may learn that much.
            let now = Instant::now();
            let elapsed = now - self.started;
            self.replica.end(AttemptEnd::Cancelled, elapsed, now, None);
        }
    }
}

/// What the call waits for next.
enum Event {
    /// Attempt `i` of the running ones finished.
    Finished(usize, Result<ClientResponse, ClientError>),
    /// The hedge delay passed with no answer yet.
    HedgeDue,
}

impl Cluster {
    pub fn new(replicas: Arc<Replicas>, patterns: Patterns) -> Cluster {
        let now = Instant::now();
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

    /// Sends `GET target` to A and returns the response to pass on: the story of one call.
    pub async fn call(
        &self,
        target: &str,
        headers: &[(&str, &str)],
        deadline: Deadline,
    ) -> (Result<ClientResponse, CallError>, CallReport) {
        let mut report = CallReport::default();
        // 1. The bulkhead: past its size, answer at once rather than queue behind A.
        let _permit = match self.enter() {
            Ok(permit) => permit,
            Err(refused) => return (Err(refused), report),
        };
        let _in_flight = InFlight::new(&self.stats.in_flight);
        // 2. The breaker: while A keeps failing, answer at once; now and then, one probe.
        let admission = self.admit(Instant::now());
        if admission == Admission::Reject {
            self.stats
                .circuit_rejections
                .fetch_add(1, Ordering::Relaxed);
            return (Err(CallError::CircuitOpen), report);
        }
        if let Some(budget) = &self.budget {
            lock(budget).record_request(Instant::now());
        }
        // 3. The attempts: choose, send, classify, retry or hedge.
        let result = self
            .attempts(target, headers, deadline, admission, &mut report)
            .await;
        // 4. The call's outcome, as the breaker sees A as a whole.
        let answered = matches!(&result, Ok(r) if r.head.status < 500);
        if let Some(breaker) = &self.breaker {
            let now = Instant::now();
            let mut breaker = lock(breaker);
            let was = breaker.state(now);
            breaker.record(admission, answered, now);
            log_breaker_change(was, breaker.state(now));
        }
        (result.map_err(CallError::Client), report)
    }

    /// Attempts until one gives an answer, the failures are final, or time, attempts or
    /// budget run out. A probe of the breaker is a single attempt.
    async fn attempts(
        &self,
        target: &str,
        headers: &[(&str, &str)],
        deadline: Deadline,
        admission: Admission,
        report: &mut CallReport,
    ) -> Result<ClientResponse, ClientError> {
        let set = self.current_replicas(deadline).await?;
        let single = admission == Admission::Probe;
        let mut tried: Vec<usize> = Vec::with_capacity(MAX_ATTEMPTS);
        let mut running: Vec<Attempt> = Vec::with_capacity(2);
        running.push(self.launch(&set, &mut tried, Reason::First, target, headers, deadline));
        let mut hedge_timer = match (&self.hedge, single) {
            (Some(hedge), false) => Some(Timer::after(lock(hedge).delay())),
            _ => None,
        };
        loop {
            match next_event(&mut running, &mut hedge_timer).await {
                Event::HedgeDue => {
                    // Once per call: the first attempt is slower than most answers are.
                    hedge_timer = None;
                    if self.may_send_another(&tried, deadline) {
                        self.stats.hedges.fetch_add(1, Ordering::Relaxed);
                        let hedge =
                            self.launch(&set, &mut tried, Reason::Hedge, target, headers, deadline);
                        running.push(hedge);
                    }
                }
                Event::Finished(i, result) => {
                    let mut attempt = running.swap_remove(i);
                    let verdict = classify(&result);
                    self.record(&set, &mut attempt, verdict);
                    report.replica = Some(attempt.replica.address);
                    report.attempt = attempt.number;
                    if verdict != Verdict::Retryable {
                        if attempt.is_hedge && verdict == Verdict::Answer {
                            self.stats.hedge_wins.fetch_add(1, Ordering::Relaxed);
                        }
                        // Returning drops the other attempt, if any: cancelled, and its
                        // connection closed rather than pooled mid-response.
                        return result;
                    }
                    if !running.is_empty() {
                        continue; // the other attempt may still answer
                    }
                    let retry = self.patterns.retries.is_some() && !single;
                    if !(retry && self.may_send_another(&tried, deadline)) {
                        return result;
                    }
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    let again =
                        self.launch(&set, &mut tried, Reason::Retry, target, headers, deadline);
                    running.push(again);
                }
            }
        }
    }

    /// Starts an attempt on a replica chosen among those not tried yet.
    fn launch(
        &self,
        set: &[Arc<Replica>],
        tried: &mut Vec<usize>,
        reason: Reason,
        target: &str,
        headers: &[(&str, &str)],
        deadline: Deadline,
    ) -> Attempt {
        let now = Instant::now();
        let chosen = self.choose(set, tried, now);
        tried.push(chosen);
        let replica = set[chosen].clone();
        let attempt_deadline = match self.patterns.attempt_timeout {
            Some(limit) => deadline.within(limit),
            None => deadline,
        };
        let mut owned: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        if self.patterns.propagate_deadline {
            let left = deadline::format_remaining(attempt_deadline.remaining() + PROPAGATION_SLACK);
            owned.push((deadline::HEADER.to_owned(), left));
        }
        if trace::enabled() {
            let n = tried.len();
            let to = replica.address;
            log::info!(target: "wire", "attempt {n} ({reason:?}) to replica {to}");
        }
        replica.begin(now);
        let target = target.to_owned();
        let on = replica.clone();
        let exchange = async move {
            let headers: Vec<(&str, &str)> = owned
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            on.client.get(&target, &headers, attempt_deadline).await
        };
        Attempt {
            replica,
            number: tried.len(),
            started: now,
            is_hedge: matches!(reason, Reason::Hedge),
            recorded: false,
            exchange: Box::pin(exchange),
        }
    }

    /// The replica for the next attempt. Candidates, in order of preference: not tried yet
    /// and in rotation; in rotation; not tried yet; any (one replica: the same again).
    fn choose(&self, set: &[Arc<Replica>], tried: &[usize], now: Instant) -> usize {
        let ejection = self.patterns.ejection.is_some();
        let in_rotation = |i: usize| !ejection || !set[i].is_ejected(now);
        let fresh = |i: usize| !tried.contains(&i);
        let tiers: [&dyn Fn(usize) -> bool; 4] = [
            &|i| fresh(i) && in_rotation(i),
            &in_rotation,
            &fresh,
            &|_| true,
        ];
        let candidates = tiers
            .iter()
            .map(|keep| (0..set.len()).filter(|&i| keep(i)).collect::<Vec<_>>())
            .find(|c| !c.is_empty())
            .unwrap_or_default();
        match self.patterns.balance {
            Balance::RoundRobin => {
                let turn = self.next.fetch_add(1, Ordering::Relaxed);
                candidates
                    .get(turn % candidates.len().max(1))
                    .copied()
                    .unwrap_or(0)
            }
            Balance::PeakEwma => {
                pick_two(&candidates, |i| set[i].cost(now), random::unit).unwrap_or(0)
            }
        }
    }

    /// Whether one more attempt may go out: fewer than the most, time left, and the budget
    /// allows it (asked last: asking spends).
    fn may_send_another(&self, tried: &[usize], deadline: Deadline) -> bool {
        if tried.len() >= MAX_ATTEMPTS || deadline.remaining() < MIN_ATTEMPT_TIME {
            return false;
        }
        let Some(budget) = &self.budget else {
            return false;
        };
        let allowed = lock(budget).try_withdraw(Instant::now());
        if !allowed {
            self.stats.budget_refusals.fetch_add(1, Ordering::Relaxed);
        }
        allowed
    }

    /// Teaches the replica's statistics, the ejection rule and the hedge delay what one
    /// attempt did.
    fn record(&self, set: &[Arc<Replica>], attempt: &mut Attempt, verdict: Verdict) {
        attempt.recorded = true;
        let now = Instant::now();
        let elapsed = now - attempt.started;
        let (end, latency) = match verdict {
            Verdict::Answer => (AttemptEnd::Succeeded, elapsed),
            _ => (AttemptEnd::Failed, elapsed.max(FAILURE_PENALTY)),
        };
        let ejected_now = || set.iter().filter(|r| r.is_ejected(now)).count();
        let ejection = self
            .patterns
            .ejection
            .as_ref()
            .map(|config| (config, may_eject(ejected_now(), set.len())));
        if attempt.replica.end(end, latency, now, ejection) {
            log::warn!(
                "service A replica {} ejected after consecutive failures",
                attempt.replica.address
            );
        }
        if let (Some(hedge), AttemptEnd::Succeeded) = (&self.hedge, end) {
            lock(hedge).record(elapsed);
        }
    }

    fn enter(&self) -> Result<Option<Permit<'_>>, CallError> {
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

    fn admit(&self, now: Instant) -> Admission {
        let admission = match &self.breaker {
            Some(breaker) => lock(breaker).admit(now),
            None => Admission::Call,
        };
        if admission == Admission::Probe {
            log::info!("circuit breaker half-open: this call goes to A as a probe");
        }
        admission
    }

    /// The replicas now. When names have not resolved to anything yet (A's name does not
    /// exist yet while everything starts), looks them up now, within the deadline.
    async fn current_replicas(
        &self,
        deadline: Deadline,
    ) -> Result<Arc<[Arc<Replica>]>, ClientError> {
        let set = self.replicas.current();
        if !set.is_empty() {
            return Ok(set);
        }
        let replicas = self.replicas.clone();
        let lookup = async {
            smol::unblock(move || replicas.resolve())
                .await
                .map_err(ClientError::Connect)
        };
        let timeout = async {
            Timer::after(deadline.remaining()).await;
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
        let now = Instant::now();
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
            budget_refusals: count(&stats.budget_refusals),
            circuit_rejections: count(&stats.circuit_rejections),
            overloaded: count(&stats.overloaded),
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

/// Waits until a running attempt finishes or the hedge timer fires.
async fn next_event(running: &mut [Attempt], hedge_timer: &mut Option<Timer>) -> Event {
    future::poll_fn(|cx| {
        for (i, attempt) in running.iter_mut().enumerate() {
            if let Poll::Ready(result) = attempt.exchange.as_mut().poll(cx) {
                return Poll::Ready(Event::Finished(i, result));
            }
        }
        if let Some(timer) = hedge_timer
            && Pin::new(timer).poll(cx).is_ready()
        {
            return Poll::Ready(Event::HedgeDue);
        }
        Poll::Pending
    })
    .await
}

/// Counts a call in flight for as long as it lives.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn new(count: &'a AtomicUsize) -> InFlight<'a> {
        count.fetch_add(1, Ordering::Relaxed);
        InFlight(count)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A policy's lock. Policies are plain numbers that every update leaves consistent, so a
/// panic elsewhere while one was held leaves nothing half-done: use it anyway.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
