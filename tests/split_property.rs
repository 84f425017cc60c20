//! Property: however a valid pipelined byte stream is cut into reads, the server's reading
//! loop (`read_request_head` → `request_framing` → `read_body`, on one `BufferedStream`) yields the same
//! requests, and leaves nothing behind.
//!
//! No property-testing crate: a small xorshift64 generator, seeded from a constant and the case
//! number, builds each stream and its read sizes, so every failure names a case that can be
//! replayed exactly.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use echo_lab::http::body::{read_body, request_framing};
use echo_lab::http::conn::BufferedStream;
use echo_lab::http::head::read_request_head;
use echo_lab::http::limits::Limits;
use echo_lab::http::message::{Headers, RequestHead, Version};
use futures_lite::AsyncRead;

/// Cases of the random property; each is a whole pipelined stream.
const CASES: u64 = 2_000;

/// The body cap the server reads with.
const MAX_BODY: usize = 64 * 1024;

/// xorshift64 (Marsaglia, 2003): tiny, deterministic, good enough to pick test shapes.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // Never zero, or xorshift stays at zero forever.
        Rng((seed ^ 0x5EED_0FEC_401A_B5E5).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }

    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.range(0, items.len() - 1)]
    }

    fn string(&mut self, alphabet: &[u8], lo: usize, hi: usize) -> String {
        let len = self.range(lo, hi);
        (0..len).map(|_| char::from(*self.pick(alphabet))).collect()
    }
}

/// One request as the server should see it, and its bytes on the wire.
struct Generated {
    expected: (RequestHead, Vec<u8>),
    wire: Vec<u8>,
    /// 0: no body, 1: `Content-Length`, 2: chunked.
    kind: usize,
}

const TARGET_CHARS: &[u8] = b"abcxyz0189-._~/?=&%+";
const NAME_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
const VALUE_CHARS: &[u8] = b"abcdefgxyzABCXYZ0123456789 \t-_.,;:=/\"'()[]{}*!~";
/// A chunk extension value is a token or a quoted-string (RFC 9112 §7.1.1).
const EXT_TOKEN_CHARS: &[u8] = b"abcxyz019-.!~";
/// Inside a quoted-string: spaces, `=`, `;` and `,` are all plain text there.
const EXT_QUOTED_CHARS: &[u8] = b"abcxyz019=-. ;,";

/// A field value: visible characters, spaces and tabs inside but never at either end (OWS
/// around a value is not part of it, RFC 9110 §5.5).
fn field_value(rng: &mut Rng) -> String {
    let inner = rng.string(VALUE_CHARS, 0, 24);
    let edge = |rng: &mut Rng| char::from(*rng.pick(b"abcXYZ019/*"));
    if rng.chance(10) {
        return String::new();
    }
    format!("{}{}{}", edge(rng), inner, edge(rng))
}

/// Random body bytes, CR, LF and non-UTF-8 included: the body is never parsed.
fn body_bytes(rng: &mut Rng, max: usize) -> Vec<u8> {
    let len = rng.range(0, max);
    (0..len)
        .map(|_| match rng.range(0, 9) {
            0 => b'\r',
            1 => b'\n',
            2 => rng.next() as u8,
            _ => *rng.pick(b"hello world 0123456789"),
        })
        .collect()
}

/// The chunked coding of `body` with random chunk sizes, size spellings, extensions and
/// trailer fields.
fn chunked(rng: &mut Rng, body: &[u8]) -> Vec<u8> {
    let mut wire = Vec::new();
    let mut rest = body;
    let ext = |rng: &mut Rng| -> String {
        match rng.range(0, 3) {
            0 => String::new(),
            1 => format!(";{}", rng.string(b"abcxyz", 1, 5)),
            2 => {
                let value = if rng.chance(50) {
                    rng.string(EXT_TOKEN_CHARS, 1, 8)
                } else {
                    format!("\"{}\"", rng.string(EXT_QUOTED_CHARS, 0, 8))
                };
                format!(";{}={value}", rng.string(b"abc", 1, 3))
            }
            _ => format!(" ;a=b;{}", rng.string(b"xyz", 1, 3)),
        }
    };
    while !rest.is_empty() {
        let n = rng.range(1, rest.len().min(17));
        let size = match rng.range(0, 2) {
            0 => format!("{n:x}"),
            1 => format!("{n:X}"),
            _ => format!("00{n:x}"),
        };
        wire.extend_from_slice(size.as_bytes());
        wire.extend_from_slice(ext(rng).as_bytes());
        wire.extend_from_slice(b"\r\n");
        wire.extend_from_slice(&rest[..n]);
        wire.extend_from_slice(b"\r\n");
        rest = &rest[n..];
    }
    wire.extend_from_slice(if rng.chance(20) { b"000" } else { b"0" });
    wire.extend_from_slice(ext(rng).as_bytes());
    wire.extend_from_slice(b"\r\n");
    for _ in 0..rng.range(0, 2) {
        let line = format!(
            "X-Trailer-{}: {}\r\n",
            rng.string(NAME_CHARS, 1, 6),
            field_value(rng)
        );
        wire.extend_from_slice(line.as_bytes());
    }
    wire.extend_from_slice(b"\r\n");
    wire
}

