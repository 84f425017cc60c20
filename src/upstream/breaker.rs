//! Circuit breaker over A as a whole: when calls keep failing, stop calling and answer at once;
//! let one probe through now and then; close when a probe succeeds.
//!
//! Retries and ejection help when *some* attempts fail. When A as a whole is down they make
//! things worse: every call still waits for its deadline (B holds a task and a connection for
//! a second per call), and every retry adds load on a service that is already failing. A
//! breaker notices that most recent calls failed and *opens*: calls are refused at once (B
//! answers `503` with `error_kind` `circuit_open` in well under a millisecond) and A gets no
//! traffic but an occasional probe, which is what lets it recover.
//!
//! ```text
//!            failures/calls ≥ ratio              open_for has passed
//!   Closed ─────────────────────────► Open ───────────────────────────► HalfOpen
//!     ▲      (over the last `window`    ▲      (the next call is          │
//!     │       calls, ≥ min_calls)       │       the one probe)            │
//!     │                                 └──────── probe failed ───────────┤
//!     └────────────────────────────────────────── probe succeeded ────────┘
//! ```
//!
//! Prior art: Hystrix (`circuitBreaker.requestVolumeThreshold` 20, `errorThresholdPercentage`
//! 50, `sleepWindowInMilliseconds` 5000, one trial request when half-open) and resilience4j's
//! count-based sliding window (`slidingWindowSize`, `minimumNumberOfCalls`,
//! `failureRateThreshold`, `waitDurationInOpenState`); Finagle's `FailFastFactory`, which marks
//! an endpoint dead after a failed connect and probes it in the background. Our window and
//! ratio are Hystrix's; our open time is much shorter, because the "recovery" scenario of
//! `bench/scenarios.sh` asks for the first 200 within one second of A's return, and all
//! within two.
//!
//! Two details that are easy to get wrong:
//!
//! * **A probe that never reports.** Its caller may be dropped (the client hung up) before the
//!   outcome is recorded. Half-open with a probe "out" forever would reject every call forever;
//!   so a probe not heard from within [`PROBE_TIMEOUT`] is presumed lost, and the next call is
//!   a new probe. (The caller should still report a dropped probe as a failure, e.g. from a
//!   guard's `Drop`; the timeout is the safety net.)
//! * **Late outcomes.** Calls admitted while Closed may report after the breaker opened: they
//!   were sent before the decision, so they say nothing about the probe and are ignored (they
//!   neither close the breaker nor restart its open time). Likewise a probe that reports when
//!   the breaker is no longer half-open (a lost probe that turned up after its replacement had
//!   decided) is ignored. One case does count: a Call admitted before the breaker opened that
//!   reports after it closed again lands in the new window. That takes a call outliving
//!   `open_for` plus a probe; it is rare and at worst one stale outcome among `window`.
//!
//! The breaker records what the caller tells it; which outcome to tell is the caller's choice.
//! We recommend the outcome of the whole call (after its retries), not of each attempt: the
//! question the breaker answers is "is A as a whole failing B's callers?".

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

/// Calls in the window: Hystrix's request volume threshold. Enough that one unlucky burst does
/// not open the breaker, few enough that it opens within a fraction of a second at lab load.
pub const DEFAULT_WINDOW: usize = 20;

/// Calls needed before the breaker may open: the whole window, so a failure ratio is never
/// judged on a handful of calls (two failures out of three is not an outage).
pub const DEFAULT_MIN_CALLS: usize = 20;

/// Failures / calls in the window that open the breaker: Hystrix's and resilience4j's 50 %.
/// At half the calls failing, B's callers are better served by a fast `503` than a slow one.
pub const DEFAULT_FAILURE_RATIO: f64 = 0.5;

/// How long the breaker stays open before it lets a probe through. Short, so that B notices
/// A's recovery quickly: a probe goes out within 0.7 s of A coming back, and the first 200
/// follows within 1 s. Long enough that a black hole is probed less than once a second: each
/// probe there waits out its attempt's deadline, a third of the call's 1 s with `--resilient`,
/// so probes go out once per 0.7 s + 0.33 s (once per 1.7 s with the whole 1 s deadline).
pub const DEFAULT_OPEN_FOR: Duration = Duration::from_millis(700);

