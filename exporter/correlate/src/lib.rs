//! Correlation of kernel SCTP events with SIP transactions: which retransmission slowed which
//! transaction, through the association that carried it.
//!
//! Sans-IO, like the relay driver: no tokio, no aya, no sockets, no clock. Kernel events
//! ([`SctpEvent`], from the probes) and finished SIP transactions ([`Transaction`], from the
//! relay or from SIP seen in the kernel) come in; [`Correlator::poll`] releases each
//! transaction, after a linger that lets late kernel events arrive, joined with the kernel
//! events of its legs ([`Joined`]). Times are `CLOCK_MONOTONIC` durations since boot, the clock
//! of the kernel events.
//!
//! # The join
//!
//! - Key: the association, `(netns, assoc_id)` ([`AssocKey`]). Linux hands ids out from one
//!   host-wide cyclic IDR, so the pair is unique while the association lives. A T1 timer that
//!   expires before the association has an id (a lost INIT) is kept by the kernel's association
//!   pointer and bound to the id when it appears. A request sent by address (the association
//!   was being set up) finds its association by `(netns, local port, peer address, peer port)`.
//! - The probes see retransmissions of chunks *this host sends*. On the **request leg** (the
//!   outbound association) the request is what we send: a retransmission at `t` with RTO `R`
//!   (the one in force, after T3's back-off) counts against requests forwarded in
//!   `[t - 2R - slack, t]` and unanswered at `t` (no response yet). Two RTOs, not one: the T3
//!   timer restarts on each new acknowledgement, so a chunk can wait up to twice the RTO it
//!   was sent under, and at `rto_max` there is no back-off to widen `R`; a fast
//!   retransmission comes before the timer would, but at a low message rate the three SACKs
//!   that trigger it can take far longer than a few RTTs. When a retransmission is lost too,
//!   the next one (a T3 timer that later acknowledgements kept restarting) can come seconds
//!   after the send, and every request behind the chunk on its ordered stream waits for it:
//!   so a request sent earlier than the window also counts when it was answered within
//!   `2R + slack` after the event (the event evidently released it; seen under 10 % loss
//!   with Kamailio: requests sent 3 s before a fast retransmission, answered 12 to 35 ms
//!   after it). A request never answered (an `ACK`) has the window alone. T1 expiries, a
//!   path going down and
//!   the association's loss count against the whole transaction. A request forwarded without
//!   a transaction (an `ACK`) is never answered: the window alone bounds it. These decide
//!   `kernel_retransmitted = yes | no`. On the **response leg** (the inbound association) we
//!   send the responses: its retransmissions from the first response to the end plus the
//!   linger are reported apart (what the caller saw).
//! - Without kernel events (no probes: poll mode), or on a TCP leg the probes cannot see, the
//!   verdict is [`Verdict::Unknown`], never a guess. A UDP leg has no kernel retransmissions:
//!   [`Verdict::No`].
//!
//! Bounded: associations, events per association, pre-id events and lingering transactions
//! each have a cap ([`Config`]); what a cap pushes out is counted ([`Stats`]), and a
//! transaction whose events were pushed out is marked `incomplete`.

#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    net::{IpAddr, SocketAddr},
    time::Duration,
};

pub use sipsctp_ebpf_events::AssocId;
use sipsctp_ebpf_events::event::{
    AssocChangeState, EventKind, PathCommand, RetransmitReason, SctpEvent, T1Timer,
};

/// An association: its network namespace (inode) and the id user space sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AssocKey {
    /// Inode number of the network namespace.
    pub netns: u32,
    /// The association id (the workspace's one type of them).
    pub assoc_id: AssocId,
}

/// A SIP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// SCTP.
    Sctp,
}

/// One side of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leg {
    /// Its transport.
    pub transport: Transport,
    /// The peer.
    pub peer: SocketAddr,
    /// Our address on it.
    pub local: Option<SocketAddr>,
    /// The SCTP association, when known.
    pub assoc: Option<AssocKey>,
}

