//! Fuzzes everything that reads untrusted bytes: the parser and every typed accessor, stream
//! framing, the editor, the response builder, the relay driver (request and response paths,
//! the transaction table behind it). Any panic is a bug; so is an edited or
//! generated message that no longer parses.
#![no_main]

use std::{net::SocketAddr, sync::Arc, time::Duration};

use libfuzzer_sys::fuzz_target;
use sipsctp_sip::{
    AssocId, Editor, Field, HeaderName, Limits, Message, ResponseSpec, Transport, build_response,
    frame, leading_crlf, Framed, StreamFramer,
    MonoTime,
    driver::{DriverConfig, Inbound, RelayDriver, SendDrop, SendResult},
    relay::{HostMatch, Listener, Relay, RelayConfig, RouteRule, RouteTarget, Upstream},
};

fn relay() -> Relay {
    let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
    Relay::new(RelayConfig {
        listeners: vec![
            Listener { transport: Transport::Udp, addr: sa("192.0.2.10:5060"), advertise: None },
            Listener { transport: Transport::Tcp, addr: sa("192.0.2.10:5060"), advertise: None },
            Listener { transport: Transport::Sctp, addr: sa("10.0.0.10:5060"), advertise: Some("relay.example.net".into()) },
        ],
        aliases: vec!["relay.example.com".into()],
        routes: vec![
            RouteRule {
                host: HostMatch::Suffix("example.com".into()),
                target: RouteTarget::Upstream(Upstream { transport: Transport::Sctp, addr: sa("10.0.0.20:5060") }),
            },
            RouteRule { host: HostMatch::AnyIp, target: RouteTarget::Direct { default_transport: Transport::Udp } },
        ],
        default_route: None,
        record_route: true,
        secret: [7; 16],
        limits: Limits::DEFAULT,
    })
    .unwrap()
}

fn accessors(m: &Message<'_>) {
    let _ = (m.method(), m.request_uri(), m.status(), m.body(), m.content_length());
    for v in m.vias() {
        if let Ok(v) = v {
            let _ = (v.transport(), v.has_magic_cookie(), v.span());
            for p in v.params() {
                let _ = p;
            }
        }
    }
    let _ = (m.top_via(), m.call_id(), m.cseq(), m.from_tag(), m.to_tag(), m.max_forwards());
    for r in m.routes().chain(m.record_routes()) {
        if let Ok(r) = r {
            let _ = r.parse_uri().map(|u| (u.transport_param(), u.has_lr()));
            for p in r.params() {
                let _ = p;
            }
        }
    }
    for c in m.contacts() {
        let _ = c;
    }
    if let Some(uri) = m.request_uri() {
        let _ = sipsctp_sip::Uri::parse(uri);
    }
}

/// Edits may lengthen lines and add headers: re-parse without limits.
const LOOSE: Limits = Limits { max_message_size: usize::MAX, max_headers: usize::MAX, max_line_length: usize::MAX };

fn edits(m: &Message<'_>) {
    let reparse = |bytes: &[u8]| {
        Message::parse_with(bytes, &LOOSE).expect("an edited message parses");
    };
    let mut e = Editor::new(m);
    let ok = e.set_top_via_param("received", Some("192.0.2.99")).is_ok()
        & e.set_top_via_param("rport", Some("1234")).is_ok()
        & e.remove_leading_values(HeaderName::Route, Field::Route, 1).is_ok()
        & e.decrement_max_forwards().is_ok()
        & e.insert_record_route("<sip:192.0.2.10;lr>").is_ok()
        & e.insert_top_via("SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKfuzz").is_ok();
    let out = e.finish();
    reparse(&out);
    if ok {
        // Every edit applied: the relay's Via is on top.
        let edited = Message::parse_with(&out, &LOOSE).expect("parsed above");
        assert_eq!(edited.top_via().ok().and_then(|v| v.branch), Some("z9hG4bKfuzz"));
    }
    let mut e = Editor::new(m);
    if e.remove_top_via().is_ok() {
        let out = e.finish();
        reparse(&out);
    }
    if m.is_request() {
        let spec = ResponseSpec { to_tag: Some("t"), received: Some([192, 0, 2, 1].into()), rport: Some(9), ..ResponseSpec::new(400, "Bad Request") };
        if let Ok(resp) = build_response(m, &spec) {
            let r = Message::parse_with(&resp, &LOOSE).expect("a built response parses");
            assert_eq!(r.status(), Some(400));
        }
    }
}

