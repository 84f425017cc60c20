//! W3C Trace Context across the real A and B: one trace id joins B's log line to A's, B sends A
//! a `traceparent` with the same trace and its own span, `tracestate` goes along, and a missing
//! or invalid `traceparent` starts a new trace. `X-Request-Id` keeps working beside it.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{FakeUpstream, Service, get_with, read_request_head};

const LOG_WAIT: Duration = Duration::from_secs(5);

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn traceparent() -> String {
    format!("00-{TRACE_ID}-{CALLER_SPAN}-01")
}

/// The `trace_id=` of the log line with `request_id={id}`.
fn logged_trace_id(service: &Service, id: &str) -> String {
    let line = service
        .wait_for_log(&format!("request_id={id} "), LOG_WAIT)
        .unwrap_or_else(|| panic!("no line for {id}: {:?}", service.logs()));
    line.split(" trace_id=")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("no trace_id in {line}"))
        .to_owned()
}

/// A fake A that records every request head and answers `{"echo":"x"}`.
fn recording_a() -> (FakeUpstream, Arc<Mutex<Vec<String>>>) {
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    let upstream = FakeUpstream::start(move |mut stream: TcpStream| {
        let reply = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                     Content-Length: 12\r\n\r\n{\"echo\":\"x\"}";
        while let Some(head) = read_request_head(&mut stream) {
            seen.lock().expect("heads lock").push(head);
            if stream.write_all(reply.as_bytes()).is_err() {
                return;
            }
        }
    });
    (upstream, heads)
}

/// The value of header `name` in a raw request head.
fn field<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

#[test]
fn one_trace_id_joins_b_and_a_in_their_logs() {
    let a = Service::a(&[]);
    let b = Service::b(&a.url(), &[]);
    let parent = traceparent();
    let reply = get_with(
        b.addr,
        "/call-echo?msg=t",
        &[("traceparent", &parent), ("X-Request-Id", "trace-joined")],
    );
    assert_eq!(reply.status, 200);
    assert_eq!(logged_trace_id(&b, "trace-joined"), TRACE_ID);
    assert_eq!(logged_trace_id(&a, "trace-joined"), TRACE_ID);
}

#[test]
fn without_a_traceparent_b_starts_a_trace_and_a_joins_it() {
    let a = Service::a(&[]);
    let b = Service::b(&a.url(), &[]);
    for (id, header) in [
        ("trace-absent", None),
        (
            "trace-zero",
            Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
        ),
        (
            "trace-upper",
            Some("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
        ),
    ] {
        let mut headers = vec![("X-Request-Id", id)];
        headers.extend(header.map(|h| ("traceparent", h)));
        assert_eq!(get_with(b.addr, "/call-echo?msg=t", &headers).status, 200);
        let trace_id = logged_trace_id(&b, id);
        assert_eq!(trace_id.len(), 32, "{trace_id}");
        assert!(
            trace_id
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(trace_id, "0".repeat(32));
        assert_ne!(trace_id, TRACE_ID.to_owned());
        assert_eq!(logged_trace_id(&a, id), trace_id, "A joins B's new trace");
    }
}

#[test]
fn b_sends_a_the_trace_with_its_own_span_and_the_tracestate() {
    let (upstream, heads) = recording_a();
    let b = Service::b(&upstream.url(), &[]);
    let parent = traceparent();
    let reply = get_with(
        b.addr,
        "/call-echo?msg=t",
        &[
            ("traceparent", &parent),
            ("tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
            ("X-Request-Id", "trace-sent"),
        ],
    );
    assert_eq!(reply.status, 200);
    let heads = heads.lock().expect("heads lock");
    let head = heads.first().expect("B called A");
    let sent = field(head, "traceparent").expect("B sends a traceparent");
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!(parts.len(), 4, "{sent}");
    assert_eq!(
        (parts[0], parts[1], parts[3]),
        ("00", TRACE_ID, "01"),
        "{sent}"
    );
    assert_eq!(parts[2].len(), 16, "{sent}");
    assert_ne!(
        parts[2], CALLER_SPAN,
        "B's own span is A's parent, not B's caller's"
    );
    assert_ne!(parts[2], "0".repeat(16));
    assert_eq!(
        field(head, "tracestate"),
        Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
    );
    assert_eq!(field(head, "x-request-id"), Some("trace-sent"));
}

#[test]
fn an_invalid_traceparent_drops_the_tracestate() {
    let (upstream, heads) = recording_a();
    let b = Service::b(&upstream.url(), &[]);
    let reply = get_with(
        b.addr,
        "/call-echo?msg=t",
        &[
            ("traceparent", "garbage"),
            ("tracestate", "congo=t61rcWkgMzE"),
        ],
    );
    assert_eq!(reply.status, 200);
    let heads = heads.lock().expect("heads lock");
    let head = heads.first().expect("B called A");
    let sent = field(head, "traceparent").expect("a new trace is still sent on");
    assert_eq!(sent.len(), 55, "{sent}");
    assert_eq!(field(head, "tracestate"), None);
}
