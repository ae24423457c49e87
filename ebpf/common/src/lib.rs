//! Layouts shared by sipsctp's eBPF programs (`ebpf/probes`) and their userspace loader
//! (`ebpf/loader`): the ring-buffer event record, the struct offsets and filter settings the
//! loader hands to the programs as globals, and the indexes of the per-CPU counters.
//!
//! `no_std`, no allocation, nothing but plain `#[repr(C)]` data: both sides compile the same
//! definitions, and size assertions guard the layouts on each. Userspace decodes a record with
//! a length check and `read_unaligned`, never a pointer cast (see [`KernelEvent::from_bytes`]).
//!
//! No struct offset of the kernel appears here: [`Offsets`] is filled at load time from the
//! running kernel's BTF.
#![no_std]
#![warn(missing_docs)]

/// Association ids: the one type of them in the workspace (the transport's sockets, the relay's
/// transaction legs, the kernel events and the exporter's join key all use it).
pub mod assoc {
    use core::fmt;

    /// An SCTP association id (`sctp_assoc_t`, an `s32` the kernel hands out from 1 up, never
    /// negative) on a one-to-many socket.
    ///
    /// Real associations have ids of 3 and above; 0, 1 and 2 are the option targets
    /// [`AssocId::FUTURE`], [`AssocId::CURRENT`] and [`AssocId::ALL`]. A kernel event about an
    /// association that has no id yet (a lost INIT) carries 0.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
    pub struct AssocId(pub u32);

    impl AssocId {
        /// `SCTP_FUTURE_ASSOC` (0): the socket's defaults, applied to associations set up
        /// later; in a kernel event, "no id yet".
        pub const FUTURE: AssocId = AssocId(0);
        /// `SCTP_CURRENT_ASSOC` (1): every association that exists now (setters only).
        pub const CURRENT: AssocId = AssocId(1);
        /// `SCTP_ALL_ASSOC` (2): current and future associations (setters only).
        pub const ALL: AssocId = AssocId(2);

        /// The raw id.
        pub const fn get(self) -> u32 {
            self.0
        }

        /// Whether this is an association's id (not 0: none yet / an option target).
        pub const fn is_assigned(self) -> bool {
            self.0 != 0
        }
    }

    impl fmt::Display for AssocId {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.fmt(f)
        }
    }
}

