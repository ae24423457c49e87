//! Messages larger than the path MTU that the kernel hands back (review item M1).
//!
//! Linux fragments such a message into several DATA chunks and, when it gives up on it,
//! raises one SCTP_SEND_FAILED_EVENT per chunk, each with the message's context and the DATA
//! chunk's B/E flags in `snd_flags` (`sctp_datamsg_destroy`,
//! `sctp_ulpevent_make_send_failed_event`). The endpoint must resend the whole message, never
//! a fragment as if it were one, and count a message that fails for good once.
//!
//! Everything runs in a network namespace of its own whose loopback has a 1500-byte MTU, so a
//! 4 KB message travels as three DATA chunks; 100 % loss comes from netem on that loopback.

use std::{net::SocketAddr, time::Duration};

use sipsctp_sctp::{
    Incoming, Notification, SctpSocket, SendOptions, SendTarget, SocketConfig,
    assoc::SocketId,
    endpoint::{AssocEvent, EndpointConfig, Received, SctpEndpoint},
    params::Param,
};
use sipsctp_tests::{netns::Netns, require_sctp, vm_kernel};
use tokio::sync::{broadcast, mpsc};

const S0: SocketId = SocketId(0);
const SIZE: usize = 4096;

fn lo(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A namespace with loopback up at a 1500-byte MTU.
fn small_mtu_ns(name: &str) -> Netns {
    let ns = Netns::new(name);
    ns.ip(&["link", "set", "lo", "mtu", "1500"]);
    ns
}

/// 100 % loss on the namespace's loopback until dropped.
struct Loss<'a>(&'a Netns);

impl<'a> Loss<'a> {
    fn total(ns: &'a Netns) -> Loss<'a> {
        ns.tc(&["qdisc", "add", "dev", "lo", "root", "netem", "loss", "100%"]);
        Loss(ns)
    }
}

impl Drop for Loss<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tc")
            .args(["-n", self.0.name(), "qdisc", "del", "dev", "lo", "root"])
            .output();
    }
}

/// Position-dependent content, so that a fragment can never pass for the whole message.
fn message() -> Vec<u8> {
    (0..SIZE)
        .map(|i| (i as u8).wrapping_mul(31) ^ ((i >> 8) as u8))
        .collect()
}

/// Fast association failure: RTO 100-400 ms, 2 retransmissions, 2 INIT attempts.
const FAST_FAILURE: [(Param, i64); 7] = [
    (Param::SrtoMin, 100),
    (Param::SrtoInitial, 200),
    (Param::SrtoMax, 400),
    (Param::Asocmaxrxt, 2),
    (Param::Pathmaxrxt, 2),
    (Param::InitMaxAttempts, 2),
    (Param::InitMaxTimeo, 400),
];

/// The endpoint (ttl 200 ms, 2 retries) and a plain peer socket, both inside `ns`.
fn setup(ns: &Netns) -> (SctpEndpoint, mpsc::Receiver<Received>, SctpSocket) {
    ns.enter(|| {
        let mut params = FAST_FAILURE.to_vec();
        params.push((Param::SendTtl, 200));
        params.push((Param::SendRetries, 2));
        let config = EndpointConfig {
            listeners: vec![vec![lo(0)]],
            params,
            ..EndpointConfig::default()
        };
        let (ep, rx) = SctpEndpoint::bind(&config).expect("bind the endpoint");
        let peer = SctpSocket::bind(&[lo(0)], &SocketConfig::default()).expect("bind the peer");
        (ep, rx, peer)
    })
}

/// The next message on `sock` within `limit`, skipping notifications.
async fn next_message(sock: &SctpSocket, limit: Duration) -> Option<Vec<u8>> {
    tokio::time::timeout(limit, async {
        loop {
            match sock.recv().await.expect("peer recv") {
                Incoming::Message { data, .. } => return data,
                Incoming::Notification { .. } => {}
                Incoming::Dropped { reason, .. } => {
                    panic!("the peer dropped a message: {reason:?}")
                }
            }
        }
    })
    .await
    .ok()
}

