//! The daemon's UDP and TCP sides (SCTP is `sipsctp_sctp::endpoint`): sockets, receive loops
//! feeding one channel of [`Inbound`] messages, and sending to a destination without ever
//! waiting on a peer.
//!
//! TCP splits each connection's byte stream with the SIP layer's [`StreamFramer`] (linear in
//! the bytes however they are segmented; RFC 5626 double-CRLF pings answered with a CRLF),
//! keeps one connection per peer address with a bounded queue (messages and bytes, and a
//! global byte cap) drained by a writer task with a timeout per write, and opens connections
//! to upstreams on demand in their own task. Its resources are bounded ([`TcpLimits`]):
//! connections in total and per peer address, idle connections and messages that do not
//! complete are closed, an idle connection holds no receive buffer, and a failing `accept`
//! (descriptors exhausted) backs off. What happens to connections is reported as
//! [`TcpEvent`]s for the metrics.

use std::{
    collections::HashMap,
    io,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use sipsctp_sip::{Framed, StreamFramer, driver::SendDrop};

use tokio::{
    io::AsyncWriteExt as _,
    net::{TcpListener, TcpStream, UdpSocket, tcp::OwnedReadHalf},
    sync::{Notify, mpsc},
    task::JoinHandle,
    time::Instant,
};

use crate::{config::Proto, log_limit::LogLimit};

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

/// A new framer for each TCP connection (the SIP layer's [`StreamFramer`], with the daemon's
/// size limit).
pub type Framer = Arc<dyn Fn() -> StreamFramer + Send + Sync>;

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

/// What happens to TCP connections, for the metrics ([`TcpEvents`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpEvent {
    /// A connection was set up (accepted, or connected to a destination).
    Opened,
    /// A connection that was [`TcpEvent::Opened`] is closed.
    Closed(TcpClose),
    /// An incoming connection was closed right after `accept`: a limit was reached.
    Refused(TcpRefusal),
    /// `accept` failed (EMFILE, ENFILE, ENOBUFS, ...); the listener backs off.
    AcceptFailed,
}

/// Where [`TcpEvent`]s go.
pub type TcpEvents = Arc<dyn Fn(TcpEvent) + Send + Sync>;

/// Which limit refused an incoming connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpRefusal {
    /// `[tcp] max_connections` connections are open.
    MaxConnections,
    /// `[tcp] max_connections_per_ip` connections from the peer's address (its /64 for IPv6)
    /// are open.
    PerIpLimit,
}

impl TcpRefusal {
    /// Every limit, for pre-setting counters to 0.
    pub const ALL: [Self; 2] = [Self::MaxConnections, Self::PerIpLimit];

    /// The counter label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MaxConnections => "max_connections",
            Self::PerIpLimit => "per_ip_limit",
        }
    }
}

/// Why a TCP connection was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpClose {
    /// The peer closed it (or reset it).
    PeerClosed,
    /// No complete message nor keep-alive in either direction for `[tcp] idle_timeout_ms`.
    IdleTimeout,
    /// A message begun was not complete within `[tcp] message_timeout_ms` (a slow drip).
    MessageTimeout,
    /// The bytes are not SIP, or break the size limits.
    InvalidFraming,
    /// Reading failed.
    ReadFailed,
    /// A write failed or timed out (a peer that does not read).
    WriteFailed,
    /// The daemon is stopping.
    Stopping,
}

impl TcpClose {
    /// Every reason, for pre-setting counters to 0.
    pub const ALL: [Self; 7] = [
        Self::PeerClosed,
        Self::IdleTimeout,
        Self::MessageTimeout,
        Self::InvalidFraming,
        Self::ReadFailed,
        Self::WriteFailed,
        Self::Stopping,
    ];

    /// The counter label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::PeerClosed => "peer_closed",
            Self::IdleTimeout => "idle_timeout",
            Self::MessageTimeout => "message_timeout",
            Self::InvalidFraming => "invalid_framing",
            Self::ReadFailed => "read_failed",
            Self::WriteFailed => "write_failed",
            Self::Stopping => "stopping",
        }
    }
}

