//! Bulkhead: at most N calls to A in flight; past it, B answers `503 overloaded` at once.
//!
//! A call that waits on a black-holed A costs B memory (a task, a connection, buffers) for the
//! whole deadline. Without a cap, a flood of such calls grows B until B itself is the outage:
//! its `/health` slows down, and so does every route that never touches A. A bulkhead, named
//! after the walls that keep one flooded compartment from sinking a ship, bounds what one
//! failing dependency may hold, and turns "too many" into an immediate, cheap refusal.
//!
//! Prior art: Hystrix's *semaphore isolation*
//! (`execution.isolation.semaphore.maxConcurrentRequests`, a counter that rejects when full
//! rather than queueing), resilience4j's `Bulkhead` (the same with `maxConcurrentCalls` and,
//! as here, `maxWaitDuration` 0), and Envoy's cluster circuit breaker `max_requests` (default
//! 1024), which fails requests past it at once instead of queueing them.
//!
//! It is a counter, not a queue: waiting for a slot would only move the pile-up somewhere less
//! visible. The permit gives the slot back when dropped, so a call that is cancelled (its
//! client went away, its future was dropped) cannot leak a slot.

use std::sync::atomic::{AtomicUsize, Ordering};

/// A limit on calls in flight, shared by every task that calls A. Thread-safe: one atomic
/// counter, no lock.
#[derive(Debug)]
pub struct Bulkhead {
    in_flight: AtomicUsize,
    max: usize,
}

/// One call's slot in the bulkhead; the slot is given back when the permit is dropped.
#[derive(Debug)]
#[must_use = "the slot is given back as soon as the permit is dropped"]
pub struct Permit<'a> {
    bulkhead: &'a Bulkhead,
}

impl Bulkhead {
    /// A bulkhead letting at most `max_in_flight` calls through at once. With 0 nothing gets
    /// through (the configuration refuses 0 before it gets here).
    pub fn new(max_in_flight: usize) -> Bulkhead {
        Bulkhead {
            in_flight: AtomicUsize::new(0),
            max: max_in_flight,
        }
    }

    /// A slot, or `None` when `max` calls are already in flight.
    pub fn try_enter(&self) -> Option<Permit<'_>> {
        // Add one only if there is room, in one atomic step, so two tasks racing for the last
        // slot cannot both get it. The counter guards no other data, so `Relaxed` is enough.
        let entered = self
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok();
        // Build a permit only when we took a slot: a permit built and dropped unused would
        // give back a slot it never took (`entered.then_some(Permit { .. })` does exactly that).
        if entered {
            Some(Permit { bulkhead: self })
        } else {
            None
        }
    }

    /// Calls in flight right now (for metrics).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The most calls allowed in flight.
    pub fn max(&self) -> usize {
        self.max
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.bulkhead.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_max() {
        let bulkhead = Bulkhead::new(3);
        let permits: Vec<_> = (0..3).map(|_| bulkhead.try_enter()).collect();
        assert!(permits.iter().all(Option::is_some));
        assert_eq!(bulkhead.in_flight(), 3);
        assert_eq!(bulkhead.max(), 3);
    }

    #[test]
    fn refuses_when_full() {
        let bulkhead = Bulkhead::new(2);
        let _a = bulkhead.try_enter().unwrap();
        let _b = bulkhead.try_enter().unwrap();
        assert!(bulkhead.try_enter().is_none());
        // A refusal takes no slot.
        assert_eq!(bulkhead.in_flight(), 2);
    }

    #[test]
    fn dropping_a_permit_frees_its_slot() {
        let bulkhead = Bulkhead::new(1);
        let permit = bulkhead.try_enter().unwrap();
        assert!(bulkhead.try_enter().is_none());
        drop(permit);
        assert_eq!(bulkhead.in_flight(), 0);
        assert!(bulkhead.try_enter().is_some());
    }

    #[test]
    fn zero_admits_nothing() {
        let bulkhead = Bulkhead::new(0);
        assert!(bulkhead.try_enter().is_none());
        assert_eq!(bulkhead.in_flight(), 0);
    }

    #[test]
    fn never_more_than_max_across_threads() {
        // Eight threads race for four slots many times; each checks the count while it holds
        // a slot. A lost update would show as a count above 4 or a slot never given back.
        let bulkhead = Bulkhead::new(4);
        let most_seen = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..10_000 {
                        if let Some(_permit) = bulkhead.try_enter() {
                            most_seen.fetch_max(bulkhead.in_flight(), Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert!(most_seen.load(Ordering::Relaxed) <= 4);
        assert_eq!(bulkhead.in_flight(), 0);
    }
}
