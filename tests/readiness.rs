//! `/ready` (readiness) apart from `/health` (liveness): `/ready` answers 503 from the moment
//! SIGTERM arrives and while the connection cap is reached; `/health` stays 200 through both.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use common::{Service, connect, get, parse_replies, read_reply, read_to_close};
use serde_json::{Value, json};

/// One keep-alive GET on an open connection, and its reply.
fn get_on(stream: &mut TcpStream, target: &str) -> common::Reply {
    let request = format!("GET {target} HTTP/1.1\r\nHost: test\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    read_reply(stream, false)
}

fn body(reply: &common::Reply) -> Value {
    serde_json::from_slice(&reply.body).expect("a JSON body")
}

#[test]
fn ready_is_200_on_both_services_when_all_is_well() {
    let a = Service::a(&[]);
    let b = Service::b(&a.url(), &[]);
    for service in [&a, &b] {
        let reply = get(service.addr, "/ready");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert_eq!(body(&reply), json!({"status": "ready"}));
    }
    // B's readiness does not depend on A, like its health.
    drop(a);
    assert_eq!(get(b.addr, "/ready").status, 200);
}

#[test]
fn ready_is_503_while_the_connection_cap_is_reached_and_health_stays_200() {
    let a = Service::a(&[]);
    let b = Service::b(&a.url(), &["--max-connections", "2"]);
    let c = Service::a(&["--max-connections", "2"]);
    for service in [&b, &c] {
        let mut first = connect(service.addr);
        assert_eq!(get_on(&mut first, "/ready").status, 200);
        // A second connection reaches the cap (the server has it once it answered on it).
        let mut second = connect(service.addr);
        assert_eq!(get_on(&mut second, "/health").status, 200);
        let reply = get_on(&mut first, "/ready");
        assert_eq!(reply.status, 503);
        assert_eq!(
            body(&reply),
            json!({"status": "not ready", "reason": "connection limit reached"})
        );
        assert_eq!(
            get_on(&mut first, "/health").status,
            200,
            "liveness unchanged"
        );
        // Below the cap again: ready again.
        drop(second);
        let mut ready = false;
        for _ in 0..100 {
            if get_on(&mut first, "/ready").status == 200 {
                ready = true;
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        assert!(ready, "ready again once a connection closed");
    }
}

#[test]
fn ready_is_503_from_sigterm_on_while_requests_drain_and_health_stays_200() {
    // Each connection holds a slow /echo in flight and, pipelined behind it, a probe: the probe
    // is answered after SIGTERM, during the drain.
    let mut a = Service::a(&["--delay-ms", "1500"]);
    let slow = "GET /echo?msg=slow HTTP/1.1\r\nHost: test\r\n\r\n";
    let mut ready_conn = connect(a.addr);
    let mut health_conn = connect(a.addr);
    let ready_probe = format!("{slow}GET /ready HTTP/1.1\r\nHost: test\r\n\r\n");
    let health_probe = format!("{slow}GET /health HTTP/1.1\r\nHost: test\r\n\r\n");
    ready_conn.write_all(ready_probe.as_bytes()).expect("send");
    health_conn
        .write_all(health_probe.as_bytes())
        .expect("send");
    thread::sleep(Duration::from_millis(400));
    a.signal("TERM");
    assert!(
        a.wait_for_log("shutdown: received SIGTERM", Duration::from_secs(2))
            .is_some()
    );
    // Both answers come in one write, the second with `Connection: close`.
    let (replies, _) = parse_replies(&read_to_close(&mut ready_conn), false);
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [200, 503],
        "the slow /echo finished, then /ready said 503"
    );
    assert_eq!(
        body(&replies[1]),
        json!({"status": "not ready", "reason": "shutting down"})
    );
    let (replies, _) = parse_replies(&read_to_close(&mut health_conn), false);
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200], "liveness unchanged during the drain");
    assert_eq!(a.wait_exit(Duration::from_secs(5)), Some(0));
}
