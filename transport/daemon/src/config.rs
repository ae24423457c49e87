//! The daemon's configuration file (TOML): parsed and validated once into typed values.
//! Unknown keys and bad values are errors that name the key (and, from the TOML parser, the
//! line). No IO here beyond reading the file.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    path::Path,
    str::FromStr,
    time::Duration,
};

use serde::Deserialize;
use sipsctp_sctp::params::{Param, SctpParams};

/// A transport protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// SIP over SCTP (RFC 4168).
    Sctp,
    /// SIP over UDP.
    Udp,
    /// SIP over TCP.
    Tcp,
}

impl Proto {
    /// Lower-case name, as in the config and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Sctp => "sctp",
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
        }
    }
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An upstream (`udp:127.0.0.1:5080`, `sctp:[::1]:5062`, `tcp:10.0.0.1:5060`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// Transport towards it.
    pub proto: Proto,
    /// Its address (an IP literal: the relay does no DNS).
    pub addr: SocketAddr,
}

impl FromStr for Upstream {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (proto, addr) = s.split_once(':').ok_or_else(|| {
            format!("`{s}`: expected PROTO:ADDRESS:PORT, e.g. udp:127.0.0.1:5080")
        })?;
        let proto = match proto {
            "sctp" => Proto::Sctp,
            "udp" => Proto::Udp,
            "tcp" => Proto::Tcp,
            other => {
                return Err(format!(
                    "`{s}`: unknown transport `{other}` (sctp, udp or tcp)"
                ));
            }
        };
        let addr = addr.parse::<SocketAddr>().map_err(|_| {
            format!("`{s}`: `{addr}` is not IP:PORT (IPv6 in brackets: [::1]:5060)")
        })?;
        Ok(Upstream { proto, addr })
    }
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.proto, self.addr)
    }
}

/// One listener: a transport on one or more addresses (several = SCTP multi-homing) and a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listen {
    /// Transport.
    pub proto: Proto,
    /// Addresses with the port.
    pub addrs: Vec<SocketAddr>,
}

/// A route: requests whose request-URI host is `domain` (or every request, for the default
/// route without a domain) go to `upstream`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The upstream's name: the `peer` label of its metrics and spans.
    pub name: Option<String>,
    /// The request-URI host to match; `None` = the default route.
    pub domain: Option<String>,
    /// Where matching requests go.
    pub upstream: Upstream,
}

/// The admin HTTP API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admin {
    /// Where it listens.
    pub listen: SocketAddr,
    /// Bearer token (required when `listen` is not a loopback address); when set, every
    /// endpoint but `GET /health` needs it.
    pub token: Option<String>,
}

/// Log settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Log {
    /// error, warn, info, debug or trace.
    pub level: String,
    /// text or json.
    pub json: bool,
}

/// SIP handling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sip {
    /// Insert Record-Route in forwarded requests.
    pub record_route: bool,
    /// Largest SIP message accepted, bytes (over it: a counted drop).
    pub max_message_size: usize,
    /// Transactions tracked at once (for latency and outcome; over it: counted).
    pub transaction_capacity: usize,
    /// When an unanswered transaction is given up (64*T1 = 32 s).
    pub transaction_timeout: Duration,
    /// The path MTU toward UDP destinations (RFC 3261 section 18.1.1): a request larger than
    /// `udp_mtu - 200` bytes is not sent over UDP. 0 = no limit (Kamailio's default).
    pub udp_mtu: usize,
    /// Such a request goes over TCP to the same address instead (needs a TCP listener);
    /// without it, it is dropped (`too_large`).
    pub udp_large_to_tcp: bool,
}

/// TCP connections (`[tcp]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tcp {
    /// Connections at once, accepted and opened.
    pub max_connections: usize,
    /// Accepted connections at once from one IP address (IPv6: one /64).
    pub max_connections_per_ip: usize,
    /// A connection without a complete message or keep-alive (either way) this long is
    /// closed (Kamailio's `tcp_connection_lifetime`).
    pub idle_timeout: Duration,
    /// A message not complete this long after its first byte closes the connection
    /// (Kamailio's `tcp_msg_read_timeout`).
    pub message_timeout: Duration,
}

