//! Splits a multi-value header (`Via`, `Route`, `Record-Route`, `Contact`) on its top-level
//! commas ([`Values`]).
//!
//! A comma inside a quoted string (`"Doe, John"`) or inside `<...>` (a URI may hold one)
//! does not split. Yields trimmed slices with their message offsets; never allocates.

use crate::{
    cursor::{is_lws, quoted_len, trim_lws},
    error::{Field, ParseError},
};

/// One comma-separated value of a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Value<'a> {
    /// The value without surrounding LWS.
    pub(crate) bytes: &'a [u8],
    /// Message offset of its first byte.
    pub(crate) offset: usize,
}

/// Iterator over the values of one header; an unterminated quote or `<` is an error naming
/// `field`, after which iteration stops. Empty values (`a,,b`) are skipped.
#[derive(Debug, Clone)]
pub(crate) struct Values<'a> {
    rest: &'a [u8],
    offset: usize,
    field: Field,
}

impl<'a> Values<'a> {
    /// The values of `value`, a header value at message offset `offset`.
    pub(crate) const fn new(value: &'a [u8], offset: usize, field: Field) -> Self {
        Self {
            rest: value,
            offset,
            field,
        }
    }

    /// Length of the first value of `s` (up to, not including, its top-level comma).
    fn first_len(&self, s: &[u8]) -> Result<usize, ParseError> {
        let mut i = 0;
        while let Some(&b) = s.get(i) {
            match b {
                b',' => return Ok(i),
                b'"' => {
                    let q = s.get(i..).and_then(quoted_len);
                    i += q.ok_or_else(|| ParseError::invalid(self.field, self.offset + i))?;
                }
                b'<' => {
                    let close = s.get(i..).and_then(|t| t.iter().position(|&b| b == b'>'));
                    i += close.ok_or_else(|| ParseError::invalid(self.field, self.offset + i))? + 1;
                }
                _ => i += 1,
            }
        }
        Ok(s.len())
    }
}

impl<'a> Iterator for Values<'a> {
    type Item = Result<Value<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let n = match self.first_len(self.rest) {
                Ok(n) => n,
                Err(e) => {
                    self.rest = &[];
                    return Some(Err(e));
                }
            };
            let (head, tail) = self.rest.split_at_checked(n).unwrap_or((self.rest, &[]));
            let lead = head.iter().take_while(|&&b| is_lws(b)).count();
            let bytes = trim_lws(head);
            let offset = self.offset + lead;
            // Skip the comma itself.
            let skip = usize::from(!tail.is_empty());
            self.rest = tail.get(skip..).unwrap_or_default();
            self.offset += n + skip;
            if !bytes.is_empty() {
                return Some(Ok(Value { bytes, offset }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Result<Vec<(String, usize)>, usize> {
        Values::new(s.as_bytes(), 10, Field::Via)
            .map(|r| {
                r.map(|v| (String::from_utf8_lossy(v.bytes).into_owned(), v.offset))
                    .map_err(|e| e.offset)
            })
            .collect()
    }

    #[test]
    fn table() {
        type Want = Result<Vec<(&'static str, usize)>, usize>;
        let cases: &[(&str, Want)] = &[
            ("a", Ok(vec![("a", 10)])),
            ("a, b", Ok(vec![("a", 10), ("b", 13)])),
            (" a ,\r\n b ", Ok(vec![("a", 11), ("b", 17)])),
            ("a,,b", Ok(vec![("a", 10), ("b", 13)])),
            (",", Ok(vec![])),
            (
                "\"Doe, J\" <sip:a@b>, <sip:c,d@e>;x",
                Ok(vec![("\"Doe, J\" <sip:a@b>", 10), ("<sip:c,d@e>;x", 30)]),
            ),
            ("\"a\\\",b\", c", Ok(vec![("\"a\\\",b\"", 10), ("c", 19)])),
            ("<sip:a", Err(10)),
            ("a, \"open", Err(13)),
        ];
        for (s, want) in cases {
            let want = want.clone().map(|v| {
                v.into_iter()
                    .map(|(a, o)| (a.to_owned(), o))
                    .collect::<Vec<_>>()
            });
            assert_eq!(split(s), want, "{s:?}");
        }
        let v = Values::new(b" x ", 0, Field::Route)
            .next()
            .unwrap()
            .unwrap();
        assert_eq!((v.bytes, v.offset), (&b"x"[..], 1));
    }
}
