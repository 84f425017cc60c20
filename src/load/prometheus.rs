//! Reading a service's `/metrics`: the Prometheus text format (version 0.0.4), parsed just far
//! enough for the lab, the demo and the tests. A sample line is `name{label="value",…} number`;
//! `#` lines are help and type, and are skipped. Label values may escape `\\`, `\"` and `\n`.
//!
//! The exposition format: <https://prometheus.io/docs/instrumenting/exposition_formats/>.

/// One sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Every sample of one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition(pub Vec<Sample>);

impl Exposition {
    /// Parses an exposition; lines that are not samples are skipped.
    pub fn parse(text: &str) -> Exposition {
        Exposition(text.lines().filter_map(sample).collect())
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

    /// The sum of every sample named `name` with `labels`, or `None` when there is none (a
    /// series the service does not export, rather than one at zero).
    pub fn total(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut values = self.matching(name, labels).map(|s| s.value).peekable();
        values.peek()?;
        Some(values.sum())
    }

    /// The value of one series written as it is exposed, `name` or `name{k="v",…}`: the sample
    /// with that name and exactly those labels.
    pub fn series(&self, series: &str) -> Option<f64> {
        let wanted = sample(&format!("{series} 0"))?;
        let same_labels = |s: &Sample| {
            s.labels.len() == wanted.labels.len()
                && wanted.labels.iter().all(|pair| s.labels.contains(pair))
        };
        let found = self
            .0
            .iter()
            .find(|s| s.name == wanted.name && same_labels(s))?;
        Some(found.value)
    }

    /// The value of `label` on the first sample named `name` whose value is `value`: which
    /// state a one-hot gauge is in (`echo_lab_upstream_breaker_state{state="open"} 1`).
    pub fn label_where(&self, name: &str, label: &str, value: f64) -> Option<&str> {
        let sample = self.0.iter().find(|s| s.name == name && s.value == value)?;
        let (_, found) = sample.labels.iter().find(|(k, _)| k == label)?;
        Some(found)
    }
}

/// Label pairs written as in an exposition, `k="v",k2="v2"` (`""` for none), as a list of
/// pairs: how a caller names the series it wants.
pub fn selector(text: &str) -> Option<Vec<(String, String)>> {
    let closed = format!("{text}}}");
    let (labels, rest) = labels(&closed)?;
    rest.is_empty().then_some(labels)
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
        let metrics = Exposition::parse(EXPOSITION);
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
        let metrics = Exposition::parse(EXPOSITION);
        assert_eq!(
            metrics.label_where("echo_lab_upstream_breaker_state", "state", 1.0),
            Some("open")
        );
        assert_eq!(metrics.label_where("absent", "state", 1.0), None);
    }

    #[test]
    fn label_values_are_unescaped_and_timestamps_ignored() {
        let metrics = Exposition::parse(EXPOSITION);
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

    #[test]
    fn a_series_is_found_by_its_exact_labels() {
        let metrics = Exposition::parse(EXPOSITION);
        assert_eq!(metrics.series("echo_lab_upstream_in_flight"), Some(3.0));
        let failed =
            r#"echo_lab_upstream_replica_attempts_total{end="failed",replica="127.0.0.1:1"}"#;
        assert_eq!(metrics.series(failed), Some(2.0));
        let partial = r#"echo_lab_upstream_replica_attempts_total{replica="127.0.0.1:1"}"#;
        assert_eq!(metrics.series(partial), None);
        assert_eq!(metrics.series("absent"), None);
    }

    #[test]
    fn a_total_is_none_only_without_a_series() {
        let metrics = Exposition::parse(EXPOSITION);
        let attempts = "echo_lab_upstream_replica_attempts_total";
        assert_eq!(metrics.total(attempts, &[]), Some(19.0));
        assert_eq!(metrics.total(attempts, &[("end", "ok")]), Some(17.0));
        assert_eq!(metrics.total("absent", &[]), None);
    }

    #[test]
    fn selectors_are_label_pairs() {
        assert_eq!(selector(""), Some(Vec::new()));
        assert_eq!(
            selector(r#"endpoint="/echo",status="200""#),
            Some(vec![
                ("endpoint".to_owned(), "/echo".to_owned()),
                ("status".to_owned(), "200".to_owned())
            ])
        );
        assert_eq!(selector(r#"endpoint="/echo"} x"#), None);
        assert_eq!(selector("endpoint=/echo"), None);
    }
}
