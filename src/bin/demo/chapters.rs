//! One chapter per calling pattern: the same fault twice, through a B without the pattern and a
//! B with it (`B` and `B+`, both over the same replicas of A), and the difference checked.
//!
//! ```text
//! chapter    fault                       pattern (B+)           checked
//! dead       1 of 3 replicas killed      --retries --eject      errors without, none with
//! slow       1 of 3 replicas +300 ms     --balance peak-ewma    calls over 250 ms cut to a
//!                                        --hedge auto           fifth or less
//! flaky      all 3 fail 20 % of calls    --retries              ok % up to 95 % or more
//! outage     all 3 fail every call       --breaker              A's load cut to a third or
//!                                                               less, fast 503 circuit_open
//! blackhole  all 3 never answer          --breaker              p50 cut to a quarter or less
//! deadline   A takes 1.5 s, B waits 1 s  --propagate-deadline   A abandons the work
//! ```
//!
//! Each chapter streams calls at `RATE` for a couple of seconds, open loop. The checks compare
//! B+ with B on the same machine at the same moment, with wide margins, so that a busy machine
//! (CI, a shared VM) slows both and changes no verdict; `bench/scenarios.sh` measures the same
//! faults properly, at 300 calls a second.

use std::thread;
use std::time::Duration;

use echo_lab::child::Binaries;

use crate::caller::{Tally, metric, stream};
use crate::service::{Service, Show, a_args};
use crate::{ms, say, verdict};

/// A chapter: its name for `--chapter`, its heading, and the play.
pub struct Chapter {
    pub name: &'static str,
    pub title: &'static str,
    pub play: fn(&Binaries) -> Result<(), String>,
}

pub const CHAPTERS: [Chapter; 6] = [
    Chapter {
        name: "dead",
        title: "A dead replica: retries on another, and ejection (--retries --eject)",
        play: dead_replica,
    },
    Chapter {
        name: "slow",
        title: "A slow replica: peak-EWMA balancing and hedging (--balance peak-ewma --hedge auto)",
        play: slow_replica,
    },
    Chapter {
        name: "flaky",
        title: "Flaky replicas: retries within a budget (--retries)",
        play: flaky,
    },
    Chapter {
        name: "outage",
        title: "An outage: the circuit breaker spares A (--breaker)",
        play: outage,
    },
    Chapter {
        name: "blackhole",
        title: "A black hole: the circuit breaker answers at once (--breaker)",
        play: black_hole,
    },
    Chapter {
        name: "deadline",
        title: "A deadline passed on: A stops when B has given up (--propagate-deadline)",
        play: deadline,
    },
];

/// Calls a second in a chapter: enough for percentiles, little for a shared machine.
const RATE: u32 = 100;
/// How long each stream of calls lasts.
const STREAM: Duration = Duration::from_secs(2);
/// B's deadline, as in the story.
const B_TIMEOUT_MS: &str = "1000";

/// Three replicas of A, replica i with `chaos[i]`.
fn replicas(bins: &Binaries, chaos: [&[&str]; 3]) -> Result<Vec<Service>, String> {
    const NAMES: [&str; 3] = ["A1", "A2", "A3"];
    NAMES
        .iter()
        .zip(chaos)
        .map(|(name, flags)| Service::start_showing(name, &bins.a, &a_args(0, flags), Show::Events))
        .collect()
}

/// B without the pattern and B+ with `pattern`, both calling every replica in `a`.
fn both_b(bins: &Binaries, a: &[Service], pattern: &[&str]) -> Result<(Service, Service), String> {
    let urls: Vec<String> = a.iter().map(|s| format!("http://{}", s.addr)).collect();
    let args = |extra: &[&str]| {
        let mut args: Vec<String> = ["--port", "0", "--timeout-ms", B_TIMEOUT_MS]
            .map(String::from)
            .to_vec();
        args.extend(["--service-a-url".to_owned(), urls.join(",")]);
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    };
    let without = Service::start_showing("B", &bins.b, &args(&[]), Show::Events)?;
    let with = Service::start_showing("B+", &bins.b, &args(pattern), Show::Events)?;
    Ok((without, with))
}

/// Streams calls through B and B+ in turn, printing each summary.
fn through_both(
    b: &Service,
    b_plus: &Service,
    duration: Duration,
) -> Result<(Tally, Tally), String> {
    say("-- through B, without the pattern:");
    let without = stream(b.addr, RATE, duration)?;
    say(&format!("B:  {}", without.summary()));
    say("-- through B+, with it:");
    let with = stream(b_plus.addr, RATE, duration)?;
    say(&format!("B+: {}", with.summary()));
    Ok((without, with))
}

