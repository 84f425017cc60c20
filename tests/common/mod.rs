//! Test harness shared by the integration tests: start the real binaries on `--port 0`, talk
//! raw HTTP over real sockets, and run small fake upstreams for B.
//!
//! Every wait here is bounded, so a broken service fails a test instead of hanging it.

#![allow(dead_code)]

pub mod in_process;
pub mod netns;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::ops::{Deref, DerefMut};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use echo_lab::child::{ChildService, Lines, listening_address};
use echo_lab::load::prometheus::{Exposition, selector};
use echo_lab::load::schedule::Schedule;

/// How long any single socket read in a test may block.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A running service binary, killed when dropped: the library's `ChildService` (its `child`,
/// `addr` and `lines`), with the test's defaults and panics instead of errors.
pub struct Service(ChildService);

impl Deref for Service {
    type Target = ChildService;
    fn deref(&self) -> &ChildService {
        &self.0
    }
}

impl DerefMut for Service {
    fn deref_mut(&mut self) -> &mut ChildService {
        &mut self.0
    }
}

impl Service {
    /// Starts `service-a` on a free port with extra arguments.
    pub fn a(args: &[&str]) -> Service {
        Service::start(env!("CARGO_BIN_EXE_service-a"), args, &[])
    }

    /// Starts `service-b` on a free port, pointed at `a_url`.
    pub fn b(a_url: &str, args: &[&str]) -> Service {
        let mut all = vec!["--service-a-url", a_url];
        all.extend_from_slice(args);
        Service::start(env!("CARGO_BIN_EXE_service-b"), &all, &[])
    }

    /// Starts `bin --host 127.0.0.1 --port 0 args...` and waits for its startup line,
    /// `service=X listening on ADDR`, to learn the port.
    pub fn start(bin: &str, args: &[&str], envs: &[(&str, &str)]) -> Service {
        let mut command = Command::new(bin);
        command
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(args)
            .env_remove("RUST_LOG")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Service::spawn(command)
    }

    /// Spawns a prepared command and waits for its startup line. Logs go to stdout (errors
    /// before logging starts to stderr); whichever of the two is piped is collected.
    pub fn spawn(mut command: Command) -> Service {
        match ChildService::start(&mut command, Duration::from_secs(10), |_| {}) {
            Ok(service) => Service(service),
            Err(e) => panic!("service did not start: {e}"),
        }
    }

    /// Starts `bin --host 127.0.0.1 --port 0 args...`, reads its startup line, then closes
    /// our end of its stdout: its next log line meets a broken pipe, like `service-a | head`
    /// once `head` has exited. `logs()` then holds only what it writes on stderr.
    pub fn orphan(bin: &str, args: &[&str]) -> Service {
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
        let addr = listening_address(&line)
            .unwrap_or_else(|| panic!("the first line names the address: {line:?}"))
            .parse()
            .expect("an address");
        drop(stdout);
        let lines = Lines::default();
        lines.read_from(child.stderr.take().expect("stderr"), None, |_| {});
        Service(ChildService::adopt(child, addr, lines))
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every log line so far.
    pub fn logs(&self) -> Vec<String> {
        self.lines.all()
    }

    /// Waits up to `within` for a log line containing `needle`.
    pub fn wait_for_log(&self, needle: &str, within: Duration) -> Option<String> {
        self.lines
            .wait_for(needle, 1, within)
            .then(|| self.lines.find(needle))
            .flatten()
    }

    /// Waits up to `within` until at least `count` log lines contain `needle`; whether they do.
    pub fn wait_for_logs(&self, needle: &str, count: usize, within: Duration) -> bool {
        self.lines.wait_for(needle, count, within)
    }

    /// Sends a signal (`"TERM"`, `"INT"`, `"KILL"`) to the process.
    pub fn signal(&self, name: &str) {
        if let Err(e) = self.0.signal(name) {
            panic!("{e}");
        }
    }

    /// Waits up to `within` for the process to exit; its exit code, or `None` if it did not.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        self.0
            .wait_exit(within)
            .map(|status| status.code().unwrap_or(-1))
    }
}

/// One parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status_line: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// The first value of header `name`, compared without case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics with the body if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `error` text of a JSON error body; empty if there is none.
    pub fn error_text(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }
}

/// A request with a body framed by `Content-Length`, `Connection: close` and the extra header
/// lines, as raw bytes ready to send.
pub fn request_with_body(
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> String {
    let mut request = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    request
}

/// Connects with read and write timeouts set.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream
}

