//! What both services share on top of the HTTP layer: routing to a fixed set of paths,
//! `X-Request-Id`, and the one log line per request.

pub mod caller;
pub mod capacity;
pub mod chaos;
pub mod control;
pub mod echo;
pub mod exposition;
pub mod json_body;
pub mod metrics;
pub mod process_metrics;
pub mod query;
pub mod trace_context;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::http::error::RequestError;
use crate::http::message::Headers;
use crate::http::message::{Request, RequestHead, Response};
use crate::http::server::{Outcome, ServerStatus};
use crate::logging::{self, Field, Value};
use crate::random;
use crate::upstream::CallReport;
pub use json_body::{json, json_error, json_string};
use metrics::Metrics;
use trace_context::TraceContext;

/// The methods every route answers (RFC 9110 §9.3.1, §9.3.2): the contract's `Allow` on a
/// 405, and what the answer to `OPTIONS *` says the server's resources take.
const ALLOW: &str = "GET, HEAD";

/// Longest `X-Request-Id` we accept from a client; longer ones are replaced.
const MAX_REQUEST_ID_BYTES: usize = 128;

/// Finds the route for `head` among `paths`: `Ok(path)` for a known path and GET or HEAD,
/// otherwise the response to send: the answer to `OPTIONS *`, a 404 or a 405.
///
/// `OPTIONS` (RFC 9110 §9.3.7) is answered for `*`, which asks about the server itself (a
/// ping that needs no resource), and not for a path: the contract gives every path `GET` and
/// `HEAD` only, and a 405 with `Allow: GET, HEAD` for anything else, `OPTIONS` included. That
/// keeps `Allow` true everywhere (RFC 9110 §10.2.1): no path claims a method it refuses.
pub fn route<'p>(head: &RequestHead, paths: &[&'p str]) -> Result<&'p str, Response> {
    // The HTTP layer lets the asterisk-form through with OPTIONS only.
    if head.target == "*" {
        return Err(options());
    }
    let Some(path) = paths.iter().find(|p| **p == head.path()) else {
        return Err(json_error(404, "not found"));
    };
    match head.method.as_str() {
        "GET" | "HEAD" => Ok(path),
        method => {
            let text = format!("method {method} not allowed; use {ALLOW}");
            Err(json_error(405, &text).with_header("Allow", ALLOW))
        }
    }
}

/// The answer to `OPTIONS *`: `200` with `Allow` (the methods the server's resources take)
/// and no content. Not `204`: RFC 9110 §9.3.7 asks for `Content-Length: 0` when there is no
/// content, and §8.6 forbids that field on a `204`.
fn options() -> Response {
    Response {
        status: 200,
        headers: vec![("Allow", ALLOW.to_owned())],
        body: Vec::new(),
    }
}

