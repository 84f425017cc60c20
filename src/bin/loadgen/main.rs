//! `loadgen`: an HTTP/1.1 load generator built on echo-lab's own client
//! (`echo_lab::http::client`), so that a sweep needs nothing from outside the project.
//!
//! ```text
//! loadgen http://127.0.0.1:8081/call-echo?msg=hi -c 64 -d 10s [--rate 5000] [--json]
//! ```
//!
//! * Closed loop (default): `-c` workers, each sending its next request as soon as the last one
//!   is answered. Latency is measured from the moment a request is sent.
//! * Open loop (`--rate N`): request `i` is due at `start + i/N`, whoever sends it. Its latency
//!   is measured from that *intended* time, so a server that stalls shows up as latency rather
//!   than as fewer samples ("coordinated omission"). Requests still due when the run ends but
//!   never sent (every worker was busy) are reported as `unsent`.
//!
//! Workers are tasks on a smol `Executor`, run by `-t` threads (default: one per core). Every
//! request carries its own deadline (`--timeout`). Latencies go into a fixed-size log-linear
//! histogram (about 3 % resolution), so memory does not grow with the number of requests.
//!
//! By concern: `options` (the command line), `workers` (threads, workers, the progress line),
//! `report` (the summary as text or JSON). The open loop's schedule, one request with its
//! deadline, and the latency histogram are `echo_lab::load`, shared with the `lab`.

mod options;
mod report;
mod workers;

use std::io::Write as _;
use std::process::ExitCode;

use options::{
    DEFAULT_CONNECTIONS, DEFAULT_DURATION, DEFAULT_MAX_ERROR_RATE, DEFAULT_TIMEOUT, Options, Parsed,
};

/// The text of `--help`, its defaults from the constants `Options::parse` uses.
fn usage() -> String {
    format!(
        "\
loadgen: HTTP/1.1 load generator on echo-lab's own client

usage: loadgen URL [-c N] [-d DURATION | -n COUNT] [-t N] [--timeout DURATION] [--rate N]
               [-H 'Name: value']... [--max-error-rate R] [--json]

  URL                 http://host:port/path?query (plain http only)
  -c, --connections N concurrent workers, each with its own kept-alive connection [{connections}]
  -d, --duration D    how long to send requests [{duration}s; with -n alone: until COUNT are done]
  -n, --requests N    send N requests in all, then stop (with -d too: whichever comes first)
  -H, --header H      add a request header, 'Name: value'; repeat for more
  -t, --threads N     threads running the workers [one per core]
      --timeout D     deadline of each request, from when it is sent [{timeout}s]
      --rate N        open loop: N requests/s in all, latency measured from each request's
                      intended send time (coordinated omission); default: closed loop
      --max-error-rate R  fraction of failed requests (0 to 1) still counted a success [{max_error_rate}]
      --json          print the summary only as one JSON document, instead of the text
  -h, --help          print this text
  -V, --version       print the name and version

DURATION: a number with a unit, ms, s, m or h (500ms, 10s, 2m); a bare number is seconds.
Throughput counts responses of any status; connection-level failures are counted apart, by
kind (connect, timeout, closed, bad_response). Latency mean and percentiles are over responses.
A request failed if it got no response or a 5xx one. A progress line goes to stderr each second
when stderr is a terminal.

Exit status: 0 when the failed fraction is at most --max-error-rate, 1 when it is above (the
summary is printed either way), 2 for a usage error.",
        connections = DEFAULT_CONNECTIONS,
        duration = DEFAULT_DURATION.as_secs(),
        timeout = DEFAULT_TIMEOUT.as_secs(),
        max_error_rate = DEFAULT_MAX_ERROR_RATE,
    )
}

/// Exit status of a run whose failed fraction was above `--max-error-rate`.
const EXIT_TOO_MANY_FAILURES: u8 = 1;

/// Exit status of a usage error, as for the services.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(Parsed::Run(options)) => options,
        Ok(Parsed::Help) => {
            print_out(&format!("{}\n", usage()));
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            print_out(&format!("{}\n", echo_lab::config::version_line()));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            print_err(&format!("loadgen: error: {e} (try --help)\n"));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let summary = workers::run(&options);
    if options.json {
        print_out(&format!("{}\n", summary.json(&options)));
    } else {
        print_out(&summary.text(&options));
    }
    if summary.failed_fraction() > options.max_error_rate {
        ExitCode::from(EXIT_TOO_MANY_FAILURES)
    } else {
        ExitCode::SUCCESS
    }
}

/// Writes `text` to stdout. Not `print!`, which panics when stdout is a closed pipe
/// (`loadgen ... | head -1`): what could not be written is lost either way, and the exit
/// status should still say how the run went.
fn print_out(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Writes `text` to stderr; not `eprint!`, for the same reason as `print_out`.
pub fn print_err(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default `--help` states for `flag`: the bracket closing its line in the table of
    /// flags, up to a `;`.
    fn stated_default(flag: &str) -> String {
        let text = usage();
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with('-') && l.contains(flag))
            .unwrap_or_else(|| panic!("no {flag} in the help"));
        let open = line.rfind('[').expect("a default in brackets");
        line[open + 1..]
            .split([';', ']'])
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    #[test]
    fn the_help_states_the_defaults_a_run_gets() {
        let Ok(Parsed::Run(run)) = Options::parse(["http://127.0.0.1:1/".to_owned()]) else {
            panic!("a URL alone is a run");
        };
        assert_eq!(stated_default("--connections"), run.connections.to_string());
        assert_eq!(
            stated_default("--duration"),
            format!("{}s", run.duration.as_secs())
        );
        assert_eq!(
            stated_default("--timeout"),
            format!("{}s", run.timeout.as_secs())
        );
        assert_eq!(
            stated_default("--max-error-rate").parse::<f64>(),
            Ok(run.max_error_rate)
        );
    }
}
