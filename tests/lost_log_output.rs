//! The log output goes away while a service runs: stdout's reader exits (`service-a | head`,
//! a log collector that died). Log lines are lost from then on, but every request is still
//! answered, and the service says once on stderr what happened.

mod common;

use std::time::Duration;

use common::{Service, get};

const GONE: &str = "the log output (stdout) is gone";
/// How long the service may take to say so on stderr.
const SAY_WITHIN: Duration = Duration::from_secs(5);

#[test]
fn a_keeps_answering_when_its_log_output_is_gone() {
    let mut a = Service::orphan(env!("CARGO_BIN_EXE_service-a"), &[]);
    for i in 0..20 {
        let reply = get(a.addr, &format!("/echo?msg=n{i}"));
        assert_eq!(reply.status, 200, "request {i}: {reply:?}");
        assert_eq!(reply.json(), serde_json::json!({ "echo": format!("n{i}") }));
    }
    assert!(
        a.wait_for_log(GONE, SAY_WITHIN).is_some(),
        "stderr: {:?}",
        a.logs()
    );
    assert!(
        matches!(a.child.try_wait(), Ok(None)),
        "A exited after losing its log output"
    );
}

#[test]
fn b_keeps_calling_a_when_its_log_output_is_gone() {
    let a = Service::a(&[]);
    let url = a.url();
    let mut b = Service::orphan(env!("CARGO_BIN_EXE_service-b"), &["--service-a-url", &url]);
    for i in 0..20 {
        let reply = get(b.addr, &format!("/call-echo?msg=n{i}"));
        assert_eq!(reply.status, 200, "request {i}: {reply:?}");
    }
    // Failures are logged at warn: the lost output must not turn them into dropped connections.
    drop(a);
    let reply = get(b.addr, "/call-echo?msg=down");
    assert_eq!(reply.status, 503, "{reply:?}");
    assert!(
        b.wait_for_log(GONE, SAY_WITHIN).is_some(),
        "stderr: {:?}",
        b.logs()
    );
    assert!(
        matches!(b.child.try_wait(), Ok(None)),
        "B exited after losing its log output"
    );
}
