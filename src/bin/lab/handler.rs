//! The lab's HTTP routes, served by the project's own server (`echo_lab::http::server`):
//!
//! | route | body | what |
//! | --- | --- | --- |
//! | `GET /` | | the page (`page.html`, built into the binary) |
//! | `GET /events` | | the live feed: Server-Sent Events, one every 500 ms (`events.rs`) |
//! | `POST /load` | `{"rate": 50}` | the load's calls a second, 0 (paused) to 1000 |
//! | `POST /replicas/N/stop` | `{}` | SIGTERM to replica N (1–3): it drains and exits |
//! | `POST /replicas/N/kill` | `{}` | SIGKILL: a crash |
//! | `POST /replicas/N/restart` | `{}` | stop it if it runs, start it again on its port |
//! | `POST /replicas/N/faults` | A's knobs, e.g. `{"tail_rate":0.1,"tail_delay_ms":300}` | forwarded to replica N's `POST /control`; its answer comes back as it is |
//!
//! A bad body is a `400` naming the problem; a replica that is not running, a `409`.
//!
//! **Who may use it.** These routes stop and kill processes and ask for no credentials, so the
//! lab listens on 127.0.0.1 only: nobody on another machine reaches them. A web page open in
//! the same browser could still try (cross-site request forgery), so a `POST` must also say
//! `Content-Type: application/json`, which an HTML form cannot send and another origin's script
//! cannot send without a CORS preflight that the lab never grants; and an `Origin`, when the
//! browser sends one, must be the lab's own (which also stops a DNS-rebinding page, whose
//! origin is its own name).

use std::net::SocketAddr;
use std::sync::Arc;

use echo_lab::http::message::{Request, Response};
use echo_lab::http::server::{Handler, Outcome};
use echo_lab::http::stream::StreamingResponse;
use echo_lab::services::{json, json_error};
use serde_json::{Map, Value, json};

use crate::Lab;
use crate::control;
use crate::processes::{ActionError, ProcessState, REPLICA_NAMES, Signal};
use crate::traffic::MAX_RATE;

/// The page: one HTML file with its script and style, no framework, nothing fetched.
const PAGE: &str = include_str!("page.html");

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Page,
    Events,
    SetRate,
    /// An action on replica N (1-based, as the page and `REPLICA_NAMES` number them).
    Replica(usize, Action),
    /// A change of replica N's faults.
    Faults(usize),
}

/// What the page can do to a replica's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Stop,
    Kill,
    Restart,
}

/// The lab's handler: the lab, and the origins its own page has.
pub struct LabHandler {
    lab: Arc<Lab>,
    origins: [String; 2],
}

impl LabHandler {
    /// The handler of `lab`, served on `addr`.
    pub fn new(lab: Arc<Lab>, addr: SocketAddr) -> LabHandler {
        let port = addr.port();
        LabHandler {
            lab,
            origins: [
                format!("http://127.0.0.1:{port}"),
                format!("http://localhost:{port}"),
            ],
        }
    }

    /// A new page's live feed, which starts with the latest event.
    fn events(&self) -> Outcome {
        let body = self.lab.hub.subscribe(self.lab.first_event().as_ref());
        let response = StreamingResponse::new(200, "text/event-stream", body)
            .with_header("Cache-Control", "no-store");
        Outcome::Stream(response)
    }

    /// A `POST`'s JSON object, once the request has shown it comes from the lab's own page.
    fn post_body(&self, request: &Request) -> Result<Map<String, Value>, Response> {
        let headers = &request.head.headers;
        if let Some(origin) = headers.get_str("origin")
            && !self.origins.iter().any(|o| o == origin)
        {
            return Err(json_error(
                403,
                &format!(
                    "origin {origin} is not the lab's page; the lab takes orders from its own page only"
                ),
            ));
        }
        let media_type = headers
            .get_str("content-type")
            .and_then(|v| v.split(';').next())
            .map(str::trim);
        if !media_type.is_some_and(|t| t.eq_ignore_ascii_case("application/json")) {
            return Err(json_error(
                415,
                "send the body as Content-Type: application/json",
            ));
        }
        match serde_json::from_slice(&request.body) {
            Ok(Value::Object(body)) => Ok(body),
            _ => Err(json_error(400, "the body must be a JSON object, e.g. {}")),
        }
    }

    /// Answers a `POST` whose body is `body`.
    async fn post(&self, route: Route, body: Map<String, Value>) -> Response {
        match route {
            Route::SetRate => self.set_rate(&body),
            Route::Faults(n) => self.change_faults(n, body).await,
            Route::Replica(n, action) => self.act(n, action).await,
            Route::Page | Route::Events => json_error(405, "not a POST route"),
        }
    }

