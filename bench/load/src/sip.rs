//! A minimal SIP scanner for the load generator: the start line, the headers it needs
//! (`Via`, `From`, `To`, `Call-ID`, `CSeq`, `Contact`, `Record-Route`, `Content-Length`, in
//! long or compact form) and stream framing by `Content-Length`.
//!
//! It never allocates and never copies: everything it returns borrows the input. It is not a
//! validating parser (the project's `sipsctp-sip` is); it reads just enough to match a
//! response to its call and to answer a request, and refuses input it cannot read that far
//! with a [`ParseError`]. No indexing on peer-controlled data.

use thiserror::Error;

/// Why a message could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ParseError {
    /// No blank line ends the head.
    #[error("the head has no end (no blank line)")]
    Truncated,
    /// The start line is neither `METHOD uri SIP/2.0` nor `SIP/2.0 code reason`.
    #[error("malformed start line")]
    StartLine,
    /// A header line has no colon.
    #[error("malformed header line")]
    HeaderLine,
    /// A needed header is missing.
    #[error("missing {0} header")]
    Missing(&'static str),
    /// A needed header cannot be read.
    #[error("malformed {0} header")]
    Invalid(&'static str),
    /// The head plus `Content-Length` is larger than the limit.
    #[error("message larger than {0} bytes")]
    TooLarge(usize),
}

/// The methods the load generator tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// INVITE
    Invite,
    /// ACK
    Ack,
    /// BYE
    Bye,
    /// OPTIONS
    Options,
    /// CANCEL
    Cancel,
    /// Anything else.
    Other,
}

impl Method {
    /// Reads a method token.
    pub fn from_bytes(b: &[u8]) -> Self {
        match b {
            b"INVITE" => Self::Invite,
            b"ACK" => Self::Ack,
            b"BYE" => Self::Bye,
            b"OPTIONS" => Self::Options,
            b"CANCEL" => Self::Cancel,
            _ => Self::Other,
        }
    }

    /// The method's name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Invite => "INVITE",
            Self::Ack => "ACK",
            Self::Bye => "BYE",
            Self::Options => "OPTIONS",
            Self::Cancel => "CANCEL",
            Self::Other => "OTHER",
        }
    }
}

/// The headers the load generator reads; every other one is [`Hdr::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hdr {
    /// `Via` / `v`
    Via,
    /// `From` / `f`
    From,
    /// `To` / `t`
    To,
    /// `Call-ID` / `i`
    CallId,
    /// `CSeq`
    CSeq,
    /// `Contact` / `m`
    Contact,
    /// `Record-Route`
    RecordRoute,
    /// `Content-Length` / `l`
    ContentLength,
    /// Anything else.
    Other,
}

impl Hdr {
    fn from_name(name: &[u8]) -> Self {
        match name.len() {
            1 => match name.first().map(u8::to_ascii_lowercase) {
                Some(b'v') => Self::Via,
                Some(b'f') => Self::From,
                Some(b't') => Self::To,
                Some(b'i') => Self::CallId,
                Some(b'm') => Self::Contact,
                Some(b'l') => Self::ContentLength,
                _ => Self::Other,
            },
            2 if name.eq_ignore_ascii_case(b"To") => Self::To,
            3 if name.eq_ignore_ascii_case(b"Via") => Self::Via,
            4 if name.eq_ignore_ascii_case(b"From") => Self::From,
            4 if name.eq_ignore_ascii_case(b"CSeq") => Self::CSeq,
            7 if name.eq_ignore_ascii_case(b"Call-ID") => Self::CallId,
            7 if name.eq_ignore_ascii_case(b"Contact") => Self::Contact,
            12 if name.eq_ignore_ascii_case(b"Record-Route") => Self::RecordRoute,
            14 if name.eq_ignore_ascii_case(b"Content-Length") => Self::ContentLength,
            _ => Self::Other,
        }
    }
}

/// One header: which one, the whole line (folded continuation lines included, without the
/// final line break) and its value (trimmed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// Which header.
    pub name: Hdr,
    /// The whole line, without its line break.
    pub line: &'a [u8],
    /// The value after the colon, trimmed of white space.
    pub value: &'a [u8],
}

/// The start line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start<'a> {
    /// A request.
    Request {
        /// Its method.
        method: Method,
        /// The method token as received.
        method_token: &'a [u8],
    },
    /// A response.
    Response {
        /// Its status code.
        status: u16,
    },
}

