//! The sockets: sending a whole SIP message on a connection without waiting, and reading
//! whole messages off it in batches.
//!
//! A [`Conn`] is one UDP socket, TCP connection, one-to-one SCTP association (`tokio-sctp`)
//! or one-to-many SCTP socket (`sipsctp-sctp`, many associations on one socket). Sending is
//! non-blocking from any task ([`Conn::send`]): the message goes to the kernel right away,
//! or, when the socket is full, into the connection's backlog, which a writer task
//! ([`Conn::run_writer`]) drains in order; so a full socket never stalls the caller, and a
//! TCP stream never interleaves two messages. Reading ([`read_loop`]) hands whole messages
//! (UDP datagrams, SCTP messages, TCP messages framed by `Content-Length`) to a handler, as
//! many as were ready at one wake-up, so that the handler takes its lock once per batch.

use std::{
    collections::VecDeque,
    future::Future,
    io,
    net::SocketAddr,
    ops::ControlFlow,
    pin::pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll, Waker},
};

use sipsctp_sctp::{AssocId, Incoming, SendTarget};
use tokio::{
    net::{TcpStream, UdpSocket},
    sync::Notify,
};

use crate::{answer::Batch, sip};

/// Largest SIP message read, bytes.
pub const MAX_MESSAGE: usize = 65_535;

/// Messages a backlog holds at most; beyond, sends fail.
const BACKLOG_LIMIT: usize = 200_000;

/// Where a message goes on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// The connection's peer (TCP, one-to-one SCTP).
    Peer,
    /// An address (UDP; one-to-many SCTP, which sets up the association if needed).
    Addr(SocketAddr),
    /// An association of a one-to-many SCTP socket.
    Assoc(AssocId),
}

/// The socket of a connection.
#[derive(Debug)]
pub enum Socket {
    /// A UDP socket.
    Udp(UdpSocket),
    /// A TCP connection.
    Tcp(TcpStream),
    /// A one-to-one SCTP association.
    SctpStream(tokio_sctp::SctpStream),
    /// A one-to-many SCTP socket.
    SctpMany(Box<sipsctp_sctp::SctpSocket>),
}

#[derive(Debug, Default)]
struct Backlog {
    queue: VecDeque<(Vec<u8>, Dest)>,
    /// The writer holds a message taken off the queue: later ones must queue behind it.
    busy: bool,
    closed: bool,
}

/// One connection: its socket and its send backlog.
#[derive(Debug)]
pub struct Conn {
    /// The socket.
    pub socket: Socket,
    backlog: Mutex<Backlog>,
    wake_writer: Notify,
}

fn sctp_err(e: sipsctp_sctp::Error) -> io::Error {
    let kind = e.kind();
    io::Error::new(kind, e)
}

/// Polls `fut` once (for APIs that offer no non-blocking call).
fn poll_once<F: Future>(fut: F) -> Option<F::Output> {
    let fut = pin!(fut);
    match fut.poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

fn would_block() -> io::Error {
    io::ErrorKind::WouldBlock.into()
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "connection closed")
}

impl Conn {
    /// A connection over `socket`.
    pub fn new(socket: Socket) -> Arc<Self> {
        Arc::new(Self {
            socket,
            backlog: Mutex::new(Backlog::default()),
            wake_writer: Notify::new(),
        })
    }

