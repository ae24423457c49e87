//! The driver in a quinn-style harness: relays and user agents on an in-memory network with
//! a fake clock. [`Net::drive`] moves messages until nothing is left to move; the tests play
//! the UAC and the UAS by hand, as sipp would.

use std::collections::HashMap;

use super::*;
use crate::{
    Limits, ResponseSpec, build_response,
    relay::{HostMatch, Listener, RelayConfig, RouteRule, RouteTarget, Upstream},
    transaction::TxOutcome,
};

const UAC: &str = "198.51.100.7:40000";
const A_UDP: &str = "192.0.2.10:5060";
const A_SCTP: &str = "10.0.0.10:5060";
const B_SCTP: &str = "10.0.0.20:5060";
const B_UDP: &str = "203.0.113.5:5060";
const UAS: &str = "203.0.113.9:5060";

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn listener(transport: Transport, addr: &str) -> Listener {
    Listener {
        transport,
        addr: sa(addr),
        advertise: None,
    }
}

fn relay(listeners: Vec<Listener>, default: (Transport, &str)) -> Arc<Relay> {
    Arc::new(
        Relay::new(RelayConfig {
            listeners,
            aliases: vec![],
            routes: vec![RouteRule {
                host: HostMatch::AnyIp,
                target: RouteTarget::Direct {
                    default_transport: Transport::Udp,
                },
            }],
            default_route: Some(RouteTarget::Upstream(Upstream {
                transport: default.0,
                addr: sa(default.1),
            })),
            record_route: true,
            secret: [3; 16],
            limits: Limits::DEFAULT,
        })
        .unwrap(),
    )
}

/// One message on the wire.
#[derive(Debug, Clone)]
struct Packet {
    transport: Transport,
    from: SocketAddr,
    to: SocketAddr,
    assoc: Option<AssocId>,
    bytes: Vec<u8>,
}

struct Node {
    driver: RelayDriver,
    listeners: Vec<(Transport, SocketAddr)>,
    events: Vec<SipEvent>,
    transmits: Vec<Transmit>,
}

/// The network: relays, user agents' inboxes, a clock, SCTP association ids per address pair.
struct Net {
    now: MonoTime,
    relays: Vec<Node>,
    wire: VecDeque<Packet>,
    inbox: HashMap<SocketAddr, Vec<Packet>>,
    assocs: HashMap<(SocketAddr, SocketAddr), AssocId>,
    /// Sends the transport refuses (destination address).
    refuse: Vec<SocketAddr>,
    /// Packets the network loses: to this address, starting with this text, this many times.
    lose: Vec<(SocketAddr, &'static str, u32)>,
}

impl Net {
    /// UAC --UDP--> A --SCTP--> B --UDP--> UAS.
    fn two_relays() -> Self {
        let a = relay(
            vec![
                listener(Transport::Udp, A_UDP),
                listener(Transport::Sctp, A_SCTP),
            ],
            (Transport::Sctp, B_SCTP),
        );
        let b = relay(
            vec![
                listener(Transport::Sctp, B_SCTP),
                listener(Transport::Udp, B_UDP),
            ],
            (Transport::Udp, UAS),
        );
        let mut net = Self {
            now: MonoTime::from_nanos(5_000_000_000),
            relays: Vec::new(),
            wire: VecDeque::new(),
            inbox: HashMap::new(),
            assocs: HashMap::new(),
            refuse: Vec::new(),
            lose: Vec::new(),
        };
        net.add(a);
        net.add(b);
        net
    }

    fn add(&mut self, relay: Arc<Relay>) {
        let listeners = relay
            .config()
            .listeners
            .iter()
            .map(|l| (l.transport, l.addr))
            .collect();
        self.relays.push(Node {
            driver: RelayDriver::new(relay, DriverConfig::default()),
            listeners,
            events: Vec::new(),
            transmits: Vec::new(),
        });
    }

    fn assoc(&mut self, a: SocketAddr, b: SocketAddr) -> AssocId {
        let key = if a < b { (a, b) } else { (b, a) };
        let next = AssocId(100 + self.assocs.len() as u32);
        *self.assocs.entry(key).or_insert(next)
    }

    /// A user agent sends.
    fn send(&mut self, transport: Transport, from: &str, to: &str, bytes: &str) {
        let (from, to) = (sa(from), sa(to));
        let assoc = (transport == Transport::Sctp).then(|| self.assoc(from, to));
        self.wire.push_back(Packet {
            transport,
            from,
            to,
            assoc,
            bytes: bytes.as_bytes().to_vec(),
        });
    }

