//! A's capacity on the wire (`--workers`, `--work-ms`, `--queue-limit`, `--queue-policy`):
//! work waits for a worker, work whose caller's deadline passes while it waits is dropped
//! unworked, a full bounded queue answers `503` at once, and `/control` changes the capacity
//! while A runs. Bounds on times are generous: they tell waiting from not waiting, nothing
//! finer (speed is the benchmarks' business).

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::{Reply, Service, connect, exchange, get, get_with, parse_replies, read_reply};

const MS: Duration = Duration::from_millis(1);

/// How long A may take to show a request in its gauges.
const SETTLE: Duration = Duration::from_secs(3);

/// The value of the sample line `name` (exact, labels included), or 0 when absent.
fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().expect("a number"))
}

fn metric(a: &Service, name: &str) -> f64 {
    sample(&get(a.addr, "/metrics").text(), name)
}

fn dropped(a: &Service, reason: &str) -> f64 {
    metric(
        a,
        &format!("echo_lab_capacity_dropped_total{{reason=\"{reason}\"}}"),
    )
}

/// Polls `/metrics` until `name` reads `value`; panics after `SETTLE`.
fn wait_for_metric(a: &Service, name: &str, value: f64) {
    let started = Instant::now();
    while started.elapsed() < SETTLE {
        if metric(a, name) == value {
            return;
        }
        thread::sleep(MS * 5);
    }
    panic!("{name} never reached {value}");
}

