//! Serializing messages to bytes (RFC 9112 §3, §4, §5): a start line, header fields, an empty
//! line, then the body — CRLF after every line. The writer appends to a buffer and never
//! touches a socket, so a whole response (or several pipelined ones) goes out in one write.
//!
//! A body whose length is known ahead goes after a `Content-Length`. One that is made as it is
//! sent (a stream, see `stream.rs`) goes in the chunked coding (RFC 9112 §7.1), each chunk
//! framed by `write_chunk` and the end by `write_last_chunk`; or, to an HTTP/1.0 client, as
//! plain bytes ended by closing the connection (RFC 9112 §6.3 item 8):
//!
//! ```text
//! chunked-body = *chunk last-chunk trailer-section CRLF
//! chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! last-chunk   = 1*("0") [ chunk-ext ] CRLF
//! ```

use super::date;
use super::message::{Response, Version, reason_phrase};

/// How a response's head tells where its body ends (RFC 9112 §6.3): the writer's side of the
/// reader's `BodyFraming`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLength {
    /// `Content-Length: n`: exactly `n` bytes follow the head.
    Known(u64),
    /// `Transfer-Encoding: chunked`: chunks follow, up to the last chunk (RFC 9112 §7.1).
    Chunked,
    /// Neither field: the body is every byte up to our close (RFC 9112 §6.3 item 8).
    UntilClose,
}

impl BodyLength {
    /// The framing of a body whose length is not known in advance, for a client speaking
    /// `version`. HTTP/1.1 gets chunks. An HTTP/1.0 client cannot decode them, and we must not
    /// send it a `Transfer-Encoding` at all (RFC 9112 §6.1), so its body runs until we close:
    /// the one framing it has for that, at the cost of the connection and of telling a whole
    /// body from a cut one.
    pub fn unknown(version: Version) -> BodyLength {
        match version {
            Version::Http11 => BodyLength::Chunked,
            Version::Http10 => BodyLength::UntilClose,
        }
    }
}

/// Appends `response` to `out`: its head (see `write_head`) with its `Content-Length`, then
/// its body.
///
/// `head_only` answers a `HEAD`: the same head as for `GET`, including its `Content-Length`,
/// and no body (RFC 9110 §9.3.2).
pub fn write_response(
    out: &mut Vec<u8>,
    response: &Response,
    version: Version,
    head_only: bool,
    close: bool,
) {
    let length = BodyLength::Known(response.body.len() as u64);
    write_head(
        out,
        version,
        response.status,
        &response.headers,
        length,
        close,
    );
    if !head_only {
        out.extend_from_slice(&response.body);
    }
}

