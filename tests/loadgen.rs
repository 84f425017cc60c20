//! The `loadgen` binary end to end: against a real service A, closed and open loop, against a
//! port nobody listens on, and with bad arguments.

mod common;

use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{FakeUpstream, Service, answer_each_with, output_within, read_request_head};
use serde_json::Value;
use std::io::Write;
use std::net::TcpStream;

/// Runs `loadgen` with `args`; its output. Every run here asks for a second or less of load,
/// so one still running after 20 s is a hang.
fn loadgen(args: &[&str]) -> Output {
    output_within(
        Command::new(env!("CARGO_BIN_EXE_loadgen")).args(args),
        Duration::from_secs(20),
    )
}

/// Runs `loadgen ... --json`, checks it succeeded, and returns the JSON summary (the whole of
/// stdout).
fn loadgen_json(args: &[&str]) -> Value {
    let (out, summary) = loadgen_json_output(args);
    assert!(
        out.status.success(),
        "loadgen failed: {}\n{summary}",
        String::from_utf8_lossy(&out.stderr)
    );
    summary
}

/// Runs `loadgen ... --json`; its output and the JSON document that is all of its stdout.
fn loadgen_json_output(args: &[&str]) -> (Output, Value) {
    let mut all = args.to_vec();
    all.push("--json");
    let out = loadgen(&all);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let summary = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {stdout:?}"));
    (out, summary)
}

fn count(summary: &Value, pointer: &str) -> u64 {
    summary
        .pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no {pointer} in {summary}"))
}

/// Sum of every error kind.
fn errors(summary: &Value) -> u64 {
    summary["errors"]
        .as_object()
        .expect("errors object")
        .values()
        .filter_map(Value::as_u64)
        .sum()
}

#[test]
fn closed_loop_against_a_gets_only_200s() {
    let a = Service::a(&[]);
    let url = format!("{}/echo?msg=load", a.url());
    let summary = loadgen_json(&[&url, "-d", "1s", "-c", "4", "--timeout", "2s"]);
    let requests = count(&summary, "/requests");
    assert!(requests > 0, "{summary}");
    assert_eq!(count(&summary, "/status/200"), requests, "{summary}");
    assert_eq!(summary["status"].as_object().map(|s| s.len()), Some(1));
    assert_eq!(errors(&summary), 0, "{summary}");
    assert!(
        summary["rps"].as_f64().is_some_and(|r| r > 0.0),
        "{summary}"
    );
    let p50 = summary["latency_ms"]["p50"].as_f64().expect("p50");
    let p99 = summary["latency_ms"]["p99"].as_f64().expect("p99");
    let max = summary["latency_ms"]["max"].as_f64().expect("max");
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{summary}");
    // Every response a 200: the 200s' latencies are all of them.
    assert_eq!(
        summary["ok_latency_ms"]["p99"].as_f64(),
        Some(p99),
        "{summary}"
    );
}

#[test]
fn open_loop_sends_at_the_given_rate() {
    let a = Service::a(&[]);
    let url = format!("{}/echo?msg=paced", a.url());
    // As many workers as requests: even a debug build on a busy machine, stalling for a few
    // hundred milliseconds, cannot leave a request unsent.
    let summary = loadgen_json(&[&url, "--rate", "200", "-d", "1s", "-c", "200"]);
    let requests = count(&summary, "/requests");
    assert!((150..=250).contains(&requests), "{summary}");
    assert_eq!(count(&summary, "/status/200"), requests, "{summary}");
    // The schedule itself is exact: request i is due at i/200 s, for i in 0..200.
    assert_eq!(requests + count(&summary, "/unsent"), 200, "{summary}");
}

