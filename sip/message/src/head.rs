//! The head scanner: splits a buffer into start line, header lines (with their folded
//! continuation lines) and the offset where the body begins, enforcing [`Limits`].
//!
//! Shared by [`Message::parse`](crate::Message::parse) (a whole datagram) and
//! [`frame`](crate::frame) (a stream prefix), which is why it can answer "incomplete"
//! instead of failing. It checks line endings (CRLF only), control characters and header
//! names; it never interprets header values.

use crate::{
    cursor::{is_token, is_wsp, trim_lws},
    error::{Field, ParseError, ParseErrorKind},
    header::{Header, HeaderName},
    limits::Limits,
    start_line::StartLine,
};

/// Why a scan stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// More bytes are needed to see the end of the head.
    Incomplete,
    /// The bytes seen so far are not a SIP message head.
    Error(ParseError),
}

impl From<ParseError> for Stop {
    fn from(e: ParseError) -> Self {
        Self::Error(e)
    }
}

/// Where the parts of a message head are.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Head<'a> {
    pub(crate) start: StartLine<'a>,
    /// Offset of the first byte of the start line (after any leading CRLFs).
    pub(crate) start_offset: usize,
    /// Offset of the first header line (just past the start line's CRLF).
    pub(crate) headers_start: usize,
    /// Offset of the body (just past the blank line).
    pub(crate) body_start: usize,
}

/// Number of bytes of CRLF pairs at the start of `buf` (keep-alives, RFC 5626 section 4.4.1,
/// and the CRLFs RFC 3261 section 7.5 says to ignore before a start line on streams).
pub fn leading_crlf(buf: &[u8]) -> usize {
    buf.chunks_exact(2).take_while(|c| *c == b"\r\n").count() * 2
}

