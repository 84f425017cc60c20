//! A service binary run as a child process, the way the demo, the lab and the integration
//! tests run A and B: started on `--port 0`, its address read from its `listening on ADDR`
//! line, every line it writes kept for searching, signalled with kill(1), killed when dropped.
//! `binaries` finds the service binaries (and builds them under `cargo run`).
//!
//! Neither service uses this; it is here once so that `src/bin/demo/`, `src/bin/lab/` and
//! `tests/common/` do not each write it.

mod binaries;

pub use binaries::Binaries;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// How often a wait for a log line or an exit looks again.
const POLL: Duration = Duration::from_millis(10);

/// The address in a service's startup line, as written: `service=X listening on ADDR` in
/// text, or the `addr` of the line whose `event` is `listening` in JSON (`--log-format json`).
pub fn listening_address(line: &str) -> Option<String> {
    if line.starts_with('{') {
        let object: serde_json::Value = serde_json::from_str(line).ok()?;
        return match (object.get("event"), object.get("addr")) {
            (Some(event), Some(addr)) if event == "listening" => addr.as_str().map(str::to_owned),
            _ => None,
        };
    }
    line.split("listening on ")
        .nth(1)
        .map(|addr| addr.trim().to_owned())
}

/// The lines a child has written so far, shared with the threads that read them: all of
/// them, or (`Lines::newest`) about the newest `keep`, for a child that runs for hours.
#[derive(Debug, Clone)]
pub struct Lines {
    lines: Arc<Mutex<Vec<String>>>,
    keep: usize,
}

impl Default for Lines {
    /// Every line, for as long as the child runs.
    fn default() -> Self {
        Lines::newest(usize::MAX)
    }
}

impl Lines {
    /// Lines of which at least the newest `keep` are kept: when there are `2 * keep`, the
    /// older half goes (one move of `keep` lines, rather than one per line).
    pub fn newest(keep: usize) -> Lines {
        Lines {
            lines: Arc::default(),
            keep,
        }
    }

    /// The lines, even if a reader thread panicked while holding them.
    fn lock(&self) -> MutexGuard<'_, Vec<String>> {
        self.lines
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keeps `line`, dropping the older half when full.
    fn push(&self, line: String) {
        let mut lines = self.lock();
        if lines.len() >= self.keep.saturating_mul(2) {
            let old = lines.len() - self.keep;
            lines.drain(..old);
        }
        lines.push(line);
    }

    /// Every line so far.
    pub fn all(&self) -> Vec<String> {
        self.lock().clone()
    }

    /// The first line so far that contains `needle`.
    pub fn find(&self, needle: &str) -> Option<String> {
        self.lock().iter().find(|l| l.contains(needle)).cloned()
    }

    /// How many lines so far contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.lock().iter().filter(|l| l.contains(needle)).count()
    }

    /// Waits up to `within` until at least `count` lines contain `needle`; whether they do.
    pub fn wait_for(&self, needle: &str, count: usize, within: Duration) -> bool {
        let end = Instant::now() + within;
        loop {
            if self.count(needle) >= count {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            thread::sleep(POLL);
        }
    }

    /// Reads `stream` line by line on a thread of its own until it ends: each line is handed
    /// to `each_line`, then kept; the address of a startup line is sent on `addr`.
    pub fn read_from(
        &self,
        stream: impl Read + Send + 'static,
        addr: Option<Sender<String>>,
        each_line: impl Fn(&str) + Send + 'static,
    ) {
        let lines = self.clone();
        thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                each_line(&line);
                if let (Some(tx), Some(found)) = (&addr, listening_address(&line)) {
                    let _ = tx.send(found);
                }
                lines.push(line);
            }
        });
    }
}

/// A running service binary. Killed when dropped, so none outlives its owner, also on a
/// failure or a panic.
#[derive(Debug)]
pub struct ChildService {
    pub child: Child,
    /// Where it listens, once `wait_for_address` has read it (until then port 0).
    pub addr: SocketAddr,
    pub lines: Lines,
    /// The addresses the reader threads find in startup lines.
    announced: Option<Receiver<String>>,
}

impl ChildService {
    /// `spawn`, then `wait_for_address`.
    pub fn start(
        command: &mut Command,
        within: Duration,
        each_line: impl Fn(&str) + Send + Clone + 'static,
    ) -> Result<ChildService, String> {
        let mut service = ChildService::spawn(command, each_line)?;
        service.wait_for_address(within)?;
        Ok(service)
    }

