//! `BufferedStream`: a byte stream with a read buffer (RFC 9112 §2.1, §9.3.2), the bytes that
//! have arrived but are not parsed yet.
//!
//! HTTP/1.1 has no message boundaries on the wire (RFC 9112 §2.1): a read may hold half a head,
//! or one request and the start of the next (pipelining, RFC 9112 §9.3.2). So we read into a
//! buffer, parse from its front, and `consume` exactly the bytes a message used. What is left
//! stays for the next turn. The same type serves the server and B's client.
//!
//! One buffer per connection, reused for every message on it: `start..end` is the unparsed
//! part; consumed bytes are reclaimed by moving the rest to the front only when room runs out.

use std::future::poll_fn;
use std::io::{self, Read};
use std::net::TcpStream;
use std::pin::Pin;
use std::task::Poll;

use async_io::Async;
use futures_lite::AsyncRead;

use super::limits::READ_CHUNK_BYTES;
use super::wire_trace::{ConnId, Side};

/// A stream and the bytes read from it that nobody has consumed yet.
#[derive(Debug)]
pub struct BufferedStream<S> {
    pub stream: S,
    /// The connection's name in the wire trace.
    pub id: ConnId,
    /// Storage; only `buf[start..end]` holds live bytes.
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl<S> BufferedStream<S> {
    /// A connection a client opened to us.
    pub fn new(stream: S) -> Self {
        BufferedStream::with_id(stream, ConnId::next(Side::Inbound))
    }

    /// A connection we opened to an upstream.
    pub fn outbound(stream: S) -> Self {
        BufferedStream::with_id(stream, ConnId::next(Side::Outbound))
    }

    fn with_id(stream: S, id: ConnId) -> Self {
        BufferedStream {
            stream,
            id,
            buf: Vec::new(),
            start: 0,
            end: 0,
        }
    }

    /// Bytes received and not yet consumed.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Drops the first `n` buffered bytes: a message has used them.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Gives the buffer's memory back when it holds nothing, before a wait that may be long
    /// (a kept-alive connection between requests). The next `fill` allocates again.
    pub fn release_buffer(&mut self) {
        if self.start == self.end {
            self.buf = Vec::new();
            self.start = 0;
            self.end = 0;
        }
    }

    /// The memory the buffer holds, in bytes, whatever part of it is in use.
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Takes up to `n` buffered bytes out of the buffer.
    pub fn take(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.end - self.start);
        let taken = self.buf[self.start..self.start + n].to_vec();
        self.consume(n);
        taken
    }

