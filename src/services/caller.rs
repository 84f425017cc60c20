//! Service B: `/health`, and `/call-echo?msg=X`, which asks A's `/echo` under one deadline
//! and turns every way that can fail into a `503` that says what went wrong.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;

use super::metrics::{Metrics, render_cluster};
use super::query::{encode, query_param};
use super::{
    Failure, RequestScope, health, json, json_error, json_string, log_rejected, ready, route,
};
use crate::http::Deadline;
use crate::http::client::ClientResponse;
use crate::http::error::RequestError;
use crate::http::message::{Request, Response};
use crate::http::server::{Handler, Outcome, ServerStatus};
use crate::upstream::{CallError, CallReport, Cluster};

/// The caller service's handler: A's replicas with the policy for calling them, and the
/// deadline for each call.
pub struct CallerService {
    cluster: Cluster,
    timeout: Duration,
    metrics: Arc<Metrics>,
    /// The server's state, for `/ready`.
    server: ServerStatus,
}

/// Why a call to A did not produce an answer we can pass on.
#[derive(Debug)]
pub enum UpstreamError {
    /// No answer: the exchange failed (connect, timeout, closed, broken HTTP), or B did not
    /// make it (circuit open, overloaded).
    Call(CallError),
    /// A answered, but not with 2xx; carries its status line.
    Status(String),
    /// A answered 2xx with a body that is not a JSON object.
    NotJson(String),
}

impl UpstreamError {
    /// The contract's `error_kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Call(e) => e.kind(),
            UpstreamError::Status(_) => "upstream_status",
            UpstreamError::NotJson(_) => "bad_response",
        }
    }
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::Call(e) => write!(f, "service A: {e}"),
            UpstreamError::Status(line) => write!(f, "service A answered {line}"),
            UpstreamError::NotJson(what) => write!(f, "service A sent a body that is {what}"),
        }
    }
}

impl CallerService {
    pub fn new(cluster: Cluster, timeout: Duration, metrics: Arc<Metrics>) -> CallerService {
        CallerService {
            cluster,
            timeout,
            metrics,
            server: ServerStatus::default(),
        }
    }

    /// Reports readiness from `server`'s state (see `services::ready`).
    pub fn with_server_status(mut self, server: ServerStatus) -> CallerService {
        self.server = server;
        self
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    async fn respond(
        &self,
        request: &Request,
        scope: &mut RequestScope<'_>,
    ) -> (Response, Option<Failure>) {
        match route(
            &request.head,
            &["/health", "/ready", "/call-echo", "/metrics"],
        ) {
            Ok("/call-echo") => self.call_echo(request.head.query(), scope).await,
            Ok("/ready") => (ready(&self.server), None),
            Ok("/metrics") => (self.metrics_response(), None),
            Ok(_) => (health(), None),
            Err(response) => (response, None),
        }
    }

    /// B's metrics: the common ones, then what B knows of A's replicas and its patterns.
    fn metrics_response(&self) -> Response {
        let mut text = self.metrics.render(Some(self.cluster.idle_connections()));
        render_cluster(&mut text, &self.cluster.snapshot());
        Response::new(200, super::metrics::CONTENT_TYPE, text)
    }

    async fn call_echo(
        &self,
        query: Option<&str>,
        scope: &mut RequestScope<'_>,
    ) -> (Response, Option<Failure>) {
        let msg = match query_param(query, "msg") {
            Ok(msg) => msg.unwrap_or_default(),
            Err(e) => {
                let text = e.to_string();
                let failure = Failure {
                    kind: None,
                    text: text.clone(),
                };
                return (json_error(400, &text), Some(failure));
            }
        };
        let (result, report) = self.ask_a(&msg, scope).await;
        if self.cluster.has_choices() {
            scope.upstream = Some(report);
        }
        match result {
            Ok(body) => (json(200, body), None),
            Err(e) => {
                let failure = Failure {
                    kind: Some(e.kind()),
                    text: e.to_string(),
                };
                (unavailable(&e), Some(failure))
            }
        }
    }

    /// Calls A and returns B's success body, with A's JSON object inside it, and how the
    /// call went.
    async fn ask_a(
        &self,
        msg: &str,
        scope: &RequestScope<'_>,
    ) -> (Result<String, UpstreamError>, CallReport) {
        let target = format!("/echo?msg={}", encode(msg));
        // The request id and the trace go on to A (W3C Trace Context: our span is A's parent).
        let traceparent = scope.trace.traceparent();
        let headers = scope.propagated_headers(&traceparent);
        let deadline = Deadline::after(self.timeout);
        let (result, report) = self.cluster.call(&target, &headers, deadline).await;
        let body = result.map_err(UpstreamError::Call).and_then(|response| {
            let object = json_object(&response)?;
            Ok(format!(
                r#"{{"service_b":"ok","service_a":{}}}"#,
                object.get()
            ))
        });
        let outcome = body.as_ref().map_or_else(UpstreamError::kind, |_| "ok");
        self.metrics.record_upstream(outcome, deadline.elapsed());
        (body, report)
    }
}

/// A's body as raw JSON, checked to be one object but not taken apart: we pass it on as is.
fn json_object(response: &ClientResponse) -> Result<&RawValue, UpstreamError> {
    if !(200..300).contains(&response.head.status) {
        return Err(UpstreamError::Status(response.head.status_line()));
    }
    let raw: &RawValue = serde_json::from_slice(&response.body)
        .map_err(|e| UpstreamError::NotJson(format!("not JSON ({e})")))?;
    if !raw.get().starts_with('{') {
        return Err(UpstreamError::NotJson("JSON but not an object".into()));
    }
    Ok(raw)
}

/// The contract's 503 body.
fn unavailable(error: &UpstreamError) -> Response {
    let body = format!(
        r#"{{"service_b":"ok","service_a":"unavailable","error":{},"error_kind":"{}"}}"#,
        json_string(&error.to_string()),
        error.kind()
    );
    json(503, body)
}

impl Handler for CallerService {
    async fn handle(&self, request: Request) -> Outcome {
        let mut scope = RequestScope::begin("B", &self.metrics, &request);
        let (response, failure) = self.respond(&request, &mut scope).await;
        scope.finish(response, failure)
    }

    fn rejected(&self, peer: SocketAddr, error: &RequestError, status: Option<u16>) {
        log_rejected("B", &self.metrics, peer, error, status);
    }

    fn error_response(&self, status: u16, text: &str) -> Response {
        json_error(status, text)
    }
}
