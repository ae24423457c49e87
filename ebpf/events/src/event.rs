//! Typed kernel events: [`SctpEvent::decode`] turns one raw ring-buffer record
//! ([`KernelEvent`]) into an [`SctpEvent`], checking the length, the kind and every
//! enum-valued field, and converting jiffies with the kernel's [`Hz`].
//!
//! Pure and panic-free: a bad record is a [`DecodeError`], which the loader counts and skips.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use sipsctp_ebpf_common::{
    KERNEL_EVENT_SIZE, KernelEvent, assoc::AssocId, family, kind, path_command, path_state,
    rtx_reason, sac_state, t1_timer,
};

use crate::hz::Hz;

/// A kernel time value in jiffies, with the HZ to convert it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Jiffies {
    /// The raw count.
    pub count: u64,
    /// The kernel's tick rate.
    pub hz: Hz,
}

impl Jiffies {
    /// As a duration.
    pub fn to_duration(self) -> Duration {
        self.hz.to_duration(self.count)
    }

    /// In milliseconds, rounded as the kernel's `jiffies_to_msecs()` rounds them for user
    /// space (`SCTP_GET_PEER_ADDR_INFO`, `/proc/net/sctp/remaddr`).
    pub fn to_kernel_msecs(self) -> u64 {
        self.hz.to_kernel_msecs(self.count)
    }
}

/// Why `sctp_retransmit` was called (`enum sctp_retransmit_reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RetransmitReason {
    /// The T3-rtx timer expired.
    T3Rtx,
    /// Fast retransmit.
    FastRtx,
    /// The path MTU shrank.
    Pmtud,
    /// Data bundled with INIT/COOKIE-ECHO is retransmitted.
    T1Rtx,
}

/// Which T1 timer expired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum T1Timer {
    /// T1-init (INIT unanswered).
    Init,
    /// T1-cookie (COOKIE-ECHO unanswered).
    Cookie,
}

/// The state of an `SCTP_ASSOC_CHANGE` notification (`enum sctp_sac_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AssocChangeState {
    /// The association is up.
    CommUp,
    /// The association failed.
    CommLost,
    /// The peer restarted.
    Restart,
    /// Graceful shutdown completed.
    ShutdownComp,
    /// The association could not be set up.
    CantStrAssoc,
}

/// The association's protocol state (`enum sctp_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum AssocState {
    Closed,
    CookieWait,
    CookieEchoed,
    Established,
    ShutdownPending,
    ShutdownSent,
    ShutdownReceived,
    ShutdownAckSent,
}

/// A path state change command (`enum sctp_transport_cmd`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PathCommand {
    /// The path is reachable (again).
    Up,
    /// The path failed.
    Down,
    /// The path is potentially failed.
    PotentiallyFailed,
}

/// A path's state (`enum sctp_spinfo_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PathState {
    /// Failed.
    Inactive,
    /// Potentially failed.
    PotentiallyFailed,
    /// Usable.
    Active,
    /// Not yet confirmed.
    Unconfirmed,
    /// Unknown.
    Unknown,
}