/// What a [`StreamFramer`] makes of `data` fed `chunk` bytes at a time: the frames (message
/// lengths, keep-alives as 0 / 1 for a pong), then whether it stopped on an error.
fn stream_frames(data: &[u8], chunk: usize, limits: &Limits) -> (Vec<usize>, bool) {
    let mut f = StreamFramer::new(*limits);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match f.poll(&buf) {
                Err(_) => return (out, true),
                Ok(Framed::Incomplete) => break,
                Ok(Framed::KeepAlive { len, pong }) => {
                    assert!(len <= buf.len());
                    out.push(usize::from(pong));
                    buf.drain(..len);
                }
                Ok(Framed::Message(n)) => {
                    assert!(n <= buf.len());
                    assert_eq!(frame(&buf, limits), Ok(Some(n)));
                    out.push(n);
                    buf.drain(..n);
                }
            }
        }
    }
    (out, false)
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits::DEFAULT;
    // Stream framing never panics and never claims more than it has.
    if let Ok(Some(n)) = frame(data, &limits) {
        assert!(n <= data.len());
        let _ = Message::parse_with(data.get(..n).unwrap(), &limits);
    }
    let _ = leading_crlf(data);
    // The connection framer agrees with itself whatever the segments: fed all at once and in
    // pieces of 1..=8 bytes (from the first byte), the same messages and keep-alives, or an
    // error in both; it never claims more than it has.
    let chunk = usize::from(data.first().copied().unwrap_or(0) % 8) + 1;
    assert_eq!(
        stream_frames(data, data.len().max(1), &limits),
        stream_frames(data, chunk, &limits)
    );

    if let Ok(m) = Message::parse_with(data, &limits) {
        accessors(&m);
        edits(&m);
    }
    if let Ok(m) = Message::parse_head(data, &limits) {
        accessors(&m);
    }

    // The relay driver, both ways: the relay's decisions and the transaction table behind
    // them, with responses built from what it forwarded fed back in.
    let mut driver = RelayDriver::new(Arc::new(relay()), DriverConfig::default());
    let client = "198.51.100.7:40000".parse().unwrap();
    let upstream = "10.0.0.20:5060".parse().unwrap();
    let t0 = MonoTime::from_nanos(1_000_000_000);
    let inputs = [
        (Transport::Udp, client, "192.0.2.10:5060".parse().unwrap(), None),
        (Transport::Sctp, upstream, "10.0.0.10:5060".parse().unwrap(), Some(AssocId(3))),
    ];
    for (transport, peer, local, assoc) in inputs {
        driver.handle_inbound(t0, Inbound { transport, peer, local, assoc, bytes: data });
        while let Some(t) = driver.poll_transmit() {
            let out = Message::parse_with(&t.bytes, &LOOSE).expect("a relayed or local message parses");
            if out.is_request() {
                // Answer it as the next hop would, and send the answer back through.
                let spec = ResponseSpec { to_tag: Some("uas"), ..ResponseSpec::new(200, "OK") };
                if let Ok(resp) = build_response(&out, &spec) {
                    driver.handle_sent(t0, &t.to, t.meta.clone(), SendResult::Sent { assoc: Some(AssocId(4)) });
                    let back = Inbound { transport: t.to.transport, peer: t.to.addr, local: "10.0.0.10:5060".parse().unwrap(), assoc: Some(AssocId(4)), bytes: &resp };
                    driver.handle_inbound(t0 + Duration::from_millis(5), back);
                }
            } else {
                driver.handle_sent(t0, &t.to, t.meta.clone(), SendResult::Dropped(SendDrop::QueueFull));
            }
        }
        while driver.poll_event().is_some() {}
    }
    driver.handle_timeout(t0 + Duration::from_secs(40));
    while driver.poll_event().is_some() {}
    assert_eq!(driver.poll_timeout(), None);
});
