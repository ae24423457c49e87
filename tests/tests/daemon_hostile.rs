//! `sipsctpd` against hostile peers (the hardening review's H1 and H2), with the test as the
//! daemon's UDP upstream and as the victims:
//!
//! - H1: a UDP client whose own Via carries `received=127.0.0.3;rport=5999` cannot have the
//!   upstream's responses delivered there: all three 200s reach the client, none reaches a
//!   victim socket on 127.0.0.3:5999. A Via naming TCP on a UDP request is refused (400) and
//!   no connection reaches a victim TCP listener.
//! - H2: a TCP client that sends up to 3000 keep-alives with 6 KB Vias (18 MB of answers)
//!   and never reads them does not stall the relay: 20 OPTIONS from a UDP client, relayed to the upstream,
//!   are all answered, each within 5 s, while it runs; the answers the TCP client never read
//!   are dropped and counted, none lost silently.

use std::{
    io::Write as _,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use sipsctp_tests::{
    calls,
    daemon::{Daemon, wait_until},
    ports::{daemon_hostile as ports, lo},
    vm_kernel,
};

const DAEMON_PORT: u16 = ports::DAEMON;
/// Each test its own upstream port: a failed test's upstream thread keeps its socket.
const H1_UPSTREAM_PORT: u16 = ports::H1_UPSTREAM;
const H2_UPSTREAM_PORT: u16 = ports::H2_UPSTREAM;
const ADMIN: SocketAddr = lo(ports::ADMIN);
/// The victim's sockets: on 127.0.0.3 (not the daemon's, not the client's).
const VICTIM_UDP: SocketAddr = SocketAddr::V4(SocketAddrV4::new(
    Ipv4Addr::new(127, 0, 0, 3),
    ports::VICTIM_UDP,
));
const VICTIM_TCP: SocketAddr = SocketAddr::V4(SocketAddrV4::new(
    Ipv4Addr::new(127, 0, 0, 3),
    ports::VICTIM_TCP,
));

fn config(upstream_port: u16) -> String {
    calls::config(
        &[
            ("udp", &["127.0.0.1"], DAEMON_PORT),
            ("tcp", &["127.0.0.1"], DAEMON_PORT),
        ],
        &[(None, format!("udp:127.0.0.1:{upstream_port}").as_str())],
        ADMIN,
        "[log]\nlevel = \"info\"\n\n[ebpf]\nmode = \"off\"\n",
    )
}

/// The upstream: answers every request with `copies` identical 200s (a UAS retransmitting
/// its final response), until `stop`.
fn upstream(port: u16, copies: usize, stop: Arc<AtomicBool>) -> thread::JoinHandle<u64> {
    let sock = UdpSocket::bind(("127.0.0.1", port)).expect("upstream socket");
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    thread::spawn(move || {
        let mut buf = vec![0u8; 65_536];
        let mut seen = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            seen += 1;
            let req = String::from_utf8_lossy(&buf[..n]).into_owned();
            let resp = answer(&req);
            for _ in 0..copies {
                sock.send_to(resp.as_bytes(), from).expect("upstream send");
            }
        }
        seen
    })
}

