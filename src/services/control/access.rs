//! Who may use `/control`. It changes how A behaves for everyone, so it is off unless asked
//! for (`--control`), and then open to one of two kinds of peer:
//!
//! * without a token, only this machine: a loopback peer (127.0.0.0/8, `::1`, or an
//!   IPv4-mapped `::ffff:127.x.y.z`). Anyone who can reach A over the network is refused
//!   with `403`; no credentials would help, so none are asked for.
//! * with a token (`--control-token`), any peer that sends `Authorization: Bearer <token>`
//!   (RFC 6750 §2.1), loopback ones included; others get `401` with
//!   `WWW-Authenticate: Bearer` (RFC 6750 §3). The token is compared in constant time.

use std::fmt;
use std::hint::black_box;
use std::net::IpAddr;

use crate::http::message::Headers;

/// Who may use `/control`, once it is on.
#[derive(Debug, Clone)]
pub enum ControlAccess {
    /// Peers on this machine only, without credentials.
    LoopbackOnly,
    /// Any peer that sends `Authorization: Bearer <token>`.
    Token(BearerToken),
}

/// Why `--control` and `--control-token` cannot be used together as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessConfigError {
    /// A token without `--control`: the token would protect nothing, which is surely not
    /// what was meant.
    TokenWithoutControl,
    /// The token has characters a `Bearer` credential cannot carry.
    NotABearerToken,
}

impl fmt::Display for AccessConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token itself is never shown: this text goes to stderr, and from there to logs.
        match self {
            AccessConfigError::TokenWithoutControl => f.write_str(
                "--control-token is set but --control is not; add --control, or unset the token",
            ),
            AccessConfigError::NotABearerToken => f.write_str(
                "--control-token: use only letters, digits and -._~+/, then any = \
                 (RFC 6750 b64token)",
            ),
        }
    }
}

impl ControlAccess {
    /// The access `--control` (`on`) and `--control-token` (`token`, empty when not set) ask
    /// for; `None`: there is no `/control`.
    pub fn from_flags(on: bool, token: &str) -> Result<Option<ControlAccess>, AccessConfigError> {
        match (on, token.is_empty()) {
            (false, true) => Ok(None),
            (false, false) => Err(AccessConfigError::TokenWithoutControl),
            (true, true) => Ok(Some(ControlAccess::LoopbackOnly)),
            (true, false) => Ok(Some(ControlAccess::Token(BearerToken::new(token)?))),
        }
    }

    /// Whether a request from `peer` with `headers` may use `/control`, or why not.
    pub fn admit(&self, peer: IpAddr, headers: &Headers) -> Result<(), Refused> {
        match self {
            ControlAccess::LoopbackOnly if is_loopback(peer) => Ok(()),
            ControlAccess::LoopbackOnly => Err(Refused::NotLoopback),
            ControlAccess::Token(token) => {
                if token.matches(presented_token(headers)?) {
                    Ok(())
                } else {
                    Err(Refused::WrongToken)
                }
            }
        }
    }

    /// How it is logged at start: the rule, never the token.
    pub fn describe(&self) -> &'static str {
        match self {
            ControlAccess::LoopbackOnly => "control on: /control answers loopback peers only",
            ControlAccess::Token(_) => {
                "control on: /control answers any peer with the bearer token (--control-token)"
            }
        }
    }
}

/// Why a request may not use `/control`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No token is set, and the peer is not on this machine.
    NotLoopback,
    /// A token is set, and the request has no `Authorization: Bearer` field.
    NoToken,
    /// A token is set, and the request's is not it (or it sent more than one `Authorization`).
    WrongToken,
}

impl Refused {
    /// `403` where no credentials would help, `401` where the right ones would.
    pub fn status(self) -> u16 {
        match self {
            Refused::NotLoopback => 403,
            Refused::NoToken | Refused::WrongToken => 401,
        }
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refused::NotLoopback => "/control answers only loopback peers: A has no token",
            Refused::NoToken => "/control needs Authorization: Bearer <token>",
            Refused::WrongToken => "/control: the bearer token is wrong",
        })
    }
}

/// The secret `/control` asks for. Neither `Debug` nor any message shows it, and it has no
/// `PartialEq`: the one comparison is `matches`, in constant time.
#[derive(Clone)]
pub struct BearerToken(String);

impl BearerToken {
    /// A token of RFC 6750's `b64token` syntax, `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" /
    /// "+" / "/" ) *"="`: anything else could not be sent as it is in the header.
    pub fn new(token: &str) -> Result<BearerToken, AccessConfigError> {
        let body = token.trim_end_matches('=');
        let valid = !body.is_empty()
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
        if valid {
            Ok(BearerToken(token.to_owned()))
        } else {
            Err(AccessConfigError::NotABearerToken)
        }
    }

    /// Whether `presented` is the token. In constant time: every byte is compared whatever
    /// came before, so the time taken does not tell an attacker how much of a guess was
    /// right. Only the length can show, and it says little about a token worth the name.
    fn matches(&self, presented: &[u8]) -> bool {
        let token = self.0.as_bytes();
        if presented.len() != token.len() {
            return false;
        }
        let difference = token
            .iter()
            .zip(presented)
            .fold(0u8, |acc, (a, b)| black_box(acc | (a ^ b)));
        difference == 0
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<hidden>)")
    }
}

