//! `loadgen`: an HTTP/1.1 load generator built on echo-lab's own client
//! (`echo_lab::http::client`), so that a sweep needs nothing from outside the project.
//!
//! ```text
//! loadgen http://127.0.0.1:8081/call-echo?msg=hi -c 64 -d 10s [--rate 5000] [--json]
//! ```
//!
//! * Closed loop (default): `-c` workers, each sending its next request as soon as the last one
//!   is answered. Latency is measured from the moment a request is sent.
//! * Open loop (`--rate N`): request `i` is due at `start + i/N`, whoever sends it. Its latency
//!   is measured from that *intended* time, so a server that stalls shows up as latency rather
//!   than as fewer samples ("coordinated omission"). Requests still due when the run ends but
//!   never sent (every worker was busy) are reported as `unsent`.
//!
//! Workers are tasks on a smol `Executor`, run by `-t` threads (default: one per core). Every
//! request carries its own deadline (`--timeout`). Latencies go into a fixed-size log-linear
//! histogram (about 3 % resolution), so memory does not grow with the number of requests.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use async_io::Timer;
use echo_lab::http::client::{Client, Deadline, Upstream};
use echo_lab::http::limits::ClientLimits;
use futures_lite::{FutureExt, StreamExt};
use smol::Executor;

const USAGE: &str = "\
loadgen: HTTP/1.1 load generator on echo-lab's own client

usage: loadgen URL [-c N] [-d DURATION | -n COUNT] [-t N] [--timeout DURATION] [--rate N]
               [-H 'Name: value']... [--max-error-rate R] [--json]

  URL                 http://host:port/path?query (plain http only)
  -c, --connections N concurrent workers, each with its own kept-alive connection [64]
  -d, --duration D    how long to send requests [10s; with -n alone: until COUNT are done]
  -n, --requests N    send N requests in all, then stop (with -d too: whichever comes first)
  -H, --header H      add a request header, 'Name: value'; repeat for more
  -t, --threads N     threads running the workers [one per core]
      --timeout D     deadline of each request, from when it is sent [5s]
      --rate N        open loop: N requests/s in all, latency measured from each request's
                      intended send time (coordinated omission); default: closed loop
      --max-error-rate R  fraction of failed requests (0 to 1) still counted a success [0]
      --json          print the summary only as one JSON document, instead of the text
  -h, --help          print this text
  -V, --version       print the name and version

DURATION: a number with a unit, ms, s, m or h (500ms, 10s, 2m); a bare number is seconds.
Throughput counts responses of any status; connection-level failures are counted apart, by
kind (connect, timeout, closed, bad_response). Latency mean and percentiles are over responses.
A request failed if it got no response or a 5xx one. A progress line goes to stderr each second
when stderr is a terminal.

Exit status: 0 when the failed fraction is at most --max-error-rate, 1 when it is above (the
summary is printed either way), 2 for a usage error.";

/// Exit status of a run whose failed fraction was above `--max-error-rate`.
const EXIT_TOO_MANY_FAILURES: u8 = 1;

/// Exit status of a usage error, as for the services.
const EXIT_USAGE: u8 = 2;

/// `-n` without `-d`: the run is bounded by its count, and the clock is only a backstop (a
/// century, so that `start + duration` stays an `Instant`).
const NO_TIME_LIMIT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Header fields `-H` may not set: the client writes them itself (`Host`), or they would
/// describe a body or a connection that loadgen does not send or manage.
const RESERVED_HEADERS: [&str; 4] = ["host", "content-length", "transfer-encoding", "connection"];