/// A scanned message head: the start line and where the headers are.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    /// The start line.
    pub start: Start<'a>,
    /// The header lines (start line excluded, blank line excluded).
    headers: &'a [u8],
    /// Bytes from the start of the input to the end of the blank line.
    pub head_len: usize,
}

const fn is_lws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// Trims white space (SP, HTAB, and the CR LF of folded lines) on both ends.
pub fn trim(mut b: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = b {
        if is_lws(*first) {
            b = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = b {
        if is_lws(*last) {
            b = rest;
        } else {
            break;
        }
    }
    b
}

/// Splits `b` at the first `needle`: (before, after).
pub fn split_once(b: &[u8], needle: u8) -> Option<(&[u8], &[u8])> {
    let i = b.iter().position(|&c| c == needle)?;
    Some((b.get(..i)?, b.get(i + 1..)?))
}

/// Splits off one line: (line without CR LF or LF, rest). `None` when no LF is left.
fn take_line(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let (line, rest) = split_once(b, b'\n')?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Some((line, rest))
}

/// Skips CR LF keep-alives before a message; returns how many bytes they take.
pub fn leading_crlf(buf: &[u8]) -> usize {
    buf.iter()
        .take_while(|&&c| c == b'\r' || c == b'\n')
        .count()
}

fn parse_u32(b: &[u8]) -> Option<u32> {
    if b.is_empty() || b.len() > 9 {
        return None;
    }
    b.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

impl<'a> Head<'a> {
    /// Scans the start line and finds the end of the head. `buf` must start at the message
    /// (no leading CRLF).
    ///
    /// # Errors
    ///
    /// [`ParseError::Truncated`] when there is no blank line yet, [`ParseError::StartLine`].
    pub fn parse(buf: &'a [u8]) -> Result<Self, ParseError> {
        let (line, mut rest) = take_line(buf).ok_or(ParseError::Truncated)?;
        let start = parse_start(line)?;
        let headers_at = buf.len() - rest.len();
        loop {
            let before = rest.len();
            let (l, r) = take_line(rest).ok_or(ParseError::Truncated)?;
            if l.is_empty() {
                let head_len = buf.len() - r.len();
                let headers_end = buf.len() - before;
                let headers = buf.get(headers_at..headers_end).unwrap_or_default();
                return Ok(Self {
                    start,
                    headers,
                    head_len,
                });
            }
            rest = r;
        }
    }

    /// The headers in order.
    pub fn headers(&self) -> Headers<'a> {
        Headers { rest: self.headers }
    }

    /// The first header named `name`.
    pub fn first(&self, name: Hdr) -> Result<Option<Header<'a>>, ParseError> {
        for h in self.headers() {
            let h = h?;
            if h.name == name {
                return Ok(Some(h));
            }
        }
        Ok(None)
    }

    /// The value of `Content-Length` (`None` when absent).
    ///
    /// # Errors
    ///
    /// [`ParseError::Invalid`] when it is not a number.
    pub fn content_length(&self) -> Result<Option<usize>, ParseError> {
        match self.first(Hdr::ContentLength)? {
            None => Ok(None),
            Some(h) => parse_u32(h.value)
                .map(|n| Some(n as usize))
                .ok_or(ParseError::Invalid("Content-Length")),
        }
    }
}

fn parse_start(line: &[u8]) -> Result<Start<'_>, ParseError> {
    if let Some(rest) = line.strip_prefix(b"SIP/2.0 ") {
        let code = rest.get(..3).ok_or(ParseError::StartLine)?;
        if rest.get(3).is_some_and(|&c| c != b' ') {
            return Err(ParseError::StartLine);
        }
        let status = parse_u32(code)
            .and_then(|s| u16::try_from(s).ok())
            .filter(|s| (100..=699).contains(s))
            .ok_or(ParseError::StartLine)?;
        return Ok(Start::Response { status });
    }
    let (method_token, rest) = split_once(line, b' ').ok_or(ParseError::StartLine)?;
    let (uri, version) = split_once(rest, b' ').ok_or(ParseError::StartLine)?;
    if method_token.is_empty() || uri.is_empty() || version != b"SIP/2.0" {
        return Err(ParseError::StartLine);
    }
    Ok(Start::Request {
        method: Method::from_bytes(method_token),
        method_token,
    })
}

