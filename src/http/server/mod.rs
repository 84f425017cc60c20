//! The server (RFC 9112 §9, connection management): bind a socket, accept connections, run
//! each as a task on a few executor threads, and drain on shutdown. What happens on one
//! connection, the keep-alive loop, is `connection.rs`; a streamed answer on it,
//! `streaming.rs`.
//!
//! ```text
//! bind ─► accept loop ─► one task per connection (connection.rs) ─► …
//!              │ over the connection cap: 503 and close, no task
//!              ▼ shutdown
//!         stop accepting ─► idle connections close ─► requests in flight finish or the
//!                           streams end (last chunk)    grace period ends
//! ```

mod connection;
mod handler;
mod memory;
mod streaming;

use std::future::Future;
use std::io::{self, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use async_io::{Async, Timer};
use futures_lite::{FutureExt, future};
use smol::Executor;
use smol::channel::{self, Receiver, Sender};
use socket2::{Domain, Protocol, Socket, Type};

use super::limits::{ACCEPT_ERROR_PAUSE, LISTEN_BACKLOG, Limits, SHUTDOWN_GRACE};
use super::message::{Response, Version};
use super::write::write_response;
use connection::{Connection, OpenGuard};
pub use handler::{Handler, Outcome};

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

/// How many tasks an executor thread runs before it looks for I/O events again. The
/// executor's own `run` looks only every 200 tasks, or when it has none left: under load, a
/// connection whose next request had arrived waited behind up to 200 tasks of others before
/// its readiness was even seen, and that was A's p99 under `wrk -c64`, about twice axum's
/// (at 64: 0.9-1.4x axum's; `bench/README.md`, "Where the closed-loop tail came from").
/// tokio's scheduler polls its I/O driver every 61 tasks (`event_interval`) for the same
/// reason.
const TASKS_BETWEEN_IO_POLLS: usize = 64;

/// Runs `ex`'s tasks on this thread until `done` completes. With no task to run, the thread
/// waits in the reactor (`epoll_wait`); after [`TASKS_BETWEEN_IO_POLLS`] tasks in a row it
/// yields, and `async_io::block_on` collects the I/O events that are ready, without waiting,
/// before it goes on.
async fn run_tasks<T>(ex: &Executor<'_>, done: impl Future<Output = T>) -> T {
    let tasks = async {
        loop {
            ex.tick().await;
            for _ in 1..TASKS_BETWEEN_IO_POLLS {
                if !ex.try_tick() {
                    break;
                }
            }
            future::yield_now().await;
        }
    };
    future::or(done, tasks).await
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
            thread::spawn(move || async_io::block_on(run_tasks(&ex, done.recv())))
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
    async_io::block_on(run_tasks(&ex, async {
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
            let busy = self.handler.error_response(503, "too many connections");
            refuse(stream.into_inner().ok(), peer, &busy);
            return;
        }
        // Responses are written whole; Nagle's algorithm would only delay them.
        let _ = stream.get_ref().set_nodelay(true);
        let open = OpenGuard::new(self.open.clone(), alive);
        let connection = Connection::new(
            stream,
            peer,
            self.handler.clone(),
            self.limits.clone(),
            open,
        );
        // The task is the connection's future itself, nothing around it: an `async` block
        // awaiting it would keep the future in a place of its own beside its captures, and
        // boxing it would be a second allocation per connection. A panic (in a handler, say)
        // stops at `catch_unwind` and ends this connection only; the connection logs it as
        // the unwinding drops it (see its `Drop`).
        let serve = AssertUnwindSafe(connection.serve(self.stop.clone())).catch_unwind();
        self.ex.spawn(serve).detach();
    }
}

/// Over the connection cap: one non-blocking attempt to say so, then close. No task is
/// spawned, so a flood costs us nothing but the accept.
fn refuse(stream: Option<TcpStream>, peer: SocketAddr, response: &Response) {
    log::warn!(peer:% = peer, status = 503, error = "connection limit reached";
        "peer={peer} status=503 error=\"connection limit reached\"");
    if let Some(mut stream) = stream {
        let mut busy = Vec::new();
        write_response(&mut busy, response, Version::Http11, false, true);
        let _ = stream.write(&busy);
        let _ = stream.shutdown(Shutdown::Both);
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::io::Read;
    use std::sync::Mutex;
    use std::time::Instant;

    use super::*;
    use crate::http::message::Request;

    /// Set in the process of its own that `io_readiness_is_seen_while_other_tasks_never_wait`
    /// runs in.
    const ALONE: &str = "ECHO_LAB_TEST_ALONE";

    #[test]
    fn io_readiness_is_seen_while_other_tasks_never_wait() {
        // One task is always ready to run (it yields and is scheduled again at once); another
        // waits for a byte that is already in its socket. The reactor must report that byte
        // within a bounded number of the busy task's turns, not only when the thread runs out
        // of tasks (never, here) or after the executor's own 200.
        //
        // The reactor is one for the whole process, and other tests' threads waiting in it
        // would take part; so the check runs in a process of its own: this test binary, with
        // this test alone.
        if std::env::var_os(ALONE).is_none() {
            let module = module_path!().split_once("::").map_or("", |(_, rest)| rest);
            let name = format!("{module}::io_readiness_is_seen_while_other_tasks_never_wait");
            let exe = std::env::current_exe().expect("this test binary");
            let alone = std::process::Command::new(exe)
                .args([name.as_str(), "--exact", "--test-threads=1"])
                .env(ALONE, "1")
                .output()
                .expect("the test, alone");
            let said = String::from_utf8_lossy(&alone.stdout);
            assert!(alone.status.success(), "alone, the test failed: {said}");
            return;
        }
        let ex = Executor::new();
        let (mut writer, reader) = std::os::unix::net::UnixStream::pair().expect("a socket pair");
        writer.write_all(b"x").expect("a byte");
        let reader = Async::new(reader).expect("nonblocking");
        let turns = Arc::new(AtomicUsize::new(0));
        let counted = turns.clone();
        ex.spawn(async move {
            loop {
                counted.fetch_add(1, Ordering::Relaxed);
                future::yield_now().await;
            }
        })
        .detach();
        let seen = ex.spawn(async move { reader.readable().await.is_ok() });
        assert!(async_io::block_on(run_tasks(&ex, seen)));
        let turns = turns.load(Ordering::Relaxed);
        // (`if ex.try_tick()` without its `!` polls I/O after every task instead: the byte is
        // seen sooner, and only the number of polls differs, an equivalent mutant for any test.)
        // Each of our polls comes after TASKS_BETWEEN_IO_POLLS turns, and one may miss (the
        // reactor held by async-io's own thread a moment): a few of them. The executor's own
        // `run` took 397 turns here, two of its 200-task periods.
        assert!(
            turns <= 4 * TASKS_BETWEEN_IO_POLLS,
            "the busy task ran {turns} times before the byte was seen"
        );
    }

    /// A handler with a bug: it panics on every request.
    struct Panics;

    impl Handler for Panics {
        async fn handle(&self, _request: Request) -> Outcome {
            panic!("a bug in the handler");
        }
    }

    /// Keeps the warning and error lines logged in this test binary.
    struct Logged(Mutex<Vec<String>>);

    impl log::Log for Logged {
        fn enabled(&self, metadata: &log::Metadata) -> bool {
            metadata.level() <= log::Level::Warn
        }
        fn log(&self, record: &log::Record) {
            if self.enabled(record.metadata()) {
                let mut lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
                lines.push(record.args().to_string());
            }
        }
        fn flush(&self) {}
    }

    static LOGGED: Logged = Logged(Mutex::new(Vec::new()));

    /// Makes `LOGGED` this test binary's logger, once for all the tests that read it.
    pub(super) fn capture_logs() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            log::set_logger(&LOGGED).expect("the only logger of this test binary");
            log::set_max_level(log::LevelFilter::Warn);
        });
    }

    pub(super) fn logged(line: &str) -> bool {
        let lines = LOGGED.0.lock().unwrap_or_else(|e| e.into_inner());
        lines.iter().any(|l| l.starts_with(line))
    }

    /// A running test server: its address, open-connection count, the sender to drop to stop
    /// it, and its thread.
    pub(super) type Running = (
        SocketAddr,
        Arc<AtomicUsize>,
        Sender<()>,
        thread::JoinHandle<()>,
    );

    /// A server on port 0 with `handler`, on its own thread; drop the sender to stop it.
    pub(super) fn start(handler: impl Handler) -> Running {
        start_with(handler, ServerConfig::default())
    }

    pub(super) fn start_with(handler: impl Handler, config: ServerConfig) -> Running {
        capture_logs();
        let listener = bind("127.0.0.1:0".parse().expect("address")).expect("bind");
        let addr = listener.get_ref().local_addr().expect("address");
        let open = config.open_connections.clone();
        let (stop_tx, stop_rx) = channel::bounded::<()>(1);
        let server = thread::spawn(move || {
            serve(listener, handler, config, async move {
                let _ = stop_rx.recv().await;
            })
        });
        (addr, open, stop_tx, server)
    }

    /// Sends one request on a new connection and returns what came back before the close.
    fn one_request(addr: SocketAddr) -> (Vec<u8>, SocketAddr) {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .expect("send");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).expect("a clean close");
        (answer, stream.local_addr().expect("our address"))
    }

    #[test]
    fn a_panicking_handler_ends_its_connection_only_and_says_whose() {
        let (addr, open, stop_tx, server) = start(Panics);

        // Twice: the server goes on after a panic.
        for _ in 0..2 {
            let (answer, peer) = one_request(addr);
            assert_eq!(answer, b"", "no answer, only the close");
            let line = format!("peer={peer} connection task panicked; connection dropped");
            assert!(logged(&line), "no {line:?} in {:?}", LOGGED.0.lock());
        }
        // The panicked connections no longer count as open.
        let deadline = Instant::now() + Duration::from_secs(5);
        while open.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(open.load(Ordering::SeqCst), 0);
        drop(stop_tx);
        server.join().expect("the server returns after shutdown");
    }

    /// A handler that answers everything it is given and keeps the defaults for the rest.
    pub(super) struct Defaults;

    impl Handler for Defaults {
        async fn handle(&self, _request: Request) -> Outcome {
            Response::new(200, "text/plain", "ok").into()
        }
    }

    #[test]
    fn by_default_a_broken_request_is_answered_in_plain_text_and_logged() {
        let (addr, _open, stop_tx, server) = start(Defaults);
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\nno colon here\r\n\r\n")
            .expect("send");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).expect("a clean close");
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{answer}"
        );
        assert!(
            answer.contains("Content-Type: text/plain; charset=utf-8\r\n"),
            "{answer}"
        );
        let peer = stream.local_addr().expect("our address");
        let line = format!("peer={peer} status=Some(400) error=\"");
        assert!(logged(&line), "no {line:?}… in {:?}", LOGGED.0.lock());
        drop(stop_tx);
        server.join().expect("the server returns after shutdown");
    }

    #[test]
    fn a_connection_over_the_cap_gets_503_and_is_closed_at_once() {
        let mut config = ServerConfig::default();
        config.limits.max_connections = 1;
        let (addr, open, stop_tx, server) = start_with(Defaults, config);
        let first = TcpStream::connect(addr).expect("connect");
        let deadline = Instant::now() + Duration::from_secs(5);
        while open.load(Ordering::SeqCst) < 1 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            open.load(Ordering::SeqCst),
            1,
            "the first connection is counted"
        );

        let mut second = TcpStream::connect(addr).expect("connect");
        second
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        let mut answer = Vec::new();
        second.read_to_end(&mut answer).expect("a clean close");
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{answer}"
        );
        assert!(answer.contains("Connection: close\r\n"), "{answer}");
        let peer = second.local_addr().expect("our address");
        let line = format!("peer={peer} status=503 error=\"connection limit reached\"");
        assert!(logged(&line), "no {line:?} in {:?}", LOGGED.0.lock());
        drop(first);
        drop(stop_tx);
        server.join().expect("the server returns after shutdown");
    }
}