fn main() -> ExitCode {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(Parsed::Run(options)) => options,
        Ok(Parsed::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            println!("{}", echo_lab::config::version_line());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("loadgen: error: {e} (try --help)");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let summary = run(&options);
    if options.json {
        println!("{}", summary.json(&options));
    } else {
        print!("{}", summary.text(&options));
    }
    if summary.failed_fraction() > options.max_error_rate {
        ExitCode::from(EXIT_TOO_MANY_FAILURES)
    } else {
        ExitCode::SUCCESS
    }
}

// ---------------------------------------------------------------------------------------------
// Options

/// What the command line asked for.
#[derive(Debug, Clone)]
struct Options {
    /// The URL as given, for the report.
    url: String,
    upstream: Upstream,
    /// Path and query, sent as the request-target.
    target: String,
    connections: usize,
    duration: Duration,
    threads: usize,
    timeout: Duration,
    /// Requests per second in all (open loop), or `None` (closed loop).
    rate: Option<f64>,
    /// `-n`: how many requests in all, or `None` (until the duration ends).
    count: Option<u64>,
    /// `-H`: extra request header fields, in order.
    headers: Vec<(String, String)>,
    /// The largest fraction of failed requests that still counts as a successful run.
    max_error_rate: f64,
    json: bool,
}

/// The outcome of reading the command line.
#[derive(Debug)]
enum Parsed {
    Run(Options),
    Help,
    Version,
}

/// More workers than this would only measure the file-descriptor limit.
const MAX_CONNECTIONS: usize = 100_000;

impl Options {
    /// Reads the arguments (without the program name). Errors are one line, naming the flag.
    fn parse(args: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
        let mut url = None;
        let mut connections = 64;
        let mut duration = None;
        let mut count = None;
        let mut headers = Vec::new();
        let mut max_error_rate = 0.0;
        let mut threads = thread::available_parallelism().map_or(1, |n| n.get());
        let mut timeout = Duration::from_secs(5);
        let mut rate = None;
        let mut json = false;

        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = split_flag(&arg);
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or_else(|| format!("{flag} needs a value"))
            };
            match flag.as_str() {
                "-h" | "--help" | "-V" | "--version" | "--json" if inline.is_some() => {
                    return Err(format!("{flag} takes no value"));
                }
                "-h" | "--help" => return Ok(Parsed::Help),
                "-V" | "--version" => return Ok(Parsed::Version),
                "--json" => json = true,
                "-c" | "--connections" => connections = parse_count(&flag, &value()?)?,
                "-t" | "--threads" => threads = parse_count(&flag, &value()?)?,
                "-d" | "--duration" => {
                    duration = Some(parse_positive_duration(&flag, &value()?)?);
                }
                "-n" | "--requests" => count = Some(parse_count(&flag, &value()?)? as u64),
                "-H" | "--header" => headers.push(parse_header(&value()?)?),
                "--max-error-rate" => max_error_rate = parse_fraction(&flag, &value()?)?,
                "--timeout" => timeout = parse_positive_duration(&flag, &value()?)?,
                "--rate" => rate = Some(parse_rate(&value()?)?),
                other if other.starts_with('-') => return Err(format!("unknown flag {other}")),
                _ if url.is_some() => return Err(format!("unexpected argument {arg:?}")),
                _ => url = Some(arg),
            }
        }
        let url = url.ok_or("missing URL, e.g. http://127.0.0.1:8080/echo?msg=hi")?;
        if connections > MAX_CONNECTIONS {
            return Err(format!("-c: at most {MAX_CONNECTIONS} connections"));
        }
        let (upstream, target) = split_url(&url)?;
        let duration = match (duration, count) {
            (Some(d), _) => d,
            (None, Some(_)) => NO_TIME_LIMIT,
            (None, None) => DEFAULT_DURATION,
        };
        Ok(Parsed::Run(Options {
            url,
            upstream,
            target,
            connections,
            duration,
            threads,
            timeout,
            rate,
            count,
            headers,
            max_error_rate,
            json,
        }))
    }
}

/// How long a run lasts without `-d` or `-n`.
const DEFAULT_DURATION: Duration = Duration::from_secs(10);

/// `Name: value` from `-H`, checked so that it cannot break the request: the name a token
/// (RFC 9110 §5.1), the value free of control characters (no CR or LF to smuggle a line in).
fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("-H {text:?}: expected 'Name: value'"))?;
    let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(format!("-H {text:?}: {name:?} is not a header name"));
    }
    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(format!("-H {text:?}: loadgen sets {name} itself"));
    }
    let value = value.trim_matches([' ', '\t']);
    if value.bytes().any(|b| (b < b' ' && b != b'\t') || b == 0x7f) {
        return Err(format!("-H {text:?}: control characters in the value"));
    }
    Ok((name.to_owned(), value.to_owned()))
}

/// A fraction from 0 to 1, for `flag`.
fn parse_fraction(flag: &str, text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!(
            "{flag}: expected a fraction from 0 to 1, got {text:?}"
        )),
    }
}

