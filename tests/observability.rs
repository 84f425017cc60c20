//! `/metrics` and `--trace-wire` on the real binaries: the counters move as requests and
//! failures happen, the exposition passes Prometheus's own `promtool check metrics`, and the
//! trace shows every head in both directions.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Service, get, get_with, sample};

fn scrape(service: &Service) -> String {
    let reply = get(service.addr, "/metrics");
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    reply.text()
}

#[test]
fn counters_move_with_requests_and_failures() {
    let a = Service::a(&[]);
    let b = Service::b(&a.url(), &[]);
    for _ in 0..3 {
        assert_eq!(get(b.addr, "/call-echo?msg=x").status, 200);
    }
    assert_eq!(get(b.addr, "/nope").status, 404);
    assert!(!common::exchange(b.addr, b"GET / HTTP/1.1\r\n\r\n").is_empty());
    let before = scrape(&b);
    assert_eq!(
        sample(
            &before,
            r#"echo_lab_requests_total{endpoint="/call-echo",status="200"}"#
        ),
        3.0
    );
    assert_eq!(
        sample(
            &before,
            r#"echo_lab_requests_total{endpoint="other",status="404"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(&before, r#"echo_lab_rejected_requests_total{status="400"}"#),
        1.0
    );
    assert_eq!(
        sample(&before, r#"echo_lab_upstream_calls_total{outcome="ok"}"#),
        3.0
    );
    assert_eq!(
        sample(&before, "echo_lab_upstream_duration_seconds_count"),
        3.0
    );
    assert!(sample(&before, "echo_lab_upstream_idle_connections") >= 1.0);

    drop(a);
    let reply = get(b.addr, "/call-echo?msg=x");
    assert_eq!(reply.status, 503);
    let after = scrape(&b);
    assert_eq!(
        sample(
            &after,
            r#"echo_lab_upstream_calls_total{outcome="connect"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            &after,
            r#"echo_lab_requests_total{endpoint="/call-echo",status="503"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(&after, "echo_lab_upstream_duration_seconds_count"),
        4.0
    );
    // The scrape itself and the earlier one are counted too.
    assert_eq!(
        sample(
            &after,
            r#"echo_lab_requests_total{endpoint="/metrics",status="200"}"#
        ),
        1.0
    );
}

/// `/metrics` scraped on an open kept-alive connection, which stays open.
fn scrape_on(stream: &mut std::net::TcpStream) -> String {
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
        .expect("write the scrape");
    let reply = common::read_reply(stream, false);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("connection"), None, "kept alive: {reply:?}");
    reply.text()
}

#[test]
fn open_connections_gauge_counts_kept_alive_sockets() {
    // Only these three connections ever exist, and every scrape travels on one of them, so
    // the gauge has no connection of ours to count late or early: it must say exactly 3.
    let a = Service::a(&[]);
    let mut held: Vec<_> = (0..3).map(|_| common::connect(a.addr)).collect();
    for stream in &mut held {
        // Answered, so accepted and counted.
        scrape_on(stream);
    }
    let gauge = "echo_lab_open_connections";
    assert_eq!(sample(&scrape_on(&mut held[0]), gauge), 3.0);

    // One goes away: the server notices the close on its own time, then counts 2.
    drop(held.pop());
    let end = std::time::Instant::now() + Duration::from_secs(5);
    let mut open = 3.0;
    while open == 3.0 && std::time::Instant::now() < end {
        open = sample(&scrape_on(&mut held[0]), gauge);
    }
    assert_eq!(open, 2.0, "after closing one of three");
}

/// Runs `promtool check metrics` on the exposition. In CI promtool must be there (`.ci/run`
/// installs Debian's `prometheus` package); elsewhere its absence is reported and skipped.
#[test]
fn promtool_accepts_the_exposition() {
    let a = Service::a(&[]);
    let b = Service::b(&a.url(), &[]);
    // Every pattern on: the breaker's, the budget's and the replicas' series too.
    let resilient = Service::b(&a.url(), &["--resilient"]);
    get(b.addr, "/call-echo?msg=x");
    get(resilient.addr, "/call-echo?msg=x");
    get(a.addr, "/echo?msg=%ZZ");
    for service in [&a, &b, &resilient] {
        let text = scrape(service);
        let child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(e) => {
                common::skip_unless_ci(&format!(
                    "promtool not found ({e}); install Debian's `prometheus`"
                ));
                return;
            }
        };
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("feed promtool");
        let out = child.wait_with_output().expect("promtool ran");
        assert!(
            out.status.success(),
            "promtool rejected the metrics:\n{}{}\n---\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn wire_trace_shows_both_sides_of_b() {
    let a = Service::a(&["--trace-wire"]);
    let b = Service::b(&a.url(), &["--trace-wire"]);
    let reply = get_with(b.addr, "/call-echo?msg=hi", &[("X-Request-Id", "trace-1")]);
    assert_eq!(reply.status, 200);
    let inbound = b
        .wait_for_log(
            "<- GET /call-echo?msg=hi HTTP/1.1\\r\\n",
            Duration::from_secs(2),
        )
        .expect("B traces the request it received");
    assert!(inbound.contains("in#"), "{inbound}");
    let outbound = b
        .wait_for_log("-> GET /echo?msg=hi HTTP/1.1\\r\\n", Duration::from_secs(2))
        .expect("B traces the request it sent to A");
    assert!(outbound.contains("out#"), "{outbound}");
    assert!(
        b.wait_for_log("<- HTTP/1.1 200 OK\\r\\n", Duration::from_secs(2))
            .is_some()
    );
    assert!(
        b.wait_for_log("<- [body] {\"echo\":\"hi\"}", Duration::from_secs(2))
            .is_some()
    );
    assert!(
        b.wait_for_log("-> [body] {\"service_b\":\"ok\"", Duration::from_secs(2))
            .is_some()
    );
    assert!(
        b.wait_for_log("-> \\r\\n", Duration::from_secs(2))
            .is_some()
    );
    // A sees the same request arrive, with the id B passed on.
    assert!(
        a.wait_for_log("<- X-Request-Id: trace-1\\r\\n", Duration::from_secs(2))
            .is_some()
    );
    assert!(
        a.wait_for_log("-> HTTP/1.1 200 OK\\r\\n", Duration::from_secs(2))
            .is_some()
    );
}

#[test]
fn wire_trace_makes_control_bytes_visible_and_is_off_by_default() {
    let traced = Service::a(&["--trace-wire"]);
    common::exchange(traced.addr, b"GET / HTTP/1.1\r\nHost: a\x01b\r\n\r\n");
    common::exchange(
        traced.addr,
        b"GET /health HTTP/1.1\r\nHost: a\tb\r\nConnection: close\r\n\r\n",
    );
    assert!(
        traced
            .wait_for_log("Host: a\\tb\\r\\n", Duration::from_secs(2))
            .is_some()
    );
    // A rejected head is shown raw, as far as it got.
    let rejected = traced.wait_for_log("[unparsed]", Duration::from_secs(2));
    assert!(
        rejected
            .expect("rejected bytes traced")
            .contains("Host: a\\x01b")
    );
    let quiet = Service::a(&[]);
    get(quiet.addr, "/health");
    assert!(
        quiet
            .wait_for_log("endpoint=/health", Duration::from_secs(2))
            .is_some()
    );
    assert!(quiet.logs().iter().all(|l| !l.contains("[wire]")));
}

#[test]
fn request_duration_is_by_endpoint_and_build_and_process_metrics_are_there() {
    let a = Service::a(&[]);
    for _ in 0..3 {
        assert_eq!(get(a.addr, "/echo?msg=x").status, 200);
    }
    assert_eq!(get(a.addr, "/health").status, 200);
    let text = scrape(&a);
    // Probes no longer blur /echo: each endpoint has its own series.
    assert_eq!(
        sample(
            &text,
            r#"echo_lab_request_duration_seconds_count{endpoint="/echo"}"#
        ),
        3.0
    );
    assert_eq!(
        sample(
            &text,
            r#"echo_lab_request_duration_seconds_count{endpoint="/health"}"#
        ),
        1.0
    );
    assert!(
        text.contains(r#"echo_lab_request_duration_seconds_bucket{endpoint="/echo",le="+Inf"} 3"#)
    );
    let build_info = format!(
        "echo_lab_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(sample(&text, &build_info), 1.0);
    // The standard process metrics, read from /proc, with values that make sense.
    assert!(
        sample(&text, "process_resident_memory_bytes") > 100_000.0,
        "{text}"
    );
    assert!(sample(&text, "process_open_fds") >= 4.0, "{text}");
    assert!(sample(&text, "process_cpu_seconds_total") >= 0.0);
    assert!(text.contains("# TYPE process_cpu_seconds_total counter\n"));
    let started = sample(&text, "process_start_time_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64();
    assert!(
        (now - 120.0..=now + 5.0).contains(&started),
        "started {started}, now {now}"
    );
}

#[test]
fn trace_wire_variable_turns_the_trace_on() {
    let a = Service::start(env!("CARGO_BIN_EXE_service-a"), &[], &[("TRACE_WIRE", "1")]);
    get(a.addr, "/health");
    assert!(
        a.wait_for_log("<- GET /health HTTP/1.1\\r\\n", Duration::from_secs(2))
            .is_some(),
        "TRACE_WIRE=1 without the flag traces: {:?}",
        a.logs()
    );
}

#[test]
fn wire_trace_shows_the_first_256_bytes_of_a_body_and_its_size() {
    // /echo of 300 letters: the body is {"echo":"..."}, 311 bytes.
    let a = Service::a(&["--trace-wire"]);
    let msg = "m".repeat(300);
    let body = format!(r#"{{"echo":"{msg}"}}"#);
    let reply = get(a.addr, &format!("/echo?msg={msg}"));
    assert_eq!(reply.text(), body);
    let line = a
        .wait_for_log("-> [body] ", Duration::from_secs(2))
        .unwrap_or_else(|| panic!("no body traced: {:?}", a.logs()));
    let traced = line.split("-> [body] ").nth(1).expect("the traced part");
    assert_eq!(
        traced,
        format!("{} ... ({} bytes in all)", &body[..256], body.len()),
        "exactly 256 bytes shown, then the size"
    );
    // A body of exactly 256 bytes is shown whole, with no size note.
    let msg = "n".repeat(256 - r#"{"echo":""}"#.len());
    let body = format!(r#"{{"echo":"{msg}"}}"#);
    assert_eq!(body.len(), 256);
    get(a.addr, &format!("/echo?msg={msg}"));
    let needle = format!("-> [body] {body}");
    let line = a
        .wait_for_log(&needle, Duration::from_secs(2))
        .unwrap_or_else(|| panic!("no 256-byte body traced: {:?}", a.logs()));
    assert!(line.ends_with(&body), "{line}");
}
