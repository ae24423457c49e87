//! Message framing on byte streams (TCP).
//!
//! - [`frame`] finds where the first complete message in a receive buffer ends: a pure
//!   function over the bytes received so far, rescanning them on every call.
//! - [`StreamFramer`] does the same for a connection whose bytes arrive a little at a time: it
//!   remembers how far it has looked, so the total work over a message is linear in its size
//!   however it is cut into segments (calling [`frame`] on every read is quadratic when a peer
//!   sends one byte per segment). It also recognises keep-alives between messages: RFC 5626
//!   section 4.4.1 double-CRLF pings, which the caller answers with one CRLF, and lone CRLFs.
//!
//! Neither reads a socket, buffers or allocates: the caller owns the receive buffer. Datagram
//! and SCTP messages need no framing (one message per read).

use crate::{
    error::{Field, ParseError, ParseErrorKind},
    head::{self, Stop},
    header::HeaderName,
    limits::Limits,
    message::content_length_value,
    start_line::StartLine,
};

/// The length of the first complete message at the start of `buf`, or `Ok(None)` when more
/// bytes are needed.
///
/// The length covers any CRLFs before the start line (RFC 3261 section 7.5 says to ignore
/// them), the head, and `Content-Length` bytes of body; pass exactly that prefix to
/// [`Message::parse_with`](crate::Message::parse_with). A buffer that holds only CRLF
/// keep-alives (RFC 5626 section 4.4.1) returns `Ok(None)`: drain them with
/// [`leading_crlf`](crate::leading_crlf) (and answer a double-CRLF ping with a CRLF pong), or
/// use a [`StreamFramer`], which does both.
///
/// # Errors
///
/// The stream cannot be resynchronised after an error: close the connection.
/// [`ParseErrorKind::Missing`]`(`[`Field::ContentLength`]`)` when the head has no
/// `Content-Length` (mandatory on streams, RFC 3261 section 18.3), an invalid or duplicate
/// one, [`ParseErrorKind::TooLarge`] when the message (or the head seen so far) exceeds
/// [`Limits::max_message_size`], and any head error.
pub fn frame(buf: &[u8], limits: &Limits) -> Result<Option<usize>, ParseError> {
    Ok(message_length(buf, limits)?.filter(|total| buf.len() >= *total))
}

fn too_large(limits: &Limits) -> ParseError {
    ParseError::new(
        ParseErrorKind::TooLarge {
            limit: limits.max_message_size,
        },
        limits.max_message_size,
    )
}

/// The whole length of the message at the start of `buf` once its head is complete (the
/// body need not be), `Ok(None)` while the head is not.
fn message_length(buf: &[u8], limits: &Limits) -> Result<Option<usize>, ParseError> {
    let mut content_length: Option<Result<usize, ParseError>> = None;
    let scanned = head::scan(buf, limits, |h| {
        if h.name == HeaderName::ContentLength {
            content_length = Some(match content_length {
                None => content_length_value(&h),
                Some(_) => Err(ParseError::duplicate(Field::ContentLength, h.value_offset)),
            });
        }
        Ok(())
    });
    let head = match scanned {
        Ok(head) => head,
        Err(Stop::Error(e)) => return Err(e),
        Err(Stop::Incomplete) if buf.len() > limits.max_message_size => {
            return Err(too_large(limits));
        }
        Err(Stop::Incomplete) => return Ok(None),
    };
    let declared = content_length.ok_or_else(|| {
        ParseError::missing(Field::ContentLength, head.body_start.saturating_sub(2))
    })??;
    let total = head
        .body_start
        .checked_add(declared)
        .ok_or_else(|| too_large(limits))?;
    if total > limits.max_message_size {
        return Err(too_large(limits));
    }
    Ok(Some(total))
}

/// What [`StreamFramer::poll`] found at the start of the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framed {
    /// More bytes are needed.
    Incomplete,
    /// The first `len` bytes are a keep-alive between messages: remove them. With `pong`
    /// they completed an RFC 5626 double-CRLF ping: answer with one CRLF (`"\r\n"`). A lone
    /// CRLF (or a stray CR or LF, tolerated as before) gets no answer.
    KeepAlive {
        /// Bytes to remove.
        len: usize,
        /// Answer with a CRLF.
        pong: bool,
    },
    /// The first `len` bytes are one message (its head and `Content-Length` bytes of body):
    /// take them off and parse them with [`Message::parse_with`](crate::Message::parse_with).
    Message(usize),
}

