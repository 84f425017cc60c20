//! B's flags: where A is, the call's deadline, and which calling patterns are on (`Patterns`).
//!
//! Each help text that states a number is built from the constant the pattern uses, so
//! `--help` says what the code does: change `DEFAULT_OPEN_FOR` and `--breaker`'s help changes
//! with it. The tests below read the numbers back out of the help and compare them with the
//! defaults the patterns are built with.

use std::num::{NonZeroU64, NonZeroUsize};
use std::time::Duration;

use super::breaker::{BreakerConfig, DEFAULT_FAILURE_RATIO, DEFAULT_OPEN_FOR, DEFAULT_WINDOW};
use super::budget::{BudgetConfig, DEFAULT_MIN_PER_SEC, DEFAULT_RATIO};
use super::call::MAX_ATTEMPTS;
use super::hedge::{DEFAULT_FLOOR, DEFAULT_QUANTILE, HedgeDelay};
use super::outlier::{DEFAULT_BASE_EJECTION, DEFAULT_CONSECUTIVE_FAILURES, OutlierConfig};
use super::replicas::RESOLVE_INTERVAL;
use super::{ATTEMPTS_PER_DEADLINE, Balance, DEFAULT_MAX_IN_FLIGHT, Patterns};
use crate::config::{ConfigError, Flag, Settings};
use crate::http::client::Upstream;

/// Where B looks for A when it is not told: A's own default port on this host.
pub const DEFAULT_SERVICE_A_URL: &str = "http://127.0.0.1:8080";

/// The deadline of a whole call to A (`--timeout-ms`): the contract's one second, inside which
/// B always answers, with A's echo or with a `503` that says why not.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(1);

/// B's own flags, after the ones both services take (`config::common_flags`).
pub fn flags() -> Vec<Flag> {
    vec![
        Flag::value_from(
            "service-a-url",
            "SERVICE_A_URL",
            DEFAULT_SERVICE_A_URL,
            format!(
                "where service A is; several URLs separated by commas are replicas, and so is \
                 each address of a name (looked up again every {} s)",
                seconds(RESOLVE_INTERVAL)
            ),
        ),
        Flag::value_from(
            "timeout-ms",
            "TIMEOUT_MS",
            DEFAULT_DEADLINE.as_millis(),
            "deadline for the whole call to A".to_owned(),
        ),
        Flag::switch(
            "resilient",
            "RESILIENT",
            "every pattern below on, with the settings the README explains",
        ),
        Flag::value(
            "balance",
            "BALANCE",
            "",
            "round-robin or peak-ewma (power of two choices) [default: round-robin; peak-ewma \
             with --resilient]",
        ),
        Flag::switch_from(
            "eject",
            "EJECT",
            format!(
                "take a replica out of rotation after {DEFAULT_CONSECUTIVE_FAILURES} consecutive \
                 failures, for {} s, doubling",
                seconds(DEFAULT_BASE_EJECTION)
            ),
        ),
        Flag::switch_from(
            "breaker",
            "BREAKER",
            format!(
                "when {} % of the last {DEFAULT_WINDOW} calls failed, answer circuit_open at \
                 once; probe every {} s",
                percent(DEFAULT_FAILURE_RATIO),
                seconds(DEFAULT_OPEN_FOR)
            ),
        ),
        Flag::switch_from(
            "retries",
            "RETRIES",
            format!(
                "retry a failed attempt on another replica, within a budget of {} % + {}/s; \
                 with the value naive (--retries naive, RETRIES=naive): every failure up to \
                 {MAX_ATTEMPTS} attempts of 1/{ATTEMPTS_PER_DEADLINE} of the deadline each, no \
                 budget, limit or breaker: what NOT to do, it multiplies the load on an A that \
                 is failing (the metastable demo)",
                percent(DEFAULT_RATIO),
                DEFAULT_MIN_PER_SEC
            ),
        ),
        Flag::value_from(
            "hedge",
            "HEDGE",
            "",
            format!(
                "off, auto (after the p{} latency, at least {} ms) or MS: send a second attempt \
                 when the first is that late [default: off; auto with --resilient]",
                percent(DEFAULT_QUANTILE),
                DEFAULT_FLOOR.as_millis()
            ),
        ),
        Flag::value_from(
            "attempt-timeout-ms",
            "ATTEMPT_TIMEOUT_MS",
            "",
            format!(
                "deadline of one attempt inside the call's [default: the call's; 1/\
                 {ATTEMPTS_PER_DEADLINE} of it with --resilient]"
            ),
        ),
        Flag::switch(
            "propagate-deadline",
            "PROPAGATE_DEADLINE",
            "tell A how long B will wait (X-Timeout-Ms), so A can give up when B has",
        ),
        Flag::value_from(
            "max-in-flight",
            "MAX_IN_FLIGHT",
            "",
            format!(
                "most calls to A in flight; past it, answer overloaded at once [default: no \
                 cap; {DEFAULT_MAX_IN_FLIGHT} with --resilient]"
            ),
        ),
        // Given either way, it wins over --resilient (`patterns` below).
        Flag::switch_without_default(
            "adaptive-limit",
            "ADAPTIVE_LIMIT",
            "learn how many calls each replica takes at once from its latency (a queue shows \
             as latency over its no-load latency); past it, answer overloaded at once, and \
             send no retry or hedge to a replica at its limit [default: off; on with \
             --resilient, --adaptive-limit=off to leave it out]",
        ),
    ]
}

