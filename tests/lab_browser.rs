//! The lab's page in a real browser: runs `tests/browser/lab_page.py` (headless Chromium through
//! Selenium, Debian's packages) against the lab binary. The script clicks the page's own
//! buttons and reads what it shows; see its docstring for the steps.
//!
//! Without Chromium, chromedriver or Debian's Selenium this prints one `SKIP` line and passes,
//! except in CI (`common::in_ci`), where it must run and fails instead.
//!
//! `LAB_DOCS_SCREENSHOT=1 cargo test --test lab_browser` also writes the README's screenshot,
//! `docs/lab.png`. The others go to `target/lab-screenshots/`.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Debian's Python, for which `python3-selenium` is installed (the first `python3` on a
/// developer's PATH may be another, without it).
const PYTHON: &str = "/usr/bin/python3";

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/lab_page.py");

/// The line this test prints when it cannot run.
const SKIP: &str = "SKIP lab_browser: install chromium chromium-driver python3-selenium";

/// The script's own waits add up to about two minutes at worst; past this it is stuck. It
/// is then sent SIGTERM (it cleans up: the lab, the browser), and SIGKILL `GRACE` later.
const LIMIT: Duration = Duration::from_secs(240);
const GRACE: Duration = Duration::from_secs(15);

/// What is missing for the test to run, if anything.
fn missing() -> Option<String> {
    let on_path = |name: &str| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
    };
    let mut missing = Vec::new();
    if !on_path("chromium") {
        missing.push("chromium");
    }
    if !on_path("chromedriver") {
        missing.push("chromedriver");
    }
    let selenium = Command::new(PYTHON)
        .args(["-c", "import selenium"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !selenium.is_ok_and(|s| s.success()) {
        missing.push("selenium for /usr/bin/python3");
    }
    (!missing.is_empty()).then(|| missing.join(", "))
}

#[test]
fn the_page_works_in_a_real_browser() {
    if let Some(what) = missing() {
        if common::in_ci() {
            panic!("lab_browser cannot run ({what} missing), and in CI (CI is set) it must");
        }
        // Straight to stderr, past the test harness's capture: one line, seen in every run.
        let _ = writeln!(std::io::stderr(), "{SKIP}");
        return;
    }
    let lab = Path::new(env!("CARGO_BIN_EXE_lab"));
    let bin_dir = lab.parent().expect("the binaries' directory");
    let target = bin_dir.parent().expect("the target directory");
    let mut command = Command::new(PYTHON);
    command
        .arg(SCRIPT)
        .arg("--lab")
        .arg(lab)
        .arg("--bin-dir")
        .arg(bin_dir)
        .arg("--out")
        .arg(target.join("lab-screenshots"));
    if std::env::var_os("LAB_DOCS_SCREENSHOT").is_some_and(|v| v == "1") {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs");
        std::fs::create_dir_all(&docs).expect("docs/");
        command.arg("--docs").arg(docs.join("lab.png"));
    }
    let (status, output) = run_bounded(command);
    // Shown with `--nocapture`, and with the failure.
    println!("{output}");
    assert!(
        status.success(),
        "the browser test failed ({status}):\n{output}"
    );
}

/// Runs `command` with stdout and stderr together, for at most `LIMIT`: then SIGTERM, and
/// SIGKILL after `GRACE`. Its exit status and output.
fn run_bounded(mut command: Command) -> (ExitStatus, String) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the browser script");
    let readers = [
        read_all(
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ),
        read_all(
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ),
    ];
    let status = wait(&mut child, LIMIT).unwrap_or_else(|| {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        wait(&mut child, GRACE).unwrap_or_else(|| {
            let _ = child.kill();
            child.wait().expect("wait")
        })
    });
    let output: Vec<String> = readers
        .map(|reader| reader.join().unwrap_or_default())
        .into();
    (status, output.join(""))
}

/// Reads a pipe to its end on a thread of its own.
fn read_all(pipe: Option<Box<dyn Read + Send>>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    })
}

/// Waits up to `within` for `child` to exit.
fn wait(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        thread::sleep(Duration::from_millis(100));
    }
    None
}
