//! Log lines in two formats: `text` (the default, in simple_logger's layout, `text_line`) and
//! `json` (one JSON object per line, `json_line`), both written by `StdoutLogger`.
//! simple_logger still parses `RUST_LOG` and filters; it writes nothing.
//!
//! The logger hands each whole line to [`output`], which writes request lines in batches and
//! every other line at once, on stdout, without `Stdout`'s lock: a request line is logged on
//! every request from every executor thread, and behind a lock held over a system call the
//! threads queue up for each other (measured in bench/README.md, "What made it faster, and
//! why").
//!
//! Two kinds of line exist, and both formats show each of them:
//!
//! * **Request lines** are the hot path and carry many fields. They are a list of `Field`s,
//!   written once by `Fields`'s `Display` straight into the logger's line, either as
//!   `key=value key=value` or as `"key":value,"key":value`. The record carries the key
//!   `fields`: the JSON format knows from it that the message is already JSON members, and the
//!   output that the line may wait in a batch. To add a field (`replica=`, `attempt=`), add it
//!   to the list: both formats follow.
//! * **Other lines** (listening, shutdown, drain) are plain text, as always, and may carry a few
//!   `log` key-values (`log::info!(event = "drain_start"; "...")`). simple_logger ignores the
//!   key-values, so text lines stay as they were; the JSON logger writes them as members,
//!   followed by the text as `msg`.

pub mod output;

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use output::Urgency;

/// The key that marks a record whose message is a list of JSON members (see the module doc).
pub const FIELDS_KEY: &str = "fields";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `2026-11-24T22:39:45.338Z INFO  [target] service=A ...`, for people.
    Text,
    /// `{"ts":"2026-11-24T22:39:45.338Z","level":"INFO",...}`, for log collectors.
    Json,
}

/// `--log-format` named neither `text` nor `json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownLogFormat(pub String);

impl fmt::Display for UnknownLogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expected text or json, got {:?}", self.0)
    }
}

impl FromStr for LogFormat {
    type Err = UnknownLogFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(UnknownLogFormat(other.to_owned())),
        }
    }
}

/// Whether lines are JSON. Set once at start, before the first line; read by every request
/// line (one relaxed load, which costs nothing next to the write).
static JSON: AtomicBool = AtomicBool::new(false);

/// Chooses the format for every line from now on.
pub fn set_format(format: LogFormat) {
    JSON.store(format == LogFormat::Json, Ordering::Relaxed);
}

/// The format chosen at start.
pub fn format() -> LogFormat {
    if JSON.load(Ordering::Relaxed) {
        LogFormat::Json
    } else {
        LogFormat::Text
    }
}

/// The value of one field of a structured line.
#[derive(Clone, Copy)]
pub enum Value<'a> {
    /// Written bare in text (`method=GET`); a JSON string. For values without spaces or quotes.
    Word(&'a dyn fmt::Display),
    /// Written quoted in text (`error="it broke"`); a JSON string. For free text.
    Quoted(&'a str),
    /// A number.
    Uint(u64),
    /// Milliseconds with one decimal (`latency_ms=1000.8`); a JSON number.
    Millis(Duration),
    /// Not written at all (an `error` on a request that did not fail).
    Absent,
}

/// One `key=value` of a structured line.
pub type Field<'a> = (&'static str, Value<'a>);

/// A structured line's fields, written in `format` by `Display`.
pub struct Fields<'a> {
    pub format: LogFormat,
    pub list: &'a [Field<'a>],
}

impl<'a> Fields<'a> {
    /// `list` in the format chosen at start.
    pub fn new(list: &'a [Field<'a>]) -> Fields<'a> {
        Fields {
            format: format(),
            list,
        }
    }
}

impl fmt::Display for Fields<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let json = self.format == LogFormat::Json;
        let present = self
            .list
            .iter()
            .filter(|(_, v)| !matches!(v, Value::Absent));
        // Plain `write_str`s, not `write!`: this runs for every field of every request line.
        for (i, (key, value)) in present.enumerate() {
            let (before, after) = match (json, i) {
                (false, 0) => ("", "="),
                (false, _) => (" ", "="),
                (true, 0) => ("\"", "\":"),
                (true, _) => (",\"", "\":"),
            };
            f.write_str(before)?;
            f.write_str(key)?;
            f.write_str(after)?;
            if json {
                write_json_value(f, value)?;
            } else {
                write_text_value(f, value)?;
            }
        }
        Ok(())
    }
}

