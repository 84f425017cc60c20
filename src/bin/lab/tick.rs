//! Every `TICK`, one event for the pages: what the load's answers were, what B's `/metrics`
//! says of each replica and of its own decisions, each replica's faults (`GET /control`), each
//! process's state, and the log lines since the last event. Counters become rates here.
//!
//! The event, one JSON object (numbers rounded to a tenth):
//!
//! ```text
//! { "t": 12.5,                      seconds since the lab started
//!   "rate": 50,                     the load's calls a second (0: paused)
//!   "answers": { "per_s": {"200": 48.5, "timeout": 1.5}, "p50_ms": 1.2, "p99_ms": 4.1,
//!                "count": 50,       B's answers over the last second, by outcome
//!                "total": {"200": 1234, "timeout": 3} },   and since the lab started
//!   "replicas": [ { "n": 1, "name": "A1", "addr": "127.0.0.1:40001",
//!                   "process": "running", "pid": 4242,      (or stopping, exited + detail)
//!                   "state": "in_rotation",  (avoided, ejected, unreachable,
//!                                    probation; unknown)
//!                   "attempts_per_s": 16.5, "failed_per_s": 0, "ejections": 0,
//!                   "latency_ms": 1.1, "faults": {"delay_ms": 0, …} or null,
//!                   "capacity": {"queue": 3, …} or null, "limit": 12.3 or null }, … ],
//!                                   (the last two: see capacity.rs)
//!   "b": { "name": "B", "addr": …, "process": "running", "pid": …, "breaker": "closed",
//!          "retries_per_s": 0, "hedges_per_s": 0.5, "hedge_wins_per_s": 0,
//!          "budget_refusals_per_s": 0, "budget_left": 10, "in_flight": 1 },
//!   "logs": [ {"seq": 1234, "src": "B", "line": {…the service's JSON log line…}}, … ] }
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use echo_lab::http::client::Client;
use echo_lab::load::prometheus::Exposition;
use serde_json::{Value, json};
use smol::Executor;

use crate::capacity;
use crate::control;
use crate::processes::Member;
use crate::scrape;
use crate::traffic::Window;
use crate::{Lab, client};

/// How often the pages get an event: twice a second, fast enough to watch a breaker open.
pub const TICK: Duration = Duration::from_millis(500);

/// Log lines one event carries at most: at 50 calls a second an event has about 50; past
/// this the oldest of them are left out (the page shows the newest few hundred anyway).
pub const LOG_LINES_PER_EVENT: usize = 400;

/// How many ticks a rate is measured over: two, so rates are per the last second.
const RATE_TICKS: usize = 2;

/// A replica that gets less than this share of B's attempts is "avoided": B keeps it in
/// rotation, but its balancer sends it nothing. The balancer never decides to avoid anyone; it
/// takes the cheaper of two random replicas, and of three, the most expensive loses every
/// draw. A failed attempt is costed at 100 ms, so a dead replica is avoided after one failure,
/// usually long before five failures in a row could eject it.
const AVOIDED_SHARE: f64 = 0.02;

/// Below this many attempts a second in all, shares say nothing, and no replica is avoided.
const AVOIDED_MIN_ATTEMPTS: f64 = 5.0;

/// What the tick remembers from one event to the next.
pub struct Tick {
    ex: Arc<Executor<'static>>,
    b: Client,
    replicas: Vec<Arc<Client>>,
    rates: Rates,
    /// The load's answers of the last `RATE_TICKS` ticks, each with when its tick began,
    /// oldest first.
    recent: VecDeque<(Instant, Window)>,
    /// When the current tick began.
    began: Instant,
    /// Every answer since the lab started, by outcome.
    totals: BTreeMap<String, u64>,
    /// The number of the next log line to send.
    log_cursor: u64,
}

