//! The SCTP endpoint: Kamailio's sctp transport on top of [`SctpSocket`]s. It owns the
//! listening sockets and their tasks, the association table, the parameters and the counters,
//! and turns kernel notifications into table updates, counters, retries, ABORTs for the
//! association limit, and typed [`AssocEvent`]s.
//!
//! IO at the edges only: every decision is taken by the pure [`EndpointCore`]
//! ([`crate::endpoint_core`]), which answers each notification, received message and send with
//! [`Action`]s; this module moves bytes and notifications between the kernel and the core and
//! carries the actions out (counting, broadcasting events, ABORTs, resends, waking the send
//! tasks). It holds the core behind one mutex and never does IO while holding it, except when
//! applying a parameter change to every listener (which must succeed everywhere or nowhere).
//!
//! # Unfinished incoming messages
//!
//! Each listener's receive task also asks its socket, about once a second, to give up the
//! messages unfinished for longer than [`EndpointCore::partial_timeout`]
//! ([`SctpSocket::expire_partial`]); those, and the ones given up at the socket's total cap on
//! unfinished messages ([`EndpointConfig::partial_bytes_limit`]), are counted under
//! `partial_timeout` / `partial_bytes` and their associations aborted (see
//! [`EndpointCore::handle_dropped`]). With `SCTP_FRAGMENT_INTERLEAVE` 1 (see
//! [`SctpSocket::bind`]) such a message never holds up the other associations meanwhile.
//!
//! # Sending
//!
//! [`SctpEndpoint::send`] addresses a message by the tracked association when
//! `sctp_assoc_reuse` is on, else by address (the kernel sets up an association implicitly).
//! A stale association (EPIPE / EINVAL) is retried by address. A full send buffer (EAGAIN)
//! counts `sendq_full` and queues the message in a bounded per-destination queue, drained when
//! the socket is writable again. While a destination's association is being set up only the
//! message that started it is in the kernel; later ones are held in its queue until COMM_UP
//! (dropped and counted if the setup fails). The queues are bounded per destination (messages,
//! bytes), in total bytes and in destinations, and association setups in number and bytes; a
//! message over a bound is a typed [`SendError`] to the caller, counted under its
//! [`SendDropCause`](crate::counters::SendDropCause) (see [`crate::endpoint_core`]). Each
//! message carries its remaining `sctp_send_retries` budget in its SCTP context: when the
//! kernel returns it (one SEND_FAILED per DATA chunk, joined again) with no error and budget
//! left, it is resent whole by address (`send_force_retry`); otherwise `send_failed` counts it
//! once and an [`AssocEvent::SendFailure`] reports it.
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
    AssocId, AssocStatus, Error, Incoming, Notification, PeerAddrInfo, SctpSocket, SendTarget,
    SocketConfig,
    assoc::{Route, SocketId},
    counters::{CounterSnapshot, Counters, DropCause},
    endpoint_core::{Action, Attempt, CoreConfig, EndpointCore, SendPlan, Transmit},
    notification::AssocChangeState,
    options,
    params::{Param, ParamError, Scope, SctpParams},
    sendq::QueueLimits,
};