fn write_text_value(f: &mut fmt::Formatter<'_>, value: &Value<'_>) -> fmt::Result {
    match value {
        Value::Word(v) => fmt::Display::fmt(v, f),
        Value::Quoted(s) => write!(f, "{s:?}"),
        Value::Uint(n) => fmt::Display::fmt(n, f),
        Value::Millis(d) => write_millis(f, *d),
        Value::Absent => Ok(()),
    }
}

fn write_json_value(f: &mut fmt::Formatter<'_>, value: &Value<'_>) -> fmt::Result {
    match value {
        Value::Word(v) => write_json_string(f, v),
        Value::Quoted(s) => write_json_string(f, s),
        Value::Uint(n) => write!(f, "{n}"),
        Value::Millis(d) => write_millis(f, *d),
        Value::Absent => f.write_str("null"),
    }
}

/// Milliseconds with one decimal, in integers: float formatting costs more.
fn write_millis(f: &mut impl fmt::Write, latency: Duration) -> fmt::Result {
    let tenths_of_ms = latency.as_micros() / 100;
    write!(f, "{}.{}", tenths_of_ms / 10, tenths_of_ms % 10)
}

/// Writes `value` as a JSON string literal (RFC 8259 §7), escaping as it goes, so no
/// intermediate `String` is needed.
fn write_json_string(
    out: &mut impl fmt::Write,
    value: &(impl fmt::Display + ?Sized),
) -> fmt::Result {
    out.write_char('"')?;
    write!(JsonEscape(&mut *out), "{value}")?;
    out.write_char('"')
}

/// A writer that escapes what passes through it for the inside of a JSON string.
struct JsonEscape<W>(W);

impl<W: fmt::Write> fmt::Write for JsonEscape<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            match c {
                '"' => self.0.write_str("\\\"")?,
                '\\' => self.0.write_str("\\\\")?,
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                c if c < ' ' => write!(self.0, "\\u{:04x}", u32::from(c))?,
                c => self.0.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// Logs one structured line at `level`; `target` is where it comes from (`module_path!()`),
/// as for any `log` macro.
pub fn emit(level: log::Level, target: &str, list: &[Field<'_>]) {
    log::log!(target: target, level, fields = true; "{}", Fields::new(list));
}

/// Structured lines (records with the key [`FIELDS_KEY`]: one per request, and the `/control`
/// audit and rejection lines in the same format) may wait for others to leave with them; every
/// other line is written now (see [`output`]).
fn urgency(record: &log::Record) -> Urgency {
    let fields = record.key_values().get(log::kv::Key::from_str(FIELDS_KEY));
    match fields {
        Some(_) => Urgency::MayWait,
        None => Urgency::Now,
    }
}

/// Writes one line per record on stdout, in the format chosen at start (see [`output`] for how
/// the lines reach stdout). The level filter is simple_logger's, so `RUST_LOG` means the same
/// in both formats.
pub struct StdoutLogger {
    pub filter: simple_logger::SimpleLogger,
    pub format: LogFormat,
}

impl log::Log for StdoutLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        !output::STDOUT.is_gone() && self.filter.enabled(metadata)
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = match self.format {
            LogFormat::Text => text_line(record),
            LogFormat::Json => json_line(record),
        };
        if let Ok(line) = line {
            output::STDOUT.line(line.as_bytes(), urgency(record));
        }
    }

    fn flush(&self) {
        output::STDOUT.flush();
    }
}

/// A record as text, in simple_logger's layout, newline included:
/// `2026-11-24T22:39:45.338Z INFO  [target] message`.
fn text_line(record: &log::Record) -> Result<String, fmt::Error> {
    let mut line = String::with_capacity(192);
    write_timestamp(&mut line, SystemTime::now())?;
    let target = match record.target() {
        "" => record.module_path().unwrap_or_default(),
        target => target,
    };
    writeln!(
        line,
        " {:<5} [{target}] {}",
        record.level().as_str(),
        record.args()
    )?;
    Ok(line)
}

