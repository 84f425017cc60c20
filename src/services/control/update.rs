//! The body of a `POST /control`: a JSON object naming some of the knobs, read into a
//! `ChaosUpdate` that changes those and leaves the others. Strict on purpose, like the
//! startup flags: an unknown knob, a value of the wrong type and a value out of range are
//! refused with a text that names them, and nothing is clamped or half applied.
//!
//! Pure functions only: `ChaosUpdate::parse` reads a body, `apply` merges it into the knobs
//! now, and `Chaos::validate` checks the result as a whole (the endpoint does the last two
//! under the lock, in `LiveChaos::change`).

use std::fmt;
use std::time::Duration;

use serde_json::Value;

use crate::services::capacity::{Capacity, MAX_QUEUE_LIMIT, MAX_WORKERS, QueuePolicy};
use crate::services::chaos::{Chaos, InvalidChaos, Knob};

/// Longest part of the client's input (a knob name) quoted back in an error. The error goes
/// into the answer and into a log line, and a body may be 64 KiB: a longer name is cut, so a
/// client cannot fill A's log with one request.
const MAX_QUOTED_CHARS: usize = 64;

/// Why a body cannot change the knobs.
#[derive(Debug)]
pub enum UpdateError {
    /// The body is empty (or only whitespace).
    Empty,
    /// The body is not JSON.
    NotJson(serde_json::Error),
    /// The body is JSON, but not an object; carries what it is (`an array`).
    NotAnObject(&'static str),
    /// A member names no knob; carries the name, cut to `MAX_QUOTED_CHARS`.
    UnknownKnob(String),
    /// A knob's value is of the wrong type: a string for a rate, `1.5` for milliseconds, a
    /// policy that is not one of the names.
    WrongType {
        knob: Knob,
        expected: &'static str,
        got: String,
    },
    /// A value out of range, alone (`tail_rate: 1.5`) or with the others (a tail rate with
    /// no tail delay).
    Invalid(InvalidChaos),
}

impl fmt::Display for UpdateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpdateError::Empty => f.write_str(
                r#"the body is empty: send a JSON object of knobs, e.g. {"fail_rate":0.5}"#,
            ),
            UpdateError::NotJson(e) => write!(f, "the body is not JSON: {e}"),
            UpdateError::NotAnObject(what) => {
                write!(f, "the body is {what}, not a JSON object of knobs")
            }
            UpdateError::UnknownKnob(name) => {
                let known: Vec<&str> = Knob::ALL.into_iter().map(Knob::name).collect();
                write!(
                    f,
                    "unknown knob {name:?}; the knobs are {}",
                    known.join(", ")
                )
            }
            UpdateError::WrongType {
                knob,
                expected,
                got,
            } => write!(f, "{}: expected {expected}, got {got}", knob.name()),
            UpdateError::Invalid(e) => write!(f, "{e}"),
        }
    }
}

impl From<InvalidChaos> for UpdateError {
    fn from(invalid: InvalidChaos) -> Self {
        UpdateError::Invalid(invalid)
    }
}

/// A change to some of the knobs; `None` leaves a knob as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ChaosUpdate {
    pub delay: Option<Duration>,
    pub jitter: Option<Duration>,
    pub tail_rate: Option<f64>,
    pub tail_delay: Option<Duration>,
    pub fail_rate: Option<f64>,
    pub drop_rate: Option<f64>,
    pub blackhole: Option<bool>,
    pub workers: Option<u32>,
    pub work: Option<Duration>,
    pub queue_limit: Option<u32>,
    pub queue_policy: Option<QueuePolicy>,
}

impl ChaosUpdate {
    /// Reads a JSON object of knobs. Types are checked here; ranges by `Chaos::validate` on
    /// the result, so the startup flags and `/control` refuse the same values in the same
    /// words. A knob named twice takes its last value, as serde_json reads objects (RFC 8259
    /// §4 leaves that to the parser).
    pub fn parse(body: &[u8]) -> Result<ChaosUpdate, UpdateError> {
        if body.trim_ascii().is_empty() {
            return Err(UpdateError::Empty);
        }
        let value: Value = serde_json::from_slice(body).map_err(UpdateError::NotJson)?;
        let Value::Object(members) = value else {
            return Err(UpdateError::NotAnObject(what_it_is(&value)));
        };
        let mut update = ChaosUpdate::default();
        for (name, value) in &members {
            let knob =
                Knob::from_name(name).ok_or_else(|| UpdateError::UnknownKnob(quoted(name)))?;
            update.set(knob, value)?;
        }
        Ok(update)
    }

