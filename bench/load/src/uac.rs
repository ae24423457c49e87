//! The UAC as a state machine without sockets: ticks and received messages in, requests to
//! send out ([`Outbox`]), statistics kept per step.
//!
//! Calls live in a table of reusable slots; a response finds its slot from its `Call-ID`
//! ([`decode_call_id`]) and is checked against the slot's sequence number, so a late
//! response to a finished call is counted as unmatched, never applied to the slot's next
//! call. Timers are FIFO queues, one per interval (Timer A/E at `T1 << k`, the transaction
//! timeout, the hold time): every entry in a queue has the same interval, so pushing at
//! `now + interval` keeps each queue sorted and a tick pops only what is due. An entry
//! carries the slot's epoch at the time it was armed; the epoch changes whenever the call
//! moves on, so stale entries are dropped when they come out. No timer per call, no heap.
//!
//! Time is microseconds since the start of the run, passed in (and never allowed to go
//! back).

use std::collections::VecDeque;

use crate::{
    answer::Batch,
    msg::{CallRef, Dialog, Local, Transport, decode_call_id},
    schedule::{Scheduler, Step},
    sip::{Hdr, Head, Method, Response, Start},
    stats::{FailKind, StepStats},
};

/// What the UAC runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// INVITE -> 100/180/200 -> ACK -> (hold) -> BYE -> 200.
    Call,
    /// One OPTIONS transaction -> 200.
    Options,
}

/// Protocol parameters of the UAC.
#[derive(Debug, Clone)]
pub struct UacConfig {
    /// Call or OPTIONS.
    pub scenario: Scenario,
    /// The transport (UDP retransmits, the others do not).
    pub transport: Transport,
    /// RFC 3261 T1 (500 ms); non-INVITE retransmissions are capped at T2 = 8 * T1.
    pub t1_us: u64,
    /// Time a transaction may wait for its final response (Timer B / F: 64 * T1).
    pub timeout_us: u64,
    /// Time between the ACK and the BYE.
    pub hold_us: u64,
    /// Calls open at once at most; a due call beyond it is not started.
    pub max_outstanding: usize,
}

/// Counters that belong to no transaction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UacCounters {
    /// Messages handed to the transport.
    pub sent: u64,
    /// Messages received.
    pub received: u64,
    /// Responses for no open transaction (late after a timeout, or foreign).
    pub unmatched: u64,
    /// Received messages that could not be read and named no open call.
    pub bad_messages: u64,
    /// Requests received (a UAC expects only responses).
    pub unexpected_requests: u64,
    /// Due transactions not started because `max_outstanding` calls were open.
    pub not_started: u64,
}

/// Requests to send: the messages and, for each, its connection and call.
#[derive(Debug, Default)]
pub struct Outbox {
    /// The messages.
    pub batch: Batch,
    /// Connection and call of each message.
    pub meta: Vec<(u32, CallRef)>,
}

impl Outbox {
    /// Empties the outbox, keeping its memory.
    pub fn clear(&mut self) {
        self.batch.clear();
        self.meta.clear();
    }

    /// The messages with their connection and call.
    pub fn iter(&self) -> impl Iterator<Item = (u32, CallRef, &[u8])> {
        self.meta
            .iter()
            .zip(self.batch.iter())
            .map(|(&(conn, call), m)| (conn, call, m))
    }

    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Free,
    /// INVITE sent; `provisional` once a 1xx came (no more Timer A).
    Invite {
        provisional: bool,
    },
    /// 200 received and ACKed, BYE not sent yet.
    Hold,
    Bye,
    Options,
}

type Span = (u32, u32);

#[derive(Debug)]
struct Slot {
    n: u64,
    conn: u32,
    step: u32,
    phase: Phase,
    epoch: u32,
    started_us: u64,
    /// To value, remote target, route (in `dialog`).
    dialog: Vec<u8>,
    to: Span,
    target: Option<Span>,
    route: Span,
}

impl Slot {
    fn call(&self, slot: u32) -> CallRef {
        CallRef { n: self.n, slot }
    }

    fn span(&self, s: Span) -> &[u8] {
        self.dialog
            .get(s.0 as usize..s.1 as usize)
            .unwrap_or_default()
    }

