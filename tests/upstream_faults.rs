//! Service B against every way its upstream can fail: A down, slow, silent, rude, broken,
//! killed and restarted. Each case checks B's status, the contract's 503 body (with the
//! right `error_kind` and a meaningful `error`) and, where the contract implies one, a
//! latency bound.
//!
//! Most cases run B (the real binary) against a fake A from `common::FakeUpstream`; the
//! restart case uses the real `service-a`. Every fake holds a connection for a bounded time.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread;
use std::time::{Duration, Instant};

use common::{FakeUpstream, Reply, Service, get, get_with, read_request_head};

/// Tests in this file run in parallel threads on a small machine. The latency bounds are
/// checked under a shared lock; the one test that floods B with 200 connections takes it
/// alone, so it does not eat the others' CPU (and they do not eat its).
static LOAD: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    LOAD.read().unwrap_or_else(|e| e.into_inner())
}

fn exclusive() -> RwLockWriteGuard<'static, ()> {
    LOAD.write().unwrap_or_else(|e| e.into_inner())
}

/// How long a fake A keeps a connection it does not answer on, at most.
const HOLD: Duration = Duration::from_secs(5);

/// The echo body A would send for `msg`. The tests use plain ASCII without quotes or
/// backslashes, so no JSON escaping is needed.
fn echo_body(msg: &str) -> String {
    format!(r#"{{"echo":"{msg}"}}"#)
}

/// The decoded `msg` parameter of the request line in `head` (`GET /echo?msg=X HTTP/1.1`).
fn msg_of(head: &str) -> String {
    let line = head.lines().next().unwrap_or_default();
    let target = line.split(' ').nth(1).unwrap_or_default();
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let raw = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("msg="))
        .unwrap_or_default();
    percent_decode(raw)
}

/// `+` is a space and `%XX` a byte; enough for the ASCII values these tests use.
fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A complete `200` with a JSON body and a `Content-Length`.
fn json_200(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A well-behaved A: answers every request on the connection with the echo of its `msg`.
fn serve_echo(mut stream: TcpStream) {
    while let Some(head) = read_request_head(&mut stream) {
        if stream
            .write_all(&json_200(&echo_body(&msg_of(&head))))
            .is_err()
        {
            return;
        }
    }
}

/// Keeps the connection open, reading and dropping whatever comes, until the peer closes it
/// or `HOLD` passes.
fn hold_until_closed(mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(HOLD));
    let end = Instant::now() + HOLD;
    let mut buf = [0u8; 1024];
    while Instant::now() < end {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Reads the request, sends `response` as is, then holds the connection open: the only thing
/// that can end the exchange is what B makes of the bytes.
fn answer_then_hold(response: Vec<u8>) -> impl Fn(TcpStream) + Send + Sync + 'static {
    move |mut stream| {
        if read_request_head(&mut stream).is_some() && stream.write_all(&response).is_ok() {
            hold_until_closed(stream);
        }
    }
}

/// `GET target` on B, and how long it took (`common::timed_get`, which must succeed).
fn timed_get(addr: SocketAddr, target: &str) -> (Reply, Duration) {
    common::timed_get(addr, target, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("GET {target} on B: {e}"))
}

/// Checks the contract's 503 body with `kind`, and returns its `error` text.
fn assert_unavailable(reply: &Reply, kind: &str) -> String {
    assert_eq!(
        reply.status,
        503,
        "expected 503 {kind}, got {}: {}",
        reply.status_line,
        reply.text()
    );
    assert_eq!(
        reply.header("content-type"),
        Some("application/json"),
        "{}",
        reply.text()
    );
    let json = reply.json();
    let object = json.as_object().expect("the 503 body is a JSON object");
    assert_eq!(object.len(), 4, "exactly four fields: {json}");
    assert_eq!(json["service_b"], "ok", "{json}");
    assert_eq!(json["service_a"], "unavailable", "{json}");
    assert_eq!(json["error_kind"], kind, "{json}");
    let error = json["error"]
        .as_str()
        .expect("error is a string")
        .to_owned();
    assert!(
        error.trim().len() > 10,
        "error text is not meaningful: {error:?}"
    );
    error
}

/// Checks B's 200 with A's echo of `msg` inside.
fn assert_echoed(reply: &Reply, msg: &str) {
    assert_eq!(reply.status, 200, "{}: {}", reply.status_line, reply.text());
    assert_eq!(
        reply.json(),
        serde_json::json!({"service_b": "ok", "service_a": {"echo": msg}})
    );
}

/// Starts the real `service-a` on a given port, waiting up to 2 s for the port to be free.
fn spawn_a_on(port: u16) -> Service {
    let end = Instant::now() + Duration::from_secs(2);
    while TcpListener::bind(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "port {port} still busy after 2 s");
        thread::sleep(Duration::from_millis(20));
    }
    let mut command = Command::new(env!("CARGO_BIN_EXE_service-a"));
    command
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let service = Service::spawn(command);
    assert_eq!(service.addr.port(), port);
    service
}

