//! The open loop's schedule: request `i` is due at `start + i / rate`, whoever sends it and
//! however long the ones before it took.
//!
//! A closed loop (send, wait for the answer, send the next) slows down with the server it
//! measures: a server that stalls for a second gets fewer requests in that second, and the
//! stall shows up as missing samples rather than as latency ("coordinated omission", Gil
//! Tene's name for it). An open loop keeps to its schedule, and a request's latency counts
//! from when it was *due*, so a stall is measured for every request it delayed.

use std::time::{Duration, Instant};

/// The due times of an open loop at a fixed rate, from request `first` on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// When request `first` is due.
    start: Instant,
    first: u64,
    /// Requests per second, above zero.
    rate: f64,
}

impl Schedule {
    /// Request 0 due at `start`, then `rate` a second. `rate` must be above zero and finite
    /// (both command lines check it).
    pub fn new(start: Instant, rate: f64) -> Schedule {
        Schedule::resumed(0, start, rate)
    }

    /// A schedule whose request `next` is due at `at`, then `rate` a second: how a running
    /// load changes its rate without a burst or a pause (the requests before `next` keep the
    /// times they had).
    pub fn resumed(next: u64, at: Instant, rate: f64) -> Schedule {
        Schedule {
            start: at,
            first: next,
            rate,
        }
    }

    /// The rate, in requests per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// When request `i` is due (a request before `first` counts as due at `start`), or `None`
    /// if that is too far ahead to be represented (a rate of 1e-300 a second).
    pub fn due(&self, i: u64) -> Option<Instant> {
        let seconds = i.saturating_sub(self.first) as f64 / self.rate;
        let offset = Duration::try_from_secs_f64(seconds).ok()?;
        self.start.checked_add(offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_i_is_due_at_i_over_rate() {
        let start = Instant::now();
        let schedule = Schedule::new(start, 4.0);
        assert_eq!(schedule.due(0), Some(start));
        assert_eq!(schedule.due(1), Some(start + Duration::from_millis(250)));
        assert_eq!(schedule.due(10), Some(start + Duration::from_millis(2500)));
    }

    #[test]
    fn a_resumed_schedule_counts_from_its_first_request() {
        let at = Instant::now() + Duration::from_secs(7);
        let schedule = Schedule::resumed(100, at, 10.0);
        assert_eq!(schedule.due(100), Some(at));
        assert_eq!(schedule.due(105), Some(at + Duration::from_millis(500)));
        assert_eq!(
            schedule.due(3),
            Some(at),
            "an earlier request is due at once"
        );
        assert_eq!(schedule.rate(), 10.0);
    }

    #[test]
    fn a_rate_too_small_to_represent_is_never_due() {
        let schedule = Schedule::new(Instant::now(), 1e-300);
        assert_eq!(schedule.due(1), None);
    }
}
