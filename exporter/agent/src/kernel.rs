//! The daemon's kernel eyes: the eBPF probes on kernel SCTP (`[ebpf] mode = "auto" | "on" |
//! "off"`), their metrics and the recent-events view; and, when eBPF cannot run or is off, the
//! coarser fallback: `/proc/net/sctp/snmp` and per-association getsockopt, polled.
//!
//! Metrics (same names from both sources; `sipsctp_kernel_source{source}` says which feeds
//! them): `sipsctp_kernel_retransmissions_total{reason}`,
//! `sipsctp_kernel_timer_expirations_total{timer}`, `sipsctp_kernel_rto_seconds`,
//! `sipsctp_kernel_srtt_seconds`, `sipsctp_kernel_association_events_total{event}`,
//! `sipsctp_kernel_path_events_total{event}`, `sipsctp_kernel_heartbeats_total{direction}`,
//! `sipsctp_ebpf_events_lost_total`, `sipsctp_ebpf_malformed_records_total` (ring-buffer records
//! that did not decode; should stay 0), `sipsctp_ebpf_probe_up{probe}`, and on Linux 6.7 and later
//! `sipsctp_ebpf_probe_runs_skipped_total{probe}` (probe hits the kernel skipped because they
//! nested in another probe on that CPU: their events are lost; older kernels do not count them).
//!
//! The snmp counters are host-wide (every SCTP association of the network namespace), the
//! eBPF ones are the daemon's own associations (its netns and listening ports) unless
//! `observe_all` is set.
//!
//! The probes are attached by a thread of their own ([`Attaching`]), started before the daemon
//! drops its capabilities (the daemon's `privileges` module) and gone once they are attached; the
//! runtime then reads them without any capability.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};
use serde_json::{Value, json};
use sipsctp_ebpf::{
    AttachedProbes, KernelProbes, Scope,
    event::{AssocChangeState, EventKind, PathCommand, RetransmitReason, SctpEvent, T1Timer},
};

/// The current RTO and smoothed RTT of each path of the associations the poll fallback sees
/// (the daemon reads them with `SCTP_GET_PEER_ADDR_INFO`).
pub type PathSource = Arc<dyn Fn() -> Vec<PathSample> + Send + Sync>;

/// One path's timers, as polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathSample {
    /// Retransmission timeout.
    pub rto: Duration,
    /// Smoothed round-trip time.
    pub srtt: Duration,
}

/// Where each kernel event goes besides the kernel metrics and the recent-events ring (the
/// correlator); it must not block.
pub trait EventSink: Send + Sync + 'static {
    /// One kernel event.
    fn event(&self, e: &SctpEvent);
    /// The probes are attached (`true`, from now on events come) or the source is polling.
    fn source(&self, ebpf: bool);
    /// A captured message (only when the probes were loaded with message capture).
    fn message(&self, _m: sipsctp_ebpf::CapturedMessage) {}
    /// Messages the kernel side could not capture so far (ring buffer full), a running total
    /// (only with message capture).
    fn captures_lost(&self, _total: u64) {}
}

/// A sink that takes nothing (no correlation).
pub struct NoSink;

impl EventSink for NoSink {
    fn event(&self, _: &SctpEvent) {}
    fn source(&self, _: bool) {}
}

/// `[ebpf]`: the kernel eyes' settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EbpfConfig {
    /// auto, on or off.
    pub mode: Mode,
    /// Observe all SCTP on the host, not only the daemon's associations.
    pub observe_all: bool,
    /// The fallback's polling interval.
    pub poll_interval: Duration,
    /// How long the eBPF loader thread (the one thread that keeps the capabilities) may take
    /// to attach the probes; beyond it the daemon stops with the start-up exit code.
    pub attach_timeout: Duration,
}

/// How many recent events `/kernel/events` can show.
pub const RECENT: usize = 1024;

/// The kernel metrics.
pub struct KernelMetrics {
    retransmissions: IntCounterVec,
    timers: IntCounterVec,
    rto: Histogram,
    srtt: Histogram,
    assoc_events: IntCounterVec,
    path_events: IntCounterVec,
    heartbeats: IntCounterVec,
    events_lost: IntCounter,
    runs_skipped: IntCounterVec,
    probe_up: IntGaugeVec,
    source: IntGaugeVec,
    malformed: IntCounter,
    last_lost: Mutex<u64>,
    last_skipped: Mutex<BTreeMap<&'static str, u64>>,
    last_malformed: Mutex<u64>,
    registry: Registry,
}

