//! [`SctpSocket`]: a one-to-many kernel SCTP socket on tokio, receiving whole messages and
//! notifications and sending messages to an association or an address, plus the socket
//! options the SIP transport tunes (status, peer address info, RTO, association and INIT
//! parameters, heartbeats, delayed SACK, max burst, autoclose, buffers).
//!
//! It owns the socket, its readiness registration and the reassembly of partial reads. It
//! never queues outgoing messages (a full send buffer is the caller's to handle, see
//! [`SctpSocket::try_send`]), never retries a failed send, and keeps no per-association state
//! beyond unfinished incoming messages.

use std::{
    collections::VecDeque,
    io,
    net::SocketAddr,
    os::fd::AsFd,
    sync::{Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use tokio::io::{Interest, Ready, unix::AsyncFd};

use crate::{
    error::{Error, Result},
    incoming::Incoming,
    reassembly::{Piece, Reassembler},
    sys::{
        cmsg::{self, CmsgBuf, SendControl, SendInfo},
        sockaddr_bytes,
        socket::{self, Family, Received, RecvSlot, Socket},
        sockopt::{self, Buffer},
    },
    types::{
        AssocId, AssocParams, AssocStatus, DelayedSack, EventSubscriptions, InitMsg, PeerAddrInfo,
        PeerAddrParams, RtoInfo,
    },
};

/// How [`SctpSocket::bind`] sets up the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketConfig {
    /// Largest incoming message delivered, bytes; larger ones are read, discarded and reported
    /// as [`Incoming::Dropped`]. Default 65 536.
    pub max_message_size: usize,
    /// Bytes asked for by the first read of each receive batch (the batch's other reads ask
    /// for at most 8 KiB); larger messages arrive in several reads and are joined.
    /// Default 65 536.
    pub read_chunk_size: usize,
    /// Bytes that unfinished incoming messages (read in pieces, waiting for their end) may
    /// hold in all; the message whose piece would cross it is given up and reported as
    /// [`DropReason::OverBudget`](crate::DropReason::OverBudget). Raised to
    /// `max_message_size` if below. Default 8 MiB.
    pub partial_bytes_limit: usize,
    /// `SCTP_PARTIAL_DELIVERY_POINT`, bytes: a message at least this large is handed up in
    /// pieces before it is complete (the kernel refuses more than half of `SO_RCVBUF`).
    /// `None` keeps the kernel's default. Default `None`.
    pub partial_delivery_point: Option<u32>,
    /// `SO_SNDBUF` to ask for (the kernel doubles it, capped by `net.core.wmem_max`).
    /// `None` keeps the default. Default `None`.
    pub send_buffer_size: Option<usize>,
    /// `SO_RCVBUF` to ask for (the kernel doubles it, capped by `net.core.rmem_max`); it also
    /// sets the receive window advertised to peers. `None` keeps the default. Default `None`.
    pub recv_buffer_size: Option<usize>,
    /// listen(2) backlog, so that peers can set up associations; `None` does not listen
    /// (a pure client). On a one-to-many socket any value above 0 just enables accepting.
    /// Default `Some(1024)`.
    pub backlog: Option<u32>,
    /// `SCTP_NODELAY` (no Nagle bundling delay). Default `true`.
    pub nodelay: bool,
    /// `SO_REUSEADDR`, so that a restarted process can bind its address while the
    /// associations of its previous socket are still shutting down. Default `true`.
    pub reuse_addr: bool,
    /// Notifications to subscribe to. Default: all.
    pub events: EventSubscriptions,
}

impl Default for SocketConfig {
    fn default() -> Self {
        Self {
            max_message_size: 65_536,
            read_chunk_size: 65_536,
            partial_bytes_limit: 8 << 20,
            partial_delivery_point: None,
            send_buffer_size: None,
            recv_buffer_size: None,
            backlog: Some(1024),
            nodelay: true,
            reuse_addr: true,
            events: EventSubscriptions::default(),
        }
    }
}

/// Where [`SctpSocket::send`] sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendTarget {
    /// An existing association.
    Assoc(AssocId),
    /// A peer address: the association to it, which the kernel sets up first if there is none.
    Addr(SocketAddr),
}

