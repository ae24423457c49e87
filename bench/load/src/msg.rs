//! The UAC's requests, written into a reusable buffer: `INVITE` (with a small SDP offer,
//! ~700 bytes like sipp's uac scenario), `ACK` (for a 2xx in the dialog, or for a non-2xx in
//! the INVITE transaction), `BYE` and `OPTIONS`.
//!
//! A call is named by a [`CallRef`] (its sequence number and table slot) and the run id;
//! they are written into the `Call-ID`, the `From` tag and every branch, so that a response
//! finds its call without a lookup table ([`decode_call_id`]). Retransmissions are rebuilt
//! byte-identical from the same inputs. No allocation: everything is appended to the
//! caller's buffer; the constant parts of a connection are prepared once ([`Local::new`]).

use std::net::SocketAddr;

/// The transports the tool speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// UDP: one datagram per message; the UAC retransmits (Timer A / E).
    Udp,
    /// TCP: a byte stream framed by `Content-Length`.
    Tcp,
    /// SCTP: one SIP message per SCTP message.
    Sctp,
}

impl Transport {
    /// The token in `Via: SIP/2.0/<token>`.
    pub const fn via_token(self) -> &'static str {
        match self {
            Self::Udp => "UDP",
            Self::Tcp => "TCP",
            Self::Sctp => "SCTP",
        }
    }

    /// The `transport=` URI parameter value.
    pub const fn param(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Sctp => "sctp",
        }
    }

    /// Whether the transport is reliable (no SIP retransmissions).
    pub const fn reliable(self) -> bool {
        !matches!(self, Self::Udp)
    }
}

/// Names one call: its sequence number in the run and its slot in the call table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallRef {
    /// Sequence number, unique in the run.
    pub n: u64,
    /// Slot in the call table.
    pub slot: u32,
}

/// The constant parts of the requests sent on one connection.
#[derive(Debug, Clone)]
pub struct Local {
    transport: Transport,
    /// `ip:port` of this side (`[ip]:port` for IPv6), for `Via`, `From` and `Contact`.
    local: Vec<u8>,
    /// The host part alone, for the `Call-ID`.
    local_host: Vec<u8>,
    /// `sip:<service>@<target>`: the request URI of out-of-dialog requests and the `To` URI.
    target_uri: Vec<u8>,
    run: u32,
    sdp: Vec<u8>,
}

/// The parts of a dialog the in-dialog requests need, as received in the 2xx.
#[derive(Debug, Clone, Copy, Default)]
pub struct Dialog<'a> {
    /// The `To` value with the remote tag.
    pub to: &'a [u8],
    /// The remote target (the 2xx's `Contact` URI); `None` uses the target URI.
    pub remote_target: Option<&'a [u8]>,
    /// The route set, already in the order to send (`Route:` value), empty for none.
    pub route: &'a [u8],
}