/// Splits an argument into a flag and a value given with it: `--flag=value` and, as wrk
/// writes them, `-c64` are the same as `--flag value` and `-c 64`.
fn split_flag(arg: &str) -> (String, Option<String>) {
    if arg.starts_with("--") {
        if let Some((flag, value)) = arg.split_once('=') {
            return (flag.to_owned(), Some(value.to_owned()));
        }
    } else if arg.starts_with('-') && arg.len() > 2 && arg.is_char_boundary(2) {
        let (flag, value) = arg.split_at(2);
        return (flag.to_owned(), Some(value.to_owned()));
    }
    (arg.to_owned(), None)
}

/// Splits `http://host:port/path?query` into the upstream and the request-target (`/` when
/// the URL has no path).
fn split_url(url: &str) -> Result<(Upstream, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("URL {url:?}: only http:// URLs are supported"))?;
    let cut = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(cut);
    let target = match target {
        "" => "/".to_owned(),
        t if t.starts_with('?') => format!("/{t}"),
        t => t.to_owned(),
    };
    if target.contains(['#', ' ']) {
        return Err(format!(
            "URL {url:?}: no fragment or space allowed in the path"
        ));
    }
    let upstream = Upstream::from_url(&format!("http://{authority}"))
        .map_err(|e| format!("URL {url:?}: {e}"))?;
    Ok((upstream, target))
}

/// A whole number of at least 1.
fn parse_count(flag: &str, text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "{flag}: expected a whole number >= 1, got {text:?}"
        )),
    }
}

/// A rate in requests per second: a number above zero.
fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!("--rate: expected requests/s > 0, got {text:?}")),
    }
}

/// A duration of more than zero, for `flag`.
fn parse_positive_duration(flag: &str, text: &str) -> Result<Duration, String> {
    match parse_duration(text) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(format!("{flag}: must be more than zero, got {text:?}")),
        Err(e) => Err(format!("{flag}: {e}")),
    }
}

/// Parses `500ms`, `10s`, `1.5s`, `2m`, `1h`, or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale = match unit {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("bad duration {text:?} (use e.g. 500ms, 10s, 2m)")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("bad duration {text:?} (use e.g. 500ms, 10s, 2m)"))?;
    Duration::try_from_secs_f64(value * scale).map_err(|_| format!("duration {text:?} too long"))
}

// ---------------------------------------------------------------------------------------------
// Histogram

/// Sub-buckets per power of two: 2^5 = 32, so a bucket is at most 1/32 (~3 %) wide.
const SUB_BITS: u32 = 5;
const SUB_COUNT: u64 = 1 << SUB_BITS;

/// Latencies in microseconds, in log-linear buckets (the idea of HdrHistogram, much reduced):
/// values below 64 µs have a bucket each; above, every power of two is split into 32 equal
/// buckets. The bucket array grows only up to the largest value seen (at most 1,920 buckets).
#[derive(Debug, Clone, Default)]
struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
    /// The sum of every value, for the mean (u128: no overflow however long the run).
    sum: u128,
}

impl Histogram {
    /// The bucket of a value.
    fn index(value: u64) -> usize {
        if value < 2 * SUB_COUNT {
            return value as usize;
        }
        let shift = (63 - value.leading_zeros()) - SUB_BITS;
        let mantissa = value >> shift; // in SUB_COUNT..2 * SUB_COUNT
        (shift as u64 * SUB_COUNT + mantissa) as usize
    }

    /// The largest value that falls in bucket `index`.
    fn highest_in(index: usize) -> u64 {
        let index = index as u64;
        if index < 2 * SUB_COUNT {
            return index;
        }
        let shift = index / SUB_COUNT - 1;
        let mantissa = index % SUB_COUNT + SUB_COUNT;
        let low = mantissa << shift;
        low.saturating_add((1u64 << shift) - 1)
    }

    fn record(&mut self, micros: u64) {
        let i = Self::index(micros);
        if i >= self.counts.len() {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] += 1;
        self.total += 1;
        self.max = self.max.max(micros);
        self.sum += u128::from(micros);
    }

