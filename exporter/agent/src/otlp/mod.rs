//! OTLP traces: joined transactions ([`Joined`]) as spans, exported from a bounded queue of our
//! own.
//!
//! [`OtlpExporter::offer`] runs on the relay's side: it decides sampling, builds the spans and
//! `try_send`s them into the queue. It never waits: a full queue, the rate cap and the ratio
//! each drop spans and count them in `sipsctp_otlp_spans_total{outcome}`. One task drains the
//! queue in batches (up to [`BATCH_MAX`] spans, or what came in a second), one export in
//! flight, each bounded by [`EXPORT_TIMEOUT`]. A collector that is down, refuses or does not
//! answer costs the batch (counted `failed`, warned at most every [`WARN_EVERY`]); the next
//! batch tries again, so export resumes by itself.
//!
//! The SDK's `BatchSpanProcessor` is not used (it hides queue-full drops and has shutdown
//! deadlocks): the spans are built as `SpanData` here and handed to the OTLP exporter's
//! `export` directly.
//!
//! # Organization
//!
//! - this file: configuration, the clock, the handle and the export task;
//! - `span`: a [`Joined`] as `SpanData` (pure);
//! - `sample`: the always-keep rules, the ratio and the token bucket (pure);
//! - `http`: the HTTP/1.1 client on hyper.
//!
//! # Outcomes
//!
//! Counted per span (a SERVER + CLIENT pair is 2): `exported`; `failed` (the export of its
//! batch failed or timed out); `dropped_queue_full` (it never left the queue: the queue was
//! full when offered, it was offered after shutdown, or shutdown's bound ran out before it
//! was sent); `sampled_out` (not kept by the ratio); `rate_limited` (over the token bucket).

mod http;
mod sample;
pub(crate) mod span;

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use opentelemetry::{InstrumentationScope, trace::SpanId};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::{
    Resource,
    trace::{SpanData, SpanExporter as _},
};
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use sipsctp_correlate::Joined;
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
};

use self::{
    sample::TokenBucket,
    span::{Builder, Ids, TraceKey},
};

/// Spans the queue holds.
pub const QUEUE_SPANS: usize = 8192;
/// Spans in one export at most.
pub const BATCH_MAX: usize = 512;
/// A batch that is not full goes out after this long.
pub const BATCH_INTERVAL: Duration = Duration::from_secs(1);
/// The bound on one export.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// Export failures are warned about at most this often.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// How spans travel to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// OTLP/HTTP with protobuf bodies (`POST {endpoint}/v1/traces`).
    #[default]
    Http,
    /// OTLP/gRPC. Not built into this binary: rejected by [`OtlpConfig::validate`].
    Grpc,
}

/// The `[otlp]` configuration (the daemon parses the TOML; this validates it).
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpConfig {
    /// The collector's base URL, e.g. `http://127.0.0.1:4318`; `/v1/traces` is appended.
    pub endpoint: String,
    /// How to talk to it.
    pub protocol: Protocol,
    /// Share of ordinary transactions kept, `0.0 ..= 1.0`.
    pub sampling_ratio: f64,
    /// Spans per second at most (a token bucket with a one-second burst).
    pub max_spans_per_second: u32,
    /// A transaction whose first response came this long or longer after the forward is slow
    /// (always kept).
    pub slow_threshold: Duration,
    /// Whether spans carry `sip.call_id`.
    pub call_id: bool,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self {
            endpoint: "http://127.0.0.1:4318".to_owned(),
            protocol: Protocol::Http,
            sampling_ratio: 0.01,
            max_spans_per_second: 200,
            slow_threshold: Duration::from_secs(1),
            call_id: true,
        }
    }
}

