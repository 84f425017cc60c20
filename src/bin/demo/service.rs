//! The demo's services: finding the binaries (building them under `cargo run`), starting one
//! as a child process, reading its address from its first log line, showing its log, stopping,
//! killing or freezing it, and making sure none outlives the demo.

use std::env::consts::EXE_SUFFIX;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use async_signal::{Signal, Signals};
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

/// Where `service-a` and `service-b` are.
pub struct Binaries {
    pub dir: PathBuf,
    pub a: PathBuf,
    pub b: PathBuf,
}

impl Binaries {
    /// `bin_dir` if given, else the directory of this program: cargo puts every binary of the
    /// package in the same `target/<profile>/` (and under `cargo run`, builds them there first).
    pub fn find(bin_dir: &str) -> Result<Binaries, String> {
        let exe = std::env::current_exe()
            .map_err(|e| format!("cannot tell where the demo binary is ({e}); use --bin-dir"))?;
        let dir = match bin_dir {
            "" => exe
                .parent()
                .map(Path::to_path_buf)
                .ok_or("the demo binary has no parent directory; use --bin-dir")?,
            dir => PathBuf::from(dir),
        };
        let built = bin_dir.is_empty() && build_with_cargo(&dir)?;
        let a = dir.join(format!("service-a{EXE_SUFFIX}"));
        let b = dir.join(format!("service-b{EXE_SUFFIX}"));
        let missing: Vec<&str> = [(&a, "service-a"), (&b, "service-b")]
            .into_iter()
            .filter(|(path, _)| !path.is_file())
            .map(|(_, name)| name)
            .collect();
        if !missing.is_empty() {
            let missing = missing.join(" and ");
            if !bin_dir.is_empty() {
                return Err(format!("{missing} not found in {bin_dir} (from --bin-dir)"));
            }
            let build = cargo_build_command(&dir);
            return Err(format!(
                "{missing} not found next to the demo, in {}.\n\
                 Build them ({build}), or run the demo through cargo, which builds them first:\n    \
                 cargo run{} --bin demo\n\
                 (or point --bin-dir at a directory that holds service-a and service-b)",
                dir.display(),
                build.trim_start_matches("cargo build"),
            ));
        }
        for (path, name) in [(&a, "service-a"), (&b, "service-b")] {
            if let Some(behind) = older_than(path, &exe).filter(|_| !built) {
                say(&format!(
                    "note: {name} was built {}s before this demo. If you changed the library \
                     since, rebuild it: {}",
                    behind.as_secs(),
                    cargo_build_command(&dir)
                ));
            }
        }
        Ok(Binaries { dir, a, b })
    }
}

/// Under `cargo run`, which builds only the demo, builds the two services first, with the same
/// cargo, profile and target directory: so `cargo run --release --bin demo` works on a fresh
/// clone and never plays the story with stale services. Whether it ran (not under cargo: no).
fn build_with_cargo(dir: &Path) -> Result<bool, String> {
    let var = |name| std::env::var_os(name);
    let (Some(cargo), Some(manifest_dir), Some(package)) = (
        var("CARGO"),
        var("CARGO_MANIFEST_DIR"),
        var("CARGO_PKG_NAME"),
    ) else {
        return Ok(false);
    };
    let Some(target_dir) = dir.parent().filter(|_| package == env!("CARGO_PKG_NAME")) else {
        return Ok(false);
    };
    let mut args = vec!["build".to_owned()];
    args.extend(profile_args(dir));
    args.extend(["--bin", "service-a", "--bin", "service-b"].map(String::from));
    say(&format!("$ cargo {}", args.join(" ")));
    let status = Command::new(cargo)
        .args(&args)
        .arg("--manifest-path")
        .arg(Path::new(&manifest_dir).join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run cargo to build the services: {e}"))?;
    if status.success() {
        Ok(true)
    } else {
        Err(format!("building the services failed ({status})"))
    }
}

/// The profile flags of the `cargo build` that fills `dir`, from its name (`target/<profile>`).
fn profile_args(dir: &Path) -> Vec<String> {
    match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => Vec::new(),
        Some("release") | None => vec!["--release".to_owned()],
        Some(profile) => vec!["--profile".to_owned(), profile.to_owned()],
    }
}

