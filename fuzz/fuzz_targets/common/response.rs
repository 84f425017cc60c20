//! The checks of fuzz target `response`: arbitrary bytes as the upstream's answer to B's client.
//!
//! The input is everything the upstream sent on one connection. Like `Client::attempt`, each
//! response is read as: response heads, skipping interim 1xx (but not 101); `response_framing`;
//! `read_body` with the client's body cap. Whatever follows a complete response is read as a
//! next one (as a pipelining client would), until the bytes end or are rejected. It is read
//! twice, from one buffer with `parse_response_head` and from a `BufferedStream` whose stream hands the
//! bytes out in random-sized reads, the way `Client::read_one_head` loops over `fill`.
//!
//! Both readings run twice: with `ClientLimits::default()`, and with tiny limits so that the
//! head, field-count and body caps are crossed by short inputs.
//!
//! Nothing may panic, and both readings must agree. Invariants: a complete head used
//! `0 < used <= len` bytes and is the same head from those bytes alone; a strict prefix of a
//! complete head is never complete (split invariance: a head cut anywhere is "read more"); a
//! response to `HEAD` never has a body; a `Content-Length` body has exactly that length; a
//! body read to the close takes every remaining byte; a chunked body decodes the same when cut
//! in two reads.
//!
//! Shared by the libFuzzer target (`fuzz_targets/response.rs`) and by `cargo test` at the
//! repository root (`tests/fuzz_corpus.rs`), which replays every file of `corpus/response/`.

use super::{End, SplitReader, check_chunked_split, cut_point};
use echo_lab::http::body::{BodyFraming, read_body, response_framing};
use echo_lab::http::conn::BufferedStream;
use echo_lab::http::error::{BodyError, ResponseHeadError};
use echo_lab::http::head::parse_response_head;
use echo_lab::http::limits::ClientLimits;
use echo_lab::http::message::ResponseHead;
use futures_lite::AsyncRead;
use futures_lite::future::block_on;

type Responses = Vec<(ResponseHead, Vec<u8>)>;

/// Runs one input through both readings and every invariant; panics on a violation.
pub fn check(data: &[u8]) {
    let split = data.first().copied().unwrap_or(0);
    check_chunked_split(data, split);
    for limits in [ClientLimits::default(), tiny_limits()] {
        let (from_buffer, end_buffer) = from_one_buffer(data, split, &limits);
        let (from_reads, end_reads) = from_split_reads(data, split, &limits);
        assert_eq!(
            from_buffer, from_reads,
            "responses differ when read in pieces"
        );
        assert_eq!(end_buffer, end_reads, "end differs when read in pieces");
    }
}

/// The client's limits scaled down, so that the head, field-count and body caps are crossed
/// by inputs of a few dozen bytes.
fn tiny_limits() -> ClientLimits {
    ClientLimits {
        max_head_bytes: 64,
        max_headers: 3,
        max_body_bytes: 16,
        ..ClientLimits::default()
    }
}

fn is_interim(head: &ResponseHead) -> bool {
    (100..200).contains(&head.status) && head.status != 101
}

fn body_end(e: &BodyError) -> End {
    match e {
        BodyError::Closed => End::Incomplete,
        BodyError::TooLarge | BodyError::BadChunk(_) => End::Rejected,
        BodyError::Io(e) => panic!("I/O error from a slice: {e}"),
    }
}

fn parse(
    buf: &[u8],
    limits: &ClientLimits,
) -> Result<Option<(ResponseHead, usize)>, ResponseHeadError> {
    parse_response_head(buf, limits.max_head_bytes, limits.max_headers)
}

/// Checks on one complete head found at the front of `buf`.
fn check_head(buf: &[u8], head: &ResponseHead, used: usize, split: u8, limits: &ClientLimits) {
    assert!(used > 0, "a complete head of zero bytes");
    assert!(used <= buf.len(), "head used {used} of {} bytes", buf.len());
    assert!(
        used <= limits.max_head_bytes,
        "head of {used} bytes passed the cap"
    );
    // Three digits; httparse also takes 000-099, which `response_framing` frames as bodyless.
    assert!(head.status <= 999, "status {}", head.status);
    match parse(&buf[..used], limits) {
        Ok(Some((again, n))) => {
            assert_eq!(
                (&again, n),
                (head, used),
                "head differs without what follows"
            )
        }
        other => panic!("head not complete on its own bytes: {other:?}"),
    }
    // Split invariance: a head cut anywhere before its end is "read more", so a client that
    // got it in two reads parses the same head as one that got it at once.
    for cut in [cut_point(split, used - 1), used / 2, used - 1] {
        let prefix = parse(&buf[..cut], limits);
        assert_eq!(prefix, Ok(None), "prefix of {cut} of a {used}-byte head");
    }
    // A response to HEAD has no body, whatever its fields say (RFC 9112 §6.3 rule 1).
    assert_eq!(response_framing(head, true), Ok(BodyFraming::Empty));
}