#[test]
fn open_loop_spreads_its_requests_over_the_duration() {
    // A server that notes when each request arrives. At 50 requests/s for 1 s, request i is
    // due at i × 20 ms: the arrivals span about a second, half of them in each half. A
    // generator that sent them all at once (or as fast as it could) would take milliseconds.
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let seen = arrivals.clone();
    let server = FakeUpstream::start(move |mut stream| {
        while read_request_head(&mut stream).is_some() {
            seen.lock().expect("arrivals").push(Instant::now());
            let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
            if std::io::Write::write_all(&mut stream, answer).is_err() {
                return;
            }
        }
    });
    let url = format!("{}/echo?msg=paced", server.url());
    let summary = loadgen_json(&[&url, "--rate", "50", "-d", "1s", "-c", "50"]);
    let mut arrivals = arrivals.lock().expect("arrivals").clone();
    arrivals.sort();
    assert_eq!(
        arrivals.len() as u64,
        count(&summary, "/requests"),
        "{summary}"
    );
    assert!(
        arrivals.len() >= 40,
        "only {} requests arrived: {summary}",
        arrivals.len()
    );
    let first = arrivals[0];
    let span = arrivals[arrivals.len() - 1] - first;
    // Due from 0 to 980 ms; allow a stall of a few hundred ms on a busy machine.
    assert!(
        (Duration::from_millis(700)..Duration::from_millis(1500)).contains(&span),
        "{} requests arrived over {span:?}, expected about 1 s",
        arrivals.len()
    );
    let early = arrivals
        .iter()
        .filter(|t| **t - first < Duration::from_millis(500))
        .count();
    assert!(
        (15..=35).contains(&early),
        "{early} of {} requests arrived in the first half second, expected about 25",
        arrivals.len()
    );
}

#[test]
fn refused_connections_are_counted_by_kind() {
    let (_refusing, nobody) = common::refusing_port();
    let url = format!("http://{nobody}/echo");
    let summary = loadgen_json(&[&url, "-d", "300ms", "-c", "2", "--max-error-rate", "1"]);
    assert_eq!(count(&summary, "/responses"), 0, "{summary}");
    assert!(count(&summary, "/errors/connect") > 0, "{summary}");
    let text =
        String::from_utf8_lossy(&loadgen(&[&url, "-d", "100ms", "-c", "1"]).stdout).into_owned();
    assert!(
        text.contains("first connect error: cannot connect"),
        "{text}"
    );
}

