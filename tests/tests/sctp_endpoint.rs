//! The SCTP endpoint (Kamailio's sctp transport, done here) against the VM's kernel SCTP:
//! the 19 parameters set and read back with getsockopt, runtime changes with their scope, the
//! association limit, association tracking across peers, send retries after a peer restart,
//! PR-SCTP lifetime expiry under 100% loss, whole-message reassembly, and message order kept
//! through the send queue when a slow reader fills the kernel's send buffer.
//!
//! Peers are plain one-to-many [`SctpSocket`]s or the independent `tokio-sctp` crate.

use std::{net::SocketAddr, time::Duration};

use bytes::BytesMut;
use sipsctp_sctp::{
    AssocId, Incoming, SctpSocket, SendOptions, SendTarget, SocketConfig,
    assoc::SocketId,
    endpoint::{
        AssocEvent, DownCause, EndpointConfig, Received, SctpEndpoint, SendError, SendOutcome,
    },
    params::{Param, ParamError, Scope},
};
use sipsctp_tests::{eventually, netns::tc, ports, require_sctp, vm_kernel};
use tokio::sync::{broadcast, mpsc};
use tokio_sctp::SctpStream;

const S0: SocketId = SocketId(0);

fn lo(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn endpoint(params: &[(Param, i64)]) -> (SctpEndpoint, mpsc::Receiver<Received>, SocketAddr) {
    let config = EndpointConfig {
        listeners: vec![vec![lo(0)]],
        params: params.to_vec(),
        ..EndpointConfig::default()
    };
    let (ep, rx) = SctpEndpoint::bind(&config).expect("bind the endpoint");
    let addr = ep.listeners()[0].1[0];
    (ep, rx, addr)
}

/// A plain one-to-many peer socket on loopback (port 0 = any).
fn peer(port: u16) -> SctpSocket {
    SctpSocket::bind(&[lo(port)], &SocketConfig::default()).expect("bind a peer socket")
}

/// The next message on `sock`, skipping notifications.
async fn next_message(sock: &SctpSocket, limit: Duration) -> (Vec<u8>, AssocId, SocketAddr) {
    tokio::time::timeout(limit, async {
        loop {
            match sock.recv().await.expect("peer recv") {
                Incoming::Message {
                    data,
                    assoc_id,
                    peer,
                    ..
                } => return (data, assoc_id, peer),
                Incoming::Notification { .. } => {}
                Incoming::Dropped { reason, .. } => panic!("peer dropped a message: {reason:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no message within {limit:?}"))
}

async fn next_event(
    events: &mut broadcast::Receiver<AssocEvent>,
    limit: Duration,
    mut want: impl FnMut(&AssocEvent) -> bool,
) -> AssocEvent {
    tokio::time::timeout(limit, async {
        loop {
            let e = events.recv().await.expect("event stream");
            if want(&e) {
                return e;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("expected event not seen within {limit:?}"))
}

/// Values chosen to differ from every default and to survive the kernel's ms -> jiffies -> ms
/// round trip (multiples of 4 ms: HZ is 250 on Debian, and 1000 would be exact anyway).
const NON_DEFAULTS: [(Param, i64); 19] = [
    (Param::SocketRcvbuf, 100_000),
    (Param::SocketSndbuf, 90_000),
    (Param::Autoclose, 300),
    (Param::SendTtl, 10_000),
    (Param::SendRetries, 2),
    (Param::AssocTracking, 1),
    (Param::AssocReuse, 0),
    (Param::MaxAssocs, 100),
    (Param::SrtoInitial, 2000),
    (Param::SrtoMax, 40_000),
    (Param::SrtoMin, 500),
    (Param::Asocmaxrxt, 7),
    (Param::InitMaxAttempts, 6),
    (Param::InitMaxTimeo, 20_000),
    (Param::Hbinterval, 12_000),
    (Param::Pathmaxrxt, 4),
    (Param::SackDelay, 100),
    (Param::SackFreq, 3),
    (Param::MaxBurst, 6),
];

#[tokio::test]
async fn all_19_parameters_reach_the_kernel_and_runtime_changes_honour_their_scope() {
    require_sctp();
    let (ep, mut rx, addr) = endpoint(&NON_DEFAULTS);
    let configured = ep.params();
    for (p, v) in NON_DEFAULTS {
        assert_eq!(configured.get(p), v, "{p} as configured");
    }
    let kernel = ep.kernel_params(S0, None).expect("read back");
    assert_eq!(
        kernel.len(),
        14,
        "every kernel-backed parameter is read back"
    );
    for (p, v) in &kernel {
        assert_eq!(
            *v,
            configured.get(*p),
            "{p}: kernel endpoint default vs configured"
        );
    }

    // A new association inherits the endpoint defaults.
    let client = peer(0);
    client
        .send(b"hello", SendTarget::Addr(addr), &SendOptions::default())
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    let a1 = first.assoc;
    let per_assoc = ep.kernel_params(S0, Some(a1)).unwrap();
    for (p, v) in &per_assoc {
        assert_eq!(
            *v,
            configured.get(*p),
            "{p}: association {a1} vs configured"
        );
    }

    // Future scope: new associations only.
    assert_eq!(
        ep.set_param("srto_initial", 1200, Scope::Future).unwrap(),
        1200
    );
    let rto = |ps: &[(Param, i64)], p: Param| ps.iter().find(|x| x.0 == p).unwrap().1;
    assert_eq!(
        rto(&ep.kernel_params(S0, None).unwrap(), Param::SrtoInitial),
        1200
    );
    assert_eq!(
        rto(&ep.kernel_params(S0, Some(a1)).unwrap(), Param::SrtoInitial),
        2000
    );
    let client2 = peer(0);
    client2
        .send(b"second", SendTarget::Addr(addr), &SendOptions::default())
        .await
        .unwrap();
    let second = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_ne!(second.assoc, a1);
    assert_eq!(
        rto(
            &ep.kernel_params(S0, Some(second.assoc)).unwrap(),
            Param::SrtoInitial
        ),
        1200,
        "a new association takes the changed default"
    );

    // All scope: live associations change too, for every kind of option.
    for (name, value, param) in [
        ("sctp_srto_max", 30_000, Param::SrtoMax),
        ("asocmaxrxt", 5, Param::Asocmaxrxt),
        ("hbinterval", 8000, Param::Hbinterval),
        ("pathmaxrxt", 3, Param::Pathmaxrxt),
        ("sack_delay", 60, Param::SackDelay),
        ("sack_freq", 4, Param::SackFreq),
        ("max_burst", 7, Param::MaxBurst),
    ] {
        ep.set_param(name, value, Scope::All)
            .unwrap_or_else(|e| panic!("{name} = {value}: {e}"));
        assert_eq!(ep.params().get(param), value);
        for a in [None, Some(a1), Some(second.assoc)] {
            assert_eq!(
                rto(&ep.kernel_params(S0, a).unwrap(), param),
                value,
                "{param} after scope all, assoc {a:?}"
            );
        }
    }
    // Current scope: live ones change, the endpoint default stays.
    ep.set_param("max_burst", 2, Scope::Current).unwrap();
    assert_eq!(
        rto(&ep.kernel_params(S0, Some(a1)).unwrap(), Param::MaxBurst),
        2
    );
    assert_eq!(
        rto(&ep.kernel_params(S0, None).unwrap(), Param::MaxBurst),
        7
    );

    // Refusals name the parameter and the rule; nothing changes.
    let e = ep
        .set_param("sctp_socket_rcvbuf", 4096, Scope::Future)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "sctp_socket_rcvbuf cannot be changed at run time (only at start)"
    );
    let e = ep.set_param("srto_min", 50_000, Scope::Future).unwrap_err();
    assert!(
        e.to_string()
            .contains("sctp_srto_min (50000) <= sctp_srto_initial"),
        "{e}"
    );
    assert!(matches!(
        ep.set_param("sctp_no_such", 1, Scope::Future),
        Err(sipsctp_sctp::endpoint::ParamChangeError::Param(
            ParamError::Unknown(_)
        ))
    ));
    assert_eq!(ep.params().get(Param::SrtoMin), 500);
    eprintln!(
        "kernel {}: 19 parameters set, 14 read back from the kernel, scopes ok",
        vm_kernel()
    );
}

#[tokio::test]
async fn max_assocs_aborts_the_third_peer_and_refuses_a_third_outbound() {
    require_sctp();
    let (ep, mut rx, addr) = endpoint(&[(Param::MaxAssocs, 2)]);
    let mut events = ep.events();
    let peers: Vec<SctpSocket> = (0..3).map(|_| peer(0)).collect();
    for (i, p) in peers.iter().enumerate().take(2) {
        p.send(
            format!("peer {i}").as_bytes(),
            SendTarget::Addr(addr),
            &SendOptions::default(),
        )
        .await
        .unwrap();
        let m = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.data, format!("peer {i}").as_bytes());
    }
    assert_eq!(ep.info().opened, 2);

    // The third association comes up in the kernel and is aborted at once.
    peers[2]
        .send(b"peer 2", SendTarget::Addr(addr), &SendOptions::default())
        .await
        .unwrap();
    let rejected = next_event(&mut events, Duration::from_secs(10), |e| {
        matches!(e, AssocEvent::LimitReject { .. })
    })
    .await;
    // The peer sees the ABORT with the reason as COMM_LOST.
    let lost = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Incoming::Notification {
                notification: sipsctp_sctp::Notification::AssocChange { state, .. },
                ..
            } = peers[2].recv().await.unwrap()
                && state == sipsctp_sctp::AssocChangeState::CommLost
            {
                return;
            }
        }
    })
    .await;
    assert!(
        lost.is_ok(),
        "the rejected peer never saw its association end"
    );
    let c = ep.counters();
    assert_eq!(c.local_reject, 1, "{rejected:?}");
    assert_eq!(c.established, 3);
    assert!(eventually(Duration::from_secs(5), || ep.info().opened == 2).await);

    // An outbound send to a third peer would open a third association: refused.
    let third = peer(0);
    let third_addr = third.local_addr().unwrap();
    match ep.send(S0, third_addr, b"OPTIONS") {
        Err(SendError::Limit(e)) => assert_eq!((e.max, e.open_next), (2, 3)),
        other => panic!("expected the limit error, got {other:?}"),
    }
    // The two accepted peers are still served.
    let p0 = peers[0].local_addr().unwrap();
    assert!(matches!(
        ep.send(S0, p0, b"reply").unwrap(),
        SendOutcome::Sent { assoc: Some(_) }
    ));
    assert_eq!(
        next_message(&peers[0], Duration::from_secs(10)).await.0,
        b"reply"
    );
    eprintln!(
        "kernel {}: local_reject = 1, outbound over the limit refused",
        vm_kernel()
    );
}

#[tokio::test]
async fn tracking_follows_peers_across_closes_and_reuses_the_association_for_replies() {
    require_sctp();
    let (ep, mut rx, addr) = endpoint(&[]);
    let mut events = ep.events();
    let mut seen = Vec::new();
    for round in 0..4 {
        // A new peer each round, on the same port when possible, closed afterwards.
        let p = peer(0);
        let paddr = p.local_addr().unwrap();
        p.send(
            format!("round {round}").as_bytes(),
            SendTarget::Addr(addr),
            &SendOptions::default(),
        )
        .await
        .unwrap();
        let m = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.peer, paddr);
        // The reply goes on the association the request came on.
        assert_eq!(
            ep.send(S0, paddr, b"reply").unwrap(),
            SendOutcome::Sent {
                assoc: Some(m.assoc)
            }
        );
        let (data, _, _) = next_message(&p, Duration::from_secs(10)).await;
        assert_eq!(data, b"reply");
        assert_eq!(ep.info().tracked, 1);
        seen.push(m.assoc);
        drop(p);
        let down = next_event(&mut events, Duration::from_secs(10), |e| {
            matches!(e, AssocEvent::Down { .. })
        })
        .await;
        match down {
            AssocEvent::Down { assoc, cause, .. } => {
                assert_eq!(assoc, m.assoc);
                assert_eq!(cause, DownCause::ShutdownComplete);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!((ep.info().opened, ep.info().tracked), (0, 0));
    }
    let c = ep.counters();
    assert_eq!((c.established, c.assoc_shutdown), (4, 4));
    eprintln!(
        "kernel {}: association ids over 4 peers: {seen:?}",
        vm_kernel()
    );
}

#[tokio::test]
async fn messages_round_trip_whole_with_a_small_partial_delivery_point() {
    require_sctp();
    let config = EndpointConfig {
        listeners: vec![vec![lo(0)]],
        partial_delivery_point: Some(4096),
        params: vec![(Param::SocketRcvbuf, 100_000)],
        ..EndpointConfig::default()
    };
    let (ep, mut rx) = SctpEndpoint::bind(&config).unwrap();
    let addr = ep.listeners()[0].1[0];
    let client = SctpStream::connect(addr).await.expect("tokio-sctp connect");
    let mut buf = BytesMut::with_capacity(128 * 1024);
    for size in [100usize, 8 * 1024, 60 * 1024] {
        let msg: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        client
            .sendmsg(&msg, None, &tokio_sctp::SendOptions::default())
            .await
            .unwrap();
        let m = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.data.len(), size);
        assert!(m.data == msg, "{size} B reassembled differently");
        assert!(matches!(
            ep.send(m.socket, m.peer, &m.data),
            Ok(SendOutcome::Sent { .. } | SendOutcome::Queued { .. })
        ));
        buf.clear();
        let (n, _, _) =
            tokio::time::timeout(Duration::from_secs(10), client.recvmsg_eor_buf(&mut buf))
                .await
                .unwrap()
                .unwrap();
        assert_eq!(n, size);
        assert!(buf[..] == msg[..], "{size} B echo differs");
    }
}

/// What [`slow_reader_run`] saw.
struct SlowReaderRun {
    /// Sends answered `Queued`.
    queued: u32,
    /// The endpoint's `sendq_full` (EAGAIN from the kernel) at the end.
    sendq_full: u64,
    /// Whether the association was ever reported stalled while messages waited.
    seen_stalled: bool,
}

/// A reader slower than the sender: messages wait in the endpoint's send queue and are drained
/// from another thread while new ones keep coming. Every message must arrive, and in the order
/// it was sent: a message sent directly must never overtake one the drainer has taken off the
/// queue but not yet handed to the kernel.
async fn slow_reader_run(params: &[(Param, i64)]) -> SlowReaderRun {
    const N: u32 = 3000;
    const SIZE: usize = 1000;
    let (ep, mut rx, addr) = endpoint(params);
    let client = SctpStream::connect(addr).await.expect("tokio-sctp connect");
    client
        .sendmsg(b"hello", None, &tokio_sctp::SendOptions::default())
        .await
        .unwrap();
    let hello = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("hello within 10 s")
        .expect("endpoint open");

    let reader = tokio::spawn(async move {
        // Let the windows and the queue fill before reading at all.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut buf = BytesMut::with_capacity(4 * SIZE);
        let mut got = Vec::with_capacity(N as usize);
        while got.len() < N as usize {
            buf.clear();
            let (n, _, _) =
                tokio::time::timeout(Duration::from_secs(20), client.recvmsg_eor_buf(&mut buf))
                    .await
                    .unwrap_or_else(|_| panic!("stalled after {} messages", got.len()))
                    .expect("client recv");
            assert_eq!(n, SIZE, "message {} has the wrong size", got.len());
            got.push(u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]));
            if got.len() % 4 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        got
    });

    let (mut queued, mut full_waits) = (0u32, 0u32);
    let mut drained_then_sent = 0u32;
    let mut seen_stalled = false;
    for seq in 0..N {
        let mut msg = vec![0xa5u8; SIZE];
        msg[..4].copy_from_slice(&seq.to_be_bytes());
        loop {
            match ep.send(hello.socket, hello.peer, &msg) {
                Ok(SendOutcome::Sent { .. }) => break,
                Ok(SendOutcome::Queued { .. }) => {
                    queued += 1;
                    seen_stalled |= ep.info().stalled > 0;
                    // Wait for the drainer to take the last queued message, then send the
                    // next at once: the moment a direct send could overtake the message the
                    // drainer is handing to the kernel.
                    let t = std::time::Instant::now();
                    while ep.info().queued > 0 && t.elapsed() < Duration::from_secs(10) {
                        tokio::task::yield_now().await;
                    }
                    drained_then_sent += 1;
                    break;
                }
                Err(SendError::QueueFull { .. }) => {
                    // Not taken: offer the same message again once the queue drains.
                    full_waits += 1;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err(e) => panic!("send {seq}: {e}"),
            }
        }
    }
    let got = reader.await.expect("reader task");
    let out_of_order: Vec<(usize, u32)> = got
        .iter()
        .enumerate()
        .filter(|(i, s)| **s != *i as u32)
        .map(|(i, s)| (i, *s))
        .take(5)
        .collect();
    assert!(
        out_of_order.is_empty(),
        "messages out of order (position, seq): {out_of_order:?}; {queued} went through the queue"
    );
    let c = ep.counters();
    println!(
        "kernel {}: {N} messages in order; {queued} queued, {drained_then_sent} sent as the queue emptied, sendq_full {}, stalled seen {seen_stalled}, {full_waits} waits on a full queue",
        vm_kernel(),
        c.sendq_full
    );
    SlowReaderRun {
        queued,
        sendq_full: c.sendq_full,
        seen_stalled,
    }
}

/// Without association tracking there is no stall detection (it needs sends that name their
/// association): the kernel's send buffer fills (EAGAIN) and the messages wait in the
/// endpoint's send queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_gets_every_message_in_order_through_the_send_queue() {
    require_sctp();
    let run = slow_reader_run(&[
        (Param::SocketSndbuf, 16 * 1024),
        (Param::AssocReuse, 0),
        (Param::AssocTracking, 0),
    ])
    .await;
    assert!(
        run.queued > 0 && run.sendq_full > 0,
        "the send queue was never used (queued {}, sendq_full {}): the test proves nothing",
        run.queued,
        run.sendq_full
    );
}

/// With association tracking, the association is held as *stalled* once its share of the send
/// buffer is used and the reader's window is closed, or its messages wait after EAGAIN,
/// whichever comes first (it depends on how fast the reader's window closes): either way they
/// wait in the endpoint's queue and must arrive whole and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_held_as_stalled_gets_every_message_in_order() {
    require_sctp();
    let run = slow_reader_run(&[(Param::SocketSndbuf, 16 * 1024)]).await;
    assert!(
        run.queued > 0 && (run.seen_stalled || run.sendq_full > 0),
        "no message waited (queued {}, stalled seen {}, sendq_full {}): the test proves nothing",
        run.queued,
        run.seen_stalled,
        run.sendq_full
    );
}