/// One valid request: GET or HEAD, a target, Host (required by 1.1), some extra fields, and
/// no body, a `Content-Length` body or a chunked one.
fn request(rng: &mut Rng) -> Generated {
    let method = *rng.pick(&["GET", "HEAD"]);
    let target = format!("/{}", rng.string(TARGET_CHARS, 0, 16));
    let version = if rng.chance(15) {
        Version::Http10
    } else {
        Version::Http11
    };
    let mut fields: Vec<(String, Vec<u8>)> = Vec::new();
    if version == Version::Http11 || rng.chance(50) {
        let host = format!(
            "{}:{}",
            rng.string(b"abc.xyz019", 1, 10),
            rng.range(1, 65535)
        );
        fields.push((
            (*rng.pick(&["Host", "host", "HOST"])).to_owned(),
            host.into_bytes(),
        ));
    }
    for _ in 0..rng.range(0, 4) {
        let name = format!("X-{}", rng.string(NAME_CHARS, 1, 10));
        fields.push((name, field_value(rng).into_bytes()));
    }
    // HTTP/1.0 has no chunked coding: a Transfer-Encoding there is refused (RFC 9112 §6.1).
    let kinds = if version == Version::Http10 { 1 } else { 2 };
    let kind = rng.range(0, kinds);
    let body = match kind {
        0 => Vec::new(),
        1 => {
            let body = body_bytes(rng, 40);
            let name = *rng.pick(&["Content-Length", "content-length"]);
            fields.push((name.to_owned(), body.len().to_string().into_bytes()));
            body
        }
        _ => {
            let body = body_bytes(rng, 60);
            let name = *rng.pick(&["Transfer-Encoding", "transfer-encoding"]);
            let value = *rng.pick(&["chunked", "Chunked", "CHUNKED"]);
            fields.push((name.to_owned(), value.as_bytes().to_vec()));
            body
        }
    };
    // The framing field may come anywhere among the others.
    if fields.len() > 1 {
        let last = fields.len() - 1;
        let at = rng.range(0, last);
        fields.swap(at, last);
    }

    let mut wire = format!("{method} {target} {}\r\n", version.as_str()).into_bytes();
    let mut headers = Headers::new();
    for (name, value) in &fields {
        let ows = *rng.pick(&["", " ", "  ", "\t"]);
        let tail = *rng.pick(&["", "", " ", "\t "]);
        wire.extend_from_slice(format!("{name}:{ows}").as_bytes());
        wire.extend_from_slice(value);
        wire.extend_from_slice(format!("{tail}\r\n").as_bytes());
        headers.push(name, value);
    }
    wire.extend_from_slice(b"\r\n");
    let is_chunked = fields
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"));
    if is_chunked {
        wire.extend_from_slice(&chunked(rng, &body));
    } else {
        wire.extend_from_slice(&body);
    }
    let head = RequestHead {
        method: method.to_owned(),
        target,
        version,
        headers,
    };
    Generated {
        expected: (head, body),
        wire,
        kind,
    }
}

/// A stream that hands out its bytes in the given reads, in order (empty ones skipped: a
/// read of zero bytes would mean the end of the stream).
struct Reads {
    parts: Vec<Vec<u8>>,
    next: usize,
    offset: usize,
}

impl Reads {
    fn new(parts: Vec<Vec<u8>>) -> Reads {
        let parts = parts.into_iter().filter(|p| !p.is_empty()).collect();
        Reads {
            parts,
            next: 0,
            offset: 0,
        }
    }

    /// `wire` cut into reads of 1..=`max` bytes, sizes drawn from `rng`.
    fn random(wire: &[u8], max: usize, rng: &mut Rng) -> Reads {
        let mut parts = Vec::new();
        let mut rest = wire;
        while !rest.is_empty() {
            let n = rng.range(1, max.min(rest.len()));
            parts.push(rest[..n].to_vec());
            rest = &rest[n..];
        }
        Reads::new(parts)
    }
}

impl AsyncRead for Reads {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let Some(part) = this.parts.get(this.next) else {
            return Poll::Ready(Ok(0));
        };
        // A read asks for at most `buf.len()` bytes; the rest of this part comes next time.
        let n = (part.len() - this.offset).min(buf.len());
        buf[..n].copy_from_slice(&part[this.offset..this.offset + n]);
        this.offset += n;
        if this.offset == part.len() {
            this.next += 1;
            this.offset = 0;
        }
        Poll::Ready(Ok(n))
    }
}