    /// Advances the clock by `d` in steps of 100 ms, running timers and moving packets.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            let step = end
                .saturating_duration_since(self.now)
                .min(Duration::from_millis(100));
            self.step(step);
            self.drive();
        }
    }

    fn step(&mut self, d: Duration) {
        self.now = self.now + d;
        for i in 0..self.relays.len() {
            if self.relays[i]
                .driver
                .poll_timeout()
                .is_some_and(|t| t <= self.now)
            {
                let now = self.now;
                self.relays[i].driver.handle_timeout(now);
                self.flush(i);
            }
        }
    }

    /// Loses the next `n` packets to `to` that start with `start`.
    fn lose(&mut self, to: &str, start: &'static str, n: u32) {
        self.lose.push((sa(to), start, n));
    }

    /// Moves packets until the wire is empty; 1 ms per hop.
    fn drive(&mut self) {
        while let Some(p) = self.wire.pop_front() {
            self.now = self.now + Duration::from_millis(1);
            if let Some(rule) = self.lose.iter_mut().find(|(to, start, n)| {
                *n > 0 && *to == p.to && p.bytes.starts_with(start.as_bytes())
            }) {
                rule.2 -= 1;
                continue;
            }
            let target = self.relays.iter().position(|n| {
                n.listeners
                    .iter()
                    .any(|(t, a)| *t == p.transport && *a == p.to)
            });
            match target {
                Some(i) => {
                    let now = self.now;
                    self.relays[i].driver.handle_inbound(
                        now,
                        Inbound {
                            transport: p.transport,
                            peer: p.from,
                            local: p.to,
                            assoc: p.assoc,
                            bytes: &p.bytes,
                        },
                    );
                    self.flush(i);
                }
                None => self.inbox.entry(p.to).or_default().push(p),
            }
        }
    }

    fn flush(&mut self, i: usize) {
        while let Some(t) = self.relays[i].driver.poll_transmit() {
            let transport = t.to.transport;
            let from = t.from.unwrap_or_else(|| {
                self.relays[i]
                    .listeners
                    .iter()
                    .find(|(tr, _)| *tr == transport)
                    .map(|(_, a)| *a)
                    .unwrap()
            });
            let result = if self.refuse.contains(&t.to.addr) {
                SendResult::Dropped(SendDrop::QueueFull)
            } else {
                let assoc = (transport == Transport::Sctp).then(|| self.assoc(from, t.to.addr));
                if let (Some(given), Some(real)) = (t.to.assoc, assoc) {
                    assert_eq!(given, real, "the driver named another association");
                }
                self.wire.push_back(Packet {
                    transport,
                    from,
                    to: t.to.addr,
                    assoc,
                    bytes: t.bytes.clone(),
                });
                SendResult::Sent { assoc }
            };
            let now = self.now;
            self.relays[i]
                .driver
                .handle_sent(now, &t.to, t.meta.clone(), result);
            self.relays[i].transmits.push(t);
        }
        while let Some(e) = self.relays[i].driver.poll_event() {
            self.relays[i].events.push(e);
        }
    }

    /// Takes what arrived at `addr`.
    fn take(&mut self, addr: &str) -> Vec<String> {
        self.inbox
            .remove(&sa(addr))
            .unwrap_or_default()
            .into_iter()
            .map(|p| String::from_utf8(p.bytes).unwrap())
            .collect()
    }

    fn events(&mut self, i: usize) -> Vec<SipEvent> {
        std::mem::take(&mut self.relays[i].events)
    }
}

fn invite(call_id: &str, max_forwards: u32) -> String {
    format!(
        "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.7:40000;branch=z9hG4bK-{call_id};rport\r\n\
Max-Forwards: {max_forwards}\r\n\
From: <sip:alice@example.com>;tag=a1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: {call_id}\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@198.51.100.7:40000>\r\n\
Content-Length: 0\r\n\r\n"
    )
}

/// The UAS's answer to `request`, with its Record-Route values copied (RFC 3261 12.1.1).
fn answer(request: &str, status: u16, reason: &str) -> String {
    let m = Message::parse(request.as_bytes()).unwrap();
    let spec = ResponseSpec {
        to_tag: Some("b1"),
        ..ResponseSpec::new(status, reason)
    };
    let resp = String::from_utf8(build_response(&m, &spec).unwrap()).unwrap();
    let rr: String = request
        .lines()
        .filter(|l| l.starts_with("Record-Route: "))
        .map(|l| format!("{l}\r\n"))
        .collect();
    let (status_line, rest) = resp.split_once("\r\n").unwrap();
    format!("{status_line}\r\n{rr}{rest}")
}

/// An in-dialog request from the UAC after `ok` (the 200 it got): Route from Record-Route
/// (reversed), to the UAS's contact.
fn in_dialog(ok: &str, method: &str, cseq: u32, branch: &str) -> String {
    let m = Message::parse(ok.as_bytes()).unwrap();
    let rr: Vec<String> = ok
        .lines()
        .filter_map(|l| l.strip_prefix("Record-Route: "))
        .map(str::to_owned)
        .collect();
    let routes: String = rr.iter().rev().map(|r| format!("Route: {r}\r\n")).collect();
    format!(
        "{method} sip:bob@203.0.113.9:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.7:40000;branch=z9hG4bK-{branch};rport\r\n\
Max-Forwards: 70\r\n\
{routes}\
From: <sip:alice@example.com>;tag=a1\r\n\
To: <sip:bob@example.com>;tag=b1\r\n\
Call-ID: {}\r\n\
CSeq: {cseq} {method}\r\n\
Content-Length: 0\r\n\r\n",
        m.call_id().unwrap()
    )
}

fn status_of(msg: &str) -> u16 {
    Message::parse(msg.as_bytes()).unwrap().status().unwrap()
}

fn ended(events: &[SipEvent]) -> Vec<&TxEnd> {
    events
        .iter()
        .filter_map(|e| match e {
            SipEvent::TxEnded(end) => Some(&**end),
            _ => None,
        })
        .collect()
}

