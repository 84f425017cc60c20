//! What a run saw: each worker's `Tally`, merged at the end, and the summary of the run, as
//! text for a person or as JSON for a script.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use echo_lab::load::histogram::Histogram;

use crate::options::Options;

/// The error kinds of `ClientError::kind()`, in the order they are reported.
pub const ERROR_KINDS: [&str; 4] = ["connect", "timeout", "closed", "bad_response"];

/// What one worker saw. Each worker keeps its own; they are merged at the end.
#[derive(Debug, Default)]
pub struct Tally {
    pub latency: Histogram,
    /// The latency of the `200`s alone: under overload a quick `503` would flatter the
    /// percentiles of all responses.
    pub ok_latency: Histogram,
    /// The latency of the `503`s alone: how soon a caller that cannot serve says so (an
    /// overloaded B should refuse at once, not after its deadline).
    pub unavailable_latency: Histogram,
    pub statuses: BTreeMap<u16, u64>,
    pub errors: BTreeMap<&'static str, u64>,
    /// The first error message of each kind, to say what went wrong.
    pub first_error: BTreeMap<&'static str, String>,
    pub unsent: u64,
}

impl Tally {
    pub fn merge(&mut self, other: Tally) {
        self.latency.merge(&other.latency);
        self.ok_latency.merge(&other.ok_latency);
        self.unavailable_latency.merge(&other.unavailable_latency);
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

/// The result of a run.
pub struct Summary {
    /// From the start to the last request's end.
    pub elapsed: Duration,
    pub tally: Tally,
}

impl Summary {
    pub fn responses(&self) -> u64 {
        self.tally.latency.total
    }

    pub fn errors(&self) -> u64 {
        self.tally.errors.values().sum()
    }

    /// Requests that failed: no response at all, or a 5xx one (the server says it failed).
    pub fn failed(&self) -> u64 {
        let server_errors: u64 = self.tally.statuses.range(500..600).map(|(_, n)| n).sum();
        self.errors() + server_errors
    }

    /// The failed fraction of all requests; 0 when none was sent.
    pub fn failed_fraction(&self) -> f64 {
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
    pub fn ms(&self, p: f64) -> f64 {
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
    pub fn text(&self, options: &Options) -> String {
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
    pub fn json(&self, options: &Options) -> String {
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
            "ok_latency_ms": {
                "p50": self.tally.ok_latency.percentile(50.0) as f64 / 1000.0,
                "p99": self.tally.ok_latency.percentile(99.0) as f64 / 1000.0,
            },
            "unavailable_latency_ms": {
                "p50": self.tally.unavailable_latency.percentile(50.0) as f64 / 1000.0,
                "p99": self.tally.unavailable_latency.percentile(99.0) as f64 / 1000.0,
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
