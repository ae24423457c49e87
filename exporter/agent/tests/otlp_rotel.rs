//! The OTLP exporter against a real OTLP receiver: `rotel-agent` (PyPI `rotel`, pinned by
//! `cargo xtask setup`), on loopback, printing every span it receives.
//!
//! Host tests: no SCTP, no root. rotel-agent is found through `$SIPSCTP_ROTEL_AGENT` or the
//! workspace's `tools/bin/rotel-agent`; without it every test fails and says to run
//! `cargo xtask setup` (never a silent skip). Assertions are on rotel's printout and on
//! `sipsctp_otlp_spans_total`, not on how long `offer` takes.

use std::{
    fs,
    io::Read as _,
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant, SystemTime},
};

use prometheus::Registry;
use sipsctp_agent::otlp::{Clock, OtlpConfig, OtlpExporter, Peers};
use sipsctp_correlate::{
    AssocKey, Joined, KernelNote, Leg, NoteKind, Outcome, Transaction, Transport, Verdict,
};
use sipsctp_ebpf_events::event::RetransmitReason;

/// The rotel-agent binary, or a failure that says how to get it.
fn rotel_agent() -> PathBuf {
    if let Some(p) = std::env::var_os("SIPSCTP_ROTEL_AGENT") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "SIPSCTP_ROTEL_AGENT={} is not a file: unset it and run `cargo xtask setup`",
            p.display()
        );
        return p;
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools/bin/rotel-agent");
    assert!(
        p.is_file(),
        "rotel-agent (the OTLP receiver of these tests) is not at {}: run `cargo xtask setup` \
         (or point SIPSCTP_ROTEL_AGENT at a rotel-agent binary)",
        p.display()
    );
    p
}

/// A loopback port nobody listens on now.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// A running rotel-agent; killed (by its pid) when dropped.
struct Rotel {
    child: Child,
    log: PathBuf,
}

impl Rotel {
    /// Starts rotel-agent with its OTLP/HTTP receiver on `http_port` and waits until it
    /// accepts connections.
    fn start(name: &str, http_port: u16) -> Self {
        Self::start_with(name, http_port, free_port())
    }

