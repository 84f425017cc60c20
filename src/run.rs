//! Starting a service: read flags, start logging, bind, announce the real address, serve
//! until SIGINT or SIGTERM, drain, exit. Shared by both binaries so they stay thin.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::process::ExitCode;
use std::time::Duration;

use async_signal::{Signal, Signals};
use futures_lite::StreamExt;

use crate::config::{ConfigError, Flag, Settings, common_flags};
use crate::http::limits::OPEN_FILES_RESERVE;
use crate::http::server::{self, Handler, ServerConfig};
use crate::http::wire_trace;
use crate::logging::{self, StdoutLogger};

/// Parses flags from the process's arguments and environment. `Err(code)`: the process
/// should exit with `code`, after `--help` (printed) or a bad flag (reported on stderr).
pub fn settings(usage: &str, own_flags: &[Flag]) -> Result<Settings, ExitCode> {
    let mut flags: Vec<Flag> = common_flags();
    flags.extend_from_slice(own_flags);
    match Settings::parse(usage, &flags, std::env::args().skip(1), |k| {
        std::env::var(k).ok()
    }) {
        Ok(settings) => Ok(settings),
        Err(ConfigError::Help(text) | ConfigError::Version(text)) => {
            // Not `println!`, which panics when the reader has gone (`--help | head`).
            let _ = writeln!(std::io::stdout(), "{text}");
            Err(ExitCode::SUCCESS)
        }
        Err(e) => Err(fail(&e.to_string())),
    }
}

/// Exit status of a usage error: a bad flag, variable or value. The configuration must change;
/// starting again as is would fail again. 2 is the convention of getopt, clap and Go's `flag`.
pub const EXIT_USAGE: u8 = 2;

/// Exit status of a service that was configured correctly but could not start: the port is
/// taken, binding it is not permitted, signals cannot be watched. The environment refused, and
/// the same command may work later (once the port is free), so a supervisor may retry it,
/// where it should not retry a usage error. 1 is the general-failure convention, and nothing
/// else in the services exits 1: a panic exits 101, a signal leaves no status.
pub const EXIT_START_FAILED: u8 = 1;

/// Prints one clear line on stderr; the exit code for a usage error (`EXIT_USAGE`).
pub fn fail(text: &str) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "error: {text}");
    ExitCode::from(EXIT_USAGE)
}

/// Prints one clear line on stderr; the exit code for a failure to start (`EXIT_START_FAILED`).
pub fn fail_to_start(text: &str) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "error: {text}");
    ExitCode::from(EXIT_START_FAILED)
}

/// Starts logging at `RUST_LOG`'s level (default info), with UTC timestamps, on stdout, in the
/// format `--log-format` chose (text unless told); request lines leave in batches (see
/// `logging/output.rs`). Errors before logging starts (bad flags) go to stderr.
pub fn init_logging() {
    let logger = simple_logger::SimpleLogger::new()
        .with_level(log::LevelFilter::Info)
        .env()
        .with_utc_timestamps();
    log::set_max_level(logger.max_level());
    let _ = log::set_boxed_logger(Box::new(StdoutLogger {
        filter: logger,
        format: logging::format(),
    }));
}

/// The listening address and server configuration from the common flags.
pub fn server_setup(
    settings: &Settings,
    default_port: u16,
) -> Result<(SocketAddr, ServerConfig), ConfigError> {
    let host: IpAddr = settings.get("host")?;
    let port = match settings.raw("port") {
        "" => default_port,
        _ => settings.get("port")?,
    };
    let mut config = ServerConfig::default();
    // Zero connections or threads would be a service that cannot serve: refused as a value.
    config.limits.max_connections = settings.get::<NonZeroUsize>("max-connections")?.get();
    config.shutdown_grace = Duration::from_millis(settings.get("shutdown-grace-ms")?);
    if !settings.raw("threads").is_empty() {
        config.threads = settings.get::<NonZeroUsize>("threads")?.get();
    }
    logging::set_format(settings.get("log-format")?);
    if settings.switch("trace-wire")? {
        wire_trace::enable();
    }
    Ok((SocketAddr::new(host, port), config))
}

/// Binds, logs `service=<name> listening on <addr>` (always the first line, tests read it) and
/// then each of `notes` (an event name, e.g. `chaos_on`, and its text), and serves until a
/// signal; then drains.
pub fn serve(
    name: &str,
    addr: SocketAddr,
    config: ServerConfig,
    notes: &[(&str, String)],
    handler: impl Handler,
) -> ExitCode {
    // Before the first connection can arrive; said after the startup line, which comes first.
    let open_files_note = raise_open_file_limit(config.limits.max_connections);
    let listener = match server::bind(addr) {
        Ok(listener) => listener,
        Err(e) => return fail_to_start(&format!("service={name} cannot listen on {addr}: {e}")),
    };
    let signals = match Signals::new([Signal::Term, Signal::Int]) {
        Ok(signals) => signals,
        Err(e) => return fail_to_start(&format!("cannot watch for signals: {e}")),
    };
    let local = listener.get_ref().local_addr().unwrap_or(addr);
    // Each line names its `event` as a key-value: the JSON format shows it (text does not).
    log::info!(service = name, event = "listening", addr:% = local; "service={name} listening on {local}");
    if wire_trace::enabled() {
        log::info!(service = name, event = "wire_trace_on";
            "service={name} wire trace on: heads and the first bytes of bodies follow");
    }
    for (event, note) in notes {
        log::warn!(service = name, event = event; "service={name} {note}");
    }
    if let Some(note) = &open_files_note {
        log::warn!(service = name, event = "open_file_limit"; "service={name} {note}");
    }
    let shutdown = async move {
        if let Some(name) = stop_signal(signals).await {
            log::info!(event = "shutdown", signal = name; "shutdown: received {name}");
        }
    };
    server::serve(listener, handler, config, shutdown);
    log::info!(service = name, event = "stopped"; "service={name} stopped");
    ExitCode::SUCCESS
}

/// Waits for the first signal of `signals` (made for SIGTERM and SIGINT), and names it:
/// `SIGTERM` or `SIGINT`. `None` if the stream failed.
pub async fn stop_signal(mut signals: Signals) -> Option<&'static str> {
    match signals.next().await? {
        Ok(Signal::Term) => Some("SIGTERM"),
        Ok(_) => Some("SIGINT"),
        Err(_) => None,
    }
}

/// Raises the soft limit on open files to the hard limit, as Go's runtime does, and says so
/// when even that is too low for `max_connections`. Every connection is a file descriptor, and
/// shells often start programs with a soft limit of 1024 while the hard limit allows far more:
/// left alone, `accept` would fail (EMFILE) long before the connection cap.
fn raise_open_file_limit(max_connections: usize) -> Option<String> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        // Refused only where the hard limit is above what the kernel allows (`nr_open`).
        let _ = setrlimit(Resource::Nofile, raised);
    }
    // `None` is unlimited.
    let soft = usize::try_from(getrlimit(Resource::Nofile).current?).unwrap_or(usize::MAX);
    let usable = soft.saturating_sub(OPEN_FILES_RESERVE);
    (usable < max_connections).then(|| {
        format!(
            "open-file limit is {soft}: about {usable} connections fit, not --max-connections \
             {max_connections}; past that, new connections fail (raise it: ulimit -n)"
        )
    })
}