#[test]
fn invite_ack_bye_through_two_relays() {
    let mut net = Net::two_relays();
    net.send(Transport::Udp, UAC, A_UDP, &invite("c1", 70));
    net.drive();
    let at_uas = net.take(UAS);
    assert_eq!(at_uas.len(), 1);
    let inv = &at_uas[0];
    assert_eq!(inv.matches("\r\nVia: ").count(), 3, "{inv}");
    assert!(inv.contains("Max-Forwards: 68\r\n"));

    for (status, reason) in [(100, "Trying"), (180, "Ringing"), (200, "OK")] {
        net.send(Transport::Udp, UAS, B_UDP, &answer(inv, status, reason));
    }
    net.drive();
    let at_uac = net.take(UAC);
    assert_eq!(
        at_uac.iter().map(|m| status_of(m)).collect::<Vec<_>>(),
        [100, 180, 200]
    );
    let ok = &at_uac[2];
    assert_eq!(ok.matches("\r\nVia: ").count(), 1, "{ok}");

    // Relay A: the transaction from start to end, with the association it went out on.
    let ev = net.events(0);
    let started: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            SipEvent::TxStarted(i) => Some(i),
            _ => None,
        })
        .collect();
    assert_eq!(started.len(), 1);
    assert_eq!(&*started[0].call_id, "c1");
    assert_eq!(started[0].inbound.transport, Transport::Udp);
    assert_eq!(started[0].inbound.addr, sa(UAC));
    assert_eq!(started[0].inbound.local, Some(sa(A_UDP)));
    let a_to_b = net.assoc(sa(A_SCTP), sa(B_SCTP));
    assert!(ev.iter().any(|e| matches!(e,
        SipEvent::TxForwarded { id, assoc: Some(x), .. } if *id == started[0].id && *x == a_to_b)));
    let provisional: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            SipEvent::TxProvisional { status, first, .. } => Some((*status, *first)),
            _ => None,
        })
        .collect();
    assert_eq!(provisional, [(100, true), (180, false)]);
    let ends = ended(&ev);
    assert_eq!(ends.len(), 1);
    let end = ends[0];
    assert_eq!(end.outcome.status(), Some(200));
    assert_eq!(end.info.outbound.assoc, Some(a_to_b));
    assert_eq!(end.info.cseq, 1);
    assert!(end.info.received_at <= end.info.forwarded_at);
    assert!(end.info.first_provisional.unwrap() < end.outcome.at());
    assert!(end.duration() > Duration::ZERO);
    // Every message in is counted, every message out too.
    let received = ev
        .iter()
        .filter(|e| matches!(e, SipEvent::Received { .. }))
        .count();
    let sent = ev
        .iter()
        .filter(|e| matches!(e, SipEvent::Sent { .. }))
        .count();
    assert_eq!((received, sent), (4, 4));

    // Relay B saw the request come in on that association.
    let ev_b = net.events(1);
    let b_start = ev_b
        .iter()
        .find_map(|e| match e {
            SipEvent::TxStarted(i) => Some(i),
            _ => None,
        })
        .unwrap();
    assert_eq!(b_start.inbound.assoc, Some(a_to_b));
    assert_eq!(b_start.inbound.transport, Transport::Sctp);

    // ACK and BYE follow the Record-Route set back through both relays.
    net.send(Transport::Udp, UAC, A_UDP, &in_dialog(ok, "ACK", 1, "ack1"));
    net.drive();
    let acks = net.take(UAS);
    assert_eq!(acks.len(), 1, "ACK reaches the UAS once");
    assert!(acks[0].starts_with("ACK sip:bob@203.0.113.9:5060 SIP/2.0\r\n"));
    assert!(
        !acks[0].contains("Route:"),
        "both relays removed their Route values"
    );
    let ev = net.events(0);
    assert!(
        !ev.iter().any(|e| matches!(e, SipEvent::TxStarted(_))),
        "ACK is not tracked"
    );
    // ... but reported once sent, with its association, for the exporter.
    let forwarded: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            SipEvent::Forwarded(f) => Some(f),
            _ => None,
        })
        .collect();
    assert_eq!(forwarded.len(), 1, "{ev:?}");
    let f = forwarded[0];
    assert_eq!(f.key.method.as_str(), "ACK");
    assert_eq!((&*f.call_id, f.cseq), ("c1", 1));
    assert_eq!(f.outbound.assoc, Some(a_to_b));
    assert_eq!(f.inbound.addr, sa(UAC));
    assert!(
        f.key.branch.starts_with("z9hG4bK"),
        "the relay's own branch: {f:?}"
    );
    assert!(f.received_at <= f.forwarded_at);

    net.send(Transport::Udp, UAC, A_UDP, &in_dialog(ok, "BYE", 2, "bye1"));
    net.drive();
    let bye = net.take(UAS).pop().unwrap();
    net.send(Transport::Udp, UAS, B_UDP, &answer(&bye, 200, "OK"));
    net.drive();
    assert_eq!(
        net.take(UAC)
            .iter()
            .map(|m| status_of(m))
            .collect::<Vec<_>>(),
        [200]
    );
    let ends = net.events(0);
    let ends = ended(&ends);
    assert_eq!(ends.len(), 1);
    assert_eq!(ends[0].info.key.method.as_str(), "BYE");
}