    /// Sets `knob` from a JSON value of the type it takes.
    fn set(&mut self, knob: Knob, value: &Value) -> Result<(), UpdateError> {
        match knob {
            Knob::DelayMs => self.delay = Some(millis(knob, value)?),
            Knob::JitterMs => self.jitter = Some(millis(knob, value)?),
            Knob::TailRate => self.tail_rate = Some(rate(knob, value)?),
            Knob::TailDelayMs => self.tail_delay = Some(millis(knob, value)?),
            Knob::FailRate => self.fail_rate = Some(rate(knob, value)?),
            Knob::DropRate => self.drop_rate = Some(rate(knob, value)?),
            Knob::Blackhole => self.blackhole = Some(switch(knob, value)?),
            Knob::Workers => self.workers = Some(count(knob, value, MAX_WORKERS)?),
            Knob::WorkMs => self.work = Some(millis(knob, value)?),
            Knob::QueueLimit => self.queue_limit = Some(count(knob, value, MAX_QUEUE_LIMIT)?),
            Knob::QueuePolicy => self.queue_policy = Some(policy(knob, value)?),
        }
        Ok(())
    }

    /// `chaos` with the knobs this update names replaced.
    pub fn apply(&self, chaos: Chaos) -> Chaos {
        Chaos {
            delay: self.delay.unwrap_or(chaos.delay),
            jitter: self.jitter.unwrap_or(chaos.jitter),
            tail_rate: self.tail_rate.unwrap_or(chaos.tail_rate),
            tail_delay: self.tail_delay.unwrap_or(chaos.tail_delay),
            fail_rate: self.fail_rate.unwrap_or(chaos.fail_rate),
            drop_rate: self.drop_rate.unwrap_or(chaos.drop_rate),
            blackhole: self.blackhole.unwrap_or(chaos.blackhole),
            capacity: Capacity {
                workers: self.workers.unwrap_or(chaos.capacity.workers),
                work: self.work.unwrap_or(chaos.capacity.work),
                queue_limit: self.queue_limit.unwrap_or(chaos.capacity.queue_limit),
                queue_policy: self.queue_policy.unwrap_or(chaos.capacity.queue_policy),
            },
        }
    }
}

/// Whole milliseconds: a JSON integer. A negative one is out of range; `1.5`, `1e3` and
/// `"100"` are not milliseconds at all.
fn millis(knob: Knob, value: &Value) -> Result<Duration, UpdateError> {
    let Value::Number(n) = value else {
        return Err(wrong_type(knob, "a whole number of milliseconds", value));
    };
    if let Some(ms) = n.as_u64() {
        return Ok(Duration::from_millis(ms));
    }
    match n.as_i64() {
        Some(ms) => Err(UpdateError::Invalid(InvalidChaos::DelayOutOfRange {
            knob,
            ms: ms.into(),
        })),
        None => Err(wrong_type(knob, "a whole number of milliseconds", value)),
    }
}

/// A whole number up to `most`: a JSON integer. A negative or larger one is out of range (its
/// limit checked again by `validate`, with the flags'); `1.5` and `"3"` are not counts.
fn count(knob: Knob, value: &Value, most: u64) -> Result<u32, UpdateError> {
    let Value::Number(n) = value else {
        return Err(wrong_type(knob, "a whole number", value));
    };
    let out_of_range =
        |count: i128| UpdateError::Invalid(InvalidChaos::CountOutOfRange { knob, count, most });
    if let Some(count) = n.as_u64() {
        return u32::try_from(count).map_err(|_| out_of_range(count.into()));
    }
    match n.as_i64() {
        Some(count) => Err(out_of_range(count.into())),
        None => Err(wrong_type(knob, "a whole number", value)),
    }
}

/// One of the policies' names, as a JSON string.
fn policy(knob: Knob, value: &Value) -> Result<QueuePolicy, UpdateError> {
    value
        .as_str()
        .and_then(QueuePolicy::from_name)
        .ok_or_else(|| wrong_type(knob, "\"fifo\" or \"codel-lifo\"", value))
}

/// A fraction: any JSON number (`0` and `1` included); its range is `validate`'s.
fn rate(knob: Knob, value: &Value) -> Result<f64, UpdateError> {
    value
        .as_f64()
        .ok_or_else(|| wrong_type(knob, "a number from 0 to 1", value))
}

/// `true` or `false`; not `1`, not `"true"`.
fn switch(knob: Knob, value: &Value) -> Result<bool, UpdateError> {
    value
        .as_bool()
        .ok_or_else(|| wrong_type(knob, "true or false", value))
}

