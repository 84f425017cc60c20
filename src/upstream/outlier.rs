//! Outlier ejection: a replica that keeps failing is taken out of rotation for a while, longer
//! each time it is taken out again.
//!
//! Balancing on latency alone has a blind spot: a replica that refuses connections answers
//! *fast*, so a latency-driven balancer likes it best (the "black hole" of load balancing).
//! Ejection watches outcomes instead. After `consecutive_failures` failed attempts in a row
//! (connect refused, timeout, 5xx) the replica is ejected for `base_ejection`; if it is
//! ejected again, for twice as long, and so on up to `max_ejection`. When the time has passed
//! it is back in rotation on probation, with no probe of its own: the next real attempt is the
//! test. If it fails before any attempt has succeeded, the replica goes out again at once, for
//! twice as long (Finagle's failure accrual does the same: after its dead time one request
//! goes through, and a failure marks the service dead again). Without probation a replica that
//! is still dead would take another `consecutive_failures` attempts every time it came back.
//!
//! Prior art: Envoy's outlier detection, `consecutive_5xx` (default 5), `base_ejection_time`
//! (default 30 s; the ejection lasts `base_ejection_time × times ejected`), `max_ejection_time`
//! (default 300 s) and `max_ejection_percent` (default 10 %). We double instead of multiplying
//! by the count, so a flapping replica backs off faster, and we cap ejections with "never all"
//! instead of a percentage: with three replicas a percentage is too coarse to say what we mean.
//! Finagle's `FailFast` and failure accrual (`FailureAccrualFactory`, default 5 consecutive
//! failures) and HAProxy's `observe layer7` with `error-limit` follow the same idea.
//!
//! "Never all": if every replica fails at once the fault is probably not in the replicas (A's
//! database is down, B's network is cut) and ejecting them all would leave nothing to call.
//! That case is the circuit breaker's (`breaker.rs`), which fails fast *and* probes. nginx's
//! `max_fails` ejects every server in that case, which is why it answers 1.4 % of calls in the
//! "flaky" row of `bench/scenarios.sh`. The set of replicas asks [`may_eject`] before each
//! ejection.
//!
//! While ejected, a replica gets no traffic but a rare probe from the balancer (one attempt in
//! `balance::FAILING_PROBE_EVERY` choices, as for one whose latest attempt failed): a probe
//! that succeeds ends the ejection at once ([`Outlier::record_probe_success`]), so that a replica restarted during a long ejection is
//! back within a probe rather than when its doubled time runs out. A probe that fails changes
//! nothing: it was ejected for exactly that. A replica that refused a connection gets no
//! probe: nothing listens there, and B's own health checks (`health_check.rs`, as HAProxy's
//! `check` or Envoy's health checker) find it back without spending a call.
//!
//! Back in rotation, a replica is *returning*: the balancer restarts its load estimate from its
//! peers' and ramps its share up (`balance.rs`, "a replica's return"). [`Outlier::take_return`]
//! tells the balancer once per ejection that this moment has come, and
//! [`Outlier::back_since`] when it came.
//!
//! When does a replica's record clear? Its count of consecutive failures, at its first success.
//! Its ejection multiplier, once it has stayed in rotation for `max_ejection` after its last
//! ejection ended: a replica that has behaved for as long as the longest ejection is treated as
//! new. (Envoy lowers the multiplier by one for each detection interval the host stays healthy;
//! resetting at once is simpler to reason about and, at lab scale, indistinguishable.)

use std::time::{Duration, Instant};

/// Consecutive failures that eject a replica: Envoy's `consecutive_5xx` default and Finagle's
/// failure accrual default. Fewer would eject a healthy replica on a short run of bad luck
/// (with 20 % of answers failing, five given attempts all fail with odds of 1 in 3,125, so a
/// replica taking 100 attempts a second is ejected for 1 s about every 40 s); more would send
/// more calls to a dead replica before it goes.
pub const DEFAULT_CONSECUTIVE_FAILURES: u32 = 5;

/// The first ejection's length. Envoy's is 30 s, sized for fleets where a replica that failed
/// is likely to stay broken; ours is short so that a learner who restarts a replica sees it
/// back within a second, and a wrong ejection costs little.
pub const DEFAULT_BASE_EJECTION: Duration = Duration::from_secs(1);

/// The longest ejection: after five ejections in a row (1, 2, 4, 8, 16 s) a replica that is
/// still broken is tried about twice a minute.
pub const DEFAULT_MAX_EJECTION: Duration = Duration::from_secs(30);