/// Appends a response head: status line, `Date`, `headers`, the field that gives the body's
/// `length`, `Connection` when needed, and the empty line.
///
/// * `version` is the version of the request being answered: an HTTP/1.0 client gets an
///   HTTP/1.0 status line, since it may not understand 1.1 features (RFC 9110 §2.5).
/// * `close` announces that we close the connection after this response (RFC 9112 §9.6);
///   for an HTTP/1.0 client that stays, `keep-alive` is said explicitly. A body that runs
///   `UntilClose` always closes, whatever `close` says.
///
/// Every response carries `Date` (RFC 9110 §6.6.1), from the per-second cache in `date.rs`.
pub fn write_head(
    out: &mut Vec<u8>,
    version: Version,
    status: u16,
    headers: &[(&str, String)],
    length: BodyLength,
    close: bool,
) {
    // Plain byte appends rather than `write!`: this runs once per response, and the
    // formatting machinery costs more than the bytes themselves.
    out.extend_from_slice(version.as_str().as_bytes());
    out.push(b' ');
    push_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\nDate: ");
    date::push_now(out);
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        push_field(out, name, value);
    }
    match length {
        BodyLength::Known(n) => {
            out.extend_from_slice(b"Content-Length: ");
            push_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        BodyLength::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        BodyLength::UntilClose => {}
    }
    if close || length == BodyLength::UntilClose {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if version == Version::Http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends one chunk: its size in hex, CRLF, the data, CRLF (RFC 9112 §7.1). A chunk of size
/// zero is the last chunk, so empty `data` appends nothing: it would end the body.
pub fn write_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    push_hex(out, data.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Appends the last chunk and an empty trailer section, `0\r\n\r\n`: the body is complete
/// (RFC 9112 §7.1). A body cut short goes without it, so the client can tell.
pub fn write_last_chunk(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n\r\n");
}

/// Appends `name: value` and CRLF.
fn push_field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends `n` in hex, lowercase, without leading zeros: a `chunk-size` (RFC 9112 §7.1).
fn push_hex(out: &mut Vec<u8>, mut n: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = HEX[(n % 16) as usize];
        n /= 16;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends a request to `out` (RFC 9112 §3): the request line, `Host` (the upstream's
/// authority, required in every HTTP/1.1 request, RFC 9112 §3.2), the extra fields, and
/// for a method whose content means something (every method but `GET` and `HEAD`) a
/// `Content-Length` and the body, as a user agent should send it (RFC 9110 §8.6).
pub fn write_request(
    out: &mut Vec<u8>,
    method: &str,
    target: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) {
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    push_field(out, "Host", host);
    for (name, value) in headers {
        push_field(out, name, value);
    }
    if !matches!(method, "GET" | "HEAD") {
        out.extend_from_slice(b"Content-Length: ");
        push_decimal(out, body.len() as u64);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The response as text, with its `Date` line (checked, then taken out: it changes).
    fn written(version: Version, head_only: bool, close: bool) -> String {
        let mut out = Vec::new();
        let response =
            Response::new(200, "application/json", "{}").with_header("X-Request-Id", "r1");
        write_response(&mut out, &response, version, head_only, close);
        without_date(out)
    }

    /// The head of a streamed `text/event-stream` response, without its `Date` line.
    fn head_written(version: Version, length: BodyLength, close: bool) -> String {
        let mut out = Vec::new();
        let headers = [("Content-Type", "text/event-stream".to_owned())];
        write_head(&mut out, version, 200, &headers, length, close);
        without_date(out)
    }

    /// A response as text, its `Date` line checked and taken out.
    fn without_date(out: Vec<u8>) -> String {
        let text = String::from_utf8(out).expect("ascii");
        let (status_line, rest) = text.split_once("\r\n").expect("a status line");
        let (date, rest) = rest.split_once("\r\n").expect("a Date line");
        assert_eq!(date.len(), "Date: ".len() + date::IMF_FIXDATE_LEN, "{date}");
        assert!(
            date.starts_with("Date: ") && date.ends_with(" GMT"),
            "{date}"
        );
        format!("{status_line}\r\n{rest}")
    }

    #[test]
    fn a_json_response() {
        assert_eq!(
            written(Version::Http11, false, false),
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Request-Id: r1\r\n\
             Content-Length: 2\r\n\r\n{}"
        );
    }

    #[test]
    fn head_keeps_the_length_and_drops_the_body() {
        assert!(written(Version::Http11, true, false).ends_with("Content-Length: 2\r\n\r\n"));
    }

    #[test]
    fn close_and_http10_keep_alive() {
        assert!(written(Version::Http11, false, true).contains("\r\nConnection: close\r\n"));
        let http10 = written(Version::Http10, false, false);
        assert!(http10.starts_with("HTTP/1.0 200 OK\r\n"));
        assert!(http10.contains("\r\nConnection: keep-alive\r\n"));
    }

    #[test]
    fn statuses_and_lengths_in_decimal() {
        for n in [0u64, 7, 10, 200, 65536, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn a_chunk_is_its_size_in_hex_then_its_data() {
        let mut out = Vec::new();
        write_chunk(&mut out, b"hello");
        write_chunk(&mut out, b"abcdefghijklmnopqrstuvwxyz");
        write_last_chunk(&mut out);
        assert_eq!(
            out,
            b"5\r\nhello\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n"
        );
    }

    #[test]
    fn an_empty_chunk_is_not_written_it_would_end_the_body() {
        let mut out = Vec::new();
        write_chunk(&mut out, b"");
        assert_eq!(out, b"");
    }

    #[test]
    fn chunk_sizes_in_lowercase_hex_without_leading_zeros() {
        for (n, hex) in [
            (1u64, "1"),
            (15, "f"),
            (16, "10"),
            (255, "ff"),
            (4096, "1000"),
            (u64::MAX, "ffffffffffffffff"),
        ] {
            let mut out = Vec::new();
            push_hex(&mut out, n);
            assert_eq!(out, hex.as_bytes(), "{n}");
        }
    }

    #[test]
    fn our_chunks_are_what_our_own_chunked_reader_reads() {
        let data: Vec<u8> = (0..=255u8).cycle().take(40_000).collect();
        let mut out = Vec::new();
        for piece in data.chunks(777) {
            write_chunk(&mut out, piece);
        }
        write_last_chunk(&mut out);
        let mut decoder = crate::http::chunked::ChunkedDecoder::new(data.len());
        let mut decoded = Vec::new();
        let used = decoder.decode(&out, &mut decoded).expect("valid chunked");
        assert_eq!(used, out.len());
        assert!(decoder.is_done());
        assert_eq!(decoded, data);
    }

    #[test]
    fn a_chunked_head_says_so_and_has_no_length() {
        assert_eq!(
            head_written(Version::Http11, BodyLength::Chunked, false),
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
             Transfer-Encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn a_chunked_head_that_closes_says_so() {
        assert!(
            head_written(Version::Http11, BodyLength::Chunked, true)
                .ends_with("Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        );
    }

    #[test]
    fn a_close_delimited_head_has_no_framing_field_and_always_closes() {
        assert_eq!(
            head_written(Version::Http10, BodyLength::UntilClose, false),
            "HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn an_unknown_length_is_chunked_for_http11_and_until_close_for_http10() {
        assert_eq!(BodyLength::unknown(Version::Http11), BodyLength::Chunked);
        assert_eq!(BodyLength::unknown(Version::Http10), BodyLength::UntilClose);
    }

    #[test]
    fn a_get_request() {
        let mut out = Vec::new();
        write_request(
            &mut out,
            "GET",
            "/echo?msg=a",
            "127.0.0.1:8080",
            &[("X-Request-Id", "r1")],
            b"",
        );
        assert_eq!(
            out,
            b"GET /echo?msg=a HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nX-Request-Id: r1\r\n\r\n"
        );
    }

    #[test]
    fn a_post_request_carries_its_length_and_body() {
        let mut out = Vec::new();
        let headers = [("Content-Type", "application/json")];
        write_request(&mut out, "POST", "/control", "a:1", &headers, b"{}");
        assert_eq!(
            out,
            b"POST /control HTTP/1.1\r\nHost: a:1\r\nContent-Type: application/json\r\n\
              Content-Length: 2\r\n\r\n{}"
        );
    }
}
