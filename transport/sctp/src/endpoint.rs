//! The SCTP endpoint: Kamailio's sctp transport on top of [`SctpSocket`]s. It owns the
//! listening sockets and their tasks, the association table, the parameters and the counters,
//! and turns kernel notifications into table updates, counters, retries, ABORTs for the
//! association limit, and typed [`AssocEvent`]s.
//!
//! IO at the edges only: the decisions are in [`crate::assoc`], [`crate::params`] and
//! [`crate::sendq`]; this module moves bytes and notifications between them and the kernel.
//!
//! # Sending
//!
//! [`SctpEndpoint::send`] addresses a message by the tracked association when
//! `sctp_assoc_reuse` is on, else by address (the kernel sets up an association implicitly).
//! A stale association (EPIPE / EINVAL) is retried by address. A full send buffer (EAGAIN)
//! counts `sendq_full` and queues the message in a bounded per-destination queue, drained when
//! the socket is writable again; a full queue is an error to the caller. Each message carries
//! its remaining `sctp_send_retries` budget as its SCTP context: when the kernel returns it in a
//! SEND_FAILED notification with no error and budget left, it is resent by address
//! (`send_force_retry`); otherwise `send_failed` counts it and an [`AssocEvent::SendFailure`]
//! reports it.
//!
//! # `sctp_send_ttl` and new associations
//!
//! Linux computes a message's PR-SCTP expiry only if the peer is already known to support
//! PR-SCTP; a message sent while its association is still being set up gets expiry time 0 and
//! is abandoned the moment the association comes up (`sctp_datamsg_from_user` /
//! `sctp_chunk_abandoned`). So the lifetime is attached only to messages for a destination with
//! a tracked association; a message that opens an association is bounded by the INIT
//! retransmission limits instead (and fails with CANT_STR_ASSOC + SEND_FAILED). With tracking
//! off no message carries the lifetime. (Kamailio's `SCTP_SNDRCV` never sets the TTL policy,
//! so its send_ttl has no effect on current kernels.)

use std::{
    io,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use tokio::{
    sync::{Notify, broadcast, mpsc},
    task::JoinHandle,
};

use crate::{
    AssocId, AssocStatus, DropReason, Error, Incoming, Notification, PeerAddrInfo, SctpSocket,
    SendOptions, SendTarget, SocketConfig,
    assoc::{AssocTable, CommUp, LIMIT_ABORT_REASON, LimitExceeded, Route, SocketId},
    counters::{CounterSnapshot, Counters, DropCause},
    notification::{AssocChangeState, PeerAddrState, SendFailedStatus},
    options,
    params::{Param, ParamError, Scope, SctpParams},
    sendq::{QueueFull, SendQueues},
};

/// How the endpoint is set up.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// One entry per listening socket: its addresses (several = multi-homed), all with the
    /// same port.
    pub listeners: Vec<Vec<SocketAddr>>,
    /// Parameter values that differ from the defaults (Kamailio's defaults, the OS's where
    /// Kamailio reads the OS).
    pub params: Vec<(Param, i64)>,
    /// Largest message received; larger ones are counted and dropped.
    pub max_message_size: usize,
    /// `SCTP_PARTIAL_DELIVERY_POINT`: messages at least this large are read in pieces and
    /// reassembled; `None` keeps the kernel's default.
    pub partial_delivery_point: Option<u32>,
    /// Messages that may wait per destination while the send buffer is full.
    pub sendq_limit: usize,
    /// Capacity of the channel of received messages (the receive tasks wait when it is full).
    pub recv_queue: usize,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            listeners: Vec::new(),
            params: Vec::new(),
            max_message_size: 65_536,
            partial_delivery_point: None,
            sendq_limit: 1024,
            recv_queue: 4096,
        }
    }
}

/// A message received on one of the endpoint's sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The socket (listener) it came in on.
    pub socket: SocketId,
    /// Its association.
    pub assoc: AssocId,
    /// The peer address it came from.
    pub peer: SocketAddr,
    /// The stream.
    pub stream: u16,
    /// The payload protocol identifier.
    pub ppid: u32,
    /// The message.
    pub data: Vec<u8>,
}

/// Why an association ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownCause {
    /// COMM_LOST (the peer aborted, or retransmissions ran out), with the kernel's error.
    CommLost {
        /// The error code in the notification.
        error: u16,
    },
    /// SHUTDOWN_COMP: an orderly shutdown.
    ShutdownComplete,
}

