//! One call to "service A", as one value: the replicas it may choose among, the ones it has
//! tried, the attempts still running, the hedge timer, what it sends and its deadline.
//! `Call::run` tells its story in order: bulkhead, limit, breaker, choose, attempt, classify,
//! retry or hedge, record.
//!
//! The call reaches the world through two seams, both held by the cluster: an [`Exchange`]
//! ("send this GET to this replica under this deadline") and a [`Clock`] ("what time is it",
//! "wake me at this instant"). B uses each replica's HTTP client and the system's clock; the
//! unit tests in `call/tests.rs` run whole calls over scripted replicas on a clock they move
//! by hand, so that the way the patterns compose (a retry after a failed hedge, a probe that
//! is a single attempt, the budget asked last) is tested without sockets or sleeps.
//!
//! Prior art: Envoy's router filter, which likewise keeps one request's upstream attempts,
//! hedge and per-try timeout together, while the cluster's policies live beside it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_lite::future;

use super::balance::{
    FAILING_PROBE_EVERY, FAILING_PROBE_INTERVAL, PROBE_EVERY, by_share, overdue, pick_two,
    probe_due_by_time,
};
use super::breaker::Admission;
use super::cluster::{Cluster, InFlight, Refusal};
use super::deadline;
use super::exchange::{Clock, Exchanged, Get, Sending, Sleep};
use super::limit::{self, Token};
use super::lock::lock;
use super::outcome::{CallError, CallReport};
use super::outlier::may_eject;
use super::patterns::Balance;
use super::replicas::{AttemptEnd, Replica, peers_median};
use crate::http::Deadline;
use crate::http::client::{ClientError, ClientResponse};
use crate::http::wire_trace;
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

/// The door to a call, on the cluster every call shares (here, beside the story it starts,
/// so that `cluster.rs` needs nothing of `Call`).
impl Cluster {
    /// Sends `GET target` to A and returns the response to pass on: the story of one call,
    /// told in `call.rs` by `Call::run`.
    pub async fn call(
        &self,
        target: &str,
        headers: &[(&str, &str)],
        deadline: Deadline,
    ) -> (Result<ClientResponse, CallError>, CallReport) {
        Call::new(self, target, headers, deadline).run().await
    }
}

/// What an attempt's result teaches the replica's adaptive limit: an answer is a latency
/// sample; a timeout, or A saying it gave the work up (`503`), is a drop; anything else (a
/// refused connection, a broken response, another 5xx) says nothing of its load.
fn limit_outcome(result: &Exchanged) -> limit::Outcome {
    match result {
        Ok(response) if response.head.status == 503 => limit::Outcome::Dropped,
        Ok(response) if Verdict::of_status(response.head.status) == Verdict::Answer => {
            limit::Outcome::Answered
        }
        Err(ClientError::Timeout { .. }) => limit::Outcome::Dropped,
        _ => limit::Outcome::Ignored,
    }
}

