//! A parsed SIP message ([`Message`]): the start line, the header fields as zero-copy views,
//! the body, and typed accessors for the headers the relay reads.
//!
//! Parsing checks the framing (start line, header lines, CRLFs, limits, `Content-Length`);
//! header values are parsed only when an accessor asks, and each accessor reports its own
//! error with the offset of the bad value. The only allocation is the `Vec` of header views.
//! No I/O here, and no knowledge of transports beyond the `Content-Length` rules.

use crate::{
    addr::{Contact, NameAddr},
    cseq::CSeq,
    cursor::{parse_u64, trim_lws},
    error::{Field, ParseError, ParseErrorKind},
    head::{self, Stop},
    header::{Header, HeaderName},
    limits::Limits,
    method::Method,
    split::{Value, Values},
    start_line::{RequestLine, StartLine, StatusLine},
    via::Via,
};

/// A SIP request or response, borrowing the buffer it was parsed from.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    buf: &'a [u8],
    start: StartLine<'a>,
    headers: Vec<Header<'a>>,
    start_offset: usize,
    headers_start: usize,
    body_start: usize,
    content_length: Option<usize>,
}

/// How the body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyRule {
    /// Datagram or SCTP message: the body is the rest of the buffer, and `Content-Length`,
    /// when present, must equal its length.
    Exact,
    /// Head only: the body is the rest of the buffer, whatever `Content-Length` says.
    Lenient,
}

/// Parses a `Content-Length` value.
pub(crate) fn content_length_value(h: &Header<'_>) -> Result<usize, ParseError> {
    parse_u64(h.value)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| ParseError::invalid(Field::ContentLength, h.value_offset))
}

impl<'a> Message<'a> {
    /// Parses a whole message received as one datagram or one SCTP message, with the default
    /// [`Limits`].
    ///
    /// # Errors
    ///
    /// See [`Message::parse_with`].
    pub fn parse(buf: &'a [u8]) -> Result<Self, ParseError> {
        Self::parse_with(buf, &Limits::DEFAULT)
    }

    /// Parses a whole message received as one datagram or one SCTP message. Leading CRLFs are
    /// skipped. The body is everything after the blank line; `Content-Length`, when present,
    /// must equal its length exactly (on a stream, cut the message with
    /// [`frame`](crate::frame) first).
    ///
    /// # Errors
    ///
    /// [`ParseErrorKind::TooLarge`], [`ParseErrorKind::Empty`],
    /// [`ParseErrorKind::Truncated`] (no blank line), line, header-count and character
    /// errors from the head, an invalid or duplicate `Content-Length`, or
    /// [`ParseErrorKind::ContentLengthMismatch`].
    pub fn parse_with(buf: &'a [u8], limits: &Limits) -> Result<Self, ParseError> {
        Self::parse_rule(buf, limits, BodyRule::Exact)
    }

    /// Parses the head of a message and takes the rest of the buffer as the body without
    /// checking `Content-Length` (an invalid or duplicate one is ignored too). For building
    /// an error response to a message [`Message::parse_with`] rejected.
    ///
    /// # Errors
    ///
    /// As [`Message::parse_with`], minus the `Content-Length` errors.
    pub fn parse_head(buf: &'a [u8], limits: &Limits) -> Result<Self, ParseError> {
        Self::parse_rule(buf, limits, BodyRule::Lenient)
    }

