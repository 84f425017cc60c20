//! The pages' live feed, as Server-Sent Events (HTML Living Standard, §9.2): a response that
//! does not end, `Content-Type: text/event-stream`, in which each event is a `data:` line and
//! a blank line. The server sends it chunked, one chunk per event, through its streaming API
//! (`echo_lab::http::stream`); the browser's `EventSource` reads it, and opens it again if it
//! breaks. Every page has its own stream; the tick publishes each event to all of them.

use std::sync::{Mutex, MutexGuard, PoisonError};

use echo_lab::http::stream::{self, BodyStream, StreamSender};
use serde_json::Value;

/// How many events a page may fall behind before its stream is cut off: eight seconds of
/// events. A page that reads nothing for that long (a laptop asleep) reconnects when it
/// wakes, and meanwhile costs at most this many events of memory.
const BACKLOG: usize = 16;

/// The open streams, and the latest event for pages that open later.
#[derive(Debug, Default)]
pub struct Hub {
    pages: Mutex<Vec<StreamSender>>,
    /// The last event, without its log lines.
    latest: Mutex<Option<Value>>,
}

/// A lock that a panicking holder did not spoil: the data is replaced whole or not at all.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Hub {
    /// A new page's stream, which starts with `first` (if there is one yet) and then gets
    /// every event published.
    pub fn subscribe(&self, first: Option<&Value>) -> BodyStream {
        let (sender, body) = stream::channel(BACKLOG);
        if let Some(event) = first {
            // A new stream has room; a failure here would only mean the page already left.
            let _ = sender.send(frame(event));
        }
        lock(&self.pages).push(sender);
        body
    }

    /// Sends `event` to every page; forgets the pages that left or fell behind.
    pub fn publish(&self, event: &Value) {
        let frame = frame(event);
        lock(&self.pages).retain(|page| page.send(frame.clone()).is_ok());
    }

    /// Keeps `event` (the state without log lines) for pages that open later.
    pub fn set_latest(&self, event: Value) {
        *lock(&self.latest) = Some(event);
    }

    pub fn latest(&self) -> Option<Value> {
        lock(&self.latest).clone()
    }

    /// How many pages are reading now.
    #[cfg(test)]
    fn pages(&self) -> usize {
        lock(&self.pages).len()
    }
}

/// One event on the wire: `data: `, the JSON, and the blank line that ends the event. The
/// JSON is on one line (serde_json writes no line breaks outside strings, and escapes those
/// inside), as a `data:` field must be.
pub fn frame(event: &Value) -> Vec<u8> {
    format!("data: {event}\n\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_event_is_one_data_line_and_a_blank_line() {
        let event = json!({"msg": "two\nlines", "n": 1});
        assert_eq!(
            frame(&event),
            b"data: {\"msg\":\"two\\nlines\",\"n\":1}\n\n".to_vec()
        );
    }

    #[test]
    fn pages_that_left_are_forgotten() {
        let hub = Hub::default();
        let kept = hub.subscribe(Some(&json!({"first": true})));
        drop(hub.subscribe(None));
        assert_eq!(hub.pages(), 2);
        hub.publish(&json!({"n": 1}));
        assert_eq!(hub.pages(), 1, "the dropped body's page is gone");
        drop(kept);
    }
}
