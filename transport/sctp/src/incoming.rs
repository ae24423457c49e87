//! What a receive returns: a whole message, a notification, or the report of a message that
//! was read but not delivered ([`Incoming`], [`DropReason`]).
//!
//! Plain data shared by the socket (`socket.rs`, which returns it) and the reassembler
//! (`reassembly.rs`, which builds it), so that neither imports the other. It never touches a
//! socket and holds no state.

use std::net::SocketAddr;

use crate::{notification::Notification, types::AssocId};

/// Why an incoming message was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Larger than [`SocketConfig::max_message_size`](crate::SocketConfig::max_message_size);
    /// `size_so_far` is how many bytes of it were read (all of it, unless its association
    /// ended first).
    TooLarge {
        /// Bytes read.
        size_so_far: usize,
    },
    /// Its association ended, or the kernel aborted its partial delivery, before the end of
    /// the message arrived.
    Incomplete {
        /// Bytes read.
        size_so_far: usize,
    },
    /// Still unfinished when it reached the age limit for partial messages (a peer that
    /// withholds the end of a message). The rest of it, if it ever comes, is discarded; the
    /// endpoint aborts the association.
    Expired {
        /// Bytes read.
        size_so_far: usize,
    },
    /// Extending it would have taken the bytes held for all unfinished messages of the
    /// socket over [`SocketConfig::partial_bytes_limit`](crate::SocketConfig::partial_bytes_limit).
    /// The rest of it is discarded; the endpoint aborts the association.
    OverBudget {
        /// Bytes read.
        size_so_far: usize,
    },
}

impl DropReason {
    /// Bytes of the message read before it was dropped.
    pub const fn size_so_far(&self) -> usize {
        match *self {
            DropReason::TooLarge { size_so_far }
            | DropReason::Incomplete { size_so_far }
            | DropReason::Expired { size_so_far }
            | DropReason::OverBudget { size_so_far } => size_so_far,
        }
    }
}

/// What [`SctpSocket::recv`](crate::SctpSocket::recv) returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A whole user message.
    Message {
        /// Its bytes.
        data: Vec<u8>,
        /// The association it came on.
        assoc_id: AssocId,
        /// The peer address it came from (IPv4-mapped addresses as IPv4).
        peer: SocketAddr,
        /// The stream.
        stream: u16,
        /// The payload protocol identifier, as on the wire.
        ppid: u32,
        /// Whether it was sent unordered.
        unordered: bool,
    },
    /// A notification from the kernel.
    Notification {
        /// The notification.
        notification: Notification,
        /// The association's primary peer address, which the kernel reports with every
        /// notification of an association (`None` when it gave none).
        peer: Option<SocketAddr>,
    },
    /// A message that was read but not delivered (the socket keeps working).
    Dropped {
        /// The association it came on.
        assoc_id: AssocId,
        /// The peer address it came from.
        peer: SocketAddr,
        /// Why.
        reason: DropReason,
    },
}