/// Per-message send parameters (`SCTP_SNDINFO`, `SCTP_PRINFO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendOptions {
    /// Stream id. Default 0.
    pub stream: u16,
    /// Unordered delivery (`SCTP_UNORDERED`). Default `true`, as RFC 4168 recommends for SIP.
    pub unordered: bool,
    /// Payload protocol identifier, as it should appear on the wire. Default 0.
    pub ppid: u32,
    /// Lifetime in milliseconds (PR-SCTP `SCTP_PR_SCTP_TTL`): the message is abandoned if not
    /// sent (or, with a PR-SCTP capable peer, not acknowledged) in time, and reported in a
    /// [`Notification::SendFailed`](crate::Notification::SendFailed). `None` = reliable.
    /// Default `None`.
    pub ttl_ms: Option<u32>,
    /// Opaque value returned in a [`Notification::SendFailed`](crate::Notification::SendFailed)
    /// for this message. Default 0.
    pub context: u32,
}

impl Default for SendOptions {
    fn default() -> Self {
        Self {
            stream: 0,
            unordered: true,
            ppid: 0,
            ttl_ms: None,
            context: 0,
        }
    }
}

/// Messages one receive reads at most (`recvmmsg`). The first slot asks for
/// [`SocketConfig::read_chunk_size`] bytes, the others for at most [`RECV_SLOT_SMALL`]: a
/// larger message landing in one of them comes in pieces, joined as any other.
const RECV_BATCH: usize = 8;
/// The size of every slot of a receive batch but the first, bytes (SIP messages are mostly
/// below 4 KB).
const RECV_SLOT_SMALL: usize = 8192;

const _: () = assert!(RECV_BATCH <= socket::RECV_BATCH_MAX);

/// Receive-side state, shared by concurrent `recv` calls.
struct RecvState {
    slots: Vec<RecvSlot>,
    /// Items of the last batch not returned yet, in the order read.
    done: VecDeque<Result<Incoming>>,
    reassembler: Reassembler,
}

impl RecvState {
    /// The next item read earlier and not returned yet.
    fn next(&mut self) -> Option<Result<Incoming>> {
        if let Some(r) = self.done.pop_front() {
            return Some(r);
        }
        self.reassembler.pop_ready().map(Ok)
    }

    /// One batch from `sock` into the reassembler and `done`; whether the socket ran dry
    /// (fewer messages than the batch holds, or `WouldBlock`).
    fn fill(&mut self, sock: &Socket) -> io::Result<bool> {
        let n = match sock.recvmmsg(&mut self.slots) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
            Err(e) => return Err(e),
        };
        let now = Instant::now();
        let Self {
            slots,
            done,
            reassembler,
        } = self;
        for slot in slots.iter().take(n) {
            let Some(got) = slot.got else { continue };
            let item = match piece_of(slot, got) {
                Ok(piece) => reassembler.push(piece, now).transpose(),
                Err(e) => Some(Err(e)),
            };
            done.extend(item);
            done.extend(std::iter::from_fn(|| reassembler.pop_ready()).map(Ok));
        }
        Ok(n < slots.len())
    }
}

/// The piece `got` describes in `slot`, or why it is not one.
fn piece_of(slot: &RecvSlot, got: Received) -> Result<Piece<'_>> {
    if got.len == 0 && !got.flags.end_of_record() {
        // A one-to-many socket never reports end of file.
        return Err(Error::socket(
            "recvmsg",
            io::Error::new(io::ErrorKind::UnexpectedEof, "recvmsg returned 0 bytes"),
        ));
    }
    let info = if got.flags.notification() {
        None
    } else {
        cmsg::parse_rcvinfo(&slot.cmsg, got.cmsg_len)
    };
    if info.is_none() && !got.flags.notification() && got.flags.ctrunc() {
        return Err(Error::Protocol("control data truncated (MSG_CTRUNC)"));
    }
    Ok(Piece {
        bytes: slot.buf.get(..got.len).unwrap_or(&[]),
        eor: got.flags.end_of_record(),
        notification: got.flags.notification(),
        peer: got.peer,
        info,
    })
}

/// A one-to-many (`SOCK_SEQPACKET`) kernel SCTP socket registered with tokio.
///
/// All methods take `&self`; the socket can be shared (e.g. in an `Arc`) between a receiving
/// task and any number of sending tasks. Dropping it closes the socket, which shuts down its
/// associations gracefully.
pub struct SctpSocket {
    fd: AsyncFd<Socket>,
    recv: Mutex<RecvState>,
    config: SocketConfig,
}

impl std::fmt::Debug for SctpSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SctpSocket")
            .field("socket", self.fd.get_ref())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn io_err(op: &'static str) -> impl FnOnce(io::Error) -> Error {
    move |e| Error::socket(op, e)
}

