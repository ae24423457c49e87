//! Decoding of SCTP notifications: the bytes of one message received with
//! `MSG_NOTIFICATION` become a typed [`Notification`].
//!
//! Pure: no syscalls, no state. It never trusts a length: every field is read only after
//! checking that the buffer holds it, and malformed input gives a [`DecodeError`], never a
//! panic. Layouts follow `include/uapi/linux/sctp.h` (host byte order except where noted).

use std::net::SocketAddr;

use crate::{
    sys::{read_array, sn_type, sockaddr_from_bytes},
    types::AssocId,
};

/// Size of the common header (`__u16 type; __u16 flags; __u32 length;`).
const HEADER: usize = 8;

/// Why a notification could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The buffer is shorter than the fixed part of the notification.
    #[error("{what} notification truncated: {len} bytes, need {needed}")]
    Truncated {
        /// Which structure.
        what: &'static str,
        /// Bytes it needs.
        needed: usize,
        /// Bytes there were.
        len: usize,
    },
    /// A peer address change carried an address of an unknown family (or a short one).
    #[error("peer address change with an unusable address (family {family})")]
    BadAddress {
        /// The `sa_family` found.
        family: u16,
    },
}

/// `sac_state` of an association change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssocChangeState {
    /// `SCTP_COMM_UP`: a new association is up.
    CommUp,
    /// `SCTP_COMM_LOST`: the association failed (ABORT, timeouts).
    CommLost,
    /// `SCTP_RESTART`: the peer restarted; data in flight may be lost.
    Restart,
    /// `SCTP_SHUTDOWN_COMP`: graceful shutdown completed.
    ShutdownComp,
    /// `SCTP_CANT_STR_ASSOC`: setup failed.
    CantStrAssoc,
    /// Another value.
    Other(u16),
}

impl AssocChangeState {
    fn from_raw(v: u16) -> Self {
        match v {
            0 => Self::CommUp,
            1 => Self::CommLost,
            2 => Self::Restart,
            3 => Self::ShutdownComp,
            4 => Self::CantStrAssoc,
            other => Self::Other(other),
        }
    }
}

/// `spc_state` of a peer address change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerAddrState {
    /// `SCTP_ADDR_AVAILABLE`: reachable again.
    AddrAvailable,
    /// `SCTP_ADDR_UNREACHABLE`.
    Unreachable,
    /// `SCTP_ADDR_REMOVED`.
    Removed,
    /// `SCTP_ADDR_ADDED`.
    Added,
    /// `SCTP_ADDR_MADE_PRIM`: now the primary path.
    MadePrimary,
    /// `SCTP_ADDR_CONFIRMED`.
    Confirmed,
    /// `SCTP_ADDR_POTENTIALLY_FAILED`.
    PotentiallyFailed,
    /// Another value.
    Other(i32),
}

impl PeerAddrState {
    fn from_raw(v: i32) -> Self {
        match v {
            0 => Self::AddrAvailable,
            1 => Self::Unreachable,
            2 => Self::Removed,
            3 => Self::Added,
            4 => Self::MadePrimary,
            5 => Self::Confirmed,
            6 => Self::PotentiallyFailed,
            other => Self::Other(other),
        }
    }
}

/// `ssfe_flags` of a send failure: whether the data had been put on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendFailedStatus {
    /// `SCTP_DATA_UNSENT`: never transmitted.
    Unsent,
    /// `SCTP_DATA_SENT`: transmitted, but not acknowledged.
    Sent,
    /// Another value.
    Other(u16),
}

impl SendFailedStatus {
    fn from_raw(v: u16) -> Self {
        match v {
            0 => Self::Unsent,
            1 => Self::Sent,
            other => Self::Other(other),
        }
    }
}

