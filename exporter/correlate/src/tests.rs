//! The correlator on recorded event sequences: kernel events and transactions in the order a
//! run produces them, the joins checked.

use super::*;
use sipsctp_ebpf_events::{
    Hz,
    event::{AssocState, Jiffies},
};

const NETNS: u32 = 4026531840;
const PTR: u64 = 0xffff_8880_1234_0000;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn j(ms: u64) -> Jiffies {
    // HZ=1000: one jiffy a millisecond.
    Jiffies {
        count: ms,
        hz: Hz::new(1000).unwrap(),
    }
}

fn key(id: i32) -> AssocKey {
    AssocKey {
        netns: NETNS,
        assoc_id: AssocId(id.unsigned_abs()),
    }
}

fn ev(at: u64, assoc_id: i32, kind: EventKind) -> SctpEvent {
    SctpEvent {
        time: ms(at),
        netns: NETNS,
        assoc_id: AssocId(assoc_id.unsigned_abs()),
        assoc: PTR + assoc_id as u64,
        transport: Some(1),
        local_port: 5060,
        peer_port: 5060,
        peer: Some("10.0.0.20".parse().unwrap()),
        owner: Some(1),
        kind,
    }
}

fn rtx(at: u64, assoc_id: i32, reason: RetransmitReason, rto: u64) -> SctpEvent {
    ev(
        at,
        assoc_id,
        EventKind::Retransmit {
            reason,
            rto: j(rto),
            cwnd: 4380,
            ssthresh: 65535,
            flight_size: 1200,
            error_count: 0,
        },
    )
}

fn sctp_leg(peer: &str, assoc: Option<i32>) -> Leg {
    Leg {
        transport: Transport::Sctp,
        peer: peer.parse().unwrap(),
        local: Some("10.0.0.10:5060".parse().unwrap()),
        assoc: assoc.map(key),
    }
}

fn udp_leg() -> Leg {
    Leg {
        transport: Transport::Udp,
        peer: "198.51.100.7:5060".parse().unwrap(),
        local: Some("192.0.2.10:5060".parse().unwrap()),
        assoc: None,
    }
}

fn tx(id: u64, forwarded: u64, first: Option<u64>, ended: u64, outbound: Leg) -> Transaction {
    Transaction {
        id,
        method: "INVITE".into(),
        call_id: format!("call-{id}").into(),
        cseq: 1,
        branch: format!("z9hG4bKsx{id}").into(),
        inbound: udp_leg(),
        outbound,
        received_at: ms(forwarded),
        forwarded_at: ms(forwarded),
        first_response_at: first.map(ms),
        ended_at: ms(ended),
        outcome: Outcome::Final(200),
        sip_retransmissions: 0,
    }
}

fn drain(c: &mut Correlator, now: u64) -> Vec<Joined> {
    let mut out = Vec::new();
    while let Some(j) = c.poll(ms(now)) {
        out.push(j);
    }
    out
}

/// A lost INIT: the T1 expiries come before the association has an id and are bound to it
/// when it appears; the request sent by address finds them.
#[test]
fn t1_before_the_association_id() {
    let mut c = Correlator::new(Config {
        netns: Some(NETNS),
        ..Config::default()
    });
    let t1 = |at, retries| {
        let mut e = ev(
            at,
            0,
            EventKind::T1Expired {
                timer: T1Timer::Init,
                init_retries: retries,
                max_init_attempts: 8,
                rto: j(1000),
            },
        );
        e.assoc = PTR + 7;
        e
    };
    c.handle_kernel(&t1(1_000, 1));
    c.handle_kernel(&t1(3_000, 2));
    let mut new = ev(
        4_000,
        7,
        EventKind::AssocNew {
            state: AssocState::Established,
        },
    );
    new.assoc = PTR + 7;
    c.handle_kernel(&new);
    // Sent by address before the id existed.
    c.handle_transaction(
        ms(4_200),
        tx(1, 100, Some(4_100), 4_150, sctp_leg("10.0.0.20:5060", None)),
    );
    assert!(drain(&mut c, 4_300).is_empty(), "lingering");
    let joined = drain(&mut c, 10_000);
    assert_eq!(joined.len(), 1);
    let j = &joined[0];
    assert_eq!(j.verdict, Verdict::Yes);
    assert_eq!(
        j.request.iter().map(|n| n.kind).collect::<Vec<_>>(),
        [NoteKind::T1Expired(T1Timer::Init); 2]
    );
    assert!(
        j.request.iter().all(|n| n.assoc == key(7)),
        "bound to the id"
    );
    assert_eq!(j.max_rto, Some(ms(1000)));
    assert_eq!(
        j.tx.outbound.assoc,
        Some(key(7)),
        "the request sent by address names its association once joined"
    );
}

