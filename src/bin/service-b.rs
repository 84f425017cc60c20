//! Service B: answers `/health` and `/call-echo?msg=...` by calling service A.
//! Run with `--help` for its flags.

use std::num::{NonZeroU64, NonZeroUsize};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use echo_lab::config::{ConfigError, Flag, Settings};
use echo_lab::http::client::Upstream;
use echo_lab::http::limits::ClientLimits;
use echo_lab::http::server::ServerConfig;
use echo_lab::run;
use echo_lab::services::caller::CallerService;
use echo_lab::services::metrics::Metrics;
use echo_lab::upstream::breaker::BreakerConfig;
use echo_lab::upstream::budget::BudgetConfig;
use echo_lab::upstream::hedge::HedgeDelay;
use echo_lab::upstream::outlier::OutlierConfig;
use echo_lab::upstream::replicas::{RESOLVE_INTERVAL, Replicas};
use echo_lab::upstream::{ATTEMPTS_PER_DEADLINE, Balance, Cluster, Patterns};

const USAGE: &str = "service-b: calls service A's /echo\n\n\
    usage: service-b [--host ADDR] [--port PORT] [--service-a-url URL[,URL...]] [--timeout-ms MS]\n\
    \x20                 [--resilient] [pattern flags]";

const FLAGS: &[Flag] = &[
    Flag::value(
        "service-a-url",
        "SERVICE_A_URL",
        "http://127.0.0.1:8080",
        "where service A is; several URLs separated by commas are replicas, and so is each \
         address of a name (looked up again every 5 s)",
    ),
    Flag::value(
        "timeout-ms",
        "TIMEOUT_MS",
        "1000",
        "deadline for the whole call to A",
    ),
    Flag::switch(
        "resilient",
        "RESILIENT",
        "every pattern below on, with the settings the README explains",
    ),
    Flag::value(
        "balance",
        "BALANCE",
        "",
        "round-robin or peak-ewma (power of two choices) [default: round-robin; peak-ewma \
         with --resilient]",
    ),
    Flag::switch(
        "eject",
        "EJECT",
        "take a replica out of rotation after 5 consecutive failures, for 1 s, doubling",
    ),
    Flag::switch(
        "breaker",
        "BREAKER",
        "when half of the last 20 calls failed, answer circuit_open at once; probe every 0.5 s",
    ),
    Flag::switch(
        "retries",
        "RETRIES",
        "retry a failed attempt on another replica, within a budget of 25 % + 10/s; with \
         the value naive (retries=naive): every failure up to 3 attempts of a third of the \
         deadline each, no budget, limit or breaker: what NOT to do, it multiplies the load on an A that is failing (the \
         metastable demo)",
    ),
    Flag::value(
        "hedge",
        "HEDGE",
        "",
        "off, auto (after the p90 latency, at least 5 ms) or MS: send a second attempt when \
         the first is that late [default: off; auto with --resilient]",
    ),
    Flag::value(
        "attempt-timeout-ms",
        "ATTEMPT_TIMEOUT_MS",
        "",
        "deadline of one attempt inside the call's [default: the call's; a third of it with \
         --resilient]",
    ),
    Flag::switch(
        "propagate-deadline",
        "PROPAGATE_DEADLINE",
        "tell A how long B will wait (X-Timeout-Ms), so A can give up when B has",
    ),
    Flag::value(
        "max-in-flight",
        "MAX_IN_FLIGHT",
        "",
        "most calls to A in flight; past it, answer overloaded at once [default: no cap; \
         1024 with --resilient]",
    ),
    Flag::switch(
        "adaptive-limit",
        "ADAPTIVE_LIMIT",
        "learn how many calls each replica takes at once from its latency (a queue shows as \
         latency over its no-load latency); past it, answer overloaded at once, and send no \
         retry or hedge to a replica at its limit",
    ),
];