    /// The mean of every value recorded (exact, not from the buckets). 0 when empty.
    fn mean(&self) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        self.sum as f64 / self.total as f64
    }

    fn merge(&mut self, other: &Histogram) {
        if other.counts.len() > self.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    /// The value at percentile `p` (0–100): the top of the bucket holding that rank, never
    /// above the largest value recorded. 0 when empty.
    fn percentile(&self, p: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((p / 100.0 * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Self::highest_in(i).min(self.max);
            }
        }
        self.max
    }
}

// ---------------------------------------------------------------------------------------------
// Running

/// The error kinds of `ClientError::kind()`, in the order they are reported.
const ERROR_KINDS: [&str; 4] = ["connect", "timeout", "closed", "bad_response"];

/// What one worker saw. Each worker keeps its own; they are merged at the end.
#[derive(Debug, Default)]
struct Tally {
    latency: Histogram,
    statuses: BTreeMap<u16, u64>,
    errors: BTreeMap<&'static str, u64>,
    /// The first error message of each kind, to say what went wrong.
    first_error: BTreeMap<&'static str, String>,
    unsent: u64,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.latency.merge(&other.latency);
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
        for (kind, text) in other.first_error {
            self.first_error.entry(kind).or_insert(text);
        }
        self.unsent += other.unsent;
    }
}

/// Counters every worker bumps, read by the progress line.
#[derive(Debug, Default)]
struct Live {
    responses: AtomicU64,
    errors: AtomicU64,
    /// The index of the next request: due times in the open loop, the count with `-n`.
    next: AtomicU64,
}

/// What one run shared among its workers.
struct Plan {
    client: Client,
    target: String,
    timeout: Duration,
    rate: Option<f64>,
    count: Option<u64>,
    headers: Vec<(String, String)>,
    start: Instant,
    end: Instant,
    live: Live,
}

/// Runs the whole load and returns its summary.
fn run(options: &Options) -> Summary {
    let limits = ClientLimits {
        // Every worker holds at most one connection; the pool must keep them all, or
        // connections would be closed and opened again between requests.
        max_idle_per_upstream: options.connections,
        ..ClientLimits::default()
    };
    let start = Instant::now();
    let plan = Arc::new(Plan {
        client: Client::new(options.upstream.clone(), limits),
        target: options.target.clone(),
        timeout: options.timeout,
        rate: options.rate,
        count: options.count,
        headers: options.headers.clone(),
        start,
        end: start + options.duration,
        live: Live::default(),
    });
    let ex = Arc::new(Executor::new());
    let tally = on_threads(&ex, options.threads, drive(ex.clone(), plan, options));
    Summary {
        elapsed: start.elapsed(),
        tally,
    }
}

/// Runs `main` on `ex` with `threads` threads in all (this one and `threads - 1` more), and
/// returns its output. `smol::block_on` lets each thread drive the I/O reactor itself while
/// it waits, instead of handing every readiness event over from async-io's own thread.
fn on_threads<T>(ex: &Arc<Executor<'static>>, threads: usize, main: impl Future<Output = T>) -> T {
    let (stop, stopped) = smol::channel::bounded::<()>(1);
    let helpers: Vec<_> = (1..threads)
        .map(|_| {
            let ex = ex.clone();
            let stopped = stopped.clone();
            thread::spawn(move || smol::block_on(ex.run(stopped.recv())))
        })
        .collect();
    let out = smol::block_on(ex.run(main));
    drop(stop);
    for helper in helpers {
        let _ = helper.join();
    }
    out
}

/// Starts the workers and the progress line; returns the merged tally once all are done.
async fn drive(ex: Arc<Executor<'static>>, plan: Arc<Plan>, options: &Options) -> Tally {
    let workers: Vec<_> = (0..options.connections)
        .map(|_| ex.spawn(worker(plan.clone())))
        .collect();
    let all_done = async {
        let mut tally = Tally::default();
        for w in workers {
            tally.merge(w.await);
        }
        tally
    };
    all_done.or(progress(&plan)).await
}

/// Prints `[3s] 41234 req/s, errors so far: 12` on stderr once a second, when stderr is a
/// terminal (a person watching); in a pipe or a file it would only be noise around the summary.
/// Never returns.
async fn progress(plan: &Plan) -> Tally {
    if !std::io::stderr().is_terminal() {
        return futures_lite::future::pending().await;
    }
    let mut ticks = Timer::interval_at(plan.start + Duration::from_secs(1), Duration::from_secs(1));
    let mut last = 0;
    let mut second = 0;
    loop {
        ticks.next().await;
        second += 1;
        let done = plan.live.responses.load(Ordering::Relaxed);
        let errors = plan.live.errors.load(Ordering::Relaxed);
        eprintln!("[{second}s] {} req/s, errors so far: {errors}", done - last);
        last = done;
    }
}

