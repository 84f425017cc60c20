//! A's chaos knobs, seen from B: each one off by default, named at startup when on, and
//! producing the failure it promises.

mod common;

use std::time::{Duration, Instant};

use common::{Service, get};

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

#[test]
fn rates_outside_zero_to_one_are_refused() {
    for args in [
        ["--fail-rate", "1.5"],
        ["--drop-rate", "-0.1"],
        ["--fail-rate", "often"],
    ] {
        // Refused at start: a service still running after 10 s accepted the value.
        let out = common::output_within(
            std::process::Command::new(env!("CARGO_BIN_EXE_service-a"))
                .args(["--port", "0"])
                .args(args),
            Duration::from_secs(10),
        );
        assert!(!out.status.success(), "{args:?} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(args[0]), "{stderr}");
    }
}