/// What happened, with the kind-specific values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// A new RTT sample was folded into the path's RTO (values read when
    /// `sctp_transport_update_rto` returned).
    RtoUpdate {
        /// The RTT sample.
        rtt: Jiffies,
        /// The new RTO.
        rto: Jiffies,
        /// The new smoothed RTT.
        srtt: Jiffies,
        /// The new RTT variation.
        rttvar: Jiffies,
    },
    /// Chunks are marked for retransmission on the path.
    Retransmit {
        /// Why.
        reason: RetransmitReason,
        /// The path's RTO at that moment.
        rto: Jiffies,
        /// Congestion window before the reduction the retransmission causes.
        cwnd: u32,
        /// Slow-start threshold before the reduction.
        ssthresh: u32,
        /// Bytes in flight on the path.
        flight_size: u32,
        /// The path's error counter.
        error_count: u16,
    },
    /// The path's T3-rtx timer expired (values before the back-off).
    T3RtxExpired {
        /// The path's RTO.
        rto: Jiffies,
        /// The path's error counter.
        error_count: u16,
        /// The association's error counter.
        overall_error_count: u32,
        /// Congestion window.
        cwnd: u32,
        /// Bytes in flight.
        flight_size: u32,
    },
    /// A T1 timer expired during association setup.
    T1Expired {
        /// INIT or COOKIE-ECHO.
        timer: T1Timer,
        /// Retransmissions of INIT/COOKIE-ECHO so far.
        init_retries: u16,
        /// The limit.
        max_init_attempts: u16,
        /// The path's RTO.
        rto: Jiffies,
    },
    /// The association got its id.
    AssocNew {
        /// Its protocol state then.
        state: AssocState,
    },
    /// The association is freed.
    AssocFree {
        /// Its protocol state then.
        state: AssocState,
        /// Its error counter.
        overall_error_count: u32,
    },
    /// The kernel builds an `SCTP_ASSOC_CHANGE` notification.
    AssocChange {
        /// The notification's state.
        state: AssocChangeState,
        /// Its error code (`sac_error`), e.g. the cause of a `CantStrAssoc`.
        error: u16,
        /// Outbound streams.
        outbound_streams: u16,
        /// Inbound streams.
        inbound_streams: u16,
        /// `sac_flags`.
        flags: u16,
    },
    /// A path goes up, down or potentially failed.
    PathChange {
        /// Which.
        command: PathCommand,
        /// The error code handed along (`sctp_sn_error_t`).
        error: u32,
        /// The path's state before.
        previous_state: PathState,
        /// The path's error counter.
        error_count: u16,
    },
    /// The event's path becomes primary.
    PrimaryChange {
        /// The previous primary path (kernel address, identity only).
        previous: Option<u64>,
    },
    /// The path's heartbeat timer fired; a HEARTBEAT is sent when `enabled`.
    HeartbeatSent {
        /// The path's RTO.
        rto: Jiffies,
        /// The path's error counter.
        error_count: u16,
        /// Heartbeats are enabled on the path.
        enabled: bool,
        /// The path's state.
        state: PathState,
    },
    /// A HEARTBEAT-ACK arrived on the path.
    HeartbeatAck {
        /// The path's RTO.
        rto: Jiffies,
        /// The path's error counter.
        error_count: u16,
        /// The path's state.
        state: PathState,
    },
}

/// One decoded kernel event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SctpEvent {
    /// CLOCK_MONOTONIC time of the event.
    pub time: Duration,
    /// Inode number of the association's network namespace.
    pub netns: u32,
    /// The association id user space sees (0 before one is assigned).
    pub assoc_id: AssocId,
    /// Kernel address of the association (identity only).
    pub assoc: u64,
    /// Kernel address of the path (identity only), if any.
    pub transport: Option<u64>,
    /// Local SCTP port.
    pub local_port: u16,
    /// Peer SCTP port.
    pub peer_port: u16,
    /// The path's peer address, if the association had a path.
    pub peer: Option<IpAddr>,
    /// The process that created the association's socket, if known.
    pub owner: Option<u32>,
    /// What happened.
    pub kind: EventKind,
}

/// A record that is not a valid event.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Shorter than an event.
    #[error("record of {len} bytes, an event has {KERNEL_EVENT_SIZE}")]
    Short {
        /// The record length.
        len: usize,
    },
    /// An unknown kind byte.
    #[error("unknown event kind {0}")]
    UnknownKind(u8),
    /// An unknown address family.
    #[error("unknown address family {0}")]
    BadFamily(u8),
    /// A value out of its range.
    #[error("{kind}: {field} = {value} is out of range")]
    BadValue {
        /// The event kind.
        kind: &'static str,
        /// The value's name.
        field: &'static str,
        /// The raw value.
        value: u64,
    },
}

impl SctpEvent {
    /// Decodes one ring-buffer record.
    ///
    /// # Errors
    /// When the record is short, of an unknown kind, or carries an out-of-range value.
    pub fn decode(record: &[u8], hz: Hz) -> Result<SctpEvent, DecodeError> {
        let raw =
            KernelEvent::from_bytes(record).ok_or(DecodeError::Short { len: record.len() })?;
        let peer = peer_addr(&raw)?;
        Ok(SctpEvent {
            time: Duration::from_nanos(raw.ts_ns),
            netns: raw.netns,
            assoc_id: AssocId(raw.assoc_id),
            assoc: raw.assoc,
            transport: (raw.transport != 0).then_some(raw.transport),
            local_port: raw.local_port,
            peer_port: raw.peer_port,
            peer,
            owner: (raw.tgid != 0).then_some(raw.tgid),
            kind: decode_kind(&raw, hz)?,
        })
    }
}