/// Every event until `until` matches one (included), or `limit` passes.
async fn events_until(
    events: &mut broadcast::Receiver<AssocEvent>,
    limit: Duration,
    mut until: impl FnMut(&AssocEvent) -> bool,
) -> (Vec<AssocEvent>, bool) {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(limit, async {
        loop {
            let e = events.recv().await.expect("event stream");
            let stop = until(&e);
            seen.push(e);
            if stop {
                return;
            }
        }
    })
    .await
    .is_ok();
    (seen, found)
}

/// Opens the association with a small message and checks it arrived.
async fn warm_up(ep: &SctpEndpoint, peer: &SctpSocket, paddr: SocketAddr) {
    ep.send(S0, paddr, b"warm-up").expect("send warm-up");
    assert_eq!(
        next_message(peer, Duration::from_secs(10)).await.as_deref(),
        Some(&b"warm-up"[..])
    );
}

/// What Linux hands back for a fragmented message, seen on a plain socket: one
/// SEND_FAILED_EVENT per DATA chunk, in order, each with the message's context, the chunk's
/// B/E flags in `snd_flags` and that chunk's data. This is what the endpoint relies on.
#[tokio::test]
async fn the_kernel_returns_a_fragmented_message_chunk_by_chunk_with_its_b_e_flags() {
    require_sctp();
    let ns = small_mtu_ns("sipsctp-m1-raw");
    let (sender, peer) = ns.enter(|| {
        (
            SctpSocket::bind(&[lo(0)], &SocketConfig::default()).expect("bind the sender"),
            SctpSocket::bind(&[lo(0)], &SocketConfig::default()).expect("bind the peer"),
        )
    });
    let paddr = peer.local_addr().unwrap();
    sender
        .send(b"hello", SendTarget::Addr(paddr), &SendOptions::default())
        .await
        .unwrap();
    assert!(next_message(&peer, Duration::from_secs(10)).await.is_some());
    let assoc = sender.assoc_ids().unwrap()[0];

    let msg = message();
    let loss = Loss::total(&ns);
    let opts = SendOptions {
        context: 0x00ab_cd07,
        ..SendOptions::default()
    };
    sender
        .send(&msg, SendTarget::Assoc(assoc), &opts)
        .await
        .unwrap();
    sender
        .send(b"small", SendTarget::Assoc(assoc), &opts)
        .await
        .unwrap();
    // Tearing the association down fails everything still queued.
    sender.abort(assoc, b"test").unwrap();
    let mut failed: Vec<(u16, u32, Vec<u8>)> = Vec::new();
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        while failed.len() < 4 {
            if let Incoming::Notification {
                notification:
                    Notification::SendFailed {
                        send_flags,
                        context,
                        payload,
                        payload_len,
                        assoc_id,
                        ..
                    },
                ..
            } = sender.recv().await.unwrap()
            {
                assert_eq!(payload.len(), payload_len, "a notification was cut short");
                assert_eq!(assoc_id, assoc);
                failed.push((send_flags, context, payload));
            }
        }
    })
    .await;
    drop(loss);
    let flags: Vec<u16> = failed.iter().map(|(f, _, _)| *f).collect();
    assert!(
        got.is_ok(),
        "only {} SEND_FAILED events: {flags:x?}",
        failed.len()
    );
    let sizes: Vec<usize> = failed.iter().map(|(_, _, p)| p.len()).collect();
    eprintln!(
        "kernel {}: SEND_FAILED snd_flags {flags:#04x?}, sizes {sizes:?}",
        vm_kernel()
    );
    // B = 0x02 on the first chunk, E = 0x01 on the last, both on an unfragmented message;
    // unordered (0x04) on every chunk of an unordered message. The fragments of one message
    // come one after the other; the two messages may come in either order.
    let small = failed
        .iter()
        .position(|(f, _, _)| f & 0x03 == 0x03)
        .expect("the small message's event");
    assert_eq!(failed[small].2, b"small");
    let frags: Vec<&(u16, u32, Vec<u8>)> = failed
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != small)
        .map(|(_, f)| f)
        .collect();
    let be: Vec<u16> = frags.iter().map(|(f, _, _)| f & 0x03).collect();
    assert_eq!(
        be,
        vec![0x02, 0x00, 0x01],
        "B/E flags per chunk: {flags:x?}"
    );
    assert!(
        small == 0 || small == 3,
        "fragments interleaved: {flags:x?}"
    );
    assert!(flags.iter().all(|f| f & 0x04 != 0), "U flag: {flags:x?}");
    assert!(failed.iter().all(|(_, c, _)| *c == 0x00ab_cd07));
    let joined: Vec<u8> = frags.iter().flat_map(|(_, _, p)| p.clone()).collect();
    assert!(joined == msg, "the fragments' data is the message in order");
}