/// A bad `[otlp]` value; the message names the key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum OtlpConfigError {
    /// The endpoint is not an `http://host[:port][/path]` URL.
    #[error("otlp.endpoint: {reason} (got {endpoint:?}; expected e.g. \"http://127.0.0.1:4318\")")]
    Endpoint {
        /// What is wrong.
        reason: &'static str,
        /// The value given.
        endpoint: String,
    },
    /// The ratio is out of range.
    #[error("otlp.sampling_ratio: must be 0.0 ..= 1.0 (got {0})")]
    SamplingRatio(f64),
    /// Zero spans a second.
    #[error("otlp.max_spans_per_second: must be at least 1 (leave [otlp] out to export nothing)")]
    MaxSpansPerSecond,
    /// A zero threshold would call everything slow.
    #[error("otlp.slow_threshold_ms: must be more than 0")]
    SlowThreshold,
}

impl OtlpConfig {
    /// Checks every value.
    ///
    /// # Errors
    ///
    /// The first bad value, naming its key.
    pub fn validate(&self) -> Result<(), OtlpConfigError> {
        self.traces_url()?;
        if !(0.0..=1.0).contains(&self.sampling_ratio) {
            return Err(OtlpConfigError::SamplingRatio(self.sampling_ratio));
        }
        if self.max_spans_per_second == 0 {
            return Err(OtlpConfigError::MaxSpansPerSecond);
        }
        if self.slow_threshold.is_zero() {
            return Err(OtlpConfigError::SlowThreshold);
        }
        Ok(())
    }

    /// `{endpoint}/v1/traces`, checked.
    fn traces_url(&self) -> Result<String, OtlpConfigError> {
        let bad = |reason| OtlpConfigError::Endpoint {
            reason,
            endpoint: self.endpoint.clone(),
        };
        let uri: ::http::Uri = self.endpoint.parse().map_err(|_| bad("not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => return Err(bad("https is not built in (no TLS); use http://")),
            _ => return Err(bad("must start with http://")),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(bad("no host"));
        }
        if uri.query().is_some() {
            return Err(bad("no query string allowed"));
        }
        let base = self.endpoint.trim_end_matches('/');
        Ok(format!("{base}/v1/traces"))
    }
}

/// Maps `CLOCK_MONOTONIC` times (those of [`Joined`]) to wall time:
/// `wall = wall0 + (mono - mono0)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    wall0: SystemTime,
    mono0: Duration,
}

impl Clock {
    /// The clock that says `mono0` was `wall0` (read both at the same moment).
    pub fn new(wall0: SystemTime, mono0: Duration) -> Self {
        Self { wall0, mono0 }
    }

    /// The clock of this moment: the wall clock and `CLOCK_MONOTONIC`, read together.
    pub fn now() -> Self {
        Self::new(SystemTime::now(), crate::clock::monotonic())
    }

    /// The wall time of monotonic time `mono` (the Unix epoch at the earliest).
    pub fn wall(&self, mono: Duration) -> SystemTime {
        if mono >= self.mono0 {
            self.wall0
                .checked_add(mono - self.mono0)
                .unwrap_or(self.wall0)
        } else {
            self.wall0
                .checked_sub(self.mono0 - mono)
                .unwrap_or(UNIX_EPOCH)
                .max(UNIX_EPOCH)
        }
    }
}

/// The bounded names of a transaction's two peers (`sctp.peer`).
#[derive(Debug, Clone, Copy)]
pub struct Peers<'a> {
    /// Where the request came from.
    pub inbound: &'a str,
    /// Where it was forwarded.
    pub outbound: &'a str,
}

/// Starting the exporter failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OtlpError {
    /// A bad configuration value.
    #[error(transparent)]
    Config(#[from] OtlpConfigError),
    /// `sipsctp_otlp_spans_total` could not be registered (e.g. registered twice).
    #[error("registering sipsctp_otlp_spans_total: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The OTLP exporter could not be built.
    #[error("building the OTLP exporter: {0}")]
    Exporter(String),
    /// Not called on a tokio runtime.
    #[error("the OTLP exporter must be started on a tokio runtime")]
    NoRuntime,
}