/// Prints what B+'s `/metrics` says of the pattern at work: each of `names`, summed over its
/// series (over the replicas, for a per-replica one).
fn show_metrics(b_plus: &Service, names: &[&str]) -> Result<(), String> {
    say(&format!(
        "$ curl -s http://{}/metrics | grep -E '{}'",
        b_plus.addr,
        names.join("|")
    ));
    for name in names {
        match metric(b_plus, name, "")? {
            Some(value) => say(&format!("{name} {value}")),
            None => say(&format!("{name}: no such series")),
        }
    }
    Ok(())
}

/// Passes with `text` as the verdict when `ok`, else fails with it.
pub fn check(ok: bool, text: String) -> Result<(), String> {
    if ok {
        verdict(&text);
        Ok(())
    } else {
        Err(text)
    }
}

/// The `/echo` requests A's replicas answered so far (work A abandoned is answered too, 503).
fn echo_work(a: &[Service]) -> Result<f64, String> {
    let mut work = 0.0;
    for replica in a {
        work += metric(replica, "echo_lab_requests_total", "endpoint=\"/echo\"")?.unwrap_or(0.0);
    }
    Ok(work)
}

fn dead_replica(bins: &Binaries) -> Result<(), String> {
    let a = replicas(bins, [&[], &[], &[]])?;
    let (b, b_plus) = both_b(bins, &a, &["--retries", "--eject"])?;
    a[2].signal("-KILL", "A3 dies; both Bs still have it in their lists")?;
    let (without, with) = through_both(&b, &b_plus, STREAM)?;
    show_metrics(
        &b_plus,
        &[
            "echo_lab_upstream_retries_total",
            "echo_lab_upstream_replica_ejections_total",
        ],
    )?;
    let ejected = b_plus.log_count("ejected after consecutive failures");
    check(
        without.failed_percent() >= 15.0 && with.failed_percent() <= 1.0,
        format!(
            "without: {:.1} % of calls failed (a third went to the dead replica); with retries \
             and ejection: {:.1} % (B+ logged {ejected} ejection(s))",
            without.failed_percent(),
            with.failed_percent()
        ),
    )
}

fn slow_replica(bins: &Binaries) -> Result<(), String> {
    let a = replicas(bins, [&["--delay-ms", "300"], &[], &[]])?;
    let (b, b_plus) = both_b(bins, &a, &["--balance", "peak-ewma", "--hedge", "auto"])?;
    // Both patterns learn from answers: peak EWMA each replica's latency, the hedge delay the
    // 90th percentile, and the retry budget that hedges draw on grows with the calls. A B+
    // just started knows none of it, and on a busy machine its first second still sends
    // unhedged calls to the slow replica. What the chapter shows is B+ once it has learned.
    say("-- B+ warms up for 1 s (not counted):");
    stream(b_plus.addr, RATE, Duration::from_secs(1))?;
    let (without, with) = through_both(&b, &b_plus, STREAM)?;
    show_metrics(
        &b_plus,
        &[
            "echo_lab_upstream_hedges_total",
            "echo_lab_upstream_hedge_wins_total",
        ],
    )?;
    // Counted as calls slower than 250 ms rather than by p99 alone: a busy machine adds tens
    // of milliseconds to everything, never the slow replica's 300.
    let slow = Duration::from_millis(250);
    let (over_without, over_with) = (without.percent_over(slow), with.percent_over(slow));
    check(
        over_without >= 20.0 && over_with <= over_without / 5.0,
        format!(
            "without: {over_without:.1} % of calls took over 250 ms, p99 {:.0} ms (round robin \
             sends a third to the slow one); with peak EWMA and hedging: {over_with:.1} %, p99 \
             {:.1} ms",
            ms(without.quantile(0.99)),
            ms(with.quantile(0.99))
        ),
    )
}

fn flaky(bins: &Binaries) -> Result<(), String> {
    let fail = ["--fail-rate", "0.2"];
    let a = replicas(bins, [&fail, &fail, &fail])?;
    let (b, b_plus) = both_b(bins, &a, &["--retries"])?;
    let (without, with) = through_both(&b, &b_plus, STREAM)?;
    show_metrics(
        &b_plus,
        &[
            "echo_lab_upstream_retries_total",
            "echo_lab_upstream_budget_refusals_total",
        ],
    )?;
    check(
        without.ok_percent() <= 92.0
            && with.ok_percent() >= 95.0
            && with.ok_percent() > without.ok_percent(),
        format!(
            "ok without: {:.1} % (A fails a fifth); with retries on another replica: {:.1} %",
            without.ok_percent(),
            with.ok_percent()
        ),
    )
}