/// When a replica is ejected and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierConfig {
    /// Failed attempts in a row that eject a replica. 0 behaves like 1.
    pub consecutive_failures: u32,
    /// Length of the first ejection; each further one in a row doubles it.
    pub base_ejection: Duration,
    /// The longest an ejection may last.
    pub max_ejection: Duration,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            consecutive_failures: DEFAULT_CONSECUTIVE_FAILURES,
            base_ejection: DEFAULT_BASE_EJECTION,
            max_ejection: DEFAULT_MAX_EJECTION,
        }
    }
}

/// The ejection record of one replica.
#[derive(Debug, Clone, Default)]
pub struct Outlier {
    /// Failed attempts since the last success or ejection.
    consecutive: u32,
    /// Ejections in a row: the multiplier of the next ejection's length.
    ejections: u32,
    /// The end of the latest ejection (it may have passed).
    ejected_until: Option<Instant>,
    /// When the latest ejection began: an attempt sent after it is a probe.
    ejected_at: Option<Instant>,
    /// When the multiplier is forgotten if no ejection comes before: `max_ejection` after the
    /// latest ejection ends. Kept here because `record_success` is not given the config.
    forgiven_at: Option<Instant>,
    /// Back from an ejection with no success since: the next failure ejects it again.
    on_probation: bool,
    /// Ejected, and the balancer has not yet been told that it is back (see `take_return`).
    return_untold: bool,
}

impl Outlier {
    /// A replica with a clean record, in rotation.
    pub fn new() -> Outlier {
        Outlier::default()
    }

    /// Whether the replica is out of rotation at `now`.
    pub fn is_ejected(&self, now: Instant) -> bool {
        self.ejected_until.is_some_and(|until| now < until)
    }

    /// Whether the replica is back in rotation after an ejection and has not answered well
    /// since: its next attempt is its test, and one failure ejects it again.
    pub fn is_on_probation(&self, now: Instant) -> bool {
        self.on_probation && !self.is_ejected(now)
    }

    /// The end of the latest ejection, which may already have passed (see [`is_ejected`]).
    ///
    /// [`is_ejected`]: Outlier::is_ejected
    pub fn ejected_until(&self) -> Option<Instant> {
        self.ejected_until
    }

    /// Once per ejection, when it has ended: true, and the balancer welcomes the replica back
    /// (its estimate from its peers', its slow start). False while ejected, and after.
    pub fn take_return(&mut self, now: Instant) -> bool {
        let back = self.return_untold && !self.is_ejected(now);
        if back {
            self.return_untold = false;
        }
        back
    }

    /// When the latest ejection ended, if it has (for the slow start's ramp).
    pub fn back_since(&self, now: Instant) -> Option<Instant> {
        self.ejected_until.filter(|&until| until <= now)
    }

    /// How many times in a row the replica has been ejected (the multiplier; for metrics).
    pub fn ejections(&self) -> u32 {
        self.ejections
    }

    /// A successful attempt: the run of failures is broken. A success that arrives while the
    /// replica is ejected (an attempt sent before the ejection) does not end the ejection: one
    /// late answer says little about the replica now.
    pub fn record_success(&mut self, now: Instant) {
        self.consecutive = 0;
        if !self.is_ejected(now) {
            self.on_probation = false;
        }
        self.forgive_if_calm(now);
    }

    /// A successful attempt that was sent at `sent`. If it was sent while the replica was
    /// ejected (a probe, not an attempt that was already out when it went), the ejection ends
    /// now; the replica stays on probation. Returns whether it ended one.
    pub fn record_probe_success(&mut self, sent: Instant, now: Instant) -> bool {
        let probe = self.is_ejected(now) && self.ejected_at.is_some_and(|at| sent >= at);
        if probe {
            self.ejected_until = Some(now);
            self.consecutive = 0;
        }
        probe
    }

    /// A failed attempt (connect, timeout, 5xx). Returns true when this failure ejects the
    /// replica. `may_eject` is the set's answer to "may one more replica go out?" (see
    /// [`may_eject`]); when it says no, the failures keep counting, and the next failure after
    /// a replica comes back ejects this one.
    ///
    /// A failure that arrives while the replica is already ejected (an attempt sent before the
    /// ejection, reporting late) is not counted: it would only eject it again for something
    /// it was already ejected for.
    pub fn record_failure(
        &mut self,
        now: Instant,
        config: &OutlierConfig,
        may_eject: bool,
    ) -> bool {
        if self.is_ejected(now) {
            return false;
        }
        self.forgive_if_calm(now);
        self.consecutive = self.consecutive.saturating_add(1);
        let enough = self.consecutive >= config.consecutive_failures || self.on_probation;
        if !enough || !may_eject {
            return false;
        }
        self.eject(now, config);
        true
    }