/// Bounds of the TCP side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpLimits {
    /// Connections at once, accepted and opened (over it: accepted ones are closed, sends to
    /// a new destination dropped).
    pub max_connections: usize,
    /// Accepted connections at once from one IP address (IPv6: one /64); over it they are
    /// closed right away.
    pub max_connections_per_ip: usize,
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
    /// A connection with no complete message or keep-alive, received or sent, for this long
    /// is closed.
    pub idle_timeout: Duration,
    /// A message whose first byte arrived this long ago and is still not complete closes
    /// its connection (a peer dripping bytes).
    pub message_timeout: Duration,
}

impl Default for TcpLimits {
    fn default() -> Self {
        Self {
            max_connections: 2048,
            max_connections_per_ip: 64,
            queue_messages: 1024,
            queue_bytes: 1 << 20,
            total_bytes: 64 << 20,
            connect_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            message_timeout: Duration::from_secs(30),
        }
    }
}

impl From<&crate::config::Tcp> for TcpLimits {
    fn from(c: &crate::config::Tcp) -> Self {
        Self {
            max_connections: c.max_connections,
            max_connections_per_ip: c.max_connections_per_ip,
            idle_timeout: c.idle_timeout,
            message_timeout: c.message_timeout,
            ..Self::default()
        }
    }
}

/// The key of the per-address limit: the address, or its /64 for IPv6 (one host usually
/// holds a whole /64).
fn ip_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        v4 => v4,
    }
}

/// Exponential back-off for an accept loop that fails (EMFILE: every accept fails at once
/// until a descriptor is free, and retrying at once would spin): 10 ms, doubling up to 1 s;
/// back to 10 ms after an accept succeeds.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    const MIN: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);

    const fn new() -> Self {
        Self { next: Self::MIN }
    }

    /// How long to wait after a failure.
    fn failed(&mut self) -> Duration {
        let wait = self.next;
        self.next = (wait * 2).min(Self::MAX);
        wait
    }

    const fn succeeded(&mut self) {
        self.next = Self::MIN;
    }
}

/// A connection's send side: its writer task's queue and what it holds.
#[derive(Clone)]
struct Conn {
    id: u64,
    tx: mpsc::Sender<Vec<u8>>,
    bytes: Arc<AtomicUsize>,
}

/// What a connection's reader and writer tasks share.
struct ConnState {
    /// The task that ends first wakes the other: the connection closes as a whole.
    closed: Notify,
    /// When the writer last wrote, in ms since [`Tcp::epoch`] (writes count as activity).
    wrote_ms: AtomicU64,
}

/// A connection's place under the limits, given back when the last of its tasks ends.
struct Slot {
    tcp: Arc<Tcp>,
    /// The per-address key, for accepted connections.
    ip: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.tcp.open.fetch_sub(1, Ordering::Relaxed);
        if let Some(ip) = self.ip {
            let mut per_ip = self.tcp.per_ip();
            if let Some(n) = per_ip.get_mut(&ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    per_ip.remove(&ip);
                }
            }
        }
    }
}

/// The TCP side: listeners, and one connection per peer address. Sends never wait: each
/// connection has a writer task with a bounded queue; connecting happens in that task.
///
/// Each connection has a reader task that frames what arrives with a [`StreamFramer`] (work
/// linear in the bytes, however they are segmented; RFC 5626 double-CRLF pings answered with
/// a CRLF), holds no receive buffer while nothing is pending, and closes the connection when
/// it is idle or a message takes too long ([`TcpLimits`]). Accepting is bounded in total and
/// per peer address, and backs off when `accept` fails (descriptors exhausted).
pub struct Tcp {
    listeners: Vec<SocketAddr>,
    conns: Mutex<HashMap<SocketAddr, Conn>>,
    /// Open connections per peer address key ([`ip_key`]), accepted ones only.
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Connections open or being opened.
    open: AtomicUsize,
    next_id: AtomicU64,
    total_bytes: AtomicUsize,
    epoch: Instant,
    tx: mpsc::Sender<Inbound>,
    framer: Framer,
    max: usize,
    limits: TcpLimits,
    dropped: DropSink,
    events: TcpEvents,
}

