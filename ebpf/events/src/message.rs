//! The first bytes of a message an observed association sent or received
//! ([`SipCapture`] records of the `SIP` ring buffer), decoded: sipsctp-exporter reads SIP from
//! them.

use std::{net::IpAddr, time::Duration};

use sipsctp_ebpf_common::{CAPTURE_LEN, CAPTURE_PAYLOAD_LEN, SipCapture, assoc::AssocId, kind};

use crate::event::DecodeError;

/// Which way a message passed the association.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The socket's owner sent it (`sctp_outq_tail`).
    Sent,
    /// It is being delivered to the socket (`sctp_ulpevent_make_rcvmsg`).
    Received,
}

/// A captured message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedMessage {
    /// Which way.
    pub direction: Direction,
    /// CLOCK_MONOTONIC time of the capture.
    pub time: Duration,
    /// Inode number of the association's network namespace.
    pub netns: u32,
    /// The association id user space sees.
    pub assoc_id: AssocId,
    /// Kernel address of the association (identity only).
    pub assoc: u64,
    /// Local SCTP port.
    pub local_port: u16,
    /// Peer SCTP port.
    pub peer_port: u16,
    /// The association's active path's address, if it had one.
    pub peer: Option<IpAddr>,
    /// The process that created the association's socket, if known.
    pub owner: Option<u32>,
    /// The first fragment's TSN (received messages; `None` for sent ones, which get theirs
    /// when they leave).
    pub tsn: Option<u32>,
    /// The stream.
    pub stream: u16,
    /// The payload length of the message's first fragment (the whole message when it was not
    /// fragmented).
    pub len: u32,
    /// The captured first bytes (at most [`sipsctp_ebpf_common::SIP_PREFIX_LEN`]).
    pub prefix: Vec<u8>,
}

impl CapturedMessage {
    /// Decodes a `SIP` ring-buffer record.
    ///
    /// # Errors
    /// A short record, an unknown kind or address family, a captured length over the record's
    /// or the payload's.
    pub fn decode(record: &[u8]) -> Result<CapturedMessage, DecodeError> {
        // A record shorter than its header, or than the length it claims.
        let (raw, prefix) =
            SipCapture::split(record).ok_or(DecodeError::Short { len: record.len() })?;
        let direction = match raw.kind {
            kind::MESSAGE_SENT => Direction::Sent,
            kind::MESSAGE_RECEIVED => Direction::Received,
            k => return Err(DecodeError::UnknownKind(k)),
        };
        let peer = crate::event::peer_addr(&raw)?;
        let bad = |field, value| DecodeError::BadValue {
            kind: "message",
            field,
            value,
        };
        let [tsn, stream, len, captured, ..] = raw.values;
        let len32 = u32::try_from(len).map_err(|_| bad("payload length", len))?;
        debug_assert_eq!((CAPTURE_PAYLOAD_LEN, CAPTURE_LEN), (2, 3));
        if captured > len {
            return Err(bad("captured length", captured));
        }
        Ok(CapturedMessage {
            direction,
            time: Duration::from_nanos(raw.ts_ns),
            netns: raw.netns,
            assoc_id: AssocId(raw.assoc_id),
            assoc: raw.assoc,
            local_port: raw.local_port,
            peer_port: raw.peer_port,
            peer,
            owner: (raw.tgid != 0).then_some(raw.tgid),
            tsn: match direction {
                Direction::Received => Some(u32::try_from(tsn).map_err(|_| bad("tsn", tsn))?),
                Direction::Sent => None,
            },
            stream: u16::try_from(stream).map_err(|_| bad("stream", stream))?,
            len: len32,
            prefix: prefix.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use sipsctp_ebpf_common::{KERNEL_EVENT_SIZE, KernelEvent, SIP_CAPTURE_SIZE, family};

    use super::*;

    fn record(kind: u8, values: [u64; 6], data: &[u8]) -> Vec<u8> {
        let e = KernelEvent {
            kind,
            family: family::INET,
            tgid: 9,
            ts_ns: 5_000_000_000,
            netns: 77,
            assoc_id: 4,
            local_port: 5060,
            peer_port: 5070,
            peer_addr: [10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            assoc: 0xffff_0000,
            values,
            ..KernelEvent::default()
        };
        let mut r = vec![0u8; SIP_CAPTURE_SIZE];
        r[..KERNEL_EVENT_SIZE].copy_from_slice(&e.to_bytes());
        r[KERNEL_EVENT_SIZE..KERNEL_EVENT_SIZE + data.len()].copy_from_slice(data);
        r
    }

    #[test]
    fn a_received_message_decodes_with_its_tsn_and_prefix() {
        let r = record(kind::MESSAGE_RECEIVED, [17, 1, 700, 7, 3, 0], b"OPTIONS");
        let m = CapturedMessage::decode(&r).expect("valid");
        assert_eq!(m.direction, Direction::Received);
        assert_eq!(m.tsn, Some(17));
        assert_eq!(m.stream, 1);
        assert_eq!(m.len, 700);
        assert_eq!(m.prefix, b"OPTIONS");
        assert_eq!(m.peer, Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))));
        assert_eq!(m.assoc_id, AssocId(4));
        assert_eq!(m.owner, Some(9));
        assert_eq!(m.time, Duration::from_secs(5));
    }

    #[test]
    fn a_sent_message_has_no_tsn_and_bad_records_are_errors() {
        let r = record(kind::MESSAGE_SENT, [0, 0, 3, 3, 3, 0], b"SIP");
        assert_eq!(CapturedMessage::decode(&r).expect("valid").tsn, None);
        // More captured than the payload has.
        let r = record(kind::MESSAGE_SENT, [0, 0, 2, 3, 3, 0], b"SIP");
        assert!(CapturedMessage::decode(&r).is_err());
        // Not a message kind.
        let r = record(kind::RTO_UPDATE, [0, 0, 3, 3, 3, 0], b"SIP");
        assert_eq!(
            CapturedMessage::decode(&r),
            Err(DecodeError::UnknownKind(kind::RTO_UPDATE))
        );
        assert!(CapturedMessage::decode(&r[..50]).is_err());
    }
}
