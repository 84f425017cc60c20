//! Load generation, shared by `loadgen` (a run with a summary) and `lab` (a steady load while
//! a learner breaks things):
//!
//! * `schedule` — the open loop: when each request is due, whatever became of the ones before;
//! * `request` — one request, with its own deadline, timed from when it was due;
//! * `histogram` — latencies in fixed-size log-linear buckets, for percentiles;
//! * `prometheus` — a service's `/metrics` read back, for the lab, the demo and the tests.

pub mod histogram;
pub mod prometheus;
pub mod request;
pub mod schedule;
