//! Fault injection for service A, off by default: added latency (fixed, random, and a heavy
//! tail), random 500s, random hang-ups, a black hole, and a capacity (workers and their
//! queue, see `capacity.rs`), so a learner can watch B degrade without killing A by hand.
//!
//! The chaos only describes what to do; `echo.rs` does it, racing the delay against the
//! caller's deadline.

use std::fmt;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use super::capacity::{Capacity, MAX_QUEUE_LIMIT, MAX_WORKERS};
use super::json_body::json_error;
use crate::http::server::Outcome;
use crate::random;

/// How long the black hole holds a request before it hangs up, still without a byte.
///
/// "Until the client goes away" is what a dead host does, but a handler cannot see its
/// connection, so it cannot tell that the client has left. Without a cap every abandoned
/// request would keep its connection (a file descriptor and its buffers) until shutdown: B at
/// 300 calls/s would fill A's 10,000 connections in about half a minute, and A would start
/// answering `503 too many connections`, which is no longer a black hole. Ten seconds is ten
/// times B's default deadline, so every caller with a deadline has given up long before; it is
/// also how long A gives a request to arrive or a response to be written.
pub const BLACKHOLE_HOLD: Duration = Duration::from_secs(10);

/// The longest delay a knob may ask for (`delay_ms`, `jitter_ms`, `tail_delay_ms`): one
/// minute.
///
/// A minute is already far past every clock in the lab: B's deadline (1 s), the black hole's
/// hold and the write timeout (10 s), the shutdown grace (10 s). A longer delay shows nothing
/// new, while a slip of the finger (`600000` for `60000`) would hold every `/echo`, with its
/// connection and a timer, for ten minutes. A host that never answers is the black hole.
pub const MAX_DELAY: Duration = Duration::from_secs(60);

/// The chaos knobs. All zero (and no black hole) means A behaves normally.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Chaos {
    /// Added to every `/echo`.
    pub delay: Duration,
    /// A further random delay, uniform in `0..jitter`.
    pub jitter: Duration,
    /// Fraction of `/echo` requests delayed a further `tail_delay`: a heavy latency tail,
    /// like the slow 1 % that "The Tail at Scale" is about.
    pub tail_rate: f64,
    /// The extra delay of the tail.
    pub tail_delay: Duration,
    /// Fraction of `/echo` requests answered `500`.
    pub fail_rate: f64,
    /// Fraction of `/echo` requests where A closes the connection without answering.
    pub drop_rate: f64,
    /// Every `/echo` is read and never answered (until `BLACKHOLE_HOLD`): a dead host whose
    /// kernel still accepts connections. Deadlines and the other knobs do not apply.
    pub blackhole: bool,
    /// Workers and their queue: off (no capacity model) unless `workers` is above 0.
    pub capacity: Capacity,
}

impl Chaos {
    pub fn is_off(&self) -> bool {
        *self == Chaos::default()
    }

    /// Whether the faults (every knob but the capacity) are off: then an `/echo` that got its
    /// worker is answered at once.
    pub fn faults_off(&self) -> bool {
        Chaos {
            capacity: Capacity::default(),
            ..*self
        }
        .is_off()
    }

    /// Checks the rates are fractions, the delays at most `MAX_DELAY`, and that a tail has a
    /// length. Never clamps: a value that would be silently changed is refused, naming its
    /// knob.
    pub fn validate(&self) -> Result<(), InvalidChaos> {
        for (knob, rate) in [
            (Knob::TailRate, self.tail_rate),
            (Knob::FailRate, self.fail_rate),
            (Knob::DropRate, self.drop_rate),
        ] {
            // `contains` is false for NaN too.
            if !(0.0..=1.0).contains(&rate) {
                return Err(InvalidChaos::RateOutOfRange { knob, rate });
            }
        }
        for (knob, delay) in [
            (Knob::DelayMs, self.delay),
            (Knob::JitterMs, self.jitter),
            (Knob::TailDelayMs, self.tail_delay),
            (Knob::WorkMs, self.capacity.work),
        ] {
            if delay > MAX_DELAY {
                let ms = i128::try_from(delay.as_millis()).unwrap_or(i128::MAX);
                return Err(InvalidChaos::DelayOutOfRange { knob, ms });
            }
        }
        for (knob, count, most) in [
            (Knob::Workers, self.capacity.workers, MAX_WORKERS),
            (Knob::QueueLimit, self.capacity.queue_limit, MAX_QUEUE_LIMIT),
        ] {
            if u64::from(count) > most {
                let count = i128::from(count);
                return Err(InvalidChaos::CountOutOfRange { knob, count, most });
            }
        }
        if self.tail_rate > 0.0 && self.tail_delay.is_zero() {
            return Err(InvalidChaos::TailWithoutDelay {
                rate: self.tail_rate,
            });
        }
        Ok(())
    }

