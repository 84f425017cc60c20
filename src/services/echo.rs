//! Service A: `/health` and `/echo?msg=X` → `{"echo":"X"}`, and with `--control` the
//! `/control` endpoint that changes its chaos while it runs (see `control`).
//!
//! An `/echo` is the only route with work to do (its chaos delay stands for real work), so it
//! is the only one that honours the caller's deadline: a caller that sends
//! `X-Timeout-Ms: <n>` says it will wait `n` more milliseconds, and A does not work for nobody.
//!
//! With a capacity (`--workers`, see `capacity`), an `/echo` first waits for a worker and
//! holds it for `work_ms`; the chaos delay comes after, and holds nothing: it is latency,
//! the capacity's work is load.
//!
//! ```text
//! /echo ─► black hole? ─► hold, never answer
//!            │ no
//!            ▼
//!          deadline already passed? ─► 503, refused at once
//!            │ no
//!            ▼
//!          a worker (capacity on) ─┬─ queue full / CoDel ─► 503 overloaded, unworked
//!            │ got one             └─ deadline passed queued ─► 503 abandoned, unworked
//!            ▼
//!          work_ms holding it, raced with the deadline ─► deadline first: 503 abandoned
//!            │ done: the worker is free
//!            ▼
//!          chaos delay ─┬─ done first ─► chaos 500 / hang-up, or the echo
//!          raced with   │
//!          the deadline └─ deadline first ─► work dropped, 503 abandoned
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_io::Timer;
use futures_lite::FutureExt;

use super::capacity::{DropReason, Workers};
use super::chaos::{BLACKHOLE_HOLD, Chaos, LiveChaos};
use super::control::{self, access::ControlAccess};
use super::metrics::{self, Metrics, render_chaos};
use super::query::query_param;
use super::{
    Failure, RequestScope, health, json, json_error, json_string, log_rejected, ready, route,
};
use crate::http::error::RequestError;
use crate::http::message::{Headers, Request, RequestHead, Response};
use crate::http::server::{Handler, Outcome, ServerStatus};
use crate::upstream::deadline::{self, parse_remaining};

/// The echo service's handler.
#[derive(Debug, Default)]
pub struct EchoService {
    /// The chaos knobs: set by the flags at start, changed by `/control`.
    chaos: LiveChaos,
    /// Who may use `/control`; `None`: there is no `/control` (a 404 like any unknown path).
    control: Option<ControlAccess>,
    metrics: Arc<Metrics>,
    /// The server's state, for `/ready`.
    server: ServerStatus,
    /// The workers and their queue, when the chaos gives A a capacity.
    workers: Workers,
}

impl EchoService {
    pub fn new(chaos: Chaos, metrics: Arc<Metrics>) -> EchoService {
        EchoService {
            chaos: LiveChaos::new(chaos),
            control: None,
            metrics,
            server: ServerStatus::default(),
            workers: Workers::default(),
        }
    }

    /// Serves `/control` to the peers `access` admits; `None` leaves it out.
    pub fn with_control(mut self, access: Option<ControlAccess>) -> EchoService {
        self.control = access;
        self
    }

    /// Reports readiness from `server`'s state (see `services::ready`).
    pub fn with_server_status(mut self, server: ServerStatus) -> EchoService {
        self.server = server;
        self
    }

    /// Routes one request; `Failure` when the request itself was wrong (bad `msg`, a refused
    /// `/control`). `request_id` is for `/control`'s own log lines.
    fn respond(&self, request: &Request, request_id: &str) -> (Response, Option<Failure>) {
        // `/control` takes POST, which `route` refuses for every path.
        if let Some(access) = &self.control
            && request.head.path() == control::PATH
        {
            return control::answer(access, &self.chaos, request, request_id);
        }
        match route(&request.head, &["/health", "/ready", "/echo", "/metrics"]) {
            Ok("/echo") => echo(request.head.query()),
            Ok("/ready") => (ready(&self.server), None),
            Ok("/metrics") => (self.metrics_response(), None),
            Ok(_) => (health(), None),
            Err(response) => (response, None),
        }
    }

