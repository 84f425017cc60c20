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

use options::{Options, Parsed};

const USAGE: &str = "\
loadgen: HTTP/1.1 load generator on echo-lab's own client

usage: loadgen URL [-c N] [-d DURATION | -n COUNT] [-t N] [--timeout DURATION] [--rate N]
               [-H 'Name: value']... [--max-error-rate R] [--json]

  URL                 http://host:port/path?query (plain http only)
  -c, --connections N concurrent workers, each with its own kept-alive connection [64]
  -d, --duration D    how long to send requests [10s; with -n alone: until COUNT are done]
  -n, --requests N    send N requests in all, then stop (with -d too: whichever comes first)
  -H, --header H      add a request header, 'Name: value'; repeat for more
  -t, --threads N     threads running the workers [one per core]
      --timeout D     deadline of each request, from when it is sent [5s]
      --rate N        open loop: N requests/s in all, latency measured from each request's
                      intended send time (coordinated omission); default: closed loop
      --max-error-rate R  fraction of failed requests (0 to 1) still counted a success [0]
      --json          print the summary only as one JSON document, instead of the text
  -h, --help          print this text
  -V, --version       print the name and version

DURATION: a number with a unit, ms, s, m or h (500ms, 10s, 2m); a bare number is seconds.
Throughput counts responses of any status; connection-level failures are counted apart, by
kind (connect, timeout, closed, bad_response). Latency mean and percentiles are over responses.
A request failed if it got no response or a 5xx one. A progress line goes to stderr each second
when stderr is a terminal.

Exit status: 0 when the failed fraction is at most --max-error-rate, 1 when it is above (the
summary is printed either way), 2 for a usage error.";

/// Exit status of a run whose failed fraction was above `--max-error-rate`.
const EXIT_TOO_MANY_FAILURES: u8 = 1;

/// Exit status of a usage error, as for the services.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(Parsed::Run(options)) => options,
        Ok(Parsed::Help) => {
            print_out(&format!("{USAGE}\n"));
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
