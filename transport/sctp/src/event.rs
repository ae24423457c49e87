//! What the endpoint reports about its associations and messages ([`AssocEvent`],
//! [`DownCause`]): the vocabulary shared by the pure endpoint core, which decides them, and the
//! endpoint, which broadcasts them to the relay and the exporter.
//!
//! Plain data: no sockets, no state, no decisions.

use std::net::SocketAddr;

use crate::{AssocId, assoc::SocketId, counters::DropCause, notification::PeerAddrState};

/// Why an association ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownCause {
    /// COMM_LOST (the peer aborted, or retransmissions ran out), with the kernel's error.
    CommLost {
        /// The error code in the notification.
        error: u16,
    },
    /// SHUTDOWN_COMP: an orderly shutdown.
    ShutdownComplete,
}

/// What happened to an association; for the relay and the exporter.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AssocEvent {
    /// COMM_UP, accepted.
    Up {
        /// Socket.
        socket: SocketId,
        /// Association.
        assoc: AssocId,
        /// The peer's primary address.
        peer: Option<SocketAddr>,
        /// Negotiated outbound streams.
        outbound_streams: u16,
        /// Negotiated inbound streams.
        inbound_streams: u16,
    },
    /// The association ended.
    Down {
        /// Socket.
        socket: SocketId,
        /// Association.
        assoc: AssocId,
        /// The peer's primary address.
        peer: Option<SocketAddr>,
        /// Why.
        cause: DownCause,
    },
    /// The peer restarted the association (RESTART).
    Restart {
        /// Socket.
        socket: SocketId,
        /// Association.
        assoc: AssocId,
        /// The peer's primary address.
        peer: Option<SocketAddr>,
    },
    /// An association could not be set up (CANT_STR_ASSOC).
    CantStart {
        /// Socket.
        socket: SocketId,
        /// The destination.
        peer: Option<SocketAddr>,
        /// The kernel's error.
        error: u16,
    },
    /// The peer sent SHUTDOWN.
    RemoteShutdown {
        /// Socket.
        socket: SocketId,
        /// Association.
        assoc: AssocId,
    },
    /// A path (peer address) changed state.
    PathChange {
        /// Socket.
        socket: SocketId,
        /// Association.
        assoc: AssocId,
        /// The peer address.
        addr: SocketAddr,
        /// Its new state.
        state: PeerAddrState,
        /// The kernel's error.
        error: i32,
    },
    /// A message was not delivered and will not be retried (budget exhausted or an error).
    SendFailure {
        /// Socket.
        socket: SocketId,
        /// Association it was on.
        assoc: AssocId,
        /// Its destination, when known.
        dest: Option<SocketAddr>,
        /// The kernel's error (0 = abandoned, e.g. its lifetime expired).
        error: u32,
        /// Whether some of it had been sent.
        partly_sent: bool,
        /// Its size.
        len: usize,
    },
    /// A message the kernel returned was resent by address (`send_force_retry`).
    SendRetried {
        /// Socket.
        socket: SocketId,
        /// The association it failed on.
        assoc: AssocId,
        /// Where it was resent.
        dest: SocketAddr,
        /// Retries left after this one.
        retries_left: u32,
    },
    /// An association over `sctp_max_assocs` was aborted.
    LimitReject {
        /// Socket.
        socket: SocketId,
        /// Association.
        assoc: AssocId,
        /// The peer.
        peer: Option<SocketAddr>,
    },
    /// A received message was dropped.
    Dropped {
        /// Socket.
        socket: SocketId,
        /// Association.
        assoc: AssocId,
        /// The peer.
        peer: Option<SocketAddr>,
        /// Why.
        cause: DropCause,
        /// Bytes of it that were read.
        size: usize,
    },
    /// The peer reported an operation error (REMOTE_ERROR).
    RemoteError {
        /// Socket.
        socket: SocketId,
        /// Association.
        assoc: AssocId,
        /// The error cause code.
        error: u16,
    },
    /// The peer stopped taking data (zero window, or more unsent data than its share of the
    /// send buffer): further messages to it wait in its send queue, outside the kernel, until
    /// the association drains (SENDER_DRY).
    Stalled {
        /// Socket.
        socket: SocketId,
        /// Association.
        assoc: AssocId,
        /// The peer's receive window as the kernel knows it, bytes.
        rwnd: u32,
        /// DATA chunks waiting in the kernel, unsent.
        pending_chunks: u16,
    },
    /// A stalled association drained: its waiting messages go to the kernel again.
    Resumed {
        /// Socket.
        socket: SocketId,
        /// Association.
        assoc: AssocId,
        /// How long it was stalled.
        stalled_for: std::time::Duration,
    },
    /// A stalled association was aborted: it stayed stalled past the limit, or it was the
    /// longest stalled when too many were. Its waiting messages were dropped
    /// (`send_dropped{reason="stalled"}`).
    StallAborted {
        /// Socket.
        socket: SocketId,
        /// Association.
        assoc: AssocId,
        /// How long it was stalled.
        stalled_for: std::time::Duration,
        /// Messages dropped with it.
        dropped: usize,
    },
}
