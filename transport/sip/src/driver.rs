//! The relay driver ([`RelayDriver`]): the sans-IO core of the daemon's relay loop.
//!
//! Like a `quinn-proto` connection, it does no I/O and reads no clock. The daemon hands it
//! each message as it arrived ([`handle_inbound`](RelayDriver::handle_inbound)), sends what
//! [`poll_transmit`](RelayDriver::poll_transmit) yields and reports how each send went
//! ([`handle_sent`](RelayDriver::handle_sent)), wakes it at
//! [`poll_timeout`](RelayDriver::poll_timeout) ([`handle_timeout`](RelayDriver::handle_timeout)),
//! and consumes [`SipEvent`]s ([`poll_event`](RelayDriver::poll_event)): metrics are derived
//! from those events in one place, and the exporter correlates them with kernel SCTP events.
//!
//! Each message is parsed once; the stateless rules are [`Relay`]'s, the transaction
//! bookkeeping [`TransactionTable`]'s. The driver adds what needs both: a response goes back
//! from the listener, and on the SCTP association, its request came in on; every message in
//! and out, every drop (with its reason) and each transaction's life (started, forwarded with
//! its outbound association, provisional, retransmitted, ended) become events carrying
//! [`MonoTime`] stamps, so nothing is lost silently.
//!
//! # Order of calls
//!
//! After each input (`handle_inbound`, `handle_timeout`), drain `poll_transmit` (reporting
//! each with `handle_sent`) and then `poll_event`; re-arm the timer from `poll_timeout`.

use crate::AssocId;
use std::{collections::VecDeque, net::SocketAddr, sync::Arc, time::Duration};

use crate::{
    Message, Method, MethodBuf, Transport,
    bridge::{Bridge, BridgeAction, BridgeConfig, RetransmitLeg, Verdict},
    relay::{Decision, Destination, DropReason, LocalAddr, Peer, Relay},
    time::MonoTime,
    transaction::{
        Leg, ResponseMatch, Tracked, TransactionTable, TxEnd, TxId, TxInfo, TxKey, TxStart,
    },
};

/// A message as it arrived.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    /// Its transport.
    pub transport: Transport,
    /// Who sent it.
    pub peer: SocketAddr,
    /// The listener address it arrived at.
    pub local: SocketAddr,
    /// The SCTP association it came on.
    pub assoc: Option<AssocId>,
    /// The whole message (a datagram, an SCTP message, or a TCP frame).
    pub bytes: &'a [u8],
}

/// What a message is, for counters and events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageKind {
    /// A request.
    Request {
        /// Its method.
        method: MethodBuf,
    },
    /// A response.
    Response {
        /// The `CSeq` method (`None` when unreadable).
        method: Option<MethodBuf>,
        /// Its status.
        status: u16,
    },
    /// Not parseable as either.
    Unparseable,
}

/// Bytes to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where.
    pub to: Destination,
    /// The local listener address to send from, when it matters (a response goes back from
    /// the listener its request came in on); `None`: the transport's choice.
    pub from: Option<SocketAddr>,
    /// The message.
    pub bytes: Vec<u8>,
    /// What it is; hand it back to [`RelayDriver::handle_sent`].
    pub meta: TransmitMeta,
}

/// What a [`Transmit`] carries, for the report of its send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransmitMeta {
    /// The message.
    pub message: MessageKind,
    /// A response the relay generated itself (not relayed).
    pub local: bool,
    /// The tracked transaction of a forwarded request.
    pub tx: Option<TxKey>,
    /// A retransmission the relay makes itself (counted apart from the messages relayed).
    pub retransmission: Option<RetransmitLeg>,
    /// A request forwarded without a transaction (an `ACK`, or the table was full), reported
    /// as [`SipEvent::Forwarded`] once sent.
    pub stateless: Option<Box<StatelessForward>>,
}

