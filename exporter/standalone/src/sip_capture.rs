//! SIP transactions rebuilt from the message prefixes the eBPF probes capture from an observed
//! process's SCTP associations ([`Assembler`]), for the correlator
//! ([`sipsctp_correlate::Transaction`]).
//!
//! The probes copy the first bytes (at most 1024) of the first fragment of every SCTP DATA
//! message the observed process sends (`sctp_outq_tail`) or receives
//! (`sctp_ulpevent_make_rcvmsg`), with its association ([`Seen`]). The process may be a
//! proxy (Kamailio: it receives a request, sends it on, receives the responses, sends them
//! back), a UAC (sipp client: it sends requests) or a UAS (sipp server: it answers them).
//!
//! Sans-IO and clock-free: times come in as `CLOCK_MONOTONIC` durations since boot (the
//! kernel events' clock); finished transactions go out through [`Assembler::poll`].
//!
//! # Identification
//!
//! Only the head is parsed, with the project's parser ([`sipsctp_sip_message::Message::parse_head`]).
//! When the prefix holds the blank line that ends the head, the head up to it is parsed.
//! Otherwise the prefix is cut back to its last complete header line (one followed, within
//! the prefix, by the start of a line that is not a continuation), and a blank line is
//! appended. A message is identified by its start line, `Call-ID`, `CSeq` (number and method)
//! and top `Via` branch; nothing is guessed: when one of them is not within the prefix, the
//! message is [`Unidentified::Truncated`] and counted. `From`, `To` and bodies are never read
//! into the output: a [`Transaction`] carries only the method, `Call-ID`, `CSeq` number,
//! branch, legs and times.
//!
//! # Matching
//!
//! 1. A received request opens a transaction (its inbound leg, `received_at`, its top `Via`
//!    branch). The same request again (same `Call-ID`, `CSeq` and branch) while the
//!    transaction is open is a SIP retransmission, counted on it.
//! 2. A sent request with the `Call-ID` and `CSeq` of an open transaction that has not been
//!    sent on yet is its forwarded copy: outbound leg, `forwarded_at`, and the branch of the
//!    sent top `Via` (the one responses carry back). Sent again on the same branch: a
//!    retransmission, ignored. On another branch: a fork ([`Handled::Fork`]), counted and
//!    ignored (its responses count as unmatched). Without a received counterpart the process
//!    originated it (a UAC): `received_at = forwarded_at`, and its inbound leg has no
//!    association (no response leg). A sent `ACK` ends at once ([`Outcome::Forwarded`]).
//! 3. A received response matches by the outbound branch and `CSeq` method: the first one
//!    sets `first_response_at`; a final one records its status and time. A UAC's transaction
//!    ends there; a relayed one ends when its sent final response is seen (rule 4), or
//!    `answer_grace` later; either way `ended_at` is when the final response was received.
//! 4. A sent response matches by the inbound branch and `CSeq` method. Before the request was
//!    sent on, the process is the UAS: its provisional response is noted, its final one ends
//!    the transaction with `first_response_at` = the first response it sent. Its outbound leg
//!    is the inbound one and `forwarded_at = received_at`: a UAS sends its responses on the
//!    association the request came on, and nothing else goes out for the transaction (a
//!    proxy's own `100 Trying` before it forwards is dropped when it does forward). After the
//!    request was sent on, a sent final with the status of the received one ends it; a sent
//!    final without a received one, or with another status, is the process's own answer (a
//!    timer's `408`, a failure route): it ends the transaction with that status, then.
//! 5. A received request nobody answers expires `timeout` after it was sent on (or received,
//!    if never sent on): [`Outcome::Expired`], `ended_at` = that deadline (not the later time
//!    `poll` ran), like the relay's transaction timer. A received `ACK` is never answered: sent
//!    on within `answer_grace`, it ends as [`Outcome::Forwarded`] then; otherwise the process
//!    consumed it (a UAS, or a proxy absorbing a non-2xx `ACK`) and it ends as
//!    [`Outcome::Forwarded`] with the inbound leg as its outbound leg and all times at its
//!    arrival. A transaction never sent on has the inbound leg as its outbound leg (the
//!    correlator would find that association by address anyway).
//! 6. A received message with the `(association, TSN)` of one of the last `dedupe` received
//!    ones is a duplicate (the kernel can build the receive event twice for one TSN when the
//!    socket's buffer was full), ignored.
//!
//! # Bounds
//!
//! At most `max_open` open transactions: opening one more finishes the oldest early, with
//! what is known of it (its received final, a `Forwarded` `ACK`, else `Expired` at that
//! moment), counted in [`Stats::evicted`]. Finished transactions wait for [`Assembler::poll`]
//! in a queue of at most `max_open`; what overflows it is counted in [`Stats::dropped`]. The
//! dedupe ring holds `dedupe` entries. A prefix is parsed from a reused buffer of at most
//! 64 KiB. Captured bytes are peer-controlled: nothing here indexes, unwraps or panics on them.

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
    collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque},
    net::SocketAddr,
    time::Duration,
};

use sipsctp_correlate::{AssocKey, Leg, Outcome, Transaction, Transport};
use sipsctp_sip_message::{Field, Message, Method, MethodBuf, ParseError, ParseErrorKind};

/// The longest prefix parsed (the parser's message limit); the probes capture 1024 bytes.
const MAX_PREFIX: usize = 65_535;

/// Which way a message passed the observed process's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The process received it.
    Received,
    /// The process sent it.
    Sent,
}

/// The first bytes of one SIP message, as the probes saw them.
#[derive(Debug, Clone)]
pub struct Seen<'a> {
    /// When (`CLOCK_MONOTONIC` since boot).
    pub at: Duration,
    /// Which way.
    pub direction: Direction,
    /// The association it went over.
    pub assoc: AssocKey,
    /// The observed process's address on it, when known.
    pub local: Option<SocketAddr>,
    /// The association's peer (its active path).
    pub peer: SocketAddr,
    /// Received messages: the TSN of the first fragment (for dedupe); sent: `None`.
    pub tsn: Option<u32>,
    /// The first fragment's payload length as the kernel knows it.
    pub len: u32,
    /// The captured first bytes (at most `len`).
    pub prefix: &'a [u8],
}

/// The assembler's bounds and timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most open transactions (at least one is always allowed).
    pub max_open: usize,
    /// A transaction without a final response expires this long after its request was sent
    /// on (or received, if never sent on).
    pub timeout: Duration,
    /// How long a received final response waits for its sent copy, and a received `ACK` for
    /// its forwarded one.
    pub answer_grace: Duration,
    /// Received `(association, TSN)` pairs remembered for dedupe (0: no dedupe).
    pub dedupe: usize,
}

impl Default for Limits {
    /// 65 536 open transactions, 32 s (64 × T1), 2 s of grace, 4096 TSNs.
    fn default() -> Self {
        Self {
            max_open: 65_536,
            timeout: Duration::from_secs(32),
            answer_grace: Duration::from_secs(2),
            dedupe: 4096,
        }
    }
}

/// Why a message could not be identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unidentified {
    /// No valid start line: not a SIP message.
    NotSip,
    /// A needed header (`Call-ID`, `CSeq`, top `Via`) is not within the prefix.
    Truncated,
    /// The parser refused what is there (a bad header, a needed one missing from a whole
    /// head, a request whose `CSeq` method is not its method).
    Malformed,
    /// The top `Via` has no branch (an RFC 2543 peer): no key to match its responses.
    NoBranch,
}

impl Unidentified {
    /// Every reason.
    #[cfg(test)]
    pub const ALL: [Self; 4] = [
        Self::NotSip,
        Self::Truncated,
        Self::Malformed,
        Self::NoBranch,
    ];