/// One worker: requests back to back (closed loop) or at their due times (open loop), until
/// the run's end. A request in flight at the end is let finish, within its own deadline.
async fn worker(plan: Arc<Plan>) -> Tally {
    let mut tally = Tally::default();
    // Borrowed once per worker, not per request.
    let headers: Vec<(&str, &str)> = plan
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    loop {
        // This request's index: its place in the open loop's schedule, and with `-n` its
        // claim on one of the COUNT requests (one atomic add, small beside a request).
        let i = plan.live.next.fetch_add(1, Ordering::Relaxed);
        if plan.count.is_some_and(|count| i >= count) {
            break;
        }
        let intended = match plan.rate {
            None => Instant::now(),
            Some(rate) => {
                let due = plan.start + Duration::from_secs_f64(i as f64 / rate);
                if due >= plan.end {
                    break;
                }
                if Instant::now() >= plan.end {
                    // Due in time, but every worker was busy until now: the server (or we)
                    // fell behind. Count it, and every later one that was due, as unsent.
                    tally.unsent += 1;
                    continue;
                }
                Timer::at(due).await;
                due
            }
        };
        if plan.rate.is_none() && intended >= plan.end {
            break;
        }
        one_request(&plan, &headers, intended, &mut tally).await;
    }
    tally
}