fn seconds_buckets() -> Vec<f64> {
    vec![
        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0,
    ]
}

impl KernelMetrics {
    /// Registers the kernel metrics in `registry`, every label value pre-set to 0.
    ///
    /// # Errors
    /// Only on a programming error (duplicate names).
    pub fn register(registry: &Registry) -> prometheus::Result<KernelMetrics> {
        let counter = |name: &str, help: &str, label: &str, values: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), &[label])?;
            for v in values {
                c.with_label_values(&[v]);
            }
            registry.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        let retransmissions = counter(
            "sipsctp_kernel_retransmissions_total",
            "SCTP retransmissions by reason (eBPF: sctp_retransmit / lower_cwnd; poll: /proc/net/sctp/snmp)",
            "reason",
            &["t3_rtx", "fast_rtx", "pmtud", "t1_rtx"],
        )?;
        let timers = counter(
            "sipsctp_kernel_timer_expirations_total",
            "SCTP retransmission timer expiries",
            "timer",
            &["t3_rtx", "t1_init", "t1_cookie"],
        )?;
        let assoc_events = counter(
            "sipsctp_kernel_association_events_total",
            "SCTP association lifecycle events seen in the kernel",
            "event",
            &[
                "comm_up",
                "comm_lost",
                "restart",
                "shutdown_comp",
                "cant_str_assoc",
                "new",
                "free",
            ],
        )?;
        let path_events = counter(
            "sipsctp_kernel_path_events_total",
            "SCTP path events seen in the kernel",
            "event",
            &["up", "down", "potentially_failed", "primary_change"],
        )?;
        let heartbeats = counter(
            "sipsctp_kernel_heartbeats_total",
            "SCTP heartbeats sent and acknowledged",
            "direction",
            &["sent", "acked"],
        )?;
        let histogram = |name: &str, help: &str| {
            let h =
                Histogram::with_opts(HistogramOpts::new(name, help).buckets(seconds_buckets()))?;
            registry.register(Box::new(h.clone()))?;
            Ok::<_, prometheus::Error>(h)
        };
        let rto = histogram(
            "sipsctp_kernel_rto_seconds",
            "SCTP path retransmission timeout at each update (poll: at each poll, per path)",
        )?;
        let srtt = histogram(
            "sipsctp_kernel_srtt_seconds",
            "SCTP path smoothed round-trip time at each update (poll: at each poll, per path)",
        )?;
        let events_lost = IntCounter::new(
            "sipsctp_ebpf_events_lost_total",
            "Kernel events the probes could not deliver (ring buffer full)",
        )?;
        registry.register(Box::new(events_lost.clone()))?;
        let malformed = IntCounter::new(
            "sipsctp_ebpf_malformed_records_total",
            "Kernel event records that did not decode and were skipped (a build mismatch or a \
             kernel value out of range; should stay 0)",
        )?;
        registry.register(Box::new(malformed.clone()))?;
        let runs_skipped = IntCounterVec::new(
            Opts::new(
                "sipsctp_ebpf_probe_runs_skipped_total",
                "Probe hits the kernel skipped because they nested in another probe on that CPU; \
                 their events are lost (counted by Linux 6.7 and later only)",
            ),
            &["probe"],
        )?;
        registry.register(Box::new(runs_skipped.clone()))?;
        let probe_up = IntGaugeVec::new(
            Opts::new(
                "sipsctp_ebpf_probe_up",
                "1 when the probe is attached, 0 when it could not be",
            ),
            &["probe"],
        )?;
        registry.register(Box::new(probe_up.clone()))?;
        let source = IntGaugeVec::new(
            Opts::new(
                "sipsctp_kernel_source",
                "Where the kernel metrics come from: ebpf, or poll (/proc/net/sctp/snmp + getsockopt)",
            ),
            &["source"],
        )?;
        registry.register(Box::new(source.clone()))?;
        Ok(KernelMetrics {
            retransmissions,
            timers,
            rto,
            srtt,
            assoc_events,
            path_events,
            heartbeats,
            events_lost,
            runs_skipped,
            probe_up,
            source,
            malformed,
            last_lost: Mutex::new(0),
            last_skipped: Mutex::new(BTreeMap::new()),
            last_malformed: Mutex::new(0),
            registry: registry.clone(),
        })
    }

    /// The registry these metrics were registered in.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Adds what the loader's count of malformed records (since load) grew by.
    fn add_malformed(&self, total: u64) {
        let mut last = self
            .last_malformed
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        self.malformed.inc_by(total.saturating_sub(*last));
        *last = total.max(*last);
    }

    fn set_source(&self, ebpf: bool) {
        self.source
            .with_label_values(&["ebpf"])
            .set(i64::from(ebpf));
        self.source
            .with_label_values(&["poll"])
            .set(i64::from(!ebpf));
    }

    /// Adds what the kernel's skipped-run counts (per program, since load) grew by, per probe.
    fn add_skipped(&self, runs: &[sipsctp_ebpf::MissedRuns]) {
        let mut totals: BTreeMap<&'static str, u64> = BTreeMap::new();
        for r in runs {
            *totals.entry(r.probe).or_default() += r.runs;
        }
        let mut last = self.last_skipped.lock().unwrap_or_else(|p| p.into_inner());
        for (probe, total) in totals {
            let before = last.entry(probe).or_default();
            // Touch every probe's series, so that 0 shows: the kernel does count.
            self.runs_skipped
                .with_label_values(&[probe])
                .inc_by(total.saturating_sub(*before));
            *before = total.max(*before);
        }
    }

    /// Counts one kernel event.
    pub fn observe(&self, e: &SctpEvent) {
        match e.kind {
            EventKind::RtoUpdate { rto, srtt, .. } => {
                self.rto.observe(rto.to_duration().as_secs_f64());
                self.srtt.observe(srtt.to_duration().as_secs_f64());
            }
            EventKind::Retransmit { reason, .. } => {
                let r = match reason {
                    RetransmitReason::T3Rtx => "t3_rtx",
                    RetransmitReason::FastRtx => "fast_rtx",
                    RetransmitReason::Pmtud => "pmtud",
                    RetransmitReason::T1Rtx => "t1_rtx",
                };
                self.retransmissions.with_label_values(&[r]).inc();
            }
            EventKind::T3RtxExpired { .. } => self.timers.with_label_values(&["t3_rtx"]).inc(),
            EventKind::T1Expired { timer, .. } => self
                .timers
                .with_label_values(&[match timer {
                    T1Timer::Init => "t1_init",
                    T1Timer::Cookie => "t1_cookie",
                }])
                .inc(),
            EventKind::AssocNew { .. } => self.assoc_events.with_label_values(&["new"]).inc(),
            EventKind::AssocFree { .. } => self.assoc_events.with_label_values(&["free"]).inc(),
            EventKind::AssocChange { state, .. } => {
                let s = match state {
                    AssocChangeState::CommUp => "comm_up",
                    AssocChangeState::CommLost => "comm_lost",
                    AssocChangeState::Restart => "restart",
                    AssocChangeState::ShutdownComp => "shutdown_comp",
                    AssocChangeState::CantStrAssoc => "cant_str_assoc",
                };
                self.assoc_events.with_label_values(&[s]).inc();
            }
            EventKind::PathChange { command, .. } => {
                let c = match command {
                    PathCommand::Up => "up",
                    PathCommand::Down => "down",
                    PathCommand::PotentiallyFailed => "potentially_failed",
                };
                self.path_events.with_label_values(&[c]).inc();
            }
            EventKind::PrimaryChange { .. } => self
                .path_events
                .with_label_values(&["primary_change"])
                .inc(),
            EventKind::HeartbeatSent { enabled: true, .. } => {
                self.heartbeats.with_label_values(&["sent"]).inc()
            }
            EventKind::HeartbeatSent { .. } => {}
            EventKind::HeartbeatAck { .. } => self.heartbeats.with_label_values(&["acked"]).inc(),
            _ => {}
        }
    }
}

