//! The raw one-to-many SCTP socket: creation (`SOCK_SEQPACKET`, `IPPROTO_SCTP`, close-on-exec,
//! non-blocking), bind and `SCTP_SOCKOPT_BINDX_ADD` multi-homing, listen, local and peer
//! address lists, `recvmmsg` batches and single `sendmsg` calls with a control buffer.
//!
//! It owns the file descriptor ([`OwnedFd`]) and nothing else: no buffering, no reassembly,
//! no readiness tracking, no retry on `EAGAIN` (every call returns `WouldBlock` to its caller).

use std::{
    io,
    net::SocketAddr,
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd},
};

use super::{
    RawAddr, RecvFlags, SOCKADDR_STORAGE_LEN, SctpAssocT, cmsg::CmsgBuf, read_array,
    sockaddr_bytes, sockaddr_from_bytes, sockopt,
};

/// `SCTP_SOCKOPT_BINDX_ADD`: add addresses to a bound socket (a packed array of sockaddrs).
const SCTP_SOCKOPT_BINDX_ADD: libc::c_int = 100;
/// `SCTP_GET_PEER_ADDRS`: an association's peer addresses (`struct sctp_getaddrs`).
const SCTP_GET_PEER_ADDRS: libc::c_int = 108;
/// `SCTP_GET_LOCAL_ADDRS`: the socket's or an association's local addresses.
const SCTP_GET_LOCAL_ADDRS: libc::c_int = 109;
/// `offsetof(struct sctp_getaddrs, addrs)`: `sctp_assoc_t assoc_id; __u32 addr_num;`.
const GETADDRS_HEADER: usize = 8;

/// The address family of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    /// `AF_INET`: IPv4 only.
    V4,
    /// `AF_INET6`: IPv6, and IPv4 through v4-mapped addresses unless `IPV6_V6ONLY`.
    V6,
}

/// What the kernel returned for one message of a `recvmmsg` batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Received {
    /// Bytes written to the data buffer.
    pub(crate) len: usize,
    /// `msg_flags`.
    pub(crate) flags: RecvFlags,
    /// The sender (`msg_name`), when the kernel reported a known family.
    pub(crate) peer: Option<SocketAddr>,
    /// Bytes of control data written (`msg_controllen`).
    pub(crate) cmsg_len: usize,
}

/// An aligned buffer for one socket address returned by the kernel.
#[repr(C, align(8))]
struct AddrBuf([u8; SOCKADDR_STORAGE_LEN]);

/// Most messages one [`Socket::recvmmsg`] reads.
pub(crate) const RECV_BATCH_MAX: usize = 16;

/// One message's room in a [`Socket::recvmmsg`] batch: data, control data, sender, and what
/// the last call put there.
pub(crate) struct RecvSlot {
    /// The data buffer (its length is what is asked for).
    pub(crate) buf: Vec<u8>,
    /// The control buffer.
    pub(crate) cmsg: CmsgBuf,
    name: AddrBuf,
    /// What the last call read into this slot; `None` when it read nothing here.
    pub(crate) got: Option<Received>,
}

impl RecvSlot {
    /// A slot reading up to `size` bytes at once.
    pub(crate) fn new(size: usize) -> Self {
        Self {
            buf: vec![0; size],
            cmsg: CmsgBuf::new(),
            name: AddrBuf([0; SOCKADDR_STORAGE_LEN]),
            got: None,
        }
    }
}

/// A one-to-many (`SOCK_SEQPACKET`) SCTP socket. Closing it (drop) gracefully shuts down
/// every association it has.
#[derive(Debug)]
pub(crate) struct Socket {
    fd: OwnedFd,
}

impl Socket {
    /// Creates a non-blocking, close-on-exec one-to-many SCTP socket.
    pub(crate) fn new(family: Family) -> io::Result<Self> {
        let domain = match family {
            Family::V4 => libc::AF_INET,
            Family::V6 => libc::AF_INET6,
        };
        // SAFETY: plain syscall with constant arguments; the result is checked below.
        let fd = unsafe {
            libc::socket(
                domain,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::IPPROTO_SCTP,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by socket(2), is valid and owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd })
    }

    /// bind(2) to one address.
    pub(crate) fn bind(&self, addr: &SocketAddr) -> io::Result<()> {
        let raw = sockaddr_bytes(addr);
        let bytes = raw.as_bytes();
        // SAFETY: `bytes` is a valid, initialized sockaddr_in/sockaddr_in6 of `socklen()`
        // bytes that lives across the call; the kernel only reads it (copy_from_user, no
        // alignment requirement).
        let rc = unsafe {
            libc::bind(
                self.fd.as_raw_fd(),
                bytes.as_ptr().cast::<libc::sockaddr>(),
                raw.socklen(),
            )
        };
        cvt(rc).map(drop)
    }

    /// Adds addresses to the bound socket (`SCTP_SOCKOPT_BINDX_ADD`, multi-homing).
    pub(crate) fn bindx_add(&self, addrs: &[SocketAddr]) -> io::Result<()> {
        let packed = pack_addrs(addrs);
        if packed.is_empty() {
            return Ok(());
        }
        sockopt::set_bytes(
            self.as_fd(),
            libc::IPPROTO_SCTP,
            SCTP_SOCKOPT_BINDX_ADD,
            &packed,
        )
    }

