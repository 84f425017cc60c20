//! The request-target and `Host` grammar a request head must follow (RFC 9112 §3.2,
//! RFC 9110 §4.2.1 and §7.2, RFC 3986 §3), beyond the bytes httparse already refuses.
//!
//! httparse takes any visible byte in a target and leaves field values to us. These checks
//! turn what would be a `404` for a path that happens not to exist, or a `Host` nobody could
//! mean, into the `400` the grammar calls for.

use super::error::RequestError;
use super::message::{RequestHead, Version};

/// The form of a request-target (RFC 9112 §3.2). It decides where the target URI's host
/// comes from: from the target itself in absolute-form, from `Host` in the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetForm {
    /// `/path?query`: the host is in `Host`.
    Origin,
    /// `scheme:...`, such as `http://host/path`: the target names its own host, if any.
    Absolute,
    /// `*`, for `OPTIONS` only: the host is in `Host`.
    Asterisk,
}

/// The request-target grammar (RFC 9112 §3.2) beyond what httparse checks (it takes any
/// visible byte, and any UTF-8):
///
/// * a fragment (`#...`) is never sent: it belongs to the client (RFC 9110 §7.1);
/// * only ASCII: raw bytes above 0x7F are outside RFC 3986 and must be percent-encoded;
/// * the form: origin-form (`/path?query`), absolute-form (`scheme:...`), or the asterisk-form
///   `*`, which exists for `OPTIONS` only (RFC 9112 §3.2.4). (The authority-form of `CONNECT`
///   reads as a scheme here and then finds no route: we are no proxy.)
/// * an `http` or `https` URI in absolute-form has a host: RFC 9110 §4.2.1 says a recipient
///   MUST reject one with an empty host (`http:///path`) as invalid.
///
/// Percent-escapes are not checked here: a bad one in the query is for the service to name.
pub fn check_target(method: &str, target: &str) -> Result<TargetForm, RequestError> {
    let bytes = target.as_bytes();
    if bytes.contains(&b'#') {
        return Err(RequestError::Malformed("fragment in the request-target"));
    }
    if !bytes.is_ascii() {
        return Err(RequestError::Malformed(
            "non-ASCII byte in the request-target",
        ));
    }
    if target == "*" {
        return if method == "OPTIONS" {
            Ok(TargetForm::Asterisk)
        } else {
            Err(RequestError::Malformed(
                "asterisk-form request-target without OPTIONS",
            ))
        };
    }
    if bytes.first() == Some(&b'/') {
        return Ok(TargetForm::Origin);
    }
    if !has_scheme(bytes) {
        return Err(RequestError::Malformed(
            "request-target is not a path or an absolute URI",
        ));
    }
    if is_http_uri_without_host(target) {
        return Err(RequestError::Malformed(
            "http URI with an empty host in the request-target",
        ));
    }
    Ok(TargetForm::Absolute)
}

/// Whether `target`, an absolute URI, is `http:` or `https:` (any case, RFC 3986 §3.1) but
/// has no host: no `//authority` at all, or an authority whose host is empty
/// (`http:///x`, `http://:80/`, `http://user@/`). RFC 9110 §4.2.1:
/// `http-URI = "http" "://" authority path-abempty [ "?" query ]`, and the host is not empty.
fn is_http_uri_without_host(target: &str) -> bool {
    let Some((scheme, rest)) = target.split_once(':') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return false;
    }
    let Some(rest) = rest.strip_prefix("//") else {
        return true;
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host_and_port = authority.rsplit('@').next().unwrap_or_default();
    let host = if host_and_port.starts_with('[') {
        host_and_port
    } else {
        host_and_port.split(':').next().unwrap_or_default()
    };
    host.is_empty()
}

