//! The smallest end-to-end check: both binaries start and answer.

mod common;

use common::{Service, get};

#[test]
fn a_and_b_answer_health_and_a_round_trip() {
    let a = Service::a(&[]);
    let b = Service::b(&a.url(), &[]);
    assert_eq!(
        get(a.addr, "/health").json(),
        serde_json::json!({"status": "ok"})
    );
    assert_eq!(
        get(b.addr, "/health").json(),
        serde_json::json!({"status": "ok"})
    );
    let reply = get(b.addr, "/call-echo?msg=hello");
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        serde_json::json!({"service_b": "ok", "service_a": {"echo": "hello"}})
    );
}