/// The most recent kernel events, for `GET /kernel/events`.
#[derive(Default)]
pub struct Recent {
    events: Mutex<VecDeque<SctpEvent>>,
    /// Why eBPF is not in use, when it is not.
    pub status: Mutex<String>,
}

impl Recent {
    fn push(&self, e: SctpEvent) {
        let mut q = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() == RECENT {
            q.pop_front();
        }
        q.push_back(e);
    }

    /// The last `limit` events, oldest first, as JSON.
    pub fn to_json(&self, limit: usize) -> Value {
        let q = self.events.lock().unwrap_or_else(|p| p.into_inner());
        let skip = q.len().saturating_sub(limit);
        let events: Vec<Value> = q
            .iter()
            .skip(skip)
            .map(|e| {
                json!({
                    "time_ns": u64::try_from(e.time.as_nanos()).unwrap_or(u64::MAX),
                    "assoc_id": e.assoc_id.get(),
                    "netns": e.netns,
                    "local_port": e.local_port,
                    "peer_port": e.peer_port,
                    "peer": e.peer.map(|a| a.to_string()),
                    "owner_pid": e.owner,
                    "event": format!("{:?}", e.kind),
                })
            })
            .collect();
        let status = self.status.lock().map(|s| s.clone()).unwrap_or_default();
        json!({ "source": status, "events": events })
    }
}

