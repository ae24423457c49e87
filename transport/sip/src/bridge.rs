//! Transaction state where a request crosses between a reliable transport (SCTP, TCP) and UDP
//! ([`Bridge`]): the one place the otherwise stateless relay keeps transactions.
//!
//! Over SCTP or TCP nobody retransmits: the transport does. Over UDP the user agents do
//! (RFC 3261 section 17). A stateless relay between the two loses what UDP loses, and calls
//! hang. So, per direction, the relay plays the part the reliable side does not:
//!
//! - **Reliable -> UDP (client side).** The relay retransmits the request on UDP (Timer A for
//!   `INVITE`, from T1 doubling, until a response; Timer E for the others, doubling up to T2,
//!   until a final response), gives up after 64*T1 (Timers B/F). Retransmissions of a final
//!   response from the UDP side are absorbed (counted), not forwarded again; for an `INVITE`
//!   the relay re-sends the `ACK` it forwarded for that response, which is what stops the UDP
//!   side's retransmissions when that `ACK` was lost. A request the reliable side sends again
//!   is absorbed (the relay retransmits it already).
//! - **UDP -> reliable (server side).** The relay retransmits a final response to an `INVITE`
//!   toward UDP (Timer G, from T1 doubling up to T2) until the `ACK` arrives (the same branch
//!   for a non-2xx, the same `Call-ID` and `CSeq` number for a 2xx) or 64*T1 pass (Timer H).
//!   A request the UDP side retransmits is absorbed and answered with the last response sent
//!   toward it, if any (17.2.1, 17.2.2).
//!
//! Bounded: at most `max_entries` transactions and `max_bytes` of stored messages; beyond
//! that a transaction is relayed statelessly and counted. Sans-IO: time comes in as
//! [`MonoTime`], outputs are [`BridgeAction`]s the driver turns into transmits and events.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    time::Duration,
};

use crate::{relay::Destination, time::MonoTime, transaction::TxKey};

/// RFC 3261 timer values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BridgeConfig {
    /// T1, the round-trip estimate (500 ms).
    pub t1: Duration,
    /// T2, the longest retransmit interval for non-INVITE requests and INVITE responses (4 s).
    pub t2: Duration,
    /// How long a transaction is kept at most (64*T1).
    pub timeout: Duration,
    /// How long a finished client transaction absorbs retransmissions of its final response
    /// (Timer D for `INVITE`, 32 s; Timer K for the others is T4, 5 s: the larger is used).
    pub linger: Duration,
    /// Transactions kept at once.
    pub max_entries: usize,
    /// Bytes of stored messages at once.
    pub max_bytes: usize,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            timeout: Duration::from_secs(32),
            linger: Duration::from_secs(32),
            max_entries: 16_384,
            max_bytes: 64 << 20,
        }
    }
}

/// Which retransmission the relay made, for `sipsctp_sip_retransmissions_total{leg}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetransmitLeg {
    /// A request, on UDP (Timers A, E).
    Request,
    /// A response, toward UDP (Timer G, or a request retransmission answered).
    Response,
    /// An `ACK` re-sent when the UDP side retransmitted the final response it acknowledges.
    Ack,
}

impl RetransmitLeg {
    /// Every leg, for pre-setting counters to 0.
    pub const ALL: [Self; 3] = [Self::Request, Self::Response, Self::Ack];

    /// The counter label.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Response => "response",
            Self::Ack => "ack",
        }
    }
}

/// What the bridge asks the driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BridgeAction {
    /// Send these bytes again.
    Resend {
        /// Where.
        to: Destination,
        /// From which listener.
        from: Option<SocketAddr>,
        /// The message.
        bytes: Vec<u8>,
        /// What it is.
        leg: RetransmitLeg,
    },
    /// A client transaction ran out of time without a final response (Timer B/F).
    TimedOut {
        /// The transaction.
        key: TxKey,
    },
}

/// What to do with a message the bridge was shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Relay it (the bridge noted what it needs).
    Forward,
    /// Do not: a retransmission the bridge handles (counted by the caller).
    Absorb,
}

/// An ACK kept for re-sending: where, from which listener, the bytes, and until when.
type KeptAck = (Destination, Option<SocketAddr>, Vec<u8>, MonoTime);

