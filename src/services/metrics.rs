//! `/metrics` in the Prometheus text exposition format (version 0.0.4), written by hand: it is
//! a small line format — `# HELP`, `# TYPE`, then `name{label="value"} number` lines.
//!
//! Kept cheap on the hot path: every count is an atomic in a fixed array, indexed by endpoint
//! and status, so recording a request takes no lock and allocates nothing.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use super::chaos::{Chaos, Knob};
use super::exposition::{Histogram, family};
use super::process_metrics;
use crate::config::VERSION;
use crate::http::server::ServerConfig;
use crate::upstream::ClusterSnapshot;
use crate::upstream::breaker::BreakerState;
use crate::upstream::replicas::ReplicaSnapshot;

/// The endpoints we count separately; anything else is `other`.
const ENDPOINTS: [&str; 6] = [
    "/health",
    "/ready",
    "/echo",
    "/call-echo",
    "/metrics",
    "other",
];

/// The statuses we count separately; anything else is `other`.
const STATUSES: [u16; 16] = [
    200, 400, 401, 403, 404, 405, 408, 413, 414, 417, 431, 500, 501, 503, 505, 0,
];

/// Outcomes of B's calls to A: `ok` and every contract `error_kind`.
pub const UPSTREAM_OUTCOMES: [&str; 8] = [
    "ok",
    "connect",
    "timeout",
    "upstream_status",
    "bad_response",
    "closed",
    "circuit_open",
    "overloaded",
];

/// Why A gave up a request's work (`echo_lab_abandoned_total`): the caller's deadline
/// (`X-Timeout-Ms`) had passed when it arrived, or passed while A was working.
pub const ABANDON_REASONS: [&str; 2] = ["expired_on_arrival", "deadline_passed"];

/// Everything one service counts.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: [[AtomicU64; STATUSES.len()]; ENDPOINTS.len()],
    /// One histogram per endpoint: a fast `/health` probe must not hide a slow `/echo`.
    request_duration: [Histogram; ENDPOINTS.len()],
    /// Requests the HTTP layer rejected before any handler saw them, by status.
    rejected: [AtomicU64; STATUSES.len()],
    /// Connections open now; the server keeps it current.
    pub open_connections: Arc<AtomicUsize>,
    upstream_calls: [AtomicU64; UPSTREAM_OUTCOMES.len()],
    upstream_duration: Histogram,
    abandoned: [AtomicU64; ABANDON_REASONS.len()],
}

impl Metrics {
    /// Metrics whose open-connection gauge is the one `config`'s server keeps current.
    pub fn for_server(config: &ServerConfig) -> Metrics {
        Metrics {
            open_connections: config.open_connections.clone(),
            ..Metrics::default()
        }
    }

    /// Counts one answered request.
    pub fn record_request(&self, endpoint: &str, status: u16, elapsed: Duration) {
        let e = ENDPOINTS
            .iter()
            .position(|&x| x == endpoint)
            .unwrap_or(ENDPOINTS.len() - 1);
        self.requests[e][status_index(status)].fetch_add(1, Ordering::Relaxed);
        self.request_duration[e].observe(elapsed);
    }

