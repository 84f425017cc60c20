//! Three chapters about capacity: A's replicas given a real one (`--workers`, `--work-ms`), and
//! what B does when more is asked of them than they can do.
//!
//! ```text
//! chapter     fault                                   Bs compared                checked
//! overload    2x the capacity of 3 replicas           plain, --resilient         the limit's goodput
//!                                                     --adaptive-limit=off,      above half the
//!                                                     --resilient                capacity
//! metastable  capacity cut to a third for 3 s, then   --retries naive,           naive still failing
//!             back (load at two thirds of it)         --resilient                after the trigger;
//!                                                                                ours recovered
//! comeback    1 of 3 replicas killed, then restarted  --resilient                its fair share back
//! ```
//!
//! Goodput is the 200s B answered within its 1 s deadline, per second of the stream. The
//! chapters need B's flags `--adaptive-limit` and `--retries naive`: a B without them fails
//! the chapter at once, naming the flag (a skipped check would pass for the wrong reason).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use async_io::Timer;
use smol::LocalExecutor;

use echo_lab::child::Binaries;
use echo_lab::http::Deadline;
use echo_lab::http::client::{Client, Upstream};
use echo_lab::http::limits::ClientLimits;
use echo_lab::load::schedule::Schedule;

use crate::caller::metric;
use crate::chapters::{Chapter, check};
use crate::say;
use crate::service::{Service, Show, a_args};

pub const CAPACITY_CHAPTERS: [Chapter; 3] = [
    Chapter {
        name: "overload",
        title: "Overload: twice what A can do, and B's adaptive limit (in --resilient)",
        play: overload,
    },
    Chapter {
        name: "metastable",
        title: "A metastable failure: naive retries keep A down after the trigger is gone",
        play: metastable,
    },
    Chapter {
        name: "comeback",
        title: "A replica comes back: it gets its share again (--resilient)",
        play: comeback,
    },
];

/// B's deadline, as in the story; goodput counts the 200s answered within it.
const B_DEADLINE: Duration = Duration::from_secs(1);
/// The demo's own deadline for a call: past B's, so B's answer is always seen.
const CLIENT_DEADLINE: Duration = Duration::from_secs(3);

/// The overload chapter's replicas: one worker, 20 ms a call: 50 calls a second each.
const OVERLOAD_A: [&str; 4] = ["--workers", "1", "--work-ms", "20"];
const OVERLOAD_CAPACITY: f64 = 150.0;

/// The metastable chapter's replicas: 100 calls a second each; the trigger makes every call
/// three times longer.
const META_WORK_MS: u32 = 10;
const META_TRIGGER_WORK_MS: u32 = 30;
const META_RATE: u32 = 200;

/// What one stream of calls saw, second by second.
struct Timeline {
    rate: u32,
    /// 200s answered within B's deadline, in each second the calls were due.
    goodput: Vec<u32>,
    /// Calls that were not a good 200, by B's `error_kind` (or `late`, or the client's error).
    failures: BTreeMap<String, u32>,
}

impl Timeline {
    /// `goodput/s: 150 148 60 0 0 ...`.
    fn show(&self) -> String {
        let seconds: Vec<String> = self.goodput.iter().map(u32::to_string).collect();
        let mut text = format!(
            "goodput/s at {}/s offered: {}",
            self.rate,
            seconds.join(" ")
        );
        for (kind, n) in &self.failures {
            text.push_str(&format!("; {kind}: {n}"));
        }
        text
    }

    /// Mean goodput per second over seconds `from..to` of the stream.
    fn mean(&self, from: usize, to: usize) -> f64 {
        let part = &self.goodput[from.min(self.goodput.len())..to.min(self.goodput.len())];
        f64::from(part.iter().sum::<u32>()) / part.len().max(1) as f64
    }
}

