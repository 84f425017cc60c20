//! Service A: answers `/health` and `/echo?msg=...`, and with `--control` serves `/control`.
//! Run with `--help` for its flags.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use echo_lab::config::{ConfigError, Flag, Settings};
use echo_lab::run;
use echo_lab::services::capacity::Capacity;
use echo_lab::services::chaos::Chaos;
use echo_lab::services::control::access::ControlAccess;
use echo_lab::services::echo::EchoService;
use echo_lab::services::metrics::Metrics;

const USAGE: &str = "service-a: the echo service\n\n\
    usage: service-a [--host ADDR] [--port PORT] [chaos and capacity flags] [--control [--control-token T]]";

const FLAGS: &[Flag] = &[
    Flag::value(
        "delay-ms",
        "DELAY_MS",
        "0",
        "chaos: delay added to every /echo",
    ),
    Flag::value(
        "jitter-ms",
        "JITTER_MS",
        "0",
        "chaos: further random delay, 0..N ms",
    ),
    Flag::value(
        "tail-rate",
        "TAIL_RATE",
        "0",
        "chaos: fraction of /echo delayed a further --tail-delay-ms",
    ),
    Flag::value(
        "tail-delay-ms",
        "TAIL_DELAY_MS",
        "0",
        "chaos: the extra delay of the --tail-rate fraction",
    ),
    Flag::value(
        "fail-rate",
        "FAIL_RATE",
        "0",
        "chaos: fraction of /echo answered 500",
    ),
    Flag::value(
        "drop-rate",
        "DROP_RATE",
        "0",
        "chaos: fraction of /echo closed unanswered",
    ),
    Flag::switch(
        "blackhole",
        "BLACKHOLE",
        "chaos: read every /echo and never answer it (/health and /metrics still answer)",
    ),
    Flag::value(
        "workers",
        "WORKERS",
        "0",
        "capacity: /echo worked on at once; past them work queues. 0: no capacity model",
    ),
    Flag::value(
        "work-ms",
        "WORK_MS",
        "0",
        "capacity: how long each /echo holds its worker (a sleep, not CPU)",
    ),
    Flag::value(
        "queue-limit",
        "QUEUE_LIMIT",
        "0",
        "capacity: most /echo waiting for a worker; past it 503 at once. 0: no bound",
    ),
    Flag::value(
        "queue-policy",
        "QUEUE_POLICY",
        "fifo",
        "capacity: fifo (oldest first), or codel-lifo (CoDel's queue timeouts, newest first \
         while the queue stands)",
    ),
    Flag::switch(
        "control",
        "CONTROL",
        "serve /control, which reads and changes the chaos knobs while A runs; loopback peers \
         only, unless --control-token is set",
    ),
    Flag::value(
        "control-token",
        "CONTROL_TOKEN",
        "",
        "with --control: every peer must send Authorization: Bearer <token>. Set it through \
         CONTROL_TOKEN: a flag shows in ps, the environment does not",
    ),
];

fn chaos(settings: &Settings) -> Result<Chaos, ConfigError> {
    let chaos = Chaos {
        delay: Duration::from_millis(settings.get("delay-ms")?),
        jitter: Duration::from_millis(settings.get("jitter-ms")?),
        tail_rate: settings.get("tail-rate")?,
        tail_delay: Duration::from_millis(settings.get("tail-delay-ms")?),
        fail_rate: settings.get("fail-rate")?,
        drop_rate: settings.get("drop-rate")?,
        blackhole: settings.switch("blackhole")?,
        capacity: Capacity {
            workers: settings.get("workers")?,
            work: Duration::from_millis(settings.get("work-ms")?),
            queue_limit: settings.get("queue-limit")?,
            queue_policy: settings.get("queue-policy")?,
        },
    };
    chaos
        .validate()
        .map_err(|e| ConfigError::Invalid(e.with_flags()))?;
    Ok(chaos)
}

fn control(settings: &Settings) -> Result<Option<ControlAccess>, ConfigError> {
    let on = settings.switch("control")?;
    ControlAccess::from_flags(on, settings.raw("control-token"))
        .map_err(|e| ConfigError::Invalid(e.to_string()))
}

fn main() -> ExitCode {
    let settings = match run::settings(USAGE, FLAGS) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    let setup = run::server_setup(&settings, 8080)
        .and_then(|s| Ok((s, chaos(&settings)?, control(&settings)?)));
    let ((addr, config), chaos, control) = match setup {
        Ok(setup) => setup,
        Err(e) => return run::fail(&e.to_string()),
    };
    run::init_logging();
    let mut notes = Vec::new();
    if !chaos.is_off() {
        notes.push(("chaos_on", format!("chaos on: {chaos}")));
    }
    if let Some(access) = &control {
        notes.push(("control_on", access.describe().to_owned()));
    }
    let metrics = Arc::new(Metrics::for_server(&config));
    let service = EchoService::new(chaos, metrics)
        .with_server_status(config.status())
        .with_control(control);
    run::serve("A", addr, config, &notes, service)
}
