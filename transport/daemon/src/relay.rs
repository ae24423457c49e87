//! The relay task: a thin loop around the sans-IO [`RelayDriver`]. It hands each inbound
//! message (SCTP, UDP, TCP) to the driver with one clock read per wake-up, sends what the
//! driver yields without ever waiting on a peer ([`Senders::send`]: queue or drop, never
//! block), reports each send back, wakes the driver at its timeout, and turns the driver's
//! events into metrics ([`crate::metrics::Metrics::observe`]) and rate-limited logs. The SIP
//! rules are in `sipsctp_sip`.

use std::{
    net::SocketAddr,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use sipsctp_sctp::{assoc::SocketId, endpoint::SctpEndpoint};
use sipsctp_sip::{
    Limits, Relay as Core, RelayConfig, RelayDriver, SipEvent, Transport,
    driver::{DriverConfig, DropCause, SendDrop, SendResult, Transmit},
    overload::Overload,
    relay::{HostMatch, Listener, RouteRule, RouteTarget, Upstream},
};
use tokio::sync::mpsc;

use crate::{
    config::{self, Config, Proto},
    log_limit::LogLimit,
    net::{Inbound, Tcp, Udp},
    state::Shared,
};

fn transport(p: Proto) -> Transport {
    match p {
        Proto::Sctp => Transport::Sctp,
        Proto::Udp => Transport::Udp,
        Proto::Tcp => Transport::Tcp,
    }
}

/// The relay core built from the configuration (routes, own addresses, limits), with the
/// transaction settings of `[sip]`.
pub struct Relay {
    core: Arc<Core>,
    driver: DriverConfig,
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
        Ok(Relay {
            core: Arc::new(core),
            driver: DriverConfig {
                transaction_capacity: config.sip.transaction_capacity,
                transaction_timeout: config.sip.transaction_timeout,
                // RFC 3261 section 18.1.1: within 200 bytes of the path MTU.
                udp_max_request: (config.sip.udp_mtu > 0)
                    .then(|| config.sip.udp_mtu.saturating_sub(200)),
                udp_large_to_tcp: config.sip.udp_large_to_tcp,
                ..DriverConfig::default()
            },
        })
    }
}

/// The TCP framer for the daemon's size limit: a new [`sipsctp_sip::StreamFramer`] per
/// connection.
pub fn framer(max_message_size: usize) -> crate::net::Framer {
    let limits = Limits {
        max_message_size,
        ..Limits::DEFAULT
    };
    Arc::new(move || sipsctp_sip::StreamFramer::new(limits))
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

    /// The SCTP listener bound to `local`, if any.
    fn sctp_socket_at(ep: &SctpEndpoint, local: SocketAddr) -> Option<SocketId> {
        ep.listeners()
            .into_iter()
            .find(|(_, addrs)| addrs.contains(&local))
            .map(|(id, _)| id)
    }

    /// Sends `t` without waiting on the peer: handed to the kernel, queued behind the
    /// destination's earlier messages, or dropped with the reason. For SCTP from the listener
    /// `t.from` names (the one its request came in on), else the one of the address family.
    pub fn send(&self, t: &Transmit, bytes: Vec<u8>) -> SendResult {
        let to = t.to;
        let r = match to.transport {
            Transport::Sctp => match &self.sctp {
                None => Err(SendDrop::NoTransport),
                Some(ep) => {
                    let socket = t
                        .from
                        .and_then(|a| Self::sctp_socket_at(ep, a))
                        .unwrap_or(self.sctp_from[usize::from(to.addr.is_ipv6())]);
                    return match ep.send(socket, to.addr, &bytes) {
                        Ok(o) => SendResult::Sent { assoc: o.assoc() },
                        Err(e) => SendResult::Dropped(sctp_drop(&e)),
                    };
                }
            },
            Transport::Udp => match &self.udp {
                None => Err(SendDrop::NoTransport),
                Some(u) => u.try_send(t.from, to.addr, &bytes),
            },
            Transport::Tcp => match &self.tcp {
                None => Err(SendDrop::NoTransport),
                Some(tcp) => tcp.try_send(to.addr, bytes),
            },
        };
        match r {
            Ok(()) => SendResult::Sent { assoc: None },
            Err(why) => SendResult::Dropped(why),
        }
    }
}

