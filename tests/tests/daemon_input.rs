//! `sipsctpd` against bad input, over UDP and over SCTP (a raw one-to-many socket of
//! `sipsctp_sctp`), with the test as the daemon's UDP upstream:
//!
//! - the corpus of `tests/data/daemon/corpus/` plus generated cases (200 header fields, binary
//!   garbage, an oversized message: 70 KiB over SCTP, 40 000 B over UDP against a
//!   `max_message_size` of 32 768): each gets exactly the expected answer (400, 483) or
//!   exactly one more drop under the expected reason in `/metrics`
//!   (`sipsctp_sip_messages_dropped_total{reason}`, `sipsctp_sctp_messages_dropped_total
//!   {reason="too_large"}`), nothing else, and after each one the daemon still answers an
//!   OPTIONS keep-alive 200;
//! - the keep-alive (an OPTIONS whose Request-URI is the daemon) is answered 200 and nothing
//!   reaches the upstream; `Max-Forwards: 0` on a request to forward gets 483;
//! - after all of it a request to forward still reaches the upstream (own Via on top,
//!   Max-Forwards decremented) and the upstream's 200 comes back to the client;
//! - a dead SCTP upstream: every send counted as failed, the log thinned to a line a second
//!   that says how many it held back.

use std::{
    net::{SocketAddr, UdpSocket},
    path::Path,
    time::Duration,
};

use sipsctp_sctp::{Incoming, SctpSocket, SendOptions, SendTarget, SocketConfig};
use sipsctp_tests::{
    calls,
    daemon::{Daemon, Metrics, promtool_check, wait_until},
    ports::{daemon_input as ports, lo},
    require_sctp, vm_kernel,
};

const DAEMON_PORT: u16 = ports::DAEMON;
const UPSTREAM_PORT: u16 = ports::UPSTREAM;
const ADMIN: SocketAddr = lo(ports::ADMIN);
const MAX_MESSAGE_SIZE: usize = 32_768;

fn config() -> String {
    calls::config(
        &[
            ("sctp", &["127.0.0.1"], DAEMON_PORT),
            ("udp", &["127.0.0.1"], DAEMON_PORT),
        ],
        &[(None, format!("udp:127.0.0.1:{UPSTREAM_PORT}").as_str())],
        ADMIN,
        &format!(
            "[sip]\nmax_message_size = {MAX_MESSAGE_SIZE}\n\n[log]\nlevel = \"debug\"\n\n\
             # Not needed here; loading the probes takes the VM's emulated CPUs some 10 s.\n\
             [ebpf]\nmode = \"off\"\n"
        ),
    )
}

/// The test's side of one transport.
enum Client {
    Udp(UdpSocket),
    Sctp(Box<SctpSocket>),
}

impl Client {
    fn name(&self) -> &'static str {
        match self {
            Client::Udp(_) => "UDP",
            Client::Sctp(_) => "SCTP",
        }
    }

    fn daemon() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], DAEMON_PORT))
    }

    async fn send(&self, data: &[u8]) {
        match self {
            Client::Udp(s) => {
                s.send_to(data, Client::daemon())
                    .unwrap_or_else(|e| panic!("UDP send of {} B: {e}", data.len()));
            }
            Client::Sctp(s) => {
                s.send(
                    data,
                    SendTarget::Addr(Client::daemon()),
                    &SendOptions::default(),
                )
                .await
                .unwrap_or_else(|e| panic!("SCTP send of {} B: {e}", data.len()));
            }
        }
    }

    /// The next SIP message from the daemon within `limit`.
    async fn recv(&self, limit: Duration) -> Option<String> {
        match self {
            Client::Udp(s) => {
                s.set_read_timeout(Some(limit)).expect("timeout");
                let mut buf = vec![0u8; 70_000];
                match s.recv_from(&mut buf) {
                    Ok((n, _)) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
                    Err(_) => None,
                }
            }
            Client::Sctp(s) => {
                let deadline = tokio::time::Instant::now() + limit;
                loop {
                    let got = tokio::time::timeout_at(deadline, s.recv()).await.ok()?;
                    match got.expect("SCTP recv") {
                        Incoming::Message { data, .. } => {
                            return Some(String::from_utf8_lossy(&data).into_owned());
                        }
                        Incoming::Notification { .. } => continue,
                        Incoming::Dropped { reason, .. } => {
                            panic!("the client dropped a message from the daemon: {reason:?}")
                        }
                    }
                }
            }
        }
    }
}

