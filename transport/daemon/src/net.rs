//! The daemon's UDP and TCP sides (SCTP is `sipsctp_sctp::endpoint`): sockets, receive loops
//! feeding one channel of [`Inbound`] messages, and sending to a destination. TCP splits the
//! byte stream into SIP messages with the framing function it is given, keeps one connection
//! per peer address, and opens connections to upstreams on demand.

use std::{
    collections::HashMap,
    io,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

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

    /// Sends from the first socket of `dest`'s address family.
    ///
    /// # Errors
    /// No socket of that family, or the send failed.
    pub async fn send(&self, dest: SocketAddr, data: &[u8]) -> io::Result<()> {
        let (s, _) = self
            .sockets
            .iter()
            .find(|(_, local)| local.is_ipv4() == dest.is_ipv4())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::AddrNotAvailable,
                    "no UDP listener of that address family",
                )
            })?;
        s.send_to(data, dest).await.map(|_| ())
    }
}

/// The TCP side: listeners, and one connection per peer address.
pub struct Tcp {
    listeners: Vec<SocketAddr>,
    conns: Arc<Mutex<HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>>>,
    tx: mpsc::Sender<Inbound>,
    framer: Framer,
    max: usize,
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
            conns: Arc::new(Mutex::new(HashMap::new())),
            tx,
            framer,
            max,
        });
        let tasks = listeners
            .into_iter()
            .map(|l| {
                let tcp = tcp.clone();
                tokio::spawn(async move {
                    loop {
                        match l.accept().await {
                            Ok((stream, peer)) => tcp.adopt(stream, peer),
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

    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes over a connected stream: a reader task framing messages, a writer task.
    fn adopt(self: &Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        let local = stream
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (mut rd, mut wr) = stream.into_split();
        let (wtx, mut wrx) = mpsc::channel::<Vec<u8>>(256);
        self.conns().insert(peer, wtx);
        let me = self.clone();
        tokio::spawn(async move {
            while let Some(data) = wrx.recv().await {
                if let Err(e) = wr.write_all(&data).await {
                    tracing::debug!(%peer, error = %e, "TCP write failed; closing");
                    break;
                }
            }
            me.conns().remove(&peer);
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
            me.conns().remove(&peer);
        });
    }

    /// Sends on the connection to `dest`, opening one when there is none.
    ///
    /// # Errors
    /// Connecting failed, or the connection is gone.
    pub async fn send(self: &Arc<Self>, dest: SocketAddr, data: Vec<u8>) -> io::Result<()> {
        let existing = self.conns().get(&dest).cloned();
        let tx = match existing {
            Some(tx) => tx,
            None => {
                let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(dest))
                    .await
                    .map_err(|_| {
                        io::Error::new(io::ErrorKind::TimedOut, "TCP connect timed out")
                    })??;
                let _ = stream.set_nodelay(true);
                self.adopt(stream, dest);
                self.conns().get(&dest).cloned().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotConnected, "connection closed")
                })?
            }
        };
        tx.send(data)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "TCP connection closed"))
    }
}
