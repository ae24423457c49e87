//! Message framing on byte streams (TCP): [`frame`] finds where the first complete message in
//! a receive buffer ends, so a reader can split the stream without parsing twice.
//!
//! Pure function over the bytes received so far; it never reads a socket, never buffers, and
//! never allocates. Datagram and SCTP messages need no framing (one message per read).

use crate::{
    error::{Field, ParseError, ParseErrorKind},
    head::{self, Stop},
    header::HeaderName,
    limits::Limits,
    message::content_length_value,
};

/// The length of the first complete message at the start of `buf`, or `Ok(None)` when more
/// bytes are needed.
///
/// The length covers any CRLFs before the start line (RFC 3261 section 7.5 says to ignore
/// them), the head, and `Content-Length` bytes of body; pass exactly that prefix to
/// [`Message::parse_with`](crate::Message::parse_with). A buffer that holds only CRLF
/// keep-alives (RFC 5626 section 4.4.1) returns `Ok(None)`: drain them with
/// [`leading_crlf`](crate::leading_crlf) (and answer a double-CRLF ping with a CRLF pong).
///
/// # Errors
///
/// The stream cannot be resynchronised after an error: close the connection.
/// [`ParseErrorKind::Missing`]`(`[`Field::ContentLength`]`)` when the head has no
/// `Content-Length` (mandatory on streams, RFC 3261 section 18.3), an invalid or duplicate
/// one, [`ParseErrorKind::TooLarge`] when the message (or the head seen so far) exceeds
/// [`Limits::max_message_size`], and any head error.
pub fn frame(buf: &[u8], limits: &Limits) -> Result<Option<usize>, ParseError> {
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
    let too_large = || {
        ParseError::new(
            ParseErrorKind::TooLarge {
                limit: limits.max_message_size,
            },
            limits.max_message_size,
        )
    };
    let head = match scanned {
        Ok(head) => head,
        Err(Stop::Error(e)) => return Err(e),
        Err(Stop::Incomplete) if buf.len() > limits.max_message_size => return Err(too_large()),
        Err(Stop::Incomplete) => return Ok(None),
    };
    let declared = content_length.ok_or_else(|| {
        ParseError::missing(Field::ContentLength, head.body_start.saturating_sub(2))
    })??;
    let total = head
        .body_start
        .checked_add(declared)
        .ok_or_else(too_large)?;
    if total > limits.max_message_size {
        return Err(too_large());
    }
    Ok((buf.len() >= total).then_some(total))
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
}
