//! The demo binary plays its four steps and its pattern chapters against the real services, and
//! leaves nothing running.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The story takes a few seconds, the pattern chapters about thirty; past these they are stuck.
const DEMO_LIMIT: Duration = Duration::from_secs(60);
const CHAPTERS_LIMIT: Duration = Duration::from_secs(150);

/// Runs the demo with `args` in its own process group, so that if it overruns `DEMO_LIMIT`
/// the group (the demo and its services) is killed together; panics then.
fn run_demo(args: &[&str], envs: &[(&str, &str)]) -> Output {
    run_demo_within(args, envs, DEMO_LIMIT)
}

/// `run_demo` with its own limit.
///
/// `cargo test` sets `CARGO` for the tests, and the demo would then build the services with it:
/// they are built already, so it is removed unless `envs` sets it.
fn run_demo_within(args: &[&str], envs: &[(&str, &str)], limit: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_demo"))
        .args(args)
        .env_remove("CARGO")
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn demo");
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out = thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stdout.read_to_end(&mut text);
        text
    });
    let err = thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text);
        text
    });
    let end = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > end {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            panic!("demo still running after {limit:?}");
        }
        thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// Every address the transcript says a service listened on.
fn listening_addrs(transcript: &str) -> Vec<SocketAddr> {
    transcript
        .lines()
        .filter_map(|l| l.split("listening on ").nth(1))
        .map(|a| a.trim().parse().expect("an address"))
        .collect()
}

/// The transcript's part from `== {title}` to the next heading.
fn section<'a>(transcript: &'a str, title: &str) -> &'a str {
    let start = transcript
        .find(&format!("== {title}"))
        .unwrap_or_else(|| panic!("no {title:?} in:\n{transcript}"));
    let rest = &transcript[start..];
    let end = rest[3..].find("\n== ").map_or(rest.len(), |i| i + 3);
    &rest[..end]
}

/// Nothing accepts any more on the addresses the transcript says services listened on.
fn assert_all_gone(transcript: &str, at_least: usize) {
    let addrs = listening_addrs(transcript);
    assert!(
        addrs.len() >= at_least,
        "{at_least} services at least: {addrs:?}"
    );
    for addr in addrs {
        assert!(
            TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
            "something still listens on {addr} after the demo"
        );
    }
}

