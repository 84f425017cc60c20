//! A's capacity: `workers` slots, each `/echo` holding one for `work_ms`, and the queue in
//! front of them. Off by default (`workers` 0): then A has no capacity model and every
//! `/echo` starts at once, as the contract has always said. On, overload is real on one
//! machine: past `workers / work_ms` requests a second, work waits.
//!
//! Pattern: a bounded, deadline-aware work queue, in one of two policies.
//!
//! * `fifo`, the plain baseline: one queue, oldest first, unbounded unless `queue_limit` says
//!   otherwise. Work whose caller's deadline (`X-Timeout-Ms`) passes while it waits is dropped
//!   unworked: nobody would read the answer.
//! * `codel-lifo`, the defended mode: Facebook's "Fail at Scale" (Maurer, ACM Queue 2015),
//!   which puts two ideas together. Controlled delay (CoDel, Nichols and Jacobson, "Controlling
//!   Queue Delay", 2012): a queue that has not been empty for an `interval` (100 ms) is a
//!   *standing* queue, a buffer that only adds delay, and then work may wait at most a `target`
//!   (5 ms) before it is dropped; a queue that empties now and then absorbs a burst, and work
//!   may wait the whole interval. Adaptive LIFO: while the queue stands, serve the newest
//!   first. The oldest have waited longest and their callers are the likeliest to have given
//!   up already; the newest still have their whole deadline.
//!
//! Why both, and not one of them: under a standing queue FIFO serves every caller late, so
//! goodput collapses even though every worker is busy; LIFO alone keeps serving fresh work but
//! lets the old entries pile up until their deadlines; CoDel's short timeout alone drops them
//! sooner but still serves the oldest first. Together the queue stays a few milliseconds deep
//! and the work done is work someone waits for. Prior art: the paper's own servers (Facebook's
//! Thrift and Wangle), and CoDel itself as a packet queue in Linux (`net/sched/sch_codel.c`,
//! whose timeouts are per packet where ours are per request).
//!
//! A full bounded queue (`queue_limit`) answers `503` at once: a quick "no" lets the caller
//! retry elsewhere, where a long wait would only spend its deadline.
//!
//! The queue (`WorkQueue`) is a plain data structure that takes `now` as an argument; the
//! async part (`Workers`) is a thin shell of a lock, a channel per waiting request and a
//! timer for its give-up time.
//!
//! ```text
//! /echo ─► workers free? ─ yes ─► work W ms holding a worker ─► the echo
//!            │ no
//!            ▼
//!          queue full? ─ yes ─► 503 queue full, at once
//!            │ no
//!            ▼
//!          wait ─┬─ a worker takes it ─► work W ms ...
//!                ├─ the caller's deadline passes ─► 503 abandoned, unworked
//!                └─ CoDel's timeout passes (codel-lifo) ─► 503 overloaded, unworked
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_io::Timer;
use futures_lite::FutureExt;
use smol::channel::{self, Receiver, Sender};

use super::exposition::{Histogram, family};

/// CoDel's target, as "Fail at Scale" sets it: under a standing queue, work waits at most
/// 5 ms. Short next to any deadline, long next to a worker's turn-over on a busy server.
pub const CODEL_TARGET: Duration = Duration::from_millis(5);

/// CoDel's interval: a queue not empty for this long is standing. 100 ms, the paper's value,
/// is about one round trip of a slow client and lets an ordinary burst drain unpunished.
pub const CODEL_INTERVAL: Duration = Duration::from_millis(100);

/// Most workers a knob may ask for. A worker costs nothing until used, but ten thousand is
/// A's connection cap: more workers than connections could never be busy.
pub const MAX_WORKERS: u64 = 10_000;

/// Longest queue a knob may ask for: ten times the connection cap. Each waiting request holds
/// a connection, so the cap refuses first; the limit is there to catch a slip of the finger.
pub const MAX_QUEUE_LIMIT: u64 = 100_000;

/// How the queue chooses the next work, and when it drops work unworked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum QueuePolicy {
    /// Oldest first; work is dropped only when its caller's deadline passes.
    #[default]
    Fifo,
    /// CoDel's timeouts, and newest first while the queue stands (see the module's opening).
    CodelLifo,
}

