//! The Prometheus metrics of `/metrics`: the transport's Kamailio counters (copied from the
//! endpoint's snapshot at each scrape), SIP message counters by method, status class, transport
//! and direction, drops by reason, expiries. The SIP ones are derived from the relay driver's
//! events in one place, [`Metrics::observe`]; transaction durations are the exporter's
//! (`sipsctp_agent::metrics`), observed once joined with the kernel's events.

use prometheus::{
    Encoder as _, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use sipsctp_sctp::{
    counters::{CounterSnapshot, DropCause, SendDropCause},
    endpoint::EndpointInfo,
};
use sipsctp_sip::{
    DropReason, SipEvent, Transport,
    bridge::RetransmitLeg,
    driver::{DropCause as SipDropCause, MessageKind, SendDrop},
    transaction::TxOutcome,
};
use std::sync::Mutex;

/// Direction of a SIP message relative to the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Received.
    In,
    /// Sent.
    Out,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// Every metric the daemon exports.
pub struct Metrics {
    registry: Registry,
    sctp_counters: Vec<(&'static str, IntCounter)>,
    sctp_dropped: IntCounterVec,
    sctp_send_dropped: IntCounterVec,
    sctp_opened: IntGauge,
    sctp_tracked: IntGauge,
    sctp_queued: IntGauge,
    sctp_stalled: IntGauge,
    last: Mutex<CounterSnapshot>,
    /// `sipsctp_sip_requests_total{method,transport,direction}`.
    pub requests: IntCounterVec,
    /// `sipsctp_sip_responses_total{method,status_class,transport,direction}`.
    pub responses: IntCounterVec,
    /// `sipsctp_sip_messages_dropped_total{reason}`.
    pub dropped: IntCounterVec,
    /// `sipsctp_sip_transactions_expired_total`.
    pub transactions_expired: IntCounter,
    /// `sipsctp_sip_transactions_untracked_total` (table full).
    pub transactions_untracked: IntCounter,
    /// `sipsctp_sip_shedding{transport}`: 1 while new requests over that transport are
    /// answered 503 (overload).
    pub shedding: IntGaugeVec,
    /// `sipsctp_sip_retransmissions_total{leg}`: what the relay retransmitted itself where UDP
    /// meets a reliable transport.
    pub retransmissions: IntCounterVec,
    /// `sipsctp_sip_bridge_untracked_total`: transactions crossing between UDP and a reliable
    /// transport relayed without retransmission state (its bounds were reached).
    pub bridge_untracked: IntCounter,
    /// The kernel metrics (eBPF or polling).
    pub kernel: std::sync::Arc<sipsctp_agent::kernel::KernelMetrics>,
    /// The TCP side's connections.
    pub tcp: TcpMetrics,
    /// `sipsctp_config_reloads_total{outcome}`: SIGHUP reloads, `applied` or `refused`.
    reloads: IntCounterVec,
    /// `sipsctp_config_last_reload_successful`: 0 after a refused reload until one applies.
    last_reload_ok: IntGauge,
}

/// `sipsctp_tcp_*`: TCP connections open now, refused by a limit, closed by reason, and failed
/// `accept` calls; fed by the TCP side's [`crate::net::TcpEvent`]s ([`TcpMetrics::events`]).
#[derive(Clone)]
pub struct TcpMetrics {
    open: IntGauge,
    refused: IntCounterVec,
    closed: IntCounterVec,
    accept_failures: IntCounter,
}

impl TcpMetrics {
    fn register(registry: &Registry) -> prometheus::Result<Self> {
        use crate::net::{TcpClose, TcpRefusal};
        let open = IntGauge::new(
            "sipsctp_tcp_current_opened_connections",
            "TCP connections open now (accepted and opened to destinations)",
        )?;
        let refused = IntCounterVec::new(
            Opts::new(
                "sipsctp_tcp_connections_refused_total",
                "Incoming TCP connections closed right after accept because a limit was reached, by limit",
            ),
            &["reason"],
        )?;
        for r in TcpRefusal::ALL {
            refused.with_label_values(&[r.as_str()]);
        }
        let closed = IntCounterVec::new(
            Opts::new(
                "sipsctp_tcp_connections_closed_total",
                "TCP connections closed, by reason",
            ),
            &["reason"],
        )?;
        for r in TcpClose::ALL {
            closed.with_label_values(&[r.as_str()]);
        }
        let accept_failures = IntCounter::new(
            "sipsctp_tcp_accept_failures_total",
            "Failed accept calls on the SIP TCP listeners (EMFILE, ...), each followed by a back-off",
        )?;
        registry.register(Box::new(open.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        registry.register(Box::new(closed.clone()))?;
        registry.register(Box::new(accept_failures.clone()))?;
        Ok(Self {
            open,
            refused,
            closed,
            accept_failures,
        })
    }

    /// The sink the TCP side reports to.
    pub fn events(&self) -> crate::net::TcpEvents {
        use crate::net::TcpEvent;
        let m = self.clone();
        std::sync::Arc::new(move |e| match e {
            TcpEvent::Opened => m.open.inc(),
            TcpEvent::Closed(why) => {
                m.open.dec();
                m.closed.with_label_values(&[why.as_str()]).inc();
            }
            TcpEvent::Refused(why) => m.refused.with_label_values(&[why.as_str()]).inc(),
            TcpEvent::AcceptFailed => m.accept_failures.inc(),
        })
    }
}

const SCTP_COUNTER_HELP: [(&str, &str); 9] = [
    ("established", "SCTP associations established (COMM_UP)"),
    (
        "connect_failed",
        "SCTP associations that could not be set up (CANT_STR_ASSOC)",
    ),
    (
        "local_reject",
        "SCTP associations aborted because sctp_max_assocs was reached",
    ),
    ("remote_shutdown", "SHUTDOWNs received from SCTP peers"),
    (
        "assoc_shutdown",
        "SCTP associations shut down (SHUTDOWN_COMP)",
    ),
    ("comm_lost", "SCTP associations lost (COMM_LOST)"),
    (
        "sendq_full",
        "SCTP sends that found the send buffer full (EAGAIN)",
    ),
    ("send_failed", "SCTP messages that could not be delivered"),
    (
        "send_force_retry",
        "SCTP messages resent after SEND_FAILED (sctp_send_retries)",
    ),
];

impl Metrics {
    /// Registers every metric.
    ///
    /// # Errors
    /// Only on a programming error (a duplicate or invalid metric name).
    pub fn new() -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let mut sctp_counters = Vec::new();
        for (name, help) in SCTP_COUNTER_HELP {
            let c = IntCounter::new(format!("sipsctp_sctp_{name}_total"), help)?;
            registry.register(Box::new(c.clone()))?;
            sctp_counters.push((name, c));
        }
        let sctp_dropped = IntCounterVec::new(
            Opts::new(
                "sipsctp_sctp_messages_dropped_total",
                "SCTP messages read but not delivered, by reason",
            ),
            &["reason"],
        )?;
        for r in DropCause::ALL {
            sctp_dropped.with_label_values(&[r.as_str()]);
        }
        let sctp_send_dropped = IntCounterVec::new(
            Opts::new(
                "sipsctp_sctp_send_dropped_total",
                "SCTP messages the endpoint refused to queue or dropped while holding them, by \
                 reason (also counted in sipsctp_sctp_send_failed_total)",
            ),
            &["reason"],
        )?;
        for r in SendDropCause::ALL {
            sctp_send_dropped.with_label_values(&[r.as_str()]);
        }
        let sctp_opened = IntGauge::new(
            "sipsctp_sctp_current_opened_connections",
            "SCTP associations open now",
        )?;
        let sctp_tracked = IntGauge::new(
            "sipsctp_sctp_current_tracked_connections",
            "SCTP associations tracked now (-1 with sctp_assoc_tracking = 0)",
        )?;
        let sctp_queued = IntGauge::new(
            "sipsctp_sctp_send_queue_messages",
            "SCTP messages waiting for room in the kernel's send buffer",
        )?;
        let sctp_stalled = IntGauge::new(
            "sipsctp_sctp_stalled_associations",
            "SCTP associations whose peer takes no data now: their messages wait in the send \
             queues, outside the kernel, until it drains or is aborted",
        )?;
        let requests = IntCounterVec::new(
            Opts::new(
                "sipsctp_sip_requests_total",
                "SIP requests by method, transport and direction",
            ),
            &["method", "transport", "direction"],
        )?;
        let responses = IntCounterVec::new(
            Opts::new(
                "sipsctp_sip_responses_total",
                "SIP responses by request method, status class, transport and direction",
            ),
            &["method", "status_class", "transport", "direction"],
        )?;
        let dropped = IntCounterVec::new(
            Opts::new(
                "sipsctp_sip_messages_dropped_total",
                "SIP messages dropped, by reason",
            ),
            &["reason"],
        )?;
        for r in DropReason::ALL {
            dropped.with_label_values(&[r.as_str()]);
        }
        for r in SendDrop::ALL {
            dropped.with_label_values(&[r.as_str()]);
        }
        dropped.with_label_values(&[SipDropCause::Absorbed.as_str()]);
        let transactions_expired = IntCounter::new(
            "sipsctp_sip_transactions_expired_total",
            "Relayed requests without a final response within the transaction timeout",
        )?;
        let transactions_untracked = IntCounter::new(
            "sipsctp_sip_transactions_untracked_total",
            "Relayed requests not tracked because the transaction table was full",
        )?;
        let shedding = IntGaugeVec::new(
            Opts::new(
                "sipsctp_sip_shedding",
                "1 while the relay is behind on a transport's inbound queue and answers new \
                 requests over it 503 + Retry-After (each counted in \
                 sipsctp_sip_messages_dropped_total{reason=\"overload\"}); responses, ACK, \
                 CANCEL and in-dialog requests are still relayed",
            ),
            &["transport"],
        )?;
        for t in ["udp", "tcp", "sctp"] {
            shedding.with_label_values(&[t]);
        }
        let retransmissions = IntCounterVec::new(
            Opts::new(
                "sipsctp_sip_retransmissions_total",
                "SIP messages the relay retransmitted toward UDP itself (requests on timers A/E, \
                 final responses on timer G or to answer a request retransmission, ACKs for a \
                 retransmitted 2xx), by leg",
            ),
            &["leg"],
        )?;
        for l in RetransmitLeg::ALL {
            retransmissions.with_label_values(&[l.as_str()]);
        }
        let reloads = IntCounterVec::new(
            Opts::new(
                "sipsctp_config_reloads_total",
                "Configuration reloads by SIGHUP: applied, or refused (the running configuration \
                 stays; the log says why)",
            ),
            &["outcome"],
        )?;
        for o in ["applied", "refused"] {
            reloads.with_label_values(&[o]);
        }
        let last_reload_ok = IntGauge::new(
            "sipsctp_config_last_reload_successful",
            "1 unless the last SIGHUP reload was refused",
        )?;
        last_reload_ok.set(1);
        let bridge_untracked = IntCounter::new(
            "sipsctp_sip_bridge_untracked_total",
            "Transactions between UDP and SCTP/TCP relayed without retransmission state (bounds reached)",
        )?;
        for c in [
            Box::new(retransmissions.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(bridge_untracked.clone()),
            Box::new(sctp_dropped.clone()),
            Box::new(sctp_send_dropped.clone()),
            Box::new(sctp_opened.clone()),
            Box::new(sctp_tracked.clone()),
            Box::new(sctp_queued.clone()),
            Box::new(sctp_stalled.clone()),
            Box::new(requests.clone()),
            Box::new(responses.clone()),
            Box::new(dropped.clone()),
            Box::new(transactions_expired.clone()),
            Box::new(transactions_untracked.clone()),
            Box::new(shedding.clone()),
            Box::new(reloads.clone()),
            Box::new(last_reload_ok.clone()),
        ] {
            registry.register(c)?;
        }
        let kernel =
            std::sync::Arc::new(sipsctp_agent::kernel::KernelMetrics::register(&registry)?);
        let tcp = TcpMetrics::register(&registry)?;
        Ok(Metrics {
            kernel,
            tcp,
            registry,
            sctp_counters,
            sctp_dropped,
            sctp_send_dropped,
            sctp_opened,
            sctp_tracked,
            sctp_queued,
            sctp_stalled,
            last: Mutex::new(CounterSnapshot::default()),
            requests,
            responses,
            dropped,
            transactions_expired,
            transactions_untracked,
            shedding,
            retransmissions,
            bridge_untracked,
            reloads,
            last_reload_ok,
        })
    }

    /// Counts a SIGHUP reload: applied (`true`) or refused.
    pub fn reloaded(&self, applied: bool) {
        let outcome = if applied { "applied" } else { "refused" };
        self.reloads.with_label_values(&[outcome]).inc();
        self.last_reload_ok.set(i64::from(applied));
    }

    /// The registry behind `/metrics`: the daemon's parts and the exporter agent register
    /// their metrics here.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Copies the transport's counters in (by their increase since the last call).
    pub fn sync_sctp(&self, now: &CounterSnapshot, info: &EndpointInfo) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        for ((name, counter), ((_, new), (_, old))) in self
            .sctp_counters
            .iter()
            .zip(now.named().into_iter().zip(last.named()))
        {
            debug_assert!(SCTP_COUNTER_HELP.iter().any(|(n, _)| n == name));
            counter.inc_by(new.saturating_sub(old));
        }
        for r in DropCause::ALL {
            self.sctp_dropped
                .with_label_values(&[r.as_str()])
                .inc_by(now.dropped(r).saturating_sub(last.dropped(r)));
        }
        for r in SendDropCause::ALL {
            self.sctp_send_dropped
                .with_label_values(&[r.as_str()])
                .inc_by(now.send_dropped(r).saturating_sub(last.send_dropped(r)));
        }
        *last = *now;
        self.sctp_opened
            .set(i64::try_from(info.opened).unwrap_or(i64::MAX));
        self.sctp_tracked.set(info.tracked);
        self.sctp_queued
            .set(i64::try_from(info.queued).unwrap_or(i64::MAX));
        self.sctp_stalled
            .set(i64::try_from(info.stalled).unwrap_or(i64::MAX));
    }

    /// Counts what one relay event says: messages in and out by method, status class and
    /// transport, drops by reason, transaction latencies, expiries and overflows.
    pub fn observe(&self, e: &SipEvent) {
        match e {
            SipEvent::Received {
                transport, message, ..
            } => self.message(message, *transport, Direction::In),
            SipEvent::Sent {
                transport, message, ..
            } => self.message(message, *transport, Direction::Out),
            SipEvent::Dropped { cause, .. } => self.drop(cause.as_str()),
            // Durations are observed by the exporter, once joined with the kernel's events.
            SipEvent::TxEnded(end) => {
                if let TxOutcome::Expired { .. } = end.outcome {
                    self.transactions_expired.inc();
                }
            }
            SipEvent::TxUntracked { .. } => self.transactions_untracked.inc(),
            SipEvent::Retransmitted { leg, .. } => {
                self.retransmissions
                    .with_label_values(&[leg.as_str()])
                    .inc();
            }
            SipEvent::BridgeUntracked { .. } => self.bridge_untracked.inc(),
            SipEvent::TxStarted(_)
            | SipEvent::Forwarded(_)
            | SipEvent::TxForwarded { .. }
            | SipEvent::TxProvisional { .. }
            | SipEvent::TxRetransmitted { .. } => {}
        }
    }

    fn message(&self, m: &MessageKind, t: Transport, dir: Direction) {
        let transport = t.uri_param();
        match m {
            MessageKind::Request { method } => self
                .requests
                .with_label_values(&[method_label(method.as_str()), transport, dir.as_str()])
                .inc(),
            MessageKind::Response { method, status } => self
                .responses
                .with_label_values(&[
                    method_label(method.as_ref().map_or("", |m| m.as_str())),
                    status_class(*status),
                    transport,
                    dir.as_str(),
                ])
                .inc(),
            MessageKind::Unparseable => {}
        }
    }

    /// Counts a dropped SIP message.
    pub fn drop(&self, reason: &str) {
        self.dropped.with_label_values(&[reason]).inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

pub use sipsctp_agent::metrics::{method_label, status_class};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_counters_follow_the_snapshot() {
        let m = Metrics::new().unwrap();
        let s = CounterSnapshot {
            established: 3,
            send_force_retry: 1,
            ..CounterSnapshot::default()
        };
        let info = EndpointInfo {
            opened: 2,
            tracked: 2,
            total: 3,
            queued: 5,
            stalled: 1,
        };
        m.sync_sctp(&s, &info);
        m.sync_sctp(&s, &info);
        let text = m.render();
        assert!(text.contains("sipsctp_sctp_established_total 3"), "{text}");
        assert!(text.contains("sipsctp_sctp_send_force_retry_total 1"));
        assert!(text.contains("sipsctp_sctp_current_opened_connections 2"));
        assert!(text.contains("sipsctp_sctp_send_queue_messages 5"));
        assert!(text.contains("sipsctp_sctp_stalled_associations 1"));
        assert!(text.contains("sipsctp_sctp_messages_dropped_total{reason=\"too_large\"} 0"));
    }

    #[test]
    fn labels_are_bounded() {
        assert_eq!(method_label("INVITE"), "INVITE");
        assert_eq!(method_label("XYZZY"), "other");
        assert_eq!(status_class(183), "1xx");
        assert_eq!(status_class(999), "other");
    }
}