/// One SCTP notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// `SCTP_ASSOC_CHANGE` (`struct sctp_assoc_change`).
    AssocChange {
        /// What happened.
        state: AssocChangeState,
        /// `sac_error`: the error cause, for failures.
        error: u16,
        /// Outbound streams negotiated.
        outbound_streams: u16,
        /// Inbound streams negotiated.
        inbound_streams: u16,
        /// The association.
        assoc_id: AssocId,
    },
    /// `SCTP_PEER_ADDR_CHANGE` (`struct sctp_paddr_change`).
    PeerAddrChange {
        /// The peer address concerned (v4-mapped addresses as IPv4).
        addr: SocketAddr,
        /// What happened to it.
        state: PeerAddrState,
        /// `spc_error`.
        error: i32,
        /// The association.
        assoc_id: AssocId,
    },
    /// `SCTP_SEND_FAILED_EVENT` (`struct sctp_send_failed_event`): a message that could not be
    /// delivered, with its data.
    SendFailed {
        /// Whether it had been transmitted.
        status: SendFailedStatus,
        /// `ssfe_error`.
        error: u32,
        /// The association.
        assoc_id: AssocId,
        /// `snd_sid` of the failed message.
        stream: u16,
        /// `snd_flags` of the failed message.
        send_flags: u16,
        /// Its payload protocol identifier, as on the wire.
        ppid: u32,
        /// `snd_context`: the value given when sending.
        context: u32,
        /// The undelivered data (possibly cut short, see `payload_len`).
        payload: Vec<u8>,
        /// The data's length as the kernel declared it; larger than `payload.len()` when the
        /// notification was truncated on receipt.
        payload_len: usize,
    },
    /// `SCTP_REMOTE_ERROR` (`struct sctp_remote_error`): the peer sent an ERROR chunk.
    RemoteError {
        /// `sre_error`: the first error cause code.
        error: u16,
        /// The association.
        assoc_id: AssocId,
        /// The ERROR chunk's causes, as received.
        data: Vec<u8>,
    },
    /// `SCTP_SHUTDOWN_EVENT`: the peer sent SHUTDOWN; no more data will come.
    Shutdown {
        /// The association.
        assoc_id: AssocId,
    },
    /// `SCTP_SENDER_DRY_EVENT`: the association has nothing left to send or retransmit.
    SenderDry {
        /// The association.
        assoc_id: AssocId,
    },
    /// `SCTP_PARTIAL_DELIVERY_EVENT` (`struct sctp_pdapi_event`).
    PartialDelivery {
        /// `pdapi_indication` (0 = `SCTP_PARTIAL_DELIVERY_ABORTED`).
        indication: u32,
        /// The association.
        assoc_id: AssocId,
        /// `pdapi_stream`.
        stream: u32,
        /// `pdapi_seq`.
        seq: u32,
    },
    /// A notification type this crate does not decode (`sn_type`).
    Other(u16),
}

impl Notification {
    /// The association the notification is about, if it names one.
    pub fn assoc_id(&self) -> Option<AssocId> {
        match self {
            Self::AssocChange { assoc_id, .. }
            | Self::PeerAddrChange { assoc_id, .. }
            | Self::SendFailed { assoc_id, .. }
            | Self::RemoteError { assoc_id, .. }
            | Self::Shutdown { assoc_id }
            | Self::SenderDry { assoc_id }
            | Self::PartialDelivery { assoc_id, .. } => Some(*assoc_id),
            Self::Other(_) => None,
        }
    }