/// What happened to an association; for the relay and the exporter.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AssocEvent {
    /// COMM_UP, accepted.
    Up {
        /// Socket.
        socket: SocketId,
        /// Association.
        assoc: AssocId,
        /// The peer's primary address.
        peer: Option<SocketAddr>,
        /// Negotiated outbound streams.
        outbound_streams: u16,
        /// Negotiated inbound streams.
        inbound_streams: u16,
    },
    /// The association ended.
    Down {
        /// Socket.
        socket: SocketId,
        /// Association.
        assoc: AssocId,
        /// The peer's primary address.
        peer: Option<SocketAddr>,
        /// Why.
        cause: DownCause,
    },
    /// The peer restarted the association (RESTART).
    Restart {
        /// Socket.
        socket: SocketId,
        /// Association.
        assoc: AssocId,
        /// The peer's primary address.
        peer: Option<SocketAddr>,
    },
    /// An association could not be set up (CANT_STR_ASSOC).
    CantStart {
        /// Socket.
        socket: SocketId,
        /// The destination.
        peer: Option<SocketAddr>,
        /// The kernel's error.
        error: u16,
    },
    /// The peer sent SHUTDOWN.
    RemoteShutdown {
        /// Socket.
        socket: SocketId,
        /// Association.
        assoc: AssocId,
    },
    /// A path (peer address) changed state.
    PathChange {
        /// Socket.
        socket: SocketId,
        /// Association.
        assoc: AssocId,
        /// The peer address.
        addr: SocketAddr,
        /// Its new state.
        state: PeerAddrState,
        /// The kernel's error.
        error: i32,
    },
    /// A message was not delivered and will not be retried (budget exhausted or an error).
    SendFailure {
        /// Socket.
        socket: SocketId,
        /// Association it was on.
        assoc: AssocId,
        /// Its destination, when known.
        dest: Option<SocketAddr>,
        /// The kernel's error (0 = abandoned, e.g. its lifetime expired).
        error: u32,
        /// Whether some of it had been sent.
        partly_sent: bool,
        /// Its size.
        len: usize,
    },
    /// A message the kernel returned was resent by address (`send_force_retry`).
    SendRetried {
        /// Socket.
        socket: SocketId,
        /// The association it failed on.
        assoc: AssocId,
        /// Where it was resent.
        dest: SocketAddr,
        /// Retries left after this one.
        retries_left: u32,
    },
    /// An association over `sctp_max_assocs` was aborted.
    LimitReject {
        /// Socket.
        socket: SocketId,
        /// Association.
        assoc: AssocId,
        /// The peer.
        peer: Option<SocketAddr>,
    },
    /// A received message was dropped.
    Dropped {
        /// Socket.
        socket: SocketId,
        /// Association.
        assoc: AssocId,
        /// The peer.
        peer: Option<SocketAddr>,
        /// Why.
        cause: DropCause,
        /// Bytes of it that were read.
        size: usize,
    },
    /// The peer reported an operation error (REMOTE_ERROR).
    RemoteError {
        /// Socket.
        socket: SocketId,
        /// Association.
        assoc: AssocId,
        /// The error cause code.
        error: u16,
    },
}

/// Errors of the endpoint's setup.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// A parameter or combination was refused.
    #[error(transparent)]
    Param(#[from] ParamError),
    /// No listener configured.
    #[error("no SCTP listener configured")]
    NoListener,
    /// No listener with that id.
    #[error("no SCTP listener {0:?}")]
    UnknownSocket(SocketId),
    /// Binding or configuring a socket failed.
    #[error("SCTP listener {addrs:?}: {source}")]
    Socket {
        /// The listener's addresses.
        addrs: Vec<SocketAddr>,
        /// What failed.
        #[source]
        source: Error,
    },
}

/// Why a send did not go out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// It would open an association beyond `sctp_max_assocs`.
    #[error(transparent)]
    Limit(#[from] LimitExceeded),
    /// The send buffer is full and so is the destination's queue.
    #[error("to {dest}: {source}")]
    QueueFull {
        /// The destination.
        dest: SocketAddr,
        /// The queue limit.
        #[source]
        source: QueueFull,
    },
    /// No such listener.
    #[error("no SCTP listener {0:?}")]
    UnknownSocket(SocketId),
    /// The endpoint is shutting down and `dest` has no association.
    #[error("to {0}: shutting down, no new associations")]
    ShuttingDown(SocketAddr),
    /// The kernel refused the message.
    #[error("to {dest}: {source}")]
    Socket {
        /// The destination.
        dest: SocketAddr,
        /// What the kernel said.
        #[source]
        source: Error,
    },
}