/// Iterator over header lines, joining folded continuation lines.
#[derive(Debug, Clone)]
pub struct Headers<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Headers<'a> {
    type Item = Result<Header<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        let all = self.rest;
        if all.is_empty() {
            return None;
        }
        // The line ends at the first LF not followed by SP or HTAB (folding).
        let mut end = 0;
        let mut next = all.len();
        let mut i = 0;
        while let Some(off) = all
            .get(i..)
            .and_then(|r| r.iter().position(|&c| c == b'\n'))
        {
            let lf = i + off;
            let continued = matches!(all.get(lf + 1), Some(b' ' | b'\t'));
            if !continued {
                end = if lf > 0 && all.get(lf - 1) == Some(&b'\r') {
                    lf - 1
                } else {
                    lf
                };
                next = lf + 1;
                break;
            }
            i = lf + 1;
        }
        if next == all.len() && end == 0 {
            // No line break at all: the last line of a head passed without its CRLF.
            end = all.len();
        }
        let line = all.get(..end).unwrap_or_default();
        self.rest = all.get(next..).unwrap_or_default();
        let Some((name, value)) = split_once(line, b':') else {
            self.rest = &[];
            return Some(Err(ParseError::HeaderLine));
        };
        Some(Ok(Header {
            name: Hdr::from_name(trim(name)),
            line,
            value: trim(value),
        }))
    }
}

/// Where the first message in a stream buffer ends (leading CRLFs included), `Ok(None)`
/// when more bytes are needed. A message without `Content-Length` has no body.
///
/// # Errors
///
/// A head that cannot be scanned or a length above `max`: the stream cannot be
/// resynchronised.
pub fn frame(buf: &[u8], max: usize) -> Result<Option<usize>, ParseError> {
    let skip = leading_crlf(buf);
    let msg = buf.get(skip..).unwrap_or_default();
    if msg.is_empty() {
        return Ok(None);
    }
    let head = match Head::parse(msg) {
        Ok(h) => h,
        Err(ParseError::Truncated) if msg.len() <= max => return Ok(None),
        Err(ParseError::Truncated) => return Err(ParseError::TooLarge(max)),
        Err(e) => return Err(e),
    };
    let total = head.head_len + head.content_length()?.unwrap_or(0);
    if total > max {
        return Err(ParseError::TooLarge(max));
    }
    Ok((msg.len() >= total).then_some(skip + total))
}

/// The value of parameter `name` in a header value (`;name=value`), `Some(b"")` for a
/// parameter without value. Parameters inside `<...>` (URI parameters) are skipped.
pub fn param<'a>(value: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    // Header parameters follow the closing '>' of a name-addr, or the URI of an addr-spec.
    let params = match value.iter().rposition(|&c| c == b'>') {
        Some(i) => value.get(i + 1..)?,
        None => value,
    };
    params.split(|&c| c == b';').skip(1).find_map(|p| {
        let (k, v) = match split_once(p, b'=') {
            Some((k, v)) => (trim(k), trim(v)),
            None => (trim(p), &b""[..]),
        };
        k.eq_ignore_ascii_case(name).then_some(v)
    })
}

/// The URI of a name-addr or addr-spec header value (`"x" <sip:a@b>;tag=1` gives
/// `sip:a@b`; `sip:a@b;tag=1` gives `sip:a@b`).
pub fn uri_of(value: &[u8]) -> Option<&[u8]> {
    if let Some((_, rest)) = split_once(value, b'<') {
        let (uri, _) = split_once(rest, b'>')?;
        return Some(trim(uri));
    }
    let end = value.iter().position(|&c| c == b';').unwrap_or(value.len());
    let uri = trim(value.get(..end)?);
    (!uri.is_empty()).then_some(uri)
}

/// `CSeq: 314 INVITE` read as (314, INVITE).
pub fn parse_cseq(value: &[u8]) -> Option<(u32, Method)> {
    let (num, method) = split_once(value, b' ')?;
    Some((parse_u32(trim(num))?, Method::from_bytes(trim(method))))
}