/// `[ebpf] mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Use eBPF when it can run; say why not and poll otherwise.
    Auto,
    /// eBPF is required: the daemon does not start without it.
    On,
    /// Poll only.
    Off,
}

/// The eBPF loader thread. It is started on the main thread before the capabilities are
/// dropped, so it alone keeps them; it loads and attaches the probes (blocking work: HZ
/// measurement, BTF parsing, verification), hands them over and exits. It must do so within
/// `[ebpf] attach_timeout_ms` of its start: a thread cannot be stopped from outside, so when it
/// takes longer the daemon stops ([`LoadError::TimedOut`]) rather than run on beside a thread
/// holding `CAP_SYS_ADMIN`.
pub struct Attaching {
    result: tokio::sync::oneshot::Receiver<Result<AttachedProbes, String>>,
    thread: std::thread::JoinHandle<()>,
    deadline: std::time::Instant,
    timeout: Duration,
}

/// Why the probes are not running.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// They cannot run here (no privileges, no BTF, a refused program, ...): `auto` polls.
    #[error("{0}")]
    Unavailable(String),
    /// The loader thread, which holds the capabilities, did not finish in time: the daemon
    /// stops whatever the mode.
    #[error(
        "the eBPF loader thread did not attach the probes within {0:?} ([ebpf] attach_timeout_ms); \
         it holds the start-up capabilities (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN) and cannot be \
         stopped from outside, so sipsctpd stops"
    )]
    TimedOut(Duration),
}

impl Attaching {
    /// Starts the loader for `[ebpf]` and the configured SCTP listening ports; `None` when
    /// eBPF is off or the thread cannot be created (then the probes are reported down).
    /// `prepare` runs on the loader thread first (the daemon opens an SCTP socket there, so
    /// that the sctp module, whose BTF the loader reads, is loaded).
    pub fn spawn(
        ebpf: &EbpfConfig,
        ports: Vec<u16>,
        prepare: impl FnOnce() + Send + 'static,
    ) -> Option<Attaching> {
        let observe_all = ebpf.observe_all;
        Self::spawn_with(
            ebpf,
            move || {
                if observe_all {
                    Ok(Scope::All)
                } else {
                    Scope::daemon(ports.into_iter().filter(|p| *p != 0))
                }
            },
            false,
            prepare,
        )
    }

    /// As [`Attaching::spawn`], with the probes' scope made on the loader thread by `scope`
    /// (sipsctp-exporter: another process's network namespace and ports), and the message
    /// capture probes when `capture_messages` (see [`EventSink::message`]).
    pub fn spawn_with(
        ebpf: &EbpfConfig,
        scope: impl FnOnce() -> Result<Scope, sipsctp_ebpf::ProbeError> + Send + 'static,
        capture_messages: bool,
        prepare: impl FnOnce() + Send + 'static,
    ) -> Option<Attaching> {
        if ebpf.mode == Mode::Off {
            return None;
        }
        let timeout = ebpf.attach_timeout;
        let deadline = std::time::Instant::now() + timeout;
        let (tx, result) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("ebpf-attach".into())
            .spawn(move || {
                prepare();
                let attached = scope()
                    .and_then(|s| {
                        KernelProbes::attach(
                            sipsctp_ebpf::LoadOptions::new(s).capture_messages(capture_messages),
                        )
                    })
                    .map_err(|e| e.to_string());
                let _ = tx.send(attached);
            });
        match thread {
            Ok(thread) => Some(Attaching {
                result,
                thread,
                deadline,
                timeout,
            }),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the eBPF loader thread");
                None
            }
        }
    }

    /// Waits (until the deadline) for the probes, makes sure the loader thread (the last
    /// holder of the capabilities) is gone, and starts reading; `ports` are the listening ports
    /// as bound (a configured port 0 is known only now).
    async fn finish(self, ports: &[u16]) -> Result<KernelProbes, LoadError> {
        let unavailable = LoadError::Unavailable;
        let deadline = tokio::time::Instant::from_std(self.deadline);
        let attached = match tokio::time::timeout_at(deadline, self.result).await {
            Err(_) => return Err(LoadError::TimedOut(self.timeout)),
            Ok(r) => r.map_err(|_| {
                unavailable("the eBPF loader thread ended without an answer".to_owned())
            }),
        };
        let thread = self.thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        let mut probes = attached?
            .map_err(unavailable)?
            .start()
            .map_err(|e| unavailable(e.to_string()))?;
        if matches!(probes.scope(), Scope::Daemon { .. }) {
            for &p in ports {
                probes.add_port(p).map_err(|e| unavailable(e.to_string()))?;
            }
        }
        Ok(probes)
    }
}

