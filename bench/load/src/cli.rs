//! Command line of `sipsctp-load`: the `uac` and `uas` subcommands and every flag, with the
//! help text that explains them.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{msg::Transport, uac::Scenario};

/// SIP load generator for sipsctp: a UAC that offers calls or OPTIONS transactions at
/// open-loop rate steps and measures them, and a UAS that answers them; over SCTP, UDP or
/// TCP.
///
/// Run a `uas` behind the system under test (or directly), then a `uac` against it; the
/// UAC prints a table and writes its results as JSON (`--json`).
#[derive(Debug, Parser)]
#[command(name = "sipsctp-load", version)]
pub struct Cli {
    /// Role.
    #[command(subcommand)]
    pub role: Role,
}

const UAC_AFTER_HELP: &str = "\
Results (stdout table; --json object):
  steps[]: one object per rate step, and totals (all steps): rate, secs, offered,
    started, completed, failed {timeout, status_3xx, status_4xx, status_5xx,
    status_6xx, send_error, bad_response}, failed_total, retransmissions (UDP Timer
    A/E resends), duplicate_responses, late_starts (started >= 10 ms after due),
    max_start_lag_us, achieved_rate (completed per second of the step), latency_us
    {setup: INVITE (or OPTIONS) to 200, transaction: first request to last final
    response} each with count, min, mean, p50, p90, p99, p99_9, max (HDR histogram).
  A transaction belongs to the step it started in; after the run started = completed
    + failed_total. counters: sent, received, unmatched (responses for no open
    transaction), bad_messages, unexpected_requests, not_started.
The run ends when every step is over and every transaction has ended (at most 2 x
--timeout-ms + --hold-ms after the last step).";

/// The two roles.
#[derive(Debug, Subcommand)]
pub enum Role {
    /// Send calls (INVITE/ACK/BYE) or OPTIONS at fixed rates and measure them.
    #[command(after_long_help = UAC_AFTER_HELP)]
    Uac(UacArgs),
    /// Answer calls and OPTIONS (stateless; prints what it received when stopped).
    Uas(UasArgs),
    /// Relay SCTP messages between one client association and an upstream without any SIP
    /// work: the physical limit of an SCTP relay, the system benchmark's baseline.
    Forward(ForwardArgs),
}

/// Flags of the raw forwarder.
#[derive(Debug, Args)]
pub struct ForwardArgs {
    /// Address to listen on for the client (IP:PORT).
    #[arg(long, value_name = "IP:PORT")]
    pub listen: SocketAddr,
    /// Where every client message goes (IP:PORT); what comes back goes to the client heard
    /// from last.
    #[arg(long, value_name = "IP:PORT")]
    pub upstream: SocketAddr,
    /// Stop after this many seconds (default: at SIGINT or SIGTERM).
    #[arg(long, value_name = "S")]
    pub duration_secs: Option<f64>,
    /// Write what it forwarded as JSON to this file ("-" for stdout) when it stops.
    #[arg(long, value_name = "OUT")]
    pub json: Option<PathBuf>,
}

/// How SCTP sockets are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SctpStyle {
    /// One-to-many (SOCK_SEQPACKET, through the project's sipsctp-sctp crate, as tokio-sctp
    /// has no one-to-many type): the UAC opens one socket per connection, each carrying one
    /// association to the target, set up by the kernel with the first INVITE (so
    /// `--connections 1` is a single trunk association); the UAS takes every association
    /// on its one listening socket.
    OneToMany,
    /// One-to-one (SOCK_STREAM, tokio-sctp): one socket per association; the UAC connects
    /// `--connections` associations, the UAS accepts each on its own socket.
    OneToOne,
}

