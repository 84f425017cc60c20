//! Hostile and malformed input, sent as raw bytes to the real binaries.
//!
//! The contract: a request that breaks HTTP/1.1 framing gets its status (`400`, or `413`,
//! `414`, `431` for what is too large, `408`, `417`, `505`) with a JSON error body and
//! `Connection: close`, and the connection is closed — never a hang, never a desync, never a
//! crash. Every case below checks all of that through one helper, `assert_rejected`, and then
//! checks that the service still serves a fresh connection.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::{End, Reply, Service, connect, get, parse_replies, read_reply, read_until_end};

/// How long a rejected connection may take to be answered and closed by the server.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// Fixtures and helpers
// ---------------------------------------------------------------------------------------------

/// A request head: the lines joined with CRLF, then the empty line that ends the head.
fn head(lines: &[&str]) -> Vec<u8> {
    let mut raw = lines.join("\r\n");
    raw.push_str("\r\n\r\n");
    raw.into_bytes()
}

/// A request head followed by raw body bytes.
fn head_and_body(lines: &[&str], body: &[u8]) -> Vec<u8> {
    let mut raw = head(lines);
    raw.extend_from_slice(body);
    raw
}

/// Checks that what arrived is exactly one error response with `status` — status line, JSON
/// `{"error": "..."}`, `Content-Type`, `Connection: close` — and nothing after it.
fn assert_one_error_reply(bytes: &[u8], status: u16) -> Reply {
    let text = String::from_utf8_lossy(bytes);
    let (replies, used) = parse_replies(bytes, false);
    assert_eq!(
        replies.len(),
        1,
        "expected exactly one response, got {text:?}"
    );
    assert_eq!(used, bytes.len(), "bytes after the response: {text:?}");
    let reply = replies.into_iter().next().expect("one reply");
    assert!(
        reply
            .status_line
            .starts_with(&format!("HTTP/1.1 {status} ")),
        "expected status {status}, got {:?} ({text:?})",
        reply.status_line
    );
    assert_eq!(
        reply.header("content-type"),
        Some("application/json"),
        "{text:?}"
    );
    assert_eq!(
        reply.header("content-length"),
        Some(reply.body.len().to_string().as_str()),
        "{text:?}"
    );
    assert_eq!(reply.header("connection"), Some("close"), "{text:?}");
    let json = reply.json();
    let fields = json.as_object().expect("the body is a JSON object");
    assert_eq!(fields.len(), 1, "only an error field: {json}");
    let error = json["error"].as_str().expect("error is a string");
    assert!(!error.is_empty(), "the error says something: {json}");
    reply
}

/// Reads `stream` to its end and checks it was one error response with `status`, followed by
/// the server closing the connection (a clean EOF, not a reset that could eat the answer).
fn expect_rejection(stream: &mut TcpStream, status: u16, within: Duration) -> Reply {
    let (bytes, end) = read_until_end(stream, within);
    let got = String::from_utf8_lossy(&bytes);
    match end {
        End::Eof => {}
        End::Failed(e) => panic!("connection failed ({e}) instead of a clean close after {got:?}"),
        End::StillOpen => panic!("still open {within:?} after a {status}; got {got:?}"),
    }
    assert_one_error_reply(&bytes, status)
}

/// A fresh connection is served normally.
fn assert_served(addr: SocketAddr) {
    let reply = get(addr, "/health");
    assert_eq!(reply.status, 200, "health after a rejection: {reply:?}");
    assert_eq!(reply.json(), serde_json::json!({"status": "ok"}));
}

/// Sends `raw` on a new connection and checks the whole rejection: the status line, a JSON
/// `{"error": "..."}` body with its `Content-Type`, `Connection: close`, exactly one response,
/// the server closing the connection, and a next fresh connection served normally.
fn assert_rejected(addr: SocketAddr, raw: &[u8], status: u16) -> Reply {
    let mut stream = connect(addr);
    // The server may answer before it has read everything we send (a body over the cap); a
    // failed write is not the failure under test, the answer is.
    let _ = stream.write_all(raw);
    let reply = expect_rejection(&mut stream, status, CLOSE_WITHIN);
    assert_served(addr);
    reply
}

/// The error text of a rejection.
fn error_of(reply: &Reply) -> String {
    reply.json()["error"]
        .as_str()
        .expect("error text")
        .to_owned()
}