    /// listen(2): lets the socket accept associations.
    pub(crate) fn listen(&self, backlog: i32) -> io::Result<()> {
        // SAFETY: plain syscall on an fd we own.
        let rc = unsafe { libc::listen(self.fd.as_raw_fd(), backlog) };
        cvt(rc).map(drop)
    }

    /// getsockname(2): one bound address (with the port the kernel chose for port 0).
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        let mut buf = AddrBuf([0; SOCKADDR_STORAGE_LEN]);
        let mut len = SOCKADDR_STORAGE_LEN as libc::socklen_t;
        // SAFETY: `buf` is writable for `len` bytes and `len` is a valid in/out length; both
        // outlive the call.
        let rc = unsafe {
            libc::getsockname(
                self.fd.as_raw_fd(),
                buf.0.as_mut_ptr().cast::<libc::sockaddr>(),
                &mut len,
            )
        };
        cvt(rc)?;
        let got = buf.0.get(..len as usize).unwrap_or(&buf.0);
        sockaddr_from_bytes(got)
            .map(|(a, _)| a)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unknown address family"))
    }

    /// `SCTP_GET_LOCAL_ADDRS`: the addresses the socket is bound to (`assoc` = 0) or that an
    /// association uses locally.
    pub(crate) fn local_addrs(&self, assoc: SctpAssocT) -> io::Result<Vec<SocketAddr>> {
        self.getaddrs(SCTP_GET_LOCAL_ADDRS, assoc)
    }

    /// `SCTP_GET_PEER_ADDRS`: an association's peer addresses.
    pub(crate) fn peer_addrs(&self, assoc: SctpAssocT) -> io::Result<Vec<SocketAddr>> {
        self.getaddrs(SCTP_GET_PEER_ADDRS, assoc)
    }

    fn getaddrs(&self, optname: libc::c_int, assoc: SctpAssocT) -> io::Result<Vec<SocketAddr>> {
        // The kernel fails with ENOMEM when the buffer is too small: grow and retry.
        let mut cap = 4096usize;
        loop {
            let mut buf = vec![0u8; cap];
            if let Some(head) = buf.get_mut(0..4) {
                head.copy_from_slice(&assoc.to_ne_bytes());
            }
            match sockopt::get_bytes(self.as_fd(), libc::IPPROTO_SCTP, optname, &mut buf) {
                Ok(_) => return Ok(parse_getaddrs(&buf)),
                Err(e) if e.raw_os_error() == Some(libc::ENOMEM) && cap < (1 << 20) => {
                    cap *= 4;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One recvmmsg(2): reads up to `slots.len()` (at most [`RECV_BATCH_MAX`]) messages,
    /// pieces of messages or notifications, each into its slot with its sender and ancillary
    /// data; returns how many slots were filled (their [`RecvSlot::got`] is set, the others'
    /// cleared). Fewer than asked means the socket had no more at that moment: the kernel
    /// stops the batch at the first `EAGAIN` (or at another error, which it then keeps for
    /// the next call).
    pub(crate) fn recvmmsg(&self, slots: &mut [RecvSlot]) -> io::Result<usize> {
        let n = slots.len().min(RECV_BATCH_MAX);
        // SAFETY: iovec and mmsghdr are plain C structs for which all-zero is a valid value.
        let mut iovs: [libc::iovec; RECV_BATCH_MAX] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut hdrs: [libc::mmsghdr; RECV_BATCH_MAX] = unsafe { std::mem::zeroed() };
        for ((slot, iov), hdr) in slots.iter_mut().zip(&mut iovs).zip(&mut hdrs).take(n) {
            slot.got = None;
            iov.iov_base = slot.buf.as_mut_ptr().cast();
            iov.iov_len = slot.buf.len();
            let m = &mut hdr.msg_hdr;
            m.msg_name = slot.name.0.as_mut_ptr().cast();
            m.msg_namelen = SOCKADDR_STORAGE_LEN as libc::socklen_t;
            m.msg_iov = iov;
            m.msg_iovlen = 1;
            let control = slot.cmsg.as_mut_bytes();
            m.msg_control = control.as_mut_ptr().cast();
            m.msg_controllen = control.len() as _;
        }
        for slot in slots.iter_mut().skip(n) {
            slot.got = None;
        }
        let vlen = libc::c_uint::try_from(n).unwrap_or(0);
        // SAFETY: the first `n` headers point at live, writable buffers of the stated lengths
        // (each slot's `name`, its iovec -> `buf`, its control buffer) and at iovecs in
        // `iovs`; none of them moves or is freed before the call returns. A null timeout is
        // allowed (the socket is non-blocking).
        let r = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                hdrs.as_mut_ptr(),
                vlen,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let filled = usize::try_from(r).unwrap_or(0).min(n);
        for (slot, hdr) in slots.iter_mut().zip(&hdrs).take(filled) {
            let m = &hdr.msg_hdr;
            let len = usize::try_from(hdr.msg_len)
                .unwrap_or(0)
                .min(slot.buf.len());
            let namelen = (m.msg_namelen as usize).min(SOCKADDR_STORAGE_LEN);
            let peer = slot
                .name
                .0
                .get(..namelen)
                .and_then(sockaddr_from_bytes)
                .map(|(a, _)| a);
            // `size_t` on glibc.
            let cmsg_len = m.msg_controllen.min(slot.cmsg.as_mut_bytes().len());
            slot.got = Some(Received {
                len,
                flags: RecvFlags(m.msg_flags),
                peer,
                cmsg_len,
            });
        }
        Ok(filled)
    }

    /// One sendmsg(2) of a whole message, to `to` (implicit association setup) or, when `None`,
    /// to the association named in the control data. Never raises SIGPIPE.
    pub(crate) fn sendmsg(
        &self,
        data: &[u8],
        to: Option<&RawAddr>,
        control: &[u8],
    ) -> io::Result<usize> {
        let mut iov = libc::iovec {
            iov_base: data.as_ptr().cast_mut().cast(),
            iov_len: data.len(),
        };
        // SAFETY: msghdr is a plain C struct for which all-zero is a valid value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        if let Some(addr) = to {
            msg.msg_name = addr.as_bytes().as_ptr().cast_mut().cast();
            msg.msg_namelen = addr.socklen();
        }
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if !control.is_empty() {
            msg.msg_control = control.as_ptr().cast_mut().cast();
            msg.msg_controllen = control.len() as _;
        }
        // SAFETY: every pointer in `msg` refers to a live buffer of the stated length that
        // sendmsg(2) only reads (the `*mut` casts are what the C prototype wants).
        let n = unsafe { libc::sendmsg(self.fd.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(usize::try_from(n).unwrap_or(0))
    }
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Registers the socket with tokio's reactor for `interest`.
///
/// # Panics
///
/// Outside a tokio runtime with IO enabled.
pub(crate) fn register(
    sock: Socket,
    interest: tokio::io::Interest,
) -> io::Result<tokio::io::unix::AsyncFd<Socket>> {
    // SAFETY: `Socket` owns its `OwnedFd`, which stays open until the `Socket` is dropped;
    // `as_raw_fd` always returns that same descriptor, and nothing replaces or closes it while
    // the `AsyncFd` owns the `Socket` (it is only closed by dropping the `Socket`).
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(sock, interest) }
        .map_err(|e| e.into_parts().1)
}

/// Turns a `-1` return into the thread's `errno`.
fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// The packed array of sockaddrs that `SCTP_SOCKOPT_BINDX_ADD` takes.
fn pack_addrs(addrs: &[SocketAddr]) -> Vec<u8> {
    let mut packed = Vec::with_capacity(addrs.len() * super::SOCKADDR_IN6_LEN);
    for a in addrs {
        packed.extend_from_slice(sockaddr_bytes(a).as_bytes());
    }
    packed
}

/// Parses a `struct sctp_getaddrs` answer: `addr_num` packed sockaddrs after the header.
/// Stops at the first entry that is unknown or runs past the buffer.
fn parse_getaddrs(buf: &[u8]) -> Vec<SocketAddr> {
    let count = read_array(buf, 4).map_or(0, u32::from_ne_bytes);
    let mut out = Vec::new();
    let mut rest = buf.get(GETADDRS_HEADER..).unwrap_or(&[]);
    for _ in 0..count {
        let Some((addr, used)) = sockaddr_from_bytes(rest) else {
            break;
        };
        out.push(addr);
        rest = rest.get(used..).unwrap_or(&[]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_mixed_families() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "[::1]:2".parse().unwrap();
        let packed = pack_addrs(&[a, b, a]);
        assert_eq!(packed.len(), 16 + 28 + 16);
    }

    #[test]
    fn getaddrs_parsing() {
        let a: SocketAddr = "127.0.0.1:36060".parse().unwrap();
        let b: SocketAddr = "[2001:db8::2]:36060".parse().unwrap();
        let mut buf = vec![0u8; 8];
        buf[4..8].copy_from_slice(&2u32.to_ne_bytes());
        buf.extend_from_slice(&pack_addrs(&[a, b]));
        assert_eq!(parse_getaddrs(&buf), vec![a, b]);
        // A count larger than what is there stops at the end, never panics.
        buf[4..8].copy_from_slice(&9u32.to_ne_bytes());
        assert_eq!(parse_getaddrs(&buf), vec![a, b]);
        // Truncated in the middle of the second entry.
        assert_eq!(parse_getaddrs(&buf[..8 + 16 + 10]), vec![a]);
        assert_eq!(parse_getaddrs(&buf[..3]), vec![]);
    }

    #[test]
    fn socket_creation_reports_errors() {
        // On a kernel without SCTP this is EPROTONOSUPPORT; with SCTP it succeeds. Either way
        // it must not panic and must not leak.
        match Socket::new(Family::V4) {
            Ok(s) => assert!(s.as_raw_fd() >= 0),
            Err(e) => assert!(e.raw_os_error().is_some()),
        }
    }
}
