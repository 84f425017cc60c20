//! Service B: answers `/health` and `/call-echo?msg=...` by calling service A.
//! Run with `--help` for its flags; they are read in `echo_lab::upstream::flags`.

use std::process::ExitCode;
use std::sync::Arc;

use echo_lab::config::{ConfigError, Settings};
use echo_lab::http::limits::ClientLimits;
use echo_lab::http::server::ServerConfig;
use echo_lab::run;
use echo_lab::services::caller::CallerService;
use echo_lab::services::metrics::Metrics;
use echo_lab::upstream::replicas::{RESOLVE_INTERVAL, Replicas};
use echo_lab::upstream::{Cluster, flags};

const USAGE: &str = "service-b: calls service A's /echo\n\n\
    usage: service-b [--host ADDR] [--port PORT] [--service-a-url URL[,URL...]] [--timeout-ms MS]\n\
    \x20                 [--resilient] [pattern flags]";

fn caller(settings: &Settings, config: &ServerConfig) -> Result<CallerService, ConfigError> {
    let upstreams = flags::upstreams(settings)?;
    let deadline = flags::deadline(settings)?;
    let patterns = flags::patterns(settings, deadline)?;
    let replicas = Arc::new(Replicas::new(upstreams, ClientLimits::default()));
    let cluster = Cluster::new(replicas, patterns);
    let metrics = Arc::new(Metrics::for_server(config));
    Ok(CallerService::new(cluster, deadline, metrics).with_server_status(config.status()))
}

fn main() -> ExitCode {
    let settings = match run::settings(USAGE, &flags::flags()) {
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
    service.cluster().keep_checking_health();
    let patterns = service.cluster().patterns();
    let notes = if patterns.any() {
        vec![("patterns_on", format!("calling A with {patterns}"))]
    } else {
        Vec::new()
    };
    run::serve("B", addr, config, &notes, service)
}
