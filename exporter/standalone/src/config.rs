//! sipsctp-exporter's configuration: a TOML file (`--config`), command-line flags over it,
//! every key checked with a message naming it ([`ConfigError`]).

use std::{net::SocketAddr, path::Path, time::Duration};

use serde::Deserialize;
use sipsctp_agent::{
    peers::PeerNames,
    sections::{self, PeerSection},
};

use crate::scope::Target;

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The process(es) observed.
    pub target: Target,
    /// Only associations on these local ports (`None`: every SCTP port of the target).
    pub ports: Option<Vec<u16>>,
    /// Peer names (`[[peer]]`).
    pub peers: PeerNames,
    /// The admin API's address.
    pub admin: SocketAddr,
    /// Bearer token for the admin API (required beyond loopback).
    pub admin_token: Option<String>,
    /// How long the probes may take to attach.
    pub attach_timeout: Duration,
    /// How often `/proc` is scanned again for the target's processes and ports.
    pub rescan: Duration,
    /// `[observe] sip`: read SIP from the observed associations (message capture).
    pub sip: bool,
    /// `[otlp]` (or `--otlp`): where spans go, if anywhere.
    pub otlp: Option<sipsctp_agent::otlp::OtlpConfig>,
    /// `[log] level`.
    pub log_level: String,
    /// `[log] json`.
    pub log_json: bool,
}

/// What is wrong with the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A value is refused.
    #[error("{key}: {message}")]
    Invalid {
        /// The key.
        key: String,
        /// Why.
        message: String,
    },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    observe: RawObserve,
    #[serde(default)]
    peer: Vec<PeerSection>,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    ebpf: RawEbpf,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    otlp: sections::OtlpSection,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawObserve {
    pid: Option<u32>,
    process: Option<String>,
    ports: Option<Vec<u16>>,
    sip: Option<bool>,
    rescan_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Option<String>,
    token: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEbpf {
    attach_timeout_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<String>,
    json: Option<bool>,
}

/// What the command line sets over the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--pid`.
    pub pid: Option<u32>,
    /// `--process`.
    pub process: Option<String>,
    /// `--admin`.
    pub admin: Option<String>,
    /// `--otlp`: the collector's endpoint.
    pub otlp: Option<String>,
}

/// The default admin address.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9461";

