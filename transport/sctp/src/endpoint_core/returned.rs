//! Puts the messages the kernel hands back in SEND_FAILED events together again, and the
//! SCTP context the endpoint gives each message ([`Context`]: a tag naming the message and
//! its remaining retry budget).
//!
//! Linux raises one `SCTP_SEND_FAILED_EVENT` per DATA chunk of a failed message
//! (`sctp_datamsg_destroy` in `net/sctp/chunk.c`), each carrying that chunk's data, the
//! message's context, and the chunk's flags in `snd_flags`
//! (`sctp_ulpevent_make_send_failed_event` in `net/sctp/ulpevent.c`, Linux 5.5 and later):
//! B (`SCTP_DATA_FIRST_FRAG`, 0x02) on the first fragment, E (`SCTP_DATA_LAST_FRAG`, 0x01) on
//! the last, both on a message that was not fragmented. The events of one message are queued
//! in one go under the socket lock, first fragment first, so they arrive one after the other
//! on the socket: anything else arriving on that socket before the E fragment means an event
//! was lost (the kernel allocates them with `GFP_ATOMIC`) and the message cannot be rebuilt.
//!
//! [`Returned`] follows those runs, one per listener, and yields each failed message once:
//! whole (its data, for a resend) when every fragment arrived in order, uncut and within the
//! size bound, else as a failure to count. Pure: no sockets, no clock; it never decides what
//! to do with a message, the endpoint core does.

use std::net::SocketAddr;

use crate::{AssocId, notification::SendFailedStatus};

/// `SCTP_DATA_FIRST_FRAG` in a DATA chunk's flags.
const FIRST_FRAG: u16 = 0x02;
/// `SCTP_DATA_LAST_FRAG`.
const LAST_FRAG: u16 = 0x01;

/// The endpoint's SCTP context of a message: `tag` names the message (24 bits, so that the
/// fragments of two messages with the same budget are told apart), `budget` is the number of
/// resends it has left (`sctp_send_retries`, at most 9, kept in the low 8 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    /// The message's tag (only the low 24 bits are kept).
    pub tag: u32,
    /// Resends left.
    pub budget: u32,
}

impl Context {
    const BUDGET_BITS: u32 = 8;
    const BUDGET_MASK: u32 = (1 << Self::BUDGET_BITS) - 1;

    /// The `snd_context` value.
    pub fn to_raw(self) -> u32 {
        (self.tag << Self::BUDGET_BITS) | self.budget.min(Self::BUDGET_MASK)
    }

    /// Reads a `snd_context` value back.
    pub fn from_raw(raw: u32) -> Context {
        Context {
            tag: raw >> Self::BUDGET_BITS,
            budget: raw & Self::BUDGET_MASK,
        }
    }
}

/// One SEND_FAILED event, as [`Returned::push`] takes it.
#[derive(Debug, Clone, Copy)]
pub struct FailedChunk<'a> {
    /// The association it failed on.
    pub assoc: AssocId,
    /// The destination, when known.
    pub dest: Option<SocketAddr>,
    /// `ssfe_flags`.
    pub status: SendFailedStatus,
    /// `ssfe_error`.
    pub error: u32,
    /// `snd_flags`: the DATA chunk's flags.
    pub chunk_flags: u16,
    /// `snd_context`.
    pub context: u32,
    /// The chunk's data as received.
    pub payload: &'a [u8],
    /// The chunk's data length as the kernel declared it.
    pub payload_len: usize,
}

/// A message the kernel gave up on, put back together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnedMessage {
    /// The association it failed on.
    pub assoc: AssocId,
    /// Its destination, when known.
    pub dest: Option<SocketAddr>,
    /// Its context (tag and budget left).
    pub context: Context,
    /// The whole message, when every fragment came back in order and uncut; `None` when it
    /// cannot be rebuilt (a fragment missing, cut short, or the message over the bound).
    pub data: Option<Vec<u8>>,
    /// Its size as far as the kernel declared it.
    pub len: usize,
    /// The first non-zero `ssfe_error` of its fragments (0 = abandoned, e.g. expired).
    pub error: u32,
    /// Whether some of it had been transmitted.
    pub partly_sent: bool,
}

/// A message whose fragments are still arriving.
#[derive(Debug)]
struct Run {
    assoc: AssocId,
    dest: Option<SocketAddr>,
    context: u32,
    data: Vec<u8>,
    len: usize,
    error: u32,
    partly_sent: bool,
    /// Began with a B fragment and nothing is missing or cut so far.
    whole: bool,
}

impl Run {
    fn start(c: &FailedChunk<'_>, max: usize) -> Run {
        let mut run = Run {
            assoc: c.assoc,
            dest: c.dest,
            context: c.context,
            data: Vec::new(),
            len: 0,
            error: 0,
            partly_sent: false,
            whole: c.chunk_flags & FIRST_FRAG != 0,
        };
        run.add(c, max);
        run
    }

    fn continues(&self, c: &FailedChunk<'_>) -> bool {
        c.chunk_flags & FIRST_FRAG == 0 && c.assoc == self.assoc && c.context == self.context
    }

