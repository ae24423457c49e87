//! Transaction tracking for observability ([`TransactionTable`]): which forwarded requests
//! got a final response, how long it took, and which ones never did.
//!
//! This is not a stateful proxy: the relay's decisions never depend on this table, it only
//! feeds metrics (latency per method and status, expired transactions, overflows). Bounded:
//! when full, new transactions are refused with [`Full`] so the caller counts the overflow
//! instead of the table growing or silently forgetting. Sans-IO like the rest of the crate:
//! time arrives as `Instant` arguments, expiry is polled with [`TransactionTable::poll_expired`]
//! and the next deadline is [`TransactionTable::poll_timeout`]. `ACK` is never tracked (it has
//! no response).

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    time::{Duration, Instant},
};

use crate::{
    error::ParseError,
    message::Message,
    method::{Method, MethodBuf},
    transport::Transport,
};

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
            .ok_or_else(|| ParseError::missing(crate::error::Field::ViaParam, via.span().start))?;
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
    /// The SCTP association, when known.
    pub assoc: Option<u32>,
}

/// Both sides of a relayed transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Legs {
    /// Where the request came from.
    pub inbound: Leg,
    /// Where it was forwarded to.
    pub outbound: Leg,
}

/// What [`TransactionTable::on_request_forwarded`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracked {
    /// A new transaction is now tracked.
    New,
    /// The key is already tracked: a retransmission (nothing was refreshed).
    Retransmission,
}

/// The table is at capacity; the transaction is not tracked. Count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("transaction table full ({capacity} entries)")]
pub struct Full {
    /// The table's capacity.
    pub capacity: usize,
}

/// A transaction that got its final response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    /// The `CSeq` method.
    pub method: MethodBuf,
    /// The final status (200..=699).
    pub status: u16,
    /// From forwarding the request to the final response.
    pub latency: Duration,
    /// From forwarding the request to the first provisional response, if one came.
    pub first_provisional: Option<Duration>,
    /// Both legs.
    pub legs: Legs,
}

/// A transaction that got no final response within the timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    /// Its key.
    pub key: TxKey,
    /// Age when it was expired.
    pub age: Duration,
    /// Whether a provisional response was seen.
    pub provisional_seen: bool,
    /// Both legs.
    pub legs: Legs,
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
}

#[derive(Debug, Clone)]
struct Entry {
    arrival: Instant,
    seq: u64,
    first_provisional: Option<Instant>,
    legs: Legs,
}

/// A bounded table of forwarded transactions.
///
/// Inputs: [`on_request_forwarded`](Self::on_request_forwarded),
/// [`on_response`](Self::on_response). Outputs: [`poll_expired`](Self::poll_expired) (call it
/// when [`poll_timeout`](Self::poll_timeout) is reached), [`stats`](Self::stats). Times must
/// not go backwards between calls (a monotonic clock).
#[derive(Debug)]
pub struct TransactionTable {
    capacity: usize,
    entries: HashMap<TxKey, Entry>,
    by_age: BTreeMap<(Instant, u64), TxKey>,
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