/// A chunked body of `chunks` chunks of `size` bytes each, then the last chunk.
fn chunked_body(chunks: usize, size: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for _ in 0..chunks {
        body.extend_from_slice(format!("{size:x}\r\n").as_bytes());
        body.extend(std::iter::repeat_n(b'x', size));
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    body
}

// ---------------------------------------------------------------------------------------------
// Sizes: 414, 431, 413
// ---------------------------------------------------------------------------------------------

#[test]
fn head_over_16_kib_is_431() {
    // 16 KiB: an 8,000-octet request-target and 8 KiB of fields (see `limits.rs`).
    let a = Service::a(&[]);
    let big = format!("X-Big: {}", "v".repeat(17_000));
    let reply = assert_rejected(
        a.addr,
        &head(&["GET /health HTTP/1.1", "Host: a", &big]),
        431,
    );
    assert_eq!(error_of(&reply), "request head too large");
}

#[test]
fn request_target_over_the_limit_is_414() {
    let a = Service::a(&[]);
    let line = format!("GET /{} HTTP/1.1", "a".repeat(8000));
    let reply = assert_rejected(a.addr, &head(&[&line, "Host: a"]), 414);
    assert_eq!(error_of(&reply), "request-target too long");
}

#[test]
fn request_target_of_8000_octets_is_served() {
    // RFC 9112 §3: request-lines of at least 8,000 octets should be supported. With a few
    // KiB of fields besides, as a browser with cookies would send.
    let a = Service::a(&[]);
    let msg = "m".repeat(8000 - "/echo?msg=".len());
    let target = format!("/echo?msg={msg}");
    assert_eq!(target.len(), 8000);
    let cookie = format!("Cookie: {}", "c".repeat(6000));
    let line = format!("GET {target} HTTP/1.1");
    let mut stream = connect(a.addr);
    stream
        .write_all(&head(&[&line, "Host: a", &cookie, "Connection: close"]))
        .expect("write");
    let reply = read_reply(&mut stream, false);
    assert_eq!(reply.status, 200, "{}", reply.status_line);
    assert_eq!(reply.json(), serde_json::json!({ "echo": msg }));
}

#[test]
fn request_line_that_never_ends_is_414() {
    let a = Service::a(&[]);
    let mut raw = b"GET /".to_vec();
    raw.extend(std::iter::repeat_n(b'a', 9000));
    assert_rejected(a.addr, &raw, 414);
}

#[test]
fn sixty_five_header_fields_is_431() {
    let a = Service::a(&[]);
    let mut lines = vec!["GET /health HTTP/1.1".to_owned(), "Host: a".to_owned()];
    lines.extend((0..64).map(|i| format!("X-Field-{i}: v")));
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    assert_eq!(lines.len() - 1, 65, "65 header fields");
    let reply = assert_rejected(a.addr, &head(&lines), 431);
    assert_eq!(error_of(&reply), "too many header fields");
}

#[test]
fn content_length_over_64_kib_is_413() {
    let a = Service::a(&[]);
    let raw = head_and_body(
        &["POST /health HTTP/1.1", "Host: a", "Content-Length: 70000"],
        &[b'x'; 70000],
    );
    let reply = assert_rejected(a.addr, &raw, 413);
    assert_eq!(error_of(&reply), "request body too large");
}

#[test]
fn content_length_over_64_kib_with_expect_100_continue_is_413_before_the_body() {
    let a = Service::a(&[]);
    let raw = head(&[
        "POST /health HTTP/1.1",
        "Host: a",
        "Content-Length: 70000",
        "Expect: 100-continue",
    ]);
    // No `100 Continue` first: the body is refused before it is invited. `assert_rejected`
    // counts interim responses too, and wants exactly one response, the 413.
    assert_rejected(a.addr, &raw, 413);
}

#[test]
fn chunked_body_over_64_kib_is_413() {
    let a = Service::a(&[]);
    let raw = head_and_body(
        &[
            "POST /health HTTP/1.1",
            "Host: a",
            "Transfer-Encoding: chunked",
        ],
        &chunked_body(17, 4096),
    );
    let reply = assert_rejected(a.addr, &raw, 413);
    assert_eq!(error_of(&reply), "request body too large");
}

// ---------------------------------------------------------------------------------------------
// Framing: Content-Length and Transfer-Encoding (RFC 9112 §6.3)
// ---------------------------------------------------------------------------------------------

#[test]
fn content_length_with_transfer_encoding_is_400() {
    let a = Service::a(&[]);
    let raw = head_and_body(
        &[
            "POST /health HTTP/1.1",
            "Host: a",
            "Content-Length: 5",
            "Transfer-Encoding: chunked",
        ],
        b"0\r\n\r\n",
    );
    let reply = assert_rejected(a.addr, &raw, 400);
    assert_eq!(
        error_of(&reply),
        "bad message framing: both Content-Length and Transfer-Encoding"
    );
}

#[test]
fn two_different_content_lengths_is_400() {
    let a = Service::a(&[]);
    let raw = head_and_body(
        &[
            "POST /health HTTP/1.1",
            "Host: a",
            "Content-Length: 5",
            "Content-Length: 6",
        ],
        b"hello!",
    );
    assert_rejected(a.addr, &raw, 400);
}

#[test]
fn content_length_with_a_sign_is_400() {
    let a = Service::a(&[]);
    let raw = head_and_body(
        &["POST /health HTTP/1.1", "Host: a", "Content-Length: +5"],
        b"hello",
    );
    assert_rejected(a.addr, &raw, 400);
}

#[test]
fn content_length_list_of_different_values_is_400() {
    let a = Service::a(&[]);
    let raw = head_and_body(
        &["POST /health HTTP/1.1", "Host: a", "Content-Length: 5, 6"],
        b"hello!",
    );
    assert_rejected(a.addr, &raw, 400);
}

#[test]
fn transfer_encoding_gzip_is_400() {
    // Not 501: with a final coding other than chunked the length of a request cannot be
    // known, and RFC 9112 §6.3 (rule 4) says the server MUST answer 400 and close. That MUST
    // wins over §6.1's SHOULD 501, which covers codings before a final chunked.
    let a = Service::a(&[]);
    let raw = head_and_body(
        &[
            "POST /health HTTP/1.1",
            "Host: a",
            "Transfer-Encoding: gzip",
        ],
        b"\x1f\x8b",
    );
    assert_rejected(a.addr, &raw, 400);
}

#[test]
fn transfer_encoding_chunked_then_gzip_is_400() {
    let a = Service::a(&[]);
    let raw = head_and_body(
        &[
            "POST /health HTTP/1.1",
            "Host: a",
            "Transfer-Encoding: chunked, gzip",
        ],
        b"0\r\n\r\n",
    );
    assert_rejected(a.addr, &raw, 400);
}

/// A chunked request whose Transfer-Encoding `fields` list `chunked` twice.
fn assert_chunked_twice_is_400(fields: &[&str]) {
    let a = Service::a(&[]);
    let mut lines = vec!["POST /health HTTP/1.1", "Host: a"];
    lines.extend_from_slice(fields);
    let reply = assert_rejected(a.addr, &head_and_body(&lines, b"0\r\n\r\n"), 400);
    assert_eq!(
        error_of(&reply),
        "bad message framing: Transfer-Encoding applies chunked more than once",
        "{fields:?}"
    );
}

#[test]
fn transfer_encoding_chunked_twice_is_400_not_501() {
    // RFC 9112 §6.1: a sender MUST NOT apply chunked more than once. The list ends in
    // chunked, so this is no coding we lack (501): it is framing nobody may send (400).
    assert_chunked_twice_is_400(&["Transfer-Encoding: chunked, chunked"]);
}

#[test]
fn transfer_encoding_chunked_in_two_fields_is_400_not_501() {
    // Two fields are one list (RFC 9110 §5.3): `chunked, chunked` again.
    assert_chunked_twice_is_400(&["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"]);
}

/// A chunked request whose Transfer-Encoding is `te`: a coding we do not implement.
fn assert_unknown_coding_is_501(te: &str) {
    let a = Service::a(&[]);
    let field = format!("Transfer-Encoding: {te}");
    let raw = head_and_body(&["POST /health HTTP/1.1", "Host: a", &field], b"0\r\n\r\n");
    let reply = assert_rejected(a.addr, &raw, 501);
    assert_eq!(
        error_of(&reply),
        "bad message framing: Transfer-Encoding with a coding other than a single chunked",
        "{te}"
    );
}

#[test]
fn transfer_encoding_gzip_then_chunked_is_501() {
    // RFC 9112 §6.1: a transfer coding the server does not understand SHOULD be 501.
    assert_unknown_coding_is_501("gzip, chunked");
}

#[test]
fn transfer_encoding_chunked_with_a_parameter_is_501() {
    assert_unknown_coding_is_501("chunked;foo=bar");
}

#[test]
fn transfer_encoding_gzip_and_chunked_in_two_fields_is_501() {
    let a = Service::a(&[]);
    let raw = head_and_body(
        &[
            "POST /health HTTP/1.1",
            "Host: a",
            "Transfer-Encoding: gzip",
            "Transfer-Encoding: chunked",
        ],
        b"0\r\n\r\n",
    );
    assert_rejected(a.addr, &raw, 501);
}

#[test]
fn malformed_transfer_encoding_is_400() {
    let a = Service::a(&[]);
    for te in ["chu nked", "\"chunked\"", "chunked;"] {
        let field = format!("Transfer-Encoding: {te}");
        let raw = head_and_body(&["POST /health HTTP/1.1", "Host: a", &field], b"0\r\n\r\n");
        let reply = assert_rejected(a.addr, &raw, 400);
        assert_eq!(
            error_of(&reply),
            "bad message framing: malformed Transfer-Encoding",
            "{te}"
        );
    }
}

#[test]
fn transfer_encoding_in_http10_is_400() {
    // RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing. A 1.0
    // front end that ignores the field would see the bytes after the chunked body as part of
    // this request; we must not serve them as a second one.
    let a = Service::a(&[]);
    let raw = head_and_body(
        &[
            "POST /health HTTP/1.0",
            "Connection: keep-alive",
            "Transfer-Encoding: chunked",
        ],
        &[&b"0\r\n\r\n"[..], &head(&["GET /nope-smuggled HTTP/1.0"])].concat(),
    );
    assert_rejected(a.addr, &raw, 400);
    assert_never_logged(&a, "/nope-smuggled");
}

// ---------------------------------------------------------------------------------------------
// Chunked coding (RFC 9112 §7.1)
// ---------------------------------------------------------------------------------------------

#[test]
fn bad_chunk_size_is_400() {
    let a = Service::a(&[]);
    let raw = head_and_body(
        &[
            "POST /health HTTP/1.1",
            "Host: a",
            "Transfer-Encoding: chunked",
        ],
        b"zz\r\nhello\r\n0\r\n\r\n",
    );
    let reply = assert_rejected(a.addr, &raw, 400);
    assert_eq!(
        error_of(&reply),
        "bad chunked body: chunk size is not a hex number"
    );
}

#[test]
fn missing_crlf_after_chunk_data_is_400() {
    let a = Service::a(&[]);
    let raw = head_and_body(
        &[
            "POST /health HTTP/1.1",
            "Host: a",
            "Transfer-Encoding: chunked",
        ],
        b"3\r\nabcX\r\n0\r\n\r\n",
    );
    let reply = assert_rejected(a.addr, &raw, 400);
    assert_eq!(
        error_of(&reply),
        "bad chunked body: missing CRLF after chunk data"
    );
}

#[test]
fn chunk_extension_without_a_name_is_400() {
    // RFC 9112 §7.1.1: chunk-ext = *( BWS ";" BWS chunk-ext-name [ ... ] ), name = token.
    let a = Service::a(&[]);
    let raw = head_and_body(
        &[
            "POST /health HTTP/1.1",
            "Host: a",
            "Transfer-Encoding: chunked",
        ],
        b"5;\r\nhello\r\n0\r\n\r\n",
    );
    let reply = assert_rejected(a.addr, &raw, 400);
    assert_eq!(
        error_of(&reply),
        "bad chunked body: chunk extension without a name"
    );
}

#[test]
fn chunk_extension_name_that_is_not_a_token_is_400() {
    let a = Service::a(&[]);
    let raw = head_and_body(
        &[
            "POST /health HTTP/1.1",
            "Host: a",
            "Transfer-Encoding: chunked",
        ],
        b"5;bad[=x\r\nhello\r\n0\r\n\r\n",
    );
    let reply = assert_rejected(a.addr, &raw, 400);
    assert_eq!(
        error_of(&reply),
        "bad chunked body: invalid chunk extension"
    );
}

/// A chunked request to `/health` whose body is `body`.
fn chunked_health(body: &[u8]) -> Vec<u8> {
    head_and_body(
        &[
            "GET /health HTTP/1.1",
            "Host: a",
            "Transfer-Encoding: chunked",
        ],
        body,
    )
}

#[test]
fn whitespace_after_a_chunk_size_is_400_and_close() {
    // RFC 9112 §7.1: BWS is allowed only before a chunk extension's `;`. A parser that read
    // `5 ` as 5 would take `hello` as data; one that stops at the space disagrees about the
    // whole rest of the stream. So the request is refused and the connection closed, and the
    // request hidden after it is never answered.
    let a = Service::a(&[]);
    let smuggled = head(&["GET /nope-smuggled HTTP/1.1", "Host: a"]);
    for size_line in ["5 \r\n", "5\t\r\n"] {
        let body = [size_line.as_bytes(), b"hello\r\n0\r\n\r\n", &smuggled].concat();
        let reply = assert_rejected(a.addr, &chunked_health(&body), 400);
        assert_eq!(
            error_of(&reply),
            "bad chunked body: whitespace at the end of a chunk-size line",
            "{size_line:?}"
        );
    }
    assert_never_logged(&a, "nope-smuggled");
}

#[test]
fn whitespace_before_a_chunk_extension_is_served() {
    // `5 ;ext` is grammar: BWS before the `;`.
    let a = Service::a(&[]);
    let mut stream = connect(a.addr);
    let mut raw = chunked_health(b"5 ;ext=1\r\nhello\r\n0\r\n\r\n");
    raw.extend_from_slice(&head(&[
        "GET /health HTTP/1.1",
        "Host: a",
        "Connection: close",
    ]));
    stream.write_all(&raw).expect("write");
    let (bytes, end) = read_until_end(&mut stream, CLOSE_WITHIN);
    assert!(matches!(end, End::Eof), "closed after the second response");
    let (replies, used) = parse_replies(&bytes, false);
    assert_eq!(used, bytes.len(), "{:?}", String::from_utf8_lossy(&bytes));
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [200, 200],
        "both requests on the connection are served"
    );
}

