//! The demo's side of the conversation with B, through the project's own client: one call at
//! a time for the story, a steady stream of calls for a chapter, and a service's `/metrics`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use async_io::Timer;
use smol::LocalExecutor;

use echo_lab::http::Deadline;
use echo_lab::http::client::{Client, Upstream};
use echo_lab::http::limits::ClientLimits;
use echo_lab::load::prometheus::{Exposition, selector};
use echo_lab::load::request;
use echo_lab::load::schedule::Schedule;

use crate::service::{LOG_WAIT, Service};
use crate::{ms, say};

/// The demo's own deadline for each request to B: B always answers well within it.
const CLIENT_DEADLINE: Duration = Duration::from_secs(5);

/// What every call of the demo asks B for.
const TARGET: &str = "/call-echo?msg=hello";

/// The demo's side of the conversation: `GET /call-echo` to B through the project's client.
pub struct Caller {
    client: Client,
    base: String,
}

/// B's answer to one call, and how long it took as the demo saw it.
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub latency: Duration,
}

impl Caller {
    pub fn new(b: SocketAddr) -> Result<Caller, String> {
        let base = format!("http://{b}");
        let upstream = Upstream::from_url(&base)?;
        Ok(Caller {
            client: Client::new(upstream, ClientLimits::default()),
            base,
        })
    }

    /// Prints the curl that does the same, sends it, waits for the request's log line in B,
    /// and in A when A answered (so the logs appear above the response), prints the response.
    pub fn call(&self, request_id: &str, a: &Service, b: &Service) -> Result<Reply, String> {
        let target = TARGET;
        say(&format!(
            "$ curl -i -H 'X-Request-Id: {request_id}' '{}{target}'",
            self.base
        ));
        let started = Instant::now();
        let headers = [("X-Request-Id", request_id)];
        let response = smol::block_on(self.client.get(
            target,
            &headers,
            Deadline::after(CLIENT_DEADLINE),
        ))
        .map_err(|e| format!("B did not answer: {e}"))?;
        let latency = started.elapsed();
        let needle = format!("request_id={request_id}");
        b.wait_for_log(&needle, LOG_WAIT);
        if response.head.status == 200 {
            a.wait_for_log(&needle, LOG_WAIT);
        }
        let reply = Reply {
            status: response.head.status,
            body: String::from_utf8_lossy(&response.body).into_owned(),
            latency,
        };
        say(&format!(
            "< {}    ({:.1} ms)\n< {}",
            response.head.status_line(),
            ms(latency),
            reply.body
        ));
        Ok(reply)
    }
}

impl Reply {
    fn json(&self) -> Result<serde_json::Value, String> {
        serde_json::from_str(&self.body).map_err(|e| format!("body is not JSON ({e})"))
    }

    /// `200` `{"service_b":"ok","service_a":{"echo":"hello"}}`.
    pub fn expect_echo(&self) -> Result<(), String> {
        if self.status != 200 {
            return Err(format!("expected status 200, got {}", self.status));
        }
        let echo = self.json()?.pointer("/service_a/echo").cloned();
        match echo {
            Some(serde_json::Value::String(text)) if text == "hello" => Ok(()),
            other => Err(format!("expected service_a.echo \"hello\", got {other:?}")),
        }
    }

    /// `503` with `error_kind` = `kind`.
    pub fn expect_failure(&self, kind: &str) -> Result<(), String> {
        if self.status != 503 {
            return Err(format!("expected status 503, got {}", self.status));
        }
        let json = self.json()?;
        match json.get("error_kind").and_then(|k| k.as_str()) {
            Some(got) if got == kind => Ok(()),
            got => Err(format!("expected error_kind {kind:?}, got {got:?}")),
        }
    }
}

/// How a stream of calls went, as the demo saw it.
#[derive(Debug, Default)]
pub struct Tally {
    pub sent: usize,
    pub ok: usize,
    /// Calls that were not a 200, by B's `error_kind` (or `status N`, or the demo's own
    /// client error).
    pub failures: BTreeMap<String, usize>,
    /// Every call's latency, counted from when it was due, sorted.
    latencies: Vec<Duration>,
}

impl Tally {
    pub fn ok_percent(&self) -> f64 {
        100.0 * self.ok as f64 / self.sent.max(1) as f64
    }

