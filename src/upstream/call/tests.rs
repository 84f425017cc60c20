//! Whole calls over scripted replicas, on a clock the test moves by hand.
//!
//! Every policy has tests of its own; these test how a call composes them. The driver polls a
//! call's future; whenever it waits, the virtual clock jumps to the earliest instant a timer
//! waits for and wakes it. Scripted replies come in the order attempts are sent, whichever
//! replica each goes to, so a test says "the first attempt fails after 100 ms, the hedge after
//! 20 ms" and then checks which replicas the call chose. No socket is opened and nothing sleeps.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::http::Deadline;
use crate::http::client::{ClientError, ClientResponse, Phase, Upstream};
use crate::http::limits::ClientLimits;
use crate::http::message::{Headers, ResponseHead, Version, reason_phrase};
use crate::upstream::breaker::{BreakerConfig, BreakerState};
use crate::upstream::budget::BudgetConfig;
use crate::upstream::deadline;
use crate::upstream::exchange::{Clock, Exchange, Get, Sending, Sleep};
use crate::upstream::hedge::HedgeDelay;
use crate::upstream::limit;
use crate::upstream::outlier::OutlierConfig;
use crate::upstream::replicas::{Replica, ReplicaSnapshot, Replicas};
use crate::upstream::{Balance, CallError, CallReport, Cluster, ClusterSnapshot, Patterns};

/// Every call in these tests has this deadline.
const DEADLINE: Duration = Duration::from_secs(1);

/// The hedge delay in these tests.
const HEDGE_AFTER: Duration = Duration::from_millis(50);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ---- The virtual clock ----

/// A clock that moves only when the test (or the driver) moves it.
#[derive(Clone)]
struct VirtualClock(Arc<Mutex<Timeline>>);

struct Timeline {
    start: Instant,
    now: Instant,
    /// Timers waiting: an id, the instant each waits for, and whom to wake.
    waiting: Vec<(u64, Instant, Waker)>,
    next_id: u64,
}

impl VirtualClock {
    fn new() -> VirtualClock {
        let start = Instant::now();
        VirtualClock(Arc::new(Mutex::new(Timeline {
            start,
            now: start,
            waiting: Vec::new(),
            next_id: 0,
        })))
    }

    fn timeline(&self) -> MutexGuard<'_, Timeline> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Time since the clock was made.
    fn elapsed(&self) -> Duration {
        let timeline = self.timeline();
        timeline.now - timeline.start
    }

    /// Moves the clock forward by `by`, waking every timer that is then due.
    fn advance(&self, by: Duration) {
        let now = self.timeline().now + by;
        self.move_to(now);
    }

    /// Moves the clock to the earliest instant a timer waits for. False when none waits.
    fn advance_to_next_timer(&self) -> bool {
        let next = self.timeline().waiting.iter().map(|(_, at, _)| *at).min();
        match next {
            Some(at) => {
                self.move_to(at);
                true
            }
            None => false,
        }
    }

    fn move_to(&self, at: Instant) {
        let due: Vec<Waker> = {
            let mut timeline = self.timeline();
            timeline.now = timeline.now.max(at);
            let now = timeline.now;
            let (due, still): (Vec<_>, Vec<_>) = timeline
                .waiting
                .drain(..)
                .partition(|(_, at, _)| *at <= now);
            timeline.waiting = still;
            due.into_iter().map(|(_, _, waker)| waker).collect()
        };
        due.into_iter().for_each(Waker::wake);
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Instant {
        self.timeline().now
    }

    fn sleep_until(&self, at: Instant) -> Sleep {
        Box::pin(VirtualSleep {
            clock: self.clone(),
            at,
            id: None,
        })
    }
}

/// A wait on the virtual clock: registers its instant and waker while it waits.
struct VirtualSleep {
    clock: VirtualClock,
    at: Instant,
    id: Option<u64>,
}

impl Future for VirtualSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let clock = self.clock.clone();
        let mut timeline = clock.timeline();
        if let Some(id) = self.id {
            timeline.waiting.retain(|(waiting, _, _)| *waiting != id);
        }
        if timeline.now >= self.at {
            self.id = None;
            return Poll::Ready(());
        }
        let id = timeline.next_id;
        timeline.next_id += 1;
        timeline.waiting.push((id, self.at, cx.waker().clone()));
        self.id = Some(id);
        Poll::Pending
    }
}

impl Drop for VirtualSleep {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.clock
                .timeline()
                .waiting
                .retain(|(waiting, _, _)| *waiting != id);
        }
    }
}

/// Runs `future` to the end on the virtual clock: poll; while it waits, jump to the next
/// timer. A future that waits while no timer is set would never finish: that fails the test.
fn drive<F: Future>(clock: &VirtualClock, future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        assert!(
            clock.advance_to_next_timer(),
            "the call waits on nothing: it would hang"
        );
    }
}

// ---- Scripted replicas ----

/// How a scripted attempt ends.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Status(u16),
    /// The connection is refused.
    Refused,
    /// The connection closes before the response head.
    Closed,
    /// What comes back is not HTTP.
    Garbled,
}

/// One scripted attempt: `outcome`, `after` this long.
#[derive(Debug, Clone, Copy)]
struct Reply {
    after: Duration,
    outcome: Outcome,
}

fn answers(status: u16, after_ms: u64) -> Reply {
    Reply {
        after: ms(after_ms),
        outcome: Outcome::Status(status),
    }
}

fn fails(outcome: Outcome, after_ms: u64) -> Reply {
    Reply {
        after: ms(after_ms),
        outcome,
    }
}

impl Outcome {
    fn result(self) -> Result<ClientResponse, ClientError> {
        match self {
            Outcome::Status(status) => Ok(ClientResponse {
                head: ResponseHead {
                    version: Version::Http11,
                    status,
                    reason: reason_phrase(status).to_owned(),
                    headers: Headers::new(),
                },
                body: Vec::new(),
            }),
            Outcome::Refused => Err(ClientError::Connect(
                io::ErrorKind::ConnectionRefused.into(),
            )),
            Outcome::Closed => Err(ClientError::Closed {
                phase: Phase::ResponseHead,
                detail: "closed before the response head".to_owned(),
            }),
            Outcome::Garbled => Err(ClientError::BadResponse("not HTTP".to_owned())),
        }
    }
}

