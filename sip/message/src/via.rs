//! One `Via` value ([`Via`]): sent-protocol, sent-by host and port, and the parameters the
//! relay reads (`branch`, `received`, `rport`, `maddr`, `ttl`).
//!
//! Zero-copy over one comma-separated value of a `Via` header. Knows the message offsets of
//! the value and of every parameter so the editor can change one in place; never resolves
//! the sent-by host.

use core::ops::Range;
use std::net::IpAddr;

use crate::{
    cursor::{Cursor, ascii_str, is_lws, is_token, parse_u64},
    error::{Field, ParseError},
    host::{Host, parse_port},
    params::{Param, Params},
    transport::Transport,
};

/// The RFC 3261 branch prefix (`z9hG4bK`): its presence says the branch is unique.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// The `rport` parameter (RFC 3581).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rport {
    /// `;rport` without a value: the client asks for the source port to be filled in.
    Requested,
    /// `;rport=N`: filled in by the server that received the request.
    Port(u16),
}

/// One `Via` value: `SIP/2.0/UDP host:port;branch=...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via<'a> {
    /// Protocol name, normally `SIP`.
    pub protocol_name: &'a str,
    /// Protocol version, normally `2.0`.
    pub protocol_version: &'a str,
    /// Transport as written (`UDP`, `TCP`, `SCTP`, `TLS`, ...).
    pub transport: &'a str,
    /// The sent-by host.
    pub host: Host<'a>,
    /// The sent-by port, if written.
    pub port: Option<u16>,
    /// `branch=`
    pub branch: Option<&'a str>,
    /// `received=`
    pub received: Option<IpAddr>,
    /// `rport` or `rport=N`
    pub rport: Option<Rport>,
    /// `maddr=`
    pub maddr: Option<Host<'a>>,
    /// `ttl=`
    pub ttl: Option<u8>,
    span: Range<usize>,
    params_raw: &'a [u8],
    params_offset: usize,
}

fn bad(offset: usize) -> ParseError {
    ParseError::invalid(Field::ViaParam, offset)
}

