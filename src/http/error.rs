//! Every failure of the HTTP layer, and the status a server answers each with (RFC 9110 §15.5
//! and §15.6, RFC 9112 §2.2, §6.1 and §6.3). The reading code of both sides shares them, so
//! they live here, below it: `head`, `chunked` and `body` all import this file, and it imports
//! none of them.
//!
//! * `FramingError`: header fields that make a body's end unknowable (RFC 9112 §6.3);
//! * `BodyError`: a body that could not be read (RFC 9112 §6, §7.1);
//! * `ResponseHeadError`: a response head the client could not read (RFC 9112 §4);
//! * `RequestError`: everything a server can meet while reading a request, with `status()`.
//!
//! After a `RequestError` the connection is closed: once framing is in doubt we do not know
//! where the next request would start, and guessing is how request smuggling happens.

use std::fmt;
use std::io;

/// Header fields that make the framing unsafe or impossible to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingError {
    /// Both `Content-Length` and `Transfer-Encoding`: a classic smuggling vector.
    LengthAndTransferEncoding,
    /// Two `Content-Length` values that differ.
    ConflictingLengths,
    /// A `Content-Length` that is not a plain decimal number.
    BadLength,
    /// A `Transfer-Encoding` whose final coding is not `chunked`: the length of a request
    /// cannot be known (RFC 9112 §6.3, rule 4), and a response runs until close.
    UnsupportedTransferEncoding,
    /// A `Transfer-Encoding` that ends in `chunked` but lists other codings too, or gives
    /// `chunked` a parameter (`gzip, chunked`, `chunked;foo=bar`): well framed, but a coding
    /// we do not implement (RFC 9112 §6.1: a server answers `501`).
    UnknownTransferCoding,
    /// A `Transfer-Encoding` that lists `chunked` more than once (`chunked, chunked`, or two
    /// fields that each say `chunked`). RFC 9112 §6.1: a sender MUST NOT apply chunked more
    /// than once, so this is broken framing (400), not a coding we lack (501).
    ChunkedMoreThanOnce,
    /// A `Transfer-Encoding` value that is not a list of transfer codings (RFC 9112 §6.1).
    MalformedTransferEncoding,
    /// A `Transfer-Encoding` in an HTTP/1.0 request, which RFC 9112 §6.1 calls faulty framing.
    TransferEncodingInHttp10,
}

impl fmt::Display for FramingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FramingError::LengthAndTransferEncoding => "both Content-Length and Transfer-Encoding",
            FramingError::ConflictingLengths => "conflicting Content-Length values",
            FramingError::BadLength => "invalid Content-Length",
            FramingError::UnsupportedTransferEncoding => {
                "Transfer-Encoding whose final coding is not chunked"
            }
            FramingError::UnknownTransferCoding => {
                "Transfer-Encoding with a coding other than a single chunked"
            }
            FramingError::ChunkedMoreThanOnce => "Transfer-Encoding applies chunked more than once",
            FramingError::MalformedTransferEncoding => "malformed Transfer-Encoding",
            FramingError::TransferEncodingInHttp10 => "Transfer-Encoding in an HTTP/1.0 request",
        })
    }
}

impl std::error::Error for FramingError {}

/// What can go wrong while reading a body.
#[derive(Debug)]
pub enum BodyError {
    /// The body is larger than the cap we read with.
    TooLarge,
    /// The chunked coding is broken; the text says where.
    BadChunk(&'static str),
    /// The connection ended before the body was complete.
    Closed,
    /// The socket failed.
    Io(io::Error),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::TooLarge => f.write_str("body too large"),
            BodyError::BadChunk(what) => write!(f, "bad chunked body: {what}"),
            BodyError::Closed => f.write_str("connection closed before the body was complete"),
            BodyError::Io(e) => write!(f, "socket error while reading the body: {e}"),
        }
    }
}

impl std::error::Error for BodyError {}

impl From<io::Error> for BodyError {
    fn from(e: io::Error) -> Self {
        BodyError::Io(e)
    }
}

