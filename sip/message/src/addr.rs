//! Name-addr values ([`NameAddr`]) of `From`, `To`, `Contact`, `Route` and `Record-Route`:
//! optional display name, URI, header parameters (the `tag` among them), and the `Contact: *`
//! wildcard ([`Contact`]).
//!
//! Zero-copy over one header value (one comma-separated value for the multi-value headers).
//! Follows RFC 3261 section 20.10: without angle brackets, everything after the first `;`
//! is a header parameter, not a URI parameter.

use crate::{
    cursor::{Cursor, is_lws, trim_lws},
    error::{Field, ParseError},
    params::Params,
    uri::Uri,
};

/// `[display-name] <URI> *(;param)` or `URI *(;param)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// The display name as written (quotes included when quoted), if any.
    pub display: Option<&'a [u8]>,
    /// The URI as written, without angle brackets.
    pub uri: &'a str,
    /// The `tag` header parameter.
    pub tag: Option<&'a str>,
    uri_offset: usize,
    params_raw: &'a [u8],
    params_offset: usize,
    field: Field,
}

/// One `Contact` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contact<'a> {
    /// `Contact: *` (REGISTER removing all bindings).
    Any,
    /// An address.
    Addr(NameAddr<'a>),
}

const fn is_uri_byte(b: u8) -> bool {
    b > 0x20 && b < 0x7f && !matches!(b, b'<' | b'>' | b'"')
}

impl<'a> NameAddr<'a> {
    /// Parses one name-addr value located at message offset `offset`; errors name `field`.
    ///
    /// # Errors
    ///
    /// `field` as [`ParseErrorKind::Invalid`](crate::ParseErrorKind::Invalid) at the first
    /// byte that does not fit (an unclosed quote or `<`, an empty URI, a bad parameter).
    pub fn parse(value: &'a [u8], offset: usize, field: Field) -> Result<Self, ParseError> {
        let invalid = |at| ParseError::invalid(field, at);
        let mut c = Cursor::new(value, offset);
        c.skip_lws();
        let mut display = None;
        let angle = if c.peek() == Some(b'"') {
            display = Some(c.take_quoted().ok_or_else(|| invalid(c.offset()))?);
            c.skip_lws();
            if !c.eat(b'<') {
                return Err(invalid(c.offset()));
            }
            true
        } else if let Some(lt) = c.rest().iter().position(|&b| b == b'<') {
            let before = c.rest().get(..lt).unwrap_or_default();
            if before.iter().any(|&b| matches!(b, b'"' | b'>' | b';')) {
                return Err(invalid(c.offset()));
            }
            let name = trim_lws(before);
            display = (!name.is_empty()).then_some(name);
            let _ = c.take_while(|b| b != b'<');
            c.eat(b'<')
        } else {
            false
        };
        let uri_offset = c.offset();
        let uri = if angle {
            let u = c
                .take_while1(is_uri_byte)
                .ok_or_else(|| invalid(uri_offset))?;
            if !c.eat(b'>') {
                return Err(invalid(c.offset()));
            }
            u
        } else {
            c.take_while1(|b| is_uri_byte(b) && b != b';')
                .ok_or_else(|| invalid(uri_offset))?
        };
        let uri = core::str::from_utf8(uri).map_err(|_| invalid(uri_offset))?;
        match c.peek() {
            None | Some(b';') => {}
            Some(b) if is_lws(b) => {}
            Some(_) => return Err(invalid(c.offset())),
        }
        let params_offset = c.offset();
        let params_raw = c.rest();
        let mut tag = None;
        for p in Params::new(params_raw, params_offset, field) {
            let p = p?;
            if tag.is_none() && p.is("tag") {
                tag = Some(
                    p.value
                        .filter(|v| !v.starts_with('"'))
                        .ok_or_else(|| invalid(p.span.start))?,
                );
            }
        }
        Ok(Self {
            display,
            uri,
            tag,
            uri_offset,
            params_raw,
            params_offset,
            field,
        })
    }

