//! A streamed response written to one connection (RFC 9112 §7.1 chunked coding, §6.3 item 8
//! close-delimited body, RFC 9110 §9.3.2 `HEAD`): step 5 of the keep-alive loop when the
//! handler answered with a `StreamingResponse` (see `stream.rs` for the producer's side).
//!
//! ```text
//!   head (with answers owed before it) ─► written at once
//!   ┌─► wait for the first of: shutdown ─► the chunks queued, the last chunk, close
//!   │                          the client closes ─► drop the connection
//!   │                          a chunk ─► frame it, write it (within the write timeout) ─┐
//!   │                          every sender dropped ─► the last chunk, keep alive        │
//!   │                          cut off (too slow) ─► close without the last chunk        │
//!   └────────────────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! HTTP/1.1 gets `Transfer-Encoding: chunked`; an HTTP/1.0 client gets the bare bytes, and the
//! close is the end of the body. A `HEAD` gets the head alone, and the stream is dropped.
//!
//! Every wait is bounded or watched: a write by the write timeout, and a wait for the next
//! chunk by the client's close and by shutdown. What a stream holds is bounded by its backlog
//! (see `stream::channel`): a client that cannot keep up is cut off, never buffered for.

use std::future::{pending, poll_fn};
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::pin::pin;

use async_io::{Async, Timer};
use futures_lite::{AsyncWriteExt, FutureExt};
use smol::channel::Receiver;

use crate::http::conn::BufferedStream;
use crate::http::limits::Limits;
use crate::http::message::Version;
use crate::http::stream::{BodyStream, Piece, StreamingResponse};
use crate::http::wire_trace::{self, Direction};
use crate::http::write::{BodyLength, write_chunk, write_head, write_last_chunk};

/// What the connection does once a stream is over.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum AfterStream {
    /// The body ended by its own framing (the last chunk, owed), or there was none (`HEAD`).
    KeepAlive,
    /// Write what is owed (the last chunk, or nothing after a cut-off), then close: the
    /// framing says so (HTTP/1.0, `Connection: close`), shutdown began, or the client was cut
    /// off.
    Close,
    /// The client is gone, or a write to it failed or timed out: nothing more can be sent.
    Drop,
}

/// How the chunks stopped coming.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// Every sender was dropped: the body is complete.
    Finished,
    /// Shutdown began: the chunks already queued are owed, the stream is ended.
    Stopped,
    /// The producer found the queue full: the client is a whole backlog behind.
    CutOff,
    /// The client closed, or a write failed or timed out.
    Gone,
}

/// What one connection lends a stream while it is written.
pub(super) struct Streamer<'c> {
    conn: &'c mut BufferedStream<Async<TcpStream>>,
    /// The connection's answers owed: the head goes in behind any pipelined answers before
    /// it, and each chunk is framed here, then written.
    owed: &'c mut Vec<u8>,
    peer: SocketAddr,
    limits: &'c Limits,
}

impl<'c> Streamer<'c> {
    pub(super) fn new(
        conn: &'c mut BufferedStream<Async<TcpStream>>,
        owed: &'c mut Vec<u8>,
        peer: SocketAddr,
        limits: &'c Limits,
    ) -> Self {
        Streamer {
            conn,
            owed,
            peer,
            limits,
        }
    }