/// What can go wrong reading a response head (the client side).
#[derive(Debug, PartialEq, Eq)]
pub enum ResponseHeadError {
    /// Bytes that are not an HTTP/1.x status line and header fields.
    Malformed(&'static str),
    /// The head is larger than the client's head limit.
    TooLarge,
}

/// A request that could not be read.
#[derive(Debug)]
pub enum RequestError {
    /// The peer closed the connection in the middle of a request. Nobody to answer.
    Closed,
    /// The socket failed (reset, broken pipe). Nobody to answer.
    Io(io::Error),
    /// The request did not arrive within the request timeout (slow or stalled client).
    Timeout,
    /// The request head is larger than the head limit.
    HeadTooLarge,
    /// The request-target is longer than the target limit.
    UriTooLong,
    /// The method is longer than any method (`limits::MAX_METHOD_BYTES`): bad syntax, not a
    /// long target, so 400 rather than 414.
    MethodTooLong,
    /// More header fields than the header limit.
    TooManyHeaders,
    /// The head is not HTTP/1.1 syntax; the text says what httparse (or we) found wrong.
    Malformed(&'static str),
    /// The head is well formed but its message framing is unsafe or contradictory.
    Framing(FramingError),
    /// The body is not valid chunked coding.
    BadChunk(&'static str),
    /// The body is larger than the body limit.
    BodyTooLarge,
    /// A version we do not speak (only HTTP/1.0 and HTTP/1.1 are served).
    UnsupportedVersion,
    /// An `Expect` we cannot meet (only `100-continue` exists, RFC 9110 §10.1.1).
    UnsupportedExpectation,
}

impl RequestError {
    /// The status to answer with, or `None` when the peer is gone and no answer is possible.
    pub fn status(&self) -> Option<u16> {
        match self {
            RequestError::Closed | RequestError::Io(_) => None,
            RequestError::Timeout => Some(408),
            RequestError::HeadTooLarge | RequestError::TooManyHeaders => Some(431),
            RequestError::UriTooLong => Some(414),
            // RFC 9112 §6.1: a transfer coding the server does not understand SHOULD be 501.
            RequestError::Framing(FramingError::UnknownTransferCoding) => Some(501),
            RequestError::Malformed(_)
            | RequestError::MethodTooLong
            | RequestError::Framing(_)
            | RequestError::BadChunk(_) => Some(400),
            RequestError::BodyTooLarge => Some(413),
            RequestError::UnsupportedVersion => Some(505),
            RequestError::UnsupportedExpectation => Some(417),
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::Closed => f.write_str("connection closed in the middle of a request"),
            RequestError::Io(e) => write!(f, "socket error: {e}"),
            RequestError::Timeout => f.write_str("request not received in time"),
            RequestError::HeadTooLarge => f.write_str("request head too large"),
            RequestError::UriTooLong => f.write_str("request-target too long"),
            RequestError::MethodTooLong => f.write_str("method longer than any method"),
            RequestError::TooManyHeaders => f.write_str("too many header fields"),
            RequestError::Malformed(what) => write!(f, "malformed request: {what}"),
            RequestError::Framing(e) => write!(f, "bad message framing: {e}"),
            RequestError::BadChunk(what) => write!(f, "bad chunked body: {what}"),
            RequestError::BodyTooLarge => f.write_str("request body too large"),
            RequestError::UnsupportedVersion => f.write_str("HTTP version not supported"),
            RequestError::UnsupportedExpectation => f.write_str("unsupported Expect"),
        }
    }
}

impl std::error::Error for RequestError {}

impl From<io::Error> for RequestError {
    fn from(e: io::Error) -> Self {
        RequestError::Io(e)
    }
}

impl From<FramingError> for RequestError {
    fn from(e: FramingError) -> Self {
        RequestError::Framing(e)
    }
}

impl From<BodyError> for RequestError {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::TooLarge => RequestError::BodyTooLarge,
            BodyError::BadChunk(what) => RequestError::BadChunk(what),
            BodyError::Closed => RequestError::Closed,
            BodyError::Io(e) => RequestError::Io(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_transfer_coding_is_501_and_a_bad_one_400() {
        let status = |e: FramingError| RequestError::Framing(e).status();
        assert_eq!(status(FramingError::UnknownTransferCoding), Some(501));
        assert_eq!(status(FramingError::UnsupportedTransferEncoding), Some(400));
        assert_eq!(status(FramingError::MalformedTransferEncoding), Some(400));
        assert_eq!(status(FramingError::LengthAndTransferEncoding), Some(400));
        assert_eq!(status(FramingError::ChunkedMoreThanOnce), Some(400));
    }

    #[test]
    fn a_framing_error_says_what_is_wrong() {
        assert_eq!(
            RequestError::Framing(FramingError::ChunkedMoreThanOnce).to_string(),
            "bad message framing: Transfer-Encoding applies chunked more than once"
        );
        assert_eq!(
            FramingError::UnknownTransferCoding.to_string(),
            "Transfer-Encoding with a coding other than a single chunked"
        );
    }
}
