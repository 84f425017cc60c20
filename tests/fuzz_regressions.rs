//! Inputs the fuzz targets (fuzz/) found, kept as plain tests of the code path they broke.
//! Each input is also in the target's seed corpus.

use echo_lab::http::body::{BodyFraming, read_body, response_framing};
use echo_lab::http::conn::BufferedStream;
use echo_lab::http::error::BodyError;
use echo_lab::http::head::parse_response_head;
use echo_lab::http::limits::ClientLimits;
use echo_lab::http::message::ResponseHead;
use futures_lite::AsyncRead;

/// What `Client::read_one_head` does: parse what is buffered, else read more.
fn read_head<S: AsyncRead + Unpin>(
    conn: &mut BufferedStream<S>,
    limits: &ClientLimits,
) -> ResponseHead {
    loop {
        let parsed =
            parse_response_head(conn.buffered(), limits.max_head_bytes, limits.max_headers)
                .expect("a valid head");
        if let Some((head, len)) = parsed {
            conn.consume(len);
            return head;
        }
        assert_ne!(
            smol::block_on(conn.fill()).expect("a slice"),
            0,
            "head cut short"
        );
    }
}

/// fuzz target `response`, corpus/response/regression-until-close-cap: a response with no
/// framing fields (body runs to the close) whose 17-byte body arrived in the same read as its
/// head. `read_until_close` checked the cap only after a read that returned bytes, so with
/// nothing more to read it handed back a body over `max_body_bytes`.
#[test]
fn body_to_the_close_already_buffered_with_the_head_respects_the_cap() {
    let raw = b"\nHTTP/1.1 200\n\na\r\naab\naab\na\r\naab";
    let small = ClientLimits {
        max_body_bytes: 16,
        ..ClientLimits::default()
    };
    let mut conn = BufferedStream::new(&raw[..]);
    let head = read_head(&mut conn, &small);
    assert_eq!(head.status, 200);
    let framing = response_framing(&head, false).expect("valid framing");
    assert_eq!(framing, BodyFraming::UntilClose);
    assert_eq!(conn.buffered().len(), 17, "the body came with the head");
    let body = smol::block_on(read_body(&mut conn, framing, small.max_body_bytes));
    assert!(matches!(body, Err(BodyError::TooLarge)), "{body:?}");

    // Within the cap, the same bytes are the body.
    let mut conn = BufferedStream::new(&raw[..]);
    let head = read_head(&mut conn, &ClientLimits::default());
    let framing = response_framing(&head, false).expect("valid framing");
    let body = smol::block_on(read_body(&mut conn, framing, 17)).expect("at the cap");
    assert_eq!(body, b"a\r\naab\naab\na\r\naab");
}