impl SctpSocket {
    /// Opens and closes an SCTP socket: fails when the kernel has no SCTP (loading the sctp
    /// module on demand when it can, as any SCTP socket does).
    ///
    /// # Errors
    /// What `socket(2)` said (`EPROTONOSUPPORT` without SCTP).
    pub fn kernel_supports_sctp() -> io::Result<()> {
        Socket::new(Family::V4).map(drop)
    }

    /// Creates a one-to-many SCTP socket bound to `addrs`: the first with bind(2), the others
    /// added with `SCTP_SOCKOPT_BINDX_ADD` (multi-homing; an extra address with port 0 gets the
    /// port of the first). The socket is IPv6 (`AF_INET6`) when any address is IPv6, else
    /// IPv4. Then it subscribes to `config.events`, enables `SCTP_RCVINFO`, sets
    /// `SCTP_FRAGMENT_INTERLEAVE` 1, `SCTP_NODELAY`, the buffer sizes and partial delivery
    /// point, and listens.
    ///
    /// # Fragment interleave
    ///
    /// Level 1, not 0: with 0, while one association is in partial delivery (the kernel
    /// hands up the start of a message that filled the receive window) the kernel parks every
    /// other association's data and notifications in the socket's `pd_lobby` until that
    /// message ends (`sctp_ulpq_tail_event`, net/sctp/ulpqueue.c), so one peer withholding
    /// the last fragment of a large message would starve every other peer of the socket.
    /// With 1 the other associations' events go to the receive queue as usual and several
    /// associations may be in partial delivery at once; the kernel still never interleaves
    /// two messages of one association (its own later messages and notifications wait in the
    /// lobby), and each piece carries its association id in `SCTP_RCVINFO`, by which the
    /// reassembler keeps them apart. Linux treats every level above 0 alike unless I-DATA
    /// (RFC 8260) is enabled. What a stuck message still holds is bounded by the reassembler
    /// (size, total bytes, age; see [`expire_partial`](Self::expire_partial)).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for an empty `addrs` or zero sizes in `config`;
    /// [`Error::Socket`] naming the first call that failed (e.g. `socket` with
    /// `EPROTONOSUPPORT` on a kernel without SCTP, `bind` with `EADDRINUSE`).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime with IO enabled (as `AsyncFd::new` does).
    pub fn bind(addrs: &[SocketAddr], config: &SocketConfig) -> Result<Self> {
        let Some((first, rest)) = addrs.split_first() else {
            return Err(Error::InvalidInput("no address to bind"));
        };
        if config.max_message_size == 0 || config.read_chunk_size == 0 {
            return Err(Error::InvalidInput(
                "max_message_size and read_chunk_size must be above 0",
            ));
        }
        let family = if addrs.iter().any(SocketAddr::is_ipv6) {
            Family::V6
        } else {
            Family::V4
        };
        let sock = Socket::new(family).map_err(io_err("socket"))?;
        let fd = sock.as_fd();
        if let Some(n) = config.send_buffer_size {
            sockopt::set_buffer(fd, Buffer::Send, n).map_err(io_err("setsockopt(SO_SNDBUF)"))?;
        }
        if let Some(n) = config.recv_buffer_size {
            sockopt::set_buffer(fd, Buffer::Receive, n).map_err(io_err("setsockopt(SO_RCVBUF)"))?;
        }
        if config.reuse_addr {
            sockopt::set_reuse_addr(fd, true).map_err(io_err("setsockopt(SO_REUSEADDR)"))?;
        }
        sock.bind(first).map_err(io_err("bind"))?;
        if !rest.is_empty() {
            let port = sock.local_addr().map_err(io_err("getsockname"))?.port();
            let extra: Vec<SocketAddr> = rest
                .iter()
                .map(|a| {
                    let mut a = *a;
                    if a.port() == 0 {
                        a.set_port(port);
                    }
                    a
                })
                .collect();
            sock.bindx_add(&extra)
                .map_err(io_err("setsockopt(SCTP_SOCKOPT_BINDX_ADD)"))?;
        }
        sockopt::subscribe(fd, AssocId::FUTURE, &config.events)
            .map_err(io_err("setsockopt(SCTP_EVENT)"))?;
        sockopt::set_recvrcvinfo(fd, true).map_err(io_err("setsockopt(SCTP_RECVRCVINFO)"))?;
        sockopt::set_fragment_interleave(fd, 1)
            .map_err(io_err("setsockopt(SCTP_FRAGMENT_INTERLEAVE)"))?;
        sockopt::set_nodelay(fd, config.nodelay).map_err(io_err("setsockopt(SCTP_NODELAY)"))?;
        if let Some(pd) = config.partial_delivery_point {
            sockopt::set_partial_delivery_point(fd, pd)
                .map_err(io_err("setsockopt(SCTP_PARTIAL_DELIVERY_POINT)"))?;
        }
        if let Some(backlog) = config.backlog {
            let backlog = i32::try_from(backlog).unwrap_or(i32::MAX).max(1);
            sock.listen(backlog).map_err(io_err("listen"))?;
        }
        let fd = socket::register(sock, Interest::READABLE | Interest::WRITABLE)
            .map_err(io_err("epoll registration"))?;
        Ok(Self {
            fd,
            recv: Mutex::new(RecvState {
                slots: (0..RECV_BATCH)
                    .map(|i| {
                        RecvSlot::new(if i == 0 {
                            config.read_chunk_size
                        } else {
                            config.read_chunk_size.min(RECV_SLOT_SMALL)
                        })
                    })
                    .collect(),
                done: VecDeque::new(),
                reassembler: Reassembler::new(
                    config.max_message_size,
                    config.partial_bytes_limit.max(config.max_message_size),
                ),
            }),
            config: config.clone(),
        })
    }

