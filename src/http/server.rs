//! The server: an accept loop, one task per connection, and the keep-alive loop that reads a
//! request, hands it to a handler, and writes the response (RFC 9112 §9 connection management).
//!
//! ```text
//! accept ─► serve_connection: wait for bytes ─► head ─► framing/body ─► Handler ─► write
//!                 ▲                                                                   │
//!                 └──────────────── keep-alive, unless either side said close ◄───────┘
//! ```
//!
//! Every wait is bounded: the idle time between requests, the time a request takes to arrive,
//! the time a response takes to be written. A request that breaks the rules gets its status
//! and the connection is closed, because after a framing error nobody knows where the next
//! request would start.

use std::future::Future;
use std::io::{self, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::AssertUnwindSafe;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use futures_lite::{AsyncWriteExt, FutureExt};
use smol::Executor;
use smol::channel::{self, Receiver, Sender};
use socket2::{Domain, Protocol, Socket, Type};

use super::body::{BodyFraming, read_body, request_framing};
use super::conn::Conn;
use super::error::RequestError;
use super::head::read_request_head;
use super::limits::{
    ACCEPT_ERROR_PAUSE, LINGER_MAX_BYTES, LINGER_TIMEOUT, LISTEN_BACKLOG, Limits,
    PIPELINE_FLUSH_BYTES, SHUTDOWN_GRACE,
};
use super::message::{Request, Response, Version};
use super::trace::{self, ConnId, Direction};
use super::write::write_response;

/// What a service plugs into the server: a function from request to response.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request. Never fails: every outcome, errors included, is a response.
    fn handle(&self, request: Request) -> impl Future<Output = Response> + Send;

    /// Told about a request that could not be read, and the status it was answered with
    /// (`None`: the peer was gone). The default logs it.
    fn rejected(&self, peer: SocketAddr, error: &RequestError, status: Option<u16>) {
        log::warn!("peer={peer} status={status:?} error=\"{error}\"");
    }
}

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub limits: Limits,
    /// Threads that run connection tasks; one per core is the usual choice.
    pub threads: usize,
    /// How long requests in flight may take to finish once shutdown starts.
    pub shutdown_grace: Duration,
    /// Connections open right now. Shared, so a service can report it (e.g. in metrics).
    pub open_connections: Arc<AtomicUsize>,
    /// Set the moment shutdown begins, before the drain. Shared, like `open_connections`.
    pub draining: Arc<AtomicBool>,
}

impl ServerConfig {
    /// A view of this server's state for the handler: see `ServerStatus`. Take it once the
    /// limits are final.
    pub fn status(&self) -> ServerStatus {
        ServerStatus {
            open: self.open_connections.clone(),
            draining: self.draining.clone(),
            max_connections: self.limits.max_connections,
        }
    }
}

/// What a running server knows about itself that a handler may report, e.g. as readiness:
/// whether shutdown has begun, and whether the connection cap is reached. The server only
/// keeps these facts; what they mean to a client (a `/ready` route, its body) is the service's.
#[derive(Debug, Clone)]
pub struct ServerStatus {
    open: Arc<AtomicUsize>,
    draining: Arc<AtomicBool>,
    max_connections: usize,
}

impl ServerStatus {
    /// Whether shutdown has begun: from the signal on, through the drain.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Whether the connection cap is reached: a new connection now would be refused with 503.
    pub fn at_connection_cap(&self) -> bool {
        self.open.load(Ordering::SeqCst) >= self.max_connections
    }
}

