//! B's calling policy over A's replicas: how one call to "service A" becomes attempts on
//! replicas, which answer B passes on, and which replicas B stops trusting.
//!
//! ```text
//!  call ─► bulkhead ─► limit ─► breaker ─► choose ─► attempt ─► classify ─┬─► answer
//!  (overloaded) (overloaded) (circuit_open) ▲        │ hedge timer        │
//!                                           │        └─► a second attempt ┤ the first good
//!                                           │                             │ answer wins
//!                                           └── retry, if budget, limit ◄─┘ a failure, and
//!                                               and breaker allow            time left
//! ```
//!
//! Each pattern is a plain data structure in a file of its own that takes the time as an
//! argument and never sleeps. `cluster.rs` holds what every call shares (the replicas, the
//! policies, the counts); `call.rs` holds one call's state, owns its timers and tells its
//! story in `Call::run`. Every pattern is off unless switched on (`Patterns::default()`): B
//! then makes exactly one attempt per call, on the only replica or the next in turn, as it
//! always has. `http::client` stays a client for one address with its pool; it knows none of
//! this.
//!
//! | file | pattern | prior art |
//! | --- | --- | --- |
//! | `call.rs` | one call: attempts, hedge timer, per-try deadline | Envoy's router filter |
//! | `cluster.rs` | what calls share: replicas, policies, counts | Envoy's clusters, Finagle's clients |
//! | `replicas.rs` | the set of replicas, re-resolved | Envoy's `STRICT_DNS` clusters |
//! | `balance.rs` | P2C over peak EWMA; a replica's return | Finagle, Linkerd; Envoy's slow start |
//! | `outlier.rs` | eject after consecutive failures | Envoy's outlier detection |
//! | `health_check.rs` | ask a replica nothing listens at whether it is back | HAProxy's `check`, Envoy's health checking |
//! | `breaker.rs` | fail fast while A as a whole fails | Hystrix, resilience4j, Finagle's `FailFast` |
//! | `budget.rs` | retries within a budget | Finagle's `RetryBudget`, Linkerd's retry budget |
//! | `hedge.rs` | a second attempt for the slow tail | "The Tail at Scale", gRPC hedging |
//! | `bulkhead.rs` | a cap on calls in flight | Hystrix's semaphore isolation |
//! | `limit.rs` | each replica's concurrency, from latency | Netflix's Gradient2, Envoy's adaptive concurrency |
//! | `deadline.rs` | tell A how long B will wait | gRPC's `grpc-timeout`, Envoy's expected timeout |
//! | `flags.rs` | B's command line: which patterns are on | |
//!
//! Beside them: `patterns.rs` (which are on, `Patterns`), `outcome.rs` (what a call ends with:
//! `CallError`, the contract's `error_kind`), `exchange.rs` (the seams through which a call
//! reaches a replica and the clock) and `lock.rs`. This file only names the parts: every part
//! imports the others directly, never through here, so no two modules use each other.

pub mod balance;
pub mod breaker;
pub mod budget;
pub mod bulkhead;
pub mod call;
pub mod cluster;
pub mod deadline;
pub mod exchange;
pub mod flags;
pub mod health_check;
pub mod hedge;
pub mod limit;
mod lock;
pub mod outcome;
pub mod outlier;
pub mod patterns;
pub mod replicas;

pub use call::MAX_ATTEMPTS;
pub use cluster::{Cluster, ClusterSnapshot, Refusal};
pub use exchange::{Clock, Exchange};
pub use outcome::{CallError, CallReport};
pub use patterns::{ATTEMPTS_PER_DEADLINE, Balance, DEFAULT_MAX_IN_FLIGHT, Patterns};