    /// The value of one knob, as `/control`, the log and the metrics show it.
    pub fn get(&self, knob: Knob) -> KnobValue {
        let millis =
            |d: Duration| KnobValue::Millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        match knob {
            Knob::DelayMs => millis(self.delay),
            Knob::JitterMs => millis(self.jitter),
            Knob::TailRate => KnobValue::Rate(self.tail_rate),
            Knob::TailDelayMs => millis(self.tail_delay),
            Knob::FailRate => KnobValue::Rate(self.fail_rate),
            Knob::DropRate => KnobValue::Rate(self.drop_rate),
            Knob::Blackhole => KnobValue::Switch(self.blackhole),
            Knob::Workers => KnobValue::Count(self.capacity.workers.into()),
            Knob::WorkMs => millis(self.capacity.work),
            Knob::QueueLimit => KnobValue::Count(self.capacity.queue_limit.into()),
            Knob::QueuePolicy => KnobValue::Word(self.capacity.queue_policy.name()),
        }
    }

    /// How long this request's work takes: the delay, a random share of the jitter, and for
    /// a `tail_rate` fraction of requests the tail on top.
    pub fn work_time(&self) -> Duration {
        self.work_time_for(random::unit(), random::unit())
    }

    /// `work_time` for given draws in `0.0..1.0`, so a test can choose them.
    fn work_time_for(&self, jitter_draw: f64, tail_draw: f64) -> Duration {
        // A draw is below 1.0, so a rate of 1 always hits and a rate of 0 never does.
        let tail = if tail_draw < self.tail_rate {
            self.tail_delay
        } else {
            Duration::ZERO
        };
        // No overflow: each part is at most u64::MAX milliseconds, far below Duration's range.
        self.delay + self.jitter.mul_f64(jitter_draw) + tail
    }

    /// After the work, perhaps replaces the real answer: `Some` is what happens instead (a
    /// 500, or a hang-up).
    pub fn spoil(&self) -> Option<Outcome> {
        if random::unit() < self.drop_rate {
            return Some(Outcome::HangUp);
        }
        if random::unit() < self.fail_rate {
            return Some(json_error(500, "failed by chaos").into());
        }
        None
    }
}

/// Every knob, as logged at start (`chaos on: delay_ms=0 jitter_ms=0 ...`).
impl fmt::Display for Chaos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, knob) in Knob::ALL.into_iter().enumerate() {
            let space = if i == 0 { "" } else { " " };
            write!(f, "{space}{}={}", knob.name(), self.get(knob))?;
        }
        Ok(())
    }
}

/// One chaos knob. Its `name` is the same everywhere: `/control`'s JSON, the log lines, the
/// `knob` label of the metrics; its flag is the name with dashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Knob {
    DelayMs,
    JitterMs,
    TailRate,
    TailDelayMs,
    FailRate,
    DropRate,
    Blackhole,
    Workers,
    WorkMs,
    QueueLimit,
    QueuePolicy,
}

impl Knob {
    /// Every knob, in the order they are shown.
    pub const ALL: [Knob; 11] = [
        Knob::DelayMs,
        Knob::JitterMs,
        Knob::TailRate,
        Knob::TailDelayMs,
        Knob::FailRate,
        Knob::DropRate,
        Knob::Blackhole,
        Knob::Workers,
        Knob::WorkMs,
        Knob::QueueLimit,
        Knob::QueuePolicy,
    ];

