//! The lab binary with its real children: it prints its address, serves its page and a live
//! feed of Server-Sent Events (checked on a raw socket, chunk by chunk), takes its orders and
//! refuses bad ones, shows a stopped replica leaving rotation, and on SIGTERM ends the feed
//! with the last chunk and leaves no child behind.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use common::{Reply, exchange, parse_replies};
use serde_json::Value;

/// The lab starts four services (debug builds, on a shared machine): its address comes after.
const START_WAIT: Duration = Duration::from_secs(30);

/// The first event must arrive within this of opening the feed.
const FIRST_EVENT_WAIT: Duration = Duration::from_secs(1);

/// Events come every 500 ms; a wait for a state change allows this long.
const CHANGE_WAIT: Duration = Duration::from_secs(15);

/// How long the lab may take to stop its children and exit after SIGTERM: their drains are
/// 1 s, and the lab waits 2 s at most before killing.
const EXIT_WAIT: Duration = Duration::from_secs(10);

/// The load in these tests: enough for B's balancer to tell replicas apart, light on the CPU.
const RATE: &str = "20";

/// A running lab in a process group of its own. Dropping it kills the group: the lab and,
/// should the lab have failed to, its children.
struct Lab {
    child: Child,
    addr: SocketAddr,
    _stdout: Receiver<String>,
}

impl Lab {
    fn start() -> Lab {
        let bin_dir = Path::new(env!("CARGO_BIN_EXE_service-a"))
            .parent()
            .expect("the binaries' directory");
        let mut child = Command::new(env!("CARGO_BIN_EXE_lab"))
            .args(["--port", "0", "--rate", RATE, "--bin-dir"])
            .arg(bin_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .expect("spawn lab");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let end = Instant::now() + START_WAIT;
        let addr = loop {
            let left = end.saturating_duration_since(Instant::now());
            let line = lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no `lab: open` line within {START_WAIT:?}"));
            if let Some(url) = line.strip_prefix("lab: open http://") {
                break url.trim_end_matches('/').parse().expect("an address");
            }
        };
        Lab {
            child,
            addr,
            _stdout: lines,
        }
    }

    /// `POST path` with a JSON content type and `body`.
    fn post(&self, path: &str, body: &str) -> Reply {
        self.post_with(path, body, &[("Content-Type", "application/json")])
    }

    fn post_with(&self, path: &str, body: &str, headers: &[(&str, &str)]) -> Reply {
        let request = common::request_with_body("POST", path, headers, body);
        let raw = exchange(self.addr, request.as_bytes());
        parse_replies(&raw, false)
            .0
            .into_iter()
            .next()
            .unwrap_or_else(|| {
                panic!(
                    "no answer to POST {path}: {:?}",
                    String::from_utf8_lossy(&raw)
                )
            })
    }

    fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success());
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // The group is usually gone already: say nothing if so.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

/// The live feed, read on a raw socket: the head, then one chunk at a time.
struct Feed {
    stream: BufReader<TcpStream>,
    head: String,
}

impl Feed {
    /// Opens `/events` and reads the response head.
    fn open(addr: SocketAddr) -> Feed {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .write_all(
                b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n",
            )
            .expect("write");
        stream
            .set_read_timeout(Some(FIRST_EVENT_WAIT))
            .expect("timeout");
        let mut stream = BufReader::new(stream);
        let mut head = String::new();
        while !head.ends_with("\r\n\r\n") {
            let read = stream.read_line(&mut head).expect("the response head");
            assert!(read > 0, "closed inside the head: {head:?}");
        }
        Feed { stream, head }
    }