/// Kinds of kernel events, the first byte of every [`KernelEvent`]. Plain constants rather than
/// a Rust enum: a byte from the ring buffer is only turned into an enum after it was checked.
///
/// Every event carries the identity fields of [`KernelEvent`]; `values` are per kind, listed
/// here. Times are in **jiffies** (the loader converts them with the kernel's HZ). "Path"
/// values are read from the `struct sctp_transport` the event is about.
pub mod kind {
    /// `sctp_transport_update_rto(tp, rtt)` returned: a new RTT sample was folded in.
    /// `values` = [rtt sample, rto, srtt, rttvar, 0, 0], rto/srtt/rttvar as left by the
    /// function (read at its return).
    pub const RTO_UPDATE: u8 = 1;
    /// Chunks are marked for retransmission on a path: `sctp_retransmit(q, transport, reason)`
    /// entered, for every reason but fast retransmit; for that one,
    /// `sctp_transport_lower_cwnd(transport, SCTP_LOWER_CWND_FAST_RTX)` entered, which
    /// `sctp_retransmit`'s fast-retransmit branch calls (and nothing else does with that
    /// reason): the kernel inlines `sctp_retransmit` into its fast-retransmit caller in the
    /// same file, where a kprobe on `sctp_retransmit` never fires.
    /// `values` = [reason ([`crate::rtx_reason`]), rto, cwnd, ssthresh, flight_size,
    /// error_count] of the path at that moment (before the cwnd reduction).
    pub const RETRANSMIT: u8 = 2;
    /// The T3-rtx timer of a path expired and the state machine handles it
    /// (`sctp_sf_do_6_3_3_rtx`, where the kernel counts `SctpT3RtxExpireds`).
    /// `values` = [rto, error_count, association's overall_error_count, cwnd, flight_size, 0]
    /// before the back-off.
    pub const T3_RTX_EXPIRED: u8 = 3;
    /// An INIT or COOKIE-ECHO (T1) timer expired (`sctp_sf_t1_init_timer_expire` /
    /// `sctp_sf_t1_cookie_timer_expire`, where the kernel counts `SctpT1InitExpireds` /
    /// `SctpT1CookieExpireds`). `values` = [timer ([`crate::t1_timer`]), init_retries,
    /// max_init_attempts, rto of the path, 0, 0].
    pub const T1_EXPIRED: u8 = 4;
    /// An association got its id: `sctp_assoc_set_id` returned, and the association that had
    /// no id when it was entered has one now (the kernel assigns ids only to real, not to
    /// temporary, associations; on the connecting side when the INIT-ACK is processed, on the
    /// accepting side when the COOKIE-ECHO is). `values` = [association state, 0, ...].
    pub const ASSOC_NEW: u8 = 5;
    /// `sctp_association_free(asoc)` of an association that had an id.
    /// `values` = [association state, overall_error_count, 0, ...].
    pub const ASSOC_FREE: u8 = 6;
    /// `sctp_ulpevent_make_assoc_change(asoc, flags, state, error, outbound, inbound, ...)`:
    /// the kernel builds an SCTP_ASSOC_CHANGE notification (whether or not the socket
    /// subscribed to it). `values` = [state ([`crate::sac_state`]), error, outbound streams,
    /// inbound streams, flags, 0].
    pub const ASSOC_CHANGE: u8 = 7;
    /// `sctp_assoc_control_transport(asoc, transport, command, error)`: a path goes up, down
    /// or potentially-failed. `values` = [command ([`crate::path_command`]), error,
    /// path state before ([`crate::path_state`]), error_count, 0, 0].
    pub const PATH_CHANGE: u8 = 8;
    /// `sctp_assoc_set_primary(asoc, transport)`: the event's path becomes the primary path.
    /// `values` = [previous primary path (kernel address, identity only, 0 if none), 0, ...].
    pub const PRIMARY_CHANGE: u8 = 9;
    /// `sctp_sf_sendbeat_8_3`: a path's heartbeat timer fired in the state machine.
    /// `values` = [rto, error_count, heartbeats enabled on the path (1/0: a HEARTBEAT is sent
    /// only then), path state, 0, 0].
    pub const HEARTBEAT_SENT: u8 = 10;
    /// `sctp_sf_backbeat_8_3`: a HEARTBEAT-ACK arrived on the path.
    /// `values` = [rto, error_count, path state, 0, 0, 0] before the ack is processed.
    pub const HEARTBEAT_ACK: u8 = 11;
    /// `sctp_outq_tail(q, chunk, gfp)` with the first fragment of a DATA or I-DATA chunk: the
    /// socket's owner handed a message to the association to send. A [`crate::SipCapture`] in
    /// the `SIP` ring, not a [`crate::KernelEvent`] in `EVENTS`. `values` = see
    /// [`crate::SipCapture`].
    pub const MESSAGE_SENT: u8 = 12;
    /// `sctp_ulpevent_make_rcvmsg(asoc, chunk, gfp)` with the first fragment of a DATA or
    /// I-DATA chunk: a message is being delivered to the socket. A [`crate::SipCapture`], like
    /// [`MESSAGE_SENT`].
    pub const MESSAGE_RECEIVED: u8 = 13;
}

/// `enum sctp_retransmit_reason` (include/net/sctp/constants.h). The loader checks these
/// values against the kernel's BTF before enabling the retransmission probe.
pub mod rtx_reason {
    /// T3-rtx timer expiry.
    pub const T3_RTX: u64 = 0;
    /// Fast retransmit (three SACKs reporting the chunk missing).
    pub const FAST_RTX: u64 = 1;
    /// Path MTU discovery: the PMTU shrank.
    pub const PMTUD: u64 = 2;
    /// INIT/COOKIE-ECHO retransmission of data bundled during setup.
    pub const T1_RTX: u64 = 3;
}

