//! The correlator's cost: joined transactions per second on one core, against a pass-through
//! baseline measured in the same run, and the heap it holds at the default caps.
//!
//! - `correlate_realistic`: a recorded-like stream. 4000 calls (INVITE, ACK, BYE: 12 000
//!   transactions) at 333 calls/s over 50 SCTP trunk associations, both legs SCTP, about 2000
//!   transactions lingering at once. Kernel events per association: an RTO update after most
//!   sends (the SACK's RTT sample), a few percent of sends lost and retransmitted (fast, or T3
//!   with its `T3RtxExpired`), heartbeats every 30 s, rarely a path going down and up or an
//!   association restarting. Inputs are fed in time order, each after draining `poll(now)`.
//! - `correlate_worst_case`: the same calls over 4096 associations (the default cap), every
//!   ring filled before the timed part (256 events pushed to each; the global budget of 65 536
//!   events leaves 16 a ring on average) and every send retransmitted, so each
//!   transaction scans two full rings and collects notes on both legs.
//! - `baseline` in each group: the same stream through a pass-through that ignores the kernel
//!   events and releases each transaction after the same linger, without any join. The ratio
//!   correlator/baseline is what correlation costs on top of queueing the transactions.
//! - `correlate_memory`: fills a correlator to its default caps (4096 associations with 512
//!   events pushed to each, within the budget of 65 536 events, 256 pre-id associations x 32
//!   events, 16 384 lingering transactions) and counts the heap it
//!   holds with a counting global allocator (switched on only for that; the throughput
//!   benchmarks run through the plain system allocator). The timed part is the fill itself.
//!
//! Only the feeding is timed: cloning the stream (and, in the worst case, filling the rings)
//! is setup, and dropping what is left is outside the measurement. Run with `cargo xtask bench`
//! (or `cargo bench -p sipsctp-correlate`); the per-transaction figures, ratios and the memory
//! line are printed at the end and written to `criterion/correlate-summary.txt` for xtask's
//! summary.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    collections::VecDeque,
    fmt::Write as _,
    hint::black_box,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    sync::{
        OnceLock,
        atomic::{AtomicBool, AtomicIsize, Ordering::Relaxed},
    },
    time::{Duration, SystemTime},
};

use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group};
use sipsctp_correlate::{
    AssocId, AssocKey, Config, Correlator, Joined, Leg, Outcome, Transaction, Transport, Verdict,
};
use sipsctp_ebpf_events::{
    Hz, SctpEvent,
    event::{
        AssocChangeState, AssocState, EventKind, Jiffies, PathCommand, PathState, RetransmitReason,
        T1Timer,
    },
};

// ---------------------------------------------------------------------------------------------
// Heap counting

/// The system allocator, counting the bytes and blocks requested while [`COUNTING`] is on.
/// Requested sizes: malloc's own per-block overhead is not included (hence the block count).
struct CountingAlloc;

static COUNTING: AtomicBool = AtomicBool::new(false);
static BYTES: AtomicIsize = AtomicIsize::new(0);
static BLOCKS: AtomicIsize = AtomicIsize::new(0);

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn count(bytes: isize, blocks: isize) {
    if COUNTING.load(Relaxed) {
        BYTES.fetch_add(bytes, Relaxed);
        BLOCKS.fetch_add(blocks, Relaxed);
    }
}