/// What the kernel eyes need.
pub struct Settings {
    /// `[ebpf] mode`.
    pub mode: Mode,
    /// The loader started by `main` (`None` with eBPF off, or when it could not start).
    pub attaching: Option<Attaching>,
    /// The daemon's SCTP listening ports, as bound (the probes' filter).
    pub ports: Vec<u16>,
    /// The fallback's polling interval.
    pub poll: Duration,
    /// Told why when the daemon must stop ([`LoadError::TimedOut`] in `auto` mode, found
    /// after the start).
    pub fatal: tokio::sync::mpsc::Sender<String>,
    /// The ports to observe from now on, when they change at run time (sipsctp-exporter:
    /// the observed process opened or closed a listener); `None`: `ports` for good.
    pub port_updates: Option<tokio::sync::watch::Receiver<Vec<u16>>>,
}

/// Starts the kernel eyes. With `Mode::On` the probes are loaded before this returns (an error
/// stops the start); otherwise in the background, and a loader that times out is reported on
/// `settings.fatal` (the daemon stops).
///
/// # Errors
/// `Mode::On` and the probes cannot run; any mode and the loader timed out.
pub async fn start(
    settings: Settings,
    metrics: Arc<KernelMetrics>,
    recent: Arc<Recent>,
    paths: Option<PathSource>,
    sink: Box<dyn EventSink>,
) -> Result<tokio::task::JoinHandle<()>, LoadError> {
    let Settings {
        mode,
        attaching,
        ports,
        poll,
        fatal,
        port_updates,
    } = settings;
    let observed: std::collections::BTreeSet<u16> = ports.iter().copied().collect();
    let load = async move {
        match attaching {
            Some(a) => a.finish(&ports).await,
            None => Err(LoadError::Unavailable(
                "the eBPF loader thread could not be started".to_owned(),
            )),
        }
    };
    let set_status = |s: String| {
        if let Ok(mut st) = recent.status.lock() {
            *st = s;
        }
    };
    match mode {
        Mode::Off => {
            tracing::info!(
                "eBPF off (configured): kernel metrics come from /proc/net/sctp/snmp and getsockopt polling"
            );
            set_status("poll: eBPF off in the configuration".into());
            metrics.set_source(false);
            sink.source(false);
            Ok(tokio::spawn(poll_loop(poll, metrics, paths)))
        }
        Mode::On => {
            set_status("loading: attaching the eBPF probes".into());
            let probes = load.await?;
            report(&probes, &metrics);
            set_status("ebpf".into());
            metrics.set_source(true);
            sink.source(true);
            Ok(tokio::spawn(event_loop(
                probes,
                metrics,
                recent,
                sink,
                observed,
                port_updates,
            )))
        }
        Mode::Auto => {
            set_status("loading: attaching the eBPF probes".into());
            Ok(tokio::spawn(async move {
                match load.await {
                    Err(e @ LoadError::TimedOut(_)) => {
                        let _ = fatal.send(e.to_string()).await;
                    }
                    Ok(probes) => {
                        report(&probes, &metrics);
                        if let Ok(mut st) = recent.status.lock() {
                            *st = "ebpf".into();
                        }
                        metrics.set_source(true);
                        sink.source(true);
                        event_loop(probes, metrics, recent, sink, observed, port_updates).await;
                    }
                    Err(reason) => {
                        tracing::warn!(
                            %reason,
                            "eBPF unavailable: kernel metrics fall back to /proc/net/sctp/snmp and getsockopt polling"
                        );
                        if let Ok(mut st) = recent.status.lock() {
                            *st = format!("poll: eBPF unavailable: {reason}");
                        }
                        metrics.set_source(false);
                        sink.source(false);
                        poll_loop(poll, metrics, paths).await;
                    }
                }
            }))
        }
    }
}

