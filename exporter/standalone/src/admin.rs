//! sipsctp-exporter's HTTP API (loopback by default, read-only): `/metrics` (Prometheus),
//! `/health`, `/observed` (the processes, namespace, ports and associations in scope) and
//! `/kernel/events?limit=N`. Access as sipsctpd's ([`sipsctp_agent::access`]); at most
//! [`MAX_CONNECTIONS`] connections, a request header within [`HEADER_READ_TIMEOUT`].

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::Semaphore};

use crate::state::State;

/// Connections served at once; one more is closed as soon as it is accepted.
pub const MAX_CONNECTIONS: usize = 32;
/// How long a request header may take to arrive whole.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
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
pub async fn serve(listener: TcpListener, state: Arc<State>) {
    let Ok(local) = listener.local_addr() else {
        tracing::error!("admin API: cannot read its own address; not serving");
        return;
    };
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "admin API: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _slot = permit;
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, local, peer, &req)) }
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

/// `?limit=N` (at most `max`, 100 when absent), or why not.
fn limit<B>(req: &Request<B>, max: usize) -> Result<usize, String> {
    let q = req.uri().query().unwrap_or("");
    match q
        .split('&')
        .find_map(|kv| kv.strip_prefix("limit="))
        .map(str::parse::<usize>)
    {
        None => Ok(100.min(max)),
        Some(Ok(n)) if n <= max => Ok(n),
        Some(_) => Err(format!("limit: an integer 0..={max}")),
    }
}

/// Whether query parameter `name` is `1`.
fn query_flag<B>(req: &Request<B>, name: &str) -> bool {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .any(|kv| kv == format!("{name}=1"))
}

fn handle<B>(state: &State, local: SocketAddr, peer: SocketAddr, req: &Request<B>) -> Reply {
    if let Err(d) = sipsctp_agent::access::check(state.token.as_deref(), local, peer, req) {
        return error(d.status, d.message);
    }
    let path = req.uri().path();
    if req.method() != Method::GET {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} {path}: the API is read-only, use GET", req.method()),
        );
    }
    match path {
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            state.render_metrics(),
        ),
        "/health" => json_reply(StatusCode::OK, &state.health()),
        "/observed" => json_reply(StatusCode::OK, &state.observed_json()),
        "/kernel/events" => match limit(req, sipsctp_agent::kernel::RECENT) {
            Ok(n) => json_reply(StatusCode::OK, &state.recent.to_json(n)),
            Err(why) => error(StatusCode::BAD_REQUEST, why),
        },
        "/transactions/recent" => {
            let kernel_only = query_flag(req, "kernel");
            match (
                limit(req, sipsctp_agent::recent::RECENT_TRANSACTIONS),
                state.exporter.get(),
            ) {
                (Err(why), _) => error(StatusCode::BAD_REQUEST, why),
                (Ok(n), Some(e)) => json_reply(StatusCode::OK, &e.recent().to_json(n, kernel_only)),
                (Ok(_), None) => error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not observing yet: the target was not found",
                ),
            }
        }
        _ => error(
            StatusCode::NOT_FOUND,
            format!("no such endpoint: GET {path}"),
        ),
    }
}
