//! The admin HTTP API (loopback by default): `/metrics`, `/health`, the SCTP views
//! (`/sctp/options`, `/sctp/info`, `/sctp/assocs`), recent kernel events
//! (`/kernel/events?limit=N`) and runtime parameter changes
//! (`PUT /cfg/sctp/{name}?scope=future|current|all`, body = the integer). Errors are JSON.
//!
//! Access ([`check_access`]): with a token configured (mandatory when the API listens beyond
//! loopback), every request but `GET /health` needs `Authorization: Bearer <token>`, reads
//! included (`/sctp/assocs` and `/kernel/events` show peer addresses and other processes'
//! pids). Without a token, the request's `Host` (and an absolute request target's authority)
//! must be a loopback name or address or the listen address, so that a web page whose name
//! an attacker re-points to 127.0.0.1 (DNS rebinding) gets 403; writes must also come from
//! loopback.
//!
//! Connections ([`serve`]): at most [`MAX_CONNECTIONS`] at once (one more is closed at once and
//! counted in `sipsctp_admin_connections_rejected_total`; `sipsctp_admin_connections` is the
//! number open); a request header must arrive whole within [`HEADER_READ_TIMEOUT`] of the
//! connection's start or of the previous answer (else the connection is closed: slowloris, and
//! idle keep-alive connections), a `PUT` body within [`BODY_READ_TIMEOUT`].

use std::{
    collections::BTreeMap,
    convert::Infallible,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::{
    Method, Request, Response, StatusCode, body::Incoming, header, server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::{IntCounter, IntGauge, Registry};
use serde_json::{Value, json};
use sipsctp_sctp::{
    assoc::SocketId,
    endpoint::ParamChangeError,
    params::{ParamError, Scope},
};
use tokio::{net::TcpListener, sync::Semaphore};

use crate::{log_limit::LogLimit, state::Shared};

/// Admin connections served at once; one more is closed as soon as it is accepted.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a request header may take to arrive whole, counted from the connection's start or
/// the previous answer (hyper's `header_read_timeout`); then the connection is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a `PUT` body (at most 64 bytes) may take to arrive.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The admin API's own metrics.
pub struct AdminMetrics {
    /// `sipsctp_admin_connections_rejected_total`: connections closed at once because
    /// [`MAX_CONNECTIONS`] were open.
    rejected: IntCounter,
    /// `sipsctp_admin_connections`: connections open now.
    open: IntGauge,
}

impl AdminMetrics {
    /// Registers the admin metrics in `registry`.
    ///
    /// # Errors
    /// Only on a programming error (duplicate names).
    pub fn register(registry: &Registry) -> prometheus::Result<AdminMetrics> {
        let rejected = IntCounter::new(
            "sipsctp_admin_connections_rejected_total",
            "Admin API connections closed as soon as accepted because the connection limit was reached",
        )?;
        registry.register(Box::new(rejected.clone()))?;
        let open = IntGauge::new(
            "sipsctp_admin_connections",
            "Admin API connections open now",
        )?;
        registry.register(Box::new(open.clone()))?;
        Ok(AdminMetrics { rejected, open })
    }
}

/// Keeps `sipsctp_admin_connections` right however a connection task ends.
struct OpenConnection(IntGauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

fn json_reply(status: StatusCode, v: &Value) -> Reply {
    reply(status, "application/json", v.to_string())
}

fn error(status: StatusCode, message: impl Into<String>) -> Reply {
    json_reply(status, &json!({ "error": message.into() }))
}

/// Serves the API on `listener` until the task is dropped: at most [`MAX_CONNECTIONS`]
/// connections at once, each closed when a request header takes longer than
/// [`HEADER_READ_TIMEOUT`].
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let local = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "admin API: cannot read its own address; not serving");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // Accept errors (EMFILE) and refusals repeat as fast as clients connect: a line a second.
    let mut repeats = LogLimit::new(Duration::from_secs(1), 4);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                if let Some(n) = repeats.check("accept", Instant::now()) {
                    tracing::warn!(error = %e, not_logged_since_last = n, "admin API: accept failed");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            shared.admin_metrics.rejected.inc();
            if let Some(n) = repeats.check("limit", Instant::now()) {
                tracing::warn!(
                    %peer,
                    limit = MAX_CONNECTIONS,
                    not_logged_since_last = n,
                    "admin API: connection limit reached; closing new connections at once"
                );
            }
            drop(stream);
            continue;
        };
        shared.admin_metrics.open.inc();
        let open = OpenConnection(shared.admin_metrics.open.clone());
        let shared = shared.clone();
        tokio::spawn(async move {
            let _slot = (permit, open);
            let service = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(&shared, local, peer, req).await) }
            });
            if let Err(e) = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "admin API connection ended with an error");
            }
        });
    }
}

