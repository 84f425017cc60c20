//! The demo: one command that starts service A and service B as child processes, breaks A in
//! two ways, and shows what B answers each time.
//!
//! ```text
//! step 1  A up                    B /call-echo → 200, A's echo inside
//! step 2  A stopped (SIGTERM)     B /call-echo → 503 error_kind=connect
//! step 3  A back, 1500 ms slow    B /call-echo → 503 error_kind=timeout after B's 1000 ms deadline
//! step 4  A back, normal          B /call-echo → 200 again
//! ```
//!
//! The services are the real binaries, found next to this one. `cargo run --bin demo` builds only
//! the demo, so when cargo runs it, the demo first asks the same cargo to build the two services
//! (a no-op when they are fresh). Their logs are shown as they come, prefixed `A |` and `B |`. The demo talks to B with the project's own HTTP client, checks
//! every step, and exits non-zero naming the first step that did not behave. Children are killed
//! when the demo ends, however it ends: a `Drop` guard on each (failure, panic), and a watcher
//! for SIGINT and SIGTERM sent to the demo alone.

use std::env::consts::EXE_SUFFIX;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use async_signal::{Signal, Signals};
use futures_lite::StreamExt;

use echo_lab::config::{ConfigError, Flag, Settings};
use echo_lab::http::client::{Client, Deadline, Upstream};
use echo_lab::http::limits::ClientLimits;

const USAGE: &str = "\
demo: starts service A and service B and plays four steps of a failure story
(success, A stopped, A slow, A back), checking what B answers at each one.

usage: cargo run --release --bin demo   builds service-a and service-b, then runs the demo
       demo [--bin-dir DIR]             runs the service-a and service-b next to it (or in DIR)

Exit status: 0 when every step behaved, 1 when one did not (it is named), 2 when the demo
could not start, 130/143 when interrupted (SIGINT/SIGTERM).";

const FLAGS: &[Flag] = &[Flag::value(
    "bin-dir",
    "DEMO_BIN_DIR",
    "",
    "where service-a and service-b are [default: the demo's own directory]",
)];

/// B's deadline for its call to A, passed explicitly so the transcript shows it.
const B_TIMEOUT_MS: u64 = 1000;
/// How slow A is made in step 3: well past B's deadline.
const SLOW_A_DELAY_MS: u64 = 1500;
/// The window step 3's latency must fall in: B's deadline, plus room for a loaded machine.
const TIMEOUT_WINDOW: (Duration, Duration) =
    (Duration::from_millis(900), Duration::from_millis(1600));
/// Step 4 may retry for this long before B must have recovered.
const RECOVERY_WINDOW: Duration = Duration::from_secs(2);
const RECOVERY_PAUSE: Duration = Duration::from_millis(200);
/// Bounds on waiting for a service: its startup line, its exit after SIGTERM (A's drain grace is
/// shortened to `DRAIN_GRACE_MS` so this stays small), a log line.
const STARTUP_WAIT: Duration = Duration::from_secs(10);
const DRAIN_GRACE_MS: u64 = 3000;
const EXIT_WAIT: Duration = Duration::from_secs(6);
const LOG_WAIT: Duration = Duration::from_secs(2);
/// The demo's own deadline for each request to B: B always answers well within it.
const CLIENT_DEADLINE: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let settings = match Settings::parse(USAGE, FLAGS, std::env::args().skip(1), |k| {
        std::env::var(k).ok()
    }) {
        Ok(settings) => settings,
        Err(ConfigError::Help(text) | ConfigError::Version(text)) => {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(e) => return cannot_start(&e.to_string()),
    };
    say("echo-lab demo: B calls A; we stop A, slow it down, bring it back, and watch B.");
    let bins = match Binaries::find(settings.raw("bin-dir")) {
        Ok(bins) => bins,
        Err(text) => return cannot_start(&text),
    };
    if let Err(e) = kill_children_on_signal() {
        return cannot_start(&format!("cannot watch for signals: {e}"));
    }
    say(&format!("service binaries: {}", bins.dir.display()));
    match play(&bins) {
        Ok(()) => {
            say("\nDemo complete: all 4 steps behaved as expected.");
            ExitCode::SUCCESS
        }
        Err(StepFailed { step, why }) => {
            say(&format!("\nDEMO FAILED at {step}: {why}"));
            ExitCode::FAILURE
        }
    }
}

fn cannot_start(text: &str) -> ExitCode {
    eprintln!("error: {text}");
    ExitCode::from(2)
}

/// The step that did not behave, and how.
struct StepFailed {
    step: &'static str,
    why: String,
}

/// Tags a step's error with the step's name.
fn in_step<T>(step: &'static str, result: Result<T, String>) -> Result<T, StepFailed> {
    result.map_err(|why| StepFailed { step, why })
}