/// The outcome counters, one per label value.
#[derive(Debug, Clone)]
struct Counters {
    exported: IntCounter,
    dropped_queue_full: IntCounter,
    failed: IntCounter,
    sampled_out: IntCounter,
    rate_limited: IntCounter,
}

impl Counters {
    fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let vec = IntCounterVec::new(
            Opts::new(
                "sipsctp_otlp_spans_total",
                "OTLP spans by outcome: exported, failed (the export failed or timed out), \
                 dropped_queue_full (never left the queue), sampled_out, rate_limited.",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(vec.clone()))?;
        let c = |o: &str| vec.with_label_values(&[o]);
        Ok(Self {
            exported: c("exported"),
            dropped_queue_full: c("dropped_queue_full"),
            failed: c("failed"),
            sampled_out: c("sampled_out"),
            rate_limited: c("rate_limited"),
        })
    }
}

fn count(c: &IntCounter, n: usize) {
    c.inc_by(u64::try_from(n).unwrap_or(u64::MAX));
}

/// What the handles share.
#[derive(Debug)]
struct Shared {
    builder: Builder,
    sampling_ratio: f64,
    slow_threshold: Duration,
    bucket: Mutex<TokenBucket>,
    counters: Counters,
    tx: mpsc::Sender<SpanData>,
    /// The task and the way to stop it, until `shutdown` takes them.
    stop: Mutex<Option<(oneshot::Sender<Instant>, JoinHandle<()>)>>,
}

/// The exporter: a cheap handle (clone it freely), `Send + Sync`.
#[derive(Debug, Clone)]
pub struct OtlpExporter {
    shared: Arc<Shared>,
}

/// A random non-zero span id.
fn span_id() -> SpanId {
    SpanId::from_bytes(rand::random::<u64>().max(1).to_be_bytes())
}

