//! Parse errors: what was wrong ([`ParseErrorKind`]), in which field ([`Field`]), and at which
//! byte offset of the message.
//!
//! This module only names failures; it never decides what to do about them (the relay turns
//! them into a `400` or a counted drop).

use core::fmt;

/// A message, or one of its fields, could not be parsed.
///
/// `offset` is the byte offset in the buffer handed to the parser where the problem was found
/// (for a typed accessor such as [`Message::top_via`](crate::Message::top_via): the offset of
/// the offending value inside the whole message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at offset {offset}")]
pub struct ParseError {
    /// What was wrong.
    pub kind: ParseErrorKind,
    /// Byte offset in the message.
    pub offset: usize,
}

impl ParseError {
    /// A new error of `kind` at `offset`.
    pub const fn new(kind: ParseErrorKind, offset: usize) -> Self {
        Self { kind, offset }
    }

    /// `field` is malformed at `offset`.
    pub const fn invalid(field: Field, offset: usize) -> Self {
        Self::new(ParseErrorKind::Invalid(field), offset)
    }

    /// `field` is missing (noticed at `offset`).
    pub const fn missing(field: Field, offset: usize) -> Self {
        Self::new(ParseErrorKind::Missing(field), offset)
    }

    /// `field` appears twice where once is allowed, the second time at `offset`.
    pub const fn duplicate(field: Field, offset: usize) -> Self {
        Self::new(ParseErrorKind::Duplicate(field), offset)
    }

    /// The field the error is about, when it is about one.
    pub const fn field(&self) -> Option<Field> {
        match self.kind {
            ParseErrorKind::Invalid(f)
            | ParseErrorKind::Missing(f)
            | ParseErrorKind::Duplicate(f) => Some(f),
            ParseErrorKind::ContentLengthMismatch { .. } => Some(Field::ContentLength),
            _ => None,
        }
    }
}

/// What was wrong with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// The buffer holds nothing but (possibly) CRLF keep-alives.
    #[error("empty message")]
    Empty,
    /// The message is larger than [`Limits::max_message_size`](crate::Limits).
    #[error("message larger than the limit of {limit} bytes")]
    TooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The buffer ends before the blank line that closes the headers.
    #[error("message ends before the end of its headers")]
    Truncated,
    /// A line (a header with its continuation lines) is longer than
    /// [`Limits::max_line_length`](crate::Limits).
    #[error("line longer than the limit of {limit} bytes")]
    LineTooLong {
        /// The configured limit.
        limit: usize,
    },
    /// More headers than [`Limits::max_headers`](crate::Limits).
    #[error("more than {limit} headers")]
    TooManyHeaders {
        /// The configured limit.
        limit: usize,
    },
    /// A CR without LF, or an LF without CR, in the message head.
    #[error("line ending is not CRLF")]
    BareLineEnding,
    /// A control character (other than HTAB, CR, LF) in the message head.
    #[error("control character in the message head")]
    ControlCharacter,
    /// A field is present but does not follow the grammar.
    #[error("invalid {0}")]
    Invalid(Field),
    /// A required field is absent.
    #[error("missing {0}")]
    Missing(Field),
    /// A single-valued header appears more than once.
    #[error("duplicate {0}")]
    Duplicate(Field),
    /// The body length differs from `Content-Length` (datagram and SCTP messages).
    #[error("Content-Length says {declared} bytes but the body has {actual}")]
    ContentLengthMismatch {
        /// The `Content-Length` value.
        declared: usize,
        /// Bytes after the blank line.
        actual: usize,
    },
}

/// The part of a message an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Field {
    /// The request line or status line as a whole.
    StartLine,
    /// The request method.
    Method,
    /// The Request-URI.
    RequestUri,
    /// The `SIP/2.0` version token.
    Version,
    /// The three-digit status code.
    StatusCode,
    /// The reason phrase of a status line.
    ReasonPhrase,
    /// A header name.
    HeaderName,
    /// A header value in general.
    HeaderValue,
    /// A `Via` value.
    Via,
    /// The `SIP/2.0/UDP` part of a `Via`.
    SentProtocol,
    /// The `host[:port]` part of a `Via`.
    SentBy,
    /// A `Via` parameter (`branch`, `received`, `rport`, `maddr`, `ttl`).
    ViaParam,
    /// `Call-ID`.
    CallId,
    /// `CSeq`.
    CSeq,
    /// `From`.
    From,
    /// `To`.
    To,
    /// `Max-Forwards`.
    MaxForwards,
    /// `Content-Length`.
    ContentLength,
    /// `Contact`.
    Contact,
    /// `Route`.
    Route,
    /// `Record-Route`.
    RecordRoute,
    /// A URI.
    Uri,
    /// A host name or IP literal.
    Host,
    /// A port number.
    Port,
    /// A header parameter (`;name=value`).
    Param,
}

impl Field {
    /// The name used in messages (`"Via"`, `"Call-ID"`, `"status code"`).
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::StartLine => "start line",
            Self::Method => "method",
            Self::RequestUri => "Request-URI",
            Self::Version => "SIP version",
            Self::StatusCode => "status code",
            Self::ReasonPhrase => "reason phrase",
            Self::HeaderName => "header name",
            Self::HeaderValue => "header value",
            Self::Via => "Via",
            Self::SentProtocol => "Via sent-protocol",
            Self::SentBy => "Via sent-by",
            Self::ViaParam => "Via parameter",
            Self::CallId => "Call-ID",
            Self::CSeq => "CSeq",
            Self::From => "From",
            Self::To => "To",
            Self::MaxForwards => "Max-Forwards",
            Self::ContentLength => "Content-Length",
            Self::Contact => "Contact",
            Self::Route => "Route",
            Self::RecordRoute => "Record-Route",
            Self::Uri => "URI",
            Self::Host => "host",
            Self::Port => "port",
            Self::Param => "parameter",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant prints something readable (rustls' `smoke` test).
    #[test]
    fn smoke() {
        let kinds = [
            ParseErrorKind::Empty,
            ParseErrorKind::TooLarge { limit: 10 },
            ParseErrorKind::Truncated,
            ParseErrorKind::LineTooLong { limit: 5 },
            ParseErrorKind::TooManyHeaders { limit: 100 },
            ParseErrorKind::BareLineEnding,
            ParseErrorKind::ControlCharacter,
            ParseErrorKind::Invalid(Field::Via),
            ParseErrorKind::Missing(Field::CallId),
            ParseErrorKind::Duplicate(Field::ContentLength),
            ParseErrorKind::ContentLengthMismatch {
                declared: 3,
                actual: 2,
            },
        ];
        for kind in kinds {
            let s = ParseError::new(kind, 7).to_string();
            assert!(s.ends_with("at offset 7"), "{s}");
        }
        assert_eq!(
            ParseError::invalid(Field::CSeq, 3).to_string(),
            "invalid CSeq at offset 3"
        );
        assert_eq!(ParseError::missing(Field::To, 0).field(), Some(Field::To));
        assert_eq!(ParseError::new(ParseErrorKind::Empty, 0).field(), None);
    }
}
