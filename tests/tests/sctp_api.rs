//! The public API of [`SctpSocket`] against the VM's kernel SCTP, checked where the daemon's
//! endpoint does not reach it (these checks were the `transport/sctp/examples/echo.rs` demo,
//! which nothing ran):
//!
//! - socket options set before any association, read back, and inherited by the association
//!   (INITMSG's stream counts negotiated, as `SCTP_STATUS` shows);
//! - a multi-homed bind (`SCTP_SOCKOPT_BINDX_ADD`, the extra address taking the first one's
//!   port): both addresses are the peer's, the second is confirmed by a heartbeat
//!   (PEER_ADDR_CHANGE `Confirmed`), the first stays primary;
//! - round trips by address and by association id, ordered and unordered, on two streams, with
//!   a PPID and a lifetime, through `send` and `try_send`, reassembled from 16 KiB reads past
//!   a 32 KiB partial delivery point;
//! - a message above `max_message_size` dropped and reported with its size;
//! - a closed socket shutting its association down gracefully (COMM_UP, SHUTDOWN, SHUTDOWN_COMP
//!   at the peer);
//! - an IPv6 socket also bound to IPv4 serving both families, an IPv4 peer seen as IPv4;
//! - a send to a port nobody listens on: CANT_STR_ASSOC, and the data back in SEND_FAILED with
//!   its context, PPID and stream;
//! - `try_send` + `writable` back-pressure: 100 messages of 60 KiB, all delivered in order.
//!
//! Every port is chosen by the kernel.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use sipsctp_sctp::{
    AssocChangeState, AssocId, AssocParams, AssocState, DelayedSack, DropReason, Incoming, InitMsg,
    Notification, PathState, PeerAddrFlags, PeerAddrParams, PeerAddrState, RtoInfo, SctpSocket,
    SendFailedStatus, SendOptions, SendTarget, SocketConfig,
};
use sipsctp_tests::{require_sctp, vm_kernel};

/// How long any one step may take (the VM's CPUs are emulated, the host may be busy).
const STEP: Duration = Duration::from_secs(10);
/// The echo server's limit on incoming messages.
const SERVER_MAX: usize = 64 * 1024;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

/// Deterministic content for a message of `len` bytes (xorshift), different per `seed`.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// A socket that only connects out (no listen), with `f` applied to the default config.
fn client(bind: &str, f: impl FnOnce(&mut SocketConfig)) -> SctpSocket {
    let mut cfg = SocketConfig {
        backlog: None,
        ..SocketConfig::default()
    };
    f(&mut cfg);
    SctpSocket::bind(&[addr(bind)], &cfg).expect("bind a client socket")
}

/// The echo server's config: 64 KiB limit, 16 KiB reads and a 32 KiB partial delivery point,
/// so that large messages arrive in pieces and are joined.
fn server_config() -> SocketConfig {
    SocketConfig {
        max_message_size: SERVER_MAX,
        read_chunk_size: 16 * 1024,
        partial_delivery_point: Some(32 * 1024),
        send_buffer_size: Some(512 * 1024),
        recv_buffer_size: Some(512 * 1024),
        ..SocketConfig::default()
    }
}

/// Echoes every message on its association with its stream, PPID and ordering, answers a
/// dropped one with `dropped:<size>` (too large) or the reason (any other), and returns the
/// notifications it saw once an association has ended.
fn spawn_echo(server: Arc<SctpSocket>) -> tokio::task::JoinHandle<Vec<Notification>> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        loop {
            match server.recv().await.expect("server recv") {
                Incoming::Message {
                    data,
                    assoc_id,
                    stream,
                    ppid,
                    unordered,
                    ..
                } => {
                    let opts = SendOptions {
                        stream,
                        ppid,
                        unordered,
                        ..SendOptions::default()
                    };
                    server
                        .send(&data, SendTarget::Assoc(assoc_id), &opts)
                        .await
                        .expect("server echo");
                }
                Incoming::Dropped {
                    assoc_id, reason, ..
                } => {
                    let reply = match reason {
                        DropReason::TooLarge { size_so_far } => format!("dropped:{size_so_far}"),
                        other => format!("{other:?}"),
                    };
                    server
                        .send(
                            reply.as_bytes(),
                            SendTarget::Assoc(assoc_id),
                            &SendOptions::default(),
                        )
                        .await
                        .expect("server reply to a dropped message");
                }
                Incoming::Notification { notification, .. } => {
                    let end = matches!(
                        notification,
                        Notification::AssocChange {
                            state: AssocChangeState::ShutdownComp | AssocChangeState::CommLost,
                            ..
                        }
                    );
                    seen.push(notification);
                    if end {
                        return seen;
                    }
                }
            }
        }
    })
}

