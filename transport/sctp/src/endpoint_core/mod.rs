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
//!   [`EndpointCore::queued`], [`EndpointCore::closing`], [`EndpointCore::send_budget`].
//! - Inputs from the kernel: [`EndpointCore::handle_notification`],
//!   [`EndpointCore::handle_message`], [`EndpointCore::handle_dropped`].
//! - Sending: [`EndpointCore::plan_send`] says whether to transmit now or queue; the driver
//!   reports the attempt with [`EndpointCore::handle_transmit`]. The send task takes queued
//!   messages with [`EndpointCore::poll_queued`] and reports each with
//!   [`EndpointCore::handle_queued_result`]; a [`Resend`] the core asked for is reported with
//!   [`EndpointCore::handle_resend_result`].
//! - Commands: [`EndpointCore::stop_accepting`], [`EndpointCore::handle_param_change`].
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

use std::{net::SocketAddr, time::Instant};

pub use returned::Context;
use returned::{FailedChunk, Returned, ReturnedMessage};

use crate::{
    AssocId, DropReason, Error, Notification, SendOptions,
    assoc::{AssocTable, CommUp, LIMIT_ABORT_REASON, LimitExceeded, Route, SocketId},
    counters::{Counter, DropCause},
    event::{AssocEvent, DownCause},
    notification::{AssocChangeState, PeerAddrState},
    params::{Param, SctpParams},
    sendq::{QueueFull, SendQueues},
};

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
}

/// What [`EndpointCore::plan_send`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendPlan {
    /// Hand it to the kernel now, then report with [`EndpointCore::handle_transmit`].
    Transmit(Attempt),
    /// It went into the destination's queue behind earlier messages (order is kept); the
    /// send task will take it.
    Queued(SendOutcome),
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