impl QueuePolicy {
    /// Every policy, in the order they are shown.
    pub const ALL: [QueuePolicy; 2] = [QueuePolicy::Fifo, QueuePolicy::CodelLifo];

    /// `codel-lifo`: as the flag, `/control` and the metrics spell it.
    pub fn name(self) -> &'static str {
        match self {
            QueuePolicy::Fifo => "fifo",
            QueuePolicy::CodelLifo => "codel-lifo",
        }
    }

    /// The policy called `name`, if there is one.
    pub fn from_name(name: &str) -> Option<QueuePolicy> {
        QueuePolicy::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// `fifo` or `codel-lifo`.
impl fmt::Display for QueuePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What `--queue-policy` does not name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownPolicy(pub String);

impl fmt::Display for UnknownPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let known: Vec<&str> = QueuePolicy::ALL
            .into_iter()
            .map(QueuePolicy::name)
            .collect();
        write!(f, "{:?} is not one of {}", self.0, known.join(", "))
    }
}

impl std::str::FromStr for QueuePolicy {
    type Err = UnknownPolicy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        QueuePolicy::from_name(s).ok_or_else(|| UnknownPolicy(s.to_owned()))
    }
}

/// A's capacity knobs. The default, `workers` 0, is no capacity model at all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capacity {
    /// How many `/echo` may be worked on at once; 0: no limit and no queue.
    pub workers: u32,
    /// How long each `/echo` holds its worker: a sleep, not a CPU burn, so that the capacity is
    /// the same however loaded the machine is.
    pub work: Duration,
    /// Most requests waiting for a worker; 0: no bound.
    pub queue_limit: u32,
    /// Which waiting work goes next, and what is dropped.
    pub queue_policy: QueuePolicy,
}

impl Capacity {
    /// Whether A has a capacity model at all.
    pub fn is_on(&self) -> bool {
        self.workers > 0
    }

    /// How many workers may be busy: `workers`, or no limit when the model is off (what was
    /// queued before it was switched off is let through at once).
    fn worker_limit(&self) -> u32 {
        if self.is_on() { self.workers } else { u32::MAX }
    }

    /// Whether `waiting` requests fill the queue.
    fn is_full(&self, waiting: usize) -> bool {
        self.queue_limit > 0 && waiting >= self.queue_limit as usize
    }
}

/// Why work was dropped unworked: the `reason` label of `echo_lab_capacity_dropped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The caller's deadline passed while the work waited.
    Deadline,
    /// The bounded queue was full when the work arrived.
    QueueFull,
    /// The work waited past CoDel's timeout (`codel-lifo` only).
    Codel,
}

impl DropReason {
    /// Every reason, in the order the metrics show them.
    pub const ALL: [DropReason; 3] = [
        DropReason::Deadline,
        DropReason::QueueFull,
        DropReason::Codel,
    ];

    /// `queue_full`: the metric's label.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Deadline => "deadline",
            DropReason::QueueFull => "queue_full",
            DropReason::Codel => "codel",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The answer's text: what a caller reads in the `503`.
impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DropReason::Deadline => "the caller's deadline passed while the work was queued",
            DropReason::QueueFull => "overloaded: the work queue is full",
            DropReason::Codel => "overloaded: waited in the queue past CoDel's timeout",
        })
    }
}

/// One waiting request's number, to take it out of the queue when it gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TicketId(u64);

/// What happened to an arriving request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// A worker was free: it is this request's now.
    Start,
    /// It waits. `give_up` is when it stops waiting (its deadline or CoDel's timeout, the
    /// earlier), if ever; `TicketId` takes it out then.
    Queued {
        id: TicketId,
        give_up: Option<Instant>,
    },
    /// The bounded queue is full: refused at once.
    Full,
}

/// The result of freeing workers: the waiting work to start, and the work found expired on
/// the way, with its reason.
#[derive(Debug, PartialEq, Eq)]
pub struct Dispatch<T> {
    pub start: Vec<T>,
    pub dropped: Vec<(T, DropReason)>,
}

impl<T> Default for Dispatch<T> {
    fn default() -> Self {
        Dispatch {
            start: Vec::new(),
            dropped: Vec::new(),
        }
    }
}