/// An attempt as the script saw it.
#[derive(Debug, Clone)]
struct Sent {
    replica: SocketAddr,
    target: String,
    /// When it was sent, on the virtual clock.
    at: Duration,
    headers: Vec<(String, String)>,
}

/// The exchange of these tests: replies in the order attempts are sent, and a log of them.
struct Script {
    clock: VirtualClock,
    replies: Mutex<VecDeque<Reply>>,
    sent: Mutex<Vec<Sent>>,
}

impl Exchange for Script {
    fn send(&self, replica: Arc<Replica>, get: Get) -> Sending {
        let sent = Sent {
            replica: replica.address,
            target: get.target,
            at: self.clock.elapsed(),
            headers: get.headers,
        };
        let number = {
            let mut log = self.sent.lock().expect("log");
            log.push(sent);
            log.len()
        };
        let reply = self.replies.lock().expect("replies").pop_front();
        let Some(reply) = reply else {
            panic!("attempt {number} was sent, but the test scripted no reply for it");
        };
        let done = self.clock.sleep_until(self.clock.now() + reply.after);
        Box::pin(async move {
            done.await;
            reply.outcome.result()
        })
    }
}

// ---- The fixture ----

/// A cluster of `replicas` scripted replicas on a virtual clock.
struct Lab {
    cluster: Cluster,
    clock: VirtualClock,
    script: Arc<Script>,
}

fn lab(patterns: Patterns, replicas: u16) -> Lab {
    let sources = (1..=replicas)
        .map(|port| Upstream::from_url(&format!("http://127.0.0.1:{port}")).expect("url"))
        .collect();
    let replicas = Arc::new(Replicas::new(sources, ClientLimits::default()));
    let clock = VirtualClock::new();
    let script = Arc::new(Script {
        clock: clock.clone(),
        replies: Mutex::new(VecDeque::new()),
        sent: Mutex::new(Vec::new()),
    });
    let cluster = Cluster::with_seams(replicas, patterns, script.clone(), Arc::new(clock.clone()));
    Lab {
        cluster,
        clock,
        script,
    }
}

impl Lab {
    /// One call whose attempts get `replies`, in order; it must use them all.
    fn call(&self, replies: &[Reply]) -> (Result<ClientResponse, CallError>, CallReport) {
        self.script
            .replies
            .lock()
            .expect("replies")
            .extend(replies.iter().copied());
        let deadline = Deadline::after(DEADLINE);
        let outcome = drive(
            &self.clock,
            self.cluster.call("/echo?msg=hi", &[], deadline),
        );
        let left = self.script.replies.lock().expect("replies").len();
        assert_eq!(left, 0, "the call sent fewer attempts than scripted");
        outcome
    }

    fn sent(&self) -> Vec<Sent> {
        self.script.sent.lock().expect("log").clone()
    }

    fn snapshot(&self) -> ClusterSnapshot {
        self.cluster.snapshot()
    }

    fn replica(&self, address: SocketAddr) -> ReplicaSnapshot {
        let snapshot = self.snapshot();
        let found = snapshot.replicas.into_iter().find(|r| r.address == address);
        found.expect("a replica of the cluster")
    }
}

/// Nothing on but round-robin over the replicas.
fn plain() -> Patterns {
    Patterns {
        balance: Balance::RoundRobin,
        ..Patterns::default()
    }
}

/// Retries from a budget of exactly `retries` (no deposits: a ratio of 0, over 10 s).
fn budget_of(retries: f64) -> BudgetConfig {
    let window = Duration::from_secs(10);
    BudgetConfig {
        ratio: 0.0,
        min_per_sec: retries / window.as_secs_f64(),
        window,
    }
}

fn with_retries() -> Patterns {
    Patterns {
        retries: Some(budget_of(10.0)),
        ..plain()
    }
}

fn with_retries_and_hedge() -> Patterns {
    Patterns {
        hedge: Some(HedgeDelay::Fixed(HEDGE_AFTER)),
        ..with_retries()
    }
}

/// A breaker that opens on one failed call and lets a probe through after 1 s.
fn touchy_breaker() -> BreakerConfig {
    BreakerConfig {
        window: 1,
        min_calls: 1,
        failure_ratio: 1.0,
        open_for: Duration::from_secs(1),
    }
}

fn status_of(result: &Result<ClientResponse, CallError>) -> Option<u16> {
    result.as_ref().ok().map(|r| r.head.status)
}

// ---- The tests ----

#[test]
fn with_no_pattern_a_call_is_one_attempt_and_a_5xx_is_passed_on() {
    let lab = lab(plain(), 3);
    let (result, report) = lab.call(&[answers(503, 5)]);
    assert_eq!(status_of(&result), Some(503));
    assert_eq!(report.attempt, 1);
    assert_eq!(lab.sent().len(), 1);
}

#[test]
fn a_failed_hedge_then_a_retry_on_the_third_replica() {
    let lab = lab(with_retries_and_hedge(), 3);
    // The first attempt fails at 100 ms; the hedge, sent at 50 ms, fails at 70 ms while the
    // first still runs; when the first fails too, the retry goes to the replica left.
    let (result, report) = lab.call(&[answers(503, 100), answers(502, 20), answers(200, 10)]);
    assert_eq!(status_of(&result), Some(200));
    let sent = lab.sent();
    let at: Vec<Duration> = sent.iter().map(|s| s.at).collect();
    assert_eq!(at, [ms(0), HEDGE_AFTER, ms(100)]);
    let replicas: Vec<SocketAddr> = sent.iter().map(|s| s.replica).collect();
    assert!(
        replicas[2] != replicas[0] && replicas[2] != replicas[1] && replicas[0] != replicas[1],
        "three attempts, three replicas: {replicas:?}"
    );
    assert_eq!((report.attempt, report.replica), (3, Some(replicas[2])));
    assert_eq!(lab.clock.elapsed(), ms(110));
    let snapshot = lab.snapshot();
    let counts = (snapshot.hedges, snapshot.retries, snapshot.hedge_wins);
    assert_eq!(counts, (1, 1, 0), "(hedges, retries, hedge wins)");
}