// ---------------------------------------------------------------------------------------------
// Head syntax (RFC 9112 §2–5)
// ---------------------------------------------------------------------------------------------

#[test]
fn obs_fold_is_400() {
    let a = Service::a(&[]);
    let raw = head(&["GET /health HTTP/1.1", "Host: a", "X-Folded: one", " two"]);
    assert_rejected(a.addr, &raw, 400);
}

#[test]
fn bare_cr_in_the_head_is_400() {
    let a = Service::a(&[]);
    assert_rejected(
        a.addr,
        b"GET /health HTTP/1.1\r\nHost: a\rX: b\r\n\r\n",
        400,
    );
}

#[test]
fn bare_cr_ending_the_request_line_is_400() {
    let a = Service::a(&[]);
    assert_rejected(a.addr, b"GET /health HTTP/1.1\rHost: a\r\n\r\n", 400);
}

#[test]
fn nul_byte_in_a_header_value_is_400() {
    let a = Service::a(&[]);
    let raw = head(&["GET /health HTTP/1.1", "Host: a", "X-Nul: a\0b"]);
    assert_rejected(a.addr, &raw, 400);
}

#[test]
fn control_byte_01_in_a_header_value_is_400() {
    let a = Service::a(&[]);
    let raw = head(&["GET /health HTTP/1.1", "Host: a", "X-Ctl: a\x01b"]);
    assert_rejected(a.addr, &raw, 400);
}

