//! Active health checks: a replica that nothing listens at gets no calls, and B asks it
//! "are you back?" with requests of its own, `GET /health`, a few times a second.
//!
//! A refused connection says more than a timeout or a `500`: there is no process at that
//! address, so no call sent there can succeed. Sending calls to find out when one comes back
//! (the balancer's probes, `balance.rs`) costs a call each time, and a call every few hundred
//! milliseconds is the only way to see a restart within a second. A health check costs no
//! call: B sends it on its own, to the one path every replica must answer cheaply, and a
//! refused one costs a failed `connect` and nothing else. So, with ejection on, a replica
//! whose latest attempt could not connect is left out of every choice while another replica
//! is reachable, and a thread of B's own checks it every [`HEALTH_CHECK_INTERVAL`]. When it
//! answers `200`, it is back: its ejection ends, its slow start begins and its estimate
//! restarts from its peers' (`Replica::answered_health_check`).
//!
//! Only refusals are checked this way. A replica that accepts connections but answers `500`,
//! or nothing, is still probed with calls: its `/health` may say "fine" while its `/echo`
//! fails, and only a call finds out.
//!
//! Prior art: HAProxy's `check` (a TCP connect or, with `option httpchk`, a request, every
//! `inter` 2 s; a server is up again after `rise` 2 passed checks), nginx's `health_check`
//! (NGINX Plus), Envoy's active health checking beside its passive outlier detection (a host
//! must pass both), and Kubernetes' readiness probes, which take a pod out of a Service's
//! endpoints until it answers.

use std::sync::{Arc, Weak};
use std::thread;
use std::time::Duration;

use futures_lite::FutureExt;

use super::exchange::{Clock, Exchange, Get};
use super::replicas::{Replica, Replicas, peers_median};
use crate::http::Deadline;

/// How often an unreachable replica is checked. A restarted replica is found within this
/// (and gets its share after its slow start, `balance::SLOW_START_WINDOW`): well inside the
/// second a learner waits for. A refused check costs a `connect` that fails in microseconds,
/// so four a second per dead replica cost nothing worth saving.
pub const HEALTH_CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// How long a check may take: less than the interval, so that checks never pile up. A
/// replica that listens answers `/health` in well under a millisecond on a LAN.
pub const HEALTH_CHECK_TIMEOUT: Duration = Duration::from_millis(200);

/// What a check asks for: the contract's liveness endpoint, which every replica of A has.
pub const HEALTH_PATH: &str = "/health";

/// Sends `GET /health` to each replica in `set` that is unreachable; each that answers `200`
/// is back. Returns how many came back. One round: the caller repeats it.
pub async fn check_unreachable(
    set: &[Arc<Replica>],
    exchange: &dyn Exchange,
    clock: &dyn Clock,
) -> usize {
    let mut back = 0;
    for replica in set.iter().filter(|r| r.is_unreachable()) {
        let sent = clock.now();
        replica.count_health_check();
        let get = Get {
            target: HEALTH_PATH.to_owned(),
            headers: Vec::new(),
            deadline: Deadline::after(HEALTH_CHECK_TIMEOUT),
        };
        // The client keeps the deadline too; the clock's own timer holds it over any exchange
        // (and on the unit tests' hand-driven clock).
        let check = async { exchange.send(replica.clone(), get).await.ok() };
        let timeout = async {
            clock.sleep_until(sent + HEALTH_CHECK_TIMEOUT).await;
            None
        };
        let answered = check
            .or(timeout)
            .await
            .is_some_and(|r| r.head.status == 200);
        let now = clock.now();
        if answered && replica.answered_health_check(sent, peers_median(set, now), now) {
            log::info!(
                "service A replica {} answered its health check: back in rotation",
                replica.address
            );
            back += 1;
        }
    }
    back
}

/// The thread that checks `replicas` every [`HEALTH_CHECK_INTERVAL`], for as long as
/// anything else holds them.
pub fn keep_checking(replicas: &Arc<Replicas>, exchange: Arc<dyn Exchange>, clock: Arc<dyn Clock>) {
    let replicas: Weak<Replicas> = Arc::downgrade(replicas);
    let checker = move || {
        while let Some(replicas) = replicas.upgrade() {
            let set = replicas.current();
            drop(replicas);
            async_io::block_on(check_unreachable(&set, &*exchange, &*clock));
            thread::sleep(HEALTH_CHECK_INTERVAL);
        }
    };
    let spawned = thread::Builder::new()
        .name("health-check".to_owned())
        .spawn(checker);
    if let Err(e) = spawned {
        log::error!("no health checks of service A's replicas: {e}");
    }
}