/// Runs `per_thread` requests on each of `threads` threads at once; every reply.
fn concurrent_gets(addr: SocketAddr, threads: usize, per_thread: usize) -> Vec<Reply> {
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                (0..per_thread)
                    .map(|i| get(addr, &format!("/call-echo?msg=t{t}r{i}")))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().expect("client thread"))
        .collect()
}

// ---------------------------------------------------------------------------------------
// A unreachable or silent
// ---------------------------------------------------------------------------------------

#[test]
fn a_not_running_is_connect_fast() {
    let _load = shared();
    let (_refusing, nobody) = common::refusing_port();
    let b = Service::b(&format!("http://{nobody}"), &[]);
    let (reply, took) = timed_get(b.addr, "/call-echo?msg=hi");
    let error = assert_unavailable(&reply, "connect");
    assert!(error.contains("connect"), "{error}");
    assert!(took < Duration::from_millis(200), "took {took:?}");
}

#[test]
fn b_health_is_ok_while_a_is_down() {
    let _load = shared();
    let (_refusing, nobody) = common::refusing_port();
    let b = Service::b(&format!("http://{nobody}"), &[]);
    assert_unavailable(&get(b.addr, "/call-echo?msg=x"), "connect");
    let health = get(b.addr, "/health");
    assert_eq!(health.status, 200);
    assert_eq!(health.json(), serde_json::json!({"status": "ok"}));
}

#[test]
fn a_accepts_and_reads_nothing_is_timeout() {
    let _load = shared();
    let a = FakeUpstream::start(hold_until_closed_without_reading);
    let b = Service::b(&a.url(), &[]);
    let (reply, took) = timed_get(b.addr, "/call-echo?msg=hi");
    let error = assert_unavailable(&reply, "timeout");
    assert_timeout_text(&error);
    assert_deadline_latency(took);
}