/// How long a probe may stay out unheard before it is presumed lost (its caller was dropped)
/// and the next call becomes a new probe. Twice B's default deadline of 1 s: any live probe
/// reports within its deadline, so a live probe is never doubled, and a lost one wedges the
/// breaker for at most 2 s.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// When the breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    /// How many of the latest call outcomes are remembered. At least 1.
    pub window: usize,
    /// Outcomes needed in the window before it may open. Clamped to `1..=window`.
    pub min_calls: usize,
    /// Failures / outcomes in the window at or above which it opens.
    pub failure_ratio: f64,
    /// Time open before the next call is let through as a probe.
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            window: DEFAULT_WINDOW,
            min_calls: DEFAULT_MIN_CALLS,
            failure_ratio: DEFAULT_FAILURE_RATIO,
            open_for: DEFAULT_OPEN_FOR,
        }
    }
}

/// The breaker's state, as metrics show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through; outcomes are counted.
    Closed,
    /// Calls are refused at once.
    Open,
    /// One probe is (or may next be) let through; other calls are refused.
    HalfOpen,
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        })
    }
}

/// The breaker's answer to "may this call go to A?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Yes, an ordinary call: report its outcome with `record(Admission::Call, ..)`.
    Call,
    /// Yes, as the one probe: report its outcome with `record(Admission::Probe, ..)`.
    Probe,
    /// No: answer `503 circuit_open` at once. Nothing to report.
    Reject,
}

/// Where the breaker is, with the instant each state needs.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Closed,
    /// Refusing calls until `until`.
    Open {
        until: Instant,
    },
    /// A probe went out at `probe_sent` and has not reported.
    HalfOpen {
        probe_sent: Instant,
    },
}

/// The circuit breaker over A as a whole.
#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    phase: Phase,
    /// The latest outcomes while closed, oldest first: `true` for a failure.
    window: VecDeque<bool>,
    /// Failures in `window`, kept so a check is O(1).
    failures: usize,
    times_opened: u64,
}

impl Breaker {
    /// A closed breaker with an empty window. A config that cannot be met is made to fit: a
    /// window of at least 1, and `min_calls` within `1..=window` (more than the window holds
    /// would never open).
    pub fn new(config: BreakerConfig) -> Breaker {
        let window = config.window.max(1);
        let config = BreakerConfig {
            window,
            min_calls: config.min_calls.clamp(1, window),
            ..config
        };
        Breaker {
            config,
            phase: Phase::Closed,
            window: VecDeque::with_capacity(window),
            failures: 0,
            times_opened: 0,
        }
    }

    /// May a call go to A at `now`? Closed: `Call`. Open before `open_for` has passed:
    /// `Reject`. After it: half-open, and this call is the `Probe`; while the probe is out,
    /// `Reject`, until it reports or [`PROBE_TIMEOUT`] passes (then the next call is a new
    /// probe).
    pub fn admit(&mut self, now: Instant) -> Admission {
        match self.phase {
            Phase::Closed => Admission::Call,
            Phase::Open { until } if now < until => Admission::Reject,
            Phase::HalfOpen { probe_sent } if now < probe_sent + PROBE_TIMEOUT => Admission::Reject,
            // Open long enough, or the last probe is presumed lost: send a probe.
            Phase::Open { .. } | Phase::HalfOpen { .. } => {
                self.phase = Phase::HalfOpen { probe_sent: now };
                Admission::Probe
            }
        }
    }

    /// The outcome of a call that `admit` let through, with the admission it got.
    ///
    /// * `Call` while closed: into the window; the breaker opens when the window holds at
    ///   least `min_calls` outcomes and failures / outcomes ≥ `failure_ratio`.
    /// * `Call` while open or half-open: ignored (sent before the breaker opened).
    /// * `Probe` while half-open: success closes the breaker with an empty window; failure
    ///   opens it again for `open_for`.
    /// * `Probe` in any other state: ignored (a lost probe reporting after the matter was
    ///   decided).
    /// * `Reject`: ignored; a refused call has no outcome.
    pub fn record(&mut self, admission: Admission, success: bool, now: Instant) {
        match (admission, self.phase) {
            (Admission::Call, Phase::Closed) => self.push(success, now),
            (Admission::Probe, Phase::HalfOpen { .. }) if success => self.close(),
            (Admission::Probe, Phase::HalfOpen { .. }) => self.open(now),
            _ => {}
        }
    }

