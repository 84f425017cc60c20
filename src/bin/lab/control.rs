//! A replica's runtime control endpoint (`service-a --control`), from the lab's side, through
//! the project's client: its faults are read with `GET /control` and changed with
//! `POST /control`.

use std::net::SocketAddr;
use std::time::Duration;

use echo_lab::http::Deadline;
use echo_lab::http::client::{Client, ClientError, Upstream};
use echo_lab::http::limits::ClientLimits;
use serde_json::Value;

use crate::scrape::SCRAPE_DEADLINE;

/// How long a change of faults may take. A answers `/control` at once, even as a black hole
/// (only `/echo` is held); longer means A is not answering at all.
const CHANGE_DEADLINE: Duration = Duration::from_secs(1);

/// A's answer to a change: its status and body, passed on to the page as they are (`200` with
/// the whole settings, or `400` naming the knob that was wrong).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
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
pub async fn change_faults(addr: SocketAddr, body: &[u8]) -> Result<Answer, ClientError> {
    let upstream = Upstream {
        host: addr.ip().to_string(),
        port: addr.port(),
    };
    let client = Client::to_address(upstream, addr, ClientLimits::default());
    let headers = [("Content-Type", "application/json")];
    let deadline = Deadline::after(CHANGE_DEADLINE);
    let response = client.post("/control", &headers, body, deadline).await?;
    Ok(Answer {
        status: response.head.status,
        body: response.body,
    })
}