    /// The label.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::NotSip => "not_sip",
            Self::Truncated => "truncated",
            Self::Malformed => "malformed",
            Self::NoBranch => "no_branch",
        }
    }
}

/// What [`Assembler::handle`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// A request that opened a transaction, or the sent copy of an open one.
    Request,
    /// A response of an open transaction.
    Response,
    /// A request seen again on the same branch (received: counted on its transaction;
    /// sent: ignored).
    Retransmission,
    /// A sent request of an open transaction on another branch than its first sent copy
    /// (forking): ignored.
    Fork,
    /// A received message whose `(association, TSN)` was seen already: ignored.
    Duplicate,
    /// A response without an open transaction.
    Unmatched,
    /// Not identified.
    Unidentified(Unidentified),
}

/// Unidentified messages, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnidentifiedCounts {
    /// [`Unidentified::NotSip`].
    pub not_sip: u64,
    /// [`Unidentified::Truncated`].
    pub truncated: u64,
    /// [`Unidentified::Malformed`].
    pub malformed: u64,
    /// [`Unidentified::NoBranch`].
    pub no_branch: u64,
}

impl UnidentifiedCounts {
    /// The count for `reason`.
    #[cfg(test)]
    pub const fn get(&self, reason: Unidentified) -> u64 {
        match reason {
            Unidentified::NotSip => self.not_sip,
            Unidentified::Truncated => self.truncated,
            Unidentified::Malformed => self.malformed,
            Unidentified::NoBranch => self.no_branch,
        }
    }

    const fn add(&mut self, reason: Unidentified) {
        let n = match reason {
            Unidentified::NotSip => &mut self.not_sip,
            Unidentified::Truncated => &mut self.truncated,
            Unidentified::Malformed => &mut self.malformed,
            Unidentified::NoBranch => &mut self.no_branch,
        };
        *n = n.saturating_add(1);
    }
}

/// Counters since the assembler was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// [`Handled::Request`].
    pub requests: u64,
    /// [`Handled::Response`].
    pub responses: u64,
    /// Received requests seen again (SIP retransmissions, counted on their transaction).
    pub retransmissions_received: u64,
    /// Sent requests seen again on the same branch.
    pub retransmissions_sent: u64,
    /// [`Handled::Fork`].
    pub forks: u64,
    /// [`Handled::Duplicate`].
    pub duplicates: u64,
    /// [`Handled::Unmatched`].
    pub unmatched: u64,
    /// [`Handled::Unidentified`], by reason.
    pub unidentified: UnidentifiedCounts,
    /// Transactions finished (queued for [`Assembler::poll`]).
    pub finished: u64,
    /// Of those, expired at their deadline ([`Outcome::Expired`]).
    pub expired: u64,
    /// Of those, finished early because `max_open` were open.
    pub evicted: u64,
    /// Finished transactions pushed out of the full queue before [`Assembler::poll`] took
    /// them.
    pub dropped: u64,
}

/// What identifies a message.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identified {
    /// `None` for a request, the status for a response.
    status: Option<u16>,
    call_id: Box<str>,
    cseq: u32,
    /// The `CSeq` method.
    method: MethodBuf,
    /// The top `Via` branch.
    branch: Box<str>,
}

/// The head bytes of a prefix that can be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeadBytes<'a> {
    /// The whole head, blank line included.
    Whole(&'a [u8]),
    /// The head up to the end of its last complete line, without a blank line.
    Cut(&'a [u8]),
    /// Not even the start line ends within the prefix.
    NoLine,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The part of `prefix` that can be parsed as a head: up to the blank line, else up to the
/// last line end that is followed, within the prefix, by a line that does not continue the
/// one before (a header folded across the cut is dropped whole). The start line cannot be
/// folded, so its line end always counts.
fn head_bytes(prefix: &[u8]) -> HeadBytes<'_> {
    let lead = sipsctp_sip_message::leading_crlf(prefix);
    let rest = prefix.get(lead..).unwrap_or_default();
    if let Some(i) = find(rest, b"\r\n\r\n") {
        return HeadBytes::Whole(rest.get(..i.saturating_add(4)).unwrap_or(rest));
    }
    let Some(first) = find(rest, b"\r\n") else {
        return HeadBytes::NoLine;
    };
    let mut cut = first.saturating_add(2);
    for (i, w) in rest.windows(3).enumerate() {
        if let [b'\r', b'\n', next] = w
            && *next != b' '
            && *next != b'\t'
        {
            cut = cut.max(i.saturating_add(2));
        }
    }
    HeadBytes::Cut(rest.get(..cut).unwrap_or(rest))
}

/// Whether `prefix` begins like a start line: `SIP/2.0 ` or a method token and a space.
fn looks_like_start_line(prefix: &[u8]) -> bool {
    let rest = prefix
        .get(sipsctp_sip_message::leading_crlf(prefix)..)
        .unwrap_or_default();
    if rest.starts_with(b"SIP/2.0 ") {
        return true;
    }
    rest.iter()
        .position(|&b| b == b' ')
        .and_then(|sp| rest.get(..sp))
        .and_then(Method::parse)
        .is_some()
}

/// Whether a parse error is about the start line.
const fn is_start_line_error(e: &ParseError) -> bool {
    matches!(e.kind, ParseErrorKind::Empty)
        || matches!(
            e.field(),
            Some(
                Field::StartLine
                    | Field::Method
                    | Field::RequestUri
                    | Field::Version
                    | Field::StatusCode
                    | Field::ReasonPhrase
            )
        )
}

/// Identifies the message whose first bytes are `prefix` (the first fragment being `len`
/// bytes), parsing in `scratch`.
fn identify(prefix: &[u8], len: u32, scratch: &mut Vec<u8>) -> Result<Identified, Unidentified> {
    let prefix = prefix.get(..MAX_PREFIX).unwrap_or(prefix);
    let (head, cut) = match head_bytes(prefix) {
        HeadBytes::Whole(head) => (head, false),
        HeadBytes::Cut(head) => (head, true),
        HeadBytes::NoLine => {
            let shorter = usize::try_from(len).is_ok_and(|len| prefix.len() < len);
            return Err(if shorter && looks_like_start_line(prefix) {
                Unidentified::Truncated
            } else {
                Unidentified::NotSip
            });
        }
    };
    scratch.clear();
    scratch.extend_from_slice(head);
    if cut {
        scratch.extend_from_slice(b"\r\n");
    }
    let msg = Message::parse_head(scratch, &sipsctp_sip_message::Limits::DEFAULT).map_err(|e| {
        if is_start_line_error(&e) || e.offset < msg_start_line_end(head) {
            Unidentified::NotSip
        } else {
            Unidentified::Malformed
        }
    })?;
    let needed = |e: ParseError| match e.kind {
        ParseErrorKind::Missing(_) if cut => Unidentified::Truncated,
        _ => Unidentified::Malformed,
    };
    let call_id = msg.call_id().map_err(needed)?;
    let cseq = msg.cseq().map_err(needed)?;
    let via = msg.top_via().map_err(needed)?;
    let branch = via
        .branch
        .filter(|b| !b.is_empty())
        .ok_or(Unidentified::NoBranch)?;
    let method = cseq.method.to_buf();
    let status = match (msg.method(), msg.status()) {
        (Some(m), _) if m.to_buf() == method => None,
        (Some(_), _) => return Err(Unidentified::Malformed),
        (None, Some(status)) => Some(status),
        (None, None) => return Err(Unidentified::NotSip),
    };
    Ok(Identified {
        status,
        call_id: call_id.into(),
        cseq: cseq.seq,
        method,
        branch: branch.into(),
    })
}

/// Where the start line of `head` ends (its CR).
fn msg_start_line_end(head: &[u8]) -> usize {
    let lead = sipsctp_sip_message::leading_crlf(head);
    head.get(lead..)
        .and_then(|rest| find(rest, b"\r\n"))
        .map_or(head.len(), |i| i.saturating_add(lead))
}

/// A request's identity across the hop: `Call-ID`, `CSeq` number and method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RequestKey {
    call_id: Box<str>,
    cseq: u32,
    method: MethodBuf,
}

