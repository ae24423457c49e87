//! The exporter's Prometheus metrics: SIP transactions labelled by whether the kernel
//! retransmitted for them, the kernel events that affected them by peer, and per-peer SCTP
//! timers and events. Names and labels are a contract with the dashboards and the alerts:
//!
//! - `sipsctp_sip_transaction_duration_seconds{method,status_class,kernel_retransmitted}`:
//!   from the request forwarded to its final response (observed when the transaction is joined,
//!   after its linger);
//! - `sipsctp_sip_transaction_first_response_seconds{method,kernel_retransmitted}`;
//! - `sipsctp_sip_transactions_kernel_affected_total{peer,leg,reason}`;
//! - `sipsctp_peer_rto_seconds{peer,path}`, `sipsctp_peer_srtt_seconds{peer,path}` (named peers
//!   only, at most [`PATHS_PER_PEER`] paths each);
//! - `sipsctp_peer_retransmissions_total{peer,reason}`, `sipsctp_peer_path_events_total{peer,event}`;
//! - `sipsctp_exporter_dropped_total{where}`: what the exporter could not take or keep;
//! - `sipsctp_exporter_transactions_lingering`: finished transactions waiting for late kernel
//!   events before they are joined (their durations are observed then).
//!
//! `kernel_retransmitted` is `yes`, `no` or `unknown` (no probes, or a TCP leg); `peer` is a
//! configured name or `other` ([`crate::peers`]).

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
};

use prometheus::{GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};
use sipsctp_correlate::{AssocKey, Joined, Outcome, Reason, Verdict};
use sipsctp_ebpf_events::event::{
    AssocChangeState, EventKind, PathCommand, RetransmitReason, SctpEvent,
};

use crate::peers::{OTHER, PeerNames};

/// Path labels kept per named peer; further addresses are `other`.
pub const PATHS_PER_PEER: usize = 8;

/// Associations whose peer name is remembered (for events on paths not named themselves).
const ASSOC_NAMES: usize = 4096;

/// `sipsctp_exporter_dropped_total{where}` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropPoint {
    /// A finished transaction the correlator's channel had no room for.
    SipEvents,
    /// A kernel event the correlator's channel had no room for.
    KernelEvents,
    /// An association's window evicted to make room for another.
    Windows,
    /// A kernel event pushed out of its association's ring.
    KernelNotes,
    /// An event of an association without an id, beyond the cap.
    PreId,
}

impl DropPoint {
    /// Every value, for pre-setting the series.
    pub const ALL: [Self; 5] = [
        Self::SipEvents,
        Self::KernelEvents,
        Self::Windows,
        Self::KernelNotes,
        Self::PreId,
    ];

    /// The label.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::SipEvents => "sip_events",
            Self::KernelEvents => "kernel_events",
            Self::Windows => "windows",
            Self::KernelNotes => "kernel_notes",
            Self::PreId => "pre_id",
        }
    }
}

/// The SIP methods with a label of their own; anything else is `other`, so that a peer cannot
/// grow the label.
pub fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 14] = [
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "REGISTER",
        "PRACK",
        "SUBSCRIBE",
        "NOTIFY",
        "PUBLISH",
        "INFO",
        "REFER",
        "MESSAGE",
        "UPDATE",
    ];
    KNOWN
        .iter()
        .find(|m| m.eq_ignore_ascii_case(method))
        .copied()
        .unwrap_or("other")
}

/// `1xx` .. `6xx`, else `other`.
pub fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        5 => "5xx",
        6 => "6xx",
        _ => "other",
    }
}

const fn retransmit_label(r: RetransmitReason) -> &'static str {
    match r {
        RetransmitReason::T3Rtx => "t3_rtx",
        RetransmitReason::FastRtx => "fast_rtx",
        RetransmitReason::Pmtud => "pmtud",
        RetransmitReason::T1Rtx => "t1_rtx",
    }
}

/// The exporter's metrics; see the module documentation.
pub struct ExporterMetrics {
    duration: HistogramVec,
    first_response: HistogramVec,
    affected: IntCounterVec,
    peer_rto: GaugeVec,
    peer_srtt: GaugeVec,
    peer_retransmissions: IntCounterVec,
    peer_path_events: IntCounterVec,
    dropped: IntCounterVec,
    lingering: IntGauge,
}

