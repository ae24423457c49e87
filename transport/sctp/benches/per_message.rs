//! Per-message CPU cost of the transport's bookkeeping, without sockets (the development machine
//! has no kernel SCTP): what the endpoint does for every message besides the syscalls.
//!
//! - receive: [`AssocTable::handle_message`] on a table of 1000 tracked associations (a known
//!   peer, the common case);
//! - reply lookup: [`AssocTable::route`] for a tracked peer (reuse: on its association) and for
//!   an unknown one (by address, after the `sctp_max_assocs` check);
//! - send preparation: the public part of it, i.e. the route plus the per-message
//!   [`SendOptions`] (lifetime from `sctp_send_ttl`, retry budget as context). The control
//!   message itself (`SCTP_SNDINFO`/`SCTP_PRINFO`, `sys::cmsg::build_send`) is `pub(crate)` in a
//!   private module and cannot be reached from a benchmark;
//! - notification decoding: [`Notification::decode`] on an `SCTP_ASSOC_CHANGE`, an
//!   `SCTP_PEER_ADDR_CHANGE` and an `SCTP_SEND_FAILED_EVENT` carrying a 500-byte SIP message,
//!   laid out as `include/uapi/linux/sctp.h` says.
//!
//! Short on purpose (about half a second per benchmark): `cargo xtask bench`.

use std::{
    hint::black_box,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    time::{Duration, Instant},
};

use criterion::{Criterion, criterion_group, criterion_main};
use sipsctp_sctp::{
    AssocChangeState, AssocId, Notification, PeerAddrState, SendOptions,
    assoc::{AssocTable, Route, SocketId},
    params::{Param, SctpParams},
};

const ASSOCS: u32 = 1000;
const S: SocketId = SocketId(0);
/// `AF_INET` on Linux (no libc dependency for one constant).
const AF_INET: u16 = 2;

/// The peer of association `i` (ids start at 3, as the kernel's do).
fn peer(i: u32) -> SocketAddr {
    let [_, _, hi, lo] = i.to_be_bytes();
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 0, hi, lo), 5060))
}

fn assoc(i: u32) -> AssocId {
    AssocId(i + 3)
}

/// A table with tracking and reuse on, no limit, and `ASSOCS` associations up.
fn full_table() -> AssocTable {
    let mut t = AssocTable::new(true, true, -1);
    let now = Instant::now();
    for i in 0..ASSOCS {
        t.handle_comm_up(now, S, assoc(i), peer(i), 10, 10);
    }
    assert_eq!(t.tracked(), i64::from(ASSOCS), "table setup");
    t
}

fn header(sn_type: u16, flags: u16, len: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(len);
    b.extend_from_slice(&sn_type.to_ne_bytes());
    b.extend_from_slice(&flags.to_ne_bytes());
    b.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_ne_bytes());
    b
}

/// `struct sctp_assoc_change` for COMM_UP on association 42 (10 out, 12 in streams).
fn assoc_change_buf() -> Vec<u8> {
    let mut b = header(0x8001, 0, 20);
    for v in [0u16, 0, 10, 12] {
        b.extend_from_slice(&v.to_ne_bytes());
    }
    b.extend_from_slice(&42u32.to_ne_bytes());
    b
}

/// `struct sctp_paddr_change` (packed): ADDR_UNREACHABLE for 10.1.0.1:5060 on association 42.
fn paddr_change_buf() -> Vec<u8> {
    let mut b = header(0x8002, 0, 148);
    let mut storage = [0u8; 128];
    storage[0..2].copy_from_slice(&AF_INET.to_ne_bytes());
    storage[2..4].copy_from_slice(&5060u16.to_be_bytes());
    storage[4..8].copy_from_slice(&[10, 1, 0, 1]);
    b.extend_from_slice(&storage);
    b.extend_from_slice(&1i32.to_ne_bytes()); // SCTP_ADDR_UNREACHABLE
    b.extend_from_slice(&110i32.to_ne_bytes()); // ETIMEDOUT
    b.extend_from_slice(&42u32.to_ne_bytes());
    b
}

/// `struct sctp_send_failed_event` (SCTP_DATA_SENT) with its `sctp_sndinfo` and the data.
fn send_failed_buf(payload: &[u8]) -> Vec<u8> {
    let mut b = header(0x800d, 1, 32 + payload.len());
    b.extend_from_slice(&0u32.to_ne_bytes()); // ssfe_error
    b.extend_from_slice(&0u16.to_ne_bytes()); // snd_sid
    b.extend_from_slice(&1u16.to_ne_bytes()); // snd_flags: SCTP_UNORDERED
    b.extend_from_slice(&0u32.to_be_bytes()); // snd_ppid
    b.extend_from_slice(&2u32.to_ne_bytes()); // snd_context: retry budget
    b.extend_from_slice(&42u32.to_ne_bytes()); // snd_assoc_id
    b.extend_from_slice(&42u32.to_ne_bytes()); // ssfe_assoc_id
    b.extend_from_slice(payload);
    b
}

