//! The endpoint's decisions, without sockets: [`EndpointCore`] owns the association table, the
//! parameters in force, the per-listener send queues and the shutdown flag, and answers each
//! input (a notification, a received message, a send, the result of a send the driver made)
//! with [`Action`]s for the driver to carry out: count, emit an [`AssocEvent`], ABORT an
//! association, resend a returned message, wake a listener's send task.
//!
//! Deterministic and IO-free: no sockets, no tokio, no clock (time is an argument), no locks
//! (the driver, [`crate::endpoint`], keeps the core behind one mutex and carries out the
//! actions after releasing it). It never touches the kernel; it only says what to hand it.
//!
//! # Organization
//!
//! - Getters: [`EndpointCore::params`], [`EndpointCore::opened`], [`EndpointCore::tracked`],
//!   [`EndpointCore::queued`], [`EndpointCore::closing`], [`EndpointCore::send_budget`],
//!   [`EndpointCore::partial_timeout`].
//! - Inputs from the kernel: [`EndpointCore::handle_notification`],
//!   [`EndpointCore::handle_message`], [`EndpointCore::handle_dropped`].
//! - Sending: [`EndpointCore::plan_send`] says whether to transmit now or queue; the driver
//!   reports the attempt with [`EndpointCore::handle_transmit`]. The send task takes queued
//!   messages with [`EndpointCore::poll_queued`] and reports each with
//!   [`EndpointCore::handle_queued_result`]; a [`Resend`] the core asked for is reported with
//!   [`EndpointCore::handle_resend_result`].
//! - Commands: [`EndpointCore::stop_accepting`], [`EndpointCore::handle_param_change`].
//!
//! # Bounded sending
//!
//! With `net.sctp.sndbuf_policy = 0` (Linux's default) a one-to-many socket has one send
//! buffer for all its associations, so a destination that does not drain (an INIT nobody
//! answers, a peer advertising a zero window) could fill it and make every send on the socket
//! fail. The core keeps that from happening:
//!
//! - A message to a destination with no association goes to the kernel (it starts the
//!   association), but the ones after it are *held* in the destination's queue until
//!   COMM_UP, then go on the new association in order; when the setup fails (CANT_STR_ASSOC)
//!   they are dropped and counted (`setup_failed`). Only one message per destination sits in
//!   the kernel's buffer during the INIT retry period, and at most
//!   [`CoreConfig::max_setups`] destinations, with at most half of `sctp_socket_sndbuf` bytes
//!   in their first messages, may be in setup at once (`setups`). This needs
//!   `sctp_assoc_tracking` (only the table knows when an association is up); with tracking
//!   off every message goes to the kernel as it comes.
//! - The queues (held messages and messages waiting after EAGAIN) are bounded per
//!   destination in messages and bytes, in total bytes, and in destinations
//!   ([`QueueLimits`]). A message over a bound is refused with [`SendError::QueueFull`] naming
//!   it, and counted as `send_failed` and under its [`SendDropCause`].
//! - A setup that neither comes up nor fails within twice the longest INIT retry period
//!   ([`EndpointCore::handle_timeout`]) lets its held messages go to the kernel.
//!
//! # Slow receivers (stalled associations)
//!
//! A peer that stops reading (its receive window goes to zero) would otherwise keep every
//! later message to it in the shared send buffer until the buffer is full for everybody. So
//! each association gets a *share* of the buffer ([`EndpointCore::flow_budget`]: a
//! sixteenth of `sctp_socket_sndbuf`, at least 16 KiB). Once the bytes handed to the kernel
//! for it since it last drained (SENDER_DRY) or was last checked exceed the share, the next
//! send asks the driver to read the association's `SCTP_STATUS` first ([`Attempt::check`],
//! [`EndpointCore::handle_status`]):
//!
//! - a peer window (`sstat_rwnd`, what the kernel may still send it) smaller than the
//!   association's average message *stalls* it: the peer is not reading, so everything
//!   handed to the kernel now would stay there. The message and every later one wait in its
//!   send queue (bounded like any other, outside the kernel) and nothing more goes to the
//!   kernel for it ([`AssocEvent::Stalled`]);
//! - otherwise the share starts over.
//!
//! (Linux's `SCTP_STATUS` does not count our unsent data: its `sstat_penddata` is about the
//! *received* side (TSNs behind a gap) and `sstat_unackdata` only counts chunks in flight.
//! The window is the signal it gives.)
//!
//! A stalled association resumes at its SENDER_DRY (the peer took everything):
//! [`AssocEvent::Resumed`], its queue drains. One stalled longer than the stall limit
//! ([`EndpointCore::stall_timeout`]: `sctp_send_ttl`, between 5 and 32 s; its messages are
//! past their lifetime by then), or the longest stalled when more than [`MAX_STALLED`]
//! are, is aborted with [`STALL_ABORT_REASON`] and its waiting messages are dropped, counted
//! under [`SendDropCause::Stalled`] ([`AssocEvent::StallAborted`]). So one peer holds at
//! most about two shares of the buffer, and stalled peers together at most half of it. Like
//! the setup holding, this needs `sctp_assoc_tracking` (sends must name their association).
//!
//! # Retries (`sctp_send_retries`)
//!
//! Each message carries a [`Context`] as its SCTP context: a tag naming the message and its
//! remaining retry budget. The kernel hands a failed message back in one SEND_FAILED event
//! per DATA chunk; the core joins the fragments of a message again (by their B/E flags and
//! tag, see `returned.rs`) and decides once per message: when it came back whole, with no
//! error and budget left, it asks for a [`Resend`] of the whole message by address (so that a
//! fresh association opens if this one died) and counts `send_force_retry`; otherwise it
//! counts `send_failed` once and emits one [`AssocEvent::SendFailure`] with the message's
//! size. A fragment is never resent on its own.

mod returned;

