//! A joined transaction as OTLP span data: the SERVER span of the inbound leg and its CLIENT
//! child on the outbound leg, their attributes, status and kernel events.
//!
//! Pure: ids, the trace key and the clock come in as arguments; nothing here sends, samples
//! or reads a clock.

use std::{
    borrow::Cow,
    net::SocketAddr,
    time::{Duration, SystemTime},
};

use opentelemetry::{
    InstrumentationScope, KeyValue,
    trace::{Event, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState},
};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use siphasher::sip128::SipHasher13;
use sipsctp_correlate::{Joined, KernelNote, Leg, NoteKind, Outcome, Transport};
use sipsctp_ebpf_events::event::T1Timer;

use super::{Clock, Peers, sample::is_error_status};

/// Span events kept per span; the rest are counted in the span's dropped-events count.
pub(crate) const MAX_EVENTS: usize = 32;

/// The keyed hash that turns a Call-ID into a trace id (key random per process).
#[derive(Debug, Clone)]
pub(crate) struct TraceKey(SipHasher13);

impl TraceKey {
    /// A key from 128 bits.
    pub(crate) fn new(key: [u8; 16]) -> Self {
        Self(SipHasher13::new_with_key(&key))
    }

    /// The trace id of a call: never the invalid all-zero id.
    pub(crate) fn trace_id(&self, call_id: &str) -> TraceId {
        let h = self.0.hash(call_id.as_bytes()).as_u128();
        TraceId::from_bytes(h.max(1).to_be_bytes())
    }
}

/// What span building needs besides the transaction.
#[derive(Debug)]
pub(crate) struct Builder {
    pub(crate) clock: Clock,
    pub(crate) key: TraceKey,
    pub(crate) call_id: bool,
    pub(crate) scope: InstrumentationScope,
}

/// The span ids of one transaction (SERVER, CLIENT); both non-zero.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ids {
    pub(crate) server: SpanId,
    pub(crate) client: SpanId,
}

/// Whether a transaction's spans have status Error, and the `error.type`.
fn error_type(outcome: Outcome) -> Option<&'static str> {
    match outcome {
        Outcome::Expired => Some("timeout"),
        Outcome::SendFailed => Some("send_failed"),
        Outcome::Final(code) if is_error_status(code) => Some(status_label(code)),
        Outcome::Final(_) | Outcome::Forwarded => None,
    }
}

/// `error.type` of an error status: the code as a string (a bounded set).
fn status_label(code: u16) -> &'static str {
    match code {
        408 => "408",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        _ => "5xx",
    }
}

const fn transport_name(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
        Transport::Sctp => "sctp",
    }
}

fn addr_attrs(out: &mut Vec<KeyValue>, prefix: &'static str, addr: SocketAddr) {
    let (a, p) = match prefix {
        "network.peer" => ("network.peer.address", "network.peer.port"),
        "network.local" => ("network.local.address", "network.local.port"),
        "client" => ("client.address", "client.port"),
        _ => ("server.address", "server.port"),
    };
    out.push(KeyValue::new(a, addr.ip().to_string()));
    out.push(KeyValue::new(p, i64::from(addr.port())));
}