/// Where a [`StreamFramer`] is in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between messages.
    Idle,
    /// In a message's head.
    Head(HeadScan),
    /// The head is complete: the message is `total` bytes long.
    Body { total: usize },
}

/// How far the search for the end of a head got: the bytes before `scanned` have been
/// checked, the current line starts at `line_start`, and the start line was checked once it
/// ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct HeadScan {
    scanned: usize,
    line_start: usize,
    start_line_checked: bool,
}

/// Splits one connection's byte stream into messages and keep-alives in linear time; see the
/// module documentation.
///
/// The caller appends what it receives to its buffer and calls [`poll`](Self::poll) until
/// it returns [`Framed::Incomplete`]; after [`Framed::Message`] or [`Framed::KeepAlive`] it
/// must remove exactly that many bytes from the front of the buffer before the next call,
/// and between calls it may only append. The framer remembers how far it looked, so each
/// byte is examined a bounded number of times: once while looking for the end of the head
/// (with the cheap checks that need no context: control characters, bare CR or LF, line and
/// message length, the start line), once more when the complete head is parsed, never again
/// while the body arrives.
///
/// A head error is found once the head is complete, or earlier by the checks above; either
/// way the stream cannot be resynchronised: close the connection.
#[derive(Debug, Clone)]
pub struct StreamFramer {
    limits: Limits,
    state: State,
    /// The previous keep-alive was a lone CRLF: a CRLF right after it completes a ping
    /// (a ping cut between two segments is still a ping).
    crlf_pending: bool,
    /// Bytes examined so far (the framer's work, for tests and statistics).
    examined: u64,
}

impl StreamFramer {
    /// A framer for a new connection.
    pub const fn new(limits: Limits) -> Self {
        Self {
            limits,
            state: State::Idle,
            crlf_pending: false,
            examined: 0,
        }
    }

    /// Whether a message has begun and is not complete yet (bytes of it are buffered).
    pub const fn in_message(&self) -> bool {
        !matches!(self.state, State::Idle)
    }

    /// How many bytes the framer has examined so far, over the whole stream: linear in the
    /// bytes received, whatever the segment sizes (a byte may be counted up to three times:
    /// the head scan, the parse of the complete head, and a CR waiting for its LF).
    pub const fn bytes_examined(&self) -> u64 {
        self.examined
    }

    fn count(&mut self, n: usize) {
        self.examined = self.examined.saturating_add(n as u64);
    }

    /// What the buffer `buf` starts with.
    ///
    /// # Errors
    ///
    /// As [`frame`]: the stream is not SIP or breaks the [`Limits`]; close the connection.
    pub fn poll(&mut self, buf: &[u8]) -> Result<Framed, ParseError> {
        loop {
            match self.state {
                State::Idle => {
                    let keep_alive = match (buf.first(), buf.get(1)) {
                        (None, _) | (Some(b'\r'), None) => return Ok(Framed::Incomplete),
                        (Some(b'\r'), Some(b'\n')) => {
                            let pong = self.crlf_pending;
                            self.crlf_pending = !pong;
                            Framed::KeepAlive { len: 2, pong }
                        }
                        // A stray CR or LF between messages: skipped, as the relay always did.
                        (Some(b'\r' | b'\n'), _) => {
                            self.crlf_pending = false;
                            Framed::KeepAlive {
                                len: 1,
                                pong: false,
                            }
                        }
                        (Some(_), _) => {
                            self.crlf_pending = false;
                            self.state = State::Head(HeadScan::default());
                            continue;
                        }
                    };
                    if let Framed::KeepAlive { len, .. } = keep_alive {
                        self.count(len);
                    }
                    return Ok(keep_alive);
                }
                State::Head(mut scan) => {
                    let from = scan.scanned;
                    let head_end = self.scan_head(buf, &mut scan)?;
                    self.count(scan.scanned.saturating_sub(from));
                    let Some(head_end) = head_end else {
                        self.state = State::Head(scan);
                        if buf.len() > self.limits.max_message_size {
                            return Err(too_large(&self.limits));
                        }
                        return Ok(Framed::Incomplete);
                    };
                    // The head is complete: parse it once for Content-Length and every check.
                    let head = buf.get(..head_end).unwrap_or(buf);
                    self.count(head.len());
                    match message_length(head, &self.limits)? {
                        Some(total) => self.state = State::Body { total },
                        // Cannot happen (the head ends at head_end); treat it as an error
                        // rather than loop.
                        None => {
                            return Err(ParseError::new(ParseErrorKind::Truncated, head_end));
                        }
                    }
                }
                State::Body { total } => {
                    self.count(1);
                    if buf.len() < total {
                        return Ok(Framed::Incomplete);
                    }
                    self.state = State::Idle;
                    return Ok(Framed::Message(total));
                }
            }
        }
    }

