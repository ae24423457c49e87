//! sipsctp's eBPF programs on the kernel's SCTP code.
//!
//! Each program turns one kernel function call into a [`KernelEvent`] in the `EVENTS` ring
//! buffer: retransmissions, T3-rtx and T1 timer expiries, RTO updates, association
//! creation/free and state notifications, path state and primary changes, heartbeats. A failed
//! reserve is never silent: it bumps `STATS[STAT_EVENTS_LOST]`, which userspace reports.
//!
//! # Portability
//! No struct offset is compiled in: every member is read at `OFFSETS.<member>`, a global the
//! loader fills from the running kernel's BTF before loading. All programs are kprobes or
//! kretprobes: aya 0.14 can attach fentry/fexit to vmlinux functions only (it has no way to
//! name a module's BTF object), kernel SCTP is a module on the kernels this project targets,
//! and several hooks cannot be fentry anyway (8 arguments, unions passed by value).
//!
//! # Filtering
//! Before anything else, each program reads the association's local port and looks it up in
//! `PORTS`, then compares its network namespace with `CONFIG.netns`; an association that does
//! not belong to the daemon costs one kernel read and one hash lookup. `CONFIG.observe_all`
//! turns the filter off. Temporary associations (the kernel builds them to answer an INIT or
//! to unpack a cookie; user space never sees them) are dropped too. Nothing else here runs per
//! chunk: the hooks run per retransmission, per RTT sample, per timer expiry, per heartbeat,
//! per association or path state change, per socket creation.
//!
//! # Message capture (sipsctp-exporter's `[observe] sip`)
//! `sctp_outq_tail` (a chunk queued to send) and `sctp_ulpevent_make_rcvmsg` (a received
//! chunk turned into a message for the socket) run per chunk. The loader attaches them only
//! when asked (the daemon has its own SIP and never does). For the first fragment of a DATA or
//! I-DATA chunk of an observed association they copy at most `SIP_PREFIX_LEN` bytes of the
//! payload, with the association's identity, into the `SIP` ring buffer; every other chunk
//! costs two kernel reads.
//!
//! # Owners
//! `sctp_init_sock` (`socket()`, peel-off) and `sctp_copy_sock` (`accept()`) run in the
//! process that creates the socket: they record `struct sock *` -> tgid in `OWNERS`. Every
//! event carries the owner of its association's socket (also for events raised in softirq
//! context, where the current task is unrelated), or 0 for a socket created before the probes
//! were loaded. Entries are not removed when the socket is closed (`sctp_destroy_sock` runs at
//! `close()`, while its associations may still be shutting down and raising events); the LRU
//! map drops old ones, and a `struct sock` reused for a new socket is recorded anew at its
//! creation, so a stale entry is never read.
//!
//! # Return probes
//! `sctp_transport_update_rto` never sleeps but may be nested by a softirq on the same CPU:
//! its entry probe pushes the arguments on a per-CPU stack that the return probe pops.
//! `sctp_assoc_set_id` may sleep (and migrate): its record is keyed by task.
#![no_std]
#![no_main]

use core::ptr::{addr_of, addr_of_mut, read_volatile};

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns, bpf_probe_read_kernel,
    },
    macros::{kprobe, kretprobe, map},
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf},
    programs::{ProbeContext, RetProbeContext},
};
use aya_log_ebpf::debug;
use sipsctp_ebpf_common::{
    CAPTURE_LEN, Config, KernelEvent, LOWER_CWND_FAST_RTX, Offsets, RB_AVAIL_DATA, RB_FORCE_WAKEUP,
    RB_NO_WAKEUP, RTO_STACK_DEPTH, RtoStack, SIP_PREFIX_LEN, SPP_HB_ENABLE, STAT_CAPTURES_LOST,
    STAT_EVENTS_LOST, STAT_READ_ERRORS, STAT_STASH_MISSES, STAT_STASH_OVERFLOWS, STATS_LEN,
    SipCapture, WAKE_AT_BYTES, chunk, family, kind, rtx_reason, t1_timer,
};

/// Struct member offsets, set by the loader from BTF (see `Offsets`).
#[unsafe(no_mangle)]
static OFFSETS: Offsets = Offsets::ZERO;