/// A trunk association carries two transactions; a T3 retransmission RTO after the first
/// one's send touches it only, not the one sent after.
#[test]
fn two_transactions_on_one_trunk_only_one_overlaps() {
    let mut c = Correlator::new(Config::default());
    c.handle_kernel(&rtx(10_500, 3, RetransmitReason::T3Rtx, 500));
    let out = sctp_leg("10.0.0.20:5060", Some(3));
    c.handle_transaction(ms(10_800), tx(1, 10_000, Some(10_700), 10_800, out));
    c.handle_transaction(ms(11_000), tx(2, 10_510, Some(10_900), 11_000, out));
    // Answered before the retransmission: not touched either.
    c.handle_transaction(ms(11_000), tx(3, 10_100, Some(10_300), 10_400, out));
    let mut joined = drain(&mut c, 20_000);
    joined.sort_by_key(|j| j.tx.id);
    assert_eq!(
        joined.iter().map(|j| j.verdict).collect::<Vec<_>>(),
        [Verdict::Yes, Verdict::No, Verdict::No]
    );
    assert_eq!(joined[0].request.len(), 1);
    assert_eq!(
        joined[0].request[0].kind.reason().map(|r| r.as_str()),
        Some("t3_rtx")
    );
    assert_eq!(joined[0].request[0].flight_size, 1200);
}

/// Fast retransmission: within two RTOs of the send, however small the srtt (at a low
/// message rate the three SACKs that trigger it take long to come); earlier sends count only
/// when the retransmission evidently released them (answered within two RTOs after it).
#[test]
fn fast_retransmission_window_is_two_rtos() {
    let mut c = Correlator::new(Config::default());
    c.handle_kernel(&ev(
        1_000,
        3,
        EventKind::RtoUpdate {
            rtt: j(10),
            rto: j(200),
            srtt: j(10),
            rttvar: j(5),
        },
    ));
    c.handle_kernel(&rtx(2_050, 3, RetransmitReason::FastRtx, 200));
    let out = sctp_leg("10.0.0.20:5060", Some(3));
    // 2 RTO + slack = 420 ms before the retransmission; srtt is 10 ms.
    c.handle_transaction(ms(2_100), tx(1, 1_700, Some(2_080), 2_100, out));
    // Sent earlier, answered 30 ms after the retransmission: it waited for that chunk (a
    // lost retransmission before it, head-of-line blocking behind it).
    c.handle_transaction(ms(2_100), tx(2, 1_000, Some(2_080), 2_100, out));
    // Answered before the retransmission: not its chunk.
    c.handle_transaction(ms(2_100), tx(3, 2_000, Some(2_040), 2_100, out));
    // Sent earlier and answered long after (more than 2 RTO + slack): not released by it.
    c.handle_transaction(ms(3_000), tx(4, 1_600, Some(2_600), 3_000, out));
    // Never answered (an ACK): the window alone.
    let mut ack = tx(5, 1_600, None, 1_600, out);
    ack.outcome = Outcome::Forwarded;
    c.handle_transaction(ms(2_100), ack);
    let mut joined = drain(&mut c, 9_000);
    joined.sort_by_key(|j| j.tx.id);
    assert_eq!(
        joined.iter().map(|j| j.verdict).collect::<Vec<_>>(),
        [
            Verdict::Yes,
            Verdict::Yes,
            Verdict::No,
            Verdict::No,
            Verdict::No
        ]
    );
    assert_eq!(joined[0].max_rto, Some(ms(200)));
}

