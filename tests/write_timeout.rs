//! A client that stops reading (the README's "response not written within 10 s"): the server
//! gives a response a bounded time to be written, then closes the connection, so a client that
//! never reads cannot hold a task, a socket and the response's bytes for ever.
//!
//! Against the library's server in this process, with a write timeout of 300 ms instead of
//! 10 s, so that the test takes a second and can bound the close from both sides; the
//! binaries run the same code with `Limits::default()` (tested there: `write_timeout` is 10 s).

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::in_process::{TestServer, eventually, logged};
use common::{End, IO_TIMEOUT, connect, read_until_end};
use echo_lab::http::limits::Limits;
use echo_lab::http::message::Response;

/// The test's write timeout.
const WRITE_TIMEOUT: Duration = Duration::from_millis(300);

/// Far more than loopback's socket buffers hold (a few MiB on each side), so the write cannot
/// finish while the client reads nothing.
const BIG: usize = 64 * 1024 * 1024;

/// How late the close may come on a busy machine: the timer fires on an executor thread that
/// may be busy with other tests.
const SLACK: Duration = Duration::from_secs(2);

#[test]
fn the_default_write_timeout_is_the_readmes_10_s() {
    assert_eq!(Limits::default().write_timeout, Duration::from_secs(10));
}

#[test]
fn a_client_that_stops_reading_is_closed_after_the_write_timeout() {
    let limits = Limits {
        write_timeout: WRITE_TIMEOUT,
        ..Limits::default()
    };
    let server = TestServer::with_limits(limits, |_| {
        Response::new(200, "application/octet-stream", vec![b'x'; BIG]).into()
    });
    let mut client = connect(server.addr);
    client
        .write_all(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("send the request");
    let asked = Instant::now();
    assert!(
        eventually(IO_TIMEOUT, || server.open_connections() == 1),
        "the server never counted the connection"
    );

    // The client reads nothing; only the write timeout can end the connection.
    assert!(
        eventually(WRITE_TIMEOUT + SLACK, || server.open_connections() == 0),
        "still open {:?} after the request, with a write timeout of {WRITE_TIMEOUT:?}",
        asked.elapsed()
    );
    let closed_after = asked.elapsed();
    let warned = logged("response not written within 300 ms (the client stopped reading)");
    assert_eq!(warned.len(), 1, "one WARN line for the close: {warned:?}");
    assert!(warned[0].starts_with("WARN "), "{warned:?}");
    assert!(
        closed_after >= WRITE_TIMEOUT,
        "closed after {closed_after:?}, before the write timeout of {WRITE_TIMEOUT:?}"
    );

    // What the client then finds: the part of the response the buffers held, and the end.
    let (raw, end) = read_until_end(&mut client, IO_TIMEOUT);
    assert!(
        raw.starts_with(b"HTTP/1.1 200 OK\r\n"),
        "{:?}",
        &raw[..raw.len().min(80)]
    );
    assert!(
        raw.len() < BIG,
        "the whole response ({} bytes) arrived, so the write had not stalled",
        raw.len()
    );
    assert!(
        matches!(end, End::Eof | End::Failed(_)),
        "{end:?}: the connection should have been closed"
    );
}
