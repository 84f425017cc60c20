//! Deadlines without a reactor timer each: one thread that sleeps until the earliest deadline
//! and wakes the waits that have run out. The client's exchange deadline (B's 1 s per call to
//! A) is the user.
//!
//! Pattern: a timer queue with one sleeper, as nginx's timer tree (a red-black tree of
//! deadlines, checked once per event-loop turn) and the Linux kernel's timer wheel do; Go's
//! runtime keeps a heap of timers per P the same way. The point is what a new deadline costs.
//! An async-io `Timer` registers with the reactor, and every registration wakes the thread
//! waiting in epoll so that it can take the new timer into account: a `write` to an eventfd,
//! then a turn of the reactor (`read`, `timerfd_settime`, two `epoll_ctl`, `epoll_pwait`),
//! six system calls per call to A, to learn of a timer that almost never fires.
//!
//! Here a new deadline is an entry in an ordered map, under a lock held for a few
//! instructions. The sleeper is woken only when a new deadline comes before the time it
//! sleeps until, and the deadlines of one service come in the order they are made (each is
//! "now + the budget"), so almost never: it wakes when the earliest deadline passes, finds
//! that most calls have ended (their entries are gone), and sleeps again until the next one.
//! With nothing to wait for it still wakes every `IDLE_TICK`, so that a deadline made while it
//! sleeps needs no wake-up either.
//!
//! ```text
//! wait_until(at) ─► entry (at, id) → waker ──► sleeper: at its time, wake and remove the
//!      │ completes at once if `at` has passed      entries that ran out, sleep to the next
//!      └ dropped (the work won the race): entry removed
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

/// How long the sleeper sleeps when nothing waits. Deadlines of up to this far ahead made in
/// the meantime cost no wake-up; one turn per second costs nothing.
const IDLE_TICK: Duration = Duration::from_secs(1);

/// Completes at `at` (at once if `at` has passed). Made to be raced against the work it bounds
/// (`futures_lite::FutureExt::or`); dropping it early takes its entry out.
pub fn wait_until(at: Instant) -> DeadlineWait {
    DeadlineWait { at, id: None }
}

/// The future of `wait_until`.
#[derive(Debug)]
pub struct DeadlineWait {
    at: Instant,
    /// The entry's id once it is in the queue.
    id: Option<u64>,
}

impl Future for DeadlineWait {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let sweeper = Sweeper::get();
        let mut queue = sweeper.lock();
        if let Some(id) = self.id
            && !queue.entries.contains_key(&(self.at, id))
        {
            // The sleeper took it out: its time has come.
            self.id = None;
            return Poll::Ready(());
        }
        if Instant::now() >= self.at {
            if let Some(id) = self.id.take() {
                queue.entries.remove(&(self.at, id));
            }
            return Poll::Ready(());
        }
        let wake_sleeper = match self.id {
            Some(id) => {
                queue.update(self.at, id, cx.waker());
                false
            }
            None => {
                let (id, wake) = queue.insert(self.at, cx.waker().clone());
                self.id = Some(id);
                wake
            }
        };
        drop(queue);
        if wake_sleeper {
            sweeper.changed.notify_one();
        }
        Poll::Pending
    }
}

impl Drop for DeadlineWait {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            Sweeper::get().lock().entries.remove(&(self.at, id));
        }
    }
}

/// The deadlines waited for, in order, and when the sleeper will next look at them.
#[derive(Debug, Default)]
struct Queue {
    /// Keyed by deadline, then by a number that tells equal deadlines apart.
    entries: BTreeMap<(Instant, u64), Waker>,
    next_id: u64,
    /// When the sleeper wakes next on its own; `None` while it is awake.
    sleeping_until: Option<Instant>,
}

impl Queue {
    /// Adds a deadline. `true`: the sleeper sleeps past it and must be woken to see it.
    fn insert(&mut self, at: Instant, waker: Waker) -> (u64, bool) {
        let id = self.next_id;
        self.next_id += 1;
        self.entries.insert((at, id), waker);
        (id, self.sleeping_until.is_some_and(|until| at < until))
    }

    /// The task that waits may have moved: keep the waker that will reach it.
    fn update(&mut self, at: Instant, id: u64, waker: &Waker) {
        if let Some(kept) = self.entries.get_mut(&(at, id))
            && !kept.will_wake(waker)
        {
            kept.clone_from(waker);
        }
    }

    /// Takes out the entries whose deadline is not after `now`, for their wakers to be woken
    /// (outside the lock); returns how long the sleeper may sleep now.
    fn expire(&mut self, now: Instant, woken: &mut Vec<Waker>) -> Duration {
        while let Some(entry) = self.entries.first_entry() {
            if entry.key().0 > now {
                break;
            }
            woken.push(entry.remove());
        }
        let sleep = match self.entries.first_key_value() {
            Some(((at, _), _)) => at.saturating_duration_since(now).min(IDLE_TICK),
            None => IDLE_TICK,
        };
        self.sleeping_until = Some(now + sleep);
        sleep
    }
}