    /// The configuration the socket was made with.
    pub fn config(&self) -> &SocketConfig {
        &self.config
    }

    fn lock_recv(&self) -> MutexGuard<'_, RecvState> {
        // The state is consistent between statements, so a panic elsewhere cannot have left
        // it half-updated in a way that matters more than losing one message.
        self.recv.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Receives the next whole message, notification, or report of a dropped message.
    ///
    /// Messages read in pieces are joined per association up to
    /// [`SocketConfig::max_message_size`]; see [`Incoming::Dropped`] for the rest.
    ///
    /// # Errors
    ///
    /// [`Error::Socket`] when recvmsg(2) fails; [`Error::Notification`] or
    /// [`Error::Protocol`] when one message from the kernel is malformed. None of them breaks
    /// the socket: call `recv` again.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe. Every piece read from the kernel is folded into state kept inside the
    /// socket (behind a mutex held only during non-blocking reads, never across an await) and
    /// a completed item is returned in the same poll that completes it, so dropping the future
    /// loses nothing: the next call goes on where this one stopped. Concurrent calls are
    /// allowed and share that state (each item goes to exactly one caller).
    pub async fn recv(&self) -> Result<Incoming> {
        loop {
            if let Some(r) = self.lock_recv().next() {
                return r;
            }
            let mut ready = self
                .fd
                .ready(Interest::READABLE)
                .await
                .map_err(io_err("recvmsg"))?;
            let dry = self
                .lock_recv()
                .fill(ready.get_inner())
                .map_err(io_err("recvmsg"))?;
            // A short batch ended at the kernel's EAGAIN: clear the readiness now rather than
            // pay another call to hear it. (Readiness set by data that arrived since is kept:
            // tokio clears only the readiness this guard saw.)
            if dry {
                ready.clear_ready_matching(Ready::READABLE);
            }
        }
    }

    /// Gives up every incoming message still unfinished `max_age` after its first piece was
    /// read: its bytes are freed, the rest of it (if it ever comes) will be read and thrown
    /// away, and an [`Incoming::Dropped`] with
    /// [`DropReason::Expired`](crate::DropReason::Expired) is returned for each, once. The
    /// kernel keeps such an association in partial delivery (its later messages wait behind
    /// the unfinished one): aborting it is the caller's decision. Call it now and then (about
    /// once a second) beside [`recv`](Self::recv).
    pub fn expire_partial(&self, max_age: Duration) -> Vec<Incoming> {
        self.lock_recv().reassembler.expire(Instant::now(), max_age)
    }

    /// Bytes held now for unfinished incoming messages, and how many such messages there are.
    pub fn partial_held(&self) -> (usize, usize) {
        let guard = self.lock_recv();
        (
            guard.reassembler.partial_bytes(),
            guard.reassembler.partial_messages(),
        )
    }