    /// The kernel's name of the notification type, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::AssocChange { .. } => "SCTP_ASSOC_CHANGE",
            Self::PeerAddrChange { .. } => "SCTP_PEER_ADDR_CHANGE",
            Self::SendFailed { .. } => "SCTP_SEND_FAILED_EVENT",
            Self::RemoteError { .. } => "SCTP_REMOTE_ERROR",
            Self::Shutdown { .. } => "SCTP_SHUTDOWN_EVENT",
            Self::SenderDry { .. } => "SCTP_SENDER_DRY_EVENT",
            Self::PartialDelivery { .. } => "SCTP_PARTIAL_DELIVERY_EVENT",
            Self::Other(_) => "other",
        }
    }

    /// Decodes one notification (the whole message read with `MSG_NOTIFICATION`).
    ///
    /// # Errors
    ///
    /// [`DecodeError::Truncated`] when `buf` is shorter than the fixed part of its type, and
    /// [`DecodeError::BadAddress`] for a peer address change whose address is unusable.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        need(buf, "notification", HEADER)?;
        let sn_type = u16_at(buf, 0)?;
        let flags = u16_at(buf, 2)?;
        let declared = u32::from_ne_bytes(read(buf, 4)?) as usize;
        match sn_type {
            sn_type::ASSOC_CHANGE => {
                need(buf, "sctp_assoc_change", 20)?;
                Ok(Self::AssocChange {
                    state: AssocChangeState::from_raw(u16_at(buf, 8)?),
                    error: u16_at(buf, 10)?,
                    outbound_streams: u16_at(buf, 12)?,
                    inbound_streams: u16_at(buf, 14)?,
                    assoc_id: assoc_at(buf, 16)?,
                })
            }
            sn_type::PEER_ADDR_CHANGE => {
                // packed, aligned(4): sockaddr_storage at 8, then state, error, assoc id.
                need(buf, "sctp_paddr_change", 148)?;
                let storage = buf.get(8..136).unwrap_or(&[]);
                let (addr, _) = sockaddr_from_bytes(storage).ok_or(DecodeError::BadAddress {
                    family: read_array(storage, 0).map_or(0, u16::from_ne_bytes),
                })?;
                Ok(Self::PeerAddrChange {
                    addr,
                    state: PeerAddrState::from_raw(i32::from_ne_bytes(read(buf, 136)?)),
                    error: i32::from_ne_bytes(read(buf, 140)?),
                    assoc_id: assoc_at(buf, 144)?,
                })
            }
            sn_type::SEND_FAILED_EVENT => {
                // type, flags, length, error, sctp_sndinfo (16 bytes at 12), assoc id, data.
                const FIXED: usize = 32;
                need(buf, "sctp_send_failed_event", FIXED)?;
                let payload_len = declared.saturating_sub(FIXED);
                let end = declared.clamp(FIXED, buf.len());
                Ok(Self::SendFailed {
                    status: SendFailedStatus::from_raw(flags),
                    error: u32_at(buf, 8)?,
                    stream: u16_at(buf, 12)?,
                    send_flags: u16_at(buf, 14)?,
                    ppid: u32::from_be_bytes(read(buf, 16)?),
                    context: u32_at(buf, 20)?,
                    assoc_id: assoc_at(buf, 28)?,
                    payload: buf.get(FIXED..end).unwrap_or(&[]).to_vec(),
                    payload_len,
                })
            }
            sn_type::REMOTE_ERROR => {
                // type, flags, length, __be16 error, (pad), assoc id at 12, data at 16.
                const FIXED: usize = 16;
                need(buf, "sctp_remote_error", FIXED)?;
                let end = declared.clamp(FIXED, buf.len());
                Ok(Self::RemoteError {
                    error: u16::from_be_bytes(read(buf, 8)?),
                    assoc_id: assoc_at(buf, 12)?,
                    data: buf.get(FIXED..end).unwrap_or(&[]).to_vec(),
                })
            }
            sn_type::SHUTDOWN_EVENT => {
                need(buf, "sctp_shutdown_event", 12)?;
                Ok(Self::Shutdown {
                    assoc_id: assoc_at(buf, 8)?,
                })
            }
            sn_type::SENDER_DRY_EVENT => {
                need(buf, "sctp_sender_dry_event", 12)?;
                Ok(Self::SenderDry {
                    assoc_id: assoc_at(buf, 8)?,
                })
            }
            sn_type::PARTIAL_DELIVERY_EVENT => {
                need(buf, "sctp_pdapi_event", 24)?;
                Ok(Self::PartialDelivery {
                    indication: u32_at(buf, 8)?,
                    assoc_id: assoc_at(buf, 12)?,
                    stream: u32_at(buf, 16)?,
                    seq: u32_at(buf, 20)?,
                })
            }
            other => Ok(Self::Other(other)),
        }
    }
}

fn need(buf: &[u8], what: &'static str, needed: usize) -> Result<(), DecodeError> {
    if buf.len() < needed {
        Err(DecodeError::Truncated {
            what,
            needed,
            len: buf.len(),
        })
    } else {
        Ok(())
    }
}

fn read<const N: usize>(buf: &[u8], offset: usize) -> Result<[u8; N], DecodeError> {
    read_array(buf, offset).ok_or(DecodeError::Truncated {
        what: "notification field",
        needed: offset.saturating_add(N),
        len: buf.len(),
    })
}

fn u16_at(buf: &[u8], offset: usize) -> Result<u16, DecodeError> {
    read(buf, offset).map(u16::from_ne_bytes)
}

fn u32_at(buf: &[u8], offset: usize) -> Result<u32, DecodeError> {
    read(buf, offset).map(u32::from_ne_bytes)
}

