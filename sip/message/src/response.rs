//! Responses the relay answers itself ([`build_response`]): `200` to an `OPTIONS` keep-alive,
//! `400`, `482`, `483`, `502`, `503`.
//!
//! Built from the request as RFC 3261 section 8.2.6.2 says: the `Via` lines (top one with
//! `received`/`rport` filled in), `From`, `To` (with a tag added when it has none and the
//! status is not 100), `Call-ID` and `CSeq` are copied byte for byte, then
//! `Content-Length: 0`. No body, no I/O; where to send it is the relay's business.

use std::net::IpAddr;

use crate::{
    cursor::is_token,
    edit::{EditError, Editor},
    header::HeaderName,
    message::Message,
};

/// What to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseSpec<'s> {
    /// Status code, 100 to 699.
    pub status: u16,
    /// Reason phrase (no control characters).
    pub reason: &'s str,
    /// Tag to add to `To` when the request's `To` has none (ignored for 100). It must be the
    /// same for retransmissions of the request, so derive it from the request.
    pub to_tag: Option<&'s str>,
    /// `received=` to set on the top `Via` (the request's source IP).
    pub received: Option<IpAddr>,
    /// `rport=` to set on the top `Via` (the request's source port).
    pub rport: Option<u16>,
    /// `Retry-After:` seconds (RFC 3261 20.33; a 503 when shedding load).
    pub retry_after: Option<u32>,
}

impl<'s> ResponseSpec<'s> {
    /// `status reason`, without a tag and without `Via` changes.
    pub const fn new(status: u16, reason: &'s str) -> Self {
        Self {
            status,
            reason,
            to_tag: None,
            received: None,
            rport: None,
            retry_after: None,
        }
    }
}