/// One echoed message as the client received it.
struct Echo {
    data: Vec<u8>,
    assoc: AssocId,
    peer: SocketAddr,
    stream: u16,
    ppid: u32,
    unordered: bool,
}

/// The next message on `sock`, keeping the notifications met on the way in `notes`.
async fn next_message(sock: &SctpSocket, notes: &mut Vec<Notification>) -> Echo {
    tokio::time::timeout(STEP, async {
        loop {
            match sock.recv().await.expect("client recv") {
                Incoming::Message {
                    data,
                    assoc_id,
                    peer,
                    stream,
                    ppid,
                    unordered,
                } => {
                    return Echo {
                        data,
                        assoc: assoc_id,
                        peer,
                        stream,
                        ppid,
                        unordered,
                    };
                }
                Incoming::Notification { notification, .. } => notes.push(notification),
                Incoming::Dropped { reason, .. } => {
                    panic!("the client dropped an echo: {reason:?}")
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no message within {STEP:?}; notifications: {notes:?}"))
}

/// Reads notifications into `notes` until one satisfies `want` or `limit` passes; returns
/// whether one did. A message meanwhile is a failure.
async fn wait_notification(
    sock: &SctpSocket,
    notes: &mut Vec<Notification>,
    limit: Duration,
    want: impl Fn(&Notification) -> bool,
) -> bool {
    let deadline = Instant::now() + limit;
    while !notes.iter().any(&want) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let Ok(item) = tokio::time::timeout(left, sock.recv()).await else {
            return false;
        };
        match item.expect("recv") {
            Incoming::Notification { notification, .. } => notes.push(notification),
            other => panic!("expected only notifications, got {other:?}"),
        }
    }
    true
}

fn is_comm_up(n: &Notification) -> bool {
    matches!(
        n,
        Notification::AssocChange {
            state: AssocChangeState::CommUp,
            ..
        }
    )
}

/// The position of the first notification satisfying `f`.
fn position(notes: &[Notification], f: impl Fn(&Notification) -> bool) -> Option<usize> {
    notes.iter().position(f)
}

/// Kamailio-style tuning on a socket before it has an association: every value is read back
/// as set, and the association set up afterwards inherits them (INITMSG's 5/5 streams are
/// what `SCTP_STATUS` reports as negotiated).
#[tokio::test]
async fn options_set_before_an_association_are_read_back_and_inherited() {
    require_sctp();
    let server = Arc::new(SctpSocket::bind(&[addr("127.0.0.1:0")], &server_config()).unwrap());
    let server_addr = server.local_addr().unwrap();
    assert_eq!(server.partial_delivery_point().unwrap(), 32 * 1024);
    assert!(server.nodelay().unwrap(), "SCTP_NODELAY is on by default");
    let echo = spawn_echo(Arc::clone(&server));

    let c = client("127.0.0.1:0", |_| {});
    let init = InitMsg {
        num_ostreams: 5,
        max_instreams: 5,
        max_attempts: 4,
        max_init_timeo_ms: 2000,
    };
    c.set_init_msg(&init).unwrap();
    let rto = RtoInfo {
        initial_ms: 1000,
        max_ms: 8000,
        min_ms: 400,
    };
    c.set_rto_info(AssocId::FUTURE, &rto).unwrap();
    c.set_assoc_params(
        AssocId::FUTURE,
        &AssocParams {
            max_retrans: 6,
            cookie_life_ms: 30_000,
            ..AssocParams::default()
        },
    )
    .unwrap();
    c.set_peer_addr_params(
        AssocId::FUTURE,
        &PeerAddrParams {
            hb_interval_ms: 5000,
            path_max_rxt: 4,
            flags: PeerAddrFlags::HB_ENABLE,
            ..PeerAddrParams::default()
        },
    )
    .unwrap();
    c.set_delayed_sack(
        AssocId::FUTURE,
        &DelayedSack {
            delay_ms: 100,
            freq: 2,
        },
    )
    .unwrap();
    c.set_max_burst(AssocId::FUTURE, 8).unwrap();
    c.set_autoclose(120).unwrap();

    assert_eq!(c.init_msg().unwrap(), init, "INITMSG read back");
    assert_eq!(
        c.rto_info(AssocId::FUTURE).unwrap(),
        rto,
        "RTOINFO read back"
    );
    let ap = c.assoc_params(AssocId::FUTURE).unwrap();
    assert_eq!((ap.max_retrans, ap.cookie_life_ms), (6, 30_000), "{ap:?}");
    let pp = c.peer_addr_params(AssocId::FUTURE, None).unwrap();
    assert_eq!((pp.hb_interval_ms, pp.path_max_rxt), (5000, 4), "{pp:?}");
    assert!(pp.flags.contains(PeerAddrFlags::HB_ENABLE), "{pp:?}");
    let ds = c.delayed_sack(AssocId::FUTURE).unwrap();
    assert_eq!((ds.delay_ms, ds.freq), (100, 2), "{ds:?}");
    assert_eq!(c.max_burst(AssocId::FUTURE).unwrap(), 8);
    assert_eq!(c.autoclose().unwrap(), 120);

    c.send(
        b"hello",
        SendTarget::Addr(server_addr),
        &SendOptions::default(),
    )
    .await
    .unwrap();
    let mut notes = Vec::new();
    let e = next_message(&c, &mut notes).await;
    assert_eq!(e.data, b"hello");
    let st = c.status(e.assoc).unwrap();
    assert_eq!(st.assoc_id, e.assoc);
    assert_eq!(st.state, AssocState::Established, "{st:?}");
    assert_eq!(
        (st.outbound_streams, st.inbound_streams),
        (5, 5),
        "streams negotiated from INITMSG 5/5: {st:?}"
    );
    assert_eq!(st.primary.addr, Some(server_addr), "{st:?}");
    assert_eq!(st.primary.state, PathState::Active, "{st:?}");
    let arto = c.rto_info(e.assoc).unwrap();
    assert_eq!((arto.max_ms, arto.min_ms), (8000, 400), "{arto:?}");
    let aap = c.assoc_params(e.assoc).unwrap();
    assert_eq!(aap.max_retrans, 6, "{aap:?}");
    let app = c.peer_addr_params(e.assoc, Some(server_addr)).unwrap();
    assert_eq!((app.hb_interval_ms, app.path_max_rxt), (5000, 4), "{app:?}");
    assert_eq!(c.max_burst(e.assoc).unwrap(), 8);
    let info = c.peer_addr_info(e.assoc, server_addr).unwrap();
    assert_eq!(
        (info.assoc_id, info.addr),
        (e.assoc, Some(server_addr)),
        "{info:?}"
    );
    drop(c);
    tokio::time::timeout(STEP, echo).await.unwrap().unwrap();
    eprintln!(
        "kernel {}: options read back; association {st:?}",
        vm_kernel()
    );
}

/// A server bound to 127.0.0.1:P and 127.0.0.2 (port 0: P): the client's association has both
/// as peer addresses, confirms the second with a heartbeat and keeps the first as primary.
#[tokio::test]
async fn a_multi_homed_socket_offers_both_addresses_and_the_second_gets_confirmed() {
    require_sctp();
    let server = Arc::new(
        SctpSocket::bind(
            &[addr("127.0.0.1:0"), addr("127.0.0.2:0")],
            &server_config(),
        )
        .unwrap(),
    );
    let port = server.local_addr().unwrap().port();
    let first = SocketAddr::from(([127, 0, 0, 1], port));
    let second = SocketAddr::from(([127, 0, 0, 2], port));
    assert_eq!(server.local_addrs().unwrap(), vec![first, second]);
    let echo = spawn_echo(Arc::clone(&server));

    let c = client("127.0.0.1:0", |_| {});
    // Short timers: the second path's heartbeat goes out one RTO after setup.
    c.set_rto_info(
        AssocId::FUTURE,
        &RtoInfo {
            initial_ms: 200,
            max_ms: 1000,
            min_ms: 100,
        },
    )
    .unwrap();
    c.send(b"hello", SendTarget::Addr(first), &SendOptions::default())
        .await
        .unwrap();
    let mut notes = Vec::new();
    let e = next_message(&c, &mut notes).await;
    assert_eq!((e.data.as_slice(), e.peer), (&b"hello"[..], first));
    let mut peers = c.peer_addrs(e.assoc).unwrap();
    peers.sort();
    assert_eq!(peers, vec![first, second], "the client's peer addresses");
    let confirmed = wait_notification(&c, &mut notes, STEP, |n| {
        matches!(
            n,
            Notification::PeerAddrChange {
                state: PeerAddrState::Confirmed,
                addr,
                ..
            } if *addr == second
        )
    })
    .await;
    assert!(
        confirmed,
        "no PEER_ADDR_CHANGE Confirmed for {second}: {notes:?}"
    );
    assert!(notes.iter().any(is_comm_up), "no COMM_UP: {notes:?}");
    assert_eq!(
        c.peer_addr_info(e.assoc, second).unwrap().state,
        PathState::Active
    );
    assert_eq!(c.status(e.assoc).unwrap().primary.addr, Some(first));
    drop(c);
    tokio::time::timeout(STEP, echo).await.unwrap().unwrap();
    eprintln!("kernel {}: {notes:?}", vm_kernel());
}

/// One message of the round-trip table.
struct Case {
    size: usize,
    by_assoc: bool,
    stream: u16,
    unordered: bool,
    ttl_ms: Option<u32>,
    try_send: bool,
}

/// Messages of 100 B, 8 KiB and 60 KiB by address (the first sets the association up) and by
/// association id, ordered and unordered, on streams 0 and 1, with and without a lifetime,
/// through `send` and `try_send`: each echo is byte-exact, on the same association, from the
/// server's address, with the stream, PPID and ordering it was sent with.
#[tokio::test]
async fn round_trips_keep_stream_ppid_ordering_and_association() {
    require_sctp();
    let server = Arc::new(SctpSocket::bind(&[addr("127.0.0.1:0")], &server_config()).unwrap());
    let server_addr = server.local_addr().unwrap();
    let echo = spawn_echo(Arc::clone(&server));
    let c = client("127.0.0.1:0", |cfg| {
        cfg.max_message_size = 256 * 1024;
        cfg.send_buffer_size = Some(512 * 1024);
        cfg.recv_buffer_size = Some(512 * 1024);
    });
    #[rustfmt::skip]
    let cases = [
        Case { size: 100, by_assoc: false, stream: 0, unordered: true, ttl_ms: None, try_send: false },
        Case { size: 8 * 1024, by_assoc: true, stream: 0, unordered: true, ttl_ms: None, try_send: false },
        Case { size: 60 * 1024, by_assoc: true, stream: 0, unordered: true, ttl_ms: None, try_send: false },
        Case { size: 100, by_assoc: true, stream: 1, unordered: false, ttl_ms: Some(5000), try_send: false },
        Case { size: 60 * 1024, by_assoc: false, stream: 1, unordered: false, ttl_ms: Some(5000), try_send: true },
        Case { size: 8 * 1024, by_assoc: true, stream: 1, unordered: true, ttl_ms: None, try_send: true },
    ];
    let mut notes = Vec::new();
    let mut assoc: Option<AssocId> = None;
    let mut would_block = 0;
    for (i, case) in cases.iter().enumerate() {
        let seq = u32::try_from(i).unwrap();
        let data = pattern(case.size, seq + 1);
        let to = match (case.by_assoc, assoc) {
            (true, Some(id)) => SendTarget::Assoc(id),
            _ => SendTarget::Addr(server_addr),
        };
        let opts = SendOptions {
            stream: case.stream,
            unordered: case.unordered,
            ppid: 1000 + seq,
            ttl_ms: case.ttl_ms,
            context: seq,
        };
        let sent = if case.try_send {
            match c.try_send(&data, to, &opts) {
                Ok(n) => n,
                Err(e) if e.is_would_block() => {
                    would_block += 1;
                    tokio::time::timeout(STEP, c.writable())
                        .await
                        .unwrap()
                        .unwrap();
                    c.send(&data, to, &opts).await.unwrap()
                }
                Err(e) => panic!("try_send of case {i}: {e}"),
            }
        } else {
            tokio::time::timeout(STEP, c.send(&data, to, &opts))
                .await
                .unwrap()
                .unwrap()
        };
        assert_eq!(sent, data.len(), "case {i}: bytes sent");
        let e = next_message(&c, &mut notes).await;
        assert_eq!(e.data.len(), data.len(), "case {i}: echo length");
        assert!(e.data == data, "case {i}: echo of {} B differs", data.len());
        assert_eq!(e.peer, server_addr, "case {i}: peer");
        assert_eq!(
            (e.stream, e.ppid, e.unordered),
            (case.stream, opts.ppid, case.unordered),
            "case {i}: stream, ppid, unordered"
        );
        if let Some(a) = assoc {
            assert_eq!(e.assoc, a, "case {i}: one association throughout");
        }
        assoc.get_or_insert(e.assoc);
    }
    assert!(notes.iter().any(is_comm_up), "no COMM_UP: {notes:?}");
    drop(c);
    tokio::time::timeout(STEP, echo).await.unwrap().unwrap();
    eprintln!(
        "kernel {}: {} round trips on association {assoc:?}, try_send blocked {would_block} time(s)",
        vm_kernel(),
        cases.len()
    );
}

/// A 100 KiB message to a server whose limit is 64 KiB: read (in 16 KiB pieces), dropped and
/// reported as `TooLarge` with its whole size; the association and the socket keep working.
#[tokio::test]
async fn a_message_over_max_message_size_is_dropped_and_reported_with_its_size() {
    require_sctp();
    const TOO_LARGE: usize = 100 * 1024;
    let server = Arc::new(SctpSocket::bind(&[addr("127.0.0.1:0")], &server_config()).unwrap());
    let server_addr = server.local_addr().unwrap();
    let echo = spawn_echo(Arc::clone(&server));
    let c = client("127.0.0.1:0", |cfg| {
        cfg.send_buffer_size = Some(512 * 1024);
    });
    let mut notes = Vec::new();
    c.send(
        b"first",
        SendTarget::Addr(server_addr),
        &SendOptions::default(),
    )
    .await
    .unwrap();
    let first = next_message(&c, &mut notes).await;
    assert_eq!(first.data, b"first");
    let big = pattern(TOO_LARGE, 99);
    tokio::time::timeout(
        STEP,
        c.send(
            &big,
            SendTarget::Assoc(first.assoc),
            &SendOptions::default(),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    let reply = next_message(&c, &mut notes).await;
    assert_eq!(
        String::from_utf8_lossy(&reply.data),
        format!("dropped:{TOO_LARGE}")
    );
    // Just under the limit still passes, on the same association.
    let fits = pattern(SERVER_MAX, 7);
    c.send(
        &fits,
        SendTarget::Assoc(first.assoc),
        &SendOptions::default(),
    )
    .await
    .unwrap();
    let e = next_message(&c, &mut notes).await;
    assert!(e.data == fits, "a {SERVER_MAX} B message after the drop");
    assert_eq!(e.assoc, first.assoc);
    drop(c);
    tokio::time::timeout(STEP, echo).await.unwrap().unwrap();
}

/// Dropping a socket shuts its association down gracefully: the peer sees COMM_UP, then the
/// SHUTDOWN event, then SHUTDOWN_COMP (not COMM_LOST, which an ABORT would give).
#[tokio::test]
async fn closing_a_socket_shuts_its_association_down_gracefully() {
    require_sctp();
    let server = Arc::new(SctpSocket::bind(&[addr("127.0.0.1:0")], &server_config()).unwrap());
    let server_addr = server.local_addr().unwrap();
    let echo = spawn_echo(Arc::clone(&server));
    let c = client("127.0.0.1:0", |_| {});
    c.send(
        b"bye",
        SendTarget::Addr(server_addr),
        &SendOptions::default(),
    )
    .await
    .unwrap();
    let mut notes = Vec::new();
    let e = next_message(&c, &mut notes).await;
    drop(c);
    let seen = tokio::time::timeout(STEP, echo)
        .await
        .expect("the server saw its association end")
        .unwrap();
    let up = position(&seen, is_comm_up);
    let shutdown = position(&seen, |n| matches!(n, Notification::Shutdown { .. }));
    let comp = position(&seen, |n| {
        matches!(
            n,
            Notification::AssocChange {
                state: AssocChangeState::ShutdownComp,
                ..
            }
        )
    });
    assert!(
        matches!((up, shutdown, comp), (Some(a), Some(b), Some(c)) if a < b && b < c),
        "COMM_UP, SHUTDOWN, SHUTDOWN_COMP in order: {seen:?}"
    );
    eprintln!(
        "kernel {}: association {} ended: {seen:?}",
        vm_kernel(),
        e.assoc
    );
}

fn ip_port(a: SocketAddr) -> (std::net::IpAddr, u16) {
    (a.ip(), a.port())
}

/// An IPv6 socket bound to [::1]:P and 127.0.0.1 (port P): an IPv6 and an IPv4 client each
/// get their echo from the address they sent to, and the server sees the IPv4 client as IPv4,
/// not v4-mapped.
#[tokio::test]
async fn an_ipv6_socket_also_bound_to_ipv4_serves_both_families() {
    require_sctp();
    let server = SctpSocket::bind(
        &[addr("[::1]:0"), addr("127.0.0.1:0")],
        &SocketConfig::default(),
    )
    .expect("bind [::1] and 127.0.0.1 (the VM has IPv6 loopback)");
    let port = server.local_addr().unwrap().port();
    let addr6 = SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], port));
    let addr4 = SocketAddr::from(([127, 0, 0, 1], port));
    let local = server.local_addrs().unwrap();
    let mut got: Vec<_> = local.iter().copied().map(ip_port).collect();
    got.sort();
    let mut want = vec![ip_port(addr6), ip_port(addr4)];
    want.sort();
    assert_eq!(
        got, want,
        "the server's addresses (IPv4 as IPv4): {local:?}"
    );
    let server_task = tokio::spawn(async move {
        let mut peers = Vec::new();
        while peers.len() < 2 {
            if let Incoming::Message {
                data,
                assoc_id,
                peer,
                ..
            } = server.recv().await.expect("server recv")
            {
                server
                    .send(&data, SendTarget::Assoc(assoc_id), &SendOptions::default())
                    .await
                    .expect("server echo");
                peers.push(peer);
            }
        }
        peers
    });
    let mut clients = Vec::new();
    for (bind, to) in [("[::1]:0", addr6), ("127.0.0.1:0", addr4)] {
        let c = client(bind, |_| {});
        let data = pattern(1000, 42);
        tokio::time::timeout(
            STEP,
            c.send(&data, SendTarget::Addr(to), &SendOptions::default()),
        )
        .await
        .unwrap()
        .unwrap();
        let mut notes = Vec::new();
        let e = next_message(&c, &mut notes).await;
        assert!(e.data == data, "echo to {to} differs");
        // IP and port: the kernel may fill in an IPv6 scope id (the interface) on receive.
        assert_eq!(ip_port(e.peer), ip_port(to), "the echo's source");
        clients.push(ip_port(c.local_addr().unwrap()));
    }
    let peers = tokio::time::timeout(STEP, server_task)
        .await
        .unwrap()
        .unwrap();
    let seen: Vec<_> = peers.iter().copied().map(ip_port).collect();
    assert_eq!(seen, clients, "the peers the server saw (IPv4 as IPv4)");
    assert!(peers[0].is_ipv6() && peers[1].is_ipv4(), "{peers:?}");
    eprintln!("kernel {}: served {peers:?} on {local:?}", vm_kernel());
}

/// A message to a port where nothing listens: the peer's kernel aborts the setup
/// (CANT_STR_ASSOC), and the message comes back unsent in SEND_FAILED with its context, PPID,
/// stream and data.
#[tokio::test]
async fn a_send_to_a_closed_port_comes_back_in_send_failed_with_its_context() {
    require_sctp();
    // Bound but not listening: INITs to it are answered with ABORT.
    let closed = client("127.0.0.1:0", |_| {});
    let nobody = closed.local_addr().unwrap();
    let c = client("127.0.0.1:0", |_| {});
    let data = pattern(500, 5);
    let opts = SendOptions {
        context: 0x00C0_FFEE,
        ppid: 77,
        stream: 1,
        ..SendOptions::default()
    };
    c.send(&data, SendTarget::Addr(nobody), &opts)
        .await
        .unwrap();
    let mut notes = Vec::new();
    let cant_start = |n: &Notification| {
        matches!(
            n,
            Notification::AssocChange {
                state: AssocChangeState::CantStrAssoc,
                ..
            }
        )
    };
    let is_failed = |n: &Notification| matches!(n, Notification::SendFailed { .. });
    assert!(
        wait_notification(&c, &mut notes, STEP, cant_start).await,
        "no CANT_STR_ASSOC within {STEP:?}: {notes:?}"
    );
    assert!(
        wait_notification(&c, &mut notes, STEP, is_failed).await,
        "no SEND_FAILED within {STEP:?}: {notes:?}"
    );
    // Anything more (a second copy of the message) would come right after.
    wait_notification(&c, &mut notes, Duration::from_millis(500), |_| false).await;
    let failed: Vec<&Notification> = notes.iter().filter(|n| is_failed(n)).collect();
    match failed.as_slice() {
        [
            Notification::SendFailed {
                status,
                context,
                ppid,
                stream,
                payload,
                payload_len,
                ..
            },
        ] => {
            assert_eq!(*status, SendFailedStatus::Unsent);
            assert_eq!(*context, 0x00C0_FFEE, "context");
            assert_eq!(*ppid, 77, "ppid");
            assert_eq!(*stream, 1, "stream");
            assert_eq!(*payload_len, data.len(), "payload_len");
            assert!(*payload == data, "the data returned differs");
        }
        other => panic!("expected one SEND_FAILED, got {other:?}; all: {notes:?}"),
    }
    eprintln!(
        "kernel {}: CANT_STR_ASSOC, then SEND_FAILED (unsent) with the 500 B, context, PPID \
         and stream",
        vm_kernel()
    );
}

/// Back-pressure: 100 messages of 60 KiB pushed with `try_send` as fast as the kernel takes
/// them, waiting with `writable` on `WouldBlock`, into a reader on the same thread (so the
/// kernel's buffers must fill): the reader gets all of them, whole and in order.
#[tokio::test]
async fn try_send_with_writable_back_pressure_delivers_every_message_in_order() {
    require_sctp();
    const COUNT: u32 = 100;
    const SIZE: usize = 60 * 1024;
    // A receive window of several messages: with the default one (about 100 KiB) only one
    // 60 KiB message is in flight at a time, and each then waits for the delayed SACK.
    let sink = SctpSocket::bind(
        &[addr("127.0.0.1:0")],
        &SocketConfig {
            recv_buffer_size: Some(1 << 20),
            ..SocketConfig::default()
        },
    )
    .unwrap();
    let sink_addr = sink.local_addr().unwrap();
    let sink_task = tokio::spawn(async move {
        let mut got = Vec::new();
        while got.len() < COUNT as usize {
            if let Incoming::Message { data, .. } = sink.recv().await.expect("sink recv") {
                let seq = u32::from_be_bytes(data[..4].try_into().expect("4 bytes"));
                assert!(
                    data.len() == SIZE && data[4..] == pattern(SIZE - 4, seq)[..],
                    "message {seq} ({} B) differs",
                    data.len()
                );
                got.push(seq);
            }
        }
        got
    });
    let c = client("127.0.0.1:0", |_| {});
    let opts = SendOptions {
        unordered: false,
        ..SendOptions::default()
    };
    let t0 = Instant::now();
    let mut would_block = 0u32;
    for seq in 0..COUNT {
        let mut data = seq.to_be_bytes().to_vec();
        data.extend(pattern(SIZE - 4, seq));
        loop {
            match c.try_send(&data, SendTarget::Addr(sink_addr), &opts) {
                Ok(n) => {
                    assert_eq!(n, SIZE);
                    break;
                }
                Err(e) if e.is_would_block() => {
                    would_block += 1;
                    tokio::time::timeout(STEP, c.writable())
                        .await
                        .expect("writable within the step")
                        .unwrap();
                }
                Err(e) => panic!("try_send {seq}: {e}"),
            }
        }
    }
    let got = tokio::time::timeout(Duration::from_secs(60), sink_task)
        .await
        .expect("the sink got everything within 60 s")
        .unwrap();
    assert_eq!(got, (0..COUNT).collect::<Vec<_>>(), "order");
    assert!(
        would_block > 0,
        "try_send never returned WouldBlock for {} MiB: the back-pressure path was not taken",
        (COUNT as usize * SIZE) >> 20
    );
    eprintln!(
        "kernel {}: {COUNT} x {SIZE} B with try_send in {} ms, {would_block} WouldBlock waits",
        vm_kernel(),
        t0.elapsed().as_millis()
    );
}

/// The receive side reads in batches (`recvmmsg`, up to 8 messages, all but the first slot
/// 8 KiB): a backlog the kernel queued from three associations while nobody read, of small
/// messages and of messages larger than a batch slot (read in pieces within one batch and
/// across batches), comes out whole, each association's in order, with its notifications.
#[tokio::test]
async fn a_queued_backlog_of_small_and_large_messages_from_three_peers_is_read_whole_in_order() {
    require_sctp();
    const PER_PEER: u32 = 150;
    let server = SctpSocket::bind(
        &[addr("127.0.0.1:0")],
        &SocketConfig {
            max_message_size: SERVER_MAX,
            recv_buffer_size: Some(4 << 20),
            ..SocketConfig::default()
        },
    )
    .expect("bind the server");
    let to = server.local_addr().expect("server address");
    // Message `i` of peer `p`: a 4-byte header (peer, index) and a body of 100 bytes, or
    // 20 000 (larger than a batch's small slots) for every seventh.
    let message = |p: u32, i: u32| {
        let len = if i % 7 == 3 { 20_000 } else { 100 };
        let mut m = vec![p as u8, (i >> 8) as u8, i as u8, 0];
        m.extend(pattern(len, p * 1000 + i));
        m
    };
    let mut senders = Vec::new();
    for p in 0..3u32 {
        let c = client("127.0.0.1:0", |_| {});
        senders.push(tokio::spawn(async move {
            for i in 0..PER_PEER {
                let opts = SendOptions {
                    unordered: false,
                    ..SendOptions::default()
                };
                c.send(&message(p, i), SendTarget::Addr(to), &opts)
                    .await
                    .expect("client send");
            }
            c
        }));
    }
    // Let the kernel queue a backlog before the first read.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut next = [0u32; 3];
    let mut comm_up = 0;
    let deadline = Instant::now() + STEP * 3;
    while next.iter().any(|n| *n < PER_PEER) {
        let left = deadline.saturating_duration_since(Instant::now());
        let got = tokio::time::timeout(left, server.recv())
            .await
            .unwrap_or_else(|_| panic!("kernel {}: stalled at {next:?}", vm_kernel()))
            .expect("server recv");
        match got {
            Incoming::Message { data, .. } => {
                let (p, i) = (
                    u32::from(data[0]),
                    (u32::from(data[1]) << 8) | u32::from(data[2]),
                );
                assert!(p < 3, "peer byte {p}");
                assert_eq!(
                    i,
                    next[p as usize],
                    "kernel {}: peer {p} out of order",
                    vm_kernel()
                );
                assert!(
                    data == message(p, i),
                    "kernel {}: peer {p} message {i} corrupted ({} bytes)",
                    vm_kernel(),
                    data.len()
                );
                next[p as usize] += 1;
            }
            Incoming::Notification { notification, .. } => {
                if is_comm_up(&notification) {
                    comm_up += 1;
                }
            }
            other => panic!("kernel {}: unexpected {other:?}", vm_kernel()),
        }
    }
    assert_eq!(comm_up, 3, "one COMM_UP per peer");
    for s in senders {
        drop(s.await.expect("sender task"));
    }
    eprintln!(
        "kernel {}: 3 x {PER_PEER} messages (every 7th 20 KB) read whole and in order",
        vm_kernel()
    );
}
