//! Churn: 10 000 `/call-echo` requests from 64 keep-alive clients while A is killed and
//! restarted twice on the same port. Every request gets exactly one complete response (200 or
//! 503), none hangs, and B stays the same running process throughout.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{Reply, Service, parse_replies};

const TOTAL: usize = 10_000;
const CLIENTS: usize = 64;
/// A request without a complete response by then is a hang.
const HANG: Duration = Duration::from_secs(5);
/// A is killed once this many requests have completed...
const KILL_AT: [usize; 2] = [2_000, 6_000];
/// ...and the whole test must be over by then.
const OVERALL: Duration = Duration::from_secs(240);

/// What became of one request.
#[derive(Debug)]
enum Outcome {
    /// 200, and whether A was up and listening for the whole request.
    Ok { steady: bool },
    /// 503, with its `error_kind`, and whether A was up and listening for the whole request
    /// (no reason to fail then, except a slow machine).
    Unavailable { kind: String, steady: bool },
}

/// A client on one kept-alive connection to B, reconnecting when B closes it.
struct Client {
    addr: SocketAddr,
    stream: Option<TcpStream>,
}

impl Client {
    /// Sends one `GET target` and reads exactly one response, all within `HANG`.
    fn request(&mut self, target: &str, id: &str) -> Result<Reply, String> {
        let start = Instant::now();
        let left = || {
            HANG.checked_sub(start.elapsed())
                .filter(|d| !d.is_zero())
                .ok_or_else(|| format!("no complete response within {HANG:?} (hang)"))
        };
        let reused = self.stream.is_some();
        let mut stream = match self.stream.take() {
            Some(stream) => stream,
            None => {
                let stream = TcpStream::connect_timeout(&self.addr, left()?)
                    .map_err(|e| format!("connect to B: {e}"))?;
                stream.set_nodelay(true).map_err(|e| e.to_string())?;
                stream
            }
        };
        let request = format!("GET {target} HTTP/1.1\r\nHost: b\r\nX-Request-Id: {id}\r\n\r\n");
        stream
            .set_write_timeout(Some(left()?))
            .map_err(|e| e.to_string())?;
        stream
            .write_all(request.as_bytes())
            .map_err(|e| format!("write (reused connection: {reused}): {e}"))?;
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let (replies, used) = parse_replies(&raw, false);
            if let Some(reply) = replies.into_iter().next() {
                if used != raw.len() {
                    return Err(format!(
                        "bytes after the response (a second response?): {:?}",
                        String::from_utf8_lossy(&raw[used..])
                    ));
                }
                let close = reply
                    .header("connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("close"));
                if !close {
                    self.stream = Some(stream);
                }
                return Ok(reply);
            }
            stream
                .set_read_timeout(Some(left()?))
                .map_err(|e| e.to_string())?;
            match stream.read(&mut buf) {
                Ok(0) => {
                    return Err(format!(
                        "B closed the connection (reused: {reused}) before a complete response: \
                         {:?}",
                        String::from_utf8_lossy(&raw)
                    ));
                }
                Ok(n) => raw.extend_from_slice(&buf[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return Err(format!(
                        "no complete response within {HANG:?} (hang); got {:?}",
                        String::from_utf8_lossy(&raw)
                    ));
                }
                Err(e) => return Err(format!("read (reused: {reused}): {e}")),
            }
        }
    }
}

/// Checks one reply against its request; the outcome, or why it is wrong.
fn judge(reply: &Reply, msg: &str, id: &str, steady: bool) -> Result<Outcome, String> {
    if reply.header("x-request-id") != Some(id) {
        return Err(format!("X-Request-Id is not {id}: {reply:?}"));
    }
    let body: serde_json::Value = serde_json::from_slice(&reply.body)
        .map_err(|e| format!("body not JSON ({e}): {reply:?}"))?;
    match reply.status {
        200 => {
            let want = serde_json::json!({"service_b": "ok", "service_a": {"echo": msg}});
            if body != want {
                return Err(format!("200 with body {body}, expected {want}"));
            }
            Ok(Outcome::Ok { steady })
        }
        503 => {
            let kind = body["error_kind"]
                .as_str()
                .ok_or_else(|| format!("503 without error_kind: {body}"))?;
            Ok(Outcome::Unavailable {
                kind: kind.to_owned(),
                steady,
            })
        }
        other => Err(format!("status {other}: {reply:?}")),
    }
}

/// Starts A on `port` (of 127.0.0.1) with extra `args`, retrying while the port is still busy.
fn start_a_on(port: u16, args: &[&str]) -> Service {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let mut command = Command::new(env!("CARGO_BIN_EXE_service-a"));
        command
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Logs go to stdout, a startup error to stderr. `Service::spawn` panics when the
        // service does not start (port in use): retry.
        let free = TcpListener::bind(("127.0.0.1", port)).map(drop).is_ok();
        if free && let Ok(service) = catch_unwind(AssertUnwindSafe(|| Service::spawn(command))) {
            return service;
        }
        assert!(
            Instant::now() < end,
            "A could not listen on port {port} again within 10 s"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ten_thousand_calls_while_a_is_killed_and_restarted_twice() {
    let a = Service::a(&[]);
    let port = a.addr.port();
    let mut b = Service::b(&a.url(), &[]);
    let b_pid = b.child.id();
    let b_addr = b.addr;

    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let completed = Arc::new(AtomicUsize::new(0));
    // True while A is down or restarting; a request sent while false was sent to a running A
    // that had finished starting.
    let churning = Arc::new(AtomicBool::new(false));
    // Kills so far: a request during which it changed may have met the kill.
    let kills = Arc::new(AtomicUsize::new(0));
    let outcomes = Arc::new(Mutex::new(Vec::with_capacity(TOTAL)));
    let failures = Arc::new(Mutex::new(Vec::new()));

    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (next, completed) = (next.clone(), completed.clone());
            let (churning, kills) = (churning.clone(), kills.clone());
            let (outcomes, failures) = (outcomes.clone(), failures.clone());
            thread::spawn(move || {
                let mut client = Client {
                    addr: b_addr,
                    stream: None,
                };
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= TOTAL {
                        return;
                    }
                    if started.elapsed() > OVERALL {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("request {i} not sent: over {OVERALL:?}"));
                        continue;
                    }
                    let msg = format!("c{c}-r{i}");
                    let id = format!("churn-{i}");
                    let kills_before = kills.load(Ordering::SeqCst);
                    let up = !churning.load(Ordering::SeqCst);
                    let sent = Instant::now();
                    let result = client
                        .request(&format!("/call-echo?msg={msg}"), &id)
                        .and_then(|reply| {
                            let steady = up && kills.load(Ordering::SeqCst) == kills_before;
                            judge(&reply, &msg, &id, steady)
                        });
                    match result {
                        Ok(outcome) => outcomes.lock().unwrap().push((i, outcome)),
                        Err(e) => {
                            // Start the next request on a fresh connection.
                            client.stream = None;
                            failures.lock().unwrap().push(format!(
                                "request {i} (client {c}, after {:?}): {e}",
                                sent.elapsed()
                            ));
                        }
                    }
                    completed.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();

    // Kill A (SIGKILL: no goodbye to B's pooled connections) and restart it, twice, mid-load.
    let mut a = a;
    let mut restarts = Vec::new();
    for at in KILL_AT {
        while completed.load(Ordering::SeqCst) < at {
            assert!(
                started.elapsed() < OVERALL,
                "load stalled before {at} completions"
            );
            thread::sleep(Duration::from_millis(5));
        }
        churning.store(true, Ordering::SeqCst);
        kills.fetch_add(1, Ordering::SeqCst);
        let killed_at = completed.load(Ordering::SeqCst);
        let down = Instant::now();
        a.signal("KILL");
        assert!(
            a.wait_exit(Duration::from_secs(5)).is_some(),
            "A did not die"
        );
        a = start_a_on(port, &[]);
        let downtime = down.elapsed();
        // A is listening again: from now on B has no excuse to fail.
        churning.store(false, Ordering::SeqCst);
        let back_at = completed.load(Ordering::SeqCst);
        restarts.push((killed_at, back_at, downtime));
    }

    for client in clients {
        client.join().expect("client thread panicked");
    }
    let elapsed = started.elapsed();

    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    let failures = std::mem::take(&mut *failures.lock().unwrap());
    let ok = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Ok { .. }))
        .count();
    let steady_ok = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Ok { steady: true }))
        .count();
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    let mut steady_503: Vec<(usize, String)> = Vec::new();
    for (i, outcome) in &outcomes {
        if let Outcome::Unavailable { kind, steady } = outcome {
            *by_kind.entry(kind.clone()).or_default() += 1;
            if *steady {
                steady_503.push((*i, kind.clone()));
            }
        }
    }
    println!("churn: {TOTAL} requests from {CLIENTS} clients in {elapsed:?}");
    for (n, (killed_at, back_at, downtime)) in restarts.iter().enumerate() {
        println!(
            "churn: kill #{}: A killed after {killed_at} completed, listening again after \
             {downtime:?} ({back_at} completed)",
            n + 1
        );
    }
    println!(
        "churn: total={} 200={ok} 503={} {by_kind:?} failures={}",
        outcomes.len() + failures.len(),
        outcomes.len() - ok,
        failures.len()
    );
    println!(
        "churn: sent while A was up and listening: 200={steady_ok} 503={} {:?}",
        steady_503.len(),
        &steady_503[..steady_503.len().min(20)]
    );