/// A request the relay forwarded without keeping a transaction for it: an `ACK`, or any
/// request when the table was full. Reported once sent, so that what the kernel did to its
/// chunks can still be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatelessForward {
    /// The relay's own branch and the `CSeq` method.
    pub key: TxKey,
    /// Its `Call-ID`.
    pub call_id: Box<str>,
    /// Its `CSeq` number.
    pub cseq: u32,
    /// Where it came from.
    pub inbound: Leg,
    /// Where it went (with the association once sent).
    pub outbound: Leg,
    /// When it arrived.
    pub received_at: MonoTime,
    /// When it was sent.
    pub forwarded_at: MonoTime,
}

/// Why a send did not happen; [`SendDrop::as_str`] is the counter label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SendDrop {
    /// The destination's queue is full (messages or bytes): it is slow or dead.
    QueueFull,
    /// All queues together hold the global byte cap.
    QueuesFull,
    /// Too many destinations have queued data already.
    TooManyDestinations,
    /// A connection to the destination could not be made (or timed out).
    ConnectFailed,
    /// No listener of that transport to send from.
    NoTransport,
    /// Too large for the transport (RFC 3261 18.1.1 on UDP).
    TooLarge,
    /// Stopping: no new connections or associations.
    ShuttingDown,
    /// The transport refused (an error from the kernel or the SCTP layer).
    SendFailed,
    /// Still queued when the daemon stopped.
    Shutdown,
}

impl SendDrop {
    /// Every reason, for pre-setting counters to 0.
    pub const ALL: [Self; 9] = [
        Self::QueueFull,
        Self::QueuesFull,
        Self::TooManyDestinations,
        Self::ConnectFailed,
        Self::NoTransport,
        Self::TooLarge,
        Self::ShuttingDown,
        Self::SendFailed,
        Self::Shutdown,
    ];

    /// The counter label.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::QueuesFull => "queues_full",
            Self::TooManyDestinations => "too_many_destinations",
            Self::ConnectFailed => "connect_failed",
            Self::NoTransport => "no_transport",
            Self::TooLarge => "too_large",
            Self::ShuttingDown => "shutting_down",
            Self::SendFailed => "send_failed",
            Self::Shutdown => "shutdown",
        }
    }
}

/// Why a message was dropped: a relay rule, its send, or a retransmission the relay handles
/// itself where UDP meets a reliable transport ([`crate::bridge`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropCause {
    /// The relay's decision.
    Relay(DropReason),
    /// The send.
    Send(SendDrop),
    /// A retransmission absorbed (`retransmission_absorbed`).
    Absorbed,
}

impl DropCause {
    /// The counter label (`sipsctp_sip_messages_dropped_total{reason}`).
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Relay(r) => r.as_str(),
            Self::Send(s) => s.as_str(),
            Self::Absorbed => "retransmission_absorbed",
        }
    }
}

/// How a send went, as the daemon reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendResult {
    /// Handed to the transport (sent or queued behind the destination's earlier messages).
    Sent {
        /// The SCTP association that carries it, when the transport knew it.
        assoc: Option<AssocId>,
    },
    /// Not sent.
    Dropped(SendDrop),
}