    fn set_rate(&self, body: &Map<String, Value>) -> Response {
        let Some(rate) = body.get("rate").and_then(Value::as_f64) else {
            return json_error(
                400,
                &format!("expected {{\"rate\": calls a second from 0 to {MAX_RATE}}}"),
            );
        };
        match self.lab.load.set_rate(rate) {
            Ok(()) => json(200, json!({ "rate": rate }).to_string()),
            Err(e) => json_error(400, &e.to_string()),
        }
    }

    /// Stops, kills or restarts replica `n`: on a thread of its own, since signalling runs
    /// kill(1) and a restart waits for the new process.
    async fn act(&self, n: usize, action: Action) -> Response {
        let lab = self.lab.clone();
        let done = smol::unblock(move || {
            let processes = &lab.processes;
            let replica = processes.replica(n)?;
            let acted = match action {
                Action::Stop => processes.signal(replica, Signal::Term),
                Action::Kill => processes.signal(replica, Signal::Kill),
                Action::Restart => processes.restart(replica),
            };
            Some(acted.map(|()| replica.view()))
        })
        .await;
        match done {
            None => no_such_replica(n),
            Some(Ok(view)) => json(200, view.to_string()),
            Some(Err(e @ (ActionError::NotRunning(_) | ActionError::Busy(_)))) => {
                json_error(409, &e.to_string())
            }
            Some(Err(e)) => json_error(500, &e.to_string()),
        }
    }

    /// Forwards `body` to replica `n`'s `POST /control`, and its answer back.
    async fn change_faults(&self, n: usize, body: Map<String, Value>) -> Response {
        let Some(replica) = self.lab.processes.replica(n) else {
            return no_such_replica(n);
        };
        if replica.state() != ProcessState::Running {
            return json_error(409, &format!("{} is not running", replica.name));
        }
        let body = Value::Object(body).to_string();
        match control::change_faults(replica.addr, body.as_bytes()).await {
            Ok(answer) => json(answer.status, answer.body),
            Err(e) => json_error(502, &format!("{}'s /control: {e}", replica.name)),
        }
    }
}

impl Handler for LabHandler {
    async fn handle(&self, request: Request) -> Outcome {
        let route = match route(&request.head.method, request.head.path()) {
            Ok(route) => route,
            Err(refusal) => return refusal.into(),
        };
        match route {
            Route::Page => Response::new(200, "text/html; charset=utf-8", PAGE)
                .with_header("Cache-Control", "no-store")
                .into(),
            Route::Events => self.events(),
            post => match self.post_body(&request) {
                Ok(body) => self.post(post, body).await.into(),
                Err(refusal) => refusal.into(),
            },
        }
    }

    fn error_response(&self, status: u16, text: &str) -> Response {
        json_error(status, text)
    }
}

/// The route of `method path`, or the `404` or `405` that refuses it.
fn route(method: &str, path: &str) -> Result<Route, Response> {
    let (route, allowed) = match path {
        "/" => (Route::Page, "GET"),
        "/events" => (Route::Events, "GET"),
        "/load" => (Route::SetRate, "POST"),
        _ => match replica_route(path) {
            Some(route) => (route, "POST"),
            None => return Err(json_error(404, "not found")),
        },
    };
    if method == allowed {
        Ok(route)
    } else {
        Err(json_error(405, &format!("{path} takes {allowed}")).with_header("Allow", allowed))
    }
}

/// `/replicas/N/ACTION`.
fn replica_route(path: &str) -> Option<Route> {
    let (n, action) = path.strip_prefix("/replicas/")?.split_once('/')?;
    let n = n.parse().ok()?;
    let action = match action {
        "stop" => Action::Stop,
        "kill" => Action::Kill,
        "restart" => Action::Restart,
        "faults" => return Some(Route::Faults(n)),
        _ => return None,
    };
    Some(Route::Replica(n, action))
}

fn no_such_replica(n: usize) -> Response {
    json_error(
        404,
        &format!(
            "no replica {n}: there are {} (1 to {})",
            REPLICA_NAMES.join(", "),
            REPLICA_NAMES.len()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("GET", "/"), Ok(Route::Page));
        assert_eq!(route("GET", "/events"), Ok(Route::Events));
        assert_eq!(route("POST", "/load"), Ok(Route::SetRate));
        assert_eq!(
            route("POST", "/replicas/2/stop"),
            Ok(Route::Replica(2, Action::Stop))
        );
        assert_eq!(route("POST", "/replicas/3/faults"), Ok(Route::Faults(3)));
    }

    #[test]
    fn unknown_routes_are_404_and_wrong_methods_405() {
        for path in [
            "/nope",
            "/replicas/2",
            "/replicas/x/stop",
            "/replicas/2/explode",
        ] {
            assert_eq!(
                route("POST", path).map_err(|r| r.status),
                Err(404),
                "{path}"
            );
        }
        let refused = route("GET", "/load").expect_err("GET /load");
        assert_eq!(refused.status, 405);
        assert!(refused.headers.contains(&("Allow", "POST".to_owned())));
        assert_eq!(route("POST", "/").map_err(|r| r.status), Err(405));
    }
}
