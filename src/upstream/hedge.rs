//! Hedging: when an attempt has not answered after a delay, send a second one; the first
//! answer wins.
//!
//! Most slow answers are not slow because of the request but because of where it landed: a
//! garbage-collection pause, a full queue, a noisy neighbour. A second copy of the request,
//! sent elsewhere, usually does not hit the same bad luck. Sending it at once would double the
//! load; sending it only once the first attempt is *already* slower than most answers adds
//! load only for the slow few. Dean and Barroso, "The Tail at Scale" (CACM 2013), advise
//! sending the hedge once the first request has been out longer than the 95th-percentile
//! expected latency; in their BigTable benchmark a hedge after 10 ms cut the 99.9th percentile
//! from 1,800 ms to 74 ms for 2 % more requests. gRPC's hedging policy does the same with a
//! fixed `hedgingDelay` and `maxAttempts`; Envoy's route `hedge_policy` hedges on per-try
//! timeouts.
//!
//! The delay is fixed, or learned: a quantile of recent successful latencies, never below a
//! floor. The learned delay follows A: when A slows down as a whole the delay grows with it,
//! so hedging does not double the load just because everything got slower.
//!
//! Recent latencies are kept in a [`LatencyWindow`]: counts in log-scale buckets about 5 %
//! wide, from 10 µs to 10 s, so a quantile is at most 5 % above the truth, recording is O(1),
//! a quantile is one pass over the buckets, and memory is fixed (no per-call sort, no list of
//! samples). To follow change, all counts are halved every [`HALVE_EVERY`] samples: a sample's
//! weight halves with every thousand newer ones. (The same idea as HdrHistogram's buckets and
//! the decaying reservoirs of Dropwizard Metrics, at a fraction of their size.)

use std::time::Duration;

/// The quantile of recent latencies after which a hedge is sent: hedge what is slower than
/// 90 % of recent answers. Not the 95 % of "The Tail at Scale": in the "tail" scenario of
/// `bench/scenarios.sh` 5 % of answers are 500 ms late, so an estimate of the 95th percentile
/// sits right on the tail itself and flips between "fast" and "500 ms" as the late fraction
/// wanders around 5 %; the hedges would then come 500 ms late, too late to help. The 90th
/// percentile stays among the fast answers, so hedges go out for about the slow fraction:
/// ≤ 1.1× load.
pub const DEFAULT_QUANTILE: f64 = 0.9;

/// The earliest a hedge is sent. When answers come back in a fraction of a millisecond the
/// 90th percentile is tiny, and a hedge after it would fire on ordinary jitter (a scheduler
/// hiccup on B's two shared cores) and add load for nothing. 5 ms is well above that jitter and
/// well below the "tail" scenario's target of 20 ms for the p99.
pub const DEFAULT_FLOOR: Duration = Duration::from_millis(5);

/// Samples needed before the learned quantile is trusted. Twenty answers is where a 90th
/// percentile rests on at least two slow ones rather than on one.
pub const MIN_SAMPLES: u64 = 20;

/// Until [`MIN_SAMPLES`] answers are in, the delay is the floor × this: 50 ms by default.
/// Cautious (a hedge storm at start-up would be the worst first impression), yet well under
/// the deadline, so a dead-slow first attempt is still hedged in time.
pub const FALLBACK_FACTOR: u32 = 10;

/// Samples between two halvings of every count (see the module comment).
pub const HALVE_EVERY: u32 = 1000;

/// The smallest latency told apart; anything faster shares the first bucket.
const MIN_LATENCY: Duration = Duration::from_micros(10);

/// The ratio between the upper bounds of two neighbouring buckets: 5 % wide.
const GROWTH: f64 = 1.05;

/// Buckets from 10 µs to 10 s at 5 % each: 10 µs × 1.05^284 ≈ 10.4 s is the first bound past
/// 10 s, so 285 buckets (0 to 284). Anything slower shares the last.
const BUCKETS: usize = 285;

/// When to send the hedge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HedgeDelay {
    /// Always after this long (gRPC's `hedgingDelay`).
    Fixed(Duration),
    /// After the `q` quantile of recent successful latencies, but never sooner than `floor`.
    Quantile { q: f64, floor: Duration },
}

