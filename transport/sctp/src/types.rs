//! Plain data types of the public API: association ids, association and path states, and the
//! values of the SCTP socket options (status, peer address info, RTO, association parameters,
//! INIT parameters, peer address parameters, delayed SACK, event subscriptions).
//!
//! Pure data: nothing here makes a syscall or knows the kernel's struct layouts; `sys`
//! converts between these and the kernel's structures.

use std::net::SocketAddr;

pub use sipsctp_ebpf_common::assoc::AssocId;

/// An association's state (`enum sctp_sstat_state`), as `SCTP_STATUS` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssocState {
    /// `SCTP_EMPTY`.
    Empty,
    /// `SCTP_CLOSED`.
    Closed,
    /// `SCTP_COOKIE_WAIT`: INIT sent.
    CookieWait,
    /// `SCTP_COOKIE_ECHOED`: COOKIE ECHO sent.
    CookieEchoed,
    /// `SCTP_ESTABLISHED`.
    Established,
    /// `SCTP_SHUTDOWN_PENDING`.
    ShutdownPending,
    /// `SCTP_SHUTDOWN_SENT`.
    ShutdownSent,
    /// `SCTP_SHUTDOWN_RECEIVED`.
    ShutdownReceived,
    /// `SCTP_SHUTDOWN_ACK_SENT`.
    ShutdownAckSent,
    /// A value this crate does not know.
    Other(i32),
}

impl AssocState {
    /// Maps the kernel's number.
    pub fn from_raw(v: i32) -> Self {
        match v {
            0 => Self::Empty,
            1 => Self::Closed,
            2 => Self::CookieWait,
            3 => Self::CookieEchoed,
            4 => Self::Established,
            5 => Self::ShutdownPending,
            6 => Self::ShutdownSent,
            7 => Self::ShutdownReceived,
            8 => Self::ShutdownAckSent,
            other => Self::Other(other),
        }
    }
}

/// A peer address's (transport's) state (`enum sctp_spinfo_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathState {
    /// `SCTP_INACTIVE`: unreachable.
    Inactive,
    /// `SCTP_PF`: potentially failed.
    PotentiallyFailed,
    /// `SCTP_ACTIVE`.
    Active,
    /// `SCTP_UNCONFIRMED`: not yet confirmed by a heartbeat.
    Unconfirmed,
    /// `SCTP_UNKNOWN`.
    Unknown,
    /// A value this crate does not know.
    Other(i32),
}

impl PathState {
    /// Maps the kernel's number.
    pub fn from_raw(v: i32) -> Self {
        match v {
            0 => Self::Inactive,
            1 => Self::PotentiallyFailed,
            2 => Self::Active,
            3 => Self::Unconfirmed,
            0xffff => Self::Unknown,
            other => Self::Other(other),
        }
    }
}

/// One peer address of an association (`struct sctp_paddrinfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddrInfo {
    /// The association.
    pub assoc_id: AssocId,
    /// The peer address (`None` if the kernel reported an unknown family).
    pub addr: Option<SocketAddr>,
    /// The path's state.
    pub state: PathState,
    /// Congestion window, bytes.
    pub cwnd: u32,
    /// Smoothed round-trip time, milliseconds.
    pub srtt_ms: u32,
    /// Current retransmission timeout, milliseconds.
    pub rto_ms: u32,
    /// Path MTU, bytes.
    pub mtu: u32,
}

/// An association's status (`SCTP_STATUS`, `struct sctp_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssocStatus {
    /// The association.
    pub assoc_id: AssocId,
    /// Its state.
    pub state: AssocState,
    /// The peer's current receive window, bytes.
    pub rwnd: u32,
    /// DATA chunks sent and not yet acknowledged.
    pub unacked: u16,
    /// `sstat_penddata`. RFC 6458 leaves it vague ("pending receipt"); Linux reports the
    /// TSNs received from the peer that wait behind a gap, *not* our data waiting to be sent.
    pub pending: u16,
    /// Inbound streams.
    pub inbound_streams: u16,
    /// Outbound streams.
    pub outbound_streams: u16,
    /// Largest user message that is sent without fragmentation, bytes.
    pub fragmentation_point: u32,
    /// The primary path.
    pub primary: PeerAddrInfo,
}

/// Retransmission timeout bounds (`SCTP_RTOINFO`), milliseconds. When setting, 0 leaves a
/// value unchanged; the kernel requires `min <= initial <= max`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtoInfo {
    /// `srto_initial`.
    pub initial_ms: u32,
    /// `srto_max`.
    pub max_ms: u32,
    /// `srto_min`.
    pub min_ms: u32,
}

