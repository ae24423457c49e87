//! Transaction tracking ([`TransactionTable`]): for each forwarded request, both legs (with
//! the SCTP association of each), when it arrived, was forwarded, got its first provisional
//! and its final response, and how it ended ([`TxEnd`]: final, expired, or never sent).
//!
//! The stateless relay's forwarding never depends on this table; the driver
//! ([`crate::driver`]) uses it to send a response back from the listener and association its
//! request came on, and turns it into the events that metrics and the exporter consume.
//! Bounded: when full, new transactions are refused with [`Full`] so the caller counts the
//! overflow instead of the table growing or silently forgetting. Sans-IO like the rest of the
//! crate: time arrives as [`MonoTime`] arguments, expiry is polled with
//! [`TransactionTable::poll_expired`] and the next deadline is
//! [`TransactionTable::poll_timeout`]. `ACK` is never tracked (it has no response).

use crate::AssocId;
use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    time::Duration,
};

use crate::{Message, Method, MethodBuf, ParseError, Transport, time::MonoTime};

/// 64 × T1 (500 ms): RFC 3261's Timer B/F, after which a client transaction gives up.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(32);

/// A transaction, as the relay sees it: the branch of the `Via` it added, and the `CSeq`
/// method (a `CANCEL` shares its `INVITE`'s branch but is its own transaction).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TxKey {
    /// The `branch` of the relay's own `Via`.
    pub branch: Box<str>,
    /// The `CSeq` method.
    pub method: MethodBuf,
}

impl TxKey {
    /// A key from its parts.
    pub fn new(branch: &str, method: Method<'_>) -> Self {
        Self {
            branch: branch.into(),
            method: method.to_buf(),
        }
    }

    /// The key a response belongs to: its top `Via` branch (the relay's) and its `CSeq`
    /// method.
    ///
    /// # Errors
    ///
    /// The top `Via` or `CSeq` is missing or malformed, or the `Via` has no branch.
    pub fn from_response(msg: &Message<'_>) -> Result<Self, ParseError> {
        let via = msg.top_via()?;
        let branch = via
            .branch
            .ok_or_else(|| ParseError::missing(crate::Field::ViaParam, via.span().start))?;
        Ok(Self::new(branch, msg.cseq()?.method))
    }
}

/// One side of a relayed transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leg {
    /// The transport.
    pub transport: Transport,
    /// The peer's address.
    pub addr: SocketAddr,
    /// The relay's own address on this leg (the listener), when known.
    pub local: Option<SocketAddr>,
    /// The SCTP association, when known.
    pub assoc: Option<AssocId>,
}

/// A transaction's number, unique for the table's life: joins the events of one
/// transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId(pub u64);

/// What is known of a transaction when its request is first forwarded.
#[derive(Debug, Clone, Copy)]
pub struct TxStart<'a> {
    /// Its `Call-ID`.
    pub call_id: &'a str,
    /// Its `CSeq` number.
    pub cseq: u32,
    /// Where the request came from.
    pub inbound: Leg,
    /// Where it goes.
    pub outbound: Leg,
    /// When the request arrived.
    pub received_at: MonoTime,
}

/// A tracked transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxInfo {
    /// Its number.
    pub id: TxId,
    /// Its key (the relay's branch and the `CSeq` method).
    pub key: TxKey,
    /// Its `Call-ID`.
    pub call_id: Box<str>,
    /// Its `CSeq` number.
    pub cseq: u32,
    /// Where the request came from.
    pub inbound: Leg,
    /// Where it was forwarded (the association once a send reported it).
    pub outbound: Leg,
    /// When the request arrived.
    pub received_at: MonoTime,
    /// When it was first forwarded.
    pub forwarded_at: MonoTime,
    /// When the first provisional response arrived.
    pub first_provisional: Option<MonoTime>,
    /// Retransmissions of the request seen (and forwarded again).
    pub retransmissions: u32,
    /// Whether a send of the request succeeded.
    pub sent: bool,
}

