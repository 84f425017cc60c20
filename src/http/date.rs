//! The `Date` field (RFC 9110 §6.6.1): an origin server with a clock MUST send it on every
//! 2xx, 3xx and 4xx response (and may on the others; we send it on all but `100 Continue`).
//!
//! Its form is the IMF-fixdate of RFC 9110 §5.6.7, always 29 bytes, always GMT:
//!
//! ```text
//! Sun, 06 Nov 1994 08:49:37 GMT
//! ```
//!
//! The value changes once a second, so formatting it per response would be wasted work. Each
//! thread keeps the last one it formatted, with the second it is for: a response reads the
//! clock (a vDSO call, no syscall) and copies 29 bytes, and only the first response of a new
//! second formats again. Per thread rather than one global: no lock and no cache line bouncing
//! between cores, at the price of formatting once per second per thread instead of once.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

/// The length of an IMF-fixdate.
pub const IMF_FIXDATE_LEN: usize = 29;

thread_local! {
    /// The second (since the UNIX epoch) last formatted on this thread, and its text.
    /// `u64::MAX` is no second we will ever see, so the first call formats.
    static CACHED: Cell<(u64, [u8; IMF_FIXDATE_LEN])> = const {
        Cell::new((u64::MAX, [0; IMF_FIXDATE_LEN]))
    };
}

/// Appends the current time as an IMF-fixdate to `out`.
pub fn push_now(out: &mut Vec<u8>) {
    // A clock before 1970 is a broken clock; 1970 is as good an answer as any.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHED.with(|cached| {
        let (second, mut text) = cached.get();
        if second != now {
            text = imf_fixdate(now);
            cached.set((now, text));
        }
        out.extend_from_slice(&text);
    });
}

const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// `secs` since the UNIX epoch as an IMF-fixdate. The year has four digits in the grammar;
/// past the year 9999 only its last four are written.
pub fn imf_fixdate(secs: u64) -> [u8; IMF_FIXDATE_LEN] {
    let days = secs / 86_400;
    let in_day = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    // 1970-01-01 was a Thursday: `DAYS` starts there.
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    put_digits(&mut out[5..7], day);
    out[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    put_digits(&mut out[12..16], year);
    put_digits(&mut out[17..19], in_day / 3600);
    put_digits(&mut out[20..22], in_day / 60 % 60);
    put_digits(&mut out[23..25], in_day % 60);
    out
}

/// Writes the last `slot.len()` decimal digits of `n`, zero-padded, into `slot`.
fn put_digits(slot: &mut [u8], mut n: u64) {
    for digit in slot.iter_mut().rev() {
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// The (year, month 1–12, day 1–31) of a count of days since 1970-01-01, in the proleptic
/// Gregorian calendar. Howard Hinnant's `civil_from_days`: shift the epoch to 0000-03-01, so
/// that February, with its leap day, is the last month of the year; then count 400-year eras
/// (146,097 days each), years within the era, and days within the year.
pub fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Days from 0000-03-01 to 1970-01-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months counted from March: 0 is March, 11 is February.
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(secs: u64) -> String {
        String::from_utf8(imf_fixdate(secs).to_vec()).expect("ascii")
    }

    #[test]
    fn known_dates() {
        for (secs, expected) in [
            (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
            // The example of RFC 9110 §5.6.7.
            (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"),
            // Leap days: 2000 is a leap year (divisible by 400), 2024 an ordinary one.
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
            (1_709_210_096, "Thu, 29 Feb 2024 12:34:56 GMT"),
            (1_798_761_599, "Thu, 31 Dec 2026 23:59:59 GMT"),
            (4_102_444_799, "Thu, 31 Dec 2099 23:59:59 GMT"),
            (253_402_300_799, "Fri, 31 Dec 9999 23:59:59 GMT"),
        ] {
            assert_eq!(text(secs), expected, "{secs}");
        }
    }

    #[test]
    fn every_day_for_five_centuries_agrees_with_counting_days() {
        // An independent, slow calendar: walk the days one month at a time.
        let leap =
            |y: u64| y.is_multiple_of(4) && (!y.is_multiple_of(100) || y.is_multiple_of(400));
        let mut days = 0u64;
        for year in 1970..2470 {
            for month in 1..=12u64 {
                let length = match month {
                    2 if leap(year) => 29,
                    2 => 28,
                    4 | 6 | 9 | 11 => 30,
                    _ => 31,
                };
                for day in 1..=length {
                    assert_eq!(civil_from_days(days), (year, month, day), "day {days}");
                    days += 1;
                }
            }
        }
    }

    #[test]
    fn the_cached_value_is_now() {
        let mut out = Vec::new();
        push_now(&mut out);
        push_now(&mut out);
        assert_eq!(out.len(), 2 * IMF_FIXDATE_LEN);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_secs();
        let first = &out[..IMF_FIXDATE_LEN];
        // Within the second this test ran in (or the one before, if the clock just ticked).
        assert!(first == imf_fixdate(now) || first == imf_fixdate(now - 1));
        assert!(first.ends_with(b" GMT"));
    }
}
