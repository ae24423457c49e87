//! One unreachable SCTP destination must not block the others (review item H4).
//!
//! With `net.sctp.sndbuf_policy = 0` (Debian's default, checked here) all associations of a
//! one-to-many socket share its send buffer. Here the endpoint sends to a destination whose
//! INITs never leave (100 % netem loss on the only link to it, inside a network namespace of
//! the test's own) and, in between, to a second peer on loopback. The endpoint lets only the
//! first message for the dead destination into the kernel, holds the next ones in that
//! destination's bounded queue and refuses the rest with a typed, counted error; the second
//! peer receives every message, in order.

use std::{net::SocketAddr, time::Duration};

use sipsctp_sctp::{
    Incoming, SctpSocket, SocketConfig,
    assoc::SocketId,
    counters::SendDropCause,
    endpoint::{AssocEvent, EndpointConfig, Received, SctpEndpoint, SendError, SendOutcome},
    params::Param,
    sendq::QueueFull,
    sysctl::{SndbufPolicy, sndbuf_policy},
};
use sipsctp_tests::{
    netns::{Netns, veth},
    require_sctp, vm_kernel,
};
use tokio::sync::{broadcast, mpsc};

const S0: SocketId = SocketId(0);
const SIZE: usize = 1500;
/// Messages sent to each destination.
const N: u32 = 200;
/// The dead destination's queue: 16 messages or 10 000 bytes (6 messages of 1500 bytes).
const QUEUE_MESSAGES: usize = 16;
const QUEUE_BYTES: usize = 10_000;

/// The endpoint's namespace with a link to a second namespace that answers nothing: every
/// packet towards 10.77.0.0/24 is lost.
struct Net {
    ns: Netns,
    _dead: Netns,
}

fn net(name: &str) -> Net {
    let ns = Netns::new(name);
    let dead = Netns::new(&format!("{name}-dead"));
    veth(&ns, "h4a", "10.77.0.1/24", &dead, "h4b", "10.77.0.2/24");
    ns.tc(&[
        "qdisc", "add", "dev", "h4a", "root", "netem", "loss", "100%",
    ]);
    Net { ns, _dead: dead }
}

fn dead_dest(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 77, 0, i], 5060))
}

/// The endpoint (on every address of the namespace) and a plain peer socket on loopback.
fn setup(
    net: &Net,
    params: &[(Param, i64)],
) -> (SctpEndpoint, mpsc::Receiver<Received>, SctpSocket) {
    net.ns.enter(|| {
        let config = EndpointConfig {
            listeners: vec![vec![SocketAddr::from(([0, 0, 0, 0], 0))]],
            params: params.to_vec(),
            sendq_limit: QUEUE_MESSAGES,
            sendq_bytes: QUEUE_BYTES,
            ..EndpointConfig::default()
        };
        let (ep, rx) = SctpEndpoint::bind(&config).expect("bind the endpoint");
        let peer = SctpSocket::bind(
            &[SocketAddr::from(([127, 0, 0, 1], 0))],
            &SocketConfig::default(),
        )
        .expect("bind the peer");
        (ep, rx, peer)
    })
}

fn numbered(seq: u32) -> Vec<u8> {
    let mut m = vec![0x5a; SIZE];
    m[..4].copy_from_slice(&seq.to_be_bytes());
    m
}

