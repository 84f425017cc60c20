//! A response body made while it is sent (RFC 9112 §7.1, the chunked transfer coding; RFC 9110
//! §6.4): the producer's side. No I/O here; the server writes a stream in
//! `server/streaming.rs`.
//!
//! A handler that cannot know its body's length in advance (a Server-Sent Events feed, a log
//! tail) makes a `channel`, answers with a `StreamingResponse` holding its `BodyStream`, and
//! keeps the `StreamSender` to hand chunks over from wherever they are made:
//!
//! ```text
//! producer ── send(chunk) ─► [ at most `backlog` chunks ] ─► server ─► 5\r\nhello\r\n … ─► client
//!    ▲                                                          │
//!    └──────────── Err(Gone | TooSlow) at the next send ◄───────┘ client gone, cut off, shutdown
//! ```
//!
//! Dropping every sender is the clean end: the server writes the last chunk. Every other end
//! is seen by the producer as an error from `send`, so a producer loop is simply "send until
//! it fails".
//!
//! The queue between the two is bounded, and `send` never waits: a producer is usually one
//! task feeding many clients, and one slow client must not hold it up. So when a client reads
//! slower than the producer produces, its queue fills, and the stream is cut off (`TooSlow`)
//! rather than buffered without end: memory per stream is at most `backlog` chunks.

use std::fmt;
use std::sync::{Arc, OnceLock};

use smol::channel::{self, Receiver, Sender, TrySendError};

/// Makes a stream whose queue holds at most `backlog` chunks (at least 1): the sender for the
/// producer, and the body for a `StreamingResponse`.
///
/// The backlog is the most a client may fall behind, in chunks, before it is cut off, and so
/// the most memory the stream holds besides the socket's buffers: `backlog` times the largest
/// chunk. Choose it from how bursty the producer is: a feed that sends one event every few
/// hundred milliseconds loses nothing with 64, and holds at most 64 events per slow client.
pub fn channel(backlog: usize) -> (StreamSender, BodyStream) {
    // A bounded channel of zero would be a rendezvous, where every `send` fails unless the
    // server is waiting at that very moment; one chunk is the smallest queue that means "never
    // wait".
    let (chunks_tx, chunks_rx) = channel::bounded(backlog.max(1));
    let ended = Arc::new(Ended::default());
    let sender = StreamSender {
        chunks: chunks_tx,
        ended: ended.clone(),
    };
    let body = BodyStream {
        chunks: chunks_rx,
        ended,
    };
    (sender, body)
}

/// The producer's end of a stream. Clone it to send from several places; the stream ends
/// cleanly when every clone is dropped.
#[derive(Clone, Debug)]
pub struct StreamSender {
    chunks: Sender<Vec<u8>>,
    ended: Arc<Ended>,
}

impl StreamSender {
    /// Queues one chunk; never blocks. An empty chunk is ignored (it would end the body).
    ///
    /// `Err(TooSlow)`: the queue was full, so the client is `backlog` chunks behind; the
    /// stream is cut off now, and the server closes the connection without the last chunk.
    /// `Err(Gone)`: the stream ended on the server's side (see `StreamEnded`). Either way the
    /// chunk is dropped, and every later `send` fails the same way.
    pub fn send(&self, chunk: impl Into<Vec<u8>>) -> Result<(), StreamEnded> {
        if let Some(&why) = self.ended.why.get() {
            return Err(why);
        }
        let chunk = chunk.into();
        if chunk.is_empty() {
            return Ok(());
        }
        match self.chunks.try_send(chunk) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                let why = self.ended.end(StreamEnded::TooSlow);
                // After `end`, so that whoever sees the channel closed also sees why.
                self.chunks.close();
                Err(why)
            }
            Err(TrySendError::Closed(_)) => Err(self.ended.end(StreamEnded::Gone)),
        }
    }

    /// Whether the stream has ended (client gone, cut off, or shutdown).
    pub fn is_closed(&self) -> bool {
        self.ended.why.get().is_some()
    }
}

/// Why a stream ended before its producer was done with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnded {
    /// Nobody reads the stream any more: the client closed the connection, a write to it
    /// failed or timed out, the request was a `HEAD`, or the server is shutting down.
    Gone,
    /// The client fell a whole backlog behind, so the stream was cut off; the server closes
    /// the connection without the last chunk, so the client can tell the body is incomplete.
    TooSlow,
}

impl fmt::Display for StreamEnded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StreamEnded::Gone => "the stream's client is gone",
            StreamEnded::TooSlow => "the stream's client read too slowly and was cut off",
        })
    }
}

impl std::error::Error for StreamEnded {}

/// The server's end of a stream: where the chunks come out. Dropping it ends the stream
/// (`Gone` for the producer).
#[derive(Debug)]
pub struct BodyStream {
    chunks: Receiver<Vec<u8>>,
    ended: Arc<Ended>,
}