/// `enum sctp_lower_cwnd` (include/net/sctp/constants.h): the fast-retransmit reason the
/// retransmission probe looks for in `sctp_transport_lower_cwnd`. Checked against BTF.
pub const LOWER_CWND_FAST_RTX: u64 = 1;

/// Which T1 timer a [`kind::T1_EXPIRED`] event is about (this crate's numbering).
pub mod t1_timer {
    /// T1-init: INIT unanswered.
    pub const INIT: u64 = 1;
    /// T1-cookie: COOKIE-ECHO unanswered.
    pub const COOKIE: u64 = 2;
}

/// `enum sctp_sac_state` (UAPI, include/uapi/linux/sctp.h).
pub mod sac_state {
    /// The association is up.
    pub const COMM_UP: u64 = 0;
    /// The association failed.
    pub const COMM_LOST: u64 = 1;
    /// The peer restarted.
    pub const RESTART: u64 = 2;
    /// Graceful shutdown completed.
    pub const SHUTDOWN_COMP: u64 = 3;
    /// The association could not be set up.
    pub const CANT_STR_ASSOC: u64 = 4;
}

/// `enum sctp_transport_cmd` (include/net/sctp/structs.h). Checked against BTF at load.
pub mod path_command {
    /// The path is reachable again.
    pub const UP: u64 = 0;
    /// The path failed.
    pub const DOWN: u64 = 1;
    /// The path is potentially failed (quick failover, RFC 7829).
    pub const PF: u64 = 2;
}

/// `enum sctp_spinfo_state` (UAPI): a path's `state`.
pub mod path_state {
    /// Failed.
    pub const INACTIVE: u64 = 0;
    /// Potentially failed.
    pub const PF: u64 = 1;
    /// Usable.
    pub const ACTIVE: u64 = 2;
    /// Not yet confirmed by a heartbeat.
    pub const UNCONFIRMED: u64 = 3;
    /// Unknown.
    pub const UNKNOWN: u64 = 0xffff;
}

/// Address families of [`KernelEvent::family`] (Linux's `AF_*` values).
pub mod family {
    /// No path address (the association had no path to name).
    pub const NONE: u8 = 0;
    /// IPv4: the first 4 bytes of `peer_addr`, network order.
    pub const INET: u8 = 2;
    /// IPv6: all 16 bytes of `peer_addr`.
    pub const INET6: u8 = 10;
}

/// One kernel event, as the probes write it into the `EVENTS` ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelEvent {
    /// One of [`kind`].
    pub kind: u8,
    /// Address family of `peer_addr`, one of [`family`].
    pub family: u8,
    /// Explicit padding (always zero).
    pub _pad0: [u8; 2],
    /// The process that created the association's socket (see the probes' `OWNERS` map; it
    /// may have exited or closed the socket since), 0 when unknown (a socket created before
    /// the probes were loaded).
    pub tgid: u32,
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    /// Inode number of the association's network namespace (`/proc/<pid>/ns/net`).
    pub netns: u32,
    /// The association id (`sctp_assoc_t`, as user space sees it; 0 before it has one).
    pub assoc_id: u32,
    /// Local SCTP port (the endpoint's bound port).
    pub local_port: u16,
    /// The peer's SCTP port.
    pub peer_port: u16,
    /// Explicit padding (always zero).
    pub _pad1: [u8; 4],
    /// The path's peer address (see `family`).
    pub peer_addr: [u8; 16],
    /// Kernel address of the `struct sctp_association` (identity only, never dereferenced
    /// by user space).
    pub assoc: u64,
    /// Kernel address of the `struct sctp_transport` (path) the event is about, or of the
    /// association's active path for association-level events; 0 if none.
    pub transport: u64,
    /// Kind-specific values (see [`kind`]).
    pub values: [u64; 6],
}