/// Flags shared by both roles.
#[derive(Debug, Args)]
pub struct Common {
    /// Transport: udp (SIP retransmissions on, Timer A/E), tcp (framed by Content-Length)
    /// or sctp (one SIP message per SCTP message; needs kernel SCTP).
    #[arg(long, value_enum, default_value_t = Transport::Udp)]
    pub transport: Transport,
    /// SCTP socket style (only with --transport sctp): one-to-many or one-to-one.
    #[arg(long, value_enum, default_value_t = SctpStyle::OneToMany)]
    pub sctp_style: SctpStyle,
    /// Tokio worker threads (1 or 2 are sensible; the tool does several thousand calls/s
    /// on one).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub workers: u16,
    /// Write the results (UAC: per-step statistics and totals; UAS: counts of what it
    /// received) as JSON to this file ("-" for stdout).
    #[arg(long, value_name = "OUT")]
    pub json: Option<PathBuf>,
    /// No progress lines on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// Flags of the UAC.
#[derive(Debug, Args)]
pub struct UacArgs {
    /// Shared flags.
    #[command(flatten)]
    pub common: Common,
    /// Where to send: the system under test or a UAS (IP:PORT).
    #[arg(long, value_name = "IP:PORT")]
    pub target: SocketAddr,
    /// Local address to bind (IP:PORT). With a port P and several connections, connection
    /// k binds port P+k; port 0 lets the kernel pick. The IP (or, for the wildcard, the
    /// source address of the route to the target) goes into Via, From and Contact.
    /// Default: the wildcard address of the target's family, any port.
    #[arg(long, value_name = "IP:PORT")]
    pub local: Option<SocketAddr>,
    /// What each transaction is: `call` (INVITE -> 100/180/200 -> ACK -> [--hold-ms] ->
    /// BYE -> 200) or `options` (OPTIONS -> 200).
    #[arg(long, value_enum, default_value_t = Scenario::Call)]
    pub scenario: Scenario,
    /// Offered rates in transactions (calls) per second, one per step, comma-separated
    /// (e.g. 500,1000,2000; 0 is a pause). Open loop: transactions start on schedule
    /// whatever is still outstanding.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "100",
        value_name = "R1,R2,.."
    )]
    pub rate: Vec<f64>,
    /// Length of each rate step, seconds.
    #[arg(long, default_value_t = 10.0, value_name = "S")]
    pub step_secs: f64,
    /// Connections: UDP sockets (local ports), TCP connections, or SCTP associations
    /// (one-to-one: sockets; one-to-many: sockets with one association each). Transactions
    /// are spread over them round-robin.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub connections: usize,
    /// Time a transaction waits for its final response before it fails as `timeout`
    /// (RFC 3261 Timer B/F: 64*T1 = 32 s).
    #[arg(long, default_value_t = 32_000, value_name = "MS")]
    pub timeout_ms: u64,
    /// RFC 3261 T1 for UDP retransmissions: INVITE again after T1, 2*T1, 4*T1, ... until a
    /// provisional response; BYE/OPTIONS likewise, capped at T2 = 8*T1. Counted as
    /// `retransmissions`.
    #[arg(long, default_value_t = 500, value_name = "MS")]
    pub t1_ms: u64,
    /// Time between the ACK and the BYE of a call (call duration); 0 sends the BYE at once.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub hold_ms: u64,
    /// Transactions open at once at most; due transactions beyond it are not started
    /// (reported as `not_started`, and `started` falls below `offered`).
    #[arg(long, default_value_t = 500_000, value_name = "N")]
    pub max_outstanding: usize,
    /// User part of the request URI and To (sip:SERVICE@target).
    #[arg(long, default_value = "service")]
    pub service: String,
}

/// Flags of the UAS.
#[derive(Debug, Args)]
pub struct UasArgs {
    /// Shared flags.
    #[command(flatten)]
    pub common: Common,
    /// Address to listen on (IP:PORT; port 0 picks one, printed on stdout as
    /// `listening <transport> <addr>`).
    #[arg(long, value_name = "IP:PORT")]
    pub listen: SocketAddr,
    /// Host:port put into Contact (and the SDP). Default: TCP and one-to-one SCTP: the
    /// local address of each connection; UDP and one-to-many SCTP: the listening address
    /// (127.0.0.1 for the wildcard address).
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise: Option<String>,
    /// Send 180 Ringing (with Contact) between 100 Trying and the final response.
    #[arg(long)]
    pub ringing: bool,
    /// Final status for INVITE (200 with Contact and SDP; any other code without).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u16).range(200..=699))]
    pub invite_status: u16,
    /// Do not answer INVITE at all, not even 100 (the UAC then reports timeouts).
    #[arg(long)]
    pub ignore_invites: bool,
    /// Stop after this many seconds (default: at SIGINT or SIGTERM).
    #[arg(long, value_name = "S")]
    pub duration_secs: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn flags_parse_and_help_is_consistent() {
        Cli::command().debug_assert();
        let c = Cli::try_parse_from([
            "sipsctp-load",
            "uac",
            "--transport",
            "sctp",
            "--sctp-style",
            "one-to-one",
            "--target",
            "10.0.0.2:5060",
            "--rate",
            "100,200.5",
            "--scenario",
            "options",
        ])
        .unwrap();
        let Role::Uac(u) = c.role else { panic!() };
        assert_eq!(u.rate, [100.0, 200.5]);
        assert_eq!(u.common.transport, Transport::Sctp);
        assert_eq!(u.common.sctp_style, SctpStyle::OneToOne);
        assert_eq!(u.scenario, Scenario::Options);
        assert!(
            Cli::try_parse_from(["sipsctp-load", "uas", "--listen", "x"]).is_err(),
            "an address is required"
        );
    }
}