impl Default for HedgeDelay {
    fn default() -> Self {
        HedgeDelay::Quantile {
            q: DEFAULT_QUANTILE,
            floor: DEFAULT_FLOOR,
        }
    }
}

/// Recent latencies, as decaying counts in log-scale buckets.
#[derive(Debug, Clone)]
pub struct LatencyWindow {
    /// The weight of recent samples in each bucket (halved every `HALVE_EVERY` samples).
    counts: Vec<f64>,
    /// The sum of `counts`.
    weight: f64,
    /// Samples recorded, ever.
    recorded: u64,
    /// Samples since the last halving.
    since_halving: u32,
}

impl Default for LatencyWindow {
    fn default() -> Self {
        LatencyWindow::new()
    }
}

impl LatencyWindow {
    /// An empty window.
    pub fn new() -> Self {
        LatencyWindow {
            counts: vec![0.0; BUCKETS],
            weight: 0.0,
            recorded: 0,
            since_halving: 0,
        }
    }

    /// One latency. O(1), apart from the halving every `HALVE_EVERY` samples.
    pub fn record(&mut self, latency: Duration) {
        self.counts[bucket_of(latency)] += 1.0;
        self.weight += 1.0;
        self.recorded += 1;
        self.since_halving += 1;
        if self.since_halving >= HALVE_EVERY {
            self.halve();
        }
    }

    /// The latency below which a fraction `q` (0 to 1) of the recent samples fall, rounded up
    /// to its bucket's upper bound (at most 5 % above). `None` before any sample.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.weight <= 0.0 {
            return None;
        }
        let target = q.clamp(0.0, 1.0) * self.weight;
        let mut below = 0.0;
        let mut last_seen = None;
        for (index, &count) in self.counts.iter().enumerate() {
            if count == 0.0 {
                continue;
            }
            below += count;
            last_seen = Some(index);
            if below >= target {
                break;
            }
        }
        // `last_seen` is the bucket where the target was reached, or the last non-empty one
        // if rounding kept `below` a hair under a target of the whole weight.
        last_seen.map(upper_bound)
    }

    /// Samples recorded since the window was made (for metrics, and for [`MIN_SAMPLES`]).
    pub fn count(&self) -> u64 {
        self.recorded
    }

    /// Halves every count, so older samples weigh less than newer ones.
    fn halve(&mut self) {
        for count in &mut self.counts {
            *count *= 0.5;
        }
        self.weight *= 0.5;
        self.since_halving = 0;
    }
}

/// The bucket of `latency`: 0 for up to 10 µs; else the `i` with
/// `10 µs × 1.05^(i-1) < latency ≤ 10 µs × 1.05^i`, at most the last.
fn bucket_of(latency: Duration) -> usize {
    let ratio = latency.as_nanos() as f64 / MIN_LATENCY.as_nanos() as f64;
    if ratio <= 1.0 {
        return 0;
    }
    let index = (ratio.ln() / GROWTH.ln()).ceil() as usize;
    index.min(BUCKETS - 1)
}

/// The largest latency bucket `index` holds: 10 µs × 1.05^index.
fn upper_bound(index: usize) -> Duration {
    let nanos = MIN_LATENCY.as_nanos() as f64 * GROWTH.powi(index as i32);
    Duration::from_nanos(nanos.ceil() as u64)
}

/// The hedging policy: the delay rule and the recent latencies it learns from.
#[derive(Debug, Clone)]
pub struct Hedge {
    delay: HedgeDelay,
    window: LatencyWindow,
}

impl Hedge {
    pub fn new(delay: HedgeDelay) -> Hedge {
        Hedge {
            delay,
            window: LatencyWindow::new(),
        }
    }

    /// A successful attempt's latency: from when *that attempt* was sent to its answer (not
    /// the call's, which would include the hedge delay itself and make the delay creep up).
    pub fn record(&mut self, latency: Duration) {
        self.window.record(latency);
    }

