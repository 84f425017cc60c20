//! The lab's load on B: an open loop of `GET /call-echo` at a rate the page may change, built
//! on `echo_lab::load` (the schedule and one request with its deadline, as `loadgen` uses
//! them). Every answer is counted by its outcome, `200` or the `error_kind` of B's `503`, with
//! its latency, in a `Window` that the tick takes every 500 ms.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_io::Timer;
use echo_lab::http::client::{Client, ClientError, ClientResponse};
use echo_lab::load::histogram::Histogram;
use echo_lab::load::request;
use echo_lab::load::schedule::Schedule;
use futures_lite::FutureExt;
use smol::Executor;
use smol::channel::{self, Receiver, Sender};

/// Calls a second when the lab starts (`--rate`'s default): enough for every pattern to show
/// (a dead replica fails an attempt within a tenth of a second, the hedge's p90 has samples),
/// little enough to leave the machine to the services.
pub const DEFAULT_RATE: &str = "50";

/// The most the page may ask for. The lab, B and three A's share the machine; at a thousand
/// calls a second B is busy and the page still moves.
pub const MAX_RATE: f64 = 1000.0;

/// How long the lab waits for one answer. B's own deadline is 1 s, so B answers first and its
/// `503` says why; no answer within twice that is a B that is not answering at all.
const TIMEOUT: Duration = Duration::from_secs(2);

/// What every call asks B for.
const TARGET: &str = "/call-echo?msg=lab";

/// A rate the lab will not run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateOutOfRange(pub f64);

impl fmt::Display for RateOutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rate {} is not a number of calls a second from 0 to {MAX_RATE}",
            self.0
        )
    }
}

/// `rate` if it is from 0 (paused) to `MAX_RATE` calls a second.
pub fn check_rate(rate: f64) -> Result<f64, RateOutOfRange> {
    if (0.0..=MAX_RATE).contains(&rate) {
        Ok(rate)
    } else {
        Err(RateOutOfRange(rate))
    }
}

/// The answers of one interval: how many of each outcome, and their latencies.
#[derive(Debug, Default, Clone)]
pub struct Window {
    pub outcomes: BTreeMap<String, u64>,
    pub latency: Histogram,
}

impl Window {
    fn record(&mut self, outcome: String, micros: u64) {
        *self.outcomes.entry(outcome).or_default() += 1;
        self.latency.record(micros);
    }

    /// Adds `other`'s answers to these.
    pub fn merge(&mut self, other: &Window) {
        for (outcome, n) in &other.outcomes {
            *self.outcomes.entry(outcome.clone()).or_default() += n;
        }
        self.latency.merge(&other.latency);
    }
}

/// The load: its client, its rate, and the answers since the tick last looked.
pub struct Load {
    client: Client,
    /// Calls a second, as `f64::to_bits` (0: paused).
    rate: AtomicU64,
    /// A message when the rate changes, to wake the loop from its wait for the next call.
    changed_tx: Sender<()>,
    changed_rx: Receiver<()>,
    window: Mutex<Window>,
}

impl Load {
    /// A load on B at `b`, `rate` calls a second (checked by `check_rate`).
    pub fn new(b: SocketAddr, rate: f64) -> Load {
        let (changed_tx, changed_rx) = channel::bounded(1);
        Load {
            client: crate::client(b),
            rate: AtomicU64::new(rate.to_bits()),
            changed_tx,
            changed_rx,
            window: Mutex::new(Window::default()),
        }
    }

    pub fn rate(&self) -> f64 {
        f64::from_bits(self.rate.load(Ordering::Relaxed))
    }

    /// Changes the rate from the next call on.
    pub fn set_rate(&self, rate: f64) -> Result<(), RateOutOfRange> {
        self.rate
            .store(check_rate(rate)?.to_bits(), Ordering::Relaxed);
        // Full means a change is already waiting to be seen; one is enough.
        let _ = self.changed_tx.try_send(());
        Ok(())
    }