    fn dialog(&self) -> Dialog<'_> {
        Dialog {
            to: self.span(self.to),
            remote_target: self.target.map(|t| self.span(t)),
            route: self.span(self.route),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Timer {
    at_us: u64,
    slot: u32,
    n: u64,
    epoch: u32,
}

/// Retransmission intervals kept: T1 << 0 ..= T1 << 15.
const RETRANS_QUEUES: usize = 16;

/// The UAC.
#[derive(Debug)]
pub struct Uac {
    cfg: UacConfig,
    locals: Vec<Local>,
    alive: Vec<bool>,
    sched: Scheduler,
    stats: Vec<StepStats>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    outstanding: usize,
    next_n: u64,
    next_conn: usize,
    retrans: Vec<VecDeque<Timer>>,
    timeouts: VecDeque<Timer>,
    holds: VecDeque<Timer>,
    now_us: u64,
    counters: UacCounters,
}

impl Uac {
    /// A UAC sending on the connections described by `locals` (at least one), following the
    /// schedule `steps`.
    pub fn new(cfg: UacConfig, locals: Vec<Local>, steps: Vec<Step>) -> Self {
        let stats = steps
            .iter()
            .map(|s| StepStats::new(s.rate, s.len_us as f64 / 1e6, s.offered))
            .collect();
        Self {
            alive: vec![true; locals.len()],
            locals,
            sched: Scheduler::new(steps),
            stats,
            slots: Vec::new(),
            free: Vec::new(),
            outstanding: 0,
            next_n: 0,
            next_conn: 0,
            retrans: (0..RETRANS_QUEUES).map(|_| VecDeque::new()).collect(),
            timeouts: VecDeque::new(),
            holds: VecDeque::new(),
            now_us: 0,
            counters: UacCounters::default(),
            cfg,
        }
    }

    /// Per-step statistics.
    pub fn stats(&self) -> &[StepStats] {
        &self.stats
    }

    /// Counters outside transactions.
    pub fn counters(&self) -> UacCounters {
        self.counters
    }

    /// Transactions open.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// Whether the schedule is over and no transaction is open.
    pub fn done(&self, now_us: u64) -> bool {
        self.outstanding == 0 && self.sched.finished(now_us.max(self.now_us))
    }

    /// The end of the last step, µs.
    pub fn schedule_end_us(&self) -> u64 {
        self.sched.end_us()
    }

    fn clock(&mut self, now_us: u64) -> u64 {
        self.now_us = self.now_us.max(now_us);
        self.now_us
    }

    /// Fires the timers that are due and starts the transactions that are due.
    pub fn tick(&mut self, now_us: u64, out: &mut Outbox) {
        let now = self.clock(now_us);
        self.fire_retransmissions(now, out);
        self.fire_timeouts(now);
        self.fire_holds(now, out);
        while let Some(due) = self.sched.next_due(now) {
            self.start(now, due.step, now - due.due_us, out);
        }
    }

    /// The connection `conn` is gone: no new transaction goes to it.
    pub fn conn_closed(&mut self, conn: u32) {
        if let Some(a) = self.alive.get_mut(conn as usize) {
            *a = false;
        }
    }

    /// The transport could not send a message of `call`: the call fails with `send_error`.
    pub fn send_failed(&mut self, call: CallRef, now_us: u64) {
        let now = self.clock(now_us);
        if self.live(call) {
            self.finish(call.slot, now, Some(FailKind::SendError));
        }
    }

    fn live(&self, c: CallRef) -> bool {
        self.slots
            .get(c.slot as usize)
            .is_some_and(|s| s.n == c.n && s.phase != Phase::Free)
    }

    fn pick_conn(&mut self) -> Option<u32> {
        let n = self.alive.len();
        for i in 0..n {
            let c = (self.next_conn + i) % n;
            if self.alive.get(c).copied().unwrap_or(false) {
                self.next_conn = c + 1;
                return u32::try_from(c).ok();
            }
        }
        None
    }

    fn push_msg(&mut self, out: &mut Outbox, conn: u32, call: CallRef) {
        out.batch.end_message();
        out.meta.push((conn, call));
        self.counters.sent += 1;
    }

    /// Writes the current request of slot `i` (first send or retransmission).
    fn write_request(&mut self, i: u32, out: &mut Outbox) {
        let Some(s) = self.slots.get(i as usize) else {
            return;
        };
        let Some(local) = self.locals.get(s.conn as usize) else {
            return;
        };
        let c = s.call(i);
        match s.phase {
            Phase::Invite { .. } => local.invite(&mut out.batch.buf, c),
            Phase::Bye => local.bye(&mut out.batch.buf, c, &s.dialog()),
            Phase::Options => local.options(&mut out.batch.buf, c),
            Phase::Hold | Phase::Free => return,
        }
        let conn = s.conn;
        self.push_msg(out, conn, c);
    }

    /// Arms the timers of a request just sent by slot `i`.
    fn arm(&mut self, i: u32, now: u64) {
        let Some(s) = self.slots.get(i as usize) else {
            return;
        };
        let t = Timer {
            at_us: now + self.cfg.timeout_us,
            slot: i,
            n: s.n,
            epoch: s.epoch,
        };
        self.timeouts.push_back(t);
        if !self.cfg.transport.reliable()
            && let Some(q) = self.retrans.first_mut()
        {
            q.push_back(Timer {
                at_us: now + self.cfg.t1_us,
                ..t
            });
        }
    }

    fn start(&mut self, now: u64, step: usize, lag_us: u64, out: &mut Outbox) {
        if self.outstanding >= self.cfg.max_outstanding {
            self.counters.not_started += 1;
            return;
        }
        let Some(st) = self.stats.get_mut(step) else {
            return;
        };
        st.started(lag_us);
        let phase = match self.cfg.scenario {
            Scenario::Call => Phase::Invite { provisional: false },
            Scenario::Options => Phase::Options,
        };
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                let Ok(i) = u32::try_from(self.slots.len()) else {
                    return;
                };
                self.slots.push(Slot {
                    n: 0,
                    conn: 0,
                    step: 0,
                    phase: Phase::Free,
                    epoch: 0,
                    started_us: 0,
                    dialog: Vec::new(),
                    to: (0, 0),
                    target: None,
                    route: (0, 0),
                });
                i
            }
        };
        let n = self.next_n;
        self.next_n += 1;
        self.outstanding += 1;
        let conn = self.pick_conn();
        let Some(s) = self.slots.get_mut(i as usize) else {
            return;
        };
        s.n = n;
        s.step = u32::try_from(step).unwrap_or(u32::MAX);
        s.phase = phase;
        s.epoch = s.epoch.wrapping_add(1);
        s.started_us = now;
        s.dialog.clear();
        match conn {
            Some(conn) => {
                s.conn = conn;
                self.write_request(i, out);
                self.arm(i, now);
            }
            None => self.finish(i, now, Some(FailKind::SendError)),
        }
    }