#[test]
fn cancel_and_487() {
    let mut net = Net::two_relays();
    net.send(Transport::Udp, UAC, A_UDP, &invite("c2", 70));
    net.drive();
    let inv = net.take(UAS).pop().unwrap();
    net.send(Transport::Udp, UAS, B_UDP, &answer(&inv, 180, "Ringing"));
    net.drive();
    net.take(UAC);
    let cancel = invite("c2", 70)
        .replace("INVITE sip:", "CANCEL sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    net.send(Transport::Udp, UAC, A_UDP, &cancel);
    net.drive();
    let at_uas = net.take(UAS);
    assert_eq!(at_uas.len(), 1);
    let fwd_cancel = &at_uas[0];
    // The CANCEL carries the INVITE's branches (16.11: a stateless proxy computes the same).
    let branches = |m: &str| {
        Message::parse(m.as_bytes())
            .unwrap()
            .vias()
            .map(|v| v.unwrap().branch.unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(branches(fwd_cancel), branches(&inv));
    net.send(Transport::Udp, UAS, B_UDP, &answer(fwd_cancel, 200, "OK"));
    net.send(
        Transport::Udp,
        UAS,
        B_UDP,
        &answer(&inv, 487, "Request Terminated"),
    );
    net.drive();
    let statuses: Vec<_> = net.take(UAC).iter().map(|m| status_of(m)).collect();
    assert_eq!(statuses, [200, 487]);
    let ev = net.events(0);
    let mut outcomes: Vec<_> = ended(&ev)
        .iter()
        .map(|e| (e.info.key.method.as_str().to_owned(), e.outcome.status()))
        .collect();
    outcomes.sort();
    assert_eq!(
        outcomes,
        [("CANCEL".into(), Some(200)), ("INVITE".into(), Some(487))]
    );
    // The ACK of the 487 goes hop by hop with the INVITE's branch.
    let ack = invite("c2", 70)
        .replace("INVITE sip:", "ACK sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 1 ACK");
    net.send(Transport::Udp, UAC, A_UDP, &ack);
    net.drive();
    let acks = net.take(UAS);
    assert_eq!(acks.len(), 1);
    assert_eq!(branches(&acks[0]), branches(&inv));
}

#[test]
fn request_retransmissions_are_forwarded_and_counted_once() {
    let mut net = Net::two_relays();
    let inv = invite("c3", 70);
    net.send(Transport::Udp, UAC, A_UDP, &inv);
    net.drive();
    net.advance(Duration::from_millis(500));
    net.send(Transport::Udp, UAC, A_UDP, &inv);
    net.drive();
    let at_uas = net.take(UAS);
    assert_eq!(
        at_uas.len(),
        2,
        "a stateless relay forwards the retransmission"
    );
    assert_eq!(at_uas[0], at_uas[1], "identically");
    let ev = net.events(0);
    assert_eq!(
        ev.iter()
            .filter(|e| matches!(e, SipEvent::TxStarted(_)))
            .count(),
        1
    );
    assert_eq!(
        ev.iter()
            .filter(|e| matches!(e, SipEvent::TxRetransmitted { .. }))
            .count(),
        1
    );
    assert_eq!(
        ev.iter()
            .filter(|e| matches!(e, SipEvent::TxForwarded { .. }))
            .count(),
        1
    );
    net.send(Transport::Udp, UAS, B_UDP, &answer(&at_uas[0], 200, "OK"));
    net.drive();
    let ev = net.events(0);
    assert_eq!(ended(&ev)[0].info.retransmissions, 1);
}

#[test]
fn max_forwards_483_comes_back_through_the_first_relay() {
    let mut net = Net::two_relays();
    net.send(Transport::Udp, UAC, A_UDP, &invite("c4", 1));
    net.drive();
    assert!(net.take(UAS).is_empty());
    let back = net.take(UAC);
    assert_eq!(back.iter().map(|m| status_of(m)).collect::<Vec<_>>(), [483]);
    let ev_b = net.events(1);
    assert!(ev_b.iter().any(|e| matches!(
        e,
        SipEvent::Sent {
            local: true,
            message: MessageKind::Response { status: 483, .. },
            ..
        }
    )));
    let ev_a = net.events(0);
    assert_eq!(ended(&ev_a)[0].outcome.status(), Some(483));
}

#[test]
fn a_loop_is_answered_482() {
    // A routes to B, B routes back to A.
    let mut net = Net::two_relays();
    net.relays[1].driver.set_relay(relay(
        vec![
            listener(Transport::Sctp, B_SCTP),
            listener(Transport::Udp, B_UDP),
        ],
        (Transport::Udp, A_UDP),
    ));
    net.send(Transport::Udp, UAC, A_UDP, &invite("c5", 70));
    net.drive();
    let back = net.take(UAC);
    assert_eq!(back.iter().map(|m| status_of(m)).collect::<Vec<_>>(), [482]);
    let ev = net.events(0);
    assert!(ev.iter().any(|e| matches!(
        e,
        SipEvent::Sent {
            local: true,
            message: MessageKind::Response { status: 482, .. },
            ..
        }
    )));
}

#[test]
fn unanswered_transactions_expire() {
    let mut net = Net::two_relays();
    net.send(Transport::Udp, UAC, A_UDP, &invite("c6", 70));
    net.drive();
    net.events(0);
    let due = net.relays[0]
        .driver
        .transactions()
        .poll_timeout(crate::transaction::DEFAULT_TIMEOUT)
        .unwrap();
    assert_eq!(
        due.saturating_duration_since(net.now),
        crate::transaction::DEFAULT_TIMEOUT - Duration::from_millis(2),
        "forwarded two hops ago"
    );
    net.advance(Duration::from_secs(31));
    assert!(ended(&net.events(0)).is_empty());
    net.advance(Duration::from_secs(1));
    let ev = net.events(0);
    let ends = ended(&ev);
    assert_eq!(ends.len(), 1);
    assert!(matches!(ends[0].outcome, TxOutcome::Expired { .. }));
    assert!(net.relays[0].driver.transactions().is_empty());
    // Relay B retransmitted the INVITE toward the silent UDP side meanwhile (Timer A) and
    // gave up at Timer B.
    assert_eq!(retransmitted(&net.events(1), RetransmitLeg::Request), 6);
    assert_eq!(net.relays[1].driver.bridged(), 0);
    // The final response after the expiry is still relayed (stateless), unmatched.
    let inv = net.take(UAS).pop().unwrap();
    net.send(Transport::Udp, UAS, B_UDP, &answer(&inv, 200, "OK"));
    net.drive();
    assert_eq!(net.take(UAC).len(), 1);
}

#[test]
fn a_refused_send_ends_the_transaction_and_is_counted() {
    let mut net = Net::two_relays();
    net.refuse.push(sa(B_SCTP));
    net.send(Transport::Udp, UAC, A_UDP, &invite("c7", 70));
    net.drive();
    let ev = net.events(0);
    assert!(ev.iter().any(|e| matches!(
        e,
        SipEvent::Dropped {
            cause: DropCause::Send(SendDrop::QueueFull),
            ..
        }
    )));
    let ends = ended(&ev);
    assert!(matches!(ends[0].outcome, TxOutcome::SendFailed { .. }));
    assert_eq!(net.relays[0].driver.transactions().len(), 0);
    assert_eq!(
        net.relays[0].driver.bridged(),
        0,
        "nothing kept for a request never sent"
    );
    assert_eq!(net.relays[0].driver.poll_timeout(), None);
    // So the client's retransmission is forwarded (and refused again), not absorbed.
    net.send(Transport::Udp, UAC, A_UDP, &invite("c7", 70));
    net.drive();
    let ev = net.events(0);
    assert_eq!(absorbed(&ev), 0);
    assert!(ev.iter().any(|e| matches!(
        e,
        SipEvent::Dropped {
            cause: DropCause::Send(SendDrop::QueueFull),
            ..
        }
    )));
}

/// H1 through the driver: the client's own received/rport choose nothing.
#[test]
fn responses_cannot_be_steered_by_the_client() {
    let mut net = Net::two_relays();
    let options = "OPTIONS sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.7:40000;branch=z9hG4bKh1;received=127.0.0.3;rport=5999\r\n\
Max-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\n\
Call-ID: h1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    net.send(Transport::Udp, UAC, A_UDP, options);
    net.drive();
    let req = net.take(UAS).pop().unwrap();
    for _ in 0..3 {
        net.send(Transport::Udp, UAS, B_UDP, &answer(&req, 200, "OK"));
    }
    net.drive();
    // The first 200 reaches the client; the two copies are absorbed where UDP meets SCTP.
    assert_eq!(net.take(UAC).len(), 1, "the 200 reaches the client");
    assert_eq!(absorbed(&net.events(1)), 2);
    assert!(
        net.take("127.0.0.3:5999").is_empty(),
        "none reaches the victim"
    );
    assert!(net.inbox.is_empty(), "{:?}", net.inbox.keys());
}

/// M4: a response goes back from the listener its request came in on, on its association.
#[test]
fn responses_leave_from_the_listener_of_their_association() {
    let second = "10.0.0.10:5070";
    let a = relay(
        vec![
            listener(Transport::Sctp, A_SCTP),
            listener(Transport::Sctp, second),
            listener(Transport::Udp, A_UDP),
        ],
        (Transport::Udp, UAS),
    );
    let mut driver = RelayDriver::new(a, DriverConfig::default());
    let t0 = MonoTime::from_nanos(1);
    let inv = invite("m4", 70).replace(
        "SIP/2.0/UDP 198.51.100.7:40000",
        "SIP/2.0/SCTP 198.51.100.7:40000",
    );
    driver.handle_inbound(
        t0,
        Inbound {
            transport: Transport::Sctp,
            peer: sa(UAC),
            local: sa(second),
            assoc: Some(AssocId(9)),
            bytes: inv.as_bytes(),
        },
    );
    let fwd = driver.poll_transmit().unwrap();
    assert_eq!(fwd.to.addr, sa(UAS));
    driver.handle_sent(
        t0,
        &fwd.to,
        fwd.meta.clone(),
        SendResult::Sent { assoc: None },
    );
    let fwd = String::from_utf8(fwd.bytes).unwrap();
    for status in [180, 200] {
        driver.handle_inbound(
            t0,
            Inbound {
                transport: Transport::Udp,
                peer: sa(UAS),
                local: sa(A_UDP),
                assoc: None,
                bytes: answer(&fwd, status, "X").as_bytes(),
            },
        );
        let back = driver.poll_transmit().unwrap();
        assert_eq!(back.to.addr, sa(UAC));
        assert_eq!(
            back.to.assoc,
            Some(AssocId(9)),
            "{status}: on the request's association"
        );
        assert_eq!(
            back.from,
            Some(sa(second)),
            "{status}: from the request's listener"
        );
    }
    // A local answer (483) leaves from the listener the request came in on, too.
    let hop0 = inv.replace("Max-Forwards: 70", "Max-Forwards: 0");
    driver.handle_inbound(
        t0,
        Inbound {
            transport: Transport::Sctp,
            peer: sa(UAC),
            local: sa(second),
            assoc: Some(AssocId(9)),
            bytes: hop0.as_bytes(),
        },
    );
    let back = driver.poll_transmit().unwrap();
    assert_eq!(
        (back.to.assoc, back.from),
        (Some(AssocId(9)), Some(sa(second)))
    );
}

#[test]
fn malformed_input_is_counted_never_lost() {
    let mut net = Net::two_relays();
    net.send(Transport::Udp, UAC, A_UDP, "garbage\r\n\r\n");
    // A request whose head parses but whose body length lies: 400.
    net.send(
        Transport::Udp,
        UAC,
        A_UDP,
        &invite("c8", 70).replace("Content-Length: 0", "Content-Length: 99"),
    );
    net.drive();
    let ev = net.events(0);
    assert!(ev.iter().any(|e| matches!(
        e,
        SipEvent::Received {
            message: MessageKind::Unparseable,
            ..
        }
    )));
    assert!(ev.iter().any(|e| matches!(
        e,
        SipEvent::Dropped {
            cause: DropCause::Relay(DropReason::Malformed),
            ..
        }
    )));
    assert_eq!(
        net.take(UAC)
            .iter()
            .map(|m| status_of(m))
            .collect::<Vec<_>>(),
        [400]
    );
    assert!(net.take(UAS).is_empty());
}

fn retransmitted(events: &[SipEvent], want: RetransmitLeg) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, SipEvent::Retransmitted { leg, .. } if *leg == want))
        .count()
}