/// Every `--service-a-url` entry, each a replica or a name for several.
pub fn upstreams(settings: &Settings) -> Result<Vec<Upstream>, ConfigError> {
    let parse = |url: &str| {
        Upstream::from_url(url.trim())
            .map_err(|e| ConfigError::Invalid(format!("--service-a-url: {e}")))
    };
    settings
        .raw("service-a-url")
        .split(',')
        .map(parse)
        .collect()
}

/// The deadline of a whole call (`--timeout-ms`). 0 ms is refused: it would fail every call
/// before it starts.
pub fn deadline(settings: &Settings) -> Result<Duration, ConfigError> {
    Ok(Duration::from_millis(
        settings.get::<NonZeroU64>("timeout-ms")?.get(),
    ))
}

/// The patterns the flags switch on, for calls with `deadline`.
pub fn patterns(settings: &Settings, deadline: Duration) -> Result<Patterns, ConfigError> {
    let mut patterns = if settings.switch("resilient")? {
        Patterns::all(deadline)
    } else {
        Patterns::default()
    };
    let invalid = |flag: &str, e: String| ConfigError::Invalid(format!("--{flag}: {e}"));
    match settings.raw("balance") {
        "" => {}
        "round-robin" => patterns.balance = Balance::RoundRobin,
        "peak-ewma" => patterns.balance = Balance::PeakEwma,
        other => {
            return Err(invalid(
                "balance",
                format!("{other:?} is not round-robin or peak-ewma"),
            ));
        }
    }
    if settings.switch("eject")? {
        patterns.ejection = Some(OutlierConfig::default());
    }
    if settings.switch("breaker")? {
        patterns.breaker = Some(BreakerConfig::default());
    }
    if settings.raw("retries") == "naive" {
        // Each attempt gets its share of the deadline, so that a timed-out attempt leaves
        // time for the next: that is how naive retries pile onto an A that is slow.
        patterns.retries = None;
        patterns.naive_retries = true;
        patterns.attempt_timeout = Some(deadline / ATTEMPTS_PER_DEADLINE);
    } else if settings.switch("retries")? {
        patterns.retries = Some(BudgetConfig::default());
    }
    // Given, it wins over --resilient either way: --resilient --adaptive-limit=off is every
    // pattern but the limit (what the overload benchmarks compare it with).
    if !settings.raw("adaptive-limit").is_empty() {
        patterns.adaptive_limit = settings.switch("adaptive-limit")?;
    }
    match settings.raw("hedge") {
        "" => {}
        "off" => patterns.hedge = None,
        "auto" => patterns.hedge = Some(HedgeDelay::default()),
        _ => {
            let ms = settings.get::<NonZeroU64>("hedge")?.get();
            patterns.hedge = Some(HedgeDelay::Fixed(Duration::from_millis(ms)));
        }
    }
    if !settings.raw("attempt-timeout-ms").is_empty() {
        let ms = settings.get::<NonZeroU64>("attempt-timeout-ms")?.get();
        patterns.attempt_timeout = Some(Duration::from_millis(ms));
    }
    if settings.switch("propagate-deadline")? {
        patterns.propagate_deadline = true;
    }
    if !settings.raw("max-in-flight").is_empty() {
        let max = settings.get::<NonZeroUsize>("max-in-flight")?.get();
        patterns.max_in_flight = Some(max);
    }
    Ok(patterns)
}

