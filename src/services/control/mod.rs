//! `/control` on A (with `--control`): read and change the chaos knobs while A runs, so a
//! lab can inject a fault, watch B, and take it away again without restarting A.
//!
//! ```text
//! /control ─► may this peer use it? (access.rs) ── no ─► 403 or 401
//!               │ yes
//!               ▼
//!             GET, HEAD ─► 200, the knobs now
//!             POST ─► the knobs after the body (update.rs) ── refused ─► 400, nothing changed
//!               │        │ valid
//!               │        ▼
//!               │      200, the knobs after
//!             other ─► 405, Allow: GET, HEAD, POST
//! ```
//!
//! The answer is always the whole set of knobs, `{"delay_ms":0,...,"queue_policy":"fifo"}`;
//! the capacity (`workers`, `work_ms`, `queue_limit`, `queue_policy`) is among them.
//! Every change and every refusal is logged at WARN with the peer (`event=control_changed`,
//! `event=control_refused`), besides the request's own log line: a change to A's behaviour
//! is something its operators must be able to trace back.

pub mod access;
pub mod update;

use std::net::SocketAddr;

use super::chaos::{Chaos, Knob, LiveChaos};
use super::{Failure, json, json_error, json_string};
use crate::http::message::{Request, Response};
use crate::logging::{self, Value};
use access::{ControlAccess, Refused};
use update::{ChaosUpdate, UpdateError};

/// Where the endpoint lives.
pub const PATH: &str = "/control";

/// The methods `/control` takes: reading (RFC 9110 §9.3.1, §9.3.2) and changing (§9.3.3).
const ALLOW: &str = "GET, HEAD, POST";

/// Answers one `/control` request, under `access`; the failure for its log line when it was
/// refused. `request_id` ties the WARN line of a change or refusal to the request's line.
pub fn answer(
    access: &ControlAccess,
    chaos: &LiveChaos,
    request: &Request,
    request_id: &str,
) -> (Response, Option<Failure>) {
    let audit = Audit {
        peer: request.peer,
        method: &request.head.method,
        request_id,
    };
    if let Err(refused) = access.admit(request.peer.ip(), &request.head.headers) {
        return audit.refused(refusal(refused), refused.to_string());
    }
    match request.head.method.as_str() {
        "GET" | "HEAD" => (settings(&chaos.current()), None),
        "POST" => change(chaos, &request.body, &audit),
        method => {
            let text = format!("method {method} not allowed; use {ALLOW}");
            let response = json_error(405, &text).with_header("Allow", ALLOW);
            audit.refused(response, text)
        }
    }
}

/// A `POST`: the knobs after the body, if the body is valid, and logged either way. The body
/// is read before taking the lock, which is held only to merge it into the knobs now and
/// check the result (`LiveChaos::change`): every `/echo` waits for that lock.
fn change(chaos: &LiveChaos, body: &[u8], audit: &Audit<'_>) -> (Response, Option<Failure>) {
    let changed = ChaosUpdate::parse(body)
        .and_then(|update| chaos.change(|now| Ok::<_, UpdateError>(update.apply(now))));
    match changed {
        Ok((before, after)) => {
            audit.changed(&before, &after);
            (settings(&after), None)
        }
        Err(error) => audit.refused(json_error(400, &error.to_string()), error.to_string()),
    }
}

/// The answer to a peer that may not use `/control`: `403`, or `401` with the challenge
/// that says which credentials would do (RFC 9110 §11.6.1, RFC 6750 §3).
fn refusal(refused: Refused) -> Response {
    let response = json_error(refused.status(), &refused.to_string());
    match refused {
        Refused::NotLoopback => response,
        Refused::NoToken | Refused::WrongToken => {
            response.with_header("WWW-Authenticate", "Bearer")
        }
    }
}

/// `200` with every knob, in `Knob::ALL`'s order. Never stored by a cache: it changes.
fn settings(chaos: &Chaos) -> Response {
    json(200, settings_json(chaos)).with_header("Cache-Control", "no-store")
}

/// `{"delay_ms":0,"jitter_ms":0,"tail_rate":0.0,...,"blackhole":false}`: written member by
/// member, because serde_json's map would sort the names.
fn settings_json(chaos: &Chaos) -> String {
    let members: Vec<String> = Knob::ALL
        .into_iter()
        .map(|knob| format!("{}:{}", json_string(knob.name()), chaos.get(knob).to_json()))
        .collect();
    format!("{{{}}}", members.join(","))
}

/// `fail_rate 0 -> 1, delay_ms 0 -> 200`: each knob that differs, or `nothing`.
fn changes(before: &Chaos, after: &Chaos) -> String {
    let changed: Vec<String> = Knob::ALL
        .into_iter()
        .filter(|&knob| before.get(knob) != after.get(knob))
        .map(|knob| {
            format!(
                "{} {} -> {}",
                knob.name(),
                before.get(knob),
                after.get(knob)
            )
        })
        .collect();
    if changed.is_empty() {
        "nothing".to_owned()
    } else {
        changed.join(", ")
    }
}

/// Who sent a control request, for its WARN line.
struct Audit<'a> {
    peer: SocketAddr,
    method: &'a str,
    request_id: &'a str,
}