impl ExporterMetrics {
    /// Registers the metrics in `registry`, the series every operator queries pre-set to 0
    /// (for each configured peer name and `other`).
    ///
    /// # Errors
    /// A name is registered already.
    pub fn register(registry: &Registry, peers: &PeerNames) -> prometheus::Result<Self> {
        let buckets = vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 32.0,
        ];
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "sipsctp_sip_transaction_duration_seconds",
                "Time from a relayed request to its final response, by whether the kernel \
                 retransmitted SCTP chunks on the request's association meanwhile",
            )
            .buckets(buckets.clone()),
            &["method", "status_class", "kernel_retransmitted"],
        )?;
        let first_response = HistogramVec::new(
            HistogramOpts::new(
                "sipsctp_sip_transaction_first_response_seconds",
                "Time from a relayed request to its first response (provisional or final)",
            )
            .buckets(buckets),
            &["method", "kernel_retransmitted"],
        )?;
        let affected = IntCounterVec::new(
            Opts::new(
                "sipsctp_sip_transactions_kernel_affected_total",
                "Transactions touched by a kernel SCTP event, by peer, leg (request: the \
                 association the request went out on; response: the one its responses went \
                 back on) and reason",
            ),
            &["peer", "leg", "reason"],
        )?;
        let peer_rto = GaugeVec::new(
            Opts::new(
                "sipsctp_peer_rto_seconds",
                "The kernel's current retransmission timeout per named peer and path",
            ),
            &["peer", "path"],
        )?;
        let peer_srtt = GaugeVec::new(
            Opts::new(
                "sipsctp_peer_srtt_seconds",
                "The kernel's smoothed round-trip time per named peer and path",
            ),
            &["peer", "path"],
        )?;
        let peer_retransmissions = IntCounterVec::new(
            Opts::new(
                "sipsctp_peer_retransmissions_total",
                "SCTP retransmissions by the kernel per peer and reason",
            ),
            &["peer", "reason"],
        )?;
        let peer_path_events = IntCounterVec::new(
            Opts::new(
                "sipsctp_peer_path_events_total",
                "SCTP path and association events per peer",
            ),
            &["peer", "event"],
        )?;
        let dropped = IntCounterVec::new(
            Opts::new(
                "sipsctp_exporter_dropped_total",
                "What the exporter could not take in or keep, by where",
            ),
            &["where"],
        )?;
        let lingering = IntGauge::new(
            "sipsctp_exporter_transactions_lingering",
            "Finished transactions waiting for late kernel events before they are joined",
        )?;
        for d in DropPoint::ALL {
            dropped.with_label_values(&[d.as_str()]);
        }
        for peer in peers.names().chain([OTHER]) {
            for r in Reason::ALL {
                affected.with_label_values(&[peer, "request", r.as_str()]);
            }
            for r in ["t3_rtx", "fast_rtx", "pmtud", "t1_rtx"] {
                peer_retransmissions.with_label_values(&[peer, r]);
            }
            for e in [
                "up",
                "down",
                "potentially_failed",
                "primary_change",
                "comm_up",
                "comm_lost",
                "restart",
                "shutdown_comp",
                "cant_str_assoc",
            ] {
                peer_path_events.with_label_values(&[peer, e]);
            }
        }
        for m in ["INVITE", "BYE"] {
            for v in ["yes", "no", "unknown"] {
                duration.with_label_values(&[m, "2xx", v]);
                first_response.with_label_values(&[m, v]);
            }
        }
        for c in [
            Box::new(duration.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(first_response.clone()),
            Box::new(affected.clone()),
            Box::new(peer_rto.clone()),
            Box::new(peer_srtt.clone()),
            Box::new(peer_retransmissions.clone()),
            Box::new(peer_path_events.clone()),
            Box::new(dropped.clone()),
            Box::new(lingering.clone()),
        ] {
            registry.register(c)?;
        }
        Ok(Self {
            duration,
            first_response,
            affected,
            peer_rto,
            peer_srtt,
            peer_retransmissions,
            peer_path_events,
            dropped,
            lingering,
        })
    }

    /// Sets how many transactions wait to be joined.
    pub fn set_lingering(&self, n: usize) {
        self.lingering.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Counts `n` losses at `point`.
    pub fn dropped(&self, point: DropPoint, n: u64) {
        if n > 0 {
            self.dropped.with_label_values(&[point.as_str()]).inc_by(n);
        }
    }

    /// Observes one joined transaction; `inbound` and `outbound` are its peers' names.
    pub fn observe_joined(&self, j: &Joined, inbound: &str, outbound: &str) {
        let tx = &j.tx;
        let method = method_label(&tx.method);
        let verdict = j.verdict.as_str();
        if let Outcome::Final(status) = tx.outcome {
            self.duration
                .with_label_values(&[method, status_class(status), verdict])
                .observe(tx.ended_at.saturating_sub(tx.forwarded_at).as_secs_f64());
        }
        if let Some(first) = tx.first_response_at {
            self.first_response
                .with_label_values(&[method, verdict])
                .observe(first.saturating_sub(tx.forwarded_at).as_secs_f64());
        }
        if tx.outcome == Outcome::Forwarded {
            // An ACK is no transaction of its own; its span carries its kernel events.
            return;
        }
        let reasons = |notes: &[sipsctp_correlate::KernelNote]| -> Vec<Reason> {
            let mut r: Vec<Reason> = notes.iter().filter_map(|n| n.kind.reason()).collect();
            r.sort();
            r.dedup();
            r
        };
        for r in reasons(&j.request) {
            self.affected
                .with_label_values(&[outbound, "request", r.as_str()])
                .inc();
        }
        for r in reasons(&j.response) {
            self.affected
                .with_label_values(&[inbound, "response", r.as_str()])
                .inc();
        }
        debug_assert!(j.verdict != Verdict::Yes || !j.request.is_empty());
    }
}