pub use crate::{
    endpoint_core::{SendError, SendOutcome},
    event::{AssocEvent, DownCause},
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
    /// Bytes that unfinished incoming messages may hold in all, per listener (see
    /// [`SocketConfig::partial_bytes_limit`]). Default 8 MiB.
    pub partial_bytes_limit: usize,
    /// `SCTP_PARTIAL_DELIVERY_POINT`: messages at least this large are read in pieces and
    /// reassembled; `None` keeps the kernel's default.
    pub partial_delivery_point: Option<u32>,
    /// Messages that may wait per destination (while the send buffer is full, or held while
    /// the destination's association is set up). Default 1024.
    pub sendq_limit: usize,
    /// Bytes that may wait per destination. Default 1 MiB.
    pub sendq_bytes: usize,
    /// Bytes that may wait across all destinations and listeners. Default 16 MiB.
    pub sendq_total_bytes: usize,
    /// Destinations that may have messages waiting at once. Default 1024.
    pub sendq_destinations: usize,
    /// Destinations whose association may be in setup at once, each with its first message
    /// in the kernel's send buffer (see [`crate::endpoint_core`]). Default 256.
    pub max_setups: usize,
    /// Capacity of the channel of received messages (the receive tasks wait when it is full).
    pub recv_queue: usize,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            listeners: Vec::new(),
            params: Vec::new(),
            max_message_size: 65_536,
            partial_bytes_limit: 8 << 20,
            partial_delivery_point: None,
            sendq_limit: 1024,
            sendq_bytes: 1 << 20,
            sendq_total_bytes: 16 << 20,
            sendq_destinations: 1024,
            max_setups: 256,
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
    /// Associations whose peer takes no data now (their messages wait in the send queues).
    pub stalled: u64,
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

struct Listener {
    id: SocketId,
    sock: SctpSocket,
    addrs: Vec<SocketAddr>,
    writer: Notify,
}

struct Inner {
    listeners: Vec<Listener>,
    core: Mutex<EndpointCore>,
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
            partial_bytes_limit: config.partial_bytes_limit,
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
        let core = EndpointCore::new(
            params,
            &CoreConfig {
                listeners: listeners.len(),
                queues: QueueLimits {
                    messages: config.sendq_limit,
                    bytes: config.sendq_bytes,
                    total_bytes: config.sendq_total_bytes,
                    destinations: config.sendq_destinations,
                },
                max_setups: config.max_setups,
                max_message_size: config.max_message_size,
            },
        );
        let (events, _) = broadcast::channel(1024);
        let inner = Arc::new(Inner {
            listeners,
            core: Mutex::new(core),
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
        let core = self.inner.lock();
        EndpointInfo {
            opened: core.opened(),
            tracked: core.tracked(),
            total: self.inner.counters.snapshot().established,
            queued: core.queued(),
            stalled: core.stalled() as u64,
        }
    }

    /// The configured parameter values (Kamailio's `sctp.options`).
    pub fn params(&self) -> SctpParams {
        self.inner.lock().params()
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
        // Held throughout: the listeners must all take the value or all keep the old one.
        let mut core = self.inner.lock();
        let old = core.params();
        let mut next = old;
        let now = next.change(param, value)?;
        for l in &self.inner.listeners {
            if let Err(source) = options::apply(&l.sock, &next, param, scope) {
                // Put back what the listeners had (best effort) and report.
                for l in &self.inner.listeners {
                    let _ = options::apply(&l.sock, &old, param, scope);
                }
                return Err(ParamChangeError::Kernel {
                    param: param.name(),
                    source,
                });
            }
        }
        core.handle_param_change(next, param, now);
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
        let budget = self.inner.lock().send_budget();
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
        self.inner.lock().stop_accepting();
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
    ///
    /// Then the messages still waiting in the endpoint's send queues (for room in the kernel's
    /// send buffer, or for an association being set up) will never go out: they are dropped
    /// and counted as `send_failed` and under
    /// [`SendDropCause::Shutdown`](crate::counters::SendDropCause::Shutdown).
    pub async fn shutdown(&self, limit: Duration) -> usize {
        let open = self.shutdown_assocs(limit).await;
        let actions = self.inner.lock().discard_queued();
        self.inner.run(actions);
        open
    }

    async fn shutdown_assocs(&self, limit: Duration) -> usize {
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

fn is_stale_assoc(e: &Error) -> bool {
    e.raw_os_error()
        .is_some_and(crate::sys::is_stale_assoc_errno)
}

/// The driver's view of one attempt: what the kernel said, as the core wants to hear it.
fn transmit(result: Result<Option<AssocId>, Error>) -> Transmit {
    match result {
        Ok(assoc) => Transmit::Sent { assoc },
        Err(e) if e.is_would_block() => Transmit::WouldBlock,
        Err(e) => Transmit::Failed(e),
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, EndpointCore> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
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

    /// Carries out the core's actions, in order. Called without the core's lock.
    fn run(&self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Count(c) => self.counters.count(c),
                Action::Emit(e) => self.emit(e),
                Action::Abort {
                    socket,
                    assoc,
                    reason,
                } => {
                    if let Ok(l) = self.listener(socket) {
                        let _ = l.sock.abort(assoc, reason.as_bytes());
                    }
                }
                Action::Wake(socket) => {
                    if let Ok(l) = self.listener(socket) {
                        l.writer.notify_one();
                    }
                }
                Action::Resend(r) => {
                    let result = match self.listener(r.socket) {
                        Ok(l) => transmit(
                            l.sock
                                .try_send(&r.data, SendTarget::Addr(r.dest), &r.options)
                                .map(|_| None),
                        ),
                        Err(_) => Transmit::Failed(Error::InvalidInput("no such listener")),
                    };
                    let more = self.lock().handle_resend_result(Instant::now(), r, result);
                    self.run(more);
                }
            }
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
        let plan = self.lock().plan_send(socket, dest, data, budget);
        let attempt = match plan {
            SendPlan::Done(step) => {
                self.run(step.actions);
                return step.result;
            }
            SendPlan::Transmit(attempt) => attempt,
        };
        let result = self.attempt(l, &attempt, data);
        let step = self
            .lock()
            .handle_transmit(Instant::now(), socket, &attempt, data, result);
        self.run(step.actions);
        step.result
    }

    /// One attempt at a message the core let through: its association's status first when
    /// the core asks for it ([`Attempt::check`]), then the send.
    fn attempt(&self, l: &Listener, attempt: &Attempt, data: &[u8]) -> Transmit {
        if let Some(assoc) = attempt.check {
            let status = l.sock.status(assoc).ok();
            let (go, actions) =
                self.lock()
                    .handle_status(Instant::now(), l.id, assoc, status.as_ref());
            self.run(actions);
            if !go {
                return Transmit::Stalled;
            }
        }
        transmit(self.try_send_route(l, attempt, data))
    }

    /// One attempt on the route, falling back to the address when the association is stale
    /// and the core allows it. Returns the association used, when known.
    fn try_send_route(
        &self,
        l: &Listener,
        attempt: &Attempt,
        data: &[u8],
    ) -> Result<Option<AssocId>, Error> {
        let target = match attempt.route {
            Route::Assoc(a) => SendTarget::Assoc(a),
            Route::Addr(a) => SendTarget::Addr(a),
        };
        match l.sock.try_send(data, target, &attempt.options) {
            Ok(_) => Ok(match attempt.route {
                Route::Assoc(a) => Some(a),
                Route::Addr(_) => None,
            }),
            Err(e)
                if matches!(attempt.route, Route::Assoc(_))
                    && is_stale_assoc(&e)
                    && attempt.addr_fallback =>
            {
                l.sock
                    .try_send(data, SendTarget::Addr(attempt.dest), &attempt.options)
                    .map(|_| None)
            }
            Err(e) => Err(e),
        }
    }

    fn handle_notification(&self, l: &Listener, n: Notification, peer: Option<SocketAddr>) {
        // The only socket input the core needs: a new association's peer addresses.
        let peer_addrs = match &n {
            Notification::AssocChange {
                state: AssocChangeState::CommUp,
                assoc_id,
                ..
            } => l.sock.peer_addrs(*assoc_id).unwrap_or_default(),
            _ => Vec::new(),
        };
        let actions = self
            .lock()
            .handle_notification(Instant::now(), l.id, n, peer, &peer_addrs);
        self.run(actions);
    }
}

/// Receives on listener `i` until the endpoint or the channel goes away. Bad input never ends
/// it: malformed notifications are counted, socket errors back off briefly. About once a
/// second it also gives up the messages left unfinished too long (see the module doc).
async fn receive_loop(inner: Arc<Inner>, i: usize, tx: mpsc::Sender<Received>) {
    let Some(l) = inner.listeners.get(i) else {
        return;
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // `recv` is cancel safe: a tick loses nothing.
        let got = tokio::select! {
            got = l.sock.recv() => got,
            _ = tick.tick() => {
                let max_age = inner.lock().partial_timeout();
                for item in l.sock.expire_partial(max_age) {
                    if let Incoming::Dropped { assoc_id, peer, reason } = item {
                        let actions = inner.lock().handle_dropped(l.id, assoc_id, peer, reason);
                        inner.run(actions);
                    }
                }
                continue;
            }
        };
        match got {
            Ok(Incoming::Message {
                data,
                assoc_id,
                peer,
                stream,
                ppid,
                ..
            }) => {
                let delivery =
                    inner
                        .lock()
                        .handle_message(Instant::now(), l.id, assoc_id, peer, data.len());
                inner.run(delivery.actions);
                if !delivery.deliver {
                    continue;
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
                let actions = inner.lock().handle_dropped(l.id, assoc_id, peer, reason);
                inner.run(actions);
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
/// association went up or down) and the socket takes more; listener 0's task also gives the
/// core its once-a-second [`EndpointCore::handle_timeout`].
async fn send_loop(inner: Arc<Inner>, i: usize) {
    let Some(l) = inner.listeners.get(i) else {
        return;
    };
    let mut tick = Instant::now();
    loop {
        // Listener 0's task also lets association setups that outlived their INIT retry
        // period go, about once a second.
        if i == 0 && tick.elapsed() >= Duration::from_secs(1) {
            tick = Instant::now();
            let actions = inner.lock().handle_timeout(tick);
            inner.run(actions);
        }
        let next = inner.lock().poll_queued(l.id);
        let Some(queued) = next else {
            let _ = tokio::time::timeout(Duration::from_secs(1), l.writer.notified()).await;
            continue;
        };
        let result = inner.attempt(l, &queued.attempt, &queued.data);
        let blocked = matches!(result, Transmit::WouldBlock);
        let actions = inner
            .lock()
            .handle_queued_result(Instant::now(), l.id, queued, result);
        inner.run(actions);
        if blocked {
            let _ = tokio::time::timeout(Duration::from_millis(200), l.sock.writable()).await;
        }
    }
}