    fn send_parts(
        &self,
        data: &[u8],
        to: SendTarget,
        opts: &SendOptions,
    ) -> Result<(Option<crate::sys::RawAddr>, CmsgBuf, usize)> {
        if data.is_empty() {
            return Err(Error::InvalidInput("empty message"));
        }
        let (addr, assoc_id) = match to {
            SendTarget::Assoc(id) => (None, id.get()),
            SendTarget::Addr(a) => (Some(sockaddr_bytes(&a)), 0),
        };
        let info = SendInfo {
            stream: opts.stream,
            unordered: opts.unordered,
            ppid: opts.ppid,
            context: opts.context,
            assoc_id,
            ttl_ms: opts.ttl_ms,
            control: SendControl::None,
        };
        let mut buf = CmsgBuf::new();
        let len = cmsg::build_send(&mut buf, &info);
        Ok((addr, buf, len))
    }

    /// Sends one whole message, waiting while the send buffer is full.
    ///
    /// Returns the number of bytes sent (all of `data`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for an empty `data`; [`Error::Socket`] when sendmsg(2) fails,
    /// e.g. `EINVAL` for an unknown association or stream, `EPIPE` for an association that is
    /// shutting down, `EMSGSIZE` for a message larger than the send buffer allows.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the message is handed to the kernel whole in a single call or not at all,
    /// so dropping the future before it completes means it was not sent.
    pub async fn send(&self, data: &[u8], to: SendTarget, opts: &SendOptions) -> Result<usize> {
        let (addr, buf, len) = self.send_parts(data, to, opts)?;
        self.fd
            .async_io(Interest::WRITABLE, |sock| {
                sock.sendmsg(data, addr.as_ref(), buf.prefix(len))
            })
            .await
            .map_err(io_err("sendmsg"))
    }

    /// Sends one whole message if the kernel takes it right away.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send), plus an error whose [`Error::is_would_block`] is true when the
    /// send buffer is full: then nothing was sent; wait with [`writable`](Self::writable) (or
    /// use `send`) and try again.
    pub fn try_send(&self, data: &[u8], to: SendTarget, opts: &SendOptions) -> Result<usize> {
        let (addr, buf, len) = self.send_parts(data, to, opts)?;
        let mut attempted = false;
        let first = self.fd.try_io(Interest::WRITABLE, |sock| {
            attempted = true;
            sock.sendmsg(data, addr.as_ref(), buf.prefix(len))
        });
        match first {
            // tokio has not seen the socket writable yet (e.g. right after bind): it may well
            // be. Try once without touching readiness; a failure leaves the (already clear)
            // readiness as it is, so a later `writable` waits for the kernel's wakeup.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && !attempted => self
                .fd
                .get_ref()
                .sendmsg(data, addr.as_ref(), buf.prefix(len))
                .map_err(io_err("sendmsg")),
            other => other.map_err(io_err("sendmsg")),
        }
    }

    /// Aborts association `assoc` (an ABORT chunk goes to the peer at once), with `reason` as
    /// the user-initiated abort reason the peer sees (RFC 6458 `SCTP_ABORT`). Its queued data
    /// is discarded; a COMM_LOST notification follows.
    ///
    /// # Errors
    ///
    /// [`Error::Socket`] when sendmsg(2) fails (e.g. `EINVAL` for an unknown association).
    pub fn abort(&self, assoc: AssocId, reason: &[u8]) -> Result<()> {
        self.control(assoc, reason, SendControl::Abort, "sendmsg(SCTP_ABORT)")
    }

    /// Stops accepting new associations (`listen(fd, 0)`): the kernel answers new INITs with
    /// ABORT; existing associations are not affected.
    ///
    /// # Errors
    ///
    /// [`Error::Socket`] when listen(2) fails.
    pub fn stop_listening(&self) -> Result<()> {
        self.fd
            .get_ref()
            .listen(0)
            .map_err(|e| Error::socket("listen(0)", e))
    }

    /// Shuts association `assoc` down gracefully (RFC 6458 `SCTP_EOF`): queued data is still
    /// delivered, then SHUTDOWN; a SHUTDOWN_COMP notification follows.
    ///
    /// # Errors
    ///
    /// [`Error::Socket`] when sendmsg(2) fails.
    pub fn shutdown_assoc(&self, assoc: AssocId) -> Result<()> {
        self.control(assoc, &[], SendControl::Eof, "sendmsg(SCTP_EOF)")
    }