    /// Ends the transaction of slot `i`: completed (`None`) or failed.
    fn finish(&mut self, i: u32, now: u64, fail: Option<FailKind>) {
        let Some(s) = self.slots.get_mut(i as usize) else {
            return;
        };
        if s.phase == Phase::Free {
            return;
        }
        s.phase = Phase::Free;
        s.epoch = s.epoch.wrapping_add(1);
        self.outstanding -= 1;
        self.free.push(i);
        if let Some(st) = self.stats.get_mut(s.step as usize) {
            match fail {
                None => {
                    st.completed += 1;
                    StepStats::record(&mut st.transaction, now - s.started_us);
                }
                Some(k) => st.fail(k),
            }
        }
    }

    fn current(&self, t: &Timer) -> Option<&Slot> {
        self.slots
            .get(t.slot as usize)
            .filter(|s| s.n == t.n && s.epoch == t.epoch && s.phase != Phase::Free)
    }

    fn fire_retransmissions(&mut self, now: u64, out: &mut Outbox) {
        // T2 = 8 * T1: non-INVITE intervals stop doubling there.
        const T2_SHIFT: usize = 3;
        for k in 0..RETRANS_QUEUES {
            while let Some(t) = self
                .retrans
                .get_mut(k)
                .and_then(|q| q.front().copied().filter(|t| t.at_us <= now))
            {
                if let Some(q) = self.retrans.get_mut(k) {
                    q.pop_front();
                }
                let Some(s) = self.current(&t) else { continue };
                let next = match s.phase {
                    Phase::Invite { provisional: false } => k + 1,
                    Phase::Bye | Phase::Options => (k + 1).min(T2_SHIFT),
                    _ => continue,
                };
                let step = s.step as usize;
                self.write_request(t.slot, out);
                if let Some(st) = self.stats.get_mut(step) {
                    st.retransmissions += 1;
                }
                let interval = self.cfg.t1_us.saturating_mul(1 << next);
                if interval < self.cfg.timeout_us
                    && let Some(q) = self.retrans.get_mut(next)
                {
                    q.push_back(Timer {
                        at_us: now + interval,
                        ..t
                    });
                }
            }
        }
    }

