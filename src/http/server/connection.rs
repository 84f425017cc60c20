//! One connection's keep-alive loop (RFC 9112 §9.3 persistence, §9.3.2 pipelining, §9.6
//! tear-down). `Connection::serve` is these steps, in this order:
//!
//! ```text
//!     ┌─► 1. send the answers we owe, if the next request is not here whole (§9.3.2)
//!     │   2. nothing buffered: wait for its first byte ── idle, peer gone, shutdown ─► end
//!     │   3. read it: head, framing, 100-continue, body ── broken: answer 4xx/5xx ─► close
//!     │   4. ask the handler ── it hangs up ─► end
//!     │   5. queue the answer ── either side said close, or shutdown began ─► close
//!     │      (a stream: write it as it comes, `streaming.rs` ── client gone ─► end)
//!     └── 6. keep alive (but write when the queue is long)
//!
//!     close = write what we owe, then linger (§9.6)
//! ```
//!
//! Every wait is bounded: the idle time between requests, the time a request takes to arrive,
//! the time a response takes to be written. A request that breaks the rules gets its status
//! and the connection is closed, because after a framing error nobody knows where the next
//! request would start.

use std::future::{Future, poll_fn};
use std::io;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use futures_lite::{AsyncWriteExt, FutureExt, future};
use smol::channel::{Receiver, Sender};

use super::handler::{Handler, Outcome};
use super::streaming::{AfterStream, Streamer};
use crate::http::body::{BodyFraming, read_body, request_framing};
use crate::http::conn::BufferedStream;
use crate::http::error::RequestError;
use crate::http::head::read_request_head;
use crate::http::limits::{LINGER_MAX_BYTES, LINGER_TIMEOUT, Limits, PIPELINE_FLUSH_BYTES};
use crate::http::message::{Headers, Request, Response, Version};
use crate::http::stream::StreamingResponse;
use crate::http::wire_trace::{self, Direction};
use crate::http::write::write_response;

/// One accepted connection and everything its loop needs. (What it costs while it waits,
/// and why some steps are boxed: `memory.rs`.)
pub(super) struct Connection<H> {
    conn: BufferedStream<Async<TcpStream>>,
    peer: SocketAddr,
    /// Answers queued and not yet written. Pipelined requests' answers go out in one write.
    owed: Vec<u8>,
    handler: Arc<H>,
    limits: Arc<Limits>,
    idle_timer: IdleTimer,
    /// Counts the connection as open until it is dropped.
    _open: OpenGuard,
}

/// What the connection is about to read, for the pipelining rule (`flush_before_waiting`).
#[derive(Debug, Clone, Copy)]
enum Next {
    /// The head of the next request.
    Head,
    /// The body of the request whose head was just read.
    Body(BodyFraming),
}

/// How a connection goes on after an answer.
#[derive(Debug, PartialEq, Eq)]
enum After {
    KeepAlive,
    /// The answer is queued with `Connection: close`: write it, then close.
    Close,
    /// Drop the connection at once: the handler asked to, without an answer, or a stream's
    /// client is gone.
    HangUp,
}

impl<H: Handler> Connection<H> {
    pub(super) fn new(
        stream: Async<TcpStream>,
        peer: SocketAddr,
        handler: Arc<H>,
        limits: Arc<Limits>,
        open: OpenGuard,
    ) -> Self {
        Connection {
            conn: BufferedStream::new(stream),
            peer,
            owed: Vec::new(),
            idle_timer: IdleTimer::new(limits.idle_timeout),
            handler,
            limits,
            _open: open,
        }
    }