/// A runtime parameter change that did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParamChangeError {
    /// Refused by the rules (read-only, range, combination, unknown name).
    #[error(transparent)]
    Param(#[from] ParamError),
    /// The kernel refused the new value; nothing changed.
    #[error("{param}: the kernel refused the value: {source}")]
    Kernel {
        /// The parameter.
        param: &'static str,
        /// What it said.
        #[source]
        source: Error,
    },
}

/// How a send went, with the association it went on when that was known at send time (an
/// association being set up by this very send, or a send by address after a stale one, has
/// no id yet: it arrives with `AssocEvent::Up`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    /// The kernel took it.
    Sent {
        /// The association that carries it.
        assoc: Option<AssocId>,
    },
    /// It waits in the destination's queue for the send buffer to drain.
    Queued {
        /// The association it waits for.
        assoc: Option<AssocId>,
    },
}

impl SendOutcome {
    /// The association that carries (or will carry) the message, when known.
    pub const fn assoc(&self) -> Option<AssocId> {
        match self {
            Self::Sent { assoc } | Self::Queued { assoc } => *assoc,
        }
    }
}

/// Kamailio's `sctp.info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointInfo {
    /// Open associations.
    pub opened: u64,
    /// Tracked associations (-1 with tracking off).
    pub tracked: i64,
    /// Associations established since start.
    pub total: u64,
    /// Messages waiting in the send queues for room in the kernel's send buffer.
    pub queued: u64,
}

/// One association, as the kernel describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssocView {
    /// Its socket.
    pub socket: SocketId,
    /// Its id.
    pub assoc: AssocId,
    /// SCTP_STATUS: state, windows, streams, primary path.
    pub status: AssocStatus,
    /// Every peer address with its path's state, srtt, rto and cwnd.
    pub paths: Vec<PeerAddrInfo>,
}

/// A message waiting for the send buffer.
#[derive(Debug)]
struct Pending {
    data: Vec<u8>,
    dest: SocketAddr,
    budget: u32,
}

struct Listener {
    id: SocketId,
    sock: SctpSocket,
    addrs: Vec<SocketAddr>,
    writer: Notify,
}

struct State {
    table: AssocTable,
    params: SctpParams,
    queues: Vec<SendQueues<Route, Pending>>,
}

struct Inner {
    /// Set by `stop_accepting`: no new associations, not even outbound ones.
    closing: std::sync::atomic::AtomicBool,
    listeners: Vec<Listener>,
    state: Mutex<State>,
    counters: Counters,
    events: broadcast::Sender<AssocEvent>,
}

/// The endpoint. Dropping it stops its tasks and closes its sockets.
pub struct SctpEndpoint {
    inner: Arc<Inner>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for SctpEndpoint {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn unspecified_like(addr: &SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    }
}

impl SctpEndpoint {
    /// Reads the kernel's defaults, validates the parameters, binds every listener, applies
    /// the parameters to each, and starts the receive and send tasks. Received messages arrive
    /// on the returned channel.
    ///
    /// Must be called within a tokio runtime.
    ///
    /// # Errors
    /// A refused parameter (naming it and the rule) or a socket that cannot be set up.
    pub fn bind(
        config: &EndpointConfig,
    ) -> Result<(SctpEndpoint, mpsc::Receiver<Received>), EndpointError> {
        let first = config
            .listeners
            .first()
            .and_then(|l| l.first())
            .ok_or(EndpointError::NoListener)?;
        let probe_cfg = SocketConfig {
            backlog: None,
            ..SocketConfig::default()
        };
        let probe_addr = unspecified_like(first);
        let os = SctpSocket::bind(&[probe_addr], &probe_cfg)
            .and_then(|s| options::read_os_defaults(&s))
            .map_err(|source| EndpointError::Socket {
                addrs: vec![probe_addr],
                source,
            })?;
        let mut params = SctpParams::with_os_defaults(&os);
        for &(p, v) in &config.params {
            params.set(p, v)?;
        }
        params.validate()?;

        let sock_cfg = SocketConfig {
            max_message_size: config.max_message_size,
            partial_delivery_point: config.partial_delivery_point,
            ..SocketConfig::default()
        };
        let mut listeners = Vec::new();
        for (i, addrs) in config.listeners.iter().enumerate() {
            let err = |source| EndpointError::Socket {
                addrs: addrs.clone(),
                source,
            };
            let sock = SctpSocket::bind(addrs, &sock_cfg).map_err(err)?;
            options::apply_all(&sock, &params).map_err(err)?;
            // Port 0 in the config: report the port the kernel chose.
            let bound = sock.local_addrs().map_err(err)?;
            listeners.push(Listener {
                id: SocketId(u32::try_from(i).unwrap_or(u32::MAX)),
                sock,
                addrs: bound,
                writer: Notify::new(),
            });
        }
        let table = AssocTable::new(
            params.get(Param::AssocTracking) == 1,
            params.get(Param::AssocReuse) == 1,
            params.get(Param::MaxAssocs),
        );
        let queues = listeners
            .iter()
            .map(|_| SendQueues::new(config.sendq_limit))
            .collect();
        let (events, _) = broadcast::channel(1024);
        let inner = Arc::new(Inner {
            closing: std::sync::atomic::AtomicBool::new(false),
            listeners,
            state: Mutex::new(State {
                table,
                params,
                queues,
            }),
            counters: Counters::default(),
            events,
        });
        let (tx, rx) = mpsc::channel(config.recv_queue.max(1));
        let mut tasks = Vec::new();
        for i in 0..inner.listeners.len() {
            tasks.push(tokio::spawn(receive_loop(inner.clone(), i, tx.clone())));
            tasks.push(tokio::spawn(send_loop(inner.clone(), i)));
        }
        Ok((SctpEndpoint { inner, tasks }, rx))
    }