/// The association is freed while a transaction still lingers: its events are still there
/// for the join, and the window goes later.
#[test]
fn association_freed_with_transactions_lingering() {
    let mut c = Correlator::new(Config::default());
    let out = sctp_leg("10.0.0.20:5060", Some(5));
    c.handle_kernel(&rtx(1_300, 5, RetransmitReason::T3Rtx, 300));
    c.handle_kernel(&ev(
        1_400,
        5,
        EventKind::AssocChange {
            state: AssocChangeState::CommLost,
            error: 0,
            outbound_streams: 0,
            inbound_streams: 0,
            flags: 0,
        },
    ));
    c.handle_kernel(&ev(
        1_401,
        5,
        EventKind::AssocFree {
            state: AssocState::Closed,
            overall_error_count: 10,
        },
    ));
    c.handle_transaction(ms(1_500), tx(1, 1_000, None, 1_500, out));
    let j = drain(&mut c, 5_000).pop().unwrap();
    assert_eq!(j.verdict, Verdict::Yes);
    let reasons: Vec<_> = j.request.iter().filter_map(|n| n.kind.reason()).collect();
    assert_eq!(reasons, [Reason::T3Rtx, Reason::CommLost]);
    assert_eq!(c.assocs(), 1, "kept a while after the free");
    // A transaction that went out on it and expired 32 s later still finds its events.
    c.handle_transaction(ms(33_000), tx(2, 1_000, None, 33_000, out));
    let j = drain(&mut c, 40_000).pop().unwrap();
    assert_eq!(j.verdict, Verdict::Yes);
    assert_eq!(c.assocs(), 1, "kept for the retention");
    c.handle_transaction(ms(50_000), tx(3, 49_000, None, 49_500, udp_leg()));
    drain(&mut c, 60_000);
    assert_eq!(c.assocs(), 0, "retired after the retention");
}

/// Caps: associations evicted least recently used first, events overwritten, and a
/// transaction whose events went is marked incomplete. All counted.
#[test]
fn caps_are_counted() {
    let mut c = Correlator::new(Config {
        max_assocs: 2,
        events_per_assoc: 4,
        ..Config::default()
    });
    for (i, id) in [1, 2, 3].into_iter().enumerate() {
        c.handle_kernel(&rtx(1_000 + i as u64, id, RetransmitReason::T3Rtx, 300));
    }
    assert_eq!(c.assocs(), 2);
    assert_eq!(c.stats().windows_evicted, 1);
    for t in 0..6 {
        c.handle_kernel(&rtx(2_000 + t * 10, 3, RetransmitReason::T3Rtx, 300));
    }
    assert_eq!(c.stats().events_overwritten, 3);
    let out = sctp_leg("10.0.0.20:5060", Some(3));
    c.handle_transaction(ms(2_200), tx(1, 1_990, Some(2_100), 2_200, out));
    let j = drain(&mut c, 9_000).pop().unwrap();
    assert!(j.incomplete);
    assert_eq!(j.verdict, Verdict::Yes);
    assert_eq!(j.request.len(), 4);

    // The linger cap joins the oldest at once instead of dropping it.
    let mut c = Correlator::new(Config {
        max_lingering: 1,
        ..Config::default()
    });
    c.handle_transaction(ms(100), tx(1, 0, None, 100, udp_leg()));
    c.handle_transaction(ms(100), tx(2, 0, None, 100, udp_leg()));
    assert_eq!(c.stats().linger_overflow, 1);
    let early = c.poll(ms(100)).unwrap();
    assert_eq!((early.tx.id, early.incomplete), (1, true));
    assert!(c.poll(ms(100)).is_none());
    assert_eq!(c.poll(ms(1_000)).unwrap().tx.id, 2);
}