fn absorbed(events: &[SipEvent]) -> usize {
    events
        .iter()
        .filter(|e| {
            matches!(
                e,
                SipEvent::Dropped {
                    cause: DropCause::Absorbed,
                    ..
                }
            )
        })
        .count()
}

/// Reliable -> UDP: relay B retransmits a lost INVITE on UDP (Timer A) until a response, then
/// stops.
#[test]
fn bridge_retransmits_a_lost_invite_toward_udp() {
    let mut net = Net::two_relays();
    net.lose(UAS, "INVITE ", 2);
    net.send(Transport::Udp, UAC, A_UDP, &invite("b1", 70));
    net.drive();
    assert!(net.take(UAS).is_empty(), "lost");
    net.advance(Duration::from_millis(500));
    assert!(
        net.take(UAS).is_empty(),
        "the first retransmission (T1) is lost too"
    );
    net.advance(Duration::from_millis(1000));
    let got = net.take(UAS);
    assert_eq!(got.len(), 1, "the second retransmission (2*T1) arrives");
    let ev = net.events(1);
    assert_eq!(retransmitted(&ev, RetransmitLeg::Request), 2);
    net.send(Transport::Udp, UAS, B_UDP, &answer(&got[0], 180, "Ringing"));
    net.drive();
    net.advance(Duration::from_secs(20));
    assert!(
        net.take(UAS).is_empty(),
        "no retransmission after a provisional response"
    );
    assert_eq!(retransmitted(&net.events(1), RetransmitLeg::Request), 0);
    net.send(Transport::Udp, UAS, B_UDP, &answer(&got[0], 200, "OK"));
    net.drive();
    assert_eq!(
        net.take(UAC)
            .iter()
            .map(|m| status_of(m))
            .collect::<Vec<_>>(),
        [180, 200]
    );
}