// Sizes fit in `isize`: a `Layout`'s size never exceeds `isize::MAX`.
//
// SAFETY: every method passes its arguments unchanged to `System`, which upholds
// `GlobalAlloc`'s contract; the counters only observe the calls.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: our caller upholds `alloc`'s contract (a non-zero-size layout), which is
        // `System.alloc`'s.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as isize, 1);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size() as isize, 1);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: our caller guarantees `ptr` came from this allocator, that is from `System`,
        // with this `layout`.
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as isize), -1);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` and `layout` as in `dealloc`; our caller guarantees `new_size` is
        // non-zero and fits `isize` once aligned, as `System.realloc` requires.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(new_size as isize - layout.size() as isize, 0);
        }
        p
    }
}

/// Builds a value and returns it with the heap (bytes, blocks) it holds once built
/// (temporaries freed during the build cancel out). Single-threaded use only.
fn heap_held<T>(build: impl FnOnce() -> T) -> (T, isize, isize) {
    BYTES.store(0, Relaxed);
    BLOCKS.store(0, Relaxed);
    COUNTING.store(true, Relaxed);
    let value = build();
    COUNTING.store(false, Relaxed);
    (value, BYTES.load(Relaxed), BLOCKS.load(Relaxed))
}

// ---------------------------------------------------------------------------------------------
// The stream

const NETNS: u32 = 4_026_531_840;
const ASSOC_PTR: u64 = 0xffff_8880_1000_0000;
const PATH_PTR: u64 = 0xffff_8880_2000_0000;
/// Calls per stream: 3 transactions each.
const CALLS: u32 = 4000;
/// Calls per second (1000 transactions/s).
const CALL_RATE: u32 = 333;
/// Trunk RTT.
const SRTT: Duration = Duration::from_millis(30);
/// A relay's forwarding delay.
const HOP: Duration = Duration::from_micros(200);
/// When the relay reports a finished transaction, after its end.
const REPORT: Duration = Duration::from_millis(1);

fn hz() -> Hz {
    Hz::new(250).expect("250 is a valid HZ")
}

fn jiffies(d: Duration) -> Jiffies {
    let hz = hz();
    Jiffies {
        count: (d.as_millis() * u128::from(hz.get()) / 1000) as u64,
        hz,
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// xorshift64: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// `true` with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        (self.next() % 1_000_000) < (p * 1_000_000.0) as u64
    }

    /// Uniform in `[lo, hi)` milliseconds.
    fn between(&mut self, lo: u64, hi: u64) -> Duration {
        ms(lo + self.next() % (hi - lo))
    }

    fn below(&mut self, n: u32) -> u32 {
        (self.next() % u64::from(n)) as u32
    }
}

/// One input, at the time it reaches the correlator.
#[derive(Clone)]
enum Input {
    Kernel(SctpEvent),
    /// With the linger the pass-through applies (the one the correlator computes).
    Tx(Transaction, Duration),
}

/// A stream of inputs in time order.
#[derive(Clone)]
struct Stream {
    /// Fed before the timed part (the worst case's full rings).
    prefill: Vec<SctpEvent>,
    inputs: Vec<(Duration, Input)>,
    transactions: u64,
    assocs: u32,
    /// After everything lingered.
    end: Duration,
}

fn peer_ip(id: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 1 + (id >> 8) as u8, id as u8, 1))
}

fn event(at: Duration, id: u32, kind: EventKind) -> SctpEvent {
    SctpEvent {
        time: at,
        netns: NETNS,
        assoc_id: AssocId(id),
        assoc: ASSOC_PTR + u64::from(id) * 0x1000,
        transport: Some(PATH_PTR + u64::from(id) * 0x1000),
        local_port: 5060,
        peer_port: 5060,
        peer: Some(peer_ip(id)),
        owner: Some(4242),
        kind,
    }
}

fn retransmit(at: Duration, id: u32, reason: RetransmitReason, rto: Duration) -> SctpEvent {
    event(
        at,
        id,
        EventKind::Retransmit {
            reason,
            rto: jiffies(rto),
            cwnd: 4380,
            ssthresh: 65_535,
            flight_size: 1200,
            error_count: u16::from(reason == RetransmitReason::T3Rtx),
        },
    )
}

fn leg(id: u32) -> Leg {
    Leg {
        transport: Transport::Sctp,
        peer: SocketAddr::new(peer_ip(id), 5060),
        local: Some("10.0.0.10:5060".parse().expect("an address")),
        assoc: Some(AssocKey {
            netns: NETNS,
            assoc_id: AssocId(id),
        }),
    }
}

struct Gen {
    rng: Rng,
    /// Every send lost and retransmitted (the worst case).
    worst: bool,
    /// Each association's RTO (index: id).
    rto: Vec<Duration>,
    config: Config,
    inputs: Vec<(Duration, Input)>,
    transactions: u64,
}

impl Gen {
    fn kernel(&mut self, ev: SctpEvent) {
        self.inputs.push((ev.time, Input::Kernel(ev)));
    }

    /// A DATA chunk sent on association `id` at `at`: its SACK's RTT sample, and if it is
    /// lost, its retransmission. Returns the extra delay before the peer has it.
    fn send(&mut self, id: u32, at: Duration) -> Duration {
        let rto = self.rto[id as usize];
        let lost = self.worst || self.rng.chance(0.03);
        let delay = if !lost {
            Duration::ZERO
        } else if self.worst || self.rng.below(3) < 2 {
            // Fast retransmission: three SACKs of later chunks on a busy trunk.
            let d = SRTT + ms(10);
            self.kernel(retransmit(at + d, id, RetransmitReason::FastRtx, rto));
            d
        } else {
            let ev = event(
                at + rto,
                id,
                EventKind::T3RtxExpired {
                    rto: jiffies(rto),
                    error_count: 0,
                    overall_error_count: 0,
                    cwnd: 4380,
                    flight_size: 1200,
                },
            );
            self.kernel(ev);
            // The RTO in force after the back-off.
            let rtx = retransmit(at + rto, id, RetransmitReason::T3Rtx, rto * 2);
            self.kernel(rtx);
            rto
        };
        if self.rng.chance(0.9) {
            let ev = event(
                at + delay + SRTT,
                id,
                EventKind::RtoUpdate {
                    rtt: jiffies(SRTT),
                    rto: jiffies(rto),
                    srtt: jiffies(SRTT),
                    rttvar: jiffies(ms(10)),
                },
            );
            self.kernel(ev);
        }
        delay
    }

    #[allow(clippy::too_many_arguments)]
    fn transaction(
        &mut self,
        method: &str,
        call: u32,
        cseq: u32,
        (from, to): (u32, u32),
        forwarded: Duration,
        first_response: Option<Duration>,
        ended: Duration,
        outcome: Outcome,
    ) {
        let linger = if outcome == Outcome::Forwarded {
            self.config.max_linger
        } else {
            (self.rto[from as usize].max(self.rto[to as usize]) * 2)
                .clamp(self.config.min_linger, self.config.max_linger)
        };
        let tx = Transaction {
            id: self.transactions,
            method: method.into(),
            call_id: format!("{:016x}-{call}@{}", self.rng.next(), peer_ip(from)).into(),
            cseq,
            branch: format!("z9hG4bK{:016x}", self.rng.next()).into(),
            inbound: leg(from),
            outbound: leg(to),
            received_at: forwarded - HOP,
            forwarded_at: forwarded,
            first_response_at: first_response,
            ended_at: ended,
            outcome,
            sip_retransmissions: 0,
        };
        self.transactions += 1;
        self.inputs.push((ended + REPORT, Input::Tx(tx, linger)));
    }

    /// INVITE (100 Trying from downstream, ringing, 200 OK), ACK, then BYE from either side.
    fn call(&mut self, call: u32, t0: Duration, assocs: u32) {
        let caller = 1 + self.rng.below(assocs);
        let callee = 1 + (caller + self.rng.below(assocs - 1)) % assocs;
        let forwarded = t0 + HOP;
        let delay = self.send(callee, forwarded);
        let trying = forwarded + delay + SRTT;
        let ok = trying + self.rng.between(500, 6000);
        // 180 and 200 forwarded to the caller.
        self.send(caller, trying + ms(200) + HOP);
        self.send(caller, ok + HOP);
        let invite = (caller, callee);
        self.transaction(
            "INVITE",
            call,
            1,
            invite,
            forwarded,
            Some(trying),
            ok,
            Outcome::Final(200),
        );

        let ack = ok + SRTT + HOP;
        self.send(callee, ack);
        self.transaction("ACK", call, 1, invite, ack, None, ack, Outcome::Forwarded);

        let bye_at = ack + self.rng.between(2000, 10_000);
        let (from, to) = if self.rng.chance(0.5) {
            (caller, callee)
        } else {
            (callee, caller)
        };
        let forwarded = bye_at + HOP;
        let delay = self.send(to, forwarded);
        let ok = forwarded + delay + SRTT;
        self.send(from, ok + HOP);
        self.transaction(
            "BYE",
            call,
            2,
            (from, to),
            forwarded,
            Some(ok),
            ok,
            Outcome::Final(200),
        );

        if self.rng.chance(0.001) {
            let path = |command| EventKind::PathChange {
                command,
                error: 0,
                previous_state: PathState::Active,
                error_count: 5,
            };
            self.kernel(event(t0, callee, path(PathCommand::Down)));
            self.kernel(event(t0 + ms(1000), callee, path(PathCommand::Up)));
        }
        if self.rng.chance(0.0005) {
            let restart = EventKind::AssocChange {
                state: AssocChangeState::Restart,
                error: 0,
                outbound_streams: 10,
                inbound_streams: 10,
                flags: 0,
            };
            self.kernel(event(t0, caller, restart));
        }
    }
}

/// The calls over `assocs` associations; `worst`: every ring full and every send lost.
fn stream(assocs: u32, worst: bool) -> Stream {
    let config = Config::default();
    let mut g = Gen {
        rng: Rng(0x9e37_79b9_7f4a_7c15),
        worst,
        // A fifth of the trunks with a tuned rto_min of 200 ms, the others at Linux's 1 s.
        rto: (0..=assocs)
            .map(|id| if id % 5 == 0 { ms(200) } else { ms(1000) })
            .collect(),
        config,
        inputs: Vec::new(),
        transactions: 0,
    };
    let start = Duration::from_secs(1000);
    let mut prefill = Vec::new();
    for id in 1..=assocs {
        let new = EventKind::AssocNew {
            state: AssocState::Established,
        };
        let rto = EventKind::RtoUpdate {
            rtt: jiffies(SRTT),
            rto: jiffies(g.rto[id as usize]),
            srtt: jiffies(SRTT),
            rttvar: jiffies(ms(10)),
        };
        let (new, rto) = (event(start, id, new), event(start, id, rto));
        if worst {
            prefill.extend([new, rto]);
            for k in 0..config.events_per_assoc as u64 {
                let at = start - ms(1000) + ms(k * 10);
                prefill.push(retransmit(at, id, RetransmitReason::T3Rtx, ms(1000)));
            }
        } else {
            g.kernel(new);
            g.kernel(rto);
        }
    }
    let gap = Duration::from_secs(1) / CALL_RATE;
    for call in 0..CALLS {
        let t0 = start + ms(10) + gap * call;
        g.call(call, t0, assocs);
    }
    let last = g.inputs.iter().map(|(t, _)| *t).max().unwrap_or(start);
    // Heartbeats every 30 s on each path (the correlator ignores them; the daemon feeds them).
    for id in 1..=assocs {
        let mut at = start + ms(u64::from(id) * 7 % 30_000);
        while at < last {
            let rto = jiffies(g.rto[id as usize]);
            let sent = EventKind::HeartbeatSent {
                rto,
                error_count: 0,
                enabled: true,
                state: PathState::Active,
            };
            let ack = EventKind::HeartbeatAck {
                rto,
                error_count: 0,
                state: PathState::Active,
            };
            g.kernel(event(at, id, sent));
            g.kernel(event(at + SRTT, id, ack));
            at += Duration::from_secs(30);
        }
    }
    g.inputs.sort_by_key(|(t, _)| *t);
    Stream {
        prefill,
        inputs: g.inputs,
        transactions: g.transactions,
        assocs,
        end: last + config.max_linger * 2,
    }
}

// ---------------------------------------------------------------------------------------------
// Correlator and baseline

/// What the stream is fed to.
trait Sink {
    type Out;
    fn kernel(&mut self, ev: &SctpEvent);
    fn transaction(&mut self, now: Duration, tx: Transaction, linger: Duration);
    fn poll(&mut self, now: Duration) -> Option<Self::Out>;
}

impl Sink for Correlator {
    type Out = Joined;

    fn kernel(&mut self, ev: &SctpEvent) {
        self.handle_kernel(ev);
    }

    fn transaction(&mut self, now: Duration, tx: Transaction, _: Duration) {
        self.handle_transaction(now, tx);
    }

    fn poll(&mut self, now: Duration) -> Option<Joined> {
        Correlator::poll(self, now)
    }
}

/// The baseline: a FIFO releasing each transaction after its linger, unjoined; kernel events
/// are looked at and dropped.
#[derive(Default)]
struct PassThrough {
    queue: VecDeque<(Duration, Transaction)>,
}

impl Sink for PassThrough {
    type Out = Transaction;

    fn kernel(&mut self, ev: &SctpEvent) {
        black_box(ev);
    }

    fn transaction(&mut self, now: Duration, tx: Transaction, linger: Duration) {
        self.queue.push_back((tx.ended_at.max(now) + linger, tx));
    }

    fn poll(&mut self, now: Duration) -> Option<Transaction> {
        if self.queue.front()?.0 > now {
            return None;
        }
        self.queue.pop_front().map(|(_, tx)| tx)
    }
}

/// Feeds the stream in time order, draining `poll(now)` before each input and at the end;
/// calls `seen` on each output. Returns the sink (to drop it outside the measurement).
fn feed<S: Sink>(
    mut sink: S,
    inputs: Vec<(Duration, Input)>,
    end: Duration,
    mut seen: impl FnMut(&S, S::Out),
) -> S {
    for (at, input) in inputs {
        while let Some(out) = sink.poll(at) {
            seen(&sink, out);
        }
        match input {
            Input::Kernel(ev) => sink.kernel(&ev),
            Input::Tx(tx, linger) => sink.transaction(at, tx, linger),
        }
    }
    while let Some(out) = sink.poll(end) {
        seen(&sink, out);
    }
    sink
}

fn prefilled(prefill: &[SctpEvent]) -> Correlator {
    let mut c = Correlator::new(Config::default());
    for ev in prefill {
        c.handle_kernel(ev);
    }
    c
}

/// One untimed pass: checks that both sinks release every transaction and describes the join.
fn describe(name: &str, s: &Stream) -> String {
    let kernel = s.prefill.len()
        + s.inputs
            .iter()
            .filter(|(_, i)| matches!(i, Input::Kernel(_)))
            .count();
    let (mut joined, mut yes, mut incomplete, mut notes, mut lingering) = (0u64, 0, 0, 0, 0);
    let (mut acks, mut acks_yes) = (0u64, 0);
    let c = feed(
        prefilled(&s.prefill),
        s.inputs.clone(),
        s.end,
        |c: &Correlator, j| {
            joined += 1;
            yes += u64::from(j.verdict == Verdict::Yes);
            if j.tx.outcome == Outcome::Forwarded {
                acks += 1;
                acks_yes += u64::from(j.verdict == Verdict::Yes);
            }
            incomplete += u64::from(j.incomplete);
            notes += (j.request.len() + j.response.len()) as u64;
            lingering = lingering.max(c.lingering() + 1);
        },
    );
    let mut passed = 0;
    feed(PassThrough::default(), s.inputs.clone(), s.end, |_, _| {
        passed += 1
    });
    assert_eq!(
        joined, s.transactions,
        "{name}: the correlator joins every one"
    );
    assert_eq!(
        passed, s.transactions,
        "{name}: the baseline releases every one"
    );
    assert_eq!(c.stats().linger_overflow, 0, "{name}: under the linger cap");
    let pct = |n: u64, of: u64| 100.0 * n as f64 / of as f64;
    format!(
        "{name}: {} transactions, {kernel} kernel events ({} before the timed part), {} \
         associations, up to {lingering} \
         lingering; kernel_retransmitted=yes {:.1} % (ACKs {:.1} %, others {:.1} %), \
         incomplete {:.1} %, {:.2} notes/transaction",
        s.transactions,
        s.prefill.len(),
        s.assocs,
        pct(yes, joined),
        pct(acks_yes, acks),
        pct(yes - acks_yes, joined - acks),
        pct(incomplete, joined),
        notes as f64 / joined as f64,
    )
}

/// Per group: its name, transactions per stream, and the description line.
static DESCRIBED: OnceLock<Vec<(&str, u64, String)>> = OnceLock::new();

fn throughput(c: &mut Criterion) {
    let realistic = stream(50, false);
    let worst = stream(Config::default().max_assocs as u32, true);
    let lines = DESCRIBED.get_or_init(|| {
        [
            ("correlate_realistic", &realistic),
            ("correlate_worst_case", &worst),
        ]
        .map(|(name, s)| (name, s.transactions, describe(name, s)))
        .into()
    });
    for (_, _, l) in lines {
        println!("{l}");
    }
    for (group, s) in [
        ("correlate_realistic", &realistic),
        ("correlate_worst_case", &worst),
    ] {
        let mut g = c.benchmark_group(group);
        g.sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .throughput(Throughput::Elements(s.transactions));
        g.bench_function("baseline", |b| {
            b.iter_batched(
                || s.inputs.clone(),
                |inputs| {
                    feed(PassThrough::default(), inputs, s.end, |_, tx| {
                        black_box(tx);
                    })
                },
                BatchSize::PerIteration,
            )
        });
        g.bench_function("correlator", |b| {
            b.iter_batched(
                || (prefilled(&s.prefill), s.inputs.clone()),
                |(c, inputs)| {
                    feed(c, inputs, s.end, |_, j| {
                        black_box(j);
                    })
                },
                BatchSize::PerIteration,
            )
        });
        g.finish();
    }
}

// ---------------------------------------------------------------------------------------------
// Memory at the default caps

/// A correlator holding `assocs` associations with `per_ring` events pushed each (32 fill a
/// ring; more wrap it, as in a long-running daemon), `pre_id` associations without an id with
/// 32 T1 events each, and `lingering` transactions waiting. The default caps:
/// `fill(4096, 64, 256, 16_384)`.
fn fill(assocs: u32, per_ring: usize, pre_id: usize, lingering: usize) -> Correlator {
    let config = Config::default();
    let mut c = Correlator::new(config);
    let start = Duration::from_secs(1000);
    for id in 1..=assocs {
        let new = EventKind::AssocNew {
            state: AssocState::Established,
        };
        c.handle_kernel(&event(start, id, new));
        for k in 0..per_ring as u64 {
            let ev = retransmit(start + ms(k), id, RetransmitReason::T3Rtx, ms(1000));
            c.handle_kernel(&ev);
        }
    }
    for p in 0..pre_id as u64 {
        // The correlator keeps 32 events of an association without an id.
        for k in 0..32u16 {
            let mut ev = event(
                start + ms(u64::from(k)),
                0,
                EventKind::T1Expired {
                    timer: T1Timer::Init,
                    init_retries: k,
                    max_init_attempts: 8,
                    rto: jiffies(ms(3000)),
                },
            );
            ev.assoc = ASSOC_PTR + 0x1000_0000 + p * 0x1000;
            c.handle_kernel(&ev);
        }
    }
    lingering_transactions(lingering, |now, tx| c.handle_transaction(now, tx));
    let stats = c.stats();
    assert_eq!(c.assocs(), assocs as usize);
    assert_eq!(c.lingering(), lingering);
    assert_eq!(
        (
            stats.windows_evicted,
            stats.pre_id_dropped,
            stats.linger_overflow
        ),
        (0, 0, 0),
        "at the caps, not over them"
    );
    c
}

/// `n` INVITE transactions spread over 4096 associations, handed to `sink` one by one.
fn lingering_transactions(n: usize, mut sink: impl FnMut(Duration, Transaction)) {
    let config = Config::default();
    let mut g = Gen {
        rng: Rng(0x2545_f491_4f6c_dd1d),
        worst: false,
        rto: vec![ms(1000); 4097],
        config,
        inputs: Vec::with_capacity(1),
        transactions: 0,
    };
    let start = Duration::from_secs(1000);
    for i in 0..n as u32 {
        let legs = (1 + i % 4096, 1 + (i + 7) % 4096);
        let (forwarded, ended) = (start + ms(u64::from(i)), start + ms(u64::from(i) + 2000));
        let (first, ok) = (Some(forwarded + SRTT), Outcome::Final(200));
        g.transaction("INVITE", i, 1, legs, forwarded, first, ended, ok);
        if let Some((at, Input::Tx(tx, _))) = g.inputs.pop() {
            sink(at, tx);
        }
    }
}

fn mib(bytes: isize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The memory lines of the summary.
fn measure_memory() -> Vec<String> {
    let config = Config::default();
    let (assocs, cap) = (config.max_assocs as u32, config.events_per_assoc);
    let (pre_id, lingering) = (config.max_pre_id, config.max_lingering);
    let held = |build: &dyn Fn() -> Correlator| {
        let (c, bytes, blocks) = heap_held(build);
        drop(c);
        (bytes, blocks)
    };
    let (empty, _) = held(&|| Correlator::new(config));
    let (full, blocks) = held(&|| fill(assocs, cap * 2, pre_id, lingering));
    let (exact, _) = held(&|| fill(assocs, cap, pre_id, lingering));
    let (windows, _) = held(&|| fill(assocs, cap * 2, 0, 0));
    let (bare_windows, _) = held(&|| fill(assocs, 0, 0, 0));
    let (early, _) = held(&|| fill(0, 0, pre_id, 0));
    let (waiting, _) = held(&|| fill(0, 0, 0, lingering));
    let (queue, queued, _) = heap_held(|| {
        let mut p = PassThrough::default();
        lingering_transactions(lingering, |now, tx| {
            p.transaction(now, tx, config.min_linger);
        });
        p
    });
    drop(queue);
    vec![
        format!(
            "correlator at default caps: {:.1} MiB (baseline empty: {} KiB)",
            mib(full),
            empty / 1024
        ),
        format!(
            "  {assocs} associations x {} events pushed (budget {} in all), {pre_id} pre-id x 32, \
             {lingering} lingering transactions: {full} B requested in {blocks} blocks \
             (malloc's per-block overhead not counted)",
            cap * 2,
            config.max_notes
        ),
        format!(
            "  parts: association windows {:.1} MiB, of which rings {:.1} MiB (never-wrapped \
             rings of exactly {cap} pushed: total {:.1} MiB); pre-id {:.2} MiB; lingering {:.1} MiB \
             (the same transactions in the pass-through's queue: {:.1} MiB)",
            mib(windows),
            mib(windows - bare_windows),
            mib(exact),
            mib(early),
            mib(waiting),
            mib(queued),
        ),
    ]
}

static MEMORY: OnceLock<Vec<String>> = OnceLock::new();

fn memory(c: &mut Criterion) {
    let config = Config::default();
    let mut g = c.benchmark_group("correlate_memory");
    g.sampling_mode(SamplingMode::Flat).sample_size(10);
    g.bench_function("fill_default_caps", |b| {
        // Measured once, while nothing else runs.
        let m = MEMORY.get_or_init(measure_memory);
        black_box(m);
        b.iter_with_large_drop(|| {
            fill(
                config.max_assocs as u32,
                config.events_per_assoc * 2,
                config.max_pre_id,
                config.max_lingering,
            )
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = throughput, memory
}

fn main() {
    let started = SystemTime::now();
    benches();
    Criterion::default().configure_from_args().final_summary();
    let mut out = String::new();
    if let Some(dir) = criterion_dir() {
        for &(group, n, _) in DESCRIBED.get().into_iter().flatten() {
            let mean = |f: &str| mean_since(&dir.join(group).join(f), started);
            match (mean("baseline"), mean("correlator")) {
                (Some(base), Some(corr)) => {
                    let per = |ns: f64| ns / n as f64;
                    let _ = writeln!(
                        out,
                        "{group}: correlator {:.0} ns/transaction ({:.0} k transactions/s); \
                         baseline {:.0} ns/transaction ({:.0} k/s); correlator/baseline = {:.2}",
                        per(corr),
                        1e6 / per(corr),
                        per(base),
                        1e6 / per(base),
                        corr / base
                    );
                }
                _ => {
                    let _ = writeln!(out, "{group}: criterion's estimates of this run not found");
                }
            }
        }
    }
    for (_, _, l) in DESCRIBED.get().into_iter().flatten() {
        let _ = writeln!(out, "{l}");
    }
    if let Some(m) = MEMORY.get() {
        for l in m {
            let _ = writeln!(out, "{l}");
        }
    }
    print!("{out}");
    if let Some(dir) = criterion_dir()
        && !out.is_empty()
    {
        // `cargo xtask bench` prints it with its summary.
        let _ = std::fs::write(dir.join("correlate-summary.txt"), &out);
    }
}

/// `target/criterion`, where criterion writes.
fn criterion_dir() -> Option<PathBuf> {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(|t| t.join("criterion"))
}

/// The mean of a benchmark, if criterion wrote it since `since` (this run).
fn mean_since(bench: &std::path::Path, since: SystemTime) -> Option<f64> {
    let file = bench.join("new").join("estimates.json");
    let fresh = std::fs::metadata(&file).ok()?.modified().ok()? >= since;
    if !fresh {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(file).ok()?).ok()?;
    v.get("mean")?.get("point_estimate")?.as_f64()
}
