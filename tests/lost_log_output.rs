//! The log output goes away while a service runs: stdout's reader exits (`service-a | head`,
//! a log collector that died). Log lines are lost from then on, but every request is still
//! answered, and the service says once on stderr what happened.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{Service, get};

/// A service whose stdout we close right after its startup line.
struct Orphaned {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl Orphaned {
    fn start(bin: &str, args: &[&str]) -> Orphaned {
        let mut child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn service");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("startup line");
        let addr = line
            .split("listening on ")
            .nth(1)
            .expect("the first line names the address")
            .trim()
            .parse()
            .expect("an address");
        // Closing our end: the service's next write to stdout fails with EPIPE.
        drop(stdout);
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let mut pipe = child.stderr.take().expect("stderr");
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                sink.lock()
                    .expect("stderr lock")
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Orphaned {
            child,
            addr,
            stderr,
        }
    }

    /// Waits until stderr holds `needle`.
    fn stderr_says(&self, needle: &str) -> bool {
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if self.stderr.lock().expect("stderr lock").contains(needle) {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Orphaned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const GONE: &str = "the log output (stdout) is gone";

#[test]
fn a_keeps_answering_when_its_log_output_is_gone() {
    let mut a = Orphaned::start(env!("CARGO_BIN_EXE_service-a"), &[]);
    for i in 0..20 {
        let reply = get(a.addr, &format!("/echo?msg=n{i}"));
        assert_eq!(reply.status, 200, "request {i}: {reply:?}");
        assert_eq!(reply.json(), serde_json::json!({ "echo": format!("n{i}") }));
    }
    assert!(
        a.stderr_says(GONE),
        "stderr: {}",
        a.stderr.lock().expect("lock")
    );
    assert!(
        matches!(a.child.try_wait(), Ok(None)),
        "A exited after losing its log output"
    );
}

#[test]
fn b_keeps_calling_a_when_its_log_output_is_gone() {
    let a = Service::a(&[]);
    let url = a.url();
    let mut b = Orphaned::start(env!("CARGO_BIN_EXE_service-b"), &["--service-a-url", &url]);
    for i in 0..20 {
        let reply = get(b.addr, &format!("/call-echo?msg=n{i}"));
        assert_eq!(reply.status, 200, "request {i}: {reply:?}");
    }
    // Failures are logged at warn: the lost output must not turn them into dropped connections.
    drop(a);
    let reply = get(b.addr, "/call-echo?msg=down");
    assert_eq!(reply.status, 503, "{reply:?}");
    assert!(
        b.stderr_says(GONE),
        "stderr: {}",
        b.stderr.lock().expect("lock")
    );
    assert!(
        matches!(b.child.try_wait(), Ok(None)),
        "B exited after losing its log output"
    );
}