/// Reliable -> UDP: a BYE whose 200 is lost is retransmitted (Timer E); the UAS's second 200
/// goes back once.
#[test]
fn bridge_retransmits_a_bye_whose_answer_was_lost() {
    let mut net = Net::two_relays();
    let bye = invite("b2", 70)
        .replace("INVITE sip:", "BYE sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 2 BYE");
    net.send(Transport::Udp, UAC, A_UDP, &bye);
    net.drive();
    let at_uas = net.take(UAS);
    assert_eq!(at_uas.len(), 1);
    net.lose(B_UDP, "SIP/2.0 200", 1);
    net.send(Transport::Udp, UAS, B_UDP, &answer(&at_uas[0], 200, "OK"));
    net.drive();
    net.advance(Duration::from_millis(500));
    let again = net.take(UAS);
    assert_eq!(again.len(), 1, "BYE retransmitted after T1");
    assert_eq!(again[0], at_uas[0], "the same bytes");
    net.send(Transport::Udp, UAS, B_UDP, &answer(&again[0], 200, "OK"));
    net.drive();
    // A late copy of the 200 is absorbed.
    net.send(Transport::Udp, UAS, B_UDP, &answer(&again[0], 200, "OK"));
    net.drive();
    assert_eq!(
        net.take(UAC)
            .iter()
            .map(|m| status_of(m))
            .collect::<Vec<_>>(),
        [200]
    );
    let ev = net.events(1);
    assert_eq!(absorbed(&ev), 1);
    net.advance(Duration::from_secs(40));
    assert!(net.take(UAS).is_empty());
    assert_eq!(
        net.relays[1].driver.bridged(),
        0,
        "nothing kept after Timer K"
    );
}

/// Reliable -> UDP: when the ACK of a 2xx is lost on UDP, the UAS retransmits its 200; the
/// relay absorbs it and re-sends the ACK instead of bothering the caller.
#[test]
fn bridge_resends_the_ack_when_the_udp_side_retransmits_its_2xx() {
    let mut net = Net::two_relays();
    net.send(Transport::Udp, UAC, A_UDP, &invite("b3", 70));
    net.drive();
    let inv = net.take(UAS).pop().unwrap();
    let ok = answer(&inv, 200, "OK");
    net.send(Transport::Udp, UAS, B_UDP, &ok);
    net.drive();
    let ok_at_uac = net.take(UAC).pop().unwrap();
    net.lose(UAS, "ACK ", 1);
    net.send(
        Transport::Udp,
        UAC,
        A_UDP,
        &in_dialog(&ok_at_uac, "ACK", 1, "ack3"),
    );
    net.drive();
    assert!(net.take(UAS).is_empty(), "ACK lost");
    net.events(1);
    net.send(Transport::Udp, UAS, B_UDP, &ok);
    net.drive();
    let acks = net.take(UAS);
    assert_eq!(acks.len(), 1, "the relay re-sent the ACK");
    assert!(acks[0].starts_with("ACK "));
    assert!(
        net.take(UAC).is_empty(),
        "the 200 retransmission stays at the relay"
    );
    let ev = net.events(1);
    assert_eq!(
        (absorbed(&ev), retransmitted(&ev, RetransmitLeg::Ack)),
        (1, 1)
    );
}

/// UDP -> reliable: relay A retransmits a final response toward the UDP client (Timer G)
/// until its ACK.
#[test]
fn bridge_retransmits_a_lost_final_toward_udp_until_the_ack() {
    let mut net = Net::two_relays();
    net.send(Transport::Udp, UAC, A_UDP, &invite("b4", 70));
    net.drive();
    let inv = net.take(UAS).pop().unwrap();
    net.lose(UAC, "SIP/2.0 486", 1);
    net.send(Transport::Udp, UAS, B_UDP, &answer(&inv, 486, "Busy Here"));
    net.drive();
    assert!(net.take(UAC).is_empty(), "lost");
    net.advance(Duration::from_millis(500));
    let got = net.take(UAC);
    assert_eq!(got.iter().map(|m| status_of(m)).collect::<Vec<_>>(), [486]);
    assert_eq!(retransmitted(&net.events(0), RetransmitLeg::Response), 1);
    // The ACK of a non-2xx carries the INVITE's branch; it stops Timer G.
    let ack = invite("b4", 70)
        .replace("INVITE sip:", "ACK sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 1 ACK");
    net.send(Transport::Udp, UAC, A_UDP, &ack);
    net.drive();
    net.advance(Duration::from_secs(10));
    assert!(net.take(UAC).is_empty(), "no retransmission after the ACK");
    assert_eq!(retransmitted(&net.events(0), RetransmitLeg::Response), 0);
    net.advance(Duration::from_secs(200));
    assert_eq!(net.relays[0].driver.bridged(), 0);
}

/// UDP -> reliable: the UDP client's INVITE retransmission is absorbed and answered with the
/// last response (its 180 was lost); the reliable side sees one INVITE.
#[test]
fn bridge_answers_a_udp_request_retransmission_with_the_last_response() {
    let mut net = Net::two_relays();
    let inv = invite("b5", 70);
    net.send(Transport::Udp, UAC, A_UDP, &inv);
    net.drive();
    let at_uas = net.take(UAS).pop().unwrap();
    net.lose(UAC, "SIP/2.0 180", 1);
    net.send(Transport::Udp, UAS, B_UDP, &answer(&at_uas, 180, "Ringing"));
    net.drive();
    assert!(net.take(UAC).is_empty());
    net.events(1);
    net.send(Transport::Udp, UAC, A_UDP, &inv);
    net.drive();
    assert_eq!(
        net.take(UAC)
            .iter()
            .map(|m| status_of(m))
            .collect::<Vec<_>>(),
        [180]
    );
    assert!(net.take(UAS).is_empty(), "not forwarded again");
    assert!(
        !net.events(1)
            .iter()
            .any(|e| matches!(e, SipEvent::Received { .. })),
        "relay B saw nothing"
    );
    let ev = net.events(0);
    assert_eq!(
        (absorbed(&ev), retransmitted(&ev, RetransmitLeg::Response)),
        (1, 1)
    );
}