fn outage(bins: &Binaries) -> Result<(), String> {
    let fail = ["--fail-rate", "1"];
    let a = replicas(bins, [&fail, &fail, &fail])?;
    let (b, b_plus) = both_b(bins, &a, &["--breaker"])?;
    say("-- through B, without the pattern:");
    let before = echo_work(&a)?;
    let without = stream(b.addr, RATE, STREAM)?;
    let middle = echo_work(&a)?;
    say(&format!("B:  {}", without.summary()));
    say("-- through B+, with it:");
    let with = stream(b_plus.addr, RATE, STREAM)?;
    let after = echo_work(&a)?;
    say(&format!("B+: {}", with.summary()));
    show_metrics(&b_plus, &["echo_lab_upstream_breaker_opened_total"])?;
    let load = |work: f64, tally: &Tally| work / tally.sent.max(1) as f64;
    let (load_without, load_with) = (load(middle - before, &without), load(after - middle, &with));
    let open = with.failures.get("503 circuit_open").copied().unwrap_or(0);
    check(
        load_without >= 0.9 && load_with <= load_without / 3.0 && open * 2 >= with.sent,
        format!(
            "A's load without: {load_without:.2} requests per call; with the breaker: \
             {load_with:.2}, and {open} of {} calls answered 503 circuit_open at once (p50 \
             {:.1} ms)",
            with.sent,
            ms(with.quantile(0.5))
        ),
    )
}

fn black_hole(bins: &Binaries) -> Result<(), String> {
    let hole = ["--blackhole"];
    let a = replicas(bins, [&hole, &hole, &hole])?;
    let (b, b_plus) = both_b(bins, &a, &["--breaker"])?;
    // Longer than the others: the breaker must see calls fail (after B's 1 s deadline) before
    // it opens, and the calls sent until then all wait.
    let (without, with) = through_both(&b, &b_plus, STREAM * 3 / 2)?;
    show_metrics(&b_plus, &["echo_lab_upstream_breaker_opened_total"])?;
    let (p50_without, p50_with) = (without.quantile(0.5), with.quantile(0.5));
    check(
        p50_without >= Duration::from_millis(800) && p50_with <= p50_without / 4,
        format!(
            "p50 without: {:.0} ms (every call waits out B's deadline); with the breaker: \
             {:.1} ms (once open, B answers circuit_open at once)",
            ms(p50_without),
            ms(p50_with)
        ),
    )
}

fn deadline(bins: &Binaries) -> Result<(), String> {
    let a = vec![Service::start_showing(
        "A",
        &bins.a,
        &a_args(0, &["--delay-ms", "1500"]),
        Show::Events,
    )?];
    let (b, b_plus) = both_b(bins, &a, &["--propagate-deadline"])?;
    // After the calls, A's 1.5 s of work for the last one has to end (finished or abandoned)
    // before its counters tell the story.
    let settle = Duration::from_millis(1800);
    let calls = Duration::from_secs(1);
    let finished = |a: &Service| {
        metric(
            a,
            "echo_lab_requests_total",
            "endpoint=\"/echo\",status=\"200\"",
        )
    };
    let abandoned = |a: &Service| metric(a, "echo_lab_abandoned_total", "");
    say("-- through B, without the pattern:");
    let without = stream(b.addr, RATE / 10, calls)?;
    thread::sleep(settle);
    // Read with the pattern off too: A abandons nothing when B does not say how long it waits.
    let missing = || "A's /metrics has no echo_lab_abandoned_total".to_owned();
    let done1 = finished(&a[0])?.unwrap_or(0.0);
    let gone1 = abandoned(&a[0])?.ok_or_else(missing)?;
    say(&format!(
        "B:  {}; A then finished {done1:.0}",
        without.summary()
    ));
    say("-- through B+, with it:");
    let with = stream(b_plus.addr, RATE / 10, calls)?;
    thread::sleep(settle);
    let done2 = finished(&a[0])?.unwrap_or(0.0);
    let gone2 = abandoned(&a[0])?.ok_or_else(missing)?;
    let (done, gone) = (done2 - done1, gone2 - gone1);
    say(&format!(
        "B+: {}; A then finished {done:.0}, abandoned {gone:.0}",
        with.summary()
    ));
    check(
        done1 >= without.sent as f64 * 0.8 && gone1 == 0.0 && gone >= with.sent as f64 * 0.8,
        format!(
            "without: A finished {done1:.0} of {} calls after B gave up on them; with the \
             deadline passed on: A abandoned {gone:.0} of {} and finished {done:.0}",
            without.sent, with.sent
        ),
    )
}
