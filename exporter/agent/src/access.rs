//! Who may use an admin HTTP API (sipsctpd's and sipsctp-exporter's): with a token
//! configured (mandatory when the API listens beyond loopback), every request but
//! `GET /health` needs `Authorization: Bearer <token>`, reads included (the views show peer
//! addresses and other processes' pids). Without a token, the request's `Host` (and an
//! absolute request target's authority) must be a loopback name or address or the listen
//! address, so that a web page whose name an attacker re-points to 127.0.0.1 (DNS rebinding)
//! gets 403; writes must also come from loopback.

use std::net::{IpAddr, SocketAddr};

use http::{Method, Request, StatusCode, header};

/// A refused request: the status and the message to answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// 401 or 403.
    pub status: StatusCode,
    /// Why.
    pub message: String,
}

fn denied(status: StatusCode, message: impl Into<String>) -> Denied {
    Denied {
        status,
        message: message.into(),
    }
}

/// Who may do what (see the module doc): `Ok` lets the request through. `local` is the API's
/// listen address, `peer` the client's.
///
/// # Errors
/// The refusal to answer with.
pub fn check<B>(
    token: Option<&str>,
    local: SocketAddr,
    peer: SocketAddr,
    req: &Request<B>,
) -> Result<(), Denied> {
    let Some(token) = token else {
        // No token: the API listens on loopback (config rule); the browser of a local user
        // can still be made to send requests here under a foreign name.
        if let Some(why) = foreign_host(req, local) {
            return Err(denied(
                StatusCode::FORBIDDEN,
                format!(
                    "{why}: without [admin] token the API answers only requests addressed to                      localhost, a loopback address or {local} (DNS rebinding protection)"
                ),
            ));
        }
        if req.method() != Method::GET && !peer.ip().to_canonical().is_loopback() {
            return Err(denied(
                StatusCode::FORBIDDEN,
                "writes are allowed from loopback only",
            ));
        }
        return Ok(());
    };
    if req.method() == Method::GET && req.uri().path() == "/health" {
        return Ok(());
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(t) if constant_time_eq(t.as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => Err(denied(StatusCode::FORBIDDEN, "wrong bearer token")),
        None => Err(denied(
            StatusCode::UNAUTHORIZED,
            "Authorization: Bearer <token> needed (every endpoint but GET /health when a token is configured)",
        )),
    }
}

/// Why the request is not addressed to this host: no or several `Host` headers, or a `Host`
/// or absolute request target naming something else than localhost, a loopback address or
/// `local`'s address. `None` when it is addressed here.
fn foreign_host<B>(req: &Request<B>, local: SocketAddr) -> Option<String> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let (Some(host), None) = (hosts.next(), hosts.next()) else {
        return Some("one Host header needed".to_owned());
    };
    let Ok(host) = host.to_str() else {
        return Some("Host is not text".to_owned());
    };
    if !is_local_host(host, local.ip()) {
        return Some(format!("Host `{host}`"));
    }
    if let Some(authority) = req.uri().authority()
        && !is_local_host(authority.as_str(), local.ip())
    {
        return Some(format!("request target host `{authority}`"));
    }
    None
}

/// Whether `host` (`name[:port]`, `IPv4[:port]`, `[IPv6][:port]`) is `localhost`, a loopback
/// address or `local`.
pub fn is_local_host(host: &str, local: IpAddr) -> bool {
    // Userinfo in an authority (`user@host`) is not the host.
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, tail)) if tail.is_empty() || is_port(tail) => ip,
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if is_port(&format!(":{port}")) => name,
            Some(_) => return false,
            None => host,
        }
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match name.parse::<IpAddr>() {
        Ok(ip) => ip.to_canonical().is_loopback() || ip.to_canonical() == local.to_canonical(),
        Err(_) => false,
    }
}

/// `:` followed by 1 to 5 digits.
fn is_port(s: &str) -> bool {
    s.strip_prefix(':')
        .is_some_and(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