    fn fire_timeouts(&mut self, now: u64) {
        while let Some(t) = self.timeouts.front().copied().filter(|t| t.at_us <= now) {
            self.timeouts.pop_front();
            if self.current(&t).is_some() {
                self.finish(t.slot, now, Some(FailKind::Timeout));
            }
        }
    }

    fn fire_holds(&mut self, now: u64, out: &mut Outbox) {
        while let Some(t) = self.holds.front().copied().filter(|t| t.at_us <= now) {
            self.holds.pop_front();
            if self.current(&t).is_some_and(|s| s.phase == Phase::Hold) {
                self.send_bye(t.slot, now, out);
            }
        }
    }

    fn send_bye(&mut self, i: u32, now: u64, out: &mut Outbox) {
        if let Some(s) = self.slots.get_mut(i as usize) {
            s.phase = Phase::Bye;
            s.epoch = s.epoch.wrapping_add(1);
        }
        self.write_request(i, out);
        self.arm(i, now);
    }

    /// Ends every open transaction as a timeout (the run is over).
    pub fn abandon_all(&mut self, now_us: u64) {
        let now = self.clock(now_us);
        for i in 0..self.slots.len() {
            if let Ok(i) = u32::try_from(i) {
                self.finish(i, now, Some(FailKind::Timeout));
            }
        }
    }

    /// Handles one received message (a whole datagram, SCTP message or framed stream
    /// message).
    pub fn on_message(&mut self, now_us: u64, msg: &[u8], out: &mut Outbox) {
        let now = self.clock(now_us);
        self.counters.received += 1;
        let r = match Response::parse(msg) {
            Ok(r) => r,
            Err(_) => return self.on_unreadable(now, msg),
        };
        let Some(c) = decode_call_id(r.call_id, self.run()).filter(|&c| self.live(c)) else {
            self.counters.unmatched += 1;
            return;
        };
        let Some(s) = self.slots.get(c.slot as usize) else {
            return;
        };
        let (phase, step) = (s.phase, s.step as usize);
        let final_ = r.status >= 200;
        let ok = r.status / 100 == 2;
        match (phase, r.method, r.cseq) {
            (Phase::Invite { provisional }, Method::Invite, 1) => {
                if !final_ {
                    if !provisional && let Some(s) = self.slots.get_mut(c.slot as usize) {
                        s.phase = Phase::Invite { provisional: true };
                    }
                } else if ok {
                    self.on_invite_2xx(c, now, &r, out);
                } else {
                    self.ack_non2xx(c, r.to, out);
                    self.finish(c.slot, now, Some(FailKind::of_status(r.status)));
                }
            }
            (Phase::Hold | Phase::Bye, Method::Invite, 1) if ok => {
                // A retransmitted 2xx: the ACK is sent again (RFC 3261 section 13.2.2.4).
                self.duplicate(step);
                self.ack_2xx(c, out);
            }
            (Phase::Bye, Method::Bye, 2) | (Phase::Options, Method::Options, 1) if final_ => {
                if phase == Phase::Options
                    && let (Some(st), Some(s)) =
                        (self.stats.get_mut(step), self.slots.get(c.slot as usize))
                {
                    StepStats::record(&mut st.setup, now - s.started_us);
                }
                let fail = (!ok).then(|| FailKind::of_status(r.status));
                self.finish(c.slot, now, fail);
            }
            (Phase::Bye, Method::Bye, 2) | (Phase::Options, Method::Options, 1) => {}
            _ => self.duplicate(step),
        }
    }

    fn run(&self) -> u32 {
        self.locals.first().map_or(0, Local::run)
    }

    fn duplicate(&mut self, step: usize) {
        if let Some(st) = self.stats.get_mut(step) {
            st.duplicate_responses += 1;
        }
    }

