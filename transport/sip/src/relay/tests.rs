//! Relay scenarios without sockets: requests in, decisions out, responses built from the
//! forwarded bytes and fed back, as a peer would.

use super::*;
use crate::ResponseSpec;

const CLIENT: &str = "198.51.100.7:40000";
const UPSTREAM: &str = "10.0.0.20:5060";

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn config() -> RelayConfig {
    RelayConfig {
        listeners: vec![
            Listener {
                transport: Transport::Udp,
                addr: sa("192.0.2.10:5060"),
                advertise: None,
            },
            Listener {
                transport: Transport::Tcp,
                addr: sa("192.0.2.10:5060"),
                advertise: None,
            },
            Listener {
                transport: Transport::Sctp,
                addr: sa("10.0.0.10:5060"),
                advertise: None,
            },
            Listener {
                transport: Transport::Udp,
                addr: sa("[2001:db8::10]:5060"),
                advertise: None,
            },
        ],
        aliases: vec!["relay.example.com".into()],
        routes: vec![
            RouteRule {
                host: HostMatch::Suffix("example.com".into()),
                target: RouteTarget::Upstream(Upstream {
                    transport: Transport::Sctp,
                    addr: sa(UPSTREAM),
                }),
            },
            RouteRule {
                host: HostMatch::AnyIp,
                target: RouteTarget::Direct {
                    default_transport: Transport::Udp,
                },
            },
        ],
        default_route: None,
        record_route: true,
        secret: [7; 16],
        limits: Limits::DEFAULT,
    }
}

fn relay() -> Relay {
    Relay::new(config()).unwrap()
}

fn udp_client() -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: sa(CLIENT),
        assoc: None,
    }
}

fn udp_local() -> LocalAddr {
    LocalAddr {
        transport: Transport::Udp,
        addr: sa("192.0.2.10:5060"),
    }
}

fn upstream_peer() -> Peer {
    Peer {
        transport: Transport::Sctp,
        addr: sa(UPSTREAM),
        assoc: Some(AssocId(42)),
    }
}

fn sctp_local() -> LocalAddr {
    LocalAddr {
        transport: Transport::Sctp,
        addr: sa("10.0.0.10:5060"),
    }
}

fn invite(extra: &str) -> String {
    format!(
        "INVITE sip:bob@pbx.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP client.invalid:5060;branch=z9hG4bK74bf9;rport\r\n\
Max-Forwards: 70\r\n\
From: Alice <sip:alice@example.com>;tag=9fxced76sl\r\n\
To: Bob <sip:bob@example.com>\r\n\
Call-ID: 3848276298220188511@client.invalid\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@198.51.100.7:40000>\r\n\
{extra}\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\r\nv=0\n"
    )
}

fn run(r: &Relay, raw: &str, from: Peer, local: LocalAddr) -> Decision {
    r.handle(raw.as_bytes(), from, local)
}

fn forward(d: Decision) -> (Destination, String, Option<TxKey>) {
    match d {
        Decision::Forward { to, bytes, tx } => (to, String::from_utf8(bytes).unwrap(), tx),
        other => panic!("expected Forward, got {other:?}"),
    }
}

fn respond(d: Decision) -> (Destination, String, u16) {
    match d {
        Decision::Respond { to, bytes, status } => (to, String::from_utf8(bytes).unwrap(), status),
        other => panic!("expected Respond, got {other:?}"),
    }
}

fn dropped(d: Decision) -> DropReason {
    match d {
        Decision::Drop { reason } => reason,
        other => panic!("expected Drop, got {other:?}"),
    }
}

fn top_branch(raw: &str) -> String {
    Message::parse(raw.as_bytes())
        .unwrap()
        .top_via()
        .unwrap()
        .branch
        .unwrap()
        .to_owned()
}

/// The response an upstream UAS would send to `forwarded`.
fn answer(forwarded: &str, status: u16, reason: &str) -> String {
    let m = Message::parse(forwarded.as_bytes()).unwrap();
    let spec = ResponseSpec {
        to_tag: Some("uas1"),
        ..ResponseSpec::new(status, reason)
    };
    String::from_utf8(build_response(&m, &spec).unwrap()).unwrap()
}