    /// Sends `response` to a request of `version` (`head_only` for `HEAD`); `close` if either
    /// side already said the connection ends after it. `stop` is closed when shutdown begins.
    pub(super) async fn send(
        mut self,
        response: StreamingResponse,
        version: Version,
        head_only: bool,
        close: bool,
        stop: &Receiver<()>,
    ) -> AfterStream {
        let length = BodyLength::unknown(version);
        // Shutdown may have begun while the handler made the response.
        let close = close || stop.is_closed() || length == BodyLength::UntilClose;
        let start = self.owed.len();
        write_head(
            self.owed,
            version,
            response.status,
            &response.headers,
            length,
            close,
        );
        wire_trace::head(self.conn.id, Direction::Sent, &self.owed[start..]);
        if head_only {
            // The head a GET would get, and no body (RFC 9110 §9.3.2); `Transfer-Encoding`
            // may be said in it (RFC 9112 §6.1). Dropping the body tells the producer `Gone`.
            return if close {
                AfterStream::Close
            } else {
                AfterStream::KeepAlive
            };
        }
        let chunked = length == BodyLength::Chunked;
        match self.pump(&response.body, chunked, stop).await {
            // After a clean end the connection stays open, unless a side said close: the last
            // chunk ends the message as surely as a `Content-Length` would, and keeping the
            // connection is what chunked framing is for (RFC 9112 §7.1, §9.3). A client that
            // streams again (an SSE client reconnecting) saves a handshake.
            End::Finished if chunked => {
                self.last_chunk();
                if close || stop.is_closed() {
                    AfterStream::Close
                } else {
                    AfterStream::KeepAlive
                }
            }
            // Close-delimited: the close is the end (RFC 9112 §6.3 item 8).
            End::Finished => AfterStream::Close,
            End::Stopped => {
                if chunked {
                    self.last_chunk();
                }
                AfterStream::Close
            }
            End::CutOff => {
                let (peer, backlog) = (self.peer, response.body.backlog());
                log::warn!(peer:% = peer, event = "stream_cut_off", backlog = backlog;
                    "peer={peer} stream cut off: the client fell {backlog} chunks behind; \
                     closing without the last chunk");
                // What was framed and not written is dropped: a client that gets no last
                // chunk (or, over HTTP/1.0, fewer bytes) knows the body is incomplete.
                self.owed.clear();
                AfterStream::Close
            }
            End::Gone => AfterStream::Drop,
        }
    }

    /// Writes the head, then each chunk as it comes, until the stream ends one way or
    /// another (see `End`). The last chunk is left to the caller.
    async fn pump(&mut self, body: &BodyStream, chunked: bool, stop: &Receiver<()>) -> End {
        // Made once per stream; it borrows `stop`, like the connection's own.
        let mut stopped = pin!(stop.recv());
        // The head, and any answers owed before it, go out at once: the client learns that a
        // stream has begun before its first chunk is made.
        if let Err(end) = self.write_owed(body).await {
            return end;
        }
        loop {
            // Shutdown first: a producer that is always ready must not keep a stream going
            // past it.
            let conn = &mut *self.conn;
            let cap = self.limits.max_head_bytes;
            let woken = async {
                let _ = stopped.as_mut().await;
                Woken::Stop
            }
            .or(async {
                peer_closed(conn, cap).await;
                Woken::PeerClosed
            })
            .or(async { Woken::Piece(body.next().await) })
            .await;
            let data = match woken {
                Woken::Piece(Piece::Chunk(data)) => data,
                Woken::Piece(Piece::End) => return End::Finished,
                Woken::Piece(Piece::CutOff) => return End::CutOff,
                Woken::PeerClosed => return End::Gone,
                Woken::Stop => {
                    // No more chunks from now on; those already made are still sent.
                    body.end();
                    while let Some(data) = body.queued() {
                        self.frame(&data, chunked);
                    }
                    return End::Stopped;
                }
            };
            self.frame(&data, chunked);
            if let Err(end) = self.write_owed(body).await {
                return end;
            }
        }
    }

    /// Appends `data` to what is owed, as a chunk or, close-delimited, as it is.
    fn frame(&mut self, data: &[u8], chunked: bool) {
        let start = self.owed.len();
        if chunked {
            write_chunk(self.owed, data);
            wire_trace::chunk(
                self.conn.id,
                Direction::Sent,
                &self.owed[start..],
                data.len(),
            );
        } else {
            self.owed.extend_from_slice(data);
            wire_trace::body(self.conn.id, Direction::Sent, data);
        }
    }

    /// Queues the last chunk: the body is complete.
    fn last_chunk(&mut self) {
        let start = self.owed.len();
        write_last_chunk(self.owed);
        wire_trace::chunk(self.conn.id, Direction::Sent, &self.owed[start..], 0);
    }