fn report(probes: &KernelProbes, metrics: &KernelMetrics) {
    let mut up = 0;
    for s in probes.status() {
        metrics
            .probe_up
            .with_label_values(&[s.name])
            .set(i64::from(s.is_up()));
        match &s.state {
            sipsctp_ebpf::ProbeState::Up => up += 1,
            sipsctp_ebpf::ProbeState::Down { reason } => {
                tracing::warn!(probe = s.name, %reason, "eBPF probe unavailable")
            }
        }
    }
    tracing::info!(probes_up = up, probes = probes.status().len(), hz = ?probes.hz(), "eBPF probes attached");
    if !probes.counts_missed_runs() {
        tracing::info!(
            "skipped probe hits are not counted: either the kernel (before Linux 6.7) does not \
             count the probe runs it skips when one nests in another on the same CPU, or their \
             counts could not be read (see the loader's warning); under heavy load a few kernel \
             events can be lost without sipsctp_ebpf_probe_runs_skipped_total showing it"
        );
    }
}

/// The ports of [`Scope::Daemon`] follow `wanted`: those it gained are added, those it lost
/// removed; `observed` is what the probes report now.
fn follow_ports(
    probes: &mut KernelProbes,
    observed: &mut std::collections::BTreeSet<u16>,
    wanted: &[u16],
) {
    let wanted: std::collections::BTreeSet<u16> =
        wanted.iter().copied().filter(|p| *p != 0).collect();
    for &p in wanted.difference(observed) {
        match probes.add_port(p) {
            Ok(()) => tracing::info!(port = p, "observing SCTP port"),
            Err(e) => tracing::warn!(port = p, error = %e, "cannot observe SCTP port"),
        }
    }
    for &p in observed.difference(&wanted) {
        if probes.remove_port(p).is_ok() {
            tracing::info!(port = p, "no longer observing SCTP port");
        }
    }
    *observed = wanted;
}

/// One record from the probes to where it goes.
fn deliver(
    r: sipsctp_ebpf::Record,
    metrics: &KernelMetrics,
    recent: &Recent,
    sink: &dyn EventSink,
) {
    match r {
        sipsctp_ebpf::Record::Event(e) => {
            metrics.observe(&e);
            sink.event(&e);
            recent.push(e);
        }
        sipsctp_ebpf::Record::Message(m) => sink.message(m),
    }
}

