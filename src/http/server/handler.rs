//! What a service plugs into the server (RFC 9110 §15: every request gets a status): a
//! `Handler` turns one `Request` into an `Outcome`, and says how the answers the server gives
//! on its own (a request it could not read, a connection over the cap) look.

use std::future::Future;
use std::net::SocketAddr;

use crate::http::error::RequestError;
use crate::http::message::{Request, Response};
use crate::http::stream::StreamingResponse;

/// What a handler makes of one request.
///
/// Neither `Clone` nor `PartialEq`: a stream's body is one end of a channel, which cannot be
/// copied or compared.
#[derive(Debug)]
pub enum Outcome {
    /// Send this response.
    Respond(Response),
    /// Send this head now, then the body as its producer makes it (see `stream.rs`).
    Stream(StreamingResponse),
    /// Close the connection without a byte of answer, as a server that crashed would. Only
    /// for fault injection; the server logs nothing more for it.
    HangUp,
}

impl From<Response> for Outcome {
    fn from(response: Response) -> Self {
        Outcome::Respond(response)
    }
}

impl From<StreamingResponse> for Outcome {
    fn from(response: StreamingResponse) -> Self {
        Outcome::Stream(response)
    }
}

/// What a service plugs into the server: a function from request to outcome, and the form
/// of the answers the server gives on its own.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request. Never fails: every outcome, errors included, is a response, or
    /// a deliberate hang-up.
    fn handle(&self, request: Request) -> impl Future<Output = Outcome> + Send;

    /// Told about a request that could not be read, and the status it was answered with
    /// (`None`: the peer was gone). The default logs it.
    fn rejected(&self, peer: SocketAddr, error: &RequestError, status: Option<u16>) {
        log::warn!("peer={peer} status={status:?} error=\"{error}\"");
    }

    /// The answer the server gives without asking `handle`: a request it could not read
    /// (`status` from `RequestError::status`), or a connection over the cap (503). `text`
    /// says what was wrong. The HTTP layer has no body format of its own, so the default is
    /// that text as `text/plain`; a service answers in the format of its other errors.
    fn error_response(&self, status: u16, text: &str) -> Response {
        Response::new(status, "text/plain; charset=utf-8", format!("{text}\n"))
    }
}