/// The queue and its one sleeping thread, started on first use.
struct Sweeper {
    queue: Mutex<Queue>,
    changed: Condvar,
}

impl Sweeper {
    fn get() -> &'static Sweeper {
        static SWEEPER: OnceLock<&'static Sweeper> = OnceLock::new();
        SWEEPER.get_or_init(|| {
            let sweeper: &'static Sweeper = Box::leak(Box::new(Sweeper {
                queue: Mutex::new(Queue::default()),
                changed: Condvar::new(),
            }));
            thread::Builder::new()
                .name("deadline-sweep".into())
                .spawn(|| sweeper.run())
                .map_or_else(
                    // Without the thread no deadline would ever fire: no service can run so.
                    |e| panic!("cannot start the deadline thread: {e}"),
                    |_| sweeper,
                )
        })
    }

    /// The lock, even if a thread panicked while holding it: the queue is left whole by every
    /// operation on it.
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run(&self) {
        let mut woken = Vec::new();
        let mut queue = self.lock();
        loop {
            let sleep = queue.expire(Instant::now(), &mut woken);
            if !woken.is_empty() {
                drop(queue);
                woken.drain(..).for_each(Waker::wake);
                queue = self.lock();
                continue;
            }
            queue = match self.changed.wait_timeout(queue, sleep) {
                Ok((queue, _)) => queue,
                Err(e) => e.into_inner().0,
            };
            queue.sleeping_until = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use super::*;

    /// A waker that counts its wake-ups.
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn waker() -> Waker {
        Waker::from(Arc::new(Count(AtomicUsize::new(0))))
    }

    #[test]
    fn the_entries_that_ran_out_are_taken_in_order_and_the_rest_kept() {
        let t0 = Instant::now();
        let mut queue = Queue::default();
        let ms = Duration::from_millis;
        queue.insert(t0 + ms(30), waker());
        queue.insert(t0 + ms(10), waker());
        queue.insert(t0 + ms(10), waker());
        let mut woken = Vec::new();
        let sleep = queue.expire(t0 + ms(10), &mut woken);
        assert_eq!(
            woken.len(),
            2,
            "both at 10 ms, the deadline itself included"
        );
        assert_eq!(sleep, ms(20), "until the one at 30 ms");
        assert_eq!(queue.sleeping_until, Some(t0 + ms(30)));
        woken.clear();
        assert_eq!(queue.expire(t0 + ms(29), &mut woken), ms(1));
        assert!(woken.is_empty());
    }

    #[test]
    fn with_nothing_to_wait_for_the_sleeper_sleeps_one_idle_tick() {
        let t0 = Instant::now();
        let mut queue = Queue::default();
        assert_eq!(queue.expire(t0, &mut Vec::new()), IDLE_TICK);
        let far = t0 + IDLE_TICK * 5;
        queue.insert(far, waker());
        assert_eq!(
            queue.expire(t0, &mut Vec::new()),
            IDLE_TICK,
            "never longer than a tick"
        );
    }

    #[test]
    fn the_sleeper_is_woken_only_for_a_deadline_before_its_own_wake_up() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut queue = Queue::default();
        let (_, awake) = queue.insert(t0 + ms(5), waker());
        assert!(!awake, "an awake sleeper looks at the queue anyway");
        queue.expire(t0, &mut Vec::new()); // now asleep until t0 + 5 ms
        let (_, later) = queue.insert(t0 + ms(1000), waker());
        assert!(!later, "it sees a later deadline when it wakes");
        let (_, earlier) = queue.insert(t0 + ms(1), waker());
        assert!(earlier, "an earlier one would be missed");
    }

    #[test]
    fn a_wait_ends_at_its_deadline_and_not_before() {
        let started = Instant::now();
        let at = started + Duration::from_millis(50);
        futures_lite::future::block_on(wait_until(at));
        let waited = started.elapsed();
        assert!(Instant::now() >= at, "ended {waited:?} after the start");
        assert!(
            waited < Duration::from_secs(2),
            "ended only after {waited:?}"
        );
    }

    #[test]
    fn a_wait_dropped_before_its_deadline_leaves_nothing_behind() {
        use futures_lite::FutureExt;
        let at = Instant::now() + Duration::from_secs(3600);
        let work = futures_lite::future::block_on(async { 7 }.or(async {
            wait_until(at).await;
            0
        }));
        assert_eq!(work, 7);
        // A pending wait that is dropped removes its entry.
        let mut wait = Box::pin(wait_until(at));
        let waker = waker();
        let mut cx = Context::from_waker(&waker);
        assert!(wait.as_mut().poll(&mut cx).is_pending());
        let id = wait.id.expect("queued");
        assert!(Sweeper::get().lock().entries.contains_key(&(at, id)));
        drop(wait);
        assert!(!Sweeper::get().lock().entries.contains_key(&(at, id)));
    }
}
