//! Message framing: where a body ends (RFC 9112 §6). Three answers are possible — a
//! `Content-Length`, the `chunked` coding, or "when the connection closes" — and getting it
//! wrong in either direction desynchronises the connection. The same code reads request
//! bodies on the server and response bodies in B's client.

use futures_lite::AsyncRead;

use super::chunked::ChunkedDecoder;
use super::conn::BufferedStream;
use super::error::{BodyError, FramingError};
use super::message::{Headers, RequestHead, ResponseHead, Version, is_quoted_string, is_token};
use super::wire_trace::{self, Direction};

/// How the body of one message is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body at all.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// The chunked transfer coding (RFC 9112 §7.1).
    Chunked,
    /// Everything until the peer closes the connection (responses only).
    UntilClose,
}

/// The framing of a request body, following RFC 9112 §6.3 in order (rules 1, 2 and 8 are
/// about responses; for a request, "neither field" means no body at all):
///
/// 3. `Transfer-Encoding` together with `Content-Length`: reject (400), never guess.
/// 4. `Transfer-Encoding` whose final coding is `chunked`: the chunked coding. We decode no
///    other coding: one listed before `chunked`, or a parameter on it, is a coding we do not
///    implement (501, §6.1). A final coding other than `chunked` leaves the length unknown:
///    §6.3 says 400, a MUST that wins over §6.1's SHOULD 501. `chunked` listed twice breaks
///    §6.1's "MUST NOT apply chunked more than once": 400, since the framing itself is wrong.
///    A value that is not a list of codings at all is 400.
/// 5. `Content-Length` values that disagree, or are not digits: reject (400).
/// 6. A valid `Content-Length`: that many bytes.
/// 7. Neither: the request has no body.
///
/// Before all of these, §6.1: `Transfer-Encoding` in an HTTP/1.0 message is faulty framing.
/// A 1.0 intermediary may not know the field and read the chunked body as the next request,
/// so we reject it (400) rather than decode it.
pub fn request_framing(head: &RequestHead) -> Result<BodyFraming, FramingError> {
    let length = content_length(&head.headers)?;
    let has_te = head.headers.get("transfer-encoding").is_some();
    if has_te && head.version == Version::Http10 {
        return Err(FramingError::TransferEncodingInHttp10);
    }
    match (has_te, length) {
        (true, Some(_)) => Err(FramingError::LengthAndTransferEncoding),
        (true, None) => match transfer_codings(&head.headers) {
            Codings::OnlyChunked => Ok(BodyFraming::Chunked),
            Codings::OthersThenChunked => Err(FramingError::UnknownTransferCoding),
            Codings::NotFinalChunked => Err(FramingError::UnsupportedTransferEncoding),
            Codings::ChunkedMoreThanOnce => Err(FramingError::ChunkedMoreThanOnce),
            Codings::Malformed => Err(FramingError::MalformedTransferEncoding),
        },
        (false, Some(0) | None) => Ok(BodyFraming::Empty),
        (false, Some(n)) => Ok(BodyFraming::Length(n)),
    }
}

/// The framing of a response body, RFC 9112 §6.3 in order:
///
/// 1. A response to `HEAD`, and any 1xx, 204 or 304: no body, whatever the fields say.
/// 2. (A 2xx to `CONNECT` — we never send one.)
/// 3. `Transfer-Encoding` with `Content-Length`: an error, not a guess (§6.3 warns it may
///    be smuggling or response splitting).
/// 4. `Transfer-Encoding` with a final `chunked`: chunked (we decode no other coding, so
///    one listed before it is an error, and so is `chunked` listed twice, which §6.1
///    forbids); one without a final `chunked`: the body runs until the connection closes
///    (and is still coded: see `ClientError::CodedBody`).
/// 5. `Content-Length` values that disagree or are not digits: an error.
/// 6. A valid `Content-Length`: that many bytes.
/// 7. (Neither, in a request: no body. A response is never in this case.)
/// 8. Neither: the body runs until the connection closes.
pub fn response_framing(
    head: &ResponseHead,
    request_was_head: bool,
) -> Result<BodyFraming, FramingError> {
    if request_was_head || head.status < 200 || head.status == 204 || head.status == 304 {
        return Ok(BodyFraming::Empty);
    }
    let length = content_length(&head.headers)?;
    let has_te = head.headers.get("transfer-encoding").is_some();
    match (has_te, length) {
        (true, Some(_)) => Err(FramingError::LengthAndTransferEncoding),
        (true, None) => match transfer_codings(&head.headers) {
            Codings::OnlyChunked => Ok(BodyFraming::Chunked),
            Codings::OthersThenChunked => Err(FramingError::UnknownTransferCoding),
            Codings::NotFinalChunked => Ok(BodyFraming::UntilClose),
            Codings::ChunkedMoreThanOnce => Err(FramingError::ChunkedMoreThanOnce),
            Codings::Malformed => Err(FramingError::MalformedTransferEncoding),
        },
        (false, Some(n)) => Ok(BodyFraming::Length(n)),
        (false, None) => Ok(BodyFraming::UntilClose),
    }
}