    /// Spawns `command`, whose stdout or stderr or both are piped, and reads what is piped on
    /// threads of its own. Logs go to stdout, and errors before logging starts (a bad flag, a
    /// port in use) to stderr, so both are read alike; each line is handed to `each_line`.
    pub fn spawn(
        command: &mut Command,
        each_line: impl Fn(&str) + Send + Clone + 'static,
    ) -> Result<ChildService, String> {
        ChildService::spawn_into(command, Lines::default(), each_line)
    }

    /// `spawn`, keeping the lines in `lines` (e.g. only the newest: `Lines::newest`).
    pub fn spawn_into(
        command: &mut Command,
        lines: Lines,
        each_line: impl Fn(&str) + Send + Clone + 'static,
    ) -> Result<ChildService, String> {
        let mut child = command.spawn().map_err(|e| {
            let program = Path::new(command.get_program()).display();
            format!("cannot start {program}: {e}")
        })?;
        let (addr_tx, addr_rx) = mpsc::channel();
        let stdout = child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>);
        let stderr = child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>);
        for stream in [stdout, stderr].into_iter().flatten() {
            lines.read_from(stream, Some(addr_tx.clone()), each_line.clone());
        }
        // Only the reader threads hold senders now: if the service dies before announcing
        // its address, `wait_for_address` ends at once instead of at its timeout.
        drop(addr_tx);
        let mut service = ChildService::adopt(child, SocketAddr::from(([127, 0, 0, 1], 0)), lines);
        service.announced = Some(addr_rx);
        Ok(service)
    }

    /// A child started elsewhere, whose address is known and whose output `lines` collects.
    pub fn adopt(child: Child, addr: SocketAddr, lines: Lines) -> ChildService {
        ChildService {
            child,
            addr,
            lines,
            announced: None,
        }
    }

    /// Waits up to `within` for the startup line, `service=X listening on ADDR`, and takes
    /// its address.
    pub fn wait_for_address(&mut self, within: Duration) -> Result<SocketAddr, String> {
        let no_line = |output: Vec<String>| {
            format!(
                "did not announce its address within {} s; its log: {output:?}",
                within.as_secs(),
            )
        };
        let announced = self
            .announced
            .take()
            .ok_or_else(|| no_line(self.lines.all()))?;
        let text = announced
            .recv_timeout(within)
            .map_err(|_| no_line(self.lines.all()))?;
        self.addr = text
            .parse()
            .map_err(|e| format!("announced {text:?}, not an address: {e}"))?;
        Ok(self.addr)
    }

    /// Sends a signal by name (`TERM`, `INT`, `KILL`, `STOP`) through kill(1): std can only
    /// send SIGKILL.
    pub fn signal(&self, name: &str) -> Result<(), String> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .map_err(|e| format!("cannot run kill: {e}"))?;
        if sent.success() {
            Ok(())
        } else {
            Err(format!("kill -{name} {pid} failed: {sent}"))
        }
    }

    /// Waits up to `within` for the process to exit; how it exited, or `None` if it did not.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            thread::sleep(POLL);
        }
        None
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ChildService {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_is_what_follows_listening_on() {
        let line = "2026-11-24T22:39:45.338Z INFO  [echo_lab::run] service=B listening on \
                    127.0.0.1:8081";
        assert_eq!(listening_address(line).as_deref(), Some("127.0.0.1:8081"));
        assert_eq!(listening_address("service=B stopped"), None);
    }

    #[test]
    fn a_json_startup_line_names_its_address_as_addr() {
        let line = r#"{"ts":"2026-11-24T22:39:45.338Z","level":"INFO","target":"echo_lab::run","service":"A","event":"listening","addr":"127.0.0.1:8080","msg":"service=A listening on 127.0.0.1:8080"}"#;
        assert_eq!(listening_address(line).as_deref(), Some("127.0.0.1:8080"));
        let other = r#"{"event":"stopped","addr":"127.0.0.1:1","msg":"service=A stopped"}"#;
        assert_eq!(listening_address(other), None);
        assert_eq!(listening_address("{not json listening on 1"), None);
    }

    #[test]
    fn newest_lines_keep_at_least_the_newest() {
        let lines = Lines::newest(3);
        for n in 0..10 {
            lines.push(n.to_string());
        }
        let kept = lines.all();
        assert!(kept.len() >= 3 && kept.len() <= 6, "{kept:?}");
        assert_eq!(kept.last().map(String::as_str), Some("9"));
        assert_eq!(kept[kept.len() - 3..], ["7", "8", "9"]);
    }
}
