//! The correlator task: the one owner of the sans-IO [`Correlator`]. Finished SIP transactions
//! (from the relay) and kernel events (from the probes' reader) come in over bounded channels
//! fed with `try_send` — a full channel is counted in `sipsctp_exporter_dropped_total`, never
//! waited on, so neither the relay nor the event reader is ever held up by the exporter.
//! Joined transactions go out to the metrics ([`crate::metrics`]), the recent-transactions
//! ring ([`crate::recent`]) and the OTLP exporter ([`crate::otlp`]).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use prometheus::Registry;
use sipsctp_correlate::{Config as CorrelateConfig, Correlator, Joined, Stats, Transaction};
use sipsctp_ebpf_events::event::SctpEvent;
use tokio::sync::mpsc;

use crate::{
    clock,
    kernel::EventSink,
    metrics::{DropPoint, ExporterMetrics, PeerTracker},
    otlp::{OtlpExporter, Peers},
    peers::PeerNames,
    recent::RecentTransactions,
};

/// Finished transactions the channel holds.
pub const SIP_QUEUE: usize = 8192;
/// Kernel events the channel holds.
pub const KERNEL_QUEUE: usize = 16_384;

/// What the correlator task needs.
pub struct Settings {
    /// Caps and windows (`netns` is filled in with the process's own when `None`).
    pub correlate: CorrelateConfig,
    /// Peer names.
    pub peers: PeerNames,
    /// Where spans go, if anywhere.
    pub otlp: Option<OtlpExporter>,
}

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Its metrics could not be registered.
    #[error("registering the exporter's metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

enum Control {
    Peers(PeerNames),
    Source(bool),
    /// Join everything lingering now and stop.
    Flush,
}

/// The handle the relay and the event reader feed, and the admin API reads. Cheap to clone.
#[derive(Clone)]
pub struct ExporterHandle {
    sip: mpsc::Sender<Transaction>,
    kernel: mpsc::Sender<SctpEvent>,
    control: mpsc::UnboundedSender<Control>,
    metrics: Arc<ExporterMetrics>,
    recent: Arc<RecentTransactions>,
    ebpf: Arc<AtomicBool>,
}

impl ExporterHandle {
    /// A finished transaction; counted as dropped when the channel is full.
    pub fn transaction(&self, tx: Transaction) {
        if self.sip.try_send(tx).is_err() {
            self.metrics.dropped(DropPoint::SipEvents, 1);
        }
    }

    /// New peer names (a configuration reload).
    pub fn set_peers(&self, peers: PeerNames) {
        let _ = self.control.send(Control::Peers(peers));
    }

    /// The recent joined transactions.
    pub fn recent(&self) -> &RecentTransactions {
        &self.recent
    }

    /// Whether kernel events come from the probes now.
    pub fn ebpf(&self) -> bool {
        self.ebpf.load(Ordering::Relaxed)
    }
}

impl EventSink for ExporterHandle {
    fn event(&self, e: &SctpEvent) {
        if self.kernel.try_send(*e).is_err() {
            self.metrics.dropped(DropPoint::KernelEvents, 1);
        }
    }

    fn source(&self, ebpf: bool) {
        self.ebpf.store(ebpf, Ordering::Relaxed);
        let _ = self.control.send(Control::Source(ebpf));
    }
}

/// The running correlator task.
pub struct Exporter {
    handle: ExporterHandle,
    task: tokio::task::JoinHandle<Option<OtlpExporter>>,
}

/// The inode of this process's network namespace (the `netns` of its kernel events).
pub fn own_netns() -> Option<u32> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self/ns/net")
        .ok()
        .and_then(|m| u32::try_from(m.ino()).ok())
}

impl Exporter {
    /// Registers the metrics in `registry` and starts the task on the current runtime.
    ///
    /// # Errors
    /// A metric name is registered already.
    pub fn start(settings: Settings, registry: &Registry) -> Result<Self, StartError> {
        let Settings {
            mut correlate,
            peers,
            otlp,
        } = settings;
        if correlate.netns.is_none() {
            correlate.netns = own_netns();
        }
        let metrics = Arc::new(ExporterMetrics::register(registry, &peers)?);
        let recent = Arc::new(RecentTransactions::default());
        let (sip, sip_rx) = mpsc::channel(SIP_QUEUE);
        let (kernel, kernel_rx) = mpsc::channel(KERNEL_QUEUE);
        let (control, control_rx) = mpsc::unbounded_channel();
        let handle = ExporterHandle {
            sip,
            kernel,
            control,
            metrics: metrics.clone(),
            recent: recent.clone(),
            ebpf: Arc::new(AtomicBool::new(correlate.kernel_events)),
        };
        let task = Task {
            correlator: Correlator::new(correlate),
            peers,
            tracker: PeerTracker::new(),
            metrics,
            recent,
            otlp,
            reported: Stats::default(),
        };
        let task = tokio::spawn(task.run(sip_rx, kernel_rx, control_rx));
        Ok(Self { handle, task })
    }

    /// The handle to feed it.
    pub fn handle(&self) -> ExporterHandle {
        self.handle.clone()
    }

    /// Joins what is lingering now (late kernel events will not be waited for), then flushes
    /// the spans for at most `within`.
    pub async fn shutdown(self, within: Duration) {
        let _ = self.handle.control.send(Control::Flush);
        if let Ok(Ok(Some(otlp))) = tokio::time::timeout(within, self.task).await {
            otlp.shutdown(within).await;
        }
    }
}

