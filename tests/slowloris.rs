//! Slowloris: many connections that send half a request head and then stall must not stop the
//! service from answering everybody else promptly.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::{Service, get, timed_get};
use echo_lab::load::prometheus::Exposition;

/// Stalled connections held open at once.
const STALLED: usize = 200;
/// Normal requests made while they are stalled, spread over about `PROBE_SPAN`.
const PROBES: u32 = 20;
const PROBE_SPAN: Duration = Duration::from_secs(3);
/// Each normal request must be answered within this.
const ANSWER_WITHIN: Duration = Duration::from_secs(1);

/// Opens `n` connections to `addr` that each send half a request head and then stall.
fn stall(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let deadline = Instant::now() + Duration::from_secs(20);
    (0..n)
        .map(|i| {
            assert!(
                Instant::now() < deadline,
                "opening stalled connections took too long ({i} of {n})"
            );
            let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("stalled connection {i}: connect: {e}"));
            stream
                .set_write_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            stream
                .write_all(b"GET /health HTTP/1.1\r\nHo")
                .unwrap_or_else(|e| panic!("stalled connection {i}: write: {e}"));
            stream
        })
        .collect()
}

/// Holds `STALLED` half-sent requests open against `service` and checks `/health` is answered
/// within `ANSWER_WITHIN`, `PROBES` times over about `PROBE_SPAN`.
fn survives_slowloris(service: &mut Service, name: &str) {
    let stalled = stall(service.addr, STALLED);
    // Probe only once the service has accepted them all: its open-connections gauge counts
    // them (and the scrape's own connection).
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = get(service.addr, "/metrics").text();
        let open = Exposition::parse(&metrics)
            .series("echo_lab_open_connections")
            .expect("the open-connections gauge") as usize;
        if open > STALLED {
            break;
        }
        assert!(
            Instant::now() < end,
            "{name}: only {open} connections accepted of {STALLED} stalled"
        );
    }
    let pause = PROBE_SPAN / PROBES;
    let mut slowest = Duration::ZERO;
    for i in 0..PROBES {
        let (reply, took) = timed_get(service.addr, "/health", ANSWER_WITHIN).unwrap_or_else(|e| {
            panic!("{name}: /health #{i} with {STALLED} stalled connections open: {e}")
        });
        assert_eq!(reply.status, 200, "{name}: /health #{i}: {reply:?}");
        assert_eq!(reply.json(), serde_json::json!({"status": "ok"}));
        assert!(
            took < ANSWER_WITHIN,
            "{name}: /health #{i} took {took:?}, over {ANSWER_WITHIN:?}"
        );
        slowest = slowest.max(took);
        thread::sleep(pause);
    }
    println!(
        "{name}: {PROBES} /health answered while {STALLED} connections stalled; slowest {slowest:?}"
    );
    // The stalled connections must still be open: the request timeout (10 s) has not passed,
    // so the service has neither answered nor dropped them.
    let mut open = 0;
    for mut stream in stalled {
        stream.set_nonblocking(true).expect("nonblocking");
        let mut byte = [0u8; 1];
        match stream.read(&mut byte) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => open += 1,
            other => println!("{name}: a stalled connection ended early: {other:?}"),
        }
    }
    assert_eq!(
        open, STALLED,
        "{name}: stalled connections closed before the request timeout"
    );
    assert!(service.is_running(), "{name} died");
}

#[test]
fn a_answers_health_while_200_connections_stall() {
    let mut a = Service::a(&[]);
    survives_slowloris(&mut a, "A");
}

#[test]
fn b_answers_health_while_200_connections_stall() {
    let a = Service::a(&[]);
    let mut b = Service::b(&a.url(), &[]);
    survives_slowloris(&mut b, "B");
    // And B still does its real job afterwards.
    let (reply, _) = timed_get(b.addr, "/call-echo?msg=still", Duration::from_secs(2))
        .expect("call-echo after slowloris");
    assert_eq!(reply.status, 200, "{reply:?}");
}
