//! The checks of fuzz target `request`: arbitrary bytes through the server's request pipeline.
//!
//! The input is what a client sent on one connection. It is read twice:
//!
//! 1. From one buffer, the way the pure functions are meant to be chained: `parse_request_head`,
//!    `request_framing`, `read_body` over a `BufferedStream` holding the rest, then the next pipelined
//!    request, until the bytes end, stop in the middle of a message, or are rejected.
//! 2. As the server reads a socket: `read_request_head` + `request_framing` + `read_body` on
//!    one `BufferedStream` whose stream hands the bytes out in reads of random sizes.
//!
//! Both readings run twice: with `Limits::default()`, and with tiny limits so that the head,
//! target, field-count and body caps are crossed by short inputs.
//!
//! Nothing may panic, and both readings must yield the same requests and end the same way
//! (the exact rejection may differ: a head still partial at the head cap is rejected before
//! its later bytes are seen). On the way: a complete head used `0 < used <= len` bytes and is
//! complete, and the same, from those bytes alone; a prefix of it is never complete; a
//! `Content-Length` body has exactly that length; a chunked body decodes the same when cut in
//! two reads (the first input byte picks the cut point and the read sizes).
//!
//! Shared by the libFuzzer target (`fuzz_targets/request.rs`) and by `cargo test` at the
//! repository root (`tests/fuzz_corpus.rs`), which replays every file of `corpus/request/`.

use super::{End, SplitReader, check_chunked_split, cut_point};
use echo_lab::http::body::{BodyFraming, read_body, request_framing};
use echo_lab::http::conn::BufferedStream;
use echo_lab::http::error::{BodyError, RequestError};
use echo_lab::http::head::{parse_request_head, read_request_head};
use echo_lab::http::limits::Limits;
use echo_lab::http::message::RequestHead;
use futures_lite::future::block_on;

type Requests = Vec<(RequestHead, Vec<u8>)>;

/// Runs one input through both readings and every invariant; panics on a violation.
pub fn check(data: &[u8]) {
    let split = data.first().copied().unwrap_or(0);
    check_chunked_split(data, split);
    for limits in [Limits::default(), tiny_limits()] {
        let (from_buffer, end_buffer) = from_one_buffer(data, split, &limits);
        let (from_reads, end_reads) = from_split_reads(data, split, &limits);
        assert_eq!(
            from_buffer, from_reads,
            "requests differ when read in pieces"
        );
        assert_eq!(end_buffer, end_reads, "end differs when read in pieces");
    }
}

/// The server's limits scaled down, so that every "too large" path is reached by inputs of a
/// few dozen bytes (libFuzzer grows its inputs slowly; the real caps need 8 KiB and more).
fn tiny_limits() -> Limits {
    Limits {
        max_head_bytes: 64,
        max_target_bytes: 16,
        max_headers: 3,
        max_body_bytes: 16,
        ..Limits::default()
    }
}

fn body_end(e: &BodyError) -> End {
    match e {
        BodyError::Closed => End::Incomplete,
        BodyError::TooLarge | BodyError::BadChunk(_) => End::Rejected,
        BodyError::Io(e) => panic!("I/O error from a slice: {e}"),
    }
}

fn request_end(e: &RequestError) -> End {
    match e {
        RequestError::Closed => End::Incomplete,
        RequestError::Io(e) => panic!("I/O error from a slice: {e}"),
        RequestError::Timeout => panic!("timeout without a timer"),
        _ => {
            assert!(e.status().is_some(), "a rejection without a status: {e}");
            End::Rejected
        }
    }
}

/// Checks on one complete head found at the front of `buf`.
fn check_head(buf: &[u8], head: &RequestHead, used: usize, split: u8, limits: &Limits) {
    assert!(used > 0, "a complete head of zero bytes");
    assert!(used <= buf.len(), "head used {used} of {} bytes", buf.len());
    assert!(
        used <= limits.max_head_bytes,
        "head of {used} bytes passed the cap"
    );
    // Completeness depends on the head's own bytes only.
    match parse_request_head(&buf[..used], limits) {
        Ok(Some((again, n))) => {
            assert_eq!(
                (&again, n),
                (head, used),
                "head differs without what follows"
            )
        }
        other => panic!("head not complete on its own bytes: {other:?}"),
    }
    // A prefix of a complete head is never itself complete (it could be a different head).
    for cut in [cut_point(split, used - 1), used - 1] {
        if let Ok(Some((other, n))) = parse_request_head(&buf[..cut], limits) {
            panic!("prefix of {cut} bytes is a complete head ({n} bytes): {other:?}");
        }
    }
}

/// Reading 1: pure functions over one buffer.
fn from_one_buffer(data: &[u8], split: u8, limits: &Limits) -> (Requests, End) {
    let mut requests = Vec::new();
    let mut rest = data.to_vec();
    loop {
        if rest.is_empty() {
            return (requests, End::Clean);
        }
        let (head, used) = match parse_request_head(&rest, limits) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return (requests, End::Incomplete),
            Err(e) => return (requests, request_end(&e)),
        };
        check_head(&rest, &head, used, split, limits);
        let framing = match request_framing(&head) {
            Ok(framing) => framing,
            Err(_) => return (requests, End::Rejected),
        };
        assert_ne!(
            framing,
            BodyFraming::UntilClose,
            "a request body never runs to close"
        );
        assert_ne!(
            framing,
            BodyFraming::Length(0),
            "Content-Length: 0 is no body"
        );
        let after_head = &rest[used..];
        if framing == BodyFraming::Chunked {
            check_chunked_split(after_head, split);
        }
        let mut conn = BufferedStream::new(after_head);
        let body = match block_on(read_body(&mut conn, framing, limits.max_body_bytes)) {
            Ok(body) => body,
            Err(e) => return (requests, body_end(&e)),
        };
        assert!(
            body.len() <= limits.max_body_bytes,
            "body of {} bytes passed the cap",
            body.len()
        );
        match framing {
            BodyFraming::Empty => assert!(body.is_empty()),
            BodyFraming::Length(n) => assert_eq!(body.len() as u64, n),
            BodyFraming::Chunked | BodyFraming::UntilClose => {}
        }
        let next = [conn.buffered(), conn.stream].concat();
        assert!(next.len() <= after_head.len(), "the body grew the input");
        requests.push((head, body));
        rest = next;
    }
}

/// Reading 2: the server's loop, on a `BufferedStream` whose reads come in random sizes.
fn from_split_reads(data: &[u8], split: u8, limits: &Limits) -> (Requests, End) {
    let mut requests = Vec::new();
    let mut conn = BufferedStream::new(SplitReader::new(data, split));
    loop {
        let head = match block_on(read_request_head(&mut conn, limits)) {
            Ok(Some(head)) => head,
            Ok(None) => return (requests, End::Clean),
            Err(e) => return (requests, request_end(&e)),
        };
        let framing = match request_framing(&head) {
            Ok(framing) => framing,
            Err(_) => return (requests, End::Rejected),
        };
        let body = match block_on(read_body(&mut conn, framing, limits.max_body_bytes)) {
            Ok(body) => body,
            Err(e) => return (requests, body_end(&e)),
        };
        requests.push((head, body));
    }
}