/// Filter settings, set by the loader (see `Config`).
#[unsafe(no_mangle)]
static CONFIG: Config = Config::ZERO;

/// Kernel events for userspace.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(512 * 1024, 0);

/// The first bytes of observed messages (see `SipCapture`), apart from `EVENTS` so that a
/// burst of messages never crowds out a retransmission event. 1800 records.
#[map]
static SIP: RingBuf = RingBuf::with_byte_size(2 * 1024 * 1024, 0);

/// Per-CPU counters (see `sipsctp_ebpf_common::STAT_*`).
#[map]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STATS_LEN, 0);

/// The daemon's local SCTP ports (host order); the value is unused.
#[map]
static PORTS: HashMap<u16, u8> = HashMap::with_max_entries(1024, 0);

/// `struct sock *` -> tgid of the process that created the socket (`socket()` or `accept()`).
#[map]
static OWNERS: LruHashMap<u64, u32> = LruHashMap::with_max_entries(16384, 0);

/// `sctp_assoc_set_id` calls in progress: call key -> `struct sctp_association *`. Keyed per
/// task (the call may sleep and migrate), see `call_key`.
#[map]
static SET_ID_CALLS: LruHashMap<u64, u64> = LruHashMap::with_max_entries(1024, 0);

/// `sctp_transport_update_rto` calls in progress on each CPU (it never sleeps; a softirq may
/// nest a second call on the same CPU, hence a stack).
#[map]
static RTO_CALLS: PerCpuArray<RtoStack> = PerCpuArray::with_max_entries(1, 0);

/// Linux `AF_INET` / `AF_INET6`.
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// The byte offset of a kernel struct member, from the `OFFSETS` global.
macro_rules! off {
    ($member:ident) => {
        // SAFETY: a plain read of a global that lives for the program's lifetime; volatile so
        // the compiler cannot fold in the compile-time zero the loader overrides.
        u64::from(unsafe { read_volatile(addr_of!(OFFSETS.$member)) })
    };
}