#[test]
fn escape_byte_in_a_header_value_is_400() {
    let a = Service::a(&[]);
    let raw = head(&["GET /health HTTP/1.1", "Host: a", "X-Esc: \x1b[31mred"]);
    assert_rejected(a.addr, &raw, 400);
}

#[test]
fn control_byte_01_in_the_target_is_400() {
    let a = Service::a(&[]);
    let raw = head(&["GET /health\x01 HTTP/1.1", "Host: a"]);
    assert_rejected(a.addr, &raw, 400);
}

#[test]
fn escape_byte_in_the_target_is_400() {
    let a = Service::a(&[]);
    let raw = head(&["GET /echo?msg=\x1b[2J HTTP/1.1", "Host: a"]);
    assert_rejected(a.addr, &raw, 400);
}

#[test]
fn whitespace_before_the_colon_is_400() {
    let a = Service::a(&[]);
    let raw = head(&["GET /health HTTP/1.1", "Host : a"]);
    assert_rejected(a.addr, &raw, 400);
}

#[test]
fn space_inside_the_target_is_400_not_505() {
    // `GET /a b HTTP/1.1` is bad syntax, not an unsupported version: the version is 1.1.
    let a = Service::a(&[]);
    let raw = head(&["GET /health x HTTP/1.1", "Host: a"]);
    assert_rejected(a.addr, &raw, 400);
}