fn sctp_drop(e: &sipsctp_sctp::endpoint::SendError) -> SendDrop {
    use sipsctp_sctp::{counters::SendDropCause as C, endpoint::SendError as E};
    match e {
        E::QueueFull { source, .. } => match source.cause() {
            C::TotalBytes => SendDrop::QueuesFull,
            C::Destinations | C::Setups => SendDrop::TooManyDestinations,
            _ => SendDrop::QueueFull,
        },
        E::SetupLimit { .. } => SendDrop::TooManyDestinations,
        E::ShuttingDown(_) => SendDrop::ShuttingDown,
        E::Limit(_) => SendDrop::ConnectFailed,
        E::UnknownSocket(_) => SendDrop::NoTransport,
        _ => SendDrop::SendFailed,
    }
}

/// Messages waiting in one inbound queue (of 4096) at which the relay sheds its new work
/// ([`sipsctp_sip::overload`]): about a second behind at the emulated VM's rate.
pub const OVERLOAD_HIGH: usize = 1024;
/// ... and at which it takes new work again.
pub const OVERLOAD_LOW: usize = 128;
/// The `Retry-After` of its 503s, seconds.
pub const RETRY_AFTER_S: u32 = 5;
/// The transports of the inbound queues, in their order.
const QUEUE_TRANSPORTS: [Transport; 3] = [Transport::Sctp, Transport::Udp, Transport::Tcp];

