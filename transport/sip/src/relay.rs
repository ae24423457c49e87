//! Stateless relay decisions ([`Relay`]): for each message in, one [`Decision`] out —
//! forward these bytes there, answer the sender with this response, or drop (with a
//! [`DropReason`] to count).
//!
//! RFC 3261 section 16.11 (stateless proxy) with RFC 3581 (`rport`), RFC 5658 (double
//! Record-Route) and loose routing (section 16.4). Sans-IO: no sockets, no tokio, no clock,
//! no DNS (next hops are IP literals or configured upstreams), no per-transaction state
//! (retransmissions are forwarded again, deterministically, with the same branch). The
//! daemon moves the bytes; [`crate::transaction`] watches transactions for metrics.
//!
//! # What the relay does to a request
//!
//! 1. Checks it can answer at all: a parseable top `Via`, `From`, `To`, `Call-ID`, `CSeq`.
//!    Otherwise: drop (`malformed`).
//! 2. Validates (400 on failure): `CSeq` method equals the request method, `Max-Forwards` is
//!    a number, the Request-URI and `Route` values parse.
//! 3. Removes the `Route` values at the top that name the relay (16.4). The next-hop URI is
//!    the first remaining `Route`, else the Request-URI.
//! 4. An `OPTIONS` whose Request-URI names the relay (and no `Route` remains) is answered
//!    `200 OK`, whatever `Max-Forwards` says: the keep-alive.
//! 5. `Max-Forwards: 0` → `483 Too Many Hops`.
//! 6. Computes the branch and answers `482 Loop Detected` when a `Via` of the relay's
//!    already carries the same loop-detection part (see *Branches*), or when the next hop is
//!    the relay itself.
//! 7. Picks the route: the first [`RouteRule`] matching the next-hop URI's host, else the
//!    default route. No route, no listener for its transport, or a `Direct` target that is
//!    not an IP literal → `502 Bad Gateway` (chosen over 404, which would claim the user does
//!    not exist, and over 503, which RFC 3263 clients treat as "try another server" and may
//!    back off from for `Retry-After`: a missing route is a configuration problem of this
//!    hop, which is what 502 says).
//! 8. Edits the message (one copy, untouched headers copied as slices): `received` and
//!    `rport` on the incoming top `Via`, own `Route` values removed, `Max-Forwards`
//!    decremented (or `Max-Forwards: 69` inserted), `Record-Route` inserted when configured,
//!    the relay's `Via` inserted on top.
//!
//! `ACK` goes through the same steps but is never answered: where another request would get
//! a response, an `ACK` is dropped with the matching reason.
//!
//! `received` is set when the sent-by host is not the source IP, when `rport` is set, or when
//! the client wrote a `received` of its own; `rport=<source port>` is set when the client wrote
//! `rport` (with or without a value: RFC 3581) and, beyond RFC 3581, on every request that
//! arrived over TCP or SCTP, so that the response path can find the connection or association
//! by address (RFC 3261 section 18.2.2 wants responses on the existing connection; a stateless
//! relay only has the address to go on). What the client wrote in either is overwritten, as
//! Kamailio does: otherwise a sender would choose where its responses go (reflection). A
//! request whose top `Via` names another transport than the one it came over is answered
//! `400 Via Transport Mismatch`: its responses would need a connection or association the
//! relay must not open to an address a peer wrote.
//!
//! # Branches
//!
//! `z9hG4bKsx<loop>.<tx>`, two 64-bit SipHash-2-4 values under the configured secret, in hex:
//!
//! - `loop` covers what does not change when a request comes back around a loop: the
//!   Request-URI, the next `Route` after the relay's own, `Call-ID`, `From` tag and `CSeq`
//!   number (16.6 step 8 minus `To` tag and `Proxy-*` headers: an `ACK` for a non-2xx
//!   response carries a `To` tag its `INVITE` lacked and must get the same branch).
//! - `tx` covers the incoming top `Via`: its branch and sent-by when the branch has the magic
//!   cookie; else (RFC 2543) `Call-ID`, `CSeq` number, `From` tag and sent-by; and, in both
//!   cases, everything the response's way back depends on: the transport, `received` and
//!   `rport` the relay set on that `Via`.
//!
//! Both are the same for a retransmission, for the `CANCEL` of an `INVITE` and for the `ACK`
//! of a non-2xx response, as a stateless proxy needs (16.11). A looped request arrives with
//! the relay's own `Via` on top, so its `tx` part differs but its `loop` part matches: that is
//! the loop test. On a response, the `tx` part is recomputed from the second `Via` (which the
//! response carries back) and must match, so a response cannot make the relay send to an
//! address that was not in a request it forwarded (`stale_response` after a secret change).
//!
//! # Responses
//!
//! The top `Via` must be the relay's (sent-by one of its identities, transport the one it
//! arrived on, a branch of the relay's that verifies). It is removed and the response goes to
//! the next `Via`: `received` (else the sent-by host, which must then be an IP literal) and
//! `rport=N` (else the sent-by port, else 5060), over that `Via`'s transport. No association
//! hint is given: the transport reuses the connection or association by address.
//!
//! # Record-Route
//!
//! With `record_route`, every request but `REGISTER`, `ACK` and `CANCEL` (where it means
//! nothing) gets `Record-Route: <sip:SENT-BY;transport=T;lr>` for the outgoing listener; when
//! the request came in on another listener (another transport or address), a second one for
//! the incoming listener goes below it (RFC 5658), so in-dialog requests from either side
//! carry two `Route` values naming the relay, and both are removed in step 3.
//!
//! Not done: strict routing (a Request-URI that is one of the relay's Record-Route values,
//! 16.4), `maddr` in `Via` or URIs, `Proxy-Require` (no extensions are supported, so nothing
//! is checked), `sips:` and TLS, 100 Trying (upstream's is forwarded like any response).

