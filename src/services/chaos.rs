//! Fault injection for service A, off by default: added latency, random 500s, and random
//! hang-ups, so a learner can watch B degrade without killing A by hand.

use std::fmt;
use std::time::Duration;

use async_io::Timer;

use super::random_unit;
use crate::http::message::Response;

/// The chaos knobs. All zero means A behaves normally.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Chaos {
    /// Added to every `/echo`.
    pub delay: Duration,
    /// A further random delay, uniform in `0..jitter`.
    pub jitter: Duration,
    /// Fraction of `/echo` requests answered `500`.
    pub fail_rate: f64,
    /// Fraction of `/echo` requests where A closes the connection without answering.
    pub drop_rate: f64,
}

impl Chaos {
    pub fn is_off(&self) -> bool {
        *self == Chaos::default()
    }

    /// Checks the rates are fractions.
    pub fn validate(&self) -> Result<(), String> {
        for (name, rate) in [
            ("--fail-rate", self.fail_rate),
            ("--drop-rate", self.drop_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name}: {rate} is not between 0 and 1"));
            }
        }
        Ok(())
    }

    /// Waits the configured delay, then perhaps replaces the real answer: `Some` is the
    /// response to send instead (a 500, or a hang-up).
    pub async fn strike(&self) -> Option<Response> {
        let wait = self.delay + self.jitter.mul_f64(random_unit());
        if !wait.is_zero() {
            Timer::after(wait).await;
        }
        if random_unit() < self.drop_rate {
            let mut hang_up = Response::json_error(500, "dropped by chaos");
            hang_up.hang_up = true;
            return Some(hang_up);
        }
        if random_unit() < self.fail_rate {
            return Some(Response::json_error(500, "failed by chaos"));
        }
        None
    }
}

impl fmt::Display for Chaos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "delay_ms={} jitter_ms={} fail_rate={} drop_rate={}",
            self.delay.as_millis(),
            self.jitter.as_millis(),
            self.fail_rate,
            self.drop_rate
        )
    }
}
