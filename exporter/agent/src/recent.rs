//! The most recent joined transactions, for `GET /transactions/recent`: an operator without a
//! tracing backend still sees which kernel event touched which transaction.

use std::{collections::VecDeque, sync::Mutex, time::Duration};

use serde_json::{Value, json};
use sipsctp_correlate::{Joined, KernelNote, Leg, NoteKind, Outcome, Transport};

/// How many joined transactions are kept.
pub const RECENT_TRANSACTIONS: usize = 1024;

/// A joined transaction with its peers' names.
#[derive(Debug, Clone)]
struct Entry {
    joined: Joined,
    inbound: Box<str>,
    outbound: Box<str>,
}

/// The ring of recent joined transactions.
#[derive(Debug, Default)]
pub struct RecentTransactions {
    entries: Mutex<VecDeque<Entry>>,
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

const fn transport(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
        Transport::Sctp => "sctp",
    }
}

fn leg(l: &Leg, name: &str) -> Value {
    json!({
        "transport": transport(l.transport),
        "peer": l.peer.to_string(),
        "peer_name": name,
        "local": l.local.map(|a| a.to_string()),
        "assoc_id": l.assoc.map(|k| k.assoc_id.get()),
    })
}

/// One kernel note as JSON (also the shape of span events' attributes).
pub fn note_json(n: &KernelNote) -> Value {
    let (event, detail) = match n.kind {
        NoteKind::Retransmission(_) => ("sctp.retransmission", None),
        NoteKind::T3Expired => ("sctp.t3_rtx.expired", None),
        NoteKind::T1Expired(t) => (
            "sctp.t1.expired",
            Some(match t {
                sipsctp_ebpf_events::event::T1Timer::Init => "init",
                sipsctp_ebpf_events::event::T1Timer::Cookie => "cookie",
            }),
        ),
        NoteKind::PathDown => ("sctp.path.change", Some("down")),
        NoteKind::CommLost => ("sctp.association.change", Some("comm_lost")),
    };
    json!({
        "time_ns": ns(n.time),
        "event": event,
        "reason": n.kind.reason().map(|r| r.as_str()),
        "detail": detail,
        "assoc_id": n.assoc.assoc_id.get(),
        "path": n.peer.map(|a| a.to_string()),
        "rto_ms": ms(n.rto),
        "cwnd": n.cwnd,
        "flight_size": n.flight_size,
    })
}

impl Entry {
    fn to_json(&self) -> Value {
        let j = &self.joined;
        let tx = &j.tx;
        let (outcome, status) = match tx.outcome {
            Outcome::Final(s) => ("final", Some(s)),
            Outcome::Expired => ("expired", None),
            Outcome::SendFailed => ("send_failed", None),
            Outcome::Forwarded => ("forwarded", None),
        };
        json!({
            "method": &*tx.method,
            "call_id": &*tx.call_id,
            "cseq": tx.cseq,
            "branch": &*tx.branch,
            "outcome": outcome,
            "status": status,
            "kernel_retransmitted": j.verdict.as_str(),
            "incomplete": j.incomplete,
            "received_ns": ns(tx.received_at),
            "forwarded_ns": ns(tx.forwarded_at),
            "first_response_ns": tx.first_response_at.map(ns),
            "ended_ns": ns(tx.ended_at),
            "duration_ms": ms(tx.ended_at.saturating_sub(tx.forwarded_at)),
            "first_response_ms": tx.first_response_at.map(|t| ms(t.saturating_sub(tx.forwarded_at))),
            "sip_retransmissions": tx.sip_retransmissions,
            "max_rto_ms": j.max_rto.map(ms),
            "inbound": leg(&tx.inbound, &self.inbound),
            "outbound": leg(&tx.outbound, &self.outbound),
            "kernel": {
                "request": j.request.iter().map(note_json).collect::<Vec<_>>(),
                "response": j.response.iter().map(note_json).collect::<Vec<_>>(),
            },
        })
    }
}

