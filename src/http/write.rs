//! Serializing messages to bytes (RFC 9112 §3, §4, §5): a start line, header fields, an empty
//! line, then the body — CRLF after every line. The writer appends to a buffer and never
//! touches a socket, so a whole response (or several pipelined ones) goes out in one write.

use super::date;
use super::message::{Response, Version, reason_phrase};

/// Appends `response` to `out`.
///
/// * `version` is the version of the request being answered: an HTTP/1.0 client gets an
///   HTTP/1.0 status line, since it may not understand 1.1 features (RFC 9110 §2.5).
/// * `head_only` answers a `HEAD`: the same head as for `GET`, including its
///   `Content-Length`, and no body (RFC 9110 §9.3.2).
/// * `close` announces that we close the connection after this response (RFC 9112 §9.6);
///   for an HTTP/1.0 client that stays, `keep-alive` is said explicitly.
///
/// Every response carries `Date` (RFC 9110 §6.6.1), from the per-second cache in `date.rs`.
pub fn write_response(
    out: &mut Vec<u8>,
    response: &Response,
    version: Version,
    head_only: bool,
    close: bool,
) {
    // Plain byte appends rather than `write!`: this runs once per response, and the
    // formatting machinery costs more than the bytes themselves.
    out.extend_from_slice(version.as_str().as_bytes());
    out.push(b' ');
    push_decimal(out, u64::from(response.status));
    out.push(b' ');
    out.extend_from_slice(reason_phrase(response.status).as_bytes());
    out.extend_from_slice(b"\r\nDate: ");
    date::push_now(out);
    out.extend_from_slice(b"\r\n");
    for (name, value) in &response.headers {
        push_field(out, name, value);
    }
    out.extend_from_slice(b"Content-Length: ");
    push_decimal(out, response.body.len() as u64);
    out.extend_from_slice(b"\r\n");
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if version == Version::Http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(&response.body);
    }
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

/// Appends a `GET` request with no body to `out` (RFC 9112 §3). `host` is the authority of
/// the upstream, required in every HTTP/1.1 request (RFC 9112 §3.2).
pub fn write_get_request(out: &mut Vec<u8>, target: &str, host: &str, headers: &[(&str, &str)]) {
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    push_field(out, "Host", host);
    for (name, value) in headers {
        push_field(out, name, value);
    }
    out.extend_from_slice(b"\r\n");
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
    fn a_get_request() {
        let mut out = Vec::new();
        write_get_request(
            &mut out,
            "/echo?msg=a",
            "127.0.0.1:8080",
            &[("X-Request-Id", "r1")],
        );
        assert_eq!(
            out,
            b"GET /echo?msg=a HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nX-Request-Id: r1\r\n\r\n"
        );
    }
}
