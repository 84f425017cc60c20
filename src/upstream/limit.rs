//! Adaptive concurrency limit: how many attempts one replica may have in flight, learned from
//! its latency, so that B sends a replica no more than it can work on and refuses the excess at
//! once instead of queueing it inside A.
//!
//! **Why a limit learned, not configured.** A replica with `W` workers and a queue in front of
//! them answers in its no-load time while `W` or fewer requests are in flight; every request
//! beyond that waits in the queue, and the wait shows as latency. A fixed cap (nginx's
//! `max_conns`, HAProxy's `maxconn`, our bulkhead) is right only while `W` and the work time
//! stay what the operator measured; when a replica's capacity falls to a third, a fixed cap
//! queues three times what it should, and when capacity comes back it wastes it. Reading the
//! queue from latency follows the replica as it is now.
//!
//! **Which algorithm: the gradient.** We compare a latency sample with the replica's no-load
//! latency, `gradient = no_load / sample`, and move the limit toward `n × gradient` plus a
//! headroom of its square root, where `n` is what was in flight. Against a FIFO queue this
//! lands on `W + √W`: with `n > W` in flight, the sample is `no_load × n / W`, so
//! `n × gradient` is `W` exactly.
//! This is Netflix's `Gradient2Limit` (concurrency-limits) and Envoy's adaptive concurrency
//! filter, which both add a headroom of `√limit` and smooth the step. We chose it over the
//! other two Netflix offers: AIMD reacts only to drops and timeouts, by which time A's queue
//! is already a deadline long; Vegas estimates the queue the same way but moves the limit by
//! fixed steps tuned for limits in the hundreds (`α = 3·log10 L`), and at our worker counts of
//! one to ten those steps are coarser than the answer.
//!
//! **The no-load latency is measured, never inferred.** The classic failure of latency-driven
//! limits is a baseline that drifts: take the minimum of recent samples, keep a queue for a
//! while, and the minimum is a queued sample; the queue now looks normal and the limit grows.
//! We learn the no-load latency only from attempts that had *nothing else of ours in flight*
//! when they left (a sample at in-flight 1: whatever A did, none of it was our queue), keep
//! their median over [`NO_LOAD_WINDOW`] (the typical time of an attempt alone, a busy
//! machine's scheduling noise included; the minimum would be the luckiest one, and next to it
//! every ordinary sample would look queued), and when a busy, queueing replica has given none
//! for that long, pin its limit to 1 until one comes back (Envoy's periodic `min_rtt`
//! measurement, which pins concurrency to `min_concurrency` for the same reason). This is
//! also what tells a slow replica from an overloaded one: a replica that answers in 300 ms at
//! in-flight 1 has a no-load latency of 300 ms, its samples match it, and its limit grows
//! like anyone's.
//!
//! **A replica that became slower starts over.** When the latest three attempts alone were
//! all slower than the no-load latency beyond the tolerance, the replica itself changed (a
//! slower deployment, a chaos tail); what the limit learned was measured against a latency
//! that is gone, so it forgets it and starts again from [`INITIAL_LIMIT`].
//!
//! **A queue is believed when it persists.** Each sample's queue estimate,
//! `in_flight × (1 − gradient)`, is smoothed; the limit moves down only while the smoothed
//! estimate says at least [`QUEUE_MIN`] of an attempt waits. One sample slowed by the machine
//! is noise; a queue shows in every sample. What counts as noise is measured, not assumed: a
//! sample may be as much slower than the no-load latency as the no-load samples are among
//! themselves (between [`MIN_TOLERANCE`] and [`TOLERANCE`]). Once a queue is believed, the
//! limit comes down faster than it goes up ([`DECREASE_SMOOTHING`]).
//!
//! **A replica that answers nothing is failing, not overloaded.** Timeouts and `503`s lower
//! the limit only while the replica still answers: that is a queue overflowing. A replica
//! that has dropped attempts and answered none for a window (a black hole, a partition, a
//! crash mid-flight) is *silent*: the limit steps aside and lets its attempts through, so that
//! the breaker and ejection, which exist for failure, see the timeouts and act; otherwise the
//! limit would fall to one, refuse nearly every call as `overloaded`, and the breaker would
//! never see enough failures to open. The limit is kept as it was for when it answers again.
//!
//! It is a plain value: `try_acquire` / `release` take the time as an argument, and the unit
//! tests drive a simulated replica (workers, a FIFO queue) with a hand-held clock.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

/// The limit a replica starts with before any sample: a few in flight, so that the first burst
/// to a replica B has just met is not refused, and few enough that a one-worker replica queues
/// at most three of them (the first answer already gives the no-load latency: a FIFO queue
/// serves its head without waiting).
pub const INITIAL_LIMIT: f64 = 4.0;

/// Never below one in flight: a replica with a limit of zero would never be sampled again and
/// could never show that it recovered.
pub const MIN_LIMIT: f64 = 1.0;

/// The highest limit: far above any worker count the lab runs, and a bound on how far a
/// replica that answers fast at any concurrency (A without a capacity model) can grow it.
/// B's bulkhead (1024 calls) stays the cap on B as a whole.
pub const MAX_LIMIT: f64 = 256.0;

/// How much of the way one sample moves the queue estimate, and the limit up (Netflix's
/// `smoothing`, 0.2): one sample slowed by a scheduling hiccup on B's side moves them by a
/// fifth of what it suggests, while a queue, which every sample shows, moves the estimate
/// most of the way within ten samples. Down, the limit moves faster: [`DECREASE_SMOOTHING`].
pub const SMOOTHING: f64 = 0.2;

/// The smallest gradient one sample may apply. A single timeout (a sample a thousand times the
/// no-load latency) would otherwise read as nobody at work. Lower than Netflix's 0.5, because
/// with one worker the true gradient is `1 / n`, and a floor of 0.5 would read four in flight
/// on one worker as two at work.
pub const MIN_GRADIENT: f64 = 0.1;

/// How long a no-load sample is remembered. Long enough that a replica kept busy does not spend
/// much time pinned to one in flight to measure again (a pin lasts about one answer, so about
/// 2 % of the time at 20 ms), short enough that a replica that became slower (its no-load
/// latency tripled) is believed within a second rather than throttled as if overloaded.
pub const NO_LOAD_WINDOW: Duration = Duration::from_secs(1);

/// A slow replica's window is at least this many of its no-load latencies. A pin costs about
/// one and a half no-load latencies of the replica's capacity (the queue drains, one attempt
/// goes alone); fifty of them between pins keeps that near 3 % for a replica of 300 ms.
pub const NO_LOAD_WINDOW_ANSWERS: u32 = 50;

/// The no-load samples kept for the median: the latest fifteen in the window. Enough that a
/// few slowed by the machine do not move the median, few enough to follow a replica whose
/// work became slower within fifteen answers.
pub const NO_LOAD_SAMPLES: usize = 15;