    /// `tail_delay_ms`.
    pub fn name(self) -> &'static str {
        match self {
            Knob::DelayMs => "delay_ms",
            Knob::JitterMs => "jitter_ms",
            Knob::TailRate => "tail_rate",
            Knob::TailDelayMs => "tail_delay_ms",
            Knob::FailRate => "fail_rate",
            Knob::DropRate => "drop_rate",
            Knob::Blackhole => "blackhole",
            Knob::Workers => "workers",
            Knob::WorkMs => "work_ms",
            Knob::QueueLimit => "queue_limit",
            Knob::QueuePolicy => "queue_policy",
        }
    }

    /// `--tail-delay-ms`: the flag that sets it at start.
    pub fn flag(self) -> &'static str {
        match self {
            Knob::DelayMs => "--delay-ms",
            Knob::JitterMs => "--jitter-ms",
            Knob::TailRate => "--tail-rate",
            Knob::TailDelayMs => "--tail-delay-ms",
            Knob::FailRate => "--fail-rate",
            Knob::DropRate => "--drop-rate",
            Knob::Blackhole => "--blackhole",
            Knob::Workers => "--workers",
            Knob::WorkMs => "--work-ms",
            Knob::QueueLimit => "--queue-limit",
            Knob::QueuePolicy => "--queue-policy",
        }
    }

    /// The knob called `name`, if there is one.
    pub fn from_name(name: &str) -> Option<Knob> {
        Knob::ALL.into_iter().find(|knob| knob.name() == name)
    }
}

/// A knob's value, of the kind the knob takes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KnobValue {
    /// Whole milliseconds: the delays.
    Millis(u64),
    /// A fraction from 0 to 1: the rates.
    Rate(f64),
    /// On or off: the black hole.
    Switch(bool),
    /// A whole number: workers, the queue's limit.
    Count(u64),
    /// One of a few names: the queue's policy.
    Word(&'static str),
}

impl KnobValue {
    /// As a number, for a Prometheus sample, which has no other type (`true` is 1); `None`
    /// for a word, which is shown as a label instead.
    pub fn as_f64(self) -> Option<f64> {
        match self {
            KnobValue::Millis(ms) | KnobValue::Count(ms) => Some(ms as f64),
            KnobValue::Rate(rate) => Some(rate),
            KnobValue::Switch(on) => Some(f64::from(u8::from(on))),
            KnobValue::Word(_) => None,
        }
    }

    /// As JSON: rates always with a fraction (`0.0`), so a reader sees they are not counts.
    pub fn to_json(self) -> serde_json::Value {
        match self {
            KnobValue::Millis(ms) => ms.into(),
            KnobValue::Rate(rate) => rate.into(),
            KnobValue::Switch(on) => on.into(),
            KnobValue::Count(n) => n.into(),
            KnobValue::Word(word) => word.into(),
        }
    }
}

/// `1500`, `0.25`, `true`: as in the startup line and the log of a change.
impl fmt::Display for KnobValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KnobValue::Millis(ms) => write!(f, "{ms}"),
            KnobValue::Rate(rate) => write!(f, "{rate}"),
            KnobValue::Switch(on) => write!(f, "{on}"),
            KnobValue::Count(n) => write!(f, "{n}"),
            KnobValue::Word(word) => f.write_str(word),
        }
    }
}

/// Why a set of knobs cannot be used.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum InvalidChaos {
    /// A rate outside 0 to 1, or NaN.
    RateOutOfRange { knob: Knob, rate: f64 },
    /// A delay below 0 (only `/control` can ask for one) or above `MAX_DELAY`, in ms.
    DelayOutOfRange { knob: Knob, ms: i128 },
    /// A tail rate above 0 with no tail delay: the tail would not be there.
    TailWithoutDelay { rate: f64 },
    /// A count (workers, the queue's limit) below 0 (only `/control` can ask for one) or
    /// above `most`.
    CountOutOfRange { knob: Knob, count: i128, most: u64 },
}

impl InvalidChaos {
    /// The text with each knob named by its flag, for an error at start.
    pub fn with_flags(&self) -> String {
        self.describe(Knob::flag)
    }

    fn describe(&self, name: fn(Knob) -> &'static str) -> String {
        match *self {
            InvalidChaos::RateOutOfRange { knob, rate } => {
                format!("{}: {rate} is not between 0 and 1", name(knob))
            }
            InvalidChaos::DelayOutOfRange { knob, ms } => format!(
                "{}: {ms} is not between 0 and {}",
                name(knob),
                MAX_DELAY.as_millis()
            ),
            InvalidChaos::CountOutOfRange { knob, count, most } => {
                format!("{}: {count} is not between 0 and {most}", name(knob))
            }
            InvalidChaos::TailWithoutDelay { rate } => format!(
                "{}: {rate} needs {} above 0, or the tail is not there",
                name(Knob::TailRate),
                name(Knob::TailDelayMs)
            ),
        }
    }
}

