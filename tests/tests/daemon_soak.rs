//! The mixed-transport soak, inside the VM: well-behaved sipp callers over SCTP, UDP and TCP
//! place calls through `sipsctpd` to a sipp UAS over UDP while one hostile peer of each kind
//! runs at the same time:
//!
//! - UDP: a flood of garbage, truncated SIP and requests whose Via tries to steer the
//!   responses to a victim address (hardening review H1);
//! - TCP: a client that sends keep-alives with 6 KB Vias and never reads (H2), next to one
//!   that sends half a message and stalls;
//! - SCTP: a client that sends garbage and OPTIONS over one association and never reads its
//!   answers.
//!
//! Every call of the well-behaved callers must succeed, the daemon must keep running, and the
//! hostile traffic must show up in the drop counters (nothing lost silently). The SCTP client
//! that never reads must be found stalled: its answers wait in its own send queue, outside
//! the kernel's send buffer that all associations of the listener share (hardening review
//! H4; before that, the SCTP caller's 60 calls all failed).

use std::{
    io::Write as _,
    net::{SocketAddr, TcpStream, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::Duration,
};

use sipsctp_tests::{
    calls::{Uac, config, uas_with},
    daemon::{Daemon, require_tool, scratch},
    ports::{daemon_soak as ports, lo},
    require_sctp, vm_kernel,
};

/// The daemon's port on every transport.
const PORT: u16 = ports::DAEMON;
const UAS_PORT: u16 = ports::UAS;

fn daemon_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], PORT))
}

/// An OPTIONS to the daemon itself (a keep-alive it answers), its Via padded with `pad` bytes.
fn keepalive(transport: &str, local: SocketAddr, n: u64, pad: usize) -> String {
    format!(
        "OPTIONS sip:127.0.0.1:{PORT} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {local};branch=z9hG4bK-soak-{n};x={}\r\n\
         From: <sip:hostile@example.org>;tag=h{n}\r\n\
         To: <sip:127.0.0.1:{PORT}>\r\n\
         Call-ID: soak-{transport}-{n}@example.org\r\n\
         CSeq: {n} OPTIONS\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n",
        "p".repeat(pad)
    )
}

/// UDP: garbage, truncated SIP and steering Vias, about 400 datagrams a second.
fn udp_hostile(stop: Arc<AtomicBool>, sent: Arc<AtomicU64>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind the hostile UDP socket");
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let msg = match n % 4 {
                0 => vec![0xffu8; 700],
                1 => b"INVITE sip:bob@example.org SIP/2.0\r\nVia: SIP/2.0/UDP".to_vec(),
                2 => format!(
                    "INVITE sip:bob@127.0.0.1:{UAS_PORT} SIP/2.0\r\n\
                     Via: SIP/2.0/UDP 127.0.0.3:5999;received=127.0.0.3;rport=5999;branch=z9hG4bKsteer{n}\r\n\
                     From: <sip:x@example.org>;tag=s{n}\r\nTo: <sip:bob@example.org>\r\n\
                     Call-ID: steer-{n}@example.org\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n\
                     Content-Length: 0\r\n\r\n"
                )
                .into_bytes(),
                _ => b"SIP/2.0 200 OK\r\nVia: nonsense\r\n\r\n".to_vec(),
            };
            if s.send_to(&msg, daemon_addr()).is_ok() {
                sent.fetch_add(1, Ordering::Relaxed);
            }
            thread::sleep(Duration::from_micros(2500));
        }
    })
}

/// TCP: one client sends keep-alives with 6 KB Vias and never reads; another sends half a
/// message and stalls.
fn tcp_hostile(stop: Arc<AtomicBool>, sent: Arc<AtomicU64>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut hog = TcpStream::connect(daemon_addr()).expect("connect the TCP hog");
        let local = hog.local_addr().expect("hog address");
        let mut stall = TcpStream::connect(daemon_addr()).expect("connect the staller");
        let _ = stall.write_all(b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1");
        hog.set_write_timeout(Some(Duration::from_millis(200)))
            .expect("write timeout");
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            // A write that times out: the daemon stopped reading a client that never reads.
            if hog
                .write_all(keepalive("TCP", local, n, 6000).as_bytes())
                .is_ok()
            {
                sent.fetch_add(1, Ordering::Relaxed);
            }
            thread::sleep(Duration::from_millis(5));
        }
        drop(stall);
    })
}

