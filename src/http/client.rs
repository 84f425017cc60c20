//! The client side: B sending `GET` to an upstream and reading its response (RFC 9112 §3–§9),
//! with kept-alive connections reused from a small pool, and one deadline over the exchange.
//!
//! ```text
//! get ─► pooled or new connection ─► write request ─► read head ─► framing/body ─► response
//!   └── all raced against one Timer: if it fires first, we say in which phase we were.
//! ```
//!
//! Most exchanges are over by the time the task runs again after sending: A answers while
//! this thread runs other tasks. So the client reads A's answer after one yield, without
//! waiting for it ([`first_bytes`]), and arms the deadline's timer only if the exchange is
//! still under way then. Both waits cost system calls a read that finds the answer does not
//! (`bench/README.md`, "What made it faster").
//!
//! The client only speaks HTTP. Whether a 500 or a body that is not JSON is a failure is for
//! the caller to decide.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use futures_lite::{AsyncWriteExt, FutureExt, future};

use super::body::{BodyFraming, read_body, response_framing};
use super::conn::BufferedStream;
use super::deadline::Deadline;
use super::error::{BodyError, ResponseHeadError};
use super::head::parse_response_head;
use super::limits::ClientLimits;
use super::message::{ResponseHead, keeps_alive};
use super::wire_trace::{self, Direction};
use super::write::write_request;

/// The port when a URL names none (RFC 9110 §4.2.1).
const HTTP_DEFAULT_PORT: u16 = 80;

/// Splits `host[:port]` (RFC 3986 §3.2.2, §3.2.3). An IPv6 address goes in brackets,
/// `[::1]:8080` or `[::1]`, since its own colons would read as a port; the brackets are not
/// part of the host returned.
fn split_authority(authority: &str) -> Result<(&str, u16), String> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| "an IPv6 address without its closing ]".to_owned())?;
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(format!("{after:?} after the IPv6 address")),
            },
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, _)) if host.contains(':') => {
                return Err("an IPv6 address goes in brackets: http://[::1]:8080".to_owned());
            }
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => HTTP_DEFAULT_PORT,
        Some(port) => port
            .parse::<u16>()
            .map_err(|_| format!("bad port {port:?}"))?,
    };
    Ok((host, port))
}

/// Where an upstream lives, from a URL like `http://127.0.0.1:8080`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
}

impl Upstream {
    /// Parses `http://host[:port][/]`. Only plain `http` and an empty path are accepted: the
    /// client adds its own paths.
    pub fn from_url(url: &str) -> Result<Upstream, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url:?}: only http:// URLs are supported"))?;
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
            return Err(format!("{url:?}: expected http://host:port"));
        }
        let (host, port) = split_authority(authority).map_err(|what| format!("{url:?}: {what}"))?;
        if host.is_empty() {
            return Err(format!("{url:?}: missing host"));
        }
        Ok(Upstream {
            host: host.to_owned(),
            port,
        })
    }

    /// `host:port`, as it goes in the `Host` field (RFC 9110 §7.2).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The phases of one exchange, in order. A timeout names the one it interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    Connect,
    Send,
    ResponseHead,
    Body,
}

impl Phase {
    fn from_u8(n: u8) -> Phase {
        match n {
            0 => Phase::Connect,
            1 => Phase::Send,
            2 => Phase::ResponseHead,
            _ => Phase::Body,
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Connect => "connecting",
            Phase::Send => "sending the request",
            Phase::ResponseHead => "waiting for the response head",
            Phase::Body => "reading the response body",
        })
    }
}

/// Why an exchange failed.
#[derive(Debug)]
pub enum ClientError {
    /// No connection could be made (refused, unreachable, reset while connecting).
    Connect(io::Error),
    /// The deadline passed during `phase`.
    Timeout {
        phase: Phase,
        budget: Duration,
        elapsed: Duration,
    },
    /// The connection ended (or was reset) before the response was complete.
    Closed { phase: Phase, detail: String },
    /// The upstream sent something that is not a usable HTTP response.
    BadResponse(String),
}

