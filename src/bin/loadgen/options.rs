//! The command line: flags, their values and the checks on them.

use std::thread;
use std::time::Duration;

use echo_lab::http::client::Upstream;

/// `-n` without `-d`: the run is bounded by its count, and the clock is only a backstop (a
/// century, so that `start + duration` stays an `Instant`).
const NO_TIME_LIMIT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Header fields `-H` may not set: the client writes them itself (`Host`), or they would
/// describe a body or a connection that loadgen does not send or manage.
const RESERVED_HEADERS: [&str; 4] = ["host", "content-length", "transfer-encoding", "connection"];

/// What the command line asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// The URL as given, for the report.
    pub url: String,
    pub upstream: Upstream,
    /// Path and query, sent as the request-target.
    pub target: String,
    pub connections: usize,
    pub duration: Duration,
    pub threads: usize,
    pub timeout: Duration,
    /// Requests per second in all (open loop), or `None` (closed loop).
    pub rate: Option<f64>,
    /// `-n`: how many requests in all, or `None` (until the duration ends).
    pub count: Option<u64>,
    /// `-H`: extra request header fields, in order.
    pub headers: Vec<(String, String)>,
    /// The largest fraction of failed requests that still counts as a successful run.
    pub max_error_rate: f64,
    pub json: bool,
}

/// The outcome of reading the command line.
#[derive(Debug)]
pub enum Parsed {
    Run(Options),
    Help,
    Version,
}

/// More workers than this would only measure the file-descriptor limit.
const MAX_CONNECTIONS: usize = 100_000;

impl Options {
    /// Reads the arguments (without the program name). Errors are one line, naming the flag.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
        let mut url = None;
        let mut connections = DEFAULT_CONNECTIONS;
        let mut duration = None;
        let mut count = None;
        let mut headers = Vec::new();
        let mut max_error_rate = DEFAULT_MAX_ERROR_RATE;
        let mut threads = thread::available_parallelism().map_or(1, |n| n.get());
        let mut timeout = DEFAULT_TIMEOUT;
        let mut rate = None;
        let mut json = false;

        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = split_flag(&arg);
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or_else(|| format!("{flag} needs a value"))
            };
            match flag.as_str() {
                "-h" | "--help" | "-V" | "--version" | "--json" if inline.is_some() => {
                    return Err(format!("{flag} takes no value"));
                }
                "-h" | "--help" => return Ok(Parsed::Help),
                "-V" | "--version" => return Ok(Parsed::Version),
                "--json" => json = true,
                "-c" | "--connections" => connections = parse_count(&flag, &value()?)?,
                "-t" | "--threads" => threads = parse_count(&flag, &value()?)?,
                "-d" | "--duration" => {
                    duration = Some(parse_positive_duration(&flag, &value()?)?);
                }
                "-n" | "--requests" => count = Some(parse_count(&flag, &value()?)? as u64),
                "-H" | "--header" => headers.push(parse_header(&value()?)?),
                "--max-error-rate" => max_error_rate = parse_fraction(&flag, &value()?)?,
                "--timeout" => timeout = parse_positive_duration(&flag, &value()?)?,
                "--rate" => rate = Some(parse_rate(&value()?)?),
                other if other.starts_with('-') => return Err(format!("unknown flag {other}")),
                _ if url.is_some() => return Err(format!("unexpected argument {arg:?}")),
                _ => url = Some(arg),
            }
        }
        let url = url.ok_or("missing URL, e.g. http://127.0.0.1:8080/echo?msg=hi")?;
        if connections > MAX_CONNECTIONS {
            return Err(format!("-c: at most {MAX_CONNECTIONS} connections"));
        }
        let (upstream, target) = split_url(&url)?;
        let duration = match (duration, count) {
            (Some(d), _) => d,
            (None, Some(_)) => NO_TIME_LIMIT,
            (None, None) => DEFAULT_DURATION,
        };
        Ok(Parsed::Run(Options {
            url,
            upstream,
            target,
            connections,
            duration,
            threads,
            timeout,
            rate,
            count,
            headers,
            max_error_rate,
            json,
        }))
    }
}

/// How long a run lasts without `-d` or `-n`.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);

/// Workers without `-c`: enough to keep a small service busy on a laptop, each with its own
/// kept-alive connection.
pub const DEFAULT_CONNECTIONS: usize = 64;

/// Each request's deadline without `--timeout`: far above any answer a healthy service gives,
/// so that a timeout means something is wrong.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The failed fraction a run may have without `--max-error-rate` and still succeed: none.
pub const DEFAULT_MAX_ERROR_RATE: f64 = 0.0;

/// `Name: value` from `-H`, checked so that it cannot break the request: the name a token
/// (RFC 9110 §5.1), the value free of control characters (no CR or LF to smuggle a line in).
fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("-H {text:?}: expected 'Name: value'"))?;
    let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(format!("-H {text:?}: {name:?} is not a header name"));
    }
    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(format!("-H {text:?}: loadgen sets {name} itself"));
    }
    let value = value.trim_matches([' ', '\t']);
    if value.bytes().any(|b| (b < b' ' && b != b'\t') || b == 0x7f) {
        return Err(format!("-H {text:?}: control characters in the value"));
    }
    Ok((name.to_owned(), value.to_owned()))
}

/// A fraction from 0 to 1, for `flag`.
fn parse_fraction(flag: &str, text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!(
            "{flag}: expected a fraction from 0 to 1, got {text:?}"
        )),
    }
}