fn host_port(addr: SocketAddr) -> (Vec<u8>, Vec<u8>) {
    let host = match addr {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    let hp = format!("{host}:{}", addr.port());
    (host.into_bytes(), hp.into_bytes())
}

impl Local {
    /// Prepares the constant parts for a connection from `local` (the address put in `Via`
    /// and `Contact`: the real source address) to `target`.
    pub fn new(
        transport: Transport,
        local: SocketAddr,
        target: SocketAddr,
        service: &str,
        run: u32,
    ) -> Self {
        let (local_host, local_hp) = host_port(local);
        let (_, target_hp) = host_port(target);
        let mut target_uri = b"sip:".to_vec();
        target_uri.extend_from_slice(service.as_bytes());
        target_uri.push(b'@');
        target_uri.extend_from_slice(&target_hp);
        let (family, ip) = match local {
            SocketAddr::V4(a) => ("IP4", a.ip().to_string()),
            SocketAddr::V6(a) => ("IP6", a.ip().to_string()),
        };
        let sdp = format!(
            "v=0\r\n\
o=sipsctp-load 53655765 2353687637 IN {family} {ip}\r\n\
s=-\r\n\
c=IN {family} {ip}\r\n\
t=0 0\r\n\
m=audio 6000 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n"
        )
        .into_bytes();
        Self {
            transport,
            local: local_hp,
            local_host,
            target_uri,
            run,
            sdp,
        }
    }

    /// The run id written into every `Call-ID`.
    pub const fn run(&self) -> u32 {
        self.run
    }

    fn id(&self, out: &mut Vec<u8>, c: CallRef) {
        push_hex(out, c.n);
        out.push(b'-');
        push_hex(out, u64::from(c.slot));
        out.push(b'-');
        push_hex(out, u64::from(self.run));
    }

    fn via(&self, out: &mut Vec<u8>, c: CallRef, branch_kind: u8) {
        out.extend_from_slice(b"Via: SIP/2.0/");
        out.extend_from_slice(self.transport.via_token().as_bytes());
        out.push(b' ');
        out.extend_from_slice(&self.local);
        out.extend_from_slice(b";branch=z9hG4bK-");
        self.id(out, c);
        out.push(b'-');
        out.push(branch_kind);
        out.extend_from_slice(b";rport\r\nMax-Forwards: 70\r\n");
    }

    fn write_from_and_call_id(&self, out: &mut Vec<u8>, c: CallRef) {
        out.extend_from_slice(b"From: \"sipsctp-load\" <sip:load@");
        out.extend_from_slice(&self.local);
        out.extend_from_slice(b">;tag=");
        self.id(out, c);
        out.extend_from_slice(b"\r\nCall-ID: ");
        self.id(out, c);
        out.push(b'@');
        out.extend_from_slice(&self.local_host);
        out.extend_from_slice(b"\r\n");
    }

    fn to_initial(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"To: <");
        out.extend_from_slice(&self.target_uri);
        out.extend_from_slice(b">\r\n");
    }

    fn contact(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"Contact: <sip:load@");
        out.extend_from_slice(&self.local);
        if self.transport != Transport::Udp {
            out.extend_from_slice(b";transport=");
            out.extend_from_slice(self.transport.param().as_bytes());
        }
        out.extend_from_slice(b">\r\n");
    }

    fn request_line(out: &mut Vec<u8>, method: &str, uri: &[u8]) {
        out.extend_from_slice(method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(uri);
        out.extend_from_slice(b" SIP/2.0\r\n");
    }

    /// Appends the call's `INVITE`.
    pub fn invite(&self, out: &mut Vec<u8>, c: CallRef) {
        Self::request_line(out, "INVITE", &self.target_uri);
        self.via(out, c, b'i');
        self.write_from_and_call_id(out, c);
        self.to_initial(out);
        out.extend_from_slice(b"CSeq: 1 INVITE\r\n");
        self.contact(out);
        out.extend_from_slice(
            b"Subject: Performance Test\r\n\
User-Agent: sipsctp-load\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n\
Supported: timer\r\n\
Session-Expires: 1800\r\n\
Content-Type: application/sdp\r\n\
Content-Length: ",
        );
        push_dec(out, self.sdp.len() as u64);
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(&self.sdp);
    }

    /// Appends the `ACK` of a non-2xx final response: same branch as the `INVITE` (it is part
    /// of the INVITE transaction), `To` as in the response.
    pub fn ack_non2xx(&self, out: &mut Vec<u8>, c: CallRef, to: &[u8]) {
        Self::request_line(out, "ACK", &self.target_uri);
        self.via(out, c, b'i');
        self.write_from_and_call_id(out, c);
        out.extend_from_slice(b"To: ");
        out.extend_from_slice(to);
        out.extend_from_slice(b"\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n");
    }

    fn in_dialog(&self, out: &mut Vec<u8>, c: CallRef, d: &Dialog<'_>, method: &str, kind: u8) {
        Self::request_line(out, method, d.remote_target.unwrap_or(&self.target_uri));
        self.via(out, c, kind);
        if !d.route.is_empty() {
            out.extend_from_slice(b"Route: ");
            out.extend_from_slice(d.route);
            out.extend_from_slice(b"\r\n");
        }
        self.write_from_and_call_id(out, c);
        out.extend_from_slice(b"To: ");
        out.extend_from_slice(d.to);
        out.extend_from_slice(b"\r\n");
    }

    /// Appends the `ACK` of the 2xx (a new transaction in the dialog).
    pub fn ack_2xx(&self, out: &mut Vec<u8>, c: CallRef, d: &Dialog<'_>) {
        self.in_dialog(out, c, d, "ACK", b'a');
        out.extend_from_slice(b"CSeq: 1 ACK\r\n");
        self.contact(out);
        out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    }

    /// Appends the call's `BYE`.
    pub fn bye(&self, out: &mut Vec<u8>, c: CallRef, d: &Dialog<'_>) {
        self.in_dialog(out, c, d, "BYE", b'b');
        out.extend_from_slice(
            b"CSeq: 2 BYE\r\nUser-Agent: sipsctp-load\r\nContent-Length: 0\r\n\r\n",
        );
    }

    /// Appends an out-of-dialog `OPTIONS`.
    pub fn options(&self, out: &mut Vec<u8>, c: CallRef) {
        Self::request_line(out, "OPTIONS", &self.target_uri);
        self.via(out, c, b'o');
        self.write_from_and_call_id(out, c);
        self.to_initial(out);
        out.extend_from_slice(b"CSeq: 1 OPTIONS\r\n");
        self.contact(out);
        out.extend_from_slice(
            b"User-Agent: sipsctp-load\r\nAccept: application/sdp\r\nContent-Length: 0\r\n\r\n",
        );
    }
}