    /// Counts a request rejected by the HTTP layer (400, 408, 431...).
    pub fn record_rejected(&self, status: u16) {
        self.rejected[status_index(status)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one call to the upstream by outcome (`ok` or an error kind).
    pub fn record_upstream(&self, outcome: &str, elapsed: Duration) {
        if let Some(i) = UPSTREAM_OUTCOMES.iter().position(|&x| x == outcome) {
            self.upstream_calls[i].fetch_add(1, Ordering::Relaxed);
        }
        self.upstream_duration.observe(elapsed);
    }

    /// Counts one request whose work was given up, by reason (one of `ABANDON_REASONS`).
    pub fn record_abandoned(&self, reason: &str) {
        if let Some(i) = ABANDON_REASONS.iter().position(|&x| x == reason) {
            self.abandoned[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The whole exposition. `idle_upstream` is B's count of idle pooled connections (`None`
    /// on A, which has no upstream).
    pub fn render(&self, idle_upstream: Option<usize>) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str(
            "# HELP echo_lab_requests_total Requests answered, by endpoint and status.\n\
             # TYPE echo_lab_requests_total counter\n",
        );
        for (endpoint, row) in ENDPOINTS.iter().zip(&self.requests) {
            for (status, n) in STATUSES.iter().zip(row) {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    let status = status_label(*status);
                    let _ = writeln!(
                        out,
                        "echo_lab_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
                    );
                }
            }
        }
        out.push_str(
            "# HELP echo_lab_rejected_requests_total Requests refused by the HTTP layer \
             (malformed, too large, too slow), by status.\n\
             # TYPE echo_lab_rejected_requests_total counter\n",
        );
        for (status, n) in STATUSES.iter().zip(&self.rejected) {
            let n = n.load(Ordering::Relaxed);
            if n > 0 {
                let status = status_label(*status);
                let _ = writeln!(
                    out,
                    "echo_lab_rejected_requests_total{{status=\"{status}\"}} {n}"
                );
            }
        }
        self.render_request_duration(&mut out);
        let open = self.open_connections.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP echo_lab_open_connections Client connections open now.\n\
             # TYPE echo_lab_open_connections gauge\necho_lab_open_connections {open}"
        );
        self.render_abandoned(&mut out);
        if let Some(idle) = idle_upstream {
            self.render_upstream(&mut out, idle);
        }
        let _ = writeln!(
            out,
            "# HELP echo_lab_build_info The version of echo-lab that is running; always 1.\n\
             # TYPE echo_lab_build_info gauge\necho_lab_build_info{{version=\"{VERSION}\"}} 1"
        );
        process_metrics::render(&mut out);
        out
    }

    /// Every reason, zeros included, so that `rate()` has a series from the first scrape.
    fn render_abandoned(&self, out: &mut String) {
        out.push_str(
            "# HELP echo_lab_abandoned_total Requests whose work was given up because the \
             caller's deadline (X-Timeout-Ms) had passed, by reason.\n\
             # TYPE echo_lab_abandoned_total counter\n",
        );
        for (reason, n) in ABANDON_REASONS.iter().zip(&self.abandoned) {
            let n = n.load(Ordering::Relaxed);
            let _ = writeln!(out, "echo_lab_abandoned_total{{reason=\"{reason}\"}} {n}");
        }
    }

    /// The request-duration histogram, one series per endpoint that has seen a request.
    fn render_request_duration(&self, out: &mut String) {
        let name = "echo_lab_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from a request's arrival to its response, by endpoint.\n\
             # TYPE {name} histogram"
        );
        for (endpoint, histogram) in ENDPOINTS.iter().zip(&self.request_duration) {
            if histogram.count() > 0 {
                histogram.render_series(out, name, &format!("endpoint=\"{endpoint}\","));
            }
        }
    }

    fn render_upstream(&self, out: &mut String, idle: usize) {
        out.push_str(
            "# HELP echo_lab_upstream_calls_total Calls to service A, by outcome.\n\
             # TYPE echo_lab_upstream_calls_total counter\n",
        );
        for (outcome, n) in UPSTREAM_OUTCOMES.iter().zip(&self.upstream_calls) {
            let n = n.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "echo_lab_upstream_calls_total{{outcome=\"{outcome}\"}} {n}"
            );
        }
        self.upstream_duration.render(
            out,
            "echo_lab_upstream_duration_seconds",
            "Time of a whole call to service A, failures included.",
        );
        let _ = writeln!(
            out,
            "# HELP echo_lab_upstream_idle_connections Kept-alive connections to A waiting in \
             the pool.\n# TYPE echo_lab_upstream_idle_connections gauge\n\
             echo_lab_upstream_idle_connections {idle}"
        );
    }
}

/// One per-replica metric family: name, type, help, and how to read its value.
type ReplicaSeries = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ReplicaSnapshot) -> f64,
);

