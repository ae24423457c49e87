//! The association table: which kernel associations are open on which socket, to which peer
//! addresses, and what the transport may do with them (reuse for replies, the
//! `sctp_max_assocs` limit). Pure state machine: notifications go in as `handle_*` calls,
//! decisions come out as return values; no sockets here.
//!
//! Linux hands out assoc ids again as soon as one is freed, so an entry is identified by
//! (socket, assoc id) *and* checked against the peer address before it is reused: a COMM_UP for
//! an id that is still tracked with another peer replaces the stale entry instead of merging,
//! and a lookup by address never returns an entry whose addresses do not contain that address.
//!
//! A destination that is one of the addresses of an existing association (a multi-homed peer
//! listed twice, Kamailio issue 2429) maps to that association.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    time::{Duration, Instant},
};

use crate::AssocId;

/// Which of the transport's sockets (listeners) an association belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId(pub u32);

/// The reason text of the ABORT sent when the limit is exceeded (Kamailio's words).
pub const LIMIT_ABORT_REASON: &str = "Maximum configured number of open associations exceeded";

/// One tracked association.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Association {
    /// Its socket.
    pub socket: SocketId,
    /// Its kernel id.
    pub id: AssocId,
    /// The peer's addresses (the first is the one it came up with); updated by path events.
    pub peer_addrs: Vec<SocketAddr>,
    /// The peer address currently primary, when known.
    pub primary: Option<SocketAddr>,
    /// Streams negotiated.
    pub outbound_streams: u16,
    /// Streams negotiated.
    pub inbound_streams: u16,
    /// When COMM_UP arrived.
    pub since: Instant,
    /// Last message sent or received on it.
    pub last_used: Instant,
}

/// What [`AssocTable::handle_comm_up`] decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommUp {
    /// Accepted (and tracked when tracking is on). `replaced` is a stale entry that had the
    /// same id with another peer (its DOWN was never seen).
    Accepted {
        /// The stale entry that was dropped, if any.
        replaced: Option<Association>,
    },
    /// Over `sctp_max_assocs`: the caller must ABORT it with [`LIMIT_ABORT_REASON`].
    Reject,
}

/// How an outbound message should be addressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    /// On an existing association (reuse).
    Assoc(AssocId),
    /// By address: the kernel uses an existing association to it or sets one up.
    Addr(SocketAddr),
}

/// An outbound send that would open an association beyond the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("sending to {dest} would open association {open_next} but sctp_max_assocs is {max}")]
pub struct LimitExceeded {
    /// The destination.
    pub dest: SocketAddr,
    /// The number of associations the send would make.
    pub open_next: u64,
    /// The configured limit.
    pub max: i64,
}

/// The table plus the open-association count it keeps even with tracking off.
#[derive(Debug)]
pub struct AssocTable {
    entries: HashMap<(SocketId, AssocId), Association>,
    by_addr: HashMap<(SocketId, SocketAddr), AssocId>,
    rejected: HashSet<(SocketId, AssocId)>,
    opened: u64,
    tracking: bool,
    reuse: bool,
    max_assocs: i64,
}

impl AssocTable {
    /// An empty table with Kamailio's `sctp_assoc_tracking`, `sctp_assoc_reuse` and
    /// `sctp_max_assocs` (-1 = no limit).
    pub fn new(tracking: bool, reuse: bool, max_assocs: i64) -> AssocTable {
        AssocTable {
            entries: HashMap::new(),
            by_addr: HashMap::new(),
            rejected: HashSet::new(),
            opened: 0,
            tracking,
            reuse: reuse && tracking,
            max_assocs,
        }
    }

    /// Open associations (Kamailio's `current_opened_connections`).
    pub fn opened(&self) -> u64 {
        self.opened
    }

    /// Tracked associations, or -1 with tracking off (`current_tracked_connections`).
    pub fn tracked(&self) -> i64 {
        if self.tracking {
            i64::try_from(self.entries.len()).unwrap_or(i64::MAX)
        } else {
            -1
        }
    }

    /// Switches tracking; off flushes the table (and turns reuse off with it).
    pub fn set_tracking(&mut self, on: bool) {
        self.tracking = on;
        if !on {
            self.entries.clear();
            self.by_addr.clear();
            self.reuse = false;
        }
    }

    /// Switches reuse (effective only with tracking on).
    pub fn set_reuse(&mut self, on: bool) {
        self.reuse = on && self.tracking;
    }

    /// Changes the limit; -1 = none. Already open associations stay.
    pub fn set_max_assocs(&mut self, max: i64) {
        self.max_assocs = max;
    }

    fn over_limit(&self, open: u64) -> bool {
        self.max_assocs >= 0 && open > u64::try_from(self.max_assocs).unwrap_or(0)
    }