/// Bytes read at once.
const READ_CHUNK: usize = 16 * 1024;

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
        events: TcpEvents,
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
            per_ip: Mutex::new(HashMap::new()),
            open: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            total_bytes: AtomicUsize::new(0),
            epoch: Instant::now(),
            tx,
            framer,
            max,
            limits,
            dropped,
            events,
        });
        let tasks = listeners
            .into_iter()
            .map(|l| tokio::spawn(tcp.clone().accept_loop(l)))
            .collect();
        Ok((tcp, tasks))
    }

    /// Accepts connections on `l` until the task is aborted: refused (closed at once, counted,
    /// logged at most once a second per limit) over a limit; after an `accept` error it waits
    /// ([`Backoff`]) and logs at most once a second, with the number of failures held back.
    async fn accept_loop(self: Arc<Self>, l: TcpListener) {
        let mut backoff = Backoff::new();
        let mut logs: LogLimit<&'static str> = LogLimit::new(Duration::from_secs(1), 8);
        loop {
            match l.accept().await {
                Ok((stream, peer)) => {
                    backoff.succeeded();
                    match self.reserve(Some(peer.ip())) {
                        Ok(slot) => {
                            let (conn, rx) = self.new_conn();
                            self.conns().insert(peer, conn.clone());
                            self.start(stream, peer, conn, rx, slot);
                        }
                        Err(why) => {
                            (self.events)(TcpEvent::Refused(why));
                            if let Some(held_back) =
                                logs.check(why.as_str(), std::time::Instant::now())
                            {
                                tracing::warn!(
                                    %peer,
                                    limit = why.as_str(),
                                    max_connections = self.limits.max_connections,
                                    max_connections_per_ip = self.limits.max_connections_per_ip,
                                    not_logged_since_last = held_back,
                                    "TCP connection refused (counted in sipsctp_tcp_connections_refused_total)"
                                );
                            }
                            // A reset: no TIME_WAIT left behind for a peer opening connections
                            // in a loop.
                            let _ = stream.set_zero_linger();
                            drop(stream);
                        }
                    }
                }
                Err(e) => {
                    (self.events)(TcpEvent::AcceptFailed);
                    let wait = backoff.failed();
                    if let Some(held_back) = logs.check("accept", std::time::Instant::now()) {
                        tracing::warn!(
                            error = %e,
                            retry_in_ms = wait.as_millis() as u64,
                            not_logged_since_last = held_back,
                            "TCP accept failed; backing off (counted in sipsctp_tcp_accept_failures_total)"
                        );
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Bound listener addresses.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.clone()
    }

    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Conn>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn per_ip(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.per_ip.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for a new connection: from `peer` (accepted; the per-address limit applies)
    /// or to a destination (`None`).
    ///
    /// # Errors
    /// The limit that is reached.
    fn reserve(self: &Arc<Self>, peer: Option<IpAddr>) -> Result<Slot, TcpRefusal> {
        let max = self.limits.max_connections;
        self.open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .map_err(|_| TcpRefusal::MaxConnections)?;
        let key = peer.map(ip_key);
        if let Some(key) = key {
            let mut per_ip = self.per_ip();
            let n = per_ip.entry(key).or_insert(0);
            if *n >= self.limits.max_connections_per_ip {
                drop(per_ip);
                self.open.fetch_sub(1, Ordering::Relaxed);
                return Err(TcpRefusal::PerIpLimit);
            }
            *n += 1;
        }
        Ok(Slot {
            tcp: self.clone(),
            ip: key,
        })
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
    fn discard(&self, bytes: &AtomicUsize, rx: &mut mpsc::Receiver<Vec<u8>>, why: SendDrop) {
        rx.close();
        let mut n = 0u64;
        while let Ok(data) = rx.try_recv() {
            self.release(bytes, data.len());
            n += 1;
        }
        if n > 0 {
            (self.dropped)(why, n);
        }
    }

    fn release(&self, bytes: &AtomicUsize, len: usize) {
        bytes.fetch_sub(len, Ordering::Relaxed);
        self.total_bytes.fetch_sub(len, Ordering::Relaxed);
    }

    fn ms_since_epoch(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// Runs a connected stream: a reader task framing messages, a writer task draining the
    /// connection's queue with a timeout per message. When either ends, the other does too,
    /// and `slot` is given back once both have.
    fn start(
        self: &Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        conn: Conn,
        mut rx: mpsc::Receiver<Vec<u8>>,
        slot: Slot,
    ) {
        (self.events)(TcpEvent::Opened);
        let local = stream
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (rd, mut wr) = stream.into_split();
        let state = Arc::new(ConnState {
            closed: Notify::new(),
            wrote_ms: AtomicU64::new(0),
        });
        let slot = Arc::new(slot);
        let me = self.clone();
        let (id, bytes) = (conn.id, conn.bytes.clone());
        let (writer_state, writer_slot) = (state.clone(), slot.clone());
        // The writer holds no sender of its own queue: the queue closes once the connection
        // is forgotten and the senders the relay cloned are gone.
        tokio::spawn(async move {
            let _slot = writer_slot;
            let failed = loop {
                let data = tokio::select! {
                    biased;
                    () = writer_state.closed.notified() => break None,
                    data = rx.recv() => match data {
                        Some(d) => d,
                        None => break None,
                    },
                };
                let len = data.len();
                let r = tokio::time::timeout(me.limits.write_timeout, wr.write_all(&data)).await;
                me.release(&bytes, len);
                match r {
                    Ok(Ok(())) => {
                        let now = me.ms_since_epoch(Instant::now());
                        writer_state.wrote_ms.store(now, Ordering::Relaxed);
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TCP write failed; closing");
                        break Some(SendDrop::SendFailed);
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TCP write timed out (the peer does not read); closing");
                        break Some(SendDrop::QueueFull);
                    }
                }
            };
            if let Some(why) = failed {
                (me.dropped)(why, 1);
                writer_state.closed.notify_one();
            }
            me.forget(peer, id);
            me.discard(&bytes, &mut rx, SendDrop::QueueFull);
        });
        let me = self.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let why = me.read_loop(rd, peer, local, &conn, &state).await;
            state.closed.notify_one();
            me.forget(peer, conn.id);
            (me.events)(TcpEvent::Closed(why));
            tracing::debug!(%peer, reason = why.as_str(), "TCP connection closed");
        });
    }

    /// Reads and frames until the connection ends; returns why.
    async fn read_loop(
        &self,
        rd: OwnedReadHalf,
        peer: SocketAddr,
        local: SocketAddr,
        conn: &Conn,
        state: &ConnState,
    ) -> TcpClose {
        let mut framer = (self.framer)();
        // Empty (no allocation) while nothing is pending: an idle connection costs no buffer.
        let mut buf: Vec<u8> = Vec::new();
        let mut active = Instant::now();
        let mut message_began: Option<Instant> = None;
        loop {
            let deadline = match message_began {
                Some(t) => t + self.limits.message_timeout,
                None => active + self.limits.idle_timeout,
            };
            tokio::select! {
                biased;
                () = state.closed.notified() => return TcpClose::WriteFailed,
                r = rd.readable() => {
                    if r.is_err() {
                        return TcpClose::ReadFailed;
                    }
                }
                () = tokio::time::sleep_until(deadline) => {
                    if message_began.is_some() {
                        tracing::debug!(%peer, "TCP message not complete in time; closing");
                        return TcpClose::MessageTimeout;
                    }
                    let wrote = self.epoch
                        + Duration::from_millis(state.wrote_ms.load(Ordering::Relaxed));
                    if wrote > active {
                        active = wrote;
                        continue;
                    }
                    return TcpClose::IdleTimeout;
                }
            }
            {
                // Read onto the stack, then keep only what arrived: a readiness without data
                // (or a connection that only ever sends small messages) allocates nothing.
                // The array is not held across an await, so it is not part of the task.
                let mut chunk = [0u8; READ_CHUNK];
                match rd.try_read(&mut chunk) {
                    Ok(0) => return TcpClose::PeerClosed,
                    Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                        return TcpClose::PeerClosed;
                    }
                    Err(_) => return TcpClose::ReadFailed,
                }
            }
            let now = Instant::now();
            let mut taken = 0;
            loop {
                let rest = buf.get(taken..).unwrap_or_default();
                match framer.poll(rest) {
                    Ok(Framed::Incomplete) => break,
                    Ok(Framed::KeepAlive { len, pong }) => {
                        taken += len;
                        active = now;
                        if pong && let Err(why) = self.enqueue(conn, b"\r\n".to_vec()) {
                            tracing::debug!(%peer, reason = why.as_str(), "keep-alive pong not queued");
                        }
                    }
                    Ok(Framed::Message(len)) => {
                        let data = rest.get(..len).unwrap_or_default().to_vec();
                        taken += len;
                        active = now;
                        // What follows in this read is the next message: its own clock.
                        message_began = None;
                        let msg = Inbound {
                            proto: Proto::Tcp,
                            peer,
                            local,
                            sctp: None,
                            data,
                        };
                        if self.tx.send(msg).await.is_err() {
                            return TcpClose::Stopping;
                        }
                    }
                    Err(e) => {
                        tracing::info!(%peer, error = %e, "invalid SIP framing on TCP; closing");
                        return TcpClose::InvalidFraming;
                    }
                }
            }
            buf.drain(..taken);
            if buf.is_empty() {
                buf = Vec::new();
            } else if buf.len() > self.max + READ_CHUNK {
                // The framer refuses a message over the limit; this only guards the buffer.
                return TcpClose::InvalidFraming;
            }
            message_began = if framer.in_message() {
                message_began.or(Some(now))
            } else {
                None
            };
        }
    }

    /// Queues `data` on `conn` without waiting.
    ///
    /// # Errors
    /// The connection's queue is full in messages or bytes, all queues together hold the
    /// global cap, or the connection is closing.
    fn enqueue(&self, conn: &Conn, data: Vec<u8>) -> Result<(), SendDrop> {
        let len = data.len();
        if self.total_bytes.load(Ordering::Relaxed) + len > self.limits.total_bytes {
            return Err(SendDrop::QueuesFull);
        }
        if conn.bytes.load(Ordering::Relaxed) + len > self.limits.queue_bytes {
            return Err(SendDrop::QueueFull);
        }
        conn.bytes.fetch_add(len, Ordering::Relaxed);
        self.total_bytes.fetch_add(len, Ordering::Relaxed);
        conn.tx.try_send(data).map_err(|e| {
            self.release(&conn.bytes, len);
            match e {
                mpsc::error::TrySendError::Full(_) => SendDrop::QueueFull,
                mpsc::error::TrySendError::Closed(_) => SendDrop::SendFailed,
            }
        })
    }

    /// Queues `data` for `dest` without waiting, opening a connection (in its own task) when
    /// there is none.
    ///
    /// # Errors
    /// The destination's queue is full in messages or bytes, all queues together hold the
    /// global cap, or there are too many connections already.
    pub fn try_send(self: &Arc<Self>, dest: SocketAddr, data: Vec<u8>) -> Result<(), SendDrop> {
        if self.total_bytes.load(Ordering::Relaxed) + data.len() > self.limits.total_bytes {
            return Err(SendDrop::QueuesFull);
        }
        let conn = {
            let mut conns = self.conns();
            match conns.get(&dest) {
                Some(c) => c.clone(),
                None => {
                    let Ok(slot) = self.reserve(None) else {
                        return Err(SendDrop::TooManyDestinations);
                    };
                    let (conn, rx) = self.new_conn();
                    conns.insert(dest, conn.clone());
                    drop(conns);
                    self.connect(dest, conn.clone(), rx, slot);
                    conn
                }
            }
        };
        let r = self.enqueue(&conn, data);
        if r == Err(SendDrop::SendFailed) {
            self.forget(dest, conn.id);
        }
        r
    }

    /// Connects to `dest` in a task of its own; what was queued meanwhile is sent once
    /// connected, or counted as dropped when connecting fails.
    fn connect(
        self: &Arc<Self>,
        dest: SocketAddr,
        conn: Conn,
        mut rx: mpsc::Receiver<Vec<u8>>,
        slot: Slot,
    ) {
        let me = self.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(me.limits.connect_timeout, TcpStream::connect(dest)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    me.start(stream, dest, conn, rx, slot);
                }
                Ok(Err(e)) => {
                    tracing::debug!(%dest, error = %e, "TCP connect failed");
                    me.forget(dest, conn.id);
                    me.discard(&conn.bytes, &mut rx, SendDrop::ConnectFailed);
                }
                Err(_) => {
                    tracing::debug!(%dest, "TCP connect timed out");
                    me.forget(dest, conn.id);
                    me.discard(&conn.bytes, &mut rx, SendDrop::ConnectFailed);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex as StdMutex;
    use tokio::{io::AsyncReadExt as _, net::TcpSocket};

    const OPTIONS: &[u8] = b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn backoff_doubles_up_to_a_second_and_resets() {
        let mut b = Backoff::new();
        let waits: Vec<u64> = (0..10).map(|_| b.failed().as_millis() as u64).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        b.succeeded();
        assert_eq!(b.failed(), Duration::from_millis(10));
    }

    #[test]
    fn the_per_address_key_is_the_ipv4_address_or_the_ipv6_64() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(ip_key(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(ip_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(ip_key(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_eq!(
            ip_key(ip("2001:db8:1:2:ffff::1")),
            ip_key(ip("2001:db8:1:2::9"))
        );
        assert_ne!(ip_key(ip("2001:db8:1:3::1")), ip_key(ip("2001:db8:1:2::1")));
    }

    /// A TCP side on 127.0.0.1 with `limits`, its inbound queue and the events it reported.
    async fn tcp(
        limits: TcpLimits,
    ) -> (
        Arc<Tcp>,
        SocketAddr,
        mpsc::Receiver<Inbound>,
        Arc<StdMutex<Vec<TcpEvent>>>,
    ) {
        let (tx, rx) = mpsc::channel(64);
        let events = Arc::new(StdMutex::new(Vec::new()));
        let sink = events.clone();
        let limits_ = sipsctp_sip::Limits::DEFAULT;
        let (tcp, _tasks) = Tcp::bind(
            &["127.0.0.1:0".parse().unwrap()],
            tx,
            Arc::new(move || StreamFramer::new(limits_)),
            65_535,
            limits,
            Arc::new(|_, _| {}),
            Arc::new(move |e| sink.lock().unwrap().push(e)),
        )
        .await
        .unwrap();
        let addr = tcp.local_addrs()[0];
        (tcp, addr, rx, events)
    }

    async fn connect_from(src: [u8; 4], to: SocketAddr) -> TcpStream {
        let s = TcpSocket::new_v4().unwrap();
        s.bind(SocketAddr::from((src, 0))).unwrap();
        s.connect(to).await.unwrap()
    }

    /// Whether the daemon closed `s`: end of stream (or a reset) within `within`.
    async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
        let mut b = [0u8; 64];
        matches!(
            tokio::time::timeout(within, s.read(&mut b)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    fn count(events: &StdMutex<Vec<TcpEvent>>, e: TcpEvent) -> usize {
        events.lock().unwrap().iter().filter(|x| **x == e).count()
    }

    #[tokio::test]
    async fn a_double_crlf_ping_is_answered_with_one_crlf_a_lone_crlf_is_not() {
        let (_tcp, addr, mut rx, _) = tcp(TcpLimits::default()).await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"\r\n\r\n").await.unwrap();
        let mut pong = [0u8; 8];
        let n = tokio::time::timeout(Duration::from_secs(2), c.read(&mut pong))
            .await
            .expect("a pong within 2 s")
            .unwrap();
        assert_eq!(&pong[..n], b"\r\n");
        // A lone CRLF: no answer; then a message, framed as usual.
        c.write_all(b"\r\n").await.unwrap();
        let silent = tokio::time::timeout(Duration::from_millis(300), c.read(&mut pong)).await;
        assert!(silent.is_err(), "a lone CRLF was answered: {silent:?}");
        c.write_all(OPTIONS).await.unwrap();
        let m = tokio::time::timeout(Duration::from_secs(2), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.data, OPTIONS);
        // A ping cut in two segments is a ping too.
        c.write_all(b"\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        c.write_all(b"\r\n").await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(2), c.read(&mut pong))
            .await
            .expect("a pong within 2 s")
            .unwrap();
        assert_eq!(&pong[..n], b"\r\n");
    }

    #[tokio::test]
    async fn idle_connections_and_slow_messages_are_closed_keep_alives_keep_one_open() {
        let limits = TcpLimits {
            idle_timeout: Duration::from_millis(800),
            message_timeout: Duration::from_millis(600),
            ..TcpLimits::default()
        };
        let (tcp, addr, mut rx, events) = tcp(limits).await;
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let mut drip = TcpStream::connect(addr).await.unwrap();
        let mut pinger = TcpStream::connect(addr).await.unwrap();
        let t0 = std::time::Instant::now();
        // The drip sends a byte every 100 ms: activity, but its message never completes.
        // The pinger sends a ping every 200 ms and reads its pongs.
        let mut pongs = 0;
        for (i, b) in OPTIONS.iter().take(12).enumerate() {
            // Fails once the daemon has closed it.
            let _ = drip.write_all(&[*b]).await;
            if i % 2 == 0 {
                pinger.write_all(b"\r\n\r\n").await.unwrap();
                let mut p = [0u8; 2];
                tokio::time::timeout(Duration::from_secs(1), pinger.read_exact(&mut p))
                    .await
                    .expect("pong")
                    .unwrap();
                pongs += 1;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(pongs >= 6);
        assert!(
            closed_within(&mut silent, Duration::from_millis(100)).await,
            "idle one open"
        );
        assert!(
            closed_within(&mut drip, Duration::from_millis(100)).await,
            "drip open"
        );
        // The pinger, whose last ping was 200 ms ago, is open, then closed once idle.
        assert!(
            !closed_within(&mut pinger, Duration::from_millis(200)).await,
            "pinger closed"
        );
        assert!(
            closed_within(&mut pinger, Duration::from_secs(2)).await,
            "pinger never closed"
        );
        assert!(t0.elapsed() >= Duration::from_millis(1200));
        assert_eq!(count(&events, TcpEvent::Closed(TcpClose::IdleTimeout)), 2);
        assert_eq!(
            count(&events, TcpEvent::Closed(TcpClose::MessageTimeout)),
            1
        );
        assert!(rx.try_recv().is_err(), "nothing was a message");
        // Both tasks of each connection ended: their places are given back.
        assert!(
            wait(|| tcp.open.load(Ordering::Relaxed) == 0).await,
            "open: {}",
            tcp.open.load(Ordering::Relaxed)
        );
    }

    async fn wait(mut cond: impl FnMut() -> bool) -> bool {
        for _ in 0..100 {
            if cond() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    #[tokio::test]
    async fn connections_are_limited_per_address_and_in_total_and_given_back() {
        let limits = TcpLimits {
            max_connections: 3,
            max_connections_per_ip: 2,
            ..TcpLimits::default()
        };
        let (tcp, addr, _rx, events) = tcp(limits).await;
        let a1 = connect_from([127, 0, 0, 1], addr).await;
        let mut a2 = connect_from([127, 0, 0, 1], addr).await;
        assert!(wait(|| count(&events, TcpEvent::Opened) == 2).await);
        // A third from the same address is closed at once; another address gets in.
        let mut a3 = connect_from([127, 0, 0, 1], addr).await;
        assert!(
            closed_within(&mut a3, Duration::from_secs(2)).await,
            "per-address limit"
        );
        let b1 = connect_from([127, 0, 0, 2], addr).await;
        assert!(wait(|| count(&events, TcpEvent::Opened) == 3).await);
        // The total is reached: a third address is refused too.
        let mut c1 = connect_from([127, 0, 0, 3], addr).await;
        assert!(
            closed_within(&mut c1, Duration::from_secs(2)).await,
            "total limit"
        );
        assert_eq!(count(&events, TcpEvent::Refused(TcpRefusal::PerIpLimit)), 1);
        assert_eq!(
            count(&events, TcpEvent::Refused(TcpRefusal::MaxConnections)),
            1
        );
        // A connection that closes gives its place back, per address and in total.
        a2.shutdown().await.unwrap();
        drop(a2);
        assert!(wait(|| tcp.open.load(Ordering::Relaxed) == 2).await);
        let mut a4 = connect_from([127, 0, 0, 1], addr).await;
        assert!(
            !closed_within(&mut a4, Duration::from_millis(300)).await,
            "place not given back"
        );
        assert_eq!(count(&events, TcpEvent::Opened), 4);
        assert_eq!(tcp.per_ip().get(&"127.0.0.1".parse().unwrap()), Some(&2));
        drop((a1, a4, b1));
        assert!(wait(|| tcp.open.load(Ordering::Relaxed) == 0).await);
        assert!(tcp.per_ip().is_empty());
    }

    #[tokio::test]
    async fn each_message_has_its_own_time_to_complete() {
        let limits = TcpLimits {
            message_timeout: Duration::from_millis(600),
            ..TcpLimits::default()
        };
        let (_tcp, addr, mut rx, events) = tcp(limits).await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        let (a1, a2) = OPTIONS.split_at(20);
        c.write_all(a1).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        // The rest of the first message and the start of the second in one segment.
        c.write_all(&[a2, &OPTIONS[..20]].concat()).await.unwrap();
        let first = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await;
        assert!(matches!(first, Ok(Some(_))));
        // 700 ms after the first message began, 300 ms after the second did: still open.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !closed_within(&mut c, Duration::from_millis(100)).await,
            "closed on the first message's clock"
        );
        assert!(closed_within(&mut c, Duration::from_secs(2)).await);
        assert_eq!(
            count(&events, TcpEvent::Closed(TcpClose::MessageTimeout)),
            1
        );
    }
}