/// `{"status":"ok"}`: the answer to `/health` on both services. Liveness: it says only that
/// the process answers, so whatever else is going on, a restart would not help.
pub fn health() -> Response {
    json(200, r#"{"status":"ok"}"#)
}

/// The answer to `/ready` on both services. Readiness: whether to send this instance new
/// traffic. Not while it is shutting down (it is about to go away), nor while its connection
/// cap is reached (a new connection would be refused): `503`, with the reason. Unlike a failed
/// liveness probe, this takes the instance out of rotation without restarting it.
pub fn ready(server: &ServerStatus) -> Response {
    if server.is_draining() {
        json(503, r#"{"status":"not ready","reason":"shutting down"}"#)
    } else if server.at_connection_cap() {
        json(
            503,
            r#"{"status":"not ready","reason":"connection limit reached"}"#,
        )
    } else {
        json(200, r#"{"status":"ready"}"#)
    }
}

/// The status a hang-up is logged and counted with, though none is sent: the request failed
/// on our side, as a `500` would say.
const HANG_UP_STATUS: u16 = 500;

/// A failure worth naming in the log line: `error_kind` (when there is one) and the text.
pub struct Failure {
    pub kind: Option<&'static str>,
    pub text: String,
}

/// One request being served: when it started and its id. `finish` logs, counts, and tags the
/// response.
/// It borrows the request, which outlives it inside the handler.
pub struct RequestScope<'a> {
    service: &'static str,
    metrics: &'a Metrics,
    started: Instant,
    method: &'a str,
    endpoint: &'a str,
    pub request_id: String,
    /// The W3C trace this request belongs to, and its span in it.
    pub trace: TraceContext,
    /// How B's call to A went (B's `/call-echo` only): named in the log line.
    pub upstream: Option<CallReport>,
}

impl<'a> RequestScope<'a> {
    pub fn begin(
        service: &'static str,
        metrics: &'a Metrics,
        request: &'a Request,
    ) -> RequestScope<'a> {
        let request_id = request
            .head
            .headers
            .get_str("x-request-id")
            .filter(|id| is_sane_request_id(id))
            .map_or_else(new_request_id, str::to_owned);
        RequestScope {
            service,
            metrics,
            started: Instant::now(),
            method: &request.head.method,
            endpoint: request.head.path(),
            request_id,
            trace: trace_context(&request.head.headers),
            upstream: None,
        }
    }

    /// The headers that carry this request's identity on to a call it makes: the same
    /// `X-Request-Id`, and a `traceparent` with the same trace and our span as the parent.
    /// `traceparent` is made by the caller with `self.trace.traceparent()`, so that it can
    /// outlive the borrow.
    pub fn propagated_headers<'s>(&'s self, traceparent: &'s str) -> Vec<(&'static str, &'s str)> {
        let mut headers = vec![
            ("X-Request-Id", self.request_id.as_str()),
            ("traceparent", traceparent),
        ];
        if let Some(state) = &self.trace.tracestate {
            headers.push(("tracestate", state.as_str()));
        }
        headers
    }

    /// Logs the request's one line and returns the outcome, a response with its
    /// `X-Request-Id`.
    pub fn finish(self, outcome: impl Into<Outcome>, failure: Option<Failure>) -> Outcome {
        let outcome = outcome.into();
        let status = match &outcome {
            Outcome::Respond(response) => response.status,
            Outcome::Stream(response) => response.status,
            Outcome::HangUp => HANG_UP_STATUS,
        };
        let elapsed = self.started.elapsed();
        self.metrics.record_request(self.endpoint, status, elapsed);
        let line = LogLine {
            scope: &self,
            status,
            latency: elapsed,
            failure: failure.as_ref(),
        };
        // A failure of a dependency (it has an `error_kind`) is a warning; a client's bad
        // request is not.
        let level = match &failure {
            Some(Failure { kind: Some(_), .. }) => log::Level::Warn,
            _ => log::Level::Info,
        };
        logging::emit(level, module_path!(), &line.fields());
        match outcome {
            Outcome::Respond(response) => {
                Outcome::Respond(response.with_header("X-Request-Id", self.request_id))
            }
            Outcome::Stream(response) => {
                Outcome::Stream(response.with_header("X-Request-Id", self.request_id))
            }
            Outcome::HangUp => Outcome::HangUp,
        }
    }
}

/// A request's log line: the one place that lists its fields, in order. Written once, straight
/// into the logger's line (as `key=value` text or JSON members, see `crate::logging`): building
/// it as a `String` first would cost an allocation and a copy per request.
struct LogLine<'e, 'a> {
    scope: &'e RequestScope<'a>,
    status: u16,
    latency: Duration,
    failure: Option<&'e Failure>,
}

impl LogLine<'_, '_> {
    fn fields(&self) -> [Field<'_>; 11] {
        let e = self.scope;
        let (kind, error) = match self.failure {
            Some(Failure { kind, text }) => (kind.as_ref(), Some(text.as_str())),
            None => (None, None),
        };
        // Which replica answered B, and on which attempt: only when B had a choice.
        let (replica, attempt) = match &e.upstream {
            Some(CallReport {
                replica: Some(replica),
                attempt,
                ..
            }) => (Value::Word(replica), Value::Uint(*attempt as u64)),
            _ => (Value::Absent, Value::Absent),
        };
        [
            ("service", Value::Word(&e.service)),
            ("method", Value::Word(&e.method)),
            ("endpoint", Value::Word(&e.endpoint)),
            ("status", Value::Uint(u64::from(self.status))),
            ("latency_ms", Value::Millis(self.latency)),
            ("request_id", Value::Word(&e.request_id)),
            ("trace_id", Value::Word(&e.trace.trace_id)),
            ("replica", replica),
            ("attempt", attempt),
            ("error_kind", kind.map_or(Value::Absent, |k| Value::Word(k))),
            ("error", error.map_or(Value::Absent, Value::Quoted)),
        ]
    }
}

/// Logs and counts a request the HTTP layer could not read.
pub fn log_rejected(
    service: &str,
    metrics: &Metrics,
    peer: SocketAddr,
    error: &RequestError,
    status: Option<u16>,
) {
    if let Some(status) = status {
        metrics.record_rejected(status);
    }
    let error = error.to_string();
    let fields = [
        ("service", Value::Word(&service)),
        ("peer", Value::Word(&peer)),
        (
            "status",
            status.map_or(Value::Word(&"none"), |s| Value::Uint(s.into())),
        ),
        ("error", Value::Quoted(&error)),
    ];
    logging::emit(log::Level::Warn, module_path!(), &fields);
}

