//! The standard `process_*` metrics every Prometheus client library exports, read from Linux's
//! `/proc` at scrape time (`man 5 proc`): CPU time, resident memory, open and maximum file
//! descriptors, and when the process started. Read only when `/metrics` is scraped, never on
//! a request's path. Where `/proc` is missing (not Linux), they are simply left out.

use std::fmt::Write as _;
use std::fs;

/// What `/proc/self/stat` says about us, in the kernel's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// CPU time in user mode plus kernel mode, in clock ticks (fields 14 and 15).
    pub cpu_ticks: u64,
    /// When the process started, in clock ticks after boot (field 22).
    pub start_ticks: u64,
    /// Resident set size, in pages (field 24).
    pub rss_pages: u64,
}

/// Reads the fields we need from the text of `/proc/self/stat`. The second field is the
/// command name in parentheses, which may itself hold spaces and `)`: so the fields are
/// counted from the *last* `)`, where field 3 begins.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let after_name = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `fields[0]` is field 3 (the state), so field N is `fields[N - 3]`.
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(ProcStat {
        cpu_ticks: field(14)? + field(15)?,
        start_ticks: field(22)?,
        rss_pages: field(24)?,
    })
}

/// The boot time in seconds since the epoch: the `btime` line of `/proc/stat`.
pub fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|value| value.trim().parse().ok())
}

/// Appends the `process_*` metrics, or nothing when `/proc` cannot be read.
pub fn render(out: &mut String) {
    let Some(stat) = fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|text| parse_stat(&text))
    else {
        return;
    };
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let page_size = rustix::param::page_size() as u64;
    let cpu_seconds = stat.cpu_ticks as f64 / ticks;
    gauge_or_counter(
        out,
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        cpu_seconds,
    );
    let rss = (stat.rss_pages * page_size) as f64;
    gauge_or_counter(
        out,
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        rss,
    );
    if let Some(boot) = fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|text| parse_boot_time(&text))
    {
        let start = boot as f64 + stat.start_ticks as f64 / ticks;
        gauge_or_counter(
            out,
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            start,
        );
    }
    // Every entry of /proc/self/fd is an open descriptor (the one reading it included).
    if let Ok(entries) = fs::read_dir("/proc/self/fd") {
        gauge_or_counter(
            out,
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            entries.count() as f64,
        );
    }
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    if let Some(max) = limit.current {
        gauge_or_counter(
            out,
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            max as f64,
        );
    }
}

/// One unlabelled sample with its `# HELP` and `# TYPE`.
fn gauge_or_counter(out: &mut String, name: &str, kind: &str, help: &str, value: f64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real line from a process whose name has a space and a `)` in it.
    const STAT: &str = "4242 (a b) c) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                        250 125 0 0 20 0 3 0 98765 12345678 321 18446744073709551615 \
                        1 1 0 0 0 0 0 4096 17 1 0 0 0 0 0\n";

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        assert_eq!(
            parse_stat(STAT),
            Some(ProcStat {
                cpu_ticks: 375,
                start_ticks: 98765,
                rss_pages: 321,
            })
        );
    }

    #[test]
    fn a_truncated_stat_is_none() {
        assert_eq!(parse_stat("4242 (x) S 1 2 3"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn boot_time_is_the_btime_line() {
        let text = "cpu  1 2 3\nintr 5\nbtime 1764633600\nprocesses 9\n";
        assert_eq!(parse_boot_time(text), Some(1_764_633_600));
        assert_eq!(parse_boot_time("cpu 1\n"), None);
    }

    #[test]
    fn renders_the_standard_names_on_linux() {
        let mut out = String::new();
        render(&mut out);
        if cfg!(target_os = "linux") {
            for name in [
                "process_cpu_seconds_total ",
                "process_resident_memory_bytes ",
                "process_start_time_seconds ",
                "process_open_fds ",
            ] {
                assert!(out.contains(&format!("\n{name}")), "{name} in {out}");
            }
        }
    }
}