    /// COMM_UP (or RESTART treated as up) for `id` with `peer`.
    pub fn handle_comm_up(
        &mut self,
        now: Instant,
        socket: SocketId,
        id: AssocId,
        peer: SocketAddr,
        outbound_streams: u16,
        inbound_streams: u16,
    ) -> CommUp {
        if self.over_limit(self.opened + 1) {
            self.rejected.insert((socket, id));
            return CommUp::Reject;
        }
        self.opened += 1;
        if !self.tracking {
            return CommUp::Accepted { replaced: None };
        }
        let replaced = self.remove(socket, id);
        if replaced.is_some() {
            // Its DOWN was never seen; it no longer counts as open.
            self.opened = self.opened.saturating_sub(1);
        }
        self.by_addr.insert((socket, peer), id);
        self.entries.insert(
            (socket, id),
            Association {
                socket,
                id,
                peer_addrs: vec![peer],
                primary: Some(peer),
                outbound_streams,
                inbound_streams,
                since: now,
                last_used: now,
            },
        );
        CommUp::Accepted { replaced }
    }

    /// COMM_LOST or SHUTDOWN_COMP: the association is gone. Returns the entry when it was
    /// tracked. An association rejected at COMM_UP was never counted and is only forgotten.
    pub fn handle_down(&mut self, socket: SocketId, id: AssocId) -> Option<Association> {
        if self.rejected.remove(&(socket, id)) {
            return None;
        }
        self.opened = self.opened.saturating_sub(1);
        self.remove(socket, id)
    }

    fn remove(&mut self, socket: SocketId, id: AssocId) -> Option<Association> {
        let a = self.entries.remove(&(socket, id))?;
        for addr in &a.peer_addrs {
            if self.by_addr.get(&(socket, *addr)) == Some(&id) {
                self.by_addr.remove(&(socket, *addr));
            }
        }
        Some(a)
    }

    /// A peer address was added to / confirmed on the association (PEER_ADDR_CHANGE
    /// ADDR_ADDED, ADDR_CONFIRMED, ADDR_AVAILABLE).
    pub fn handle_addr_added(&mut self, socket: SocketId, id: AssocId, addr: SocketAddr) {
        if let Some(a) = self.entries.get_mut(&(socket, id)) {
            if !a.peer_addrs.contains(&addr) {
                a.peer_addrs.push(addr);
            }
            self.by_addr.insert((socket, addr), id);
        }
    }

    /// A peer address was removed (ADDR_REMOVED).
    pub fn handle_addr_removed(&mut self, socket: SocketId, id: AssocId, addr: SocketAddr) {
        if let Some(a) = self.entries.get_mut(&(socket, id)) {
            a.peer_addrs.retain(|x| *x != addr);
            if a.primary == Some(addr) {
                a.primary = None;
            }
            if self.by_addr.get(&(socket, addr)) == Some(&id) {
                self.by_addr.remove(&(socket, addr));
            }
        }
    }

    /// The primary path moved (ADDR_MADE_PRIM).
    pub fn handle_primary(&mut self, socket: SocketId, id: AssocId, addr: SocketAddr) {
        self.handle_addr_added(socket, id, addr);
        if let Some(a) = self.entries.get_mut(&(socket, id)) {
            a.primary = Some(addr);
        }
    }

    /// A message arrived on `id` from `peer`: refreshes `last_used`, and learns `peer` as an
    /// address of the association if it was not known (a multi-homed peer's other path).
    /// Returns false when `id` is tracked for a peer that does not own `peer` (a reused id whose
    /// COMM_UP has not been seen yet): then nothing is learnt.
    pub fn handle_message(
        &mut self,
        now: Instant,
        socket: SocketId,
        id: AssocId,
        peer: SocketAddr,
    ) -> bool {
        match self.entries.get_mut(&(socket, id)) {
            Some(a) => {
                a.last_used = now;
                if !a.peer_addrs.contains(&peer) {
                    // A message from an unknown address on a known id: only a stale entry can
                    // explain it when the address belongs to another association.
                    if let Some(other) = self.by_addr.get(&(socket, peer))
                        && *other != id
                    {
                        return false;
                    }
                    a.peer_addrs.push(peer);
                    self.by_addr.insert((socket, peer), id);
                }
                true
            }
            None => true,
        }
    }

    /// Whether `id` was rejected at COMM_UP (aborted, its DOWN not seen yet).
    pub fn is_rejected(&self, socket: SocketId, id: AssocId) -> bool {
        self.rejected.contains(&(socket, id))
    }

    /// The tracked association that owns `addr` on `socket`, if any.
    pub fn lookup(&self, socket: SocketId, addr: SocketAddr) -> Option<&Association> {
        let id = self.by_addr.get(&(socket, addr))?;
        self.entries
            .get(&(socket, *id))
            .filter(|a| a.peer_addrs.contains(&addr))
    }