/// B's view of A's replicas and its calling patterns: one series per replica, then the
/// patterns that are on (a pattern that is off has no series, rather than a misleading 0).
pub fn render_cluster(out: &mut String, cluster: &ClusterSnapshot) {
    family(
        out,
        "echo_lab_upstream_replica_attempts_total",
        "counter",
        "Attempts on each replica of A, by how they ended (cancelled: a hedge won).",
    );
    for r in &cluster.replicas {
        for (end, n) in [
            ("ok", r.succeeded),
            ("failed", r.failed),
            ("cancelled", r.cancelled),
        ] {
            let _ = writeln!(
                out,
                "echo_lab_upstream_replica_attempts_total{{replica=\"{}\",end=\"{end}\"}} {n}",
                r.address
            );
        }
    }
    let gauges: [ReplicaSeries; 8] = [
        (
            "echo_lab_upstream_replica_ejections_total",
            "counter",
            "Times each replica was ejected.",
            |r| r.ejections as f64,
        ),
        (
            "echo_lab_upstream_replica_ejected",
            "gauge",
            "1 while a replica is out of rotation.",
            |r| f64::from(u8::from(r.ejected)),
        ),
        (
            "echo_lab_upstream_replica_unreachable",
            "gauge",
            "1 while a replica's latest attempt could not connect: with ejection on, it gets no \
             calls until it answers a health check.",
            |r| f64::from(u8::from(r.unreachable)),
        ),
        (
            "echo_lab_upstream_replica_health_checks_total",
            "counter",
            "Health checks (GET /health) sent to each replica while it was unreachable.",
            |r| r.health_checks as f64,
        ),
        (
            "echo_lab_upstream_replica_probation",
            "gauge",
            "1 while a replica is back from an ejection and its next attempt is its test.",
            |r| f64::from(u8::from(r.on_probation)),
        ),
        (
            "echo_lab_upstream_replica_outstanding",
            "gauge",
            "Attempts in flight on each replica.",
            |r| r.outstanding as f64,
        ),
        (
            "echo_lab_upstream_replica_latency_seconds",
            "gauge",
            "Each replica's peak-EWMA latency, as the balancer sees it.",
            |r| r.latency.as_secs_f64(),
        ),
        (
            "echo_lab_upstream_replica_idle_connections",
            "gauge",
            "Kept-alive connections to each replica waiting in its pool.",
            |r| r.idle_connections as f64,
        ),
    ];
    for (name, kind, help, value) in gauges {
        family(out, name, kind, help);
        for r in &cluster.replicas {
            let _ = writeln!(out, "{name}{{replica=\"{}\"}} {}", r.address, value(r));
        }
    }
    family(
        out,
        "echo_lab_upstream_in_flight",
        "gauge",
        "Calls to A in flight now.",
    );
    let _ = writeln!(out, "echo_lab_upstream_in_flight {}", cluster.in_flight);
    let counters = [
        (
            "echo_lab_upstream_retries_total",
            "Attempts sent again after a failure.",
            cluster.retries,
        ),
        (
            "echo_lab_upstream_hedges_total",
            "Second attempts sent because the first was slow.",
            cluster.hedges,
        ),
        (
            "echo_lab_upstream_hedge_wins_total",
            "Hedges whose answer was the one passed on.",
            cluster.hedge_wins,
        ),
    ];
    for (name, help, n) in counters {
        family(out, name, "counter", help);
        let _ = writeln!(out, "{name} {n}");
    }
    let refusals = "echo_lab_upstream_budget_refusals_total";
    family(
        out,
        refusals,
        "counter",
        "Retries or hedges not sent, by reason: budget (spent), limit (no replica with a worker \
         to spare under its adaptive limit), breaker (not closed).",
    );
    for (reason, n) in cluster.refusals {
        let _ = writeln!(out, "{refusals}{{reason=\"{}\"}} {n}", reason.label());
    }
    if cluster.adaptive_limit {
        let limit = "echo_lab_upstream_replica_limit";
        family(
            out,
            limit,
            "gauge",
            "Each replica's adaptive concurrency limit: attempts it may have in flight.",
        );
        for r in &cluster.replicas {
            let _ = writeln!(out, "{limit}{{replica=\"{}\"}} {:.2}", r.address, r.limit);
        }
    }
    if let Some(available) = cluster.budget_available {
        family(
            out,
            "echo_lab_upstream_retry_budget_available",
            "gauge",
            "Retries or hedges the budget allows now.",
        );
        let _ = writeln!(out, "echo_lab_upstream_retry_budget_available {available}");
    }
    if let Some(state) = cluster.breaker {
        family(
            out,
            "echo_lab_upstream_breaker_state",
            "gauge",
            "The circuit breaker's state: 1 for the current one.",
        );
        for s in [
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
        ] {
            let on = u8::from(s == state);
            let _ = writeln!(out, "echo_lab_upstream_breaker_state{{state=\"{s}\"}} {on}");
        }
        family(
            out,
            "echo_lab_upstream_breaker_opened_total",
            "counter",
            "Times the circuit breaker opened.",
        );
        let _ = writeln!(
            out,
            "echo_lab_upstream_breaker_opened_total {}",
            cluster.breaker_opened
        );
    }
}