/// A record as one JSON object, newline included.
fn json_line(record: &log::Record) -> Result<String, fmt::Error> {
    let mut line = String::with_capacity(256);
    line.push_str("{\"ts\":\"");
    write_timestamp(&mut line, SystemTime::now())?;
    write!(
        line,
        "\",\"level\":\"{}\",\"target\":",
        record.level().as_str()
    )?;
    write_json_string(&mut line, record.target())?;
    let source = record.key_values();
    if source.get(log::kv::Key::from_str(FIELDS_KEY)).is_some() {
        write!(line, ",{}", record.args())?;
    } else {
        let _ = source.visit(&mut KeyValues(&mut line));
        line.push_str(",\"msg\":");
        write_json_string(&mut line, record.args())?;
    }
    line.push_str("}\n");
    Ok(line)
}

/// Writes a record's key-values as JSON members: numbers and booleans as such, others as
/// strings.
struct KeyValues<'s>(&'s mut String);

impl<'kvs> log::kv::VisitSource<'kvs> for KeyValues<'_> {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        let out = &mut *self.0;
        let written = (|| {
            out.push(',');
            write_json_string(out, key.as_str())?;
            out.push(':');
            if let Some(n) = value.to_u64() {
                write!(out, "{n}")
            } else if let Some(b) = value.to_bool() {
                write!(out, "{b}")
            } else {
                write_json_string(out, &value)
            }
        })();
        written.map_err(|_| log::kv::Error::msg("formatting a key-value failed"))
    }
}

/// `2026-11-24T22:39:45.338Z`: RFC 3339 in UTC with milliseconds, as simple_logger writes it.
///
/// Every request's log line starts with one, so the part up to the second is made once per
/// second and thread and kept: made with `write!` each time it was a tenth of A's CPU time
/// per request (callgrind, bench/README.md, "What made it faster, and why").
fn write_timestamp(out: &mut impl fmt::Write, now: SystemTime) -> fmt::Result {
    thread_local! {
        /// The last second written, and its text up to the seconds.
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    SECOND.with_borrow_mut(|(second, text)| {
        if *second != secs {
            text.clear();
            write_second(text, secs)?;
            *second = secs;
        }
        out.write_str(text)
    })?;
    let ms = since_epoch.subsec_millis();
    for c in [
        '.',
        digit(ms / 100),
        digit(ms / 10 % 10),
        digit(ms % 10),
        'Z',
    ] {
        out.write_char(c)?;
    }
    Ok(())
}

/// `2026-11-24T22:39:45`, the second `secs` after the epoch.
fn write_second(out: &mut String, secs: u64) -> fmt::Result {
    // The calendar arithmetic is the Date header's (RFC 9110 §5.6.7), shared.
    let (year, month, day) = crate::http::date::civil_from_days(secs / 86_400);
    let of_day = secs % 86_400;
    write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
    )
}