impl Config {
    /// Reads `path` (if any) and applies `over`.
    ///
    /// # Errors
    /// The file cannot be read or parsed, or a value is refused.
    pub fn load(path: Option<&Path>, over: &Overrides) -> Result<Config, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.display().to_string(),
                source,
            })?,
            None => String::new(),
        };
        let name = path.map_or("(command line)".to_owned(), |p| p.display().to_string());
        Self::parse(&text, &name, over)
    }

    /// Parses `text` (from `name`) and applies `over`.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn parse(text: &str, name: &str, over: &Overrides) -> Result<Config, ConfigError> {
        let raw: Raw = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: name.to_owned(),
            message: e.to_string(),
        })?;
        let mut otlp_section = raw.otlp.clone();
        if let Some(e) = &over.otlp {
            otlp_section.endpoint = Some(e.clone());
        }
        let otlp = otlp_section
            .check()
            .map_err(|e| invalid(e.key, e.message))?;
        let sip = raw.observe.sip.unwrap_or(true);
        if otlp.is_some() && !sip {
            return Err(invalid(
                "otlp",
                "OTLP traces are spans of SIP transactions: they need [observe] sip = true",
            ));
        }
        let pid = over.pid.or(if over.process.is_some() {
            None
        } else {
            raw.observe.pid
        });
        let process = over.process.clone().or(if over.pid.is_some() {
            None
        } else {
            raw.observe.process
        });
        let target = match (pid, process) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "observe",
                    "pid and process both set: observe one process (pid) or every process of a \
                     name (process)",
                ));
            }
            (Some(0), None) => return Err(invalid("observe.pid", "must be a process id (> 0)")),
            (Some(p), None) => Target::Pid(p),
            (None, Some(n)) if n.is_empty() || n.contains('/') => {
                return Err(invalid(
                    "observe.process",
                    format!("`{n}` is not a process name (as in /proc/PID/comm)"),
                ));
            }
            (None, Some(n)) => Target::Process(n),
            (None, None) => {
                return Err(invalid(
                    "observe",
                    "nothing to observe: give --pid PID or --process NAME (or [observe] pid / \
                     process in the file)",
                ));
            }
        };
        if let Some(ports) = &raw.observe.ports
            && (ports.is_empty() || ports.contains(&0))
        {
            return Err(invalid(
                "observe.ports",
                "list the local SCTP ports to observe (1..=65535), or leave the key out for all \
                 of the process's",
            ));
        }
        let rescan_ms = raw.observe.rescan_ms.unwrap_or(2000);
        if !(200..=60_000).contains(&rescan_ms) {
            return Err(invalid("observe.rescan_ms", "must be 200 ..= 60000"));
        }
        let peers = sections::peers(&raw.peer).map_err(|e| invalid(e.key, e.message))?;
        let peers = sections::peer_names([], &peers).map_err(|e| invalid("peer", e.to_string()))?;
        let admin_text = over
            .admin
            .clone()
            .or(raw.admin.listen)
            .unwrap_or_else(|| DEFAULT_ADMIN.to_owned());
        let admin: SocketAddr = admin_text.parse().map_err(|_| {
            invalid(
                "admin.listen",
                format!("`{admin_text}` is not an address:port"),
            )
        })?;
        let admin_token = raw.admin.token.filter(|t| !t.is_empty());
        if !admin.ip().is_loopback() && admin_token.is_none() {
            return Err(invalid(
                "admin.token",
                format!(
                    "required when the admin API listens beyond loopback ({admin}): /metrics \
                     and /observed show peer addresses"
                ),
            ));
        }
        let attach_ms = raw.ebpf.attach_timeout_ms.unwrap_or(60_000);
        if !(100..=600_000).contains(&attach_ms) {
            return Err(invalid("ebpf.attach_timeout_ms", "must be 100 ..= 600000"));
        }
        let log_level = raw.log.level.unwrap_or_else(|| "info".to_owned());
        if !["error", "warn", "info", "debug", "trace"].contains(&log_level.as_str()) {
            return Err(invalid(
                "log.level",
                format!("`{log_level}`: error, warn, info, debug or trace"),
            ));
        }
        Ok(Config {
            target,
            ports: raw.observe.ports,
            peers,
            admin,
            admin_token,
            attach_timeout: Duration::from_millis(attach_ms),
            rescan: Duration::from_millis(rescan_ms),
            sip,
            otlp,
            log_level,
            log_json: raw.log.json.unwrap_or(false),
        })
    }
}

