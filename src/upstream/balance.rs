//! Balancing: which replica gets the next attempt. Power of two random choices over a
//! "peak EWMA" cost per replica.
//!
//! **The cost** of a replica is its recent latency times the requests it has in flight, plus
//! one: `latency EWMA × (outstanding + 1)`. A fast replica with a queue costs as much as a slow
//! idle one, which is what a new request would feel. This is Finagle's `PeakEwma` load metric
//! (`Balancers.p2cPeakEwma`) and what Linkerd 2 balances on (tower's `PeakEwma`, default decay
//! 10 s).
//!
//! **Peak**: a sample above the current estimate replaces it at once; a sample below it only
//! moves the estimate part of the way, by the EWMA weight `w = exp(-elapsed / tau)`. The reason
//! is the asymmetry of the two mistakes. Believing a slow replica is fast sends it a whole
//! burst of traffic that will all be slow, so slowness must be believed at once. Believing a
//! fast replica is slow only costs it a little traffic for a while, so recovery may be trusted
//! slowly. Between samples the estimate decays toward zero with the same time constant: a
//! replica nobody calls becomes cheap again after a while and gets tried, so a replica that was
//! slow once is not shunned forever.
//!
//! **Power of two choices**: draw two replicas at random and take the cheaper. Always taking
//! the cheapest of all sounds better but herds: every caller sees the same cheapest replica
//! and sends it everything until its cost catches up, then all move on together. Pure random
//! ignores load. Mitzenmacher ("The Power of Two Choices in Randomized Load Balancing", 2001)
//! showed that choosing the less loaded of just two random candidates cuts the worst queue
//! from `log n / log log n` to `log log n`: nearly all the benefit of "least loaded", in O(1),
//! with the randomness that prevents herding. Finagle, Linkerd and Envoy
//! (`LEAST_REQUEST` with `choice_count` 2) all use it.
//!
//! **A replica's return.** Peak EWMA has a trap for a replica that failed and came back: its
//! estimate holds the failure penalty, decays only with wall-clock time (`tau` = 10 s), and
//! the power of two choices never picks the costliest of three, so it is never sampled and
//! never proven fast again. Four rules close the trap:
//!
//! * *It starts from its peers.* A replica back from an ejection, or answering well after
//!   failing, starts from the median estimate of its healthy peers ([`PeakEwma::rejoin`]), not
//!   from its penalty: what it did while broken says nothing of it now. gRPC's weighted round
//!   robin does the same for an endpoint without data, which gets the mean weight.
//! * *It is probed.* A replica in rotation that no choice has taken for [`PROBE_EVERY`]
//!   choices is taken by the next one ([`overdue`]), so a replica that was slow is sampled now
//!   and then; one that may have restarted (ejected, or its latest attempt failed) every
//!   [`FAILING_PROBE_EVERY`] choices or [`FAILING_PROBE_INTERVAL`], whichever comes first,
//!   so that it is found within a second at any rate of calls. The probe's
//!   answer replaces the estimate ([`PeakEwma::mark_probe`]): time alone takes seconds to wear
//!   down an old peak, and an avoided replica gets no other samples.
//! * *Its share ramps up.* For [`SLOW_START_WINDOW`] after it returns it is a candidate only
//!   part of the time, from [`SLOW_START_MIN_SHARE`] up to always ([`slow_start_share`]), so a
//!   replica that restarted cold (empty caches, a fresh runtime) is not handed a third of the
//!   traffic at once. This is Envoy's slow start (`slow_start_window`, `min_weight_percent` 10,
//!   linear with `aggression` 1), which Envoy applies to new hosts only; we apply it after an
//!   ejection too, the moment a replica most needs it.
//! * *Its estimate settles before it keeps peaks.* For [`SETTLE_WINDOW`] after it returns, each
//!   answer replaces its estimate, as a probe's does. Peak EWMA keeps a slow answer and lets it
//!   fade only with time, and its peers' estimates are peaks that have been fading for
//!   seconds: one slow answer among a returning replica's first few would make it the
//!   costliest of three for seconds, and P2C would keep it under its share all that time.

use std::time::{Duration, Instant};

/// The time constant of the moving average. Finagle's default: after 10 s without samples the
/// estimate has decayed to 37 % of its value, so a replica that was slow is tried again within
/// tens of seconds, while one slow answer among many fast ones is still remembered for a while.
pub const DEFAULT_DECAY: Duration = Duration::from_secs(10);

