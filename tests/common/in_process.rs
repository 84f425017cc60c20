//! The library's server started inside the test process, on port 0, with a handler made of a
//! closure: for tests of the HTTP layer itself (streams), which need to read the server's
//! open-connection count and shut it down the way SIGTERM does, neither of which a child
//! process offers.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use echo_lab::http::message::Request;
use echo_lab::http::server::{self, Handler, Outcome, ServerConfig};

/// The shutdown grace of the test servers.
pub const GRACE: Duration = Duration::from_secs(5);

/// A handler made of a closure from request to outcome.
pub struct Answers<F>(F);

impl<F: Fn(Request) -> Outcome + Send + Sync + 'static> Handler for Answers<F> {
    fn handle(&self, request: Request) -> impl Future<Output = Outcome> + Send {
        let outcome = (self.0)(request);
        async move { outcome }
    }
}

/// A server running in this process, on its own threads.
pub struct TestServer {
    pub addr: SocketAddr,
    open: Arc<AtomicUsize>,
    /// Dropping it completes the future `serve` was given: what SIGTERM does in `run::serve`.
    stop: Option<smol::channel::Sender<()>>,
    /// Gets a message when `serve` has returned.
    pub stopped: mpsc::Receiver<()>,
}

impl TestServer {
    pub fn start(answer: impl Fn(Request) -> Outcome + Send + Sync + 'static) -> TestServer {
        capture_logs();
        let listener = server::bind("127.0.0.1:0".parse().expect("an address")).expect("bind");
        let addr = listener.get_ref().local_addr().expect("local address");
        let config = ServerConfig {
            shutdown_grace: GRACE,
            ..ServerConfig::default()
        };
        let open = config.open_connections.clone();
        let (stop, stop_rx) = smol::channel::bounded::<()>(1);
        let (stopped_tx, stopped) = mpsc::channel();
        thread::spawn(move || {
            let shutdown = async move {
                let _ = stop_rx.recv().await;
            };
            server::serve(listener, Answers(answer), config, shutdown);
            let _ = stopped_tx.send(());
        });
        TestServer {
            addr,
            open,
            stop: Some(stop),
            stopped,
        }
    }

    /// Begins the drain, as SIGTERM does.
    pub fn shut_down(&mut self) {
        self.stop = None;
    }

    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

/// Waits until `done` holds, checking every few milliseconds: for a counter, which has no
/// signal to wait on. Whether it held within `within`.
pub fn eventually(within: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Every log line of this test binary (the wire trace among them), as `LEVEL target: text`.
static LOGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct CaptureLogs;

impl log::Log for CaptureLogs {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Info
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let line = format!("{} {}: {}", record.level(), record.target(), record.args());
            LOGS.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    }

    fn flush(&self) {}
}

pub fn capture_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = log::set_logger(&CaptureLogs);
        log::set_max_level(log::LevelFilter::Info);
    });
}

/// The captured log lines that contain `text`.
pub fn logged(text: &str) -> Vec<String> {
    let logs = LOGS.lock().unwrap_or_else(|e| e.into_inner());
    logs.iter().filter(|l| l.contains(text)).cloned().collect()
}