    /// A's metrics: the common ones, then the chaos knobs as they are now, then the
    /// capacity's queue and workers.
    fn metrics_response(&self) -> Response {
        let mut text = self.metrics.render(None);
        let chaos = self.chaos.current();
        render_chaos(&mut text, &chaos);
        self.workers.render(&mut text, &chaos.capacity);
        Response::new(200, metrics::CONTENT_TYPE, text)
    }

    /// An `/echo`, under the chaos as it is when it arrives: one copy per request, so a
    /// change by `/control` applies from the next request on.
    async fn echo(&self, request: Request, arrival: Instant) -> Outcome {
        let chaos = self.chaos.current();
        // The black hole ignores deadlines: it is a dead host, which reads nothing.
        if chaos.blackhole {
            return self.swallow(request).await;
        }
        let scope = RequestScope::begin("A", &self.metrics, &request);
        if let Some((outcome, failure)) = self.work(&request, arrival, &chaos).await {
            return scope.finish(outcome, Some(failure));
        }
        let (response, failure) = self.respond(&request, &scope.request_id);
        scope.finish(response, failure)
    }

    /// What happens to an `/echo` before its answer: the caller's deadline is checked, a
    /// worker waited for and held for the capacity's work, the chaos delay waited out (each
    /// raced against that deadline), and the chaos may replace the answer. `Some`: the
    /// response to send instead of the echo.
    async fn work(
        &self,
        request: &Request,
        arrival: Instant,
        chaos: &Chaos,
    ) -> Option<(Outcome, Failure)> {
        let remaining = request
            .head
            .headers
            .get_str(deadline::HEADER)
            .and_then(parse_remaining);
        let deadline = match plan(arrival, remaining) {
            Plan::Refuse => return Some(self.give_up(GiveUp::ExpiredOnArrival)),
            Plan::Work => None,
            Plan::WorkUntil(deadline) => Some(deadline),
        };
        if chaos.is_off() {
            return None;
        }
        if let Some(refusal) = self
            .hold_a_worker(arrival, deadline, remaining, chaos)
            .await
        {
            return Some(refusal);
        }
        if chaos.faults_off() {
            return None;
        }
        let wait = chaos.work_time();
        // Only a deadline can cut the work short, so `remaining` is there when it does.
        if let (Err(Abandoned), Some(left)) = (delay(wait, deadline).await, remaining) {
            return Some(self.give_up(GiveUp::DeadlinePassed(left)));
        }
        let outcome = chaos.spoil()?;
        let text = match outcome {
            Outcome::HangUp => "dropped",
            // `spoil` answers 500 or hangs up; it never streams.
            Outcome::Respond(_) | Outcome::Stream(_) => "failed",
        };
        let failure = Failure {
            kind: Some("chaos"),
            text: text.to_owned(),
        };
        Some((outcome, failure))
    }

    /// The capacity's part: waits for a worker and holds it for `work_ms` (raced with the
    /// deadline). `Some`: the work was dropped, and the answer to send instead. Nothing to
    /// do when the capacity is off.
    async fn hold_a_worker(
        &self,
        arrival: Instant,
        deadline: Option<Instant>,
        remaining: Option<Duration>,
        chaos: &Chaos,
    ) -> Option<(Outcome, Failure)> {
        let capacity = chaos.capacity;
        let permit = match self.workers.admit(capacity, deadline, arrival).await {
            Ok(permit) => permit?,
            Err(DropReason::Deadline) => {
                let left = remaining.unwrap_or_default();
                return Some(self.give_up(GiveUp::DeadlinePassed(left)));
            }
            Err(reason) => return Some(overloaded(reason)),
        };
        // How long the work takes is read when it starts, not when it arrived: a server that
        // got faster again (`/control`) is faster for the work still queued too.
        let work = self.chaos.current().capacity.work;
        // The worker is freed when `permit` goes, whichever way this ends.
        let worked = delay(work, deadline).await;
        drop(permit);
        match (worked, remaining) {
            (Err(Abandoned), Some(left)) => Some(self.give_up(GiveUp::DeadlinePassed(left))),
            _ => None,
        }
    }