/// Reads the call a `Call-ID` written by [`Local`] names, `None` for any other `Call-ID`
/// (including those of another run).
pub fn decode_call_id(call_id: &[u8], run: u32) -> Option<CallRef> {
    let id = match call_id.iter().position(|&c| c == b'@') {
        Some(i) => call_id.get(..i)?,
        None => call_id,
    };
    let mut parts = id.split(|&c| c == b'-');
    let n = parse_hex(parts.next()?)?;
    let slot = u32::try_from(parse_hex(parts.next()?)?).ok()?;
    let r = parse_hex(parts.next()?)?;
    (parts.next().is_none() && r == u64::from(run)).then_some(CallRef { n, slot })
}

fn parse_hex(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 16 {
        return None;
    }
    b.iter().try_fold(0u64, |acc, &c| {
        let d = (c as char).to_digit(16)?;
        Some(acc << 4 | u64::from(d))
    })
}

/// Appends `v` in lower-case hex, no leading zeros.
pub fn push_hex(out: &mut Vec<u8>, v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut tmp = [0u8; 16];
    let mut i = tmp.len();
    let mut v = v;
    loop {
        i -= 1;
        tmp[i] = DIGITS[(v & 0xf) as usize];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

/// Appends `v` in decimal.
pub fn push_dec(out: &mut Vec<u8>, v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    let mut v = v;
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{Hdr, Head, Method, Start, param};

    fn local(t: Transport) -> Local {
        Local::new(
            t,
            "10.0.0.1:5070".parse().unwrap(),
            "10.0.0.2:5060".parse().unwrap(),
            "service",
            0xbeef,
        )
    }

    const C: CallRef = CallRef { n: 0x1234, slot: 7 };

    /// Checked by the project's full parser: valid SIP, Content-Length exact.
    fn check(msg: &[u8]) -> sipsctp_sip::Message<'_> {
        sipsctp_sip::Message::parse(msg).unwrap_or_else(|e| {
            panic!("{e}: {}", String::from_utf8_lossy(msg));
        })
    }

    #[test]
    fn invite_is_valid_and_realistic() {
        let l = local(Transport::Udp);
        let mut out = Vec::new();
        l.invite(&mut out, C);
        assert!((600..=900).contains(&out.len()), "{} bytes", out.len());
        let m = check(&out);
        assert_eq!(m.method().unwrap().as_str(), "INVITE");
        assert_eq!(m.request_uri(), Some("sip:service@10.0.0.2:5060"));
        assert_eq!(m.max_forwards().unwrap(), Some(70));
        assert_eq!(m.call_id().unwrap(), "1234-7-beef@10.0.0.1");
        let via = m.top_via().unwrap();
        assert_eq!(via.transport, "UDP");
        assert_eq!(via.branch, Some("z9hG4bK-1234-7-beef-i"));
        assert_eq!(m.from_tag().unwrap(), Some("1234-7-beef"));
        assert_eq!(m.to_tag().unwrap(), None);
        assert!(m.body().starts_with(b"v=0\r\n"));
        let cid = m.call_id().unwrap().as_bytes();
        assert_eq!(decode_call_id(cid, 0xbeef), Some(C));
        assert_eq!(decode_call_id(cid, 0xbeee), None);
    }

    #[test]
    fn requests_are_valid() {
        for t in [Transport::Udp, Transport::Tcp, Transport::Sctp] {
            let l = local(t);
            let d = Dialog {
                to: b"<sip:service@10.0.0.2:5060>;tag=xyz",
                remote_target: Some(b"sip:uas@10.0.0.3:5080"),
                route: b"<sip:p2;lr>, <sip:p1;lr>",
            };
            let mut out = Vec::new();
            l.bye(&mut out, C, &d);
            let m = check(&out);
            assert_eq!(m.request_uri(), Some("sip:uas@10.0.0.3:5080"));
            assert_eq!(m.to_tag().unwrap(), Some("xyz"));
            assert_eq!(m.cseq().unwrap().seq, 2);
            assert_eq!(m.routes().count(), 2);
            assert_eq!(m.top_via().unwrap().transport, t.via_token());
            assert_eq!(m.top_via().unwrap().branch, Some("z9hG4bK-1234-7-beef-b"));

            out.clear();
            l.ack_2xx(
                &mut out,
                C,
                &Dialog {
                    route: b"",
                    remote_target: None,
                    ..d
                },
            );
            let m = check(&out);
            assert_eq!(m.request_uri(), Some("sip:service@10.0.0.2:5060"));
            assert_eq!(m.routes().count(), 0);
            assert_eq!(m.method().unwrap().as_str(), "ACK");

            out.clear();
            l.ack_non2xx(&mut out, C, b"<sip:service@10.0.0.2:5060>;tag=q");
            let m = check(&out);
            assert_eq!(m.top_via().unwrap().branch, Some("z9hG4bK-1234-7-beef-i"));
            assert_eq!(m.cseq().unwrap().method.as_str(), "ACK");

            out.clear();
            l.options(&mut out, C);
            let m = check(&out);
            assert_eq!(m.method().unwrap().as_str(), "OPTIONS");
            // The tool's own scanner reads them the same way.
            let h = Head::parse(&out).unwrap();
            assert!(matches!(
                h.start,
                Start::Request {
                    method: Method::Options,
                    ..
                }
            ));
            let to = h.first(Hdr::To).unwrap().unwrap();
            assert_eq!(param(to.value, b"tag"), None);
        }
    }

    #[test]
    fn ipv6_local() {
        let l = Local::new(
            Transport::Sctp,
            "[2001:db8::1]:5070".parse().unwrap(),
            "[2001:db8::2]:5060".parse().unwrap(),
            "s",
            1,
        );
        let mut out = Vec::new();
        l.invite(&mut out, C);
        let m = check(&out);
        assert_eq!(m.call_id().unwrap(), "1234-7-1@[2001:db8::1]");
        assert!(m.body().windows(7).any(|w| w == b"IN IP6 "));
    }

    #[test]
    fn numbers() {
        let mut v = Vec::new();
        push_hex(&mut v, 0);
        v.push(b' ');
        push_hex(&mut v, u64::MAX);
        v.push(b' ');
        push_dec(&mut v, 0);
        v.push(b' ');
        push_dec(&mut v, 18_446_744_073_709_551_615);
        assert_eq!(v, b"0 ffffffffffffffff 0 18446744073709551615");
        assert_eq!(parse_hex(b"ffffffffffffffff"), Some(u64::MAX));
        assert_eq!(parse_hex(b"1ffffffffffffffff"), None);
        assert_eq!(parse_hex(b"g"), None);
        assert_eq!(decode_call_id(b"1-2", 0), None);
        assert_eq!(decode_call_id(b"1-2-0-4@x", 0), None);
        assert_eq!(decode_call_id(b"a-100000000-0", 0), None);
        assert_eq!(
            decode_call_id(b"a-ff-0", 0),
            Some(CallRef { n: 10, slot: 255 })
        );
    }
}
