//! Whole-message reassembly of what `recvmsg` returns in pieces.
//!
//! A read without `MSG_EOR` is only part of a message (the read buffer was smaller than the
//! message, or the kernel started partial delivery). This module keeps the pieces per
//! association until `MSG_EOR`, bounded three ways:
//!
//! - per message by the configured maximum message size: past it the rest of the message is
//!   read and thrown away and a [`Incoming::Dropped`] ([`DropReason::TooLarge`]) is reported;
//! - in age: [`Reassembler::expire`] gives up every message unfinished for longer than the
//!   age limit ([`DropReason::Expired`]): a peer that withholds the end of a message must not
//!   hold memory (nor, in the kernel, its association's partial delivery) for ever;
//! - in total: the bytes held for all unfinished messages of the socket never exceed a cap;
//!   the message whose piece would cross it is given up ([`DropReason::OverBudget`]), so that
//!   many associations each just under the size bound cannot add up.
//!
//! A message given up before its end is *discarded*: its bytes are freed at once, and what
//! still arrives of it is read and thrown away without a second report, until its end or its
//! association's end (the endpoint aborts such an association).
//!
//! Notifications are reassembled the same way (with no association id until decoded), and a
//! notification that ends an association (or aborts a partial delivery) discards that
//! association's unfinished message, reported as dropped.
//!
//! Pure: it never reads the socket or the clock itself (time is an argument), so it is tested
//! without a kernel.

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    time::{Duration, Instant},
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

/// What happens to the pieces of an unfinished data message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// Kept in `data`.
    Data,
    /// Over the size bound: counted, not kept; reported at its end.
    TooLarge,
    /// Given up (expired, over the total cap) and already reported: read and thrown away
    /// until its end, silently.
    Discard,
}

/// An unfinished data message.
#[derive(Debug)]
struct Partial {
    data: Vec<u8>,
    size: usize,
    keep: Keep,
    /// When its first piece arrived.
    since: Instant,
    peer: SocketAddr,
    info: RcvInfo,
}

/// Reassembly state of one socket.
#[derive(Debug)]
pub(crate) struct Reassembler {
    max_message_size: usize,
    /// Cap on the bytes kept for all unfinished data messages together.
    max_partial_bytes: usize,
    partial: HashMap<AssocId, Partial>,
    /// Sum of the `data` lengths in `partial`.
    partial_bytes: usize,
    notification: Vec<u8>,
    notification_size: usize,
    ready: VecDeque<Incoming>,
}

impl Reassembler {
    /// A reassembler that gives up on data messages larger than `max_message_size` bytes and
    /// keeps at most `max_partial_bytes` of unfinished messages in all.
    pub(crate) fn new(max_message_size: usize, max_partial_bytes: usize) -> Self {
        Self {
            max_message_size,
            max_partial_bytes,
            partial: HashMap::new(),
            partial_bytes: 0,
            notification: Vec::new(),
            notification_size: 0,
            ready: VecDeque::new(),
        }
    }

    /// Bytes held for unfinished data messages.
    pub(crate) fn partial_bytes(&self) -> usize {
        self.partial_bytes
    }

    /// Unfinished data messages (discarded ones still being read included).
    pub(crate) fn partial_messages(&self) -> usize {
        self.partial.len()
    }

