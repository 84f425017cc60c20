//! A's `/control` on the wire: off by default (the 404 of any unknown path), and with
//! `--control` a `GET` that shows every knob and a `POST` that changes some of them at once,
//! refuses a bad body without changing anything, and is logged. Who may use it: loopback
//! peers, or with `--control-token` any peer with the token (a peer in another network
//! namespace stands for another machine).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::netns::{self, Net};
use common::{Reply, Service, exchange, get, output_within, parse_replies};

const A_BIN: &str = env!("CARGO_BIN_EXE_service-a");

/// A token of the bearer syntax, for the tests that set one.
const TOKEN: &str = "s3cret-t0ken";

/// How long a log line may take to show up.
const LOG_WAIT: Duration = Duration::from_secs(2);

/// `{"delay_ms":0,...}` as A sends it with every knob off.
const ALL_OFF: &str = r#"{"delay_ms":0,"jitter_ms":0,"tail_rate":0.0,"tail_delay_ms":0,"fail_rate":0.0,"drop_rate":0.0,"blackhole":false,"workers":0,"work_ms":0,"queue_limit":0,"queue_policy":"fifo"}"#;

/// `ALL_OFF` as a JSON value.
fn all_off() -> serde_json::Value {
    serde_json::from_str(ALL_OFF).expect("JSON")
}

/// The client mode of this binary (see `common::netns`): not a test of its own.
#[test]
fn netns_client_helper() {
    netns::client_mode();
}

/// `method /control` with `Connection: close`, extra header lines and `body` (framed by
/// `Content-Length`), as raw bytes.
fn control_request(method: &str, headers: &[(&str, &str)], body: &str) -> String {
    common::request_with_body(method, "/control", headers, body)
}

/// Sends `raw` on a new connection; the one reply (the server closes after it).
fn one_reply(addr: SocketAddr, raw: &[u8], head_only: bool) -> Reply {
    let bytes = exchange(addr, raw);
    let (replies, _) = parse_replies(&bytes, head_only);
    replies
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no reply: {:?}", String::from_utf8_lossy(&bytes)))
}

fn control(addr: SocketAddr, method: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let request = control_request(method, headers, body);
    one_reply(addr, request.as_bytes(), method == "HEAD")
}

fn post(addr: SocketAddr, body: &str) -> Reply {
    control(addr, "POST", &[], body)
}

