//! A replica's capacity as the lab shows it, for watching overload build and drain: from the
//! replica's own `/metrics`, its queue, its workers busy and the work it dropped a second by
//! reason; from B's, the concurrency limit B keeps for it (when B has an adaptive limit).
//!
//! In the event, each replica gains (see `tick.rs` for the rest):
//!
//! ```text
//! "capacity": { "queue": 3, "busy": 1, "served_per_s": 48.5,
//!               "dropped_per_s": {"deadline": 0, "queue_full": 2.5, "codel": 0} } or null,
//! "limit": 12.3 or null             B's echo_lab_upstream_replica_limit{replica}
//! ```

use serde_json::{Map, Value, json};

use echo_lab::load::prometheus::Exposition;

/// Why A dropped work, as its `echo_lab_capacity_dropped_total{reason}` names them.
const DROP_REASONS: [&str; 3] = ["deadline", "queue_full", "codel"];

/// The capacity part of replica `addr`'s view, from its metrics `a` (`None`: it did not
/// answer). `rate` turns a counter into a rate a second, keyed by name.
pub fn view(a: Option<&Exposition>, addr: &str, rate: &mut dyn FnMut(&str, f64) -> f64) -> Value {
    let Some(a) = a else {
        return Value::Null;
    };
    let dropped: Map<String, Value> = DROP_REASONS
        .into_iter()
        .map(|reason| {
            let total = a.sum("echo_lab_capacity_dropped_total", &[("reason", reason)]);
            let per_s = rate(&format!("{addr} dropped {reason}"), total);
            (reason.to_owned(), round(per_s).into())
        })
        .collect();
    let served = a.sum(
        "echo_lab_requests_total",
        &[("endpoint", "/echo"), ("status", "200")],
    );
    json!({
        "queue": a.get("echo_lab_capacity_queue_length", &[]),
        "busy": a.get("echo_lab_capacity_workers_busy", &[]),
        "served_per_s": round(rate(&format!("{addr} served"), served)),
        "dropped_per_s": dropped,
    })
}

/// The concurrency limit B keeps for replica `addr`, if its metrics `b` have one.
pub fn limit(b: Option<&Exposition>, addr: &str) -> Value {
    b.and_then(|b| b.get("echo_lab_upstream_replica_limit", &[("replica", addr)]))
        .map_or(Value::Null, |v| round(v).into())
}

/// `x` to a tenth, as the rest of the event.
fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const A_METRICS: &str = "\
echo_lab_requests_total{endpoint=\"/echo\",status=\"200\"} 100
echo_lab_capacity_queue_length 3
echo_lab_capacity_workers_busy 1
echo_lab_capacity_dropped_total{reason=\"deadline\"} 4
echo_lab_capacity_dropped_total{reason=\"queue_full\"} 10
echo_lab_capacity_dropped_total{reason=\"codel\"} 0
";

    #[test]
    fn a_replica_shows_its_queue_workers_and_drops() {
        let a = Exposition::parse(A_METRICS);
        let mut seen = Vec::new();
        let mut rate = |key: &str, value: f64| {
            seen.push(key.to_owned());
            value / 2.0
        };
        let shown = view(Some(&a), "127.0.0.1:1", &mut rate);
        assert_eq!(view(None, "x", &mut rate), Value::Null);
        assert_eq!(shown["queue"], 3.0);
        assert_eq!(shown["busy"], 1.0);
        assert_eq!(shown["served_per_s"], 50.0);
        assert_eq!(shown["dropped_per_s"]["queue_full"], 5.0);
        assert_eq!(shown["dropped_per_s"]["codel"], 0.0);
        assert!(seen.contains(&"127.0.0.1:1 dropped deadline".to_owned()));
    }

    #[test]
    fn b_s_limit_is_there_only_when_b_keeps_one() {
        let b =
            Exposition::parse("echo_lab_upstream_replica_limit{replica=\"127.0.0.1:1\"} 12.34\n");
        assert_eq!(limit(Some(&b), "127.0.0.1:1"), json!(12.3));
        assert_eq!(limit(Some(&b), "127.0.0.1:2"), Value::Null);
        assert_eq!(limit(None, "127.0.0.1:1"), Value::Null);
    }
}
