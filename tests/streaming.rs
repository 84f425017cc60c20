//! Streamed responses (RFC 9112 §7.1) over real sockets, against the library's server started
//! in this process on port 0, with small handlers that stream. Each test starts its own server,
//! so it can read that server's open-connection count and shut it down the way SIGTERM does.
//!
//! Every read has a timeout, and a timeout fails the test. Producers report what `send` told
//! them over a channel, and the tests wait on that, never on a sleep.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use common::in_process::{GRACE, TestServer, eventually, logged};
use common::{End, IO_TIMEOUT, connect, read_until_end};
use echo_lab::http::chunked::ChunkedDecoder;
use echo_lab::http::limits::LINGER_TIMEOUT;
use echo_lab::http::server::Outcome;
use echo_lab::http::stream::{StreamEnded, StreamSender, StreamingResponse, channel};
use echo_lab::http::wire_trace;

/// How long a client that left, or a shutdown, may take to reach the producer.
const NOTICE_WITHIN: Duration = Duration::from_secs(2);

/// A stream of `text/plain` chunks: the producer runs on a thread of its own with the sender.
fn streamed(backlog: usize, produce: impl FnOnce(StreamSender) + Send + 'static) -> Outcome {
    let (tx, body) = channel(backlog);
    thread::spawn(move || produce(tx));
    Outcome::Stream(
        StreamingResponse::new(200, "text/plain", body).with_header("Cache-Control", "no-store"),
    )
}

/// Sends `hello`, then waits until the stream ends (polling `is_closed`, as a producer with
/// nothing to say would) and reports what a `send` then returns. Bounded: after `IO_TIMEOUT`
/// it reports whatever `send` says.
fn hello_then_wait(tx: StreamSender, report: mpsc::Sender<Result<(), StreamEnded>>) {
    let _ = tx.send("hello");
    let deadline = Instant::now() + IO_TIMEOUT;
    while !tx.is_closed() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    let _ = report.send(tx.send("late"));
}

/// Reads from `stream` until what arrived contains `needle`; everything read. Panics if the
/// connection ends or `within` passes first.
fn read_until_contains(stream: &mut TcpStream, needle: &[u8], within: Duration) -> Vec<u8> {
    let deadline = Instant::now() + within;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    while !raw.windows(needle.len()).any(|w| w == needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no {:?} within {within:?}: {:?}",
            String::from_utf8_lossy(needle),
            String::from_utf8_lossy(&raw)
        );
        stream.set_read_timeout(Some(left)).expect("read timeout");
        match stream.read(&mut buf) {
            Ok(0) => panic!("closed early: {:?}", String::from_utf8_lossy(&raw)),
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) => panic!("read failed ({e}): {:?}", String::from_utf8_lossy(&raw)),
        }
    }
    raw
}

/// Reads until the server closes cleanly; panics if it does not within `IO_TIMEOUT`.
fn read_to_eof(stream: &mut TcpStream) -> Vec<u8> {
    let (raw, end) = read_until_end(stream, IO_TIMEOUT);
    assert!(
        matches!(end, End::Eof),
        "{end:?} instead of a clean close, after {:?}",
        String::from_utf8_lossy(&raw)
    );
    raw
}

/// A response as text with its `Date` line taken out (it changes every second).
fn without_date(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .split_inclusive("\r\n")
        .filter(|line| !line.starts_with("Date: "))
        .collect()
}

/// Splits a response after its head.
fn split_head(raw: &[u8]) -> (&[u8], &[u8]) {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no whole head: {:?}", String::from_utf8_lossy(raw)))
        + 4;
    raw.split_at(end)
}

/// The one request line most tests send.
const GET_CLOSE: &[u8] = b"GET /stream HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

#[test]
fn chunks_go_out_as_they_are_made_framed_exactly() {
    let (go, wait_for_go) = mpsc::channel::<()>();
    let wait_for_go = Mutex::new(Some(wait_for_go));
    let server = TestServer::start(move |_| {
        let wait_for_go = wait_for_go.lock().expect("lock").take();
        streamed(4, move |tx| {
            let _ = tx.send("hello");
            // The second chunk is made only once the client has the first: proof that each is
            // written as it is made, not held back until the end.
            if let Some(wait) = wait_for_go {
                let _ = wait.recv_timeout(IO_TIMEOUT);
            }
            let _ = tx.send("abcdefghijklmnopqrstuvwxyz");
        })
    });
    let mut client = connect(server.addr);
    client.write_all(GET_CLOSE).expect("write");
    let asked = Instant::now();
    let mut raw = read_until_contains(&mut client, b"5\r\nhello\r\n", Duration::from_secs(1));
    assert!(asked.elapsed() < Duration::from_secs(1));
    go.send(()).expect("the producer waits for it");
    raw.extend(read_to_eof(&mut client));
    assert_eq!(
        without_date(&raw),
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: no-store\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         5\r\nhello\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n"
    );
}

