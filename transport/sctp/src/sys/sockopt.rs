//! Socket options: generic typed `setsockopt` / `getsockopt` for `IPPROTO_SCTP` and
//! `SOL_SOCKET`, the `#[repr(C)]` mirrors of the option structures `libc` lacks, and one
//! function per option this crate uses, converting to and from the plain types of
//! [`crate::types`].
//!
//! It never remembers a value and never chooses one: callers pass what to set.

use std::{io, net::SocketAddr, os::fd::AsRawFd, os::fd::BorrowedFd};

use super::{
    SOCKADDR_STORAGE_LEN, SctpAssocT, read_array, sn_type, sockaddr_bytes, sockaddr_from_bytes,
};
use crate::types::{
    AssocId, AssocParams, AssocState, AssocStatus, DelayedSack, EventSubscriptions, InitMsg,
    PathState, PeerAddrFlags, PeerAddrInfo, PeerAddrParams, RtoInfo,
};

/// `SCTP_EVENT` (RFC 6458 8.1.2 event subscription).
const SCTP_EVENT: libc::c_int = 127;

/// Types that may be handed to the kernel and filled by it as raw bytes.
///
/// # Safety
///
/// Implementors must be `Copy`, `#[repr(C)]` (or primitive) and valid for every bit pattern,
/// including all zeros, so that any bytes the kernel writes make a valid value.
pub(crate) unsafe trait Pod: Copy {}

// SAFETY: primitive integers are valid for every bit pattern.
unsafe impl Pod for libc::c_int {}
// SAFETY: primitive integers are valid for every bit pattern.
unsafe impl Pod for u32 {}
// SAFETY: repr(C) struct of integers only.
unsafe impl Pod for libc::sctp_initmsg {}
// SAFETY: repr(C) struct of integers only.
unsafe impl Pod for SctpEvent {}
// SAFETY: repr(C) struct of integers and byte arrays only.
unsafe impl Pod for SctpPaddrinfo {}
// SAFETY: repr(C) struct of integers and byte arrays only.
unsafe impl Pod for SctpStatus {}
// SAFETY: repr(C) struct of integers only.
unsafe impl Pod for SctpRtoinfo {}
// SAFETY: repr(C) struct of integers only.
unsafe impl Pod for SctpAssocparams {}
// SAFETY: repr(C) struct of integers only.
unsafe impl Pod for SctpSackInfo {}
// SAFETY: repr(C) struct of integers only.
unsafe impl Pod for SctpAssocValue {}

/// `struct sctp_event`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SctpEvent {
    pub(crate) se_assoc_id: SctpAssocT,
    pub(crate) se_type: u16,
    pub(crate) se_on: u8,
}

/// `struct sctp_paddrinfo`: `__attribute__((packed, aligned(4)))` in C. The address, a
/// `sockaddr_storage`, is kept as bytes, which gives the very same layout (offsets 0, 4, 132,
/// 136, 140, 144, 148; size 152; alignment 4) without `packed`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct SctpPaddrinfo {
    pub(crate) spinfo_assoc_id: SctpAssocT,
    pub(crate) spinfo_address: [u8; SOCKADDR_STORAGE_LEN],
    pub(crate) spinfo_state: i32,
    pub(crate) spinfo_cwnd: u32,
    pub(crate) spinfo_srtt: u32,
    pub(crate) spinfo_rto: u32,
    pub(crate) spinfo_mtu: u32,
}

/// `struct sctp_status`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct SctpStatus {
    pub(crate) sstat_assoc_id: SctpAssocT,
    pub(crate) sstat_state: i32,
    pub(crate) sstat_rwnd: u32,
    pub(crate) sstat_unackdata: u16,
    pub(crate) sstat_penddata: u16,
    pub(crate) sstat_instrms: u16,
    pub(crate) sstat_outstrms: u16,
    pub(crate) sstat_fragmentation_point: u32,
    pub(crate) sstat_primary: SctpPaddrinfo,
}

/// `struct sctp_rtoinfo`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SctpRtoinfo {
    pub(crate) srto_assoc_id: SctpAssocT,
    pub(crate) srto_initial: u32,
    pub(crate) srto_max: u32,
    pub(crate) srto_min: u32,
}

