//! A replica's runtime control endpoint (`service-a --control`), from the lab's side: its
//! faults are read with `GET /control` through the project's client, and changed with
//! `POST /control`. That client only sends `GET` (it is B's, and B only reads), so the `POST`
//! is written here: one request on a connection of its own, `Connection: close`, the answer
//! read to the close and its head parsed by the project's parser.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use async_io::{Async, Timer};
use echo_lab::http::client::{Client, Deadline};
use echo_lab::http::error::ResponseHeadError;
use echo_lab::http::head::parse_response_head;
use echo_lab::http::limits::ClientLimits;
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};
use serde_json::Value;

use crate::scrape::SCRAPE_DEADLINE;

/// How long a change of faults may take. A answers `/control` at once, even as a black hole
/// (only `/echo` is held); longer means A is not answering at all.
const CHANGE_DEADLINE: Duration = Duration::from_secs(1);

/// The largest answer read: A's settings are about 150 bytes.
const MAX_ANSWER: u64 = 64 * 1024;

/// A's answer to a change: its status and body, passed on to the page as they are (`200` with
/// the whole settings, or `400` naming the knob that was wrong).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Why A gave no answer to a change.
#[derive(Debug)]
pub enum ControlError {
    /// No connection: the replica is down.
    Connect(io::Error),
    /// The connection failed while the request or the answer was on it.
    Io(io::Error),
    /// No whole answer within `CHANGE_DEADLINE`.
    Timeout,
    /// Something that is not an HTTP answer came back.
    BadResponse(String),
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlError::Connect(e) => write!(f, "cannot connect: {e}"),
            ControlError::Io(e) => write!(f, "connection failed: {e}"),
            ControlError::Timeout => {
                write!(f, "no answer within {} ms", CHANGE_DEADLINE.as_millis())
            }
            ControlError::BadResponse(what) => write!(f, "bad answer: {what}"),
        }
    }
}

/// A replica's faults (`GET /control`), or `None` when it does not answer.
pub async fn read_faults(client: &Client) -> Option<Value> {
    let deadline = Deadline::after(SCRAPE_DEADLINE);
    let response = client.get("/control", &[], deadline).await.ok()?;
    if response.head.status != 200 {
        return None;
    }
    serde_json::from_slice(&response.body).ok()
}

/// Sends `body`, a JSON object of knobs, as `POST /control` to the replica at `addr`.
pub async fn change_faults(addr: SocketAddr, body: &[u8]) -> Result<Answer, ControlError> {
    let exchange = async {
        let mut stream = Async::<TcpStream>::connect(addr)
            .await
            .map_err(ControlError::Connect)?;
        let head = format!(
            "POST /control HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream
            .write_all(&[head.as_bytes(), body].concat())
            .await
            .map_err(ControlError::Io)?;
        let mut raw = Vec::new();
        (&mut stream)
            .take(MAX_ANSWER)
            .read_to_end(&mut raw)
            .await
            .map_err(ControlError::Io)?;
        parse_answer(&raw)
    };
    let timeout = async {
        Timer::after(CHANGE_DEADLINE).await;
        Err(ControlError::Timeout)
    };
    exchange.or(timeout).await
}

/// The answer in `raw`, everything A sent before it closed: the head, then the body, which
/// must be as long as its `Content-Length` says.
fn parse_answer(raw: &[u8]) -> Result<Answer, ControlError> {
    let limits = ClientLimits::default();
    let (head, head_len) = parse_response_head(raw, limits.max_head_bytes, limits.max_headers)
        .map_err(|e| {
            ControlError::BadResponse(match e {
                ResponseHeadError::Malformed(why) => format!("not an HTTP response head: {why}"),
                ResponseHeadError::TooLarge => "a response head over the limit".to_owned(),
            })
        })?
        .ok_or_else(|| ControlError::BadResponse("closed inside the head".to_owned()))?;
    let body = &raw[head_len..];
    let announced = head
        .headers
        .get_str("content-length")
        .map(str::parse::<usize>);
    match announced {
        Some(Ok(length)) if length <= body.len() => Ok(Answer {
            status: head.status,
            body: body[..length].to_vec(),
        }),
        Some(_) => Err(ControlError::BadResponse(format!(
            "{} body bytes, not what Content-Length says",
            body.len()
        ))),
        None => Ok(Answer {
            status: head.status,
            body: body.to_vec(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_its_status_and_its_body() {
        let raw = b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n\
                    Content-Length: 20\r\nConnection: close\r\n\r\n{\"error\":\"bad knob\"}";
        let answer = parse_answer(raw).expect("an answer");
        assert_eq!(answer.status, 400);
        assert_eq!(answer.body, b"{\"error\":\"bad knob\"}");
    }

    #[test]
    fn a_short_or_broken_answer_is_an_error() {
        for raw in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}"[..],
            b"HTTP/1.1 200 OK\r\nContent-Len",
            b"hello",
        ] {
            assert!(
                matches!(parse_answer(raw), Err(ControlError::BadResponse(_))),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }
}