    /// The keep-alive loop: the numbered steps of the diagram at the top of this file. `stop`
    /// is closed when shutdown begins. (A plain `fn` returning `async move`, and the boxed
    /// steps: `memory.rs` says why.)
    #[allow(clippy::manual_async_fn)] // see memory.rs, "The task holds the connection once"
    pub(super) fn serve(mut self, stop: Receiver<()>) -> impl Future<Output = ()> {
        async move {
            // Completes when shutdown begins; made once per connection (memory.rs).
            let mut shutdown = pin!(stop.recv());
            let error = loop {
                // 1. Owed answers out, unless the next request is here whole.
                if self.flush_before_waiting(Next::Head).await.is_err() {
                    return;
                }
                // 2. Between requests: wait for the next one to start.
                if self.conn.buffered().is_empty()
                    && !self.next_request_starts(&stop, shutdown.as_mut()).await
                {
                    return;
                }
                // 3. Read it; a broken one leaves the loop, to be answered and closed below.
                let request = match Box::pin(self.read_request_in_time()).await {
                    Ok(Some(request)) => request,
                    Ok(None) => return,
                    Err(error) => break error,
                };
                // 4. Ask the handler, 5. queue its answer, or hang up, or close.
                match Box::pin(self.answer(request, &stop)).await {
                    After::HangUp => return,
                    After::Close => return Box::pin(self.close()).await,
                    // 6. Keep alive; a long queue goes out now.
                    After::KeepAlive if self.owed.len() >= PIPELINE_FLUSH_BYTES => {
                        if self.flush().await.is_err() {
                            return;
                        }
                    }
                    After::KeepAlive => {}
                }
            };
            Box::pin(self.reject(error)).await
        }
    }

    /// Step 1 and its twin before a body: answers we owe go out before any wait on the network
    /// (RFC 9112 §9.3.2). Pipelined answers are held back only while the next request is
    /// already here; if it is not, its rest may be slow to come, or the client may hold it
    /// back until it has the answers it waits for. This is the one place that decides.
    async fn flush_before_waiting(&mut self, next: Next) -> io::Result<()> {
        let buffered = self.conn.buffered();
        let here = match next {
            Next::Head => holds_a_head(buffered),
            Next::Body(framing) => body_is_buffered(framing, buffered.len()),
        };
        if here { Ok(()) } else { self.flush().await }
    }

    /// Step 2: waits for the first byte of a next request. `false`: the peer closed, stayed
    /// idle past the idle timeout, or shutdown began; in every case the connection just ends.
    ///
    /// The client sends its next request once it has our answer, so the task first lets the
    /// thread's other tasks run (a yield); by then the request is often here, and one read
    /// without a wait takes it (a wait costs more than a read that finds nothing: the reactor
    /// re-arms the socket's interest, one `epoll_ctl`, and must wake the task again). Only
    /// when it is not does the connection wait, for readability, the idle timeout or shutdown,
    /// whichever comes first. Over the yield and the wait, which may be long, it holds no
    /// buffers (nginx does the same; memory.rs).
    async fn next_request_starts<F: Future>(
        &mut self,
        stop: &Receiver<()>,
        shutdown: Pin<&mut F>,
    ) -> bool {
        if stop.is_closed() {
            return false;
        }
        self.release_buffers();
        future::yield_now().await;
        match self.conn.try_fill() {
            Ok(Some(n)) => return n > 0,
            Ok(None) => {}
            Err(_) => return false,
        }
        self.release_buffers(); // the read took a buffer again, and found nothing
        let idle_timer = &mut self.idle_timer;
        let idle = async {
            idle_timer.expired().await;
            false
        };
        let stopped = async {
            shutdown.await;
            false
        };
        let conn = &mut self.conn;
        let first_bytes = async {
            let readable = poll_fn(|cx| conn.stream.poll_readable(cx)).await.is_ok();
            readable && matches!(conn.fill().await, Ok(n) if n > 0)
        };
        first_bytes.or(idle).or(stopped).await
    }

    /// Gives back the read buffer and the answer buffer, both empty here.
    fn release_buffers(&mut self) {
        self.conn.release_buffer();
        self.owed = Vec::new();
    }

    /// Step 3: the request, from its first byte to its last, within the request timeout.
    /// (`or` polls the read first; the timer only registers with the reactor if the request
    /// is not here whole yet, so the usual request costs no timer at all.)
    async fn read_request_in_time(&mut self) -> Result<Option<Request>, RequestError> {
        let deadline = Instant::now() + self.limits.request_timeout;
        self.read_request()
            .or(async {
                Timer::at(deadline).await;
                Err(RequestError::Timeout)
            })
            .await
    }

