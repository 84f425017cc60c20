//! Command-line flags and their environment variables. A flag wins over its variable, the
//! variable over the default. Each service lists its flags (both take `common_flags`; B's own
//! are in `upstream::flags`); `--help` prints them, and a help text that states a number
//! builds it from the constant it describes.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use crate::http::limits::{Limits, SHUTDOWN_GRACE};

/// One setting: `--name VALUE` (or `--name=VALUE`), or the variable `env`.
///
/// A default or a help text that states a number is built from the constant that number comes
/// from (`Flag::value_from`, `Flag::switch_from`), so the two cannot drift apart; a plain text
/// with no number in it may be a literal (`Flag::value`, `Flag::switch`, usable in a `const`).
#[derive(Debug, Clone)]
pub struct Flag {
    pub name: &'static str,
    pub env: &'static str,
    pub default: Cow<'static, str>,
    pub help: Cow<'static, str>,
    /// A switch: `--name` alone means `true` (its variable takes `1`/`true`/`0`/`false`).
    /// A word after it that is not a flag is its value (`--retries naive`).
    pub switch: bool,
}

impl Flag {
    pub const fn value(
        name: &'static str,
        env: &'static str,
        default: &'static str,
        help: &'static str,
    ) -> Flag {
        Flag {
            name,
            env,
            default: Cow::Borrowed(default),
            help: Cow::Borrowed(help),
            switch: false,
        }
    }

    pub const fn switch(name: &'static str, env: &'static str, help: &'static str) -> Flag {
        Flag {
            name,
            env,
            default: Cow::Borrowed("false"),
            help: Cow::Borrowed(help),
            switch: true,
        }
    }

    /// A value flag whose default and help are made from constants (`format!` of them).
    pub fn value_from(
        name: &'static str,
        env: &'static str,
        default: impl fmt::Display,
        help: String,
    ) -> Flag {
        Flag {
            default: Cow::Owned(default.to_string()),
            help: Cow::Owned(help),
            ..Flag::value(name, env, "", "")
        }
    }

    /// A switch without a default: its value is empty unless it was given, so that given
    /// either way (`--name=off` too) it can override a preset such as B's `--resilient`.
    pub const fn switch_without_default(
        name: &'static str,
        env: &'static str,
        help: &'static str,
    ) -> Flag {
        Flag {
            name,
            env,
            default: Cow::Borrowed(""),
            help: Cow::Borrowed(help),
            switch: true,
        }
    }

    /// A switch whose help is made from constants.
    pub fn switch_from(name: &'static str, env: &'static str, help: String) -> Flag {
        Flag {
            help: Cow::Owned(help),
            ..Flag::switch(name, env, "")
        }
    }
}

/// Flags both services take.
pub fn common_flags() -> Vec<Flag> {
    vec![
        Flag::value("host", "HOST", "127.0.0.1", "address to listen on"),
        Flag::value("port", "PORT", "", "port to listen on; 0 picks a free one"),
        Flag::value_from(
            "max-connections",
            "MAX_CONNECTIONS",
            Limits::default().max_connections,
            "open connections at most; past it new ones get 503 and are closed".to_owned(),
        ),
        Flag::value(
            "threads",
            "THREADS",
            "",
            "threads serving connections [default: one per core]",
        ),
        Flag::switch(
            "trace-wire",
            "TRACE_WIRE",
            "log every HTTP head as it crossed the wire, both directions, and each body's start",
        ),
        Flag::value(
            "log-format",
            "LOG_FORMAT",
            "text",
            "log lines as text, or as json (one object per line)",
        ),
        Flag::value_from(
            "shutdown-grace-ms",
            "SHUTDOWN_GRACE_MS",
            SHUTDOWN_GRACE.as_millis(),
            "on SIGTERM/SIGINT, how long requests in flight may take to finish".to_owned(),
        ),
    ]
}

/// Why the flags could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// `--help` was asked for; carries the text to print.
    Help(String),
    /// `--version` (or `-V`) was asked for; carries the line to print.
    Version(String),
    /// An unknown flag, a missing value, or a value of the wrong form.
    Invalid(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Help(text) => f.write_str(text),
            ConfigError::Version(text) => f.write_str(text),
            ConfigError::Invalid(text) => f.write_str(text),
        }
    }
}