/// Every `--service-a-url` entry, each a replica or a name for several.
fn upstreams(list: &str) -> Result<Vec<Upstream>, ConfigError> {
    let parse = |url: &str| {
        Upstream::from_url(url.trim())
            .map_err(|e| ConfigError::Invalid(format!("--service-a-url: {e}")))
    };
    list.split(',').map(parse).collect()
}

/// The patterns the flags switch on.
fn patterns(settings: &Settings, deadline: Duration) -> Result<Patterns, ConfigError> {
    let mut patterns = if settings.switch("resilient")? {
        Patterns::all(deadline)
    } else {
        Patterns::default()
    };
    let invalid = |flag: &str, e: String| ConfigError::Invalid(format!("--{flag}: {e}"));
    match settings.raw("balance") {
        "" => {}
        "round-robin" => patterns.balance = Balance::RoundRobin,
        "peak-ewma" => patterns.balance = Balance::PeakEwma,
        other => {
            return Err(invalid(
                "balance",
                format!("{other:?} is not round-robin or peak-ewma"),
            ));
        }
    }
    if settings.switch("eject")? {
        patterns.ejection = Some(OutlierConfig::default());
    }
    if settings.switch("breaker")? {
        patterns.breaker = Some(BreakerConfig::default());
    }
    if settings.raw("retries") == "naive" {
        // Each attempt gets a third of the deadline, so that a timed-out attempt leaves time
        // for the next: that is how naive retries pile onto an A that is slow.
        patterns.retries = None;
        patterns.naive_retries = true;
        patterns.attempt_timeout = Some(deadline / ATTEMPTS_PER_DEADLINE);
    } else if settings.switch("retries")? {
        patterns.retries = Some(BudgetConfig::default());
    }
    if settings.switch("adaptive-limit")? {
        patterns.adaptive_limit = true;
    }
    match settings.raw("hedge") {
        "" => {}
        "off" => patterns.hedge = None,
        "auto" => patterns.hedge = Some(HedgeDelay::default()),
        _ => {
            let ms = settings.get::<NonZeroU64>("hedge")?.get();
            patterns.hedge = Some(HedgeDelay::Fixed(Duration::from_millis(ms)));
        }
    }
    if !settings.raw("attempt-timeout-ms").is_empty() {
        let ms = settings.get::<NonZeroU64>("attempt-timeout-ms")?.get();
        patterns.attempt_timeout = Some(Duration::from_millis(ms));
    }
    if settings.switch("propagate-deadline")? {
        patterns.propagate_deadline = true;
    }
    if !settings.raw("max-in-flight").is_empty() {
        let max = settings.get::<NonZeroUsize>("max-in-flight")?.get();
        patterns.max_in_flight = Some(max);
    }
    Ok(patterns)
}

fn caller(settings: &Settings, config: &ServerConfig) -> Result<CallerService, ConfigError> {
    let upstreams = upstreams(settings.raw("service-a-url"))?;
    // A deadline of 0 ms would fail every call before it starts.
    let timeout = Duration::from_millis(settings.get::<NonZeroU64>("timeout-ms")?.get());
    let patterns = patterns(settings, timeout)?;
    let replicas = Arc::new(Replicas::new(upstreams, ClientLimits::default()));
    let metrics = Arc::new(Metrics::for_server(config));
    let cluster = Cluster::new(replicas, patterns);
    Ok(CallerService::new(cluster, timeout, metrics).with_server_status(config.status()))
}

fn main() -> ExitCode {
    let settings = match run::settings(USAGE, FLAGS) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    let setup = run::server_setup(&settings, 8081)
        .and_then(|(addr, config)| Ok((addr, caller(&settings, &config)?, config)));
    let (addr, service, config) = match setup {
        Ok(setup) => setup,
        Err(e) => return run::fail(&e.to_string()),
    };
    run::init_logging();
    service.cluster().keep_resolving(RESOLVE_INTERVAL);
    let patterns = service.cluster().patterns();
    let notes = if patterns.any() {
        vec![("patterns_on", format!("calling A with {patterns}"))]
    } else {
        Vec::new()
    };
    run::serve("B", addr, config, &notes, service)
}