impl ClientError {
    /// A short machine-readable name for the failure.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientError::Connect(_) => "connect",
            ClientError::Timeout { .. } => "timeout",
            ClientError::Closed { .. } => "closed",
            ClientError::BadResponse(_) => "bad_response",
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connect(e) => write!(f, "cannot connect: {e}"),
            ClientError::Timeout {
                phase,
                budget,
                elapsed,
            } => write!(
                f,
                "deadline of {} ms passed while {phase} (after {:.1} ms)",
                budget.as_millis(),
                elapsed.as_secs_f64() * 1000.0
            ),
            ClientError::Closed { phase, detail } => {
                write!(f, "connection closed while {phase}: {detail}")
            }
            ClientError::BadResponse(what) => write!(f, "bad response: {what}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// A response read in full.
#[derive(Debug, Clone)]
pub struct ClientResponse {
    pub head: ResponseHead,
    pub body: Vec<u8>,
}

/// A failed attempt, and whether any byte of the response had arrived (see `get`).
struct FailedAttempt {
    error: ClientError,
    response_started: bool,
}

type Stream = BufferedStream<Async<TcpStream>>;

/// Whether a request may be sent again (RFC 9110 §9.2.2), which decides whether it may go on
/// a pooled connection that may turn out to be stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Idempotent {
    Yes,
    No,
}

/// A connection and when it was opened: pooled connections have a maximum age.
struct Aged {
    conn: Stream,
    opened: Instant,
}

/// An idle kept-alive connection and when it was put back.
struct Idle {
    conn: Aged,
    since: Instant,
}

/// An HTTP/1.1 client for one upstream, with a bounded pool of kept-alive connections.
pub struct Client {
    upstream: Upstream,
    /// Where to connect when the caller already resolved the name (one replica of several);
    /// `None` looks `upstream.host` up on every new connection.
    address: Option<SocketAddr>,
    authority: String,
    limits: ClientLimits,
    idle: Mutex<Vec<Idle>>,
}

impl Client {
    pub fn new(upstream: Upstream, limits: ClientLimits) -> Client {
        Client {
            authority: upstream.authority(),
            upstream,
            address: None,
            limits,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// A client for one address of `upstream` (a replica): it connects to `address` and
    /// still names `upstream` in the `Host` field.
    pub fn to_address(upstream: Upstream, address: SocketAddr, limits: ClientLimits) -> Client {
        Client {
            address: Some(address),
            ..Client::new(upstream, limits)
        }
    }

    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// How many kept-alive connections are waiting in the pool.
    pub fn idle_connections(&self) -> usize {
        self.idle.lock().map_or(0, |idle| idle.len())
    }

    /// Sends `GET target` with extra header fields, and reads the whole response, all before
    /// `deadline`. Any status is a success here; only broken HTTP or I/O is an error.
    pub async fn get(
        &self,
        target: &str,
        headers: &[(&str, &str)],
        deadline: Deadline,
    ) -> Result<ClientResponse, ClientError> {
        let mut request = Vec::with_capacity(128);
        write_request(&mut request, "GET", target, &self.authority, headers, b"");
        self.send(&request, Idempotent::Yes, deadline).await
    }

    /// `get`'s twin for `POST target` with `body`. POST is not idempotent (RFC 9110 §9.2.2):
    /// it always goes on a new connection, so that it never needs sending twice.
    pub async fn post(
        &self,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        deadline: Deadline,
    ) -> Result<ClientResponse, ClientError> {
        let mut request = Vec::with_capacity(128 + body.len());
        write_request(&mut request, "POST", target, &self.authority, headers, body);
        self.send(&request, Idempotent::No, deadline).await
    }

    /// One exchange of `request`, all before `deadline`.
    async fn send(
        &self,
        request: &[u8],
        idempotent: Idempotent,
        deadline: Deadline,
    ) -> Result<ClientResponse, ClientError> {
        let phase = AtomicU8::new(Phase::Connect as u8);
        let timeout = async {
            // Registering a `Timer` wakes the reactor to take it into account: an eventfd
            // `write`, then a turn of the reactor (five more system calls). After one yield most
            // exchanges are over and this future is never polled again; the deadline is the
            // same instant either way.
            future::yield_now().await;
            Timer::at(deadline.at()).await;
            Err(ClientError::Timeout {
                phase: Phase::from_u8(phase.load(Ordering::Relaxed)),
                budget: deadline.budget(),
                elapsed: deadline.elapsed(),
            })
        };
        self.exchange(request, idempotent, &phase).or(timeout).await
    }

    async fn exchange(
        &self,
        request: &[u8],
        idempotent: Idempotent,
        phase: &AtomicU8,
    ) -> Result<ClientResponse, ClientError> {
        let pooled = match idempotent {
            Idempotent::Yes => self.checkout(Instant::now()),
            Idempotent::No => None,
        };
        if let Some(conn) = pooled {
            match self.attempt(conn, request, phase).await {
                Ok(response) => return Ok(response),
                // GET is idempotent (RFC 9110 §9.2.2), so it may be sent again. A reused
                // connection that fails before any byte of the response has arrived was most
                // likely closed by the upstream while it sat in our pool (RFC 9112 §9.3.1):
                // retry once, on a fresh connection, still under the same deadline.
                Err(FailedAttempt {
                    response_started: false,
                    error,
                }) => log::debug!("stale pooled connection ({error}); retrying on a new one"),
                Err(failure) => return Err(failure.error),
            }
        }
        phase.store(Phase::Connect as u8, Ordering::Relaxed);
        let conn = self.connect().await.map_err(ClientError::Connect)?;
        self.attempt(conn, request, phase)
            .await
            .map_err(|failure| failure.error)
    }

    /// A connection from the pool, newest first; ones idle for too long are closed. `now` is
    /// a parameter so that the unit tests can step over the idle limit without waiting.
    fn checkout(&self, now: Instant) -> Option<Aged> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(entry) = idle.pop() {
            if now.saturating_duration_since(entry.since) < self.limits.idle_timeout {
                return Some(entry.conn);
            }
        }
        None
    }

    /// Puts a connection back for reuse at `now`, unless the pool is full or the connection
    /// has reached its maximum age (see `ClientLimits::max_connection_age`).
    fn checkin(&self, mut conn: Aged, now: Instant) {
        if now.saturating_duration_since(conn.opened) >= self.limits.max_connection_age {
            return;
        }
        // An idle connection keeps no read buffer: a pool of many would hold 4 KiB each for
        // nothing (the next exchange allocates one again, as a server connection does).
        conn.conn.release_buffer();
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.limits.max_idle_per_upstream
        {
            idle.push(Idle { conn, since: now });
        }
    }

    async fn connect(&self) -> io::Result<Aged> {
        let addr = self.resolve().await?;
        let stream = Async::<TcpStream>::connect(addr).await?;
        stream.get_ref().set_nodelay(true)?;
        Ok(Aged {
            conn: BufferedStream::outbound(stream),
            opened: Instant::now(),
        })
    }

    /// A given address or an IP literal is used as is; a name is looked up (on smol's
    /// blocking thread pool).
    async fn resolve(&self) -> io::Result<SocketAddr> {
        if let Some(address) = self.address {
            return Ok(address);
        }
        if let Ok(ip) = self.upstream.host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, self.upstream.port));
        }
        let addrs = smol::net::resolve((self.upstream.host.as_str(), self.upstream.port)).await?;
        addrs
            .into_iter()
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "name resolved to no address"))
    }

    /// One request/response on one connection. On success the connection goes back to the
    /// pool if it can carry another exchange.
    async fn attempt(
        &self,
        aged: Aged,
        request: &[u8],
        phase: &AtomicU8,
    ) -> Result<ClientResponse, FailedAttempt> {
        let Aged { mut conn, opened } = aged;
        phase.store(Phase::Send as u8, Ordering::Relaxed);
        wire_trace::message(conn.id, Direction::Sent, request);
        if let Err(e) = conn.stream.write_all(request).await {
            return Err(closed(Phase::Send, e.to_string(), false));
        }
        phase.store(Phase::ResponseHead as u8, Ordering::Relaxed);
        let head = self.read_head(&mut conn).await?;
        phase.store(Phase::Body as u8, Ordering::Relaxed);
        let framing = response_framing(&head, false)
            .map_err(|e| bad_response(format!("{e} in the response")))?;
        // A Transfer-Encoding without a final `chunked` means the body runs to the close
        // (RFC 9112 §6.3, rule 4), but it is still in that coding, which we do not decode
        // (`deflate`, `x-custom`, even `chunked, identity`): the bytes are not the content,
        // so there is nothing to hand the caller. Refused now, instead of after waiting for
        // the close; the connection is dropped, so no framing is left in doubt.
        if framing == BodyFraming::UntilClose
            && let Some(codings) = head.headers.get("transfer-encoding")
        {
            return Err(bad_response(format!(
                "response body in a transfer coding we do not decode ({})",
                String::from_utf8_lossy(codings)
            )));
        }
        let body = read_body(&mut conn, framing, self.limits.max_body_bytes)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge => bad_response(format!(
                    "response body over {} bytes",
                    self.limits.max_body_bytes
                )),
                BodyError::BadChunk(what) => bad_response(format!("bad chunked body: {what}")),
                BodyError::Closed => closed(Phase::Body, "body incomplete".into(), true),
                BodyError::Io(e) => closed(Phase::Body, e.to_string(), true),
            })?;
        // Reuse only a connection whose response ended by its own framing, with no stray
        // bytes after it, and on which neither side asked to close (RFC 9112 §9.3).
        let reusable = framing != BodyFraming::UntilClose
            && keeps_alive(head.version, &head.headers)
            && conn.buffered().is_empty();
        if reusable {
            self.checkin(Aged { conn, opened }, Instant::now());
        }
        Ok(ClientResponse { head, body })
    }

    /// Reads a final response head, skipping any interim 1xx responses (RFC 9110 §15.2).
    async fn read_head(&self, conn: &mut Stream) -> Result<ResponseHead, FailedAttempt> {
        loop {
            let head = self.read_one_head(conn).await?;
            if !(100..200).contains(&head.status) || head.status == 101 {
                return Ok(head);
            }
        }
    }

    async fn read_one_head(&self, conn: &mut Stream) -> Result<ResponseHead, FailedAttempt> {
        loop {
            let parsed = parse_response_head(
                conn.buffered(),
                self.limits.max_head_bytes,
                self.limits.max_headers,
            );
            match parsed {
                Ok(Some((head, len))) => {
                    wire_trace::head(conn.id, Direction::Received, &conn.buffered()[..len]);
                    conn.consume(len);
                    return Ok(head);
                }
                Ok(None) => {}
                Err(ResponseHeadError::TooLarge) => {
                    return Err(bad_response(format!(
                        "response head over {} bytes or {} fields",
                        self.limits.max_head_bytes, self.limits.max_headers
                    )));
                }
                Err(ResponseHeadError::Malformed(what)) => {
                    return Err(bad_response(format!("malformed response head: {what}")));
                }
            }
            let started = !conn.buffered().is_empty();
            let read = if started {
                conn.fill().await
            } else {
                first_bytes(conn).await
            };
            match read {
                Ok(0) => {
                    let detail = "no complete response head".to_owned();
                    return Err(closed(Phase::ResponseHead, detail, started));
                }
                Ok(_) => {}
                Err(e) => return Err(closed(Phase::ResponseHead, e.to_string(), started)),
            }
        }
    }
}

