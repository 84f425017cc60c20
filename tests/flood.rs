//! Connection flood: thousands of idle TCP connections must neither stop the service from
//! answering nor leak file descriptors once they are gone. And the open-file limit, which
//! bounds how many connections fit at all: raised at start-up, and reported when too low.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{Service, timed_get};

/// Idle connections to open, when the file-descriptor limit allows.
const WANTED: usize = 2_000;
/// Descriptors the service may hold beyond its starting count once the flood is gone.
const SLACK: usize = 4;

/// Open file descriptors of process `pid` (entries in `/proc/<pid>/fd`).
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/fd: {e}"))
        .count()
}

/// The soft limit on open files of this process, from `/proc/self/limits`.
fn nofile_soft_limit() -> Option<usize> {
    nofile_limits("self").map(|(soft, _)| soft)
}

/// The soft and hard limits on open files of process `pid` ("self" for this one).
fn nofile_limits(pid: &str) -> Option<(usize, usize)> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut fields = line.split_whitespace().skip(3);
    let mut parse = || match fields.next()? {
        "unlimited" => Some(usize::MAX),
        n => n.parse().ok(),
    };
    Some((parse()?, parse()?))
}

/// Starts service A from a shell that first runs `ulimit_args` (e.g. `-Sn 256`).
fn a_under_ulimit(ulimit_args: &str) -> Service {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("ulimit {ulimit_args} && exec \"$0\" \"$@\""))
        .args([
            env!("CARGO_BIN_EXE_service-a"),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Service::spawn(command)
}

/// Polls `open_fds(pid)` for up to `within` until `done` holds; the last count.
fn poll_fds(pid: u32, within: Duration, done: impl Fn(usize) -> bool) -> usize {
    let end = Instant::now() + within;
    loop {
        let n = open_fds(pid);
        if done(n) || Instant::now() >= end {
            return n;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_survives_2000_idle_connections_and_releases_their_fds() {
    let wanted = match nofile_soft_limit() {
        Some(limit) if limit < 4_500 => {
            // Each connection costs one descriptor here and one in the service (which inherits
            // our limit); keep room for everything else.
            let fit = limit.saturating_sub(200) / 2;
            println!(
                "NOTE: RLIMIT_NOFILE soft limit is {limit} (< 4500); opening {fit} connections \
                 instead of {WANTED}"
            );
            fit.min(WANTED)
        }
        Some(_) => WANTED,
        None => {
            println!("NOTE: could not read RLIMIT_NOFILE; trying {WANTED} connections");
            WANTED
        }
    };

    let mut a = Service::a(&[]);
    let pid = a.child.id();
    // One request first, so whatever the service opens lazily is in the starting count. It
    // travels on a kept-alive connection, so we know its descriptor is counted now; the
    // starting count is one less, once the service has seen us close it.
    let mut first = common::connect(a.addr);
    first
        .write_all(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        .expect("write the first /health");
    assert_eq!(common::read_reply(&mut first, false).status, 200);
    let with_first = open_fds(pid);
    drop(first);
    let before = poll_fds(pid, Duration::from_secs(5), |n| n < with_first);
    assert_eq!(
        before,
        with_first - 1,
        "the first connection's descriptor was released"
    );

    let opening = Instant::now();
    let deadline = opening + Duration::from_secs(60);
    let mut idle = Vec::with_capacity(wanted);
    for i in 0..wanted {
        assert!(
            Instant::now() < deadline,
            "opening the flood took over 60 s ({i} of {wanted} open)"
        );
        let stream = TcpStream::connect_timeout(&a.addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("idle connection {i} of {wanted}: {e}"));
        idle.push(stream);
    }
    let during = poll_fds(pid, Duration::from_secs(5), |n| n >= before + wanted);
    println!(
        "A fds: before={before} during={during} with {wanted} idle connections (opened and \
         accepted in {:?})",
        opening.elapsed()
    );
    assert!(
        during >= before + wanted,
        "the service holds {during} fds, expected at least {before} + {wanted}: did it accept them all?"
    );

    for i in 0..5 {
        let reply = timed_get(a.addr, "/health", Duration::from_secs(2))
            .map(|(reply, _)| reply)
            .unwrap_or_else(|e| panic!("/health #{i} during the flood: {e}"));
        assert_eq!(
            reply.status, 200,
            "/health #{i} during the flood: {reply:?}"
        );
        assert_eq!(reply.json(), serde_json::json!({"status": "ok"}));
    }
    assert!(a.is_running(), "A died during the flood");

    drop(idle);
    let closing = Instant::now();
    let after = poll_fds(pid, Duration::from_secs(5), |n| n <= before + SLACK);
    println!(
        "A fds: after={after} (slack {SLACK}), {:?} after closing them",
        closing.elapsed()
    );
    assert!(
        after <= before + SLACK,
        "fds did not return to the starting count: before={before} during={during} after={after}"
    );
    let reply = timed_get(a.addr, "/health", Duration::from_secs(2))
        .map(|(reply, _)| reply)
        .expect("/health after");
    assert_eq!(reply.status, 200);
    assert!(a.is_running(), "A died after the flood");
}

#[test]
fn a_raises_its_soft_open_file_limit_to_the_hard_limit() {
    let Some((_, hard)) = nofile_limits("self") else {
        common::skip_unless_ci("cannot read /proc/self/limits");
        return;
    };
    if hard <= 256 {
        common::skip_unless_ci(&format!("the hard open-file limit is only {hard}"));
        return;
    }
    // Started with a soft limit of 256, like a shell with a low default.
    let a = a_under_ulimit("-Sn 256");
    let (soft, a_hard) = nofile_limits(&a.child.id().to_string()).expect("A's limits");
    assert_eq!(a_hard, hard, "the hard limit is inherited unchanged");
    assert_eq!(soft, hard, "A left its soft limit at {soft}");
    // A warning would come right after the startup line, before any request's line: once a
    // request's line is in, the warning has had its chance.
    let reply = timed_get(a.addr, "/health", Duration::from_secs(2))
        .map(|(reply, _)| reply)
        .expect("/health");
    assert_eq!(reply.status, 200);
    assert!(
        a.wait_for_log("endpoint=/health", Duration::from_secs(5))
            .is_some(),
        "no log line for /health: {:?}",
        a.logs()
    );
    assert!(
        a.logs().iter().all(|l| !l.contains("open-file limit")),
        "no warning when the limit is high enough: {:?}",
        a.logs()
    );
}

#[test]
fn a_warns_when_its_open_file_limit_is_below_the_connection_cap() {
    // Both limits at 512: nothing to raise, and far below the default cap of 10 000.
    let a = a_under_ulimit("-n 512");
    let line = a
        .wait_for_log("open-file limit is 512", Duration::from_secs(2))
        .unwrap_or_else(|| panic!("no warning: {:?}", a.logs()));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("--max-connections 10000"), "{line}");
    let reply = timed_get(a.addr, "/health", Duration::from_secs(2))
        .map(|(reply, _)| reply)
        .expect("/health");
    assert_eq!(reply.status, 200);
}

#[test]
fn running_out_of_descriptors_pauses_accept_and_recovers() {
    // 40 descriptors in all (soft and hard, so A cannot raise them): a few for A itself,
    // the rest for connections. 60 connections: the kernel completes them all, A runs out
    // partway, its accept fails with EMFILE, and it must neither spin nor die.
    let mut a = a_under_ulimit("-n 40");
    let held: Vec<TcpStream> = (0..60)
        .map(|i| {
            TcpStream::connect_timeout(&a.addr, Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("connection {i}: {e}"))
        })
        .collect();
    let first = a
        .wait_for_log("accept failed", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no accept error logged: {:?}", a.logs()));
    assert!(first.contains("ERROR"), "{first}");
    // Paused 50 ms after each failure, not retried at once: over a second, about 20 errors
    // (a spinning loop would log thousands).
    // (A window to count in, not a wait for something to happen.)
    thread::sleep(Duration::from_secs(1));
    let errors = a
        .logs()
        .iter()
        .filter(|l| l.contains("accept failed"))
        .count();
    assert!(
        (2..=60).contains(&errors),
        "{errors} accept errors in about a second: the 50 ms pause is not there"
    );
    assert!(a.is_running(), "A died out of descriptors");

    // The held connections go away; A accepts again and answers.
    drop(held);
    let reply = timed_get(a.addr, "/health", Duration::from_secs(5))
        .map(|(reply, _)| reply)
        .unwrap_or_else(|e| panic!("/health after the descriptors came back: {e}"));
    assert_eq!(reply.status, 200);
}