/// A request waiting for a worker. `ticket` is how it is told (a channel's sender in A; a
/// number in the tests).
#[derive(Debug)]
struct Waiting<T> {
    id: TicketId,
    ticket: T,
    /// When it stops waiting, and why: its deadline or CoDel's timeout, the earlier.
    give_up: Option<(Instant, DropReason)>,
}

impl<T> Waiting<T> {
    /// Why it must not start at `now`, if it must not.
    fn expired(&self, now: Instant) -> Option<DropReason> {
        self.give_up
            .filter(|(at, _)| *at <= now)
            .map(|(_, reason)| reason)
    }
}

/// The workers and their queue, as data: every change takes `now`, nothing sleeps.
#[derive(Debug)]
pub struct WorkQueue<T> {
    /// The knobs as the last arrival saw them: a `/control` change applies from the next one.
    capacity: Capacity,
    /// Oldest at the front.
    waiting: VecDeque<Waiting<T>>,
    busy: u32,
    /// The last instant the queue was empty: CoDel's test for a standing queue.
    empty_at: Instant,
    next_id: u64,
}

impl<T> WorkQueue<T> {
    pub fn new(now: Instant) -> WorkQueue<T> {
        WorkQueue {
            capacity: Capacity::default(),
            waiting: VecDeque::new(),
            busy: 0,
            empty_at: now,
            next_id: 0,
        }
    }

    /// Requests waiting now.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether nobody waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Workers busy now.
    pub fn busy(&self) -> u32 {
        self.busy
    }

    /// A standing queue: not empty at any moment of the last `CODEL_INTERVAL`.
    fn is_standing(&self, now: Instant) -> bool {
        !self.waiting.is_empty() && now.saturating_duration_since(self.empty_at) > CODEL_INTERVAL
    }

    /// A request arrives under `capacity`, with its caller's `deadline` if it sent one. It
    /// starts if a worker is free and nobody waits before it; otherwise it waits (`ticket()`
    /// makes the means to tell it when), unless the queue is full.
    pub fn arrive(
        &mut self,
        capacity: Capacity,
        deadline: Option<Instant>,
        now: Instant,
        ticket: impl FnOnce() -> T,
    ) -> Arrival {
        self.capacity = capacity;
        if self.waiting.is_empty() && self.busy < capacity.worker_limit() {
            self.busy += 1;
            return Arrival::Start;
        }
        if capacity.is_full(self.waiting.len()) {
            return Arrival::Full;
        }
        let codel = match capacity.queue_policy {
            QueuePolicy::Fifo => None,
            QueuePolicy::CodelLifo if self.is_standing(now) => Some(now + CODEL_TARGET),
            QueuePolicy::CodelLifo => Some(now + CODEL_INTERVAL),
        };
        let give_up = match (deadline, codel) {
            (Some(d), Some(c)) if c < d => Some((c, DropReason::Codel)),
            (Some(d), _) => Some((d, DropReason::Deadline)),
            (None, Some(c)) => Some((c, DropReason::Codel)),
            (None, None) => None,
        };
        if self.waiting.is_empty() {
            self.empty_at = now;
        }
        let id = TicketId(self.next_id);
        self.next_id += 1;
        self.waiting.push_back(Waiting {
            id,
            ticket: ticket(),
            give_up,
        });
        Arrival::Queued {
            id,
            give_up: give_up.map(|(at, _)| at),
        }
    }

    /// A worker is done (or its work was cut short): it is free again.
    pub fn release(&mut self) {
        self.busy = self.busy.saturating_sub(1);
    }

    /// Gives free workers waiting work: expired work is dropped first, then the next is
    /// taken, oldest first, or newest first while a `codel-lifo` queue stands.
    pub fn dispatch(&mut self, now: Instant) -> Dispatch<T> {
        let mut dispatch = Dispatch::default();
        self.drop_expired(now, &mut dispatch);
        while self.busy < self.capacity.worker_limit() {
            let lifo =
                self.capacity.queue_policy == QueuePolicy::CodelLifo && self.is_standing(now);
            let next = if lifo {
                self.waiting.pop_back()
            } else {
                self.waiting.pop_front()
            };
            let Some(next) = next else { break };
            self.busy += 1;
            dispatch.start.push(next.ticket);
        }
        self.note_if_empty(now);
        dispatch
    }

