//! The spans an OTLP receiver (PyPI `rotel`, started with `--debug-log traces
//! --debug-log-verbosity detailed`) printed: their kind, name, times, association and
//! `sctp.retransmission` events.

/// A span rotel printed.
#[derive(Debug, Default)]
pub struct Span {
    /// Its trace id.
    pub trace: String,
    /// `SPAN_KIND_SERVER` or `SPAN_KIND_CLIENT`.
    pub kind: String,
    /// Its name (the method).
    pub name: String,
    /// Start, ns since the epoch.
    pub start: u64,
    /// End, ns since the epoch.
    pub end: u64,
    /// Its `sctp.association.id`.
    pub assoc: Option<i64>,
    /// `(timestamp, association, reason)` of each `sctp.retransmission` event.
    pub retransmissions: Vec<(u64, i64, String)>,
    /// The printout of the span.
    pub text: String,
}

/// The spans in rotel's printout.
pub fn printed_spans(out: &str) -> Vec<Span> {
    let attr = |block: &str, key: &str| -> Option<String> {
        block.lines().find_map(|l| {
            let v = l.trim().strip_prefix(&format!("-> {key}: "))?;
            let inner = v.split_once('(')?.1.strip_suffix(')')?;
            Some(inner.to_owned())
        })
    };
    let field = |block: &str, key: &str| -> String {
        block
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == key).then(|| v.trim().to_owned())
            })
            .unwrap_or_default()
    };
    out.split("\nSpan #")
        .skip(1)
        .map(|block| {
            let block = block.split("\nResourceSpans #").next().unwrap_or(block);
            let (head, events) = block.split_once("\nEvents:").unwrap_or((block, ""));
            let mut s = Span {
                trace: field(head, "Trace ID"),
                kind: field(head, "Kind"),
                name: field(head, "Name"),
                start: field(head, "Start time").parse().unwrap_or(0),
                end: field(head, "End time").parse().unwrap_or(0),
                assoc: attr(head, "sctp.association.id").and_then(|v| v.parse().ok()),
                text: block.to_owned(),
                ..Span::default()
            };
            for ev in events.split("SpanEvent #").skip(1) {
                if ev
                    .lines()
                    .any(|l| l.trim() == "-> Name: sctp.retransmission")
                {
                    let at = ev
                        .lines()
                        .find_map(|l| l.trim().strip_prefix("-> Timestamp: "))
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    let assoc = attr(ev, "sctp.association.id")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    let reason = attr(ev, "sctp.retransmission.reason").unwrap_or_default();
                    s.retransmissions.push((at, assoc, reason));
                }
            }
            s
        })
        .collect()
}