/// What the `Transfer-Encoding` fields of a message list, all fields taken together in order
/// (RFC 9110 §5.3: several field lines are one comma-separated list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codings {
    /// Exactly one coding, `chunked`, without parameters: the only one we decode.
    OnlyChunked,
    /// A final `chunked`, but with other codings before it or a parameter on it.
    OthersThenChunked,
    /// The final coding is not `chunked`.
    NotFinalChunked,
    /// `chunked` is listed more than once, wherever the copies are (RFC 9112 §6.1 forbids
    /// applying it twice).
    ChunkedMoreThanOnce,
    /// Not a list of `transfer-coding`s: empty, or not tokens.
    Malformed,
}

/// Sorts the `Transfer-Encoding` list. Its grammar (RFC 9112 §6.1, RFC 9110 §5.6):
///
/// ```text
/// Transfer-Encoding  = #transfer-coding
/// transfer-coding    = token *( OWS ";" OWS transfer-parameter )
/// transfer-parameter = token BWS "=" BWS ( token / quoted-string )
/// ```
///
/// Elements are split at commas; a quoted-string with a comma in it then reads as malformed,
/// which is refused all the same. Empty elements are skipped, as §5.6.1 asks.
fn transfer_codings(headers: &Headers) -> Codings {
    let mut count = 0;
    let mut chunked_count = 0;
    let mut last_plain_chunked = false;
    let mut last_chunked = false;
    for coding in headers.tokens("transfer-encoding") {
        let mut parts = coding.split(|&b| b == b';');
        let name = parts.next().unwrap_or_default().trim_ascii();
        if !is_token(name) || !parts.clone().all(is_transfer_parameter) {
            return Codings::Malformed;
        }
        count += 1;
        last_chunked = name.eq_ignore_ascii_case(b"chunked");
        last_plain_chunked = last_chunked && parts.next().is_none();
        chunked_count += usize::from(last_chunked);
    }
    match (count, last_chunked) {
        (0, _) => Codings::Malformed,
        _ if chunked_count > 1 => Codings::ChunkedMoreThanOnce,
        (1, true) if last_plain_chunked => Codings::OnlyChunked,
        (_, true) => Codings::OthersThenChunked,
        (_, false) => Codings::NotFinalChunked,
    }
}

/// `OWS token BWS "=" BWS ( token / quoted-string ) OWS`.
fn is_transfer_parameter(param: &[u8]) -> bool {
    let Some(eq) = param.iter().position(|&b| b == b'=') else {
        return false;
    };
    let (name, value) = (param[..eq].trim_ascii(), param[eq + 1..].trim_ascii());
    is_token(name) && (is_token(value) || is_quoted_string(value))
}

/// The `Content-Length`, if any (RFC 9110 §8.6). Every value of every such field must be the
/// same plain decimal number; `42, 42` is allowed, `42, 43` and `+42` are not.
fn content_length(headers: &Headers) -> Result<Option<u64>, FramingError> {
    let mut found: Option<u64> = None;
    for field in headers.get_all("content-length") {
        for value in field.split(|&b| b == b',') {
            let n = parse_decimal(value.trim_ascii()).ok_or(FramingError::BadLength)?;
            match found {
                Some(prev) if prev != n => return Err(FramingError::ConflictingLengths),
                _ => found = Some(n),
            }
        }
    }
    Ok(found)
}

/// `1*DIGIT`, parsed by hand: no sign, no spaces, no empty string, no overflow.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
    })
}