/// Size of a [`KernelEvent`] record in the ring buffer.
pub const KERNEL_EVENT_SIZE: usize = core::mem::size_of::<KernelEvent>();
const _: () = assert!(KERNEL_EVENT_SIZE == 112);
const _: () = assert!(core::mem::align_of::<KernelEvent>() == 8);

impl KernelEvent {
    /// Decodes a ring-buffer record; `None` when it is shorter than an event.
    pub fn from_bytes(bytes: &[u8]) -> Option<KernelEvent> {
        if bytes.len() < KERNEL_EVENT_SIZE {
            return None;
        }
        // SAFETY: the length was checked above; `KernelEvent` is `repr(C)`, `Copy`, and every
        // bit pattern is a valid value of its integer fields; the read is unaligned-safe.
        Some(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<KernelEvent>()) })
    }

    /// The record as the programs write it to the ring buffer (for tests and benchmarks).
    pub fn to_bytes(&self) -> [u8; KERNEL_EVENT_SIZE] {
        // SAFETY: `KernelEvent` is `repr(C)` with explicit padding fields, so all its
        // KERNEL_EVENT_SIZE bytes are initialized; `[u8; N]` has no invalid bit pattern, and
        // transmute_copy reads the value by copy (no alignment needed for the u8 array).
        unsafe { core::mem::transmute_copy::<KernelEvent, [u8; KERNEL_EVENT_SIZE]>(self) }
    }
}

/// Byte offsets of the kernel struct members the programs read, resolved by the loader from
/// the running kernel's BTF and handed over as the `OFFSETS` global. Each is named after its
/// BTF path. A member the kernel lacks stays 0, and every probe that needs it stays detached.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offsets {
    /// `sctp_association.base.sk` (`struct sock *`).
    pub asoc_sk: u32,
    /// `sctp_association.base.bind_addr.port` (u16, host order).
    pub asoc_local_port: u32,
    /// `sctp_association.peer.port` (u16, host order).
    pub asoc_peer_port: u32,
    /// `sctp_association.assoc_id` (s32).
    pub asoc_id: u32,
    /// `sctp_association.peer.primary_path` (`struct sctp_transport *`).
    pub asoc_primary_path: u32,
    /// `sctp_association.peer.active_path` (`struct sctp_transport *`).
    pub asoc_active_path: u32,
    /// `sctp_association.state` (enum, 4 bytes).
    pub asoc_state: u32,
    /// `sctp_association.overall_error_count` (int).
    pub asoc_overall_error_count: u32,
    /// `sctp_association.init_retries` (u16).
    pub asoc_init_retries: u32,
    /// `sctp_association.max_init_attempts` (u16).
    pub asoc_max_init_attempts: u32,
    /// `sock.__sk_common.skc_net.net` (`struct net *`).
    pub sock_net: u32,
    /// `net.ns.inum` (unsigned int).
    pub net_inum: u32,
    /// `sctp_transport.asoc` (`struct sctp_association *`).
    pub tp_asoc: u32,
    /// `sctp_transport.ipaddr.sa.sa_family` (u16).
    pub tp_family: u32,
    /// `sctp_transport.ipaddr.v4.sin_addr` (4 bytes).
    pub tp_addr4: u32,
    /// `sctp_transport.ipaddr.v6.sin6_addr` (16 bytes).
    pub tp_addr6: u32,
    /// `sctp_transport.rto` (unsigned long, jiffies).
    pub tp_rto: u32,
    /// `sctp_transport.rttvar` (u32, jiffies).
    pub tp_rttvar: u32,
    /// `sctp_transport.srtt` (u32, jiffies).
    pub tp_srtt: u32,
    /// `sctp_transport.cwnd` (u32).
    pub tp_cwnd: u32,
    /// `sctp_transport.ssthresh` (u32).
    pub tp_ssthresh: u32,
    /// `sctp_transport.flight_size` (u32).
    pub tp_flight_size: u32,
    /// `sctp_transport.state` (int).
    pub tp_state: u32,
    /// `sctp_transport.error_count` (u16).
    pub tp_error_count: u32,
    /// `sctp_transport.param_flags` (u32).
    pub tp_param_flags: u32,
    /// `sctp_chunk.transport` (`struct sctp_transport *`).
    pub chunk_transport: u32,
    /// `sctp_chunk.chunk_hdr` (`struct sctp_chunkhdr *`).
    pub chunk_hdr: u32,
    /// `sctp_chunk.skb` (`struct sk_buff *`).
    pub chunk_skb: u32,
    /// `sctp_outq.asoc` (`struct sctp_association *`).
    pub outq_asoc: u32,
    /// `sk_buff.data` (`unsigned char *`).
    pub skb_data: u32,
    /// Byte holding the one-bit `sctp_association.temp` bitfield.
    pub asoc_temp: u32,
    /// Mask of `temp` in that byte; 0 when unknown (temporary associations, which the kernel
    /// builds to answer an INIT or unpack a cookie and never shows to user space, are then
    /// reported too).
    pub asoc_temp_mask: u32,
}

