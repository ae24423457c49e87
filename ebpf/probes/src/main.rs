//! sipsctp's eBPF programs on the kernel's SCTP code.
//!
//! Each program turns one kernel function call into a [`KernelEvent`] in the `EVENTS` ring
//! buffer. A failed reserve is never silent: it bumps `STATS[STAT_EVENTS_LOST]`, which
//! userspace reports. No struct offset is compiled in here.
#![no_std]
#![no_main]

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::{kprobe, map},
    maps::{PerCpuArray, RingBuf},
    programs::ProbeContext,
};
use aya_log_ebpf::debug;
use sipsctp_ebpf_common::{KernelEvent, STAT_EVENTS_LOST, STATS_LEN, kind};

/// Kernel events for userspace.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// Per-CPU counters (see `sipsctp_ebpf_common::STAT_*`).
#[map]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STATS_LEN, 0);

fn count_lost() {
    if let Some(p) = STATS.get_ptr_mut(STAT_EVENTS_LOST) {
        // SAFETY: the pointer comes from the map lookup and is this CPU's slot; programs on
        // one CPU do not preempt each other for kprobes.
        unsafe { *p += 1 };
    }
}

fn emit(kind: u8, object: u64, values: [u64; 4]) {
    match EVENTS.reserve::<KernelEvent>(0) {
        Some(mut entry) => {
            entry.write(KernelEvent {
                kind,
                _pad: [0; 3],
                tgid: (bpf_get_current_pid_tgid() >> 32) as u32,
                // SAFETY: a helper with no preconditions.
                ts_ns: unsafe { bpf_ktime_get_ns() },
                object,
                values,
            });
            entry.submit(0);
        }
        None => count_lost(),
    }
}

/// `void sctp_transport_update_rto(struct sctp_transport *tp, __u32 rtt)`: one RTT sample.
#[kprobe]
pub fn sctp_transport_update_rto(ctx: ProbeContext) -> u32 {
    let tp: u64 = ctx.arg::<u64>(0).unwrap_or(0);
    let rtt: u32 = ctx.arg::<u32>(1).unwrap_or(0);
    debug!(&ctx, "sctp_transport_update_rto rtt={} jiffies", rtt);
    emit(kind::RTO_UPDATE, tp, [u64::from(rtt), 0, 0, 0]);
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