#[test]
fn http11_without_host_is_400() {
    let a = Service::a(&[]);
    let reply = assert_rejected(a.addr, &head(&["GET /health HTTP/1.1"]), 400);
    assert_eq!(
        error_of(&reply),
        "malformed request: HTTP/1.1 request without Host"
    );
}

#[test]
fn host_with_userinfo_path_list_space_or_bad_port_is_400() {
    // RFC 9112 §3.2: a Host with an invalid field value is 400. RFC 9110 §7.2 and RFC 3986
    // §3.2.2 give its grammar: `uri-host [ ":" port ]`.
    let a = Service::a(&[]);
    for host in ["user@a", "a/x", "a, b", "a b", "a:80x", "a:99999"] {
        let field = format!("Host: {host}");
        let reply = assert_rejected(a.addr, &head(&["GET /health HTTP/1.1", &field]), 400);
        assert_eq!(
            error_of(&reply),
            "malformed request: invalid Host field value",
            "Host: {host}"
        );
    }
}

#[test]
fn host_with_port_is_served() {
    let a = Service::a(&[]);
    for field in ["Host: a:8080", "Host: [::1]:80"] {
        let mut stream = connect(a.addr);
        stream
            .write_all(&head(&["GET /health HTTP/1.1", field, "Connection: close"]))
            .expect("write");
        assert_eq!(read_reply(&mut stream, false).status, 200, "{field}");
    }
}

#[test]
fn empty_host_with_an_origin_form_target_is_400() {
    // RFC 9112 §3.2: an empty Host says the target URI has no authority; with a path alone
    // that is an `http` URI with an empty host, which RFC 9110 §4.2.1 says to reject.
    let a = Service::a(&[]);
    for field in ["Host:", "Host: ", "Host: :8080"] {
        for version in ["HTTP/1.1", "HTTP/1.0"] {
            let line = format!("GET /health {version}");
            let reply = assert_rejected(a.addr, &head(&[&line, field]), 400);
            assert_eq!(
                error_of(&reply),
                "malformed request: empty host in Host (only an absolute-form target may omit it)",
                "{field:?} {version}"
            );
        }
    }
}

#[test]
fn empty_host_with_an_absolute_form_target_is_served() {
    // The target names its host; the server uses it and not Host (RFC 9112 §3.2.2).
    let a = Service::a(&[]);
    let mut stream = connect(a.addr);
    stream
        .write_all(&head(&[
            "GET http://a/health HTTP/1.1",
            "Host:",
            "Connection: close",
        ]))
        .expect("write");
    assert_eq!(read_reply(&mut stream, false).status, 200);
}

#[test]
fn absolute_form_with_an_upper_case_scheme_is_routed_on_its_path() {
    // A URI scheme is compared without case (RFC 3986 §3.1): not a 404 for `HTTP://a/health`.
    let a = Service::a(&[]);
    let mut stream = connect(a.addr);
    stream
        .write_all(&head(&[
            "GET HTTP://a/health HTTP/1.1",
            "Host: a",
            "Connection: close",
        ]))
        .expect("write");
    assert_eq!(read_reply(&mut stream, false).status, 200);
}

#[test]
fn http_uri_with_an_empty_host_in_absolute_form_is_400() {
    // RFC 9110 §4.2.1: a recipient MUST reject an `http` URI with an empty host as invalid.
    let a = Service::a(&[]);
    let reply = assert_rejected(
        a.addr,
        &head(&["GET http:///health HTTP/1.1", "Host: a"]),
        400,
    );
    assert_eq!(
        error_of(&reply),
        "malformed request: http URI with an empty host in the request-target"
    );
}

#[test]
fn two_host_fields_is_400() {
    let a = Service::a(&[]);
    let raw = head(&["GET /health HTTP/1.1", "Host: a", "Host: b"]);
    assert_rejected(a.addr, &raw, 400);
}

#[test]
fn fragment_in_the_target_is_400_not_404() {
    let a = Service::a(&[]);
    let reply = assert_rejected(a.addr, &head(&["GET /health#x HTTP/1.1", "Host: a"]), 400);
    assert_eq!(
        error_of(&reply),
        "malformed request: fragment in the request-target"
    );
}

#[test]
fn asterisk_form_with_get_is_400_not_404() {
    let a = Service::a(&[]);
    assert_rejected(a.addr, &head(&["GET * HTTP/1.1", "Host: a"]), 400);
}

#[test]
fn raw_non_ascii_in_the_target_is_400_not_404() {
    let a = Service::a(&[]);
    // `é` as raw UTF-8: valid UTF-8, but RFC 3986 wants it percent-encoded.
    let reply = assert_rejected(
        a.addr,
        b"GET /h\xc3\xa9alth HTTP/1.1\r\nHost: a\r\n\r\n",
        400,
    );
    assert_eq!(
        error_of(&reply),
        "malformed request: non-ASCII byte in the request-target"
    );
}

