//! URIs as the relay needs them ([`Uri`]): the scheme, and for `sip:`/`sips:` the host,
//! port and URI parameters (`transport=`, `lr`, `maddr=`).
//!
//! Zero-copy over a `&str` already cut out of a message. Other schemes (`tel:`, `urn:`)
//! parse with no host. Never resolves names and never percent-decodes (the relay compares
//! hosts and reads parameters only).

use crate::{
    cursor::{Cursor, ascii_str},
    host::{Host, parse_port},
};

/// A parsed URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uri<'a> {
    raw: &'a str,
    /// The scheme as written (`sip`, `sips`, `tel`, ...).
    pub scheme: &'a str,
    /// The user part (before `@`), still percent-encoded, for `sip`/`sips` URIs.
    pub user: Option<&'a str>,
    /// The host, for `sip`/`sips` URIs.
    pub host: Option<Host<'a>>,
    /// The explicit port, if any.
    pub port: Option<u16>,
    /// The URI parameters after the host part, without the leading `;` (may be empty).
    pub params: &'a str,
}

/// Characters that may not appear in a URI as carried in a SIP header (RFC 3986 excludes
/// them; `<>"` and white space delimit URIs in headers).
const fn is_uri_char(b: u8) -> bool {
    b > 0x20 && b < 0x7f && !matches!(b, b'<' | b'>' | b'"')
}

impl<'a> Uri<'a> {
    /// Parses `raw`; `None` when it is not a URI this relay can read.
    pub fn parse(raw: &'a str) -> Option<Self> {
        if raw.is_empty() || !raw.bytes().all(is_uri_char) {
            return None;
        }
        let (scheme, rest) = raw.split_once(':')?;
        let mut sb = scheme.bytes();
        if !sb.next().is_some_and(|b| b.is_ascii_alphabetic())
            || !sb.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        {
            return None;
        }
        let mut uri = Self {
            raw,
            scheme,
            user: None,
            host: None,
            port: None,
            params: "",
        };
        if !(scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips")) {
            return (!rest.is_empty()).then_some(uri);
        }
        // `?headers` never carry the host; the user part ends at the last `@`.
        let main = rest.split_once('?').map_or(rest, |(m, _)| m);
        let hostpart = match main.rsplit_once('@') {
            Some((user, host)) => {
                if user.is_empty() {
                    return None;
                }
                uri.user = Some(user);
                host
            }
            None => main,
        };
        let mut c = Cursor::new(hostpart.as_bytes(), 0);
        uri.host = Some(Host::parse(&mut c)?);
        uri.port = parse_port(&mut c).ok()?;
        if c.eat(b';') {
            uri.params = ascii_str(c.rest())?;
        } else if !c.is_empty() {
            return None;
        }
        Some(uri)
    }

    /// The URI as written.
    pub const fn as_str(&self) -> &'a str {
        self.raw
    }

    /// Whether the scheme is `sip` or `sips`.
    pub fn is_sip(&self) -> bool {
        self.host.is_some()
    }

    /// The URI parameter `name` (ASCII case-insensitive): `Some(None)` for a flag such as
    /// `lr`, `Some(Some(value))` for `name=value`, `None` when absent.
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        self.params.split(';').find_map(|p| {
            let (n, v) = match p.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (p, None),
            };
            n.eq_ignore_ascii_case(name).then_some(v)
        })
    }

    /// The `transport=` parameter value.
    pub fn transport_param(&self) -> Option<&'a str> {
        self.param("transport").flatten()
    }

    /// Whether the URI has the loose-routing `lr` parameter.
    pub fn has_lr(&self) -> bool {
        self.param("lr").is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn table() {
        // raw, scheme, user, host (display), port, params
        type Want = Option<(
            &'static str,
            Option<&'static str>,
            Option<&'static str>,
            Option<u16>,
            &'static str,
        )>;
        let cases: &[(&str, Want)] = &[
            (
                "sip:bob@example.com",
                Some(("sip", Some("bob"), Some("example.com"), None, "")),
            ),
            (
                "SIP:example.com:5070;lr",
                Some(("SIP", None, Some("example.com"), Some(5070), "lr")),
            ),
            (
                "sips:a:pw@[2001:db8::1]:5061;transport=tcp?subject=x",
                Some((
                    "sips",
                    Some("a:pw"),
                    Some("[2001:db8::1]"),
                    Some(5061),
                    "transport=tcp",
                )),
            ),
            (
                "sip:user;par=u%40example.net@example.com",
                Some((
                    "sip",
                    Some("user;par=u%40example.net"),
                    Some("example.com"),
                    None,
                    "",
                )),
            ),
            (
                "sip:10.0.0.1;transport=sctp;lr",
                Some(("sip", None, Some("10.0.0.1"), None, "transport=sctp;lr")),
            ),
            ("tel:+1-201-555-0123", Some(("tel", None, None, None, ""))),
            ("sip:", None),
            ("sip:@example.com", None),
            ("sip:bob@", None),
            ("sip:bob@exa mple.com", None),
            ("sip:host:port", None),
            ("sip:host:99999", None),
            ("sip:host/x", None),
            ("nocolon", None),
            ("1sip:x", None),
            ("tel:", None),
            ("", None),
        ];
        for (raw, want) in cases {
            let got = Uri::parse(raw);
            match want {
                None => assert!(got.is_none(), "{raw}: {got:?}"),
                Some((scheme, user, host, port, params)) => {
                    let u = got.unwrap_or_else(|| panic!("{raw}"));
                    assert_eq!(u.scheme, *scheme, "{raw}");
                    assert_eq!(u.user, *user, "{raw}");
                    assert_eq!(u.host.map(|h| h.to_string()).as_deref(), *host, "{raw}");
                    assert_eq!(u.port, *port, "{raw}");
                    assert_eq!(u.params, *params, "{raw}");
                    assert_eq!(u.as_str(), *raw);
                }
            }
        }
    }

    #[test]
    fn params() {
        let u = Uri::parse("sip:10.0.0.1:5060;Transport=SCTP;lr;maddr=10.0.0.2").unwrap();
        assert_eq!(u.transport_param(), Some("SCTP"));
        assert!(u.has_lr());
        assert_eq!(u.param("maddr"), Some(Some("10.0.0.2")));
        assert_eq!(u.param("ttl"), None);
        assert_eq!(
            u.host.and_then(|h| h.ip()),
            Some(IpAddr::from([10, 0, 0, 1]))
        );
        assert!(u.is_sip());
        assert!(!Uri::parse("tel:123").unwrap().is_sip());
    }
}