#[test]
fn invite_is_forwarded_upstream_with_all_edits() {
    let r = relay();
    let (to, out, tx) = forward(run(&r, &invite(""), udp_client(), udp_local()));
    assert_eq!(
        to,
        Destination {
            transport: Transport::Sctp,
            addr: sa(UPSTREAM),
            assoc: None
        }
    );
    let m = Message::parse(out.as_bytes()).unwrap();
    let vias: Vec<_> = m.vias().map(Result::unwrap).collect();
    assert_eq!(vias.len(), 2);
    assert_eq!(vias[0].transport, "SCTP");
    assert_eq!(vias[0].host.to_string(), "10.0.0.10");
    assert_eq!(vias[0].port, Some(5060));
    let branch = vias[0].branch.unwrap();
    assert!(
        branch.starts_with(BRANCH_PREFIX) && branch.len() == BRANCH_PREFIX.len() + 33,
        "{branch}"
    );
    assert_eq!(vias[1].received, Some(sa(CLIENT).ip()));
    assert_eq!(vias[1].rport, Some(Rport::Port(40000)));
    assert_eq!(m.max_forwards(), Ok(Some(69)));
    let rr: Vec<_> = m.record_routes().map(|r| r.unwrap().uri).collect();
    assert_eq!(
        rr,
        vec![
            "sip:10.0.0.10:5060;transport=sctp;lr",
            "sip:192.0.2.10:5060;transport=udp;lr"
        ]
    );
    assert_eq!(m.body(), b"v=0\n");
    assert_eq!(tx, Some(TxKey::new(branch, Method::Invite)));
    // Everything else is byte-identical.
    assert!(out.contains("From: Alice <sip:alice@example.com>;tag=9fxced76sl\r\n"));
    assert!(out.ends_with("Content-Length: 4\r\n\r\nv=0\n"));
}

