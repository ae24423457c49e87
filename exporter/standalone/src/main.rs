//! `sipsctp-exporter`: the kernel's view of another process's SCTP associations (Kamailio,
//! OpenSIPS, sipp, any SCTP server) as Prometheus metrics, and its SIP transactions (read from
//! its SCTP messages in the kernel) joined with the kernel events that touched them, as metrics
//! and OTLP traces, with no change to it. See
//! `sipsctp-exporter --help`.

mod admin;
mod caps;
mod capture;
mod config;
mod procfs;
mod run;
mod scope;
mod sip_capture;
mod state;

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;

use crate::config::{Config, Overrides};

/// Exit codes (also in --help).
pub(crate) mod exit {
    pub const OK: u8 = 0;
    pub const RUNTIME: u8 = 1;
    pub const CONFIG: u8 = 3;
    pub const STARTUP: u8 = 4;
}

/// sipsctp-exporter: observes another process's SCTP associations in the kernel (eBPF probes
/// on kernel SCTP, scoped to its network namespace and ports) and serves them as the same
/// sipsctp_kernel_* and sipsctp_peer_* metrics sipsctpd serves for its own; with SIP capture
/// (on by default), also its SIP transactions with kernel_retransmitted and OTLP spans.
///
/// Quick start: sipsctp-exporter --process kamailio   (then: curl 127.0.0.1:9461/metrics)
#[derive(Parser, Debug)]
#[command(
    name = "sipsctp-exporter",
    version,
    after_help = "Needs CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN (the eBPF probes), and to look at \
another user's process, root or CAP_SYS_PTRACE (its /proc/PID/fd and ns/net). The observed \
process is not changed, paused or signalled.\n\n\
Endpoints: GET /metrics, /health, /observed (processes, namespace, ports, associations), \
/kernel/events?limit=N, /transactions/recent?limit=N&kernel=1 (the observed process's SIP \
transactions, read from its SCTP messages in the kernel, with the kernel events that touched \
them).\n\n\
Exit codes: 0 stopped by SIGTERM/SIGINT or valid config; 1 runtime failure (the --pid process \
exited); 2 bad command line; 3 invalid configuration; 4 could not start (a missing \
capability, the admin address, the probes)."
)]
struct Cli {
    /// The configuration file (TOML; see --print-default-config). Optional: the flags below
    /// are enough for a quick start.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Observe this process (its network namespace and SCTP ports).
    #[arg(long, value_name = "PID", conflicts_with = "process")]
    pid: Option<u32>,
    /// Observe every process of this name (as in /proc/PID/comm, e.g. kamailio); a restarted
    /// process is found again.
    #[arg(long, value_name = "NAME")]
    process: Option<String>,
    /// The admin API's address (default 127.0.0.1:9461).
    #[arg(long, value_name = "ADDR:PORT")]
    admin: Option<String>,
    /// Send OTLP traces of the observed SIP transactions to this collector (OTLP/HTTP, e.g.
    /// http://127.0.0.1:4318); the [otlp] section has the other settings.
    #[arg(long, value_name = "URL")]
    otlp: Option<String>,
    /// Validate the configuration and exit (0 = valid, 3 = invalid).
    #[arg(long)]
    check_config: bool,
    /// Print a configuration with every key and its default, then exit.
    #[arg(long)]
    print_default_config: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.print_default_config {
        print!("{}", config::default_config_text());
        return ExitCode::from(exit::OK);
    }
    let over = Overrides {
        pid: cli.pid,
        process: cli.process.clone(),
        admin: cli.admin.clone(),
        otlp: cli.otlp.clone(),
    };
    let config = match Config::load(cli.config.as_deref(), &over) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sipsctp-exporter: invalid configuration: {e}");
            return ExitCode::from(exit::CONFIG);
        }
    };
    if cli.check_config {
        println!("configuration valid: observing {}", config.target);
        return ExitCode::from(exit::OK);
    }
    init_logging(&config);
    let missing = caps::missing(caps::NEEDED);
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|c| c.name).collect();
        eprintln!(
            "sipsctp-exporter: cannot start: missing capabilit{} {} (the eBPF probes need \
             CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN); run it as root or grant them (systemd: \
             AmbientCapabilities=)",
            if names.len() == 1 { "y" } else { "ies" },
            names.join(", ")
        );
        return ExitCode::from(exit::STARTUP);
    }
    // One thread: the work is a pipeline of small steps per message (ring buffer, assembler,
    // correlator); on one thread a hand-off between them is a queue push, where a pool would
    // wake a parked worker (a futex call) per message (with Kamailio at 100 calls/s in the VM:
    // 4.5 CPU s per 10 s on two workers, 3.1 on one thread; the rings drained every 20 ms
    // instead of a wake-up per record brought it to 1.1).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sipsctp-exporter: cannot start the runtime: {e}");
            return ExitCode::from(exit::RUNTIME);
        }
    };
    ExitCode::from(runtime.block_on(run::run(config)))
}

fn init_logging(config: &Config) {
    let level = match config.log_level.as_str() {
        "error" => tracing::Level::ERROR,
        "warn" => tracing::Level::WARN,
        "debug" => tracing::Level::DEBUG,
        "trace" => tracing::Level::TRACE,
        _ => tracing::Level::INFO,
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    if config.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}