/// `struct sctp_assocparams`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SctpAssocparams {
    pub(crate) sasoc_assoc_id: SctpAssocT,
    pub(crate) sasoc_asocmaxrxt: u16,
    pub(crate) sasoc_number_peer_destinations: u16,
    pub(crate) sasoc_peer_rwnd: u32,
    pub(crate) sasoc_local_rwnd: u32,
    pub(crate) sasoc_cookie_life: u32,
}

/// `struct sctp_sack_info`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SctpSackInfo {
    pub(crate) sack_assoc_id: SctpAssocT,
    pub(crate) sack_delay: u32,
    pub(crate) sack_freq: u32,
}

/// `struct sctp_assoc_value`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SctpAssocValue {
    pub(crate) assoc_id: SctpAssocT,
    pub(crate) assoc_value: u32,
}

/// `struct sctp_paddrparams` is `packed, aligned(4)` with a `__u32` at offset 138, so it is
/// built and read as bytes at these offsets. Size 156 (155 rounded up to 4).
mod paddrparams {
    pub(super) const ASSOC_ID: usize = 0;
    pub(super) const ADDRESS: usize = 4;
    pub(super) const HBINTERVAL: usize = 132;
    pub(super) const PATHMAXRXT: usize = 136;
    pub(super) const PATHMTU: usize = 138;
    pub(super) const SACKDELAY: usize = 142;
    pub(super) const FLAGS: usize = 146;
    pub(super) const SIZE: usize = 156;
}

const _: () = assert!(size_of::<SctpEvent>() == 8);
const _: () = assert!(size_of::<SctpPaddrinfo>() == 152);
const _: () = assert!(align_of::<SctpPaddrinfo>() == 4);
const _: () = assert!(size_of::<SctpStatus>() == 176);
const _: () = assert!(std::mem::offset_of!(SctpStatus, sstat_primary) == 24);
const _: () = assert!(size_of::<SctpRtoinfo>() == 16);
const _: () = assert!(size_of::<SctpAssocparams>() == 20);
const _: () = assert!(size_of::<SctpSackInfo>() == 12);
const _: () = assert!(size_of::<SctpAssocValue>() == 8);
const _: () = assert!(size_of::<libc::sctp_initmsg>() == 8);