/// What happened, for metrics and the exporter. Every message in is one `Received`; every
/// message out one `Sent` or `Dropped`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SipEvent {
    /// A message arrived.
    Received {
        /// When.
        at: MonoTime,
        /// Its transport.
        transport: Transport,
        /// From whom.
        peer: SocketAddr,
        /// What.
        message: MessageKind,
    },
    /// A message went out (to the transport).
    Sent {
        /// When.
        at: MonoTime,
        /// Its transport.
        transport: Transport,
        /// To whom.
        to: SocketAddr,
        /// What.
        message: MessageKind,
        /// Generated by the relay itself (an answer, not a relayed message).
        local: bool,
    },
    /// A message was dropped (received and not relayed, or not sent).
    Dropped {
        /// When.
        at: MonoTime,
        /// The peer it came from or was meant for.
        peer: SocketAddr,
        /// What.
        message: MessageKind,
        /// Why.
        cause: DropCause,
    },
    /// A request was forwarded for the first time: a transaction is tracked.
    TxStarted(Box<TxInfo>),
    /// A tracked transaction's request went out for the first time.
    TxForwarded {
        /// The transaction.
        id: TxId,
        /// When.
        at: MonoTime,
        /// The SCTP association that carries it, when known.
        assoc: Option<AssocId>,
    },
    /// A provisional response of a tracked transaction.
    TxProvisional {
        /// The transaction.
        id: TxId,
        /// When.
        at: MonoTime,
        /// Its status.
        status: u16,
        /// The first one.
        first: bool,
    },
    /// A tracked transaction's request came again (a SIP retransmission).
    TxRetransmitted {
        /// The transaction.
        id: TxId,
        /// When.
        at: MonoTime,
    },
    /// A tracked transaction ended (final response, expiry, or its request never went out).
    TxEnded(Box<TxEnd>),
    /// A request forwarded without a transaction went out (see [`StatelessForward`]).
    Forwarded(Box<StatelessForward>),
    /// A request was forwarded untracked: the table was full.
    TxUntracked {
        /// When.
        at: MonoTime,
    },
    /// The relay retransmitted a message toward UDP itself ([`crate::bridge`]).
    Retransmitted {
        /// When.
        at: MonoTime,
        /// Which kind.
        leg: RetransmitLeg,
        /// To whom.
        to: SocketAddr,
    },
    /// A transaction crossing between UDP and a reliable transport was relayed without the
    /// bridge's state (its bounds were reached): no retransmissions for it.
    BridgeUntracked {
        /// When.
        at: MonoTime,
    },
}

/// Settings of the transaction bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverConfig {
    /// Transactions tracked at once.
    pub transaction_capacity: usize,
    /// When an unanswered transaction is given up (64*T1).
    pub transaction_timeout: Duration,
    /// Where UDP meets a reliable transport: timers and bounds.
    pub bridge: BridgeConfig,
    /// RFC 3261 section 18.1.1: the largest request sent over UDP, in bytes (the path MTU
    /// less 200); `None` = no limit. A larger one goes over TCP when
    /// [`udp_large_to_tcp`](Self::udp_large_to_tcp) allows and the relay has a TCP listener,
    /// else it is dropped as [`SendDrop::TooLarge`].
    pub udp_max_request: Option<usize>,
    /// Send a request over [`udp_max_request`](Self::udp_max_request) over TCP to the same
    /// address instead.
    pub udp_large_to_tcp: bool,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            transaction_capacity: 65_536,
            transaction_timeout: crate::transaction::DEFAULT_TIMEOUT,
            bridge: BridgeConfig::default(),
            udp_max_request: None,
            udp_large_to_tcp: false,
        }
    }
}

fn limits_of(relay: &Relay) -> crate::Limits {
    relay.config().limits
}

/// Per inbound transport: `Some(retry_after)` while its new work is shed.
#[derive(Debug, Clone, Copy, Default)]
struct Shedding {
    udp: Option<u32>,
    tcp: Option<u32>,
    sctp: Option<u32>,
}

impl Shedding {
    const fn of(&mut self, t: Transport) -> &mut Option<u32> {
        match t {
            Transport::Udp => &mut self.udp,
            Transport::Tcp => &mut self.tcp,
            Transport::Sctp => &mut self.sctp,
        }
    }
}

/// The relay driver; see the module documentation.
#[derive(Debug)]
pub struct RelayDriver {
    relay: Arc<Relay>,
    config: DriverConfig,
    table: TransactionTable,
    bridge: Bridge,
    transmits: VecDeque<Transmit>,
    events: VecDeque<SipEvent>,
    /// Per inbound transport (UDP, TCP, SCTP): `Some(retry_after)` while its new work is shed
    /// ([`RelayDriver::set_shedding`]).
    shedding: Shedding,
}

