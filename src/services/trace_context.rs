//! W3C Trace Context (https://www.w3.org/TR/trace-context/, Level 1): the `traceparent` and
//! `tracestate` headers that let one trace id follow a request from service to service.
//!
//! ```text
//! traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
//!              │  │                                │                └ trace-flags (bit 0: sampled)
//!              │  │                                └ parent-id: the caller's span, 16 hex digits
//!              │  └ trace-id: the whole trace, 32 hex digits
//!              └ version
//! ```
//!
//! A service that receives a valid `traceparent` joins its trace: it keeps the trace id and
//! makes a span id of its own, which it sends on as the `parent-id` of the calls it makes.
//! When the header is absent or invalid, the service starts a new trace (§3.2.2: "the vendor
//! MUST create a new trace-id"). `tracestate` is vendors' data, passed on unchanged, but only
//! with a valid `traceparent` (§3.3: without one, it MUST be discarded).

use std::fmt;

use crate::random;

/// Length of a version-00 `traceparent`: 2 + 1 + 32 + 1 + 16 + 1 + 2.
const TRACEPARENT_LEN: usize = 55;

/// The version we write, and whose rules we know.
const VERSION_00: &str = "00";

/// Version `ff` is forbidden (§3.2.2.1), so that it can never be mistaken for a real one.
const VERSION_INVALID: &str = "ff";

/// Trace flags for a trace we start: sampled (bit 0). Every request is recorded, in the log line.
const FLAGS_NEW_TRACE: u8 = 0x01;

/// The longest `tracestate` we pass on. The spec asks for at least 512 characters to be
/// propagated (§3.3.1.5); past that a vendor may drop it, and a header that grows without bound
/// is a way to make every hop carry someone's payload.
const MAX_TRACESTATE_BYTES: usize = 512;

/// A trace id: 16 bytes, never all zero, written as 32 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceId(pub u128);