#[test]
fn a_clean_end_keeps_the_connection_for_the_next_request() {
    let server = TestServer::start(|_| {
        streamed(4, |tx| {
            let _ = tx.send("hello");
        })
    });
    let mut client = connect(server.addr);
    client
        .write_all(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("write");
    let first = read_until_contains(&mut client, b"0\r\n\r\n", IO_TIMEOUT);
    assert!(
        !without_date(&first).contains("Connection: close"),
        "{first:?}"
    );
    client
        .write_all(GET_CLOSE)
        .expect("the connection is still open");
    let second = read_to_eof(&mut client);
    assert!(
        without_date(&second).ends_with("Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        "{:?}",
        String::from_utf8_lossy(&second)
    );
}

#[test]
fn head_gets_the_head_alone_and_the_producer_is_told() {
    let (report, reports) = mpsc::channel();
    let report = Mutex::new(report);
    let server = TestServer::start(move |request| {
        let report = report.lock().expect("lock").clone();
        let method = request.head.method.clone();
        streamed(4, move |tx| {
            if method == "HEAD" {
                hello_then_wait(tx, report);
            } else {
                let _ = tx.send("hello");
            }
        })
    });
    let mut client = connect(server.addr);
    // Pipelined: if the HEAD's answer had a body, the GET's head would not follow its head.
    client
        .write_all(b"HEAD /stream HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("write");
    client.write_all(GET_CLOSE).expect("write");
    let raw = read_to_eof(&mut client);
    assert_eq!(
        without_date(&raw),
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: no-store\r\n\
         Transfer-Encoding: chunked\r\n\r\n\
         HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: no-store\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    );
    let told = reports
        .recv_timeout(NOTICE_WITHIN)
        .expect("the HEAD's producer reports");
    assert_eq!(told, Err(StreamEnded::Gone));
}

#[test]
fn http10_gets_the_bare_body_ended_by_the_close() {
    let server = TestServer::start(|_| {
        streamed(4, |tx| {
            let _ = tx.send("hello");
            let _ = tx.send(" world");
        })
    });
    let mut client = connect(server.addr);
    client
        .write_all(b"GET /stream HTTP/1.0\r\n\r\n")
        .expect("write");
    let raw = read_to_eof(&mut client);
    assert_eq!(
        without_date(&raw),
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nCache-Control: no-store\r\n\
         Connection: close\r\n\r\nhello world"
    );
}

#[test]
fn a_client_that_goes_away_ends_the_stream_and_frees_it() {
    let (report, reports) = mpsc::channel();
    let report = Mutex::new(report);
    let server = TestServer::start(move |_| {
        let report = report.lock().expect("lock").clone();
        streamed(4, move |tx| hello_then_wait(tx, report))
    });
    let mut client = connect(server.addr);
    client.write_all(GET_CLOSE).expect("write");
    read_until_contains(&mut client, b"5\r\nhello\r\n", IO_TIMEOUT);
    assert_eq!(server.open_connections(), 1);
    // The producer sends nothing more, so no write can find the client gone: only the
    // server's watch on the socket while it waits for the next chunk can.
    drop(client);
    let told = reports
        .recv_timeout(NOTICE_WITHIN)
        .expect("the producer learns that the client left");
    assert_eq!(told, Err(StreamEnded::Gone));
    assert!(
        eventually(NOTICE_WITHIN, || server.open_connections() == 0),
        "the connection's task is still there: {} open",
        server.open_connections()
    );
}

#[test]
fn a_client_that_does_not_read_is_cut_off_without_the_last_chunk() {
    const BACKLOG: usize = 4;
    const CHUNK: usize = 64 * 1024;
    // Far past what the socket buffers hold (a few MiB on loopback), so that only the backlog
    // can stop the producer. If nothing did, it gives up here and reports `Ok`.
    const MOST_CHUNKS: usize = 2000;
    let (report, reports) = mpsc::channel();
    let report = Mutex::new(report);
    let server = TestServer::start(move |_| {
        let report = report.lock().expect("lock").clone();
        streamed(BACKLOG, move |tx| {
            let mut accepted = 0;
            let ended = loop {
                if accepted == MOST_CHUNKS {
                    break Ok(());
                }
                match tx.send(vec![b'x'; CHUNK]) {
                    Ok(()) => accepted += 1,
                    Err(e) => break Err(e),
                }
                // 32 MiB/s: a client that reads keeps up with that easily.
                thread::sleep(Duration::from_millis(2));
            };
            let _ = report.send((ended, accepted));
        })
    });
    let mut client = connect(server.addr);
    let peer = client.local_addr().expect("local address");
    client.write_all(GET_CLOSE).expect("write");
    // Not a byte read until the producer has been cut off.
    let (ended, accepted) = reports
        .recv_timeout(Duration::from_secs(30))
        .expect("the producer reports");
    assert_eq!(ended, Err(StreamEnded::TooSlow), "after {accepted} chunks");
    // The server's write, stuck on the full socket, gives up at the cut-off: the connection
    // closes (after its lingering close) while the client still reads nothing. What was
    // written stays in the kernel's buffers, and still arrives below.
    assert!(
        eventually(LINGER_TIMEOUT + NOTICE_WITHIN, || server.open_connections()
            == 0),
        "the connection is still open: the write was not cut off"
    );
    let raw = read_to_eof(&mut client);
    let (_, body) = split_head(&raw);
    let mut decoder = ChunkedDecoder::new(usize::MAX);
    let mut data = Vec::new();
    decoder.decode(body, &mut data).expect("valid chunks");
    assert!(!decoder.is_done(), "the body must not look complete");
    assert!(!body.ends_with(b"0\r\n\r\n"));
    // Memory: what the producer handed over and the client never got was held by the server:
    // at most the backlog, and the chunk being written.
    let held = accepted * CHUNK - data.len();
    assert!(
        held <= (BACKLOG + 1) * CHUNK,
        "the server held {held} bytes: {accepted} chunks accepted, {} bytes arrived",
        data.len()
    );
    assert!(
        !logged(&format!("peer={peer} stream cut off")).is_empty(),
        "no WARN line for the cut-off"
    );
}

#[test]
fn shutdown_ends_the_stream_with_its_last_chunk() {
    let (report, reports) = mpsc::channel();
    let report = Mutex::new(report);
    let mut server = TestServer::start(move |_| {
        let report = report.lock().expect("lock").clone();
        streamed(4, move |tx| hello_then_wait(tx, report))
    });
    let mut client = connect(server.addr);
    client
        .write_all(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("write");
    let mut raw = read_until_contains(&mut client, b"5\r\nhello\r\n", IO_TIMEOUT);
    let stopping = Instant::now();
    server.shut_down();
    raw.extend(read_to_eof(&mut client));
    drop(client);
    let (_, body) = split_head(&raw);
    assert_eq!(body, b"5\r\nhello\r\n0\r\n\r\n");
    let told = reports
        .recv_timeout(NOTICE_WITHIN)
        .expect("the producer reports");
    assert_eq!(told, Err(StreamEnded::Gone));
    server
        .stopped
        .recv_timeout(GRACE)
        .expect("the server stops within its grace");
    assert!(stopping.elapsed() < GRACE);
}

#[test]
fn the_wire_trace_shows_each_chunks_size() {
    // What `TRACE_WIRE=1` turns on in the services.
    wire_trace::enable();
    let server = TestServer::start(|_| {
        streamed(4, |tx| {
            let _ = tx.send("trace-me-0123456789abcdef");
        })
    });
    let mut client = connect(server.addr);
    client.write_all(GET_CLOSE).expect("write");
    read_to_eof(&mut client);
    // 25 bytes: `19` in hex on the wire.
    let chunk = logged(r"[chunk 25 bytes] 19\r\ntrace-me-0123456789abcdef\r\n");
    assert_eq!(chunk.len(), 1, "{chunk:?}");
    assert!(chunk[0].contains(" -> "), "{chunk:?}");
    let id = chunk[0]
        .split_whitespace()
        .find(|word| word.starts_with("in#"))
        .expect("a connection id");
    let last = logged(&format!(r"{id} -> [chunk 0 bytes] 0\r\n\r\n"));
    assert_eq!(last.len(), 1, "{last:?}");
}
