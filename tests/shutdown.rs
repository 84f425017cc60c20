//! Graceful shutdown: on SIGTERM or SIGINT a service stops accepting, lets the requests in
//! flight finish within the grace period, closes idle connections, and exits 0.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::{End, Reply, Service, closed_within, connect, read_reply, read_until_end, timed_get};

/// Requests in flight when the signal arrives.
const IN_FLIGHT: usize = 20;
/// The grace period given to the signalled service.
const GRACE_MS: u64 = 5_000;
const GRACE: Duration = Duration::from_millis(GRACE_MS);

/// Whether a new TCP connection to `addr` is refused.
fn refused(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err()
}

/// Sends `IN_FLIGHT` concurrent requests (`target(i)`) to `service` (started with
/// `--trace-wire`), sends it SIGTERM once its wire trace shows every request head received
/// (`received` is the start of those heads), and checks: every one gets its 200 (checked by
/// `check`), the service stops accepting, logs the drain, and exits 0 within the grace period.
fn drains_in_flight_on_sigterm(
    service: &mut Service,
    name: &str,
    received: &str,
    target: impl Fn(usize) -> String,
    check: impl Fn(usize, &Reply),
) {
    let addr = service.addr;
    let start = Instant::now();
    let calls: Vec<_> = (0..IN_FLIGHT)
        .map(|i| {
            let target = target(i);
            thread::spawn(move || {
                let reply =
                    timed_get(addr, &target, Duration::from_secs(10)).map(|(reply, _)| reply);
                (reply, start.elapsed())
            })
        })
        .collect();
    // In flight: the service has read every request head (and, with its delay, answered none).
    assert!(
        service.wait_for_logs(&format!("<- {received}"), IN_FLIGHT, Duration::from_secs(5)),
        "{name}: not all {IN_FLIGHT} requests reached the service: {:?}",
        service.logs()
    );
    let signalled = start.elapsed();
    service.signal("TERM");

    // Stop accepting: once the service says so, nobody can connect any more.
    let stopped = service
        .wait_for_log("shutdown: stopped accepting", Duration::from_secs(2))
        .unwrap_or_else(|| panic!("{name}: no 'stopped accepting' line: {:?}", service.logs()));
    println!("{name}: {stopped}");
    if service.is_running() {
        assert!(
            refused(addr),
            "{name}: a new connection was accepted while draining"
        );
    }

    for (i, call) in calls.into_iter().enumerate() {
        let (reply, done) = call.join().expect("request thread");
        let reply = reply.unwrap_or_else(|e| {
            panic!(
                "{name}: request {i} in flight at SIGTERM failed: {e}; logs: {:?}",
                service.logs()
            )
        });
        assert_eq!(reply.status, 200, "{name}: request {i}: {reply:?}");
        check(i, &reply);
        assert!(
            done > signalled,
            "{name}: request {i} finished at {done:?}, before SIGTERM at {signalled:?}: \
             it was not in flight"
        );
    }

    let code = service.wait_exit(GRACE);
    assert_eq!(
        code,
        Some(0),
        "{name}: did not exit 0 within the grace period ({GRACE:?}) after SIGTERM; logs: {:?}",
        service.logs()
    );
    println!(
        "{name}: exited 0 {:?} after SIGTERM",
        start.elapsed() - signalled
    );
    let logs = service.logs();
    assert!(
        logs.iter().any(|l| l.contains("shutdown: drain complete")),
        "{name}: no 'drain complete' line: {logs:?}"
    );
    assert!(
        refused(addr),
        "{name}: a new connection succeeded after exit"
    );
}

#[test]
fn b_finishes_20_calls_in_flight_on_sigterm() {
    let a = Service::a(&["--delay-ms", "500"]);
    let grace = GRACE_MS.to_string();
    let mut b = Service::b(&a.url(), &["--shutdown-grace-ms", &grace, "--trace-wire"]);
    drains_in_flight_on_sigterm(
        &mut b,
        "B",
        "GET /call-echo?msg=m",
        |i| format!("/call-echo?msg=m{i}"),
        |i, reply| {
            assert_eq!(
                reply.json(),
                serde_json::json!({"service_b": "ok", "service_a": {"echo": format!("m{i}")}})
            );
        },
    );
}

#[test]
fn a_finishes_20_echoes_in_flight_on_sigterm() {
    let grace = GRACE_MS.to_string();
    let mut a = Service::a(&[
        "--delay-ms",
        "500",
        "--shutdown-grace-ms",
        &grace,
        "--trace-wire",
    ]);
    drains_in_flight_on_sigterm(
        &mut a,
        "A",
        "GET /echo?msg=m",
        |i| format!("/echo?msg=m{i}"),
        |i, reply| {
            assert_eq!(reply.json(), serde_json::json!({"echo": format!("m{i}")}));
        },
    );
}

