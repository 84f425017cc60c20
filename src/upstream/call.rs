//! One call to "service A", as one value: the replicas it may choose among, the ones it has
//! tried, the attempts still running, the hedge timer, what it sends and its deadline.
//! [`Call::run`] tells its story in order: bulkhead, breaker, choose, attempt, classify,
//! retry or hedge, record.
//!
//! The call reaches the world through two seams, both held by the cluster: an [`Exchange`]
//! ("send this GET to this replica under this deadline") and a [`Clock`] ("what time is it",
//! "wake me at this instant"). B uses each replica's HTTP client and the system's clock; the
//! unit tests in `call/tests.rs` run whole calls over scripted replicas on a clock they move
//! by hand, so that the way the patterns compose (a retry after a failed hedge, a probe that
//! is a single attempt, the budget asked last) is tested without sockets or sleeps.
//!
//! Prior art: Finagle's and Envoy's router filters, which likewise keep one request's
//! attempts, hedge timer and per-try deadline together while the policies live beside them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::{Duration, Instant};

use async_io::Timer;
use futures_lite::future;

use super::balance::pick_two;
use super::breaker::Admission;
use super::cluster::{Cluster, InFlight};
use super::deadline;
use super::outlier::may_eject;
use super::replicas::{AttemptEnd, Replica};
use super::{Balance, CallError, CallReport, lock};
use crate::http::client::{ClientError, ClientResponse, Deadline};
use crate::http::trace;
use crate::random;

/// Most attempts one call makes, hedges included: the first and two more. With every replica
/// failing a fifth of the time, three attempts succeed 99.2 % of the time for 1.24× the load
/// (1 + 0.2 + 0.04); a fourth would add 0.16 % for more load on an A that may be struggling.
pub const MAX_ATTEMPTS: usize = 3;

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

/// What an attempt's exchange resolves to: the response, or how it failed.
pub type Exchanged = Result<ClientResponse, ClientError>;

/// An exchange under way.
pub type Sending = Pin<Box<dyn Future<Output = Exchanged> + Send>>;

/// A wait until an instant.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The request of one attempt: `GET target` with these header fields, before `deadline`.
#[derive(Debug, Clone)]
pub struct Get {
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub deadline: Deadline,
}

/// How an attempt reaches a replica.
pub trait Exchange: Send + Sync {
    /// Sends `get` to `replica` and reads its whole response, all before `get.deadline`.
    fn send(&self, replica: Arc<Replica>, get: Get) -> Sending;
}

/// What time it is, and how to wait for a time: every instant a call uses comes from here.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
    /// A future that is ready once `at` has come.
    fn sleep_until(&self, at: Instant) -> Sleep;
}

/// The exchange B uses: the replica's own HTTP client with its pool.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientExchange;

impl Exchange for ClientExchange {
    fn send(&self, replica: Arc<Replica>, get: Get) -> Sending {
        Box::pin(async move {
            let headers: Vec<(&str, &str)> = get
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            replica
                .client
                .get(&get.target, &headers, get.deadline)
                .await
        })
    }
}

/// The clock B uses: `Instant::now()` and `async_io`'s timers.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep_until(&self, at: Instant) -> Sleep {
        Box::pin(async move {
            Timer::at(at).await;
        })
    }
}

/// How an attempt's result counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// An answer to pass on: any status below 500 (a 4xx is A working, and the same request
    /// would get it again).
    Answer,
    /// A failure another attempt may cure: no connection, a timeout, a connection closed
    /// early, or a 5xx. GET is idempotent (RFC 9110 §9.2.2), so sending it again is safe.
    Retryable,
    /// A failure to pass on as it is: a response that is not valid HTTP will not improve.
    Final,
}

impl Verdict {
    /// The rule for answers, written once: A answered when its status is below 500.
    pub(super) fn of_status(status: u16) -> Verdict {
        if status < 500 {
            Verdict::Answer
        } else {
            Verdict::Retryable
        }
    }

    /// How an attempt's result (or a whole call's, for the breaker) counts.
    pub(super) fn of(result: &Exchanged) -> Verdict {
        match result {
            Ok(response) => Verdict::of_status(response.head.status),
            Err(ClientError::BadResponse(_)) => Verdict::Final,
            Err(_) => Verdict::Retryable,
        }
    }
}

/// Why an attempt was sent, for the wire trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    First,
    Retry,
    Hedge,
}

/// One attempt in flight on one replica.
struct Attempt<'a> {
    replica: Arc<Replica>,
    /// 1 for the first attempt of a call, then 2, 3.
    number: usize,
    started: Instant,
    is_hedge: bool,
    /// Set once its result is recorded; an attempt dropped before that was given up (the
    /// other attempt won), and its `Drop` says so to the replica's statistics.
    recorded: bool,
    exchange: Sending,
    clock: &'a dyn Clock,
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.recorded {
            // The replica was at least this slow: the load estimate may learn that much.
            let now = self.clock.now();
            let elapsed = now - self.started;
            self.replica.end(AttemptEnd::Cancelled, elapsed, now, None);
        }
    }
}

