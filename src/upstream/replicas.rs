//! The replicas of A that B may call: one pool and one set of statistics per address.
//!
//! `--service-a-url` is a comma-separated list. An IP literal is one replica. A name is as many
//! replicas as it resolves to addresses: that is how a Kubernetes headless Service (or a DNS
//! round-robin name) presents a scaled-out deployment. Names are looked up again every few
//! seconds while B runs, so replicas that appear get traffic and replicas that go away stop
//! getting it; a replica that stays keeps its pool and its statistics across look-ups.
//!
//! Prior art: Envoy's `STRICT_DNS` clusters (re-resolve on an interval, one host per address),
//! gRPC's `dns:///` resolver feeding its balancer, and Finagle's `Name` bound to a changing set
//! of addresses.

use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use super::balance::{DEFAULT_DECAY, PeakEwma, SETTLE_WINDOW, median, slow_start_share};
use super::limit::{AdaptiveLimit, Outcome, Token};
use super::lock::lock;
use super::outlier::{Outlier, OutlierConfig};
use crate::http::client::{Client, Upstream};
use crate::http::limits::ClientLimits;

/// How often names are looked up again. Kubernetes updates a headless Service's records
/// within seconds of a pod becoming ready or going away; polling faster would mostly ask the
/// resolver for an answer it just gave.
pub const RESOLVE_INTERVAL: Duration = Duration::from_secs(5);

/// What B knows of one replica: its address, its connection pool, how loaded and how healthy
/// it looks.
pub struct Replica {
    pub address: SocketAddr,
    /// Which `--service-a-url` entry it came from.
    source: usize,
    pub client: Client,
    state: Mutex<ReplicaState>,
    stats: ReplicaStats,
}

/// The policies' view of one replica. Changed under one short lock per attempt.
#[derive(Debug)]
struct ReplicaState {
    load: PeakEwma,
    outlier: Outlier,
    /// Its adaptive concurrency limit (used when `--adaptive-limit` is on).
    limit: AdaptiveLimit,
    /// Its latest attempt failed: its estimate holds a failure penalty, and its next success
    /// is a return (see `Replica::rejoin`).
    failing: bool,
    /// Its latest attempt could not even connect: nothing listens at its address. With
    /// ejection on, it gets no call until it answers a health check (`health_check.rs`).
    unreachable: bool,
    /// When a health check last found it back: its slow start runs from then, as after an
    /// ejection (see `ReplicaState::back_since`).
    checked_back_at: Option<Instant>,
    /// The number of the latest choice that took it (0: none yet), and when: the probes'
    /// clocks (`balance::overdue`, `balance::probe_due_by_time`).
    last_chosen: u64,
    chosen_at: Option<Instant>,
}

impl ReplicaState {
    /// When it last came back, if it has: an ejection that ended, or a health check that
    /// found it answering again. Its slow start runs from here.
    fn back_since(&self, now: Instant) -> Option<Instant> {
        self.outlier.back_since(now).max(self.checked_back_at)
    }

    /// Whether its estimate is still settling after its return (`balance::SETTLE_WINDOW`).
    fn settling(&self, now: Instant) -> bool {
        self.back_since(now)
            .is_some_and(|since| now.saturating_duration_since(since) < SETTLE_WINDOW)
    }
}

/// Counts for `/metrics`.
#[derive(Debug, Default)]
struct ReplicaStats {
    succeeded: AtomicU64,
    failed: AtomicU64,
    cancelled: AtomicU64,
    ejections: AtomicU64,
    health_checks: AtomicU64,
}

/// How one attempt on a replica ended, as its statistics see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptEnd {
    /// An answer that says the replica works (any status below 500).
    Succeeded,
    /// Timeout, closed, broken HTTP, or a 5xx.
    Failed,
    /// No connection: nothing listens at its address (refused), or no route to it. A failure,
    /// and one that says the replica is not there at all.
    Unreachable,
    /// Given up by B (the other attempt of a hedged pair won); says nothing of its health.
    Cancelled,
}