/// Calls B `rate` times a second for `seconds`, open loop (as `caller::stream`), counting the
/// good answers by the second they were due; each of `events` runs at its second, on the side.
fn timeline(
    b: SocketAddr,
    rate: u32,
    seconds: u32,
    events: Vec<(u32, Box<dyn FnOnce() + Send>)>,
) -> Result<Timeline, String> {
    let client = Client::new(
        Upstream::from_url(&format!("http://{b}"))?,
        ClientLimits::default(),
    );
    say(&format!(
        "$ loadgen http://{b}/call-echo?msg=hello --rate {rate} -d {seconds}s    # done \
         in-process, goodput counted per second"
    ));
    let start = Instant::now();
    let side: Vec<_> = events
        .into_iter()
        .map(|(at, event)| {
            thread::spawn(move || {
                thread::sleep(
                    (start + Duration::from_secs(at.into()))
                        .saturating_duration_since(Instant::now()),
                );
                event();
            })
        })
        .collect();
    let executor = LocalExecutor::new();
    let schedule = Schedule::new(start, f64::from(rate.max(1)));
    let results = smol::block_on(executor.run(async {
        let mut calls = Vec::new();
        for i in 0..rate * seconds {
            let due = schedule.due(u64::from(i)).unwrap_or(start);
            Timer::at(due).await;
            let client = &client;
            calls.push(executor.spawn(async move {
                let deadline = Deadline::after(CLIENT_DEADLINE);
                let result = client.get("/call-echo?msg=hello", &[], deadline).await;
                (i / rate, result, due.elapsed())
            }));
        }
        let mut results = Vec::with_capacity(calls.len());
        for call in calls {
            results.push(call.await);
        }
        results
    }));
    for event in side {
        event
            .join()
            .map_err(|_| "an event of the chapter panicked".to_owned())?;
    }
    let mut timeline = Timeline {
        rate,
        goodput: vec![0; seconds as usize],
        failures: BTreeMap::new(),
    };
    for (second, result, latency) in results {
        let failure = match result {
            Ok(response) if response.head.status == 200 && latency <= B_DEADLINE => {
                timeline.goodput[second as usize] += 1;
                continue;
            }
            Ok(response) if response.head.status == 200 => "200 late".to_owned(),
            Ok(response) => serde_json::from_slice::<serde_json::Value>(&response.body)
                .ok()
                .and_then(|json| json.get("error_kind")?.as_str().map(str::to_owned))
                .map_or_else(
                    || format!("{}", response.head.status),
                    |kind| format!("{} {kind}", response.head.status),
                ),
            Err(e) => format!("no answer ({})", e.kind()),
        };
        *timeline.failures.entry(failure).or_default() += 1;
    }
    Ok(timeline)
}

/// Fails at once, naming the flag, when `service-b --help` does not list `flag` (with `word`,
/// the value it must take, when there is one).
fn b_has(bins: &Binaries, flag: &str, word: Option<&str>) -> Result<(), String> {
    let help = Command::new(&bins.b)
        .arg("--help")
        .output()
        .map_err(|e| format!("cannot run service-b --help: {e}"))?;
    let text = String::from_utf8_lossy(&help.stdout);
    let listed = text
        .lines()
        .any(|l| l.split_whitespace().any(|w| w == flag))
        && word.is_none_or(|w| text.contains(w));
    if listed {
        Ok(())
    } else {
        let what = word.map_or_else(|| flag.to_owned(), |w| format!("{flag} {w}"));
        Err(format!(
            "this chapter needs B's {what}, and service-b --help does not list it"
        ))
    }
}

/// Three replicas of A, each started with `flags` and `/control`.
fn replicas(bins: &Binaries, flags: &[&str]) -> Result<Vec<Service>, String> {
    let mut flags = flags.to_vec();
    flags.push("--control");
    ["A1", "A2", "A3"]
        .into_iter()
        .map(|name| Service::start_showing(name, &bins.a, &a_args(0, &flags), Show::Events))
        .collect()
}

/// A B named `name` over every replica in `a`, with `extra` flags.
fn b_over(
    bins: &Binaries,
    name: &'static str,
    a: &[Service],
    extra: &[&str],
) -> Result<Service, String> {
    let urls: Vec<String> = a.iter().map(|s| format!("http://{}", s.addr)).collect();
    let mut args: Vec<String> = ["--port", "0", "--timeout-ms", "1000", "--service-a-url"]
        .map(String::from)
        .to_vec();
    args.push(urls.join(","));
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    Service::start_showing(name, &bins.b, &args, Show::Events)
}