    /// The tracked association `id` on `socket`.
    pub fn get(&self, socket: SocketId, id: AssocId) -> Option<&Association> {
        self.entries.get(&(socket, id))
    }

    /// How to send to `dest` from `socket`: on its association when tracked and reuse is on,
    /// else by address. A send by address to a peer with no known association would open one:
    /// refused when that exceeds `sctp_max_assocs` (what Kamailio documents but never did).
    ///
    /// With tracking off the table cannot tell whether an association to `dest` exists, so the
    /// limit is enforced only at COMM_UP. Associations still being set up are not counted yet:
    /// several sends to new peers in quick succession can pass this check, and the one over
    /// the limit is then aborted at its COMM_UP.
    ///
    /// # Errors
    /// [`LimitExceeded`].
    pub fn route(&self, socket: SocketId, dest: SocketAddr) -> Result<Route, LimitExceeded> {
        if let Some(a) = self.lookup(socket, dest) {
            return Ok(if self.reuse {
                Route::Assoc(a.id)
            } else {
                Route::Addr(dest)
            });
        }
        if self.tracking && self.over_limit(self.opened + 1) {
            return Err(LimitExceeded {
                dest,
                open_next: self.opened + 1,
                max: self.max_assocs,
            });
        }
        Ok(Route::Addr(dest))
    }

    /// Every tracked association (unordered).
    pub fn iter(&self) -> impl Iterator<Item = &Association> {
        self.entries.values()
    }