    /// Looks at `buf[scan.scanned..]` for the blank line that ends the head, checking what
    /// needs no context on the way, and moves `scan` on. Returns the end of the head (just
    /// past the blank line) once seen.
    fn scan_head(&self, buf: &[u8], scan: &mut HeadScan) -> Result<Option<usize>, ParseError> {
        let limits = &self.limits;
        let mut i = scan.scanned;
        let line_too_long = |at| {
            ParseError::new(
                ParseErrorKind::LineTooLong {
                    limit: limits.max_line_length,
                },
                at,
            )
        };
        while let Some(&b) = buf.get(i) {
            match b {
                b'\r' => match buf.get(i + 1) {
                    // Resume at this CR once its LF (or something else) arrives.
                    None => break,
                    Some(b'\n') => {
                        if i == scan.line_start && i > 0 {
                            scan.scanned = i + 2;
                            scan.line_start = i + 2;
                            return Ok(Some(i + 2));
                        }
                        if !scan.start_line_checked {
                            StartLine::parse(buf.get(..i).unwrap_or_default(), 0)?;
                            scan.start_line_checked = true;
                        }
                        i += 2;
                        scan.line_start = i;
                        continue;
                    }
                    Some(_) => {
                        return Err(ParseError::new(ParseErrorKind::BareLineEnding, i));
                    }
                },
                b'\n' => return Err(ParseError::new(ParseErrorKind::BareLineEnding, i)),
                b if (b < 0x20 && b != b'\t') || b == 0x7f => {
                    return Err(ParseError::new(ParseErrorKind::ControlCharacter, i));
                }
                _ => {
                    if i - scan.line_start >= limits.max_line_length {
                        return Err(line_too_long(scan.line_start));
                    }
                }
            }
            i += 1;
        }
        scan.scanned = i;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Message;

    const MSG: &[u8] = b"MESSAGE sip:b@h SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nContent-Length: 5\r\n\r\nhello";

    #[test]
    fn splits_a_stream() {
        let mut stream = b"\r\n\r\n".to_vec();
        stream.extend_from_slice(MSG);
        stream.extend_from_slice(MSG);
        stream.extend_from_slice(&MSG[..10]);
        let limits = Limits::default();
        let mut rest = &stream[..];
        let mut bodies = Vec::new();
        while let Some(n) = frame(rest, &limits).unwrap() {
            let (one, tail) = rest.split_at(n);
            bodies.push(Message::parse_with(one, &limits).unwrap().body().to_vec());
            rest = tail;
        }
        assert_eq!(bodies, vec![b"hello".to_vec(), b"hello".to_vec()]);
        assert_eq!(rest, &MSG[..10]);
    }

    #[test]
    fn every_prefix_waits() {
        let limits = Limits::default();
        for n in 0..MSG.len() {
            assert_eq!(frame(&MSG[..n], &limits), Ok(None), "prefix {n}");
        }
        assert_eq!(frame(MSG, &limits), Ok(Some(MSG.len())));
        assert_eq!(frame(b"\r\n\r\n", &limits), Ok(None));
    }

    #[test]
    fn errors() {
        let limits = Limits::default();
        let cases: &[(&[u8], ParseErrorKind)] = &[
            (
                b"BYE sip:h SIP/2.0\r\nVia: x\r\n\r\n",
                ParseErrorKind::Missing(Field::ContentLength),
            ),
            (
                b"BYE sip:h SIP/2.0\r\nl: 1\r\nl: 1\r\n\r\nx",
                ParseErrorKind::Duplicate(Field::ContentLength),
            ),
            (
                b"BYE sip:h SIP/2.0\r\nl: x\r\n\r\n",
                ParseErrorKind::Invalid(Field::ContentLength),
            ),
            (
                b"BYE sip:h SIP/2.0\r\nl: 70000\r\n\r\n",
                ParseErrorKind::TooLarge { limit: 65_535 },
            ),
            (
                b"BYE sip:h SIP/2.0\r\nl: 18446744073709551615\r\n\r\n",
                ParseErrorKind::Invalid(Field::ContentLength),
            ),
            (
                b"BYE sip:h SIP/2.0\nl: 0\r\n\r\n",
                ParseErrorKind::BareLineEnding,
            ),
            (b"\x00\x01garbage", ParseErrorKind::ControlCharacter),
        ];
        for (buf, want) in cases {
            assert_eq!(
                frame(buf, &limits).map_err(|e| e.kind),
                Err(*want),
                "{:?}",
                String::from_utf8_lossy(buf)
            );
        }
        // A head that never ends is refused once it exceeds the size limit.
        let small = Limits {
            max_message_size: 64,
            max_headers: 1000,
            max_line_length: 1000,
        };
        let mut endless = b"BYE sip:h SIP/2.0\r\n".to_vec();
        while endless.len() <= 64 {
            endless.extend_from_slice(b"X: y\r\n");
        }
        assert_eq!(
            frame(&endless, &small).map_err(|e| e.kind),
            Err(ParseErrorKind::TooLarge { limit: 64 })
        );
    }

    /// Feeds `stream` to a [`StreamFramer`] `chunk` bytes at a time, as a reader would:
    /// the messages, and the keep-alives as `"ping"` (answered) or `"crlf"`.
    fn feed(stream: &[u8], chunk: usize, limits: &Limits) -> Result<Vec<Vec<u8>>, ParseErrorKind> {
        let mut f = StreamFramer::new(*limits);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for piece in stream.chunks(chunk) {
            buf.extend_from_slice(piece);
            loop {
                match f.poll(&buf).map_err(|e| e.kind)? {
                    Framed::Incomplete => break,
                    Framed::KeepAlive { len, pong } => {
                        out.push(if pong {
                            b"ping".to_vec()
                        } else {
                            b"crlf".to_vec()
                        });
                        buf.drain(..len);
                    }
                    Framed::Message(n) => {
                        assert!(!f.in_message());
                        out.push(buf.drain(..n).collect());
                    }
                }
            }
        }
        assert_eq!(f.in_message(), !buf.is_empty() && buf != b"\r");
        Ok(out)
    }

    #[test]
    fn stream_framer_agrees_with_frame_whatever_the_segments() {
        let with_body = b"INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK2\r\nSubject: a\r\n folded\r\nl: 11\r\n\r\nhello world";
        let mut stream = Vec::new();
        stream.extend_from_slice(MSG);
        stream.extend_from_slice(with_body);
        stream.extend_from_slice(MSG);
        let limits = Limits::default();
        // What frame() cuts from the whole stream.
        let mut want = Vec::new();
        let mut rest = &stream[..];
        while let Some(n) = frame(rest, &limits).unwrap() {
            want.push(rest[..n].to_vec());
            rest = &rest[n..];
        }
        assert_eq!(want.len(), 3);
        for chunk in 1..=stream.len() {
            assert_eq!(
                feed(&stream, chunk, &limits),
                Ok(want.clone()),
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn keep_alives_double_crlf_is_a_ping_a_lone_crlf_is_not() {
        let limits = Limits::default();
        let s = |v: &[&str]| v.iter().map(|x| x.as_bytes().to_vec()).collect::<Vec<_>>();
        for chunk in [1, 2, 3, 100] {
            assert_eq!(feed(b"\r\n\r\n", chunk, &limits), Ok(s(&["crlf", "ping"])));
            assert_eq!(feed(b"\r\n", chunk, &limits), Ok(s(&["crlf"])));
            // Two pings, then a lone CRLF.
            assert_eq!(
                feed(b"\r\n\r\n\r\n\r\n\r\n", chunk, &limits),
                Ok(s(&["crlf", "ping", "crlf", "ping", "crlf"]))
            );
            // A lone CRLF before a message (RFC 3261 section 7.5) and a ping after it.
            let mut stream = b"\r\n".to_vec();
            stream.extend_from_slice(MSG);
            stream.extend_from_slice(b"\r\n\r\n");
            let got = feed(&stream, chunk, &limits).unwrap();
            assert_eq!(got.len(), 4, "{chunk}");
            assert_eq!((got[0].as_slice(), got[1].as_slice()), (&b"crlf"[..], MSG));
            assert_eq!(
                (got[2].as_slice(), got[3].as_slice()),
                (&b"crlf"[..], &b"ping"[..])
            );
            // A lone CRLF, a message, a lone CRLF: no ping (the message in between resets).
            let mut stream = b"\r\n".to_vec();
            stream.extend_from_slice(MSG);
            stream.extend_from_slice(b"\r\n");
            let got = feed(&stream, chunk, &limits).unwrap();
            assert!(!got.contains(&b"ping".to_vec()), "{chunk}: {got:?}");
        }
        // A ping cut between two reads is still a ping.
        let mut f = StreamFramer::new(limits);
        assert_eq!(
            f.poll(b"\r\n"),
            Ok(Framed::KeepAlive {
                len: 2,
                pong: false
            })
        );
        assert_eq!(f.poll(b""), Ok(Framed::Incomplete));
        assert_eq!(f.poll(b"\r"), Ok(Framed::Incomplete));
        assert_eq!(
            f.poll(b"\r\n"),
            Ok(Framed::KeepAlive { len: 2, pong: true })
        );
        // Stray CR or LF between messages are skipped, not answered.
        assert_eq!(
            f.poll(b"\n\r\n"),
            Ok(Framed::KeepAlive {
                len: 1,
                pong: false
            })
        );
        assert_eq!(
            f.poll(b"\r\n"),
            Ok(Framed::KeepAlive {
                len: 2,
                pong: false
            })
        );
        assert_eq!(
            f.poll(b"\rX"),
            Ok(Framed::KeepAlive {
                len: 1,
                pong: false
            })
        );
        assert!(!f.in_message());
    }

    #[test]
    fn stream_framer_errors_as_frame_does_whatever_the_segments() {
        let limits = Limits::default();
        let cases: &[&[u8]] = &[
            b"BYE sip:h SIP/2.0\r\nVia: x\r\n\r\n",
            b"BYE sip:h SIP/2.0\r\nl: 1\r\nl: 1\r\n\r\nx",
            b"BYE sip:h SIP/2.0\r\nl: x\r\n\r\n",
            b"BYE sip:h SIP/2.0\r\nl: 70000\r\n\r\n",
            b"BYE sip:h SIP/2.0\nl: 0\r\n\r\n",
            b"BYE sip:h SIP/2.0\r\nl: 0\rX\r\n\r\n",
            b"\x00\x01garbage",
            b"GET / HTTP/1.1\r\nHost: x\r\n",
        ];
        for buf in cases {
            let want = frame(buf, &limits).map_err(|e| e.kind).unwrap_err();
            for chunk in 1..=buf.len() {
                assert_eq!(
                    feed(buf, chunk, &limits),
                    Err(want),
                    "{:?} in chunks of {chunk}",
                    String::from_utf8_lossy(buf)
                );
            }
        }
        // A head that never ends, and a line that never ends, are refused at the limits.
        let small = Limits {
            max_message_size: 64,
            max_headers: 1000,
            max_line_length: 20,
        };
        let mut endless = b"BYE sip:h SIP/2.0\r\n".to_vec();
        while endless.len() <= 64 {
            endless.extend_from_slice(b"X: y\r\n");
        }
        assert_eq!(
            feed(&endless, 1, &small),
            Err(ParseErrorKind::TooLarge { limit: 64 })
        );
        let long = b"BYE sip:h SIP/2.0\r\nX: 01234567890123456";
        assert_eq!(feed(long, 1, &small), Ok(vec![]));
        assert_eq!(
            feed(&[&long[..], b"9"].concat(), 1, &small),
            Err(ParseErrorKind::LineTooLong { limit: 20 })
        );
    }

    /// A message whose head is about `size` bytes: 90 long header lines.
    fn big_head(size: usize) -> Vec<u8> {
        let mut m = b"MESSAGE sip:b@h SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n".to_vec();
        let line = size / 90;
        for i in 0..90 {
            m.extend_from_slice(format!("X-{i:02}: {}\r\n", "v".repeat(line - 9)).as_bytes());
        }
        m.extend_from_slice(b"Content-Length: 5\r\n\r\nhello");
        m
    }

    /// Bytes the head parser went over on this thread so far.
    fn head_scanned() -> u64 {
        crate::head::SCANNED.with(std::cell::Cell::get)
    }

    #[test]
    fn a_message_fed_byte_by_byte_costs_linear_work() {
        let limits = Limits::default();
        let mut big_body = b"MESSAGE sip:b@h SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nContent-Length: 59000\r\n\r\n".to_vec();
        big_body.resize(big_body.len() + 59_000, b'b');
        for msg in [big_head(60_000), big_body] {
            let n = msg.len() as u64;
            assert!(n > 59_000 && n <= 65_535, "{n}");
            let before = head_scanned();
            let mut f = StreamFramer::new(limits);
            let mut buf = Vec::new();
            let mut got = None;
            for &b in &msg {
                buf.push(b);
                if let Framed::Message(len) = f.poll(&buf).unwrap() {
                    got = Some(len);
                }
            }
            assert_eq!(got, Some(msg.len()));
            // Each byte once in the search for the head's end, the head once more when it is
            // parsed, one look per read while the body arrives.
            assert!(
                f.bytes_examined() <= 3 * n,
                "{} bytes examined for a {n}-byte message fed byte by byte",
                f.bytes_examined()
            );
            // The head parser ran once, over the head only.
            let parsed = head_scanned() - before;
            assert!(
                parsed < n.min(61_000),
                "head parser went over {parsed} bytes"
            );
            eprintln!(
                "{n}-byte message byte by byte: {} bytes examined, head parser over {parsed}",
                f.bytes_examined()
            );
        }
        // The counter sees what the reader did before: frame() over the whole buffer after
        // every read is quadratic (16 KB of head here, to keep the test quick).
        let msg = big_head(16_000);
        let n = msg.len() as u64;
        let before = head_scanned();
        for i in 1..=msg.len() {
            let _ = frame(&msg[..i], &limits);
        }
        let naive = head_scanned() - before;
        eprintln!("{n}-byte head, frame() after every byte: head parser over {naive} bytes");
        assert!(naive > n * n / 4, "{naive}");
    }

    /// Streams made of messages, keep-alives, stray line endings and garbage, pseudo-random:
    /// fed whole or in pieces of 1..=8 bytes the framer cuts the same frames (each one
    /// [`frame`] agrees with) or fails in both.
    #[test]
    fn stream_framer_is_the_same_whatever_the_segments_on_mixed_streams() {
        let parts: &[&[u8]] = &[
            MSG,
            b"\r\n",
            b"\r\n\r\n",
            b"\n",
            b"\r",
            b"INVITE sip:x SIP/2.0\r\nl: 3\r\n\r\nabc",
            b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
            b"X: y\r\n",
            b"\x01",
            b"BYE sip:h SIP/2.0\r\n",
        ];
        let limits = Limits {
            max_message_size: 300,
            max_headers: 8,
            max_line_length: 100,
        };
        let frames = |stream: &[u8], chunk: usize| {
            let mut f = StreamFramer::new(limits);
            let mut buf = Vec::new();
            let mut out = Vec::new();
            for piece in stream.chunks(chunk) {
                buf.extend_from_slice(piece);
                loop {
                    match f.poll(&buf) {
                        Err(_) => return (out, true),
                        Ok(Framed::Incomplete) => break,
                        Ok(Framed::KeepAlive { len, pong }) => {
                            out.push(usize::from(pong));
                            buf.drain(..len);
                        }
                        Ok(Framed::Message(n)) => {
                            assert_eq!(frame(&buf, &limits), Ok(Some(n)));
                            out.push(n);
                            buf.drain(..n);
                        }
                    }
                }
            }
            (out, false)
        };
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..3000 {
            let mut stream = Vec::new();
            for _ in 0..(next() % 8) {
                stream.extend_from_slice(parts[(next() % parts.len() as u64) as usize]);
            }
            let whole = frames(&stream, stream.len().max(1));
            for chunk in 1..=8 {
                assert_eq!(
                    frames(&stream, chunk),
                    whole,
                    "{:?} / {chunk}",
                    String::from_utf8_lossy(&stream)
                );
            }
        }
    }
}