#[test]
fn bad_arguments_fail_with_one_clear_line() {
    for (args, says) in [
        (&[][..], "missing URL"),
        (&["http://127.0.0.1:1/echo", "-c", "0"][..], "-c"),
        (
            &["http://127.0.0.1:1/echo", "-d", "10x"][..],
            "bad duration",
        ),
        (&["http://127.0.0.1:1/echo", "--rate", "fast"][..], "--rate"),
        (
            &["http://127.0.0.1:1/echo", "--bogus"][..],
            "unknown flag --bogus",
        ),
        (&["https://127.0.0.1:1/echo"][..], "only http://"),
        (&["http://127.0.0.1:99999/echo"][..], "bad port"),
    ] {
        let out = loadgen(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("loadgen: error:") && stderr.contains(says),
            "{args:?}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn help_prints_usage() {
    let out = loadgen(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("usage: loadgen URL") && text.contains("--rate"),
        "{text}"
    );
}

#[test]
fn count_sends_exactly_that_many_requests_with_the_given_headers() {
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    let upstream = FakeUpstream::start(move |mut stream: TcpStream| {
        let reply = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        while let Some(head) = read_request_head(&mut stream) {
            seen.lock().expect("heads lock").push(head);
            if stream.write_all(reply.as_bytes()).is_err() {
                return;
            }
        }
    });
    let url = format!("{}/echo?msg=n", upstream.url());
    let summary = loadgen_json(&[
        &url,
        "-n",
        "25",
        "-c",
        "3",
        "-H",
        "X-Test: one",
        "-H",
        "Authorization: Bearer t0k3n",
    ]);
    assert_eq!(count(&summary, "/requests"), 25, "{summary}");
    let heads = heads.lock().expect("heads lock");
    assert_eq!(heads.len(), 25);
    for head in heads.iter() {
        assert!(head.contains("\r\nX-Test: one\r\n"), "{head}");
        assert!(
            head.contains("\r\nAuthorization: Bearer t0k3n\r\n"),
            "{head}"
        );
    }
}

#[test]
fn summary_has_mean_and_p99_9() {
    let a = Service::a(&[]);
    let url = format!("{}/echo?msg=m", a.url());
    let summary = loadgen_json(&[&url, "-n", "200", "-c", "2"]);
    let latency = |name: &str| summary["latency_ms"][name].as_f64().expect(name);
    let (mean, p99, p999, max) = (
        latency("mean"),
        latency("p99"),
        latency("p99.9"),
        latency("max"),
    );
    assert!(0.0 < mean && mean <= max, "{summary}");
    assert!(p99 <= p999 && p999 <= max, "{summary}");
    let out = loadgen(&[&url, "-n", "20", "-c", "1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("mean ") && text.contains("p99.9 "), "{text}");
}

#[test]
fn failures_make_the_exit_status_non_zero_unless_allowed() {
    // Refused connections: every request fails.
    let (_refusing, nobody) = common::refusing_port();
    let refused = format!("http://{nobody}/echo");
    let (out, summary) = loadgen_json_output(&[&refused, "-n", "5", "-c", "1"]);
    assert_eq!(out.status.code(), Some(1), "{summary}");
    assert_eq!(count(&summary, "/failed"), 5, "{summary}");
    // A server that answers 500: responses, but failed ones.
    let failing = FakeUpstream::start(|stream| {
        answer_each_with(
            stream,
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n",
        )
    });
    let url = format!("{}/x", failing.url());
    let (out, summary) = loadgen_json_output(&[&url, "-n", "10", "-c", "1"]);
    assert_eq!(out.status.code(), Some(1), "{summary}");
    assert_eq!(count(&summary, "/status/500"), 10, "{summary}");
    // Allowed: at most half may fail, and all did; then all may fail.
    let (out, _) = loadgen_json_output(&[&url, "-n", "10", "--max-error-rate", "0.5"]);
    assert_eq!(out.status.code(), Some(1));
    let (out, _) = loadgen_json_output(&[&url, "-n", "10", "--max-error-rate", "1"]);
    assert_eq!(out.status.code(), Some(0));
    // And the text summary says so too.
    let text = String::from_utf8_lossy(&loadgen(&[&url, "-n", "4"]).stdout).into_owned();
    assert!(text.contains("failed:      4 (100.00 %"), "{text}");
}

#[test]
fn the_503s_latency_is_reported_apart() {
    // A server that answers 503 at once: the 503s are all the responses, and no 200.
    let refusing = FakeUpstream::start(|stream| {
        answer_each_with(
            stream,
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
        )
    });
    let url = format!("{}/x", refusing.url());
    let summary = loadgen_json(&[&url, "-n", "20", "-c", "1", "--max-error-rate", "1"]);
    let p99 = summary["latency_ms"]["p99"].as_f64().expect("p99");
    assert!(p99 > 0.0, "{summary}");
    assert_eq!(
        summary["unavailable_latency_ms"]["p99"].as_f64(),
        Some(p99),
        "{summary}"
    );
    assert_eq!(summary["ok_latency_ms"]["p99"].as_f64(), Some(0.0));
    // And none when every answer is a 200.
    let a = Service::a(&[]);
    let url = format!("{}/echo?msg=m", a.url());
    let summary = loadgen_json(&[&url, "-n", "20", "-c", "1"]);
    assert_eq!(
        summary["unavailable_latency_ms"]["p50"].as_f64(),
        Some(0.0),
        "{summary}"
    );
}

#[test]
fn no_progress_line_when_stderr_is_not_a_terminal() {
    let a = Service::a(&[]);
    let url = format!("{}/echo?msg=quiet", a.url());
    // Long enough for two progress ticks, were they printed.
    let out = loadgen(&[&url, "-d", "2200ms", "-c", "1", "--json"]);
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "stderr is a pipe here: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
