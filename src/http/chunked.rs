//! The chunked transfer coding (RFC 9112 §7.1), decoded as a state machine over bytes.
//!
//! ```text
//! chunked-body = *chunk last-chunk trailer-section CRLF
//! chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! last-chunk   = 1*("0") [ chunk-ext ] CRLF
//! ```
//!
//! The decoder is fed whatever bytes have arrived, says how many it used, and remembers where
//! it stopped, so a chunk may be split across reads at any byte. It is strict on purpose: a
//! bare LF, a missing CRLF after chunk data, or a size with junk in it is an error, because two
//! parsers that disagree on where a chunk ends are exactly how request smuggling works.

use super::error::BodyError;
use super::limits::{MAX_CHUNK_LINE_BYTES, MAX_TRAILER_BYTES};
use super::message::{is_tchar, quoted_string_len};

/// Where the decoder is inside a chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a chunk-size line: hex digits, optional `;extensions`, CRLF.
    Size,
    /// Inside chunk data; this many bytes of it are still to come.
    Data(u64),
    /// Expecting the CRLF that ends a chunk's data.
    DataEnd,
    /// After the last (zero-size) chunk: trailer fields, until an empty line.
    Trailers { bytes_seen: usize },
    /// The empty line after the trailers has been read: the body is complete.
    Done,
}

/// Decodes one chunked body, appending its data to an output buffer of bounded size.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
    max_body_bytes: usize,
}

impl ChunkedDecoder {
    pub fn new(max_body_bytes: usize) -> Self {
        ChunkedDecoder {
            state: State::Size,
            max_body_bytes,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes as much of `input` as possible, appending chunk data to `out`. Returns how many
    /// bytes of `input` were used; the rest (an incomplete line, or bytes after the body) is
    /// for the caller to keep.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, BodyError> {
        let mut used = 0;
        loop {
            let rest = &input[used..];
            let step = match self.state {
                State::Done => return Ok(used),
                State::Size => self.size_line(rest)?,
                State::Data(left) => self.data(rest, left, out)?,
                State::DataEnd => self.data_end(rest)?,
                State::Trailers { bytes_seen } => self.trailer_line(rest, bytes_seen)?,
            };
            match step {
                Some(n) => used += n,
                None => return Ok(used),
            }
        }
    }

    /// `chunk-size [ chunk-ext ] CRLF`. Returns the bytes used, or `None` for "need more".
    fn size_line(&mut self, input: &[u8]) -> Result<Option<usize>, BodyError> {
        let Some(line) = take_line(input, MAX_CHUNK_LINE_BYTES)? else {
            return Ok(None);
        };
        let size = parse_chunk_size(line)?;
        self.state = if size == 0 {
            State::Trailers { bytes_seen: 0 }
        } else {
            State::Data(size)
        };
        Ok(Some(line.len() + 2))
    }

    /// Copies up to `left` bytes of chunk data into `out`.
    fn data(
        &mut self,
        input: &[u8],
        left: u64,
        out: &mut Vec<u8>,
    ) -> Result<Option<usize>, BodyError> {
        if input.is_empty() {
            return Ok(None);
        }
        let n = input.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if out.len() + n > self.max_body_bytes {
            return Err(BodyError::TooLarge);
        }
        out.extend_from_slice(&input[..n]);
        let left = left - n as u64;
        self.state = if left == 0 {
            State::DataEnd
        } else {
            State::Data(left)
        };
        Ok(Some(n))
    }

    /// The CRLF after chunk data: exactly these two bytes, nothing else.
    fn data_end(&mut self, input: &[u8]) -> Result<Option<usize>, BodyError> {
        match input {
            [b'\r', b'\n', ..] => {
                self.state = State::Size;
                Ok(Some(2))
            }
            [] | [b'\r'] => Ok(None),
            _ => Err(BodyError::BadChunk("missing CRLF after chunk data")),
        }
    }

    /// One trailer field line, ignored (RFC 9112 §7.1.2 lets a recipient discard them), or the
    /// empty line that ends the body.
    fn trailer_line(
        &mut self,
        input: &[u8],
        bytes_seen: usize,
    ) -> Result<Option<usize>, BodyError> {
        let Some(line) = take_line(input, MAX_CHUNK_LINE_BYTES)? else {
            return Ok(None);
        };
        let bytes_seen = bytes_seen + line.len() + 2;
        if bytes_seen > MAX_TRAILER_BYTES {
            return Err(BodyError::BadChunk("trailer section too large"));
        }
        if line.iter().any(|&b| b.is_ascii_control() && b != b'\t') {
            return Err(BodyError::BadChunk("control byte in a trailer field"));
        }
        self.state = if line.is_empty() {
            State::Done
        } else {
            State::Trailers { bytes_seen }
        };
        Ok(Some(line.len() + 2))
    }
}

/// The line at the front of `input`, without its CRLF; `None` if the CRLF has not arrived.
/// A bare LF, or a line longer than `max`, is an error.
fn take_line(input: &[u8], max: usize) -> Result<Option<&[u8]>, BodyError> {
    let Some(lf) = input.iter().take(max + 2).position(|&b| b == b'\n') else {
        return if input.len() >= max + 2 {
            Err(BodyError::BadChunk("chunk line too long"))
        } else {
            Ok(None)
        };
    };
    match input[..lf].strip_suffix(b"\r") {
        Some(line) => Ok(Some(line)),
        None => Err(BodyError::BadChunk("bare LF in chunked framing")),
    }
}

/// `chunk-size [ chunk-ext ]`: `1*HEXDIG`, then extensions, which we check and ignore.
fn parse_chunk_size(line: &[u8]) -> Result<u64, BodyError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(BodyError::BadChunk("chunk size is not a hex number"));
    }
    if digits > 16 {
        return Err(BodyError::BadChunk("chunk size overflows"));
    }
    check_chunk_ext(&line[digits..])?;
    let mut size: u64 = 0;
    for &d in &line[..digits] {
        let v = (d as char).to_digit(16).unwrap_or(0);
        size = (size << 4) | u64::from(v);
    }
    Ok(size)
}

