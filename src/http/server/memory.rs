//! What a kept-alive connection costs while it waits for its next request, and the few
//! choices in `connection.rs` that keep it small. No code of its own: the notes, kept in one
//! place so that the loop can read as the protocol, and a test that keeps their figure true.
//!
//! A server with tens of thousands of idle keep-alive connections holds, for each, what its
//! task holds in step 2 (wait for the next request), and little else. Measured with
//! `python3 bench/idle_connections.py --service a` (3,000 idle connections, RSS before and
//! after, divided): 0.91–0.97 KiB per idle connection on A and B, against the budget of 1 KiB.
//! That is the task (the connection's future, below `MAX_SERVE_FUTURE_BYTES`, plus the
//! executor's header) and async-io's registration of the socket.
//!
//! # Why each choice
//!
//! * **Buffers released before the idle wait.** Step 2 gives back the read buffer and the
//!   queue of owed answers when nothing is left in them (nginx does the same with its
//!   `client_header_buffer`): 4 KiB held by each idle connection would be four times the
//!   whole budget. It gives them back before its yield too (the thread serves its other
//!   connections first, `next_request_starts`): kept over it, 64 busy connections raised A's
//!   peak RSS by 0.6 MiB. The next read allocates again, one allocation per request. A
//!   request already buffered when the loop comes back (pipelined) is read without either.
//! * **A task is as large as the largest state of its future**, waiting or not. So the big,
//!   short-lived states are boxed, and cost memory only while they run, one small allocation
//!   each: reading a request (step 3), the handler's answer (steps 4 and 5; B's handler holds
//!   a whole call to A), a streamed answer, the closing linger and the reply to a broken
//!   request (each at most once per connection).
//! * **The task holds the connection once.** `serve` is a plain `fn` returning an
//!   `async move` block, not an `async fn`: an `async fn` first moves its arguments into
//!   locals of its own, and the connection would take its place in the task twice. And the
//!   task is that future itself (`start_connection`), not an `async` block around it.
//! * **A broken request leaves the loop before it is answered** (`break error`): a value
//!   matched on lives until its `match` ends, so an `.await` in that arm would keep room for
//!   a whole read result (a `Request`) in every state of the task, the idle one included.
//! * **One shutdown future per connection.** Every `recv` on the shared shutdown channel
//!   registers a listener under a lock that both threads contend for; made once, it is
//!   polled again at each wait. It borrows the receiver, so one receiver is enough.
//! * **`poll_readable`, not `readable()`.** `poll_readable` keeps our waker in the socket's
//!   one slot per direction (the one reads use); `readable()` adds a list of wakers to the
//!   socket's registration, allocated on first use and kept for the connection's life.
//! * **A `bool` from the readiness wait, not its `io::Result`**: a value that needs dropping
//!   lives to the end of its block, so the result would be kept across the read after it, in
//!   the largest state of the idle wait (8 bytes, 16 once malloc rounds the task).
//! * **One idle timer per connection** (`IdleTimer`), re-armed only when it fires early:
//!   not for memory, but because each new reactor timer is a system call and a wake-up of
//!   the thread waiting in epoll.

/// The most the connection's future (its task, less the executor's header) may take: 456
/// bytes measured on x86-64 in a test build, 2026-12-05. The margin is for compiler versions,
/// not for new fields.
#[cfg(test)]
const MAX_SERVE_FUTURE_BYTES: usize = 512;

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use async_io::Async;
    use smol::channel;

    use super::MAX_SERVE_FUTURE_BYTES;
    use crate::http::limits::Limits;
    use crate::http::server::OpenGuard;
    use crate::http::server::connection::Connection;
    use crate::http::server::tests::Defaults;

    #[test]
    fn the_connection_future_stays_within_the_idle_budget() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let _client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, peer) = listener.accept().expect("accept");
        let (alive, _alive) = channel::bounded(1);
        let open = OpenGuard::new(Arc::new(AtomicUsize::new(0)), alive);
        let stream = Async::new(server).expect("nonblocking");
        let limits = Arc::new(Limits::default());
        let connection = Connection::new(stream, peer, Arc::new(Defaults), limits, open);
        let (_stop, stop) = channel::bounded::<()>(1);
        let serve = connection.serve(stop);
        let size = std::mem::size_of_val(&serve);
        eprintln!("the connection's future: {size} bytes");
        assert!(
            size <= MAX_SERVE_FUTURE_BYTES,
            "{size} bytes: a new state or field is inline that should be boxed (see memory.rs)"
        );
    }
}