impl Default for ServerStatus {
    /// The status of a server that is not running yet: not draining, far from any cap.
    fn default() -> Self {
        ServerConfig::default().status()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            limits: Limits::default(),
            threads: thread::available_parallelism().map_or(1, |n| n.get()),
            shutdown_grace: SHUTDOWN_GRACE,
            open_connections: Arc::new(AtomicUsize::new(0)),
            draining: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// Binds a listening socket. Separate from `serve`, so the caller can log the real address
/// (useful with port 0) before serving.
///
/// Built with socket2 rather than `TcpListener::bind` for one setting: the listen backlog.
/// std always asks for 128, and a burst of new connections past that makes the kernel drop
/// SYNs; the client retries only after a second.
pub fn bind(addr: SocketAddr) -> io::Result<Async<TcpListener>> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Lets a restarted service take its port back while old connections sit in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Async::new(TcpListener::from(socket))
}

/// Serves connections on `listener` until `shutdown` completes, then drains: stops accepting
/// at once, closes idle connections, lets requests in flight finish within the grace period.
/// Returns once every connection is closed or the grace period is over.
pub fn serve<H: Handler>(
    listener: Async<TcpListener>,
    handler: H,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let ex = Arc::new(Executor::new());
    // Closing `stop` (dropping its only sender) tells every waiter that shutdown has begun.
    let (stop_tx, stop_rx) = channel::bounded::<()>(1);
    // The extra executor threads run until `threads_done` is closed.
    let (threads_done_tx, threads_done_rx) = channel::bounded::<()>(1);
    let workers: Vec<_> = (1..config.threads.max(1))
        .map(|_| {
            let ex = ex.clone();
            let done = threads_done_rx.clone();
            thread::spawn(move || async_io::block_on(ex.run(done.recv())))
        })
        .collect();

    let server = Server {
        ex: ex.clone(),
        handler: Arc::new(handler),
        limits: Arc::new(config.limits),
        open: config.open_connections.clone(),
        stop: stop_rx,
    };
    // `async_io::block_on`, not `futures_lite`'s: while a thread has no task to run it waits
    // in epoll itself, so I/O readiness wakes the thread that will handle it. Otherwise
    // async-io's own background thread does all the waiting and hands every event over.
    let draining = config.draining.clone();
    async_io::block_on(ex.run(async {
        ex.spawn(async move {
            shutdown.await;
            // Before anything else: from now on the service may say it is going away.
            draining.store(true, Ordering::SeqCst);
            drop(stop_tx);
        })
        .detach();
        // The accept loop is a task of its own, polled only when its listener is ready.
        // (As the future given to `run` it would be polled on every wake-up of this thread,
        // each time trying a pointless `accept`.)
        ex.spawn(server.run(listener, config.shutdown_grace)).await;
    }));
    drop(threads_done_tx);
    for worker in workers {
        let _ = worker.join();
    }
}

/// The shared state of one running server.
struct Server<H> {
    ex: Arc<Executor<'static>>,
    handler: Arc<H>,
    limits: Arc<Limits>,
    /// Connections open right now.
    open: Arc<AtomicUsize>,
    /// Closed when shutdown begins.
    stop: Receiver<()>,
}

impl<H: Handler> Server<H> {
    /// Accepts until shutdown, then waits for the connections to finish.
    async fn run(self, listener: Async<TcpListener>, grace: Duration) {
        // Every connection task holds a clone of `alive`; when all are dropped, `recv` ends.
        let (alive_tx, alive_rx) = channel::bounded::<()>(1);
        self.accept_loop(&listener, &alive_tx).await;
        drop(listener);
        let in_flight = self.open.load(Ordering::SeqCst);
        log::info!(event = "drain_start", connections = in_flight;
            "shutdown: stopped accepting; draining {in_flight} connection(s)");
        drop(alive_tx);
        let drained = async { alive_rx.recv().await.is_err() }
            .or(async {
                Timer::after(grace).await;
                false
            })
            .await;
        let left = self.open.load(Ordering::SeqCst);
        if drained {
            log::info!(event = "drain_complete"; "shutdown: drain complete");
        } else {
            log::warn!(event = "drain_timeout", connections = left;
                "shutdown: grace period over, dropping {left} connection(s)");
        }
    }

    async fn accept_loop(&self, listener: &Async<TcpListener>, alive: &Sender<()>) {
        loop {
            let accepted = async { Some(listener.accept().await) }
                .or(async {
                    let _ = self.stop.recv().await;
                    None
                })
                .await;
            match accepted {
                None => return,
                Some(Ok((stream, peer))) => self.start_connection(stream, peer, alive.clone()),
                Some(Err(e)) => {
                    // Usually EMFILE (out of file descriptors). Pause instead of spinning;
                    // closing connections will free descriptors.
                    log::error!("accept failed: {e}");
                    Timer::after(ACCEPT_ERROR_PAUSE).await;
                }
            }
        }
    }