    /// Records that a request was forwarded at `now`. `ACK` must not be passed (the relay
    /// gives it no key).
    ///
    /// # Errors
    ///
    /// [`Full`] when the table is at capacity and `key` is new; the caller counts it.
    pub fn on_request_forwarded(
        &mut self,
        now: Instant,
        key: TxKey,
        legs: Legs,
    ) -> Result<Tracked, Full> {
        if self.entries.contains_key(&key) {
            self.stats.retransmissions += 1;
            return Ok(Tracked::Retransmission);
        }
        if self.entries.len() >= self.capacity {
            self.stats.overflows += 1;
            return Err(Full {
                capacity: self.capacity,
            });
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_age.insert((now, seq), key.clone());
        self.entries.insert(
            key,
            Entry {
                arrival: now,
                seq,
                first_provisional: None,
                legs,
            },
        );
        self.stats.tracked += 1;
        Ok(Tracked::New)
    }

    /// Records a response with `status` for `key` at `now`: a provisional one (1xx) notes
    /// the first provisional time and returns `None`; a final one completes and removes the
    /// transaction. `None` too when `key` is not tracked (counted as unmatched).
    pub fn on_response(&mut self, now: Instant, key: &TxKey, status: u16) -> Option<Completed> {
        if status < 200 {
            match self.entries.get_mut(key) {
                Some(e) => {
                    e.first_provisional.get_or_insert(now);
                    self.stats.provisional += 1;
                }
                None => self.stats.unmatched += 1,
            }
            return None;
        }
        let Some((key, e)) = self.entries.remove_entry(key) else {
            self.stats.unmatched += 1;
            return None;
        };
        self.by_age.remove(&(e.arrival, e.seq));
        self.stats.completed += 1;
        Some(Completed {
            method: key.method,
            status,
            latency: now.saturating_duration_since(e.arrival),
            first_provisional: e
                .first_provisional
                .map(|t| t.saturating_duration_since(e.arrival)),
            legs: e.legs,
        })
    }

    /// Removes and yields the transactions forwarded at least `timeout` before `now`,
    /// oldest first (each is counted in [`TxStats::expired`]).
    pub fn poll_expired(
        &mut self,
        now: Instant,
        timeout: Duration,
    ) -> impl Iterator<Item = Expired> + '_ {
        Expiring {
            table: self,
            now,
            cutoff: now.checked_sub(timeout),
        }
    }

    /// When the oldest transaction will expire with `timeout`, if any is tracked (and the
    /// deadline is representable).
    pub fn poll_timeout(&self, timeout: Duration) -> Option<Instant> {
        self.by_age
            .first_key_value()
            .and_then(|((t, _), _)| t.checked_add(timeout))
    }
}

/// The iterator [`TransactionTable::poll_expired`] returns.
struct Expiring<'t> {
    table: &'t mut TransactionTable,
    now: Instant,
    cutoff: Option<Instant>,
}