#[test]
fn kilobyte_method_is_400_not_414() {
    // 414 is about the request-target (RFC 9110 §15.5.15); a method longer than any method
    // is bad syntax.
    let a = Service::a(&[]);
    let line = format!("{} /health HTTP/1.1", "M".repeat(1024));
    let reply = assert_rejected(a.addr, &head(&[&line, "Host: a"]), 400);
    assert_eq!(error_of(&reply), "method longer than any method");
}

#[test]
fn method_that_never_ends_is_400_at_once() {
    // No space, no line end: refused as soon as it is longer than any method, well before
    // the request timeout.
    let a = Service::a(&[]);
    let started = Instant::now();
    assert_rejected(a.addr, &[b'M'; 1024], 400);
    assert!(
        started.elapsed() < CLOSE_WITHIN,
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn short_unknown_method_is_405_with_allow_and_the_connection_kept() {
    // The contract's answer for a method a path does not take, whatever the method.
    let a = Service::a(&[]);
    let mut stream = connect(a.addr);
    stream
        .write_all(&head(&["BREW /health HTTP/1.1", "Host: a"]))
        .expect("write");
    let reply = read_reply(&mut stream, false);
    assert_eq!(reply.status, 405, "{reply:?}");
    assert_eq!(reply.header("allow"), Some("GET, HEAD"));
    stream
        .write_all(&head(&["GET /health HTTP/1.1", "Host: a"]))
        .expect("write");
    assert_eq!(read_reply(&mut stream, false).status, 200);
}

// ---------------------------------------------------------------------------------------------
// Not HTTP/1.x at all
// ---------------------------------------------------------------------------------------------

#[test]
fn http2_connection_preface_is_400() {
    let a = Service::a(&[]);
    let reply = assert_rejected(a.addr, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400);
    assert!(error_of(&reply).contains("HTTP/2"), "{reply:?}");
}

#[test]
fn tls_client_hello_is_400() {
    let a = Service::a(&[]);
    // The first bytes of a TLS 1.2 ClientHello record: handshake, version, length, hello.
    let hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x8a\x11\x00\xff\xee\x42";
    let reply = assert_rejected(a.addr, hello, 400);
    assert!(error_of(&reply).contains("TLS handshake"), "{reply:?}");
}

#[test]
fn plain_text_garbage_is_400() {
    let a = Service::a(&[]);
    assert_rejected(a.addr, b"hello there, is anybody home?\r\n\r\n", 400);
}

#[test]
fn expect_other_than_100_continue_is_417() {
    let a = Service::a(&[]);
    let raw = head(&["GET /health HTTP/1.1", "Host: a", "Expect: something-else"]);
    let reply = assert_rejected(a.addr, &raw, 417);
    assert_eq!(error_of(&reply), "unsupported Expect");
}

#[test]
fn http_2_0_request_line_is_505() {
    let a = Service::a(&[]);
    let reply = assert_rejected(a.addr, &head(&["GET / HTTP/2.0", "Host: a"]), 505);
    assert_eq!(error_of(&reply), "HTTP version not supported");
}

#[test]
fn http_3_0_request_line_is_505() {
    let a = Service::a(&[]);
    assert_rejected(a.addr, &head(&["GET / HTTP/3.0", "Host: a"]), 505);
}

// ---------------------------------------------------------------------------------------------
// Request smuggling
// ---------------------------------------------------------------------------------------------

/// Fails if any log line of `service` mentions `needle` (e.g. a smuggled path).
fn assert_never_logged(service: &Service, needle: &str) {
    let seen: Vec<String> = service
        .logs()
        .into_iter()
        .filter(|l| l.contains(needle))
        .collect();
    assert!(seen.is_empty(), "{needle} reached the service: {seen:?}");
}

#[test]
fn smuggling_cl_zero_with_chunked_is_400_and_one_response() {
    let a = Service::a(&[]);
    let raw = head_and_body(
        &[
            "POST /health HTTP/1.1",
            "Host: a",
            "Content-Length: 0",
            "Transfer-Encoding: chunked",
        ],
        &[
            &b"0\r\n\r\n"[..],
            &head(&["GET /smuggled HTTP/1.1", "Host: a"]),
        ]
        .concat(),
    );
    // `assert_rejected` checks there is exactly one response on the connection.
    assert_rejected(a.addr, &raw, 400);
    assert_never_logged(&a, "/smuggled");
}

#[test]
fn smuggling_a_request_inside_a_content_length_body_is_never_answered() {
    let a = Service::a(&[]);
    let smuggled = head(&["GET /nope-smuggled HTTP/1.1", "Host: a"]);
    let length = format!("Content-Length: {}", smuggled.len());
    let outer = head_and_body(&["GET /health HTTP/1.1", "Host: a", &length], &smuggled);
    let mut stream = connect(a.addr);
    stream.write_all(&outer).expect("write the outer request");
    let first = read_reply(&mut stream, false);
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.json(), serde_json::json!({"status": "ok"}));

    // The next bytes on the connection start a real request; the body was only a body.
    let next = head(&["GET /health HTTP/1.1", "Host: a", "Connection: close"]);
    stream.write_all(&next).expect("write the second request");
    let (rest, end) = read_until_end(&mut stream, CLOSE_WITHIN);
    assert!(matches!(end, End::Eof), "closed after Connection: close");
    let (replies, used) = parse_replies(&rest, false);
    assert_eq!(used, rest.len(), "{:?}", String::from_utf8_lossy(&rest));
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200], "one answer to the second request, no 404");
    assert_never_logged(&a, "/nope-smuggled");
}

