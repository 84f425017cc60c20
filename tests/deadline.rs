//! A honours its caller's deadline (`X-Timeout-Ms`, the whole milliseconds the caller will
//! still wait): work that arrives expired is refused at once, work that outlasts the deadline
//! is abandoned at it, counted and logged, and without the header nothing changes.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{Reply, Service, connect, get, get_with, read_reply, sample};

const HEADER: &str = "X-Timeout-Ms";

fn abandoned(service: &Service, reason: &str) -> f64 {
    let metrics = get(service.addr, "/metrics").text();
    sample(
        &metrics,
        &format!("echo_lab_abandoned_total{{reason=\"{reason}\"}}"),
    )
}

/// `GET /echo?msg=x` with `X-Timeout-Ms: value`; the reply and how long it took.
fn echo_with_deadline(service: &Service, value: &str) -> (Reply, Duration) {
    let started = Instant::now();
    let reply = get_with(service.addr, "/echo?msg=x", &[(HEADER, value)]);
    (reply, started.elapsed())
}

#[test]
fn work_that_arrives_expired_is_refused_at_once() {
    let a = Service::a(&["--delay-ms", "1500"]);
    let (reply, took) = echo_with_deadline(&a, "0");
    assert_eq!(reply.status, 503);
    assert_eq!(
        reply.json(),
        serde_json::json!({"error": "the caller's deadline had already passed"})
    );
    assert!(took < Duration::from_millis(500), "{took:?}: not at once");
    assert_eq!(abandoned(&a, "expired_on_arrival"), 1.0);
    assert_eq!(abandoned(&a, "deadline_passed"), 0.0);
    let line = a
        .wait_for_log("deadline had already passed", Duration::from_secs(2))
        .expect("a log line");
    assert!(
        line.contains("WARN")
            && line.contains("status=503")
            && line.contains("error_kind=deadline"),
        "{line}"
    );
}

#[test]
fn work_past_the_deadline_is_abandoned_at_it() {
    let a = Service::a(&["--delay-ms", "1500"]);
    let (reply, took) = echo_with_deadline(&a, "200");
    assert_eq!(reply.status, 503);
    assert_eq!(
        reply.error_text(),
        "abandoned: the caller's deadline passed after 200 ms"
    );
    assert!(
        took >= Duration::from_millis(150) && took < Duration::from_millis(700),
        "{took:?}"
    );
    assert_eq!(abandoned(&a, "deadline_passed"), 1.0);
    assert_eq!(abandoned(&a, "expired_on_arrival"), 0.0);
    let line = a
        .wait_for_log("abandoned:", Duration::from_secs(2))
        .expect("a log line names the abandoned work");
    assert!(
        line.contains("WARN") && line.contains("error_kind=deadline"),
        "{line}"
    );
    // The work was dropped, not left running: past the time it would have taken, no answer
    // to it was ever produced.
    std::thread::sleep(Duration::from_millis(1600));
    let echo_lines = a
        .logs()
        .into_iter()
        .filter(|l| l.contains("endpoint=/echo"))
        .count();
    assert_eq!(echo_lines, 1, "{:?}", a.logs());
    let metrics = get(a.addr, "/metrics").text();
    assert_eq!(
        sample(
            &metrics,
            "echo_lab_requests_total{endpoint=\"/echo\",status=\"200\"}"
        ),
        0.0
    );
}

#[test]
fn an_abandoned_request_leaves_its_connection_usable() {
    let a = Service::a(&["--delay-ms", "1500"]);
    let mut stream = connect(a.addr);
    let abandoned = format!("GET /echo?msg=x HTTP/1.1\r\nHost: t\r\n{HEADER}: 100\r\n\r\n");
    stream.write_all(abandoned.as_bytes()).expect("write");
    assert_eq!(read_reply(&mut stream, false).status, 503);
    // The same connection, kept alive: the 503 was framed like any answer.
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("write");
    assert_eq!(read_reply(&mut stream, false).status, 200);
}

#[test]
fn without_a_usable_header_nothing_changes() {
    let a = Service::a(&["--delay-ms", "300"]);
    let started = Instant::now();
    let reply = get(a.addr, "/echo?msg=x");
    let took = started.elapsed();
    assert_eq!(reply.json(), serde_json::json!({"echo": "x"}));
    assert!(took >= Duration::from_millis(300), "{took:?}");
    // A malformed value is ignored as if absent (1 to 9 digits only); a long deadline is kept.
    for value in ["soon", "1234567890", "-1", "1.5", "5000"] {
        let (reply, took) = echo_with_deadline(&a, value);
        assert_eq!(reply.status, 200, "{HEADER}: {value}");
        assert!(took >= Duration::from_millis(300), "{value}: {took:?}");
    }
    assert_eq!(abandoned(&a, "deadline_passed"), 0.0);
    assert_eq!(abandoned(&a, "expired_on_arrival"), 0.0);
}

#[test]
fn a_deadline_with_no_work_to_do_is_answered() {
    let a = Service::a(&[]);
    let (reply, took) = echo_with_deadline(&a, "50");
    assert_eq!(reply.json(), serde_json::json!({"echo": "x"}));
    assert!(took < Duration::from_millis(500), "{took:?}");
    // The header is about /echo's work; /health answers whatever it says.
    let health = get_with(a.addr, "/health", &[(HEADER, "0")]);
    assert_eq!(health.status, 200);
}