/// Every message the peer gets within `limit` after the last one, as sequence numbers.
async fn receive_all(peer: &SctpSocket, want: usize, limit: Duration) -> Vec<u32> {
    let mut got = Vec::new();
    while got.len() < want {
        match tokio::time::timeout(limit, peer.recv()).await {
            Ok(Ok(Incoming::Message { data, .. })) => {
                assert_eq!(data.len(), SIZE, "message {} has the wrong size", got.len());
                got.push(u32::from_be_bytes([data[0], data[1], data[2], data[3]]));
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("peer recv: {e}"),
            Err(_) => break,
        }
    }
    got
}

/// Opens the association to the good peer.
async fn warm_up(ep: &SctpEndpoint, peer: &SctpSocket, paddr: SocketAddr) {
    ep.send(S0, paddr, &numbered(u32::MAX)).expect("warm-up");
    let got = receive_all(peer, 1, Duration::from_secs(10)).await;
    assert_eq!(got, vec![u32::MAX], "warm-up message");
}

#[tokio::test]
async fn a_destination_that_never_answers_fills_only_its_own_bounds() {
    require_sctp();
    let net = net("sipsctp-h4");
    let policy = net
        .ns
        .enter(sndbuf_policy)
        .expect("read net.sctp.sndbuf_policy");
    assert_eq!(
        policy,
        SndbufPolicy::Shared,
        "the test is about the shared send buffer"
    );
    // A small kernel send buffer (64 KB after the kernel doubles it): 200 messages of 1500
    // bytes for the dead destination would fill it many times over.
    let (ep, _rx, peer) = setup(&net, &[(Param::SocketSndbuf, 32_768)]);
    let paddr = peer.local_addr().unwrap();
    warm_up(&ep, &peer, paddr).await;

    let dead = dead_dest(2);
    // The good peer reads as the messages come.
    let peer = std::sync::Arc::new(peer);
    let reader = {
        let peer = peer.clone();
        tokio::spawn(async move { receive_all(&peer, N as usize, Duration::from_secs(20)).await })
    };
    let (mut sent, mut held, mut refused) = (0, 0, Vec::new());
    for seq in 0..N {
        match ep.send(S0, dead, &numbered(seq)) {
            Ok(SendOutcome::Sent { .. }) => sent += 1,
            Ok(SendOutcome::Queued { .. }) => held += 1,
            Err(SendError::QueueFull { dest, source }) => {
                assert_eq!(dest, dead);
                refused.push(source);
            }
            Err(e) => panic!("dead destination, message {seq}: {e}"),
        }
        match ep.send(S0, paddr, &numbered(seq)) {
            Ok(SendOutcome::Sent { .. } | SendOutcome::Queued { .. }) => {}
            Err(e) => panic!("good peer, message {seq}: {e}; {:?}", ep.counters()),
        }
        // A steady flow, not a burst: the good peer's reader keeps up.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let got = reader.await.expect("reader task");
    let c = ep.counters();
    let info = ep.info();
    eprintln!(
        "kernel {}: dead destination: {sent} sent (starts the association), {held} held, {} refused ({:?}); the good peer got {} of {N}; queued {}, {c:?}",
        vm_kernel(),
        refused.len(),
        refused.first(),
        got.len(),
        info.queued
    );
    let expected: Vec<u32> = (0..N).collect();
    assert!(
        got == expected,
        "the good peer must get every message in order; got {} (first missing: {:?})",
        got.len(),
        expected.iter().find(|s| !got.contains(s))
    );
    assert_eq!(
        sent, 1,
        "only the first message for the dead destination reaches the kernel"
    );
    let fit = QUEUE_BYTES / SIZE;
    assert_eq!(held, fit, "held up to the destination's byte bound");
    assert_eq!(refused.len(), N as usize - 1 - fit);
    assert!(
        refused.iter().all(|r| *r
            == QueueFull::Bytes {
                limit: QUEUE_BYTES,
                queued: fit * SIZE
            }),
        "{:?}",
        refused.first()
    );
    assert_eq!(
        c.send_dropped(SendDropCause::QueueBytes),
        refused.len() as u64
    );
    assert_eq!(c.send_failed, refused.len() as u64);
    assert_eq!(
        info.queued, fit as u64,
        "the held messages wait for COMM_UP"
    );
}

#[tokio::test]
async fn messages_held_for_a_failed_setup_are_dropped_and_counted() {
    require_sctp();
    let net = net("sipsctp-h4-fail");
    // INIT gives up after two tries (about 0.6 s).
    let params = [
        (Param::SrtoMin, 100),
        (Param::SrtoInitial, 200),
        (Param::SrtoMax, 400),
        (Param::InitMaxAttempts, 1),
        (Param::InitMaxTimeo, 400),
    ];
    let (ep, _rx, peer) = setup(&net, &params);
    let mut events = ep.events();
    let paddr = peer.local_addr().unwrap();
    warm_up(&ep, &peer, paddr).await;

    let dead = dead_dest(3);
    for seq in 0..6 {
        ep.send(S0, dead, &numbered(seq)).expect("fits the bounds");
    }
    assert_eq!(ep.info().queued, 5);
    let mut seen = Vec::new();
    let done = tokio::time::timeout(Duration::from_secs(30), async {
        // The held five, then the first one coming back from the kernel.
        while seen
            .iter()
            .filter(|e| matches!(e, AssocEvent::SendFailure { .. }))
            .count()
            < 6
        {
            match events.recv().await {
                Ok(e) => seen.push(e),
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await;
    let c = ep.counters();
    eprintln!("kernel {}: {seen:?}; {c:?}", vm_kernel());
    assert!(done.is_ok(), "not every message failed within 30 s");
    assert!(
        seen.iter()
            .any(|e| matches!(e, AssocEvent::CantStart { peer: Some(p), .. } if *p == dead))
    );
    assert_eq!(c.send_dropped(SendDropCause::SetupFailed), 5);
    assert_eq!(c.send_failed, 6, "five held, one returned by the kernel");
    assert_eq!(c.connect_failed, 1);
    assert_eq!(ep.info().queued, 0);
    // The good peer is still served.
    ep.send(S0, paddr, &numbered(7)).unwrap();
    assert_eq!(
        receive_all(&peer, 1, Duration::from_secs(10)).await,
        vec![7]
    );
}
