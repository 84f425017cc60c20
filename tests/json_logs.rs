//! `--log-format json`: a whole run of A and B (requests that succeed and fail, a rejected
//! request, chaos, shutdown and drain), where every line on stdout must be one JSON object
//! carrying the fields its text form carries.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::{get, get_with};
use serde_json::{Map, Value};

/// How long a service may take to start, or to exit after SIGTERM.
const WAIT: Duration = Duration::from_secs(10);

/// A service started with JSON logs; `finish` stops it and returns every stdout line.
struct JsonService {
    child: Child,
    addr: SocketAddr,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl JsonService {
    fn start(bin: &str, args: &[&str], envs: &[(&str, &str)]) -> JsonService {
        let mut child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(args)
            .env_remove("RUST_LOG")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn service");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        // The first line is `listening`, with the address as its own member.
        let first = lines.recv_timeout(WAIT).expect("a first log line");
        let object = parse(&first);
        assert_eq!(object["event"], "listening", "{first}");
        let addr = object["addr"]
            .as_str()
            .expect("addr")
            .parse()
            .expect("an address");
        JsonService {
            child,
            addr,
            lines,
            seen: vec![first],
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends SIGTERM, waits for exit 0, and returns every line the service wrote.
    fn finish(mut self) -> Vec<String> {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(killed.expect("run kill").success());
        let status = self.child.wait().expect("wait for exit");
        assert_eq!(status.code(), Some(0));
        while let Ok(line) = self.lines.recv_timeout(WAIT) {
            self.seen.push(line);
        }
        self.seen
    }
}

/// One line as a JSON object, or a failed test naming the line.
fn parse(line: &str) -> Map<String, Value> {
    match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(object)) => object,
        other => panic!("not one JSON object per line: {line:?} ({other:?})"),
    }
}

/// Every line parses and has `ts`, `level` and `target`; returns the objects.
fn parse_all(lines: &[String]) -> Vec<Map<String, Value>> {
    assert!(!lines.is_empty());
    lines
        .iter()
        .map(|line| {
            let object = parse(line);
            let ts = object["ts"].as_str().expect("ts");
            assert!(
                ts.len() == 24 && ts.ends_with('Z'),
                "RFC 3339 UTC ts: {line}"
            );
            assert!(
                object["level"].is_string() && object["target"].is_string(),
                "{line}"
            );
            object
        })
        .collect()
}

/// The request line of the request with id `id`.
fn request_line<'o>(objects: &'o [Map<String, Value>], id: &str) -> &'o Map<String, Value> {
    objects
        .iter()
        .find(|o| o.get("request_id").and_then(Value::as_str) == Some(id))
        .unwrap_or_else(|| panic!("no line for request {id}: {objects:?}"))
}

fn has_event(objects: &[Map<String, Value>], event: &str) -> bool {
    objects
        .iter()
        .any(|o| o.get("event").and_then(Value::as_str) == Some(event))
}

#[test]
fn every_line_of_a_run_is_a_json_object_with_the_text_lines_fields() {
    let a = JsonService::start(
        env!("CARGO_BIN_EXE_service-a"),
        &["--log-format", "json", "--fail-rate", "0"],
        &[],
    );
    // B takes the format from its variable.
    let b = JsonService::start(
        env!("CARGO_BIN_EXE_service-b"),
        &["--service-a-url", &a.url()],
        &[("LOG_FORMAT", "json")],
    );
    let ok = get_with(b.addr, "/call-echo?msg=hi", &[("X-Request-Id", "json-ok")]);
    assert_eq!(ok.status, 200);
    let bad = get_with(
        b.addr,
        "/call-echo?msg=%ZZ",
        &[("X-Request-Id", "json-bad")],
    );
    assert_eq!(bad.status, 400);
    assert!(!common::exchange(b.addr, b"GET / HTTP/1.1\r\n\r\n").is_empty());
    assert_eq!(get(a.addr, "/health").status, 200);
    let a_lines = a.finish();
    let down = get_with(b.addr, "/call-echo?msg=x", &[("X-Request-Id", "json-down")]);
    assert_eq!(down.status, 503);
    let b_lines = b.finish();

    let a_objects = parse_all(&a_lines);
    let b_objects = parse_all(&b_lines);

    let line = request_line(&b_objects, "json-ok");
    assert_eq!(line["service"], "B");
    assert_eq!(line["method"], "GET");
    assert_eq!(line["endpoint"], "/call-echo");
    assert_eq!(line["status"], 200);
    assert_eq!(line["level"], "INFO");
    assert!(
        line["latency_ms"].is_f64() || line["latency_ms"].is_u64(),
        "{line:?}"
    );
    assert!(!line.contains_key("error"), "{line:?}");
    // B passed the id to A, whose line has the same fields.
    let line = request_line(&a_objects, "json-ok");
    assert_eq!(
        (&line["service"], &line["endpoint"]),
        (&"A".into(), &"/echo".into())
    );

    let line = request_line(&b_objects, "json-bad");
    assert_eq!(line["status"], 400);
    assert!(
        line["error"].as_str().expect("error").contains("%ZZ"),
        "{line:?}"
    );

    let line = request_line(&b_objects, "json-down");
    assert_eq!(line["status"], 503);
    assert_eq!(line["level"], "WARN");
    assert_eq!(line["error_kind"], "connect");
    assert!(line["error"].as_str().expect("error").contains("service A"));

    // The request the HTTP layer rejected (no Host).
    assert!(
        b_objects
            .iter()
            .any(|o| o.get("status") == Some(&400.into()) && o.contains_key("peer")),
        "{b_lines:?}"
    );
    // Lifecycle lines, structured: the start, the signal, the drain, the end.
    for event in [
        "listening",
        "shutdown",
        "drain_start",
        "drain_complete",
        "stopped",
    ] {
        assert!(has_event(&a_objects, event), "A: no {event}: {a_lines:?}");
        assert!(has_event(&b_objects, event), "B: no {event}: {b_lines:?}");
    }
    let signal = b_objects
        .iter()
        .find(|o| o.get("event") == Some(&"shutdown".into()));
    assert_eq!(signal.expect("shutdown line")["signal"], "SIGTERM");
}

#[test]
fn chaos_on_is_a_structured_line_too() {
    let a = JsonService::start(
        env!("CARGO_BIN_EXE_service-a"),
        &["--log-format", "json", "--delay-ms", "5"],
        &[],
    );
    let objects = parse_all(&a.finish());
    let chaos = objects
        .iter()
        .find(|o| o.get("event") == Some(&"chaos_on".into()));
    let chaos = chaos.expect("a chaos_on line");
    assert_eq!(chaos["service"], "A");
    assert!(chaos["msg"].as_str().expect("msg").contains("delay_ms=5"));
}

#[test]
fn an_unknown_log_format_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_service-a"))
        .args(["--port", "0", "--log-format", "xml"])
        .output()
        .expect("run service-a");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--log-format") && stderr.contains("xml"),
        "{stderr}"
    );
}