    /// A message [`Response::parse`] refused: a request, or a response to fail its call
    /// with `bad_response` if its `Call-ID` can still be read.
    fn on_unreadable(&mut self, now: u64, msg: &[u8]) {
        let msg = msg.get(crate::sip::leading_crlf(msg)..).unwrap_or_default();
        let head = Head::parse(msg).ok();
        if let Some(Start::Request { .. }) = head.map(|h| h.start) {
            self.counters.unexpected_requests += 1;
            return;
        }
        let call = head
            .and_then(|h| h.first(Hdr::CallId).ok().flatten())
            .and_then(|h| decode_call_id(h.value, self.run()))
            .filter(|&c| self.live(c));
        match call {
            Some(c) => self.finish(c.slot, now, Some(FailKind::BadResponse)),
            None => self.counters.bad_messages += 1,
        }
    }

    fn on_invite_2xx(&mut self, c: CallRef, now: u64, r: &Response<'_>, out: &mut Outbox) {
        let Some(s) = self.slots.get_mut(c.slot as usize) else {
            return;
        };
        // The dialog: To (with the remote tag), remote target, route set reversed.
        let d = &mut s.dialog;
        d.clear();
        let span = |d: &Vec<u8>, from: usize| -> Span {
            (
                u32::try_from(from).unwrap_or(0),
                u32::try_from(d.len()).unwrap_or(0),
            )
        };
        d.extend_from_slice(r.to);
        s.to = span(d, 0);
        s.target = r.contact_uri().map(|u| {
            let from = d.len();
            d.extend_from_slice(u);
            span(d, from)
        });
        let mut rr: [&[u8]; 16] = [&[]; 16];
        let mut n = 0;
        for (slot, v) in rr.iter_mut().zip(r.record_routes()) {
            *slot = v;
            n += 1;
        }
        let from = d.len();
        for (k, v) in rr.iter().take(n).rev().enumerate() {
            if k > 0 {
                d.extend_from_slice(b", ");
            }
            d.extend_from_slice(v);
        }
        s.route = span(d, from);
        let step = s.step as usize;
        let started = s.started_us;
        if let Some(st) = self.stats.get_mut(step) {
            StepStats::record(&mut st.setup, now - started);
        }
        self.ack_2xx(c, out);
        match self.cfg.hold_us {
            0 => self.send_bye(c.slot, now, out),
            hold => {
                if let Some(s) = self.slots.get_mut(c.slot as usize) {
                    s.phase = Phase::Hold;
                    s.epoch = s.epoch.wrapping_add(1);
                    self.holds.push_back(Timer {
                        at_us: now + hold,
                        slot: c.slot,
                        n: s.n,
                        epoch: s.epoch,
                    });
                }
            }
        }
    }

    fn ack_2xx(&mut self, c: CallRef, out: &mut Outbox) {
        let Some(s) = self.slots.get(c.slot as usize) else {
            return;
        };
        let Some(local) = self.locals.get(s.conn as usize) else {
            return;
        };
        local.ack_2xx(&mut out.batch.buf, c, &s.dialog());
        let conn = s.conn;
        self.push_msg(out, conn, c);
    }