/// Reads one whole body with the given framing, refusing to hold more than `max_bytes`.
/// Bytes after the body stay in the buffer for the next message.
pub async fn read_body<S: AsyncRead + Unpin>(
    conn: &mut BufferedStream<S>,
    framing: BodyFraming,
    max_bytes: usize,
) -> Result<Vec<u8>, BodyError> {
    let body = match framing {
        BodyFraming::Empty => Vec::new(),
        BodyFraming::Length(n) => read_length(conn, n, max_bytes).await?,
        BodyFraming::Chunked => read_chunked(conn, max_bytes).await?,
        BodyFraming::UntilClose => read_until_close(conn, max_bytes).await?,
    };
    wire_trace::body(conn.id, Direction::Received, &body);
    Ok(body)
}

async fn read_length<S: AsyncRead + Unpin>(
    conn: &mut BufferedStream<S>,
    len: u64,
    max_bytes: usize,
) -> Result<Vec<u8>, BodyError> {
    // Refuse before reading a byte: the length is announced up front.
    let len = usize::try_from(len).map_err(|_| BodyError::TooLarge)?;
    if len > max_bytes {
        return Err(BodyError::TooLarge);
    }
    while conn.buffered().len() < len {
        if conn.fill().await? == 0 {
            return Err(BodyError::Closed);
        }
    }
    Ok(conn.take(len))
}

async fn read_chunked<S: AsyncRead + Unpin>(
    conn: &mut BufferedStream<S>,
    max_bytes: usize,
) -> Result<Vec<u8>, BodyError> {
    let mut decoder = ChunkedDecoder::new(max_bytes);
    let mut body = Vec::new();
    loop {
        let used = decoder.decode(conn.buffered(), &mut body)?;
        conn.consume(used);
        if decoder.is_done() {
            return Ok(body);
        }
        if conn.fill().await? == 0 {
            return Err(BodyError::Closed);
        }
    }
}