/// The kernel eyes (`[ebpf]`).
pub type Ebpf = sipsctp_agent::kernel::EbpfConfig;

/// The whole, validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Listeners, in file order.
    pub listen: Vec<Listen>,
    /// Routes; at most one without a domain.
    pub routes: Vec<Route>,
    /// The `[sctp]` values that were set (Kamailio's names).
    pub sctp: Vec<(Param, i64)>,
    /// Admin API.
    pub admin: Admin,
    /// Logging.
    pub log: Log,
    /// SIP settings.
    pub sip: Sip,
    /// TCP connections.
    pub tcp: Tcp,
    /// Kernel eyes.
    pub ebpf: Ebpf,
    /// Named peers (`[[peer]]`), besides the named routes.
    pub peers: Vec<Peer>,
    /// OTLP trace export (`[otlp]` with an `endpoint`); `None`: no export.
    pub otlp: Option<sipsctp_agent::otlp::OtlpConfig>,
}

/// A named peer (`[[peer]]`): a caller's trunk, or further addresses of a multi-homed
/// upstream.
pub use sipsctp_agent::sections::Peer;

/// A configuration error, naming what is wrong and where.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax, unknown key or wrong type (the parser's message names key and line).
    #[error("{0}")]
    Toml(String),
    /// A value that parses but is not acceptable.
    #[error("{key}: {message}")]
    Invalid {
        /// The key, e.g. `listen[1].addresses` or `sctp.sctp_srto_min`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    listen: Vec<RawListen>,
    #[serde(default)]
    route: Vec<RawRoute>,
    #[serde(default)]
    sctp: BTreeMap<String, i64>,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    sip: RawSip,
    #[serde(default)]
    tcp: RawTcp,
    #[serde(default)]
    ebpf: RawEbpf,
    #[serde(default)]
    peer: Vec<sipsctp_agent::sections::PeerSection>,
    #[serde(default)]
    otlp: sipsctp_agent::sections::OtlpSection,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEbpf {
    mode: Option<sipsctp_agent::kernel::Mode>,
    observe_all: Option<bool>,
    poll_interval_ms: Option<u64>,
    attach_timeout_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    proto: Proto,
    addresses: Vec<String>,
    port: u16,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: Option<String>,
    domain: Option<String>,
    upstream: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Option<String>,
    token: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<String>,
    format: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSip {
    record_route: Option<bool>,
    max_message_size: Option<usize>,
    transaction_capacity: Option<usize>,
    transaction_timeout_ms: Option<u64>,
    udp_mtu: Option<usize>,
    udp_large_to_tcp: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTcp {
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    idle_timeout_ms: Option<u64>,
    message_timeout_ms: Option<u64>,
}

/// The default admin address.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9460";

impl Config {
    /// The ports of the SCTP listeners, as configured (0 = any).
    pub fn sctp_ports(&self) -> Vec<u16> {
        self.listen
            .iter()
            .filter(|l| l.proto == Proto::Sctp)
            .flat_map(|l| l.addrs.iter().map(SocketAddr::port))
            .collect()
    }

    /// Reads and validates `path`.
    ///
    /// # Errors
    /// [`ConfigError`], naming the file, key and rule.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&text).map_err(|e| match e {
            ConfigError::Toml(m) => ConfigError::Toml(format!("{}: {m}", path.display())),
            ConfigError::Invalid { key, message } => ConfigError::Invalid {
                key: format!("{}: {key}", path.display()),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates a configuration text.
    ///
    /// # Errors
    /// [`ConfigError`].
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Toml(e.to_string()))?;
        if raw.listen.is_empty() {
            return Err(invalid("listen", "at least one [[listen]] is needed"));
        }
        let mut listen = Vec::new();
        for (i, l) in raw.listen.iter().enumerate() {
            let key = format!("listen[{i}].addresses");
            if l.addresses.is_empty() {
                return Err(invalid(key, "at least one address is needed"));
            }
            if l.addresses.len() > 1 && l.proto != Proto::Sctp {
                return Err(invalid(
                    key,
                    "several addresses (multi-homing) need proto = \"sctp\"",
                ));
            }
            let mut addrs = Vec::new();
            for a in &l.addresses {
                let ip: IpAddr = a
                    .parse()
                    .map_err(|_| invalid(&key, format!("`{a}` is not an IP address")))?;
                addrs.push(SocketAddr::new(ip, l.port));
            }
            listen.push(Listen {
                proto: l.proto,
                addrs,
            });
        }
        let mut routes = Vec::new();
        for (i, r) in raw.route.iter().enumerate() {
            let upstream = r
                .upstream
                .parse::<Upstream>()
                .map_err(|m| invalid(format!("route[{i}].upstream"), m))?;
            if !listen.iter().any(|l| l.proto == upstream.proto) {
                return Err(invalid(
                    format!("route[{i}].upstream"),
                    format!(
                        "no [[listen]] with proto = \"{}\" to send from",
                        upstream.proto
                    ),
                ));
            }
            let domain = r.domain.as_ref().map(|d| d.trim().to_ascii_lowercase());
            if domain.as_deref() == Some("") {
                return Err(invalid(format!("route[{i}].domain"), "empty domain"));
            }
            routes.push(Route {
                name: r.name.clone(),
                domain,
                upstream,
            });
        }
        if routes.iter().filter(|r| r.domain.is_none()).count() > 1 {
            return Err(invalid(
                "route",
                "more than one default route (route without domain)",
            ));
        }
        let mut sctp = Vec::new();
        let mut params = SctpParams::default();
        for (name, value) in &raw.sctp {
            let param = Param::ALL
                .into_iter()
                .find(|p| p.name() == name)
                .ok_or_else(|| {
                    invalid(
                        format!("sctp.{name}"),
                        "unknown parameter (Kamailio's names: sctp_socket_rcvbuf, sctp_autoclose, ... sctp_max_burst; see --print-default-config)",
                    )
                })?;
            params
                .set(param, *value)
                .map_err(|e| invalid(format!("sctp.{name}"), e.to_string()))?;
            sctp.push((param, *value));
        }
        // Cross-checks against the defaults; repeated at start against the OS's values.
        params
            .validate()
            .map_err(|e| invalid("sctp", e.to_string()))?;

        let admin_listen = raw.admin.listen.as_deref().unwrap_or(DEFAULT_ADMIN);
        let admin_listen: SocketAddr = admin_listen
            .parse()
            .map_err(|_| invalid("admin.listen", format!("`{admin_listen}` is not IP:PORT")))?;
        if !admin_listen.ip().is_loopback() && raw.admin.token.as_deref().unwrap_or("").is_empty() {
            return Err(invalid(
                "admin.token",
                "the admin API listens beyond loopback: set a token (writes need `Authorization: Bearer <token>`)",
            ));
        }
        let level = raw.log.level.unwrap_or_else(|| "info".into());
        if !["error", "warn", "info", "debug", "trace"].contains(&level.as_str()) {
            return Err(invalid(
                "log.level",
                format!("`{level}`: error, warn, info, debug or trace"),
            ));
        }
        let json = match raw.log.format.as_deref().unwrap_or("text") {
            "text" => false,
            "json" => true,
            other => return Err(invalid("log.format", format!("`{other}`: text or json"))),
        };
        let max_message_size = raw.sip.max_message_size.unwrap_or(65_535);
        if !(1024..=1 << 20).contains(&max_message_size) {
            return Err(invalid("sip.max_message_size", "must be 1024 ..= 1048576"));
        }
        let transaction_capacity = raw.sip.transaction_capacity.unwrap_or(100_000);
        if transaction_capacity == 0 {
            return Err(invalid("sip.transaction_capacity", "must be above 0"));
        }
        let timeout_ms = raw.sip.transaction_timeout_ms.unwrap_or(32_000);
        if !(1000..=300_000).contains(&timeout_ms) {
            return Err(invalid(
                "sip.transaction_timeout_ms",
                "must be 1000 ..= 300000",
            ));
        }
        let udp_mtu = raw.sip.udp_mtu.unwrap_or(0);
        if udp_mtu != 0 && !(576..=65_535).contains(&udp_mtu) {
            return Err(invalid(
                "sip.udp_mtu",
                "must be 0 (no limit) or 576 ..= 65535",
            ));
        }
        let udp_large_to_tcp = raw.sip.udp_large_to_tcp.unwrap_or(false);
        if udp_large_to_tcp && udp_mtu == 0 {
            return Err(invalid(
                "sip.udp_large_to_tcp",
                "needs sip.udp_mtu (requests over udp_mtu - 200 bytes go over TCP)",
            ));
        }
        if udp_large_to_tcp && !listen.iter().any(|l| l.proto == Proto::Tcp) {
            return Err(invalid(
                "sip.udp_large_to_tcp",
                "no [[listen]] with proto = \"tcp\" to send from",
            ));
        }
        let tcp = Tcp {
            max_connections: raw.tcp.max_connections.unwrap_or(2048),
            max_connections_per_ip: raw.tcp.max_connections_per_ip.unwrap_or(64),
            idle_timeout: Duration::from_millis(raw.tcp.idle_timeout_ms.unwrap_or(300_000)),
            message_timeout: Duration::from_millis(raw.tcp.message_timeout_ms.unwrap_or(30_000)),
        };
        if !(1..=1_000_000).contains(&tcp.max_connections) {
            return Err(invalid("tcp.max_connections", "must be 1 ..= 1000000"));
        }
        if !(1..=tcp.max_connections).contains(&tcp.max_connections_per_ip) {
            return Err(invalid(
                "tcp.max_connections_per_ip",
                format!(
                    "must be 1 ..= tcp.max_connections ({})",
                    tcp.max_connections
                ),
            ));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(86_400)).contains(&tcp.idle_timeout) {
            return Err(invalid("tcp.idle_timeout_ms", "must be 1000 ..= 86400000"));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&tcp.message_timeout) {
            return Err(invalid(
                "tcp.message_timeout_ms",
                "must be 1000 ..= 3600000",
            ));
        }
        let poll_ms = raw.ebpf.poll_interval_ms.unwrap_or(5000);
        if !(100..=600_000).contains(&poll_ms) {
            return Err(invalid("ebpf.poll_interval_ms", "must be 100 ..= 600000"));
        }
        let attach_ms = raw.ebpf.attach_timeout_ms.unwrap_or(60_000);
        if !(100..=600_000).contains(&attach_ms) {
            return Err(invalid("ebpf.attach_timeout_ms", "must be 100 ..= 600000"));
        }
        let peers = sipsctp_agent::sections::peers(&raw.peer).map_err(section)?;
        peer_names(&routes, &peers).map_err(|e| invalid("peer", e.to_string()))?;
        let otlp = raw.otlp.check().map_err(section)?;
        Ok(Config {
            otlp,
            peers,
            ebpf: Ebpf {
                mode: raw.ebpf.mode.unwrap_or(sipsctp_agent::kernel::Mode::Auto),
                observe_all: raw.ebpf.observe_all.unwrap_or(false),
                poll_interval: Duration::from_millis(poll_ms),
                attach_timeout: Duration::from_millis(attach_ms),
            },
            listen,
            routes,
            sctp,
            admin: Admin {
                listen: admin_listen,
                token: raw.admin.token.filter(|t| !t.is_empty()),
            },
            log: Log { level, json },
            sip: Sip {
                record_route: raw.sip.record_route.unwrap_or(false),
                max_message_size,
                transaction_capacity,
                transaction_timeout: Duration::from_millis(timeout_ms),
                udp_mtu,
                udp_large_to_tcp,
            },
            tcp,
        })
    }
}

/// A shared section's refusal as this file's error.
fn section(e: sipsctp_agent::sections::SectionError) -> ConfigError {
    invalid(e.key, e.message)
}

/// The peer names of routes and `[[peer]]` entries.
///
/// # Errors
/// Too many names, a bad name, or an address with two names.
pub fn peer_names(
    routes: &[Route],
    peers: &[Peer],
) -> Result<sipsctp_agent::peers::PeerNames, sipsctp_agent::peers::PeerError> {
    let from_routes = routes
        .iter()
        .filter_map(|r| r.name.clone().map(|n| (n, vec![r.upstream.addr.ip()])));
    sipsctp_agent::sections::peer_names(from_routes, peers)
}

impl Config {
    /// The peer names (validated by [`Config::parse`]).
    pub fn peer_names(&self) -> sipsctp_agent::peers::PeerNames {
        peer_names(&self.routes, &self.peers).unwrap_or_default()
    }
}

/// The configuration `--print-default-config` prints: every key with its default, the 19 sctp
/// parameters commented out with their documentation.
pub fn default_config_text() -> String {
    let mut s = String::from(
        "# sipsctpd configuration (TOML). Every key is shown; commented values are defaults.\n\
         \n\
         # Listeners: proto = sctp | udp | tcp; several addresses = SCTP multi-homing.\n\
         [[listen]]\n\
         proto = \"sctp\"\n\
         addresses = [\"127.0.0.1\"]\n\
         port = 5060\n\
         \n\
         [[listen]]\n\
         proto = \"udp\"\n\
         addresses = [\"127.0.0.1\"]\n\
         port = 5060\n\
         \n\
         # Routes: requests go to the route whose domain equals the request-URI host, else to the\n\
         # default route (the one without domain). Upstreams are PROTO:IP:PORT (no DNS).\n\
         # A route's name is the `peer` label of its upstream's metrics and spans.\n\
         [[route]]\n\
         upstream = \"udp:127.0.0.1:5080\"\n\
         \n\
         # [[route]]\n\
         # name = \"carrier-a\"\n\
         # domain = \"example.net\"\n\
         # upstream = \"sctp:[::1]:5062\"\n\
         \n\
         # Named peers (callers' trunks, a multi-homed upstream's other addresses): their\n\
         # name labels metrics and spans; every other address is \"other\". At most 64 names.\n\
         # [[peer]]\n\
         # name = \"pbx-1\"\n\
         # addresses = [\"192.0.2.10\", \"2001:db8::10\"]\n\
         \n\
         # Kamailio's sctp module parameters (same names); absent = default (the OS's value\n\
         # where Kamailio reads the OS). Runtime changes: PUT /cfg/sctp/<name> on the admin API.\n\
         [sctp]\n",
    );
    for p in Param::ALL {
        let spec = p.spec();
        let default = if spec.from_os {
            "OS default".to_owned()
        } else {
            spec.default.to_string()
        };
        s.push_str(&format!(
            "# {} = {}    # {:?}, {}..={}; {}\n",
            spec.name, default, spec.unit, spec.min, spec.max, spec.doc
        ));
    }
    s.push_str(
        "\n[sip]\n\
         # record_route = false\n\
         # max_message_size = 65535\n\
         # transaction_capacity = 100000\n\
         # transaction_timeout_ms = 32000\n\
         # RFC 3261 18.1.1: a request over udp_mtu - 200 bytes is not sent over UDP: it goes\n\
         # over TCP to the same address with udp_large_to_tcp = true (needs a tcp listener),\n\
         # else it is dropped, counted as reason=\"too_large\". 0 = no limit.\n\
         # udp_mtu = 0\n\
         # udp_large_to_tcp = false\n\
         \n\
         # TCP connections: a cap in total and per peer address (IPv6: per /64; over it a new\n\
         # connection is closed at once), and when an idle connection or a message that does\n\
         # not complete closes its connection. RFC 5626 CRLF keep-alives count as activity.\n\
         [tcp]\n\
         # max_connections = 2048\n\
         # max_connections_per_ip = 64\n\
         # idle_timeout_ms = 300000\n\
         # message_timeout_ms = 30000\n\
         \n\
         [admin]\n\
         # listen = \"127.0.0.1:9460\"\n\
         # token = \"\"    # required when listen is not loopback; then every endpoint but\n\
         #                # GET /health needs Authorization: Bearer <token>\n\
         \n\
         [log]\n\
         # level = \"info\"    # error | warn | info | debug | trace\n\
         # format = \"text\"   # text | json\n\
         \n\
         # Kernel eyes: eBPF probes on the kernel's SCTP code (needs root or CAP_BPF +\n\
         # CAP_PERFMON, BTF and kprobes). auto: use them when they can run, else say why and\n\
         # poll /proc/net/sctp/snmp and getsockopt; on: required; off: poll only.\n\
         [ebpf]\n\
         # mode = \"auto\"\n\
         # observe_all = false   # true: every SCTP association of the host, not only ours\n\
         # poll_interval_ms = 5000\n\
         # attach_timeout_ms = 60000   # the loader (which keeps the capabilities) may take this\n\
         #                             # long to attach the probes; beyond it sipsctpd exits (4)\n\
         \n\
         # OTLP traces: a SERVER span per transaction received, a CLIENT span per leg relayed,\n\
         # with the kernel's SCTP events on them. No endpoint = no export. Transactions the\n\
         # kernel touched, errors, timeouts, SIP retransmissions and slow ones are always kept,\n\
         # the rest by sampling_ratio; max_spans_per_second caps the total. A collector that is\n\
         # down or slow never delays relaying: spans are dropped and counted\n\
         # (sipsctp_otlp_spans_total{outcome}).\n\
         [otlp]\n\
         # endpoint = \"http://127.0.0.1:4318\"   # OTLP/HTTP (protobuf); absent = no export\n\
         # protocol = \"http\"                    # or \"grpc\" (e.g. http://127.0.0.1:4317)\n\
         # sampling_ratio = 0.01\n\
         # max_spans_per_second = 200\n\
         # slow_threshold_ms = 1000               # first response this late = slow (kept)\n\
         # call_id = true                         # sip.call_id on spans\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[[listen]]
proto = "sctp"
addresses = ["127.0.0.1", "127.0.0.2"]
port = 5060
[[listen]]
proto = "udp"
addresses = ["127.0.0.1"]
port = 5060
[[route]]
upstream = "udp:127.0.0.1:5080"
[[route]]
domain = "example.net"
upstream = "sctp:[::1]:5062"
[sctp]
sctp_srto_initial = 2000
[admin]
listen = "127.0.0.1:9460"
"#;

    #[test]
    fn the_issue_example_parses() {
        let c = Config::parse(EXAMPLE).unwrap();
        assert_eq!(c.listen.len(), 2);
        assert_eq!(c.listen[0].addrs.len(), 2);
        assert_eq!(c.listen[0].addrs[1], "127.0.0.2:5060".parse().unwrap());
        assert_eq!(c.routes[1].domain.as_deref(), Some("example.net"));
        assert_eq!(c.routes[1].upstream.addr, "[::1]:5062".parse().unwrap());
        assert_eq!(c.sctp, vec![(Param::SrtoInitial, 2000)]);
        assert_eq!(c.admin.listen, "127.0.0.1:9460".parse().unwrap());
        assert_eq!(c.sip.transaction_timeout, Duration::from_secs(32));
    }

    #[test]
    fn the_printed_default_config_parses() {
        Config::parse(&default_config_text()).unwrap();
    }

    fn err(text: &str) -> String {
        Config::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_key() {
        let base = "[[listen]]\nproto = \"udp\"\naddresses = [\"127.0.0.1\"]\nport = 5060\n";
        assert!(
            err(&format!("{base}[sctp]\nsctp_nope = 1\n"))
                .starts_with("sctp.sctp_nope: unknown parameter")
        );
        assert_eq!(
            err(&format!("{base}[sctp]\nsctp_sack_delay = 900\n")),
            "sctp.sctp_sack_delay: sctp_sack_delay = 900: out of range 0..=500"
        );
        assert!(
            err(&format!("{base}[sctp]\nsctp_srto_min = 5000\n"))
                .contains("sctp_srto_min (5000) <= sctp_srto_initial")
        );
        assert!(
            err(&format!("{base}[sctp]\nsctp_assoc_tracking = 0\n"))
                .contains("sctp_assoc_reuse = 1 needs sctp_assoc_tracking = 1")
        );
        assert!(
            err(&format!("{base}bogus = 1\n")).contains("bogus"),
            "{}",
            err(&format!("{base}bogus = 1\n"))
        );
        assert!(
            err(&format!(
                "{base}[[route]]\nupstream = \"udp:localhost:5080\"\n"
            ))
            .starts_with("route[0].upstream")
        );
        assert!(
            err(&format!(
                "{base}[[route]]\nupstream = \"sctp:127.0.0.1:5080\"\n"
            ))
            .contains("no [[listen]] with proto = \"sctp\"")
        );
        assert!(err("[[listen]]\nproto = \"udp\"\naddresses = [\"127.0.0.1\", \"127.0.0.2\"]\nport = 1\n").contains("multi-homing"));
        assert!(
            err(&format!("{base}[admin]\nlisten = \"0.0.0.0:9460\"\n")).starts_with("admin.token")
        );
        assert!(err("").starts_with("listen"));
        assert!(err("[[listen]]\nproto = \"quic\"\naddresses = []\nport = 1\n").contains("quic"));
    }

    #[test]
    fn peers_and_otlp() {
        let base = "[[listen]]\nproto = \"sctp\"\naddresses = [\"127.0.0.1\"]\nport = 5060\n\
                    [[route]]\nname = \"carrier-a\"\nupstream = \"sctp:10.0.0.20:5060\"\n";
        let c = Config::parse(base).unwrap();
        assert_eq!(c.otlp, None, "no endpoint, no export");
        let names = c.peer_names();
        assert_eq!(names.name("10.0.0.20".parse().unwrap()), "carrier-a");
        assert_eq!(names.name("10.0.0.21".parse().unwrap()), "other");
        let c = Config::parse(&format!(
            "{base}[[peer]]\nname = \"carrier-a\"\naddresses = [\"10.0.1.20\"]\n\
             [otlp]\nendpoint = \"http://127.0.0.1:4318\"\nsampling_ratio = 1.0\n"
        ))
        .unwrap();
        assert_eq!(
            c.peer_names().name("10.0.1.20".parse().unwrap()),
            "carrier-a"
        );
        let o = c.otlp.unwrap();
        assert_eq!(
            (o.endpoint.as_str(), o.sampling_ratio),
            ("http://127.0.0.1:4318", 1.0)
        );
        for (extra, want) in [
            (
                "[otlp]\nsampling_ratio = 1.5\n",
                "otlp.sampling_ratio: must be 0.0 ..= 1.0",
            ),
            (
                "[otlp]\nendpoint = \"ftp://x\"\n",
                "otlp.endpoint: must start with http://",
            ),
            ("[otlp]\nprotocol = \"udp\"\n", "otlp.protocol: `udp`"),
            (
                "[otlp]\nslow_threshold_ms = 0\n",
                "otlp.slow_threshold_ms: must be more than 0",
            ),
            (
                "[[peer]]\nname = \"pbx\"\naddresses = [\"10.0.0.20\"]\n",
                "peer: address 10.0.0.20 is named both \"carrier-a\" and \"pbx\"",
            ),
            (
                "[[peer]]\nname = \"other\"\naddresses = []\n",
                "peer: peer name \"other\"",
            ),
            (
                "[[peer]]\nname = \"x\"\naddresses = [\"nope\"]\n",
                "peer[0].addresses: `nope`",
            ),
        ] {
            let e = err(&format!("{base}{extra}"));
            assert!(e.starts_with(want), "{extra:?}: {e}");
        }
    }

    #[test]
    fn tcp_limits() {
        let base = "[[listen]]\nproto = \"tcp\"\naddresses = [\"127.0.0.1\"]\nport = 5060\n";
        let c = Config::parse(base).unwrap();
        assert_eq!(
            c.tcp,
            Tcp {
                max_connections: 2048,
                max_connections_per_ip: 64,
                idle_timeout: Duration::from_secs(300),
                message_timeout: Duration::from_secs(30),
            }
        );
        let c = Config::parse(&format!(
            "{base}[tcp]\nmax_connections = 6000\nmax_connections_per_ip = 100\nidle_timeout_ms = 2000\nmessage_timeout_ms = 1000\n"
        ))
        .unwrap();
        assert_eq!(
            (c.tcp.max_connections, c.tcp.max_connections_per_ip),
            (6000, 100)
        );
        assert_eq!(c.tcp.idle_timeout, Duration::from_secs(2));
        assert_eq!(c.tcp.message_timeout, Duration::from_secs(1));
        for (bad, key) in [
            ("max_connections = 0", "tcp.max_connections"),
            ("max_connections_per_ip = 0", "tcp.max_connections_per_ip"),
            (
                "max_connections_per_ip = 3000",
                "tcp.max_connections_per_ip",
            ),
            ("idle_timeout_ms = 10", "tcp.idle_timeout_ms"),
            ("message_timeout_ms = 0", "tcp.message_timeout_ms"),
        ] {
            assert!(
                err(&format!("{base}[tcp]\n{bad}\n")).starts_with(key),
                "{bad}: {}",
                err(&format!("{base}[tcp]\n{bad}\n"))
            );
        }
        assert!(err(&format!("{base}[tcp]\nmax_conections = 1\n")).contains("max_conections"));
    }

    #[test]
    fn udp_mtu() {
        let udp = "[[listen]]\nproto = \"udp\"\naddresses = [\"127.0.0.1\"]\nport = 5060\n";
        let tcp = "[[listen]]\nproto = \"tcp\"\naddresses = [\"127.0.0.1\"]\nport = 5060\n";
        let c = Config::parse(udp).unwrap();
        assert_eq!((c.sip.udp_mtu, c.sip.udp_large_to_tcp), (0, false));
        let c = Config::parse(&format!("{udp}[sip]\nudp_mtu = 1500\n")).unwrap();
        assert_eq!((c.sip.udp_mtu, c.sip.udp_large_to_tcp), (1500, false));
        let c = Config::parse(&format!(
            "{udp}{tcp}[sip]\nudp_mtu = 1500\nudp_large_to_tcp = true\n"
        ))
        .unwrap();
        assert_eq!((c.sip.udp_mtu, c.sip.udp_large_to_tcp), (1500, true));
        assert!(err(&format!("{udp}[sip]\nudp_mtu = 200\n")).starts_with("sip.udp_mtu"));
        assert!(
            err(&format!("{udp}{tcp}[sip]\nudp_large_to_tcp = true\n"))
                .starts_with("sip.udp_large_to_tcp: needs sip.udp_mtu")
        );
        assert!(
            err(&format!(
                "{udp}[sip]\nudp_mtu = 1500\nudp_large_to_tcp = true\n"
            ))
            .contains("no [[listen]] with proto = \"tcp\"")
        );
    }
}