impl Tick {
    /// The tick of `lab`; the replicas' faults are read on `ex`, all at once.
    pub fn new(lab: &Lab, ex: Arc<Executor<'static>>) -> Tick {
        let now = Instant::now();
        Tick {
            ex,
            b: client(lab.processes.b.addr),
            replicas: lab
                .processes
                .replicas
                .iter()
                .map(|r| Arc::new(client(r.addr)))
                .collect(),
            rates: Rates::default(),
            recent: VecDeque::new(),
            began: now,
            totals: BTreeMap::new(),
            log_cursor: 0,
        }
    }

    /// The next event. The part without log lines is also left with the hub, for pages that
    /// open later.
    pub async fn event(&mut self, lab: &Lab) -> Value {
        lab.processes.reap();
        let (metrics, faults) = self.scrape().await;
        let now = Instant::now();
        self.rates.advance(now);
        let mut event = json!({
            "t": round(lab.started.elapsed().as_secs_f64()),
            "rate": lab.load.rate(),
            "answers": self.answers(lab.load.take_window(), now),
            "replicas": self.replicas_seen(lab, metrics.as_ref(), faults),
            "b": self.b_seen(&lab.processes.b, metrics.as_ref()),
        });
        lab.hub.set_latest(event.clone());
        let (lines, next) = lab.logbook.since(self.log_cursor, LOG_LINES_PER_EVENT);
        self.log_cursor = next;
        event["logs"] = lines.iter().map(|l| l.to_json()).collect();
        event
    }

    /// B's `/metrics`, and each replica's faults and `/metrics`, all asked at once; `None` for
    /// whatever did not answer within `scrape::SCRAPE_DEADLINE`.
    async fn scrape(&self) -> (Option<Exposition>, Vec<Replica>) {
        let faults: Vec<_> = self
            .replicas
            .iter()
            .map(|client| {
                let client = client.clone();
                self.ex.spawn(async move {
                    let faults = control::read_faults(&client).await;
                    let metrics = scrape::fetch(&client).await.ok();
                    Replica { faults, metrics }
                })
            })
            .collect();
        let metrics = scrape::fetch(&self.b).await.ok();
        let mut replica_faults = Vec::new();
        for task in faults {
            replica_faults.push(task.await);
        }
        (metrics, replica_faults)
    }

    /// B's answers over the last `RATE_TICKS` ticks: a rate per outcome, and latency
    /// percentiles; and the totals since the start.
    fn answers(&mut self, window: Window, now: Instant) -> Value {
        for (outcome, n) in &window.outcomes {
            *self.totals.entry(outcome.clone()).or_default() += n;
        }
        self.recent.push_back((self.began, window));
        self.began = now;
        if self.recent.len() > RATE_TICKS {
            self.recent.pop_front();
        }
        let since = self.recent.front().map_or(now, |(began, _)| *began);
        let mut last_second = Window::default();
        for (_, window) in &self.recent {
            last_second.merge(window);
        }
        let seconds = now.duration_since(since).as_secs_f64().max(f64::EPSILON);
        let per_s: serde_json::Map<String, Value> = last_second
            .outcomes
            .iter()
            .map(|(outcome, n)| (outcome.clone(), round(*n as f64 / seconds).into()))
            .collect();
        let latency = &last_second.latency;
        let ms = |p| (latency.total > 0).then(|| round(latency.percentile(p) as f64 / 1000.0));
        json!({
            "per_s": per_s,
            "p50_ms": ms(50.0),
            "p99_ms": ms(99.0),
            "count": latency.total,
            "total": self.totals,
        })
    }