/// Makes one kept-alive request on a new connection and returns the connection, now idle.
fn idle_keep_alive(addr: SocketAddr) -> TcpStream {
    let mut stream = connect(addr);
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        .expect("write");
    let reply = read_reply(&mut stream, false);
    assert_eq!(reply.status, 200);
    stream
}

#[test]
fn sigterm_with_an_idle_keep_alive_connection_exits_promptly() {
    for name in ["A", "B"] {
        let a = Service::a(&[]);
        let mut service = if name == "A" {
            a
        } else {
            Service::b(&a.url(), &[])
        };
        let mut stream = idle_keep_alive(service.addr);
        let start = Instant::now();
        service.signal("TERM");
        let code = service.wait_exit(Duration::from_secs(2));
        assert_eq!(
            code,
            Some(0),
            "{name}: with one idle keep-alive connection, no exit 0 within 2 s of SIGTERM; \
             logs: {:?}",
            service.logs()
        );
        println!("{name}: exited 0 {:?} after SIGTERM", start.elapsed());
        assert!(
            closed_within(&mut stream, Duration::from_secs(1)),
            "{name}: the idle connection was not closed"
        );
        assert!(refused(service.addr), "{name}: still accepting after exit");
    }
}

#[test]
fn sigint_exits_zero() {
    for name in ["A", "B"] {
        let a = Service::a(&[]);
        let mut service = if name == "A" {
            a
        } else {
            Service::b(&a.url(), &[])
        };
        let reply = timed_get(service.addr, "/health", Duration::from_secs(2))
            .map(|(reply, _)| reply)
            .expect("/health");
        assert_eq!(reply.status, 200);
        service.signal("INT");
        let code = service.wait_exit(Duration::from_secs(2));
        assert_eq!(
            code,
            Some(0),
            "{name}: no exit 0 within 2 s of SIGINT; logs: {:?}",
            service.logs()
        );
        assert!(
            service.logs().iter().any(|l| l.contains("received SIGINT")),
            "{name}: {:?}",
            service.logs()
        );
    }
}

/// Starts A with `--trace-wire` and `args`, sends `GET /echo?msg=<msg>` on a kept-alive
/// connection, and waits until A's trace shows the request head received: it is in flight.
fn a_with_one_echo_in_flight(args: &[&str], msg: &str) -> (Service, TcpStream) {
    let mut all = vec!["--trace-wire"];
    all.extend_from_slice(args);
    let a = Service::a(&all);
    let mut stream = connect(a.addr);
    stream
        .write_all(format!("GET /echo?msg={msg} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .expect("write");
    let received = format!("<- GET /echo?msg={msg} ");
    assert!(
        a.wait_for_log(&received, Duration::from_secs(5)).is_some(),
        "A never read the request: {:?}",
        a.logs()
    );
    (a, stream)
}

#[test]
fn an_answer_given_while_draining_says_connection_close_and_the_connection_closes() {
    let (mut a, mut stream) = a_with_one_echo_in_flight(&["--delay-ms", "500"], "drain");
    a.signal("TERM");
    let reply = read_reply(&mut stream, false);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.header("connection"),
        Some("close"),
        "a kept-alive request answered while draining is told the connection ends: {reply:?}"
    );
    let (rest, end) = read_until_end(&mut stream, Duration::from_secs(2));
    assert!(
        matches!(end, End::Eof) && rest.is_empty(),
        "then closed: {end:?} {rest:?}"
    );
    assert_eq!(a.wait_exit(GRACE), Some(0));
}

#[test]
fn work_longer_than_the_grace_period_is_cut_and_the_exit_is_still_zero() {
    // The echo takes 5 s; the grace period is 300 ms.
    let (mut a, mut stream) =
        a_with_one_echo_in_flight(&["--delay-ms", "5000", "--shutdown-grace-ms", "300"], "cut");
    let signalled = Instant::now();
    a.signal("TERM");
    let code = a.wait_exit(Duration::from_secs(4));
    let took = signalled.elapsed();
    assert_eq!(
        code,
        Some(0),
        "exit status after the grace cutoff: {:?}",
        a.logs()
    );
    assert!(
        (Duration::from_millis(300)..Duration::from_millis(2500)).contains(&took),
        "exited {took:?} after SIGTERM, expected just after the 300 ms grace"
    );
    // The cut request gets no answer: its connection just ends.
    let (bytes, end) = read_until_end(&mut stream, Duration::from_secs(2));
    assert!(
        bytes.is_empty() && !matches!(end, End::StillOpen),
        "{end:?} {:?}",
        String::from_utf8_lossy(&bytes)
    );
    assert!(
        a.logs().iter().any(|l| l.contains("grace period over")),
        "{:?}",
        a.logs()
    );
}