impl OtlpExporter {
    /// [`start`](Self::start) with the clock of now ([`Clock::now`]), logging where spans go
    /// once started: what sipsctpd and the standalone exporter both do at start.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub fn start_now(
        config: &OtlpConfig,
        service_name: &str,
        registry: &Registry,
    ) -> Result<OtlpExporter, OtlpError> {
        let e = Self::start(config, Clock::now(), service_name, registry)?;
        tracing::info!(
            endpoint = %config.endpoint,
            protocol = ?config.protocol,
            sampling_ratio = config.sampling_ratio,
            max_spans_per_second = config.max_spans_per_second,
            "OTLP trace export on"
        );
        Ok(e)
    }

    /// Validates `config`, registers `sipsctp_otlp_spans_total{outcome}` (every outcome
    /// pre-set to 0) in `registry` and spawns the export task on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// A bad configuration, a metric already registered, an exporter that cannot be built, or
    /// no tokio runtime.
    pub fn start(
        config: &OtlpConfig,
        clock: Clock,
        service_name: &str,
        registry: &Registry,
    ) -> Result<OtlpExporter, OtlpError> {
        config.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| OtlpError::NoRuntime)?;
        let url = config.traces_url()?;
        let built = match config.protocol {
            Protocol::Http => opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(http::HyperHttp::new())
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(url)
                .with_timeout(EXPORT_TIMEOUT)
                .with_retry_policy(opentelemetry_otlp::RetryPolicy::disabled())
                .build(),
            // The endpoint as given (gRPC has no path); the channel connects lazily, on the
            // runtime this runs on.
            Protocol::Grpc => {
                let _guard = runtime.enter();
                opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(config.endpoint.trim_end_matches('/'))
                    .with_timeout(EXPORT_TIMEOUT)
                    .with_retry_policy(opentelemetry_otlp::RetryPolicy::disabled())
                    .build()
            }
        };
        let mut exporter = built.map_err(|e| OtlpError::Exporter(e.to_string()))?;
        exporter.set_resource(
            &Resource::builder_empty()
                .with_service_name(service_name.to_owned())
                .build(),
        );
        let counters = Counters::register(registry)?;
        let (tx, rx) = mpsc::channel(QUEUE_SPANS);
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = runtime.spawn(export_task(exporter, rx, stop_rx, counters.clone()));
        let builder = Builder {
            clock,
            key: TraceKey::new(rand::random()),
            call_id: config.call_id,
            scope: InstrumentationScope::builder("sipsctp-agent")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
        };
        Ok(OtlpExporter {
            shared: Arc::new(Shared {
                builder,
                sampling_ratio: config.sampling_ratio,
                slow_threshold: config.slow_threshold,
                bucket: Mutex::new(TokenBucket::new(
                    config.max_spans_per_second,
                    Instant::now(),
                )),
                counters,
                tx,
                stop: Mutex::new(Some((stop_tx, task))),
            }),
        })
    }

    /// Offers a joined transaction: decides sampling, builds its spans and queues them, all
    /// or none. Never blocks and never awaits (a mutex held for a few arithmetic operations
    /// aside); what is not queued is counted.
    pub fn offer(&self, joined: &Joined, peers: Peers<'_>) {
        let s = &*self.shared;
        let n: usize = if joined.tx.outcome == sipsctp_correlate::Outcome::SendFailed {
            1
        } else {
            2
        };
        if sample::always_keep(joined, s.slow_threshold).is_none()
            && !sample::ratio_keeps(s.sampling_ratio, rand::random::<f64>())
        {
            count(&s.counters.sampled_out, n);
            return;
        }
        let allowed = s
            .bucket
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take(Instant::now(), u32::try_from(n).unwrap_or(u32::MAX));
        if !allowed {
            count(&s.counters.rate_limited, n);
            return;
        }
        let permits = match s.tx.try_reserve_many(n) {
            Ok(p) => p,
            Err(_) => {
                count(&s.counters.dropped_queue_full, n);
                return;
            }
        };
        let ids = Ids {
            server: span_id(),
            client: span_id(),
        };
        let spans = s.builder.build(joined, peers, ids);
        for (permit, span) in permits.zip(spans) {
            permit.send(span);
        }
    }

    /// Stops the export task: what is queued is flushed for at most `within`, the rest is
    /// counted `dropped_queue_full` (an export cut off counts `failed`). Offers made after
    /// this (through other handles) are counted `dropped_queue_full`.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: dropping the future leaves the task flushing until its deadline.
    pub async fn shutdown(self, within: Duration) {
        let deadline = Instant::now() + within;
        let stop = self
            .shared
            .stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some((stop, task)) = stop else {
            return;
        };
        let _ = stop.send(deadline);
        // The task keeps its own deadline; a little slack covers counting and shutting down.
        let abort = task.abort_handle();
        if tokio::time::timeout(within + Duration::from_millis(200), task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}

/// Warns about failed exports, at most every [`WARN_EVERY`].
#[derive(Debug, Default)]
struct FailureLog {
    last: Option<Instant>,
    spans: u64,
    batches: u64,
}

impl FailureLog {
    fn failed(&mut self, spans: usize, why: &str) {
        self.spans += u64::try_from(spans).unwrap_or(u64::MAX);
        self.batches += 1;
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < WARN_EVERY)
        {
            return;
        }
        tracing::warn!(
            spans = self.spans,
            batches = self.batches,
            "OTLP export failed, spans dropped: {why}"
        );
        self.last = Some(now);
        self.spans = 0;
        self.batches = 0;
    }
}

/// Exports one batch within `bound`; counts the outcome.
async fn export_batch(
    exporter: &opentelemetry_otlp::SpanExporter,
    spans: Vec<SpanData>,
    bound: Duration,
    counters: &Counters,
    log: &mut FailureLog,
) {
    let n = spans.len();
    match tokio::time::timeout(bound, exporter.export(spans)).await {
        Ok(Ok(())) => count(&counters.exported, n),
        Ok(Err(e)) => {
            count(&counters.failed, n);
            log.failed(n, &e.to_string());
        }
        Err(_) => {
            count(&counters.failed, n);
            log.failed(n, &format!("no answer within {bound:?}"));
        }
    }
}