#[derive(Debug)]
enum Side {
    /// Request forwarded to UDP; the relay retransmits it.
    Client {
        to: Destination,
        from: Option<SocketAddr>,
        request: Vec<u8>,
        /// A response arrived (INVITE: stop retransmitting).
        proceeding: bool,
        /// The final status, once one arrived.
        final_status: Option<u16>,
    },
    /// Request came over UDP; the relay answers its retransmissions and retransmits an
    /// INVITE's final response until the ACK.
    Server {
        /// The last response sent toward UDP, and where.
        last: Option<(Destination, Option<SocketAddr>, Vec<u8>)>,
        final_sent: bool,
        acked: bool,
    },
}

#[derive(Debug)]
struct Entry {
    side: Side,
    invite: bool,
    dialog: (Box<str>, u32),
    /// The running retransmission interval.
    interval: Duration,
    /// The timer's generation and time (its key in `timers`).
    timer: u64,
    timer_at: MonoTime,
    /// When the entry goes.
    deadline: MonoTime,
    bytes: usize,
}

/// The bridge; see the module documentation.
#[derive(Debug, Default)]
pub struct Bridge {
    config: BridgeConfig,
    entries: HashMap<TxKey, Entry>,
    /// `(Call-ID, CSeq number)` of INVITE server transactions -> their key (ACK of a 2xx).
    dialogs: HashMap<(Box<str>, u32), TxKey>,
    /// The last ACK forwarded to UDP per `(Call-ID, CSeq number)`, with when it goes.
    acks: HashMap<(Box<str>, u32), KeptAck>,
    timers: BTreeMap<(MonoTime, u64), TxKey>,
    next_timer: u64,
    bytes: usize,
    /// Transactions not kept for lack of room.
    pub untracked: u64,
}

impl Bridge {
    /// An empty bridge.
    pub fn new(config: BridgeConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// Transactions kept now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// (Re)arms `key`'s one timer at `at`; its previous timer goes.
    fn arm(&mut self, key: &TxKey, at: MonoTime) {
        self.next_timer += 1;
        let generation = self.next_timer;
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        let old = (e.timer_at, e.timer);
        e.timer = generation;
        e.timer_at = at;
        self.timers.remove(&old);
        self.timers.insert((at, generation), key.clone());
    }

    fn room(&mut self, len: usize) -> bool {
        if self.entries.len() >= self.config.max_entries
            || self.bytes.saturating_add(len) > self.config.max_bytes
        {
            self.untracked += 1;
            return false;
        }
        true
    }

    fn insert(&mut self, now: MonoTime, key: TxKey, entry: Entry, first_timer: Option<MonoTime>) {
        self.bytes = self.bytes.saturating_add(entry.bytes);
        self.entries.insert(key.clone(), entry);
        self.arm(&key, first_timer.unwrap_or(now + self.config.timeout));
    }

    fn remove(&mut self, key: &TxKey) -> Option<Entry> {
        let e = self.entries.remove(key)?;
        self.timers.remove(&(e.timer_at, e.timer));
        self.bytes = self.bytes.saturating_sub(e.bytes);
        if self.dialogs.get(&e.dialog) == Some(key) {
            self.dialogs.remove(&e.dialog);
        }
        Some(e)
    }

    /// A request from a reliable transport forwarded to UDP (`bytes` as sent). A request the
    /// bridge already retransmits is absorbed.
    #[allow(clippy::too_many_arguments)]
    pub fn client_request(
        &mut self,
        now: MonoTime,
        key: &TxKey,
        invite: bool,
        dialog: (&str, u32),
        to: Destination,
        from: Option<SocketAddr>,
        bytes: &[u8],
    ) -> Verdict {
        if self.entries.contains_key(key) {
            return Verdict::Absorb;
        }
        if !self.room(bytes.len()) {
            return Verdict::Forward;
        }
        let entry = Entry {
            side: Side::Client {
                to,
                from,
                request: bytes.to_vec(),
                proceeding: false,
                final_status: None,
            },
            invite,
            dialog: (dialog.0.into(), dialog.1),
            interval: self.config.t1,
            timer: 0,
            timer_at: MonoTime::default(),
            deadline: now + self.config.timeout,
            bytes: bytes.len(),
        };
        self.insert(now, key.clone(), entry, Some(now + self.config.t1));
        Verdict::Forward
    }

    /// An ACK from a reliable transport forwarded to UDP: kept to re-send when the UDP side
    /// retransmits the final response it acknowledges.
    pub fn client_ack(
        &mut self,
        now: MonoTime,
        dialog: (&str, u32),
        to: Destination,
        from: Option<SocketAddr>,
        bytes: &[u8],
    ) {
        let key = (dialog.0.into(), dialog.1);
        if !self.acks.contains_key(&key) && self.acks.len() >= self.config.max_entries {
            // Make room from the oldest (rare: the map lives for `linger`).
            let oldest = self
                .acks
                .iter()
                .min_by_key(|(_, (.., at))| *at)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.acks.remove(&k);
            }
        }
        self.acks
            .insert(key, (to, from, bytes.to_vec(), now + self.config.linger));
    }