/// Reads a `T` at `base + off` in kernel memory; `None` for a null base or a fault.
#[inline(always)]
fn read<T: Copy>(base: u64, off: u64) -> Option<T> {
    if base == 0 {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel checks the address itself and returns an error on a
    // fault; nothing is dereferenced directly.
    unsafe { bpf_probe_read_kernel((base + off) as *const T) }.ok()
}

#[inline(always)]
fn read_u64(base: u64, off: u64) -> u64 {
    read::<u64>(base, off).unwrap_or(0)
}

#[inline(always)]
fn read_u32(base: u64, off: u64) -> u64 {
    u64::from(read::<u32>(base, off).unwrap_or(0))
}

#[inline(always)]
fn read_u16(base: u64, off: u64) -> u64 {
    u64::from(read::<u16>(base, off).unwrap_or(0))
}

fn bump(stat: u32) {
    if let Some(p) = STATS.get_ptr_mut(stat) {
        // SAFETY: the pointer comes from the map lookup and is this CPU's slot; programs on
        // one CPU do not preempt each other for kprobes.
        unsafe { *p += 1 };
    }
}

/// The association an event is about, already filtered.
struct Ident {
    asoc: u64,
    sk: u64,
    netns: u32,
    assoc_id: u32,
    local_port: u16,
    peer_port: u16,
}

/// Reads the association's identity and applies the filter: `None` when the association is
/// not to be reported (or a read failed, which is counted).
#[inline(always)]
fn identify(asoc: u64) -> Option<Ident> {
    if asoc == 0 {
        return None;
    }
    // SAFETY: a plain read of a global, as in `off!`.
    let observe_all = unsafe { read_volatile(addr_of!(CONFIG.observe_all)) } != 0;
    let Some(local_port) = read::<u16>(asoc, off!(asoc_local_port)) else {
        bump(STAT_READ_ERRORS);
        return None;
    };
    if !observe_all && PORTS.get_ptr(&local_port).is_none() {
        return None;
    }
    let sk = read::<u64>(asoc, off!(asoc_sk));
    let net = sk.and_then(|sk| read::<u64>(sk, off!(sock_net)));
    let Some((sk, netns)) = sk.zip(net.and_then(|net| read::<u32>(net, off!(net_inum)))) else {
        bump(STAT_READ_ERRORS);
        return None;
    };
    // SAFETY: a plain read of a global, as in `off!`.
    if !observe_all && netns != unsafe { read_volatile(addr_of!(CONFIG.netns)) } {
        return None;
    }
    // Temporary associations (built to answer an INIT or to unpack a cookie, never visible
    // to user space) are not reported. The mask is 0 when the kernel's BTF lacks the flag.
    // SAFETY: a plain read of a global, as in `off!`.
    let temp_mask = unsafe { read_volatile(addr_of!(OFFSETS.asoc_temp_mask)) };
    if temp_mask != 0 {
        let flags = read::<u8>(asoc, off!(asoc_temp)).unwrap_or(0);
        if u32::from(flags) & temp_mask != 0 {
            return None;
        }
    }
    let (Some(peer_port), Some(assoc_id)) = (
        read::<u16>(asoc, off!(asoc_peer_port)),
        read::<u32>(asoc, off!(asoc_id)),
    ) else {
        bump(STAT_READ_ERRORS);
        return None;
    };
    Some(Ident {
        asoc,
        sk,
        netns,
        assoc_id,
        local_port,
        peer_port,
    })
}

/// `identify` for the association a path belongs to.
#[inline(always)]
fn identify_path(transport: u64) -> Option<Ident> {
    identify(read::<u64>(transport, off!(tp_asoc))?)
}

/// The association's active path, else its primary path, else 0.
#[inline(always)]
fn association_path(asoc: u64) -> u64 {
    match read_u64(asoc, off!(asoc_active_path)) {
        0 => read_u64(asoc, off!(asoc_primary_path)),
        p => p,
    }
}

/// The record of an event about `id`; `transport` 0 means "the association's active path".
#[inline(always)]
fn header(kind: u8, id: &Ident, transport: u64, values: [u64; 6]) -> KernelEvent {
    let path = if transport != 0 {
        transport
    } else {
        association_path(id.asoc)
    };
    let mut fam = family::NONE;
    let mut addr = [0u8; 16];
    match read::<u16>(path, off!(tp_family)) {
        Some(AF_INET) => {
            if let Some(a) = read::<[u8; 4]>(path, off!(tp_addr4)) {
                addr[0] = a[0];
                addr[1] = a[1];
                addr[2] = a[2];
                addr[3] = a[3];
                fam = family::INET;
            }
        }
        Some(AF_INET6) => {
            if let Some(a) = read::<[u8; 16]>(path, off!(tp_addr6)) {
                addr = a;
                fam = family::INET6;
            }
        }
        _ => {}
    }
    let tgid = match OWNERS.get_ptr(&id.sk) {
        // SAFETY: the pointer comes from the map lookup; a racing delete can at worst make
        // this read a stale or reused slot's u32, which is still a u32.
        Some(p) => unsafe { *p },
        None => 0,
    };
    KernelEvent {
        kind,
        family: fam,
        _pad0: [0; 2],
        tgid,
        // SAFETY: a helper with no preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        netns: id.netns,
        assoc_id: id.assoc_id,
        local_port: id.local_port,
        peer_port: id.peer_port,
        _pad1: [0; 4],
        peer_addr: addr,
        assoc: id.asoc,
        transport: path,
        values,
    }
}

/// Writes one event; `transport` 0 means "the association's active path".
#[inline(always)]
fn emit(kind: u8, id: &Ident, transport: u64, values: [u64; 6]) {
    match EVENTS.reserve::<KernelEvent>(0) {
        Some(mut entry) => {
            entry.write(header(kind, id, transport, values));
            entry.submit(wake_flags(&EVENTS));
        }
        None => bump(STAT_EVENTS_LOST),
    }
}

/// The submit flags for a record of `ring`: no wake-up, unless the ring is filling (see
/// `sipsctp_ebpf_common::DRAIN_INTERVAL_MS`).
#[inline(always)]
fn wake_flags(ring: &RingBuf) -> u64 {
    if ring.query(RB_AVAIL_DATA) >= WAKE_AT_BYTES {
        RB_FORCE_WAKEUP
    } else {
        RB_NO_WAKEUP
    }
}

/// Path values most events carry.
#[inline(always)]
fn rto(tp: u64) -> u64 {
    read_u64(tp, off!(tp_rto))
}

#[inline(always)]
fn error_count(tp: u64) -> u64 {
    read_u16(tp, off!(tp_error_count))
}

#[inline(always)]
fn path_state(tp: u64) -> u64 {
    // `int state`: sign-extend so that an unexpected negative value stays recognisable.
    read::<i32>(tp, off!(tp_state)).map_or(0, |s| s as i64 as u64)
}

#[inline(always)]
fn retransmit(tp: u64, reason: u64) {
    let Some(id) = identify_path(tp) else {
        return;
    };
    let values = [
        reason,
        rto(tp),
        read_u32(tp, off!(tp_cwnd)),
        read_u32(tp, off!(tp_ssthresh)),
        read_u32(tp, off!(tp_flight_size)),
        error_count(tp),
    ];
    emit(kind::RETRANSMIT, &id, tp, values);
}

/// `void sctp_retransmit(struct sctp_outq *q, struct sctp_transport *transport,
/// enum sctp_retransmit_reason reason)`: every reason but fast retransmit, which is taken in
/// `sctp_transport_lower_cwnd` (the kernel inlines this function into its fast-retransmit
/// caller, so this kprobe does not see all of them; see `kind::RETRANSMIT`).
#[kprobe]
pub fn sctp_retransmit(ctx: ProbeContext) -> u32 {
    let tp: u64 = ctx.arg(1).unwrap_or(0);
    let reason = u64::from(ctx.arg::<u32>(2).unwrap_or(u32::MAX));
    if reason != rtx_reason::FAST_RTX {
        retransmit(tp, reason);
    }
    0
}

/// `void sctp_transport_lower_cwnd(struct sctp_transport *transport, enum sctp_lower_cwnd
/// reason)` with `SCTP_LOWER_CWND_FAST_RTX`: called by `sctp_retransmit`'s fast-retransmit
/// branch, and by nothing else with that reason.
#[kprobe]
pub fn sctp_transport_lower_cwnd(ctx: ProbeContext) -> u32 {
    let tp: u64 = ctx.arg(0).unwrap_or(0);
    let reason = u64::from(ctx.arg::<u32>(1).unwrap_or(u32::MAX));
    if reason == LOWER_CWND_FAST_RTX {
        retransmit(tp, rtx_reason::FAST_RTX);
    }
    0
}

/// `enum sctp_disposition sctp_sf_do_6_3_3_rtx(struct net *net, const struct sctp_endpoint
/// *ep, const struct sctp_association *asoc, const union sctp_subtype type, void *arg
/// /* transport */, struct sctp_cmd_seq *commands)`. The union is 4 bytes, passed in a
/// register: `arg` is the 5th argument register.
#[kprobe]
pub fn sctp_sf_do_6_3_3_rtx(ctx: ProbeContext) -> u32 {
    let asoc: u64 = ctx.arg(2).unwrap_or(0);
    let tp: u64 = ctx.arg(4).unwrap_or(0);
    let Some(id) = identify(asoc) else {
        return 0;
    };
    let values = [
        rto(tp),
        error_count(tp),
        read_u32(asoc, off!(asoc_overall_error_count)),
        read_u32(tp, off!(tp_cwnd)),
        read_u32(tp, off!(tp_flight_size)),
        0,
    ];
    emit(kind::T3_RTX_EXPIRED, &id, tp, values);
    0
}

#[inline(always)]
fn t1_expired(ctx: &ProbeContext, timer: u64) -> u32 {
    let asoc: u64 = ctx.arg(2).unwrap_or(0);
    let Some(id) = identify(asoc) else {
        return 0;
    };
    let path = association_path(asoc);
    let values = [
        timer,
        read_u16(asoc, off!(asoc_init_retries)),
        read_u16(asoc, off!(asoc_max_init_attempts)),
        rto(path),
        0,
        0,
    ];
    emit(kind::T1_EXPIRED, &id, path, values);
    0
}

/// `sctp_sf_t1_init_timer_expire(net, ep, asoc, type, arg, commands)`.
#[kprobe]
pub fn sctp_sf_t1_init_timer_expire(ctx: ProbeContext) -> u32 {
    t1_expired(&ctx, t1_timer::INIT)
}

/// `sctp_sf_t1_cookie_timer_expire(net, ep, asoc, type, arg, commands)`.
#[kprobe]
pub fn sctp_sf_t1_cookie_timer_expire(ctx: ProbeContext) -> u32 {
    t1_expired(&ctx, t1_timer::COOKIE)
}

/// `void sctp_transport_update_rto(struct sctp_transport *tp, __u32 rtt)` entered: push the
/// arguments for the return probe. Every call is pushed (a filtered one as transport 0), so
/// that each return pops its own entry.
#[kprobe]
pub fn sctp_transport_update_rto(ctx: ProbeContext) -> u32 {
    let tp: u64 = ctx.arg(0).unwrap_or(0);
    let rtt: u32 = ctx.arg(1).unwrap_or(0);
    let keep = identify_path(tp).is_some();
    if keep {
        debug!(&ctx, "sctp_transport_update_rto rtt={} jiffies", rtt);
    }
    let Some(stack) = RTO_CALLS.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's slot of a per-CPU array; programs do not preempt each other on one
    // CPU, and a nested call's entry and return both complete before we run again.
    let stack = unsafe { &mut *stack };
    let mut depth = stack.depth as usize;
    if depth >= RTO_STACK_DEPTH {
        // Return probes were missed (the kernel ran out of kretprobe instances): start over.
        bump(STAT_STASH_OVERFLOWS);
        depth = 0;
    }
    if let (Some(t), Some(r)) = (stack.transport.get_mut(depth), stack.rtt.get_mut(depth)) {
        *t = if keep { tp } else { 0 };
        *r = u64::from(rtt);
        stack.depth = depth as u32 + 1;
    }
    0
}

/// `sctp_transport_update_rto` returned: rto, srtt and rttvar now hold the new values.
#[kretprobe]
pub fn sctp_transport_update_rto_ret(_ctx: RetProbeContext) -> u32 {
    let Some(stack) = RTO_CALLS.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: as in the entry probe.
    let stack = unsafe { &mut *stack };
    let depth = stack.depth as usize;
    if depth == 0 {
        bump(STAT_STASH_MISSES);
        return 0;
    }
    let top = (depth - 1).min(RTO_STACK_DEPTH - 1);
    stack.depth = top as u32;
    let (Some(&tp), Some(&rtt)) = (stack.transport.get(top), stack.rtt.get(top)) else {
        return 0;
    };
    if tp == 0 {
        return 0;
    }
    let Some(id) = identify_path(tp) else {
        return 0;
    };
    let values = [
        rtt,
        rto(tp),
        read_u32(tp, off!(tp_srtt)),
        read_u32(tp, off!(tp_rttvar)),
        0,
        0,
    ];
    emit(kind::RTO_UPDATE, &id, tp, values);
    0
}

/// Key of a call in progress for `SET_ID_CALLS`: the task; for the idle task (pid 0 on every
/// CPU, interrupted by a softirq) the CPU instead.
#[inline(always)]
fn call_key() -> u64 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if pid_tgid as u32 == 0 {
        // SAFETY: a helper with no preconditions.
        (1 << 63) | u64::from(unsafe { bpf_get_smp_processor_id() })
    } else {
        pid_tgid
    }
}