/// A replica in rotation that none of the last this many choices took gets the next one (a
/// probe). Rare enough to cost little: a replica that is avoided gets one call in 250 (at 300
/// calls a second, about one a second, and a slow one's probe is usually rescued by a hedge),
/// while a fair one is taken long before (a third of the choices, with three). Counted in
/// choices, not seconds, so that a quiet B does not turn into round robin. One in a hundred
/// sent a slow replica 1.0 % of the calls (the scenario's target is 0.5 %).
pub const PROBE_EVERY: u64 = 250;

/// A replica that is ejected, or whose latest attempt failed, is probed more often: it is the
/// one that may have restarted, and a restarted replica is to have its traffic back within a
/// second. One in a hundred is about three probes a second at 300 calls a second. One in
/// three hundred found replicas ejected under overload so late that the others were
/// overloaded more, and B (then without its adaptive limit) stayed down after a short trigger
/// (bench/README.md's overload section). A replica that refused a connection, nothing
/// listening there, is not probed with calls when ejection is on: B's health checks find it
/// back (`health_check.rs`).
pub const FAILING_PROBE_EVERY: u64 = 100;

/// A replica that is ejected, or whose latest attempt failed, is probed at least this often,
/// however few the choices: at a quiet B (ten calls a second), a hundred choices take ten
/// seconds, and a restarted replica is to have its traffic back within one. At 300 calls a
/// second the count comes first (a third of a second) and this never does.
pub const FAILING_PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// How long a returning replica's share takes to reach its full size. Short: it ramps to 90 %
/// in under half a second (the lab's target for a replica's return is a second), long enough
/// that a cold replica's first answers are seen before it has a full share.
pub const SLOW_START_WINDOW: Duration = Duration::from_millis(500);

/// How long a returning replica's answers replace its estimate instead of feeding its peak
/// EWMA. Its slow start (half a second) and then a second and a half at a full share: long
/// enough that it has had its share for a whole second (the target for a replica's return),
/// short next to `tau`, so that from then on it is balanced as its peers are. In the restart
/// scenario, settling for the slow start only, one run in ten took 1.4–4.4 s to reach its
/// share; settling for 2 s, none of 55 took over 0.3 s (bench/README.md, "Overload").
pub const SETTLE_WINDOW: Duration = Duration::from_secs(2);

/// A returning replica's share at the start of its slow start, as a fraction of a full one:
/// Envoy's `min_weight_percent` default, 10 %.
pub const SLOW_START_MIN_SHARE: f64 = 0.1;

/// The latency assumed for a replica that has requests out but has never answered one. It may
/// be a black hole: until it answers we do not pile onto it. One second is B's default
/// deadline, the longest an answer can take. (Finagle uses a large constant penalty here for
/// the same reason.) A replica that has never answered and has nothing out costs 0: try it.
pub const UNANSWERED_LATENCY: Duration = Duration::from_secs(1);

/// The load estimate of one replica: its peak EWMA latency and its requests in flight.
#[derive(Debug, Clone)]
pub struct PeakEwma {
    /// The time constant `tau`, in nanoseconds.
    decay_ns: f64,
    /// The estimate as of `stamp`, in nanoseconds.
    estimate_ns: f64,
    /// When the estimate was last updated (by a sample).
    stamp: Instant,
    /// Whether any answer has come back yet.
    answered: bool,
    /// A probe is out: the next measured sample replaces the estimate
    /// ([`PeakEwma::mark_probe`]).
    probed: bool,
    outstanding: usize,
}

impl PeakEwma {
    /// A replica with no history: estimate 0, nothing in flight. `decay` is the time constant
    /// `tau` of the average (see [`DEFAULT_DECAY`]).
    pub fn new(decay: Duration, now: Instant) -> PeakEwma {
        PeakEwma {
            // A zero `tau` would divide by zero; one nanosecond means "no memory".
            decay_ns: (decay.as_nanos() as f64).max(1.0),
            estimate_ns: 0.0,
            stamp: now,
            answered: false,
            probed: false,
            outstanding: 0,
        }
    }

    /// A request goes out to this replica. (`now` is not needed: only answers change the
    /// latency estimate. It is taken so every event of a request carries its time.)
    pub fn start(&mut self, _now: Instant) {
        self.outstanding += 1;
    }

