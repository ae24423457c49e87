//! The userspace half of the event path: a ring-buffer record (the bytes the probes write) to a
//! typed [`SctpEvent`], in events per second, against a baseline measured in the same run.
//!
//! - baseline: [`KernelEvent::from_bytes`], the unaligned copy of the record that any reader
//!   must make before looking at it;
//! - decode: [`SctpEvent::decode`], that copy plus validation of every field and the conversion
//!   to typed values (jiffies to durations with the kernel's HZ, addresses, enums).
//!
//! The records are a mix shaped like real traffic under loss: mostly RTO updates, then
//! retransmissions, heartbeats, timer expiries and path/association changes, IPv4 and IPv6.
//! Reading the ring buffer itself (a pointer into shared memory, aya's `RingBuf::next`) needs the
//! kernel and is measured with the probes' overhead in the system benchmark.
//!
//! Run with `cargo xtask bench` (or `cargo bench -p sipsctp-ebpf-events`); the ratio decode/baseline
//! is printed at the end.

use std::{hint::black_box, time::Duration};

use criterion::{Criterion, Throughput, criterion_group};
use sipsctp_ebpf_common::{family, kind, path_command, path_state, rtx_reason, sac_state};
use sipsctp_ebpf_events::{
    Hz, KernelEvent, SctpEvent,
    event::{EventKind, RetransmitReason},
};

/// Records per batch (a ring buffer's worth of a busy second on a small box).
const BATCH: usize = 4096;

fn record(i: usize) -> KernelEvent {
    let v6 = i.is_multiple_of(7);
    let (k, values) = match i % 20 {
        0..=9 => (kind::RTO_UPDATE, [50, 12, 6, 9, 0, 0]),
        10..=12 => (
            kind::RETRANSMIT,
            [rtx_reason::T3_RTX, 250, 4380, 9000, 1200, 1],
        ),
        13 => (
            kind::RETRANSMIT,
            [rtx_reason::FAST_RTX, 250, 4380, 9000, 1200, 1],
        ),
        14 | 15 => (kind::HEARTBEAT_SENT, [250, 0, 1, path_state::ACTIVE, 0, 0]),
        16 => (kind::HEARTBEAT_ACK, [250, 0, path_state::ACTIVE, 0, 0, 0]),
        17 => (kind::T3_RTX_EXPIRED, [250, 1, 3, 4380, 1200, 0]),
        18 => (
            kind::PATH_CHANGE,
            [path_command::DOWN, 0, path_state::ACTIVE, 1, 0, 0],
        ),
        _ => (kind::ASSOC_CHANGE, [sac_state::COMM_UP, 0, 10, 10, 0, 0]),
    };
    let mut peer_addr = [0u8; 16];
    if v6 {
        peer_addr = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    } else {
        peer_addr[..4].copy_from_slice(&[10, 0, (i >> 8) as u8, i as u8]);
    }
    KernelEvent {
        kind: k,
        family: if v6 { family::INET6 } else { family::INET },
        tgid: 4242,
        ts_ns: 1_000_000_000 + i as u64 * 1000,
        netns: 4_026_531_840,
        assoc_id: 3 + (i % 64) as u32,
        local_port: 5060,
        peer_port: 40_000 + (i % 64) as u16,
        peer_addr,
        assoc: 0xffff_8880_1000_0000 + (i % 64) as u64 * 0x1000,
        transport: 0xffff_8880_2000_0000 + (i % 64) as u64 * 0x1000,
        values,
        ..KernelEvent::default()
    }
}

/// The batch as the ring buffer holds it: records back to back.
fn batch() -> Vec<u8> {
    (0..BATCH).flat_map(|i| record(i).to_bytes()).collect()
}

fn event_path(c: &mut Criterion) {
    let ring = batch();
    let size = KernelEvent::default().to_bytes().len();
    let hz = Hz::new(250).expect("a valid HZ");
    // Every record of the batch must decode, and to what it says: the benchmark measures the
    // successful path, not an early error return.
    let decoded: Vec<SctpEvent> = ring
        .chunks_exact(size)
        .map(|r| SctpEvent::decode(r, hz).expect("every benchmark record decodes"))
        .collect();
    assert!(decoded.iter().any(|e| matches!(
        e.kind,
        EventKind::Retransmit {
            reason: RetransmitReason::FastRtx,
            ..
        }
    )));

    let mut g = c.benchmark_group("event_path");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("baseline_copy", |b| {
        b.iter(|| {
            for r in black_box(&ring).chunks_exact(size) {
                black_box(KernelEvent::from_bytes(r));
            }
        })
    });
    g.bench_function("decode", |b| {
        b.iter(|| {
            for r in black_box(&ring).chunks_exact(size) {
                let _ = black_box(SctpEvent::decode(r, hz));
            }
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    targets = event_path
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    print_ratio();
}

/// Reads this run's two means back from criterion's files and prints events/s and the ratio.
fn print_ratio() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(|t| t.join("criterion").join("event_path"));
    let mean = |name: &str| -> Option<f64> {
        let text =
            std::fs::read_to_string(dir.as_ref()?.join(name).join("new").join("estimates.json"))
                .ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        v.get("mean")?.get("point_estimate")?.as_f64()
    };
    match (mean("baseline_copy"), mean("decode")) {
        (Some(base), Some(dec)) => {
            let per_event = |ns: f64| ns / BATCH as f64;
            println!(
                "event path: decode {:.1} ns/event ({:.1} M events/s); baseline copy {:.1} ns/event; \
                 decode/baseline = {:.2}",
                per_event(dec),
                1e3 / per_event(dec),
                per_event(base),
                dec / base
            );
        }
        _ => println!("event path: criterion's estimates not found (filtered out?)"),
    }
}
