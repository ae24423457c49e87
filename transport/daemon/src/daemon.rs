//! Starting and stopping the daemon: the SCTP endpoint, UDP sockets and TCP listeners from the
//! configuration, the admin API, the relay task, association-event logging, and the signals
//! (SIGTERM/SIGINT: graceful stop; SIGHUP: reload).

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use sipsctp_sctp::{
    AssocId,
    assoc::SocketId,
    endpoint::{AssocEvent, EndpointConfig, SctpEndpoint},
    params::{Applies, Param, ParamError, Scope, SctpParams},
};
use tokio::{
    net::TcpListener,
    signal::unix::{SignalKind, signal},
    sync::mpsc,
    task::JoinHandle,
};

use sipsctp_agent::correlation::{Exporter, Settings as ExporterSettings};

use crate::{
    admin,
    config::{Config, Proto},
    log_limit::LogLimit,
    metrics::Metrics,
    net::{Inbound, Tcp, Udp},
    relay::{Relay, Senders},
    state::Shared,
};

/// Where each transport's receive tasks put what they receive.
struct Inbounds {
    sctp: mpsc::Sender<Inbound>,
    udp: mpsc::Sender<Inbound>,
    tcp: mpsc::Sender<Inbound>,
}

/// Why the daemon could not start (exit code 4).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The SCTP endpoint could not be set up.
    #[error("SCTP: {0}")]
    Sctp(#[from] sipsctp_sctp::endpoint::EndpointError),
    /// A UDP or TCP listener could not bind.
    #[error("{proto} listener {addr}: {source}")]
    Bind {
        /// Transport.
        proto: Proto,
        /// Address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The admin API could not bind.
    #[error("admin API {addr}: {source}")]
    Admin {
        /// Address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The OTLP exporter could not start.
    #[error("OTLP: {0}")]
    Otlp(String),
    /// Metrics registration (a bug).
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

fn addrs_of(config: &Config, proto: Proto) -> Vec<Vec<SocketAddr>> {
    config
        .listen
        .iter()
        .filter(|l| l.proto == proto)
        .map(|l| l.addrs.clone())
        .collect()
}

/// Runs the daemon until a stop signal; returns the exit code.
pub async fn run(
    path: PathBuf,
    config: Config,
    attaching: Option<sipsctp_agent::kernel::Attaching>,
) -> u8 {
    let started = Instant::now();
    // One queue per transport, served in turn by the relay: a flood on one transport (a TCP
    // client sending as fast as it can) cannot hold up what the others receive.
    let (sctp_tx, sctp_rx) = mpsc::channel::<Inbound>(4096);
    let (udp_tx, udp_rx) = mpsc::channel::<Inbound>(4096);
    let (tcp_tx, tcp_rx) = mpsc::channel::<Inbound>(4096);
    let tx = Inbounds {
        sctp: sctp_tx,
        udp: udp_tx,
        tcp: tcp_tx,
    };
    let rx = [sctp_rx, udp_rx, tcp_rx];
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();
    let parts = match start(&config, tx, &mut tasks).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("sipsctpd: cannot start: {e}");
            return crate::exit::STARTUP;
        }
    };
    let (shared, senders, exporter) = parts;
    let relay = match Relay::new(&config, &senders.local_addrs()) {
        Ok(r) => Arc::new(RwLock::new(Arc::new(r))),
        Err(e) => {
            eprintln!("sipsctpd: invalid configuration: {e}");
            return crate::exit::CONFIG;
        }
    };
    let stop = Arc::new(tokio::sync::Notify::new());
    let relay_task = tokio::spawn(crate::relay::run(
        rx,
        relay.clone(),
        senders.clone(),
        shared.clone(),
        stop.clone(),
    ));
    if let Some(ep) = &shared.sctp {
        tasks.push(tokio::spawn(log_events(ep.clone())));
    }
    let ports: Vec<u16> = senders
        .local_addrs()
        .iter()
        .filter(|(p, _)| *p == Proto::Sctp)
        .map(|(_, a)| a.port())
        .collect();
    let (fatal_tx, mut fatal) = mpsc::channel::<String>(1);
    let eyes = sipsctp_agent::kernel::Settings {
        mode: config.ebpf.mode,
        attaching,
        ports,
        poll: config.ebpf.poll_interval,
        fatal: fatal_tx,
        port_updates: None,
    };
    match sipsctp_agent::kernel::start(
        eyes,
        shared.metrics.kernel.clone(),
        shared.recent.clone(),
        shared.sctp.clone().map(|ep| {
            let paths: sipsctp_agent::kernel::PathSource = Arc::new(move || {
                ep.assocs()
                    .iter()
                    .flat_map(|a| a.paths.iter())
                    .map(|p| sipsctp_agent::kernel::PathSample {
                        rto: Duration::from_millis(u64::from(p.rto_ms)),
                        srtt: Duration::from_millis(u64::from(p.srtt_ms)),
                    })
                    .collect()
            });
            paths
        }),
        Box::new(shared.exporter.clone()),
    )
    .await
    {
        Ok(t) => tasks.push(t),
        Err(reason) => {
            tracing::error!(%reason, "[ebpf] mode = \"on\" but the probes cannot run");
            eprintln!("sipsctpd: cannot start: eBPF: {reason}");
            return crate::exit::STARTUP;
        }
    }
    tracing::info!(
        listeners = ?shared.listeners,
        admin = %config.admin.listen,
        routes = config.routes.len(),
        startup_ms = started.elapsed().as_millis() as u64,
        "sipsctpd started"
    );
    let code = signals(&path, config, &shared, &relay, &senders, &mut fatal).await;
    // 1. No new SCTP associations. 2. SHUTDOWN the existing ones while everything still
    // receives and relays (a peer whose data is not read cannot finish its SHUTDOWN, and
    // answers to requests in flight still go out). 3. Stop receiving; the relay drains what was
    // already received.
    if let Some(ep) = &shared.sctp {
        if let Err(e) = ep.stop_accepting() {
            tracing::warn!(error = %e, "could not stop accepting SCTP associations");
        }
        let open = ep.shutdown(Duration::from_secs(5)).await;
        if open > 0 {
            tracing::warn!(open, "SCTP associations still open after 5 s of SHUTDOWN");
        } else {
            tracing::info!("all SCTP associations shut down");
        }
    }
    for t in &tasks {
        t.abort();
    }
    stop.notify_one();
    if tokio::time::timeout(Duration::from_secs(2), relay_task)
        .await
        .is_err()
    {
        tracing::warn!("relay did not drain within 2 s");
    }
    // Transactions still lingering are joined now; their spans get at most 2 s to go out.
    exporter.shutdown(Duration::from_secs(2)).await;
    tracing::info!("sipsctpd stopped");
    code
}

async fn start(
    config: &Config,
    tx: Inbounds,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Result<(Arc<Shared>, Senders, Exporter), StartError> {
    let metrics = Metrics::new()?;
    let mut listeners = Vec::new();
    let sctp_listeners = addrs_of(config, Proto::Sctp);
    let sctp = if sctp_listeners.is_empty() {
        None
    } else {
        let (ep, mut received) = SctpEndpoint::bind(&EndpointConfig {
            listeners: sctp_listeners,
            params: config.sctp.clone(),
            max_message_size: config.sip.max_message_size,
            ..EndpointConfig::default()
        })?;
        let ep = Arc::new(ep);
        // With the kernel's default policy one send buffer serves every association of a
        // socket: say so, and what the endpoint does about it.
        match sipsctp_sctp::sysctl::sndbuf_policy() {
            Ok(sipsctp_sctp::sysctl::SndbufPolicy::Shared) => tracing::info!(
                "net.sctp.sndbuf_policy = 0: one send buffer per listener, shared by its \
                 associations; sipsctpd bounds what it queues per destination and holds data for \
                 associations being set up out of the kernel (sipsctp_sctp_send_dropped_total)"
            ),
            Ok(p) => tracing::info!(policy = ?p, "net.sctp.sndbuf_policy"),
            Err(e) => tracing::warn!(error = %e, "cannot read net.sctp.sndbuf_policy"),
        }
        let locals = ep.listeners();
        for (_, addrs) in &locals {
            listeners.push(format!(
                "sctp:{}",
                addrs
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            ));
        }
        let tx = tx.sctp.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(m) = received.recv().await {
                let local = locals
                    .iter()
                    .find(|(id, _)| *id == m.socket)
                    .and_then(|(_, a)| a.first().copied())
                    .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
                let msg = Inbound {
                    proto: Proto::Sctp,
                    peer: m.peer,
                    local,
                    sctp: Some((m.socket, m.assoc)),
                    data: m.data,
                };
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
        }));
        Some(ep)
    };
    let udp_addrs: Vec<SocketAddr> = addrs_of(config, Proto::Udp).into_iter().flatten().collect();
    let udp = if udp_addrs.is_empty() {
        None
    } else {
        let udp = Udp::bind(&udp_addrs)
            .await
            .map_err(|(addr, source)| StartError::Bind {
                proto: Proto::Udp,
                addr,
                source,
            })?;
        tasks.extend(udp.spawn_receivers(tx.udp.clone(), config.sip.max_message_size));
        listeners.extend(udp.local_addrs().iter().map(|a| format!("udp:{a}")));
        Some(Arc::new(udp))
    };
    let tcp_addrs: Vec<SocketAddr> = addrs_of(config, Proto::Tcp).into_iter().flatten().collect();
    let tcp = if tcp_addrs.is_empty() {
        None
    } else {
        let framer = crate::relay::framer(config.sip.max_message_size);
        // Messages the TCP side drops after the relay handed them over (a connection that
        // could not be made, or closed with data queued) are counted with the relay's drops.
        let dropped = metrics.dropped.clone();
        let sink: crate::net::DropSink = Arc::new(move |why, n| {
            dropped.with_label_values(&[why.as_str()]).inc_by(n);
        });
        let (tcp, t) = Tcp::bind(
            &tcp_addrs,
            tx.tcp.clone(),
            framer,
            config.sip.max_message_size,
            crate::net::TcpLimits::from(&config.tcp),
            sink,
            metrics.tcp.events(),
        )
        .await
        .map_err(|(addr, source)| StartError::Bind {
            proto: Proto::Tcp,
            addr,
            source,
        })?;
        tasks.extend(t);
        listeners.extend(tcp.local_addrs().iter().map(|a| format!("tcp:{a}")));
        Some(tcp)
    };
    let admin_listener = TcpListener::bind(config.admin.listen)
        .await
        .map_err(|source| StartError::Admin {
            addr: config.admin.listen,
            source,
        })?;
    let admin_metrics = admin::AdminMetrics::register(metrics.registry())?;
    let exporter = Exporter::start(
        ExporterSettings {
            correlate: sipsctp_correlate::Config {
                // Until the probes say they are attached.
                kernel_events: false,
                // A transaction reaches the correlator at most its timeout after its request
                // went out; kernel events older than that (and the linger) are of no use.
                retention: config.sip.transaction_timeout + Duration::from_secs(8),
                ..sipsctp_correlate::Config::default()
            },
            peers: config.peer_names(),
            otlp: config
                .otlp
                .as_ref()
                .map(|o| {
                    sipsctp_agent::otlp::OtlpExporter::start_now(o, "sipsctpd", metrics.registry())
                })
                .transpose()
                .map_err(|e| StartError::Otlp(e.to_string()))?,
        },
        metrics.registry(),
    )
    .map_err(|e| match e {
        sipsctp_agent::correlation::StartError::Metrics(m) => StartError::Metrics(m),
    })?;
    let shared = Arc::new(Shared {
        exporter: exporter.handle(),
        netns: sipsctp_agent::correlation::own_netns().unwrap_or(0),
        sctp: sctp.clone(),
        metrics,
        admin_metrics,
        admin_token: config.admin.token.clone(),
        listeners,
        started: Instant::now(),
        recent: Arc::new(sipsctp_agent::kernel::Recent::default()),
    });
    tasks.push(tokio::spawn(admin::serve(admin_listener, shared.clone())));
    let sctp_from = sctp
        .as_deref()
        .map(Senders::sctp_from)
        .unwrap_or([sipsctp_sctp::assoc::SocketId(0); 2]);
    Ok((
        shared,
        Senders {
            sctp,
            sctp_from,
            udp,
            tcp,
        },
        exporter,
    ))
}