/// Per-peer kernel metrics: names each event by its path's address, or by the association's
/// (a multi-homed peer's other path, a path named only by its association).
pub struct PeerTracker {
    assoc_names: HashMap<AssocKey, Box<str>>,
    paths: HashMap<Box<str>, HashSet<IpAddr>>,
}

impl Default for PeerTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl PeerTracker {
    /// Nothing known yet.
    pub fn new() -> Self {
        Self {
            assoc_names: HashMap::new(),
            paths: HashMap::new(),
        }
    }

    /// The peer name of `ev`.
    pub fn name<'a>(&'a self, peers: &'a PeerNames, ev: &SctpEvent) -> &'a str {
        let key = AssocKey {
            netns: ev.netns,
            assoc_id: ev.assoc_id,
        };
        ev.peer
            .and_then(|ip| peers.lookup(ip))
            .or_else(|| self.assoc_names.get(&key).map(|n| &**n))
            .unwrap_or(OTHER)
    }

    /// Counts `ev` under its peer's name.
    pub fn observe(&mut self, metrics: &ExporterMetrics, peers: &PeerNames, ev: &SctpEvent) {
        let key = AssocKey {
            netns: ev.netns,
            assoc_id: ev.assoc_id,
        };
        if let (Some(ip), true) = (ev.peer, ev.assoc_id.is_assigned())
            && let Some(name) = peers.lookup(ip)
            && !self.assoc_names.contains_key(&key)
            && self.assoc_names.len() < ASSOC_NAMES
        {
            self.assoc_names.insert(key, name.into());
        }
        let name = self.name(peers, ev).to_owned();
        match ev.kind {
            EventKind::RtoUpdate { rto, srtt, .. } if name != OTHER => {
                let Some(ip) = ev.peer else { return };
                let known = self.paths.entry(name.as_str().into()).or_default();
                if !known.contains(&ip) && known.len() < PATHS_PER_PEER {
                    known.insert(ip);
                }
                let path = if known.contains(&ip) {
                    ip.to_canonical().to_string()
                } else {
                    OTHER.to_owned()
                };
                metrics
                    .peer_rto
                    .with_label_values(&[name.as_str(), path.as_str()])
                    .set(rto.to_duration().as_secs_f64());
                metrics
                    .peer_srtt
                    .with_label_values(&[name.as_str(), path.as_str()])
                    .set(srtt.to_duration().as_secs_f64());
            }
            EventKind::Retransmit { reason, .. } => metrics
                .peer_retransmissions
                .with_label_values(&[name.as_str(), retransmit_label(reason)])
                .inc(),
            EventKind::PathChange { command, .. } => {
                let e = match command {
                    PathCommand::Up => "up",
                    PathCommand::Down => "down",
                    PathCommand::PotentiallyFailed => "potentially_failed",
                };
                metrics
                    .peer_path_events
                    .with_label_values(&[name.as_str(), e])
                    .inc();
            }
            EventKind::PrimaryChange { .. } => metrics
                .peer_path_events
                .with_label_values(&[name.as_str(), "primary_change"])
                .inc(),
            EventKind::AssocChange { state, .. } => {
                let e = match state {
                    AssocChangeState::CommUp => "comm_up",
                    AssocChangeState::CommLost => "comm_lost",
                    AssocChangeState::Restart => "restart",
                    AssocChangeState::ShutdownComp => "shutdown_comp",
                    AssocChangeState::CantStrAssoc => "cant_str_assoc",
                };
                metrics
                    .peer_path_events
                    .with_label_values(&[name.as_str(), e])
                    .inc();
            }
            EventKind::AssocFree { .. } => {
                self.assoc_names.remove(&key);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