/// `int sctp_assoc_set_id(struct sctp_association *asoc, gfp_t gfp)` entered: remember the
/// association when it has no id yet (the function returns early for one that has).
#[kprobe]
pub fn sctp_assoc_set_id(ctx: ProbeContext) -> u32 {
    let asoc: u64 = ctx.arg(0).unwrap_or(0);
    if read::<u32>(asoc, off!(asoc_id)) != Some(0) || identify(asoc).is_none() {
        return 0;
    }
    let _ = SET_ID_CALLS.insert(&call_key(), &asoc, 0);
    0
}

/// `sctp_assoc_set_id` returned: report the association if it now has an id.
#[kretprobe]
pub fn sctp_assoc_set_id_ret(_ctx: RetProbeContext) -> u32 {
    let key = call_key();
    let Some(p) = SET_ID_CALLS.get_ptr(&key) else {
        return 0;
    };
    // SAFETY: the pointer comes from the map lookup; the entry is this task's own.
    let asoc = unsafe { *p };
    let _ = SET_ID_CALLS.remove(&key);
    let Some(id) = identify(asoc) else {
        return 0;
    };
    if id.assoc_id == 0 {
        return 0;
    }
    let values = [read_u32(asoc, off!(asoc_state)), 0, 0, 0, 0, 0];
    emit(kind::ASSOC_NEW, &id, 0, values);
    0
}

