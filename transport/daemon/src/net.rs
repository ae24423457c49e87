//! The daemon's UDP and TCP sides (SCTP is `sipsctp_sctp::endpoint`): sockets, receive loops
//! feeding one channel of [`Inbound`] messages, and sending to a destination without ever
//! waiting on a peer. TCP splits the byte stream into SIP messages with the framing function
//! it is given, keeps one connection per peer address with a bounded queue (messages and
//! bytes, and a global byte cap) drained by a writer task with a timeout per write, and opens
//! connections to upstreams on demand in their own task.

use std::{
    collections::HashMap,
    io,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use sipsctp_sip::driver::SendDrop;

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream, UdpSocket},
    sync::mpsc,
    task::JoinHandle,
};

use crate::config::Proto;

/// A SIP message as it arrived, before parsing.
#[derive(Debug)]
pub struct Inbound {
    /// Its transport.
    pub proto: Proto,
    /// Who sent it.
    pub peer: SocketAddr,
    /// Where it arrived (the listener's address).
    pub local: SocketAddr,
    /// For SCTP: the listener and association it came on.
    pub sctp: Option<(sipsctp_sctp::assoc::SocketId, sipsctp_sctp::AssocId)>,
    /// The bytes.
    pub data: Vec<u8>,
}

/// Why a framed TCP stream was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameVerdict {
    /// Not yet a whole message.
    Incomplete,
    /// The first message is this many bytes.
    Message(usize),
    /// The stream is not SIP (or breaks the limits): close it.
    Invalid(&'static str),
}

/// Splits a stream: what the SIP layer says about the bytes buffered so far.
pub type Framer = Arc<dyn Fn(&[u8]) -> FrameVerdict + Send + Sync>;

/// The UDP sockets, each with the address it is bound to (read once: sends pick a socket by
/// address family, and a `getsockname` per message would be wasted).
pub struct Udp {
    sockets: Vec<(Arc<UdpSocket>, SocketAddr)>,
}

impl Udp {
    /// Binds one socket per address.
    ///
    /// # Errors
    /// The first bind that fails, naming the address.
    pub async fn bind(addrs: &[SocketAddr]) -> Result<Udp, (SocketAddr, io::Error)> {
        let mut sockets = Vec::new();
        for a in addrs {
            let s = UdpSocket::bind(a).await.map_err(|e| (*a, e))?;
            let local = s.local_addr().map_err(|e| (*a, e))?;
            sockets.push((Arc::new(s), local));
        }
        Ok(Udp { sockets })
    }

    /// Bound addresses.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.sockets.iter().map(|(_, local)| *local).collect()
    }

    /// Starts one receive task per socket.
    pub fn spawn_receivers(&self, tx: mpsc::Sender<Inbound>, max: usize) -> Vec<JoinHandle<()>> {
        self.sockets
            .iter()
            .map(|(s, local)| {
                let (s, local) = (s.clone(), *local);
                let tx = tx.clone();
                tokio::spawn(async move {
                    // One byte more than the limit tells an oversized datagram from a full one.
                    let mut buf = vec![0u8; max + 1];
                    loop {
                        match s.recv_from(&mut buf).await {
                            Ok((n, peer)) => {
                                let data = buf.get(..n).unwrap_or_default().to_vec();
                                let msg = Inbound {
                                    proto: Proto::Udp,
                                    peer,
                                    local,
                                    sctp: None,
                                    data,
                                };
                                if tx.send(msg).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) => {
                                // ICMP errors of earlier sends show up here; keep serving.
                                tracing::debug!(%local, error = %e, "UDP receive error");
                            }
                        }
                    }
                })
            })
            .collect()
    }

    /// Sends without waiting: from the socket bound to `from` when given, else from the first
    /// socket of `dest`'s address family. A full socket buffer is a drop, never a wait.
    ///
    /// # Errors
    /// No socket of that family ([`SendDrop::NoTransport`]), the socket buffer is full
    /// ([`SendDrop::QueueFull`]), or the kernel refused ([`SendDrop::SendFailed`]).
    pub fn try_send(
        &self,
        from: Option<SocketAddr>,
        dest: SocketAddr,
        data: &[u8],
    ) -> Result<(), SendDrop> {
        let (s, _) = from
            .and_then(|f| self.sockets.iter().find(|(_, local)| *local == f))
            .filter(|(_, local)| local.is_ipv4() == dest.is_ipv4())
            .or_else(|| {
                self.sockets
                    .iter()
                    .find(|(_, local)| local.is_ipv4() == dest.is_ipv4())
            })
            .ok_or(SendDrop::NoTransport)?;
        match s.try_send_to(data, dest) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(SendDrop::QueueFull),
            Err(e) => {
                tracing::debug!(%dest, error = %e, "UDP send failed");
                Err(SendDrop::SendFailed)
            }
        }
    }
}