/// Without probes the verdict is unknown, never a guess; a TCP leg is unknown, a UDP leg no.
#[test]
fn unknown_without_kernel_events_or_on_tcp() {
    let mut c = Correlator::new(Config {
        kernel_events: false,
        ..Config::default()
    });
    c.handle_kernel(&rtx(1_000, 3, RetransmitReason::T3Rtx, 300));
    c.handle_transaction(
        ms(1_100),
        tx(1, 900, None, 1_100, sctp_leg("10.0.0.20:5060", Some(3))),
    );
    let j = drain(&mut c, 9_000).pop().unwrap();
    assert_eq!((j.verdict, j.request.len()), (Verdict::Unknown, 0));

    let mut c = Correlator::new(Config::default());
    let mut tcp = udp_leg();
    tcp.transport = Transport::Tcp;
    c.handle_transaction(ms(100), tx(1, 0, None, 100, tcp));
    c.handle_transaction(ms(100), tx(2, 0, None, 100, udp_leg()));
    let mut joined = drain(&mut c, 9_000);
    joined.sort_by_key(|j| j.tx.id);
    assert_eq!(
        joined
            .iter()
            .map(|j| j.verdict.as_str())
            .collect::<Vec<_>>(),
        ["unknown", "no"]
    );
}

/// The response leg: retransmissions on the caller's association after the first response
/// are reported apart and do not make the request "retransmitted".
#[test]
fn response_leg_is_reported_apart() {
    let mut c = Correlator::new(Config::default());
    c.handle_kernel(&rtx(1_250, 9, RetransmitReason::T3Rtx, 200));
    c.handle_kernel(&rtx(800, 9, RetransmitReason::T3Rtx, 200));
    let mut t = tx(1, 1_000, Some(1_100), 1_200, udp_leg());
    t.inbound = sctp_leg("198.51.100.7:5060", Some(9));
    c.handle_transaction(ms(1_200), t);
    let j = drain(&mut c, 9_000).pop().unwrap();
    assert_eq!(j.verdict, Verdict::No, "the request leg is UDP");
    assert_eq!(j.response.len(), 1);
    assert_eq!(j.response[0].time, ms(1_250));
}

/// The linger follows the association's RTO, within its bounds.
#[test]
fn linger_follows_the_rto() {
    let mut c = Correlator::new(Config::default());
    c.handle_kernel(&ev(
        0,
        3,
        EventKind::RtoUpdate {
            rtt: j(400),
            rto: j(1_000),
            srtt: j(400),
            rttvar: j(100),
        },
    ));
    let out = sctp_leg("10.0.0.20:5060", Some(3));
    c.handle_transaction(ms(1_000), tx(1, 500, None, 1_000, out));
    assert_eq!(c.poll_timeout(), Some(ms(3_000)), "2 x RTO");
    assert!(c.poll(ms(2_999)).is_none());
    assert!(c.poll(ms(3_000)).is_some());
}