fn wrong_type(knob: Knob, expected: &'static str, value: &Value) -> UpdateError {
    let got = match value {
        // Short and telling as they are; a string or a structure is named by its type only.
        Value::Number(_) | Value::Bool(_) | Value::Null => value.to_string(),
        // A policy's name is short; anything longer is cut.
        Value::String(text) if knob == Knob::QueuePolicy => format!("{:?}", quoted(text)),
        other => what_it_is(other).to_owned(),
    };
    UpdateError::WrongType {
        knob,
        expected,
        got,
    }
}

/// `a string`, `an array`...: a JSON value's type, as a phrase.
fn what_it_is(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `text` cut to `MAX_QUOTED_CHARS` characters, with `…` when it was cut.
fn quoted(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// The knobs after `body` changed `current`, checked as a whole: the endpoint's rule.
    fn updated(current: Chaos, body: &[u8]) -> Result<Chaos, UpdateError> {
        let after = ChaosUpdate::parse(body)?.apply(current);
        after.validate()?;
        Ok(after)
    }

    /// The text of the error `body` gives on the default knobs.
    fn refusal(body: &str) -> String {
        updated(Chaos::default(), body.as_bytes())
            .expect_err(body)
            .to_string()
    }

    #[test]
    fn names_only_the_knobs_it_changes() {
        let update = ChaosUpdate::parse(br#"{"fail_rate":1.0,"delay_ms":200}"#).expect("valid");
        assert_eq!(
            update,
            ChaosUpdate {
                fail_rate: Some(1.0),
                delay: Some(MS * 200),
                ..ChaosUpdate::default()
            }
        );
        let before = Chaos {
            drop_rate: 0.5,
            ..Chaos::default()
        };
        let after = update.apply(before);
        assert_eq!(after.drop_rate, 0.5, "a knob not named stays");
        assert_eq!((after.fail_rate, after.delay), (1.0, MS * 200));
    }

    #[test]
    fn every_knob_takes_its_type() {
        let body = br#"{"delay_ms":1,"jitter_ms":2,"tail_rate":0.5,"tail_delay_ms":3,
                        "fail_rate":0,"drop_rate":1,"blackhole":true}"#;
        let after = updated(Chaos::default(), body).expect("valid");
        assert_eq!(
            after,
            Chaos {
                delay: MS,
                jitter: MS * 2,
                tail_rate: 0.5,
                tail_delay: MS * 3,
                fail_rate: 0.0,
                drop_rate: 1.0,
                blackhole: true,
                capacity: Capacity::default(),
            }
        );
        let body = br#"{"workers":3,"work_ms":20,"queue_limit":50,"queue_policy":"codel-lifo"}"#;
        let after = updated(Chaos::default(), body).expect("valid");
        assert_eq!(
            after.capacity,
            Capacity {
                workers: 3,
                work: MS * 20,
                queue_limit: 50,
                queue_policy: QueuePolicy::CodelLifo,
            }
        );
    }

    #[test]
    fn an_empty_object_changes_nothing() {
        let chaos = Chaos {
            fail_rate: 0.25,
            ..Chaos::default()
        };
        assert_eq!(updated(chaos, b" {} ").expect("valid"), chaos);
    }

    #[test]
    fn not_an_object_of_knobs() {
        assert!(refusal("").starts_with("the body is empty"));
        assert!(refusal(" \r\n").starts_with("the body is empty"));
        assert!(refusal("{").starts_with("the body is not JSON: "));
        assert!(refusal("fail_rate=1").starts_with("the body is not JSON: "));
        assert!(refusal(r#"{"fail_rate":1} x"#).starts_with("the body is not JSON: "));
        assert_eq!(
            refusal("[1]"),
            "the body is an array, not a JSON object of knobs"
        );
        assert_eq!(
            refusal("0.5"),
            "the body is a number, not a JSON object of knobs"
        );
    }

    #[test]
    fn an_unknown_knob_is_named() {
        let text = refusal(r#"{"tail":1}"#);
        assert!(
            text.starts_with(r#"unknown knob "tail"; the knobs are delay_ms, "#),
            "{text}"
        );
        assert!(
            text.ends_with("blackhole, workers, work_ms, queue_limit, queue_policy"),
            "{text}"
        );
        // Flag spellings are not knob names.
        assert!(refusal(r#"{"tail-rate":1}"#).starts_with(r#"unknown knob "tail-rate""#));
    }

    #[test]
    fn a_long_unknown_name_is_cut() {
        let name = "é".repeat(1000);
        let text = refusal(&format!(r#"{{"{name}":1}}"#));
        let shown = format!("\"{}…\"", "é".repeat(MAX_QUOTED_CHARS));
        assert!(text.contains(&shown), "{text}");
        assert!(text.len() < 300, "{text}");
    }

    #[test]
    fn a_wrong_type_is_named_with_what_came() {
        for (body, text) in [
            (
                r#"{"fail_rate":"high"}"#,
                "fail_rate: expected a number from 0 to 1, got a string",
            ),
            (
                r#"{"delay_ms":1.5}"#,
                "delay_ms: expected a whole number of milliseconds, got 1.5",
            ),
            (
                r#"{"delay_ms":1e3}"#,
                "delay_ms: expected a whole number of milliseconds, got 1000.0",
            ),
            (
                r#"{"jitter_ms":"100"}"#,
                "jitter_ms: expected a whole number of milliseconds, got a string",
            ),
            (
                r#"{"blackhole":1}"#,
                "blackhole: expected true or false, got 1",
            ),
            (
                r#"{"blackhole":"true"}"#,
                "blackhole: expected true or false, got a string",
            ),
            (
                r#"{"drop_rate":null}"#,
                "drop_rate: expected a number from 0 to 1, got null",
            ),
            (
                r#"{"tail_rate":[0.5]}"#,
                "tail_rate: expected a number from 0 to 1, got an array",
            ),
            (
                r#"{"workers":1.5}"#,
                "workers: expected a whole number, got 1.5",
            ),
            (
                r#"{"queue_limit":"10"}"#,
                "queue_limit: expected a whole number, got a string",
            ),
            (
                r#"{"queue_policy":"lifo"}"#,
                r#"queue_policy: expected "fifo" or "codel-lifo", got "lifo""#,
            ),
            (
                r#"{"queue_policy":1}"#,
                r#"queue_policy: expected "fifo" or "codel-lifo", got 1"#,
            ),
        ] {
            assert_eq!(refusal(body), text, "{body}");
        }
    }

    #[test]
    fn out_of_range_is_refused_never_clamped() {
        for (body, text) in [
            (
                r#"{"tail_rate":1.5}"#,
                "tail_rate: 1.5 is not between 0 and 1",
            ),
            (
                r#"{"fail_rate":-0.1}"#,
                "fail_rate: -0.1 is not between 0 and 1",
            ),
            (r#"{"drop_rate":2}"#, "drop_rate: 2 is not between 0 and 1"),
            (
                r#"{"delay_ms":60001}"#,
                "delay_ms: 60001 is not between 0 and 60000",
            ),
            (
                r#"{"jitter_ms":-5}"#,
                "jitter_ms: -5 is not between 0 and 60000",
            ),
            (
                r#"{"tail_delay_ms":18446744073709551615}"#,
                "tail_delay_ms: 18446744073709551615 is not between 0 and 60000",
            ),
            (
                r#"{"workers":-1}"#,
                "workers: -1 is not between 0 and 10000",
            ),
            (
                r#"{"workers":10001}"#,
                "workers: 10001 is not between 0 and 10000",
            ),
            (
                r#"{"queue_limit":4294967296}"#,
                "queue_limit: 4294967296 is not between 0 and 100000",
            ),
            (
                r#"{"work_ms":60001}"#,
                "work_ms: 60001 is not between 0 and 60000",
            ),
        ] {
            assert_eq!(refusal(body), text, "{body}");
        }
        assert!(updated(Chaos::default(), br#"{"delay_ms":60000}"#).is_ok());
    }

    #[test]
    fn the_merge_is_checked_as_a_whole() {
        assert_eq!(
            refusal(r#"{"tail_rate":0.5}"#),
            "tail_rate: 0.5 needs tail_delay_ms above 0, or the tail is not there"
        );
        let with_tail = Chaos {
            tail_rate: 0.5,
            tail_delay: MS * 300,
            ..Chaos::default()
        };
        // Taking the tail delay away from a tail that is there is refused the same way...
        let error = updated(with_tail, br#"{"tail_delay_ms":0}"#).expect_err("no tail");
        assert!(matches!(
            error,
            UpdateError::Invalid(InvalidChaos::TailWithoutDelay { .. })
        ));
        // ...and both at once is fine.
        let off = updated(with_tail, br#"{"tail_rate":0,"tail_delay_ms":0}"#).expect("off");
        assert!(off.is_off());
    }

    #[test]
    fn one_bad_member_refuses_the_whole_body() {
        let error = updated(Chaos::default(), br#"{"fail_rate":1,"tail":1}"#);
        assert!(matches!(error, Err(UpdateError::UnknownKnob(_))));
    }
}