fn assoc_at(buf: &[u8], offset: usize) -> Result<AssocId, DecodeError> {
    u32_at(buf, offset).map(AssocId)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::sockaddr_bytes;

    fn header(sn: u16, flags: u16, len: u32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&sn.to_ne_bytes());
        b.extend_from_slice(&flags.to_ne_bytes());
        b.extend_from_slice(&len.to_ne_bytes());
        b
    }

    fn assoc_change(state: u16) -> Vec<u8> {
        let mut b = header(sn_type::ASSOC_CHANGE, 0, 20);
        for v in [state, 0, 10, 12] {
            b.extend_from_slice(&v.to_ne_bytes());
        }
        b.extend_from_slice(&3i32.to_ne_bytes());
        b
    }

    /// Every prefix shorter than the fixed part is an error, never a panic.
    fn assert_truncations(full: &[u8], fixed: usize) {
        for cut in 0..fixed {
            assert!(
                Notification::decode(&full[..cut]).is_err(),
                "cut at {cut} of {fixed}"
            );
        }
    }

    #[test]
    fn assoc_change_states() {
        let n = Notification::decode(&assoc_change(0)).unwrap();
        assert_eq!(
            n,
            Notification::AssocChange {
                state: AssocChangeState::CommUp,
                error: 0,
                outbound_streams: 10,
                inbound_streams: 12,
                assoc_id: AssocId(3),
            }
        );
        assert_eq!(n.assoc_id(), Some(AssocId(3)));
        let states = [
            (1, AssocChangeState::CommLost),
            (2, AssocChangeState::Restart),
            (3, AssocChangeState::ShutdownComp),
            (4, AssocChangeState::CantStrAssoc),
            (77, AssocChangeState::Other(77)),
        ];
        for (raw, want) in states {
            match Notification::decode(&assoc_change(raw)).unwrap() {
                Notification::AssocChange { state, .. } => assert_eq!(state, want),
                other => panic!("{other:?}"),
            }
        }
        assert_truncations(&assoc_change(0), 20);
    }

    fn paddr_change(addr: &SocketAddr, state: i32) -> Vec<u8> {
        let mut b = header(sn_type::PEER_ADDR_CHANGE, 0, 148);
        let mut storage = [0u8; 128];
        let raw = sockaddr_bytes(addr);
        storage[..raw.as_bytes().len()].copy_from_slice(raw.as_bytes());
        b.extend_from_slice(&storage);
        b.extend_from_slice(&state.to_ne_bytes());
        b.extend_from_slice(&5i32.to_ne_bytes());
        b.extend_from_slice(&9i32.to_ne_bytes());
        assert_eq!(b.len(), 148);
        b
    }

    #[test]
    fn peer_addr_change() {
        let a: SocketAddr = "[2001:db8::7]:5060".parse().unwrap();
        let n = Notification::decode(&paddr_change(&a, 1)).unwrap();
        assert_eq!(
            n,
            Notification::PeerAddrChange {
                addr: a,
                state: PeerAddrState::Unreachable,
                error: 5,
                assoc_id: AssocId(9),
            }
        );
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:5060".parse().unwrap();
        match Notification::decode(&paddr_change(&mapped, 6)).unwrap() {
            Notification::PeerAddrChange { addr, state, .. } => {
                assert_eq!(addr, "10.0.0.1:5060".parse().unwrap());
                assert_eq!(state, PeerAddrState::PotentiallyFailed);
            }
            other => panic!("{other:?}"),
        }
        assert_truncations(&paddr_change(&a, 0), 148);
        // Unknown family.
        let mut bad = paddr_change(&a, 0);
        bad[8..10].copy_from_slice(&0x55u16.to_ne_bytes());
        assert_eq!(
            Notification::decode(&bad),
            Err(DecodeError::BadAddress { family: 0x55 })
        );
    }

    fn send_failed(payload: &[u8], declared_extra: u32) -> Vec<u8> {
        let len = 32 + payload.len() as u32 + declared_extra;
        let mut b = header(sn_type::SEND_FAILED_EVENT, 1, len);
        b.extend_from_slice(&110u32.to_ne_bytes()); // error
        b.extend_from_slice(&4u16.to_ne_bytes()); // snd_sid
        b.extend_from_slice(&1u16.to_ne_bytes()); // snd_flags
        b.extend_from_slice(&39u32.to_be_bytes()); // snd_ppid (wire order)
        b.extend_from_slice(&0xfeedu32.to_ne_bytes()); // snd_context
        b.extend_from_slice(&0i32.to_ne_bytes()); // snd_assoc_id
        b.extend_from_slice(&21i32.to_ne_bytes()); // ssfe_assoc_id
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn send_failed_event() {
        let n = Notification::decode(&send_failed(b"INVITE sip:x", 0)).unwrap();
        assert_eq!(
            n,
            Notification::SendFailed {
                status: SendFailedStatus::Sent,
                error: 110,
                assoc_id: AssocId(21),
                stream: 4,
                send_flags: 1,
                ppid: 39,
                context: 0xfeed,
                payload: b"INVITE sip:x".to_vec(),
                payload_len: 12,
            }
        );
        // Declared longer than received: payload cut, declared length kept.
        match Notification::decode(&send_failed(b"abc", 100)).unwrap() {
            Notification::SendFailed {
                payload,
                payload_len,
                ..
            } => {
                assert_eq!(payload, b"abc");
                assert_eq!(payload_len, 103);
            }
            other => panic!("{other:?}"),
        }
        // Declared shorter than the header: empty payload, no panic.
        let mut b = send_failed(b"xyz", 0);
        b[4..8].copy_from_slice(&3u32.to_ne_bytes());
        match Notification::decode(&b).unwrap() {
            Notification::SendFailed {
                payload,
                payload_len,
                ..
            } => {
                assert!(payload.is_empty());
                assert_eq!(payload_len, 0);
            }
            other => panic!("{other:?}"),
        }
        assert_truncations(&send_failed(b"", 0), 32);
    }

    #[test]
    fn remote_error() {
        let mut b = header(sn_type::REMOTE_ERROR, 0, 20);
        b.extend_from_slice(&0x000bu16.to_be_bytes());
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&8i32.to_ne_bytes());
        b.extend_from_slice(&[0, 0xb, 0, 4]);
        assert_eq!(
            Notification::decode(&b).unwrap(),
            Notification::RemoteError {
                error: 0xb,
                assoc_id: AssocId(8),
                data: vec![0, 0xb, 0, 4],
            }
        );
        assert_truncations(&b, 16);
    }

    #[test]
    fn small_events() {
        let mut b = header(sn_type::SHUTDOWN_EVENT, 0, 12);
        b.extend_from_slice(&5i32.to_ne_bytes());
        assert_eq!(
            Notification::decode(&b).unwrap(),
            Notification::Shutdown {
                assoc_id: AssocId(5)
            }
        );
        assert_truncations(&b, 12);

        let mut b = header(sn_type::SENDER_DRY_EVENT, 0, 12);
        b.extend_from_slice(&6i32.to_ne_bytes());
        assert_eq!(
            Notification::decode(&b).unwrap(),
            Notification::SenderDry {
                assoc_id: AssocId(6)
            }
        );
        assert_truncations(&b, 12);

        let mut b = header(sn_type::PARTIAL_DELIVERY_EVENT, 0, 24);
        for v in [0u32, 7, 2, 11] {
            b.extend_from_slice(&v.to_ne_bytes());
        }
        assert_eq!(
            Notification::decode(&b).unwrap(),
            Notification::PartialDelivery {
                indication: 0,
                assoc_id: AssocId(7),
                stream: 2,
                seq: 11,
            }
        );
        assert_truncations(&b, 24);
    }

    #[test]
    fn other_and_garbage() {
        let b = header(sn_type::AUTHENTICATION_EVENT, 0, 8);
        assert_eq!(
            Notification::decode(&b).unwrap(),
            Notification::Other(sn_type::AUTHENTICATION_EVENT)
        );
        for t in [
            sn_type::SEND_FAILED,
            sn_type::ADAPTATION_INDICATION,
            sn_type::STREAM_RESET_EVENT,
            sn_type::ASSOC_RESET_EVENT,
            sn_type::STREAM_CHANGE_EVENT,
        ] {
            assert_eq!(
                Notification::decode(&header(t, 0, 8)).unwrap(),
                Notification::Other(t)
            );
        }
        assert!(Notification::decode(&[]).is_err());
        assert!(Notification::decode(&[0xff; 7]).is_err());
        // Pseudo-random garbage of every length: never panics.
        let mut x: u32 = 0x1234_5678;
        for len in 0..400 {
            let mut buf = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                buf.push(x as u8);
            }
            if len >= 2 {
                // Steer half of them at the known types.
                let t = 0x8001 + (x % 14) as u16;
                buf[0..2].copy_from_slice(&t.to_ne_bytes());
            }
            let _ = Notification::decode(&buf);
        }
    }
}