/// How a transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A final response with this status.
    Final(u16),
    /// No final response in time.
    Expired,
    /// The request could not be sent.
    SendFailed,
    /// Forwarded without a transaction (an `ACK`): no response comes; it ends when it was
    /// sent, or at the last kernel event that retransmitted it.
    Forwarded,
}

/// A finished SIP transaction, as the relay (or SIP seen in the kernel) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// Its number (from the source).
    pub id: u64,
    /// The `CSeq` method.
    pub method: Box<str>,
    /// `Call-ID`.
    pub call_id: Box<str>,
    /// `CSeq` number.
    pub cseq: u32,
    /// The branch that identifies it.
    pub branch: Box<str>,
    /// Where the request came from.
    pub inbound: Leg,
    /// Where it went.
    pub outbound: Leg,
    /// When the request arrived.
    pub received_at: Duration,
    /// When it was forwarded.
    pub forwarded_at: Duration,
    /// When the first response arrived, if one did.
    pub first_response_at: Option<Duration>,
    /// When it ended.
    pub ended_at: Duration,
    /// How.
    pub outcome: Outcome,
    /// SIP retransmissions of the request seen.
    pub sip_retransmissions: u32,
}

impl Transaction {
    /// When the request was answered (first response, else the end): a retransmission after
    /// that cannot be the request's.
    pub fn answered_at(&self) -> Duration {
        match self.outcome {
            // Never answered: only the retransmission windows bound it.
            Outcome::Forwarded => Duration::MAX,
            _ => self.first_response_at.unwrap_or(self.ended_at),
        }
    }
}

/// What a kernel event says about a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoteKind {
    /// Chunks retransmitted, and why.
    Retransmission(RetransmitReason),
    /// The path's T3-rtx timer expired.
    T3Expired,
    /// A T1 timer expired during setup.
    T1Expired(T1Timer),
    /// A path went down.
    PathDown,
    /// The association was lost.
    CommLost,
}

/// The label of what affected a transaction
/// (`sipsctp_sip_transactions_kernel_affected_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// T3-rtx retransmission.
    T3Rtx,
    /// Fast retransmission.
    FastRtx,
    /// Path MTU retransmission.
    Pmtud,
    /// INIT retransmitted.
    T1Init,
    /// COOKIE-ECHO retransmitted.
    T1Cookie,
    /// A path went down.
    PathDown,
    /// The association was lost.
    CommLost,
}

impl Reason {
    /// Every reason, for pre-setting counters.
    pub const ALL: [Self; 7] = [
        Self::T3Rtx,
        Self::FastRtx,
        Self::Pmtud,
        Self::T1Init,
        Self::T1Cookie,
        Self::PathDown,
        Self::CommLost,
    ];

    /// The label.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::T3Rtx => "t3_rtx",
            Self::FastRtx => "fast_rtx",
            Self::Pmtud => "pmtud",
            Self::T1Init => "t1_init",
            Self::T1Cookie => "t1_cookie",
            Self::PathDown => "path_down",
            Self::CommLost => "comm_lost",
        }
    }
}

impl NoteKind {
    /// The reason label, for the kinds that have one (a T3 expiry is the retransmission's
    /// cause, reported with it).
    pub const fn reason(&self) -> Option<Reason> {
        match self {
            Self::Retransmission(RetransmitReason::T3Rtx) => Some(Reason::T3Rtx),
            Self::Retransmission(RetransmitReason::FastRtx) => Some(Reason::FastRtx),
            Self::Retransmission(RetransmitReason::Pmtud) => Some(Reason::Pmtud),
            Self::Retransmission(RetransmitReason::T1Rtx) | Self::T1Expired(T1Timer::Init) => {
                Some(Reason::T1Init)
            }
            Self::T1Expired(T1Timer::Cookie) => Some(Reason::T1Cookie),
            Self::PathDown => Some(Reason::PathDown),
            Self::CommLost => Some(Reason::CommLost),
            Self::T3Expired => None,
        }
    }
}