use crate::AssocId;
use core::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::{
    Editor, Field, HeaderName, Host, Limits, Message, Method, NameAddr, ResponseSpec, Rport,
    Transport, Uri, Via, build_response, hash::SipHasher24, transaction::TxKey,
};

/// The prefix of every branch this relay generates.
pub const BRANCH_PREFIX: &str = "z9hG4bKsx";

/// A fixed next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upstream {
    /// The transport to it.
    pub transport: Transport,
    /// Its address.
    pub addr: SocketAddr,
}

/// Where a matching request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteTarget {
    /// To a fixed upstream (a registrar, Kamailio over SCTP, ...).
    Upstream(Upstream),
    /// To the next-hop URI's own host and port (5060 when absent), which must be an IP
    /// literal, over its `transport=` parameter, or `default_transport` without one. For
    /// requests towards user agents whose contact the Request-URI is.
    Direct {
        /// The transport when the URI has no `transport=` parameter.
        default_transport: Transport,
    },
}

/// Which next-hop hosts a rule matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// This host exactly (a domain, ASCII case-insensitive; or an IP literal).
    Exact(String),
    /// This domain and its subdomains (`example.com` matches `example.com` and
    /// `pbx.example.com`).
    Suffix(String),
    /// Any IP literal.
    AnyIp,
}

/// A routing rule: requests whose next-hop URI host matches go to `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRule {
    /// Which hosts.
    pub host: HostMatch,
    /// Where to.
    pub target: RouteTarget,
}

/// An address the relay listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Its transport.
    pub transport: Transport,
    /// Its address (the source address of what the relay sends over it).
    pub addr: SocketAddr,
    /// The `host[:port]` to put in `Via` and `Record-Route` instead of `addr` (needed when
    /// `addr` is unspecified, `0.0.0.0` or `::`).
    pub advertise: Option<String>,
}

/// What the relay knows about itself and its routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// Where the relay listens; its `Via`, `Record-Route` and identities come from these.
    pub listeners: Vec<Listener>,
    /// Other `host[:port]` names that mean this relay (a name without a port matches any
    /// listener port).
    pub aliases: Vec<String>,
    /// Routing rules, first match wins.
    pub routes: Vec<RouteRule>,
    /// Where requests no rule matches go; `None` answers them 502.
    pub default_route: Option<RouteTarget>,
    /// Whether to insert `Record-Route`.
    pub record_route: bool,
    /// The SipHash key for branches and `To` tags. Relays sharing a secret verify each
    /// other's responses; change it and in-flight responses are dropped as stale.
    pub secret: [u8; 16],
    /// Parser limits for [`Relay::handle`].
    pub limits: Limits,
}

/// A [`RelayConfig`] that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RelayConfigError {
    /// No listener at all.
    #[error("no listener configured")]
    NoListeners,
    /// A listener on `0.0.0.0`/`::` without `advertise`: its `Via` would be meaningless.
    #[error("listener {0} has an unspecified address and no advertised name")]
    UnspecifiedAddress(SocketAddr),
    /// An `advertise` value that is not `host[:port]`.
    #[error("invalid advertised name {0:?}")]
    InvalidAdvertise(String),
    /// An alias that is not `host[:port]`.
    #[error("invalid alias {0:?}")]
    InvalidAlias(String),
    /// A route host that is not a host name or IP literal.
    #[error("invalid route host {0:?}")]
    InvalidRouteHost(String),
    /// A route needs a transport no listener has.
    #[error("a route uses {0} but no listener has that transport")]
    NoListener(Transport),
}

/// Where a message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The transport it came over.
    pub transport: Transport,
    /// The source address.
    pub addr: SocketAddr,
    /// The SCTP association it came on (opaque to this crate).
    pub assoc: Option<AssocId>,
}

