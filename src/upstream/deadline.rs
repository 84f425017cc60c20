//! Deadline propagation: B tells A how long B will still wait, so A can stop work nobody is
//! waiting for.
//!
//! Without it, a call B has given up on keeps running in A: B answered `503` after one second,
//! but A still spends its time (and its chaos delay) on an answer that will be thrown away. Under
//! load that abandoned work is what keeps a slow service slow. With it, A races its work against
//! the time B sent and drops the work when that time is up; work that arrives already expired
//! is refused at once.
//!
//! Prior art, and why our header looks the way it does:
//!
//! * gRPC sends `grpc-timeout` on every call: an ASCII integer of at most 8 digits followed by
//!   a unit letter (`H`, `M`, `S`, `m`, `u`, `n`), e.g. `grpc-timeout: 995m`. It is relative
//!   (time left, not a wall-clock time), and each hop subtracts the time it has used before
//!   passing it on.
//! * Envoy sends `x-envoy-expected-rq-timeout-ms` to the upstream: the route's timeout in
//!   milliseconds, a plain decimal integer, also relative.
//!
//! We take the relative count of both, because the two hosts' clocks need not agree: an
//! absolute "give up at 12:00:01.250" is wrong by however far A's clock is from B's, while
//! "you have 250 ms" is wrong only by the time the request spends on the wire. We take
//! Envoy's plain milliseconds rather than gRPC's unit letters, because one unit is easier to
//! read in a wire trace and to parse by hand, and a millisecond is finer than anything this
//! lab measures. Unlike Envoy's header, ours is what is left of the deadline at the moment the
//! attempt is sent, not the configured timeout, so a retry late in a call tells A the truth.

use std::time::Duration;

/// The header B sends with every attempt: the milliseconds the caller will still wait,
/// relative (not a clock time, so clock skew between hosts does not matter).
pub const HEADER: &str = "X-Timeout-Ms";

/// Most digits we accept. 9 digits is at most 999,999,999 ms, about 11.5 days: far beyond any
/// deadline worth passing on, small enough that the value never overflows, and a bound on how
/// much of a header we read. (gRPC caps its own at 8 digits for the same reason.)
pub const MAX_DIGITS: usize = 9;

/// The largest value we send or accept, in milliseconds: nine 9s.
const MAX_MS: u64 = 999_999_999;

/// The header value for `remaining`: whole milliseconds, rounded up, so that A's deadline
/// (its arrival + this) never comes before B's own: B's timer fires first and B reports its
/// `timeout`, and A gives up a moment later, after the time the request spent on the wire.
/// Rounded down, A could give up first and its "abandoned" `503` would race B's timer, turning
/// some of B's timeouts into `upstream_status`. A may work a moment too long, never give up
/// too early. Nothing left is `0`: A refuses that at once. A longer wait than [`MAX_DIGITS`]
/// can say is sent as the largest value (it is still "a very long time", and a receiver would
/// ignore a longer number).
pub fn format_remaining(remaining: Duration) -> String {
    let ms = remaining.as_nanos().div_ceil(1_000_000);
    ms.min(u128::from(MAX_MS)).to_string()
}

/// The time left that a header value says, or `None` when the value is not `1*DIGIT` of at
/// most [`MAX_DIGITS`] digits. A `None` means the header is ignored: A then works as if no
/// deadline had been sent. We parse by hand, like `Content-Length`: `str::parse` would also
/// accept a leading `+`.
pub fn parse_remaining(value: &str) -> Option<Duration> {
    let digits = value.as_bytes();
    if digits.is_empty() || digits.len() > MAX_DIGITS {
        return None;
    }
    let mut ms: u64 = 0;
    for &byte in digits {
        if !byte.is_ascii_digit() {
            return None;
        }
        // Cannot overflow: at most 9 digits.
        ms = ms * 10 + u64::from(byte - b'0');
    }
    Some(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn formats_whole_milliseconds() {
        assert_eq!(format_remaining(ms(1000)), "1000");
        assert_eq!(format_remaining(ms(1)), "1");
    }

    #[test]
    fn formats_rounding_up_so_a_never_gives_up_before_b() {
        assert_eq!(format_remaining(Duration::from_micros(999_001)), "1000");
        assert_eq!(format_remaining(Duration::from_micros(1_500)), "2");
        assert_eq!(format_remaining(Duration::from_nanos(1)), "1");
    }

    #[test]
    fn formats_zero_when_none_left() {
        assert_eq!(format_remaining(Duration::ZERO), "0");
    }

    #[test]
    fn formats_a_huge_wait_as_the_largest_value() {
        assert_eq!(
            format_remaining(Duration::from_secs(86_400 * 365)),
            "999999999"
        );
        assert_eq!(format_remaining(Duration::MAX), "999999999");
    }

    #[test]
    fn parses_digits() {
        assert_eq!(parse_remaining("0"), Some(ms(0)));
        assert_eq!(parse_remaining("250"), Some(ms(250)));
        assert_eq!(parse_remaining("0250"), Some(ms(250)));
    }

    #[test]
    fn parses_nine_digits() {
        assert_eq!(parse_remaining("999999999"), Some(ms(999_999_999)));
    }

    #[test]
    fn refuses_ten_digits() {
        assert_eq!(parse_remaining("1000000000"), None);
        assert_eq!(parse_remaining("0000000001"), None);
    }

    #[test]
    fn refuses_empty() {
        assert_eq!(parse_remaining(""), None);
    }

    #[test]
    fn refuses_signs() {
        assert_eq!(parse_remaining("+5"), None);
        assert_eq!(parse_remaining("-5"), None);
    }

    #[test]
    fn refuses_spaces() {
        // The HTTP layer trims optional whitespace around a field value; anything left is bad.
        assert_eq!(parse_remaining(" 5"), None);
        assert_eq!(parse_remaining("5 "), None);
        assert_eq!(parse_remaining("5 0"), None);
    }

    #[test]
    fn refuses_units_and_fractions() {
        assert_eq!(parse_remaining("5m"), None);
        assert_eq!(parse_remaining("1.5"), None);
        assert_eq!(parse_remaining("0x10"), None);
    }

    #[test]
    fn refuses_non_ascii_digits() {
        // U+0665 ARABIC-INDIC DIGIT FIVE is a digit to `char::is_numeric`, not to us.
        assert_eq!(parse_remaining("\u{0665}"), None);
    }

    #[test]
    fn round_trips() {
        for n in [0, 1, 999, 1000, 123_456_789, 999_999_999] {
            assert_eq!(parse_remaining(&format_remaining(ms(n))), Some(ms(n)));
        }
    }
}