impl Audit<'_> {
    /// Logs the refusal at WARN; the answer, with the failure for the request's line.
    fn refused(&self, response: Response, text: String) -> (Response, Option<Failure>) {
        let fields = [
            ("service", Value::Word(&"A")),
            ("event", Value::Word(&"control_refused")),
            ("peer", Value::Word(&self.peer)),
            ("method", Value::Word(&self.method)),
            ("status", Value::Uint(u64::from(response.status))),
            ("request_id", Value::Word(&self.request_id)),
            ("error", Value::Quoted(&text)),
        ];
        logging::emit(log::Level::Warn, module_path!(), &fields);
        (response, Some(Failure { kind: None, text }))
    }

    /// Logs an accepted change at WARN, naming each knob's old and new value.
    fn changed(&self, before: &Chaos, after: &Chaos) {
        let changed = changes(before, after);
        let fields = [
            ("service", Value::Word(&"A")),
            ("event", Value::Word(&"control_changed")),
            ("peer", Value::Word(&self.peer)),
            ("request_id", Value::Word(&self.request_id)),
            ("changed", Value::Quoted(&changed)),
        ];
        logging::emit(log::Level::Warn, module_path!(), &fields);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::message::{Headers, RequestHead, Version};
    use access::BearerToken;

    const LOOPBACK: &str = "127.0.0.1:40000";

    fn request(method: &str, peer: &str, headers: &[(&str, &str)], body: &str) -> Request {
        let mut fields = Headers::new();
        for (name, value) in headers {
            fields.push(name, value.as_bytes());
        }
        Request {
            head: RequestHead {
                method: method.into(),
                target: PATH.into(),
                version: Version::Http11,
                headers: fields,
            },
            body: body.as_bytes().to_vec(),
            peer: peer.parse().expect("an address"),
        }
    }

    fn answer_from_loopback(chaos: &LiveChaos, method: &str, body: &str) -> Response {
        let request = request(method, LOOPBACK, &[], body);
        answer(&ControlAccess::LoopbackOnly, chaos, &request, "id").0
    }

    fn body(response: &Response) -> &str {
        std::str::from_utf8(&response.body).expect("UTF-8")
    }

    #[test]
    fn the_settings_name_every_knob_in_order() {
        assert_eq!(
            settings_json(&Chaos::default()),
            r#"{"delay_ms":0,"jitter_ms":0,"tail_rate":0.0,"tail_delay_ms":0,"fail_rate":0.0,"drop_rate":0.0,"blackhole":false,"workers":0,"work_ms":0,"queue_limit":0,"queue_policy":"fifo"}"#
        );
    }

    #[test]
    fn get_reads_and_post_changes() {
        let chaos = LiveChaos::default();
        let read = answer_from_loopback(&chaos, "GET", "");
        assert_eq!(read.status, 200);
        assert_eq!(body(&read), settings_json(&Chaos::default()));
        assert!(
            read.headers
                .contains(&("Cache-Control", "no-store".to_owned()))
        );
        let changed = answer_from_loopback(&chaos, "POST", r#"{"fail_rate":1}"#);
        assert_eq!(changed.status, 200);
        assert!(
            body(&changed).contains(r#""fail_rate":1.0"#),
            "{}",
            body(&changed)
        );
        assert_eq!(chaos.current().fail_rate, 1.0);
        assert_eq!(answer_from_loopback(&chaos, "HEAD", "").status, 200);
    }

    #[test]
    fn a_refused_post_changes_nothing() {
        let chaos = LiveChaos::default();
        let refused = answer_from_loopback(&chaos, "POST", r#"{"fail_rate":1,"tail_rate":1}"#);
        assert_eq!(refused.status, 400);
        assert!(
            body(&refused).contains("tail_rate: 1 needs tail_delay_ms"),
            "{}",
            body(&refused)
        );
        assert!(chaos.current().is_off());
    }

    #[test]
    fn other_methods_are_405_with_allow() {
        for method in ["PUT", "DELETE", "PATCH", "OPTIONS"] {
            let response = answer_from_loopback(&LiveChaos::default(), method, "");
            assert_eq!(response.status, 405, "{method}");
            assert!(
                response
                    .headers
                    .contains(&("Allow", "GET, HEAD, POST".to_owned()))
            );
        }
    }

    #[test]
    fn refusals_say_which_credentials_would_do() {
        let chaos = LiveChaos::default();
        let remote = request("GET", "10.0.0.2:5000", &[], "");
        let (response, failure) = answer(&ControlAccess::LoopbackOnly, &chaos, &remote, "id");
        assert_eq!(response.status, 403);
        assert!(
            !response
                .headers
                .iter()
                .any(|(n, _)| *n == "WWW-Authenticate")
        );
        assert!(failure.is_some_and(|f| f.kind.is_none()), "a client error");
        let token = ControlAccess::Token(BearerToken::new("t0ken").expect("token"));
        let bare = request("POST", LOOPBACK, &[], r#"{"fail_rate":1}"#);
        let (response, _) = answer(&token, &chaos, &bare, "id");
        assert_eq!(response.status, 401);
        assert!(
            response
                .headers
                .contains(&("WWW-Authenticate", "Bearer".to_owned()))
        );
        assert!(chaos.current().is_off(), "refused before the body is read");
        let right = request(
            "POST",
            "10.0.0.2:5000",
            &[("Authorization", "Bearer t0ken")],
            "{}",
        );
        assert_eq!(answer(&token, &chaos, &right, "id").0.status, 200);
    }

    #[test]
    fn changes_name_old_and_new_values() {
        let before = Chaos::default();
        let after = Chaos {
            fail_rate: 1.0,
            delay: std::time::Duration::from_millis(200),
            ..before
        };
        assert_eq!(
            changes(&before, &after),
            "delay_ms 0 -> 200, fail_rate 0 -> 1"
        );
        assert_eq!(changes(&after, &after), "nothing");
    }
}
