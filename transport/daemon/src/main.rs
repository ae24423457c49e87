//! `sipsctpd`: a stateless SIP relay between SCTP, UDP and TCP, with Kamailio's sctp parameters
//! and an admin HTTP API. See `sipsctpd --help`.

mod admin;
mod clock;
mod config;
mod daemon;
mod log_limit;
mod metrics;
mod net;
mod privileges;
mod relay;
mod state;

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;

use crate::config::Config;

/// Exit codes (also in --help).
pub(crate) mod exit {
    pub const OK: u8 = 0;
    pub const RUNTIME: u8 = 1;
    pub const CONFIG: u8 = 3;
    pub const STARTUP: u8 = 4;
}

/// sipsctpd: terminates SIP over SCTP and relays it statelessly to UDP, TCP or SCTP upstreams.
#[derive(Parser, Debug)]
#[command(
    name = "sipsctpd",
    version,
    after_help = "Signals: SIGTERM/SIGINT stop accepting, shut SCTP associations down, drain and exit 0; \
SIGHUP reloads routes, [sip] settings but max_message_size, and runtime SCTP parameters from the \
same file (a bad file is refused and the running configuration stays; what needs a restart is \
logged with its key).\n\n\
Exit codes: 0 clean stop or valid config; 1 runtime failure; 2 bad command line; \
3 invalid configuration; 4 could not start (a listener, the admin API, the capability drop, \
the eBPF probes with [ebpf] mode = \"on\", or the eBPF loader past [ebpf] attach_timeout_ms)."
)]
struct Cli {
    /// The configuration file (TOML).
    #[arg(
        long,
        short = 'c',
        value_name = "FILE",
        required_unless_present = "print_default_config"
    )]
    config: Option<PathBuf>,
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
    let Some(path) = cli.config else {
        eprintln!("sipsctpd: --config FILE is required");
        return ExitCode::from(2);
    };
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sipsctpd: invalid configuration: {e}");
            return ExitCode::from(exit::CONFIG);
        }
    };
    if cli.check_config {
        println!("{}: configuration valid", path.display());
        return ExitCode::from(exit::OK);
    }
    init_logging(&config.log);
    // SAFETY: geteuid(2) takes nothing and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if let Some(risk) = root_warning(euid, std::env::var_os("INVOCATION_ID").is_some()) {
        tracing::warn!("{risk}");
    }
    // Still the only thread: start the eBPF loader (it keeps the capabilities until the probes
    // are attached, then exits), then drop them here, before the runtime creates its threads.
    let attaching =
        sipsctp_agent::kernel::Attaching::spawn(&config.ebpf, config.sctp_ports(), || {
            // The sctp module's BTF is read while attaching: have the module loaded.
            if let Err(e) = sipsctp_sctp::SctpSocket::kernel_supports_sctp() {
                tracing::debug!(error = %e, "no SCTP socket could be opened before attaching");
            }
        });
    if let Err(e) = drop_capabilities(&config, attaching.is_some()) {
        tracing::error!(error = %e, "cannot drop capabilities; not starting with them");
        eprintln!(
            "sipsctpd: cannot start: cannot drop capabilities ({e}); sipsctpd does not run with \
             privileges it does not need"
        );
        return ExitCode::from(exit::STARTUP);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sipsctpd: cannot start the runtime: {e}");
            return ExitCode::from(exit::RUNTIME);
        }
    };
    ExitCode::from(runtime.block_on(daemon::run(path, config, attaching)))
}

/// Drops every capability but `CAP_NET_BIND_SERVICE` when a port below 1024 is to be bound
/// (see [`privileges`]); says what it did.
///
/// # Errors
/// The kernel refused (`capget`, `capset`): the caller must not go on with the capabilities.
fn drop_capabilities(config: &Config, loader: bool) -> Result<(), privileges::PrivilegeError> {
    let ports = config
        .listen
        .iter()
        .flat_map(|l| l.addrs.iter().map(|a| a.port()))
        .chain([config.admin.listen.port()]);
    let d = privileges::drop_all_except(privileges::needed(ports))?;
    if d.held.is_empty() {
        tracing::debug!("no capabilities held");
    } else {
        tracing::info!(
            dropped = %d.held.without(d.kept),
            kept = %d.kept,
            bounding_set_reduced = d.bounding_reduced,
            "capabilities dropped{}",
            if loader {
                " (the eBPF loader thread keeps them until the probes are attached, then exits)"
            } else {
                ""
            }
        );
    }
    Ok(())
}

/// What to warn about when the daemon runs as `euid` 0: dropping the capabilities does not
/// change the user, and uid 0 still owns the system's files. `None` for any other user.
fn root_warning(euid: u32, under_systemd: bool) -> Option<String> {
    (euid == 0).then(|| {
        format!(
            "running as uid 0{}: the capabilities are dropped but the user stays root, so a \
             compromised sipsctpd could still write root-owned files (/etc, /usr, /root) and \
             signal or trace root's processes; run it as an unprivileged user with \
             CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN for the probes (as the systemd unit in \
             dist/ does with DynamicUser=yes)",
            if under_systemd {
                " (a systemd unit without User= or DynamicUser=)"
            } else {
                " (started as root, not by systemd)"
            }
        )
    })
}

fn init_logging(log: &config::Log) {
    let level = match log.level.as_str() {
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
    if log.json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_0_is_warned_about_with_its_risk() {
        assert_eq!(root_warning(1000, false), None);
        assert_eq!(root_warning(65_534, true), None);
        let w = root_warning(0, false).unwrap();
        assert!(
            w.starts_with("running as uid 0 (started as root, not by systemd)"),
            "{w}"
        );
        assert!(w.contains("root-owned files"), "{w}");
        assert!(root_warning(0, true).unwrap().contains("DynamicUser"));
    }
}