    /// The local address of the socket.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.socket {
            Socket::Udp(s) => s.local_addr(),
            Socket::Tcp(s) => s.local_addr(),
            Socket::SctpStream(s) => s.local_addr(),
            Socket::SctpMany(s) => s.local_addr().map_err(sctp_err),
        }
    }

    fn sctp_opts() -> sipsctp_sctp::SendOptions {
        sipsctp_sctp::SendOptions::default()
    }

    /// One non-blocking attempt: bytes taken (all, or a prefix on TCP).
    fn try_raw(&self, msg: &[u8], dest: Dest) -> io::Result<usize> {
        match (&self.socket, dest) {
            (Socket::Udp(s), Dest::Addr(a)) => s.try_send_to(msg, a),
            (Socket::Tcp(s), _) => s.try_write(msg),
            (Socket::SctpStream(s), _) => {
                poll_once(s.sendmsg(msg, None, &tokio_sctp::SendOptions::default()))
                    .unwrap_or_else(|| Err(would_block()))
            }
            (Socket::SctpMany(s), Dest::Addr(a)) => s
                .try_send(msg, SendTarget::Addr(a), &Self::sctp_opts())
                .map_err(sctp_err),
            (Socket::SctpMany(s), Dest::Assoc(id)) => s
                .try_send(msg, SendTarget::Assoc(id), &Self::sctp_opts())
                .map_err(sctp_err),
            (Socket::Udp(_), Dest::Peer | Dest::Assoc(_)) | (Socket::SctpMany(_), Dest::Peer) => {
                Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "no destination for an unconnected socket",
                ))
            }
        }
    }

    /// Sends `msg` whole, waiting as long as needed.
    async fn send_wait(&self, msg: &[u8], dest: Dest) -> io::Result<()> {
        match (&self.socket, dest) {
            (Socket::Udp(s), Dest::Addr(a)) => s.send_to(msg, a).await.map(drop),
            (Socket::Tcp(s), _) => {
                let mut rest = msg;
                while !rest.is_empty() {
                    s.writable().await?;
                    match s.try_write(rest) {
                        Ok(n) => rest = rest.get(n..).unwrap_or_default(),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
            (Socket::SctpStream(s), _) => s
                .sendmsg(msg, None, &tokio_sctp::SendOptions::default())
                .await
                .map(drop),
            (Socket::SctpMany(s), Dest::Addr(a)) => s
                .send(msg, SendTarget::Addr(a), &Self::sctp_opts())
                .await
                .map(drop)
                .map_err(sctp_err),
            (Socket::SctpMany(s), Dest::Assoc(id)) => s
                .send(msg, SendTarget::Assoc(id), &Self::sctp_opts())
                .await
                .map(drop)
                .map_err(sctp_err),
            (Socket::Udp(_), Dest::Peer | Dest::Assoc(_)) | (Socket::SctpMany(_), Dest::Peer) => {
                Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "no destination",
                ))
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Backlog> {
        self.backlog.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends one whole message now, or queues it behind the ones that could not go yet.
    ///
    /// # Errors
    ///
    /// The kernel refused it (other than "full"), the connection is closed, or the backlog
    /// is full.
    pub fn send(&self, msg: &[u8], dest: Dest) -> io::Result<()> {
        let valid = match (&self.socket, dest) {
            (Socket::Udp(_), Dest::Addr(_)) => true,
            (Socket::Udp(_), _) | (Socket::SctpMany(_), Dest::Peer) => false,
            _ => true,
        };
        if !valid {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no destination",
            ));
        }
        let mut bl = self.lock();
        if bl.closed {
            return Err(closed());
        }
        if bl.busy || !bl.queue.is_empty() {
            if bl.queue.len() >= BACKLOG_LIMIT {
                return Err(io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    "send backlog full",
                ));
            }
            bl.queue.push_back((msg.to_vec(), dest));
            return Ok(());
        }
        let rest = match self.try_raw(msg, dest) {
            Ok(n) if n >= msg.len() => return Ok(()),
            // A stream took a prefix: the rest goes first when the socket drains.
            Ok(n) => msg.get(n..).unwrap_or_default(),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => msg,
            Err(e) => return Err(e),
        };
        bl.queue.push_back((rest.to_vec(), dest));
        drop(bl);
        self.wake_writer.notify_one();
        Ok(())
    }

    /// Drains the backlog whenever [`send`](Self::send) leaves messages in it. Runs until
    /// the connection is closed or fails; `on_error` gets each message it could not send.
    pub async fn run_writer(self: Arc<Self>, mut on_error: impl FnMut(&[u8], io::Error)) {
        loop {
            self.wake_writer.notified().await;
            if self.lock().closed {
                return;
            }
            loop {
                let item = {
                    let mut bl = self.lock();
                    let item = bl.queue.pop_front();
                    bl.busy = item.is_some();
                    item
                };
                let Some((msg, dest)) = item else { break };
                if let Err(e) = self.send_wait(&msg, dest).await {
                    let stream = matches!(self.socket, Socket::Tcp(_) | Socket::SctpStream(_));
                    if stream {
                        // The stream is broken: fail everything queued behind it too.
                        let queued: Vec<_> = {
                            let mut bl = self.lock();
                            bl.closed = true;
                            bl.busy = false;
                            bl.queue.drain(..).collect()
                        };
                        on_error(&msg, e);
                        for (m, _) in queued {
                            on_error(&m, closed());
                        }
                        return;
                    }
                    on_error(&msg, e);
                }
            }
        }
    }

    /// Marks the connection closed: later sends fail, the writer stops.
    pub fn close(&self) {
        self.lock().closed = true;
        self.wake_writer.notify_one();
    }
}

/// What a reader hands over: the messages and where each came from.
#[derive(Debug, Default)]
pub struct Received {
    /// The messages.
    pub msgs: Batch,
    /// Their sources, to answer them.
    pub from: Vec<Dest>,
}

/// Messages handled per batch at most (UDP), so that one busy socket cannot hold the
/// handler's lock for long.
const BATCH: usize = 64;

/// Reads whole messages off `conn` until it closes or fails, calling `handler` once per
/// batch, until the handler breaks. Returns why it stopped.
pub async fn read_loop(
    conn: &Conn,
    mut handler: impl FnMut(&Received) -> ControlFlow<()>,
) -> io::Result<()> {
    let mut rx = Received::default();
    match &conn.socket {
        Socket::Udp(s) => {
            let mut buf = vec![0u8; MAX_MESSAGE];
            loop {
                s.readable().await?;
                rx.msgs.clear();
                rx.from.clear();
                while rx.from.len() < BATCH {
                    match s.try_recv_from(&mut buf) {
                        Ok((n, src)) => {
                            rx.msgs
                                .buf
                                .extend_from_slice(buf.get(..n).unwrap_or_default());
                            rx.msgs.end_message();
                            rx.from.push(Dest::Addr(src));
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        // ICMP errors reported on the socket: nothing to read.
                        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                        Err(e) => return Err(e),
                    }
                }
                if !rx.from.is_empty() && handler(&rx).is_break() {
                    return Ok(());
                }
            }
        }
        Socket::Tcp(s) => {
            // Received bytes are buf[start..end]; whole messages are cut off the front.
            let mut buf = vec![0u8; 4 * MAX_MESSAGE];
            let (mut start, mut end) = (0, 0);
            loop {
                if end == buf.len() {
                    buf.copy_within(start..end, 0);
                    end -= start;
                    start = 0;
                }
                s.readable().await?;
                let n = match s.try_read(buf.get_mut(end..).unwrap_or_default()) {
                    Ok(0) => return Ok(()),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                };
                end += n;
                rx.msgs.clear();
                rx.from.clear();
                loop {
                    let rest = buf.get(start..end).unwrap_or_default();
                    match sip::frame(rest, MAX_MESSAGE) {
                        Ok(Some(total)) => {
                            let msg = rest.get(..total).unwrap_or_default();
                            let msg = msg.get(sip::leading_crlf(msg)..).unwrap_or_default();
                            rx.msgs.buf.extend_from_slice(msg);
                            rx.msgs.end_message();
                            rx.from.push(Dest::Peer);
                            start += total;
                        }
                        Ok(None) => break,
                        Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
                    }
                }
                if start == end {
                    (start, end) = (0, 0);
                }
                if !rx.from.is_empty() && handler(&rx).is_break() {
                    return Ok(());
                }
            }
        }
        Socket::SctpStream(s) => {
            let mut chunk = vec![0u8; MAX_MESSAGE];
            let mut partial: Vec<u8> = Vec::new();
            loop {
                let (n, flags) = {
                    let mut rb = tokio::io::ReadBuf::new(&mut chunk);
                    let (n, _info, flags) = s.recvmsg(&mut rb).await?;
                    (n, flags)
                };
                if n == 0 {
                    return Ok(());
                }
                let data = chunk.get(..n).unwrap_or_default();
                if flags.contains(tokio_sctp::RecvFlags::NOTIFICATION) {
                    continue;
                }
                if !flags.contains(tokio_sctp::RecvFlags::EOR) {
                    if partial.len() + data.len() > 4 * MAX_MESSAGE {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "message too large",
                        ));
                    }
                    partial.extend_from_slice(data);
                    continue;
                }
                rx.msgs.clear();
                rx.from.clear();
                rx.msgs.buf.extend_from_slice(&partial);
                rx.msgs.buf.extend_from_slice(data);
                partial.clear();
                rx.msgs.end_message();
                rx.from.push(Dest::Peer);
                if handler(&rx).is_break() {
                    return Ok(());
                }
            }
        }
        Socket::SctpMany(s) => loop {
            match s.recv().await {
                Ok(Incoming::Message { data, assoc_id, .. }) => {
                    rx.msgs.clear();
                    rx.from.clear();
                    rx.msgs.buf.extend_from_slice(&data);
                    rx.msgs.end_message();
                    rx.from.push(Dest::Assoc(assoc_id));
                    if handler(&rx).is_break() {
                        return Ok(());
                    }
                }
                Ok(Incoming::Notification { .. } | Incoming::Dropped { .. }) => {}
                // A malformed notification or message does not break the socket.
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {}
                Err(e) => return Err(sctp_err(e)),
            }
        },
    }
}