impl RelayDriver {
    /// A driver relaying by `relay`'s rules.
    pub fn new(relay: Arc<Relay>, config: DriverConfig) -> Self {
        Self {
            relay,
            table: TransactionTable::new(config.transaction_capacity),
            bridge: Bridge::new(config.bridge),
            config,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            shedding: Shedding::default(),
        }
    }

    /// Sheds new work that arrives over `transport` from now on (`Some(retry_after)`, see
    /// [`crate::overload`]) or takes it again (`None`): a new request (no `To` tag; not
    /// `CANCEL`, not `ACK`) that is not a retransmission of a transaction being relayed is
    /// answered `503` with `Retry-After` and counted as dropped for [`DropReason::Overload`];
    /// everything else is relayed. Per transport, because each has its own inbound queue: a
    /// flood on one does not make the relay refuse the others' calls.
    pub const fn set_shedding(&mut self, transport: Transport, retry_after: Option<u32>) {
        *self.shedding.of(transport) = retry_after;
    }

    /// Replaces the rules (a reload); transactions in flight stay tracked.
    pub fn set_relay(&mut self, relay: Arc<Relay>) {
        self.relay = relay;
    }

    /// Replaces the bookkeeping settings (a reload).
    pub const fn set_config(&mut self, config: DriverConfig) {
        self.table.set_capacity(config.transaction_capacity);
        self.config = config;
    }

    /// The rules in force.
    pub fn relay(&self) -> &Arc<Relay> {
        &self.relay
    }

    /// The transaction table (for its counters and size).
    pub const fn transactions(&self) -> &TransactionTable {
        &self.table
    }

    /// Takes one message in at `now`.
    pub fn handle_inbound(&mut self, now: MonoTime, inbound: Inbound<'_>) {
        let from = Peer {
            transport: inbound.transport,
            addr: inbound.peer,
            assoc: inbound.assoc,
        };
        let local = LocalAddr {
            transport: inbound.transport,
            addr: inbound.local,
        };
        let limits = self.relay.config().limits;
        match Message::parse_with(inbound.bytes, &limits) {
            Ok(m) if m.is_request() => self.request(now, &m, from, local, false),
            Ok(m) => self.response(now, &m, from),
            Err(_) => match Message::parse_head(inbound.bytes, &limits) {
                // A request whose head still parses (e.g. a wrong Content-Length): 400.
                Ok(m) if m.is_request() => self.request(now, &m, from, local, true),
                _ => {
                    self.events.push_back(SipEvent::Received {
                        at: now,
                        transport: from.transport,
                        peer: from.addr,
                        message: MessageKind::Unparseable,
                    });
                    self.dropped(
                        now,
                        from.addr,
                        MessageKind::Unparseable,
                        DropCause::Relay(DropReason::Malformed),
                    );
                }
            },
        }
    }

    fn dropped(&mut self, at: MonoTime, peer: SocketAddr, message: MessageKind, cause: DropCause) {
        self.events.push_back(SipEvent::Dropped {
            at,
            peer,
            message,
            cause,
        });
    }