/// A sample is compared with the slower of the no-load median and the fastest of this many
/// latest attempts alone. When B or its machine stalls, every answer is late, the ones that
/// were alone in flight too, and that is no queue in A: the limit must not fall for it. One
/// attempt alone that was slow by chance moves nothing: the fastest of three decides.
pub const RECENT_ALONE: usize = 3;

/// A sample up to this many times the no-load latency may show no queue: Netflix's
/// `rttTolerance` default in `Gradient2Limit`, and the most we tolerate. The tolerance used is
/// the spread of the replica's own no-load samples (the slowest over the median, see
/// [`NoLoadSamples::spread`]) between [`MIN_TOLERANCE`] and this: what the machine's noise
/// does to attempts alone, it may do to attempts with company, and no more. A busy machine's
/// no-load samples spread wide, and a descheduled attempt does not read as a queue; a quiet
/// one's are tight, and a queue shows early.
pub const TOLERANCE: f64 = 1.5;

/// The least tolerance: a tenth over the no-load latency is noise on any machine. A fixed 1.5
/// read two in flight on one worker, the second waiting 12 ms of 20, as no queue (the sample
/// 34 ms, under 1.5 × 21): the limit grew from 2 to 4 in five such samples, and the 200s'
/// p99 at 2x overload was 59-70 ms. With the no-load samples' spread (about 1.1 there) it
/// stays at 2 and the p99 is 41-45 ms (`bench/README.md`, overload).
pub const MIN_TOLERANCE: f64 = 1.1;

/// The smoothed queue estimate (attempts waiting rather than worked on, past the tolerance) at
/// which the replica is queueing: a quarter of an attempt. Two in flight on one worker, each
/// waiting half the time, estimate half an attempt with the tolerance and count, as they
/// should; a busy machine's occasional slow answer, averaged with the rest, does not.
pub const QUEUE_MIN: f64 = 0.25;

/// How much of the way down to a lower target one sample moves the limit: half, where
/// [`SMOOTHING`] moves it up by a fifth. Down faster than up, as AIMD is: a limit above the
/// replica's workers costs every call behind it its latency now, one below costs a little
/// goodput until growth finds the room again. At B's start a one-worker replica holds four
/// attempts; by a fifth, the limit took four samples to fall below three.
pub const DECREASE_SMOOTHING: f64 = 0.5;

/// A drop (a timeout, or A answering that it gave the work up) multiplies the limit by this:
/// Netflix's AIMD `backoffRatio`. The gradient cannot see a drop: a request refused by a full
/// queue comes back fast.
pub const DROP_DECREASE: f64 = 0.9;

/// How an attempt ended, as the limit learns from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An answer from the replica: its latency is a sample.
    Answered,
    /// A timeout, or A refusing or abandoning the work (a `503`): the replica had more than it
    /// could take.
    Dropped,
    /// Says nothing of the replica's load: a refused connection, a broken response, an attempt
    /// given up by B. Only the slot is given back.
    Ignored,
}

/// One attempt's slot under the limit. Give it back with [`AdaptiveLimit::release`] when the
/// attempt ends, however it ends.
#[derive(Debug)]
#[must_use = "the slot stays taken until the token is released"]
pub struct Token {
    /// Attempts in flight on this replica when this one left, itself included.
    in_flight: usize,
    started: Instant,
}

impl Token {
    /// Attempts in flight on the replica when this one left, itself included.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }
}

/// The adaptive limit of one replica.
#[derive(Debug, Clone)]
pub struct AdaptiveLimit {
    /// The limit as a real number; admission uses its integer part.
    limit: f64,
    in_flight: usize,
    no_load: NoLoadSamples,
    /// The last no-load latency measured, kept when the window empties: it is the gradient's
    /// reference while a new one is measured.
    last_no_load: Option<Duration>,
    /// When the last sample of any kind arrived, and at what in-flight.
    last_sample: Option<(Instant, usize)>,
    /// The queue estimate of recent answers with company (attempts waiting rather than being
    /// worked on), smoothed like the limit.
    queue: f64,
    /// When the replica last answered, and when it last dropped an attempt: together they
    /// say whether it is silent (see [`AdaptiveLimit::silent`]).
    last_answer: Option<Instant>,
    last_drop: Option<Instant>,
}

impl AdaptiveLimit {
    /// A replica with no history: [`INITIAL_LIMIT`], no no-load latency yet.
    pub fn new() -> AdaptiveLimit {
        AdaptiveLimit {
            limit: INITIAL_LIMIT,
            in_flight: 0,
            no_load: NoLoadSamples::default(),
            last_no_load: None,
            last_sample: None,
            queue: 0.0,
            last_answer: None,
            last_drop: None,
        }
    }

    /// A slot for one more attempt, or `None` when the replica has as many in flight as its
    /// limit allows.
    pub fn try_acquire(&mut self, now: Instant) -> Option<Token> {
        if !self.has_room(now) {
            return None;
        }
        self.in_flight += 1;
        Some(Token {
            in_flight: self.in_flight,
            started: now,
        })
    }

    /// Whether one more attempt would be admitted now.
    pub fn has_room(&self, now: Instant) -> bool {
        self.in_flight < self.admitted(now)
    }

    /// Whether an attempt the caller adds of its own accord (a hedge, a retry) may go: the
    /// replica has a worker to spare, not only a place in its queue (in flight, with this
    /// one, at most the limit less its headroom of √limit), and its recent answers show no
    /// queue. An extra attempt to a busy replica is work A does twice, or waits behind the
    /// very work it was sent to rescue: when A's capacity fell to a third, hedges sent in
    /// the second before the limit learned it cost a tenth of the goodput. A silent replica
    /// is not limited.
    pub fn has_spare_room(&self, now: Instant) -> bool {
        if self.silent(now) {
            return true;
        }
        let working = self.limit - self.limit.sqrt();
        (self.in_flight + 1) as f64 <= working && self.queue < QUEUE_MIN && !self.measuring(now)
    }

    /// The attempt of `token` ended at `now`: its slot is free, and the limit learns from it.
    pub fn release(&mut self, token: Token, outcome: Outcome, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let latency = now.saturating_duration_since(token.started);
        self.on_sample(latency, outcome, token.in_flight, now);
    }

    /// Learns from one attempt that took `latency` and left with `in_flight` attempts on this
    /// replica (itself included). [`release`](Self::release) calls it; it is public so the
    /// rule can be read and tested on its own.
    pub fn on_sample(
        &mut self,
        latency: Duration,
        outcome: Outcome,
        in_flight: usize,
        now: Instant,
    ) {
        match outcome {
            Outcome::Ignored => return,
            Outcome::Dropped => {
                // A queue overflowing, if the replica still answers; a failure otherwise.
                if self.answered_within_window(now) {
                    self.limit *= DROP_DECREASE;
                }
                self.last_drop = Some(now);
            }
            Outcome::Answered => {
                self.last_answer = Some(now);
                if in_flight <= 1 {
                    let window = self.window();
                    self.no_load.observe(latency, now);
                    self.start_over_if_slower_alone(now, window);
                    self.last_no_load = self.no_load.median(now, window);
                }
                self.follow_gradient(latency, in_flight, now);
            }
        }
        self.limit = self.limit.clamp(MIN_LIMIT, MAX_LIMIT);
        self.last_sample = Some((now, in_flight));
    }