/// The settled value of every flag.
#[derive(Debug, Clone)]
pub struct Settings {
    values: HashMap<&'static str, String>,
}

impl Settings {
    /// Reads `args` (without the program name) and the environment through `lookup_env`.
    pub fn parse(
        usage: &str,
        flags: &[Flag],
        args: impl IntoIterator<Item = String>,
        lookup_env: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let mut values: HashMap<&'static str, String> = flags
            .iter()
            .map(|f| {
                (
                    f.name,
                    lookup_env(f.env).unwrap_or_else(|| f.default.to_string()),
                )
            })
            .collect();
        let mut args = args.into_iter().peekable();
        while let Some(arg) = args.next() {
            if arg == "--help" || arg == "-h" {
                return Err(ConfigError::Help(help_text(usage, flags)));
            }
            if arg == "--version" || arg == "-V" {
                return Err(ConfigError::Version(version_line()));
            }
            let (name, inline) = match arg.strip_prefix("--") {
                Some(rest) => rest
                    .split_once('=')
                    .map_or((rest, None), |(n, v)| (n, Some(v))),
                None => return Err(invalid(format!("unexpected argument {arg:?} (try --help)"))),
            };
            let flag = flags
                .iter()
                .find(|f| f.name == name)
                .ok_or_else(|| invalid(format!("unknown flag --{name} (try --help)")))?;
            let value = match (inline, flag.switch) {
                (Some(v), _) => v.to_owned(),
                // Any other argument is refused, so a word after a switch can only be its value.
                (None, true) => args
                    .next_if(|next| !next.starts_with('-'))
                    .unwrap_or_else(|| "true".to_owned()),
                (None, false) => args
                    .next()
                    .ok_or_else(|| invalid(format!("--{name} needs a value")))?,
            };
            values.insert(flag.name, value);
        }
        Ok(Settings { values })
    }

    /// The value of flag `name`, parsed; an error names the flag and the bad value.
    pub fn get<T: FromStr>(&self, name: &str) -> Result<T, ConfigError>
    where
        T::Err: fmt::Display,
    {
        let raw = self.raw(name);
        raw.parse()
            .map_err(|e| invalid(format!("--{name}: invalid value {raw:?}: {e}")))
    }

    /// A switch's value.
    pub fn switch(&self, name: &str) -> Result<bool, ConfigError> {
        match self.raw(name) {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" | "" => Ok(false),
            other => Err(invalid(format!(
                "--{name}: expected true or false, got {other:?}"
            ))),
        }
    }

    /// The value of flag `name` as text.
    pub fn raw(&self, name: &str) -> &str {
        self.values.get(name).map_or("", String::as_str)
    }
}

/// The package's version, from `Cargo.toml`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `service-a 0.1.0`: the program's name as it was started, and the version (the form of
/// `cargo --version` and most command-line tools, so scripts can take the last word).
pub fn version_line() -> String {
    let program = std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|path| Some(path.file_name()?.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "echo-lab".to_owned());
    format!("{program} {VERSION}")
}

fn invalid(text: String) -> ConfigError {
    ConfigError::Invalid(text)
}