    fn request(
        &mut self,
        now: MonoTime,
        m: &Message<'_>,
        from: Peer,
        local: LocalAddr,
        malformed: bool,
    ) {
        let Some(method) = m.method() else {
            return;
        };
        let kind = MessageKind::Request {
            method: method.to_buf(),
        };
        self.events.push_back(SipEvent::Received {
            at: now,
            transport: from.transport,
            peer: from.addr,
            message: kind.clone(),
        });
        let mut decision = if malformed {
            self.relay.reject(m, from, 400, "Bad Request")
        } else {
            self.relay.handle_request(m, from, local)
        };
        // RFC 3261 section 18.1.1: too large for UDP. The switch to TCP is the relay's
        // decision again, so that its Via names TCP; else the request is not sent.
        if let Decision::Forward { to, bytes, .. } = &decision
            && to.transport == Transport::Udp
            && self
                .config
                .udp_max_request
                .is_some_and(|max| bytes.len() > max)
        {
            if self.config.udp_large_to_tcp && self.relay.has_listener(Transport::Tcp) {
                decision = self
                    .relay
                    .handle_request_over(m, from, local, Transport::Tcp);
            } else {
                let to = to.addr;
                self.dropped(now, to, kind, DropCause::Send(SendDrop::TooLarge));
                return;
            }
        }
        if let Some(retry_after) = *self.shedding.of(from.transport)
            && let Decision::Forward { tx: Some(key), .. } = &decision
            && method != Method::Cancel
            && m.to().is_ok_and(|t| t.tag.is_none())
            && self.table.get(key).is_none()
        {
            decision = self.relay.shed(m, from, retry_after);
            self.dropped(
                now,
                from.addr,
                kind.clone(),
                DropCause::Relay(DropReason::Overload),
            );
        }
        match decision {
            Decision::Forward { to, bytes, tx } => {
                let dialog = (
                    m.call_id().unwrap_or_default(),
                    m.cseq().map(|c| c.seq).unwrap_or_default(),
                );
                let inbound = Leg {
                    transport: from.transport,
                    addr: from.addr,
                    local: Some(local.addr),
                    assoc: from.assoc,
                };
                let outbound = Leg {
                    transport: to.transport,
                    addr: to.addr,
                    local: None,
                    assoc: None,
                };
                let tracked = tx.as_ref().and_then(|key| {
                    let start = TxStart {
                        call_id: dialog.0,
                        cseq: dialog.1,
                        inbound,
                        outbound,
                        received_at: now,
                    };
                    match self.table.on_request_forwarded(now, key.clone(), start) {
                        Ok(Tracked::New(_)) => {
                            if let Some(info) = self.table.get(key) {
                                self.events
                                    .push_back(SipEvent::TxStarted(Box::new(info.clone())));
                            }
                            Some(key.clone())
                        }
                        Ok(Tracked::Retransmission(id)) => {
                            self.events
                                .push_back(SipEvent::TxRetransmitted { id, at: now });
                            Some(key.clone())
                        }
                        Err(_) => {
                            self.events.push_back(SipEvent::TxUntracked { at: now });
                            None
                        }
                    }
                });
                // Where UDP meets a reliable transport, the bridge keeps the transaction.
                let crossing = (from.transport.is_reliable(), to.transport.is_reliable());
                let invite = method == Method::Invite;
                let verdict = match (&tx, crossing) {
                    (None, (true, false)) => {
                        self.bridge.client_ack(now, dialog, to, None, &bytes);
                        Verdict::Forward
                    }
                    (None, (false, true)) => {
                        if let Some(key) = Self::own_branch(&bytes, &limits_of(&self.relay)) {
                            self.bridge.server_ack(&key, dialog);
                        }
                        Verdict::Forward
                    }
                    (Some(key), (true, false)) => {
                        let untracked = self.bridge.untracked;
                        let v = self
                            .bridge
                            .client_request(now, key, invite, dialog, to, None, &bytes);
                        self.note_untracked(now, untracked);
                        v
                    }
                    (Some(key), (false, true)) => {
                        let untracked = self.bridge.untracked;
                        let (v, actions) = self.bridge.server_request(now, key, invite, dialog);
                        self.note_untracked(now, untracked);
                        self.bridge_actions(now, actions);
                        v
                    }
                    _ => Verdict::Forward,
                };
                if verdict == Verdict::Absorb {
                    self.dropped(now, from.addr, kind, DropCause::Absorbed);
                    return;
                }
                let stateless = if tracked.is_none() {
                    Self::own_branch(&bytes, &limits_of(&self.relay)).map(|b| {
                        Box::new(StatelessForward {
                            key: TxKey::new(&b.branch, method),
                            call_id: dialog.0.into(),
                            cseq: dialog.1,
                            inbound,
                            outbound,
                            received_at: now,
                            forwarded_at: now,
                        })
                    })
                } else {
                    None
                };
                self.transmits.push_back(Transmit {
                    to,
                    from: None,
                    bytes,
                    meta: TransmitMeta {
                        message: kind,
                        local: false,
                        tx: tracked,
                        retransmission: None,
                        stateless,
                    },
                });
            }
            Decision::Respond { to, bytes, status } => {
                self.transmits.push_back(Transmit {
                    to,
                    // Back from the listener the request came in on.
                    from: Some(local.addr),
                    bytes,
                    meta: TransmitMeta {
                        message: MessageKind::Response {
                            method: Some(method.to_buf()),
                            status,
                        },
                        local: true,
                        tx: None,
                        retransmission: None,
                        stateless: None,
                    },
                });
            }
            Decision::Drop { reason } => {
                self.dropped(now, from.addr, kind, DropCause::Relay(reason));
            }
        }
    }