    fn parse_rule(buf: &'a [u8], limits: &Limits, rule: BodyRule) -> Result<Self, ParseError> {
        if buf.len() > limits.max_message_size {
            return Err(ParseError::new(
                ParseErrorKind::TooLarge {
                    limit: limits.max_message_size,
                },
                limits.max_message_size,
            ));
        }
        let mut headers = Vec::with_capacity(16);
        let mut content_length: Option<Result<usize, ParseError>> = None;
        let head = head::scan(buf, limits, |h| {
            if h.name == HeaderName::ContentLength {
                content_length = Some(match content_length {
                    None => content_length_value(&h),
                    Some(_) => Err(ParseError::duplicate(Field::ContentLength, h.value_offset)),
                });
            }
            headers.push(h);
            Ok(())
        });
        let head = match head {
            Ok(head) => head,
            Err(Stop::Error(e)) => return Err(e),
            Err(Stop::Incomplete) if head::leading_crlf(buf) >= buf.len() => {
                return Err(ParseError::new(ParseErrorKind::Empty, buf.len()));
            }
            Err(Stop::Incomplete) => {
                return Err(ParseError::new(ParseErrorKind::Truncated, buf.len()));
            }
        };
        let actual = buf.len().saturating_sub(head.body_start);
        let content_length = match (rule, content_length) {
            (_, None) => None,
            (BodyRule::Lenient, Some(cl)) => cl.ok(),
            (BodyRule::Exact, Some(cl)) => {
                let declared = cl?;
                if declared != actual {
                    return Err(ParseError::new(
                        ParseErrorKind::ContentLengthMismatch { declared, actual },
                        head.body_start,
                    ));
                }
                Some(declared)
            }
        };
        Ok(Self {
            buf,
            start: head.start,
            headers,
            start_offset: head.start_offset,
            headers_start: head.headers_start,
            body_start: head.body_start,
            content_length,
        })
    }

