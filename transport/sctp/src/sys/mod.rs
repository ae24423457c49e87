//! The kernel boundary: every `unsafe` block and every `libc` name of this crate lives under
//! this module.
//!
//! It owns the raw socket ([`socket`]), the typed socket options ([`sockopt`]), the control
//! message buffers ([`cmsg`]), the `#[repr(C)]` mirrors of the parts of
//! `include/uapi/linux/sctp.h` that the `libc` crate lacks, and the byte-level conversion
//! between [`SocketAddr`] and `sockaddr_in` / `sockaddr_in6`. It never keeps per-association
//! state, never waits (all sockets are non-blocking) and never decides policy: the safe layer
//! above it does.

pub(crate) mod cmsg;
pub(crate) mod socket;
pub(crate) mod sockopt;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// `sctp_assoc_t`.
pub(crate) type SctpAssocT = libc::sctp_assoc_t;

/// `SCTP_FUTURE_ASSOC`, `SCTP_CURRENT_ASSOC`, `SCTP_ALL_ASSOC`: checked against
/// [`crate::types::AssocId`]'s constants by the tests.
#[cfg(test)]
pub(crate) const SCTP_FUTURE_ASSOC: u32 = libc::SCTP_FUTURE_ASSOC as u32;
#[cfg(test)]
pub(crate) const SCTP_CURRENT_ASSOC: u32 = libc::SCTP_CURRENT_ASSOC as u32;
#[cfg(test)]
pub(crate) const SCTP_ALL_ASSOC: u32 = libc::SCTP_ALL_ASSOC as u32;

/// Size of `struct sockaddr_in`.
pub(crate) const SOCKADDR_IN_LEN: usize = size_of::<libc::sockaddr_in>();
/// Size of `struct sockaddr_in6`.
pub(crate) const SOCKADDR_IN6_LEN: usize = size_of::<libc::sockaddr_in6>();
/// Size of `struct sockaddr_storage`.
pub(crate) const SOCKADDR_STORAGE_LEN: usize = size_of::<libc::sockaddr_storage>();

const AF_INET: u16 = libc::AF_INET as u16;
const AF_INET6: u16 = libc::AF_INET6 as u16;

/// Notification type numbers (`enum sctp_sn_type`), used both for `SCTP_EVENT`
/// subscriptions and for decoding notifications.
pub(crate) mod sn_type {
    /// `SCTP_ASSOC_CHANGE`.
    pub(crate) const ASSOC_CHANGE: u16 = 0x8001;
    /// `SCTP_PEER_ADDR_CHANGE`.
    pub(crate) const PEER_ADDR_CHANGE: u16 = 0x8002;
    /// `SCTP_SEND_FAILED` (the deprecated form, never subscribed here).
    #[cfg(test)]
    pub(crate) const SEND_FAILED: u16 = 0x8003;
    /// `SCTP_REMOTE_ERROR`.
    pub(crate) const REMOTE_ERROR: u16 = 0x8004;
    /// `SCTP_SHUTDOWN_EVENT`.
    pub(crate) const SHUTDOWN_EVENT: u16 = 0x8005;
    /// `SCTP_PARTIAL_DELIVERY_EVENT`.
    pub(crate) const PARTIAL_DELIVERY_EVENT: u16 = 0x8006;
    /// `SCTP_ADAPTATION_INDICATION`.
    #[cfg(test)]
    pub(crate) const ADAPTATION_INDICATION: u16 = 0x8007;
    /// `SCTP_AUTHENTICATION_EVENT`.
    #[cfg(test)]
    pub(crate) const AUTHENTICATION_EVENT: u16 = 0x8008;
    /// `SCTP_SENDER_DRY_EVENT`.
    pub(crate) const SENDER_DRY_EVENT: u16 = 0x8009;
    /// `SCTP_STREAM_RESET_EVENT`.
    #[cfg(test)]
    pub(crate) const STREAM_RESET_EVENT: u16 = 0x800a;
    /// `SCTP_ASSOC_RESET_EVENT`.
    #[cfg(test)]
    pub(crate) const ASSOC_RESET_EVENT: u16 = 0x800b;
    /// `SCTP_STREAM_CHANGE_EVENT`.
    #[cfg(test)]
    pub(crate) const STREAM_CHANGE_EVENT: u16 = 0x800c;
    /// `SCTP_SEND_FAILED_EVENT`.
    pub(crate) const SEND_FAILED_EVENT: u16 = 0x800d;
}