/// Sends one request and records its outcome. Latency counts from `intended`.
async fn one_request(plan: &Plan, headers: &[(&str, &str)], intended: Instant, tally: &mut Tally) {
    let deadline = Deadline::after(plan.timeout);
    match plan.client.get(&plan.target, headers, deadline).await {
        Ok(response) => {
            let micros = intended.elapsed().as_micros();
            tally
                .latency
                .record(u64::try_from(micros).unwrap_or(u64::MAX));
            *tally.statuses.entry(response.head.status).or_default() += 1;
            plan.live.responses.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            let kind = e.kind();
            *tally.errors.entry(kind).or_default() += 1;
            tally
                .first_error
                .entry(kind)
                .or_insert_with(|| e.to_string());
            plan.live.errors.fetch_add(1, Ordering::Relaxed);
            // A refused connection can fail without ever waiting; let other tasks run.
            futures_lite::future::yield_now().await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reporting

/// The result of a run.
struct Summary {
    /// From the start to the last request's end.
    elapsed: Duration,
    tally: Tally,
}

impl Summary {
    fn responses(&self) -> u64 {
        self.tally.latency.total
    }

    fn errors(&self) -> u64 {
        self.tally.errors.values().sum()
    }

    /// Requests that failed: no response at all, or a 5xx one (the server says it failed).
    fn failed(&self) -> u64 {
        let server_errors: u64 = self.tally.statuses.range(500..600).map(|(_, n)| n).sum();
        self.errors() + server_errors
    }

    /// The failed fraction of all requests; 0 when none was sent.
    fn failed_fraction(&self) -> f64 {
        let requests = self.responses() + self.errors();
        if requests == 0 {
            return 0.0;
        }
        self.failed() as f64 / requests as f64
    }

    fn mean_ms(&self) -> f64 {
        self.tally.latency.mean() / 1000.0
    }

    /// Responses per second of any status.
    fn throughput(&self) -> f64 {
        self.responses() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Latency at percentile `p`, in milliseconds.
    fn ms(&self, p: f64) -> f64 {
        self.tally.latency.percentile(p) as f64 / 1000.0
    }

    fn max_ms(&self) -> f64 {
        self.tally.latency.max as f64 / 1000.0
    }

    fn mode(options: &Options) -> String {
        match options.rate {
            None => "closed loop".to_owned(),
            Some(rate) => format!("open loop at {rate} req/s"),
        }
    }

    /// The human-readable report.
    fn text(&self, options: &Options) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "target:      {}", options.url);
        let _ = writeln!(
            out,
            "mode:        {}, {} connections, {} threads, timeout {:?}",
            Self::mode(options),
            options.connections,
            options.threads,
            options.timeout
        );
        let _ = writeln!(out, "duration:    {:.2} s", self.elapsed.as_secs_f64());
        let _ = writeln!(
            out,
            "requests:    {} ({} responses, {} errors)",
            self.responses() + self.errors(),
            self.responses(),
            self.errors()
        );
        let _ = writeln!(out, "throughput:  {:.1} req/s", self.throughput());
        let _ = writeln!(
            out,
            "latency ms:  mean {:.3}  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            self.mean_ms(),
            self.ms(50.0),
            self.ms(90.0),
            self.ms(99.0),
            self.ms(99.9),
            self.max_ms()
        );
        let statuses: Vec<String> = self
            .tally
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        let statuses = if statuses.is_empty() {
            "none".to_owned()
        } else {
            statuses.join(", ")
        };
        let _ = writeln!(out, "status:      {statuses}");
        let errors: Vec<String> = ERROR_KINDS
            .iter()
            .map(|k| format!("{k}: {}", self.tally.errors.get(k).copied().unwrap_or(0)))
            .collect();
        let _ = writeln!(out, "errors:      {}", errors.join(", "));
        let _ = writeln!(
            out,
            "failed:      {} ({:.2} %; allowed {:.2} %)",
            self.failed(),
            self.failed_fraction() * 100.0,
            options.max_error_rate * 100.0
        );
        for (kind, text) in &self.tally.first_error {
            let _ = writeln!(out, "  first {kind} error: {text}");
        }
        if self.tally.unsent > 0 {
            let _ = writeln!(
                out,
                "unsent:      {} requests were due but no worker was free (raise -c)",
                self.tally.unsent
            );
        }
        out
    }

    /// The same report as one JSON object. Times in milliseconds.
    fn json(&self, options: &Options) -> String {
        let statuses: serde_json::Map<String, serde_json::Value> = self
            .tally
            .statuses
            .iter()
            .map(|(s, n)| (s.to_string(), (*n).into()))
            .collect();
        let errors: serde_json::Map<String, serde_json::Value> = ERROR_KINDS
            .iter()
            .map(|k| {
                let n = self.tally.errors.get(k).copied().unwrap_or(0);
                (k.to_string(), n.into())
            })
            .collect();
        serde_json::json!({
            "url": options.url,
            "connections": options.connections,
            "threads": options.threads,
            "rate": options.rate,
            "timeout_ms": options.timeout.as_millis() as u64,
            "duration_s": self.elapsed.as_secs_f64(),
            "requests": self.responses() + self.errors(),
            "responses": self.responses(),
            "rps": self.throughput(),
            "latency_ms": {
                "mean": self.mean_ms(),
                "p50": self.ms(50.0),
                "p90": self.ms(90.0),
                "p99": self.ms(99.0),
                "p99.9": self.ms(99.9),
                "max": self.max_ms(),
            },
            "failed": self.failed(),
            "max_error_rate": options.max_error_rate,
            "status": statuses,
            "errors": errors,
            "unsent": self.tally.unsent,
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Parsed, String> {
        Options::parse(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        for bad in ["", "s", "10x", "-1s", "1..2s", "ms10"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_split_into_upstream_and_target() {
        let (up, target) = split_url("http://127.0.0.1:8081/call-echo?msg=hi").expect("ok");
        assert_eq!((up.host.as_str(), up.port), ("127.0.0.1", 8081));
        assert_eq!(target, "/call-echo?msg=hi");
        assert_eq!(split_url("http://localhost:80").expect("ok").1, "/");
        assert_eq!(split_url("http://h:1?x=1").expect("ok").1, "/?x=1");
        assert_eq!(split_url("http://[::1]:9/a").expect("ok").0.host, "::1");
        for bad in [
            "https://h:1/",
            "h:1/",
            "http://h:x/",
            "http://:1/",
            "http://h:1/a#b",
        ] {
            assert!(split_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags() {
        let Ok(Parsed::Run(o)) = args(&[
            "http://h:1/e",
            "-c",
            "8",
            "--duration=2s",
            "--rate",
            "100",
            "--json",
            "-t3",
        ]) else {
            panic!("should parse");
        };
        assert_eq!(
            (o.connections, o.duration, o.rate, o.json, o.threads),
            (8, Duration::from_secs(2), Some(100.0), true, 3)
        );
        assert!(matches!(args(&["--help"]), Ok(Parsed::Help)));
        for (bad, says) in [
            (&["http://h:1", "-c", "0"][..], "-c"),
            (&["http://h:1", "-c"][..], "needs a value"),
            (&["http://h:1", "--rate", "-5"][..], "--rate"),
            (&["http://h:1", "-d", "0s"][..], "more than zero"),
            (&["http://h:1", "--nope"][..], "unknown flag"),
            (&["http://h:1", "-x5"][..], "unknown flag -x"),
            (&["http://h:1", "--json=yes"][..], "--json takes no value"),
            (&["http://h:1", "-n", "0"][..], "-n"),
            (
                &["http://h:1", "-H", "NoColon"][..],
                "expected 'Name: value'",
            ),
            (
                &["http://h:1", "-H", "Bad Name: x"][..],
                "not a header name",
            ),
            (&["http://h:1", "-H", "Host: x"][..], "sets Host itself"),
            (&["http://h:1", "-H", "X: a\rb"][..], "control characters"),
            (&["http://h:1", "--max-error-rate", "2"][..], "from 0 to 1"),
            (&[][..], "missing URL"),
            (&["http://h:1", "http://h:2"][..], "unexpected argument"),
        ] {
            match args(bad) {
                Err(e) => assert!(e.contains(says), "{bad:?}: {e}"),
                Ok(_) => panic!("{bad:?} should fail"),
            }
        }
    }

    #[test]
    fn count_headers_and_error_rate() {
        let Ok(Parsed::Run(o)) = args(&[
            "http://h:1/e",
            "-n",
            "7",
            "-H",
            "X-One: 1",
            "-HX-Two:two words ",
            "--max-error-rate=0.25",
        ]) else {
            panic!("should parse");
        };
        assert_eq!(o.count, Some(7));
        assert_eq!(
            o.duration, NO_TIME_LIMIT,
            "-n alone is bounded by its count"
        );
        assert_eq!(
            o.headers,
            [
                ("X-One".to_owned(), "1".to_owned()),
                ("X-Two".to_owned(), "two words".to_owned())
            ]
        );
        assert_eq!(o.max_error_rate, 0.25);
        let Ok(Parsed::Run(o)) = args(&["http://h:1/e", "-n", "7", "-d", "1s"]) else {
            panic!("should parse");
        };
        assert_eq!(o.duration, Duration::from_secs(1));
        assert!(matches!(args(&["-V"]), Ok(Parsed::Version)));
    }

    #[test]
    fn mean_is_exact() {
        let mut h = Histogram::default();
        assert_eq!(h.mean(), 0.0);
        for v in [100, 200, 600] {
            h.record(v);
        }
        assert_eq!(h.mean(), 300.0);
    }

    #[test]
    fn histogram_buckets_are_contiguous_and_tight() {
        let mut last = 0;
        for v in 0..200_000u64 {
            let i = Histogram::index(v);
            assert!(i == last || i == last + 1, "gap at {v}");
            assert!(Histogram::highest_in(i) >= v, "{v} above its bucket");
            // At most ~3 % wide.
            assert!(
                Histogram::highest_in(i) - v <= v / 32,
                "{v} bucket too wide"
            );
            last = i;
        }
        assert_eq!(Histogram::index(u64::MAX), 1919);
        assert_eq!(Histogram::highest_in(1919), u64::MAX);
    }

    #[test]
    fn percentiles() {
        let mut h = Histogram::default();
        assert_eq!(h.percentile(50.0), 0);
        for v in 1..=1000 {
            h.record(v);
        }
        let near = |got: u64, want: u64| got >= want && got <= want + want / 32;
        assert!(near(h.percentile(50.0), 500), "{}", h.percentile(50.0));
        assert!(near(h.percentile(99.0), 990), "{}", h.percentile(99.0));
        assert_eq!(h.percentile(100.0), 1000);
        let mut other = Histogram::default();
        other.record(5_000_000);
        h.merge(&other);
        assert_eq!((h.total, h.max), (1001, 5_000_000));
        assert_eq!(h.percentile(100.0), 5_000_000);
    }
}