fn query(req: &Request<Incoming>) -> BTreeMap<String, String> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (kv.to_owned(), String::new()),
        })
        .collect()
}

async fn handle(
    shared: &Shared,
    local: SocketAddr,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Reply {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    if let Some(denied) = check_access(shared.admin_token.as_deref(), local, peer, &req) {
        return denied;
    }
    match (&method, path.as_str()) {
        (&Method::GET, "/metrics") => {
            shared.refresh_metrics();
            reply(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                shared.metrics.render(),
            )
        }
        (&Method::GET, "/health") => json_reply(StatusCode::OK, &shared.health()),
        (&Method::GET, "/sctp/info") => match &shared.sctp {
            Some(ep) => {
                let i = ep.info();
                json_reply(
                    StatusCode::OK,
                    &json!({
                        "opened_connections": i.opened,
                        "tracked_connections": i.tracked,
                        "total_connections": i.total,
                        "send_queue_messages": i.queued,
                        "stalled_associations": i.stalled,
                    }),
                )
            }
            None => error(StatusCode::NOT_FOUND, "no SCTP listener configured"),
        },
        (&Method::GET, "/sctp/options") => sctp_options(shared, query(&req).contains_key("kernel")),
        (&Method::GET, "/sctp/assocs") => sctp_assocs(shared),
        (&Method::GET, "/kernel/events") => {
            let limit = match query(&req).get("limit").map(|l| l.parse::<usize>()) {
                None => 100,
                Some(Ok(n)) if n <= sipsctp_agent::kernel::RECENT => n,
                Some(_) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("limit: an integer 0..={}", sipsctp_agent::kernel::RECENT),
                    );
                }
            };
            json_reply(StatusCode::OK, &shared.recent.to_json(limit))
        }
        (&Method::GET, "/transactions/recent") => {
            let q = query(&req);
            let max = sipsctp_agent::recent::RECENT_TRANSACTIONS;
            let limit = match q.get("limit").map(|l| l.parse::<usize>()) {
                None => 100,
                Some(Ok(n)) if n <= max => n,
                Some(_) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("limit: an integer 0..={max}"),
                    );
                }
            };
            let kernel_only = match q.get("kernel").map(String::as_str) {
                None | Some("0") => false,
                Some("1") => true,
                Some(other) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "kernel: 0 or 1 (1 = only transactions with kernel events), not `{other}`"
                        ),
                    );
                }
            };
            let mut body = shared.exporter.recent().to_json(limit, kernel_only);
            body["kernel_events"] = json!(if shared.exporter.ebpf() {
                "ebpf"
            } else {
                "none: kernel_retransmitted is unknown"
            });
            json_reply(StatusCode::OK, &body)
        }
        (&Method::PUT, p) if p.starts_with("/cfg/sctp/") => {
            let name = p.trim_start_matches("/cfg/sctp/").to_owned();
            let scope_text = query(&req)
                .get("scope")
                .cloned()
                .unwrap_or_else(|| "future".into());
            let Some(scope) = Scope::parse(&scope_text) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("scope `{scope_text}`: future, current or all"),
                );
            };
            let body = Limited::new(req.into_body(), 64).collect();
            let body = match tokio::time::timeout(BODY_READ_TIMEOUT, body).await {
                Ok(Ok(b)) => b.to_bytes(),
                Ok(Err(_)) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "body: an integer, at most 64 bytes",
                    );
                }
                Err(_) => {
                    return error(
                        StatusCode::REQUEST_TIMEOUT,
                        format!("body: not received within {BODY_READ_TIMEOUT:?}"),
                    );
                }
            };
            let text = String::from_utf8_lossy(&body);
            let Ok(value) = text.trim().parse::<i64>() else {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("body `{}` is not an integer", text.trim()),
                );
            };
            set_param(shared, &name, value, scope)
        }
        (_, "/metrics" | "/health" | "/sctp/info" | "/sctp/options" | "/sctp/assocs") => error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} {path}: use GET"),
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            format!("no such endpoint: {method} {path}"),
        ),
    }
}