/// A kernel event, kept compactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelNote {
    /// When.
    pub time: Duration,
    /// What.
    pub kind: NoteKind,
    /// The association (its id 0 when the event came before the id).
    pub assoc: AssocKey,
    /// The path's peer address.
    pub peer: Option<IpAddr>,
    /// The path's RTO then.
    pub rto: Duration,
    /// Congestion window then (0 when the event does not say).
    pub cwnd: u32,
    /// Bytes in flight then (0 when the event does not say).
    pub flight_size: u32,
}

/// Whether the kernel retransmitted for a transaction's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Yes: at least one event on the request leg.
    Yes,
    /// No event on the request leg.
    No,
    /// Cannot be known (no probes, or a leg the probes do not see).
    Unknown,
}

impl Verdict {
    /// The label (`kernel_retransmitted`).
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Yes => "yes",
            Self::No => "no",
            Self::Unknown => "unknown",
        }
    }
}

/// A transaction joined with its kernel events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The transaction.
    pub tx: Transaction,
    /// Whether the kernel retransmitted for its request.
    pub verdict: Verdict,
    /// Events on the request leg (the outbound association) that touched it.
    pub request: Vec<KernelNote>,
    /// Events on the response leg (the inbound association) while its responses were out.
    pub response: Vec<KernelNote>,
    /// The largest RTO seen on the request leg (events, or the association's last update).
    pub max_rto: Option<Duration>,
    /// Events it needed were pushed out by a cap: the lists may be short.
    pub incomplete: bool,
}

/// Caps and windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Whether kernel events come in from the start (probes attached); `false` gives
    /// `Unknown` until [`Correlator::set_kernel_events`] says they do.
    pub kernel_events: bool,
    /// The network namespace to look up associations by address in (the relay's).
    pub netns: Option<u32>,
    /// Associations kept (least recently used evicted).
    pub max_assocs: usize,
    /// Events kept per association at most.
    pub events_per_assoc: usize,
    /// Events kept over all associations at most (the busiest association gives its oldest
    /// up first).
    pub max_notes: usize,
    /// Events older than this (before the newest one of their association) are dropped: no
    /// transaction still to come can need them (a transaction reaches the correlator at most
    /// its timeout after its request was sent).
    pub retention: Duration,
    /// Associations without an id yet whose T1 events are kept.
    pub max_pre_id: usize,
    /// Transactions waiting for late events.
    pub max_lingering: usize,
    /// Added to windows for the scheduling slack between a send and its timer.
    pub slack: Duration,
    /// Linger bounds: a transaction waits `clamp(2 x RTO, min, max)` after its end.
    pub min_linger: Duration,
    /// See `min_linger`.
    pub max_linger: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            kernel_events: true,
            netns: None,
            max_assocs: 4096,
            events_per_assoc: 256,
            max_notes: 65_536,
            retention: Duration::from_secs(40),
            max_pre_id: 256,
            max_lingering: 16_384,
            slack: Duration::from_millis(20),
            min_linger: Duration::from_millis(200),
            max_linger: Duration::from_secs(3),
        }
    }
}

/// What the caps pushed out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Associations evicted to make room.
    pub windows_evicted: u64,
    /// Events pushed out of an association's ring.
    pub events_overwritten: u64,
    /// Pre-id events dropped (too many associations without an id).
    pub pre_id_dropped: u64,
    /// Transactions joined at once because too many lingered.
    pub linger_overflow: u64,
    /// Transactions joined.
    pub joined: u64,
}

#[derive(Debug, Default)]
struct Window {
    ring: VecDeque<KernelNote>,
    /// The newest event pushed out of the ring.
    overwritten_until: Option<Duration>,
    last_rto: Duration,
    last_srtt: Duration,
    last_used: u64,
    /// When the association was freed (kept until late transactions are joined).
    freed_at: Option<Duration>,
    addr: Option<AddrKey>,
    ptr: Option<(u32, u64)>,
}

/// Gives a ring's unused room back once it holds far less than it did: the budget is on
/// events held, and a ring never shrinks by itself.
fn shrink(ring: &mut VecDeque<KernelNote>) {
    let room = ring.len().max(8) * 2;
    if ring.capacity() > room * 2 {
        ring.shrink_to(room);
    }
}

