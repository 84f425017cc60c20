//! The seams through which a call reaches the world: an [`Exchange`] ("send this GET to this
//! replica under this deadline") and a [`Clock`] ("what time is it", "wake me at this
//! instant"). B uses each replica's HTTP client and the system's clock, with the deadline an
//! `async_io::Timer`; the unit tests in `call/tests.rs` put scripted replicas and a clock they
//! move by hand in their place, so whole calls run without sockets or sleeps.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use async_io::Timer;

use super::replicas::Replica;
use crate::http::Deadline;
use crate::http::client::{ClientError, ClientResponse};

/// What an attempt's exchange resolves to: the response, or how it failed.
pub type Exchanged = Result<ClientResponse, ClientError>;

/// An exchange under way.
pub type Sending = Pin<Box<dyn Future<Output = Exchanged> + Send>>;

/// A wait until an instant.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The request of one attempt: `GET target` with these header fields, before `deadline`.
#[derive(Debug, Clone)]
pub struct Get {
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub deadline: Deadline,
}

/// How an attempt reaches a replica.
pub trait Exchange: Send + Sync {
    /// Sends `get` to `replica` and reads its whole response, all before `get.deadline`.
    fn send(&self, replica: Arc<Replica>, get: Get) -> Sending;
}

/// What time it is, and how to wait for a time: every instant a call uses comes from here.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
    /// A future that is ready once `at` has come.
    fn sleep_until(&self, at: Instant) -> Sleep;
}

/// The exchange B uses: the replica's own HTTP client with its pool.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientExchange;

impl Exchange for ClientExchange {
    fn send(&self, replica: Arc<Replica>, get: Get) -> Sending {
        Box::pin(async move {
            let headers: Vec<(&str, &str)> = get
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            replica
                .client
                .get(&get.target, &headers, get.deadline)
                .await
        })
    }
}

/// The clock B uses: `Instant::now()` and `async_io`'s timers.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep_until(&self, at: Instant) -> Sleep {
        Box::pin(async move {
            Timer::at(at).await;
        })
    }
}
