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
fn after_sigterm_ready_is_never_200_while_the_drain_finishes_work_in_flight() {
    // From SIGTERM on, the listener is closed: a readiness probe on a new connection is
    // refused, which a prober counts as not ready. (A `/ready` answered during the drain
    // would say 503: `services::tests::ready_is_503_while_draining_and_at_the_connection_cap`.
    // Requests pipelined behind work in flight are not served once the server has said
    // `Connection: close`, RFC 9112 §9.6, so no probe can reach the handler then.)
    let mut a = Service::a(&["--delay-ms", "1500"]);
    assert_eq!(get(a.addr, "/ready").status, 200);
    let mut slow = connect(a.addr);
    slow.write_all(b"GET /echo?msg=slow HTTP/1.1\r\nHost: test\r\n\r\n")
        .expect("send");
    thread::sleep(Duration::from_millis(300));
    a.signal("TERM");
    assert!(
        a.wait_for_log("shutdown: received SIGTERM", Duration::from_secs(2))
            .is_some()
    );
    match TcpStream::connect(a.addr) {
        Err(_) => {} // refused: not ready
        Ok(mut probe) => {
            // Accepted just before the listener closed: answered 503, closed or reset.
            let _ = probe.write_all(b"GET /ready HTTP/1.1\r\nHost: test\r\n\r\n");
            let (bytes, _) = common::read_until_end(&mut probe, common::IO_TIMEOUT);
            let (replies, _) = parse_replies(&bytes, false);
            assert!(
                replies.iter().all(|r| r.status != 200),
                "a probe after SIGTERM was told ready: {replies:?}"
            );
        }
    }
    // The work in flight is finished, and says it is the connection's last answer.
    let (replies, _) = parse_replies(&read_to_close(&mut slow), false);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].status, 200);
    assert_eq!(replies[0].header("connection"), Some("close"));
    assert_eq!(a.wait_exit(Duration::from_secs(5)), Some(0));
}