/// `0.7` for 700 ms, `5` for 5 s: seconds as a person writes them.
fn seconds(duration: Duration) -> String {
    duration.as_secs_f64().to_string()
}

/// `25` for 0.25, `90` for 0.9 (rounded to a whole number, as a help text states it).
fn percent(fraction: f64) -> String {
    format!("{:.0}", fraction * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The help text of B's flag `name`.
    fn help(name: &str) -> String {
        flags()
            .into_iter()
            .find(|f| f.name == name)
            .map(|f| f.help.into_owned())
            .unwrap_or_else(|| panic!("no flag --{name}"))
    }

    /// The number written just before `unit` in `text` (`"for 1 s"`, `"0.7 s"`, `"25 %"`).
    fn number_before(text: &str, unit: &str) -> f64 {
        let at = text
            .find(unit)
            .unwrap_or_else(|| panic!("no {unit:?} in {text:?}"));
        let before = text[..at].trim_end();
        let start = before
            .rfind(|c: char| !(c.is_ascii_digit() || c == '.'))
            .map_or(0, |i| i + 1);
        before[start..]
            .parse()
            .unwrap_or_else(|e| panic!("no number before {unit:?} in {text:?}: {e}"))
    }

    /// The number written just after `prefix` in `text` (`"every 5"`, `"p90"`).
    fn number_after(text: &str, prefix: &str) -> f64 {
        let at = text
            .find(prefix)
            .unwrap_or_else(|| panic!("no {prefix:?} in {text:?}"))
            + prefix.len();
        let digits: String = text[at..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        digits
            .trim_end_matches('.')
            .parse()
            .unwrap_or_else(|e| panic!("no number after {prefix:?} in {text:?}: {e}"))
    }

    /// The default of B's flag `name`.
    fn default_of(name: &str) -> String {
        flags()
            .into_iter()
            .find(|f| f.name == name)
            .map(|f| f.default.into_owned())
            .unwrap_or_else(|| panic!("no flag --{name}"))
    }

    #[test]
    fn the_breakers_help_states_its_defaults() {
        let config = BreakerConfig::default();
        let text = help("breaker");
        assert_eq!(number_before(&text, " %"), config.failure_ratio * 100.0);
        assert_eq!(number_after(&text, "of the last "), config.window as f64);
        assert_eq!(
            number_after(&text, "probe every "),
            config.open_for.as_secs_f64()
        );
    }

    #[test]
    fn the_ejections_help_states_its_defaults() {
        let config = OutlierConfig::default();
        let text = help("eject");
        assert_eq!(
            number_before(&text, " consecutive failures"),
            f64::from(config.consecutive_failures)
        );
        assert_eq!(
            number_after(&text, "for "),
            config.base_ejection.as_secs_f64()
        );
    }

    #[test]
    fn the_retries_help_states_the_budgets_defaults() {
        let config = BudgetConfig::default();
        let text = help("retries");
        assert_eq!(number_before(&text, " %"), config.ratio * 100.0);
        assert_eq!(number_before(&text, "/s"), config.min_per_sec);
    }

    #[test]
    fn the_hedges_help_states_its_automatic_delay() {
        let HedgeDelay::Quantile { q, floor } = HedgeDelay::default() else {
            panic!("the default hedge delay is learned");
        };
        let text = help("hedge");
        assert_eq!(number_after(&text, "after the p"), (q * 100.0).round());
        assert_eq!(number_before(&text, " ms)"), floor.as_millis() as f64);
    }

    #[test]
    fn the_resilient_settings_in_the_help_are_those_of_patterns_all() {
        let deadline = Duration::from_millis(900);
        let all = Patterns::all(deadline);
        let share = number_after(&help("attempt-timeout-ms"), "1/");
        assert_eq!(all.attempt_timeout, Some(deadline.div_f64(share)));
        let cap = number_before(&help("max-in-flight"), " with --resilient");
        assert_eq!(all.max_in_flight.map(|n| n as f64), Some(cap));
        let limit = help("adaptive-limit");
        assert_eq!(
            limit.contains("on with --resilient"),
            all.adaptive_limit,
            "{limit}"
        );
    }

    #[test]
    fn the_defaults_are_the_constants() {
        assert_eq!(default_of("timeout-ms"), "1000");
        assert_eq!(
            default_of("timeout-ms"),
            DEFAULT_DEADLINE.as_millis().to_string()
        );
        assert_eq!(default_of("service-a-url"), DEFAULT_SERVICE_A_URL);
        assert_eq!(
            number_after(&help("service-a-url"), "again every "),
            RESOLVE_INTERVAL.as_secs_f64()
        );
    }

    fn settings(args: &[&str]) -> Result<Settings, ConfigError> {
        Settings::parse(
            "usage",
            &flags(),
            args.iter().map(|s| s.to_string()),
            |_| None,
        )
    }

    #[test]
    fn flags_switch_patterns_on_one_by_one() {
        let deadline = DEFAULT_DEADLINE;
        let none = patterns(&settings(&[]).expect("parsed"), deadline).expect("valid");
        assert_eq!(none, Patterns::default());
        let some = settings(&["--breaker", "--hedge", "40", "--max-in-flight=7"]).expect("parsed");
        let some = patterns(&some, deadline).expect("valid");
        assert_eq!(some.breaker, Some(BreakerConfig::default()));
        assert_eq!(
            some.hedge,
            Some(HedgeDelay::Fixed(Duration::from_millis(40)))
        );
        assert_eq!(some.max_in_flight, Some(7));
        assert_eq!(some.ejection, None);
        let all = settings(&["--resilient", "--hedge", "off"]).expect("parsed");
        let all = patterns(&all, deadline).expect("valid");
        assert_eq!(
            all,
            Patterns {
                hedge: None,
                ..Patterns::all(deadline)
            }
        );
    }

    #[test]
    fn naive_retries_and_the_adaptive_limit() {
        let deadline = DEFAULT_DEADLINE;
        for args in [&["--retries", "naive"][..], &["--retries=naive"][..]] {
            let naive = patterns(&settings(args).expect("parsed"), deadline).expect("valid");
            assert!(naive.naive_retries && naive.retries.is_none(), "{args:?}");
            let share = deadline / ATTEMPTS_PER_DEADLINE;
            assert_eq!(naive.attempt_timeout, Some(share));
        }
        let alone = settings(&["--adaptive-limit"]).expect("parsed");
        let alone = patterns(&alone, deadline).expect("valid");
        assert_eq!(
            alone,
            Patterns {
                adaptive_limit: true,
                ..Patterns::default()
            }
        );
        assert!(
            Patterns::all(deadline).adaptive_limit,
            "part of --resilient"
        );
        let without = settings(&["--resilient", "--adaptive-limit=off"]).expect("parsed");
        let without = patterns(&without, deadline).expect("valid");
        assert_eq!(
            without,
            Patterns {
                adaptive_limit: false,
                ..Patterns::all(deadline)
            }
        );
        let bad = settings(&["--retries", "sometimes"]).expect("parsed");
        assert!(patterns(&bad, deadline).is_err());
    }

    #[test]
    fn bad_pattern_values_name_their_flag() {
        for (args, flag) in [
            (&["--balance", "random"][..], "--balance"),
            (&["--hedge", "0"][..], "--hedge"),
            (
                &["--attempt-timeout-ms", "soon"][..],
                "--attempt-timeout-ms",
            ),
            (&["--max-in-flight", "0"][..], "--max-in-flight"),
        ] {
            let parsed = settings(args).expect("parsed");
            match patterns(&parsed, DEFAULT_DEADLINE) {
                Err(ConfigError::Invalid(text)) => assert!(text.contains(flag), "{text}"),
                other => panic!("{args:?}: {other:?}"),
            }
        }
        let zero = settings(&["--timeout-ms", "0"]).expect("parsed");
        assert!(deadline(&zero).is_err());
        let bad = settings(&["--service-a-url", "http://a:1,ftp://b"]).expect("parsed");
        assert!(upstreams(&bad).is_err());
    }
}