/// Reading 1: pure functions over one buffer.
fn from_one_buffer(data: &[u8], split: u8, limits: &ClientLimits) -> (Responses, End) {
    let mut responses = Vec::new();
    let mut rest = data.to_vec();
    loop {
        if rest.is_empty() {
            return (responses, End::Clean);
        }
        let head = loop {
            let (head, used) = match parse(&rest, limits) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => return (responses, End::Incomplete),
                Err(_) => return (responses, End::Rejected),
            };
            check_head(&rest, &head, used, split, limits);
            rest.drain(..used);
            if !is_interim(&head) {
                break head;
            }
            if rest.is_empty() {
                return (responses, End::Incomplete);
            }
        };
        let framing = match response_framing(&head, false) {
            Ok(framing) => framing,
            Err(_) => return (responses, End::Rejected),
        };
        if framing == BodyFraming::Chunked {
            check_chunked_split(&rest, split);
        }
        let mut conn = BufferedStream::new(&rest[..]);
        let body = match block_on(read_body(&mut conn, framing, limits.max_body_bytes)) {
            Ok(body) => body,
            Err(e) => return (responses, body_end(&e)),
        };
        assert!(
            body.len() <= limits.max_body_bytes,
            "body of {} bytes passed the cap",
            body.len()
        );
        match framing {
            BodyFraming::Empty => assert!(body.is_empty()),
            BodyFraming::Length(n) => assert_eq!(body.len() as u64, n),
            BodyFraming::UntilClose => {
                assert!(
                    conn.buffered().is_empty() && conn.stream.is_empty(),
                    "bytes after close"
                );
                assert_eq!(body, rest, "a body to the close is every remaining byte");
            }
            BodyFraming::Chunked => {}
        }
        let next = [conn.buffered(), conn.stream].concat();
        assert!(next.len() <= rest.len(), "the body grew the input");
        responses.push((head, body));
        rest = next;
    }
}

/// `Client::read_one_head`: parse what is buffered, else read more; the end of the stream
/// before a complete head means the response is incomplete.
fn read_head<S: AsyncRead + Unpin>(
    conn: &mut BufferedStream<S>,
    limits: &ClientLimits,
) -> Result<ResponseHead, End> {
    loop {
        match parse(conn.buffered(), limits) {
            Ok(Some((head, len))) => {
                conn.consume(len);
                return Ok(head);
            }
            Ok(None) => {}
            Err(_) => return Err(End::Rejected),
        }
        match block_on(conn.fill()) {
            Ok(0) => return Err(End::Incomplete),
            Ok(_) => {}
            Err(e) => panic!("I/O error from a slice: {e}"),
        }
    }
}

/// Reading 2: the client's loop, on a `BufferedStream` whose reads come in random sizes.
fn from_split_reads(data: &[u8], split: u8, limits: &ClientLimits) -> (Responses, End) {
    let mut responses = Vec::new();
    let mut conn = BufferedStream::new(SplitReader::new(data, split));
    loop {
        // Between responses: a clean end is a stream with nothing more in it.
        if conn.buffered().is_empty() {
            match block_on(conn.fill()) {
                Ok(0) => return (responses, End::Clean),
                Ok(_) => {}
                Err(e) => panic!("I/O error from a slice: {e}"),
            }
        }
        let head = loop {
            let head = match read_head(&mut conn, limits) {
                Ok(head) => head,
                Err(end) => return (responses, end),
            };
            if !is_interim(&head) {
                break head;
            }
        };
        let framing = match response_framing(&head, false) {
            Ok(framing) => framing,
            Err(_) => return (responses, End::Rejected),
        };
        let body = match block_on(read_body(&mut conn, framing, limits.max_body_bytes)) {
            Ok(body) => body,
            Err(e) => return (responses, body_end(&e)),
        };
        responses.push((head, body));
    }
}
