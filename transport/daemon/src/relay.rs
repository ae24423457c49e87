//! The relay task: every inbound message (SCTP, UDP, TCP) is parsed once, counted, handed to
//! the stateless relay core (`sipsctp_sip::Relay`), and its decision carried out: forwarded,
//! answered, or dropped with a counted reason. Transactions are tracked for latency and
//! outcome. This module moves bytes; the SIP rules are in `sipsctp_sip`.

use std::{
    net::SocketAddr,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use sipsctp_sctp::{assoc::SocketId, endpoint::SctpEndpoint};
use sipsctp_sip::{
    Decision, Limits, Message, Relay as Core, RelayConfig, TransactionTable, Transport,
    relay::{Destination, HostMatch, Listener, LocalAddr, Peer, RouteRule, RouteTarget, Upstream},
    transaction::{Leg, Legs},
};
use tokio::sync::mpsc;

use crate::{
    config::{self, Config, Proto},
    log_limit::LogLimit,
    metrics::{Direction, method_label},
    net::{FrameVerdict, Inbound, Tcp, Udp},
    state::Shared,
};

fn transport(p: Proto) -> Transport {
    match p {
        Proto::Sctp => Transport::Sctp,
        Proto::Udp => Transport::Udp,
        Proto::Tcp => Transport::Tcp,
    }
}

fn label(t: Transport) -> &'static str {
    match t {
        Transport::Sctp => "sctp",
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
    }
}

/// The relay core built from the configuration (routes, own addresses, limits).
pub struct Relay {
    core: Core,
    limits: Limits,
}

/// The relay's branch secret: random per process, kept across reloads so that responses to
/// requests relayed before a SIGHUP still verify.
fn secret() -> [u8; 16] {
    use std::sync::OnceLock;
    static SECRET: OnceLock<[u8; 16]> = OnceLock::new();
    *SECRET.get_or_init(|| {
        let mut s = [0u8; 16];
        if let Ok(bytes) = std::fs::read("/proc/sys/kernel/random/uuid") {
            // 36 characters of a random UUID: fold them into 16 bytes.
            for (i, b) in bytes.iter().enumerate() {
                if let Some(x) = s.get_mut(i % 16) {
                    *x = x.rotate_left(3) ^ *b;
                }
            }
        }
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        for (x, y) in s.iter_mut().zip(t.to_le_bytes()) {
            *x ^= y;
        }
        s
    })
}

impl Relay {
    /// Builds the core from `config` and the bound listener addresses.
    ///
    /// # Errors
    /// A configuration the core refuses (e.g. a listener on an unspecified address).
    pub fn new(config: &Config, locals: &[(Proto, SocketAddr)]) -> Result<Relay, String> {
        let limits = Limits {
            max_message_size: config.sip.max_message_size,
            ..Limits::DEFAULT
        };
        let up = |u: config::Upstream| {
            RouteTarget::Upstream(Upstream {
                transport: transport(u.proto),
                addr: u.addr,
            })
        };
        let cfg = RelayConfig {
            listeners: locals
                .iter()
                .map(|(p, a)| Listener {
                    transport: transport(*p),
                    addr: *a,
                    advertise: None,
                })
                .collect(),
            aliases: Vec::new(),
            routes: config
                .routes
                .iter()
                .filter_map(|r| {
                    r.domain.as_ref().map(|d| RouteRule {
                        host: HostMatch::Exact(d.clone()),
                        target: up(r.upstream),
                    })
                })
                .collect(),
            default_route: config
                .routes
                .iter()
                .find(|r| r.domain.is_none())
                .map(|r| up(r.upstream)),
            record_route: config.sip.record_route,
            secret: secret(),
            limits,
        };
        let core = Core::new(cfg).map_err(|e| e.to_string())?;
        Ok(Relay { core, limits })
    }
}

/// The TCP framer for the daemon's size limit.
pub fn framer(max_message_size: usize) -> crate::net::Framer {
    let limits = Limits {
        max_message_size,
        ..Limits::DEFAULT
    };
    Arc::new(move |buf: &[u8]| match sipsctp_sip::frame(buf, &limits) {
        Ok(None) => FrameVerdict::Incomplete,
        Ok(Some(n)) => FrameVerdict::Message(n),
        Err(_) => FrameVerdict::Invalid("malformed SIP framing"),
    })
}