    /// Takes out the request `id`, whose give-up time has come: why it gave up, or `None` if
    /// it is no longer waiting (a worker took it, or it was dropped, just before).
    pub fn withdraw(&mut self, id: TicketId, now: Instant) -> Option<(T, DropReason)> {
        let at = self.waiting.iter().position(|w| w.id == id)?;
        let waiting = self.waiting.remove(at)?;
        self.note_if_empty(now);
        // Its own timer fired, so its give-up time has come; the fallback is never used.
        let reason = waiting.give_up.map_or(DropReason::Deadline, |(_, r)| r);
        Some((waiting.ticket, reason))
    }

    fn drop_expired(&mut self, now: Instant, dispatch: &mut Dispatch<T>) {
        let mut kept = VecDeque::with_capacity(self.waiting.len());
        for waiting in self.waiting.drain(..) {
            match waiting.expired(now) {
                Some(reason) => dispatch.dropped.push((waiting.ticket, reason)),
                None => kept.push_back(waiting),
            }
        }
        self.waiting = kept;
    }

    fn note_if_empty(&mut self, now: Instant) {
        if self.waiting.is_empty() {
            self.empty_at = now;
        }
    }
}

/// What a waiting request is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// A worker is its now.
    Start,
    /// It was dropped unworked.
    Drop(DropReason),
}

/// What A's `/metrics` shows of the capacity, kept current by `Workers`.
#[derive(Debug, Default)]
struct CapacityStats {
    queue_length: AtomicU64,
    busy: AtomicU64,
    dropped: [AtomicU64; DropReason::ALL.len()],
    /// Time from arrival to a worker, for the work that got one.
    waited: Histogram,
}

/// An arrival as the shell sees it.
enum Queued {
    Started,
    Full,
    Waiting {
        id: TicketId,
        give_up: Option<Instant>,
        receiver: Receiver<Verdict>,
    },
}

/// The async shell around `WorkQueue`: one lock, a channel per waiting request, a timer for
/// when it gives up.
#[derive(Debug)]
pub struct Workers {
    queue: Mutex<WorkQueue<Sender<Verdict>>>,
    stats: CapacityStats,
}

impl Default for Workers {
    fn default() -> Self {
        Workers {
            queue: Mutex::new(WorkQueue::new(Instant::now())),
            stats: CapacityStats::default(),
        }
    }
}

/// A worker held: freed, and the next waiting work started, when dropped (also when the
/// request's future is dropped half way).
#[derive(Debug)]
pub struct Permit<'a> {
    workers: &'a Workers,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut queue = self.workers.lock();
        queue.release();
        self.workers.dispatch(&mut queue, Instant::now());
    }
}