/// Review item M1, recovered: a 4 KB message abandoned under 100 % loss comes back as three
/// SEND_FAILED events; once the path heals the peer gets it once, whole, and nothing else.
#[tokio::test]
async fn a_returned_fragmented_message_is_resent_whole_once() {
    require_sctp();
    let ns = small_mtu_ns("sipsctp-m1-resend");
    let (ep, _rx, peer) = setup(&ns);
    let mut events = ep.events();
    let paddr = peer.local_addr().unwrap();
    warm_up(&ep, &peer, paddr).await;

    let msg = message();
    let loss = Loss::total(&ns);
    ep.send(S0, paddr, &msg).expect("send the 4 KB message");
    let (seen, retried) = events_until(&mut events, Duration::from_secs(30), |e| {
        matches!(e, AssocEvent::SendRetried { .. })
    })
    .await;
    assert!(
        retried,
        "no resend within 30 s: {seen:?}; {:?}",
        ep.counters()
    );
    drop(loss);

    // Everything the peer gets from now on: it must be the message, whole, once.
    let mut got = Vec::new();
    while let Some(m) = next_message(
        &peer,
        Duration::from_secs(if got.is_empty() { 20 } else { 3 }),
    )
    .await
    {
        got.push(m);
    }
    let sizes: Vec<usize> = got.iter().map(Vec::len).collect();
    let c = ep.counters();
    let mut later = Vec::new();
    while let Ok(e) = events.try_recv() {
        later.push(e);
    }
    eprintln!(
        "kernel {}: the peer got messages of {sizes:?} bytes; {c:?}; events after the first resend: {later:?}",
        vm_kernel()
    );
    assert_eq!(
        sizes,
        vec![SIZE],
        "the peer must get the whole message once, nothing else"
    );
    assert!(got[0] == msg, "the message arrived altered");
    assert_eq!(c.send_force_retry, 1, "one resend for one message");
    assert_eq!(c.send_failed, 0);
}

/// Review item M1, for good: under lasting loss the message fails three times (the original
/// and two retries on fresh associations) and is counted once, as one 4 KB failure.
#[tokio::test]
async fn a_fragmented_message_that_fails_for_good_is_counted_once() {
    require_sctp();
    let ns = small_mtu_ns("sipsctp-m1-fail");
    let (ep, _rx, peer) = setup(&ns);
    let mut events = ep.events();
    let paddr = peer.local_addr().unwrap();
    warm_up(&ep, &peer, paddr).await;

    let _loss = Loss::total(&ns);
    ep.send(S0, paddr, &message())
        .expect("send the 4 KB message");
    let (seen, failed) = events_until(&mut events, Duration::from_secs(60), |e| {
        matches!(e, AssocEvent::SendFailure { .. })
    })
    .await;
    assert!(
        failed,
        "no send failure within 60 s: {seen:?}; {:?}",
        ep.counters()
    );
    // Stragglers (fragments counted as messages of their own) would come right after.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut all = seen;
    while let Ok(e) = events.try_recv() {
        all.push(e);
    }
    let failures: Vec<&AssocEvent> = all
        .iter()
        .filter(|e| matches!(e, AssocEvent::SendFailure { .. }))
        .collect();
    let retries = all
        .iter()
        .filter(|e| matches!(e, AssocEvent::SendRetried { .. }))
        .count();
    let c = ep.counters();
    eprintln!(
        "kernel {}: {} failure event(s) {failures:?}, {retries} resends; {c:?}",
        vm_kernel(),
        failures.len()
    );
    match failures.as_slice() {
        [AssocEvent::SendFailure { len, dest, .. }] => {
            assert_eq!(*len, SIZE, "the failure is the whole message");
            assert_eq!(*dest, Some(paddr));
        }
        other => panic!("expected one failure of the whole message, got {other:?}"),
    }
    assert_eq!(c.send_failed, 1, "counted once");
    assert_eq!(
        c.send_force_retry, 2,
        "the budget of 2 was used once per retry"
    );
    assert_eq!(retries, 2);
}