/// A transaction on one hop: the top `Via` branch and the `CSeq` method (a `CANCEL` shares
/// its `INVITE`'s branch but is its own transaction).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BranchKey {
    branch: Box<str>,
    method: MethodBuf,
}

/// An open transaction.
#[derive(Debug, Clone)]
struct Open {
    key: RequestKey,
    /// Where the request came from (a UAC's own: no association).
    inbound: Leg,
    /// The received request's branch; `None` when the process originated it.
    inbound_branch: Option<Box<str>>,
    /// Where it was sent on, and on which branch.
    outbound: Option<(Leg, Box<str>)>,
    received_at: Duration,
    forwarded_at: Option<Duration>,
    /// First response received from upstream.
    first_response_at: Option<Duration>,
    /// First provisional response the process sent itself before sending the request on.
    own_provisional_at: Option<Duration>,
    /// The final response received: status and time.
    final_received: Option<(u16, Duration)>,
    retransmissions: u32,
    deadline: Duration,
}

impl Open {
    fn is_ack(&self) -> bool {
        self.key.method.as_method() == Method::Ack
    }

    fn matches(&self, id: &Identified) -> bool {
        *self.key.call_id == *id.call_id && self.key.cseq == id.cseq
    }

    fn into_transaction(
        self,
        id: u64,
        outcome: Outcome,
        ended_at: Duration,
        first_response_at: Option<Duration>,
    ) -> Transaction {
        let (outbound, branch) = match self.outbound {
            Some((leg, branch)) => (leg, branch),
            None => (self.inbound, self.inbound_branch.unwrap_or_default()),
        };
        Transaction {
            id,
            method: self.key.method.as_str().into(),
            call_id: self.key.call_id,
            cseq: self.key.cseq,
            branch,
            inbound: self.inbound,
            outbound,
            received_at: self.received_at,
            forwarded_at: self.forwarded_at.unwrap_or(self.received_at),
            first_response_at,
            ended_at,
            outcome,
            sip_retransmissions: self.retransmissions,
        }
    }
}

/// Turns captured message prefixes into finished SIP transactions (see the module
/// documentation for the rules).
///
/// Inputs: [`handle`](Self::handle) for each message, in capture order. Outputs:
/// [`poll`](Self::poll) (call it until `None` after each `handle`, and when
/// [`poll_timeout`](Self::poll_timeout) is reached), [`stats`](Self::stats). Times must not go
/// backwards between calls.
#[derive(Debug)]
pub struct Assembler {
    limits: Limits,
    /// The last id given out (ids start at 1).
    last_id: u64,
    /// Open transactions by id: the first is the oldest.
    open: BTreeMap<u64, Open>,
    by_request: HashMap<RequestKey, Vec<u64>>,
    by_inbound: HashMap<BranchKey, u64>,
    by_outbound: HashMap<BranchKey, u64>,
    deadlines: BTreeSet<(Duration, u64)>,
    ready: VecDeque<Transaction>,
    recent: VecDeque<(AssocKey, u32)>,
    recent_set: HashSet<(AssocKey, u32)>,
    scratch: Vec<u8>,
    stats: Stats,
}

