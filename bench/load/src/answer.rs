//! The UAS's answers, without sockets: a request in, zero or more responses out, written
//! into a reusable [`Batch`].
//!
//! Stateless: `INVITE` gets `100 Trying`, optionally `180 Ringing`, then the final response
//! (`200 OK` with `Contact` and an SDP answer by default); `ACK` is absorbed; `BYE`,
//! `OPTIONS`, `CANCEL` and any other request get `200 OK`. Every response copies the
//! request's `Via` lines, `From`, `To`, `Call-ID` and `CSeq` byte for byte (RFC 3261
//! section 8.2.6.2) and adds a `To` tag when the request has none, derived from the `Call-ID`
//! so that a retransmitted request gets the same tag. The UAS never retransmits a 2xx
//! (a lost 200 is recovered by the UAC's INVITE retransmission, which is answered again).

use crate::{
    msg::{push_dec, push_hex},
    sip::{Hdr, Head, Method, ParseError, Start, leading_crlf, param},
};

/// Messages written back to back into one buffer.
#[derive(Debug, Default)]
pub struct Batch {
    /// The bytes of all messages.
    pub buf: Vec<u8>,
    /// Where each message ends in `buf` (the first starts at 0).
    pub ends: Vec<usize>,
}

impl Batch {
    /// Empties the batch, keeping its memory.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
    }

    /// Marks the end of the message just written.
    pub fn end_message(&mut self) {
        self.ends.push(self.buf.len());
    }

    /// The messages.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let m = self.buf.get(start..end).unwrap_or_default();
            start = end;
            m
        })
    }

    /// Number of messages.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there is no message.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

/// How the UAS answers.
#[derive(Debug, Clone)]
pub struct UasConfig {
    /// Send `180 Ringing` between `100` and the final response.
    pub ringing: bool,
    /// Final status for `INVITE` (200 by default).
    pub invite_status: u16,
    /// Do not answer `INVITE` at all (not even `100`): for timeout tests.
    pub ignore_invites: bool,
    /// The `Contact` header value (`<sip:uas@ip:port;transport=..>`).
    pub contact: String,
    /// The SDP answer of a 200 to INVITE.
    pub sdp: String,
}

impl UasConfig {
    /// The default answers for a UAS reachable at `contact_hostport` over `transport`.
    pub fn new(contact_hostport: &str, transport: crate::msg::Transport) -> Self {
        let tparam = if transport == crate::msg::Transport::Udp {
            String::new()
        } else {
            format!(";transport={}", transport.param())
        };
        let ip = contact_hostport
            .rsplit_once(':')
            .map_or(contact_hostport, |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let family = if ip.contains(':') { "IP6" } else { "IP4" };
        Self {
            ringing: false,
            invite_status: 200,
            ignore_invites: false,
            contact: format!("<sip:uas@{contact_hostport}{tparam}>"),
            sdp: format!(
                "v=0\r\n\
o=sipsctp-uas 1 1 IN {family} {ip}\r\n\
s=-\r\n\
c=IN {family} {ip}\r\n\
t=0 0\r\n\
m=audio 6002 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=ptime:20\r\n"
            ),
        }
    }
}

/// What the UAS received, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UasCounters {
    /// `INVITE` requests.
    pub invite: u64,
    /// `ACK` requests.
    pub ack: u64,
    /// `BYE` requests.
    pub bye: u64,
    /// `OPTIONS` requests.
    pub options: u64,
    /// `CANCEL` requests.
    pub cancel: u64,
    /// Other requests.
    pub other: u64,
    /// Responses (ignored).
    pub responses: u64,
    /// Messages that could not be read (not answered).
    pub bad: u64,
    /// Responses sent.
    pub sent: u64,
}

