//! Service A: `/health` and `/echo?msg=X` → `{"echo":"X"}`.

use std::net::SocketAddr;
use std::sync::Arc;

use super::chaos::Chaos;
use super::metrics::Metrics;
use super::query::query_param;
use super::{Exchange, Failure, health, json_string, log_rejected, metrics_response, ready, route};
use crate::http::error::RequestError;
use crate::http::message::{Request, Response};
use crate::http::server::{Handler, ServerStatus};

/// The echo service's handler.
#[derive(Debug, Default)]
pub struct EchoService {
    chaos: Chaos,
    metrics: Arc<Metrics>,
    /// The server's state, for `/ready`.
    server: ServerStatus,
}

impl EchoService {
    pub fn new(chaos: Chaos, metrics: Arc<Metrics>) -> EchoService {
        EchoService {
            chaos,
            metrics,
            server: ServerStatus::default(),
        }
    }

    /// Reports readiness from `server`'s state (see `services::ready`).
    pub fn with_server_status(mut self, server: ServerStatus) -> EchoService {
        self.server = server;
        self
    }

    /// Routes one request; `Failure` when the request itself was wrong (bad `msg`).
    fn respond(&self, request: &Request) -> (Response, Option<Failure>) {
        match route(&request.head, &["/health", "/ready", "/echo", "/metrics"]) {
            Ok("/echo") => echo(request.head.query()),
            Ok("/ready") => (ready(&self.server), None),
            Ok("/metrics") => (metrics_response(&self.metrics, None), None),
            Ok(_) => (health(), None),
            Err(response) => (response, None),
        }
    }
}

/// `{"echo":"<msg>"}`, or a 400 naming what is wrong with `msg`.
fn echo(query: Option<&str>) -> (Response, Option<Failure>) {
    match query_param(query, "msg") {
        Ok(msg) => {
            let msg = msg.unwrap_or_default();
            let body = format!(r#"{{"echo":{}}}"#, json_string(&msg));
            (Response::json(200, body), None)
        }
        Err(e) => {
            let text = e.to_string();
            let failure = Failure {
                kind: None,
                text: text.clone(),
            };
            (Response::json_error(400, &text), Some(failure))
        }
    }
}

impl Handler for EchoService {
    async fn handle(&self, request: Request) -> Response {
        let exchange = Exchange::begin("A", &self.metrics, &request);
        if !self.chaos.is_off()
            && request.head.path() == "/echo"
            && let Some(response) = self.chaos.strike().await
        {
            let failure = Failure {
                kind: Some("chaos"),
                text: if response.hang_up {
                    "dropped"
                } else {
                    "failed"
                }
                .to_owned(),
            };
            return exchange.finish(response, Some(failure));
        }
        let (response, failure) = self.respond(&request);
        exchange.finish(response, failure)
    }

    fn rejected(&self, peer: SocketAddr, error: &RequestError, status: Option<u16>) {
        log_rejected("A", &self.metrics, peer, error, status);
    }
}