/// A 200 for `req`: its Vias, From, To (tagged), Call-ID and CSeq copied.
fn answer(req: &str) -> String {
    let mut out = String::from("SIP/2.0 200 OK\r\n");
    for line in req.split("\r\n") {
        let name = line.split(':').next().unwrap_or("").to_ascii_lowercase();
        match name.as_str() {
            "via" | "from" | "call-id" | "cseq" => out.push_str(&format!("{line}\r\n")),
            "to" => out.push_str(&format!("{line};tag=up\r\n")),
            _ => {}
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

/// An OPTIONS; `pad` bytes of a Via parameter make its answer as large (a response copies
/// the Vias).
fn options(via: &str, n: u32, uri: &str, pad: usize) -> String {
    let pad = if pad > 0 {
        format!(";x-pad={}", "p".repeat(pad))
    } else {
        String::new()
    };
    format!(
        "OPTIONS {uri} SIP/2.0\r\n\
         Via: {via};branch=z9hG4bK-h-{n}{pad}\r\n\
         From: <sip:alice@example.org>;tag=h{n}\r\n\
         To: <{uri}>\r\n\
         Call-ID: hostile-{n}@127.0.0.1\r\n\
         CSeq: {n} OPTIONS\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// How long a UDP OPTIONS may take while the hog runs. The old relay never answered (it
/// waited on the hog's connection); the new one does not wait, but the VM's emulated CPUs
/// still parse the hog's 18 MB in the same loop (seen: over 2 s on 6.1 with the host busy).
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// The datagrams that arrive on `sock` within `within`, stopping early after one that contains
/// `until` when given.
fn receive(sock: &UdpSocket, within: Duration, until: Option<&str>) -> Vec<String> {
    let mut got = Vec::new();
    let end = Instant::now() + within;
    let mut buf = vec![0u8; 65_536];
    while Instant::now() < end {
        sock.set_read_timeout(Some(
            end.saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ))
        .unwrap();
        let Ok(n) = sock.recv(&mut buf) else { break };
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        let done = until.is_some_and(|u| m.contains(u));
        got.push(m);
        if done {
            break;
        }
    }
    got
}

/// Whether a datagram containing `needle` arrives within `within` (others are skipped).
fn recv_until(sock: &UdpSocket, needle: &str, within: Duration) -> bool {
    receive(sock, within, Some(needle))
        .iter()
        .any(|m| m.contains(needle))
}

fn recv_all(sock: &UdpSocket, within: Duration) -> Vec<String> {
    receive(sock, within, None)
}

#[test]
fn h1_a_client_cannot_steer_responses() {
    let stop = Arc::new(AtomicBool::new(false));
    let up = upstream(H1_UPSTREAM_PORT, 3, stop.clone());
    let daemon = Daemon::start("hostile-h1", ADMIN, &config(H1_UPSTREAM_PORT));
    let victim = UdpSocket::bind(VICTIM_UDP).expect("victim UDP socket");
    let victim_tcp = TcpListener::bind(VICTIM_TCP).expect("victim TCP listener");
    victim_tcp.set_nonblocking(true).unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = client.local_addr().unwrap();
    let daemon_addr: SocketAddr = ([127, 0, 0, 1], DAEMON_PORT).into();

    // Its own received/rport point at the victim.
    let via = format!(
        "SIP/2.0/UDP {me};received={};rport={}",
        VICTIM_UDP.ip(),
        VICTIM_UDP.port()
    );
    client
        .send_to(
            options(&via, 1, "sip:bob@example.net", 0).as_bytes(),
            daemon_addr,
        )
        .unwrap();
    let got = recv_all(&client, Duration::from_secs(3));
    let victim_got = recv_all(&victim, Duration::from_millis(500));
    assert_eq!(
        (got.len(), victim_got.len()),
        (3, 0),
        "kernel {}: the client must get the upstream's three 200s and the victim none\n\
         client: {got:?}\nvictim: {victim_got:?}\n{}",
        vm_kernel(),
        daemon.stderr()
    );
    assert!(got.iter().all(|m| m.starts_with("SIP/2.0 200 OK\r\n")));

    // A Via naming TCP (toward the victim) on a UDP request: 400 (back to the source port, as
    // rport asks), nothing relayed, no connection to the victim.
    let via = format!("SIP/2.0/TCP {VICTIM_TCP};rport");
    client
        .send_to(
            options(&via, 2, "sip:bob@example.net", 0).as_bytes(),
            daemon_addr,
        )
        .unwrap();
    let got = recv_all(&client, Duration::from_secs(2));
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with("SIP/2.0 400 Via Transport Mismatch\r\n"),
        "{}",
        got[0]
    );
    thread::sleep(Duration::from_millis(500));
    assert!(
        victim_tcp.accept().is_err(),
        "kernel {}: the relay connected to the victim",
        vm_kernel()
    );
    stop.store(true, Ordering::Relaxed);
    assert_eq!(
        up.join().unwrap(),
        1,
        "only the first request reached the upstream"
    );
}

#[test]
fn h2_a_tcp_client_that_never_reads_does_not_stall_the_relay() {
    const HOG_REQUESTS: u32 = 3000;
    let stop = Arc::new(AtomicBool::new(false));
    let up = upstream(H2_UPSTREAM_PORT, 1, stop.clone());
    let daemon = Daemon::start("hostile-h2", ADMIN, &config(H2_UPSTREAM_PORT));
    let daemon_addr: SocketAddr = ([127, 0, 0, 1], DAEMON_PORT).into();

    // The hog: keep-alives for the relay itself, 6 KB each, never reading the answers.
    let hog = TcpStream::connect(daemon_addr).expect("hog connects");
    let hog_addr = hog.local_addr().unwrap();
    let hog_done = Arc::new(AtomicBool::new(false));
    let hog_thread = {
        let done = hog_done.clone();
        let mut hog = hog.try_clone().unwrap();
        thread::spawn(move || {
            let via = format!("SIP/2.0/TCP {hog_addr}");
            let uri = format!("sip:127.0.0.1:{DAEMON_PORT}");
            let mut sent = 0u32;
            for n in 0..HOG_REQUESTS {
                if hog
                    .write_all(options(&via, 10_000 + n, &uri, 6000).as_bytes())
                    .is_err()
                {
                    break;
                }
                sent += 1;
            }
            done.store(true, Ordering::Relaxed);
            sent
        })
    };
    // Let the hog's answers pile up first.
    thread::sleep(Duration::from_secs(2));

    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = client.local_addr().unwrap();
    let mut worst = Duration::ZERO;
    let mut answered = 0;
    for n in 0..20u32 {
        let t = Instant::now();
        client
            .send_to(
                options(
                    &format!("SIP/2.0/UDP {me};rport"),
                    n,
                    "sip:bob@example.net",
                    0,
                )
                .as_bytes(),
                daemon_addr,
            )
            .unwrap();
        if recv_until(&client, &format!("CSeq: {n} OPTIONS"), ANSWER_WITHIN) {
            answered += 1;
            worst = worst.max(t.elapsed());
        }
    }
    let hog_sent = hog_thread.join().unwrap();
    assert_eq!(
        answered,
        20,
        "kernel {}: while one TCP client did not read, only {answered} of 20 UDP OPTIONS were \
         answered within {ANSWER_WITHIN:?} each (hog sent {hog_sent}, done {})\n{}",
        vm_kernel(),
        hog_done.load(Ordering::Relaxed),
        daemon.metrics().nonzero()
    );
    // Every keep-alive of the hog the daemon read is accounted for: answered into its queue,
    // or dropped with a reason (the daemon closes a connection whose writes time out, so the
    // hog may not get all of its requests in).
    let accounted = || {
        let m = daemon.metrics();
        let answered_out = m.responses("OPTIONS", "2xx", "tcp", "out");
        let dropped: u64 = ["queue_full", "queues_full", "send_failed"]
            .iter()
            .map(|r| m.sip_dropped(r))
            .sum();
        (m.requests("OPTIONS", "tcp", "in"), answered_out, dropped)
    };
    assert!(
        wait_until(Duration::from_secs(20), || {
            let (inn, out, dropped) = accounted();
            inn > 0 && inn <= u64::from(hog_sent) && out + dropped >= inn && dropped > 0
        }),
        "kernel {}: (in, answered, dropped) = {:?}\n{}",
        vm_kernel(),
        accounted(),
        daemon.metrics().nonzero()
    );
    eprintln!(
        "kernel {}: 20/20 UDP OPTIONS answered (worst {} ms) while a TCP client did not read; \
         its (in, answered, dropped) = {:?}",
        vm_kernel(),
        worst.as_millis(),
        accounted()
    );
    drop(hog);
    stop.store(true, Ordering::Relaxed);
    assert_eq!(up.join().unwrap(), 20);
}