/// What the server gets from a `BodyStream` when it waits for the next piece.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Piece {
    /// A chunk of the body, never empty.
    Chunk(Vec<u8>),
    /// Every sender is gone: the body is complete.
    End,
    /// The producer cut the stream off: the client is too slow.
    CutOff,
}

impl BodyStream {
    /// The next piece, when there is one. A queued chunk still comes out after the stream is
    /// cut off: it is `CutOff` instead, so that a slow client gets nothing more.
    pub(crate) async fn next(&self) -> Piece {
        let chunk = self.chunks.recv().await;
        match (self.ended.why.get(), chunk) {
            (Some(StreamEnded::TooSlow), _) => Piece::CutOff,
            (_, Ok(chunk)) => Piece::Chunk(chunk),
            (_, Err(_)) => Piece::End,
        }
    }

    /// Completes when the producer cuts the stream off. The server races its writes against
    /// it: a write to a slow client may wait a long time, and the cut-off should not.
    pub(crate) async fn cut_off(&self) {
        self.ended.wait().await;
        if self.ended.why.get() != Some(&StreamEnded::TooSlow) {
            // Ended by the server itself, which is not waiting on this then; never complete.
            std::future::pending::<()>().await;
        }
    }

    /// Ends the stream from the server's side: the producer's next `send` is `Gone`. Chunks
    /// already queued can still be taken with `queued`.
    pub(crate) fn end(&self) {
        self.ended.end(StreamEnded::Gone);
        self.chunks.close();
    }

    /// Takes a chunk already queued, without waiting: to send what was made before a
    /// shutdown. At most `backlog` of them, since the stream must be `end`ed first.
    pub(crate) fn queued(&self) -> Option<Vec<u8>> {
        self.chunks.try_recv().ok()
    }

    /// The most chunks the queue holds: the backlog the stream was made with.
    pub(crate) fn backlog(&self) -> usize {
        self.chunks.capacity().unwrap_or(1)
    }
}

impl Drop for BodyStream {
    fn drop(&mut self) {
        self.end();
    }
}

/// How a stream ended, shared by its two ends: set once, by whichever end ends it first.
#[derive(Debug)]
struct Ended {
    /// Why the stream ended; unset while it runs.
    why: OnceLock<StreamEnded>,
    /// A channel that carries nothing and is closed when the stream ends: a way to wait for
    /// `why` to be set, from the one async crate we use. Both halves live here, so it closes
    /// only when told to, never because one side was dropped.
    signal: (Sender<()>, Receiver<()>),
}

impl Default for Ended {
    fn default() -> Self {
        Ended {
            why: OnceLock::new(),
            signal: channel::bounded(1),
        }
    }
}

impl Ended {
    /// Ends the stream for `why`, unless it already ended; returns the reason that counts.
    fn end(&self, why: StreamEnded) -> StreamEnded {
        let why = *self.why.get_or_init(|| why);
        self.signal.0.close();
        why
    }

    /// Completes once the stream has ended.
    async fn wait(&self) {
        // Nothing is ever sent; `recv` returns only when the channel is closed.
        let _ = self.signal.1.recv().await;
    }
}

/// A response whose body is a stream: the status and header fields go out at once, then each
/// chunk as it comes. The server adds `Date`, the framing (`Transfer-Encoding: chunked`, or
/// nothing and a close for HTTP/1.0) and `Connection` when it closes. The status must be one
/// that has a body (not `1xx`, `204` or `304`, RFC 9110 §6.4.1).
#[derive(Debug)]
pub struct StreamingResponse {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: BodyStream,
}

impl StreamingResponse {
    /// A streamed response with a body of the given media type (RFC 9110 §8.3).
    pub fn new(status: u16, content_type: &str, body: BodyStream) -> StreamingResponse {
        StreamingResponse {
            status,
            headers: vec![("Content-Type", content_type.to_owned())],
            body,
        }
    }