/// The transports the relay sends over.
#[derive(Clone)]
pub struct Senders {
    /// SCTP.
    pub sctp: Option<Arc<SctpEndpoint>>,
    /// The SCTP listener to send IPv4 / IPv6 destinations from (chosen once at start).
    pub sctp_from: [SocketId; 2],
    /// UDP.
    pub udp: Option<Arc<Udp>>,
    /// TCP.
    pub tcp: Option<Arc<Tcp>>,
}

/// Why a message could not be sent (a counted drop: `send_failed`).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No listener of that transport.
    #[error("no {0} listener to send from")]
    NoTransport(&'static str),
    /// The transport refused.
    #[error("{0}")]
    Transport(String),
}

impl Senders {
    /// The SCTP listeners to send from, per destination family: the first IPv4 listener for
    /// IPv4 (an IPv6 one can reach IPv4 too), the first IPv6 listener for IPv6.
    pub fn sctp_from(ep: &SctpEndpoint) -> [SocketId; 2] {
        let listeners = ep.listeners();
        let pick = |v6: bool| {
            listeners
                .iter()
                .find(|(_, a)| a.iter().any(|x| x.is_ipv6() == v6))
                .or_else(|| {
                    listeners
                        .iter()
                        .find(|(_, a)| a.iter().any(SocketAddr::is_ipv6))
                })
                .map(|(id, _)| *id)
                .unwrap_or(SocketId(0))
        };
        [pick(false), pick(true)]
    }

    /// Every bound listener address with its transport.
    pub fn local_addrs(&self) -> Vec<(Proto, SocketAddr)> {
        let mut v = Vec::new();
        if let Some(ep) = &self.sctp {
            for (_, addrs) in ep.listeners() {
                v.extend(addrs.into_iter().map(|a| (Proto::Sctp, a)));
            }
        }
        if let Some(u) = &self.udp {
            v.extend(u.local_addrs().into_iter().map(|a| (Proto::Udp, a)));
        }
        if let Some(t) = &self.tcp {
            v.extend(t.local_addrs().into_iter().map(|a| (Proto::Tcp, a)));
        }
        v
    }

    /// Sends `bytes` to `to`; for SCTP from the listener of the same address family (the one
    /// the association lives on when the peer is already known).
    ///
    /// # Errors
    /// [`SendError`].
    pub async fn send(&self, to: Destination, bytes: Vec<u8>) -> Result<(), SendError> {
        match to.transport {
            Transport::Sctp => {
                let ep = self.sctp.as_ref().ok_or(SendError::NoTransport("sctp"))?;
                let socket = self.sctp_from[usize::from(to.addr.is_ipv6())];
                ep.send(socket, to.addr, &bytes)
                    .map(|_| ())
                    .map_err(|e| SendError::Transport(e.to_string()))
            }
            Transport::Udp => {
                let u = self.udp.as_ref().ok_or(SendError::NoTransport("udp"))?;
                u.send(to.addr, &bytes)
                    .await
                    .map_err(|e| SendError::Transport(e.to_string()))
            }
            Transport::Tcp => {
                let t = self.tcp.as_ref().ok_or(SendError::NoTransport("tcp"))?;
                t.send(to.addr, bytes)
                    .await
                    .map_err(|e| SendError::Transport(e.to_string()))
            }
        }
    }
}

/// Runs the relay until the inbound channel closes. When `stop` is notified the channel is
/// closed to new messages and what it already holds is relayed before returning.
pub async fn run(
    mut rx: mpsc::Receiver<Inbound>,
    relay: Arc<RwLock<Arc<Relay>>>,
    senders: Senders,
    shared: Arc<Shared>,
    sip: config::Sip,
    stop: Arc<tokio::sync::Notify>,
) {
    let mut table = TransactionTable::new(sip.transaction_capacity);
    // "could not relay" at most once a second per destination (the drops are counted exactly).
    let mut failures = LogLimit::new(Duration::from_secs(1), 1024);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = rx.recv() => {
                let Some(msg) = msg else { return };
                let r = relay.read().map(|g| g.clone()).unwrap_or_else(|p| p.into_inner().clone());
                handle(&r, &senders, &shared, &mut table, &mut failures, msg).await;
            }
            _ = stop.notified() => rx.close(),
            _ = tick.tick() => {
                let n = table.poll_expired(Instant::now(), sip.transaction_timeout).count();
                if n > 0 {
                    shared.metrics.transactions_expired.inc_by(n as u64);
                    tracing::debug!(expired = n, "transactions without a final response");
                }
            }
        }
    }
}