struct Task {
    correlator: Correlator,
    peers: PeerNames,
    tracker: PeerTracker,
    metrics: Arc<ExporterMetrics>,
    recent: Arc<RecentTransactions>,
    otlp: Option<OtlpExporter>,
    reported: Stats,
}

impl Task {
    async fn run(
        mut self,
        mut sip: mpsc::Receiver<Transaction>,
        mut kernel: mpsc::Receiver<SctpEvent>,
        mut control: mpsc::UnboundedReceiver<Control>,
    ) -> Option<OtlpExporter> {
        loop {
            let wake = self.correlator.poll_timeout();
            let sleep = async {
                match wake {
                    Some(t) => {
                        let now = clock::monotonic();
                        tokio::time::sleep(t.saturating_sub(now)).await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                c = control.recv() => match c {
                    Some(Control::Peers(p)) => self.peers = p,
                    Some(Control::Source(on)) => {
                        self.correlator.set_kernel_events(clock::monotonic(), on);
                    }
                    Some(Control::Flush) => {
                        // What is already in the channels first, then everything lingering,
                        // released as if its time were up.
                        while let Ok(e) = kernel.try_recv() {
                            self.correlator.handle_kernel(&e);
                            self.tracker.observe(&self.metrics, &self.peers, &e);
                        }
                        while let Ok(tx) = sip.try_recv() {
                            self.correlator.handle_transaction(clock::monotonic(), tx);
                        }
                        self.drain(Duration::MAX);
                        return self.otlp.take();
                    }
                    None => return self.otlp.take(),
                },
                Some(e) = kernel.recv() => {
                    self.correlator.handle_kernel(&e);
                    self.tracker.observe(&self.metrics, &self.peers, &e);
                    // Take what else is waiting, without a wake-up each.
                    let mut n = 0;
                    while n < 256 && let Ok(e) = kernel.try_recv() {
                        self.correlator.handle_kernel(&e);
                        self.tracker.observe(&self.metrics, &self.peers, &e);
                        n += 1;
                    }
                }
                Some(tx) = sip.recv() => {
                    self.correlator.handle_transaction(clock::monotonic(), tx);
                }
                () = sleep => {}
            }
            self.drain(clock::monotonic());
        }
    }

    /// Releases every joined transaction due at `now`.
    fn drain(&mut self, now: Duration) {
        while let Some(j) = self.correlator.poll(now) {
            self.output(j);
        }
        let s = self.correlator.stats();
        let r = self.reported;
        self.metrics
            .dropped(DropPoint::Windows, s.windows_evicted - r.windows_evicted);
        self.metrics.dropped(
            DropPoint::KernelNotes,
            s.events_overwritten - r.events_overwritten,
        );
        self.metrics
            .dropped(DropPoint::PreId, s.pre_id_dropped - r.pre_id_dropped);
        self.reported = s;
        self.metrics.set_lingering(self.correlator.lingering());
    }

    fn output(&mut self, j: Joined) {
        let inbound = self.peers.name(j.tx.inbound.peer.ip()).to_owned();
        let outbound = self.peers.name(j.tx.outbound.peer.ip()).to_owned();
        self.metrics.observe_joined(&j, &inbound, &outbound);
        if let Some(otlp) = &self.otlp {
            otlp.offer(
                &j,
                Peers {
                    inbound: &inbound,
                    outbound: &outbound,
                },
            );
        }
        self.recent.push(j, &inbound, &outbound);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipsctp_correlate::{Leg, Outcome, Transport};

    fn tx(id: u64) -> Transaction {
        let udp = Leg {
            transport: Transport::Udp,
            peer: "192.0.2.1:5060".parse().unwrap(),
            local: None,
            assoc: None,
        };
        let now = clock::monotonic();
        Transaction {
            id,
            method: "OPTIONS".into(),
            call_id: format!("c{id}").into(),
            cseq: 1,
            branch: "z9hG4bKt".into(),
            inbound: udp,
            outbound: udp,
            received_at: now,
            forwarded_at: now,
            first_response_at: Some(now),
            ended_at: now,
            outcome: Outcome::Final(200),
            sip_retransmissions: 0,
        }
    }

    /// Transactions handed over just before shutdown are joined, not lost: shutdown takes
    /// what is in the channel, then everything lingering.
    #[tokio::test]
    async fn shutdown_joins_what_was_handed_over() {
        let registry = Registry::new();
        let e = Exporter::start(
            Settings {
                correlate: CorrelateConfig::default(),
                peers: PeerNames::default(),
                otlp: None,
            },
            &registry,
        )
        .unwrap();
        let h = e.handle();
        for id in 0..100 {
            h.transaction(tx(id));
        }
        e.shutdown(Duration::from_secs(2)).await;
        let recent = h.recent().to_json(1000, false);
        assert_eq!(recent["transactions"].as_array().unwrap().len(), 100);
        let count = registry
            .gather()
            .iter()
            .find(|f| f.name() == "sipsctp_sip_transaction_duration_seconds")
            .map(|f| {
                f.get_metric()
                    .iter()
                    .map(|m| m.get_histogram().get_sample_count())
                    .sum::<u64>()
            });
        assert_eq!(count, Some(100), "every duration observed");
    }
}