/// Splits an argument into a flag and a value given with it: `--flag=value` and, as wrk
/// writes them, `-c64` are the same as `--flag value` and `-c 64`.
fn split_flag(arg: &str) -> (String, Option<String>) {
    if arg.starts_with("--") {
        if let Some((flag, value)) = arg.split_once('=') {
            return (flag.to_owned(), Some(value.to_owned()));
        }
    } else if arg.starts_with('-') && arg.len() > 2 && arg.is_char_boundary(2) {
        let (flag, value) = arg.split_at(2);
        return (flag.to_owned(), Some(value.to_owned()));
    }
    (arg.to_owned(), None)
}

/// Splits `http://host:port/path?query` into the upstream and the request-target (`/` when
/// the URL has no path).
fn split_url(url: &str) -> Result<(Upstream, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("URL {url:?}: only http:// URLs are supported"))?;
    let cut = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(cut);
    let target = match target {
        "" => "/".to_owned(),
        t if t.starts_with('?') => format!("/{t}"),
        t => t.to_owned(),
    };
    if target.contains(['#', ' ']) {
        return Err(format!(
            "URL {url:?}: no fragment or space allowed in the path"
        ));
    }
    let upstream = Upstream::from_url(&format!("http://{authority}"))
        .map_err(|e| format!("URL {url:?}: {e}"))?;
    Ok((upstream, target))
}

/// A whole number of at least 1.
fn parse_count(flag: &str, text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "{flag}: expected a whole number >= 1, got {text:?}"
        )),
    }
}

/// A rate in requests per second: a number above zero.
fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!("--rate: expected requests/s > 0, got {text:?}")),
    }
}

/// A duration of more than zero, for `flag`.
fn parse_positive_duration(flag: &str, text: &str) -> Result<Duration, String> {
    match parse_duration(text) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(format!("{flag}: must be more than zero, got {text:?}")),
        Err(e) => Err(format!("{flag}: {e}")),
    }
}

/// Parses `500ms`, `10s`, `1.5s`, `2m`, `1h`, or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale = match unit {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("bad duration {text:?} (use e.g. 500ms, 10s, 2m)")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("bad duration {text:?} (use e.g. 500ms, 10s, 2m)"))?;
    Duration::try_from_secs_f64(value * scale).map_err(|_| format!("duration {text:?} too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Parsed, String> {
        Options::parse(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        for bad in ["", "s", "10x", "-1s", "1..2s", "ms10"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_split_into_upstream_and_target() {
        let (up, target) = split_url("http://127.0.0.1:8081/call-echo?msg=hi").expect("ok");
        assert_eq!((up.host.as_str(), up.port), ("127.0.0.1", 8081));
        assert_eq!(target, "/call-echo?msg=hi");
        assert_eq!(split_url("http://localhost:80").expect("ok").1, "/");
        assert_eq!(split_url("http://h:1?x=1").expect("ok").1, "/?x=1");
        assert_eq!(split_url("http://[::1]:9/a").expect("ok").0.host, "::1");
        for bad in [
            "https://h:1/",
            "h:1/",
            "http://h:x/",
            "http://:1/",
            "http://h:1/a#b",
        ] {
            assert!(split_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags() {
        let Ok(Parsed::Run(o)) = args(&[
            "http://h:1/e",
            "-c",
            "8",
            "--duration=2s",
            "--rate",
            "100",
            "--json",
            "-t3",
        ]) else {
            panic!("should parse");
        };
        assert_eq!(
            (o.connections, o.duration, o.rate, o.json, o.threads),
            (8, Duration::from_secs(2), Some(100.0), true, 3)
        );
        assert!(matches!(args(&["--help"]), Ok(Parsed::Help)));
        for (bad, says) in [
            (&["http://h:1", "-c", "0"][..], "-c"),
            (&["http://h:1", "-c"][..], "needs a value"),
            (&["http://h:1", "--rate", "-5"][..], "--rate"),
            (&["http://h:1", "-d", "0s"][..], "more than zero"),
            (&["http://h:1", "--nope"][..], "unknown flag"),
            (&["http://h:1", "-x5"][..], "unknown flag -x"),
            (&["http://h:1", "--json=yes"][..], "--json takes no value"),
            (&["http://h:1", "-n", "0"][..], "-n"),
            (
                &["http://h:1", "-H", "NoColon"][..],
                "expected 'Name: value'",
            ),
            (
                &["http://h:1", "-H", "Bad Name: x"][..],
                "not a header name",
            ),
            (&["http://h:1", "-H", "Host: x"][..], "sets Host itself"),
            (&["http://h:1", "-H", "X: a\rb"][..], "control characters"),
            (&["http://h:1", "--max-error-rate", "2"][..], "from 0 to 1"),
            (&[][..], "missing URL"),
            (&["http://h:1", "http://h:2"][..], "unexpected argument"),
        ] {
            match args(bad) {
                Err(e) => assert!(e.contains(says), "{bad:?}: {e}"),
                Ok(_) => panic!("{bad:?} should fail"),
            }
        }
    }

    #[test]
    fn count_headers_and_error_rate() {
        let Ok(Parsed::Run(o)) = args(&[
            "http://h:1/e",
            "-n",
            "7",
            "-H",
            "X-One: 1",
            "-HX-Two:two words ",
            "--max-error-rate=0.25",
        ]) else {
            panic!("should parse");
        };
        assert_eq!(o.count, Some(7));
        assert_eq!(
            o.duration, NO_TIME_LIMIT,
            "-n alone is bounded by its count"
        );
        assert_eq!(
            o.headers,
            [
                ("X-One".to_owned(), "1".to_owned()),
                ("X-Two".to_owned(), "two words".to_owned())
            ]
        );
        assert_eq!(o.max_error_rate, 0.25);
        let Ok(Parsed::Run(o)) = args(&["http://h:1/e", "-n", "7", "-d", "1s"]) else {
            panic!("should parse");
        };
        assert_eq!(o.duration, Duration::from_secs(1));
        assert!(matches!(args(&["-V"]), Ok(Parsed::Version)));
    }
}
