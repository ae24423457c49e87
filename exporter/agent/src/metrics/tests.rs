//! The exporter's metrics from joined transactions and kernel events, read back from the
//! registry as Prometheus would scrape them.

use std::{net::IpAddr, time::Duration};

use prometheus::Registry;
use sipsctp_correlate::{
    AssocKey, Joined, KernelNote, Leg, NoteKind, Outcome, Transaction, Transport, Verdict,
};
use sipsctp_ebpf_events::{
    Hz,
    event::{EventKind, Jiffies, PathCommand, PathState, RetransmitReason, SctpEvent},
};

fn j(ms: u64) -> Jiffies {
    // HZ=1000: one jiffy a millisecond.
    Jiffies {
        count: ms,
        hz: Hz::new(1000).unwrap(),
    }
}

use super::*;

fn value(r: &Registry, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let families = r.gather();
    let family = families.iter().find(|f| f.name() == name)?;
    let kind = family.get_field_type();
    family
        .get_metric()
        .iter()
        .find(|m| {
            labels.iter().all(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == *k && l.value() == *v)
            })
        })
        .map(|m| match kind {
            prometheus::proto::MetricType::HISTOGRAM => m.get_histogram().get_sample_count() as f64,
            prometheus::proto::MetricType::GAUGE => m.get_gauge().get_value(),
            _ => m.get_counter().get_value(),
        })
}

fn peers() -> PeerNames {
    PeerNames::new([(
        "carrier-a".to_owned(),
        vec!["10.0.0.20".parse::<IpAddr>().unwrap()],
    )])
    .unwrap()
}

fn note(kind: NoteKind) -> KernelNote {
    KernelNote {
        time: Duration::from_millis(1200),
        kind,
        assoc: AssocKey {
            netns: 1,
            assoc_id: sipsctp_correlate::AssocId(3),
        },
        peer: None,
        rto: Duration::from_millis(400),
        cwnd: 0,
        flight_size: 0,
    }
}

fn joined(verdict: Verdict, request: Vec<KernelNote>, response: Vec<KernelNote>) -> Joined {
    let leg = |t, p: &str| Leg {
        transport: t,
        peer: p.parse().unwrap(),
        local: None,
        assoc: None,
    };
    Joined {
        tx: Transaction {
            id: 1,
            method: "invite".into(),
            call_id: "c".into(),
            cseq: 1,
            branch: "b".into(),
            inbound: leg(Transport::Sctp, "192.0.2.7:5060"),
            outbound: leg(Transport::Sctp, "10.0.0.20:5060"),
            received_at: Duration::from_millis(1000),
            forwarded_at: Duration::from_millis(1000),
            first_response_at: Some(Duration::from_millis(1100)),
            ended_at: Duration::from_millis(1500),
            outcome: Outcome::Final(200),
            sip_retransmissions: 0,
        },
        verdict,
        request,
        response,
        max_rto: None,
        incomplete: false,
    }
}

#[test]
fn joined_transactions_are_labelled_by_verdict_peer_leg_and_reason() {
    let r = Registry::new();
    let m = ExporterMetrics::register(&r, &peers()).unwrap();
    let rtx = note(NoteKind::Retransmission(RetransmitReason::T3Rtx));
    // Two retransmissions of one reason count the transaction once.
    m.observe_joined(
        &joined(Verdict::Yes, vec![rtx, rtx], vec![note(NoteKind::PathDown)]),
        "other",
        "carrier-a",
    );
    m.observe_joined(&joined(Verdict::No, vec![], vec![]), "other", "carrier-a");
    let d = "sipsctp_sip_transaction_duration_seconds";
    for (verdict, n) in [("yes", 1.0), ("no", 1.0)] {
        let labels = [
            ("method", "INVITE"),
            ("status_class", "2xx"),
            ("kernel_retransmitted", verdict),
        ];
        assert_eq!(value(&r, d, &labels), Some(n), "{verdict}");
    }
    assert_eq!(
        value(
            &r,
            "sipsctp_sip_transaction_first_response_seconds",
            &[("method", "INVITE"), ("kernel_retransmitted", "yes")]
        ),
        Some(1.0)
    );
    let affected = "sipsctp_sip_transactions_kernel_affected_total";
    assert_eq!(
        value(
            &r,
            affected,
            &[
                ("peer", "carrier-a"),
                ("leg", "request"),
                ("reason", "t3_rtx")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &r,
            affected,
            &[
                ("peer", "other"),
                ("leg", "response"),
                ("reason", "path_down")
            ]
        ),
        Some(1.0)
    );
    // Pre-set series are there at 0 for every configured peer.
    assert_eq!(
        value(
            &r,
            affected,
            &[
                ("peer", "carrier-a"),
                ("leg", "request"),
                ("reason", "comm_lost")
            ]
        ),
        Some(0.0)
    );
}

fn event(assoc_id: u32, peer: &str, kind: EventKind) -> SctpEvent {
    SctpEvent {
        time: Duration::from_secs(1),
        netns: 1,
        assoc_id: sipsctp_correlate::AssocId(assoc_id),
        assoc: 0xffff_0001,
        transport: Some(0xffff_0002),
        local_port: 5060,
        peer_port: 5060,
        peer: Some(peer.parse().unwrap()),
        owner: None,
        kind,
    }
}

#[test]
fn kernel_events_count_under_the_peer_of_their_path_or_association() {
    let r = Registry::new();
    let m = ExporterMetrics::register(&r, &peers()).unwrap();
    let p = peers();
    let mut t = PeerTracker::new();
    let rto = |assoc, path: &str, ms| {
        event(
            assoc,
            path,
            EventKind::RtoUpdate {
                rtt: j(ms / 4),
                rto: j(ms),
                srtt: j(ms / 4),
                rttvar: j(0),
            },
        )
    };
    // The association is named by its first (named) path; its second path is then carrier-a
    // too.
    t.observe(&m, &p, &rto(3, "10.0.0.20", 400));
    t.observe(&m, &p, &rto(3, "10.0.1.20", 800));
    t.observe(
        &m,
        &p,
        &event(
            3,
            "10.0.1.20",
            EventKind::PathChange {
                command: PathCommand::Down,
                error: 0,
                previous_state: PathState::Active,
                error_count: 0,
            },
        ),
    );
    t.observe(&m, &p, &rto(9, "198.51.100.1", 1000));
    let rto_of = |path| {
        value(
            &r,
            "sipsctp_peer_rto_seconds",
            &[("peer", "carrier-a"), ("path", path)],
        )
    };
    assert_eq!(rto_of("10.0.0.20"), Some(0.4));
    assert_eq!(rto_of("10.0.1.20"), Some(0.8));
    assert_eq!(
        value(
            &r,
            "sipsctp_peer_path_events_total",
            &[("peer", "carrier-a"), ("event", "down")]
        ),
        Some(1.0)
    );
    // Unnamed peers have no gauges (their paths would be an unbounded label).
    assert_eq!(
        value(&r, "sipsctp_peer_rto_seconds", &[("peer", "other")]),
        None
    );
}
