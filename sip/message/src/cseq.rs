//! The `CSeq` header ([`CSeq`]): sequence number and method.
//!
//! Zero-copy; no I/O.

use crate::{
    cursor::{Cursor, is_token, parse_u64},
    error::{Field, ParseError},
    method::Method,
};

/// `CSeq: 4711 INVITE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq<'a> {
    /// The sequence number (RFC 3261 caps it below 2^31; any `u32` is accepted).
    pub seq: u32,
    /// The method, which must match the request's.
    pub method: Method<'a>,
}

impl<'a> CSeq<'a> {
    /// Parses a `CSeq` value located at message offset `offset`.
    ///
    /// # Errors
    ///
    /// [`Field::CSeq`] at the first byte that does not fit.
    pub fn parse(value: &'a [u8], offset: usize) -> Result<Self, ParseError> {
        let mut c = Cursor::new(value, offset);
        c.skip_lws();
        let at = c.offset();
        let seq = c
            .take_while1(|b| b.is_ascii_digit())
            .and_then(parse_u64)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| ParseError::invalid(Field::CSeq, at))?;
        if !c.skip_lws() {
            return Err(ParseError::invalid(Field::CSeq, c.offset()));
        }
        let at = c.offset();
        let method = c
            .take_while1(is_token)
            .and_then(Method::parse)
            .ok_or_else(|| ParseError::invalid(Field::CSeq, at))?;
        c.skip_lws();
        if !c.is_empty() {
            return Err(ParseError::invalid(Field::CSeq, c.offset()));
        }
        Ok(Self { seq, method })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        type Want = Result<(u32, Method<'static>), usize>;
        let cases: &[(&str, Want)] = &[
            ("1 INVITE", Ok((1, Method::Invite))),
            ("  4294967295\t ACK  ", Ok((u32::MAX, Method::Ack))),
            ("0009 BYE", Ok((9, Method::Bye))),
            ("7\r\n CANCEL", Ok((7, Method::Cancel))),
            ("1 NEWTHING", Ok((1, Method::Other("NEWTHING")))),
            ("4294967296 INVITE", Err(0)),
            ("INVITE", Err(0)),
            ("1INVITE", Err(1)),
            ("1 ", Err(2)),
            ("1 INVITE x", Err(9)),
            ("-1 INVITE", Err(0)),
            ("", Err(0)),
        ];
        for (raw, want) in cases {
            let got = CSeq::parse(raw.as_bytes(), 0)
                .map(|c| (c.seq, c.method))
                .map_err(|e| e.offset);
            assert_eq!(got, *want, "{raw:?}");
        }
    }
}