    /// The state at `now`, for metrics. Open whose time has passed shows as half-open: the
    /// next call will be the probe.
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.phase {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { until } if now < until => BreakerState::Open,
            Phase::Open { .. } | Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// How many times the breaker has opened from closed (for metrics). A failed probe that
    /// keeps it open is not counted again: this counts outages noticed, not probes.
    pub fn times_opened(&self) -> u64 {
        self.times_opened
    }

    /// One outcome into the window while closed; opens the breaker if the window says so.
    fn push(&mut self, success: bool, now: Instant) {
        if self.window.len() == self.config.window && self.window.pop_front() == Some(true) {
            self.failures -= 1;
        }
        self.window.push_back(!success);
        if !success {
            self.failures += 1;
        }
        if self.should_open() {
            self.times_opened += 1;
            self.open(now);
        }
    }

    fn should_open(&self) -> bool {
        let calls = self.window.len();
        calls >= self.config.min_calls
            && self.failures as f64 / calls as f64 >= self.config.failure_ratio
    }

    fn open(&mut self, now: Instant) {
        self.phase = Phase::Open {
            until: now + self.config.open_for,
        };
    }

    fn close(&mut self) {
        self.phase = Phase::Closed;
        self.window.clear();
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// The default time the breaker stays open.
    const OPEN: Duration = DEFAULT_OPEN_FOR;

    /// Admits and records `n` calls at `now` with the given outcome.
    fn calls(breaker: &mut Breaker, n: usize, success: bool, now: Instant) {
        for _ in 0..n {
            assert_eq!(breaker.admit(now), Admission::Call);
            breaker.record(Admission::Call, success, now);
        }
    }

    /// A default breaker opened at `t0` by 20 failures.
    fn opened(t0: Instant) -> Breaker {
        let mut breaker = Breaker::new(BreakerConfig::default());
        calls(&mut breaker, 20, false, t0);
        assert_eq!(breaker.state(t0), BreakerState::Open);
        breaker
    }

    #[test]
    fn defaults() {
        let config = BreakerConfig::default();
        assert_eq!(config.window, 20);
        assert_eq!(config.min_calls, 20);
        assert_eq!(config.failure_ratio, 0.5);
        assert_eq!(config.open_for, ms(700));
    }

    #[test]
    fn state_names() {
        assert_eq!(BreakerState::Closed.to_string(), "closed");
        assert_eq!(BreakerState::Open.to_string(), "open");
        assert_eq!(BreakerState::HalfOpen.to_string(), "half_open");
    }

    #[test]
    fn a_new_breaker_is_closed_and_admits() {
        let t0 = Instant::now();
        let mut breaker = Breaker::new(BreakerConfig::default());
        assert_eq!(breaker.state(t0), BreakerState::Closed);
        assert_eq!(breaker.admit(t0), Admission::Call);
        assert_eq!(breaker.times_opened(), 0);
    }

    #[test]
    fn does_not_open_before_min_calls() {
        let t0 = Instant::now();
        let mut breaker = Breaker::new(BreakerConfig::default());
        calls(&mut breaker, 19, false, t0);
        assert_eq!(breaker.state(t0), BreakerState::Closed);
        assert_eq!(breaker.admit(t0), Admission::Call);
    }

    #[test]
    fn opens_at_min_calls_when_all_failed() {
        let t0 = Instant::now();
        let mut breaker = Breaker::new(BreakerConfig::default());
        calls(&mut breaker, 20, false, t0);
        assert_eq!(breaker.state(t0), BreakerState::Open);
        assert_eq!(breaker.admit(t0), Admission::Reject);
        assert_eq!(breaker.times_opened(), 1);
    }

    #[test]
    fn opens_at_exactly_the_ratio() {
        let t0 = Instant::now();
        let mut breaker = Breaker::new(BreakerConfig::default());
        calls(&mut breaker, 10, true, t0);
        calls(&mut breaker, 9, false, t0);
        assert_eq!(breaker.state(t0), BreakerState::Closed);
        // 10 failures of 20: exactly 0.5.
        calls(&mut breaker, 1, false, t0);
        assert_eq!(breaker.state(t0), BreakerState::Open);
    }

    #[test]
    fn stays_closed_just_below_the_ratio() {
        let t0 = Instant::now();
        let mut breaker = Breaker::new(BreakerConfig::default());
        // 9 failures in every window of 20: 0.45.
        for _ in 0..10 {
            calls(&mut breaker, 11, true, t0);
            calls(&mut breaker, 9, false, t0);
        }
        assert_eq!(breaker.state(t0), BreakerState::Closed);
    }

    #[test]
    fn only_the_last_window_counts() {
        let t0 = Instant::now();
        let mut breaker = Breaker::new(BreakerConfig::default());
        // Old failures slide out as successes come in: 9 failures, then 20 successes, then 10
        // failures: the window holds 10 successes and 10 failures only at the very end.
        calls(&mut breaker, 9, false, t0);
        calls(&mut breaker, 20, true, t0);
        calls(&mut breaker, 9, false, t0);
        assert_eq!(breaker.state(t0), BreakerState::Closed);
        calls(&mut breaker, 1, false, t0);
        assert_eq!(breaker.state(t0), BreakerState::Open);
    }

    #[test]
    fn a_smaller_min_calls_opens_sooner() {
        let t0 = Instant::now();
        let config = BreakerConfig {
            min_calls: 4,
            ..BreakerConfig::default()
        };
        let mut breaker = Breaker::new(config);
        calls(&mut breaker, 1, true, t0);
        calls(&mut breaker, 2, false, t0);
        assert_eq!(breaker.state(t0), BreakerState::Closed);
        calls(&mut breaker, 1, false, t0); // 3 of 4
        assert_eq!(breaker.state(t0), BreakerState::Open);
    }

    #[test]
    fn rejects_until_open_for_has_passed() {
        let t0 = Instant::now();
        let mut breaker = opened(t0);
        assert_eq!(breaker.admit(t0 + OPEN - ms(1)), Admission::Reject);
        assert_eq!(breaker.state(t0 + OPEN - ms(1)), BreakerState::Open);
        // Once the time has passed, metrics say half-open before any call arrives.
        assert_eq!(breaker.state(t0 + OPEN), BreakerState::HalfOpen);
    }

    #[test]
    fn half_open_admits_exactly_one_probe() {
        let t0 = Instant::now();
        let mut breaker = opened(t0);
        let t1 = t0 + OPEN;
        assert_eq!(breaker.admit(t1), Admission::Probe);
        assert_eq!(breaker.state(t1), BreakerState::HalfOpen);
        for later in [0, 1, 100, 1999] {
            assert_eq!(breaker.admit(t1 + ms(later)), Admission::Reject);
        }
    }

    #[test]
    fn a_successful_probe_closes_with_an_empty_window() {
        let t0 = Instant::now();
        let mut breaker = opened(t0);
        let t1 = t0 + OPEN;
        assert_eq!(breaker.admit(t1), Admission::Probe);
        breaker.record(Admission::Probe, true, t1 + ms(1));
        assert_eq!(breaker.state(t1 + ms(1)), BreakerState::Closed);
        assert_eq!(breaker.admit(t1 + ms(1)), Admission::Call);
        // The window was emptied: 19 new failures do not reopen it.
        calls(&mut breaker, 19, false, t1 + ms(2));
        assert_eq!(breaker.state(t1 + ms(2)), BreakerState::Closed);
    }

    #[test]
    fn a_failed_probe_opens_again_for_open_for() {
        let t0 = Instant::now();
        let mut breaker = opened(t0);
        let t1 = t0 + OPEN;
        assert_eq!(breaker.admit(t1), Admission::Probe);
        let t2 = t1 + ms(1000); // the probe waited out its deadline
        breaker.record(Admission::Probe, false, t2);
        assert_eq!(breaker.state(t2), BreakerState::Open);
        assert_eq!(breaker.admit(t2 + OPEN - ms(1)), Admission::Reject);
        assert_eq!(breaker.admit(t2 + OPEN), Admission::Probe);
        // Still one outage.
        assert_eq!(breaker.times_opened(), 1);
    }

    #[test]
    fn at_most_one_probe_per_open_for_plus_probe_time() {
        // A black hole: every probe takes the 1 s deadline and fails. Count probes in 15 s,
        // offering a call every millisecond.
        let t0 = Instant::now();
        let mut breaker = opened(t0);
        let mut probe_out: Option<Instant> = None;
        let mut probes = 0;
        for step in 0..15_000 {
            let now = t0 + ms(step);
            if probe_out.is_some_and(|sent| now >= sent + ms(1000)) {
                breaker.record(Admission::Probe, false, now);
                probe_out = None;
            }
            if breaker.admit(now) == Admission::Probe {
                probes += 1;
                probe_out = Some(now);
            }
        }
        // One every 1.7 s (0.7 s open, 1 s in the hole): 9 in 15 s, well under one a second.
        assert_eq!(probes, 9);
    }

    #[test]
    fn a_lost_probe_frees_the_slot_after_the_probe_timeout() {
        let t0 = Instant::now();
        let mut breaker = opened(t0);
        let t1 = t0 + OPEN;
        assert_eq!(breaker.admit(t1), Admission::Probe);
        // The probe's caller is dropped; it never reports.
        assert_eq!(breaker.admit(t1 + PROBE_TIMEOUT - ms(1)), Admission::Reject);
        let t2 = t1 + PROBE_TIMEOUT;
        assert_eq!(breaker.admit(t2), Admission::Probe);
        assert_eq!(breaker.admit(t2), Admission::Reject);
        breaker.record(Admission::Probe, true, t2 + ms(1));
        assert_eq!(breaker.state(t2 + ms(1)), BreakerState::Closed);
    }

    #[test]
    fn late_call_outcomes_while_open_are_ignored() {
        let t0 = Instant::now();
        let mut breaker = opened(t0);
        // Calls admitted before the breaker opened report now: successes do not close it...
        breaker.record(Admission::Call, true, t0 + ms(100));
        assert_eq!(breaker.state(t0 + ms(100)), BreakerState::Open);
        // ...and failures do not restart its open time.
        breaker.record(Admission::Call, false, t0 + ms(400));
        assert_eq!(breaker.admit(t0 + OPEN), Admission::Probe);
    }

    #[test]
    fn late_call_outcomes_while_half_open_are_ignored() {
        let t0 = Instant::now();
        let mut breaker = opened(t0);
        let t1 = t0 + OPEN;
        assert_eq!(breaker.admit(t1), Admission::Probe);
        breaker.record(Admission::Call, true, t1 + ms(10));
        assert_eq!(breaker.state(t1 + ms(10)), BreakerState::HalfOpen);
        breaker.record(Admission::Call, false, t1 + ms(20));
        assert_eq!(breaker.state(t1 + ms(20)), BreakerState::HalfOpen);
        assert_eq!(breaker.admit(t1 + ms(30)), Admission::Reject);
        // The probe still decides.
        breaker.record(Admission::Probe, true, t1 + ms(40));
        assert_eq!(breaker.state(t1 + ms(40)), BreakerState::Closed);
    }

    #[test]
    fn a_probe_reporting_after_the_decision_is_ignored() {
        let t0 = Instant::now();
        let mut breaker = opened(t0);
        let t1 = t0 + OPEN;
        assert_eq!(breaker.admit(t1), Admission::Probe); // lost, as far as we know
        let t2 = t1 + PROBE_TIMEOUT;
        assert_eq!(breaker.admit(t2), Admission::Probe);
        breaker.record(Admission::Probe, true, t2 + ms(1)); // the new probe closes it
        // The first probe turns up late with a failure: the breaker stays closed.
        breaker.record(Admission::Probe, false, t2 + ms(2));
        assert_eq!(breaker.state(t2 + ms(2)), BreakerState::Closed);
        assert_eq!(breaker.admit(t2 + ms(2)), Admission::Call);
    }

    #[test]
    fn recording_a_reject_changes_nothing() {
        let t0 = Instant::now();
        let mut breaker = Breaker::new(BreakerConfig::default());
        for _ in 0..100 {
            breaker.record(Admission::Reject, false, t0);
        }
        assert_eq!(breaker.state(t0), BreakerState::Closed);
        calls(&mut breaker, 19, false, t0);
        assert_eq!(breaker.state(t0), BreakerState::Closed);
    }

    #[test]
    fn opens_again_after_closing_and_counts_each_outage() {
        let t0 = Instant::now();
        let mut breaker = opened(t0);
        let t1 = t0 + OPEN;
        breaker.admit(t1);
        breaker.record(Admission::Probe, true, t1);
        calls(&mut breaker, 20, false, t1 + ms(10));
        assert_eq!(breaker.state(t1 + ms(10)), BreakerState::Open);
        assert_eq!(breaker.times_opened(), 2);
    }

    #[test]
    fn recovery_within_two_seconds_of_a_back_from_the_dead_a() {
        // A black hole that heals: the probe sent just before A came back waits out its 1 s
        // deadline; the next probe, 0.7 s later, succeeds. Worst case from A's return to the
        // breaker closing: 1 s + 0.7 s.
        let t0 = Instant::now();
        let mut breaker = opened(t0);
        let probe = t0 + OPEN;
        assert_eq!(breaker.admit(probe), Admission::Probe);
        let a_back = probe + ms(1); // A returns just after the probe went into the hole
        breaker.record(Admission::Probe, false, probe + ms(1000));
        let next = probe + ms(1000) + OPEN;
        assert_eq!(breaker.admit(next), Admission::Probe);
        breaker.record(Admission::Probe, true, next + ms(1));
        assert_eq!(breaker.state(next + ms(1)), BreakerState::Closed);
        assert!(next + ms(1) - a_back <= ms(2000));
    }

    #[test]
    fn an_impossible_config_is_made_to_fit() {
        let t0 = Instant::now();
        let config = BreakerConfig {
            window: 0,
            min_calls: 50,
            ..BreakerConfig::default()
        };
        let mut breaker = Breaker::new(config);
        calls(&mut breaker, 1, false, t0);
        assert_eq!(breaker.state(t0), BreakerState::Open);
    }
}