async fn handle(
    relay: &Relay,
    senders: &Senders,
    shared: &Shared,
    table: &mut TransactionTable,
    failures: &mut LogLimit<SocketAddr>,
    msg: Inbound,
) {
    let m = &shared.metrics;
    let t = transport(msg.proto);
    let from = Peer {
        transport: t,
        addr: msg.peer,
        assoc: msg.sctp.map(|(_, a)| a.get()),
    };
    let local = LocalAddr {
        transport: t,
        addr: msg.local,
    };
    // Parse once: for the counters and for the core.
    let mut request_method: Option<String> = None;
    let mut response: Option<(String, u16)> = None;
    let decision = match Message::parse_with(&msg.data, &relay.limits) {
        Ok(p) if p.is_request() => {
            let method = p
                .method()
                .map(|x| x.as_str().to_owned())
                .unwrap_or_default();
            m.request(&method, label(t), Direction::In);
            request_method = Some(method);
            relay.core.handle_request(&p, from, local)
        }
        Ok(p) => {
            let status = p.status().unwrap_or(0);
            let method = p
                .cseq()
                .map(|c| c.method.as_str().to_owned())
                .unwrap_or_default();
            m.response(&method, status, label(t), Direction::In);
            response = Some((method, status));
            relay.core.handle_response(&p, from)
        }
        Err(e) => {
            tracing::debug!(peer = %msg.peer, proto = %msg.proto, error = %e, "malformed SIP message");
            // A request whose head still parses (e.g. a wrong Content-Length) is answered 400:
            // count it as the request it is.
            if let Ok(head) = Message::parse_head(&msg.data, &relay.limits)
                && head.is_request()
            {
                let method = head
                    .method()
                    .map(|x| x.as_str().to_owned())
                    .unwrap_or_default();
                m.request(&method, label(t), Direction::In);
                request_method = Some(method);
            }
            relay.core.handle(&msg.data, from, local)
        }
    };
    match decision {
        Decision::Forward { to, bytes, tx } => {
            let dest_label = label(to.transport);
            let now = Instant::now();
            if let Err(e) = senders.send(to, bytes).await {
                m.drop("send_failed");
                if let Some(held_back) = failures.check(to.addr, now) {
                    tracing::warn!(
                        dest = %to.addr,
                        transport = dest_label,
                        error = %e,
                        not_logged_since_last = held_back,
                        "could not relay (dropped, counted in sipsctp_sip_messages_dropped_total{{reason=\"send_failed\"}})"
                    );
                }
                return;
            }
            match (&request_method, tx) {
                (Some(method), Some(key)) => {
                    m.request(method, dest_label, Direction::Out);
                    let legs = Legs {
                        inbound: Leg {
                            transport: t,
                            addr: msg.peer,
                            assoc: from.assoc,
                        },
                        outbound: Leg {
                            transport: to.transport,
                            addr: to.addr,
                            assoc: to.assoc,
                        },
                    };
                    if table.on_request_forwarded(now, key, legs).is_err() {
                        m.transactions_untracked.inc();
                    }
                }
                (Some(method), None) => m.request(method, dest_label, Direction::Out),
                (None, key) => {
                    let Some((method, status)) = &response else {
                        return;
                    };
                    let status = *status;
                    m.response(method, status, dest_label, Direction::Out);
                    if let Some(key) = key
                        && let Some(done) = table.on_response(now, &key, status)
                    {
                        m.transaction_seconds
                            .with_label_values(&[
                                method_label(done.method.as_str()),
                                crate::metrics::status_class(done.status),
                            ])
                            .observe(done.latency.as_secs_f64());
                    }
                }
            }
        }
        Decision::Respond { to, bytes, status } => {
            let method = request_method.unwrap_or_default();
            if let Err(e) = senders.send(to, bytes).await {
                m.drop("send_failed");
                tracing::debug!(dest = %to.addr, error = %e, "could not answer");
                return;
            }
            m.response(&method, status, label(to.transport), Direction::Out);
        }
        Decision::Drop { reason } => {
            m.drop(reason.as_str());
            tracing::debug!(peer = %msg.peer, proto = %msg.proto, reason = reason.as_str(), "dropped");
        }
    }
}
