//! HTTP/1.x connection handling of service A, in raw bytes over real sockets: keep-alive,
//! pipelining, slow writers, `Connection: close`, HTTP/1.0, request bodies on GET, and
//! `Expect: 100-continue`.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use common::{IO_TIMEOUT, Reply, Service, closed_within, connect, read_replies, read_reply};
use serde_json::json;

/// How long we give the server to close a connection it said it would close.
const CLOSE_WAIT: Duration = Duration::from_secs(3);
/// How long we watch a connection that should stay open. A kept-alive connection's idle
/// timeout is far longer, so a close within this window is a bug, not a timeout.
const OPEN_WATCH: Duration = Duration::from_millis(300);

fn get_echo(msg: &str) -> String {
    format!("GET /echo?msg={msg} HTTP/1.1\r\nHost: test\r\n\r\n")
}

fn assert_echo(reply: &Reply, expected: &str) {
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("Content-Type"), Some("application/json"));
    assert_eq!(
        reply.header("Content-Length"),
        Some(reply.body.len().to_string().as_str()),
        "{reply:?}"
    );
    assert_eq!(reply.json(), json!({ "echo": expected }), "{reply:?}");
}

/// The connection is still open: nothing closes it for a moment, and it still answers.
fn assert_still_open(stream: &mut TcpStream, probe: &str) {
    assert!(
        !closed_within(stream, OPEN_WATCH),
        "the server closed a connection that should stay open"
    );
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream
        .write_all(get_echo(probe).as_bytes())
        .expect("write on the kept-alive connection");
    let reply = read_reply(stream, false);
    assert_echo(&reply, probe);
}

#[test]
fn three_requests_on_one_kept_alive_connection() {
    let a = Service::a(&[]);
    let mut stream = connect(a.addr);
    for msg in ["one", "two", "three"] {
        stream.write_all(get_echo(msg).as_bytes()).expect("write");
        let reply = read_reply(&mut stream, false);
        assert_echo(&reply, msg);
        assert_ne!(
            reply.header("Connection"),
            Some("close"),
            "no close on a kept-alive HTTP/1.1 connection: {reply:?}"
        );
    }
    assert_still_open(&mut stream, "four");
}

#[test]
fn three_pipelined_requests_in_one_write_are_answered_in_order() {
    let a = Service::a(&[]);
    let mut stream = connect(a.addr);
    let msgs = ["alpha", "beta", "gamma"];
    let all: String = msgs.iter().map(|m| get_echo(m)).collect();
    stream.write_all(all.as_bytes()).expect("write");
    let replies = read_replies(&mut stream, msgs.len());
    for (reply, msg) in replies.iter().zip(msgs) {
        assert_echo(reply, msg);
    }
    assert_still_open(&mut stream, "delta");
}

#[test]
fn a_request_written_one_byte_at_a_time_is_answered() {
    let a = Service::a(&[]);
    let mut stream = connect(a.addr);
    stream.set_nodelay(true).expect("nodelay");
    let request = "GET /echo?msg=slow HTTP/1.1\r\nHost: test\r\nX-Request-Id: slow-1\r\n\r\n";
    for byte in request.as_bytes() {
        stream.write_all(&[*byte]).expect("write one byte");
        stream.flush().expect("flush");
        thread::sleep(Duration::from_millis(2));
    }
    let reply = read_reply(&mut stream, false);
    assert_echo(&reply, "slow");
    assert_eq!(reply.header("X-Request-Id"), Some("slow-1"));
}

#[test]
fn connection_close_is_honoured() {
    let a = Service::a(&[]);
    let mut stream = connect(a.addr);
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .expect("write");
    let reply = read_reply(&mut stream, false);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json(), json!({"status": "ok"}));
    assert_eq!(reply.header("Connection"), Some("close"), "{reply:?}");
    assert!(
        closed_within(&mut stream, CLOSE_WAIT),
        "the server keeps a connection open after Connection: close"
    );
}

#[test]
fn http10_without_host_gets_http10_and_is_closed() {
    let a = Service::a(&[]);
    let mut stream = connect(a.addr);
    stream
        .write_all(b"GET /echo?msg=old HTTP/1.0\r\n\r\n")
        .expect("write");
    let reply = read_reply(&mut stream, false);
    assert!(
        reply.status_line.starts_with("HTTP/1.0 200"),
        "status line {:?}",
        reply.status_line
    );
    assert_echo(&reply, "old");
    assert_ne!(
        reply.header("Connection").map(str::to_ascii_lowercase),
        Some("keep-alive".to_owned()),
        "{reply:?}"
    );
    assert!(
        closed_within(&mut stream, CLOSE_WAIT),
        "an HTTP/1.0 connection without keep-alive is closed after the response"
    );
}