/// How a transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxOutcome {
    /// A final response (200..=699) arrived at `at`.
    Final {
        /// Its status.
        status: u16,
        /// When it arrived.
        at: MonoTime,
    },
    /// No final response within the timeout; given up at `at`.
    Expired {
        /// When.
        at: MonoTime,
    },
    /// The request could not be sent at all.
    SendFailed {
        /// When.
        at: MonoTime,
    },
}

impl TxOutcome {
    /// When the transaction ended.
    pub const fn at(&self) -> MonoTime {
        match self {
            Self::Final { at, .. } | Self::Expired { at } | Self::SendFailed { at } => *at,
        }
    }

    /// The final status, when one came.
    pub const fn status(&self) -> Option<u16> {
        match self {
            Self::Final { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A transaction that ended, with all that is known of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxEnd {
    /// The transaction.
    pub info: TxInfo,
    /// How it ended.
    pub outcome: TxOutcome,
}

impl TxEnd {
    /// From forwarding the request to the end.
    pub const fn duration(&self) -> Duration {
        self.outcome
            .at()
            .saturating_duration_since(self.info.forwarded_at)
    }

    /// From forwarding the request to the first provisional response, if one came.
    pub fn first_provisional(&self) -> Option<Duration> {
        self.info
            .first_provisional
            .map(|t| t.saturating_duration_since(self.info.forwarded_at))
    }
}

/// What [`TransactionTable::on_request_forwarded`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracked {
    /// A new transaction is now tracked.
    New(TxId),
    /// The key is already tracked: a retransmission (counted on the transaction).
    Retransmission(TxId),
}

/// The table is at capacity; the transaction is not tracked. Count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("transaction table full ({capacity} entries)")]
pub struct Full {
    /// The table's capacity.
    pub capacity: usize,
}

/// What a response matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseMatch {
    /// A provisional response of a tracked transaction.
    Provisional {
        /// The transaction.
        id: TxId,
        /// Whether it is the first provisional one.
        first: bool,
        /// Where its request came from (where the response goes back).
        inbound: Leg,
    },
    /// The final response: the transaction ended and is no longer tracked.
    Final(Box<TxEnd>),
    /// No tracked transaction (late, a retransmitted final, or not tracked).
    Unmatched,
}

/// Counters since the table was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxStats {
    /// Transactions tracked.
    pub tracked: u64,
    /// Requests seen again while tracked.
    pub retransmissions: u64,
    /// Requests refused because the table was full.
    pub overflows: u64,
    /// Provisional responses matched.
    pub provisional: u64,
    /// Final responses matched.
    pub completed: u64,
    /// Responses that matched nothing (late, retransmitted finals, or not ours).
    pub unmatched: u64,
    /// Transactions expired.
    pub expired: u64,
    /// Transactions whose request could not be sent.
    pub send_failed: u64,
}

#[derive(Debug, Clone)]
struct Entry {
    seq: u64,
    info: TxInfo,
}

/// A bounded table of forwarded transactions.
///
/// Inputs: [`on_request_forwarded`](Self::on_request_forwarded), [`on_sent`](Self::on_sent),
/// [`on_send_failed`](Self::on_send_failed), [`on_response`](Self::on_response). Outputs:
/// [`poll_expired`](Self::poll_expired) (call it when [`poll_timeout`](Self::poll_timeout) is
/// reached), [`stats`](Self::stats). Times must not go backwards between calls.
#[derive(Debug)]
pub struct TransactionTable {
    capacity: usize,
    entries: HashMap<TxKey, Entry>,
    by_age: BTreeMap<(MonoTime, u64), TxKey>,
    next_seq: u64,
    stats: TxStats,
}

impl TransactionTable {
    /// An empty table holding at most `capacity` transactions.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: HashMap::with_capacity(capacity.min(4096)),
            by_age: BTreeMap::new(),
            next_seq: 0,
            stats: TxStats::default(),
        }
    }

    /// The capacity.
    pub const fn capacity(&self) -> usize {
        self.capacity
    }

    /// Changes the capacity; transactions already tracked stay (a smaller table takes no new
    /// ones until it drains below the new capacity).
    pub const fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
    }

    /// Transactions tracked now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Counters since creation.
    pub const fn stats(&self) -> TxStats {
        self.stats
    }

    /// The transaction with `key`, if tracked.
    pub fn get(&self, key: &TxKey) -> Option<&TxInfo> {
        self.entries.get(key).map(|e| &e.info)
    }

    /// Records that a request was forwarded at `now`. `ACK` must not be passed (the relay
    /// gives it no key).
    ///
    /// # Errors
    ///
    /// [`Full`] when the table is at capacity and `key` is new; the caller counts it.
    pub fn on_request_forwarded(
        &mut self,
        now: MonoTime,
        key: TxKey,
        start: TxStart<'_>,
    ) -> Result<Tracked, Full> {
        if let Some(e) = self.entries.get_mut(&key) {
            e.info.retransmissions = e.info.retransmissions.saturating_add(1);
            self.stats.retransmissions += 1;
            return Ok(Tracked::Retransmission(e.info.id));
        }
        if self.entries.len() >= self.capacity {
            self.stats.overflows += 1;
            return Err(Full {
                capacity: self.capacity,
            });
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let id = TxId(seq);
        self.by_age.insert((now, seq), key.clone());
        let info = TxInfo {
            id,
            key: key.clone(),
            call_id: start.call_id.into(),
            cseq: start.cseq,
            inbound: start.inbound,
            outbound: start.outbound,
            received_at: start.received_at,
            forwarded_at: now,
            first_provisional: None,
            retransmissions: 0,
            sent: false,
        };
        self.entries.insert(key, Entry { seq, info });
        self.stats.tracked += 1;
        Ok(Tracked::New(id))
    }

    /// Records that the request of `key` went out, on SCTP association `assoc` when the
    /// transport said; the first association reported is kept. Returns the transaction's
    /// number and whether this was its first successful send.
    pub fn on_sent(&mut self, key: &TxKey, assoc: Option<AssocId>) -> Option<(TxId, bool)> {
        let e = self.entries.get_mut(key)?;
        if e.info.outbound.assoc.is_none() {
            e.info.outbound.assoc = assoc;
        }
        let first = !e.info.sent;
        e.info.sent = true;
        Some((e.info.id, first))
    }

    /// Records that the request of `key` could not be sent at `now`: a transaction whose
    /// request never went out ends ([`TxOutcome::SendFailed`]); one sent before (this was a
    /// retransmission) stays.
    pub fn on_send_failed(&mut self, now: MonoTime, key: &TxKey) -> Option<TxEnd> {
        if self.entries.get(key)?.info.sent {
            return None;
        }
        let e = self.remove(key)?;
        self.stats.send_failed += 1;
        Some(TxEnd {
            info: e.info,
            outcome: TxOutcome::SendFailed { at: now },
        })
    }

    fn remove(&mut self, key: &TxKey) -> Option<Entry> {
        let e = self.entries.remove(key)?;
        self.by_age.remove(&(e.info.forwarded_at, e.seq));
        Some(e)
    }

    /// Records a response with `status` for `key` at `now`: a provisional one (1xx) notes the
    /// first provisional time; a final one ends the transaction and removes it.
    pub fn on_response(&mut self, now: MonoTime, key: &TxKey, status: u16) -> ResponseMatch {
        if status < 200 {
            return match self.entries.get_mut(key) {
                Some(e) => {
                    let first = e.info.first_provisional.is_none();
                    e.info.first_provisional.get_or_insert(now);
                    self.stats.provisional += 1;
                    ResponseMatch::Provisional {
                        id: e.info.id,
                        first,
                        inbound: e.info.inbound,
                    }
                }
                None => {
                    self.stats.unmatched += 1;
                    ResponseMatch::Unmatched
                }
            };
        }
        let Some(e) = self.remove(key) else {
            self.stats.unmatched += 1;
            return ResponseMatch::Unmatched;
        };
        self.stats.completed += 1;
        ResponseMatch::Final(Box::new(TxEnd {
            info: e.info,
            outcome: TxOutcome::Final { status, at: now },
        }))
    }

    /// Removes and yields the transactions forwarded at least `timeout` before `now`,
    /// oldest first (each is counted in [`TxStats::expired`]).
    pub fn poll_expired(
        &mut self,
        now: MonoTime,
        timeout: Duration,
    ) -> impl Iterator<Item = TxEnd> + '_ {
        Expiring {
            table: self,
            now,
            cutoff: now.checked_sub(timeout),
        }
    }

    /// When the oldest transaction will expire with `timeout`, if any is tracked.
    pub fn poll_timeout(&self, timeout: Duration) -> Option<MonoTime> {
        self.by_age
            .first_key_value()
            .map(|((t, _), _)| t.saturating_add(timeout))
    }
}