#[test]
fn a_probe_is_a_single_attempt_with_no_hedge_and_no_retry() {
    let patterns = Patterns {
        breaker: Some(touchy_breaker()),
        ..with_retries_and_hedge()
    };
    let lab = lab(patterns, 3);
    // One failed call (three quick 503s) opens the breaker.
    let (result, _) = lab.call(&[answers(503, 1), answers(503, 1), answers(503, 1)]);
    assert_eq!(status_of(&result), Some(503));
    assert_eq!(lab.snapshot().breaker, Some(BreakerState::Open));
    let (result, _) = lab.call(&[]);
    assert_eq!(result.err().map(|e| e.kind()), Some("circuit_open"));
    // A second later the next call is the probe: slower than the hedge delay and failing,
    // it is still the only attempt.
    lab.clock.advance(Duration::from_secs(1));
    let (result, report) = lab.call(&[answers(503, 200)]);
    assert_eq!(status_of(&result), Some(503));
    assert_eq!(report.attempt, 1);
    assert_eq!(lab.sent().len(), 4, "three for the first call, one probe");
    let snapshot = lab.snapshot();
    assert_eq!((snapshot.hedges, snapshot.retries), (0, 2));
    assert_eq!(
        snapshot.breaker,
        Some(BreakerState::Open),
        "the probe failed"
    );
}

#[test]
fn no_withdrawal_once_the_call_has_made_its_most_attempts() {
    let lab = lab(with_retries(), 3);
    let (result, report) = lab.call(&[answers(503, 1), answers(503, 1), answers(503, 1)]);
    assert_eq!(status_of(&result), Some(503));
    assert_eq!(report.attempt, super::MAX_ATTEMPTS);
    let snapshot = lab.snapshot();
    assert_eq!(snapshot.retries, 2);
    assert_eq!(
        snapshot.budget_available,
        Some(8.0),
        "two retries withdrawn, not a third after the last attempt"
    );
    assert_eq!(snapshot.budget_refusals, 0);
}

#[test]
fn no_withdrawal_when_too_little_time_is_left() {
    let lab = lab(with_retries(), 3);
    // It fails 999 ms into a 1 s call: less than an attempt needs is left.
    let (result, report) = lab.call(&[answers(503, 999)]);
    assert_eq!(status_of(&result), Some(503));
    assert_eq!(report.attempt, 1);
    let snapshot = lab.snapshot();
    assert_eq!(snapshot.budget_available, Some(10.0));
    assert_eq!((snapshot.retries, snapshot.budget_refusals), (0, 0));
}

#[test]
fn an_empty_budget_refuses_the_retry_and_the_refusal_is_counted() {
    let patterns = Patterns {
        retries: Some(budget_of(1.5)),
        ..plain()
    };
    let lab = lab(patterns, 3);
    let (result, report) = lab.call(&[answers(503, 1), answers(503, 1)]);
    assert_eq!(status_of(&result), Some(503));
    assert_eq!(report.attempt, 2, "one retry, then the budget is spent");
    let snapshot = lab.snapshot();
    assert_eq!((snapshot.retries, snapshot.budget_refusals), (1, 1));
}

#[test]
fn a_failed_attempt_is_taught_as_taking_at_least_the_failure_penalty() {
    let lab = lab(plain(), 2);
    let (result, report) = lab.call(&[fails(Outcome::Refused, 1)]);
    assert_eq!(result.err().map(|e| e.kind()), Some("connect"));
    let refused = report.replica.expect("a replica");
    assert_eq!(lab.replica(refused).latency, super::FAILURE_PENALTY);
    // An answer as quick is taught as it is.
    let (_, report) = lab.call(&[answers(200, 1)]);
    let answered = report.replica.expect("a replica");
    assert_ne!(answered, refused, "round-robin");
    assert_eq!(lab.replica(answered).latency, ms(1));
}

#[test]
fn a_4xx_is_an_answer_passed_on_at_once_and_counts_as_a_success() {
    let patterns = Patterns {
        breaker: Some(touchy_breaker()),
        ..with_retries()
    };
    let lab = lab(patterns, 3);
    let (result, report) = lab.call(&[answers(404, 5)]);
    assert_eq!(status_of(&result), Some(404));
    assert_eq!(report.attempt, 1);
    let replica = lab.replica(report.replica.expect("a replica"));
    assert_eq!((replica.succeeded, replica.failed), (1, 0));
    assert_eq!(lab.snapshot().breaker, Some(BreakerState::Closed));
}

#[test]
fn a_5xx_is_retried_and_counts_as_a_failure() {
    let lab = lab(with_retries(), 3);
    let (result, report) = lab.call(&[answers(500, 5), answers(200, 5)]);
    assert_eq!(status_of(&result), Some(200));
    assert_eq!(report.attempt, 2);
    let first = lab.replica(lab.sent()[0].replica);
    assert_eq!((first.succeeded, first.failed), (0, 1));
}

#[test]
fn a_call_whose_answer_is_a_5xx_is_a_failure_to_the_breaker() {
    let patterns = Patterns {
        breaker: Some(touchy_breaker()),
        ..plain()
    };
    let lab = lab(patterns, 1);
    let (result, _) = lab.call(&[answers(500, 5)]);
    assert_eq!(status_of(&result), Some(500));
    assert_eq!(lab.snapshot().breaker, Some(BreakerState::Open));
}

#[test]
fn a_response_that_is_not_http_is_final_and_a_failure() {
    let patterns = Patterns {
        breaker: Some(touchy_breaker()),
        ..with_retries()
    };
    let lab = lab(patterns, 3);
    let (result, report) = lab.call(&[fails(Outcome::Garbled, 5)]);
    assert_eq!(result.err().map(|e| e.kind()), Some("bad_response"));
    assert_eq!(report.attempt, 1, "not retried");
    assert_eq!(lab.snapshot().retries, 0);
    assert_eq!(lab.snapshot().breaker, Some(BreakerState::Open));
}

#[test]
fn a_connection_closed_early_is_retried() {
    let lab = lab(with_retries(), 3);
    let (result, report) = lab.call(&[fails(Outcome::Closed, 5), answers(200, 5)]);
    assert_eq!(status_of(&result), Some(200));
    assert_eq!(report.attempt, 2);
}

#[test]
fn a_hedge_that_answers_first_wins_and_is_counted() {
    let lab = lab(with_retries_and_hedge(), 3);
    let (result, report) = lab.call(&[answers(200, 500), answers(200, 10)]);
    assert_eq!(status_of(&result), Some(200));
    let sent = lab.sent();
    assert_eq!((report.attempt, report.replica), (2, Some(sent[1].replica)));
    assert_eq!(lab.clock.elapsed(), HEDGE_AFTER + ms(10));
    let snapshot = lab.snapshot();
    assert_eq!((snapshot.hedges, snapshot.hedge_wins), (1, 1));
}