/// Association parameters (`SCTP_ASSOCINFO`). When setting, only `max_retrans` and
/// `cookie_life_ms` are used, and 0 leaves them unchanged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AssocParams {
    /// `sasoc_asocmaxrxt`: retransmissions before the association is declared down.
    pub max_retrans: u16,
    /// `sasoc_number_peer_destinations` (read only).
    pub peer_destinations: u16,
    /// `sasoc_peer_rwnd` (read only).
    pub peer_rwnd: u32,
    /// `sasoc_local_rwnd` (read only).
    pub local_rwnd: u32,
    /// `sasoc_cookie_life`, milliseconds.
    pub cookie_life_ms: u32,
}

/// INIT parameters for new associations (`SCTP_INITMSG`, socket-wide). When setting, 0 leaves
/// a value unchanged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InitMsg {
    /// `sinit_num_ostreams`: outbound streams requested.
    pub num_ostreams: u16,
    /// `sinit_max_instreams`: most inbound streams accepted.
    pub max_instreams: u16,
    /// `sinit_max_attempts`: INIT retransmissions.
    pub max_attempts: u16,
    /// `sinit_max_init_timeo`: largest RTO while setting up, milliseconds.
    pub max_init_timeo_ms: u16,
}

/// Flags of [`PeerAddrParams`] (`enum sctp_spp_flags`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PeerAddrFlags(pub u32);

impl PeerAddrFlags {
    /// `SPP_HB_ENABLE`: turn heartbeats on (and use `hb_interval_ms`).
    pub const HB_ENABLE: Self = Self(1 << 0);
    /// `SPP_HB_DISABLE`: turn heartbeats off.
    pub const HB_DISABLE: Self = Self(1 << 1);
    /// `SPP_HB_DEMAND`: send one heartbeat now.
    pub const HB_DEMAND: Self = Self(1 << 2);
    /// `SPP_PMTUD_ENABLE`: path MTU discovery on.
    pub const PMTUD_ENABLE: Self = Self(1 << 3);
    /// `SPP_PMTUD_DISABLE`: path MTU discovery off (and use `path_mtu`).
    pub const PMTUD_DISABLE: Self = Self(1 << 4);
    /// `SPP_SACKDELAY_ENABLE`: delayed SACK on (and use `sack_delay_ms`).
    pub const SACKDELAY_ENABLE: Self = Self(1 << 5);
    /// `SPP_SACKDELAY_DISABLE`: delayed SACK off.
    pub const SACKDELAY_DISABLE: Self = Self(1 << 6);
    /// `SPP_HB_TIME_IS_ZERO`: a heartbeat interval of 0 is meant (not "unchanged").
    pub const HB_TIME_IS_ZERO: Self = Self(1 << 7);

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for PeerAddrFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// Per-path parameters (`SCTP_PEER_ADDR_PARAMS`), for one peer address of an association, or
/// for all of them / the socket's defaults when `addr` is `None`. When setting, 0 leaves a
/// value unchanged, and the flags say which switches to turn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerAddrParams {
    /// `spp_address`: the peer address, or `None` for all.
    pub addr: Option<SocketAddr>,
    /// `spp_hbinterval`: heartbeat interval, milliseconds.
    pub hb_interval_ms: u32,
    /// `spp_pathmaxrxt`: retransmissions before the path is declared unreachable.
    pub path_max_rxt: u16,
    /// `spp_pathmtu`: the fixed path MTU when discovery is off.
    pub path_mtu: u32,
    /// `spp_sackdelay`: delayed SACK time, milliseconds.
    pub sack_delay_ms: u32,
    /// `spp_flags`.
    pub flags: PeerAddrFlags,
}

/// Delayed SACK parameters (`SCTP_DELAYED_SACK`, `struct sctp_sack_info`). When setting,
/// a `delay_ms` of 0 with `freq` 1 turns delayed SACK off; 0 otherwise leaves a value unchanged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DelayedSack {
    /// `sack_delay`, milliseconds.
    pub delay_ms: u32,
    /// `sack_freq`: packets received before a SACK is sent.
    pub freq: u32,
}

/// Which notifications the socket subscribes to (`SCTP_EVENT`). All on by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventSubscriptions {
    /// `SCTP_ASSOC_CHANGE`.
    pub assoc_change: bool,
    /// `SCTP_PEER_ADDR_CHANGE`.
    pub peer_addr_change: bool,
    /// `SCTP_SEND_FAILED_EVENT`.
    pub send_failed: bool,
    /// `SCTP_REMOTE_ERROR`.
    pub remote_error: bool,
    /// `SCTP_SHUTDOWN_EVENT`.
    pub shutdown: bool,
    /// `SCTP_SENDER_DRY_EVENT` (one per association each time its send queue empties).
    pub sender_dry: bool,
    /// `SCTP_PARTIAL_DELIVERY_EVENT`.
    pub partial_delivery: bool,
}

impl Default for EventSubscriptions {
    fn default() -> Self {
        Self {
            assoc_change: true,
            peer_addr_change: true,
            send_failed: true,
            remote_error: true,
            shutdown: true,
            sender_dry: true,
            partial_delivery: true,
        }
    }
}
