//! echo-lab: two small HTTP/1.1 services, A (echo) and B (calls A), on a hand-written
//! HTTP layer.
//!
//! * `http` — the protocol, knowing nothing of echo;
//! * `upstream` — B's calling policy over A's replicas: balancing, ejection, breaker,
//!   budgeted retries, hedging, deadlines passed on, bulkhead;
//! * `services` — the two handlers, A's `EchoService` and B's `CallerService`;
//! * `config` and `run` — flags, logging, and the start-serve-drain sequence of a binary;
//! * `logging` — log lines as text or JSON;
//! * `child` — a service binary run as a child process, for the demo, the lab and the tests;
//! * `load` — the open loop's schedule, one request with its deadline, the latency histogram
//!   and a reader of `/metrics`, shared by `loadgen`, the lab, the demo and the tests;
//! * `random` — numbers that differ on every call, for ids and for chaos and balancing.

pub mod child;
pub mod config;
pub mod http;
pub mod load;
pub mod logging;
pub mod random;
pub mod run;
pub mod services;
pub mod upstream;
