//! A small HTTP/1.1 implementation (RFC 9110 semantics, RFC 9112 syntax) on smol, for servers
//! and for a client. It knows nothing of the services built on it.
//!
//! Read it in the order a request flows:
//! `conn` (bytes in a buffer) → `head` (request line and fields, with `target` checking the
//! request-target and `Host`) → `body` and `chunked` (where the body ends) → `message` (the
//! values) → `write` (bytes back out, `Date` from `date`) → `server` (the accept loop) and
//! `server::connection` (the keep-alive loop).
//! `client` is the same path in the other direction. `limits` and `error` hold every bound
//! and every failure.

pub mod body;
pub mod chunked;
pub mod client;
pub mod conn;
pub mod date;
pub mod error;
pub mod head;
pub mod limits;
pub mod message;
pub mod server;
pub mod target;
pub mod trace;
pub mod write;