    /// Gives up every data message that is unfinished `max_age` after its first piece arrived
    /// (as of `now`): its bytes are freed, the rest of it will be discarded, and a
    /// [`Incoming::Dropped`] with [`DropReason::Expired`] is returned for each, oldest first.
    /// Call it now and then (about once a second); a message is given up at most once.
    pub(crate) fn expire(&mut self, now: Instant, max_age: Duration) -> Vec<Incoming> {
        let mut expired: Vec<(Instant, AssocId)> = self
            .partial
            .iter()
            .filter(|(_, p)| {
                p.keep != Keep::Discard && now.saturating_duration_since(p.since) > max_age
            })
            .map(|(a, p)| (p.since, *a))
            .collect();
        expired.sort_unstable();
        let mut out = Vec::with_capacity(expired.len());
        for (_, assoc_id) in expired {
            if let Some(p) = self.partial.get_mut(&assoc_id) {
                self.partial_bytes = self.partial_bytes.saturating_sub(p.data.len());
                p.data = Vec::new();
                p.keep = Keep::Discard;
                out.push(Incoming::Dropped {
                    assoc_id,
                    peer: p.peer,
                    reason: DropReason::Expired {
                        size_so_far: p.size,
                    },
                });
            }
        }
        out
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

    /// Takes one piece, read at `now`; returns an item when it completes one, or the report of
    /// a message given up because of it.
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`] for data without `SCTP_RCVINFO` or a sender address, and
    /// [`Error::Notification`] for a notification that does not decode. Either concerns that
    /// one message only; the state stays usable.
    pub(crate) fn push(&mut self, piece: Piece<'_>, now: Instant) -> Result<Option<Incoming>> {
        if piece.notification {
            self.push_notification(piece)
        } else {
            self.push_data(piece, now)
        }
    }

    fn push_data(&mut self, piece: Piece<'_>, now: Instant) -> Result<Option<Incoming>> {
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
                    keep: Keep::Data,
                    since: now,
                    peer,
                    info,
                })
            }
        };
        entry.size = entry.size.saturating_add(len);
        let mut over_budget = false;
        if entry.keep == Keep::Data {
            if entry.size > max {
                entry.keep = Keep::TooLarge;
                self.partial_bytes = self.partial_bytes.saturating_sub(entry.data.len());
                entry.data = Vec::new();
            } else if self.partial_bytes.saturating_add(len) > self.max_partial_bytes {
                entry.keep = Keep::Discard;
                self.partial_bytes = self.partial_bytes.saturating_sub(entry.data.len());
                entry.data = Vec::new();
                over_budget = true;
            } else {
                entry.data.extend_from_slice(piece.bytes);
                self.partial_bytes = self.partial_bytes.saturating_add(len);
            }
        }
        let report = over_budget.then_some(Incoming::Dropped {
            assoc_id,
            peer: entry.peer,
            reason: DropReason::OverBudget {
                size_so_far: entry.size,
            },
        });
        if !piece.eor {
            return Ok(report);
        }
        let Some(done) = self.partial.remove(&assoc_id) else {
            return Ok(report);
        };
        self.partial_bytes = self.partial_bytes.saturating_sub(done.data.len());
        match done.keep {
            Keep::Discard => Ok(report),
            Keep::TooLarge => Ok(Some(Incoming::Dropped {
                assoc_id,
                peer: done.peer,
                reason: DropReason::TooLarge {
                    size_so_far: done.size,
                },
            })),
            Keep::Data => Ok(Some(message(done.data, assoc_id, done.peer, &done.info))),
        }
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
            self.partial_bytes = self.partial_bytes.saturating_sub(p.data.len());
            let reason = match p.keep {
                // Reported when it was given up.
                Keep::Discard => return,
                Keep::TooLarge => DropReason::TooLarge {
                    size_so_far: p.size,
                },
                Keep::Data => DropReason::Incomplete {
                    size_so_far: p.size,
                },
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

    /// A fixed start time; later times are offsets from it.
    fn t0() -> Instant {
        static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *T0.get_or_init(Instant::now)
    }

    fn at(secs: u64) -> Instant {
        t0() + Duration::from_secs(secs)
    }

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
        let mut r = Reassembler::new(100, usize::MAX);
        let got = r.push(data(b"hello", 3, true), t0()).unwrap().unwrap();
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
        let mut r = Reassembler::new(100, usize::MAX);
        assert_eq!(r.push(data(b"ab", 3, false), t0()).unwrap(), None);
        assert_eq!(r.push(data(b"XY", 4, false), t0()).unwrap(), None);
        assert_eq!(r.push(data(b"cd", 3, false), t0()).unwrap(), None);
        match r.push(data(b"e", 3, true), t0()).unwrap().unwrap() {
            Incoming::Message { data, assoc_id, .. } => {
                assert_eq!(data, b"abcde");
                assert_eq!(assoc_id, AssocId(3));
            }
            other => panic!("{other:?}"),
        }
        match r.push(data(b"Z", 4, true), t0()).unwrap().unwrap() {
            Incoming::Message { data, .. } => assert_eq!(data, b"XYZ"),
            other => panic!("{other:?}"),
        }
        assert!(!r.in_progress(AssocId(3)));
    }

    #[test]
    fn exactly_the_bound_is_accepted() {
        let mut r = Reassembler::new(4, usize::MAX);
        assert_eq!(r.push(data(b"ab", 3, false), t0()).unwrap(), None);
        match r.push(data(b"cd", 3, true), t0()).unwrap().unwrap() {
            Incoming::Message { data, .. } => assert_eq!(data, b"abcd"),
            other => panic!("{other:?}"),
        }
        match r.push(data(b"abcd", 3, true), t0()).unwrap().unwrap() {
            Incoming::Message { data, .. } => assert_eq!(data, b"abcd"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn too_large_is_read_to_the_end_and_dropped() {
        let mut r = Reassembler::new(4, usize::MAX);
        assert_eq!(r.push(data(b"abc", 3, false), t0()).unwrap(), None);
        assert_eq!(r.push(data(b"def", 3, false), t0()).unwrap(), None);
        assert_eq!(r.push(data(b"ghi", 3, false), t0()).unwrap(), None);
        assert_eq!(
            r.push(data(b"j", 3, true), t0()).unwrap(),
            Some(Incoming::Dropped {
                assoc_id: AssocId(3),
                peer: peer(),
                reason: DropReason::TooLarge { size_so_far: 10 },
            })
        );
        // The next message is fine.
        assert!(matches!(
            r.push(data(b"ok", 3, true), t0()).unwrap(),
            Some(Incoming::Message { .. })
        ));
        // Too large in a single read.
        assert_eq!(
            r.push(data(b"12345", 3, true), t0()).unwrap(),
            Some(Incoming::Dropped {
                assoc_id: AssocId(3),
                peer: peer(),
                reason: DropReason::TooLarge { size_so_far: 5 },
            })
        );
    }

    #[test]
    fn association_loss_drops_the_unfinished_message() {
        let mut r = Reassembler::new(100, usize::MAX);
        assert_eq!(r.push(data(b"abc", 7, false), t0()).unwrap(), None);
        let n = r
            .push(notif(&assoc_change(1, 7), true), t0())
            .unwrap()
            .unwrap();
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
        assert_eq!(r.push(data(b"x", 8, false), t0()).unwrap(), None);
        r.push(notif(&assoc_change(0, 9), true), t0())
            .unwrap()
            .unwrap();
        assert_eq!(r.pop_ready(), None);
        assert!(r.in_progress(AssocId(8)));
    }

    #[test]
    fn notifications_in_pieces() {
        let mut r = Reassembler::new(100, usize::MAX);
        let b = assoc_change(0, 5);
        assert_eq!(r.push(notif(&b[..7], false), t0()).unwrap(), None);
        assert_eq!(r.push(notif(&b[7..15], false), t0()).unwrap(), None);
        let got = r.push(notif(&b[15..], true), t0()).unwrap().unwrap();
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
        let mut r = Reassembler::new(16, usize::MAX);
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
            let got = r.push(notif(chunk, last), t0()).unwrap();
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
        let mut r = Reassembler::new(100, usize::MAX);
        let mut no_info = data(b"x", 3, true);
        no_info.info = None;
        assert!(matches!(r.push(no_info, t0()), Err(Error::Protocol(_))));
        let mut no_peer = data(b"x", 3, false);
        no_peer.peer = None;
        assert!(matches!(r.push(no_peer, t0()), Err(Error::Protocol(_))));
        assert!(matches!(
            r.push(notif(&[1, 2, 3], true), t0()),
            Err(Error::Notification(_))
        ));
        // Still works afterwards.
        assert!(matches!(
            r.push(data(b"fine", 3, true), t0()).unwrap(),
            Some(Incoming::Message { .. })
        ));
        assert!(matches!(
            r.push(notif(&assoc_change(0, 3), true), t0()).unwrap(),
            Some(Incoming::Notification { .. })
        ));
    }

    fn dropped(assoc: u32, reason: DropReason) -> Incoming {
        Incoming::Dropped {
            assoc_id: AssocId(assoc),
            peer: peer(),
            reason,
        }
    }

    fn text(item: Option<Incoming>) -> Vec<u8> {
        match item {
            Some(Incoming::Message { data, .. }) => data,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn interleaved_partials_of_several_associations() {
        let mut r = Reassembler::new(100, 1000);
        // Three associations in partial delivery at once, their pieces interleaved as the
        // kernel hands them up with SCTP_FRAGMENT_INTERLEAVE 1.
        for (a, piece) in [
            (1, "a1"),
            (2, "b1"),
            (3, "c1"),
            (2, "b2"),
            (1, "a2"),
            (3, "c2"),
        ] {
            assert_eq!(
                r.push(data(piece.as_bytes(), a, false), at(0)).unwrap(),
                None
            );
        }
        assert_eq!((r.partial_messages(), r.partial_bytes()), (3, 12));
        // A whole message of a fourth association passes between them.
        assert_eq!(
            text(r.push(data(b"whole", 4, true), at(1)).unwrap()),
            b"whole"
        );
        assert_eq!(
            text(r.push(data(b"b3", 2, true), at(1)).unwrap()),
            b"b1b2b3"
        );
        assert_eq!(
            text(r.push(data(b"a3", 1, true), at(1)).unwrap()),
            b"a1a2a3"
        );
        assert_eq!(r.partial_bytes(), 4);
        assert_eq!(
            text(r.push(data(b"c3", 3, true), at(1)).unwrap()),
            b"c1c2c3"
        );
        assert_eq!((r.partial_messages(), r.partial_bytes()), (0, 0));
    }

    #[test]
    fn a_message_unfinished_past_the_age_limit_is_given_up_once() {
        let limit = Duration::from_secs(5);
        let mut r = Reassembler::new(100, 1000);
        assert_eq!(r.push(data(b"slow-", 1, false), at(0)).unwrap(), None);
        assert_eq!(r.push(data(b"late-", 2, false), at(3)).unwrap(), None);
        // Exactly at the limit it is kept; more pieces do not make it younger.
        assert_eq!(r.push(data(b"more-", 1, false), at(4)).unwrap(), None);
        assert_eq!(r.expire(at(5), limit), vec![]);
        assert_eq!(
            r.expire(at(6), limit),
            vec![dropped(1, DropReason::Expired { size_so_far: 10 })]
        );
        assert_eq!(r.partial_bytes(), 5, "association 1's bytes are freed");
        // Reported once, however long it stays.
        assert_eq!(r.expire(at(7), limit), vec![]);
        // The rest of it, if it comes, is read and thrown away, silently...
        assert_eq!(r.push(data(b"tail", 1, false), at(7)).unwrap(), None);
        assert_eq!(r.push(data(b"end", 1, true), at(7)).unwrap(), None);
        assert_eq!(r.partial_bytes(), 5);
        // ...and the association's next message is whole again.
        assert_eq!(
            text(r.push(data(b"next", 1, true), at(8)).unwrap()),
            b"next"
        );
        // The other one expires on its own clock, several at once oldest first.
        assert_eq!(r.push(data(b"x", 7, false), at(4)).unwrap(), None);
        assert_eq!(
            r.expire(at(10), limit),
            vec![
                dropped(2, DropReason::Expired { size_so_far: 5 }),
                dropped(7, DropReason::Expired { size_so_far: 1 }),
            ]
        );
        assert_eq!(r.partial_bytes(), 0);
    }

    #[test]
    fn an_endless_message_over_the_size_bound_still_expires() {
        let mut r = Reassembler::new(4, 1000);
        for t in 0..10 {
            assert_eq!(r.push(data(b"abc", 1, false), at(t)).unwrap(), None);
        }
        assert_eq!(r.partial_bytes(), 0, "nothing kept past the size bound");
        assert_eq!(
            r.expire(at(10), Duration::from_secs(5)),
            vec![dropped(1, DropReason::Expired { size_so_far: 30 })]
        );
        // Its end, if it comes, is not reported a second time as too large.
        assert_eq!(r.push(data(b"z", 1, true), at(11)).unwrap(), None);
    }

    #[test]
    fn the_piece_that_crosses_the_total_cap_gives_up_its_message() {
        let mut r = Reassembler::new(100, 10);
        assert_eq!(r.push(data(b"aaaa", 1, false), at(0)).unwrap(), None);
        assert_eq!(r.push(data(b"bbbb", 2, false), at(0)).unwrap(), None);
        // 8 held; association 1's next 4 bytes would make 12.
        assert_eq!(
            r.push(data(b"aaaa", 1, false), at(1)).unwrap(),
            Some(dropped(1, DropReason::OverBudget { size_so_far: 8 }))
        );
        assert_eq!(r.partial_bytes(), 4, "only association 2's bytes stay");
        // Association 2 is unaffected and may use the room.
        assert_eq!(r.push(data(b"bbbb", 2, false), at(1)).unwrap(), None);
        assert_eq!(
            text(r.push(data(b"bb", 2, true), at(1)).unwrap()),
            b"bbbbbbbbbb"
        );
        // Association 1's rest is discarded silently, its end too; it does not expire later.
        assert_eq!(r.push(data(b"aaaa", 1, false), at(2)).unwrap(), None);
        assert_eq!(r.expire(at(60), Duration::from_secs(5)), vec![]);
        assert_eq!(r.push(data(b"a", 1, true), at(60)).unwrap(), None);
        assert_eq!((r.partial_messages(), r.partial_bytes()), (0, 0));
        // A first piece over the cap on its own, ending in the same read: reported once.
        assert_eq!(
            r.push(data(b"0123456789x", 3, false), at(61)).unwrap(),
            Some(dropped(3, DropReason::OverBudget { size_so_far: 11 }))
        );
        assert_eq!(r.push(data(b"!", 3, true), at(61)).unwrap(), None);
        assert_eq!(r.partial_messages(), 0);
    }

    #[test]
    fn a_given_up_message_is_not_reported_again_when_its_association_ends() {
        let mut r = Reassembler::new(100, 1000);
        assert_eq!(r.push(data(b"abc", 7, false), at(0)).unwrap(), None);
        assert_eq!(r.expire(at(9), Duration::from_secs(5)).len(), 1);
        // The endpoint aborts it: COMM_LOST.
        assert!(matches!(
            r.push(notif(&assoc_change(1, 7), true), at(9)).unwrap(),
            Some(Incoming::Notification { .. })
        ));
        assert_eq!(r.pop_ready(), None);
        assert_eq!(r.partial_messages(), 0);
    }
}