/// `void sctp_association_free(struct sctp_association *asoc)`: only associations that had
/// an id (temporary ones, built to answer an INIT, never get one).
#[kprobe]
pub fn sctp_association_free(ctx: ProbeContext) -> u32 {
    let asoc: u64 = ctx.arg(0).unwrap_or(0);
    let Some(id) = identify(asoc) else {
        return 0;
    };
    if id.assoc_id == 0 {
        return 0;
    }
    let values = [
        read_u32(asoc, off!(asoc_state)),
        read_u32(asoc, off!(asoc_overall_error_count)),
        0,
        0,
        0,
        0,
    ];
    emit(kind::ASSOC_FREE, &id, 0, values);
    0
}

/// `struct sctp_ulpevent *sctp_ulpevent_make_assoc_change(const struct sctp_association *asoc,
/// __u16 flags, __u16 state, __u16 error, __u16 outbound, __u16 inbound, struct sctp_chunk
/// *chunk, gfp_t gfp)`: 8 arguments, the first 6 in registers.
#[kprobe]
pub fn sctp_ulpevent_make_assoc_change(ctx: ProbeContext) -> u32 {
    let asoc: u64 = ctx.arg(0).unwrap_or(0);
    let Some(id) = identify(asoc) else {
        return 0;
    };
    let flags: u16 = ctx.arg(1).unwrap_or(0);
    let state: u16 = ctx.arg(2).unwrap_or(u16::MAX);
    let error: u16 = ctx.arg(3).unwrap_or(0);
    let outbound: u16 = ctx.arg(4).unwrap_or(0);
    let inbound: u16 = ctx.arg(5).unwrap_or(0);
    let values = [
        u64::from(state),
        u64::from(error),
        u64::from(outbound),
        u64::from(inbound),
        u64::from(flags),
        0,
    ];
    emit(kind::ASSOC_CHANGE, &id, 0, values);
    0
}