    /// The branch of the relay's own (top) Via in a message it built, as an `INVITE` key: an
    /// `ACK` for a non-2xx response carries its `INVITE`'s branch.
    fn own_branch(bytes: &[u8], limits: &crate::Limits) -> Option<TxKey> {
        let m = Message::parse_head(bytes, limits).ok()?;
        let via = m.top_via().ok()?;
        Some(TxKey::new(via.branch?, Method::Invite))
    }

    fn note_untracked(&mut self, now: MonoTime, before: u64) {
        if self.bridge.untracked > before {
            self.events.push_back(SipEvent::BridgeUntracked { at: now });
        }
    }

    /// Turns the bridge's requests into transmits.
    fn bridge_actions(&mut self, now: MonoTime, actions: Vec<BridgeAction>) {
        for a in actions {
            match a {
                BridgeAction::Resend {
                    to,
                    from,
                    bytes,
                    leg,
                } => self.transmits.push_back(Transmit {
                    to,
                    from,
                    bytes,
                    meta: TransmitMeta {
                        message: MessageKind::Unparseable,
                        local: false,
                        tx: None,
                        retransmission: Some(leg),
                        stateless: None,
                    },
                }),
                BridgeAction::TimedOut { key } => {
                    // Timer B/F: the transaction table's own expiry reports it; nothing to
                    // send (a stateless relay has no request to answer 408 from).
                    let _ = (now, key);
                }
            }
        }
    }