    /// The listeners' ids and bound addresses.
    pub fn listeners(&self) -> Vec<(SocketId, Vec<SocketAddr>)> {
        self.inner
            .listeners
            .iter()
            .map(|l| (l.id, l.addrs.clone()))
            .collect()
    }

    /// Subscribes to association events. A subscriber that falls more than 1024 events behind
    /// is told how many it missed (`RecvError::Lagged`).
    pub fn events(&self) -> broadcast::Receiver<AssocEvent> {
        self.inner.events.subscribe()
    }

    /// The counters.
    pub fn counters(&self) -> CounterSnapshot {
        self.inner.counters.snapshot()
    }

    /// Kamailio's `sctp.info`.
    pub fn info(&self) -> EndpointInfo {
        let st = self.inner.lock();
        EndpointInfo {
            opened: st.table.opened(),
            tracked: st.table.tracked(),
            total: self.inner.counters.snapshot().established,
            queued: st.queues.iter().map(|q| q.len() as u64).sum(),
        }
    }

    /// The configured parameter values (Kamailio's `sctp.options`).
    pub fn params(&self) -> SctpParams {
        self.inner.lock().params
    }

    /// The kernel's values on a listener (`sctp.options <addr>`): its endpoint defaults, or
    /// one association's when `assoc` is given.
    ///
    /// # Errors
    /// Unknown listener, or an option that cannot be read.
    pub fn kernel_params(
        &self,
        socket: SocketId,
        assoc: Option<AssocId>,
    ) -> Result<Vec<(Param, i64)>, EndpointError> {
        let l = self
            .inner
            .listener(socket)
            .map_err(|_| EndpointError::UnknownSocket(socket))?;
        options::read_back(&l.sock, assoc.unwrap_or(AssocId::FUTURE)).map_err(|source| {
            EndpointError::Socket {
                addrs: l.addrs.clone(),
                source,
            }
        })
    }

    /// A runtime change, as `cfg.set_now_int sctp <name> <value>`: checked against the rules,
    /// applied to every listener with `scope` (endpoint defaults, live associations, or both),
    /// and stored. Returns the value now in force (0 keeps the old one where the parameter
    /// says so). On any error nothing changed.
    ///
    /// # Errors
    /// [`ParamChangeError`].
    pub fn set_param(&self, name: &str, value: i64, scope: Scope) -> Result<i64, ParamChangeError> {
        let param = Param::from_name(name).ok_or_else(|| ParamError::Unknown(name.to_owned()))?;
        let mut st = self.inner.lock();
        let mut next = st.params;
        let now = next.change(param, value)?;
        for l in &self.inner.listeners {
            if let Err(source) = options::apply(&l.sock, &next, param, scope) {
                // Put back what the listeners had (best effort) and report.
                for l in &self.inner.listeners {
                    let _ = options::apply(&l.sock, &st.params, param, scope);
                }
                return Err(ParamChangeError::Kernel {
                    param: param.name(),
                    source,
                });
            }
        }
        match param {
            Param::AssocTracking => st.table.set_tracking(now == 1),
            Param::AssocReuse => st.table.set_reuse(now == 1),
            Param::MaxAssocs => st.table.set_max_assocs(now),
            _ => {}
        }
        st.params = next;
        Ok(now)
    }

