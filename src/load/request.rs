//! One request of a load: sent with a deadline of its own, timed from when it was due.

use std::time::{Duration, Instant};

use crate::http::Deadline;
use crate::http::client::{Client, ClientError, ClientResponse};

/// What became of one request.
#[derive(Debug)]
pub struct Sample {
    /// From the time the request was due (not sent: see `schedule`) to its end.
    pub latency: Duration,
    /// The response, of any status, or why there was none.
    pub result: Result<ClientResponse, ClientError>,
}

impl Sample {
    /// The latency in whole microseconds, the unit of `Histogram`.
    pub fn micros(&self) -> u64 {
        u64::try_from(self.latency.as_micros()).unwrap_or(u64::MAX)
    }
}

/// Sends `GET target` with extra header fields to `client`'s server, under a deadline of
/// `timeout` from now; the latency counts from `intended`.
pub async fn send(
    client: &Client,
    target: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
    intended: Instant,
) -> Sample {
    let result = client.get(target, headers, Deadline::after(timeout)).await;
    let latency = intended.elapsed();
    if result.is_err() {
        // A refused connection can fail without ever waiting; let other tasks run.
        futures_lite::future::yield_now().await;
    }
    Sample { latency, result }
}
