//! The JSON bodies both services answer with: a body already serialized, the contract's error
//! body `{"error":"..."}`, and a string literal for bodies written by hand. They use
//! serde_json and the HTTP layer's `Response`, nothing else of `services`, so every handler
//! (and the chaos that fails one) can use them without depending on the others.

use crate::http::message::Response;

/// A response with a JSON body, already serialized.
pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Response {
    Response::new(status, "application/json", body)
}

/// The contract's error body, `{"error":"<text>"}`: every error both services answer, the
/// HTTP layer's rejections included (through `Handler::error_response`), except B's `503`
/// for a failed call to A, which says more.
pub fn json_error(status: u16, text: &str) -> Response {
    let body = serde_json::json!({ "error": text }).to_string();
    json(status, body)
}

/// `s` as a JSON string literal, quotes and escapes included (RFC 8259 §7).
pub fn json_string(s: &str) -> String {
    // Serializing a `str` cannot fail: serde_json only fails on non-string map keys and
    // on I/O errors, and a String is not I/O.
    serde_json::to_string(s).unwrap_or_else(|_| String::from("\"\""))
}