/// Chunk extensions (RFC 9112 §7.1.1), which a recipient ignores but must still be able to
/// parse: a parser that skips them loosely may end a chunk-size line somewhere a strict one
/// does not (in a quoted string, say), and that disagreement is a smuggling vector.
///
/// ```text
/// chunk-ext     = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
/// chunk-ext-name = token
/// chunk-ext-val  = token / quoted-string
/// ```
///
/// Whitespace is allowed only where the grammar has BWS: before a `;`, and around the name's
/// `=`. `5 \r\n` (a space or tab after the size, or after an extension, with no `;` to
/// follow) is an error: a lenient parser that reads `5 ` as 5 and a strict one that refuses
/// it, in front of each other, disagree on where the body ends, which is how chunk-size
/// smuggling works. `5 ;a\r\n` is grammar and accepted.
fn check_chunk_ext(mut ext: &[u8]) -> Result<(), BodyError> {
    let mut after_size = true;
    while !ext.is_empty() {
        let Some(rest) = skip_bws(ext).strip_prefix(b";") else {
            return Err(BodyError::BadChunk(not_an_extension(ext, after_size)));
        };
        after_size = false;
        let rest = skip_bws(rest);
        let name = rest.iter().take_while(|&&b| is_tchar(b)).count();
        if name == 0 {
            return Err(BodyError::BadChunk("chunk extension without a name"));
        }
        let after_name = &rest[name..];
        // BWS after the name belongs to a `=`, or else to the next `;`: left for the loop.
        ext = match skip_bws(after_name).strip_prefix(b"=") {
            None => after_name,
            Some(value) => {
                let value = skip_bws(value);
                let len = if value.first() == Some(&b'"') {
                    quoted_string_len(value).ok_or(BodyError::BadChunk(
                        "unterminated quoted string in a chunk extension",
                    ))?
                } else {
                    value.iter().take_while(|&&b| is_tchar(b)).count()
                };
                if len == 0 {
                    return Err(BodyError::BadChunk("chunk extension without a value"));
                }
                &value[len..]
            }
        };
    }
    Ok(())
}

/// Why `rest`, the part of a chunk-size line after the size or after an extension, is not
/// the `;` of a next extension.
fn not_an_extension(rest: &[u8], after_size: bool) -> &'static str {
    if skip_bws(rest).is_empty() {
        "whitespace at the end of a chunk-size line"
    } else if after_size {
        "junk after chunk size"
    } else {
        "invalid chunk extension"
    }
}