/// The local address a message arrived at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAddr {
    /// The transport.
    pub transport: Transport,
    /// The local address.
    pub addr: SocketAddr,
}

/// Where to send bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Destination {
    /// Over which transport.
    pub transport: Transport,
    /// To which address.
    pub addr: SocketAddr,
    /// On which SCTP association, when known (else the transport finds or opens one for
    /// `addr`).
    pub assoc: Option<AssocId>,
}

/// Why a message was dropped; [`DropReason::as_str`] is the counter label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// Unparseable, or too broken to answer (`malformed`).
    Malformed,
    /// An `ACK` with `Max-Forwards: 0` (`too_many_hops`).
    TooManyHops,
    /// An `ACK` in a loop (`loop`).
    Loop,
    /// An `ACK` with no route (`unroutable`).
    Unroutable,
    /// A response whose top `Via` is not the relay's (`misrouted_response`).
    MisroutedResponse,
    /// A response whose branch does not verify: sent before a secret change, or forged
    /// (`stale_response`).
    StaleResponse,
    /// A response with no `Via` below the relay's (`response_for_self`).
    ResponseForSelf,
    /// A response whose next `Via` has a host name and no `received` (`unresolvable_via`).
    UnresolvableVia,
    /// A response whose next `Via` has a transport the relay lacks (`unsupported_transport`).
    UnsupportedTransport,
    /// A new request refused with `503` + `Retry-After` while the relay is overloaded
    /// (`overload`).
    Overload,
}

impl DropReason {
    /// Every reason, for pre-setting counters to 0.
    pub const ALL: [Self; 10] = [
        Self::Malformed,
        Self::TooManyHops,
        Self::Loop,
        Self::Unroutable,
        Self::MisroutedResponse,
        Self::StaleResponse,
        Self::ResponseForSelf,
        Self::UnresolvableVia,
        Self::UnsupportedTransport,
        Self::Overload,
    ];

    /// The counter label.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::TooManyHops => "too_many_hops",
            Self::Loop => "loop",
            Self::Unroutable => "unroutable",
            Self::MisroutedResponse => "misrouted_response",
            Self::StaleResponse => "stale_response",
            Self::ResponseForSelf => "response_for_self",
            Self::UnresolvableVia => "unresolvable_via",
            Self::UnsupportedTransport => "unsupported_transport",
            Self::Overload => "overload",
        }
    }
}

impl From<DropReason> for &'static str {
    fn from(r: DropReason) -> Self {
        r.as_str()
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to do with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Send `bytes` to `to`.
    Forward {
        /// Where.
        to: Destination,
        /// The edited message.
        bytes: Vec<u8>,
        /// The transaction, for [`TransactionTable`](crate::transaction::TransactionTable):
        /// for a request its new branch and method (`None` for `ACK`), for a response the
        /// branch of the `Via` removed and the `CSeq` method.
        tx: Option<TxKey>,
    },
    /// Send the locally generated response `bytes` back to the sender.
    Respond {
        /// Where (the request's sender).
        to: Destination,
        /// The response.
        bytes: Vec<u8>,
        /// Its status code, for counters.
        status: u16,
    },
    /// Send nothing.
    Drop {
        /// Why.
        reason: DropReason,
    },
}

const fn drop(reason: DropReason) -> Decision {
    Decision::Drop { reason }
}

/// A host owned by the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
enum OwnedHost {
    /// Lowercase, without a trailing dot.
    Domain(String),
    Ip(IpAddr),
}

impl OwnedHost {
    fn parse(s: &str) -> Option<Self> {
        Some(match Host::parse_str(s)? {
            Host::Domain(d) => Self::Domain(d.trim_end_matches('.').to_ascii_lowercase()),
            Host::Ip(ip) => Self::Ip(ip.to_canonical()),
        })
    }

    fn matches(&self, h: &Host<'_>) -> bool {
        match (self, h) {
            (Self::Ip(a), Host::Ip(b)) => *a == b.to_canonical(),
            (Self::Domain(a), Host::Domain(b)) => a.eq_ignore_ascii_case(b.trim_end_matches('.')),
            _ => false,
        }
    }
}

/// Parses `host[:port]` (IPv6 in brackets).
fn host_port(s: &str) -> Option<(OwnedHost, Option<u16>)> {
    if let Some(h) = OwnedHost::parse(s) {
        return Some((h, None));
    }
    let (h, p) = s.rsplit_once(':')?;
    Some((OwnedHost::parse(h)?, Some(p.parse().ok()?)))
}

/// A listener, prepared.
#[derive(Debug, Clone)]
struct Iface {
    transport: Transport,
    addr: SocketAddr,
    /// `SIP/2.0/T sent-by;branch=`
    via_prefix: String,
    /// `<sip:sent-by;transport=t;lr>`
    record_route: String,
}