/// The knobs as `GET /control` shows them.
fn settings(addr: SocketAddr) -> serde_json::Value {
    let reply = control(addr, "GET", &[], "");
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

#[test]
fn off_by_default_control_is_the_404_of_any_unknown_path() {
    let a = Service::a(&[]);
    let unknown = get(a.addr, "/no-such-path");
    for method in ["GET", "POST", "PUT"] {
        let reply = control(a.addr, method, &[], r#"{"fail_rate":1}"#);
        assert_eq!(reply.status, 404, "{method}");
        assert_eq!(reply.body, unknown.body, "{method}");
        assert_eq!(reply.header("Allow"), None, "{method}");
    }
    assert_eq!(
        get(a.addr, "/echo?msg=x").status,
        200,
        "the POST changed nothing"
    );
    let about_control = |l: &String| l.contains("control on") || l.contains("event=control_");
    assert!(!a.logs().iter().any(about_control), "{:?}", a.logs());
}

#[test]
fn a_change_applies_at_once_and_is_logged_with_old_and_new_values() {
    let a = Service::a(&["--control"]);
    a.wait_for_log("control on:", LOG_WAIT)
        .expect("a startup line says /control is on");
    let read = control(a.addr, "GET", &[], "");
    assert_eq!(read.status, 200);
    assert_eq!(read.header("Content-Type"), Some("application/json"));
    assert_eq!(read.text(), ALL_OFF, "every knob, off");

    let changed = post(a.addr, r#"{"fail_rate":1.0}"#);
    assert_eq!(changed.status, 200, "{}", changed.text());
    let mut expected = all_off();
    expected["fail_rate"] = 1.0.into();
    assert_eq!(
        changed.json(),
        expected,
        "the whole settings after the change"
    );
    assert_eq!(get(a.addr, "/echo?msg=x").status, 500, "applied at once");
    assert_eq!(settings(a.addr), expected);
    let line = a
        .wait_for_log("event=control_changed", LOG_WAIT)
        .expect("the change is logged");
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains(r#"changed="fail_rate 0 -> 1""#), "{line}");
    assert!(line.contains("peer=127.0.0.1:"), "{line}");

    // A partial update leaves the other knobs as they are.
    let partial = post(a.addr, r#"{"delay_ms":5}"#);
    assert_eq!(partial.json()["fail_rate"], 1.0);
    assert_eq!(partial.json()["delay_ms"], 5);
    assert!(
        a.wait_for_log(r#"changed="delay_ms 0 -> 5""#, LOG_WAIT)
            .is_some()
    );
    assert_eq!(get(a.addr, "/echo?msg=x").status, 500);

    let back = post(a.addr, r#"{"fail_rate":0}"#);
    assert_eq!(back.json()["fail_rate"], 0.0);
    assert_eq!(get(a.addr, "/echo?msg=back").json()["echo"], "back");

    let head = control(a.addr, "HEAD", &[], "");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let length: usize = head
        .header("Content-Length")
        .and_then(|n| n.parse().ok())
        .expect("HEAD has GET's Content-Length");
    let get = control(a.addr, "GET", &[], "");
    assert_eq!(length, get.body.len());
}

#[test]
fn the_flags_set_the_starting_values() {
    let a = Service::a(&["--control", "--delay-ms", "7", "--fail-rate", "0.25"]);
    let now = settings(a.addr);
    assert_eq!(now["delay_ms"], 7);
    assert_eq!(now["fail_rate"], 0.25);
    assert_eq!(now["blackhole"], false);
}

#[test]
fn metrics_show_the_knobs_as_they_are_now() {
    let a = Service::a(&["--control", "--delay-ms", "3"]);
    let before = get(a.addr, "/metrics").text();
    assert!(
        before.contains("echo_lab_chaos{knob=\"delay_ms\"} 3\n"),
        "{before}"
    );
    assert!(
        before.contains("echo_lab_chaos{knob=\"drop_rate\"} 0\n"),
        "{before}"
    );
    assert_eq!(
        post(a.addr, r#"{"drop_rate":0.5,"blackhole":true}"#).status,
        200
    );
    let after = get(a.addr, "/metrics").text();
    assert!(
        after.contains("echo_lab_chaos{knob=\"drop_rate\"} 0.5\n"),
        "{after}"
    );
    assert!(
        after.contains("echo_lab_chaos{knob=\"blackhole\"} 1\n"),
        "{after}"
    );
}

#[test]
fn bad_bodies_are_400_naming_the_problem_and_change_nothing() {
    let a = Service::a(&["--control"]);
    assert_eq!(post(a.addr, r#"{"jitter_ms":5}"#).status, 200);
    let before = settings(a.addr);
    let cases = [
        ("", "the body is empty"),
        ("{", "the body is not JSON"),
        ("[1]", "the body is an array, not a JSON object of knobs"),
        (r#"{"tail":1}"#, r#"unknown knob "tail""#),
        (
            r#"{"fail_rate":"high"}"#,
            "fail_rate: expected a number from 0 to 1, got a string",
        ),
        (
            r#"{"tail_rate":1.5}"#,
            "tail_rate: 1.5 is not between 0 and 1",
        ),
        (
            r#"{"delay_ms":60001}"#,
            "delay_ms: 60001 is not between 0 and 60000",
        ),
        (
            r#"{"delay_ms":-1}"#,
            "delay_ms: -1 is not between 0 and 60000",
        ),
        (
            r#"{"tail_rate":0.5}"#,
            "tail_rate: 0.5 needs tail_delay_ms above 0",
        ),
        (r#"{"fail_rate":1,"tail":1}"#, r#"unknown knob "tail""#),
    ];
    for (body, text) in cases {
        let reply = post(a.addr, body);
        assert_eq!(reply.status, 400, "{body}: {}", reply.text());
        assert_eq!(reply.header("Content-Type"), Some("application/json"));
        let error = reply.error_text();
        assert!(error.starts_with(text), "{body}: {error}");
        assert_eq!(settings(a.addr), before, "{body} changed something");
    }
    assert!(
        a.wait_for_logs("event=control_refused", cases.len(), LOG_WAIT),
        "every refusal is logged: {:?}",
        a.logs()
    );
    let line = a.wait_for_log(r#"unknown knob \"tail\""#, LOG_WAIT);
    assert!(line.is_some_and(|l| l.contains("WARN") && l.contains("status=400")));
    assert_eq!(get(a.addr, "/echo?msg=x").status, 200);
}

#[test]
fn a_chunked_body_is_read_whole() {
    let a = Service::a(&["--control"]);
    let request = [
        "POST /control HTTP/1.1",
        "Host: test",
        "Connection: close",
        "Transfer-Encoding: chunked",
        "",
        "7",
        r#"{"fail_"#,
        "9",
        r#"rate":1.0"#,
        "1",
        "}",
        "0",
        "",
        "",
    ]
    .join("\r\n");
    let reply = one_reply(a.addr, request.as_bytes(), false);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(settings(a.addr)["fail_rate"], 1.0);
}

#[test]
fn a_body_over_the_cap_is_413_before_it_is_read() {
    let a = Service::a(&["--control"]);
    // The server's cap, 64 KiB, announced one byte over: refused on the head alone.
    let head = "POST /control HTTP/1.1\r\nHost: test\r\nContent-Length: 65537\r\n\r\n";
    let reply = one_reply(a.addr, head.as_bytes(), false);
    assert_eq!(reply.status, 413, "{}", reply.text());
    assert_eq!(reply.header("Content-Type"), Some("application/json"));
    assert_eq!(settings(a.addr), all_off());
}

#[test]
fn other_methods_are_405_with_allow() {
    let a = Service::a(&["--control"]);
    for method in ["PUT", "DELETE", "PATCH", "OPTIONS"] {
        let reply = control(a.addr, method, &[], r#"{"fail_rate":1}"#);
        assert_eq!(reply.status, 405, "{method}");
        assert_eq!(reply.header("Allow"), Some("GET, HEAD, POST"), "{method}");
        assert!(reply.error_text().contains(method), "{method}");
    }
    assert_eq!(settings(a.addr), all_off());
}

#[test]
fn with_a_token_every_peer_must_send_it() {
    // From the environment, as docs/contract.md advises: it stays out of `ps`.
    let a = Service::start(A_BIN, &["--control"], &[("CONTROL_TOKEN", TOKEN)]);
    let right = format!("Bearer {TOKEN}");
    let wrong = format!("Bearer {TOKEN}x");
    for (headers, why) in [
        (vec![], "no token"),
        (vec![("Authorization", wrong.as_str())], "a wrong token"),
        (vec![("Authorization", "Basic czNjcmV0")], "another scheme"),
    ] {
        let reply = control(a.addr, "POST", &headers, r#"{"fail_rate":1}"#);
        assert_eq!(reply.status, 401, "{why}");
        assert_eq!(reply.header("WWW-Authenticate"), Some("Bearer"), "{why}");
        assert!(reply.error_text().contains("token"), "{why}");
    }
    assert_eq!(get(a.addr, "/echo?msg=x").status, 200, "nothing changed");
    assert!(a.wait_for_logs("event=control_refused", 3, LOG_WAIT));
    assert!(
        a.logs()
            .iter()
            .any(|l| l.contains("status=401") && l.contains("WARN"))
    );

    let auth = [("Authorization", right.as_str())];
    assert_eq!(control(a.addr, "GET", &auth, "").status, 200);
    let changed = control(a.addr, "POST", &auth, r#"{"fail_rate":1}"#);
    assert_eq!(changed.status, 200, "{}", changed.text());
    assert_eq!(get(a.addr, "/echo?msg=x").status, 500);
    let logs = a.logs().join("\n");
    assert!(!logs.contains(TOKEN), "the token is never logged: {logs}");

    // The flag works the same way.
    let b = Service::a(&["--control", "--control-token", TOKEN]);
    assert_eq!(control(b.addr, "GET", &[], "").status, 401);
    assert_eq!(control(b.addr, "GET", &auth, "").status, 200);
}

#[test]
fn a_token_without_control_or_of_the_wrong_form_is_a_usage_error() {
    for (args, flag) in [
        (&["--control-token", TOKEN][..], "--control"),
        (
            &["--control", "--control-token", "not a token"][..],
            "--control-token",
        ),
    ] {
        let out = output_within(
            std::process::Command::new(A_BIN)
                .args(["--port", "0"])
                .args(args),
            Duration::from_secs(10),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(flag), "{stderr}");
        assert!(
            !stderr.contains(TOKEN) && !stderr.contains("not a token"),
            "{stderr}"
        );
    }
}

#[test]
fn a_peer_on_another_machine_gets_403_unless_there_is_a_token() {
    let net = match Net::create() {
        Ok(net) => net,
        Err(why) => {
            common::skip_unless_ci(&format!(
                "the non-loopback control test needs root and iproute2 ({why})"
            ));
            return;
        }
    };
    // A in one namespace, the client in the other: its address is not loopback.
    let a = net.start(&net.ns_a, A_BIN, &net.ip_a, &["--control"]);
    let read = net.get(&net.ns_b, a.addr, "/control");
    assert_eq!(read.status, 403, "{read:?}");
    assert!(
        read.body["error"]
            .as_str()
            .is_some_and(|e| e.contains("loopback")),
        "{read:?}"
    );
    let post = control_request("POST", &[], r#"{"fail_rate":1}"#);
    assert_eq!(net.request(&net.ns_b, a.addr, &post).status, 403);
    let line = a
        .wait_for_log("event=control_refused", LOG_WAIT)
        .expect("the refusal is logged");
    assert!(line.contains(&format!("peer={}:", net.ip_b)), "{line}");
    assert!(
        line.contains("status=403") && line.contains("WARN"),
        "{line}"
    );
    assert_eq!(net.get(&net.ns_b, a.addr, "/echo?msg=x").status, 200);

    // With a token, the same peer is let in by it, and only by it.
    let guarded = net.start(
        &net.ns_a,
        A_BIN,
        &net.ip_a,
        &["--control", "--control-token", TOKEN],
    );
    assert_eq!(net.get(&net.ns_b, guarded.addr, "/control").status, 401);
    let auth = format!("Bearer {TOKEN}");
    let post = control_request("POST", &[("Authorization", &auth)], r#"{"fail_rate":1}"#);
    let changed = net.request(&net.ns_b, guarded.addr, &post);
    assert_eq!(changed.status, 200, "{changed:?}");
    assert_eq!(changed.body["fail_rate"], 1.0);
    assert_eq!(net.get(&net.ns_b, guarded.addr, "/echo?msg=x").status, 500);
}