/// `BWS = *( SP / HTAB )`, skipped.
fn skip_bws(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    &s[n..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(raw: &[u8]) -> Result<(Vec<u8>, usize, bool), BodyError> {
        let mut dec = ChunkedDecoder::new(1024);
        let mut out = Vec::new();
        let used = dec.decode(raw, &mut out)?;
        Ok((out, used, dec.is_done()))
    }

    #[test]
    fn decodes_chunks_with_extension_and_trailer() {
        let raw = b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\nNEXT";
        let (out, used, done) = decode_all(raw).expect("valid");
        assert_eq!(out, b"hello world");
        assert!(done);
        assert_eq!(&raw[used..], b"NEXT");
    }

    #[test]
    fn every_split_gives_the_same_body() {
        let raw = b"3\r\nabc\r\nA\r\n0123456789\r\n0\r\n\r\n";
        for cut in 0..raw.len() {
            let mut dec = ChunkedDecoder::new(1024);
            let mut out = Vec::new();
            let used = dec.decode(&raw[..cut], &mut out).expect("prefix valid");
            let rest = [&raw[used..cut], &raw[cut..]].concat();
            let used2 = dec.decode(&rest, &mut out).expect("rest valid");
            assert!(dec.is_done(), "cut {cut}");
            assert_eq!(used2, rest.len());
            assert_eq!(out, b"abc0123456789", "cut {cut}");
        }
    }

    #[test]
    fn bad_sizes_are_errors() {
        for raw in [
            &b"zz\r\n"[..],
            b"-1\r\n",
            b"\r\n",
            b"5 x\r\n",
            b"+5\r\n",
            b"11111111111111111\r\n",
        ] {
            assert!(
                matches!(decode_all(raw), Err(BodyError::BadChunk(_))),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn valid_chunk_extensions_are_ignored() {
        for line in [
            &b"5;a\r\n"[..],
            b"5;a=b\r\n",
            b"5 ; a = b ; c\r\n",
            b"5;a=\"quoted; \\\" value\"\r\n",
            b"5;a=\"\";b=c\r\n",
        ] {
            let raw = [line, &b"hello\r\n0\r\n\r\n"[..]].concat();
            let (out, _, done) = decode_all(&raw).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            assert_eq!(out, b"hello", "{line:?}");
            assert!(done);
        }
    }

    fn chunk_error(raw: &[u8]) -> String {
        match decode_all(raw) {
            Err(BodyError::BadChunk(what)) => what.to_owned(),
            other => panic!(
                "{:?}: expected BadChunk, got {other:?}",
                String::from_utf8_lossy(raw)
            ),
        }
    }

    #[test]
    fn a_chunk_extension_without_a_name_is_an_error() {
        assert_eq!(
            chunk_error(b"5;\r\nhello\r\n"),
            "chunk extension without a name"
        );
        assert_eq!(
            chunk_error(b"5;=x\r\nhello\r\n"),
            "chunk extension without a name"
        );
        assert_eq!(
            chunk_error(b"5;a;\r\nhello\r\n"),
            "chunk extension without a name"
        );
    }

    #[test]
    fn a_chunk_extension_name_that_is_not_a_token_is_an_error() {
        assert_eq!(
            chunk_error(b"5;bad[=x\r\nhello\r\n"),
            "invalid chunk extension"
        );
        assert_eq!(
            chunk_error(b"5;a=b c\r\nhello\r\n"),
            "invalid chunk extension"
        );
        assert_eq!(
            chunk_error(b"5;a=\r\nhello\r\n"),
            "chunk extension without a value"
        );
        assert_eq!(
            chunk_error(b"5;a=[\r\nhello\r\n"),
            "chunk extension without a value"
        );
    }

    #[test]
    fn an_unterminated_quoted_string_is_an_error_at_once() {
        // The line has ended; nothing more to wait for.
        assert_eq!(
            chunk_error(b"5;a=\"abc\r\n"),
            "unterminated quoted string in a chunk extension"
        );
        assert_eq!(
            chunk_error(b"5;a=\"abc\\\"\r\n"),
            "unterminated quoted string in a chunk extension"
        );
    }

    #[test]
    fn whitespace_after_the_chunk_size_is_an_error() {
        // RFC 9112 §7.1: BWS comes only before a chunk extension's `;`.
        for line in [&b"5 \r\n"[..], b"5\t\r\n", b"5 \t \r\n", b"0 \r\n"] {
            assert_eq!(
                chunk_error(&[line, &b"hello\r\n0\r\n\r\n"[..]].concat()),
                "whitespace at the end of a chunk-size line",
                "{line:?}"
            );
        }
    }

    #[test]
    fn whitespace_after_a_chunk_extension_is_an_error() {
        for line in [&b"5;a \r\n"[..], b"5;a=b\t\r\n", b"5;a=\"q\" \r\n"] {
            assert_eq!(
                chunk_error(&[line, &b"hello\r\n0\r\n\r\n"[..]].concat()),
                "whitespace at the end of a chunk-size line",
                "{line:?}"
            );
        }
    }

    #[test]
    fn whitespace_before_a_chunk_extension_is_accepted() {
        for line in [
            &b"5 ;a\r\n"[..],
            b"5\t;a\r\n",
            b"5;a ;b\r\n",
            b"5;a=b\t; c\r\n",
        ] {
            let raw = [line, &b"hello\r\n0 ;last\r\n\r\n"[..]].concat();
            let (out, used, done) = decode_all(&raw).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            assert_eq!(
                (out.as_slice(), used, done),
                (&b"hello"[..], raw.len(), true)
            );
        }
    }

    #[test]
    fn junk_after_the_size_and_after_an_extension_are_named_apart() {
        assert_eq!(chunk_error(b"5 x\r\nhello\r\n"), "junk after chunk size");
        assert_eq!(
            chunk_error(b"5;a x\r\nhello\r\n"),
            "invalid chunk extension"
        );
    }

    #[test]
    fn missing_crlf_after_data_is_an_error() {
        assert!(matches!(
            decode_all(b"3\r\nabcX\r\n0\r\n\r\n"),
            Err(BodyError::BadChunk(_))
        ));
    }

    #[test]
    fn bare_lf_is_an_error() {
        assert!(matches!(
            decode_all(b"3\nabc\r\n0\r\n\r\n"),
            Err(BodyError::BadChunk(_))
        ));
    }

    #[test]
    fn body_over_the_cap_is_too_large() {
        let mut dec = ChunkedDecoder::new(4);
        let mut out = Vec::new();
        assert!(matches!(
            dec.decode(b"5\r\nhello\r\n", &mut out),
            Err(BodyError::TooLarge)
        ));
    }

    #[test]
    fn endless_size_line_is_an_error() {
        let raw = vec![b'1'; MAX_CHUNK_LINE_BYTES + 10];
        assert!(matches!(decode_all(&raw), Err(BodyError::BadChunk(_))));
    }

    // The edges of every cap and rule, one byte either side (found by `cargo mutants`).

    /// Decodes `raw` whole with a body cap of `max`.
    fn decode_capped(raw: &[u8], max: usize) -> Result<(Vec<u8>, usize, bool), BodyError> {
        let mut dec = ChunkedDecoder::new(max);
        let mut out = Vec::new();
        let used = dec.decode(raw, &mut out)?;
        Ok((out, used, dec.is_done()))
    }

    #[test]
    fn a_body_of_exactly_the_cap_is_accepted() {
        let (out, _, done) = decode_capped(b"5\r\nhello\r\n0\r\n\r\n", 5).expect("at the cap");
        assert_eq!((out.as_slice(), done), (&b"hello"[..], true));
    }

    #[test]
    fn sixteen_hex_digits_are_a_chunk_size_and_seventeen_are_not() {
        let (out, _, done) =
            decode_all(b"0000000000000003\r\nabc\r\n0\r\n\r\n").expect("16 digits");
        assert_eq!((out.as_slice(), done), (&b"abc"[..], true));
        assert!(matches!(
            decode_all(b"00000000000000003\r\nabc\r\n0\r\n\r\n"),
            Err(BodyError::BadChunk("chunk size overflows"))
        ));
    }

    /// A chunk-size line of `len` bytes (before its CRLF): `3;` and an extension.
    fn size_line_of(len: usize) -> Vec<u8> {
        let mut line = b"3;".to_vec();
        line.resize(len, b'x');
        line
    }

    #[test]
    fn a_chunk_line_of_exactly_the_limit_is_accepted_and_one_byte_more_is_not() {
        let body = |line: Vec<u8>| [line, b"\r\nabc\r\n0\r\n\r\n".to_vec()].concat();
        let (out, _, done) =
            decode_all(&body(size_line_of(MAX_CHUNK_LINE_BYTES))).expect("at the limit");
        assert_eq!((out.as_slice(), done), (&b"abc"[..], true));
        assert!(matches!(
            decode_all(&body(size_line_of(MAX_CHUNK_LINE_BYTES + 1))),
            Err(BodyError::BadChunk("chunk line too long"))
        ));
    }

    #[test]
    fn an_unfinished_chunk_line_waits_until_it_cannot_end_in_time() {
        // `limit + 1` bytes: a CR may still come, then the LF that ends a `limit`-byte line.
        let (_, used, done) =
            decode_all(&size_line_of(MAX_CHUNK_LINE_BYTES + 1)).expect("need more");
        assert_eq!((used, done), (0, false));
        // `limit + 2` bytes and no LF: the line is already too long.
        assert!(matches!(
            decode_all(&size_line_of(MAX_CHUNK_LINE_BYTES + 2)),
            Err(BodyError::BadChunk("chunk line too long"))
        ));
    }

    /// A last chunk, then trailer lines of `sizes` bytes each (before their CRLFs), then the
    /// empty line: a trailer section of `sum(sizes) + 2 × (lines + 1)` bytes.
    fn with_trailers(sizes: &[usize]) -> Vec<u8> {
        let mut raw = b"0\r\n".to_vec();
        for &size in sizes {
            let mut line = b"X: ".to_vec();
            line.resize(size, b'a');
            raw.extend_from_slice(&line);
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"\r\n");
        raw
    }

    #[test]
    fn a_trailer_section_of_exactly_the_limit_is_accepted_and_one_byte_more_is_not() {
        // Eight lines of 1000 bytes (8 × 1002), one of 172 (174), the empty line (2): 8192.
        let mut sizes = vec![1000; 8];
        sizes.push(172);
        assert_eq!(MAX_TRAILER_BYTES, 8 * 1002 + 174 + 2);
        let (_, used, done) = decode_all(&with_trailers(&sizes)).expect("at the limit");
        assert_eq!((used, done), (with_trailers(&sizes).len(), true));
        sizes[8] += 1;
        assert!(matches!(
            decode_all(&with_trailers(&sizes)),
            Err(BodyError::BadChunk("trailer section too large"))
        ));
    }

    #[test]
    fn a_tab_in_a_trailer_is_accepted_and_other_control_bytes_are_not() {
        let (_, _, done) = decode_all(b"0\r\nX-T: a\tb\r\n\r\n").expect("a tab");
        assert!(done);
        assert!(matches!(
            decode_all(b"0\r\nX-T: a\x01b\r\n\r\n"),
            Err(BodyError::BadChunk("control byte in a trailer field"))
        ));
    }

    #[test]
    fn a_multi_digit_size_is_read_as_hex_most_significant_digit_first() {
        let mut raw = b"1a\r\n".to_vec();
        raw.extend_from_slice(&[b'z'; 26]);
        raw.extend_from_slice(b"\r\n0\r\n\r\n");
        let (out, used, done) = decode_all(&raw).expect("valid");
        assert_eq!((out.len(), used, done), (26, raw.len(), true));
    }

    #[test]
    fn a_tab_in_a_chunk_extension_is_accepted_and_other_control_bytes_are_not() {
        let (out, _, _) = decode_all(b"3;\tx=y\r\nabc\r\n0\r\n\r\n").expect("a tab");
        assert_eq!(out, b"abc");
        assert!(matches!(
            decode_all(b"3;\x01x=y\r\nabc\r\n0\r\n\r\n"),
            Err(BodyError::BadChunk("chunk extension without a name"))
        ));
    }

    // Equivalent mutant, not killed on purpose: in `parse_chunk_size`, `(size << 4) | v` and
    // `(size << 4) ^ v` are the same number, since the shift leaves the low four bits zero
    // and `v` is below 16.
}
