//! The first line of a message ([`StartLine`]): a request line (method, Request-URI,
//! version) or a status line (version, status code, reason phrase).
//!
//! Parses one line already cut out by the head scanner; zero-copy, no allocation.

use crate::{
    cursor::{Cursor, ascii_str, is_token},
    error::{Field, ParseError},
    method::Method,
};

/// `Request-Line = Method SP Request-URI SP SIP-Version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLine<'a> {
    /// The method (case-sensitive).
    pub method: Method<'a>,
    /// The Request-URI as written (parse it with [`Uri::parse`](crate::Uri::parse)).
    pub uri: &'a str,
    /// The version as written (`SIP/2.0`, any case).
    pub version: &'a str,
    pub(crate) uri_offset: usize,
}

impl RequestLine<'_> {
    /// Message offset of the Request-URI.
    pub const fn uri_offset(&self) -> usize {
        self.uri_offset
    }
}

/// `Status-Line = SIP-Version SP Status-Code SP Reason-Phrase`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusLine<'a> {
    /// The version as written.
    pub version: &'a str,
    /// The status code, 100 to 699.
    pub code: u16,
    /// The reason phrase, possibly empty (UTF-8 is allowed, so bytes).
    pub reason: &'a [u8],
}

/// A request line or a status line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine<'a> {
    /// A request.
    Request(RequestLine<'a>),
    /// A response.
    Response(StatusLine<'a>),
}

/// Consumes `SIP/2.0` (ASCII case-insensitive).
fn version<'a>(c: &mut Cursor<'a>) -> Result<&'a str, ParseError> {
    let at = c.offset();
    let rest = c.rest();
    if c.eat_ignore_case(b"SIP/2.0") {
        rest.get(..7)
            .and_then(ascii_str)
            .ok_or_else(|| ParseError::invalid(Field::Version, at))
    } else {
        Err(ParseError::invalid(Field::Version, at))
    }
}

impl<'a> StartLine<'a> {
    /// Parses `line` (without its CRLF), which starts at message offset `offset`.
    pub(crate) fn parse(line: &'a [u8], offset: usize) -> Result<Self, ParseError> {
        let mut c = Cursor::new(line, offset);
        if line
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
        {
            let version = version(&mut c)?;
            if !c.eat(b' ') {
                return Err(ParseError::invalid(Field::StatusCode, c.offset()));
            }
            let at = c.offset();
            let digits = c.take_while(|b| b.is_ascii_digit());
            let code = match digits {
                [a, b, d] => {
                    u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(d - b'0')
                }
                _ => return Err(ParseError::invalid(Field::StatusCode, at)),
            };
            if !(100..=699).contains(&code) {
                return Err(ParseError::invalid(Field::StatusCode, at));
            }
            // RFC 3261 wants `SP Reason-Phrase`; an absent reason is tolerated.
            let reason = if c.is_empty() {
                &[][..]
            } else if c.eat(b' ') {
                c.rest()
            } else {
                return Err(ParseError::invalid(Field::ReasonPhrase, c.offset()));
            };
            return Ok(Self::Response(StatusLine {
                version,
                code,
                reason,
            }));
        }
        let at = c.offset();
        let method = c
            .take_while1(is_token)
            .and_then(Method::parse)
            .ok_or_else(|| ParseError::invalid(Field::Method, at))?;
        if !c.eat(b' ') {
            return Err(ParseError::invalid(Field::Method, c.offset()));
        }
        let uri_offset = c.offset();
        let uri = c
            .take_while1(|b| b > b' ' && b < 0x7f)
            .and_then(ascii_str)
            .ok_or_else(|| ParseError::invalid(Field::RequestUri, uri_offset))?;
        if !c.eat(b' ') {
            return Err(ParseError::invalid(Field::RequestUri, c.offset()));
        }
        let version = version(&mut c)?;
        if !c.is_empty() {
            return Err(ParseError::invalid(Field::Version, c.offset()));
        }
        Ok(Self::Request(RequestLine {
            method,
            uri,
            version,
            uri_offset,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ParseErrorKind;

    #[test]
    fn requests() {
        let ok = [
            (
                "INVITE sip:bob@example.com SIP/2.0",
                Method::Invite,
                "sip:bob@example.com",
            ),
            (
                "OPTIONS sip:10.0.0.1:5060 sip/2.0",
                Method::Options,
                "sip:10.0.0.1:5060",
            ),
            ("FOO tel:+123 SIP/2.0", Method::Other("FOO"), "tel:+123"),
        ];
        for (line, m, uri) in ok {
            match StartLine::parse(line.as_bytes(), 5) {
                Ok(StartLine::Request(r)) => {
                    assert_eq!((r.method, r.uri), (m, uri), "{line}");
                    assert_eq!(r.uri_offset(), 5 + m.as_str().len() + 1);
                }
                other => panic!("{line}: {other:?}"),
            }
        }
    }

    #[test]
    fn responses() {
        let ok: &[(&str, u16, &[u8])] = &[
            ("SIP/2.0 200 OK", 200, b"OK"),
            ("SIP/2.0 180 Ringing", 180, b"Ringing"),
            ("sip/2.0 404 Not  Found ", 404, b"Not  Found "),
            ("SIP/2.0 100", 100, b""),
            ("SIP/2.0 603 ", 603, b""),
            (
                "SIP/2.0 480 Temporarily Unavailable [call Processing Released]",
                480,
                b"Temporarily Unavailable [call Processing Released]",
            ),
        ];
        for (line, code, reason) in ok {
            match StartLine::parse(line.as_bytes(), 0) {
                Ok(StartLine::Response(s)) => assert_eq!((s.code, s.reason), (*code, *reason)),
                other => panic!("{line}: {other:?}"),
            }
        }
    }

    #[test]
    fn errors() {
        let bad: &[(&str, Field, usize)] = &[
            ("", Field::Method, 0),
            ("INVITE", Field::Method, 6),
            ("INVITE  sip:a SIP/2.0", Field::RequestUri, 7),
            ("INVITE sip:a", Field::RequestUri, 12),
            ("INVITE sip:a SIP/3.0", Field::Version, 13),
            ("INVITE sip:a SIP/2.0 x", Field::Version, 20),
            ("INV@TE sip:a SIP/2.0", Field::Method, 3),
            ("SIP/2.0 20 OK", Field::StatusCode, 8),
            ("SIP/2.0 2000 OK", Field::StatusCode, 8),
            ("SIP/2.0 099 Low", Field::StatusCode, 8),
            ("SIP/2.0 700 High", Field::StatusCode, 8),
            ("SIP/2.0 200OK", Field::ReasonPhrase, 11),
            ("SIP/2.1 200 OK", Field::Version, 0),
            ("SIP/2.0200 OK", Field::StatusCode, 7),
        ];
        for (line, field, off) in bad {
            let e = StartLine::parse(line.as_bytes(), 0).expect_err(line);
            assert_eq!(
                e,
                ParseError::new(ParseErrorKind::Invalid(*field), *off),
                "{line}"
            );
        }
    }
}