use std::{
    collections::HashMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

pub use returned::Context;
use returned::{FailedChunk, Returned, ReturnedMessage};

use crate::{
    AssocId, AssocStatus, DropReason, Error, Notification, SendOptions,
    assoc::{AssocTable, CommUp, LIMIT_ABORT_REASON, LimitExceeded, Route, SocketId},
    counters::{Counter, DropCause, SendDropCause},
    event::{AssocEvent, DownCause},
    notification::{AssocChangeState, PeerAddrState},
    params::{Param, SctpParams},
    sendq::{QueueFull, QueueLimits, SendQueues},
};

/// The user abort reason (RFC 6458 `SCTP_ABORT`) the peer sees when its association is
/// aborted because one of its messages stayed unfinished too long or too large for the
/// total cap.
pub const PARTIAL_ABORT_REASON: &str = "Incoming message left unfinished";

/// Lower bound of [`EndpointCore::partial_timeout`].
pub const PARTIAL_TIMEOUT_MIN: Duration = Duration::from_secs(5);

/// Upper bound of [`EndpointCore::partial_timeout`]: 64 x T1 (RFC 3261 timers B, F, H).
pub const PARTIAL_TIMEOUT_MAX: Duration = Duration::from_secs(32);

/// The user abort reason the peer sees when its association is aborted for taking no data
/// (see the module doc, "Slow receivers").
pub const STALL_ABORT_REASON: &str = "Peer took no data for too long";

/// Stalled associations allowed at once; one more aborts the longest stalled.
pub const MAX_STALLED: usize = 4;

/// Lower bound of [`EndpointCore::flow_budget`].
pub const FLOW_BUDGET_MIN: usize = 16 * 1024;

/// Bounds of [`EndpointCore::stall_timeout`].
pub const STALL_TIMEOUT_MIN: Duration = Duration::from_secs(5);

/// Why a send did not go out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// It would open an association beyond `sctp_max_assocs`.
    #[error(transparent)]
    Limit(#[from] LimitExceeded),
    /// The send buffer is full and so is the destination's queue.
    #[error("to {dest}: {source}")]
    QueueFull {
        /// The destination.
        dest: SocketAddr,
        /// The queue limit.
        #[source]
        source: QueueFull,
    },
    /// No such listener.
    #[error("no SCTP listener {0:?}")]
    UnknownSocket(SocketId),
    /// The endpoint is shutting down and `dest` has no association.
    #[error("to {0}: shutting down, no new associations")]
    ShuttingDown(SocketAddr),
    /// It would start one more association setup than allowed.
    #[error("to {dest}: {source}")]
    SetupLimit {
        /// The destination.
        dest: SocketAddr,
        /// The bound.
        #[source]
        source: SetupLimit,
    },
    /// The kernel refused the message.
    #[error("to {dest}: {source}")]
    Socket {
        /// The destination.
        dest: SocketAddr,
        /// What the kernel said.
        #[source]
        source: Error,
    },
}

/// Which bound on association setups a send hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SetupLimit {
    /// `limit` associations are being set up already.
    #[error("{limit} associations are being set up already")]
    Associations {
        /// [`CoreConfig::max_setups`].
        limit: usize,
    },
    /// The first messages of the associations being set up would exceed `limit` bytes in the
    /// kernel's send buffer.
    #[error("{in_kernel} bytes wait in the kernel for associations being set up (limit {limit})")]
    Bytes {
        /// Half of `sctp_socket_sndbuf`.
        limit: usize,
        /// Bytes of first messages in the kernel now.
        in_kernel: usize,
    },
}

/// The core's bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoreConfig {
    /// How many listeners (sockets) there are; their ids are `0..listeners`.
    pub listeners: usize,
    /// The send queues' bounds.
    pub queues: QueueLimits,
    /// Destinations that may be in association setup at once.
    pub max_setups: usize,
    /// Largest message rebuilt from its returned fragments for a resend.
    pub max_message_size: usize,
}

/// How a send went, with the association it went on when that was known at send time (an
/// association being set up by this very send, or a send by address after a stale one, has
/// no id yet: it arrives with `AssocEvent::Up`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    /// The kernel took it.
    Sent {
        /// The association that carries it.
        assoc: Option<AssocId>,
    },
    /// It waits in the destination's queue for the send buffer to drain.
    Queued {
        /// The association it waits for.
        assoc: Option<AssocId>,
    },
}

impl SendOutcome {
    /// The association that carries (or will carry) the message, when known.
    pub const fn assoc(&self) -> Option<AssocId> {
        match self {
            Self::Sent { assoc } | Self::Queued { assoc } => *assoc,
        }
    }
}

/// Something the driver must do, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Add one to a counter.
    Count(Counter),
    /// Broadcast an event.
    Emit(AssocEvent),
    /// ABORT the association with `reason` as the user abort reason.
    Abort {
        /// Its listener.
        socket: SocketId,
        /// The association.
        assoc: AssocId,
        /// The reason the peer sees.
        reason: &'static str,
    },
    /// Hand a returned message to the kernel again, then report the attempt with
    /// [`EndpointCore::handle_resend_result`].
    Resend(Resend),
    /// Wake the listener's send task: its queues have work, or room may have appeared.
    Wake(SocketId),
}

/// A message the kernel returned, to be sent again by address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resend {
    /// The listener.
    pub socket: SocketId,
    /// The association it failed on.
    pub failed_on: AssocId,
    /// Where it goes.
    pub dest: SocketAddr,
    /// The whole message.
    pub data: Vec<u8>,
    /// Its tag and the retries left after this one.
    pub context: Context,
    /// How to send it (the context included).
    pub options: SendOptions,
}

/// What came of one attempt to hand a message to the kernel.
#[derive(Debug)]
pub enum Transmit {
    /// The kernel took it, on this association when known.
    Sent {
        /// The association, when the send named one.
        assoc: Option<AssocId>,
    },
    /// The send buffer is full (EAGAIN): nothing was sent.
    WouldBlock,
    /// Not handed to the kernel: the check before it ([`Attempt::check`]) found the
    /// association stalled.
    Stalled,
    /// The kernel refused it.
    Failed(Error),
}

/// One message to hand to the kernel now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// On the association or by address.
    pub route: Route,
    /// The destination.
    pub dest: SocketAddr,
    /// How to send it.
    pub options: SendOptions,
    /// Its tag and retry budget (in `options.context` too).
    pub context: Context,
    /// When the association turns out stale (EPIPE / EINVAL), whether to try once more by
    /// address (not while shutting down: that would open a new association).
    pub addr_fallback: bool,
    /// Read this association's `SCTP_STATUS` first and report it with
    /// [`EndpointCore::handle_status`]; send only if that says so, else report
    /// [`Transmit::Stalled`] (see the module doc, "Slow receivers").
    pub check: Option<AssocId>,
}

/// What [`EndpointCore::plan_send`] decided.
#[derive(Debug)]
pub enum SendPlan {
    /// Hand it to the kernel now, then report with [`EndpointCore::handle_transmit`].
    Transmit(Attempt),
    /// Decided without the kernel: queued behind earlier messages or held while its
    /// association is set up (`Ok(Queued)`; the send task will take it), or refused.
    Done(SendStep),
}