    /// The bytes the message was parsed from (leading CRLFs included).
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// The start line.
    pub const fn start_line(&self) -> &StartLine<'a> {
        &self.start
    }

    /// The request line, for a request.
    pub const fn request_line(&self) -> Option<&RequestLine<'a>> {
        match &self.start {
            StartLine::Request(r) => Some(r),
            StartLine::Response(_) => None,
        }
    }

    /// The status line, for a response.
    pub const fn status_line(&self) -> Option<&StatusLine<'a>> {
        match &self.start {
            StartLine::Response(s) => Some(s),
            StartLine::Request(_) => None,
        }
    }

    /// Whether this is a request.
    pub const fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request(_))
    }

    /// The method, for a request.
    pub fn method(&self) -> Option<Method<'a>> {
        self.request_line().map(|r| r.method)
    }

    /// The Request-URI as written, for a request.
    pub fn request_uri(&self) -> Option<&'a str> {
        self.request_line().map(|r| r.uri)
    }

    /// The status code, for a response.
    pub fn status(&self) -> Option<u16> {
        self.status_line().map(|s| s.code)
    }

    /// All header fields, in order.
    pub fn headers(&self) -> &[Header<'a>] {
        &self.headers
    }

    /// The header fields called `name`, in order.
    pub fn headers_named(&self, name: HeaderName<'a>) -> impl Iterator<Item = &Header<'a>> {
        self.headers.iter().filter(move |h| h.name == name)
    }

    /// The first header field called `name` (full or compact, any case), for names without a
    /// [`HeaderName`] variant.
    pub fn header(&self, name: &str) -> Option<&Header<'a>> {
        self.headers.iter().find(|h| h.name.is(name))
    }

    /// Offset of the first byte of the start line (after leading CRLFs).
    pub const fn start_offset(&self) -> usize {
        self.start_offset
    }

    /// Offset of the first header line (where a header can be inserted at the top).
    pub const fn headers_start(&self) -> usize {
        self.headers_start
    }

    /// Offset of the body.
    pub const fn body_offset(&self) -> usize {
        self.body_start
    }

    /// The body: everything after the blank line.
    pub fn body(&self) -> &'a [u8] {
        self.buf.get(self.body_start..).unwrap_or_default()
    }

    /// The `Content-Length` value, when present (and, for [`Message::parse_head`], valid).
    pub const fn content_length(&self) -> Option<usize> {
        self.content_length
    }

    /// The comma-separated values of every header called `name`, in order.
    pub(crate) fn values(
        &self,
        name: HeaderName<'a>,
        field: Field,
    ) -> impl Iterator<Item = Result<Value<'a>, ParseError>> + '_ {
        self.headers_named(name)
            .flat_map(move |h| Values::new(h.value, h.value_offset, field))
    }

    /// The single header called `name`: `Ok(None)` when absent, an error naming `field` when
    /// it appears twice.
    fn single(
        &self,
        name: HeaderName<'a>,
        field: Field,
    ) -> Result<Option<&Header<'a>>, ParseError> {
        let mut it = self.headers_named(name);
        let first = it.next();
        match it.next() {
            Some(dup) => Err(ParseError::duplicate(field, dup.value_offset)),
            None => Ok(first),
        }
    }

    fn required(&self, name: HeaderName<'a>, field: Field) -> Result<&Header<'a>, ParseError> {
        self.single(name, field)?
            .ok_or_else(|| ParseError::missing(field, self.body_start.saturating_sub(2)))
    }

    /// Every `Via` value, top first (several per header line are split on commas).
    pub fn vias(&self) -> impl Iterator<Item = Result<Via<'a>, ParseError>> + '_ {
        self.values(HeaderName::Via, Field::Via)
            .map(|v| v.and_then(|v| Via::parse(v.bytes, v.offset)))
    }

    /// The top `Via` value.
    ///
    /// # Errors
    ///
    /// [`ParseErrorKind::Missing`] when there is no `Via`, or the value's parse error.
    pub fn top_via(&self) -> Result<Via<'a>, ParseError> {
        self.vias()
            .next()
            .unwrap_or_else(|| Err(ParseError::missing(Field::Via, self.headers_start)))
    }

    /// `Call-ID`: one word, optionally `word@word`, without white space.
    ///
    /// # Errors
    ///
    /// Missing, duplicate, empty or containing white space or control characters.
    pub fn call_id(&self) -> Result<&'a str, ParseError> {
        let h = self.required(HeaderName::CallId, Field::CallId)?;
        let ok = !h.value.is_empty() && h.value.iter().all(|&b| b > b' ' && b < 0x7f);
        ok.then(|| core::str::from_utf8(h.value).ok())
            .flatten()
            .ok_or_else(|| ParseError::invalid(Field::CallId, h.value_offset))
    }

    /// `CSeq`.
    ///
    /// # Errors
    ///
    /// Missing, duplicate or invalid.
    pub fn cseq(&self) -> Result<CSeq<'a>, ParseError> {
        let h = self.required(HeaderName::CSeq, Field::CSeq)?;
        CSeq::parse(h.value, h.value_offset)
    }

    /// `From`.
    ///
    /// # Errors
    ///
    /// Missing, duplicate or invalid.
    pub fn from(&self) -> Result<NameAddr<'a>, ParseError> {
        let h = self.required(HeaderName::From, Field::From)?;
        NameAddr::parse(h.value, h.value_offset, Field::From)
    }

    /// `To`.
    ///
    /// # Errors
    ///
    /// Missing, duplicate or invalid.
    pub fn to(&self) -> Result<NameAddr<'a>, ParseError> {
        let h = self.required(HeaderName::To, Field::To)?;
        NameAddr::parse(h.value, h.value_offset, Field::To)
    }

    /// The `From` tag (`Ok(None)` for an RFC 2543 peer that sent none).
    ///
    /// # Errors
    ///
    /// As [`Message::from`].
    pub fn from_tag(&self) -> Result<Option<&'a str>, ParseError> {
        self.from().map(|n| n.tag)
    }

    /// The `To` tag (`Ok(None)` outside a dialog).
    ///
    /// # Errors
    ///
    /// As [`Message::to`].
    pub fn to_tag(&self) -> Result<Option<&'a str>, ParseError> {
        self.to().map(|n| n.tag)
    }

    /// `Max-Forwards`, `Ok(None)` when absent.
    ///
    /// # Errors
    ///
    /// Duplicate, or not a decimal number that fits in a `u32`.
    pub fn max_forwards(&self) -> Result<Option<u32>, ParseError> {
        let Some(h) = self.single(HeaderName::MaxForwards, Field::MaxForwards)? else {
            return Ok(None);
        };
        parse_u64(trim_lws(h.value))
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| ParseError::invalid(Field::MaxForwards, h.value_offset))
    }

    /// Every `Route` value, in order.
    pub fn routes(&self) -> impl Iterator<Item = Result<NameAddr<'a>, ParseError>> + '_ {
        self.values(HeaderName::Route, Field::Route)
            .map(|v| v.and_then(|v| NameAddr::parse(v.bytes, v.offset, Field::Route)))
    }

    /// Every `Record-Route` value, in order.
    pub fn record_routes(&self) -> impl Iterator<Item = Result<NameAddr<'a>, ParseError>> + '_ {
        self.values(HeaderName::RecordRoute, Field::RecordRoute)
            .map(|v| v.and_then(|v| NameAddr::parse(v.bytes, v.offset, Field::RecordRoute)))
    }

    /// Every `Contact` value, in order (none is fine: `Contact` is optional for the relay).
    pub fn contacts(&self) -> impl Iterator<Item = Result<Contact<'a>, ParseError>> + '_ {
        self.values(HeaderName::Contact, Field::Contact)
            .map(|v| v.and_then(|v| Contact::parse(v.bytes, v.offset)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::via::Rport;
    use std::net::IpAddr;

    const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

    fn kind(buf: &[u8]) -> (ParseErrorKind, usize) {
        let e = Message::parse(buf).expect_err(&String::from_utf8_lossy(buf));
        (e.kind, e.offset)
    }

    #[test]
    fn invite() {
        let m = Message::parse(INVITE).unwrap();
        assert!(m.is_request());
        assert_eq!(m.method(), Some(Method::Invite));
        assert_eq!(m.request_uri(), Some("sip:bob@biloxi.example.com"));
        assert_eq!(m.headers().len(), 9);
        let v = m.top_via().unwrap();
        assert_eq!(v.branch, Some("z9hG4bK776asdhds"));
        assert_eq!(v.rport, Some(Rport::Requested));
        assert_eq!(m.call_id(), Ok("a84b4c76e66710@pc33.atlanta.example.com"));
        let cseq = m.cseq().unwrap();
        assert_eq!((cseq.seq, cseq.method), (314_159, Method::Invite));
        assert_eq!(m.from_tag(), Ok(Some("1928301774")));
        assert_eq!(m.to_tag(), Ok(None));
        assert_eq!(m.max_forwards(), Ok(Some(70)));
        assert_eq!(m.content_length(), Some(4));
        assert_eq!(m.body(), b"v=0\n");
        assert_eq!(m.contacts().count(), 1);
        assert_eq!(m.routes().count(), 0);
        assert_eq!(
            m.header("content-type").map(|h| h.value),
            Some(&b"application/sdp"[..])
        );
        assert_eq!(m.status(), None);
        assert_eq!(m.as_bytes(), INVITE);
        assert_eq!(m.start_offset(), 0);
        assert_eq!(m.body_offset(), INVITE.len() - 4);
    }

    #[test]
    fn compact_forms_and_multi_value() {
        let raw = b"SIP/2.0 200 OK\r\n\
v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa;received=10.0.0.9, SIP/2.0/TCP [::1]:5070;branch=z9hG4bKb;rport=5071\r\n\
V: SIP/2.0/SCTP h.example;branch=z9hG4bKc\r\n\
i: cid@h\r\nf: <sip:a@h>;tag=1\r\nt: <sip:b@h>;tag=2\r\nCSeq: 2 BYE\r\n\
m: <sip:a@10.0.0.1>, \"x, y\" <sip:b@h>\r\nk: path\r\ns: hi\r\nc: text/plain\r\ne: gzip\r\n\
Record-Route: <sip:p1;lr>, <sip:p2;lr>\r\nRecord-Route: <sip:p3;lr>\r\nl: 0\r\n\r\n";
        let m = Message::parse(raw).unwrap();
        assert_eq!(m.status(), Some(200));
        let vias: Vec<_> = m.vias().map(Result::unwrap).collect();
        assert_eq!(vias.len(), 3);
        let hosts: Vec<_> = vias.iter().map(|v| (v.host.to_string(), v.port)).collect();
        assert_eq!(
            hosts,
            vec![
                ("10.0.0.1".into(), Some(5060)),
                ("[::1]".into(), Some(5070)),
                ("h.example".into(), None)
            ]
        );
        assert_eq!(vias[0].received, Some(IpAddr::from([10, 0, 0, 9])));
        assert_eq!(vias[1].rport, Some(Rport::Port(5071)));
        assert_eq!(m.call_id(), Ok("cid@h"));
        assert_eq!(m.to_tag(), Ok(Some("2")));
        assert_eq!(m.contacts().count(), 2);
        let rr: Vec<_> = m.record_routes().map(|r| r.unwrap().uri).collect();
        assert_eq!(rr, vec!["sip:p1;lr", "sip:p2;lr", "sip:p3;lr"]);
        for name in [
            HeaderName::Supported,
            HeaderName::Subject,
            HeaderName::ContentType,
            HeaderName::ContentEncoding,
        ] {
            assert_eq!(m.headers_named(name).count(), 1, "{name}");
        }
        assert_eq!(m.content_length(), Some(0));
        assert_eq!(m.max_forwards(), Ok(None));
    }

    #[test]
    fn folded_headers() {
        let raw = b"OPTIONS sip:h SIP/2.0\r\n\
Via: SIP/2.0/UDP\r\n 192.0.2.2\r\n\t;branch=z9hG4bKf,\r\n SIP/2.0/UDP 192.0.2.3;branch=z9hG4bKg\r\n\
To:\r\n <sip:h>\r\nFrom: <sip:a@h>\r\n  ;tag=ft\r\nCall-ID: c\r\nCSeq: 1\r\n OPTIONS\r\nContent-Length: 0\r\n\r\n";
        let m = Message::parse(raw).unwrap();
        let branches: Vec<_> = m.vias().map(|v| v.unwrap().branch.unwrap()).collect();
        assert_eq!(branches, vec!["z9hG4bKf", "z9hG4bKg"]);
        assert_eq!(m.from_tag(), Ok(Some("ft")));
        assert_eq!(m.to().unwrap().uri, "sip:h");
        assert_eq!(m.cseq().unwrap().method, Method::Options);
    }

    #[test]
    fn content_length_rules() {
        let base = "OPTIONS sip:h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n";
        let msg = |extra: &str, body: &str| format!("{base}{extra}\r\n{body}").into_bytes();
        // Absent: the body is the rest of the datagram.
        let m = msg("", "abc");
        assert_eq!(Message::parse(&m).unwrap().body(), b"abc");
        // Present and matching.
        let m = msg("l: 3\r\n", "abc");
        assert_eq!(Message::parse(&m).unwrap().content_length(), Some(3));
        // Mismatch both ways.
        let m = msg("Content-Length: 4\r\n", "abc");
        assert_eq!(
            kind(&m).0,
            ParseErrorKind::ContentLengthMismatch {
                declared: 4,
                actual: 3
            }
        );
        let m = msg("Content-Length: 2\r\n", "abc");
        assert_eq!(
            kind(&m).0,
            ParseErrorKind::ContentLengthMismatch {
                declared: 2,
                actual: 3
            }
        );
        // Duplicate (even when equal) and invalid.
        let m = msg("Content-Length: 3\r\nl: 3\r\n", "abc");
        assert_eq!(kind(&m).0, ParseErrorKind::Duplicate(Field::ContentLength));
        let m = msg("Content-Length: -3\r\n", "abc");
        assert_eq!(kind(&m).0, ParseErrorKind::Invalid(Field::ContentLength));
        let m = msg("Content-Length: 99999999999999999999\r\n", "");
        assert_eq!(kind(&m).0, ParseErrorKind::Invalid(Field::ContentLength));
        // parse_head ignores all of it.
        let m = msg("Content-Length: 3\r\nl: 9\r\n", "abcdef");
        let h = Message::parse_head(&m, &Limits::DEFAULT).unwrap();
        assert_eq!((h.body(), h.content_length()), (&b"abcdef"[..], None));
        let m = msg("Content-Length: 9\r\n", "abc");
        assert_eq!(
            Message::parse_head(&m, &Limits::DEFAULT)
                .unwrap()
                .content_length(),
            Some(9)
        );
    }

    #[test]
    fn framing_errors() {
        assert_eq!(kind(b""), (ParseErrorKind::Empty, 0));
        assert_eq!(kind(b"\r\n\r\n"), (ParseErrorKind::Empty, 4));
        // Truncated at every point before the blank line.
        let full = INVITE;
        let body_at = full.len() - 4;
        for n in 1..body_at - 1 {
            let k = Message::parse(&full[..n]).map(|_| ()).map_err(|e| e.kind);
            assert!(
                matches!(
                    k,
                    Err(ParseErrorKind::Truncated | ParseErrorKind::Invalid(_))
                ),
                "prefix {n}: {k:?}"
            );
        }
        // Truncated body.
        assert_eq!(
            kind(&full[..full.len() - 1]).0,
            ParseErrorKind::ContentLengthMismatch {
                declared: 4,
                actual: 3
            }
        );
        // Oversize.
        let big = vec![b'a'; 70_000];
        assert_eq!(
            kind(&big),
            (ParseErrorKind::TooLarge { limit: 65_535 }, 65_535)
        );
        // 200 headers.
        let mut many = String::from("OPTIONS sip:h SIP/2.0\r\n");
        for i in 0..200 {
            many.push_str(&format!("X-H{i}: {i}\r\n"));
        }
        many.push_str("\r\n");
        assert_eq!(
            kind(many.as_bytes()).0,
            ParseErrorKind::TooManyHeaders { limit: 100 }
        );
        let roomy = Limits {
            max_headers: 300,
            ..Limits::DEFAULT
        };
        assert_eq!(
            Message::parse_with(many.as_bytes(), &roomy)
                .unwrap()
                .headers()
                .len(),
            200
        );
        // Binary garbage.
        let garbage: Vec<u8> = (0..=255u8).cycle().take(600).collect();
        assert!(Message::parse(&garbage).is_err());
        assert_eq!(
            kind(b"\xff\xfe\xfd\r\n\r\n").0,
            ParseErrorKind::Invalid(Field::Method)
        );
    }

    #[test]
    fn accessor_errors() {
        let m = Message::parse(
            b"INVITE sip:h SIP/2.0\r\nCall-ID: a b\r\nCall-ID: c\r\nMax-Forwards: x\r\nCSeq: 1 INVITE\r\nCSeq: 2 INVITE\r\nFrom: <sip:a\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            m.top_via().unwrap_err().kind,
            ParseErrorKind::Missing(Field::Via)
        );
        assert_eq!(
            m.call_id().unwrap_err().kind,
            ParseErrorKind::Duplicate(Field::CallId)
        );
        assert_eq!(
            m.cseq().unwrap_err().kind,
            ParseErrorKind::Duplicate(Field::CSeq)
        );
        assert_eq!(
            m.max_forwards().unwrap_err().kind,
            ParseErrorKind::Invalid(Field::MaxForwards)
        );
        assert_eq!(
            m.from().unwrap_err().kind,
            ParseErrorKind::Invalid(Field::From)
        );
        assert_eq!(m.to().unwrap_err().kind, ParseErrorKind::Missing(Field::To));
        let m = Message::parse(b"BYE sip:h SIP/2.0\r\ni: a b\r\n\r\n").unwrap();
        let e = m.call_id().unwrap_err();
        assert_eq!(
            (e.kind, e.offset),
            (ParseErrorKind::Invalid(Field::CallId), 22)
        );
    }

    #[test]
    fn leading_crlf_is_skipped() {
        let mut raw = b"\r\n\r\n".to_vec();
        raw.extend_from_slice(INVITE);
        let m = Message::parse(&raw).unwrap();
        assert_eq!(m.start_offset(), 4);
        assert_eq!(m.body(), b"v=0\n");
    }
    /// The fuzz seed corpus: realistic messages, the RFC 4475 "wsinv" torture message among
    /// them, must parse (and the stream seed must frame into two messages).
    #[test]
    fn seed_corpus() {
        let seeds: [(&str, &[u8], &str); 10] = [
            (
                "invite_sdp",
                include_bytes!("../../../transport/sip/fuzz/seeds/parse/invite_sdp.sip"),
                "INVITE",
            ),
            (
                "ok_200",
                include_bytes!("../../../transport/sip/fuzz/seeds/parse/ok_200.sip"),
                "200",
            ),
            (
                "ack",
                include_bytes!("../../../transport/sip/fuzz/seeds/parse/ack.sip"),
                "ACK",
            ),
            (
                "bye",
                include_bytes!("../../../transport/sip/fuzz/seeds/parse/bye.sip"),
                "BYE",
            ),
            (
                "cancel",
                include_bytes!("../../../transport/sip/fuzz/seeds/parse/cancel.sip"),
                "CANCEL",
            ),
            (
                "options",
                include_bytes!("../../../transport/sip/fuzz/seeds/parse/options.sip"),
                "OPTIONS",
            ),
            (
                "register",
                include_bytes!("../../../transport/sip/fuzz/seeds/parse/register.sip"),
                "REGISTER",
            ),
            (
                "compact",
                include_bytes!("../../../transport/sip/fuzz/seeds/parse/compact.sip"),
                "MESSAGE",
            ),
            (
                "folded",
                include_bytes!("../../../transport/sip/fuzz/seeds/parse/folded.sip"),
                "INVITE",
            ),
            (
                "ipv6_via",
                include_bytes!("../../../transport/sip/fuzz/seeds/parse/ipv6_via.sip"),
                "OPTIONS",
            ),
        ];
        for (name, raw, first) in seeds {
            let m = Message::parse(raw).unwrap_or_else(|e| panic!("{name}: {e}"));
            let got = m
                .method()
                .map_or_else(|| m.status().unwrap_or(0).to_string(), |x| x.to_string());
            assert_eq!(got, first, "{name}");
            m.top_via().unwrap_or_else(|e| panic!("{name}: {e}"));
            m.call_id().unwrap_or_else(|e| panic!("{name}: {e}"));
            m.cseq().unwrap_or_else(|e| panic!("{name}: {e}"));
            m.from().unwrap_or_else(|e| panic!("{name}: {e}"));
            m.to().unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(m.vias().all(|v| v.is_ok()), "{name}");
            assert!(m.contacts().all(|v| v.is_ok()), "{name}");
            assert!(
                m.routes().chain(m.record_routes()).all(|v| v.is_ok()),
                "{name}"
            );
        }
        // RFC 4475 section 3.1.1.1 details.
        let m = Message::parse(include_bytes!(
            "../../../transport/sip/fuzz/seeds/parse/folded.sip"
        ))
        .unwrap();
        assert_eq!(m.to_tag(), Ok(Some("1918181833n")));
        assert_eq!(
            m.from().unwrap().display,
            Some(&br#""J Rosenberg \\\"""#[..])
        );
        assert_eq!(m.from_tag(), Ok(Some("98asjd8")));
        assert_eq!(m.max_forwards(), Ok(Some(68)));
        let cseq = m.cseq().unwrap();
        assert_eq!((cseq.seq, cseq.method), (9, Method::Invite));
        assert_eq!(m.top_via().unwrap().branch, Some("390skdjuw"));
        assert_eq!(
            m.header("NewFangledHeader").map(|h| h.value),
            Some(&b"newfangled value\r\n continued newfangled value"[..])
        );
        // Compact forms: the Via line with two values.
        let m = Message::parse(include_bytes!(
            "../../../transport/sip/fuzz/seeds/parse/compact.sip"
        ))
        .unwrap();
        assert_eq!(m.vias().count(), 2);
        assert_eq!(m.body(), b"hello");
        // The stream seed: CRLF keep-alives, then two messages.
        let stream: &[u8] =
            include_bytes!("../../../transport/sip/fuzz/seeds/parse/stream_two.sip");
        let n = crate::frame(stream, &Limits::DEFAULT).unwrap().unwrap();
        let (one, two) = stream.split_at(n);
        assert_eq!(Message::parse(one).unwrap().body(), b"{}");
        assert_eq!(crate::frame(two, &Limits::DEFAULT), Ok(Some(two.len())));
        assert_eq!(Message::parse(two).unwrap().status(), Some(100));
    }
}