/// The source address the kernel would use to reach `target` (for `Via` and `Contact` when
/// a socket is bound to the wildcard address).
pub fn route_source(target: SocketAddr) -> io::Result<std::net::IpAddr> {
    let bind: SocketAddr = if target.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let s = std::net::UdpSocket::bind(bind)?;
    s.connect(target)?;
    Ok(s.local_addr()?.ip())
}

/// `addr` with its port increased by `k` (0 stays 0: any port).
pub fn nth_port(addr: SocketAddr, k: usize) -> SocketAddr {
    let mut a = addr;
    if a.port() != 0 {
        a.set_port(a.port().wrapping_add(u16::try_from(k).unwrap_or(0)));
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn tcp_messages_are_framed_and_backlogged_in_order() {
        rt().block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let client = TcpStream::connect(addr).await.unwrap();
            let (server, _) = l.accept().await.unwrap();
            let tx = Conn::new(Socket::Tcp(client));
            let rx = Conn::new(Socket::Tcp(server));
            tokio::spawn(tx.clone().run_writer(|_, e| panic!("{e}")));
            // Enough to fill the socket buffers: some go through the backlog.
            let n = 3000;
            let body = "x".repeat(1000);
            for i in 0..n {
                let m = format!("SIP/2.0 200 OK\r\nCSeq: {i} BYE\r\nl: 1000\r\n\r\n{body}");
                tx.send(m.as_bytes(), Dest::Peer).unwrap();
            }
            let mut got = 0;
            let r = tokio::time::timeout(
                std::time::Duration::from_secs(20),
                read_loop(&rx, |b| {
                    for m in b.msgs.iter() {
                        let h = sip::Head::parse(m).unwrap();
                        let cseq = h.first(sip::Hdr::CSeq).unwrap().unwrap();
                        assert_eq!(cseq.value, format!("{got} BYE").as_bytes());
                        assert_eq!(m.len(), h.head_len + 1000);
                        got += 1;
                    }
                    if got == n {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                }),
            )
            .await;
            r.unwrap().unwrap();
            assert_eq!(got, n);
        });
    }

    #[test]
    fn udp_batches_carry_their_sources() {
        rt().block_on(async {
            let a = Conn::new(Socket::Udp(UdpSocket::bind("127.0.0.1:0").await.unwrap()));
            let b = Conn::new(Socket::Udp(UdpSocket::bind("127.0.0.1:0").await.unwrap()));
            let to = Dest::Addr(b.local_addr().unwrap());
            tokio::spawn(a.clone().run_writer(|_, e| panic!("{e}")));
            for _ in 0..10 {
                a.send(b"ping", to).unwrap();
            }
            assert!(a.send(b"ping", Dest::Peer).is_err());
            let mut n = 0;
            let r = tokio::time::timeout(
                std::time::Duration::from_millis(500),
                read_loop(&b, |rx| {
                    for (m, f) in rx.msgs.iter().zip(&rx.from) {
                        assert_eq!(m, b"ping");
                        assert_eq!(*f, Dest::Addr(a.local_addr().unwrap()));
                        n += 1;
                    }
                    ControlFlow::Continue(())
                }),
            )
            .await;
            assert!(r.is_err(), "read until the timeout");
            assert_eq!(n, 10);
            a.close();
            assert!(a.send(b"ping", to).is_err());
        });
    }

    #[test]
    fn ports() {
        let a: SocketAddr = "10.0.0.1:5060".parse().unwrap();
        assert_eq!(nth_port(a, 3).port(), 5063);
        assert_eq!(nth_port("10.0.0.1:0".parse().unwrap(), 3).port(), 0);
        assert!(
            route_source("127.0.0.1:9".parse().unwrap())
                .unwrap()
                .is_loopback()
        );
    }
}