impl UasCounters {
    /// Adds `o` to `self`.
    pub fn add(&mut self, o: &Self) {
        self.invite += o.invite;
        self.ack += o.ack;
        self.bye += o.bye;
        self.options += o.options;
        self.cancel += o.cancel;
        self.other += o.other;
        self.responses += o.responses;
        self.bad += o.bad;
        self.sent += o.sent;
    }

    /// All requests received.
    pub fn requests(&self) -> u64 {
        self.invite + self.ack + self.bye + self.options + self.cancel + self.other
    }
}

/// FNV-1a, for the `To` tag derived from the `Call-ID`.
fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &c| {
        (h ^ u64::from(c)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Answers one request (a whole datagram, SCTP message or framed stream message): appends
/// the responses to `out` and counts the request in `counters`.
///
/// # Errors
///
/// A message that cannot be read, or a request without `Via`, `From`, `To`, `Call-ID` or
/// `CSeq`: nothing is written (counted as `bad`).
pub fn answer(
    msg: &[u8],
    cfg: &UasConfig,
    counters: &mut UasCounters,
    out: &mut Batch,
) -> Result<(), ParseError> {
    let r = answer_inner(msg, cfg, counters, out);
    if r.is_err() {
        counters.bad += 1;
    }
    r
}

fn answer_inner(
    msg: &[u8],
    cfg: &UasConfig,
    counters: &mut UasCounters,
    out: &mut Batch,
) -> Result<(), ParseError> {
    let msg = msg.get(leading_crlf(msg)..).unwrap_or_default();
    let head = Head::parse(msg)?;
    let method = match head.start {
        Start::Response { .. } => {
            counters.responses += 1;
            return Ok(());
        }
        Start::Request { method, .. } => method,
    };
    // Check everything the responses copy before writing any.
    let (mut via, mut from, mut to, mut call_id, mut cseq) = (false, false, None, None, false);
    for h in head.headers() {
        let h = h?;
        match h.name {
            Hdr::Via => via = true,
            Hdr::From => from = true,
            Hdr::To => to = Some(h.value),
            Hdr::CallId => call_id = Some(h.value),
            Hdr::CSeq => cseq = true,
            _ => {}
        }
    }
    let to = to.ok_or(ParseError::Missing("To"))?;
    let call_id = call_id
        .filter(|c| !c.is_empty())
        .ok_or(ParseError::Missing("Call-ID"))?;
    for (present, name) in [(via, "Via"), (from, "From"), (cseq, "CSeq")] {
        if !present {
            return Err(ParseError::Missing(name));
        }
    }
    let tag = (param(to, b"tag").is_none()).then(|| fnv1a(call_id));
    let before = out.len();
    match method {
        Method::Invite => {
            counters.invite += 1;
            if !cfg.ignore_invites {
                respond(&head, 100, None, None, tag, out);
                if cfg.ringing {
                    respond(&head, 180, Some(&cfg.contact), None, tag, out);
                }
                let sdp = (cfg.invite_status / 100 == 2).then_some(cfg.sdp.as_str());
                let contact = (cfg.invite_status / 100 == 2).then_some(cfg.contact.as_str());
                respond(&head, cfg.invite_status, contact, sdp, tag, out);
            }
        }
        Method::Ack => counters.ack += 1,
        other => {
            match other {
                Method::Bye => counters.bye += 1,
                Method::Options => counters.options += 1,
                Method::Cancel => counters.cancel += 1,
                _ => counters.other += 1,
            }
            respond(&head, 200, None, None, tag, out);
        }
    }
    counters.sent += (out.len() - before) as u64;
    Ok(())
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        404 => "Not Found",
        480 => "Temporarily Unavailable",
        486 => "Busy Here",
        500 => "Server Internal Error",
        503 => "Service Unavailable",
        603 => "Decline",
        _ => "Status",
    }
}

/// Writes one response to the request `head` (whose copied headers were checked).
fn respond(
    head: &Head<'_>,
    status: u16,
    contact: Option<&str>,
    sdp: Option<&str>,
    tag: Option<u64>,
    out: &mut Batch,
) {
    let b = &mut out.buf;
    b.extend_from_slice(b"SIP/2.0 ");
    push_dec(b, u64::from(status));
    b.push(b' ');
    b.extend_from_slice(reason(status).as_bytes());
    b.extend_from_slice(b"\r\n");
    for h in head.headers().map_while(Result::ok) {
        match h.name {
            Hdr::Via | Hdr::From | Hdr::CallId | Hdr::CSeq => {
                b.extend_from_slice(h.line);
                b.extend_from_slice(b"\r\n");
            }
            Hdr::To => {
                b.extend_from_slice(h.line);
                if let (Some(tag), false) = (tag, status == 100) {
                    b.extend_from_slice(b";tag=");
                    push_hex(b, tag);
                }
                b.extend_from_slice(b"\r\n");
            }
            _ => {}
        }
    }
    if let Some(c) = contact {
        b.extend_from_slice(b"Contact: ");
        b.extend_from_slice(c.as_bytes());
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(b"Server: sipsctp-load\r\n");
    match sdp {
        Some(sdp) => {
            b.extend_from_slice(b"Content-Type: application/sdp\r\nContent-Length: ");
            push_dec(b, sdp.len() as u64);
            b.extend_from_slice(b"\r\n\r\n");
            b.extend_from_slice(sdp.as_bytes());
        }
        None => b.extend_from_slice(b"Content-Length: 0\r\n\r\n"),
    }
    out.end_message();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{CallRef, Dialog, Local, Transport};
    use crate::sip::Response;

    fn cfg() -> UasConfig {
        UasConfig::new("10.0.0.3:5080", Transport::Tcp)
    }

    fn invite() -> Vec<u8> {
        let l = Local::new(
            Transport::Tcp,
            "10.0.0.1:5070".parse().unwrap(),
            "10.0.0.2:5060".parse().unwrap(),
            "service",
            9,
        );
        let mut out = Vec::new();
        l.invite(&mut out, CallRef { n: 1, slot: 0 });
        out
    }

    /// A request as a proxy forwards it: two Via lines, one compact, Record-Route.
    const PROXIED: &[u8] = b"BYE sip:uas@10.0.0.3:5080 SIP/2.0\r\n\
Via: SIP/2.0/SCTP 10.0.0.2:5060;branch=z9hG4bKp1\r\n\
v: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK-1-0-9-b;rport=5070;received=10.0.0.1\r\n\
Max-Forwards: 69\r\n\
From: <sip:load@10.0.0.1>;tag=f1\r\n\
To: <sip:service@10.0.0.2>;tag=t1\r\n\
i: cid-1\r\n\
CSeq: 2 BYE\r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn invite_gets_100_and_200() {
        let (mut c, mut out) = (UasCounters::default(), Batch::default());
        let inv = invite();
        answer(&inv, &cfg(), &mut c, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        let req = sipsctp_sip::Message::parse(&inv).unwrap();
        let msgs: Vec<&[u8]> = out.iter().collect();
        let trying = sipsctp_sip::Message::parse(msgs[0]).unwrap();
        assert_eq!(trying.status(), Some(100));
        assert_eq!(trying.to_tag().unwrap(), None);
        let ok = sipsctp_sip::Message::parse(msgs[1]).unwrap();
        assert_eq!(ok.status(), Some(200));
        for m in [&trying, &ok] {
            assert_eq!(m.call_id().unwrap(), req.call_id().unwrap());
            assert_eq!(m.cseq().unwrap(), req.cseq().unwrap());
            let (a, b) = (m.top_via().unwrap(), req.top_via().unwrap());
            assert_eq!((a.host, a.port, a.branch), (b.host, b.port, b.branch));
            let (a, b) = (m.from().unwrap(), req.from().unwrap());
            assert_eq!((a.uri, a.tag), (b.uri, b.tag));
        }
        let tag = ok.to_tag().unwrap().unwrap().to_owned();
        let sipsctp_sip::Contact::Addr(contact) = ok.contacts().next().unwrap().unwrap() else {
            panic!("Contact: *");
        };
        assert_eq!(contact.uri, "sip:uas@10.0.0.3:5080;transport=tcp");
        assert!(ok.body().starts_with(b"v=0"));
        // The UAC's scanner reads it, and the dialog it builds from it is sane.
        let r = Response::parse(msgs[1]).unwrap();
        assert_eq!(
            r.contact_uri(),
            Some(&b"sip:uas@10.0.0.3:5080;transport=tcp"[..])
        );
        assert_eq!(c.invite, 1);
        assert_eq!(c.sent, 2);
        // A retransmission gets the same tag.
        out.clear();
        answer(&inv, &cfg(), &mut c, &mut out).unwrap();
        let again: Vec<&[u8]> = out.iter().collect();
        let ok2 = sipsctp_sip::Message::parse(again[1]).unwrap();
        assert_eq!(ok2.to_tag().unwrap(), Some(tag.as_str()));
        let _ = Dialog::default();
    }

    #[test]
    fn ringing_rejection_and_silence() {
        let inv = invite();
        let mut c = UasCounters::default();
        let mut out = Batch::default();
        let mut cf = cfg();
        cf.ringing = true;
        answer(&inv, &cf, &mut c, &mut out).unwrap();
        let st: Vec<_> = out
            .iter()
            .map(|m| sipsctp_sip::Message::parse(m).unwrap().status().unwrap())
            .collect();
        assert_eq!(st, [100, 180, 200]);

        out.clear();
        cf.invite_status = 486;
        answer(&inv, &cf, &mut c, &mut out).unwrap();
        let last = out.iter().last().unwrap();
        let m = sipsctp_sip::Message::parse(last).unwrap();
        assert_eq!(m.status(), Some(486));
        assert!(m.body().is_empty());
        assert!(m.contacts().next().is_none());

        out.clear();
        cf.ignore_invites = true;
        answer(&inv, &cf, &mut c, &mut out).unwrap();
        assert!(out.is_empty());
        assert_eq!(c.invite, 3);
    }

    #[test]
    fn bye_copies_every_via_and_keeps_the_tag() {
        let (mut c, mut out) = (UasCounters::default(), Batch::default());
        answer(PROXIED, &cfg(), &mut c, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        let m = sipsctp_sip::Message::parse(&out.buf).unwrap();
        assert_eq!(m.status(), Some(200));
        assert_eq!(m.vias().count(), 2);
        assert_eq!(m.to_tag().unwrap(), Some("t1"));
        assert_eq!(m.call_id().unwrap(), "cid-1");
        assert!(m.max_forwards().unwrap().is_none());
        assert_eq!(c.bye, 1);
    }

    #[test]
    fn ack_is_absorbed_and_junk_counted() {
        let (mut c, mut out) = (UasCounters::default(), Batch::default());
        let ack = String::from_utf8_lossy(PROXIED).replace("BYE", "ACK");
        answer(ack.as_bytes(), &cfg(), &mut c, &mut out).unwrap();
        assert!(out.is_empty());
        assert_eq!(c.ack, 1);
        assert!(answer(b"hello\r\n\r\n", &cfg(), &mut c, &mut out).is_err());
        let no_cseq = String::from_utf8_lossy(PROXIED).replace("CSeq: 2 BYE\r\n", "");
        assert_eq!(
            answer(no_cseq.as_bytes(), &cfg(), &mut c, &mut out),
            Err(ParseError::Missing("CSeq"))
        );
        answer(b"SIP/2.0 200 OK\r\n\r\n", &cfg(), &mut c, &mut out).unwrap();
        assert!(out.is_empty());
        assert_eq!((c.bad, c.responses, c.requests()), (2, 1, 1));
    }
}