/// What `--print-default-config` prints: every key, commented values are defaults.
pub fn default_config_text() -> &'static str {
    "# sipsctp-exporter configuration (TOML). Commented values are defaults.\n\
     \n\
     # What to observe: one process (pid) or every process of a name (process, as in\n\
     # /proc/PID/comm, e.g. \"kamailio\"; a restarted process is found again). Its network\n\
     # namespace and the local ports of its SCTP sockets are found in /proc and followed.\n\
     [observe]\n\
     # pid = 1234\n\
     process = \"kamailio\"\n\
     # ports = [5060]        # only associations on these local ports (default: all of its)\n\
     # rescan_ms = 2000      # how often /proc is looked at again\n\
     # sip = true            # read SIP from its associations in the kernel (the first 1024\n\
     #                       # bytes of each message; From, To and bodies are never exported)\n\
     \n\
     # Named peers: the `peer` label of the sipsctp_peer_* metrics (at most 64 names;\n\
     # other addresses are \"other\").\n\
     # [[peer]]\n\
     # name = \"carrier-a\"\n\
     # addresses = [\"192.0.2.10\", \"192.0.2.11\"]\n\
     \n\
     # The HTTP API: /metrics, /health, /observed, /kernel/events?limit=N,\n\
     # /transactions/recent?limit=N&kernel=1 (SIP transactions with their kernel events).\n\
     [admin]\n\
     # listen = \"127.0.0.1:9461\"\n\
     # token = \"...\"         # Bearer token; required when listen is not loopback\n\
     \n\
     [ebpf]\n\
     # attach_timeout_ms = 60000\n\
     \n\
     [log]\n\
     # level = \"info\"        # error, warn, info, debug, trace\n\
     # json = false\n\
     \n\
     # OTLP traces of the observed process's SIP transactions (needs sip = true): a SERVER\n\
     # span per transaction received, a CLIENT span per leg sent on, with the kernel's SCTP\n\
     # events on them. No endpoint = no export. Transactions the kernel touched, errors,\n\
     # timeouts and slow ones are always kept, the rest by sampling_ratio.\n\
     [otlp]\n\
     # endpoint = \"http://127.0.0.1:4318\"   # OTLP/HTTP (protobuf); absent = no export\n\
     # protocol = \"http\"                    # or \"grpc\" (e.g. http://127.0.0.1:4317)\n\
     # sampling_ratio = 0.01\n\
     # max_spans_per_second = 200\n\
     # slow_threshold_ms = 1000\n\
     # call_id = true                         # sip.call_id on spans\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "t.toml", &Overrides::default())
    }

    fn key(e: ConfigError) -> String {
        match e {
            ConfigError::Invalid { key, .. } => key,
            other => panic!("expected an invalid key, got {other}"),
        }
    }

    #[test]
    fn the_default_file_is_accepted() {
        let c = parse(default_config_text()).unwrap();
        assert_eq!(c.target, Target::Process("kamailio".into()));
        assert_eq!(c.admin.to_string(), DEFAULT_ADMIN);
        assert_eq!(c.ports, None);
        assert_eq!(c.rescan, Duration::from_secs(2));
    }

    #[test]
    fn the_command_line_wins_and_one_target_is_required() {
        let over = Overrides {
            pid: Some(42),
            admin: Some("127.0.0.1:9999".into()),
            ..Overrides::default()
        };
        let c = Config::parse("[observe]\nprocess = \"kamailio\"\n", "t", &over).unwrap();
        assert_eq!(c.target, Target::Pid(42));
        assert_eq!(c.admin.port(), 9999);
        assert_eq!(key(parse("").unwrap_err()), "observe");
        assert_eq!(
            key(parse("[observe]\npid = 1\nprocess = \"x\"\n").unwrap_err()),
            "observe"
        );
        assert_eq!(
            key(parse("[observe]\npid = 0\n").unwrap_err()),
            "observe.pid"
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let base = "[observe]\npid = 7\n";
        for (extra, want) in [
            ("ports = []\n", "observe.ports"),
            ("ports = [0]\n", "observe.ports"),
            ("rescan_ms = 5\n", "observe.rescan_ms"),
            ("[admin]\nlisten = \"nowhere\"\n", "admin.listen"),
            ("[admin]\nlisten = \"0.0.0.0:9461\"\n", "admin.token"),
            ("[ebpf]\nattach_timeout_ms = 1\n", "ebpf.attach_timeout_ms"),
            ("[log]\nlevel = \"loud\"\n", "log.level"),
            (
                "sip = false\n[otlp]\nendpoint = \"http://127.0.0.1:4318\"\n",
                "otlp",
            ),
            ("[otlp]\nsampling_ratio = 2.0\n", "otlp.sampling_ratio"),
            (
                "[[peer]]\nname = \"a\"\naddresses = [\"x\"]\n",
                "peer[0].addresses",
            ),
            ("[[peer]]\nname = \"a b\"\naddresses = []\n", "peer"),
        ] {
            assert_eq!(
                key(parse(&format!("{base}{extra}")).unwrap_err()),
                want,
                "{extra}"
            );
        }
        assert!(matches!(
            parse("[observe]\npid = 7\nbogus = 1\n").unwrap_err(),
            ConfigError::Parse { .. }
        ));
        let c = parse("[observe]\npid = 7\n[admin]\nlisten = \"0.0.0.0:9461\"\ntoken = \"s\"\n")
            .unwrap();
        assert_eq!(c.admin_token.as_deref(), Some("s"));
        assert!(c.sip, "SIP capture is on by default");
        assert!(!parse("[observe]\npid = 7\nsip = false\n").unwrap().sip);
    }
}