#[derive(Debug, Clone)]
enum Rule {
    Exact(OwnedHost),
    Suffix(String),
    AnyIp,
}

/// `received` and `rport` to set on the incoming top `Via`.
#[derive(Debug, Clone, Copy)]
struct ViaFix {
    received: Option<IpAddr>,
    rport: Option<u16>,
}

/// What a response's way back depends on, as the branch MAC covers it: the transport of the
/// `Via` below the relay's, and its `received` and `rport=N`.
#[derive(Debug, Clone, Copy)]
struct ReturnPath {
    transport: Option<Transport>,
    received: Option<IpAddr>,
    rport: Option<u16>,
}

impl ReturnPath {
    /// For a request: the transport it came over and the values the relay sets.
    const fn of_request(req: &Req<'_, '_>) -> Self {
        Self {
            transport: Some(req.from.transport),
            received: req.fix.received,
            rport: req.fix.rport,
        }
    }

    /// For a response: what the `Via` it goes back to says.
    fn of_via(via: &Via<'_>) -> Self {
        Self {
            transport: via.transport(),
            received: via.received,
            rport: match via.rport {
                Some(Rport::Port(p)) => Some(p),
                _ => None,
            },
        }
    }
}

/// What every decision about a request needs.
struct Req<'m, 'a> {
    msg: &'m Message<'a>,
    from: Peer,
    top: Via<'a>,
    fix: ViaFix,
    call_id: &'a str,
    seq: u32,
    from_tag: Option<&'a str>,
    is_ack: bool,
}

/// The stateless relay. Immutable after [`Relay::new`]: share it (`Arc`) between tasks.
///
/// Inputs: [`handle`](Self::handle) (raw bytes), or [`handle_request`](Self::handle_request) /
/// [`handle_response`](Self::handle_response) for a message already parsed;
/// [`reject`](Self::reject) when the daemon must answer a request itself (e.g. 503 when the
/// upstream cannot be reached). Each returns a [`Decision`].
#[derive(Debug, Clone)]
pub struct Relay {
    cfg: RelayConfig,
    ifaces: Vec<Iface>,
    identities: Vec<(OwnedHost, Option<u16>)>,
    rules: Vec<(Rule, RouteTarget)>,
}

impl Relay {
    /// Checks and prepares `cfg`.
    ///
    /// # Errors
    ///
    /// See [`RelayConfigError`].
    pub fn new(cfg: RelayConfig) -> Result<Self, RelayConfigError> {
        if cfg.listeners.is_empty() {
            return Err(RelayConfigError::NoListeners);
        }
        let mut ifaces = Vec::new();
        let mut identities = Vec::new();
        for l in &cfg.listeners {
            let ip = l.addr.ip().to_canonical();
            let sent_by = match &l.advertise {
                Some(a) => {
                    let (h, p) = host_port(a)
                        .ok_or_else(|| RelayConfigError::InvalidAdvertise(a.clone()))?;
                    let port = p.unwrap_or(l.addr.port());
                    let text = match &h {
                        OwnedHost::Domain(d) => format!("{d}:{port}"),
                        OwnedHost::Ip(ip) => SocketAddr::new(*ip, port).to_string(),
                    };
                    identities.push((h, Some(port)));
                    text
                }
                None if ip.is_unspecified() => {
                    return Err(RelayConfigError::UnspecifiedAddress(l.addr));
                }
                None => SocketAddr::new(ip, l.addr.port()).to_string(),
            };
            if !ip.is_unspecified() {
                identities.push((OwnedHost::Ip(ip), Some(l.addr.port())));
            }
            ifaces.push(Iface {
                transport: l.transport,
                addr: l.addr,
                via_prefix: format!("SIP/2.0/{} {sent_by};branch=", l.transport),
                record_route: format!("<sip:{sent_by};transport={};lr>", l.transport.uri_param()),
            });
        }
        for a in &cfg.aliases {
            identities.push(host_port(a).ok_or_else(|| RelayConfigError::InvalidAlias(a.clone()))?);
        }
        let mut rules = Vec::new();
        for r in &cfg.routes {
            let rule = match &r.host {
                HostMatch::Exact(h) => Rule::Exact(
                    OwnedHost::parse(h)
                        .ok_or_else(|| RelayConfigError::InvalidRouteHost(h.clone()))?,
                ),
                HostMatch::Suffix(s) => match OwnedHost::parse(s.trim_start_matches('.')) {
                    Some(OwnedHost::Domain(d)) => Rule::Suffix(d),
                    _ => return Err(RelayConfigError::InvalidRouteHost(s.clone())),
                },
                HostMatch::AnyIp => Rule::AnyIp,
            };
            rules.push((rule, r.target));
        }
        for target in cfg
            .routes
            .iter()
            .map(|r| &r.target)
            .chain(cfg.default_route.as_ref())
        {
            let t = match target {
                RouteTarget::Upstream(u) => u.transport,
                RouteTarget::Direct { default_transport } => *default_transport,
            };
            if !ifaces.iter().any(|i| i.transport == t) {
                return Err(RelayConfigError::NoListener(t));
            }
        }
        Ok(Self {
            cfg,
            ifaces,
            identities,
            rules,
        })
    }