/// Sends `GET /echo?msg=x` with `headers` on a new connection and leaves the reply to read.
fn send_echo(addr: SocketAddr, headers: &[(&str, &str)]) -> (TcpStream, Instant) {
    let mut stream = connect(addr);
    let mut request =
        String::from("GET /echo?msg=x HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("write");
    (stream, Instant::now())
}

/// Occupies `n` of A's workers with `/echo`s without a deadline; their connections, to read
/// later.
fn occupy(a: &Service, n: usize) -> Vec<(TcpStream, Instant)> {
    let held: Vec<_> = (0..n).map(|_| send_echo(a.addr, &[])).collect();
    wait_for_metric(a, "echo_lab_capacity_workers_busy", n as f64);
    held
}

fn post_control(addr: SocketAddr, body: &str) -> Reply {
    let request = common::request_with_body("POST", "/control", &[], body);
    let raw = exchange(addr, request.as_bytes());
    let (replies, _) = parse_replies(&raw, false);
    replies.into_iter().next().expect("a reply to /control")
}

#[test]
fn one_worker_serves_two_echoes_one_after_the_other() {
    let a = Service::a(&["--workers", "1", "--work-ms", "50"]);
    // Both requests are on the wire before either is answered.
    let sent: Vec<_> = (0..2).map(|_| send_echo(a.addr, &[])).collect();
    let mut took: Vec<Duration> = sent
        .into_iter()
        .map(|(mut stream, started)| {
            let reply = read_reply(&mut stream, false);
            assert_eq!(reply.status, 200, "{}", reply.text());
            assert_eq!(reply.json(), serde_json::json!({"echo": "x"}));
            started.elapsed()
        })
        .collect();
    took.sort();
    assert!(took[0] >= MS * 45, "the first works 50 ms: {took:?}");
    assert!(
        took[1] >= MS * 95,
        "the second waits 50 ms, then works 50: {took:?}"
    );
    assert!(took[1] < Duration::from_secs(1), "{took:?}");
    let metrics = get(a.addr, "/metrics").text();
    assert_eq!(
        sample(&metrics, "echo_lab_capacity_wait_seconds_count"),
        2.0
    );
    assert_eq!(sample(&metrics, "echo_lab_capacity_workers_busy"), 0.0);
    assert_eq!(sample(&metrics, "echo_lab_capacity_queue_length"), 0.0);
    assert_eq!(sample(&metrics, r#"echo_lab_chaos{knob="workers"}"#), 1.0);
    assert_eq!(sample(&metrics, r#"echo_lab_chaos{knob="work_ms"}"#), 50.0);
}

#[test]
fn work_whose_deadline_passes_in_the_queue_is_dropped_unworked() {
    let a = Service::a(&["--workers", "1", "--work-ms", "1000"]);
    let held = occupy(&a, 1);
    let started = Instant::now();
    let reply = get_with(a.addr, "/echo?msg=x", &[("X-Timeout-Ms", "100")]);
    let took = started.elapsed();
    assert_eq!(reply.status, 503);
    assert_eq!(
        reply.error_text(),
        "abandoned: the caller's deadline passed after 100 ms"
    );
    assert!(
        took >= MS * 90 && took < MS * 800,
        "dropped at the deadline: {took:?}"
    );
    assert_eq!(dropped(&a, "deadline"), 1.0);
    assert_eq!(
        metric(&a, r#"echo_lab_abandoned_total{reason="deadline_passed"}"#),
        1.0
    );
    assert_eq!(
        metric(&a, "echo_lab_capacity_queue_length"),
        0.0,
        "taken out"
    );
    // Unworked: only the first ever got a worker.
    for (mut stream, _) in held {
        assert_eq!(read_reply(&mut stream, false).status, 200);
    }
    assert_eq!(metric(&a, "echo_lab_capacity_wait_seconds_count"), 1.0);
}

#[test]
fn a_full_bounded_queue_answers_503_at_once() {
    let a = Service::a(&["--workers", "1", "--work-ms", "1000", "--queue-limit", "1"]);
    let _held = occupy(&a, 1);
    let _queued = send_echo(a.addr, &[]);
    wait_for_metric(&a, "echo_lab_capacity_queue_length", 1.0);
    let started = Instant::now();
    let reply = get(a.addr, "/echo?msg=x");
    let took = started.elapsed();
    assert_eq!(reply.status, 503);
    assert_eq!(reply.error_text(), "overloaded: the work queue is full");
    assert!(took < MS * 500, "at once, not after the work: {took:?}");
    assert_eq!(dropped(&a, "queue_full"), 1.0);
    let line = a
        .wait_for_log("the work queue is full", SETTLE)
        .expect("a log line");
    assert!(line.contains("error_kind=overloaded"), "{line}");
}

#[test]
fn codel_lifo_drops_work_queued_past_its_timeout() {
    let a = Service::a(&[
        "--workers",
        "1",
        "--work-ms",
        "1000",
        "--queue-policy",
        "codel-lifo",
    ]);
    let _held = occupy(&a, 1);
    // The queue was empty until now: it may wait CoDel's interval, 100 ms, then is dropped.
    let started = Instant::now();
    let reply = get(a.addr, "/echo?msg=x");
    let took = started.elapsed();
    assert_eq!(reply.status, 503);
    assert!(
        reply.error_text().starts_with("overloaded: "),
        "{}",
        reply.text()
    );
    assert!(took >= MS * 90 && took < MS * 800, "{took:?}");
    assert_eq!(dropped(&a, "codel"), 1.0);
    assert_eq!(
        metric(&a, r#"echo_lab_capacity_queue_policy{policy="codel-lifo"}"#),
        1.0
    );
}

#[test]
fn control_changes_the_capacity_while_a_runs() {
    let a = Service::a(&["--control"]);
    let started = Instant::now();
    assert_eq!(get(a.addr, "/echo?msg=x").status, 200);
    assert!(started.elapsed() < MS * 400, "no capacity model at first");
    let changed = post_control(a.addr, r#"{"workers":1,"work_ms":500,"queue_limit":1}"#);
    assert_eq!(changed.status, 200, "{}", changed.text());
    let knobs = changed.json();
    assert_eq!(knobs["workers"], 1);
    assert_eq!(knobs["work_ms"], 500);
    assert_eq!(knobs["queue_limit"], 1);
    assert_eq!(knobs["queue_policy"], "fifo");
    let started = Instant::now();
    assert_eq!(get(a.addr, "/echo?msg=x").status, 200);
    assert!(started.elapsed() >= MS * 450, "each /echo works 500 ms now");
    let refused = post_control(a.addr, r#"{"queue_policy":"random"}"#);
    assert_eq!(refused.status, 400);
    assert_eq!(
        refused.error_text(),
        r#"queue_policy: expected "fifo" or "codel-lifo", got "random""#
    );
    assert_eq!(post_control(a.addr, r#"{"workers":0}"#).status, 200);
    let started = Instant::now();
    assert_eq!(get(a.addr, "/echo?msg=x").status, 200);
    assert!(started.elapsed() < MS * 400, "off again");
}

#[test]
fn a_capacity_restored_by_control_serves_the_queued_work_at_the_new_speed() {
    let a = Service::a(&["--control", "--workers", "1", "--work-ms", "600"]);
    let _held = occupy(&a, 1);
    let (mut queued, started) = send_echo(a.addr, &[]);
    wait_for_metric(&a, "echo_lab_capacity_queue_length", 1.0);
    assert_eq!(post_control(a.addr, r#"{"work_ms":50}"#).status, 200);
    assert_eq!(read_reply(&mut queued, false).status, 200);
    let took = started.elapsed();
    // It waits out the first one's 600 ms, then works 50: about 650 ms, where the speed it
    // arrived with would make it 1200.
    assert!(took < MS * 1100, "{took:?}");
}

#[test]
fn a_bad_capacity_flag_is_one_clear_line() {
    for (args, text) in [
        (&["--queue-policy", "lifo"][..], "--queue-policy"),
        (
            &["--workers", "10001"][..],
            "--workers: 10001 is not between 0 and 10000",
        ),
        (&["--workers", "-1"][..], "--workers"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_service-a"))
            .args(["--port", "0"])
            .args(args)
            .output()
            .expect("run service-a");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(text), "{args:?}: {stderr}");
    }
}