/// A span id (`parent-id` on the wire): 8 bytes, never all zero, 16 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanId(pub u64);

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A parsed `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    /// The caller's span.
    pub parent_id: SpanId,
    pub flags: u8,
}

/// Why a `traceparent` was not accepted. Any of these starts a new trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceParentError {
    /// Not 55 characters (version 00), or shorter than 55 (a later version).
    Length,
    /// A `-` is missing where one belongs.
    Separator,
    /// A field is not lowercase hex digits.
    NotHex,
    /// Version `ff`.
    ForbiddenVersion,
    /// The trace id is all zeros.
    ZeroTraceId,
    /// The parent id is all zeros.
    ZeroParentId,
}

impl fmt::Display for TraceParentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TraceParentError::Length => "wrong length",
            TraceParentError::Separator => "a '-' is missing",
            TraceParentError::NotHex => "a field is not lowercase hex",
            TraceParentError::ForbiddenVersion => "version ff is forbidden",
            TraceParentError::ZeroTraceId => "the trace id is all zeros",
            TraceParentError::ZeroParentId => "the parent id is all zeros",
        })
    }
}

impl std::str::FromStr for TraceParent {
    type Err = TraceParentError;

    /// The rules of §3.2.2 and §3.2.4: a version-00 value is exactly 55 characters; a later
    /// version may be longer, but its first 55 characters follow version 00's layout and
    /// what comes after starts with `-`.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let (Some(start), rest) = (value.get(..TRACEPARENT_LEN), value.get(TRACEPARENT_LEN..))
        else {
            return Err(TraceParentError::Length);
        };
        // Only ASCII from here on, so that slicing by byte position cannot split a character.
        if !start.is_ascii() {
            return Err(TraceParentError::NotHex);
        }
        let version = &start[..2];
        let trailing = rest.unwrap_or_default();
        if !is_lower_hex(version) {
            return Err(TraceParentError::NotHex);
        }
        if version == VERSION_INVALID {
            return Err(TraceParentError::ForbiddenVersion);
        }
        if (version == VERSION_00 && !trailing.is_empty())
            || (version != VERSION_00 && !trailing.is_empty() && !trailing.starts_with('-'))
        {
            return Err(TraceParentError::Length);
        }
        let mut parts = start.split('-');
        let (Some(_), Some(trace_id), Some(parent_id), Some(flags), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(TraceParentError::Separator);
        };
        if trace_id.len() != 32 || parent_id.len() != 16 || flags.len() != 2 {
            return Err(TraceParentError::Separator);
        }
        let trace_id = hex_u128(trace_id)?;
        let parent_id = hex_u128(parent_id)? as u64;
        let flags = hex_u128(flags)? as u8;
        if trace_id == 0 {
            return Err(TraceParentError::ZeroTraceId);
        }
        if parent_id == 0 {
            return Err(TraceParentError::ZeroParentId);
        }
        Ok(TraceParent {
            trace_id: TraceId(trace_id),
            parent_id: SpanId(parent_id),
            flags,
        })
    }
}

/// HEXDIGLC only: the spec forbids uppercase (§3.2.2.2), and `u128::from_str_radix` would
/// accept it, and a leading `+`.
fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn hex_u128(s: &str) -> Result<u128, TraceParentError> {
    if !is_lower_hex(s) {
        return Err(TraceParentError::NotHex);
    }
    u128::from_str_radix(s, 16).map_err(|_| TraceParentError::NotHex)
}

/// The trace context of one request as this service serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: TraceId,
    /// Our own span: what we send on as `parent-id`.
    pub span_id: SpanId,
    pub flags: u8,
    /// The caller's `tracestate`, to pass on.
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// Joins the caller's trace when `traceparent` is valid, starts a new one otherwise.
    pub fn from_headers(traceparent: Option<&str>, tracestate: Option<&str>) -> TraceContext {
        match traceparent.map(str::parse::<TraceParent>) {
            Some(Ok(parent)) => TraceContext {
                trace_id: parent.trace_id,
                span_id: new_span_id(),
                flags: parent.flags,
                tracestate: tracestate
                    .filter(|s| !s.is_empty() && s.len() <= MAX_TRACESTATE_BYTES)
                    .map(str::to_owned),
            },
            _ => TraceContext::new_trace(),
        }
    }

    /// A new trace, with this request as its first span.
    pub fn new_trace() -> TraceContext {
        let trace_id = (u128::from(random::next_u64()) << 64) | u128::from(random::next_u64());
        TraceContext {
            // All zeros is invalid; the chance is 2^-128, but it costs one comparison.
            trace_id: TraceId(trace_id.max(1)),
            span_id: new_span_id(),
            flags: FLAGS_NEW_TRACE,
            tracestate: None,
        }
    }

    /// The `traceparent` for a call this request makes: same trace, our span as the parent.
    /// Always version 00, the one we implement, whatever version we received (§3.2.4).
    pub fn traceparent(&self) -> String {
        format!(
            "{VERSION_00}-{}-{}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

fn new_span_id() -> SpanId {
    SpanId(random::next_u64().max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn parse(value: &str) -> Result<TraceParent, TraceParentError> {
        value.parse()
    }

    #[test]
    fn a_valid_traceparent_parses() {
        let parsed = parse(VALID).expect("valid");
        assert_eq!(
            parsed.trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(parsed.parent_id.to_string(), "00f067aa0ba902b7");
        assert_eq!(parsed.flags, 1);
    }

    #[test]
    fn wrong_lengths_are_invalid() {
        assert_eq!(parse(""), Err(TraceParentError::Length));
        assert_eq!(parse(&VALID[..54]), Err(TraceParentError::Length));
        assert_eq!(parse(&format!("{VALID}-")), Err(TraceParentError::Length));
        assert_eq!(parse(&format!("{VALID}x")), Err(TraceParentError::Length));
    }

    #[test]
    fn uppercase_and_non_hex_are_invalid() {
        let upper = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01";
        assert_eq!(parse(upper), Err(TraceParentError::NotHex));
        let not_hex = "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01";
        assert_eq!(parse(not_hex), Err(TraceParentError::NotHex));
        let non_ascii = "00-4bf92f3577b34da6a3ce929d0e0e47é-00f067aa0ba902b7-01";
        assert_eq!(parse(non_ascii), Err(TraceParentError::NotHex));
        let plus = "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(parse(plus), Err(TraceParentError::NotHex));
        let flags = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x";
        assert_eq!(parse(flags), Err(TraceParentError::NotHex));
    }

    #[test]
    fn separators_must_be_where_they_belong() {
        let shifted = "00-4bf92f3577b34da6a3ce929d0e0e47360-0f067aa0ba902b7-01";
        assert_eq!(parse(shifted), Err(TraceParentError::Separator));
        let underscores = "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01";
        assert_eq!(parse(underscores), Err(TraceParentError::Separator));
    }

    #[test]
    fn all_zero_ids_are_invalid() {
        let zero_trace = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
        assert_eq!(parse(zero_trace), Err(TraceParentError::ZeroTraceId));
        let zero_parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01";
        assert_eq!(parse(zero_parent), Err(TraceParentError::ZeroParentId));
    }

    #[test]
    fn version_ff_is_invalid_and_later_versions_are_read_by_version_00_rules() {
        let ff = "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(parse(ff), Err(TraceParentError::ForbiddenVersion));
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(parse(later).is_ok());
        let later_longer = format!("{later}-what-comes-next");
        assert!(parse(&later_longer).is_ok());
        assert_eq!(
            parse(&format!("{later}what")),
            Err(TraceParentError::Length)
        );
    }

    #[test]
    fn a_valid_parent_is_joined_with_a_new_span() {
        let context = TraceContext::from_headers(Some(VALID), Some("congo=t61rcWkgMzE"));
        assert_eq!(
            context.trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_ne!(context.span_id, SpanId(0x00f0_67aa_0ba9_02b7));
        assert_eq!(context.tracestate.as_deref(), Some("congo=t61rcWkgMzE"));
        let sent = context.traceparent();
        assert!(
            sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{sent}"
        );
        assert!(sent.ends_with("-01"), "{sent}");
        assert_eq!(parse(&sent).map(|p| p.parent_id), Ok(context.span_id));
    }

    #[test]
    fn an_absent_or_invalid_parent_starts_a_new_trace_and_drops_tracestate() {
        let invalid = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
        for header in [None, Some(invalid), Some("garbage")] {
            let context = TraceContext::from_headers(header, Some("congo=t61rcWkgMzE"));
            assert_ne!(context.trace_id, TraceId(0));
            assert_eq!(context.tracestate, None);
            assert!(parse(&context.traceparent()).is_ok());
        }
        let (a, b) = (TraceContext::new_trace(), TraceContext::new_trace());
        assert_ne!(a.trace_id, b.trace_id);
    }
}
