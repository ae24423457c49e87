//! Event layouts shared by sipsctp's eBPF programs (`ebpf/probes`) and their userspace loader
//! (`ebpf/loader`). `no_std`, no allocation, nothing but plain `#[repr(C)]` data: both sides
//! compile the same definitions, and a size assertion guards the layout on each.
//!
//! Userspace decodes a record with a length check and `read_unaligned`, never a pointer cast
//! (see `KernelEvent::from_bytes`).
#![no_std]
#![warn(missing_docs)]

/// Kinds of kernel events, the first byte of every [`KernelEvent`]. Plain constants rather than
/// a Rust enum: a byte from the ring buffer is only turned into an enum after it was checked.
pub mod kind {
    /// `sctp_transport_update_rto(tp, rtt)` entered: a new RTT sample for one path.
    /// `object` = the `struct sctp_transport` address, `values[0]` = the RTT sample in jiffies.
    pub const RTO_UPDATE: u8 = 1;
}

/// One kernel event, as the probes write it into the `EVENTS` ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelEvent {
    /// One of [`kind`].
    pub kind: u8,
    /// Explicit padding (always zero).
    pub _pad: [u8; 3],
    /// The thread group (process) the kernel was running for, 0 in softirq context.
    pub tgid: u32,
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    /// Kernel address of the object the event is about (identity only, never dereferenced
    /// by userspace).
    pub object: u64,
    /// Kind-specific values (see [`kind`]).
    pub values: [u64; 4],
}

/// Size of a [`KernelEvent`] record in the ring buffer.
pub const KERNEL_EVENT_SIZE: usize = core::mem::size_of::<KernelEvent>();
const _: () = assert!(KERNEL_EVENT_SIZE == 56);

impl KernelEvent {
    /// Decodes a ring-buffer record; `None` when it is shorter than an event.
    pub fn from_bytes(bytes: &[u8]) -> Option<KernelEvent> {
        if bytes.len() < KERNEL_EVENT_SIZE {
            return None;
        }
        // SAFETY: the length was checked above; `KernelEvent` is `repr(C)`, `Copy`, and every
        // bit pattern is a valid value of its integer fields; the read is unaligned-safe.
        Some(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<KernelEvent>()) })
    }
}

/// Index of the ring-buffer reserve failure counter in the `STATS` per-CPU array.
pub const STAT_EVENTS_LOST: u32 = 0;
/// Number of slots in the `STATS` per-CPU array.
pub const STATS_LEN: u32 = 1;

// SAFETY: `KernelEvent` is `repr(C)`, `Copy`, has explicit padding and no pointers or
// references; any bit pattern is valid.
#[cfg(feature = "user")]
unsafe impl aya::Pod for KernelEvent {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_what_it_encodes_and_rejects_short_records() {
        let e = KernelEvent {
            kind: kind::RTO_UPDATE,
            tgid: 42,
            ts_ns: 7,
            object: 0xffff_8880_0000_1000,
            values: [3, 0, 0, 9],
            ..KernelEvent::default()
        };
        // SAFETY: reading the bytes of a repr(C) Copy value that lives for the whole borrow.
        let bytes = unsafe {
            core::slice::from_raw_parts((&e as *const KernelEvent).cast::<u8>(), KERNEL_EVENT_SIZE)
        };
        assert_eq!(KernelEvent::from_bytes(bytes), Some(e));
        assert_eq!(
            KernelEvent::from_bytes(&bytes[..KERNEL_EVENT_SIZE - 1]),
            None
        );
    }
}