    /// Each replica: its process, what B makes of it, its faults.
    fn replicas_seen(
        &mut self,
        lab: &Lab,
        metrics: Option<&Exposition>,
        own: Vec<Replica>,
    ) -> Value {
        let seen: Vec<Option<Seen>> = lab
            .processes
            .replicas
            .iter()
            .map(|r| Some(Seen::of(&mut self.rates, metrics?, r.addr)))
            .collect();
        let total: f64 = seen.iter().flatten().map(|s| s.attempts_per_s).sum();
        let views = lab.processes.replicas.iter().zip(seen).zip(own);
        views
            .enumerate()
            .map(|(i, ((member, seen), own))| {
                let mut view = member.view();
                view["n"] = (i + 1).into();
                view["state"] = b_state(seen.as_ref(), total).into();
                if let Some(seen) = seen {
                    view["attempts_per_s"] = round(seen.attempts_per_s).into();
                    view["failed_per_s"] = round(seen.failed_per_s).into();
                    view["ejections"] = seen.ejections.into();
                    view["latency_ms"] = round(seen.latency_ms).into();
                }
                view["faults"] = own.faults.unwrap_or(Value::Null);
                let addr = member.addr.to_string();
                let mut rate = |key: &str, value: f64| self.rates.of(key, value);
                view["capacity"] = capacity::view(own.metrics.as_ref(), &addr, &mut rate);
                view["limit"] = capacity::limit(metrics, &addr);
                view
            })
            .collect()
    }

    /// B's process and its own decisions: breaker, retries, hedges, budget, calls in flight.
    fn b_seen(&mut self, b: &Member, metrics: Option<&Exposition>) -> Value {
        let mut view = b.view();
        let Some(m) = metrics else {
            return view;
        };
        let mut rate = |name: &str| round(self.rates.of(name, m.sum(name, &[])));
        view["retries_per_s"] = rate("echo_lab_upstream_retries_total").into();
        view["hedges_per_s"] = rate("echo_lab_upstream_hedges_total").into();
        view["hedge_wins_per_s"] = rate("echo_lab_upstream_hedge_wins_total").into();
        view["budget_refusals_per_s"] = rate("echo_lab_upstream_budget_refusals_total").into();
        view["breaker"] = m
            .label_where("echo_lab_upstream_breaker_state", "state", 1.0)
            .into();
        view["budget_left"] = m
            .get("echo_lab_upstream_retry_budget_available", &[])
            .map(round)
            .into();
        view["in_flight"] = m.get("echo_lab_upstream_in_flight", &[]).into();
        view
    }
}

/// What a replica says of itself: its faults (`/control`) and its `/metrics`.
struct Replica {
    faults: Option<Value>,
    metrics: Option<Exposition>,
}

/// What B's `/metrics` says of one replica.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    ejected: bool,
    unreachable: bool,
    probation: bool,
    attempts_per_s: f64,
    failed_per_s: f64,
    ejections: f64,
    latency_ms: f64,
}

impl Seen {
    fn of(rates: &mut Rates, m: &Exposition, addr: SocketAddr) -> Seen {
        let addr = addr.to_string();
        let replica = [("replica", addr.as_str())];
        let failed = [("replica", addr.as_str()), ("end", "failed")];
        let attempts = "echo_lab_upstream_replica_attempts_total";
        let gauge = |name| m.get(name, &replica).unwrap_or(0.0);
        Seen {
            ejected: gauge("echo_lab_upstream_replica_ejected") == 1.0,
            unreachable: gauge("echo_lab_upstream_replica_unreachable") == 1.0,
            probation: gauge("echo_lab_upstream_replica_probation") == 1.0,
            attempts_per_s: rates.of(&format!("{addr} attempts"), m.sum(attempts, &replica)),
            failed_per_s: rates.of(&format!("{addr} failed"), m.sum(attempts, &failed)),
            ejections: gauge("echo_lab_upstream_replica_ejections_total"),
            latency_ms: gauge("echo_lab_upstream_replica_latency_seconds") * 1000.0,
        }
    }
}

/// What B makes of a replica now: `unreachable` (nothing listens there: B sends it no call,
/// only health checks; ejected or not), `ejected`, `probation` (back from an ejection, its next
/// attempt is its test), `avoided` (in rotation, but the balancer sends it almost nothing:
/// see `AVOIDED_SHARE`), `in_rotation`; `unknown` when B's metrics could not be read.
/// `total_per_s` is B's attempts a second on all replicas.
fn b_state(seen: Option<&Seen>, total_per_s: f64) -> &'static str {
    match seen {
        None => "unknown",
        Some(s) if s.unreachable => "unreachable",
        Some(s) if s.ejected => "ejected",
        Some(s) if s.probation => "probation",
        Some(s)
            if total_per_s >= AVOIDED_MIN_ATTEMPTS
                && s.attempts_per_s < AVOIDED_SHARE * total_per_s =>
        {
            "avoided"
        }
        Some(_) => "in_rotation",
    }
}