#[test]
fn the_attempt_a_hedge_beat_is_recorded_as_cancelled() {
    let lab = lab(with_retries_and_hedge(), 3);
    let (result, _) = lab.call(&[answers(200, 500), answers(200, 10)]);
    assert_eq!(status_of(&result), Some(200));
    let beaten = lab.replica(lab.sent()[0].replica);
    let counts = (beaten.succeeded, beaten.failed, beaten.cancelled);
    assert_eq!(counts, (0, 0, 1), "(succeeded, failed, cancelled)");
    assert_eq!(beaten.outstanding, 0);
    // It was at least as slow as the call: that much is taught.
    assert_eq!(beaten.latency, HEDGE_AFTER + ms(10));
}

#[test]
fn a_hedge_that_answers_first_with_a_5xx_leaves_the_first_attempt_running() {
    let lab = lab(with_retries_and_hedge(), 3);
    let (result, report) = lab.call(&[answers(200, 100), answers(503, 10)]);
    assert_eq!(status_of(&result), Some(200));
    assert_eq!(report.attempt, 1);
    assert_eq!(lab.clock.elapsed(), ms(100));
    assert_eq!(lab.snapshot().hedge_wins, 0);
}

#[test]
fn each_attempt_tells_a_its_own_deadline() {
    let patterns = Patterns {
        attempt_timeout: Some(ms(300)),
        propagate_deadline: true,
        ..with_retries()
    };
    let lab = lab(patterns, 3);
    let (result, _) = lab.call(&[answers(503, 100), answers(200, 5)]);
    assert_eq!(status_of(&result), Some(200));
    let told: Vec<String> = lab
        .sent()
        .iter()
        .map(|s| {
            let header = s.headers.iter().find(|(n, _)| n == deadline::HEADER);
            header.map(|(_, v)| v.clone()).unwrap_or_default()
        })
        .collect();
    // Each attempt's own 300 ms, and the slack that lets B's timer end the call first.
    assert_eq!(told, ["310", "310"]);
}

#[test]
fn a_full_bulkhead_refuses_before_the_breaker_or_any_attempt() {
    let patterns = Patterns {
        max_in_flight: Some(1),
        breaker: Some(touchy_breaker()),
        ..plain()
    };
    let lab = lab(patterns, 1);
    lab.script
        .replies
        .lock()
        .expect("replies")
        .push_back(answers(200, 10));
    let deadline = Deadline::after(DEADLINE);
    let mut first = pin!(lab.cluster.call("/echo", &[], deadline));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(first.as_mut().poll(&mut cx).is_pending(), "waits for A");
    let (result, _) = lab.call(&[]);
    assert_eq!(result.err().map(|e| e.kind()), Some("overloaded"));
    assert_eq!(lab.sent().len(), 1, "only the first call's attempt");
    let (result, _) = drive(&lab.clock, first);
    assert_eq!(status_of(&result), Some(200));
    assert_eq!(lab.snapshot().overloaded, 1);
}

// ---- The adaptive limit, a replica's return, naive retries ----

fn limited() -> Patterns {
    Patterns {
        adaptive_limit: true,
        ..plain()
    }
}

/// An ejection that lasts 30 s, so that within a test only a probe can end it.
fn long_ejection() -> OutlierConfig {
    OutlierConfig {
        base_ejection: Duration::from_secs(30),
        ..OutlierConfig::default()
    }
}

/// Peak EWMA with ejection by `config`: the balancer a replica's return is written for.
fn returning(config: OutlierConfig) -> Patterns {
    Patterns {
        balance: Balance::PeakEwma,
        ejection: Some(config),
        ..Patterns::default()
    }
}

/// The cluster's replicas, to hold their limits' slots or set their history by hand.
fn replicas_of(lab: &Lab) -> Arc<[Arc<Replica>]> {
    lab.cluster.replicas.current()
}

/// Each replica answers once, alone in flight: a replica that has only dropped attempts is
/// silent, and its limit steps aside (`limit.rs`).
fn each_answers_once(set: &[Arc<Replica>], now: Instant) {
    for replica in set {
        let token = replica.try_acquire(now).expect("room");
        replica.release(token, limit::Outcome::Answered, now);
    }
}

/// How many retries or hedges were not sent for `reason` (`limit`, `breaker`, `budget`).
fn refused_for(snapshot: &ClusterSnapshot, reason: &str) -> Option<u64> {
    let found = snapshot.refusals.iter().find(|(r, _)| r.label() == reason);
    found.map(|(_, n)| *n)
}

/// Fails `replica` as many times in a row as `config` needs to eject it.
fn eject(replica: &Replica, config: &OutlierConfig, now: Instant) {
    for _ in 0..config.consecutive_failures {
        replica.begin(now);
        replica.end(
            super::AttemptEnd::Failed,
            super::FAILURE_PENALTY,
            now,
            Some((config, true)),
        );
    }
}

/// Makes `every` good calls, so that the next choice is a probe of whichever replica none of
/// them took: `PROBE_EVERY` for one in rotation that answers, `FAILING_PROBE_EVERY` for one
/// that is ejected or failing.
fn calls_until_a_probe_is_due(lab: &Lab, every: u64) {
    for _ in 0..every {
        let (result, _) = lab.call(&[answers(200, 1)]);
        assert_eq!(status_of(&result), Some(200));
    }
}

#[test]
fn a_full_limit_answers_overloaded_at_once_and_sends_nothing() {
    let lab = lab(limited(), 1);
    let now = lab.clock.now();
    let replica = replicas_of(&lab)[0].clone();
    let held: Vec<_> = (0..).map_while(|_| replica.try_acquire(now)).collect();
    assert_eq!(held.len(), 4, "the initial limit");
    let (result, report) = lab.call(&[]);
    let error = result.expect_err("refused");
    assert_eq!(error.kind(), "overloaded");
    assert!(error.to_string().contains("adaptive limit"), "{error}");
    assert_eq!((report.attempt, lab.sent().len()), (0, 0));
    assert_eq!(lab.clock.elapsed(), Duration::ZERO, "at once");
    assert_eq!(lab.snapshot().overloaded, 1);
    // A slot given back: the next call goes.
    let mut held = held.into_iter();
    let token = held.next().expect("a slot");
    replica.release(token, crate::upstream::limit::Outcome::Ignored, now);
    let (result, _) = lab.call(&[answers(200, 5)]);
    assert_eq!(status_of(&result), Some(200));
}