/// Holds the connection without reading a byte, until `HOLD` passes or the peer resets it.
fn hold_until_closed_without_reading(stream: TcpStream) {
    let end = Instant::now() + HOLD;
    while Instant::now() < end {
        // `peek` does not consume: the request stays unread in the socket.
        let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
        let mut byte = [0u8; 1];
        if let Err(e) = stream.peek(&mut byte)
            && e.kind() != std::io::ErrorKind::WouldBlock
            && e.kind() != std::io::ErrorKind::TimedOut
        {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_reads_and_never_answers_is_timeout() {
    let _load = shared();
    let a = FakeUpstream::start(|mut stream| {
        if read_request_head(&mut stream).is_some() {
            hold_until_closed(stream);
        }
    });
    let b = Service::b(&a.url(), &[]);
    let (reply, took) = timed_get(b.addr, "/call-echo?msg=hi");
    let error = assert_unavailable(&reply, "timeout");
    assert_timeout_text(&error);
    assert_deadline_latency(took);
}

/// The timeout text names the phase and the budget in ms.
fn assert_timeout_text(error: &str) {
    assert!(
        error.contains("waiting for the response head"),
        "timeout text does not name the phase: {error}"
    );
    assert!(
        error.contains("1000 ms"),
        "timeout text does not name the deadline: {error}"
    );
}

/// B's default deadline is 1 s; its 503 must come after it, and not much later.
fn assert_deadline_latency(took: Duration) {
    assert!(
        took >= Duration::from_millis(1000) && took <= Duration::from_millis(1500),
        "took {took:?}, expected 1.0–1.5 s"
    );
}

#[test]
fn a_trickles_its_head_is_timeout_over_the_whole_exchange() {
    let _load = shared();
    let a = FakeUpstream::start(|mut stream| {
        let Some(head) = read_request_head(&mut stream) else {
            return;
        };
        let response = json_200(&echo_body(&msg_of(&head)));
        for byte in response {
            if stream.write_all(&[byte]).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(200));
        }
    });
    let b = Service::b(&a.url(), &[]);
    let (reply, took) = timed_get(b.addr, "/call-echo?msg=hi");
    let error = assert_unavailable(&reply, "timeout");
    assert_timeout_text(&error);
    assert_deadline_latency(took);
}

#[test]
fn two_hundred_concurrent_calls_to_a_silent_a_all_time_out_together() {
    let _load = exclusive();
    let a = FakeUpstream::start(|mut stream| {
        if read_request_head(&mut stream).is_some() {
            hold_until_closed(stream);
        }
    });
    let b = Service::b(&a.url(), &[]);
    const CLIENTS: usize = 200;
    let barrier = Arc::new(Barrier::new(CLIENTS + 1));
    let addr = b.addr;
    let handles: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                get(addr, &format!("/call-echo?msg=c{i}"))
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let replies: Vec<Reply> = handles
        .into_iter()
        .map(|h| h.join().expect("client thread"))
        .collect();
    let took = start.elapsed();
    for reply in &replies {
        let error = assert_unavailable(reply, "timeout");
        assert!(error.contains("1000 ms"), "{error}");
    }
    assert_eq!(replies.len(), CLIENTS);
    assert!(
        took < Duration::from_secs(3),
        "200 calls took {took:?} in total"
    );
    let health = get(b.addr, "/health");
    assert_eq!(health.status, 200, "B is still healthy");
}

// ---------------------------------------------------------------------------------------
// A answers, but not with something B can pass on
// ---------------------------------------------------------------------------------------

#[test]
fn a_answers_500_is_upstream_status() {
    let _load = shared();
    let body = r#"{"error":"boom"}"#;
    let response = format!(
        "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let a = FakeUpstream::start(answer_then_hold(response.into_bytes()));
    let b = Service::b(&a.url(), &[]);
    let (reply, _) = timed_get(b.addr, "/call-echo?msg=hi");
    let error = assert_unavailable(&reply, "upstream_status");
    assert!(error.contains("500"), "status not in the error: {error}");
}

fn assert_bad_json_body(body: &str) {
    let a = FakeUpstream::start(answer_then_hold(json_200(body)));
    let b = Service::b(&a.url(), &[]);
    let (reply, took) = timed_get(b.addr, "/call-echo?msg=hi");
    let error = assert_unavailable(&reply, "bad_response");
    assert!(
        error.to_lowercase().contains("json"),
        "the error should say the body is not (usable) JSON: {error}"
    );
    assert!(took < Duration::from_millis(1000), "took {took:?}");
}

#[test]
fn a_answers_200_not_json_is_bad_response() {
    let _load = shared();
    assert_bad_json_body("not json");
}

#[test]
fn a_answers_200_json_array_is_bad_response() {
    let _load = shared();
    assert_bad_json_body(r#"[{"echo":"hi"}]"#);
}

#[test]
fn a_answers_200_json_string_is_bad_response() {
    let _load = shared();
    assert_bad_json_body(r#""hi""#);
}

#[test]
fn a_closes_before_content_length_is_complete_is_closed() {
    let _load = shared();
    let a = FakeUpstream::start(|mut stream| {
        if read_request_head(&mut stream).is_some() {
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{\"echo\":\"",
            );
            let _ = stream.flush();
        }
        // Dropping the stream closes it: 10 of 50 body bytes were sent.
    });
    let b = Service::b(&a.url(), &[]);
    let (reply, took) = timed_get(b.addr, "/call-echo?msg=hi");
    let error = assert_unavailable(&reply, "closed");
    assert!(error.contains("closed"), "{error}");
    assert!(took < Duration::from_millis(1000), "took {took:?}");
}

#[test]
fn a_speaks_something_else_than_http_is_bad_response() {
    let _load = shared();
    let a = FakeUpstream::start(answer_then_hold(b"SSH-2.0-x\r\n".to_vec()));
    let b = Service::b(&a.url(), &[]);
    let (reply, took) = timed_get(b.addr, "/call-echo?msg=hi");
    let error = assert_unavailable(&reply, "bad_response");
    assert!(error.contains("malformed"), "{error}");
    assert!(took < Duration::from_millis(1000), "took {took:?}");
}

#[test]
fn a_response_head_over_16k_is_bad_response() {
    let _load = shared();
    let mut response = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n".to_vec();
    for i in 0..20 {
        response.extend_from_slice(format!("X-Pad-{i}: {}\r\n", "a".repeat(1000)).as_bytes());
    }
    response.extend_from_slice(b"Content-Length: 13\r\n\r\n{\"echo\":\"hi\"}");
    assert!(response.len() > 16 * 1024);
    let a = FakeUpstream::start(answer_then_hold(response));
    let b = Service::b(&a.url(), &[]);
    let (reply, took) = timed_get(b.addr, "/call-echo?msg=hi");
    let error = assert_unavailable(&reply, "bad_response");
    assert!(error.contains("head"), "{error}");
    assert!(took < Duration::from_millis(1000), "took {took:?}");
}

#[test]
fn a_body_over_64k_by_content_length_is_bad_response() {
    let _load = shared();
    let mut response =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
            .to_vec();
    response.extend(std::iter::repeat_n(b' ', 100_000));
    let a = FakeUpstream::start(answer_then_hold(response));
    let b = Service::b(&a.url(), &[]);
    let (reply, took) = timed_get(b.addr, "/call-echo?msg=hi");
    let error = assert_unavailable(&reply, "bad_response");
    assert!(error.contains("body"), "{error}");
    assert!(took < Duration::from_millis(1000), "took {took:?}");
}

#[test]
fn a_chunked_body_over_64k_is_bad_response() {
    let _load = shared();
    let mut response =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    for _ in 0..25 {
        response.extend_from_slice(b"1000\r\n");
        response.extend(std::iter::repeat_n(b' ', 0x1000));
        response.extend_from_slice(b"\r\n");
    }
    response.extend_from_slice(b"0\r\n\r\n");
    let a = FakeUpstream::start(answer_then_hold(response));
    let b = Service::b(&a.url(), &[]);
    let (reply, took) = timed_get(b.addr, "/call-echo?msg=hi");
    let error = assert_unavailable(&reply, "bad_response");
    assert!(error.contains("body"), "{error}");
    assert!(took < Duration::from_millis(1000), "took {took:?}");
}

// ---------------------------------------------------------------------------------------
// A answers in unusual but valid ways
// ---------------------------------------------------------------------------------------

#[test]
fn a_chunked_with_extension_and_trailer_is_ok() {
    let _load = shared();
    let a = FakeUpstream::start(|mut stream| {
        while let Some(head) = read_request_head(&mut stream) {
            let body = echo_body(&msg_of(&head));
            let (first, rest) = body.split_at(7);
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
                 7;ext=1\r\n{first}\r\n{:x}\r\n{rest}\r\n0\r\nX-T: y\r\n\r\n",
                rest.len()
            );
            if stream.write_all(response.as_bytes()).is_err() {
                return;
            }
        }
    });
    let b = Service::b(&a.url(), &[]);
    assert_echoed(&get(b.addr, "/call-echo?msg=chunky"), "chunky");
    // The connection was kept: a second call on it must work the same.
    assert_echoed(&get(b.addr, "/call-echo?msg=again"), "again");
}

#[test]
fn a_http10_body_ended_by_close_is_ok() {
    let _load = shared();
    let a = FakeUpstream::start(|mut stream| {
        if let Some(head) = read_request_head(&mut stream) {
            let response = format!(
                "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{}",
                echo_body(&msg_of(&head))
            );
            let _ = stream.write_all(response.as_bytes());
        }
        // Dropping the stream ends the body.
    });
    let b = Service::b(&a.url(), &[]);
    for msg in ["old", "school", "http"] {
        assert_echoed(&get(b.addr, &format!("/call-echo?msg={msg}")), msg);
    }
}

#[test]
fn a_transfer_encoding_not_ending_in_chunked_is_bad_response() {
    // RFC 9112 §6.3: such a body runs to the close, but it is still coded, and B decodes no
    // coding but chunked. Passing the bytes on as A's JSON would be wrong even when they parse.
    let _load = shared();
    for coding in ["chunked, identity", "deflate", "x-custom"] {
        let a = FakeUpstream::start(move |mut stream| {
            if read_request_head(&mut stream).is_some() {
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                     Transfer-Encoding: {coding}\r\n\r\n{}",
                    echo_body("coded")
                );
                let _ = stream.write_all(response.as_bytes());
            }
            // Dropping the stream ends the body.
        });
        let b = Service::b(&a.url(), &[]);
        let (reply, took) = timed_get(b.addr, "/call-echo?msg=coded");
        let error = assert_unavailable(&reply, "bad_response");
        assert!(error.contains("transfer coding"), "{coding}: {error}");
        assert!(error.contains(coding), "{coding}: {error}");
        assert!(
            took < Duration::from_millis(1000),
            "{coding}: took {took:?}"
        );
    }
}

#[test]
fn a_transfer_encoding_not_ending_in_chunked_is_refused_without_waiting_for_the_close() {
    let _load = shared();
    let a = FakeUpstream::start(answer_then_hold(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: deflate\r\n\r\n{\"echo\":\"x\"}".to_vec(),
    ));
    let b = Service::b(&a.url(), &[]);
    let (reply, took) = timed_get(b.addr, "/call-echo?msg=x");
    assert_unavailable(&reply, "bad_response");
    assert!(took < Duration::from_millis(500), "took {took:?}");
}

#[test]
fn a_folded_response_header_is_unfolded_and_the_call_succeeds() {
    // RFC 9112 §5.2: a user agent replaces obs-fold with SP before interpreting the field.
    // Content-Type is folded too, and Content-Length after it still frames the body.
    let _load = shared();
    let a = FakeUpstream::start(|mut stream| {
        while let Some(head) = read_request_head(&mut stream) {
            let body = echo_body(&msg_of(&head));
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type:\r\n application/json\r\n\
                 X-Folded: one\r\n two\r\n\tthree\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if stream.write_all(response.as_bytes()).is_err() {
                return;
            }
        }
    });
    let b = Service::b(&a.url(), &[]);
    assert_echoed(&get(b.addr, "/call-echo?msg=folded"), "folded");
    assert_echoed(&get(b.addr, "/call-echo?msg=again"), "again");
}

#[test]
fn a_http_1_2_status_line_is_read_as_http_1_1() {
    // RFC 9110 §6.2: a higher minor version is processed as the highest we conform to.
    // As 1.1, the connection is kept alive and reused for the second call.
    let _load = shared();
    let a = FakeUpstream::start(|mut stream| {
        while let Some(head) = read_request_head(&mut stream) {
            let body = echo_body(&msg_of(&head));
            let response = format!(
                "HTTP/1.2 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if stream.write_all(response.as_bytes()).is_err() {
                return;
            }
        }
    });
    let b = Service::b(&a.url(), &[]);
    assert_echoed(&get(b.addr, "/call-echo?msg=minor"), "minor");
    assert_echoed(&get(b.addr, "/call-echo?msg=two"), "two");
}

#[test]
fn a_chunk_extension_with_an_unterminated_quoted_string_is_bad_response_at_once() {
    // RFC 9112 §7.1.1: chunk-ext-val = token / quoted-string. The size line has ended, so
    // the string never will: no reason to wait for the deadline.
    let _load = shared();
    let a = FakeUpstream::start(answer_then_hold(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
          5;a=\"abc\r\n{\"e\":\r\n"
            .to_vec(),
    ));
    let b = Service::b(&a.url(), &[]);
    let (reply, took) = timed_get(b.addr, "/call-echo?msg=x");
    let error = assert_unavailable(&reply, "bad_response");
    assert!(error.contains("quoted string"), "{error}");
    assert!(took < Duration::from_millis(500), "took {took:?}");
}

#[test]
fn whitespace_after_a_chunk_size_is_bad_response_at_once() {
    // RFC 9112 §7.1: BWS comes only before a chunk extension's `;`. The same decoder reads
    // requests on A and responses in B, so B refuses `5 ` just as A does.
    let _load = shared();
    let a = FakeUpstream::start(answer_then_hold(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
          5 \r\n{\"e\":\r\n0\r\n\r\n"
            .to_vec(),
    ));
    let b = Service::b(&a.url(), &[]);
    let (reply, took) = timed_get(b.addr, "/call-echo?msg=x");
    let error = assert_unavailable(&reply, "bad_response");
    assert!(
        error.contains("whitespace at the end of a chunk-size line"),
        "{error}"
    );
    assert!(took < Duration::from_millis(500), "took {took:?}");
}

#[test]
fn chunked_applied_twice_is_bad_response_at_once() {
    // RFC 9112 §6.1: a sender MUST NOT apply chunked more than once.
    let _load = shared();
    let a = FakeUpstream::start(answer_then_hold(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
          Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
            .to_vec(),
    ));
    let b = Service::b(&a.url(), &[]);
    let (reply, took) = timed_get(b.addr, "/call-echo?msg=x");
    let error = assert_unavailable(&reply, "bad_response");
    assert!(error.contains("chunked more than once"), "{error}");
    assert!(took < Duration::from_millis(500), "took {took:?}");
}

#[test]
fn a_half_a_second_late_is_ok() {
    let _load = shared();
    let a = FakeUpstream::start(|mut stream| {
        while let Some(head) = read_request_head(&mut stream) {
            thread::sleep(Duration::from_millis(500));
            if stream
                .write_all(&json_200(&echo_body(&msg_of(&head))))
                .is_err()
            {
                return;
            }
        }
    });
    let b = Service::b(&a.url(), &[]);
    let (reply, took) = timed_get(b.addr, "/call-echo?msg=late");
    assert_echoed(&reply, "late");
    assert!(took >= Duration::from_millis(500), "took {took:?}");
}

#[test]
fn encoded_msg_reaches_a_decoded_the_same() {
    let _load = shared();
    let a = FakeUpstream::start(serve_echo);
    let b = Service::b(&a.url(), &[]);
    assert_echoed(&get(b.addr, "/call-echo?msg=two+words"), "two words");
    assert_echoed(&get(b.addr, "/call-echo?msg=a%2Cb"), "a,b");
}

// ---------------------------------------------------------------------------------------
// Kept-alive connections that A closed
// ---------------------------------------------------------------------------------------

#[test]
fn a_killed_and_restarted_on_the_same_port_never_shows_a_503() {
    let _load = shared();
    let a = Service::a(&[]);
    let port = a.addr.port();
    let b = Service::b(&a.url(), &[]);
    // Several connections at once, so B pools more than one.
    for reply in concurrent_gets(b.addr, 6, 3) {
        assert_eq!(reply.status, 200, "before the restart: {}", reply.text());
    }
    assert_echoed(&get(b.addr, "/call-echo?msg=warm"), "warm");

    drop(a); // SIGKILL, and reaped: every pooled connection of B is now dead.
    let health = get(b.addr, "/health");
    assert_eq!(health.status, 200, "B is healthy while A is down");

    let restart = Instant::now();
    let _a = spawn_a_on(port);
    let first = get(b.addr, "/call-echo?msg=first");
    let back_after = restart.elapsed();
    assert_echoed(&first, "first");
    assert!(
        back_after < Duration::from_secs(2),
        "200 again only after {back_after:?}"
    );
    for i in 0..20 {
        let msg = format!("seq{i}");
        let reply = get(b.addr, &format!("/call-echo?msg={msg}"));
        assert_echoed(&reply, &msg);
    }
    // Concurrent calls check out the other stale connections still in the pool.
    for reply in concurrent_gets(b.addr, 6, 3) {
        assert_eq!(reply.status, 200, "after the restart: {}", reply.text());
    }
}

#[test]
fn a_closing_every_kept_alive_connection_after_answering_never_shows_a_503() {
    let _load = shared();
    let (closed_tx, closed) = mpsc::channel();
    let closed_tx = Mutex::new(closed_tx);
    let a = FakeUpstream::start(move |mut stream| {
        if let Some(head) = read_request_head(&mut stream) {
            // HTTP/1.1, no `Connection: close`: B may well pool this connection.
            let _ = stream.write_all(&json_200(&echo_body(&msg_of(&head))));
        }
        drop(stream);
        let _ = closed_tx.lock().expect("closed_tx").send(());
    });
    let b = Service::b(&a.url(), &[]);
    let mut closes = 0;
    for i in 0..20 {
        let msg = format!("n{i}");
        assert_echoed(&get(b.addr, &format!("/call-echo?msg={msg}")), &msg);
        // After odd calls, the next call starts only once A has closed every connection so
        // far (the FIN is on its way); after even ones it races the FIN. Neither may show.
        if i % 2 == 1 {
            while closes < i + 1 {
                closed
                    .recv_timeout(HOLD)
                    .unwrap_or_else(|_| panic!("the fake A closed only {closes} connections"));
                closes += 1;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The deadline in every phase, and unreachable addresses
// ---------------------------------------------------------------------------------------

#[test]
fn timeout_ms_300_times_out_at_about_300_ms() {
    let _load = shared();
    let a = FakeUpstream::start(|mut stream| {
        if read_request_head(&mut stream).is_some() {
            hold_until_closed(stream);
        }
    });
    let b = Service::b(&a.url(), &["--timeout-ms", "300"]);
    let (reply, took) = timed_get(b.addr, "/call-echo?msg=hi");
    let error = assert_unavailable(&reply, "timeout");
    assert!(error.contains("deadline of 300 ms"), "{error}");
    assert!(
        (Duration::from_millis(300)..Duration::from_millis(800)).contains(&took),
        "took {took:?}, expected about 300 ms"
    );
}

#[test]
fn a_stalls_in_the_middle_of_the_body_is_timeout_in_the_body_phase() {
    let _load = shared();
    // The head and 5 of 20 body bytes, then nothing.
    let a = FakeUpstream::start(answer_then_hold(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n{\"ech"
            .to_vec(),
    ));
    let b = Service::b(&a.url(), &[]);
    let (reply, took) = timed_get(b.addr, "/call-echo?msg=hi");
    let error = assert_unavailable(&reply, "timeout");
    assert!(
        error.contains("while reading the response body"),
        "the phase is the body: {error}"
    );
    assert_deadline_latency(took);
}

#[test]
fn an_unreachable_a_is_connect_at_once() {
    let _load = shared();
    // The kernel refuses a TCP connection to a multicast address at once ("Network is
    // unreachable"), on any machine, with or without routes.
    let b = Service::b("http://224.0.0.1:80", &[]);
    let (reply, took) = timed_get(b.addr, "/call-echo?msg=hi");
    let error = assert_unavailable(&reply, "connect");
    assert!(error.contains("unreachable"), "{error}");
    assert!(took < Duration::from_millis(500), "took {took:?}");
}

/// A reset is `connect` only while connecting: on Linux a reset answering the handshake's
/// SYN is what "connection refused" is (the refused tests above), and a reset that arrives
/// before B has seen its connection open is reported by the connect too. Once A has the
/// request, a reset ends an exchange under way: `closed`, as the table in docs/contract.md says.
#[test]
fn a_reset_after_a_read_the_request_is_closed() {
    let _load = shared();
    let a = FakeUpstream::start(|mut stream| {
        if read_request_head(&mut stream).is_some() {
            // SO_LINGER 0: closing sends a reset instead of the usual goodbye.
            socket2::SockRef::from(&stream)
                .set_linger(Some(Duration::ZERO))
                .expect("set SO_LINGER");
        }
    });
    let b = Service::b(&a.url(), &[]);
    let (reply, took) = timed_get(b.addr, "/call-echo?msg=hi");
    let error = assert_unavailable(&reply, "closed");
    assert!(error.contains("reset"), "{error}");
    assert!(took < Duration::from_millis(500), "took {took:?}");
}

// ---------------------------------------------------------------------------------------
// Which connections to A are used again
// ---------------------------------------------------------------------------------------

/// A fake A that numbers its connections (from 0) and records, for each request, the
/// connection it came on. `answer(connection, request_on_it)` gives the bytes to send back,
/// or `None` to close the connection without answering. After an answer with
/// `Connection: close` or one delimited by the close, it closes only its sending side and
/// keeps reading: a B that wrongly sent another request on that connection is seen.
fn counting_upstream(
    answer: impl Fn(usize, usize) -> Option<Vec<u8>> + Send + Sync + 'static,
) -> (FakeUpstream, Arc<Mutex<Vec<usize>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let upstream = FakeUpstream::start(move |mut stream| {
        let connection = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut on_it = 0;
        let mut done_sending = false;
        while read_request_head(&mut stream).is_some() {
            record.lock().expect("record").push(connection);
            if done_sending {
                continue;
            }
            let Some(bytes) = answer(connection, on_it) else {
                return;
            };
            on_it += 1;
            let text = String::from_utf8_lossy(&bytes).to_lowercase();
            if stream.write_all(&bytes).is_err() {
                return;
            }
            if text.contains("connection: close") || !text.contains("content-length") {
                let _ = stream.shutdown(std::net::Shutdown::Write);
                done_sending = true;
            }
        }
    });
    (upstream, seen)
}

/// The connection each request came on, in order.
fn connections(seen: &Mutex<Vec<usize>>) -> Vec<usize> {
    seen.lock().expect("record").clone()
}

#[test]
fn a_kept_alive_connection_is_used_for_the_next_calls() {
    let _load = shared();
    let (a, seen) = counting_upstream(|_, _| Some(json_200(&echo_body("k"))));
    let b = Service::b(&a.url(), &[]);
    for _ in 0..3 {
        assert_echoed(&get(b.addr, "/call-echo?msg=k"), "k");
    }
    assert_eq!(connections(&seen), [0, 0, 0], "three calls, one connection");
}

#[test]
fn a_connection_a_answered_with_connection_close_is_not_used_again() {
    let _load = shared();
    let body = echo_body("c");
    let (a, seen) = counting_upstream(move |_, _| {
        Some(
            format!(
                "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        )
    });
    let b = Service::b(&a.url(), &[]);
    for _ in 0..3 {
        assert_echoed(&get(b.addr, "/call-echo?msg=c"), "c");
    }
    assert_eq!(
        connections(&seen),
        [0, 1, 2],
        "a new connection for each call"
    );
}

#[test]
fn a_connection_whose_body_ended_at_the_close_is_not_used_again() {
    let _load = shared();
    // HTTP/1.1 without Content-Length or chunked: the body runs to the close.
    let (a, seen) = counting_upstream(|_, _| {
        Some(format!("HTTP/1.1 200 OK\r\n\r\n{}", echo_body("u")).into_bytes())
    });
    let b = Service::b(&a.url(), &[]);
    for _ in 0..3 {
        assert_echoed(&get(b.addr, "/call-echo?msg=u"), "u");
    }
    assert_eq!(
        connections(&seen),
        [0, 1, 2],
        "a new connection for each call"
    );
}

#[test]
fn bad_framing_from_a_is_bad_response_and_the_connection_is_dropped() {
    let _load = shared();
    // The first answer has both Content-Length and Transfer-Encoding: where it ends is in
    // doubt, so nothing after it on that connection can be trusted. A would keep it open.
    let (a, seen) = counting_upstream(|connection, _| {
        Some(if connection == 0 {
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}".to_vec()
        } else {
            json_200(&echo_body("f"))
        })
    });
    let b = Service::b(&a.url(), &[]);
    let (reply, _) = timed_get(b.addr, "/call-echo?msg=f");
    assert_unavailable(&reply, "bad_response");
    assert_echoed(&get(b.addr, "/call-echo?msg=f"), "f");
    assert_eq!(
        connections(&seen),
        [0, 1],
        "the call after the bad answer came on a new connection"
    );
}

#[test]
fn a_stale_pooled_connection_is_retried_once_and_only_once() {
    let _load = shared();
    // Connection 0 answers once, then closes on the next request without a word: to B, a
    // pooled connection that turned out dead. Every later connection does the same at once.
    // B retries on one new connection; when that fails too, the call fails (`closed`).
    let (a, seen) = counting_upstream(|connection, on_it| {
        ((connection, on_it) == (0, 0)).then(|| json_200(&echo_body("o")))
    });
    let b = Service::b(&a.url(), &[]);
    assert_echoed(&get(b.addr, "/call-echo?msg=o"), "o");
    let (reply, _) = timed_get(b.addr, "/call-echo?msg=o");
    assert_unavailable(&reply, "closed");
    assert_eq!(
        connections(&seen),
        [0, 0, 1],
        "the second call: on the pooled connection, then once on a new one"
    );
}

#[test]
fn a_stale_pooled_connection_is_retried_within_the_same_deadline() {
    let _load = shared();
    // Connection 0 answers once, then takes the next request and closes without a word,
    // 600 ms later. The retry's connection (1) never answers. One deadline for both: a 503
    // timeout 1 s after the call started, not 1 s after the retry did (1.6 s).
    let (a, seen) = counting_upstream(|connection, on_it| match (connection, on_it) {
        (0, 0) => Some(json_200(&echo_body("s"))),
        (0, _) => {
            thread::sleep(Duration::from_millis(600));
            None
        }
        _ => {
            thread::sleep(HOLD);
            None
        }
    });
    let b = Service::b(&a.url(), &[]);
    assert_echoed(&get(b.addr, "/call-echo?msg=s"), "s");
    let (reply, took) = timed_get(b.addr, "/call-echo?msg=s");
    assert_unavailable(&reply, "timeout");
    assert_deadline_latency(took);
    assert_eq!(
        connections(&seen),
        [0, 0, 1],
        "the second call: on the pooled connection, then once on a new one"
    );
}

// ---------------------------------------------------------------------------------------
// What B passes on and logs
// ---------------------------------------------------------------------------------------

#[test]
fn x_request_id_reaches_a() {
    let _load = shared();
    let (a, heads) = common::recording_upstream(|head| json_200(&echo_body(&msg_of(head))));
    let b = Service::b(&a.url(), &[]);
    let id = "faults-test-id-42";
    let reply = get_with(b.addr, "/call-echo?msg=rid", &[("X-Request-Id", id)]);
    assert_echoed(&reply, "rid");
    assert_eq!(reply.header("x-request-id"), Some(id));
    // B answered only after A did: the head is recorded.
    let head = heads.lock().expect("heads")[0].clone();
    let forwarded = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("x-request-id"))
        .map(|(_, value)| value.trim().to_owned());
    assert_eq!(forwarded.as_deref(), Some(id), "head A read: {head:?}");
    assert!(
        head.starts_with("GET /echo?msg=rid HTTP/1.1\r\n"),
        "{head:?}"
    );
}

#[test]
fn a_failure_is_logged_as_a_warning_with_kind_and_text() {
    let _load = shared();
    let body = r#"{"error":"boom"}"#;
    let response = format!(
        "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let a = FakeUpstream::start(answer_then_hold(response.into_bytes()));
    let b = Service::b(&a.url(), &[]);
    let id = "faults-log-id-7";
    let reply = get_with(b.addr, "/call-echo?msg=log", &[("X-Request-Id", id)]);
    let error = assert_unavailable(&reply, "upstream_status");
    let line = b
        .wait_for_log("error_kind=upstream_status", Duration::from_secs(2))
        .unwrap_or_else(|| panic!("no warn line for the failure: {:?}", b.logs()));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("status=503"), "{line}");
    assert!(line.contains("endpoint=/call-echo"), "{line}");
    assert!(line.contains(&format!("request_id={id}")), "{line}");
    assert!(line.contains("error=\""), "{line}");
    assert!(
        line.contains(&format!("error={:?}", error)),
        "the logged error is the one in the body ({error:?}): {line}"
    );
}

#[test]
fn msg_parsing_helper() {
    assert_eq!(msg_of("GET /echo?msg=hi HTTP/1.1\r\n\r\n"), "hi");
    assert_eq!(msg_of("GET /echo?x=1&msg=a+b%21 HTTP/1.1\r\n"), "a b!");
    assert_eq!(msg_of("GET /echo HTTP/1.1\r\n"), "");
}