impl Workers {
    /// Waits for a worker under `capacity`: `Ok(None)` when the model is off (no worker is
    /// needed), `Ok(Some(permit))` once one is this request's, or why the work was dropped.
    pub async fn admit(
        &self,
        capacity: Capacity,
        deadline: Option<Instant>,
        arrival: Instant,
    ) -> Result<Option<Permit<'_>>, DropReason> {
        if !capacity.is_on() && self.stats.queue_length.load(Ordering::Relaxed) == 0 {
            return Ok(None);
        }
        let now = Instant::now();
        let (id, give_up, receiver) = match self.arrive(capacity, deadline, now) {
            Queued::Started => {
                self.stats
                    .waited
                    .observe(now.saturating_duration_since(arrival));
                return Ok(Some(Permit { workers: self }));
            }
            Queued::Full => {
                self.count_drop(DropReason::QueueFull);
                return Err(DropReason::QueueFull);
            }
            Queued::Waiting {
                id,
                give_up,
                receiver,
            } => (id, give_up, receiver),
        };
        let verdict = self.wait(id, give_up, &receiver).await;
        match verdict {
            Verdict::Start => {
                let waited = Instant::now().saturating_duration_since(arrival);
                self.stats.waited.observe(waited);
                Ok(Some(Permit { workers: self }))
            }
            Verdict::Drop(reason) => Err(reason),
        }
    }

    /// The arrival under the lock (never held across an await): started, refused, or queued
    /// with the channel its verdict will come by.
    fn arrive(&self, capacity: Capacity, deadline: Option<Instant>, now: Instant) -> Queued {
        let mut receiver = None;
        let mut queue = self.lock();
        let arrival = queue.arrive(capacity, deadline, now, || {
            let (sender, r) = channel::bounded(1);
            receiver = Some(r);
            sender
        });
        // A change by `/control` (more workers, or none) may free workers for the queue.
        self.dispatch(&mut queue, now);
        match (arrival, receiver) {
            (Arrival::Start, _) => Queued::Started,
            (Arrival::Full, _) => Queued::Full,
            (Arrival::Queued { id, give_up }, Some(receiver)) => Queued::Waiting {
                id,
                give_up,
                receiver,
            },
            // `arrive` makes the ticket whenever it queues, so this is never reached; the
            // entry it would be is dropped unanswered by the next dispatch's closed channel.
            (Arrival::Queued { .. }, None) => Queued::Full,
        }
    }

    /// Waits for the verdict, or until `give_up`, when the request takes itself out.
    async fn wait(
        &self,
        id: TicketId,
        give_up: Option<Instant>,
        receiver: &Receiver<Verdict>,
    ) -> Verdict {
        // A closed channel cannot happen while the queue holds the sender; if it did, the
        // request was dropped by nobody in particular, and the deadline is the honest name.
        let told = async {
            receiver
                .recv()
                .await
                .unwrap_or(Verdict::Drop(DropReason::Deadline))
        };
        let Some(give_up) = give_up else {
            return told.await;
        };
        let timed_out = async {
            Timer::at(give_up).await;
            None
        };
        if let Some(verdict) = async { Some(told.await) }.or(timed_out).await {
            return verdict;
        }
        let withdrawn = {
            let mut queue = self.lock();
            let withdrawn = queue.withdraw(id, Instant::now());
            self.note(&queue);
            withdrawn
        };
        match withdrawn {
            Some((_, reason)) => {
                self.count_drop(reason);
                Verdict::Drop(reason)
            }
            // Started or dropped just before the timer: the verdict is in the channel.
            None => receiver
                .recv()
                .await
                .unwrap_or(Verdict::Drop(DropReason::Deadline)),
        }
    }

    /// Starts what the free workers can take, tells the dropped, and keeps the gauges
    /// current. A request that went away while it waited cannot take its worker: the worker
    /// is freed and the queue asked again.
    fn dispatch(&self, queue: &mut WorkQueue<Sender<Verdict>>, now: Instant) {
        loop {
            let Dispatch { start, dropped } = queue.dispatch(now);
            for (ticket, reason) in dropped {
                self.count_drop(reason);
                // A closed channel: the request went away, there is nobody to tell.
                let _ = ticket.try_send(Verdict::Drop(reason));
            }
            let mut gone = 0;
            for ticket in start {
                if ticket.try_send(Verdict::Start).is_err() {
                    queue.release();
                    gone += 1;
                }
            }
            if gone == 0 || queue.is_empty() {
                break;
            }
        }
        self.note(queue);
    }

    fn note(&self, queue: &WorkQueue<Sender<Verdict>>) {
        self.stats
            .queue_length
            .store(queue.len() as u64, Ordering::Relaxed);
        self.stats
            .busy
            .store(u64::from(queue.busy()), Ordering::Relaxed);
    }

    fn count_drop(&self, reason: DropReason) {
        self.stats.dropped[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Work dropped so far for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.stats.dropped[reason.index()].load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WorkQueue<Sender<Verdict>>> {
        // Every change to the queue is whole before the lock is let go of, and none of them
        // panics half way, so a poisoned lock still holds a consistent queue.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The capacity's metrics, in Prometheus's text format, under `capacity` as it is now.
    pub fn render(&self, out: &mut String, capacity: &Capacity) {
        use std::fmt::Write as _;
        let gauges = [
            (
                "echo_lab_capacity_queue_length",
                "Requests waiting for one of A's workers now.",
                self.stats.queue_length.load(Ordering::Relaxed),
            ),
            (
                "echo_lab_capacity_workers_busy",
                "A's workers holding an /echo now.",
                self.stats.busy.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, value) in gauges {
            family(out, name, "gauge", help);
            let _ = writeln!(out, "{name} {value}");
        }
        family(
            out,
            "echo_lab_capacity_queue_policy",
            "gauge",
            "A's queue policy now: 1 for the policy in force (see workers for whether it is on).",
        );
        for policy in QueuePolicy::ALL {
            let on = u8::from(policy == capacity.queue_policy);
            let _ = writeln!(
                out,
                "echo_lab_capacity_queue_policy{{policy=\"{policy}\"}} {on}"
            );
        }
        family(
            out,
            "echo_lab_capacity_dropped_total",
            "counter",
            "Work A dropped unworked: the caller's deadline passed while queued, the bounded \
             queue was full, or it waited past CoDel's timeout.",
        );
        for reason in DropReason::ALL {
            let _ = writeln!(
                out,
                "echo_lab_capacity_dropped_total{{reason=\"{}\"}} {}",
                reason.name(),
                self.dropped(reason)
            );
        }
        self.stats.waited.render(
            out,
            "echo_lab_capacity_wait_seconds",
            "Time from an /echo's arrival to a worker taking it, for the work that got one.",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn capacity(workers: u32, queue_limit: u32, queue_policy: QueuePolicy) -> Capacity {
        Capacity {
            workers,
            work: MS * 50,
            queue_limit,
            queue_policy,
        }
    }

    /// A queue and a clock driven by hand; tickets are numbers.
    struct Lab {
        queue: WorkQueue<u32>,
        start: Instant,
        capacity: Capacity,
    }

    impl Lab {
        fn new(capacity: Capacity) -> Lab {
            let start = Instant::now();
            Lab {
                queue: WorkQueue::new(start),
                start,
                capacity,
            }
        }

        fn at(&self, ms: u32) -> Instant {
            self.start + MS * ms
        }

        fn arrive(&mut self, ticket: u32, at_ms: u32, deadline_ms: Option<u32>) -> Arrival {
            let deadline = deadline_ms.map(|d| self.at(d));
            let now = self.at(at_ms);
            self.queue.arrive(self.capacity, deadline, now, || ticket)
        }

        fn finish(&mut self, at_ms: u32) -> Dispatch<u32> {
            self.queue.release();
            self.queue.dispatch(self.at(at_ms))
        }
    }

    fn queued(arrival: Arrival) -> TicketId {
        match arrival {
            Arrival::Queued { id, .. } => id,
            other => panic!("expected Queued, got {other:?}"),
        }
    }

    #[test]
    fn free_workers_start_at_once_and_the_rest_wait() {
        let mut lab = Lab::new(capacity(2, 0, QueuePolicy::Fifo));
        assert_eq!(lab.arrive(1, 0, None), Arrival::Start);
        assert_eq!(lab.arrive(2, 0, None), Arrival::Start);
        assert_eq!(
            lab.arrive(3, 1, None),
            Arrival::Queued {
                id: TicketId(0),
                give_up: None
            }
        );
        assert_eq!((lab.queue.busy(), lab.queue.len()), (2, 1));
        let dispatch = lab.finish(50);
        assert_eq!(dispatch.start, [3]);
        assert!(dispatch.dropped.is_empty());
        assert_eq!((lab.queue.busy(), lab.queue.len()), (2, 0));
    }

    #[test]
    fn fifo_serves_the_oldest_first_however_long_the_queue_stands() {
        let mut lab = Lab::new(capacity(1, 0, QueuePolicy::Fifo));
        assert_eq!(lab.arrive(0, 0, None), Arrival::Start);
        for ticket in 1..=4 {
            queued(lab.arrive(ticket, ticket, None));
        }
        for (ticket, at) in (1..=4).zip([500, 550, 600, 650]) {
            assert_eq!(lab.finish(at).start, [ticket], "at {at} ms");
        }
    }

    #[test]
    fn an_arrival_waits_behind_the_queue_even_if_a_worker_is_free() {
        let mut lab = Lab::new(capacity(1, 0, QueuePolicy::Fifo));
        lab.arrive(0, 0, None);
        queued(lab.arrive(1, 1, None));
        lab.queue.release();
        // The freed worker belongs to the one waiting, not to the newcomer.
        queued(lab.arrive(2, 2, None));
        assert_eq!(lab.queue.dispatch(lab.at(2)).start, [1]);
    }

    #[test]
    fn work_whose_deadline_passed_while_queued_is_dropped_unworked() {
        let mut lab = Lab::new(capacity(1, 0, QueuePolicy::Fifo));
        lab.arrive(0, 0, None);
        let arrival = lab.arrive(1, 0, Some(30));
        assert_eq!(
            arrival,
            Arrival::Queued {
                id: TicketId(0),
                give_up: Some(lab.at(30))
            }
        );
        queued(lab.arrive(2, 0, Some(1000)));
        let dispatch = lab.finish(50);
        assert_eq!(dispatch.dropped, [(1, DropReason::Deadline)]);
        assert_eq!(dispatch.start, [2]);
    }

    #[test]
    fn a_request_that_gives_up_takes_itself_out() {
        let mut lab = Lab::new(capacity(1, 0, QueuePolicy::Fifo));
        lab.arrive(0, 0, None);
        let id = queued(lab.arrive(1, 0, Some(30)));
        assert_eq!(
            lab.queue.withdraw(id, lab.at(30)),
            Some((1, DropReason::Deadline))
        );
        assert!(lab.queue.is_empty());
        assert_eq!(lab.queue.withdraw(id, lab.at(31)), None, "only once");
        assert!(lab.finish(50).start.is_empty());
        assert_eq!(lab.queue.busy(), 0);
    }

    #[test]
    fn a_full_bounded_queue_refuses_at_once() {
        let mut lab = Lab::new(capacity(1, 2, QueuePolicy::Fifo));
        lab.arrive(0, 0, None);
        queued(lab.arrive(1, 0, None));
        queued(lab.arrive(2, 0, None));
        assert_eq!(lab.arrive(3, 0, None), Arrival::Full);
        lab.finish(50);
        queued(lab.arrive(4, 51, None));
        assert_eq!(lab.arrive(5, 51, None), Arrival::Full);
    }

    #[test]
    fn codel_allows_the_interval_while_the_queue_drains_now_and_then() {
        let mut lab = Lab::new(capacity(1, 0, QueuePolicy::CodelLifo));
        lab.arrive(0, 0, None);
        let arrival = lab.arrive(1, 10, None);
        assert_eq!(
            arrival,
            Arrival::Queued {
                id: TicketId(0),
                give_up: Some(lab.at(10) + CODEL_INTERVAL)
            }
        );
        // A deadline sooner than CoDel's timeout is the one that counts.
        let early = lab.arrive(2, 10, Some(40));
        assert!(matches!(early, Arrival::Queued { give_up: Some(at), .. } if at == lab.at(40)));
    }

    #[test]
    fn under_a_standing_queue_codel_allows_the_target_and_serves_the_newest() {
        let mut lab = Lab::new(capacity(1, 0, QueuePolicy::CodelLifo));
        lab.arrive(0, 0, None);
        // The queue fills at 1 ms and never empties: it stands from 101 ms on.
        queued(lab.arrive(1, 1, Some(1000)));
        queued(lab.arrive(2, 50, Some(1000)));
        let late = lab.arrive(3, 120, Some(1000));
        assert!(
            matches!(late, Arrival::Queued { give_up: Some(at), .. } if at == lab.at(120) + CODEL_TARGET),
            "{late:?}"
        );
        // 1 ran out of CoDel's interval at 101 ms, unworked; 3 is the newest.
        let dispatch = lab.finish(122);
        assert_eq!(dispatch.dropped, [(1, DropReason::Codel)]);
        assert_eq!(dispatch.start, [3], "newest first while the queue stands");
        // 2 runs out at 150 ms.
        let dispatch = lab.finish(160);
        assert_eq!(dispatch.dropped, [(2, DropReason::Codel)]);
        assert!(dispatch.start.is_empty());
        assert_eq!(lab.queue.busy(), 0);
    }

    #[test]
    fn codel_serves_oldest_first_until_the_queue_stands() {
        let mut lab = Lab::new(capacity(1, 0, QueuePolicy::CodelLifo));
        lab.arrive(0, 0, None);
        queued(lab.arrive(1, 1, None));
        queued(lab.arrive(2, 2, None));
        assert_eq!(lab.finish(50).start, [1]);
    }

    #[test]
    fn a_queue_that_empties_is_no_longer_standing() {
        let mut lab = Lab::new(capacity(1, 0, QueuePolicy::CodelLifo));
        lab.arrive(0, 0, None);
        queued(lab.arrive(1, 1, Some(1000)));
        assert_eq!(lab.finish(90).start, [1]);
        // Empty at 90 ms: at 150 ms the new queue is 0 ms old, not 149.
        let arrival = lab.arrive(2, 150, None);
        assert!(
            matches!(arrival, Arrival::Queued { give_up: Some(at), .. } if at == lab.at(150) + CODEL_INTERVAL)
        );
    }

    #[test]
    fn more_workers_start_the_waiting_and_none_lets_them_all_through() {
        let mut lab = Lab::new(capacity(1, 0, QueuePolicy::Fifo));
        lab.arrive(0, 0, None);
        for ticket in 1..=3 {
            queued(lab.arrive(ticket, 1, None));
        }
        lab.capacity.workers = 2;
        queued(lab.arrive(4, 2, None));
        assert_eq!(lab.queue.dispatch(lab.at(2)).start, [1]);
        lab.capacity.workers = 0;
        queued(lab.arrive(5, 3, None));
        assert_eq!(lab.queue.dispatch(lab.at(3)).start, [2, 3, 4, 5]);
        assert!(lab.queue.is_empty());
    }

    #[test]
    fn fewer_workers_start_nothing_until_enough_have_finished() {
        let mut lab = Lab::new(capacity(3, 0, QueuePolicy::Fifo));
        for ticket in 0..3 {
            assert_eq!(lab.arrive(ticket, 0, None), Arrival::Start);
        }
        lab.capacity.workers = 1;
        queued(lab.arrive(3, 1, None));
        assert!(lab.finish(50).start.is_empty(), "two still busy");
        assert!(lab.finish(50).start.is_empty(), "one still busy");
        assert_eq!(lab.finish(50).start, [3]);
    }

    #[test]
    fn policies_and_reasons_read_as_their_names() {
        assert_eq!("codel-lifo".parse(), Ok(QueuePolicy::CodelLifo));
        assert_eq!("fifo".parse(), Ok(QueuePolicy::Fifo));
        let unknown = "lifo".parse::<QueuePolicy>().expect_err("unknown");
        assert_eq!(
            unknown.to_string(),
            r#""lifo" is not one of fifo, codel-lifo"#
        );
        let names: Vec<&str> = DropReason::ALL.into_iter().map(DropReason::name).collect();
        assert_eq!(names, ["deadline", "queue_full", "codel"]);
    }

    #[test]
    fn the_shell_starts_with_a_free_worker_and_drops_work_out_of_time() {
        let workers = Workers::default();
        let capacity = capacity(1, 1, QueuePolicy::Fifo);
        smol::block_on(async {
            let now = Instant::now();
            let permit = workers.admit(capacity, None, now).await;
            assert!(matches!(permit, Ok(Some(_))));
            let off = workers.admit(Capacity::default(), None, now).await;
            assert!(matches!(off, Ok(None)), "no model, no worker needed");
            // The one worker is busy: a request with no time left waits and gives up.
            let late = workers.admit(capacity, Some(now), now).await;
            assert_eq!(late.err(), Some(DropReason::Deadline));
            assert_eq!(workers.dropped(DropReason::Deadline), 1);
            drop(permit);
            let mut text = String::new();
            workers.render(&mut text, &capacity);
            assert!(
                text.contains("echo_lab_capacity_workers_busy 0\n"),
                "{text}"
            );
            assert!(text.contains("echo_lab_capacity_dropped_total{reason=\"deadline\"} 1\n"));
            assert!(text.contains("echo_lab_capacity_queue_policy{policy=\"fifo\"} 1\n"));
        });
    }
}