/// The text with each knob named as in `/control` (`tail_rate: 1.5 is not between 0 and 1`).
impl fmt::Display for InvalidChaos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe(Knob::name))
    }
}

/// A's chaos while it runs: set at start, read by every `/echo`, changed by `/control`.
#[derive(Debug, Default)]
pub struct LiveChaos(RwLock<Chaos>);

impl LiveChaos {
    pub fn new(chaos: Chaos) -> LiveChaos {
        LiveChaos(RwLock::new(chaos))
    }

    /// The knobs now, as a copy: a request keeps the chaos it started with, whatever changes
    /// meanwhile.
    pub fn current(&self) -> Chaos {
        // A panic cannot leave a `Chaos` half-written (it is replaced in one assignment), so
        // a poisoned lock still holds a whole, valid value.
        *self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes `change` of the knobs now and keeps the result if `change` gives one and it is
    /// valid; `Ok` has the knobs before and after. All under the write lock, so two changes
    /// at once cannot undo each other.
    pub fn change<E: From<InvalidChaos>>(
        &self,
        change: impl FnOnce(Chaos) -> Result<Chaos, E>,
    ) -> Result<(Chaos, Chaos), E> {
        let mut chaos = self.0.write().unwrap_or_else(PoisonError::into_inner);
        let before = *chaos;
        let after = change(before)?;
        after.validate()?;
        *chaos = after;
        Ok((before, after))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::capacity::QueuePolicy;

    const MS: Duration = Duration::from_millis(1);

    fn tail(rate: f64, delay_ms: u32) -> Chaos {
        Chaos {
            tail_rate: rate,
            tail_delay: MS * delay_ms,
            ..Chaos::default()
        }
    }

    #[test]
    fn work_time_adds_delay_jitter_and_tail() {
        let chaos = Chaos {
            delay: MS * 100,
            jitter: MS * 40,
            ..tail(0.05, 500)
        };
        assert_eq!(chaos.work_time_for(0.0, 0.5), MS * 100);
        assert_eq!(chaos.work_time_for(0.5, 0.5), MS * 120);
        assert_eq!(chaos.work_time_for(0.5, 0.04), MS * 620);
        assert_eq!(
            chaos.work_time_for(0.0, 0.05),
            MS * 100,
            "0.05 is not below 0.05"
        );
    }

    #[test]
    fn tail_rate_one_always_and_zero_never() {
        let just_below_one = 1.0 - f64::EPSILON;
        assert_eq!(tail(1.0, 300).work_time_for(0.0, just_below_one), MS * 300);
        assert_eq!(tail(0.0, 300).work_time_for(0.0, 0.0), Duration::ZERO);
    }

    #[test]
    fn validation_names_the_knob_and_never_clamps() {
        assert_eq!(Chaos::default().validate(), Ok(()));
        assert_eq!(tail(1.0, 300).validate(), Ok(()));
        assert_eq!(
            tail(0.0, 300).validate(),
            Ok(()),
            "a delay alone is harmless"
        );
        let longest = Chaos {
            delay: MAX_DELAY,
            jitter: MAX_DELAY,
            ..tail(1.0, 60_000)
        };
        assert_eq!(longest.validate(), Ok(()), "the limit itself is allowed");
        for (chaos, knob) in [
            (tail(2.0, 300), Knob::TailRate),
            (tail(f64::NAN, 300), Knob::TailRate),
            (tail(0.5, 0), Knob::TailRate),
            (tail(0.5, 60_001), Knob::TailDelayMs),
            (
                Chaos {
                    drop_rate: -0.1,
                    ..Chaos::default()
                },
                Knob::DropRate,
            ),
            (
                Chaos {
                    jitter: MAX_DELAY + MS,
                    ..Chaos::default()
                },
                Knob::JitterMs,
            ),
        ] {
            let error = chaos.validate().expect_err("refused");
            assert!(error.to_string().starts_with(knob.name()), "{error}");
            assert!(error.with_flags().starts_with(knob.flag()), "{error:?}");
        }
    }

    #[test]
    fn invalid_chaos_reads_in_knobs_or_in_flags() {
        let rate = tail(1.5, 300).validate().expect_err("refused");
        assert_eq!(rate.to_string(), "tail_rate: 1.5 is not between 0 and 1");
        assert_eq!(rate.with_flags(), "--tail-rate: 1.5 is not between 0 and 1");
        let no_tail = tail(0.5, 0).validate().expect_err("refused");
        assert_eq!(
            no_tail.to_string(),
            "tail_rate: 0.5 needs tail_delay_ms above 0, or the tail is not there"
        );
        let long = Chaos {
            delay: MS * 60_001,
            ..Chaos::default()
        };
        assert_eq!(
            long.validate().expect_err("refused").with_flags(),
            "--delay-ms: 60001 is not between 0 and 60000"
        );
    }

    #[test]
    fn knobs_by_name() {
        for knob in Knob::ALL {
            assert_eq!(Knob::from_name(knob.name()), Some(knob));
            assert_eq!(knob.flag(), format!("--{}", knob.name().replace('_', "-")));
        }
        assert_eq!(Knob::from_name("tail"), None);
        assert_eq!(Knob::from_name("--tail-rate"), None);
    }

    #[test]
    fn knob_values_as_number_json_and_text() {
        let chaos = Chaos {
            delay: MS * 1500,
            blackhole: true,
            ..tail(0.25, 500)
        };
        assert_eq!(chaos.get(Knob::DelayMs), KnobValue::Millis(1500));
        assert_eq!(chaos.get(Knob::TailRate).as_f64(), Some(0.25));
        assert_eq!(chaos.get(Knob::Blackhole).as_f64(), Some(1.0));
        assert_eq!(chaos.get(Knob::QueuePolicy).as_f64(), None);
        assert_eq!(
            chaos.get(Knob::QueuePolicy).to_json().to_string(),
            r#""fifo""#
        );
        assert_eq!(chaos.get(Knob::Workers).to_json().to_string(), "0");
        assert_eq!(chaos.get(Knob::FailRate).to_json().to_string(), "0.0");
        assert_eq!(chaos.get(Knob::FailRate).to_string(), "0");
        assert_eq!(chaos.get(Knob::DelayMs).to_json().to_string(), "1500");
        assert_eq!(chaos.get(Knob::Blackhole).to_json().to_string(), "true");
    }

    #[test]
    fn live_chaos_keeps_only_valid_changes() {
        let live = LiveChaos::new(tail(0.5, 300));
        let refused = live.change(|c| {
            Ok::<_, InvalidChaos>(Chaos {
                tail_delay: Duration::ZERO,
                ..c
            })
        });
        assert!(matches!(
            refused,
            Err(InvalidChaos::TailWithoutDelay { .. })
        ));
        assert_eq!(live.current(), tail(0.5, 300), "unchanged after a refusal");
        let (before, after) = live
            .change(|c| {
                Ok::<_, InvalidChaos>(Chaos {
                    fail_rate: 1.0,
                    ..c
                })
            })
            .expect("valid");
        assert_eq!(before, tail(0.5, 300));
        assert_eq!(after.fail_rate, 1.0);
        assert_eq!(live.current(), after);
    }

    #[test]
    fn display_names_every_knob() {
        let chaos = Chaos {
            blackhole: true,
            ..tail(0.05, 500)
        };
        assert_eq!(
            chaos.to_string(),
            "delay_ms=0 jitter_ms=0 tail_rate=0.05 tail_delay_ms=500 fail_rate=0 drop_rate=0 \
             blackhole=true workers=0 work_ms=0 queue_limit=0 queue_policy=fifo"
        );
        assert!(!chaos.is_off());
        assert!(Chaos::default().is_off());
    }

    #[test]
    fn the_capacity_is_a_knob_but_not_a_fault() {
        let chaos = Chaos {
            capacity: Capacity {
                workers: 2,
                work: MS * 20,
                queue_limit: 10,
                queue_policy: QueuePolicy::CodelLifo,
            },
            ..Chaos::default()
        };
        assert!(!chaos.is_off());
        assert!(chaos.faults_off());
        assert_eq!(chaos.validate(), Ok(()));
        assert_eq!(chaos.get(Knob::WorkMs), KnobValue::Millis(20));
        assert_eq!(chaos.get(Knob::QueuePolicy), KnobValue::Word("codel-lifo"));
        let too_many = Chaos {
            capacity: Capacity {
                workers: 10_001,
                ..chaos.capacity
            },
            ..chaos
        };
        assert_eq!(
            too_many.validate().expect_err("refused").with_flags(),
            "--workers: 10001 is not between 0 and 10000"
        );
    }
}