    /// A response from UDP to a request the bridge may be retransmitting.
    pub fn client_response(
        &mut self,
        now: MonoTime,
        key: &TxKey,
        status: u16,
    ) -> (Verdict, Vec<BridgeAction>) {
        let linger = self.config.linger;
        let Some(e) = self.entries.get_mut(key) else {
            return (Verdict::Forward, Vec::new());
        };
        let Side::Client {
            proceeding,
            final_status,
            ..
        } = &mut e.side
        else {
            return (Verdict::Forward, Vec::new());
        };
        if final_status.is_some() {
            // A retransmission of the final response: absorb; for an INVITE re-send the ACK.
            let mut actions = Vec::new();
            if status >= 200
                && e.invite
                && let Some((to, from, bytes, _)) = self.acks.get(&e.dialog)
            {
                actions.push(BridgeAction::Resend {
                    to: *to,
                    from: *from,
                    bytes: bytes.clone(),
                    leg: RetransmitLeg::Ack,
                });
            }
            return (Verdict::Absorb, actions);
        }
        *proceeding = true;
        if status >= 200 {
            *final_status = Some(status);
            // Keep absorbing the final's retransmissions for a while; no more retransmitting.
            e.deadline = now + linger;
            let deadline = e.deadline;
            self.arm(key, deadline);
        } else if e.invite {
            // Timer A stops with a provisional response; Timer B no longer applies (a call may
            // ring for minutes): keep the entry until a final or the linger after it.
            e.deadline = now + self.config.timeout.max(Duration::from_secs(180));
            let deadline = e.deadline;
            self.arm(key, deadline);
        }
        (Verdict::Forward, Vec::new())
    }

    /// A request from UDP forwarded to a reliable transport: kept so that its retransmissions
    /// are answered here. A retransmission is absorbed and answered with the last response.
    pub fn server_request(
        &mut self,
        now: MonoTime,
        key: &TxKey,
        invite: bool,
        dialog: (&str, u32),
    ) -> (Verdict, Vec<BridgeAction>) {
        if let Some(e) = self.entries.get(key) {
            let mut actions = Vec::new();
            if let Side::Server {
                last: Some((to, from, bytes)),
                ..
            } = &e.side
            {
                actions.push(BridgeAction::Resend {
                    to: *to,
                    from: *from,
                    bytes: bytes.clone(),
                    leg: RetransmitLeg::Response,
                });
            }
            return (Verdict::Absorb, actions);
        }
        if !self.room(0) {
            return (Verdict::Forward, Vec::new());
        }
        let dialog: (Box<str>, u32) = (dialog.0.into(), dialog.1);
        if invite {
            self.dialogs.insert(dialog.clone(), key.clone());
        }
        let entry = Entry {
            side: Side::Server {
                last: None,
                final_sent: false,
                acked: false,
            },
            invite,
            dialog,
            interval: self.config.t1,
            timer: 0,
            timer_at: MonoTime::default(),
            deadline: now + self.config.timeout.max(Duration::from_secs(180)),
            bytes: 0,
        };
        let deadline = entry.deadline;
        self.insert(now, key.clone(), entry, Some(deadline));
        (Verdict::Forward, Vec::new())
    }