/// The token of the request's `Authorization: Bearer <token>` (RFC 6750 §2.1; the scheme is
/// compared without case, RFC 9110 §11.1). `NoToken` without a Bearer field; `WrongToken`
/// with two `Authorization` fields, where a proxy and A might each read another one.
fn presented_token(headers: &Headers) -> Result<&[u8], Refused> {
    let mut fields = headers.get_all("authorization");
    let value = match (fields.next(), fields.next()) {
        (None, _) => return Err(Refused::NoToken),
        (Some(_), Some(_)) => return Err(Refused::WrongToken),
        (Some(value), None) => value.trim_ascii(),
    };
    // `credentials = auth-scheme [ 1*SP token68 ]` (RFC 9110 §11.4).
    let (scheme, token) = match value.iter().position(|&b| b == b' ') {
        Some(space) => value.split_at(space),
        None => (value, &b""[..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(Refused::NoToken);
    }
    Ok(token.trim_ascii())
}

/// Whether `peer` is this machine: 127.0.0.0/8, `::1`, or an IPv4 loopback address written
/// as IPv6 (`::ffff:127.0.0.1`, what a dual-stack listener sees of an IPv4 client).
fn is_loopback(peer: IpAddr) -> bool {
    peer.to_canonical().is_loopback()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_authorization(values: &[&str]) -> Headers {
        let mut headers = Headers::new();
        for value in values {
            headers.push("Authorization", value.as_bytes());
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    fn token(text: &str) -> ControlAccess {
        ControlAccess::Token(BearerToken::new(text).expect("a token"))
    }

    #[test]
    fn loopback_is_this_machine_only() {
        for peer in ["127.0.0.1", "127.255.0.9", "::1", "::ffff:127.0.0.1"] {
            assert!(is_loopback(ip(peer)), "{peer}");
        }
        for peer in [
            "10.0.0.1",
            "192.168.1.2",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "fe80::1",
        ] {
            assert!(!is_loopback(ip(peer)), "{peer}");
        }
    }

    #[test]
    fn without_a_token_loopback_needs_no_credentials() {
        let access = ControlAccess::LoopbackOnly;
        let none = Headers::new();
        assert_eq!(access.admit(ip("127.0.0.1"), &none), Ok(()));
        assert_eq!(access.admit(ip("::1"), &none), Ok(()));
        assert_eq!(
            access.admit(ip("10.1.2.3"), &with_authorization(&["Bearer x"])),
            Err(Refused::NotLoopback),
            "no credentials open it to the network"
        );
        assert_eq!(Refused::NotLoopback.status(), 403);
    }

    #[test]
    fn with_a_token_every_peer_needs_it() {
        let access = token("s3cret-t0ken");
        for peer in ["127.0.0.1", "10.1.2.3"] {
            let peer = ip(peer);
            assert_eq!(access.admit(peer, &Headers::new()), Err(Refused::NoToken));
            for right in [
                "Bearer s3cret-t0ken",
                "bearer  s3cret-t0ken ",
                "BEARER s3cret-t0ken",
            ] {
                assert_eq!(
                    access.admit(peer, &with_authorization(&[right])),
                    Ok(()),
                    "{right}"
                );
            }
            for (sent, why) in [
                ("Bearer s3cret-t0keN", Refused::WrongToken),
                ("Bearer s3cret-t0ke", Refused::WrongToken),
                ("Bearer s3cret-t0ken2", Refused::WrongToken),
                ("Bearer", Refused::WrongToken),
                ("Basic czNjcmV0LXQwa2Vu", Refused::NoToken),
                ("s3cret-t0ken", Refused::NoToken),
            ] {
                assert_eq!(
                    access.admit(peer, &with_authorization(&[sent])),
                    Err(why),
                    "{sent}"
                );
            }
            let twice = with_authorization(&["Bearer s3cret-t0ken", "Bearer s3cret-t0ken"]);
            assert_eq!(access.admit(peer, &twice), Err(Refused::WrongToken));
        }
        assert_eq!(Refused::NoToken.status(), 401);
        assert_eq!(Refused::WrongToken.status(), 401);
    }

    #[test]
    fn tokens_have_the_bearer_syntax() {
        for good in ["abc", "A-Z.0_9~+/", "YWJj==", "x="] {
            assert!(BearerToken::new(good).is_ok(), "{good}");
        }
        for bad in ["", "=", "a b", "a=b", "tök", "a,b", "\"a\""] {
            assert_eq!(
                BearerToken::new(bad).err(),
                Some(AccessConfigError::NotABearerToken),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn flags_choose_the_access() {
        assert!(matches!(ControlAccess::from_flags(false, ""), Ok(None)));
        assert!(matches!(
            ControlAccess::from_flags(true, ""),
            Ok(Some(ControlAccess::LoopbackOnly))
        ));
        assert!(matches!(
            ControlAccess::from_flags(true, "t0ken"),
            Ok(Some(ControlAccess::Token(_)))
        ));
        assert_eq!(
            ControlAccess::from_flags(false, "t0ken").err(),
            Some(AccessConfigError::TokenWithoutControl)
        );
        assert_eq!(
            ControlAccess::from_flags(true, "t0 ken").err(),
            Some(AccessConfigError::NotABearerToken)
        );
    }

    #[test]
    fn the_token_is_never_shown() {
        let access = token("s3cret");
        assert!(!format!("{access:?}").contains("s3cret"));
        assert!(!access.describe().contains("s3cret"));
        let error = ControlAccess::from_flags(false, "s3cret").expect_err("refused");
        assert!(!error.to_string().contains("s3cret"));
    }
}
