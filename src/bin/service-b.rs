//! Service B: answers `/health` and `/call-echo?msg=...` by calling service A.
//! Run with `--help` for its flags.

use std::process::ExitCode;
use std::time::Duration;

use echo_lab::config::{ConfigError, Flag, Settings};
use echo_lab::http::client::{Client, Upstream};
use echo_lab::http::limits::ClientLimits;
use echo_lab::run;
use echo_lab::services::caller::CallerService;

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

fn caller(settings: &Settings) -> Result<CallerService, ConfigError> {
    let url = settings.raw("service-a-url");
    let upstream = Upstream::from_url(url)
        .map_err(|e| ConfigError::Invalid(format!("--service-a-url: {e}")))?;
    let timeout = Duration::from_millis(settings.get("timeout-ms")?);
    Ok(CallerService::new(
        Client::new(upstream, ClientLimits::default()),
        timeout,
    ))
}

fn main() -> ExitCode {
    let settings = match run::settings(USAGE, FLAGS) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    let setup = run::server_setup(&settings, 8081).and_then(|s| Ok((s, caller(&settings)?)));
    let ((addr, config), service) = match setup {
        Ok(setup) => setup,
        Err(e) => return run::fail(&e.to_string()),
    };
    run::init_logging();
    run::serve("B", addr, config, &[], service)
}