    /// The URI, parsed; `None` when it is not a URI this crate reads.
    pub fn parse_uri(&self) -> Option<Uri<'a>> {
        Uri::parse(self.uri)
    }

    /// Message offset of the URI's first byte.
    pub const fn uri_offset(&self) -> usize {
        self.uri_offset
    }

    /// The header parameters (after the URI), with their message offsets.
    pub fn params(&self) -> Params<'a> {
        Params::new(self.params_raw, self.params_offset, self.field)
    }
}

impl<'a> Contact<'a> {
    /// Parses one `Contact` value located at message offset `offset`.
    ///
    /// # Errors
    ///
    /// [`Field::Contact`] at the first byte that does not fit.
    pub fn parse(value: &'a [u8], offset: usize) -> Result<Self, ParseError> {
        if trim_lws(value) == b"*" {
            return Ok(Self::Any);
        }
        NameAddr::parse(value, offset, Field::Contact).map(Self::Addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ParseErrorKind;

    #[test]
    fn table() {
        type Want = Result<(Option<&'static str>, &'static str, Option<&'static str>), usize>;
        let cases: &[(&str, Want)] = &[
            (
                "<sip:bob@example.com>",
                Ok((None, "sip:bob@example.com", None)),
            ),
            (
                "Bob <sip:bob@example.com>;tag=a6c85cf",
                Ok((Some("Bob"), "sip:bob@example.com", Some("a6c85cf"))),
            ),
            (
                "\"Doe, John\" <sip:j@example.com;transport=tcp> ;tag=1",
                Ok((
                    Some("\"Doe, John\""),
                    "sip:j@example.com;transport=tcp",
                    Some("1"),
                )),
            ),
            (
                "sip:alice@example.com;tag=1928301774",
                Ok((None, "sip:alice@example.com", Some("1928301774"))),
            ),
            (
                "sip:alice@example.com",
                Ok((None, "sip:alice@example.com", None)),
            ),
            ("\"\"<sip:x@y>", Ok((Some("\"\""), "sip:x@y", None))),
            (
                "The Operator <sip:op@h>;tag=x;other",
                Ok((Some("The Operator"), "sip:op@h", Some("x"))),
            ),
            ("<sip:a@b", Err(8)),
            ("\"open <sip:a@b>", Err(0)),
            ("\"q\" sip:a@b", Err(4)),
            ("<>", Err(1)),
            ("<sip:a@b>x", Err(9)),
            ("<sip:a@b>;tag", Err(10)),
            ("<sip:a@b>;tag=\"q\"", Err(10)),
            ("a\"b <sip:c>", Err(0)),
            ("", Err(0)),
        ];
        for (raw, want) in cases {
            let got = NameAddr::parse(raw.as_bytes(), 0, Field::To).map(|n| {
                (
                    n.display.map(|d| core::str::from_utf8(d).unwrap()),
                    n.uri,
                    n.tag,
                )
            });
            match want {
                Ok(w) => assert_eq!(got.as_ref().ok(), Some(w), "{raw}"),
                Err(off) => {
                    let e = got.expect_err(raw);
                    assert_eq!(
                        e,
                        ParseError::new(ParseErrorKind::Invalid(Field::To), *off),
                        "{raw}"
                    );
                }
            }
        }
    }

    #[test]
    fn offsets_and_contact() {
        let n = NameAddr::parse(b"Bob <sip:b@h;lr>;x=1", 50, Field::Route).unwrap();
        assert_eq!(n.uri_offset(), 55);
        assert!(n.parse_uri().unwrap().has_lr());
        assert_eq!(n.params().get("x").unwrap().value, Some("1"));
        assert_eq!(Contact::parse(b" * ", 0), Ok(Contact::Any));
        assert!(matches!(
            Contact::parse(b"<sip:a@b>;expires=60", 0),
            Ok(Contact::Addr(_))
        ));
        assert_eq!(
            Contact::parse(b"<sip:a@b", 3).unwrap_err().kind,
            ParseErrorKind::Invalid(Field::Contact)
        );
    }
}
