//! Whole-message reassembly of what `recvmsg` returns in pieces.
//!
//! A read without `MSG_EOR` is only part of a message (the read buffer was smaller than the
//! message, or the kernel started partial delivery). This module keeps the pieces per
//! association until `MSG_EOR`, bounded by the configured maximum message size: past the
//! bound the rest of the message is read and thrown away and a [`Incoming::Dropped`] is
//! reported instead. Notifications are reassembled the same way (with no association id until
//! decoded), and a notification that ends an association (or aborts a partial delivery)
//! discards that association's unfinished message, reported as dropped.
//!
//! Pure: it never reads the socket itself, so it is tested without a kernel.

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
};

use crate::{
    error::{Error, Result},
    incoming::{DropReason, Incoming},
    notification::{AssocChangeState, Notification},
    sys::cmsg::RcvInfo,
    types::AssocId,
};

/// Room kept for a notification's fixed part on top of the largest message it may carry back
/// (a send failure returns the undelivered message).
const NOTIFICATION_HEADROOM: usize = 512;

/// One `recvmsg` result, as the reassembler sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Piece<'a> {
    /// The bytes read.
    pub(crate) bytes: &'a [u8],
    /// `MSG_EOR`: the message ends here.
    pub(crate) eor: bool,
    /// `MSG_NOTIFICATION`.
    pub(crate) notification: bool,
    /// `msg_name`.
    pub(crate) peer: Option<SocketAddr>,
    /// `SCTP_RCVINFO`, for data.
    pub(crate) info: Option<RcvInfo>,
}

/// An unfinished data message.
#[derive(Debug)]
struct Partial {
    data: Vec<u8>,
    size: usize,
    too_large: bool,
    peer: SocketAddr,
    info: RcvInfo,
}

/// Reassembly state of one socket.
#[derive(Debug)]
pub(crate) struct Reassembler {
    max_message_size: usize,
    partial: HashMap<AssocId, Partial>,
    notification: Vec<u8>,
    notification_size: usize,
    ready: VecDeque<Incoming>,
}

impl Reassembler {
    /// A reassembler that gives up on data messages larger than `max_message_size` bytes.
    pub(crate) fn new(max_message_size: usize) -> Self {
        Self {
            max_message_size,
            partial: HashMap::new(),
            notification: Vec::new(),
            notification_size: 0,
            ready: VecDeque::new(),
        }
    }

    /// An item completed earlier and not yet returned.
    pub(crate) fn pop_ready(&mut self) -> Option<Incoming> {
        self.ready.pop_front()
    }

    /// Whether a data message of `assoc` is unfinished.
    #[cfg(test)]
    fn in_progress(&self, assoc: AssocId) -> bool {
        self.partial.contains_key(&assoc)
    }

