//! Fuzzes everything that reads untrusted bytes: the parser and every typed accessor, stream
//! framing, the editor, the response builder, the relay (request and response paths) and the
//! transaction table fed by the relay's decisions. Any panic is a bug; so is an edited or
//! generated message that no longer parses.
#![no_main]

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use libfuzzer_sys::fuzz_target;
use sipsctp_sip::{
    Decision, Editor, Field, HeaderName, Limits, Message, ResponseSpec, Transport, build_response,
    frame, leading_crlf,
    relay::{HostMatch, LocalAddr, Listener, Peer, Relay, RelayConfig, RouteRule, RouteTarget, Upstream},
    transaction::{Leg, Legs, TransactionTable},
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

fuzz_target!(|data: &[u8]| {
    let limits = Limits::DEFAULT;
    // Stream framing never panics and never claims more than it has.
    if let Ok(Some(n)) = frame(data, &limits) {
        assert!(n <= data.len());
        let _ = Message::parse_with(data.get(..n).unwrap(), &limits);
    }
    let _ = leading_crlf(data);

    if let Ok(m) = Message::parse_with(data, &limits) {
        accessors(&m);
        edits(&m);
    }
    if let Ok(m) = Message::parse_head(data, &limits) {
        accessors(&m);
    }

    // The relay, both ways, and the transaction table behind it.
    let r = relay();
    let client = Peer { transport: Transport::Udp, addr: "198.51.100.7:40000".parse().unwrap(), assoc: None };
    let upstream = Peer { transport: Transport::Sctp, addr: "10.0.0.20:5060".parse().unwrap(), assoc: Some(3) };
    let udp_local = LocalAddr { transport: Transport::Udp, addr: "192.0.2.10:5060".parse().unwrap() };
    let sctp_local = LocalAddr { transport: Transport::Sctp, addr: "10.0.0.10:5060".parse().unwrap() };
    let mut table = TransactionTable::new(4);
    let t0 = Instant::now();
    for (from, local) in [(client, udp_local), (upstream, sctp_local)] {
        match r.handle(data, from, local) {
            Decision::Forward { to, bytes, tx } => {
                let fwd = Message::parse_with(&bytes, &LOOSE).expect("a forwarded message parses");
                if let Some(key) = tx {
                    let leg = |p: Peer| Leg { transport: p.transport, addr: p.addr, assoc: p.assoc };
                    let legs = Legs { inbound: leg(from), outbound: Leg { transport: to.transport, addr: to.addr, assoc: to.assoc } };
                    if fwd.is_request() {
                        let _ = table.on_request_forwarded(t0, key, legs);
                        // Answer it as the next hop would, and send the answer back through.
                        let spec = ResponseSpec { to_tag: Some("uas"), ..ResponseSpec::new(200, "OK") };
                        if let Ok(resp) = build_response(&fwd, &spec) {
                            let back = Peer { transport: to.transport, addr: to.addr, assoc: to.assoc };
                            if let Decision::Forward { tx: Some(k), .. } = r.handle(&resp, back, sctp_local) {
                                let _ = table.on_response(t0 + Duration::from_millis(5), &k, 200);
                            }
                        }
                    } else {
                        let _ = table.on_response(t0, &key, fwd.status().unwrap_or(0));
                    }
                }
            }
            Decision::Respond { bytes, .. } => {
                Message::parse_with(&bytes, &LOOSE).expect("a local response parses");
            }
            Decision::Drop { reason } => {
                let _: &'static str = reason.into();
            }
        }
    }
    let _ = table.poll_expired(t0 + Duration::from_secs(40), Duration::from_secs(32)).count();
});
