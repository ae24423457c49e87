//! The IO edge of SIP capture: captured messages from the probes' reader go over a bounded
//! channel (a full one is counted, never waited on) to one task that owns the
//! [`Assembler`] and hands finished transactions to the correlator. Also the sink the kernel
//! eyes feed ([`CaptureSink`]: kernel events to the correlator, messages to this task) and the
//! capture's metrics.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::Arc,
};

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use sipsctp_agent::{correlation::ExporterHandle, kernel::EventSink};
use sipsctp_correlate::{AssocKey, Transaction};
use sipsctp_ebpf::{CapturedMessage, SctpEvent};
use tokio::sync::mpsc;

use crate::sip_capture::{Assembler, Direction, Handled, Limits, Seen, Unidentified};

/// Captured messages the channel to the assembler holds.
pub const QUEUE: usize = 8192;

/// The capture's metrics.
pub struct CaptureMetrics {
    /// `sipsctp_exporter_sip_messages_total`, resolved per direction and outcome (no label
    /// lookup per message).
    by_outcome: [[IntCounter; OUTCOMES]; 2],
    queue_full: [IntCounter; 2],
    lost: IntCounter,
    last_lost: std::sync::Mutex<u64>,
    open: IntGauge,
    evicted: IntCounter,
}

/// Outcomes of [`Assembler::handle`], in the order of [`outcome_index`].
const OUTCOMES: usize = 10;

/// Every outcome, in index order.
const ALL_OUTCOMES: [Handled; OUTCOMES] = [
    Handled::Request,
    Handled::Response,
    Handled::Retransmission,
    Handled::Fork,
    Handled::Duplicate,
    Handled::Unmatched,
    Handled::Unidentified(Unidentified::NotSip),
    Handled::Unidentified(Unidentified::Truncated),
    Handled::Unidentified(Unidentified::Malformed),
    Handled::Unidentified(Unidentified::NoBranch),
];

const fn outcome_index(h: Handled) -> usize {
    match h {
        Handled::Request => 0,
        Handled::Response => 1,
        Handled::Retransmission => 2,
        Handled::Fork => 3,
        Handled::Duplicate => 4,
        Handled::Unmatched => 5,
        Handled::Unidentified(Unidentified::NotSip) => 6,
        Handled::Unidentified(Unidentified::Truncated) => 7,
        Handled::Unidentified(Unidentified::Malformed) => 8,
        Handled::Unidentified(Unidentified::NoBranch) => 9,
    }
}

const fn dir_index(d: Direction) -> usize {
    match d {
        Direction::Received => 0,
        Direction::Sent => 1,
    }
}

const fn own_direction(d: sipsctp_ebpf::Direction) -> Direction {
    match d {
        sipsctp_ebpf::Direction::Received => Direction::Received,
        sipsctp_ebpf::Direction::Sent => Direction::Sent,
    }
}

/// The `outcome` label of `sipsctp_exporter_sip_messages_total`.
fn outcome(h: Handled) -> &'static str {
    match h {
        Handled::Request => "request",
        Handled::Response => "response",
        Handled::Retransmission => "retransmission",
        Handled::Fork => "fork",
        Handled::Duplicate => "duplicate",
        Handled::Unmatched => "unmatched",
        Handled::Unidentified(u) => u.as_str(),
    }
}

fn direction(d: Direction) -> &'static str {
    match d {
        Direction::Received => "received",
        Direction::Sent => "sent",
    }
}

impl CaptureMetrics {
    /// Registers the metrics in `registry`.
    ///
    /// # Errors
    /// A name is registered already.
    pub fn register(registry: &Registry) -> prometheus::Result<CaptureMetrics> {
        let messages = IntCounterVec::new(
            Opts::new(
                "sipsctp_exporter_sip_messages_total",
                "SIP messages captured from the observed associations, by direction and what \
                 became of them (request, response, retransmission, fork, duplicate, \
                 unmatched: a response of no open transaction; not_sip, truncated: a needed \
                 header beyond the captured 1024 bytes, malformed, no_branch: not identified, \
                 never guessed; queue_full: dropped before the assembler)",
            ),
            &["direction", "outcome"],
        )?;
        let resolve = |d: Direction| {
            ALL_OUTCOMES.map(|h| messages.with_label_values(&[direction(d), outcome(h)]))
        };
        let by_outcome = [resolve(Direction::Received), resolve(Direction::Sent)];
        let queue_full = [Direction::Received, Direction::Sent]
            .map(|d| messages.with_label_values(&[direction(d), "queue_full"]));
        let lost = IntCounter::new(
            "sipsctp_exporter_sip_captures_lost_total",
            "Messages the kernel side could not capture: its ring buffer was full",
        )?;
        let open = IntGauge::new(
            "sipsctp_exporter_sip_open_transactions",
            "SIP transactions of the observed process seen and not finished yet",
        )?;
        let evicted = IntCounter::new(
            "sipsctp_exporter_sip_transactions_evicted_total",
            "Open transactions finished early because too many were open",
        )?;
        registry.register(Box::new(messages.clone()))?;
        registry.register(Box::new(lost.clone()))?;
        registry.register(Box::new(open.clone()))?;
        registry.register(Box::new(evicted.clone()))?;
        Ok(CaptureMetrics {
            by_outcome,
            queue_full,
            lost,
            last_lost: std::sync::Mutex::new(0),
            open,
            evicted,
        })
    }
}

/// Feeds kernel events to the correlator and captured messages to the assembler task.
pub struct CaptureSink {
    exporter: ExporterHandle,
    messages: Option<mpsc::Sender<CapturedMessage>>,
    metrics: Arc<CaptureMetrics>,
}