/// `void sctp_assoc_control_transport(struct sctp_association *asoc, struct sctp_transport
/// *transport, enum sctp_transport_cmd command, sctp_sn_error_t error)`.
#[kprobe]
pub fn sctp_assoc_control_transport(ctx: ProbeContext) -> u32 {
    let asoc: u64 = ctx.arg(0).unwrap_or(0);
    let tp: u64 = ctx.arg(1).unwrap_or(0);
    let Some(id) = identify(asoc) else {
        return 0;
    };
    let command: u32 = ctx.arg(2).unwrap_or(u32::MAX);
    let error: u32 = ctx.arg(3).unwrap_or(0);
    let values = [
        u64::from(command),
        u64::from(error),
        path_state(tp),
        error_count(tp),
        0,
        0,
    ];
    emit(kind::PATH_CHANGE, &id, tp, values);
    0
}

/// `void sctp_assoc_set_primary(struct sctp_association *asoc, struct sctp_transport
/// *transport)`.
#[kprobe]
pub fn sctp_assoc_set_primary(ctx: ProbeContext) -> u32 {
    let asoc: u64 = ctx.arg(0).unwrap_or(0);
    let tp: u64 = ctx.arg(1).unwrap_or(0);
    let Some(id) = identify(asoc) else {
        return 0;
    };
    let values = [read_u64(asoc, off!(asoc_primary_path)), 0, 0, 0, 0, 0];
    emit(kind::PRIMARY_CHANGE, &id, tp, values);
    0
}