impl Default for Assembler {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl Assembler {
    /// An empty assembler.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits: Limits {
                max_open: limits.max_open.max(1),
                ..limits
            },
            last_id: 0,
            open: BTreeMap::new(),
            by_request: HashMap::new(),
            by_inbound: HashMap::new(),
            by_outbound: HashMap::new(),
            deadlines: BTreeSet::new(),
            ready: VecDeque::new(),
            recent: VecDeque::new(),
            recent_set: HashSet::new(),
            scratch: Vec::new(),
            stats: Stats::default(),
        }
    }

    /// Counters since creation.
    pub const fn stats(&self) -> Stats {
        self.stats
    }

    /// Transactions open now.
    pub fn open(&self) -> usize {
        self.open.len()
    }

    /// Takes one message.
    pub fn handle(&mut self, seen: &Seen<'_>) -> Handled {
        let handled = self.handle_inner(seen);
        let s = &mut self.stats;
        let counter = match handled {
            Handled::Request => &mut s.requests,
            Handled::Response => &mut s.responses,
            // Counted where the direction is known.
            Handled::Retransmission => return handled,
            Handled::Fork => &mut s.forks,
            Handled::Duplicate => &mut s.duplicates,
            Handled::Unmatched => &mut s.unmatched,
            Handled::Unidentified(reason) => {
                s.unidentified.add(reason);
                return handled;
            }
        };
        *counter = counter.saturating_add(1);
        handled
    }

    fn handle_inner(&mut self, seen: &Seen<'_>) -> Handled {
        if seen.direction == Direction::Received
            && let Some(tsn) = seen.tsn
            && self.seen_before(seen.assoc, tsn)
        {
            return Handled::Duplicate;
        }
        let id = match identify(seen.prefix, seen.len, &mut self.scratch) {
            Ok(id) => id,
            Err(reason) => return Handled::Unidentified(reason),
        };
        match (id.status, seen.direction) {
            (None, Direction::Received) => self.received_request(seen, id),
            (None, Direction::Sent) => self.sent_request(seen, id),
            (Some(status), Direction::Received) => self.received_response(seen, &id, status),
            (Some(status), Direction::Sent) => self.sent_response(seen, &id, status),
        }
    }

    /// The next finished transaction, if one is ready at `now` (those whose deadline passed
    /// are finished first).
    pub fn poll(&mut self, now: Duration) -> Option<Transaction> {
        if let Some(tx) = self.ready.pop_front() {
            return Some(tx);
        }
        let &(deadline, id) = self.deadlines.first()?;
        if deadline > now {
            return None;
        }
        self.expire(id, deadline);
        self.ready.pop_front()
    }

    /// When [`poll`](Self::poll) has something next: `Duration::ZERO` when something is ready
    /// now, the earliest deadline otherwise, `None` when nothing is open.
    pub fn poll_timeout(&self) -> Option<Duration> {
        if !self.ready.is_empty() {
            return Some(Duration::ZERO);
        }
        self.deadlines.first().map(|&(deadline, _)| deadline)
    }

    /// Whether `(assoc, tsn)` is among the last `dedupe` received; remembers it if not.
    fn seen_before(&mut self, assoc: AssocKey, tsn: u32) -> bool {
        if self.limits.dedupe == 0 {
            return false;
        }
        let key = (assoc, tsn);
        if self.recent_set.contains(&key) {
            return true;
        }
        while self.recent.len() >= self.limits.dedupe {
            match self.recent.pop_front() {
                Some(old) => self.recent_set.remove(&old),
                None => break,
            };
        }
        self.recent.push_back(key);
        self.recent_set.insert(key);
        false
    }

    /// Rule 1.
    fn received_request(&mut self, seen: &Seen<'_>, id: Identified) -> Handled {
        let branch_key = BranchKey {
            branch: id.branch.clone(),
            method: id.method.clone(),
        };
        if let Some(tx) = self
            .by_inbound
            .get(&branch_key)
            .and_then(|n| self.open.get_mut(n))
            && tx.matches(&id)
        {
            tx.retransmissions = tx.retransmissions.saturating_add(1);
            let n = &mut self.stats.retransmissions_received;
            *n = n.saturating_add(1);
            return Handled::Retransmission;
        }
        let key = RequestKey {
            call_id: id.call_id,
            cseq: id.cseq,
            method: id.method,
        };
        let wait = if key.method.as_method() == Method::Ack {
            self.limits.answer_grace
        } else {
            self.limits.timeout
        };
        let open = Open {
            key,
            inbound: Leg {
                transport: Transport::Sctp,
                peer: seen.peer,
                local: seen.local,
                assoc: Some(seen.assoc),
            },
            inbound_branch: Some(id.branch),
            outbound: None,
            received_at: seen.at,
            forwarded_at: None,
            first_response_at: None,
            own_provisional_at: None,
            final_received: None,
            retransmissions: 0,
            deadline: seen.at.saturating_add(wait),
        };
        let n = self.insert(seen.at, open);
        self.by_inbound.insert(branch_key, n);
        Handled::Request
    }

    /// Rule 2.
    fn sent_request(&mut self, seen: &Seen<'_>, id: Identified) -> Handled {
        let key = RequestKey {
            call_id: id.call_id,
            cseq: id.cseq,
            method: id.method,
        };
        let ids = self
            .by_request
            .get(&key)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let waiting = ids
            .iter()
            .rev()
            .copied()
            .find(|n| self.open.get(n).is_some_and(|tx| tx.outbound.is_none()));
        let outbound = Leg {
            transport: Transport::Sctp,
            peer: seen.peer,
            local: seen.local,
            assoc: Some(seen.assoc),
        };
        let n = if let Some(n) = waiting {
            let timeout = self.limits.timeout;
            let Some(tx) = self.open.get_mut(&n) else {
                return Handled::Unmatched;
            };
            tx.outbound = Some((outbound, id.branch.clone()));
            tx.forwarded_at = Some(seen.at);
            // Our own provisional response (a proxy's 100 Trying) is not upstream's.
            tx.own_provisional_at = None;
            self.reschedule(n, seen.at.saturating_add(timeout));
            n
        } else if !ids.is_empty() {
            let same_branch = ids.iter().any(|n| {
                self.open
                    .get(n)
                    .and_then(|tx| tx.outbound.as_ref())
                    .is_some_and(|(_, b)| *b == id.branch)
            });
            if same_branch {
                let n = &mut self.stats.retransmissions_sent;
                *n = n.saturating_add(1);
                return Handled::Retransmission;
            }
            return Handled::Fork;
        } else {
            // The process originated it: it has no response leg.
            let open = Open {
                inbound: Leg {
                    assoc: None,
                    ..outbound
                },
                inbound_branch: None,
                outbound: Some((outbound, id.branch.clone())),
                received_at: seen.at,
                forwarded_at: Some(seen.at),
                first_response_at: None,
                own_provisional_at: None,
                final_received: None,
                retransmissions: 0,
                deadline: seen.at.saturating_add(self.limits.timeout),
                key,
            };
            self.insert(seen.at, open)
        };
        let is_ack = self.open.get(&n).is_some_and(Open::is_ack);
        if is_ack {
            self.finish(n, Outcome::Forwarded, seen.at, None);
        } else if let Some(tx) = self.open.get(&n) {
            let branch_key = BranchKey {
                branch: id.branch,
                method: tx.key.method.clone(),
            };
            self.by_outbound.insert(branch_key, n);
        }
        Handled::Request
    }

    /// Rule 3.
    fn received_response(&mut self, seen: &Seen<'_>, id: &Identified, status: u16) -> Handled {
        let branch_key = BranchKey {
            branch: id.branch.clone(),
            method: id.method.clone(),
        };
        let Some(&n) = self.by_outbound.get(&branch_key) else {
            return Handled::Unmatched;
        };
        let grace = self.limits.answer_grace;
        let Some(tx) = self.open.get_mut(&n).filter(|tx| tx.matches(id)) else {
            return Handled::Unmatched;
        };
        tx.first_response_at.get_or_insert(seen.at);
        if status < 200 || tx.final_received.is_some() {
            // A provisional response, or the final one again (a 2xx is resent until ACKed).
            return Handled::Response;
        }
        tx.final_received = Some((status, seen.at));
        let first = tx.first_response_at;
        if tx.inbound.assoc.is_none() {
            self.finish(n, Outcome::Final(status), seen.at, first);
        } else {
            self.reschedule(n, seen.at.saturating_add(grace));
        }
        Handled::Response
    }

    /// Rule 4.
    fn sent_response(&mut self, seen: &Seen<'_>, id: &Identified, status: u16) -> Handled {
        let branch_key = BranchKey {
            branch: id.branch.clone(),
            method: id.method.clone(),
        };
        let Some(&n) = self.by_inbound.get(&branch_key) else {
            return Handled::Unmatched;
        };
        let Some(tx) = self
            .open
            .get_mut(&n)
            .filter(|tx| tx.matches(id) && !tx.is_ack())
        else {
            return Handled::Unmatched;
        };
        let is_final = status >= 200;
        match (tx.outbound.is_some(), is_final, tx.final_received) {
            // The UAS (or a proxy answering before it sends the request on).
            (false, false, _) => {
                tx.own_provisional_at.get_or_insert(seen.at);
            }
            (false, true, _) => {
                let first = tx.own_provisional_at.unwrap_or(seen.at);
                self.finish(n, Outcome::Final(status), seen.at, Some(first));
            }
            // A relayed provisional response.
            (true, false, _) => {}
            // The relayed final response.
            (true, true, Some((received, at))) if received == status => {
                let first = tx.first_response_at;
                self.finish(n, Outcome::Final(status), at, first);
            }
            // The process's own final response (a timer, a failure route).
            (true, true, _) => {
                let first = tx.first_response_at.or(Some(seen.at));
                self.finish(n, Outcome::Final(status), seen.at, first);
            }
        }
        Handled::Response
    }

    /// Opens a transaction at `now` (finishing the oldest first when `max_open` are open);
    /// returns its id.
    fn insert(&mut self, now: Duration, open: Open) -> u64 {
        while self.open.len() >= self.limits.max_open {
            let Some(&oldest) = self.open.keys().next() else {
                break;
            };
            self.evict(oldest, now);
        }
        self.last_id = self.last_id.saturating_add(1);
        let n = self.last_id;
        self.by_request.entry(open.key.clone()).or_default().push(n);
        self.deadlines.insert((open.deadline, n));
        self.open.insert(n, open);
        n
    }

    /// Moves the deadline of `n`.
    fn reschedule(&mut self, n: u64, deadline: Duration) {
        if let Some(tx) = self.open.get_mut(&n) {
            self.deadlines.remove(&(tx.deadline, n));
            tx.deadline = deadline;
            self.deadlines.insert((deadline, n));
        }
    }

    /// Finishes `n` at its deadline.
    fn expire(&mut self, n: u64, deadline: Duration) {
        let Some(tx) = self.open.get(&n) else {
            self.deadlines.remove(&(deadline, n));
            return;
        };
        if let Some((status, at)) = tx.final_received {
            // Its sent copy was not seen within the grace.
            let first = tx.first_response_at;
            self.finish(n, Outcome::Final(status), at, first);
        } else if tx.is_ack() {
            // Not sent on: consumed.
            let at = tx.received_at;
            self.finish(n, Outcome::Forwarded, at, None);
        } else {
            let first = tx.first_response_at;
            self.stats.expired = self.stats.expired.saturating_add(1);
            self.finish(n, Outcome::Expired, deadline, first);
        }
    }

    /// Finishes `n` early, with what is known of it, at `now`.
    fn evict(&mut self, n: u64, now: Duration) {
        self.stats.evicted = self.stats.evicted.saturating_add(1);
        let Some(tx) = self.open.get(&n) else {
            return;
        };
        let first = tx.first_response_at;
        match tx.final_received {
            Some((status, at)) => self.finish(n, Outcome::Final(status), at, first),
            None if tx.is_ack() => {
                let at = tx.forwarded_at.unwrap_or(tx.received_at);
                self.finish(n, Outcome::Forwarded, at, None);
            }
            None => self.finish(n, Outcome::Expired, now, first),
        }
    }

    /// Removes `n` and queues it as finished.
    fn finish(
        &mut self,
        n: u64,
        outcome: Outcome,
        ended_at: Duration,
        first_response_at: Option<Duration>,
    ) {
        let Some(tx) = self.open.remove(&n) else {
            return;
        };
        self.deadlines.remove(&(tx.deadline, n));
        if let Some(ids) = self.by_request.get_mut(&tx.key) {
            ids.retain(|&i| i != n);
            if ids.is_empty() {
                self.by_request.remove(&tx.key);
            }
        }
        if let Some(branch) = &tx.inbound_branch {
            remove_if(&mut self.by_inbound, branch, &tx.key.method, n);
        }
        if let Some((_, branch)) = &tx.outbound {
            remove_if(&mut self.by_outbound, branch, &tx.key.method, n);
        }
        if self.ready.len() >= self.limits.max_open {
            self.ready.pop_front();
            self.stats.dropped = self.stats.dropped.saturating_add(1);
        }
        self.stats.finished = self.stats.finished.saturating_add(1);
        self.ready
            .push_back(tx.into_transaction(n, outcome, ended_at, first_response_at));
    }
}