    /// Takes one piece; returns an item when it completes one.
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`] for data without `SCTP_RCVINFO` or a sender address, and
    /// [`Error::Notification`] for a notification that does not decode. Either concerns that
    /// one message only; the state stays usable.
    pub(crate) fn push(&mut self, piece: Piece<'_>) -> Result<Option<Incoming>> {
        if piece.notification {
            self.push_notification(piece)
        } else {
            self.push_data(piece)
        }
    }

    fn push_data(&mut self, piece: Piece<'_>) -> Result<Option<Incoming>> {
        let Some(info) = piece.info else {
            return Err(Error::Protocol("data received without SCTP_RCVINFO"));
        };
        let assoc_id = AssocId(info.assoc_id);
        let len = piece.bytes.len();
        let max = self.max_message_size;
        if piece.eor && !self.partial.contains_key(&assoc_id) {
            // The common case: a whole message in one read.
            let Some(peer) = piece.peer else {
                return Err(Error::Protocol("data received without a sender address"));
            };
            if len > max {
                return Ok(Some(Incoming::Dropped {
                    assoc_id,
                    peer,
                    reason: DropReason::TooLarge { size_so_far: len },
                }));
            }
            return Ok(Some(message(piece.bytes.to_vec(), assoc_id, peer, &info)));
        }
        let entry = match self.partial.entry(assoc_id) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let Some(peer) = piece.peer else {
                    return Err(Error::Protocol("data received without a sender address"));
                };
                v.insert(Partial {
                    data: Vec::new(),
                    size: 0,
                    too_large: false,
                    peer,
                    info,
                })
            }
        };
        entry.size = entry.size.saturating_add(len);
        if !entry.too_large {
            if entry.size > max {
                entry.too_large = true;
                entry.data = Vec::new();
            } else {
                entry.data.extend_from_slice(piece.bytes);
            }
        }
        if !piece.eor {
            return Ok(None);
        }
        let Some(done) = self.partial.remove(&assoc_id) else {
            return Ok(None);
        };
        if done.too_large {
            return Ok(Some(Incoming::Dropped {
                assoc_id,
                peer: done.peer,
                reason: DropReason::TooLarge {
                    size_so_far: done.size,
                },
            }));
        }
        Ok(Some(message(done.data, assoc_id, done.peer, &done.info)))
    }

    fn push_notification(&mut self, piece: Piece<'_>) -> Result<Option<Incoming>> {
        let cap = self.max_message_size.saturating_add(NOTIFICATION_HEADROOM);
        self.notification_size = self.notification_size.saturating_add(piece.bytes.len());
        let room = cap.saturating_sub(self.notification.len());
        let keep = piece
            .bytes
            .get(..room.min(piece.bytes.len()))
            .unwrap_or(&[]);
        self.notification.extend_from_slice(keep);
        if !piece.eor {
            return Ok(None);
        }
        let bytes = std::mem::take(&mut self.notification);
        self.notification_size = 0;
        let n = Notification::decode(&bytes)?;
        self.forget_ended(&n);
        Ok(Some(Incoming::Notification {
            notification: n,
            peer: piece.peer,
        }))
    }

    /// Discards the unfinished message of an association that ended or whose partial
    /// delivery was aborted, queueing a [`Incoming::Dropped`] for it.
    fn forget_ended(&mut self, n: &Notification) {
        let ended = match n {
            Notification::AssocChange {
                state:
                    AssocChangeState::CommLost
                    | AssocChangeState::Restart
                    | AssocChangeState::ShutdownComp
                    | AssocChangeState::CantStrAssoc,
                assoc_id,
                ..
            } => Some(*assoc_id),
            // SCTP_PARTIAL_DELIVERY_ABORTED.
            Notification::PartialDelivery {
                indication: 0,
                assoc_id,
                ..
            } => Some(*assoc_id),
            _ => None,
        };
        let Some(assoc_id) = ended else { return };
        if let Some(p) = self.partial.remove(&assoc_id) {
            let reason = if p.too_large {
                DropReason::TooLarge {
                    size_so_far: p.size,
                }
            } else {
                DropReason::Incomplete {
                    size_so_far: p.size,
                }
            };
            self.ready.push_back(Incoming::Dropped {
                assoc_id,
                peer: p.peer,
                reason,
            });
        }
    }
}

fn message(data: Vec<u8>, assoc_id: AssocId, peer: SocketAddr, info: &RcvInfo) -> Incoming {
    Incoming::Message {
        data,
        assoc_id,
        peer,
        stream: info.stream,
        ppid: info.ppid,
        unordered: info.unordered(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        "127.0.0.1:5060".parse().unwrap()
    }

    fn info(assoc: u32) -> RcvInfo {
        RcvInfo {
            stream: 2,
            ppid: 39,
            assoc_id: assoc,
            ..Default::default()
        }
    }

    fn data<'a>(bytes: &'a [u8], assoc: u32, eor: bool) -> Piece<'a> {
        Piece {
            bytes,
            eor,
            notification: false,
            peer: Some(peer()),
            info: Some(info(assoc)),
        }
    }

    fn notif(bytes: &[u8], eor: bool) -> Piece<'_> {
        Piece {
            bytes,
            eor,
            notification: true,
            peer: None,
            info: None,
        }
    }

    fn assoc_change(state: u16, assoc: i32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&0x8001u16.to_ne_bytes());
        b.extend_from_slice(&0u16.to_ne_bytes());
        b.extend_from_slice(&20u32.to_ne_bytes());
        for v in [state, 0, 1, 1] {
            b.extend_from_slice(&v.to_ne_bytes());
        }
        b.extend_from_slice(&assoc.to_ne_bytes());
        b
    }

    #[test]
    fn whole_message() {
        let mut r = Reassembler::new(100);
        let got = r.push(data(b"hello", 3, true)).unwrap().unwrap();
        assert_eq!(
            got,
            Incoming::Message {
                data: b"hello".to_vec(),
                assoc_id: AssocId(3),
                peer: peer(),
                stream: 2,
                ppid: 39,
                unordered: false,
            }
        );
    }

    #[test]
    fn pieces_are_joined_per_association() {
        let mut r = Reassembler::new(100);
        assert_eq!(r.push(data(b"ab", 3, false)).unwrap(), None);
        assert_eq!(r.push(data(b"XY", 4, false)).unwrap(), None);
        assert_eq!(r.push(data(b"cd", 3, false)).unwrap(), None);
        match r.push(data(b"e", 3, true)).unwrap().unwrap() {
            Incoming::Message { data, assoc_id, .. } => {
                assert_eq!(data, b"abcde");
                assert_eq!(assoc_id, AssocId(3));
            }
            other => panic!("{other:?}"),
        }
        match r.push(data(b"Z", 4, true)).unwrap().unwrap() {
            Incoming::Message { data, .. } => assert_eq!(data, b"XYZ"),
            other => panic!("{other:?}"),
        }
        assert!(!r.in_progress(AssocId(3)));
    }

    #[test]
    fn exactly_the_bound_is_accepted() {
        let mut r = Reassembler::new(4);
        assert_eq!(r.push(data(b"ab", 3, false)).unwrap(), None);
        match r.push(data(b"cd", 3, true)).unwrap().unwrap() {
            Incoming::Message { data, .. } => assert_eq!(data, b"abcd"),
            other => panic!("{other:?}"),
        }
        match r.push(data(b"abcd", 3, true)).unwrap().unwrap() {
            Incoming::Message { data, .. } => assert_eq!(data, b"abcd"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn too_large_is_read_to_the_end_and_dropped() {
        let mut r = Reassembler::new(4);
        assert_eq!(r.push(data(b"abc", 3, false)).unwrap(), None);
        assert_eq!(r.push(data(b"def", 3, false)).unwrap(), None);
        assert_eq!(r.push(data(b"ghi", 3, false)).unwrap(), None);
        assert_eq!(
            r.push(data(b"j", 3, true)).unwrap(),
            Some(Incoming::Dropped {
                assoc_id: AssocId(3),
                peer: peer(),
                reason: DropReason::TooLarge { size_so_far: 10 },
            })
        );
        // The next message is fine.
        assert!(matches!(
            r.push(data(b"ok", 3, true)).unwrap(),
            Some(Incoming::Message { .. })
        ));
        // Too large in a single read.
        assert_eq!(
            r.push(data(b"12345", 3, true)).unwrap(),
            Some(Incoming::Dropped {
                assoc_id: AssocId(3),
                peer: peer(),
                reason: DropReason::TooLarge { size_so_far: 5 },
            })
        );
    }

    #[test]
    fn association_loss_drops_the_unfinished_message() {
        let mut r = Reassembler::new(100);
        assert_eq!(r.push(data(b"abc", 7, false)).unwrap(), None);
        let n = r.push(notif(&assoc_change(1, 7), true)).unwrap().unwrap();
        assert!(matches!(
            n,
            Incoming::Notification {
                notification: Notification::AssocChange {
                    state: AssocChangeState::CommLost,
                    ..
                },
                ..
            }
        ));
        assert_eq!(
            r.pop_ready(),
            Some(Incoming::Dropped {
                assoc_id: AssocId(7),
                peer: peer(),
                reason: DropReason::Incomplete { size_so_far: 3 },
            })
        );
        assert_eq!(r.pop_ready(), None);
        // COMM_UP of another association leaves others alone.
        assert_eq!(r.push(data(b"x", 8, false)).unwrap(), None);
        r.push(notif(&assoc_change(0, 9), true)).unwrap().unwrap();
        assert_eq!(r.pop_ready(), None);
        assert!(r.in_progress(AssocId(8)));
    }

    #[test]
    fn notifications_in_pieces() {
        let mut r = Reassembler::new(100);
        let b = assoc_change(0, 5);
        assert_eq!(r.push(notif(&b[..7], false)).unwrap(), None);
        assert_eq!(r.push(notif(&b[7..15], false)).unwrap(), None);
        let got = r.push(notif(&b[15..], true)).unwrap().unwrap();
        assert_eq!(
            got,
            Incoming::Notification {
                notification: Notification::AssocChange {
                    state: AssocChangeState::CommUp,
                    error: 0,
                    outbound_streams: 1,
                    inbound_streams: 1,
                    assoc_id: AssocId(5),
                },
                peer: None,
            }
        );
    }

    #[test]
    fn oversized_send_failed_is_cut_not_lost() {
        let mut r = Reassembler::new(16);
        let payload = vec![7u8; 2000];
        let mut b = Vec::new();
        b.extend_from_slice(&0x800du16.to_ne_bytes());
        b.extend_from_slice(&0u16.to_ne_bytes());
        b.extend_from_slice(&(32 + payload.len() as u32).to_ne_bytes());
        b.extend_from_slice(&[0u8; 20]);
        b.extend_from_slice(&11i32.to_ne_bytes());
        b.extend_from_slice(&payload);
        for chunk in b.chunks(300) {
            let last = chunk.as_ptr_range().end == b.as_ptr_range().end;
            let got = r.push(notif(chunk, last)).unwrap();
            if last {
                match got.unwrap() {
                    Incoming::Notification {
                        notification:
                            Notification::SendFailed {
                                payload,
                                payload_len,
                                assoc_id,
                                ..
                            },
                        ..
                    } => {
                        assert_eq!(assoc_id, AssocId(11));
                        assert_eq!(payload_len, 2000);
                        assert_eq!(payload.len(), 16 + NOTIFICATION_HEADROOM - 32);
                    }
                    other => panic!("{other:?}"),
                }
            } else {
                assert_eq!(got, None);
            }
        }
    }

    #[test]
    fn bad_input_is_an_error_and_state_recovers() {
        let mut r = Reassembler::new(100);
        let mut no_info = data(b"x", 3, true);
        no_info.info = None;
        assert!(matches!(r.push(no_info), Err(Error::Protocol(_))));
        let mut no_peer = data(b"x", 3, false);
        no_peer.peer = None;
        assert!(matches!(r.push(no_peer), Err(Error::Protocol(_))));
        assert!(matches!(
            r.push(notif(&[1, 2, 3], true)),
            Err(Error::Notification(_))
        ));
        // Still works afterwards.
        assert!(matches!(
            r.push(data(b"fine", 3, true)).unwrap(),
            Some(Incoming::Message { .. })
        ));
        assert!(matches!(
            r.push(notif(&assoc_change(0, 3), true)).unwrap(),
            Some(Incoming::Notification { .. })
        ));
    }
}