/// The peer address a record carries (`family` and `peer_addr`), if any.
pub(crate) fn peer_addr(raw: &KernelEvent) -> Result<Option<IpAddr>, DecodeError> {
    Ok(match raw.family {
        family::NONE => None,
        family::INET => {
            let [a, b, c, d, ..] = raw.peer_addr;
            Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
        }
        family::INET6 => Some(IpAddr::V6(Ipv6Addr::from(raw.peer_addr))),
        f => return Err(DecodeError::BadFamily(f)),
    })
}

/// Reads `values[i]` as narrower integers, naming the kind and field in errors.
struct Values<'a> {
    kind: &'static str,
    v: &'a [u64; 6],
    hz: Hz,
}

impl Values<'_> {
    fn raw(&self, i: usize) -> u64 {
        self.v.get(i).copied().unwrap_or(0)
    }

    fn bad(&self, field: &'static str, value: u64) -> DecodeError {
        DecodeError::BadValue {
            kind: self.kind,
            field,
            value,
        }
    }

    fn u32(&self, i: usize, field: &'static str) -> Result<u32, DecodeError> {
        let v = self.raw(i);
        u32::try_from(v).map_err(|_| self.bad(field, v))
    }

    fn u16(&self, i: usize, field: &'static str) -> Result<u16, DecodeError> {
        let v = self.raw(i);
        u16::try_from(v).map_err(|_| self.bad(field, v))
    }

    fn jiffies(&self, i: usize) -> Jiffies {
        Jiffies {
            count: self.raw(i),
            hz: self.hz,
        }
    }

    fn path_state(&self, i: usize, field: &'static str) -> Result<PathState, DecodeError> {
        Ok(match self.raw(i) {
            path_state::INACTIVE => PathState::Inactive,
            path_state::PF => PathState::PotentiallyFailed,
            path_state::ACTIVE => PathState::Active,
            path_state::UNCONFIRMED => PathState::Unconfirmed,
            path_state::UNKNOWN => PathState::Unknown,
            v => return Err(self.bad(field, v)),
        })
    }

    fn assoc_state(&self, i: usize) -> Result<AssocState, DecodeError> {
        Ok(match self.raw(i) {
            0 => AssocState::Closed,
            1 => AssocState::CookieWait,
            2 => AssocState::CookieEchoed,
            3 => AssocState::Established,
            4 => AssocState::ShutdownPending,
            5 => AssocState::ShutdownSent,
            6 => AssocState::ShutdownReceived,
            7 => AssocState::ShutdownAckSent,
            v => return Err(self.bad("state", v)),
        })
    }
}