    /// The next chunk's data, or `None` for the last chunk (`0\r\n\r\n`), which must be
    /// followed by the close. Each wait for a byte is bounded by `within`.
    fn chunk(&mut self, within: Duration) -> Option<Vec<u8>> {
        self.stream
            .get_ref()
            .set_read_timeout(Some(within))
            .expect("timeout");
        let mut size_line = String::new();
        self.stream
            .read_line(&mut size_line)
            .unwrap_or_else(|e| panic!("no chunk within {within:?}: {e}"));
        let size_hex = size_line
            .strip_suffix("\r\n")
            .unwrap_or_else(|| panic!("a chunk-size line ends in CRLF: {size_line:?}"));
        let size = usize::from_str_radix(size_hex, 16)
            .unwrap_or_else(|_| panic!("a bare hex chunk size: {size_line:?}"));
        let mut data = vec![0; size + 2];
        self.stream.read_exact(&mut data).expect("the chunk's data");
        assert_eq!(&data[size..], b"\r\n", "CRLF after the chunk's data");
        data.truncate(size);
        if size > 0 {
            return Some(data);
        }
        assert!(
            data.is_empty() && self.at_end(),
            "the last chunk, then the close"
        );
        None
    }

    /// Whether the server closed the connection (nothing more came).
    fn at_end(&mut self) -> bool {
        let mut rest = Vec::new();
        match self.stream.read_to_end(&mut rest) {
            Ok(_) => rest.is_empty(),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => rest.is_empty(),
            Err(e) => panic!("reading past the last chunk: {e}"),
        }
    }

    /// The next event: one chunk holding exactly `data: <json>` and a blank line.
    fn event(&mut self, within: Duration) -> Value {
        let chunk = self.chunk(within).expect("an event, not the end");
        let text = String::from_utf8(chunk).expect("UTF-8");
        let json = text
            .strip_prefix("data: ")
            .and_then(|t| t.strip_suffix("\n\n"))
            .unwrap_or_else(|| panic!("one `data:` line and a blank line: {text:?}"));
        assert!(!json.contains('\n'), "one line of JSON: {json:?}");
        serde_json::from_str(json).expect("JSON")
    }