/// A byte that ends a line or is not allowed in one: CR, LF, other controls but HTAB, DEL.
#[inline]
const fn is_ctl(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// Index of the first [`is_ctl`] byte of `s`. Skips eight bytes at a time while a word holds
/// no byte below 0x20 and no DEL (the exact "has less than" / "has zero" bit tricks), then
/// finishes byte by byte: most header lines hold no control byte before their CR.
#[inline]
fn find_ctl(s: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let (words, _) = s.as_chunks::<8>();
    let mut skip = 0;
    for w in words {
        let w = u64::from_le_bytes(*w);
        let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
        let del = w ^ (ONES * 0x7f);
        let del = del.wrapping_sub(ONES) & !del & HIGH;
        if below_space | del != 0 {
            break;
        }
        skip += 8;
    }
    let rest = s.get(skip..)?;
    rest.iter().position(|&b| is_ctl(b)).map(|i| i + skip)
}

/// Offset of the CR that ends the line starting at `from`.
fn line_end(buf: &[u8], from: usize, limits: &Limits) -> Result<usize, Stop> {
    let line = buf.get(from..).unwrap_or_default();
    let Some(i) = find_ctl(line) else {
        return Err(if line.len() > limits.max_line_length {
            Stop::Error(ParseError::new(
                ParseErrorKind::LineTooLong {
                    limit: limits.max_line_length,
                },
                from,
            ))
        } else {
            Stop::Incomplete
        });
    };
    if i > limits.max_line_length {
        return Err(ParseError::new(
            ParseErrorKind::LineTooLong {
                limit: limits.max_line_length,
            },
            from,
        )
        .into());
    }
    let at = from + i;
    match (line.get(i), line.get(i + 1)) {
        (Some(b'\r'), Some(b'\n')) => Ok(at),
        (Some(b'\r'), None) => Err(Stop::Incomplete),
        (Some(b'\r' | b'\n'), _) => Err(ParseError::new(ParseErrorKind::BareLineEnding, at).into()),
        _ => Err(ParseError::new(ParseErrorKind::ControlCharacter, at).into()),
    }
}

#[cfg(test)]
thread_local! {
    /// Bytes [`scan`] has gone over on this thread (tests measure the framers' work with it).
    pub(crate) static SCANNED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Scans the head of the message at the start of `buf`, calling `on_header` for each header
/// field in order.
pub(crate) fn scan<'a>(
    buf: &'a [u8],
    limits: &Limits,
    on_header: impl FnMut(Header<'a>) -> Result<(), ParseError>,
) -> Result<Head<'a>, Stop> {
    let scanned = scan_head(buf, limits, on_header);
    #[cfg(test)]
    SCANNED.with(|c| {
        let n = scanned.as_ref().map_or(buf.len(), |h| h.body_start);
        c.set(c.get() + n as u64);
    });
    scanned
}

fn scan_head<'a>(
    buf: &'a [u8],
    limits: &Limits,
    mut on_header: impl FnMut(Header<'a>) -> Result<(), ParseError>,
) -> Result<Head<'a>, Stop> {
    let start_offset = leading_crlf(buf);
    if start_offset >= buf.len() {
        return Err(Stop::Incomplete);
    }
    let cr = line_end(buf, start_offset, limits)?;
    let line = buf.get(start_offset..cr).unwrap_or_default();
    let start = StartLine::parse(line, start_offset)?;
    let headers_start = cr + 2;

    let mut pos = headers_start;
    let mut count = 0usize;
    loop {
        match buf.get(pos) {
            None => return Err(Stop::Incomplete),
            Some(b'\r') => match buf.get(pos + 1) {
                None => return Err(Stop::Incomplete),
                Some(b'\n') => break,
                Some(_) => return Err(ParseError::new(ParseErrorKind::BareLineEnding, pos).into()),
            },
            Some(&b) if is_wsp(b) => {
                // A continuation line with no header to continue.
                return Err(ParseError::invalid(Field::HeaderName, pos).into());
            }
            Some(_) => {}
        }
        let mut end = line_end(buf, pos, limits)?;
        loop {
            match buf.get(end + 2) {
                None => return Err(Stop::Incomplete),
                Some(&b) if is_wsp(b) => {
                    end = line_end(buf, end + 2, limits)?;
                    if end - pos > limits.max_line_length {
                        return Err(ParseError::new(
                            ParseErrorKind::LineTooLong {
                                limit: limits.max_line_length,
                            },
                            pos,
                        )
                        .into());
                    }
                }
                Some(_) => break,
            }
        }
        count += 1;
        if count > limits.max_headers {
            return Err(ParseError::new(
                ParseErrorKind::TooManyHeaders {
                    limit: limits.max_headers,
                },
                pos,
            )
            .into());
        }
        let field = buf.get(pos..end).unwrap_or_default();
        let name_len = field
            .iter()
            .position(|&b| !is_token(b))
            .unwrap_or(field.len());
        let (name, rest) = field.split_at_checked(name_len).unwrap_or((field, &[]));
        let ws = rest.iter().take_while(|&&b| is_wsp(b)).count();
        let name = match (rest.get(ws), name.is_empty()) {
            (Some(b':'), false) => HeaderName::from_token(name),
            _ => None,
        }
        .ok_or_else(|| ParseError::invalid(Field::HeaderName, pos))?;
        let raw_value = rest.get(ws + 1..).unwrap_or_default();
        let value = trim_lws(raw_value);
        let lead = raw_value
            .iter()
            .take_while(|&&b| crate::cursor::is_lws(b))
            .count();
        let value_offset = pos + name_len + ws + 1 + lead;
        on_header(Header {
            name,
            value,
            value_offset,
            line: pos..end + 2,
        })?;
        pos = end + 2;
    }
    Ok(Head {
        start,
        start_offset,
        headers_start,
        body_start: pos + 2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(buf: &[u8]) -> Result<(usize, Vec<(String, String)>), Stop> {
        let mut hs = Vec::new();
        let head = scan(buf, &Limits::default(), |h| {
            hs.push((
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            ));
            Ok(())
        })?;
        Ok((head.body_start, hs))
    }

    fn err(buf: &[u8]) -> (ParseErrorKind, usize) {
        match run(buf) {
            Err(Stop::Error(e)) => (e.kind, e.offset),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    #[test]
    fn folding_and_spans() {
        let m = b"\r\n\r\nOPTIONS sip:a SIP/2.0\r\nSubject: one\r\n  two\r\n\tthree\r\nv :x\r\nX-Empty:\r\n\r\nbody";
        let (body, hs) = run(m).unwrap();
        assert_eq!(body, m.len() - 4);
        assert_eq!(
            hs,
            vec![
                ("Subject".into(), "one\r\n  two\r\n\tthree".into()),
                ("Via".into(), "x".into()),
                ("X-Empty".into(), String::new()),
            ]
        );
        let mut lines = Vec::new();
        let head = scan(m, &Limits::default(), |h| {
            lines.push((h.line(), h.value_offset()));
            Ok(())
        })
        .unwrap();
        assert_eq!(head.start_offset, 4);
        assert_eq!(head.headers_start, 4 + 23);
        let (line, value_offset) = lines.first().cloned().unwrap();
        assert_eq!(&m[line.clone()], b"Subject: one\r\n  two\r\n\tthree\r\n");
        assert_eq!(&m[value_offset..value_offset + 3], b"one");
    }

    #[test]
    fn incomplete() {
        let whole = b"INVITE sip:a SIP/2.0\r\nVia: x\r\n folded\r\n\r\n";
        for n in 0..whole.len() - 1 {
            assert_eq!(run(&whole[..n]).err(), Some(Stop::Incomplete), "prefix {n}");
        }
        assert!(run(whole).is_ok());
        assert_eq!(run(b"\r\n\r\n").err(), Some(Stop::Incomplete));
    }

    #[test]
    fn errors() {
        let cases: &[(&[u8], ParseErrorKind, usize)] = &[
            (
                b"INVITE sip:a SIP/2.0\nVia: x\r\n\r\n",
                ParseErrorKind::BareLineEnding,
                20,
            ),
            (
                b"INVITE sip:a SIP/2.0\r\nVia: x\rY\r\n\r\n",
                ParseErrorKind::BareLineEnding,
                28,
            ),
            (
                b"INVITE sip:a SIP/2.0\r\n\rX",
                ParseErrorKind::BareLineEnding,
                22,
            ),
            (
                b"INVITE sip:a SIP/2.0\r\nVia: \0\r\n\r\n",
                ParseErrorKind::ControlCharacter,
                27,
            ),
            (
                b"INVITE sip:a SIP/2.0\r\n folded\r\n\r\n",
                ParseErrorKind::Invalid(Field::HeaderName),
                22,
            ),
            (
                b"INVITE sip:a SIP/2.0\r\nNoColon\r\n\r\n",
                ParseErrorKind::Invalid(Field::HeaderName),
                22,
            ),
            (
                b"INVITE sip:a SIP/2.0\r\n: x\r\n\r\n",
                ParseErrorKind::Invalid(Field::HeaderName),
                22,
            ),
            (
                b"INVITE sip:a SIP/2.0\r\nBad Name: x\r\n\r\n",
                ParseErrorKind::Invalid(Field::HeaderName),
                22,
            ),
            (b"\x16\x03\x01\x02\x00", ParseErrorKind::ControlCharacter, 0),
            (
                b"GET / HTTP/1.1\r\n\r\n",
                ParseErrorKind::Invalid(Field::Version),
                6,
            ),
        ];
        for (buf, kind, off) in cases {
            assert_eq!(
                err(buf),
                (*kind, *off),
                "{:?}",
                String::from_utf8_lossy(buf)
            );
        }
    }

    #[test]
    fn limits() {
        let small = Limits {
            max_message_size: 1000,
            max_headers: 2,
            max_line_length: 22,
        };
        let three = b"OPTIONS sip:a SIP/2.0\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n";
        match scan(three, &small, |_| Ok(())) {
            Err(Stop::Error(e)) => assert_eq!(e.kind, ParseErrorKind::TooManyHeaders { limit: 2 }),
            other => panic!("{other:?}"),
        }
        let long = b"OPTIONS sip:a SIP/2.0\r\nSubject: 0123456789012345\r\n\r\n";
        match scan(long, &small, |_| Ok(())) {
            Err(Stop::Error(e)) => assert_eq!(
                (e.kind, e.offset),
                (ParseErrorKind::LineTooLong { limit: 22 }, 23)
            ),
            other => panic!("{other:?}"),
        }
        let folded = b"OPTIONS sip:a SIP/2.0\r\nS: 0123456789\r\n 0123456789\r\n\r\n";
        match scan(folded, &small, |_| Ok(())) {
            Err(Stop::Error(e)) => assert_eq!(e.kind, ParseErrorKind::LineTooLong { limit: 22 }),
            other => panic!("{other:?}"),
        }
        // A long unterminated line is an error before its CRLF arrives.
        let endless = [b'a'; 30];
        match scan(&endless, &small, |_| Ok(())) {
            Err(Stop::Error(e)) => assert_eq!(e.kind, ParseErrorKind::LineTooLong { limit: 22 }),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn find_ctl_matches_the_byte_loop() {
        let mut inputs: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"abc".to_vec(),
            b"Via: SIP/2.0/UDP h\r\n".to_vec(),
        ];
        for len in [1usize, 7, 8, 9, 15, 16, 17, 40] {
            for at in 0..len {
                for bad in [0u8, b'\t', b'\r', b'\n', 0x1f, 0x7f, 0x20, 0x80, 0xff, 0x9f] {
                    let mut v = vec![b'a'; len];
                    v[at] = bad;
                    inputs.push(v.clone());
                    v[len - 1] = 0xfe;
                    inputs.push(v);
                }
            }
        }
        for s in inputs {
            assert_eq!(find_ctl(&s), s.iter().position(|&b| is_ctl(b)), "{s:?}");
        }
    }

    #[test]
    fn leading() {
        assert_eq!(leading_crlf(b"\r\n\r\nX"), 4);
        assert_eq!(leading_crlf(b"\r\n\rX"), 2);
        assert_eq!(leading_crlf(b""), 0);
    }
}
