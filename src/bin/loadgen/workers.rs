//! Running the load: the executor threads, the workers of the closed or open loop, one
//! request with its deadline, and the progress line. What each worker saw is a `Tally`
//! (`report`), merged at the end.

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use async_io::Timer;
use echo_lab::http::client::Client;
use echo_lab::http::limits::ClientLimits;
use echo_lab::load::request;
use echo_lab::load::schedule::Schedule;
use futures_lite::{FutureExt, StreamExt};
use smol::Executor;

use crate::options::Options;
use crate::report::{Summary, Tally};

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
    /// The open loop's due times (`--rate`), or `None` for a closed loop.
    schedule: Option<Schedule>,
    count: Option<u64>,
    headers: Vec<(String, String)>,
    start: Instant,
    end: Instant,
    live: Live,
}

/// Runs the whole load and returns its summary.
pub fn run(options: &Options) -> Summary {
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
        schedule: options.rate.map(|rate| Schedule::new(start, rate)),
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
        crate::print_err(&format!(
            "[{second}s] {} req/s, errors so far: {errors}\n",
            done - last
        ));
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
        let intended = match &plan.schedule {
            None => Instant::now(),
            Some(schedule) => {
                let Some(due) = schedule.due(i).filter(|due| *due < plan.end) else {
                    break;
                };
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
        if plan.schedule.is_none() && intended >= plan.end {
            break;
        }
        one_request(&plan, &headers, intended, &mut tally).await;
    }
    tally
}

/// Sends one request and records its outcome. Latency counts from `intended`.
async fn one_request(plan: &Plan, headers: &[(&str, &str)], intended: Instant, tally: &mut Tally) {
    let sample = request::send(&plan.client, &plan.target, headers, plan.timeout, intended).await;
    match &sample.result {
        Ok(response) => {
            tally.latency.record(sample.micros());
            match response.head.status {
                200 => tally.ok_latency.record(sample.micros()),
                503 => tally.unavailable_latency.record(sample.micros()),
                _ => {}
            }
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
        }
    }
}