/// Removes `(branch, method)` from `index` if it still names `n`.
fn remove_if(index: &mut HashMap<BranchKey, u64>, branch: &str, method: &MethodBuf, n: u64) {
    let key = BranchKey {
        branch: branch.into(),
        method: method.clone(),
    };
    if index.get(&key) == Some(&n) {
        index.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipsctp_correlate::AssocId;

    const NETNS: u32 = 4_026_531_840;
    /// The UAC (sipp client) side: the association the proxy receives requests on.
    const DOWN: u32 = 7;
    /// The UAS side: the association the proxy sends requests on.
    const UP: u32 = 9;
    const CALL_ID: &str = "1-4242@10.0.0.1";
    const UAC_BRANCH: &str = "z9hG4bK-4242-1-0";
    const PROXY_BRANCH: &str = "z9hG4bKcydzigwkX.0";

    fn assoc(id: u32) -> AssocKey {
        AssocKey {
            netns: NETNS,
            assoc_id: AssocId(id),
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn uac() -> SocketAddr {
        addr("10.0.0.1:5060")
    }
    fn proxy() -> SocketAddr {
        addr("10.0.0.2:5060")
    }
    fn uas() -> SocketAddr {
        addr("10.0.0.3:5060")
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    const SDP: &str = "v=0\r\n\
o=user1 53655765 2353687637 IN IP4 10.0.0.1\r\n\
s=-\r\n\
c=IN IP4 10.0.0.1\r\n\
t=0 0\r\n\
m=audio 6000 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n";

    /// A sipp-like request; `vias` top first (a proxy's copy has its own on top).
    fn request(method: &str, cseq: u32, vias: &[&str], body: &str) -> String {
        let mut s = format!("{method} sip:service@10.0.0.3:5060 SIP/2.0\r\n");
        for via in vias {
            s.push_str(&format!("Via: SIP/2.0/SCTP {via}\r\n"));
        }
        if vias.len() > 1 {
            s.push_str("Record-Route: <sip:10.0.0.2;transport=sctp;lr>\r\n");
        }
        s.push_str(&format!(
            "From: sipp <sip:sipp@10.0.0.1:5060>;tag=4242SIPpTag001\r\n\
To: service <sip:service@10.0.0.3:5060>\r\n\
Call-ID: {CALL_ID}\r\n\
CSeq: {cseq} {method}\r\n\
Contact: sip:sipp@10.0.0.1:5060;transport=sctp\r\n\
Max-Forwards: {}\r\n\
Subject: Performance Test\r\n",
            70 - vias.len() + 1
        ));
        if !body.is_empty() {
            s.push_str("Content-Type: application/sdp\r\n");
        }
        s.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        s
    }

    fn invite(vias: &[&str]) -> String {
        request("INVITE", 1, vias, SDP)
    }

    /// The UAC's Via, and the proxy's on top of it.
    fn uac_via() -> String {
        format!("10.0.0.1:5060;branch={UAC_BRANCH}")
    }
    fn proxy_vias() -> [String; 2] {
        [
            format!("10.0.0.2:5060;branch={PROXY_BRANCH}"),
            format!("10.0.0.1:5060;received=10.0.0.1;branch={UAC_BRANCH}"),
        ]
    }

    fn response(status: u16, reason: &str, method: &str, cseq: u32, vias: &[&str]) -> String {
        let mut s = format!("SIP/2.0 {status} {reason}\r\n");
        for via in vias {
            s.push_str(&format!("Via: SIP/2.0/SCTP {via}\r\n"));
        }
        let tag = if status > 100 {
            ";tag=77SIPpTag011"
        } else {
            ""
        };
        s.push_str(&format!(
            "From: sipp <sip:sipp@10.0.0.1:5060>;tag=4242SIPpTag001\r\n\
To: service <sip:service@10.0.0.3:5060>{tag}\r\n\
Call-ID: {CALL_ID}\r\n\
CSeq: {cseq} {method}\r\n\
Contact: <sip:10.0.0.3:5060;transport=sctp>\r\n\
Content-Length: 0\r\n\r\n"
        ));
        s
    }

    /// Responses on the proxy's upstream hop carry both Vias; downstream only the UAC's.
    fn up_response(status: u16, reason: &str, method: &str) -> String {
        let [p, u] = proxy_vias();
        response(status, reason, method, 1, &[&p, &u])
    }
    fn down_response(status: u16, reason: &str, method: &str) -> String {
        let [_, u] = proxy_vias();
        response(status, reason, method, 1, &[&u])
    }

    /// A test driver: each message with its TSN counting up.
    struct Run {
        a: Assembler,
        tsn: u32,
    }

    impl Run {
        fn new() -> Self {
            Self::with(Limits::default())
        }
        fn with(limits: Limits) -> Self {
            Self {
                a: Assembler::new(limits),
                tsn: 100,
            }
        }
        /// The proxy received `msg` on association `on` (from the UAC on DOWN, the UAS on UP).
        fn recv(&mut self, at: Duration, on: u32, msg: &str) -> Handled {
            self.tsn += 1;
            let tsn = self.tsn;
            self.recv_tsn(at, on, tsn, msg.as_bytes())
        }
        fn recv_tsn(&mut self, at: Duration, on: u32, tsn: u32, msg: &[u8]) -> Handled {
            self.recv_cut(at, on, tsn, msg, msg.len())
        }
        fn recv_cut(&mut self, at: Duration, on: u32, tsn: u32, msg: &[u8], n: usize) -> Handled {
            self.a.handle(&Seen {
                at,
                direction: Direction::Received,
                assoc: assoc(on),
                local: Some(proxy()),
                peer: if on == DOWN { uac() } else { uas() },
                tsn: Some(tsn),
                len: u32::try_from(msg.len()).unwrap(),
                prefix: &msg[..n.min(msg.len())],
            })
        }
        fn send(&mut self, at: Duration, on: u32, msg: &str) -> Handled {
            let msg = msg.as_bytes();
            self.a.handle(&Seen {
                at,
                direction: Direction::Sent,
                assoc: assoc(on),
                local: Some(proxy()),
                peer: if on == DOWN { uac() } else { uas() },
                tsn: None,
                len: u32::try_from(msg.len()).unwrap(),
                prefix: msg,
            })
        }
        fn drain(&mut self, now: Duration) -> Vec<Transaction> {
            std::iter::from_fn(|| self.a.poll(now)).collect()
        }
    }

    fn leg(on: u32, with_assoc: bool) -> Leg {
        Leg {
            transport: Transport::Sctp,
            peer: if on == DOWN { uac() } else { uas() },
            local: Some(proxy()),
            assoc: with_assoc.then(|| assoc(on)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn tx(
        id: u64,
        method: &str,
        branch: &str,
        inbound: Leg,
        outbound: Leg,
        times: [Duration; 2],
        first_response_at: Option<Duration>,
        ended_at: Duration,
        outcome: Outcome,
    ) -> Transaction {
        Transaction {
            id,
            method: method.into(),
            call_id: CALL_ID.into(),
            cseq: 1,
            branch: branch.into(),
            inbound,
            outbound,
            received_at: times[0],
            forwarded_at: times[1],
            first_response_at,
            ended_at,
            outcome,
            sip_retransmissions: 0,
        }
    }

    #[test]
    fn proxy_invite_flow() {
        let mut r = Run::new();
        let [p, u] = proxy_vias();
        assert_eq!(
            r.recv(ms(0), DOWN, &invite(&[&uac_via()])),
            Handled::Request
        );
        // Kamailio's own 100 Trying before it forwards: not upstream's first response.
        assert_eq!(
            r.send(ms(1), DOWN, &down_response(100, "Trying", "INVITE")),
            Handled::Response
        );
        assert_eq!(r.send(ms(2), UP, &invite(&[&p, &u])), Handled::Request);
        assert_eq!(
            r.recv(ms(5), UP, &up_response(100, "Trying", "INVITE")),
            Handled::Response
        );
        assert_eq!(
            r.recv(ms(20), UP, &up_response(180, "Ringing", "INVITE")),
            Handled::Response
        );
        assert_eq!(
            r.send(ms(21), DOWN, &down_response(180, "Ringing", "INVITE")),
            Handled::Response
        );
        assert_eq!(
            r.recv(ms(100), UP, &up_response(200, "OK", "INVITE")),
            Handled::Response
        );
        assert_eq!(r.a.poll(ms(100)), None);
        assert_eq!(r.a.poll_timeout(), Some(ms(2100)));
        assert_eq!(
            r.send(ms(101), DOWN, &down_response(200, "OK", "INVITE")),
            Handled::Response
        );
        assert_eq!(r.a.poll_timeout(), Some(Duration::ZERO));
        let want = tx(
            1,
            "INVITE",
            PROXY_BRANCH,
            leg(DOWN, true),
            leg(UP, true),
            [ms(0), ms(2)],
            Some(ms(5)),
            ms(100),
            Outcome::Final(200),
        );
        assert_eq!(r.drain(ms(101)), vec![want]);
        assert_eq!(r.a.poll_timeout(), None);
        assert_eq!(r.a.open(), 0);
        let s = r.a.stats();
        assert_eq!((s.requests, s.responses, s.finished), (2, 6, 1));
        assert_eq!((s.unmatched, s.expired, s.evicted), (0, 0, 0));
    }

    #[test]
    fn proxy_options_flow() {
        let mut r = Run::new();
        let [p, u] = proxy_vias();
        let opts = |vias: &[&str]| request("OPTIONS", 1, vias, "");
        r.recv(ms(1000), DOWN, &opts(&[&uac_via()]));
        r.send(ms(1001), UP, &opts(&[&p, &u]));
        assert_eq!(r.drain(ms(1001)), vec![]);
        r.recv(ms(1010), UP, &up_response(200, "OK", "OPTIONS"));
        r.send(ms(1011), DOWN, &down_response(200, "OK", "OPTIONS"));
        let want = tx(
            1,
            "OPTIONS",
            PROXY_BRANCH,
            leg(DOWN, true),
            leg(UP, true),
            [ms(1000), ms(1001)],
            Some(ms(1010)),
            ms(1010),
            Outcome::Final(200),
        );
        assert_eq!(r.drain(ms(1011)), vec![want]);
    }

    #[test]
    fn ack_forwarded_at_once() {
        let mut r = Run::new();
        let [p, u] = proxy_vias();
        let ack = |vias: &[&str]| request("ACK", 1, vias, "");
        assert_eq!(r.recv(ms(50), DOWN, &ack(&[&uac_via()])), Handled::Request);
        assert_eq!(r.a.poll_timeout(), Some(ms(2050)));
        assert_eq!(r.send(ms(51), UP, &ack(&[&p, &u])), Handled::Request);
        let want = tx(
            1,
            "ACK",
            PROXY_BRANCH,
            leg(DOWN, true),
            leg(UP, true),
            [ms(50), ms(51)],
            None,
            ms(51),
            Outcome::Forwarded,
        );
        assert_eq!(r.drain(ms(51)), vec![want]);
        assert_eq!(r.a.poll_timeout(), None);
    }

    #[test]
    fn ack_consumed_ends_after_grace() {
        let mut r = Run::new();
        r.recv(ms(50), DOWN, &request("ACK", 1, &[&uac_via()], ""));
        assert_eq!(r.drain(ms(2049)), vec![]);
        let want = tx(
            1,
            "ACK",
            UAC_BRANCH,
            leg(DOWN, true),
            leg(DOWN, true),
            [ms(50), ms(50)],
            None,
            ms(50),
            Outcome::Forwarded,
        );
        assert_eq!(r.drain(ms(2050)), vec![want]);
        assert_eq!(r.a.stats().expired, 0);
    }

    #[test]
    fn sent_ack_of_uac_is_forwarded() {
        let mut r = Run::new();
        r.send(ms(7), UP, &request("ACK", 1, &[&uac_via()], ""));
        let want = tx(
            1,
            "ACK",
            UAC_BRANCH,
            leg(UP, false),
            leg(UP, true),
            [ms(7), ms(7)],
            None,
            ms(7),
            Outcome::Forwarded,
        );
        assert_eq!(r.drain(ms(7)), vec![want]);
    }

    /// A BYE whose sent 200 is not seen: it ends `answer_grace` after the received one, at
    /// the time that one arrived.
    #[test]
    fn bye_final_without_sent_copy_ends_after_grace() {
        let mut r = Run::new();
        let [p, u] = proxy_vias();
        let bye = |vias: &[&str]| request("BYE", 1, vias, "");
        r.recv(ms(3000), DOWN, &bye(&[&uac_via()]));
        r.send(ms(3001), UP, &bye(&[&p, &u]));
        r.recv(ms(3040), UP, &up_response(200, "OK", "BYE"));
        assert_eq!(r.a.poll_timeout(), Some(ms(5040)));
        assert_eq!(r.drain(ms(5039)), vec![]);
        let want = tx(
            1,
            "BYE",
            PROXY_BRANCH,
            leg(DOWN, true),
            leg(UP, true),
            [ms(3000), ms(3001)],
            Some(ms(3040)),
            ms(3040),
            Outcome::Final(200),
        );
        assert_eq!(r.drain(ms(5040)), vec![want]);
        // The sent copy after the end matches nothing.
        assert_eq!(
            r.send(ms(5041), DOWN, &down_response(200, "OK", "BYE")),
            Handled::Unmatched
        );
        assert_eq!(r.a.stats().unmatched, 1);
    }

    #[test]
    fn request_retransmission_counted_once() {
        let mut r = Run::new();
        let [p, u] = proxy_vias();
        let inv = invite(&[&uac_via()]);
        let fwd = invite(&[&p, &u]);
        assert_eq!(r.recv(ms(0), DOWN, &inv), Handled::Request);
        assert_eq!(r.send(ms(1), UP, &fwd), Handled::Request);
        assert_eq!(r.recv(ms(500), DOWN, &inv), Handled::Retransmission);
        assert_eq!(r.send(ms(501), UP, &fwd), Handled::Retransmission);
        r.recv(ms(600), UP, &up_response(486, "Busy Here", "INVITE"));
        r.send(ms(601), DOWN, &down_response(486, "Busy Here", "INVITE"));
        let got = r.drain(ms(601));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].sip_retransmissions, 1);
        assert_eq!(got[0].outcome, Outcome::Final(486));
        assert_eq!((got[0].received_at, got[0].forwarded_at), (ms(0), ms(1)));
        let s = r.a.stats();
        assert_eq!(
            (
                s.requests,
                s.retransmissions_received,
                s.retransmissions_sent
            ),
            (2, 1, 1)
        );
    }

    #[test]
    fn uac_flow() {
        let mut r = Run::new();
        let inv = invite(&[&uac_via()]);
        let resp = |status, reason| response(status, reason, "INVITE", 1, &[&uac_via()]);
        assert_eq!(r.send(ms(10), UP, &inv), Handled::Request);
        assert_eq!(r.recv(ms(30), UP, &resp(180, "Ringing")), Handled::Response);
        assert_eq!(r.drain(ms(30)), vec![]);
        assert_eq!(r.recv(ms(900), UP, &resp(200, "OK")), Handled::Response);
        let want = tx(
            1,
            "INVITE",
            UAC_BRANCH,
            leg(UP, false),
            leg(UP, true),
            [ms(10), ms(10)],
            Some(ms(30)),
            ms(900),
            Outcome::Final(200),
        );
        assert_eq!(r.drain(ms(900)), vec![want]);
        // A retransmitted 200 after the end.
        assert_eq!(r.recv(ms(1400), UP, &resp(200, "OK")), Handled::Unmatched);
    }

    #[test]
    fn uas_flow() {
        let mut r = Run::new();
        let opts = request("OPTIONS", 1, &[&uac_via()], "");
        assert_eq!(r.recv(ms(40), DOWN, &opts), Handled::Request);
        assert_eq!(
            r.send(ms(42), DOWN, &down_response(200, "OK", "OPTIONS")),
            Handled::Response
        );
        let want = tx(
            1,
            "OPTIONS",
            UAC_BRANCH,
            leg(DOWN, true),
            leg(DOWN, true),
            [ms(40), ms(40)],
            Some(ms(42)),
            ms(42),
            Outcome::Final(200),
        );
        assert_eq!(r.drain(ms(42)), vec![want]);
    }

    #[test]
    fn uas_invite_first_response_is_its_provisional() {
        let mut r = Run::new();
        r.recv(ms(0), DOWN, &invite(&[&uac_via()]));
        r.send(ms(3), DOWN, &down_response(180, "Ringing", "INVITE"));
        r.send(ms(800), DOWN, &down_response(200, "OK", "INVITE"));
        let got = r.drain(ms(800));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].first_response_at, Some(ms(3)));
        assert_eq!(got[0].ended_at, ms(800));
        assert_eq!(got[0].outbound, leg(DOWN, true));
        assert_eq!(got[0].branch.as_ref(), UAC_BRANCH);
    }

    #[test]
    fn proxy_own_final_ends_with_its_status() {
        let mut r = Run::new();
        let [p, u] = proxy_vias();
        r.recv(ms(0), DOWN, &invite(&[&uac_via()]));
        r.send(ms(1), UP, &invite(&[&p, &u]));
        r.recv(ms(10), UP, &up_response(100, "Trying", "INVITE"));
        r.send(
            ms(30_001),
            DOWN,
            &down_response(408, "Request Timeout", "INVITE"),
        );
        let got = r.drain(ms(30_001));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].outcome, Outcome::Final(408));
        assert_eq!(got[0].ended_at, ms(30_001));
        assert_eq!(got[0].first_response_at, Some(ms(10)));
    }

    #[test]
    fn truncated_before_call_id() {
        let mut r = Run::new();
        let inv = invite(&[&uac_via()]);
        let cut = inv.find("Call-ID").unwrap() + 4;
        assert_eq!(
            r.recv_cut(ms(0), DOWN, 1, inv.as_bytes(), cut),
            Handled::Unidentified(Unidentified::Truncated)
        );
        let s = r.a.stats();
        assert_eq!(s.unidentified.get(Unidentified::Truncated), 1);
        assert_eq!(s.unidentified.truncated, 1);
        assert_eq!((s.requests, s.unidentified.malformed), (0, 0));
        assert_eq!(r.a.open(), 0);
    }

    #[test]
    fn cut_after_needed_headers_still_identifies() {
        let inv = invite(&[&uac_via()]);
        let in_contact = inv.find("Contact:").unwrap() + 12;
        let in_body = inv.find("m=audio").unwrap() + 3;
        let after_cseq = inv.find("Contact:").unwrap();
        // One byte of the next line shows the CSeq line is complete.
        for cut in [in_contact, in_body, after_cseq + 1, 1024] {
            let mut r = Run::new();
            assert_eq!(
                r.recv_cut(ms(0), DOWN, 1, inv.as_bytes(), cut),
                Handled::Request,
                "cut at {cut}"
            );
            r.send(ms(5), DOWN, &down_response(603, "Decline", "INVITE"));
            let got = r.drain(ms(5));
            assert_eq!(got.len(), 1, "cut at {cut}");
            assert_eq!(got[0].call_id.as_ref(), CALL_ID);
            assert_eq!((got[0].cseq, got[0].method.as_ref()), (1, "INVITE"));
            assert_eq!(got[0].outcome, Outcome::Final(603));
        }
        // Cut inside the CSeq line, or right after it (a continuation line could follow):
        // CSeq is not there.
        let in_cseq = inv.find("CSeq: 1 INV").unwrap() + 8;
        for cut in [in_cseq, after_cseq] {
            let mut r = Run::new();
            assert_eq!(
                r.recv_cut(ms(0), DOWN, 1, inv.as_bytes(), cut),
                Handled::Unidentified(Unidentified::Truncated),
                "cut at {cut}"
            );
        }
    }

    /// A Via folded across the cut: its line is complete but its value goes on in the next
    /// (continuation) line, so the branch is not within the prefix.
    #[test]
    fn folded_via_cut_is_truncated() {
        // Call-ID and CSeq first: only the branch is missing.
        let msg = "OPTIONS sip:service@10.0.0.3 SIP/2.0\r\n\
Call-ID: c1\r\nCSeq: 1 OPTIONS\r\n\
Via: SIP/2.0/SCTP 10.0.0.1:5060\r\n ;branch=z9hG4bK-77\r\n\
Content-Length: 0\r\n\r\n";
        let cut = msg.find(" ;branch").unwrap() + 3;
        let mut r = Run::new();
        assert_eq!(
            r.recv_cut(ms(0), DOWN, 1, msg.as_bytes(), cut),
            Handled::Unidentified(Unidentified::Truncated)
        );
        // Whole, it identifies.
        assert_eq!(r.recv(ms(1), DOWN, msg), Handled::Request);
    }

    #[test]
    fn not_sip_and_malformed() {
        let mut r = Run::new();
        let garbage: Vec<u8> = (0..=255u8).cycle().take(600).collect();
        assert_eq!(
            r.recv_tsn(ms(0), DOWN, 1, &garbage),
            Handled::Unidentified(Unidentified::NotSip)
        );
        let http = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(
            r.recv_tsn(ms(0), DOWN, 2, http),
            Handled::Unidentified(Unidentified::NotSip)
        );
        // A whole head without Call-ID.
        let no_call_id = "OPTIONS sip:h SIP/2.0\r\nVia: SIP/2.0/SCTP h;branch=z9hG4bK1\r\n\
CSeq: 1 OPTIONS\r\n\r\n";
        assert_eq!(
            r.recv(ms(0), DOWN, no_call_id),
            Handled::Unidentified(Unidentified::Malformed)
        );
        // CSeq method is not the request's.
        let mismatch = "BYE sip:h SIP/2.0\r\nVia: SIP/2.0/SCTP h;branch=z9hG4bK1\r\n\
Call-ID: c\r\nCSeq: 1 INVITE\r\n\r\n";
        assert_eq!(
            r.recv(ms(0), DOWN, mismatch),
            Handled::Unidentified(Unidentified::Malformed)
        );
        let no_branch = "OPTIONS sip:h SIP/2.0\r\nVia: SIP/2.0/SCTP h\r\n\
Call-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n";
        assert_eq!(
            r.recv(ms(0), DOWN, no_branch),
            Handled::Unidentified(Unidentified::NoBranch)
        );
        let s = r.a.stats();
        let u = s.unidentified;
        assert_eq!(
            (u.not_sip, u.truncated, u.malformed, u.no_branch),
            (2, 0, 2, 1)
        );
        assert_eq!(r.a.open(), 0);
    }

    #[test]
    fn duplicate_tsn() {
        let mut r = Run::with(Limits {
            dedupe: 2,
            ..Limits::default()
        });
        let inv = invite(&[&uac_via()]);
        let b = inv.as_bytes();
        assert_eq!(r.recv_tsn(ms(0), DOWN, 5, b), Handled::Request);
        assert_eq!(r.recv_tsn(ms(0), DOWN, 5, b), Handled::Duplicate);
        // Same TSN on another association: not a duplicate (here a new transaction there).
        assert_eq!(
            r.recv_tsn(ms(0), UP, 5, b"garbage"),
            Handled::Unidentified(Unidentified::NotSip)
        );
        // Two more push TSN 5 on DOWN out of the ring of 2.
        r.recv_tsn(ms(0), DOWN, 6, b"x");
        r.recv_tsn(ms(0), DOWN, 7, b"x");
        assert_eq!(r.recv_tsn(ms(0), DOWN, 5, b), Handled::Retransmission);
        let s = r.a.stats();
        assert_eq!((s.duplicates, s.retransmissions_received), (1, 1));
    }

    #[test]
    fn expiry_at_timeout() {
        let mut r = Run::new();
        let [p, u] = proxy_vias();
        r.recv(ms(0), DOWN, &invite(&[&uac_via()]));
        assert_eq!(r.a.poll_timeout(), Some(ms(32_000)));
        r.send(ms(1), UP, &invite(&[&p, &u]));
        assert_eq!(r.a.poll_timeout(), Some(ms(32_001)));
        assert_eq!(r.drain(ms(32_000)), vec![]);
        let want = tx(
            1,
            "INVITE",
            PROXY_BRANCH,
            leg(DOWN, true),
            leg(UP, true),
            [ms(0), ms(1)],
            None,
            ms(32_001),
            Outcome::Expired,
        );
        // Polled late: it ended at its deadline.
        assert_eq!(r.drain(ms(40_000)), vec![want]);
        assert_eq!(r.a.stats().expired, 1);
        assert_eq!(r.a.poll_timeout(), None);
    }

    #[test]
    fn never_sent_on_expires_with_inbound_as_outbound() {
        let mut r = Run::with(Limits {
            timeout: ms(100),
            ..Limits::default()
        });
        r.recv(ms(10), DOWN, &request("OPTIONS", 1, &[&uac_via()], ""));
        let want = tx(
            1,
            "OPTIONS",
            UAC_BRANCH,
            leg(DOWN, true),
            leg(DOWN, true),
            [ms(10), ms(10)],
            None,
            ms(110),
            Outcome::Expired,
        );
        assert_eq!(r.drain(ms(110)), vec![want]);
    }

    #[test]
    fn eviction_over_max_open() {
        let mut r = Run::with(Limits {
            max_open: 2,
            ..Limits::default()
        });
        let via = |cseq: u32| format!("10.0.0.1:5060;branch=z9hG4bK-4242-{cseq}-0");
        for cseq in 1..=3 {
            let opts = request("OPTIONS", cseq, &[&via(cseq)], "");
            assert_eq!(r.recv(ms(u64::from(cseq)), DOWN, &opts), Handled::Request);
        }
        assert_eq!(r.a.open(), 2);
        let got = r.drain(ms(3));
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].id, got[0].cseq), (1, 1));
        assert_eq!(got[0].outcome, Outcome::Expired);
        assert_eq!((got[0].received_at, got[0].ended_at), (ms(1), ms(3)));
        let s = r.a.stats();
        assert_eq!((s.evicted, s.expired, s.finished), (1, 0, 1));
        // The others still end normally, with their ids.
        r.send(ms(4), DOWN, &response(200, "OK", "OPTIONS", 3, &[&via(3)]));
        r.send(ms(4), DOWN, &response(200, "OK", "OPTIONS", 2, &[&via(2)]));
        let ids: Vec<_> = r.drain(ms(4)).iter().map(|t| (t.id, t.cseq)).collect();
        assert_eq!(ids, vec![(3, 3), (2, 2)]);
    }

    #[test]
    fn unmatched_responses() {
        let mut r = Run::new();
        assert_eq!(
            r.recv(ms(0), UP, &up_response(200, "OK", "INVITE")),
            Handled::Unmatched
        );
        assert_eq!(
            r.send(ms(0), DOWN, &down_response(200, "OK", "INVITE")),
            Handled::Unmatched
        );
        // Right branch, other CSeq method (a CANCEL's 200 is not the INVITE's).
        r.recv(ms(1), DOWN, &invite(&[&uac_via()]));
        assert_eq!(
            r.send(ms(2), DOWN, &down_response(200, "OK", "CANCEL")),
            Handled::Unmatched
        );
        let s = r.a.stats();
        assert_eq!((s.unmatched, s.responses, s.finished), (3, 0, 0));
    }

    #[test]
    fn fork_is_counted_and_ignored() {
        let mut r = Run::new();
        let [_, u] = proxy_vias();
        r.recv(ms(0), DOWN, &invite(&[&uac_via()]));
        r.send(
            ms(1),
            UP,
            &invite(&[&format!("10.0.0.2;branch={PROXY_BRANCH}"), &u]),
        );
        assert_eq!(
            r.send(
                ms(2),
                UP,
                &invite(&["10.0.0.2;branch=z9hG4bKcydzigwkX.1", &u])
            ),
            Handled::Fork
        );
        assert_eq!(r.a.stats().forks, 1);
        assert_eq!(r.a.open(), 1);
    }

    #[test]
    fn ids_are_sequential_from_one() {
        let mut r = Run::new();
        for cseq in 1..=3 {
            r.send(
                ms(u64::from(cseq)),
                UP,
                &request("ACK", cseq, &[&uac_via()], ""),
            );
        }
        let ids: Vec<_> = r.drain(ms(3)).iter().map(|t| t.id).collect();
        assert_eq!(ids, vec![1, 2, 3]);
    }
}