const _: () = assert!(core::mem::size_of::<Offsets>() == 32 * 4);

impl Offsets {
    /// All zero: what the programs are compiled with before the loader overrides it.
    pub const ZERO: Offsets = Offsets {
        asoc_sk: 0,
        asoc_local_port: 0,
        asoc_peer_port: 0,
        asoc_id: 0,
        asoc_primary_path: 0,
        asoc_active_path: 0,
        asoc_state: 0,
        asoc_overall_error_count: 0,
        asoc_init_retries: 0,
        asoc_max_init_attempts: 0,
        sock_net: 0,
        net_inum: 0,
        tp_asoc: 0,
        tp_family: 0,
        tp_addr4: 0,
        tp_addr6: 0,
        tp_rto: 0,
        tp_rttvar: 0,
        tp_srtt: 0,
        tp_cwnd: 0,
        tp_ssthresh: 0,
        tp_flight_size: 0,
        tp_state: 0,
        tp_error_count: 0,
        tp_param_flags: 0,
        chunk_transport: 0,
        chunk_hdr: 0,
        chunk_skb: 0,
        outq_asoc: 0,
        skb_data: 0,
        asoc_temp: 0,
        asoc_temp_mask: 0,
    };
}

/// Filter settings, the `CONFIG` global.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Report only associations in this network namespace (inode number) whose local port is
    /// in the `PORTS` map. Ignored when `observe_all` is set.
    pub netns: u32,
    /// 1: report every SCTP association on the host, in every namespace.
    pub observe_all: u32,
}

const _: () = assert!(core::mem::size_of::<Config>() == 8);

impl Config {
    /// What the programs are compiled with: no namespace, no ports, nothing reported.
    pub const ZERO: Config = Config {
        netns: 0,
        observe_all: 0,
    };
}

/// The heartbeat-enabled bit of `sctp_transport.param_flags` (`SPP_HB_ENABLE`, UAPI).
pub const SPP_HB_ENABLE: u32 = 1;

/// Index of the ring-buffer reserve failure counter in the `STATS` per-CPU array.
pub const STAT_EVENTS_LOST: u32 = 0;
/// Kernel reads that failed while identifying an event's association (the event is dropped).
pub const STAT_READ_ERRORS: u32 = 1;
/// A return probe found no matching entry-probe record (the entry was missed).
pub const STAT_STASH_MISSES: u32 = 2;
/// The per-CPU entry-record stack was full (return probes were missed) and was reset.
pub const STAT_STASH_OVERFLOWS: u32 = 3;
/// Message captures dropped because the `SIP` ring buffer was full.
pub const STAT_CAPTURES_LOST: u32 = 4;
/// Number of slots in the `STATS` per-CPU array.
pub const STATS_LEN: u32 = 5;