    fn add(&mut self, c: &FailedChunk<'_>, max: usize) {
        self.len = self.len.saturating_add(c.payload_len);
        if self.error == 0 {
            self.error = c.error;
        }
        self.partly_sent |= c.status == SendFailedStatus::Sent;
        if self.dest.is_none() {
            self.dest = c.dest;
        }
        let cut = c.payload.len() != c.payload_len || c.payload.is_empty();
        if cut || self.len > max {
            self.whole = false;
        }
        if self.whole {
            self.data.extend_from_slice(c.payload);
        } else {
            self.data = Vec::new();
        }
    }

    fn finish(self) -> ReturnedMessage {
        ReturnedMessage {
            assoc: self.assoc,
            dest: self.dest,
            context: Context::from_raw(self.context),
            data: self.whole.then_some(self.data),
            len: self.len,
            error: self.error,
            partly_sent: self.partly_sent,
        }
    }
}

/// The runs of returned fragments, one per listener (see the module doc).
#[derive(Debug)]
pub struct Returned {
    runs: Vec<Option<Run>>,
    max_message_size: usize,
}

impl Returned {
    /// For `listeners` sockets; messages larger than `max_message_size` are not rebuilt.
    pub fn new(listeners: usize, max_message_size: usize) -> Returned {
        Returned {
            runs: (0..listeners).map(|_| None).collect(),
            max_message_size,
        }
    }

    /// One SEND_FAILED event on listener `socket`: returns the messages it completes (none,
    /// one, or two when it also shows that the previous run was cut short).
    pub fn push(&mut self, socket: usize, chunk: &FailedChunk<'_>) -> Vec<ReturnedMessage> {
        let max = self.max_message_size;
        let mut done = Vec::new();
        let Some(slot) = self.runs.get_mut(socket) else {
            // Unknown listener: nothing to join it with.
            done.push(Run::start(chunk, 0).finish_cut());
            return done;
        };
        let run = match slot.take() {
            Some(mut run) if run.continues(chunk) => {
                run.add(chunk, max);
                run
            }
            other => {
                if let Some(old) = other {
                    done.push(old.finish_cut());
                }
                Run::start(chunk, max)
            }
        };
        if chunk.chunk_flags & LAST_FRAG != 0 {
            done.push(run.finish());
        } else {
            *slot = Some(run);
        }
        done
    }

    /// Something else arrived on listener `socket`: a run still open there lost its end.
    pub fn interrupt(&mut self, socket: usize) -> Option<ReturnedMessage> {
        self.runs
            .get_mut(socket)
            .and_then(Option::take)
            .map(Run::finish_cut)
    }
}

impl Run {
    /// Finished before its E fragment: it cannot be rebuilt.
    fn finish_cut(mut self) -> ReturnedMessage {
        self.whole = false;
        self.data = Vec::new();
        self.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: AssocId = AssocId(4);

    fn dest() -> Option<SocketAddr> {
        Some("10.0.0.1:5060".parse().unwrap())
    }

    fn chunk(flags: u16, context: u32, payload: &[u8]) -> FailedChunk<'_> {
        FailedChunk {
            assoc: A,
            dest: dest(),
            status: SendFailedStatus::Unsent,
            error: 0,
            chunk_flags: flags,
            context,
            payload,
            payload_len: payload.len(),
        }
    }

    fn ctx(tag: u32, budget: u32) -> u32 {
        Context { tag, budget }.to_raw()
    }

    #[test]
    fn context_round_trips_and_keeps_tag_and_budget_apart() {
        for (tag, budget) in [(0, 0), (1, 9), (0x00ff_ffff, 2), (77, 255)] {
            let c = Context { tag, budget };
            assert_eq!(Context::from_raw(c.to_raw()), c);
        }
        // A budget over 8 bits never leaks into the tag; a tag over 24 bits loses its top.
        assert_eq!(
            Context::from_raw(
                Context {
                    tag: 1,
                    budget: 300
                }
                .to_raw()
            ),
            Context {
                tag: 1,
                budget: 255
            }
        );
        assert_eq!(
            Context::from_raw(
                Context {
                    tag: 0x0100_0001,
                    budget: 1
                }
                .to_raw()
            )
            .tag,
            1
        );
    }

    #[test]
    fn an_unfragmented_message_comes_back_whole_at_once() {
        let mut r = Returned::new(1, 100);
        // B|E, plus the unordered bit the kernel also sets.
        let got = r.push(0, &chunk(0x07, ctx(5, 2), b"INVITE"));
        assert_eq!(
            got,
            vec![ReturnedMessage {
                assoc: A,
                dest: dest(),
                context: Context { tag: 5, budget: 2 },
                data: Some(b"INVITE".to_vec()),
                len: 6,
                error: 0,
                partly_sent: false,
            }]
        );
        assert_eq!(r.interrupt(0), None);
    }

