//! Kernel SCTP for SIP: one-to-many (`SOCK_SEQPACKET`) sockets on tokio.
//!
//! This crate owns the SCTP socket layer of the daemon: creating and multi-homing a socket
//! ([`SctpSocket::bind`]), receiving whole messages with their association, peer, stream and
//! payload protocol identifier, reassembled from partial reads and bounded in size
//! ([`SctpSocket::recv`], [`Incoming`]), decoding the kernel's notifications
//! ([`Notification`]), sending with per-message stream, ordering, PPID, lifetime and context
//! ([`SctpSocket::send`], [`SctpSocket::try_send`], [`SendOptions`]), and reading or tuning the
//! socket options Kamailio's sctp module exposes ([`AssocStatus`], [`RtoInfo`], ...). It uses
//! the RFC 6458 API: `SCTP_EVENT` subscriptions, `SCTP_RCVINFO`, `SCTP_SNDINFO` and
//! `SCTP_PRINFO`.
//!
//! Pure state, tested without sockets: Kamailio's 19 parameters and their validation
//! ([`params`]), the association table with reuse and the `sctp_max_assocs` limit ([`assoc`]),
//! the counters under Kamailio's names ([`counters`]), bounded send queues ([`sendq`]) and
//! the endpoint's policy ([`endpoint_core`]: notifications and sends in, actions out), which
//! the endpoint ([`endpoint`]) only carries out. [`sysctl`] reads the kernel's SCTP settings
//! that matter to it.
//!
//! It never parses SIP and has no telemetry dependency. All `unsafe` code and all use of
//! `libc` are confined to the private `sys` module.
#![warn(missing_docs)]

pub mod assoc;
pub mod counters;
pub mod endpoint;
pub mod endpoint_core;
mod error;
mod event;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod incoming;
mod notification;
pub mod options;
pub mod params;
mod reassembly;
pub mod sendq;
mod socket;
mod sys;
pub mod sysctl;
mod types;

pub use error::{Error, Result};
pub use incoming::{DropReason, Incoming};
pub use notification::{
    AssocChangeState, DecodeError, Notification, PeerAddrState, SendFailedStatus,
};
pub use socket::{SctpSocket, SendOptions, SendTarget, SocketConfig};
pub use types::{
    AssocId, AssocParams, AssocState, AssocStatus, DelayedSack, EventSubscriptions, InitMsg,
    PathState, PeerAddrFlags, PeerAddrInfo, PeerAddrParams, RtoInfo,
};