/// Logs what happens to associations: the operator's view of the SCTP side, thinned by
/// [`EventLog`].
async fn log_events(ep: Arc<SctpEndpoint>) {
    let mut events = ep.events();
    let mut log = EventLog::new();
    loop {
        match events.recv().await {
            Ok(e) => {
                let Some((line, n)) = log.admit(&e, Instant::now()) else {
                    continue;
                };
                match line {
                    Line::Association => {
                        tracing::info!(event = ?e, not_logged_since_last = n, "SCTP association")
                    }
                    Line::Path => {
                        tracing::info!(event = ?e, not_logged_since_last = n, "SCTP path")
                    }
                    Line::Info => tracing::info!(event = ?e, not_logged_since_last = n, "SCTP"),
                    Line::Warn => tracing::warn!(event = ?e, not_logged_since_last = n, "SCTP"),
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "SCTP event log fell behind");
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// How an association event is logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Line {
    /// Up, down, the peer's SHUTDOWN (info, "SCTP association").
    Association,
    /// Path changes and restarts (info, "SCTP path").
    Path,
    /// What is common and counted in the metrics: an association that could not start, a
    /// message not delivered, resent or dropped (info).
    Info,
    /// ERROR chunks (REMOTE_ERROR), associations aborted over `sctp_max_assocs`, anything
    /// else (warn).
    Warn,
}

/// How many associations' peers [`EventLog`] remembers (beyond it, it starts over).
const REMEMBERED_PEERS: usize = 8192;

/// Which association-event lines to write. Every kind is logged at most once a second per
/// peer address (the IP, whatever the port: a churning peer opens each association from a new
/// one), the next line carrying how many were held back, so that a peer opening and closing
/// associations, sending ERROR chunks or being refused over `sctp_max_assocs` in a loop cannot
/// flood the log; the metrics count every event. Pure: the caller passes the time.
struct EventLog {
    repeats: LogLimit<(&'static str, Option<IpAddr>)>,
    /// The peer of each association seen coming up, for the events that name only the
    /// association (the peer's SHUTDOWN, REMOTE_ERROR).
    peers: HashMap<(SocketId, AssocId), IpAddr>,
}

impl EventLog {
    fn new() -> EventLog {
        EventLog {
            repeats: LogLimit::new(Duration::from_secs(1), 1024),
            peers: HashMap::new(),
        }
    }

    fn peer_of(&self, socket: SocketId, assoc: AssocId) -> Option<IpAddr> {
        self.peers.get(&(socket, assoc)).copied()
    }

    /// Whether to log `e` at `now`: how, with the number of its kind and peer held back since
    /// the previous line; `None` to hold it back.
    fn admit(&mut self, e: &AssocEvent, now: Instant) -> Option<(Line, u64)> {
        let ip = |a: &Option<SocketAddr>| a.map(|a| a.ip().to_canonical());
        let (kind, peer, line) = match e {
            AssocEvent::Up {
                socket,
                assoc,
                peer,
                ..
            } => {
                if let Some(p) = ip(peer) {
                    if self.peers.len() >= REMEMBERED_PEERS {
                        self.peers.clear();
                    }
                    self.peers.insert((*socket, *assoc), p);
                }
                ("up", ip(peer), Line::Association)
            }
            AssocEvent::Down {
                socket,
                assoc,
                peer,
                ..
            } => {
                let known = self.peers.remove(&(*socket, *assoc));
                ("down", ip(peer).or(known), Line::Association)
            }
            AssocEvent::RemoteShutdown { socket, assoc } => (
                "remote_shutdown",
                self.peer_of(*socket, *assoc),
                Line::Association,
            ),
            AssocEvent::Restart { peer, .. } => ("restart", ip(peer), Line::Path),
            AssocEvent::PathChange { addr, .. } => {
                ("path", Some(addr.ip().to_canonical()), Line::Path)
            }
            AssocEvent::CantStart { peer, .. } => ("cant_start", ip(peer), Line::Info),
            AssocEvent::SendFailure { dest, .. } => ("send_failure", ip(dest), Line::Info),
            AssocEvent::SendRetried { dest, .. } => {
                ("send_retried", Some(dest.ip().to_canonical()), Line::Info)
            }
            AssocEvent::Dropped { peer, .. } => ("dropped", ip(peer), Line::Info),
            AssocEvent::LimitReject { peer, .. } => ("limit_reject", ip(peer), Line::Warn),
            AssocEvent::RemoteError { socket, assoc, .. } => {
                ("remote_error", self.peer_of(*socket, *assoc), Line::Warn)
            }
            AssocEvent::Stalled { socket, assoc, .. } => {
                ("stalled", self.peer_of(*socket, *assoc), Line::Warn)
            }
            AssocEvent::Resumed { socket, assoc, .. } => {
                ("resumed", self.peer_of(*socket, *assoc), Line::Info)
            }
            AssocEvent::StallAborted { socket, assoc, .. } => {
                ("stall_aborted", self.peer_of(*socket, *assoc), Line::Warn)
            }
            _ => ("other", None, Line::Warn),
        };
        self.repeats
            .check((kind, peer), now)
            .map(|held| (line, held))
    }
}

/// Waits for signals: SIGHUP reloads, SIGTERM/SIGINT return the exit code 0. A message on
/// `fatal` (the eBPF loader timed out) returns the start-up exit code.
async fn signals(
    path: &Path,
    mut config: Config,
    shared: &Shared,
    relay: &RwLock<Arc<Relay>>,
    senders: &Senders,
    fatal: &mut mpsc::Receiver<String>,
) -> u8 {
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return crate::exit::RUNTIME;
    };
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: stopping"); return crate::exit::OK; }
            _ = int.recv() => { tracing::info!("SIGINT: stopping"); return crate::exit::OK; }
            Some(why) = fatal.recv() => {
                tracing::error!(reason = %why, "stopping");
                eprintln!("sipsctpd: cannot start: eBPF: {why}");
                return crate::exit::STARTUP;
            }
            _ = hup.recv() => {
                match reload(path, &config, shared, relay, senders) {
                    Ok(new) => {
                        config = new;
                        shared.metrics.reloaded(true);
                    }
                    Err(e) => {
                        // Logged before it is counted: whoever sees the count finds the reason.
                        tracing::error!(error = %e, "SIGHUP: configuration refused; the running one stays");
                        shared.metrics.reloaded(false);
                    }
                }
            }
        }
    }
}

/// Applies a new configuration file. What can change at run time changes, all or nothing:
/// routes and the `[sip]` settings the relay reads (`record_route`, `transaction_capacity`,
/// `transaction_timeout_ms`) through a new relay core, the runtime-changeable `[sctp]`
/// parameters as new endpoint defaults (new associations get them), validated as a whole set
/// against the running values and applied in an order that keeps every step valid. What was
/// fixed at start keeps its running value and is logged naming the key ("restart needed"):
/// listeners, `[admin]`, `[log]`, `[ebpf]`, `[sip] max_message_size`, read-only `[sctp]`
/// parameters; a removed `[sctp]` key keeps its current value.
///
/// # Errors
/// The file is refused (nothing changed): unreadable or invalid, a route without a running
/// listener of its transport, an `[sctp]` set the rules refuse, or a value the kernel refuses
/// (what was applied before it is put back).
fn reload(
    path: &Path,
    old: &Config,
    shared: &Shared,
    relay: &RwLock<Arc<Relay>>,
    senders: &Senders,
) -> Result<Config, String> {
    let new = Config::load(path).map_err(|e| e.to_string())?;
    let mut applied = new.clone();
    let kept = keep_start_only(old, &mut applied);
    routes_have_listeners(&applied)?;
    let sctp = match &shared.sctp {
        Some(ep) => Some(plan_sctp(&old.sctp, &new.sctp, ep.params()).map_err(|e| e.to_string())?),
        None => None,
    };
    // Built before anything changes: a refusal here leaves everything as it was.
    let fresh = Arc::new(Relay::new(&applied, &senders.local_addrs())?);
    if let (Some(ep), Some(plan)) = (&shared.sctp, &sctp) {
        apply_sctp(ep, &plan.steps)?;
        applied.sctp = plan.config.clone();
        for (p, why) in &plan.kept {
            tracing::warn!(key = %format!("sctp.{}", p.name()), "SIGHUP: sctp.{}: {why}", p.name());
        }
    }
    for k in &kept {
        tracing::warn!(key = k.key, "SIGHUP: {}", k.message);
    }
    *relay.write().unwrap_or_else(|p| p.into_inner()) = fresh;
    shared.exporter.set_peers(applied.peer_names());
    tracing::info!(
        routes = applied.routes.len(),
        "SIGHUP: configuration reloaded"
    );
    Ok(applied)
}

/// A setting a reload cannot change: its key and the line saying so.
#[derive(Debug, PartialEq, Eq)]
struct Kept {
    key: &'static str,
    message: String,
}

/// Puts back into `new` every setting fixed at start that differs from `old` (the running
/// configuration) and says which, so that `new` is what will be in force.
fn keep_start_only(old: &Config, new: &mut Config) -> Vec<Kept> {
    let mut kept = Vec::new();
    let mut keep = |key: &'static str, why: &str, running: String| {
        kept.push(Kept {
            key,
            message: format!(
                "{key} cannot change at run time ({why}); restart needed; keeping {running}"
            ),
        });
    };
    if new.listen != old.listen {
        keep(
            "listen",
            "the sockets are bound at start",
            "the running listeners".into(),
        );
        new.listen = old.listen.clone();
    }
    if new.admin.listen != old.admin.listen {
        keep(
            "admin.listen",
            "bound at start",
            old.admin.listen.to_string(),
        );
        new.admin.listen = old.admin.listen;
    }
    if new.admin.token != old.admin.token {
        keep("admin.token", "read at start", "the running token".into());
        new.admin.token = old.admin.token.clone();
    }
    if new.sip.max_message_size != old.sip.max_message_size {
        keep(
            "sip.max_message_size",
            "it sized the UDP receive buffers, the TCP framer and the SCTP reassembler at start",
            old.sip.max_message_size.to_string(),
        );
        new.sip.max_message_size = old.sip.max_message_size;
    }
    if new.log != old.log {
        keep(
            "log",
            "logging is set up at start",
            format!("{:?}", old.log),
        );
        new.log = old.log.clone();
    }
    if new.ebpf != old.ebpf {
        keep(
            "ebpf",
            "the kernel eyes start once",
            format!("{:?}", old.ebpf),
        );
        new.ebpf = old.ebpf.clone();
    }
    if new.otlp != old.otlp {
        keep(
            "otlp",
            "the span exporter starts once",
            match &old.otlp {
                Some(o) => format!("export to {}", o.endpoint),
                None => "no export".into(),
            },
        );
        new.otlp = old.otlp.clone();
    }
    kept
}