/// The server's reading loop, to the end of the stream. Panics on any error, and if bytes
/// are left over.
fn read_all(reads: Reads) -> Vec<(RequestHead, Vec<u8>)> {
    let limits = Limits::default();
    let mut conn = BufferedStream::new(reads);
    let mut requests = Vec::new();
    smol::block_on(async {
        while let Some(head) = read_request_head(&mut conn, &limits)
            .await
            .unwrap_or_else(|e| panic!("request {}: head: {e}", requests.len()))
        {
            let framing = request_framing(&head)
                .unwrap_or_else(|e| panic!("request {}: framing: {e}", requests.len()));
            let body = read_body(&mut conn, framing, MAX_BODY)
                .await
                .unwrap_or_else(|e| panic!("request {}: body: {e}", requests.len()));
            requests.push((head, body));
        }
    });
    assert!(
        conn.buffered().is_empty(),
        "bytes left: {:?}",
        conn.buffered()
    );
    requests
}

#[test]
fn any_split_of_a_pipelined_stream_yields_the_same_requests() {
    let mut reads_by_size = [0usize; 5];
    let mut bodies_by_kind = [0usize; 3];
    let mut total_requests = 0;
    let mut total_bytes = 0;
    for case in 0..CASES {
        let mut rng = Rng::new(case);
        let generated: Vec<Generated> = (0..rng.range(1, 6)).map(|_| request(&mut rng)).collect();
        let wire: Vec<u8> = generated.iter().flat_map(|g| g.wire.clone()).collect();
        for g in &generated {
            bodies_by_kind[g.kind] += 1;
        }
        let expected: Vec<_> = generated.into_iter().map(|g| g.expected).collect();
        let which = rng.range(0, 4);
        let max_read = [1, 2, 7, 64, 4096][which];
        reads_by_size[which] += 1;
        let reads = Reads::random(&wire, max_read, &mut rng);
        let parsed = std::panic::catch_unwind(|| read_all(reads)).unwrap_or_else(|_| {
            panic!(
                "case {case} (reads of 1..={max_read} bytes) failed on:\n{}",
                String::from_utf8_lossy(&wire)
            )
        });
        assert_eq!(
            parsed,
            expected,
            "case {case} (reads of 1..={max_read} bytes) on:\n{}",
            String::from_utf8_lossy(&wire)
        );
        total_requests += expected.len();
        total_bytes += wire.len();
    }
    eprintln!(
        "{CASES} streams, {total_requests} requests, {total_bytes} bytes; \
         no body / Content-Length / chunked: {bodies_by_kind:?}; \
         streams read in 1, 1..=2, 1..=7, 1..=64, 1..=4096-byte reads: {reads_by_size:?}"
    );
    // Every read size was drawn (1-byte reads included), and every kind of body.
    assert!(reads_by_size.iter().all(|&n| n > 0), "{reads_by_size:?}");
    assert!(bodies_by_kind.iter().all(|&n| n > 0), "{bodies_by_kind:?}");
    assert!(total_requests > 2 * CASES as usize);
}

/// Three pipelined requests: fields with odd spacing, a `Content-Length` body, a chunked body
/// with extensions and a trailer.
fn three_requests() -> (Vec<u8>, Vec<(RequestHead, Vec<u8>)>) {
    let wire = b"GET /echo?msg=one HTTP/1.1\r\nHost: a:8080\r\nX-Request-Id:\tr-1 \r\n\r\n\
HEAD /health HTTP/1.1\r\nhost: a\r\nContent-Length: 12\r\n\r\nhello\r\nworld\
GET /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nX-Last: yes\r\n\r\n\
5;name=value\r\nabc\r\n\r\nA ; q=\"x y\"\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n"
        .to_vec();
    let head = |method: &str, target: &str, fields: &[(&str, &str)]| {
        let mut headers = Headers::new();
        for (n, v) in fields {
            headers.push(n, v.as_bytes());
        }
        RequestHead {
            method: method.to_owned(),
            target: target.to_owned(),
            version: Version::Http11,
            headers,
        }
    };
    let expected = vec![
        (
            head(
                "GET",
                "/echo?msg=one",
                &[("Host", "a:8080"), ("X-Request-Id", "r-1")],
            ),
            Vec::new(),
        ),
        (
            head(
                "HEAD",
                "/health",
                &[("host", "a"), ("Content-Length", "12")],
            ),
            b"hello\r\nworld".to_vec(),
        ),
        (
            head(
                "GET",
                "/x",
                &[
                    ("Host", "a"),
                    ("Transfer-Encoding", "chunked"),
                    ("X-Last", "yes"),
                ],
            ),
            b"abc\r\n0123456789".to_vec(),
        ),
    ];
    (wire, expected)
}

#[test]
fn every_single_split_point_of_three_requests_yields_them() {
    let (wire, expected) = three_requests();
    assert_eq!(
        read_all(Reads::new(vec![wire.clone()])),
        expected,
        "one read"
    );
    for cut in 1..wire.len() {
        let reads = Reads::new(vec![wire[..cut].to_vec(), wire[cut..].to_vec()]);
        assert_eq!(read_all(reads), expected, "cut at byte {cut}");
    }
}

#[test]
fn one_byte_reads_of_three_requests_yield_them() {
    let (wire, expected) = three_requests();
    let reads = Reads::new(wire.iter().map(|&b| vec![b]).collect());
    assert_eq!(read_all(reads), expected);
}