    /// Reads one request: head, framing, `Expect`, body. `Ok(None)`: clean end of stream.
    async fn read_request(&mut self) -> Result<Option<Request>, RequestError> {
        let Some(head) = read_request_head(&mut self.conn, &self.limits).await? else {
            return Ok(None);
        };
        let framing = request_framing(&head)?;
        if expects_continue(head.version, &head.headers)? && framing != BodyFraming::Empty {
            self.send_continue(framing).await?;
        }
        self.flush_before_waiting(Next::Body(framing)).await?;
        // Read whole even for a handler that ignores it: the next request on this connection
        // starts at the byte after it.
        let body = read_body(&mut self.conn, framing, self.limits.max_body_bytes).await?;
        Ok(Some(Request {
            head,
            body,
            peer: self.peer,
        }))
    }

    /// The client waits for our go-ahead before sending the body (RFC 9110 §10.1.1). If the
    /// body is announced too large, refuse now instead of inviting it.
    async fn send_continue(&mut self, framing: BodyFraming) -> Result<(), RequestError> {
        if matches!(framing, BodyFraming::Length(n) if n > self.limits.max_body_bytes as u64) {
            return Err(RequestError::BodyTooLarge);
        }
        let interim = b"HTTP/1.1 100 Continue\r\n\r\n";
        wire_trace::head(self.conn.id, Direction::Sent, interim);
        // Behind any answers still owed, so everything goes out in order.
        self.owed.extend_from_slice(interim);
        Ok(self.flush().await?)
    }

    /// Steps 4 and 5: the handler's answer, queued. We close after it if the client asked,
    /// or if we are shutting down, which is checked once the answer is ready: shutdown may
    /// begin while it is made.
    async fn answer(&mut self, request: Request, stop: &Receiver<()>) -> After {
        let client_closes = !request.head.keeps_alive();
        let version = request.head.version;
        let head_only = request.head.method == "HEAD";
        let response = match self.handler.handle(request).await {
            Outcome::Respond(response) => response,
            // Boxed: a stream's state is large and may last long; inline it would make every
            // request's `answer` box as large.
            Outcome::Stream(response) => {
                let stream = self.stream(response, version, head_only, client_closes, stop);
                return Box::pin(stream).await;
            }
            Outcome::HangUp => return After::HangUp,
        };
        let close = client_closes || stop.is_closed();
        self.queue(&response, version, head_only, close);
        if close {
            After::Close
        } else {
            After::KeepAlive
        }
    }

    /// Step 5 for a body of unknown length: the head now, then the chunks as they come. We
    /// close after it if the client asked, or on shutdown, as for any answer.
    async fn stream(
        &mut self,
        response: StreamingResponse,
        version: Version,
        head_only: bool,
        close: bool,
        stop: &Receiver<()>,
    ) -> After {
        let streamer = Streamer::new(&mut self.conn, &mut self.owed, self.peer, &self.limits);
        match streamer
            .send(response, version, head_only, close, stop)
            .await
        {
            AfterStream::KeepAlive => After::KeepAlive,
            AfterStream::Close => After::Close,
            AfterStream::Drop => After::HangUp,
        }
    }

    /// A request could not be read: answer with its status (when there is one) and close.
    async fn reject(mut self, error: RequestError) {
        let status = error.status();
        wire_trace::unparsed(self.conn.id, self.conn.buffered());
        self.handler.rejected(self.peer, &error, status);
        let Some(status) = status else { return };
        let response = self.handler.error_response(status, &error.to_string());
        self.queue(&response, Version::Http11, false, true);
        self.close().await;
    }

    /// Appends a response to what we owe (see `write_response`), and to the wire trace.
    fn queue(&mut self, response: &Response, version: Version, head_only: bool, close: bool) {
        let start = self.owed.len();
        // The queue was released while the connection was idle; room for the head (about
        // 150 bytes) and the body at once, instead of growing it by doubling from nothing.
        self.owed.reserve(RESPONSE_HEAD_ROOM + response.body.len());
        write_response(&mut self.owed, response, version, head_only, close);
        wire_trace::message(self.conn.id, Direction::Sent, &self.owed[start..]);
    }