const SETUP: &str = "setup (starting A and B)";
const STEP1: &str = "step 1 (success)";
const STEP2: &str = "step 2 (A stopped: connect)";
const STEP3: &str = "step 3 (A slow: timeout)";
const STEP4: &str = "step 4 (A back: recovery)";

fn play(bins: &Binaries) -> Result<(), StepFailed> {
    heading("Starting the services");
    let mut a = in_step(SETUP, Service::start("A", &bins.a, &a_args(0, &[])))?;
    // A is restarted on the port it got first, the one B is configured with.
    let a_port = a.addr.port();
    let a_url = format!("http://{}", a.addr);
    let b_args = vec![
        "--port".to_owned(),
        "0".to_owned(),
        "--service-a-url".to_owned(),
        a_url,
        "--timeout-ms".to_owned(),
        B_TIMEOUT_MS.to_string(),
    ];
    let mut b = in_step(SETUP, Service::start("B", &bins.b, &b_args))?;
    let to_b = in_step(SETUP, Caller::new(b.addr))?;

    heading("Step 1: success. B calls A, A echoes, B wraps the echo");
    let reply = in_step(STEP1, to_b.call("demo-1", &a, &b))?;
    in_step(STEP1, reply.expect_echo())?;
    verdict("200, and A's echo came back through B");

    heading("Step 2: A stopped. B cannot connect and answers 503 at once");
    in_step(STEP2, a.stop())?;
    let reply = in_step(STEP2, to_b.call("demo-2", &a, &b))?;
    in_step(STEP2, reply.expect_failure("connect"))?;
    verdict(&format!(
        "503 with error_kind=connect after {:.1} ms; B itself is still up",
        ms(reply.latency)
    ));

    heading(&format!(
        "Step 3: A restarted with --delay-ms {SLOW_A_DELAY_MS}. B gives up at its {B_TIMEOUT_MS} ms deadline"
    ));
    let slow = a_args(a_port, &["--delay-ms", &SLOW_A_DELAY_MS.to_string()]);
    a = in_step(STEP3, Service::start("A", &bins.a, &slow))?;
    if !a.wait_for_log("chaos on", LOG_WAIT) {
        return in_step(STEP3, Err("A did not log that its chaos is on".into()));
    }
    let reply = in_step(STEP3, to_b.call("demo-3", &a, &b))?;
    in_step(STEP3, reply.expect_failure("timeout"))?;
    let (low, high) = TIMEOUT_WINDOW;
    if reply.latency < low || reply.latency > high {
        return in_step(
            STEP3,
            Err(format!(
                "the timeout came after {:.0} ms, outside {:.0}..{:.0} ms",
                ms(reply.latency),
                ms(low),
                ms(high)
            )),
        );
    }
    verdict(&format!(
        "503 with error_kind=timeout after {:.0} ms (measured by the demo; expected {:.0}..{:.0} ms)",
        ms(reply.latency),
        ms(low),
        ms(high)
    ));

    heading("Step 4: A restarted normally. B recovers");
    // A is still sleeping on step 3's request, which B gave up on: the drain lets it finish.
    in_step(STEP4, a.stop())?;
    a = in_step(STEP4, Service::start("A", &bins.a, &a_args(a_port, &[])))?;
    let started = Instant::now();
    let mut attempt = 1;
    loop {
        let reply = in_step(STEP4, to_b.call(&format!("demo-4-try{attempt}"), &a, &b))?;
        match reply.expect_echo() {
            Ok(()) => {
                verdict(&format!("200 again, on try {attempt}"));
                break;
            }
            Err(why) if started.elapsed() + RECOVERY_PAUSE > RECOVERY_WINDOW => {
                return in_step(
                    STEP4,
                    Err(format!("B had not recovered after {attempt} tries: {why}")),
                );
            }
            Err(why) => say(&format!("not yet ({why}); trying again")),
        }
        attempt += 1;
        thread::sleep(RECOVERY_PAUSE);
    }

    heading("Stopping the services");
    in_step("cleanup", b.stop())?;
    in_step("cleanup", a.stop())?;
    Ok(())
}