#[test]
fn smuggling_te_cl_chunked_with_a_disagreeing_length_is_400() {
    let a = Service::a(&[]);
    let smuggled = head(&["GET /nope-smuggled HTTP/1.1", "Host: a"]);
    let mut body = format!("{:x}\r\n", smuggled.len()).into_bytes();
    body.extend_from_slice(&smuggled);
    body.extend_from_slice(b"\r\n0\r\n\r\n");
    let raw = head_and_body(
        &[
            "POST /health HTTP/1.1",
            "Host: a",
            "Transfer-Encoding: chunked",
            "Content-Length: 4",
        ],
        &body,
    );
    assert_rejected(a.addr, &raw, 400);
    assert_never_logged(&a, "/nope-smuggled");
}

// ---------------------------------------------------------------------------------------------
// Time: request timeout (408) and idle timeout
// ---------------------------------------------------------------------------------------------

/// The request timeout is 10 s from a request's first byte; allow for a loaded machine.
fn assert_408_in_time(started: Instant, stream: &mut TcpStream, addr: SocketAddr) {
    let reply = expect_rejection(stream, 408, Duration::from_secs(15));
    let took = started.elapsed();
    assert!(
        (Duration::from_millis(9500)..=Duration::from_secs(12)).contains(&took),
        "408 after {took:?}, expected about 10 s"
    );
    assert_eq!(error_of(&reply), "request not received in time");
    assert_served(addr);
}

#[test]
fn head_not_complete_after_10_s_is_408() {
    let a = Service::a(&[]);
    let mut stream = connect(a.addr);
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: a\r\nX-Half: ")
        .expect("write half a head");
    assert_408_in_time(Instant::now(), &mut stream, a.addr);
    assert!(a.wait_for_log("status=408", CLOSE_WITHIN).is_some());
}

#[test]
fn head_trickled_one_byte_at_a_time_is_408_after_10_s() {
    // Slowloris: bytes keep coming, but the request never completes. The deadline runs from
    // the first byte, so steady trickling does not extend it.
    let a = Service::a(&[]);
    let mut stream = connect(a.addr);
    let mut writer = stream.try_clone().expect("clone the stream");
    let started = Instant::now();
    let trickle = thread::spawn(move || {
        let head = b"GET /health HTTP/1.1\r\nHost: a\r\nX-Slow: ";
        let filler = std::iter::repeat(&b'z');
        for byte in head.iter().chain(filler) {
            if writer.write_all(&[*byte]).is_err() || started.elapsed() > Duration::from_secs(15) {
                return;
            }
            thread::sleep(Duration::from_millis(200));
        }
    });
    assert_408_in_time(started, &mut stream, a.addr);
    drop(stream);
    trickle.join().expect("trickling thread");
}

#[test]
fn body_not_complete_after_10_s_is_408() {
    let a = Service::a(&[]);
    let mut stream = connect(a.addr);
    let raw = head_and_body(
        &["POST /health HTTP/1.1", "Host: a", "Content-Length: 10"],
        b"abc",
    );
    stream.write_all(&raw).expect("write a partial body");
    assert_408_in_time(Instant::now(), &mut stream, a.addr);
}

#[test]
fn silent_and_idle_kept_alive_connections_are_closed_after_the_idle_timeout() {
    // The idle timeout is 30 s by default: each connection must be closed between 25 s and
    // 35 s after it went quiet. Both are watched at once, each on its own thread, so each
    // close is timed when it happens.
    let a = Service::a(&[]);
    let silent = connect(a.addr);
    let silent_since = Instant::now();
    let mut kept = connect(a.addr);
    kept.write_all(&head(&["GET /health HTTP/1.1", "Host: a"]))
        .expect("write a request");
    assert_eq!(read_reply(&mut kept, false).status, 200);
    let kept_since = Instant::now();

    let watchers: Vec<_> = [
        ("silent", silent, silent_since),
        ("kept-alive", kept, kept_since),
    ]
    .into_iter()
    .map(|(name, mut stream, since)| {
        thread::spawn(move || {
            let (bytes, end) = read_until_end(&mut stream, Duration::from_secs(35));
            (name, bytes, end, since.elapsed())
        })
    })
    .collect();
    for watcher in watchers {
        let (name, bytes, end, after) = watcher.join().expect("watcher");
        assert!(
            matches!(end, End::Eof),
            "{name} connection not closed within 35 s: {end:?}"
        );
        // Closed quietly: an unasked-for 408 could be taken for the answer to a request the
        // client sends at the same moment.
        assert!(
            bytes.is_empty(),
            "{name}: {:?}",
            String::from_utf8_lossy(&bytes)
        );
        // Not early either: the default is 30 s, not a few.
        assert!(
            after >= Duration::from_secs(25),
            "{name} closed after only {after:?} of quiet"
        );
    }
    assert_served(a.addr);
}

// ---------------------------------------------------------------------------------------------
// The connection cap
// ---------------------------------------------------------------------------------------------

