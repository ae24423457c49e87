//! Fuzzes the decoding of ring-buffer records (`SctpEvent::decode`), what the loader does with
//! every record the probes write, and the jiffies conversions of what it decodes. Any panic is
//! a bug; so is a decoded event that says something else than the record.
//!
//! Input: one record (`KERNEL_EVENT_SIZE` bytes, as the seeds are), optionally followed by a
//! little-endian u32 HZ (250 without it, as on Debian's kernels).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipsctp_ebpf_common::{KERNEL_EVENT_SIZE, KernelEvent, family};
use sipsctp_ebpf_events::{DecodeError, EventKind, Hz, Jiffies, SctpEvent};

fn jiffies(kind: &EventKind) -> Vec<Jiffies> {
    match *kind {
        EventKind::RtoUpdate {
            rtt,
            rto,
            srtt,
            rttvar,
        } => vec![rtt, rto, srtt, rttvar],
        EventKind::Retransmit { rto, .. }
        | EventKind::T3RtxExpired { rto, .. }
        | EventKind::T1Expired { rto, .. }
        | EventKind::HeartbeatSent { rto, .. }
        | EventKind::HeartbeatAck { rto, .. } => vec![rto],
        _ => Vec::new(),
    }
}

fuzz_target!(|data: &[u8]| {
    let hz = data
        .get(KERNEL_EVENT_SIZE..)
        .and_then(|t| t.first_chunk::<4>())
        .and_then(|b| Hz::new(u32::from_le_bytes(*b)))
        .unwrap_or(Hz::new(250).expect("250 is not 0"));
    let decoded = SctpEvent::decode(data, hz);
    // Only the record's own bytes count.
    let record = data.get(..KERNEL_EVENT_SIZE).unwrap_or(data);
    assert_eq!(decoded, SctpEvent::decode(record, hz));
    let _ = format!("{decoded:?}");
    match decoded {
        Ok(e) => {
            let raw = KernelEvent::from_bytes(data).expect("a decoded record is long enough");
            assert_eq!(e.time.as_nanos(), u128::from(raw.ts_ns));
            assert_eq!(
                (e.netns, e.assoc, e.assoc_id.get()),
                (raw.netns, raw.assoc, raw.assoc_id)
            );
            assert_eq!((e.local_port, e.peer_port), (raw.local_port, raw.peer_port));
            assert_eq!(e.transport, (raw.transport != 0).then_some(raw.transport));
            assert_eq!(e.owner, (raw.tgid != 0).then_some(raw.tgid));
            assert_eq!(e.peer.is_none(), raw.family == family::NONE);
            for j in jiffies(&e.kind) {
                assert_eq!(j.hz, hz);
                // jiffies_to_msecs rounds up, the duration is exact: never below it.
                assert!(u128::from(j.to_kernel_msecs()) >= j.to_duration().as_millis());
            }
        }
        Err(e) => {
            let _ = e.to_string();
            if data.len() < KERNEL_EVENT_SIZE {
                assert_eq!(e, DecodeError::Short { len: data.len() });
            }
        }
    }
});
