//! The parts of an HTTP message as plain owned values (RFC 9110 §6, RFC 9112 §2–5): version,
//! header fields, request and response. No I/O here: reading lives in `head.rs`/`body.rs`,
//! writing in `write.rs`.

use std::net::SocketAddr;

/// The two protocol versions we speak (RFC 9112 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    /// httparse reports the minor version only; the major is always 1.
    pub fn from_minor(minor: u8) -> Version {
        if minor == 0 {
            Version::Http10
        } else {
            Version::Http11
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// Header fields in the order they arrived. Names are compared without case (RFC 9110 §5.1);
/// values are bytes, since a field value may carry obs-text that is not UTF-8.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, Vec<u8>)>);

impl Headers {
    pub fn new() -> Self {
        Headers(Vec::new())
    }

    pub fn push(&mut self, name: &str, value: &[u8]) {
        self.0.push((name.to_owned(), value.to_owned()));
    }

    /// Every value of the field `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The first value of the field `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The first value of `name` as text, if it is UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The comma-separated tokens of every `name` field, trimmed (RFC 9110 §5.6.1).
    pub fn tokens<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.get_all(name)
            .flat_map(|v| v.split(|&b| b == b','))
            .map(|t| t.trim_ascii())
            .filter(|t| !t.is_empty())
    }

    /// Whether any `name` field lists `token`, compared without case: never a substring match,
    /// so `Connection: keep-alive-ish` does not count as `keep-alive`.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.tokens(name)
            .any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Whether `b` is a `tchar`, a byte allowed in a token (RFC 9110 §5.6.2).
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `token = 1*tchar` (RFC 9110 §5.6.2).
pub fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// The length of the quoted-string at the front of `s`, closing quote included, or `None`
/// if `s` does not start with one or it never ends (RFC 9110 §5.6.4):
///
/// ```text
/// quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE
/// qdtext        = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
/// quoted-pair   = "\" ( HTAB / SP / VCHAR / obs-text )
/// ```
pub fn quoted_string_len(s: &[u8]) -> Option<usize> {
    let rest = s.strip_prefix(b"\"")?;
    let mut escaped = false;
    for (i, &b) in rest.iter().enumerate() {
        // HTAB, SP, VCHAR and obs-text: everything but the other control bytes and DEL.
        if b != b'\t' && (b < b' ' || b == 0x7f) {
            return None;
        }
        if escaped {
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            return Some(i + 2);
        }
    }
    None
}

/// Whether `s` is exactly one quoted-string.
pub fn is_quoted_string(s: &[u8]) -> bool {
    quoted_string_len(s) == Some(s.len())
}

/// Whether a connection stays open after this message (RFC 9112 §9.3): HTTP/1.1 persists
/// unless a side says `Connection: close`; HTTP/1.0 closes unless it says `keep-alive`.
pub fn keeps_alive(version: Version, headers: &Headers) -> bool {
    match version {
        Version::Http11 => !headers.has_token("connection", "close"),
        Version::Http10 => headers.has_token("connection", "keep-alive"),
    }
}

/// A request line and its header fields (RFC 9112 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    /// The request-target as sent, in origin-form: `/path?query` (RFC 9112 §3.2.1).
    pub target: String,
    pub version: Version,
    pub headers: Headers,
}

impl RequestHead {
    /// The path part of the target, without the query.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }

    /// The query part of the target, after `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    pub fn keeps_alive(&self) -> bool {
        keeps_alive(self.version, &self.headers)
    }
}

/// A request with its body read in full, and who sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub head: RequestHead,
    pub body: Vec<u8>,
    /// The other end of the connection it came on: the client, or the last proxy on the way.
    /// Not part of the message, but the server knows it and a handler may decide by it (A's
    /// `/control` answers loopback peers only), as http-types' `Request::peer_addr` does.
    pub peer: SocketAddr,
}

/// A response to write. The writer adds `Date`, `Content-Length` and, when closing,
/// `Connection`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// A response with a body of the given media type (RFC 9110 §8.3).
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type", content_type.to_owned())],
            body: body.into(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }
}

/// A status line and the header fields of a response (RFC 9112 §4), as a client reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub version: Version,
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
}

impl ResponseHead {
    /// The status line without CRLF, e.g. `HTTP/1.1 500 Internal Server Error`.
    pub fn status_line(&self) -> String {
        format!("{} {} {}", self.version.as_str(), self.status, self.reason)
    }
}

/// The reason phrase we send for each status we use (RFC 9110 §15).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_we_send_has_its_rfc_9110_reason_phrase() {
        // RFC 9110 §15, for each status the services and the server send.
        let table = [
            (100, "Continue"),
            (200, "OK"),
            (400, "Bad Request"),
            (404, "Not Found"),
            (405, "Method Not Allowed"),
            (408, "Request Timeout"),
            (413, "Content Too Large"),
            (414, "URI Too Long"),
            (417, "Expectation Failed"),
            (431, "Request Header Fields Too Large"),
            (500, "Internal Server Error"),
            (501, "Not Implemented"),
            (503, "Service Unavailable"),
            (505, "HTTP Version Not Supported"),
        ];
        for (status, phrase) in table {
            assert_eq!(reason_phrase(status), phrase, "{status}");
        }
        assert_eq!(reason_phrase(299), "Unknown");
    }

    #[test]
    fn headers_keep_every_field_in_arrival_order() {
        let mut headers = Headers::new();
        assert!(headers.is_empty());
        assert_eq!(headers.len(), 0);
        headers.push("Host", b"a");
        headers.push("X-Twice", b"1");
        headers.push("x-twice", b"2");
        assert!(!headers.is_empty());
        assert_eq!(headers.len(), 3, "a repeated field is two fields");
        let fields: Vec<(&str, &[u8])> = headers.iter().collect();
        assert_eq!(
            fields,
            [
                ("Host", &b"a"[..]),
                ("X-Twice", &b"1"[..]),
                ("x-twice", &b"2"[..])
            ],
            "names as sent, in order"
        );
        let twice: Vec<&[u8]> = headers.get_all("X-TWICE").collect();
        assert_eq!(twice, [&b"1"[..], &b"2"[..]]);
    }
}