    /// When the latest [`RECENT_ALONE`] attempts alone were all slower than the no-load
    /// latency by more than the [`TOLERANCE`], the replica itself became slower (a new
    /// deployment, a slower disk, a chaos tail): what the limit learned about its queue was
    /// measured against a latency that is gone, and it read the slowness as a queue. It starts
    /// over: the old no-load samples are forgotten, the queue estimate is cleared, and the
    /// limit is at least [`INITIAL_LIMIT`] again, as for a replica met for the first time.
    /// Without this, a replica whose answers went from 20 ms to 300 ms, with no queue at all,
    /// had most calls refused for five seconds (the unit test below).
    fn start_over_if_slower_alone(&mut self, now: Instant, window: Duration) {
        let Some(remembered) = self.last_no_load else {
            return;
        };
        let alone = self.no_load.latest_count(RECENT_ALONE, now, window);
        let Some(floor) = self.no_load.latest_floor(RECENT_ALONE, now, window) else {
            return;
        };
        if alone == RECENT_ALONE && floor.as_secs_f64() > remembered.as_secs_f64() * TOLERANCE {
            self.no_load.keep_latest(RECENT_ALONE);
            self.queue = 0.0;
            self.limit = self.limit.max(INITIAL_LIMIT);
        }
    }

    /// The attempts admitted at once now: the limit's integer part, 1 while a new no-load
    /// latency is being measured, or any number while the replica is silent.
    pub fn admitted(&self, now: Instant) -> usize {
        if self.silent(now) {
            usize::MAX // the limit steps aside: failure is the breaker's and ejection's
        } else if self.measuring(now) {
            1
        } else {
            self.limit as usize // `as` truncates; the limit is at least MIN_LIMIT = 1.
        }
    }

    /// The limit as a real number (what `/metrics` shows, with its fraction).
    pub fn limit(&self) -> f64 {
        self.limit
    }

    /// Attempts holding a slot now.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The no-load latency the gradient compares with, if one has been measured.
    pub fn no_load(&self) -> Option<Duration> {
        self.last_no_load
    }

    /// Whether the replica is silent: it dropped an attempt within the window and answered
    /// none. It is failing rather than overloaded, and the limit lets its attempts through.
    pub fn silent(&self, now: Instant) -> bool {
        let window = self.window();
        let dropped = self
            .last_drop
            .is_some_and(|at| now.saturating_duration_since(at) < window);
        dropped && !self.answered_within_window(now)
    }

    fn answered_within_window(&self, now: Instant) -> bool {
        self.last_answer
            .is_some_and(|at| now.saturating_duration_since(at) < self.window())
    }

    /// Whether admission is pinned to one attempt: the replica has been busy (its last sample
    /// left with others in flight, within the window), its samples have shown a queue (the
    /// smoothed queue estimate at least [`QUEUE_MIN`]), and no no-load sample is left in the
    /// window.
    /// A replica that was idle is not pinned (its next attempt leaves alone anyway), nor is one
    /// whose samples match its no-load latency (nothing says it changed).
    fn measuring(&self, now: Instant) -> bool {
        let window = self.window();
        let busy = self.last_sample.is_some_and(|(at, in_flight)| {
            in_flight > 1 && now.saturating_duration_since(at) < window
        });
        busy && self.queue >= QUEUE_MIN
            && self.last_no_load.is_some()
            && self.no_load.median(now, window).is_none()
    }

    /// One answered sample against the no-load latency (or the latest attempts alone, when
    /// they were slower: see [`RECENT_ALONE`]). `in_flight × (1 − gradient)` is how
    /// many of the attempts in flight were waiting rather than being worked on (Vegas's queue
    /// estimate): with `n` in flight on `W` workers it is `n − W`. It is taken with
    /// a tolerance (a sample up to the no-load samples' own spread over no-load, at least
    /// [`MIN_TOLERANCE`] and at most [`TOLERANCE`], shows no queue), an attempt alone in
    /// flight shows none however slow the machine was, and it is smoothed.
    ///
    /// While the smoothed estimate is under [`QUEUE_MIN`] there is no queue: grow by
    /// [`SMOOTHING`] × √limit, if the limit was in use (a replica given two calls at a time
    /// says nothing about whether it could take twenty: Netflix's "app-limited" rule). While
    /// there is one, a sample with company says what the replica works on at once,
    /// `in_flight × gradient`: move the limit toward that plus its square root, the headroom
    /// that keeps every worker busy while the next request travels (by [`SMOOTHING`] up, by
    /// [`DECREASE_SMOOTHING`] down).
    fn follow_gradient(&mut self, latency: Duration, in_flight: usize, now: Instant) {
        let Some(median) = self.last_no_load else {
            return;
        };
        // When the latest attempts alone were slow too, the slowness is not our queue.
        let recent = self.no_load.latest_floor(RECENT_ALONE, now, self.window());
        let no_load = recent.map_or(median, |recent| recent.max(median));
        let ratio = no_load.as_secs_f64() / latency.as_secs_f64().max(f64::MIN_POSITIVE);
        let gradient = ratio.clamp(MIN_GRADIENT, 1.0);
        let tolerance = self
            .no_load
            .spread(now, self.window())
            .clamp(MIN_TOLERANCE, TOLERANCE);
        let tolerated = (ratio * tolerance).clamp(MIN_GRADIENT, 1.0);
        // Alone in flight, nothing of ours can have waited, however slow the machine was.
        let waiting = if in_flight <= 1 {
            0.0
        } else {
            in_flight as f64 * (1.0 - tolerated)
        };
        let in_flight = in_flight as f64;
        self.queue += SMOOTHING * (waiting - self.queue);
        if self.queue < QUEUE_MIN {
            let in_use = in_flight * 2.0 >= self.limit;
            if in_use {
                self.limit += SMOOTHING * self.limit.sqrt();
            }
        } else if in_flight > 1.0 {
            let working = in_flight * gradient;
            let target = working + working.sqrt();
            let step = if target < self.limit {
                DECREASE_SMOOTHING
            } else {
                SMOOTHING
            };
            self.limit += step * (target - self.limit);
        }
    }

    /// How long a no-load sample is remembered: [`NO_LOAD_WINDOW`], or
    /// [`NO_LOAD_WINDOW_ANSWERS`] no-load latencies for a replica slow enough that a second
    /// would be only a few of its answers.
    fn window(&self) -> Duration {
        let scaled = self
            .last_no_load
            .map_or(Duration::ZERO, |d| d * NO_LOAD_WINDOW_ANSWERS);
        NO_LOAD_WINDOW.max(scaled)
    }
}