    /// Associations idle longer than `idle` (for views; the kernel's autoclose does the
    /// closing).
    pub fn idle_since(&self, now: Instant, idle: Duration) -> impl Iterator<Item = &Association> {
        self.entries
            .values()
            .filter(move |a| now.saturating_duration_since(a.last_used) > idle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: SocketId = SocketId(0);

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn up(t: &mut AssocTable, id: u32, peer: &str) -> CommUp {
        t.handle_comm_up(Instant::now(), S, AssocId(id), addr(peer), 10, 10)
    }

    #[test]
    fn tracks_reuses_and_forgets() {
        let mut t = AssocTable::new(true, true, -1);
        assert_eq!(
            up(&mut t, 1, "10.0.0.1:5060"),
            CommUp::Accepted { replaced: None }
        );
        assert_eq!((t.opened(), t.tracked()), (1, 1));
        assert_eq!(
            t.route(S, addr("10.0.0.1:5060")),
            Ok(Route::Assoc(AssocId(1)))
        );
        assert_eq!(
            t.route(S, addr("10.0.0.2:5060")),
            Ok(Route::Addr(addr("10.0.0.2:5060")))
        );
        assert!(t.handle_down(S, AssocId(1)).is_some());
        assert_eq!((t.opened(), t.tracked()), (0, 0));
        assert_eq!(
            t.route(S, addr("10.0.0.1:5060")),
            Ok(Route::Addr(addr("10.0.0.1:5060")))
        );
    }

    #[test]
    fn reuse_off_sends_by_address() {
        let mut t = AssocTable::new(true, false, -1);
        up(&mut t, 1, "10.0.0.1:5060");
        assert_eq!(
            t.route(S, addr("10.0.0.1:5060")),
            Ok(Route::Addr(addr("10.0.0.1:5060")))
        );
    }

    #[test]
    fn assoc_id_reuse_does_not_mix_peers() {
        let mut t = AssocTable::new(true, true, -1);
        up(&mut t, 7, "10.0.0.1:5060");
        t.handle_down(S, AssocId(7));
        up(&mut t, 7, "10.0.0.9:5060");
        assert!(
            t.lookup(S, addr("10.0.0.1:5060")).is_none(),
            "old peer must not map to id 7"
        );
        assert_eq!(
            t.lookup(S, addr("10.0.0.9:5060")).map(|a| a.id),
            Some(AssocId(7))
        );
        assert_eq!((t.opened(), t.tracked()), (1, 1));
    }

    #[test]
    fn a_missed_down_is_repaired_by_the_next_comm_up() {
        let mut t = AssocTable::new(true, true, -1);
        up(&mut t, 7, "10.0.0.1:5060");
        // DOWN for id 7 lost; the kernel reuses 7 for another peer.
        match up(&mut t, 7, "10.0.0.9:5060") {
            CommUp::Accepted {
                replaced: Some(old),
            } => {
                assert_eq!(old.peer_addrs, vec![addr("10.0.0.1:5060")])
            }
            other => panic!("expected a replaced entry, got {other:?}"),
        }
        assert!(t.lookup(S, addr("10.0.0.1:5060")).is_none());
        assert_eq!((t.opened(), t.tracked()), (1, 1));
    }

    #[test]
    fn same_id_on_two_sockets_are_two_associations() {
        let mut t = AssocTable::new(true, true, -1);
        t.handle_comm_up(
            Instant::now(),
            SocketId(0),
            AssocId(1),
            addr("10.0.0.1:5060"),
            1,
            1,
        );
        t.handle_comm_up(
            Instant::now(),
            SocketId(1),
            AssocId(1),
            addr("10.0.0.2:5060"),
            1,
            1,
        );
        assert_eq!(t.tracked(), 2);
        assert!(t.lookup(SocketId(1), addr("10.0.0.1:5060")).is_none());
    }

    #[test]
    fn limit_rejects_inbound_and_refuses_outbound() {
        let mut t = AssocTable::new(true, true, 2);
        up(&mut t, 1, "10.0.0.1:5060");
        up(&mut t, 2, "10.0.0.2:5060");
        assert_eq!(up(&mut t, 3, "10.0.0.3:5060"), CommUp::Reject);
        assert_eq!(t.opened(), 2);
        // The ABORT's COMM_LOST for the rejected one does not uncount an accepted one.
        assert!(t.handle_down(S, AssocId(3)).is_none());
        assert_eq!(t.opened(), 2);
        let e = t.route(S, addr("10.0.0.4:5060")).unwrap_err();
        assert_eq!(e.max, 2);
        assert_eq!(
            e.to_string(),
            "sending to 10.0.0.4:5060 would open association 3 but sctp_max_assocs is 2"
        );
        // Existing associations are still usable.
        assert_eq!(
            t.route(S, addr("10.0.0.1:5060")),
            Ok(Route::Assoc(AssocId(1)))
        );
        t.set_max_assocs(-1);
        assert!(t.route(S, addr("10.0.0.4:5060")).is_ok());
    }

    #[test]
    fn multihomed_peer_addresses_map_to_one_association() {
        let mut t = AssocTable::new(true, true, 1);
        up(&mut t, 1, "10.0.0.1:5060");
        t.handle_addr_added(S, AssocId(1), addr("10.0.1.1:5060"));
        // The second address is the same peer: reuse, and no limit error at max_assocs = 1.
        assert_eq!(
            t.route(S, addr("10.0.1.1:5060")),
            Ok(Route::Assoc(AssocId(1)))
        );
        t.handle_primary(S, AssocId(1), addr("10.0.1.1:5060"));
        assert_eq!(
            t.get(S, AssocId(1)).and_then(|a| a.primary),
            Some(addr("10.0.1.1:5060"))
        );
        t.handle_addr_removed(S, AssocId(1), addr("10.0.0.1:5060"));
        assert!(t.lookup(S, addr("10.0.0.1:5060")).is_none());
        assert!(t.lookup(S, addr("10.0.1.1:5060")).is_some());
    }

    #[test]
    fn messages_teach_other_paths_but_not_across_associations() {
        let mut t = AssocTable::new(true, true, -1);
        up(&mut t, 1, "10.0.0.1:5060");
        up(&mut t, 2, "10.0.0.2:5060");
        assert!(t.handle_message(Instant::now(), S, AssocId(1), addr("10.0.1.1:5060")));
        assert_eq!(
            t.lookup(S, addr("10.0.1.1:5060")).map(|a| a.id),
            Some(AssocId(1))
        );
        assert!(!t.handle_message(Instant::now(), S, AssocId(1), addr("10.0.0.2:5060")));
        assert_eq!(
            t.lookup(S, addr("10.0.0.2:5060")).map(|a| a.id),
            Some(AssocId(2))
        );
    }

    #[test]
    fn tracking_off_counts_but_does_not_track() {
        let mut t = AssocTable::new(false, true, 1);
        assert_eq!(t.tracked(), -1);
        up(&mut t, 1, "10.0.0.1:5060");
        assert_eq!(t.opened(), 1);
        assert_eq!(up(&mut t, 2, "10.0.0.2:5060"), CommUp::Reject);
        assert_eq!(
            t.route(S, addr("10.0.0.1:5060")),
            Ok(Route::Addr(addr("10.0.0.1:5060")))
        );
        t.handle_down(S, AssocId(1));
        assert_eq!(t.opened(), 0);
    }

    #[test]
    fn switching_tracking_off_flushes() {
        let mut t = AssocTable::new(true, true, -1);
        up(&mut t, 1, "10.0.0.1:5060");
        t.set_tracking(false);
        assert_eq!(t.tracked(), -1);
        assert_eq!(
            t.route(S, addr("10.0.0.1:5060")),
            Ok(Route::Addr(addr("10.0.0.1:5060")))
        );
    }
}
