//! The admin HTTP API (loopback by default): `/metrics`, `/health`, the SCTP views
//! (`/sctp/options`, `/sctp/info`, `/sctp/assocs`), recent kernel events
//! (`/kernel/events?limit=N`) and runtime parameter changes
//! (`PUT /cfg/sctp/{name}?scope=future|current|all`, body = the integer). Errors are JSON.
//! Writes need `Authorization: Bearer <token>` when a token is configured (mandatory when the
//! API listens beyond loopback).

use std::{collections::BTreeMap, convert::Infallible, net::SocketAddr, sync::Arc};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::{
    Method, Request, Response, StatusCode, body::Incoming, header, server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sipsctp_sctp::{
    assoc::SocketId,
    endpoint::ParamChangeError,
    params::{ParamError, Scope},
};
use tokio::net::TcpListener;

use crate::state::Shared;

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

/// Serves the API on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "admin API: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(&shared, peer, req).await) }
            });
            if let Err(e) = http1::Builder::new()
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

async fn handle(shared: &Shared, peer: SocketAddr, req: Request<Incoming>) -> Reply {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
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
                Some(Ok(n)) if n <= crate::kernel::RECENT => n,
                Some(_) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("limit: an integer 0..={}", crate::kernel::RECENT),
                    );
                }
            };
            json_reply(StatusCode::OK, &shared.recent.to_json(limit))
        }
        (&Method::PUT, p) if p.starts_with("/cfg/sctp/") => {
            if let Some(denied) = authorize(shared, peer, &req) {
                return denied;
            }
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
            let body = match Limited::new(req.into_body(), 64).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "body: an integer, at most 64 bytes",
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

fn authorize(shared: &Shared, peer: SocketAddr, req: &Request<Incoming>) -> Option<Reply> {
    let Some(token) = &shared.admin_token else {
        // No token: only possible when the API listens on loopback (config rule).
        return (!peer.ip().is_loopback()).then(|| {
            error(
                StatusCode::FORBIDDEN,
                "writes are allowed from loopback only",
            )
        });
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(t) if constant_time_eq(t.as_bytes(), token.as_bytes()) => None,
        Some(_) => Some(error(StatusCode::FORBIDDEN, "wrong bearer token")),
        None => Some(error(
            StatusCode::UNAUTHORIZED,
            "writes need Authorization: Bearer <token>",
        )),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