/// Events kept per association that has no id yet.
const PRE_ID_EVENTS: usize = 32;

/// `(netns, local port, peer address, peer port)`.
type AddrKey = (u32, u16, IpAddr, u16);

/// The correlator; see the crate documentation.
#[derive(Debug)]
pub struct Correlator {
    config: Config,
    windows: HashMap<AssocKey, Window>,
    pre_id: HashMap<(u32, u64), Vec<KernelNote>>,
    by_addr: HashMap<AddrKey, AssocKey>,
    lingering: BTreeMap<(Duration, u64), Box<Transaction>>,
    /// Associations freed, oldest first, for [`Correlator::retire`].
    freed: VecDeque<(Duration, AssocKey)>,
    /// Joined early (the linger cap), waiting for `poll`.
    ready: VecDeque<Joined>,
    seq: u64,
    clock: u64,
    stats: Stats,
    /// Since when kernel events come in (`None`: they do not).
    kernel_since: Option<Duration>,
    /// Events held in all rings.
    notes: usize,
}

impl Correlator {
    /// An empty correlator.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            windows: HashMap::new(),
            pre_id: HashMap::new(),
            by_addr: HashMap::new(),
            lingering: BTreeMap::new(),
            freed: VecDeque::new(),
            ready: VecDeque::new(),
            seq: 0,
            clock: 0,
            stats: Stats::default(),
            kernel_since: config.kernel_events.then_some(Duration::ZERO),
            notes: 0,
        }
    }

    /// Kernel events start (the probes are attached) or stop coming in at `now`. A
    /// transaction forwarded before they started gets [`Verdict::Unknown`]: its start was not
    /// seen.
    pub fn set_kernel_events(&mut self, now: Duration, on: bool) {
        match (on, self.kernel_since) {
            (true, None) => self.kernel_since = Some(now),
            (false, _) => self.kernel_since = None,
            (true, Some(_)) => {}
        }
    }

    /// What the caps pushed out so far.
    pub const fn stats(&self) -> Stats {
        self.stats
    }

    /// Associations tracked now.
    pub fn assocs(&self) -> usize {
        self.windows.len()
    }

    /// Transactions waiting for late kernel events.
    pub fn lingering(&self) -> usize {
        self.lingering.len()
    }

    fn window(&mut self, key: AssocKey) -> &mut Window {
        self.clock += 1;
        let clock = self.clock;
        if !self.windows.contains_key(&key) && self.windows.len() >= self.config.max_assocs {
            let oldest = self
                .windows
                .iter()
                .min_by_key(|(_, w)| w.last_used)
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                self.forget(k);
                self.stats.windows_evicted += 1;
            }
        }
        let w = self.windows.entry(key).or_default();
        w.last_used = clock;
        w
    }

    fn forget(&mut self, key: AssocKey) {
        if let Some(w) = self.windows.remove(&key) {
            self.notes = self.notes.saturating_sub(w.ring.len());
            if let Some(a) = w.addr
                && self.by_addr.get(&a) == Some(&key)
            {
                self.by_addr.remove(&a);
            }
        }
    }

    /// Events held in all associations' rings.
    pub fn notes(&self) -> usize {
        self.notes
    }

    fn push(&mut self, key: AssocKey, note: KernelNote) {
        let cap = self.config.events_per_assoc.max(1);
        let retention = self.config.retention;
        let w = self.window(key);
        // Past the retention: no transaction to come can need them (not a loss).
        let mut expired = 0;
        while w
            .ring
            .front()
            .is_some_and(|old| old.time + retention < note.time)
        {
            w.ring.pop_front();
            expired += 1;
        }
        if expired > 0 {
            shrink(&mut w.ring);
        }
        w.ring.push_back(note);
        let mut overwritten = 0;
        while w.ring.len() > cap {
            if let Some(old) = w.ring.pop_front() {
                w.overwritten_until = Some(old.time);
                overwritten += 1;
            }
        }
        self.notes = (self.notes + 1).saturating_sub(expired + overwritten);
        self.stats.events_overwritten += overwritten as u64;
        let max = self.config.max_notes.max(1);
        while self.notes > max {
            // The busiest association gives up its oldest events, in a batch so that the
            // search is not made for every event once the budget is reached.
            let Some((&k, _)) = self.windows.iter().max_by_key(|(_, w)| w.ring.len()) else {
                break;
            };
            let batch = (self.notes - max + max / 64).max(1);
            let Some(w) = self.windows.get_mut(&k) else {
                break;
            };
            let n = batch.min(w.ring.len());
            if n == 0 {
                break;
            }
            for old in w.ring.drain(..n) {
                w.overwritten_until = Some(old.time);
            }
            shrink(&mut w.ring);
            self.notes -= n;
            self.stats.events_overwritten += n as u64;
        }
    }

    /// Binds an association's id to its kernel pointer and address, moving the T1 events
    /// seen before the id.
    fn bind(&mut self, key: AssocKey, ev: &SctpEvent) {
        let ptr = (ev.netns, ev.assoc);
        let early = self.pre_id.remove(&ptr).unwrap_or_default();
        let addr = ev
            .peer
            .map(|ip| (ev.netns, ev.local_port, ip, ev.peer_port));
        let w = self.window(key);
        w.ptr = Some(ptr);
        if w.addr.is_none() {
            w.addr = addr;
        }
        for mut n in early {
            n.assoc = key;
            self.push(key, n);
        }
        if let Some(a) = addr {
            self.by_addr.insert(a, key);
        }
    }

    /// Takes one kernel event in.
    pub fn handle_kernel(&mut self, ev: &SctpEvent) {
        let key = AssocKey {
            netns: ev.netns,
            assoc_id: ev.assoc_id,
        };
        let note = |kind: NoteKind, rto: Duration, cwnd: u32, flight_size: u32| KernelNote {
            time: ev.time,
            kind,
            assoc: key,
            peer: ev.peer,
            rto,
            cwnd,
            flight_size,
        };
        match ev.kind {
            EventKind::RtoUpdate { rto, srtt, .. } if ev.assoc_id.is_assigned() => {
                let w = self.window(key);
                w.last_rto = rto.to_duration();
                w.last_srtt = srtt.to_duration();
            }
            EventKind::Retransmit {
                reason,
                rto,
                cwnd,
                flight_size,
                ..
            } => {
                let n = note(
                    NoteKind::Retransmission(reason),
                    rto.to_duration(),
                    cwnd,
                    flight_size,
                );
                self.note(key, ev, n);
            }
            EventKind::T3RtxExpired {
                rto,
                cwnd,
                flight_size,
                ..
            } => {
                let n = note(NoteKind::T3Expired, rto.to_duration(), cwnd, flight_size);
                self.note(key, ev, n);
            }
            EventKind::T1Expired { timer, rto, .. } => {
                let n = note(NoteKind::T1Expired(timer), rto.to_duration(), 0, 0);
                self.note(key, ev, n);
            }
            EventKind::PathChange {
                command: PathCommand::Down,
                ..
            } => {
                let n = note(NoteKind::PathDown, Duration::ZERO, 0, 0);
                self.note(key, ev, n);
            }
            EventKind::AssocNew { .. } if ev.assoc_id.is_assigned() => self.bind(key, ev),
            EventKind::AssocChange { state, .. } if ev.assoc_id.is_assigned() => match state {
                AssocChangeState::CommUp | AssocChangeState::Restart => self.bind(key, ev),
                AssocChangeState::CommLost => {
                    let n = note(NoteKind::CommLost, Duration::ZERO, 0, 0);
                    self.push(key, n);
                }
                AssocChangeState::ShutdownComp | AssocChangeState::CantStrAssoc => {}
            },
            EventKind::AssocFree { .. } => {
                if !ev.assoc_id.is_assigned() {
                    self.pre_id.remove(&(ev.netns, ev.assoc));
                } else if let Some(w) = self.windows.get_mut(&key) {
                    w.freed_at = Some(ev.time);
                    self.freed.push_back((ev.time, key));
                    if self.freed.len() > self.config.max_assocs.max(1) {
                        // More frees than windows: the oldest entries name windows long gone
                        // or about to be retired; retire it now.
                        if let Some((_, k)) = self.freed.pop_front() {
                            self.forget(k);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// An event about association `key`, or about one without an id yet (kept by pointer).
    fn note(&mut self, key: AssocKey, ev: &SctpEvent, n: KernelNote) {
        if ev.assoc_id.is_assigned() {
            self.push(key, n);
            return;
        }
        let ptr = (ev.netns, ev.assoc);
        if !self.pre_id.contains_key(&ptr) && self.pre_id.len() >= self.config.max_pre_id {
            self.stats.pre_id_dropped += 1;
            return;
        }
        // INIT is tried `max_init_attempts` times (8 by default): a few T1 events each.
        let cap = self.config.events_per_assoc.clamp(1, PRE_ID_EVENTS);
        let v = self.pre_id.entry(ptr).or_default();
        if v.len() < cap {
            v.push(n);
        } else {
            self.stats.pre_id_dropped += 1;
        }
    }

    /// Takes a finished transaction in at `now`; it is released by [`poll`](Self::poll) once
    /// late kernel events had time to arrive.
    pub fn handle_transaction(&mut self, now: Duration, tx: Transaction) {
        let rto = [tx.outbound.assoc, tx.inbound.assoc]
            .into_iter()
            .flatten()
            .filter_map(|k| self.windows.get(&k).map(|w| w.last_rto))
            .max()
            .unwrap_or_default();
        let linger = if tx.outcome == Outcome::Forwarded {
            // Its retransmissions come after it "ended": wait for the backed-off ones too.
            self.config.max_linger
        } else {
            (rto * 2).clamp(self.config.min_linger, self.config.max_linger)
        };
        let release = tx.ended_at.max(now) + linger;
        if self.lingering.len() >= self.config.max_lingering {
            // Join the oldest now rather than drop anything.
            self.stats.linger_overflow += 1;
            if let Some((_, old)) = self.lingering.pop_first() {
                let j = self.join(*old, true);
                self.ready.push_back(j);
            }
        }
        self.seq += 1;
        self.lingering.insert((release, self.seq), Box::new(tx));
    }

    /// The next joined transaction whose linger is over at `now`.
    pub fn poll(&mut self, now: Duration) -> Option<Joined> {
        if let Some(j) = self.ready.pop_front() {
            return Some(j);
        }
        let (&(release, seq), _) = self.lingering.first_key_value()?;
        if release > now {
            return None;
        }
        let tx = self.lingering.remove(&(release, seq))?;
        let j = self.join(*tx, false);
        self.retire(now);
        Some(j)
    }

    /// When [`poll`](Self::poll) has something next, if ever.
    pub fn poll_timeout(&self) -> Option<Duration> {
        if !self.ready.is_empty() {
            return Some(Duration::ZERO);
        }
        self.lingering.first_key_value().map(|((t, _), _)| *t)
    }

    /// Drops the windows of associations freed longer ago than the retention: a transaction
    /// that went out on one reaches the correlator within it.
    fn retire(&mut self, now: Duration) {
        let horizon = self.config.retention + self.config.max_linger;
        while let Some(&(at, key)) = self.freed.front() {
            if at + horizon >= now {
                break;
            }
            self.freed.pop_front();
            if self
                .windows
                .get(&key)
                .is_some_and(|w| w.freed_at == Some(at))
            {
                self.forget(key);
            }
        }
    }

    fn outbound_key(&self, tx: &Transaction) -> Option<AssocKey> {
        if let Some(k) = tx.outbound.assoc {
            return Some(k);
        }
        let netns = self.config.netns?;
        let local_port = tx.outbound.local.map_or(0, |a| a.port());
        let peer = tx.outbound.peer;
        self.by_addr
            .get(&(netns, local_port, peer.ip(), peer.port()))
            .copied()
            .or_else(|| {
                // The local port is not always known for a send by address: any of ours to
                // that peer.
                self.by_addr
                    .iter()
                    .find(|((n, _, ip, port), _)| {
                        *n == netns && *ip == peer.ip() && *port == peer.port()
                    })
                    .map(|(_, k)| *k)
            })
    }

    fn join(&mut self, tx: Transaction, incomplete: bool) -> Joined {
        self.stats.joined += 1;
        let slack = self.config.slack;
        let mut j = Joined {
            verdict: Verdict::Unknown,
            request: Vec::new(),
            response: Vec::new(),
            max_rto: None,
            incomplete,
            tx,
        };
        if self
            .kernel_since
            .is_none_or(|since| j.tx.forwarded_at < since)
        {
            return j;
        }
        // A request sent while its association was being set up went out by address: name
        // the association the kernel gave it.
        if j.tx.outbound.transport == Transport::Sctp && j.tx.outbound.assoc.is_none() {
            j.tx.outbound.assoc = self.outbound_key(&j.tx);
        }
        let tx = &j.tx;
        match tx.outbound.transport {
            Transport::Tcp => {}
            Transport::Udp => j.verdict = Verdict::No,
            Transport::Sctp => {
                j.verdict = Verdict::No;
                if let Some(w) = self.outbound_key(tx).and_then(|k| self.windows.get(&k)) {
                    let answered = tx.answered_at();
                    let sent = tx.forwarded_at;
                    for n in &w.ring {
                        let touches = match n.kind {
                            // A chunk is retransmitted within two RTOs of its first send: the
                            // T3 timer runs from the oldest outstanding chunk and restarts on
                            // each new acknowledgement (less than one RTO after this chunk
                            // went out), a fast retransmission comes before the timer, and
                            // the RTO an event carries is the one in force (after T3's
                            // back-off, at most doubled; at rto_max, not).
                            //
                            // Or later, when the first retransmission was lost too: then the
                            // request, and every one behind it on the ordered stream, is
                            // answered right after the retransmission that finally gets its
                            // chunk through. So a request sent earlier and still unanswered
                            // counts when its answer came within two RTOs after the event.
                            NoteKind::Retransmission(_) | NoteKind::T3Expired => {
                                let window = n.rto * 2 + slack;
                                sent <= n.time
                                    && n.time < answered
                                    && (n.time <= sent + window
                                        || answered <= n.time.saturating_add(window))
                            }
                            // Not before the send: an event before it cannot be on its span.
                            NoteKind::T1Expired(_) | NoteKind::PathDown | NoteKind::CommLost => {
                                n.time >= sent && n.time <= tx.ended_at
                            }
                        };
                        if touches {
                            j.request.push(*n);
                        }
                    }
                    if w.overwritten_until.is_some_and(|t| t + slack >= sent) {
                        j.incomplete = true;
                    }
                    let seen = j.request.iter().map(|n| n.rto).max();
                    j.max_rto = seen.max((!w.last_rto.is_zero()).then_some(w.last_rto));
                    if j.request.iter().any(|n| n.kind.reason().is_some()) {
                        j.verdict = Verdict::Yes;
                    }
                }
            }
        }
        if tx.outcome == Outcome::Forwarded {
            // In flight until its last retransmission.
            if let Some(last) = j.request.iter().map(|n| n.time).max() {
                j.tx.ended_at = j.tx.ended_at.max(last);
            }
            return j;
        }
        let tx = &j.tx;
        if tx.inbound.transport == Transport::Sctp
            && let Some(w) = tx.inbound.assoc.and_then(|k| self.windows.get(&k))
        {
            let from = tx.answered_at();
            let until = tx.ended_at + self.config.max_linger;
            j.response = w
                .ring
                .iter()
                .filter(|n| n.kind.reason().is_some() && n.time >= from && n.time <= until)
                .copied()
                .collect();
        }
        j
    }
}

#[cfg(test)]
mod tests;