/// Probes attached late (`auto` mode): what was forwarded before is `unknown`, what came
/// after is judged; probes gone again: `unknown` once more.
#[test]
fn kernel_events_that_start_late_judge_only_what_follows() {
    let mut c = Correlator::new(Config {
        kernel_events: false,
        ..Config::default()
    });
    c.set_kernel_events(ms(1_000), true);
    c.handle_kernel(&rtx(1_200, 3, RetransmitReason::T3Rtx, 300));
    let leg = || sctp_leg("10.0.0.20:5060", Some(3));
    c.handle_transaction(ms(1_300), tx(1, 900, None, 1_300, leg()));
    c.handle_transaction(ms(1_300), tx(2, 1_100, None, 1_300, leg()));
    let mut joined = drain(&mut c, 9_000);
    joined.sort_by_key(|j| j.tx.id);
    assert_eq!(
        joined.iter().map(|j| j.verdict).collect::<Vec<_>>(),
        [Verdict::Unknown, Verdict::Yes]
    );
    c.set_kernel_events(ms(10_000), false);
    c.handle_transaction(ms(10_300), tx(3, 10_100, None, 10_300, leg()));
    assert_eq!(drain(&mut c, 20_000)[0].verdict, Verdict::Unknown);
}

/// An `ACK` forwarded without a transaction: never answered, so the retransmission of its
/// chunk (after it was "done") is still its own, and its end moves to that retransmission.
#[test]
fn a_forwarded_ack_keeps_the_retransmission_of_its_chunk() {
    let mut c = Correlator::new(Config::default());
    let out = sctp_leg("10.0.0.20:5060", Some(3));
    let mut ack = tx(1, 1_000, None, 1_000, out);
    ack.method = "ACK".into();
    ack.outcome = Outcome::Forwarded;
    c.handle_transaction(ms(1_000), ack);
    c.handle_kernel(&rtx(1_300, 3, RetransmitReason::T3Rtx, 600));
    // Not released before the longest linger: its retransmissions come after its end.
    assert!(drain(&mut c, 2_000).is_empty());
    let j = drain(&mut c, 4_100).pop().unwrap();
    assert_eq!((j.verdict, j.request.len()), (Verdict::Yes, 1));
    assert_eq!(j.tx.ended_at, ms(1_300));
    assert!(j.response.is_empty());
}

/// Over the global budget the busiest association gives up its oldest events (counted, and
/// its transactions marked incomplete); events past the retention go without a count.
#[test]
fn the_event_budget_takes_from_the_busiest_association_and_old_events_expire() {
    let mut c = Correlator::new(Config {
        max_notes: 64,
        events_per_assoc: 1000,
        retention: Duration::from_secs(10),
        ..Config::default()
    });
    // Association 3 busy (60 events), association 4 quiet (4 events).
    for i in 0..60 {
        c.handle_kernel(&rtx(1_000 + i, 3, RetransmitReason::FastRtx, 300));
    }
    for i in 0..4 {
        c.handle_kernel(&rtx(1_100 + i, 4, RetransmitReason::T3Rtx, 300));
    }
    assert_eq!(c.notes(), 64);
    c.handle_kernel(&rtx(1_200, 4, RetransmitReason::T3Rtx, 300));
    assert!(c.notes() <= 64, "{}", c.notes());
    let lost = c.stats().events_overwritten;
    assert!(lost >= 1, "the budget pushed something out");
    // The quiet association kept all of its events: a transaction there is complete.
    c.handle_transaction(
        ms(1_300),
        tx(
            1,
            1_099,
            Some(1_250),
            1_300,
            sctp_leg("10.0.0.20:5060", Some(4)),
        ),
    );
    // The busy one's oldest events are gone: its early transaction is incomplete.
    c.handle_transaction(
        ms(1_300),
        tx(
            2,
            999,
            Some(1_250),
            1_300,
            sctp_leg("10.0.0.20:5060", Some(3)),
        ),
    );
    let mut joined = drain(&mut c, 9_000);
    joined.sort_by_key(|j| j.tx.id);
    assert_eq!((joined[0].request.len(), joined[0].incomplete), (5, false));
    assert!(joined[1].incomplete);
    // 20 s later, one more event on association 4: its old ones expire, uncounted.
    c.handle_kernel(&rtx(21_300, 4, RetransmitReason::T3Rtx, 300));
    assert_eq!(c.stats().events_overwritten, lost);
    assert!(c.notes() < 64 - 4, "{}", c.notes());
}