fn help_text(usage: &str, flags: &[Flag]) -> String {
    let mut text = format!("{usage}\n\nFlags (each also read from its environment variable):\n");
    for f in flags {
        let arg = if f.switch {
            String::new()
        } else {
            " VALUE".into()
        };
        let default = if f.default.is_empty() {
            String::new()
        } else {
            format!(" [default: {}]", f.default)
        };
        text.push_str(&format!(
            "  --{}{arg}  ({})\n      {}{default}\n",
            f.name, f.env, f.help
        ));
    }
    text.push_str("  --help, -h\n      print this text\n");
    text.push_str("  --version, -V\n      print the name and version\n");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAGS: &[Flag] = &[
        Flag::value("port", "PORT", "8080", "port"),
        Flag::switch("trace", "TRACE", "trace"),
    ];

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::parse("usage", FLAGS, args.iter().map(|s| s.to_string()), |k| {
            env.get(k).cloned()
        })
    }

    #[test]
    fn flag_beats_env_beats_default() {
        let s = parse(&[], &[]).expect("ok");
        assert_eq!(s.get::<u16>("port"), Ok(8080));
        let s = parse(&[], &[("PORT", "9000")]).expect("ok");
        assert_eq!(s.get::<u16>("port"), Ok(9000));
        let s = parse(&["--port", "7000"], &[("PORT", "9000")]).expect("ok");
        assert_eq!(s.get::<u16>("port"), Ok(7000));
        let s = parse(&["--port=6000"], &[]).expect("ok");
        assert_eq!(s.get::<u16>("port"), Ok(6000));
    }

    #[test]
    fn switches() {
        assert_eq!(
            parse(&["--trace"], &[]).expect("ok").switch("trace"),
            Ok(true)
        );
        assert_eq!(
            parse(&[], &[("TRACE", "1")]).expect("ok").switch("trace"),
            Ok(true)
        );
        assert_eq!(parse(&[], &[]).expect("ok").switch("trace"), Ok(false));
    }

    #[test]
    fn a_word_after_a_switch_is_its_value_and_a_flag_is_not() {
        let s = parse(&["--trace", "naive", "--port", "1"], &[]).expect("ok");
        assert_eq!(s.raw("trace"), "naive");
        assert_eq!(s.get::<u16>("port"), Ok(1));
        let s = parse(&["--trace", "--port", "1"], &[]).expect("ok");
        assert_eq!(s.switch("trace"), Ok(true));
        let s = parse(&["--trace", "off"], &[]).expect("ok");
        assert_eq!(s.switch("trace"), Ok(false));
        assert!(
            parse(&["--port", "1", "stray"], &[]).is_err(),
            "a word after a value flag"
        );
    }

    /// The default of common flag `name`, parsed.
    fn common_default<T: FromStr>(name: &str) -> T
    where
        T::Err: fmt::Debug,
    {
        let flags = common_flags();
        let flag = flags
            .iter()
            .find(|f| f.name == name)
            .expect("a common flag");
        flag.default.parse().expect("a default of the right form")
    }

    #[test]
    fn common_defaults_are_the_limits_they_set() {
        assert_eq!(
            common_default::<usize>("max-connections"),
            Limits::default().max_connections
        );
        assert_eq!(
            std::time::Duration::from_millis(common_default("shutdown-grace-ms")),
            SHUTDOWN_GRACE
        );
    }

    #[test]
    fn computed_flags_print_their_default_and_help() {
        let flags = [
            Flag::value_from("grace", "GRACE", 250, format!("wait {} ms", 250)),
            Flag::switch_from("probe", "PROBE", format!("probe every {} s", 0.7)),
        ];
        let Err(ConfigError::Help(text)) =
            Settings::parse("usage", &flags, ["--help".to_owned()], |_| None)
        else {
            panic!("--help gives the help");
        };
        assert!(
            text.contains("--grace VALUE  (GRACE)\n      wait 250 ms [default: 250]\n"),
            "{text}"
        );
        assert!(
            text.contains("--probe  (PROBE)\n      probe every 0.7 s [default: false]\n"),
            "{text}"
        );
        let s = Settings::parse("usage", &flags, [], |_| None).expect("ok");
        assert_eq!(s.get::<u32>("grace"), Ok(250));
        assert_eq!(s.switch("probe"), Ok(false));
    }

    #[test]
    fn errors_are_clear() {
        assert!(
            matches!(parse(&["--nope"], &[]), Err(ConfigError::Invalid(t)) if t.contains("--nope"))
        );
        assert!(
            matches!(parse(&["--port"], &[]), Err(ConfigError::Invalid(t)) if t.contains("needs a value"))
        );
        let s = parse(&["--port", "http"], &[]).expect("parsed");
        assert!(s.get::<u16>("port").is_err());
        assert!(
            matches!(parse(&["--help"], &[]), Err(ConfigError::Help(t)) if t.contains("--port"))
        );
        for flag in ["--version", "-V"] {
            assert!(
                matches!(parse(&["--port", "1", flag], &[]), Err(ConfigError::Version(t)) if t.ends_with(VERSION))
            );
        }
    }
}