#[test]
fn demo_plays_all_four_steps_and_cleans_up() {
    let output = run_demo(&["--chapter", "story"], &[]);
    let transcript = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "demo failed ({}):\n{transcript}\n{stderr}",
        output.status
    );
    let step = |n: u32| section(&transcript, &format!("Step {n}:"));
    for (n, status, shows) in [
        (1, "< HTTP/1.1 200 OK", r#""service_a":{"echo":"hello"}"#),
        (2, "< HTTP/1.1 503", r#""error_kind":"connect""#),
        (3, "< HTTP/1.1 503", r#""error_kind":"timeout""#),
        (4, "< HTTP/1.1 200 OK", r#""service_a":{"echo":"hello"}"#),
    ] {
        let text = step(n);
        assert!(
            text.contains("$ curl -i"),
            "step {n} shows its request:\n{text}"
        );
        assert!(text.contains(status), "step {n} answers {status}:\n{text}");
        assert!(text.contains(shows), "step {n} shows {shows}:\n{text}");
        assert!(
            text.contains("\nok: "),
            "step {n} passed its check:\n{text}"
        );
        assert!(text.contains("  B | "), "step {n} shows B's log:\n{text}");
    }
    assert!(step(2).contains("$ kill -TERM"), "A is stopped in step 2");
    assert!(
        step(3).contains("error_kind=timeout after"),
        "step 3 prints the measured latency:\n{}",
        step(3)
    );
    assert!(transcript.contains("Demo complete: all 4 steps behaved as expected."));

    // Every service the demo started is gone: A three times and B once.
    assert_all_gone(&transcript, 4);
}

/// Each pattern chapter runs the same fault through B without and B+ with its pattern, and
/// passes its check (the demo's own margins are wide: it compares the two, not absolutes).
#[test]
fn demo_plays_every_pattern_chapter_and_cleans_up() {
    let output = run_demo_within(&["--chapter", "patterns"], &[], CHAPTERS_LIMIT);
    let transcript = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "demo failed ({}):\n{transcript}\n{stderr}",
        output.status
    );
    for (n, pattern) in [
        (1, "--retries --eject"),
        (2, "--balance peak-ewma --hedge auto"),
        (3, "--retries"),
        (4, "--breaker"),
        (5, "--breaker"),
        (6, "--propagate-deadline"),
    ] {
        let text = section(&transcript, &format!("Chapter {n}:"));
        assert!(
            text.contains(pattern),
            "chapter {n} names {pattern}:\n{text}"
        );
        assert!(
            text.contains("\nB:  "),
            "chapter {n} ran B without it:\n{text}"
        );
        assert!(
            text.contains("\nB+: "),
            "chapter {n} ran B+ with it:\n{text}"
        );
        assert!(
            text.contains("\nok: "),
            "chapter {n} passed its check:\n{text}"
        );
    }
    assert!(transcript.contains("Demo complete: all 6 pattern chapters behaved as expected."));
    // Per chapter: three replicas (one for the deadline) and two Bs.
    assert_all_gone(&transcript, 5 * 5 + 3);
}

/// Whether this service-b has the flags the capacity chapters need: `--adaptive-limit` and
/// `--retries naive` (B's overload work).
fn b_has_the_overload_flags() -> bool {
    let help = Command::new(env!("CARGO_BIN_EXE_service-b"))
        .arg("--help")
        .output()
        .expect("service-b --help");
    let text = String::from_utf8_lossy(&help.stdout);
    text.contains("--adaptive-limit") && text.contains("naive")
}

/// The capacity chapters (overload, metastable, comeback) need B's `--adaptive-limit` and
/// `--retries naive`; each chapter passes its check.
#[test]
fn demo_plays_the_capacity_chapters() {
    assert!(
        b_has_the_overload_flags(),
        "service-b --help does not list both --adaptive-limit and --retries naive"
    );
    let output = run_demo_within(&["--chapter", "capacity"], &[], CHAPTERS_LIMIT);
    let transcript = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed ({}):\n{transcript}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    for n in 1..=3 {
        let text = section(&transcript, &format!("Chapter {n}:"));
        assert!(text.contains("goodput/s at "), "chapter {n}:\n{text}");
        assert!(text.contains("\nok: "), "chapter {n} passed:\n{text}");
    }
    assert!(transcript.contains("Demo complete: all 3 capacity chapters behaved as expected."));
}

#[test]
fn demo_refuses_an_unknown_chapter() {
    let output = run_demo(&["--chapter", "nope"], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("--chapter"), "{stderr}");
}

#[test]
fn demo_explains_missing_service_binaries() {
    let empty = std::env::temp_dir().join(format!("echo-lab-demo-empty-{}", std::process::id()));
    std::fs::create_dir_all(&empty).expect("temp dir");
    let output = run_demo(
        &["--bin-dir", empty.to_str().expect("utf-8 temp path")],
        &[],
    );
    let _ = std::fs::remove_dir(&empty);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains("service-a and service-b not found"),
        "{stderr}"
    );
}

/// Under `cargo run` the demo builds the services with the same cargo, profile and target
/// directory. A stand-in cargo records its arguments and fails, which the demo reports.
#[test]
fn demo_under_cargo_builds_the_services_first() {
    let dir = std::env::temp_dir().join(format!("echo-lab-demo-cargo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let record = dir.join("args");
    let fake = dir.join("cargo");
    std::fs::write(
        &fake,
        format!("#!/bin/sh\necho \"$@\" > '{}'\nexit 3\n", record.display()),
    )
    .expect("write fake cargo");
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let output = run_demo(
        &[],
        &[
            ("CARGO", fake.to_str().expect("utf-8 temp path")),
            ("CARGO_MANIFEST_DIR", env!("CARGO_MANIFEST_DIR")),
            ("CARGO_PKG_NAME", env!("CARGO_PKG_NAME")),
        ],
    );
    let args = std::fs::read_to_string(&record).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("building the services failed"), "{stderr}");
    let demo_dir = std::path::Path::new(env!("CARGO_BIN_EXE_demo"))
        .parent()
        .expect("the demo has a directory");
    let target_dir = demo_dir.parent().expect("target/<profile>");
    let profile = match demo_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => String::new(),
        Some("release") => "--release ".to_owned(),
        Some(other) => format!("--profile {other} "),
        None => panic!("no profile directory"),
    };
    let manifest = format!("{}/Cargo.toml", env!("CARGO_MANIFEST_DIR"));
    assert_eq!(
        args.trim(),
        format!(
            "build {profile}--bin service-a --bin service-b --manifest-path {manifest} \
             --target-dir {}",
            target_dir.display()
        )
    );
}

#[test]
fn demo_help_names_both_ways_to_run_it() {
    let output = run_demo(&["--help"], &[]);
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("cargo run --release --bin demo"), "{text}");
    assert!(text.contains("--bin-dir"), "{text}");
}