/// Sets A's `work_ms` through `/control`, with the project's client.
fn set_work_ms(addr: SocketAddr, work_ms: u32) -> Result<(), String> {
    let client = Client::new(
        Upstream::from_url(&format!("http://{addr}"))?,
        ClientLimits::default(),
    );
    let body = format!(r#"{{"work_ms":{work_ms}}}"#);
    let response = smol::block_on(client.post(
        "/control",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
        Deadline::after(CLIENT_DEADLINE),
    ))
    .map_err(|e| format!("POST /control to {addr}: {e}"))?;
    match response.head.status {
        200 => Ok(()),
        status => Err(format!("POST /control to {addr} answered {status}")),
    }
}

fn overload(bins: &Binaries) -> Result<(), String> {
    b_has(bins, "--adaptive-limit", None)?;
    say(&format!(
        "-- three replicas, one worker each, 20 ms a call: {OVERLOAD_CAPACITY} calls a second in \
         all; 300 a second are offered"
    ));
    let configs: [(&'static str, &[&str]); 3] = [
        ("B", &[]),
        ("B no limit", &["--resilient", "--adaptive-limit=off"]),
        ("B resilient", &["--resilient"]),
    ];
    let mut goodput = Vec::new();
    for (name, flags) in configs {
        // Fresh replicas for each B: a B that does not tell A its deadline leaves seconds of
        // queued work behind, and the next B would meet that rather than the overload.
        let a = replicas(bins, &OVERLOAD_A)?;
        let b = b_over(bins, name, &a, flags)?;
        say(&format!("-- through {name} ({}):", flags.join(" ")));
        let seen = timeline(b.addr, 300, 4, Vec::new())?;
        say(&format!("{name}: {}", seen.show()));
        // The first second is the limit learning; the rest is what it learned.
        goodput.push(seen.mean(1, 4));
        drop(b);
    }
    let [plain, unlimited, limited] = goodput[..] else {
        return Err("three Bs were measured".to_owned());
    };
    say(&format!(
        "goodput per second, of {OVERLOAD_CAPACITY}: B {plain:.0}, B --resilient without the \
         limit {unlimited:.0}, B --resilient {limited:.0}"
    ));
    check(
        limited > OVERLOAD_CAPACITY / 2.0,
        format!(
            "with the adaptive limit B kept {limited:.0} good answers a second, above half of \
             A's {OVERLOAD_CAPACITY} (plain B: {plain:.0})"
        ),
    )
}

fn metastable(bins: &Binaries) -> Result<(), String> {
    b_has(bins, "--retries", Some("naive"))?;
    let work = META_WORK_MS.to_string();
    say(&format!(
        "-- three replicas at 100 calls a second each; {META_RATE} a second offered; from 2 s to \
         5 s every call takes {META_TRIGGER_WORK_MS} ms (a third of the capacity), then \
         {META_WORK_MS} ms again"
    ));
    let mut last = Vec::new();
    for (name, flags) in [
        ("B naive", &["--retries", "naive"][..]),
        // Without its adaptive limit, --resilient is not steady here (replicas ejected while
        // overloaded leave the others more so; bench/README.md's overload section).
        ("B resilient", &["--resilient"][..]),
    ] {
        // Fresh replicas for each B: naive retries leave A's queues full of work nobody waits
        // for, and the next B would meet that rather than the trigger.
        let a = replicas(bins, &["--workers", "1", "--work-ms", &work])?;
        let b = b_over(bins, name, &a, flags)?;
        let addrs: Vec<SocketAddr> = a.iter().map(|s| s.addr).collect();
        let cut = |work_ms: u32| -> Box<dyn FnOnce() + Send> {
            let addrs = addrs.clone();
            Box::new(move || {
                for addr in addrs {
                    if let Err(e) = set_work_ms(addr, work_ms) {
                        say(&format!("could not change A: {e}"));
                    }
                }
            })
        };
        say(&format!("-- through {name} ({}):", flags.join(" ")));
        let events = vec![(2, cut(META_TRIGGER_WORK_MS)), (5, cut(META_WORK_MS))];
        let seen = timeline(b.addr, META_RATE, 10, events)?;
        say(&format!("{name}: {}", seen.show()));
        last.push(seen.mean(8, 10));
        drop(b);
    }
    let [naive, ours] = last[..] else {
        return Err("two Bs were measured".to_owned());
    };
    let rate = f64::from(META_RATE);
    check(
        naive < rate / 2.0 && ours >= rate * 0.8,
        format!(
            "3 s after the trigger was gone, naive retries still had {naive:.0} good answers a \
             second of {META_RATE} (the retries keep A's queues full: a metastable failure); \
             ours {ours:.0}"
        ),
    )
}

fn comeback(bins: &Binaries) -> Result<(), String> {
    let mut a = replicas(bins, &["--workers", "4", "--work-ms", "10"])?;
    let b = b_over(bins, "B", &a, &["--resilient"])?;
    let port = a[2].addr.port();
    a[2].signal("-KILL", "A3 dies")?;
    say("-- through B while A3 is dead:");
    let dead = timeline(b.addr, 100, 2, Vec::new())?;
    say(&format!("B: {}", dead.show()));
    let flags = ["--workers", "4", "--work-ms", "10", "--control"];
    a[2] = Service::start_showing("A3", &bins.a, &a_args(port, &flags), Show::Events)?;
    say("-- A3 is back on its port; through B, second by second, A3's share of A's work:");
    let mut shares = Vec::new();
    for _ in 0..6 {
        let before = echo_200s(&a)?;
        timeline(b.addr, 100, 1, Vec::new())?;
        let after = echo_200s(&a)?;
        let done: Vec<f64> = after.iter().zip(&before).map(|(x, y)| x - y).collect();
        let share = done[2] / done.iter().sum::<f64>().max(1.0);
        say(&format!("A3's share: {:.0} %", share * 100.0));
        shares.push(share);
    }
    let fair = 0.9 / 3.0;
    let back_after = shares.iter().position(|s| *s >= fair);
    let failed_while_dead: u32 = dead.failures.values().sum();
    check(
        back_after.is_some() && failed_while_dead * 20 <= 100 * 2,
        format!(
            "while A3 was dead {failed_while_dead} of 200 calls failed; back, A3 reached 90 % of \
             its fair share {}",
            back_after.map_or_else(
                || "never in 6 s".to_owned(),
                |s| format!("in second {}", s + 1)
            )
        ),
    )
}

/// Each replica's `/echo` answered 200 so far.
fn echo_200s(a: &[Service]) -> Result<Vec<f64>, String> {
    a.iter()
        .map(|s| {
            metric(
                s,
                "echo_lab_requests_total",
                "endpoint=\"/echo\",status=\"200\"",
            )
            .map(|v| v.unwrap_or(0.0))
        })
        .collect()
}
