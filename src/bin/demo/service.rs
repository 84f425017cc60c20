//! The demo's services: starting one as a child process (the binaries are found by
//! `echo_lab::child::Binaries`), reading its address from its first log line, showing its log, stopping,
//! killing or freezing it, and making sure none outlives the demo.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use async_signal::{Signal, Signals};
use echo_lab::child::ChildService;
use futures_lite::StreamExt;

use crate::{lock, readable, say};

/// Bounds on waiting for a service: its startup line, its exit after SIGTERM (A's drain grace is
/// shortened to `DRAIN_GRACE_MS` so this stays small), a log line.
const STARTUP_WAIT: Duration = Duration::from_secs(10);
const DRAIN_GRACE_MS: u64 = 3000;
const EXIT_WAIT: Duration = Duration::from_secs(6);
pub const LOG_WAIT: Duration = Duration::from_secs(2);

/// A's flags: `port` (0 for a free one), a short drain, then `extra` (`start` adds the host).
pub fn a_args(port: u16, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "--port".to_owned(),
        port.to_string(),
        "--shutdown-grace-ms".to_owned(),
        DRAIN_GRACE_MS.to_string(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

/// The process ids of the running children, for the signal watcher.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// On SIGINT or SIGTERM, kills every child and exits. (Ctrl-C in a terminal reaches the children
/// too, but `kill <demo>` does not, and `Drop` guards do not run when a signal ends a process.)
pub fn kill_children_on_signal() -> std::io::Result<()> {
    let mut signals = Signals::new([Signal::Int, Signal::Term])?;
    thread::spawn(move || {
        if let Some(signal) = smol::block_on(signals.next()) {
            // Holding stdout keeps the main thread from reporting the failures that the
            // killing is about to cause: the interruption is the end of the story.
            let mut out = std::io::stdout().lock();
            for pid in lock(&CHILDREN).iter() {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
            let _ = writeln!(out, "\ndemo interrupted: services killed");
            let _ = out.flush();
            // The shell's convention for "ended by a signal": 128 + its number.
            std::process::exit(match signal {
                Ok(Signal::Term) => 128 + 15,
                _ => 128 + 2,
            });
        }
    });
    Ok(())
}

/// One running service binary, with its output shown line by line and kept for searching.
/// Killed when dropped (by `ChildService`), so no child outlives the demo, also on failure or
/// panic.
pub struct Service {
    name: &'static str,
    process: ChildService,
    pub addr: SocketAddr,
}

/// Which of a service's log lines the demo shows as they come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// Every line: the story's steps send one request at a time.
    All,
    /// All but the per-request lines: a chapter sends a hundred a second, and what matters
    /// there is the rest (ejections, the breaker) and the figures the chapter prints.
    Events,
}

impl Service {
    /// Starts `bin --host 127.0.0.1 args...` and waits for its first log line,
    /// `service=X listening on ADDR`, to learn its address.
    pub fn start(name: &'static str, bin: &Path, args: &[String]) -> Result<Service, String> {
        Service::start_showing(name, bin, args, Show::All)
    }

    /// `start`, showing only the lines `show` selects (all are kept for searching).
    pub fn start_showing(
        name: &'static str,
        bin: &Path,
        args: &[String],
        show: Show,
    ) -> Result<Service, String> {
        let program = bin.file_name().map_or_else(
            || bin.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        say(&format!("$ {program} --host 127.0.0.1 {}", args.join(" ")));
        let mut command = Command::new(bin);
        command
            .args(["--host", "127.0.0.1"])
            .args(args)
            // The startup line is logged at info: a quieter RUST_LOG would hide it.
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let show_line = move |line: &str| {
            // A per-request line names its method; events and start-up lines do not.
            if show == Show::All || !line.contains(" method=") {
                say(&format!("  {name} | {}", readable(line)));
            }
        };
        let process = ChildService::spawn(&mut command, show_line)?;
        // On the signal watcher's list before the wait: a Ctrl-C meanwhile kills it too.
        lock(&CHILDREN).push(process.child.id());
        let mut service = Service {
            name,
            addr: process.addr,
            process,
        };
        // Past this point `service` owns the child: any early return kills it.
        service.addr = service
            .process
            .wait_for_address(STARTUP_WAIT)
            .map_err(|e| format!("{name} {e}"))?;
        Ok(service)
    }

    /// Sends SIGTERM and waits for the process to drain and exit 0.
    pub fn stop(&mut self) -> Result<(), String> {
        let pid = self.process.child.id();
        say(&format!("$ kill -TERM {pid}    # stop {}", self.name));
        self.process.signal("TERM")?;
        let status = self.wait_exit(EXIT_WAIT).ok_or_else(|| {
            format!(
                "{} had not exited {} s after SIGTERM",
                self.name,
                EXIT_WAIT.as_secs()
            )
        })?;
        // Let the reader thread print the last lines before we go on.
        self.wait_for_log("stopped", LOG_WAIT);
        say(&format!("{} exited: {status}", self.name));
        if status.success() {
            Ok(())
        } else {
            Err(format!("{} exited with {status}, not 0", self.name))
        }
    }

    /// Sends `signal` (`-KILL`: a crash, the replica is dead; `-STOP`: frozen, a black hole,
    /// since the kernel still accepts connections and takes requests that nobody reads).
    pub fn signal(&self, signal: &str, why: &str) -> Result<(), String> {
        let pid = self.process.child.id();
        say(&format!("$ kill {signal} {pid}    # {why}"));
        self.process.signal(signal.trim_start_matches('-'))
    }

    /// How many log lines so far contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.process.lines.count(needle)
    }

    fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let status = self.process.wait_exit(within)?;
        self.forget();
        Some(status)
    }

    /// Waits up to `within` for a log line containing `needle`; whether one came.
    pub fn wait_for_log(&self, needle: &str, within: Duration) -> bool {
        self.process.lines.wait_for(needle, 1, within)
    }

    /// Takes the child off the signal watcher's list, once it has exited.
    fn forget(&self) {
        let pid = self.process.child.id();
        lock(&CHILDREN).retain(|p| *p != pid);
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // `process` is killed right after this, when it is dropped.
        self.forget();
    }
}