/// `sctp_sf_sendbeat_8_3(net, ep, asoc, type, arg /* transport */, commands)`: the union
/// argument makes it kprobe-only.
#[kprobe]
pub fn sctp_sf_sendbeat_8_3(ctx: ProbeContext) -> u32 {
    let asoc: u64 = ctx.arg(2).unwrap_or(0);
    let tp: u64 = ctx.arg(4).unwrap_or(0);
    let Some(id) = identify(asoc) else {
        return 0;
    };
    let enabled = read::<u32>(tp, off!(tp_param_flags)).unwrap_or(0) & SPP_HB_ENABLE != 0;
    let values = [
        rto(tp),
        error_count(tp),
        u64::from(enabled),
        path_state(tp),
        0,
        0,
    ];
    emit(kind::HEARTBEAT_SENT, &id, tp, values);
    0
}

/// `sctp_sf_backbeat_8_3(net, ep, asoc, type, arg /* struct sctp_chunk * */, commands)`: the
/// path is the chunk's `transport` (the one it arrived on).
#[kprobe]
pub fn sctp_sf_backbeat_8_3(ctx: ProbeContext) -> u32 {
    let asoc: u64 = ctx.arg(2).unwrap_or(0);
    let chunk: u64 = ctx.arg(4).unwrap_or(0);
    let Some(id) = identify(asoc) else {
        return 0;
    };
    let tp = read_u64(chunk, off!(chunk_transport));
    let values = [rto(tp), error_count(tp), path_state(tp), 0, 0, 0];
    emit(kind::HEARTBEAT_ACK, &id, tp, values);
    0
}

/// The first fragment of a DATA or I-DATA chunk at `chunk_hdr`: its type, flags, header
/// length and payload length; `None` for any other chunk or a later fragment.
#[inline(always)]
fn first_fragment(chunk_hdr: u64) -> Option<(u8, u8, u16, u16)> {
    // struct sctp_chunkhdr { __u8 type; __u8 flags; __be16 length; }
    let h = read::<[u8; 4]>(chunk_hdr, 0)?;
    let header = match h[0] {
        chunk::DATA => chunk::DATA_HEADER,
        chunk::IDATA => chunk::IDATA_HEADER,
        _ => return None,
    };
    if h[1] & chunk::FLAG_FIRST == 0 {
        return None;
    }
    let length = u16::from_be_bytes([h[2], h[3]]);
    if length <= header {
        return None;
    }
    Some((h[0], h[1], header, length - header))
}

/// Copies the first bytes of a message (its payload at `payload`, `len` bytes in its first
/// fragment) with the association's identity into the `SIP` ring. `tsn` is 0 for a message
/// being sent (it gets its TSN when it leaves).
#[inline(always)]
fn capture(
    kind: u8,
    id: &Ident,
    chunk_hdr: u64,
    payload: u64,
    (ctype, flags, len): (u8, u8, u16),
    tsn: u32,
) {
    // struct sctp_datahdr / sctp_idatahdr: { __be32 tsn; __be16 stream; ... } after the
    // chunk header.
    let stream = read::<[u8; 2]>(chunk_hdr, 8).map_or(0, u16::from_be_bytes);
    let mut values = [
        u64::from(tsn),
        u64::from(stream),
        u64::from(len),
        0,
        u64::from(flags),
        u64::from(ctype),
    ];
    let Some(mut entry) = SIP.reserve::<SipCapture>(0) else {
        bump(STAT_CAPTURES_LOST);
        return;
    };
    let record = entry.as_mut_ptr();
    // The verifier must see the size bounded by the destination at the call: a mask it can
    // follow on one branch (black_box keeps the compiler from dropping it as redundant), a
    // constant on the other.
    const _: () = assert!(SIP_PREFIX_LEN.is_power_of_two());
    let n = if usize::from(len) >= SIP_PREFIX_LEN {
        SIP_PREFIX_LEN as u32
    } else {
        core::hint::black_box(u32::from(len)) & (SIP_PREFIX_LEN as u32 - 1)
    };
    values[CAPTURE_LEN] = u64::from(n);
    // SAFETY: `record` points at the reserved ring-buffer slot, SIP_CAPTURE_SIZE bytes
    // owned by this program until submit/discard; the helper writes at most `n` <=
    // SIP_PREFIX_LEN bytes into its `data` and checks the kernel source address itself.
    let copied = unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_kernel(
            addr_of_mut!((*record).data).cast(),
            n,
            payload as *const core::ffi::c_void,
        )
    };
    if copied != 0 {
        values[CAPTURE_LEN] = 0;
        bump(STAT_READ_ERRORS);
    }
    // SAFETY: as above; the header is written in place (the record is too big for the
    // program's stack).
    unsafe { addr_of_mut!((*record).event).write(header(kind, id, 0, values)) };
    entry.submit(wake_flags(&SIP));
}