    fn eject(&mut self, now: Instant, config: &OutlierConfig) {
        self.ejections = self.ejections.saturating_add(1);
        let until = now + ejection_time(self.ejections, config);
        self.ejected_until = Some(until);
        self.ejected_at = Some(now);
        self.forgiven_at = Some(until + config.max_ejection);
        self.consecutive = 0;
        self.on_probation = true;
        self.return_untold = true;
    }

    /// Forgets the multiplier once the replica has stayed in rotation for `max_ejection`.
    fn forgive_if_calm(&mut self, now: Instant) {
        if self.forgiven_at.is_some_and(|at| now >= at) {
            self.ejections = 0;
            self.on_probation = false;
            self.forgiven_at = None;
        }
    }
}

/// The length of the `ejections`-th ejection in a row: `base × 2^(ejections - 1)`, at most
/// `max`. (For 0, the base.)
pub fn ejection_time(ejections: u32, config: &OutlierConfig) -> Duration {
    let mut time = config.base_ejection;
    for _ in 1..ejections {
        if time >= config.max_ejection {
            break;
        }
        time = time.saturating_mul(2);
    }
    time.min(config.max_ejection)
}

/// Never all: at most all but one replica ejected on this count alone. `ejected_now` is how
/// many of the `total` replicas are ejected at this moment.
pub fn may_eject(ejected_now: usize, total: usize) -> bool {
    ejected_now + 1 < total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// Records `n` failures at `now`, allowed to eject; returns whether the last one ejected.
    fn fail(outlier: &mut Outlier, n: u32, now: Instant) -> bool {
        let config = OutlierConfig::default();
        let mut ejected = false;
        for _ in 0..n {
            ejected = outlier.record_failure(now, &config, true);
        }
        ejected
    }

    #[test]
    fn defaults() {
        let config = OutlierConfig::default();
        assert_eq!(config.consecutive_failures, 5);
        assert_eq!(config.base_ejection, secs(1));
        assert_eq!(config.max_ejection, secs(30));
    }

    #[test]
    fn a_new_replica_is_in_rotation() {
        let t0 = Instant::now();
        let outlier = Outlier::new();
        assert!(!outlier.is_ejected(t0));
        assert_eq!(outlier.ejected_until(), None);
        assert_eq!(outlier.ejections(), 0);
    }

    #[test]
    fn four_failures_do_not_eject() {
        let t0 = Instant::now();
        let mut outlier = Outlier::new();
        assert!(!fail(&mut outlier, 4, t0));
        assert!(!outlier.is_ejected(t0));
    }

    #[test]
    fn the_fifth_consecutive_failure_ejects_for_the_base_time() {
        let t0 = Instant::now();
        let mut outlier = Outlier::new();
        fail(&mut outlier, 4, t0);
        assert!(fail(&mut outlier, 1, t0));
        assert!(outlier.is_ejected(t0));
        assert_eq!(outlier.ejected_until(), Some(t0 + secs(1)));
        assert_eq!(outlier.ejections(), 1);
    }

    #[test]
    fn a_success_breaks_the_run() {
        let t0 = Instant::now();
        let mut outlier = Outlier::new();
        fail(&mut outlier, 4, t0);
        outlier.record_success(t0);
        assert!(!fail(&mut outlier, 4, t0));
        assert!(fail(&mut outlier, 1, t0));
    }

    #[test]
    fn back_in_rotation_exactly_when_the_time_has_passed() {
        let t0 = Instant::now();
        let mut outlier = Outlier::new();
        fail(&mut outlier, 5, t0);
        assert!(outlier.is_ejected(t0 + ms(999)));
        assert!(!outlier.is_ejected(t0 + secs(1)));
    }

    #[test]
    fn late_failures_while_ejected_are_not_counted() {
        let t0 = Instant::now();
        let mut outlier = Outlier::new();
        fail(&mut outlier, 5, t0);
        assert!(!fail(&mut outlier, 10, t0 + ms(500)));
        assert_eq!(outlier.ejected_until(), Some(t0 + secs(1)));
        assert_eq!(outlier.ejections(), 1);
        // And they did not count toward the next ejection either.
        let back = t0 + secs(1);
        outlier.record_success(back); // off probation
        assert!(!fail(&mut outlier, 4, back));
    }

    #[test]
    fn back_from_an_ejection_one_failure_ejects_again_until_a_success() {
        let t0 = Instant::now();
        let mut outlier = Outlier::new();
        fail(&mut outlier, 5, t0);
        assert!(
            !outlier.is_on_probation(t0),
            "ejected, not yet on probation"
        );
        let back = t0 + secs(1);
        assert!(!outlier.is_ejected(back));
        assert!(outlier.is_on_probation(back));
        assert!(
            fail(&mut outlier, 1, back),
            "on probation: the first failure"
        );
        assert_eq!(outlier.ejected_until(), Some(back + secs(2)));
        let back = back + secs(2);
        outlier.record_success(back);
        assert!(!outlier.is_on_probation(back), "a success ends probation");
        assert!(!fail(&mut outlier, 4, back), "a success ends probation");
        assert!(
            fail(&mut outlier, 1, back),
            "then five in a row, as for anyone"
        );
    }

    #[test]
    fn a_late_success_does_not_end_an_ejection() {
        let t0 = Instant::now();
        let mut outlier = Outlier::new();
        fail(&mut outlier, 5, t0);
        outlier.record_success(t0 + ms(100));
        assert!(outlier.is_ejected(t0 + ms(100)));
    }

    #[test]
    fn repeated_ejections_double() {
        let t0 = Instant::now();
        let mut outlier = Outlier::new();
        let mut now = t0;
        for expected in [1, 2, 4, 8, 16] {
            // Five to go out the first time; back on probation, one is enough.
            let failures = if expected == 1 { 5 } else { 1 };
            assert!(fail(&mut outlier, failures, now));
            let until = outlier.ejected_until().unwrap();
            assert_eq!(until - now, secs(expected));
            now = until; // back in rotation, and failing again at once
        }
        assert_eq!(outlier.ejections(), 5);
    }

    #[test]
    fn ejections_cap_at_the_maximum() {
        let t0 = Instant::now();
        let mut outlier = Outlier::new();
        let mut now = t0;
        let mut lengths = Vec::new();
        for _ in 0..8 {
            fail(&mut outlier, 5, now);
            let until = outlier.ejected_until().unwrap();
            lengths.push((until - now).as_secs());
            now = until;
        }
        assert_eq!(lengths, [1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn ejection_time_formula() {
        let config = OutlierConfig::default();
        assert_eq!(ejection_time(0, &config), secs(1));
        assert_eq!(ejection_time(1, &config), secs(1));
        assert_eq!(ejection_time(3, &config), secs(4));
        assert_eq!(ejection_time(6, &config), secs(30));
        assert_eq!(ejection_time(u32::MAX, &config), secs(30));
    }

    #[test]
    fn the_multiplier_is_forgotten_after_max_ejection_in_rotation() {
        let t0 = Instant::now();
        let mut outlier = Outlier::new();
        fail(&mut outlier, 5, t0); // 1 s
        fail(&mut outlier, 5, t0 + secs(1)); // 2 s, ends at t0 + 3 s
        assert_eq!(outlier.ejections(), 2);
        // In rotation from 3 s; a success just before 3 + 30 s keeps the multiplier...
        outlier.record_success(t0 + secs(32));
        assert_eq!(outlier.ejections(), 2);
        // ...and one at 3 + 30 s forgets it.
        outlier.record_success(t0 + secs(33));
        assert_eq!(outlier.ejections(), 0);
        fail(&mut outlier, 5, t0 + secs(40));
        assert_eq!(outlier.ejected_until(), Some(t0 + secs(41)));
    }

    #[test]
    fn the_multiplier_is_forgotten_even_without_a_success() {
        // A replica that was calm for long (no calls at all) and then fails starts over.
        let t0 = Instant::now();
        let mut outlier = Outlier::new();
        fail(&mut outlier, 5, t0);
        fail(&mut outlier, 5, t0 + secs(1)); // ends at t0 + 3 s
        let later = t0 + secs(100);
        assert!(fail(&mut outlier, 5, later));
        assert_eq!(outlier.ejections(), 1);
        assert_eq!(outlier.ejected_until(), Some(later + secs(1)));
    }

    #[test]
    fn a_refused_ejection_keeps_counting() {
        let t0 = Instant::now();
        let config = OutlierConfig::default();
        let mut outlier = Outlier::new();
        for _ in 0..7 {
            assert!(!outlier.record_failure(t0, &config, false));
        }
        assert!(!outlier.is_ejected(t0));
        // Once the set allows it, the next failure ejects at once.
        assert!(outlier.record_failure(t0, &config, true));
    }

    #[test]
    fn a_custom_threshold() {
        let t0 = Instant::now();
        let config = OutlierConfig {
            consecutive_failures: 2,
            ..OutlierConfig::default()
        };
        let mut outlier = Outlier::new();
        assert!(!outlier.record_failure(t0, &config, true));
        assert!(outlier.record_failure(t0, &config, true));
    }

    #[test]
    fn the_return_is_told_once_when_the_ejection_ends() {
        let t0 = Instant::now();
        let mut outlier = Outlier::new();
        assert!(
            !outlier.take_return(t0),
            "never ejected: nothing to return from"
        );
        fail(&mut outlier, 5, t0);
        assert!(!outlier.take_return(t0 + ms(999)), "still ejected");
        assert_eq!(outlier.back_since(t0 + ms(999)), None);
        let back = t0 + secs(1);
        assert!(outlier.take_return(back + ms(5)));
        assert!(!outlier.take_return(back + ms(6)), "once");
        assert_eq!(outlier.back_since(back + ms(6)), Some(back));
    }

    #[test]
    fn a_probe_that_succeeds_ends_the_ejection() {
        let t0 = Instant::now();
        let mut outlier = Outlier::new();
        fail(&mut outlier, 5, t0);
        let probe_sent = t0 + ms(300);
        let answered = probe_sent + ms(2);
        assert!(outlier.record_probe_success(probe_sent, answered));
        assert!(!outlier.is_ejected(answered));
        assert!(outlier.is_on_probation(answered), "still to prove itself");
        assert!(
            outlier.take_return(answered),
            "the balancer welcomes it back"
        );
        assert_eq!(outlier.back_since(answered), Some(answered));
        assert!(
            fail(&mut outlier, 1, answered),
            "one failure on probation ejects it"
        );
        assert_eq!(outlier.ejected_until(), Some(answered + secs(2)));
    }

    #[test]
    fn a_late_success_is_no_probe() {
        // Sent before the ejection, answering during it: says little of the replica now.
        let t0 = Instant::now();
        let mut outlier = Outlier::new();
        fail(&mut outlier, 5, t0 + ms(10));
        assert!(!outlier.record_probe_success(t0, t0 + ms(20)));
        assert!(outlier.is_ejected(t0 + ms(20)));
        assert!(
            !outlier.record_probe_success(t0 + secs(2), t0 + secs(2)),
            "not ejected"
        );
    }

    #[test]
    fn each_ejection_has_its_return() {
        let t0 = Instant::now();
        let mut outlier = Outlier::new();
        fail(&mut outlier, 5, t0);
        assert!(outlier.take_return(t0 + secs(1)));
        fail(&mut outlier, 1, t0 + secs(1)); // on probation: out again for 2 s
        assert!(!outlier.take_return(t0 + secs(2)));
        assert!(outlier.take_return(t0 + secs(3)));
        assert_eq!(outlier.back_since(t0 + secs(3)), Some(t0 + secs(3)));
    }

    #[test]
    fn never_all_ejected() {
        assert!(!may_eject(0, 0));
        assert!(!may_eject(0, 1));
        assert!(may_eject(0, 2));
        assert!(!may_eject(1, 2));
        assert!(may_eject(1, 3));
        assert!(!may_eject(2, 3));
        assert!(!may_eject(3, 3));
    }

    #[test]
    fn three_failing_replicas_leave_one_in_rotation() {
        // The set's loop: every replica fails five times; only two go out.
        let t0 = Instant::now();
        let config = OutlierConfig::default();
        let mut replicas = [Outlier::new(), Outlier::new(), Outlier::new()];
        for _ in 0..5 {
            for i in 0..replicas.len() {
                let ejected_now = replicas.iter().filter(|r| r.is_ejected(t0)).count();
                let allowed = may_eject(ejected_now, replicas.len());
                replicas[i].record_failure(t0, &config, allowed);
            }
        }
        let in_rotation = replicas.iter().filter(|r| !r.is_ejected(t0)).count();
        assert_eq!(in_rotation, 1);
    }
}