/// The iterator [`TransactionTable::poll_expired`] returns.
struct Expiring<'t> {
    table: &'t mut TransactionTable,
    now: MonoTime,
    cutoff: Option<MonoTime>,
}

impl Iterator for Expiring<'_> {
    type Item = TxEnd;

    fn next(&mut self) -> Option<TxEnd> {
        let cutoff = self.cutoff?;
        let (&(t, _), _) = self.table.by_age.first_key_value()?;
        if t > cutoff {
            return None;
        }
        let ((_, _), key) = self.table.by_age.pop_first()?;
        let e = self.table.entries.remove(&key)?;
        self.table.stats.expired += 1;
        Some(TxEnd {
            info: e.info,
            outcome: TxOutcome::Expired { at: self.now },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leg(addr: &str, assoc: Option<AssocId>) -> Leg {
        Leg {
            transport: Transport::Sctp,
            addr: addr.parse().unwrap(),
            local: Some("10.0.0.10:5060".parse().unwrap()),
            assoc,
        }
    }

    fn start(call_id: &str) -> TxStart<'_> {
        TxStart {
            call_id,
            cseq: 1,
            inbound: leg("198.51.100.7:5060", Some(AssocId(7))),
            outbound: leg("10.0.0.20:5060", None),
            received_at: t(0),
        }
    }

    fn key(b: &str, m: Method<'_>) -> TxKey {
        TxKey::new(b, m)
    }

    fn t(ms: u64) -> MonoTime {
        MonoTime::from_nanos(1_000_000_000 + ms * 1_000_000)
    }

    #[test]
    fn invite_lifecycle() {
        let mut table = TransactionTable::new(8);
        let k = key("z9hG4bKsx1", Method::Invite);
        let Ok(Tracked::New(id)) = table.on_request_forwarded(t(1), k.clone(), start("c1")) else {
            panic!("new")
        };
        assert_eq!(
            table.on_request_forwarded(t(2), k.clone(), start("c1")),
            Ok(Tracked::Retransmission(id))
        );
        assert_eq!(table.on_sent(&k, Some(AssocId(42))), Some((id, true)));
        assert_eq!(table.on_sent(&k, Some(AssocId(43))), Some((id, false)));
        assert_eq!(
            table.get(&k).unwrap().outbound.assoc,
            Some(AssocId(42)),
            "first kept"
        );
        assert!(matches!(
            table.on_response(t(10), &k, 100),
            ResponseMatch::Provisional { first: true, .. }
        ));
        assert!(matches!(
            table.on_response(t(20), &k, 180),
            ResponseMatch::Provisional { first: false, inbound, .. } if inbound.assoc == Some(AssocId(7))
        ));
        let ResponseMatch::Final(end) = table.on_response(t(31), &k, 200) else {
            panic!("final")
        };
        assert_eq!(end.outcome.status(), Some(200));
        assert_eq!(end.duration(), Duration::from_millis(30));
        assert_eq!(end.first_provisional(), Some(Duration::from_millis(9)));
        assert_eq!(end.info.retransmissions, 1);
        assert_eq!(&*end.info.call_id, "c1");
        assert_eq!(end.info.received_at, t(0));
        assert!(table.is_empty());
        assert_eq!(table.on_response(t(40), &k, 200), ResponseMatch::Unmatched);
        let s = table.stats();
        assert_eq!(
            (
                s.tracked,
                s.retransmissions,
                s.provisional,
                s.completed,
                s.unmatched
            ),
            (1, 1, 2, 1, 1)
        );
    }

    #[test]
    fn cancel_is_its_own_transaction() {
        let mut table = TransactionTable::new(8);
        let inv = key("z9hG4bKsx1", Method::Invite);
        let can = key("z9hG4bKsx1", Method::Cancel);
        table
            .on_request_forwarded(t(0), inv.clone(), start("c"))
            .unwrap();
        table
            .on_request_forwarded(t(1), can.clone(), start("c"))
            .unwrap();
        assert!(matches!(
            table.on_response(t(2), &can, 200),
            ResponseMatch::Final(_)
        ));
        assert!(table.get(&inv).is_some());
        assert!(
            matches!(table.on_response(t(3), &inv, 487), ResponseMatch::Final(e) if e.outcome.status() == Some(487))
        );
    }

    #[test]
    fn capacity_and_expiry() {
        let mut table = TransactionTable::new(2);
        for (i, b) in ["a", "b"].iter().enumerate() {
            table
                .on_request_forwarded(t(i as u64), key(b, Method::Options), start(b))
                .unwrap();
        }
        assert_eq!(
            table.on_request_forwarded(t(5), key("c", Method::Options), start("c")),
            Err(Full { capacity: 2 })
        );
        let timeout = Duration::from_secs(32);
        assert_eq!(table.poll_timeout(timeout), Some(t(0) + timeout));
        assert_eq!(table.poll_expired(t(31_999), timeout).count(), 0);
        let expired: Vec<_> = table.poll_expired(t(32_000), timeout).collect();
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].outcome, TxOutcome::Expired { at: t(32_000) });
        assert_eq!(&*expired[0].info.call_id, "a");
        assert_eq!(table.poll_timeout(timeout), Some(t(1) + timeout));
        assert_eq!(table.stats().expired, 1);
        assert_eq!(table.stats().overflows, 1);
        // Room again.
        assert!(
            table
                .on_request_forwarded(t(32_001), key("c", Method::Options), start("c"))
                .is_ok()
        );
        table.set_capacity(1);
        assert!(
            table
                .on_request_forwarded(t(32_002), key("d", Method::Options), start("d"))
                .is_err()
        );
    }

    #[test]
    fn send_failure_ends_only_an_unsent_transaction() {
        let mut table = TransactionTable::new(4);
        let k = key("z9hG4bKsx1", Method::Invite);
        table
            .on_request_forwarded(t(0), k.clone(), start("c"))
            .unwrap();
        let end = table.on_send_failed(t(1), &k).unwrap();
        assert_eq!(end.outcome, TxOutcome::SendFailed { at: t(1) });
        assert!(table.is_empty());
        assert_eq!(table.poll_timeout(Duration::from_secs(1)), None);
        // Sent once, then a retransmission fails: still waiting for its response.
        table
            .on_request_forwarded(t(2), k.clone(), start("c"))
            .unwrap();
        table.on_sent(&k, None);
        assert_eq!(table.on_send_failed(t(3), &k), None);
        assert!(table.get(&k).is_some());
    }

    #[test]
    fn key_from_response() {
        let m = Message::parse(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/SCTP 10.0.0.1;branch=z9hG4bKsx\r\nCSeq: 1 INVITE\r\n\r\n").unwrap();
        assert_eq!(
            TxKey::from_response(&m),
            Ok(key("z9hG4bKsx", Method::Invite))
        );
        let m = Message::parse(
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/SCTP 10.0.0.1\r\nCSeq: 1 INVITE\r\n\r\n",
        )
        .unwrap();
        assert!(TxKey::from_response(&m).is_err());
    }
}
