//! The demo: one command that starts service A and service B as child processes, breaks A in
//! two ways, and shows what B answers each time; then one chapter per calling pattern of B's
//! (`chapters.rs`), each the same fault with and without it.
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
//! for SIGINT and SIGTERM sent to the demo alone (`service.rs`).
//!
//! `--chapter NAME` plays one part: `story` (the four steps), one pattern chapter, or
//! `patterns` (all of them), one capacity chapter (`overload.rs`), or `capacity` (those three).

mod caller;
mod chapters;
mod overload;
mod service;

use std::io::Write;
use std::process::ExitCode;
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use echo_lab::child::Binaries;
use echo_lab::config::{ConfigError, Flag, Settings};

use caller::Caller;
use chapters::{CHAPTERS, Chapter};
use overload::CAPACITY_CHAPTERS;
use service::{Service, a_args, kill_children_on_signal};

const USAGE: &str = "\
demo: starts service A and service B and plays four steps of a failure story
(success, A stopped, A slow, A back), checking what B answers at each one; then one
chapter per calling pattern of B's: the same fault with and without it, the difference checked.

usage: cargo run --release --bin demo   builds service-a and service-b, then runs the demo
       demo [--bin-dir DIR]             runs the service-a and service-b next to it (or in DIR)
       demo --chapter NAME              plays one part: story, patterns (dead, slow, flaky,
                                        outage, blackhole, deadline), capacity (overload,
                                        metastable, comeback), or one of those chapters

Exit status: 0 when every step behaved, 1 when one did not (it is named), 2 when the demo
could not start, 130/143 when interrupted (SIGINT/SIGTERM).";

const FLAGS: &[Flag] = &[
    Flag::value(
        "bin-dir",
        "DEMO_BIN_DIR",
        "",
        "where service-a and service-b are [default: the demo's own directory]",
    ),
    Flag::value(
        "chapter",
        "DEMO_CHAPTER",
        "all",
        "all, story, patterns, capacity, or one chapter: dead, slow, flaky, outage, blackhole, \
         deadline, overload, metastable, comeback",
    ),
];

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
/// How long the story waits for a log line it expects.
const LOG_WAIT: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    let settings = match Settings::parse(USAGE, FLAGS, std::env::args().skip(1), |k| {
        std::env::var(k).ok()
    }) {
        Ok(settings) => settings,
        Err(ConfigError::Help(text) | ConfigError::Version(text)) => {
            say(&text);
            return ExitCode::SUCCESS;
        }
        Err(e) => return cannot_start(&e.to_string()),
    };
    let parts = match Parts::named(settings.raw("chapter")) {
        Ok(parts) => parts,
        Err(text) => return cannot_start(&text),
    };
    say("echo-lab demo: B calls A; we stop A, slow it down, bring it back, and watch B.");
    let bins = match Binaries::find(settings.raw("bin-dir"), "demo", say) {
        Ok(bins) => bins,
        Err(text) => return cannot_start(&text),
    };
    if let Err(e) = kill_children_on_signal() {
        return cannot_start(&format!("cannot watch for signals: {e}"));
    }
    say(&format!("service binaries: {}", bins.dir.display()));
    match play_parts(&bins, &parts) {
        Ok(()) => {
            say(&format!(
                "\nDemo complete: {} behaved as expected.",
                parts.describe()
            ));
            ExitCode::SUCCESS
        }
        Err(StepFailed { step, why }) => {
            say(&format!("\nDEMO FAILED at {step}: {why}"));
            ExitCode::FAILURE
        }
    }
}

fn cannot_start(text: &str) -> ExitCode {
    // Not eprintln!: a closed stderr must not turn "cannot start" into a panic.
    let _ = writeln!(std::io::stderr().lock(), "error: {text}");
    ExitCode::from(2)
}

/// Which parts of the demo to play.
struct Parts {
    story: bool,
    chapters: Vec<&'static chapters::Chapter>,
}

impl Parts {
    fn named(name: &str) -> Result<Parts, String> {
        let patterns: Vec<&'static Chapter> = CHAPTERS.iter().collect();
        let capacity: Vec<&'static Chapter> = CAPACITY_CHAPTERS.iter().collect();
        let every = || CHAPTERS.iter().chain(CAPACITY_CHAPTERS.iter());
        let (story, chapters) = match name {
            "all" => (true, every().collect()),
            "story" => (true, Vec::new()),
            "patterns" => (false, patterns),
            "capacity" => (false, capacity),
            one => match every().find(|c| c.name == one) {
                Some(chapter) => (false, vec![chapter]),
                None => {
                    let names: Vec<&str> = every().map(|c| c.name).collect();
                    return Err(format!(
                        "--chapter: {one:?} is not all, story, patterns, capacity or one of {}",
                        names.join(", ")
                    ));
                }
            },
        };
        Ok(Parts { story, chapters })
    }

    /// `all 4 steps`, `the 4 steps and 9 chapters`, `chapter outage`, `all 6 pattern
    /// chapters`, `all 3 capacity chapters`.
    fn describe(&self) -> String {
        let capacity = |c: &&Chapter| CAPACITY_CHAPTERS.iter().any(|k| k.name == c.name);
        match (self.story, self.chapters.as_slice()) {
            (true, []) => "all 4 steps".to_owned(),
            (true, more) => format!("the 4 steps and {} chapters", more.len()),
            (false, [one]) => format!("chapter {}", one.name),
            (false, more) if more.iter().all(capacity) => {
                format!("all {} capacity chapters", more.len())
            }
            (false, more) => format!("all {} pattern chapters", more.len()),
        }
    }
}

fn play_parts(bins: &Binaries, parts: &Parts) -> Result<(), StepFailed> {
    if parts.story {
        play(bins)?;
    }
    for (n, chapter) in parts.chapters.iter().enumerate() {
        heading(&format!("Chapter {}: {}", n + 1, chapter.title));
        // Each chapter's services are dropped (killed) when it returns, pass or fail.
        in_step(chapter.name, (chapter.play)(bins))?;
    }
    Ok(())
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

/// A service's log line without its timestamp and module, for reading:
/// `2026-01-01T00:00:00.000Z INFO  [echo_lab::run] service=A ...` → `INFO  service=A ...`.
pub fn readable(line: &str) -> String {
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
pub fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

fn heading(title: &str) {
    say(&format!("\n== {title} =="));
}

pub fn verdict(text: &str) {
    say(&format!("ok: {text}"));
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chapters_are_named_and_known() {
        assert_eq!(
            Parts::named("all").map(|p| p.describe()).ok().as_deref(),
            Some("the 4 steps and 9 chapters")
        );
        assert_eq!(
            Parts::named("story").map(|p| p.describe()).ok().as_deref(),
            Some("all 4 steps")
        );
        assert_eq!(
            Parts::named("outage").map(|p| p.describe()).ok().as_deref(),
            Some("chapter outage")
        );
        assert_eq!(
            Parts::named("capacity")
                .map(|p| p.describe())
                .ok()
                .as_deref(),
            Some("all 3 capacity chapters")
        );
        assert_eq!(
            Parts::named("metastable")
                .map(|p| p.describe())
                .ok()
                .as_deref(),
            Some("chapter metastable")
        );
        assert!(Parts::named("nope").is_err());
    }

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
}