/// The endpoint's state and policy (see the module doc).
#[derive(Debug)]
pub struct EndpointCore {
    table: AssocTable,
    params: SctpParams,
    /// One set of queues per listener, indexed by [`SocketId`].
    queues: Vec<SendQueues<Route, Pending>>,
    /// Set by [`EndpointCore::stop_accepting`]: no new associations, not even outbound ones.
    closing: bool,
    /// Messages coming back in SEND_FAILED events, per listener.
    returned: Returned,
    /// The tag of the next message sent.
    next_tag: u32,
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
    /// A core for `listeners` sockets with validated `params`, `sendq_limit` messages per
    /// destination queue, and messages up to `max_message_size` bytes rebuilt from their
    /// returned fragments for a resend.
    pub fn new(
        params: SctpParams,
        listeners: usize,
        sendq_limit: usize,
        max_message_size: usize,
    ) -> EndpointCore {
        EndpointCore {
            table: AssocTable::new(
                params.get(Param::AssocTracking) == 1,
                params.get(Param::AssocReuse) == 1,
                params.get(Param::MaxAssocs),
            ),
            params,
            queues: (0..listeners)
                .map(|_| SendQueues::new(sendq_limit))
                .collect(),
            closing: false,
            returned: Returned::new(listeners, max_message_size),
            next_tag: 0,
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

    /// Messages waiting in the send queues of every listener.
    pub fn queued(&self) -> u64 {
        self.queues.iter().map(|q| q.len() as u64).sum()
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
    ) -> Attempt {
        Attempt {
            route,
            dest,
            options: self.send_options(socket, dest, context),
            context,
            addr_fallback: !self.closing,
        }
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

    /// A message for `dest` from listener `socket`: transmit it now, or queue it behind what
    /// already waits for that destination (keeping order).
    ///
    /// # Errors
    /// [`SendError::UnknownSocket`], [`SendError::ShuttingDown`] for a destination without an
    /// association after [`EndpointCore::stop_accepting`], [`SendError::Limit`] when it would
    /// open an association beyond `sctp_max_assocs`, [`SendError::QueueFull`] when it must
    /// wait and its destination's queue is full.
    pub fn plan_send(
        &mut self,
        socket: SocketId,
        dest: SocketAddr,
        data: &[u8],
        budget: u32,
    ) -> Result<SendPlan, SendError> {
        let idx = index(socket);
        if idx >= self.queues.len() {
            return Err(SendError::UnknownSocket(socket));
        }
        if self.closing && self.table.lookup(socket, dest).is_none() {
            return Err(SendError::ShuttingDown(dest));
        }
        let route = self.table.route(socket, dest)?;
        let context = self.new_context(budget);
        if let Some(q) = self.queues.get_mut(idx)
            && q.has(&route)
        {
            let pending = Pending {
                data: data.to_vec(),
                dest,
                context,
            };
            q.push(route, pending)
                .map_err(|(source, _)| SendError::QueueFull { dest, source })?;
            return Ok(SendPlan::Queued(SendOutcome::Queued {
                assoc: route_assoc(route),
            }));
        }
        Ok(SendPlan::Transmit(
            self.attempt(socket, route, dest, context),
        ))
    }

    /// How the driver's attempt at a [`SendPlan::Transmit`] went: a full send buffer queues
    /// the message (counting `sendq_full`), a refusal counts `send_failed`.
    pub fn handle_transmit(
        &mut self,
        socket: SocketId,
        attempt: &Attempt,
        data: &[u8],
        result: Transmit,
    ) -> SendStep {
        let dest = attempt.dest;
        let mut actions = Vec::new();
        let result = match result {
            Transmit::Sent { assoc } => Ok(SendOutcome::Sent { assoc }),
            Transmit::WouldBlock => {
                actions.push(Action::Count(Counter::SendqFull));
                let pending = Pending {
                    data: data.to_vec(),
                    dest,
                    context: attempt.context,
                };
                match self.queues.get_mut(index(socket)) {
                    None => Err(SendError::UnknownSocket(socket)),
                    Some(q) => match q.push(attempt.route, pending) {
                        Ok(()) => {
                            actions.push(Action::Wake(socket));
                            Ok(SendOutcome::Queued {
                                assoc: route_assoc(attempt.route),
                            })
                        }
                        Err((source, _)) => {
                            actions.push(Action::Count(Counter::SendFailed));
                            Err(SendError::QueueFull { dest, source })
                        }
                    },
                }
            }
            Transmit::Failed(source) => {
                actions.push(Action::Count(Counter::SendFailed));
                Err(SendError::Socket { dest, source })
            }
        };
        SendStep { result, actions }
    }

    /// The send task of listener `socket` takes the oldest message of a non-empty queue. Its
    /// destination stays busy (new messages queue behind it) until
    /// [`EndpointCore::handle_queued_result`].
    pub fn poll_queued(&mut self, socket: SocketId) -> Option<QueuedSend> {
        let (route, p) = self.queues.get_mut(index(socket))?.pop_any()?;
        Some(QueuedSend {
            attempt: self.attempt(socket, route, p.dest, p.context),
            data: p.data,
        })
    }

    /// How the send task's attempt at a [`QueuedSend`] went: a full buffer puts it back at the
    /// front of its queue (the task then waits for room), a refusal is a send failure.
    pub fn handle_queued_result(
        &mut self,
        socket: SocketId,
        sent: QueuedSend,
        result: Transmit,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        let Some(q) = self.queues.get_mut(index(socket)) else {
            return actions;
        };
        let route = sent.attempt.route;
        match result {
            Transmit::Sent { .. } => q.done(&route),
            Transmit::WouldBlock => q.unpop(
                route,
                Pending {
                    data: sent.data,
                    dest: sent.attempt.dest,
                    context: sent.attempt.context,
                },
            ),
            Transmit::Failed(_) => {
                q.done(&route);
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
    pub fn handle_resend_result(&mut self, resend: Resend, result: Transmit) -> Vec<Action> {
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
            Transmit::Sent { .. } => {}
            Transmit::WouldBlock => {
                actions.push(Action::Count(Counter::SendqFull));
                let queued = self.queues.get_mut(index(socket)).map(|q| {
                    q.push(
                        Route::Addr(dest),
                        Pending {
                            data,
                            dest,
                            context,
                        },
                    )
                });
                if !matches!(queued, Some(Ok(()))) {
                    Self::send_failure(&mut actions, socket, failed_on, Some(dest), 0, false, len);
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

    /// The socket read a message it did not deliver (too large, or cut short).
    pub fn handle_dropped(
        &mut self,
        socket: SocketId,
        assoc: AssocId,
        peer: SocketAddr,
        reason: DropReason,
    ) -> Vec<Action> {
        let (cause, size) = match reason {
            DropReason::TooLarge { size_so_far } => (DropCause::TooLarge, size_so_far),
            DropReason::Incomplete { size_so_far } => (DropCause::Incomplete, size_so_far),
        };
        let mut actions = Vec::new();
        self.interrupt_returned(&mut actions, socket);
        actions.push(Action::Count(Counter::Dropped(cause)));
        actions.push(Action::Emit(AssocEvent::Dropped {
            socket,
            assoc,
            peer: Some(peer),
            cause,
            size,
        }));
        actions
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
            Notification::SenderDry { .. } => out.push(Action::Wake(socket)),
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
        let Some(q) = self.queues.get_mut(index(socket)) else {
            return;
        };
        for p in q.take(&Route::Assoc(assoc)) {
            let dest = p.dest;
            if let Err((_, lost)) = q.push(Route::Addr(dest), p) {
                Self::send_failure(out, socket, assoc, Some(dest), 0, false, lost.data.len());
            }
        }
    }
}

#[cfg(test)]
mod tests;