/// Builds the response `spec` to request `req`.
///
/// # Errors
///
/// [`EditError::NotARequest`], [`EditError::InvalidStatus`], [`EditError::InvalidText`] (a
/// reason with a control character, a tag that is not a token), or a parse error when a
/// `Via`, `From`, `To`, `Call-ID` or `CSeq` is missing, duplicated or malformed.
pub fn build_response(req: &Message<'_>, spec: &ResponseSpec<'_>) -> Result<Vec<u8>, EditError> {
    if !req.is_request() {
        return Err(EditError::NotARequest);
    }
    if !(100..=699).contains(&spec.status) {
        return Err(EditError::InvalidStatus(spec.status));
    }
    if spec
        .reason
        .bytes()
        .any(|b| (b < 0x20 && b != b'\t') || b == 0x7f)
    {
        return Err(EditError::InvalidText);
    }
    req.top_via()?;
    req.from()?;
    let to = req.to()?;
    req.call_id()?;
    req.cseq()?;

    let mut e = Editor::new(req);
    if let Some(ip) = spec.received {
        e.set_top_via_param("received", Some(&ip.to_string()))?;
    }
    if let Some(port) = spec.rport {
        e.set_top_via_param("rport", Some(&port.to_string()))?;
    }
    if let (Some(tag), None, false) = (spec.to_tag, to.tag, spec.status == 100) {
        if tag.is_empty() || !tag.bytes().all(is_token) {
            return Err(EditError::InvalidText);
        }
        if let Some(h) = req.headers_named(HeaderName::To).next() {
            e.append_to_value(h, &format!(";tag={tag}"))?;
        }
    }

    let mut out =
        Vec::with_capacity(256 + req.headers().iter().map(|h| h.line.len()).sum::<usize>());
    out.extend_from_slice(b"SIP/2.0 ");
    out.extend_from_slice(spec.status.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(spec.reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in req.headers() {
        if matches!(
            h.name,
            HeaderName::Via
                | HeaderName::From
                | HeaderName::To
                | HeaderName::CallId
                | HeaderName::CSeq
        ) {
            e.write_range(h.line(), &mut out);
        }
    }
    if let Some(s) = spec.retry_after {
        out.extend_from_slice(format!("Retry-After: {s}\r\n").as_bytes());
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Field, ParseErrorKind};

    const REQ: &[u8] = b"OPTIONS sip:10.0.0.1 SIP/2.0\r\n\
v: SIP/2.0/UDP client.example.com:5070;rport;branch=z9hG4bK1, SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK0\r\n\
Via: SIP/2.0/TCP 10.0.0.3;branch=z9hG4bKz\r\n\
Max-Forwards: 0\r\n\
f: <sip:a@example.com>;tag=ft\r\n\
t: <sip:10.0.0.1>\r\n\
i: cid-1\r\n\
CSeq: 9 OPTIONS\r\n\
Accept: application/sdp\r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn ok_to_options() {
        let m = Message::parse(REQ).unwrap();
        let spec = ResponseSpec {
            to_tag: Some("sx1"),
            received: Some([192, 0, 2, 1].into()),
            rport: Some(5071),
            ..ResponseSpec::new(200, "OK")
        };
        let out = build_response(&m, &spec).unwrap();
        let text = String::from_utf8(out.clone()).unwrap();
        assert_eq!(
            text,
            "SIP/2.0 200 OK\r\n\
v: SIP/2.0/UDP client.example.com:5070;rport=5071;branch=z9hG4bK1;received=192.0.2.1, SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK0\r\n\
Via: SIP/2.0/TCP 10.0.0.3;branch=z9hG4bKz\r\n\
f: <sip:a@example.com>;tag=ft\r\n\
t: <sip:10.0.0.1>;tag=sx1\r\n\
i: cid-1\r\n\
CSeq: 9 OPTIONS\r\n\
Content-Length: 0\r\n\r\n"
        );
        let r = Message::parse(&out).unwrap();
        assert_eq!(r.status(), Some(200));
        assert_eq!(r.to_tag(), Ok(Some("sx1")));
        assert_eq!(r.vias().count(), 3);
    }

    #[test]
    fn tags() {
        let m = Message::parse(REQ).unwrap();
        // No tag on 100.
        let out = build_response(
            &m,
            &ResponseSpec {
                to_tag: Some("x"),
                ..ResponseSpec::new(100, "Trying")
            },
        )
        .unwrap();
        assert_eq!(Message::parse(&out).unwrap().to_tag(), Ok(None));
        // An existing tag is kept.
        let raw = String::from_utf8(REQ.to_vec())
            .unwrap()
            .replace("t: <sip:10.0.0.1>", "t: <sip:10.0.0.1>;tag=old");
        let m = Message::parse(raw.as_bytes()).unwrap();
        let out = build_response(
            &m,
            &ResponseSpec {
                to_tag: Some("new"),
                ..ResponseSpec::new(483, "Too Many Hops")
            },
        )
        .unwrap();
        assert_eq!(Message::parse(&out).unwrap().to_tag(), Ok(Some("old")));
        assert_eq!(
            build_response(
                &Message::parse(REQ).unwrap(),
                &ResponseSpec {
                    to_tag: Some("a b"),
                    ..ResponseSpec::new(400, "Bad")
                }
            ),
            Err(EditError::InvalidText)
        );
    }

    #[test]
    fn errors() {
        let m = Message::parse(REQ).unwrap();
        assert_eq!(
            build_response(&m, &ResponseSpec::new(99, "x")),
            Err(EditError::InvalidStatus(99))
        );
        assert_eq!(
            build_response(&m, &ResponseSpec::new(700, "x")),
            Err(EditError::InvalidStatus(700))
        );
        assert_eq!(
            build_response(&m, &ResponseSpec::new(400, "a\r\nb")),
            Err(EditError::InvalidText)
        );
        let resp = Message::parse(b"SIP/2.0 200 OK\r\n\r\n").unwrap();
        assert_eq!(
            build_response(&resp, &ResponseSpec::new(400, "x")),
            Err(EditError::NotARequest)
        );
        let no_cseq = Message::parse(b"BYE sip:h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: c\r\n\r\n").unwrap();
        match build_response(&no_cseq, &ResponseSpec::new(400, "Bad Request")) {
            Err(EditError::Parse(e)) => assert_eq!(e.kind, ParseErrorKind::Missing(Field::CSeq)),
            other => panic!("{other:?}"),
        }
    }
}