/// How the programs hand records to user space: never a wake-up per record (one per kernel
/// event or captured message would cost the reader a poll round trip each); the reader
/// drains both rings every [`DRAIN_INTERVAL_MS`], and a program wakes it early once a ring
/// holds [`WAKE_AT_BYTES`] or more.
pub const DRAIN_INTERVAL_MS: u64 = 20;
/// See [`DRAIN_INTERVAL_MS`]: an eighth of the smaller ring (512 KiB).
pub const WAKE_AT_BYTES: u64 = 64 * 1024;
/// `BPF_RB_NO_WAKEUP` (UAPI): submit without waking the reader.
pub const RB_NO_WAKEUP: u64 = 1;
/// `BPF_RB_FORCE_WAKEUP` (UAPI): submit and wake the reader.
pub const RB_FORCE_WAKEUP: u64 = 2;
/// `BPF_RB_AVAIL_DATA` (UAPI): `bpf_ringbuf_query` for the bytes not yet consumed.
pub const RB_AVAIL_DATA: u64 = 0;

/// Bytes of a message's first fragment a [`SipCapture`] holds at most: enough for a SIP start
/// line and the headers that identify a transaction (Via, Call-ID, CSeq) in what SIP servers
/// send; a message whose identifying headers come later is counted by user space as
/// unidentified, never guessed.
pub const SIP_PREFIX_LEN: usize = 1024;

/// The first bytes of one message an observed association sent or received (the `SIP` ring
/// buffer; kinds [`kind::MESSAGE_SENT`] and [`kind::MESSAGE_RECEIVED`]).
///
/// `event` carries the association's identity like any [`KernelEvent`]; its `values` are
/// [TSN (received messages; 0 for sent ones, which get theirs later), stream, the first
/// fragment's payload length, bytes captured in `data`, chunk flags, chunk type (0 DATA,
/// 64 I-DATA)]. Only the first `values[3]` bytes of `data` are the message's: the rest is
/// whatever the ring buffer held before and must not be read.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SipCapture {
    /// Identity, time and the values above.
    pub event: KernelEvent,
    /// The message's first bytes.
    pub data: [u8; SIP_PREFIX_LEN],
}

impl SipCapture {
    /// Decodes a ring-buffer record into its identity and the captured bytes; `None` when the
    /// record is shorter than its header or than the length it claims.
    pub fn split(bytes: &[u8]) -> Option<(KernelEvent, &[u8])> {
        let event = KernelEvent::from_bytes(bytes)?;
        let n = usize::try_from(event.values[CAPTURE_LEN]).ok()?;
        if n > SIP_PREFIX_LEN {
            return None;
        }
        let data = bytes.get(KERNEL_EVENT_SIZE..KERNEL_EVENT_SIZE + n)?;
        Some((event, data))
    }
}

/// Size of a [`SipCapture`] record in the ring buffer.
pub const SIP_CAPTURE_SIZE: usize = core::mem::size_of::<SipCapture>();
const _: () = assert!(SIP_CAPTURE_SIZE == KERNEL_EVENT_SIZE + SIP_PREFIX_LEN);

/// Index of [`SipCapture`]'s `values`: the payload length of the first fragment.
pub const CAPTURE_PAYLOAD_LEN: usize = 2;
/// Index of [`SipCapture`]'s `values`: the bytes captured.
pub const CAPTURE_LEN: usize = 3;

/// SCTP chunk types the capture reads (RFC 9260 DATA, RFC 8260 I-DATA).
pub mod chunk {
    /// DATA: 16 header bytes before the payload.
    pub const DATA: u8 = 0;
    /// I-DATA: 20 header bytes before the payload.
    pub const IDATA: u8 = 64;
    /// The B (beginning) flag: the first fragment of a message.
    pub const FLAG_FIRST: u8 = 0x02;
    /// DATA header length.
    pub const DATA_HEADER: u16 = 16;
    /// I-DATA header length.
    pub const IDATA_HEADER: u16 = 20;
}

/// Depth of the per-CPU stack that carries `sctp_transport_update_rto`'s arguments from its
/// entry probe to its return probe (nesting: a softirq interrupting the same function).
pub const RTO_STACK_DEPTH: usize = 4;