/// Refuses routes to a transport no running listener has (a listener added by the same file
/// is not bound before a restart).
fn routes_have_listeners(config: &Config) -> Result<(), String> {
    for (i, r) in config.routes.iter().enumerate() {
        if !config.listen.iter().any(|l| l.proto == r.upstream.proto) {
            return Err(format!(
                "route[{i}].upstream: no running [[listen]] with proto = \"{}\" to send from \
                 (listeners change only at restart)",
                r.upstream.proto
            ));
        }
    }
    Ok(())
}

/// The `[sctp]` part of a reload.
#[derive(Debug, PartialEq, Eq)]
struct SctpReload {
    /// The changes, in an order where each one passes the rules against the values before it
    /// (as [`SctpEndpoint::set_param`] checks them).
    steps: Vec<(Param, i64)>,
    /// Changed keys that keep their running value, and why.
    kept: Vec<(Param, &'static str)>,
    /// The `[sctp]` values in force afterwards, as a configuration lists them.
    config: Vec<(Param, i64)>,
}

/// Plans the `[sctp]` changes from the running file's values (`old`) to the new file's
/// (`new`), with `running` the values in force (including runtime changes through the admin
/// API, which a key the file did not change keeps). The new set is checked as a whole, as at
/// start ([`SctpParams::set`] then [`SctpParams::validate`]); then each change is ordered so
/// that every step is valid too (lowering `sctp_srto_min` before `sctp_srto_initial`, raising
/// `sctp_srto_max` first, switching tracking on before reuse, ...).
///
/// # Errors
/// A value out of range or a set the rules refuse, naming the parameters.
fn plan_sctp(
    old: &[(Param, i64)],
    new: &[(Param, i64)],
    running: SctpParams,
) -> Result<SctpReload, ParamError> {
    let value =
        |list: &[(Param, i64)], p: Param| list.iter().find(|(q, _)| *q == p).map(|(_, v)| *v);
    let mut target = running;
    let mut changes = Vec::new();
    let mut kept = Vec::new();
    let mut config = Vec::new();
    for p in Param::ALL {
        let (want, had) = (value(new, p), value(old, p));
        match (want, had) {
            (w, h) if w == h => config.extend(h.map(|v| (p, v))),
            (None, Some(h)) => {
                kept.push((
                    p,
                    "removed from the file: keeps its current value until restart",
                ));
                config.push((p, h));
            }
            (Some(_), h) if p.spec().applies == Applies::ReadOnly => {
                kept.push((p, "read-only at run time; restart needed"));
                config.extend(h.map(|v| (p, v)));
            }
            (Some(w), _) => {
                target.set(p, w)?;
                changes.push((p, w));
                config.push((p, w));
            }
            (None, None) => {}
        }
    }
    target.validate()?;
    // Each remaining change that is valid now goes next. This always finishes for a valid
    // target: the rules are an order (min <= initial <= max) and an implication (reuse needs
    // tracking), and from any valid set some change towards a valid target is valid.
    let mut state = running;
    let mut steps = Vec::new();
    while !changes.is_empty() {
        let mut refused = None;
        let next = changes.iter().position(|&(p, v)| {
            let mut s = state;
            match s.change(p, v) {
                Ok(_) => true,
                Err(e) => {
                    refused = Some(e);
                    false
                }
            }
        });
        match (next, refused) {
            (Some(i), _) => {
                let (p, v) = changes.remove(i);
                state.change(p, v)?;
                steps.push((p, v));
            }
            (None, Some(e)) => return Err(e),
            (None, None) => break,
        }
    }
    Ok(SctpReload {
        steps,
        kept,
        config,
    })
}

/// Applies `steps` to the endpoint's defaults (new associations), in order; if the kernel
/// refuses one, puts back what was applied before it, in reverse order.
fn apply_sctp(ep: &SctpEndpoint, steps: &[(Param, i64)]) -> Result<(), String> {
    let before = ep.params();
    for (i, &(p, v)) in steps.iter().enumerate() {
        match ep.set_param(p.name(), v, Scope::Future) {
            Ok(now) => tracing::info!(
                param = p.name(),
                value = now,
                "SIGHUP: SCTP parameter changed"
            ),
            Err(e) => {
                for &(q, _) in steps.iter().take(i).rev() {
                    if let Err(e) = ep.set_param(q.name(), before.get(q), Scope::Future) {
                        tracing::error!(param = q.name(), error = %e, "SIGHUP: could not put the SCTP parameter back");
                    }
                }
                return Err(format!("sctp.{}: {e}", p.name()));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replay(running: SctpParams, steps: &[(Param, i64)]) -> SctpParams {
        let mut s = running;
        for &(p, v) in steps {
            s.change(p, v)
                .unwrap_or_else(|e| panic!("step {p} = {v} refused: {e}; steps {steps:?}"));
        }
        s
    }

    #[test]
    fn lowering_srto_min_and_initial_together_is_planned_min_first() {
        use Param::{SrtoInitial, SrtoMin};
        let running = SctpParams::default();
        let old = [(SrtoInitial, 3000), (SrtoMin, 1000)];
        let new = [(SrtoInitial, 600), (SrtoMin, 300)];
        // One at a time in Param::ALL order (the old reload) is refused.
        let mut naive = running;
        assert!(naive.change(SrtoInitial, 600).is_err());
        let plan = plan_sctp(&old, &new, running).unwrap();
        assert_eq!(plan.steps, vec![(SrtoMin, 300), (SrtoInitial, 600)]);
        let end = replay(running, &plan.steps);
        assert_eq!((end.get(SrtoMin), end.get(SrtoInitial)), (300, 600));
        assert_eq!(plan.config, vec![(SrtoInitial, 600), (SrtoMin, 300)]);
        assert!(plan.kept.is_empty());
    }

    #[test]
    fn every_rto_move_between_valid_sets_is_planned_in_valid_steps() {
        use Param::{SrtoInitial, SrtoMax, SrtoMin};
        let values = [200, 500, 1000, 3000, 60_000];
        let mut triples = Vec::new();
        for a in values {
            for b in values.into_iter().filter(|b| *b >= a) {
                for c in values.into_iter().filter(|c| *c >= b) {
                    triples.push([(SrtoMin, a), (SrtoInitial, b), (SrtoMax, c)]);
                }
            }
        }
        for from in &triples {
            let mut running = SctpParams::default();
            for &(p, v) in from {
                running.set(p, v).unwrap();
            }
            running.validate().unwrap();
            for to in &triples {
                let plan = plan_sctp(from, to, running)
                    .unwrap_or_else(|e| panic!("{from:?} -> {to:?}: {e}"));
                let end = replay(running, &plan.steps);
                for &(p, v) in to {
                    assert_eq!(end.get(p), v, "{from:?} -> {to:?}");
                }
            }
        }
    }

    #[test]
    fn tracking_and_reuse_go_in_the_order_the_rule_needs() {
        use Param::{AssocReuse, AssocTracking};
        let on = [(AssocTracking, 1), (AssocReuse, 1)];
        let off = [(AssocTracking, 0), (AssocReuse, 0)];
        let running = SctpParams::default();
        let plan = plan_sctp(&on, &off, running).unwrap();
        assert_eq!(plan.steps, vec![(AssocReuse, 0), (AssocTracking, 0)]);
        let stopped = replay(running, &plan.steps);
        let plan = plan_sctp(&off, &on, stopped).unwrap();
        assert_eq!(plan.steps, vec![(AssocTracking, 1), (AssocReuse, 1)]);
        replay(stopped, &plan.steps);
    }

    #[test]
    fn an_invalid_set_is_refused_naming_the_rule() {
        use Param::{SrtoInitial, SrtoMin};
        let running = SctpParams::default();
        let e = plan_sctp(&[], &[(SrtoInitial, 600)], running).unwrap_err();
        assert_eq!(
            e,
            ParamError::RtoOrder {
                min: 1000,
                initial: 600,
                max: 60_000
            }
        );
        let e = plan_sctp(&[], &[(SrtoMin, -5)], running).unwrap_err();
        assert!(e.to_string().contains("sctp_srto_min = -5"), "{e}");
    }

    #[test]
    fn read_only_and_removed_keys_keep_their_values() {
        use Param::{SackDelay, SocketRcvbuf, SrtoInitial};
        let running = SctpParams::default();
        let old = [(SocketRcvbuf, 100_000), (SrtoInitial, 2000)];
        let new = [(SocketRcvbuf, 200_000), (SackDelay, 100)];
        let plan = plan_sctp(&old, &new, running).unwrap();
        assert_eq!(plan.steps, vec![(SackDelay, 100)]);
        assert_eq!(plan.kept.len(), 2, "{:?}", plan.kept);
        assert_eq!(plan.kept[0].0, SocketRcvbuf);
        assert!(plan.kept[0].1.contains("restart needed"));
        assert_eq!(plan.kept[1].0, SrtoInitial);
        assert_eq!(
            plan.config,
            vec![
                (SocketRcvbuf, 100_000),
                (SrtoInitial, 2000),
                (SackDelay, 100)
            ]
        );
    }

    fn up(assoc: u32, peer: &str) -> AssocEvent {
        AssocEvent::Up {
            socket: SocketId(0),
            assoc: AssocId(assoc),
            peer: Some(peer.parse().unwrap()),
            outbound_streams: 1,
            inbound_streams: 1,
        }
    }

    fn down(assoc: u32, peer: &str) -> AssocEvent {
        AssocEvent::Down {
            socket: SocketId(0),
            assoc: AssocId(assoc),
            peer: Some(peer.parse().unwrap()),
            cause: sipsctp_sctp::endpoint::DownCause::ShutdownComplete,
        }
    }

    fn error(assoc: u32) -> AssocEvent {
        AssocEvent::RemoteError {
            socket: SocketId(0),
            assoc: AssocId(assoc),
            error: 1,
        }
    }

    #[test]
    fn a_churning_peer_gets_a_line_a_second_per_kind_whatever_its_ports() {
        let mut log = EventLog::new();
        let t0 = Instant::now();
        let mut lines = Vec::new();
        for i in 0..100u32 {
            let at = t0 + Duration::from_millis(u64::from(i) * 5);
            let peer = format!("10.0.0.1:{}", 40_000 + i);
            lines.extend(log.admit(&up(i + 3, &peer), at));
            lines.extend(log.admit(&error(i + 3), at));
            let reject = AssocEvent::LimitReject {
                socket: SocketId(0),
                assoc: AssocId(i + 3),
                peer: Some(peer.parse().unwrap()),
            };
            lines.extend(log.admit(&reject, at));
            lines.extend(log.admit(&down(i + 3, &peer), at));
        }
        assert_eq!(
            lines,
            [
                (Line::Association, 0),
                (Line::Warn, 0),
                (Line::Warn, 0),
                (Line::Association, 0),
            ]
        );
        // ERROR chunks are keyed by the association's peer: another peer's are logged.
        assert_eq!(
            log.admit(&up(400, "10.0.0.3:5060"), t0),
            Some((Line::Association, 0))
        );
        assert_eq!(log.admit(&error(400), t0), Some((Line::Warn, 0)));
        assert_eq!(log.admit(&error(400), t0), None);
        // Another peer has lines of its own; IPv4-mapped IPv6 is the same peer.
        assert_eq!(
            log.admit(&up(500, "10.0.0.2:5060"), t0),
            Some((Line::Association, 0))
        );
        assert_eq!(log.admit(&up(501, "[::ffff:10.0.0.2]:5061"), t0), None);
        // A second later the next line says how many were held back.
        let later = t0 + Duration::from_secs(1);
        assert_eq!(
            log.admit(&up(600, "10.0.0.1:1"), later),
            Some((Line::Association, 99))
        );
        // The association's peer is forgotten once it is down.
        assert!(!log.peers.contains_key(&(SocketId(0), AssocId(3))));
        assert_eq!(log.peers.len(), 4);
    }

    #[test]
    fn the_remembered_peers_are_bounded() {
        let mut log = EventLog::new();
        let t0 = Instant::now();
        for i in 0..(REMEMBERED_PEERS as u32 + 10) {
            log.admit(&up(i + 3, "10.0.0.1:1"), t0);
        }
        assert!(log.peers.len() <= REMEMBERED_PEERS);
    }

    const BASE: &str = "[[listen]]\nproto = \"udp\"\naddresses = [\"127.0.0.1\"]\nport = 5060\n\
                        [[route]]\nupstream = \"udp:127.0.0.1:5080\"\n";

    #[test]
    fn settings_fixed_at_start_are_kept_and_named() {
        let old = Config::parse(&format!(
            "{BASE}[sip]\nmax_message_size = 2048\ntransaction_timeout_ms = 32000\n"
        ))
        .unwrap();
        let mut new = Config::parse(&format!(
            "{BASE}[sip]\nmax_message_size = 8192\nrecord_route = true\n\
             transaction_timeout_ms = 5000\n[log]\nlevel = \"debug\"\n\
             [admin]\nlisten = \"127.0.0.1:9999\"\ntoken = \"secret\"\n"
        ))
        .unwrap();
        let kept = keep_start_only(&old, &mut new);
        let keys: Vec<&str> = kept.iter().map(|k| k.key).collect();
        assert_eq!(
            keys,
            ["admin.listen", "admin.token", "sip.max_message_size", "log"]
        );
        let size = &kept[2].message;
        assert!(
            size.starts_with("sip.max_message_size cannot change at run time")
                && size.contains("restart needed")
                && size.ends_with("keeping 2048"),
            "{size}"
        );
        assert!(
            !kept.iter().any(|k| k.message.contains("secret")),
            "the token is never logged"
        );
        assert_eq!(new.sip.max_message_size, 2048);
        assert_eq!(new.admin, old.admin);
        assert_eq!(new.log, old.log);
        // What can change does.
        assert!(new.sip.record_route);
        assert_eq!(new.sip.transaction_timeout, Duration::from_secs(5));
    }

    #[test]
    fn a_route_needs_a_running_listener() {
        let old = Config::parse(BASE).unwrap();
        let mut new = Config::parse(&format!(
            "{BASE}[[listen]]\nproto = \"tcp\"\naddresses = [\"127.0.0.1\"]\nport = 5060\n\
             [[route]]\ndomain = \"example.net\"\nupstream = \"tcp:127.0.0.1:5090\"\n"
        ))
        .unwrap();
        assert!(routes_have_listeners(&new).is_ok());
        keep_start_only(&old, &mut new);
        let e = routes_have_listeners(&new).unwrap_err();
        assert!(
            e.starts_with("route[1].upstream: no running [[listen]]"),
            "{e}"
        );
    }
}