/// SCTP: garbage and keep-alives over one association whose answers are never read.
fn sctp_hostile(stop: Arc<AtomicBool>, sent: Arc<AtomicU64>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let s = tokio_sctp::SctpStream::connect(daemon_addr())
                .await
                .expect("connect the hostile SCTP client");
            let local = s.local_addr().expect("local address");
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let msg = if n.is_multiple_of(2) {
                    keepalive("SCTP", local, n, 2000).into_bytes()
                } else {
                    vec![0u8; 900]
                };
                let options = tokio_sctp::SendOptions::default();
                let send = s.sendmsg(&msg, None, &options);
                if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(200), send).await {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
    })
}

#[test]
fn daemon_soak_mixed_callers_with_one_hostile_peer_of_each_kind() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { require_sctp() });
    require_tool("sipp");
    let dir = scratch("soak");
    let _uas = uas_with(&dir, None, "u1", "127.0.0.1", UAS_PORT);
    let admin = lo(ports::ADMIN);
    let d = Daemon::start(
        "soak",
        admin,
        &config(
            &[
                ("sctp", &["127.0.0.1"], PORT),
                ("udp", &["127.0.0.1"], PORT),
                ("tcp", &["127.0.0.1"], PORT),
            ],
            &[(None, &format!("udp:127.0.0.1:{UAS_PORT}"))],
            admin,
            "[ebpf]\nmode = \"off\"\n",
        ),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let sent: Vec<Arc<AtomicU64>> = (0..3).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let hostile = [
        udp_hostile(stop.clone(), sent[0].clone()),
        tcp_hostile(stop.clone(), sent[1].clone()),
        sctp_hostile(stop.clone(), sent[2].clone()),
    ];
    // Let the hostile peers get going before the calls start.
    thread::sleep(Duration::from_secs(1));
    let calls = 60;
    let callers = [
        ("s1", ports::UAC),
        ("u1", ports::UAC + 1),
        ("t1", ports::UAC + 2),
    ];
    let runs: Vec<_> = thread::scope(|scope| {
        let handles: Vec<_> = callers
            .iter()
            .map(|&(transport, port)| {
                let dir = &dir;
                scope.spawn(move || {
                    Uac {
                        scenario: None,
                        transport,
                        local_ip: "127.0.0.1",
                        local_port: port,
                        remote: daemon_addr(),
                        calls,
                        rate: 5,
                        netns: None,
                    }
                    .run(dir, || {})
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a caller thread"))
            .collect()
    });
    // The SCTP client that never reads is still connected: it is stalled now, or it was
    // aborted for staying stalled too long (a slow run).
    let during = d.metrics();
    stop.store(true, Ordering::Relaxed);
    for h in hostile {
        h.join().expect("a hostile peer thread");
    }
    let mut d = d;
    d.assert_running();
    for ((transport, _), r) in callers.iter().zip(&runs) {
        r.assert_all_ok(
            calls,
            &format!("sipp -t {transport} through sipsctpd while hostile peers of each kind run"),
            &d,
        );
    }
    let m = d.settle();
    let show = m.nonzero();
    let sent: Vec<u64> = sent.iter().map(|s| s.load(Ordering::Relaxed)).collect();
    assert!(
        sent.iter().all(|n| *n > 0),
        "every hostile peer sent something (UDP, TCP, SCTP): {sent:?}"
    );
    let stalled = during.sum("sipsctp_sctp_stalled_associations", &[]);
    let stall_aborted = m.sum("sipsctp_sctp_send_dropped_total", &[("reason", "stalled")]);
    assert!(
        stalled == 1 || stall_aborted > 0,
        "kernel {}: the SCTP client that never reads was not found stalled\n{show}",
        vm_kernel()
    );
    let dropped = m.sum("sipsctp_sip_messages_dropped_total", &[]);
    assert!(
        dropped > 0,
        "kernel {}: the hostile traffic shows in the drop counters\n{show}",
        vm_kernel()
    );
    eprintln!(
        "kernel {}: 3 x {calls} calls (SCTP, UDP, TCP) all completed while hostile peers sent \
         {sent:?} messages (UDP, TCP, SCTP); {dropped} SIP messages dropped and counted",
        vm_kernel()
    );
}