impl Default for AdaptiveLimit {
    fn default() -> Self {
        AdaptiveLimit::new()
    }
}

impl fmt::Display for AdaptiveLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "limit {:.1}, {} in flight", self.limit, self.in_flight)?;
        if let Some(no_load) = self.last_no_load {
            write!(f, ", no-load {:.1} ms", no_load.as_secs_f64() * 1e3)?;
        }
        Ok(())
    }
}

/// The latest no-load samples, at most [`NO_LOAD_SAMPLES`], each with its time; their median
/// over a window that is an argument, because it scales with the latency it measures.
#[derive(Debug, Clone, Default)]
struct NoLoadSamples {
    samples: VecDeque<(Instant, Duration)>,
}

impl NoLoadSamples {
    fn observe(&mut self, sample: Duration, now: Instant) {
        if self.samples.len() == NO_LOAD_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back((now, sample));
    }

    /// How many of the latest `count` samples are younger than `window`.
    fn latest_count(&self, count: usize, now: Instant, window: Duration) -> usize {
        self.samples
            .iter()
            .rev()
            .take(count)
            .filter(|(at, _)| now.saturating_duration_since(*at) < window)
            .count()
    }

    /// Forgets all but the latest `count` samples.
    fn keep_latest(&mut self, count: usize) {
        let old = self.samples.len().saturating_sub(count);
        self.samples.drain(..old);
    }

    /// The fastest of the latest `count` samples younger than `window`, `None` for none.
    fn latest_floor(&self, count: usize, now: Instant, window: Duration) -> Option<Duration> {
        self.samples
            .iter()
            .rev()
            .take(count)
            .filter(|(at, _)| now.saturating_duration_since(*at) < window)
            .map(|(_, sample)| *sample)
            .min()
    }

    /// How far apart the samples younger than `window` are: the slowest over the median (1
    /// for none).
    fn spread(&self, now: Instant, window: Duration) -> f64 {
        let slowest = self.younger_than(window, now).max();
        match (slowest, self.median(now, window)) {
            (Some(slowest), Some(median)) => {
                slowest.as_secs_f64() / median.as_secs_f64().max(f64::MIN_POSITIVE)
            }
            _ => 1.0,
        }
    }

    /// The samples younger than `window`, oldest first.
    fn younger_than(&self, window: Duration, now: Instant) -> impl Iterator<Item = Duration> {
        self.samples
            .iter()
            .filter(move |(at, _)| now.saturating_duration_since(*at) < window)
            .map(|(_, sample)| *sample)
    }

    /// The median of the samples younger than `window` (the lower middle one of an even
    /// count), `None` for none.
    fn median(&self, now: Instant, window: Duration) -> Option<Duration> {
        let mut recent: Vec<Duration> = self.younger_than(window, now).collect();
        recent.sort_unstable();
        recent.get(recent.len().checked_sub(1)? / 2).copied()
    }
}

#[cfg(test)]
mod tests {
    // Equivalent mutants (cargo mutants): `self.queue <= QUEUE_MIN` for `<` in
    // `has_spare_room` and in `follow_gradient`, the smoothed estimate being a float that
    // never lands on the constant;
    // `target <= self.limit` for `<` in `follow_gradient`, where a target equal to the limit
    // moves it by nothing at either step.
    use super::*;
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    // ---- the rule, sample by sample ----

    #[test]
    fn starts_at_the_initial_limit() {
        let t0 = Instant::now();
        let mut limit = AdaptiveLimit::new();
        let tokens: Vec<Token> = (0..10).map_while(|_| limit.try_acquire(t0)).collect();
        assert_eq!(tokens.len(), INITIAL_LIMIT as usize);
        assert_eq!(limit.in_flight(), 4);
        assert!(limit.try_acquire(t0).is_none());
        assert_eq!(tokens[0].in_flight(), 1);
        assert_eq!(tokens[3].in_flight(), 4);
    }

    #[test]
    fn a_release_gives_the_slot_back() {
        let t0 = Instant::now();
        let mut limit = AdaptiveLimit::new();
        let tokens: Vec<Token> = (0..4).map_while(|_| limit.try_acquire(t0)).collect();
        assert!(!limit.has_room(t0));
        let mut tokens = tokens.into_iter();
        let first = tokens.next().unwrap();
        limit.release(first, Outcome::Ignored, t0 + ms(1));
        assert!(limit.has_room(t0 + ms(1)));
        assert_eq!(limit.in_flight(), 3);
    }

    #[test]
    fn the_no_load_latency_comes_only_from_samples_alone_in_flight() {
        let t0 = Instant::now();
        let mut limit = AdaptiveLimit::new();
        limit.on_sample(ms(40), Outcome::Answered, 2, t0);
        assert_eq!(limit.no_load(), None, "a sample with company may be queued");
        limit.on_sample(ms(20), Outcome::Answered, 1, t0);
        assert_eq!(limit.no_load(), Some(ms(20)));
        limit.on_sample(ms(5), Outcome::Answered, 3, t0);
        assert_eq!(
            limit.no_load(),
            Some(ms(20)),
            "even a fast one with company"
        );
    }

    #[test]
    fn samples_at_the_no_load_latency_grow_the_limit_when_it_is_in_use() {
        let t0 = Instant::now();
        let mut limit = AdaptiveLimit::new();
        limit.on_sample(ms(20), Outcome::Answered, 1, t0);
        let before = limit.limit();
        limit.on_sample(ms(20), Outcome::Answered, 3, t0);
        // Gradient 1: the target is 4 + √4 = 6, a fifth of the way is 4.4.
        assert!((limit.limit() - 4.4).abs() < 1e-9, "{}", limit.limit());
        assert!(limit.limit() > before);
    }

    #[test]
    fn samples_alone_in_flight_never_shrink_the_limit() {
        // A busy machine: attempts alone in flight take from 2 to 50 ms. None of that is a
        // queue of ours.
        let t0 = Instant::now();
        let mut limit = AdaptiveLimit::new();
        for latency in [2, 3, 50, 2, 20, 7, 2, 40] {
            limit.on_sample(ms(latency), Outcome::Answered, 1, t0);
        }
        assert_eq!(limit.limit(), INITIAL_LIMIT);
    }

    #[test]
    fn an_attempt_alone_does_not_move_a_limit_a_queue_is_lowering() {
        // A queue believed (four in flight on one worker), then an attempt alone: it says
        // nothing of what the replica works on at once, and the limit stays where it was.
        let t0 = Instant::now();
        let mut limit = AdaptiveLimit::new();
        limit.on_sample(ms(20), Outcome::Answered, 1, t0);
        limit.on_sample(ms(80), Outcome::Answered, 4, t0);
        limit.on_sample(ms(80), Outcome::Answered, 4, t0);
        let lowered = limit.limit();
        assert!(lowered < INITIAL_LIMIT, "{lowered}");
        limit.on_sample(ms(20), Outcome::Answered, 1, t0);
        assert_eq!(limit.limit(), lowered);
    }