    /// A response toward UDP for a request that came over UDP (`bytes` as sent to `to`).
    pub fn server_response(
        &mut self,
        now: MonoTime,
        key: &TxKey,
        status: u16,
        to: Destination,
        from: Option<SocketAddr>,
        bytes: &[u8],
    ) {
        let (t1, timeout) = (self.config.t1, self.config.timeout);
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        let Side::Server {
            last, final_sent, ..
        } = &mut e.side
        else {
            return;
        };
        if *final_sent {
            return;
        }
        let old = last.as_ref().map_or(0, |(_, _, b)| b.len());
        *last = Some((to, from, bytes.to_vec()));
        e.bytes = bytes.len();
        self.bytes = self.bytes.saturating_sub(old).saturating_add(bytes.len());
        if status >= 200 {
            *final_sent = true;
            e.deadline = now + timeout;
            let first = if e.invite {
                e.interval = t1;
                now + t1
            } else {
                // Timer J: answer retransmissions of the request until then.
                e.deadline
            };
            self.arm(key, first);
        }
    }

    /// An ACK from UDP: ends the retransmission of the final response it acknowledges (by
    /// branch `key` for a non-2xx, by `Call-ID` and `CSeq` number for a 2xx). Returns whether
    /// it acknowledged one the bridge held.
    pub fn server_ack(&mut self, key: &TxKey, dialog: (&str, u32)) -> bool {
        let found = if self.entries.contains_key(key) {
            Some(key.clone())
        } else {
            self.dialogs.get(&(dialog.0.into(), dialog.1)).cloned()
        };
        let Some(k) = found else { return false };
        match self.entries.get_mut(&k) {
            Some(Entry {
                side: Side::Server { acked, .. },
                ..
            }) => {
                let first = !*acked;
                *acked = true;
                first
            }
            _ => false,
        }
    }

    /// The request of `key` could not be sent: a server transaction that has sent nothing
    /// toward UDP is forgotten, so that the client's retransmission is forwarded again rather
    /// than absorbed. (A client transaction keeps retransmitting: that is a retry.)
    pub fn request_not_sent(&mut self, key: &TxKey) {
        if let Some(Entry {
            side: Side::Server { last: None, .. },
            ..
        }) = self.entries.get(key)
        {
            self.remove(key);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due next.
    pub fn poll_timeout(&self) -> Option<MonoTime> {
        self.timers.first_key_value().map(|((t, _), _)| *t)
    }

    /// Runs the timers due at `now`: retransmissions, and entries that are done.
    pub fn handle_timeout(&mut self, now: MonoTime) -> Vec<BridgeAction> {
        let mut out = Vec::new();
        while let Some((&(at, generation), _)) = self.timers.first_key_value() {
            if at > now {
                break;
            }
            let Some(((_, _), key)) = self.timers.pop_first() else {
                break;
            };
            let Some(e) = self.entries.get_mut(&key) else {
                continue;
            };
            if e.timer != generation {
                continue;
            }
            if now >= e.deadline {
                let timed_out = matches!(
                    e.side,
                    Side::Client {
                        final_status: None,
                        ..
                    }
                );
                self.remove(&key);
                if timed_out {
                    out.push(BridgeAction::TimedOut { key });
                }
                continue;
            }
            let (t2, deadline) = (self.config.t2, e.deadline);
            let resend = match &e.side {
                Side::Client {
                    to,
                    from,
                    request,
                    proceeding,
                    final_status: None,
                } if !(e.invite && *proceeding) => {
                    Some((*to, *from, request.clone(), RetransmitLeg::Request))
                }
                Side::Server {
                    last: Some((to, from, bytes)),
                    final_sent: true,
                    acked: false,
                } if e.invite => Some((*to, *from, bytes.clone(), RetransmitLeg::Response)),
                _ => None,
            };
            match resend {
                Some((to, from, bytes, leg)) => {
                    out.push(BridgeAction::Resend {
                        to,
                        from,
                        bytes,
                        leg,
                    });
                    // INVITE requests double without a cap (Timer A); the rest up to T2.
                    let next = e.interval.saturating_mul(2);
                    e.interval = if e.invite && leg == RetransmitLeg::Request {
                        next
                    } else {
                        next.min(t2)
                    };
                    let at = (now + e.interval).min(deadline);
                    self.arm(&key, at);
                }
                None => self.arm(&key, deadline),
            }
        }
        self.acks.retain(|_, (.., until)| *until > now);
        out
    }
}