/// How an attempt ended, as the replica's statistics see it: an answer; no connection at
/// all (nothing listens there: `health_check.rs`); or another failure.
fn attempt_end(result: &Exchanged) -> AttemptEnd {
    match (Verdict::of(result), result) {
        (Verdict::Answer, _) => AttemptEnd::Succeeded,
        (_, Err(ClientError::Connect(_))) => AttemptEnd::Unreachable,
        _ => AttemptEnd::Failed,
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

/// Why an attempt was sent: for the wire trace, and for the room it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    First,
    Retry,
    Hedge,
}

impl Reason {
    /// Whether the call adds this attempt of its own accord: it then needs spare room under
    /// the replica's adaptive limit, not only room (`AdaptiveLimit::has_spare_room`).
    fn is_extra(self) -> bool {
        self != Reason::First
    }
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
    /// Its slot under the replica's adaptive limit, when that is on.
    token: Option<Token>,
    exchange: Sending,
    clock: &'a dyn Clock,
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let now = self.clock.now();
        if let Some(token) = self.token.take() {
            // Given up, or recorded without a verdict the limit learns from: the slot only.
            self.replica.release(token, limit::Outcome::Ignored, now);
        }
        if !self.recorded {
            // The replica was at least this slow: the load estimate may learn that much.
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
        let now = cluster.clock.now();
        // 2. The adaptive limit: when every replica has all it can work on, answer at once
        //    rather than queue inside A (and before the breaker: no probe is spent on it).
        if !self.room_under_a_limit(now) {
            cluster.stats.overloaded.fetch_add(1, Ordering::Relaxed);
            return (Err(CallError::LimitReached), self.report);
        }
        // 3. The breaker: while A keeps failing, answer at once; now and then, one probe.
        self.admission = cluster.admit(now);
        if self.admission == Admission::Reject {
            return (Err(CallError::CircuitOpen), self.report);
        }
        cluster.deposit_in_budget(now);
        // 4. The attempts: choose, attempt, classify, retry or hedge.
        let Some(result) = self.attempts().await else {
            // Another call took the last slot between step 2 and the choice: nothing was
            // sent, so the breaker learns nothing (a probe lost this way times out there).
            cluster.stats.overloaded.fetch_add(1, Ordering::Relaxed);
            return (Err(CallError::LimitReached), self.report);
        };
        // 5. Record the call's outcome, as the breaker sees A as a whole.
        let answered = Verdict::of(&result) == Verdict::Answer;
        cluster.record_outcome(self.admission, answered);
        (result.map_err(CallError::Client), self.report)
    }

    /// Whether some replica has room under its adaptive limit (always, when that is off, or
    /// while the replicas are not known yet).
    fn room_under_a_limit(&self, now: Instant) -> bool {
        !self.cluster.patterns.adaptive_limit
            || self.set.is_empty()
            || self.set.iter().any(|r| r.has_room(now))
    }

    /// Attempts until one gives an answer, the failures are final, or time, attempts or
    /// budget run out. A probe of the breaker is a single attempt. `None` when no replica
    /// had room under its limit for the first attempt.
    async fn attempts(&mut self) -> Option<Exchanged> {
        if self.set.is_empty() {
            match self.cluster.resolve(self.deadline, self.ends).await {
                Ok(set) => self.set = set,
                Err(e) => return Some(Err(e)),
            }
        }
        self.tried.reserve_exact(MAX_ATTEMPTS);
        self.running.reserve_exact(2); // the first attempt and its hedge
        if !self.launch(Reason::First) {
            return None;
        }
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
                    self.record(&mut attempt, &result);
                    if verdict != Verdict::Retryable {
                        if attempt.is_hedge && verdict == Verdict::Answer {
                            self.cluster
                                .stats
                                .hedge_wins
                                .fetch_add(1, Ordering::Relaxed);
                        }
                        self.cancel_the_rest();
                        return Some(result);
                    }
                    if !self.running.is_empty() {
                        continue; // the other attempt may still answer
                    }
                    if !self.retry() {
                        return Some(result);
                    }
                }
            }
        }
    }

    /// A probe is the breaker's question "is A back?": one attempt, no hedge, no retry.
    fn is_probe(&self) -> bool {
        self.admission == Admission::Probe
    }

    /// Starts the hedge timer, when hedging is on and this call is not a probe: neither the
    /// breaker's nor one of a replica that is ejected or whose latest attempt failed. The
    /// latter asks "is it back?", and a hedge that answered first would cancel the answer:
    /// under load, a restarted replica's first answer (a new connection) lost to the hedge on
    /// every probe, and it never came back.
    fn arm_hedge_timer(&mut self) {
        let now = self.cluster.clock.now();
        let asks_if_back = self
            .running
            .first()
            .is_some_and(|a| a.replica.may_be_back(now));
        if self.is_probe() || asks_if_back {
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
        if self.room_for_another(now)
            && self.may_add_load(now, Reason::Hedge)
            && self.launch(Reason::Hedge)
        {
            self.cluster.stats.hedges.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Every attempt failed and none is running: another, if retries are on, this is no
    /// probe, the rules allow one and A can take it (see [`may_add_load`]); naive retries
    /// skip that last question. Returns whether one went out.
    ///
    /// [`may_add_load`]: Call::may_add_load
    fn retry(&mut self) -> bool {
        let now = self.cluster.clock.now();
        let patterns = &self.cluster.patterns;
        let naive = patterns.naive_retries;
        let sent = (patterns.retries.is_some() || naive)
            && !self.is_probe()
            && self.room_for_another(now)
            && (naive || self.may_add_load(now, Reason::Retry))
            && self.launch(Reason::Retry);
        if sent {
            self.cluster.stats.retries.fetch_add(1, Ordering::Relaxed);
        }
        sent
    }

    /// Whether a retry or hedge adds only load A can take: the breaker is closed, a replica
    /// the attempt may go to has spare room under its adaptive limit (room, and no queue),
    /// and the budget has one (asked last: asking spends). A refusal is counted by its reason.
    fn may_add_load(&self, now: Instant, reason: Reason) -> bool {
        let cluster = self.cluster;
        if !cluster.breaker_closed(now) {
            cluster.count_refusal(Refusal::Breaker);
            return false;
        }
        if self.candidates(now, reason).is_none() {
            cluster.count_refusal(Refusal::Limit);
            return false;
        }
        cluster.withdraw_from_budget(now)
    }

    /// Whether the free rules leave room for one more attempt at `now`: fewer than
    /// [`MAX_ATTEMPTS`] so far, and time enough left. Spends nothing.
    fn room_for_another(&self, now: Instant) -> bool {
        self.tried.len() < MAX_ATTEMPTS
            && self.ends.saturating_duration_since(now) >= MIN_ATTEMPT_TIME
    }

    /// Starts an attempt on a replica chosen among those not tried yet. False when none has
    /// room under its adaptive limit (nothing is sent).
    fn launch(&mut self, reason: Reason) -> bool {
        let cluster = self.cluster;
        let now = cluster.clock.now();
        let Some(chosen) = self.choose(now, reason) else {
            return false;
        };
        let replica = self.set[chosen].clone();
        let token = if cluster.patterns.adaptive_limit {
            match replica.try_acquire(now) {
                Some(token) => Some(token),
                None => return false, // taken by another call since the choice
            }
        } else {
            None
        };
        self.tried.push(chosen);
        self.stamp_choice(chosen, now);
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
        if wire_trace::enabled() {
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
            token,
            exchange,
            clock: &*cluster.clock,
        });
        true
    }

    /// The replica for the next attempt, `None` when the adaptive limit leaves none.
    /// Round robin takes the next candidate in turn; peak EWMA welcomes replicas back from an
    /// ejection, lets a returning one in by its slow-start share, takes an avoided one as a
    /// probe, and otherwise the cheaper of two (`balance.rs`).
    fn choose(&self, now: Instant, reason: Reason) -> Option<usize> {
        let candidates = self.candidates(now, reason)?;
        match self.cluster.patterns.balance {
            Balance::RoundRobin => {
                let turn = self.cluster.next.fetch_add(1, Ordering::Relaxed);
                candidates.get(turn % candidates.len()).copied()
            }
            Balance::PeakEwma => self.least_loaded(&candidates, now),
        }
    }

    /// The replicas the next attempt may go to, in order of preference: not tried yet and in
    /// rotation; in rotation; not tried yet; any (one replica: the same again). With
    /// `--adaptive-limit`, only those with room under their limit (spare room, for a hedge or
    /// a retry); `None` if that is none.
    fn candidates(&self, now: Instant, reason: Reason) -> Option<Vec<usize>> {
        let (set, tried) = (&self.set, &self.tried);
        let patterns = &self.cluster.patterns;
        let ejection = patterns.ejection.is_some();
        let in_rotation = |i: usize| !ejection || !set[i].is_ejected(now);
        let fresh = |i: usize| !tried.contains(&i);
        // A replica nothing listens at gets no call while another may answer: the health
        // checker finds out when it is back (`health_check.rs`).
        let skip_unreachable =
            self.cluster.checks_health() && set.iter().any(|r| !r.is_unreachable());
        let reachable = |i: usize| !skip_unreachable || !set[i].is_unreachable();
        let room = |i: usize| {
            !patterns.adaptive_limit
                || if reason.is_extra() {
                    set[i].has_spare_room(now)
                } else {
                    set[i].has_room(now)
                }
        };
        let tiers: [&dyn Fn(usize) -> bool; 4] = [
            &|i| fresh(i) && in_rotation(i),
            &in_rotation,
            &fresh,
            &|_| true,
        ];
        tiers
            .iter()
            .map(|keep| {
                let keep = |&i: &usize| keep(i) && reachable(i) && room(i);
                (0..set.len()).filter(keep).collect::<Vec<_>>()
            })
            .find(|c| !c.is_empty())
    }

    /// Peak EWMA's choice among `candidates`, with a replica's return (`balance.rs`).
    fn least_loaded(&self, candidates: &[usize], now: Instant) -> Option<usize> {
        let set = &self.set;
        if self.cluster.patterns.ejection.is_some() {
            let peers = peers_median(set, now);
            for &i in candidates {
                if set[i].rejoin_if_back(peers, now) {
                    log::info!("service A replica {} is back in rotation", set[i].address);
                }
            }
        }
        let candidates = by_share(candidates, |i| set[i].share(now), random::unit);
        let choices = self.cluster.stats.choices.load(Ordering::Relaxed);
        let last_chosen = |i: usize| set[i].last_chosen();
        let failing = self.failing_to_probe(now);
        let chosen_at = |i: usize| set[i].chosen_at();
        let probe = overdue(&failing, last_chosen, choices, FAILING_PROBE_EVERY)
            .or_else(|| probe_due_by_time(&failing, chosen_at, now, FAILING_PROBE_INTERVAL))
            .or_else(|| overdue(&candidates, last_chosen, choices, PROBE_EVERY));
        if let Some(i) = probe {
            set[i].mark_probe();
            return Some(i);
        }
        pick_two(&candidates, |i| set[i].cost(now), random::unit)
    }

    /// The replicas that may have come back, which this call has not tried (with room under
    /// their limit): the ejected ones, and those whose latest attempt failed (an ejection that
    /// ran out while the replica was still down leaves it in rotation, failing, and in slow
    /// start not always a candidate). They are probed more often than one that is merely
    /// slow, so that one restarted is found within a probe (`outlier.rs`).
    fn failing_to_probe(&self, now: Instant) -> Vec<usize> {
        let limited = self.cluster.patterns.adaptive_limit;
        let checked = self.cluster.checks_health();
        (0..self.set.len())
            .filter(|&i| {
                let replica = &self.set[i];
                !self.tried.contains(&i)
                    && replica.may_be_back(now)
                    && !(checked && replica.is_unreachable())
                    && (!limited || replica.has_room(now))
            })
            .collect()
    }

    /// Counts the choice of replica `i` at `now`, for the probe's rules (`balance::overdue`,
    /// `balance::probe_due_by_time`).
    fn stamp_choice(&self, i: usize, now: Instant) {
        let choice = self.cluster.stats.choices.fetch_add(1, Ordering::Relaxed) + 1;
        self.set[i].chosen(choice, now);
    }

    /// Teaches the replica's statistics, the ejection rule and the hedge delay what one
    /// attempt did, and makes it the one the call's report names.
    fn record(&mut self, attempt: &mut Attempt<'_>, result: &Exchanged) {
        attempt.recorded = true;
        self.report.replica = Some(attempt.replica.address);
        self.report.attempt = attempt.number;
        let cluster = self.cluster;
        let now = cluster.clock.now();
        let elapsed = now - attempt.started;
        let end = attempt_end(result);
        let latency = match end {
            AttemptEnd::Succeeded => elapsed,
            _ => elapsed.max(FAILURE_PENALTY),
        };
        if let Some(token) = attempt.token.take() {
            attempt.replica.release(token, limit_outcome(result), now);
        }
        if end == AttemptEnd::Unreachable
            && cluster.checks_health()
            && !attempt.replica.is_unreachable()
        {
            log::warn!(
                "service A replica {} refused the connection: no calls until it answers a \
                 health check",
                attempt.replica.address
            );
        }
        let set = &self.set;
        if end == AttemptEnd::Succeeded && attempt.replica.is_failing() {
            // Its first success after failures: it starts again from its peers' estimate.
            attempt.replica.rejoin(peers_median(set, now), now);
        }
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