/// `GET target` with `Connection: close` and extra header lines; the one response.
pub fn get(addr: SocketAddr, target: &str) -> Reply {
    get_with(addr, target, &[])
}

pub fn get_with(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = format!("GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let raw = exchange(addr, request.as_bytes());
    let (replies, _) = parse_replies(&raw, false);
    replies.into_iter().next().unwrap_or_else(|| {
        panic!(
            "no response to {target}: {:?}",
            String::from_utf8_lossy(&raw)
        )
    })
}

/// `GET target` with `Connection: close`, the whole exchange bounded by `within`.
/// The reply and how long it took, or what went wrong.
pub fn timed_get(
    addr: SocketAddr,
    target: &str,
    within: Duration,
) -> Result<(Reply, Duration), String> {
    let request = format!("GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    timed_exchange(addr, request.as_bytes(), within)
}

/// Writes `request` on a new connection and reads one reply, the whole exchange bounded by
/// `within`. The reply and how long it took, or what went wrong.
pub fn timed_exchange(
    addr: SocketAddr,
    request: &[u8],
    within: Duration,
) -> Result<(Reply, Duration), String> {
    let start = Instant::now();
    let mut stream =
        TcpStream::connect_timeout(&addr, within).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_write_timeout(Some(within))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(request)
        .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(reply) = parse_replies(&raw, false).0.into_iter().next() {
            return Ok((reply, start.elapsed()));
        }
        let left = within
            .checked_sub(start.elapsed())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("no full response within {within:?}: {raw:?}"))?;
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        match stream.read(&mut buf) {
            Ok(0) => return Err(format!("closed before a full response: {raw:?}")),
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("read after {:?}: {e}", start.elapsed())),
        }
    }
}

/// Writes `bytes` on a new connection, then reads until the server closes it. Panics if the
/// server has not closed it within `IO_TIMEOUT`.
pub fn exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = connect(addr);
    stream.write_all(bytes).expect("write request");
    read_to_close(&mut stream)
}

/// How reading a connection to its end went.
#[derive(Debug)]
pub enum End {
    /// The server closed its side cleanly (FIN).
    Eof,
    /// The connection was reset or failed.
    Failed(std::io::Error),
    /// Nothing more came, and the connection stayed open, until the time was up.
    StillOpen,
}

/// Reads everything that arrives on `stream` until it ends or `within` has passed, and says
/// which. A read timeout is `StillOpen`, never taken for a close.
pub fn read_until_end(stream: &mut TcpStream, within: Duration) -> (Vec<u8>, End) {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (out, End::StillOpen);
        }
        stream.set_read_timeout(Some(left)).expect("read timeout");
        match stream.read(&mut buf) {
            Ok(0) => return (out, End::Eof),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (out, End::StillOpen);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return (out, End::Failed(e)),
        }
    }
}

/// Reads until the server closes the connection cleanly (EOF); what arrived. Panics if it is
/// still open after `IO_TIMEOUT`, or if it was reset: a test that relies on a close must see
/// one, and a reset can eat the answer.
pub fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let (bytes, end) = read_until_end(stream, IO_TIMEOUT);
    match end {
        End::Eof => bytes,
        End::Failed(e) => panic!(
            "connection failed ({e}) instead of a clean close, after {:?}",
            String::from_utf8_lossy(&bytes)
        ),
        End::StillOpen => panic!(
            "the server did not close the connection within {IO_TIMEOUT:?}; got {:?}",
            String::from_utf8_lossy(&bytes)
        ),
    }
}

/// Whether the server closed `stream` (EOF or reset) within `within`, reading and dropping
/// anything that arrives meanwhile.
pub fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    !matches!(read_until_end(stream, within).1, End::StillOpen)
}

/// Reads exactly one response from a kept-alive stream (framed by Content-Length).
pub fn read_reply(stream: &mut TcpStream, head_only: bool) -> Reply {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let (replies, _) = parse_replies(&raw, head_only);
        if let Some(reply) = replies.into_iter().next() {
            return reply;
        }
        match stream.read(&mut buf) {
            Ok(0) => panic!(
                "closed before a full response: {:?}",
                String::from_utf8_lossy(&raw)
            ),
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) => panic!(
                "read failed ({e}) after {:?}",
                String::from_utf8_lossy(&raw)
            ),
        }
    }
}