/// A point-in-time copy of a replica's state, for metrics and logs.
#[derive(Debug, Clone)]
pub struct ReplicaSnapshot {
    pub address: SocketAddr,
    pub succeeded: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub ejections: u64,
    pub ejected: bool,
    /// Its latest attempt could not connect (see `Replica::is_unreachable`).
    pub unreachable: bool,
    /// Health checks sent to it while it was unreachable.
    pub health_checks: u64,
    /// Back from an ejection, not yet trusted again (see `Outlier::is_on_probation`).
    pub on_probation: bool,
    pub outstanding: usize,
    pub latency: Duration,
    pub idle_connections: usize,
    /// Its adaptive concurrency limit now (whether or not the pattern is on).
    pub limit: f64,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Replica({})", self.address)
    }
}

impl Replica {
    fn new(
        source: usize,
        upstream: Upstream,
        address: SocketAddr,
        limits: ClientLimits,
    ) -> Replica {
        let now = Instant::now();
        Replica {
            address,
            source,
            client: Client::to_address(upstream, address, limits),
            state: Mutex::new(ReplicaState {
                load: PeakEwma::new(DEFAULT_DECAY, now),
                outlier: Outlier::new(),
                limit: AdaptiveLimit::new(),
                failing: false,
                unreachable: false,
                checked_back_at: None,
                last_chosen: 0,
                chosen_at: None,
            }),
            stats: ReplicaStats::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, ReplicaState> {
        lock(&self.state)
    }

    /// Peak-EWMA cost: what the balancer compares.
    pub fn cost(&self, now: Instant) -> f64 {
        self.state().load.cost(now)
    }

    pub fn is_ejected(&self, now: Instant) -> bool {
        self.state().outlier.is_ejected(now)
    }

    /// Its estimate, if it is a healthy peer to take a median of: it has answered, its
    /// latest attempt did not fail, and it is in rotation.
    pub fn healthy_latency(&self, now: Instant) -> Option<Duration> {
        let state = self.state();
        let healthy = state.load.answered() && !state.failing && !state.outlier.is_ejected(now);
        healthy.then(|| state.load.latency(now))
    }

    /// Whether its latest attempt failed (its next success will be a return).
    pub fn is_failing(&self) -> bool {
        self.state().failing
    }

    /// Whether its latest attempt could not connect: nothing listens at its address.
    pub fn is_unreachable(&self) -> bool {
        self.state().unreachable
    }

    /// A health check sent at `sent` found it answering again (`health_check.rs`): it is
    /// reachable, its ejection if any is over (its slow start begins), and its estimate
    /// restarts from `peers`, as at any return. False, and nothing changes, when an attempt
    /// has reached it meanwhile.
    pub fn answered_health_check(
        &self,
        sent: Instant,
        peers: Option<Duration>,
        now: Instant,
    ) -> bool {
        let mut state = self.state();
        if !state.unreachable {
            return false;
        }
        state.unreachable = false;
        state.failing = false;
        state.checked_back_at = Some(now);
        state.outlier.record_probe_success(sent, now);
        // Its return is told here, once: the balancer need not welcome it back again.
        state.outlier.take_return(now);
        state.load.rejoin(peers.unwrap_or(Duration::ZERO), now);
        true
    }

    /// A health check is sent to it.
    pub fn count_health_check(&self) {
        self.stats.health_checks.fetch_add(1, Ordering::Relaxed);
    }

    /// The replica returns: its estimate restarts at `peers` (its healthy peers' median; none
    /// known: zero, "try it"). Call it before recording its first success after failures.
    pub fn rejoin(&self, peers: Option<Duration>, now: Instant) {
        self.state()
            .load
            .rejoin(peers.unwrap_or(Duration::ZERO), now);
    }

    /// If an ejection of this replica has ended since the last call, it returns (as
    /// [`rejoin`](Self::rejoin)) and this says true, once per ejection.
    pub fn rejoin_if_back(&self, peers: Option<Duration>, now: Instant) -> bool {
        let mut state = self.state();
        let back = state.outlier.take_return(now);
        if back {
            state.load.rejoin(peers.unwrap_or(Duration::ZERO), now);
        }
        back
    }

    /// Its share of choices now: below 1 while it ramps up after an ejection (slow start).
    pub fn share(&self, now: Instant) -> f64 {
        let back_since = self.state().back_since(now);
        back_since.map_or(1.0, |since| slow_start_share(now - since))
    }

    /// Whether it may be back and is worth asking: ejected, or its latest attempt failed. A
    /// replica that restarted looks like this until an attempt reaches it.
    pub fn may_be_back(&self, now: Instant) -> bool {
        self.is_ejected(now) || self.is_failing()
    }

    /// The balancer sends this replica a probe: the probe's answer replaces its estimate
    /// ([`PeakEwma::mark_probe`]).
    pub fn mark_probe(&self) {
        self.state().load.mark_probe();
    }

    /// Choice number `choice` took this replica, at `now`.
    /// Concurrent calls may stamp out of order: neither ever goes back.
    pub fn chosen(&self, choice: u64, now: Instant) {
        let mut state = self.state();
        state.last_chosen = state.last_chosen.max(choice);
        state.chosen_at = state.chosen_at.max(Some(now));
    }

    /// When a choice last took this replica (`None`: never).
    pub fn chosen_at(&self) -> Option<Instant> {
        self.state().chosen_at
    }

    /// The number of the latest choice that took this replica (0: none yet).
    pub fn last_chosen(&self) -> u64 {
        self.state().last_chosen
    }

    /// A slot under its adaptive limit, or `None` when it has as many in flight as the limit
    /// allows.
    pub fn try_acquire(&self, now: Instant) -> Option<Token> {
        self.state().limit.try_acquire(now)
    }

    /// Whether its adaptive limit has room for one more attempt now.
    pub fn has_room(&self, now: Instant) -> bool {
        self.state().limit.has_room(now)
    }

    /// Whether its adaptive limit has room for a hedge or a retry now: room, and no queue.
    pub fn has_spare_room(&self, now: Instant) -> bool {
        self.state().limit.has_spare_room(now)
    }

    /// Gives back a slot under its adaptive limit, and teaches the limit how it went.
    pub fn release(&self, token: Token, outcome: Outcome, now: Instant) {
        self.state().limit.release(token, outcome, now);
    }

    /// An attempt leaves for this replica.
    pub fn begin(&self, now: Instant) {
        self.state().load.start(now);
    }

    /// An attempt came back (or was given up). `latency` is what the load estimate learns;
    /// `ejection` is the outlier rule when it is on, with the set's answer to "may one more
    /// replica go out?". Returns true when this attempt got the replica ejected.
    pub fn end(
        &self,
        end: AttemptEnd,
        latency: Duration,
        now: Instant,
        ejection: Option<(&OutlierConfig, bool)>,
    ) -> bool {
        let counter = match end {
            AttemptEnd::Succeeded => &self.stats.succeeded,
            AttemptEnd::Failed | AttemptEnd::Unreachable => &self.stats.failed,
            AttemptEnd::Cancelled => &self.stats.cancelled,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let mut state = self.state();
        match end {
            AttemptEnd::Succeeded | AttemptEnd::Failed | AttemptEnd::Unreachable => {
                if state.settling(now) {
                    // A returning replica is cold (new connections, empty caches): while it
                    // settles, its estimate is its latest answer, as a probe's is, so one
                    // cold answer does not become a peak that keeps it avoided for seconds.
                    state.load.mark_probe();
                }
                state.load.finish(latency, now);
                state.failing = end != AttemptEnd::Succeeded;
                state.unreachable = end == AttemptEnd::Unreachable;
            }
            // Given up: a lower bound on its latency, not a measurement of it.
            AttemptEnd::Cancelled => state.load.give_up(latency, now),
        }
        let ejected = match (end, ejection) {
            (AttemptEnd::Succeeded, Some(_)) => {
                let sent = now.checked_sub(latency).unwrap_or(now);
                if state.outlier.record_probe_success(sent, now) {
                    log::info!(
                        "service A replica {}: a probe answered; ejection over",
                        self.address
                    );
                }
                state.outlier.record_success(now);
                false
            }
            (AttemptEnd::Failed | AttemptEnd::Unreachable, Some((config, may_eject))) => {
                state.outlier.record_failure(now, config, may_eject)
            }
            _ => false,
        };
        if ejected {
            self.stats.ejections.fetch_add(1, Ordering::Relaxed);
        }
        ejected
    }

    pub fn snapshot(&self, now: Instant) -> ReplicaSnapshot {
        let state = self.state();
        ReplicaSnapshot {
            address: self.address,
            succeeded: self.stats.succeeded.load(Ordering::Relaxed),
            failed: self.stats.failed.load(Ordering::Relaxed),
            cancelled: self.stats.cancelled.load(Ordering::Relaxed),
            ejections: self.stats.ejections.load(Ordering::Relaxed),
            ejected: state.outlier.is_ejected(now),
            unreachable: state.unreachable,
            health_checks: self.stats.health_checks.load(Ordering::Relaxed),
            on_probation: state.outlier.is_on_probation(now),
            outstanding: state.load.outstanding(),
            latency: state.load.latency(now),
            idle_connections: self.client.idle_connections(),
            limit: state.limit.limit(),
        }
    }
}

/// The median load estimate of the replicas of `set` that are healthy now: where a returning
/// replica's estimate restarts (`balance.rs`, "a replica's return").
pub fn peers_median(set: &[Arc<Replica>], now: Instant) -> Option<Duration> {
    median(set.iter().filter_map(|r| r.healthy_latency(now)).collect())
}

/// The current set of replicas, and where it comes from.
#[derive(Debug)]
pub struct Replicas {
    /// The URLs as given, in order.
    sources: Vec<Upstream>,
    limits: ClientLimits,
    /// Swapped whole on every change, so a call takes a consistent copy with one `Arc` clone.
    current: RwLock<Arc<[Arc<Replica>]>>,
}

impl Replicas {
    /// The replicas of `sources`. IP literals are replicas at once; names are looked up by
    /// `resolve` (a failed look-up leaves them out until a later one succeeds).
    pub fn new(sources: Vec<Upstream>, limits: ClientLimits) -> Replicas {
        let replicas = Replicas {
            sources,
            limits,
            current: RwLock::new(Arc::from(Vec::new())),
        };
        replicas.update(replicas.literal_addresses());
        replicas
    }

    /// Whether any source is a name, that is whether looking up again can change the set.
    pub fn has_names(&self) -> bool {
        self.sources
            .iter()
            .any(|s| s.host.parse::<IpAddr>().is_err())
    }

    /// The replicas now. Cheap: one read lock and one reference count.
    pub fn current(&self) -> Arc<[Arc<Replica>]> {
        match self.current.read() {
            Ok(set) => set.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Looks every name up (blocking: call it from a thread of its own or through
    /// `smol::unblock`) and makes the result the current set. A name whose look-up fails
    /// keeps the addresses it had, so a resolver hiccup does not empty the set.
    pub fn resolve(&self) -> io::Result<()> {
        let old = self.current();
        let mut found = Vec::new();
        let mut last_error = None;
        for (source, upstream) in self.sources.iter().enumerate() {
            match (upstream.host.as_str(), upstream.port).to_socket_addrs() {
                Ok(addrs) => found.extend(addrs.map(|a| (source, a))),
                Err(e) => {
                    log::warn!("service A: cannot resolve {}: {e}", upstream.authority());
                    let kept = old.iter().filter(|r| r.source == source);
                    found.extend(kept.map(|r| (source, r.address)));
                    last_error = Some(e);
                }
            }
        }
        self.update(found);
        last_error.map_or(Ok(()), Err)
    }

    /// Looks names up again every `interval`, for as long as the process runs. Nothing to do
    /// (and no thread) when every source is an IP literal.
    pub fn keep_resolving(self: &Arc<Self>, interval: Duration) {
        if !self.has_names() {
            return;
        }
        let replicas = Arc::downgrade(self);
        std::thread::spawn(move || {
            while let Some(replicas) = replicas.upgrade() {
                let _ = replicas.resolve();
                drop(replicas);
                std::thread::sleep(interval);
            }
        });
    }

    fn literal_addresses(&self) -> Vec<(usize, SocketAddr)> {
        let literal = |(i, s): (usize, &Upstream)| {
            let ip = s.host.parse::<IpAddr>().ok()?;
            Some((i, SocketAddr::new(ip, s.port)))
        };
        self.sources
            .iter()
            .enumerate()
            .filter_map(literal)
            .collect()
    }

    /// Makes `found` the current set: a replica whose address is still there is kept as it
    /// is (pool, load, ejection), new addresses get new replicas, gone ones are dropped (their
    /// idle connections close with them; calls in flight finish on their own copy).
    fn update(&self, found: Vec<(usize, SocketAddr)>) {
        let old = self.current();
        let mut next: Vec<Arc<Replica>> = Vec::with_capacity(found.len());
        for (source, address) in found {
            if next.iter().any(|r| r.address == address) {
                continue;
            }
            let kept = old.iter().find(|r| r.address == address).cloned();
            let upstream = self.sources[source].clone();
            let new = || Arc::new(Replica::new(source, upstream, address, self.limits.clone()));
            next.push(kept.unwrap_or_else(new));
        }
        let changed = next.len() != old.len()
            || next
                .iter()
                .zip(old.iter())
                .any(|(a, b)| a.address != b.address);
        if changed {
            let list: Vec<String> = next.iter().map(|r| r.address.to_string()).collect();
            log::info!("service A replicas: {}", list.join(", "));
        }
        let next: Arc<[Arc<Replica>]> = Arc::from(next);
        match self.current.write() {
            Ok(mut current) => *current = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(url: &str) -> Upstream {
        Upstream::from_url(url).expect("valid url")
    }

    #[test]
    fn ip_literals_are_replicas_at_once() {
        let set = Replicas::new(
            vec![upstream("http://127.0.0.1:1"), upstream("http://[::1]:2")],
            ClientLimits::default(),
        );
        let addrs: Vec<String> = set
            .current()
            .iter()
            .map(|r| r.address.to_string())
            .collect();
        assert_eq!(addrs, ["127.0.0.1:1", "[::1]:2"]);
        assert!(!set.has_names());
    }

    #[test]
    fn the_same_address_twice_is_one_replica() {
        let set = Replicas::new(
            vec![
                upstream("http://127.0.0.1:1"),
                upstream("http://127.0.0.1:1"),
            ],
            ClientLimits::default(),
        );
        assert_eq!(set.current().len(), 1);
    }

    #[test]
    fn a_name_becomes_a_replica_per_address_and_kept_replicas_keep_their_state() {
        let set = Replicas::new(
            vec![
                upstream("http://localhost:7"),
                upstream("http://127.0.0.1:9"),
            ],
            ClientLimits::default(),
        );
        assert!(set.has_names());
        assert_eq!(set.current().len(), 1, "names wait for a look-up");
        let literal = set.current()[0].clone();
        literal.end(AttemptEnd::Failed, Duration::ZERO, Instant::now(), None);
        set.resolve().expect("localhost resolves");
        let now = set.current();
        assert!(now.len() >= 2, "localhost and the literal");
        assert!(now.iter().any(|r| r.address.port() == 7));
        let kept = now
            .iter()
            .find(|r| r.address == literal.address)
            .expect("literal kept");
        assert!(
            Arc::ptr_eq(kept, &literal),
            "the same replica, not a new one"
        );
        assert_eq!(kept.snapshot(Instant::now()).failed, 1);
    }

    #[test]
    fn attempts_are_counted_and_ejection_is_reported() {
        let set = Replicas::new(
            vec![upstream("http://127.0.0.1:1")],
            ClientLimits::default(),
        );
        let replica = set.current()[0].clone();
        let config = OutlierConfig::default();
        let t0 = Instant::now();
        let mut ejected = false;
        for _ in 0..config.consecutive_failures {
            replica.begin(t0);
            ejected = replica.end(
                AttemptEnd::Failed,
                Duration::from_millis(1),
                t0,
                Some((&config, true)),
            );
        }
        assert!(ejected, "the last of the consecutive failures ejects");
        let snap = replica.snapshot(t0);
        assert!(snap.ejected);
        let failures = u64::from(config.consecutive_failures);
        assert_eq!(
            (snap.failed, snap.ejections, snap.outstanding),
            (failures, 1, 0)
        );
        replica.begin(t0);
        replica.end(
            AttemptEnd::Cancelled,
            Duration::from_millis(1),
            t0,
            Some((&config, true)),
        );
        assert_eq!(replica.snapshot(t0).cancelled, 1);
    }

    fn one_replica() -> Arc<Replica> {
        let set = Replicas::new(
            vec![upstream("http://127.0.0.1:1")],
            ClientLimits::default(),
        );
        set.current()[0].clone()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_failing_replica_is_no_healthy_peer_until_it_answers() {
        let replica = one_replica();
        let t0 = Instant::now();
        assert_eq!(replica.healthy_latency(t0), None, "never answered");
        replica.begin(t0);
        replica.end(AttemptEnd::Succeeded, ms(3), t0, None);
        assert_eq!(replica.healthy_latency(t0), Some(ms(3)));
        replica.begin(t0);
        replica.end(AttemptEnd::Failed, ms(100), t0, None);
        assert!(replica.is_failing());
        assert_eq!(replica.healthy_latency(t0), None);
        replica.begin(t0);
        replica.end(AttemptEnd::Cancelled, ms(1), t0, None);
        assert!(replica.is_failing(), "a cancelled attempt says nothing");
    }

    #[test]
    fn a_rejoining_replica_costs_what_its_peers_do() {
        let replica = one_replica();
        let t0 = Instant::now();
        for _ in 0..3 {
            replica.begin(t0);
            replica.end(AttemptEnd::Failed, ms(100), t0, None);
        }
        assert!(replica.cost(t0) >= 100e6);
        replica.rejoin(Some(ms(2)), t0 + ms(10));
        assert_eq!(replica.cost(t0 + ms(10)), 2e6);
        replica.rejoin(None, t0 + ms(10));
        assert_eq!(replica.cost(t0 + ms(10)), 0.0, "no healthy peer: try it");
    }

    #[test]
    fn back_from_an_ejection_it_rejoins_once_and_ramps_its_share() {
        let replica = one_replica();
        let config = OutlierConfig::default();
        let t0 = Instant::now();
        for _ in 0..config.consecutive_failures {
            replica.begin(t0);
            replica.end(AttemptEnd::Failed, ms(100), t0, Some((&config, true)));
        }
        assert_eq!(
            replica.share(t0),
            1.0,
            "ejected, not ramping: not a candidate at all"
        );
        assert!(!replica.rejoin_if_back(Some(ms(2)), t0 + ms(500)));
        let back = t0 + config.base_ejection;
        assert!(replica.rejoin_if_back(Some(ms(2)), back));
        assert_eq!(replica.cost(back), 2e6);
        assert!(
            !replica.rejoin_if_back(Some(ms(9)), back),
            "once per ejection"
        );
        assert!(replica.share(back) < 0.2);
        assert!(replica.share(back + ms(450)) >= 0.9);
        assert_eq!(replica.share(back + ms(500)), 1.0);
    }

    #[test]
    fn choices_are_stamped_and_never_go_back() {
        let replica = one_replica();
        let t0 = Instant::now();
        assert_eq!((replica.last_chosen(), replica.chosen_at()), (0, None));
        replica.chosen(7, t0 + Duration::from_millis(2));
        // A concurrent choice that read the counter and the clock earlier.
        replica.chosen(5, t0 + Duration::from_millis(1));
        assert_eq!(replica.last_chosen(), 7);
        assert_eq!(replica.chosen_at(), Some(t0 + Duration::from_millis(2)));
    }

    #[test]
    fn the_adaptive_limit_is_per_replica_and_in_the_snapshot() {
        let replica = one_replica();
        let t0 = Instant::now();
        let first = replica.try_acquire(t0).expect("room");
        replica.release(first, Outcome::Answered, t0);
        let tokens: Vec<Token> = (0..100).map_while(|_| replica.try_acquire(t0)).collect();
        assert_eq!(tokens.len(), 4, "the initial limit");
        assert!(!replica.has_room(t0));
        for token in tokens {
            replica.release(token, Outcome::Dropped, t0);
        }
        assert!(replica.has_room(t0));
        assert!(replica.snapshot(t0).limit < 4.0);
    }
}