/// The result of a send decided by the core, with what the driver must do.
#[derive(Debug)]
pub struct SendStep {
    /// What the caller of the send is told.
    pub result: Result<SendOutcome, SendError>,
    /// What the driver must do.
    pub actions: Vec<Action>,
}

/// A queued message the send task should hand to the kernel now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedSend {
    /// How to send it.
    pub attempt: Attempt,
    /// The message.
    pub data: Vec<u8>,
}

/// Whether a received message is handed up, and what to do first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Hand it to the receiver (else it is dropped).
    pub deliver: bool,
    /// What the driver must do.
    pub actions: Vec<Action>,
}

/// A message waiting for the send buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    data: Vec<u8>,
    dest: SocketAddr,
    context: Context,
}

/// An association being set up by a message the core let through to the kernel.
#[derive(Debug, Clone, Copy)]
struct Setup {
    since: Instant,
    /// Bytes of the message(s) that started it, in the kernel's send buffer.
    bytes: usize,
}

/// What the core knows of how one association takes data (see the module doc, "Slow
/// receivers").
#[derive(Debug, Clone, Copy, Default)]
struct Flow {
    /// Bytes handed to the kernel since it last drained or was last checked.
    unchecked: usize,
    /// Messages among them.
    unchecked_msgs: usize,
    /// Since when it is stalled.
    stalled: Option<Instant>,
}

/// The endpoint's state and policy (see the module doc).
#[derive(Debug)]
pub struct EndpointCore {
    table: AssocTable,
    params: SctpParams,
    listeners: usize,
    /// Every listener's queues, keyed by listener and route.
    queues: SendQueues<(SocketId, Route), Pending>,
    /// Destinations whose association is being set up, with the held key
    /// `(socket, Route::Addr(dest))`.
    setups: HashMap<(SocketId, SocketAddr), Setup>,
    /// Sum of the setups' bytes.
    setup_bytes: usize,
    max_setups: usize,
    /// Set by [`EndpointCore::stop_accepting`]: no new associations, not even outbound ones.
    closing: bool,
    /// Messages coming back in SEND_FAILED events, per listener.
    returned: Returned,
    /// The tag of the next message sent.
    next_tag: u32,
    /// How each association that was sent to takes data.
    flows: HashMap<(SocketId, AssocId), Flow>,
}

/// The association a route names, if it names one.
const fn route_assoc(route: Route) -> Option<AssocId> {
    match route {
        Route::Assoc(a) => Some(a),
        Route::Addr(_) => None,
    }
}

fn index(socket: SocketId) -> usize {
    usize::try_from(socket.0).unwrap_or(usize::MAX)
}

impl EndpointCore {
    /// A core with validated `params` and the bounds in `config`.
    pub fn new(params: SctpParams, config: &CoreConfig) -> EndpointCore {
        EndpointCore {
            table: AssocTable::new(
                params.get(Param::AssocTracking) == 1,
                params.get(Param::AssocReuse) == 1,
                params.get(Param::MaxAssocs),
            ),
            params,
            listeners: config.listeners,
            queues: SendQueues::new(config.queues),
            setups: HashMap::new(),
            setup_bytes: 0,
            max_setups: config.max_setups,
            closing: false,
            returned: Returned::new(config.listeners, config.max_message_size),
            next_tag: 0,
            flows: HashMap::new(),
        }
    }

    /// A fresh context for a new message.
    fn new_context(&mut self, budget: u32) -> Context {
        self.next_tag = self.next_tag.wrapping_add(1);
        Context {
            tag: self.next_tag,
            budget,
        }
    }

    /// The parameters in force.
    pub fn params(&self) -> SctpParams {
        self.params
    }

    /// Open associations.
    pub fn opened(&self) -> u64 {
        self.table.opened()
    }

    /// Tracked associations (-1 with tracking off).
    pub fn tracked(&self) -> i64 {
        self.table.tracked()
    }

    /// Messages waiting in the send queues of every listener (held ones included).
    pub fn queued(&self) -> u64 {
        self.queues.len() as u64
    }

    /// Bytes waiting in the send queues of every listener.
    pub fn queued_bytes(&self) -> u64 {
        self.queues.bytes() as u64
    }

    /// Destinations whose association is being set up by a message the core let through.
    pub fn setups(&self) -> usize {
        self.setups.len()
    }

    /// Whether [`EndpointCore::stop_accepting`] was called.
    pub fn closing(&self) -> bool {
        self.closing
    }

    /// The retry budget a new message starts with (`sctp_send_retries`).
    pub fn send_budget(&self) -> u32 {
        u32::try_from(self.params.get(Param::SendRetries)).unwrap_or(0)
    }

    /// The association table (for views).
    pub fn table(&self) -> &AssocTable {
        &self.table
    }

    /// From now on no association is opened: sends to destinations without one fail with
    /// [`SendError::ShuttingDown`] and nothing is resent by address.
    pub fn stop_accepting(&mut self) {
        self.closing = true;
    }

    /// The endpoint is going away: every message still waiting in a send queue (after EAGAIN,
    /// or held for an association being set up) is dropped, each counted as `send_failed` and
    /// under [`SendDropCause::Shutdown`] and reported as an [`AssocEvent::SendFailure`], so that
    /// none is lost uncounted. Messages queued after this are the caller's to drop (call it
    /// once the relay has stopped sending).
    pub fn discard_queued(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        for ((socket, route), p) in self.queues.take_all() {
            out.push(Action::Count(Counter::SendDropped(SendDropCause::Shutdown)));
            let assoc = route_assoc(route).unwrap_or(AssocId(0));
            Self::send_failure(
                &mut out,
                socket,
                assoc,
                Some(p.dest),
                0,
                false,
                p.data.len(),
            );
        }
        self.setups.clear();
        self.setup_bytes = 0;
        self.flows.clear();
        out
    }

    /// A runtime parameter change the kernel accepted: `next` is in force, `param` now has
    /// `value`.
    pub fn handle_param_change(&mut self, next: SctpParams, param: Param, value: i64) {
        match param {
            Param::AssocTracking => self.table.set_tracking(value == 1),
            Param::AssocReuse => self.table.set_reuse(value == 1),
            Param::MaxAssocs => self.table.set_max_assocs(value),
            _ => {}
        }
        self.params = next;
    }