#[test]
fn connection_over_the_cap_gets_503_and_the_others_keep_working() {
    let a = Service::a(&["--max-connections", "5"]);
    // Five idle connections. The server accepts in order, so by the time it accepts the
    // sixth, these five are counted.
    let mut held: Vec<TcpStream> = (0..5).map(|_| connect(a.addr)).collect();

    let mut sixth = connect(a.addr);
    let reply = expect_rejection(&mut sixth, 503, CLOSE_WITHIN);
    assert_eq!(error_of(&reply), "too many connections");

    // A client that sends its request at once is refused the same way. The refusal does not
    // linger, so the kernel may reset the connection after the answer; the answer must come.
    let mut eager = connect(a.addr);
    let _ = eager.write_all(&head(&["GET /health HTTP/1.1", "Host: a"]));
    let (bytes, end) = read_until_end(&mut eager, CLOSE_WITHIN);
    assert!(!matches!(end, End::StillOpen), "refused and closed");
    assert_one_error_reply(&bytes, 503);

    // The five held connections are served normally, and kept alive.
    for stream in &mut held {
        stream
            .write_all(&head(&["GET /health HTTP/1.1", "Host: a"]))
            .expect("write on a held connection");
        let reply = read_reply(stream, false);
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.header("connection"), None, "still kept alive");
    }
    assert!(
        a.wait_for_log("status=503", CLOSE_WITHIN).is_some(),
        "the refusal is logged: {:?}",
        a.logs()
    );

    // Once they are closed, new connections are served again. The server notices the closes
    // asynchronously, so allow it a moment.
    drop(held);
    let deadline = Instant::now() + CLOSE_WITHIN;
    loop {
        let mut stream = connect(a.addr);
        let _ = stream.write_all(&head(&[
            "GET /health HTTP/1.1",
            "Host: a",
            "Connection: close",
        ]));
        let (bytes, _) = read_until_end(&mut stream, CLOSE_WITHIN);
        let (replies, _) = parse_replies(&bytes, false);
        let status = replies.first().map(|r| r.status);
        if status == Some(200) {
            break;
        }
        assert_eq!(status, Some(503), "{:?}", String::from_utf8_lossy(&bytes));
        assert!(
            Instant::now() < deadline,
            "still refused after the held connections closed"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// The log line of a rejected request
// ---------------------------------------------------------------------------------------------

#[test]
fn a_logs_a_warning_with_status_and_error_for_a_rejected_request() {
    let a = Service::a(&[]);
    let raw = head_and_body(
        &[
            "POST /health HTTP/1.1",
            "Host: a",
            "Content-Length: 5",
            "Transfer-Encoding: chunked",
        ],
        b"0\r\n\r\n",
    );
    assert_rejected(a.addr, &raw, 400);
    let line = a
        .wait_for_log("status=400", CLOSE_WITHIN)
        .unwrap_or_else(|| panic!("no log line for the 400: {:?}", a.logs()));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("service=A"), "{line}");
    assert!(
        line.contains("error=\"bad message framing: both Content-Length and Transfer-Encoding\""),
        "{line}"
    );
}

#[test]
fn a_logs_a_warning_for_a_431() {
    let a = Service::a(&[]);
    let big = format!("X-Big: {}", "v".repeat(17_000));
    assert_rejected(
        a.addr,
        &head(&["GET /health HTTP/1.1", "Host: a", &big]),
        431,
    );
    let line = a
        .wait_for_log("status=431", CLOSE_WITHIN)
        .unwrap_or_else(|| panic!("no log line for the 431: {:?}", a.logs()));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("error=\"request head too large\""), "{line}");
}

// ---------------------------------------------------------------------------------------------
// Service B runs the same server
// ---------------------------------------------------------------------------------------------

/// B, pointed at a real A, and a check that B still calls A after a rejection.
fn assert_b_rejects(raw: &[u8], status: u16) {
    let a = Service::a(&[]);
    let b = Service::b(&a.url(), &[]);
    assert_rejected(b.addr, raw, status);
    let line = b
        .wait_for_log(&format!("status={status}"), CLOSE_WITHIN)
        .unwrap_or_else(|| panic!("B logs no {status}: {:?}", b.logs()));
    assert!(
        line.contains("service=B") && line.contains("WARN"),
        "{line}"
    );
    let reply = get(b.addr, "/call-echo?msg=still-here");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.json(),
        serde_json::json!({"service_b": "ok", "service_a": {"echo": "still-here"}})
    );
}

#[test]
fn b_content_length_with_transfer_encoding_is_400() {
    assert_b_rejects(
        &head_and_body(
            &[
                "GET /call-echo?msg=x HTTP/1.1",
                "Host: b",
                "Content-Length: 5",
                "Transfer-Encoding: chunked",
            ],
            b"0\r\n\r\n",
        ),
        400,
    );
}

#[test]
fn b_bad_chunk_size_is_400() {
    assert_b_rejects(
        &head_and_body(
            &[
                "GET /call-echo?msg=x HTTP/1.1",
                "Host: b",
                "Transfer-Encoding: chunked",
            ],
            b"zz\r\n",
        ),
        400,
    );
}

#[test]
fn b_head_over_16_kib_is_431() {
    let big = format!("X-Big: {}", "v".repeat(17_000));
    assert_b_rejects(
        &head(&["GET /call-echo?msg=x HTTP/1.1", "Host: b", &big]),
        431,
    );
}