    /// A request came back after `rtt` (success or failure: a timeout is a very slow answer).
    /// After a probe, this first measurement replaces the estimate.
    pub fn finish(&mut self, rtt: Duration, now: Instant) {
        self.outstanding = self.outstanding.saturating_sub(1);
        if std::mem::take(&mut self.probed) {
            self.estimate_ns = rtt.as_nanos() as f64;
            self.stamp = self.stamp.max(now);
            self.answered = true;
        } else {
            self.observe(rtt.as_nanos() as f64, now);
        }
    }

    /// A request was given up after `elapsed` (another attempt answered first): the replica
    /// was at least that slow, which the estimate may learn, but it is no measurement, and a
    /// probe's question stays open.
    pub fn give_up(&mut self, elapsed: Duration, now: Instant) {
        self.outstanding = self.outstanding.saturating_sub(1);
        self.observe(elapsed.as_nanos() as f64, now);
    }

    /// The balancer sends this replica a probe ([`overdue`]) because it has avoided it for a
    /// while: its estimate is old, built from answers that may no longer be true (a peak from
    /// a cold start, a slowness that has passed). The probe's answer replaces it. Otherwise a
    /// lower sample moves the estimate only by the weight time gives it, and a replica chosen
    /// once a second by probes keeps an old peak for several seconds after it became as fast
    /// as its peers: P2C never takes it, so it never gets the samples that would show it.
    pub fn mark_probe(&mut self) {
        self.probed = true;
    }

    /// The cost of sending this replica one more request: estimate (ns) × (outstanding + 1).
    pub fn cost(&self, now: Instant) -> f64 {
        let latency_ns = if self.answered || self.outstanding == 0 {
            self.decayed_ns(now)
        } else {
            UNANSWERED_LATENCY.as_nanos() as f64
        };
        latency_ns * (self.outstanding + 1) as f64
    }

    /// The current estimate, decayed to `now` (for metrics). Zero before the first answer.
    pub fn latency(&self, now: Instant) -> Duration {
        Duration::from_nanos(self.decayed_ns(now) as u64)
    }

    /// Whether any answer has come back yet (before one, the estimate means nothing).
    pub fn answered(&self) -> bool {
        self.answered
    }

    /// Requests sent to this replica that have not come back.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// The replica rejoins (back from an ejection, or answering after failures): its estimate
    /// restarts at `estimate`, its healthy peers' median (see [`median`]), as of `now`. What it
    /// learned while broken (failure penalties, a second for a request that never came back)
    /// is forgotten; its requests still out stay counted.
    pub fn rejoin(&mut self, estimate: Duration, now: Instant) {
        self.estimate_ns = estimate.as_nanos() as f64;
        self.stamp = self.stamp.max(now);
        self.answered = true;
    }

    /// The weight the old estimate keeps after `elapsed`: `exp(-elapsed / tau)`, 1 at once,
    /// 0.37 after one `tau`, toward 0 after many.
    fn weight(&self, now: Instant) -> f64 {
        let elapsed_ns = now.saturating_duration_since(self.stamp).as_nanos() as f64;
        (-elapsed_ns / self.decay_ns).exp()
    }

    /// The estimate decayed toward zero for the time since the last sample.
    fn decayed_ns(&self, now: Instant) -> f64 {
        self.estimate_ns * self.weight(now)
    }

    /// One sample: above the current estimate it replaces it (peak); below it, the estimate
    /// moves toward it by `1 - w`, so it always lands between the two.
    fn observe(&mut self, sample_ns: f64, now: Instant) {
        let current = self.decayed_ns(now);
        self.estimate_ns = if sample_ns >= current {
            sample_ns
        } else {
            let w = self.weight(now);
            current * w + sample_ns * (1.0 - w)
        };
        // Samples may be reported out of order by concurrent calls: never move the stamp back.
        self.stamp = self.stamp.max(now);
        self.answered = true;
    }
}