#[test]
fn a_limit_refusal_is_not_a_failure_to_the_breaker() {
    let patterns = Patterns {
        breaker: Some(touchy_breaker()),
        ..limited()
    };
    let lab = lab(patterns, 1);
    let now = lab.clock.now();
    let replica = replicas_of(&lab)[0].clone();
    let _held: Vec<_> = (0..).map_while(|_| replica.try_acquire(now)).collect();
    let (result, _) = lab.call(&[]);
    assert_eq!(result.err().map(|e| e.kind()), Some("overloaded"));
    assert_eq!(lab.snapshot().breaker, Some(BreakerState::Closed));
}

#[test]
fn no_retry_to_a_replica_at_its_limit() {
    let patterns = Patterns {
        retries: Some(budget_of(10.0)),
        ..limited()
    };
    let lab = lab(patterns, 2);
    let now = lab.clock.now();
    let set = replicas_of(&lab);
    each_answers_once(&set, now);
    // The second replica is full; the first has room for one more.
    let _full: Vec<_> = (0..).map_while(|_| set[1].try_acquire(now)).collect();
    let _three: Vec<_> = (0..3).filter_map(|_| set[0].try_acquire(now)).collect();
    // The one attempt answers 503 (A gave the work up): the first replica's limit drops
    // below its four in flight, and no replica has room for a retry.
    let (result, report) = lab.call(&[answers(503, 5)]);
    assert_eq!(status_of(&result), Some(503));
    assert_eq!(report.attempt, 1);
    assert_eq!(lab.sent()[0].replica, set[0].address);
    let snapshot = lab.snapshot();
    assert_eq!(snapshot.retries, 0);
    assert_eq!(refused_for(&snapshot, "limit"), Some(1));
    assert_eq!(
        snapshot.budget_available,
        Some(10.0),
        "the budget is not asked"
    );
}

#[test]
fn a_hedge_goes_only_to_a_replica_with_a_worker_to_spare() {
    let patterns = Patterns {
        adaptive_limit: true,
        ..with_retries_and_hedge()
    };
    let lab = lab(patterns, 2);
    let now = lab.clock.now();
    let set = replicas_of(&lab);
    each_answers_once(&set, now);
    // Each replica has two attempts of other calls in flight: room under the limit of 4 for
    // the first attempt, but a hedge would be a third, past the limit less its headroom
    // (4 - √4): it would wait in A's queue.
    let _busy: Vec<_> = set
        .iter()
        .flat_map(|r| [r.try_acquire(now), r.try_acquire(now)])
        .collect();
    let (result, report) = lab.call(&[answers(200, 500)]);
    assert_eq!(status_of(&result), Some(200));
    assert_eq!(
        report.attempt, 1,
        "no hedge: it would queue behind work in A"
    );
    let snapshot = lab.snapshot();
    assert_eq!(snapshot.hedges, 0);
    assert_eq!(refused_for(&snapshot, "limit"), Some(1));
    assert_eq!(
        snapshot.budget_available,
        Some(10.0),
        "the budget is not asked"
    );
}

#[test]
fn a_hedge_goes_to_an_idle_replica_under_the_limit() {
    let patterns = Patterns {
        adaptive_limit: true,
        ..with_retries_and_hedge()
    };
    let lab = lab(patterns, 2);
    let now = lab.clock.now();
    each_answers_once(&replicas_of(&lab), now);
    let (result, report) = lab.call(&[answers(200, 500), answers(200, 10)]);
    assert_eq!(status_of(&result), Some(200));
    assert_eq!(report.attempt, 2, "the hedge won");
    assert_eq!(lab.snapshot().hedges, 1);
}

#[test]
fn no_retry_while_the_breaker_is_not_closed() {
    let patterns = Patterns {
        breaker: Some(touchy_breaker()),
        ..with_retries()
    };
    let lab = lab(patterns, 3);
    lab.script
        .replies
        .lock()
        .expect("replies")
        .push_back(answers(503, 100));
    let deadline = Deadline::after(DEADLINE);
    let mut slow = pin!(lab.cluster.call("/echo", &[], deadline));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(
        slow.as_mut().poll(&mut cx).is_pending(),
        "its attempt is out"
    );
    // Meanwhile another call fails three times: the breaker opens.
    let (result, _) = lab.call(&[answers(503, 1), answers(503, 1), answers(503, 1)]);
    assert_eq!(status_of(&result), Some(503));
    assert_eq!(lab.snapshot().breaker, Some(BreakerState::Open));
    // The first call's attempt fails: with the breaker open, it is not retried.
    let (result, report) = drive(&lab.clock, slow);
    assert_eq!(status_of(&result), Some(503));
    assert_eq!(report.attempt, 1);
    let snapshot = lab.snapshot();
    assert_eq!(refused_for(&snapshot, "breaker"), Some(1));
}

#[test]
fn naive_retries_ignore_the_budget() {
    let patterns = Patterns {
        naive_retries: true,
        ..plain()
    };
    let lab = lab(patterns, 3);
    let (result, report) = lab.call(&[answers(503, 1), answers(503, 1), answers(503, 1)]);
    assert_eq!(status_of(&result), Some(503));
    assert_eq!(report.attempt, super::MAX_ATTEMPTS);
    let snapshot = lab.snapshot();
    assert_eq!((snapshot.retries, snapshot.budget_refusals), (2, 0));
}

#[test]
fn an_avoided_replica_is_probed_every_probe_every_choices() {
    let patterns = Patterns {
        balance: Balance::PeakEwma,
        ..Patterns::default()
    };
    let lab = lab(patterns, 3);
    let now = lab.clock.now();
    let set = replicas_of(&lab);
    // The third replica answered slowly once; the others have answered fast.
    for (replica, latency) in set.iter().zip([ms(1), ms(1), ms(300)]) {
        replica.begin(now);
        replica.end(super::AttemptEnd::Succeeded, latency, now, None);
    }
    calls_until_a_probe_is_due(&lab, crate::upstream::balance::PROBE_EVERY);
    let slow = set[2].address;
    assert!(
        lab.sent().iter().all(|s| s.replica != slow),
        "power of two choices never takes the costliest of three"
    );
    let (result, _) = lab.call(&[answers(200, 1)]);
    assert_eq!(status_of(&result), Some(200));
    let every = crate::upstream::balance::PROBE_EVERY as usize;
    assert_eq!(lab.sent()[every].replica, slow, "the probe");
    // Its answer, 1 ms, replaces the old 300 ms rather than wearing it down.
    assert_eq!(lab.replica(slow).latency, ms(1));
}