async fn read_until_close<S: AsyncRead + Unpin>(
    conn: &mut BufferedStream<S>,
    max_bytes: usize,
) -> Result<Vec<u8>, BodyError> {
    // The cap is checked before every read, not only after one: bytes that arrived with the
    // head are already buffered, and the stream may have nothing more to add.
    loop {
        if conn.buffered().len() > max_bytes {
            return Err(BodyError::TooLarge);
        }
        if conn.fill().await? == 0 {
            break;
        }
    }
    let len = conn.buffered().len();
    Ok(conn.take(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_with(fields: &[(&str, &str)]) -> RequestHead {
        let mut headers = Headers::new();
        for (n, v) in fields {
            headers.push(n, v.as_bytes());
        }
        RequestHead {
            method: "GET".into(),
            target: "/".into(),
            version: Version::Http11,
            headers,
        }
    }

    fn response_with(status: u16, fields: &[(&str, &str)]) -> ResponseHead {
        ResponseHead {
            version: Version::Http11,
            status,
            reason: "X".into(),
            headers: request_with(fields).headers,
        }
    }

    #[test]
    fn request_framing_rules() {
        assert_eq!(request_framing(&request_with(&[])), Ok(BodyFraming::Empty));
        assert_eq!(
            request_framing(&request_with(&[("Content-Length", "5")])),
            Ok(BodyFraming::Length(5))
        );
        assert_eq!(
            request_framing(&request_with(&[("Content-Length", "5, 5")])),
            Ok(BodyFraming::Length(5))
        );
        assert_eq!(
            request_framing(&request_with(&[("Transfer-Encoding", "Chunked")])),
            Ok(BodyFraming::Chunked)
        );
    }

    #[test]
    fn request_framing_violations() {
        let cases: &[(&[(&str, &str)], FramingError)] = &[
            (
                &[("Content-Length", "5"), ("Transfer-Encoding", "chunked")],
                FramingError::LengthAndTransferEncoding,
            ),
            (
                &[("Content-Length", "5"), ("Content-Length", "6")],
                FramingError::ConflictingLengths,
            ),
            (
                &[("Content-Length", "5, 6")],
                FramingError::ConflictingLengths,
            ),
            (&[("Content-Length", "+5")], FramingError::BadLength),
            (&[("Content-Length", "")], FramingError::BadLength),
            (&[("Content-Length", "0x10")], FramingError::BadLength),
            (
                &[("Content-Length", "99999999999999999999")],
                FramingError::BadLength,
            ),
            (
                &[("Transfer-Encoding", "gzip")],
                FramingError::UnsupportedTransferEncoding,
            ),
            (
                &[("Transfer-Encoding", "chunked, gzip")],
                FramingError::UnsupportedTransferEncoding,
            ),
            (
                &[("Transfer-Encoding", "xchunked")],
                FramingError::UnsupportedTransferEncoding,
            ),
            (
                &[("Transfer-Encoding", "chunked, identity")],
                FramingError::UnsupportedTransferEncoding,
            ),
            (
                &[
                    ("Transfer-Encoding", "chunked"),
                    ("Transfer-Encoding", "chunked"),
                ],
                FramingError::ChunkedMoreThanOnce,
            ),
            (
                &[("Transfer-Encoding", "chunked, chunked")],
                FramingError::ChunkedMoreThanOnce,
            ),
            (
                &[("Transfer-Encoding", "Chunked ,CHUNKED")],
                FramingError::ChunkedMoreThanOnce,
            ),
            (
                &[("Transfer-Encoding", "chunked, gzip, chunked")],
                FramingError::ChunkedMoreThanOnce,
            ),
            (
                &[("Transfer-Encoding", "chunked, chunked;foo=bar")],
                FramingError::ChunkedMoreThanOnce,
            ),
            (
                &[("Transfer-Encoding", "gzip, chunked")],
                FramingError::UnknownTransferCoding,
            ),
            (
                &[("Transfer-Encoding", "chunked;foo=bar")],
                FramingError::UnknownTransferCoding,
            ),
            (
                &[("Transfer-Encoding", "chunked; q=\"a b\"")],
                FramingError::UnknownTransferCoding,
            ),
            (
                &[
                    ("Transfer-Encoding", "gzip"),
                    ("Transfer-Encoding", "chunked"),
                ],
                FramingError::UnknownTransferCoding,
            ),
            (
                &[("Transfer-Encoding", "")],
                FramingError::MalformedTransferEncoding,
            ),
            (
                &[("Transfer-Encoding", ",")],
                FramingError::MalformedTransferEncoding,
            ),
            (
                &[("Transfer-Encoding", "chu nked")],
                FramingError::MalformedTransferEncoding,
            ),
            (
                &[("Transfer-Encoding", "\"chunked\"")],
                FramingError::MalformedTransferEncoding,
            ),
            (
                &[("Transfer-Encoding", "chunked;")],
                FramingError::MalformedTransferEncoding,
            ),
            (
                &[("Transfer-Encoding", "chunked;foo")],
                FramingError::MalformedTransferEncoding,
            ),
            (
                &[("Transfer-Encoding", "chunked;foo=\"bar")],
                FramingError::MalformedTransferEncoding,
            ),
        ];
        for (fields, expected) in cases {
            assert_eq!(
                request_framing(&request_with(fields)),
                Err(*expected),
                "{fields:?}"
            );
        }
    }

    #[test]
    fn transfer_encoding_in_http10_request_is_refused() {
        let mut head = request_with(&[("Transfer-Encoding", "chunked")]);
        head.version = Version::Http10;
        assert_eq!(
            request_framing(&head),
            Err(FramingError::TransferEncodingInHttp10)
        );
        let mut head = request_with(&[("Content-Length", "3")]);
        head.version = Version::Http10;
        assert_eq!(request_framing(&head), Ok(BodyFraming::Length(3)));
    }

    #[test]
    fn response_framing_rules() {
        assert_eq!(
            response_framing(&response_with(200, &[]), false),
            Ok(BodyFraming::UntilClose)
        );
        assert_eq!(
            response_framing(&response_with(200, &[("Content-Length", "7")]), true),
            Ok(BodyFraming::Empty)
        );
        assert_eq!(
            response_framing(&response_with(204, &[("Content-Length", "7")]), false),
            Ok(BodyFraming::Empty)
        );
        assert_eq!(
            response_framing(&response_with(200, &[("Transfer-Encoding", "gzip")]), false),
            Ok(BodyFraming::UntilClose)
        );
        assert_eq!(
            response_framing(
                &response_with(200, &[("Transfer-Encoding", "chunked")]),
                false
            ),
            Ok(BodyFraming::Chunked)
        );
        for coded in ["chunked, identity", "deflate", "x-custom"] {
            assert_eq!(
                response_framing(&response_with(200, &[("Transfer-Encoding", coded)]), false),
                Ok(BodyFraming::UntilClose),
                "{coded}"
            );
        }
        assert_eq!(
            response_framing(
                &response_with(200, &[("Transfer-Encoding", "gzip, chunked")]),
                false
            ),
            Err(FramingError::UnknownTransferCoding)
        );
        assert_eq!(
            response_framing(
                &response_with(200, &[("Transfer-Encoding", "chunked, chunked")]),
                false
            ),
            Err(FramingError::ChunkedMoreThanOnce)
        );
    }

    #[test]
    fn quoted_strings() {
        for ok in [&b"\"\""[..], b"\"a b\"", b"\"a\\\"b\"", b"\"\\\\\""] {
            assert!(is_quoted_string(ok), "{:?}", String::from_utf8_lossy(ok));
        }
        for bad in [
            &b"\""[..],
            b"\"abc",
            b"abc\"",
            b"\"a\"b\"",
            b"\"a\\\"",
            b"\"a\x01\"",
        ] {
            assert!(!is_quoted_string(bad), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    fn read(raw: &[u8], framing: BodyFraming, max: usize) -> (Result<Vec<u8>, BodyError>, Vec<u8>) {
        let mut conn = BufferedStream::new(raw);
        let body = smol::block_on(read_body(&mut conn, framing, max));
        (body, conn.buffered().to_vec())
    }

    #[test]
    fn length_body_leaves_the_next_message() {
        let (body, rest) = read(b"helloGET /", BodyFraming::Length(5), 64);
        assert_eq!(body.expect("complete"), b"hello");
        assert_eq!(rest, b"GET /");
    }

    #[test]
    fn short_length_body_is_closed() {
        let (body, _) = read(b"hel", BodyFraming::Length(5), 64);
        assert!(matches!(body, Err(BodyError::Closed)));
    }

    #[test]
    fn announced_length_over_the_cap_is_refused_unread() {
        let (body, rest) = read(b"hello", BodyFraming::Length(5), 4);
        assert!(matches!(body, Err(BodyError::TooLarge)));
        assert_eq!(rest, b"");
    }

    #[test]
    fn chunked_body_leaves_the_next_message() {
        let (body, rest) = read(b"2\r\nhi\r\n0\r\n\r\nGET /", BodyFraming::Chunked, 64);
        assert_eq!(body.expect("complete"), b"hi");
        assert_eq!(rest, b"GET /");
    }

    #[test]
    fn chunked_body_cut_short_is_closed() {
        let (body, _) = read(b"5\r\nhel", BodyFraming::Chunked, 64);
        assert!(matches!(body, Err(BodyError::Closed)));
    }

    #[test]
    fn until_close_body_and_its_cap() {
        let (body, _) = read(b"{\"echo\":1}", BodyFraming::UntilClose, 64);
        assert_eq!(body.expect("complete"), b"{\"echo\":1}");
        let (body, _) = read(&[b'x'; 100], BodyFraming::UntilClose, 64);
        assert!(matches!(body, Err(BodyError::TooLarge)));
    }

    // The edges: each test below holds one rule at its exact boundary.

    #[test]
    fn interim_and_not_modified_responses_have_no_body() {
        for status in [100, 101, 199, 304] {
            assert_eq!(
                response_framing(&response_with(status, &[("Content-Length", "7")]), false),
                Ok(BodyFraming::Empty),
                "{status}"
            );
        }
    }

    #[test]
    fn a_201_response_has_its_body() {
        assert_eq!(
            response_framing(&response_with(201, &[("Content-Length", "7")]), false),
            Ok(BodyFraming::Length(7))
        );
    }

    #[test]
    fn content_length_has_several_digits() {
        assert_eq!(
            request_framing(&request_with(&[("Content-Length", "42")])),
            Ok(BodyFraming::Length(42))
        );
    }

    #[test]
    fn content_length_of_19_digits_is_read_and_of_20_refused() {
        assert_eq!(
            request_framing(&request_with(&[("Content-Length", "9999999999999999999")])),
            Ok(BodyFraming::Length(9_999_999_999_999_999_999))
        );
        assert_eq!(
            request_framing(&request_with(&[("Content-Length", "00000000000000000001")])),
            Err(FramingError::BadLength)
        );
    }

    #[test]
    fn length_body_of_exactly_the_cap_is_read() {
        let (body, rest) = read(b"hello", BodyFraming::Length(5), 5);
        assert_eq!(body.expect("complete"), b"hello");
        assert_eq!(rest, b"");
    }

    #[test]
    fn until_close_body_of_exactly_the_cap_is_read() {
        let (body, _) = read(&[b'x'; 64], BodyFraming::UntilClose, 64);
        assert_eq!(body.expect("complete"), [b'x'; 64]);
    }
}