/// The bridge's bounds: past them a crossing transaction is relayed statelessly and counted.
#[test]
fn bridge_bounds_are_counted() {
    let mut net = Net::two_relays();
    let mut config = DriverConfig::default();
    config.bridge.max_entries = 1;
    let b = net.relays[1].driver.relay().clone();
    net.relays[1].driver = RelayDriver::new(b, config);
    net.send(Transport::Udp, UAC, A_UDP, &invite("b6", 70));
    net.send(Transport::Udp, UAC, A_UDP, &invite("b7", 70));
    net.drive();
    assert_eq!(net.take(UAS).len(), 2, "both relayed");
    let ev = net.events(1);
    assert_eq!(
        ev.iter()
            .filter(|e| matches!(e, SipEvent::BridgeUntracked { .. }))
            .count(),
        1
    );
    assert_eq!(net.relays[1].driver.bridged(), 1);
}

// RFC 3261 section 18.1.1: requests too large for UDP.

const R_ADDR: &str = "192.0.2.30:5060";

/// One relay on `R_ADDR` (UDP, and TCP when `tcp`), routing to the UAS over UDP, with
/// `udp_max_request` 1300 (an MTU of 1500) and `udp_large_to_tcp` as given.
fn mtu_net(tcp: bool, large_to_tcp: bool) -> Net {
    let mut listeners = vec![listener(Transport::Udp, R_ADDR)];
    if tcp {
        listeners.push(listener(Transport::Tcp, R_ADDR));
    }
    let r = relay(listeners, (Transport::Udp, UAS));
    let mut net = Net::two_relays();
    net.relays.clear();
    net.add(r);
    net.relays[0].driver.set_config(DriverConfig {
        udp_max_request: Some(1300),
        udp_large_to_tcp: large_to_tcp,
        ..DriverConfig::default()
    });
    net
}

/// An INVITE whose body makes it `size` bytes.
fn invite_of(call_id: &str, size: usize) -> String {
    let head = invite(call_id, 70).replace("Content-Length: 0\r\n\r\n", "");
    let fixed = head.len() + "Content-Length: 0000\r\n\r\n".len();
    let body = "v".repeat(size - fixed);
    let m = format!("{head}Content-Length: {:04}\r\n\r\n{body}", body.len());
    assert_eq!(m.len(), size);
    m
}

/// What reached `addr`, with its transport.
fn arrived(net: &mut Net, addr: &str) -> Vec<(Transport, String)> {
    net.inbox
        .remove(&sa(addr))
        .unwrap_or_default()
        .into_iter()
        .map(|p| (p.transport, String::from_utf8(p.bytes).unwrap()))
        .collect()
}

fn too_large_drops(events: &[SipEvent]) -> usize {
    events
        .iter()
        .filter(|e| {
            matches!(
                e,
                SipEvent::Dropped {
                    cause: DropCause::Send(SendDrop::TooLarge),
                    ..
                }
            )
        })
        .count()
}

#[test]
fn a_request_too_large_for_udp_is_dropped_and_counted() {
    for tcp in [false, true] {
        let mut net = mtu_net(tcp, false);
        // Relayed, the 1100-byte INVITE gains a Via and Record-Route: under 1300 still.
        net.send(Transport::Udp, UAC, R_ADDR, &invite_of("small", 1100));
        net.drive();
        let got = arrived(&mut net, UAS);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, Transport::Udp);
        assert!(got[0].1.len() <= 1300, "{}", got[0].1.len());
        // 1250 bytes become more than 1300 with the relay's headers: not sent.
        net.events(0);
        net.send(Transport::Udp, UAC, R_ADDR, &invite_of("large", 1250));
        net.drive();
        assert!(net.inbox.is_empty(), "{:?}", net.inbox.keys());
        let ev = net.events(0);
        assert_eq!(too_large_drops(&ev), 1, "tcp listener {tcp}: {ev:?}");
        assert!(ev.iter().any(|e| matches!(e,
            SipEvent::Dropped { peer, .. } if *peer == sa(UAS))));
        assert!(!ev.iter().any(|e| matches!(e, SipEvent::TxStarted(_))));
        assert_eq!(
            net.relays[0].driver.transactions().len(),
            1,
            "only the small INVITE's"
        );
        // A large response toward UDP is not a request: it goes (18.1.1 is about requests).
        let inv = &got[0].1;
        let big_ok = answer(inv, 200, "OK").replace(
            "Content-Length: 0\r\n\r\n",
            &format!("Content-Length: 1400\r\n\r\n{}", "x".repeat(1400)),
        );
        net.send(Transport::Udp, UAS, R_ADDR, &big_ok);
        net.drive();
        let back = arrived(&mut net, UAC);
        assert_eq!(back.len(), 1);
        assert_eq!(status_of(&back[0].1), 200);
        assert!(back[0].1.len() > 1400);
    }
    // Without a limit, the large one goes over UDP as before.
    let mut net = mtu_net(false, false);
    net.relays[0].driver.set_config(DriverConfig::default());
    net.send(Transport::Udp, UAC, R_ADDR, &invite_of("large", 1250));
    net.drive();
    assert_eq!(arrived(&mut net, UAS)[0].0, Transport::Udp);
}