impl CaptureSink {
    /// A sink for `exporter`; with `capture`, also the assembler task (started on the current
    /// runtime), which hands finished transactions to `exporter`.
    pub fn new(exporter: ExporterHandle, capture: bool, metrics: Arc<CaptureMetrics>) -> Self {
        let messages = capture.then(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(assemble(rx, exporter.clone(), metrics.clone()));
            tx
        });
        CaptureSink {
            exporter,
            messages,
            metrics,
        }
    }
}

impl EventSink for CaptureSink {
    fn event(&self, e: &SctpEvent) {
        self.exporter.event(e);
    }

    fn source(&self, ebpf: bool) {
        self.exporter.source(ebpf);
    }

    fn message(&self, m: CapturedMessage) {
        let Some(tx) = &self.messages else {
            return;
        };
        if let Err(e) = tx.try_send(m) {
            let m = match e {
                mpsc::error::TrySendError::Full(m) | mpsc::error::TrySendError::Closed(m) => m,
            };
            self.metrics.queue_full[dir_index(own_direction(m.direction))].inc();
        }
    }

    fn captures_lost(&self, total: u64) {
        let mut last = self
            .metrics
            .last_lost
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        self.metrics.lost.inc_by(total.saturating_sub(*last));
        *last = total.max(*last);
    }
}

/// The assembler's input for a captured message.
fn seen(m: &CapturedMessage) -> Seen<'_> {
    let unspecified = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    Seen {
        at: m.time,
        direction: own_direction(m.direction),
        assoc: AssocKey {
            netns: m.netns,
            assoc_id: m.assoc_id,
        },
        // The probes know the local port, not which of the endpoint's addresses.
        local: Some(SocketAddr::new(unspecified, m.local_port)),
        peer: SocketAddr::new(m.peer.unwrap_or(unspecified), m.peer_port),
        tsn: m.tsn,
        len: m.len,
        prefix: &m.prefix,
    }
}

/// A leg captured while its association had no id (0: the probes read it so, seen once in
/// about ten runs with Kamailio on 6.1, mid-run) is handed to the correlator without one: it
/// finds the association by address and port, as for a send during setup.
fn by_address_without_id(mut tx: Transaction) -> Transaction {
    for leg in [&mut tx.inbound, &mut tx.outbound] {
        if leg.assoc.is_some_and(|k| !k.assoc_id.is_assigned()) {
            leg.assoc = None;
        }
    }
    tx
}

/// The assembler task: until the sink is dropped.
async fn assemble(
    mut rx: mpsc::Receiver<CapturedMessage>,
    exporter: ExporterHandle,
    metrics: Arc<CaptureMetrics>,
) {
    let mut asm = Assembler::new(Limits::default());
    let mut evicted = 0;
    loop {
        let wake = asm.poll_timeout();
        let sleep = async {
            match wake {
                Some(t) => {
                    let now = sipsctp_agent::clock::monotonic();
                    tokio::time::sleep(t.saturating_sub(now)).await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            m = rx.recv() => {
                let Some(m) = m else { return };
                // Everything waiting in one pass (at most BATCH): one timer and one poll per
                // wake-up, not per message.
                const BATCH: usize = 1024;
                let mut next = Some(m);
                let mut n = 0;
                while let Some(m) = next.take() {
                    let s = seen(&m);
                    let h = asm.handle(&s);
                    metrics.by_outcome[dir_index(s.direction)][outcome_index(h)].inc();
                    n += 1;
                    if n < BATCH {
                        next = rx.try_recv().ok();
                    }
                }
            }
            () = sleep => {}
        }
        let now = sipsctp_agent::clock::monotonic();
        while let Some(tx) = asm.poll(now) {
            exporter.transaction(by_address_without_id(tx));
        }
        let stats = asm.stats();
        metrics
            .evicted
            .inc_by(stats.evicted.saturating_sub(evicted));
        evicted = stats.evicted;
        metrics
            .open
            .set(i64::try_from(asm.open()).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sipsctp_correlate::{AssocId, Leg, Outcome, Transport};

    use super::*;

    fn leg(id: u32) -> Leg {
        Leg {
            transport: Transport::Sctp,
            peer: "10.0.0.2:5060".parse().unwrap(),
            local: Some("0.0.0.0:5060".parse().unwrap()),
            assoc: Some(AssocKey {
                netns: 1,
                assoc_id: AssocId(id),
            }),
        }
    }

    #[test]
    fn every_outcome_has_its_own_counter() {
        for (i, h) in ALL_OUTCOMES.iter().enumerate() {
            assert_eq!(outcome_index(*h), i, "{h:?}");
        }
        for u in Unidentified::ALL {
            assert!(ALL_OUTCOMES.contains(&Handled::Unidentified(u)), "{u:?}");
        }
    }

    #[test]
    fn a_leg_without_an_association_id_is_found_by_address() {
        let tx = Transaction {
            id: 1,
            method: "INVITE".into(),
            call_id: "c".into(),
            cseq: 1,
            branch: "z9hG4bK1".into(),
            inbound: leg(4),
            outbound: leg(0),
            received_at: Duration::ZERO,
            forwarded_at: Duration::ZERO,
            first_response_at: None,
            ended_at: Duration::ZERO,
            outcome: Outcome::Expired,
            sip_retransmissions: 0,
        };
        let tx = by_address_without_id(tx);
        assert_eq!(tx.outbound.assoc, None);
        assert_eq!(tx.inbound.assoc.map(|k| k.assoc_id), Some(AssocId(4)));
    }
}
