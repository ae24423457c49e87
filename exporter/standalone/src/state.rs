//! What the admin API reads: the metrics registry, the recent kernel events, and the last scan
//! of the observed processes with their associations.

use std::sync::{Arc, Mutex};

use prometheus::{Encoder as _, IntGauge, Registry, TextEncoder};
use serde_json::{Value, json};
use sipsctp_agent::kernel::Recent;

use crate::{
    procfs::Association,
    scope::{self, Observed, Target},
};

/// The last scan.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// What was found, if anything.
    pub observed: Option<Observed>,
    /// Why nothing, if nothing.
    pub problem: Option<String>,
    /// The associations of the observed sockets (`/proc/PID/net/sctp/assocs`).
    pub assocs: Vec<Association>,
}

/// Shared by the scanner, the kernel eyes and the admin API.
pub struct State {
    /// What is observed.
    pub target: Target,
    /// The admin API's bearer token.
    pub token: Option<String>,
    /// Every metric.
    pub registry: Registry,
    /// Recent kernel events.
    pub recent: Arc<Recent>,
    scan: Mutex<Scan>,
    /// The correlator, once started (its recent joined transactions).
    pub exporter: std::sync::OnceLock<sipsctp_agent::correlation::ExporterHandle>,
    opened: IntGauge,
    processes: IntGauge,
    ports: IntGauge,
}

impl State {
    /// Registers the scan's gauges in `registry`.
    ///
    /// # Errors
    /// A name registered twice (a programming error).
    pub fn new(
        target: Target,
        token: Option<String>,
        registry: Registry,
        recent: Arc<Recent>,
    ) -> prometheus::Result<State> {
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok::<_, prometheus::Error>(g)
        };
        // The name sipsctpd gives its own (Kamailio's sctp.info opened_connections), so that
        // the dashboards show either.
        let opened = gauge(
            "sipsctp_sctp_current_opened_connections",
            "SCTP associations of the observed processes' sockets now (/proc/net/sctp/assocs)",
        )?;
        let processes = gauge(
            "sipsctp_exporter_observed_processes",
            "Processes observed now (0: the target is not running)",
        )?;
        let ports = gauge(
            "sipsctp_exporter_observed_ports",
            "Local SCTP ports of the observed processes whose associations the probes report",
        )?;
        Ok(State {
            target,
            token,
            registry,
            recent,
            scan: Mutex::new(Scan::default()),
            exporter: std::sync::OnceLock::new(),
            opened,
            processes,
            ports,
        })
    }

    /// Records a scan.
    pub fn set_scan(&self, scan: Scan) {
        let n = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        let o = scan.observed.as_ref();
        self.processes.set(n(o.map_or(0, |o| o.pids.len())));
        self.ports.set(n(o.map_or(0, |o| o.ports.len())));
        let opened = o.map_or(0, |o| scope::associations_of(&scan.assocs, o).count());
        self.opened.set(n(opened));
        *self.scan.lock().unwrap_or_else(|p| p.into_inner()) = scan;
    }

    /// The Prometheus text of every metric.
    pub fn render_metrics(&self) -> String {
        let mut buf = Vec::new();
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    /// `/health`: whether the target is observed, and how the kernel is seen.
    pub fn health(&self) -> Value {
        let scan = self.scan.lock().unwrap_or_else(|p| p.into_inner());
        let kernel = self
            .recent
            .status
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        json!({
            "status": if scan.observed.is_some() && kernel == "ebpf" { "ok" } else { "degraded" },
            "target": self.target.to_string(),
            "observed": scan.observed.is_some(),
            "problem": scan.problem,
            "kernel": kernel,
        })
    }

    /// `/observed`: the processes, namespace, ports and associations in scope.
    pub fn observed_json(&self) -> Value {
        let scan = self.scan.lock().unwrap_or_else(|p| p.into_inner());
        let Some(o) = &scan.observed else {
            return json!({ "target": self.target.to_string(), "observed": null, "problem": scan.problem });
        };
        let assocs: Vec<Value> = scope::associations_of(&scan.assocs, o)
            .map(|a| {
                json!({
                    "assoc_id": a.assoc_id,
                    "local_port": a.local_port,
                    "peer_port": a.peer_port,
                    "peers": a.peers.iter().map(ToString::to_string).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "target": self.target.to_string(),
            "observed": {
                "pids": o.pids,
                "netns": o.netns,
                "ports": o.ports,
                "associations": assocs,
            },
        })
    }
}
