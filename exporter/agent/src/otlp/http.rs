//! The OTLP/HTTP exporter's HTTP client: hyper 1 over HTTP/1.1 with a pooled connection, on
//! the caller's tokio runtime. Plain `http://` only (no TLS is built in).
//!
//! It sets no deadline of its own: the export task bounds every export (see the parent
//! module), and dropping the request future closes the connection.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use opentelemetry_http::{HttpClient, HttpError};

/// The largest collector response read (an OTLP response is a few bytes; a partial-success
/// message a few more).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// An [`HttpClient`] on hyper's HTTP/1.1 client.
#[derive(Debug, Clone)]
pub(crate) struct HyperHttp {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl HyperHttp {
    /// A client with hyper's connector (`TCP_NODELAY` on). Needs a tokio runtime when used.
    pub(crate) fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(1)
            .build(connector);
        Self { client }
    }
}

#[async_trait::async_trait]
impl HttpClient for HyperHttp {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let response = self
            .client
            .request(Request::from_parts(parts, Full::new(body)))
            .await?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_RESPONSE_BYTES)
            .collect()
            .await?
            .to_bytes();
        Ok(Response::from_parts(parts, body))
    }
}