fn sip_message() -> Vec<u8> {
    let mut m = b"OPTIONS sip:bench@10.0.0.1:5060 SIP/2.0\r\n\
        Via: SIP/2.0/SCTP 10.0.0.2:5060;branch=z9hG4bK-bench\r\n\
        From: <sip:bench@10.0.0.2>;tag=1\r\nTo: <sip:bench@10.0.0.1>\r\n\
        Call-ID: bench@10.0.0.2\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
        .to_vec();
    m.resize(480, b'x');
    m.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
    m
}

fn receive_bookkeeping(c: &mut Criterion) {
    let mut t = full_table();
    let now = Instant::now();
    let mut i = 0u32;
    c.benchmark_group("recv")
        .bench_function("handle_message, 1000 assocs", |b| {
            b.iter(|| {
                i = (i + 7) % ASSOCS;
                black_box(t.handle_message(now, S, assoc(i), black_box(peer(i))))
            })
        });
}

fn reply_lookup(c: &mut Criterion) {
    let t = full_table();
    assert_eq!(t.route(S, peer(500)), Ok(Route::Assoc(assoc(500))));
    let mut i = 0u32;
    let mut g = c.benchmark_group("send");
    g.bench_function("route tracked peer, 1000 assocs", |b| {
        b.iter(|| {
            i = (i + 7) % ASSOCS;
            black_box(t.route(S, black_box(peer(i))))
        })
    });
    let stranger = SocketAddr::from(([192, 0, 2, 1], 5060));
    assert_eq!(t.route(S, stranger), Ok(Route::Addr(stranger)));
    g.bench_function("route unknown peer, 1000 assocs", |b| {
        b.iter(|| black_box(t.route(S, black_box(stranger))))
    });
}

fn send_preparation(c: &mut Criterion) {
    let t = full_table();
    let mut params = SctpParams::default();
    params.set(Param::SendTtl, 32_000).expect("sctp_send_ttl");
    params
        .set(Param::SendRetries, 2)
        .expect("sctp_send_retries");
    let mut i = 0u32;
    c.benchmark_group("send")
        .bench_function("route + SendOptions (public part)", |b| {
            b.iter(|| {
                i = (i + 7) % ASSOCS;
                let route = t.route(S, black_box(peer(i)));
                let p = black_box(&params);
                let ttl = p.get(Param::SendTtl);
                let opts = SendOptions {
                    ttl_ms: (ttl > 0).then(|| u32::try_from(ttl).unwrap_or(u32::MAX)),
                    context: u32::try_from(p.get(Param::SendRetries)).unwrap_or(0),
                    ..SendOptions::default()
                };
                black_box((route, opts))
            })
        });
}

fn notification_decoding(c: &mut Criterion) {
    let ac = assoc_change_buf();
    assert!(
        matches!(
            Notification::decode(&ac),
            Ok(Notification::AssocChange {
                state: AssocChangeState::CommUp,
                assoc_id: AssocId(42),
                ..
            })
        ),
        "ASSOC_CHANGE layout: {:?}",
        Notification::decode(&ac)
    );
    let mut g = c.benchmark_group("notification");
    g.bench_function("decode ASSOC_CHANGE", |b| {
        b.iter(|| black_box(Notification::decode(black_box(&ac))))
    });

    let pc = paddr_change_buf();
    assert!(
        matches!(
            Notification::decode(&pc),
            Ok(Notification::PeerAddrChange {
                state: PeerAddrState::Unreachable,
                ..
            })
        ),
        "PEER_ADDR_CHANGE layout: {:?}",
        Notification::decode(&pc)
    );
    g.bench_function("decode PEER_ADDR_CHANGE", |b| {
        b.iter(|| black_box(Notification::decode(black_box(&pc))))
    });

    let msg = sip_message();
    let sf = send_failed_buf(&msg);
    match Notification::decode(&sf) {
        Ok(Notification::SendFailed {
            context: 2,
            ref payload,
            payload_len,
            ..
        }) if payload == &msg && payload_len == msg.len() => {}
        other => panic!("SEND_FAILED_EVENT layout: {other:?}"),
    }
    g.bench_function(
        format!("decode SEND_FAILED_EVENT, {} B data", msg.len()),
        |b| b.iter(|| black_box(Notification::decode(black_box(&sf)))),
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(500))
        .sample_size(20);
    targets = receive_bookkeeping, reply_lookup, send_preparation, notification_decoding
}
criterion_main!(benches);
