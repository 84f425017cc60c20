//! A deadline: one point in time by which a whole exchange must be over.
//!
//! RFC 9110 and RFC 9112 leave timeouts to the implementation (RFC 9112 §9.5 only says a client
//! or server that times out should close the connection gracefully). Ours is one value for one
//! exchange, not a timeout per read: connect, send, response head and body all race the same
//! `Timer::at(deadline.at())`, so a slow trickle of bytes cannot stretch an exchange past its
//! budget, and a timeout is never mistaken for the end of a message.
//!
//! A call that makes several attempts keeps its own deadline and gives each attempt one
//! `within` it, so no attempt outlives the call. `upstream::deadline` tells A what is left.

use std::time::{Duration, Instant};

/// One point in time by which a whole exchange must be over.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    start: Instant,
    at: Instant,
}

impl Deadline {
    pub fn after(budget: Duration) -> Deadline {
        let start = Instant::now();
        Deadline {
            start,
            at: start + budget,
        }
    }

    /// A deadline for one attempt inside this one: it starts now and ends after `limit`,
    /// or when this one ends, whichever comes first.
    pub fn within(&self, limit: Duration) -> Deadline {
        let start = Instant::now();
        Deadline {
            start,
            at: self.at.min(start + limit),
        }
    }

    /// The instant it passes, for `Timer::at`.
    pub fn at(&self) -> Instant {
        self.at
    }

    pub fn budget(&self) -> Duration {
        self.at - self.start
    }

    /// The time left, zero once it has passed.
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempts_deadline_is_the_sooner_of_its_limit_and_the_calls() {
        let call = Deadline::after(Duration::from_secs(10));
        assert!(
            call.remaining() > Duration::from_secs(9),
            "{:?}",
            call.remaining()
        );
        let attempt = call.within(Duration::from_secs(1));
        assert!(attempt.budget() <= Duration::from_secs(1));
        assert!(
            attempt.budget() > Duration::from_millis(900),
            "{:?}",
            attempt.budget()
        );
        let short_call = Deadline::after(Duration::from_millis(200));
        let long_attempt = short_call.within(Duration::from_secs(5));
        assert!(long_attempt.remaining() <= Duration::from_millis(200));
        assert_eq!(Deadline::after(Duration::ZERO).remaining(), Duration::ZERO);
    }
}