    #[test]
    fn a_limit_under_two_grows_again_from_attempts_alone() {
        // Under two, only one attempt at a time goes: if those could not grow it, the limit
        // would stay under two for good.
        let t0 = Instant::now();
        let mut limit = AdaptiveLimit::new();
        limit.on_sample(ms(20), Outcome::Answered, 1, t0);
        for _ in 0..3 {
            limit.on_sample(ms(1), Outcome::Dropped, 4, t0);
        }
        assert!(limit.limit() < 3.0);
        for _ in 0..8 {
            limit.on_sample(ms(1), Outcome::Dropped, 4, t0);
        }
        assert_eq!(limit.admitted(t0), 1, "{limit}");
        for _ in 0..5 {
            limit.on_sample(ms(20), Outcome::Answered, 1, t0);
        }
        assert!(limit.admitted(t0) >= 2, "{limit}");
    }

    #[test]
    fn a_stall_that_slows_attempts_alone_too_is_not_a_queue() {
        let t0 = Instant::now();
        let mut limit = AdaptiveLimit::new();
        for _ in 0..5 {
            limit.on_sample(ms(3), Outcome::Answered, 1, t0);
        }
        // B stalls for 200 ms: everything answers late, alone or not.
        let later = t0 + ms(300);
        for _ in 0..3 {
            limit.on_sample(ms(200), Outcome::Answered, 1, later);
        }
        for _ in 0..10 {
            limit.on_sample(ms(210), Outcome::Answered, 4, later);
        }
        assert!(limit.limit() >= INITIAL_LIMIT, "{limit}");
        // The same late answers with company, while attempts alone are quick: a queue.
        let mut queued = AdaptiveLimit::new();
        for _ in 0..5 {
            queued.on_sample(ms(3), Outcome::Answered, 1, t0);
        }
        for _ in 0..10 {
            queued.on_sample(ms(210), Outcome::Answered, 4, later);
        }
        assert!(queued.limit() < 2.0, "{queued}");
    }

    #[test]
    fn one_slow_attempt_alone_does_not_hide_a_queue() {
        let t0 = Instant::now();
        let mut limit = AdaptiveLimit::new();
        for latency in [20, 20, 20, 90] {
            limit.on_sample(ms(latency), Outcome::Answered, 1, t0);
        }
        for _ in 0..10 {
            limit.on_sample(ms(80), Outcome::Answered, 4, t0);
        }
        assert!(limit.limit() < 3.0, "{limit}");
    }

    #[test]
    fn a_little_jitter_with_company_is_not_a_queue() {
        let t0 = Instant::now();
        let mut limit = AdaptiveLimit::new();
        limit.on_sample(ms(10), Outcome::Answered, 1, t0);
        // Two in flight, 12 ms: a fifth of an attempt waiting at most. The limit was in use.
        limit.on_sample(ms(12), Outcome::Answered, 2, t0);
        assert!(limit.limit() > INITIAL_LIMIT, "{}", limit.limit());
    }

    #[test]
    fn an_app_limited_replica_does_not_grow() {
        let t0 = Instant::now();
        let mut limit = AdaptiveLimit::new();
        for _ in 0..100 {
            limit.on_sample(ms(20), Outcome::Answered, 1, t0);
        }
        assert_eq!(
            limit.limit(),
            INITIAL_LIMIT,
            "one in flight of four says nothing"
        );
    }

    #[test]
    fn queueing_shrinks_the_limit_by_the_gradient() {
        let t0 = Instant::now();
        let mut limit = AdaptiveLimit::new();
        limit.on_sample(ms(20), Outcome::Answered, 1, t0);
        // Four in flight on one worker: 80 ms. Gradient 1/4: one at work, the target is
        // 1 + √1 = 2, and half the way down from 4 is 3.
        limit.on_sample(ms(80), Outcome::Answered, 4, t0);
        assert!((limit.limit() - 3.0).abs() < 1e-9, "{}", limit.limit());
    }

    /// Samples alone at `no_load` (in ms, one each), then `count` samples with two in flight
    /// taking `latency` ms: the limit after them.
    fn two_in_flight_after(no_load: &[u64], latency: u64, count: usize) -> f64 {
        let t0 = Instant::now();
        let mut limit = AdaptiveLimit::new();
        for &sample in no_load {
            limit.on_sample(ms(sample), Outcome::Answered, 1, t0);
        }
        for _ in 0..count {
            limit.on_sample(ms(latency), Outcome::Answered, 2, t0);
        }
        limit.limit()
    }

    #[test]
    fn a_quiet_replica_tolerates_only_its_own_noise() {
        // One worker, 20-21 ms alone; two in flight take 34 ms: the second waited 13 ms. A
        // fixed tolerance of 1.5 read that as no queue (34 < 1.5 × 21) and grew the limit
        // past three; the no-load samples' spread (1.05, so 1.1) sees the queue.
        let quiet = two_in_flight_after(&[20, 21, 20, 21, 20], 34, 20);
        assert!(quiet < 3.0, "{quiet}");
    }

    #[test]
    fn a_noisy_replica_tolerates_more() {
        // Attempts alone take 20 to 30 ms: two in flight at 34 ms are within that noise.
        let noisy = two_in_flight_after(&[20, 30, 20, 26, 22], 34, 20);
        assert!(noisy > INITIAL_LIMIT, "{noisy}");
    }

    #[test]
    fn the_spread_is_the_slowest_over_the_median_within_the_window() {
        let t0 = Instant::now();
        let mut samples = NoLoadSamples::default();
        assert_eq!(samples.spread(t0, NO_LOAD_WINDOW), 1.0, "none");
        for (at, sample) in [(0, 40), (500, 20), (600, 22), (700, 21)] {
            samples.observe(ms(sample), t0 + ms(at));
        }
        // 40 over the median of four, the lower middle one: 21.
        let now = t0 + ms(800);
        let spread = samples.spread(now, NO_LOAD_WINDOW);
        assert!((spread - 40.0 / 21.0).abs() < 1e-9, "{spread}");
        // The 40 ms sample leaves the window: 22 over a median of 21.
        let later = t0 + NO_LOAD_WINDOW + ms(100);
        let spread = samples.spread(later, NO_LOAD_WINDOW);
        assert!((spread - 22.0 / 21.0).abs() < 1e-9, "{spread}");
    }

    #[test]
    fn one_huge_sample_moves_the_limit_by_the_floor_at_most() {
        let t0 = Instant::now();
        let mut limit = AdaptiveLimit::new();
        limit.on_sample(ms(20), Outcome::Answered, 1, t0);
        limit.on_sample(Duration::from_secs(20), Outcome::Answered, 4, t0);
        // Gradient floored at 0.1: 0.4 at work, target 0.4 + √0.4; half the way down.
        let target = 0.4 + 0.4f64.sqrt();
        let expected = 4.0 + DECREASE_SMOOTHING * (target - 4.0);
        assert!((limit.limit() - expected).abs() < 1e-9, "{}", limit.limit());
    }