    /// Writes everything we owe, within the write timeout.
    async fn flush(&mut self) -> io::Result<()> {
        if self.owed.is_empty() {
            return Ok(());
        }
        let timeout = self.limits.write_timeout;
        let written = self.conn.stream.write_all(&self.owed).or(async {
            Timer::after(timeout).await;
            Err(io::ErrorKind::TimedOut.into())
        });
        let result = written.await;
        self.owed.clear();
        if let Err(e) = &result
            && e.kind() == io::ErrorKind::TimedOut
        {
            // The one end of a connection nobody else reports: the client is there, but has
            // stopped reading.
            log::warn!(
                "peer={} response not written within {} ms (the client stopped reading); closing",
                self.peer,
                timeout.as_millis()
            );
        }
        result
    }

    /// Writes what we owe and closes so that the last response survives (RFC 9112 §9.6):
    /// shut our sending side first, then read and drop what the client still sends for a
    /// moment. Closing a socket with unread input makes the kernel send a reset, which can
    /// destroy the response before the client has read it.
    async fn close(mut self) {
        if self.flush().await.is_err() {
            return;
        }
        let _ = self.conn.stream.get_ref().shutdown(Shutdown::Write);
        let conn = &mut self.conn;
        let drain = async {
            let mut discarded = 0;
            while let Ok(n @ 1..) = conn.fill().await {
                discarded += n;
                let all = conn.buffered().len();
                conn.consume(all);
                if discarded > LINGER_MAX_BYTES {
                    break;
                }
            }
        };
        drain
            .or(async {
                Timer::after(LINGER_TIMEOUT).await;
            })
            .await;
    }
}

/// A panic in the task (a handler's, say) unwinds through the connection's future, which drops
/// the connection on its way to `catch_unwind` in `start_connection`; this says whose it was.
/// (The task is the connection's future itself, so there is no place after it to log from.)
impl<H> Drop for Connection<H> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let peer = self.peer;
            log::error!("peer={peer} connection task panicked; connection dropped");
        }
    }
}

/// Room reserved in the answer queue for a response head, so that queueing an answer usually
/// allocates once. Our heads are 120–200 bytes; a larger one only grows the queue once more.
const RESPONSE_HEAD_ROOM: usize = 256;

/// Whether `buffered` holds a whole request head (up to its empty line). If it does not,
/// reading that request must wait for the network, and the answers we owe go out first.
fn holds_a_head(buffered: &[u8]) -> bool {
    buffered.windows(4).any(|w| w == b"\r\n\r\n") || buffered.windows(2).any(|w| w == b"\n\n")
}

/// Whether the whole body is already in the buffer, so reading it cannot wait for the
/// network. A chunked body's end is only known by decoding it, so it counts as not there.
fn body_is_buffered(framing: BodyFraming, buffered: usize) -> bool {
    match framing {
        BodyFraming::Empty => true,
        BodyFraming::Length(n) => buffered as u64 >= n,
        BodyFraming::Chunked | BodyFraming::UntilClose => false,
    }
}

/// `Expect: 100-continue` is the only expectation there is; any other is answered 417
/// (RFC 9110 §10.1.1). An HTTP/1.0 client cannot mean it, so for 1.0 it is ignored.
fn expects_continue(version: Version, headers: &Headers) -> Result<bool, RequestError> {
    if version == Version::Http10 || headers.get("expect").is_none() {
        return Ok(false);
    }
    let mut tokens = headers.tokens("expect");
    let only_continue = tokens
        .next()
        .is_some_and(|t| t.eq_ignore_ascii_case(b"100-continue"))
        && tokens.next().is_none();
    if only_continue {
        Ok(true)
    } else {
        Err(RequestError::UnsupportedExpectation)
    }
}

/// The idle timeout of one connection, with one timer for the connection's whole life.
///
/// A new `Timer` per request would register with the reactor each time, and every
/// registration wakes the reactor thread: a syscall and a context switch per request. Instead
/// the timer stays armed at the end of some earlier idle period; when it fires it is only
/// re-armed if the connection has been busy since. It fires at most once per idle timeout.
struct IdleTimer {
    timer: Timer,
    timeout: Duration,
}

impl IdleTimer {
    fn new(timeout: Duration) -> Self {
        IdleTimer {
            timer: Timer::after(timeout),
            timeout,
        }
    }