impl Iterator for Expiring<'_> {
    type Item = Expired;

    fn next(&mut self) -> Option<Expired> {
        let cutoff = self.cutoff?;
        let first = self.table.by_age.first_entry()?;
        if first.key().0 > cutoff {
            return None;
        }
        let (arrival, _) = *first.key();
        let key = first.remove();
        let e = self.table.entries.remove(&key)?;
        self.table.stats.expired += 1;
        Some(Expired {
            key,
            age: self.now.saturating_duration_since(arrival),
            provisional_seen: e.first_provisional.is_some(),
            legs: e.legs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn legs() -> Legs {
        let leg = |t, p, a| Leg {
            transport: t,
            addr: SocketAddr::from(([127, 0, 0, 1], p)),
            assoc: a,
        };
        Legs {
            inbound: leg(Transport::Udp, 5060, None),
            outbound: leg(Transport::Sctp, 5080, Some(3)),
        }
    }

    fn key(b: &str, m: Method<'_>) -> TxKey {
        TxKey::new(b, m)
    }

    #[test]
    fn invite_lifecycle() {
        let t0 = Instant::now();
        let mut t = TransactionTable::new(10);
        let k = key("z9hG4bKa", Method::Invite);
        assert_eq!(
            t.on_request_forwarded(t0, k.clone(), legs()),
            Ok(Tracked::New)
        );
        assert_eq!(
            t.on_request_forwarded(t0 + Duration::from_millis(500), k.clone(), legs()),
            Ok(Tracked::Retransmission)
        );
        assert_eq!(t.on_response(t0 + Duration::from_millis(20), &k, 100), None);
        assert_eq!(t.on_response(t0 + Duration::from_millis(90), &k, 180), None);
        let done = t
            .on_response(t0 + Duration::from_millis(700), &k, 200)
            .unwrap();
        assert_eq!(done.method.as_method(), Method::Invite);
        assert_eq!(done.status, 200);
        assert_eq!(
            done.latency,
            Duration::from_millis(700),
            "retransmission refreshed nothing"
        );
        assert_eq!(done.first_provisional, Some(Duration::from_millis(20)));
        assert_eq!(done.legs, legs());
        assert!(t.is_empty());
        // A retransmitted final response matches nothing.
        assert_eq!(
            t.on_response(t0 + Duration::from_millis(800), &k, 200),
            None
        );
        let s = t.stats();
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
        let t0 = Instant::now();
        let mut t = TransactionTable::new(10);
        let inv = key("z9hG4bKa", Method::Invite);
        let can = key("z9hG4bKa", Method::Cancel);
        assert_eq!(
            t.on_request_forwarded(t0, inv.clone(), legs()),
            Ok(Tracked::New)
        );
        assert_eq!(
            t.on_request_forwarded(t0, can.clone(), legs()),
            Ok(Tracked::New)
        );
        assert_eq!(
            t.on_response(t0, &can, 200).map(|c| c.method),
            Some(Method::Cancel.to_buf())
        );
        assert_eq!(t.on_response(t0, &inv, 487).map(|c| c.status), Some(487));
    }

    #[test]
    fn capacity_and_expiry() {
        let t0 = Instant::now();
        let mut t = TransactionTable::new(2);
        assert!(
            t.on_request_forwarded(t0, key("a", Method::Bye), legs())
                .is_ok()
        );
        assert!(
            t.on_request_forwarded(t0 + Duration::from_secs(1), key("b", Method::Bye), legs())
                .is_ok()
        );
        assert_eq!(
            t.on_request_forwarded(t0, key("c", Method::Bye), legs()),
            Err(Full { capacity: 2 })
        );
        // A retransmission of a tracked key is still recognised when full.
        assert_eq!(
            t.on_request_forwarded(t0, key("a", Method::Bye), legs()),
            Ok(Tracked::Retransmission)
        );
        assert_eq!(t.on_response(t0, &key("b", Method::Bye), 101), None);
        assert_eq!(t.poll_timeout(DEFAULT_TIMEOUT), Some(t0 + DEFAULT_TIMEOUT));
        assert_eq!(
            t.poll_expired(t0 + Duration::from_secs(31), DEFAULT_TIMEOUT)
                .count(),
            0
        );
        let gone: Vec<_> = t
            .poll_expired(t0 + Duration::from_secs(32), DEFAULT_TIMEOUT)
            .collect();
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].key.branch.as_ref(), "a");
        assert_eq!(gone[0].age, DEFAULT_TIMEOUT);
        assert!(!gone[0].provisional_seen);
        let gone: Vec<_> = t
            .poll_expired(t0 + Duration::from_secs(60), DEFAULT_TIMEOUT)
            .collect();
        assert_eq!(gone.len(), 1);
        assert!(gone[0].provisional_seen);
        assert!(t.is_empty());
        assert_eq!(t.poll_timeout(DEFAULT_TIMEOUT), None);
        assert_eq!(t.stats().expired, 2);
        assert_eq!(t.stats().overflows, 1);
        // Room again.
        assert!(
            t.on_request_forwarded(t0 + Duration::from_secs(61), key("c", Method::Bye), legs())
                .is_ok()
        );
        assert_eq!(t.capacity(), 2);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn partial_drain_keeps_the_rest() {
        let t0 = Instant::now();
        let mut t = TransactionTable::new(10);
        for i in 0..5u64 {
            let k = key(&format!("b{i}"), Method::Options);
            t.on_request_forwarded(t0 + Duration::from_secs(i), k, legs())
                .unwrap();
        }
        let now = t0 + Duration::from_secs(40);
        let first = t.poll_expired(now, DEFAULT_TIMEOUT).next().unwrap();
        assert_eq!(first.key.branch.as_ref(), "b0");
        // Dropping the iterator early leaves the others for the next poll.
        let rest: Vec<_> = t
            .poll_expired(now, DEFAULT_TIMEOUT)
            .map(|e| e.key.branch)
            .collect();
        assert_eq!(
            rest.iter().map(AsRef::as_ref).collect::<Vec<&str>>(),
            ["b1", "b2", "b3", "b4"]
        );
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