/// setsockopt(2) with a typed value.
pub(crate) fn set<T: Pod>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` points to a live, initialized `T` of `size_of::<T>()` bytes that the
    // kernel only reads during the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// getsockopt(2) into a typed value, which is also the input (SCTP options read the
/// association id from it). Returns the length the kernel reported.
pub(crate) fn get<T: Pod>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: &mut T,
) -> io::Result<usize> {
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is a live, writable `T` of `len` bytes; `T: Pod` makes any bytes the
    // kernel writes a valid `T`; `len` is a valid in/out length.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *mut T).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(len as usize)
    }
}

/// setsockopt(2) with a byte buffer.
pub(crate) fn set_bytes(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: &[u8],
) -> io::Result<()> {
    let len = libc::socklen_t::try_from(value.len())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `value` is a live byte buffer of `len` bytes that the kernel only reads.
    let rc = unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, value.as_ptr().cast(), len) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// getsockopt(2) into a byte buffer that also carries the input. Returns the reported length.
pub(crate) fn get_bytes(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: &mut [u8],
) -> io::Result<usize> {
    let mut len = libc::socklen_t::try_from(value.len())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `value` is a live, writable byte buffer of `len` bytes; `len` is a valid in/out
    // length.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            value.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(len as usize)
    }
}

fn set_sctp_int(fd: BorrowedFd<'_>, name: libc::c_int, v: libc::c_int) -> io::Result<()> {
    set(fd, libc::IPPROTO_SCTP, name, &v)
}

fn get_sctp_int(fd: BorrowedFd<'_>, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    get(fd, libc::IPPROTO_SCTP, name, &mut v)?;
    Ok(v)
}

fn assoc_t(id: AssocId) -> SctpAssocT {
    id.get().cast_signed()
}

fn assoc_id(id: SctpAssocT) -> AssocId {
    AssocId(id.cast_unsigned())
}

/// Subscribes to (or unsubscribes from) each notification type per `events`, for `assoc`.
pub(crate) fn subscribe(
    fd: BorrowedFd<'_>,
    assoc: AssocId,
    events: &EventSubscriptions,
) -> io::Result<()> {
    let wanted = [
        (sn_type::ASSOC_CHANGE, events.assoc_change),
        (sn_type::PEER_ADDR_CHANGE, events.peer_addr_change),
        (sn_type::SEND_FAILED_EVENT, events.send_failed),
        (sn_type::REMOTE_ERROR, events.remote_error),
        (sn_type::SHUTDOWN_EVENT, events.shutdown),
        (sn_type::SENDER_DRY_EVENT, events.sender_dry),
        (sn_type::PARTIAL_DELIVERY_EVENT, events.partial_delivery),
    ];
    for (se_type, on) in wanted {
        let ev = SctpEvent {
            se_assoc_id: assoc_t(assoc),
            se_type,
            se_on: u8::from(on),
        };
        set(fd, libc::IPPROTO_SCTP, SCTP_EVENT, &ev)?;
    }
    Ok(())
}

/// `SCTP_RECVRCVINFO`: attach an `SCTP_RCVINFO` control message to every received message.
pub(crate) fn set_recvrcvinfo(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    set_sctp_int(fd, libc::SCTP_RECVRCVINFO, libc::c_int::from(on))
}

/// `SCTP_FRAGMENT_INTERLEAVE`: 0 = one message at a time for the whole socket (other
/// associations wait while one is in partial delivery); 1 = partial deliveries of different
/// associations interleave (never two messages of one association).
pub(crate) fn set_fragment_interleave(fd: BorrowedFd<'_>, level: u32) -> io::Result<()> {
    let v = libc::c_int::try_from(level).map_err(|_| io::ErrorKind::InvalidInput)?;
    set_sctp_int(fd, libc::SCTP_FRAGMENT_INTERLEAVE, v)
}

/// `SCTP_PARTIAL_DELIVERY_POINT` (bytes; the kernel refuses more than half of `SO_RCVBUF`).
pub(crate) fn set_partial_delivery_point(fd: BorrowedFd<'_>, bytes: u32) -> io::Result<()> {
    set(
        fd,
        libc::IPPROTO_SCTP,
        libc::SCTP_PARTIAL_DELIVERY_POINT,
        &bytes,
    )
}

/// `SCTP_PARTIAL_DELIVERY_POINT`.
pub(crate) fn partial_delivery_point(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut v = 0u32;
    get(
        fd,
        libc::IPPROTO_SCTP,
        libc::SCTP_PARTIAL_DELIVERY_POINT,
        &mut v,
    )?;
    Ok(v)
}

/// `SCTP_NODELAY` (Nagle off when true).
pub(crate) fn set_nodelay(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    set_sctp_int(fd, libc::SCTP_NODELAY, libc::c_int::from(on))
}

/// `SO_REUSEADDR`: bind even while associations of a closed socket on the same address are
/// still shutting down (a restarted process gets its port back).
pub(crate) fn set_reuse_addr(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    set(
        fd,
        libc::SOL_SOCKET,
        libc::SO_REUSEADDR,
        &libc::c_int::from(on),
    )
}

/// `SCTP_NODELAY`.
pub(crate) fn nodelay(fd: BorrowedFd<'_>) -> io::Result<bool> {
    get_sctp_int(fd, libc::SCTP_NODELAY).map(|v| v != 0)
}

/// Which socket buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Buffer {
    /// `SO_RCVBUF`.
    Receive,
    /// `SO_SNDBUF`.
    Send,
}

impl Buffer {
    fn name(self) -> libc::c_int {
        match self {
            Self::Receive => libc::SO_RCVBUF,
            Self::Send => libc::SO_SNDBUF,
        }
    }
}

/// `SO_RCVBUF` / `SO_SNDBUF` (the kernel doubles the value and caps it at `rmem_max` /
/// `wmem_max`).
pub(crate) fn set_buffer(fd: BorrowedFd<'_>, which: Buffer, bytes: usize) -> io::Result<()> {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    set(fd, libc::SOL_SOCKET, which.name(), &v)
}

/// `SO_RCVBUF` / `SO_SNDBUF`: the size in effect (the doubled value).
pub(crate) fn buffer(fd: BorrowedFd<'_>, which: Buffer) -> io::Result<usize> {
    let mut v: libc::c_int = 0;
    get(fd, libc::SOL_SOCKET, which.name(), &mut v)?;
    Ok(usize::try_from(v).unwrap_or(0))
}

fn paddrinfo_from(p: &SctpPaddrinfo) -> PeerAddrInfo {
    PeerAddrInfo {
        assoc_id: assoc_id(p.spinfo_assoc_id),
        addr: sockaddr_from_bytes(&p.spinfo_address).map(|(a, _)| a),
        state: PathState::from_raw(p.spinfo_state),
        cwnd: p.spinfo_cwnd,
        srtt_ms: p.spinfo_srtt,
        rto_ms: p.spinfo_rto,
        mtu: p.spinfo_mtu,
    }
}

fn empty_paddrinfo() -> SctpPaddrinfo {
    SctpPaddrinfo {
        spinfo_assoc_id: 0,
        spinfo_address: [0; SOCKADDR_STORAGE_LEN],
        spinfo_state: 0,
        spinfo_cwnd: 0,
        spinfo_srtt: 0,
        spinfo_rto: 0,
        spinfo_mtu: 0,
    }
}

/// `SCTP_STATUS` of one association.
pub(crate) fn status(fd: BorrowedFd<'_>, assoc: AssocId) -> io::Result<AssocStatus> {
    let mut s = SctpStatus {
        sstat_assoc_id: assoc_t(assoc),
        sstat_state: 0,
        sstat_rwnd: 0,
        sstat_unackdata: 0,
        sstat_penddata: 0,
        sstat_instrms: 0,
        sstat_outstrms: 0,
        sstat_fragmentation_point: 0,
        sstat_primary: empty_paddrinfo(),
    };
    get(fd, libc::IPPROTO_SCTP, libc::SCTP_STATUS, &mut s)?;
    Ok(AssocStatus {
        assoc_id: assoc_id(s.sstat_assoc_id),
        state: AssocState::from_raw(s.sstat_state),
        rwnd: s.sstat_rwnd,
        unacked: s.sstat_unackdata,
        pending: s.sstat_penddata,
        inbound_streams: s.sstat_instrms,
        outbound_streams: s.sstat_outstrms,
        fragmentation_point: s.sstat_fragmentation_point,
        primary: paddrinfo_from(&s.sstat_primary),
    })
}

fn storage_of(addr: &SocketAddr) -> [u8; SOCKADDR_STORAGE_LEN] {
    let mut out = [0u8; SOCKADDR_STORAGE_LEN];
    let raw = sockaddr_bytes(addr);
    let bytes = raw.as_bytes();
    if let Some(dst) = out.get_mut(..bytes.len()) {
        dst.copy_from_slice(bytes);
    }
    out
}

/// `SCTP_GET_PEER_ADDR_INFO` for one peer address of `assoc` (`AssocId::FUTURE` = look the
/// association up by the address).
pub(crate) fn peer_addr_info(
    fd: BorrowedFd<'_>,
    assoc: AssocId,
    addr: &SocketAddr,
) -> io::Result<PeerAddrInfo> {
    let mut p = empty_paddrinfo();
    p.spinfo_assoc_id = assoc_t(assoc);
    p.spinfo_address = storage_of(addr);
    get(
        fd,
        libc::IPPROTO_SCTP,
        libc::SCTP_GET_PEER_ADDR_INFO,
        &mut p,
    )?;
    Ok(paddrinfo_from(&p))
}

/// `SCTP_RTOINFO`.
pub(crate) fn rto_info(fd: BorrowedFd<'_>, assoc: AssocId) -> io::Result<RtoInfo> {
    let mut r = SctpRtoinfo {
        srto_assoc_id: assoc_t(assoc),
        ..Default::default()
    };
    get(fd, libc::IPPROTO_SCTP, libc::SCTP_RTOINFO, &mut r)?;
    Ok(RtoInfo {
        initial_ms: r.srto_initial,
        max_ms: r.srto_max,
        min_ms: r.srto_min,
    })
}

/// `SCTP_RTOINFO`.
pub(crate) fn set_rto_info(fd: BorrowedFd<'_>, assoc: AssocId, v: &RtoInfo) -> io::Result<()> {
    let r = SctpRtoinfo {
        srto_assoc_id: assoc_t(assoc),
        srto_initial: v.initial_ms,
        srto_max: v.max_ms,
        srto_min: v.min_ms,
    };
    set(fd, libc::IPPROTO_SCTP, libc::SCTP_RTOINFO, &r)
}

/// `SCTP_ASSOCINFO`.
pub(crate) fn assoc_params(fd: BorrowedFd<'_>, assoc: AssocId) -> io::Result<AssocParams> {
    let mut a = SctpAssocparams {
        sasoc_assoc_id: assoc_t(assoc),
        ..Default::default()
    };
    get(fd, libc::IPPROTO_SCTP, libc::SCTP_ASSOCINFO, &mut a)?;
    Ok(AssocParams {
        max_retrans: a.sasoc_asocmaxrxt,
        peer_destinations: a.sasoc_number_peer_destinations,
        peer_rwnd: a.sasoc_peer_rwnd,
        local_rwnd: a.sasoc_local_rwnd,
        cookie_life_ms: a.sasoc_cookie_life,
    })
}

/// `SCTP_ASSOCINFO` (only `max_retrans` and `cookie_life_ms` are used).
pub(crate) fn set_assoc_params(
    fd: BorrowedFd<'_>,
    assoc: AssocId,
    v: &AssocParams,
) -> io::Result<()> {
    let a = SctpAssocparams {
        sasoc_assoc_id: assoc_t(assoc),
        sasoc_asocmaxrxt: v.max_retrans,
        sasoc_cookie_life: v.cookie_life_ms,
        ..Default::default()
    };
    set(fd, libc::IPPROTO_SCTP, libc::SCTP_ASSOCINFO, &a)
}

/// `SCTP_INITMSG` (socket-wide).
pub(crate) fn init_msg(fd: BorrowedFd<'_>) -> io::Result<InitMsg> {
    let mut m = libc::sctp_initmsg {
        sinit_num_ostreams: 0,
        sinit_max_instreams: 0,
        sinit_max_attempts: 0,
        sinit_max_init_timeo: 0,
    };
    get(fd, libc::IPPROTO_SCTP, libc::SCTP_INITMSG, &mut m)?;
    Ok(InitMsg {
        num_ostreams: m.sinit_num_ostreams,
        max_instreams: m.sinit_max_instreams,
        max_attempts: m.sinit_max_attempts,
        max_init_timeo_ms: m.sinit_max_init_timeo,
    })
}

/// `SCTP_INITMSG` (socket-wide).
pub(crate) fn set_init_msg(fd: BorrowedFd<'_>, v: &InitMsg) -> io::Result<()> {
    let m = libc::sctp_initmsg {
        sinit_num_ostreams: v.num_ostreams,
        sinit_max_instreams: v.max_instreams,
        sinit_max_attempts: v.max_attempts,
        sinit_max_init_timeo: v.max_init_timeo_ms,
    };
    set(fd, libc::IPPROTO_SCTP, libc::SCTP_INITMSG, &m)
}

fn put<const N: usize>(buf: &mut [u8], offset: usize, bytes: [u8; N]) {
    if let Some(dst) = offset
        .checked_add(N)
        .and_then(|end| buf.get_mut(offset..end))
    {
        dst.copy_from_slice(&bytes);
    }
}

/// Builds the bytes of a `struct sctp_paddrparams`.
fn encode_paddrparams(assoc: AssocId, v: &PeerAddrParams) -> [u8; paddrparams::SIZE] {
    let mut b = [0u8; paddrparams::SIZE];
    put(&mut b, paddrparams::ASSOC_ID, assoc_t(assoc).to_ne_bytes());
    if let Some(addr) = &v.addr {
        let raw = sockaddr_bytes(addr);
        let bytes = raw.as_bytes();
        if let Some(dst) = b.get_mut(paddrparams::ADDRESS..paddrparams::ADDRESS + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    }
    put(
        &mut b,
        paddrparams::HBINTERVAL,
        v.hb_interval_ms.to_ne_bytes(),
    );
    put(
        &mut b,
        paddrparams::PATHMAXRXT,
        v.path_max_rxt.to_ne_bytes(),
    );
    put(&mut b, paddrparams::PATHMTU, v.path_mtu.to_ne_bytes());
    put(
        &mut b,
        paddrparams::SACKDELAY,
        v.sack_delay_ms.to_ne_bytes(),
    );
    put(&mut b, paddrparams::FLAGS, v.flags.0.to_ne_bytes());
    b
}

/// Reads the bytes of a `struct sctp_paddrparams`.
fn decode_paddrparams(b: &[u8]) -> PeerAddrParams {
    let u32_at = |o| read_array(b, o).map_or(0, u32::from_ne_bytes);
    PeerAddrParams {
        addr: b
            .get(paddrparams::ADDRESS..paddrparams::HBINTERVAL)
            .and_then(sockaddr_from_bytes)
            .map(|(a, _)| a),
        hb_interval_ms: u32_at(paddrparams::HBINTERVAL),
        path_max_rxt: read_array(b, paddrparams::PATHMAXRXT).map_or(0, u16::from_ne_bytes),
        path_mtu: u32_at(paddrparams::PATHMTU),
        sack_delay_ms: u32_at(paddrparams::SACKDELAY),
        flags: PeerAddrFlags(u32_at(paddrparams::FLAGS)),
    }
}

/// `SCTP_PEER_ADDR_PARAMS` for `assoc` and, when `addr` is given, one of its peer addresses.
pub(crate) fn peer_addr_params(
    fd: BorrowedFd<'_>,
    assoc: AssocId,
    addr: Option<SocketAddr>,
) -> io::Result<PeerAddrParams> {
    let query = PeerAddrParams {
        addr,
        ..Default::default()
    };
    let mut b = encode_paddrparams(assoc, &query);
    get_bytes(fd, libc::IPPROTO_SCTP, libc::SCTP_PEER_ADDR_PARAMS, &mut b)?;
    Ok(decode_paddrparams(&b))
}

/// `SCTP_PEER_ADDR_PARAMS`.
pub(crate) fn set_peer_addr_params(
    fd: BorrowedFd<'_>,
    assoc: AssocId,
    v: &PeerAddrParams,
) -> io::Result<()> {
    let b = encode_paddrparams(assoc, v);
    set_bytes(fd, libc::IPPROTO_SCTP, libc::SCTP_PEER_ADDR_PARAMS, &b)
}

/// `SCTP_DELAYED_SACK`.
pub(crate) fn delayed_sack(fd: BorrowedFd<'_>, assoc: AssocId) -> io::Result<DelayedSack> {
    let mut s = SctpSackInfo {
        sack_assoc_id: assoc_t(assoc),
        ..Default::default()
    };
    get(fd, libc::IPPROTO_SCTP, libc::SCTP_DELAYED_SACK, &mut s)?;
    Ok(DelayedSack {
        delay_ms: s.sack_delay,
        freq: s.sack_freq,
    })
}

/// `SCTP_DELAYED_SACK`.
pub(crate) fn set_delayed_sack(
    fd: BorrowedFd<'_>,
    assoc: AssocId,
    v: &DelayedSack,
) -> io::Result<()> {
    let s = SctpSackInfo {
        sack_assoc_id: assoc_t(assoc),
        sack_delay: v.delay_ms,
        sack_freq: v.freq,
    };
    set(fd, libc::IPPROTO_SCTP, libc::SCTP_DELAYED_SACK, &s)
}

/// `SCTP_MAX_BURST`.
pub(crate) fn max_burst(fd: BorrowedFd<'_>, assoc: AssocId) -> io::Result<u32> {
    let mut v = SctpAssocValue {
        assoc_id: assoc_t(assoc),
        assoc_value: 0,
    };
    get(fd, libc::IPPROTO_SCTP, libc::SCTP_MAX_BURST, &mut v)?;
    Ok(v.assoc_value)
}

/// `SCTP_MAX_BURST`.
pub(crate) fn set_max_burst(fd: BorrowedFd<'_>, assoc: AssocId, burst: u32) -> io::Result<()> {
    let v = SctpAssocValue {
        assoc_id: assoc_t(assoc),
        assoc_value: burst,
    };
    set(fd, libc::IPPROTO_SCTP, libc::SCTP_MAX_BURST, &v)
}

/// `SCTP_AUTOCLOSE` (seconds idle before an association is closed; 0 = never; socket-wide).
/// `SCTP_GET_ASSOC_ID_LIST`: the ids of the socket's current associations
/// (`struct sctp_assoc_ids { __u32 gaids_number_of_ids; sctp_assoc_t gaids_assoc_id[]; }`).
pub(crate) fn assoc_ids(fd: BorrowedFd<'_>) -> io::Result<Vec<AssocId>> {
    // The kernel fails with EINVAL when the buffer cannot hold the list: grow and retry.
    let mut cap = 256usize;
    loop {
        let mut buf = vec![0u8; 4 + 4 * cap];
        match get_bytes(
            fd,
            libc::IPPROTO_SCTP,
            libc::SCTP_GET_ASSOC_ID_LIST,
            &mut buf,
        ) {
            Ok(_) => {
                let n = buf
                    .get(..4)
                    .and_then(|b| b.try_into().ok())
                    .map(u32::from_ne_bytes)
                    .unwrap_or(0) as usize;
                return Ok(buf
                    .get(4..)
                    .unwrap_or_default()
                    .chunks_exact(4)
                    .take(n)
                    .filter_map(|c| c.try_into().ok())
                    .map(|b: [u8; 4]| assoc_id(SctpAssocT::from_ne_bytes(b)))
                    .collect());
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && cap < (1 << 20) => cap *= 8,
            Err(e) => return Err(e),
        }
    }
}

pub(crate) fn autoclose(fd: BorrowedFd<'_>) -> io::Result<u32> {
    get_sctp_int(fd, libc::SCTP_AUTOCLOSE).map(|v| v.cast_unsigned())
}

/// `SCTP_AUTOCLOSE`.
pub(crate) fn set_autoclose(fd: BorrowedFd<'_>, secs: u32) -> io::Result<()> {
    let v = libc::c_int::try_from(secs).map_err(|_| io::ErrorKind::InvalidInput)?;
    set_sctp_int(fd, libc::SCTP_AUTOCLOSE, v)
}

#[cfg(test)]
mod tests {
    use super::super::SCTP_FUTURE_ASSOC;
    use super::*;
    use std::mem::offset_of;

    #[test]
    fn status_layout() {
        assert_eq!(offset_of!(SctpPaddrinfo, spinfo_address), 4);
        assert_eq!(offset_of!(SctpPaddrinfo, spinfo_state), 132);
        assert_eq!(offset_of!(SctpPaddrinfo, spinfo_cwnd), 136);
        assert_eq!(offset_of!(SctpPaddrinfo, spinfo_srtt), 140);
        assert_eq!(offset_of!(SctpPaddrinfo, spinfo_rto), 144);
        assert_eq!(offset_of!(SctpPaddrinfo, spinfo_mtu), 148);
        assert_eq!(offset_of!(SctpStatus, sstat_rwnd), 8);
        assert_eq!(offset_of!(SctpStatus, sstat_unackdata), 12);
        assert_eq!(offset_of!(SctpStatus, sstat_outstrms), 18);
        assert_eq!(offset_of!(SctpStatus, sstat_fragmentation_point), 20);
        assert_eq!(super::super::SCTP_ALL_ASSOC, AssocId::ALL.get());
        assert_eq!(super::super::SCTP_CURRENT_ASSOC, AssocId::CURRENT.get());
        assert_eq!(SCTP_FUTURE_ASSOC, AssocId::FUTURE.get());
    }

    #[test]
    fn paddrinfo_conversion_maps_v4() {
        let mut p = empty_paddrinfo();
        p.spinfo_assoc_id = 7;
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:36060".parse().unwrap();
        p.spinfo_address = storage_of(&mapped);
        p.spinfo_state = 2;
        p.spinfo_srtt = 3;
        let info = paddrinfo_from(&p);
        assert_eq!(info.assoc_id, AssocId(7));
        assert_eq!(info.addr, Some("127.0.0.1:36060".parse().unwrap()));
        assert_eq!(info.state, PathState::Active);
        assert_eq!(info.srtt_ms, 3);
    }

    #[test]
    fn paddrparams_round_trip() {
        let v = PeerAddrParams {
            addr: Some("[2001:db8::9]:5060".parse().unwrap()),
            hb_interval_ms: 30_000,
            path_max_rxt: 5,
            path_mtu: 1400,
            sack_delay_ms: 200,
            flags: PeerAddrFlags::HB_ENABLE | PeerAddrFlags::SACKDELAY_ENABLE,
        };
        let b = encode_paddrparams(AssocId(12), &v);
        assert_eq!(&b[0..4], &12i32.to_ne_bytes());
        assert_eq!(&b[138..142], &1400u32.to_ne_bytes());
        assert_eq!(decode_paddrparams(&b), v);
        // Short buffers decode to zeros, never panic.
        let short = decode_paddrparams(&b[..140]);
        assert_eq!(short.path_mtu, 0);
        assert_eq!(short.path_max_rxt, 5);
    }
}