/// A's chaos knobs as they are now, one `echo_lab_chaos{knob="..."}` sample each, in the
/// units `/control` shows (milliseconds for the delays, a fraction for the rates, 1 for the
/// black hole on): the knob's name carries its unit, so the two read the same.
pub fn render_chaos(out: &mut String, chaos: &Chaos) {
    family(
        out,
        "echo_lab_chaos",
        "gauge",
        "A's chaos knobs now (set by flags, changed by /control): ms for *_ms, a fraction for \
         *_rate, 1 for blackhole on.",
    );
    // The queue's policy is a word, shown by `echo_lab_capacity_queue_policy{policy}`.
    for knob in Knob::ALL {
        if let Some(value) = chaos.get(knob).as_f64() {
            let _ = writeln!(out, "echo_lab_chaos{{knob=\"{}\"}} {value}", knob.name());
        }
    }
}

fn status_index(status: u16) -> usize {
    STATUSES
        .iter()
        .position(|&s| s == status)
        .unwrap_or(STATUSES.len() - 1)
}

fn status_label(status: u16) -> String {
    if status == 0 {
        "other".to_owned()
    } else {
        status.to_string()
    }
}

/// The `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_renders() {
        let m = Metrics::default();
        m.record_request("/echo", 200, Duration::from_micros(300));
        m.record_request("/echo", 200, Duration::from_millis(3));
        m.record_request("/nope", 404, Duration::from_micros(50));
        m.record_rejected(431);
        m.record_upstream("timeout", Duration::from_millis(1000));
        m.record_abandoned("deadline_passed");
        let text = m.render(Some(3));
        assert!(text.contains("echo_lab_requests_total{endpoint=\"/echo\",status=\"200\"} 2\n"));
        assert!(text.contains("echo_lab_requests_total{endpoint=\"other\",status=\"404\"} 1\n"));
        assert!(text.contains("echo_lab_rejected_requests_total{status=\"431\"} 1\n"));
        let echo = "echo_lab_request_duration_seconds_bucket{endpoint=\"/echo\",";
        assert!(text.contains(&format!("{echo}le=\"0.0005\"}} 1\n")));
        assert!(text.contains(&format!("{echo}le=\"+Inf\"}} 2\n")));
        assert!(text.contains("echo_lab_request_duration_seconds_count{endpoint=\"/echo\"} 2\n"));
        assert!(text.contains("echo_lab_request_duration_seconds_count{endpoint=\"other\"} 1\n"));
        assert!(
            !text.contains("endpoint=\"/health\",le="),
            "no series before a request"
        );
        assert!(text.contains(&format!("echo_lab_build_info{{version=\"{VERSION}\"}} 1\n")));
        assert!(text.contains("echo_lab_upstream_calls_total{outcome=\"timeout\"} 1\n"));
        assert!(text.contains("echo_lab_upstream_calls_total{outcome=\"ok\"} 0\n"));
        assert!(text.contains("echo_lab_upstream_idle_connections 3\n"));
        assert!(text.contains("echo_lab_abandoned_total{reason=\"deadline_passed\"} 1\n"));
        assert!(text.contains("echo_lab_abandoned_total{reason=\"expired_on_arrival\"} 0\n"));
        assert!(!m.render(None).contains("upstream"));
    }

    #[test]
    fn chaos_knobs_are_gauges_in_control_units() {
        let chaos = Chaos {
            delay: Duration::from_millis(1500),
            fail_rate: 0.25,
            blackhole: true,
            ..Chaos::default()
        };
        let mut text = String::new();
        render_chaos(&mut text, &chaos);
        assert!(text.starts_with("# HELP echo_lab_chaos "));
        assert!(text.contains("# TYPE echo_lab_chaos gauge\n"));
        assert!(text.contains("echo_lab_chaos{knob=\"delay_ms\"} 1500\n"));
        assert!(text.contains("echo_lab_chaos{knob=\"fail_rate\"} 0.25\n"));
        assert!(text.contains("echo_lab_chaos{knob=\"tail_rate\"} 0\n"));
        assert!(text.contains("echo_lab_chaos{knob=\"blackhole\"} 1\n"));
        assert!(
            !text.contains("queue_policy"),
            "a word, shown by its own family"
        );
        assert_eq!(text.lines().count(), 2 + Knob::ALL.len() - 1);
    }
}