/// The decimal digit `n` (0 to 9).
fn digit(n: u32) -> char {
    char::from_digit(n, 10).unwrap_or('?')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_line_has_simple_loggers_layout() {
        let args = format_args!("service=A listening on 127.0.0.1:8080");
        let record = log::Record::builder()
            .level(log::Level::Info)
            .target("echo_lab::run")
            .args(args)
            .build();
        let line = text_line(&record).expect("formats");
        let (timestamp, rest) = line.split_at(24);
        assert_eq!(
            rest,
            " INFO  [echo_lab::run] service=A listening on 127.0.0.1:8080\n"
        );
        assert!(
            timestamp.ends_with('Z') && timestamp.as_bytes()[10] == b'T',
            "{line}"
        );
    }

    fn fields_in(format: LogFormat, list: &[Field<'_>]) -> String {
        Fields { format, list }.to_string()
    }

    #[test]
    fn fields_as_text_and_json() {
        let id = "abc";
        let fields = [
            ("service", Value::Word(&"B")),
            ("status", Value::Uint(503)),
            (
                "latency_ms",
                Value::Millis(Duration::from_micros(1_000_849)),
            ),
            ("request_id", Value::Word(&id)),
            ("error_kind", Value::Absent),
            ("error", Value::Quoted("say \"hi\"\n")),
        ];
        assert_eq!(
            fields_in(LogFormat::Text, &fields),
            r#"service=B status=503 latency_ms=1000.8 request_id=abc error="say \"hi\"\n""#
        );
        let json = format!("{{{}}}", fields_in(LogFormat::Json, &fields));
        let parsed: serde_json::Value = serde_json::from_str(&json).expect(&json);
        assert_eq!(
            parsed,
            serde_json::json!({"service": "B", "status": 503, "latency_ms": 1000.8,
                "request_id": "abc", "error": "say \"hi\"\n"})
        );
    }

    #[test]
    fn json_strings_escape_control_characters() {
        let mut out = String::new();
        write_json_string(&mut out, "a\u{1b}b\\").expect("formatting");
        assert_eq!(out, r#""a\u001bb\\""#);
        // A space is the first character that needs no escape.
        out.clear();
        write_json_string(&mut out, "a b\u{1f}").expect("formatting");
        assert_eq!(out, r#""a b\u001f""#);
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let mut out = String::new();
        let at = UNIX_EPOCH + Duration::from_millis(1_795_991_985_338);
        write_timestamp(&mut out, at).expect("formatting");
        assert_eq!(out, "2026-11-29T22:39:45.338Z");
        out.clear();
        // A leap day, and the day after it.
        write_timestamp(&mut out, UNIX_EPOCH + Duration::from_secs(951_782_400)).expect("fmt");
        assert_eq!(out, "2000-02-29T00:00:00.000Z");
        out.clear();
        write_timestamp(&mut out, UNIX_EPOCH + Duration::from_secs(951_868_800)).expect("fmt");
        assert_eq!(out, "2000-03-01T00:00:00.000Z");
    }

    #[test]
    fn a_kept_second_gets_each_instants_milliseconds_and_a_new_second_its_own_text() {
        let second = UNIX_EPOCH + Duration::from_secs(1_795_991_985);
        let mut out = String::new();
        for (ms, expected) in [
            (7, "2026-11-29T22:39:45.007Z"),
            (90, "2026-11-29T22:39:45.090Z"),
            (999, "2026-11-29T22:39:45.999Z"),
            (1000, "2026-11-29T22:39:46.000Z"),
            (0, "2026-11-29T22:39:45.000Z"),
        ] {
            out.clear();
            write_timestamp(&mut out, second + Duration::from_millis(ms)).expect("fmt");
            assert_eq!(out, expected);
        }
    }

    #[test]
    fn a_json_line_has_ts_level_target_key_values_and_msg() {
        let record = log::Record::builder()
            .level(log::Level::Warn)
            .target("echo_lab::run")
            .key_values(&[("event", "open_file_limit"), ("limit", "1024")])
            .args(format_args!("service=A raised the limit"))
            .build();
        let line = json_line(&record).expect("formats");
        assert!(line.ends_with("}\n"), "{line:?}");
        let parsed: serde_json::Value = serde_json::from_str(&line).expect(&line);
        assert_eq!(parsed["level"], "WARN");
        assert_eq!(parsed["target"], "echo_lab::run");
        assert_eq!(parsed["event"], "open_file_limit");
        assert_eq!(parsed["limit"], "1024");
        assert_eq!(parsed["msg"], "service=A raised the limit");
        assert!(parsed["ts"].as_str().is_some_and(|ts| ts.ends_with('Z')));
    }

    #[test]
    fn request_lines_may_wait_and_other_lines_may_not() {
        let request = log::Record::builder()
            .level(log::Level::Warn)
            .key_values(&[(FIELDS_KEY, true)])
            .args(format_args!("service=B status=503"))
            .build();
        assert_eq!(urgency(&request), Urgency::MayWait);
        let listening = log::Record::builder()
            .level(log::Level::Info)
            .key_values(&[("event", "listening")])
            .args(format_args!("service=A listening on 127.0.0.1:8080"))
            .build();
        assert_eq!(urgency(&listening), Urgency::Now);
    }

    #[test]
    fn log_formats_parse() {
        assert_eq!("json".parse(), Ok(LogFormat::Json));
        assert_eq!("text".parse(), Ok(LogFormat::Text));
        assert!("xml".parse::<LogFormat>().is_err());
    }
}
