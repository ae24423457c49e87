//! What the daemon's tasks share: the SCTP endpoint, the metrics, and the admin settings.

use std::{sync::Arc, time::Instant};

use serde_json::{Value, json};
use sipsctp_sctp::endpoint::SctpEndpoint;

use crate::metrics::Metrics;

/// Shared by the relay, the admin API and the signal handlers.
pub struct Shared {
    /// The SCTP endpoint, when an SCTP listener is configured.
    pub sctp: Option<Arc<SctpEndpoint>>,
    /// The metrics.
    pub metrics: Metrics,
    /// The admin API's bearer token (every endpoint but `GET /health` needs it when set).
    pub admin_token: Option<String>,
    /// Listener descriptions for /health.
    pub listeners: Vec<String>,
    /// When the daemon started.
    pub started: Instant,
    /// Recent kernel events and the kernel eyes' status.
    pub recent: Arc<sipsctp_agent::kernel::Recent>,
    /// The admin API's connection metrics.
    pub admin_metrics: crate::admin::AdminMetrics,
    /// The exporter's correlator: finished transactions go there; the admin API reads its
    /// recent joined transactions.
    pub exporter: sipsctp_agent::correlation::ExporterHandle,
    /// The daemon's network namespace (inode), half of its associations' key.
    pub netns: u32,
}

impl Shared {
    /// Copies the transport counters into the metrics (at each scrape).
    pub fn refresh_metrics(&self) {
        if let Some(ep) = &self.sctp {
            self.metrics.sync_sctp(&ep.counters(), &ep.info());
        }
    }

    /// The `/health` document.
    pub fn health(&self) -> Value {
        json!({
            "status": "ok",
            "uptime_seconds": self.started.elapsed().as_secs(),
            "listeners": self.listeners,
            "kernel": self.recent.status.lock().map(|s| s.clone()).unwrap_or_default(),
            // Of the thread answering; every thread of the runtime has the same.
            "capabilities": crate::privileges::current()
                .map(|(effective, _)| effective.to_string())
                .unwrap_or_else(|e| e.to_string()),
        })
    }
}