/// The `cargo build` that fills `dir`, as the user would type it.
fn cargo_build_command(dir: &Path) -> String {
    ["cargo".to_owned(), "build".to_owned()]
        .into_iter()
        .chain(profile_args(dir))
        .collect::<Vec<_>>()
        .join(" ")
}

/// How long before `reference` the file `path` was last written, when that is more than a few
/// seconds (binaries built by one `cargo build` are written within moments of each other).
fn older_than(path: &Path, reference: &Path) -> Option<Duration> {
    const SAME_BUILD: Duration = Duration::from_secs(10);
    let modified = |p: &Path| -> Option<SystemTime> { p.metadata().ok()?.modified().ok() };
    let behind = modified(reference)?.duration_since(modified(path)?).ok()?;
    (behind > SAME_BUILD).then_some(behind)
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
/// Killed when dropped, so no child outlives the demo (also on failure or panic).
pub struct Service {
    name: &'static str,
    child: Child,
    pub addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
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
        let mut child = Command::new(bin)
            .args(["--host", "127.0.0.1"])
            .args(args)
            // The startup line is logged at info: a quieter RUST_LOG would hide it.
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        lock(&CHILDREN).push(child.id());
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        // The log goes to stdout; a bad flag or port is reported on stderr before logging
        // starts. Both are shown and searched alike.
        let stdout = child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>);
        let stderr = child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>);
        for stream in [stdout, stderr].into_iter().flatten() {
            let logs = logs.clone();
            let addr_tx = addr_tx.clone();
            thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    // A per-request line names its method; events and start-up lines do not.
                    if show == Show::All || !line.contains(" method=") {
                        say(&format!("  {name} | {}", readable(&line)));
                    }
                    if let Some(addr) = line.split("listening on ").nth(1) {
                        let _ = addr_tx.send(addr.trim().to_owned());
                    }
                    lock(&logs).push(line);
                }
            });
        }
        // Once both readers are done (the child closed its output), `recv` stops waiting.
        drop(addr_tx);
        let mut service = Service {
            name,
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            logs,
        };
        // Past this point `service` owns the child: any early return kills it.
        let announced = addr_rx.recv_timeout(STARTUP_WAIT).map_err(|_| {
            format!(
                "{name} did not announce its address within {} s; its log: {:?}",
                STARTUP_WAIT.as_secs(),
                lock(&service.logs)
            )
        })?;
        service.addr = announced
            .parse()
            .map_err(|e| format!("{name} announced {announced:?}, not an address: {e}"))?;
        Ok(service)
    }

    /// Sends SIGTERM and waits for the process to drain and exit 0.
    pub fn stop(&mut self) -> Result<(), String> {
        let pid = self.child.id().to_string();
        say(&format!("$ kill -TERM {pid}    # stop {}", self.name));
        // std can only SIGKILL a child; SIGTERM (the graceful stop) goes through kill(1).
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .map_err(|e| format!("cannot run kill: {e}"))?;
        if !sent.success() {
            return Err(format!("kill -TERM {pid} failed: {sent}"));
        }
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
        let pid = self.child.id().to_string();
        say(&format!("$ kill {signal} {pid}    # {why}"));
        let sent = Command::new("kill")
            .args([signal, &pid])
            .status()
            .map_err(|e| format!("cannot run kill: {e}"))?;
        if sent.success() {
            Ok(())
        } else {
            Err(format!("kill {signal} {pid} failed: {sent}"))
        }
    }

    /// How many log lines so far contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        lock(&self.logs)
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.forget();
                return Some(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Waits up to `within` for a log line containing `needle`; whether one came.
    pub fn wait_for_log(&self, needle: &str, within: Duration) -> bool {
        let end = Instant::now() + within;
        loop {
            if lock(&self.logs).iter().any(|l| l.contains(needle)) {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Takes the child off the signal watcher's list, once it has exited.
    fn forget(&self) {
        let pid = self.child.id();
        lock(&CHILDREN).retain(|p| *p != pid);
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        self.forget();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_hint_follows_the_profile() {
        assert_eq!(
            cargo_build_command(Path::new("target/release")),
            "cargo build --release"
        );
        assert_eq!(
            cargo_build_command(Path::new("target/debug")),
            "cargo build"
        );
        assert_eq!(
            cargo_build_command(Path::new("target/bench")),
            "cargo build --profile bench"
        );
    }
}