impl RecentTransactions {
    /// Keeps `joined` (the oldest goes when full).
    pub fn push(&self, joined: Joined, inbound: &str, outbound: &str) {
        let mut q = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() >= RECENT_TRANSACTIONS {
            q.pop_front();
        }
        q.push_back(Entry {
            joined,
            inbound: inbound.into(),
            outbound: outbound.into(),
        });
    }

    /// The last `limit` transactions, newest last; with `kernel_only`, only those with kernel
    /// events on either leg.
    pub fn to_json(&self, limit: usize, kernel_only: bool) -> Value {
        let q = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let mut picked: Vec<Value> = q
            .iter()
            .rev()
            .filter(|e| {
                !kernel_only || !e.joined.request.is_empty() || !e.joined.response.is_empty()
            })
            .take(limit)
            .map(Entry::to_json)
            .collect();
        picked.reverse();
        json!({ "transactions": picked })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipsctp_correlate::{AssocKey, Transaction, Verdict};
    use sipsctp_ebpf_events::event::RetransmitReason;

    fn joined(id: u64, notes: usize) -> Joined {
        let sctp = Leg {
            transport: Transport::Sctp,
            peer: "10.0.0.20:5060".parse().unwrap(),
            local: None,
            assoc: Some(AssocKey {
                netns: 1,
                assoc_id: sipsctp_correlate::AssocId(7),
            }),
        };
        let note = KernelNote {
            time: Duration::from_millis(1500),
            kind: NoteKind::Retransmission(RetransmitReason::T3Rtx),
            assoc: AssocKey {
                netns: 1,
                assoc_id: sipsctp_correlate::AssocId(7),
            },
            peer: Some("10.0.0.20".parse().unwrap()),
            rto: Duration::from_millis(400),
            cwnd: 4380,
            flight_size: 1200,
        };
        Joined {
            tx: Transaction {
                id,
                method: "INVITE".into(),
                call_id: format!("c{id}").into(),
                cseq: 1,
                branch: "z9hG4bKx".into(),
                inbound: Leg {
                    transport: Transport::Udp,
                    peer: "192.0.2.1:5060".parse().unwrap(),
                    local: None,
                    assoc: None,
                },
                outbound: sctp,
                received_at: Duration::from_millis(1000),
                forwarded_at: Duration::from_millis(1001),
                first_response_at: Some(Duration::from_millis(1900)),
                ended_at: Duration::from_millis(2000),
                outcome: Outcome::Final(200),
                sip_retransmissions: 0,
            },
            verdict: if notes > 0 { Verdict::Yes } else { Verdict::No },
            request: vec![note; notes],
            response: Vec::new(),
            max_rto: Some(Duration::from_millis(400)),
            incomplete: false,
        }
    }

    #[test]
    fn newest_last_bounded_and_filtered_by_kernel_events() {
        let r = RecentTransactions::default();
        for i in 0..(RECENT_TRANSACTIONS as u64 + 10) {
            r.push(joined(i, usize::from(i % 2 == 0)), "other", "carrier-a");
        }
        let all = r.to_json(3, false);
        let ids: Vec<&str> = all["transactions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["call_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["c1031", "c1032", "c1033"]);
        let k = r.to_json(2, true);
        let t = &k["transactions"][1];
        assert_eq!(t["call_id"], "c1032");
        assert_eq!(t["kernel_retransmitted"], "yes");
        assert_eq!(t["outbound"]["peer_name"], "carrier-a");
        assert_eq!(t["outbound"]["assoc_id"], 7);
        let n = &t["kernel"]["request"][0];
        assert_eq!(n["event"], "sctp.retransmission");
        assert_eq!(n["reason"], "t3_rtx");
        assert_eq!(n["path"], "10.0.0.20");
        assert_eq!(n["rto_ms"], 400.0);
        assert_eq!(
            r.to_json(usize::MAX, false)["transactions"]
                .as_array()
                .unwrap()
                .len(),
            RECENT_TRANSACTIONS
        );
    }
}