    /// Counts work given up for the caller's deadline; the answer to send and its failure
    /// (logged at WARN with `error_kind=deadline`).
    ///
    /// Abandoned work is answered `503`, not closed: the caller has almost surely gone, and
    /// then the answer costs one small write that goes nowhere. But a caller still there (one
    /// that sent a shorter deadline than it keeps, or a person with curl) learns why, where a
    /// silent close would look exactly like a crash, and the connection stays usable.
    fn give_up(&self, why: GiveUp) -> (Outcome, Failure) {
        let (reason, text) = match why {
            GiveUp::ExpiredOnArrival => (
                "expired_on_arrival",
                "the caller's deadline had already passed".to_owned(),
            ),
            GiveUp::DeadlinePassed(after) => (
                "deadline_passed",
                format!(
                    "abandoned: the caller's deadline passed after {} ms",
                    after.as_millis()
                ),
            ),
        };
        self.metrics.record_abandoned(reason);
        let failure = Failure {
            kind: Some("deadline"),
            text,
        };
        (json_error(503, &failure.text).into(), failure)
    }

    /// The black hole: the request has been read and is never answered. Only what its log
    /// line needs is kept while it is held (the request itself, up to 64 KiB of body, is
    /// dropped), so a held request costs its connection and a timer. After `BLACKHOLE_HOLD`
    /// A hangs up without a byte. Shutdown treats it like any request in flight: it is dropped,
    /// unanswered, when the grace period ends.
    async fn swallow(&self, request: Request) -> Outcome {
        let kept = log_fields_of(&request);
        drop(request);
        let scope = RequestScope::begin("A", &self.metrics, &kept);
        Timer::after(BLACKHOLE_HOLD).await;
        let failure = Failure {
            kind: Some("chaos"),
            text: format!(
                "black-holed: held {} ms unanswered, then hung up",
                BLACKHOLE_HOLD.as_millis()
            ),
        };
        scope.finish(Outcome::HangUp, Some(failure))
    }
}

/// The answer to work the capacity refused (a full queue) or dropped (CoDel): `503` with the
/// reason, logged with `error_kind=overloaded` like B's own refusals under load.
fn overloaded(reason: DropReason) -> (Outcome, Failure) {
    let failure = Failure {
        kind: Some("overloaded"),
        text: reason.to_string(),
    };
    (json_error(503, &failure.text).into(), failure)
}

/// A copy of `request` with only what a log line reads: method, path, `X-Request-Id`.
fn log_fields_of(request: &Request) -> Request {
    let mut headers = Headers::new();
    if let Some(id) = request.head.headers.get("x-request-id") {
        headers.push("X-Request-Id", id);
    }
    let head = RequestHead {
        method: request.head.method.clone(),
        target: request.head.path().to_owned(),
        version: request.head.version,
        headers,
    };
    Request {
        head,
        body: Vec::new(),
        peer: request.peer,
    }
}

/// `{"echo":"<msg>"}`, or a 400 naming what is wrong with `msg`.
fn echo(query: Option<&str>) -> (Response, Option<Failure>) {
    match query_param(query, "msg") {
        Ok(msg) => {
            let msg = msg.unwrap_or_default();
            let body = format!(r#"{{"echo":{}}}"#, json_string(&msg));
            (json(200, body), None)
        }
        Err(e) => {
            let text = e.to_string();
            let failure = Failure {
                kind: None,
                text: text.clone(),
            };
            (json_error(400, &text), Some(failure))
        }
    }
}

/// What to do with one `/echo`, decided from the times alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// No deadline was given: work as long as the work takes, as A always did.
    Work,
    /// Work, but stop at this instant: nobody will read the answer after it.
    WorkUntil(Instant),
    /// The deadline had passed before the request arrived: refuse at once.
    Refuse,
}