impl<'a> Via<'a> {
    /// Parses one `Via` value located at message offset `offset`.
    ///
    /// # Errors
    ///
    /// [`Field::SentProtocol`], [`Field::SentBy`] or [`Field::ViaParam`] with the offset of
    /// the first byte that does not fit.
    pub fn parse(value: &'a [u8], offset: usize) -> Result<Self, ParseError> {
        let mut c = Cursor::new(value, offset);
        c.skip_lws();
        let start = c.offset();
        let token = |c: &mut Cursor<'a>| {
            c.skip_lws();
            let at = c.offset();
            c.take_while1(is_token)
                .and_then(ascii_str)
                .ok_or_else(|| ParseError::invalid(Field::SentProtocol, at))
        };
        let protocol_name = token(&mut c)?;
        let slash = |c: &mut Cursor<'a>| {
            c.skip_lws();
            if c.eat(b'/') {
                Ok(())
            } else {
                Err(ParseError::invalid(Field::SentProtocol, c.offset()))
            }
        };
        slash(&mut c)?;
        let protocol_version = token(&mut c)?;
        slash(&mut c)?;
        let transport = token(&mut c)?;
        if !c.skip_lws() {
            return Err(ParseError::invalid(Field::SentProtocol, c.offset()));
        }
        let at = c.offset();
        let host = Host::parse(&mut c).ok_or_else(|| ParseError::invalid(Field::SentBy, at))?;
        let port = parse_port(&mut c).map_err(|()| ParseError::invalid(Field::SentBy, at))?;
        match c.peek() {
            None | Some(b';') => {}
            Some(b) if is_lws(b) => {}
            Some(_) => return Err(ParseError::invalid(Field::SentBy, c.offset())),
        }
        let params_offset = c.offset();
        let params_raw = c.rest();
        let mut via = Self {
            protocol_name,
            protocol_version,
            transport,
            host,
            port,
            branch: None,
            received: None,
            rport: None,
            maddr: None,
            ttl: None,
            span: start..start,
            params_raw,
            params_offset,
        };
        let mut end = params_offset;
        for p in Params::new(params_raw, params_offset, Field::ViaParam) {
            let p = p?;
            end = p.span.end;
            via.take_param(&p)?;
        }
        via.span = start..end;
        Ok(via)
    }

    fn take_param(&mut self, p: &Param<'a>) -> Result<(), ParseError> {
        let at = p.span.start;
        let name = p.name;
        let v = p.value;
        if name.eq_ignore_ascii_case("branch") {
            if self.branch.is_none() {
                self.branch = Some(v.filter(|v| !v.starts_with('"')).ok_or_else(|| bad(at))?);
            }
        } else if name.eq_ignore_ascii_case("received") {
            if self.received.is_none() {
                self.received = Some(
                    v.and_then(Host::parse_str)
                        .and_then(|h| h.ip())
                        .ok_or_else(|| bad(at))?,
                );
            }
        } else if name.eq_ignore_ascii_case("rport") {
            if self.rport.is_none() {
                self.rport = Some(match v {
                    None => Rport::Requested,
                    Some(v) => parse_u64(v.as_bytes())
                        .and_then(|n| u16::try_from(n).ok())
                        .map(Rport::Port)
                        .ok_or_else(|| bad(at))?,
                });
            }
        } else if name.eq_ignore_ascii_case("maddr") {
            if self.maddr.is_none() {
                self.maddr = Some(v.and_then(Host::parse_str).ok_or_else(|| bad(at))?);
            }
        } else if name.eq_ignore_ascii_case("ttl") && self.ttl.is_none() {
            self.ttl = Some(
                v.and_then(|v| parse_u64(v.as_bytes()))
                    .and_then(|n| u8::try_from(n).ok())
                    .ok_or_else(|| bad(at))?,
            );
        }
        Ok(())
    }

    /// The transport, if the relay supports it.
    pub fn transport(&self) -> Option<Transport> {
        Transport::parse(self.transport)
    }

    /// Whether the branch starts with the RFC 3261 magic cookie `z9hG4bK`.
    pub fn has_magic_cookie(&self) -> bool {
        self.branch.is_some_and(|b| b.starts_with(MAGIC_COOKIE))
    }

    /// All parameters, in order, with their message offsets.
    pub fn params(&self) -> Params<'a> {
        Params::new(self.params_raw, self.params_offset, Field::ViaParam)
    }

    /// Message offsets of the value, from the protocol name to the end of the last parameter.
    pub fn span(&self) -> Range<usize> {
        self.span.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ParseErrorKind;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn table() {
        struct Want {
            transport: &'static str,
            host: &'static str,
            port: Option<u16>,
            branch: Option<&'static str>,
            received: Option<&'static str>,
            rport: Option<Rport>,
        }
        let w = |transport, host, port, branch, received, rport| Want {
            transport,
            host,
            port,
            branch,
            received,
            rport,
        };
        let cases: &[(&str, Want)] = &[
            (
                "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds",
                w(
                    "UDP",
                    "192.0.2.1",
                    Some(5060),
                    Some("z9hG4bK776asdhds"),
                    None,
                    None,
                ),
            ),
            (
                "SIP/2.0/SCTP [::1]:5060;branch=z9hG4bKx;rport",
                w(
                    "SCTP",
                    "[::1]",
                    Some(5060),
                    Some("z9hG4bKx"),
                    None,
                    Some(Rport::Requested),
                ),
            ),
            (
                "SIP/2.0/TCP client.example.com;rport=5070;received=192.0.2.9;branch=z9hG4bKy",
                w(
                    "TCP",
                    "client.example.com",
                    None,
                    Some("z9hG4bKy"),
                    Some("192.0.2.9"),
                    Some(Rport::Port(5070)),
                ),
            ),
            (
                "SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw",
                w("UDP", "192.0.2.2", None, Some("390skdjuw"), None, None),
            ),
            (
                "sip/2.0/tls h ; branch = b1 ; received = 2001:db8::1",
                w("tls", "h", None, Some("b1"), Some("2001:db8::1"), None),
            ),
            (
                "SIP/2.0/UDP [2001:db8::1];received=[2001:db8::2]",
                w(
                    "UDP",
                    "[2001:db8::1]",
                    None,
                    None,
                    Some("2001:db8::2"),
                    None,
                ),
            ),
            (
                "SIP/2.0/UDP h;branch=first;branch=second;x=\"q\"",
                w("UDP", "h", None, Some("first"), None, None),
            ),
        ];
        for (raw, want) in cases {
            let v = Via::parse(raw.as_bytes(), 0).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(v.transport, want.transport, "{raw}");
            assert_eq!(v.host.to_string(), want.host, "{raw}");
            assert_eq!(v.port, want.port, "{raw}");
            assert_eq!(v.branch, want.branch, "{raw}");
            assert_eq!(
                v.received.map(|i| i.to_string()).as_deref(),
                want.received,
                "{raw}"
            );
            assert_eq!(v.rport, want.rport, "{raw}");
            assert_eq!(v.span(), 0..raw.len(), "{raw}");
        }
    }

    #[test]
    fn typed_params() {
        let raw = b"SIP/2.0/UDP 10.0.0.1;maddr=224.2.0.1;ttl=16;branch=z9hG4bKa";
        let v = Via::parse(raw, 7).unwrap();
        assert_eq!(
            v.maddr,
            Some(Host::Ip(IpAddr::V4(Ipv4Addr::new(224, 2, 0, 1))))
        );
        assert_eq!(v.ttl, Some(16));
        assert!(v.has_magic_cookie());
        assert_eq!(v.transport(), Some(Transport::Udp));
        assert_eq!(v.params().count(), 3);
        assert_eq!(v.span(), 7..7 + raw.len());
        let v = Via::parse(b"SIP/2.0/WS [::1]:443", 0).unwrap();
        assert_eq!(v.host, Host::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert_eq!(v.transport(), None);
        assert!(!v.has_magic_cookie());
    }

    #[test]
    fn errors() {
        let cases: &[(&str, Field, usize)] = &[
            ("", Field::SentProtocol, 0),
            ("SIP/2.0 UDP h", Field::SentProtocol, 8),
            ("SIP/2.0/UDP", Field::SentProtocol, 11),
            ("SIP/2.0/UDPh", Field::SentProtocol, 12),
            ("SIP/2.0/UDP ;branch=x", Field::SentBy, 12),
            ("SIP/2.0/UDP h:99999", Field::SentBy, 12),
            ("SIP/2.0/UDP [::1", Field::SentBy, 12),
            ("SIP/2.0/UDP h/x", Field::SentBy, 13),
            ("SIP/2.0/UDP h;branch", Field::ViaParam, 14),
            ("SIP/2.0/UDP h;branch=\"q\"", Field::ViaParam, 14),
            ("SIP/2.0/UDP h;received=example.com", Field::ViaParam, 14),
            ("SIP/2.0/UDP h;rport=70000", Field::ViaParam, 14),
            ("SIP/2.0/UDP h;rport=x", Field::ViaParam, 14),
            ("SIP/2.0/UDP h;ttl=256", Field::ViaParam, 14),
            ("SIP/2.0/UDP h;maddr=", Field::ViaParam, 20),
            ("SIP/2.0/UDP h;;", Field::ViaParam, 14),
            ("SIP/2.0/UDP h junk", Field::ViaParam, 14),
        ];
        for (raw, field, off) in cases {
            let e = Via::parse(raw.as_bytes(), 0).expect_err(raw);
            assert_eq!(
                e,
                ParseError::new(ParseErrorKind::Invalid(*field), *off),
                "{raw}"
            );
        }
    }
}