/// Splits a comma-separated header value into its entries, ignoring commas inside quotes
/// and `<...>` (for `Record-Route`, `Via`, `Contact`).
pub fn split_list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(value);
    std::iter::from_fn(move || {
        let v = rest?;
        let (mut quoted, mut angle) = (false, false);
        let mut cut = None;
        let mut escaped = false;
        for (i, &c) in v.iter().enumerate() {
            if escaped {
                escaped = false;
                continue;
            }
            match c {
                b'\\' if quoted => escaped = true,
                b'"' if !angle => quoted = !quoted,
                b'<' if !quoted => angle = true,
                b'>' if !quoted => angle = false,
                b',' if !quoted && !angle => {
                    cut = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let item = match cut {
            Some(i) => {
                rest = v.get(i + 1..);
                v.get(..i).unwrap_or_default()
            }
            None => {
                rest = None;
                v
            }
        };
        Some(trim(item))
    })
    .filter(|s| !s.is_empty())
}

/// A response, read as far as the UAC needs.
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    /// Status code.
    pub status: u16,
    /// `Call-ID` value.
    pub call_id: &'a [u8],
    /// `CSeq` number.
    pub cseq: u32,
    /// `CSeq` method.
    pub method: Method,
    /// `To` value (with the tag the UAS added).
    pub to: &'a [u8],
    /// The head, to read `Contact` and `Record-Route` again for a dialog.
    pub head: Head<'a>,
}

impl<'a> Response<'a> {
    /// Reads a response (one whole datagram / SCTP message / framed stream message).
    ///
    /// # Errors
    ///
    /// A head that cannot be scanned, a request instead of a response, a missing or
    /// malformed `Call-ID`, `CSeq` or `To`.
    pub fn parse(buf: &'a [u8]) -> Result<Self, ParseError> {
        let buf = buf.get(leading_crlf(buf)..).unwrap_or_default();
        let head = Head::parse(buf)?;
        let Start::Response { status } = head.start else {
            return Err(ParseError::StartLine);
        };
        let (mut call_id, mut cseq, mut to) = (None, None, None);
        for h in head.headers() {
            let h = h?;
            match h.name {
                Hdr::CallId => call_id = Some(h.value),
                Hdr::CSeq => cseq = Some(parse_cseq(h.value).ok_or(ParseError::Invalid("CSeq"))?),
                Hdr::To => to = Some(h.value),
                _ => {}
            }
        }
        let call_id = call_id
            .filter(|c| !c.is_empty())
            .ok_or(ParseError::Missing("Call-ID"))?;
        let (cseq, method) = cseq.ok_or(ParseError::Missing("CSeq"))?;
        let to = to.ok_or(ParseError::Missing("To"))?;
        Ok(Self {
            status,
            call_id,
            cseq,
            method,
            to,
            head,
        })
    }

    /// The first `Contact` URI (the remote target of a dialog).
    pub fn contact_uri(&self) -> Option<&'a [u8]> {
        let h = self.head.first(Hdr::Contact).ok()??;
        split_list(h.value).next().and_then(uri_of)
    }

    /// The `Record-Route` entries in the order received.
    pub fn record_routes(&self) -> impl Iterator<Item = &'a [u8]> {
        self.head
            .headers()
            .map_while(Result::ok)
            .filter(|h| h.name == Hdr::RecordRoute)
            .flat_map(|h| split_list(h.value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESP: &[u8] = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\n\
Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
Record-Route: <sip:p3.example.com;lr>\r\n\
f: <sip:a@x>;tag=1\r\n\
t: \"B, b\" <sip:b@y;user=phone>;tag=abc\r\n\
i: 1-2-3@10.0.0.1\r\n\
CSeq: 1  INVITE\r\n\
m: <sip:uas@10.0.0.2:5080;transport=tcp>\r\n\
l: 3\r\n\r\nabc";

    #[test]
    fn reads_a_response() {
        let r = Response::parse(RESP).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.call_id, b"1-2-3@10.0.0.1");
        assert_eq!((r.cseq, r.method), (1, Method::Invite));
        assert_eq!(r.to, &b"\"B, b\" <sip:b@y;user=phone>;tag=abc"[..]);
        assert_eq!(param(r.to, b"tag"), Some(&b"abc"[..]));
        assert_eq!(param(r.to, b"user"), None);
        assert_eq!(
            r.contact_uri(),
            Some(&b"sip:uas@10.0.0.2:5080;transport=tcp"[..])
        );
        let rr: Vec<_> = r.record_routes().collect();
        assert_eq!(
            rr,
            [
                &b"<sip:p1.example.com;lr>"[..],
                b"<sip:p2.example.com;lr>",
                b"<sip:p3.example.com;lr>"
            ]
        );
        assert_eq!(r.head.content_length(), Ok(Some(3)));
    }

    #[test]
    fn folded_headers_and_bare_lf() {
        let m = b"SIP/2.0 180 Ringing\nCall-ID: abc\nCSeq:\n 7 BYE\nTo: <sip:b@y>\n\n";
        let r = Response::parse(m).unwrap();
        assert_eq!((r.status, r.cseq, r.method), (180, 7, Method::Bye));
        assert_eq!(r.call_id, b"abc");
    }

    #[test]
    fn refuses_what_it_cannot_match() {
        assert_eq!(
            Response::parse(b"SIP/2.0 200 OK\r\n").unwrap_err(),
            ParseError::Truncated
        );
        assert_eq!(
            Response::parse(b"SIP/2.0 2000 OK\r\n\r\n").unwrap_err(),
            ParseError::StartLine
        );
        assert_eq!(
            Response::parse(b"SIP/2.0 099 X\r\n\r\n").unwrap_err(),
            ParseError::StartLine
        );
        assert_eq!(
            Response::parse(b"INVITE sip:a SIP/2.0\r\n\r\n").unwrap_err(),
            ParseError::StartLine
        );
        assert_eq!(
            Response::parse(b"SIP/2.0 200 OK\r\nCSeq: 1 BYE\r\nTo: x\r\n\r\n").unwrap_err(),
            ParseError::Missing("Call-ID")
        );
        assert_eq!(
            Response::parse(b"SIP/2.0 200 OK\r\ni: a\r\nCSeq: x BYE\r\nTo: x\r\n\r\n").unwrap_err(),
            ParseError::Invalid("CSeq")
        );
        assert_eq!(
            Response::parse(b"SIP/2.0 200 OK\r\ngarbage\r\n\r\n").unwrap_err(),
            ParseError::HeaderLine
        );
        assert!(Response::parse(b"").is_err());
        assert!(Response::parse(b"\xff\xfe\r\n\r\n").is_err());
    }

    #[test]
    fn request_start_line() {
        let h = Head::parse(b"OPTIONS sip:x SIP/2.0\r\n\r\n").unwrap();
        assert!(matches!(
            h.start,
            Start::Request {
                method: Method::Options,
                ..
            }
        ));
        assert_eq!(
            Head::parse(b"OPTIONS sip:x SIP/3.0\r\n\r\n").unwrap_err(),
            ParseError::StartLine
        );
    }

    #[test]
    fn frames_a_stream() {
        let one = b"SIP/2.0 200 OK\r\nl: 3\r\n\r\nabc";
        let mut s = b"\r\n\r\n".to_vec();
        s.extend_from_slice(one);
        s.extend_from_slice(b"SIP/2.0 100 Trying\r\nContent-Length: 0\r\n\r\n");
        let n = frame(&s, 65535).unwrap().unwrap();
        assert_eq!(n, 4 + one.len());
        let rest = &s[n..];
        assert_eq!(frame(rest, 65535).unwrap(), Some(rest.len()));
        for cut in 0..rest.len() {
            assert_eq!(frame(&rest[..cut], 65535).unwrap(), None, "cut at {cut}");
        }
        assert_eq!(frame(b"\r\n", 100).unwrap(), None);
        assert_eq!(frame(one, 10), Err(ParseError::TooLarge(10)));
        assert_eq!(frame(&[b'a'; 200], 100), Err(ParseError::TooLarge(100)));
        assert_eq!(
            frame(b"SIP/2.0 200 OK\r\nl: x\r\n\r\n", 100),
            Err(ParseError::Invalid("Content-Length"))
        );
        // A body shorter than announced waits for more.
        assert_eq!(
            frame(b"SIP/2.0 200 OK\r\nl: 5\r\n\r\nab", 100).unwrap(),
            None
        );
    }

    #[test]
    fn lists_and_uris() {
        let v: Vec<_> = split_list(b" <sip:a,b@x>, \"c,\\\"d\" <sip:e>;x=\"1,2\" ,sip:f").collect();
        assert_eq!(
            v,
            [
                &b"<sip:a,b@x>"[..],
                b"\"c,\\\"d\" <sip:e>;x=\"1,2\"",
                b"sip:f"
            ]
        );
        assert_eq!(uri_of(b"sip:a@b;tag=1"), Some(&b"sip:a@b"[..]));
        assert_eq!(uri_of(b"x <sip:a@b;lr>"), Some(&b"sip:a@b;lr"[..]));
        assert_eq!(uri_of(b"x <sip:a@b"), None);
        assert_eq!(parse_cseq(b"12 ACK"), Some((12, Method::Ack)));
        assert_eq!(parse_cseq(b"12"), None);
        assert_eq!(param(b"<sip:a>;tag", b"tag"), Some(&b""[..]));
    }
}