/// Counts messages a transport dropped after the relay handed them over (a connection that
/// could not be made, timed out or closed with data queued): the reason and how many.
pub type DropSink = Arc<dyn Fn(SendDrop, u64) + Send + Sync>;

/// Bounds of the TCP side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpLimits {
    /// Connections at once, accepted and opened (over it: accepted ones are closed, sends to
    /// a new destination dropped).
    pub max_connections: usize,
    /// Messages queued per connection.
    pub queue_messages: usize,
    /// Bytes queued per connection.
    pub queue_bytes: usize,
    /// Bytes queued over all connections.
    pub total_bytes: usize,
    /// Connecting to a destination.
    pub connect_timeout: Duration,
    /// Writing one message (a peer that does not read).
    pub write_timeout: Duration,
}

impl Default for TcpLimits {
    fn default() -> Self {
        Self {
            max_connections: 2048,
            queue_messages: 1024,
            queue_bytes: 1 << 20,
            total_bytes: 64 << 20,
            connect_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// A connection's send side: its writer task's queue and what it holds.
#[derive(Clone)]
struct Conn {
    id: u64,
    tx: mpsc::Sender<Vec<u8>>,
    bytes: Arc<AtomicUsize>,
}

/// The TCP side: listeners, and one connection per peer address. Sends never wait: each
/// connection has a writer task with a bounded queue; connecting happens in that task.
pub struct Tcp {
    listeners: Vec<SocketAddr>,
    conns: Mutex<HashMap<SocketAddr, Conn>>,
    next_id: AtomicU64,
    total_bytes: AtomicUsize,
    tx: mpsc::Sender<Inbound>,
    framer: Framer,
    max: usize,
    limits: TcpLimits,
    dropped: DropSink,
}

impl Tcp {
    /// Binds the listeners and starts their accept tasks.
    ///
    /// # Errors
    /// The first bind that fails, naming the address.
    pub async fn bind(
        addrs: &[SocketAddr],
        tx: mpsc::Sender<Inbound>,
        framer: Framer,
        max: usize,
        limits: TcpLimits,
        dropped: DropSink,
    ) -> Result<(Arc<Tcp>, Vec<JoinHandle<()>>), (SocketAddr, io::Error)> {
        let mut bound = Vec::new();
        let mut listeners = Vec::new();
        for a in addrs {
            let l = TcpListener::bind(a).await.map_err(|e| (*a, e))?;
            bound.push(l.local_addr().map_err(|e| (*a, e))?);
            listeners.push(l);
        }
        let tcp = Arc::new(Tcp {
            listeners: bound,
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            total_bytes: AtomicUsize::new(0),
            tx,
            framer,
            max,
            limits,
            dropped,
        });
        let tasks = listeners
            .into_iter()
            .map(|l| {
                let tcp = tcp.clone();
                tokio::spawn(async move {
                    loop {
                        match l.accept().await {
                            Ok((stream, peer)) => {
                                if tcp.conns().len() >= tcp.limits.max_connections {
                                    tracing::debug!(%peer, "TCP connection limit reached; closing");
                                    drop(stream);
                                    continue;
                                }
                                let (conn, rx) = tcp.new_conn();
                                tcp.conns().insert(peer, conn.clone());
                                tcp.start(stream, peer, conn, rx);
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "TCP accept failed");
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                    }
                })
            })
            .collect();
        Ok((tcp, tasks))
    }

    /// Bound listener addresses.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.clone()
    }

    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Conn>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn new_conn(&self) -> (Conn, mpsc::Receiver<Vec<u8>>) {
        let (tx, rx) = mpsc::channel(self.limits.queue_messages.max(1));
        let conn = Conn {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            tx,
            bytes: Arc::new(AtomicUsize::new(0)),
        };
        (conn, rx)
    }

    /// Forgets `peer`'s connection if it is still `id` (a newer one may have replaced it).
    fn forget(&self, peer: SocketAddr, id: u64) {
        let mut conns = self.conns();
        if conns.get(&peer).is_some_and(|c| c.id == id) {
            conns.remove(&peer);
        }
    }

    /// Drops what is still queued for a connection that ended, counting it.
    fn discard(&self, conn: &Conn, rx: &mut mpsc::Receiver<Vec<u8>>, why: SendDrop) {
        rx.close();
        let mut n = 0u64;
        while let Ok(data) = rx.try_recv() {
            self.release(conn, data.len());
            n += 1;
        }
        if n > 0 {
            (self.dropped)(why, n);
        }
    }

    fn release(&self, conn: &Conn, len: usize) {
        conn.bytes.fetch_sub(len, Ordering::Relaxed);
        self.total_bytes.fetch_sub(len, Ordering::Relaxed);
    }

    /// Runs a connected stream: a reader task framing messages, a writer task draining the
    /// connection's queue with a timeout per message.
    fn start(
        self: &Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        conn: Conn,
        mut rx: mpsc::Receiver<Vec<u8>>,
    ) {
        let local = stream
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (mut rd, mut wr) = stream.into_split();
        let me = self.clone();
        let writer_conn = conn.clone();
        tokio::spawn(async move {
            while let Some(data) = rx.recv().await {
                let len = data.len();
                let r = tokio::time::timeout(me.limits.write_timeout, wr.write_all(&data)).await;
                me.release(&writer_conn, len);
                match r {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TCP write failed; closing");
                        (me.dropped)(SendDrop::SendFailed, 1);
                        break;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TCP write timed out (the peer does not read); closing");
                        (me.dropped)(SendDrop::QueueFull, 1);
                        break;
                    }
                }
            }
            me.forget(peer, writer_conn.id);
            me.discard(&writer_conn, &mut rx, SendDrop::QueueFull);
        });
        let me = self.clone();
        tokio::spawn(async move {
            let mut buf: Vec<u8> = Vec::with_capacity(8192);
            let mut chunk = vec![0u8; 16 * 1024];
            'conn: loop {
                match rd.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                }
                loop {
                    // CRLF keep-alives (RFC 5626) between messages.
                    let skip = buf
                        .iter()
                        .take_while(|b| **b == b'\r' || **b == b'\n')
                        .count();
                    buf.drain(..skip);
                    match (me.framer)(&buf) {
                        FrameVerdict::Incomplete => {
                            if buf.len() > me.max {
                                tracing::info!(%peer, "TCP message over the size limit; closing");
                                break 'conn;
                            }
                            break;
                        }
                        FrameVerdict::Message(len) => {
                            let data: Vec<u8> = buf.drain(..len.min(buf.len())).collect();
                            let msg = Inbound {
                                proto: Proto::Tcp,
                                peer,
                                local,
                                sctp: None,
                                data,
                            };
                            if me.tx.send(msg).await.is_err() {
                                break 'conn;
                            }
                        }
                        FrameVerdict::Invalid(why) => {
                            tracing::info!(%peer, reason = why, "invalid SIP framing on TCP; closing");
                            break 'conn;
                        }
                    }
                }
            }
            me.forget(peer, conn.id);
        });
    }