/// Parses every complete response in `raw` (bodies framed by Content-Length, or absent when
/// `head_only` or the response is interim, `1xx`). Returns them and the number of bytes they
/// used. Interim responses (`100 Continue`) are in the list like any other: a test that
/// expects none, or one, says so by the count.
pub fn parse_replies(raw: &[u8], head_only: bool) -> (Vec<Reply>, usize) {
    let mut replies = Vec::new();
    let mut used = 0;
    loop {
        let rest = &raw[used..];
        let Some(head_end) = rest.windows(4).position(|w| w == b"\r\n\r\n") else {
            return (replies, used);
        };
        let head = String::from_utf8_lossy(&rest[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default().to_owned();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let body_len = if head_only || (100..200).contains(&status) {
            0
        } else {
            length
        };
        let body_start = head_end + 4;
        if rest.len() < body_start + body_len {
            return (replies, used);
        }
        replies.push(Reply {
            status_line,
            status,
            headers,
            body: rest[body_start..body_start + body_len].to_vec(),
        });
        used += body_start + body_len;
    }
}

/// The value of the sample `name` in a `/metrics` text, written as it is exposed (labels
/// included: `name{k="v"}`), or 0 when absent. Read by `echo_lab::load::prometheus`.
pub fn sample(metrics: &str, name: &str) -> f64 {
    Exposition::parse(metrics).series(name).unwrap_or(0.0)
}

/// One call through B, as the driver saw it.
#[derive(Debug, Clone)]
pub struct CallOutcome {
    pub status: u16,
    /// B's `error_kind`, or `"client"` when the driver itself got no answer.
    pub kind: Option<String>,
    pub latency: Duration,
    /// When it was due, from the start of the drive.
    pub sent: Duration,
}

/// Sends `/call-echo` to B at `rate` per second for `duration`, open loop (the library's
/// `Schedule`; each request on its own thread at its own time, so a slow answer never delays
/// the next request), and returns every outcome in the order they were sent.
pub fn drive(b: SocketAddr, rate: u32, duration: Duration) -> Vec<CallOutcome> {
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    let schedule = Schedule::new(start, f64::from(rate));
    let total = (duration.as_secs_f64() * f64::from(rate)) as u32;
    for i in 0..total {
        let due = schedule.due(u64::from(i)).expect("a rate above zero");
        thread::sleep(due.saturating_duration_since(Instant::now()));
        let sent = due - start;
        let tx = tx.clone();
        thread::spawn(move || {
            let outcome = match timed_get(b, "/call-echo?msg=hi", Duration::from_secs(3)) {
                Ok((reply, latency)) => CallOutcome {
                    status: reply.status,
                    kind: reply.json()["error_kind"].as_str().map(str::to_owned),
                    latency,
                    sent,
                },
                Err(_) => CallOutcome {
                    status: 0,
                    kind: Some("client".into()),
                    latency: Duration::from_secs(3),
                    sent,
                },
            };
            let _ = tx.send((i, outcome));
        });
    }
    drop(tx);
    let mut all: Vec<(u32, CallOutcome)> = rx.iter().collect();
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, o)| o).collect()
}

/// The sum of every series of `name` in `service`'s `/metrics` whose labels include `labels`
/// (`k="v",…`, e.g. `endpoint="/echo"`; `""` for all); 0 when there is none.
pub fn metric(service: SocketAddr, name: &str, labels: &str) -> f64 {
    let text = get(service, "/metrics").text();
    let pairs = selector(labels).unwrap_or_else(|| panic!("not a list of labels: {labels}"));
    let pairs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    Exposition::parse(&text).sum(name, &pairs)
}