    fn response(&mut self, now: MonoTime, m: &Message<'_>, from: Peer) {
        let status = m.status().unwrap_or(0);
        let kind = MessageKind::Response {
            method: m.cseq().ok().map(|c| c.method.to_buf()),
            status,
        };
        self.events.push_back(SipEvent::Received {
            at: now,
            transport: from.transport,
            peer: from.addr,
            message: kind.clone(),
        });
        match self.relay.handle_response(m, from) {
            Decision::Forward { mut to, bytes, tx } => {
                if let Some(key) = &tx
                    && from.transport == Transport::Udp
                {
                    let (verdict, actions) = self.bridge.client_response(now, key, status);
                    self.bridge_actions(now, actions);
                    if verdict == Verdict::Absorb {
                        self.dropped(now, from.addr, kind, DropCause::Absorbed);
                        return;
                    }
                }
                let inbound =
                    tx.clone()
                        .and_then(|key| match self.table.on_response(now, &key, status) {
                            ResponseMatch::Provisional { id, first, inbound } => {
                                self.events.push_back(SipEvent::TxProvisional {
                                    id,
                                    at: now,
                                    status,
                                    first,
                                });
                                Some(inbound)
                            }
                            ResponseMatch::Final(end) => {
                                let inbound = end.info.inbound;
                                self.events.push_back(SipEvent::TxEnded(end));
                                Some(inbound)
                            }
                            ResponseMatch::Unmatched => None,
                        });
                // Back where the request came from: its listener, and its association when the
                // response goes to the same peer (it does for SCTP: rport is always set).
                let mut from_local = None;
                if let Some(leg) = inbound
                    && leg.transport == to.transport
                {
                    from_local = leg.local;
                    if leg.addr == to.addr {
                        to.assoc = leg.assoc;
                    }
                }
                if let Some(key) = &tx
                    && to.transport == Transport::Udp
                    && from.transport.is_reliable()
                {
                    self.bridge
                        .server_response(now, key, status, to, from_local, &bytes);
                }
                self.transmits.push_back(Transmit {
                    to,
                    from: from_local,
                    bytes,
                    meta: TransmitMeta {
                        message: kind,
                        local: false,
                        tx: None,
                        retransmission: None,
                        stateless: None,
                    },
                });
            }
            Decision::Respond { .. } => {
                // The relay never answers a response; count it as what it is.
                self.dropped(
                    now,
                    from.addr,
                    kind,
                    DropCause::Relay(DropReason::Malformed),
                );
            }
            Decision::Drop { reason } => {
                self.dropped(now, from.addr, kind, DropCause::Relay(reason));
            }
        }
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// How the send of a [`Transmit`] (its `to` and `meta`) went, at `now`.
    pub fn handle_sent(
        &mut self,
        now: MonoTime,
        to: &Destination,
        meta: TransmitMeta,
        result: SendResult,
    ) {
        match result {
            SendResult::Sent { .. } if meta.retransmission.is_some() => {
                if let Some(leg) = meta.retransmission {
                    self.events.push_back(SipEvent::Retransmitted {
                        at: now,
                        leg,
                        to: to.addr,
                    });
                }
            }
            SendResult::Sent { assoc } => {
                if let Some(mut f) = meta.stateless {
                    f.outbound.assoc = assoc;
                    f.forwarded_at = now;
                    self.events.push_back(SipEvent::Forwarded(f));
                }
                if let Some(key) = &meta.tx
                    && let Some((id, true)) = self.table.on_sent(key, assoc)
                {
                    self.events
                        .push_back(SipEvent::TxForwarded { id, at: now, assoc });
                }
                self.events.push_back(SipEvent::Sent {
                    at: now,
                    transport: to.transport,
                    to: to.addr,
                    message: meta.message,
                    local: meta.local,
                });
            }
            SendResult::Dropped(why) => {
                if let Some(key) = &meta.tx {
                    self.bridge.request_not_sent(key);
                }
                if let Some(key) = &meta.tx
                    && let Some(end) = self.table.on_send_failed(now, key)
                {
                    self.events.push_back(SipEvent::TxEnded(Box::new(end)));
                }
                self.dropped(now, to.addr, meta.message, DropCause::Send(why));
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due next, if ever.
    pub fn poll_timeout(&self) -> Option<MonoTime> {
        let table = self.table.poll_timeout(self.config.transaction_timeout);
        let bridge = self.bridge.poll_timeout();
        match (table, bridge) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs what is due at `now`: retransmissions where UDP meets a reliable transport, and
    /// expiries.
    pub fn handle_timeout(&mut self, now: MonoTime) {
        let actions = self.bridge.handle_timeout(now);
        self.bridge_actions(now, actions);
        let timeout = self.config.transaction_timeout;
        let ended: Vec<TxEnd> = self.table.poll_expired(now, timeout).collect();
        self.events
            .extend(ended.into_iter().map(|e| SipEvent::TxEnded(Box::new(e))));
    }

    /// Transactions the bridge keeps now (where UDP meets a reliable transport).
    pub fn bridged(&self) -> usize {
        self.bridge.len()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<SipEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests;