/// Per-second rates of counters: each tick's values are kept for `RATE_TICKS` ticks, and a
/// rate is the change since the oldest kept, over the time since then. A counter not seen
/// before has a rate of 0.
#[derive(Debug, Default)]
struct Rates {
    /// Earlier ticks' values, oldest first.
    history: VecDeque<(Instant, HashMap<String, f64>)>,
    /// This tick's values so far, and when this tick began.
    current: HashMap<String, f64>,
    now: Option<Instant>,
}

impl Rates {
    /// Starts a new tick at `now`.
    fn advance(&mut self, now: Instant) {
        if let Some(then) = self.now {
            self.history
                .push_back((then, std::mem::take(&mut self.current)));
            if self.history.len() > RATE_TICKS {
                self.history.pop_front();
            }
        }
        self.now = Some(now);
    }

    /// Records this tick's value of counter `key`, and returns its rate.
    fn of(&mut self, key: &str, value: f64) -> f64 {
        self.current.insert(key.to_owned(), value);
        let (Some(now), Some((then, old))) = (self.now, self.history.front()) else {
            return 0.0;
        };
        let seconds = now.duration_since(*then).as_secs_f64();
        match old.get(key) {
            Some(before) if seconds > 0.0 => ((value - before) / seconds).max(0.0),
            _ => 0.0,
        }
    }
}

/// `x` to a tenth: events stay short, and a tenth is all a chart shows.
fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(attempts_per_s: f64) -> Seen {
        Seen {
            ejected: false,
            unreachable: false,
            probation: false,
            attempts_per_s,
            failed_per_s: 0.0,
            ejections: 0.0,
            latency_ms: 1.0,
        }
    }

    #[test]
    fn a_replica_is_unreachable_ejected_on_probation_avoided_or_in_rotation() {
        assert_eq!(b_state(None, 50.0), "unknown");
        let unreachable = Seen {
            unreachable: true,
            ejected: true,
            ..seen(0.0)
        };
        assert_eq!(b_state(Some(&unreachable), 50.0), "unreachable");
        let ejected = Seen {
            ejected: true,
            ..seen(0.0)
        };
        assert_eq!(b_state(Some(&ejected), 50.0), "ejected");
        let probation = Seen {
            probation: true,
            ..seen(0.0)
        };
        assert_eq!(b_state(Some(&probation), 50.0), "probation");
        assert_eq!(b_state(Some(&seen(0.5)), 50.0), "avoided");
        assert_eq!(b_state(Some(&seen(16.0)), 50.0), "in_rotation");
        assert_eq!(
            b_state(Some(&seen(0.0)), 2.0),
            "in_rotation",
            "too few attempts to tell"
        );
    }

    #[test]
    fn rates_are_the_change_over_the_last_ticks() {
        let t0 = Instant::now();
        let mut rates = Rates::default();
        rates.advance(t0);
        assert_eq!(rates.of("x", 10.0), 0.0, "nothing to compare with yet");
        rates.advance(t0 + TICK);
        assert_eq!(rates.of("x", 15.0), 10.0, "5 in half a second");
        rates.advance(t0 + 2 * TICK);
        assert_eq!(rates.of("x", 30.0), 20.0, "20 in the last second");
        rates.advance(t0 + 3 * TICK);
        assert_eq!(rates.of("x", 31.0), 16.0, "16 in the last second");
        assert_eq!(rates.of("new", 5.0), 0.0);
    }

    #[test]
    fn rounding_is_to_a_tenth() {
        assert_eq!(round(1.26), 1.3);
        assert_eq!(round(0.04), 0.0);
    }
}