/// Runs the relay until every inbound queue closes. The queues (one per transport) are served
/// in turn, a batch at a time, so that a flood on one cannot hold up the others. When `stop`
/// is notified the queues are closed to new messages and what they already hold is relayed
/// before returning.
pub async fn run(
    mut queues: [mpsc::Receiver<Inbound>; 3],
    relay: Arc<RwLock<Arc<Relay>>>,
    senders: Senders,
    shared: Arc<Shared>,
    stop: Arc<tokio::sync::Notify>,
) {
    let current = |r: &Arc<RwLock<Arc<Relay>>>| {
        r.read()
            .map(|g| g.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    };
    let mut rules = current(&relay);
    let mut driver = RelayDriver::new(rules.core.clone(), rules.driver);
    let mut logs = Logs::new();
    // One per inbound queue (their order: SCTP, UDP, TCP), so that a flood on one transport
    // does not make the relay refuse the others' calls.
    let mut overload = [Overload::new(OVERLOAD_HIGH, OVERLOAD_LOW, RETRY_AFTER_S); 3];
    // Shedding may start and stop several times a second under sustained overload: a line
    // per kind every 10 s at most, with how many were held back.
    let mut overload_log = LogLimit::new(Duration::from_secs(10), 6);
    let mut closing = false;
    loop {
        if closing && queues.iter().all(|q| q.is_closed() && q.is_empty()) {
            return;
        }
        let timeout = driver.poll_timeout();
        let sleep = async {
            match timeout {
                Some(t) => {
                    let wait = t.saturating_duration_since(crate::clock::now());
                    tokio::time::sleep(wait).await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        let [q0, q1, q2] = &mut queues;
        let first = tokio::select! {
            Some(m) = q0.recv() => Some(m),
            Some(m) = q1.recv() => Some(m),
            Some(m) = q2.recv() => Some(m),
            _ = stop.notified(), if !closing => {
                closing = true;
                for q in &mut queues {
                    q.close();
                }
                continue;
            }
            () = sleep => None,
            else => return,
        };
        let now = crate::clock::now();
        if first.is_some() {
            let latest = current(&relay);
            if !Arc::ptr_eq(&latest, &rules) {
                driver.set_relay(latest.core.clone());
                driver.set_config(latest.driver);
                rules = latest;
            }
        }
        if let Some(msg) = first {
            handle(&mut driver, now, &msg);
        }
        // What else already waits, a message from each queue in turn, without another clock
        // read; before the timers, so that a response already received stops a
        // retransmission that is due.
        let mut budget = 64;
        while budget > 0 {
            let mut any = false;
            for q in &mut queues {
                if let Ok(msg) = q.try_recv() {
                    handle(&mut driver, now, &msg);
                    budget -= 1;
                    any = true;
                }
            }
            if !any {
                break;
            }
        }
        // How far behind each input the relay is: past a backlog it sheds that input's new
        // work.
        for ((q, o), transport) in queues.iter().zip(&mut overload).zip(QUEUE_TRANSPORTS) {
            let backlog = q.len();
            let Some(on) = o.update(backlog) else {
                continue;
            };
            driver.set_shedding(transport, on.then_some(o.retry_after));
            let label = transport.uri_param();
            shared
                .metrics
                .shedding
                .with_label_values(&[label])
                .set(i64::from(on));
            match overload_log.check((label, on), Instant::now()) {
                Some(n) if on => tracing::warn!(
                    transport = label,
                    backlog,
                    threshold = o.high,
                    retry_after_s = o.retry_after,
                    not_logged_since_last = n,
                    "overloaded: answering new requests 503 (counted in \
                     sipsctp_sip_messages_dropped_total{{reason=\"overload\"}}); calls already \
                     accepted go on"
                ),
                Some(n) => tracing::info!(
                    transport = label,
                    backlog,
                    not_logged_since_last = n,
                    "no longer overloaded: taking new requests again"
                ),
                None => {}
            }
        }
        // Timers run on every wake-up once due, so a busy relay still retransmits and expires.
        if driver.poll_timeout().is_some_and(|t| t <= now) {
            driver.handle_timeout(now);
        }
        flush(&mut driver, now, &senders, &shared, &mut logs);
    }
}

fn handle(driver: &mut RelayDriver, now: sipsctp_sip::MonoTime, msg: &Inbound) {
    driver.handle_inbound(
        now,
        sipsctp_sip::driver::Inbound {
            transport: transport(msg.proto),
            peer: msg.peer,
            local: msg.local,
            assoc: msg.sctp.map(|(_, a)| a),
            bytes: &msg.data,
        },
    );
}

/// Sends what the driver yields, reports each send, and consumes its events.
fn flush(
    driver: &mut RelayDriver,
    now: sipsctp_sip::MonoTime,
    senders: &Senders,
    shared: &Shared,
    logs: &mut Logs,
) {
    while let Some(mut t) = driver.poll_transmit() {
        let bytes = std::mem::take(&mut t.bytes);
        let result = senders.send(&t, bytes);
        driver.handle_sent(now, &t.to, t.meta, result);
    }
    while let Some(e) = driver.poll_event() {
        shared.metrics.observe(&e);
        logs.event(&e);
        match &e {
            SipEvent::TxEnded(end) => shared.exporter.transaction(finished(end, shared.netns)),
            SipEvent::Forwarded(f) => shared.exporter.transaction(forwarded(f, shared.netns)),
            _ => {}
        }
    }
}

/// A leg as the exporter's correlator takes it; `netns` is the daemon's network namespace
/// (its associations' half of the join key).
fn leg(l: &sipsctp_sip::transaction::Leg, netns: u32) -> sipsctp_correlate::Leg {
    use sipsctp_correlate as c;
    c::Leg {
        transport: match l.transport {
            Transport::Udp => c::Transport::Udp,
            Transport::Tcp => c::Transport::Tcp,
            Transport::Sctp => c::Transport::Sctp,
        },
        peer: l.addr,
        local: l.local,
        assoc: l.assoc.map(|assoc_id| c::AssocKey { netns, assoc_id }),
    }
}

fn mono(t: sipsctp_sip::MonoTime) -> Duration {
    Duration::from_nanos(t.as_nanos())
}

/// A request forwarded without a transaction (an `ACK`), for the correlator.
pub fn forwarded(
    f: &sipsctp_sip::driver::StatelessForward,
    netns: u32,
) -> sipsctp_correlate::Transaction {
    sipsctp_correlate::Transaction {
        id: 0,
        method: f.key.method.as_str().into(),
        call_id: f.call_id.clone(),
        cseq: f.cseq,
        branch: f.key.branch.clone(),
        inbound: leg(&f.inbound, netns),
        outbound: leg(&f.outbound, netns),
        received_at: mono(f.received_at),
        forwarded_at: mono(f.forwarded_at),
        first_response_at: None,
        ended_at: mono(f.forwarded_at),
        outcome: sipsctp_correlate::Outcome::Forwarded,
        sip_retransmissions: 0,
    }
}

/// A finished transaction as the exporter's correlator takes it.
pub fn finished(
    end: &sipsctp_sip::transaction::TxEnd,
    netns: u32,
) -> sipsctp_correlate::Transaction {
    use sipsctp_correlate as c;
    use sipsctp_sip::transaction::TxOutcome;
    let leg = |l| leg(l, netns);
    let info = &end.info;
    c::Transaction {
        id: info.id.0,
        method: info.key.method.as_str().into(),
        call_id: info.call_id.clone(),
        cseq: info.cseq,
        branch: info.key.branch.clone(),
        inbound: leg(&info.inbound),
        outbound: leg(&info.outbound),
        received_at: mono(info.received_at),
        forwarded_at: mono(info.forwarded_at),
        first_response_at: info
            .first_provisional
            .or(end.outcome.status().map(|_| end.outcome.at()))
            .map(mono),
        ended_at: mono(end.outcome.at()),
        outcome: match end.outcome {
            TxOutcome::Final { status, .. } => c::Outcome::Final(status),
            TxOutcome::Expired { .. } => c::Outcome::Expired,
            TxOutcome::SendFailed { .. } => c::Outcome::SendFailed,
        },
        sip_retransmissions: info.retransmissions,
    }
}

/// The relay's log lines: per-message failures at most once a second per destination, with
/// the count held back (the metrics count every one).
struct Logs {
    failures: LogLimit<SocketAddr>,
}

impl Logs {
    fn new() -> Self {
        Self {
            failures: LogLimit::new(Duration::from_secs(1), 1024),
        }
    }

    fn event(&mut self, e: &SipEvent) {
        match e {
            SipEvent::Dropped {
                peer,
                cause: DropCause::Send(SendDrop::TooLarge),
                ..
            } => {
                if let Some(held_back) = self.failures.check(*peer, Instant::now()) {
                    tracing::warn!(
                        dest = %peer,
                        reason = SendDrop::TooLarge.as_str(),
                        not_logged_since_last = held_back,
                        "request larger than [sip] udp_mtu - 200 bytes not sent over UDP (RFC 3261 18.1.1; \
                         [sip] udp_large_to_tcp = true sends it over TCP); dropped, counted in \
                         sipsctp_sip_messages_dropped_total{{reason=\"too_large\"}}"
                    );
                }
            }
            SipEvent::Dropped {
                peer,
                cause: DropCause::Send(why),
                ..
            } => {
                if let Some(held_back) = self.failures.check(*peer, Instant::now()) {
                    tracing::warn!(
                        dest = %peer,
                        reason = why.as_str(),
                        not_logged_since_last = held_back,
                        "could not relay (dropped, counted in sipsctp_sip_messages_dropped_total{{reason=\"{}\"}})",
                        why.as_str()
                    );
                }
            }
            SipEvent::Dropped {
                peer,
                cause: DropCause::Relay(reason),
                ..
            } => {
                tracing::debug!(%peer, reason = reason.as_str(), "dropped");
            }
            SipEvent::TxEnded(end) => {
                if let sipsctp_sip::transaction::TxOutcome::Expired { .. } = end.outcome {
                    tracing::debug!(
                        call_id = %end.info.call_id,
                        method = end.info.key.method.as_str(),
                        "transaction without a final response"
                    );
                }
            }
            _ => {}
        }
    }
}
