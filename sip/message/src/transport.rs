//! The transports the relay speaks ([`Transport`]): UDP, TCP and SCTP.
//!
//! A name only: nothing here opens a socket. TLS and WebSocket transports parse as `Via`
//! text but are not relayed.

use core::fmt;

/// A SIP transport the relay can send and receive on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP (datagrams; responses go to `received`/`rport`).
    Udp,
    /// TCP (a byte stream, framed by [`frame`](crate::frame)).
    Tcp,
    /// SCTP (one SIP message per SCTP message, RFC 4168).
    Sctp,
}

impl Transport {
    /// The name used in `Via` (`"UDP"`, `"TCP"`, `"SCTP"`).
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Udp => "UDP",
            Self::Tcp => "TCP",
            Self::Sctp => "SCTP",
        }
    }

    /// The value of a URI `transport=` parameter (`"udp"`, `"tcp"`, `"sctp"`).
    pub const fn uri_param(&self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Sctp => "sctp",
        }
    }

    /// The transport named `s` (ASCII case-insensitive), if the relay supports it.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Udp, Self::Tcp, Self::Sctp]
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
    }

    /// Whether the transport is reliable (responses reuse the connection or association).
    pub const fn is_reliable(&self) -> bool {
        !matches!(self, Self::Udp)
    }

    /// Whether the transport is a byte stream that needs [`frame`](crate::frame).
    pub const fn is_stream(&self) -> bool {
        matches!(self, Self::Tcp)
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let cases = [
            ("UDP", Some(Transport::Udp)),
            ("udp", Some(Transport::Udp)),
            ("Tcp", Some(Transport::Tcp)),
            ("SCTP", Some(Transport::Sctp)),
            ("TLS", None),
            ("TLS-SCTP", None),
            ("WS", None),
            ("", None),
        ];
        for (s, want) in cases {
            assert_eq!(Transport::parse(s), want, "{s}");
        }
        assert!(Transport::Sctp.is_reliable());
        assert!(!Transport::Udp.is_reliable());
        assert!(Transport::Tcp.is_stream() && !Transport::Sctp.is_stream());
        assert_eq!(Transport::Sctp.uri_param(), "sctp");
        assert_eq!(Transport::Tcp.to_string(), "TCP");
    }
}