    #[test]
    fn fragments_are_joined_in_order_and_yield_one_message() {
        let mut r = Returned::new(1, 100);
        let c = ctx(9, 1);
        assert!(r.push(0, &chunk(0x06, c, b"abc")).is_empty());
        let mut sent_middle = chunk(0x04, c, b"def");
        sent_middle.status = SendFailedStatus::Sent;
        assert!(r.push(0, &sent_middle).is_empty());
        let got = r.push(0, &chunk(0x05, c, b"gh"));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].data.as_deref(), Some(&b"abcdefgh"[..]));
        assert_eq!(got[0].len, 8);
        assert!(got[0].partly_sent, "one fragment had been sent");
        assert_eq!(got[0].context, Context { tag: 9, budget: 1 });
    }

    #[test]
    fn a_message_missing_its_first_fragment_is_one_failure_without_data() {
        let mut r = Returned::new(1, 100);
        let c = ctx(9, 1);
        assert!(r.push(0, &chunk(0x00, c, b"def")).is_empty());
        let got = r.push(0, &chunk(0x01, c, b"gh"));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].data, None);
        assert_eq!(got[0].len, 5);
        // A lone last fragment likewise.
        let got = r.push(0, &chunk(0x01, c, b"gh"));
        assert_eq!((got.len(), got[0].data.clone(), got[0].len), (1, None, 2));
    }

    #[test]
    fn a_run_cut_short_by_another_message_yields_both_once() {
        let mut r = Returned::new(1, 100);
        assert!(r.push(0, &chunk(0x02, ctx(1, 2), b"abc")).is_empty());
        // The next message starts (B) before the first one's E: the first lost its end.
        let got = r.push(0, &chunk(0x03, ctx(2, 2), b"xyz"));
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].context.tag, 1);
        assert_eq!((got[0].data.clone(), got[0].len), (None, 3));
        assert_eq!(got[1].data.as_deref(), Some(&b"xyz"[..]));
    }

    #[test]
    fn a_middle_fragment_of_another_message_or_association_breaks_the_run() {
        let mut r = Returned::new(1, 100);
        assert!(r.push(0, &chunk(0x02, ctx(1, 2), b"abc")).is_empty());
        // Same budget, other tag: another message's fragment.
        let got = r.push(0, &chunk(0x00, ctx(2, 2), b"def"));
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].context.tag, got[0].data.clone()), (1, None));
        let got = r.push(0, &chunk(0x01, ctx(2, 2), b"g"));
        assert_eq!(
            (got[0].context.tag, got[0].data.clone(), got[0].len),
            (2, None, 4)
        );
        // Same context, other association.
        assert!(r.push(0, &chunk(0x02, ctx(3, 2), b"abc")).is_empty());
        let mut other = chunk(0x01, ctx(3, 2), b"d");
        other.assoc = AssocId(99);
        let got = r.push(0, &other);
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|m| m.data.is_none()));
    }

    #[test]
    fn an_interruption_ends_an_open_run_as_a_failure() {
        let mut r = Returned::new(2, 100);
        assert!(r.push(1, &chunk(0x02, ctx(1, 2), b"abc")).is_empty());
        // Another listener's events do not touch it.
        assert!(r.interrupt(0).is_none());
        let got = r.interrupt(1).expect("the open run");
        assert_eq!((got.data, got.len), (None, 3));
        assert!(r.interrupt(1).is_none(), "reported once");
    }

    #[test]
    fn cut_or_oversized_messages_are_not_rebuilt_but_keep_their_declared_size() {
        let mut r = Returned::new(1, 5);
        let got = r.push(0, &chunk(0x03, ctx(1, 1), b"123456"));
        assert_eq!((got[0].data.clone(), got[0].len), (None, 6));
        assert!(r.push(0, &chunk(0x02, ctx(2, 1), b"123")).is_empty());
        let got = r.push(0, &chunk(0x01, ctx(2, 1), b"456"));
        assert_eq!((got[0].data.clone(), got[0].len), (None, 6));
        let mut r = Returned::new(1, 100);
        let mut cut = chunk(0x03, ctx(1, 1), b"12");
        cut.payload_len = 40;
        let got = r.push(0, &cut);
        assert_eq!((got[0].data.clone(), got[0].len), (None, 40));
        let got = r.push(0, &chunk(0x03, ctx(1, 1), b""));
        assert_eq!(got[0].data, None, "an empty message is not resent");
    }

    #[test]
    fn the_first_error_and_the_first_known_destination_are_kept() {
        let mut r = Returned::new(1, 100);
        let mut first = chunk(0x02, ctx(1, 1), b"a");
        first.dest = None;
        assert!(r.push(0, &first).is_empty());
        let mut last = chunk(0x01, ctx(1, 1), b"b");
        last.error = 110;
        let got = r.push(0, &last);
        assert_eq!((got[0].error, got[0].dest), (110, dest()));
    }

    #[test]
    fn an_unknown_listener_yields_a_failure_at_once() {
        let mut r = Returned::new(1, 100);
        let got = r.push(5, &chunk(0x02, ctx(1, 1), b"a"));
        assert_eq!((got.len(), got[0].data.clone()), (1, None));
    }
}