#[test]
fn a_request_too_large_for_udp_goes_over_tcp_with_a_tcp_via() {
    let mut net = mtu_net(true, true);
    net.send(Transport::Udp, UAC, R_ADDR, &invite_of("big", 1250));
    net.drive();
    let got = arrived(&mut net, UAS);
    assert_eq!(got.len(), 1);
    let (transport, inv) = &got[0];
    assert_eq!(*transport, Transport::Tcp);
    let m = Message::parse(inv.as_bytes()).unwrap();
    let top = m.top_via().unwrap();
    assert_eq!(top.transport(), Some(Transport::Tcp), "{inv}");
    assert_eq!(top.host.to_string(), "192.0.2.30");
    // Record-Route: the TCP listener toward the UAS, the UDP one toward the client.
    assert!(
        inv.contains(
            "Record-Route: <sip:192.0.2.30:5060;transport=tcp;lr>\r\n\
Record-Route: <sip:192.0.2.30:5060;transport=udp;lr>\r\n"
        ),
        "{inv}"
    );
    let ev = net.events(0);
    assert_eq!(too_large_drops(&ev), 0);
    assert!(ev.iter().any(|e| matches!(
        e,
        SipEvent::Sent {
            transport: Transport::Tcp,
            message: MessageKind::Request { .. },
            ..
        }
    )));
    // The client's retransmission goes the same way with the same branch.
    net.send(Transport::Udp, UAC, R_ADDR, &invite_of("big", 1250));
    net.drive();
    let again = arrived(&mut net, UAS);
    assert!(again.len() <= 1, "{again:?}");
    if let Some((t, again)) = again.first() {
        assert_eq!(*t, Transport::Tcp);
        let b = Message::parse(again.as_bytes())
            .unwrap()
            .top_via()
            .unwrap()
            .branch;
        assert_eq!(b, top.branch);
    }
    // The UAS answers on the TCP connection: the 200 reaches the client over UDP.
    net.send(Transport::Tcp, UAS, R_ADDR, &answer(inv, 200, "OK"));
    net.drive();
    let back = arrived(&mut net, UAC);
    assert_eq!(back.len(), 1, "{back:?}");
    assert_eq!((back[0].0, status_of(&back[0].1)), (Transport::Udp, 200));
    let ends = net.events(0);
    let ends = ended(&ends);
    assert_eq!(ends.len(), 1);
    assert_eq!(ends[0].outcome.status(), Some(200));
    assert_eq!(ends[0].info.outbound.transport, Transport::Tcp);
}

#[test]
fn without_a_tcp_listener_a_request_too_large_for_udp_is_dropped() {
    let mut net = mtu_net(false, true);
    net.send(Transport::Udp, UAC, R_ADDR, &invite_of("big", 1250));
    net.drive();
    assert!(net.inbox.is_empty());
    assert_eq!(too_large_drops(&net.events(0)), 1);
}

// --- overload --------------------------------------------------------------------------------

#[test]
fn while_shedding_new_requests_get_503_and_accepted_work_goes_on() {
    let mut net = Net::two_relays();
    // c1: a call set up before the overload; c3: an INVITE forwarded, not yet answered.
    net.send(Transport::Udp, UAC, A_UDP, &invite("c1", 70));
    net.drive();
    let inv1 = net.take(UAS).pop().unwrap();
    net.send(Transport::Udp, UAS, B_UDP, &answer(&inv1, 200, "OK"));
    net.drive();
    let ok1 = net.take(UAC).pop().unwrap();
    net.send(Transport::Udp, UAC, A_UDP, &invite("c3", 70));
    net.drive();
    assert_eq!(net.take(UAS).len(), 1);
    net.events(0);

    // Shedding on another transport than the calls' changes nothing.
    net.relays[0].driver.set_shedding(Transport::Tcp, Some(5));
    net.send(Transport::Udp, UAC, A_UDP, &invite("c5", 70));
    net.drive();
    assert_eq!(
        net.take(UAS).len(),
        1,
        "a UDP call refused for TCP's overload"
    );
    net.relays[0].driver.set_shedding(Transport::Tcp, None);
    net.events(0);

    net.relays[0].driver.set_shedding(Transport::Udp, Some(5));
    // A new call: 503 with Retry-After from relay A, nothing reaches the UAS.
    net.send(Transport::Udp, UAC, A_UDP, &invite("c2", 70));
    net.drive();
    assert!(
        net.take(UAS).is_empty(),
        "a new INVITE went on while shedding"
    );
    let at_uac = net.take(UAC);
    assert_eq!(at_uac.len(), 1, "{at_uac:?}");
    assert_eq!(status_of(&at_uac[0]), 503);
    assert!(
        at_uac[0].contains("\r\nRetry-After: 5\r\n"),
        "{}",
        at_uac[0]
    );
    assert!(at_uac[0].contains("Call-ID: c2\r\n"));
    let ev = net.events(0);
    assert_eq!(
        ev.iter()
            .filter(|e| matches!(
                e,
                SipEvent::Dropped {
                    cause: DropCause::Relay(DropReason::Overload),
                    ..
                }
            ))
            .count(),
        1,
        "{ev:?}"
    );
    // Accepted work goes on: c3's retransmission (absorbed by relay A's bridge, which
    // keeps the UDP -> SCTP transaction, as without overload; not refused), its CANCEL, c1's
    // ACK and BYE.
    net.send(Transport::Udp, UAC, A_UDP, &invite("c3", 70));
    let cancel = invite("c3", 70)
        .replace("INVITE sip:", "CANCEL sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    net.send(Transport::Udp, UAC, A_UDP, &cancel);
    net.send(
        Transport::Udp,
        UAC,
        A_UDP,
        &in_dialog(&ok1, "ACK", 1, "ack1"),
    );
    net.send(
        Transport::Udp,
        UAC,
        A_UDP,
        &in_dialog(&ok1, "BYE", 2, "bye1"),
    );
    net.drive();
    let methods: Vec<String> = net
        .take(UAS)
        .iter()
        .map(|m| m.split(' ').next().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(methods, ["CANCEL", "ACK", "BYE"]);
    assert!(net.take(UAC).is_empty(), "nothing of that was refused");
    let ev = net.events(0);
    assert!(
        !ev.iter().any(|e| matches!(
            e,
            SipEvent::Dropped {
                cause: DropCause::Relay(DropReason::Overload),
                ..
            }
        )),
        "{ev:?}"
    );
    assert!(ev.iter().any(|e| matches!(
        e,
        SipEvent::Dropped {
            cause: DropCause::Absorbed,
            ..
        }
    )));
    // Taking work again: a new call goes through.
    net.relays[0].driver.set_shedding(Transport::Udp, None);
    net.send(Transport::Udp, UAC, A_UDP, &invite("c4", 70));
    net.drive();
    assert_eq!(net.take(UAS).len(), 1);
}