fn decode_kind(raw: &KernelEvent, hz: Hz) -> Result<EventKind, DecodeError> {
    let name = match raw.kind {
        kind::RTO_UPDATE => "rto_update",
        kind::RETRANSMIT => "retransmit",
        kind::T3_RTX_EXPIRED => "t3_rtx_expired",
        kind::T1_EXPIRED => "t1_expired",
        kind::ASSOC_NEW => "assoc_new",
        kind::ASSOC_FREE => "assoc_free",
        kind::ASSOC_CHANGE => "assoc_change",
        kind::PATH_CHANGE => "path_change",
        kind::PRIMARY_CHANGE => "primary_change",
        kind::HEARTBEAT_SENT => "heartbeat_sent",
        kind::HEARTBEAT_ACK => "heartbeat_ack",
        k => return Err(DecodeError::UnknownKind(k)),
    };
    let v = Values {
        kind: name,
        v: &raw.values,
        hz,
    };
    Ok(match raw.kind {
        kind::RTO_UPDATE => EventKind::RtoUpdate {
            rtt: v.jiffies(0),
            rto: v.jiffies(1),
            srtt: v.jiffies(2),
            rttvar: v.jiffies(3),
        },
        kind::RETRANSMIT => EventKind::Retransmit {
            reason: match v.raw(0) {
                rtx_reason::T3_RTX => RetransmitReason::T3Rtx,
                rtx_reason::FAST_RTX => RetransmitReason::FastRtx,
                rtx_reason::PMTUD => RetransmitReason::Pmtud,
                rtx_reason::T1_RTX => RetransmitReason::T1Rtx,
                r => return Err(v.bad("reason", r)),
            },
            rto: v.jiffies(1),
            cwnd: v.u32(2, "cwnd")?,
            ssthresh: v.u32(3, "ssthresh")?,
            flight_size: v.u32(4, "flight_size")?,
            error_count: v.u16(5, "error_count")?,
        },
        kind::T3_RTX_EXPIRED => EventKind::T3RtxExpired {
            rto: v.jiffies(0),
            error_count: v.u16(1, "error_count")?,
            overall_error_count: v.u32(2, "overall_error_count")?,
            cwnd: v.u32(3, "cwnd")?,
            flight_size: v.u32(4, "flight_size")?,
        },
        kind::T1_EXPIRED => EventKind::T1Expired {
            timer: match v.raw(0) {
                t1_timer::INIT => T1Timer::Init,
                t1_timer::COOKIE => T1Timer::Cookie,
                t => return Err(v.bad("timer", t)),
            },
            init_retries: v.u16(1, "init_retries")?,
            max_init_attempts: v.u16(2, "max_init_attempts")?,
            rto: v.jiffies(3),
        },
        kind::ASSOC_NEW => EventKind::AssocNew {
            state: v.assoc_state(0)?,
        },
        kind::ASSOC_FREE => EventKind::AssocFree {
            state: v.assoc_state(0)?,
            overall_error_count: v.u32(1, "overall_error_count")?,
        },
        kind::ASSOC_CHANGE => EventKind::AssocChange {
            state: match v.raw(0) {
                sac_state::COMM_UP => AssocChangeState::CommUp,
                sac_state::COMM_LOST => AssocChangeState::CommLost,
                sac_state::RESTART => AssocChangeState::Restart,
                sac_state::SHUTDOWN_COMP => AssocChangeState::ShutdownComp,
                sac_state::CANT_STR_ASSOC => AssocChangeState::CantStrAssoc,
                s => return Err(v.bad("state", s)),
            },
            error: v.u16(1, "error")?,
            outbound_streams: v.u16(2, "outbound")?,
            inbound_streams: v.u16(3, "inbound")?,
            flags: v.u16(4, "flags")?,
        },
        kind::PATH_CHANGE => EventKind::PathChange {
            command: match v.raw(0) {
                path_command::UP => PathCommand::Up,
                path_command::DOWN => PathCommand::Down,
                path_command::PF => PathCommand::PotentiallyFailed,
                c => return Err(v.bad("command", c)),
            },
            error: v.u32(1, "error")?,
            previous_state: v.path_state(2, "previous_state")?,
            error_count: v.u16(3, "error_count")?,
        },
        kind::PRIMARY_CHANGE => EventKind::PrimaryChange {
            previous: (v.raw(0) != 0).then_some(v.raw(0)),
        },
        kind::HEARTBEAT_SENT => EventKind::HeartbeatSent {
            rto: v.jiffies(0),
            error_count: v.u16(1, "error_count")?,
            enabled: match v.raw(2) {
                0 => false,
                1 => true,
                e => return Err(v.bad("enabled", e)),
            },
            state: v.path_state(3, "state")?,
        },
        _ => EventKind::HeartbeatAck {
            rto: v.jiffies(0),
            error_count: v.u16(1, "error_count")?,
            state: v.path_state(2, "state")?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(e: &KernelEvent) -> Vec<u8> {
        e.to_bytes().to_vec()
    }

    fn hz() -> Hz {
        Hz::new(250).unwrap()
    }

    fn raw(kind: u8, values: [u64; 6]) -> KernelEvent {
        KernelEvent {
            kind,
            family: family::INET,
            tgid: 1234,
            ts_ns: 5_000_000_000,
            netns: 4_026_531_840,
            assoc_id: 7,
            local_port: 5060,
            peer_port: 40_000,
            peer_addr: [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            assoc: 0xffff_8880_1000_0000,
            transport: 0xffff_8880_2000_0000,
            values,
            ..KernelEvent::default()
        }
    }

    #[test]
    fn decodes_identity_and_values() {
        let e =
            SctpEvent::decode(&bytes(&raw(kind::RTO_UPDATE, [2, 50, 12, 9, 0, 0])), hz()).unwrap();
        assert_eq!(e.time, Duration::from_secs(5));
        assert_eq!(e.assoc_id, AssocId(7));
        assert_eq!(e.local_port, 5060);
        assert_eq!(e.peer, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(e.owner, Some(1234));
        assert_eq!(e.transport, Some(0xffff_8880_2000_0000));
        let EventKind::RtoUpdate { rto, rtt, .. } = e.kind else {
            panic!("{e:?}")
        };
        assert_eq!(rto.to_kernel_msecs(), 200);
        assert_eq!(rtt.to_duration(), Duration::from_millis(8));
    }

    #[test]
    fn decodes_every_kind() {
        let cases: &[(u8, [u64; 6])] = &[
            (
                kind::RETRANSMIT,
                [rtx_reason::FAST_RTX, 250, 4380, 9000, 1200, 1],
            ),
            (kind::T3_RTX_EXPIRED, [250, 1, 3, 4380, 1200, 0]),
            (kind::T1_EXPIRED, [t1_timer::COOKIE, 1, 8, 750, 0, 0]),
            (kind::ASSOC_NEW, [1, 0, 0, 0, 0, 0]),
            (kind::ASSOC_FREE, [0, 2, 0, 0, 0, 0]),
            (
                kind::ASSOC_CHANGE,
                [sac_state::CANT_STR_ASSOC, 1, 10, 10, 0, 0],
            ),
            (
                kind::PATH_CHANGE,
                [path_command::PF, 0, path_state::ACTIVE, 1, 0, 0],
            ),
            (kind::PRIMARY_CHANGE, [0, 0, 0, 0, 0, 0]),
            (kind::HEARTBEAT_SENT, [250, 0, 1, path_state::UNKNOWN, 0, 0]),
            (kind::HEARTBEAT_ACK, [250, 0, path_state::PF, 0, 0, 0]),
        ];
        for &(k, values) in cases {
            let e = SctpEvent::decode(&bytes(&raw(k, values)), hz());
            assert!(e.is_ok(), "kind {k}: {e:?}");
        }
        let e = SctpEvent::decode(
            &bytes(&raw(
                kind::ASSOC_CHANGE,
                [sac_state::CANT_STR_ASSOC, 1, 10, 10, 0, 0],
            )),
            hz(),
        )
        .unwrap();
        assert!(matches!(
            e.kind,
            EventKind::AssocChange {
                state: AssocChangeState::CantStrAssoc,
                error: 1,
                ..
            }
        ));
    }

    #[test]
    fn rejects_bad_records_without_panicking() {
        let good = bytes(&raw(kind::RETRANSMIT, [0, 1, 2, 3, 4, 5]));
        for len in 0..KERNEL_EVENT_SIZE {
            assert_eq!(
                SctpEvent::decode(&good[..len], hz()),
                Err(DecodeError::Short { len })
            );
        }
        assert_eq!(
            SctpEvent::decode(&bytes(&raw(99, [0; 6])), hz()),
            Err(DecodeError::UnknownKind(99))
        );
        let mut bad_family = raw(kind::RTO_UPDATE, [0; 6]);
        bad_family.family = 7;
        assert_eq!(
            SctpEvent::decode(&bytes(&bad_family), hz()),
            Err(DecodeError::BadFamily(7))
        );
        assert!(matches!(
            SctpEvent::decode(&bytes(&raw(kind::RETRANSMIT, [9, 0, 0, 0, 0, 0])), hz()),
            Err(DecodeError::BadValue {
                field: "reason",
                ..
            })
        ));
        assert!(matches!(
            SctpEvent::decode(
                &bytes(&raw(kind::PATH_CHANGE, [0, 0, u64::MAX, 0, 0, 0])),
                hz()
            ),
            Err(DecodeError::BadValue {
                field: "previous_state",
                ..
            })
        ));
        // Every byte value in every position: decode must answer, never panic.
        for i in 0..KERNEL_EVENT_SIZE {
            for b in [0u8, 1, 0x7f, 0x80, 0xff] {
                let mut r = good.clone();
                r[i] = b;
                let _ = SctpEvent::decode(&r, hz());
            }
        }
    }

    #[test]
    fn decodes_ipv6_paths() {
        let mut e = raw(kind::HEARTBEAT_ACK, [250, 0, path_state::ACTIVE, 0, 0, 0]);
        e.family = family::INET6;
        e.peer_addr = Ipv6Addr::LOCALHOST.octets();
        let d = SctpEvent::decode(&bytes(&e), hz()).unwrap();
        assert_eq!(d.peer, Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    }
}
