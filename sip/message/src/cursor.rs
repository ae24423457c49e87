//! A read cursor over untrusted bytes ([`Cursor`]) and the SIP character classes.
//!
//! In the manner of rustls' `codec::Reader`: every take returns an `Option` or a possibly
//! empty slice, nothing indexes or unwraps, and the cursor knows the absolute offset of its
//! position in the message so errors can point at it. Owns no state beyond one borrowed
//! slice; never allocates.

/// A forward-only cursor over `buf`, whose first byte sits at offset `base` in the message.
#[derive(Debug, Clone)]
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `buf`, which begins at message offset `base`.
    #[inline]
    pub(crate) const fn new(buf: &'a [u8], base: usize) -> Self {
        Self { buf, pos: 0, base }
    }

    /// Message offset of the current position.
    #[inline]
    pub(crate) const fn offset(&self) -> usize {
        self.base + self.pos
    }

    /// Everything not consumed yet.
    #[inline]
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    /// Whether everything was consumed.
    #[inline]
    pub(crate) const fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// The next byte, not consumed.
    #[inline]
    pub(crate) fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// Consumes `b` if it is next.
    #[inline]
    pub(crate) fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Consumes `s` if it comes next, compared ASCII case-insensitively.
    #[inline]
    pub(crate) fn eat_ignore_case(&mut self, s: &[u8]) -> bool {
        match self.rest().get(..s.len()) {
            Some(head) if head.eq_ignore_ascii_case(s) => {
                self.pos += s.len();
                true
            }
            _ => false,
        }
    }

    /// The longest prefix whose bytes satisfy `f` (possibly empty), consumed.
    #[inline]
    pub(crate) fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let rest = self.rest();
        let n = rest.iter().position(|&b| !f(b)).unwrap_or(rest.len());
        let (head, _) = rest.split_at_checked(n).unwrap_or((rest, &[]));
        self.pos += head.len();
        head
    }

    /// Like [`take_while`](Self::take_while) but `None` when nothing matched.
    #[inline]
    pub(crate) fn take_while1(&mut self, f: impl Fn(u8) -> bool) -> Option<&'a [u8]> {
        let t = self.take_while(f);
        (!t.is_empty()).then_some(t)
    }

    /// Skips linear white space (SP, HTAB and the CRLF of folded lines); whether any was
    /// skipped.
    #[inline]
    pub(crate) fn skip_lws(&mut self) -> bool {
        !self.take_while(is_lws).is_empty()
    }

    /// Consumes a quoted string starting at the current `"`, escapes included; returns it
    /// with its quotes. `None` (and nothing consumed) when it is not closed.
    pub(crate) fn take_quoted(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest();
        let end = quoted_len(rest)?;
        let (q, _) = rest.split_at_checked(end)?;
        self.pos += end;
        Some(q)
    }
}

/// Length of the quoted string at the start of `s` (both quotes included), or `None` when `s`
/// does not start with `"` or the string is not closed.
pub(crate) fn quoted_len(s: &[u8]) -> Option<usize> {
    let mut it = s.iter().enumerate();
    if it.next().map(|(_, &b)| b) != Some(b'"') {
        return None;
    }
    while let Some((i, &b)) = it.next() {
        match b {
            b'\\' => {
                it.next()?;
            }
            b'"' => return Some(i + 1),
            _ => {}
        }
    }
    None
}

/// `token` characters of RFC 3261 section 25.1, as a table. Built at compile time, where an
/// out-of-range index fails the build instead of a message: hence the `allow`.
#[allow(clippy::indexing_slicing)]
const TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        i += 1;
    }
    t
};

/// `token` characters of RFC 3261 section 25.1.
#[inline]
pub(crate) fn is_token(b: u8) -> bool {
    TOKEN.get(usize::from(b)).copied().unwrap_or(false)
}

/// Linear white space inside a header value: SP, HTAB, and the CR LF of a folded line (the
/// head scanner has already checked every CR LF in a value is followed by SP or HTAB).
#[inline]
pub(crate) const fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// SP or HTAB.
#[inline]
pub(crate) const fn is_wsp(b: u8) -> bool {
    matches!(b, b' ' | b'\t')
}

/// Characters of a host name, an IPv4 address, or the inside of an IPv6 reference.
#[inline]
pub(crate) const fn is_host_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')
}

/// `s` without leading and trailing LWS.
#[inline]
pub(crate) fn trim_lws(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_lws(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|&b| !is_lws(b)).map_or(start, |i| i + 1);
    s.get(start..end).unwrap_or_default()
}

/// Parses ASCII decimal digits into a `u64`; `None` when empty, not all digits, or too large.
pub(crate) fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

/// `s` as `&str` when it is ASCII (every caller has already checked the character class).
#[inline]
pub(crate) fn ascii_str(s: &[u8]) -> Option<&str> {
    if s.is_ascii() {
        core::str::from_utf8(s).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes() {
        let mut c = Cursor::new(b"abc  ;x", 10);
        assert_eq!(c.take_while(is_token), b"abc");
        assert_eq!(c.offset(), 13);
        assert!(c.skip_lws());
        assert!(!c.skip_lws());
        assert!(c.eat(b';'));
        assert!(!c.eat(b';'));
        assert_eq!(c.take_while1(is_token), Some(&b"x"[..]));
        assert_eq!(c.take_while1(is_token), None);
        assert!(c.is_empty());
        assert_eq!(c.peek(), None);
    }

    #[test]
    fn quoted() {
        let cases: &[(&[u8], Option<usize>)] = &[
            (b"\"a\"", Some(3)),
            (b"\"a\\\"b\" x", Some(6)),
            (b"\"open", None),
            (b"\"trailing\\", None),
            (b"x\"", None),
            (b"", None),
        ];
        for (s, want) in cases {
            assert_eq!(quoted_len(s), *want, "{:?}", String::from_utf8_lossy(s));
        }
        let mut c = Cursor::new(b"\"q\\\"\";", 0);
        assert_eq!(c.take_quoted(), Some(&b"\"q\\\"\""[..]));
        assert_eq!(c.peek(), Some(b';'));
    }

    #[test]
    fn numbers_and_trim() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"18446744073709551615"), None);
        assert_eq!(
            parse_u64(b"1844674407370955161"),
            Some(1_844_674_407_370_955_161)
        );
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"1a"), None);
        assert_eq!(trim_lws(b" \t a b\r\n "), b"a b");
        assert_eq!(trim_lws(b"   "), b"");
        let mut c = Cursor::new(b"SIP/2.0", 0);
        assert!(c.eat_ignore_case(b"sip/"));
        assert!(!c.eat_ignore_case(b"2.0x"));
        assert_eq!(c.rest(), b"2.0");
    }
}
