//! Heap allocations per request on A's `/echo`, and per call of B's calling policy to A, counted
//! by a global allocator that counts. The counting allocator lives in this example only: the
//! shipped binaries keep the system's.
//!
//! usage: cargo run --release --example allocations [-- REQUESTS]   (default 20000)
//!
//! Starts A's echo service in this process on 127.0.0.1:0 (no logger: a log line's own
//! allocation is not counted), sends REQUESTS keep-alive requests on one connection, one at a
//! time, and prints the allocations and bytes allocated per request over all but the first
//! thousand (the warm-up: the connection's task, first buffers, the executor's queues). The
//! client side allocates nothing per request (fixed buffers, std's blocking socket), so every
//! count is the server's.
//!
//! Then B's side of a call, without B's server: `Cluster::call` to that A, one call at a time,
//! with no pattern (B's default) and with every pattern (`--resilient`): allocations and bytes
//! per call, the size of one call's future (the state a call in flight holds, besides what it
//! allocates), and the size of the per-replica and shared state.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::thread;

use echo_lab::http::Deadline;
use echo_lab::http::client::Upstream;
use echo_lab::http::limits::ClientLimits;
use echo_lab::http::server::{self, ServerConfig};
use echo_lab::services::chaos::Chaos;
use echo_lab::services::echo::EchoService;
use echo_lab::services::metrics::Metrics;
use echo_lab::upstream::replicas::{Replica, Replicas};
use echo_lab::upstream::{Cluster, Patterns};

/// The system allocator, counting the allocations (`realloc` included) and their bytes.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call goes to `System` with the caller's arguments unchanged; the counters are
// atomics and allocate nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size(), Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        BYTES.fetch_add(new_size, Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const WARM_UP: usize = 1000;
const REQUEST: &[u8] = b"GET /echo?msg=hello HTTP/1.1\r\nHost: a\r\n\r\n";

fn main() {
    let requests = std::env::args()
        .nth(1)
        .map_or(Ok(20_000), |n| n.parse::<usize>())
        .unwrap_or_else(|e| panic!("REQUESTS must be a number: {e}"));
    let listener = server::bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind");
    let addr = listener.get_ref().local_addr().expect("address");
    let config = ServerConfig::default();
    let service = EchoService::new(Chaos::default(), Arc::new(Metrics::for_server(&config)))
        .with_server_status(config.status());
    let (stop, stopped) = smol::channel::bounded::<()>(1);
    let server = thread::spawn(move || {
        server::serve(listener, service, config, async move {
            let _ = stopped.recv().await;
        })
    });

    let mut client = TcpStream::connect(addr).expect("connect");
    client.set_nodelay(true).expect("nodelay");
    let mut buf = [0u8; 4096];
    let (mut start_allocations, mut start_bytes) = (0, 0);
    for i in 0..requests {
        if i == WARM_UP {
            start_allocations = ALLOCATIONS.load(Relaxed);
            start_bytes = BYTES.load(Relaxed);
        }
        client.write_all(REQUEST).expect("send");
        read_response(&mut client, &mut buf);
    }
    let measured = requests.saturating_sub(WARM_UP).max(1) as f64;
    let allocations = (ALLOCATIONS.load(Relaxed) - start_allocations) as f64 / measured;
    let bytes = (BYTES.load(Relaxed) - start_bytes) as f64 / measured;
    println!(
        "A /echo, {requests} requests on one kept-alive connection (the first {WARM_UP} not \
         counted): {allocations:.2} allocations and {bytes:.0} bytes allocated per request"
    );
    drop(client);

    println!(
        "B's state: a Replica {} bytes, and its pool up to {} idle connections (each its socket's \
         registration, no read buffer); the Cluster {} bytes",
        std::mem::size_of::<Replica>(),
        ClientLimits::default().max_idle_per_upstream,
        std::mem::size_of::<Cluster>()
    );
    for (name, patterns) in [
        ("no pattern (B's default)", Patterns::default()),
        ("every pattern (--resilient)", Patterns::all(CALL_DEADLINE)),
    ] {
        calls(addr, name, patterns, requests);
    }
    drop(stop);
    let _ = server.join();
}

/// B's deadline for one call to A.
const CALL_DEADLINE: std::time::Duration = std::time::Duration::from_secs(1);

/// Makes `requests` calls to A at `addr` through a `Cluster` with `patterns`, one at a time,
/// and prints what each costs.
fn calls(addr: SocketAddr, name: &str, patterns: Patterns, requests: usize) {
    let upstream = Upstream::from_url(&format!("http://{addr}")).expect("A's URL");
    let replicas = Arc::new(Replicas::new(vec![upstream], ClientLimits::default()));
    let cluster = Cluster::new(replicas, patterns);
    let future_bytes = std::mem::size_of_val(&cluster.call(
        "/echo?msg=hello",
        &[],
        Deadline::after(CALL_DEADLINE),
    ));
    let (mut start_allocations, mut start_bytes) = (0, 0);
    async_io::block_on(async {
        for i in 0..requests {
            if i == WARM_UP {
                start_allocations = ALLOCATIONS.load(Relaxed);
                start_bytes = BYTES.load(Relaxed);
            }
            let deadline = Deadline::after(CALL_DEADLINE);
            let (result, _report) = cluster.call("/echo?msg=hello", &[], deadline).await;
            assert!(result.is_ok(), "a call to A failed");
        }
    });
    let measured = requests.saturating_sub(WARM_UP).max(1) as f64;
    let allocations = (ALLOCATIONS.load(Relaxed) - start_allocations) as f64 / measured;
    let bytes = (BYTES.load(Relaxed) - start_bytes) as f64 / measured;
    println!(
        "B's call to A, {name}: {allocations:.2} allocations and {bytes:.0} bytes allocated per \
         call (the server's included: A runs in this process); a call's future {future_bytes} bytes"
    );
}

/// Reads one whole response (framed by `Content-Length`) into `buf`, allocating nothing.
fn read_response(client: &mut TcpStream, buf: &mut [u8]) {
    let mut have = 0;
    loop {
        let n = client.read(&mut buf[have..]).expect("read");
        assert!(n > 0, "the server closed the connection");
        have += n;
        let Some(head_end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = std::str::from_utf8(&buf[..head_end]).expect("an ASCII head");
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("Content-Length: "))
            .and_then(|n| n.trim().parse().ok())
            .expect("a Content-Length");
        if have >= head_end + 4 + length {
            return;
        }
    }
}