/// A's flags: `port` (0 for a free one), a short drain, then `extra` (`start` adds the host).
fn a_args(port: u16, extra: &[&str]) -> Vec<String> {
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
struct Binaries {
    dir: PathBuf,
    a: PathBuf,
    b: PathBuf,
}

impl Binaries {
    /// `bin_dir` if given, else the directory of this program: cargo puts every binary of the
    /// package in the same `target/<profile>/` (and under `cargo run`, builds them there first).
    fn find(bin_dir: &str) -> Result<Binaries, String> {
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
fn kill_children_on_signal() -> std::io::Result<()> {
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
struct Service {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Service {
    /// Starts `bin --host 127.0.0.1 args...` and waits for its first log line,
    /// `service=X listening on ADDR`, to learn its address.
    fn start(name: &'static str, bin: &Path, args: &[String]) -> Result<Service, String> {
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
                    say(&format!("  {name} | {}", readable(&line)));
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
    fn stop(&mut self) -> Result<(), String> {
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
    fn wait_for_log(&self, needle: &str, within: Duration) -> bool {
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

/// The demo's side of the conversation: `GET /call-echo` to B through the project's client.
struct Caller {
    client: Client,
    base: String,
}

/// B's answer to one call, and how long it took as the demo saw it.
struct Reply {
    status: u16,
    body: String,
    latency: Duration,
}

impl Caller {
    fn new(b: SocketAddr) -> Result<Caller, String> {
        let base = format!("http://{b}");
        let upstream = Upstream::from_url(&base)?;
        Ok(Caller {
            client: Client::new(upstream, ClientLimits::default()),
            base,
        })
    }

    /// Prints the curl that does the same, sends it, waits for the request's log line in B,
    /// and in A when A answered (so the logs appear above the response), prints the response.
    fn call(&self, request_id: &str, a: &Service, b: &Service) -> Result<Reply, String> {
        let target = "/call-echo?msg=hello";
        say(&format!(
            "$ curl -i -H 'X-Request-Id: {request_id}' '{}{target}'",
            self.base
        ));
        let started = Instant::now();
        let headers = [("X-Request-Id", request_id)];
        let response = smol::block_on(self.client.get(
            target,
            &headers,
            Deadline::after(CLIENT_DEADLINE),
        ))
        .map_err(|e| format!("B did not answer: {e}"))?;
        let latency = started.elapsed();
        let needle = format!("request_id={request_id}");
        b.wait_for_log(&needle, LOG_WAIT);
        if response.head.status == 200 {
            a.wait_for_log(&needle, LOG_WAIT);
        }
        let reply = Reply {
            status: response.head.status,
            body: String::from_utf8_lossy(&response.body).into_owned(),
            latency,
        };
        say(&format!(
            "< {}    ({:.1} ms)\n< {}",
            response.head.status_line(),
            ms(latency),
            reply.body
        ));
        Ok(reply)
    }
}

impl Reply {
    fn json(&self) -> Result<serde_json::Value, String> {
        serde_json::from_str(&self.body).map_err(|e| format!("body is not JSON ({e})"))
    }

    /// `200` `{"service_b":"ok","service_a":{"echo":"hello"}}`.
    fn expect_echo(&self) -> Result<(), String> {
        if self.status != 200 {
            return Err(format!("expected status 200, got {}", self.status));
        }
        let echo = self.json()?.pointer("/service_a/echo").cloned();
        match echo {
            Some(serde_json::Value::String(text)) if text == "hello" => Ok(()),
            other => Err(format!("expected service_a.echo \"hello\", got {other:?}")),
        }
    }

    /// `503` with `error_kind` = `kind`.
    fn expect_failure(&self, kind: &str) -> Result<(), String> {
        if self.status != 503 {
            return Err(format!("expected status 503, got {}", self.status));
        }
        let json = self.json()?;
        match json.get("error_kind").and_then(|k| k.as_str()) {
            Some(got) if got == kind => Ok(()),
            got => Err(format!("expected error_kind {kind:?}, got {got:?}")),
        }
    }
}

/// A service's log line without its timestamp and module, for reading:
/// `2026-01-01T00:00:00.000Z INFO  [echo_lab::run] service=A ...` → `INFO  service=A ...`.
fn readable(line: &str) -> String {
    let rest = match line.split_once(' ') {
        Some((stamp, rest)) if stamp.ends_with('Z') && stamp.contains('T') => rest,
        _ => return line.to_owned(),
    };
    let Some((level, message)) = rest.split_once(' ') else {
        return rest.to_owned();
    };
    let message = message.trim_start();
    let message = match message.strip_prefix('[').and_then(|m| m.split_once("] ")) {
        Some((_module, text)) => text,
        None => message,
    };
    format!("{level:<5} {message}")
}

/// Prints a block of lines at once, so the services' log lines never land inside it.
fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

fn heading(title: &str) {
    say(&format!("\n== {title} =="));
}

fn verdict(text: &str) {
    say(&format!("ok: {text}"));
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_lose_timestamp_and_module() {
        assert_eq!(
            readable(
                "2026-11-24T21:55:09.603Z INFO  [echo_lab::run] service=A listening on 127.0.0.1:1"
            ),
            "INFO  service=A listening on 127.0.0.1:1"
        );
        assert_eq!(
            readable("2026-11-24T21:55:09.603Z WARN  [echo_lab::services] service=B x=1"),
            "WARN  service=B x=1"
        );
        assert_eq!(readable("error: bad flag"), "error: bad flag");
    }

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