/// What the call waits for next.
enum Event {
    /// Attempt `i` of the running ones finished.
    Finished(usize, Exchanged),
    /// The hedge delay passed with no answer yet.
    HedgeDue,
}

/// One call to A: its request, its deadline and everything it has done so far.
pub(super) struct Call<'a> {
    cluster: &'a Cluster,
    target: &'a str,
    headers: &'a [(&'a str, &'a str)],
    /// The call's deadline, as the HTTP client takes it.
    deadline: Deadline,
    /// The same deadline as an instant of the cluster's clock, for the call's own decisions.
    ends: Instant,
    /// What the breaker said (step 2); an ordinary call until then.
    admission: Admission,
    /// The replicas as the call found them (looked up in step 3 if there were none yet);
    /// `tried` and the choices index into it.
    set: Arc<[Arc<Replica>]>,
    tried: Vec<usize>,
    running: Vec<Attempt<'a>>,
    /// Armed after the first attempt when hedging is on and the call is not a probe.
    hedge_timer: Option<Sleep>,
    report: CallReport,
}

impl<'a> Call<'a> {
    pub(super) fn new(
        cluster: &'a Cluster,
        target: &'a str,
        headers: &'a [(&'a str, &'a str)],
        deadline: Deadline,
    ) -> Call<'a> {
        Call {
            cluster,
            target,
            headers,
            deadline,
            ends: cluster.clock.now() + deadline.remaining(),
            admission: Admission::Call,
            set: cluster.replicas.current(),
            // Room is made once the call goes to A: a refused call allocates nothing.
            tried: Vec::new(),
            running: Vec::new(),
            hedge_timer: None,
            report: CallReport::default(),
        }
    }

    /// Sends `GET target` to A and returns the response to pass on: the story of one call.
    pub(super) async fn run(mut self) -> (Result<ClientResponse, CallError>, CallReport) {
        let cluster = self.cluster;
        // 1. The bulkhead: past its size, answer at once rather than queue behind A.
        let _permit = match cluster.enter() {
            Ok(permit) => permit,
            Err(refused) => return (Err(refused), self.report),
        };
        let _in_flight = InFlight::new(&cluster.stats.in_flight);
        // 2. The breaker: while A keeps failing, answer at once; now and then, one probe.
        let now = cluster.clock.now();
        self.admission = cluster.admit(now);
        if self.admission == Admission::Reject {
            return (Err(CallError::CircuitOpen), self.report);
        }
        cluster.deposit_in_budget(now);
        // 3. The attempts: choose, attempt, classify, retry or hedge.
        let result = self.attempts().await;
        // 4. Record the call's outcome, as the breaker sees A as a whole.
        let answered = Verdict::of(&result) == Verdict::Answer;
        cluster.record_outcome(self.admission, answered);
        (result.map_err(CallError::Client), self.report)
    }

    /// Attempts until one gives an answer, the failures are final, or time, attempts or
    /// budget run out. A probe of the breaker is a single attempt.
    async fn attempts(&mut self) -> Exchanged {
        if self.set.is_empty() {
            self.set = self.cluster.resolve(self.deadline, self.ends).await?;
        }
        self.tried.reserve_exact(MAX_ATTEMPTS);
        self.running.reserve_exact(2); // the first attempt and its hedge
        self.launch(Reason::First);
        self.arm_hedge_timer();
        loop {
            match next_event(&mut self.running, &mut self.hedge_timer).await {
                Event::HedgeDue => {
                    // Once per call: the first attempt is slower than most answers are.
                    self.hedge_timer = None;
                    self.hedge();
                }
                Event::Finished(i, result) => {
                    let mut attempt = self.running.swap_remove(i);
                    let verdict = Verdict::of(&result);
                    self.record(&mut attempt, verdict);
                    if verdict != Verdict::Retryable {
                        if attempt.is_hedge && verdict == Verdict::Answer {
                            self.cluster
                                .stats
                                .hedge_wins
                                .fetch_add(1, Ordering::Relaxed);
                        }
                        self.cancel_the_rest();
                        return result;
                    }
                    if !self.running.is_empty() {
                        continue; // the other attempt may still answer
                    }
                    if !self.retry() {
                        return result;
                    }
                }
            }
        }
    }

    /// A probe is the breaker's question "is A back?": one attempt, no hedge, no retry.
    fn is_probe(&self) -> bool {
        self.admission == Admission::Probe
    }

    /// Starts the hedge timer, when hedging is on and this call is not a probe.
    fn arm_hedge_timer(&mut self) {
        if self.is_probe() {
            return;
        }
        if let Some(delay) = self.cluster.hedge_delay() {
            let clock = &self.cluster.clock;
            self.hedge_timer = Some(clock.sleep_until(clock.now() + delay));
        }
    }

    /// The hedge delay passed: a second attempt beside the first, if the rules allow one.
    fn hedge(&mut self) {
        let now = self.cluster.clock.now();
        if self.room_for_another(now) && self.cluster.withdraw_from_budget(now) {
            self.cluster.stats.hedges.fetch_add(1, Ordering::Relaxed);
            self.launch(Reason::Hedge);
        }
    }

    /// Every attempt failed and none is running: another, if retries are on, this is no
    /// probe, the rules allow one and the budget has it. Returns whether one went out.
    fn retry(&mut self) -> bool {
        let now = self.cluster.clock.now();
        let retries_on = self.cluster.patterns.retries.is_some();
        // The budget is asked last: asking spends.
        let sent = retries_on
            && !self.is_probe()
            && self.room_for_another(now)
            && self.cluster.withdraw_from_budget(now);
        if sent {
            self.cluster.stats.retries.fetch_add(1, Ordering::Relaxed);
            self.launch(Reason::Retry);
        }
        sent
    }

    /// Whether the free rules leave room for one more attempt at `now`: fewer than
    /// [`MAX_ATTEMPTS`] so far, and time enough left. Spends nothing.
    fn room_for_another(&self, now: Instant) -> bool {
        self.tried.len() < MAX_ATTEMPTS
            && self.ends.saturating_duration_since(now) >= MIN_ATTEMPT_TIME
    }

    /// Starts an attempt on a replica chosen among those not tried yet.
    fn launch(&mut self, reason: Reason) {
        let cluster = self.cluster;
        let now = cluster.clock.now();
        let chosen = self.choose(now);
        self.tried.push(chosen);
        let replica = self.set[chosen].clone();
        let (attempt_deadline, attempt_ends) = match cluster.patterns.attempt_timeout {
            Some(limit) => (self.deadline.within(limit), self.ends.min(now + limit)),
            None => (self.deadline, self.ends),
        };
        let mut headers: Vec<(String, String)> = self
            .headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        if cluster.patterns.propagate_deadline {
            let left = attempt_ends.saturating_duration_since(now) + PROPAGATION_SLACK;
            headers.push((
                deadline::HEADER.to_owned(),
                deadline::format_remaining(left),
            ));
        }
        let number = self.tried.len();
        if trace::enabled() {
            let to = replica.address;
            log::info!(target: "wire", "attempt {number} ({reason:?}) to replica {to}");
        }
        replica.begin(now);
        let get = Get {
            target: self.target.to_owned(),
            headers,
            deadline: attempt_deadline,
        };
        let exchange = cluster.exchange.send(replica.clone(), get);
        self.running.push(Attempt {
            replica,
            number,
            started: now,
            is_hedge: reason == Reason::Hedge,
            recorded: false,
            exchange,
            clock: &*cluster.clock,
        });
    }

    /// The replica for the next attempt. Candidates, in order of preference: not tried yet
    /// and in rotation; in rotation; not tried yet; any (one replica: the same again).
    fn choose(&self, now: Instant) -> usize {
        let (set, tried) = (&self.set, &self.tried);
        let patterns = &self.cluster.patterns;
        let ejection = patterns.ejection.is_some();
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
        match patterns.balance {
            Balance::RoundRobin => {
                let turn = self.cluster.next.fetch_add(1, Ordering::Relaxed);
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

    /// Teaches the replica's statistics, the ejection rule and the hedge delay what one
    /// attempt did, and makes it the one the call's report names.
    fn record(&mut self, attempt: &mut Attempt<'_>, verdict: Verdict) {
        attempt.recorded = true;
        self.report.replica = Some(attempt.replica.address);
        self.report.attempt = attempt.number;
        let cluster = self.cluster;
        let now = cluster.clock.now();
        let elapsed = now - attempt.started;
        let (end, latency) = match verdict {
            Verdict::Answer => (AttemptEnd::Succeeded, elapsed),
            _ => (AttemptEnd::Failed, elapsed.max(FAILURE_PENALTY)),
        };
        let set = &self.set;
        let ejected_now = || set.iter().filter(|r| r.is_ejected(now)).count();
        let ejection = cluster
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
        if let (Some(hedge), AttemptEnd::Succeeded) = (&cluster.hedge, end) {
            lock(hedge).record(elapsed);
        }
    }

    /// Gives up the attempts still running, once the call has its result: each is recorded
    /// as cancelled, and its connection closed rather than pooled mid-response.
    fn cancel_the_rest(&mut self) {
        self.running.clear();
        self.hedge_timer = None;
    }
}

/// Waits until a running attempt finishes or the hedge timer fires.
async fn next_event(running: &mut [Attempt<'_>], hedge_timer: &mut Option<Sleep>) -> Event {
    future::poll_fn(|cx| {
        for (i, attempt) in running.iter_mut().enumerate() {
            if let Poll::Ready(result) = attempt.exchange.as_mut().poll(cx) {
                return Poll::Ready(Event::Finished(i, result));
            }
        }
        if let Some(timer) = hedge_timer
            && timer.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Event::HedgeDue);
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests;