#[test]
fn a_replica_back_from_an_ejection_starts_from_its_peers_estimate() {
    let lab = lab(returning(OutlierConfig::default()), 3);
    let now = lab.clock.now();
    let set = replicas_of(&lab);
    for replica in &set[..2] {
        replica.begin(now);
        replica.end(super::AttemptEnd::Succeeded, ms(2), now, None);
    }
    let config = OutlierConfig::default();
    eject(&set[2], &config, now);
    assert!(set[2].is_ejected(now));
    lab.clock.advance(config.base_ejection);
    let (result, _) = lab.call(&[answers(200, 2)]);
    assert_eq!(status_of(&result), Some(200));
    // Whichever replica that call took, the one back from its ejection no longer carries its
    // 100 ms of penalty: it costs what its peers do, and ramps up from a tenth of a share.
    let back = lab.replica(set[2].address);
    assert!(back.latency <= ms(2), "{:?}", back.latency);
    assert!(set[2].share(lab.clock.now()) < 0.2);
}

#[test]
fn the_first_success_after_failures_starts_from_the_peers_estimate() {
    let lab = lab(with_retries(), 2);
    let now = lab.clock.now();
    let set = replicas_of(&lab);
    set[1].begin(now);
    set[1].end(super::AttemptEnd::Succeeded, ms(2), now, None);
    // Round robin: the first call's attempt goes to the first replica, and is refused.
    let (result, _) = lab.call(&[fails(Outcome::Refused, 1), answers(200, 2)]);
    assert_eq!(status_of(&result), Some(200));
    assert!(lab.replica(set[0].address).latency > ms(99), "the penalty");
    // The next call answers from it in 1 ms: it starts from its peer's 2 ms, not from its
    // penalty, and the faster answer moves it from there.
    let (result, report) = lab.call(&[answers(200, 1)]);
    assert_eq!(status_of(&result), Some(200));
    assert_eq!(report.replica, Some(set[0].address));
    let latency = lab.replica(set[0].address).latency;
    assert!(latency <= ms(2) && latency >= ms(1), "{latency:?}");
}

#[test]
fn an_ejected_replica_is_probed_and_a_good_answer_brings_it_back() {
    let config = long_ejection();
    let lab = lab(returning(config), 3);
    let now = lab.clock.now();
    let set = replicas_of(&lab);
    eject(&set[2], &config, now);
    assert!(set[2].is_ejected(now));
    calls_until_a_probe_is_due(&lab, crate::upstream::balance::FAILING_PROBE_EVERY);
    let ejected = set[2].address;
    assert!(lab.sent().iter().all(|s| s.replica != ejected));
    // The probe, long before the 30 s are up: it answers, and the ejection is over.
    let (result, report) = lab.call(&[answers(200, 1)]);
    assert_eq!(status_of(&result), Some(200));
    assert_eq!(report.replica, Some(ejected), "the probe");
    assert!(!set[2].is_ejected(lab.clock.now()));
    assert!(set[2].share(lab.clock.now()) < 0.2, "it ramps up again");
}

#[test]
fn a_replica_whose_ejection_ran_out_while_it_was_down_is_probed_as_often_as_an_ejected_one() {
    let config = OutlierConfig::default();
    let lab = lab(returning(config), 3);
    let set = replicas_of(&lab);
    // The third replica failed until it was ejected, its ejection ran out, and its first
    // attempt back failed too: it is in rotation, failing, and may restart at any moment.
    eject(&set[2], &config, lab.clock.now());
    lab.clock.advance(config.base_ejection);
    let now = lab.clock.now();
    assert!(set[2].rejoin_if_back(Some(ms(1)), now));
    set[2].begin(now);
    set[2].end(super::AttemptEnd::Failed, ms(100), now, None);
    assert!(!set[2].is_ejected(now) && set[2].is_failing());
    calls_until_a_probe_is_due(&lab, crate::upstream::balance::FAILING_PROBE_EVERY);
    let failing = set[2].address;
    assert!(lab.sent().iter().all(|s| s.replica != failing));
    // Not the 250 choices of a replica that answers slowly (the test above): 100.
    let (result, report) = lab.call(&[answers(200, 1)]);
    assert_eq!(status_of(&result), Some(200));
    assert_eq!(report.replica, Some(failing), "the probe");
}

/// With ejection, peak EWMA and the adaptive limit as `limit` says: the third replica
/// ejected and holding `held` attempts of other calls, then the calls until its probe is due.
/// Whether the next call's attempt went to it.
fn probes_the_ejected_one(limit: bool, held: usize) -> bool {
    let config = long_ejection();
    let patterns = Patterns {
        adaptive_limit: limit,
        ..returning(config)
    };
    let lab = lab(patterns, 3);
    let now = lab.clock.now();
    let set = replicas_of(&lab);
    eject(&set[2], &config, now);
    let _held: Vec<_> = (0..held).filter_map(|_| set[2].try_acquire(now)).collect();
    calls_until_a_probe_is_due(&lab, crate::upstream::balance::FAILING_PROBE_EVERY);
    let (result, report) = lab.call(&[answers(200, 1)]);
    assert_eq!(status_of(&result), Some(200));
    report.replica == Some(set[2].address)
}

#[test]
fn an_ejected_replica_is_probed_only_with_room_under_its_limit() {
    assert!(probes_the_ejected_one(true, 0), "room: probed");
    let full = crate::upstream::limit::INITIAL_LIMIT as usize;
    assert!(
        !probes_the_ejected_one(true, full),
        "at its limit: not probed"
    );
    assert!(
        probes_the_ejected_one(false, full),
        "without the limit, its slots mean nothing"
    );
}

