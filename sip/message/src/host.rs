//! Hosts as they appear in `Via` sent-by, URIs and parameters ([`Host`]): a domain name or
//! an IP literal (IPv6 in brackets).
//!
//! Parsing and comparison only: no DNS, ever. A domain name is kept as text; IP literals
//! are parsed so `[::1]` and `[0:0::1]` compare equal.

use core::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::cursor::{Cursor, ascii_str, is_host_char};

/// A host: a domain name or an IP address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Host<'a> {
    /// A host name, as written (compare with [`Host::matches`], which ignores case).
    Domain(&'a str),
    /// An IPv4 address or a bracketed IPv6 reference.
    Ip(IpAddr),
}

impl<'a> Host<'a> {
    /// Parses a host at the cursor: `[v6]`, dotted IPv4, or a host name. Consumes nothing
    /// and returns `None` when there is none.
    pub(crate) fn parse(c: &mut Cursor<'a>) -> Option<Self> {
        let start = c.clone();
        let host = Self::parse_inner(c);
        if host.is_none() {
            *c = start;
        }
        host
    }

    fn parse_inner(c: &mut Cursor<'a>) -> Option<Self> {
        if c.eat(b'[') {
            let inner = c.take_while1(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')?;
            if !c.eat(b']') {
                return None;
            }
            let ip: Ipv6Addr = ascii_str(inner)?.parse().ok()?;
            return Some(Self::Ip(IpAddr::V6(ip)));
        }
        let name = c.take_while1(is_host_char)?;
        Self::from_name(name)
    }

    fn from_name(name: &'a [u8]) -> Option<Self> {
        let s = ascii_str(name)?;
        if name.iter().all(|&b| b.is_ascii_digit() || b == b'.') {
            // All digits and dots: an IPv4 address or nothing (a top label is never numeric).
            let ip: Ipv4Addr = s.parse().ok()?;
            return Some(Self::Ip(IpAddr::V4(ip)));
        }
        if name.first() == Some(&b'.') || name.first() == Some(&b'-') || s.contains("..") {
            return None;
        }
        Some(Self::Domain(s))
    }

    /// Parses `s` as a whole host: `example.com`, `192.0.2.1`, `[2001:db8::1]`, and (as in
    /// `received=` parameters) an unbracketed IPv6 address.
    pub fn parse_str(s: &'a str) -> Option<Self> {
        if let Ok(ip) = s.parse::<Ipv6Addr>() {
            return Some(Self::Ip(IpAddr::V6(ip)));
        }
        let mut c = Cursor::new(s.as_bytes(), 0);
        let host = Self::parse(&mut c)?;
        c.is_empty().then_some(host)
    }

    /// The address, for an IP literal.
    pub const fn ip(&self) -> Option<IpAddr> {
        match self {
            Self::Ip(ip) => Some(*ip),
            Self::Domain(_) => None,
        }
    }

    /// Whether both name the same host: IPs by value, domain names ASCII case-insensitively
    /// and ignoring one trailing dot.
    pub fn matches(&self, other: &Host<'_>) -> bool {
        match (self, other) {
            (Self::Ip(a), Host::Ip(b)) => a == b,
            (Self::Domain(a), Host::Domain(b)) => a
                .trim_end_matches('.')
                .eq_ignore_ascii_case(b.trim_end_matches('.')),
            _ => false,
        }
    }
}

impl fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Domain(d) => f.write_str(d),
            Self::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
            Self::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
        }
    }
}

/// Parses an optional `:port` at the cursor: `Ok(None)` when there is no colon, `Err(())`
/// when the colon is not followed by decimal digits that fit in 16 bits.
pub(crate) fn parse_port(c: &mut Cursor<'_>) -> Result<Option<u16>, ()> {
    if !c.eat(b':') {
        return Ok(None);
    }
    let digits = c.take_while1(|b| b.is_ascii_digit()).ok_or(())?;
    let n = crate::cursor::parse_u64(digits).ok_or(())?;
    u16::try_from(n).map(Some).map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let v4 = |a, b, c, d| Some(Host::Ip(IpAddr::V4(Ipv4Addr::new(a, b, c, d))));
        let cases: &[(&str, Option<Host<'_>>)] = &[
            ("example.com", Some(Host::Domain("example.com"))),
            (
                "Proxy-1.Example.COM",
                Some(Host::Domain("Proxy-1.Example.COM")),
            ),
            ("host_underscore", Some(Host::Domain("host_underscore"))),
            ("192.0.2.1", v4(192, 0, 2, 1)),
            ("[::1]", Some(Host::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)))),
            ("::1", Some(Host::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)))),
            (
                "[2001:db8::9:1]",
                Some(Host::Ip("2001:db8::9:1".parse().unwrap())),
            ),
            (
                "[::ffff:192.0.2.1]",
                Some(Host::Ip("::ffff:192.0.2.1".parse().unwrap())),
            ),
            ("192.0.2.300", None),
            ("192.0.2", None),
            ("[::1", None),
            ("[zz::1]", None),
            ("", None),
            (".example.com", None),
            ("a..b", None),
            ("exa mple", None),
            ("host:5060", None),
        ];
        for (s, want) in cases {
            assert_eq!(Host::parse_str(s), *want, "{s}");
        }
    }

    #[test]
    fn cursor_stops_at_port() {
        let mut c = Cursor::new(b"[::1]:5060;x", 0);
        assert_eq!(
            Host::parse(&mut c),
            Some(Host::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)))
        );
        assert_eq!(parse_port(&mut c), Ok(Some(5060)));
        assert_eq!(c.peek(), Some(b';'));
        let mut c = Cursor::new(b"h:99999", 0);
        assert!(Host::parse(&mut c).is_some());
        assert_eq!(parse_port(&mut c), Err(()));
        let mut c = Cursor::new(b"h:", 0);
        assert!(Host::parse(&mut c).is_some());
        assert_eq!(parse_port(&mut c), Err(()));
        let mut c = Cursor::new(b"[::1;", 0);
        assert_eq!(Host::parse(&mut c), None);
        assert_eq!(c.offset(), 0, "nothing consumed on failure");
    }

    #[test]
    fn matching_and_display() {
        let a = Host::parse_str("Example.COM.").unwrap();
        let b = Host::parse_str("example.com").unwrap();
        assert!(a.matches(&b));
        let v6a = Host::parse_str("[0:0::1]").unwrap();
        let v6b = Host::parse_str("[::1]").unwrap();
        assert!(v6a.matches(&v6b));
        assert!(!v6a.matches(&b));
        assert_eq!(v6a.to_string(), "[::1]");
        assert_eq!(Host::parse_str("10.0.0.1").unwrap().to_string(), "10.0.0.1");
        assert_eq!(b.ip(), None);
    }
}