/// Reads the first bytes of a response. A's answer usually arrives while this thread runs
/// other tasks, so the task lets them run once (a yield), then reads without waiting. Only if
/// nothing has come yet does it wait for readability, which costs more than a read that finds
/// nothing: async-io re-arms the socket's one-shot interest (`epoll_ctl`), and the task sleeps
/// until a turn of the reactor wakes it. While it waits it holds no read buffer, like a server
/// connection between requests (every call waiting for A would hold 4 KiB).
async fn first_bytes(conn: &mut Stream) -> io::Result<usize> {
    future::yield_now().await;
    if let Some(n) = conn.try_fill()? {
        return Ok(n);
    }
    conn.release_buffer();
    // An error here shows up again in the read.
    let _ = conn.stream.readable().await;
    conn.fill().await
}

fn closed(phase: Phase, detail: String, response_started: bool) -> FailedAttempt {
    FailedAttempt {
        error: ClientError::Closed { phase, detail },
        response_started,
    }
}

fn bad_response(what: String) -> FailedAttempt {
    FailedAttempt {
        error: ClientError::BadResponse(what),
        response_started: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls() {
        let up = Upstream::from_url("http://127.0.0.1:8080").expect("valid");
        assert_eq!((up.host.as_str(), up.port), ("127.0.0.1", 8080));
        assert_eq!(up.authority(), "127.0.0.1:8080");
        let up = Upstream::from_url("http://service-a/").expect("valid");
        assert_eq!((up.host.as_str(), up.port), ("service-a", 80));
        let up = Upstream::from_url("http://[::1]:9000").expect("valid");
        assert_eq!((up.host.as_str(), up.port), ("::1", 9000));
        assert_eq!(up.authority(), "[::1]:9000");
        for (url, port) in [
            ("http://[::1]", 80),
            ("http://[::1]/", 80),
            ("http://[fe80::2]:81", 81),
        ] {
            let up = Upstream::from_url(url).expect(url);
            assert_eq!(up.port, port, "{url}");
            assert!(
                up.host.contains(':') && !up.host.contains('['),
                "{url}: {}",
                up.host
            );
        }
        for bad in [
            "https://a:1",
            "a:1",
            "http://",
            "http://a:x",
            "http://a:1/path",
            "http://:80",
            "http://[::1",
            "http://[::1]80",
            "http://[::1]:x",
            "http://::1:80",
            "http://[]:80",
            "http://user@a:1",
            "http://a?x",
        ] {
            assert!(Upstream::from_url(bad).is_err(), "{bad}");
        }
    }

    /// A connection as the pool holds it, to a listener on loopback: the pool tests need real
    /// sockets, but never a real wait, since `checkin` and `checkout` take the time.
    fn connection_opened_at(listener: &std::net::TcpListener, opened: Instant) -> Aged {
        let stream = TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
        // Accepted and dropped at once, so the backlog never fills: the client's end stays open.
        drop(listener.accept().expect("accept"));
        let stream = Async::new(stream).expect("register with the reactor");
        Aged {
            conn: BufferedStream::outbound(stream),
            opened,
        }
    }

    fn pool_test_client() -> (Client, std::net::TcpListener) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let upstream = Upstream::from_url("http://127.0.0.1:1").expect("valid");
        (Client::new(upstream, ClientLimits::default()), listener)
    }

    #[test]
    fn a_pooled_connection_is_trusted_for_20_s_idle_and_not_a_moment_longer() {
        let (client, listener) = pool_test_client();
        let trust = Duration::from_secs(20); // docs/contract.md's promise
        let t0 = Instant::now();
        client.checkin(connection_opened_at(&listener, t0), t0);
        let just_inside = t0 + trust - Duration::from_millis(1);
        assert!(
            client.checkout(just_inside).is_some(),
            "idle 19.999 s: reused"
        );

        client.checkin(connection_opened_at(&listener, t0), t0);
        assert!(
            client.checkout(t0 + trust).is_none(),
            "idle 20 s: not reused"
        );
        assert_eq!(
            client.idle_connections(),
            0,
            "the stale connection is closed, not kept"
        );
    }

    #[test]
    fn the_pool_holds_at_most_1024_idle_connections() {
        let (client, listener) = pool_test_client();
        let now = Instant::now();
        for _ in 0..1025 {
            client.checkin(connection_opened_at(&listener, now), now);
        }
        assert_eq!(
            client.idle_connections(),
            1024,
            "the 1025th is closed, not pooled"
        );
        // Newest first: the pool is a stack, so a burst reuses the warmest connections.
        for taken in 1..=1024 {
            assert!(client.checkout(now).is_some(), "connection {taken} of 1024");
        }
        assert!(client.checkout(now).is_none());
    }

    #[test]
    fn a_pooled_connection_holds_no_read_buffer() {
        let (client, listener) = pool_test_client();
        let now = Instant::now();
        let mut used = connection_opened_at(&listener, now);
        // A read allocates the buffer (the peer has gone, so it reads the end of stream).
        let _ = smol::block_on(used.conn.fill());
        assert!(used.conn.buffer_capacity() > 0);
        client.checkin(used, now);
        let pooled = client.checkout(now).expect("pooled");
        assert_eq!(pooled.conn.buffer_capacity(), 0);
    }

    #[test]
    fn a_connection_is_reused_for_at_most_60_s_in_all() {
        let (client, listener) = pool_test_client();
        let age = Duration::from_secs(60); // `ClientLimits::max_connection_age`
        let t0 = Instant::now();
        client.checkin(
            connection_opened_at(&listener, t0),
            t0 + age - Duration::from_millis(1),
        );
        assert_eq!(client.idle_connections(), 1, "59.999 s old: pooled");
        client.checkin(connection_opened_at(&listener, t0), t0 + age);
        assert_eq!(client.idle_connections(), 1, "60 s old: closed, not pooled");
    }

    /// The send phase has a deadline too. B's real requests are small enough to fit in the
    /// kernel's socket buffers, so an upstream that stops reading cannot stall them; a request
    /// larger than both buffers (the sender's and the receiver's, a few MiB each on loopback)
    /// can, and must time out in `Send`, not hang.
    #[test]
    fn an_upstream_that_stops_reading_times_out_the_send_phase() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        // Accepts, then holds the connection without reading a byte, until the test is done.
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            let _ = wait.recv();
            drop(stream);
        });
        let upstream = Upstream::from_url(&format!("http://{address}")).expect("valid");
        let client = Client::new(upstream, ClientLimits::default());
        let huge = "x".repeat(64 * 1024 * 1024);
        let deadline = Deadline::after(Duration::from_millis(300));
        let result = smol::block_on(client.get("/", &[("X-Padding", huge.as_str())], deadline));
        match result {
            Err(ClientError::Timeout {
                phase: Phase::Send, ..
            }) => {}
            other => panic!("expected a timeout in the send phase, got {other:?}"),
        }
        drop(done);
        holder.join().expect("holder thread");
    }

    #[test]
    fn a_phase_survives_its_trip_through_the_atomic() {
        for phase in [
            Phase::Connect,
            Phase::Send,
            Phase::ResponseHead,
            Phase::Body,
        ] {
            let back = Phase::from_u8(phase as u8);
            assert_eq!(back.to_string(), phase.to_string());
        }
    }

    #[test]
    fn a_client_to_an_address_connects_there_and_names_the_upstream_in_host() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                io::Read::read_exact(&mut stream, &mut byte).expect("the request head");
                head.push(byte[0]);
            }
            io::Write::write_all(&mut stream, b"HTTP/1.1 204 No Content\r\n\r\n").expect("answer");
            String::from_utf8_lossy(&head).into_owned()
        });
        // A name that resolves nowhere: only the given address can be reached.
        let upstream = Upstream::from_url("http://replica.invalid:9").expect("valid");
        let client = Client::to_address(upstream, address, ClientLimits::default());
        let deadline = Deadline::after(Duration::from_secs(5));
        let response = smol::block_on(client.get("/echo", &[], deadline)).expect("an answer");
        assert_eq!(response.head.status, 204);
        let head = server.join().expect("the fake upstream");
        assert!(head.contains("\r\nHost: replica.invalid:9\r\n"), "{head}");
    }

    /// A pooled connection to A, and A's end of it.
    fn connection_to_a() -> (Stream, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let stream = TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
        let (a_side, _) = listener.accept().expect("accept");
        let stream = Async::new(stream).expect("register with the reactor");
        (BufferedStream::outbound(stream), a_side)
    }

    /// Polls `future` once and gives what it returned, if anything. Nothing waits in between,
    /// so no turn of the reactor runs: a future that needs one stays pending.
    fn poll_without_waiting<F: Future + Unpin>(future: &mut F) -> Option<F::Output> {
        smol::block_on(future::poll_once(future))
    }

    #[test]
    fn an_answer_there_after_one_yield_is_read_without_a_wait() {
        let (mut conn, mut a_side) = connection_to_a();
        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        io::Write::write_all(&mut a_side, answer).expect("A answers");
        // The bytes reach our socket's queue before `write_all` returns, on loopback.
        let mut read = Box::pin(first_bytes(&mut conn));
        assert!(
            poll_without_waiting(&mut read).is_none(),
            "the first poll yields"
        );
        let n = poll_without_waiting(&mut read).expect("read without waiting on the reactor");
        assert_eq!(n.expect("no error"), answer.len());
        drop(read);
        assert_eq!(conn.buffered(), answer);
    }

    #[test]
    fn while_it_waits_for_the_first_byte_a_connection_holds_no_read_buffer() {
        let (mut conn, mut a_side) = connection_to_a();
        let mut read = Box::pin(first_bytes(&mut conn));
        assert!(
            poll_without_waiting(&mut read).is_none(),
            "the first poll yields"
        );
        assert!(
            poll_without_waiting(&mut read).is_none(),
            "nothing yet: it waits"
        );
        drop(read);
        assert_eq!(
            conn.buffer_capacity(),
            0,
            "the buffer went back before the wait"
        );

        // A later answer is read once the reactor says the socket is readable.
        io::Write::write_all(&mut a_side, b"HTTP/1.1 204 No Content\r\n\r\n").expect("A answers");
        let n = smol::block_on(first_bytes(&mut conn)).expect("no error");
        assert_eq!(&conn.buffered()[..n], b"HTTP/1.1 204 No Content\r\n\r\n");
    }

    #[test]
    fn a_connection_a_closed_reads_the_end_of_stream_after_the_yield() {
        let (mut conn, a_side) = connection_to_a();
        drop(a_side);
        // The pool's stale connection: the end of stream, so `exchange` tries a new one.
        assert_eq!(smol::block_on(first_bytes(&mut conn)).expect("no error"), 0);
    }

    // No test here sees the yield before the deadline's `Timer` is armed in `send`: without
    // it the timer is registered at once, with the same instant, so every deadline is kept
    // the same; only the system calls differ (`bench/syscalls.sh`). An equivalent mutant.
    #[test]
    fn interim_responses_are_skipped() {
        for (interim, status) in [("HTTP/1.1 100 Continue\r\n\r\n", 200), ("", 200)] {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let address = listener.local_addr().expect("address");
            let answer = format!("{interim}HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            let server = std::thread::spawn(move || {
                let (mut stream, _) = listener.accept().expect("accept");
                io::Write::write_all(&mut stream, answer.as_bytes()).expect("answer");
                let _ = io::Read::read(&mut stream, &mut [0u8; 1024]);
            });
            let upstream = Upstream::from_url(&format!("http://{address}")).expect("valid");
            let client = Client::new(upstream, ClientLimits::default());
            let deadline = Deadline::after(Duration::from_secs(5));
            let response = smol::block_on(client.get("/", &[], deadline)).expect("an answer");
            assert_eq!(response.head.status, status, "after {interim:?}");
            assert_eq!(response.body, b"ok");
            drop(client);
            server.join().expect("the fake upstream");
        }
    }

    #[test]
    fn timeout_text_names_the_phase() {
        let e = ClientError::Timeout {
            phase: Phase::ResponseHead,
            budget: Duration::from_millis(1000),
            elapsed: Duration::from_micros(1_000_400),
        };
        assert_eq!(
            e.to_string(),
            "deadline of 1000 ms passed while waiting for the response head (after 1000.4 ms)"
        );
        assert_eq!(e.kind(), "timeout");
    }
}