    assert!(
        failures.is_empty(),
        "{} requests without exactly one good response, e.g. {:#?}",
        failures.len(),
        &failures[..failures.len().min(20)]
    );
    assert_eq!(outcomes.len(), TOTAL, "every request must get one response");
    // Once A listens again, a stale pooled connection must be retried, never surface as 503.
    // Only a deadline passed on an overloaded machine is excusable.
    let unexcused: Vec<_> = steady_503
        .iter()
        .filter(|(_, kind)| kind != "timeout")
        .collect();
    assert!(
        unexcused.is_empty(),
        "503s for requests sent while A was up: {unexcused:?}"
    );
    // The bound: at most 1 % of the requests sent while A was steady may miss the 1 s
    // deadline (a loaded machine); every other one is a 200. At least the 2 000 before the
    // first kill were steady.
    let steady = steady_ok + steady_503.len();
    assert!(
        steady >= KILL_AT[0],
        "only {steady} requests were sent while A was steady"
    );
    assert!(
        steady_503.len() * 100 <= steady,
        "{} of {steady} requests sent while A was up timed out (over 1 %)",
        steady_503.len()
    );
    assert!(b.is_running(), "B is not running at the end");
    assert_eq!(b.child.id(), b_pid, "B was restarted");
    let logs = b.logs();
    assert_eq!(
        logs.iter().filter(|l| l.contains("listening on")).count(),
        1,
        "B started more than once?"
    );
    let reply = common::get(b.addr, "/call-echo?msg=after");
    assert_eq!(reply.status, 200, "B after the churn: {reply:?}");
    drop(a);
}