/// `void sctp_outq_tail(struct sctp_outq *q, struct sctp_chunk *chunk, gfp_t gfp)`: a chunk
/// is queued to be sent; for the first fragment of a message, its payload follows the
/// chunk's DATA / I-DATA header.
#[kprobe]
pub fn sctp_outq_tail(ctx: ProbeContext) -> u32 {
    let q: u64 = ctx.arg(0).unwrap_or(0);
    let chunk: u64 = ctx.arg(1).unwrap_or(0);
    let chunk_hdr = read_u64(chunk, off!(chunk_hdr));
    let Some((ctype, flags, header, len)) = first_fragment(chunk_hdr) else {
        return 0;
    };
    let Some(id) = identify(read_u64(q, off!(outq_asoc))) else {
        return 0;
    };
    let payload = chunk_hdr + u64::from(header);
    capture(
        kind::MESSAGE_SENT,
        &id,
        chunk_hdr,
        payload,
        (ctype, flags, len),
        0,
    );
    0
}

/// `struct sctp_ulpevent *sctp_ulpevent_make_rcvmsg(struct sctp_association *asoc, struct
/// sctp_chunk *chunk, gfp_t gfp)`: a received chunk becomes a message for the socket; the
/// chunk's skb data starts at its payload (the DATA header was pulled), and its length is the
/// chunk header's (the skb may hold more chunks of the same packet). The kernel may call it
/// again for the same TSN when the socket's receive buffer was full the first time: user
/// space drops the duplicate by TSN.
#[kprobe]
pub fn sctp_ulpevent_make_rcvmsg(ctx: ProbeContext) -> u32 {
    let asoc: u64 = ctx.arg(0).unwrap_or(0);
    let chunk: u64 = ctx.arg(1).unwrap_or(0);
    let chunk_hdr = read_u64(chunk, off!(chunk_hdr));
    let Some((ctype, flags, _, len)) = first_fragment(chunk_hdr) else {
        return 0;
    };
    let Some(id) = identify(asoc) else {
        return 0;
    };
    let tsn = read::<[u8; 4]>(chunk_hdr, 4).map_or(0, u32::from_be_bytes);
    let payload = read_u64(read_u64(chunk, off!(chunk_skb)), off!(skb_data));
    if payload == 0 {
        bump(STAT_READ_ERRORS);
        return 0;
    }
    capture(
        kind::MESSAGE_RECEIVED,
        &id,
        chunk_hdr,
        payload,
        (ctype, flags, len),
        tsn,
    );
    0
}

/// The current process (tgid).
#[inline(always)]
fn tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}

/// `int sctp_init_sock(struct sock *sk)`: `socket()` (or a peel-off) creates an SCTP socket
/// in the calling process.
#[kprobe]
pub fn sctp_init_sock(ctx: ProbeContext) -> u32 {
    let sk: u64 = ctx.arg(0).unwrap_or(0);
    if sk != 0 {
        let _ = OWNERS.insert(&sk, &tgid(), 0);
    }
    0
}

/// `void sctp_copy_sock(struct sock *newsk, struct sock *sk, struct sctp_association *asoc)`:
/// `accept()` creates a socket for one association in the calling process.
#[kprobe]
pub fn sctp_copy_sock(ctx: ProbeContext) -> u32 {
    let sk: u64 = ctx.arg(0).unwrap_or(0);
    if sk != 0 {
        let _ = OWNERS.insert(&sk, &tgid(), 0);
    }
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