/// The request's trace context (W3C Trace Context §3.2, §3.3). Two `traceparent` fields
/// cannot both name the parent, so they count as invalid and start a new trace; several
/// `tracestate` fields are one list, joined with commas (RFC 9110 §5.3).
fn trace_context(headers: &Headers) -> TraceContext {
    let traceparent = match headers.get_all("traceparent").count() {
        1 => headers.get_str("traceparent"),
        _ => None,
    };
    let states: Vec<&str> = headers
        .get_all("tracestate")
        .filter_map(|v| std::str::from_utf8(v).ok())
        .collect();
    let tracestate = (!states.is_empty()).then(|| states.join(","));
    TraceContext::from_headers(traceparent, tracestate.as_deref())
}

/// A client's id is kept if it is short and made of characters that are safe in a log line
/// and a header: letters, digits and `-_.:/+=`.
fn is_sane_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_BYTES
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(&b))
}

/// A new id: 16 hex digits, unique within this process and unlikely to repeat across
/// processes (see `random`).
fn new_request_id() -> String {
    format!("{:016x}", random::next_u64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::message::{Headers, Version};
    use crate::logging::{Fields, LogFormat};

    fn head(method: &str, target: &str) -> RequestHead {
        RequestHead {
            method: method.into(),
            target: target.into(),
            version: Version::Http11,
            headers: Headers::new(),
        }
    }

    #[test]
    fn routes_404_and_405() {
        assert_eq!(
            route(&head("GET", "/echo?msg=x"), &["/health", "/echo"]),
            Ok("/echo")
        );
        assert_eq!(route(&head("HEAD", "/health"), &["/health"]), Ok("/health"));
        let not_found = route(&head("GET", "/nope"), &["/health"]).expect_err("404");
        assert_eq!(not_found.status, 404);
        let not_allowed = route(&head("POST", "/health"), &["/health"]).expect_err("405");
        assert_eq!(not_allowed.status, 405);
        assert!(not_allowed.headers.contains(&("Allow", ALLOW.to_owned())));
    }

    #[test]
    fn options_answers_allow_with_no_content() {
        let answer = route(&head("OPTIONS", "*"), &["/health"]).expect_err("options");
        assert_eq!(answer.status, 200);
        assert_eq!(answer.headers, [("Allow", "GET, HEAD".to_owned())]);
        assert!(answer.body.is_empty());
        let path = route(&head("OPTIONS", "/health"), &["/health"]).expect_err("405");
        assert_eq!(path.status, 405, "a path takes GET and HEAD only");
        let unknown = route(&head("OPTIONS", "/nope"), &["/health"]).expect_err("404");
        assert_eq!(unknown.status, 404);
    }

    #[test]
    fn ready_is_503_while_draining_and_at_the_connection_cap() {
        let config = crate::http::server::ServerConfig::default();
        assert_eq!(ready(&config.status()).status, 200);
        config
            .draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let response = ready(&config.status());
        assert_eq!(response.status, 503);
        assert!(String::from_utf8_lossy(&response.body).contains("shutting down"));
        let mut config = crate::http::server::ServerConfig::default();
        config.limits.max_connections = 1;
        config
            .open_connections
            .store(1, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(ready(&config.status()).status, 503);
    }

    #[test]
    fn log_line_has_the_contract_form() {
        let metrics = Metrics::default();
        let mut request = Request {
            head: head("GET", "/call-echo?msg=x"),
            body: Vec::new(),
            peer: "127.0.0.1:40000".parse().expect("an address"),
        };
        request.head.headers.push("X-Request-Id", b"abc-1");
        request.head.headers.push(
            "traceparent",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        );
        let scope = RequestScope::begin("B", &metrics, &request);
        for (latency, shown) in [(1_000_849, "1000.8"), (50, "0.0"), (123_456, "123.4")] {
            let line = LogLine {
                scope: &scope,
                status: 503,
                latency: Duration::from_micros(latency),
                failure: None,
            };
            let fields = line.fields();
            let text = Fields {
                format: LogFormat::Text,
                list: &fields,
            };
            assert_eq!(
                text.to_string(),
                format!(
                    "service=B method=GET endpoint=/call-echo status=503 latency_ms={shown} \
                     request_id=abc-1 trace_id=4bf92f3577b34da6a3ce929d0e0e4736"
                )
            );
        }
    }

    #[test]
    fn request_ids() {
        assert!(is_sane_request_id("abc-123_x.y:z"));
        assert!(!is_sane_request_id(""));
        assert!(!is_sane_request_id("has space"));
        assert!(!is_sane_request_id("quote\""));
        assert!(!is_sane_request_id(&"a".repeat(129)));
        let (a, b) = (new_request_id(), new_request_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
    }
}
