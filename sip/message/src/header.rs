//! Header fields as raw lines: [`HeaderName`] (case-insensitive, compact forms folded into
//! the full name) and [`Header`] (the name, the raw value, and where both sit in the
//! message).
//!
//! A [`Header`] is a view: its value may still contain the CRLF of folded continuation
//! lines, which every typed parser treats as white space. Typed parsing of values lives in
//! the modules named after them (`via`, `addr`, `cseq`); nothing here allocates.

use core::{fmt, ops::Range};

/// A header name, with compact forms (RFC 3261 section 7.3.3) mapped to the full name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HeaderName<'a> {
    /// `Via` / `v`
    Via,
    /// `Call-ID` / `i`
    CallId,
    /// `From` / `f`
    From,
    /// `To` / `t`
    To,
    /// `CSeq`
    CSeq,
    /// `Max-Forwards`
    MaxForwards,
    /// `Content-Length` / `l`
    ContentLength,
    /// `Contact` / `m`
    Contact,
    /// `Content-Type` / `c`
    ContentType,
    /// `Supported` / `k`
    Supported,
    /// `Subject` / `s`
    Subject,
    /// `Content-Encoding` / `e`
    ContentEncoding,
    /// `Route`
    Route,
    /// `Record-Route`
    RecordRoute,
    /// Any other name, as written (compare with [`HeaderName::is`]).
    Other(&'a str),
}

impl<'a> HeaderName<'a> {
    /// Classifies a header name (a `token` already checked by the caller), ignoring ASCII case.
    pub fn parse(name: &'a str) -> Self {
        Self::known(name.as_bytes()).unwrap_or(Self::Other(name))
    }

    /// Classifies the header name `name` (bytes of a `token`); `None` when it is not UTF-8.
    #[inline]
    pub(crate) fn from_token(name: &'a [u8]) -> Option<Self> {
        match Self::known(name) {
            Some(known) => Some(known),
            None => core::str::from_utf8(name).ok().map(Self::Other),
        }
    }

    /// The variant for a known full or compact name.
    #[inline]
    fn known(b: &[u8]) -> Option<HeaderName<'static>> {
        let eq = |s: &str| b.eq_ignore_ascii_case(s.as_bytes());
        Some(match b.len() {
            1 => match b.first().map(u8::to_ascii_lowercase) {
                Some(b'v') => HeaderName::Via,
                Some(b'i') => HeaderName::CallId,
                Some(b'f') => HeaderName::From,
                Some(b't') => HeaderName::To,
                Some(b'l') => HeaderName::ContentLength,
                Some(b'm') => HeaderName::Contact,
                Some(b'c') => HeaderName::ContentType,
                Some(b'k') => HeaderName::Supported,
                Some(b's') => HeaderName::Subject,
                Some(b'e') => HeaderName::ContentEncoding,
                _ => return None,
            },
            2 if eq("To") => HeaderName::To,
            3 if eq("Via") => HeaderName::Via,
            4 if eq("From") => HeaderName::From,
            4 if eq("CSeq") => HeaderName::CSeq,
            5 if eq("Route") => HeaderName::Route,
            7 if eq("Call-ID") => HeaderName::CallId,
            7 if eq("Contact") => HeaderName::Contact,
            7 if eq("Subject") => HeaderName::Subject,
            9 if eq("Supported") => HeaderName::Supported,
            12 if eq("Max-Forwards") => HeaderName::MaxForwards,
            12 if eq("Content-Type") => HeaderName::ContentType,
            12 if eq("Record-Route") => HeaderName::RecordRoute,
            14 if eq("Content-Length") => HeaderName::ContentLength,
            16 if eq("Content-Encoding") => HeaderName::ContentEncoding,
            _ => return None,
        })
    }

    /// The full, canonically capitalised name (the raw name for [`HeaderName::Other`]).
    pub const fn as_str(&self) -> &'a str {
        match self {
            Self::Via => "Via",
            Self::CallId => "Call-ID",
            Self::From => "From",
            Self::To => "To",
            Self::CSeq => "CSeq",
            Self::MaxForwards => "Max-Forwards",
            Self::ContentLength => "Content-Length",
            Self::Contact => "Contact",
            Self::ContentType => "Content-Type",
            Self::Supported => "Supported",
            Self::Subject => "Subject",
            Self::ContentEncoding => "Content-Encoding",
            Self::Route => "Route",
            Self::RecordRoute => "Record-Route",
            Self::Other(s) => s,
        }
    }

    /// Whether this is the header `name` (full or compact form, ASCII case-insensitive).
    pub fn is(&self, name: &str) -> bool {
        match (self, HeaderName::parse(name)) {
            (Self::Other(a), HeaderName::Other(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => *a == b,
        }
    }
}

impl fmt::Display for HeaderName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One header field of a parsed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<'a> {
    /// The header's name.
    pub name: HeaderName<'a>,
    /// The value without leading and trailing white space; folded lines keep their CRLF.
    pub value: &'a [u8],
    pub(crate) value_offset: usize,
    pub(crate) line: Range<usize>,
}

impl<'a> Header<'a> {
    /// Message offset of the first byte of [`value`](Self::value).
    pub const fn value_offset(&self) -> usize {
        self.value_offset
    }

    /// Message offsets of the whole field: from the first byte of its name to just past the
    /// CRLF that ends its last continuation line.
    pub fn line(&self) -> Range<usize> {
        self.line.clone()
    }

    /// The value as `&str`, when it is UTF-8.
    pub fn value_str(&self) -> Option<&'a str> {
        core::str::from_utf8(self.value).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let cases = [
            ("Via", HeaderName::Via),
            ("v", HeaderName::Via),
            ("V", HeaderName::Via),
            ("VIA", HeaderName::Via),
            ("i", HeaderName::CallId),
            ("call-id", HeaderName::CallId),
            ("f", HeaderName::From),
            ("from", HeaderName::From),
            ("t", HeaderName::To),
            ("TO", HeaderName::To),
            ("cseq", HeaderName::CSeq),
            ("max-forwards", HeaderName::MaxForwards),
            ("l", HeaderName::ContentLength),
            ("content-length", HeaderName::ContentLength),
            ("m", HeaderName::Contact),
            ("Contact", HeaderName::Contact),
            ("c", HeaderName::ContentType),
            ("Content-Type", HeaderName::ContentType),
            ("k", HeaderName::Supported),
            ("SUPPORTED", HeaderName::Supported),
            ("s", HeaderName::Subject),
            ("subject", HeaderName::Subject),
            ("e", HeaderName::ContentEncoding),
            ("content-encoding", HeaderName::ContentEncoding),
            ("route", HeaderName::Route),
            ("record-route", HeaderName::RecordRoute),
            ("x", HeaderName::Other("x")),
            ("Proxy-Require", HeaderName::Other("Proxy-Require")),
            ("Vias", HeaderName::Other("Vias")),
        ];
        for (s, want) in cases {
            assert_eq!(HeaderName::parse(s), want, "{s}");
            assert!(want.is(s), "{s}");
        }
        assert_eq!(HeaderName::parse("v").as_str(), "Via");
        assert!(HeaderName::Other("X-Foo").is("x-foo"));
        assert!(!HeaderName::Via.is("Route"));
        assert_eq!(HeaderName::RecordRoute.to_string(), "Record-Route");
    }
}
