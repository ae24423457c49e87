//! The exporter's life: bind the admin API, find the target, attach the probes to its network
//! namespace and ports, then scan `/proc` again every `rescan` to follow its ports and
//! restarts, until SIGTERM or SIGINT.

use std::{sync::Arc, time::Duration};

use prometheus::Registry;
use sipsctp_agent::{
    correlation::{Exporter, Settings as ExporterSettings},
    kernel::{self, Attaching, EbpfConfig, KernelMetrics, Mode, Recent},
};
use sipsctp_ebpf::Scope;
use tokio::{
    net::TcpListener,
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
};

use crate::{
    admin,
    capture::{CaptureMetrics, CaptureSink},
    config::Config,
    exit, procfs,
    scope::{self, Observed, ScopeError, Target},
    state::{Scan, State},
};

/// Runs until stopped; returns the exit code.
pub async fn run(config: Config) -> u8 {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("sipsctp-exporter: cannot install signal handlers");
        return exit::RUNTIME;
    };
    let listener = match TcpListener::bind(config.admin).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "sipsctp-exporter: cannot start: admin API on {}: {e}",
                config.admin
            );
            return exit::STARTUP;
        }
    };
    let registry = Registry::new();
    let recent = Arc::new(Recent::default());
    let started = KernelMetrics::register(&registry).and_then(|k| {
        State::new(
            config.target.clone(),
            config.admin_token.clone(),
            registry.clone(),
            recent.clone(),
        )
        .map(|s| (Arc::new(k), Arc::new(s)))
    });
    let (kernel_metrics, state) = match started {
        Ok(x) => x,
        Err(e) => {
            eprintln!("sipsctp-exporter: cannot register the metrics: {e}");
            return exit::RUNTIME;
        }
    };
    tokio::spawn(admin::serve(listener, state.clone()));
    tracing::info!(target = %config.target, admin = %config.admin, "sipsctp-exporter started");

    // The target: a pid must exist now; a process name is waited for.
    let ports_filter = config.ports.as_deref();
    let first = loop {
        match scope::scan(&config.target, ports_filter) {
            Ok(o) => break o,
            Err(ScopeError::NotFound(_)) if matches!(config.target, Target::Process(_)) => {
                let why = format!("{}: not running; waiting for it", config.target);
                if state.health()["problem"].as_str() != Some(why.as_str()) {
                    tracing::warn!("{why}");
                }
                state.set_scan(Scan {
                    problem: Some(why),
                    ..Scan::default()
                });
            }
            Err(e) => {
                eprintln!("sipsctp-exporter: cannot start: {e}");
                return exit::STARTUP;
            }
        }
        tokio::select! {
            _ = term.recv() => return exit::OK,
            _ = int.recv() => return exit::OK,
            () = tokio::time::sleep(config.rescan) => {}
        }
    };
    record(&state, &first);
    tracing::info!(
        pids = ?first.pids,
        netns = first.netns,
        ports = ?first.ports,
        "observing"
    );

    let exporter = match Exporter::start(
        ExporterSettings {
            correlate: sipsctp_correlate::Config {
                // Until the probes say they are attached.
                kernel_events: false,
                netns: Some(first.netns),
                ..sipsctp_correlate::Config::default()
            },
            peers: config.peers.clone(),
            otlp: match config.otlp.as_ref().map(|o| {
                sipsctp_agent::otlp::OtlpExporter::start_now(o, "sipsctp-exporter", &registry)
            }) {
                None => None,
                Some(Ok(e)) => Some(e),
                Some(Err(e)) => {
                    eprintln!("sipsctp-exporter: cannot start: OTLP: {e}");
                    return exit::STARTUP;
                }
            },
        },
        &registry,
    ) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("sipsctp-exporter: cannot start: {e}");
            return exit::RUNTIME;
        }
    };
    let ebpf = EbpfConfig {
        mode: Mode::On,
        observe_all: false,
        poll_interval: Duration::from_secs(5),
        attach_timeout: config.attach_timeout,
    };
    let (netns, ports) = (first.netns, first.ports.clone());
    let attaching = Attaching::spawn_with(
        &ebpf,
        move || Ok::<_, sipsctp_ebpf::ProbeError>(Scope::Daemon { netns, ports }),
        config.sip,
        || {},
    );
    let (ports_tx, ports_rx) = watch::channel(first.ports.clone());
    let (fatal_tx, mut fatal) = mpsc::channel(1);
    let eyes = kernel::Settings {
        mode: Mode::On,
        attaching,
        ports: first.ports.clone(),
        poll: ebpf.poll_interval,
        fatal: fatal_tx,
        port_updates: Some(ports_rx),
    };
    let capture_metrics = match CaptureMetrics::register(&registry) {
        Ok(m) => Arc::new(m),
        Err(e) => {
            eprintln!("sipsctp-exporter: cannot register the metrics: {e}");
            return exit::RUNTIME;
        }
    };
    if config.sip {
        tracing::info!(
            "SIP capture on: the first 1024 bytes of each message of the observed associations \
             are read in the kernel ([observe] sip = false turns it off)"
        );
    }
    let _ = state.exporter.set(exporter.handle());
    let sink = CaptureSink::new(exporter.handle(), config.sip, capture_metrics);
    let _eyes = match kernel::start(eyes, kernel_metrics, recent, None, Box::new(sink)).await {
        Ok(task) => task,
        Err(e) => {
            eprintln!("sipsctp-exporter: cannot start: eBPF: {e}");
            return exit::STARTUP;
        }
    };

    let mut last = first;
    let mut tick = tokio::time::interval(config.rescan);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let code = loop {
        tokio::select! {
            _ = term.recv() => break exit::OK,
            _ = int.recv() => break exit::OK,
            Some(why) = fatal.recv() => {
                tracing::error!(reason = %why, "stopping");
                break exit::STARTUP;
            }
            _ = tick.tick() => {
                match scope::scan(&config.target, ports_filter) {
                    Ok(o) => {
                        follow(&last, &o, &ports_tx);
                        record(&state, &o);
                        last = o;
                    }
                    Err(ScopeError::NotFound(_)) if matches!(config.target, Target::Pid(_)) => {
                        tracing::error!(
                            "{}: the observed process exited; use --process NAME to follow a \
                             process across restarts",
                            config.target
                        );
                        break exit::RUNTIME;
                    }
                    Err(e) => {
                        let why = e.to_string();
                        if state.health()["problem"].as_str() != Some(why.as_str()) {
                            tracing::warn!("{why}; the last ports stay observed");
                        }
                        state.set_scan(Scan { problem: Some(why), ..Scan::default() });
                    }
                }
            }
        }
    };
    exporter.shutdown(Duration::from_secs(1)).await;
    tracing::info!("sipsctp-exporter stopped");
    code
}

/// Records a scan and the associations of its processes.
fn record(state: &State, o: &Observed) {
    let assocs = o
        .pids
        .first()
        .and_then(|p| procfs::associations(*p).ok())
        .unwrap_or_default();
    state.set_scan(Scan {
        observed: Some(o.clone()),
        problem: None,
        assocs,
    });
}

/// Says what changed between two scans and hands new ports to the probes.
fn follow(last: &Observed, now: &Observed, ports: &watch::Sender<Vec<u16>>) {
    if now.pids != last.pids {
        tracing::info!(before = ?last.pids, now = ?now.pids, "observed processes changed");
    }
    if now.netns != last.netns {
        tracing::warn!(
            before = last.netns,
            now = now.netns,
            "the observed process is in another network namespace now; the probes stay on \
             the first one: restart sipsctp-exporter to follow it"
        );
    }
    // A process with no SCTP socket yet (restarting, or between close and bind) keeps the
    // ports it had: unobserving them would lose the first associations of the new instance,
    // which binds them again.
    if now.ports != last.ports && !now.ports.is_empty() {
        tracing::info!(before = ?last.ports, now = ?now.ports, "observed SCTP ports changed");
        let _ = ports.send(now.ports.clone());
    }
}