/// Power of two random choices: among `candidates` (indices), draw two distinct ones and
/// return the cheaper (ties: the first drawn). One candidate → it; none → `None`.
/// `random()` returns a value in [0, 1); it is an argument so tests can script it.
pub fn pick_two(
    candidates: &[usize],
    cost: impl Fn(usize) -> f64,
    mut random: impl FnMut() -> f64,
) -> Option<usize> {
    match candidates.len() {
        0 => None,
        1 => Some(candidates[0]),
        n => {
            let first = draw(random(), n);
            // Draw the second among the other n - 1, then skip over the first: two distinct
            // candidates in two draws, each pair equally likely.
            let mut second = draw(random(), n - 1);
            if second >= first {
                second += 1;
            }
            let (a, b) = (candidates[first], candidates[second]);
            Some(if cost(b) < cost(a) { b } else { a })
        }
    }
}

/// The median of `values` (the lower middle one of an even count), `None` for none.
pub fn median(mut values: Vec<Duration>) -> Option<Duration> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    Some(values[(values.len() - 1) / 2])
}

/// The probe: among `candidates`, the one whose last choice (`last_chosen`, a number of
/// choices) is the oldest, if that was `every` or more choices before `choices`, the count of
/// choices made so far ([`PROBE_EVERY`], [`FAILING_PROBE_EVERY`]). `None` when every candidate
/// was chosen recently.
pub fn overdue(
    candidates: &[usize],
    last_chosen: impl Fn(usize) -> u64,
    choices: u64,
    every: u64,
) -> Option<usize> {
    let oldest = candidates.iter().copied().min_by_key(|&i| last_chosen(i))?;
    let since = choices.saturating_sub(last_chosen(oldest));
    (since >= every).then_some(oldest)
}

/// The probe by time: among `candidates` chosen before, the one chosen longest ago
/// (`chosen_at`), if that was `interval` or more before `now` ([`FAILING_PROBE_INTERVAL`]).
/// `None` when every candidate was chosen recently. One never chosen is left to the count
/// ([`overdue`]): a replica fails or is ejected only after a choice took it.
pub fn probe_due_by_time(
    candidates: &[usize],
    chosen_at: impl Fn(usize) -> Option<Instant>,
    now: Instant,
    interval: Duration,
) -> Option<usize> {
    let (oldest, at) = candidates
        .iter()
        .filter_map(|&i| Some((i, chosen_at(i)?)))
        .min_by_key(|&(_, at)| at)?;
    (now.saturating_duration_since(at) >= interval).then_some(oldest)
}

/// A returning replica's share, `since` its return: from [`SLOW_START_MIN_SHARE`] up to 1,
/// linearly, over [`SLOW_START_WINDOW`]. 1 from then on.
pub fn slow_start_share(since: Duration) -> f64 {
    let ramp = since.as_secs_f64() / SLOW_START_WINDOW.as_secs_f64();
    ramp.clamp(SLOW_START_MIN_SHARE, 1.0)
}

/// Slow start applied to a choice: each candidate stays in with probability `share(i)`.
/// If that leaves none, all stay (a replica ramping up is still better than no replica).
/// `random()` returns a value in [0, 1), one draw per candidate whose share is below 1.
pub fn by_share(
    candidates: &[usize],
    share: impl Fn(usize) -> f64,
    mut random: impl FnMut() -> f64,
) -> Vec<usize> {
    let kept: Vec<usize> = candidates
        .iter()
        .copied()
        .filter(|&i| {
            let share = share(i);
            share >= 1.0 || random() < share
        })
        .collect();
    if kept.is_empty() {
        candidates.to_vec()
    } else {
        kept
    }
}