    /// The configuration.
    pub const fn config(&self) -> &RelayConfig {
        &self.cfg
    }

    /// Whether `host[:port]` (port 5060 when absent) names this relay.
    pub fn is_self(&self, host: &Host<'_>, port: Option<u16>) -> bool {
        let port = port.unwrap_or(5060);
        self.identities.iter().any(|(h, p)| {
            h.matches(host)
                && match p {
                    Some(p) => *p == port,
                    None => self.ifaces.iter().any(|i| i.addr.port() == port),
                }
        })
    }

    fn is_self_uri(&self, uri: &Uri<'_>) -> bool {
        uri.host.is_some_and(|h| self.is_self(&h, uri.port))
    }

    fn route(&self, uri: &Uri<'_>) -> Option<RouteTarget> {
        let host = uri.host;
        let hit = self.rules.iter().find(|(rule, _)| match (rule, &host) {
            (Rule::Exact(h), Some(host)) => h.matches(host),
            (Rule::Suffix(s), Some(Host::Domain(d))) => {
                let d = d.trim_end_matches('.');
                d.eq_ignore_ascii_case(s)
                    || d.len() > s.len()
                        && d.get(d.len() - s.len() - 1..)
                            .and_then(|t| t.strip_prefix('.'))
                            .is_some_and(|t| t.eq_ignore_ascii_case(s))
            }
            (Rule::AnyIp, Some(Host::Ip(_))) => true,
            _ => false,
        });
        hit.map(|(_, t)| *t).or(self.cfg.default_route)
    }

    fn iface_for(&self, transport: Transport, dest: SocketAddr) -> Option<&Iface> {
        let same = |i: &&Iface| i.transport == transport;
        self.ifaces
            .iter()
            .filter(same)
            .find(|i| i.addr.is_ipv4() == dest.is_ipv4())
            .or_else(|| self.ifaces.iter().find(same))
    }

    fn iface_at(&self, local: LocalAddr) -> Option<&Iface> {
        self.ifaces
            .iter()
            .find(|i| i.transport == local.transport && i.addr == local.addr)
            .or_else(|| {
                self.ifaces.iter().find(|i| {
                    i.transport == local.transport
                        && i.addr.port() == local.addr.port()
                        && i.addr.ip().is_unspecified()
                })
            })
    }

    fn hasher(&self, domain: &[u8]) -> SipHasher24 {
        let mut h = SipHasher24::new(&self.cfg.secret);
        h.field(domain);
        h
    }

    /// The `tx` part of a branch for a request whose top `Via` is `via`, covering everything
    /// a response's routing depends on: `back` (transport, `received`, `rport`) as the relay
    /// set them on that `Via`.
    fn tx_hash(
        &self,
        via: &Via<'_>,
        call_id: &str,
        seq: u32,
        from_tag: Option<&str>,
        back: ReturnPath,
    ) -> u64 {
        let mut h = match via.branch.filter(|_| via.has_magic_cookie()) {
            Some(b) => {
                let mut h = self.hasher(b"tx3261");
                h.field(b.as_bytes());
                h
            }
            None => {
                let mut h = self.hasher(b"tx2543");
                h.field(call_id.as_bytes())
                    .field(&seq.to_le_bytes())
                    .field(from_tag.unwrap_or("").as_bytes());
                h
            }
        };
        match via.host {
            Host::Ip(ip) => match ip.to_canonical() {
                IpAddr::V4(v4) => h.field(&v4.octets()),
                IpAddr::V6(v6) => h.field(&v6.octets()),
            },
            Host::Domain(d) => {
                let d = d.trim_end_matches('.');
                h.write(&(d.len() as u64).to_le_bytes());
                for b in d.bytes() {
                    h.write(&[b.to_ascii_lowercase()]);
                }
                &mut h
            }
        };
        h.field(&via.port.unwrap_or(0).to_le_bytes());
        h.field(back.transport.map_or("", |t| t.as_str()).as_bytes());
        match back.received.map(|ip| ip.to_canonical()) {
            None => h.field(b""),
            Some(IpAddr::V4(v4)) => h.field(&v4.octets()),
            Some(IpAddr::V6(v6)) => h.field(&v6.octets()),
        };
        h.field(&back.rport.map_or(0u32, |p| u32::from(p) + 1).to_le_bytes());
        h.finish()
    }

