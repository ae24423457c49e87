//! Starting and stopping the daemon: the SCTP endpoint, UDP sockets and TCP listeners from the
//! configuration, the admin API, the relay task, association-event logging, and the signals
//! (SIGTERM/SIGINT: graceful stop; SIGHUP: reload).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use sipsctp_sctp::{
    endpoint::{AssocEvent, EndpointConfig, SctpEndpoint},
    params::{Applies, Param, Scope},
};
use tokio::{
    net::TcpListener,
    signal::unix::{SignalKind, signal},
    sync::mpsc,
    task::JoinHandle,
};

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
pub async fn run(path: PathBuf, config: Config, attaching: Option<crate::kernel::Attaching>) -> u8 {
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
    let (shared, senders) = parts;
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
    let eyes = crate::kernel::Settings {
        mode: config.ebpf.mode,
        attaching,
        ports,
        poll: config.ebpf.poll_interval,
    };
    match crate::kernel::start(
        eyes,
        shared.metrics.kernel.clone(),
        shared.recent.clone(),
        shared.sctp.clone(),
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
    let code = signals(&path, config, &shared, &relay, &senders).await;
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
    tracing::info!("sipsctpd stopped");
    code
}

async fn start(
    config: &Config,
    tx: Inbounds,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Result<(Arc<Shared>, Senders), StartError> {
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
            crate::net::TcpLimits::default(),
            sink,
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
    let admin_metrics = admin::AdminMetrics::register(metrics.kernel.registry())?;
    let shared = Arc::new(Shared {
        sctp: sctp.clone(),
        metrics,
        admin_metrics,
        admin_token: config.admin.token.clone(),
        listeners,
        started: Instant::now(),
        recent: Arc::new(crate::kernel::Recent::default()),
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
    ))
}

/// Logs what happens to associations: the operator's view of the SCTP side.
async fn log_events(ep: Arc<SctpEndpoint>) {
    let mut events = ep.events();
    // The per-message kinds at most once a second per kind and peer.
    let mut repeats = LogLimit::new(Duration::from_secs(1), 1024);
    loop {
        match events.recv().await {
            Ok(e) => match &e {
                AssocEvent::Up { .. }
                | AssocEvent::Down { .. }
                | AssocEvent::RemoteShutdown { .. } => {
                    tracing::info!(event = ?e, "SCTP association")
                }
                AssocEvent::PathChange { .. } | AssocEvent::Restart { .. } => {
                    tracing::info!(event = ?e, "SCTP path")
                }
                // Counted in the metrics; common when a peer closed its socket (e.g. a
                // retransmitted response for a finished call).
                AssocEvent::CantStart { peer, .. } => {
                    if let Some(n) = repeats.check(("cant_start", *peer), Instant::now()) {
                        tracing::info!(event = ?e, not_logged_since_last = n, "SCTP");
                    }
                }
                AssocEvent::SendFailure { dest, .. } => {
                    if let Some(n) = repeats.check(("send_failure", *dest), Instant::now()) {
                        tracing::info!(event = ?e, not_logged_since_last = n, "SCTP");
                    }
                }
                AssocEvent::SendRetried { dest, .. } => {
                    if let Some(n) = repeats.check(("send_retried", Some(*dest)), Instant::now()) {
                        tracing::info!(event = ?e, not_logged_since_last = n, "SCTP");
                    }
                }
                AssocEvent::Dropped { peer, .. } => {
                    if let Some(n) = repeats.check(("dropped", *peer), Instant::now()) {
                        tracing::info!(event = ?e, not_logged_since_last = n, "SCTP");
                    }
                }
                _ => tracing::warn!(event = ?e, "SCTP"),
            },
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "SCTP event log fell behind");
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Waits for signals: SIGHUP reloads, SIGTERM/SIGINT return the exit code 0.
async fn signals(
    path: &Path,
    mut config: Config,
    shared: &Shared,
    relay: &RwLock<Arc<Relay>>,
    senders: &Senders,
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
            _ = hup.recv() => {
                match reload(path, &config, shared, relay, senders) {
                    Ok(new) => config = new,
                    Err(e) => tracing::error!(error = %e, "SIGHUP: configuration refused; the running one stays"),
                }
            }
        }
    }
}

/// Applies a new configuration file: routes and SIP settings at once, runtime-changeable SCTP
/// parameters as new endpoint defaults. Listener or read-only parameter changes need a restart
/// (logged).
fn reload(
    path: &Path,
    old: &Config,
    shared: &Shared,
    relay: &RwLock<Arc<Relay>>,
    senders: &Senders,
) -> Result<Config, String> {
    let new = Config::load(path).map_err(|e| e.to_string())?;
    if new.listen != old.listen || new.admin != old.admin {
        tracing::warn!("SIGHUP: listener or admin changes need a restart; they are not applied");
    }
    if let Some(ep) = &shared.sctp {
        // Validate the whole set first so that nothing is half applied.
        let mut next = ep.params();
        for p in Param::ALL {
            let want = new.sctp.iter().find(|(q, _)| *q == p).map(|(_, v)| *v);
            let had = old.sctp.iter().find(|(q, _)| *q == p).map(|(_, v)| *v);
            if want == had {
                continue;
            }
            let Some(v) = want else {
                tracing::warn!(
                    param = p.name(),
                    "SIGHUP: a removed [sctp] key keeps its current value until restart"
                );
                continue;
            };
            if p.spec().applies == Applies::ReadOnly {
                tracing::warn!(
                    param = p.name(),
                    "SIGHUP: read-only at run time; needs a restart"
                );
                continue;
            }
            next.change(p, v).map_err(|e| e.to_string())?;
        }
        for (p, v) in next.iter() {
            if v != ep.params().get(p) {
                ep.set_param(p.name(), v, Scope::Future)
                    .map_err(|e| e.to_string())?;
                tracing::info!(
                    param = p.name(),
                    value = v,
                    "SIGHUP: SCTP parameter changed"
                );
            }
        }
    }
    let fresh = Arc::new(Relay::new(&new, &senders.local_addrs())?);
    *relay.write().unwrap_or_else(|p| p.into_inner()) = fresh;
    tracing::info!(routes = new.routes.len(), "SIGHUP: configuration reloaded");
    Ok(new)
}