/// An index in `0..n` from a value in [0, 1). A value out of range (1.0, or a NaN) still gives
/// a valid index rather than a panic.
fn draw(random: f64, n: usize) -> usize {
    let index = (random * n as f64) as usize; // `as` saturates: NaN → 0, negative → 0.
    index.min(n - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAU: Duration = Duration::from_secs(10);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A `random` that returns the given values in order, then panics.
    fn script(values: &[f64]) -> impl FnMut() -> f64 + '_ {
        let mut next = values.iter();
        move || *next.next().expect("random called more often than scripted")
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= b.abs() * 1e-9
    }

    // ---- PeakEwma ----

    #[test]
    fn a_new_replica_costs_nothing() {
        let t0 = Instant::now();
        let ewma = PeakEwma::new(TAU, t0);
        assert_eq!(ewma.cost(t0), 0.0);
        assert_eq!(ewma.latency(t0), Duration::ZERO);
        assert_eq!(ewma.outstanding(), 0);
    }

    #[test]
    fn an_unanswered_replica_with_requests_out_is_assumed_slow() {
        let t0 = Instant::now();
        let mut ewma = PeakEwma::new(TAU, t0);
        ewma.start(t0);
        ewma.start(t0);
        let second_ns = UNANSWERED_LATENCY.as_nanos() as f64;
        assert_eq!(ewma.cost(t0), second_ns * 3.0);
    }

    #[test]
    fn first_answer_sets_the_estimate() {
        let t0 = Instant::now();
        let mut ewma = PeakEwma::new(TAU, t0);
        ewma.start(t0);
        ewma.finish(ms(20), t0 + ms(20));
        assert_eq!(ewma.latency(t0 + ms(20)), ms(20));
        assert_eq!(ewma.outstanding(), 0);
    }

    #[test]
    fn cost_is_latency_times_outstanding_plus_one() {
        let t0 = Instant::now();
        let mut ewma = PeakEwma::new(TAU, t0);
        ewma.finish(ms(10), t0);
        assert!(close(ewma.cost(t0), 10e6));
        ewma.start(t0);
        ewma.start(t0);
        assert!(close(ewma.cost(t0), 30e6));
    }

    #[test]
    fn a_slower_sample_replaces_the_estimate_at_once() {
        let t0 = Instant::now();
        let mut ewma = PeakEwma::new(TAU, t0);
        ewma.finish(ms(1), t0);
        ewma.finish(ms(300), t0 + ms(1));
        assert_eq!(ewma.latency(t0 + ms(1)), ms(300));
    }

    #[test]
    fn a_probes_answer_replaces_an_old_peak() {
        // A cold start's 8 ms peak, then avoided for a second; the probe answers in 3 ms.
        let t0 = Instant::now();
        let mut ewma = PeakEwma::new(TAU, t0);
        ewma.finish(ms(8), t0);
        let probe_at = t0 + Duration::from_secs(1);
        ewma.mark_probe();
        ewma.start(probe_at);
        ewma.finish(ms(3), probe_at);
        assert_eq!(ewma.latency(probe_at), ms(3));
        // Only the probe's own answer: the next one is a sample like any other.
        ewma.finish(ms(1), probe_at);
        assert_eq!(ewma.latency(probe_at), ms(3));
    }

    #[test]
    fn a_given_up_probe_leaves_the_question_open() {
        let t0 = Instant::now();
        let mut ewma = PeakEwma::new(TAU, t0);
        ewma.finish(ms(300), t0);
        ewma.mark_probe();
        ewma.start(t0);
        // Cancelled after 5 ms (a hedge answered first): the replica was at least that slow,
        // which says little; the estimate keeps its 300 ms.
        ewma.give_up(ms(5), t0);
        assert_eq!(ewma.latency(t0), ms(300));
        assert_eq!(ewma.outstanding(), 0);
        ewma.finish(ms(4), t0);
        assert_eq!(ewma.latency(t0), ms(4), "the next measurement answers it");
    }

    #[test]
    fn a_faster_sample_moves_the_estimate_by_the_weight() {
        let t0 = Instant::now();
        let mut ewma = PeakEwma::new(TAU, t0);
        ewma.finish(ms(100), t0);
        // One tau later: the estimate has decayed to 100 e^-1 ≈ 36.8 ms, and a 10 ms sample
        // pulls it toward 10 by (1 - e^-1): 36.8 e^-1 + 10 (1 - e^-1).
        let t1 = t0 + TAU;
        ewma.finish(ms(10), t1);
        let w = (-1.0f64).exp();
        let expected_ns = 100e6 * w * w + 10e6 * (1.0 - w);
        assert!(close(
            ewma.latency(t1).as_nanos() as f64,
            expected_ns.floor()
        ));
    }

    #[test]
    fn a_faster_sample_right_after_barely_moves_it() {
        // Trust recovery slowly: one fast answer just after a slow one changes little.
        let t0 = Instant::now();
        let mut ewma = PeakEwma::new(TAU, t0);
        ewma.finish(ms(300), t0);
        ewma.finish(ms(1), t0 + ms(10));
        let latency = ewma.latency(t0 + ms(10));
        assert!(latency > ms(299), "{latency:?}");
    }

    #[test]
    fn the_estimate_stays_between_the_sample_and_the_current_value() {
        let t0 = Instant::now();
        let mut ewma = PeakEwma::new(TAU, t0);
        ewma.finish(ms(100), t0);
        for step in 1..50 {
            let now = t0 + ms(step * 300);
            let before = ewma.latency(now);
            ewma.finish(ms(5), now);
            let after = ewma.latency(now);
            assert!(after <= before && after >= ms(5), "{before:?} → {after:?}");
        }
    }

    #[test]
    fn an_idle_estimate_decays_toward_zero() {
        let t0 = Instant::now();
        let mut ewma = PeakEwma::new(TAU, t0);
        ewma.finish(ms(300), t0);
        let after_one_tau = ewma.latency(t0 + TAU).as_secs_f64();
        assert!((after_one_tau - 0.300 * (-1.0f64).exp()).abs() < 1e-6);
        assert!(ewma.latency(t0 + TAU * 10) < ms(1));
        assert!(ewma.latency(t0 + TAU * 100) < Duration::from_nanos(1));
    }

    #[test]
    fn a_slow_replica_left_idle_becomes_cheaper_than_a_busy_fast_one() {
        let t0 = Instant::now();
        let mut slow = PeakEwma::new(TAU, t0);
        slow.finish(ms(300), t0);
        let mut fast = PeakEwma::new(TAU, t0);
        fast.finish(ms(1), t0);
        assert!(slow.cost(t0) > fast.cost(t0));
        // A minute later the fast one has just answered again and has requests out; the slow
        // one has had no traffic: its decayed estimate is now the cheaper.
        let later = t0 + Duration::from_secs(60);
        fast.finish(ms(1), later);
        fast.start(later);
        assert!(slow.cost(later) < fast.cost(later));
    }

    #[test]
    fn outstanding_never_goes_below_zero() {
        let t0 = Instant::now();
        let mut ewma = PeakEwma::new(TAU, t0);
        ewma.finish(ms(1), t0);
        ewma.finish(ms(1), t0);
        assert_eq!(ewma.outstanding(), 0);
    }

    #[test]
    fn an_answer_reported_out_of_order_does_not_move_time_back() {
        let t0 = Instant::now();
        let mut ewma = PeakEwma::new(TAU, t0);
        ewma.finish(ms(10), t0 + ms(100));
        ewma.finish(ms(50), t0 + ms(50)); // captured earlier, reported later: still a peak
        assert_eq!(ewma.latency(t0 + ms(100)), ms(50));
    }

    #[test]
    fn a_rejoining_replica_starts_from_the_given_estimate() {
        // Three failures of 100 ms penalty: the estimate is 100 ms and would stay near it for
        // seconds. Rejoining at its peers' 2 ms makes it as cheap as they are.
        let t0 = Instant::now();
        let mut ewma = PeakEwma::new(TAU, t0);
        for _ in 0..3 {
            ewma.start(t0);
            ewma.finish(ms(100), t0);
        }
        let back = t0 + Duration::from_secs(3);
        assert!(ewma.latency(back) > ms(70), "the penalty decays slowly");
        ewma.rejoin(ms(2), back);
        assert_eq!(ewma.latency(back), ms(2));
        let mut peer = PeakEwma::new(TAU, t0);
        peer.finish(ms(2), back);
        assert!(close(ewma.cost(back), peer.cost(back)));
    }

    #[test]
    fn a_rejoined_replica_learns_as_before() {
        let t0 = Instant::now();
        let mut ewma = PeakEwma::new(TAU, t0);
        ewma.rejoin(ms(2), t0);
        ewma.finish(ms(50), t0 + ms(1));
        assert_eq!(ewma.latency(t0 + ms(1)), ms(50), "still a peak");
    }

    #[test]
    fn rejoining_keeps_the_requests_out() {
        let t0 = Instant::now();
        let mut ewma = PeakEwma::new(TAU, t0);
        ewma.start(t0);
        ewma.rejoin(ms(2), t0);
        assert_eq!(ewma.outstanding(), 1);
        assert!(close(ewma.cost(t0), 4e6));
    }

    // ---- median ----

    #[test]
    fn the_median_of_odd_and_even_counts() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![ms(7)]), Some(ms(7)));
        assert_eq!(median(vec![ms(9), ms(1), ms(5)]), Some(ms(5)));
        assert_eq!(median(vec![ms(9), ms(1), ms(5), ms(3)]), Some(ms(3)));
    }

    // ---- the probe ----

    #[test]
    fn a_candidate_not_chosen_for_probe_every_choices_is_overdue() {
        let now = 10 * PROBE_EVERY;
        let last = [now, now - PROBE_EVERY, now - 1];
        assert_eq!(overdue(&[0, 1, 2], |i| last[i], now, PROBE_EVERY), Some(1));
        assert_eq!(
            overdue(&[0, 1, 2], |i| last[i], now - 1, PROBE_EVERY),
            None,
            "one choice short"
        );
    }

    #[test]
    fn the_oldest_of_several_overdue_goes_first() {
        let last = [10, 3, 7];
        assert_eq!(overdue(&[0, 1, 2], |i| last[i], 1000, PROBE_EVERY), Some(1));
    }

    #[test]
    fn no_probe_among_no_candidates_or_recent_ones() {
        assert_eq!(overdue(&[], |_| 0, 1000, PROBE_EVERY), None);
        assert_eq!(overdue(&[4], |_| 990, 1000, PROBE_EVERY), None);
    }

    #[test]
    fn a_choice_counter_behind_the_stamp_is_not_overdue() {
        // Choices counted concurrently may stamp a replica past the count a caller read.
        assert_eq!(overdue(&[0], |_| 1000, 10, PROBE_EVERY), None);
    }

    #[test]
    fn the_candidate_chosen_longest_ago_is_due_after_the_interval() {
        let t0 = Instant::now();
        let second = Duration::from_secs(1);
        let at = [Some(t0 + ms(500)), Some(t0), Some(t0 + ms(900))];
        let due = |now| probe_due_by_time(&[0, 1, 2], |i| at[i], now, second);
        assert_eq!(due(t0 + ms(999)), None, "a millisecond short");
        assert_eq!(due(t0 + second), Some(1));
        let never = [None, Some(t0)];
        let due = |now| probe_due_by_time(&[0, 1], |i| never[i], now, second);
        assert_eq!(due(t0 + second), Some(1), "never chosen: left to the count");
        assert_eq!(probe_due_by_time(&[0], |_| None, t0 + second, second), None);
    }

    // ---- slow start ----

    #[test]
    fn slow_start_ramps_linearly_from_the_minimum_to_one() {
        assert_eq!(slow_start_share(Duration::ZERO), SLOW_START_MIN_SHARE);
        assert!((slow_start_share(SLOW_START_WINDOW / 2) - 0.5).abs() < 1e-9);
        assert!(slow_start_share(SLOW_START_WINDOW * 9 / 10) >= 0.9);
        assert_eq!(slow_start_share(SLOW_START_WINDOW), 1.0);
        assert_eq!(slow_start_share(Duration::from_secs(3600)), 1.0);
    }

    #[test]
    fn by_share_keeps_a_candidate_as_often_as_its_share() {
        let shares = [1.0, 0.25];
        let mut kept = [0, 0];
        for step in 0..100 {
            let draw = step as f64 / 100.0;
            for i in by_share(&[0, 1], |i| shares[i], || draw) {
                kept[i] += 1;
            }
        }
        assert_eq!(kept, [100, 25]);
    }

    #[test]
    fn by_share_draws_only_for_shares_below_one() {
        assert_eq!(by_share(&[3, 4], |_| 1.0, script(&[])), [3, 4]);
    }

    #[test]
    fn by_share_never_leaves_no_candidate() {
        assert_eq!(by_share(&[3, 4], |_| 0.1, || 0.99), [3, 4]);
    }

    #[test]
    fn a_returning_replica_reaches_nine_tenths_of_its_share_within_the_window() {
        // Three replicas of equal cost, one returning: count its picks per 100 choices at
        // points of its ramp. P2C over the kept candidates, scripted uniform draws.
        let picks_at = |since: Duration| {
            let mut picks = 0;
            let mut n = 0u64;
            let mut draw = move || {
                n = n
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (n >> 11) as f64 / (1u64 << 53) as f64
            };
            for _ in 0..3000 {
                let share = |i: usize| if i == 2 { slow_start_share(since) } else { 1.0 };
                let kept = by_share(&[0, 1, 2], share, &mut draw);
                if pick_two(&kept, |_| 1.0, &mut draw) == Some(2) {
                    picks += 1;
                }
            }
            picks as f64 / 1000.0 // a fair share is 1000 of 3000
        };
        assert!(picks_at(Duration::ZERO) < 0.2);
        assert!(picks_at(SLOW_START_WINDOW) > 0.9);
    }

    // ---- pick_two ----

    #[test]
    fn no_candidates_no_pick() {
        assert_eq!(pick_two(&[], |_| 0.0, script(&[])), None);
    }

    #[test]
    fn one_candidate_is_picked_without_drawing() {
        assert_eq!(pick_two(&[7], |_| 1.0, script(&[])), Some(7));
    }

    #[test]
    fn picks_the_cheaper_of_the_two_drawn() {
        let costs = [5.0, 1.0, 9.0];
        // Draws 0 then 1 (of the remaining 1, 2 → index 1): compares 5.0 and 1.0.
        assert_eq!(
            pick_two(&[0, 1, 2], |i| costs[i], script(&[0.0, 0.0])),
            Some(1)
        );
        // Draws 2 then 0: compares 9.0 and 5.0.
        assert_eq!(
            pick_two(&[0, 1, 2], |i| costs[i], script(&[0.9, 0.0])),
            Some(0)
        );
    }

    #[test]
    fn never_picks_the_more_expensive_of_the_pair() {
        let costs = [3.0, 1.0, 4.0, 1.5, 9.0];
        let candidates = [0, 1, 2, 3, 4];
        for a in 0..5 {
            for b in 0..4 {
                let draws = [a as f64 / 5.0, b as f64 / 4.0];
                let picked = pick_two(&candidates, |i| costs[i], script(&draws)).unwrap();
                let first = a;
                let second = if b >= a { b + 1 } else { b };
                assert_eq!(costs[picked], costs[first].min(costs[second]));
            }
        }
    }

    #[test]
    fn the_two_drawn_are_always_distinct() {
        // The same random value twice still gives two different candidates: the second draw
        // skips over the first.
        let candidates = [10, 11, 12];
        let compared = std::cell::RefCell::new(Vec::new());
        pick_two(
            &candidates,
            |i| {
                compared.borrow_mut().push(i);
                0.0
            },
            script(&[0.5, 0.5]),
        );
        let mut compared = compared.into_inner();
        compared.sort();
        compared.dedup();
        assert_eq!(compared.len(), 2, "{compared:?}");
    }

    #[test]
    fn ties_go_to_the_first_drawn() {
        assert_eq!(pick_two(&[4, 8], |_| 2.0, script(&[0.0, 0.0])), Some(4));
        assert_eq!(pick_two(&[4, 8], |_| 2.0, script(&[0.7, 0.0])), Some(8));
    }

    #[test]
    fn returns_the_candidate_not_its_position() {
        // Candidates are replica indices, e.g. the ones not ejected.
        let costs = [0.0, 0.0, 9.0, 9.0, 1.0];
        assert_eq!(
            pick_two(&[2, 4], |i| costs[i], script(&[0.0, 0.0])),
            Some(4)
        );
    }

    #[test]
    fn spreads_over_equal_replicas() {
        // With equal costs every replica is picked, and about as often: no herding.
        let candidates = [0, 1, 2];
        let mut picks = [0u32; 3];
        let steps = 30;
        for i in 0..steps {
            let draws = [i as f64 / steps as f64, 0.5];
            let picked = pick_two(&candidates, |_| 1.0, script(&draws)).unwrap();
            picks[picked] += 1;
        }
        assert_eq!(picks, [10, 10, 10]);
    }

    #[test]
    fn the_most_expensive_replica_is_never_picked_from_three() {
        // With three replicas the costliest always loses its pair: this is what keeps a
        // slow replica nearly idle.
        let costs = [1.0, 1.0, 300.0];
        for a in 0..3 {
            for b in 0..2 {
                let draws = [a as f64 / 3.0, b as f64 / 2.0];
                let picked = pick_two(&[0, 1, 2], |i| costs[i], script(&draws)).unwrap();
                assert_ne!(picked, 2);
            }
        }
    }

    #[test]
    fn out_of_range_randoms_give_valid_picks() {
        for value in [1.0, 1.5, -0.5, f64::NAN] {
            let picked = pick_two(&[0, 1, 2], |_| 0.0, script(&[value, value]));
            assert!(picked.is_some_and(|i| i < 3));
        }
    }
}
