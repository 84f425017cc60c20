//! Reading B's `/metrics`: the Prometheus text format (version 0.0.4), parsed just far enough
//! for the lab. A sample line is `name{label="value",…} number`; `#` lines are help and type,
//! and are skipped. Label values may escape `\\`, `\"` and `\n`.

use std::time::Duration;

use echo_lab::http::Deadline;
use echo_lab::http::client::Client;

/// How long a scrape may take: well inside the lab's half-second tick. A service that does not
/// answer by then is shown as unknown for this tick.
pub const SCRAPE_DEADLINE: Duration = Duration::from_millis(300);

/// One sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Every sample of one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics(pub Vec<Sample>);

impl Metrics {
    /// Parses an exposition; lines that are not samples are skipped.
    pub fn parse(text: &str) -> Metrics {
        Metrics(text.lines().filter_map(sample).collect())
    }

    /// The samples named `name` whose labels include every pair of `labels`.
    fn matching<'m>(
        &'m self,
        name: &'m str,
        labels: &'m [(&str, &str)],
    ) -> impl Iterator<Item = &'m Sample> + 'm {
        self.0.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
        })
    }

    /// The value of the first sample named `name` with `labels`.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.matching(name, labels).next().map(|s| s.value)
    }

    /// The sum of every sample named `name` with `labels` (0 when there are none).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    /// The value of `label` on the first sample named `name` whose value is `value`: which
    /// state a one-hot gauge is in (`echo_lab_upstream_breaker_state{state="open"} 1`).
    pub fn label_where(&self, name: &str, label: &str, value: f64) -> Option<&str> {
        let sample = self.0.iter().find(|s| s.name == name && s.value == value)?;
        let (_, found) = sample.labels.iter().find(|(k, _)| k == label)?;
        Some(found)
    }
}

/// B's `/metrics`, or why there is none.
pub async fn fetch(client: &Client) -> Result<Metrics, String> {
    let response = client
        .get("/metrics", &[], Deadline::after(SCRAPE_DEADLINE))
        .await
        .map_err(|e| e.to_string())?;
    if response.head.status != 200 {
        return Err(format!("/metrics answered {}", response.head.status));
    }
    Ok(Metrics::parse(&String::from_utf8_lossy(&response.body)))
}

/// One sample line, or `None` for a comment, a blank line or a malformed line.
fn sample(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let (labels, rest) = labels(&line[open + 1..])?;
            (&line[..open], labels, rest)
        }
        None => {
            let (name, rest) = line.split_once(' ')?;
            (name, Vec::new(), rest)
        }
    };
    // A timestamp may follow the value; the lab does not need it.
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// The labels after `{`, up to and including `}`, and what follows them.
fn labels(mut text: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start_matches([' ', ',']);
        if let Some(rest) = text.strip_prefix('}') {
            return Some((labels, rest));
        }
        let (key, rest) = text.split_once("=\"")?;
        let (value, rest) = quoted(rest)?;
        labels.push((key.trim().to_owned(), value));
        text = rest;
    }
}

/// A label value up to its closing quote, unescaped, and what follows the quote.
fn quoted(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Some((value, &text[at + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                other => value.push(other),
            },
            c => value.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPOSITION: &str = "\
# HELP echo_lab_upstream_in_flight Calls to A in flight now.
# TYPE echo_lab_upstream_in_flight gauge
echo_lab_upstream_in_flight 3
echo_lab_upstream_replica_attempts_total{replica=\"127.0.0.1:1\",end=\"ok\"} 10
echo_lab_upstream_replica_attempts_total{replica=\"127.0.0.1:1\",end=\"failed\"} 2
echo_lab_upstream_replica_attempts_total{replica=\"127.0.0.1:2\",end=\"ok\"} 7
echo_lab_upstream_breaker_state{state=\"closed\"} 0
echo_lab_upstream_breaker_state{state=\"open\"} 1
odd{note=\"a \\\"quoted\\\" \\\\ word\"} 1.5 1700000000000
not a sample
";

    #[test]
    fn samples_are_read_with_their_labels() {
        let metrics = Metrics::parse(EXPOSITION);
        assert_eq!(metrics.0.len(), 7, "{metrics:?}");
        assert_eq!(metrics.get("echo_lab_upstream_in_flight", &[]), Some(3.0));
        let replica = [("replica", "127.0.0.1:1")];
        let attempts = "echo_lab_upstream_replica_attempts_total";
        assert_eq!(metrics.sum(attempts, &replica), 12.0);
        assert_eq!(
            metrics.get(attempts, &[("replica", "127.0.0.1:1"), ("end", "failed")]),
            Some(2.0)
        );
        assert_eq!(metrics.sum(attempts, &[("replica", "127.0.0.1:9")]), 0.0);
        assert_eq!(metrics.get("absent", &[]), None);
    }

    #[test]
    fn a_one_hot_gauge_names_its_state() {
        let metrics = Metrics::parse(EXPOSITION);
        assert_eq!(
            metrics.label_where("echo_lab_upstream_breaker_state", "state", 1.0),
            Some("open")
        );
        assert_eq!(metrics.label_where("absent", "state", 1.0), None);
    }

    #[test]
    fn label_values_are_unescaped_and_timestamps_ignored() {
        let metrics = Metrics::parse(EXPOSITION);
        assert_eq!(
            metrics.get("odd", &[("note", "a \"quoted\" \\ word")]),
            Some(1.5)
        );
    }

    #[test]
    fn malformed_lines_are_skipped() {
        for line in [
            "x{a=\"unterminated} 1",
            "x{a=1} 1",
            "x 1.2.3",
            "x",
            "x{a=\"b\"}",
        ] {
            assert_eq!(sample(line), None, "{line}");
        }
    }
}
