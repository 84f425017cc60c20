//! The lab: three replicas of A and one B over them, a steady load on B, and one page in the
//! browser that shows, live, what B answers and why, and lets you break the replicas.
//!
//! ```text
//!  browser ◄── GET /          the page
//!          ◄── GET /events    one event every 500 ms (Server-Sent Events)
//!          ──► POST /load, /replicas/N/stop|kill|restart|faults
//!
//!  lab:  traffic   ── 50 GET /call-echo a second ──► B ──► A1, A2, A3
//!        tick      ── B's /metrics, each A's /control, every 500 ms: one event
//!        log book  ◄─ every line the four children write
//! ```
//!
//! By concern: `processes` (the four children: start, stop, kill, restart), `logbook` (their
//! lines, interleaved), `traffic` (the open loop on B, on `echo_lab::load`), `scrape` (B's
//! `/metrics`), `control` (A's `/control`), `capacity` (A's queues and B's limits, from their
//! `/metrics`), `tick` (every 500 ms, one event from all of them),
//! `events` (the pages' streams), `handler` (the routes), and `page.html`.
//!
//! The lab and its control routes listen on 127.0.0.1 only (`handler.rs` says why). SIGINT or
//! SIGTERM ends the pages' streams cleanly, then the children; a panic kills the children too.

mod capacity;
mod control;
mod events;
mod handler;
mod logbook;
mod processes;
mod scrape;
mod tick;
mod traffic;

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::ExitCode;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use async_signal::{Signal, Signals};
use echo_lab::child::Binaries;
use echo_lab::config::{ConfigError, Flag, Settings};
use echo_lab::http::client::{Client, Upstream};
use echo_lab::http::limits::ClientLimits;
use echo_lab::http::server::{self, ServerConfig};
use echo_lab::run::{fail, fail_to_start, stop_signal};
use futures_lite::StreamExt;
use serde_json::Value;
use smol::Executor;
use smol::channel::{self, Sender};

use events::Hub;
use handler::LabHandler;
use logbook::LogBook;
use processes::Processes;
use tick::{LOG_LINES_PER_EVENT, TICK, Tick};
use traffic::{DEFAULT_RATE, Load, MAX_RATE, check_rate};

const USAGE: &str = "\
lab: starts three replicas of service A and a service B over them (every pattern on), puts a
steady load on B, and serves a page that shows it all live and lets you stop, kill, restart
and slow down the replicas. Open the address it prints.

usage: cargo run --release --bin lab     builds service-a and service-b, then runs the lab
       lab [--port PORT] [--rate N] [--bin-dir DIR]";

/// The lab's flags; the rate's help is built from the bounds `check_rate` applies.
fn flags() -> Vec<Flag> {
    vec![
        Flag::value(
            "port",
            "LAB_PORT",
            "8090",
            "port of the page, on 127.0.0.1; 0 picks a free one",
        ),
        Flag::value_from(
            "rate",
            "LAB_RATE",
            DEFAULT_RATE,
            format!(
                "calls a second to B at the start, 0 (paused) to {MAX_RATE}; the page changes it"
            ),
        ),
        Flag::value(
            "bin-dir",
            "LAB_BIN_DIR",
            "",
            "where service-a and service-b are [default: the lab's own directory]",
        ),
    ]
}

/// How long the page's streams get to end once the lab is told to stop. They end at once
/// (the server writes their last chunk); the grace is for a page request in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Log lines a page gets in its first event, so its log panel starts full.
const FIRST_EVENT_LOG_LINES: usize = LOG_LINES_PER_EVENT;

/// Everything the routes and the tick share.
pub struct Lab {
    pub processes: Processes,
    pub load: Arc<Load>,
    pub logbook: Arc<LogBook>,
    pub hub: Hub,
    pub started: Instant,
}

impl Lab {
    /// What a page gets first: the latest event and the newest log lines (`None` before the
    /// first tick).
    fn first_event(&self) -> Option<Value> {
        let mut event = self.hub.latest()?;
        let (lines, _) = self.logbook.since(0, FIRST_EVENT_LOG_LINES);
        event["logs"] = lines.iter().map(|l| l.to_json()).collect();
        Some(event)
    }
}

/// The command line, checked.
struct Options {
    port: u16,
    rate: f64,
    bin_dir: String,
}

impl Options {
    fn from(settings: &Settings) -> Result<Options, ConfigError> {
        let rate = settings.get("rate")?;
        let rate = check_rate(rate).map_err(|e| ConfigError::Invalid(format!("--rate: {e}")))?;
        Ok(Options {
            port: settings.get("port")?,
            rate,
            bin_dir: settings.raw("bin-dir").to_owned(),
        })
    }
}