/// The pool half of the churn, made deterministic: B's kept-alive connections to A all go
/// stale at once when A is killed and restarted with no traffic in between. The next calls,
/// each taking a different stale connection from the pool, must all be retried on a fresh
/// connection and succeed; none may surface as a 503.
#[test]
fn stale_pooled_connections_to_a_restarted_a_are_retried() {
    const CALLS: usize = 20;
    // A delay, so that concurrent calls each need a connection of their own.
    let mut a = Service::a(&["--delay-ms", "100"]);
    let port = a.addr.port();
    let b = Service::b(&a.url(), &[]);
    let concurrent_calls = |round: &str| -> Vec<Result<Reply, String>> {
        let threads: Vec<_> = (0..CALLS)
            .map(|i| {
                let (addr, msg) = (b.addr, format!("{round}{i}"));
                thread::spawn(move || {
                    let mut client = Client { addr, stream: None };
                    let reply = client.request(&format!("/call-echo?msg={msg}"), &msg)?;
                    judge(&reply, &msg, &msg, true).map(|_| reply)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("call thread"))
            .collect()
    };
    for (i, reply) in concurrent_calls("fill").into_iter().enumerate() {
        let reply = reply.unwrap_or_else(|e| panic!("filling the pool, call {i}: {e}"));
        assert_eq!(reply.status, 200, "filling the pool, call {i}: {reply:?}");
    }

    a.signal("KILL");
    assert!(
        a.wait_exit(Duration::from_secs(5)).is_some(),
        "A did not die"
    );
    let _a = start_a_on(port, &["--delay-ms", "100"]);

    let results = concurrent_calls("after");
    let bad: Vec<_> = results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| match r {
            Ok(reply) if reply.status == 200 => None,
            Ok(reply) => Some(format!("call {i}: {} {}", reply.status, reply.text())),
            Err(e) => Some(format!("call {i}: {e}")),
        })
        .collect();
    println!(
        "stale pool: {} of {CALLS} calls after A's restart answered 200",
        CALLS - bad.len()
    );
    assert!(
        bad.is_empty(),
        "stale pooled connections surfaced as failures: {bad:#?}"
    );
}
