//! echo-lab: two small HTTP/1.1 services, A (echo) and B (calls A), on a hand-written
//! HTTP layer. `http` is the protocol; `services` are the two handlers; `config` reads flags.

pub mod http;
