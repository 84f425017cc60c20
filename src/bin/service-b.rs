//! Service B: answers `/health` and `/call-echo?msg=...` by calling service A.
//! Run with `--help` for its flags.

use std::num::NonZeroU64;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use echo_lab::config::{ConfigError, Flag, Settings};
use echo_lab::http::client::{Client, Upstream};
use echo_lab::http::limits::ClientLimits;
use echo_lab::http::server::ServerConfig;
use echo_lab::run;
use echo_lab::services::caller::CallerService;
use echo_lab::services::metrics::Metrics;

const USAGE: &str = "service-b: calls service A's /echo\n\n\
    usage: service-b [--host ADDR] [--port PORT] [--service-a-url URL] [--timeout-ms MS]";

const FLAGS: &[Flag] = &[
    Flag::value(
        "service-a-url",
        "SERVICE_A_URL",
        "http://127.0.0.1:8080",
        "where service A is",
    ),
    Flag::value(
        "timeout-ms",
        "TIMEOUT_MS",
        "1000",
        "deadline for the whole call to A",
    ),
];

fn caller(settings: &Settings, config: &ServerConfig) -> Result<CallerService, ConfigError> {
    let url = settings.raw("service-a-url");
    let upstream = Upstream::from_url(url)
        .map_err(|e| ConfigError::Invalid(format!("--service-a-url: {e}")))?;
    // A deadline of 0 ms would fail every call before it starts.
    let timeout = Duration::from_millis(settings.get::<NonZeroU64>("timeout-ms")?.get());
    let client = Client::new(upstream, ClientLimits::default());
    let metrics = Arc::new(Metrics::for_server(config));
    Ok(CallerService::new(client, timeout, metrics).with_server_status(config.status()))
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
    run::serve("B", addr, config, &[], service)
}
