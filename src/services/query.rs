//! Query strings as HTML forms write them (`application/x-www-form-urlencoded`, WHATWG URL
//! §5): `name=value` pairs split on `&`, `+` for a space, `%XX` for any byte. Unlike most
//! decoders we are strict: a `%` not followed by two hex digits, or bytes that are not UTF-8
//! once decoded, is an error the client hears about, not something silently replaced.

use std::fmt;

/// Why a query value could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryError {
    /// A `%` not followed by two hex digits; carries the offending text.
    BadEscape(String),
    /// The decoded bytes are not UTF-8.
    NotUtf8,
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryError::BadEscape(s) => write!(f, "invalid percent-escape {s:?} in query"),
            QueryError::NotUtf8 => f.write_str("query value is not valid UTF-8 once decoded"),
        }
    }
}

impl std::error::Error for QueryError {}

/// The decoded value of the first `name` pair in `query`; `Ok(None)` when there is none.
/// A pair without `=` has an empty value.
pub fn query_param(query: Option<&str>, name: &str) -> Result<Option<String>, QueryError> {
    for pair in query.unwrap_or_default().split('&') {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        if decode(raw_name)? == name {
            return decode(raw_value).map(Some);
        }
    }
    Ok(None)
}

/// Decodes `+` and `%XX` escapes, then checks the bytes are UTF-8.
pub fn decode(s: &str) -> Result<String, QueryError> {
    if !s.contains(['%', '+']) {
        return Ok(s.to_owned());
    }
    let mut bytes = Vec::with_capacity(s.len());
    let mut rest = s.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        match b {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hex = tail.get(..2).and_then(|h| std::str::from_utf8(h).ok());
                let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
                // `u8::from_str_radix` takes a sign; only two plain hex digits count.
                match byte.filter(|_| hex.is_some_and(|h| h.bytes().all(|c| c.is_ascii_hexdigit())))
                {
                    Some(byte) => {
                        bytes.push(byte);
                        rest = &tail[2..];
                        continue;
                    }
                    None => {
                        let bad: String =
                            String::from_utf8_lossy(&rest[..rest.len().min(3)]).into();
                        return Err(QueryError::BadEscape(bad));
                    }
                }
            }
            other => bytes.push(other),
        }
        rest = tail;
    }
    String::from_utf8(bytes).map_err(|_| QueryError::NotUtf8)
}

/// Encodes `s` for a query value: unreserved characters (RFC 3986 §2.3) stay, every other
/// byte becomes `%XX`. Spaces become `%20`, which every decoder reads the same way.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(query: &str) -> Result<Option<String>, QueryError> {
        query_param(Some(query), "msg")
    }

    #[test]
    fn decodes_the_first_msg() {
        assert_eq!(msg("msg=hello"), Ok(Some("hello".into())));
        assert_eq!(msg("x=1&msg=a+b&msg=second"), Ok(Some("a b".into())));
        assert_eq!(msg("msg"), Ok(Some(String::new())));
        assert_eq!(msg("other=1"), Ok(None));
        assert_eq!(query_param(None, "msg"), Ok(None));
        assert_eq!(msg("m%73g=named"), Ok(Some("named".into())));
    }

    #[test]
    fn decodes_escapes_and_utf8() {
        assert_eq!(
            msg("msg=a%26b%3Dc%23d%20%2525%20%2B"),
            Ok(Some("a&b=c#d %25 +".into()))
        );
        assert_eq!(msg("msg=%E2%9C%93"), Ok(Some("✓".into())));
    }

    #[test]
    fn rejects_bad_escapes_and_bad_utf8() {
        assert_eq!(msg("msg=%ZZ"), Err(QueryError::BadEscape("%ZZ".into())));
        assert_eq!(msg("msg=abc%2"), Err(QueryError::BadEscape("%2".into())));
        assert_eq!(msg("msg=%+1"), Err(QueryError::BadEscape("%+1".into())));
        assert_eq!(msg("msg=%FF"), Err(QueryError::NotUtf8));
    }

    #[test]
    fn encode_round_trips() {
        for s in ["hello", "", "a&b=c#d %25 +", "✓", "100% ~ok"] {
            assert_eq!(decode(&encode(s)), Ok(s.to_owned()));
        }
        assert_eq!(encode("a b&✓"), "a%20b%26%E2%9C%93");
    }
}