    fn control(
        &self,
        assoc: AssocId,
        data: &[u8],
        control: SendControl,
        op: &'static str,
    ) -> Result<()> {
        let info = SendInfo {
            assoc_id: assoc.get(),
            control,
            ..SendInfo::default()
        };
        let mut buf = CmsgBuf::new();
        let len = cmsg::build_send(&mut buf, &info);
        self.fd
            .get_ref()
            .sendmsg(data, None, buf.prefix(len))
            .map(|_| ())
            .map_err(|e| Error::socket(op, e))
    }

    /// The ids of the socket's current associations, as the kernel lists them
    /// (`SCTP_GET_ASSOC_ID_LIST`).
    ///
    /// # Errors
    ///
    /// [`Error::Socket`] when the option fails.
    pub fn assoc_ids(&self) -> Result<Vec<AssocId>> {
        sockopt::assoc_ids(self.raw()).map_err(io_err("getsockopt(SCTP_GET_ASSOC_ID_LIST)"))
    }

    /// Waits until tokio reports the socket writable, i.e. a `try_send` is worth trying.
    ///
    /// # Errors
    ///
    /// [`Error::Socket`] if the readiness registration failed.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only waits.
    pub async fn writable(&self) -> Result<()> {
        let _guard = self
            .fd
            .writable()
            .await
            .map_err(io_err("wait for writability"))?;
        Ok(())
    }

