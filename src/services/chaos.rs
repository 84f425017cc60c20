//! Fault injection for service A, off by default: added latency (fixed, random, and a heavy
//! tail), random 500s, random hang-ups, and a black hole, so a learner can watch B degrade
//! without killing A by hand.
//!
//! The chaos only describes what to do; `echo.rs` does it, racing the delay against the
//! caller's deadline.

use std::fmt;
use std::time::Duration;

use super::json_error;
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
}

impl Chaos {
    pub fn is_off(&self) -> bool {
        *self == Chaos::default()
    }

    /// Checks the rates are fractions, and that a tail has a length. Never clamps: a value
    /// that would be silently changed is refused, naming its flag.
    pub fn validate(&self) -> Result<(), String> {
        for (name, rate) in [
            ("--tail-rate", self.tail_rate),
            ("--fail-rate", self.fail_rate),
            ("--drop-rate", self.drop_rate),
        ] {
            // `contains` is false for NaN too.
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name}: {rate} is not between 0 and 1"));
            }
        }
        if self.tail_rate > 0.0 && self.tail_delay.is_zero() {
            return Err(format!(
                "--tail-rate: {} needs --tail-delay-ms above 0, or the tail is not there",
                self.tail_rate
            ));
        }
        Ok(())
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

/// Every knob, as logged at start (`chaos on: ...`).
impl fmt::Display for Chaos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "delay_ms={} jitter_ms={} tail_rate={} tail_delay_ms={} fail_rate={} drop_rate={} \
             blackhole={}",
            self.delay.as_millis(),
            self.jitter.as_millis(),
            self.tail_rate,
            self.tail_delay.as_millis(),
            self.fail_rate,
            self.drop_rate,
            self.blackhole
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn validation_names_the_flag_and_never_clamps() {
        assert_eq!(Chaos::default().validate(), Ok(()));
        assert_eq!(tail(1.0, 300).validate(), Ok(()));
        assert_eq!(
            tail(0.0, 300).validate(),
            Ok(()),
            "a delay alone is harmless"
        );
        for (chaos, flag) in [
            (tail(2.0, 300), "--tail-rate"),
            (tail(f64::NAN, 300), "--tail-rate"),
            (tail(0.5, 0), "--tail-rate"),
            (
                Chaos {
                    drop_rate: -0.1,
                    ..Chaos::default()
                },
                "--drop-rate",
            ),
        ] {
            let error = chaos.validate().expect_err("refused");
            assert!(error.starts_with(flag), "{error}");
        }
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
             blackhole=true"
        );
        assert!(!chaos.is_off());
        assert!(Chaos::default().is_off());
    }
}