    pub fn with_header(
        mut self,
        name: &'static str,
        value: impl Into<String>,
    ) -> StreamingResponse {
        self.headers.push((name, value.into()));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::FutureExt;
    use futures_lite::future::block_on;

    /// The next piece if one is ready now; `None` if `next` would wait.
    fn ready(body: &BodyStream) -> Option<Piece> {
        block_on(async { Some(body.next().await) }.or(async { None }))
    }

    /// Whether `cut_off` completes now, rather than waiting.
    fn cut_off_now(body: &BodyStream) -> bool {
        block_on(
            async {
                body.cut_off().await;
                true
            }
            .or(async { false }),
        )
    }

    #[test]
    fn chunks_come_out_in_order() {
        let (tx, body) = channel(4);
        tx.send("hello").expect("room");
        tx.send(b"world".to_vec()).expect("room");
        assert_eq!(ready(&body), Some(Piece::Chunk(b"hello".to_vec())));
        assert_eq!(ready(&body), Some(Piece::Chunk(b"world".to_vec())));
        assert_eq!(ready(&body), None, "nothing more yet, and not the end");
    }

    #[test]
    fn the_clean_end_is_every_sender_dropped() {
        let (tx, body) = channel(4);
        let other = tx.clone();
        tx.send("a").expect("room");
        drop(tx);
        assert_eq!(ready(&body), Some(Piece::Chunk(b"a".to_vec())));
        assert_eq!(ready(&body), None, "one clone still lives");
        drop(other);
        assert_eq!(ready(&body), Some(Piece::End));
    }

    #[test]
    fn an_empty_chunk_is_ignored() {
        let (tx, body) = channel(1);
        tx.send("").expect("ignored, not an error");
        tx.send(Vec::new()).expect("ignored, not an error");
        tx.send("x").expect("the queue is still empty");
        assert_eq!(ready(&body), Some(Piece::Chunk(b"x".to_vec())));
    }

    #[test]
    fn cut_off_at_exactly_backlog_queued_chunks() {
        let (tx, body) = channel(3);
        for i in 0..3 {
            assert_eq!(tx.send(vec![b'x'; 10]), Ok(()), "chunk {i} fits");
        }
        assert!(!tx.is_closed());
        assert_eq!(tx.send("one too many"), Err(StreamEnded::TooSlow));
        assert!(tx.is_closed());
        assert_eq!(tx.send("later"), Err(StreamEnded::TooSlow), "and stays so");
        assert_eq!(tx.clone().send("a clone"), Err(StreamEnded::TooSlow));
        assert_eq!(
            ready(&body),
            Some(Piece::CutOff),
            "the queued chunks are not sent"
        );
        assert!(cut_off_now(&body), "a write in progress learns of it");
    }

    #[test]
    fn the_cut_off_waits_while_the_stream_runs() {
        let (tx, body) = channel(1);
        tx.send("a").expect("room");
        assert!(!cut_off_now(&body));
    }

    #[test]
    fn a_cut_off_wakes_a_server_already_waiting_for_it() {
        let (tx, body) = channel(1);
        let mut waiting = std::pin::pin!(body.cut_off());
        let first = block_on(futures_lite::future::poll_once(waiting.as_mut()));
        assert!(first.is_none(), "the stream runs");
        tx.send("a").expect("room");
        assert_eq!(tx.send("b"), Err(StreamEnded::TooSlow));
        let then = block_on(futures_lite::future::poll_once(waiting.as_mut()));
        assert!(then.is_some(), "the same wait now ends");
    }

    #[test]
    fn the_backlog_is_what_the_stream_was_made_with() {
        assert_eq!(channel(64).1.backlog(), 64);
    }

    #[test]
    fn a_backlog_of_zero_holds_one_chunk() {
        let (tx, body) = channel(0);
        assert_eq!(body.backlog(), 1);
        tx.send("a").expect("room for one");
        assert_eq!(tx.send("b"), Err(StreamEnded::TooSlow));
    }

    #[test]
    fn gone_once_the_body_is_dropped() {
        let (tx, body) = channel(4);
        tx.send("a").expect("room");
        drop(body);
        assert!(tx.is_closed());
        assert_eq!(tx.send("b"), Err(StreamEnded::Gone));
        assert_eq!(
            tx.send(""),
            Err(StreamEnded::Gone),
            "even an empty chunk says so"
        );
    }

    #[test]
    fn ended_by_the_server_the_queue_can_still_be_taken() {
        let (tx, body) = channel(4);
        tx.send("a").expect("room");
        tx.send("b").expect("room");
        body.end();
        assert_eq!(tx.send("c"), Err(StreamEnded::Gone));
        assert_eq!(body.queued(), Some(b"a".to_vec()));
        assert_eq!(body.queued(), Some(b"b".to_vec()));
        assert_eq!(body.queued(), None);
        assert!(!cut_off_now(&body), "ended by the server, not cut off");
    }

    #[test]
    fn the_first_reason_wins() {
        let (tx, body) = channel(1);
        tx.send("a").expect("room");
        assert_eq!(tx.send("b"), Err(StreamEnded::TooSlow));
        drop(body);
        assert_eq!(tx.send("c"), Err(StreamEnded::TooSlow));
    }

    #[test]
    fn reasons_read_as_sentences() {
        assert_eq!(StreamEnded::Gone.to_string(), "the stream's client is gone");
        assert_eq!(
            StreamEnded::TooSlow.to_string(),
            "the stream's client read too slowly and was cut off"
        );
    }

    #[test]
    fn a_streaming_response_has_its_type_and_headers() {
        let (_tx, body) = channel(1);
        let response = StreamingResponse::new(200, "text/event-stream", body)
            .with_header("Cache-Control", "no-store");
        assert_eq!(response.status, 200);
        assert_eq!(
            response.headers,
            [
                ("Content-Type", "text/event-stream".to_owned()),
                ("Cache-Control", "no-store".to_owned())
            ]
        );
    }
}