    pub fn failed_percent(&self) -> f64 {
        100.0 - self.ok_percent()
    }

    /// The `q` quantile of the latencies (0.5, 0.99).
    pub fn quantile(&self, q: f64) -> Duration {
        let rank = (self.latencies.len() as f64 * q).ceil() as usize;
        let i = rank.saturating_sub(1);
        self.latencies.get(i).copied().unwrap_or_default()
    }

    /// The percentage of calls that took longer than `limit`.
    pub fn percent_over(&self, limit: Duration) -> f64 {
        let over = self.latencies.iter().filter(|l| **l > limit).count();
        100.0 * over as f64 / self.latencies.len().max(1) as f64
    }

    /// `200 calls: 66.5 % ok, p50 0.4 ms, p99 1001 ms; 503 connect: 67`.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "{} calls: {:.1} % ok, p50 {:.1} ms, p99 {:.1} ms",
            self.sent,
            self.ok_percent(),
            ms(self.quantile(0.5)),
            ms(self.quantile(0.99))
        );
        for (kind, n) in &self.failures {
            text.push_str(&format!("; {kind}: {n}"));
        }
        text
    }
}

/// Calls B's `/call-echo` `rate` times a second for `duration`, open loop: call i is sent at
/// start + i/rate whatever became of the earlier ones, and its latency counts from then (the
/// `Schedule` and `request::send` of `echo_lab::load`, as in `loadgen` and the lab). A loop
/// that waited for each answer would send nothing while B is stuck, and its latencies would
/// hide the stall.
pub fn stream(b: SocketAddr, rate: u32, duration: Duration) -> Result<Tally, String> {
    let client = Client::new(
        Upstream::from_url(&format!("http://{b}"))?,
        ClientLimits::default(),
    );
    let executor = LocalExecutor::new();
    let count = (duration.as_secs_f64() * f64::from(rate)).round() as u32;
    let schedule = Schedule::new(Instant::now(), f64::from(rate.max(1)));
    say(&format!(
        "$ loadgen http://{b}{TARGET} --rate {rate} -d {}s    # done in-process",
        duration.as_secs_f64()
    ));
    let results = smol::block_on(executor.run(async {
        let mut calls = Vec::new();
        for i in 0..u64::from(count) {
            let Some(due) = schedule.due(i) else {
                break;
            };
            Timer::at(due).await;
            let client = &client;
            calls.push(executor.spawn(async move {
                let sample = request::send(client, TARGET, &[], CLIENT_DEADLINE, due).await;
                (sample.result, sample.latency)
            }));
        }
        let mut results = Vec::with_capacity(calls.len());
        for call in calls {
            results.push(call.await);
        }
        results
    }));
    let mut tally = Tally::default();
    for (result, latency) in results {
        tally.sent += 1;
        tally.latencies.push(latency);
        let failure = match result {
            Ok(response) if response.head.status == 200 => {
                tally.ok += 1;
                continue;
            }
            Ok(response) => serde_json::from_slice::<serde_json::Value>(&response.body)
                .ok()
                .and_then(|json| json.get("error_kind")?.as_str().map(str::to_owned))
                .map_or_else(
                    || format!("status {}", response.head.status),
                    |kind| format!("{} {kind}", response.head.status),
                ),
            Err(e) => format!("no answer ({})", e.kind()),
        };
        *tally.failures.entry(failure).or_default() += 1;
    }
    tally.latencies.sort();
    Ok(tally)
}

/// The sum of every series of `name` in `service`'s `/metrics` whose labels include `labels`
/// (`k="v",…`; `""` for all); `None` when the service has no such series.
pub fn metric(service: &Service, name: &str, labels: &str) -> Result<Option<f64>, String> {
    let url = format!("http://{}", service.addr);
    let client = Client::new(Upstream::from_url(&url)?, ClientLimits::default());
    let deadline = Deadline::after(CLIENT_DEADLINE);
    let response = smol::block_on(client.get("/metrics", &[], deadline))
        .map_err(|e| format!("cannot read {url}/metrics: {e}"))?;
    let pairs = selector(labels).ok_or_else(|| format!("not a list of labels: {labels}"))?;
    let pairs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let exposition = Exposition::parse(&String::from_utf8_lossy(&response.body));
    Ok(exposition.total(name, &pairs))
}
