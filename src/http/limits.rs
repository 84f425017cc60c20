//! Every limit of the HTTP layer, in one place, with the reason beside it and the status a
//! server answers when a peer goes past it (RFC 9110 §15.5 for the 4xx codes).
//!
//! A server that accepts input without bounds can be made to hold memory, file descriptors or
//! tasks forever by a single misbehaving peer. Each number below closes one such door.

use std::time::Duration;

/// Limits of the server side. `Limits::default()` is what both services run with.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request head (request line + header fields), in bytes. Past it: `431`, or
    /// `414` when the request line alone has not ended yet. It must hold the longest
    /// request-target we accept *and* a normal set of header fields: 16 KiB is an 8,000-octet
    /// target plus 8 KiB of fields, the head size most servers allow on its own (nginx's large
    /// buffer, Apache's `LimitRequestFieldSize`). async-h1 cites CVE-2020-7662-style memory
    /// floods as the reason to cap it at all.
    pub max_head_bytes: usize,
    /// Longest request-target, in bytes. Past it: `414 URI Too Long`. RFC 9112 §3 recommends
    /// supporting request-lines of at least 8,000 octets; we accept a target of that size.
    pub max_target_bytes: usize,
    /// Most header fields in one request. Past it: `431`.
    pub max_headers: usize,
    /// Largest request body we read (a handler gets it whole). Past it: `413`.
    pub max_body_bytes: usize,
    /// Time a request may take to arrive, from its first byte to its last (head and body).
    /// Past it: `408 Request Timeout`. Stops "slowloris" clients that trickle a head forever.
    pub request_timeout: Duration,
    /// Time a kept-alive connection may sit between requests before we close it.
    pub idle_timeout: Duration,
    /// Time a response may take to be written. A client that stops reading cannot pin a task.
    /// A streamed response has it per chunk (and for its head): a stream has no end to measure
    /// from. Its other bound, the backlog of chunks a slow client may fall behind, is chosen
    /// by the stream's producer (`stream::channel`): only it knows how large and bursty its
    /// chunks are.
    pub write_timeout: Duration,
    /// Most connections open at once. Past it new ones get a `503` and are closed at once.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 16 * 1024,
            max_target_bytes: 8000,
            max_headers: 64,
            max_body_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(10),
            max_connections: 10_000,
        }
    }
}

/// Limits of the client side (B calling A). Over a size cap the response is `bad_response`
/// and the connection is dropped: we cannot know where the next response would start.
#[derive(Debug, Clone)]
pub struct ClientLimits {
    /// Largest response head we accept from the upstream.
    pub max_head_bytes: usize,
    /// Most header fields in one response.
    pub max_headers: usize,
    /// Largest response body we accept from the upstream.
    pub max_body_bytes: usize,
    /// Most idle kept-alive connections held per upstream; extras are closed when returned.
    pub max_idle_per_upstream: usize,
    /// How long an idle pooled connection is trusted; older ones are closed, not reused.
    pub idle_timeout: Duration,
    /// How long a connection may be reused at all, however busy. Without a cap, a busy pool
    /// would keep talking to the addresses it first connected to forever: a name that now
    /// resolves elsewhere, or a load balancer in front of new replicas, would never see us.
    pub max_connection_age: Duration,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            max_head_bytes: 16 * 1024,
            max_headers: 64,
            max_body_bytes: 64 * 1024,
            max_idle_per_upstream: 1024,
            idle_timeout: Duration::from_secs(20),
            // Long enough that reconnecting costs nothing measurable (one handshake per
            // connection per minute), short enough that traffic follows scaling within one.
            max_connection_age: Duration::from_secs(60),
        }
    }
}

/// Room on a request line besides the target: the method, two spaces, `HTTP/1.1` and CRLF.
/// A request line still unfinished past `max_target_bytes` plus this cannot carry a target we
/// accept, so it is answered `414` at once instead of being read up to the whole head cap.
pub const REQUEST_LINE_SLACK_BYTES: usize = 64;

/// Longest method we read. The longest method in IANA's HTTP Method Registry is
/// `UPDATEREDIRECTREF`, 17 letters; 32 leaves room for an extension method and still fits
/// in `REQUEST_LINE_SLACK_BYTES`. Past it: `400`, as soon as the method is that long. It is
/// bad syntax, not a long target: `414` is about the request-target (RFC 9110 §15.5.15), and
/// a kilobyte of letters before the first space is no request at all.
pub const MAX_METHOD_BYTES: usize = 32;

// The slack on a request line holds the longest method, its space, and ` HTTP/1.1` CRLF.
const _: () =
    assert!(MAX_METHOD_BYTES + " ".len() + " HTTP/1.1\r\n".len() <= REQUEST_LINE_SLACK_BYTES);

/// Longest line of chunked framing (a chunk-size line or a trailer field) we accept.
/// A chunk size needs at most 16 hex digits; the rest is room for chunk extensions.
pub const MAX_CHUNK_LINE_BYTES: usize = 1024;

/// How many bytes one `read` asks the socket for. One page; a request head usually fits.
pub const READ_CHUNK_BYTES: usize = 4096;

/// Largest trailer section after a chunked body. Trailers are read and discarded, but must
/// still be bounded: the same reason as the head cap.
pub const MAX_TRAILER_BYTES: usize = 8 * 1024;

/// How long a closing connection keeps reading (and discarding) what the client still sends,
/// so that our last response is not destroyed by a TCP reset (RFC 9112 §9.6).
pub const LINGER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Pipelined responses are collected and written together; past this many bytes they are
/// written at once, so a client that pipelines without end cannot grow our buffer.
pub const PIPELINE_FLUSH_BYTES: usize = 64 * 1024;

/// How much a lingering close reads and throws away before it gives up and closes anyway.
pub const LINGER_MAX_BYTES: usize = 256 * 1024;

/// Connections the kernel may hold, handshake done, waiting for our `accept` (`listen(2)`).
/// Past it new SYNs are dropped and the client waits a second to retry. The kernel caps it at
/// `net.core.somaxconn` (4096 on current Linux).
pub const LISTEN_BACKLOG: i32 = 1024;

/// File descriptors kept aside for everything that is not a client's connection: the
/// listener, the reactor, logs, and B's connections to A. With an open-file limit below
/// `max_connections` plus this, `accept` fails (EMFILE) before the connection cap is reached.
pub const OPEN_FILES_RESERVE: usize = 64;

/// How long requests in flight may take to finish once shutdown begins (the default of
/// `--shutdown-grace-ms`). Kubernetes waits 30 s by default before it kills; ours stays below.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// How long the accept loop pauses after a failed `accept`, usually EMFILE (out of file
/// descriptors): retrying at once would spin; closing connections will free descriptors.
pub const ACCEPT_ERROR_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);