/// The per-CPU record of `sctp_transport_update_rto` calls in progress.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RtoStack {
    /// Number of calls in progress on this CPU.
    pub depth: u32,
    /// Explicit padding.
    pub _pad: u32,
    /// The transport of each call in progress.
    pub transport: [u64; RTO_STACK_DEPTH],
    /// The RTT sample of each call in progress.
    pub rtt: [u64; RTO_STACK_DEPTH],
}

const _: () = assert!(core::mem::size_of::<RtoStack>() == 8 + 16 * RTO_STACK_DEPTH);

// SAFETY: `repr(C)`, `Copy`, integer fields only, padding explicit; any bit pattern is valid.
#[cfg(feature = "user")]
unsafe impl aya::Pod for KernelEvent {}
// SAFETY: `repr(C)`, `Copy`, u32 fields only, no padding; any bit pattern is valid.
#[cfg(feature = "user")]
unsafe impl aya::Pod for Offsets {}
// SAFETY: `repr(C)`, `Copy`, u32 fields only, no padding; any bit pattern is valid.
#[cfg(feature = "user")]
unsafe impl aya::Pod for Config {}
// SAFETY: `repr(C)`, `Copy`, integer fields only, padding explicit; any bit pattern is valid.
#[cfg(feature = "user")]
unsafe impl aya::Pod for RtoStack {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_what_it_encodes_and_rejects_short_records() {
        let e = KernelEvent {
            kind: kind::RTO_UPDATE,
            family: family::INET,
            tgid: 42,
            ts_ns: 7,
            netns: 4_026_531_840,
            assoc_id: 3,
            local_port: 5060,
            peer_port: 40000,
            peer_addr: [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            assoc: 0xffff_8880_0000_2000,
            transport: 0xffff_8880_0000_1000,
            values: [3, 0, 0, 9, 1, 2],
            ..KernelEvent::default()
        };
        let bytes = &e.to_bytes()[..];
        assert_eq!(KernelEvent::from_bytes(bytes), Some(e));
        assert_eq!(
            KernelEvent::from_bytes(&bytes[..KERNEL_EVENT_SIZE - 1]),
            None
        );
    }

    #[test]
    fn a_capture_decodes_to_its_captured_bytes_only() {
        let mut e = KernelEvent {
            kind: kind::MESSAGE_RECEIVED,
            ..KernelEvent::default()
        };
        e.values[CAPTURE_LEN] = 7;
        let mut record = [0xeeu8; SIP_CAPTURE_SIZE];
        record[..KERNEL_EVENT_SIZE].copy_from_slice(&e.to_bytes());
        record[KERNEL_EVENT_SIZE..KERNEL_EVENT_SIZE + 7].copy_from_slice(b"OPTIONS");
        let (got, data) = SipCapture::split(&record).expect("a whole record");
        assert_eq!(got.kind, kind::MESSAGE_RECEIVED);
        assert_eq!(data, b"OPTIONS");
        // A record shorter than the length it claims, or a claim over the prefix size.
        assert!(SipCapture::split(&record[..KERNEL_EVENT_SIZE + 6]).is_none());
        e.values[CAPTURE_LEN] = SIP_PREFIX_LEN as u64 + 1;
        record[..KERNEL_EVENT_SIZE].copy_from_slice(&e.to_bytes());
        assert!(SipCapture::split(&record).is_none());
    }

    #[test]
    fn field_offsets_are_as_documented() {
        assert_eq!(core::mem::offset_of!(KernelEvent, tgid), 4);
        assert_eq!(core::mem::offset_of!(KernelEvent, ts_ns), 8);
        assert_eq!(core::mem::offset_of!(KernelEvent, netns), 16);
        assert_eq!(core::mem::offset_of!(KernelEvent, local_port), 24);
        assert_eq!(core::mem::offset_of!(KernelEvent, peer_addr), 32);
        assert_eq!(core::mem::offset_of!(KernelEvent, assoc), 48);
        assert_eq!(core::mem::offset_of!(KernelEvent, values), 64);
    }
}