fn main() -> ExitCode {
    let args = std::env::args().skip(1);
    let options = match Settings::parse(USAGE, &flags(), args, |k| std::env::var(k).ok())
        .and_then(|settings| Options::from(&settings))
    {
        Ok(options) => options,
        Err(ConfigError::Help(text) | ConfigError::Version(text)) => {
            say(&text);
            return ExitCode::SUCCESS;
        }
        Err(e) => return fail(&e.to_string()),
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => fail_to_start(&why),
    }
}

/// Starts the children, the load and the tick, serves the page until SIGINT or SIGTERM, then
/// stops everything. `Err` when the lab could not start.
fn run(options: &Options) -> Result<(), String> {
    let bins = Binaries::find(&options.bin_dir, "lab", say)?;
    // Before the children start: a Ctrl-C while they do is then a clean stop.
    let signals = Signals::new([Signal::Term, Signal::Int])
        .map_err(|e| format!("cannot watch for signals: {e}"))?;
    // Before the children start too: a port in use must not cost four processes.
    let (listener, addr) = listen(options.port)?;
    let logbook = Arc::new(LogBook::default());
    let processes = Processes::start(bins, logbook.clone())?;
    let lab = Arc::new(Lab {
        load: Arc::new(Load::new(processes.b.addr, options.rate)),
        processes,
        logbook,
        hub: Hub::default(),
        started: Instant::now(),
    });
    let _kill_on_panic = KillOnPanic(lab.clone());
    let background = Background::start(lab.clone());
    say(&format!("lab: open http://{addr}/"));
    serve_until_signal(listener, LabHandler::new(lab.clone(), addr), signals);
    background.stop();
    lab.processes.shutdown();
    say("lab: stopped, and every service with it");
    Ok(())
}

/// The page's listener, on 127.0.0.1 only, and its address (the port, if `port` was 0).
fn listen(port: u16) -> Result<(Async<TcpListener>, SocketAddr), String> {
    let listener = server::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    let addr = listener
        .get_ref()
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    Ok((listener, addr))
}

/// Serves the page and its routes until the first of `signals`; then the server ends the
/// pages' streams with their last chunk, and returns.
fn serve_until_signal(listener: Async<TcpListener>, handler: LabHandler, signals: Signals) {
    let config = ServerConfig {
        // The page's few requests need no more; the cores are for the services.
        threads: 1,
        shutdown_grace: SHUTDOWN_GRACE,
        ..ServerConfig::default()
    };
    let shutdown = async move {
        if let Some(name) = stop_signal(signals).await {
            say(&format!("lab: {name}: stopping"));
        }
    };
    server::serve(listener, handler, config, shutdown);
}

/// The load and the tick, on an executor thread of their own.
struct Background {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl Background {
    fn start(lab: Arc<Lab>) -> Background {
        let (stop, stopped) = channel::bounded::<()>(1);
        let thread = thread::spawn(move || {
            let ex = Arc::new(Executor::new());
            ex.spawn(lab.load.clone().run(ex.clone())).detach();
            ex.spawn(ticks(lab, ex.clone())).detach();
            // Runs until `stop` is dropped, which ends `recv` with an error.
            let _ = async_io::block_on(ex.run(stopped.recv()));
        });
        Background { stop, thread }
    }

    /// Stops the load and the tick, and waits for their thread to end.
    fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

/// An event every `TICK`, to every page.
async fn ticks(lab: Arc<Lab>, ex: Arc<Executor<'static>>) {
    let mut tick = Tick::new(&lab, ex);
    let mut timer = Timer::interval(TICK);
    loop {
        let event = tick.event(&lab).await;
        lab.hub.publish(&event);
        timer.next().await;
    }
}

/// Kills every child if `run` unwinds from a panic: the other threads hold the lab too, so it
/// would not be dropped, and the children would outlive the lab. On a clean exit the children
/// are stopped already, and this does nothing.
struct KillOnPanic(Arc<Lab>);

impl Drop for KillOnPanic {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0.processes.shutdown();
        }
    }
}

/// A client for one of the lab's services, which listen on 127.0.0.1.
fn client(addr: SocketAddr) -> Client {
    let upstream = Upstream {
        host: addr.ip().to_string(),
        port: addr.port(),
    };
    Client::to_address(upstream, addr, ClientLimits::default())
}

/// Prints a line on stdout; a closed stdout is no reason to stop.
fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rates_help_states_its_bounds_and_its_default_is_within_them() {
        let flags = flags();
        let rate = flags.iter().find(|f| f.name == "rate").expect("--rate");
        let upper = rate
            .help
            .split("(paused) to ")
            .nth(1)
            .and_then(|rest| rest.split(';').next())
            .expect("the help states the highest rate");
        assert_eq!(upper.parse::<f64>(), Ok(MAX_RATE));
        let default: f64 = rate.default.parse().expect("a number");
        assert_eq!(check_rate(default), Ok(default));
    }
}