#[test]
fn a_quiet_b_probes_an_ejected_replica_once_a_second() {
    let config = long_ejection();
    let lab = lab(returning(config), 3);
    let set = replicas_of(&lab);
    // The third replica was chosen, failed until it was ejected; then a call every 300 ms,
    // far fewer than the hundred choices of the count.
    set[2].chosen(1, lab.clock.now());
    eject(&set[2], &config, lab.clock.now());
    let ejected = set[2].address;
    for _ in 0..3 {
        lab.clock.advance(Duration::from_millis(300));
        let (result, report) = lab.call(&[answers(200, 1)]);
        assert_eq!(status_of(&result), Some(200));
        assert_ne!(report.replica, Some(ejected), "under a second: not yet");
    }
    lab.clock.advance(Duration::from_millis(100));
    let (result, report) = lab.call(&[answers(200, 1)]);
    assert_eq!(status_of(&result), Some(200));
    assert_eq!(
        report.replica,
        Some(ejected),
        "a second after its last choice"
    );
    assert!(!set[2].is_ejected(lab.clock.now()), "it answered: back");
}

#[test]
fn metrics_show_each_replicas_limit_and_the_refusals_by_reason() {
    let mut text = String::new();
    crate::services::metrics::render_cluster(&mut text, &lab(plain(), 1).snapshot());
    assert!(
        !text.contains("echo_lab_upstream_replica_limit"),
        "no limit series while the pattern is off"
    );
    let lab = lab(limited(), 2);
    let mut text = String::new();
    crate::services::metrics::render_cluster(&mut text, &lab.snapshot());
    for replica in replicas_of(&lab).iter() {
        let line = format!(
            "echo_lab_upstream_replica_limit{{replica=\"{}\"}} 4.00\n",
            replica.address
        );
        assert!(text.contains(&line), "{line} in {text}");
    }
    for reason in ["budget", "limit", "breaker"] {
        let line = format!("echo_lab_upstream_budget_refusals_total{{reason=\"{reason}\"}} 0\n");
        assert!(text.contains(&line), "{line} in {text}");
    }
}

#[test]
fn an_ejected_replica_gets_no_attempt_while_others_are_in_rotation() {
    let patterns = Patterns {
        ejection: Some(OutlierConfig {
            consecutive_failures: 1,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(30),
        }),
        ..with_retries()
    };
    let lab = lab(patterns, 3);
    // A 503, not a refusal: a replica that refused a connection is left out as unreachable
    // (`health_check.rs`), which would hide whether ejection left it out.
    let (result, _) = lab.call(&[answers(503, 1), answers(200, 1)]);
    assert_eq!(status_of(&result), Some(200), "retried elsewhere");
    let ejected = lab.sent()[0].replica;
    assert!(lab.replica(ejected).ejected);
    for _ in 0..3 {
        let (result, _) = lab.call(&[answers(200, 1)]);
        assert_eq!(status_of(&result), Some(200));
    }
    let later: Vec<SocketAddr> = lab.sent()[2..].iter().map(|s| s.replica).collect();
    assert!(!later.contains(&ejected), "{ejected} was chosen: {later:?}");
}

#[test]
fn the_probe_of_an_ejected_replica_is_not_hedged() {
    let config = long_ejection();
    let patterns = Patterns {
        hedge: Some(HedgeDelay::Fixed(ms(5))),
        retries: Some(BudgetConfig::default()),
        ..returning(config)
    };
    let lab = lab(patterns, 3);
    let now = lab.clock.now();
    let set = replicas_of(&lab);
    eject(&set[2], &config, now);
    calls_until_a_probe_is_due(&lab, crate::upstream::balance::FAILING_PROBE_EVERY);
    let sent_before = lab.sent().len();
    // The probe answers after 50 ms, ten times the hedge delay: no hedge cuts it short.
    let (result, report) = lab.call(&[answers(200, 50)]);
    assert_eq!(status_of(&result), Some(200));
    assert_eq!(
        report.replica,
        Some(set[2].address),
        "the probe's own answer"
    );
    assert_eq!(lab.sent().len(), sent_before + 1, "one attempt, no hedge");
    assert!(!set[2].is_ejected(lab.clock.now()));
}

// ---- Health checks of a replica that nothing listens at ----

/// Ejection (for 30 s) and retries over peak EWMA: health checks are on.
fn checked() -> Patterns {
    Patterns {
        retries: Some(budget_of(100.0)),
        ..returning(long_ejection())
    }
}

/// `replica`'s latest attempt was refused: nothing listens at its address.
fn refuse(replica: &Replica, now: Instant) {
    replica.begin(now);
    let ejection = Some((&long_ejection(), true));
    replica.end(
        super::AttemptEnd::Unreachable,
        super::FAILURE_PENALTY,
        now,
        ejection,
    );
}

/// One round of health checks on the lab's replicas, whose replies are `replies`.
fn check_health(lab: &Lab, replies: &[Reply]) -> usize {
    lab.script
        .replies
        .lock()
        .expect("replies")
        .extend(replies.iter().copied());
    let set = replicas_of(lab);
    let round = crate::upstream::health_check::check_unreachable(&set, &*lab.script, &lab.clock);
    drive(&lab.clock, round)
}

#[test]
fn a_refused_connection_makes_a_replica_unreachable_and_the_call_goes_elsewhere() {
    let lab = lab(checked(), 3);
    let (result, _) = lab.call(&[fails(Outcome::Refused, 1), answers(200, 1)]);
    assert_eq!(status_of(&result), Some(200), "retried elsewhere");
    let refused = lab.sent()[0].replica;
    let snapshot = lab.replica(refused);
    assert!(
        snapshot.unreachable && !snapshot.ejected,
        "one refusal: not ejected yet"
    );
    // A connection closed early is a failure, but something listens there.
    let (result, _) = lab.call(&[fails(Outcome::Closed, 1), answers(200, 1)]);
    assert_eq!(status_of(&result), Some(200));
    assert!(!lab.replica(lab.sent()[2].replica).unreachable);
}

#[test]
fn an_unreachable_replica_gets_no_call_not_even_a_probe() {
    let lab = lab(checked(), 3);
    let set = replicas_of(&lab);
    refuse(&set[2], lab.clock.now());
    // Twice the choices after which a failing replica is probed, and over a second.
    let every = crate::upstream::balance::FAILING_PROBE_EVERY;
    for _ in 0..2 * every {
        lab.clock.advance(ms(10));
        let (result, _) = lab.call(&[answers(200, 1)]);
        assert_eq!(status_of(&result), Some(200));
    }
    let dead = set[2].address;
    assert!(
        lab.sent().iter().all(|s| s.replica != dead),
        "a call went to {dead}"
    );
}