async fn event_loop(
    mut probes: KernelProbes,
    metrics: Arc<KernelMetrics>,
    recent: Arc<Recent>,
    sink: Box<dyn EventSink>,
    mut observed: std::collections::BTreeSet<u16>,
    mut port_updates: Option<tokio::sync::watch::Receiver<Vec<u16>>>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut warned = false;
    let mut warned_skipped = false;
    let capturing = probes
        .status()
        .iter()
        .any(|s| s.name.starts_with("message_") && s.is_up());
    loop {
        let ports_changed = async {
            match port_updates.as_mut() {
                Some(rx) => rx.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            alive = ports_changed => {
                match (alive, port_updates.as_mut()) {
                    (true, Some(rx)) => {
                        let wanted = rx.borrow_and_update().clone();
                        if matches!(probes.scope(), Scope::Daemon { .. }) {
                            follow_ports(&mut probes, &mut observed, &wanted);
                        }
                    }
                    // The sender is gone: the ports stay as they are.
                    _ => port_updates = None,
                }
            },
            r = probes.next() => match r {
                Ok(first) => {
                    // Whatever else is waiting goes in the same wake-up (a burst of captured
                    // messages costs one pass of this loop, not one per record), at most
                    // BATCH so that the ticks and port updates still come round.
                    const BATCH: usize = 1024;
                    let mut next = Some(first);
                    let mut n = 0;
                    while let Some(r) = next.take() {
                        deliver(r, &metrics, &recent, sink.as_ref());
                        n += 1;
                        if n < BATCH {
                            next = probes
                                .try_next_event()
                                .map(sipsctp_ebpf::Record::Event)
                                .or_else(|| probes.try_next_message().map(sipsctp_ebpf::Record::Message));
                        }
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "reading kernel events failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = tick.tick() => {
                metrics.add_malformed(probes.malformed_records());
                match probes.events_lost() {
                    Ok(lost) => {
                        let mut last = metrics.last_lost.lock().unwrap_or_else(|p| p.into_inner());
                        metrics.events_lost.inc_by(lost.saturating_sub(*last));
                        *last = lost.max(*last);
                    }
                    Err(e) if !warned => {
                        warned = true;
                        tracing::warn!(error = %e, "cannot read the eBPF lost-events counter; sipsctp_ebpf_events_lost_total stays behind");
                    }
                    Err(_) => {}
                }
                if capturing && let Ok(lost) = probes.captures_lost() {
                    sink.captures_lost(lost);
                }
                match probes.missed_runs() {
                    Ok(Some(runs)) => metrics.add_skipped(&runs),
                    Ok(None) => {}
                    Err(e) if !warned_skipped => {
                        warned_skipped = true;
                        tracing::warn!(error = %e, "cannot read the probes' skipped runs; sipsctp_ebpf_probe_runs_skipped_total stays behind");
                    }
                    Err(_) => {}
                }
            }
        }
    }
}

/// Parses `/proc/net/sctp/snmp` ("Name<whitespace>value" lines).
pub fn parse_snmp(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_owned(), it.next()?.parse().ok()?))
        })
        .collect()
}

async fn poll_loop(every: Duration, metrics: Arc<KernelMetrics>, paths: Option<PathSource>) {
    // (snmp counter, metric, label)
    const MAP: [(&str, bool, &str); 6] = [
        ("SctpT3Retransmits", true, "t3_rtx"),
        ("SctpFastRetransmits", true, "fast_rtx"),
        ("SctpPmtudRetransmits", true, "pmtud"),
        ("SctpT3RtxExpireds", false, "t3_rtx"),
        ("SctpT1InitExpireds", false, "t1_init"),
        ("SctpT1CookieExpireds", false, "t1_cookie"),
    ];
    let mut last: Option<BTreeMap<String, u64>> = None;
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        // A procfs read: no disk behind it, fine on the async thread.
        match std::fs::read_to_string("/proc/net/sctp/snmp") {
            Ok(text) => {
                let now = parse_snmp(&text);
                if let Some(prev) = &last {
                    for (name, retransmission, label) in MAP {
                        let d = now
                            .get(name)
                            .copied()
                            .unwrap_or(0)
                            .saturating_sub(prev.get(name).copied().unwrap_or(0));
                        let c = if retransmission {
                            &metrics.retransmissions
                        } else {
                            &metrics.timers
                        };
                        c.with_label_values(&[label]).inc_by(d);
                    }
                }
                last = Some(now);
            }
            Err(e) => tracing::debug!(error = %e, "reading /proc/net/sctp/snmp"),
        }
        if let Some(paths) = &paths {
            for p in paths() {
                metrics.rto.observe(p.rto.as_secs_f64());
                metrics.srtt.observe(p.srtt.as_secs_f64());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_records_are_exported_as_the_loaders_count_grows() {
        let registry = Registry::new();
        let m = KernelMetrics::register(&registry).unwrap();
        let value = || {
            registry
                .gather()
                .iter()
                .find(|f| f.name() == "sipsctp_ebpf_malformed_records_total")
                .and_then(|f| f.get_metric().first().map(|m| m.get_counter().get_value()))
        };
        assert_eq!(value(), Some(0.0), "exported from the start");
        m.add_malformed(3);
        m.add_malformed(3);
        assert_eq!(value(), Some(3.0));
        m.add_malformed(5);
        assert_eq!(value(), Some(5.0));
        // The loader's count never goes back; a smaller one adds nothing.
        m.add_malformed(1);
        assert_eq!(value(), Some(5.0));
    }

    #[test]
    fn snmp_lines_parse() {
        let m = parse_snmp("SctpCurrEstab                   \t2\nSctpT3Retransmits \t17\nbogus\n");
        assert_eq!(m.get("SctpT3Retransmits"), Some(&17));
        assert_eq!(m.get("SctpCurrEstab"), Some(&2));
        assert_eq!(m.len(), 2);
    }
}