    /// The answers since the last call.
    pub fn take_window(&self) -> Window {
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut *window)
    }

    /// The open loop, for ever: each call is spawned on `ex` when it is due, whether the ones
    /// before it have been answered or not. A change of rate starts a new schedule from the
    /// next call, due at once.
    pub async fn run(self: Arc<Self>, ex: Arc<Executor<'static>>) {
        let mut next = 0;
        let mut schedule: Option<Schedule> = None;
        loop {
            let rate = self.rate();
            let wanted = (rate > 0.0).then_some(rate);
            if schedule.map(|s| s.rate()) != wanted {
                schedule = wanted.map(|rate| Schedule::resumed(next, Instant::now(), rate));
            }
            let Some(due) = schedule.and_then(|s| s.due(next)) else {
                // Paused: nothing is due until the rate changes.
                let _ = self.changed_rx.recv().await;
                continue;
            };
            let came_due = async {
                Timer::at(due).await;
                true
            };
            let rate_changed = async {
                let _ = self.changed_rx.recv().await;
                false
            };
            if came_due.or(rate_changed).await {
                ex.spawn(self.clone().call(next, due)).detach();
                next += 1;
            }
        }
    }

    /// One call, `lab-<n>` by its request id (B logs it, and passes it on to A), due at `due`.
    async fn call(self: Arc<Self>, n: u64, due: Instant) {
        let id = format!("lab-{n}");
        let headers = [("X-Request-Id", id.as_str())];
        let sample = request::send(&self.client, TARGET, &headers, TIMEOUT, due).await;
        let outcome = outcome(&sample.result);
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        window.record(outcome, sample.micros());
    }
}

/// What an answer counts as: `200`; B's `error_kind` for its `503` (`timeout`,
/// `circuit_open`…); another status as its number; and `no answer: <kind>` when B itself did
/// not answer.
fn outcome(result: &Result<ClientResponse, ClientError>) -> String {
    match result {
        Ok(response) if response.head.status == 200 => "200".to_owned(),
        Ok(response) => {
            error_kind(&response.body).unwrap_or_else(|| response.head.status.to_string())
        }
        Err(e) => format!("no answer: {}", e.kind()),
    }
}

/// The `error_kind` of B's JSON error body, if it has one.
fn error_kind(body: &[u8]) -> Option<String> {
    let body: serde_json::Value = serde_json::from_slice(body).ok()?;
    Some(body.get("error_kind")?.as_str()?.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_from_zero_to_the_maximum_are_taken() {
        assert_eq!(check_rate(0.0), Ok(0.0));
        assert_eq!(check_rate(MAX_RATE), Ok(MAX_RATE));
        for bad in [-1.0, MAX_RATE + 1.0, f64::NAN, f64::INFINITY] {
            assert!(check_rate(bad).is_err(), "{bad}");
        }
        assert_eq!(
            RateOutOfRange(-1.0).to_string(),
            "rate -1 is not a number of calls a second from 0 to 1000"
        );
    }

    #[test]
    fn b_error_bodies_name_the_kind() {
        let body =
            br#"{"service_b":"ok","service_a":"unavailable","error":"x","error_kind":"timeout"}"#;
        assert_eq!(error_kind(body).as_deref(), Some("timeout"));
        assert_eq!(error_kind(b"{\"error\":\"not found\"}"), None);
        assert_eq!(error_kind(b"not json"), None);
    }

    #[test]
    fn windows_merge() {
        let mut a = Window::default();
        a.record("200".to_owned(), 1000);
        let mut b = Window::default();
        b.record("200".to_owned(), 3000);
        b.record("timeout".to_owned(), 1_000_000);
        a.merge(&b);
        assert_eq!(a.outcomes["200"], 2);
        assert_eq!(a.outcomes["timeout"], 1);
        assert_eq!(a.latency.total, 3);
    }
}