#[test]
fn http10_with_keep_alive_stays_open() {
    let a = Service::a(&[]);
    let mut stream = connect(a.addr);
    for msg in ["first", "second"] {
        let request = format!("GET /echo?msg={msg} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        stream.write_all(request.as_bytes()).expect("write");
        let reply = read_reply(&mut stream, false);
        assert!(
            reply.status_line.starts_with("HTTP/1.0 200"),
            "status line {:?}",
            reply.status_line
        );
        assert_echo(&reply, msg);
        assert_eq!(
            reply.header("Connection").map(str::to_ascii_lowercase),
            Some("keep-alive".to_owned()),
            "{reply:?}"
        );
    }
    assert!(
        !closed_within(&mut stream, OPEN_WATCH),
        "the server closed an HTTP/1.0 keep-alive connection"
    );
}

#[test]
fn a_content_length_body_is_skipped_before_the_next_pipelined_request() {
    let a = Service::a(&[]);
    let mut stream = connect(a.addr);
    let bytes = "GET /echo?msg=with-body HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello\
                 GET /echo?msg=after-body HTTP/1.1\r\nHost: test\r\n\r\n";
    stream.write_all(bytes.as_bytes()).expect("write");
    let replies = read_replies(&mut stream, 2);
    assert_echo(&replies[0], "with-body");
    assert_echo(&replies[1], "after-body");
    assert_still_open(&mut stream, "still-there");
}

#[test]
fn a_chunked_body_is_skipped_before_the_next_pipelined_request() {
    let a = Service::a(&[]);
    let mut stream = connect(a.addr);
    let bytes = "GET /echo?msg=chunked HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n\
                 5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n\
                 GET /echo?msg=after-chunks HTTP/1.1\r\nHost: test\r\n\r\n";
    stream.write_all(bytes.as_bytes()).expect("write");
    let replies = read_replies(&mut stream, 2);
    assert_echo(&replies[0], "chunked");
    assert_echo(&replies[1], "after-chunks");
    assert_still_open(&mut stream, "still-there");
}

#[test]
fn expect_100_continue_gets_continue_then_200() {
    let a = Service::a(&[]);
    let mut stream = connect(a.addr);
    stream
        .write_all(
            b"GET /echo?msg=expect HTTP/1.1\r\nHost: test\r\n\
              Expect: 100-continue\r\nContent-Length: 5\r\n\r\n",
        )
        .expect("write head");
    // The interim response comes alone: the final one cannot, before the body is sent.
    let interim = read_replies(&mut stream, 1).remove(0);
    assert_eq!(interim.status_line, "HTTP/1.1 100 Continue", "{interim:?}");
    assert!(interim.body.is_empty(), "{interim:?}");
    stream.write_all(b"hello").expect("write body");
    // Then exactly one final response: no second `100`.
    let replies = read_replies(&mut stream, 1);
    assert_echo(&replies[0], "expect");
    assert_still_open(&mut stream, "after-expect");
}

#[test]
fn a_response_is_not_held_back_by_the_start_of_the_next_request() {
    let a = Service::a(&[]);
    let mut stream = connect(a.addr);
    stream.set_nodelay(true).expect("nodelay");
    // One complete request, and the first bytes of the next in the same write. A pipelining
    // client may wait for the first answer before it sends the rest.
    stream
        .write_all(b"GET /echo?msg=first HTTP/1.1\r\nHost: test\r\n\r\nGET /echo?msg=sec")
        .expect("write");
    let first = read_reply(&mut stream, false);
    assert_echo(&first, "first");
    stream
        .write_all(b"ond HTTP/1.1\r\nHost: test\r\n\r\n")
        .expect("write the rest");
    assert_echo(&read_reply(&mut stream, false), "second");
}

#[test]
fn a_response_is_not_held_back_by_the_body_of_the_next_request() {
    let a = Service::a(&[]);
    let mut stream = connect(a.addr);
    stream.set_nodelay(true).expect("nodelay");
    // A complete request, then the whole head of the next and only part of its body.
    stream
        .write_all(
            b"GET /echo?msg=first HTTP/1.1\r\nHost: test\r\n\r\n\
              GET /echo?msg=second HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\nhello",
        )
        .expect("write");
    // The request timeout is 10 s; the first answer must not wait for it, or for the body.
    let first = read_reply(&mut stream, false);
    assert_echo(&first, "first");
    stream.write_all(b"world").expect("write the rest");
    assert_echo(&read_reply(&mut stream, false), "second");
    assert_still_open(&mut stream, "third");
}

// ---------------------------------------------------------------------------------------------
// Date (RFC 9110 §6.6.1)
// ---------------------------------------------------------------------------------------------

/// The reply carries one `Date`, an IMF-fixdate of a second during the test.
fn assert_dated(reply: &Reply, from: u64) {
    let dates: Vec<&str> = reply
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("date"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(dates.len(), 1, "one Date field: {reply:?}");
    let to = unix_now();
    let matches_a_second =
        (from..=to).any(|s| dates[0].as_bytes() == echo_lab::http::date::imf_fixdate(s));
    assert!(
        matches_a_second,
        "Date {:?} is not a second in {from}..={to} ({})",
        dates[0], reply.status_line
    );
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs()
}

#[test]
fn every_response_carries_date() {
    let from = unix_now();
    let a = Service::a(&[]);
    for target in [
        "/health",
        "/echo?msg=x",
        "/nope",
        "/echo?msg=%ZZ",
        "/metrics",
    ] {
        assert_dated(&common::get(a.addr, target), from);
    }
    // 405, and a request the HTTP layer rejects (400, then close).
    for raw in [
        &b"DELETE /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"[..],
        b"GET /health HTTP/1.1\r\n\r\n",
    ] {
        let bytes = common::exchange(a.addr, raw);
        let (replies, _) = common::parse_replies(&bytes, false);
        assert_eq!(replies.len(), 1, "{:?}", String::from_utf8_lossy(&bytes));
        assert_dated(&replies[0], from);
    }
    // B's own answers: 200 through A, and 503 when A is gone.
    let b = Service::b(&a.url(), &[]);
    assert_dated(&common::get(b.addr, "/call-echo?msg=x"), from);
    drop(a);
    let reply = common::get(b.addr, "/call-echo?msg=x");
    assert_eq!(reply.status, 503, "{reply:?}");
    assert_dated(&reply, from);
}
