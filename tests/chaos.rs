//! A's chaos knobs, seen from B: each one off by default, named at startup when on, and
//! producing the failure it promises.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{Service, connect, get, timed_get};

fn error_kind(reply: &common::Reply) -> String {
    reply.json()["error_kind"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn chaos_is_off_by_default_and_named_when_on() {
    let quiet = Service::a(&[]);
    assert_eq!(get(quiet.addr, "/echo?msg=x").status, 200);
    assert!(quiet.logs().iter().all(|l| !l.contains("chaos")));
    let noisy = Service::a(&["--delay-ms", "10", "--fail-rate", "0.25"]);
    let line = noisy
        .wait_for_log("chaos on:", Duration::from_secs(2))
        .expect("a startup line names the knobs");
    assert!(
        line.contains("delay_ms=10") && line.contains("fail_rate=0.25"),
        "{line}"
    );
    // The listening line stays first: tests and people read it to find the port.
    assert!(noisy.logs()[0].contains("listening on"));
}

#[test]
fn delay_past_the_deadline_is_a_timeout_at_b() {
    let a = Service::a(&["--delay-ms", "1500"]);
    let b = Service::b(&a.url(), &[]);
    let started = Instant::now();
    let reply = get(b.addr, "/call-echo?msg=slow");
    let took = started.elapsed();
    assert_eq!(reply.status, 503);
    assert_eq!(error_kind(&reply), "timeout");
    assert!(
        took >= Duration::from_millis(1000) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    // Health is not slowed: chaos applies to /echo only.
    let started = Instant::now();
    assert_eq!(get(a.addr, "/health").status, 200);
    assert!(started.elapsed() < Duration::from_millis(500));
}

#[test]
fn delay_within_the_deadline_is_still_200() {
    let a = Service::a(&["--delay-ms", "200", "--jitter-ms", "100"]);
    let b = Service::b(&a.url(), &[]);
    let started = Instant::now();
    assert_eq!(get(b.addr, "/call-echo?msg=x").status, 200);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_millis(900),
        "{took:?}"
    );
}

#[test]
fn fail_rate_one_is_upstream_status() {
    let a = Service::a(&["--fail-rate", "1"]);
    let b = Service::b(&a.url(), &[]);
    let reply = get(b.addr, "/call-echo?msg=x");
    assert_eq!(reply.status, 503);
    assert_eq!(error_kind(&reply), "upstream_status");
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap_or_default()
            .contains("500")
    );
}

#[test]
fn drop_rate_one_is_closed() {
    let a = Service::a(&["--drop-rate", "1"]);
    let b = Service::b(&a.url(), &[]);
    for _ in 0..3 {
        let reply = get(b.addr, "/call-echo?msg=x");
        assert_eq!(reply.status, 503);
        assert_eq!(error_kind(&reply), "closed");
    }
}

#[test]
fn partial_rates_give_a_mix() {
    let a = Service::a(&["--fail-rate", "0.5"]);
    let b = Service::b(&a.url(), &[]);
    let statuses: Vec<u16> = (0..60)
        .map(|_| get(b.addr, "/call-echo?msg=x").status)
        .collect();
    let failed = statuses.iter().filter(|&&s| s == 503).count();
    // 60 draws at p = 0.5: outside 10..=50 has a chance below one in a million.
    assert!((10..=50).contains(&failed), "{failed} of 60 failed");
    assert!(statuses.iter().all(|&s| s == 200 || s == 503));
}

/// Each of `n` echoes straight from A: how long it took.
fn echo_times(a: &Service, n: usize) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let (reply, took) =
                timed_get(a.addr, "/echo?msg=x", Duration::from_secs(5)).expect("an answer");
            assert_eq!(reply.status, 200);
            took
        })
        .collect()
}

#[test]
fn tail_rate_one_delays_every_answer() {
    let a = Service::a(&["--tail-rate", "1", "--tail-delay-ms", "300"]);
    let line = a
        .wait_for_log("chaos on:", Duration::from_secs(2))
        .expect("a startup line names the knobs");
    assert!(line.contains("tail_rate=1 tail_delay_ms=300"), "{line}");
    for took in echo_times(&a, 4) {
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_millis(1500),
            "{took:?}"
        );
    }
}

#[test]
fn tail_rate_zero_delays_none() {
    let a = Service::a(&["--tail-rate", "0", "--tail-delay-ms", "300"]);
    for took in echo_times(&a, 8) {
        assert!(took < Duration::from_millis(250), "{took:?}");
    }
}

/// Sends `GET /echo?msg=x` on a new connection (kept alive, with `extra` header lines) and
/// returns the connection without reading.
fn send_echo(addr: SocketAddr, extra: &str) -> TcpStream {
    let mut stream = connect(addr);
    let request = format!("GET /echo?msg=x HTTP/1.1\r\nHost: t\r\n{extra}\r\n");
    stream.write_all(request.as_bytes()).expect("write");
    stream
}

/// `Ok` if not one byte, nor the end of the stream, arrives on `stream` for `quiet`.
fn silent_for(stream: &mut TcpStream, quiet: Duration) -> Result<(), String> {
    stream.set_read_timeout(Some(quiet)).expect("timeout");
    let mut buf = [0u8; 1024];
    match stream.read(&mut buf) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(()),
        Ok(0) => Err("the connection was closed".into()),
        Ok(n) => Err(format!("got {:?}", String::from_utf8_lossy(&buf[..n]))),
        Err(e) => Err(format!("read failed: {e}")),
    }
}