    /// `received` and `rport` for the incoming top `Via`. Whatever the client wrote in them is
    /// overwritten with what the relay saw (as Kamailio does): a `received` or `rport=N` of
    /// the client's own would otherwise choose where the responses go.
    fn via_fix(top: &Via<'_>, from: Peer) -> ViaFix {
        let src = from.addr.ip().to_canonical();
        let add_rport = top.rport.is_some() || from.transport.is_reliable();
        let differs = top.host.ip().map(|ip| ip.to_canonical()) != Some(src);
        ViaFix {
            received: (differs || add_rport || top.received.is_some()).then_some(src),
            rport: add_rport.then_some(from.addr.port()),
        }
    }

    /// Where a locally generated response to a request from `from` goes (RFC 3261 18.2.2,
    /// RFC 3581): back on the connection or association for reliable transports, to the
    /// source address when `rport` was asked for, else to the source IP and sent-by port.
    fn reply_to(top: &Via<'_>, from: Peer) -> Destination {
        if from.transport.is_reliable() || top.rport == Some(Rport::Requested) {
            Destination {
                transport: from.transport,
                addr: from.addr,
                assoc: from.assoc,
            }
        } else {
            let addr = SocketAddr::new(from.addr.ip(), top.port.unwrap_or(5060));
            Destination {
                transport: from.transport,
                addr,
                assoc: None,
            }
        }
    }

    fn respond(&self, req: &Req<'_, '_>, status: u16, reason: &str, ack: DropReason) -> Decision {
        self.respond_with(req, status, reason, None, ack)
    }

    /// As `respond`, with a `Retry-After` when given.
    fn respond_with(
        &self,
        req: &Req<'_, '_>,
        status: u16,
        reason: &str,
        retry_after: Option<u32>,
        ack: DropReason,
    ) -> Decision {
        if req.is_ack {
            return drop(ack);
        }
        let tag = {
            let mut h = self.hasher(b"to-tag");
            h.field(
                &self
                    .tx_hash(
                        &req.top,
                        req.call_id,
                        req.seq,
                        req.from_tag,
                        ReturnPath::of_request(req),
                    )
                    .to_le_bytes(),
            );
            format!("sx{:016x}", h.finish())
        };
        let spec = ResponseSpec {
            status,
            reason,
            to_tag: Some(&tag),
            received: req.fix.received,
            rport: req.fix.rport,
            retry_after,
        };
        match build_response(req.msg, &spec) {
            Ok(bytes) => Decision::Respond {
                to: Self::reply_to(&req.top, req.from),
                bytes,
                status,
            },
            Err(_) => drop(DropReason::Malformed),
        }
    }

    /// Gathers what answering `msg` needs; `None` when it cannot be answered.
    fn req<'m, 'a>(msg: &'m Message<'a>, from: Peer) -> Option<Req<'m, 'a>> {
        let method = msg.method()?;
        let top = msg.top_via().ok()?;
        let call_id = msg.call_id().ok()?;
        let cseq = msg.cseq().ok()?;
        let from_tag = msg.from().ok()?.tag;
        msg.to().ok()?;
        let fix = Self::via_fix(&top, from);
        Some(Req {
            msg,
            from,
            top,
            fix,
            call_id,
            seq: cseq.seq,
            from_tag,
            is_ack: method == Method::Ack,
        })
    }

    /// Answers request `msg` from `from` with `status reason` (e.g. 503 when the upstream is
    /// unreachable): the response goes where RFC 3261 18.2.2 / RFC 3581 say, with
    /// `received`/`rport` and a deterministic `To` tag.
    pub fn reject(&self, msg: &Message<'_>, from: Peer, status: u16, reason: &str) -> Decision {
        match Self::req(msg, from) {
            Some(req) => self.respond(&req, status, reason, DropReason::Malformed),
            None => drop(DropReason::Malformed),
        }
    }

    /// Refuses new request `msg` from `from` because the relay is overloaded: `503 Service
    /// Unavailable` with `Retry-After: retry_after` (RFC 3261 21.5.4), sent where any other
    /// local response would go.
    pub fn shed(&self, msg: &Message<'_>, from: Peer, retry_after: u32) -> Decision {
        match Self::req(msg, from) {
            Some(req) => self.respond_with(
                &req,
                503,
                "Service Unavailable",
                Some(retry_after),
                DropReason::Overload,
            ),
            None => drop(DropReason::Malformed),
        }
    }

    /// Parses one whole message (a datagram, an SCTP message, or a frame cut by
    /// [`frame`](crate::frame)) and decides. An unparseable request whose head still gives
    /// `Via`, `From`, `To`, `Call-ID` and `CSeq` (e.g. a `Content-Length` mismatch) is
    /// answered 400; anything else unparseable is dropped.
    pub fn handle(&self, bytes: &[u8], from: Peer, local: LocalAddr) -> Decision {
        match Message::parse_with(bytes, &self.cfg.limits) {
            Ok(m) if m.is_request() => self.handle_request(&m, from, local),
            Ok(m) => self.handle_response(&m, from),
            Err(_) => match Message::parse_head(bytes, &self.cfg.limits) {
                Ok(m) if m.is_request() => self.reject(&m, from, 400, "Bad Request"),
                _ => drop(DropReason::Malformed),
            },
        }
    }

