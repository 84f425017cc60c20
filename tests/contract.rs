//! The contract of /work/shared/CONTRACT.md, one small test per promise: statuses, JSON
//! bodies and their headers, HEAD, 404/405, `X-Request-Id`, the log line, and the command line.
//!
//! Every request goes over a real socket to the real binaries.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    FakeUpstream, Reply, Service, connect, get_with, output_within, parse_replies,
    read_request_head, read_to_close,
};
use serde_json::{Value, json};

const LOG_WAIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Sends `METHOD target` with `Connection: close` (plus `extra` header lines) on a new
/// connection, reads until the server closes, and returns the one reply and the raw bytes.
/// Panics if anything but exactly one response arrived.
fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    extra: &[(&str, &str)],
) -> (Reply, Vec<u8>) {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut stream = connect(addr);
    stream.write_all(head.as_bytes()).expect("write request");
    let raw = read_to_close(&mut stream);
    let head_only = method == "HEAD";
    let (replies, used) = parse_replies(&raw, head_only);
    assert_eq!(
        replies.len(),
        1,
        "expected exactly one response to {method} {target}: {:?}",
        String::from_utf8_lossy(&raw)
    );
    assert_eq!(
        used,
        raw.len(),
        "bytes after the response to {method} {target}: {:?}",
        String::from_utf8_lossy(&raw)
    );
    (replies.into_iter().next().expect("one reply"), raw)
}

fn get_reply(addr: SocketAddr, target: &str) -> Reply {
    request(addr, "GET", target, &[]).0
}

/// Status, `Content-Type: application/json`, a `Content-Length` equal to the body, and the
/// body as JSON; returns the JSON for further checks.
fn assert_json_reply(reply: &Reply, status: u16) -> Value {
    assert_eq!(reply.status, status, "status of {reply:?}");
    assert_eq!(
        reply.header("Content-Type"),
        Some("application/json"),
        "Content-Type of {reply:?}"
    );
    let length: usize = reply
        .header("Content-Length")
        .unwrap_or_else(|| panic!("no Content-Length in {reply:?}"))
        .parse()
        .expect("Content-Length is a number");
    assert_eq!(length, reply.body.len(), "Content-Length of {reply:?}");
    reply.json()
}

/// As `assert_json_reply`, and the body is exactly `expected`.
fn assert_reply(reply: &Reply, status: u16, expected: Value) {
    let body = assert_json_reply(reply, status);
    assert_eq!(body, expected, "body of {reply:?}");
}

/// A 400 with `{"error": "<text>"}` (and nothing else); returns the text.
fn assert_error_reply(reply: &Reply, status: u16) -> String {
    let body = assert_json_reply(reply, status);
    let object = body.as_object().expect("error body is an object");
    assert_eq!(object.len(), 1, "error body has only \"error\": {body}");
    object["error"]
        .as_str()
        .unwrap_or_else(|| panic!("\"error\" is a string: {body}"))
        .to_owned()
}

fn echo_on_a(query: &str, expected: &str) {
    let a = Service::a(&[]);
    let reply = get_reply(a.addr, &format!("/echo?{query}"));
    assert_reply(&reply, 200, json!({ "echo": expected }));
}

fn echo_through_b(query: &str, expected: &str) {
    let a = Service::a(&[]);
    let b = Service::b(&a.url(), &[]);
    let reply = get_reply(b.addr, &format!("/call-echo?{query}"));
    assert_reply(
        &reply,
        200,
        json!({"service_b": "ok", "service_a": {"echo": expected}}),
    );
}