    /// Per-message options: the retry budget as context, and the lifetime when the message
    /// goes on an association that is up (Linux abandons a PR-SCTP message sent while its
    /// association is being set up as soon as it comes up; see the endpoint's doc).
    fn send_options(&self, socket: SocketId, dest: SocketAddr, context: Context) -> SendOptions {
        let ttl = self.params.get(Param::SendTtl);
        let established = self.table.lookup(socket, dest).is_some();
        SendOptions {
            ttl_ms: (ttl > 0 && established).then(|| u32::try_from(ttl).unwrap_or(u32::MAX)),
            context: context.to_raw(),
            ..SendOptions::default()
        }
    }

    fn attempt(
        &self,
        socket: SocketId,
        route: Route,
        dest: SocketAddr,
        context: Context,
        len: usize,
    ) -> Attempt {
        Attempt {
            route,
            dest,
            options: self.send_options(socket, dest, context),
            context,
            addr_fallback: !self.closing,
            check: self.needs_check(socket, route, len),
        }
    }

    /// An association's share of the send buffer (see the module doc, "Slow receivers"): a
    /// sixteenth of `sctp_socket_sndbuf` (the kernel's default when it is 0), at least
    /// [`FLOW_BUDGET_MIN`].
    pub fn flow_budget(&self) -> usize {
        let sndbuf = match self.params.get(Param::SocketSndbuf) {
            b if b <= 0 => 212_992, // net.core.wmem_default
            b => usize::try_from(b).unwrap_or(usize::MAX),
        };
        (sndbuf / 16).max(FLOW_BUDGET_MIN)
    }

    /// How long an association may stay stalled before it is aborted: `sctp_send_ttl`
    /// (a message held longer is past its lifetime), between [`STALL_TIMEOUT_MIN`] and
    /// [`PARTIAL_TIMEOUT_MAX`] (64 x T1: no SIP transaction waits longer); the most when
    /// `sctp_send_ttl` is 0.
    pub fn stall_timeout(&self) -> Duration {
        match self.params.get(Param::SendTtl) {
            ms if ms <= 0 => PARTIAL_TIMEOUT_MAX,
            ms => Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
                .clamp(STALL_TIMEOUT_MIN, PARTIAL_TIMEOUT_MAX),
        }
    }

    /// Stalled associations now.
    pub fn stalled(&self) -> usize {
        self.flows.values().filter(|f| f.stalled.is_some()).count()
    }

    /// Whether a message of `len` bytes on `route` must wait for a status check: its
    /// association's share would be exceeded.
    fn needs_check(&self, socket: SocketId, route: Route, len: usize) -> Option<AssocId> {
        let assoc = route_assoc(route)?;
        if !self.holds_setups() {
            return None;
        }
        let unchecked = self.flows.get(&(socket, assoc)).map_or(0, |f| f.unchecked);
        (unchecked.saturating_add(len) > self.flow_budget()).then_some(assoc)
    }

    fn is_stalled(&self, socket: SocketId, assoc: AssocId) -> bool {
        self.flows
            .get(&(socket, assoc))
            .is_some_and(|f| f.stalled.is_some())
    }

    /// The kernel took `len` bytes for `route`: they count against its association's share.
    fn note_flow(&mut self, socket: SocketId, route: Route, len: usize) {
        if let Some(assoc) = route_assoc(route) {
            let f = self.flows.entry((socket, assoc)).or_default();
            f.unchecked = f.unchecked.saturating_add(len);
            f.unchecked_msgs = f.unchecked_msgs.saturating_add(1);
        }
    }

    /// The driver read `assoc`'s `SCTP_STATUS` as an [`Attempt::check`] asked (`None`: it
    /// could not, the association is probably gone and the send will say so). Returns whether
    /// to send now; `false` means the association is stalled (see the module doc, "Slow
    /// receivers"): report the attempt as [`Transmit::Stalled`].
    pub fn handle_status(
        &mut self,
        now: Instant,
        socket: SocketId,
        assoc: AssocId,
        status: Option<&AssocStatus>,
    ) -> (bool, Vec<Action>) {
        let mut out = Vec::new();
        let f = self.flows.entry((socket, assoc)).or_default();
        if f.stalled.is_some() {
            return (false, out);
        }
        // The window is shut: smaller than the messages this association carries.
        let per_msg = (f.unchecked / f.unchecked_msgs.max(1)).max(1);
        let stalled = status.filter(|st| usize::try_from(st.rwnd).unwrap_or(usize::MAX) < per_msg);
        f.unchecked = 0;
        f.unchecked_msgs = 0;
        let Some(st) = stalled else {
            return (true, out);
        };
        f.stalled = Some(now);
        self.queues.hold((socket, Route::Assoc(assoc)));
        out.push(Action::Emit(AssocEvent::Stalled {
            socket,
            assoc,
            rwnd: st.rwnd,
            pending_chunks: st.pending,
        }));
        if self.stalled() > MAX_STALLED {
            let oldest = self
                .flows
                .iter()
                .filter_map(|(k, f)| f.stalled.map(|since| (since, *k)))
                .min();
            if let Some((_, (s, a))) = oldest {
                self.abort_stalled(&mut out, now, s, a);
            }
        }
        (false, out)
    }

    /// Aborts stalled `assoc` and drops what waits for it (see the module doc).
    fn abort_stalled(
        &mut self,
        out: &mut Vec<Action>,
        now: Instant,
        socket: SocketId,
        assoc: AssocId,
    ) {
        let since = self
            .flows
            .remove(&(socket, assoc))
            .and_then(|f| f.stalled)
            .unwrap_or(now);
        let key = (socket, Route::Assoc(assoc));
        self.queues.release(&key);
        let dropped = self.queues.take(&key);
        out.push(Action::Abort {
            socket,
            assoc,
            reason: STALL_ABORT_REASON,
        });
        for p in &dropped {
            out.push(Action::Count(Counter::SendDropped(SendDropCause::Stalled)));
            Self::send_failure(out, socket, assoc, Some(p.dest), 0, false, p.data.len());
        }
        out.push(Action::Emit(AssocEvent::StallAborted {
            socket,
            assoc,
            stalled_for: now.saturating_duration_since(since),
            dropped: dropped.len(),
        }));
    }

