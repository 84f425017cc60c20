//! What the fuzz targets check, without libFuzzer: `request::check` and `response::check`
//! (one input each), and their helpers: a reader that hands its bytes out in pieces, and the
//! split-invariance check for the chunked decoder.
//!
//! The fuzz targets include this module, and so does `tests/fuzz_corpus.rs` at the repository
//! root, which replays the seed corpus through the same checks in every `cargo test`.

// Each fuzz target uses one of the two checks.
#![allow(dead_code)]

pub mod request;
pub mod response;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use echo_lab::http::chunked::ChunkedDecoder;
use futures_lite::AsyncRead;

/// The body cap both sides run with (`Limits::default()` and `ClientLimits::default()`).
pub const MAX_BODY: usize = 64 * 1024;

/// How a run over the whole input ended, after the messages it read in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Every byte was used by a complete message.
    Clean,
    /// The input stopped inside a message (partial head, short body).
    Incomplete,
    /// The bytes were rejected (syntax, framing, limits).
    Rejected,
}

/// A stream over `data` whose reads return 1..=`max_read` bytes, sizes drawn from a PRNG:
/// the same bytes as one slice, arriving the way a slow or bursty peer would send them.
pub struct SplitReader<'a> {
    data: &'a [u8],
    max_read: usize,
    rng: u64,
}

impl<'a> SplitReader<'a> {
    /// Read sizes are picked from `seed`: its low two bits choose 1-byte, up to 7, up to 64 or
    /// up to 4096-byte reads; the rest seeds the sizes.
    pub fn new(data: &'a [u8], seed: u8) -> Self {
        SplitReader {
            data,
            max_read: [1, 7, 64, 4096][usize::from(seed & 3)],
            rng: 0x9E37_79B9_7F4A_7C15 ^ u64::from(seed),
        }
    }

    fn next_size(&mut self) -> usize {
        // xorshift64
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        1 + (self.rng % self.max_read as u64) as usize
    }
}

impl AsyncRead for SplitReader<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let n = self.next_size().min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Poll::Ready(Ok(n))
    }
}

/// A cut point in `0..=len` chosen by one input byte, spread over the whole range.
pub fn cut_point(byte: u8, len: usize) -> usize {
    usize::from(byte) * (len + 1) / 256
}

/// What a decoder made of some bytes: bytes used (or the error), the data, whether done.
type Decoded = (Result<usize, String>, Vec<u8>, bool);

fn decode_at_once(bytes: &[u8], max: usize) -> Decoded {
    let mut dec = ChunkedDecoder::new(max);
    let mut out = Vec::new();
    match dec.decode(bytes, &mut out) {
        Ok(used) => {
            assert!(
                used <= bytes.len(),
                "decoder used {used} of {}",
                bytes.len()
            );
            // What it left is what it could not use yet: offering it again changes nothing.
            let mut again = Vec::new();
            let more = dec.decode(&bytes[used..], &mut again);
            assert!(
                matches!(more, Ok(0)) && again.is_empty(),
                "leftover was usable: {more:?}"
            );
            (Ok(used), out, dec.is_done())
        }
        Err(e) => (Err(e.to_string()), Vec::new(), false),
    }
}

fn decode_in_two(bytes: &[u8], cut: usize, max: usize) -> Decoded {
    let mut dec = ChunkedDecoder::new(max);
    let mut out = Vec::new();
    let first = match dec.decode(&bytes[..cut], &mut out) {
        Ok(used) => used,
        Err(e) => return (Err(e.to_string()), Vec::new(), false),
    };
    assert!(first <= cut, "decoder used {first} of a {cut}-byte read");
    // The caller keeps what was not used and appends the next read: `bytes[first..]`.
    match dec.decode(&bytes[first..], &mut out) {
        Ok(second) => (Ok(first + second), out, dec.is_done()),
        Err(e) => (Err(e.to_string()), Vec::new(), false),
    }
}

/// A `ChunkedDecoder` fed `bytes` in two reads, cut where `split` says, must end exactly as
/// one fed them at once: same bytes used, same data, same error. Checked with the real body
/// cap and with a tiny one, so that the "too large" path is split too.
pub fn check_chunked_split(bytes: &[u8], split: u8) {
    let cut = cut_point(split, bytes.len());
    for max in [MAX_BODY, 16] {
        let whole = decode_at_once(bytes, max);
        let parts = decode_in_two(bytes, cut, max);
        assert_eq!(
            whole, parts,
            "chunked decode differs when cut at {cut} (cap {max})"
        );
    }
}