/// A fake upstream for B: a listener on a free port whose every connection is handed to
/// `behave` on its own thread. Stops accepting when dropped.
pub struct FakeUpstream {
    pub addr: SocketAddr,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl FakeUpstream {
    pub fn start(behave: impl Fn(TcpStream) + Send + Sync + 'static) -> FakeUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake upstream");
        FakeUpstream::serve(listener, behave)
    }

    /// Serves on an already bound listener (e.g. to restart on a known port).
    pub fn serve(
        listener: TcpListener,
        behave: impl Fn(TcpStream) + Send + Sync + 'static,
    ) -> FakeUpstream {
        let addr = listener.local_addr().expect("addr");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let behave = Arc::new(behave);
        listener.set_nonblocking(true).expect("nonblocking");
        thread::spawn(move || {
            while !stopped.load(std::sync::atomic::Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let behave = behave.clone();
                        thread::spawn(move || behave(stream));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeUpstream { addr, stop }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A fake A that answers every request on a kept-alive connection with `answer(head)` and
/// records every request head it read, in order of arrival.
pub fn recording_upstream(
    answer: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static,
) -> (FakeUpstream, Arc<Mutex<Vec<String>>>) {
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    let upstream = FakeUpstream::start(move |mut stream: TcpStream| {
        while let Some(head) = read_request_head(&mut stream) {
            seen.lock().expect("heads lock").push(head.clone());
            if stream.write_all(&answer(&head)).is_err() {
                return;
            }
        }
    });
    (upstream, heads)
}

/// Reads exactly `count` responses from a stream, and checks that nothing beyond them
/// arrived. Unlike `read_reply`, which drops whatever came after the first response, this
/// keeps reading until all `count` are complete: pipelined answers usually come in one
/// segment. Interim responses count.
pub fn read_replies(stream: &mut TcpStream, count: usize) -> Vec<Reply> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let (replies, used) = parse_replies(&raw, false);
        if replies.len() >= count {
            assert_eq!(
                replies.len(),
                count,
                "more responses than expected: {:?}",
                String::from_utf8_lossy(&raw)
            );
            assert_eq!(
                used,
                raw.len(),
                "bytes after the last response: {:?}",
                String::from_utf8_lossy(&raw[used..])
            );
            return replies;
        }
        match stream.read(&mut buf) {
            Ok(0) => panic!(
                "closed after {} of {count} responses: {:?}",
                replies.len(),
                String::from_utf8_lossy(&raw)
            ),
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) => panic!(
                "read failed ({e}) after {} of {count} responses: {:?}",
                replies.len(),
                String::from_utf8_lossy(&raw)
            ),
        }
    }
}

/// Reads one request head (up to the blank line) from a fake upstream's connection.
/// Returns `None` if the client closed first.
pub fn read_request_head(stream: &mut TcpStream) -> Option<String> {
    stream.set_read_timeout(Some(IO_TIMEOUT)).ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// Answers every request on the connection with `response` (raw bytes), keeping it open.
pub fn answer_each_with(mut stream: TcpStream, response: &[u8]) {
    while read_request_head(&mut stream).is_some() {
        if stream.write_all(response).is_err() {
            return;
        }
    }
}

/// Closes both directions of a stream, ignoring errors.
pub fn hang_up(stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Both);
}

/// Whether this run is CI: the variable `CI` is set to anything but empty, `0` or `false`.
/// `.ci/run` exports `CI=1`; hosted CI services set `CI=true`. The one rule every test that
/// can skip goes by.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false" | "FALSE" | "False"))
}

/// A test that cannot run here (`why`) skips with a loud `SKIP` line on both streams, outside
/// CI. In CI a skip is a failure: every test must run there.
pub fn skip_unless_ci(why: &str) {
    if in_ci() {
        panic!("this test cannot run ({why}), and in CI (CI is set) it must");
    }
    println!("SKIP: {why}");
    eprintln!("SKIP: {why}");
}

/// Runs `command` to completion with its output captured, and fails the test if it has not
/// exited within `within` (the child is killed first): a regression fails CI, never hangs it.
pub fn output_within(command: &mut Command, within: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
    // Read both pipes on their own threads, so a chatty child cannot block on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut out);
            }
            let _ = tx.send(out);
        });
        rx
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let end = Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            // A grandchild may still hold the pipe: do not wait long for what it said.
            let stderr = stderr
                .recv_timeout(Duration::from_secs(1))
                .unwrap_or_default();
            panic!(
                "{command:?} did not exit within {within:?} (killed); stderr: {:?}",
                String::from_utf8_lossy(&stderr)
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.recv().unwrap_or_default(),
        stderr: stderr.recv().unwrap_or_default(),
    }
}

/// A port on 127.0.0.1 where every connection is refused, held for as long as the returned
/// socket lives: bound, so no other process can take it, but never listening. (A port that
/// was free a moment ago may be someone else's by the time it is used.)
pub fn refusing_port() -> (socket2::Socket, SocketAddr) {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
    socket.bind(&any.into()).expect("bind");
    let addr = socket
        .local_addr()
        .expect("local address")
        .as_socket()
        .expect("an IP address");
    (socket, addr)
}