/// The receive flags of one message of a [`socket::Socket::recvmmsg`] batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecvFlags(i32);

impl RecvFlags {
    /// `MSG_EOR`: this read ended a message.
    pub(crate) fn end_of_record(self) -> bool {
        self.0 & libc::MSG_EOR != 0
    }
    /// `MSG_NOTIFICATION`: the bytes are a notification, not user data.
    pub(crate) fn notification(self) -> bool {
        self.0 & libc::MSG_NOTIFICATION != 0
    }
    /// `MSG_CTRUNC`: the control buffer was too small.
    pub(crate) fn ctrunc(self) -> bool {
        self.0 & libc::MSG_CTRUNC != 0
    }
}

/// A socket address in kernel byte layout (`sockaddr_in` or `sockaddr_in6`), built safely
/// byte by byte.
#[derive(Clone, Copy)]
pub(crate) struct RawAddr {
    bytes: [u8; SOCKADDR_IN6_LEN],
    len: usize,
}

impl RawAddr {
    /// The address's bytes (16 for IPv4, 28 for IPv6).
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&self.bytes)
    }
    /// The length as `socklen_t`.
    pub(crate) fn socklen(&self) -> libc::socklen_t {
        // The length is 16 or 28.
        self.len as libc::socklen_t
    }
}

/// Encodes `addr` as a `sockaddr_in` (IPv4) or `sockaddr_in6` (IPv6), in the kernel's layout.
pub(crate) fn sockaddr_bytes(addr: &SocketAddr) -> RawAddr {
    let mut bytes = [0u8; SOCKADDR_IN6_LEN];
    match addr {
        SocketAddr::V4(a) => {
            bytes[0..2].copy_from_slice(&AF_INET.to_ne_bytes());
            bytes[2..4].copy_from_slice(&a.port().to_be_bytes());
            bytes[4..8].copy_from_slice(&a.ip().octets());
            RawAddr {
                bytes,
                len: SOCKADDR_IN_LEN,
            }
        }
        SocketAddr::V6(a) => {
            bytes[0..2].copy_from_slice(&AF_INET6.to_ne_bytes());
            bytes[2..4].copy_from_slice(&a.port().to_be_bytes());
            bytes[4..8].copy_from_slice(&a.flowinfo().to_be_bytes());
            bytes[8..24].copy_from_slice(&a.ip().octets());
            bytes[24..28].copy_from_slice(&a.scope_id().to_ne_bytes());
            RawAddr {
                bytes,
                len: SOCKADDR_IN6_LEN,
            }
        }
    }
}

/// Decodes a `sockaddr_in` / `sockaddr_in6` from the start of `bytes`; returns the address and
/// the number of bytes its structure takes, or `None` for an unknown family or too few bytes.
/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) come back as IPv4.
pub(crate) fn sockaddr_from_bytes(bytes: &[u8]) -> Option<(SocketAddr, usize)> {
    let family = u16::from_ne_bytes(read_array(bytes, 0)?);
    let port = u16::from_be_bytes(read_array(bytes, 2)?);
    match family {
        AF_INET => {
            if bytes.len() < SOCKADDR_IN_LEN {
                return None;
            }
            let ip = Ipv4Addr::from(read_array::<4>(bytes, 4)?);
            Some((SocketAddr::V4(SocketAddrV4::new(ip, port)), SOCKADDR_IN_LEN))
        }
        AF_INET6 => {
            if bytes.len() < SOCKADDR_IN6_LEN {
                return None;
            }
            let flowinfo = u32::from_be_bytes(read_array(bytes, 4)?);
            let ip = Ipv6Addr::from(read_array::<16>(bytes, 8)?);
            let scope_id = u32::from_ne_bytes(read_array(bytes, 24)?);
            let addr = match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
                None => SocketAddr::V6(SocketAddrV6::new(ip, port, flowinfo, scope_id)),
            };
            Some((addr, SOCKADDR_IN6_LEN))
        }
        _ => None,
    }
}

/// `N` bytes of `bytes` starting at `offset`, or `None` when they are not all there.
pub(crate) fn read_array<const N: usize>(bytes: &[u8], offset: usize) -> Option<[u8; N]> {
    let end = offset.checked_add(N)?;
    bytes.get(offset..end)?.try_into().ok()
}