    /// Every association the kernel has on the endpoint's sockets, with its status and paths.
    pub fn assocs(&self) -> Vec<AssocView> {
        let mut out = Vec::new();
        for l in &self.inner.listeners {
            let Ok(ids) = l.sock.assoc_ids() else {
                continue;
            };
            for assoc in ids {
                let Ok(status) = l.sock.status(assoc) else {
                    continue;
                };
                let paths = l
                    .sock
                    .peer_addrs(assoc)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|a| l.sock.peer_addr_info(assoc, a).ok())
                    .collect();
                out.push(AssocView {
                    socket: l.id,
                    assoc,
                    status,
                    paths,
                });
            }
        }
        out
    }

    /// Sends `data` to `dest` from listener `socket` (see the module doc).
    ///
    /// # Errors
    /// [`SendError`]; a message that is `Queued` may still fail later, which is reported as an
    /// [`AssocEvent::SendFailure`].
    pub fn send(
        &self,
        socket: SocketId,
        dest: SocketAddr,
        data: &[u8],
    ) -> Result<SendOutcome, SendError> {
        let budget = {
            let st = self.inner.lock();
            u32::try_from(st.params.get(Param::SendRetries)).unwrap_or(0)
        };
        self.inner.send(socket, dest, data, budget)
    }