    #[test]
    fn a_drop_cuts_the_limit_multiplicatively() {
        let t0 = Instant::now();
        let mut limit = AdaptiveLimit::new();
        limit.on_sample(ms(1), Outcome::Answered, 1, t0);
        let before = limit.limit();
        limit.on_sample(ms(1), Outcome::Dropped, 4, t0);
        assert!((limit.limit() - before * DROP_DECREASE).abs() < 1e-9);
        assert!(!limit.silent(t0), "it answers: a queue overflowing");
    }

    // ---- a replica that answers nothing ----

    #[test]
    fn a_replica_that_only_drops_is_silent_and_not_limited() {
        let t0 = Instant::now();
        let mut limit = AdaptiveLimit::new();
        let tokens: Vec<Token> = (0..4).map_while(|_| limit.try_acquire(t0)).collect();
        assert!(
            !limit.has_room(t0),
            "the initial limit holds before any verdict"
        );
        let t1 = t0 + ms(333);
        for token in tokens {
            limit.release(token, Outcome::Dropped, t1);
        }
        assert!(limit.silent(t1));
        assert_eq!(
            limit.limit(),
            INITIAL_LIMIT,
            "drops without answers are no queue"
        );
        let many: Vec<Token> = (0..100).map_while(|_| limit.try_acquire(t1)).collect();
        assert_eq!(
            many.len(),
            100,
            "the breaker and ejection see every timeout"
        );
    }

    #[test]
    fn a_silent_replica_that_answers_again_has_its_limit_back() {
        let t0 = Instant::now();
        let mut limit = AdaptiveLimit::new();
        limit.on_sample(ms(20), Outcome::Answered, 1, t0);
        let learned = limit.limit();
        // Answers stop; a window later its timeouts make it silent, the limit untouched.
        let t1 = t0 + NO_LOAD_WINDOW;
        for i in 0..10 {
            limit.on_sample(ms(333), Outcome::Dropped, 4, t1 + ms(i));
        }
        assert!(limit.silent(t1 + ms(10)));
        assert_eq!(limit.limit(), learned);
        // It answers: the limit is enforced again.
        limit.on_sample(ms(20), Outcome::Answered, 1, t1 + ms(20));
        assert!(!limit.silent(t1 + ms(20)));
        assert_eq!(limit.admitted(t1 + ms(20)), limit.limit() as usize);
    }

    #[test]
    fn silence_needs_a_drop_within_the_window() {
        let t0 = Instant::now();
        let mut limit = AdaptiveLimit::new();
        assert!(!limit.silent(t0), "a new replica is not silent");
        limit.on_sample(ms(333), Outcome::Dropped, 1, t0);
        assert!(limit.silent(t0));
        assert!(
            !limit.silent(t0 + NO_LOAD_WINDOW),
            "an old drop says nothing now"
        );
    }

    // ---- room for a hedge or a retry ----

    #[test]
    fn an_extra_attempt_needs_a_worker_to_spare_not_a_place_in_the_queue() {
        let t0 = Instant::now();
        let mut limit = AdaptiveLimit::new();
        limit.on_sample(ms(20), Outcome::Answered, 1, t0);
        // A limit of 4 is 2 at work and a headroom of √4 = 2 queued.
        assert!(limit.has_spare_room(t0));
        let first = limit.try_acquire(t0).expect("room");
        assert!(limit.has_spare_room(t0), "with it, two at work");
        let second = limit.try_acquire(t0).expect("room");
        assert!(!limit.has_spare_room(t0), "a third would queue");
        assert!(limit.has_room(t0), "though a call's first attempt may");
        limit.release(first, Outcome::Answered, t0 + ms(20));
        limit.release(second, Outcome::Answered, t0 + ms(40));
        assert!(limit.has_spare_room(t0 + ms(40)));
    }

    #[test]
    fn at_the_floor_no_worker_is_spare() {
        // A limit of one is one at work and no headroom: a hedge would be its second.
        let t0 = Instant::now();
        let mut limit = AdaptiveLimit::new();
        limit.on_sample(ms(20), Outcome::Answered, 1, t0);
        for _ in 0..20 {
            limit.on_sample(ms(20), Outcome::Dropped, 1, t0);
        }
        assert_eq!(limit.limit(), MIN_LIMIT);
        assert_eq!(limit.in_flight(), 0);
        assert!(limit.has_room(t0), "{limit}");
        assert!(!limit.has_spare_room(t0), "{limit}");
    }

    #[test]
    fn no_extra_attempt_to_a_replica_whose_answers_show_a_queue() {
        let t0 = Instant::now();
        let mut limit = AdaptiveLimit::new();
        limit.on_sample(ms(20), Outcome::Answered, 1, t0);
        for i in 0..5 {
            limit.on_sample(ms(80), Outcome::Answered, 4, t0 + ms(i));
        }
        assert_eq!(limit.in_flight(), 0);
        assert!(limit.has_room(t0 + ms(5)), "{limit}");
        assert!(!limit.has_spare_room(t0 + ms(5)), "queueing: {limit}");
    }

    #[test]
    fn a_silent_replica_has_spare_room() {
        let t0 = Instant::now();
        let mut limit = AdaptiveLimit::new();
        limit.on_sample(ms(333), Outcome::Dropped, 4, t0);
        let _tokens: Vec<Token> = (0..10).filter_map(|_| limit.try_acquire(t0)).collect();
        assert!(limit.has_spare_room(t0));
    }

    #[test]
    fn never_below_one() {
        let t0 = Instant::now();
        let mut limit = AdaptiveLimit::new();
        limit.on_sample(ms(20), Outcome::Answered, 1, t0);
        for i in 0..1000 {
            let outcome = if i % 2 == 0 {
                Outcome::Dropped
            } else {
                Outcome::Answered
            };
            limit.on_sample(Duration::from_secs(5), outcome, 4, t0);
        }
        // A sample a thousand times the no-load latency, with four in flight: 0.4 at work,
        // a target of 0.4 + √0.4 ≈ 1.03; the drops push below it, the floor holds.
        assert!((MIN_LIMIT..1.1).contains(&limit.limit()), "{}", limit);
        assert_eq!(limit.admitted(t0), 1);
        assert!(limit.try_acquire(t0).is_some());
    }

    #[test]
    fn never_above_the_maximum() {
        let t0 = Instant::now();
        let mut limit = AdaptiveLimit::new();
        limit.on_sample(ms(1), Outcome::Answered, 1, t0);
        for _ in 0..10_000 {
            limit.on_sample(ms(1), Outcome::Answered, MAX_LIMIT as usize, t0);
        }
        assert_eq!(limit.limit(), MAX_LIMIT);
    }