/// Whether sendmsg(2) by association id failed because the association is gone or shutting
/// down (`EPIPE`, or `EINVAL` for an id the kernel no longer knows).
pub(crate) fn is_stale_assoc_errno(code: i32) -> bool {
    code == libc::EPIPE || code == libc::EINVAL
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    #[test]
    fn layout_matches_libc() {
        assert_eq!(SOCKADDR_IN_LEN, 16);
        assert_eq!(SOCKADDR_IN6_LEN, 28);
        assert_eq!(SOCKADDR_STORAGE_LEN, 128);
        assert_eq!(offset_of!(libc::sockaddr_in, sin_port), 2);
        assert_eq!(offset_of!(libc::sockaddr_in, sin_addr), 4);
        assert_eq!(offset_of!(libc::sockaddr_in6, sin6_flowinfo), 4);
        assert_eq!(offset_of!(libc::sockaddr_in6, sin6_addr), 8);
        assert_eq!(offset_of!(libc::sockaddr_in6, sin6_scope_id), 24);
    }

    #[test]
    fn v4_round_trip() {
        let a: SocketAddr = "192.0.2.7:5060".parse().unwrap();
        let raw = sockaddr_bytes(&a);
        assert_eq!(raw.as_bytes().len(), 16);
        assert_eq!(&raw.as_bytes()[2..4], &[0x13, 0xc4]);
        assert_eq!(&raw.as_bytes()[4..8], &[192, 0, 2, 7]);
        assert_eq!(sockaddr_from_bytes(raw.as_bytes()), Some((a, 16)));
    }

    #[test]
    fn v4_matches_libc_struct() {
        let a: SocketAddr = "10.1.2.3:4242".parse().unwrap();
        let raw = sockaddr_bytes(&a);
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 4242u16.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes([10, 1, 2, 3]),
            },
            sin_zero: [0; 8],
        };
        let mut expect = Vec::new();
        expect.extend_from_slice(&sin.sin_family.to_ne_bytes());
        expect.extend_from_slice(&sin.sin_port.to_ne_bytes());
        expect.extend_from_slice(&sin.sin_addr.s_addr.to_ne_bytes());
        expect.extend_from_slice(&sin.sin_zero);
        assert_eq!(raw.as_bytes(), &expect[..]);
    }

    #[test]
    fn v6_round_trip_and_mapped() {
        let a: SocketAddr = "[2001:db8::1%3]:5061".parse().unwrap();
        let raw = sockaddr_bytes(&a);
        assert_eq!(raw.as_bytes().len(), 28);
        assert_eq!(sockaddr_from_bytes(raw.as_bytes()), Some((a, 28)));

        let mapped: SocketAddr = "[::ffff:127.0.0.1]:36060".parse().unwrap();
        let raw = sockaddr_bytes(&mapped);
        let v4: SocketAddr = "127.0.0.1:36060".parse().unwrap();
        assert_eq!(sockaddr_from_bytes(raw.as_bytes()), Some((v4, 28)));
    }

    #[test]
    fn garbage_addresses() {
        assert_eq!(sockaddr_from_bytes(&[]), None);
        assert_eq!(sockaddr_from_bytes(&[1]), None);
        let a: SocketAddr = "[2001:db8::1]:5061".parse().unwrap();
        let raw = sockaddr_bytes(&a);
        assert_eq!(sockaddr_from_bytes(&raw.as_bytes()[..27]), None);
        let b: SocketAddr = "1.2.3.4:5".parse().unwrap();
        let raw = sockaddr_bytes(&b);
        assert_eq!(sockaddr_from_bytes(&raw.as_bytes()[..15]), None);
        let mut unknown = [0u8; 28];
        unknown[0..2].copy_from_slice(&1u16.to_ne_bytes());
        assert_eq!(sockaddr_from_bytes(&unknown), None);
    }

    #[test]
    fn read_array_bounds() {
        assert_eq!(read_array::<2>(&[1, 2, 3], 1), Some([2, 3]));
        assert_eq!(read_array::<2>(&[1, 2, 3], 2), None);
        assert_eq!(read_array::<2>(&[1, 2, 3], usize::MAX), None);
    }
}
