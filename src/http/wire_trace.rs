//! The wire trace (`--trace-wire`): every message head exactly as it crossed the wire, both
//! directions, one log line per protocol line, with CR and LF shown as `\r\n` and every other
//! control byte as `\xNN`, then the first bytes of the body. It is how a learner sees real
//! HTTP/1.1 without a packet capture:
//!
//! ```text
//! wire in#3  <- GET /call-echo?msg=hi HTTP/1.1\r\n
//! wire out#4 -> GET /echo?msg=hi HTTP/1.1\r\n
//! ```
//!
//! `in#N` is a connection a client opened to us, `out#N` one we opened to an upstream;
//! `<-` is received, `->` is sent. Off by default: one relaxed atomic load per message.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// How much of each body the trace shows.
pub const TRACE_BODY_BYTES: usize = 256;

static ENABLED: AtomicBool = AtomicBool::new(false);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Turns the trace on for the whole process.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Which end of a connection we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// A client connected to us.
    Inbound,
    /// We connected to an upstream.
    Outbound,
}

/// A connection's name in the trace: `in#7`, `out#8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnId {
    side: Side,
    n: u64,
}

impl ConnId {
    pub fn next(side: Side) -> ConnId {
        ConnId {
            side,
            n: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        }
    }
}

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let side = match self.side {
            Side::Inbound => "in",
            Side::Outbound => "out",
        };
        write!(f, "{side}#{}", self.n)
    }
}

/// Which way bytes went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Received,
    Sent,
}

impl Direction {
    fn arrow(self) -> &'static str {
        match self {
            Direction::Received => "<-",
            Direction::Sent => "->",
        }
    }
}

/// Traces a message head: one line per protocol line, line endings made visible.
pub fn head(id: ConnId, dir: Direction, bytes: &[u8]) {
    if !enabled() {
        return;
    }
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        log::info!(target: "wire", "{id} {} {}", dir.arrow(), visible(line));
    }
}

/// Traces the first `TRACE_BODY_BYTES` of a body (nothing for an empty one).
pub fn body(id: ConnId, dir: Direction, bytes: &[u8]) {
    if !enabled() || bytes.is_empty() {
        return;
    }
    let shown = &bytes[..bytes.len().min(TRACE_BODY_BYTES)];
    let more = if bytes.len() > shown.len() {
        format!(" ... ({} bytes in all)", bytes.len())
    } else {
        String::new()
    };
    log::info!(target: "wire", "{id} {} [body] {}{more}", dir.arrow(), visible(shown));
}

/// Traces one chunk of a streamed body as it is written (RFC 9112 §7.1): its data's size in
/// decimal, then the chunk as it crosses the wire, size line (in hex) first, cut after
/// `TRACE_BODY_BYTES`: `in#3 -> [chunk 5 bytes] 5\r\nhello\r\n`. The last chunk is
/// `[chunk 0 bytes] 0\r\n\r\n`.
pub fn chunk(id: ConnId, dir: Direction, wire: &[u8], size: usize) {
    if !enabled() {
        return;
    }
    let shown = &wire[..wire.len().min(TRACE_BODY_BYTES)];
    let more = if wire.len() > shown.len() { " ..." } else { "" };
    let (arrow, shown) = (dir.arrow(), visible(shown));
    log::info!(target: "wire", "{id} {arrow} [chunk {size} bytes] {shown}{more}");
}

/// Traces bytes received that could not be parsed (a rejected head), as far as they got.
pub fn unparsed(id: ConnId, bytes: &[u8]) {
    if !enabled() || bytes.is_empty() {
        return;
    }
    let shown = &bytes[..bytes.len().min(TRACE_BODY_BYTES)];
    log::info!(target: "wire", "{id} <- [unparsed] {}", visible(shown));
}

/// Traces a whole serialized message (head, then body) as it is about to be written.
pub fn message(id: ConnId, dir: Direction, bytes: &[u8]) {
    if !enabled() {
        return;
    }
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(bytes.len(), |i| i + 4);
    head(id, dir, &bytes[..split]);
    body(id, dir, &bytes[split..]);
}

/// Bytes as text with CR, LF, tab and other controls written as escapes, and bytes that are
/// not UTF-8 as `\xNN`.
pub fn visible(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\r' => out.push_str("\\r"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_bytes_are_visible() {
        assert_eq!(visible(b"GET / HTTP/1.1\r\n"), "GET / HTTP/1.1\\r\\n");
        assert_eq!(visible(b"a\0b\x1bc\td"), "a\\x00b\\x1bc\\td");
        assert_eq!(
            visible(b"\xff\xfe ok \xe2\x9c\x93"),
            "\\xff\\xfe ok \u{2713}"
        );
    }

    #[test]
    fn ids_name_the_side() {
        let a = ConnId::next(Side::Inbound);
        let b = ConnId::next(Side::Outbound);
        assert!(a.to_string().starts_with("in#"));
        assert!(b.to_string().starts_with("out#"));
        assert_ne!(a.n, b.n);
    }
}