    #[test]
    fn ignored_outcomes_teach_nothing() {
        let t0 = Instant::now();
        let mut limit = AdaptiveLimit::new();
        limit.on_sample(Duration::from_micros(50), Outcome::Ignored, 1, t0);
        assert_eq!(
            limit.no_load(),
            None,
            "a refused connection is not a fast replica"
        );
        assert_eq!(limit.limit(), INITIAL_LIMIT);
    }

    #[test]
    fn a_busy_queueing_replica_without_a_no_load_sample_in_the_window_is_pinned_to_one() {
        let t0 = Instant::now();
        let mut limit = AdaptiveLimit::new();
        limit.on_sample(ms(20), Outcome::Answered, 1, t0);
        for _ in 0..2 {
            limit.on_sample(ms(60), Outcome::Answered, 2, t0);
        }
        assert!(
            limit.admitted(t0) > 1,
            "the no-load sample is still in the window"
        );
        let later = t0 + NO_LOAD_WINDOW;
        limit.on_sample(ms(40), Outcome::Answered, 2, later);
        assert_eq!(limit.admitted(later), 1, "measuring again");
        let token = limit.try_acquire(later).expect("one may go");
        assert!(limit.try_acquire(later).is_none());
        limit.release(token, Outcome::Answered, later + ms(20));
        assert!(limit.admitted(later + ms(20)) > 1, "measured: unpinned");
        assert_eq!(limit.no_load(), Some(ms(20)));
    }

    #[test]
    fn a_busy_replica_answering_at_its_no_load_latency_is_not_pinned() {
        let t0 = Instant::now();
        let mut limit = AdaptiveLimit::new();
        limit.on_sample(ms(20), Outcome::Answered, 1, t0);
        let later = t0 + NO_LOAD_WINDOW;
        limit.on_sample(ms(20), Outcome::Answered, 3, later);
        assert_eq!(limit.admitted(later), limit.limit() as usize);
    }

    #[test]
    fn a_slow_replica_remembers_its_no_load_latency_longer() {
        let t0 = Instant::now();
        let mut limit = AdaptiveLimit::new();
        limit.on_sample(ms(300), Outcome::Answered, 1, t0);
        // Fifty answers of 300 ms: 15 s. After 5 s the sample still counts.
        let later = t0 + Duration::from_secs(5);
        for _ in 0..5 {
            limit.on_sample(ms(600), Outcome::Answered, 4, later);
        }
        assert_eq!(limit.admitted(later), limit.limit() as usize);
    }

    #[test]
    fn an_idle_replica_is_not_pinned() {
        let t0 = Instant::now();
        let mut limit = AdaptiveLimit::new();
        limit.on_sample(ms(20), Outcome::Answered, 1, t0);
        limit.on_sample(ms(20), Outcome::Answered, 2, t0);
        // A pause longer than the window: the first attempts after it all go.
        let later = t0 + NO_LOAD_WINDOW * 3;
        assert_eq!(limit.admitted(later), limit.limit() as usize);
    }

    #[test]
    fn a_slower_no_load_latency_is_believed_after_the_window() {
        let t0 = Instant::now();
        let mut limit = AdaptiveLimit::new();
        limit.on_sample(ms(20), Outcome::Answered, 1, t0);
        let later = t0 + NO_LOAD_WINDOW;
        limit.on_sample(ms(60), Outcome::Answered, 1, later);
        assert_eq!(limit.no_load(), Some(ms(60)));
    }

    #[test]
    fn the_no_load_latency_is_the_median_of_the_window() {
        let t0 = Instant::now();
        let window = ms(1000);
        let mut samples = NoLoadSamples::default();
        assert_eq!(samples.median(t0, window), None);
        for (at, latency) in [(0, 5), (100, 40), (200, 6), (300, 7)] {
            samples.observe(ms(latency), t0 + ms(at));
        }
        assert_eq!(
            samples.median(t0 + ms(300), window),
            Some(ms(6)),
            "one slow: noise"
        );
        assert_eq!(
            samples.median(t0 + ms(1050), window),
            Some(ms(7)),
            "5 ms has aged out"
        );
        assert_eq!(samples.median(t0 + ms(1350), window), None);
    }

    #[test]
    fn only_the_latest_no_load_samples_count() {
        let t0 = Instant::now();
        let mut samples = NoLoadSamples::default();
        for _ in 0..NO_LOAD_SAMPLES {
            samples.observe(ms(5), t0);
        }
        for _ in 0..=NO_LOAD_SAMPLES / 2 {
            samples.observe(ms(15), t0);
        }
        assert_eq!(samples.median(t0, ms(1000)), Some(ms(15)));
    }

    #[test]
    fn display_says_limit_in_flight_and_no_load() {
        let t0 = Instant::now();
        let mut limit = AdaptiveLimit::new();
        assert_eq!(limit.to_string(), "limit 4.0, 0 in flight");
        limit.on_sample(ms(20), Outcome::Answered, 1, t0);
        assert_eq!(limit.to_string(), "limit 4.0, 0 in flight, no-load 20.0 ms");
    }

    // ---- against a simulated replica ----

    /// A replica as the lab's A with a capacity model: `workers` workers, each request taking
    /// `work` of one, an unbounded FIFO queue in front; open-loop arrivals every `gap`,
    /// admitted by the limit or refused. Discrete events on a hand-held clock: no sleeping.
    struct Sim {
        t0: Instant,
        now: Instant,
        limit: AdaptiveLimit,
        /// When each worker is next free.
        workers: Vec<Instant>,
        work: Duration,
        /// Admitted attempts by completion time: (finish, sequence) → token.
        finishing: BinaryHeap<Reverse<(Instant, u64)>>,
        tokens: std::collections::HashMap<u64, Token>,
        next_id: u64,
        /// Per run: answered, refused, and the answered latencies.
        answered: u64,
        refused: u64,
        latencies: Vec<Duration>,
    }

    impl Sim {
        fn new(workers: usize, work: Duration) -> Sim {
            let t0 = Instant::now();
            Sim {
                t0,
                now: t0,
                limit: AdaptiveLimit::new(),
                workers: vec![t0; workers],
                work,
                finishing: BinaryHeap::new(),
                tokens: std::collections::HashMap::new(),
                next_id: 0,
                answered: 0,
                refused: 0,
                latencies: Vec::new(),
            }
        }

        /// The capacity changes now: fewer workers (the busiest go) or more (free now).
        fn set_workers(&mut self, n: usize) {
            self.workers.sort();
            self.workers.resize(n, self.now);
        }

        /// Offers one request every `gap` for `length`, processing answers as they come.
        fn run(&mut self, gap: Duration, length: Duration) {
            self.answered = 0;
            self.refused = 0;
            self.latencies.clear();
            let end = self.now + length;
            let mut next_arrival = self.now;
            while next_arrival < end {
                self.complete_until(next_arrival);
                self.now = next_arrival;
                self.arrive();
                next_arrival += gap;
            }
            self.complete_until(end);
            self.now = end;
        }