    fn start_connection(&self, stream: Async<TcpStream>, peer: SocketAddr, alive: Sender<()>) {
        if self.open.load(Ordering::Relaxed) >= self.limits.max_connections {
            refuse(stream.into_inner().ok(), peer);
            return;
        }
        // Responses are written whole; Nagle's algorithm would only delay them.
        let _ = stream.get_ref().set_nodelay(true);
        let guard = OpenGuard::new(self.open.clone(), alive);
        let task = serve_connection(
            stream,
            peer,
            self.handler.clone(),
            self.limits.clone(),
            self.stop.clone(),
        );
        self.ex
            .spawn(async move {
                let _guard = guard;
                if AssertUnwindSafe(task).catch_unwind().await.is_err() {
                    log::error!("peer={peer} connection task panicked; connection dropped");
                }
            })
            .detach();
    }
}

/// Counts a connection as open for as long as it lives.
struct OpenGuard {
    open: Arc<AtomicUsize>,
    _alive: Sender<()>,
}

impl OpenGuard {
    fn new(open: Arc<AtomicUsize>, alive: Sender<()>) -> Self {
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

/// Over the connection cap: one non-blocking attempt to say so, then close. No task is
/// spawned, so a flood costs us nothing but the accept.
fn refuse(stream: Option<TcpStream>, peer: SocketAddr) {
    log::warn!(peer:% = peer, status = 503, error = "connection limit reached";
        "peer={peer} status=503 error=\"connection limit reached\"");
    if let Some(mut stream) = stream {
        let mut busy = Vec::new();
        let response = Response::json_error(503, "too many connections");
        write_response(&mut busy, &response, Version::Http11, false, true);
        let _ = stream.write(&busy);
        let _ = stream.shutdown(Shutdown::Both);
    }
}

/// One connection's keep-alive loop.
async fn serve_connection<H: Handler>(
    stream: Async<TcpStream>,
    peer: SocketAddr,
    handler: Arc<H>,
    limits: Arc<Limits>,
    stop: Receiver<()>,
) {
    let mut conn = Conn::new(stream);
    // Responses waiting to be written. Pipelined requests' answers are sent in one write.
    let mut out = Vec::new();
    let mut idle_timer = IdleTimer::new(limits.idle_timeout);
    // Completes when shutdown begins. Made once per connection, like the idle timer: every
    // `recv` registers with the one channel all connections share, and doing that per request
    // would take a lock that both threads contend for, twice per request.
    let mut shutdown = pin!(stop.recv());
    loop {
        // 1. Between requests: send what is pending, then wait for the next first byte.
        if conn.buffered().is_empty() {
            if flush(&mut conn, &mut out, &limits).await.is_err() {
                return;
            }
            if !next_request_starts(&mut conn, &mut idle_timer, shutdown.as_mut(), &stop).await {
                return;
            }
        } else if !out.is_empty() && !holds_a_head(conn.buffered()) {
            // Only the start of the next pipelined request is here. Send the answers before
            // it now: its rest may be slow to come, or the client may wait for them first.
            // The rule (RFC 9112 §9.3.2): answers we owe go out before any wait on the
            // network. This is its half for a head; `read_request` has the half for a body.
            if flush(&mut conn, &mut out, &limits).await.is_err() {
                return;
            }
        }
        // 2. The request, from its first byte to its last, within the request timeout.
        // (`or` polls the read first; the timer only registers with the reactor if the
        // request is not here whole yet, so the usual request costs no timer at all.)
        let deadline = Instant::now() + limits.request_timeout;
        let read = read_request(&mut conn, &limits, &mut out)
            .or(async {
                Timer::at(deadline).await;
                Err(RequestError::Timeout)
            })
            .await;
        let request = match read {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(error) => return reject(conn, out, peer, &*handler, &limits, error).await,
        };
        // 3. The answer. We close after it if the client asked, or if we are shutting down,
        // which is checked once the answer is ready: shutdown may begin while it is made.
        let client_closes = !request.head.keeps_alive();
        let version = request.head.version;
        let head_only = request.head.method == "HEAD";
        let response = handler.handle(request).await;
        if response.hang_up {
            return;
        }
        let close = client_closes || stop.is_closed();
        queue_response(&mut out, conn.id, &response, version, head_only, close);
        if close {
            if flush(&mut conn, &mut out, &limits).await.is_ok() {
                linger_close(conn).await;
            }
            return;
        }
        if out.len() >= PIPELINE_FLUSH_BYTES && flush(&mut conn, &mut out, &limits).await.is_err() {
            return;
        }
    }
}

/// Whether `buffered` holds a whole request head (up to its empty line). If it does not,
/// reading that request must wait for the network, and pending answers go out first.
fn holds_a_head(buffered: &[u8]) -> bool {
    buffered.windows(4).any(|w| w == b"\r\n\r\n") || buffered.windows(2).any(|w| w == b"\n\n")
}

/// Waits for the first byte of a next request. `false`: the peer closed, stayed idle past the
/// idle timeout, or shutdown began — in every case the connection simply ends.
async fn next_request_starts<F: Future>(
    conn: &mut Conn<Async<TcpStream>>,
    idle_timer: &mut IdleTimer,
    shutdown: Pin<&mut F>,
    stop: &Receiver<()>,
) -> bool {
    if stop.is_closed() {
        return false;
    }
    let idle = async {
        idle_timer.expired().await;
        false
    };
    let stopped = async {
        shutdown.await;
        false
    };
    // Wait until the socket is readable, then read. Reading first would fail with EAGAIN
    // (twice, the way async-io retries) before waiting: two wasted syscalls per request.
    let first_bytes = async {
        conn.stream.readable().await.is_ok() && matches!(conn.fill().await, Ok(n) if n > 0)
    };
    first_bytes.or(idle).or(stopped).await
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

/// Reads one request: head, framing, `Expect`, body. `Ok(None)`: clean end of stream.
async fn read_request(
    conn: &mut Conn<Async<TcpStream>>,
    limits: &Limits,
    out: &mut Vec<u8>,
) -> Result<Option<Request>, RequestError> {
    let Some(head) = read_request_head(conn, limits).await? else {
        return Ok(None);
    };
    let framing = request_framing(&head)?;
    if expects_continue(&head.version, &head.headers)? && framing != BodyFraming::Empty {
        // The client waits for our go-ahead before sending the body (RFC 9110 §10.1.1). If the
        // body is announced too large, refuse now instead of inviting it.
        if matches!(framing, BodyFraming::Length(n) if n > limits.max_body_bytes as u64) {
            return Err(RequestError::BodyTooLarge);
        }
        let interim = b"HTTP/1.1 100 Continue\r\n\r\n";
        trace::head(conn.id, Direction::Sent, interim);
        out.extend_from_slice(interim);
        flush(conn, out, limits).await?;
    }
    // Answers to earlier pipelined requests go out before we wait for this body: the client
    // may hold the rest of it back until it has them (the same rule as in `serve_connection`).
    if !body_is_buffered(framing, conn.buffered().len()) {
        flush(conn, out, limits).await?;
    }
    // Our routes take no body, but it must still be read so the next request on this
    // connection starts at the right byte.
    let body = read_body(conn, framing, limits.max_body_bytes).await?;
    Ok(Some(Request { head, body }))
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
fn expects_continue(
    version: &Version,
    headers: &super::message::Headers,
) -> Result<bool, RequestError> {
    if *version == Version::Http10 || headers.get("expect").is_none() {
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

/// A request could not be read: answer with its status (when there is one) and close.
async fn reject<H: Handler>(
    mut conn: Conn<Async<TcpStream>>,
    mut out: Vec<u8>,
    peer: SocketAddr,
    handler: &H,
    limits: &Limits,
    error: RequestError,
) {
    let status = error.status();
    trace::unparsed(conn.id, conn.buffered());
    handler.rejected(peer, &error, status);
    let Some(status) = status else { return };
    let response = Response::json_error(status, &error.to_string());
    queue_response(&mut out, conn.id, &response, Version::Http11, false, true);
    if flush(&mut conn, &mut out, limits).await.is_ok() {
        linger_close(conn).await;
    }
}

/// Appends a response to the pending output (see `write_response`), and to the wire trace.
fn queue_response(
    out: &mut Vec<u8>,
    id: ConnId,
    response: &Response,
    version: Version,
    head_only: bool,
    close: bool,
) {
    let start = out.len();
    write_response(out, response, version, head_only, close);
    trace::message(id, Direction::Sent, &out[start..]);
}

/// Writes everything pending in `out`, within the write timeout.
async fn flush(
    conn: &mut Conn<Async<TcpStream>>,
    out: &mut Vec<u8>,
    limits: &Limits,
) -> io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let written = conn.stream.write_all(out).or(async {
        Timer::after(limits.write_timeout).await;
        Err(io::ErrorKind::TimedOut.into())
    });
    let result = written.await;
    out.clear();
    result
}

/// Closes a connection so that the last response survives (RFC 9112 §9.6): shut our sending
/// side first, then read and drop what the client still sends for a moment. Closing a socket
/// with unread input makes the kernel send a reset, which can destroy the response before the
/// client has read it.
async fn linger_close(mut conn: Conn<Async<TcpStream>>) {
    let _ = conn.stream.get_ref().shutdown(Shutdown::Write);
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