/// The raw head of a response, without its final blank line.
fn raw_head(raw: &[u8]) -> String {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

/// HEAD gets the same status, Content-Type and Content-Length as GET, and not one byte after
/// its head before the server closes.
fn assert_head_matches_get(addr: SocketAddr, target: &str) {
    let (got, _) = request(addr, "GET", target, &[]);
    let (head, raw) = request(addr, "HEAD", target, &[]);
    assert_eq!(head.status, got.status, "HEAD {target} vs GET");
    assert_eq!(head.header("Content-Type"), got.header("Content-Type"));
    assert_eq!(
        head.header("Content-Length"),
        got.header("Content-Length"),
        "HEAD {target} announces GET's length"
    );
    assert!(
        head.header("Content-Length")
            .is_some_and(|l| l.parse::<usize>().is_ok_and(|n| n > 0)),
        "a non-zero Content-Length on HEAD {target}: {head:?}"
    );
    assert!(head.body.is_empty());
    let head_len = raw_head(&raw).len() + 4;
    assert_eq!(
        raw.len(),
        head_len,
        "HEAD {target}: bytes after the head: {:?}",
        String::from_utf8_lossy(&raw[head_len.min(raw.len())..])
    );
}

/// A method other than GET/HEAD on a known path: 405, `Allow: GET, HEAD` (the same list
/// `OPTIONS *` answers), a JSON error.
fn assert_405(addr: SocketAddr, method: &str, target: &str) {
    let (reply, _) = request(addr, method, target, &[("Content-Length", "0")]);
    assert_error_reply(&reply, 405);
    assert_eq!(
        reply.header("Allow"),
        Some("GET, HEAD"),
        "{method} {target}: {reply:?}"
    );
}

/// The `key=value` fields of a log line, from `service=` on.
fn log_fields(line: &str) -> Vec<(String, String)> {
    let start = line
        .find("service=")
        .unwrap_or_else(|| panic!("no service= in {line:?}"));
    line[start..]
        .split(' ')
        .map(|field| {
            let (k, v) = field
                .split_once('=')
                .unwrap_or_else(|| panic!("field {field:?} of {line:?} is not key=value"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// Checks a success log line names, in order, exactly the contract's fields.
fn assert_log_line(line: &str, service: &str, endpoint: &str, status: u16, request_id: &str) {
    let fields = log_fields(line);
    let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "service",
            "method",
            "endpoint",
            "status",
            "latency_ms",
            "request_id",
            "trace_id"
        ],
        "fields of {line:?}"
    );
    assert_eq!(fields[0].1, service, "{line:?}");
    assert_eq!(fields[1].1, "GET", "{line:?}");
    assert_eq!(fields[2].1, endpoint, "{line:?}");
    assert_eq!(fields[3].1, status.to_string(), "{line:?}");
    let latency: f64 = fields[4]
        .1
        .parse()
        .unwrap_or_else(|_| panic!("latency_ms is a number in {line:?}"));
    assert!(latency >= 0.0, "{line:?}");
    assert_eq!(fields[5].1, request_id, "{line:?}");
    // W3C Trace Context: 32 lowercase hex digits, not all zero.
    let trace_id = &fields[6].1;
    assert!(
        trace_id.len() == 32
            && trace_id
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        "{line:?}"
    );
}

/// A fake A that answers every `/echo` with `{"echo":"fake"}` and records each request head.
fn recording_upstream() -> (FakeUpstream, Arc<Mutex<Vec<String>>>) {
    common::recording_upstream(|_| {
        let body = r#"{"echo":"fake"}"#;
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    })
}

/// The value of header `name` in a raw request head.
fn head_field<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

/// Runs a binary to completion (it must exit within 10 s) with `args` and `envs`.
fn run_bin(bin: &str, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = Command::new(bin);
    command
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("HOST")
        .env_remove("PORT")
        .env_remove("SERVICE_A_URL")
        .env_remove("TIMEOUT_MS")
        .envs(envs.iter().copied());
    output_within(&mut command, Duration::from_secs(10))
}

/// A usage error: exit status 2 and exactly one non-empty line on stderr; returns it.
fn assert_one_line_failure(out: &Output, what: &str) -> String {
    assert_one_line_exit(out, what, 2)
}

/// A start that the environment refused (the port in use): exit status 1, one line.
fn assert_one_line_start_failure(out: &Output, what: &str) -> String {
    assert_one_line_exit(out, what, 1)
}

/// A failed start with exit status `code` and exactly one non-empty line on stderr; returns
/// the line.
fn assert_one_line_exit(out: &Output, what: &str, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: expected exit status {code} (docs/contract.md, Flags), got {:?}; stderr {stderr:?}",
        out.status
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{what}: one line on stderr, got {stderr:?}");
    lines[0].to_owned()
}

/// The flags the flag table of docs/contract.md promises for service `which` (`'A'` or `'B'`), with their
/// variables: every row without a prefix, and the rows marked `A:` or `B:`.
fn documented_flags(which: char) -> Vec<(String, String)> {
    let contract =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/contract.md"))
            .expect("read docs/contract.md");
    let table = contract
        .split("## Flags")
        .nth(1)
        .expect("docs/contract.md has a Flags section");
    let mut flags = Vec::new();
    for row in table.lines().take_while(|l| !l.starts_with("## ")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        // | flag | variable | default | what |
        let [_, flag, var, ..] = cells[..] else {
            continue;
        };
        let (only, flag) = match flag.split_once(": ") {
            Some((service, flag)) => (service.chars().next(), flag),
            None => (None, flag),
        };
        let (Some(flag), Some(var)) = (flag.strip_prefix("`--"), var.strip_prefix('`')) else {
            continue;
        };
        if only.is_none_or(|s| s == which) {
            let flag = format!("--{}", flag.trim_end_matches('`'));
            flags.push((flag, var.trim_end_matches('`').to_owned()));
        }
    }
    flags
}

/// `--help` exits 0 and lists exactly the documented flags for this service, each on a line
/// together with its variable (and `--help` itself).
fn assert_help_lists_documented_flags(bin: &str, which: char) {
    let flags = documented_flags(which);
    assert!(
        flags.len() >= 8,
        "the flag table of docs/contract.md for {which}: {flags:?}"
    );
    let out = run_bin(bin, &["--help"], &[]);
    assert!(out.status.success(), "--help exits 0: {:?}", out.status);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for (flag, env) in &flags {
        assert!(
            text.lines().any(|l| l
                .split(|c: char| c.is_whitespace() || c == '=')
                .any(|w| w == flag)
                && l.contains(env.as_str())),
            "--help lists {flag} with {env}:\n{text}"
        );
    }
    // And nothing docs/contract.md does not document.
    let listed: Vec<&str> = text
        .split_whitespace()
        .filter(|w| w.starts_with("--") && w.len() > 2)
        // `--flag=value` names `--flag`.
        .map(|w| w.split('=').next().unwrap_or(w))
        .map(|w| w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()))
        .filter(|w| *w != "--help" && *w != "--version")
        .collect();
    for flag in listed {
        assert!(
            flags.iter().any(|(f, _)| f == flag),
            "--help lists {flag}, which the flag table of docs/contract.md does not have for {which}"
        );
    }
}

const A_BIN: &str = env!("CARGO_BIN_EXE_service-a");
const B_BIN: &str = env!("CARGO_BIN_EXE_service-b");

// ---------------------------------------------------------------------------------------------
// /health
// ---------------------------------------------------------------------------------------------

#[test]
fn a_health_is_200_ok() {
    let a = Service::a(&[]);
    let reply = get_reply(a.addr, "/health");
    assert_reply(&reply, 200, json!({"status": "ok"}));
    assert_eq!(reply.body, br#"{"status":"ok"}"#);
}

#[test]
fn b_health_is_200_ok() {
    let a = Service::a(&[]);
    let b = Service::b(&a.url(), &[]);
    let reply = get_reply(b.addr, "/health");
    assert_reply(&reply, 200, json!({"status": "ok"}));
    assert_eq!(reply.body, br#"{"status":"ok"}"#);
}

// ---------------------------------------------------------------------------------------------
// /echo on A
// ---------------------------------------------------------------------------------------------

#[test]
fn a_echo_plain_word() {
    echo_on_a("msg=hello", "hello");
}

#[test]
fn a_echo_empty_msg() {
    echo_on_a("msg=", "");
}

#[test]
fn a_echo_missing_msg_is_empty() {
    let a = Service::a(&[]);
    assert_reply(&get_reply(a.addr, "/echo"), 200, json!({"echo": ""}));
    assert_reply(
        &get_reply(a.addr, "/echo?other=1"),
        200,
        json!({"echo": ""}),
    );
}

#[test]
fn a_echo_reserved_characters_round_trip() {
    echo_on_a("msg=a%26b%3Dc%23d%20%2525%20%2B", "a&b=c#d %25 +");
}

#[test]
fn a_echo_utf8_check_mark() {
    echo_on_a("msg=%E2%9C%93", "✓");
}

#[test]
fn a_echo_plus_is_a_space() {
    echo_on_a("msg=a+b++c", "a b  c");
}

#[test]
fn a_echo_first_msg_wins() {
    echo_on_a("msg=first&msg=second", "first");
}

#[test]
fn a_echo_bad_escape_is_400() {
    let a = Service::a(&[]);
    let reply = get_reply(a.addr, "/echo?msg=%ZZ");
    let error = assert_error_reply(&reply, 400);
    assert!(
        error.contains("%ZZ") && error.contains("escape"),
        "error names the bad escape: {error:?}"
    );
}

#[test]
fn a_echo_non_utf8_is_400() {
    let a = Service::a(&[]);
    let reply = get_reply(a.addr, "/echo?msg=%FF");
    let error = assert_error_reply(&reply, 400);
    assert!(error.contains("UTF-8"), "error says UTF-8: {error:?}");
}

// ---------------------------------------------------------------------------------------------
// /call-echo on B, with a real A
// ---------------------------------------------------------------------------------------------

#[test]
fn b_call_echo_plain_word() {
    echo_through_b("msg=hello", "hello");
}

#[test]
fn b_call_echo_empty_msg() {
    echo_through_b("msg=", "");
}

#[test]
fn b_call_echo_missing_msg_is_empty() {
    echo_through_b("", "");
}

#[test]
fn b_call_echo_reserved_characters_round_trip() {
    echo_through_b("msg=a%26b%3Dc%23d%20%2525%20%2B", "a&b=c#d %25 +");
}

#[test]
fn b_call_echo_utf8_check_mark() {
    echo_through_b("msg=%E2%9C%93", "✓");
}

#[test]
fn b_call_echo_plus_is_a_space() {
    echo_through_b("msg=a+b", "a b");
}

#[test]
fn b_call_echo_first_msg_wins() {
    echo_through_b("msg=first&msg=second", "first");
}

#[test]
fn b_call_echo_bad_escape_is_400() {
    let a = Service::a(&[]);
    let b = Service::b(&a.url(), &[]);
    let reply = get_reply(b.addr, "/call-echo?msg=%ZZ");
    let error = assert_error_reply(&reply, 400);
    assert!(
        error.contains("%ZZ") && error.contains("escape"),
        "error names the bad escape: {error:?}"
    );
}

#[test]
fn b_call_echo_bad_escape_is_400_without_calling_a() {
    let (upstream, heads) = recording_upstream();
    let b = Service::b(&upstream.url(), &[]);
    let reply = get_reply(b.addr, "/call-echo?msg=%ZZ");
    assert_error_reply(&reply, 400);
    // A good call afterwards reaches A: the fake would have recorded the bad one too.
    assert_eq!(get_reply(b.addr, "/call-echo?msg=ok").status, 200);
    let heads = heads.lock().expect("heads lock").clone();
    assert_eq!(heads.len(), 1, "A saw only the good call: {heads:?}");
    assert!(heads[0].starts_with("GET /echo?msg=ok "), "{heads:?}");
}

#[test]
fn b_passes_a_2xx_json_object_through_byte_for_byte() {
    // Spacing, key order, escapes and number spelling that a parse-and-reserialize would
    // change: B must send A's bytes on unchanged.
    let from_a = r#"{ "echo" : "xA",  "n": 1.50, "z":[ ], "a" :{"b":null} }"#;
    let a = FakeUpstream::start(move |mut stream: TcpStream| {
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{from_a}",
            from_a.len()
        );
        while read_request_head(&mut stream).is_some() {
            if stream.write_all(response.as_bytes()).is_err() {
                return;
            }
        }
    });
    let b = Service::b(&a.url(), &[]);
    let reply = get_reply(b.addr, "/call-echo?msg=x");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.text(),
        format!(r#"{{"service_b":"ok","service_a":{from_a}}}"#)
    );
}

#[test]
fn b_call_echo_non_utf8_is_400() {
    let a = Service::a(&[]);
    let b = Service::b(&a.url(), &[]);
    let reply = get_reply(b.addr, "/call-echo?msg=%FF");
    assert_error_reply(&reply, 400);
}

// ---------------------------------------------------------------------------------------------
// 404 and 405
// ---------------------------------------------------------------------------------------------

#[test]
fn a_unknown_path_is_404() {
    let a = Service::a(&[]);
    for target in ["/nope", "/", "/call-echo", "/echo/extra", "/health/"] {
        assert_reply(
            &get_reply(a.addr, target),
            404,
            json!({"error": "not found"}),
        );
    }
}

#[test]
fn b_unknown_path_is_404() {
    let a = Service::a(&[]);
    let b = Service::b(&a.url(), &[]);
    for target in ["/nope", "/", "/echo?msg=x", "/call-echo/x"] {
        assert_reply(
            &get_reply(b.addr, target),
            404,
            json!({"error": "not found"}),
        );
    }
}

#[test]
fn a_post_and_delete_are_405_with_allow() {
    let a = Service::a(&[]);
    for method in ["POST", "DELETE"] {
        for target in ["/health", "/echo?msg=x"] {
            assert_405(a.addr, method, target);
        }
    }
}

#[test]
fn b_post_and_delete_are_405_with_allow() {
    let a = Service::a(&[]);
    let b = Service::b(&a.url(), &[]);
    for method in ["POST", "DELETE"] {
        for target in ["/health", "/call-echo?msg=x"] {
            assert_405(b.addr, method, target);
        }
    }
}

/// `OPTIONS target` (RFC 9110 §9.3.7): 200, `Allow: GET, HEAD`, `Content-Length: 0` and
/// nothing after the head.
fn assert_options(addr: SocketAddr, target: &str) {
    let (reply, raw) = request(addr, "OPTIONS", target, &[]);
    assert_eq!(reply.status, 200, "OPTIONS {target}: {reply:?}");
    assert_eq!(reply.header("Allow"), Some("GET, HEAD"), "{target}");
    assert_eq!(reply.header("Content-Length"), Some("0"), "{target}");
    assert_eq!(
        reply.header("Content-Type"),
        None,
        "no content, no type: {target}"
    );
    assert!(raw.ends_with(b"\r\n\r\n"), "no body: {raw:?}");
    assert!(reply.header("X-Request-Id").is_some(), "{target}");
}

#[test]
fn a_options_asterisk_answers_allow_and_a_path_405() {
    let a = Service::a(&[]);
    assert_options(a.addr, "*");
    for target in ["/health", "/echo?msg=x", "/metrics"] {
        assert_405(a.addr, "OPTIONS", target);
    }
    let (reply, _) = request(a.addr, "OPTIONS", "/nope", &[]);
    assert_error_reply(&reply, 404);
}

#[test]
fn b_options_asterisk_answers_allow_and_a_path_405() {
    let a = Service::a(&[]);
    let b = Service::b(&a.url(), &[]);
    assert_options(b.addr, "*");
    for target in ["/health", "/call-echo?msg=x"] {
        assert_405(b.addr, "OPTIONS", target);
    }
    assert!(
        !a.logs().iter().any(|l| l.contains("endpoint=/echo")),
        "OPTIONS /call-echo does not call A: {:?}",
        a.logs()
    );
}

// ---------------------------------------------------------------------------------------------
// HEAD
// ---------------------------------------------------------------------------------------------

#[test]
fn a_head_health_matches_get_without_body() {
    let a = Service::a(&[]);
    assert_head_matches_get(a.addr, "/health");
}

#[test]
fn a_head_echo_matches_get_without_body() {
    let a = Service::a(&[]);
    assert_head_matches_get(a.addr, "/echo?msg=hello%20there");
}

#[test]
fn b_head_health_matches_get_without_body() {
    let a = Service::a(&[]);
    let b = Service::b(&a.url(), &[]);
    assert_head_matches_get(b.addr, "/health");
}

#[test]
fn b_head_call_echo_matches_get_without_body() {
    let a = Service::a(&[]);
    let b = Service::b(&a.url(), &[]);
    assert_head_matches_get(b.addr, "/call-echo?msg=hello%20there");
}

#[test]
fn head_on_an_unknown_path_is_the_404_head_without_body() {
    let a = Service::a(&[]);
    let b = Service::b(&a.url(), &[]);
    for addr in [a.addr, b.addr] {
        assert_head_matches_get(addr, "/no-such-path");
        assert_eq!(request(addr, "HEAD", "/no-such-path", &[]).0.status, 404);
    }
}

#[test]
fn head_on_metrics_is_a_200_head_without_body() {
    // The exposition changes from one scrape to the next (this very request is counted), so
    // its length is checked to be there, not to equal a GET's.
    let a = Service::a(&[]);
    let b = Service::b(&a.url(), &[]);
    for addr in [a.addr, b.addr] {
        let (head, raw) = request(addr, "HEAD", "/metrics", &[]);
        assert_eq!(head.status, 200, "{head:?}");
        assert_eq!(
            head.header("Content-Type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        assert!(
            head.header("Content-Length")
                .is_some_and(|l| l.parse::<usize>().is_ok_and(|n| n > 100)),
            "HEAD /metrics announces the exposition's length: {head:?}"
        );
        assert_eq!(
            raw.len(),
            raw_head(&raw).len() + 4,
            "no body after the head"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// X-Request-Id
// ---------------------------------------------------------------------------------------------

#[test]
fn a_keeps_a_sane_request_id_and_logs_it() {
    let a = Service::a(&[]);
    let id = "test-id_1.2:3/4+5=6";
    let reply = get_with(a.addr, "/echo?msg=x", &[("X-Request-Id", id)]);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("X-Request-Id"), Some(id));
    let line = a
        .wait_for_log(&format!("request_id={id}"), LOG_WAIT)
        .unwrap_or_else(|| panic!("no log line with the id: {:?}", a.logs()));
    assert!(line.contains("endpoint=/echo"), "{line:?}");
}

#[test]
fn b_keeps_a_sane_request_id_and_logs_it() {
    let a = Service::a(&[]);
    let b = Service::b(&a.url(), &[]);
    let id = "b-keeps-this-id-42";
    let reply = get_with(b.addr, "/health", &[("X-Request-Id", id)]);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("X-Request-Id"), Some(id));
    assert!(
        b.wait_for_log(&format!("request_id={id}"), LOG_WAIT)
            .is_some(),
        "no log line with the id: {:?}",
        b.logs()
    );
}

/// A fresh id is 16 hex digits (lowercase), as docs/contract.md promises.
fn assert_fresh_id(id: &str) {
    assert!(
        id.len() == 16 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        "a fresh request id is 16 hex digits, got {id:?}"
    );
}

#[test]
fn a_generates_a_request_id_when_absent() {
    let a = Service::a(&[]);
    let first = get_reply(a.addr, "/health");
    let second = get_reply(a.addr, "/health");
    let id1 = first.header("X-Request-Id").expect("an id is generated");
    let id2 = second.header("X-Request-Id").expect("an id is generated");
    assert_fresh_id(id1);
    assert_fresh_id(id2);
    assert_ne!(id1, id2, "each request gets its own id");
    assert!(
        a.wait_for_log(&format!("request_id={id1}"), LOG_WAIT)
            .is_some(),
        "the generated id is logged: {:?}",
        a.logs()
    );
}

#[test]
fn a_replaces_an_id_with_spaces_and_quotes() {
    let a = Service::a(&[]);
    let bad = r#"bad id "quoted""#;
    let reply = get_with(a.addr, "/health", &[("X-Request-Id", bad)]);
    assert_eq!(reply.status, 200);
    let id = reply.header("X-Request-Id").expect("an id is returned");
    assert_fresh_id(id);
    assert!(
        a.wait_for_log(&format!("request_id={id}"), LOG_WAIT)
            .is_some(),
        "the replacement id is logged: {:?}",
        a.logs()
    );
    assert!(
        !a.logs().iter().any(|l| l.contains("quoted")),
        "the insane id never reaches the log: {:?}",
        a.logs()
    );
}

#[test]
fn a_replaces_an_id_of_200_chars() {
    let a = Service::a(&[]);
    let long = "x".repeat(200);
    let reply = get_with(a.addr, "/health", &[("X-Request-Id", &long)]);
    assert_eq!(reply.status, 200);
    let id = reply.header("X-Request-Id").expect("an id is returned");
    assert_fresh_id(id);
}

#[test]
fn a_keeps_an_id_of_exactly_128_chars_and_replaces_129() {
    let a = Service::a(&[]);
    let longest = "k".repeat(128);
    let reply = get_with(a.addr, "/health", &[("X-Request-Id", &longest)]);
    assert_eq!(reply.header("X-Request-Id"), Some(longest.as_str()));
    let over = "k".repeat(129);
    let reply = get_with(a.addr, "/health", &[("X-Request-Id", &over)]);
    assert_fresh_id(reply.header("X-Request-Id").expect("an id is returned"));
}

#[test]
fn b_forwards_the_client_request_id_to_a() {
    let (upstream, heads) = recording_upstream();
    let b = Service::b(&upstream.url(), &[]);
    let id = "forward-me-123";
    let reply = get_with(b.addr, "/call-echo?msg=hi", &[("X-Request-Id", id)]);
    assert_reply(
        &reply,
        200,
        json!({"service_b": "ok", "service_a": {"echo": "fake"}}),
    );
    assert_eq!(reply.header("X-Request-Id"), Some(id));
    let heads = heads.lock().expect("heads lock").clone();
    assert_eq!(heads.len(), 1, "A got one request: {heads:?}");
    assert!(
        heads[0].starts_with("GET /echo?msg=hi HTTP/1.1\r\n"),
        "{heads:?}"
    );
    assert_eq!(head_field(&heads[0], "X-Request-Id"), Some(id), "{heads:?}");
}

#[test]
fn b_forwards_its_generated_request_id_to_a() {
    let (upstream, heads) = recording_upstream();
    let b = Service::b(&upstream.url(), &[]);
    let reply = get_reply(b.addr, "/call-echo?msg=hi");
    assert_eq!(reply.status, 200, "{reply:?}");
    let id = reply.header("X-Request-Id").expect("B generates an id");
    let heads = heads.lock().expect("heads lock").clone();
    assert_eq!(heads.len(), 1, "A got one request: {heads:?}");
    assert_eq!(head_field(&heads[0], "X-Request-Id"), Some(id), "{heads:?}");
}

#[test]
fn b_and_real_a_log_the_same_request_id() {
    let a = Service::a(&[]);
    let b = Service::b(&a.url(), &[]);
    let id = "shared-id-7";
    let reply = get_with(b.addr, "/call-echo?msg=x", &[("X-Request-Id", id)]);
    assert_eq!(reply.status, 200, "{reply:?}");
    let needle = format!("request_id={id}");
    let a_line = a
        .wait_for_log(&needle, LOG_WAIT)
        .unwrap_or_else(|| panic!("A logged the id: {:?}", a.logs()));
    assert!(a_line.contains("endpoint=/echo"), "{a_line:?}");
    let b_line = b
        .wait_for_log(&needle, LOG_WAIT)
        .unwrap_or_else(|| panic!("B logged the id: {:?}", b.logs()));
    assert!(b_line.contains("endpoint=/call-echo"), "{b_line:?}");
}

// ---------------------------------------------------------------------------------------------
// The log line
// ---------------------------------------------------------------------------------------------

#[test]
fn b_log_line_has_the_contract_format() {
    let a = Service::a(&[]);
    let b = Service::b(&a.url(), &[]);
    let id = "log-format-b";
    let reply = get_with(b.addr, "/call-echo?msg=x", &[("X-Request-Id", id)]);
    assert_eq!(reply.status, 200, "{reply:?}");
    let line = b
        .wait_for_log(&format!("request_id={id}"), LOG_WAIT)
        .unwrap_or_else(|| panic!("no log line: {:?}", b.logs()));
    assert_log_line(&line, "B", "/call-echo", 200, id);
}

#[test]
fn a_log_line_has_the_contract_format() {
    let a = Service::a(&[]);
    let id = "log-format-a";
    let reply = get_with(a.addr, "/echo?msg=x", &[("X-Request-Id", id)]);
    assert_eq!(reply.status, 200, "{reply:?}");
    let line = a
        .wait_for_log(&format!("request_id={id}"), LOG_WAIT)
        .unwrap_or_else(|| panic!("no log line: {:?}", a.logs()));
    assert_log_line(&line, "A", "/echo", 200, id);
}

// ---------------------------------------------------------------------------------------------
// The command line
// ---------------------------------------------------------------------------------------------

#[test]
fn a_help_lists_every_flag_with_its_variable() {
    assert_help_lists_documented_flags(A_BIN, 'A');
}

#[test]
fn b_help_lists_every_flag_with_its_variable() {
    assert_help_lists_documented_flags(B_BIN, 'B');
}

#[test]
fn a_unknown_flag_is_one_line_and_non_zero() {
    let out = run_bin(A_BIN, &["--no-such-flag"], &[]);
    let line = assert_one_line_failure(&out, "--no-such-flag");
    assert!(line.contains("--no-such-flag"), "{line:?}");
}

#[test]
fn b_unknown_flag_is_one_line_and_non_zero() {
    let out = run_bin(B_BIN, &["--no-such-flag"], &[]);
    let line = assert_one_line_failure(&out, "--no-such-flag");
    assert!(line.contains("--no-such-flag"), "{line:?}");
}

#[test]
fn a_bad_port_value_is_one_line_and_non_zero() {
    let out = run_bin(A_BIN, &["--port", "nope"], &[]);
    let line = assert_one_line_failure(&out, "--port nope");
    assert!(line.contains("--port") && line.contains("nope"), "{line:?}");
}

#[test]
fn b_bad_port_value_is_one_line_and_non_zero() {
    let out = run_bin(B_BIN, &["--port", "nope"], &[]);
    let line = assert_one_line_failure(&out, "--port nope");
    assert!(line.contains("--port") && line.contains("nope"), "{line:?}");
}

#[test]
fn b_bad_service_a_url_is_one_line_and_non_zero() {
    let out = run_bin(B_BIN, &["--port", "0", "--service-a-url", "ftp://x"], &[]);
    let line = assert_one_line_failure(&out, "--service-a-url ftp://x");
    assert!(
        line.contains("--service-a-url") && line.contains("ftp://x"),
        "{line:?}"
    );
}

#[test]
fn zero_where_zero_would_make_a_useless_service_is_refused() {
    // No connections, no threads, or a deadline that has passed before the call starts.
    for (bin, flag) in [
        (A_BIN, "--max-connections"),
        (A_BIN, "--threads"),
        (B_BIN, "--max-connections"),
        (B_BIN, "--threads"),
        (B_BIN, "--timeout-ms"),
    ] {
        let out = run_bin(bin, &["--port", "0", flag, "0"], &[]);
        let line = assert_one_line_failure(&out, &format!("{flag} 0"));
        assert!(line.contains(flag) && line.contains("\"0\""), "{line:?}");
    }
}

#[test]
fn b_bad_timeout_value_is_one_line_and_non_zero() {
    let out = run_bin(B_BIN, &["--port", "0", "--timeout-ms", "soon"], &[]);
    let line = assert_one_line_failure(&out, "--timeout-ms soon");
    assert!(line.contains("--timeout-ms"), "{line:?}");
}

#[test]
fn a_port_in_use_is_one_line_and_non_zero() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let out = run_bin(A_BIN, &["--host", "127.0.0.1", "--port", &port], &[]);
    let line = assert_one_line_start_failure(&out, "port in use");
    assert!(
        line.contains(&port) && line.to_lowercase().contains("in use"),
        "the line names the port and the reason: {line:?}"
    );
    drop(taken);
}

#[test]
fn b_port_in_use_is_one_line_and_non_zero() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let out = run_bin(B_BIN, &["--host", "127.0.0.1", "--port", &port], &[]);
    let line = assert_one_line_start_failure(&out, "port in use");
    assert!(
        line.contains(&port) && line.to_lowercase().contains("in use"),
        "the line names the port and the reason: {line:?}"
    );
    drop(taken);
}

#[test]
fn port_flag_beats_port_variable() {
    // The variable names a port that is taken: if it won, A could not start at all.
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let env_port = taken.local_addr().expect("addr").port();
    let a = Service::start(A_BIN, &[], &[("PORT", &env_port.to_string())]);
    assert_ne!(a.addr.port(), env_port, "--port 0 wins over PORT");
    assert_reply(&get_reply(a.addr, "/health"), 200, json!({"status": "ok"}));
}

#[test]
fn port_variable_is_used_without_the_flag() {
    // PORT names a port that is taken: A can only fail on it if it read PORT. (A free port
    // would have to be released first, and could be taken by someone else meanwhile.)
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let out = run_bin(A_BIN, &["--host", "127.0.0.1"], &[("PORT", &port)]);
    let line = assert_one_line_start_failure(&out, "PORT in use");
    assert!(
        line.contains(&format!("127.0.0.1:{port}")),
        "A tried the port PORT names: {line:?}"
    );
}

#[test]
fn rust_log_warn_keeps_warnings_and_drops_info_lines() {
    // With RUST_LOG=warn, A's first log line is the chaos warning: the INFO startup line
    // before it is gone. (The address is then known only to whoever chose the port.)
    let mut child = Command::new(A_BIN)
        .args(["--host", "127.0.0.1", "--port", "0", "--delay-ms", "1"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn A");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let first = rx.recv_timeout(Duration::from_secs(10));
    let _ = child.kill();
    let _ = child.wait();
    let first = first.expect("a first log line within 10 s");
    assert!(
        first.contains("WARN") && first.contains("chaos on"),
        "the first line under RUST_LOG=warn: {first:?}"
    );
}

#[test]
fn host_and_port_variables_are_used_without_flags() {
    let mut command = Command::new(A_BIN);
    command
        .env_remove("RUST_LOG")
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let a = Service::spawn(command);
    assert_eq!(a.addr.ip().to_string(), "127.0.0.1");
    assert_ne!(a.addr.port(), 0);
    assert_reply(&get_reply(a.addr, "/health"), 200, json!({"status": "ok"}));
}

#[test]
fn service_a_url_flag_beats_its_variable() {
    let a = Service::a(&[]);
    // A variable that would not even parse: B starts only if the flag wins.
    let b = Service::start(
        B_BIN,
        &["--service-a-url", &a.url()],
        &[("SERVICE_A_URL", "ftp://x")],
    );
    let reply = get_reply(b.addr, "/call-echo?msg=flag");
    assert_reply(
        &reply,
        200,
        json!({"service_b": "ok", "service_a": {"echo": "flag"}}),
    );
}

#[test]
fn service_a_url_variable_is_used_without_the_flag() {
    let out = run_bin(B_BIN, &["--port", "0"], &[("SERVICE_A_URL", "ftp://x")]);
    let line = assert_one_line_failure(&out, "SERVICE_A_URL=ftp://x");
    assert!(line.contains("ftp://x"), "{line:?}");
}

#[test]
fn timeout_flag_beats_its_variable() {
    // The variable is not a number: B starts only if the flag wins.
    let a = Service::a(&[]);
    let b = Service::start(
        B_BIN,
        &["--service-a-url", &a.url(), "--timeout-ms", "2000"],
        &[("TIMEOUT_MS", "never")],
    );
    assert_eq!(get_reply(b.addr, "/call-echo?msg=t").status, 200);
    // And without the flag, the bad variable is reported.
    let out = run_bin(
        B_BIN,
        &["--port", "0", "--service-a-url", &a.url()],
        &[("TIMEOUT_MS", "never")],
    );
    let line = assert_one_line_failure(&out, "TIMEOUT_MS=never");
    assert!(line.contains("never"), "{line:?}");
}