    /// Makes room for at least a quarter of a read chunk after `end`: first by moving the live
    /// bytes to the front, then by growing. Callers cap how far the buffer may grow.
    fn make_room(&mut self) {
        if self.buf.len() - self.end >= READ_CHUNK_BYTES / 4 {
            return;
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < READ_CHUNK_BYTES / 4 {
            self.buf.resize(self.buf.len() + READ_CHUNK_BYTES, 0);
        }
    }
}

impl<S: AsyncRead + Unpin> BufferedStream<S> {
    /// Reads once more from the stream, appending to the buffer. Returns the number of bytes
    /// read; `0` means the peer closed its side (end of stream).
    ///
    /// Cancel-safe: if this future is dropped (a timeout won a race), nothing was appended.
    pub async fn fill(&mut self) -> io::Result<usize> {
        self.make_room();
        poll_fn(|cx| {
            let end = self.end;
            let poll = Pin::new(&mut self.stream).poll_read(cx, &mut self.buf[end..]);
            if let Poll::Ready(Ok(n)) = poll {
                self.end += n;
            }
            poll
        })
        .await
    }
}

impl BufferedStream<Async<TcpStream>> {
    /// Reads once, now, without waiting: `Ok(None)` when nothing has arrived (the socket
    /// would block, or a signal cut the read short). A kept-alive connection tries this
    /// before it waits for the next request, because a wait costs more than a read that finds
    /// nothing: the reactor re-arms the socket's interest (one `epoll_ctl`) and must wake the
    /// task again.
    pub fn try_fill(&mut self) -> io::Result<Option<usize>> {
        self.make_room();
        let end = self.end;
        match self.stream.get_ref().read(&mut self.buf[end..]) {
            Ok(n) => {
                self.end += n;
                Ok(Some(n))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_appends_and_consume_keeps_the_rest() {
        let mut conn = BufferedStream::new(&b"GET / HTTP/1.1\r\n\r\nGET /next"[..]);
        let n = smol::block_on(conn.fill()).expect("read from a slice");
        assert_eq!(n, 27);
        conn.consume(18);
        assert_eq!(conn.buffered(), b"GET /next");
        assert_eq!(conn.take(3), b"GET");
        assert_eq!(conn.buffered(), b" /next");
        assert_eq!(smol::block_on(conn.fill()).expect("eof"), 0);
    }

    #[test]
    fn release_buffer_gives_the_memory_back_only_when_nothing_is_buffered() {
        let mut conn = BufferedStream::new(&b"GET / HTTP/1.1\r\n\r\nGET /next"[..]);
        smol::block_on(conn.fill()).expect("read from a slice");
        conn.consume(18);
        conn.release_buffer();
        assert_eq!(conn.buffered(), b"GET /next", "unparsed bytes are kept");
        assert!(conn.buf.capacity() > 0);

        conn.consume(9);
        conn.release_buffer();
        assert_eq!(conn.buf.capacity(), 0, "an empty buffer is freed");
        assert_eq!((conn.start, conn.end), (0, 0));
        assert_eq!(
            smol::block_on(conn.fill()).expect("eof"),
            0,
            "and reading still works"
        );
    }

    #[test]
    fn a_message_longer_than_a_read_chunk_grows_the_buffer_until_it_is_all_here() {
        let long: Vec<u8> = (0..READ_CHUNK_BYTES * 2 + 100).map(|i| i as u8).collect();
        let mut conn = BufferedStream::new(&long[..]);
        while smol::block_on(conn.fill()).expect("read from a slice") > 0 {}
        assert_eq!(
            conn.buffered(),
            &long[..],
            "nothing consumed, so all of it is kept"
        );
    }

    #[test]
    fn the_buffer_is_reused_not_grown_when_messages_are_consumed() {
        let message = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let stream: Vec<u8> = message
            .iter()
            .copied()
            .cycle()
            .take(message.len() * 1000)
            .collect();
        let mut conn = BufferedStream::new(&stream[..]);
        let mut seen = 0;
        while smol::block_on(conn.fill()).expect("slice") > 0 {
            while conn.buffered().len() >= message.len() {
                assert_eq!(&conn.buffered()[..message.len()], message, "message {seen}");
                conn.consume(message.len());
                seen += 1;
            }
        }
        assert_eq!(seen, 1000);
        assert!(
            conn.buf.len() <= 2 * READ_CHUNK_BYTES,
            "grew to {}",
            conn.buf.len()
        );
    }

    fn socket_pair() -> (std::net::TcpStream, BufferedStream<Async<TcpStream>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        let server = Async::new(server).expect("nonblocking");
        (client, BufferedStream::new(server))
    }

    #[test]
    fn try_fill_finds_nothing_without_waiting_then_what_has_arrived() {
        use std::io::Write;
        let (mut client, mut conn) = socket_pair();
        assert_eq!(conn.try_fill().expect("would block"), None);
        assert_eq!(conn.buffered(), b"");
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").expect("send");
        // Loopback delivers at once, but give the kernel a moment under load.
        let mut read = None;
        for _ in 0..500 {
            read = conn.try_fill().expect("read");
            if read.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert_eq!(read, Some(18));
        assert_eq!(conn.buffered(), b"GET / HTTP/1.1\r\n\r\n");
        drop(client);
        let mut closed = None;
        for _ in 0..500 {
            closed = conn.try_fill().expect("end of stream");
            if closed.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert_eq!(closed, Some(0), "end of stream is a read of zero bytes");
    }
}
