//! sipsctp's kernel events without the kernel: what the eBPF programs write, decoded; the
//! kernel's tick rate; and the kernel's BTF, read to find the struct members the programs need.
//!
//! Pure: every function here works on bytes, text or values handed in. No syscall, no file, no
//! clock, no aya, no tokio, no build script: a crate that wants [`SctpEvent`] (an exporter, a
//! correlator, a tool that replays recorded events) depends on this one, not on the loader,
//! which keeps everything that touches the kernel (`sipsctp-ebpf`: loading, attaching,
//! reading `/sys/kernel/btf` and `/proc`, the ring buffer on tokio) and re-exports this crate's
//! items under the same paths as before.
//!
//! # Organization
//! - [`event`]: a ring-buffer record ([`KernelEvent`]) to an [`SctpEvent`], checked field by
//!   field.
//! - [`hz`]: [`Hz`], jiffies to time, and the measurement of HZ with the jiffies source and the
//!   clock passed in ([`hz::measure_with`]).
//! - [`btf`]: a reader of the kernel's BTF, base + split (module) blobs: struct member offsets
//!   by name.
//! - [`message`]: a `SIP` ring-buffer record to a [`CapturedMessage`].
//! - [`layout`]: which members the programs read, and their resolution into [`Offsets`].
//!
//! Every decoder is panic-free on any input: a bad record or blob is an error value (and each
//! is fuzzed: `ebpf/events/fuzz`).
#![warn(missing_docs)]

pub mod btf;
pub mod event;
pub mod hz;
pub mod layout;
pub mod message;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;

pub use event::{
    AssocChangeState, AssocState, DecodeError, EventKind, Jiffies, PathCommand, PathState,
    RetransmitReason, SctpEvent, T1Timer,
};
pub use hz::Hz;
pub use message::{CapturedMessage, Direction};
pub use sipsctp_ebpf_common::{KERNEL_EVENT_SIZE, KernelEvent, Offsets, assoc::AssocId};