/// Whether `target` starts with `scheme ":"`, where scheme = ALPHA *( ALPHA / DIGIT / "+" /
/// "-" / "." ) (RFC 3986 §3.1).
fn has_scheme(target: &[u8]) -> bool {
    let Some(colon) = target.iter().position(|&b| b == b':') else {
        return false;
    };
    let scheme = &target[..colon];
    scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// An HTTP/1.1 request must carry exactly one `Host`, and its value must be
/// `uri-host [ ":" port ]` (RFC 9112 §3.2, RFC 9110 §7.2): 400 otherwise. An HTTP/1.0
/// request may leave it out.
///
/// A `Host` without a host in it, empty (the target URI has no authority, RFC 9112 §3.2) or
/// only `:port`, is fine when the target is in absolute-form and names its host itself
/// (which a server then uses, RFC 9112 §3.2.2). An origin-form or asterisk-form request to
/// an `http` server would then stand for an `http` URI with an empty host, which RFC 9110
/// §4.2.1 says a recipient MUST reject as invalid: 400, in HTTP/1.0 as in HTTP/1.1.
pub fn check_host(head: &RequestHead, form: TargetForm) -> Result<(), RequestError> {
    let mut hosts = head.headers.get_all("host");
    match (head.version, hosts.next(), hosts.next()) {
        (_, Some(_), Some(_)) => Err(RequestError::Malformed("more than one Host field")),
        (Version::Http11, None, _) => Err(RequestError::Malformed("HTTP/1.1 request without Host")),
        (_, Some(host), None) if !is_valid_host(host) => {
            Err(RequestError::Malformed("invalid Host field value"))
        }
        (_, Some(host), None) if names_no_host(host) && form != TargetForm::Absolute => {
            Err(RequestError::Malformed(
                "empty host in Host (only an absolute-form target may omit it)",
            ))
        }
        _ => Ok(()),
    }
}

/// Whether a valid `Host` value leaves the host out: `""`, or only a port (`:80`).
fn names_no_host(value: &[u8]) -> bool {
    value.is_empty() || value.starts_with(b":")
}

/// `Host = uri-host [ ":" port ]` (RFC 9110 §7.2), with RFC 3986 §3.2.2's
/// `uri-host = IP-literal / IPv4address / reg-name` and `port = *DIGIT`.
///
/// An empty value is grammar (the URI has no authority; `check_host` decides whether the
/// request may say so), and so is an empty port (`host:`). We refuse a port over 65535, which names no TCP port, and a comma: RFC 3986 allows it in a
/// reg-name, but no host has one, and a Host of `a,b` is two Host fields someone joined.
/// Userinfo (`@`), a path (`/`), whitespace: none is in the grammar.
fn is_valid_host(value: &[u8]) -> bool {
    let (host, port) = if let Some(rest) = value.strip_prefix(b"[") {
        // IP-literal: everything up to `]` is the address, then `:port` or nothing.
        let Some(close) = rest.iter().position(|&b| b == b']') else {
            return false;
        };
        let port = match &rest[close + 1..] {
            [] => None,
            [b':', port @ ..] => Some(port),
            _ => return false,
        };
        if !is_ip_literal(&rest[..close]) {
            return false;
        }
        (None, port)
    } else {
        match value.iter().rposition(|&b| b == b':') {
            Some(colon) => (Some(&value[..colon]), Some(&value[colon + 1..])),
            None => (Some(value), None),
        }
    };
    let host_ok = host.is_none_or(is_reg_name);
    let port_ok = port.is_none_or(|p| {
        p.iter().all(u8::is_ascii_digit) && (p.len() <= 5 && parse_port(p) <= 65535)
    });
    host_ok && port_ok
}

/// `*( unreserved / pct-encoded / sub-delims )` without the comma (see `is_valid_host`).
/// An IPv4 address is a reg-name too, as far as the grammar goes.
fn is_reg_name(name: &[u8]) -> bool {
    let mut i = 0;
    while i < name.len() {
        match name[i] {
            b'%' => {
                let escape = name.get(i + 1..i + 3);
                if !escape.is_some_and(|e| e.iter().all(u8::is_ascii_hexdigit)) {
                    return false;
                }
                i += 3;
                continue;
            }
            b if b.is_ascii_alphanumeric() => {}
            b'-' | b'.' | b'_' | b'~' => {}
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b';' | b'=' => {}
            _ => return false,
        }
        i += 1;
    }
    true
}

/// `IPv6address / IPvFuture` inside the brackets (RFC 3986 §3.2.2).
fn is_ip_literal(inside: &[u8]) -> bool {
    if let [b'v' | b'V', rest @ ..] = inside {
        // IPvFuture = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
        let Some(dot) = rest.iter().position(|&b| b == b'.') else {
            return false;
        };
        let (digits, tail) = (&rest[..dot], &rest[dot + 1..]);
        return !digits.is_empty()
            && digits.iter().all(u8::is_ascii_hexdigit)
            && !tail.is_empty()
            // One byte at a time, `is_reg_name` is unreserved / sub-delims less the comma.
            && tail
                .iter()
                .all(|&b| b == b':' || b == b',' || is_reg_name(&[b]));
    }
    std::str::from_utf8(inside).is_ok_and(|s| s.parse::<std::net::Ipv6Addr>().is_ok())
}

/// A port of at most five digits, as a number.
fn parse_port(digits: &[u8]) -> u32 {
    digits.iter().fold(0, |n, &d| n * 10 + u32::from(d - b'0'))
}

#[cfg(test)]
mod tests {
    use crate::http::head::fixtures::{lines, parse, status_of};

    fn host_status(host: &str) -> Option<u16> {
        status_of(&lines(&["GET / HTTP/1.1", &format!("Host:{host}")]))
    }

    #[test]
    fn valid_host_values_are_accepted() {
        for host in [
            "a",
            "example.com",
            "example.com:8080",
            "example.com:",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:8080",
            "[2001:db8::7]",
            "[v1.fe80::a+en1]",
            "ex%41mple",
            "a-b_c~d!$&'()*+;=",
            "localhost:65535",
        ] {
            assert_eq!(host_status(host), None, "Host: {host:?}");
        }
    }

    #[test]
    fn invalid_host_values_are_400() {
        for host in [
            "user@example.com",
            "user:pw@example.com",
            "example.com/x",
            "a, b",
            "a,b",
            "exa mple.com",
            "example.com:80x",
            "example.com:65536",
            "example.com:123456",
            "example.com:-1",
            "[::1",
            "[::1]x",
            "[nonsense]",
            "::1",
            "ex%4mple",
            "ex%zzmple",
            "a\"b",
            "a?b",
            "a#b",
        ] {
            assert_eq!(host_status(host), Some(400), "Host: {host:?}");
        }
    }

    /// The error a request made of `lines` is refused with.
    fn error_of(lines_: &[&str]) -> String {
        parse(&lines(lines_)).expect_err("refused").to_string()
    }

    const EMPTY_HOST: &str =
        "malformed request: empty host in Host (only an absolute-form target may omit it)";

    #[test]
    fn an_empty_host_with_an_origin_form_target_is_400() {
        for host in ["", " ", "\t", ":", ":80"] {
            let field = format!("Host:{host}");
            assert_eq!(
                error_of(&["GET / HTTP/1.1", &field]),
                EMPTY_HOST,
                "{host:?}"
            );
            assert_eq!(
                error_of(&["GET / HTTP/1.0", &field]),
                EMPTY_HOST,
                "{host:?}"
            );
        }
    }

    #[test]
    fn an_empty_host_with_the_asterisk_form_is_400() {
        assert_eq!(error_of(&["OPTIONS * HTTP/1.1", "Host:"]), EMPTY_HOST);
    }

    #[test]
    fn an_empty_host_with_an_absolute_form_target_is_accepted() {
        // The target names its own host (or, as `urn:`, has none): RFC 9112 §3.2.2.
        for target in ["http://a/health", "urn:x"] {
            for host in ["", ":80"] {
                let line = format!("GET {target} HTTP/1.1");
                let field = format!("Host:{host}");
                assert!(
                    parse(&lines(&[&line, &field])).is_ok_and(|h| h.is_some()),
                    "{target} with Host:{host}"
                );
            }
        }
    }

    #[test]
    fn an_http_uri_without_a_host_in_absolute_form_is_400() {
        // RFC 9110 §4.2.1: a recipient MUST reject an `http` URI with an empty host.
        for target in [
            "http:///health",
            "http://",
            "http://?x",
            "http://:80/health",
            "http://user@/health",
            "https:///health",
            "HTTP:///health",
            "hTtPs://:443",
            "http:/health",
            "http:health",
        ] {
            let line = format!("GET {target} HTTP/1.1");
            assert_eq!(
                error_of(&[&line, "Host: a"]),
                "malformed request: http URI with an empty host in the request-target",
                "{target}"
            );
        }
    }

    #[test]
    fn an_http_uri_with_a_host_in_absolute_form_is_accepted() {
        for target in [
            "http://a",
            "http://a?x",
            "http://a:80/health",
            "http://user@a/health",
            "https://[::1]:8443/health",
            "HTTP://a/health",
            "httpx:///health",
            "xhttp:///health",
        ] {
            let line = format!("GET {target} HTTP/1.1");
            assert!(
                parse(&lines(&[&line, "Host: a"])).is_ok_and(|h| h.is_some()),
                "{target}"
            );
        }
    }

    #[test]
    fn invalid_host_is_also_400_in_http10() {
        assert_eq!(
            status_of(&lines(&["GET / HTTP/1.0", "Host: user@a"])),
            Some(400)
        );
    }

    #[test]
    fn a_fragment_in_the_target_is_400() {
        assert_eq!(
            status_of(&lines(&["GET /health#x HTTP/1.1", "Host: a"])),
            Some(400)
        );
        assert_eq!(
            status_of(&lines(&["GET /# HTTP/1.1", "Host: a"])),
            Some(400)
        );
    }

    #[test]
    fn non_ascii_bytes_in_the_target_are_400() {
        // Valid UTF-8 gets past httparse; invalid UTF-8 does not.
        assert_eq!(
            status_of(&lines(&["GET /h\u{e9}alth HTTP/1.1", "Host: a"])),
            Some(400)
        );
        assert_eq!(
            status_of(b"GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n"),
            Some(400)
        );
    }

    #[test]
    fn asterisk_form_is_for_options_only() {
        let (head, _) = parse(&lines(&["OPTIONS * HTTP/1.1", "Host: a"]))
            .expect("valid")
            .expect("complete");
        assert_eq!(head.target, "*");
        for method in ["GET", "HEAD", "POST", "DELETE"] {
            let line = format!("{method} * HTTP/1.1");
            assert_eq!(
                status_of(&lines(&[&line, "Host: a"])),
                Some(400),
                "{method}"
            );
        }
    }

    #[test]
    fn a_target_that_is_no_path_nor_uri_is_400() {
        assert_eq!(
            status_of(&lines(&["GET health HTTP/1.1", "Host: a"])),
            Some(400)
        );
        assert_eq!(
            status_of(&lines(&["GET ?x HTTP/1.1", "Host: a"])),
            Some(400)
        );
        // The absolute-form of any scheme is grammar; it only finds no route.
        assert!(parse(&lines(&["GET urn:x HTTP/1.1", "Host: a"])).is_ok());
    }

    // The edges: each test below holds one rule at its exact boundary.

    #[test]
    fn a_scheme_starts_with_a_letter() {
        assert_eq!(
            status_of(&lines(&["GET 1urn:x HTTP/1.1", "Host: a"])),
            Some(400)
        );
    }

    #[test]
    fn a_port_has_at_most_five_digits() {
        assert_eq!(host_status("a:000080"), Some(400));
    }

    #[test]
    fn a_bad_byte_right_after_an_escape_is_400() {
        assert_eq!(host_status("ex%41\""), Some(400));
    }

    #[test]
    fn ipvfuture_needs_a_hex_version() {
        assert_eq!(host_status("[v.x]"), Some(400));
        assert_eq!(host_status("[vz.x]"), Some(400));
    }

    #[test]
    fn ipvfuture_needs_an_address_after_the_dot() {
        assert_eq!(host_status("[v1.]"), Some(400));
    }

    #[test]
    fn ipvfuture_takes_a_comma_but_no_slash() {
        assert_eq!(host_status("[v1.a,b]"), None);
        assert_eq!(host_status("[v1.a/b]"), Some(400));
    }
}