    /// As [`Rotel::start`], with its OTLP/gRPC receiver on `grpc_port`.
    fn start_with(name: &str, http_port: u16, grpc_port: u16) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "sipsctp-otlp-rotel-{}-{name}-{http_port}",
            std::process::id()
        ));
        fs::create_dir_all(&dir).expect("temp dir");
        let log = dir.join("rotel.log");
        let out = fs::File::create(&log).expect("rotel log");
        let err = out.try_clone().expect("rotel log");
        let child = Command::new(rotel_agent())
            .arg("start")
            .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc_port}")])
            .args(["--otlp-http-endpoint", &format!("127.0.0.1:{http_port}")])
            .args(["--exporter", "blackhole"])
            .args(["--debug-log", "traces"])
            .args(["--debug-log-verbosity", "detailed"])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start rotel-agent");
        let mut r = Rotel { child, log };
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), http_port);
        let t0 = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = r.child.try_wait() {
                panic!("rotel-agent exited ({status}):\n{}", r.output());
            }
            assert!(
                t0.elapsed() < Duration::from_secs(15),
                "rotel-agent did not listen on {addr} within 15 s:\n{}",
                r.output()
            );
            thread::sleep(Duration::from_millis(50));
        }
        r
    }

    fn output(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Waits until rotel printed something that satisfies `ok`; returns the printout.
    async fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let t0 = Instant::now();
        loop {
            let out = self.output();
            if ok(&out) {
                return out;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(15),
                "rotel did not print {what} within 15 s; it printed:\n{out}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Rotel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A "collector" that accepts connections and never answers, until dropped.
struct Silent {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Silent {
    fn start(port: u16) -> Self {
        let l = TcpListener::bind(("127.0.0.1", port)).expect("bind the silent collector");
        l.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = thread::spawn(move || {
            let mut held = Vec::new();
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => held.push(c),
                    Err(_) => thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Silent {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn spans_total(registry: &Registry, outcome: &str) -> u64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == "sipsctp_otlp_spans_total")
        .flat_map(|f| f.get_metric())
        .find(|m| {
            m.get_label()
                .iter()
                .any(|l| l.name() == "outcome" && l.value() == outcome)
        })
        .map(|m| m.get_counter().get_value() as u64)
        .unwrap_or(0)
}

/// Waits until `outcome` reached `at_least`.
async fn wait_count(registry: &Registry, outcome: &str, at_least: u64, within: Duration) {
    let t0 = Instant::now();
    loop {
        let n = spans_total(registry, outcome);
        if n >= at_least {
            return;
        }
        assert!(
            t0.elapsed() < within,
            "sipsctp_otlp_spans_total{{outcome=\"{outcome}\"}} = {n}, wanted >= {at_least} \
             within {within:?} (failed = {}, exported = {})",
            spans_total(registry, "failed"),
            spans_total(registry, "exported"),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn config(port: u16) -> OtlpConfig {
    OtlpConfig {
        endpoint: format!("http://127.0.0.1:{port}"),
        sampling_ratio: 1.0,
        max_spans_per_second: 100_000,
        ..OtlpConfig::default()
    }
}

fn clock() -> Clock {
    // mono 0 = now: the transactions' times (a few seconds since "boot") are recent.
    Clock::new(SystemTime::now(), Duration::ZERO)
}

fn peers() -> Peers<'static> {
    Peers {
        inbound: "other",
        outbound: "carrier-a",
    }
}

const ASSOC: AssocKey = AssocKey {
    netns: 4_026_531_840,
    assoc_id: sipsctp_correlate::AssocId(42),
};

/// An INVITE whose forward over SCTP was retransmitted by T3 once.
fn joined(call_id: &str) -> Joined {
    let ms = Duration::from_millis;
    let peer: SocketAddr = "127.0.0.2:5060".parse().expect("addr");
    Joined {
        tx: Transaction {
            id: 1,
            method: "INVITE".into(),
            call_id: call_id.into(),
            cseq: 1,
            branch: "z9hG4bKrotel1".into(),
            inbound: Leg {
                transport: Transport::Udp,
                peer: "127.0.0.3:5062".parse().expect("addr"),
                local: Some("127.0.0.1:5060".parse().expect("addr")),
                assoc: None,
            },
            outbound: Leg {
                transport: Transport::Sctp,
                peer,
                local: None,
                assoc: Some(ASSOC),
            },
            received_at: ms(1000),
            forwarded_at: ms(1002),
            first_response_at: Some(ms(2100)),
            ended_at: ms(2300),
            outcome: Outcome::Final(200),
            sip_retransmissions: 0,
        },
        verdict: Verdict::Yes,
        request: vec![KernelNote {
            time: ms(2050),
            kind: NoteKind::Retransmission(RetransmitReason::T3Rtx),
            assoc: ASSOC,
            peer: Some(peer.ip()),
            rto: ms(1000),
            cwnd: 4380,
            flight_size: 1234,
        }],
        response: Vec::new(),
        max_rto: Some(ms(1000)),
        incomplete: false,
    }
}

/// One span as rotel's detailed debug log prints it.
#[derive(Debug, Default)]
struct Printed {
    trace_id: String,
    parent_id: String,
    id: String,
    kind: String,
    /// The whole block (attributes and events).
    text: String,
}

/// The spans in rotel's printout (blocks that start with `Span #`; fields `Trace ID`,
/// `Parent ID`, `ID`, `Kind`).
fn printed_spans(out: &str) -> Vec<Printed> {
    out.split("\nSpan #")
        .skip(1)
        .map(|block| {
            let block = block.split("\nResourceSpans #").next().unwrap_or(block);
            let mut p = Printed {
                text: block.to_owned(),
                ..Printed::default()
            };
            for line in block.lines() {
                let Some((k, v)) = line.split_once(':') else {
                    continue;
                };
                let v = v.trim().to_owned();
                match k.trim() {
                    "Trace ID" => p.trace_id = v,
                    "Parent ID" => p.parent_id = v,
                    "ID" => p.id = v,
                    "Kind" => p.kind = v,
                    _ => {}
                }
            }
            p
        })
        .collect()
}

#[tokio::test]
async fn a_joined_transaction_reaches_rotel_as_a_server_and_client_span() {
    let port = free_port();
    let rotel = Rotel::start("spans", port);
    let registry = Registry::new();
    let e = OtlpExporter::start(&config(port), clock(), "sipsctpd-rotel-test", &registry)
        .expect("start");
    e.offer(&joined("call-spans@rotel"), peers());
    e.shutdown(Duration::from_secs(2)).await;
    assert_eq!(spans_total(&registry, "exported"), 2);
    let out = rotel
        .wait_for("both spans with the retransmission event", |o| {
            o.contains("sctp.retransmission") && o.matches("sip.transaction.branch").count() >= 2
        })
        .await;
    println!("{out}");
    for want in [
        "sipsctpd-rotel-test",
        "INVITE",
        "sctp.retransmission",
        "t3_rtx",
        "sctp.path.address",
        "127.0.0.2",
        "sctp.rto_ms",
        "sctp.cwnd",
        "4380",
        "sctp.flight_size",
        "1234",
        "sipsctp.kernel.retransmitted",
        "carrier-a",
        "call-spans@rotel",
    ] {
        assert!(
            out.contains(want),
            "rotel's printout lacks {want:?}:\n{out}"
        );
    }
    let spans = printed_spans(&out);
    assert_eq!(spans.len(), 2, "two spans:\n{out}");
    let server = spans
        .iter()
        .find(|s| s.kind == "SPAN_KIND_SERVER")
        .expect("a SERVER span");
    let client = spans
        .iter()
        .find(|s| s.kind == "SPAN_KIND_CLIENT")
        .expect("a CLIENT span");
    assert_eq!(server.trace_id.len(), 32, "{server:?}");
    assert_eq!(server.trace_id, client.trace_id, "one trace:\n{out}");
    assert!(
        server.parent_id.is_empty(),
        "the SERVER span is a root: {server:?}"
    );
    assert_eq!(
        client.parent_id, server.id,
        "the CLIENT span's parent is the SERVER span"
    );
    assert_ne!(client.id, server.id);
    // The request leg's retransmission is an event of the CLIENT span, with its attributes.
    assert!(
        !server.text.contains("sctp.retransmission"),
        "{}",
        server.text
    );
    for want in [
        "-> Name: sctp.retransmission",
        "sctp.retransmission.reason: Str(t3_rtx)",
        "sctp.association.id: Int(42)",
        "sctp.path.address: Str(127.0.0.2)",
        "sctp.rto_ms: Int(1000)",
        "sctp.cwnd: Int(4380)",
        "sctp.flight_size: Int(1234)",
        "sctp.peer: Str(carrier-a)",
        "server.address: Str(127.0.0.2)",
    ] {
        assert!(
            client.text.contains(want),
            "the CLIENT span lacks {want:?}:\n{}",
            client.text
        );
    }
    for want in ["client.address: Str(127.0.0.3)", "sctp.peer: Str(other)"] {
        assert!(
            server.text.contains(want),
            "the SERVER span lacks {want:?}:\n{}",
            server.text
        );
    }
}

#[tokio::test]
async fn a_collector_down_from_the_start_is_counted_then_export_resumes() {
    let port = free_port();
    let registry = Registry::new();
    let e = OtlpExporter::start(&config(port), clock(), "sipsctpd-down-test", &registry)
        .expect("start");
    e.offer(&joined("call-down-1@rotel"), peers());
    wait_count(&registry, "failed", 2, Duration::from_secs(10)).await;
    assert_eq!(spans_total(&registry, "exported"), 0);

    let rotel = Rotel::start("down", port);
    e.offer(&joined("call-down-2@rotel"), peers());
    wait_count(&registry, "exported", 2, Duration::from_secs(10)).await;
    rotel
        .wait_for("the call offered after it came up", |o| {
            o.contains("call-down-2@rotel")
        })
        .await;
    e.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn a_collector_that_never_answers_times_out_then_a_real_one_takes_over() {
    let port = free_port();
    let silent = Silent::start(port);
    let registry = Registry::new();
    let e = OtlpExporter::start(&config(port), clock(), "sipsctpd-slow-test", &registry)
        .expect("start");
    e.offer(&joined("call-slow-1@rotel"), peers());
    // One batch after at most a second, timed out after 5 s.
    wait_count(&registry, "failed", 2, Duration::from_secs(12)).await;
    assert_eq!(spans_total(&registry, "exported"), 0);

    drop(silent);
    let rotel = Rotel::start("slow", port);
    e.offer(&joined("call-slow-2@rotel"), peers());
    wait_count(&registry, "exported", 2, Duration::from_secs(10)).await;
    rotel
        .wait_for("the call offered after the takeover", |o| {
            o.contains("call-slow-2@rotel")
        })
        .await;
    e.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn shutdown_flushes_what_is_queued_within_its_bound() {
    // A live collector: everything queued goes out, well within the bound.
    let port = free_port();
    let rotel = Rotel::start("flush", port);
    let registry = Registry::new();
    let e = OtlpExporter::start(&config(port), clock(), "sipsctpd-flush-test", &registry)
        .expect("start");
    let calls = 600; // 1200 spans: three batches
    for i in 0..calls {
        e.offer(&joined(&format!("call-flush-{i}@rotel")), peers());
    }
    let t0 = Instant::now();
    e.shutdown(Duration::from_secs(2)).await;
    let took = t0.elapsed();
    assert_eq!(spans_total(&registry, "exported"), 2 * calls);
    assert_eq!(spans_total(&registry, "dropped_queue_full"), 0);
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    rotel
        .wait_for("the last call queued", |o| {
            o.contains(&format!("call-flush-{}@rotel", calls - 1))
        })
        .await;

    // A collector that never answers: shutdown still returns about when its bound says, and
    // the spans it could not send are counted.
    let port = free_port();
    let _silent = Silent::start(port);
    let registry = Registry::new();
    let e = OtlpExporter::start(&config(port), clock(), "sipsctpd-flush-test", &registry)
        .expect("start");
    for i in 0..10 {
        e.offer(&joined(&format!("call-stuck-{i}@rotel")), peers());
    }
    let t0 = Instant::now();
    e.shutdown(Duration::from_secs(1)).await;
    let took = t0.elapsed();
    assert!(
        took < Duration::from_millis(2500),
        "shutdown(1 s) took {took:?}"
    );
    assert_eq!(spans_total(&registry, "exported"), 0);
    assert_eq!(
        spans_total(&registry, "failed") + spans_total(&registry, "dropped_queue_full"),
        20
    );

    // The same with the export already in flight when shutdown comes: it is cut at the bound.
    let registry = Registry::new();
    let e = OtlpExporter::start(&config(port), clock(), "sipsctpd-flush-test", &registry)
        .expect("start");
    for i in 0..10 {
        e.offer(&joined(&format!("call-inflight-{i}@rotel")), peers());
    }
    // The batch goes out on the next one-second tick and hangs on the silent collector.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let t0 = Instant::now();
    e.shutdown(Duration::from_secs(1)).await;
    let took = t0.elapsed();
    assert!(
        took < Duration::from_millis(2500),
        "shutdown(1 s) with an export in flight took {took:?}"
    );
    assert_eq!(spans_total(&registry, "failed"), 20);
    assert_eq!(spans_total(&registry, "exported"), 0);
}

/// The same over OTLP/gRPC (`protocol = "grpc"`, rotel's gRPC receiver).
#[tokio::test]
async fn a_joined_transaction_reaches_rotel_over_grpc() {
    let (http_port, grpc_port) = (free_port(), free_port());
    let rotel = Rotel::start_with("grpc", http_port, grpc_port);
    let registry = Registry::new();
    let config = OtlpConfig {
        protocol: sipsctp_agent::otlp::Protocol::Grpc,
        ..config(grpc_port)
    };
    let e = OtlpExporter::start(&config, clock(), "sipsctpd-grpc-test", &registry).expect("start");
    e.offer(&joined("call-grpc@rotel"), peers());
    e.shutdown(Duration::from_secs(2)).await;
    assert_eq!(spans_total(&registry, "exported"), 2);
    let out = rotel
        .wait_for("both spans over gRPC", |o| {
            o.contains("call-grpc@rotel") && o.contains("sctp.retransmission")
        })
        .await;
    assert!(out.contains("sipsctpd-grpc-test"), "{out}");
}