    /// One of the bound addresses (getsockname(2); with several, not necessarily the first),
    /// with the port the kernel chose for port 0. [`local_addrs`](Self::local_addrs) lists
    /// them all.
    ///
    /// # Errors
    ///
    /// [`Error::Socket`] when getsockname(2) fails.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.fd
            .get_ref()
            .local_addr()
            .map_err(io_err("getsockname"))
    }

    /// All addresses the socket is bound to (`SCTP_GET_LOCAL_ADDRS`); for a wildcard bind,
    /// every local address it can use.
    ///
    /// # Errors
    ///
    /// [`Error::Socket`] when the option fails.
    pub fn local_addrs(&self) -> Result<Vec<SocketAddr>> {
        self.fd
            .get_ref()
            .local_addrs(0)
            .map_err(io_err("getsockopt(SCTP_GET_LOCAL_ADDRS)"))
    }

    /// The peer addresses of an association (`SCTP_GET_PEER_ADDRS`).
    ///
    /// # Errors
    ///
    /// [`Error::Socket`] (`EINVAL` for an unknown association).
    pub fn peer_addrs(&self, assoc: AssocId) -> Result<Vec<SocketAddr>> {
        self.fd
            .get_ref()
            .peer_addrs(assoc.get().cast_signed())
            .map_err(io_err("getsockopt(SCTP_GET_PEER_ADDRS)"))
    }

    fn raw(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.get_ref().as_fd()
    }

    /// `SCTP_STATUS`: an association's state, windows, queues, streams and primary path.
    ///
    /// # Errors
    ///
    /// [`Error::Socket`] (`EINVAL` for an unknown association).
    pub fn status(&self, assoc: AssocId) -> Result<AssocStatus> {
        sockopt::status(self.raw(), assoc).map_err(io_err("getsockopt(SCTP_STATUS)"))
    }

    /// `SCTP_GET_PEER_ADDR_INFO`: one peer address's state, cwnd, srtt, rto and MTU.
    /// `assoc` may be [`AssocId::FUTURE`] to find the association by the address.
    ///
    /// # Errors
    ///
    /// [`Error::Socket`] (`EINVAL` when the address is not a peer of the association).
    pub fn peer_addr_info(&self, assoc: AssocId, addr: SocketAddr) -> Result<PeerAddrInfo> {
        sockopt::peer_addr_info(self.raw(), assoc, &addr)
            .map_err(io_err("getsockopt(SCTP_GET_PEER_ADDR_INFO)"))
    }

    /// `SCTP_PARTIAL_DELIVERY_POINT`, bytes.
    ///
    /// # Errors
    ///
    /// [`Error::Socket`] when the option fails.
    pub fn partial_delivery_point(&self) -> Result<u32> {
        sockopt::partial_delivery_point(self.raw())
            .map_err(io_err("getsockopt(SCTP_PARTIAL_DELIVERY_POINT)"))
    }

    /// Sets `SCTP_PARTIAL_DELIVERY_POINT`, bytes.
    ///
    /// # Errors
    ///
    /// [`Error::Socket`] (`EINVAL` above half of `SO_RCVBUF`).
    pub fn set_partial_delivery_point(&self, bytes: u32) -> Result<()> {
        sockopt::set_partial_delivery_point(self.raw(), bytes)
            .map_err(io_err("setsockopt(SCTP_PARTIAL_DELIVERY_POINT)"))
    }

    /// `SCTP_NODELAY`.
    ///
    /// # Errors
    ///
    /// [`Error::Socket`] when the option fails.
    pub fn nodelay(&self) -> Result<bool> {
        sockopt::nodelay(self.raw()).map_err(io_err("getsockopt(SCTP_NODELAY)"))
    }

    /// Sets `SCTP_NODELAY`.
    ///
    /// # Errors
    ///
    /// [`Error::Socket`] when the option fails.
    pub fn set_nodelay(&self, on: bool) -> Result<()> {
        sockopt::set_nodelay(self.raw(), on).map_err(io_err("setsockopt(SCTP_NODELAY)"))
    }

    /// `SO_SNDBUF` in effect, bytes (twice what was asked for).
    ///
    /// # Errors
    ///
    /// [`Error::Socket`] when the option fails.
    pub fn send_buffer_size(&self) -> Result<usize> {
        sockopt::buffer(self.raw(), Buffer::Send).map_err(io_err("getsockopt(SO_SNDBUF)"))
    }

    /// Asks for `SO_SNDBUF` (the kernel doubles it, capped by `net.core.wmem_max`).
    ///
    /// # Errors
    ///
    /// [`Error::Socket`] when the option fails.
    pub fn set_send_buffer_size(&self, bytes: usize) -> Result<()> {
        sockopt::set_buffer(self.raw(), Buffer::Send, bytes)
            .map_err(io_err("setsockopt(SO_SNDBUF)"))
    }

    /// `SO_RCVBUF` in effect, bytes (twice what was asked for).
    ///
    /// # Errors
    ///
    /// [`Error::Socket`] when the option fails.
    pub fn recv_buffer_size(&self) -> Result<usize> {
        sockopt::buffer(self.raw(), Buffer::Receive).map_err(io_err("getsockopt(SO_RCVBUF)"))
    }

    /// Asks for `SO_RCVBUF` (the kernel doubles it, capped by `net.core.rmem_max`).
    ///
    /// # Errors
    ///
    /// [`Error::Socket`] when the option fails.
    pub fn set_recv_buffer_size(&self, bytes: usize) -> Result<()> {
        sockopt::set_buffer(self.raw(), Buffer::Receive, bytes)
            .map_err(io_err("setsockopt(SO_RCVBUF)"))
    }

    /// Changes the notification subscriptions (`SCTP_EVENT`) for `assoc`
    /// ([`AssocId::FUTURE`], [`AssocId::CURRENT`], [`AssocId::ALL`] or one association).
    ///
    /// # Errors
    ///
    /// [`Error::Socket`] when the option fails.
    pub fn subscribe(&self, assoc: AssocId, events: &EventSubscriptions) -> Result<()> {
        sockopt::subscribe(self.raw(), assoc, events).map_err(io_err("setsockopt(SCTP_EVENT)"))
    }

    /// `SCTP_RTOINFO` of `assoc` ([`AssocId::FUTURE`] = the socket's defaults).
    ///
    /// # Errors
    ///
    /// [`Error::Socket`] when the option fails.
    pub fn rto_info(&self, assoc: AssocId) -> Result<RtoInfo> {
        sockopt::rto_info(self.raw(), assoc).map_err(io_err("getsockopt(SCTP_RTOINFO)"))
    }

    /// Sets `SCTP_RTOINFO` (0 = unchanged).
    ///
    /// # Errors
    ///
    /// [`Error::Socket`] (`EINVAL` unless `min <= initial <= max`).
    pub fn set_rto_info(&self, assoc: AssocId, v: &RtoInfo) -> Result<()> {
        sockopt::set_rto_info(self.raw(), assoc, v).map_err(io_err("setsockopt(SCTP_RTOINFO)"))
    }

    /// `SCTP_ASSOCINFO` of `assoc`.
    ///
    /// # Errors
    ///
    /// [`Error::Socket`] when the option fails.
    pub fn assoc_params(&self, assoc: AssocId) -> Result<AssocParams> {
        sockopt::assoc_params(self.raw(), assoc).map_err(io_err("getsockopt(SCTP_ASSOCINFO)"))
    }

    /// Sets `SCTP_ASSOCINFO` (`max_retrans`, `cookie_life_ms`; 0 = unchanged).
    ///
    /// # Errors
    ///
    /// [`Error::Socket`] when the option fails.
    pub fn set_assoc_params(&self, assoc: AssocId, v: &AssocParams) -> Result<()> {
        sockopt::set_assoc_params(self.raw(), assoc, v)
            .map_err(io_err("setsockopt(SCTP_ASSOCINFO)"))
    }

    /// `SCTP_INITMSG` (socket-wide, for new associations).
    ///
    /// # Errors
    ///
    /// [`Error::Socket`] when the option fails.
    pub fn init_msg(&self) -> Result<InitMsg> {
        sockopt::init_msg(self.raw()).map_err(io_err("getsockopt(SCTP_INITMSG)"))
    }

    /// Sets `SCTP_INITMSG` (0 = unchanged).
    ///
    /// # Errors
    ///
    /// [`Error::Socket`] when the option fails.
    pub fn set_init_msg(&self, v: &InitMsg) -> Result<()> {
        sockopt::set_init_msg(self.raw(), v).map_err(io_err("setsockopt(SCTP_INITMSG)"))
    }

    /// `SCTP_PEER_ADDR_PARAMS` of `assoc`, for one peer address or (`None`) the
    /// association's / socket's defaults.
    ///
    /// # Errors
    ///
    /// [`Error::Socket`] when the option fails.
    pub fn peer_addr_params(
        &self,
        assoc: AssocId,
        addr: Option<SocketAddr>,
    ) -> Result<PeerAddrParams> {
        sockopt::peer_addr_params(self.raw(), assoc, addr)
            .map_err(io_err("getsockopt(SCTP_PEER_ADDR_PARAMS)"))
    }

    /// Sets `SCTP_PEER_ADDR_PARAMS` (heartbeat interval, path max retransmissions, ...).
    ///
    /// # Errors
    ///
    /// [`Error::Socket`] when the option fails.
    pub fn set_peer_addr_params(&self, assoc: AssocId, v: &PeerAddrParams) -> Result<()> {
        sockopt::set_peer_addr_params(self.raw(), assoc, v)
            .map_err(io_err("setsockopt(SCTP_PEER_ADDR_PARAMS)"))
    }

    /// `SCTP_DELAYED_SACK` of `assoc`.
    ///
    /// # Errors
    ///
    /// [`Error::Socket`] when the option fails.
    pub fn delayed_sack(&self, assoc: AssocId) -> Result<DelayedSack> {
        sockopt::delayed_sack(self.raw(), assoc).map_err(io_err("getsockopt(SCTP_DELAYED_SACK)"))
    }

    /// Sets `SCTP_DELAYED_SACK`.
    ///
    /// # Errors
    ///
    /// [`Error::Socket`] (`EINVAL` for a delay above 500 ms).
    pub fn set_delayed_sack(&self, assoc: AssocId, v: &DelayedSack) -> Result<()> {
        sockopt::set_delayed_sack(self.raw(), assoc, v)
            .map_err(io_err("setsockopt(SCTP_DELAYED_SACK)"))
    }

    /// `SCTP_MAX_BURST` of `assoc`.
    ///
    /// # Errors
    ///
    /// [`Error::Socket`] when the option fails.
    pub fn max_burst(&self, assoc: AssocId) -> Result<u32> {
        sockopt::max_burst(self.raw(), assoc).map_err(io_err("getsockopt(SCTP_MAX_BURST)"))
    }

    /// Sets `SCTP_MAX_BURST`.
    ///
    /// # Errors
    ///
    /// [`Error::Socket`] when the option fails.
    pub fn set_max_burst(&self, assoc: AssocId, burst: u32) -> Result<()> {
        sockopt::set_max_burst(self.raw(), assoc, burst)
            .map_err(io_err("setsockopt(SCTP_MAX_BURST)"))
    }

    /// `SCTP_AUTOCLOSE`, seconds (0 = never).
    ///
    /// # Errors
    ///
    /// [`Error::Socket`] when the option fails.
    pub fn autoclose(&self) -> Result<u32> {
        sockopt::autoclose(self.raw()).map_err(io_err("getsockopt(SCTP_AUTOCLOSE)"))
    }

    /// Sets `SCTP_AUTOCLOSE`: idle associations are shut down after `secs` (0 = never).
    ///
    /// # Errors
    ///
    /// [`Error::Socket`] when the option fails.
    pub fn set_autoclose(&self, secs: u32) -> Result<()> {
        sockopt::set_autoclose(self.raw(), secs).map_err(io_err("setsockopt(SCTP_AUTOCLOSE)"))
    }
}