/// A corpus file as sent: comment line removed, LF -> CRLF, placeholders filled.
fn corpus(file: &str, transport: &str, n: u32) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/daemon/corpus")
        .join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("corpus file {}: {e}", path.display()));
    let body: String = text
        .lines()
        .skip_while(|l| l.starts_with('#'))
        .map(|l| format!("{l}\r\n"))
        .collect();
    body.replace("{transport}", transport)
        .replace("{branch}", &format!("z9hG4bK-corpus-{transport}-{n}"))
        .replace("{n}", &n.to_string())
        .into_bytes()
}

/// A well-formed OPTIONS from the client: to the daemon itself (`keepalive`) or to
/// sip:bob@example.net (forwarded to the upstream), with `body_len` bytes of body.
fn options(
    transport: &str,
    n: u32,
    keepalive: bool,
    extra_headers: &str,
    body_len: usize,
) -> Vec<u8> {
    let uri = if keepalive {
        format!("sip:127.0.0.1:{DAEMON_PORT}")
    } else {
        "sip:bob@example.net".to_owned()
    };
    let body = "x".repeat(body_len);
    format!(
        "OPTIONS {uri} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} 127.0.0.1:5999;branch=z9hG4bK-ok-{transport}-{n};rport\r\n\
         From: <sip:alice@example.org>;tag=ok{n}\r\n\
         To: <{uri}>\r\n\
         Call-ID: ok-{transport}-{n}@127.0.0.1\r\n\
         CSeq: {n} OPTIONS\r\n\
         Max-Forwards: 70\r\n\
         {extra_headers}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Expected outcome of one input.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// This status line start from the daemon, e.g. "SIP/2.0 400".
    Answer(&'static str),
    /// No answer; `sipsctp_sip_messages_dropped_total{reason}` + 1.
    SipDrop(&'static str),
    /// No answer; `sipsctp_sctp_messages_dropped_total{reason}` + 1.
    SctpDrop(&'static str),
}

/// Every drop counter, for deltas.
fn drops(m: &Metrics) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = [
        "malformed",
        "too_many_hops",
        "loop",
        "unroutable",
        "misrouted_response",
        "stale_response",
        "response_for_self",
        "unresolvable_via",
        "unsupported_transport",
        "send_failed",
    ]
    .iter()
    .map(|r| (format!("sip:{r}"), m.sip_dropped(r)))
    .collect();
    for r in [
        "too_large",
        "incomplete",
        "rejected_association",
        "bad_notification",
    ] {
        v.push((format!("sctp:{r}"), m.sctp_dropped(r)));
    }
    v
}

/// Sends the whole corpus over `client`; checks each outcome exactly.
async fn run_corpus(daemon: &Daemon, client: &Client, upstream: &UdpSocket, n: &mut u32) -> usize {
    let t = client.name();
    let mut cases: Vec<(String, Vec<u8>, Expect)> = Vec::new();
    for (file, expect) in [
        ("truncated.sip", Expect::SipDrop("malformed")),
        ("wrong_content_length.sip", Expect::Answer("SIP/2.0 400 ")),
        ("bad_via.sip", Expect::SipDrop("malformed")),
        ("no_call_id.sip", Expect::SipDrop("malformed")),
        ("cseq_mismatch.sip", Expect::Answer("SIP/2.0 400 ")),
        ("bad_max_forwards.sip", Expect::Answer("SIP/2.0 400 ")),
        ("max_forwards_0.sip", Expect::Answer("SIP/2.0 483 ")),
        ("ack_max_forwards_0.sip", Expect::SipDrop("too_many_hops")),
        ("stray_response.sip", Expect::SipDrop("misrouted_response")),
    ] {
        *n += 1;
        cases.push((file.to_owned(), corpus(file, t, *n), expect));
    }
    *n += 1;
    let headers: String = (0..200).map(|i| format!("X-Filler-{i}: {i}\r\n")).collect();
    cases.push((
        "200 header fields".into(),
        options(t, *n, true, &headers, 0),
        Expect::SipDrop("malformed"),
    ));
    // Deterministic binary garbage, every byte value, no SIP start line.
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    cases.push((
        "4 KiB of binary garbage".into(),
        garbage,
        Expect::SipDrop("malformed"),
    ));
    *n += 1;
    match client {
        Client::Sctp(_) => cases.push((
            "a 70 KiB OPTIONS".into(),
            options(t, *n, true, "", 70 * 1024),
            Expect::SctpDrop("too_large"),
        )),
        // A datagram cannot carry 70 KiB: 40 000 B, above the daemon's 32 768.
        Client::Udp(_) => cases.push((
            "a 40 000 B OPTIONS".into(),
            options(t, *n, true, "", 40_000 - 300),
            Expect::SipDrop("malformed"),
        )),
    }

    for (what, bytes, expect) in &cases {
        let before = daemon.metrics();
        client.send(bytes).await;
        let answer = match expect {
            Expect::Answer(_) => client.recv(Duration::from_secs(5)).await,
            _ => None,
        };
        // The next good request is served, which also means the bad one was processed.
        *n += 1;
        client.send(&options(t, *n, true, "", 0)).await;
        let mut keepalive = client.recv(Duration::from_secs(5)).await;
        let mut unexpected = None;
        if !matches!(expect, Expect::Answer(_))
            && let Some(first) = &keepalive
            && !first.contains(&format!("CSeq: {n} OPTIONS"))
        {
            // An answer to the bad input came first.
            unexpected = keepalive.take();
            keepalive = client.recv(Duration::from_secs(5)).await;
        }
        let after = daemon.metrics();
        let first_line = |s: &Option<String>| {
            s.as_deref()
                .map(|x| x.lines().next().unwrap_or("").to_owned())
                .unwrap_or_else(|| "<nothing>".into())
        };
        eprintln!(
            "{t} {what}: answer {}, keep-alive after it {}",
            first_line(&answer.clone().or(unexpected.clone())),
            first_line(&keepalive)
        );
        assert!(
            unexpected.is_none(),
            "kernel {}: {t} {what}: expected {expect:?}, but the daemon answered {unexpected:?}",
            vm_kernel()
        );
        let ka = keepalive.unwrap_or_else(|| {
            panic!(
                "kernel {}: {t} {what}: the keep-alive OPTIONS sent after it got no answer within \
                 5 s: the daemon stopped serving",
                vm_kernel()
            )
        });
        assert!(
            ka.starts_with("SIP/2.0 200 ") && ka.contains(&format!("CSeq: {n} OPTIONS")),
            "{t} {what}: the keep-alive after it: {ka:?}"
        );
        // Drop counters: exactly the expected one moved, by one.
        let (d0, d1) = (drops(&before), drops(&after));
        let moved: Vec<(String, u64)> = d0
            .iter()
            .zip(&d1)
            .filter(|(a, b)| a.1 != b.1)
            .map(|(a, b)| (a.0.clone(), b.1 - a.1))
            .collect();
        let want: Vec<(String, u64)> = match expect {
            Expect::Answer(_) => vec![],
            Expect::SipDrop(r) => vec![(format!("sip:{r}"), 1)],
            Expect::SctpDrop(r) => vec![(format!("sctp:{r}"), 1)],
        };
        assert_eq!(
            moved,
            want,
            "kernel {}: {t} {what}: drop counters that moved (reason, increase)",
            vm_kernel()
        );
        if let Expect::Answer(status) = expect {
            let a = answer.unwrap_or_else(|| {
                panic!(
                    "kernel {}: {t} {what}: no answer within 5 s, expected `{status}...`",
                    vm_kernel()
                )
            });
            assert!(
                a.starts_with(status),
                "{t} {what}: expected `{status}...`, got {a:?}"
            );
            // The daemon's own response: its To tag, the request's Via with received/rport.
            assert!(
                a.contains(";tag=sx"),
                "{t} {what}: the daemon's To tag: {a:?}"
            );
            let class = format!("{}xx", &status[8..9]);
            assert_eq!(
                after.sum(
                    "sipsctp_sip_responses_total",
                    &[("status_class", &class), ("direction", "out")]
                ) - before.sum(
                    "sipsctp_sip_responses_total",
                    &[("status_class", &class), ("direction", "out")]
                ),
                // The keep-alive's 200 is 2xx, not this class.
                1,
                "{t} {what}: one {class} response counted out"
            );
        }
        // Nothing was forwarded.
        assert_eq!(
            after.sum("sipsctp_sip_requests_total", &[("direction", "out")]),
            before.sum("sipsctp_sip_requests_total", &[("direction", "out")]),
            "{t} {what}: nothing may be forwarded"
        );
        assert_upstream_silent(upstream, &format!("{t} {what}"));
    }
    cases.len()
}

fn assert_upstream_silent(upstream: &UdpSocket, what: &str) {
    upstream.set_nonblocking(true).expect("nonblocking");
    let mut buf = vec![0u8; 70_000];
    if let Ok((n, from)) = upstream.recv_from(&mut buf) {
        panic!(
            "{what}: the upstream received {n} B from {from}: {:?}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
    upstream.set_nonblocking(false).expect("blocking");
}

/// A 200 OK for `request` as an upstream sends it: the Via lines, From, To (+tag), Call-ID,
/// CSeq copied.
fn ok_for(request: &str) -> String {
    let mut out = String::from("SIP/2.0 200 OK\r\n");
    for line in request
        .split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .lines()
        .skip(1)
    {
        let name = line
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match name.as_str() {
            "via" | "from" | "call-id" | "cseq" => out.push_str(&format!("{line}\r\n")),
            "to" => out.push_str(&format!("{line};tag=upstream\r\n")),
            _ => {}
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

/// A request forwarded through the daemon to the upstream and its 200 back.
async fn relayed_round_trip(client: &Client, upstream: &UdpSocket, n: &mut u32) {
    let t = client.name();
    *n += 1;
    client.send(&options(t, *n, false, "", 0)).await;
    upstream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = vec![0u8; 70_000];
    let (len, from) = upstream.recv_from(&mut buf).unwrap_or_else(|e| {
        panic!(
            "kernel {}: {t}: the OPTIONS to sip:bob@example.net did not reach the upstream: {e}",
            vm_kernel()
        )
    });
    let fwd = String::from_utf8_lossy(&buf[..len]).into_owned();
    assert_eq!(
        from,
        SocketAddr::from(([127, 0, 0, 1], DAEMON_PORT)),
        "forwarded from the daemon's UDP listener"
    );
    let vias: Vec<&str> = fwd.lines().filter(|l| l.starts_with("Via:")).collect();
    assert_eq!(
        vias.len(),
        2,
        "{t}: the daemon's Via on top of the client's: {fwd}"
    );
    assert!(
        vias[0].starts_with(&format!(
            "Via: SIP/2.0/UDP 127.0.0.1:{DAEMON_PORT};branch=z9hG4bKsx"
        )),
        "{t}: the daemon's Via: {fwd}"
    );
    assert!(
        vias[1].contains(&format!("SIP/2.0/{t} 127.0.0.1:5999"))
            && vias[1].contains("received=127.0.0.1"),
        "{t}: the client's Via with received/rport: {fwd}"
    );
    assert!(
        fwd.contains("Max-Forwards: 69\r\n"),
        "{t}: Max-Forwards decremented: {fwd}"
    );
    upstream
        .send_to(ok_for(&fwd).as_bytes(), from)
        .expect("upstream's 200");
    let back = client
        .recv(Duration::from_secs(5))
        .await
        .unwrap_or_else(|| {
            panic!(
                "kernel {}: {t}: the upstream's 200 did not come back",
                vm_kernel()
            )
        });
    assert!(
        back.starts_with("SIP/2.0 200 OK")
            && back.contains("tag=upstream")
            && back.contains(&format!("CSeq: {n} OPTIONS")),
        "{t}: the upstream's 200 relayed back: {back:?}"
    );
    assert_eq!(
        back.lines().filter(|l| l.starts_with("Via:")).count(),
        1,
        "{t}: the daemon removed its own Via: {back:?}"
    );
}

#[tokio::test]
async fn daemon_malformed_corpus_over_udp_and_sctp_gets_400_or_a_counted_drop() {
    require_sctp();
    let upstream = UdpSocket::bind(("127.0.0.1", UPSTREAM_PORT)).expect("bind the upstream");
    let daemon = Daemon::start("input", ADMIN, &config());
    let udp = Client::Udp(UdpSocket::bind("127.0.0.1:0").expect("UDP client"));
    let sctp = Client::Sctp(Box::new(
        SctpSocket::bind(
            &[SocketAddr::from(([127, 0, 0, 1], 0))],
            &SocketConfig {
                backlog: None,
                max_message_size: 200_000,
                ..SocketConfig::default()
            },
        )
        .expect("SCTP client socket"),
    ));
    let mut n = 0u32;
    let mut total = 0;
    for client in [&udp, &sctp] {
        total += run_corpus(&daemon, client, &upstream, &mut n).await;
        relayed_round_trip(client, &upstream, &mut n).await;
    }
    let m = daemon.metrics();
    promtool_check(&m.text);
    // Every keep-alive was answered by the daemon: OPTIONS 2xx out (keep-alives), and exactly
    // the two relayed OPTIONS went out.
    assert_eq!(
        m.requests("OPTIONS", "udp", "out"),
        2,
        "only the two relayed OPTIONS were forwarded:\n{}",
        m.nonzero()
    );
    assert_eq!(
        m.value("sipsctp_sctp_established_total"),
        1,
        "one association: the client's"
    );
    eprintln!(
        "kernel {}: {total} bad inputs over UDP and SCTP, each answered or counted, the daemon \
         serving after each; metrics:\n{}",
        vm_kernel(),
        m.nonzero()
    );
}

#[tokio::test]
async fn daemon_answers_keepalive_itself_and_483_at_max_forwards_0() {
    require_sctp();
    let upstream = UdpSocket::bind(("127.0.0.1", UPSTREAM_PORT)).expect("bind the upstream");
    let daemon = Daemon::start("keepalive", ADMIN, &config());
    let client = Client::Udp(UdpSocket::bind("127.0.0.1:0").expect("UDP client"));
    for i in 0..20u32 {
        client.send(&options("UDP", 1000 + i, true, "", 0)).await;
        let a = client
            .recv(Duration::from_secs(5))
            .await
            .expect("the keep-alive's answer");
        assert!(a.starts_with("SIP/2.0 200 OK\r\n"), "{a:?}");
    }
    let mut n = 2000;
    client.send(&corpus("max_forwards_0.sip", "UDP", n)).await;
    let a = client.recv(Duration::from_secs(5)).await.expect("the 483");
    assert!(a.starts_with("SIP/2.0 483 Too Many Hops\r\n"), "{a:?}");
    assert!(a.contains(&format!("CSeq: {n} INVITE")), "{a:?}");
    n += 1;
    relayed_round_trip(&client, &upstream, &mut n).await;
    assert_upstream_silent(&upstream, "after the keep-alives");
    let m = daemon.metrics();
    assert_eq!(m.requests("OPTIONS", "udp", "in"), 21);
    assert_eq!(
        m.requests("OPTIONS", "udp", "out"),
        1,
        "only the relayed OPTIONS went out"
    );
    assert_eq!(
        m.responses("OPTIONS", "2xx", "udp", "out"),
        21,
        "20 keep-alives + the relayed 200"
    );
    assert_eq!(m.responses("INVITE", "4xx", "udp", "out"), 1, "the 483");
    assert_eq!(m.requests("INVITE", "udp", "out"), 0);
}

/// A request the daemon answers 400 because its Content-Length is wrong is still a request of
/// its method: it must be counted in `sipsctp_sip_requests_total{direction="in"}` and its 400
/// under `method="OPTIONS"`, like the 400 for a CSeq mismatch is.
#[tokio::test]
async fn daemon_counts_the_400_for_a_bad_content_length_under_the_requests_method() {
    require_sctp();
    let _upstream = UdpSocket::bind(("127.0.0.1", UPSTREAM_PORT)).expect("bind the upstream");
    let daemon = Daemon::start("bad-cl-label", ADMIN, &config());
    let client = Client::Udp(UdpSocket::bind("127.0.0.1:0").expect("UDP client"));
    client
        .send(&corpus("wrong_content_length.sip", "UDP", 1))
        .await;
    let a = client.recv(Duration::from_secs(5)).await.expect("the 400");
    assert!(a.starts_with("SIP/2.0 400 "), "{a:?}");
    let m = daemon.metrics();
    assert_eq!(
        (
            m.requests("OPTIONS", "udp", "in"),
            m.responses("OPTIONS", "4xx", "udp", "out"),
            m.responses("other", "4xx", "udp", "out"),
        ),
        (1, 1, 0),
        "kernel {}: the OPTIONS with a wrong Content-Length: requests in, 400 out as OPTIONS, \
         400 out as `other`:\n{}",
        vm_kernel(),
        m.nonzero()
    );
}

/// A dead SCTP upstream (nothing listens there: the kernel answers each INIT with an ABORT).
/// Every request relayed to it is counted as a failed send, and the log reports the failures
/// at most once a second, each line saying how many it held back since the previous one: a
/// burst of 50 gives a handful of lines whose counts add up to the 50, not 50 lines.
#[tokio::test]
async fn daemon_a_dead_sctp_upstream_is_counted_per_message_and_logged_per_second() {
    require_sctp();
    let admin = lo(ports::DEAD_UPSTREAM_ADMIN);
    let daemon_addr = lo(ports::DEAD_UPSTREAM_DAEMON);
    let cfg = calls::config(
        &[
            ("sctp", &["127.0.0.1"], daemon_addr.port()),
            ("udp", &["127.0.0.1"], daemon_addr.port()),
        ],
        &[(
            None,
            format!("sctp:127.0.0.1:{}", ports::DEAD_UPSTREAM).as_str(),
        )],
        admin,
        "[ebpf]\nmode = \"off\"\n",
    );
    let daemon = Daemon::start("dead-upstream", admin, &cfg);
    let client = UdpSocket::bind("127.0.0.1:0").expect("UDP client");
    let failed = |want: u64| {
        wait_until(Duration::from_secs(10), || {
            daemon.metrics().value("sipsctp_sctp_send_failed_total") >= want
        })
    };
    // A burst, then, more than a second later, one more: its line carries the count of those
    // held back before it.
    let n = 50u32;
    for i in 0..n {
        client
            .send_to(&options("UDP", i, false, "", 0), daemon_addr)
            .expect("send");
    }
    assert!(
        failed(u64::from(n)),
        "kernel {}: the {n} sends to the dead upstream did not all fail:\n{}",
        vm_kernel(),
        daemon.metrics().nonzero()
    );
    std::thread::sleep(Duration::from_millis(1100));
    client
        .send_to(&options("UDP", n, false, "", 0), daemon_addr)
        .expect("send");
    let total = u64::from(n) + 1;
    assert!(failed(total), "the last send did not fail");
    let m = daemon.settle();
    assert_eq!(
        (
            m.value("sipsctp_sctp_send_failed_total"),
            m.requests("OPTIONS", "sctp", "out")
        ),
        (total, total),
        "every request sent once and its failure counted once:\n{}",
        m.nonzero()
    );
    let log = daemon.stderr();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("event=SendFailure"))
        .collect();
    let reported: u64 = lines
        .iter()
        .map(|l| {
            let held = l
                .split("not_logged_since_last=")
                .nth(1)
                .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|d| d.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no held-back count in: {l}"));
            1 + held
        })
        .sum();
    assert!(
        lines.len() <= 5 && reported == total,
        "{} SendFailure lines accounting for {reported} failures; want at most 5 lines, \
         accounting for all {total}:\n{}",
        lines.len(),
        lines.join("\n")
    );
    eprintln!(
        "kernel {}: {total} sends to a dead SCTP upstream: all counted as failed, {} log lines \
         (connect_failed {})",
        vm_kernel(),
        lines.len(),
        m.value("sipsctp_sctp_connect_failed_total")
    );
}
