//! Header parameters: the `;name[=value]` lists after a `Via` sent-by or a name-addr
//! ([`Param`], [`Params`]).
//!
//! Zero-copy and lazy: [`Params`] walks the raw bytes each time it is iterated and reports
//! every parameter with its span in the message, which the editor uses to replace one in
//! place. Values are returned raw (a quoted value keeps its quotes). Never allocates.

use core::ops::Range;

use crate::{
    cursor::{Cursor, ascii_str, is_lws, is_token},
    error::{Field, ParseError},
};

/// One `name[=value]` parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param<'a> {
    /// The name as written (compare ASCII case-insensitively).
    pub name: &'a str,
    /// The value as written, quotes included; `None` for a flag such as `;lr` or `;rport`.
    pub value: Option<&'a str>,
    /// Message offsets from the first byte of the name to the last byte of the value.
    pub span: Range<usize>,
}

impl Param<'_> {
    /// Whether the parameter is called `name` (ASCII case-insensitive).
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }
}

/// Characters allowed in an unquoted parameter value: `token`, plus what hosts need
/// (`[`, `]`, `:` for IPv6 in `received=` or `maddr=`).
#[inline]
fn is_value_char(b: u8) -> bool {
    is_token(b) || matches!(b, b'[' | b']' | b':')
}

/// An iterator over `;name[=value]` parameters, yielding an error (then stopping) at the
/// first byte that does not fit the grammar.
#[derive(Debug, Clone)]
pub struct Params<'a> {
    cursor: Cursor<'a>,
    field: Field,
    done: bool,
}

impl<'a> Params<'a> {
    /// Parameters in `raw` (which starts with `;` or LWS, or is empty), located at message
    /// offset `offset`; errors name `field`.
    pub(crate) const fn new(raw: &'a [u8], offset: usize, field: Field) -> Self {
        Self {
            cursor: Cursor::new(raw, offset),
            field,
            done: false,
        }
    }

    /// The first parameter called `name`, if the list parses up to it.
    pub fn get(&self, name: &str) -> Option<Param<'a>> {
        self.clone().map_while(Result::ok).find(|p| p.is(name))
    }

    fn next_param(&mut self) -> Result<Option<Param<'a>>, ParseError> {
        let c = &mut self.cursor;
        c.skip_lws();
        if c.is_empty() {
            return Ok(None);
        }
        if !c.eat(b';') {
            return Err(ParseError::invalid(self.field, c.offset()));
        }
        c.skip_lws();
        let start = c.offset();
        let name = c
            .take_while1(is_token)
            .and_then(ascii_str)
            .ok_or_else(|| ParseError::invalid(self.field, c.offset()))?;
        let mut end = c.offset();
        let before_eq = c.clone();
        c.skip_lws();
        let value = if c.eat(b'=') {
            c.skip_lws();
            let at = c.offset();
            let v = if c.peek() == Some(b'"') {
                c.take_quoted()
            } else {
                c.take_while1(is_value_char)
            };
            let v = v
                .and_then(|v| core::str::from_utf8(v).ok())
                .ok_or_else(|| ParseError::invalid(self.field, at))?;
            end = c.offset();
            Some(v)
        } else {
            *c = before_eq;
            None
        };
        // The parameter must end at `;`, LWS, or the end of the list.
        match c.peek() {
            None | Some(b';') => {}
            Some(b) if is_lws(b) => {}
            Some(_) => return Err(ParseError::invalid(self.field, c.offset())),
        }
        Ok(Some(Param {
            name,
            value,
            span: start..end,
        }))
    }
}

impl<'a> Iterator for Params<'a> {
    type Item = Result<Param<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_param() {
            Ok(Some(p)) => Some(Ok(p)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ParseErrorKind;

    fn names(raw: &str) -> Result<Vec<(String, Option<String>)>, ParseError> {
        Params::new(raw.as_bytes(), 100, Field::Param)
            .map(|r| r.map(|p| (p.name.to_owned(), p.value.map(str::to_owned))))
            .collect()
    }

    #[test]
    fn table() {
        type Want = Result<Vec<(&'static str, Option<&'static str>)>, usize>;
        let cases: &[(&str, Want)] = &[
            ("", Ok(vec![])),
            (";lr", Ok(vec![("lr", None)])),
            (
                ";branch=z9hG4bK1;rport",
                Ok(vec![("branch", Some("z9hG4bK1")), ("rport", None)]),
            ),
            (
                " ; tag = abc ; x",
                Ok(vec![("tag", Some("abc")), ("x", None)]),
            ),
            (
                ";received=2001:db8::1",
                Ok(vec![("received", Some("2001:db8::1"))]),
            ),
            (";maddr=[::1]", Ok(vec![("maddr", Some("[::1]"))])),
            (";q=\"a;b\\\"c\"", Ok(vec![("q", Some("\"a;b\\\"c\""))])),
            (";a\r\n ;b", Ok(vec![("a", None), ("b", None)])),
            (";", Err(101)),
            (";=x", Err(101)),
            (";a=", Err(103)),
            (";a=\"open", Err(103)),
            (";a=b c", Err(105)),
            ("x", Err(100)),
            (";a=b>", Err(104)),
        ];
        for (raw, want) in cases {
            let got = names(raw);
            match want {
                Ok(v) => {
                    let v: Vec<_> = v
                        .iter()
                        .map(|(n, v)| ((*n).to_owned(), v.map(str::to_owned)))
                        .collect();
                    assert_eq!(got, Ok(v), "{raw:?}");
                }
                Err(off) => {
                    let e = got.expect_err(raw);
                    assert_eq!(e.kind, ParseErrorKind::Invalid(Field::Param), "{raw:?}");
                    assert_eq!(e.offset, *off, "{raw:?}");
                }
            }
        }
    }

    #[test]
    fn spans_and_get() {
        let raw = ";branch=z9hG4bKx ;rport;received=10.0.0.1";
        let p = Params::new(raw.as_bytes(), 10, Field::Via);
        let rport = p.get("RPORT").unwrap();
        assert_eq!(rport.value, None);
        assert_eq!(rport.span, 28..33);
        let rec = p.get("received").unwrap();
        assert_eq!(
            &raw[rec.span.start - 10..rec.span.end - 10],
            "received=10.0.0.1"
        );
        assert!(p.get("ttl").is_none());
    }
}