#[test]
fn without_ejection_an_unreachable_replica_is_probed_with_calls_as_before() {
    let patterns = Patterns {
        balance: Balance::PeakEwma,
        ..Patterns::default()
    };
    let lab = lab(patterns, 3);
    let set = replicas_of(&lab);
    refuse(&set[2], lab.clock.now());
    calls_until_a_probe_is_due(&lab, crate::upstream::balance::FAILING_PROBE_EVERY);
    let (result, report) = lab.call(&[answers(200, 1)]);
    assert_eq!(status_of(&result), Some(200));
    assert_eq!(report.replica, Some(set[2].address), "the probe");
}

#[test]
fn when_every_replica_is_unreachable_calls_still_try_them() {
    let lab = lab(checked(), 2);
    let set = replicas_of(&lab);
    for replica in set.iter() {
        refuse(replica, lab.clock.now());
    }
    let (result, report) = lab.call(&[fails(Outcome::Refused, 1), answers(200, 1)]);
    assert_eq!(status_of(&result), Some(200), "the second one is back");
    assert_eq!(report.attempt, 2);
}

#[test]
fn a_health_check_asks_only_unreachable_replicas_for_health() {
    let lab = lab(checked(), 3);
    let set = replicas_of(&lab);
    refuse(&set[1], lab.clock.now());
    assert_eq!(check_health(&lab, &[fails(Outcome::Refused, 0)]), 0);
    let sent = lab.sent();
    assert_eq!(sent.len(), 1, "one check, to the one unreachable replica");
    assert_eq!(
        (sent[0].replica, sent[0].target.as_str()),
        (set[1].address, "/health")
    );
    let snapshot = lab.replica(set[1].address);
    assert!(snapshot.unreachable, "refused again: still unreachable");
    assert_eq!(snapshot.health_checks, 1);
    assert_eq!(lab.snapshot().replicas[0].health_checks, 0);
}

#[test]
fn a_replica_that_answers_its_health_check_is_back_from_its_peers_estimate() {
    let config = long_ejection();
    let lab = lab(checked(), 3);
    let now = lab.clock.now();
    let set = replicas_of(&lab);
    for replica in &set[..2] {
        replica.begin(now);
        replica.end(
            super::AttemptEnd::Succeeded,
            ms(2),
            now,
            Some((&config, true)),
        );
    }
    // Refused five times in a row: ejected for 30 s.
    for _ in 0..config.consecutive_failures {
        refuse(&set[2], now);
    }
    assert!(set[2].is_ejected(now) && set[2].is_unreachable());
    lab.clock.advance(ms(500));
    assert_eq!(check_health(&lab, &[answers(200, 1)]), 1);
    let now = lab.clock.now();
    assert!(!set[2].is_unreachable() && !set[2].is_failing());
    assert!(
        !set[2].is_ejected(now),
        "its ejection is over long before 30 s"
    );
    assert!(
        !set[2].rejoin_if_back(Some(ms(50)), now),
        "its return was told once, by the health check"
    );
    assert!(set[2].share(now) < 0.2, "it ramps up again (slow start)");
    let peers = lab.replica(set[0].address).latency;
    assert!(peers <= ms(2), "{peers:?}");
    assert_eq!(
        lab.replica(set[2].address).latency,
        peers,
        "its peers' estimate"
    );
    // The next round sends nothing: no replica is unreachable.
    assert_eq!(check_health(&lab, &[]), 0);
    assert_eq!(lab.sent().len(), 1);
}

#[test]
fn a_health_check_that_answers_late_or_with_an_error_does_not_bring_a_replica_back() {
    let lab = lab(checked(), 3);
    let set = replicas_of(&lab);
    refuse(&set[0], lab.clock.now());
    let timeout = crate::upstream::health_check::HEALTH_CHECK_TIMEOUT;
    let late = answers(200, timeout.as_millis() as u64 + 100);
    assert_eq!(check_health(&lab, &[late]), 0);
    assert_eq!(lab.clock.elapsed(), timeout, "given up at its timeout");
    assert_eq!(check_health(&lab, &[answers(503, 1)]), 0);
    assert!(set[0].is_unreachable());
}

/// Refused once (not ejected), then found back by a health check: the lab's returning replica.
fn checked_back(lab: &Lab) -> Arc<Replica> {
    let set = replicas_of(lab);
    let now = lab.clock.now();
    for replica in &set[..2] {
        replica.begin(now);
        replica.end(super::AttemptEnd::Succeeded, ms(10), now, None);
    }
    refuse(&set[2], now);
    assert!(!set[2].is_ejected(now), "one refusal does not eject");
    assert_eq!(check_health(lab, &[answers(200, 1)]), 1);
    set[2].clone()
}

#[test]
fn a_replica_found_back_by_a_health_check_ramps_up_even_if_it_was_not_ejected() {
    let lab = lab(checked(), 3);
    let back = checked_back(&lab);
    assert!(
        back.share(lab.clock.now()) < 0.2,
        "at first a tenth of a share"
    );
    lab.clock
        .advance(crate::upstream::balance::SLOW_START_WINDOW);
    assert_eq!(
        back.share(lab.clock.now()),
        1.0,
        "a full share after its slow start"
    );
}

#[test]
fn while_it_settles_a_returning_replicas_estimate_is_its_latest_answer() {
    let lab = lab(checked(), 3);
    let back = checked_back(&lab);
    let back_at = lab.clock.now();
    let answer = |latency: Duration| {
        let now = lab.clock.now();
        back.begin(now);
        back.end(super::AttemptEnd::Succeeded, latency, now, None);
        lab.replica(back.address).latency
    };
    // A cold answer, then a warm one: the cold one is not kept as a peak.
    assert_eq!(answer(ms(30)), ms(30));
    lab.clock.advance(ms(10));
    assert_eq!(answer(ms(9)), ms(9));
    // Its share is full after its slow start, and its answers still replace its estimate: a
    // slow one, then a fast one, is the fast one.
    lab.clock
        .advance(crate::upstream::balance::SLOW_START_WINDOW);
    assert_eq!(back.share(lab.clock.now()), 1.0);
    assert_eq!(answer(ms(30)), ms(30));
    assert_eq!(answer(ms(9)), ms(9));
    // From the end of its settling, peak EWMA again: a slow answer is believed at once, and a
    // fast one only moves the estimate part of the way (not at all in the same instant).
    let settled_at = back_at + crate::upstream::balance::SETTLE_WINDOW;
    lab.clock.advance(settled_at - lab.clock.now());
    assert_eq!(answer(ms(30)), ms(30));
    assert_eq!(answer(ms(9)), ms(30));
}