    /// Decides what to do with request `msg`, received from `from` on `local`. See the module
    /// documentation for the steps.
    pub fn handle_request(&self, msg: &Message<'_>, from: Peer, local: LocalAddr) -> Decision {
        self.request(msg, from, local, None)
    }

    /// As [`handle_request`](Self::handle_request), but a forwarded request goes over
    /// `transport` to the address its route gives, whatever transport the route names: its
    /// `Via` (and `Record-Route`) name the relay's listener of that transport. For RFC 3261
    /// section 18.1.1: a request too large for UDP goes over TCP instead, and the switch must
    /// happen before the relay writes its `Via` (the response comes back over the transport
    /// that `Via` names). The branch does not change. Without a listener of `transport`:
    /// `502` (as a route to a transport the relay lacks).
    pub fn handle_request_over(
        &self,
        msg: &Message<'_>,
        from: Peer,
        local: LocalAddr,
        transport: Transport,
    ) -> Decision {
        self.request(msg, from, local, Some(transport))
    }

    /// Whether the relay has a listener of `transport` to send from.
    pub fn has_listener(&self, transport: Transport) -> bool {
        self.ifaces.iter().any(|i| i.transport == transport)
    }

    fn request(
        &self,
        msg: &Message<'_>,
        from: Peer,
        local: LocalAddr,
        over: Option<Transport>,
    ) -> Decision {
        let Some(req) = Self::req(msg, from) else {
            return drop(DropReason::Malformed);
        };
        let Some(method) = msg.method() else {
            return drop(DropReason::Malformed);
        };
        let bad = |reason| self.respond(&req, 400, reason, DropReason::Malformed);
        if msg.cseq().map(|c| c.method) != Ok(method) {
            return bad("CSeq Method Mismatch");
        }
        // Responses go back over the transport the request came on (RFC 3261 18.2.2), and the
        // client wrote that transport in its Via (18.1.1): a Via naming another one would have
        // the relay open a connection or association for a response.
        if req.top.transport() != Some(from.transport) {
            return bad("Via Transport Mismatch");
        }
        let Ok(max_forwards) = msg.max_forwards() else {
            return bad("Invalid Max-Forwards");
        };
        let Some(uri) = msg.request_uri().and_then(Uri::parse) else {
            return bad("Invalid Request-URI");
        };

        // Loose routing (16.4): the relay's own Route values at the top go.
        let mut own_routes = 0usize;
        let mut next_route: Option<NameAddr<'_>> = None;
        for r in msg.routes() {
            let Ok(r) = r else {
                return bad("Invalid Route");
            };
            if r.parse_uri().is_some_and(|u| self.is_self_uri(&u)) {
                own_routes += 1;
            } else {
                next_route = Some(r);
                break;
            }
        }
        let next_hop = match &next_route {
            Some(r) => match r.parse_uri() {
                Some(u) => u,
                None => return bad("Invalid Route"),
            },
            None => uri,
        };

        if method == Method::Options && next_route.is_none() && self.is_self_uri(&uri) {
            return self.respond(&req, 200, "OK", DropReason::Malformed);
        }
        if max_forwards == Some(0) {
            return self.respond(&req, 483, "Too Many Hops", DropReason::TooManyHops);
        }

        let loop_part = {
            let mut h = self.hasher(b"loop");
            h.field(uri.as_str().as_bytes())
                .field(next_route.as_ref().map_or("", |r| r.uri).as_bytes())
                .field(req.call_id.as_bytes())
                .field(req.from_tag.unwrap_or("").as_bytes())
                .field(&req.seq.to_le_bytes());
            h.finish()
        };
        let loop_prefix = format!("{BRANCH_PREFIX}{loop_part:016x}.");
        let looped = msg.vias().filter_map(Result::ok).any(|v| {
            self.is_self(&v.host, v.port) && v.branch.is_some_and(|b| b.starts_with(&loop_prefix))
        });
        if looped {
            return self.respond(&req, 482, "Loop Detected", DropReason::Loop);
        }

        let unroutable =
            |req: &Req<'_, '_>| self.respond(req, 502, "Bad Gateway", DropReason::Unroutable);
        let Some(target) = self.route(&next_hop) else {
            return unroutable(&req);
        };
        let (transport, addr) = match target {
            RouteTarget::Upstream(u) => (u.transport, u.addr),
            RouteTarget::Direct { default_transport } => {
                let Some(ip) = next_hop.host.and_then(|h| h.ip()) else {
                    return unroutable(&req);
                };
                let transport = match next_hop.transport_param() {
                    None => default_transport,
                    Some(t) => match Transport::parse(t) {
                        Some(t) => t,
                        None => return unroutable(&req),
                    },
                };
                (
                    transport,
                    SocketAddr::new(ip, next_hop.port.unwrap_or(5060)),
                )
            }
        };
        let transport = over.unwrap_or(transport);
        if self.is_self(&Host::Ip(addr.ip()), Some(addr.port())) {
            return self.respond(&req, 482, "Loop Detected", DropReason::Loop);
        }
        let Some(out) = self.iface_for(transport, addr) else {
            return unroutable(&req);
        };

        let tx_part = self.tx_hash(
            &req.top,
            req.call_id,
            req.seq,
            req.from_tag,
            ReturnPath::of_request(&req),
        );
        let branch = format!("{loop_prefix}{tx_part:016x}");
        let record_route = self.cfg.record_route
            && !matches!(method, Method::Register | Method::Ack | Method::Cancel);
        let edited = (|| {
            let mut e = Editor::new(msg);
            if let Some(ip) = req.fix.received {
                e.set_top_via_param("received", Some(&ip.to_string()))?;
            }
            if let Some(port) = req.fix.rport {
                e.set_top_via_param("rport", Some(&port.to_string()))?;
            }
            if own_routes > 0 {
                e.remove_leading_values(HeaderName::Route, Field::Route, own_routes)?;
            }
            // The new Via first: insertions at the same place keep their order, and a Via
            // right under the start line is what fragile parsers expect.
            e.insert_top_via(&format!("{}{branch}", out.via_prefix))?;
            e.decrement_max_forwards()?;
            if record_route {
                e.insert_record_route(&out.record_route)?;
                if let Some(inbound) = self.iface_at(local)
                    && (inbound.transport != out.transport || inbound.addr != out.addr)
                {
                    e.insert_record_route(&inbound.record_route)?;
                }
            }
            Ok::<_, crate::EditError>(e.finish())
        })();
        match edited {
            Ok(bytes) => Decision::Forward {
                to: Destination {
                    transport,
                    addr,
                    assoc: None,
                },
                bytes,
                tx: (!req.is_ack).then(|| TxKey::new(&branch, method)),
            },
            Err(_) => drop(DropReason::Malformed),
        }
    }

