//! A small HTTP/1.1 implementation (RFC 9110 semantics, RFC 9112 syntax) on smol, for servers
//! and for a client. It knows nothing of the services built on it.
//!
//! Read it in this order. Each module uses only modules before it in the list, so the chain
//! runs one way (a test below keeps it so), and it follows a request from its vocabulary to
//! the socket:
//!
//! 1. `limits` and `error`: every bound, and every failure with the status it is answered with;
//!    `deadline`: the one point in time by which an exchange must be over;
//! 2. `message`: the values (version, header fields, request, response); no I/O;
//! 3. `wire_trace`: the wire trace every reader and writer reports to;
//! 4. `conn`: bytes in a buffer, waiting to be parsed;
//! 5. `target` and `head`: the request line and fields (`target` checks the request-target
//!    and `Host`);
//! 6. `chunked` and `body`: where the body ends;
//! 7. `date` and `write`: bytes back out, with a `Date`;
//! 8. `stream`: a body made while it is sent, and the bounded queue between its producer and
//!    the server;
//! 9. `server`: the accept loop, `server::connection`, the keep-alive loop, and
//!    `server::streaming`, a stream written to one connection;
//! 10. `client`: the same path in the other direction.

// One module a group, in the order above (rustfmt would sort a group alphabetically).
pub mod limits;

pub mod error;

pub mod deadline;

pub mod message;

pub mod wire_trace;

pub mod conn;

pub mod target;

pub mod head;

pub mod chunked;

pub mod body;

pub mod date;

pub mod write;

pub mod stream;

pub mod server;

pub mod client;

pub use deadline::Deadline;

#[cfg(test)]
mod tests {
    /// The modules in reading order, each with its source.
    const CHAIN: [(&str, &str); 18] = [
        ("limits", include_str!("limits.rs")),
        ("error", include_str!("error.rs")),
        ("deadline", include_str!("deadline.rs")),
        ("message", include_str!("message.rs")),
        ("wire_trace", include_str!("wire_trace.rs")),
        ("conn", include_str!("conn.rs")),
        ("target", include_str!("target.rs")),
        ("head", include_str!("head.rs")),
        ("chunked", include_str!("chunked.rs")),
        ("body", include_str!("body.rs")),
        ("date", include_str!("date.rs")),
        ("write", include_str!("write.rs")),
        ("stream", include_str!("stream.rs")),
        ("server", include_str!("server/mod.rs")),
        ("server", include_str!("server/handler.rs")),
        ("server", include_str!("server/connection.rs")),
        ("server", include_str!("server/streaming.rs")),
        ("client", include_str!("client.rs")),
    ];

    /// Whether `source`, tests left out, names module `name` in a path: `super::name` or
    /// `http::name`. (A test may use a later module to build its input, e.g. `target`'s tests
    /// parse whole heads: that is no dependency of the module itself.)
    fn uses(source: &str, name: &str) -> bool {
        let source = source.split("#[cfg(test)]").next().unwrap_or(source);
        [format!("super::{name}"), format!("http::{name}")]
            .iter()
            .any(|path| {
                source.match_indices(path.as_str()).any(|(at, _)| {
                    let after = source.as_bytes().get(at + path.len());
                    !after.is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'_')
                })
            })
    }

    #[test]
    fn modules_use_only_the_modules_before_them() {
        for (i, (module, source)) in CHAIN.iter().enumerate() {
            for (later, _) in &CHAIN[i + 1..] {
                assert!(
                    later == module || !uses(source, later),
                    "`{module}` uses `{later}`, which comes after it in http/mod.rs"
                );
            }
        }
    }
}