    /// Stops accepting new associations (`listen(fd, 0)` on every listener: the kernel answers
    /// new INITs with ABORT) and stops opening them: from now on a send to a destination
    /// without an association fails with [`SendError::ShuttingDown`], and nothing is resent by
    /// address. Existing associations keep working until [`SctpEndpoint::shutdown`].
    ///
    /// # Errors
    /// The first listener the kernel refused it for.
    pub fn stop_accepting(&self) -> Result<(), EndpointError> {
        self.inner
            .closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for l in &self.inner.listeners {
            l.sock
                .stop_listening()
                .map_err(|source| EndpointError::Socket {
                    addrs: l.addrs.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    /// Shuts every association down gracefully (SHUTDOWN after queued data) and waits up to
    /// `limit` for them to finish; associations that appear meanwhile (e.g. opened by a send)
    /// are shut down too. Keep receiving while this runs: a peer whose data is not read cannot
    /// complete its SHUTDOWN. Returns how many were still open.
    pub async fn shutdown(&self, limit: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + limit;
        let mut asked = std::collections::HashSet::new();
        loop {
            let mut open = 0;
            for l in &self.inner.listeners {
                for assoc in l.sock.assoc_ids().unwrap_or_default() {
                    open += 1;
                    if asked.insert((l.id, assoc)) {
                        let _ = l.sock.shutdown_assoc(assoc);
                    }
                }
            }
            if open == 0 || tokio::time::Instant::now() >= deadline {
                return open;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The association a route names, if it names one.
const fn route_assoc(route: Route) -> Option<AssocId> {
    match route {
        Route::Assoc(a) => Some(a),
        Route::Addr(_) => None,
    }
}

fn is_stale_assoc(e: &Error) -> bool {
    e.raw_os_error()
        .is_some_and(crate::sys::is_stale_assoc_errno)
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn listener(&self, id: SocketId) -> Result<&Listener, SendError> {
        usize::try_from(id.0)
            .ok()
            .and_then(|i| self.listeners.get(i))
            .ok_or(SendError::UnknownSocket(id))
    }

    fn emit(&self, e: AssocEvent) {
        let _ = self.events.send(e);
    }

    /// A message that will not be delivered: `send_failed` and an [`AssocEvent::SendFailure`].
    fn send_failure(
        &self,
        socket: SocketId,
        assoc: AssocId,
        dest: Option<SocketAddr>,
        error: u32,
        partly_sent: bool,
        len: usize,
    ) {
        Counters::bump(&self.counters.send_failed);
        self.emit(AssocEvent::SendFailure {
            socket,
            assoc,
            dest,
            error,
            partly_sent,
            len,
        });
    }

    /// Per-message options: the retry budget as context, and the lifetime when the message
    /// goes on an association that is up (see the module doc).
    fn send_options(&self, socket: SocketId, dest: SocketAddr, budget: u32) -> SendOptions {
        let st = self.lock();
        let ttl = st.params.get(Param::SendTtl);
        let established = st.table.lookup(socket, dest).is_some();
        SendOptions {
            ttl_ms: (ttl > 0 && established).then(|| u32::try_from(ttl).unwrap_or(u32::MAX)),
            context: budget,
            ..SendOptions::default()
        }
    }

    fn send(
        &self,
        socket: SocketId,
        dest: SocketAddr,
        data: &[u8],
        budget: u32,
    ) -> Result<SendOutcome, SendError> {
        let l = self.listener(socket)?;
        let idx = usize::try_from(socket.0).unwrap_or(usize::MAX);
        let closing = self.closing.load(std::sync::atomic::Ordering::SeqCst);
        let route = {
            let mut st = self.lock();
            if closing && st.table.lookup(socket, dest).is_none() {
                return Err(SendError::ShuttingDown(dest));
            }
            let route = st.table.route(socket, dest)?;
            if let Some(q) = st.queues.get_mut(idx)
                && q.has(&route)
            {
                // Keep order behind what already waits.
                let pending = Pending {
                    data: data.to_vec(),
                    dest,
                    budget,
                };
                q.push(route, pending)
                    .map_err(|(source, _)| SendError::QueueFull { dest, source })?;
                return Ok(SendOutcome::Queued {
                    assoc: route_assoc(route),
                });
            }
            route
        };
        let opts = self.send_options(socket, dest, budget);
        match self.try_send_route(l, route, dest, data, &opts) {
            Ok(assoc) => Ok(SendOutcome::Sent { assoc }),
            Err(e) if e.is_would_block() => {
                Counters::bump(&self.counters.sendq_full);
                let mut st = self.lock();
                let q = st
                    .queues
                    .get_mut(idx)
                    .ok_or(SendError::UnknownSocket(socket))?;
                q.push(
                    route,
                    Pending {
                        data: data.to_vec(),
                        dest,
                        budget,
                    },
                )
                .map_err(|(source, _)| {
                    Counters::bump(&self.counters.send_failed);
                    SendError::QueueFull { dest, source }
                })?;
                l.writer.notify_one();
                Ok(SendOutcome::Queued {
                    assoc: route_assoc(route),
                })
            }
            Err(source) => {
                Counters::bump(&self.counters.send_failed);
                Err(SendError::Socket { dest, source })
            }
        }
    }

    /// One attempt on the route, falling back to the address when the association is stale.
    /// Returns the association used, when known.
    fn try_send_route(
        &self,
        l: &Listener,
        route: Route,
        dest: SocketAddr,
        data: &[u8],
        opts: &SendOptions,
    ) -> Result<Option<AssocId>, Error> {
        let target = match route {
            Route::Assoc(a) => SendTarget::Assoc(a),
            Route::Addr(a) => SendTarget::Addr(a),
        };
        match l.sock.try_send(data, target, opts) {
            Ok(_) => Ok(route_assoc(route)),
            Err(e)
                if matches!(route, Route::Assoc(_))
                    && is_stale_assoc(&e)
                    && !self.closing.load(std::sync::atomic::Ordering::SeqCst) =>
            {
                l.sock
                    .try_send(data, SendTarget::Addr(dest), opts)
                    .map(|_| None)
            }
            Err(e) => Err(e),
        }
    }

    fn handle_notification(&self, l: &Listener, n: Notification, peer: Option<SocketAddr>) {
        let socket = l.id;
        let now = Instant::now();
        match n {
            Notification::AssocChange {
                state,
                error,
                outbound_streams,
                inbound_streams,
                assoc_id,
            } => match state {
                AssocChangeState::CommUp => {
                    Counters::bump(&self.counters.established);
                    let peer = peer.or_else(|| {
                        l.sock
                            .peer_addrs(assoc_id)
                            .ok()
                            .and_then(|v| v.first().copied())
                    });
                    let outcome = self.lock().table.handle_comm_up(
                        now,
                        socket,
                        assoc_id,
                        peer.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
                        outbound_streams,
                        inbound_streams,
                    );
                    match outcome {
                        CommUp::Accepted { .. } => {
                            if let Ok(more) = l.sock.peer_addrs(assoc_id) {
                                let mut st = self.lock();
                                for a in more {
                                    st.table.handle_addr_added(socket, assoc_id, a);
                                }
                            }
                            self.emit(AssocEvent::Up {
                                socket,
                                assoc: assoc_id,
                                peer,
                                outbound_streams,
                                inbound_streams,
                            });
                        }
                        CommUp::Reject => {
                            Counters::bump(&self.counters.local_reject);
                            let _ = l.sock.abort(assoc_id, LIMIT_ABORT_REASON.as_bytes());
                            self.emit(AssocEvent::LimitReject {
                                socket,
                                assoc: assoc_id,
                                peer,
                            });
                        }
                    }
                }
                AssocChangeState::CommLost | AssocChangeState::ShutdownComp => {
                    let cause = if state == AssocChangeState::CommLost {
                        Counters::bump(&self.counters.comm_lost);
                        DownCause::CommLost { error }
                    } else {
                        Counters::bump(&self.counters.assoc_shutdown);
                        DownCause::ShutdownComplete
                    };
                    let idx = usize::try_from(socket.0).unwrap_or(usize::MAX);
                    let mut st = self.lock();
                    let gone = st.table.handle_down(socket, assoc_id);
                    // Messages queued for the association go by address (a new one) instead.
                    if let Some(q) = st.queues.get_mut(idx) {
                        for p in q.take(&Route::Assoc(assoc_id)) {
                            let dest = p.dest;
                            if let Err((_, lost)) = q.push(Route::Addr(dest), p) {
                                self.send_failure(
                                    socket,
                                    assoc_id,
                                    Some(dest),
                                    0,
                                    false,
                                    lost.data.len(),
                                );
                            }
                        }
                    }
                    drop(st);
                    l.writer.notify_one();
                    self.emit(AssocEvent::Down {
                        socket,
                        assoc: assoc_id,
                        peer: peer.or_else(|| gone.and_then(|a| a.primary)),
                        cause,
                    });
                }
                AssocChangeState::Restart => self.emit(AssocEvent::Restart {
                    socket,
                    assoc: assoc_id,
                    peer,
                }),
                AssocChangeState::CantStrAssoc => {
                    Counters::bump(&self.counters.connect_failed);
                    self.emit(AssocEvent::CantStart {
                        socket,
                        peer,
                        error,
                    });
                }
                AssocChangeState::Other(_) => {}
            },
            Notification::PeerAddrChange {
                addr,
                state,
                error,
                assoc_id,
            } => {
                {
                    let mut st = self.lock();
                    match state {
                        PeerAddrState::Added
                        | PeerAddrState::AddrAvailable
                        | PeerAddrState::Confirmed => {
                            st.table.handle_addr_added(socket, assoc_id, addr)
                        }
                        PeerAddrState::MadePrimary => {
                            st.table.handle_primary(socket, assoc_id, addr)
                        }
                        PeerAddrState::Removed => {
                            st.table.handle_addr_removed(socket, assoc_id, addr)
                        }
                        _ => {}
                    }
                }
                self.emit(AssocEvent::PathChange {
                    socket,
                    assoc: assoc_id,
                    addr,
                    state,
                    error,
                });
            }
            Notification::SendFailed {
                status,
                error,
                assoc_id,
                context,
                payload,
                payload_len,
                ..
            } => {
                let dest = peer.or_else(|| {
                    self.lock()
                        .table
                        .get(socket, assoc_id)
                        .and_then(|a| a.primary)
                });
                let whole = payload.len() == payload_len && !payload.is_empty();
                let closing = self.closing.load(std::sync::atomic::Ordering::SeqCst);
                match dest {
                    Some(dest) if error == 0 && context > 0 && whole && !closing => {
                        Counters::bump(&self.counters.send_force_retry);
                        let left = context - 1;
                        self.emit(AssocEvent::SendRetried {
                            socket,
                            assoc: assoc_id,
                            dest,
                            retries_left: left,
                        });
                        // By address, so that a fresh association opens if this one died.
                        let opts = self.send_options(socket, dest, left);
                        match l.sock.try_send(&payload, SendTarget::Addr(dest), &opts) {
                            Ok(_) => {}
                            Err(e) if e.is_would_block() => {
                                Counters::bump(&self.counters.sendq_full);
                                let idx = usize::try_from(socket.0).unwrap_or(usize::MAX);
                                let mut st = self.lock();
                                let queued = st.queues.get_mut(idx).map(|q| {
                                    q.push(
                                        Route::Addr(dest),
                                        Pending {
                                            data: payload,
                                            dest,
                                            budget: left,
                                        },
                                    )
                                });
                                if !matches!(queued, Some(Ok(()))) {
                                    self.send_failure(
                                        socket,
                                        assoc_id,
                                        Some(dest),
                                        0,
                                        false,
                                        payload_len,
                                    );
                                }
                                l.writer.notify_one();
                            }
                            Err(_) => {
                                self.send_failure(
                                    socket,
                                    assoc_id,
                                    Some(dest),
                                    0,
                                    false,
                                    payload_len,
                                );
                            }
                        }
                    }
                    _ => {
                        self.send_failure(
                            socket,
                            assoc_id,
                            dest,
                            error,
                            status == SendFailedStatus::Sent,
                            payload_len,
                        );
                    }
                }
            }
            Notification::Shutdown { assoc_id } => {
                Counters::bump(&self.counters.remote_shutdown);
                self.emit(AssocEvent::RemoteShutdown {
                    socket,
                    assoc: assoc_id,
                });
            }
            Notification::SenderDry { .. } => l.writer.notify_one(),
            Notification::RemoteError {
                error, assoc_id, ..
            } => self.emit(AssocEvent::RemoteError {
                socket,
                assoc: assoc_id,
                error,
            }),
            Notification::PartialDelivery { .. } | Notification::Other(_) => {}
        }
    }
}

/// Receives on listener `i` until the endpoint or the channel goes away. Bad input never ends
/// it: malformed notifications are counted, socket errors back off briefly.
async fn receive_loop(inner: Arc<Inner>, i: usize, tx: mpsc::Sender<Received>) {
    let Some(l) = inner.listeners.get(i) else {
        return;
    };
    loop {
        match l.sock.recv().await {
            Ok(Incoming::Message {
                data,
                assoc_id,
                peer,
                stream,
                ppid,
                ..
            }) => {
                {
                    let mut st = inner.lock();
                    if st.table.is_rejected(l.id, assoc_id) {
                        drop(st);
                        inner.counters.dropped(DropCause::Rejected);
                        inner.emit(AssocEvent::Dropped {
                            socket: l.id,
                            assoc: assoc_id,
                            peer: Some(peer),
                            cause: DropCause::Rejected,
                            size: data.len(),
                        });
                        continue;
                    }
                    st.table
                        .handle_message(Instant::now(), l.id, assoc_id, peer);
                }
                let msg = Received {
                    socket: l.id,
                    assoc: assoc_id,
                    peer,
                    stream,
                    ppid,
                    data,
                };
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
            Ok(Incoming::Notification { notification, peer }) => {
                inner.handle_notification(l, notification, peer)
            }
            Ok(Incoming::Dropped {
                assoc_id,
                peer,
                reason,
            }) => {
                let (cause, size) = match reason {
                    DropReason::TooLarge { size_so_far } => (DropCause::TooLarge, size_so_far),
                    DropReason::Incomplete { size_so_far } => (DropCause::Incomplete, size_so_far),
                };
                inner.counters.dropped(cause);
                inner.emit(AssocEvent::Dropped {
                    socket: l.id,
                    assoc: assoc_id,
                    peer: Some(peer),
                    cause,
                    size,
                });
            }
            Err(Error::Notification(_)) | Err(Error::Protocol(_)) => {
                inner.counters.dropped(DropCause::BadNotification);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Drains listener `i`'s send queues whenever it is woken (a send queued, SENDER_DRY, an
/// association went down) and the socket takes more.
async fn send_loop(inner: Arc<Inner>, i: usize) {
    let Some(l) = inner.listeners.get(i) else {
        return;
    };
    loop {
        let next = inner.lock().queues.get_mut(i).and_then(|q| q.pop_any());
        let Some((route, p)) = next else {
            l.writer.notified().await;
            continue;
        };
        let opts = inner.send_options(l.id, p.dest, p.budget);
        let sent = inner.try_send_route(l, route, p.dest, &p.data, &opts);
        if !matches!(&sent, Err(e) if e.is_would_block())
            && let Some(q) = inner.lock().queues.get_mut(i)
        {
            q.done(&route);
        }
        match sent {
            Ok(_) => {}
            Err(e) if e.is_would_block() => {
                if let Some(q) = inner.lock().queues.get_mut(i) {
                    q.unpop(route, p);
                }
                let _ = tokio::time::timeout(Duration::from_millis(200), l.sock.writable()).await;
            }
            Err(_) => {
                let assoc = match route {
                    Route::Assoc(a) => a,
                    Route::Addr(_) => AssocId(0),
                };
                inner.send_failure(l.id, assoc, Some(p.dest), 0, false, p.data.len());
            }
        }
    }
}