    /// How long to wait for an attempt before sending a hedge. `Fixed`: that. `Quantile`:
    /// the larger of the floor and the quantile of recent latencies; with fewer than
    /// [`MIN_SAMPLES`] samples, the floor × [`FALLBACK_FACTOR`].
    pub fn delay(&self) -> Duration {
        match self.delay {
            HedgeDelay::Fixed(delay) => delay,
            HedgeDelay::Quantile { q, floor } => {
                if self.window.count() < MIN_SAMPLES {
                    return floor * FALLBACK_FACTOR;
                }
                match self.window.quantile(q) {
                    Some(learned) => learned.max(floor),
                    None => floor * FALLBACK_FACTOR,
                }
            }
        }
    }

    /// The recent latencies (for metrics, e.g. their p50 and p99).
    pub fn window(&self) -> &LatencyWindow {
        &self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    /// A window with `n` samples of each `(latency, n)`, recorded in order.
    fn window_of(samples: &[(Duration, u32)]) -> LatencyWindow {
        let mut window = LatencyWindow::new();
        for &(latency, n) in samples {
            for _ in 0..n {
                window.record(latency);
            }
        }
        window
    }

    /// A hedge with the default policy and the given samples.
    fn hedge_of(samples: &[(Duration, u32)]) -> Hedge {
        let mut hedge = Hedge::new(HedgeDelay::default());
        for &(latency, n) in samples {
            for _ in 0..n {
                hedge.record(latency);
            }
        }
        hedge
    }

    /// Whether `estimate` is `truth` rounded up by at most one bucket width.
    fn within_a_bucket(estimate: Duration, truth: Duration) -> bool {
        let (estimate, truth) = (estimate.as_nanos() as f64, truth.as_nanos() as f64);
        estimate >= truth && estimate <= truth * GROWTH + 1.0
    }

    // ---- LatencyWindow ----

    #[test]
    fn an_empty_window_has_no_quantile() {
        let window = LatencyWindow::new();
        assert_eq!(window.quantile(0.5), None);
        assert_eq!(window.count(), 0);
    }

    #[test]
    fn one_sample_is_every_quantile() {
        let window = window_of(&[(ms(3), 1)]);
        for q in [0.0, 0.5, 0.9, 1.0] {
            assert!(within_a_bucket(window.quantile(q).unwrap(), ms(3)));
        }
    }

    #[test]
    fn quantiles_are_at_most_five_percent_high() {
        let mut latency = us(11);
        while latency < Duration::from_secs(10) {
            let window = window_of(&[(latency, 1)]);
            let estimate = window.quantile(0.5).unwrap();
            assert!(
                within_a_bucket(estimate, latency),
                "{latency:?} → {estimate:?}"
            );
            latency = latency * 11 / 10 + Duration::from_nanos(7);
        }
    }

    #[test]
    fn the_buckets_span_ten_microseconds_to_ten_seconds() {
        assert_eq!(upper_bound(0), us(10));
        assert!(upper_bound(BUCKETS - 2) < Duration::from_secs(10));
        assert!(upper_bound(BUCKETS - 1) >= Duration::from_secs(10));
    }

    #[test]
    fn very_fast_and_very_slow_share_the_end_buckets() {
        let fast = window_of(&[(Duration::ZERO, 1), (us(3), 1)]);
        assert_eq!(fast.quantile(1.0), Some(us(10)));
        let slow = window_of(&[(Duration::from_secs(60), 1)]);
        assert_eq!(slow.quantile(0.5), Some(upper_bound(BUCKETS - 1)));
    }

    #[test]
    fn quantile_of_a_mix() {
        // 90 answers at 1 ms, 10 at 500 ms.
        let window = window_of(&[(ms(1), 90), (ms(500), 10)]);
        assert!(within_a_bucket(window.quantile(0.5).unwrap(), ms(1)));
        assert!(within_a_bucket(window.quantile(0.9).unwrap(), ms(1)));
        assert!(within_a_bucket(window.quantile(0.91).unwrap(), ms(500)));
        assert!(within_a_bucket(window.quantile(1.0).unwrap(), ms(500)));
    }

    #[test]
    fn order_of_recording_does_not_matter() {
        let a = window_of(&[(ms(1), 50), (ms(9), 50)]);
        let b = window_of(&[(ms(9), 50), (ms(1), 50)]);
        for q in [0.1, 0.5, 0.51, 0.99] {
            assert_eq!(a.quantile(q), b.quantile(q));
        }
    }

    #[test]
    fn q_out_of_range_is_clamped() {
        let window = window_of(&[(ms(1), 10), (ms(9), 10)]);
        assert_eq!(window.quantile(-1.0), window.quantile(0.0));
        assert_eq!(window.quantile(2.0), window.quantile(1.0));
    }

    #[test]
    fn count_counts_every_sample() {
        let window = window_of(&[(ms(1), 2500)]);
        assert_eq!(window.count(), 2500);
    }

    #[test]
    fn follows_a_change() {
        // A thousand answers at 1 ms, then A slows to 100 ms. After a thousand slow ones the
        // old fast ones weigh a quarter each, the slow ones a half: the median has moved.
        let mut window = window_of(&[(ms(1), 1000)]);
        assert!(within_a_bucket(window.quantile(0.5).unwrap(), ms(1)));
        for _ in 0..1000 {
            window.record(ms(100));
        }
        assert!(within_a_bucket(window.quantile(0.5).unwrap(), ms(100)));
        // The old answers still weigh something: the 10th percentile is still fast.
        assert!(within_a_bucket(window.quantile(0.1).unwrap(), ms(1)));
    }

    #[test]
    fn five_percent_late_puts_p95_on_the_tail_but_not_p90() {
        // Why the default quantile is 0.9: when the late fraction is a little over 5 %, the
        // 95th percentile is the late answers themselves.
        let window = window_of(&[(ms(1), 94), (ms(500), 6)]);
        assert!(within_a_bucket(window.quantile(0.95).unwrap(), ms(500)));
        assert!(within_a_bucket(window.quantile(0.9).unwrap(), ms(1)));
    }

    // ---- Hedge ----

    #[test]
    fn default_is_the_ninetieth_percentile_with_a_five_ms_floor() {
        assert_eq!(
            HedgeDelay::default(),
            HedgeDelay::Quantile {
                q: 0.9,
                floor: ms(5)
            }
        );
    }

    #[test]
    fn a_fixed_delay_ignores_samples() {
        let mut hedge = Hedge::new(HedgeDelay::Fixed(ms(25)));
        assert_eq!(hedge.delay(), ms(25));
        for _ in 0..100 {
            hedge.record(ms(300));
        }
        assert_eq!(hedge.delay(), ms(25));
        assert_eq!(hedge.window().count(), 100);
    }

    #[test]
    fn too_few_samples_use_the_fallback() {
        assert_eq!(hedge_of(&[]).delay(), ms(50));
        assert_eq!(hedge_of(&[(ms(1), 19)]).delay(), ms(50));
        assert_eq!(hedge_of(&[(ms(1), 20)]).delay(), ms(5));
    }

    #[test]
    fn the_floor_holds_when_answers_are_fast() {
        let hedge = hedge_of(&[(us(300), 100)]);
        assert_eq!(hedge.delay(), ms(5));
    }

    #[test]
    fn the_delay_follows_the_quantile_above_the_floor() {
        let hedge = hedge_of(&[(ms(20), 100)]);
        assert!(within_a_bucket(hedge.delay(), ms(20)));
        let hedge = hedge_of(&[(ms(2), 50), (ms(40), 50)]);
        assert!(within_a_bucket(hedge.delay(), ms(40)));
    }

    #[test]
    fn the_delay_grows_when_a_slows_as_a_whole() {
        let mut hedge = hedge_of(&[(ms(1), 1000)]);
        assert_eq!(hedge.delay(), ms(5));
        for _ in 0..2000 {
            hedge.record(ms(80));
        }
        assert!(within_a_bucket(hedge.delay(), ms(80)));
    }

    #[test]
    fn the_tail_scenario_hedges_at_the_floor() {
        // 5 % of answers 500 ms late, the rest under a millisecond: hedge after 5 ms.
        let hedge = hedge_of(&[(us(400), 950), (ms(500), 50)]);
        assert_eq!(hedge.delay(), ms(5));
    }

    #[test]
    fn a_custom_quantile_and_floor() {
        let delay = HedgeDelay::Quantile {
            q: 0.5,
            floor: ms(1),
        };
        let mut hedge = Hedge::new(delay);
        for _ in 0..20 {
            hedge.record(ms(3));
        }
        assert!(within_a_bucket(hedge.delay(), ms(3)));
    }
}
