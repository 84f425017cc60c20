//! Network partition: A and B in two network namespaces joined by a veth pair. With the link
//! cut, B's `/call-echo` fails with `503` `timeout` after its 1 s deadline (not a hang, not a
//! `connect` error); with the link back, it succeeds again at once.
//!
//! Needs root and iproute2. Without them the test prints `SKIP: ...` and passes, except in CI
//! (`CI` set, see `common::in_ci`), where it fails. The namespaces, and the client mode that
//! makes requests from inside B's, are `common::netns`.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::netns::{self, Net};

/// The client mode of this binary (see `common::netns`): not a test of its own.
#[test]
fn netns_client_helper() {
    netns::client_mode();
}

#[test]
fn b_times_out_while_partitioned_from_a_and_recovers() {
    let net = match Net::create() {
        Ok(net) => net,
        Err(why) => {
            common::skip_unless_ci(&format!("partition test needs root and iproute2 ({why})"));
            return;
        }
    };
    let mut a = net.start(&net.ns_a, env!("CARGO_BIN_EXE_service-a"), &net.ip_a, &[]);
    let a_url = format!("http://{}", a.addr);
    let mut b = net.start(
        &net.ns_b,
        env!("CARGO_BIN_EXE_service-b"),
        &net.ip_b,
        &["--service-a-url", &a_url],
    );
    println!(
        "A on {} in {}, B on {} in {}",
        a.addr, net.ns_a, b.addr, net.ns_b
    );

    // Connected: a round trip, which also leaves a kept-alive connection in B's pool.
    let answer = net.get(&net.ns_b, b.addr, "/call-echo?msg=before");
    assert_eq!(answer.status, 200, "before the cut: {answer:?}");
    assert_eq!(
        answer.body,
        serde_json::json!({"service_b": "ok", "service_a": {"echo": "before"}})
    );

    // Cut: packets are lost, nothing is refused. First the pooled connection (no response head
    // ever comes), then a new one (its SYN is lost): both must be a timeout at the deadline.
    net.link(false);
    for msg in ["cut-pooled", "cut-new"] {
        let answer = net.get(&net.ns_b, b.addr, &format!("/call-echo?msg={msg}"));
        println!(
            "{msg}: {} in {:.1} ms: {}",
            answer.status, answer.ms, answer.body
        );
        assert_eq!(answer.status, 503, "{msg}: {answer:?}");
        assert_eq!(answer.body["error_kind"], "timeout", "{msg}: {answer:?}");
        assert!(
            (1000.0..=1500.0).contains(&answer.ms),
            "{msg}: answered in {:.1} ms, expected 1000–1500 ms: {answer:?}",
            answer.ms
        );
    }
    let health = net.get(&net.ns_b, b.addr, "/health");
    assert_eq!(
        health.status, 200,
        "B's /health while partitioned: {health:?}"
    );

    // Healed: 200 again within 2 s.
    net.link(true);
    let healed = Instant::now();
    let mut tries = Vec::new();
    loop {
        let answer = net.get(&net.ns_b, b.addr, "/call-echo?msg=after");
        let took = healed.elapsed();
        if answer.status == 200 {
            assert_eq!(
                answer.body,
                serde_json::json!({"service_b": "ok", "service_a": {"echo": "after"}})
            );
            println!("healed: 200 {took:?} after the link came up (earlier tries: {tries:?})");
            assert!(took <= Duration::from_secs(2), "200 only after {took:?}");
            break;
        }
        tries.push((answer.status, answer.body["error"].clone()));
        assert!(
            took < Duration::from_secs(2),
            "no 200 within 2 s of the link coming back: {tries:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert!(a.is_running(), "A died");
    assert!(b.is_running(), "B died");
}