    /// Completes once the connection has been idle for the whole timeout, counted from now.
    async fn expired(&mut self) {
        let idle_until = Instant::now() + self.timeout;
        loop {
            (&mut self.timer).await;
            if Instant::now() >= idle_until {
                return;
            }
            // It fired for an earlier idle period; this one ends later.
            self.timer.set_at(idle_until);
        }
    }
}

/// Counts a connection as open for as long as it lives: the connection holds it.
pub(super) struct OpenGuard {
    open: Arc<AtomicUsize>,
    _alive: Sender<()>,
}

impl OpenGuard {
    pub(super) fn new(open: Arc<AtomicUsize>, alive: Sender<()>) -> Self {
        open.fetch_add(1, Ordering::SeqCst);
        OpenGuard {
            open,
            _alive: alive,
        }
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::parse_request_head;

    /// The head of `raw`, which must be one whole, valid request head.
    fn head(raw: &[u8]) -> crate::http::message::RequestHead {
        let (head, _) = parse_request_head(raw, &Limits::default())
            .expect("valid")
            .expect("complete");
        head
    }

    fn expects(raw: &[u8]) -> Result<bool, RequestError> {
        let head = head(raw);
        expects_continue(head.version, &head.headers)
    }

    fn keeps_alive(raw: &[u8]) -> bool {
        head(raw).keeps_alive()
    }

    #[test]
    fn a_head_is_here_once_its_empty_line_is() {
        assert!(holds_a_head(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(holds_a_head(b"GET / HTTP/1.1\r\n\r\nGET /next"));
        assert!(holds_a_head(b"GET / HTTP/1.1\nHost: a\n\n"));
    }

    #[test]
    fn a_head_is_not_here_without_its_empty_line() {
        assert!(!holds_a_head(b""));
        assert!(!holds_a_head(b"G"));
        assert!(!holds_a_head(b"GET / HTTP/1.1\r\nHost: a\r\n"));
        assert!(!holds_a_head(b"GET / HTTP/1.1\r\nHost: a\r\n\r"));
    }

    #[test]
    fn a_body_is_buffered_when_all_its_bytes_are() {
        assert!(body_is_buffered(BodyFraming::Empty, 0));
        assert!(body_is_buffered(BodyFraming::Length(5), 5));
        assert!(body_is_buffered(BodyFraming::Length(5), 9));
        assert!(!body_is_buffered(BodyFraming::Length(5), 4));
    }

    #[test]
    fn a_chunked_or_close_delimited_body_never_counts_as_buffered() {
        assert!(!body_is_buffered(BodyFraming::Chunked, 1 << 20));
        assert!(!body_is_buffered(BodyFraming::UntilClose, 1 << 20));
    }

    #[test]
    fn expect_100_continue_in_any_case() {
        let raw = b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\n\r\n";
        assert!(expects(raw).expect("a known expectation"));
    }

    #[test]
    fn no_expect_expects_nothing() {
        assert!(!expects(b"POST / HTTP/1.1\r\nHost: a\r\n\r\n").expect("fine"));
    }

    #[test]
    fn any_other_expectation_is_417() {
        for raw in [
            &b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue, 200-ok\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue-ish\r\n\r\n",
        ] {
            let error = expects(raw).expect_err("unsupported");
            assert_eq!(error.status(), Some(417), "{}", wire_trace::visible(raw));
        }
    }

    #[test]
    fn an_http10_expect_is_ignored() {
        assert!(!expects(b"POST / HTTP/1.0\r\nExpect: 200-ok\r\n\r\n").expect("ignored"));
    }

    #[test]
    fn http11_keeps_alive_unless_close_is_a_token() {
        assert!(keeps_alive(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(!keeps_alive(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        ));
        assert!(!keeps_alive(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: a, close\r\n\r\n"
        ));
        assert!(!keeps_alive(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: CLOSE\r\n\r\n"
        ));
        assert!(!keeps_alive(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: a\r\nConnection: close\r\n\r\n"
        ));
        assert!(keeps_alive(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n"
        ));
        assert!(keeps_alive(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: a close\r\n\r\n"
        ));
    }

    #[test]
    fn http10_closes_unless_keep_alive_is_a_token() {
        assert!(!keeps_alive(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(keeps_alive(
            b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
        ));
        assert!(keeps_alive(
            b"GET / HTTP/1.0\r\nConnection: a, Keep-Alive\r\n\r\n"
        ));
        assert!(!keeps_alive(
            b"GET / HTTP/1.0\r\nConnection: keep-alive-ish\r\n\r\n"
        ));
        assert!(!keeps_alive(b"GET / HTTP/1.0\r\nConnection: close\r\n\r\n"));
    }

    // The loop itself, on a real loopback socket, against the server in this process (the
    // helpers of `server/mod.rs`'s tests): what a client sees of each step.

    use std::io::{Read, Write};
    use std::net::TcpStream as StdStream;

    use crate::http::server::ServerConfig;
    use crate::http::server::tests::{Defaults, start, start_with};

    /// How long a test waits for any one answer.
    const WAIT: Duration = Duration::from_secs(5);

    fn client(addr: SocketAddr) -> StdStream {
        let stream = StdStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).expect("read timeout");
        stream
    }

    /// Reads one whole response (framed by `Content-Length`; none for `HEAD`), no further.
    fn one_response(stream: &mut StdStream, head_only: bool) -> String {
        let mut raw = Vec::new();
        let mut byte = [0u8; 1];
        while !raw.ends_with(b"\r\n\r\n") {
            let n = stream
                .read(&mut byte)
                .expect("a response head, within the wait");
            assert_eq!(n, 1, "closed after {:?}", String::from_utf8_lossy(&raw));
            raw.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&raw).into_owned();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .map_or(0, |n| n.trim().parse().expect("a length"));
        let mut body = vec![0u8; if head_only { 0 } else { length }];
        stream.read_exact(&mut body).expect("the body");
        head + &String::from_utf8_lossy(&body)
    }

    fn closes_without_a_byte(stream: &mut StdStream) -> bool {
        matches!(stream.read(&mut [0u8; 64]), Ok(0))
    }

    // Step 6's guard, `self.owed.len() >= PIPELINE_FLUSH_BYTES`, has no test of its own: made
    // `true`, `false` or `<`, the answers owed still go out in step 1 as soon as the next
    // request is not here whole, so a client reads the same bytes in the same order. The
    // guard bounds how much a pipelining client can make us hold (memory), and `true` would
    // only write more often (system calls): a benchmark's business, not a test's.
    #[test]
    fn kept_alive_each_answer_goes_out_before_the_next_request_is_read() {
        let (addr, _open, stop, server) = start(Defaults);
        let mut stream = client(addr);
        for (method, head_only) in [("GET", false), ("HEAD", true), ("GET", false)] {
            let request = format!("{method} / HTTP/1.1\r\nHost: a\r\n\r\n");
            stream.write_all(request.as_bytes()).expect("send");
            // The client sends nothing more until it has the answer: only step 1's flush,
            // before the wait for the next request, can get it out.
            let answer = one_response(&mut stream, head_only);
            assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
            assert!(!answer.contains("Connection: close"), "{answer}");
            assert_eq!(
                answer.ends_with("\r\n\r\nok"),
                !head_only,
                "{method}: {answer}"
            );
        }
        drop(stop);
        server.join().expect("the server stops");
    }

    #[test]
    fn connection_close_is_answered_with_close_and_then_closed() {
        let (addr, _open, stop, server) = start(Defaults);
        let mut stream = client(addr);
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .expect("send");
        let answer = one_response(&mut stream, false);
        assert!(answer.contains("Connection: close\r\n"), "{answer}");
        assert!(
            closes_without_a_byte(&mut stream),
            "closed after the answer"
        );
        drop(stop);
        server.join().expect("the server stops");
    }

    // Step 2's `readable && matches!(conn.fill().await, …)` with `||` changes nothing a client
    // sees: a readable socket then ends the wait without the first read, and step 3 makes
    // that read instead, finding the same bytes or the same end of stream. So does `n >= 0`
    // for `n > 0` after the read that follows the yield: an end of stream found there is found
    // again by step 3's read, which closes the same way. Step 2's yield before its read, and
    // `release_buffers` (either call, or the function emptied), are equivalent mutants too:
    // without them the same requests are read, with more system calls (`bench/syscalls.sh`)
    // or more memory held under load (its peak RSS column).
    #[test]
    fn a_request_that_arrives_in_pieces_within_the_timeout_is_read() {
        let (addr, _open, stop, server) = start(Defaults);
        let mut stream = client(addr);
        stream.write_all(b"GET / HTTP/1.1\r\n").expect("send");
        std::thread::sleep(Duration::from_millis(100)); // the rest comes later, as on a slow link
        stream.write_all(b"Host: a\r\n\r\n").expect("send");
        let answer = one_response(&mut stream, false);
        assert!(
            answer.starts_with("HTTP/1.1 200 OK\r\n"),
            "not 408: {answer}"
        );
        drop(stop);
        server.join().expect("the server stops");
    }

    #[test]
    fn expect_100_continue_gets_the_go_ahead_before_the_body_and_only_then() {
        let (addr, _open, stop, server) = start(Defaults);
        let mut stream = client(addr);
        let head =
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n";
        stream.write_all(head.as_bytes()).expect("send the head");
        let interim = one_response(&mut stream, true);
        assert_eq!(
            interim, "HTTP/1.1 100 Continue\r\n\r\n",
            "before the body is sent"
        );
        stream.write_all(b"hello").expect("send the body");
        let answer = one_response(&mut stream, false);
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");

        // A body without `Expect`: the answer, and nothing before it.
        stream
            .write_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
            .expect("send");
        let answer = one_response(&mut stream, false);
        assert!(
            answer.starts_with("HTTP/1.1 200 OK\r\n"),
            "no 100 first: {answer}"
        );
        drop(stop);
        server.join().expect("the server stops");
    }

    #[test]
    fn on_shutdown_an_idle_connection_closes_at_once_without_a_byte() {
        // A grace long enough to tell "at once" from "when the grace ran out", which closes
        // every connection left without a byte too.
        let config = ServerConfig {
            shutdown_grace: Duration::from_secs(5),
            ..ServerConfig::default()
        };
        let (addr, open, stop, server) = start_with(Defaults, config);
        let mut stream = client(addr);
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .expect("send");
        one_response(&mut stream, false);
        // Idle now, in step 2. Shutdown must end it there, not leave it waiting for a request.
        let stopping = Instant::now();
        drop(stop);
        assert!(
            closes_without_a_byte(&mut stream),
            "closed, with no 408 or other answer"
        );
        assert!(
            stopping.elapsed() < Duration::from_secs(1),
            "closed after {:?}: when the grace ran out, not at once",
            stopping.elapsed()
        );
        server.join().expect("the server stops");
        assert_eq!(open.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    // `queue`'s `reserve(RESPONSE_HEAD_ROOM + response.body.len())` with `*` reserves more
    // than needed and queues the same bytes (memory only); with `-` it underflows for a body
    // longer than the room, which the test below catches.
    /// Answers every request with a body longer than the room kept for a head.
    struct Large;

    impl Handler for Large {
        async fn handle(&self, _request: Request) -> Outcome {
            Response::new(200, "text/plain", "x".repeat(4 * RESPONSE_HEAD_ROOM)).into()
        }
    }

    // With `-` for the `+` of `queue`'s `reserve(RESPONSE_HEAD_ROOM + response.body.len())`
    // the reservation underflows for a body longer than the room: this test. With `*` (an
    // equivalent mutant) more room is reserved than needed and the same bytes are queued:
    // memory only, nothing on the wire.
    #[test]
    fn a_body_larger_than_the_head_room_is_queued_whole() {
        let (addr, _open, stop, server) = start(Large);
        let mut stream = client(addr);
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .expect("send");
        let answer = one_response(&mut stream, false);
        assert!(
            answer.ends_with(&"x".repeat(4 * RESPONSE_HEAD_ROOM)),
            "{answer}"
        );
        drop(stop);
        server.join().expect("the server stops");
    }

    #[test]
    fn a_closing_connection_reads_what_the_client_still_sends_so_the_answer_survives() {
        let (addr, _open, stop, server) = start(Defaults);
        let mut stream = client(addr);
        // The answer's request, then 100 KiB the server never asked for, all before reading.
        let mut request = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".to_vec();
        request.extend(vec![b'x'; 100 * 1024]);
        stream.write_all(&request).expect("send");
        // Closing with those bytes unread would make the kernel reset the connection, and a
        // reset throws away the answer still waiting in our receive buffer.
        std::thread::sleep(Duration::from_millis(200));
        let answer = one_response(&mut stream, false);
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        // On loopback the answer is here before any reset could be, so check the reading
        // itself: it goes on while the client sends less than the cap, without a fault.
        for _ in 0..10 {
            std::thread::sleep(Duration::from_millis(30));
            stream
                .write_all(&[b'y'; 1024])
                .expect("still read by the lingering server");
        }
        let peer = stream.local_addr().expect("our address");
        let panicked = format!("peer={peer} connection task panicked");
        assert!(!crate::http::server::tests::logged(&panicked));
        drop(stop);
        server.join().expect("the server stops");
    }

    // `close`'s `discarded > LINGER_MAX_BYTES` with `>=` ends the linger one read sooner when
    // the client sent exactly the cap, a boundary no client can aim at: reads come in
    // whatever sizes the kernel hands over.
    #[test]
    fn lingering_ends_once_the_client_has_sent_its_cap() {
        let (addr, _open, stop, server) = start(Defaults);
        let mut stream = client(addr);
        stream.set_write_timeout(Some(WAIT)).expect("write timeout");
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .expect("send");
        one_response(&mut stream, false);
        // Keeps sending: the server must stop reading after LINGER_MAX_BYTES, not hold on
        // until LINGER_TIMEOUT. Our writes fail once it has closed.
        let started = Instant::now();
        let chunk = vec![b'x'; 16 * 1024];
        let mut sent = 0;
        while stream.write_all(&chunk).is_ok() && started.elapsed() < WAIT {
            sent += chunk.len();
        }
        let took = started.elapsed();
        assert!(sent >= LINGER_MAX_BYTES, "closed after only {sent} bytes");
        assert!(
            took < LINGER_TIMEOUT * 9 / 10,
            "still reading after {took:?} and {sent} bytes: the cap did not end the linger"
        );
        drop(stop);
        server.join().expect("the server stops");
    }

    #[test]
    fn a_response_not_written_in_time_is_given_up_with_a_warning() {
        assert_eq!(
            Limits::default().write_timeout,
            Duration::from_secs(10),
            "the README's"
        );
        let mut config = ServerConfig::default();
        config.limits.write_timeout = Duration::from_millis(200);
        let (addr, open, stop, server) = start_with(Huge, config);
        let stream = client(addr);
        (&stream)
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .expect("send");
        let asked = Instant::now();
        let peer = stream.local_addr().expect("our address");
        // We never read: the write stalls once the socket buffers are full.
        let line = format!("peer={peer} response not written within 200 ms (the client stopped");
        let deadline = Instant::now() + WAIT;
        while !crate::http::server::tests::logged(&line) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(crate::http::server::tests::logged(&line), "no {line:?}");
        assert!(
            asked.elapsed() >= Duration::from_millis(200),
            "not before the timeout"
        );
        let closed = Instant::now() + WAIT;
        while open.load(std::sync::atomic::Ordering::SeqCst) > 0 && Instant::now() < closed {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            open.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "and closed"
        );
        drop(stream);
        drop(stop);
        server.join().expect("the server stops");
    }

    /// Answers every request with more than the socket buffers on both sides hold.
    struct Huge;

    impl Handler for Huge {
        async fn handle(&self, _request: Request) -> Outcome {
            Response::new(200, "text/plain", vec![b'x'; 64 * 1024 * 1024]).into()
        }
    }

    #[test]
    fn the_idle_timeout_counts_from_the_start_of_each_wait() {
        let timeout = Duration::from_millis(300);
        let mut timer = IdleTimer::new(timeout);
        // A request takes a while: the timer made at the start must not cut the next wait
        // short. (The one test here that sleeps: the timer is the reactor's, not a policy
        // that could take the time as an argument.)
        std::thread::sleep(Duration::from_millis(200));
        let waiting = Instant::now();
        smol::block_on(timer.expired());
        let waited = waiting.elapsed();
        assert!(
            waited >= timeout,
            "idle for {waited:?}, less than {timeout:?}"
        );
        assert!(waited < timeout * 4, "idle for {waited:?}");
    }
}
