//! SIP request methods: [`Method`] borrows from the message, [`MethodBuf`] owns its text for
//! tables that outlive the message.
//!
//! Methods are case-sensitive (RFC 3261 section 7.1): `invite` is an extension method, not
//! `INVITE`. No I/O, no allocation except in [`Method::to_buf`] for extension methods.

use core::fmt;

use crate::cursor::is_token;

/// A request method, borrowed from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Method<'a> {
    /// `INVITE`
    Invite,
    /// `ACK`
    Ack,
    /// `BYE`
    Bye,
    /// `CANCEL`
    Cancel,
    /// `OPTIONS`
    Options,
    /// `REGISTER`
    Register,
    /// `PRACK`
    Prack,
    /// `SUBSCRIBE`
    Subscribe,
    /// `NOTIFY`
    Notify,
    /// `PUBLISH`
    Publish,
    /// `INFO`
    Info,
    /// `REFER`
    Refer,
    /// `MESSAGE`
    Message,
    /// `UPDATE`
    Update,
    /// Any other token.
    Other(&'a str),
}

impl<'a> Method<'a> {
    /// The method named by `token`; `None` when it is empty or not a `token`.
    pub fn parse(token: &'a [u8]) -> Option<Self> {
        if token.is_empty() || !token.iter().all(|&b| is_token(b)) {
            return None;
        }
        Some(match token {
            b"INVITE" => Self::Invite,
            b"ACK" => Self::Ack,
            b"BYE" => Self::Bye,
            b"CANCEL" => Self::Cancel,
            b"OPTIONS" => Self::Options,
            b"REGISTER" => Self::Register,
            b"PRACK" => Self::Prack,
            b"SUBSCRIBE" => Self::Subscribe,
            b"NOTIFY" => Self::Notify,
            b"PUBLISH" => Self::Publish,
            b"INFO" => Self::Info,
            b"REFER" => Self::Refer,
            b"MESSAGE" => Self::Message,
            b"UPDATE" => Self::Update,
            other => Self::Other(core::str::from_utf8(other).ok()?),
        })
    }

    /// The method as written on the wire.
    pub const fn as_str(&self) -> &'a str {
        match self {
            Self::Invite => "INVITE",
            Self::Ack => "ACK",
            Self::Bye => "BYE",
            Self::Cancel => "CANCEL",
            Self::Options => "OPTIONS",
            Self::Register => "REGISTER",
            Self::Prack => "PRACK",
            Self::Subscribe => "SUBSCRIBE",
            Self::Notify => "NOTIFY",
            Self::Publish => "PUBLISH",
            Self::Info => "INFO",
            Self::Refer => "REFER",
            Self::Message => "MESSAGE",
            Self::Update => "UPDATE",
            Self::Other(s) => s,
        }
    }

    /// An owned copy (allocates only for [`Method::Other`]).
    pub fn to_buf(&self) -> MethodBuf {
        MethodBuf(match self {
            Self::Other(s) => match Method::parse(s.as_bytes()) {
                Some(Method::Other(_)) | None => Inner::Other((*s).into()),
                Some(known) => Inner::Known(known.as_static()),
            },
            known => Inner::Known(known.as_static()),
        })
    }

    /// The same method with a `'static` lifetime; `Other` becomes `Other("")`, so only call
    /// this on known methods.
    const fn as_static(&self) -> Method<'static> {
        match self {
            Self::Invite => Method::Invite,
            Self::Ack => Method::Ack,
            Self::Bye => Method::Bye,
            Self::Cancel => Method::Cancel,
            Self::Options => Method::Options,
            Self::Register => Method::Register,
            Self::Prack => Method::Prack,
            Self::Subscribe => Method::Subscribe,
            Self::Notify => Method::Notify,
            Self::Publish => Method::Publish,
            Self::Info => Method::Info,
            Self::Refer => Method::Refer,
            Self::Message => Method::Message,
            Self::Update => Method::Update,
            Self::Other(_) => Method::Other(""),
        }
    }
}

impl fmt::Display for Method<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An owned [`Method`], for keys and reports that outlive the message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MethodBuf(Inner);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Inner {
    Known(Method<'static>),
    Other(Box<str>),
}

impl MethodBuf {
    /// The method, borrowed.
    pub fn as_method(&self) -> Method<'_> {
        match &self.0 {
            Inner::Known(m) => *m,
            Inner::Other(s) => Method::Other(s),
        }
    }

    /// The method as written on the wire.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Inner::Known(m) => m.as_str(),
            Inner::Other(s) => s,
        }
    }
}

impl From<Method<'_>> for MethodBuf {
    fn from(m: Method<'_>) -> Self {
        m.to_buf()
    }
}

impl fmt::Display for MethodBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let cases: &[(&[u8], Option<Method<'_>>)] = &[
            (b"INVITE", Some(Method::Invite)),
            (b"ACK", Some(Method::Ack)),
            (b"BYE", Some(Method::Bye)),
            (b"CANCEL", Some(Method::Cancel)),
            (b"OPTIONS", Some(Method::Options)),
            (b"REGISTER", Some(Method::Register)),
            (b"PRACK", Some(Method::Prack)),
            (b"SUBSCRIBE", Some(Method::Subscribe)),
            (b"NOTIFY", Some(Method::Notify)),
            (b"PUBLISH", Some(Method::Publish)),
            (b"INFO", Some(Method::Info)),
            (b"REFER", Some(Method::Refer)),
            (b"MESSAGE", Some(Method::Message)),
            (b"UPDATE", Some(Method::Update)),
            (b"invite", Some(Method::Other("invite"))),
            (b"NEWMETHOD", Some(Method::Other("NEWMETHOD"))),
            (b"", None),
            (b"IN VITE", None),
            (b"INV\xc3\xa9", None),
        ];
        for (s, want) in cases {
            assert_eq!(Method::parse(s), *want, "{:?}", String::from_utf8_lossy(s));
            if let Some(m) = want {
                assert_eq!(m.as_str().as_bytes(), *s);
                assert_eq!(m.to_buf().as_method(), *m);
                assert_eq!(m.to_buf().to_string(), m.to_string());
            }
        }
    }

    #[test]
    fn buf_normalizes_known_names() {
        assert_eq!(Method::Other("INVITE").to_buf(), Method::Invite.to_buf());
        assert_ne!(Method::Other("FOO").to_buf(), Method::Invite.to_buf());
        assert_eq!(MethodBuf::from(Method::Other("FOO")).as_str(), "FOO");
    }
}