    /// Decides what to do with response `msg`, received from `from`. See the module
    /// documentation.
    pub fn handle_response(&self, msg: &Message<'_>, from: Peer) -> Decision {
        if msg.status().is_none() {
            return drop(DropReason::Malformed);
        }
        let Ok(top) = msg.top_via() else {
            return drop(DropReason::Malformed);
        };
        if !self.is_self(&top.host, top.port) || top.transport() != Some(from.transport) {
            return drop(DropReason::MisroutedResponse);
        }
        let Some(branch) = top.branch.filter(|b| b.starts_with(BRANCH_PREFIX)) else {
            return drop(DropReason::MisroutedResponse);
        };
        let next = match msg.vias().nth(1) {
            None => return drop(DropReason::ResponseForSelf),
            Some(Err(_)) => return drop(DropReason::Malformed),
            Some(Ok(v)) => v,
        };
        let (Ok(call_id), Ok(cseq), Ok(from_tag)) = (msg.call_id(), msg.cseq(), msg.from_tag())
        else {
            return drop(DropReason::Malformed);
        };
        let tx_part = branch
            .get(BRANCH_PREFIX.len()..)
            .and_then(|rest| rest.split_once('.'))
            .filter(|(l, t)| l.len() == 16 && t.len() == 16)
            .and_then(|(_, t)| u64::from_str_radix(t, 16).ok());
        if tx_part
            != Some(self.tx_hash(
                &next,
                call_id,
                cseq.seq,
                from_tag,
                ReturnPath::of_via(&next),
            ))
        {
            return drop(DropReason::StaleResponse);
        }
        let Some(transport) = next.transport() else {
            return drop(DropReason::UnsupportedTransport);
        };
        let Some(ip) = next.received.or_else(|| next.host.ip()) else {
            return drop(DropReason::UnresolvableVia);
        };
        let port = match next.rport {
            Some(Rport::Port(p)) => p,
            _ => next.port.unwrap_or(5060),
        };
        let mut e = Editor::new(msg);
        if e.remove_top_via().is_err() {
            return drop(DropReason::Malformed);
        }
        Decision::Forward {
            to: Destination {
                transport,
                addr: SocketAddr::new(ip, port),
                assoc: None,
            },
            bytes: e.finish(),
            tx: Some(TxKey::new(branch, cseq.method)),
        }
    }
}

#[cfg(test)]
mod tests;