        fn arrive(&mut self) {
            let Some(token) = self.limit.try_acquire(self.now) else {
                self.refused += 1;
                return;
            };
            let (worker, free) = self
                .workers
                .iter()
                .enumerate()
                .min_by_key(|(_, free)| **free)
                .map(|(i, free)| (i, *free))
                .expect("at least one worker");
            let finish = free.max(self.now) + self.work;
            self.workers[worker] = finish;
            let id = self.next_id;
            self.next_id += 1;
            self.tokens.insert(id, token);
            self.finishing.push(Reverse((finish, id)));
        }

        fn complete_until(&mut self, until: Instant) {
            while let Some(Reverse((finish, id))) = self.finishing.peek().copied() {
                if finish > until {
                    break;
                }
                self.finishing.pop();
                self.now = self.now.max(finish);
                let token = self.tokens.remove(&id).expect("a token per attempt");
                self.latencies.push(finish - token.started);
                self.limit.release(token, Outcome::Answered, finish);
                self.answered += 1;
            }
        }

        fn p99(&self) -> Duration {
            let mut sorted = self.latencies.clone();
            sorted.sort();
            sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)]
        }

        fn admitted_now(&self) -> usize {
            self.limit.admitted(self.now)
        }

        fn elapsed(&self) -> Duration {
            self.now - self.t0
        }
    }

    #[test]
    fn finds_one_worker_under_twice_its_capacity() {
        // One worker, 20 ms a request: 50/s. Offered 100/s.
        let mut sim = Sim::new(1, ms(20));
        sim.run(ms(10), ms(500));
        sim.run(ms(10), Duration::from_secs(5));
        let goodput = sim.answered as f64 / 250.0;
        assert!(goodput >= 0.95, "goodput {goodput}");
        assert!(sim.p99() <= ms(50), "p99 {:?}", sim.p99());
        assert!((1..=3).contains(&sim.admitted_now()), "{}", sim.limit);
        assert!(sim.refused > 200, "the excess is refused: {}", sim.refused);
    }

    #[test]
    fn finds_ten_workers_from_the_initial_limit() {
        // Ten workers, 20 ms: 500/s. Offered 1000/s: the limit must grow from 4 to about 10,
        // and stay under the tolerance's 15 plus its headroom.
        let mut sim = Sim::new(10, ms(20));
        sim.run(ms(1), ms(500));
        let limit = sim.limit.limit();
        assert!((9.0..=20.0).contains(&limit), "after 0.5 s: {}", sim.limit);
        sim.run(ms(1), Duration::from_secs(2));
        let goodput = sim.answered as f64 / 1000.0;
        assert!(goodput >= 0.9, "goodput {goodput}, {}", sim.limit);
        let limit = sim.limit.limit();
        assert!((9.0..=20.0).contains(&limit), "after 2.5 s: {}", sim.limit);
        assert!(sim.p99() <= ms(60), "p99 {:?}", sim.p99());
    }

    #[test]
    fn follows_the_capacity_down_to_a_third_and_back() {
        // Three workers, 20 ms: 150/s. Offered 200/s.
        let mut sim = Sim::new(3, ms(20));
        sim.run(ms(5), Duration::from_secs(2));
        let before = sim.admitted_now();
        assert!((3..=6).contains(&before), "{}", sim.limit);
        // Capacity to a third for 3 s: within half a second the limit is about one worker's.
        sim.set_workers(1);
        sim.run(ms(5), ms(500));
        let during = sim.admitted_now();
        assert!(during <= 3, "half a second into the drop: {}", sim.limit);
        sim.run(ms(5), ms(2500));
        let goodput = sim.answered as f64 / (2.5 * 50.0);
        assert!(goodput >= 0.9, "goodput during the drop {goodput}");
        assert!(sim.p99() <= ms(100), "p99 during the drop {:?}", sim.p99());
        // Back: within half a second the limit is where it was, and goodput with it.
        sim.set_workers(3);
        sim.run(ms(5), ms(500));
        assert!(
            sim.admitted_now() >= 3,
            "half a second after: {}",
            sim.limit
        );
        sim.run(ms(5), Duration::from_secs(2));
        let goodput = sim.answered as f64 / (2.0 * 150.0);
        assert!(goodput >= 0.9, "goodput after {goodput}");
        assert!(sim.elapsed() >= Duration::from_secs(7));
    }

    #[test]
    fn a_slow_replica_is_not_an_overloaded_one() {
        // Three hundred milliseconds a request, but a hundred workers: slow, never queueing.
        // Offered 200/s: 60 in flight needed. The limit must grow past that, not shrink.
        let mut sim = Sim::new(100, ms(300));
        sim.run(ms(5), Duration::from_secs(5));
        assert!(sim.admitted_now() >= 60, "{}", sim.limit);
        assert_eq!(sim.limit.no_load(), Some(ms(300)));
        sim.run(ms(5), Duration::from_secs(2));
        assert!(
            sim.refused * 50 < sim.answered,
            "refused {} of {}",
            sim.refused,
            sim.answered
        );
    }

    #[test]
    fn a_replica_that_became_slower_is_believed_within_the_window() {
        // One worker, 10 ms, offered 50/s (half its capacity); then its work takes 15 ms
        // (still within capacity). A stale no-load latency would read every sample as
        // queueing; after the window the new one is measured and nothing is refused.
        let mut sim = Sim::new(1, ms(10));
        sim.run(ms(20), Duration::from_secs(1));
        sim.work = ms(15);
        sim.run(ms(20), NO_LOAD_WINDOW * 2);
        assert_eq!(sim.limit.no_load(), Some(ms(15)));
        sim.run(ms(20), Duration::from_secs(1));
        assert_eq!(sim.refused, 0);
    }

    #[test]
    fn a_replica_fifteen_times_slower_without_a_queue_is_believed_within_seconds() {
        // No queue ever (100 workers), 17 calls a second (the lab's 50 over three replicas);
        // every answer takes 20 ms, then 300 ms: five in flight, all at work.
        let mut sim = Sim::new(100, ms(20));
        sim.run(ms(60), Duration::from_secs(3));
        assert_eq!(sim.refused, 0);
        sim.work = ms(300);
        // At first the slowness reads as a queue: samples with company against a no-load
        // of 20 ms. Three attempts alone at 300 ms say the replica itself is slower.
        sim.run(ms(60), Duration::from_millis(2500));
        assert_eq!(sim.limit.no_load(), Some(ms(300)), "{}", sim.limit);
        assert!(sim.admitted_now() >= 5, "{}", sim.limit);
        sim.run(ms(60), Duration::from_secs(2));
        assert!(
            sim.refused <= 1,
            "refused {} of {}",
            sim.refused,
            sim.answered
        );
    }
}