#[test]
fn black_hole_reads_echo_and_never_answers_while_health_does() {
    let a = Service::a(&["--blackhole"]);
    // The deadline is ignored too: a dead host does not read headers.
    let mut held = send_echo(a.addr, "X-Timeout-Ms: 200\r\n");
    let mut plain = send_echo(a.addr, "");
    for stream in [&mut held, &mut plain] {
        silent_for(stream, Duration::from_millis(1500)).expect("no answer from the black hole");
    }
    // A is alive, and says so: only its /echo is gone.
    let started = Instant::now();
    assert_eq!(get(a.addr, "/health").status, 200);
    assert_eq!(get(a.addr, "/metrics").status, 200);
    assert!(started.elapsed() < Duration::from_millis(500));
    let line = a
        .wait_for_log("chaos on:", Duration::from_secs(2))
        .expect("a startup line");
    assert!(line.contains("blackhole=true"), "{line}");
}

#[test]
fn black_hole_is_a_timeout_at_b() {
    let a = Service::a(&["--blackhole"]);
    let b = Service::b(&a.url(), &[]);
    let started = Instant::now();
    let reply = get(b.addr, "/call-echo?msg=x");
    let took = started.elapsed();
    assert_eq!(reply.status, 503);
    assert_eq!(error_kind(&reply), "timeout");
    assert!(
        took >= Duration::from_millis(1000) && took < Duration::from_millis(1500),
        "{took:?}"
    );
}

#[test]
fn sigterm_with_a_black_holed_request_exits_within_the_grace() {
    const GRACE_MS: u64 = 1000;
    let grace = GRACE_MS.to_string();
    let mut a = Service::a(&["--blackhole", "--shutdown-grace-ms", &grace]);
    let mut held = send_echo(a.addr, "");
    silent_for(&mut held, Duration::from_millis(300)).expect("held");
    let started = Instant::now();
    a.signal("TERM");
    let code = a.wait_exit(Duration::from_millis(GRACE_MS + 2000));
    let took = started.elapsed();
    assert_eq!(code, Some(0), "no exit 0 in time; logs: {:?}", a.logs());
    // It was in flight, so the drain waited for it, but not past the grace.
    assert!(took >= Duration::from_millis(GRACE_MS - 100), "{took:?}");
    // Dropped unanswered when the grace ended, as a dead host's connection would be.
    held.set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let mut rest = Vec::new();
    let _ = held.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
}

#[test]
fn new_knobs_come_from_the_environment_too() {
    let envs = [
        ("TAIL_RATE", "0.5"),
        ("TAIL_DELAY_MS", "40"),
        ("BLACKHOLE", "1"),
    ];
    let a = Service::start(env!("CARGO_BIN_EXE_service-a"), &[], &envs);
    let line = a
        .wait_for_log("chaos on:", Duration::from_secs(2))
        .expect("a startup line");
    assert!(
        line.contains("tail_rate=0.5 tail_delay_ms=40") && line.contains("blackhole=true"),
        "{line}"
    );
}

/// Runs service-a with `args` and `envs`, expecting it to refuse to start: its exit code and
/// stderr. Bounded: a service that starts anyway is killed and reported, not waited on.
fn refused_start(args: &[&str], envs: &[(&str, &str)]) -> (i32, String) {
    let out = common::output_within(
        std::process::Command::new(env!("CARGO_BIN_EXE_service-a"))
            .args(["--port", "0"])
            .args(args)
            .envs(envs.iter().copied()),
        Duration::from_secs(10),
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), stderr)
}

/// A bad start: arguments, environment, and the flag the error must name.
type BadStart = (
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
    &'static str,
);

#[test]
fn bad_new_knobs_exit_2_naming_the_flag() {
    let cases: [BadStart; 8] = [
        (&["--tail-rate", "2"], &[], "--tail-rate"),
        // Above the one-minute bound (`chaos::MAX_DELAY`), which `/control` applies too.
        (&["--delay-ms", "60001"], &[], "--delay-ms"),
        (&[], &[("JITTER_MS", "86400000")], "--jitter-ms"),
        (
            &["--tail-rate", "-0.5", "--tail-delay-ms", "10"],
            &[],
            "--tail-rate",
        ),
        (&["--tail-rate", "0.5"], &[], "--tail-rate"),
        (&["--tail-delay-ms", "-1"], &[], "--tail-delay-ms"),
        (&["--blackhole=maybe"], &[], "--blackhole"),
        (
            &[],
            &[("TAIL_RATE", "NaN"), ("TAIL_DELAY_MS", "10")],
            "--tail-rate",
        ),
    ];
    for (args, envs, flag) in cases {
        let (code, stderr) = refused_start(args, envs);
        assert_eq!(code, 2, "{args:?} {envs:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(flag), "{args:?} {envs:?}: {stderr}");
    }
}

#[test]
fn rates_outside_zero_to_one_are_refused() {
    for args in [
        ["--fail-rate", "1.5"],
        ["--drop-rate", "-0.1"],
        ["--fail-rate", "often"],
    ] {
        let (code, stderr) = refused_start(&args, &[]);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(args[0]), "{stderr}");
    }
}