/// The plan for a request that arrived at `arrival`, whose caller will wait `remaining` more
/// (`None`: no deadline). The caller's time is relative, so it is counted from our own clock's
/// `arrival` and the two machines' clocks never need to agree.
fn plan(arrival: Instant, remaining: Option<Duration>) -> Plan {
    match remaining {
        None => Plan::Work,
        Some(left) if left.is_zero() => Plan::Refuse,
        // An instant too far to represent is as good as no deadline.
        Some(left) => arrival
            .checked_add(left)
            .map_or(Plan::Work, Plan::WorkUntil),
    }
}

/// Why work was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GiveUp {
    /// `X-Timeout-Ms: 0`: nobody was waiting any more when it arrived.
    ExpiredOnArrival,
    /// The deadline, this long after arrival, came before the work was done.
    DeadlinePassed(Duration),
}

/// The deadline came first; the work was dropped.
#[derive(Debug, PartialEq, Eq)]
struct Abandoned;

/// Waits `wait` (the simulated work), or until `deadline` if that comes first. Losing the
/// race drops the work's timer: nothing goes on working for a caller who has left.
async fn delay(wait: Duration, deadline: Option<Instant>) -> Result<(), Abandoned> {
    if wait.is_zero() {
        return Ok(());
    }
    let work = async {
        Timer::after(wait).await;
        Ok(())
    };
    match deadline {
        None => work.await,
        // `or` polls the work first, so a tie goes to the answer.
        Some(deadline) => {
            work.or(async {
                Timer::at(deadline).await;
                Err(Abandoned)
            })
            .await
        }
    }
}

impl Handler for EchoService {
    async fn handle(&self, request: Request) -> Outcome {
        let arrival = Instant::now();
        if request.head.path() == "/echo" {
            return self.echo(request, arrival).await;
        }
        let scope = RequestScope::begin("A", &self.metrics, &request);
        let (response, failure) = self.respond(&request, &scope.request_id);
        scope.finish(response, failure)
    }

    fn rejected(&self, peer: SocketAddr, error: &RequestError, status: Option<u16>) {
        log_rejected("A", &self.metrics, peer, error, status);
    }

    fn error_response(&self, status: u16, text: &str) -> Response {
        json_error(status, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn plan_follows_the_times() {
        let arrival = Instant::now();
        assert_eq!(plan(arrival, None), Plan::Work);
        assert_eq!(plan(arrival, Some(Duration::ZERO)), Plan::Refuse);
        assert_eq!(plan(arrival, Some(MS)), Plan::WorkUntil(arrival + MS));
        assert_eq!(
            plan(arrival, Some(MS * 200)),
            Plan::WorkUntil(arrival + MS * 200)
        );
        assert_eq!(plan(arrival, Some(Duration::MAX)), Plan::Work);
    }

    #[test]
    fn log_fields_drop_body_query_and_other_headers() {
        let mut headers = Headers::new();
        headers.push("X-Request-Id", b"abc");
        headers.push("Cookie", b"secret");
        let request = Request {
            head: RequestHead {
                method: "GET".into(),
                target: "/echo?msg=a-long-message".into(),
                version: crate::http::message::Version::Http11,
                headers,
            },
            body: vec![b'x'; 1000],
            peer: "127.0.0.1:40000".parse().expect("an address"),
        };
        let kept = log_fields_of(&request);
        assert_eq!(kept.head.target, "/echo");
        assert_eq!(kept.head.headers.len(), 1);
        assert_eq!(kept.head.headers.get_str("x-request-id"), Some("abc"));
        assert!(kept.body.is_empty());
    }
}