/// Attributes of one leg: transport, peer and local addresses, association, peer name.
fn leg_attrs(out: &mut Vec<KeyValue>, leg: &Leg, peer_name: &str, role: &'static str) {
    out.push(KeyValue::new(
        "network.transport",
        transport_name(leg.transport),
    ));
    out.push(KeyValue::new("network.protocol.name", "sip"));
    addr_attrs(out, "network.peer", leg.peer);
    if let Some(local) = leg.local {
        addr_attrs(out, "network.local", local);
    }
    addr_attrs(out, role, leg.peer);
    if leg.transport == Transport::Sctp
        && let Some(a) = leg.assoc
    {
        out.push(KeyValue::new(
            "sctp.association.id",
            i64::from(a.assoc_id.get()),
        ));
    }
    out.push(KeyValue::new("sctp.peer", peer_name.to_owned()));
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The attributes both spans carry: the SIP transaction and the kernel verdict.
fn common_attrs(out: &mut Vec<KeyValue>, j: &Joined, call_id: bool) {
    let tx = &j.tx;
    out.push(KeyValue::new("sip.request.method", tx.method.to_string()));
    if let Outcome::Final(code) = tx.outcome {
        out.push(KeyValue::new("sip.response.status_code", i64::from(code)));
    }
    if call_id {
        out.push(KeyValue::new("sip.call_id", tx.call_id.to_string()));
    }
    out.push(KeyValue::new("sip.cseq", i64::from(tx.cseq)));
    out.push(KeyValue::new(
        "sip.transaction.branch",
        tx.branch.to_string(),
    ));
    out.push(KeyValue::new(
        "sip.request.retransmissions",
        i64::from(tx.sip_retransmissions),
    ));
    out.push(KeyValue::new(
        "sipsctp.kernel.retransmitted",
        j.verdict.as_str(),
    ));
    if j.incomplete {
        out.push(KeyValue::new("sipsctp.kernel.incomplete", true));
    }
    if let Some(rto) = j.max_rto {
        out.push(KeyValue::new("sctp.rto.max_ms", ms(rto)));
    }
    if let Some(e) = error_type(tx.outcome) {
        out.push(KeyValue::new("error.type", e));
    }
}

/// One kernel note as a span event.
fn event(clock: &Clock, n: &KernelNote) -> Event {
    let mut a = Vec::with_capacity(6);
    let name = match n.kind {
        NoteKind::Retransmission(_) => {
            if let Some(r) = n.kind.reason() {
                a.push(KeyValue::new("sctp.retransmission.reason", r.as_str()));
            }
            "sctp.retransmission"
        }
        NoteKind::T3Expired => "sctp.t3_rtx.expired",
        NoteKind::T1Expired(t) => {
            let timer = match t {
                T1Timer::Init => "init",
                T1Timer::Cookie => "cookie",
            };
            a.push(KeyValue::new("sctp.t1.timer", timer));
            "sctp.t1.expired"
        }
        NoteKind::PathDown => {
            a.push(KeyValue::new("sctp.path.state", "down"));
            "sctp.path.change"
        }
        NoteKind::CommLost => {
            a.push(KeyValue::new("sctp.association.state", "comm_lost"));
            "sctp.association.change"
        }
    };
    a.push(KeyValue::new(
        "sctp.association.id",
        i64::from(n.assoc.assoc_id.get()),
    ));
    if let Some(p) = n.peer {
        a.push(KeyValue::new("sctp.path.address", p.to_string()));
    }
    if matches!(
        n.kind,
        NoteKind::Retransmission(_) | NoteKind::T3Expired | NoteKind::T1Expired(_)
    ) {
        a.push(KeyValue::new("sctp.rto_ms", ms(n.rto)));
    }
    if matches!(n.kind, NoteKind::Retransmission(_) | NoteKind::T3Expired) {
        a.push(KeyValue::new("sctp.cwnd", i64::from(n.cwnd)));
        a.push(KeyValue::new("sctp.flight_size", i64::from(n.flight_size)));
    }
    Event::new(name, clock.wall(n.time), a, 0)
}

/// At most [`MAX_EVENTS`] events, in time order; the rest counted as dropped.
fn events<'a>(clock: &Clock, notes: impl Iterator<Item = &'a KernelNote>) -> SpanEvents {
    let mut all: Vec<&KernelNote> = notes.collect();
    all.sort_by_key(|n| n.time);
    let dropped = all.len().saturating_sub(MAX_EVENTS);
    let mut ev = SpanEvents::default();
    ev.events = all
        .iter()
        .take(MAX_EVENTS)
        .map(|n| event(clock, n))
        .collect();
    ev.dropped_count = u32::try_from(dropped).unwrap_or(u32::MAX);
    ev
}

impl Builder {
    /// A span without attributes, events or status yet.
    fn span(
        &self,
        ctx: SpanContext,
        parent: SpanId,
        kind: SpanKind,
        name: Cow<'static, str>,
        (start, end): (SystemTime, SystemTime),
    ) -> SpanData {
        SpanData {
            span_context: ctx,
            parent_span_id: parent,
            parent_span_is_remote: false,
            span_kind: kind,
            name,
            start_time: start,
            end_time: end.max(start),
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: self.scope.clone(),
        }
    }

