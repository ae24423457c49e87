//! OTLP traces: joined transactions as spans (being written on the `otlp` branch; nothing can
//! construct an [`OtlpExporter`] yet).

use std::time::Duration;

use sipsctp_correlate::Joined;

/// The peers' names of a transaction.
pub struct Peers<'a> {
    /// Where the request came from.
    pub inbound: &'a str,
    /// Where it went.
    pub outbound: &'a str,
}

/// The span exporter.
pub struct OtlpExporter(());

impl OtlpExporter {
    /// Offers a joined transaction.
    pub fn offer(&self, _: &Joined, _: Peers<'_>) {}

    /// Flushes for at most `within`.
    pub async fn shutdown(self, _: Duration) {}
}