    /// Reads events until one satisfies `wanted`, for up to `within`; that event.
    fn until(&mut self, within: Duration, wanted: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + within;
        let mut last = Value::Null;
        while Instant::now() < end {
            last = self.event(Duration::from_secs(2));
            if wanted(&last) {
                return last;
            }
        }
        panic!("no such event within {within:?}; the last: {last}");
    }
}

/// Replica `n` (1-based) in an event.
fn replica(event: &Value, n: usize) -> &Value {
    &event["replicas"][n - 1]
}

#[test]
fn a_bad_flag_exits_2_and_a_port_in_use_1_before_any_child_starts() {
    let lab = env!("CARGO_BIN_EXE_lab");
    for args in [
        &["--rate", "-1"][..],
        &["--rate", "5000"],
        &["--port", "x"],
        &["--nope"],
    ] {
        let out = Command::new(lab).args(args).output().expect("run lab");
        let text = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {text}");
        assert!(text.starts_with("error: "), "{args:?}: {text}");
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_service-a"))
        .parent()
        .expect("the binaries' directory");
    let out = Command::new(lab)
        .args(["--port", &port, "--bin-dir"])
        .arg(bin_dir)
        .output()
        .expect("run lab");
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{text}"
    );
}

#[test]
fn the_lab_serves_its_page_and_a_feed_of_events() {
    let lab = Lab::start();
    let page = common::get(lab.addr, "/");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let html = page.text();
    for needle in [
        "<html",
        "id=\"chart-answers\"",
        "id=\"chart-latency\"",
        "EventSource",
    ] {
        assert!(html.contains(needle), "the page has {needle}");
    }

    let opened = Instant::now();
    let mut feed = Feed::open(lab.addr);
    assert!(
        feed.head.starts_with("HTTP/1.1 200 OK\r\n"),
        "{}",
        feed.head
    );
    let head = feed.head.to_ascii_lowercase();
    assert!(
        head.contains("\r\ncontent-type: text/event-stream\r\n"),
        "{head}"
    );
    assert!(
        head.contains("\r\ntransfer-encoding: chunked\r\n"),
        "{head}"
    );
    let first = feed.event(FIRST_EVENT_WAIT);
    assert!(
        opened.elapsed() < FIRST_EVENT_WAIT,
        "first event after {:?}",
        opened.elapsed()
    );

    let replicas = first["replicas"].as_array().expect("replicas");
    assert_eq!(replicas.len(), 3, "{first}");
    for (n, r) in replicas.iter().enumerate() {
        assert_eq!(r["n"], n + 1);
        assert_eq!(r["process"], "running", "{r}");
        let state = r["state"].as_str().expect("a state");
        assert!(
            [
                "in_rotation",
                "avoided",
                "ejected",
                "unreachable",
                "probation",
                "unknown"
            ]
            .contains(&state),
            "{r}"
        );
        assert!(r["faults"].is_object(), "A's /control answers: {r}");
    }
    assert_eq!(first["b"]["process"], "running", "{first}");
    assert!(first["logs"].is_array(), "{first}");

    // B answers the load, and the events say so.
    let answered = feed.until(CHANGE_WAIT, |e| {
        e["answers"]["total"]["200"].as_u64().is_some_and(|n| n > 0)
    });
    assert!(answered["answers"]["p99_ms"].is_number(), "{answered}");
    assert_eq!(answered["b"]["breaker"], "closed", "{answered}");
}

#[test]
fn a_stopped_replica_leaves_rotation_and_bad_orders_are_refused() {
    let lab = Lab::start();
    let mut feed = Feed::open(lab.addr);
    feed.event(FIRST_EVENT_WAIT);

    for (path, body, says) in [
        ("/load", r#"{"rate":-1}"#, "rate -1"),
        ("/load", r#"{"rate":"fast"}"#, "expected {\"rate\""),
        ("/load", "not json", "JSON object"),
        ("/replicas/1/faults", "[1]", "JSON object"),
        ("/replicas/1/faults", r#"{"tail_rate":2}"#, "tail_rate"),
        ("/replicas/1/faults", r#"{"tail":0.5}"#, "unknown knob"),
    ] {
        let reply = lab.post(path, body);
        assert_eq!(reply.status, 400, "{path} {body}: {}", reply.text());
        let error = reply.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(error.contains(says), "{path} {body}: {error}");
    }
    let form = lab.post_with("/load", r#"{"rate":5}"#, &[("Content-Type", "text/plain")]);
    assert_eq!(form.status, 415, "{}", form.text());
    let foreign = lab.post_with(
        "/replicas/1/stop",
        "{}",
        &[
            ("Content-Type", "application/json"),
            ("Origin", "http://evil.example"),
        ],
    );
    assert_eq!(foreign.status, 403, "{}", foreign.text());
    assert_eq!(lab.post("/replicas/9/stop", "{}").status, 404);
    assert_eq!(common::get(lab.addr, "/load").status, 405);
    assert_eq!(lab.post("/load", r#"{"rate":25}"#).status, 200);

    let stopped = lab.post("/replicas/2/stop", "{}");
    assert_eq!(stopped.status, 200, "{}", stopped.text());
    assert_eq!(stopped.json()["process"], "stopping");
    let out = feed.until(CHANGE_WAIT, |e| {
        let a2 = replica(e, 2);
        a2["process"] == "exited"
            && ["avoided", "ejected", "unreachable"].contains(&a2["state"].as_str().unwrap_or(""))
    });
    assert_eq!(replica(&out, 1)["process"], "running", "{out}");
    assert_eq!(
        lab.post("/replicas/2/stop", "{}").status,
        409,
        "not running"
    );
    assert_eq!(
        lab.post("/replicas/2/faults", "{}").status,
        409,
        "not running"
    );
}

#[test]
fn sigterm_ends_the_feed_with_its_last_chunk_and_every_child() {
    let mut lab = Lab::start();
    let mut feed = Feed::open(lab.addr);
    let first = feed.event(FIRST_EVENT_WAIT);
    let mut pids: Vec<u64> = first["replicas"]
        .as_array()
        .expect("replicas")
        .iter()
        .map(|r| r["pid"].as_u64().expect("a pid"))
        .collect();
    pids.push(first["b"]["pid"].as_u64().expect("B's pid"));

    lab.signal("TERM");
    let end = Instant::now() + EXIT_WAIT;
    while feed.chunk(EXIT_WAIT).is_some() {
        assert!(Instant::now() < end, "the feed did not end");
    }
    let status = loop {
        if let Some(status) = lab.child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            Instant::now() < end,
            "the lab did not exit within {EXIT_WAIT:?}"
        );
        thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "child {pid} outlived the lab"
        );
    }
}