/// A stop request: the flush deadline (`None`: every handle is gone, no caller waits).
type Stop = Option<Instant>;

/// Exports `batch` (bounded by [`EXPORT_TIMEOUT`]) while watching for a stop: a stop that
/// comes meanwhile cuts the export at its deadline (the batch then counts `failed`) and is
/// returned.
async fn export_or_stop(
    exporter: &opentelemetry_otlp::SpanExporter,
    batch: &mut Vec<SpanData>,
    stop: &mut oneshot::Receiver<Instant>,
    counters: &Counters,
    log: &mut FailureLog,
) -> Option<Stop> {
    if batch.is_empty() {
        return None;
    }
    let spans = std::mem::replace(batch, Vec::with_capacity(BATCH_MAX));
    let n = spans.len();
    let (stopped, cut) = {
        let export = export_batch(exporter, spans, EXPORT_TIMEOUT, counters, log);
        tokio::pin!(export);
        tokio::select! {
            biased;
            () = &mut export => (None, false),
            d = stop => {
                let d = d.ok();
                let until = d.unwrap_or_else(|| Instant::now() + EXPORT_TIMEOUT);
                let until = tokio::time::Instant::from_std(until);
                let cut = tokio::time::timeout_at(until, &mut export).await.is_err();
                (Some(d), cut)
            }
        }
    };
    if cut {
        count(&counters.failed, n);
        log.failed(n, "cut off by shutdown");
    }
    stopped
}

/// The export task: batches from the queue, one export at a time, until stopped.
async fn export_task(
    exporter: opentelemetry_otlp::SpanExporter,
    mut rx: mpsc::Receiver<SpanData>,
    mut stop: oneshot::Receiver<Instant>,
    counters: Counters,
) {
    let mut log = FailureLog::default();
    let mut batch = Vec::with_capacity(BATCH_MAX);
    let mut tick = tokio::time::interval(BATCH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let deadline = loop {
        tokio::select! {
            biased;
            d = &mut stop => break d.ok(),
            span = rx.recv() => match span {
                Some(span) => {
                    batch.push(span);
                    if batch.len() >= BATCH_MAX {
                        let r = export_or_stop(&exporter, &mut batch, &mut stop, &counters, &mut log)
                            .await;
                        if let Some(d) = r {
                            break d;
                        }
                        tick.reset();
                    }
                }
                // Every sender is gone (not while a handle lives: `Shared` holds one).
                None => break None,
            },
            _ = tick.tick() => {
                let r = export_or_stop(&exporter, &mut batch, &mut stop, &counters, &mut log).await;
                if let Some(d) = r {
                    break d;
                }
            }
        }
    };
    // Flush: no new spans (offers now fail and are counted), what is queued goes out in
    // batches until the deadline.
    rx.close();
    let deadline = deadline.unwrap_or_else(|| Instant::now() + EXPORT_TIMEOUT);
    loop {
        while batch.len() < BATCH_MAX {
            match rx.try_recv() {
                Ok(span) => batch.push(span),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let spans = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_MAX));
        export_batch(
            &exporter,
            spans,
            left.min(EXPORT_TIMEOUT),
            &counters,
            &mut log,
        )
        .await;
    }
    let mut left = batch.len();
    while rx.try_recv().is_ok() {
        left += 1;
    }
    count(&counters.dropped_queue_full, left);
    if left > 0 {
        tracing::warn!(
            spans = left,
            "OTLP shutdown: spans still queued were dropped"
        );
    }
    let _ = exporter.shutdown();
}

#[cfg(test)]
mod tests;