    fn ack_non2xx(&mut self, c: CallRef, to: &[u8], out: &mut Outbox) {
        let Some(s) = self.slots.get(c.slot as usize) else {
            return;
        };
        let Some(local) = self.locals.get(s.conn as usize) else {
            return;
        };
        local.ack_non2xx(&mut out.batch.buf, c, to);
        let conn = s.conn;
        self.push_msg(out, conn, c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::{UasConfig, UasCounters, answer};
    use crate::schedule::steps;

    const MS: u64 = 1000;

    fn uac(scenario: Scenario, transport: Transport, rates: &[f64]) -> Uac {
        let locals = (0..2)
            .map(|k| {
                Local::new(
                    transport,
                    format!("10.0.0.1:{}", 5070 + k).parse().unwrap(),
                    "10.0.0.2:5060".parse().unwrap(),
                    "service",
                    77,
                )
            })
            .collect();
        Uac::new(
            UacConfig {
                scenario,
                transport,
                t1_us: 500 * MS,
                timeout_us: 32_000 * MS,
                hold_us: 0,
                max_outstanding: 1_000_000,
            },
            locals,
            steps(rates, 1.0),
        )
    }

    /// Runs every request in `out` through a UAS, feeding its answers back at `now`.
    fn loopback(u: &mut Uac, uas: &UasConfig, now: u64, out: &mut Outbox) -> usize {
        let mut sent = 0;
        let mut c = UasCounters::default();
        while !out.is_empty() {
            let mut answers = Batch::default();
            for (_, _, m) in out.iter() {
                sent += 1;
                answer(m, uas, &mut c, &mut answers).unwrap();
            }
            out.clear();
            for m in answers.iter() {
                u.on_message(now, m, out);
            }
        }
        sent
    }

    fn uas() -> UasConfig {
        UasConfig::new("10.0.0.3:5080", Transport::Udp)
    }

    #[test]
    fn calls_complete_against_a_uas() {
        let mut u = uac(Scenario::Call, Transport::Udp, &[100.0, 200.0]);
        let mut out = Outbox::default();
        let mut sent = 0;
        for ms in 0..=2000 {
            u.tick(ms * MS, &mut out);
            // Both connections are used.
            if ms == 10 {
                let conns: std::collections::HashSet<u32> = out.meta.iter().map(|m| m.0).collect();
                assert_eq!(conns.len(), 1 + usize::from(out.meta.len() > 1));
            }
            sent += loopback(&mut u, &uas(), ms * MS + 300, &mut out);
        }
        assert!(u.done(2000 * MS));
        let st = u.stats();
        assert_eq!(
            (st[0].offered, st[0].started, st[0].completed),
            (100, 100, 100)
        );
        assert_eq!(
            (st[1].offered, st[1].started, st[1].completed),
            (200, 200, 200)
        );
        assert_eq!(st[0].failed_total() + st[0].retransmissions, 0);
        assert_eq!(st[1].setup.max(), 300);
        assert_eq!(st[1].transaction.len(), 200);
        // INVITE, ACK, BYE per call.
        assert_eq!(sent, 900);
        assert_eq!(u.counters().sent, 900);
        assert_eq!(u.counters().received, 300 * 3);
        assert_eq!(u.counters().unmatched, 0);
        assert_eq!(u.outstanding(), 0);
    }

    #[test]
    fn udp_retransmits_until_timeout() {
        let mut u = uac(Scenario::Call, Transport::Udp, &[1.0]);
        let mut out = Outbox::default();
        let mut invites = 0;
        for ms in 0..=40_000 {
            u.tick(ms * MS, &mut out);
            invites += out.meta.len();
            if !out.is_empty() {
                // Each retransmission is byte-identical to the INVITE.
                let first = out.batch.iter().next().unwrap().to_vec();
                assert!(first.starts_with(b"INVITE "));
            }
            out.clear();
        }
        // Sent at 0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s; timed out at 32 s.
        assert_eq!(invites, 7);
        let st = &u.stats()[0];
        assert_eq!(st.retransmissions, 6);
        assert_eq!(st.failed_of(FailKind::Timeout), 1);
        assert_eq!(st.completed, 0);
        assert!(u.done(40_000 * MS));
    }

    #[test]
    fn a_provisional_stops_timer_a_and_reliable_transports_never_retransmit() {
        let mut u = uac(Scenario::Call, Transport::Udp, &[1.0]);
        let mut out = Outbox::default();
        u.tick(0, &mut out);
        let inv = out.batch.iter().next().unwrap().to_vec();
        let mut cf = uas();
        cf.ignore_invites = false;
        let mut ans = Batch::default();
        answer(&inv, &cf, &mut UasCounters::default(), &mut ans).unwrap();
        out.clear();
        let trying = ans.iter().next().unwrap();
        u.on_message(10 * MS, trying, &mut out);
        assert!(out.is_empty());
        for ms in 11..40_000 {
            u.tick(ms * MS, &mut out);
            assert!(out.is_empty(), "retransmitted at {ms} ms");
        }
        assert_eq!(u.stats()[0].failed_of(FailKind::Timeout), 1);

        let mut u = uac(Scenario::Options, Transport::Sctp, &[1.0]);
        for ms in 0..40_000 {
            u.tick(ms * MS, &mut out);
            if ms > 0 {
                assert!(out.is_empty());
            }
            out.clear();
        }
        assert_eq!(u.stats()[0].retransmissions, 0);
        assert_eq!(u.stats()[0].failed_of(FailKind::Timeout), 1);
    }

    #[test]
    fn non_invite_retransmissions_cap_at_t2() {
        let mut u = uac(Scenario::Options, Transport::Udp, &[1.0]);
        let mut out = Outbox::default();
        let mut at = Vec::new();
        for ms in 0..=32_000 {
            u.tick(ms * MS, &mut out);
            if !out.is_empty() {
                at.push(ms);
            }
            out.clear();
        }
        assert_eq!(
            at,
            [
                0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
            ]
        );
    }

    #[test]
    fn rejections_are_acked_and_counted_by_class() {
        let mut u = uac(Scenario::Call, Transport::Tcp, &[3.0]);
        let mut cf = uas();
        let mut out = Outbox::default();
        for (ms, status) in [(0, 486), (334, 503), (667, 603)] {
            cf.invite_status = status;
            u.tick(ms * MS, &mut out);
            let mut c = UasCounters::default();
            let mut ans = Batch::default();
            for (_, _, m) in out.iter() {
                answer(m, &cf, &mut c, &mut ans).unwrap();
            }
            out.clear();
            for m in ans.iter() {
                u.on_message(ms * MS + 1, m, &mut out);
            }
            // The ACK reuses the INVITE's branch and carries the response's To tag.
            let ack = sipsctp_sip::Message::parse(out.batch.iter().next().unwrap()).unwrap();
            assert_eq!(ack.method().unwrap().as_str(), "ACK");
            assert!(ack.top_via().unwrap().branch.unwrap().ends_with("-i"));
            assert!(ack.to_tag().unwrap().is_some());
            out.clear();
        }
        let st = &u.stats()[0];
        assert_eq!(st.failed_of(FailKind::Status4xx), 1);
        assert_eq!(st.failed_of(FailKind::Status5xx), 1);
        assert_eq!(st.failed_of(FailKind::Status6xx), 1);
        assert_eq!(st.setup.len(), 0);
        assert_eq!(u.outstanding(), 0);
    }

    #[test]
    fn dialog_uses_contact_and_reversed_record_route() {
        let mut u = uac(Scenario::Call, Transport::Udp, &[1.0]);
        let mut out = Outbox::default();
        u.tick(0, &mut out);
        let inv = sipsctp_sip::Message::parse(out.batch.iter().next().unwrap()).unwrap();
        let ok = format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1:5070;branch={}\r\n\
Record-Route: <sip:p1;lr>, <sip:p2;lr>\r\nRecord-Route: <sip:p3;lr>\r\n\
From: x\r\nTo: <sip:service@10.0.0.2:5060>;tag=uas1\r\nCall-ID: {}\r\nCSeq: 1 INVITE\r\n\
Contact: <sip:uas@10.0.0.9:5099>\r\nContent-Length: 0\r\n\r\n",
            inv.top_via().unwrap().branch.unwrap(),
            inv.call_id().unwrap()
        );
        let mut out2 = Outbox::default();
        u.on_message(5 * MS, ok.as_bytes(), &mut out2);
        let msgs: Vec<_> = out2
            .batch
            .iter()
            .map(|m| sipsctp_sip::Message::parse(m).unwrap())
            .collect();
        assert_eq!(msgs.len(), 2);
        for m in &msgs {
            assert_eq!(m.request_uri(), Some("sip:uas@10.0.0.9:5099"));
            let routes: Vec<_> = m.routes().map(|r| r.unwrap().uri.to_owned()).collect();
            assert_eq!(routes, ["sip:p3;lr", "sip:p2;lr", "sip:p1;lr"]);
            assert_eq!(m.to_tag().unwrap(), Some("uas1"));
        }
        assert_eq!(msgs[1].method().unwrap().as_str(), "BYE");
        // The 200 again: ACK again, counted as a duplicate.
        let mut out3 = Outbox::default();
        u.on_message(6 * MS, ok.as_bytes(), &mut out3);
        assert_eq!(out3.meta.len(), 1);
        assert_eq!(u.stats()[0].duplicate_responses, 1);
        let h = &u.stats()[0].setup;
        assert!(h.equivalent(h.max(), 5 * MS));
    }

    #[test]
    fn hold_delays_the_bye() {
        let mut u = uac(Scenario::Call, Transport::Tcp, &[1.0]);
        u.cfg.hold_us = 100 * MS;
        let mut out = Outbox::default();
        u.tick(0, &mut out);
        let mut ans = Batch::default();
        answer(
            out.batch.iter().next().unwrap(),
            &uas(),
            &mut UasCounters::default(),
            &mut ans,
        )
        .unwrap();
        out.clear();
        for m in ans.iter() {
            u.on_message(MS, m, &mut out);
        }
        assert_eq!(out.meta.len(), 1, "only the ACK");
        out.clear();
        u.tick(100 * MS, &mut out);
        assert!(out.is_empty());
        u.tick(101 * MS, &mut out);
        assert!(out.batch.buf.starts_with(b"BYE "));
        let sent = loopback(&mut u, &uas(), 150 * MS, &mut out);
        assert_eq!(sent, 1);
        assert_eq!(u.stats()[0].completed, 1);
        let h = &u.stats()[0].transaction;
        assert!(h.equivalent(h.max(), 150 * MS));
    }

    #[test]
    fn junk_late_and_foreign_messages() {
        let mut u = uac(Scenario::Options, Transport::Udp, &[1.0]);
        let mut out = Outbox::default();
        u.tick(0, &mut out);
        let opt = out.batch.iter().next().unwrap().to_vec();
        out.clear();
        u.on_message(1, b"garbage", &mut out);
        u.on_message(1, &opt, &mut out); // a request
        u.on_message(
            1,
            b"SIP/2.0 200 OK\r\nCall-ID: 1-0-4d\r\nCSeq: 1 OPTIONS\r\nTo: x\r\n\r\n",
            &mut out,
        ); // run 0x4d = 77 but call 1 never started
        u.on_message(
            1,
            b"SIP/2.0 200 OK\r\nCall-ID: 0-0-4e\r\nCSeq: 1 OPTIONS\r\nTo: x\r\n\r\n",
            &mut out,
        ); // another run
        let c = u.counters();
        assert_eq!(
            (c.bad_messages, c.unexpected_requests, c.unmatched),
            (1, 1, 2)
        );
        assert_eq!(u.outstanding(), 1);
        // Readable Call-ID, broken CSeq: the call fails as bad_response.
        u.on_message(
            2,
            b"SIP/2.0 200 OK\r\nCall-ID: 0-0-4d\r\nCSeq: one OPTIONS\r\nTo: x\r\n\r\n",
            &mut out,
        );
        assert_eq!(u.stats()[0].failed_of(FailKind::BadResponse), 1);
        assert_eq!(u.outstanding(), 0);
        // Its real answer arrives late: unmatched.
        let mut ans = Batch::default();
        answer(&opt, &uas(), &mut UasCounters::default(), &mut ans).unwrap();
        u.on_message(3, &ans.buf, &mut out);
        assert_eq!(u.counters().unmatched, 3);
        assert!(out.is_empty());
    }

    #[test]
    fn send_failures_closed_connections_and_the_outstanding_cap() {
        let mut u = uac(Scenario::Options, Transport::Tcp, &[10.0]);
        let mut out = Outbox::default();
        u.tick(0, &mut out);
        let (_, call, _) = out.iter().next().unwrap();
        u.send_failed(call, 1);
        u.send_failed(call, 1); // once only
        assert_eq!(u.stats()[0].failed_of(FailKind::SendError), 1);
        u.conn_closed(0);
        u.conn_closed(1);
        out.clear();
        u.tick(100 * MS, &mut out);
        assert!(out.is_empty());
        assert_eq!(u.stats()[0].failed_of(FailKind::SendError), 2);

        let mut u = uac(Scenario::Options, Transport::Tcp, &[10.0]);
        u.cfg.max_outstanding = 3;
        u.tick(1_000 * MS, &mut out);
        assert_eq!(u.outstanding(), 3);
        assert_eq!(u.counters().not_started, 7);
        assert_eq!(u.stats()[0].started, 3);
        u.abandon_all(1_000 * MS);
        assert_eq!(u.stats()[0].failed_of(FailKind::Timeout), 3);
        assert!(u.done(1_000 * MS));
    }

    #[test]
    fn slots_are_reused_and_lag_is_measured() {
        let mut u = uac(Scenario::Options, Transport::Udp, &[1000.0]);
        let mut out = Outbox::default();
        for ms in (0..=1000).step_by(20) {
            u.tick(ms * MS, &mut out);
            loopback(&mut u, &uas(), ms * MS, &mut out);
        }
        assert!(u.slots.len() <= 21, "{} slots", u.slots.len());
        let st = &u.stats()[0];
        assert_eq!(st.completed, 1000);
        assert_eq!(st.max_start_lag_us, 19 * MS);
        assert_eq!(st.late_starts, 500);
    }
}