    /// A message that will not be delivered: `send_failed` and an [`AssocEvent::SendFailure`].
    fn send_failure(
        out: &mut Vec<Action>,
        socket: SocketId,
        assoc: AssocId,
        dest: Option<SocketAddr>,
        error: u32,
        partly_sent: bool,
        len: usize,
    ) {
        out.push(Action::Count(Counter::SendFailed));
        out.push(Action::Emit(AssocEvent::SendFailure {
            socket,
            assoc,
            dest,
            error,
            partly_sent,
            len,
        }));
    }

    /// Whether messages for a destination being set up are held: only with tracking on does
    /// the table know when a destination's association is up.
    fn holds_setups(&self) -> bool {
        self.table.tracked() >= 0
    }

    /// Bytes the first messages of associations being set up may take in the kernel's send
    /// buffer: half of `sctp_socket_sndbuf` (the kernel doubles that value, so a quarter of
    /// the buffer).
    fn setup_bytes_limit(&self) -> usize {
        usize::try_from(self.params.get(Param::SocketSndbuf) / 2).unwrap_or(usize::MAX)
    }

    /// How long a setup may last before its held messages are let through anyway: twice the
    /// longest INIT (and COOKIE ECHO) retry period, plus 10 s.
    fn setup_timeout(&self) -> Duration {
        let attempts = match self.params.get(Param::InitMaxAttempts) {
            a if a <= 0 => 8, // the kernel's default (net.sctp.max_init_retransmits)
            a => a,
        };
        let timeo = match self.params.get(Param::InitMaxTimeo) {
            t if t <= 0 => 60_000, // the kernel's default (net.sctp.rto_max)
            t => t,
        };
        let ms = 2i64
            .saturating_mul(attempts.saturating_add(1))
            .saturating_mul(timeo);
        Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX)) + Duration::from_secs(10)
    }

    /// A message the endpoint drops itself: `send_failed`, its drop cause, and the error.
    fn refuse(out: &mut Vec<Action>, cause: SendDropCause, e: SendError) -> SendError {
        out.push(Action::Count(Counter::SendFailed));
        out.push(Action::Count(Counter::SendDropped(cause)));
        e
    }

    /// Queues `pending` under `key`, or refuses it (counted) when a bound is hit.
    fn enqueue(
        &mut self,
        out: &mut Vec<Action>,
        key: (SocketId, Route),
        pending: Pending,
    ) -> Result<(), SendError> {
        let dest = pending.dest;
        let bytes = pending.data.len();
        self.queues
            .push(key, pending, bytes)
            .map_err(|(source, _)| {
                Self::refuse(out, source.cause(), SendError::QueueFull { dest, source })
            })
    }

    /// A message for `dest` from listener `socket`: transmit it now, queue it behind what
    /// already waits for that destination (keeping order), hold it while its association is
    /// set up, or refuse it.
    ///
    /// Refusals ([`SendPlan::Done`] with an error): [`SendError::UnknownSocket`],
    /// [`SendError::ShuttingDown`] for a destination without an association after
    /// [`EndpointCore::stop_accepting`], [`SendError::Limit`] when it would open an association
    /// beyond `sctp_max_assocs`, [`SendError::QueueFull`] when it must wait and a queue bound
    /// is hit, [`SendError::SetupLimit`] when it would start one setup too many. The last two
    /// are counted (`send_failed` and their [`SendDropCause`]).
    pub fn plan_send(
        &mut self,
        socket: SocketId,
        dest: SocketAddr,
        data: &[u8],
        budget: u32,
    ) -> SendPlan {
        let mut actions = Vec::new();
        match self.plan(&mut actions, socket, dest, data, budget) {
            Ok(Ok(attempt)) => SendPlan::Transmit(attempt),
            Ok(Err(queued)) => SendPlan::Done(SendStep {
                result: Ok(queued),
                actions,
            }),
            Err(e) => SendPlan::Done(SendStep {
                result: Err(e),
                actions,
            }),
        }
    }

    /// [`EndpointCore::plan_send`]: `Ok(attempt)` to transmit, `Err(outcome)` when queued.
    fn plan(
        &mut self,
        out: &mut Vec<Action>,
        socket: SocketId,
        dest: SocketAddr,
        data: &[u8],
        budget: u32,
    ) -> Result<Result<Attempt, SendOutcome>, SendError> {
        if index(socket) >= self.listeners {
            return Err(SendError::UnknownSocket(socket));
        }
        let tracked = self.table.lookup(socket, dest).is_some();
        if self.closing && !tracked {
            return Err(SendError::ShuttingDown(dest));
        }
        let route = self.table.route(socket, dest)?;
        let context = self.new_context(budget);
        let key = (socket, route);
        let in_setup = self.holds_setups() && !tracked && self.setups.contains_key(&(socket, dest));
        let stalled = route_assoc(route).is_some_and(|a| self.is_stalled(socket, a));
        if in_setup || stalled || self.queues.has(&key) {
            if in_setup {
                self.queues.hold(key);
            }
            let pending = Pending {
                data: data.to_vec(),
                dest,
                context,
            };
            let queued = SendOutcome::Queued {
                assoc: route_assoc(route),
            };
            return self.enqueue(out, key, pending).map(|()| Err(queued));
        }
        if self.holds_setups() && !tracked {
            // This message will start an association.
            let limit = self.setup_bytes_limit();
            let source = if self.setups.len() >= self.max_setups {
                Some(SetupLimit::Associations {
                    limit: self.max_setups,
                })
            } else if self.setup_bytes.saturating_add(data.len()) > limit {
                Some(SetupLimit::Bytes {
                    limit,
                    in_kernel: self.setup_bytes,
                })
            } else {
                None
            };
            if let Some(source) = source {
                let e = SendError::SetupLimit { dest, source };
                return Err(Self::refuse(out, SendDropCause::Setups, e));
            }
        }
        Ok(Ok(self.attempt(socket, route, dest, context, data.len())))
    }

    /// The kernel took a message by address for a destination with no association: it is
    /// setting one up. Later messages for it are held until COMM_UP or CANT_STR_ASSOC.
    fn note_sent(
        &mut self,
        now: Instant,
        socket: SocketId,
        route: Route,
        dest: SocketAddr,
        len: usize,
    ) {
        if !self.holds_setups()
            || !matches!(route, Route::Addr(_))
            || self.table.lookup(socket, dest).is_some()
        {
            return;
        }
        let setup = self.setups.entry((socket, dest)).or_insert(Setup {
            since: now,
            bytes: 0,
        });
        setup.bytes = setup.bytes.saturating_add(len);
        self.setup_bytes = self.setup_bytes.saturating_add(len);
        self.queues.hold((socket, Route::Addr(dest)));
    }

    /// The setup for `dest` is over: forget it and return its bytes.
    fn end_setup(&mut self, socket: SocketId, dest: SocketAddr) -> bool {
        self.queues.release(&(socket, Route::Addr(dest)));
        match self.setups.remove(&(socket, dest)) {
            Some(s) => {
                self.setup_bytes = self.setup_bytes.saturating_sub(s.bytes);
                true
            }
            None => false,
        }
    }

    /// `addr`'s association is up: what waited for it by address goes on it now, ahead of
    /// anything newer. Returns whether something waits.
    fn setup_done(&mut self, socket: SocketId, addr: SocketAddr) -> bool {
        self.end_setup(socket, addr);
        let from = (socket, Route::Addr(addr));
        if let Ok(route @ Route::Assoc(_)) = self.table.route(socket, addr) {
            self.queues.rekey(&from, (socket, route));
            return self.queues.has(&(socket, route));
        }
        self.queues.has(&from)
    }

    /// `dest`'s association could not be set up: the messages held for it are dropped and
    /// counted (`setup_failed`), each reported as a send failure.
    fn setup_failed(
        &mut self,
        out: &mut Vec<Action>,
        socket: SocketId,
        assoc: AssocId,
        dest: SocketAddr,
        error: u32,
    ) {
        if !self.end_setup(socket, dest) {
            return;
        }
        for p in self.queues.take(&(socket, Route::Addr(dest))) {
            out.push(Action::Count(Counter::SendDropped(
                SendDropCause::SetupFailed,
            )));
            Self::send_failure(out, socket, assoc, Some(dest), error, false, p.data.len());
        }
    }

    /// Time passed: a setup that lasted longer than it can (see the module doc) lets its held
    /// messages go to the kernel. Call it now and then (about once a second).
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        let limit = self.setup_timeout();
        let expired: Vec<(SocketId, SocketAddr)> = self
            .setups
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.since) > limit)
            .map(|(k, _)| *k)
            .collect();
        let mut out = Vec::new();
        for (socket, dest) in expired {
            self.end_setup(socket, dest);
            if !out.contains(&Action::Wake(socket)) {
                out.push(Action::Wake(socket));
            }
        }
        let limit = self.stall_timeout();
        let stuck: Vec<(SocketId, AssocId)> = self
            .flows
            .iter()
            .filter(|(_, f)| {
                f.stalled
                    .is_some_and(|s| now.saturating_duration_since(s) > limit)
            })
            .map(|(k, _)| *k)
            .collect();
        for (socket, assoc) in stuck {
            self.abort_stalled(&mut out, now, socket, assoc);
        }
        out
    }

    /// How the driver's attempt at a [`SendPlan::Transmit`] went: a full send buffer queues
    /// the message (counting `sendq_full`), a refusal counts `send_failed`.
    pub fn handle_transmit(
        &mut self,
        now: Instant,
        socket: SocketId,
        attempt: &Attempt,
        data: &[u8],
        result: Transmit,
    ) -> SendStep {
        let dest = attempt.dest;
        let mut actions = Vec::new();
        let result = match result {
            Transmit::Sent { assoc } => {
                self.note_sent(now, socket, attempt.route, dest, data.len());
                self.note_flow(socket, attempt.route, data.len());
                Ok(SendOutcome::Sent { assoc })
            }
            Transmit::Stalled => {
                let pending = Pending {
                    data: data.to_vec(),
                    dest,
                    context: attempt.context,
                };
                self.enqueue(&mut actions, (socket, attempt.route), pending)
                    .map(|()| SendOutcome::Queued {
                        assoc: route_assoc(attempt.route),
                    })
            }
            Transmit::WouldBlock => {
                actions.push(Action::Count(Counter::SendqFull));
                let pending = Pending {
                    data: data.to_vec(),
                    dest,
                    context: attempt.context,
                };
                match self.enqueue(&mut actions, (socket, attempt.route), pending) {
                    Ok(()) => {
                        actions.push(Action::Wake(socket));
                        Ok(SendOutcome::Queued {
                            assoc: route_assoc(attempt.route),
                        })
                    }
                    Err(e) => Err(e),
                }
            }
            Transmit::Failed(source) => {
                actions.push(Action::Count(Counter::SendFailed));
                Err(SendError::Socket { dest, source })
            }
        };
        SendStep { result, actions }
    }

    /// The send task of listener `socket` takes the oldest message of a queue that is not
    /// held. Its destination stays busy (new messages queue behind it) until
    /// [`EndpointCore::handle_queued_result`].
    pub fn poll_queued(&mut self, socket: SocketId) -> Option<QueuedSend> {
        let ((_, route), p) = self.queues.pop_where(|(s, _)| *s == socket)?;
        Some(QueuedSend {
            attempt: self.attempt(socket, route, p.dest, p.context, p.data.len()),
            data: p.data,
        })
    }

    /// How the send task's attempt at a [`QueuedSend`] went: a full buffer puts it back at the
    /// front of its queue (the task then waits for room), a refusal is a send failure.
    pub fn handle_queued_result(
        &mut self,
        now: Instant,
        socket: SocketId,
        sent: QueuedSend,
        result: Transmit,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        let route = sent.attempt.route;
        let key = (socket, route);
        match result {
            Transmit::Sent { .. } => {
                self.queues.done(&key);
                self.note_sent(now, socket, route, sent.attempt.dest, sent.data.len());
                self.note_flow(socket, route, sent.data.len());
            }
            Transmit::WouldBlock | Transmit::Stalled => {
                let bytes = sent.data.len();
                self.queues.unpop(
                    key,
                    Pending {
                        data: sent.data,
                        dest: sent.attempt.dest,
                        context: sent.attempt.context,
                    },
                    bytes,
                );
            }
            Transmit::Failed(_) => {
                self.queues.done(&key);
                let assoc = route_assoc(route).unwrap_or(AssocId(0));
                Self::send_failure(
                    &mut actions,
                    socket,
                    assoc,
                    Some(sent.attempt.dest),
                    0,
                    false,
                    sent.data.len(),
                );
            }
        }
        actions
    }

    /// How the driver's attempt at a [`Resend`] went: a full buffer queues it by address
    /// (counting `sendq_full`), a full queue or a refusal is a send failure.
    pub fn handle_resend_result(
        &mut self,
        now: Instant,
        resend: Resend,
        result: Transmit,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        let Resend {
            socket,
            failed_on,
            dest,
            data,
            context,
            ..
        } = resend;
        let len = data.len();
        match result {
            Transmit::Sent { .. } => self.note_sent(now, socket, Route::Addr(dest), dest, len),
            Transmit::WouldBlock | Transmit::Stalled => {
                actions.push(Action::Count(Counter::SendqFull));
                let pending = Pending {
                    data,
                    dest,
                    context,
                };
                if self
                    .enqueue(&mut actions, (socket, Route::Addr(dest)), pending)
                    .is_err()
                {
                    actions.push(Action::Emit(AssocEvent::SendFailure {
                        socket,
                        assoc: failed_on,
                        dest: Some(dest),
                        error: 0,
                        partly_sent: false,
                        len,
                    }));
                }
                actions.push(Action::Wake(socket));
            }
            Transmit::Failed(_) => {
                Self::send_failure(&mut actions, socket, failed_on, Some(dest), 0, false, len);
            }
        }
        actions
    }

    /// A message arrived on `assoc` from `peer`: handed up unless its association was
    /// rejected for `sctp_max_assocs` (then counted and reported as dropped).
    pub fn handle_message(
        &mut self,
        now: Instant,
        socket: SocketId,
        assoc: AssocId,
        peer: SocketAddr,
        size: usize,
    ) -> Delivery {
        let mut actions = Vec::new();
        self.interrupt_returned(&mut actions, socket);
        if self.table.is_rejected(socket, assoc) {
            actions.push(Action::Count(Counter::Dropped(DropCause::Rejected)));
            actions.push(Action::Emit(AssocEvent::Dropped {
                socket,
                assoc,
                peer: Some(peer),
                cause: DropCause::Rejected,
                size,
            }));
            return Delivery {
                deliver: false,
                actions,
            };
        }
        self.table.handle_message(now, socket, assoc, peer);
        Delivery {
            deliver: true,
            actions,
        }
    }

    /// The socket read a message it did not deliver (too large, cut short, or given up
    /// unfinished). A message given up unfinished ([`DropReason::Expired`],
    /// [`DropReason::OverBudget`]) also aborts its association, with
    /// [`PARTIAL_ABORT_REASON`]: the kernel keeps an association in partial delivery until
    /// the message ends (its later messages and notifications wait behind it, its fragments
    /// stay in the kernel), the rest of the message could only be thrown away, and a peer
    /// that does not finish a message within seconds is broken or hostile; a SIP peer opens a
    /// new association.
    pub fn handle_dropped(
        &mut self,
        socket: SocketId,
        assoc: AssocId,
        peer: SocketAddr,
        reason: DropReason,
    ) -> Vec<Action> {
        let (cause, abort) = match reason {
            DropReason::TooLarge { .. } => (DropCause::TooLarge, false),
            DropReason::Incomplete { .. } => (DropCause::Incomplete, false),
            DropReason::Expired { .. } => (DropCause::PartialTimeout, true),
            DropReason::OverBudget { .. } => (DropCause::PartialBytes, true),
        };
        let mut actions = Vec::new();
        self.interrupt_returned(&mut actions, socket);
        actions.push(Action::Count(Counter::Dropped(cause)));
        if abort {
            actions.push(Action::Abort {
                socket,
                assoc,
                reason: PARTIAL_ABORT_REASON,
            });
        }
        actions.push(Action::Emit(AssocEvent::Dropped {
            socket,
            assoc,
            peer: Some(peer),
            cause,
            size: reason.size_so_far(),
        }));
        actions
    }

    /// How long an incoming message may stay unfinished before it is given up (and its
    /// association aborted, see [`EndpointCore::handle_dropped`]): twice `sctp_srto_max`
    /// (room for a lost fragment to be retransmitted at the longest RTO, twice), at least
    /// [`PARTIAL_TIMEOUT_MIN`] and at most [`PARTIAL_TIMEOUT_MAX`] (64 x T1, RFC 3261: no
    /// SIP transaction waits longer for a request or response).
    pub fn partial_timeout(&self) -> Duration {
        let rto_max = match self.params.get(Param::SrtoMax) {
            ms if ms <= 0 => 60_000, // the kernel's default (net.sctp.rto_max)
            ms => ms,
        };
        let twice = Duration::from_millis(u64::try_from(rto_max.saturating_mul(2)).unwrap_or(0));
        twice.clamp(PARTIAL_TIMEOUT_MIN, PARTIAL_TIMEOUT_MAX)
    }

    /// Something other than a SEND_FAILED event arrived on `socket`: a returned message whose
    /// fragments were still arriving lost its end and fails (see `returned.rs`).
    fn interrupt_returned(&mut self, out: &mut Vec<Action>, socket: SocketId) {
        if let Some(m) = self.returned.interrupt(index(socket)) {
            self.handle_returned(out, socket, m);
        }
    }

    /// A message the kernel gave up on: resent whole by address when it came back whole with
    /// no error and budget left (and the endpoint is not shutting down), else one failure.
    fn handle_returned(&self, out: &mut Vec<Action>, socket: SocketId, m: ReturnedMessage) {
        match (m.dest, m.data) {
            (Some(dest), Some(data)) if m.error == 0 && m.context.budget > 0 && !self.closing => {
                let context = Context {
                    tag: m.context.tag,
                    budget: m.context.budget - 1,
                };
                out.push(Action::Count(Counter::SendForceRetry));
                out.push(Action::Emit(AssocEvent::SendRetried {
                    socket,
                    assoc: m.assoc,
                    dest,
                    retries_left: context.budget,
                }));
                out.push(Action::Resend(Resend {
                    socket,
                    failed_on: m.assoc,
                    dest,
                    data,
                    context,
                    options: self.send_options(socket, dest, context),
                }));
            }
            _ => Self::send_failure(out, socket, m.assoc, m.dest, m.error, m.partly_sent, m.len),
        }
    }

    /// A notification on listener `socket`. `peer` is the address the kernel gave with it;
    /// `peer_addrs` the association's peer addresses as the socket lists them (the driver asks
    /// for them for a COMM_UP only; empty otherwise).
    pub fn handle_notification(
        &mut self,
        now: Instant,
        socket: SocketId,
        n: Notification,
        peer: Option<SocketAddr>,
        peer_addrs: &[SocketAddr],
    ) -> Vec<Action> {
        let mut out = Vec::new();
        if !matches!(n, Notification::SendFailed { .. }) {
            self.interrupt_returned(&mut out, socket);
        }
        match n {
            Notification::AssocChange {
                state,
                error,
                outbound_streams,
                inbound_streams,
                assoc_id,
            } => match state {
                AssocChangeState::CommUp => {
                    out.push(Action::Count(Counter::Established));
                    let peer = peer.or_else(|| peer_addrs.first().copied());
                    let outcome = self.table.handle_comm_up(
                        now,
                        socket,
                        assoc_id,
                        peer.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
                        outbound_streams,
                        inbound_streams,
                    );
                    match outcome {
                        CommUp::Accepted { .. } => {
                            for a in peer_addrs {
                                self.table.handle_addr_added(socket, assoc_id, *a);
                            }
                            // What waited for this peer's setup goes on the association now.
                            let mut waiting = false;
                            for a in peer.iter().chain(peer_addrs) {
                                waiting |= self.setup_done(socket, *a);
                            }
                            if waiting {
                                out.push(Action::Wake(socket));
                            }
                            out.push(Action::Emit(AssocEvent::Up {
                                socket,
                                assoc: assoc_id,
                                peer,
                                outbound_streams,
                                inbound_streams,
                            }));
                        }
                        CommUp::Reject => {
                            out.push(Action::Count(Counter::LocalReject));
                            out.push(Action::Abort {
                                socket,
                                assoc: assoc_id,
                                reason: LIMIT_ABORT_REASON,
                            });
                            out.push(Action::Emit(AssocEvent::LimitReject {
                                socket,
                                assoc: assoc_id,
                                peer,
                            }));
                            if let Some(p) = peer {
                                self.setup_failed(&mut out, socket, assoc_id, p, 0);
                            }
                        }
                    }
                }
                AssocChangeState::CommLost | AssocChangeState::ShutdownComp => {
                    let cause = if state == AssocChangeState::CommLost {
                        out.push(Action::Count(Counter::CommLost));
                        DownCause::CommLost { error }
                    } else {
                        out.push(Action::Count(Counter::AssocShutdown));
                        DownCause::ShutdownComplete
                    };
                    let gone = self.table.handle_down(socket, assoc_id);
                    if self.flows.remove(&(socket, assoc_id)).is_some() {
                        self.queues.release(&(socket, Route::Assoc(assoc_id)));
                    }
                    self.requeue_by_address(&mut out, socket, assoc_id);
                    out.push(Action::Wake(socket));
                    out.push(Action::Emit(AssocEvent::Down {
                        socket,
                        assoc: assoc_id,
                        peer: peer.or_else(|| gone.and_then(|a| a.primary)),
                        cause,
                    }));
                }
                AssocChangeState::Restart => out.push(Action::Emit(AssocEvent::Restart {
                    socket,
                    assoc: assoc_id,
                    peer,
                })),
                AssocChangeState::CantStrAssoc => {
                    out.push(Action::Count(Counter::ConnectFailed));
                    out.push(Action::Emit(AssocEvent::CantStart {
                        socket,
                        peer,
                        error,
                    }));
                    // The kernel reports the destination it was setting up as the peer.
                    if let Some(p) = peer {
                        self.setup_failed(&mut out, socket, assoc_id, p, u32::from(error));
                    }
                }
                AssocChangeState::Other(_) => {}
            },
            Notification::PeerAddrChange {
                addr,
                state,
                error,
                assoc_id,
            } => {
                match state {
                    PeerAddrState::Added
                    | PeerAddrState::AddrAvailable
                    | PeerAddrState::Confirmed => {
                        self.table.handle_addr_added(socket, assoc_id, addr)
                    }
                    PeerAddrState::MadePrimary => self.table.handle_primary(socket, assoc_id, addr),
                    PeerAddrState::Removed => {
                        self.table.handle_addr_removed(socket, assoc_id, addr)
                    }
                    _ => {}
                }
                out.push(Action::Emit(AssocEvent::PathChange {
                    socket,
                    assoc: assoc_id,
                    addr,
                    state,
                    error,
                }));
            }
            Notification::SendFailed {
                status,
                error,
                assoc_id,
                send_flags,
                context,
                payload,
                payload_len,
                ..
            } => {
                let dest =
                    peer.or_else(|| self.table.get(socket, assoc_id).and_then(|a| a.primary));
                let chunk = FailedChunk {
                    assoc: assoc_id,
                    dest,
                    status,
                    error,
                    chunk_flags: send_flags,
                    context,
                    payload: &payload,
                    payload_len,
                };
                for m in self.returned.push(index(socket), &chunk) {
                    self.handle_returned(&mut out, socket, m);
                }
            }
            Notification::Shutdown { assoc_id } => {
                out.push(Action::Count(Counter::RemoteShutdown));
                out.push(Action::Emit(AssocEvent::RemoteShutdown {
                    socket,
                    assoc: assoc_id,
                }));
            }
            Notification::SenderDry { assoc_id } => {
                // Everything sent was taken: a fresh share, and a stalled association resumes.
                if let Some(f) = self.flows.get_mut(&(socket, assoc_id)) {
                    f.unchecked = 0;
                    f.unchecked_msgs = 0;
                    if let Some(since) = f.stalled.take() {
                        self.queues.release(&(socket, Route::Assoc(assoc_id)));
                        out.push(Action::Emit(AssocEvent::Resumed {
                            socket,
                            assoc: assoc_id,
                            stalled_for: now.saturating_duration_since(since),
                        }));
                    }
                }
                out.push(Action::Wake(socket));
            }
            Notification::RemoteError {
                error, assoc_id, ..
            } => out.push(Action::Emit(AssocEvent::RemoteError {
                socket,
                assoc: assoc_id,
                error,
            })),
            Notification::PartialDelivery { .. } | Notification::Other(_) => {}
        }
        out
    }

    /// Messages queued for an association that went down go by address (a new association)
    /// instead; those that no longer fit are send failures.
    fn requeue_by_address(&mut self, out: &mut Vec<Action>, socket: SocketId, assoc: AssocId) {
        for p in self.queues.take(&(socket, Route::Assoc(assoc))) {
            let dest = p.dest;
            let len = p.data.len();
            if self.enqueue(out, (socket, Route::Addr(dest)), p).is_err() {
                out.push(Action::Emit(AssocEvent::SendFailure {
                    socket,
                    assoc,
                    dest: Some(dest),
                    error: 0,
                    partly_sent: false,
                    len,
                }));
            }
        }
    }
}

#[cfg(test)]
mod tests;