/// Adds 100% loss on `lo` for the guard's lifetime.
struct Loss;

impl Loss {
    fn total() -> Loss {
        tc(&["qdisc", "add", "dev", "lo", "root", "netem", "loss", "100%"]);
        Loss
    }
}

impl Drop for Loss {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tc")
            .args(["qdisc", "del", "dev", "lo", "root"])
            .output();
    }
}

const FAST_FAILURE: [(Param, i64); 5] = [
    (Param::SrtoMin, 100),
    (Param::SrtoInitial, 200),
    (Param::SrtoMax, 400),
    (Param::Asocmaxrxt, 2),
    (Param::Pathmaxrxt, 2),
];

#[tokio::test]
async fn a_message_lost_with_its_association_is_resent_to_the_restarted_peer() {
    require_sctp();
    let mut params = FAST_FAILURE.to_vec();
    params.push((Param::SendRetries, 2));
    let (ep, _rx, _) = endpoint(&params);
    let mut events = ep.events();
    let peer_port = ports::sctp_endpoint::RESTARTED_PEER;
    let p1 = peer(peer_port);
    // A first send to a new peer opens the association: no id yet.
    assert_eq!(
        ep.send(S0, lo(peer_port), b"first").unwrap(),
        SendOutcome::Sent { assoc: None }
    );
    let (data, p1_assoc, _) = next_message(&p1, Duration::from_secs(10)).await;
    assert_eq!(data, b"first");
    // The peer can have the data before our side has its COMM_UP (COOKIE ACK still on its
    // way); until the endpoint has seen it, later messages wait for the association.
    next_event(&mut events, Duration::from_secs(10), |e| {
        matches!(e, AssocEvent::Up { .. })
    })
    .await;

    // The peer crashes while nothing gets through (its association state is gone, the ABORT
    // never reaches us), then comes back on the same port.
    let loss = Loss::total();
    p1.abort(p1_assoc, b"crash").unwrap();
    drop(p1);
    assert!(matches!(
        ep.send(S0, lo(peer_port), b"survivor").unwrap(),
        SendOutcome::Sent { .. }
    ));
    let down = next_event(&mut events, Duration::from_secs(20), |e| {
        matches!(e, AssocEvent::Down { .. })
    })
    .await;
    assert!(
        matches!(
            down,
            AssocEvent::Down {
                cause: DownCause::CommLost { .. },
                ..
            }
        ),
        "{down:?}"
    );
    let p2 = peer(peer_port);
    drop(loss);
    let arrived = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Incoming::Message { data, .. } = p2.recv().await.unwrap() {
                return data;
            }
        }
    })
    .await;
    let data = arrived.unwrap_or_else(|_| {
        while let Ok(e) = events.try_recv() {
            eprintln!("event: {e:?}");
        }
        panic!("nothing reached the restarted peer; {:?}", ep.counters())
    });
    assert_eq!(
        data, b"survivor",
        "the returned message reached the restarted peer"
    );
    let c = ep.counters();
    assert!(
        c.send_force_retry >= 1,
        "send_force_retry = {}",
        c.send_force_retry
    );
    assert_eq!(c.send_failed, 0);
    eprintln!(
        "kernel {}: send_force_retry = {}",
        vm_kernel(),
        c.send_force_retry
    );
}

#[tokio::test]
async fn send_ttl_expiry_under_total_loss_is_counted_and_reported() {
    require_sctp();
    let mut params = FAST_FAILURE.to_vec();
    params.push((Param::SendTtl, 300));
    let (ep, _rx, _) = endpoint(&params);
    let mut events = ep.events();
    let p = peer(0);
    let paddr = p.local_addr().unwrap();
    ep.send(S0, paddr, b"warm-up").unwrap();
    // The first message opens the association: it must arrive despite the lifetime.
    assert_eq!(
        next_message(&p, Duration::from_secs(10)).await.0,
        b"warm-up"
    );

    let _loss = Loss::total();
    let lost = b"this message cannot arrive";
    ep.send(S0, paddr, lost).unwrap();
    let failure = next_event(&mut events, Duration::from_secs(30), |e| {
        matches!(e, AssocEvent::SendFailure { .. })
    })
    .await;
    match failure {
        AssocEvent::SendFailure { len, dest, .. } => {
            assert_eq!(len, lost.len());
            assert_eq!(dest, Some(paddr));
        }
        other => panic!("{other:?}"),
    }
    assert!(ep.counters().send_failed >= 1);
    eprintln!("kernel {}: {:?}", vm_kernel(), ep.counters());
}