    /// Writes everything owed within the write timeout (one timeout per chunk, so a client
    /// that stops reading cannot pin the task), unless the producer cuts the stream off
    /// meanwhile: a write to a slow client may wait the whole timeout, the cut-off need not.
    async fn write_owed(&mut self, body: &BodyStream) -> Result<(), End> {
        let timeout = self.limits.write_timeout;
        let stream = &mut self.conn.stream;
        let owed = &*self.owed;
        let written = async {
            let result = stream.write_all(owed).or(async {
                Timer::after(timeout).await;
                Err(io::ErrorKind::TimedOut.into())
            });
            result.await.map_err(|_| End::Gone)
        }
        .or(async {
            body.cut_off().await;
            Err(End::CutOff)
        })
        .await;
        self.owed.clear();
        written
    }
}

/// What ended a wait for the next chunk.
enum Woken {
    Piece(Piece),
    PeerClosed,
    Stop,
}

/// Completes when the client has closed the connection, or it failed: a read gives the end of
/// the stream, or an error. Watched while waiting for the next chunk, so a client that leaves
/// is noticed at once, not at the next write, which may be long in coming; and the stream's
/// task and memory are freed with it. (A client that only shut its sending side counts as
/// gone too: nothing on the wire tells the two apart.)
///
/// Bytes that arrive meanwhile (the next request, pipelined) stay in the buffer for after the
/// stream, up to the head cap: no next head can be larger, and past it the watch stops, so a
/// client cannot make us buffer without end. A client gone after that is noticed at the next
/// write.
async fn peer_closed(conn: &mut BufferedStream<Async<TcpStream>>, cap: usize) {
    loop {
        if conn.buffered().len() >= cap {
            return pending().await;
        }
        // Readable first, then read, as in `next_request_starts`: reading before the socket is
        // readable would only fail with EAGAIN.
        if poll_fn(|cx| conn.stream.poll_readable(cx)).await.is_err() {
            return;
        }
        match conn.fill().await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::date;
    use crate::http::stream::{StreamEnded, channel};
    use futures_lite::future::block_on;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::time::Duration;

    /// A connected pair on loopback: the server's end, as a connection holds it, and the
    /// client's, with a read timeout.
    fn pair() -> (BufferedStream<Async<TcpStream>>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let (server, _) = listener.accept().expect("accept");
        let server = Async::new(server).expect("non-blocking");
        (BufferedStream::new(server), client)
    }

    /// Streams `response` over a fresh connection as a connection would, writes what is owed
    /// after it and closes; what the client read (the `Date` line taken out) and the verdict.
    fn streamed(
        response: StreamingResponse,
        version: Version,
        head_only: bool,
        stop: &Receiver<()>,
    ) -> (String, AfterStream) {
        streamed_with(response, version, head_only, false, stop)
    }

    /// `streamed`, for a request whose client said `Connection: close` when `close`.
    fn streamed_with(
        response: StreamingResponse,
        version: Version,
        head_only: bool,
        close: bool,
        stop: &Receiver<()>,
    ) -> (String, AfterStream) {
        let (mut conn, mut client) = pair();
        let peer = client.local_addr().expect("addr");
        let limits = Limits::default();
        let mut owed = Vec::new();
        let after = block_on(async {
            let streamer = Streamer::new(&mut conn, &mut owed, peer, &limits);
            let after = streamer
                .send(response, version, head_only, close, stop)
                .await;
            conn.stream
                .write_all(&owed)
                .await
                .expect("write what is owed");
            after
        });
        drop(conn);
        let mut raw = Vec::new();
        client.read_to_end(&mut raw).expect("read to the close");
        (without_date(&raw), after)
    }

    /// `raw` as text, without its `Date` line.
    fn without_date(raw: &[u8]) -> String {
        let text = String::from_utf8_lossy(raw);
        let date_at = text.find("\r\nDate: ").expect("a Date line") + 2;
        let date_len = "Date: ".len() + date::IMF_FIXDATE_LEN + 2;
        format!("{}{}", &text[..date_at], &text[date_at + date_len..])
    }

    /// A response whose body is `chunks`, queued and complete (every sender dropped).
    fn finished(chunks: &[&str]) -> StreamingResponse {
        let (tx, body) = channel(chunks.len());
        for chunk in chunks {
            tx.send(*chunk).expect("room");
        }
        StreamingResponse::new(200, "text/plain", body)
    }

    /// A `stop` that has not fired, as long as the sender lives.
    fn running() -> (smol::channel::Sender<()>, Receiver<()>) {
        smol::channel::bounded(1)
    }

    #[test]
    fn http11_gets_chunks_and_the_last_chunk_and_stays() {
        let (_keep, stop) = running();
        let (text, after) = streamed(
            finished(&["hello", "abcdefghijklmnopqrstuvwxyz"]),
            Version::Http11,
            false,
            &stop,
        );
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n\
             5\r\nhello\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n"
        );
        assert_eq!(after, AfterStream::KeepAlive);
    }

    #[test]
    fn http10_gets_the_bare_body_ended_by_the_close() {
        let (_keep, stop) = running();
        let (text, after) = streamed(
            finished(&["hello", " world"]),
            Version::Http10,
            false,
            &stop,
        );
        assert_eq!(
            text,
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nhello world"
        );
        assert_eq!(after, AfterStream::Close);
    }

    #[test]
    fn head_gets_the_head_alone_and_the_producer_is_told() {
        let (_keep, stop) = running();
        let (tx, body) = channel(4);
        let response = StreamingResponse::new(200, "text/plain", body);
        let (text, after) = streamed(response, Version::Http11, true, &stop);
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        assert_eq!(after, AfterStream::KeepAlive);
        assert_eq!(tx.send("never sent"), Err(StreamEnded::Gone));
    }

    #[test]
    fn shutdown_sends_what_is_queued_then_the_last_chunk_and_closes() {
        let (stop_tx, stop) = running();
        let (tx, body) = channel(4);
        tx.send("a").expect("room");
        tx.send("bc").expect("room");
        drop(stop_tx);
        let response = StreamingResponse::new(200, "text/plain", body);
        let (text, after) = streamed(response, Version::Http11, false, &stop);
        assert!(
            text.ends_with("Connection: close\r\n\r\n1\r\na\r\n2\r\nbc\r\n0\r\n\r\n"),
            "{text:?}"
        );
        assert_eq!(after, AfterStream::Close);
        assert_eq!(tx.send("after"), Err(StreamEnded::Gone));
    }

    #[test]
    fn a_cut_off_stream_closes_without_the_last_chunk() {
        let (_keep, stop) = running();
        let (tx, body) = channel(1);
        tx.send("a").expect("room");
        assert_eq!(tx.send("b"), Err(StreamEnded::TooSlow));
        let response = StreamingResponse::new(200, "text/plain", body);
        let (text, after) = streamed(response, Version::Http11, false, &stop);
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        assert_eq!(after, AfterStream::Close);
    }

    #[test]
    fn a_client_that_closes_while_no_chunk_comes_ends_the_stream() {
        let (_keep, stop) = running();
        let (mut conn, client) = pair();
        let peer = client.local_addr().expect("addr");
        let (tx, body) = channel(4);
        let response = StreamingResponse::new(200, "text/plain", body);
        let limits = Limits::default();
        let mut owed = Vec::new();
        // The client sends a little (kept for after the stream), then goes away. No chunk is
        // ever sent, so only the read side can notice.
        let mut client = client;
        client.write_all(b"GET /next").expect("write");
        drop(client);
        let after = block_on(Streamer::new(&mut conn, &mut owed, peer, &limits).send(
            response,
            Version::Http11,
            false,
            false,
            &stop,
        ));
        assert_eq!(after, AfterStream::Drop);
        assert_eq!(tx.send("late"), Err(StreamEnded::Gone));
    }

    #[test]
    fn a_client_that_said_close_gets_the_last_chunk_and_then_the_close() {
        let (_keep, stop) = running();
        let response = finished(&["hello"]);
        let (text, after) = streamed_with(response, Version::Http11, false, true, &stop);
        assert!(text.ends_with("\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), "{text}");
        assert_eq!(after, AfterStream::Close);
    }
}
