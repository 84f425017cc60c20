//! Every line the children write, interleaved in the order the lab read them, each tagged with
//! its source (`A1`, `A2`, `A3`, `B`, or `lab` for the lab's own actions) and a sequence number,
//! so a page can ask "what came after line 1234?". Only the newest `KEPT` are kept.
//!
//! The services log JSON (`--log-format json`), so a line's fields arrive named: the page
//! finds `request_id` and `trace_id` without parsing text. A line that is not JSON (an error
//! on stderr before logging started) is kept as `{"msg": line}`.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde_json::{Map, Value, json};

/// Lines kept for pages: at 50 calls a second B and A write about 100 lines a second, so this
/// is the last minute or so, enough to follow a request that was clicked a while ago.
const KEPT: usize = 6000;

/// Endpoints the lab itself polls twice a second on every service. Their `GET` lines would
/// be a third of the log and say nothing; a `POST /control` (a change of faults) is kept.
const POLLED: [&str; 2] = ["/metrics", "/control"];

/// One line and where it came from.
#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: u64,
    pub source: String,
    pub fields: Value,
}

impl Entry {
    /// The line as the page gets it: `{"seq":…,"src":"B","line":{…}}`.
    pub fn to_json(&self) -> Value {
        json!({ "seq": self.seq, "src": self.source, "line": self.fields })
    }
}

/// The shared log of all the lab's processes.
#[derive(Debug, Default)]
pub struct LogBook {
    book: Mutex<Book>,
}

#[derive(Debug, Default)]
struct Book {
    entries: VecDeque<Entry>,
    next_seq: u64,
}

impl LogBook {
    fn lock(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps a line a child wrote, unless it is one of the lab's own polls.
    pub fn add(&self, source: &str, line: &str) {
        let fields = fields_of(line);
        if !is_poll(&fields) {
            self.push(source, fields);
        }
    }

    /// Keeps a line about something the lab did (`SIGTERM to A2`).
    pub fn note(&self, text: &str) {
        self.push("lab", json!({ "level": "INFO", "msg": text }));
    }

    fn push(&self, source: &str, fields: Value) {
        let mut book = self.lock();
        let seq = book.next_seq;
        book.next_seq += 1;
        if book.entries.len() == KEPT {
            book.entries.pop_front();
        }
        book.entries.push_back(Entry {
            seq,
            source: source.to_owned(),
            fields,
        });
    }

    /// The lines numbered `from` and later, at most the newest `most` of them, and the number
    /// the next line will get (the `from` of the next call).
    pub fn since(&self, from: u64, most: usize) -> (Vec<Entry>, u64) {
        let book = self.lock();
        // The numbers in the book are consecutive: the place of `from` is its distance from
        // the oldest kept.
        let oldest = book.entries.front().map_or(book.next_seq, |e| e.seq);
        let len = book.entries.len();
        let at = usize::try_from(from.saturating_sub(oldest)).map_or(len, |at| at.min(len));
        let start = at.max(len.saturating_sub(most));
        (
            book.entries.range(start..).cloned().collect(),
            book.next_seq,
        )
    }
}

/// A line's fields: the JSON object a service wrote, or the text as `msg`.
fn fields_of(line: &str) -> Value {
    match serde_json::from_str::<Map<String, Value>>(line) {
        Ok(object) => Value::Object(object),
        Err(_) => json!({ "msg": line }),
    }
}

/// Whether a line is a service's record of one of the lab's own polls.
fn is_poll(fields: &Value) -> bool {
    fields["method"] == "GET"
        && fields["endpoint"]
            .as_str()
            .is_some_and(|e| POLLED.contains(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_keep_their_fields_and_text_lines_become_msg() {
        let fields = fields_of(r#"{"service":"B","status":200,"request_id":"lab-1"}"#);
        assert_eq!(fields["request_id"], "lab-1");
        assert_eq!(fields["status"], 200);
        assert_eq!(fields_of("error: --nope")["msg"], "error: --nope");
        assert_eq!(fields_of("[1,2]")["msg"], "[1,2]", "only objects are lines");
    }

    #[test]
    fn the_labs_own_polls_are_left_out() {
        let book = LogBook::default();
        book.add(
            "B",
            r#"{"method":"GET","endpoint":"/metrics","status":200}"#,
        );
        book.add(
            "A1",
            r#"{"method":"GET","endpoint":"/control","status":200}"#,
        );
        book.add(
            "A1",
            r#"{"method":"POST","endpoint":"/control","status":200}"#,
        );
        book.add(
            "B",
            r#"{"method":"GET","endpoint":"/call-echo","status":200}"#,
        );
        let (lines, next) = book.since(0, 10);
        let kept: Vec<_> = lines.iter().map(|e| e.fields["endpoint"].clone()).collect();
        assert_eq!(kept, [json!("/control"), json!("/call-echo")]);
        assert_eq!(next, 2);
    }

    #[test]
    fn since_gives_the_newest_lines_after_a_number() {
        let book = LogBook::default();
        for n in 0..5 {
            book.note(&format!("line {n}"));
        }
        let (lines, next) = book.since(2, 10);
        let seqs: Vec<u64> = lines.iter().map(|e| e.seq).collect();
        assert_eq!((seqs, next), (vec![2, 3, 4], 5));
        let (lines, _) = book.since(0, 2);
        assert_eq!(lines.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4]);
        assert_eq!(lines[0].to_json()["src"], "lab");
        assert!(book.since(5, 10).0.is_empty());
    }
}