/// Who may do what (see the module doc and [`sipsctp_agent::access`]): `None` lets the
/// request through, else the refusal. `local` is the API's listen address, `peer` the
/// client's.
fn check_access<B>(
    token: Option<&str>,
    local: SocketAddr,
    peer: SocketAddr,
    req: &Request<B>,
) -> Option<Reply> {
    sipsctp_agent::access::check(token, local, peer, req)
        .err()
        .map(|d| error(d.status, d.message))
}

fn set_param(shared: &Shared, name: &str, value: i64, scope: Scope) -> Reply {
    let Some(ep) = &shared.sctp else {
        return error(StatusCode::NOT_FOUND, "no SCTP listener configured");
    };
    match ep.set_param(name, value, scope) {
        Ok(now) => {
            tracing::info!(param = name, value = now, %scope, "SCTP parameter changed at run time");
            json_reply(
                StatusCode::OK,
                &json!({ "name": name, "value": now, "scope": scope.to_string() }),
            )
        }
        Err(ParamChangeError::Param(ParamError::Unknown(n))) => error(
            StatusCode::NOT_FOUND,
            format!("unknown sctp parameter `{n}`"),
        ),
        Err(ParamChangeError::Param(ParamError::ReadOnly(n))) => error(
            StatusCode::CONFLICT,
            format!("{n} cannot be changed at run time (only at start)"),
        ),
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

fn sctp_options(shared: &Shared, kernel: bool) -> Reply {
    let Some(ep) = &shared.sctp else {
        return error(StatusCode::NOT_FOUND, "no SCTP listener configured");
    };
    let options: serde_json::Map<String, Value> = ep
        .params()
        .iter()
        .map(|(p, v)| (p.name().to_owned(), json!(v)))
        .collect();
    let mut out = json!({ "options": options });
    if kernel {
        let mut per = serde_json::Map::new();
        for (id, addrs) in ep.listeners() {
            let key = addrs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let v = match ep.kernel_params(id, None) {
                Ok(values) => Value::Object(
                    values
                        .into_iter()
                        .map(|(p, v)| (p.name().to_owned(), json!(v)))
                        .collect(),
                ),
                Err(e) => json!({ "error": e.to_string() }),
            };
            per.insert(key, v);
        }
        out["kernel"] = Value::Object(per);
    }
    json_reply(StatusCode::OK, &out)
}

fn sctp_assocs(shared: &Shared) -> Reply {
    let Some(ep) = &shared.sctp else {
        return error(StatusCode::NOT_FOUND, "no SCTP listener configured");
    };
    let listeners = ep.listeners();
    let local = |s: SocketId| {
        listeners
            .iter()
            .find(|(id, _)| *id == s)
            .map(|(_, a)| a.iter().map(ToString::to_string).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let list: Vec<Value> = ep
        .assocs()
        .into_iter()
        .map(|a| {
            json!({
                "assoc_id": a.assoc.get(),
                "local": local(a.socket),
                "state": format!("{:?}", a.status.state),
                "primary": a.status.primary.addr.map(|x| x.to_string()),
                "rwnd": a.status.rwnd,
                "unacked": a.status.unacked,
                "pending": a.status.pending,
                "inbound_streams": a.status.inbound_streams,
                "outbound_streams": a.status.outbound_streams,
                "paths": a.paths.iter().map(|p| json!({
                    "addr": p.addr.map(|x| x.to_string()),
                    "state": format!("{:?}", p.state),
                    "srtt_ms": p.srtt_ms,
                    "rto_ms": p.rto_ms,
                    "cwnd": p.cwnd,
                    "mtu": p.mtu,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json_reply(StatusCode::OK, &json!({ "assocs": list }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    const LOCAL: &str = "127.0.0.1:9460";

    fn req(method: &str, target: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method(method).uri(target);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("a valid test request")
    }

    fn status(token: Option<&str>, peer: &str, r: &Request<()>) -> u16 {
        let local: SocketAddr = LOCAL.parse().unwrap();
        check_access(token, local, peer.parse().unwrap(), r).map_or(200, |d| d.status().as_u16())
    }

    #[test]
    fn hosts_that_are_local() {
        let local: IpAddr = "192.0.2.7".parse().unwrap();
        for h in [
            "localhost",
            "LOCALHOST:9460",
            "localhost.",
            "127.0.0.1",
            "127.0.0.1:9460",
            "127.9.9.9:1",
            "[::1]",
            "[::1]:9460",
            "[::ffff:127.0.0.1]:80",
            "192.0.2.7:9460",
            "user@127.0.0.1:9460",
        ] {
            assert!(sipsctp_agent::access::is_local_host(h, local), "{h}");
        }
        for h in [
            "",
            "evil.example",
            "evil.example:9460",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "192.0.2.8",
            "10.0.0.1:9460",
            "[::1",
            "[::1]x",
            "[::1]:",
            "127.0.0.1:",
            "127.0.0.1:123456",
            "127.0.0.1:80:80",
            "::1",
            "127.0.0.1@evil.example",
        ] {
            assert!(!sipsctp_agent::access::is_local_host(h, local), "{h}");
        }
    }

    #[test]
    fn with_a_token_everything_but_health_needs_it() {
        let t = Some("tok");
        let get = |path: &str, auth: Option<&str>| {
            let mut h = vec![("host", "admin.example.net")];
            if let Some(a) = auth {
                h.push(("authorization", a));
            }
            req("GET", path, &h)
        };
        for path in [
            "/metrics",
            "/sctp/info",
            "/sctp/options",
            "/sctp/assocs",
            "/kernel/events",
            "/transactions/recent",
            "/nope",
        ] {
            assert_eq!(status(t, "192.0.2.1:1", &get(path, None)), 401, "{path}");
            assert_eq!(
                status(t, "192.0.2.1:1", &get(path, Some("Bearer nope"))),
                403,
                "{path}"
            );
            assert_eq!(
                status(t, "192.0.2.1:1", &get(path, Some("tok"))),
                401,
                "{path}: no Bearer prefix"
            );
            assert_eq!(
                status(t, "192.0.2.1:1", &get(path, Some("Bearer tok"))),
                200,
                "{path}"
            );
        }
        let put = req("PUT", "/cfg/sctp/sctp_sack_delay", &[("host", LOCAL)]);
        assert_eq!(status(t, "127.0.0.1:1", &put), 401);
        assert_eq!(status(t, "192.0.2.1:1", &get("/health", None)), 200);
        // Only GET /health is open.
        let post_health = req("POST", "/health", &[("host", LOCAL)]);
        assert_eq!(status(t, "127.0.0.1:1", &post_health), 401);
    }

    #[test]
    fn without_a_token_the_host_must_be_local_and_writes_come_from_loopback() {
        let ok = req("GET", "/health", &[("host", "localhost:9460")]);
        assert_eq!(status(None, "127.0.0.1:1", &ok), 200);
        for host in ["evil.example", "evil.example:9460", "10.0.0.1"] {
            let r = req("GET", "/health", &[("host", host)]);
            assert_eq!(status(None, "127.0.0.1:1", &r), 403, "{host}");
        }
        assert_eq!(
            status(None, "127.0.0.1:1", &req("GET", "/metrics", &[])),
            403
        );
        let two = req(
            "GET",
            "/metrics",
            &[("host", "127.0.0.1"), ("host", "evil.example")],
        );
        assert_eq!(status(None, "127.0.0.1:1", &two), 403);
        let absolute = req(
            "GET",
            "http://evil.example/metrics",
            &[("host", "127.0.0.1")],
        );
        assert_eq!(status(None, "127.0.0.1:1", &absolute), 403);
        let absolute_local = req(
            "GET",
            "http://127.0.0.1:9460/metrics",
            &[("host", "127.0.0.1")],
        );
        assert_eq!(status(None, "127.0.0.1:1", &absolute_local), 200);
        let put = req("PUT", "/cfg/sctp/sctp_sack_delay", &[("host", LOCAL)]);
        assert_eq!(status(None, "127.0.0.1:1", &put), 200);
        assert_eq!(status(None, "192.0.2.1:1", &put), 403);
    }
}