#[test]
fn retransmission_cancel_and_ack_share_the_branch() {
    let r = relay();
    let (_, first, _) = forward(run(&r, &invite(""), udp_client(), udp_local()));
    let (_, again, _) = forward(run(&r, &invite(""), udp_client(), udp_local()));
    assert_eq!(first, again, "a retransmission is forwarded identically");
    let branch = top_branch(&first);

    let cancel = invite("")
        .replace("INVITE sip:", "CANCEL sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    let (_, out, tx) = forward(run(&r, &cancel, udp_client(), udp_local()));
    assert_eq!(top_branch(&out), branch);
    assert_eq!(tx, Some(TxKey::new(&branch, Method::Cancel)));
    assert!(!out.contains("Record-Route"), "no Record-Route on CANCEL");

    let ack = invite("")
        .replace("INVITE sip:", "ACK sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
        .replace(
            "To: Bob <sip:bob@example.com>",
            "To: Bob <sip:bob@example.com>;tag=uas1",
        );
    let (_, out, tx) = forward(run(&r, &ack, udp_client(), udp_local()));
    assert_eq!(
        top_branch(&out),
        branch,
        "ACK for a non-2xx gets the INVITE's branch"
    );
    assert_eq!(tx, None, "ACK is not tracked");

    // Another transaction gets another branch.
    let other = invite("").replace("branch=z9hG4bK74bf9", "branch=z9hG4bK74bfa");
    let (_, out, _) = forward(run(&r, &other, udp_client(), udp_local()));
    assert_ne!(top_branch(&out), branch);
    // Another secret too.
    let r2 = Relay::new(RelayConfig {
        secret: [8; 16],
        ..config()
    })
    .unwrap();
    let (_, out, _) = forward(run(&r2, &invite(""), udp_client(), udp_local()));
    assert_ne!(top_branch(&out), branch);
}

#[test]
fn responses_go_back_to_received_and_rport() {
    let r = relay();
    let (_, fwd, req_tx) = forward(run(&r, &invite(""), udp_client(), udp_local()));
    for (status, reason) in [
        (100, "Trying"),
        (180, "Ringing"),
        (200, "OK"),
        (486, "Busy Here"),
    ] {
        let resp = answer(&fwd, status, reason);
        let (to, out, tx) = forward(run(&r, &resp, upstream_peer(), sctp_local()));
        assert_eq!(
            to,
            Destination {
                transport: Transport::Udp,
                addr: sa(CLIENT),
                assoc: None
            }
        );
        assert_eq!(tx, req_tx, "{status}");
        let m = Message::parse(out.as_bytes()).unwrap();
        assert_eq!(m.status(), Some(status));
        assert_eq!(m.vias().count(), 1);
        assert_eq!(m.top_via().unwrap().branch, Some("z9hG4bK74bf9"));
    }
}

#[test]
fn bad_responses_are_dropped() {
    let r = relay();
    let (_, fwd, _) = forward(run(&r, &invite(""), udp_client(), udp_local()));
    let ok = answer(&fwd, 200, "OK");

    // Forged second Via: the tx part no longer verifies.
    let forged = ok.replace("client.invalid:5060", "victim.invalid:5060");
    assert_eq!(
        dropped(run(&r, &forged, upstream_peer(), sctp_local())),
        DropReason::StaleResponse
    );
    // Another relay (other secret) cannot verify it either.
    let r2 = Relay::new(RelayConfig {
        secret: [9; 16],
        ..config()
    })
    .unwrap();
    assert_eq!(
        dropped(run(&r2, &ok, upstream_peer(), sctp_local())),
        DropReason::StaleResponse
    );
    // Arriving over another transport than the relay's Via says.
    let udp_from_upstream = Peer {
        transport: Transport::Udp,
        ..upstream_peer()
    };
    assert_eq!(
        dropped(run(&r, &ok, udp_from_upstream, udp_local())),
        DropReason::MisroutedResponse
    );
    // Top Via not the relay's.
    let client_resp = answer(&invite(""), 200, "OK");
    assert_eq!(
        dropped(run(&r, &client_resp, upstream_peer(), sctp_local())),
        DropReason::MisroutedResponse
    );
    // The relay's sent-by but someone else's branch.
    let foreign = ok.replacen(BRANCH_PREFIX, "z9hG4bKzz", 1);
    assert_eq!(
        dropped(run(&r, &foreign, upstream_peer(), sctp_local())),
        DropReason::MisroutedResponse
    );
    // Nothing below the relay's Via.
    let lone = format!(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/SCTP 10.0.0.10:5060;branch={}\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        top_branch(&fwd)
    );
    assert_eq!(
        dropped(run(&r, &lone, upstream_peer(), sctp_local())),
        DropReason::ResponseForSelf
    );
    // Garbage.
    assert_eq!(
        dropped(r.handle(b"SIP/2.0 200 OK\r\n", upstream_peer(), sctp_local())),
        DropReason::Malformed
    );
}

#[test]
fn next_via_rules() {
    let r = relay();
    // A host-name sent-by without received cannot be answered (no DNS).
    let req = invite("").replace(
        "SIP/2.0/UDP client.invalid:5060;branch=z9hG4bK74bf9;rport",
        "SIP/2.0/UDP 198.51.100.7:40000;branch=z9hG4bK1",
    );
    let (_, fwd, _) = forward(run(&r, &req, udp_client(), udp_local()));
    assert!(
        fwd.contains("Via: SIP/2.0/UDP 198.51.100.7:40000;branch=z9hG4bK1\r\n"),
        "same IP, no rport asked: untouched\n{fwd}"
    );
    let (to, _, _) = forward(run(
        &r,
        &answer(&fwd, 200, "OK"),
        upstream_peer(),
        sctp_local(),
    ));
    assert_eq!(to.addr, sa(CLIENT));

    // A host-name sent-by whose received was stripped on the way back: the branch MAC covers
    // received, so the response is refused as not the relay's (it could not be routed anyway).
    let (_, fwd, _) = forward(run(&r, &invite(""), udp_client(), udp_local()));
    let stripped = answer(&fwd, 200, "OK").replace(";received=198.51.100.7", "");
    assert_eq!(
        dropped(run(&r, &stripped, upstream_peer(), sctp_local())),
        DropReason::StaleResponse
    );

    // A transport the relay lacks in the client's Via: refused on the way in (it is not the
    // transport the request came on), so no response can need it.
    let tls = invite("").replace("SIP/2.0/UDP client.invalid", "SIP/2.0/TLS client.invalid");
    let (_, _, status) = respond(run(&r, &tls, udp_client(), udp_local()));
    assert_eq!(status, 400);
}

#[test]
fn options_keepalive_is_answered() {
    let r = relay();
    for (uri, max_forwards) in [
        ("sip:192.0.2.10", "70"),
        ("sip:192.0.2.10:5060;transport=udp", "0"),
        ("sip:relay.example.com", "1"),
        ("sip:ping@RELAY.example.com.", "70"),
    ] {
        let raw = format!(
            "OPTIONS {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5070;branch=z9hG4bKk\r\n\
Max-Forwards: {max_forwards}\r\nFrom: <sip:mon@example.com>;tag=m1\r\nTo: <{uri}>\r\nCall-ID: ka1\r\nCSeq: 5 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        let (to, out, status) = respond(run(&r, &raw, udp_client(), udp_local()));
        assert_eq!(status, 200, "{uri}");
        // No rport asked, UDP: source IP, sent-by port.
        assert_eq!(
            to,
            Destination {
                transport: Transport::Udp,
                addr: sa("198.51.100.7:5070"),
                assoc: None
            }
        );
        let m = Message::parse(out.as_bytes()).unwrap();
        let tag = m.to_tag().unwrap().unwrap().to_owned();
        assert!(tag.starts_with("sx"), "{tag}");
        // Retransmission: the same tag.
        let (_, again, _) = respond(run(&r, &raw, udp_client(), udp_local()));
        assert_eq!(out, again);
    }
    // OPTIONS for someone else is forwarded.
    let raw = "OPTIONS sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:40000;branch=z9hG4bKk;rport\r\n\
From: <sip:mon@example.com>;tag=m1\r\nTo: <sip:bob@example.com>\r\nCall-ID: ka2\r\nCSeq: 5 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    let (to, out, _) = forward(run(&r, raw, udp_client(), udp_local()));
    assert_eq!(to.addr, sa(UPSTREAM));
    assert!(out.contains("Max-Forwards: 69\r\n"), "inserted when absent");
}

#[test]
fn local_responses_over_sctp_reuse_the_association() {
    let r = relay();
    let raw = invite("")
        .replace("Max-Forwards: 70", "Max-Forwards: 0")
        .replace("SIP/2.0/UDP client.invalid", "SIP/2.0/SCTP client.invalid");
    let (to, out, status) = respond(run(&r, &raw, upstream_peer(), sctp_local()));
    assert_eq!(status, 483);
    assert_eq!(
        to,
        Destination {
            transport: Transport::Sctp,
            addr: sa(UPSTREAM),
            assoc: Some(AssocId(42))
        }
    );
    let m = Message::parse(out.as_bytes()).unwrap();
    let v = m.top_via().unwrap();
    assert_eq!(v.rport, Some(Rport::Port(5060)));
    assert_eq!(v.received, Some(sa(UPSTREAM).ip()));
    assert_eq!(m.call_id(), Ok("3848276298220188511@client.invalid"));
    assert_eq!(m.cseq().unwrap().seq, 1);
    assert_eq!(m.content_length(), Some(0));
}

#[test]
fn max_forwards_zero() {
    let r = relay();
    let raw = invite("").replace("Max-Forwards: 70", "Max-Forwards: 0");
    let (to, out, status) = respond(run(&r, &raw, udp_client(), udp_local()));
    assert_eq!(
        (status, to.addr),
        (483, sa(CLIENT)),
        "rport asked: back to the source port"
    );
    assert!(out.starts_with("SIP/2.0 483 Too Many Hops\r\n"));
    let ack = raw
        .replace("INVITE sip:", "ACK sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 1 ACK");
    assert_eq!(
        dropped(run(&r, &ack, udp_client(), udp_local())),
        DropReason::TooManyHops
    );
    // Max-Forwards 1 is still forwarded, with 0.
    let raw = invite("").replace("Max-Forwards: 70", "Max-Forwards: 1");
    let (_, out, _) = forward(run(&r, &raw, udp_client(), udp_local()));
    assert!(out.contains("Max-Forwards: 0\r\n"));
}

#[test]
fn loops_are_detected() {
    let r = relay();
    let (_, fwd, _) = forward(run(&r, &invite(""), udp_client(), udp_local()));
    // Upstream sends it straight back.
    let (_, out, status) = respond(run(&r, &fwd, upstream_peer(), sctp_local()));
    assert_eq!(status, 482);
    assert!(out.starts_with("SIP/2.0 482 Loop Detected\r\n"));
    // A spiral (same request, other Request-URI) is not a loop.
    let spiral = fwd.replace(
        "INVITE sip:bob@pbx.example.com",
        "INVITE sip:bob2@pbx.example.com",
    );
    let (to, _, _) = forward(run(&r, &spiral, upstream_peer(), sctp_local()));
    assert_eq!(to.addr, sa(UPSTREAM));
    // An ACK in a loop is dropped.
    let ack = fwd
        .replace("INVITE sip:", "ACK sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
        .replace(
            "To: Bob <sip:bob@example.com>",
            "To: Bob <sip:bob@example.com>;tag=x",
        );
    assert_eq!(
        dropped(run(&r, &ack, upstream_peer(), sctp_local())),
        DropReason::Loop
    );
    // A Direct target that is the relay itself.
    let raw = invite("").replace(
        "INVITE sip:bob@pbx.example.com",
        "INVITE sip:bob@10.0.0.10:5060",
    );
    let (_, _, status) = respond(run(&r, &raw, udp_client(), udp_local()));
    assert_eq!(status, 482);
}

#[test]
fn unroutable_gets_502() {
    let r = relay();
    let raw = invite("").replace(
        "INVITE sip:bob@pbx.example.com",
        "INVITE sip:bob@elsewhere.org",
    );
    let (_, out, status) = respond(run(&r, &raw, udp_client(), udp_local()));
    assert_eq!(status, 502);
    assert!(out.starts_with("SIP/2.0 502 Bad Gateway\r\n"));
    let ack = raw
        .replace("INVITE sip:", "ACK sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 1 ACK");
    assert_eq!(
        dropped(run(&r, &ack, udp_client(), udp_local())),
        DropReason::Unroutable
    );
    // tel: URIs have no host; only a default route takes them.
    let tel = invite("").replace("INVITE sip:bob@pbx.example.com", "INVITE tel:+15551234");
    assert_eq!(respond(run(&r, &tel, udp_client(), udp_local())).2, 502);
    let up = RouteTarget::Upstream(Upstream {
        transport: Transport::Sctp,
        addr: sa(UPSTREAM),
    });
    let r2 = Relay::new(RelayConfig {
        default_route: Some(up),
        ..config()
    })
    .unwrap();
    assert_eq!(
        forward(run(&r2, &tel, udp_client(), udp_local())).0.addr,
        sa(UPSTREAM)
    );
    // Direct with a transport the relay lacks.
    let raw = invite("").replace(
        "INVITE sip:bob@pbx.example.com",
        "INVITE sip:bob@198.51.100.9;transport=tls",
    );
    assert_eq!(respond(run(&r, &raw, udp_client(), udp_local())).2, 502);
}

#[test]
fn in_dialog_request_from_upstream_follows_routes() {
    let r = relay();
    // Upstream sends a BYE to the UA: both of the relay's Record-Route values come back as
    // Route values and are removed; the Request-URI (the UA's contact) is the next hop.
    let bye = "BYE sip:alice@198.51.100.7:40000;transport=udp SIP/2.0\r\n\
Via: SIP/2.0/SCTP 10.0.0.20:5060;branch=z9hG4bKup1\r\n\
Route: <sip:10.0.0.10:5060;transport=sctp;lr>, <sip:192.0.2.10:5060;transport=udp;lr>\r\n\
Max-Forwards: 69\r\nFrom: Bob <sip:bob@example.com>;tag=uas1\r\nTo: Alice <sip:alice@example.com>;tag=9fxced76sl\r\n\
Call-ID: 3848276298220188511@client.invalid\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n";
    let (to, out, _) = forward(run(&r, bye, upstream_peer(), sctp_local()));
    assert_eq!(
        to,
        Destination {
            transport: Transport::Udp,
            addr: sa(CLIENT),
            assoc: None
        }
    );
    let m = Message::parse(out.as_bytes()).unwrap();
    assert_eq!(m.routes().count(), 0);
    let top = m.top_via().unwrap();
    assert_eq!(
        (top.transport, top.host.to_string()),
        ("UDP", "192.0.2.10".to_owned())
    );
    assert_eq!(
        m.record_routes().count(),
        2,
        "BYE is record-routed too (harmless in a dialog)"
    );
    let v2 = m.vias().nth(1).unwrap().unwrap();
    assert_eq!(
        (v2.received, v2.rport),
        (Some(sa(UPSTREAM).ip()), Some(Rport::Port(5060))),
        "SCTP: rport always"
    );

    // A Route to another hop after the relay's: that hop's host picks the rule.
    let via_proxy = bye.replace(
        "<sip:192.0.2.10:5060;transport=udp;lr>",
        "<sip:edge.example.com;lr>",
    );
    let (to, out, _) = forward(run(&r, &via_proxy, upstream_peer(), sctp_local()));
    assert_eq!(to.addr, sa(UPSTREAM));
    assert!(
        out.contains("Route: <sip:edge.example.com;lr>\r\n"),
        "{out}"
    );
}

#[test]
fn ipv6_and_tcp_sources() {
    let r = relay();
    let raw = invite("").replace(
        "SIP/2.0/UDP client.invalid:5060;branch=z9hG4bK74bf9;rport",
        "SIP/2.0/UDP [2001:db8::7]:5062;branch=z9hG4bK6",
    );
    let v6 = Peer {
        transport: Transport::Udp,
        addr: sa("[2001:db8::7]:5062"),
        assoc: None,
    };
    let local = LocalAddr {
        transport: Transport::Udp,
        addr: sa("[2001:db8::10]:5060"),
    };
    let (_, out, _) = forward(run(&r, &raw, v6, local));
    assert!(
        out.contains("Via: SIP/2.0/UDP [2001:db8::7]:5062;branch=z9hG4bK6\r\n"),
        "{out}"
    );
    assert!(
        out.contains("Record-Route: <sip:[2001:db8::10]:5060;transport=udp;lr>\r\n"),
        "{out}"
    );
    let (to, _, _) = forward(run(
        &r,
        &answer(&out, 180, "Ringing"),
        upstream_peer(),
        sctp_local(),
    ));
    assert_eq!(to.addr, sa("[2001:db8::7]:5062"));

    // TCP: received and rport are always set, and local responses reuse the connection.
    let tcp = Peer {
        transport: Transport::Tcp,
        addr: sa("198.51.100.7:51000"),
        assoc: None,
    };
    let tcp_local = LocalAddr {
        transport: Transport::Tcp,
        addr: sa("192.0.2.10:5060"),
    };
    let raw = invite("").replace(
        "SIP/2.0/UDP client.invalid:5060;branch=z9hG4bK74bf9;rport",
        "SIP/2.0/TCP 198.51.100.7:5060;branch=z9hG4bK7",
    );
    let (_, out, _) = forward(run(&r, &raw, tcp, tcp_local));
    assert!(out.contains("Via: SIP/2.0/TCP 198.51.100.7:5060;branch=z9hG4bK7;received=198.51.100.7;rport=51000\r\n"), "{out}");
    let (to, _, _) = forward(run(
        &r,
        &answer(&out, 200, "OK"),
        upstream_peer(),
        sctp_local(),
    ));
    assert_eq!(
        to,
        Destination {
            transport: Transport::Tcp,
            addr: sa("198.51.100.7:51000"),
            assoc: None
        }
    );
}

#[test]
fn rfc2543_requests_get_a_stable_branch() {
    let r = relay();
    let old = invite("").replace(";branch=z9hG4bK74bf9;rport", "");
    let (_, a, _) = forward(run(&r, &old, udp_client(), udp_local()));
    let (_, b, _) = forward(run(&r, &old, udp_client(), udp_local()));
    assert_eq!(top_branch(&a), top_branch(&b));
    let next = old.replace("CSeq: 1 INVITE", "CSeq: 2 INVITE");
    let (_, c, _) = forward(run(&r, &next, udp_client(), udp_local()));
    assert_ne!(top_branch(&a), top_branch(&c));
    // Its responses verify (Call-ID, CSeq, From tag and sent-by come back).
    let (to, _, _) = forward(run(
        &r,
        &answer(&a, 200, "OK"),
        upstream_peer(),
        sctp_local(),
    ));
    assert_eq!(to.addr, sa("198.51.100.7:5060"), "received, sent-by port");
}

#[test]
fn register_is_not_record_routed() {
    let r = relay();
    let raw = "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:40000;branch=z9hG4bKr;rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=r1\r\nTo: <sip:alice@example.com>\r\nCall-ID: reg1\r\nCSeq: 1 REGISTER\r\n\
Contact: <sip:alice@198.51.100.7:40000>;expires=3600\r\nContent-Length: 0\r\n\r\n";
    let (to, out, tx) = forward(run(&r, raw, udp_client(), udp_local()));
    assert_eq!(to.addr, sa(UPSTREAM));
    assert!(!out.contains("Record-Route"));
    assert_eq!(tx.map(|k| k.method), Some(Method::Register.to_buf()));
    let no_rr = Relay::new(RelayConfig {
        record_route: false,
        ..config()
    })
    .unwrap();
    let (_, out, _) = forward(run(&no_rr, &invite(""), udp_client(), udp_local()));
    assert!(!out.contains("Record-Route"));
}

#[test]
fn malformed_requests() {
    let r = relay();
    // Answerable: 400 with a reason.
    let cases = [
        (
            invite("").replace("CSeq: 1 INVITE", "CSeq: 1 BYE"),
            "CSeq Method Mismatch",
        ),
        (
            invite("").replace("Max-Forwards: 70", "Max-Forwards: lots"),
            "Invalid Max-Forwards",
        ),
        (
            invite("").replace("Content-Length: 4", "Content-Length: 40"),
            "Bad Request",
        ),
        (
            invite("").replace("INVITE sip:bob@pbx.example.com", "INVITE sip:bob@"),
            "Invalid Request-URI",
        ),
        (invite("Route: <sip:a@b\r\n"), "Invalid Route"),
    ];
    for (raw, reason) in cases {
        let (to, out, status) = respond(run(&r, &raw, udp_client(), udp_local()));
        assert_eq!(status, 400, "{reason}");
        assert_eq!(to.addr, sa(CLIENT));
        assert!(
            out.starts_with(&format!("SIP/2.0 400 {reason}\r\n")),
            "{out}"
        );
    }
    // Not answerable: dropped.
    let drops = [
        invite("").replace("Call-ID: 3848276298220188511@client.invalid\r\n", ""),
        invite("").replace(
            "Via: SIP/2.0/UDP client.invalid:5060;branch=z9hG4bK74bf9;rport\r\n",
            "",
        ),
        invite("").replace(
            "From: Alice <sip:alice@example.com>;tag=9fxced76sl",
            "From: <sip:",
        ),
        invite("").replace("To: Bob <sip:bob@example.com>\r\n", ""),
        invite("").replace("CSeq: 1 INVITE", "CSeq: x"),
        "\x16\x03\x01\x00\x05hello".to_owned(),
        "INVITE sip:a SIP/2.0\r\n".to_owned(),
        String::new(),
    ];
    for raw in drops {
        assert_eq!(
            dropped(run(&r, &raw, udp_client(), udp_local())),
            DropReason::Malformed,
            "{raw:?}"
        );
    }
    // A malformed ACK is never answered.
    let ack = invite("")
        .replace("INVITE sip:", "ACK sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 1 BYE");
    assert_eq!(
        dropped(run(&r, &ack, udp_client(), udp_local())),
        DropReason::Malformed
    );
    // handle_request on a response, handle_response on a request.
    let raw = invite("");
    let m = Message::parse(raw.as_bytes()).unwrap();
    assert_eq!(
        dropped(r.handle_response(&m, udp_client())),
        DropReason::Malformed
    );
    let resp = answer(&invite(""), 200, "OK");
    let m = Message::parse(resp.as_bytes()).unwrap();
    assert_eq!(
        dropped(r.handle_request(&m, udp_client(), udp_local())),
        DropReason::Malformed
    );
}

#[test]
fn reject_for_the_daemon() {
    let r = relay();
    let raw = invite("");
    let m = Message::parse(raw.as_bytes()).unwrap();
    let (to, out, status) = respond(r.reject(&m, udp_client(), 503, "Service Unavailable"));
    assert_eq!((to.addr, status), (sa(CLIENT), 503));
    let resp = Message::parse(out.as_bytes()).unwrap();
    assert!(resp.to_tag().unwrap().is_some());
    assert_eq!(resp.top_via().unwrap().received, Some(sa(CLIENT).ip()));
}

#[test]
fn config_errors() {
    let cases: Vec<(RelayConfig, RelayConfigError)> = vec![
        (
            RelayConfig {
                listeners: vec![],
                ..config()
            },
            RelayConfigError::NoListeners,
        ),
        (
            RelayConfig {
                listeners: vec![Listener {
                    transport: Transport::Sctp,
                    addr: sa("0.0.0.0:5060"),
                    advertise: None,
                }],
                ..config()
            },
            RelayConfigError::UnspecifiedAddress(sa("0.0.0.0:5060")),
        ),
        (
            RelayConfig {
                listeners: vec![Listener {
                    transport: Transport::Sctp,
                    addr: sa("0.0.0.0:5060"),
                    advertise: Some("bad host".into()),
                }],
                ..config()
            },
            RelayConfigError::InvalidAdvertise("bad host".into()),
        ),
        (
            RelayConfig {
                aliases: vec!["x:y".into()],
                ..config()
            },
            RelayConfigError::InvalidAlias("x:y".into()),
        ),
        (
            RelayConfig {
                routes: vec![RouteRule {
                    host: HostMatch::Suffix("1.2.3.4".into()),
                    target: RouteTarget::Direct {
                        default_transport: Transport::Udp,
                    },
                }],
                ..config()
            },
            RelayConfigError::InvalidRouteHost("1.2.3.4".into()),
        ),
        (
            RelayConfig {
                listeners: vec![Listener {
                    transport: Transport::Udp,
                    addr: sa("192.0.2.10:5060"),
                    advertise: None,
                }],
                ..config()
            },
            RelayConfigError::NoListener(Transport::Sctp),
        ),
    ];
    for (cfg, want) in cases {
        assert_eq!(Relay::new(cfg).unwrap_err(), want);
    }
    // Advertised names: Via, Record-Route and identity.
    let cfg = RelayConfig {
        listeners: vec![
            Listener {
                transport: Transport::Sctp,
                addr: sa("0.0.0.0:5080"),
                advertise: Some("sbc.example.net".into()),
            },
            Listener {
                transport: Transport::Udp,
                addr: sa("192.0.2.10:5060"),
                advertise: None,
            },
        ],
        ..config()
    };
    let r = Relay::new(cfg).unwrap();
    let (to, out, _) = forward(run(&r, &invite(""), udp_client(), udp_local()));
    assert_eq!(to.addr, sa(UPSTREAM));
    assert!(out.starts_with("INVITE sip:bob@pbx.example.com SIP/2.0\r\nVia: SIP/2.0/SCTP sbc.example.net:5080;branch="), "{out}");
    assert!(out.contains("Record-Route: <sip:sbc.example.net:5080;transport=sctp;lr>\r\n"));
    assert!(r.is_self(&Host::Domain("SBC.example.net"), Some(5080)));
    assert!(!r.is_self(&Host::Domain("sbc.example.net"), None));
    assert!(
        r.is_self(&Host::Domain("relay.example.com"), None),
        "alias without port: any listener port"
    );
    assert!(!r.is_self(&Host::Domain("relay.example.com"), Some(5999)));
}

#[test]
fn drop_reasons_have_labels() {
    let labels: Vec<&'static str> = DropReason::ALL.iter().map(|r| (*r).into()).collect();
    assert_eq!(
        labels,
        [
            "malformed",
            "too_many_hops",
            "loop",
            "unroutable",
            "misrouted_response",
            "stale_response",
            "response_for_self",
            "unresolvable_via",
            "unsupported_transport",
            "overload"
        ]
    );
    assert_eq!(DropReason::Loop.to_string(), "loop");
}

/// H1 of the hardening review: a client's own `received`/`rport` must not choose where the
/// responses go.
#[test]
fn client_received_and_rport_are_overwritten() {
    let r = relay();
    for via in [
        // Same IP as the source, no rport asked: before the fix both went through untouched.
        "SIP/2.0/UDP 198.51.100.7:40000;branch=z9hG4bKh1;received=127.0.0.3;rport=5999",
        "SIP/2.0/UDP 198.51.100.7:40000;branch=z9hG4bKh1;rport=5999;received=127.0.0.3",
        "SIP/2.0/UDP 198.51.100.7:40000;branch=z9hG4bKh1;received=127.0.0.3",
        "SIP/2.0/UDP client.invalid:5060;branch=z9hG4bKh1;received=127.0.0.3;rport",
    ] {
        let req = invite("").replace(
            "SIP/2.0/UDP client.invalid:5060;branch=z9hG4bK74bf9;rport",
            via,
        );
        let (_, fwd, _) = forward(run(&r, &req, udp_client(), udp_local()));
        let m = Message::parse(fwd.as_bytes()).unwrap();
        let theirs = m.vias().nth(1).unwrap().unwrap();
        assert_eq!(theirs.received, Some(sa(CLIENT).ip()), "{via}\n{fwd}");
        assert!(!fwd.contains("127.0.0.3"), "{via}\n{fwd}");
        let (to, _, _) = forward(run(
            &r,
            &answer(&fwd, 200, "OK"),
            upstream_peer(),
            sctp_local(),
        ));
        assert_eq!(to.addr.ip(), sa(CLIENT).ip(), "{via}");
        if via.contains("rport") {
            assert_eq!(to.addr, sa(CLIENT), "{via}: rport is the source port");
        }
        // A local response goes to the source as well.
        let hop0 = req.replace("Max-Forwards: 70", "Max-Forwards: 0");
        let (to, _, _) = respond(run(&r, &hop0, udp_client(), udp_local()));
        assert_eq!(to.addr.ip(), sa(CLIENT).ip(), "{via}");
    }
}

/// H1: a Via naming a transport other than the one the request came on would have the relay
/// open a connection or association for the responses; the request is refused instead.
#[test]
fn via_transport_must_be_the_arrival_transport() {
    let r = relay();
    for (via, from) in [
        ("SIP/2.0/TCP 127.0.0.3:5060", udp_client()),
        ("SIP/2.0/SCTP 127.0.0.3:5060", udp_client()),
        ("SIP/2.0/UDP 10.0.0.20:5060", upstream_peer()),
    ] {
        let req = invite("").replace("SIP/2.0/UDP client.invalid:5060", via);
        let local = if from.transport == Transport::Udp {
            udp_local()
        } else {
            sctp_local()
        };
        let (to, out, status) = respond(run(&r, &req, from, local));
        assert_eq!(status, 400, "{via}");
        assert!(out.contains("Via Transport Mismatch"), "{out}");
        assert_eq!(
            (to.transport, to.addr),
            (from.transport, from.addr),
            "{via}"
        );
    }
}

/// H1: the branch MAC covers the return path; a response whose next Via was changed on the
/// way back (another received, rport or transport) is not sent anywhere.
#[test]
fn tampered_return_path_is_stale() {
    let r = relay();
    let (_, fwd, _) = forward(run(&r, &invite(""), udp_client(), udp_local()));
    let ok = answer(&fwd, 200, "OK");
    assert!(matches!(
        run(&r, &ok, upstream_peer(), sctp_local()),
        Decision::Forward { .. }
    ));
    for tampered in [
        ok.replace("received=198.51.100.7", "received=127.0.0.3"),
        ok.replace("rport=40000", "rport=5999"),
        ok.replace("SIP/2.0/UDP client.invalid", "SIP/2.0/TCP client.invalid"),
    ] {
        assert_ne!(tampered, ok);
        assert_eq!(
            dropped(run(&r, &tampered, upstream_peer(), sctp_local())),
            DropReason::StaleResponse,
            "{tampered}"
        );
    }
}

/// RFC 3261 section 18.1.1: the same request, routed over another transport, carries that
/// transport's Via and Record-Route and the same branch; without such a listener, 502.
#[test]
fn a_request_can_be_sent_over_another_transport_than_its_route_names() {
    let r = relay();
    let raw = invite("").replace("sip:bob@pbx.example.com", "sip:bob@203.0.113.9");
    let m = Message::parse(raw.as_bytes()).unwrap();
    let (to, udp, _) = forward(r.handle_request(&m, udp_client(), udp_local()));
    assert_eq!(to.transport, Transport::Udp);
    let (to, tcp, tx) =
        forward(r.handle_request_over(&m, udp_client(), udp_local(), Transport::Tcp));
    assert_eq!(
        (to.transport, to.addr),
        (Transport::Tcp, sa("203.0.113.9:5060"))
    );
    assert!(
        tcp.contains("\r\nVia: SIP/2.0/TCP 192.0.2.10:5060;branch="),
        "{tcp}"
    );
    assert!(tcp.contains(
        "Record-Route: <sip:192.0.2.10:5060;transport=tcp;lr>\r\n\
Record-Route: <sip:192.0.2.10:5060;transport=udp;lr>\r\n"
    ));
    assert_eq!(top_branch(&tcp), top_branch(&udp));
    assert_eq!(tx.map(|k| k.branch), Some(top_branch(&udp).into()));
    assert!(r.has_listener(Transport::Tcp));
    let no_tcp = Relay::new(RelayConfig {
        listeners: config()
            .listeners
            .into_iter()
            .filter(|l| l.transport != Transport::Tcp)
            .collect(),
        ..config()
    })
    .unwrap();
    assert!(!no_tcp.has_listener(Transport::Tcp));
    let (_, _, status) =
        respond(no_tcp.handle_request_over(&m, udp_client(), udp_local(), Transport::Tcp));
    assert_eq!(status, 502);
}