    /// The spans of `j`: SERVER first, then its CLIENT child unless the request was never
    /// sent. Request-leg notes go on the CLIENT span (on the SERVER span when there is none),
    /// response-leg notes on the SERVER span.
    pub(crate) fn build(&self, j: &Joined, peers: Peers<'_>, ids: Ids) -> Vec<SpanData> {
        let tx = &j.tx;
        let trace_id = self.key.trace_id(&tx.call_id);
        let ctx = |id| SpanContext::new(trace_id, id, TraceFlags::SAMPLED, false, TraceState::NONE);
        let status = match error_type(tx.outcome) {
            Some(e) => Status::error(e),
            None => Status::Ok,
        };
        let name: Cow<'static, str> = Cow::Owned(tx.method.to_string());
        let client = tx.outcome != Outcome::SendFailed;
        let end = self.clock.wall(tx.ended_at);

        let mut server = self.span(
            ctx(ids.server),
            SpanId::INVALID,
            SpanKind::Server,
            name.clone(),
            (self.clock.wall(tx.received_at), end),
        );
        leg_attrs(&mut server.attributes, &tx.inbound, peers.inbound, "client");
        common_attrs(&mut server.attributes, j, self.call_id);
        server.events = if client {
            events(&self.clock, j.response.iter())
        } else {
            events(&self.clock, j.response.iter().chain(&j.request))
        };
        server.status = status.clone();
        let mut spans = Vec::with_capacity(2);
        spans.push(server);
        if client {
            let mut span = self.span(
                ctx(ids.client),
                ids.server,
                SpanKind::Client,
                name,
                (self.clock.wall(tx.forwarded_at), end),
            );
            leg_attrs(&mut span.attributes, &tx.outbound, peers.outbound, "server");
            common_attrs(&mut span.attributes, j, self.call_id);
            span.events = events(&self.clock, j.request.iter());
            span.status = status;
            spans.push(span);
        }
        spans
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::{
        net::{IpAddr, Ipv4Addr},
        time::UNIX_EPOCH,
    };

    use opentelemetry::Value;
    use sipsctp_correlate::{AssocKey, Transaction, Verdict};
    use sipsctp_ebpf_events::event::RetransmitReason;

    use super::*;

    fn sa(a: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), port)
    }

    const S: fn(u64) -> Duration = Duration::from_secs;
    const MS: fn(u64) -> Duration = Duration::from_millis;

    /// A plain INVITE answered 200 fast: UDP in, SCTP out; times in seconds since boot 100.
    pub(crate) fn joined() -> Joined {
        Joined {
            tx: Transaction {
                id: 7,
                method: "INVITE".into(),
                call_id: "a84b4c76e66710@pc33.example.com".into(),
                cseq: 314_159,
                branch: "z9hG4bK776asdhds".into(),
                inbound: Leg {
                    transport: Transport::Udp,
                    peer: sa([192, 0, 2, 10], 5060),
                    local: Some(sa([192, 0, 2, 1], 5060)),
                    assoc: None,
                },
                outbound: Leg {
                    transport: Transport::Sctp,
                    peer: sa([198, 51, 100, 7], 5060),
                    local: None,
                    assoc: Some(AssocKey {
                        netns: 4_026_531_840,
                        assoc_id: sipsctp_correlate::AssocId(42),
                    }),
                },
                received_at: S(100),
                forwarded_at: S(100) + MS(2),
                first_response_at: Some(S(100) + MS(50)),
                ended_at: S(100) + MS(300),
                outcome: Outcome::Final(200),
                sip_retransmissions: 0,
            },
            verdict: Verdict::No,
            request: Vec::new(),
            response: Vec::new(),
            max_rto: None,
            incomplete: false,
        }
    }

    pub(crate) fn note_t3(time: Duration) -> KernelNote {
        KernelNote {
            time,
            kind: NoteKind::Retransmission(RetransmitReason::T3Rtx),
            assoc: AssocKey {
                netns: 4_026_531_840,
                assoc_id: sipsctp_correlate::AssocId(42),
            },
            peer: Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7))),
            rto: MS(1000),
            cwnd: 4380,
            flight_size: 1200,
        }
    }

    fn builder(call_id: bool) -> Builder {
        Builder {
            // mono 100 s = wall 1_700_000_000 s
            clock: Clock::new(UNIX_EPOCH + S(1_700_000_000), S(100)),
            key: TraceKey::new([7; 16]),
            call_id,
            scope: InstrumentationScope::builder("test").build(),
        }
    }

    fn ids() -> Ids {
        Ids {
            server: SpanId::from_bytes([1; 8]),
            client: SpanId::from_bytes([2; 8]),
        }
    }

    fn peers() -> Peers<'static> {
        Peers {
            inbound: "other",
            outbound: "carrier-a",
        }
    }

    fn attr<'a>(s: &'a SpanData, key: &str) -> Option<&'a Value> {
        s.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
    }

    fn ev_attr<'a>(e: &'a Event, key: &str) -> Option<&'a Value> {
        e.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
    }

    fn wall(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + S(1_700_000_000 + secs) + MS(millis)
    }

    #[test]
    fn server_and_client_spans_share_the_trace_with_a_parent_link() {
        let j = joined();
        let spans = builder(true).build(&j, peers(), ids());
        assert_eq!(spans.len(), 2);
        let (server, client) = (&spans[0], &spans[1]);
        assert_eq!(server.span_kind, SpanKind::Server);
        assert_eq!(client.span_kind, SpanKind::Client);
        assert_eq!(server.name, "INVITE");
        assert_eq!(client.name, "INVITE");
        assert_eq!(
            server.span_context.trace_id(),
            client.span_context.trace_id()
        );
        assert_ne!(server.span_context.trace_id(), TraceId::INVALID);
        assert_eq!(server.span_context.span_id(), ids().server);
        assert_eq!(client.span_context.span_id(), ids().client);
        assert_eq!(server.parent_span_id, SpanId::INVALID);
        assert_eq!(client.parent_span_id, ids().server);
        assert!(server.span_context.is_sampled());
        // times through the clock: wall = wall0 + (mono - mono0)
        assert_eq!(server.start_time, wall(0, 0));
        assert_eq!(server.end_time, wall(0, 300));
        assert_eq!(client.start_time, wall(0, 2));
        assert_eq!(client.end_time, wall(0, 300));
        assert_eq!(server.status, Status::Ok);
        assert_eq!(client.status, Status::Ok);
    }

    #[test]
    fn a_call_shares_one_trace_and_calls_differ() {
        let b = builder(true);
        let invite = joined();
        let mut bye = joined();
        bye.tx.method = "BYE".into();
        bye.tx.cseq += 1;
        let mut other = joined();
        other.tx.call_id = "another-call".into();
        let t = |j: &Joined| b.build(j, peers(), ids())[0].span_context.trace_id();
        assert_eq!(t(&invite), t(&bye));
        assert_ne!(t(&invite), t(&other));
        // The key is what makes it: another process (key) gives another id.
        let mut b2 = builder(true);
        b2.key = TraceKey::new([8; 16]);
        assert_ne!(
            b2.build(&invite, peers(), ids())[0].span_context.trace_id(),
            t(&invite)
        );
    }

    #[test]
    fn attributes_per_leg() {
        let mut j = joined();
        j.max_rto = Some(MS(1500));
        j.incomplete = true;
        j.verdict = Verdict::Yes;
        j.tx.sip_retransmissions = 2;
        let spans = builder(true).build(&j, peers(), ids());
        let (server, client) = (&spans[0], &spans[1]);
        let s = |k| attr(server, k).cloned();
        let c = |k| attr(client, k).cloned();
        assert_eq!(s("network.transport"), Some("udp".into()));
        assert_eq!(c("network.transport"), Some("sctp".into()));
        assert_eq!(s("network.protocol.name"), Some("sip".into()));
        assert_eq!(s("network.peer.address"), Some("192.0.2.10".into()));
        assert_eq!(s("network.peer.port"), Some(5060_i64.into()));
        assert_eq!(s("network.local.address"), Some("192.0.2.1".into()));
        assert_eq!(c("network.local.address"), None, "unknown local address");
        assert_eq!(s("client.address"), Some("192.0.2.10".into()));
        assert_eq!(s("server.address"), None);
        assert_eq!(c("server.address"), Some("198.51.100.7".into()));
        assert_eq!(c("server.port"), Some(5060_i64.into()));
        assert_eq!(c("client.address"), None);
        assert_eq!(c("sctp.association.id"), Some(42_i64.into()));
        assert_eq!(s("sctp.association.id"), None, "UDP leg");
        assert_eq!(s("sctp.peer"), Some("other".into()));
        assert_eq!(c("sctp.peer"), Some("carrier-a".into()));
        for span in [server, client] {
            let get = |k| attr(span, k).cloned();
            assert_eq!(get("sip.request.method"), Some("INVITE".into()));
            assert_eq!(get("sip.response.status_code"), Some(200_i64.into()));
            assert_eq!(
                get("sip.call_id"),
                Some("a84b4c76e66710@pc33.example.com".into())
            );
            assert_eq!(get("sip.cseq"), Some(314_159_i64.into()));
            assert_eq!(
                get("sip.transaction.branch"),
                Some("z9hG4bK776asdhds".into())
            );
            assert_eq!(get("sip.request.retransmissions"), Some(2_i64.into()));
            assert_eq!(get("sipsctp.kernel.retransmitted"), Some("yes".into()));
            assert_eq!(get("sipsctp.kernel.incomplete"), Some(true.into()));
            assert_eq!(get("sctp.rto.max_ms"), Some(1500_i64.into()));
            assert_eq!(get("error.type"), None);
        }
    }

    #[test]
    fn call_id_can_be_turned_off_and_incomplete_is_only_said_when_true() {
        let spans = builder(false).build(&joined(), peers(), ids());
        for s in &spans {
            assert_eq!(attr(s, "sip.call_id"), None);
            assert_eq!(attr(s, "sipsctp.kernel.incomplete"), None);
            assert_eq!(attr(s, "sctp.rto.max_ms"), None);
        }
        // The trace id still comes from the Call-ID.
        assert_eq!(
            spans[0].span_context.trace_id(),
            builder(true).build(&joined(), peers(), ids())[0]
                .span_context
                .trace_id()
        );
    }

    #[test]
    fn status_and_error_type() {
        let cases = [
            (Outcome::Final(200), None),
            (Outcome::Final(486), None),
            (Outcome::Final(408), Some("408")),
            (Outcome::Final(503), Some("503")),
            (Outcome::Final(580), Some("5xx")),
            (Outcome::Expired, Some("timeout")),
            (Outcome::SendFailed, Some("send_failed")),
        ];
        for (outcome, err) in cases {
            let mut j = joined();
            j.tx.outcome = outcome;
            let spans = builder(true).build(&j, peers(), ids());
            for s in &spans {
                match err {
                    None => assert_eq!(s.status, Status::Ok, "{outcome:?}"),
                    Some(e) => {
                        assert_eq!(s.status, Status::error(e), "{outcome:?}");
                        assert_eq!(attr(s, "error.type"), Some(&Value::from(e)));
                    }
                }
            }
            let status_code = attr(&spans[0], "sip.response.status_code").is_some();
            assert_eq!(status_code, matches!(outcome, Outcome::Final(_)));
        }
    }

    #[test]
    fn send_failed_has_a_server_span_only_carrying_all_notes() {
        let mut j = joined();
        j.tx.outcome = Outcome::SendFailed;
        j.tx.first_response_at = None;
        j.request.push(note_t3(S(100) + MS(10)));
        let spans = builder(true).build(&j, peers(), ids());
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].span_kind, SpanKind::Server);
        assert_eq!(spans[0].events.len(), 1);
        assert_eq!(spans[0].status, Status::error("send_failed"));
    }

    #[test]
    fn request_notes_on_client_response_notes_on_server() {
        let mut j = joined();
        j.request.push(note_t3(S(100) + MS(1020)));
        let mut resp = note_t3(S(100) + MS(1100));
        resp.kind = NoteKind::Retransmission(RetransmitReason::FastRtx);
        resp.assoc.assoc_id = sipsctp_correlate::AssocId(9);
        resp.peer = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)));
        j.response.push(resp);
        let spans = builder(true).build(&j, peers(), ids());
        let (server, client) = (&spans[0], &spans[1]);
        assert_eq!(client.events.len(), 1);
        let e = &client.events[0];
        assert_eq!(e.name, "sctp.retransmission");
        assert_eq!(e.timestamp, wall(1, 20));
        let a = |k| ev_attr(e, k).cloned();
        assert_eq!(a("sctp.retransmission.reason"), Some("t3_rtx".into()));
        assert_eq!(a("sctp.association.id"), Some(42_i64.into()));
        assert_eq!(a("sctp.path.address"), Some("198.51.100.7".into()));
        assert_eq!(a("sctp.rto_ms"), Some(1000_i64.into()));
        assert_eq!(a("sctp.cwnd"), Some(4380_i64.into()));
        assert_eq!(a("sctp.flight_size"), Some(1200_i64.into()));
        assert_eq!(server.events.len(), 1);
        assert_eq!(
            ev_attr(&server.events[0], "sctp.retransmission.reason"),
            Some(&Value::from("fast_rtx"))
        );
        assert_eq!(
            ev_attr(&server.events[0], "sctp.association.id"),
            Some(&Value::from(9_i64))
        );
    }

    #[test]
    fn event_names_per_kind() {
        let kinds = [
            (NoteKind::T3Expired, "sctp.t3_rtx.expired", None),
            (
                NoteKind::T1Expired(T1Timer::Init),
                "sctp.t1.expired",
                Some(("sctp.t1.timer", "init")),
            ),
            (
                NoteKind::T1Expired(T1Timer::Cookie),
                "sctp.t1.expired",
                Some(("sctp.t1.timer", "cookie")),
            ),
            (
                NoteKind::PathDown,
                "sctp.path.change",
                Some(("sctp.path.state", "down")),
            ),
            (
                NoteKind::CommLost,
                "sctp.association.change",
                Some(("sctp.association.state", "comm_lost")),
            ),
            (
                NoteKind::Retransmission(RetransmitReason::T1Rtx),
                "sctp.retransmission",
                Some(("sctp.retransmission.reason", "t1_init")),
            ),
            (
                NoteKind::Retransmission(RetransmitReason::Pmtud),
                "sctp.retransmission",
                Some(("sctp.retransmission.reason", "pmtud")),
            ),
        ];
        let b = builder(true);
        for (kind, name, extra) in kinds {
            let mut n = note_t3(S(101));
            n.kind = kind;
            let e = event(&b.clock, &n);
            assert_eq!(e.name, name);
            if let Some((k, v)) = extra {
                assert_eq!(ev_attr(&e, k), Some(&Value::from(v)), "{name}");
            }
            assert_eq!(
                ev_attr(&e, "sctp.association.id"),
                Some(&Value::from(42_i64))
            );
        }
    }

    #[test]
    fn at_most_32_events_a_span_in_time_order() {
        let mut j = joined();
        for i in (0..40).rev() {
            j.request.push(note_t3(S(100) + MS(10 + i)));
        }
        let spans = builder(true).build(&j, peers(), ids());
        let client = &spans[1];
        assert_eq!(client.events.len(), MAX_EVENTS);
        assert_eq!(client.events.dropped_count, 8);
        assert_eq!(client.events[0].timestamp, wall(0, 10));
        assert!(
            client
                .events
                .windows(2)
                .all(|w| w[0].timestamp <= w[1].timestamp)
        );
        assert_eq!(spans[0].events.len(), 0);
    }

    #[test]
    fn clock_maps_monotonic_to_wall_both_ways() {
        let c = Clock::new(UNIX_EPOCH + S(1000), S(50));
        assert_eq!(c.wall(S(50)), UNIX_EPOCH + S(1000));
        assert_eq!(c.wall(S(52)), UNIX_EPOCH + S(1002));
        assert_eq!(c.wall(S(49)), UNIX_EPOCH + S(999));
        // Before the epoch cannot be said: clamped, not a panic.
        let c = Clock::new(UNIX_EPOCH + S(1), S(50));
        assert_eq!(c.wall(S(0)), UNIX_EPOCH);
    }
}