    /// Queues `data` for `dest` without waiting, opening a connection (in its own task) when
    /// there is none.
    ///
    /// # Errors
    /// The destination's queue is full in messages or bytes, all queues together hold the
    /// global cap, or there are too many connections already.
    pub fn try_send(self: &Arc<Self>, dest: SocketAddr, data: Vec<u8>) -> Result<(), SendDrop> {
        let len = data.len();
        if self.total_bytes.load(Ordering::Relaxed) + len > self.limits.total_bytes {
            return Err(SendDrop::QueuesFull);
        }
        let conn = {
            let mut conns = self.conns();
            match conns.get(&dest) {
                Some(c) => c.clone(),
                None => {
                    if conns.len() >= self.limits.max_connections {
                        return Err(SendDrop::TooManyDestinations);
                    }
                    let (conn, rx) = self.new_conn();
                    conns.insert(dest, conn.clone());
                    drop(conns);
                    self.connect(dest, conn.clone(), rx);
                    conn
                }
            }
        };
        if conn.bytes.load(Ordering::Relaxed) + len > self.limits.queue_bytes {
            return Err(SendDrop::QueueFull);
        }
        conn.bytes.fetch_add(len, Ordering::Relaxed);
        self.total_bytes.fetch_add(len, Ordering::Relaxed);
        match conn.tx.try_send(data) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.release(&conn, len);
                Err(match e {
                    mpsc::error::TrySendError::Full(_) => SendDrop::QueueFull,
                    mpsc::error::TrySendError::Closed(_) => {
                        self.forget(dest, conn.id);
                        SendDrop::SendFailed
                    }
                })
            }
        }
    }

    /// Connects to `dest` in a task of its own; what was queued meanwhile is sent once
    /// connected, or counted as dropped when connecting fails.
    fn connect(self: &Arc<Self>, dest: SocketAddr, conn: Conn, mut rx: mpsc::Receiver<Vec<u8>>) {
        let me = self.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(me.limits.connect_timeout, TcpStream::connect(dest)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    me.start(stream, dest, conn, rx);
                }
                Ok(Err(e)) => {
                    tracing::debug!(%dest, error = %e, "TCP connect failed");
                    me.forget(dest, conn.id);
                    me.discard(&conn, &mut rx, SendDrop::ConnectFailed);
                }
                Err(_) => {
                    tracing::debug!(%dest, "TCP connect timed out");
                    me.forget(dest, conn.id);
                    me.discard(&conn, &mut rx, SendDrop::ConnectFailed);
                }
            }
        });
    }
}
